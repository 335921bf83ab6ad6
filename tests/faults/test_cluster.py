"""The partition leader of a 3-broker KRaft cluster killed (kill -9) during ingest.

The topic has replication factor 3 and ``min.insync.replicas=2``, so an acknowledged
(``acks=all``) write is on at least two brokers and survives losing any one of them.
The killed node also is the active controller (leadership is moved there first), so the
harder failover, of the controller quorum and then of the partition, happens every run:

- every acknowledged write is on the log exactly once and in the projection;
- the producer and the projector follow the new leader by themselves (records written
  after the kill are acknowledged and applied);
- the killed broker restarts and rejoins the in-sync replicas.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from infra.kafka.launcher import LocalBroker, cluster_nodes, new_cluster_id, start_cluster, stop_cluster
from infra.kafka.topics import describe_topic_configs, ensure_topics
from infra.settings import Settings
from producers import VectorProducer
from producers.errors import PublishFailed
from schemas import events as ev
from schemas.codec import decode
from tests import reliability
from tests.conftest import free_ports
from tests.helpers import read_topic, running_projector, wait_until

BROKERS = 3
REPLICATION = 3
SEED = 20240803


def _partition_zero(admin: KafkaAdminClient, topic: str) -> dict[str, Any]:
    """Partition 0 of ``topic`` as the cluster describes it now (leader_id, replica_nodes, isr_nodes);
    empty when no broker answered (the admin client may have been talking to the killed one)."""
    try:
        described = admin.describe_topics([topic])
    except KafkaError:
        return {}
    partitions = described[0]["partitions"] if described else []
    return next((p for p in partitions if p["partition_index"] == 0), {})


def _active_controller(admin: KafkaAdminClient) -> int | None:
    """The node id (1..n) of the KRaft quorum leader, the active controller; None when unknown."""
    try:
        quorum = admin.describe_metadata_quorum()
    except KafkaError:
        return None
    leader = int(quorum["topics"][0]["partitions"][0]["leader_id"])
    return leader if leader > 0 else None


def _lead_from_active_controller(admin: KafkaAdminClient, topic: str) -> int:
    """Move partition 0's leadership to the active controller and return its id.

    Killing that node is the harder failover, and a deterministic one: the controller
    quorum elects a new leader before it can fence the dead broker and move the partition.
    """
    controller = wait_until(lambda: _active_controller(admin), 30, message="the active controller")
    assert controller is not None
    replicas = _partition_zero(admin, topic)["replica_nodes"]
    order = [controller] + [r for r in replicas if r != controller]
    admin.alter_partition_reassignments({TopicPartition(topic, 0): order})
    wait_until(lambda: _partition_zero(admin, topic).get("replica_nodes") == order, 30,
               message="the reordered replicas")
    admin.elect_leaders(0, {topic: [0]}, raise_errors=False)  # 0: preferred leader, the first replica
    wait_until(lambda: _partition_zero(admin, topic).get("leader_id") == controller, 30,
               message="the active controller to lead partition 0")
    return controller


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_partition_leader_killed_mid_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    ports = free_ports(2 * BROKERS)
    nodes = cluster_nodes([(ports[2 * i], ports[2 * i + 1]) for i in range(BROKERS)])
    cluster_id = new_cluster_id()
    brokers = {n.node_id: LocalBroker(tmp_path / "kafka" / f"node-{n.node_id}", Settings().cache_dir, n,
                                      heap="320m", cluster_id=cluster_id) for n in nodes}
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    settings = Settings(kafka_bootstrap=bootstrap, topic="cluster.events", data_dir=tmp_path / "data",
                        replication_factor=REPLICATION, publish_timeout=30.0,
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    rng = np.random.default_rng(SEED)
    acked: list[tuple[int, int]] = []      # (id, offset) of every acknowledged upsert, in order
    acked_at: list[float] = []             # when each was acknowledged (monotonic)
    unknown: list[int] = []                # PublishFailed: may or may not be on the log
    stop = threading.Event()
    writer_error: list[BaseException] = []

    def ingest(producer: VectorProducer) -> None:
        i = 0
        try:
            while not stop.is_set():
                vector = rng.standard_normal((1, 4), dtype=np.float32)
                try:
                    token = producer.upsert("c", [i], vector, [{"i": i}])
                    acked.append((i, token.offset))
                    acked_at.append(time.monotonic())
                except PublishFailed:
                    unknown.append(i)
                i += 1
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            writer_error.append(exc)

    admin: KafkaAdminClient | None = None
    try:
        start_cluster(list(brokers.values()), timeout=120)
        ensure_topics(settings)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        part = _partition_zero(admin, settings.topic)
        assert len(part["replica_nodes"]) == REPLICATION and len(part["isr_nodes"]) == REPLICATION, part
        min_isr = int(describe_topic_configs(admin, settings.topic)["min.insync.replicas"])
        assert min_isr == 2
        controller = _lead_from_active_controller(admin, settings.topic)

        with VectorProducer(settings, producer_id="cluster-ingest") as producer, \
                running_projector(settings) as projector:
            producer.create_collection("c", 4, "l2")
            writer = threading.Thread(target=ingest, args=(producer,), daemon=True)
            writer.start()
            try:
                wait_until(lambda: len(acked) >= 200 or writer_error, 60, message="ingest before the fault")
                assert not writer_error, writer_error

                leader = _partition_zero(admin, settings.topic)["leader_id"]
                assert leader == controller == _active_controller(admin), "the leader is the active controller"
                brokers[leader].kill()                                # kill -9 the leader, mid-ingest
                acked_before = len(acked)
                offset_before = acked[-1][1]
                wait_until(lambda: len(acked) >= acked_before + 200 or writer_error, 90,
                           message="ingest after the failover")
            finally:
                stop.set()
                writer.join(60)
            assert not writer.is_alive() and not writer_error, writer_error
            # The longest pause between two acknowledgements from the kill on: the failover as writers see it.
            stall = max(b - a for a, b in zip(acked_at[acked_before - 1:], acked_at[acked_before:], strict=False))

            wait_until(lambda: _partition_zero(admin, settings.topic).get("leader_id", leader) not in (leader, -1),
                       30, message="a new leader of partition 0 in the cluster's metadata")
            wait_until(lambda: _active_controller(admin) not in (None, leader), 30, message="a new active controller")
            after = [(i, off) for i, off in acked[acked_before:] if off > offset_before]
            assert after, "nothing was acknowledged after the leader was killed"
            last_offset = acked[-1][1]
            projector.wait_for(0, last_offset, timeout=60)            # follows the new leader
            coll = projector.state.get("c")
            assert coll is not None
            present = set(coll.label_of)
            missing = [i for i, _ in acked if i not in present]
            assert not missing, f"{len(missing)} acknowledged points lost, e.g. {missing[:5]}"
            assert all(i in present for i, _ in after)

        brokers[leader].start(timeout=120)                            # the killed broker comes back
        wait_until(lambda: len(_partition_zero(admin, settings.topic).get("isr_nodes", ())) == REPLICATION, 60,
                   interval=0.5, message="the restarted broker to rejoin the in-sync replicas")

        records = read_topic(bootstrap, settings.topic, expected=len(acked) + 1)
        upserted = Counter(pid for r in records if isinstance(e := decode(r.value), ev.VectorsUpserted)
                           for pid in e.ids)
        duplicated = {pid: n for pid, n in upserted.items() if n > 1}
        assert not duplicated, f"records written twice: {list(duplicated.items())[:5]}"
        assert all(upserted[i] == 1 for i, _ in acked)
    finally:
        stop.set()
        if admin is not None:
            admin.close()
        stop_cluster(list(brokers.values()))

    reliability.record("cluster", "test_partition_leader_killed_mid_ingest_loses_and_duplicates_nothing",
                       failovers=1, controller_failovers=1, acknowledged_checked=len(acked),
                       acknowledged_lost=len(missing), duplicates=len(duplicated), unacknowledged=len(unknown),
                       acknowledged_after_failover=len(after), brokers=BROKERS,
                       replication_factor=len(part["replica_nodes"]), min_insync_replicas=min_isr,
                       write_stall_seconds=round(stall, 1))
