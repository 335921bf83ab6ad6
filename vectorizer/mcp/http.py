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

from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from infra.settings import Settings
from vectorizer.api.auth import is_loopback
from vectorizer.mcp.tools import InProcessBackend, build

PATH = "/mcp"


class McpEndpoint:
    """The ``/mcp`` route's parts: the session manager to run, the routes to add."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.backend = InProcessBackend(app)
        server = build(self.backend)
        # On loopback the SDK turns its DNS-rebinding protection on by itself (``host``); beyond it, off.
        security = None if is_loopback(settings.http_host) else TransportSecuritySettings(
            enable_dns_rebinding_protection=False)
        routes = server.streamable_http_app(streamable_http_path=PATH, json_response=True, stateless_http=True,
                                            max_request_body_size=settings.max_body_bytes,
                                            transport_security=security, host=settings.http_host).routes
        self.routes: list[BaseRoute] = list(routes)
        self.manager = server.session_manager

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        try:
            async with self.manager.run():
                yield
        finally:
            await self.backend.client.aclose()
