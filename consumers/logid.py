"""Which log a projection was built from, and whether the log it reads now is still that log.

A projection is a function of one log: one topic (Kafka's topic id, which changes when a
topic is deleted and recreated) of one cluster (its cluster id, which changes when a data
directory is pointed at another cluster or a broker's storage is formatted anew), read up to
its applied offsets. :func:`problems` compares what the projection recorded with what the
broker says now; any difference means the projection must not answer as if nothing happened:
it was built from records the log no longer holds (or never held).

Checks, per partition the projection has applied:
- the topic id or cluster id differs from the recorded one;
- the log ends before the applied offset (the records the projection applied are gone);
- the log starts after the applied offset + 1 (records it never saw were deleted);
- the partition is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from infra.kafka import clients
from infra.settings import Settings


@dataclass(frozen=True)
class LogIdentity:
    cluster_id: str | None
    topic_id: str | None  # None: the broker reports no topic id (older brokers): not compared
    exists: bool = True

    @property
    def tag(self) -> str | None:
        """A short name of this log for write tokens (the topic id's first 8 hex digits)."""
        return None if not self.topic_id else self.topic_id.replace("-", "")[:8]


@dataclass(frozen=True)
class LogBounds:
    """Per partition: the first offset still on the log and the next offset to be written."""

    start: dict[int, int]
    end: dict[int, int]


_UNKNOWN_TOPIC = 3  # Kafka's UNKNOWN_TOPIC_OR_PARTITION


def current_identity(settings: Settings, admin: KafkaAdminClient | None = None) -> LogIdentity:
    """The topic id and cluster id the broker reports now (public admin API).

    Only the broker's "no such topic" answer makes ``exists`` false; any other error code is
    raised as a :class:`KafkaError` (transient: the caller retries), never read as a changed log.
    """
    own = admin is None
    admin = admin or open_admin(settings)
    try:
        cluster = admin.describe_cluster().get("cluster_id")
        described = admin.describe_topics([settings.topic])
        code = described[0].get("error_code") if described else _UNKNOWN_TOPIC
        if code == _UNKNOWN_TOPIC:
            return LogIdentity(None if cluster is None else str(cluster), None, exists=False)
        if code:
            raise KafkaError(f"describing topic {settings.topic} failed with error code {code}")
        topic_id = described[0].get("topic_id")
        return LogIdentity(None if cluster is None else str(cluster), None if topic_id is None else str(topic_id))
    finally:
        if own:
            admin.close()


def open_admin(settings: Settings) -> KafkaAdminClient:
    """An admin client that gives up within seconds when the broker does not answer."""
    return clients.admin(settings, "logid", request_timeout_ms=5_000, bootstrap_timeout_ms=5_000)


def bounds(consumer: KafkaConsumer, topic: str, partitions: list[int]) -> LogBounds:
    tps = [TopicPartition(topic, p) for p in partitions]
    return LogBounds({tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()},
                     {tp.partition: o for tp, o in consumer.end_offsets(tps).items()})


def problems(recorded: LogIdentity | None, now: LogIdentity, applied: Mapping[int, int],
             found: LogBounds | None) -> list[str]:
    """What says the log is not the one the projection applied (empty: it is). ``found`` may be
    None when the topic does not exist (then only that is reported)."""
    out: list[str] = []
    if not any(o >= 0 for o in applied.values()):
        return out  # nothing applied yet: whatever the log is now, the projection is built from it
    if not now.exists:
        return ["the topic does not exist any more (deleted, or the broker lost its storage)"]
    if recorded is not None:
        if recorded.cluster_id and now.cluster_id and recorded.cluster_id != now.cluster_id:
            out.append(f"the cluster id is {now.cluster_id}, the projection was built from cluster "
                       f"{recorded.cluster_id} (a data directory pointed at another cluster, or a broker "
                       "whose storage was formatted anew)")
        if recorded.topic_id and now.topic_id and recorded.topic_id != now.topic_id:
            out.append(f"the topic id is {now.topic_id}, the projection was built from topic id "
                       f"{recorded.topic_id} (the topic was deleted and recreated)")
    if found is None:
        return out
    for partition, offset in sorted(applied.items()):
        if offset < 0:
            continue
        if partition not in found.end:
            out.append(f"partition {partition} is gone (the projection applied it up to offset {offset})")
            continue
        if found.end[partition] <= offset:
            out.append(f"partition {partition} ends at offset {found.end[partition] - 1}, the projection "
                       f"applied it up to {offset}: the records it applied are no longer on the log")
        elif found.start.get(partition, 0) > offset + 1 and found.start[partition] < found.end[partition]:
            # (a start at the end, e.g. past a trailing transaction marker, leaves nothing unseen)
            out.append(f"partition {partition} starts at offset {found.start[partition]}, the projection "
                       f"applied it only up to {offset}: records it never saw were deleted (retention)")
    return out


def advice() -> str:
    return ("the log changed beneath this projection; nothing is served from the old state. Rebuild "
            "from the log as it is now with `vectorizer replay --from-beginning` (with a Postgres catalog, "
            "give it an empty database or schema), or point the server back at its own log")


def diagnose(settings: Settings, recorded: LogIdentity | None, applied: Mapping[int, int]) -> list[str]:
    """:func:`problems` for a projection not running (``vectorizer status``, tools): asks the broker."""
    now = current_identity(settings)
    if not now.exists:
        return problems(recorded, now, applied, None)
    consumer = clients.consumer(settings, "logid", request_timeout_ms=10_000)
    try:
        partitions = sorted(consumer.partitions_for_topic(settings.topic) or ())
        return problems(recorded, now, applied, bounds(consumer, settings.topic, partitions))
    finally:
        consumer.close()
