"""Point writes: upsert, delete, and the four payload edits (Qdrant's REST shapes).

A write names points by id or by ``filter``; a filter is resolved to ids on this server's
projection, then the write is published by id, so every replica applies the same change.
Unknown ids are ignored when the event is applied. The answer is Qdrant's ``UpdateResult``
plus ``write_token``; ``wait=true`` answers once this server applied the write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from producers.producer import WriteToken
from projections import query
from projections.collection import Collection
from projections.errors import PointNotFound
from schemas import validation as check
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


@router.put("/collections/{collection_name}/points", summary="Upsert points (points list or batch)",
            openapi_extra=json_body("points: [{id, vector, payload}] or batch: {ids, vectors, payloads}"))
def upsert(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
           b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    p.fields(b, "", ("points", "batch", "shard_key", "update_filter", "update_mode"))
    p.unsupported(b, "shard_key", "update_filter")
    if b.get("update_mode") not in (None, "upsert"):
        raise BadRequest(f"update_mode: only 'upsert' is supported, got {p.show(b['update_mode'])}")
    config = a.collection(collection_name).config
    ids, rows, row_paths, payloads = _points(b)
    if not ids:
        return ok(request, a.write_result(collection_name, None, opts.wait, opts.timeout))
    last = list({pid: i for i, pid in enumerate(ids)}.values())  # a repeated id: the last one wins
    if len(last) < len(ids):
        ids, rows = [ids[i] for i in last], [rows[i] for i in last]
        row_paths, payloads = [row_paths[i] for i in last], [payloads[i] for i in last]
    if config.named() or config.sparse() or not all(isinstance(row, list) for row in rows):
        collector = Collector(config, len(ids))
        for i, (row, path) in enumerate(zip(rows, row_paths, strict=True)):
            collector.add(i, row, path)
        given = collector.vectors(unnamed_required=True)
        token = producer.upsert(collection_name, ids, given.unnamed, payloads, named=given.named,
                                sparse=given.sparse)
    else:
        token = producer.upsert(collection_name, ids, p.vectors(rows, row_paths, config.dimension), payloads)
    return ok(request, a.write_result(collection_name, token, opts.wait, opts.timeout))


@router.put("/collections/{collection_name}/points/vectors", summary="Update vectors of existing points",
            openapi_extra=json_body("points: [{id, vector: {name: vector}}]"))
def update_vectors(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    """Qdrant's ``update_vectors``: the vectors given replace the points' vectors of those names; the
    others and the payload stay. A point that does not exist is Qdrant's 404 (with ``wait``)."""
    producer = a.require_producer()
    p.fields(b, "", ("points", "shard_key", "update_filter"))
    p.unsupported(b, "shard_key", "update_filter")
    coll = a.collection(collection_name)
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
    with query.reading(coll):
        missing = [pid for pid in ids if pid not in coll.label_of]
    if missing and a.waits(opts.wait):  # the projection rejects it too; with wait, say which point
        raise PointNotFound(f"No point with id {missing[0]} found")
    token = producer.update_vectors(collection_name, ids, named=given.named, sparse=given.sparse)
    return ok(request, a.write_result(collection_name, token, opts.wait, opts.timeout))


@router.post("/collections/{collection_name}/points/vectors/delete", summary="Delete named vectors of points",
             openapi_extra=json_body("points: [ids] or filter, vector: [names]"))
def delete_vectors(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    _fields(b, ("points", "filter", "vector"))
    config = a.collection(collection_name).config
    names = [check_name(config, p.string(name, f"vector[{i}]") if name != "" else "")
             for i, name in enumerate(p.array(b.get("vector"), "vector"))]
    if not names:  # Qdrant's validation of DeleteVectors
        raise Unprocessable("Validation error in JSON body: [vector: must specify vector names to delete]")
    return _publish_selected(request, a, collection_name, b, opts,
                             lambda chunk: producer.delete_vectors(collection_name, chunk, names))


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


def _publish_selected(request: Request, a: Api, collection: str, b: dict[str, Any], opts: WriteOptions,
                      publish: Callable[[list[Any]], WriteToken] | None) -> JSONResponse:
    """Resolve ``points`` or ``filter`` to ids on this server, publish by ids, answer the write."""
    ids = selected_ids(a.collection(collection), b)
    token = a.publish_by_ids(ids, publish) if publish is not None else None
    return ok(request, a.write_result(collection, token, opts.wait, opts.timeout))


@router.post("/collections/{collection_name}/points/delete", summary="Delete points by ids or filter",
             openapi_extra=json_body("points: [ids] or filter"))
def delete_points(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    _fields(b, ("points", "filter"))
    return _publish_selected(request, a, collection_name, b, opts,
                             lambda chunk: producer.delete(collection_name, chunk))


@router.post("/collections/{collection_name}/points/payload", summary="Set payload keys (merge)",
             openapi_extra=json_body("payload, points or filter, optional key"))
def set_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    _fields(b, ("payload", "points", "filter", "key"))
    new = _required_payload(b)
    key = None if b.get("key") is None else check.payload_path(p.string(b["key"], "key"))
    return _publish_selected(request, a, collection_name, b, opts,
                             lambda chunk: producer.set_payload(collection_name, chunk, new, key))


@router.put("/collections/{collection_name}/points/payload", summary="Overwrite the whole payload",
            openapi_extra=json_body("payload, points or filter"))
def overwrite_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                      b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    _fields(b, ("payload", "points", "filter", "key"), "key")
    new = _required_payload(b)
    return _publish_selected(request, a, collection_name, b, opts,
                             lambda chunk: producer.overwrite_payload(collection_name, chunk, new))


@router.post("/collections/{collection_name}/points/payload/delete", summary="Delete payload keys",
             openapi_extra=json_body("keys, points or filter"))
def delete_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                   b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    _fields(b, ("keys", "points", "filter"))
    keys = [check.payload_path(p.string(k, f"keys[{i}]"), field=f"keys[{i}]")
            for i, k in enumerate(p.array(b.get("keys"), "keys"))]
    return _publish_selected(request, a, collection_name, b, opts,
                             (lambda chunk: producer.delete_payload_keys(collection_name, chunk, keys))
                             if keys else None)


@router.post("/collections/{collection_name}/points/payload/clear", summary="Remove the whole payload",
             openapi_extra=json_body("points or filter"))
def clear_payload(request: Request, collection_name: str, opts: WriteOptions = Depends(write_options),
                  b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    _fields(b, ("points", "filter"))
    return _publish_selected(request, a, collection_name, b, opts,
                             lambda chunk: producer.clear_payload(collection_name, chunk))


def _required_payload(b: dict[str, Any]) -> dict[str, Any]:
    value = p.payload(b.get("payload"), "payload")
    if value is None:
        raise BadRequest("payload: required")
    return value
