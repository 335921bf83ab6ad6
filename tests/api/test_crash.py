"""``vectorizer serve`` as a real process: SIGTERM stops it cleanly with a final snapshot;
kill -9 during a stream of acknowledged upserts loses none of them after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from consumers import snapshots
from infra.settings import Settings
from producers import WriteToken
from tests import reliability
from tests.conftest import free_port
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
DIM = 8


@contextmanager
def serve_process(settings: Settings, log_name: str) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``python -m vectorizer serve``, output to a log file; yields once ``/ready`` is 200."""
    env = dict(os.environ)
    env.update({"VECTORIZER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "VECTORIZER_TOPIC": settings.topic,
                "VECTORIZER_DATA_DIR": str(settings.data_dir), "VECTORIZER_HTTP": settings.http,
                "VECTORIZER_SNAPSHOT_EVERY_EVENTS": "25", "VECTORIZER_CATALOG_URL": ""})
    log_file = settings.data_dir.parent / log_name
    with open(log_file, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "serve"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://{settings.http}", timeout=90)  # above the server-side waits

    def ready() -> bool:
        assert proc.poll() is None, log_file.read_text()[-3000:]
        try:
            return client.get("/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 90, interval=0.1, message=f"/ready of the server (log {log_file})")
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _stream_upserts(http: httpx.Client, start: int, acked: list[int], tokens: list[str],
                    stop: threading.Event) -> None:
    """Upsert batches of 10 new ids until the server dies; remember what Kafka acknowledged."""
    first = start
    while not stop.is_set():
        ids = list(range(first, first + 10))
        try:
            r = http.put("/collections/crash/points", json={"batch": {
                "ids": ids, "vectors": [[float(i)] * DIM for i in ids], "payloads": [{"i": i} for i in ids]}})
        except httpx.TransportError:
            return
        if r.status_code == 503:
            continue  # outcome unknown (Kafka slow to acknowledge): the same ids again, upserts are idempotent
        if r.status_code != 200:
            return
        acked.extend(ids)
        tokens.append(r.json()["result"]["write_token"])
        first += 10


def _assert_all_there(http: httpx.Client, acked: list[int], tokens: list[str]) -> None:
    last = max(tokens, key=lambda t: WriteToken.parse(t).offset)
    r = http.post("/collections/crash/points/count", params={"consistency": last, "timeout": 60}, json={})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["count"] >= len(acked) + 1
    r = http.post("/collections/crash/points", json={"ids": acked, "with_vector": True})
    found = {p["id"]: p for p in r.json()["result"]}
    missing = [i for i in acked if i not in found]
    assert not missing, f"{len(missing)} acknowledged points lost, e.g. {missing[:10]}"
    for i in acked:
        assert found[i]["payload"] == {"i": i} and found[i]["vector"] == [float(i)] * DIM, found[i]
    assert http.get("/collections/crash/points/1000000").status_code == 200


def test_sigterm_then_kill_9_during_acknowledged_upserts(settings: Settings) -> None:
    settings = settings.replace(http=f"127.0.0.1:{free_port()}")
    with serve_process(settings, "serve-0.log") as (proc, http):
        r = http.put("/collections/crash", json={"vectors": {"size": DIM, "distance": "Euclid"}})
        assert r.status_code == 200, r.text
        r = http.put("/collections/crash/points", params={"wait": "true"},
                     json={"points": [{"id": 1_000_000, "vector": [0.5] * DIM}]})
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (settings.data_dir.parent / "serve-0.log").read_text()[-3000:]
    assert snapshots.list_snapshots(settings.snapshot_dir), "no final snapshot on SIGTERM"

    acked: list[int] = []
    tokens: list[str] = []
    kills = 0
    for round_ in range(6):  # five kills, then a last restart that checks
        with serve_process(settings, f"serve-{round_ + 1}.log") as (proc, http):
            if acked:  # after a kill -9 and a restart
                _assert_all_there(http, acked, tokens)
            if round_ == 5:
                break
            stop = threading.Event()
            before = len(acked)
            writer = threading.Thread(target=_stream_upserts, args=(http, before, acked, tokens, stop))
            writer.start()
            wait_until(lambda: len(acked) >= before + 300 or not writer.is_alive(), 60,  # noqa: B023
                       message="acknowledged upserts")
            proc.send_signal(signal.SIGKILL)  # mid-stream: requests are in flight
            proc.wait(30)
            kills += 1
            stop.set()
            writer.join(30)
            assert len(acked) >= before + 300
    reliability.record("crash", "server: kill -9 during acknowledged HTTP upserts", kills=kills,
                       acknowledged_checked=len(acked), acknowledged_lost=0)
