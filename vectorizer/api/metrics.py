"""Prometheus metrics of one server: HTTP latency per route, and the projection's state.

Each app owns its :class:`~prometheus_client.CollectorRegistry` (several apps may live in
one process, as in tests). Projection figures are read at scrape time, not pushed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers import snapshots
from vectorizer.api.reader import ProjectionReader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, projection: ProjectionReader) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("vectorizer_http_request_duration_seconds", "HTTP request latency by route",
                                 ("method", "route", "status"), registry=self.registry, buckets=_BUCKETS)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        self.registry.register(ProjectionCollector(projection))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ProjectionCollector(Collector):
    """Events applied, offsets and lag per partition, snapshot age, points per collection."""

    def __init__(self, projection: ProjectionReader) -> None:
        self.projection = projection

    def collect(self) -> Iterator[Metric]:
        p = self.projection
        stats = p.stats
        yield _counter("vectorizer_events_applied", "Events applied to the projection", stats.events_applied)
        yield _counter("vectorizer_vectors_applied", "Point ids carried by applied events", stats.vectors_applied)
        yield _counter("vectorizer_dead_letters", "Records the projection refused (dead letters)", stats.dead_letters)
        by_reason = CounterMetricFamily("vectorizer_dead_letters_by_reason", "Records refused, by reason code",
                                        labels=["reason"])
        for reason, count in sorted(dict(stats.dead_letters_by_reason).items()):
            by_reason.add_metric([reason], count)
        yield by_reason
        yield _counter("vectorizer_snapshots", "Snapshots written", stats.snapshots_taken)
        yield _counter("vectorizer_snapshot_failures", "Snapshots that failed", stats.snapshot_failures)
        if stats.last_snapshot_seconds is not None:
            yield _gauge("vectorizer_snapshot_duration_seconds", "How long the last snapshot took",
                         stats.last_snapshot_seconds)
            yield _gauge("vectorizer_snapshot_stall_seconds", "How long the last snapshot held ingest (writing "
                         "what changed; the rest completes in the background)",
                         stats.last_snapshot_stall_seconds or 0.0)
            yield _gauge("vectorizer_snapshot_written_bytes", "What the last snapshot wrote (files it shares "
                         "with earlier snapshots excluded)", float(stats.last_snapshot_written_bytes or 0))
        yield _gauge("vectorizer_snapshot_failing", "1 while the last snapshot attempt failed",
                     float(stats.last_snapshot_error is not None))
        yield _counter("vectorizer_catalog_failures", "Catalog commits that failed and were retried",
                       stats.catalog_failures)
        yield _gauge("vectorizer_ready", "1 once recovery caught up with the log", float(p.serving()))
        yield _per_partition("vectorizer_applied_offset", "Last offset applied", p.positions())
        yield _per_partition("vectorizer_log_end_offset", "Log end offset last seen", dict(stats.log_end))
        yield _per_partition("vectorizer_lag_records", "Records between the read position and the log end",
                             p.lag())
        # An open transaction (a producer killed inside one, until the broker aborts it) holds the
        # last stable offset below the high watermark: 0 on every partition where nothing is held.
        held, now = dict(stats.lso_held), time.time()
        yield _per_partition("vectorizer_open_transaction_records",
                             "High watermark minus last stable offset: records read_committed readers wait for",
                             {q: held[q].open_records if q in held else 0 for q in stats.log_end})
        yield _per_partition("vectorizer_lso_held_seconds",
                             "How long the last stable offset has been held below the high watermark",
                             {q: held[q].held_seconds(now) if q in held else 0.0 for q in stats.log_end})
        try:
            age = snapshots.age_seconds(p.settings.snapshot_dir)
        except OSError:  # the snapshot directory is unreadable: the failures counter says why
            age = None
        if age is not None:
            yield _gauge("vectorizer_snapshot_age_seconds", "Age of the newest snapshot", age)
        points = GaugeMetricFamily("vectorizer_collection_points", "Points per collection", labels=["collection"])
        for name, coll in sorted(p.collections().items()):
            points.add_metric([name], coll.count())
        yield points


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _per_partition(name: str, doc: str, values: Mapping[int, float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["partition"])
    for partition, value in sorted(values.items()):
        family.add_metric([str(partition)], value)
    return family


class LatencyMiddleware:
    """Times every HTTP request; labels it with its route template, never the raw path.

    Also stamps ``scope["state"]["started"]``, from which answers compute their ``time``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started
        status = {"code": 500}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], template, str(status["code"])).observe(
                time.perf_counter() - started)
