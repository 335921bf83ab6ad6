"""The served OpenAPI document tells the truth, and Swagger UI at ``/docs`` works over it.

- every route that reads a JSON body documents a real schema (Qdrant's, or Vectorizer's own);
- no ``HTTPValidationError`` (FastAPI's 422, which the server never answers) is left;
- every error answer it documents is Qdrant's ``ErrorResponse`` envelope, and real bad requests
  answer a status the document lists for their route;
- the committed Qdrant schemas agree with qdrant-client's models;
- ``/docs`` and its files load without a key, nothing else does, and the page renders the
  operations in a real browser, asking for the key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import qdrant_client.http.models as qm
from fastapi.routing import APIRoute

from tests.api.conftest import Running, _settings, serving, unique
from vectorizer.api.auth import PUBLIC, is_read
from vectorizer.api.context import body
from vectorizer.api.openapi import BODIES, VECTORIZER_SCHEMAS
from vectorizer.api.qdrant_schemas import BODIES as QDRANT_BODIES
from vectorizer.api.qdrant_schemas import referenced, schemas
from vectorizer.api.routes.dashboard import FILES as DASHBOARD_FILES
from vectorizer.api.routes.docs import ASSETS

KEY = f"key-{secrets.token_hex(8)}"
READ_ONLY_KEY = f"ro-{secrets.token_hex(8)}"
ERROR = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A server with both keys and a small body limit: 401, 403 and 413 are real answers here."""
    settings = _settings(kafka_bootstrap, tmp_path_factory.mktemp("openapi"), api_key=KEY,
                         read_only_api_key=READ_ONLY_KEY, max_body_bytes=4096)
    with serving(settings) as running:
        yield running


@pytest.fixture(scope="module")
def doc(secured: Running) -> dict[str, Any]:
    r = secured.http.get("/openapi.json")
    assert r.status_code == 200, r.text
    document: dict[str, Any] = r.json()
    return document


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = doc["paths"][path][method.lower()]
    return operation


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every route, through FastAPI's included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # fastapi.routing._IncludedRouter
            yield from _api_routes(route.original_router.routes)


def _documented(doc: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(s) for s in _operation(doc, method, path)["responses"] if s.isdigit()}


def test_every_json_body_has_its_real_schema(secured: Running, doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    reading = {(method, route.path) for route in _api_routes(secured.replica.app.routes)
               for method in route.methods or () if any(d.call is body for d in route.dependant.dependencies)}
    assert len(reading) >= 25, reading
    assert reading == set(BODIES), "a route reads a JSON body without its schema in vectorizer.api.openapi.BODIES"
    for method, path in sorted(reading):
        schema = _operation(doc, method, path)["requestBody"]["content"]["application/json"]["schema"]
        names = list(referenced(schema))
        assert names and names[0] == BODIES[(method, path)], (method, path, schema)
        for name in names:
            target = components[name]
            assert target not in ({}, {"type": "object"}), (method, path, name)
            assert set(target) & {"properties", "anyOf", "oneOf", "allOf"}, (method, path, name, target)
    assert components["ScrollRequest"]["properties"]["limit"]["type"] == ["integer", "null"]  # Qdrant's, not a stub
    assert "consistency" in components["VectorizerReadOptions"]["properties"]


def test_nothing_refers_to_what_the_server_never_answers(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text and '"ValidationError"' not in text
    assert '"nullable"' not in text  # OpenAPI 3.0's keyword, written as JSON Schema's null type (3.1)
    assert set(referenced(doc)) <= set(doc["components"]["schemas"]), "dangling $ref"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
            assert {"401", "500"} <= set(errors), (method, path)
            for status, answer in errors.items():
                assert answer["content"] == {"application/json": {"schema": ERROR}}, (method, path, status)
    envelope = doc["components"]["schemas"]["ErrorResponse"]["properties"]
    assert envelope["status"]["properties"]["error"]["type"] == "string" and "time" in envelope
    assert doc["security"] == [{"api-key": []}, {"bearer": []}]  # this server has a key
    assert doc["components"]["securitySchemes"]["api-key"] == {
        "type": "apiKey", "in": "header", "name": "api-key",
        "description": doc["components"]["securitySchemes"]["api-key"]["description"]}


def test_bad_requests_answer_a_status_their_route_documents(secured: Running, doc: dict[str, Any]) -> None:
    name, missing = unique("oa"), unique("missing")
    c = "/collections/{collection_name}"
    create = secured.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}})
    assert create.status_code == 200, create.text
    with httpx.Client(base_url=secured.url, timeout=30) as anonymous:
        answers = [
            ("PUT", c, secured.http.put(f"/collections/{name}", json={"vectors": {"size": 2, "distance": "Dot"}})),
            ("PUT", c, secured.http.put(f"/collections/{unique('oa')}", json={"vectors": {"size": "two"}})),
            ("PUT", c, secured.http.put(f"/collections/{'x' * 300}", json={"vectors": {"size": 2}})),
            ("POST", f"{c}/points/scroll", secured.http.post(f"/collections/{missing}/points/scroll", json={})),
            ("POST", f"{c}/points/scroll", secured.http.post(f"/collections/{name}/points/scroll", content=b"[")),
            ("POST", f"{c}/points/scroll", secured.http.post(f"/collections/{name}/points/scroll",
                                                             json={"consistency": "0:99999999"},
                                                             params={"timeout": "0.2"})),
            ("POST", f"{c}/points/query", secured.http.post(f"/collections/{name}/points/query",
                                                            json={"query": [1.0, 2.0], "limit": -1})),
            ("PUT", f"{c}/points", secured.http.put(f"/collections/{name}/points",
                                                    json={"points": [{"id": 1, "vector": [0.0] * 2000}]})),
            ("GET", "/collections", anonymous.get("/collections")),
            ("DELETE", c, anonymous.delete(f"/collections/{name}", headers={"api-key": READ_ONLY_KEY})),
            ("GET", "/telemetry", secured.http.get("/telemetry", params={"details_level": "many"})),
        ]
    seen = set()
    for method, path, r in answers:
        assert r.status_code >= 400, (method, path, r.status_code, r.text)
        assert r.status_code in _documented(doc, method, path), (method, path, r.status_code, r.text)
        assert set(r.json()) == {"status", "time"}, r.text
        seen.add(r.status_code)
    assert {400, 401, 403, 404, 409, 413, 422, 504} <= seen, seen  # each documented status met for real


def _validator(doc: dict[str, Any], method: str, path: str) -> jsonschema.protocols.Validator:
    """A JSON Schema 2020-12 validator of the body ``method path`` documents."""
    schema = _operation(doc, method, path)["requestBody"]["content"]["application/json"]["schema"]
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        {**schema, "components": doc["components"]})
    return validator


def test_what_the_server_takes_the_document_allows_and_the_reverse(secured: Running, doc: dict[str, Any]) -> None:
    """Real bodies, differentially: each one the server answers 200 validates against its documented
    schema; each one the documented schema refuses, the server refuses too (400 or 422)."""
    name = unique("oa")
    c, at = "/collections/{collection_name}", f"/collections/{name}"
    taken = [
        ("PUT", c, {"vectors": {"size": 3, "distance": "Cosine"}, "hnsw_config": {"m": 8}}),
        ("PUT", f"{c}/points", {"points": [{"id": 1, "vector": [1.0, 0.0, 0.0], "payload": {"city": "Oslo"}},
                                           {"id": "7f1c0a8e-8a4a-4a7e-9f35-3f3a3c1e2b10", "vector": [0.0, 1.0, 0.0]}]}),
        ("PUT", f"{c}/points", {"batch": {"ids": [2, 3], "vectors": [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]}}),
        ("PUT", f"{c}/index", {"field_name": "city", "field_schema": "keyword"}),
        ("POST", f"{c}/points/payload", {"payload": {"rank": 1}, "points": [1]}),
        ("POST", f"{c}/points/query", {"query": [1.0, 0.0, 0.0], "limit": 2, "with_payload": True,
                                       "filter": {"must": [{"key": "city", "match": {"value": "Oslo"}}]}}),
        ("POST", f"{c}/points/search", {"vector": [1.0, 0.0, 0.0], "limit": 2, "consistency": "majority"}),
        ("POST", f"{c}/points/scroll", {"limit": 2, "with_vector": True}),
        ("POST", f"{c}/points/count", {"exact": True}),
        ("POST", f"{c}/points", {"ids": [1, 2], "with_payload": ["city"]}),
        ("POST", f"{c}/points/delete", {"filter": {"must": [{"key": "rank", "match": {"value": 1}}]}}),
        ("POST", "/collections/aliases", {"actions": [{"create_alias": {"collection_name": name,
                                                                        "alias_name": f"{name}_a"}}]}),
    ]
    for method, path, payload in taken:
        r = secured.http.request(method, path.replace(c, at) if path.startswith(c) else path, json=payload,
                                 params={"wait": "true"} if not is_read(method, path) else None)
        assert r.status_code == 200, (method, path, r.text)
        errors = [e.message for e in _validator(doc, method, path).iter_errors(payload)]
        assert errors == [], (method, path, errors)
    refused = [
        ("PUT", c, {"vectors": {"size": "three", "distance": "Cosine"}}),
        ("PUT", c, {"vectors": {"size": 3, "distance": "Cosine"}, "hnsw_config": {"m": -1}}),
        ("POST", f"{c}/points/scroll", {"limit": "ten"}),
        ("POST", f"{c}/points/query", {"query": [1.0, 0.0, 0.0], "limit": -5}),
        ("POST", f"{c}/points/count", {"exact": "yes"}),
        ("PUT", f"{c}/index", {"field_schema": "keyword"}),
    ]
    for method, path, payload in refused:
        assert not _validator(doc, method, path).is_valid(payload), (method, path, payload)
        target = f"/collections/{unique('oa')}" if (method, path) == ("PUT", c) else path.replace(c, at)
        r = secured.http.request(method, target, json=payload)
        assert r.status_code in (400, 422), (method, path, r.status_code, r.text)
        assert r.status_code in _documented(doc, method, path)


def test_the_committed_qdrant_schemas_agree_with_qdrant_client() -> None:
    """Qdrant's document (the contract) and qdrant-client's models (what clients send) describe the
    same bodies: no property the document names is unknown to the client. (The client, 1.20, knows
    a few newer ones: ``nested`` on payload index params, ``id_tracker``.)"""
    found = schemas()
    assert set(QDRANT_BODIES) <= set(found)
    assert set(referenced(found)) <= set(found), "the committed file is not closed under $ref"
    compared = 0
    for name, schema in found.items():
        model = getattr(qm, name, None)
        if model is None or not hasattr(model, "model_fields") or "properties" not in schema:
            continue
        fields = {f.alias or k for k, f in model.model_fields.items()}
        assert set(schema["properties"]) <= fields, (name, set(schema["properties"]) - fields)
        compared += 1
    assert compared >= 100, compared
    # The older search API (kept by this server, dropped from Qdrant's document): its bodies' fields.
    assert {"vector", "limit", "filter", "with_payload"} <= set(found["SearchRequest"]["properties"])
    assert {"vector", "group_by", "group_size"} <= set(found["SearchGroupsRequest"]["properties"])
    for name in VECTORIZER_SCHEMAS:
        assert name not in found, f"{name} shadows a Qdrant schema"


def test_docs_load_without_a_key_and_nothing_else_does(secured: Running) -> None:
    assert {"/docs"} | {f"/docs/{name}" for name in ASSETS} | set(DASHBOARD_FILES) == PUBLIC
    with httpx.Client(base_url=secured.url, timeout=30) as anonymous:
        page = anonymous.get("/docs")
        assert page.status_code == 200 and "/docs/swagger-ui-bundle.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for name in ASSETS:
            r = anonymous.get(f"/docs/{name}")
            assert r.status_code == 200 and len(r.content) > 500, name
        assert "SwaggerUIBundle" in anonymous.get("/docs/swagger-ui-bundle.js").text
        for method, path in (("GET", "/openapi.json"), ("GET", "/docs/"), ("GET", "/docs/x.js"),
                             ("POST", "/docs"), ("PUT", "/docs/init.js"), ("GET", "/docs/../openapi.json")):
            assert anonymous.request(method, path).status_code == 401, (method, path)
    assert secured.http.get("/docs/nothing.js").status_code == 404


def test_swagger_ui_renders_every_operation_in_a_browser(secured: Running, doc: dict[str, Any]) -> None:
    from playwright import sync_api
    operations = sum(len(ops) for ops in doc["paths"].values())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            page = browser.new_page()
            prompts: list[str] = []

            def answer(dialog: Any) -> None:
                prompts.append(dialog.message)
                dialog.accept(KEY)

            page.on("dialog", answer)
            page.goto(f"{secured.url}/docs")
            page.locator(".opblock").nth(operations - 1).wait_for(timeout=30_000)  # under the page's CSP
            assert page.locator(".opblock").count() == operations
            assert prompts and "API key" in prompts[0]
            assert re.search(r"vectorizer", page.inner_text(".info"), re.I)
            # "Try it out" on GET /collections: the key given at the prompt goes with the call.
            block = page.locator(".opblock-get", has=page.locator('[data-path="/collections"]')).first
            block.locator(".opblock-summary").click()
            block.locator(".try-out__btn").click()
            block.locator(".execute").click()
            status = block.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for(timeout=30_000)
            assert status.inner_text().strip() == "200", status.inner_text()
        finally:
            browser.close()
