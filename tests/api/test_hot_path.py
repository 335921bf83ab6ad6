"""The hot lane (``vectorizer.api.hot``): searches, queries, retrieves and upserts answered without
FastAPI's routing, exactly as the FastAPI routes answer them.

Each request goes twice: as sent (the lane takes it) and with a query parameter the lane does not
know (``?via=fastapi``: FastAPI's route answers; FastAPI ignores unknown parameters). Status and
body must agree, errors included; a counter on the lane's own functions shows it served the first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Running, unique
from tests.helpers import wait_until
from vectorizer.api import hot


@pytest.fixture(scope="module")
def coll(server: Running) -> str:
    name = unique("hot")
    r = server.http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Cosine"}})
    assert r.status_code == 200, r.text
    points = [{"id": i, "vector": [1.0, i / 10, 0.5, -0.25 * (i % 3)], "payload": {"i": i, "tag": "t" + str(i % 2)}}
              for i in range(1, 21)]
    r = server.http.put(f"/collections/{name}/points", params={"wait": "true"}, json={"points": points})
    assert r.status_code == 200, r.text
    return name


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How many times the lane ran each of its read functions (patched in this in-process server)."""
    calls = {kind: 0 for kind in hot.READS}
    for kind, read in list(hot.READS.items()):
        def counted(*args: Any, _read: Callable[..., Any] = read, _kind: str = kind) -> Any:
            calls[_kind] += 1
            return _read(*args)
        monkeypatch.setitem(hot.READS, kind, counted)
    yield calls


def _without_time(r: httpx.Response) -> tuple[int, Any]:
    body = r.json()
    body.pop("time", None)
    return r.status_code, body


def _both(server: Running, method: str, path: str, body: Any, params: dict[str, str] | None = None
          ) -> tuple[httpx.Response, httpx.Response]:
    lane = server.http.request(method, path, json=body, params=params)
    routed = server.http.request(method, path, json=body, params={**(params or {}), "via": "fastapi"})
    return lane, routed


READS: list[tuple[str, str, Any]] = [
    ("/search", "search", {"vector": [1, 0.3, 0.5, 0], "limit": 5, "with_payload": True}),
    ("/search", "search", {"vector": [1, 0.3, 0.5, 0], "limit": 3, "filter": {"must": [{"key": "tag",
                                                                                         "match": {"value": "t1"}}]},
                           "with_vector": True, "score_threshold": 0.5}),
    ("/query", "query", {"query": [0.2, 1, 0, 0], "limit": 4, "with_payload": ["i"]}),
    ("/query", "query", {"query": 3, "limit": 2}),  # by point id
    ("/query", "query", {"query": {"nearest": [0, 0, 1, 0]}, "offset": 2, "limit": 3, "with_vector": True}),
    ("", "retrieve", {"ids": [3, 1, 99, 2], "with_payload": True, "with_vector": True}),
    ("", "retrieve", {"ids": [5]}),
]

REFUSED: list[tuple[str, Any]] = [
    ("/search", {"vector": [1, 0, 0], "limit": 5}),  # wrong dimension
    ("/search", {"vector": [1, True, 0, 0]}),  # a boolean is no number
    ("/search", {"vector": [1, "2", 0, 0]}),
    ("/search", {"limit": 5}),  # no vector
    ("/query", {"query": [1, 0, 0, 0], "limit": 0}),  # Qdrant's 422
    ("/query", {"query": 12345}),  # no such point
    ("/query", {"query": [1, 0, 0, 0], "bogus": 1}),
    ("", {"ids": [1, -2]}),
    ("", {"ids": "nope"}),
    ("", [1, 2]),  # not an object
]


@pytest.mark.parametrize(("suffix", "kind", "body"), READS)
def test_reads_answer_as_the_routes_do(server: Running, coll: str, lane_calls: dict[str, int], suffix: str,
                                       kind: str, body: Any) -> None:
    path = f"/collections/{coll}/points{suffix}"
    lane, routed = _both(server, "POST", path, body)
    assert lane.status_code == 200, lane.text
    assert _without_time(lane) == _without_time(routed)
    key = {"search": "/search", "query": "/query", "retrieve": ""}[kind]
    assert lane_calls[key] == 1, "the lane answered the request sent as is, and only that one"


@pytest.mark.parametrize(("suffix", "body"), REFUSED)
def test_refused_reads_answer_the_routes_errors(server: Running, coll: str, suffix: str, body: Any) -> None:
    lane, routed = _both(server, "POST", f"/collections/{coll}/points{suffix}", body)
    assert lane.status_code >= 400
    assert _without_time(lane) == _without_time(routed)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'{"vector": [1, 0, 0, NaN]}'])
def test_bodies_that_are_not_json_objects(server: Running, coll: str, raw: bytes) -> None:
    path = f"/collections/{coll}/points/search"
    headers = {"content-type": "application/json"}
    lane = server.http.post(path, content=raw, headers=headers)
    routed = server.http.post(path, content=raw, headers=headers, params={"via": "fastapi"})
    assert _without_time(lane) == _without_time(routed)


def test_query_parameters_the_lane_does_not_read_go_to_fastapi(server: Running, coll: str,
                                                              lane_calls: dict[str, int]) -> None:
    path = f"/collections/{coll}/points/search"
    body = {"vector": [1, 0, 0, 0], "limit": 2}
    assert server.http.post(path, json=body, params={"timeout": "5"}).status_code == 200
    assert lane_calls["/search"] == 1  # a plain timeout in range is read here
    for params in ({"timeout": "0"}, {"timeout": "1e2"}, {"timeout": "99999"}, {"consistency": "all"}):
        lane, routed = _both(server, "POST", path, body, params)
        assert _without_time(lane) == _without_time(routed), params
    assert lane_calls["/search"] == 1, "none of those reached the lane"
    assert server.http.post(path, json={**body, "consistency": "0:0"}).status_code == 200  # waits: FastAPI's
    assert lane_calls["/search"] == 1


def test_upserts_through_the_lane(server: Running, coll: str) -> None:
    path = f"/collections/{coll}/points"
    ok = server.http.put(path, params={"wait": "true", "ordering": "weak"},
                         json={"points": [{"id": 100, "vector": [0, 1, 0, 0], "payload": {"new": True}}]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"]["status"] == "completed" and ":" in ok.json()["result"]["write_token"]
    got = server.http.post(path, json={"ids": [100], "with_payload": True})
    assert got.json()["result"][0]["payload"] == {"new": True}
    bodies: list[dict[str, Any]] = [
        {"points": [{"id": 101, "vector": [0, 1, 0]}]}, {"batch": {"ids": [1], "vectors": [[1, 2, 3, "x"]]}},
        {"points": [{"id": -1, "vector": [0, 1, 0, 0]}]}, {"nothing": []}]
    for body in bodies:
        lane, routed = _both(server, "PUT", path, body, {"wait": "true"})
        assert lane.status_code == 400 or lane.status_code == 422, lane.text
        assert _without_time(lane) == _without_time(routed)
    missing = server.http.put(f"/collections/{unique('absent')}/points", json={"points": []})
    assert missing.status_code == 404


def test_a_read_waiting_for_a_writer_does_not_stop_the_server(server: Running, coll: str,
                                                               lane_calls: dict[str, int]) -> None:
    """While the projector holds a collection's write lock, a search through the lane does not wait on
    the event loop (its first try refuses to wait) but in a worker thread (its second try): the server
    goes on answering meanwhile, and the search answers once the lock is released."""
    held = server.replica.projector.collection(coll)
    assert held is not None
    done: dict[str, httpx.Response] = {}

    def search() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            done["r"] = client.post(f"/collections/{coll}/points/search", json={"vector": [1, 0, 0, 0]})

    with held.lock.write():
        t = threading.Thread(target=search)
        t.start()
        wait_until(lambda: lane_calls["/search"] == 2, 10, message="the search retried in a worker thread")
        assert server.http.get("/healthz").status_code == 200  # the event loop is not blocked
        assert "r" not in done, "the search read while the writer held the lock"
    t.join(30)
    assert done["r"].status_code == 200 and len(done["r"].json()["result"]) > 0
    assert lane_calls["/search"] == 2


def test_the_lane_labels_its_latency_by_route(server: Running, coll: str) -> None:
    template = 'route="/collections/{collection_name}/points/search"'

    def count() -> float:
        for line in server.http.get("/metrics").text.splitlines():
            if line.startswith("vectorizer_http_request_duration_seconds_count") and template in line \
                    and 'status="200"' in line and 'method="POST"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    assert server.http.post(f"/collections/{coll}/points/search", json={"vector": [1, 0, 0, 0]}).status_code == 200
    assert count() == before + 1
