"""Every write answer is true: ``wait=true`` reports the projection's verdict, never ``completed``
for a dead-lettered event; it waits as long as it takes unless given a ``timeout``; read-only
holds after a restart from a snapshot; the verdict survives restarts; dead letters are sent
once, counted by reason, and readable.

A write the API accepts can still be refused by the projection when another writer got there
first (a race the server's checks cannot see). The tests make that race deterministic by
holding the projector's thread at a gate (fault injection on the projector, as in
quix-streams' tests), with every record going through the real broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import UnexpectedResponse

from consumers import backup as backups
from consumers.dlq import read_letters
from infra.settings import Settings
from producers import VectorProducer, WriteToken
from producers.errors import VerdictUnknown, WriteNotApplied, WriteRejected
from schemas.events import WORKSPACE_PRODUCER
from tests.api.conftest import Running, end_offset, held_projector, serving, unique
from tests.helpers import run_cli, wait_until

DIM = 4


def _client(running: Running) -> QdrantClient:
    return QdrantClient(url=running.url, prefer_grpc=False, timeout=60, check_compatibility=False)


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # noqa: BLE001 - examined by the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _create(http: httpx.Client, name: str) -> None:
    r = http.put(f"/collections/{name}", json={"vectors": {"size": DIM, "distance": "Dot"}})
    assert r.status_code == 200, r.text


def _points(n: int, start: int = 0) -> list[qm.PointStruct]:
    rng = np.random.default_rng(start)
    return [qm.PointStruct(id=start + i, vector=rng.random(DIM).tolist(), payload={"i": start + i})
            for i in range(n)]


def test_wait_true_reports_a_write_the_projection_rejected(make_server: Callable[..., Running]) -> None:
    running = make_server()
    name = unique("raced")
    _create(running.http, name)
    client = _client(running)
    rival = VectorProducer(running.settings)
    try:
        before = end_offset(running.settings)
        with held_projector(running) as gate:
            rival.delete_collection(name)  # published first; the server has not applied it yet
            thread, out = _in_thread(lambda: client.upsert(name, _points(3), wait=True))
            wait_until(lambda: end_offset(running.settings) >= before + 2, 30, message="both writes on the log")
            assert thread.is_alive()  # the answer waits for the projection's verdict
            gate.set()
            thread.join(60)
        assert len(out) == 1 and isinstance(out[0], UnexpectedResponse), out
        error = out[0]
        assert error.status_code == 404, error
        message = json.loads(error.content)["status"]["error"]
        assert message.startswith(f"collection {name!r} does not exist") and "rejected by the projection" in message
        assert running.http.get(f"/collections/{name}/exists").json()["result"]["exists"] is False
    finally:
        rival.close()


def test_raced_create_and_rejected_payload_write_are_errors(make_server: Callable[..., Running]) -> None:
    running = make_server()
    name = unique("twice")
    rival = VectorProducer(running.settings)
    try:
        with held_projector(running) as gate:
            rival.create_collection(name, DIM, "ip")
            thread, out = _in_thread(lambda: running.http.put(
                f"/collections/{name}", json={"vectors": {"size": 8, "distance": "Cosine"}}))
            wait_until(lambda: end_offset(running.settings) >= 2, 30, message="both creates on the log")
            gate.set()
            thread.join(60)
        r = out[0]
        assert r.status_code == 409, r.text
        info = running.http.get(f"/collections/{name}").json()["result"]
        assert info["config"]["params"]["vectors"]["size"] == DIM  # the first create stands

        # A write the API would accept, refused because a rival deleted the collection first:
        running.http.put(f"/collections/{name}/points", params={"wait": "true"},
                         json={"points": [{"id": 1, "vector": [0.1] * DIM}]}).raise_for_status()
        before = end_offset(running.settings)
        with held_projector(running) as gate:
            rival.delete_collection(name)
            thread, out = _in_thread(lambda: running.http.post(
                f"/collections/{name}/points/payload", params={"wait": "true"},
                json={"payload": {"k": 1}, "points": [1]}))
            wait_until(lambda: end_offset(running.settings) >= before + 2, 30, message="both writes on the log")
            gate.set()
            thread.join(60)
        r = out[0]
        assert r.status_code == 404, r.text
        assert r.json()["status"]["error"].startswith(f"collection {name!r} does not exist")
    finally:
        rival.close()


def test_wait_without_timeout_waits_past_the_default(make_server: Callable[..., Running]) -> None:
    running = make_server(default_timeout=1.0)
    name = unique("slow")
    _create(running.http, name)
    client = _client(running)
    before = end_offset(running.settings)
    with held_projector(running) as gate:
        started = time.monotonic()
        thread, out = _in_thread(lambda: client.upsert(name, _points(5), wait=True))
        wait_until(lambda: end_offset(running.settings) > before, 30, message="the write on the log")
        # Past the server's default timeout, the answer still waits for the projection.
        wait_until(lambda: time.monotonic() - started > 2.5 or not thread.is_alive(), 10, message="2.5 s")
        assert thread.is_alive(), out
        gate.set()
        thread.join(60)
    assert len(out) == 1 and out[0].status == qm.UpdateStatus.COMPLETED, out
    assert client.count(name).count == 5

    # With a timeout the answer is wait_timeout (durable, not yet applied), as in Qdrant.
    with held_projector(running) as gate:
        r = running.http.put(f"/collections/{name}/points", params={"wait": "true", "timeout": "1"},
                             json={"points": [{"id": 99, "vector": [0.5] * DIM}]})
        assert r.status_code == 200 and r.json()["result"]["status"] == "wait_timeout", r.text
        assert client.count(name).count == 5
        gate.set()
    token = r.json()["result"]["write_token"]
    r = running.http.post(f"/collections/{name}/points/count", json={"consistency": token})
    assert r.json()["result"]["count"] == 6


def _workspace_collection(settings: Settings, name: str) -> WriteToken:
    with VectorProducer(settings, producer_id=f"{WORKSPACE_PRODUCER}:{unique('t')}") as ws:
        ws.create_collection(name, DIM, "ip", kind="workspace")
        return ws.upsert(name, ["a#0"], np.ones((1, DIM), np.float32), [{"path": "a"}])


def _assert_read_only(running: Running, name: str) -> None:
    http = running.http
    r = http.put(f"/collections/{name}/points", params={"wait": "true"},
                 json={"points": [{"id": 5, "vector": [0.1] * DIM}]})
    assert r.status_code == 403, r.text
    assert http.delete(f"/collections/{name}").status_code == 403
    r = http.post(f"/collections/{name}/points/delete", params={"wait": "true"}, json={"points": ["a#0"]})
    assert r.status_code == 403, r.text
    assert http.post(f"/collections/{name}/points/count", json={}).json()["result"]["count"] == 1


def test_workspace_collections_stay_read_only_after_restarts(kafka_bootstrap: str, tmp_path: Any) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('ro')}", data_dir=tmp_path / "a",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    name = unique("ws")
    token = _workspace_collection(settings, name)
    with serving(settings) as running:
        running.http.post(f"/collections/{name}/points/count", params={"consistency": str(token)}, json={})
        _assert_read_only(running, name)
        assert running.http.post(f"/collections/{name}/snapshots").status_code == 200
    with serving(settings) as running:  # restarted from that snapshot
        assert running.replica.projector.stats.loaded_snapshot is not None
        _assert_read_only(running, name)
    with serving(settings.replace(data_dir=tmp_path / "b")) as running:  # a fresh replay elsewhere
        assert running.replica.projector.stats.loaded_snapshot is None
        _assert_read_only(running, name)
    backups.backup(settings, tmp_path / "backup")
    restored = settings.replace(data_dir=tmp_path / "c")
    backups.restore(restored, tmp_path / "backup")
    with serving(restored) as running:  # restored from a backup
        assert running.replica.projector.stats.loaded_snapshot is not None
        _assert_read_only(running, name)


def test_verdicts_survive_restarts_and_dead_letters_are_sent_once(kafka_bootstrap: str, tmp_path: Any) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('dlq')}", data_dir=tmp_path / "a",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    name = unique("v")
    with VectorProducer(settings) as producer:
        producer.create_collection(name, DIM, "ip")
        good = producer.upsert(name, [1, 2], np.ones((2, DIM), np.float32))
        missing = producer.upsert(unique("nope"), [1], np.ones((1, DIM), np.float32))
        again = producer.create_collection(name, DIM, "ip")
        # Nothing ever projected here: no catalog to read a verdict from, said at once.
        with pytest.raises(VerdictUnknown, match="no catalog"):
            producer.wait_applied(good)
        with serving(settings) as running:
            assert producer.wait_applied(good, timeout=30) == good
            with held_projector(running):
                late = producer.upsert(name, [3], np.ones((1, DIM), np.float32))
                with pytest.raises(WriteNotApplied):  # a wait with a timeout says "not yet", durable
                    producer.wait_applied(late, timeout=0.5)
            assert producer.wait_applied(late, timeout=30) == late
            with pytest.raises(WriteRejected) as caught:
                producer.wait_applied(missing, timeout=30)
            assert caught.value.status == 404 and caught.value.reason == "rejected"
            with pytest.raises(WriteRejected) as caught:
                producer.create_collection(name, DIM, "ip", wait=True, timeout=30)
            assert caught.value.status == 409 and "already exists" in str(caught.value)
            metrics = running.http.get("/metrics").text
            assert 'vectorizer_dead_letters_by_reason_total{reason="rejected"} 3.0' in metrics
            assert running.http.post(f"/collections/{name}/snapshots").status_code == 200
        letters = read_letters(settings)
        assert [(letter.source_offset, letter.status) for letter in letters] == \
               [(missing.offset, 404), (again.offset, 409), (letters[2].source_offset, 409)]
        assert all(letter.producer_id == producer.producer_id and letter.time for letter in letters)

        with serving(settings) as running:  # restarted from the snapshot: verdicts come from the catalog
            projector = running.replica.projector
            assert projector.stats.loaded_snapshot is not None
            assert [r.offset for r in projector.verdict(missing.partition, [good.offset, missing.offset])] == \
                   [missing.offset]
            assert producer.wait_applied(good, timeout=30) == good
            with pytest.raises(WriteRejected):
                producer.wait_applied(again, timeout=30)
        # A new replica replays everything and records the same verdicts, but sends no letter again.
        with serving(settings.replace(data_dir=tmp_path / "b", projection="replica")) as running:
            projector = running.replica.projector
            assert [r.status for r in projector.verdict(missing.partition, [missing.offset, again.offset])] == \
                   [404, 409]
            assert projector.stats.dead_letters == 3
    assert end_offset(settings, settings.dlq_topic) == 3


def test_cli_writes_report_the_verdict_and_dlq_lists_it(make_server: Callable[..., Running]) -> None:
    running = make_server()
    s, name = running.settings, unique("cli")
    code, output = run_cli(s, "collections", "create", name, "--dim", "4")
    assert code == 0 and f"created {name}" in output, output
    code, output = run_cli(s, "collections", "create", name, "--dim", "384")  # refused before publishing
    assert code == 1 and f"collection {name!r} already exists" in output, output

    # A rival's create is on the log but not applied: the catalog cannot answer, so the CLI
    # publishes, and the verdict is the projection's rejection (exit 1), never "created".
    other = unique("cli")
    rival = VectorProducer(s)
    try:
        before = end_offset(s)
        with held_projector(running) as gate:
            rival.create_collection(other, DIM, "ip")
            thread, out = _in_thread(lambda: run_cli(s, "collections", "create", other, "--dim", "384"))
            wait_until(lambda: end_offset(s) >= before + 2, 60, message="both creates on the log")
            gate.set()
            thread.join(120)
        code, output = out[0]
        assert code == 1, output
        assert "rejected by the projection (status 409)" in output and "already exists" in output
    finally:
        rival.close()
    assert running.http.get(f"/collections/{other}").json()["result"]["config"]["params"]["vectors"]["size"] == DIM

    code, output = run_cli(s, "--json", "dlq", "list")
    assert code == 0, output
    (letter,) = json.loads(output)
    assert letter["collection"] == other and letter["reason"] == "rejected" and letter["status"] == 409
    assert letter["producer"] and letter["producer"] != rival.producer_id  # the CLI's, not the rival's
    assert letter["time"] and letter["offset"].startswith("0:")
    code, output = run_cli(s, "--json", "dlq", "show", letter["offset"])
    assert code == 0, output
    event = json.loads(output)["event"]
    assert event["type"] == "CollectionCreated" and event["dimension"] == 384
    assert run_cli(s, "dlq", "show", "0:999999")[0] == 1
