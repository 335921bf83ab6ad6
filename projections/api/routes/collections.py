"""Collections: list, create, describe, exists, delete (Qdrant's REST shapes).

Creating and deleting a collection are synchronous, as in Qdrant: the answer comes once
this server applied the event, so the next request sees the collection (or its absence).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from projections.api import parsing as p
from projections.api.context import Api, api, body, json_body, ok, timeout_param
from projections.api.errors import BadRequest
from projections.collection import Collection
from projections.errors import CollectionExists

router = APIRouter(tags=["collections"])

DISTANCES = {"Cosine": "cosine", "Euclid": "l2", "Dot": "ip"}
QDRANT_DISTANCE = {metric: name for name, metric in DISTANCES.items()}
Timeout = timeout_param("Seconds to wait for this server to apply the change, or for `consistency`")


@router.get("/collections", summary="List collections")
def list_collections(request: Request, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    names = sorted(dict(a.projector.state.collections))
    return ok(request, {"collections": [{"name": name} for name in names]})


@router.put("/collections/{collection_name}", summary="Create a collection",
            openapi_extra=json_body("vectors {size, distance}, optional hnsw_config {m, ef_construct}"))
def create_collection(request: Request, collection_name: str, timeout: float | None = Timeout,
                      b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    spec = _creation(b)
    if a.projector.state.get(collection_name) is not None:
        raise CollectionExists(f"Wrong input: Collection `{collection_name}` already exists!")
    token = producer.create_collection(collection_name, **spec)
    a.await_tokens([token], a.timeout(timeout))
    coll = a.projector.state.get(collection_name)
    if coll is None or coll.created_offset != token.offset:  # a concurrent create won the race
        raise CollectionExists(f"Wrong input: Collection `{collection_name}` already exists!")
    return _bool_answer(request, True, str(token))


@router.get("/collections/{collection_name}", summary="Collection info, points_count included")
def get_collection(request: Request, collection_name: str, consistency: str | None = None,
                   timeout: float | None = Timeout, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    a.await_tokens(p.consistency_tokens(consistency), a.timeout(timeout))
    return ok(request, collection_info(a.collection(collection_name)))


@router.get("/collections/{collection_name}/exists", summary="Whether the collection exists")
def collection_exists(request: Request, collection_name: str, consistency: str | None = None,
                      timeout: float | None = Timeout, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    a.await_tokens(p.consistency_tokens(consistency), a.timeout(timeout))
    return ok(request, {"exists": a.projector.state.get(collection_name) is not None})


@router.delete("/collections/{collection_name}", summary="Delete a collection (false if it did not exist)")
def delete_collection(request: Request, collection_name: str, timeout: float | None = Timeout,
                      a: Api = Depends(api)) -> JSONResponse:
    producer = a.require_producer()
    if a.projector.state.get(collection_name) is None:
        return _bool_answer(request, False, None)
    token = producer.delete_collection(collection_name)
    a.await_tokens([token], a.timeout(timeout))
    return _bool_answer(request, True, str(token))


def _bool_answer(request: Request, result: bool, token: str | None) -> JSONResponse:
    """Qdrant answers collection changes with a bare boolean, so the token sits beside it."""
    return ok(request, result) if token is None else ok(request, result, write_token=token)


def _creation(b: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``VectorProducer.create_collection`` from Qdrant's ``CreateCollection``."""
    p.fields(b, "", ("vectors", "hnsw_config", "quantization_config", "sparse_vectors", "init_from", "metadata",
                     "sharding_method"),
             ignored=("shard_number", "replication_factor", "write_consistency_factor", "on_disk_payload",
                      "payload", "id_tracker", "optimizers_config", "wal_config", "strict_mode_config"))
    p.unsupported(b, "sparse_vectors", "init_from", "metadata", "sharding_method")
    vectors = p.obj(b.get("vectors"), "vectors")
    if "size" not in vectors and vectors and all(isinstance(v, dict) for v in vectors.values()):
        raise BadRequest("vectors: named vectors are not supported; use {\"size\": N, \"distance\": ...}")
    p.fields(vectors, "vectors", ("size", "distance", "hnsw_config", "datatype", "multivector_config"),
             ignored=("on_disk", "memory", "quantization_config"))
    if vectors.get("multivector_config") is not None:
        raise BadRequest("vectors.multivector_config: not supported by this server")
    if vectors.get("datatype") not in (None, "float32"):
        raise BadRequest(f"vectors.datatype: only float32 is supported, got {p.show(vectors['datatype'])}")
    if "size" not in vectors:
        raise BadRequest("vectors.size: required")
    size = p.integer(vectors["size"], "vectors.size", minimum=1, maximum=65_536)
    distance = vectors.get("distance")
    metric = DISTANCES.get(distance) if isinstance(distance, str) else None
    if metric is None:
        raise BadRequest(f"vectors.distance: unknown distance {p.show(distance)}, expected one of "
                         f"{', '.join(DISTANCES)}")
    spec: dict[str, Any] = {"dimension": size, "metric": metric}
    for path, hnsw in (("hnsw_config", b.get("hnsw_config")), ("vectors.hnsw_config", vectors.get("hnsw_config"))):
        if hnsw is None:
            continue
        hnsw = p.obj(hnsw, path)
        p.fields(hnsw, path, ("m", "ef_construct", "ef"),
                 ignored=("full_scan_threshold", "max_indexing_threads", "on_disk", "payload_m", "memory",
                          "inline_storage", "copy_vectors"))
        if hnsw.get("m") is not None:
            spec["m"] = p.integer(hnsw["m"], f"{path}.m", minimum=2, maximum=256)
        if hnsw.get("ef_construct") is not None:
            spec["ef_construction"] = p.integer(hnsw["ef_construct"], f"{path}.ef_construct", minimum=4,
                                                maximum=10_000)
        if hnsw.get("ef") is not None:  # Vectorizer extension: the default search breadth
            spec["ef"] = p.integer(hnsw["ef"], f"{path}.ef", minimum=1, maximum=10_000)
    return spec


def collection_info(coll: Collection) -> dict[str, Any]:
    """Qdrant's ``CollectionInfo``: the fields qdrant-client requires, with this server's values."""
    config = coll.config
    count = len(coll)
    return {
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": count,
        "points_count": count,
        "segments_count": 1,
        "config": {
            "params": {"vectors": {"size": config.dimension, "distance": QDRANT_DISTANCE[config.metric]},
                       "shard_number": 1, "replication_factor": 1, "write_consistency_factor": 1,
                       "on_disk_payload": False},
            "hnsw_config": {"m": config.m, "ef_construct": config.ef_construction, "full_scan_threshold": 0,
                            "max_indexing_threads": 0, "on_disk": False, "ef": config.ef},
            "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                 "default_segment_number": 1, "flush_interval_sec": 5},
            "wal_config": None,
            "quantization_config": None,
        },
        "payload_schema": {},
    }
