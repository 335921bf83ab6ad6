"""Prometheus metrics of one server: HTTP latency per route, and the projection's state.

Each app owns its :class:`~prometheus_client.CollectorRegistry` (several apps may live in
one process, as in tests). Projection figures are read at scrape time, not pushed.

Beside Vectorizer's own ``vectorizer_*`` families, the families of Qdrant's ``/metrics``
(``src/common/metrics.rs``) whose meaning this server shares carry Qdrant's names and labels,
so Qdrant dashboards work: ``app_info``, ``collections_total``, ``collections_vector_total``,
``collection_points``, ``collection_vectors``, ``cluster_enabled``, and the ``rest_responses_*``
families by ``method``, ``endpoint`` (the route template) and ``status`` (timings of 200s only,
as Qdrant). ``rest_responses_fail_total`` (4xx and 5xx answers) is from earlier Qdrant releases.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers import snapshots
from consumers.timings import Durations
from vectorizer import __version__
from vectorizer.api.reader import ProjectionReader
from vectorizer.api.request_ids import HEADER, REQUEST_ID, request_id

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REQUEST_ID_HEADER = HEADER.encode()
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


#: The last integrity check's result (``{ok, problems, seconds, finished}``), or ``None`` before the first.
LastVerify = Callable[[], Mapping[str, Any] | None]


class Metrics:
    """One server's metrics; also what ``/telemetry`` reports of it (``instance_id``, ``startup``,
    ``requests``). ``last_verify`` reads the last ``POST /vectorizer/verify`` result at scrape time."""

    def __init__(self, projection: ProjectionReader, last_verify: LastVerify = lambda: None) -> None:
        self.instance_id = str(uuid.uuid4())  # Qdrant's telemetry id: one per process
        self.startup = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self.registry = CollectorRegistry()
        self.latency = Histogram("vectorizer_http_request_duration_seconds", "HTTP request latency by route",
                                 ("method", "route", "status"), registry=self.registry, buckets=BUCKETS)
        labels = ("method", "endpoint", "status")
        self.responses = Counter("rest_responses", "total number of responses", labels, registry=self.registry)
        self.failures = Counter("rest_responses_fail", "total number of error responses (4xx, 5xx)", labels,
                                registry=self.registry)
        self.durations = Histogram("rest_responses_duration_seconds", "response duration histogram", labels,
                                   registry=self.registry, buckets=BUCKETS)
        self.requests = RequestStats()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        self.registry.register(ProjectionCollector(projection))
        self.registry.register(VerifyCollector(last_verify))
        self.registry.register(self.requests)

    def observe(self, method: str, template: str, status: int, seconds: float) -> None:
        """One answered request: Vectorizer's latency histogram and Qdrant's ``rest_responses_*``."""
        self.latency.labels(method, template, str(status)).observe(seconds)
        self.responses.labels(method, template, str(status)).inc()
        if status >= 400:
            self.failures.labels(method, template, str(status)).inc()
        if status == 200:
            self.durations.labels(method, template, "200").observe(seconds)
        self.requests.add(f"{method} {template}", status, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def latency_buckets(self, groups: Mapping[str, Callable[[str, str], bool]]) -> dict[str, list[float]]:
        """Cumulative counts of ``vectorizer_http_request_duration_seconds`` per bucket of
        :data:`BUCKETS` (and ``+Inf`` last), summed over the routes each group selects (by method and
        route template); answers with status 2xx only. For the dashboard's p50/p95/p99 charts,
        which difference two reads (as Prometheus' ``histogram_quantile`` over a ``rate``)."""
        out = {name: [0.0] * (len(BUCKETS) + 1) for name in groups}
        for family in self.latency.collect():
            for sample in family.samples:
                if not sample.name.endswith("_bucket") or not sample.labels.get("status", "").startswith("2"):
                    continue
                le = sample.labels["le"]
                index = len(BUCKETS) if le == "+Inf" else BUCKETS.index(float(le))
                for name, selects in groups.items():
                    if selects(sample.labels["method"], sample.labels["route"]):
                        out[name][index] += sample.value
        return out


@dataclass
class _Durations:
    count: int = 0
    total: float = 0.0
    least: float = float("inf")
    most: float = 0.0


class RequestStats(Collector):
    """Count and durations per ``"METHOD template"`` and status: Qdrant's telemetry
    ``requests.rest.responses`` and its ``rest_responses_{avg,min,max}_duration_seconds`` gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, int], _Durations] = {}

    def add(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            d = self._stats.setdefault((endpoint, status), _Durations())
            d.count, d.total = d.count + 1, d.total + seconds
            d.least, d.most = min(d.least, seconds), max(d.most, seconds)

    def _copy(self) -> dict[tuple[str, int], _Durations]:
        with self._lock:
            return {key: _Durations(d.count, d.total, d.least, d.most) for key, d in self._stats.items()}

    def telemetry(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{"GET /collections": {"200": {count, avg_duration_micros, ...}}}`` (Qdrant's
        ``OperationDurationStatistics``; ``fail_count`` is not filled: the status says it)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (endpoint, status), d in sorted(self._copy().items()):
            out.setdefault(endpoint, {})[str(status)] = {
                "count": d.count, "avg_duration_micros": d.total / d.count * 1e6,
                "min_duration_micros": d.least * 1e6, "max_duration_micros": d.most * 1e6,
                "total_duration_micros": int(d.total * 1e6)}
        return out

    def collect(self) -> Iterator[Metric]:
        families = {name: GaugeMetricFamily(f"rest_responses_{name}_duration_seconds", f"{doc} response duration",
                                            labels=["method", "endpoint", "status"])
                    for name, doc in (("avg", "average"), ("min", "minimum"), ("max", "maximum"))}
        for (endpoint, status), d in sorted(self._copy().items()):
            if status != 200:  # as Qdrant: timings of successful answers only
                continue
            method, _, template = endpoint.partition(" ")
            labels = [method, template, str(status)]
            families["avg"].add_metric(labels, d.total / d.count)
            families["min"].add_metric(labels, d.least)
            families["max"].add_metric(labels, d.most)
        yield from families.values()


class ProjectionCollector(Collector):
    """Events applied, offsets and lag (records, seconds) per partition, apply latency, snapshots,
    points per collection."""

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
        yield _histogram("vectorizer_snapshots_duration_seconds", "How long snapshots took, until durable",
                         stats.snapshot_durations)
        yield _gauge("vectorizer_snapshot_failing", "1 while the last snapshot attempt failed",
                     float(stats.last_snapshot_error is not None))
        yield _counter("vectorizer_catalog_failures", "Catalog commits that failed and were retried",
                       stats.catalog_failures)
        yield _gauge("vectorizer_ready", "1 once recovery caught up with the log", float(p.serving()))
        yield _per_partition("vectorizer_applied_offset", "Last offset applied", p.positions())
        yield _per_partition("vectorizer_log_end_offset", "Log end offset last seen", dict(stats.log_end))
        lag = p.lag()
        yield _per_partition("vectorizer_lag_records", "Records between the read position and the log end", lag)
        yield _per_partition("vectorizer_lag_seconds", "0 when caught up, else now minus the Kafka timestamp of "
                             "the last record applied", lag_seconds(lag, dict(stats.applied_timestamps), time.time()))
        yield _histogram("vectorizer_apply_latency_seconds", "From a record's Kafka timestamp to the moment "
                         "readers see it (records applied once ready)", stats.apply_latency)
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
        # Qdrant's families of the same meaning, with its names and labels.
        qdrant_points = GaugeMetricFamily("collection_points", "approximate amount of points per collection",
                                          labels=["id"])
        by_name = GaugeMetricFamily("collection_vectors", "amount of vectors grouped by vector name",
                                    labels=["collection", "vector"])
        total_vectors = 0
        collections = sorted(p.collections().items())
        for name, coll in collections:
            count = coll.count()
            points.add_metric([name], count)
            qdrant_points.add_metric([name], count)
            with coll.lock.read():
                counts = [(vector, len(index)) for vector, index in coll.dense_spaces()]
            for vector, n in counts:
                by_name.add_metric([name, vector], n)
                total_vectors += n
        yield points
        yield _gauge("app_info", "information about the server", 1.0, {"name": "vectorizer", "version": __version__})
        yield _gauge("collections_total", "number of collections", len(collections))
        yield _gauge("collections_vector_total", "total number of vectors in all collections", total_vectors)
        yield qdrant_points
        yield by_name
        yield _gauge("cluster_enabled", "is cluster support enabled", 0.0)


class VerifyCollector(Collector):
    """The last integrity check (``POST /vectorizer/verify``): nothing until one ran."""

    def __init__(self, last_verify: LastVerify) -> None:
        self.last_verify = last_verify

    def collect(self) -> Iterator[Metric]:
        result = self.last_verify()
        if not result:
            return
        yield _gauge("vectorizer_verify_ok", "1 when the last integrity check found no problem", float(bool(
            result.get("ok"))))
        yield _gauge("vectorizer_verify_problems", "Problems the last integrity check found",
                     float(len(result.get("problems") or ())))
        seconds = result.get("seconds")
        if isinstance(seconds, (int, float)):  # absent or null: not known
            yield _gauge("vectorizer_verify_duration_seconds", "How long the last integrity check took", seconds)
        finished = result.get("finished")  # Unix time
        if isinstance(finished, (int, float)):
            yield _gauge("vectorizer_verify_last_timestamp_seconds", "When the last integrity check finished "
                         "(Unix time)", finished)


def lag_seconds(lag: Mapping[int, int], applied_at: Mapping[int, float], now: float) -> dict[int, float]:
    """Per partition: 0 when nothing is left to read, else how old the last applied record is
    (``now`` minus its Kafka timestamp). A partition behind with nothing applied yet has no figure."""
    out = {}
    for partition, records in lag.items():
        if records == 0:
            out[partition] = 0.0
        elif partition in applied_at:
            out[partition] = max(0.0, now - applied_at[partition])
    return out


def _histogram(name: str, doc: str, durations: Durations) -> Metric:
    view = durations.copy()
    family = HistogramMetricFamily(name, doc, labels=[])
    family.add_metric([], view.cumulative(), view.total)
    return family


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> Metric:
    if not labels:
        return GaugeMetricFamily(name, doc, value=value)
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _per_partition(name: str, doc: str, values: Mapping[int, float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["partition"])
    for partition, value in sorted(values.items()):
        family.add_metric([str(partition)], value)
    return family


class LatencyMiddleware:
    """Times every HTTP request; labels it with its route template, never the raw path.

    Also stamps ``scope["state"]["started"]``, from which answers compute their ``time``, and gives
    the request its id (``vectorizer.api.request_ids``): :data:`REQUEST_ID` for the rest of the app,
    echoed in the answer's ``x-request-id`` header.
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
        rid = request_id(next((value for name, value in scope["headers"] if name == _REQUEST_ID_HEADER), None))
        echoed = (_REQUEST_ID_HEADER, rid.encode())

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            REQUEST_ID.reset(token)
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status["code"], time.perf_counter() - started)
