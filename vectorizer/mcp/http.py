"""``/mcp``: the MCP tools over streamable HTTP, on the server's own port and behind its API keys.

Stateless JSON responses: each MCP request is answered on its own (no session to keep, so any
replica can answer any request). The tools call the server's app in process with the key the MCP
client presented (:class:`~vectorizer.mcp.tools.InProcessBackend`). The session manager runs for
the app's lifespan (:func:`lifespan`). On a loopback address the SDK's DNS-rebinding protection
is on (a web page cannot reach the tools through a hostile host name); beyond loopback the API
keys guard it, as every route.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp

from infra.settings import Settings
from vectorizer.api.auth import is_loopback
from vectorizer.mcp.tools import InProcessBackend, build

PATH = "/mcp"


class McpEndpoint:
    """The ``/mcp`` route's parts: the session manager to run, the route to add."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.backend = InProcessBackend(app)
        server = build(self.backend)
        loopback = is_loopback(settings.http_host)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=loopback,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"] if loopback else [],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"] if loopback else [])
        self.manager = StreamableHTTPSessionManager(app=server._lowlevel_server,  # noqa: SLF001 - the SDK's seam
                                                    json_response=True, stateless=True, security_settings=security,
                                                    max_request_body_size=settings.max_body_bytes)
        self.route = Route(PATH, endpoint=StreamableHTTPASGIApp(self.manager), methods=["GET", "POST", "DELETE"])

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            async with self.manager.run():
                yield
        finally:
            await self.backend.client.aclose()
