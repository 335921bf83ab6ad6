"""``vectorizer up`` and ``down``: the whole product on localhost, and stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import typer

from infra.errors import BrokerError
from infra.kafka.clients import connection
from infra.kafka.launcher import broker_answers
from infra.settings import ENV_PREFIX, Settings
from vectorizer.cli.context import cli_context, fail
from vectorizer.cli.kafka import local_broker
from vectorizer.datadir import hold


def _server_pid_file(settings: Settings) -> Path:
    return settings.data_dir / "server.pid"


def up(ctx: typer.Context) -> None:
    """Start a local broker unless the configured one answers, then serve; Ctrl-C stops all.

    Holds the data directory's lock from before the broker starts until everything stopped.
    Turns on ``read_your_writes`` (a write without ``wait`` waits until it is applied) unless
    ``VECTORIZER_READ_YOUR_WRITES`` says otherwise: one server serves what it was just sent.
    """
    settings = cli_context(ctx).settings
    if not os.environ.get(ENV_PREFIX + "READ_YOUR_WRITES"):
        settings = settings.replace(read_your_writes=True)
    with hold(settings.data_dir, "vectorizer up"):
        _up(settings)


def _up(settings: Settings) -> None:
    broker = None
    if broker_answers(settings.kafka_bootstrap, timeout=3.0, connection=connection(settings)):
        typer.echo(f"using the Kafka broker at {settings.kafka_bootstrap}")
    else:
        broker = local_broker(settings)
        try:
            seconds = broker.start()
        except BrokerError as exc:
            raise fail(str(exc)) from None
        typer.echo(f"Kafka broker ready on {broker.bootstrap} in {seconds:.1f}s (data in {broker.home})")
    pid_file = _server_pid_file(settings)
    pid_file.write_text(str(os.getpid()))
    try:
        _serve_until_stopped(settings)
    finally:
        pid_file.unlink(missing_ok=True)
        if broker is not None:
            broker.stop()
            typer.echo("Kafka broker stopped")


def _serve_until_stopped(settings: Settings) -> None:
    from vectorizer.api.server import run_server

    run_server(settings)


def down(ctx: typer.Context) -> None:
    """Stop what ``up`` started: the server (SIGTERM) and the local broker."""
    c = cli_context(ctx)
    pid_file = _server_pid_file(c.settings)
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        typer.echo("server stopping")
    stopped = local_broker(c.settings).stop()
    typer.echo("Kafka broker stopped" if stopped else "no local broker was running")
