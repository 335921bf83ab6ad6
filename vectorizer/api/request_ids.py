"""Request ids: which request a write was made for, in the answer and on the log.

Every HTTP request has one: the client's ``x-request-id`` header when it is 1 to
:data:`MAX_LENGTH` visible ASCII characters (no spaces), else a new one (32 hex digits, 128 random bits). The
answer echoes it in its own ``x-request-id`` header, and every event the request publishes
carries it (``schemas.attribution``), beside the caller (:data:`vectorizer.api.caller.CALLER`).
:class:`~vectorizer.api.metrics.LatencyMiddleware`, the outermost layer, sets :data:`REQUEST_ID`
for the rest of the app (the hot lane included); over gRPC, ``vectorizer.grpc_api.request_ids``
does the same with the call's ``x-request-id`` metadata.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

from schemas.attribution import Attribution
from vectorizer.api.caller import CALLER

HEADER = "x-request-id"
MAX_LENGTH = 128
_VALID = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)

#: The id of the request being served; ``None`` outside a request.
REQUEST_ID: ContextVar[str | None] = ContextVar("vectorizer_request_id", default=None)


def request_id(given: bytes | None) -> str:
    """The request's id: ``given`` when acceptable, else a new one."""
    if given is not None and _VALID.fullmatch(given):
        return given.decode("ascii")
    return os.urandom(16).hex()  # 128 random bits, as uuid4().hex, at a quarter of its cost


def attribution() -> Attribution:
    """Who the write being published now is for: the request's caller and id (the server's producer
    reads it at every write); outside a request, nobody's (the producer names itself)."""
    rid = REQUEST_ID.get()
    return Attribution(None, None) if rid is None else Attribution(CALLER.get(), rid)
