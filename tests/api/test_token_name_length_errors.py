"""Small answers that must be Qdrant's (issue 14, item 4), through a real server and broker:
a write token for a partition the topic does not have, the names ``.`` and ``..``, and a
malformed ``Content-Length``."""

from __future__ import annotations

import json
import time

import pytest

from schemas.errors import InvalidCollectionName
from schemas.validation import collection_name
from tests.api.conftest import Running, unique
from tests.api.test_hostile import _raw_request


def test_a_token_for_a_missing_partition_is_a_400_at_once(server: Running) -> None:
    http = server.http
    coll = unique("tok")
    assert http.put(f"/collections/{coll}", json={"vectors": {"size": 2, "distance": "Dot"}}).status_code == 200
    began = time.monotonic()
    for r in (http.get(f"/collections/{coll}", params={"consistency": "7:1", "timeout": "20"}),
              http.post(f"/collections/{coll}/points/count", params={"timeout": "20"},
                        json={"consistency": "7:1"}),
              http.post(f"/collections/{coll}/points/scroll", params={"consistency": "7:0", "timeout": "20"},
                        json={})):
        assert r.status_code == 400, r.text
        assert "partition 7" in r.json()["status"]["error"], r.text
    assert time.monotonic() - began < 20, "refused without waiting out the timeout"
    # A token of the topic's own partition is still waited for and answered.
    r = http.get(f"/collections/{coll}", params={"consistency": "0:0", "timeout": "20"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused_like_any_invalid_name(server: Running, name: str) -> None:
    with pytest.raises(InvalidCollectionName):
        collection_name(name)
    body = json.dumps({"vectors": {"size": 2, "distance": "Dot"}}).encode()
    status, text = _raw_request(server, f"PUT /collections/{name} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                                        f"Content-Length: {len(body)}\nConnection: close\n", body)
    assert status == 400, text
    assert "collection name" in json.loads(text.split("\r\n\r\n", 1)[1])["status"]["error"], text
    names = [c["name"] for c in server.http.get("/collections").json()["result"]["collections"]]
    assert name not in names
    for ok in ("a.b", "..a", ".hidden", "a..b"):
        assert collection_name(ok) == ok


@pytest.mark.parametrize("length", ["abc", "-1", "12abc", "0x10", "1 2"])
def test_a_malformed_content_length_gets_the_json_envelope(server: Running, length: str) -> None:
    status, text = _raw_request(server, f"POST /collections/x/points/count HTTP/1.1\nHost: x\n"
                                        f"Content-Type: application/json\nContent-Length: {length}\n"
                                        f"Connection: close\n", b"{}")
    assert status == 400, text
    head, _, body = text.partition("\r\n\r\n")
    assert "application/json" in head.lower(), text
    assert "content-length" in json.loads(body)["status"]["error"].lower(), text
    assert server.http.get("/").status_code == 200, "the server goes on serving"
