"""Hostile records on the topic, written by a raw Kafka producer that skips every check.

Seeded mix of: random bytes, the right marker with unknown fingerprints, flipped bits in
the body (checksum mismatch), events whose sizes lie (a "huge" count over a small vector
blob, ids and vectors of different lengths), wrong dimensions, non-finite vectors, events
for collections that do not exist; interleaved with good events, among them one batch of
50,000 vectors near the message size limit. Each bad record ends in the dead-letter topic
exactly once, with its reason; every good one is applied; a restart changes nothing.
"""

from __future__ import annotations

import io
import random
import shutil
from collections import Counter
from typing import Any

import fastavro
import numpy as np
from kafka import KafkaProducer

from infra.settings import Settings
from producers import VectorProducer
from schemas import events as ev
from schemas.codec import _CODECS, checksum, encode
from schemas.registry import ENVELOPE_SCHEMA, latest
from tests import reliability
from tests.helpers import read_topic, running_projector

DIM = 32


def _upsert(ids: list[int], vectors: np.ndarray, collection: str = "c") -> bytes:
    return encode(ev.VectorsUpserted(ev.EventMeta.new(collection, "hostile"), tuple(ids), vectors,
                                     tuple(None for _ in ids)))


def _with_body(body: dict[str, Any]) -> bytes:
    """A VectorsUpserted record with a hand-made body (valid Avro, valid checksum, lying content)."""
    version = latest("VectorsUpserted")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, version.body, body)
    raw = buf.getvalue()
    meta = ev.EventMeta.new("c", "hostile")
    out = io.BytesIO()
    out.write(version.header)
    fastavro.schemaless_writer(out, ENVELOPE_SCHEMA, {
        "event_id": meta.event_id, "collection": "c", "producer_id": "hostile", "created_at": meta.created_at,
        "schema_version": version.version, "checksum": checksum(raw)})
    out.write(raw)
    return out.getvalue()


def _poison(rng: random.Random, nprng: np.random.Generator) -> list[tuple[str, bytes]]:
    """(expected dead-letter reason, record value) for every kind of bad record."""
    good = _upsert([10**9], nprng.random((1, DIM), dtype=np.float32))
    to_body = _CODECS[ev.VectorsUpserted][0]
    honest = to_body(ev.VectorsUpserted(ev.EventMeta.new("c", "x"), (1, 2), nprng.random((2, DIM), np.float32),
                                        (None, None)))
    out: list[tuple[str, bytes]] = []
    for _ in range(10):
        out.append(("not-single-object-avro", b"\x00" + rng.randbytes(rng.randint(0, 400))))
        out.append(("unknown-fingerprint", b"\xc3\x01" + rng.randbytes(8) + rng.randbytes(rng.randint(0, 200))))
        flipped = bytearray(good)
        flipped[rng.randrange(len(good) - 4 * DIM, len(good))] ^= 1 << rng.randrange(8)
        out.append(("checksum-mismatch", bytes(flipped)))
    out += [
        ("invalid-content", _with_body({**honest, "count": 10_000_000})),                  # a "huge" count
        ("invalid-content", _with_body({**honest, "ids": list(range(5000))})),             # ids != vectors
        ("invalid-content", _with_body({**honest, "dimension": 3})),                       # bytes don't divide
        ("rejected", _upsert([7, 8], nprng.random((2, DIM + 1), dtype=np.float32))),      # wrong dimension
        ("rejected", _upsert([9], np.full((1, DIM), np.nan, np.float32))),                 # NaN
        ("rejected", _upsert([9], np.full((1, DIM), np.inf, np.float32))),                 # infinity
        ("rejected", _upsert([9], nprng.random((1, DIM), dtype=np.float32), "no-such-collection")),
    ]
    return out


def test_hostile_records_are_dead_lettered_once_and_the_rest_applied(settings: Settings) -> None:
    rng, nprng = random.Random(8), np.random.default_rng(8)
    with VectorProducer(settings) as p:
        p.create_collection("c", DIM, "l2")
    poison = _poison(rng, nprng)
    rng.shuffle(poison)
    huge = nprng.random((50_000, DIM), dtype=np.float32)
    good_ids: list[int] = []
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=8 << 20)
    futures = []
    for i, (_, value) in enumerate(poison):
        futures.append(raw.send(settings.topic, key=b"c", value=value))
        if i % 5 == 0:  # good events in between
            ids = list(range(i * 10, i * 10 + 10))
            futures.append(raw.send(settings.topic, key=b"c", value=_upsert(ids, nprng.random((10, DIM), np.float32))))
            good_ids += ids
    big_ids = list(range(100_000, 150_000))
    futures.append(raw.send(settings.topic, key=b"c", value=_upsert(big_ids, huge)))  # ~6.6 MB, valid
    good_ids += big_ids
    last = raw.send(settings.topic, key=b"c", value=_upsert([99_999], huge[:1])).get(60)
    good_ids.append(99_999)
    for f in futures:
        f.get(60)
    raw.close()

    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 120)
        coll = proj.state.get("c")
        assert sorted(coll.label_of) == sorted(good_ids), "every good record applied, no bad one"
        assert np.isfinite(coll.index.vectors([coll.label_of[i] for i in good_ids[:50]])).all()
        assert proj.stats.dead_letters == len(poison)
    letters = read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=len(poison))
    reasons = Counter(dict(r.headers)["vectorizer.reason"].decode() for r in letters)
    assert reasons == Counter(reason for reason, _ in poison)
    assert sorted(r.value for r in letters) == sorted(value for _, value in poison)

    # A restart without its snapshots replays the whole log (the catalog is ahead): it meets every
    # bad record again and dead-letters none of them twice.
    shutil.rmtree(settings.snapshot_dir)
    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 120)
        assert proj.stats.loaded_snapshot is None and proj.stats.dead_letters == 0
        assert len(proj.state.get("c")) == len(good_ids)
    assert len(read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=len(poison))) == len(poison)
    reliability.record("poison", "hostile records on the topic, interleaved with good ones",
                       dead_lettered=len(poison), kinds=len(reasons), good_records_applied=len(good_ids),
                       largest_good_batch=len(big_ids), dead_lettered_twice=0)
