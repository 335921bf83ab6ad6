"""Event encoding: round trips for every type, evolution, and each decode failure."""

from __future__ import annotations

import io
import json
import string
from collections.abc import Callable
from typing import Any, cast

import fastavro
import numpy as np
import pytest
from fastavro.schema import load_schema
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas.codec import decode, encode
from schemas.errors import ChecksumMismatch, InvalidContent, NotSingleObjectAvro, UnknownFingerprint
from schemas.registry import AVRO_DIR, BY_FINGERPRINT, VERSIONS, crc64_avro, latest

ids = st.one_of(st.integers(0, 2**63 - 1), st.uuids().map(str),
                st.text(string.ascii_letters + "#/._-", min_size=1, max_size=20))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=10),
                         st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=8)
payloads = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
metas = st.builds(ev.EventMeta, event_id=st.uuids().map(str), collection=st.text(string.ascii_letters, min_size=1),
                  producer_id=st.text(max_size=12), created_at=st.integers(0, 2**41))


@st.composite
def upserts(draw: st.DrawFn) -> ev.VectorsUpserted:
    point_ids = tuple(draw(st.lists(ids, min_size=0, max_size=6, unique=True)))
    dim = draw(st.integers(1, 8))
    vectors = np.array(draw(st.lists(st.lists(st.floats(-1e6, 1e6, width=32), min_size=dim, max_size=dim),
                                     min_size=len(point_ids), max_size=len(point_ids))),
                       dtype=np.float32).reshape(len(point_ids), dim)
    pls = tuple(draw(st.lists(st.one_of(st.none(), payloads), min_size=len(point_ids), max_size=len(point_ids))))
    return ev.VectorsUpserted(draw(metas), point_ids, vectors, pls)


id_tuples = st.lists(ids, min_size=1, max_size=5).map(tuple)
any_event = st.one_of(
    st.builds(ev.CollectionCreated, metas, st.integers(1, 4096), st.sampled_from(ev.METRICS), st.integers(2, 64),
              st.integers(1, 500), st.integers(1, 500), st.sampled_from(ev.KINDS),
              st.one_of(st.none(), st.text(max_size=30))),
    st.builds(ev.CollectionDeleted, metas),
    upserts(),
    st.builds(ev.VectorsDeleted, metas, id_tuples),
    st.builds(ev.PayloadSet, metas, id_tuples, payloads, st.one_of(st.none(), st.text(min_size=1, max_size=5))),
    st.builds(ev.PayloadOverwritten, metas, id_tuples, payloads),
    st.builds(ev.PayloadKeysDeleted, metas, id_tuples, st.lists(st.text(min_size=1), min_size=1).map(tuple)),
    st.builds(ev.PayloadCleared, metas, id_tuples),
)


@given(any_event)
@settings(max_examples=300, deadline=None)
def test_every_event_type_round_trips(event: ev.Event) -> None:
    decoded = decode(encode(event))
    assert type(decoded) is type(event)
    expected_version = latest(type(event).__name__).version
    assert decoded.meta == ev.EventMeta(event.meta.event_id, event.meta.collection, event.meta.producer_id,
                                        event.meta.created_at, expected_version)
    for name in event.__dataclass_fields__:
        if name == "meta":
            continue
        a, b = getattr(event, name), getattr(decoded, name)
        if isinstance(a, np.ndarray):
            assert a.shape == b.shape and np.array_equal(a, b)
        else:
            assert a == b, name


def test_crc64_avro_matches_fastavro() -> None:
    for version in BY_FINGERPRINT.values():
        canonical = fastavro.schema.to_parsing_canonical_form(version.full)
        assert version.fingerprint.hex() == fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
        assert int.from_bytes(version.fingerprint, "little") == crc64_avro(canonical.encode())


def test_a_v1_record_decodes_under_the_newest_reader_with_the_defaults() -> None:
    v1 = VERSIONS["CollectionCreated"][1]
    assert latest("CollectionCreated").version == 6
    event = ev.CollectionCreated(ev.EventMeta.new("docs", "old-producer"), 384, "ip", 8, 100, 50, "workspace",
                                 embedder='{"will": "be dropped by v1"}')
    data = encode(event, schema=v1)
    assert data[2:10] == v1.fingerprint
    decoded = decode(data)
    assert isinstance(decoded, ev.CollectionCreated)
    assert decoded.meta.schema_version == 1
    assert (decoded.dimension, decoded.metric, decoded.m, decoded.ef, decoded.kind) == (384, "ip", 8, 50, "workspace")
    assert decoded.embedder is None  # the field v2 added, filled from its default
    assert decoded.quantization is None  # and v3's


def test_a_v2_record_decodes_as_before_and_v3_carries_quantization() -> None:
    v2 = VERSIONS["CollectionCreated"][2]
    event = ev.CollectionCreated(ev.EventMeta.new("docs", "p"), 8, "cosine", embedder='{"kind": "hash"}',
                                 quantization='{"scalar":{"type":"int8"}}')
    old = decode(encode(event, schema=v2))
    assert isinstance(old, ev.CollectionCreated) and old.meta.schema_version == 2
    assert old.embedder == '{"kind": "hash"}' and old.quantization is None
    v3 = decode(encode(event, schema=VERSIONS["CollectionCreated"][3]))
    assert isinstance(v3, ev.CollectionCreated) and v3.meta.schema_version == 3
    assert (v3.embedder, v3.quantization) == (event.embedder, event.quantization)


def test_a_v3_record_decodes_as_before_and_v4_carries_on_disk() -> None:
    event = ev.CollectionCreated(ev.EventMeta.new("docs", "p"), 8, "cosine", quantization='{"scalar":{"type":"int8"}}',
                                 on_disk=False)
    old = decode(encode(event, schema=VERSIONS["CollectionCreated"][3]))
    assert isinstance(old, ev.CollectionCreated) and old.meta.schema_version == 3
    assert old.quantization == event.quantization and old.on_disk is None
    new = decode(encode(event, schema=VERSIONS["CollectionCreated"][4]))
    assert isinstance(new, ev.CollectionCreated) and new.meta.schema_version == 4 and new.on_disk is False


def test_a_v5_record_decodes_as_before_and_v6_carries_manhattan() -> None:
    v5 = VERSIONS["CollectionCreated"][5]
    event = ev.CollectionCreated(ev.EventMeta.new("docs", "p"), 8, "l2", vectors='{"a":{"metric":"ip","size":2}}')
    old = decode(encode(event, schema=v5))
    assert isinstance(old, ev.CollectionCreated) and old.meta.schema_version == 5
    assert (old.metric, old.vectors) == ("l2", event.vectors)
    manhattan = ev.CollectionCreated(ev.EventMeta.new("docs", "p"), 8, "manhattan")
    with pytest.raises(ValueError, match="manhattan"):  # v5's enum has no such symbol
        encode(manhattan, schema=v5)
    new = decode(encode(manhattan))
    assert isinstance(new, ev.CollectionCreated) and new.meta.schema_version == 6 and new.metric == "manhattan"


def test_collection_updated_round_trips_its_settings() -> None:
    diff = '{"quantization_config":"Disabled","vector":{"hnsw_config":{"m":32},"on_disk":true}}'
    event = ev.CollectionUpdated(ev.EventMeta.new("docs", "p"), diff)
    back = decode(encode(event))
    assert isinstance(back, ev.CollectionUpdated) and back.diff == diff and back.meta.schema_version == 1


def test_plain_fastavro_decodes_a_record_with_only_the_schema_files() -> None:
    event = ev.VectorsUpserted(ev.EventMeta.new("c", "p"), (1, "a"), np.eye(2, 3, dtype=np.float32),
                               ({"k": 1}, None))
    data = encode(event)
    # What a third-party reader does: match the fingerprint against the .avsc files, then read.
    schemas: dict[bytes, Any] = {}
    for path in AVRO_DIR.glob("*.v*.avsc"):
        schema = load_schema(str(path))
        canonical = fastavro.schema.to_parsing_canonical_form(schema)
        schemas[bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))] = schema
    assert data[:2] == b"\xc3\x01"
    record = cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(data[10:]), schemas[data[2:10]], None))
    assert record["ids"] == [1, "a"] and record["count"] == 2 and record["dimension"] == 3
    assert np.frombuffer(record["vectors"], "<f4").reshape(2, 3).tolist() == np.eye(2, 3).tolist()
    assert json.loads(record["payloads"][0]) == {"k": 1}
    assert record["envelope"]["collection"] == "c"


def _sample() -> bytes:
    return encode(ev.VectorsDeleted(ev.EventMeta.new("c", "p"), (1, 2, 3)))


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda b: b"\x00\x01" + b[2:], NotSingleObjectAvro),
    (lambda b: b[:4], NotSingleObjectAvro),
    (lambda b: b[:2] + bytes(8) + b[10:], UnknownFingerprint),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0x01]), ChecksumMismatch),
    (lambda b: b[:-1], ChecksumMismatch),
    (lambda b: b[:12], InvalidContent),
])
def test_each_decode_failure_has_its_own_exception(mutate: Callable[[bytes], bytes], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        decode(mutate(_sample()))
    assert isinstance(info.value, ValueError)


def test_well_framed_but_inconsistent_content_is_invalid() -> None:
    event = ev.VectorsUpserted(ev.EventMeta.new("c", "p"), (1, 2), np.zeros((2, 4), np.float32), (None, None))
    schema = latest("VectorsUpserted")
    body = {"ids": [1, 2], "count": 2, "dimension": 4, "vectors": b"\x00" * 20, "payloads": [None, None]}
    from schemas import codec

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.body, body)
    good = encode(event)
    env_end = len(good) - len(_body_bytes(event))
    forged = good[:10] + _envelope_with_checksum(good[10:env_end], codec.checksum(buf.getvalue())) + buf.getvalue()
    with pytest.raises(InvalidContent, match="do not hold 2 x 4"):
        decode(forged)


def _body_bytes(event: ev.Event) -> bytes:
    from schemas.codec import _CODECS

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, latest(type(event).__name__).body, _CODECS[type(event)][0](event))
    return buf.getvalue()


def _envelope_with_checksum(envelope: bytes, digest: bytes) -> bytes:
    return envelope[:-8] + digest
