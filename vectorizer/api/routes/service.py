"""Service routes: name and version, liveness, readiness, Prometheus metrics, telemetry, cluster.

``/``, ``/healthz``, ``/livez``, ``/readyz``, ``/telemetry``, ``/cluster`` and
``/collections/{name}/cluster`` answer as a single-node Qdrant does; ``/health`` and ``/ready``
are Vectorizer's own JSON probes (``/ready`` lists the applied offsets).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from vectorizer import __version__
from vectorizer.api import telemetry as t
from vectorizer.api.context import Api, api, ok
from vectorizer.api.errors import NotReady, response_for
from vectorizer.api.metrics import CONTENT_TYPE
from vectorizer.api.routes.collections import collection_params

#: The Qdrant REST API level this server speaks. qdrant-client compares it with its own
#: version (same major, minor within one) and warns otherwise, so ``version`` carries it;
#: Vectorizer's own version is in the ``x-vectorizer-version`` header and in ``/telemetry``.
QDRANT_API_VERSION = "1.20.0"

router = APIRouter(tags=["service"])


@router.get("/", summary="Name, Qdrant API version, commit (Vectorizer's version: x-vectorizer-version header)")
def root(request: Request) -> JSONResponse:
    """Qdrant's ``VersionInfo``, without an envelope; ``commit`` is ``null`` when not known."""
    return JSONResponse({"title": t.TITLE, "version": QDRANT_API_VERSION, "commit": t.git_commit()},
                        headers={t.VERSION_HEADER: __version__})


@router.get("/health", summary="Liveness: the process answers")
def health(request: Request) -> JSONResponse:
    return ok(request, {"status": "alive"})


@router.get("/healthz", include_in_schema=False)
@router.get("/livez", include_in_schema=False)
def healthz() -> PlainTextResponse:
    """Qdrant's Kubernetes probes: plain text, always 200 while the process answers."""
    return PlainTextResponse("healthz check passed")


@router.get("/ready", summary="Readiness: 200 once recovery caught up with the log, else 503")
def ready(request: Request, a: Api = Depends(api)) -> JSONResponse:
    try:
        a.require_producer()
    except NotReady as exc:
        return response_for(exc, getattr(request.state, "started", None))
    return ok(request, {"status": "ready", "applied": {str(p): o for p, o in sorted(a.projection.positions().items())}})


@router.get("/readyz", include_in_schema=False)
def readyz(a: Api = Depends(api)) -> PlainTextResponse:
    """Qdrant's readiness probe: plain text, 503 until recovery caught up with the log (and Kafka
    answered), as Qdrant answers 503 until its shards are ready."""
    try:
        a.require_producer()
    except NotReady:
        return PlainTextResponse("some shards are not ready", status_code=503)
    return PlainTextResponse("all shards are ready")


@router.get("/metrics", summary="Prometheus metrics")
def metrics(a: Api = Depends(api)) -> Response:
    return Response(a.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/telemetry", summary="Telemetry: app, collections, requests (a truthful subset of Qdrant's)")
def telemetry(request: Request, details_level: int | None = Query(None, ge=0, description="0: counts only; "
                                                                   "1 and more: per collection"),
              anonymize: bool | None = None, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    data = t.telemetry(a.projection, a.metrics, details_level or 0, bool(anonymize), collection_params)
    return ok(request, data)


@router.get("/cluster", summary="Cluster status: disabled (one node; Kafka replicates the log)")
def cluster(request: Request) -> JSONResponse:
    return ok(request, {"status": "disabled"})


@router.get("/collections/{collection_name}/cluster", summary="A collection's shards: one local shard, Active")
def collection_cluster(request: Request, collection_name: str, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    return ok(request, t.collection_cluster(a.settings, a.collection(collection_name).count()))
