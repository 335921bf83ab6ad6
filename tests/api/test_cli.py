"""The producer-side CLI against a real server: create, upsert (.npy and .jsonl), search, delete, list, info."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from tests.api.conftest import Running, unique
from vectorizer.cli import app


def _cli(server: Running, *args: str) -> Any:
    s = server.settings
    result = CliRunner().invoke(app, ["--kafka-bootstrap", s.kafka_bootstrap, "--topic", s.topic, "--data-dir",
                                      str(s.data_dir), "--http", s.http, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _applied(server: Running, token: str, name: str) -> None:
    answer = server.http.get(f"/collections/{name}", params={"consistency": token, "timeout": 30})
    assert answer.status_code == 200, answer.text


def test_cli_round_trip(server: Running, tmp_path: Path) -> None:
    name = unique("cli")
    created = _cli(server, "collections", "create", name, "--dim", "3", "--metric", "l2")
    vectors = np.array([[0, 0, 0], [1, 0, 0], [0, 5, 0], [9, 9, 9]], np.float32)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.json").write_text(json.dumps([10, 11, 12, 13]))
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"n": i}) for i in range(4)))
    upserted = _cli(server, "upsert", name, str(tmp_path / "v.npy"), "--ids", str(tmp_path / "ids.json"),
                    "--payloads", str(tmp_path / "p.jsonl"))
    assert upserted["vectors"] == 4 and created["collection"] == name
    (tmp_path / "more.jsonl").write_text(json.dumps({"id": "extra", "vector": [1, 1, 0], "payload": {"n": 9}}))
    more = _cli(server, "upsert", name, str(tmp_path / "more.jsonl"))
    _applied(server, more["write_token"], name)

    hits = _cli(server, "search", name, "--vector", "[0.9, 0.1, 0]", "-k", "2")
    assert [h["id"] for h in hits] == [11, "extra"]
    assert hits[0]["payload"] == {"n": 1}
    filtered = _cli(server, "search", name, "--vector", "[0.9, 0.1, 0]", "-k", "2", "--filter",
                    json.dumps({"must": [{"key": "n", "range": {"gte": 2}}]}))
    assert [h["id"] for h in filtered] == ["extra", 12]

    deleted = _cli(server, "delete", name, "11", "extra")
    _applied(server, deleted["write_token"], name)
    assert [h["id"] for h in _cli(server, "search", name, "--vector", "[0.9, 0.1, 0]", "-k", "1")] == [10]
    assert {"name": name, "dimension": 3, "metric": "l2", "kind": "dynamic", "points": 3} in _cli(
        server, "collections", "list")
    assert _cli(server, "collections", "info", name)["points"] == 3


def test_status_counts_only_records_still_to_apply(server: Running) -> None:
    """A transaction's commit marker takes an offset but is no record: an idle projection has lag 0."""
    from producers import VectorProducer

    name = unique("status")
    with VectorProducer(server.settings) as producer:
        producer.create_collection(name, 2)
        with producer.transaction():  # ends with a commit marker at the log end
            token = producer.upsert(name, [1, 2], [[1, 0], [0, 1]])
    _applied(server, str(token), name)
    status = _cli(server, "status")
    (row,) = [r for r in status["collections"] if r["collection"] == name]
    assert row["count"] == 2 and row["lag"] == 0
    assert row["log_end"] > row["applied_offset"] + 1, "the marker is there, and is not counted"
