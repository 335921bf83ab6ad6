"""Request ids over gRPC, as over REST (``vectorizer.api.request_ids``): the call's ``x-request-id``
metadata when acceptable, else a new id; set as :data:`REQUEST_ID` while the call is served (so the
events it publishes carry it) and answered in the call's trailing metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from vectorizer.api.request_ids import HEADER, REQUEST_ID, request_id


class RequestIds(grpc.ServerInterceptor):
    """Wraps every unary-unary handler (all of Qdrant's services are) in its request id."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            given = next((value for key, value in context.invocation_metadata() if key == HEADER), None)
            rid = request_id(given.encode() if isinstance(given, str) else given)
            token = REQUEST_ID.set(rid)
            try:
                return behavior(request, context)
            finally:
                REQUEST_ID.reset(token)
                # after the handler: it may have set trailing metadata of its own (a rejected write's)
                context.set_trailing_metadata((*(context.trailing_metadata() or ()), (HEADER, rid)))

        return handler._replace(unary_unary=call)
