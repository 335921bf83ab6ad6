"""Per-collection access with JWTs (``VECTORIZER_JWT_RBAC``), as Qdrant's RBAC grants it.

A JWT signed (HS256) with the API key carries an ``access`` claim: global ``"r"`` or ``"m"``, or a
list of collections with ``"r"``, ``"rw"`` or ``"prw"``. Every route the OpenAPI document lists is
walked with tokens for one collection, and each answer checked against what the token grants:
what this file's table says each route needs, written from Qdrant's rules (create, change and
delete collections, aliases, recovery: global manage; payload indexes and snapshots: the
collection's "extras", which ``prw`` lacks). Refused requests change nothing. qdrant-client over
REST and gRPC, and the MCP tools, are held to the same rules.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import anyio
import grpc
import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from infra.settings import Settings
from tests.api.conftest import Running, _settings, serving, unique
from tests.api.test_security import BODIES, READS, STORED, UNLISTED, _create, _fill, _routes, stored
from vectorizer.api.auth import Keys
from vectorizer.api.errors import Forbidden, Unauthorized

KEY = f"jwt-secret-{secrets.token_hex(16)}"

#: Routes that change the set of collections (or replace one): global manage access only.
MANAGE = {("PUT", "/collections/{collection_name}"), ("PATCH", "/collections/{collection_name}"),
          ("DELETE", "/collections/{collection_name}"), ("POST", "/collections/aliases"),
          ("PUT", "/collections/{collection_name}/snapshots/recover"),
          ("POST", "/collections/{collection_name}/snapshots/upload")}
#: Routes outside collections any valid token may call (lists answer with what it may read).
ANY_TOKEN = {("GET", path) for path in ("/", "/health", "/ready", "/collections", "/aliases",
                                        "/vectorizer/collections")}
#: A collection's extras: payload indexes, snapshots, its shard layout (not for "prw").
EXTRAS = ("/collections/{collection_name}/index", "/collections/{collection_name}/snapshots",
          "/collections/{collection_name}/cluster")


def token(access: Any = None, *, sub: str = "tester", secret: str = KEY, **claims: Any) -> str:
    body: dict[str, Any] = {"sub": sub, **claims}
    if access is not None:
        body["access"] = access
    return jwt.encode(body, secret, algorithm="HS256")


def only(collection: str, mode: str) -> str:
    return token([{"collection": collection, "access": mode}])


def expected_refusal(method: str, template: str, granted: str, mode: str, collection: str) -> str | None:
    """The 403 message a token granting ``mode`` on ``granted`` gets for this route on ``collection``."""
    if (method, template) in ANY_TOKEN:
        return None
    if (method, template) in MANAGE or not template.startswith("/collections/{collection_name}"):
        return "Global access is required"
    if collection != granted:
        return f"Access to collection {collection} is required"
    extras = template.startswith(EXTRAS)
    if extras and mode == "prw":
        return f"Only points access is allowed for collection {collection}"
    if (method, template) not in READS and mode == "r":
        return f"Write access to collection {collection} is required"
    return None


@pytest.fixture(scope="module")
def rbac(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    settings = _settings(kafka_bootstrap, tmp_path_factory.mktemp("jwt"), api_key=KEY, jwt_rbac=True)
    with serving(settings) as running:  # its client sends KEY: full access
        yield running


def test_every_route_grants_what_the_token_says(rbac: Running) -> None:
    readable, points_only, writable, other = unique("jr"), unique("jp"), unique("jw"), unique("jo")
    for name in (readable, points_only, writable, other):
        _create(rbac.http, name)
    routes = _routes(rbac.http)
    walks = [(only(readable, "r"), readable, "r", readable), (only(readable, "r"), readable, "r", other),
             (only(points_only, "prw"), points_only, "prw", points_only),
             (only(writable, "rw"), writable, "rw", writable)]
    checked = 0
    with httpx.Client(base_url=rbac.url, timeout=30) as client:
        for jwt_token, granted, mode, target in walks:
            for method, template in sorted(routes, key=lambda route: route[0] == "DELETE"):
                r = client.request(method, _fill(template, target), headers={"api-key": jwt_token},
                                   json=BODIES.get((method, template)), params={"wait": "true"})
                checked += 1
                refusal = expected_refusal(method, template, granted, mode, target)
                where = (mode, granted, method, template, r.status_code, r.text)
                if refusal is None:
                    assert r.status_code not in (401, 403), where
                else:
                    assert r.status_code == 403, where
                    assert r.json()["status"]["error"] == f"Forbidden: {refusal}", where
        for probe in UNLISTED[:3]:  # Qdrant's probes, beside the documented ones
            assert client.get(probe, headers={"api-key": only(readable, "r")}).status_code == 200, probe
    assert stored(rbac.http, readable) == STORED and stored(rbac.http, other) == STORED
    for name in (points_only, writable):  # their DELETE needed global manage
        assert rbac.http.get(f"/collections/{name}").status_code == 200
    assert checked >= 4 * len(routes)


def test_tokens_the_server_did_not_sign_or_that_expired(rbac: Running) -> None:
    name = unique("jt")
    _create(rbac.http, name)
    now = int(time.time())
    with httpx.Client(base_url=rbac.url, timeout=30) as client:
        def answer(key: str, method: str = "GET", path: str = f"/collections/{name}", **kw: Any) -> tuple[int, str]:
            r = client.request(method, path, headers={"api-key": key}, **kw)
            return r.status_code, r.json()["status"]["error"] if r.status_code >= 400 else ""

        assert answer(token("r", exp=now + 60))[0] == 200
        assert answer(token("r", exp=now - 5))[0] == 200  # within Qdrant's 30 s of leeway
        assert answer(token("r", exp=now - 120)) == (403, "Forbidden: ExpiredSignature: the JWT has expired")
        status, error = answer(token("m", secret=KEY + "x"))
        assert status == 403 and "InvalidSignature" in error
        unsigned = jwt.encode({"access": "m"}, None, algorithm="none")  # type: ignore[arg-type]
        for wrong in (unsigned, "a.b.c", f"{KEY}x", token([{"collection": name, "access": "x"}]),
                      token([{"collection": name, "access": "r"}, {"collection": name, "access": "rw"}]),
                      token({"collection": name}),
                      token("r", value_exists={"collection": name, "matches": [{"key": "a", "value": "x"}]})):
            status, error = answer(wrong)
            assert status == 401 and ("Invalid API key or JWT" in error or "Invalid JWT" in error), (wrong, error)
        # Global read: every read, no write; global manage (and no access claim at all): everything.
        assert answer(token("r"), "POST", f"/collections/{name}/points/scroll", json={})[0] == 200
        status, error = answer(token("r"), "PUT", f"/collections/{name}/points", json={"points": STORED})
        assert status == 403 and error == "Forbidden: Global manage access is required", error
        assert answer(token("r"), "GET", "/metrics")[0] == 200
        for full in (token("m"), token()):
            created = unique("jm")
            assert answer(full, "PUT", f"/collections/{created}", json={"vectors": {"size": 2, "distance": "Dot"}},
                          params={"wait": "true"})[0] == 200
            assert answer(full, "DELETE", f"/collections/{created}", params={"wait": "true"})[0] == 200
    assert stored(rbac.http, name) == STORED


def test_a_verified_token_still_expires() -> None:
    """Tokens verified once are remembered, and their ``exp`` checked again on every use."""
    now = [time.time()]
    keys = Keys(Settings(api_key=KEY, jwt_rbac=True), clock=lambda: now[0])
    short = token("r", sub="brief", exp=int(now[0]) + 60).encode()
    assert keys.authenticate(short)[0] == "jwt:brief"
    now[0] += 60 + 29  # within the leeway
    assert keys.authenticate(short)[0] == "jwt:brief"
    now[0] += 2
    with pytest.raises(Forbidden, match="ExpiredSignature"):
        keys.authenticate(short)
    assert keys.authenticate(token("r", sub="forever").encode())[0] == "jwt:forever"  # no exp: no expiry


def test_jwts_are_keys_only_with_jwt_rbac() -> None:
    keys = Keys(Settings(api_key=KEY))
    with pytest.raises(Unauthorized, match="missing or wrong API key"):
        keys.authenticate(token("m").encode())
    caller, access = Keys(Settings(api_key=KEY, jwt_rbac=True)).authenticate(token("m", sub="alice").encode())
    assert caller == "jwt:alice" and access.is_global


def test_qdrant_client_lists_reads_and_writes_what_the_token_grants(rbac: Running) -> None:
    mine, theirs = unique("jq"), unique("jq")
    for name in (mine, theirs):
        _create(rbac.http, name)
    alias = unique("jalias")
    r = rbac.http.post("/collections/aliases", params={"wait": "true"},
                       json={"actions": [{"create_alias": {"collection_name": mine, "alias_name": alias}}]})
    assert r.status_code == 200, r.text
    reader = only(mine, "r")
    with pytest.warns(UserWarning, match="insecure"):  # qdrant-client's own warning: a key over plain text
        rest = QdrantClient(url=rbac.url, api_key=reader, timeout=30, check_compatibility=False)
        over_grpc = QdrantClient(host="127.0.0.1", port=rbac.settings.http_port, grpc_port=rbac.grpc_port,
                                 prefer_grpc=True, api_key=reader, https=False, timeout=30, check_compatibility=False)
        writer = QdrantClient(url=rbac.url, api_key=token([{"collection": mine, "access": "rw"},
                                                              {"collection": alias, "access": "r"}]),
                              timeout=30, check_compatibility=False)
    try:
        for client in (rest, over_grpc):
            assert [c.name for c in client.get_collections().collections] == [mine]
            assert client.count(mine, exact=True).count == len(STORED)
            assert [p.id for p in client.query_points(mine, query=[1.0, 0.0], limit=1).points] == [1]
        with pytest.raises(UnexpectedResponse) as refused:
            rest.query_points(theirs, query=[1.0, 0.0])
        assert refused.value.status_code == 403 and f"Access to collection {theirs} is required" in str(refused.value)
        with pytest.raises(UnexpectedResponse) as refused:  # a name inside the body is checked too
            rest.query_points(mine, query=1, lookup_from=m.LookupLocation(collection=theirs))
        assert refused.value.status_code == 403, refused.value
        with pytest.raises(UnexpectedResponse) as refused:
            rest.upsert(mine, [m.PointStruct(id=9, vector=[1.0, 1.0])])
        assert refused.value.status_code == 403 and "Write access" in str(refused.value)
        vectors = m.VectorParams(size=2, distance=m.Distance.DOT)
        for call in (lambda: over_grpc.count(theirs),
                     lambda: over_grpc.upsert(mine, [m.PointStruct(id=9, vector=[1.0, 1.0])]),
                     lambda: over_grpc.create_collection(unique("jg"), vectors)):
            with pytest.raises(grpc.RpcError) as denied:
                call()
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, denied.value.details()
        assert rest.get_aliases().aliases == []  # the alias's own name is not granted
        assert [a.alias_name for a in writer.get_aliases().aliases] == [alias]
        writer.upsert(mine, [m.PointStruct(id=9, vector=[1.0, 1.0])], wait=True)
        assert writer.count(alias, exact=True).count == len(STORED) + 1  # read through the alias it names
        with pytest.raises(UnexpectedResponse) as refused:
            writer.upsert(alias, [m.PointStruct(id=10, vector=[1.0, 1.0])])  # "r" on the alias
        assert refused.value.status_code == 403, refused.value
    finally:
        for client in (rest, over_grpc, writer):
            client.close()
    assert stored(rbac.http, theirs) == STORED


def test_mcp_tools_act_with_the_callers_token(rbac: Running) -> None:
    mine, theirs = unique("jmcp"), unique("jmcp")
    for name in (mine, theirs):
        _create(rbac.http, name)

    async def main() -> None:
        with anyio.fail_after(120):
            async with httpx2.AsyncClient(headers={"api-key": only(mine, "r")}, timeout=60) as http, \
                    Client(streamable_http_client(f"{rbac.url}/mcp", http_client=http)) as client:
                listed = await client.call_tool("list_collections", {"prefix": "jmcp_"})
                assert not listed.is_error and [c["name"] for c in listed.structured_content["collections"]] == [mine]
                hits = await client.call_tool("search_vectors", {"collection": mine, "vector": [1, 0]})
                assert not hits.is_error and hits.structured_content["points"][0]["id"] == 1
                for tool, arguments in (("search_vectors", {"collection": theirs, "vector": [1, 0]}),
                                        ("upsert_vectors", {"collection": mine,
                                                            "points": [{"id": 7, "vector": [1, 0]}]}),
                                        ("delete_collection", {"collection": mine})):
                    refused = await client.call_tool(tool, arguments)
                    text = " ".join(getattr(part, "text", "") for part in refused.content)
                    assert refused.is_error and "refused (HTTP 403)" in text, (tool, text)

    anyio.run(main)
    assert stored(rbac.http, mine) == STORED
