"""API keys: with ``Settings.api_key`` or ``Settings.read_only_api_key`` set, every request carries a key.

The key travels in the ``api-key`` header (as qdrant-client sends it) or as
``Authorization: Bearer <key>``. A request without a valid key is a 401, whatever its path:
the probes (``/``, ``/health``, ``/ready``, Qdrant's ``/healthz``, ``/livez``, ``/readyz``),
``/metrics``, ``/openapi.json`` and unknown routes included, so that nothing about the
server (not even its version or whether it is up) is told to a client without a key.
``Settings.read_only_api_key`` allows every read (:func:`is_read`), probes included, so
orchestrators and monitoring can use it; a write with it is a 403.
The one exception: Swagger UI's and the dashboard's page and files (:data:`PUBLIC`, exact paths, GET and HEAD)
load without a key, since a browser cannot send a header with a page load; they are the same
for every server and carry no data: the page then fetches ``/openapi.json`` and calls the API
with the key the user gives it (``vectorizer.api.routes.docs``).
With neither key set the API is open: it listens on loopback by default, and
:mod:`vectorizer.api.server` warns loudly when it binds anything else without a key.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from infra.settings import Settings
from vectorizer.api.caller import ANONYMOUS, CALLER, FULL_KEY, READ_ONLY_KEY
from vectorizer.api.errors import ApiError, Forbidden, Unauthorized, response_for

_READ_POST = re.compile(r"^/collections/[^/]+/(points(/scroll|/count|/query|/query/batch|/query/groups|/search"
                        r"|/search/batch|/search/groups|/search/matrix/pairs|/search/matrix/offsets)?|search/text|facet)/?$")


#: POST routes outside collections the read-only key may call: the integrity check changes nothing, and
#: the MCP endpoint's tools call the REST routes with the caller's key, which decide per tool (a write
#: tool called with the read-only key is the 403 of the route it writes through).
_READ_POST_PATHS = frozenset({"/vectorizer/verify", "/mcp"})
#: Swagger UI's and the dashboard's page and files: served to anyone (GET, HEAD), exact paths only.
PUBLIC = frozenset({"/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/favicon.png",
                    "/docs/init.js", "/dashboard", "/dashboard/app.js", "/dashboard/style.css"})


def is_read(method: str, path: str) -> bool:
    """Whether a request only reads: GET/HEAD/OPTIONS, and the POST routes that retrieve, search or verify."""
    return method in ("GET", "HEAD", "OPTIONS") or (
        method == "POST" and (_READ_POST.match(path) is not None or path.rstrip("/") in _READ_POST_PATHS))


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.key = encoded(settings.api_key)
        self.read_only_key = encoded(settings.read_only_api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or (self.key is None and self.read_only_key is None):
            await self.app(scope, receive, send)
            return
        error = self._refusal(scope)
        if error is None:
            token = CALLER.set(self._identity(scope))
            try:
                await self.app(scope, receive, send)
            finally:
                CALLER.reset(token)
        elif scope["type"] == "websocket":  # no such routes; refuse the handshake all the same
            await send({"type": "websocket.close", "code": 1008})
        else:
            await response_for(error, scope.get("state", {}).get("started"))(scope, receive, send)

    def _identity(self, scope: Scope) -> str:
        given = presented_key(scope["headers"])
        if given is not None and self.key is not None and hmac.compare_digest(given, self.key):
            return FULL_KEY
        return READ_ONLY_KEY if given is not None else ANONYMOUS

    def _refusal(self, scope: Scope) -> Exception | None:
        """Why the request may not proceed (401, 403), or ``None`` when its key allows it."""
        if scope["path"] in PUBLIC and scope.get("method") in ("GET", "HEAD"):
            return None
        return key_refusal(presented_key(scope["headers"]), self.key, self.read_only_key,
                           lambda: is_read(scope.get("method", "GET"), scope["path"]))


def key_refusal(given: bytes | None, key: bytes | None, read_only_key: bytes | None,
                reads: Callable[[], bool]) -> ApiError | None:
    """Why a request presenting ``given`` may not proceed (401, 403), or ``None``; ``reads``: whether it
    only reads. The one rule for REST and gRPC (``vectorizer.grpc_api.server``)."""
    if given is not None and key is not None and hmac.compare_digest(given, key):
        return None
    if given is not None and read_only_key is not None and hmac.compare_digest(given, read_only_key):
        return None if reads() else Forbidden("this API key allows reads only")
    return Unauthorized("missing or wrong API key (send it in the 'api-key' header)")


def encoded(key: str | None) -> bytes | None:
    return key.encode() if key else None


def presented_key(headers: Iterable[tuple[bytes | str, bytes | str]]) -> bytes | None:
    """The key in ``api-key`` or ``authorization: Bearer`` among ``headers`` (ASGI's bytes, gRPC metadata's str)."""
    for name, value in headers:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        if name in (b"api-key", "api-key"):
            return raw
        if name in (b"authorization", "authorization") and raw[:7].lower() == b"bearer ":
            return raw[7:].strip()
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
