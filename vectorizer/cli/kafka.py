"""``vectorizer kafka start|stop|status``: the local single-node broker."""

from __future__ import annotations

import typer

from infra.errors import BrokerError
from infra.kafka.launcher import LocalBroker, NodeSpec
from infra.settings import Settings
from vectorizer.cli.context import cli_context, fail

app = typer.Typer(help="Run a local single-node Kafka broker (KRaft, jars from Maven Central).",
                  no_args_is_help=True)


def local_broker(settings: Settings) -> LocalBroker:
    """The broker whose files live in ``<data dir>/kafka``, listening where the settings say."""
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise BrokerError(f"the local broker listens on 127.0.0.1 only, not {host!r}")
    port_n = int(port)
    node = NodeSpec(port=port_n, controller_port=port_n + 1, voters=f"1@127.0.0.1:{port_n + 1}")
    return LocalBroker(settings.data_dir / "kafka", settings.cache_dir, node)


@app.command()
def start(ctx: typer.Context) -> None:
    """Fetch the jars once, format storage on first start, start the broker and wait until it answers."""
    c = cli_context(ctx)
    broker = local_broker(c.settings)
    try:
        seconds = broker.start()
    except BrokerError as exc:
        raise fail(str(exc)) from None
    c.emit({"bootstrap": broker.bootstrap, "pid": broker.pid(), "ready_seconds": round(seconds, 2)},
           f"Kafka broker ready on {broker.bootstrap} (pid {broker.pid()}, {seconds:.1f}s); "
           f"data in {broker.home}")


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the local broker (SIGTERM, then SIGKILL after 30 s)."""
    c = cli_context(ctx)
    stopped = local_broker(c.settings).stop()
    c.emit({"stopped": stopped}, "Kafka broker stopped" if stopped else "no local broker was running")


@app.command()
def status(ctx: typer.Context) -> None:
    """Is the local broker running and answering?"""
    c = cli_context(ctx)
    st = local_broker(c.settings).status()
    c.emit(st, f"running={st['running']} answers={st['answers']} pid={st['pid']} "
               f"bootstrap={st['bootstrap']} home={st['home']}")
    if not st["answers"]:
        raise typer.Exit(1)
