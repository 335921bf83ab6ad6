"""Operations routes (Vectorizer extensions under ``/vectorizer/``): what ``vectorizer status``,
``verify``, ``snapshot``, ``dlq`` and ``workspace sync`` tell on the command line, over HTTP, for
the MCP tools and the dashboard.

Every answer is bounded by configuration, never by the data: collections come a page at a time,
dead letters are the newest ``limit`` only, and nothing walks the points of a collection (a
verify does, by its nature, and only when asked). A verify and a workspace sync run one at a
time per server (a second concurrent request is a 409).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse

from consumers import integrity, snapshots
from consumers.errors import SnapshotCorrupt
from infra.errors import InfrastructureError
from projections.collection import Collection
from vectorizer.api.access import ACCESS
from vectorizer.api.context import Api, api, ok
from vectorizer.api.errors import NotFound
from vectorizer.api.metrics import BUCKETS, lag_seconds
from vectorizer.api.routes.collections import QDRANT_DISTANCE

router = APIRouter(prefix="/vectorizer", tags=["operations"])

_SNAPSHOT_TIMEOUT_SECONDS = 120.0
_SYNC_WAIT_SECONDS = 120.0


@router.get("/status", summary="Readiness, offsets and lag per partition, counts, snapshot, last verify")
def status(request: Request, a: Api = Depends(api)) -> JSONResponse:
    return ok(request, status_of(a))


def status_of(a: Api) -> dict[str, Any]:
    """What ``vectorizer status`` tells, of this server's projection (no point is read)."""
    p, stats = a.projection, a.projection.stats
    positions, lag, ends = p.positions(), p.lag(), dict(stats.log_end)
    behind = lag_seconds(lag, dict(stats.applied_timestamps), time.time())
    partitions = [{"partition": q, "applied": positions.get(q), "log_end": ends.get(q), "lag": lag.get(q, 0),
                   "lag_seconds": behind.get(q)} for q in sorted(set(positions) | set(ends))]
    colls = p.collections()
    try:
        age = snapshots.age_seconds(p.settings.snapshot_dir)
        newest = next(iter(snapshots.list_snapshots(p.settings.snapshot_dir)), None)
    except OSError:
        age, newest = None, None
    return {
        "ready": p.serving(),
        "problem": p.log_problem,
        "partitions": partitions,
        "lag": sum(lag.values()),
        "lag_seconds": max(behind.values(), default=0.0),
        "events_applied": stats.events_applied,
        "vectors_applied": stats.vectors_applied,
        "dead_letters": stats.dead_letters,
        "dead_letters_by_reason": dict(sorted(dict(stats.dead_letters_by_reason).items())),
        "collections": len(colls),
        "points": sum(c.count() for c in colls.values()),
        "snapshot": {"newest": None if newest is None else newest.name, "age_seconds": age,
                     "last_duration_seconds": stats.last_snapshot_seconds,
                     "failing": stats.last_snapshot_error is not None, "error": stats.last_snapshot_error},
        "verify": a.ops.last_verify,
    }


#: The dashboard's latency charts: which requests count as searches and as upserts.
_SEARCH_TAILS = ("/points/search", "/points/search/batch", "/points/search/groups", "/points/query",
                 "/points/query/batch", "/points/query/groups", "/search/text")
LATENCY_GROUPS = {
    "search": lambda method, route: method == "POST" and route.endswith(_SEARCH_TAILS),
    "upsert": lambda method, route: ((method == "PUT" and route.endswith(("/points", "/points/text")))
                                     or (method == "POST" and route.endswith("/points/batch"))),
}


@router.get("/latency", summary="Request latency histograms of searches and upserts (cumulative bucket counts)")
def latency(request: Request, a: Api = Depends(api)) -> JSONResponse:
    """``{buckets: [upper bounds in seconds], groups: {search: [...], upsert: [...]}}``: cumulative
    counts per bucket since the server started (the last count is ``+Inf``, all requests)."""
    return ok(request, {"buckets": list(BUCKETS), "groups": a.metrics.latency_buckets(LATENCY_GROUPS)})


@router.get("/collections", summary="Collections a page at a time: kind, points, vectors, quantization, indexes")
def collections(request: Request, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000),
                prefix: str = Query("", description="Only names starting with this"),
                a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    caller = ACCESS.get()  # the collections (and aliases) the caller may read
    everything = a.projection.collections()
    names = sorted(n for n in caller.readable(everything) if n.startswith(prefix))
    aliases: dict[str, list[str]] = {}
    for alias, target in sorted(a.projection.aliases().items()):
        if caller.reads(alias):
            aliases.setdefault(target, []).append(alias)
    page = [summary(everything[n], aliases.get(n, [])) for n in names[offset:offset + limit]]
    return ok(request, {"total": len(names), "offset": offset, "limit": limit, "collections": page})


def summary(coll: Collection, aliases: list[str]) -> dict[str, Any]:
    """One collection as the dashboard lists it (the unnamed vector under the name ``""``)."""
    config = coll.config
    return {
        "name": coll.name,
        "kind": config.kind,
        "points": coll.count(),
        "vectors": {name: {"size": spec.size, "distance": QDRANT_DISTANCE[spec.metric],
                           "quantization": None if spec.quantization is None else json.loads(spec.quantization)}
                    for name, spec in config.dense().items()},
        "sparse_vectors": sorted(config.sparse()),
        "payload_indexes": {} if config.payload_indexes is None else json.loads(config.payload_indexes),
        "aliases": aliases,
        "embedder": None if config.embedder is None else json.loads(config.embedder),
    }


@router.get("/snapshots", summary="The projection's recovery snapshots, newest first")
def list_snapshots(request: Request, a: Api = Depends(api)) -> JSONResponse:
    out: list[dict[str, Any]] = []
    now = time.time()
    for path in snapshots.list_snapshots(a.settings.snapshot_dir):
        try:
            manifest = snapshots.read_manifest(path)
            files = [f for f in path.iterdir() if f.is_file()]
        except (OSError, SnapshotCorrupt) as exc:
            out.append({"name": path.name, "error": str(exc)})
            continue
        created = float(manifest.get("created_at", 0.0))
        out.append({"name": path.name, "created": created, "age_seconds": max(0.0, now - created),
                    "bytes": sum(f.stat().st_size for f in files), "files": len(files),
                    "offsets": manifest.get("offsets", {})})
    return ok(request, {"snapshots": out})


@router.post("/snapshots", summary="Take a recovery snapshot now (between two of the projector's batches)")
def take_snapshot(request: Request, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    name = a.projection.request_snapshot(_SNAPSHOT_TIMEOUT_SECONDS)
    if name is None:
        why = a.projection.stats.last_snapshot_error or "see the server log"
        raise InfrastructureError(f"the snapshot failed: {why}")  # 503: the disk, not the request
    manifest = snapshots.read_manifest(a.settings.snapshot_dir / name)
    return ok(request, {"name": name, "offsets": manifest.get("offsets", {})})


@router.post("/verify", summary="Run the integrity check (files, catalog and index against the log)")
def verify(request: Request, collection: str | None = Query(None, description="Only this collection"),
           a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    if collection is not None:
        a.collection(collection)  # 404 for a collection that does not exist
    with a.ops.exclusive("verify"):
        started = time.monotonic()
        report = integrity.verify(a.settings, collection)
        result = {**report.as_dict(), "ok": report.ok, "collection": collection,
                  "seconds": round(time.monotonic() - started, 3), "finished": time.time()}
    a.ops.last_verify = result
    return ok(request, result)


@router.get("/verify", summary="The last verify this server ran (null: none since it started)")
def last_verify(request: Request, a: Api = Depends(api)) -> JSONResponse:
    return ok(request, a.ops.last_verify)


@router.get("/dead_letters", summary="The newest dead letters: records the projection refused, and why")
def dead_letters(request: Request, limit: int = Query(100, ge=1, le=1000), a: Api = Depends(api)) -> JSONResponse:
    letters, older = a.ops.letters(a.settings, a.projection.stats.dead_letters, limit)
    return ok(request, {"dead_letters": letters, "more": older})


@router.post("/workspace/sync", summary="Sync the server's workspace file (VECTORIZER_WORKSPACE_FILE) and wait")
def workspace_sync(request: Request, a: Api = Depends(api)) -> JSONResponse:
    from vectorizer.workspace import WorkspaceProducer, load

    a.require_producer()
    path: Path = a.settings.workspace_file
    if not path.is_file():
        raise NotFound(f"Not found: workspace file {str(path)!r} (set VECTORIZER_WORKSPACE_FILE)")
    with (a.ops.exclusive("workspace sync"),
          WorkspaceProducer(a.settings, load(path), catch_up_timeout=_SYNC_WAIT_SECONDS) as producer):
        reports = producer.sync()
        producer.wait_applied(_SYNC_WAIT_SECONDS)
    return ok(request, {"file": str(path), "collections": [r.as_dict() for r in reports]})
