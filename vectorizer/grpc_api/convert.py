"""Qdrant's gRPC messages to and from the REST shapes the routes parse and answer.

Requests become the JSON objects of Qdrant's REST API (``points: [{id, vector, payload}]``,
``filter: {must: [...]}``, ``query: {fusion: "rrf"}``), so a gRPC call is validated, refused and
executed by the same code as its REST twin, with the same messages (:mod:`vectorizer.grpc_api.services`).
Answers go the other way: the routes' result dicts become Qdrant's response messages.

Only fields that are set are carried over: an unset optional field is the REST field left out,
so defaults are the routes' own. A field this server cannot serve (an inference ``Document``, a
``formula`` query) is carried over as its REST name, where the route refuses it by name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from google.protobuf.message import Message

from vectorizer.api.errors import BadRequest
from vectorizer.grpc_api.qdrant import collections_pb2 as cpb
from vectorizer.grpc_api.qdrant import json_with_int_pb2 as jpb
from vectorizer.grpc_api.qdrant import points_pb2 as ppb
from vectorizer.grpc_api.qdrant import qdrant_common_pb2 as common

Json = Any


# Requests: gRPC -> REST --------------------------------------------------------------------
def point_id(pid: common.PointId) -> int | str:
    kind = pid.WhichOneof("point_id_options")
    if kind is None:
        raise BadRequest("id: a point id is required (num or uuid)")
    return pid.num if kind == "num" else pid.uuid


def value(v: jpb.Value) -> Json:
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "struct_value":
        return payload(v.struct_value.fields)
    if kind == "list_value":
        return [value(item) for item in v.list_value.values]
    return getattr(v, kind)


def payload(fields: Mapping[str, jpb.Value]) -> dict[str, Json]:
    return {key: value(v) for key, v in fields.items()}


#: The vector forms ``Vector`` and ``VectorInput`` share, by their oneof's field name.
_FORMS: dict[str, Callable[[Any], Json]] = {
    "dense": lambda v: dense(v.dense),
    "sparse": lambda v: {"indices": list(v.sparse.indices), "values": list(v.sparse.values)},
    "multi_dense": lambda v: [list(row.data) for row in v.multi_dense.vectors],
}


def _vector(v: ppb.Vector | ppb.VectorOutput) -> Json:
    kind = v.WhichOneof("vector")
    if kind in _FORMS:
        return _FORMS[kind](v)
    if kind is not None:  # document, image, object: inference inputs
        raise BadRequest(f"vector: {kind} inputs need server-side inference, which this server does not do")
    if v.HasField("indices"):  # the deprecated fields: data (+ indices: sparse; vectors_count: multi)
        return {"indices": list(v.indices.data), "values": list(v.data)}
    if v.HasField("vectors_count") and v.vectors_count > 0:
        rows = list(v.data)
        size = len(rows) // v.vectors_count
        return [rows[i:i + size] for i in range(0, len(rows), size)]
    return list(v.data)


def vectors(v: ppb.Vectors) -> Json:
    if v.WhichOneof("vectors_options") == "vectors":
        return {name: _vector(one) for name, one in v.vectors.vectors.items()}
    return _vector(v.vector)


def dense(v: ppb.DenseVector) -> np.ndarray:
    """``data`` as float32, read from the message's wire form (packed little-endian floats) without a
    Python float per element; the routes take such an array as a vector of numbers, checked once."""
    raw = v.SerializeToString()
    if not raw:
        return np.empty(0, np.float32)
    start = 1  # the tag byte of field 1, then the length as a varint
    while raw[start] & 0x80:
        start += 1
    return np.frombuffer(raw, "<f4", offset=start + 1)


def vector_input(v: ppb.VectorInput) -> Json:
    kind = v.WhichOneof("variant")
    if kind == "id":
        return point_id(v.id)
    if kind in _FORMS:
        return _FORMS[kind](v)
    if kind is None:
        raise BadRequest("query: an empty vector input")
    raise BadRequest(f"query: {kind} inputs need server-side inference, which this server does not do")


def point(ps: ppb.PointStruct) -> dict[str, Json]:
    """A point; an empty payload map is no payload (gRPC cannot tell them apart, nor can Qdrant)."""
    out: dict[str, Json] = {"id": point_id(ps.id), "payload": payload(ps.payload) if ps.payload else None}
    if ps.HasField("vectors"):
        out["vector"] = vectors(ps.vectors)
    return out


_UPDATE_MODES = {ppb.Upsert: "upsert", ppb.InsertOnly: "insert_only", ppb.UpdateOnly: "update_only"}


def upsert(req: ppb.UpsertPoints) -> dict[str, Json]:
    out: dict[str, Json] = {"points": [point(ps) for ps in req.points]}
    if req.HasField("update_filter"):
        out["update_filter"] = filter_(req.update_filter)
    if req.HasField("update_mode"):
        out["update_mode"] = _UPDATE_MODES.get(req.update_mode, req.update_mode)
    _shard_key(req, out)
    return out


def selector(sel: ppb.PointsSelector) -> dict[str, Json]:
    """``points: [ids]`` or ``filter`` of a write that names points."""
    if sel.WhichOneof("points_selector_one_of") == "filter":
        return {"filter": filter_(sel.filter)}
    return {"points": [point_id(pid) for pid in sel.points.ids]}


def _shard_key(req: Message, out: dict[str, Json]) -> None:
    """A shard key selector becomes REST's ``shard_key``, which the routes refuse by name."""
    if req.HasField("shard_key_selector"):
        out["shard_key"] = [str(key) for key in req.shard_key_selector.shard_keys]


def _timestamp(ts: Any) -> str:
    return ts.ToDatetime(tzinfo=dt.UTC).isoformat()


def filter_(f: common.Filter) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for clause in ("must", "should", "must_not"):
        conditions = getattr(f, clause)
        if conditions:
            out[clause] = [condition(c) for c in conditions]
    if f.HasField("min_should"):
        out["min_should"] = {"conditions": [condition(c) for c in f.min_should.conditions],
                             "min_count": f.min_should.min_count}
    return out


def condition(c: common.Condition) -> dict[str, Json]:
    kind = c.WhichOneof("condition_one_of")
    if kind == "field":
        return _field_condition(c.field)
    if kind == "is_empty":
        return {"is_empty": {"key": c.is_empty.key}}
    if kind == "is_null":
        return {"is_null": {"key": c.is_null.key}}
    if kind == "has_id":
        return {"has_id": [point_id(pid) for pid in c.has_id.has_id]}
    if kind == "has_vector":
        return {"has_vector": c.has_vector.has_vector}
    if kind == "filter":
        return filter_(c.filter)
    if kind == "nested":
        return {"nested": {"key": c.nested.key, "filter": filter_(c.nested.filter)}}
    if kind == "slice":
        return {"slice": {"total": c.slice.total, "index": c.slice.index}}
    raise BadRequest("filter: an empty condition")


def _set(msg: Message, names: Iterable[str], convert: Any = None) -> dict[str, Json]:
    return {name: (getattr(msg, name) if convert is None else convert(getattr(msg, name)))
            for name in names if msg.HasField(name)}


def _geo(gp: common.GeoPoint) -> dict[str, float]:
    return {"lon": gp.lon, "lat": gp.lat}


def _line(line: common.GeoLineString) -> dict[str, Json]:
    return {"points": [_geo(gp) for gp in line.points]}


_BOUNDS = ("lt", "gt", "gte", "lte")


def _field_condition(fc: common.FieldCondition) -> dict[str, Json]:
    out: dict[str, Json] = {"key": fc.key}
    if fc.HasField("match"):
        out["match"] = _match(fc.match)
    if fc.HasField("range"):
        out["range"] = _set(fc.range, _BOUNDS)
    if fc.HasField("datetime_range"):
        out["range"] = _set(fc.datetime_range, _BOUNDS, _timestamp)
    if fc.HasField("geo_bounding_box"):
        box = fc.geo_bounding_box
        out["geo_bounding_box"] = {"top_left": _geo(box.top_left), "bottom_right": _geo(box.bottom_right)}
    if fc.HasField("geo_radius"):
        out["geo_radius"] = {"center": _geo(fc.geo_radius.center), "radius": fc.geo_radius.radius}
    if fc.HasField("geo_polygon"):
        out["geo_polygon"] = {"exterior": _line(fc.geo_polygon.exterior),
                              "interiors": [_line(line) for line in fc.geo_polygon.interiors]}
    if fc.HasField("values_count"):
        out["values_count"] = _set(fc.values_count, _BOUNDS)
    out.update(_set(fc, ("is_empty", "is_null")))
    return out


def _match(m: common.Match) -> dict[str, Json]:
    kind = m.WhichOneof("match_value")
    if kind in ("keyword", "integer", "boolean"):
        return {"value": getattr(m, kind)}
    if kind in ("keywords", "except_keywords"):
        listed = list(getattr(m, kind).strings)
        return {"any": listed} if kind == "keywords" else {"except": listed}
    if kind in ("integers", "except_integers"):
        numbers = list(getattr(m, kind).integers)
        return {"any": numbers} if kind == "integers" else {"except": numbers}
    if kind is None:
        raise BadRequest("filter: an empty match")
    return {kind: getattr(m, kind)}  # text, phrase, text_any, prefix, substring


def with_payload(sel: ppb.WithPayloadSelector) -> Json:
    kind = sel.WhichOneof("selector_options")
    if kind == "enable":
        return sel.enable
    if kind == "include":
        return {"include": list(sel.include.fields)}
    if kind == "exclude":
        return {"exclude": list(sel.exclude.fields)}
    return None


def with_vectors(sel: ppb.WithVectorsSelector) -> Json:
    kind = sel.WhichOneof("selector_options")
    if kind == "enable":
        return sel.enable
    if kind == "include":
        return list(sel.include.names)
    return None


def search_params(sp: ppb.SearchParams) -> dict[str, Json]:
    out = _set(sp, ("hnsw_ef", "exact", "indexed_only"))
    if sp.HasField("quantization"):
        out["quantization"] = _set(sp.quantization, ("ignore", "rescore", "oversampling"))
    if sp.HasField("acorn"):
        out["acorn"] = _set(sp.acorn, ("enable", "max_selectivity"))
    return out


def _read_common(req: Message, out: dict[str, Json]) -> None:
    """``filter``, ``params``, ``with_payload``, ``with_vector``, ``shard_key`` as far as ``req`` has them."""
    fields = req.DESCRIPTOR.fields_by_name
    if "filter" in fields and req.HasField("filter"):
        out["filter"] = filter_(req.filter)
    if "params" in fields and req.HasField("params"):
        out["params"] = search_params(req.params)
    if "with_payload" in fields and req.HasField("with_payload"):
        out["with_payload"] = with_payload(req.with_payload)
    if "with_vectors" in fields and req.HasField("with_vectors"):
        out["with_vector"] = with_vectors(req.with_vectors)
    if "shard_key_selector" in fields:
        _shard_key(req, out)


_DIRECTIONS = {ppb.Asc: "asc", ppb.Desc: "desc"}
_RECOMMEND = {ppb.AverageVector: "average_vector", ppb.BestScore: "best_score", ppb.SumScores: "sum_scores"}


def order_by(ob: ppb.OrderBy) -> dict[str, Json]:
    out: dict[str, Json] = {"key": ob.key}
    if ob.HasField("direction"):
        out["direction"] = _DIRECTIONS.get(ob.direction, ob.direction)
    if ob.HasField("start_from"):
        kind = ob.start_from.WhichOneof("value")
        start = getattr(ob.start_from, kind) if kind else None
        out["start_from"] = _timestamp(start) if kind == "timestamp" else start
    return out


def _pairs(pairs: Iterable[ppb.ContextInputPair]) -> list[dict[str, Json]]:
    return [{"positive": vector_input(pair.positive), "negative": vector_input(pair.negative)} for pair in pairs]


def query(q: ppb.Query) -> Json:
    kind = q.WhichOneof("variant")
    if kind == "nearest":
        return {"nearest": vector_input(q.nearest)}
    if kind == "recommend":
        rec = q.recommend
        out: dict[str, Json] = {"positive": [vector_input(v) for v in rec.positive],
                                "negative": [vector_input(v) for v in rec.negative]}
        if rec.HasField("strategy"):
            out["strategy"] = _RECOMMEND.get(rec.strategy, rec.strategy)
        return {"recommend": out}
    if kind == "discover":
        return {"discover": {"target": vector_input(q.discover.target), "context": _pairs(q.discover.context.pairs)}}
    if kind == "context":
        return {"context": _pairs(q.context.pairs)}
    if kind == "order_by":
        return {"order_by": order_by(q.order_by)}
    if kind == "fusion":
        return {"fusion": "dbsf" if q.fusion == ppb.DBSF else "rrf"}
    if kind == "rrf":
        rrf: dict[str, Json] = _set(q.rrf, ("k",))
        if q.rrf.weights:
            rrf["weights"] = list(q.rrf.weights)
        return {"rrf": rrf}
    if kind == "sample":
        return {"sample": "random"}
    if kind == "nearest_with_mmr":
        return {"mmr": {}}
    if kind is None:
        raise BadRequest("query: an empty query")
    return {kind: {}}  # formula, relevance_feedback, text: refused by name


def _lookup(loc: ppb.LookupLocation) -> dict[str, Json]:
    out: dict[str, Json] = {"collection": loc.collection_name}
    if loc.HasField("vector_name"):
        out["vector"] = loc.vector_name
    return out


def _query_level(req: ppb.QueryPoints | ppb.PrefetchQuery, out: dict[str, Json]) -> dict[str, Json]:
    if req.prefetch:
        out["prefetch"] = [prefetch(pq) for pq in req.prefetch]
    if req.HasField("query"):
        out["query"] = query(req.query)
    out.update(_set(req, ("using", "score_threshold", "limit")))
    if req.HasField("lookup_from"):
        out["lookup_from"] = _lookup(req.lookup_from)
    _read_common(req, out)
    return out


def prefetch(pq: ppb.PrefetchQuery) -> dict[str, Json]:
    return _query_level(pq, {})


def query_points(req: ppb.QueryPoints) -> dict[str, Json]:
    return _query_level(req, _set(req, ("offset",)))


def search_points(req: ppb.SearchPoints) -> dict[str, Json]:
    vector: Json = dense(ppb.DenseVector(data=req.vector))
    if req.HasField("sparse_indices"):
        vector = {"indices": list(req.sparse_indices.data), "values": list(req.vector)}
    out: dict[str, Json] = {"vector": {"name": req.vector_name, "vector": vector}
                            if req.HasField("vector_name") else vector, "limit": req.limit}
    out.update(_set(req, ("score_threshold", "offset")))
    _read_common(req, out)
    return out


def scroll(req: ppb.ScrollPoints) -> dict[str, Json]:
    out: dict[str, Json] = {}
    if req.HasField("offset"):
        out["offset"] = point_id(req.offset)
    out.update(_set(req, ("limit",)))
    if req.HasField("order_by"):
        out["order_by"] = order_by(req.order_by)
    _read_common(req, out)
    return out


def count(req: ppb.CountPoints) -> dict[str, Json]:
    out = _set(req, ("exact",))
    _read_common(req, out)
    return out


def get_points(req: ppb.GetPoints) -> dict[str, Json]:
    out: dict[str, Json] = {"ids": [point_id(pid) for pid in req.ids]}
    _read_common(req, out)
    return out


def payload_write(req: ppb.SetPayloadPoints | ppb.DeletePayloadPoints | ppb.ClearPayloadPoints,
                  selector_field: str = "points_selector") -> dict[str, Json]:
    """The ``points`` / ``filter`` of a payload write (and its ``shard_key``)."""
    out: dict[str, Json] = {}
    if req.HasField(selector_field):
        out.update(selector(getattr(req, selector_field)))
    _shard_key(req, out)
    return out


# Collections ---------------------------------------------------------------------------------
_DISTANCES = {cpb.Cosine: "Cosine", cpb.Euclid: "Euclid", cpb.Dot: "Dot", cpb.Manhattan: "Manhattan"}
_DATATYPES = {cpb.Float32: "float32", cpb.Uint8: "uint8", cpb.Float16: "float16"}


def _knobs(msg: Message) -> dict[str, Json]:
    """A message of optional scalars (``HnswConfigDiff``, ``WalConfigDiff``, ...) as its set fields."""
    return {field.name: val for field, val in msg.ListFields() if not isinstance(val, Message)}


def _quantization(qc: cpb.QuantizationConfig | cpb.QuantizationConfigDiff) -> Json:
    kind = qc.WhichOneof("quantization")
    if kind == "disabled":
        return "Disabled"
    if kind == "scalar":
        scalar = _knobs(qc.scalar)
        scalar["type"] = "int8"
        return {"scalar": scalar}
    if kind is None:
        return None
    return {kind: _knobs(getattr(qc, kind))}  # product, binary, turboquant: refused by name


def _vector_params(vp: cpb.VectorParams) -> dict[str, Json]:
    out: dict[str, Json] = {"size": vp.size, "distance": _DISTANCES.get(vp.distance, "UnknownDistance")}
    if vp.HasField("hnsw_config"):
        out["hnsw_config"] = _knobs(vp.hnsw_config)
    if vp.HasField("quantization_config"):
        out["quantization_config"] = _quantization(vp.quantization_config)
    if vp.HasField("on_disk"):
        out["on_disk"] = vp.on_disk
    if vp.HasField("datatype"):
        out["datatype"] = _DATATYPES.get(vp.datatype, "default")
    if vp.HasField("multivector_config"):
        out["multivector_config"] = {"comparator": "max_sim"}
    return out


def _sparse_params(sp: cpb.SparseVectorParams) -> dict[str, Json]:
    out: dict[str, Json] = {}
    if sp.HasField("index"):
        out["index"] = _knobs(sp.index)
    if sp.HasField("modifier"):
        out["modifier"] = "idf" if sp.modifier == cpb.Idf else "none"
    return out


def create_collection(req: cpb.CreateCollection) -> dict[str, Json]:
    out: dict[str, Json] = {}
    if req.HasField("vectors_config"):
        vc = req.vectors_config
        out["vectors"] = ({name: _vector_params(vp) for name, vp in vc.params_map.map.items()}
                          if vc.WhichOneof("config") == "params_map" else _vector_params(vc.params))
    if req.HasField("sparse_vectors_config"):
        out["sparse_vectors"] = {name: _sparse_params(sp) for name, sp in req.sparse_vectors_config.map.items()}
    for name in ("hnsw_config", "wal_config", "optimizers_config"):
        if req.HasField(name):
            out[name] = _knobs(getattr(req, name))
    if req.HasField("quantization_config"):
        out["quantization_config"] = _quantization(req.quantization_config)
    out.update(_set(req, ("shard_number", "replication_factor", "write_consistency_factor", "on_disk_payload")))
    if req.HasField("strict_mode_config"):
        out["strict_mode_config"] = _knobs(req.strict_mode_config)
    if req.HasField("sharding_method"):
        out["sharding_method"] = "custom" if req.sharding_method else "auto"
    if req.metadata:
        out["metadata"] = payload(req.metadata)
    return out


# Answers: REST -> gRPC ------------------------------------------------------------------------
def to_point_id(pid: int | str) -> common.PointId:
    return common.PointId(num=pid) if isinstance(pid, int) else common.PointId(uuid=pid)


def fill_value(out: jpb.Value, v: Json) -> None:
    """Write ``v`` into ``out`` in place (building a ``Value`` and copying it in costs 3x)."""
    if v is None:
        out.null_value = jpb.NULL_VALUE
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int) and -(2 ** 63) <= v < 2 ** 63:
        out.integer_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, dict):
        fill_payload(out.struct_value.fields, v)
        out.struct_value.SetInParent()  # an empty object is still an object
    elif isinstance(v, (list, tuple)):
        values = out.list_value.values
        for item in v:
            fill_value(values.add(), item)
        out.list_value.SetInParent()
    else:
        out.double_value = float(v)  # floats, numpy scalars


def fill_payload(fields: Any, d: Mapping[str, Json] | None) -> None:
    for key, v in (d or {}).items():
        fill_value(fields[key], v)


def _to_vector(v: Json) -> ppb.VectorOutput:
    if isinstance(v, dict):
        return ppb.VectorOutput(sparse=ppb.SparseVector(indices=v["indices"], values=v["values"]))
    if len(v) and isinstance(v[0], (list, tuple)):
        return ppb.VectorOutput(multi_dense=ppb.MultiDenseVector(vectors=[ppb.DenseVector(data=row) for row in v]))
    return ppb.VectorOutput(dense=ppb.DenseVector(data=v))


def to_vectors(v: Json) -> ppb.VectorsOutput:
    if isinstance(v, dict) and not ("indices" in v and "values" in v):
        return ppb.VectorsOutput(vectors=ppb.NamedVectorsOutput(vectors={name: _to_vector(one)
                                                                         for name, one in v.items()}))
    return ppb.VectorsOutput(vector=_to_vector(v))


def _order_value(v: Json) -> ppb.OrderValue:
    return ppb.OrderValue(int=v) if isinstance(v, int) else ppb.OrderValue(float=float(v))


def _fill_point(out: ppb.ScoredPoint | ppb.RetrievedPoint, d: Mapping[str, Json]) -> None:
    pid = d["id"]
    if isinstance(pid, int):
        out.id.num = pid
    else:
        out.id.uuid = pid
    fill_payload(out.payload, d.get("payload"))
    if d.get("vector") is not None:
        out.vectors.CopyFrom(to_vectors(d["vector"]))
    if d.get("order_value") is not None:
        out.order_value.CopyFrom(_order_value(d["order_value"]))


def to_scored(d: Mapping[str, Json]) -> ppb.ScoredPoint:
    sp = ppb.ScoredPoint(score=d["score"], version=d.get("version") or 0)
    _fill_point(sp, d)
    return sp


def to_retrieved(d: Mapping[str, Json]) -> ppb.RetrievedPoint:
    rp = ppb.RetrievedPoint()
    _fill_point(rp, d)
    return rp


_STATUSES = {"acknowledged": ppb.Acknowledged, "completed": ppb.Completed, "wait_timeout": ppb.WaitTimeout}


def to_update_result(d: Mapping[str, Json]) -> ppb.UpdateResult:
    return ppb.UpdateResult(operation_id=d["operation_id"], status=_STATUSES.get(d["status"], ppb.UnknownUpdateStatus))


_TO_DISTANCE = {name: enum for enum, name in _DISTANCES.items()}
_SCHEMA_TYPES = {"keyword": cpb.Keyword, "integer": cpb.Integer, "float": cpb.Float, "geo": cpb.Geo, "text": cpb.Text,
                 "bool": cpb.Bool, "datetime": cpb.Datetime, "uuid": cpb.Uuid}
_HNSW_FIELDS = frozenset(cpb.HnswConfigDiff.DESCRIPTOR.fields_by_name)


def _to_hnsw(d: Mapping[str, Json]) -> cpb.HnswConfigDiff:
    return cpb.HnswConfigDiff(**{k: v for k, v in d.items() if k in _HNSW_FIELDS and v is not None})


def _to_quantization(d: Json) -> cpb.QuantizationConfig | None:
    if not isinstance(d, dict) or "scalar" not in d:
        return None
    scalar = d["scalar"]
    out = cpb.ScalarQuantization(type=cpb.Int8)
    if scalar.get("quantile") is not None:
        out.quantile = scalar["quantile"]
    if scalar.get("always_ram") is not None:
        out.always_ram = scalar["always_ram"]
    return cpb.QuantizationConfig(scalar=out)


def _to_vector_params(d: Mapping[str, Json]) -> cpb.VectorParams:
    vp = cpb.VectorParams(size=d["size"], distance=_TO_DISTANCE.get(d["distance"], cpb.UnknownDistance))
    if d.get("hnsw_config"):
        vp.hnsw_config.CopyFrom(_to_hnsw(d["hnsw_config"]))
    quantization = _to_quantization(d.get("quantization_config"))
    if quantization is not None:
        vp.quantization_config.CopyFrom(quantization)
    if d.get("on_disk") is not None:
        vp.on_disk = d["on_disk"]
    return vp


def to_collection_info(d: Mapping[str, Json]) -> cpb.CollectionInfo:
    """Qdrant's ``CollectionInfo`` from the REST ``collection_info`` dict."""
    config, params = d["config"], d["config"]["params"]
    vectors = params["vectors"]
    vc = (cpb.VectorsConfig(params=_to_vector_params(vectors)) if "size" in vectors else
          cpb.VectorsConfig(params_map=cpb.VectorParamsMap(map={n: _to_vector_params(v) for n, v in vectors.items()})))
    cp = cpb.CollectionParams(shard_number=params["shard_number"], on_disk_payload=params["on_disk_payload"],
                              vectors_config=vc, replication_factor=params["replication_factor"],
                              write_consistency_factor=params["write_consistency_factor"])
    if params.get("sparse_vectors"):
        cp.sparse_vectors_config.CopyFrom(cpb.SparseVectorConfig(map={
            name: cpb.SparseVectorParams(modifier=cpb.Idf) if sv.get("modifier") == "idf" else cpb.SparseVectorParams()
            for name, sv in params["sparse_vectors"].items()}))
    optimizer = cpb.OptimizersConfigDiff(**{k: v for k, v in config["optimizer_config"].items()
                                            if k in cpb.OptimizersConfigDiff.DESCRIPTOR.fields_by_name
                                            and isinstance(v, (int, float)) and not isinstance(v, bool)})
    cc = cpb.CollectionConfig(params=cp, hnsw_config=_to_hnsw(config["hnsw_config"]), optimizer_config=optimizer,
                              wal_config=cpb.WalConfigDiff(**config["wal_config"]))
    quantization = _to_quantization(config.get("quantization_config"))
    if quantization is not None:
        cc.quantization_config.CopyFrom(quantization)
    schema = {field: cpb.PayloadSchemaInfo(data_type=_SCHEMA_TYPES.get(info.get("data_type"), cpb.UnknownType),
                                           **({"points": info["points"]} if info.get("points") is not None else {}))
              for field, info in d.get("payload_schema", {}).items()}
    return cpb.CollectionInfo(status=cpb.Green, optimizer_status=cpb.OptimizerStatus(ok=True),
                              segments_count=d["segments_count"], config=cc, payload_schema=schema,
                              points_count=d["points_count"], indexed_vectors_count=d["indexed_vectors_count"],
                              update_queue=cpb.UpdateQueueInfo(length=d.get("update_queue", {}).get("length", 0)))
