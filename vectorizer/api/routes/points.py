"""Point writes: upsert, delete, and the four payload edits (Qdrant's REST shapes).

A write names points by id or by ``filter``; a filter is resolved to ids on this server's
projection, then the write is published by id, so every replica applies the same change.
Unknown ids are ignored when the event is applied. The answer is Qdrant's ``UpdateResult``
plus ``write_token``; ``wait=true`` answers once this server applied the write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from infra.errors import VectorizerError
from producers.producer import WriteToken
from projections import query
from projections.collection import Collection, canonical_json
from projections.errors import PointNotFound
from schemas import validation as check
from schemas.events import UPDATE_MODES, UpdateMode
from schemas.ids import PointId
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, body, json_body, ok, timeout_param
from vectorizer.api.errors import BadRequest, Unprocessable
from vectorizer.api.vectors import Collector, check_name

router = APIRouter(tags=["points"])


@dataclass(frozen=True)
class WriteOptions:
    wait: bool | None
    timeout: float | None


async def write_options(
    wait: bool | None = Query(None, description="Answer once this server applied the write (read-your-writes)"),
    timeout: float | None = timeout_param("Seconds to wait with wait=true"),
    ordering: str | None = Query(None, description="Accepted for Qdrant compatibility; Kafka orders writes"),
) -> WriteOptions:
    return WriteOptions(wait, timeout)


#: A validated write, ready to publish: publishes it and returns its token (``None``: nothing to publish).
Publish = Callable[[], WriteToken | None]


class Known:
    """Which points exist for a write: the projection's, as changed by the earlier operations of the
    same batch (points it upserted exist, points it deleted by id do not)."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self.added: set[PointId] = set()
        self.removed: set[PointId] = set()

    def missing(self, ids: list[PointId]) -> list[PointId]:
        with query.reading(self.coll):
            return [pid for pid in ids
                    if pid in self.removed or (pid not in self.added and pid not in self.coll.label_of)]

    def upserted(self, ids: list[PointId]) -> None:
        self.added.update(ids)
        self.removed.difference_update(ids)

    def deleted(self, ids: list[PointId]) -> None:
        self.removed.update(ids)
        self.added.difference_update(ids)


def known_points(a: Api, collection: str) -> Known:
    """The points of ``collection`` as this server has them; 503 first when it serves nothing (a write
    to a server that is not ready is refused as not ready, whatever the collection)."""
    a.require_producer()
    return Known(a.collection(collection))


@router.put("/collections/{collection_name}/points", summary="Upsert points (points list or batch)",
            openapi_extra=json_body("points: [{id, vector, payload}] or batch: {ids, vectors, payloads}; "
                                    "update_mode: upsert|insert_only|update_only; update_filter"))
def upsert(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
           b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_upsert(a, collection_name, b, known_points(a, collection_name))
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_upsert(a: Api, collection_name: str, b: dict[str, Any], known: Known) -> Publish:
    producer = a.require_producer()
    p.fields(b, "", ("points", "batch", "shard_key", "update_filter", "update_mode"))
    p.unsupported(b, "shard_key")
    coll = a.collection(collection_name)
    config = coll.config
    mode = "upsert" if b.get("update_mode") is None else b["update_mode"]
    if mode not in UPDATE_MODES:
        raise BadRequest(f"update_mode: expected one of {', '.join(UPDATE_MODES)}, got {p.show(mode)}")
    mode = cast(UpdateMode, mode)
    condition = _update_filter(coll, b)
    ids, rows, row_paths, payloads = _points(b)
    if not ids:
        return lambda: None
    last = list({pid: i for i, pid in enumerate(ids)}.values())  # a repeated id: the last one wins
    if len(last) < len(ids):
        ids, rows = [ids[i] for i in last], [rows[i] for i in last]
        row_paths, payloads = [row_paths[i] for i in last], [payloads[i] for i in last]
    if mode != "update_only":
        known.upserted(ids)  # they exist afterwards, inserted or kept (update_only creates none)
    if config.named() or config.sparse() or not all(isinstance(row, (list, np.ndarray)) for row in rows):
        collector = Collector(config, len(ids))
        for i, (row, path) in enumerate(zip(rows, row_paths, strict=True)):
            collector.add(i, row, path)
        given = collector.vectors(unnamed_required=True)
        return lambda: producer.upsert(collection_name, ids, given.unnamed, payloads, named=given.named,
                                       sparse=given.sparse, update_mode=mode, update_filter=condition)
    vectors = p.vectors(rows, row_paths, config.dimension)
    return lambda: producer.upsert(collection_name, ids, vectors, payloads, update_mode=mode,
                                   update_filter=condition)


def _update_filter(coll: Collection, b: dict[str, Any]) -> str | None:
    """A write's ``update_filter``, validated against ``coll``, as the canonical JSON its event carries."""
    if b.get("update_filter") is None:
        return None
    p.filter_of(b["update_filter"], "update_filter", coll)
    return canonical_json(b["update_filter"])


@router.put("/collections/{collection_name}/points/vectors", summary="Update vectors of existing points",
            openapi_extra=json_body("points: [{id, vector: {name: vector}}], update_filter"))
def update_vectors(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    """Qdrant's ``update_vectors``: the vectors given replace the points' vectors of those names; the
    others and the payload stay. A point that does not exist is Qdrant's 404 (with ``wait``)."""
    write = prepare_update_vectors(a, collection_name, b, known_points(a, collection_name), opts.wait)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_update_vectors(a: Api, collection_name: str, b: dict[str, Any], known: Known,
                           wait: bool | None) -> Publish:
    producer = a.require_producer()
    p.fields(b, "", ("points", "shard_key", "update_filter"))
    p.unsupported(b, "shard_key")
    coll = a.collection(collection_name)
    condition = _update_filter(coll, b)
    raw = p.array(b.get("points"), "points")
    if not raw:
        raise Unprocessable("Validation error in JSON body: [points: must specify points to update]")  # Qdrant's
    ids = []
    collector = Collector(coll.config, len(raw))
    for i, item in enumerate(raw):
        point = p.obj(item, f"points[{i}]")
        p.fields(point, f"points[{i}]", ("id", "vector"))
        for required in ("id", "vector"):
            if required not in point:
                raise BadRequest(f"points[{i}].{required}: required")
        ids.append(p.point_id(point["id"], f"points[{i}].id"))
        collector.add(i, point["vector"], f"points[{i}].vector")
    if len(set(ids)) != len(ids):
        raise BadRequest("points: an id is given twice")
    given = collector.vectors(unnamed_required=False)
    missing = known.missing(ids)
    if missing and a.waits(wait):  # the projection rejects it too; with wait, say which point
        raise PointNotFound(f"No point with id {missing[0]} found")
    return lambda: producer.update_vectors(collection_name, ids, named=given.named, sparse=given.sparse,
                                           update_filter=condition)


@router.post("/collections/{collection_name}/points/vectors/delete", summary="Delete named vectors of points",
             openapi_extra=json_body("points: [ids] or filter, vector: [names]"))
def delete_vectors(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_delete_vectors(a, collection_name, b)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_delete_vectors(a: Api, collection_name: str, b: dict[str, Any]) -> Publish:
    producer = a.require_producer()
    _fields(b, ("points", "filter", "vector"))
    config = a.collection(collection_name).config
    names = [check_name(config, p.string(name, f"vector[{i}]") if name != "" else "")
             for i, name in enumerate(p.array(b.get("vector"), "vector"))]
    if not names:  # Qdrant's validation of DeleteVectors
        raise Unprocessable("Validation error in JSON body: [vector: must specify vector names to delete]")
    return _selected(a, collection_name, b, lambda chunk: producer.delete_vectors(collection_name, chunk, names))


def _points(b: dict[str, Any]) -> tuple[list[PointId], list[Any], list[str], list[Any]]:
    """Ids, vector rows (with their paths for errors) and payloads of either request form."""
    if (b.get("points") is None) == (b.get("batch") is None):
        raise BadRequest("points, batch: give exactly one of them")
    if b.get("points") is not None:
        ids: list[PointId] = []
        vectors: list[Any] = []
        paths: list[str] = []
        payloads: list[Any] = []
        for i, raw in enumerate(p.array(b["points"], "points")):
            point = p.obj(raw, f"points[{i}]")
            p.fields(point, f"points[{i}]", ("id", "vector", "payload"))
            for required in ("id", "vector"):
                if required not in point:
                    raise BadRequest(f"points[{i}].{required}: required")
            ids.append(p.point_id(point["id"], f"points[{i}].id"))
            vectors.append(point["vector"])
            paths.append(f"points[{i}].vector")
            payloads.append(p.payload(point.get("payload"), f"points[{i}].payload"))
        return ids, vectors, paths, payloads
    batch = p.obj(b["batch"], "batch")
    p.fields(batch, "batch", ("ids", "vectors", "payloads"))
    raw_ids = p.array(batch.get("ids"), "batch.ids")
    ids = [p.point_id(v, f"batch.ids[{i}]") for i, v in enumerate(raw_ids)]
    rows: list[Any]
    if isinstance(batch.get("vectors"), dict):  # {name: [one per point]}: turned into per-point structs
        columns = {name: p.array(column, f"batch.vectors.{name}") for name, column in batch["vectors"].items()}
        for name, column in columns.items():
            if len(column) != len(ids):
                raise BadRequest(f"batch.vectors.{name}: {len(column)} vectors for {len(ids)} ids")
        rows = [{name: column[i] for name, column in columns.items()} for i in range(len(ids))]
    else:
        rows = p.array(batch.get("vectors"), "batch.vectors")
    if len(rows) != len(ids):
        raise BadRequest(f"batch.vectors: {len(rows)} vectors for {len(ids)} ids")
    raw_payloads = batch.get("payloads")
    if raw_payloads is None:
        payloads = [None] * len(ids)
    else:
        raw_payloads = p.array(raw_payloads, "batch.payloads")
        if len(raw_payloads) != len(ids):
            raise BadRequest(f"batch.payloads: {len(raw_payloads)} payloads for {len(ids)} ids")
        payloads = [p.payload(v, f"batch.payloads[{i}]") for i, v in enumerate(raw_payloads)]
    return ids, list(rows), [f"batch.vectors[{i}]" for i in range(len(rows))], payloads


def selected_ids(coll: Collection, b: dict[str, Any]) -> list[PointId]:
    """The ids a write names: ``points: [ids]`` as given, or every point ``filter`` matches now."""
    if (b.get("points") is None) == (b.get("filter") is None):
        raise BadRequest("points, filter: give exactly one of them")
    if b.get("points") is not None:
        return p.point_ids(b["points"], "points")
    flt = p.filter_of(b["filter"], coll=coll)
    assert flt is not None
    return query.select_ids(coll, flt)


def _fields(b: dict[str, Any], allowed: tuple[str, ...], *unsupported: str) -> None:
    p.fields(b, "", (*allowed, "shard_key"))
    p.unsupported(b, "shard_key", *unsupported)


def _selected(a: Api, collection: str, b: dict[str, Any], publish: Callable[[list[Any]], WriteToken] | None,
              known: Known | None = None) -> Publish:
    """A write by ``points`` or ``filter``: resolved to ids on this server now, published by ids."""
    ids = selected_ids(a.collection(collection), b)
    if known is not None:
        known.deleted(ids)
    return lambda: a.publish_by_ids(ids, publish) if publish is not None else None


@router.post("/collections/{collection_name}/points/delete", summary="Delete points by ids or filter",
             openapi_extra=json_body("points: [ids] or filter"))
def delete_points(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_delete(a, collection_name, b, known_points(a, collection_name))
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_delete(a: Api, collection_name: str, b: dict[str, Any], known: Known) -> Publish:
    producer = a.require_producer()
    _fields(b, ("points", "filter"))
    return _selected(a, collection_name, b, lambda chunk: producer.delete(collection_name, chunk), known)


@router.post("/collections/{collection_name}/points/payload", summary="Set payload keys (merge)",
             openapi_extra=json_body("payload, points or filter, optional key"))
def set_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_set_payload(a, collection_name, b)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_set_payload(a: Api, collection_name: str, b: dict[str, Any]) -> Publish:
    producer = a.require_producer()
    _fields(b, ("payload", "points", "filter", "key"))
    new = _required_payload(b)
    key = None if b.get("key") is None else check.payload_path(p.string(b["key"], "key"))
    return _selected(a, collection_name, b, lambda chunk: producer.set_payload(collection_name, chunk, new, key))


@router.put("/collections/{collection_name}/points/payload", summary="Overwrite the whole payload",
            openapi_extra=json_body("payload, points or filter"))
def overwrite_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                      b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_overwrite_payload(a, collection_name, b)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_overwrite_payload(a: Api, collection_name: str, b: dict[str, Any]) -> Publish:
    producer = a.require_producer()
    _fields(b, ("payload", "points", "filter", "key"), "key")
    new = _required_payload(b)
    return _selected(a, collection_name, b, lambda chunk: producer.overwrite_payload(collection_name, chunk, new))


@router.post("/collections/{collection_name}/points/payload/delete", summary="Delete payload keys",
             openapi_extra=json_body("keys, points or filter"))
def delete_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_delete_payload(a, collection_name, b)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_delete_payload(a: Api, collection_name: str, b: dict[str, Any]) -> Publish:
    producer = a.require_producer()
    _fields(b, ("keys", "points", "filter"))
    keys = [check.payload_path(p.string(k, f"keys[{i}]"), field=f"keys[{i}]")
            for i, k in enumerate(p.array(b.get("keys"), "keys"))]
    return _selected(a, collection_name, b,
                     (lambda chunk: producer.delete_payload_keys(collection_name, chunk, keys)) if keys else None)


@router.post("/collections/{collection_name}/points/payload/clear", summary="Remove the whole payload",
             openapi_extra=json_body("points or filter"))
def clear_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    write = prepare_clear_payload(a, collection_name, b)
    return ok(request, a.write_result(collection_name, write(), opts.wait, opts.timeout))


def prepare_clear_payload(a: Api, collection_name: str, b: dict[str, Any]) -> Publish:
    producer = a.require_producer()
    _fields(b, ("points", "filter"))
    return _selected(a, collection_name, b, lambda chunk: producer.clear_payload(collection_name, chunk))


@router.post("/collections/{collection_name}/points/batch", summary="Several point writes, all or none",
             openapi_extra=json_body("operations: [{upsert | delete | set_payload | overwrite_payload | "
                                     "delete_payload | clear_payload | update_vectors | delete_vectors: {...}}]"))
def batch(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
          b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    """Qdrant's batch update, atomic: every operation is validated first (an invalid one fails the
    request and nothing is published), then all are published in one Kafka transaction, which the
    projection applies as one unit: readers see all of the batch or none of it. Qdrant applies the
    operations in order, not atomically; the answer's ``atomic: true`` says this server differs.
    A ``filter`` selects among the points as they are before the batch."""
    producer = a.require_producer()
    p.fields(b, "", ("operations",))
    operations = p.array(b.get("operations"), "operations")
    known = Known(a.collection(collection_name))
    writes = []
    for i, raw in enumerate(operations):
        op = p.obj(raw, f"operations[{i}]")
        if len(op) != 1 or next(iter(op)) not in _BATCHED:
            raise BadRequest(f"operations[{i}]: expected an object with one of {', '.join(_BATCHED)}, "
                             f"got {p.show(sorted(op))}")
        kind, given = next(iter(op.items()))
        given = p.obj(given, f"operations[{i}].{kind}")
        try:  # update vectors of a missing point: refused now, waiting or not (the batch is all or none)
            writes.append(_BATCHED[kind](a, collection_name, given, known, True))
        except VectorizerError as exc:
            raise _in_operation(exc, f"operations[{i}].{kind}") from None
    tokens: list[WriteToken | None] = []
    if writes:
        with producer.transaction():
            tokens = [write() for write in writes]
    published = [t for t in tokens if t is not None]
    whole = a.write_result(collection_name, WriteToken.joined(published) if published else None, opts.wait,
                           opts.timeout)
    results = [{**whole, "operation_id": whole["operation_id"] if t is None else t.offset} for t in tokens]
    return ok(request, results, atomic=True)


def _in_operation(exc: VectorizerError, where: str) -> VectorizerError:
    """``exc`` with the batch operation it is about named first (same class, same status)."""
    try:
        return type(exc)(f"{where}: {exc}")
    except TypeError:  # an error class built from other arguments: as it is
        return exc


_BATCHED: dict[str, Callable[[Api, str, dict[str, Any], Known, bool | None], Publish]] = {
    "upsert": lambda a, name, b, known, wait: prepare_upsert(a, name, b, known),
    "delete": lambda a, name, b, known, wait: prepare_delete(a, name, b, known),
    "set_payload": lambda a, name, b, known, wait: prepare_set_payload(a, name, b),
    "overwrite_payload": lambda a, name, b, known, wait: prepare_overwrite_payload(a, name, b),
    "delete_payload": lambda a, name, b, known, wait: prepare_delete_payload(a, name, b),
    "clear_payload": lambda a, name, b, known, wait: prepare_clear_payload(a, name, b),
    "update_vectors": prepare_update_vectors,
    "delete_vectors": lambda a, name, b, known, wait: prepare_delete_vectors(a, name, b),
}


def _required_payload(b: dict[str, Any]) -> dict[str, Any]:
    value = p.payload(b.get("payload"), "payload")
    if value is None:
        raise BadRequest("payload: required")
    return value
