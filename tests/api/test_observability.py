"""What a Grafana user reads in ``/metrics``, through the real broker, and the dashboard built on it
(``docs/grafana/vectorizer.json``): every metric its queries name is one the server serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Running, unique
from tests.helpers import wait_until
from vectorizer.api.metrics import lag_seconds

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "vectorizer.json"
OBSERVABILITY = ROOT / "docs" / "observability.md"


def _scrape(server: Running) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` of one ``/metrics`` scrape."""
    r = server.http.get("/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _families(server: Running) -> dict[str, str]:
    """``{family name: type}`` of one scrape."""
    return {f.name: f.type for f in text_string_to_metric_families(server.http.get("/metrics").text)}


def _one(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def _upsert(server: Running, name: str, ids: range) -> None:
    points = [{"id": i, "vector": [float(i), 1.0, 0.5, 0.25]} for i in ids]
    r = server.http.put(f"/collections/{name}/points", params={"wait": "true"}, json={"points": points})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text


@pytest.fixture(scope="module")
def ingested(server: Running) -> str:
    name = unique("obs")
    r = server.http.put(f"/collections/{name}", params={"wait": "true"},
                        json={"vectors": {"size": 4, "distance": "Cosine"}})
    assert r.status_code == 200, r.text
    _upsert(server, name, range(20))
    return name


def test_lag_apply_latency_and_points_after_ingest(server: Running, ingested: str) -> None:
    before = _scrape(server)
    latency_before = _one(before, "vectorizer_apply_latency_seconds_count")
    _upsert(server, ingested, range(20, 50))
    def when_caught_up() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        samples = _scrape(server)
        return samples if set(samples["vectorizer_lag_records"].values()) == {0.0} else {}

    caught_up = wait_until(when_caught_up, 30, message="lag 0 on every partition")
    assert caught_up["vectorizer_lag_seconds"], "no lag_seconds per partition"
    assert set(caught_up["vectorizer_lag_seconds"]) == set(caught_up["vectorizer_lag_records"])
    assert set(caught_up["vectorizer_lag_seconds"].values()) == {0.0}  # caught up: 0, not the last record's age
    assert _one(caught_up, "vectorizer_collection_points", collection=ingested) == 50
    # Apply latency: one observation per record applied since (the upsert's records, at least one).
    count = _one(caught_up, "vectorizer_apply_latency_seconds_count")
    assert count > latency_before
    total = _one(caught_up, "vectorizer_apply_latency_seconds_sum")
    assert total >= 0 and total / count < 60, (total, count)  # record timestamp -> visible: seconds at most
    buckets = {dict(labels)["le"]: v for labels, v in caught_up["vectorizer_apply_latency_seconds_bucket"].items()}
    assert buckets["+Inf"] == count and list(buckets.values()) == sorted(buckets.values())  # cumulative
    types = _families(server)
    assert types["vectorizer_apply_latency_seconds"] == "histogram"
    assert types["vectorizer_snapshots_duration_seconds"] == "histogram"
    assert types["vectorizer_lag_seconds"] == "gauge"


def test_lag_seconds_is_the_age_of_the_last_applied_record_while_behind() -> None:
    assert lag_seconds({0: 0, 1: 5, 2: 3}, {0: 90.0, 1: 95.0}, now=100.0) == {0: 0.0, 1: 5.0}  # 2: nothing applied
    assert lag_seconds({0: 1}, {0: 101.0}, now=100.0) == {0: 0.0}  # a clock ahead of ours: never negative


def test_snapshot_durations_are_a_histogram(server: Running, ingested: str) -> None:
    before = _one(_scrape(server), "vectorizer_snapshots_duration_seconds_count")
    r = server.http.post("/vectorizer/snapshots")
    assert r.status_code == 200, r.text
    after = _scrape(server)
    assert _one(after, "vectorizer_snapshots_duration_seconds_count") == before + 1
    last = _one(after, "vectorizer_snapshot_duration_seconds")
    assert _one(after, "vectorizer_snapshots_duration_seconds_sum") >= last > 0


def test_verify_gauges_follow_the_last_verify(server: Running, ingested: str) -> None:
    r = server.http.post("/vectorizer/verify", params={"collection": ingested})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    samples = _scrape(server)
    assert _one(samples, "vectorizer_verify_ok") == float(result["ok"]) == 1.0, result
    assert _one(samples, "vectorizer_verify_problems") == len(result["problems"]) == 0
    assert _one(samples, "vectorizer_verify_duration_seconds") == pytest.approx(result["seconds"])
    assert _one(samples, "vectorizer_verify_last_timestamp_seconds") == pytest.approx(result["finished"])


# The dashboard -------------------------------------------------------------------------
_FUNCTIONS = {"rate", "irate", "increase", "sum", "avg", "max", "min", "count", "by", "without", "histogram_quantile",
              "le", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "time",
              "clamp_min", "clamp_max", "topk", "bottomk", "label_replace", "abs", "delta", "deriv", "vector",
              "sum_over_time", "max_over_time", "avg_over_time", "absent", "changes", "resets", "round", "scalar"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (inside braces or by/without lists), strings, durations or ``$variables``."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # dashboard variables
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in _FUNCTIONS}


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _expressions(value)]
    if isinstance(node, list):
        return [e for value in node for e in _expressions(value)]
    return []


def test_metric_names_of_promql() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le, route) (rate(x_bucket{route!~"/m.*"}[$__rate_interval])))'
                        ) == {"x_bucket"}
    assert metric_names("sum(rate(a_total[1m])) / clamp_min(b, 1)") == {"a_total", "b"}


def test_the_dashboard_reads_only_served_metrics(server: Running, ingested: str) -> None:
    server.http.post("/vectorizer/verify", params={"collection": ingested})  # the verify families exist
    served = set(_scrape(server))  # the series, as PromQL names them; a family with no sample yet counts too:
    for name, kind in _families(server).items():
        served |= {"counter": {f"{name}_total"}, "histogram": {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
                   }.get(kind, {name})
    dashboard = json.loads(DASHBOARD.read_text())
    assert any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in dashboard["templating"]["list"]), "a Prometheus datasource variable"
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    assert variables == ["label_values(vectorizer_ready, instance)"] and "vectorizer_ready" in served
    exprs = _expressions(dashboard["panels"])
    assert len(exprs) >= 12, exprs
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - served == set(), f"the dashboard reads metrics /metrics does not serve: {used - served}"
    for needed in ("vectorizer_collection_points", "vectorizer_lag_records", "vectorizer_lag_seconds",
                   "vectorizer_apply_latency_seconds_bucket", "vectorizer_vectors_applied_total",
                   "vectorizer_http_request_duration_seconds_bucket", "vectorizer_snapshot_age_seconds",
                   "vectorizer_verify_ok", "vectorizer_dead_letters_by_reason_total", "process_resident_memory_bytes"):
        assert needed in used, needed
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_observability_doc_names_every_vectorizer_family(server: Running, ingested: str) -> None:
    server.http.post("/vectorizer/verify", params={"collection": ingested})
    text = OBSERVABILITY.read_text()
    missing = [name for name in _families(server) if name.startswith("vectorizer_") and f"`{name}" not in text
               and not name.endswith("_created")]  # prometheus_client's creation times of its own families
    assert missing == [], f"docs/observability.md does not describe {missing}"
