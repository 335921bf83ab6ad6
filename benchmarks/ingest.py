"""Publish, ingest, memory, recovery, replay and query benchmarks against hnswlib alone.

    python -m benchmarks.ingest --n 200000 --dim 128

Every figure has its baseline measured in the same run: hnswlib ``add_items`` and
``knn_query`` on the same vectors with the same parameters, exact search for recall.
Writes ``benchmarks/results/ingest-<n>x<dim>.json``; ``benchmarks.report`` turns results
into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hnswlib
import httpx
import numpy as np
import psutil

from benchmarks.data import dataset
from infra.kafka.launcher import LocalBroker, broker_answers
from infra.settings import Settings
from producers import VectorProducer
from projections.catalog.store import Catalog
from projections.collection import VectorSpec
from projections.filters import Filter
from schemas.ids import PointId

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
_DEFAULTS = VectorSpec(0, "cosine")  # what a collection created without HNSW settings gets
M, EF_C, EF = _DEFAULTS.m, _DEFAULTS.ef_construction, _DEFAULTS.ef
BATCH = 1000


def percentiles(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99))}


def recall(found: Sequence[Sequence[object]], truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=True)]))


def serve_until_ready(settings: Settings) -> tuple:  # type: ignore[type-arg]
    """Start the real server (projector + HTTP) in a thread; return it once /ready is 200, with the seconds."""
    from vectorizer.api.server import Replica

    serving = settings.replace(http=f"127.0.0.1:{free_port()}")
    t = time.monotonic()
    replica = Replica(serving)
    server = threading.Thread(target=replica.serve, daemon=True)
    server.start()
    with httpx.Client(base_url=f"http://{serving.http}", timeout=60) as http:
        deadline = time.monotonic() + 3600
        while True:
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready: {replica.failure!r}")
            try:
                if http.get("/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    return replica, server, time.monotonic() - t


def filtered_queries(coll, base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """Latency and recall@10 of filtered search (has_id over a random subset) vs exact search over that subset."""
    from benchmarks.data import exact_topk
    from projections.filters import parse_filter

    out = {}
    rng = np.random.default_rng(7)
    n = len(base)
    for share in (0.01, 0.10, 0.50):
        allowed = np.sort(rng.choice(n, size=int(n * share), replace=False))
        truth = allowed[exact_topk(base[allowed], queries, 10)]  # exact, numpy, same run
        lat, found = our_queries(coll, queries, flt=parse_filter({"must": [{"has_id": allowed.tolist()}]}))
        out[f"{int(share * 100)}%"] = {**percentiles(lat), "recall_at_10": recall(found, truth)}
    return out


def ef_curve(coll, index: hnswlib.Index, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """Recall@10 and latency over ``ef``, in-process, with hnswlib alone on the same vectors as the baseline."""
    curve = []
    for ef in (16, 32, 64, 128, 256):
        lat, found = our_queries(coll, queries, ef)
        index.set_ef(ef)
        base_lat, base_found = hnswlib_queries(index, queries)
        curve.append({"ef": ef, **percentiles(lat), "recall_at_10": recall(found, truth),
                      "hnswlib": {**percentiles(base_lat), "recall_at_10": recall(base_found, truth)}})
    index.set_ef(EF)
    return curve


def our_queries(coll, queries: np.ndarray, ef: int | None = None,
                flt: Filter | None = None) -> tuple[list[float], list[list[PointId]]]:
    """In-process k=10 searches (with ``flt`` inside the search), one at a time: (latencies in s, ids found)."""
    from projections.search import search

    lat, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = search(coll, q, 10, ef=ef, flt=flt)
        lat.append(time.perf_counter() - t0)
        found.append([h.id for h in hits])
    return lat, found


def hnswlib_queries(index: hnswlib.Index, queries: np.ndarray) -> tuple[list[float], list[list[int]]]:
    """hnswlib ``knn_query`` k=10, one query at a time on one thread: (latencies in s, labels found)."""
    lat, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        labels, _ = index.knn_query(q, k=10, num_threads=1)
        lat.append(time.perf_counter() - t0)
        found.append(labels[0].tolist())
    return lat, found


def http_floor(http: httpx.Client, count: int = 500) -> dict[str, Any]:
    """Round trip of ``GET /health`` (no search, no body): what FastAPI + uvicorn + loopback cost alone."""
    for _ in range(20):
        http.get("/health")
    lat = []
    for _ in range(count):
        t0 = time.perf_counter()
        http.get("/health").raise_for_status()
        lat.append(time.perf_counter() - t0)
    return percentiles(lat)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def commit() -> str:
    """The short git commit of the code being measured ("" outside a git checkout)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout.strip()


def machine(note: str) -> dict[str, Any]:
    """What a result needs to be read against: CPU, memory, library versions, the load when it started,
    and ``note`` (what else shared the machine)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_bytes": psutil.virtual_memory().total,
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "hnswlib": importlib.metadata.version("hnswlib"),
            "qdrant_client": importlib.metadata.version("qdrant-client"),
            "load_average_at_start": os.getloadavg(), "shared": note}


def http_queries(http: httpx.Client, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """One client: latency percentiles and recall; then two clients: throughput."""
    bodies = [{"query": q.tolist(), "limit": 10} for q in queries]
    for body in bodies[:20]:  # warm-up: connection, route caches
        http.post("/collections/bench/points/query", json=body)
    lat, found = [], []
    for body in bodies:
        t0 = time.perf_counter()
        answer = http.post("/collections/bench/points/query", json=body)
        lat.append(time.perf_counter() - t0)
        answer.raise_for_status()
        found.append([p["id"] for p in answer.json()["result"]["points"]])
    out = {**percentiles(lat), "recall_at_10": recall(found, truth)}

    def worker(chunk: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as own:
            for body in chunk:
                own.post("/collections/bench/points/query", json=body).raise_for_status()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(bodies[i::2],)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["two_clients_qps"] = len(bodies) / (time.perf_counter() - t0)
    return out


def baseline_hnswlib(base: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                     workdir: Path) -> tuple[dict[str, Any], hnswlib.Index]:
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=M, ef_construction=EF_C, random_seed=100)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=-1)
    add_s = time.perf_counter() - t
    index.set_ef(EF)
    lat, found = hnswlib_queries(index, queries)
    path = workdir / "baseline.hnsw"
    index.save_index(str(path))
    size = path.stat().st_size
    alone = hnswlib_alone_rss(path, base.shape[1], len(base))
    path.unlink()
    return {"add_items_s": add_s, "add_items_vectors_per_s": len(base) / add_s, "index_bytes": size,
            "process_rss_bytes": alone, "query": percentiles(lat), "recall_at_10": recall(found, truth)}, index


def hnswlib_alone_rss(path: Path, dim: int, n: int) -> int:
    """Resident memory of a Python process holding only this index (numpy + hnswlib loaded)."""
    code = ("import sys, hnswlib, numpy, psutil; i = hnswlib.Index(space='cosine', dim=int(sys.argv[2])); "
            "i.load_index(sys.argv[1], max_elements=int(sys.argv[3])); i.knn_query(numpy.ones(int(sys.argv[2]), "
            "numpy.float32), k=10); print(psutil.Process().memory_info().rss)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(dim), str(n)], check=True, capture_output=True,
                         text=True, timeout=600)
    return int(out.stdout.strip())


def ensure_broker(settings: Settings, workdir: Path) -> LocalBroker | None:
    """A local broker for the run, unless one answers or VECTORIZER_KAFKA_BOOTSTRAP names one to use."""
    if os.environ.get("VECTORIZER_KAFKA_BOOTSTRAP") or broker_answers(settings.kafka_bootstrap):
        return None
    broker = LocalBroker(workdir / "kafka", settings.cache_dir)
    broker.start()
    return broker


_PROJECTORS: list[subprocess.Popen[bytes]] = []  # every projector process a run started


def start_projector(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, VECTORIZER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VECTORIZER_TOPIC=settings.topic,
               VECTORIZER_DATA_DIR=str(settings.data_dir), VECTORIZER_SNAPSHOT_EVERY_EVENTS="100000000",
               VECTORIZER_SNAPSHOT_EVERY_SECONDS="100000000", VECTORIZER_PROJECTION=settings.projection)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vectorizer", "project"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    _PROJECTORS.append(proc)
    return proc


def wait_applied(catalog: Catalog, offset: int, proc: subprocess.Popen[bytes], timeout: float = 7200) -> float:
    deadline = time.monotonic() + timeout
    while catalog.positions().get(0, -1) < offset:
        if proc.poll() is not None:
            raise RuntimeError(f"projector exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"projector did not reach offset {offset}")
        time.sleep(0.05)
    return time.monotonic()


def run(n: int, dim: int, keep: bool = False, results: Path = RESULTS, queries: int = 1000) -> dict[str, Any]:
    """Every measure at ``n`` x ``dim``; writes ``results/ingest-<n>x<dim>.json``.

    Order: hnswlib alone; publish + ingest of all but the last ``tail`` vectors (projector
    in its own process); clean stop (snapshot time and size); restart from the snapshot
    alone; the last ``tail`` vectors published, kill -9, recovery (snapshot + tail of
    inserts); a tail of updates, kill -9, recovery; queries in-process, over ``ef`` and over
    HTTP; filtered queries; a full replay from offset 0.
    """
    base, queries_, truth = dataset(n, dim, queries)
    workdir = Path(tempfile.mkdtemp(prefix="vz-bench-"))
    settings = Settings.load().replace(topic=f"bench.{n}x{dim}.{int(time.time())}", data_dir=workdir / "data",
                                       catalog_url="", grpc="off")
    broker = ensure_broker(settings, workdir)
    tail = max(BATCH, min(10_000, n // 10) // BATCH * BATCH)
    head = n - tail
    result: dict[str, Any] = {"n": n, "dim": dim, "m": M, "ef_construction": EF_C, "ef": EF, "batch": BATCH,
                              "tail": tail,
                    "command": f"python -m benchmarks.ingest --n {n} --dim {dim}",
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "hnswlib": "0.8.0"}}
    try:
        print(f"[{n}x{dim}] baseline: hnswlib add_items + knn_query", flush=True)
        result["hnswlib"], baseline_index = baseline_hnswlib(base, queries_, truth, workdir)

        print(f"[{n}x{dim}] publish + ingest of {head:,} vectors (projector in its own process)", flush=True)
        catalog = Catalog.of(settings, create=True)
        with VectorProducer(settings) as producer:
            token = producer.create_collection("bench", dim, "cosine", m=M, ef_construction=EF_C, ef=EF)
            proc = start_projector(settings, workdir / "projector.log")
            wait_applied(catalog, token.offset, proc)
            idle_rss = psutil.Process(proc.pid).memory_info().rss  # interpreter + libraries + empty collection
            started = time.monotonic()
            for s in range(0, head, BATCH):
                token = producer.upsert("bench", list(range(s, min(head, s + BATCH))), base[s:s + BATCH])
            published = time.monotonic()
        searchable = wait_applied(catalog, token.offset, proc)
        rss = psutil.Process(proc.pid).memory_info().rss
        result["publish"] = {"seconds": published - started, "vectors_per_s": head / (published - started)}
        ingest_s = searchable - started
        result["ingest"] = {"vectors": head, "publish_to_searchable_s": ingest_s, "vectors_per_s": head / ingest_s,
                            "ratio_to_hnswlib": (head / ingest_s) / result["hnswlib"]["add_items_vectors_per_s"]}
        print(f"[{n}x{dim}] clean stop (snapshot), restart from the snapshot alone", flush=True)
        proc.send_signal(signal.SIGTERM)  # clean stop: final snapshot
        t = time.monotonic()
        proc.wait(600)
        result["snapshot"] = {"clean_stop_with_snapshot_s": time.monotonic() - t,
                              "bytes": sum(f.stat().st_size for f in settings.snapshot_dir.rglob("*") if f.is_file())}
        replica, server, snapshot_only = serve_until_ready(settings)
        replica.request_stop()
        server.join(600)

        print(f"[{n}x{dim}] tail of {tail:,} new vectors, kill -9, recovery", flush=True)
        recovery = {"tail_vectors": tail, "snapshot_only_ready_s": snapshot_only}
        proc = start_projector(settings, workdir / "projector.log")
        with VectorProducer(settings) as producer:
            for s in range(head, n, BATCH):
                token = producer.upsert("bench", list(range(s, s + BATCH)), base[s:s + BATCH])
        wait_applied(catalog, token.offset, proc)
        # Memory with all n points (restarted from the snapshot, then the tail inserted).
        rss_n = psutil.Process(proc.pid).memory_info().rss
        index_bytes, alone = result["hnswlib"]["index_bytes"], result["hnswlib"]["process_rss_bytes"]
        result["memory"] = {"projector_rss_bytes": rss_n, "index_bytes": index_bytes,
                            "ratio_to_index": rss_n / index_bytes, "hnswlib_process_rss_bytes": alone,
                            "ratio_to_hnswlib_process": rss_n / alone, "idle_rss_bytes": idle_rss,
                            "after_ingest_rss_bytes": rss,
                            "per_point_overhead_bytes": (rss_n - idle_rss - index_bytes) / n}
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        replica, server, seconds = serve_until_ready(settings)
        recovery["after_kill9_ready_s"] = seconds
        recovery["loaded_snapshot"] = replica.projector.stats.loaded_snapshot
        replica.request_stop()
        server.join(600)

        def tail_then_kill(ids: range, vectors: np.ndarray) -> None:
            proc = start_projector(settings, workdir / "projector.log")
            with VectorProducer(settings) as producer:
                for s in range(0, len(ids), BATCH):
                    token = producer.upsert("bench", list(ids[s:s + BATCH]), vectors[s:s + BATCH])
            wait_applied(catalog, token.offset, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)

        print(f"[{n}x{dim}] tail of {tail:,} updates (new vectors for existing ids), kill -9, recovery", flush=True)
        moved = base[tail:2 * tail]  # other points' vectors: hnswlib's update path (re-linking)
        tail_then_kill(range(tail), moved)
        replica, server, recovery["after_kill9_update_tail_ready_s"] = serve_until_ready(settings)
        replica.request_stop()
        server.join(600)

        print(f"[{n}x{dim}] tail of {tail:,} re-upserts with unchanged vectors, kill -9, recovery", flush=True)
        tail_then_kill(range(tail), moved)  # retries / payload-only updates: the graph is left alone
        replica, server, recovery["after_kill9_unchanged_tail_ready_s"] = serve_until_ready(settings)
        replica.request_stop()
        server.join(600)
        result["recovery"] = recovery

        # Put the original vectors back (not timed), so the collection equals `base` for recall.
        proc = start_projector(settings, workdir / "projector.log")
        with VectorProducer(settings) as producer:
            for s in range(0, tail, BATCH):
                token = producer.upsert("bench", list(range(s, s + BATCH)), base[s:s + BATCH])
        wait_applied(catalog, token.offset, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(600)
        replica, server, _ = serve_until_ready(settings)

        with httpx.Client(base_url=f"http://{replica.settings.http}", timeout=60) as http:
            print(f"[{n}x{dim}] query latency and recall: in-process, over ef, then HTTP", flush=True)
            coll = replica.projector.state.get("bench")
            lat, found = our_queries(coll, queries_)
            result["query_in_process"] = {**percentiles(lat), "recall_at_10": recall(found, truth)}
            result["ef_curve"] = ef_curve(coll, baseline_index, queries_[:300], truth[:300])
            result["query_http"] = http_queries(http, queries_, truth)
            result["query_http"]["floor_get_health"] = http_floor(http)
            print(f"[{n}x{dim}] filtered queries at 1/10/50 %", flush=True)
            result["query_filtered"] = filtered_queries(coll, base, queries_[:50])
        replica.request_stop()
        server.join(120)
        del baseline_index

        print(f"[{n}x{dim}] full replay from offset 0", flush=True)
        from consumers.projector import Projector

        fresh = settings.replace(data_dir=workdir / "replay", projection="replay")
        t = time.monotonic()
        replayer = Projector(fresh)
        replayer.recover()
        stop = threading.Event()
        thread = threading.Thread(target=replayer.run, args=(stop,))
        thread.start()
        replayer.ready.wait(7200)
        seconds = time.monotonic() - t
        result["replay"] = {"seconds": seconds, "vectors_per_s": (n + tail) / seconds}
        stop.set()
        thread.join()
    finally:
        for leftover in _PROJECTORS:  # a failed step leaves none running
            if leftover.poll() is None:
                leftover.kill()
                leftover.wait(60)
        _PROJECTORS.clear()
        if broker is not None:
            broker.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"ingest-{n}x{dim}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


def publish_only(dim: int, n: int, results: Path = RESULTS) -> dict[str, Any]:
    """Encode + publish throughput alone (issue 3's target: >= 100,000 vectors/s at 128-d)."""
    settings = Settings.load().replace(topic=f"bench.publish.{dim}.{int(time.time())}")
    vectors = np.random.default_rng(0).random((n, dim), dtype=np.float32)
    with VectorProducer(settings) as producer:
        producer.create_collection("p", dim)
        t = time.perf_counter()
        for s in range(0, n, BATCH):
            producer.upsert("p", list(range(s, s + BATCH)), vectors[s:s + BATCH])
        seconds = time.perf_counter() - t
    result = {"dim": dim, "vectors": n, "batch": BATCH, "seconds": seconds, "vectors_per_s": n / seconds,
              "mb_per_s": n * dim * 4 / seconds / 1e6}
    results.mkdir(parents=True, exist_ok=True)
    (results / f"publish-{dim}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


def main(sizes: list[int], dim: int = 128) -> None:
    """``vectorizer bench`` / ``make bench``: publish rates, then each size, then the report."""
    from benchmarks import report

    started, t = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="vz-bench-broker-"))
    broker = ensure_broker(Settings.load(), workdir)  # a local broker unless one answers already
    try:
        publish_only(128, 100_000)
        publish_only(768, 30_000)
        for n in sizes:
            run(n, dim)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "run.json").write_text(json.dumps({
        "command": "make bench" if os.environ.get("MAKELEVEL") else "vectorizer bench "
                   f"--sizes {','.join(str(n) for n in sizes)}",
        "sizes": sizes, "dim": dim, "started_at": started, "seconds": time.monotonic() - t,
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=2))
    report.DOC.write_text(report.render())
    print(f"wrote {report.DOC}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--publish-only", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.publish_only:
        publish_only(args.dim, args.n)
    else:
        run(args.n, args.dim, args.keep)
