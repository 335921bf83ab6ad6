"""``run_server``: one read replica — a projector thread, the HTTP API and Qdrant's gRPC API in one process.

Start-up never blocks the HTTP port: ``/health`` answers at once, ``/ready`` and the data
routes answer 503 (with ``Retry-After``) until Kafka answered and recovery caught up.
Shutdown (SIGINT/SIGTERM, or :meth:`Replica.request_stop`): HTTP stops accepting and
drains, then the projector stops after its current batch and writes a final snapshot,
then the producer closes. If the projector fails, the server stops too: a replica that no
longer follows the log must not keep answering.

Nothing secret is logged: API keys never, the catalog URL with its password masked. Binding
an address beyond loopback with no API key set is logged as a warning at start-up.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import uvicorn

from consumers.projector import Projector
from infra import process
from infra.errors import EncryptionKeyError
from infra.settings import Settings
from producers.producer import VectorProducer
from vectorizer.api import request_ids
from vectorizer.api.app import create_app
from vectorizer.api.auth import is_loopback
from vectorizer.api.limits import json_error_protocol
from vectorizer.api.workers import Workers
from vectorizer.grpc_api.server import GrpcServer

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_MAX_SECONDS = 5.0
_SHUTDOWN_GRACE_SECONDS = 5
# How long an idle keep-alive connection stays open. Longer than clients keep theirs (httpx, and so
# qdrant-client, drops an idle connection after 5 s, uvicorn's own default): with equal timeouts a
# request sent on a connection the server is closing at that moment is reset, and a PUT is not retried.
KEEP_ALIVE_SECONDS = 65


class Replica:
    """A projector and the HTTP server over it. :meth:`serve` blocks until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        warning = exposure_warning(settings)
        if warning is not None:
            log.warning(warning)
        self.projector = Projector(settings)
        self.app = create_app(settings, self.projector, None)
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        config = uvicorn.Config(self.app, host=settings.http_host, port=settings.http_port, lifespan="on",
                                access_log=False, timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
                                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                                log_level="info", http=json_error_protocol())
        self.http = uvicorn.Server(config)
        self.grpc = None if settings.grpc == "off" else GrpcServer(settings, self.app.state.api)
        self._backend = threading.Thread(target=self._follow_log, name="vectorizer-projector", daemon=True)

    def serve(self) -> None:
        """Run until :meth:`request_stop` or a signal; returns after the final snapshot.

        A worker other than the first (``Settings.worker``) starts listening only once its projection
        caught up: until then its siblings take every connection."""
        later = self.settings.worker > 0
        if self.grpc is not None and not later:
            self.grpc.start()  # before the projector: a port in use fails the start, nothing begun
        self._backend.start()
        try:
            if later:
                while not self.projector.serving() and not self.stop_event.wait(0.1):
                    pass
                if self.stop_event.is_set():
                    return
                if self.grpc is not None:
                    self.grpc.start()
            self.http.run(sockets=[shared_socket(self.settings)] if self.settings.reuse_port else None)
        finally:
            self.request_stop()
            if self.grpc is not None:
                self.grpc.stop(_SHUTDOWN_GRACE_SECONDS)
            self._backend.join()
            producer = self.app.state.api.producer
            if producer is not None:
                producer.close()
            log.info("stopped")

    def request_stop(self) -> None:
        """Ask the HTTP server and the projector to stop (safe from any thread or a signal handler)."""
        self.http.should_exit = True
        self.stop_event.set()

    @property
    def started(self) -> bool:
        """Whether the HTTP port is listening."""
        return self.http.started

    # The projector thread -------------------------------------------------------------
    def _follow_log(self) -> None:
        try:
            producer = self._retry("connecting to Kafka", lambda: VectorProducer(
                self.settings, dimensions=self.app.state.api.dimension_of, attribution=request_ids.attribution))
            if not isinstance(producer, VectorProducer):
                return
            self.app.state.api.producer = producer
            if self._retry("recovering the projection", self.projector.recover) is None:
                return
            self.projector.run(self.stop_event)
        except BaseException as exc:  # noqa: BLE001 - any failure stops the replica, loudly
            self.failure = exc
            log.critical("the projector failed; stopping the server", exc_info=exc)
            self.request_stop()

    def _retry(self, what: str, attempt: Callable[[], T]) -> T | bool | None:
        """``attempt()`` until it succeeds (its result, or ``True``), or ``None`` once stopping."""
        delay = 0.2
        while not self.stop_event.is_set():
            try:
                return attempt() or True
            except EncryptionKeyError:
                raise  # a wrong or missing key-encryption key does not fix itself: stop, nothing written
            except Exception as exc:  # noqa: BLE001 - Kafka not there yet: log and retry
                log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)
        return None


def run_server(settings: Settings) -> None:
    """Serve ``settings.http`` (127.0.0.1:15002 by default) until SIGINT/SIGTERM. Blocks.

    With ``settings.workers`` > 1 this process is worker 0 and starts the others
    (:mod:`vectorizer.api.workers`), all on the same ports. Raises the projector's exception if it
    failed (a worker's exit, as a :class:`RuntimeError`), so the process exits non-zero.
    """
    process.setup_logging()
    if settings.workers > 1:
        settings = settings.replace(reuse_port=True)
    replica = Replica(settings)
    workers = None
    if settings.workers > 1:
        def worker_exited(why: str) -> None:
            log.critical("%s; stopping the server", why)
            replica.failure = replica.failure or RuntimeError(why)
            replica.request_stop()

        workers = Workers(settings, worker_exited)
    # uvicorn replaces these while serving and re-raises a caught signal afterwards: landing
    # here, that is harmless, and the final snapshot is not interrupted.
    process.on_stop(replica.request_stop)
    log.info("serving http://%s:%d, gRPC %s (topic %s, projection %s, catalog %s%s)", settings.http_host,
             settings.http_port, settings.grpc, settings.topic, settings.projection,
             process.masked_url(settings.resolved_catalog_url),
             f", {settings.workers} workers" if workers is not None else "")
    try:
        if workers is not None:
            workers.start()
        replica.serve()
    finally:
        if workers is not None:
            workers.stop()
    if replica.failure is not None:
        raise replica.failure


def shared_socket(settings: Settings) -> socket.socket:
    """The HTTP listening socket with ``SO_REUSEPORT``: the workers of one server all bind it."""
    host = settings.http_host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, settings.http_port))
    return sock


def exposure_warning(settings: Settings) -> str | None:
    """The warning for an HTTP or gRPC address beyond loopback with no API key, else ``None``."""
    if settings.api_key or settings.read_only_api_key:
        return None
    exposed = [address for address in (settings.http, settings.grpc)
               if address != "off" and not is_loopback(address.rpartition(":")[0] or "127.0.0.1")]
    if not exposed:
        return None
    return (f"SECURITY WARNING: serving on {' and '.join(exposed)}, beyond loopback, with no API "
            f"key: anyone who reaches this address can read, overwrite and delete every collection. Set "
            f"VECTORIZER_API_KEY (and VECTORIZER_READ_ONLY_API_KEY), or serve on 127.0.0.1.")
