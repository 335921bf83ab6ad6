"""The operations routes under ``/vectorizer/``: status, collections a page at a time, recovery
snapshots, verify, dead letters, workspace sync; through the real broker."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from producers.producer import VectorProducer
from tests.api.conftest import Running, unique
from tests.helpers import wait_until

DIM = 4


def _result(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()["result"] if status == 200 else response.json()["status"]["error"]


def _create(server: Running, name: str, points: int = 0) -> None:
    _result(server.http.put(f"/collections/{name}", json={"vectors": {"size": DIM, "distance": "Dot"}}))
    if points:
        body = {"points": [{"id": i, "vector": [float(i + 1)] * DIM, "payload": {"i": i}} for i in range(points)]}
        _result(server.http.put(f"/collections/{name}/points", params={"wait": "true"}, json=body))


def test_status_counts_offsets_and_lag(server: Running) -> None:
    name = unique("ops")
    _create(server, name, points=3)
    status = _result(server.http.get("/vectorizer/status"))
    assert status["ready"] is True and status["problem"] is None
    assert status["lag"] == 0 and status["lag_seconds"] == 0 and status["collections"] >= 1 and status["points"] >= 3
    (part,) = status["partitions"]
    assert part["partition"] == 0 and part["lag"] == 0 and part["lag_seconds"] == 0
    assert part["log_end"] >= part["applied"] >= 1
    assert status["events_applied"] >= 2 and status["vectors_applied"] >= 3
    assert set(status["snapshot"]) == {"newest", "age_seconds", "last_duration_seconds", "failing", "error"}


def test_collections_come_a_page_at_a_time(server: Running) -> None:
    prefix = unique("page")
    names = [f"{prefix}_{i}" for i in range(5)]
    with VectorProducer(server.settings) as producer:  # in one go: the route reads, the test need not wait five times
        tokens = [producer.create_collection(n, DIM, "ip") for n in names]
        producer.wait_applied(tokens[-1], timeout=60)
    _result(server.http.put(f"/collections/{names[1]}/index", params={"wait": "true"},
                            json={"field_name": "city", "field_schema": "keyword"}))
    first = _result(server.http.get("/vectorizer/collections", params={"prefix": prefix, "limit": 2}))
    assert first["total"] == 5 and [c["name"] for c in first["collections"]] == names[:2]
    rest = _result(server.http.get("/vectorizer/collections", params={"prefix": prefix, "offset": 2, "limit": 50}))
    assert [c["name"] for c in rest["collections"]] == names[2:]
    entry = first["collections"][1]
    assert entry == {"name": names[1], "kind": "dynamic", "points": 0,
                     "vectors": {"": {"size": DIM, "distance": "Dot", "quantization": None}},
                     "sparse_vectors": [], "payload_indexes": {"city": "keyword"}, "aliases": [], "embedder": None}
    assert _result(server.http.get("/vectorizer/collections", params={"limit": 0}), 422)


def test_a_recovery_snapshot_on_request_is_listed(server: Running) -> None:
    _create(server, unique("snap"), points=2)
    taken = _result(server.http.post("/vectorizer/snapshots"))
    listed = _result(server.http.get("/vectorizer/snapshots"))["snapshots"]
    newest = listed[0]
    assert newest["name"] == taken["name"] and newest["offsets"] == taken["offsets"]
    assert newest["files"] > 0 and newest["bytes"] > 0 and 0 <= newest["age_seconds"] < 600
    assert _result(server.http.get("/vectorizer/status"))["snapshot"]["newest"] == taken["name"]


def test_verify_reports_and_is_remembered(server: Running) -> None:
    name = unique("ver")
    _create(server, name, points=3)
    report = _result(server.http.post("/vectorizer/verify", params={"collection": name}))
    assert report["ok"] is True and report["problems"] == [] and report["collection"] == name
    assert report["seconds"] >= 0 and report["finished"] > 0
    assert _result(server.http.get("/vectorizer/verify")) == report
    assert _result(server.http.get("/vectorizer/status"))["verify"] == report
    error = _result(server.http.post("/vectorizer/verify", params={"collection": unique("nope")}), 404)
    assert "doesn't exist" in error


def test_dead_letters_are_listed_with_their_reason(server: Running) -> None:
    missing = unique("nope")
    with VectorProducer(server.settings) as producer:  # past the API's checks: the projection refuses it
        token = producer.upsert(missing, [1], np.ones((1, DIM), np.float32))
    wait_until(lambda: server.replica.projector.positions().get(token.partition, -1) >= token.offset, 30,
               message="the rejected upsert applied")
    letters = _result(server.http.get("/vectorizer/dead_letters", params={"limit": 10}))
    mine = [d for d in letters["dead_letters"] if d["collection"] == missing]
    assert [(d["offset"], d["reason"], d["status"]) for d in mine] == [(f"{token.partition}:{token.offset}",
                                                                       "rejected", 404)]
    assert "does not exist" in mine[0]["detail"] and mine[0]["time"]


def test_workspace_sync_syncs_the_configured_file_only(make_server: Callable[..., Running], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "recovery.md").write_text("# Recovery\n\nRecovery loads the newest snapshot, then replays the log.\n")
    name = unique("ws")
    workspace = tmp_path / "workspace.yml"
    workspace.write_text(f"projects:\n  - name: p\n    root: {docs}\n    collections:\n      - name: {name}\n"
                         f"        include: ['*.md']\n        embedding:\n          model: hashing\n"
                         f"          dimension: 64\n")
    running = make_server(workspace_file=workspace)
    synced = _result(running.http.post("/vectorizer/workspace/sync"))
    (report,) = synced["collections"]
    assert report["name"] == name and report["files"] == 1 and report["created"] is True
    page = _result(running.http.get("/vectorizer/collections", params={"prefix": name}))["collections"]
    assert page[0]["kind"] == "workspace" and page[0]["points"] >= 1
    assert page[0]["embedder"]["name"] == "hashing"
    hits = _result(running.http.post(f"/collections/{name}/search/text", json={"query": "replays the log"}))
    assert hits["points"] and "replays" in hits["points"][0]["payload"]["text"]
    again = _result(running.http.post("/vectorizer/workspace/sync"))["collections"][0]
    assert again["unchanged"] == 1 and again["published"] == 0

    workspace.unlink()
    error = _result(running.http.post("/vectorizer/workspace/sync"), 404)
    assert "workspace file" in error and "VECTORIZER_WORKSPACE_FILE" in error


def test_an_idle_keep_alive_connection_outlives_the_clients_expiry(server: Running) -> None:
    """httpx (qdrant-client's REST transport) drops an idle connection after its keepalive_expiry; the
    server keeps it open longer, so no request is ever sent on a connection the server is closing."""
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry is not None
    host, port = server.settings.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        # The socket turns readable (EOF) if the server closes it within the client's expiry and a second.
        readable, _, _ = select.select([sock], [], [], client_expiry + 1.0)
        assert readable == [], sock.recv(100)
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
