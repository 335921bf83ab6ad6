"""The real broker: bytes and per-key order survive a round trip; data survives stop/start."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from infra.errors import BrokerError
from infra.kafka.launcher import LocalBroker, NodeSpec, port_is_free
from infra.settings import Settings
from tests.conftest import free_port
from tests.helpers import read_topic


def _create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def test_round_trip_keeps_bytes_and_per_key_order(kafka_bootstrap: str, topic: str) -> None:
    _create(kafka_bootstrap, topic, partitions=3)
    rng = random.Random(7)
    keys = [f"key-{i}".encode() for i in range(5)]
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    for i in range(300):
        key = rng.choice(keys)
        value = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) + i.to_bytes(4, "big")
        producer.send(topic, key=key, value=value)
        sent[key].append(value)
    producer.flush()
    producer.close()

    records = read_topic(kafka_bootstrap, topic, expected=300)
    assert len(records) == 300
    received: dict[bytes, list[bytes]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        received[rec.key].append(rec.value)
        partitions_of_key[rec.key].add(rec.partition)
    assert received == sent
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key must map to one partition"


def test_local_broker_keeps_data_across_stop_and_start(tmp_path: Path) -> None:
    port, controller = free_port(), free_port()
    node = NodeSpec(port=port, controller_port=controller, voters=f"1@127.0.0.1:{controller}")
    broker = LocalBroker(tmp_path / "kafka", Settings().cache_dir, node)
    try:
        broker.start(timeout=120)
        assert broker.start(timeout=30) >= 0, "starting twice is harmless"
        _create(broker.bootstrap, "durable", partitions=1)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        sent = [producer.send("durable", key=b"k", value=f"v{i}".encode()) for i in range(20)]
        for future in sent:  # acknowledged, each (flush() alone has raced in kafka-python)
            future.get(60)
        producer.close()
        assert broker.stop() is True
        assert broker.pid() is None and port_is_free(port)

        broker.start(timeout=120)
        values = [r.value for r in read_topic(broker.bootstrap, "durable", expected=20)]
        assert values == [f"v{i}".encode() for i in range(20)]
    finally:
        broker.stop()
    assert broker.pid() is None


def test_port_in_use_is_a_clear_error(tmp_path: Path, kafka_bootstrap: str) -> None:
    port = int(kafka_bootstrap.rpartition(":")[2])
    controller = free_port()
    node = NodeSpec(node_id=1, port=port, controller_port=controller, voters=f"1@127.0.0.1:{controller}")
    intruder = LocalBroker(tmp_path / "other", Settings().cache_dir, node)
    try:
        intruder.start(timeout=10)
    except BrokerError as exc:
        assert f"port {port}" in str(exc) and "already in use" in str(exc)
    else:
        raise AssertionError("starting on a taken port must fail")
