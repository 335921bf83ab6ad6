"""Avro single-object encoding of events, with an xxh3-64 checksum over the body.

Layout of a record value::

    C3 01 | fingerprint (8 bytes, LE CRC-64-AVRO of the writer schema) | envelope | body

Avro encodes a record as the concatenation of its fields, and the envelope is each
schema's first field, so a plain ``fastavro.schemaless_reader`` with the schema file
decodes the whole thing. The checksum in the envelope covers the body bytes exactly as
written; the decoder verifies them before decoding the body (no re-encoding).

Decoding resolves the writer schema (any version in ``schemas/avro``) against the newest
reader schema, so records written by older producers keep decoding.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from typing import Any, cast

import fastavro
import numpy as np
import xxhash

from schemas import events as ev
from schemas import sealing
from schemas.errors import (
    ChecksumMismatch,
    DecodeError,
    InvalidContent,
    InvalidPointId,
    NotSingleObjectAvro,
    UnknownFingerprint,
)
from schemas.ids import PointId, normalize_point_id
from schemas.registry import BY_FINGERPRINT, ENVELOPE_SCHEMA, SchemaVersion, latest

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


def checksum(body: bytes) -> bytes:
    """xxh3-64 of ``body``, 8 bytes big-endian."""
    return xxhash.xxh3_64_digest(body)


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _ids_out(ids: tuple[PointId, ...]) -> list[PointId]:
    return list(ids)


def _ids_in(raw: list[Any]) -> tuple[PointId, ...]:
    try:
        return tuple(normalize_point_id(v, field=f"ids[{i}]") for i, v in enumerate(raw))
    except InvalidPointId as exc:
        raise InvalidContent(str(exc)) from None


def _payload_in(text: str | None, where: str) -> ev.Payload | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidContent(f"{where}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        raise InvalidContent(f"{where}: a payload must be a JSON object")
    return value


# Per event type: event -> Avro body dict, and (meta, body dict) -> event.
def _upserted_out(e: ev.VectorsUpserted) -> dict[str, Any]:
    vectors = np.ascontiguousarray(e.vectors, dtype="<f4")
    payloads = list(e.payloads) or [None] * len(e.ids)
    return {"ids": _ids_out(e.ids), "count": vectors.shape[0], "dimension": vectors.shape[1],
            "vectors": vectors.tobytes(), "payloads": [None if p is None else _json(p) for p in payloads],
            "named": [_named_out(rows) for rows in e.named], "sparse": [_sparse_out(rows) for rows in e.sparse],
            "update_mode": e.update_mode, "update_filter": e.update_filter, "stored_form": e.stored_form}


def _upserted_in(meta: ev.EventMeta, b: dict[str, Any]) -> ev.VectorsUpserted:
    count, dim, raw = b["count"], b["dimension"], b["vectors"]
    # v1 vectors have a dimension; from v2 on, 0 says the collection has no unnamed vector
    if count < 0 or dim < (1 if meta.schema_version <= 1 else 0) or len(raw) != count * dim * 4:
        raise InvalidContent(f"vectors: {len(raw)} bytes do not hold {count} x {dim} float32")
    if len(b["ids"]) != count or len(b["payloads"]) != count:
        raise InvalidContent(f"ids/payloads: expected {count} of each, got {len(b['ids'])} and "
                             f"{len(b['payloads'])}")
    vectors = np.frombuffer(raw, dtype="<f4").reshape(count, dim)
    payloads = tuple(_payload_in(p, f"payloads[{i}]") for i, p in enumerate(b["payloads"]))
    named = tuple(_named_in(raw_rows, count, f"named[{i}]") for i, raw_rows in enumerate(b.get("named") or []))
    sparse = tuple(_sparse_in(raw_rows, count, f"sparse[{i}]") for i, raw_rows in enumerate(b.get("sparse") or []))
    mode = b.get("update_mode") or "upsert"  # v1, v2: a plain upsert
    if mode not in ev.UPDATE_MODES:
        raise InvalidContent(f"update_mode: {mode!r} is not one of {', '.join(ev.UPDATE_MODES)}")
    return ev.VectorsUpserted(meta, _ids_in(b["ids"]), vectors, payloads, named, sparse,
                              cast(ev.UpdateMode, mode), b.get("update_filter"), bool(b.get("stored_form")))


def _named_out(rows: ev.NamedRows) -> dict[str, Any]:
    vectors = np.ascontiguousarray(rows.vectors, dtype="<f4")
    return {"name": rows.name, "positions": np.asarray(rows.positions, "<i4").tobytes(),
            "dimension": vectors.shape[1], "vectors": vectors.tobytes()}


def _sparse_out(rows: ev.SparseRows) -> dict[str, Any]:
    return {"name": rows.name, "positions": np.asarray(rows.positions, "<i4").tobytes(),
            "offsets": np.asarray(rows.offsets, "<i4").tobytes(),
            "indices": np.asarray(rows.indices, "<u4").tobytes(), "values": np.asarray(rows.values, "<f4").tobytes()}


def _column(raw: bytes, dtype: str, where: str) -> np.ndarray:
    if len(raw) % 4:
        raise InvalidContent(f"{where}: {len(raw)} bytes are not a whole number of 4-byte values")
    return np.frombuffer(raw, dtype=dtype)


def _positions(raw: bytes, count: int, where: str) -> np.ndarray:
    positions = _column(raw, "<i4", where).astype(np.int64)
    if len(positions) and (positions[0] < 0 or positions[-1] >= count or np.any(np.diff(positions) <= 0)):
        raise InvalidContent(f"{where}: positions must be ascending and unique, within 0..{count - 1}")
    return positions


def _named_in(b: dict[str, Any], count: int, where: str) -> ev.NamedRows:
    positions = _positions(b["positions"], count, f"{where}.positions")
    dim, raw = b["dimension"], b["vectors"]
    if dim < 1 or len(raw) != len(positions) * dim * 4:
        raise InvalidContent(f"{where}.vectors: {len(raw)} bytes do not hold {len(positions)} x {dim} float32")
    return ev.NamedRows(b["name"], positions, np.frombuffer(raw, dtype="<f4").reshape(len(positions), dim))


def _sparse_in(b: dict[str, Any], count: int, where: str) -> ev.SparseRows:
    positions = _positions(b["positions"], count, f"{where}.positions")
    offsets = _column(b["offsets"], "<i4", f"{where}.offsets").astype(np.int64)
    indices = _column(b["indices"], "<u4", f"{where}.indices")
    values = _column(b["values"], "<f4", f"{where}.values")
    if (len(offsets) != len(positions) + 1 or offsets[0] != 0 or offsets[-1] != len(indices)
            or len(values) != len(indices) or np.any(np.diff(offsets) < 0)):
        raise InvalidContent(f"{where}: offsets, indices and values do not describe {len(positions)} sparse vectors")
    return ev.SparseRows(b["name"], positions, offsets, indices, values)


def _vectors_updated_in(meta: ev.EventMeta, b: dict[str, Any]) -> ev.PointVectorsUpdated:
    ids = _ids_in(b["ids"])
    return ev.PointVectorsUpdated(
        meta, ids, tuple(_named_in(r, len(ids), f"named[{i}]") for i, r in enumerate(b["named"])),
        tuple(_sparse_in(r, len(ids), f"sparse[{i}]") for i, r in enumerate(b["sparse"])), b.get("update_filter"))


def _aliases_in(meta: ev.EventMeta, b: dict[str, Any]) -> ev.AliasesChanged:
    return ev.AliasesChanged(meta, tuple(ev.AliasAction(a["kind"], a["alias_name"], a.get("collection_name"),
                                                        a.get("new_alias_name")) for a in b["actions"]))


_CODECS: dict[type[ev.Event], tuple[Callable[[Any], dict[str, Any]],
                                    Callable[[ev.EventMeta, dict[str, Any]], ev.Event]]] = {
    ev.CollectionCreated: (
        lambda e: {"dimension": e.dimension, "metric": e.metric, "m": e.m,
                   "ef_construction": e.ef_construction, "ef": e.ef, "kind": e.kind, "embedder": e.embedder,
                   "quantization": e.quantization, "on_disk": e.on_disk, "vectors": e.vectors,
                   "sparse_vectors": e.sparse_vectors},
        lambda m, b: ev.CollectionCreated(m, b["dimension"], b["metric"], b["m"], b["ef_construction"],
                                          b["ef"], b["kind"], b.get("embedder"), b.get("quantization"),
                                          b.get("on_disk"), b.get("vectors"), b.get("sparse_vectors")),
    ),
    ev.CollectionDeleted: (lambda e: {}, lambda m, b: ev.CollectionDeleted(m)),
    ev.CollectionUpdated: (lambda e: {"diff": e.diff}, lambda m, b: ev.CollectionUpdated(m, b["diff"])),
    ev.VectorsUpserted: (_upserted_out, _upserted_in),
    ev.VectorsDeleted: (lambda e: {"ids": _ids_out(e.ids)},
                        lambda m, b: ev.VectorsDeleted(m, _ids_in(b["ids"]))),
    # v2 renamed key/keys to path/paths (JSON paths; v1 dotted keys decode through the aliases).
    # The body holds both names so an explicit v1 schema can still write it (tests, tools).
    ev.PayloadSet: (
        lambda e: {"ids": _ids_out(e.ids), "payload": _json(e.payload), "path": e.key, "key": e.key},
        lambda m, b: ev.PayloadSet(m, _ids_in(b["ids"]), _payload_in(b["payload"], "payload") or {},
                                   b.get("path")),
    ),
    ev.PayloadOverwritten: (
        lambda e: {"ids": _ids_out(e.ids), "payload": _json(e.payload)},
        lambda m, b: ev.PayloadOverwritten(m, _ids_in(b["ids"]),
                                           _payload_in(b["payload"], "payload") or {}),
    ),
    ev.PayloadKeysDeleted: (
        lambda e: {"ids": _ids_out(e.ids), "paths": list(e.keys), "keys": list(e.keys)},
        lambda m, b: ev.PayloadKeysDeleted(m, _ids_in(b["ids"]), tuple(b["paths"])),
    ),
    ev.PayloadCleared: (lambda e: {"ids": _ids_out(e.ids)},
                        lambda m, b: ev.PayloadCleared(m, _ids_in(b["ids"]))),
    ev.PayloadIndexCreated: (lambda e: {"field_name": e.field_name, "field_schema": e.field_schema},
                             lambda m, b: ev.PayloadIndexCreated(m, b["field_name"], b["field_schema"])),
    ev.PayloadIndexDropped: (lambda e: {"field_name": e.field_name},
                             lambda m, b: ev.PayloadIndexDropped(m, b["field_name"])),
    ev.PointVectorsUpdated: (
        lambda e: {"ids": _ids_out(e.ids), "named": [_named_out(r) for r in e.named],
                   "sparse": [_sparse_out(r) for r in e.sparse], "update_filter": e.update_filter},
        _vectors_updated_in,
    ),
    ev.PointVectorsDeleted: (lambda e: {"ids": _ids_out(e.ids), "names": list(e.names)},
                             lambda m, b: ev.PointVectorsDeleted(m, _ids_in(b["ids"]), tuple(b["names"]))),
    ev.AliasesChanged: (
        lambda e: {"actions": [{"kind": a.kind, "alias_name": a.alias, "collection_name": a.collection,
                                "new_alias_name": a.new_alias} for a in e.actions]},
        _aliases_in,
    ),
}


def encode(event: ev.Event, *, schema: SchemaVersion | None = None) -> bytes:
    """Encode ``event`` with the newest schema of its type (or ``schema``, for tests)."""
    to_body, _ = _CODECS[type(event)]
    version = schema or latest(type(event).__name__)
    body_buf = io.BytesIO()
    fastavro.schemaless_writer(body_buf, version.body, to_body(event))
    body = body_buf.getvalue()
    meta = event.meta
    envelope = {"event_id": meta.event_id, "collection": meta.collection, "producer_id": meta.producer_id,
                "created_at": meta.created_at, "schema_version": version.version,
                "checksum": checksum(body)}
    out = io.BytesIO()
    out.write(version.header)
    fastavro.schemaless_writer(out, ENVELOPE_SCHEMA, envelope)
    out.write(body)
    return out.getvalue()


def decode(data: bytes, keys: sealing.DataKeys | None = None) -> ev.Event:
    """Decode and verify one record value; raise a :class:`DecodeError` subclass on any fault.

    A sealed record (``schemas.sealing``) is opened with ``keys`` first; a clear one never looks
    at them. The event a sealed record holds must belong to the collection it was sealed for."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < HEADER_LEN \
            or data[:2] != MAGIC:
        if isinstance(data, (bytes, bytearray, memoryview)) and sealing.is_sealed(data):
            collection, clear = sealing.unseal(data, keys)
            event = decode(clear)
            if event.collection != collection:
                raise InvalidContent(f"a record sealed for collection {collection!r} holds an event of "
                                     f"{event.collection!r}")
            return event
        raise NotSingleObjectAvro("the record does not start with the Avro single-object marker C3 01")
    writer = BY_FINGERPRINT.get(bytes(data[2:HEADER_LEN]))
    if writer is None:
        raise UnknownFingerprint(f"no schema in schemas/avro has fingerprint {bytes(data[2:10]).hex()}")
    try:
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        envelope = cast(dict[str, Any], fastavro.schemaless_reader(buf, ENVELOPE_SCHEMA, None))
        body = bytes(data[buf.tell():])
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types on garbage
        raise InvalidContent(f"the envelope does not decode: {type(exc).__name__}: {exc}") from None
    if checksum(body) != envelope["checksum"]:
        raise ChecksumMismatch(f"event {envelope['event_id']}: body checksum "
                               f"{checksum(body).hex()} != envelope {envelope['checksum'].hex()}")
    reader = latest(writer.event_type)
    try:
        body_buf = io.BytesIO(body)
        fields = cast(dict[str, Any], fastavro.schemaless_reader(body_buf, writer.body, reader.body))
        if body_buf.tell() != len(body):
            raise InvalidContent(f"{len(body) - body_buf.tell()} trailing bytes after the body")
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidContent(f"the body does not decode: {type(exc).__name__}: {exc}") from None
    meta = ev.EventMeta(str(envelope["event_id"]), envelope["collection"], envelope["producer_id"],
                        _millis(envelope["created_at"]), writer.version)
    _, from_body = _CODECS[getattr(ev, writer.event_type)]
    try:
        return from_body(meta, fields)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidContent(f"{writer.event_type}: {exc}") from None


def _millis(value: Any) -> int:
    """fastavro turns timestamp-millis into a datetime; the event keeps integer millis."""
    if isinstance(value, int):
        return value
    return int(math.floor(value.timestamp() * 1000 + 0.5))
