"""Hostile input over HTTP: bodies over the size limit, odd characters in ids and payload keys.

Oversized bodies answer 413, whether they declare a ``Content-Length`` or arrive chunked,
and nothing of them is applied. Ids (unsigned integers, UUIDs, and any other string as an
extension) and payload keys with odd characters come back exactly as written through every
read (retrieve, get by path, scroll pages, query, filters), after payload edits by id, and
after a restart from the snapshot; the few strings that cannot be stored are a clear 400.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from schemas.ids import id_order
from tests.api.conftest import Running, _settings, serving, unique
from tests.reliability import record

LIMIT = 16 * 1024

# Ids as sent, and as the server must answer them (UUIDs are normalised to lowercase).
UUID = "550e8400-e29b-41d4-a716-446655440000"
UUID2 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
ODD_IDS: list[tuple[Any, Any]] = [
    (0, 0), (1, 1), (7, 7), (2**63 - 1, 2**63 - 1),
    (UUID, UUID), (UUID2.upper(), UUID2), ("7", "7"), ("-1", "-1"), ("1.5", "1.5"), ("007", "007"),
    ("plain", "plain"), ("with space", "with space"), (" padded ", " padded "), ("a/b", "a/b"), ("/", "/"),
    ("//lead/and/trail/", "//lead/and/trail/"), ("hash#tag", "hash#tag"), ("per%cent", "per%cent"),
    ("%2F", "%2F"), ("%00", "%00"), ("?q=1&x=2", "?q=1&x=2"), ('dq"uote', 'dq"uote'), ("sq'uote", "sq'uote"),
    ("back\\slash", "back\\slash"), (".", "."), ("..", ".."), ("ünïcödé", "ünïcödé"), ("日本語", "日本語"),
    ("emoji 🎉🧪", "emoji 🎉🧪"), ("e\u0301", "e\u0301"), ("é", "é"), ("zero\u200bwidth", "zero\u200bwidth"),
    ("tab\tnew\nline\r", "tab\tnew\nline\r"), ("\u2028", "\u2028"), ("null", "null"), ("true", "true"),
    ("$set", "$set"), ("{}", "{}"), ("[1]", "[1]"), ("x" * 512, "x" * 512),
    # 36 characters and four hyphens, but not a UUID: kept as written, never "normalised".
    ("1234567812341234-1234-1234-5678-9abc", "1234567812341234-1234-1234-5678-9abc"),
    (" 2345678-1234-1234-1234-123456789abc", " 2345678-1234-1234-1234-123456789abc"),
    ("1_345678-1234-1234-1234-123456789abc", "1_345678-1234-1234-1234-123456789abc"),
    ("١٢٣٤٥٦٧٨-1234-1234-1234-123456789abc", "١٢٣٤٥٦٧٨-1234-1234-1234-123456789abc"),
    ("+2345678-1234-1234-1234-123456789abc", "+2345678-1234-1234-1234-123456789abc"),
]
ODD_KEYS: dict[str, Any] = {
    "a.b": 1, "with space": 2, "ünïcödé": 3, "🎉": 4, "$set": 5, 'dq"uote': 6, "sq'uote": 7, "": 8,
    "back\\slash": 9, "[]": 10, "x[0]": 11, "tab\t": 12, "7": 13, "%00": 14, "nul\u0000key": "nul\u0000value",
    "a/b": 15, "#": 16, "\u2028": 17, " ": 18, "null": None, "é": "e\u0301", "e\u0301": "é",
    "nested": {"a.b": {"": [1, {"$x": None, "ü": "🎉"}]}, "": {"": ""}},
}


def _count_keys(value: Any) -> int:
    """Keys of ``value`` at every depth."""
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _key(point_id: Any) -> tuple[int, Any]:
    return id_order(point_id)


def _point_path(collection: str, point_id: Any) -> str:
    segment = quote(str(point_id), safe="")
    if segment.strip(".") == "":  # "." and ".." would be removed by the client (RFC 3986 dot segments)
        segment = "%2E" * len(segment)
    return f"/collections/{collection}/points/{segment}"


def _scroll_all(http: httpx.Client, collection: str, page: int) -> list[dict[str, Any]]:
    """Every point through scroll pages of ``page`` points, following ``next_page_offset`` (an odd id)."""
    out: list[dict[str, Any]] = []
    offset: Any = None
    for _ in range(1000):
        body: dict[str, Any] = {"limit": page, "with_payload": True, "with_vector": True}
        if offset is not None:
            body["offset"] = offset
        r = http.post(f"/collections/{collection}/points/scroll", json=body)
        assert r.status_code == 200, r.text
        out += r.json()["result"]["points"]
        offset = r.json()["result"]["next_page_offset"]
        if offset is None:
            return out
    raise AssertionError("scroll did not end")


def _check_round_trip(http: httpx.Client, collection: str, expected: dict[tuple[int, Any], dict[str, Any]]) -> int:
    """Every read answers every point exactly as written; returns the number of requests checked."""
    ids = [point["id"] for point in expected.values()]
    requests = 0
    # Scroll, in small pages: every page boundary is an odd id sent back as the offset.
    points = _scroll_all(http, collection, page=7)
    requests += len(points) // 7 + 1
    assert [p["id"] for p in points] == sorted(ids, key=_key), "scroll order or ids differ"
    for p in points:
        want = expected[_key(p["id"])]
        assert p["payload"] == want["payload"] and p["vector"] == want["vector"], (p, want)
    # Retrieve by ids, in the order asked.
    asked = list(reversed(ids))
    r = http.post(f"/collections/{collection}/points", json={"ids": asked, "with_vector": True})
    requests += 1
    assert r.status_code == 200, r.text
    got = r.json()["result"]
    assert [p["id"] for p in got] == asked
    assert all(p["payload"] == expected[_key(p["id"])]["payload"] for p in got)
    # One by one, by path (a string of ASCII digits in a path is an integer id, so those are skipped).
    for point_id in ids:
        if isinstance(point_id, str) and point_id.isascii() and point_id.isdigit():
            continue
        r = http.get(_point_path(collection, point_id))
        requests += 1
        assert r.status_code == 200, (point_id, r.text)
        assert r.json()["result"]["id"] == point_id
        assert r.json()["result"]["payload"] == expected[_key(point_id)]["payload"]
    # Exact query: every point, payloads included.
    r = http.post(f"/collections/{collection}/points/query",
                  json={"query": [0.0, 0.0, 1.0], "limit": len(ids), "with_payload": True,
                        "params": {"exact": True}})
    requests += 1
    assert r.status_code == 200, r.text
    found = r.json()["result"]["points"]
    assert sorted((p["id"] for p in found), key=_key) == sorted(ids, key=_key)
    assert all(p["payload"] == expected[_key(p["id"])]["payload"] for p in found)
    # A query by each id (the point's own vector; the point itself is left out, as in Qdrant).
    for point_id in ids:
        r = http.post(f"/collections/{collection}/points/query", json={"query": point_id, "limit": len(ids)})
        requests += 1
        assert r.status_code == 200, (point_id, r.text)
        assert point_id not in [p["id"] for p in r.json()["result"]["points"]]
    # has_id with every id.
    r = http.post(f"/collections/{collection}/points/count", json={"filter": {"must": [{"has_id": ids}]}})
    requests += 1
    assert r.status_code == 200 and r.json()["result"]["count"] == len(ids), r.text
    return requests


def test_odd_ids_and_payload_keys_round_trip(kafka_bootstrap: str, tmp_path: Path, catalog_url: str) -> None:
    """Through either catalog (a PostgreSQL text column refuses what SQLite keeps, NUL for one)."""
    settings = _settings(kafka_bootstrap, tmp_path, catalog_url=catalog_url)
    collection = unique("odd")
    expected: dict[tuple[int, Any], dict[str, Any]] = {}
    points = []
    for i, (sent, canonical) in enumerate(ODD_IDS):
        payload = {"i": i, "sent": sent, **ODD_KEYS}
        vector = [float(i), float(i % 5), 1.0]
        points.append({"id": sent, "vector": vector, "payload": payload})
        expected[_key(canonical)] = {"id": canonical, "payload": payload, "vector": vector}
    assert len(expected) == len(ODD_IDS), "two ids of the list name the same point"
    half = len(points) // 2
    with serving(settings) as running:
        http = running.http
        r = http.put(f"/collections/{collection}", json={"vectors": {"size": 3, "distance": "Euclid"}})
        assert r.status_code == 200, r.text
        r = http.put(f"/collections/{collection}/points", params={"wait": "true"}, json={"points": points[:half]})
        assert r.status_code == 200, r.text
        batch = {"ids": [p["id"] for p in points[half:]], "vectors": [p["vector"] for p in points[half:]],
                 "payloads": [p["payload"] for p in points[half:]]}
        r = http.put(f"/collections/{collection}/points", params={"wait": "true"}, json={"batch": batch})
        assert r.status_code == 200, r.text
        checked = _check_round_trip(http, collection, expected)
        # Writes by id: an odd key set on every point through its id as sent, then read back.
        r = http.post(f"/collections/{collection}/points/payload", params={"wait": "true"},
                      json={"payload": {"set ✓": "ü"}, "points": [p["id"] for p in points]})
        assert r.status_code == 200, r.text
        for want in expected.values():
            want["payload"] = {**want["payload"], "set ✓": "ü"}
        gone = ("with space", "$set", "🎉", "nul\u0000key", "")
        r = http.post(f"/collections/{collection}/points/payload/delete", params={"wait": "true"},
                      json={"keys": [f'"{k}"' for k in gone if k],  # quoted: not plain keys in a JSON path
                            "points": [p["id"] for p in points]})
        assert r.status_code == 200, r.text
        for want in expected.values():
            want["payload"] = {k: v for k, v in want["payload"].items() if k not in gone[:-1]}
        checked += _check_round_trip(http, collection, expected)
        # Payload selectors naming odd keys (quoted where the key holds a dot or a space).
        r = http.post(f"/collections/{collection}/points/scroll",
                      json={"limit": 1, "with_payload": ['"ünïcödé"', '"é"', '"tab\t"', "nested.\"a.b\""]})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["points"][0]["payload"] == {"ünïcödé": 3, "é": "e\u0301", "tab\t": 12,
                                                             "nested": {"a.b": ODD_KEYS["nested"]["a.b"]}}
        # Filters naming odd keys (quoted as in Qdrant's JSON paths), evaluated over every point.
        for key, value in (('"a.b"', 1), ('"ünïcödé"', 3), ('"tab\t"', 12), ('"é"', "e\u0301"), ('"7"', 13),
                           ('"%00"', 14), ('"a/b"', 15), ('"#"', 16), ('" "', 18), ('nested."a.b".""[].ü', "🎉")):
            r = http.post(f"/collections/{collection}/points/count",
                          json={"filter": {"must": [{"key": key, "match": {"value": value}}]}})
            checked += 1
            assert r.status_code == 200 and r.json()["result"]["count"] == len(ODD_IDS), (key, r.text)
    assert any(settings.snapshot_dir.iterdir()), "no snapshot was written at shutdown"
    with serving(settings) as restarted:  # the same data directory: from the snapshot written at shutdown
        assert restarted.replica.projector.stats.loaded_snapshot is not None, "restarted from the snapshot"
        checked += _check_round_trip(restarted.http, collection, expected)
    backend = catalog_url.partition(":")[0].partition("+")[0]
    record("api", f"test_odd_ids_and_payload_keys_round_trip[{backend}]", odd_ids_round_tripped=len(ODD_IDS),
           odd_keys_round_tripped=_count_keys(ODD_KEYS) + 1, reads_checked=checked)


def _raw_json(value: Any) -> bytes:
    """JSON with every non-ASCII character escaped: lone surrogates (``\\ud800``) survive."""
    return json.dumps(value, ensure_ascii=True).encode()


UNSTORABLE: list[tuple[str, Any, str]] = [  # (what, value, the words the 400 must hold)
    ("a NUL character in a string id", "nul\u0000id", "NUL"),
    ("a lone surrogate in a string id", "\ud800", "Unicode"),
    ("an empty string id", "", "empty"),
    ("a string id over 512 characters", "x" * 513, "512"),
    ("a negative integer id", -1, "outside"),
    ("an integer id over 2**63 - 1", 2**63, "outside"),
]


def test_unstorable_ids_and_strings_are_a_clear_400(kafka_bootstrap: str, tmp_path: Path) -> None:
    """No input a client can send yields a 500: ids and strings the log or a catalog cannot hold are a 400."""
    settings = _settings(kafka_bootstrap, tmp_path)
    collection = unique("bad")
    checked = 0
    with serving(settings) as running:
        http = running.http
        points = f"/collections/{collection}/points"
        assert http.put(f"/collections/{collection}", json={"vectors": {"size": 2, "distance": "Dot"}}
                        ).status_code == 200
        assert http.put(points, params={"wait": "true"}, json={"points": [{"id": 1, "vector": [1, 2]}]}
                        ).status_code == 200

        def send(method: str, path: str, body: Any, *words: str) -> None:
            nonlocal checked
            r = http.request(method, path, content=_raw_json(body), headers={"content-type": "application/json"})
            checked += 1
            assert r.status_code == 400, (method, path, body, r.status_code, r.text)
            message = r.json()["status"]["error"]
            assert all(word in message for word in words), (words, message)

        for what, bad, words in UNSTORABLE:
            send("PUT", points, {"points": [{"id": bad, "vector": [1, 2]}]}, "points[0].id", words)
            send("PUT", points, {"batch": {"ids": [2, bad], "vectors": [[1, 2], [3, 4]]}}, "batch.ids[1]", words)
            send("POST", f"{points}/delete", {"points": [bad]}, "points[0]", words)
            send("POST", f"{points}/payload", {"payload": {"a": 1}, "points": [1, bad]}, "points[1]", words)
            send("POST", points, {"ids": [bad]}, "ids[0]", words)
            send("POST", f"{points}/scroll", {"offset": bad}, "offset", words)
            send("POST", f"{points}/query", {"query": bad}, "query", words)
            assert what
        surrogate = "\udfff"
        send("PUT", points, {"points": [{"id": 3, "vector": [1, 2], "payload": {surrogate: 1}}]}, "payload",
             "Unicode")
        send("PUT", points, {"points": [{"id": 3, "vector": [1, 2], "payload": {"a": [surrogate]}}]}, "payload",
             "Unicode")
        send("POST", f"{points}/payload", {"payload": {"a": 1}, "points": [1], "key": surrogate}, "key", "Unicode")
        send("POST", f"{points}/payload/delete", {"keys": [surrogate], "points": [1]}, "keys[0]", "Unicode")
        send("PUT", points, {"points": [{"id": 3, "vector": [1, 2], surrogate: 1}]}, "points[0]", "unknown")
        send("POST", f"{points}/count", {surrogate: {}}, "unknown")
        send("POST", f"{points}/count", {"filter": {"must": [{"key": "a", surrogate: 1}]}}, "filter")
        r = http.post(f"{points}/count", content=_raw_json({"filter": {"must": [{"key": "a", "match": {
            "value": surrogate}}]}}), headers={"content-type": "application/json"})
        checked += 1
        assert r.status_code == 200 and r.json()["result"]["count"] == 0, r.text  # matches nothing, harmlessly
        for path in (f"/collections/{collection}/points/%00", f"/collections/{collection}/points/a%00b"):
            r = http.get(path)
            checked += 1
            assert r.status_code == 400 and "NUL" in r.json()["status"]["error"], r.text
        r = http.post(f"{points}/count", json={})
        assert r.json()["result"]["count"] == 1, "a refused write was applied"
        assert running.replica.failure is None
    record("api", "test_unstorable_ids_and_strings_are_a_clear_400", requests_refused=checked, server_errors=0)


# Oversized bodies ---------------------------------------------------------------------------------------
@pytest.fixture
def small_server(make_server: Callable[..., Running]) -> Running:
    return make_server(max_body_bytes=LIMIT)


def _upsert_of_size(size: int, first_id: int) -> bytes:
    """An upsert body of exactly ``size`` bytes (padded in a payload string)."""
    head = json.dumps({"points": [{"id": first_id, "vector": [1.0, 2.0, 3.0], "payload": {"pad": ""}}]})
    body = head.replace('"pad": ""', '"pad": "' + "x" * (size - len(head)) + '"')
    assert len(body) == size
    return body.encode()


def _chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


def _raw_request(running: Running, head: str, body: bytes = b"") -> tuple[int, str]:
    """Send a hand-made HTTP/1.1 request; the status and the text of the answer."""
    host, _, port = running.settings.http.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.decode(errors="replace")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_oversized_bodies_are_refused_and_not_applied(small_server: Running) -> None:
    http = small_server.http
    coll = unique("big")
    points = f"/collections/{coll}/points"
    assert http.put(f"/collections/{coll}", json={"vectors": {"size": 3, "distance": "Dot"}}).status_code == 200
    rejected = 0
    pad = "x" * LIMIT
    bodies: list[tuple[str, str, bytes]] = [
        ("PUT", points, _upsert_of_size(LIMIT + 1, 100)),
        ("PUT", points, _upsert_of_size(4 * LIMIT, 101)),
        ("PUT", f"/collections/{unique('never')}", json.dumps({"vectors": {"size": 3, "distance": "Dot"},
                                                             "hnsw_config": {"m": 16}, "pad": pad}).encode()),
        ("POST", f"{points}/payload", json.dumps({"payload": {"pad": pad}, "points": [1]}).encode()),
        ("PUT", f"{points}/payload", json.dumps({"payload": {"pad": pad}, "points": [1]}).encode()),
        ("POST", f"{points}/delete", json.dumps({"points": list(range(5000))}).encode()),
        ("POST", f"{points}/query", json.dumps({"query": [1, 2, 3], "pad": pad}).encode()),
    ]
    for method, path, body in bodies:
        assert len(body) > LIMIT
        for chunked in (False, True):
            content: bytes | Iterator[bytes] = _chunks(body) if chunked else body
            r = http.request(method, path, content=content, headers={"content-type": "application/json"})
            rejected += 1
            assert r.status_code == 413, (method, path, chunked, r.status_code, r.text)
            assert str(LIMIT) in r.json()["status"]["error"]
    # A declared length over the limit is refused before any of the body is read.
    for length in (str(LIMIT + 1), str(10**15), "9" * 19):  # (the HTTP parser refuses lengths past 2**64)
        status, text = _raw_request(small_server, f"PUT {points} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                                                  f"Content-Length: {length}\nConnection: close\n")
        rejected += 1
        assert status == 413, text
    # Exactly at the limit is accepted, in both forms.
    r = http.put(points, params={"wait": "true"}, content=_upsert_of_size(LIMIT, 1),
                 headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    r = http.put(points, params={"wait": "true"}, content=_chunks(_upsert_of_size(LIMIT, 2)),
                 headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    # Nothing of the refused bodies was applied: two points, their payloads intact, no new collection.
    r = http.post(f"{points}/scroll", json={"limit": 100})
    assert [p["id"] for p in r.json()["result"]["points"]] == [1, 2]
    assert all(len(p["payload"]["pad"]) > LIMIT - 200 for p in r.json()["result"]["points"])
    names = [c["name"] for c in http.get("/collections").json()["result"]["collections"]]
    assert not [n for n in names if n.startswith("never")], names
    assert small_server.replica.failure is None
    record("api", "test_oversized_bodies_are_refused_and_not_applied", oversized_rejected=rejected)
