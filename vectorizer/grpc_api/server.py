"""The gRPC server: Qdrant's services on ``Settings.grpc`` (127.0.0.1:6334 by default), beside HTTP.

It shares the HTTP API's :class:`~vectorizer.api.context.Api` (projection, producer, settings),
so both answer from the same projection and publish through the same producer. Calls run on
grpcio's thread pool; a search holds the GIL only around hnswlib's C++ search, as over REST.

API keys and JWTs as over REST (``vectorizer.api.auth``): with ``Settings.api_key`` or
``Settings.read_only_api_key`` set, every call carries ``api-key`` metadata (as qdrant-client
sends it) or ``authorization: Bearer <key>``; none or a wrong one is UNAUTHENTICATED, a write
with the read-only key or a call a JWT does not grant PERMISSION_DENIED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from infra.errors import ConfigurationError
from infra.settings import Settings
from vectorizer.api.access import ACCESS, Need
from vectorizer.api.auth import Keys, presented_key
from vectorizer.api.caller import CALLER
from vectorizer.api.context import Api
from vectorizer.api.errors import ApiError, status_for
from vectorizer.grpc_api.qdrant import collections_service_pb2_grpc as cgrpc
from vectorizer.grpc_api.qdrant import points_service_pb2_grpc as pgrpc
from vectorizer.grpc_api.qdrant import qdrant_pb2_grpc as qgrpc
from vectorizer.grpc_api.request_ids import RequestIds
from vectorizer.grpc_api.services import CODES, Collections, Points, Qdrant

log = logging.getLogger(__name__)

#: Calls the read-only key may make: everything that only reads.
READS = frozenset({
    "/qdrant.Qdrant/HealthCheck",
    *(f"/qdrant.Collections/{m}" for m in ("Get", "List", "CollectionExists", "ListAliases",
                                           "ListCollectionAliases", "CollectionClusterInfo", "ListShardKeys")),
    *(f"/qdrant.Points/{m}" for m in ("Get", "Scroll", "Count", "Search", "SearchBatch", "SearchGroups", "Query",
                                      "QueryBatch", "QueryGroups", "Recommend", "RecommendBatch", "RecommendGroups",
                                      "Discover", "DiscoverBatch", "Facet", "SearchMatrixPairs",
                                      "SearchMatrixOffsets")),
})
_WORKERS = 8  # threads serving calls; a call waiting for a write token holds one


class _Keys(grpc.ServerInterceptor):
    """Credentials by :meth:`vectorizer.api.auth.Keys.authenticate`, the REST rule; a refusal is its status's
    code. The caller's identity and access stay set while the call runs, where the services check each
    request's collection (``vectorizer.grpc_api.services``)."""

    def __init__(self, settings: Settings) -> None:
        self.keys = Keys.of(settings)

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        if self.keys is None:
            return continuation(details)
        try:
            caller, access = self.keys.authenticate(presented_key(details.invocation_metadata or ()))
            if details.method not in READS and access.is_global:
                access.check(WRITE)  # the read-only key writes nothing: refused before the request is read
        except ApiError as error:
            return _refusal(CODES[status_for(error) or 401], str(error))
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        serve = handler.unary_unary

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            as_caller, with_access = CALLER.set(caller), ACCESS.set(access)
            try:
                return serve(request, context)
            finally:
                ACCESS.reset(with_access)
                CALLER.reset(as_caller)
        return handler._replace(unary_unary=call)


#: A write, as global access sees it (per-collection access is checked with the request's collection).
WRITE = Need(write=True)


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)
    return grpc.unary_unary_rpc_method_handler(refuse)


class GrpcServer:
    """Qdrant's gRPC API over ``api``; :meth:`start` binds, :meth:`stop` drains."""

    def __init__(self, settings: Settings, api: Api) -> None:
        self.address = settings.grpc
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="vectorizer-grpc"),
            interceptors=[_Keys(settings), RequestIds()],
            options=[("grpc.max_receive_message_length", settings.max_body_bytes),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 1 if settings.reuse_port else 0)])  # workers share the port
        cgrpc.add_CollectionsServicer_to_server(Collections(api), self.server)
        pgrpc.add_PointsServicer_to_server(Points(api), self.server)
        qgrpc.add_QdrantServicer_to_server(Qdrant(), self.server)
        self.port = 0

    def start(self) -> int:
        """Bind and serve; the port bound (the one asked, or a free one for port 0)."""
        try:
            self.port = self.server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise ConfigurationError(f"VECTORIZER_GRPC: cannot listen on {self.address} ({exc}); set another "
                                     "host:port, or 'off'") from None
        self.server.start()
        log.info("serving gRPC on %s:%d", self.address.rpartition(":")[0], self.port)
        return self.port

    def stop(self, grace: float) -> None:
        if self.port:  # started
            self.server.stop(grace).wait()
