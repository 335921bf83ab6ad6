"""`vectorizer up`: a broker and a server on localhost; Ctrl-C stops all of it, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from qdrant_client import QdrantClient

from infra.kafka.launcher import port_is_free
from tests.conftest import free_port
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_up_starts_broker_and_server_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    kafka_port, http_port, grpc_port = free_port(), free_port(), free_port()
    env = dict(os.environ, VECTORIZER_DATA_DIR=str(tmp_path / "data"),
               VECTORIZER_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka_port}", VECTORIZER_HTTP=f"127.0.0.1:{http_port}",
               VECTORIZER_GRPC=f"127.0.0.1:{grpc_port}")
    env.pop("VECTORIZER_READ_YOUR_WRITES", None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "up"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    broker_pid_file = tmp_path / "data" / "kafka" / "broker.pid"
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"http://127.0.0.1:{http_port}/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 180, interval=0.5, message="vectorizer up to be ready")
        broker_pid = int(broker_pid_file.read_text())
        assert _alive(broker_pid)
        created = httpx.put(f"http://127.0.0.1:{http_port}/collections/up_check",
                            json={"vectors": {"size": 2, "distance": "Dot"}}, params={"wait": "true"}, timeout=30)
        assert created.status_code == 200, created.text
        # `up` turns read_your_writes on: a write without `wait` answers once applied.
        upserted = httpx.put(f"http://127.0.0.1:{http_port}/collections/up_check/points",
                             json={"points": [{"id": 1, "vector": [1, 0]}]}, timeout=30)
        assert upserted.json()["result"]["status"] == "completed", upserted.text
        # The other two ways in come with it: the dashboard, and the MCP tools at /mcp.
        page = httpx.get(f"http://127.0.0.1:{http_port}/dashboard", timeout=30)
        assert page.status_code == 200 and "/dashboard/app.js" in page.text
        listed = httpx.post(f"http://127.0.0.1:{http_port}/mcp", timeout=30,
                            json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                  "params": {"name": "list_collections", "arguments": {"prefix": "up_"}}},
                            headers={"accept": "application/json, text/event-stream",
                                     "mcp-protocol-version": "2025-06-18"})
        assert listed.status_code == 200, listed.text
        assert listed.json()["result"]["structuredContent"]["collections"][0]["name"] == "up_check", listed.text
        # And Qdrant's gRPC API, for qdrant-client's prefer_grpc=True.
        grpc_client = QdrantClient(host="127.0.0.1", port=http_port, grpc_port=grpc_port, prefer_grpc=True,
                                   check_compatibility=False)
        assert grpc_client.count("up_check", exact=True).count == 1
        assert grpc_client.info().title == "vectorizer"
        grpc_client.close()
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(120)
    assert proc.returncode == 0, log.read_text()[-3000:]
    wait_until(lambda: not _alive(broker_pid), 30, message="the broker to exit")
    assert port_is_free(kafka_port) and port_is_free(http_port) and port_is_free(grpc_port)
    assert not broker_pid_file.exists()
