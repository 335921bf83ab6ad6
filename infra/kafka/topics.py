"""The events topic: created on first use with unlimited retention; dangerous settings reported.

The topic is the source of truth, so it must never expire or compact records. An existing
topic whose ``retention.ms``/``retention.bytes`` is finite or whose ``cleanup.policy``
includes ``compact`` is reported loudly (a warning per problem) and returned to the caller.
"""

from __future__ import annotations

import logging
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from infra.errors import BrokerUnavailable
from infra.kafka import clients
from infra.settings import Settings

log = logging.getLogger(__name__)

_checked: set[tuple[str, str]] = set()


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as the Java client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def topic_configs(settings: Settings) -> dict[str, str]:
    return {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
        "max.message.bytes": str(settings.max_message_bytes),
        "min.insync.replicas": str(max(1, min(2, settings.replication_factor - 1))),
    }


#: How long the first connection to the brokers may take before the attempt fails (and a server logs
#: it and retries): a refused SASL password or certificate is told within this, not kafka-python's 30 s.
BOOTSTRAP_TIMEOUT_MS = 10_000


def ensure_topics(settings: Settings, admin: KafkaAdminClient | None = None) -> list[str]:
    """Create the events and dead-letter topics if missing; return problems of existing ones.

    Cheap after the first call per (bootstrap, topic) in a process.
    """
    key = (settings.kafka_bootstrap, settings.topic)
    if key in _checked:
        return []
    own = admin is None
    try:
        admin = admin or clients.admin(settings, "topics", request_timeout_ms=15000,
                                       bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS)
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    try:
        problems: list[str] = []
        for name in (settings.topic, settings.dlq_topic):
            if not _create(admin, settings, name):
                problems += check_topic(admin, name)
        for p in problems:
            log.warning("DANGER: %s", p)
        _wait_for_metadata(admin, settings.topic)
        _checked.add(key)
        return problems
    finally:
        if own:
            admin.close()


def _create(admin: KafkaAdminClient, settings: Settings, name: str) -> bool:
    try:
        admin.create_topics([NewTopic(name, settings.partitions, settings.replication_factor,
                                      topic_configs=topic_configs(settings))])
        return True
    except TopicAlreadyExistsError:
        return False


def _wait_for_metadata(admin: KafkaAdminClient, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = admin.describe_topics([name])
        if described and not described[0].get("error_code") and described[0].get("partitions"):
            return
        time.sleep(0.05)
    raise BrokerUnavailable(f"topic {name} was created but has no partition metadata after {timeout}s")


def check_topic(admin: KafkaAdminClient, name: str) -> list[str]:
    """Problems with an existing topic's settings, each a sentence naming the setting."""
    configs = describe_topic_configs(admin, name)
    problems = []
    for setting in ("retention.ms", "retention.bytes"):
        value = configs.get(setting)
        if value is not None and value != "-1":
            problems.append(f"topic {name}: {setting}={value} expires events; the log is the source of "
                            f"truth and should keep them forever (-1)")
    if "compact" in configs.get("cleanup.policy", ""):
        problems.append(f"topic {name}: cleanup.policy={configs['cleanup.policy']} compacts away "
                        f"events; use 'delete' with unlimited retention")
    return problems


def describe_topic_configs(admin: KafkaAdminClient, name: str) -> dict[str, str]:
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    entries = result.get("topic", {}).get(name, {})
    return {key: str(entry.get("value")) for key, entry in entries.items()}
