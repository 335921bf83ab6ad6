"""Payload key paths over HTTP: qdrant-client (REST, this server over the real broker) against
its own local mode, on generated nested payloads, set_payload with key, delete_payload and
filter ``match`` on nested paths (issue 13, item 4).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse
from qdrant_client.local.payload_value_extractor import value_by_key

from tests.api.conftest import Running, unique
from tests.schemas.test_paths import NAMES, payloads, render, set_values, steps

INVALID_KEYS = ["a[", 'a."b', "a..b", "a]", "[0]", "a[x]", ""]


@pytest.fixture(scope="module")
def clients(server: Running) -> Iterator[tuple[QdrantClient, QdrantClient]]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        remote = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    local = QdrantClient(":memory:")
    yield remote, local
    remote.close()
    local.close()


@st.composite
def key_paths(draw: st.DrawFn, examples: list[dict[str, Any]]) -> str:
    """A path text that mostly follows one of the payloads' structure, sometimes a random or invalid one."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(INVALID_KEYS))
    node: Any = draw(st.sampled_from(examples))
    path: list[Any] = []
    while not path or draw(st.integers(0, 2)):
        if isinstance(node, dict) and node and draw(st.integers(0, 3)):
            path.append(draw(st.sampled_from(sorted(node))))
            node = node[path[-1]]
        elif path and isinstance(node, list) and node and draw(st.integers(0, 3)):
            index = draw(st.integers(0, len(node) - 1))
            path.append(None if draw(st.booleans()) else index)
            node = node[index]
        else:
            path.append(draw(st.sampled_from(NAMES)) if not path else draw(steps))
            node = None
    return render(tuple(path))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]], list[tuple[str, Any]]]:
    """Point payloads, then payload edits (by ids), then ``match`` filters to compare."""
    points = draw(st.lists(payloads, min_size=1, max_size=4))
    ids = list(range(1, len(points) + 1))
    ops: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids), unique=True))
        if draw(st.booleans()):
            key = draw(st.one_of(st.none(), key_paths(points)))
            ops.append(("set", chosen, draw(set_values), key))
        else:
            ops.append(("delete", chosen, draw(st.lists(key_paths(points), min_size=1, max_size=3))))
    matches = [(draw(key_paths(points)), draw(st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from("st"))))
               for _ in range(draw(st.integers(1, 4)))]
    return points, ops, matches


def _apply(client: QdrantClient, name: str, op: tuple[Any, ...]) -> str:
    """Run one edit; "ok" or "invalid" (the client refused it: ValueError locally, 400 remotely)."""
    try:
        if op[0] == "set":
            _, ids, value, key = op
            client.set_payload(name, value, points=ids, key=key, wait=True)
        else:
            _, ids, keys = op
            client.delete_payload(name, keys, points=ids, wait=True)
    except UnexpectedResponse as exc:
        assert exc.status_code == 400, exc
        return "invalid"
    except ValueError:
        return "invalid"
    return "ok"


def _payloads(client: QdrantClient, name: str, count: int) -> dict[Any, Any]:
    return {r.id: r.payload for r in client.retrieve(name, list(range(1, count + 1)), with_payload=True)}


def _matching(client: QdrantClient, name: str, key: str, value: Any) -> list[Any] | str:
    flt = m.Filter(must=[m.FieldCondition(key=key, match=m.MatchValue(value=value))])
    try:
        points, _ = client.scroll(name, scroll_filter=flt, limit=100)
    except UnexpectedResponse as exc:
        assert exc.status_code == 400, exc
        return "invalid"
    except ValueError:
        return "invalid"
    return sorted(p.id for p in points)


@given(histories())
@settings(max_examples=40, deadline=None)
def test_payload_edits_and_nested_matches_agree_with_local_mode(
        clients: tuple[QdrantClient, QdrantClient],
        history: tuple[list[dict[str, Any]], list[tuple[Any, ...]], list[tuple[str, Any]]]) -> None:
    remote, local = clients
    points, ops, matches = history
    name = unique("paths")
    for client in (remote, local):
        client.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
        client.upsert(name, [m.PointStruct(id=i, vector=[1.0, float(i)], payload=p)
                             for i, p in enumerate(points, start=1)], wait=True)
    try:
        for op in ops:
            assert _apply(remote, name, op) == _apply(local, name, op), op
            assert _payloads(remote, name, len(points)) == _payloads(local, name, len(points)), op
        final = list(_payloads(local, name, len(points)).values())
        for key, value in matches:
            if not isinstance(value, bool) and final:  # also try a value some payload holds at the key
                found = [v for p in final for v in _values(p, key) if type(v) in (bool, int, str)]
                value = found[0] if found else value
            assert _matching(remote, name, key, value) == _matching(local, name, key, value), (key, value)
    finally:
        for client in (remote, local):
            client.delete_collection(name)


def _values(payload: dict[str, Any], key: str) -> list[Any]:
    try:
        return value_by_key(payload, key) or []
    except ValueError:
        return []


def test_the_issue_examples_over_http(clients: tuple[QdrantClient, QdrantClient]) -> None:
    remote, local = clients
    name = unique("issue13")
    start = {"nest": [{"a": "100", "b": "200"}], "arr": [{"x": 1}, 2], "k": {"arr": [{"a1": {}}]},
             "a": [{"b": 1, "c": 2}], "x.y": 1, "x": {"y": 2}}
    for client in (remote, local):
        client.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
        client.upsert(name, [m.PointStruct(id=1, vector=[1.0, 0.0], payload=start)], wait=True)
        client.set_payload(name, {"a": "101"}, points=[1], key="nest[0]", wait=True)
        client.set_payload(name, {"y": 1}, points=[1], key="arr[]", wait=True)
        client.set_payload(name, {"w": 1}, points=[1], key="k.arr[0].a1", wait=True)
        client.set_payload(name, {"v": 1}, points=[1], key='"q.r"', wait=True)
        client.delete_payload(name, ['"x.y"', "a.b"], points=[1], wait=True)
    expected = {"nest": [{"a": "101", "b": "200"}], "arr": [{"x": 1, "y": 1}, {"y": 1}],
                "k": {"arr": [{"a1": {"w": 1}}]}, "a": [{"b": 1, "c": 2}], "x": {"y": 2}, "q.r": {"v": 1}}
    assert _payloads(local, name, 1) == {1: expected}
    assert _payloads(remote, name, 1) == {1: expected}
    for client in (remote, local):
        client.delete_payload(name, ["a[].b"], points=[1], wait=True)
        assert _payloads(client, name, 1)[1]["a"] == [{"c": 2}]
        client.delete_collection(name)


@pytest.mark.parametrize(("route", "body", "field"), [
    ("points/payload", {"payload": {"v": 1}, "points": [1], "key": "a["}, "key"),
    ("points/payload", {"payload": {"v": 1}, "points": [1], "key": '"x.y'}, "key"),
    ("points/payload/delete", {"keys": ["ok", "a[0"], "points": [1]}, "keys[1]"),
    # A filter matching no point publishes nothing, and the bad key is still a 400 (as in Qdrant).
    ("points/payload", {"payload": {"v": 1}, "filter": {"must": [{"key": "x", "match": {"value": 7}}]},
                        "key": "a["}, "key"),
    ("points/payload/delete", {"keys": ["ok", "a[0"], "filter": {"must": [{"key": "x", "match": {"value": 7}}]}},
     "keys[1]"),
])
def test_an_invalid_key_is_a_400_that_names_it(server: Running, route: str, body: dict[str, Any],
                                              field: str) -> None:
    name = unique("badkey")
    http = server.http
    assert http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}}).status_code == 200
    assert http.put(f"/collections/{name}/points", params={"wait": "true"},
                    json={"points": [{"id": 1, "vector": [1, 0], "payload": {"x": 1}}]}).status_code == 200
    answer = http.post(f"/collections/{name}/{route}", params={"wait": "true"}, json=body)
    assert answer.status_code == 400, answer.text
    bad = body.get("key") or body["keys"][1]
    assert answer.json()["status"]["error"].startswith(f"{field}: invalid payload key {bad!r}")
    got = http.post(f"/collections/{name}/points", json={"ids": [1], "with_payload": True}).json()
    assert got["result"][0]["payload"] == {"x": 1}
