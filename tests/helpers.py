"""Small test utilities: waiting on conditions with a deadline, reading a topic back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from schemas import framing

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
               isolation_level: str = "read_uncommitted", end_records: bool = False) -> list[ConsumerRecord]:
    """Every record of ``topic``: waits until at least ``expected`` are readable (or the
    deadline passes), then drains to the end offsets (the last stable offset under
    ``read_committed``), so records beyond ``expected`` are returned too. Transactions' end
    records (``schemas.framing``: framing, not events) are left out unless ``end_records``."""
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
                records.extend(r for r in batch if end_records or not framing.is_end(r.headers))
            if len(records) >= expected:
                ends = consumer.end_offsets(tps)
                if all(consumer.position(tp) >= ends[tp] for tp in tps):
                    break
        return records
    finally:
        consumer.close()


# Projector helpers ------------------------------------------------------------------
@contextmanager
def running_projector(settings: Any, catalog: Any = None) -> Iterator[Any]:
    """A Projector consuming in a background thread; stopped (final snapshot) on exit."""
    from consumers.projector import Projector

    projector = Projector(settings, catalog)
    projector.recover()
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            projector.run(stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield projector
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the projector did not stop"
    if failure:
        raise AssertionError(f"the projector failed: {failure[0]!r}") from failure[0]


def state_of(projector: Any) -> dict[str, Any]:
    """Everything a user can observe of the projection: configs, ids, payloads, vectors (named too)."""
    out: dict[str, Any] = {}
    for name, coll in sorted(projector.state.collections.items()):
        labels = [coll.label_of[pid] for pid in sorted(coll.label_of, key=repr)]
        vectors = [v if isinstance(v, bytes) else v.tobytes() for v in coll.vector_records(labels)]
        out[name] = {
            "config": coll.config.as_dict(),
            "points": {repr(pid): (coll.payload_of.get(lbl), vectors[i])
                       for i, (pid, lbl) in enumerate(zip(sorted(coll.label_of, key=repr), labels, strict=True))},
        }
    return out


def catalog_of(projector: Any) -> dict[str, Any]:
    """The projector's catalog: collections and their rows, payloads opened (clear when sealed)."""
    cat = projector.catalog
    out = {}
    for row in cat.collection_rows():
        rows = {r["point_key"]: (cat.payload(r), r["checksum"]) for r in cat.point_rows(row["name"])}  # opened
        out[row["name"]] = {"dimension": row["dimension"], "metric": row["metric"], "points": rows}
    return out


def exact_top(projector: Any, collection: str, queries: np.ndarray, k: int = 10) -> list[list[Any]]:
    from projections.search import search

    coll = projector.state.get(collection)
    return [[h.id for h in search(coll, q, k, exact=True)] for q in queries]


def run_cli(settings: Any, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``vectorizer`` with these settings' broker, topic and data directory (and ``env`` set); (exit
    code, output)."""
    from typer.testing import CliRunner

    from vectorizer.cli import app

    result = CliRunner().invoke(app, ["--kafka-bootstrap", settings.kafka_bootstrap, "--topic", settings.topic,
                                      "--data-dir", str(settings.data_dir), *args], env=env)
    return result.exit_code, result.output
