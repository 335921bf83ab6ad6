"""CLI edges: ``--version`` alone, an unreachable broker in every command, finding the catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from producers import VectorProducer
from projections.catalog.store import Catalog
from tests.conftest import free_port
from tests.helpers import running_projector
from vectorizer import __version__
from vectorizer.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_version_alone_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output.strip()) == (0, __version__), result.output


# Every command that talks to Kafka, given a broker address where nothing listens (``project`` holds the
# data directory's lock, so ``replay`` rebuilds into another one).
KAFKA_COMMANDS = [
    ["status"], ["collections", "create", "c", "--dim", "2"], ["collections", "delete", "c"],
    ["upsert", "c", "points.jsonl"], ["delete", "c", "1"], ["project"], ["replay", "--data-dir", "rebuild"],
    ["verify"], ["repair"], ["backup", "bk"], ["snapshot"],
    ["workspace", "sync", str(ROOT / "vectorize-workspace.yml")],
]


def test_an_unreachable_broker_ends_every_command_in_one_line_and_exit_1(tmp_path: Path) -> None:
    """No traceback: ``error: cannot reach Kafka at …`` last on stderr, exit code 1 (after the client's timeout)."""
    data_dir = tmp_path / "data"
    catalog = Catalog(f"sqlite:///{data_dir / 'catalog.db'}", "default", "vectorizer.events")
    catalog.import_rows([], [], {0: 3})  # a position to replay up to: verify, backup, snapshot read the log
    catalog.close()
    (tmp_path / "points.jsonl").write_text(json.dumps({"id": 1, "vector": [1.0, 2.0]}) + "\n")
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECTORIZER_")}
    env.update(VECTORIZER_KAFKA_BOOTSTRAP=bootstrap, VECTORIZER_DATA_DIR=str(data_dir),
               VECTORIZER_HTTP=f"127.0.0.1:{free_port()}")
    procs = [(args, subprocess.Popen([sys.executable, "-m", "vectorizer", *args], cwd=tmp_path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for args in KAFKA_COMMANDS]  # in parallel: each waits for the Kafka client's bootstrap timeout
    failures = []
    for args, proc in procs:
        out, err = proc.communicate(timeout=180)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if (proc.returncode != 1 or "Traceback" in err
                or not last.startswith(f"error: cannot reach Kafka at {bootstrap}")):
            failures.append(f"vectorizer {' '.join(args)}: exit {proc.returncode}, stderr ends {err[-600:]!r}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def served_data_dir(settings: Settings) -> Settings:
    """A data directory a projector has filled with one collection."""
    with VectorProducer(settings) as p:
        p.create_collection("docs", 2, "l2")
        token = p.upsert("docs", [1], np.ones((1, 2), np.float32))
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 30)
    return settings


def test_commands_find_the_catalog_from_the_data_dir_and_never_create_one(
        served_data_dir: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = served_data_dir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for name in ("VECTORIZER_DATA_DIR", "VECTORIZER_CATALOG_URL"):
        monkeypatch.delenv(name, raising=False)
    base = ["--kafka-bootstrap", s.kafka_bootstrap, "--topic", s.topic]

    for command in (["collections", "list"], ["collections", "info", "docs"], ["status"], ["verify"],
                    ["repair"], ["backup", str(tmp_path / "bk")], ["snapshot"], ["workspace", "drop", "docs"],
                    ["workspace", "sync", str(ROOT / "vectorize-workspace.yml")]):
        result = CliRunner().invoke(app, [*base, *command])
        assert result.exit_code == 1, (command, result.output)
        assert f"error: no catalog in the data directory {elsewhere / 'data'} (no catalog.db)" in result.output, \
            (command, result.output)
        assert "--data-dir or VECTORIZER_DATA_DIR" in result.output
        assert not (elsewhere / "data").exists(), f"{command} created ./data"

    result = CliRunner().invoke(app, [*base, "--data-dir", str(s.data_dir), "--json", "collections", "list"])
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.output)] == ["docs"]
    monkeypatch.setenv("VECTORIZER_DATA_DIR", str(s.data_dir))
    result = CliRunner().invoke(app, [*base, "collections", "info", "docs"])
    assert result.exit_code == 0 and "points: 1" in result.output, result.output
    monkeypatch.delenv("VECTORIZER_DATA_DIR")

    (elsewhere / "p.jsonl").write_text(json.dumps({"id": 2, "vector": [0.0, 1.0]}) + "\n")
    result = CliRunner().invoke(app, [*base, "upsert", "--no-wait", "docs", "p.jsonl"])  # writing needs no catalog
    assert result.exit_code == 0, result.output
    # Waiting for the verdict does: without one here the answer says so at once (exit 3), never "done".
    result = CliRunner().invoke(app, [*base, "upsert", "docs", "p.jsonl"])
    assert result.exit_code == 3 and "verdict unknown: no catalog" in result.output, result.output
    assert not (elsewhere / "data").exists(), "a write created ./data"
