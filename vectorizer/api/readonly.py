"""Workspace collections are read-only over the API: they follow their files through the
workspace producer (``vectorizer workspace sync|watch``). A write to one is a 403 naming it.

The projector enforces the same rule on the log (``ProjectionState._existing``); this check
answers early, before anything is published.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from vectorizer.api.auth import is_read
from vectorizer.api.errors import Forbidden, response_for
from vectorizer.api.paths import collection_path
from vectorizer.api.reader import ProjectionReader

_NOT_WRITES = re.compile(r"^/snapshots(/(?!recover/?$|upload/?$)[^/]+)?/?$")  # writing or deleting a snapshot
# changes no data (recovering one does)


class ReadOnlyCollections:
    """Reads the projector's *current* state on every request: recovery replaces the state
    object (a loaded snapshot), so holding the one seen at start-up would miss every collection
    the snapshot brought."""

    def __init__(self, app: ASGIApp, projection: ProjectionReader) -> None:
        self.app, self.projection = app, projection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_read(scope["method"], scope["path"]):
            found = collection_path(scope["path"])
            error = refusal(self.projection, found[0]) if found and not _NOT_WRITES.match(found[1]) else None
            if error is not None:
                await response_for(error, scope.get("state", {}).get("started"))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refusal(projection: ProjectionReader, collection: str) -> Forbidden | None:
    """The 403 of a write to ``collection`` when it is a workspace collection, else ``None``."""
    coll = projection.collection(collection)
    if coll is None or coll.config.kind != "workspace":
        return None
    return Forbidden(f"collection {coll.name!r} is a workspace collection and is read-only: it follows its files "
                     "through `vectorizer workspace sync|watch`")
