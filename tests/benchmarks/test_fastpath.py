"""The fast-path benchmark still works end to end through the real broker and a real server (tiny size).
Asserts the result's shape and recall, never timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import app_time, fastpath, report


def test_fastpath_smoke_run_measures_every_ingest_and_the_queries_over_rest_and_grpc(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORIZER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    results = tmp_path / "results"
    result = fastpath.run(2000, 16, grpc=True, count=100, seconds=1.0, results=results)
    saved = json.loads((results / "fastpath-2000x16.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert (saved["m"], saved["ef_construction"], saved["ef"]) == (16, 200, 64), "the server's defaults"
    assert saved["hnswlib"]["add_items_vectors_per_s"] > 0 and saved["hnswlib"]["recall_at_10"] > 0.9
    assert list(saved["ingest"]) == ["batch", "points", "upload_points", "upload_collection", "grpc_batch"], \
        "every mode at a small n"
    for mode, measured in saved["ingest"].items():
        assert measured["interface"] == ("grpc" if mode == "grpc_batch" else "rest") and measured["batch"] == 1000
        assert measured["vectors_per_s"] > 0 and measured["ratio_to_hnswlib"] > 0, mode
    assert list(saved["query"]) == ["rest", "grpc"]
    for interface, q in saved["query"].items():
        assert q["recall_at_10"] > 0.9 and q["queries"] == 100, interface
        assert q["throughput_queries"] > 0 and q["threads"] == 4, interface
    server = saved["server"]
    assert server["settings"]["grpc"] != "off" and server["settings"]["workers"] == 1
    assert server["rss_after_ingest"]["bytes"] > 0 and server["rss_after_ingest"]["processes"] >= 1
    assert server["floor_get_health"]["p50_ms"] > 0
    text = report.render(results, docs=tmp_path / "docs")
    assert "## The client's fast path: 2,000 × 16-d through qdrant-client, REST and gRPC (issue 21)" in text
    assert "| recall@10 vs exact search |" in text and "not run" not in text
    assert text.count("`upsert(points=models.Batch(...))`") == 1, "the gRPC batch ingest shares the REST row"
    assert "`upload_collection(numpy array, parallel=2)`" in text

    rest_only = {**saved, "query": {"rest": saved["query"]["rest"]},
                 "ingest": {m: x for m, x in saved["ingest"].items() if m != "grpc_batch"}}
    grpc_cells = [line.split(" | ")[2] for line in report.fastpath_section(rest_only)
                  if line.startswith("| ") and not line.startswith(("| measure", "| `GET /health`"))]
    assert grpc_cells == ["not run"] * 7, "queries, recall, throughput and the four ingests: not run without --grpc"


def test_app_time_measures_every_request_kind_on_the_app(kafka_bootstrap: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORIZER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    measured = app_time.run(1000, 8, calls={"search": 20, "query": 20, "retrieve": 20, "upsert": 5})
    assert sorted(measured) == ["query", "retrieve", "search", "upsert"]
    assert all(ms > 0 for ms in measured.values()), measured
