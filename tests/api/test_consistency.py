"""Read-your-writes: ``wait=true``, and reads that wait for a write token (or time out with 504)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from producers import WriteToken
from schemas.codec import decode
from schemas.events import PayloadSet, VectorsDeleted
from tests.api.conftest import Running, unique
from tests.helpers import read_topic


def _create(http: httpx.Client, name: str, dim: int = 3) -> None:
    r = http.put(f"/collections/{name}", json={"vectors": {"size": dim, "distance": "Dot"}})
    assert r.status_code == 200, r.text
    assert r.json()["result"] is True and ":" in r.json()["write_token"]


def _upsert(http: httpx.Client, name: str, pid: int, wait: bool, **params: Any) -> dict[str, Any]:
    r = http.put(f"/collections/{name}/points", params={"wait": str(wait).lower(), **params},
                 json={"points": [{"id": pid, "vector": [1.0, 2.0, float(pid)], "payload": {"pid": pid}}]})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


def test_wait_true_write_is_visible_to_the_next_read(server: Running) -> None:
    http, name = server.http, unique("ryw")
    _create(http, name)
    for pid in range(20):
        result = _upsert(http, name, pid, wait=True)
        assert result["status"] == "completed"
        token = WriteToken.parse(result["write_token"])
        assert result["operation_id"] == token.offset
        r = http.get(f"/collections/{name}/points/{pid}")
        assert r.status_code == 200 and r.json()["result"]["payload"] == {"pid": pid}
        count = http.post(f"/collections/{name}/points/count", json={}).json()["result"]["count"]
        assert count == pid + 1


def test_acknowledged_write_read_with_its_token(server: Running) -> None:
    http, name = server.http, unique("token")
    _create(http, name)
    for pid in range(20):
        result = _upsert(http, name, pid, wait=False)
        assert result["status"] == "acknowledged"
        token = result["write_token"]
        if pid % 2:
            r = http.post(f"/collections/{name}/points/count", params={"consistency": token}, json={})
        else:  # the body field works as well
            r = http.post(f"/collections/{name}/points/count", json={"consistency": token})
        assert r.status_code == 200 and r.json()["result"]["count"] == pid + 1


def test_read_waits_for_a_token_written_later(server: Running) -> None:
    http, name = server.http, unique("later")
    _create(http, name)
    last = WriteToken.parse(_upsert(http, name, 0, wait=True)["write_token"])
    upcoming = f"{last.partition}:{last.offset + 1}"  # the next record of this partition
    answers: list[httpx.Response] = []

    def read() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as other:
            answers.append(other.post(f"/collections/{name}/points", params={"consistency": upcoming,
                                                                              "timeout": 30},
                                      json={"ids": [0, 1]}))

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(1.0)
    assert reader.is_alive(), "the read did not wait for the token"
    written = _upsert(http, name, 1, wait=False)
    reader.join(30)
    assert WriteToken.parse(written["write_token"]).offset == last.offset + 1
    assert answers and answers[0].status_code == 200, answers
    assert sorted(p["id"] for p in answers[0].json()["result"]) == [0, 1]


def test_token_far_in_the_future_times_out_with_504(server: Running) -> None:
    name = unique("future")
    _create(server.http, name)
    # The server must honour `timeout`: had it waited its default 30 s instead, this client's
    # 5 s read deadline would fail the request.
    with httpx.Client(base_url=server.url, timeout=5) as http:
        r = http.post(f"/collections/{name}/points/scroll", json={},
                      params={"consistency": "0:999999999", "timeout": 0.3})
        assert r.status_code == 504, r.text
        assert "999999999" in r.json()["status"]["error"]
        r = http.get(f"/collections/{name}", params={"consistency": "0:999999999", "timeout": "0.2"})
        assert r.status_code == 504


def test_qdrant_consistency_values_are_satisfied_at_once(server: Running) -> None:
    http, name = server.http, unique("qdrant_values")
    _create(http, name)
    for value in ("majority", "quorum", "all", "1", "3"):
        r = http.post(f"/collections/{name}/points/count", params={"consistency": value}, json={})
        assert r.status_code == 200, (value, r.text)
    for value in ("sometimes", "0", "1:x", "-1:5"):
        r = http.post(f"/collections/{name}/points/count", params={"consistency": value}, json={})
        assert r.status_code == 400 and "consistency" in r.json()["status"]["error"], (value, r.text)


def test_write_that_publishes_nothing_answers_an_applied_token(server: Running) -> None:
    http, name = server.http, unique("noop")
    _create(http, name)
    _upsert(http, name, 1, wait=True)
    r = http.post(f"/collections/{name}/points/delete", params={"wait": "true"},
                  json={"filter": {"must": [{"key": "pid", "match": {"value": 42}}]}})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
    r = http.post(f"/collections/{name}/points/count", params={"consistency": r.json()["result"]["write_token"],
                                                                "timeout": 1}, json={})
    assert r.json()["result"]["count"] == 1


def test_filter_write_spanning_several_events_is_applied_whole(make_server: Callable[..., Running]) -> None:
    running = make_server(max_message_bytes=256 * 1024)  # ~2,000 ids per event: the writes below take several
    http = running.http
    _create(http, "many", dim=2)
    n = 6000
    r = http.put("/collections/many/points", params={"wait": "true"}, json={"batch": {
        "ids": list(range(n)), "vectors": [[1.0, float(i)] for i in range(n)],
        "payloads": [{"i": i} for i in range(n)]}})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
    low = {"must": [{"key": "i", "range": {"lt": 5000}}]}
    r = http.post("/collections/many/points/payload", params={"wait": "true"}, json={"payload": {"low": True},
                                                                                     "filter": low})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
    count = http.post("/collections/many/points/count", json={"filter": {"must": [
        {"key": "low", "match": {"value": True}}]}}).json()["result"]["count"]
    assert count == 5000
    r = http.post("/collections/many/points/delete", params={"wait": "true"}, json={"filter": low})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
    assert http.post("/collections/many/points/count", json={}).json()["result"]["count"] == n - 5000
    events = [decode(rec.value) for rec in read_topic(running.settings.kafka_bootstrap, running.settings.topic,
                                                      isolation_level="read_committed")]
    assert sum(isinstance(e, VectorsDeleted) for e in events) >= 2
    assert sum(isinstance(e, PayloadSet) for e in events) >= 2
