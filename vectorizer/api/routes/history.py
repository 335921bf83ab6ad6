"""A point's history: who wrote it, and when, read from the log (``consumers.audit``).

``GET /collections/{c}/points/{id}/history`` answers the events of the point in log order —
the writes naming it and its collection's creations and deletions — each with its time (the
envelope's ``created_at``), operation (the event type), caller and request id (the attribution
headers; ``null`` on records written before them), producer, ``partition`` / ``offset`` and what
it changed in short. It reads the collection's partition of the topic, not a projection: a full
scan of that partition from ``offset`` (default: its beginning), bounded by ``limit`` events and
``timeout`` seconds. ``next_offset`` is where to continue (``null``: the scan reached the end of
the log as it was when the request arrived).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request
from kafka.errors import KafkaError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from consumers.audit import Trail
from consumers.errors import LogWaitTimeout
from infra.errors import BrokerUnavailable
from infra.kafka.topics import partition_for
from schemas.ids import PointId
from vectorizer.api import parsing as p
from vectorizer.api.context import Api, api, ok, timeout_param
from vectorizer.api.routes.reads import ReadOptions, get_point

router = APIRouter(tags=["points"])

MAX_LIMIT = 1000


@router.get("/collections/{collection_name}/points/{point_id:point_id}/history",
            summary="Vectorizer: who changed this point, and when (read from the log)")
async def history(request: Request, collection_name: str, point_id: str,
                  limit: int = Query(100, ge=1, le=MAX_LIMIT, description="Most events to answer"),
                  offset: int | None = Query(None, ge=0, description="The partition offset to scan from: the "
                                                                     "previous answer's next_offset"),
                  timeout: float | None = timeout_param("Seconds the scan may take (then it answers what it "
                                                        "found, and next_offset)"),
                  a: Api = Depends(api)) -> JSONResponse:
    if not request.scope.get("raw_path", b"/history").rstrip(b"/").endswith(b"/history"):
        # a point whose string id ends in "/history" (sent as %2Fhistory): the point itself
        opts = ReadOptions(request.query_params.get("consistency"), timeout)
        return await run_in_threadpool(get_point, request, collection_name, f"{point_id}/history", opts, a)
    return ok(request, await run_in_threadpool(point_history, a, collection_name, point_id, limit, offset, timeout))


def point_history(a: Api, collection_name: str, point_id: str, limit: int, offset: int | None,
                  timeout: float | None) -> dict[str, object]:
    a.require_ready()
    name = a.collection(collection_name).config.name  # 404 for a collection this server does not know
    pid = p.path_point_id(point_id)
    deadline = time.monotonic() + a.timeout(timeout)
    try:
        return _scan(a, name, pid, limit, offset, deadline)
    except (KafkaError, LogWaitTimeout) as exc:  # the log does not answer: a 503, as for a write
        raise BrokerUnavailable(f"reading the log of {name!r} failed: {exc}") from exc


def _scan(a: Api, name: str, pid: PointId, limit: int, offset: int | None, deadline: float) -> dict[str, object]:
    events = []
    with Trail(a.settings, collection=name, point=pid, start=offset, deadline=deadline) as trail:
        partitions = sorted(trail.ends) or [0]
        partition = partitions[partition_for(name, len(partitions))]
        for write in trail:
            events.append(write.row(pid))
            if len(events) >= limit:
                break
        done = trail.complete or trail.position.get(partition, 0) >= trail.ends.get(partition, 0)
        next_offset = None if done else trail.position.get(partition)
    return {"partition": partition, "events": events, "next_offset": next_offset}
