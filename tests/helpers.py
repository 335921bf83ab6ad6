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


def read_topic(bootstrap: str, topic: str, expected: int = 0, timeout: float = 30.0,
               isolation_level: str = "read_uncommitted") -> list[ConsumerRecord]:
    """Every record of ``topic``: waits until at least ``expected`` are readable (or the
    deadline passes), then drains to the end offsets (the last stable offset under
    ``read_committed``), so records beyond ``expected`` are returned too."""
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
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
            if len(records) >= expected:
                ends = consumer.end_offsets(tps)
                if all(consumer.position(tp) >= ends[tp] for tp in tps):
                    break
        return records
    finally:
        consumer.close()
