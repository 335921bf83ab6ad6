"""``create_app``: the FastAPI application over one projector and one producer.

Beside the REST routes, ``/mcp`` serves the MCP tools (``vectorizer.mcp``), whose session manager
runs for the app's lifespan. Request path, outermost first: latency metrics (and the request's start time), API keys,
the body size limit, alias resolution (``vectorizer.api.aliases``), the read-only rule of
workspace collections, Qdrant's checks of the collection name in the path, the hot lane for searches,
queries, retrieves and upserts (``vectorizer.api.hot``), then FastAPI's routing.
Every error, expected or not, is answered in Qdrant's envelope by :mod:`vectorizer.api.errors`;
nothing a client sends stops the server.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from infra.errors import VectorizerError
from infra.settings import Settings
from producers.producer import VectorProducer
from vectorizer import __version__
from vectorizer.api.aliases import ResolveAliases
from vectorizer.api.auth import AuthMiddleware
from vectorizer.api.context import Api
from vectorizer.api.errors import handle_error, handle_http_error
from vectorizer.api.hot import HotLane
from vectorizer.api.limits import BodyLimitMiddleware
from vectorizer.api.metrics import LatencyMiddleware, Metrics
from vectorizer.api.openapi import install as install_openapi
from vectorizer.api.paths import CollectionPaths
from vectorizer.api.reader import ProjectionReader
from vectorizer.api.readonly import ReadOnlyCollections
from vectorizer.api.routes import (
    aliases,
    collections,
    dashboard,
    docs,
    history,
    indexes,
    matrix,
    ops,
    points,
    query,
    reads,
    service,
    snapshots,
    text,
)
from vectorizer.mcp.http import McpEndpoint


def create_app(settings: Settings, projection: ProjectionReader, producer: VectorProducer | None) -> FastAPI:
    """The HTTP API. ``producer`` may be ``None`` until Kafka answers: set ``app.state.api.producer`` then."""
    app = FastAPI(title="vectorizer", version=__version__, docs_url=None, redoc_url=None,
                  description="A Qdrant-compatible REST subset over an event-sourced vector database.")
    # POST /vectorizer/verify keeps its last result on the Api; the verify gauges read it at scrape time.
    metrics = Metrics(projection, last_verify=lambda: app.state.api.ops.last_verify)
    app.state.api = Api(settings, projection, producer, metrics)
    # history before reads: GET .../points/{id} would take ".../points/{id}/history" for a string id
    for router in (service.router, aliases.router, collections.router, indexes.router, points.router, history.router,
                   reads.router, query.router, matrix.router, snapshots.router, text.router, ops.router, docs.router,
                   dashboard.router):
        app.include_router(router)
    install_openapi(app, settings)
    app.add_exception_handler(HTTPException, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, handle_error)
    app.add_exception_handler(VectorizerError, handle_error)  # every expected error, answered here
    app.add_exception_handler(Exception, handle_error)  # a bug: logged with its traceback, answered 500
    # add_middleware wraps: the last added runs first.
    app.add_middleware(HotLane, api=app.state.api)  # innermost: after every check
    app.add_middleware(CollectionPaths)
    app.add_middleware(ReadOnlyCollections, projection=projection)
    app.add_middleware(ResolveAliases, projection=projection)  # before the read-only rule: the real collection
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, settings=settings)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    mcp = McpEndpoint(app, settings)  # its tools call this app, through every middleware above
    app.router.routes.extend(mcp.routes)
    app.router.lifespan_context = lambda _app: mcp.lifespan()
    return app
