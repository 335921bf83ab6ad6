"""Qdrant's request-body schemas, taken from Qdrant's own published OpenAPI document.

The server describes the bodies of Qdrant's routes with Qdrant's schemas (the real contract),
kept in ``qdrant_schemas.json`` beside this module: the components those bodies reference,
transitively, plus ``ErrorResponse``. They come from ``docs/redoc/master/openapi.json`` of
Qdrant's repository, except the older search API's three bodies (``SearchRequest``,
``SearchRequestBatch``, ``SearchGroupsRequest``), which Qdrant's document dropped with the
routes after v1.18 while this server still answers them: those, and the schemas only they use
(``NamedVectorStruct``, ...), come from ``v1.18.x``.

Regenerate (from a clone or a bare git directory of Qdrant)::

    python -m vectorizer.api.qdrant_schemas /path/to/qdrant > vectorizer/api/qdrant_schemas.json

Qdrant's document is OpenAPI 3.0 (``"nullable": true``); the server's is 3.1 (JSON Schema 2020-12),
so :func:`to_openapi_31` writes each nullable as a ``null`` type, the one change made to them.
``tests/api/test_openapi.py`` checks the committed file against qdrant-client's models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import Any

#: The bodies this server reads, by Qdrant's schema name.
BODIES = ("CreateCollection", "UpdateCollection", "CreateFieldIndex", "FacetRequest", "SearchMatrixRequest",
          "PointInsertOperations", "UpdateVectors", "DeleteVectors", "PointsSelector", "SetPayload",
          "DeletePayload", "UpdateOperations", "QueryRequest", "QueryRequestBatch", "QueryGroupsRequest",
          "SearchRequest", "SearchRequestBatch", "SearchGroupsRequest", "PointRequest", "ScrollRequest",
          "CountRequest", "SnapshotRecover", "ChangeAliasesOperation", "ErrorResponse")
#: Schemas Qdrant's master document no longer has, taken from this release's.
_OLDER = {"SearchRequest", "SearchRequestBatch", "SearchGroupsRequest"}
_OLDER_RELEASE = "v1.18.x"
_REF = "#/components/schemas/"


@cache
def schemas() -> dict[str, Any]:
    """``{name: schema}``: every component the bodies need (references are ``#/components/schemas/...``)."""
    loaded: dict[str, Any] = json.loads(resources.files(__package__).joinpath("qdrant_schemas.json").read_text())
    return loaded["schemas"]


def referenced(node: Any) -> Iterator[str]:
    """Every ``#/components/schemas/NAME`` that ``node`` references (NAME, in document order)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            yield ref[len(_REF):]
        for value in node.values():
            yield from referenced(value)
    elif isinstance(node, list):
        for value in node:
            yield from referenced(value)


def closure(roots: Iterable[str], master: dict[str, Any], older: dict[str, Any]) -> dict[str, Any]:
    """The schemas ``roots`` need, transitively: each from ``master``, unless it is one of :data:`_OLDER`
    or ``master`` no longer has it (then from ``older``)."""
    out: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = master[name] if name in master and name not in _OLDER else older[name]
        todo.extend(referenced(out[name]))
    return dict(sorted(out.items()))


def to_openapi_31(node: Any) -> Any:
    """``node`` with OpenAPI 3.0's ``nullable`` written as JSON Schema's ``null`` type."""
    if isinstance(node, list):
        return [to_openapi_31(value) for value in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_openapi_31(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is not True:
        return out
    if not out:
        return {"type": "null"}
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


def _document(repo: str, release: str) -> dict[str, Any]:
    text = subprocess.run(["git", "-C", repo, "show", f"HEAD:docs/redoc/{release}/openapi.json"],
                          check=True, capture_output=True, text=True).stdout
    document: dict[str, Any] = json.loads(text)
    return document


def main(repo: str) -> None:
    master = _document(repo, "master")["components"]["schemas"]
    older = _document(repo, _OLDER_RELEASE)["components"]["schemas"]
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    taken = to_openapi_31(closure(BODIES, master, older))
    from_older = sorted(n for n in taken if n in _OLDER or n not in master)
    source = {"repository": "qdrant/qdrant", "commit": commit, "document": "docs/redoc/master/openapi.json",
              "older": {"document": f"docs/redoc/{_OLDER_RELEASE}/openapi.json", "schemas": from_older}}
    json.dump({"source": source, "schemas": taken}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
