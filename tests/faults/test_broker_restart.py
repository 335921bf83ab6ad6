"""The broker killed (kill -9) and restarted during ingest.

- every acknowledged write is on the log exactly once and in the projection: idempotent
  retries never duplicate, nothing acknowledged is lost;
- while the broker is down, the server answers writes with 503 and Retry-After;
- afterwards the server and the producer recover by themselves.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from infra.settings import Settings
from producers import VectorProducer
from producers.errors import PublishFailed
from schemas import events as ev
from schemas.codec import decode
from tests import reliability
from tests.api.conftest import serving
from tests.conftest import single_node
from tests.helpers import read_topic, wait_until


def test_broker_kill_and_restart_during_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    broker = single_node(tmp_path / "kafka")
    broker.start(timeout=120)
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic="faults.events", data_dir=tmp_path / "data",
                        publish_timeout=5.0, snapshot_every_events=50)
    acked: list[int] = []
    unacknowledged: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def ingest() -> None:
        try:
            with VectorProducer(settings, producer_id="ingest") as producer:
                i = 0
                while not stop.is_set():
                    try:
                        producer.upsert("f", [i], np.full((1, 4), i, np.float32), [{"i": i}])
                        acked.append(i)
                    except PublishFailed:
                        unacknowledged.append(i)  # outcome unknown: it may or may not be on the log
                    i += 1
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test's thread
            errors.append(exc)

    try:
        with serving(settings) as server:
            created = server.http.put("/collections/f", json={"vectors": {"size": 4, "distance": "Euclid"}})
            assert created.status_code == 200, created.text
            writer = threading.Thread(target=ingest, daemon=True)
            writer.start()
            wait_until(lambda: len(acked) >= 100 or errors, 60, message="ingest before the fault")
            assert not errors, errors

            broker.kill()                                             # kill -9, mid-ingest
            during = server.http.put("/collections/f/points", json={"points": [
                {"id": 10**9, "vector": [1, 2, 3, 4]}]}, timeout=60)
            assert during.status_code == 503, during.text
            assert during.headers.get("Retry-After")
            before_restart = len(acked)

            broker.start(timeout=120)
            wait_until(lambda: len(acked) >= before_restart + 100 or errors, 120, message="ingest after the restart")
            stop.set()
            writer.join(120)
            assert not writer.is_alive() and not errors, errors
            last = server.http.put("/collections/f/points", params={"wait": "true", "timeout": "120"}, timeout=150,
                                   json={"points": [{"id": 10**9 + 1, "vector": [0, 0, 0, 1]}]})
            assert last.status_code == 200 and last.json()["result"]["status"] == "completed", last.text

            count = server.http.post("/collections/f/points/count", json={"exact": True}).json()["result"]["count"]
            present = {p["id"] for p in _scroll_all(server.http)}
            missing = set(acked) - present
            assert not missing, f"{len(missing)} acknowledged points lost, e.g. {sorted(missing)[:5]}"
            assert count == len(present)

        records = read_topic(settings.kafka_bootstrap, settings.topic, expected=len(acked))
        upserted = Counter(pid for r in records if isinstance(e := decode(r.value), ev.VectorsUpserted)
                           for pid in e.ids)
        duplicated = {pid: n for pid, n in upserted.items() if n > 1}
        assert not duplicated, f"records written twice: {list(duplicated.items())[:5]}"
        assert all(upserted[i] == 1 for i in acked)
        reliability.record("broker", "broker kill -9 and restart during ingest", broker_restarts=1,
                           acknowledged_checked=len(acked), acknowledged_lost=0, duplicates=0,
                           unknown_outcome_publishes=len(unacknowledged), answered_503_with_retry_after=True)
    finally:
        stop.set()
        broker.stop()


def _scroll_all(http: httpx.Client) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    offset = None
    while True:
        body = {"limit": 1000, "with_payload": False, **({"offset": offset} if offset is not None else {})}
        page = http.post("/collections/f/points/scroll", json=body).json()["result"]
        points += page["points"]
        offset = page["next_page_offset"]
        if offset is None:
            return points
