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

With ``Settings.jwt_rbac`` (Qdrant's ``jwt_rbac``) a JWT signed with the full key (HS256) is a
key too, granting what its ``access`` claim says (:mod:`vectorizer.api.access`, Qdrant's RBAC):
global read, global manage, or read / read-write on named collections. Every request's need
(:func:`vectorizer.api.access.rest_need`) is checked here, before the body is read; the caller's
identity and access stay in :data:`vectorizer.api.caller.CALLER` and
:data:`vectorizer.api.access.ACCESS` while the request is served.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Iterable

import jwt
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.settings import Settings
from vectorizer.api.access import ACCESS, FULL, READ_ONLY, Access, from_claims, rest_need
from vectorizer.api.caller import CALLER, FULL_KEY, READ_ONLY_KEY
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


class Keys:
    """The server's credentials: the full key, the read-only key and (``Settings.jwt_rbac``) JWTs signed
    with the full key. :meth:`authenticate` is the one rule for REST and gRPC (``vectorizer.grpc_api.server``)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.key = encoded(settings.api_key)
        self.read_only_key = encoded(settings.read_only_api_key)
        self.jwt_secret = settings.api_key if settings.jwt_rbac else None
        self.clock = clock
        # Tokens verified before: (caller, access, exp), so a client's next request costs a lookup, not
        # an HMAC and a JSON parse (~75 us); exp is checked again on every use.
        self._verified: dict[bytes, tuple[str, Access, float | None]] = {}

    @classmethod
    def of(cls, settings: Settings) -> Keys | None:
        """The keys to check, or ``None`` when the API is open (no key set)."""
        return cls(settings) if settings.api_key or settings.read_only_api_key else None

    def authenticate(self, given: bytes | None) -> tuple[str, Access]:
        """Who presents ``given`` (:mod:`vectorizer.api.caller`) and what they may do; 401 or 403 when nobody."""
        if given is not None and self.key is not None and hmac.compare_digest(given, self.key):
            return FULL_KEY, FULL
        if given is not None and self.read_only_key is not None and hmac.compare_digest(given, self.read_only_key):
            return READ_ONLY_KEY, READ_ONLY
        if given is not None and self.jwt_secret is not None and given.count(b".") == 2:
            return self._token(given, self.jwt_secret)
        if self.jwt_secret is not None and given:
            raise Unauthorized("Invalid API key or JWT")
        raise Unauthorized("missing or wrong API key (send it in the 'api-key' header)")

    def _token(self, token: bytes, secret: str) -> tuple[str, Access]:
        known = self._verified.get(token)
        if known is None:
            known = self._jwt(token, secret)
            if len(self._verified) >= _VERIFIED_TOKENS:
                self._verified.clear()  # bounded: many clients at once only cost the decoding again
            self._verified[token] = known
        caller, access, expires = known
        if expires is not None and self.clock() > expires + JWT_LEEWAY_SECONDS:
            raise Forbidden("Forbidden: ExpiredSignature: the JWT has expired")
        return caller, access

    @staticmethod
    def _jwt(token: bytes, secret: str) -> tuple[str, Access, float | None]:
        """Qdrant's JWT rules (``src/common/auth/jwt_parser.rs``): HS256 with the API key, ``exp`` checked with
        30 s of leeway, no claim required; a bad signature or an expired token is a 403, anything else that
        does not decode is not a JWT of this server (401)."""
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"], leeway=JWT_LEEWAY_SECONDS,
                                options={"verify_aud": False, "verify_iss": False, "require": []})
        except jwt.ExpiredSignatureError:
            raise Forbidden("Forbidden: ExpiredSignature: the JWT has expired") from None
        except jwt.InvalidSignatureError:
            raise Forbidden("Forbidden: InvalidSignature: the JWT is not signed with this server's API key") from None
        except jwt.PyJWTError:
            raise Unauthorized("Invalid API key or JWT") from None
        if not isinstance(claims, dict):
            raise Unauthorized("Invalid API key or JWT")
        if claims.get("value_exists") is not None:
            raise Unauthorized("Invalid JWT: value_exists (stateful validation) is not supported by this server")
        access = from_claims(claims)
        subject = claims.get("sub", claims.get("subject"))
        name = f"jwt:{subject}"[:MAX_CALLER_CHARS] if isinstance(subject, str) and subject else "jwt"
        expires = claims.get("exp")
        return name, access, float(expires) if isinstance(expires, (int, float)) else None


#: Qdrant's leeway on a JWT's ``exp``, for clocks that disagree a little.
JWT_LEEWAY_SECONDS = 30
MAX_CALLER_CHARS = 200
_VERIFIED_TOKENS = 4096


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.keys = Keys.of(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys is None or scope["type"] not in ("http", "websocket") or (
                scope["path"] in PUBLIC and scope.get("method") in ("GET", "HEAD")):
            await self.app(scope, receive, send)
            return
        try:
            caller, access = self.keys.authenticate(presented_key(scope["headers"]))
            method = scope.get("method", "GET")
            access.check(rest_need(method, scope["path"], is_read(method, scope["path"])))
        except ApiError as error:
            if scope["type"] == "websocket":  # no such routes; refuse the handshake all the same
                await send({"type": "websocket.close", "code": 1008})
            else:
                await response_for(error, scope.get("state", {}).get("started"))(scope, receive, send)
            return
        as_caller, with_access = CALLER.set(caller), ACCESS.set(access)
        try:
            await self.app(scope, receive, send)
        finally:
            ACCESS.reset(with_access)
            CALLER.reset(as_caller)


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
