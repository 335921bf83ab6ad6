"""The request body size limit (``Settings.max_body_bytes``): larger bodies answer 413.

The body is read here, up to the limit, and handed on whole: a declared ``Content-Length``
over the limit is refused before reading, a chunked body as soon as it passes the limit.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vectorizer.api.errors import BadRequest, PayloadTooLarge, error_response, response_for


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope.get("state", {}).get("started")
        declared = _content_length(scope)
        if declared == -1:
            await response_for(BadRequest("content-length: not a number"), started)(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await response_for(self._too_large(declared), started)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await response_for(self._too_large(size), started)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"body: {size} bytes or more exceed the limit of {self.max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    """The declared length; ``None`` when absent, ``-1`` when malformed.

    More digits than any limit needs read as 10**18 (refused as too large, not as malformed).
    """
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = bytes(value).strip()
            if not text.isdigit():
                return -1
            return int(text) if len(text) <= 18 else 10**18
    return None


def _json_400(msg: str) -> bytes:
    """The JSON error envelope of a request the HTTP parser refused, as a whole HTTP/1.1 response."""
    body = error_response(400, "request: not valid HTTP/1.1 (malformed request line or header, e.g. a "
                               "Content-Length that is not one decimal number)").body
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + bytes(body))


def json_error_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class, answering a request its parser refuses (a malformed
    ``Content-Length``, a broken request line) with the JSON error envelope instead of plain text;
    such a request never reaches the ASGI app, so this is the one place that can answer it."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # no httptools: uvicorn parses with h11
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class JsonErrorProtocol(Base):
        def send_400_response(self, msg: str) -> None:
            self.transport.write(_json_400(msg))
            self.transport.close()

    return JsonErrorProtocol
