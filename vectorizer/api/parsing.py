"""Turning request JSON into checked values; every error names the offending field.

Request bodies are parsed by hand rather than by pydantic models so that each error reads
like Qdrant's (``points[3].vector: ...``) and is a 400, and so that vectors go straight
from JSON arrays into one contiguous float32 array.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec
import numpy as np

from producers.producer import WriteToken
from projections.collection import Collection as Collection_
from projections.filters import Filter, parse_filter
from schemas import validation as check
from schemas.errors import ValidationError
from schemas.ids import PointId, storable_point_id
from vectorizer.api.errors import BadRequest, Unprocessable

Body = dict[str, Any]

#: Upper bound of ``limit + offset`` in one query and of ``limit`` in one scroll page.
MAX_RESULTS = 100_000
MAX_TIMEOUT_SECONDS = 3_600.0
#: Payloads nest at most this deep (deeper ones would strain every recursive copy downstream).
MAX_PAYLOAD_DEPTH = 64
QDRANT_CONSISTENCY = frozenset({"majority", "quorum", "all"})


def show(value: object) -> str:
    """A short rendering of a JSON value for an error message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # e.g. an integer too long to print
        return type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def load_body(raw: bytes) -> Body:
    """The request body as a JSON object; an empty body is ``{}``.

    msgspec parses it (a 1,000 x 128 upsert: 16 ms where the standard library takes 123 ms;
    docs/decisions/0004); what msgspec refuses (NaN, numbers out of float range, lone
    surrogates, other encodings, deep nesting) goes to the standard library, so every body means
    and fails exactly as before."""
    if not raw.strip():
        return {}
    try:
        value = _DECODER.decode(raw)
    except (ValueError, RecursionError):  # msgspec.DecodeError, UnicodeDecodeError
        value = _stdlib_loads(raw)
    if not isinstance(value, dict):
        raise BadRequest(f"body: expected a JSON object, got {type(value).__name__}")
    return value


_DECODER = msgspec.json.Decoder()


def _stdlib_loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise BadRequest("body: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from None


def fields(body: Mapping[str, Any], path: str, supported: Iterable[str], ignored: Iterable[str] = ()) -> None:
    """Reject keys other than ``supported`` (and Qdrant tuning knobs in ``ignored``, which are accepted)."""
    allowed = set(supported) | set(ignored)
    for key in body:
        if key not in allowed:
            prefix = f"{path}." if path else ""
            raise BadRequest(f"{prefix}{key}: unknown or unsupported field")


def unsupported(body: Mapping[str, Any], *names: str) -> None:
    """Reject Qdrant features this server does not have, when the request actually uses them."""
    for name in names:
        if body.get(name) is not None:
            raise BadRequest(f"{name}: not supported by this server")


def obj(value: object, path: str) -> Body:
    if not isinstance(value, dict):
        raise BadRequest(f"{path}: expected an object, got {show(value)}")
    return value


def array(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRequest(f"{path}: expected an array, got {show(value)}")
    return value


def integer(value: object, path: str, *, minimum: int = 0, maximum: int = MAX_RESULTS) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadRequest(f"{path}: expected an integer in {minimum}..{maximum}, got {show(value)}")
    return value


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{path}: expected true or false, got {show(value)}")
    return value


def number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{path}: expected a number, got {show(value)}")
    try:
        result = float(value)
    except OverflowError:
        raise BadRequest(f"{path}: number out of range") from None
    if not math.isfinite(result):
        raise BadRequest(f"{path}: expected a finite number")
    return result


def string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{path}: expected a non-empty string, got {show(value)}")
    try:
        value.encode("utf-8")  # a lone surrogate (JSON "\ud800") could not go on the log
    except UnicodeEncodeError:
        raise BadRequest(f"{path}: not valid Unicode (a lone surrogate), got {show(value)}") from None
    return value


def point_id(value: object, path: str) -> PointId:
    """An id as a write may introduce it (no NUL, valid Unicode); reads take the same ids."""
    return storable_point_id(value, field=path)


def path_point_id(text: str) -> PointId:
    """An id from a URL path: decimal digits are an integer id, anything else a string id."""
    if text.isascii() and text.isdigit():
        if len(text) > 20:
            raise BadRequest(f"id: integer id {text[:24]}... is out of range")
        return point_id(int(text), "id")
    return point_id(text, "id")


def point_ids(value: object, path: str) -> list[PointId]:
    """A list of ids, normalised, duplicates dropped (first occurrence kept)."""
    ids = [point_id(v, f"{path}[{i}]") for i, v in enumerate(array(value, path))]
    return list(dict.fromkeys(ids))


def filter_of(value: object, path: str = "filter", coll: Collection_ | None = None) -> Filter | None:
    """A filter of requests to ``coll`` (its ``has_vector`` conditions answered by it)."""
    return parse_filter(value, field=path, has_vector=None if coll is None else coll.has_vector)


def vector(value: object, path: str, dimension: int) -> np.ndarray:
    """One dense vector of the collection's dimension, as float32."""
    if isinstance(value, dict):
        if set(value) != {""}:
            raise BadRequest(f"{path}: named vectors are not supported; send an array of numbers")
        value = value[""]
        path = f'{path}[""]'
    return check.vectors(_row(value, path), 1, dimension, field=path)[0]


def vectors(rows: list[object], paths: list[str], dimension: int) -> np.ndarray:
    """``(n, dimension)`` float32 from JSON arrays; the error names the first bad row's path.

    The fast path lets numpy read the whole batch at once (a boolean mixed into numbers
    passes as 0/1 there); anything else (``{"": [...]}`` rows, errors) goes row by row.
    """
    try:
        arr = np.array(rows)
    except (ValueError, TypeError, OverflowError):
        arr = None
    if arr is not None and arr.ndim == 2 and arr.dtype.kind in "iuf":
        try:
            return check.vectors(arr, len(rows), dimension, field="vectors")
        except ValidationError:
            pass
    checked = [vector(row, row_path, dimension) for row, row_path in zip(rows, paths, strict=True)]
    if not checked:
        return np.empty((0, dimension), np.float32)
    return np.ascontiguousarray(np.stack(checked), dtype=np.float32)


_PLAIN = frozenset((float, int))


def plain_numbers(values: list[Any]) -> bool:
    """Whether every element is a plain ``float`` or an ``int`` within float32's range: one pass over
    the element types in C (what parsed JSON holds), where the per-element checks took 2 us a number."""
    types = set(map(type, values))
    if not types <= _PLAIN:
        return False
    return int not in types or all(abs(x) <= 2**128 for x in values if type(x) is int)


def _row(value: object, path: str) -> object:
    if isinstance(value, np.ndarray) and value.dtype == np.float32:  # decoded typed (gRPC): numbers already
        return value
    if not isinstance(value, list):
        raise BadRequest(f"{path}: expected an array of numbers, got {show(value)}")
    if plain_numbers(value):
        return value
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise BadRequest(f"{path}[{i}]: expected a number, got {show(x)}")
        if isinstance(x, int) and abs(x) > 2**128:
            raise BadRequest(f"{path}[{i}]: number out of range")
    return value


def payload(value: object, path: str) -> dict[str, Any] | None:
    """A payload object (``None`` when absent), nested at most :data:`MAX_PAYLOAD_DEPTH` levels."""
    if value is None:
        return None
    level: list[object] = [value]
    for _ in range(MAX_PAYLOAD_DEPTH):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return check.payload(value, field=path)
    raise BadRequest(f"{path}: nested deeper than {MAX_PAYLOAD_DEPTH} levels")


def limit(body: Mapping[str, Any], path: str, default: int) -> int:
    """``limit`` (``default`` when absent); 0 is Qdrant's 422 (``range(min = 1)`` on every limit)."""
    value = body.get("limit")
    return default if value is None else at_least_one(value, f"{path}limit")


def at_least_one(value: object, path: str, maximum: int = MAX_RESULTS) -> int:
    """A count Qdrant declares ``range(min = 1)``: 0 is its 422 ``Validation error in JSON body``;
    a negative number or a non-integer cannot be its unsigned type, a 400."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        raise Unprocessable(f"Validation error in JSON body: [{path}: value 0 invalid, must be 1 or larger]")
    return integer(value, path, minimum=1, maximum=maximum)


def offset(body: Mapping[str, Any], path: str) -> int:
    value = body.get("offset")
    return 0 if value is None else integer(value, f"{path}offset")


# Consistency -------------------------------------------------------------------------
def consistency_tokens(*values: object) -> list[WriteToken]:
    """Write tokens among ``consistency`` values (query parameter, body field).

    A token is told apart by its colon. Qdrant's own values (an integer, ``majority``,
    ``quorum``, ``all``) are satisfied by one replica at once and yield nothing.
    """
    tokens = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, dict) and set(value) == {"type"}:
            value = value["type"]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            continue
        if isinstance(value, str):
            if ":" in value:
                try:
                    tokens.append(WriteToken.parse(value))
                except ValueError as exc:
                    raise BadRequest(f"consistency: {exc}") from None
                continue
            if value in QDRANT_CONSISTENCY or (value.isascii() and value.isdigit() and int(value) >= 1):
                continue
        raise BadRequest(f"consistency: expected a write token '<partition>:<offset>', a positive integer, "
                         f"'majority', 'quorum' or 'all', got {show(value)}")
    return tokens


def known_partitions(tokens: Iterable[WriteToken], partitions: Collection[int]) -> list[WriteToken]:
    """``tokens``, once each names a partition of the topic (``partitions``; empty: not known yet,
    nothing is refused); else a :class:`BadRequest`, as a token no write can have produced."""
    tokens = list(tokens)
    for token in tokens:
        if partitions and token.partition not in partitions:
            raise BadRequest(f"consistency: write token {token.partition}:{token.offset} names partition "
                             f"{token.partition}, the topic has partitions {min(partitions)}..{max(partitions)}")
    return tokens
