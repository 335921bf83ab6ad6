"""The client's fast path (issue 21): queries and ingest through qdrant-client, REST and gRPC, against hnswlib alone.

    python -m benchmarks.fastpath --n 100000 --dim 128 [--grpc] [--workers N] [--ingest batch points ...]

``vectorizer serve`` runs in its own process (``benchmarks.recovery.start_server``): its gRPC API on a
free port under ``--grpc`` (``VECTORIZER_GRPC``; off otherwise), ``--workers`` serving processes
(``VECTORIZER_WORKERS``, 1 by default). Measured, each ingest in its own fresh cosine collection
created with the server's default HNSW settings (checked to be what the baseline uses:
``projections.collection.VectorSpec``'s defaults):

1. hnswlib alone, before the server starts: ``add_items`` of the same vectors (hnswlib's default
   ``num_threads``), k=10 queries one at a time on one thread at the same ef, recall@10 vs exact search.
2. Ingest through qdrant-client, from the first request (the vectors' conversion from numpy included)
   to ``count(exact=True) == n`` (applied: searchable), by the ``--ingest`` modes (``INGESTS``). With
   several workers, each applying the whole log, the end is when ``CONFIRMATIONS`` per worker
   consecutive counts, each on a new connection (the kernel picks its worker), all answered n: no
   request can name a worker, so "every worker" is that likely, not certain. The first mode's
   collection answers the queries; each collection is deleted once measured.
3. Queries through qdrant-client ``query_points`` (k=10, default search params), REST and, with
   ``--grpc``, gRPC: one client, ``WARM_UP`` queries (base rows, not the timed queries), then the
   ``--queries`` queries timed one by one (p50 / p95 / p99, recall@10); then ``THREADS`` threads,
   each with its own client, querying for ``--seconds`` from a common start (queries per second).
4. ``GET /health`` round trips (``http_floor``), and the resident memory of the server's processes
   (the parent and every child, summed) idle, after the first ingest, and after the queries.

qdrant-client 1.20 has no ``search`` method any more: ``query_points`` is what it sends for a search.
Writes ``benchmarks/results/fastpath-<n>x<dim>.json`` (``-workers<N>`` appended with more than one).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from qdrant_client import QdrantClient, models

from benchmarks.data import dataset
from benchmarks.ingest import (
    EF,
    EF_C,
    M,
    baseline_hnswlib,
    commit,
    ensure_broker,
    free_port,
    http_floor,
    machine,
    percentiles,
    recall,
)
from benchmarks.recovery import start_server, stop_server, wait_ready
from infra.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
K = 10
BATCH = 1000  # points per request, every ingest mode
PARALLEL = 2  # upload_points / upload_collection worker processes
THREADS = 4
WARM_UP = 100
CONFIRMATIONS = 8  # per worker, with several: the chance one lagging worker is never asked is 2 ** -8 at 2 workers
# name -> (qdrant-client's call, interface, worker processes); "grpc_batch" only under --grpc.
INGESTS = {"batch": ("upsert(points=models.Batch(...))", "rest", 1),
           "points": ("upsert(points=[models.PointStruct(...)])", "rest", 1),
           "upload_points": (f"upload_points(points, parallel={PARALLEL})", "rest", PARALLEL),
           "upload_collection": (f"upload_collection(numpy array, parallel={PARALLEL})", "rest", PARALLEL),
           "grpc_batch": ("upsert(points=models.Batch(...))", "grpc", 1)}
ALL_AT_MOST = 100_000  # every ingest mode by default up to this n; above it, "batch" alone
NOTE = ("the 2-core development VM: the broker, the server and the benchmark's clients share the two cores, "
        "and other work may have run beside them; the figures are indicative")


class Server:
    """Where the server under test answers, and its process."""

    def __init__(self, proc: subprocess.Popen[bytes], settings: Settings) -> None:
        self.proc, self.http_port, self.workers = proc, settings.http_port, settings.workers
        self.grpc_port = None if settings.grpc == "off" else int(settings.grpc.rpartition(":")[2])

    def client(self, grpc: bool = False) -> QdrantClient:
        """A new qdrant-client for REST, or for gRPC (``prefer_grpc``: everything it can send over gRPC)."""
        if grpc:
            if self.grpc_port is None:
                raise ValueError("this server was started without gRPC")
            return QdrantClient(host="127.0.0.1", port=self.http_port, grpc_port=self.grpc_port, prefer_grpc=True,
                                timeout=600, check_compatibility=False)
        return QdrantClient(url=f"http://127.0.0.1:{self.http_port}", prefer_grpc=False, timeout=600,
                            check_compatibility=False)

    def processes(self) -> list[psutil.Process]:
        """The server's processes: the parent (worker 0) and all its children."""
        parent = psutil.Process(self.proc.pid)
        return [parent, *parent.children(recursive=True)]

    def rss(self) -> dict[str, int]:
        """Resident memory of the server's processes, summed."""
        processes = self.processes()
        total = 0
        for p in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return {"bytes": total, "processes": len(processes)}

    def listening(self) -> int:
        """How many of the server's processes listen on its HTTP port (one per worker once all are up)."""
        count = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                count += any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.http_port
                             for c in p.net_connections(kind="tcp"))
        return count

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}")


# Ingest -----------------------------------------------------------------------------------
def _create(client: QdrantClient, name: str, dim: int) -> None:
    """A cosine collection with the server's default HNSW settings, which must be the baseline's."""
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    hnsw = client.get_collection(name).config.hnsw_config
    if (hnsw.m, hnsw.ef_construct) != (M, EF_C):
        raise RuntimeError(f"the server's default HNSW settings (m {hnsw.m}, ef_construct {hnsw.ef_construct}) are "
                           f"not the baseline's (m {M}, ef_construct {EF_C})")


def _send(mode: str, client: QdrantClient, name: str, base: np.ndarray) -> None:
    """Every point of ``base`` (ids 0..n-1) sent by ``mode``, not waiting for the projection."""
    n = len(base)
    if mode == "upload_points":
        client.upload_points(name, (models.PointStruct(id=i, vector=row.tolist()) for i, row in enumerate(base)),
                             batch_size=BATCH, parallel=PARALLEL)
        return
    if mode == "upload_collection":
        client.upload_collection(name, vectors=base, ids=range(n), batch_size=BATCH, parallel=PARALLEL)
        return
    for s in range(0, n, BATCH):
        e = min(n, s + BATCH)
        rows = base[s:e].tolist()
        points: models.Batch | list[models.PointStruct] = (
            [models.PointStruct(id=i, vector=v) for i, v in zip(range(s, e), rows, strict=True)]
            if mode == "points" else models.Batch(ids=list(range(s, e)), vectors=rows))
        client.upsert(name, points=points, wait=False)


def ingest(server: Server, mode: str, name: str, base: np.ndarray, timeout: float = 7200) -> dict[str, Any]:
    """Ingest ``base`` into a new collection ``name`` by ``mode``: timed from the first request to the
    exact count equal to n (every point applied, so searchable)."""
    n, dim = base.shape
    with contextlib.closing(server.client(grpc=mode == "grpc_batch")) as client:
        _create(client, name, dim)
        gc.collect()
        started = time.perf_counter()
        _send(mode, client, name, base)
        sent_s = time.perf_counter() - started
        deadline = time.monotonic() + timeout
        while client.count(name, exact=True).count < n:
            server.alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{mode}: {n:,} points not searchable within {timeout:.0f} s")
            time.sleep(0.05)
        one_s = time.perf_counter() - started
        _on_every_worker(server, lambda answer: answer.status_code == 200 and answer.json()["result"]["count"] == n,
                         "POST", f"/collections/{name}/points/count", deadline, {"exact": True})
        seconds = time.perf_counter() - started
    call, interface, processes = INGESTS[mode]
    return {"call": call, "interface": interface, "batch": BATCH, "processes": processes, "seconds": seconds,
            "vectors_per_s": n / seconds, "sent_s": sent_s, "searchable_on_the_sending_connection_s": one_s}


def _on_every_worker(server: Server, check: Callable[[httpx.Response], bool], method: str, path: str,
                     deadline: float, body: dict[str, Any] | None = None) -> None:
    """Until CONFIRMATIONS x workers requests in a row, each on a new connection (the kernel picks its
    worker), pass ``check``; with one worker, one such request."""
    agreed, needed = 0, CONFIRMATIONS * server.workers if server.workers > 1 else 1
    while agreed < needed:
        server.alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{method} {path}: not answered as expected by every worker in time")
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=60) as fresh:
            try:
                passed = check(fresh.request(method, path, json=body))
            except httpx.HTTPError:
                passed = False
        agreed = agreed + 1 if passed else 0
        if not passed:
            time.sleep(0.05)


def wait_every_worker_ready(server: Server, http: httpx.Client, timeout: float = 3600) -> None:
    """Until the server is ready (``wait_ready``) and, with several workers, each listens on the HTTP port
    and answers ``/ready`` (a worker binds its port before it has caught up with the log)."""
    wait_ready(http, server.proc, timeout)
    if server.workers == 1:
        return
    deadline = time.monotonic() + timeout
    while server.listening() < server.workers:
        server.alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.listening()} of {server.workers} workers listening")
        time.sleep(0.05)
    _on_every_worker(server, lambda answer: answer.status_code == 200, "GET", "/ready", deadline)


# Queries ----------------------------------------------------------------------------------
def _ids(client: QdrantClient, name: str, q: list[float]) -> list[int]:
    return [int(p.id) for p in client.query_points(name, query=q, limit=K).points]


def queries(server: Server, grpc: bool, name: str, warm: np.ndarray, qs: np.ndarray, truth: np.ndarray,
            seconds: float) -> dict[str, Any]:
    """One client: latency percentiles and recall@10; then THREADS clients for ``seconds``: queries per second."""
    bodies = qs.tolist()
    with contextlib.closing(server.client(grpc)) as client:
        for q in warm.tolist():
            _ids(client, name, q)
        lat, found = [], []
        for q in bodies:
            t0 = time.perf_counter()
            found.append(_ids(client, name, q))
            lat.append(time.perf_counter() - t0)
    answered, elapsed = _throughput(server, grpc, name, bodies, seconds)
    return {**percentiles(lat), "recall_at_10": recall(found, truth), "queries": len(bodies),
            "threads": THREADS, "throughput_queries": answered, "throughput_s": elapsed,
            "qps_4_threads": answered / elapsed}


def _throughput(server: Server, grpc: bool, name: str, bodies: list[list[float]],
                seconds: float) -> tuple[int, float]:
    """THREADS threads, each its own client, warm before a common start, querying until ``seconds`` have
    passed: (queries answered, seconds from the start to the last answer)."""
    t0 = [0.0]  # the start: taken when the last party reaches the barrier, before any is released
    start = threading.Barrier(THREADS + 1, action=lambda: t0.__setitem__(0, time.perf_counter()))
    counts, ends = [0] * THREADS, [0.0] * THREADS
    failures: list[BaseException] = []

    def client_thread(t: int) -> None:
        try:
            with contextlib.closing(server.client(grpc)) as own:
                _ids(own, name, bodies[t])  # connected and warm before the clock starts
                start.wait()
                i = t
                while time.perf_counter() - t0[0] < seconds:
                    _ids(own, name, bodies[i % len(bodies)])
                    counts[t] += 1
                    i += THREADS
                ends[t] = time.perf_counter()  # its last answer (closing the client is not timed)
        except BaseException as exc:  # noqa: BLE001 - raised below
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=client_thread, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed: raised below
        start.wait()
    for th in threads:
        th.join()
    if failures:
        raise failures[0]
    return sum(counts), max(ends) - t0[0]


def _wait_grpc(server: Server, timeout: float = 120) -> None:
    """Until the gRPC endpoint answers (it may open after ``/ready``)."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(server.client(grpc=True)) as client:
        while True:
            server.alive()
            try:
                client.get_collections()
                return
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# The run ----------------------------------------------------------------------------------
def run(n: int, dim: int, grpc: bool = False, workers: int = 1, ingests: list[str] | None = None,
        count: int = 1000, seconds: float = 10.0, results: Path = RESULTS) -> dict[str, Any]:
    """Measure as the module docstring says; write and return the result."""
    modes = ingests or (list(INGESTS) if n <= ALL_AT_MOST else ["batch"])
    modes = [m for m in modes if grpc or m != "grpc_batch"]
    base, qs, truth = dataset(n, dim, 1000)
    qs, truth = qs[:count], truth[:count, :K]
    command = f"python -m benchmarks.fastpath --n {n} --dim {dim}" + (" --grpc" if grpc else "") \
        + (f" --workers {workers}" if workers > 1 else "") + (f" --ingest {' '.join(ingests)}" if ingests else "")
    result: dict[str, Any] = {"command": command, "code": commit(), "n": n, "dim": dim, "k": K, "m": M,
                              "ef_construction": EF_C, "ef": EF, "grpc": grpc, "workers": workers,
                              "warm_up": WARM_UP, "machine": machine(NOTE)}
    with tempfile.TemporaryDirectory(prefix="vz-fastpath-") as tmp:
        workdir = Path(tmp)
        print(f"[{n}x{dim}] baseline: hnswlib add_items + knn_query (before the server starts)", flush=True)
        result["hnswlib"], index = baseline_hnswlib(base, qs, truth, workdir)
        del index
        gc.collect()
        result["server"], result["ingest"], result["query"] = _serve(workdir, base, qs, truth, grpc, workers, modes,
                                                                     seconds)
    alone = result["hnswlib"]["add_items_vectors_per_s"]
    for measured in result["ingest"].values():
        measured["ratio_to_hnswlib"] = measured["vectors_per_s"] / alone
    result["machine"]["load_average_at_end"] = os.getloadavg()
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"fastpath-{n}x{dim}{f'-workers{workers}' if workers > 1 else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), f"wrote {path}", sep="\n", flush=True)
    return result


def _serve(workdir: Path, base: np.ndarray, qs: np.ndarray, truth: np.ndarray, grpc: bool, workers: int,
           modes: list[str], seconds: float) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The server's part of the run: (server facts, ingest by mode, queries by interface)."""
    n, dim = base.shape
    http_port, grpc_port = free_port(), free_port() if grpc else None
    settings = Settings.load().replace(topic=f"bench.fastpath.{n}x{dim}.{int(time.time())}",
                                       data_dir=workdir / "data", catalog_url="", http=f"127.0.0.1:{http_port}",
                                       grpc=f"127.0.0.1:{grpc_port}" if grpc else "off", workers=workers)
    broker = ensure_broker(settings, workdir)
    settings = settings if broker is None else settings.replace(kafka_bootstrap=broker.bootstrap)
    facts: dict[str, Any] = {"settings": {k: getattr(settings, k) for k in (
        "grpc", "workers", "snapshot_every_vectors", "snapshot_every_bytes", "snapshot_every_events",
        "snapshot_every_seconds", "segment_bytes", "poll_max_records")}}
    ingested: dict[str, Any] = {}
    answered: dict[str, Any] = {}
    proc = start_server(settings, workdir / "server.log")
    server = Server(proc, settings)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as http:
            wait_every_worker_ready(server, http)
            if grpc:
                _wait_grpc(server)
            facts["idle_rss"] = server.rss()
            for i, mode in enumerate(modes):
                name = f"bench_{mode}"
                print(f"[{n}x{dim}] ingest: {mode}", flush=True)
                ingested[mode] = ingest(server, mode, name, base)
                print(f"  {ingested[mode]['vectors_per_s']:,.0f} vectors/s", flush=True)
                if i == 0:
                    facts["rss_after_ingest"] = server.rss()
                    facts["floor_get_health"] = http_floor(http)
                    for interface in ("rest", "grpc") if grpc else ("rest",):
                        print(f"[{n}x{dim}] queries over {interface}", flush=True)
                        answered[interface] = queries(server, interface == "grpc", name, base[:WARM_UP], qs,
                                                      truth, seconds)
                        print(f"  p50 {answered[interface]['p50_ms']:.3f} ms, "
                              f"{answered[interface]['qps_4_threads']:,.0f} q/s", flush=True)
                    facts["rss_after_queries"] = server.rss()
                with contextlib.closing(server.client()) as client:
                    client.delete_collection(name)  # the next ingest's server holds nothing else
    finally:
        stop_server(proc)
        if broker is not None:
            broker.stop()
    return facts, ingested, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--grpc", action="store_true", help="also over gRPC (the server gets VECTORIZER_GRPC)")
    parser.add_argument("--workers", type=int, default=1, help="serving processes (VECTORIZER_WORKERS)")
    parser.add_argument("--ingest", nargs="+", choices=list(INGESTS), default=None,
                        help=f"ingest modes, the first holding the queries (default: all up to n={ALL_AT_MOST:,}, "
                             "else batch)")
    parser.add_argument("--queries", type=int, default=1000, help="timed one-client queries (at most 1,000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput run length")
    args = parser.parse_args()
    if not 1 <= args.queries <= 1000:
        parser.error("--queries: 1 to 1000")
    if args.ingest and "grpc_batch" in args.ingest and not args.grpc:
        parser.error("--ingest grpc_batch needs --grpc")
    run(args.n, args.dim, args.grpc, args.workers, args.ingest, args.queries, args.seconds)


if __name__ == "__main__":
    main()
