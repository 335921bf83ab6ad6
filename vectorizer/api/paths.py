"""Qdrant's checks of the collection name in the path (``CollectionPath``, ``StrictCollectionPath``).

Starlette routes on the decoded path, so a name holding an encoded ``/`` (``a%2Fb``) would reach
another route or none; Qdrant reads the segment as the name and refuses it with a 422
``Validation error in path parameters: [collection_name: ...]``. This middleware reads the raw
segment and answers those cases as Qdrant does, before routing:

- on every ``/collections/{name}...`` route: a name longer than 255 characters, or holding ``/``
  or NUL (Qdrant's ``validate_collection_name_legacy``);
- on creation (``PUT /collections/{name}``): also ``< > " \\ | ? *`` and U+001F (Qdrant's
  ``validate_collection_name``). ``:`` is the one character Qdrant refuses that this server
  accepts in names (``schemas.validation.collection_name``).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from vectorizer.api.errors import Unprocessable, response_for

_PREFIX = b"/collections/"
_COLLECTION = re.compile(r"^/collections/([^/]+)(/.*)?$")


def collection_path(path: str) -> tuple[str, str] | None:
    """``(name, rest)`` of a decoded ``/collections/{name}{rest}`` path (``rest`` may be ``""``); else None."""
    found = _COLLECTION.match(path)
    return None if found is None else (found.group(1), found.group(2) or "")

_LEGACY = ("/", "\0")
_STRICT = ("<", ">", '"', "/", "\\", "|", "?", "*", "\0", "\x1f")


def name_problem(name: str, creating: bool) -> str | None:
    """Qdrant's message for ``name`` as a path's collection name, or ``None`` when it passes."""
    if not 1 <= len(name) <= 255:
        return f"collection_name: value {_quoted(name)} invalid, must be from 1 to 255 characters"
    for char in _STRICT if creating else _LEGACY:
        if char in name:
            shown = "\\0" if char == "\0" else char
            return f'collection_name: collection name cannot contain "{shown}" char'
    return None


def _quoted(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CollectionPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or scope.get("path", "").encode()
        if scope["type"] == "http" and raw.startswith(_PREFIX):
            segment, _, rest = raw[len(_PREFIX):].partition(b"?")[0].partition(b"/")
            creating = scope["method"] == "PUT" and rest in (b"", b"/")
            name = unquote_to_bytes(segment).decode("utf-8", "replace")
            problem = name_problem(name, creating) if segment else None
            if problem is not None:
                error = Unprocessable(f"Validation error in path parameters: [{problem}]")
                await response_for(error, scope.get("state", {}).get("started"))(scope, receive, send)
                return
        await self.app(scope, receive, send)
