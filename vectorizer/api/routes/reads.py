"""Point reads: retrieve one or many, scroll in id order, count (Qdrant's REST shapes).

Every read accepts ``consistency`` (query parameter or body field): a write token makes
the read wait, bounded by ``timeout``, until this server applied that write (else 504).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import JSONResponse

from projections import datetimes, query
from projections.collection import Collection
from projections.errors import PointNotFound
from projections.filters import Filter
from projections.payload_index import FieldIndex
from schemas import paths
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok, timeout_param
from vectorizer.api.errors import BadRequest
from vectorizer.api.records import PayloadView, VectorSelector, payload_view, records, wants_vector

router = APIRouter(tags=["points"])


@dataclass(frozen=True)
class ReadOptions:
    consistency: str | None
    timeout: float | None


async def read_options(
    consistency: str | None = Query(None, description="A write token '<partition>:<offset>' to wait for, "
                                                      "or Qdrant's integer / majority / quorum / all"),
    timeout: float | None = timeout_param("Seconds to wait for the consistency token"),
) -> ReadOptions:
    return ReadOptions(consistency, timeout)


def readable(a: Api, name: str, opts: ReadOptions, b: dict[str, Any] | None = None) -> Collection:
    """The collection, once this server applied the writes the request waits for."""
    a.require_ready()
    tokens = p.consistency_tokens(opts.consistency, None if b is None else b.get("consistency"))
    a.await_tokens(tokens, a.timeout(opts.timeout))
    return a.collection(name)


class _AnyText(Convertor[str]):
    """A path parameter that takes the rest of the path, whatever it holds: a string id may
    contain "/" (sent as %2F, decoded before routing) and line breaks, which ``:path`` refuses."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("point_id", _AnyText())


@router.get("/collections/{collection_name}/points/{point_id:point_id}", summary="One point, with payload and vector")
def get_point(request: Request, collection_name: str, point_id: str, opts: ReadOptions = Depends(read_options),
              a: Api = Depends(api)) -> JSONResponse:
    coll = readable(a, collection_name, opts)
    pid = p.path_point_id(point_id)
    found = records(coll, [pid], payload_view(True, "with_payload", default=True), True)
    if not found:
        raise PointNotFound(f"Not found: No point with id {pid} found")
    return ok(request, found[0])


@router.post("/collections/{collection_name}/points", summary="Retrieve points by id",
             openapi_extra=json_body("ids, with_payload, with_vector, consistency"))
def get_points(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
               b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, retrieve(a, collection_name, opts, b))


def retrieve(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> list[dict[str, Any]]:
    """The points ``ids`` names, those that exist, in the order given (REST and gRPC)."""
    p.fields(b, "", ("ids", "with_payload", "with_vector", "shard_key", "consistency"))
    p.unsupported(b, "shard_key")
    coll = readable(a, collection_name, opts, b)
    ids = p.point_ids(b.get("ids"), "ids")
    view = payload_view(b.get("with_payload"), "with_payload", default=True)
    return records(coll, ids, view, wants_vector(b.get("with_vector"), "with_vector"))


@router.post("/collections/{collection_name}/points/scroll", summary="Page through points in id order",
             openapi_extra=json_body("offset, limit, filter, with_payload, with_vector, consistency"))
def scroll(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
           b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, scroll_page(a, collection_name, opts, b))


def scroll_page(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> dict[str, Any]:
    """One page of points in id order (or ``order_by``) and ``next_page_offset`` (REST and gRPC)."""
    p.fields(b, "", ("offset", "limit", "filter", "with_payload", "with_vector", "order_by", "shard_key",
                     "consistency"))
    p.unsupported(b, "shard_key")
    order = None if b.get("order_by") is None else order_by_spec(b["order_by"])
    if order is not None and b.get("offset") is not None:
        raise BadRequest("Wrong input: Cannot use an `offset` when using `order_by`. The alternative for paging is "
                         "to use `order_by.start_from` and a filter to exclude the IDs that you've already seen for "
                         "the `order_by.start_from` value")
    coll = readable(a, collection_name, opts, b)
    start = None if b.get("offset") is None else p.point_id(b["offset"], "offset")
    size = p.limit(b, "", 10)
    flt = p.filter_of(b.get("filter"), coll=coll)
    view = payload_view(b.get("with_payload"), "with_payload", default=True)
    with_vector = wants_vector(b.get("with_vector"), "with_vector")
    if order is not None:
        return {"points": _ordered_page(coll, order, flt, size, view, with_vector), "next_page_offset": None}
    with query.reading(coll):  # the page and its records from one state
        page = query.first_by_id(coll, flt, size + 1, start)
        points = records(coll, page[:size], view, with_vector)
    following = page[size] if len(page) > size else None
    return {"points": points, "next_page_offset": following}


@dataclass(frozen=True)
class OrderBy:
    key: str
    path: paths.Path
    descending: bool
    start: float | int | None


def order_by_spec(value: object) -> OrderBy:
    """Qdrant's ``order_by``: a key, or ``{key, direction: asc|desc, start_from: number or datetime}``."""
    if isinstance(value, str):
        value = {"key": value}
    spec = p.obj(value, "order_by")
    p.fields(spec, "order_by", ("key", "direction", "start_from"))
    path = paths.parse(spec.get("key"), field="order_by.key")
    direction = spec.get("direction") or "asc"
    if direction not in ("asc", "desc"):
        raise BadRequest(f"order_by.direction: expected 'asc' or 'desc', got {p.show(direction)}")
    raw = spec.get("start_from")
    start: float | int | None = None
    if isinstance(raw, str):
        start = datetimes.parse(raw)
        if start is None:
            raise BadRequest(f"order_by.start_from: expected a number or an RFC 3339 datetime, got {p.show(raw)}")
    elif raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise BadRequest(f"order_by.start_from: expected a number or an RFC 3339 datetime, got {p.show(raw)}")
        start = raw
    return OrderBy(spec["key"], path, direction == "desc", start)


def _ordered_page(coll: Collection, order: OrderBy, flt: Filter | None, size: int, view: PayloadView,
                  with_vector: VectorSelector) -> list[dict[str, Any]]:
    """A scroll page by a payload value (Qdrant: from a range index on the key), with ``order_value``."""
    with query.reading(coll):
        index = range_index(coll, order)
        page = query.ordered(coll, index, flt, size, descending=order.descending, start=order.start)
        found = records(coll, [pid for pid, _ in page], view, with_vector)
    for rec, (_, value) in zip(found, page, strict=True):
        rec["order_value"] = value
    return found


def range_index(coll: Collection, order: OrderBy) -> FieldIndex:
    """The index ``order_by`` reads (Qdrant: a range index on its key), else Qdrant's 400."""
    index = coll.indexes.get(order.path)
    if index is None or not index.orders:
        raise BadRequest(f"Wrong input: No range index for `order_by` key: `{order.key}`. Please create one to "
                         "use `order_by`. Check https://qdrant.tech/documentation/concepts/indexing/"
                         "#payload-index to see which payload schemas support Range conditions")
    return index


@router.post("/collections/{collection_name}/points/count", summary="Count points (exact)",
             openapi_extra=json_body("filter, exact, consistency"))
def count(request: Request, collection_name: str, opts: ReadOptions = Depends(read_options),
          b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return ok(request, count_points(a, collection_name, opts, b))


def count_points(a: Api, collection_name: str, opts: ReadOptions, b: dict[str, Any]) -> dict[str, int]:
    """``{"count": n}`` of the points ``filter`` matches (all of them without one; REST and gRPC)."""
    p.fields(b, "", ("filter", "exact", "shard_key", "consistency"))
    p.unsupported(b, "shard_key")
    if b.get("exact") is not None:
        p.boolean(b["exact"], "exact")  # counts are always exact here
    coll = readable(a, collection_name, opts, b)
    flt = p.filter_of(b.get("filter"), coll=coll)
    return {"count": query.count(coll, flt)}
