"""Session fixtures: a real Kafka broker and a real Postgres, found in this order:

1. ``VECTORIZER_TEST_KAFKA`` / ``VECTORIZER_TEST_POSTGRES`` when set;
2. testcontainers, when a Docker engine answers;
3. Kafka: the project's own local launcher (jars from Maven Central) on free ports, so it
   never collides with a developer's broker on 9092 or a leftover test broker. Postgres: the local server
   that ``.ci/run`` starts (``postgres:postgres@127.0.0.1:5432``).

With ``CI`` set, a missing broker or Postgres fails the run; it is never skipped.
Each test gets its own topic (``topic`` fixture) and Postgres schema (``catalog_url``).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from infra.kafka.launcher import LocalBroker, NodeSpec, broker_answers
from infra.settings import Settings
from tests import reliability

ROOT = Path(__file__).resolve().parents[1]
IN_CI = bool(os.environ.get("CI"))
LOCAL_PG = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"


INFRA: list[str] = []

# Servers started by tests, in process or as subprocesses (which inherit the environment), serve
# gRPC on a free port: never Qdrant's 6334, which two servers at once (or a developer's) would share.
os.environ.setdefault("VECTORIZER_GRPC", "127.0.0.1:0")

# In CI every run tries the same examples (a new random find must not block a merge); locally
# hypothesis explores and remembers failures as usual.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    hypothesis_settings.load_profile("ci")


def _say(config: pytest.Config, line: str) -> None:
    """Record what infrastructure the run used; printed in the terminal summary (so CI logs show it)."""
    INFRA.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if INFRA:
        terminalreporter.section("infrastructure used")
        for line in INFRA:
            terminalreporter.write_line(line)
    written = reliability.dump()
    if written is not None:
        terminalreporter.write_line(f"reliability figures: {written} (render: python -m tests.reliability {written})")


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI but could not be started", pytrace=False)
    pytest.skip(f"{what} unavailable")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no Docker engine here"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("VECTORIZER_TEST_KAFKA")
    if given:
        if not broker_answers(given, timeout=10):
            _unavailable(f"Kafka at VECTORIZER_TEST_KAFKA={given}")
        _say(request.config, f"kafka: using {given} (VECTORIZER_TEST_KAFKA)")
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            bootstrap = container.get_bootstrap_server()
            _say(request.config, f"kafka: testcontainers apache/kafka:4.1.1 at {bootstrap}")
            yield bootstrap
        return
    broker = single_node(tmp_path_factory.mktemp("kafka"))
    try:
        seconds = broker.start(timeout=120)
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"local Kafka broker ({exc})")
    _say(request.config, f"kafka: local KRaft broker {broker.bootstrap} pid {broker.pid()}, "
                         f"ready in {seconds:.1f}s")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    import sqlalchemy as sa

    url = os.environ.get("VECTORIZER_TEST_POSTGRES")
    container = None
    if not url and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16", driver="psycopg").start()
        url = container.get_connection_url()
    url = url or LOCAL_PG
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(sa.text("select version()")).scalar_one()
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Postgres at {url.split('@')[-1]} ({type(exc).__name__})")
    _say(request.config, f"postgres: {url.split('@')[-1]} -> {version.split(',')[0]}")
    try:
        yield url
    finally:
        if container is not None:
            container.stop()


def single_node(home: Path) -> LocalBroker:
    """A one-node KRaft broker of its own in ``home``, on free ports (not started yet)."""
    port, controller = free_port(), free_port()
    return LocalBroker(home, Settings().cache_dir,
                       NodeSpec(port=port, controller_port=controller, voters=f"1@127.0.0.1:{controller}"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (the sockets are held until all are chosen, so none repeats)."""
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _slug(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-zA-Z0-9]+", "_", request.node.name).strip("_").lower()[:40]
    return f"{name}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A fresh topic name for this test (created by whoever first uses it)."""
    return f"t.{_slug(request)}"


@pytest.fixture
def pg_schema_url(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh schema, dropped after the test."""
    import sqlalchemy as sa

    schema = f"s_{_slug(request)}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with contextlib.suppress(Exception), engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once per catalog backend; both are mandatory in CI."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def settings(kafka_bootstrap: str, topic: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own topic and data directory, small snapshot thresholds."""
    return Settings(kafka_bootstrap=kafka_bootstrap, topic=topic, data_dir=tmp_path / "data",
                    snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
