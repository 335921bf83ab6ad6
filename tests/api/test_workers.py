"""``VECTORIZER_WORKERS``: several serving processes on one pair of ports, through the real CLI and broker.

Every worker listens on the HTTP and gRPC ports and serves reads (connections are spread over
them), reads with a write token see that write whichever worker answers, each worker keeps its
own projection, a worker that dies stops the server with a failure, and SIGTERM stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from qdrant_client import QdrantClient

from infra.errors import ConfigurationError
from infra.settings import Settings
from tests.conftest import free_port
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp: Path, kafka_bootstrap: str, http: int, grpc: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECTORIZER_")}
    env.update(VECTORIZER_KAFKA_BOOTSTRAP=kafka_bootstrap, VECTORIZER_TOPIC=f"t.workers_{uuid.uuid4().hex[:10]}",
               VECTORIZER_DATA_DIR=str(tmp / "data"), VECTORIZER_HTTP=f"127.0.0.1:{http}",
               VECTORIZER_GRPC=f"127.0.0.1:{grpc}", VECTORIZER_WORKERS="2")
    with open(tmp / "serve.log", "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "vectorizer", "serve"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _listening(proc: psutil.Process) -> set[int]:
    return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def _start_time(metrics: str) -> float:
    (line,) = [x for x in metrics.splitlines() if x.startswith("process_start_time_seconds ")]
    return float(line.split()[1])


def _fresh_get(url: str, **params: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:  # a new connection each time: the kernel picks the worker
        return client.get(url, params=params)


def test_two_workers_share_the_ports_and_keep_read_your_writes(tmp_path: Path, kafka_bootstrap: str) -> None:
    http, grpc = free_port(), free_port()
    proc = _start(tmp_path, kafka_bootstrap, http, grpc)
    log = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{http}"
    try:
        parent = psutil.Process(proc.pid)

        def all_ready() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            children = parent.children()
            if len(children) != 1 or any({http, grpc} - _listening(p) for p in (parent, *children)):
                return False
            try:  # both workers answer ready: ask on fresh connections until each said so
                return all(_fresh_get(f"{base}/ready").status_code == 200 for _ in range(20))
            except httpx.HTTPError:
                return False

        wait_until(all_ready, 120, interval=0.2, message="both workers listening and ready")
        (child,) = parent.children()
        with httpx.Client(base_url=base, timeout=30) as one:  # one connection: one worker, which knows "w"
            one.put("/collections/w", json={"vectors": {"size": 2, "distance": "Dot"}}).raise_for_status()
            answer = one.put("/collections/w/points", params={"wait": "false"},
                             json={"points": [{"id": 1, "vector": [1.0, 0.0], "payload": {"v": 1}}]})
        token = answer.json()["result"]["write_token"]
        for _ in range(100):  # with the token, every worker answers with the write applied
            counted = _fresh_get(f"{base}/collections/w/points/1", consistency=token)
            assert counted.status_code == 200 and counted.json()["result"]["payload"] == {"v": 1}, counted.text
        # Who answered: each process's start time in /metrics tells the workers apart.
        seen: set[float] = set()

        def both_answered() -> bool:
            seen.add(_start_time(_fresh_get(f"{base}/metrics").text))
            return len(seen) >= 2

        wait_until(both_answered, 60, interval=0, message="both workers answering on new connections")
        started = [p.create_time() for p in (parent, child)]
        assert len(seen) == 2 and all(min(abs(t - s) for s in started) < 0.05 for t in seen), (seen, started)
        over_grpc = QdrantClient(host="127.0.0.1", port=http, grpc_port=grpc, prefer_grpc=True,
                                 check_compatibility=False)
        assert over_grpc.count("w", exact=True).count == 1
        over_grpc.close()
        assert (tmp_path / "data" / "workers" / "1" / "catalog.db").exists()  # its own projection

        child.kill()  # a worker that dies takes the server down, loudly
        assert proc.wait(90) == 1, log.read_text(errors="replace")[-3000:]
        assert "worker 1" in log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_sigterm_stops_every_worker(tmp_path: Path, kafka_bootstrap: str) -> None:
    http, grpc = free_port(), free_port()
    proc = _start(tmp_path, kafka_bootstrap, http, grpc)
    try:
        wait_until(lambda: len(psutil.Process(proc.pid).children()) == 1 and
                   _fresh_get(f"http://127.0.0.1:{http}/ready").status_code == 200, 120, interval=0.2,
                   message="the server ready with its second worker")
        (child,) = psutil.Process(proc.pid).children()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_workers_need_fixed_ports_and_their_own_catalogs() -> None:
    with pytest.raises(ConfigurationError, match="port other than 0"):
        Settings(workers=2, http="127.0.0.1:0").validate()
    with pytest.raises(ConfigurationError, match="own SQLite catalog"):
        Settings(workers=2, grpc="off", catalog_url="postgresql+psycopg://u@h/db").validate()
    with pytest.raises(ConfigurationError, match="workers: must be at least 1"):
        Settings(workers=0).validate()
