"""A running server per module (or per test, with its own settings): projector thread + uvicorn
in a thread, on a free port, over the session's real Kafka broker."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from qdrant_client import QdrantClient

from infra.settings import Settings
from tests.conftest import free_port
from tests.helpers import wait_until
from vectorizer.api.server import Replica


@dataclass
class Running:
    settings: Settings
    replica: Replica
    http: httpx.Client

    @property
    def url(self) -> str:
        return f"http://{self.settings.http}"

    @property
    def grpc_port(self) -> int:
        """The port the server's gRPC API listens on (a free one, bound at start)."""
        assert self.replica.grpc is not None
        return self.replica.grpc.port


@contextmanager
def serving(settings: Settings, wait_ready: bool = True) -> Iterator[Running]:
    """Serve ``settings`` (on a fresh port) until the block ends; yields once ``/ready`` is 200
    (``wait_ready=False``: once the port answers, for servers that are not meant to get ready).

    ``Running.http`` sends the API key (else the read-only key) when the settings have one.
    """
    settings = settings.replace(http=f"127.0.0.1:{free_port()}",
                                grpc="off" if settings.grpc == "off" else "127.0.0.1:0")  # Replica.grpc.port
    replica = Replica(settings)
    thread = threading.Thread(target=replica.serve, name="test-server", daemon=True)
    thread.start()
    try:
        wait_until(lambda: replica.started or not thread.is_alive(), 30, message="the HTTP port")
        assert thread.is_alive(), f"the server stopped: {replica.failure!r}"
        key = settings.api_key or settings.read_only_api_key  # every request needs it, probes included
        headers = {"api-key": key} if key else None
        with httpx.Client(base_url=f"http://{settings.http}", timeout=60, headers=headers) as client:
            if wait_ready:
                wait_until(lambda: client.get("/ready").status_code == 200, 60, interval=0.1, message="/ready")
            yield Running(settings, replica, client)
    finally:
        replica.request_stop()
        thread.join(60)
        assert not thread.is_alive(), "the server did not stop"
    assert replica.failure is None, f"the projector failed: {replica.failure!r}"


def _settings(kafka_bootstrap: str, tmp: Any, **overrides: Any) -> Settings:
    return Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.api_{uuid.uuid4().hex[:10]}", data_dir=tmp / "data",
                    snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0).replace(**overrides)


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server shared by a module's tests; each test uses its own collection names."""
    with serving(_settings(kafka_bootstrap, tmp_path_factory.mktemp("server"))) as running:
        yield running


@pytest.fixture
def make_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Callable[..., Running]]:
    """Start a server with setting overrides (``api_key=...``, ``max_body_bytes=...``)."""
    with contextlib.ExitStack() as stack:
        def make(**overrides: Any) -> Running:
            settings = _settings(kafka_bootstrap, tmp_path_factory.mktemp("server"), **overrides)
            return stack.enter_context(serving(settings))

        yield make


@pytest.fixture(scope="module")
def clients(server: Running) -> Iterator[tuple[QdrantClient, QdrantClient]]:
    """qdrant-client on the module's server, and qdrant-client's local mode (Qdrant's behaviour, in
    process), for differential tests: the same calls on both, the answers compared."""
    ours = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    local = QdrantClient(":memory:")
    yield ours, local
    ours.close()
    local.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def end_offset(settings: Settings, topic: str | None = None) -> int:
    """The sum of the end offsets of ``topic``'s partitions (the events topic by default)."""
    topic = topic or settings.topic
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return sum(consumer.end_offsets(tps).values()) if tps else 0
    finally:
        consumer.close()


@contextmanager
def held_projector(running: Running) -> Iterator[threading.Event]:
    """The projector applies nothing until the yielded event is set (set on exit in any case)."""
    projector = running.replica.projector
    original = projector.process
    gate = threading.Event()

    def gated(*args: Any, **kwargs: Any) -> None:
        gate.wait(120)
        original(*args, **kwargs)

    with patch.object(projector, "process", gated):
        try:
            yield gate
        finally:
            gate.set()
