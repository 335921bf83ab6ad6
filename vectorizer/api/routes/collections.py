"""Collections: list, create, describe, exists, delete (Qdrant's REST shapes).

Creating and deleting a collection are synchronous, as in Qdrant: the answer comes once
this server applied the event, so the next request sees the collection (or its absence).
"""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from infra.errors import ConfigurationError
from infra.kafka.topics import partition_for
from producers.errors import WriteRejected
from projections import query
from projections.collection import Collection, CollectionConfig, VectorSpec
from projections.errors import CollectionExists
from schemas import validation as check
from schemas.errors import ValidationError
from vectorizer import embedders
from vectorizer.api import parsing as p
from vectorizer.api.access import ACCESS
from vectorizer.api.context import Api, api, body, json_body, ok, timeout_param
from vectorizer.api.errors import BadRequest, Unprocessable

router = APIRouter(tags=["collections"])

DISTANCES = {"Cosine": "cosine", "Euclid": "l2", "Dot": "ip", "Manhattan": "manhattan"}
_MAX_SIZE = 65_536
QDRANT_DISTANCE = {metric: name for name, metric in DISTANCES.items()}
Timeout = timeout_param("Seconds to wait for this server to apply the change, or for `consistency`")


@router.get("/collections", summary="List collections")
def list_collections(request: Request, a: Api = Depends(api)) -> JSONResponse:
    return ok(request, {"collections": [{"name": name} for name in names(a)]})


def names(a: Api) -> list[str]:
    """The collections the caller may read (every one, unless a JWT grants only some)."""
    a.require_ready()
    return sorted(ACCESS.get().readable(a.projection.collections()))


@router.put("/collections/{collection_name}", summary="Create a collection",
            openapi_extra=json_body("vectors {size, distance}, optional hnsw_config {m, ef_construct}"))
def create_collection(request: Request, collection_name: str, timeout: float | None = Timeout,
                      b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    return _bool_answer(request, True, create(a, collection_name, b, timeout))


def create(a: Api, collection_name: str, b: dict[str, Any], timeout: float | None) -> str:
    """Create the collection Qdrant's ``CreateCollection`` body describes, once applied here; its
    write token (REST and gRPC). 409 if it exists, a 400 if an alias has the name."""
    producer = a.require_producer()
    spec = _creation(b)
    if a.projection.collection(collection_name) is not None:
        raise CollectionExists(f"Wrong input: Collection `{collection_name}` already exists!")
    if collection_name in a.projection.aliases():
        raise BadRequest(f"Wrong input: Can't create collection with name {collection_name}. Alias with the same "
                         "name already exists")
    token = producer.create_collection(collection_name, **spec)
    a.await_tokens([token], a.timeout(timeout))
    try:
        a.check_verdict(token)
    except WriteRejected as exc:
        if exc.status == 409:  # a concurrent create won the race
            raise CollectionExists(f"Wrong input: Collection `{collection_name}` already exists!") from None
        raise
    return str(a.tagged(token))


@router.patch("/collections/{collection_name}", summary="Change a collection's index settings",
              openapi_extra=json_body("hnsw_config {m, ef_construct}, quantization_config (or \"Disabled\"), "
                                      "vectors {\"\": {hnsw_config, quantization_config, on_disk}}"))
def update_collection(request: Request, collection_name: str, timeout: float | None = Timeout,
                      b: dict[str, Any] = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    """Synchronous, as in Qdrant: the answer comes once this server applied the change, which
    rebuilds the collection's graphs when what they are built with changed."""
    producer = a.require_producer()
    diff = _update(b, a.collection(collection_name).config)  # 404 if it does not exist
    if not diff:
        return _bool_answer(request, True, None)
    token = producer.update_collection(collection_name, diff)
    a.await_tokens([token], a.timeout(timeout))
    a.check_verdict(token)
    return _bool_answer(request, True, str(a.tagged(token)))


@router.get("/collections/{collection_name}", summary="Collection info, points_count included")
def get_collection(request: Request, collection_name: str, consistency: str | None = None,
                   timeout: float | None = Timeout, a: Api = Depends(api)) -> JSONResponse:
    return ok(request, info(a, collection_name, consistency, timeout))


def info(a: Api, collection_name: str, consistency: str | None, timeout: float | None) -> dict[str, Any]:
    """Qdrant's ``CollectionInfo`` once this server applied the ``consistency`` tokens (REST and gRPC)."""
    a.require_ready()
    a.await_tokens(p.consistency_tokens(consistency), a.timeout(timeout))
    coll = a.collection(collection_name)
    return collection_info(coll, _queued(a, collection_name))


def _queued(a: Api, collection: str) -> int:
    """Records of ``collection``'s partition not yet applied here (other collections' records on
    that partition included: they are applied first)."""
    partitions = a.projection.partitions() or [0]
    return a.projection.lag().get(partitions[partition_for(collection, len(partitions))], 0)


@router.get("/collections/{collection_name}/exists", summary="Whether the collection exists")
def collection_exists(request: Request, collection_name: str, consistency: str | None = None,
                      timeout: float | None = Timeout, a: Api = Depends(api)) -> JSONResponse:
    return ok(request, {"exists": exists(a, collection_name, consistency, timeout)})


def exists(a: Api, collection_name: str, consistency: str | None, timeout: float | None) -> bool:
    a.require_ready()
    a.await_tokens(p.consistency_tokens(consistency), a.timeout(timeout))
    return a.projection.collection(collection_name) is not None


@router.delete("/collections/{collection_name}", summary="Delete a collection (false if it did not exist)")
def delete_collection(request: Request, collection_name: str, timeout: float | None = Timeout,
                      a: Api = Depends(api)) -> JSONResponse:
    return _bool_answer(request, *delete(a, collection_name, timeout))


def delete(a: Api, collection_name: str, timeout: float | None) -> tuple[bool, str | None]:
    """Delete the collection, once applied here: whether it existed, and the write token (``None``
    when nothing was published; REST and gRPC)."""
    producer = a.require_producer()
    if a.projection.collection(collection_name) is None:
        return False, None
    token = producer.delete_collection(collection_name)
    a.await_tokens([token], a.timeout(timeout))
    try:
        a.check_verdict(token)
    except WriteRejected as exc:
        if exc.status == 404:  # a concurrent delete came first: this one deleted nothing
            return False, str(a.tagged(token))
        raise
    return True, str(a.tagged(token))


def _bool_answer(request: Request, result: bool, token: str | None) -> JSONResponse:
    """Qdrant answers collection changes with a bare boolean, so the token sits beside it."""
    return ok(request, result) if token is None else ok(request, result, write_token=token)


def _creation(b: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``VectorProducer.create_collection`` from Qdrant's ``CreateCollection``.

    What Qdrant rejects is rejected with Qdrant's status: a value of the wrong type is a 400
    (``Format error in JSON body: ...``), a well-typed value its validation refuses a 422
    (``Validation error in JSON body: [field: reason]``). Features this server lacks
    (product and binary quantization, strict mode, sparse vectors ...) are a 400 naming the field, never
    dropped.
    Tuning knobs and storage placement (shards, replicas, on-disk flags, ``memory``, WAL,
    optimizers) are checked as Qdrant checks them and then ignored: they change neither what a
    collection holds nor what it answers, and its info shows this server's actual values.
    """
    p.fields(b, "", ("vectors", "hnsw_config", "quantization_config", "sparse_vectors", "init_from", "metadata",
                     "sharding_method", "embedder"),
             ignored=("shard_number", "replication_factor", "write_consistency_factor", "on_disk_payload",
                      "payload", "id_tracker", "optimizers_config", "wal_config", "strict_mode_config"))
    p.unsupported(b, "init_from", "metadata", "sharding_method")
    quantization = _quantization(b.get("quantization_config"), "quantization_config")
    for name in ("shard_number", "replication_factor", "write_consistency_factor"):
        if b.get(name) is not None:
            _at_least(_unsigned(b[name], name, "u32"), name, 1)
    _boolean(b.get("on_disk_payload"), "on_disk_payload")
    if b.get("payload") is not None:
        payload = p.obj(b["payload"], "payload")
        p.fields(payload, "payload", ("memory",))
        _memory(payload.get("memory"), "payload.memory", refuse_pinned="payload storage")
    _knobs(b.get("wal_config"), "wal_config", {"wal_capacity_mb": 1, "wal_segments_ahead": 0,
                                               "wal_retain_closed": 0})
    _optimizers(b.get("optimizers_config"))
    if b.get("strict_mode_config") is not None:
        strict = p.obj(b["strict_mode_config"], "strict_mode_config")
        if strict.get("enabled") is True:
            raise BadRequest("strict_mode_config: not supported by this server (strict mode is not enforced)")
    vectors = p.obj(b.get("vectors"), "vectors")
    collection_hnsw = _hnsw(b.get("hnsw_config"), "hnsw_config")
    sparse = _sparse_vectors(b.get("sparse_vectors"))
    if "size" in vectors or not vectors and not sparse:  # one unnamed vector
        spec = _vector_params(vectors, "vectors", quantization, collection_hnsw)
        dimension = spec.pop("size")
        embedder = _embedder(b.get("embedder"), dimension)
        return {"dimension": dimension, **spec, **({"sparse_vectors": sparse} if sparse else {}),
                **({"embedder": embedder} if embedder is not None else {})}
    if b.get("embedder") is not None:
        raise BadRequest("embedder: an embedder fills the unnamed vector: give vectors as {\"size\": N, \"distance\": "
                         "...} with N its dimension")
    named = {}
    for name, params in vectors.items():
        if name == "":
            raise BadRequest("vectors: the unnamed vector is {\"size\": N, \"distance\": ...}; named vectors need "
                             "non-empty names")
        try:
            check.vector_name(name, field=f"vectors.{name}")
        except ValidationError as exc:
            raise BadRequest(str(exc)) from None
        spec = _vector_params(p.obj(params, f"vectors.{name}"), f"vectors.{name}", quantization, collection_hnsw)
        if "quantization" in spec:
            spec["quantization"] = json.dumps(spec["quantization"], sort_keys=True, separators=(",", ":"))
        named[name] = {k.replace("dimension", "size"): v for k, v in spec.items()}
    for name in sparse:
        if name in named:
            raise BadRequest(f"Wrong input: Vector name {name} is used for both dense and sparse vectors")
    out: dict[str, Any] = {"dimension": 0, "metric": "cosine"}
    if named:
        out["vectors"] = named
    if sparse:
        out["sparse_vectors"] = sparse
    return out


def _embedder(raw: Any, dimension: int) -> dict[str, Any] | None:
    """The extension field ``embedder`` (e.g. ``{"name": "hashing", "dimension": 64}``): the embedder
    that fills the unnamed vector from texts (``points/text``, ``search/text``, the MCP text tools).
    Its dimension must be the vector's size; a sparse embedder is for workspace collections only."""
    if raw is None:
        return None
    spec = p.obj(raw, "embedder")
    if "sparse" in spec:
        raise BadRequest("embedder.sparse: not supported here (workspace collections only: embedding.sparse)")
    try:
        built = embedders.build(spec)
    except ConfigurationError as exc:
        raise BadRequest(str(exc)) from None
    if built.dimension != dimension:
        raise BadRequest(f"embedder: its dimension is {built.dimension}, the vector's size {dimension}: they must "
                         f"be equal")
    return built.spec


def _vector_params(vectors: dict[str, Any], path: str, quantization: dict[str, Any] | None,
                   collection_hnsw: dict[str, int]) -> dict[str, Any]:
    """One dense vector's ``VectorParams``: ``size``, ``metric`` and its index settings (its own
    ``hnsw_config`` and ``quantization_config`` over the collection's)."""
    p.fields(vectors, path, ("size", "distance", "hnsw_config", "datatype", "multivector_config",
                             "quantization_config", "on_disk"),
             ignored=("memory",))
    quantization = _quantization(vectors.get("quantization_config"), f"{path}.quantization_config") or quantization
    _boolean(vectors.get("on_disk"), f"{path}.on_disk")
    _memory(vectors.get("memory"), f"{path}.memory", refuse_pinned="dense vector storage")
    if vectors.get("multivector_config") is not None:
        raise BadRequest(f"{path}.multivector_config: multivectors are not supported by this server (one vector "
                         f"per name and point)")
    if vectors.get("datatype") not in (None, "float32"):
        raise BadRequest(f"{path}.datatype: only float32 is supported, got {p.show(vectors['datatype'])}")
    if "size" not in vectors:
        raise BadRequest(f"{path}.size: required")
    size = vectors["size"]
    if isinstance(size, int) and not isinstance(size, bool) and size > _MAX_SIZE:  # Qdrant's validator range
        raise Unprocessable(f"Validation error in JSON body: [{path}.size: value {size} invalid, must be from 1 "
                            f"to {_MAX_SIZE}]")
    size = p.integer(size, f"{path}.size", minimum=1, maximum=_MAX_SIZE)  # 0: not Qdrant's NonZeroU64, a 400
    distance = vectors.get("distance")
    metric = DISTANCES.get(distance) if isinstance(distance, str) else None
    if metric is None:
        raise BadRequest(f"{path}.distance: unknown distance {p.show(distance)}, expected one of "
                         f"{', '.join(DISTANCES)}")
    spec: dict[str, Any] = {"size": size, "metric": metric, **collection_hnsw,
                            **_hnsw(vectors.get("hnsw_config"), f"{path}.hnsw_config")}
    if vectors.get("on_disk") is not None:
        spec["on_disk"] = vectors["on_disk"]
    if quantization is not None:
        if metric == "manhattan":
            raise BadRequest(f"{path}: scalar quantization is not supported with the Manhattan distance by this "
                             f"server (faiss's scalar quantizer has no L1 metric)")
        spec["quantization"] = quantization
    return spec


def _sparse_vectors(value: object) -> dict[str, dict[str, Any]]:
    """Qdrant's ``sparse_vectors_config``: ``{name: {index: {...}, modifier: "idf" | "none"}}``; the
    index knobs are checked and ignored (the inverted index is in memory, scoring exact)."""
    if value is None:
        return {}
    out = {}
    for name, raw in p.obj(value, "sparse_vectors").items():
        path = f"sparse_vectors.{name}"
        try:
            check.vector_name(name, field=path)
        except ValidationError as exc:
            raise BadRequest(str(exc)) from None
        params = {} if raw is None else p.obj(raw, path)
        p.fields(params, path, ("index", "modifier"))
        if params.get("index") is not None:
            index = p.obj(params["index"], f"{path}.index")
            p.fields(index, f"{path}.index", (), ignored=("full_scan_threshold", "on_disk", "datatype"))
            if index.get("full_scan_threshold") is not None:
                _unsigned(index["full_scan_threshold"], f"{path}.index.full_scan_threshold")
            _boolean(index.get("on_disk"), f"{path}.index.on_disk")
            if index.get("datatype") not in (None, "float32"):
                raise BadRequest(f"{path}.index.datatype: only float32 is supported, got "
                                 f"{p.show(index['datatype'])}")
        modifier = params.get("modifier")
        if modifier not in (None, "idf", "none"):
            raise _format_error(f"{path}.modifier", f"unknown variant `{modifier}`, expected `none` or `idf`")
        out[name] = {"modifier": "idf"} if modifier == "idf" else {}
    return out


def _hnsw(hnsw: object, path: str) -> dict[str, int]:
    """Qdrant's ``HnswConfigDiff``: ``m``, ``ef_construction`` and ``ef`` (a Vectorizer extension, the
    default search breadth) as given; the other knobs checked and ignored."""
    if hnsw is None:
        return {}
    hnsw = p.obj(hnsw, path)
    p.fields(hnsw, path, ("m", "ef_construct", "ef"),
             ignored=("full_scan_threshold", "max_indexing_threads", "on_disk", "payload_m", "memory",
                      "inline_storage", "copy_vectors"))
    _knobs({k: v for k, v in hnsw.items() if k in ("full_scan_threshold", "max_indexing_threads", "payload_m")},
           path, {"full_scan_threshold": 10, "max_indexing_threads": 0, "payload_m": 0})
    for flag in ("on_disk", "inline_storage", "copy_vectors"):
        _boolean(hnsw.get(flag), f"{path}.{flag}")
    _memory(hnsw.get("memory"), f"{path}.memory", refuse_pinned=None)
    out: dict[str, int] = {}
    if hnsw.get("m") is not None:
        out["m"] = p.integer(hnsw["m"], f"{path}.m", minimum=2, maximum=256)
    if hnsw.get("ef_construct") is not None:
        _at_least(_unsigned(hnsw["ef_construct"], f"{path}.ef_construct"), f"{path}.ef_construct", 4)
        out["ef_construction"] = p.integer(hnsw["ef_construct"], f"{path}.ef_construct", minimum=4, maximum=10_000)
    if hnsw.get("ef") is not None:
        out["ef"] = p.integer(hnsw["ef"], f"{path}.ef", minimum=1, maximum=10_000)
    return out


def _update(b: dict[str, Any], config: CollectionConfig | None = None) -> dict[str, Any]:
    """The settings diff of ``VectorProducer.update_collection`` from Qdrant's ``UpdateCollection``:
    HNSW ``m``/``ef_construct``, quantization and ``on_disk`` at the collection and the unnamed
    vector's level. Optimizer, replication and payload-storage knobs are checked as Qdrant checks
    them and then ignored, as at creation; sparse vectors and metadata are a 400 naming the field."""
    p.fields(b, "", ("vectors", "hnsw_config", "quantization_config", "quantization", "sparse_vectors", "metadata"),
             ignored=("optimizers_config", "optimizer_config", "params", "strict_mode_config"))
    p.unsupported(b, "metadata")
    _optimizers(b.get("optimizers_config", b.get("optimizer_config")))
    if b.get("params") is not None:
        params = p.obj(b["params"], "params")
        p.fields(params, "params", (), ignored=("replication_factor", "write_consistency_factor",
                                                "read_fan_out_factor", "on_disk_payload"))
        for name in ("replication_factor", "write_consistency_factor"):
            if params.get(name) is not None:
                _at_least(_unsigned(params[name], f"params.{name}", "u32"), f"params.{name}", 1)
        if params.get("read_fan_out_factor") is not None:
            _unsigned(params["read_fan_out_factor"], "params.read_fan_out_factor", "u32")
        _boolean(params.get("on_disk_payload"), "params.on_disk_payload")
    if b.get("strict_mode_config") is not None:
        strict = p.obj(b["strict_mode_config"], "strict_mode_config")
        if strict.get("enabled") is True:
            raise BadRequest("strict_mode_config: not supported by this server (strict mode is not enforced)")
    diff: dict[str, Any] = {}
    hnsw = _hnsw_diff(b.get("hnsw_config"), "hnsw_config")
    if hnsw:
        diff["hnsw_config"] = hnsw
    quantization = _quantization_diff(b.get("quantization_config", b.get("quantization")), "quantization_config")
    if quantization is not None:
        diff["quantization_config"] = quantization
    vectors = {} if b.get("vectors") is None else p.obj(b["vectors"], "vectors")
    for name, params in vectors.items():
        if config is not None and name not in config.dense():
            raise BadRequest(f"Wrong input: Not existing vector name error: {name}")
        params = p.obj(params, f"vectors.{name}")
        p.fields(params, f"vectors.{name}", ("hnsw_config", "quantization_config", "quantization", "on_disk"),
                 ignored=("memory",))
        _memory(params.get("memory"), f"vectors.{name}.memory", refuse_pinned="dense vector storage")
        _boolean(params.get("on_disk"), f"vectors.{name}.on_disk")
        vector: dict[str, Any] = {}
        hnsw = _hnsw_diff(params.get("hnsw_config"), f"vectors.{name}.hnsw_config")
        if hnsw:
            vector["hnsw_config"] = hnsw
        quantization = _quantization_diff(params.get("quantization_config", params.get("quantization")),
                                          f"vectors.{name}.quantization_config")
        if quantization is not None:
            vector["quantization_config"] = quantization
        if params.get("on_disk") is not None:
            vector["on_disk"] = params["on_disk"]
        if vector and name == "":
            diff["vector"] = vector
        elif vector:
            diff.setdefault("named", {})[name] = vector
    sparse = {} if b.get("sparse_vectors") is None else p.obj(b["sparse_vectors"], "sparse_vectors")
    for name, params in _sparse_vectors(sparse).items():
        if config is not None and name not in config.sparse():
            raise BadRequest(f"Wrong input: Not existing vector name error: {name}")
        if "modifier" in (sparse[name] or {}):
            diff.setdefault("sparse", {})[name] = {"modifier": params.get("modifier", "none")}
    return diff


def _hnsw_diff(hnsw: object, path: str) -> dict[str, int]:
    spec = _hnsw(hnsw, path)
    if "ef" in spec:
        raise BadRequest(f"{path}.ef: set at creation only (the default search breadth); pass params.hnsw_ef "
                         f"with a search")
    out = {"m": spec["m"]} if "m" in spec else {}
    if "ef_construction" in spec:
        out["ef_construct"] = spec["ef_construction"]
    return out


def _quantization_diff(value: object, path: str) -> object:
    """Qdrant's ``QuantizationConfigDiff``: a config (as at creation) or ``"Disabled"``."""
    if value == "Disabled":
        return "Disabled"
    return _quantization(value, path)


# Qdrant's checks of CreateCollection (serde types: 400; validator ranges: 422) ---------------
_UNSIGNED_MAX = {"u32": 2**32 - 1, "u64": 2**64 - 1, "usize": 2**64 - 1}
_MEMORY = ("cold", "cached", "pinned")


def _format_error(path: str, problem: str) -> BadRequest:
    return BadRequest(f"Format error in JSON body: {path}: {problem}")


def _invalid_type(value: object, expected: str) -> str:
    if isinstance(value, bool):
        return f"invalid type: boolean `{str(value).lower()}`, expected {expected}"
    if isinstance(value, int):
        return f"invalid type: integer `{value}`, expected {expected}"
    if isinstance(value, float):
        return f"invalid type: floating point `{value}`, expected {expected}"
    if isinstance(value, str):
        return f"invalid type: string {p.show(value)}, expected {expected}"
    return f"invalid type: {'sequence' if isinstance(value, list) else 'map'}, expected {expected}"


def _unsigned(value: object, path: str, kind: str = "usize") -> int:
    """An unsigned integer as serde reads Qdrant's ``u32`` / ``u64`` / ``usize`` fields."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _format_error(path, _invalid_type(value, kind))
    if not 0 <= value <= _UNSIGNED_MAX[kind]:
        raise _format_error(path, f"invalid value: integer `{value}`, expected {kind}")
    return value


def _at_least(value: float, path: str, minimum: float) -> None:
    if value < minimum:
        raise Unprocessable(f"Validation error in JSON body: [{path}: value {value} invalid, must be {minimum} "
                            f"or larger]")


def _boolean(value: object, path: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise _format_error(path, _invalid_type(value, "a boolean"))


def _memory(value: object, path: str, *, refuse_pinned: str | None) -> None:
    """Qdrant's ``Memory`` placement; ``pinned`` is refused for the storages it names."""
    if value is None:
        return
    if not isinstance(value, str):
        raise _format_error(path, _invalid_type(value, "a memory placement"))
    if value not in _MEMORY:
        raise _format_error(path, f"unknown variant `{value}`, expected one of "
                                  f"{', '.join(f'`{m}`' for m in _MEMORY)}")
    if value == "pinned" and refuse_pinned is not None:
        raise Unprocessable(f"Validation error in JSON body: [{path}: `pinned` memory placement is not "
                            f"supported for {refuse_pinned}]")


def _knobs(section: object, path: str, minimum: dict[str, int]) -> None:
    """An object of unsigned tuning integers, each at least its ``minimum`` (``wal_config`` ...)."""
    if section is None:
        return
    knobs = p.obj(section, path)
    p.fields(knobs, path, minimum)
    for name, value in knobs.items():
        if value is not None:
            _at_least(_unsigned(value, f"{path}.{name}"), f"{path}.{name}", minimum[name])


def _optimizers(section: object) -> None:
    """Qdrant's ``OptimizersConfigDiff`` checks (the optimizer itself does not exist here)."""
    if section is None:
        return
    path = "optimizers_config"
    opt = p.obj(section, path)
    threshold = opt.get("deleted_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise _format_error(f"{path}.deleted_threshold", _invalid_type(threshold, "f64"))
        if not 0.0 <= threshold <= 1.0:
            raise Unprocessable(f"Validation error in JSON body: [{path}.deleted_threshold: value {threshold} "
                                f"invalid, must be from 0.0 to 1.0]")
    threads = opt.get("max_optimization_threads")
    if threads is not None and threads != "auto":
        if isinstance(threads, str):
            raise _format_error(f"{path}.max_optimization_threads", f"unknown variant `{threads}`, expected `auto`")
        _unsigned(threads, f"{path}.max_optimization_threads")
    _boolean(opt.get("prevent_unoptimized"), f"{path}.prevent_unoptimized")
    _knobs({k: v for k, v in opt.items() if k not in ("deleted_threshold", "max_optimization_threads",
                                                       "prevent_unoptimized")}, path,
           {"vacuum_min_vector_number": 100, "default_segment_number": 0, "max_segment_size": 1,
            "max_segment_size_kb": 1, "memmap_threshold": 0, "memmap_threshold_kb": 0, "indexing_threshold": 0,
            "indexing_threshold_kb": 0, "flush_interval_sec": 0})


def _quantization(value: object, path: str) -> dict[str, Any] | None:
    """Qdrant's ``QuantizationConfig``: scalar int8 is kept (canonical), product and binary are a 400
    naming the field (not supported here), a quantile outside 0.5..1 is Qdrant's 422."""
    if value is None:
        return None
    scalar = value.get("scalar") if isinstance(value, dict) else None
    if isinstance(scalar, dict) and isinstance(scalar.get("quantile"), (int, float)) \
            and not isinstance(scalar["quantile"], bool) and not 0.5 <= scalar["quantile"] <= 1.0:
        raise Unprocessable(f"Validation error in JSON body: [{path}.scalar.quantile: value {scalar['quantile']} "
                            f"invalid, must be from 0.5 to 1.0]")
    try:
        canonical = check.quantization(value, field=path)
    except ValidationError as exc:
        raise BadRequest(str(exc)) from None
    return None if canonical is None else cast(dict[str, Any], json.loads(canonical))


#: Qdrant's defaults of the optimizer knobs this server accepts and ignores (it has no optimizer:
#: every vector goes into its HNSW graph as it is applied, nothing is vacuumed or merged).
#: ``max_segment_size`` is not among them: it is this server's real segment size.
OPTIMIZER_DEFAULTS: dict[str, Any] = {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                      "default_segment_number": 0, "memmap_threshold": None,
                                      "indexing_threshold": 10000, "flush_interval_sec": 5,
                                      "max_optimization_threads": None, "prevent_unoptimized": None}
#: Qdrant's default WAL settings, accepted and ignored: Kafka is this server's write-ahead log.
WAL_DEFAULTS: dict[str, int] = {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1}


def collection_info(coll: Collection, queued: int = 0) -> dict[str, Any]:
    """Qdrant's ``CollectionInfo`` (the shape of Qdrant 1.16+) with this server's values.

    ``queued``: Qdrant's ``update_queue.length``, records of the collection's partition published
    and not yet applied here. ``warnings`` is left out, as Qdrant leaves out an empty list: none of
    Qdrant's warnings (an ignored ``inline_storage``) can arise, the flag not being kept.
    """
    config = coll.config
    count = coll.count()
    hnsw = config.levels()["hnsw_config"]
    return {
        "status": "green",
        "optimizer_status": "ok",
        "indexed_vectors_count": count,  # every vector is in a graph once applied
        "points_count": count,
        "segments_count": max(1, len(coll.index.segments)),
        "config": {
            "params": collection_params(coll),
            "hnsw_config": {"m": hnsw.get("m", config.m),
                            "ef_construct": hnsw.get("ef_construct", config.ef_construction),
                            "full_scan_threshold": 0, "max_indexing_threads": 0, "on_disk": False, "ef": config.ef},
            "optimizer_config": {**OPTIMIZER_DEFAULTS, "max_segment_size": _segment_kb(coll)},
            "wal_config": dict(WAL_DEFAULTS),
            "quantization_config": config.levels()["quantization_config"],
        },
        "payload_schema": payload_schema(coll),
        "update_queue": {"length": queued},
    }


def collection_params(coll: Collection) -> dict[str, Any]:
    """Qdrant's ``CollectionParams`` (``on_disk`` as :func:`_on_disk` reports it)."""
    config = coll.config
    levels = config.levels()
    vectors: dict[str, Any] = {"size": config.dimension, "distance": QDRANT_DISTANCE[config.metric]}
    vector = levels["vector"]
    if vector.get("hnsw_config"):
        vectors["hnsw_config"] = vector["hnsw_config"]
    if vector.get("quantization_config") is not None:
        vectors["quantization_config"] = vector["quantization_config"]
    if config.has_unnamed:
        if (on_disk := _on_disk(config.unnamed())) is not None:
            vectors["on_disk"] = on_disk
    else:
        vectors = {name: _named_params(spec) for name, spec in config.named().items()}
    return {"vectors": vectors,
            **({"sparse_vectors": {name: ({"modifier": "idf"} if params.get("modifier") == "idf" else {})
                                   for name, params in config.sparse().items()}}
               if config.sparse() else {}),
            "shard_number": 1, "replication_factor": 1, "write_consistency_factor": 1,
            "on_disk_payload": False}


def _on_disk(spec: VectorSpec) -> bool | None:
    """``on_disk`` as Qdrant reports it: as given, and absent when not given (Qdrant's default, in
    memory); but ``true`` for int8-quantized vectors created without it, whose original rows this
    server keeps on disk (float32 rows are in memory unless ``on_disk: true`` was asked)."""
    if spec.on_disk is None and spec.quantization is not None:
        return True
    return spec.on_disk


def _segment_kb(coll: Collection) -> int:
    """Qdrant's ``max_segment_size`` (kilobytes of vector data per segment): this server's segment
    size, in labels of the collection's widest vector, as kilobytes of float32 rows."""
    return coll.index.segment_size * 4 * max(1, coll.config.widest()) // 1024


def _named_params(spec: VectorSpec) -> dict[str, Any]:
    """A named vector's ``VectorParams`` as Qdrant reports them."""
    out: dict[str, Any] = {"size": spec.size, "distance": QDRANT_DISTANCE[spec.metric],
                           "hnsw_config": {"m": spec.m, "ef_construct": spec.ef_construction}}
    if spec.quantization is not None:
        out["quantization_config"] = json.loads(spec.quantization)
    if (on_disk := _on_disk(spec)) is not None:
        out["on_disk"] = on_disk
    return out


def payload_schema(coll: Collection) -> dict[str, Any]:
    """Qdrant's ``payload_schema``: each indexed field's ``data_type``, ``params`` and ``points``."""
    with query.reading(coll):
        return {index.field: index.info() for index in coll.indexes}
