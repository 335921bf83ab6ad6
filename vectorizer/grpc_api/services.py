"""Qdrant's gRPC services (``qdrant.Collections``, ``qdrant.Points``, ``qdrant.Qdrant``) over the routes' code.

Each call is converted to the REST request it mirrors (:mod:`vectorizer.grpc_api.convert`) and
served by the functions the REST routes call: the same validation, messages, write verdicts and
read-your-writes, written once. What the HTTP middlewares do for REST is done here per call:
the collection name's checks and alias resolution, and the read-only rule of workspace
collections (API keys: :mod:`vectorizer.grpc_api.server`).

Vectorizer's extensions ride where a Qdrant client ignores them:

- a write's token is in the response's initial metadata (``x-vectorizer-write-token``) and in
  field :data:`WRITE_TOKEN_FIELD` of the response message, unknown to Qdrant's ``.proto``;
- a read waits for the write token in its ``x-vectorizer-consistency`` metadata,
  bounded by the request's ``timeout`` or the call's deadline. Qdrant's ``read_consistency``
  is satisfied by one replica at once, as over REST.

Errors are gRPC statuses with the REST answer's message: the status table of
:mod:`vectorizer.api.errors`, mapped as Qdrant maps its errors (400 and 422: INVALID_ARGUMENT,
404: NOT_FOUND, 409: ALREADY_EXISTS, 503: UNAVAILABLE, 504: DEADLINE_EXCEEDED, ...). A write the
projection refused after Kafka acknowledged it also carries ``x-vectorizer-rejected`` and
``x-vectorizer-reason`` in its trailing metadata.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from producers.errors import WriteRejected
from vectorizer.api import access, telemetry
from vectorizer.api.access import ACCESS
from vectorizer.api.context import Api
from vectorizer.api.errors import REASON_HEADER, REJECTED_HEADER, Unprocessable, status_for
from vectorizer.api.parsing import MAX_TIMEOUT_SECONDS
from vectorizer.api.paths import name_problem
from vectorizer.api.readonly import refusal
from vectorizer.api.routes import collections, points, query, reads
from vectorizer.api.routes.reads import ReadOptions
from vectorizer.api.routes.service import QDRANT_API_VERSION
from vectorizer.grpc_api import convert
from vectorizer.grpc_api.qdrant import collections_pb2 as cpb
from vectorizer.grpc_api.qdrant import collections_service_pb2_grpc as cgrpc
from vectorizer.grpc_api.qdrant import points_pb2 as ppb
from vectorizer.grpc_api.qdrant import points_service_pb2_grpc as pgrpc
from vectorizer.grpc_api.qdrant import qdrant_pb2 as qpb
from vectorizer.grpc_api.qdrant import qdrant_pb2_grpc as qgrpc

log = logging.getLogger(__name__)

WRITE_TOKEN_HEADER = "x-vectorizer-write-token"
CONSISTENCY_HEADER = "x-vectorizer-consistency"
#: The response field, outside Qdrant's messages, that holds a write's token (a string).
WRITE_TOKEN_FIELD = 1000

#: HTTP status -> gRPC status, as Qdrant maps its own errors (``From<StorageError> for Status``).
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
         409: grpc.StatusCode.ALREADY_EXISTS, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         422: grpc.StatusCode.INVALID_ARGUMENT, 503: grpc.StatusCode.UNAVAILABLE,
         504: grpc.StatusCode.DEADLINE_EXCEEDED}

M = TypeVar("M", bound=Message)
Handler = Callable[[Any, Any, grpc.ServicerContext], Any]


def rpc(method: Handler) -> Handler:
    """A servicer method whose errors become gRPC statuses with the REST answer's message."""

    @functools.wraps(method)
    def call(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error is answered; bugs are logged
            status = status_for(exc)
            if status is None:
                log.error("unexpected %s while serving gRPC %s", type(exc).__name__, method.__name__, exc_info=exc)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log")
            if isinstance(exc, WriteRejected):
                context.set_trailing_metadata(((REJECTED_HEADER, exc.offset), (REASON_HEADER, exc.reason)))
            context.abort(CODES.get(status or 500, grpc.StatusCode.INTERNAL), str(exc) or type(exc).__name__)
    return call


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_token(message: M, token: str | None, context: grpc.ServicerContext) -> M:
    """``message`` carrying ``token`` in :data:`WRITE_TOKEN_FIELD` and in the initial metadata."""
    if token is not None:
        raw = token.encode()
        message.MergeFromString(_varint(WRITE_TOKEN_FIELD << 3 | 2) + _varint(len(raw)) + raw)
        context.send_initial_metadata(((WRITE_TOKEN_HEADER, token),))
    return message


class _Service:
    def __init__(self, api: Api) -> None:
        self.api = api

    def name(self, raw: str, *, creating: bool = False, resolve: bool = True) -> str:
        """A request's collection name, checked as a REST path's is, resolved through aliases when Qdrant does;
        403 when the caller may not read it (create it: needs global manage access)."""
        problem = name_problem(raw, creating)
        if problem is not None:
            raise Unprocessable(f"Validation error in path parameters: [{problem}]")
        ACCESS.get().check(access.MANAGE if creating else access.read(raw))
        return self.api.projection.aliases().get(raw, raw) if resolve else raw

    def writable(self, raw: str, *, resolve: bool = True) -> str:
        """:meth:`name`, refused (403) when the caller may not write it, or it is a workspace collection, which
        only its producer writes."""
        name = self.name(raw, resolve=resolve)
        ACCESS.get().check(access.write(raw))
        error = refusal(self.api.projection, name)
        if error is not None:
            raise error
        return name

    @staticmethod
    def timeout(request: Message, context: grpc.ServicerContext) -> float | None:
        """The request's ``timeout`` (seconds) if given, else what is left of the call's deadline (``None``:
        no deadline, the server's default), at most REST's largest ``timeout``."""
        if "timeout" in request.DESCRIPTOR.fields_by_name and request.HasField("timeout"):
            return min(float(request.timeout), MAX_TIMEOUT_SECONDS)
        remaining = context.time_remaining()
        return None if remaining is None or remaining > MAX_TIMEOUT_SECONDS else max(0.0, remaining)

    def read_options(self, request: Message, context: grpc.ServicerContext) -> ReadOptions:
        token = next((str(value) for key, value in context.invocation_metadata() if key == CONSISTENCY_HEADER), None)
        return ReadOptions(token, self.timeout(request, context))


class Collections(_Service, cgrpc.CollectionsServicer):
    @rpc
    def Get(self, request: cpb.GetCollectionInfoRequest, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        opts = self.read_options(request, context)
        found = collections.info(self.api, self.name(request.collection_name), opts.consistency, opts.timeout)
        return cpb.GetCollectionInfoResponse(result=convert.to_collection_info(found),
                                             time=time.perf_counter() - started)

    @rpc
    def List(self, request: cpb.ListCollectionsRequest, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        return cpb.ListCollectionsResponse(collections=[cpb.CollectionDescription(name=name)
                                                        for name in collections.names(self.api)],
                                           time=time.perf_counter() - started)

    @rpc
    def CollectionExists(self, request: cpb.CollectionExistsRequest, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        opts = self.read_options(request, context)
        found = collections.exists(self.api, self.name(request.collection_name, resolve=False), opts.consistency,
                                   opts.timeout)
        return cpb.CollectionExistsResponse(result=cpb.CollectionExists(exists=found),
                                            time=time.perf_counter() - started)

    @rpc
    def Create(self, request: cpb.CreateCollection, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        name = self.name(request.collection_name, creating=True, resolve=False)
        token = collections.create(self.api, name, convert.create_collection(request), self.timeout(request, context))
        return with_token(cpb.CollectionOperationResponse(result=True, time=time.perf_counter() - started), token,
                          context)

    @rpc
    def Delete(self, request: cpb.DeleteCollection, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        ACCESS.get().check(access.MANAGE)
        name = self.writable(request.collection_name, resolve=False)
        done, token = collections.delete(self.api, name, self.timeout(request, context))
        return with_token(cpb.CollectionOperationResponse(result=done, time=time.perf_counter() - started), token,
                          context)


#: A write's preparation (``points.prepare_*``): validate, then a callable that publishes it.
Prepare = Callable[[Api, str, dict[str, Any]], points.Publish]


class Points(_Service, pgrpc.PointsServicer):
    def _write(self, request: Any, context: grpc.ServicerContext, body: dict[str, Any], prepare: Prepare) -> Any:
        started = time.perf_counter()
        name = self.writable(request.collection_name)
        publish = prepare(self.api, name, body)
        result = self.api.write_result(name, publish(), request.wait if request.HasField("wait") else None,
                                       self.timeout(request, context))
        return with_token(ppb.PointsOperationResponse(result=convert.to_update_result(result),
                                                      time=time.perf_counter() - started), result["write_token"],
                          context)

    @rpc
    def Upsert(self, request: ppb.UpsertPoints, context: grpc.ServicerContext) -> Any:
        return self._write(request, context, convert.upsert(request),
                           lambda a, name, b: points.prepare_upsert(a, name, b, points.known_points(a, name)))

    @rpc
    def Delete(self, request: ppb.DeletePoints, context: grpc.ServicerContext) -> Any:
        return self._write(request, context, convert.payload_write(request, "points"),
                           lambda a, name, b: points.prepare_delete(a, name, b, points.known_points(a, name)))

    @rpc
    def SetPayload(self, request: ppb.SetPayloadPoints, context: grpc.ServicerContext) -> Any:
        return self._write(request, context, _new_payload(request), points.prepare_set_payload)

    @rpc
    def OverwritePayload(self, request: ppb.SetPayloadPoints, context: grpc.ServicerContext) -> Any:
        return self._write(request, context, _new_payload(request), points.prepare_overwrite_payload)

    @rpc
    def DeletePayload(self, request: ppb.DeletePayloadPoints, context: grpc.ServicerContext) -> Any:
        body = {**convert.payload_write(request), "keys": list(request.keys)}
        return self._write(request, context, body, points.prepare_delete_payload)

    @rpc
    def ClearPayload(self, request: ppb.ClearPayloadPoints, context: grpc.ServicerContext) -> Any:
        return self._write(request, context, convert.payload_write(request, "points"), points.prepare_clear_payload)

    # Reads ---------------------------------------------------------------------------------
    @rpc
    def Get(self, request: ppb.GetPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        found = reads.retrieve(self.api, self.name(request.collection_name), self.read_options(request, context),
                               convert.get_points(request))
        return ppb.GetResponse(result=[convert.to_retrieved(d) for d in found], time=time.perf_counter() - started)

    @rpc
    def Scroll(self, request: ppb.ScrollPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        page = reads.scroll_page(self.api, self.name(request.collection_name), self.read_options(request, context),
                                 convert.scroll(request))
        out = ppb.ScrollResponse(result=[convert.to_retrieved(d) for d in page["points"]])
        if page["next_page_offset"] is not None:
            out.next_page_offset.CopyFrom(convert.to_point_id(page["next_page_offset"]))
        out.time = time.perf_counter() - started
        return out

    @rpc
    def Count(self, request: ppb.CountPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        counted = reads.count_points(self.api, self.name(request.collection_name),
                                     self.read_options(request, context), convert.count(request))
        return ppb.CountResponse(result=ppb.CountResult(count=counted["count"]), time=time.perf_counter() - started)

    @rpc
    def Search(self, request: ppb.SearchPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        hits = query.search_hits(self.api, self.name(request.collection_name), self.read_options(request, context),
                                 convert.search_points(request))
        return ppb.SearchResponse(result=[convert.to_scored(d) for d in hits], time=time.perf_counter() - started)

    @rpc
    def SearchBatch(self, request: ppb.SearchBatchPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        body = {"searches": [convert.search_points(one) for one in request.search_points]}
        pages = query.batched(self.api, self.name(request.collection_name), self.read_options(request, context), body,
                              query.parse_search, lambda hits: hits)
        return ppb.SearchBatchResponse(result=[ppb.BatchResult(result=[convert.to_scored(d) for d in hits])
                                               for hits in pages], time=time.perf_counter() - started)

    @rpc
    def Query(self, request: ppb.QueryPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        page = query.query_page(self.api, self.name(request.collection_name), self.read_options(request, context),
                                convert.query_points(request))
        return ppb.QueryResponse(result=[convert.to_scored(d) for d in page["points"]],
                                 time=time.perf_counter() - started)

    @rpc
    def QueryBatch(self, request: ppb.QueryBatchPoints, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        body = {"searches": [convert.query_points(one) for one in request.query_points]}
        pages = query.query_batch_pages(self.api, self.name(request.collection_name),
                                        self.read_options(request, context), body)
        return ppb.QueryBatchResponse(result=[ppb.BatchResult(result=[convert.to_scored(d) for d in page["points"]])
                                              for page in pages], time=time.perf_counter() - started)


def _new_payload(request: ppb.SetPayloadPoints) -> dict[str, Any]:
    """The REST body of a set or overwrite of payload: ``payload``, ``points`` or ``filter``, ``key``."""
    return {**convert.payload_write(request), "payload": convert.payload(request.payload),
            **({"key": request.key} if request.HasField("key") else {})}


class Qdrant(qgrpc.QdrantServicer):
    def HealthCheck(self, request: qpb.HealthCheckRequest, context: grpc.ServicerContext) -> Any:
        commit = telemetry.git_commit()
        return qpb.HealthCheckReply(title=telemetry.TITLE, version=QDRANT_API_VERSION,
                                    **({"commit": commit} if commit else {}))
