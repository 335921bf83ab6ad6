"""Collection aliases stand wherever a collection name does: the one place a name is resolved.

:class:`ResolveAliases` rewrites ``/collections/{alias}/...`` to the collection the alias names
before routing, so every route, the workspace read-only rule (``vectorizer.api.readonly``) and
every event a write publishes see the real collection: the log never holds an alias, and a
replay does not depend on alias history. As Qdrant, a path is not resolved where the name
itself is the subject: creating (``PUT``) and deleting (``DELETE``) ``/collections/{name}``, and
``/collections/{name}/aliases``. Names inside bodies (``lookup_from``, ``with_lookup``) resolve
through :meth:`vectorizer.api.context.Api.collection`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from vectorizer.api.paths import collection_path
from vectorizer.api.reader import ProjectionReader

_NOT_RESOLVED = re.compile(r"^/aliases/?$")


def resolved_path(method: str, path: str, aliases: dict[str, str]) -> tuple[str, str] | None:
    """(alias, collection) when ``path`` names an alias in a place Qdrant resolves it; else None."""
    found = collection_path(path)
    if found is None:
        return None
    name, rest = found
    if rest in ("", "/") and method not in ("GET", "HEAD", "PATCH"):
        return None  # create or delete the name itself (and POST /collections/aliases)
    if _NOT_RESOLVED.match(rest):
        return None
    target = aliases.get(name)
    return None if target is None else (name, target)


class ResolveAliases:
    """Reads the projection's current aliases on every request (recovery replaces its state)."""

    def __init__(self, app: ASGIApp, projection: ProjectionReader) -> None:
        self.app, self.projection = app, projection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/collections/"):
            found = resolved_path(scope["method"], scope["path"], self.projection.aliases())
            if found is not None:
                alias, target = found
                path = "/collections/" + target + scope["path"][len("/collections/") + len(alias):]
                raw = scope.get("raw_path")
                parts = raw.split(b"/", 3) if isinstance(raw, bytes) else []
                raw_path = (b"/".join([*parts[:2], quote(target, safe=":").encode(), *parts[3:]])
                            if len(parts) >= 3 else path.encode())
                scope["path"], scope["raw_path"] = path, raw_path  # in place: outer middlewares read the route
        await self.app(scope, receive, send)
