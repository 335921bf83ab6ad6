"""Checks that make an operation a valid event, shared by producers, projector and API.

Each function raises a :class:`schemas.errors.ValidationError` subclass whose message
names the offending item (``ids[3]``, ``vectors[7]``, ``payloads[2]``), or returns the
normalised value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final, cast

import numpy as np

from schemas import paths
from schemas.errors import (
    DimensionMismatch,
    DuplicateId,
    InvalidCollectionName,
    InvalidPayload,
    InvalidPointId,
    InvalidVector,
    SparseVectorInvalid,
    UnknownMetric,
    ValidationError,
)
from schemas.events import METRICS, Payload
from schemas.ids import PointId, storable_point_id

_NAME = re.compile(r"^[A-Za-z0-9_.\-:]{1,255}$")


def collection_name(name: object) -> str:
    """A collection name: 1-255 letters, digits, ``_ - . :``, and not ``.`` or ``..``.

    Qdrant's rule (``common::validation::validate_collection_name``) refuses characters that are
    unsafe in a file name and nothing else, so ``.`` and ``..`` reach its storage as the collections
    directory and its parent; they are URL dot-segments too (clients collapse them, only raw HTTP
    sends them). Refused here with the same 400 as every other invalid name.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidCollectionName(
            f"collection name {name!r}: use 1-255 letters, digits, '_', '-', '.', ':'")
    if name in (".", ".."):
        raise InvalidCollectionName(f"collection name {name!r}: '.' and '..' are path segments, not names")
    return name


def alias_name(name: object, field: str = "alias_name") -> str:
    """An alias name: the rule of :func:`collection_name` (an alias stands wherever a collection
    name does, in paths too); the message names ``field``."""
    try:
        return collection_name(name)
    except InvalidCollectionName as exc:
        raise InvalidCollectionName(f"{field}: {exc}".replace("collection name ", "", 1)) from None


def metric(value: object) -> str:
    if value not in METRICS:
        raise UnknownMetric(f"metric {value!r}: expected one of {', '.join(METRICS)}")
    return str(value)


def point_ids(ids: Sequence[object], *, field: str = "ids") -> tuple[PointId, ...]:
    """Normalise ids a write introduces; reject an empty batch and duplicates, naming the positions."""
    if len(ids) == 0:
        raise InvalidPointId(f"{field}: the batch holds no ids")
    out = tuple(storable_point_id(v, field=f"{field}[{i}]") for i, v in enumerate(ids))
    if len(set(out)) != len(out):
        seen: dict[PointId, int] = {}
        for i, pid in enumerate(out):
            if pid in seen:
                raise DuplicateId(f"{field}[{i}]: id {pid!r} already appears at {field}[{seen[pid]}]")
            seen[pid] = i
    return out


def vectors(data: Any, count: int, dimension: int | None, *, field: str = "vectors") -> np.ndarray:
    """A C-contiguous float32 ``(count, dim)`` array; no NaN/inf; dim equal to ``dimension``."""
    try:
        raw = np.asarray(data)
        if raw.dtype.kind not in "biuf":  # strings, objects, ragged lists
            raise InvalidVector(f"{field}: expected numbers, got an array of {raw.dtype}")
        with np.errstate(over="ignore"):
            arr = np.ascontiguousarray(raw, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, InvalidVector):
            raise
        raise InvalidVector(f"{field}: not an array of numbers ({exc})") from None
    if arr.ndim == 1 and count == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] != count:
        raise InvalidVector(f"{field}: expected {count} vectors, got an array of shape {arr.shape}")
    if arr.shape[1] == 0:
        raise InvalidVector(f"{field}: vectors must have at least one dimension")
    if dimension is not None and arr.shape[1] != dimension:
        raise DimensionMismatch(f"{field}: dimension {arr.shape[1]} differs from the collection's {dimension}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise InvalidVector(f"{field}[{row}]: NaN or infinity is not allowed")
    return arr


def payload(value: object, *, field: str = "payload") -> Payload:
    if not isinstance(value, dict):
        raise InvalidPayload(f"{field}: a payload must be a JSON object, got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(f"{field}: not JSON-serialisable ({type(exc).__name__}: {exc})") from None
    try:
        text.encode("utf-8")  # what the log holds: a lone surrogate (JSON "\ud800") has no UTF-8 form
    except UnicodeEncodeError:
        raise InvalidPayload(f"{field}: a key or string is not valid Unicode (it holds a lone surrogate)") from None
    if _depth(value) > MAX_PAYLOAD_DEPTH:
        raise InvalidPayload(f"{field}: nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    return value


MAX_PAYLOAD_DEPTH = 64


def _depth(value: object, level: int = 0) -> int:
    """How deeply objects and arrays nest (stops counting past the limit)."""
    if level > MAX_PAYLOAD_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def payload_path(key: object, *, field: str = "key") -> str:
    """A payload key that is a JSON path in Qdrant's grammar (:mod:`schemas.paths`), unchanged.

    Raises :class:`schemas.errors.InvalidPath` naming ``field`` and the key otherwise.
    """
    paths.parse(key, field=field)  # raises unless ``key`` is a string holding a path
    return cast(str, key)


def payload_paths(keys: object, *, field: str = "keys") -> tuple[str, ...]:
    """A non-empty list of JSON paths (``delete_payload``'s ``keys``), as a tuple."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence) or not keys:
        raise ValidationError(f"{field}: expected a non-empty list of payload keys")
    return tuple(payload_path(key, field=f"{field}[{i}]") for i, key in enumerate(keys))


def payloads(values: Sequence[object] | None, count: int, *, field: str = "payloads") -> tuple[Payload | None, ...]:
    if values is None:
        return (None,) * count
    if len(values) != count:
        raise InvalidPayload(f"{field}: expected {count} payloads, got {len(values)}")
    return tuple(None if v is None else payload(v, field=f"{field}[{i}]") for i, v in enumerate(values))


def bounded_int(value: object, field: str, *, minimum: int = 1, maximum: int = 1 << 16) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(f"{field}: expected an integer in {minimum}..{maximum}, got {value!r}")
    return value



def optional_bool(value: object, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(f"{field}: expected a boolean, got {json.dumps(value)[:100]}")
    return value


def quantization(value: object, *, field: str = "quantization_config") -> str | None:
    """Qdrant's ``quantization_config`` as canonical JSON (None: none). Scalar int8 only:
    ``{"scalar": {"type": "int8", "quantile": 0.5..1, "always_ram": bool}}``."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise ValidationError(f"{field}: expected one of {{\"scalar\": ...}}, {{\"product\": ...}}, "
                              f"{{\"binary\": ...}}, got {json.dumps(value)[:100]}")
    (kind, params), = value.items()
    if kind in ("product", "binary"):
        raise ValidationError(f"{field}.{kind}: not supported by this server (scalar int8 quantization only)")
    if kind != "scalar":
        raise ValidationError(f"{field}: unknown quantization {kind!r}, expected scalar, product or binary")
    if not isinstance(params, dict):
        raise ValidationError(f"{field}.scalar: expected an object")
    unknown = sorted(set(params) - {"type", "quantile", "always_ram"})
    if unknown:
        raise ValidationError(f"{field}.scalar: unknown field {unknown[0]!r}")
    if params.get("type") != "int8":
        raise ValidationError(f"{field}.scalar.type: expected \"int8\", got {json.dumps(params.get('type'))}")
    out: dict[str, object] = {"type": "int8"}
    q = params.get("quantile")
    if q is not None:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.5 <= q <= 1.0:
            raise ValidationError(f"{field}.scalar.quantile: expected a number from 0.5 to 1, got {json.dumps(q)}")
        out["quantile"] = float(q)
    ram = params.get("always_ram")
    if ram is not None:
        if not isinstance(ram, bool):
            raise ValidationError(f"{field}.scalar.always_ram: expected a boolean, got {json.dumps(ram)}")
        out["always_ram"] = ram
    return json.dumps({"scalar": out}, sort_keys=True, separators=(",", ":"))


def _hnsw_diff(value: object, field: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValidationError(f"{field}: expected an object")
    unknown = sorted(set(value) - {"m", "ef_construct"})
    if unknown:
        raise ValidationError(f"{field}: unknown field {unknown[0]!r}")
    out: dict[str, int] = {}
    for name, low in (("m", 2), ("ef_construct", 4)):
        if value.get(name) is not None:
            out[name] = bounded_int(value[name], f"{field}.{name}", minimum=low,
                                    maximum=256 if name == "m" else 10_000)
    return out


def _quantization_diff(value: object, field: str) -> object:
    return "Disabled" if value == "Disabled" else json.loads(quantization(value, field=field) or "null")


def _settings_level(value: object, field: str, allowed: set[str]) -> dict[str, object]:
    """One level of a settings change: ``hnsw_config``, ``quantization_config``, and ``on_disk``
    where ``allowed`` has it; named ``field`` in errors ("" for the collection's own level)."""
    where = field or "collection settings"
    if not isinstance(value, dict):
        raise ValidationError(f"{where}: expected an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValidationError(f"{where}: unknown field {unknown[0]!r}")
    prefix = f"{field}." if field else ""
    out: dict[str, object] = {}
    if value.get("hnsw_config") is not None:
        out["hnsw_config"] = _hnsw_diff(value["hnsw_config"], f"{prefix}hnsw_config")
    if value.get("quantization_config") is not None:
        out["quantization_config"] = _quantization_diff(value["quantization_config"], f"{prefix}quantization_config")
    if value.get("on_disk") is not None:
        out["on_disk"] = optional_bool(value["on_disk"], f"{prefix}on_disk")
    return out


def collection_diff(value: object) -> str:
    """A collection's settings change as canonical JSON (``CollectionUpdated.diff``): ``hnsw_config``
    (``m``, ``ef_construct``), ``quantization_config`` (a config or ``"Disabled"``) and ``vector``
    (the unnamed vector's own ``hnsw_config``, ``quantization_config``, ``on_disk``)."""
    out = _settings_level(value, "", {"hnsw_config", "quantization_config", "vector", "named", "sparse"})
    vector = value.get("vector") if isinstance(value, dict) else None
    if vector is not None:
        out["vector"] = _settings_level(vector, "vector", {"hnsw_config", "quantization_config", "on_disk"})
    named = value.get("named") if isinstance(value, dict) else None
    if named is not None:  # named dense vectors' own settings (Qdrant's vectors.<name>)
        if not isinstance(named, dict):
            raise ValidationError("named: expected an object by vector name")
        out["named"] = {vector_name(name, field=f"named.{name}"): _settings_level(
            level, f"named.{name}", {"hnsw_config", "quantization_config", "on_disk"}) for name, level in named.items()}
    sparse = value.get("sparse") if isinstance(value, dict) else None
    if sparse is not None:  # sparse vectors' modifier (Qdrant's sparse_vectors.<name>.modifier)
        if not isinstance(sparse, dict) or not all(isinstance(v, dict) and set(v) <= {"modifier"}
                                                   and v.get("modifier") in ("idf", "none") for v in sparse.values()):
            raise ValidationError("sparse: expected {name: {\"modifier\": \"idf\" or \"none\"}}")
        out["sparse"] = {vector_name(name, field=f"sparse.{name}"): dict(v) for name, v in sparse.items()}
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


_INDEX_TYPES: Final = ("keyword", "integer", "float", "bool", "geo", "text", "datetime", "uuid")
_INDEX_COMMON: Final = ("on_disk", "memory", "enable_hnsw", "nested")  # placement and optimiser hints
_INDEX_FLAGS: Final = {  # per type: the boolean parameters Qdrant's *IndexParams take
    "keyword": ("is_tenant", "prefix"), "integer": ("lookup", "range", "is_principal"),
    "float": ("is_principal",), "datetime": ("is_principal",), "uuid": ("is_tenant",),
    "bool": (), "geo": (), "text": ("phrase_matching", "lowercase"),
}
_TEXT_UNSUPPORTED: Final = ("min_token_len", "max_token_len", "ascii_folding", "stopwords", "stemmer")


def payload_field_schema(value: object, *, field: str = "field_schema") -> str:
    """Qdrant's ``field_schema`` as canonical JSON: a type name, or an object of that type's
    parameters (``{"type": "keyword", "is_tenant": true}``). Parameters that tune Qdrant's
    storage are accepted as given; text indexes tokenise words, lowercased (Qdrant's default),
    so other tokenizers and token filters are refused, naming the parameter."""
    if isinstance(value, str):
        if value not in _INDEX_TYPES:
            raise ValidationError(f"{field}: unknown payload schema type {value!r}, expected one of "
                                  f"{', '.join(_INDEX_TYPES)}")
        return json.dumps(value)
    if not isinstance(value, dict):
        raise ValidationError(f"{field}: expected a type name or an object of index parameters, "
                              f"got {json.dumps(value)[:100]}")
    kind = value.get("type")
    if kind not in _INDEX_TYPES:
        raise ValidationError(f"{field}.type: expected one of {', '.join(_INDEX_TYPES)}, got "
                              f"{json.dumps(kind)[:100]}")
    flags = _INDEX_FLAGS[kind]
    allowed = {"type", *_INDEX_COMMON, *flags, *(("tokenizer", *_TEXT_UNSUPPORTED) if kind == "text" else ())}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValidationError(f"{field}: unknown parameter {unknown[0]!r} for a {kind} index")
    out: dict[str, Any] = {"type": kind}
    for name in (*flags, "on_disk", "enable_hnsw"):
        if value.get(name) is not None:
            out[name] = optional_bool(value[name], f"{field}.{name}")
    if value.get("memory") is not None:
        if value["memory"] not in ("ram", "mmap", "on_disk", "cached"):
            raise ValidationError(f"{field}.memory: unknown value {json.dumps(value['memory'])[:60]}")
        out["memory"] = value["memory"]
    if value.get("nested") is not None:
        if not isinstance(value["nested"], str):
            raise ValidationError(f"{field}.nested: expected a string")
        out["nested"] = value["nested"]
    if kind == "text":
        tokenizer = value.get("tokenizer")
        if tokenizer is not None:
            if tokenizer not in ("word", "whitespace", "prefix", "multilingual"):
                raise ValidationError(f"{field}.tokenizer: unknown tokenizer {json.dumps(tokenizer)[:60]}")
            if tokenizer != "word":
                raise ValidationError(f"{field}.tokenizer: {tokenizer!r} is not supported by this server; "
                                      f"text indexes use the 'word' tokenizer")
            out["tokenizer"] = tokenizer
        if out.get("lowercase") is False:
            raise ValidationError(f"{field}.lowercase: false is not supported by this server; text indexes "
                                  f"lowercase tokens")
        for name in _TEXT_UNSUPPORTED:
            if value.get(name) is not None:
                raise ValidationError(f"{field}.{name}: not supported by this server")
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


# Named and sparse vectors ------------------------------------------------------------------
#: A vector name as Qdrant takes it (any non-empty string); the unnamed vector is "".
MAX_VECTOR_NAME = 255
_SPEC_FIELDS = {"size", "metric", "m", "ef_construction", "ef", "quantization", "on_disk"}


def vector_name(name: object, *, field: str = "name") -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_VECTOR_NAME or "\0" in name:
        raise ValidationError(f"{field}: a vector name is a string of 1..{MAX_VECTOR_NAME} characters without NUL, "
                              f"got {json.dumps(name)[:60] if isinstance(name, str) else type(name).__name__}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field}: not valid Unicode (a lone surrogate)") from None
    return name


def named_vectors(vectors: str | None, sparse: str | None) -> None:
    """Check ``CollectionCreated.vectors`` (``{name: {size, metric, m, ef_construction, ef,
    quantization, on_disk}}``) and ``sparse_vectors`` (``{name: {"modifier": "idf"}}`` or ``{}``):
    names valid and not shared between the two, parameters in range."""
    dense = {} if vectors is None else json.loads(vectors)
    sparse_params = {} if sparse is None else json.loads(sparse)
    if not isinstance(dense, dict) or not isinstance(sparse_params, dict):
        raise ValidationError("vectors, sparse_vectors: expected objects by vector name")
    for name, spec in dense.items():
        vector_name(name, field=f"vectors.{name}")
        if not isinstance(spec, dict) or not {"size", "metric"} <= set(spec) <= _SPEC_FIELDS:
            raise ValidationError(f"vectors.{name}: expected {{size, metric, ...}}, got {json.dumps(spec)[:80]}")
        bounded_int(spec["size"], f"vectors.{name}.size")
        metric(spec["metric"])
        bounded_int(spec.get("m", 16), f"vectors.{name}.m", minimum=2, maximum=256)
        bounded_int(spec.get("ef_construction", 200), f"vectors.{name}.ef_construction", minimum=1, maximum=10_000)
        bounded_int(spec.get("ef", 64), f"vectors.{name}.ef", minimum=1, maximum=10_000)
        if spec.get("quantization") is not None:
            quantization(json.loads(spec["quantization"]), field=f"vectors.{name}.quantization_config")
    for name, params in sparse_params.items():
        vector_name(name, field=f"sparse_vectors.{name}")
        if name in dense:
            raise ValidationError(f"sparse_vectors.{name}: a dense vector has that name already")
        if not isinstance(params, dict) or set(params) - {"modifier"} or params.get("modifier") not in (None, "idf"):
            raise ValidationError(f"sparse_vectors.{name}: expected {{\"modifier\": \"idf\"}} or {{}}, got "
                                  f"{json.dumps(params)[:80]}")


def sparse_vector(indices: object, values: object, *, field: str = "vector") -> tuple[np.ndarray, np.ndarray]:
    """A sparse vector as Qdrant checks it: indices u32 and unique, as many values (finite floats)
    as indices. Returned sorted by index (uint32, float32): how it is stored and scored."""
    if not isinstance(indices, (list, tuple, np.ndarray)) or not isinstance(values, (list, tuple, np.ndarray)):
        raise InvalidVector(f"{field}: expected indices and values arrays")
    for i, x in enumerate(indices):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= x <= 0xFFFFFFFF:
            raise InvalidVector(f"{field}.indices[{i}]: expected an integer in 0..4294967295, got {json.dumps(x)[:40]}"
                                if not isinstance(x, np.generic) else f"{field}.indices[{i}]: out of range")
    for i, x in enumerate(values):
        if isinstance(x, bool) or not isinstance(x, (int, float, np.number)) or not np.isfinite(float(x)):
            raise InvalidVector(f"{field}.values[{i}]: expected a finite number")
    idx = np.asarray(indices, dtype=np.uint32) if len(indices) else np.empty(0, np.uint32)
    with np.errstate(over="ignore"):
        val = np.asarray(values, dtype=np.float32) if len(values) else np.empty(0, np.float32)
    if len(idx) != len(val):
        raise SparseVectorInvalid(f"{field}.values", "must be the same length as indices")
    if not np.isfinite(val).all():
        raise InvalidVector(f"{field}.values: a value is out of float32 range")
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order]
    if len(idx) > 1 and np.any(idx[1:] == idx[:-1]):
        raise SparseVectorInvalid(f"{field}.indices", "must be unique")
    return idx, val


def sparse_rows(offsets: np.ndarray, indices: np.ndarray, values: np.ndarray, *, field: str) -> None:
    """Check the sparse vectors of an event: each row's indices unique, values finite."""
    if not np.isfinite(values).all():
        raise InvalidVector(f"{field}: a sparse value is NaN or infinity")
    for i in range(len(offsets) - 1):
        row = np.sort(indices[offsets[i]:offsets[i + 1]])
        if len(row) > 1 and np.any(row[1:] == row[:-1]):
            raise SparseVectorInvalid(f"{field}[{i}].indices", "must be unique")
