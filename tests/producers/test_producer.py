"""The producer library against the real broker: validation, splitting, tokens, transactions."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from kafka.admin import KafkaAdminClient

from infra.kafka.topics import check_topic, describe_topic_configs, ensure_topics
from infra.settings import Settings
from producers import VectorProducer, WriteToken
from schemas import events as ev
from schemas.codec import decode
from schemas.errors import (
    DimensionMismatch,
    DuplicateId,
    InvalidCollectionName,
    InvalidPayload,
    InvalidPointId,
    InvalidVector,
    UnknownMetric,
)
from tests.helpers import read_topic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def producer(settings: Settings) -> Iterator[VectorProducer]:
    with VectorProducer(settings, producer_id="test") as p:
        yield p


def _events(settings: Settings, expected: int, isolation: str = "read_committed") -> list[ev.Event]:
    records = read_topic(settings.kafka_bootstrap, settings.topic, expected, isolation_level=isolation)
    return [decode(r.value) for r in records]


def test_topic_is_created_with_unlimited_retention(producer: VectorProducer, settings: Settings) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        configs = describe_topic_configs(admin, settings.topic)
        assert configs["retention.ms"] == "-1" and configs["retention.bytes"] == "-1"
        assert configs["cleanup.policy"] == "delete"
        assert int(configs["max.message.bytes"]) == settings.max_message_bytes
        assert check_topic(admin, settings.topic) == []
        assert settings.dlq_topic in admin.list_topics()
    finally:
        admin.close()


def test_dangerous_existing_topic_is_reported(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(settings.topic, 1, 1, topic_configs={
            "retention.ms": "86400000", "cleanup.policy": "compact"})])
        problems = ensure_topics(settings, admin)
    finally:
        admin.close()
    assert any("retention.ms=86400000" in p for p in problems)
    assert any("cleanup.policy=compact" in p for p in problems)
    assert "DANGER" in caplog.text


@pytest.mark.parametrize(("call", "error", "names"), [
    (lambda p: p.create_collection("c", 4, "hamming"), UnknownMetric, "hamming"),
    (lambda p: p.create_collection("bad/name", 4), InvalidCollectionName, "bad/name"),
    (lambda p: p.upsert("dims", [1, 2], np.ones((2, 5))), DimensionMismatch, "dimension 5"),
    (lambda p: p.upsert("dims", [1, 2], [[1, 2, 3, 4], [1, math.nan, 3, 4]]), InvalidVector, "vectors[1]"),
    (lambda p: p.upsert("dims", [1, 2], [[1, 2, 3, 4], [1, math.inf, 3, 4]]), InvalidVector, "vectors[1]"),
    (lambda p: p.upsert("dims", [], np.ones((0, 4))), InvalidPointId, "no ids"),
    (lambda p: p.upsert("dims", [1, ""], np.ones((2, 4))), InvalidPointId, "ids[1]"),
    (lambda p: p.upsert("dims", [7, 8, 7], np.ones((3, 4))), DuplicateId, "ids[2]"),
    (lambda p: p.upsert("dims", [1, 2.5], np.ones((2, 4))), InvalidPointId, "ids[1]"),
    (lambda p: p.upsert("dims", [-1], np.ones((1, 4))), InvalidPointId, "ids[0]"),
    (lambda p: p.upsert("dims", [1], np.ones((1, 4)), [{"x": object()}]), InvalidPayload, "payloads[0]"),
    (lambda p: p.upsert("dims", [1], np.ones((1, 4)), [{"x": math.nan}]), InvalidPayload, "payloads[0]"),
    (lambda p: p.upsert("dims", [1], np.ones((1, 4)), ["not a dict"]), InvalidPayload, "payloads[0]"),
])
def test_invalid_calls_raise_naming_the_item_and_publish_nothing(
        producer: VectorProducer, settings: Settings, call: Callable[[VectorProducer], object],
        error: type[Exception], names: str) -> None:
    producer.create_collection("dims", 4)
    with pytest.raises(error, match=None) as info:
        call(producer)
    assert names in str(info.value)
    assert isinstance(info.value, ValueError)
    events = _events(settings, expected=1)
    assert [type(e) for e in events] == [ev.CollectionCreated], "nothing but the create was published"


def test_upsert_returns_tokens_in_order_and_decodes_back(producer: VectorProducer, settings: Settings) -> None:
    t1 = producer.create_collection("c", 3, "l2")
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    t2 = producer.upsert("c", [1, "b", "00000000-0000-0000-0000-00000000000A", 4], vectors,
                         [{"a": 1}, None, {"n": {"x": [1, 2]}}, {}])
    t3 = producer.delete("c", [4])
    assert t1 < t2 < t3 and str(t3) == f"{t3.partition}:{t3.offset}"
    assert WriteToken.parse(str(t2)) == t2
    created, upserted, deleted = _events(settings, expected=3)
    assert isinstance(upserted, ev.VectorsUpserted)
    assert upserted.ids == (1, "b", "00000000-0000-0000-0000-00000000000a", 4)
    assert np.array_equal(upserted.vectors, vectors)
    assert upserted.payloads == ({"a": 1}, None, {"n": {"x": [1, 2]}}, {})
    assert isinstance(deleted, ev.VectorsDeleted) and deleted.ids == (4,)
    assert isinstance(created, ev.CollectionCreated) and created.metric == "l2"


def test_large_batch_is_split_under_the_message_size_in_one_transaction(settings: Settings) -> None:
    small = settings.replace(max_message_bytes=256 * 1024)
    with VectorProducer(small) as producer:
        producer.create_collection("big", 64)
        rng = np.random.default_rng(0)
        vectors = rng.random((3000, 64), dtype=np.float32)
        producer.upsert("big", list(range(3000)), vectors, [{"i": i} for i in range(3000)])
    events = _events(small, expected=3)
    upserts = [e for e in events if isinstance(e, ev.VectorsUpserted)]
    assert len(upserts) > 1, "the batch must have been split"
    assert sum(len(e.ids) for e in upserts) == 3000
    assert np.array_equal(np.concatenate([e.vectors for e in upserts]), vectors)
    assert [cast("dict[str, Any]", p)["i"] for e in upserts for p in e.payloads] == list(range(3000))


def test_committed_transaction_is_visible_and_aborted_one_is_not(producer: VectorProducer, settings: Settings) -> None:
    producer.create_collection("tx", 2)
    with producer.transaction():
        producer.upsert("tx", [1], [[1, 0]])
        producer.upsert("tx", [2], [[0, 1]])
    with pytest.raises(RuntimeError), producer.transaction():
        producer.upsert("tx", [3], [[1, 1]])
        raise RuntimeError("the application fails mid-transaction")
    producer.upsert("tx", [4], [[2, 2]])
    committed = _events(settings, expected=4, isolation="read_committed")  # create + 1, 2, 4
    upserted_ids = [e.ids for e in committed if isinstance(e, ev.VectorsUpserted)]
    assert upserted_ids == [(1,), (2,), (4,)]
    everything = _events(settings, expected=5, isolation="read_uncommitted")
    assert (3,) in [e.ids for e in everything if isinstance(e, ev.VectorsUpserted)], "it was written, then aborted"


def test_producer_killed_mid_batch_leaves_no_half_batch(settings: Settings) -> None:
    """A split batch whose producer dies after some of its records: consumers see none of it."""
    script = textwrap.dedent(f"""
        import os, numpy as np
        from kafka import KafkaProducer
        from producers import VectorProducer
        from infra.settings import Settings
        s = Settings(kafka_bootstrap={settings.kafka_bootstrap!r}, topic={settings.topic!r},
                     max_message_bytes=128 * 1024)
        p = VectorProducer(s, producer_id="doomed", transaction_timeout_ms=3000)
        p.create_collection("half", 32)
        futures = []
        original = KafkaProducer.send
        def send(self, *a, **kw):
            futures.append(original(self, *a, **kw))
            if len(futures) == 4:          # three upsert records are on the broker, more to come
                for f in futures:
                    f.get(timeout=30)
                os._exit(9)
            return futures[-1]
        KafkaProducer.send = send
        p.upsert("half", list(range(2000)), np.ones((2000, 32), np.float32))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    with VectorProducer(settings, producer_id="survivor") as after:
        after.upsert("half", ["after"], np.ones((1, 32), np.float32))
    uncommitted = _events(settings, expected=5, isolation="read_uncommitted")
    assert sum(isinstance(e, ev.VectorsUpserted) for e in uncommitted) >= 4, "partial records did reach the log"
    committed = _events(settings, expected=2, isolation="read_committed")
    assert [type(e) for e in committed] == [ev.CollectionCreated, ev.VectorsUpserted]
    assert isinstance(committed[1], ev.VectorsUpserted)
    assert committed[1].ids == ("after",)


@pytest.mark.parametrize(("vectors", "names"), [
    ([["1", "2", "3", "4"]], "expected numbers"),
    ([[10**400, 1, 2, 3]], "expected numbers"),
    ([[1e39, 1, 2, 3]], "NaN or infinity"),
    ([[1, [2], 3, 4]], "not an array of numbers"),
])
def test_non_numeric_or_overflowing_vectors_are_invalid(producer: VectorProducer, vectors: list[list[Any]],
                                                         names: str) -> None:
    producer.create_collection("v", 4)
    with pytest.raises(InvalidVector, match=names):
        producer.upsert("v", [1], vectors)


def test_a_payload_nested_too_deep_is_invalid(producer: VectorProducer) -> None:
    producer.create_collection("deep", 2)
    payload: dict[str, Any] = {}
    node = payload
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidPayload, match="nested deeper than 64"):
        producer.upsert("deep", [1], [[1, 2]], [payload])


def test_write_tokens_round_trip_with_and_without_their_log() -> None:
    from producers import WriteToken

    plain, tagged = WriteToken.parse("0:17"), WriteToken.parse("3:5@0a1b2c3d")
    assert (plain.partition, plain.offset, plain.log) == (0, 17, None) and str(plain) == "0:17"
    assert (tagged.partition, tagged.offset, tagged.log) == (3, 5, "0a1b2c3d") and str(tagged) == "3:5@0a1b2c3d"
    for bad in ("0:17@", "0:17@xyz", "0:17@0A1B2C3D", "a:1", "0:-1", "0:1@0a1b2c3d0"):
        with pytest.raises(ValueError, match="write token"):
            WriteToken.parse(bad)
