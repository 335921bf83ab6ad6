"""Small test utilities: waiting on conditions with a deadline, reading a topic back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               message: str = "condition") -> T:
    """Return the first truthy value of ``condition()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30.0,
               isolation_level: str = "read_uncommitted") -> list[ConsumerRecord]:
    """Read every record of ``topic`` from the beginning until ``expected`` arrived (or fail)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level=isolation_level, consumer_timeout_ms=1000)
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(topic), timeout,
                                message=f"metadata of {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()
