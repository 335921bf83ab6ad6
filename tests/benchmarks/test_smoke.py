"""The benchmark harness still works end to end (tiny size). Asserts the report's shape, never timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import ingest, report


def test_benchmark_smoke_run_produces_a_well_formed_report(kafka_bootstrap: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORIZER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setattr(ingest, "M", 8)
    monkeypatch.setattr(ingest, "EF_C", 32)
    results = tmp_path / "results"
    result = ingest.run(3000, 16, results=results, queries=50)
    ingest.publish_only(16, 2000, results=results)
    saved = json.loads((results / "ingest-3000x16.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for section, keys in {"hnswlib": ["add_items_vectors_per_s", "index_bytes", "recall_at_10"],
                          "ingest": ["vectors_per_s", "ratio_to_hnswlib"],
                          "memory": ["projector_rss_bytes", "ratio_to_index"],
                          "recovery": ["after_kill9_ready_s", "after_kill9_update_tail_ready_s",
                                       "after_kill9_unchanged_tail_ready_s",
                                       "snapshot_only_ready_s", "loaded_snapshot"],
                          "snapshot": ["bytes", "clean_stop_with_snapshot_s"],
                          "query_in_process": ["p50_ms", "p99_ms", "recall_at_10"],
                          "query_http": ["p50_ms", "p99_ms", "recall_at_10", "two_clients_qps"],
                          "replay": ["seconds"]}.items():
        for key in keys:
            assert saved[section][key] is not None, f"{section}.{key}"
    assert saved["recovery"]["loaded_snapshot"], "recovery after kill -9 started from a snapshot"
    assert 0.0 <= saved["query_in_process"]["recall_at_10"] <= 1.0
    assert saved["query_http"]["recall_at_10"] == saved["query_in_process"]["recall_at_10"], \
        "HTTP answers the same neighbours as the in-process search"
    text = report.render(results, docs=tmp_path / "docs")
    assert "## 3,000 × 16-d" in text and "| recall@10 vs exact search |" in text
    assert "| 16 | 2,000 |" in text and "over HTTP, one client" in text
    assert set(saved["query_filtered"]) == {"1%", "10%", "50%"} and "filtered query, 1% of points match" in text
    assert [c["ef"] for c in saved["ef_curve"]] == [16, 32, 64, 128, 256]
    assert all(0.0 <= c["recall_at_10"] <= 1.0 and 0.0 <= c["hnswlib"]["recall_at_10"] <= 1.0
               for c in saved["ef_curve"])
    assert "| 256 |" in text and "tail of 1,000 updates: existing points, new vectors" in text
    assert "re-upserts with unchanged vectors" in text and "`GET /health` round trip" in text
    assert saved["memory"]["idle_rss_bytes"] > 0 and saved["memory"]["hnswlib_process_rss_bytes"] > 0
    assert (tmp_path / "docs" / "img" / "ef.png").stat().st_size > 0

