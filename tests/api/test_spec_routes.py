"""The contract's route table (``docs/SPEC.md``, "Routes") and the OpenAPI document the server
serves list the same routes: a route added without its line in the SPEC, or a SPEC line naming a
route the server does not answer, fails here. Every line says "as Qdrant" or how it differs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.api.conftest import Running

SPEC = Path(__file__).resolve().parents[2] / "docs" / "SPEC.md"
ROW = re.compile(r"^\| `(GET|PUT|POST|PATCH|DELETE) (/[^`]*)` \| (.+) \|$")
#: Qdrant's probes, Swagger UI, the dashboard and the MCP endpoint: answered, left out of the OpenAPI
#: document (as the SPEC says).
PROBES = {("GET", "/healthz"), ("GET", "/livez"), ("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/docs"),
          ("GET", "/dashboard"), ("POST", "/mcp")}


def _table() -> dict[tuple[str, str], str]:
    text = SPEC.read_text()
    start = text.index("\n### Routes\n")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if line.startswith("#"):
            break
        match = ROW.match(line)
        if match:
            method, path, behaviour = match.groups()
            rows[(method, path.replace("{c}", "{collection_name}"))] = behaviour
    return rows


def test_the_spec_lists_every_route_the_server_answers(server: Running) -> None:
    table = _table()
    served = {(method.upper(), path) for path, ops in server.http.get("/openapi.json").json()["paths"].items()
              for method in ops}
    assert served - table.keys() == set(), "routes missing from docs/SPEC.md"
    assert table.keys() - served - PROBES == set(), "docs/SPEC.md lists routes the server does not serve"
    for (method, path), behaviour in table.items():
        assert re.search(r"as Qdrant|differs|extension|Vectorizer's|the OpenAPI document", behaviour), (method, path)
    for method, path in PROBES - {("GET", "/openapi.json"), ("POST", "/mcp")}:  # /mcp: tests/api/test_mcp.py
        assert server.http.request(method, path).status_code in (200, 503), path
