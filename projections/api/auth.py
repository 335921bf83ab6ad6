"""API keys: with ``Settings.api_key`` set, every request but the probes carries a key.

The key travels in the ``api-key`` header (as qdrant-client sends it) or as
``Authorization: Bearer <key>``. ``Settings.read_only_api_key`` allows reads only; a
write with it is a 403. Probes (``/``, ``/health``, ``/ready`` and Qdrant's ``/healthz``,
``/livez``, ``/readyz``) expose no data and stay open, as in Qdrant, so that orchestrators
and qdrant-client's version check work without the key.
"""

from __future__ import annotations

import hmac
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from projections.api.errors import Forbidden, Unauthorized, response_for
from vectorizer.settings import Settings

OPEN_PATHS = frozenset({"/", "/health", "/ready", "/healthz", "/livez", "/readyz"})
_READ_POST = re.compile(r"^/collections/[^/]+/points(/scroll|/count|/query|/query/batch|/search)?/?$")


def is_read(method: str, path: str) -> bool:
    """Whether a request only reads: GET/HEAD/OPTIONS, and the POST routes that retrieve or search."""
    return method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and _READ_POST.match(path) is not None)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.key = _encoded(settings.api_key)
        self.read_only_key = _encoded(settings.read_only_api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.key is None and self.read_only_key is None) \
                or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = _presented_key(scope)
        error: Exception | None = None
        if given is not None and self.key is not None and hmac.compare_digest(given, self.key):
            error = None
        elif given is not None and self.read_only_key is not None and hmac.compare_digest(given, self.read_only_key):
            if not is_read(scope["method"], scope["path"]):
                error = Forbidden("this API key allows reads only")
        else:
            error = Unauthorized("missing or wrong API key (send it in the 'api-key' header)")
        if error is None:
            await self.app(scope, receive, send)
            return
        response = response_for(error, scope.get("state", {}).get("started"))
        await response(scope, receive, send)


def _encoded(key: str | None) -> bytes | None:
    return key.encode() if key else None


def _presented_key(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"api-key":
            return bytes(value)
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return bytes(value[7:].strip())
    return None
