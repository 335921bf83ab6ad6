"""Service routes: name and version, liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from vectorizer import __version__
from vectorizer.api.context import Api, api, ok
from vectorizer.api.errors import NotReady, response_for
from vectorizer.api.metrics import CONTENT_TYPE

#: The Qdrant REST API level this server speaks. qdrant-client compares it with its own
#: version (same major, minor within one) and warns otherwise, so ``version`` carries it;
#: Vectorizer's own version is ``vectorizer_version``.
QDRANT_API_VERSION = "1.20.0"

router = APIRouter(tags=["service"])


@router.get("/", summary="Name and version")
def root(request: Request) -> JSONResponse:
    return JSONResponse({"title": "vectorizer", "version": QDRANT_API_VERSION, "vectorizer_version": __version__})


@router.get("/health", summary="Liveness: the process answers")
@router.get("/healthz", include_in_schema=False)
@router.get("/livez", include_in_schema=False)
def health(request: Request) -> JSONResponse:
    return ok(request, {"status": "alive"})


@router.get("/ready", summary="Readiness: 200 once recovery caught up with the log, else 503")
@router.get("/readyz", include_in_schema=False)
def ready(request: Request, a: Api = Depends(api)) -> JSONResponse:
    try:
        a.require_producer()
    except NotReady as exc:
        return response_for(exc, getattr(request.state, "started", None))
    return ok(request, {"status": "ready", "applied": {str(p): o for p, o in sorted(a.projection.positions().items())}})


@router.get("/metrics", summary="Prometheus metrics")
def metrics(a: Api = Depends(api)) -> Response:
    return Response(a.metrics.render(), media_type=CONTENT_TYPE)
