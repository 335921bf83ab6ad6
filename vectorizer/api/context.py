"""What every route works with: the projection (a :class:`ProjectionReader`), the producer,
and the steps all routes share.

Reads: wait until this server's projection applied every write token the request names
(``consistency``), then answer from the projection. Writes: validate, publish through the
producer (the answer comes once Kafka acknowledged), and with ``wait=true`` wait until
this server applied the write and answer the projection's verdict: ``completed`` only if
every record of the write was applied; a rejected one is the error the same mistake gets
when caught before publishing (:class:`~producers.errors.WriteRejected`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from infra.kafka.topics import partition_for
from infra.settings import Settings
from producers.errors import WriteRejected
from producers.producer import WriteToken, within
from projections.collection import Collection
from projections.errors import CollectionNotFound, ConsistencyTimeout
from schemas.ids import PointId
from vectorizer.api import access
from vectorizer.api.access import ACCESS
from vectorizer.api.encoding import JsonAnswer
from vectorizer.api.errors import BadRequest, NotReady
from vectorizer.api.metrics import Metrics
from vectorizer.api.operations import Operations
from vectorizer.api.parsing import MAX_TIMEOUT_SECONDS, Body, load_body
from vectorizer.api.reader import ProjectionReader, Publisher

_PARSE_INLINE_BYTES = 64 * 1024


@dataclass
class Api:
    """The server's shared parts. ``producer`` is ``None`` until Kafka first answered."""

    settings: Settings
    projection: ProjectionReader
    producer: Publisher | None
    metrics: Metrics
    ops: Operations = field(default_factory=Operations)  # the operations routes' state (last verify, ...)

    # Guards --------------------------------------------------------------------------
    def require_ready(self) -> None:
        if not self.projection.serving():
            problem = self.projection.log_problem
            if problem is not None:  # nothing is served, and no write answered, from a stale projection
                raise NotReady(f"not serving: {problem}")
            raise NotReady("recovery has not caught up with the log yet; retry shortly")

    def require_producer(self) -> Publisher:
        self.require_ready()
        if self.producer is None:
            raise NotReady("not connected to Kafka yet; retry shortly")
        return self.producer

    def collection(self, name: str) -> Collection:
        """The collection ``name`` names, or an alias of that name does; 404 when neither exists.
        (Paths arrive resolved: ``vectorizer.api.aliases``; names in bodies resolve here.)"""
        coll = self.projection.collection(self.projection.aliases().get(name, name))
        if coll is None:
            raise CollectionNotFound(f"Not found: Collection `{name}` doesn't exist!")
        return coll

    def lookup(self, name: str) -> Collection:
        """:meth:`collection` for a name in a body (``lookup_from``, ``with_lookup``): 403 when the caller may not
        read it, as Qdrant checks those names."""
        ACCESS.get().check(access.read(name))
        return self.collection(name)

    def dimension_of(self, name: str) -> int | None:
        coll = self.projection.collection(name)
        return None if coll is None else coll.config.dimension

    # Consistency ---------------------------------------------------------------------
    def timeout(self, value: float | None) -> float:
        return self.settings.default_timeout if value is None else value

    def await_tokens(self, tokens: Iterable[WriteToken], timeout: float | None) -> None:
        """Block until every token is applied here; :class:`ConsistencyTimeout` after ``timeout`` in total
        (``None``: as long as it takes, while the projector runs). A token naming a partition the
        topic does not have is a :class:`~vectorizer.api.errors.BadRequest` at once: nothing will
        ever apply it."""
        from vectorizer.api.parsing import known_partitions

        tokens = known_partitions(tokens, self.projection.partitions())
        for token in tokens:
            self.check_log_of(token)
        deadline = None if timeout is None else time.monotonic() + timeout
        for token in tokens:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.projection.wait_for(token.partition, token.offset, left)

    def check_log_of(self, token: WriteToken) -> None:
        """A token that names another log than the one this server follows is a 400: its numbers
        say nothing about this log (the topic was recreated, or the token is from another cluster)."""
        here = self.projection.log_tag()
        if token.log is not None and here is not None and token.log != here:
            raise BadRequest(f"consistency: write token {token} is from another log ({token.log}); this server "
                             f"follows log {here} (the topic was recreated, or the token is from another cluster)")

    def tagged(self, token: WriteToken) -> WriteToken:
        """``token`` naming the log this server follows (for answers)."""
        here = self.projection.log_tag()
        return token if here is None else dataclasses.replace(token, log=here)

    def check_verdict(self, token: WriteToken) -> None:
        """Raise :class:`WriteRejected` if the projection refused any record of this applied write."""
        refused = self.projection.verdict(token.partition, token.records)
        if refused:
            raise WriteRejected.of(token.partition, refused, len(token.records))

    def applied_token(self, collection: str) -> WriteToken:
        """A token this server already applied, covering every earlier write to ``collection``.

        Answers writes that publish nothing (an empty id list, a filter matching no point).
        """
        partitions = self.projection.partitions() or [0]
        partition = partitions[partition_for(collection, len(partitions))]
        return WriteToken(partition, max(0, self.projection.positions().get(partition, 0)))

    # Writes --------------------------------------------------------------------------
    def waits(self, wait: bool | None) -> bool:
        """Whether a write waits to be applied: its ``wait`` parameter, else (not given)
        ``Settings.read_your_writes``."""
        return self.settings.read_your_writes if wait is None else wait

    def write_result(self, collection: str, token: WriteToken | None, wait: bool | None,
                     timeout: float | None) -> dict[str, Any]:
        """Qdrant's ``UpdateResult`` plus ``write_token``.

        ``wait``: wait for this server to apply the write, at most ``timeout`` seconds when given
        (then ``wait_timeout``: durable in Kafka, not yet applied here, as Qdrant answers), else
        as long as it takes; a rejected write raises :class:`WriteRejected`. ``wait=None`` (not
        given) is ``Settings.read_your_writes``. ``token=None``: the write published nothing (an
        empty id list, a filter matching no point).
        """
        wait = self.waits(wait)
        published = token is not None
        token = token or self.applied_token(collection)
        status = "acknowledged"
        if wait:
            try:
                self.projection.wait_for(token.partition, token.offset, timeout)
            except ConsistencyTimeout:
                status = "wait_timeout"
            else:
                if published:
                    self.check_verdict(token)
                status = "completed"
        return {"operation_id": token.offset, "status": status, "write_token": str(self.tagged(token))}

    def publish_by_ids(self, ids: list[PointId], publish: Callable[[list[PointId]], WriteToken]) -> WriteToken | None:
        """Publish ``publish(chunk)`` for chunks of ``ids`` well within one record, atomically.

        Several chunks go in one Kafka transaction: readers see all of them or none.
        ``None`` when there is nothing to publish.
        """
        chunks = list(within(ids, _id_bytes, self.settings.max_message_bytes // 8))
        if not chunks:
            return None
        producer = self.require_producer()
        if len(chunks) == 1:
            return publish(chunks[0])
        with producer.transaction():
            return WriteToken.joined([publish(chunk) for chunk in chunks])


def _id_bytes(pid: PointId) -> int:
    """About what one id costs in an event by ids."""
    return 16 + (len(pid) if isinstance(pid, str) else 0)


# FastAPI dependencies and answers ----------------------------------------------------
def json_body(description: str) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a route that reads its JSON object itself (see :func:`body`)."""
    return {"requestBody": {"required": False, "description": description,
                            "content": {"application/json": {"schema": {"type": "object"}}}}}


def timeout_param(description: str) -> Any:
    """The ``timeout`` query parameter (seconds); defaults to ``Settings.default_timeout``."""
    return Query(None, gt=0, le=MAX_TIMEOUT_SECONDS, description=description)


async def api(request: Request) -> Api:
    state: Api = request.app.state.api
    return state


async def body(request: Request) -> Body:
    """The request body as a JSON object (``{}`` when empty); 400 otherwise.

    Large bodies are parsed in the thread pool, so the event loop keeps serving meanwhile.
    """
    raw = await request.body()
    if len(raw) <= _PARSE_INLINE_BYTES:
        return load_body(raw)
    return await run_in_threadpool(load_body, raw)


def ok(request: Request, result: Any, **extra: Any) -> JSONResponse:
    """Qdrant's success envelope (plus ``extra`` fields); ``time`` counts from the request's arrival."""
    return ok_body(result, getattr(request.state, "started", None), **extra)


def ok_body(result: Any, started: float | None, **extra: Any) -> JSONResponse:
    """:func:`ok` given the request's start time (``perf_counter``) instead of the request."""
    elapsed = 0.0 if started is None else time.perf_counter() - started
    return JsonAnswer({"result": result, "status": "ok", "time": elapsed, **extra})
