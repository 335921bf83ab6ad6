"""Recovery after kill -9 right after a bulk load through the HTTP API, against hnswlib reopening its file.

    python -m benchmarks.recovery --n 1000000 --dim 128

The user's path: ``vectorizer serve`` in its own process, qdrant-client upserting 1,000-point
batches over REST (``wait=False``; the exact count is polled until every point is searchable),
then ``kill -9`` at once, with no clean stop. The server is started again and timed to correct
answers: ready, the exact count, and top-10 results that match exact search as well as before
the kill. Then a clean stop
(final snapshot) and a restart from the snapshot alone. Baselines in the same run: hnswlib
``add_items`` on the same vectors, and hnswlib reopening its saved file (``load_index``).
Writes ``benchmarks/results/recovery-<n>x<dim>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hnswlib
import httpx
import numpy as np
import psutil
from qdrant_client import QdrantClient, models

from benchmarks.data import dataset
from benchmarks.ingest import (
    EF,
    EF_C,
    M,
    ensure_broker,
    free_port,
    hnswlib_alone_rss,
    hnswlib_queries,
    percentiles,
    recall,
)
from consumers import snapshots
from infra.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 1000
CHECK_QUERIES = 200


def start_server(settings: Settings, log: Path, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, VECTORIZER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VECTORIZER_TOPIC=settings.topic,
               VECTORIZER_DATA_DIR=str(settings.data_dir), VECTORIZER_HTTP=settings.http, VECTORIZER_GRPC=settings.grpc,
               VECTORIZER_WORKERS=str(settings.workers), VECTORIZER_PROJECTION=settings.projection, **(extra or {}))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "vectorizer", "serve"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    """SIGTERM (a clean stop: final snapshot), SIGKILL after ``timeout`` s; then any process the server
    started that outlived it is killed, so no run leaves one behind."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(60)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def wait_ready(http: httpx.Client, proc: subprocess.Popen[bytes], timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if http.get("/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("server not ready")
        time.sleep(0.02)


def answers(client: QdrantClient, queries: np.ndarray) -> list[list[int]]:
    return [[int(p.id) for p in client.query_points("bench", query=q.tolist(), limit=10).points] for q in queries]


def correct(client: QdrantClient, n: int, queries: np.ndarray, truth: np.ndarray, floor: float) -> bool:
    """The exact count, and top-10 results as good as before the kill (recall vs exact search)."""
    try:
        if client.count("bench", exact=True).count != n:
            return False
        return recall(answers(client, queries), truth) >= floor
    except Exception:  # noqa: BLE001 - not serving yet
        return False


def run(n: int, dim: int, results: Path = RESULTS, quantization: str | None = None,
        baseline: bool = True) -> dict[str, Any]:
    base, queries, truth = dataset(n, dim, CHECK_QUERIES)
    workdir = Path(tempfile.mkdtemp(prefix="vz-recovery-"))
    port = free_port()
    settings = Settings.load().replace(topic=f"bench.recovery.{n}x{dim}.{int(time.time())}",
                                       data_dir=workdir / "data", catalog_url="", http=f"127.0.0.1:{port}", grpc="off")
    broker = ensure_broker(settings, workdir)
    result: dict[str, Any] = {"n": n, "dim": dim, "m": M, "ef_construction": EF_C, "ef": EF, "batch": BATCH,
                              "quantization": quantization,
                              "command": f"python -m benchmarks.recovery --n {n} --dim {dim}"
                                         + (f" --quantization {quantization}" if quantization else "")
                                         + ("" if baseline else " --no-baseline"),
                              "settings": {k: getattr(settings, k) for k in (
                                  "snapshot_every_vectors", "snapshot_every_bytes", "snapshot_every_events",
                                  "snapshot_every_seconds", "segment_bytes")}}
    log = workdir / "server.log"
    try:
        if baseline:
            result["hnswlib"] = _baseline(base, queries, truth, workdir)
        print(f"[{n}x{dim}] bulk load through qdrant-client (REST, {BATCH}-point batches)", flush=True)
        proc = start_server(settings, log)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_ready(http, proc)
        client = QdrantClient(url=f"http://127.0.0.1:{port}", prefer_grpc=False, timeout=120)
        quantized = None if quantization is None else models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8))
        client.create_collection("bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                                 hnsw_config=models.HnswConfigDiff(m=M, ef_construct=EF_C),
                                 quantization_config=quantized)
        started = time.monotonic()
        for s in range(0, n, BATCH):
            client.upsert("bench", points=models.Batch(ids=list(range(s, min(n, s + BATCH))),
                                                         vectors=base[s:s + BATCH].tolist()), wait=False)
        published_s = time.monotonic() - started
        deadline = time.monotonic() + 7200
        while client.count("bench", exact=True).count < n:  # searchable: applied by the projection
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the load was not applied within two hours")
            time.sleep(0.05)
        loaded_s = time.monotonic() - started
        before = recall(answers(client, queries), truth)
        latencies = []
        for q in queries:
            t = time.perf_counter()
            client.query_points("bench", query=q.tolist(), limit=10)
            latencies.append(time.perf_counter() - t)
        rss = psutil.Process(proc.pid).memory_info().rss
        stats = {line.split()[0]: float(line.split()[1]) for line in http.get("/metrics").text.splitlines()
                 if line.startswith(("vectorizer_snapshot", "vectorizer_vectors_applied"))}
        proc.send_signal(signal.SIGKILL)  # at once: no clean stop, no final snapshot
        proc.wait(60)
        found = snapshots.list_snapshots(settings.snapshot_dir)
        written = sum(snapshots.written_bytes(p) for p in found)
        alone = result.get("hnswlib", {})
        result["ingest"] = {"seconds": loaded_s, "vectors_per_s": n / loaded_s, "published_s": published_s,
                            "ratio_to_hnswlib": (n / loaded_s) / alone["add_items_vectors_per_s"] if alone else None,
                            "recall_at_10": before, "query_over_http": percentiles(latencies),
                            "server_rss_bytes": rss,
                            "rss_ratio_to_hnswlib_process": rss / alone["process_rss_bytes"] if alone else None,
                            "stats": stats}
        newest = snapshots.read_manifest(found[0]) if found else None
        result["snapshots_at_kill"] = {
            "kept": len(found), "bytes_on_disk_kept": sum(f.stat().st_size for p in found for f in p.iterdir()),
            "newest_covers": newest["offsets"] if newest else None,
            "segments": len(newest["collections"][0]["segments"]) if newest else 0, "written_by_kept": written}

        print(f"[{n}x{dim}] kill -9 right after the load; restart to correct answers", flush=True)
        t = time.monotonic()
        proc = start_server(settings, log)
        wait_ready(http, proc)
        ready_s = time.monotonic() - t
        while not correct(client, n, queries[:50], truth[:50], before - 0.02):
            if time.monotonic() - t > 3600:
                raise TimeoutError("no correct answers within an hour")
            time.sleep(0.02)
        result["after_kill9"] = {"ready_s": ready_s, "correct_answers_s": time.monotonic() - t,
                                 "recall_at_10": recall(answers(client, queries), truth)}

        print(f"[{n}x{dim}] clean stop, restart from the snapshot alone", flush=True)
        proc.send_signal(signal.SIGTERM)
        t = time.monotonic()
        proc.wait(600)
        stop_s = time.monotonic() - t
        t = time.monotonic()
        proc = start_server(settings, log)
        wait_ready(http, proc)
        ready_s = time.monotonic() - t
        while not correct(client, n, queries[:50], truth[:50], before - 0.02):
            time.sleep(0.02)
        result["snapshot_only"] = {"clean_stop_s": stop_s, "ready_s": ready_s,
                                   "correct_answers_s": time.monotonic() - t,
                                   "rss_after_queries_bytes": _rss_after_queries(client, proc, queries)}
        proc.send_signal(signal.SIGTERM)
        proc.wait(600)
        result["in_process"] = _in_process(settings, queries, truth)
    finally:
        for p in psutil.Process().children(recursive=True):
            p.kill()
        if broker is not None:
            broker.stop()
    results.mkdir(parents=True, exist_ok=True)
    suffix = f"-{quantization}" if quantization else ""
    (results / f"recovery-{n}x{dim}{suffix}.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str), flush=True)
    return result


def _in_process(settings: Settings, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The newest snapshot loaded in this process (the server stopped), then k=10 searches through the
    projection without HTTP: what the index costs, apart from the server around it."""
    from benchmarks.ingest import our_queries

    t = time.perf_counter()
    loaded = snapshots.load_newest(settings.snapshot_dir, settings.segment_bytes)
    load_s = time.perf_counter() - t
    if loaded is None:
        raise RuntimeError("no snapshot to load")
    coll = loaded.state.get("bench")
    lat, found = our_queries(coll, queries)
    out = {"snapshot_load_s": load_s, "query": {**percentiles(lat), "recall_at_10": recall(found, truth)}}
    del loaded, coll
    return out


def _rss_after_queries(client: QdrantClient, proc: subprocess.Popen[bytes], queries: np.ndarray) -> int:
    """The serve process's resident memory once it has answered every query (a restarted server
    holding the collection: no ingest heap)."""
    answers(client, queries)
    return int(psutil.Process(proc.pid).memory_info().rss)


def _baseline(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, workdir: Path) -> dict[str, Any]:
    """hnswlib alone on the same vectors: add_items, queries, its saved file reopened, its process's RSS."""
    n, dim = base.shape
    print(f"[{n}x{dim}] baseline: hnswlib add_items, save, reopen", flush=True)
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=M, ef_construction=EF_C, random_seed=100)
    t = time.perf_counter()
    index.add_items(base, np.arange(n), num_threads=-1)
    add_s = time.perf_counter() - t
    index.set_ef(EF)
    latencies, labels = hnswlib_queries(index, queries)
    path = workdir / "baseline.hnsw"
    index.save_index(str(path))
    del index
    t = time.perf_counter()
    reopened = hnswlib.Index(space="cosine", dim=dim)
    reopened.load_index(str(path), max_elements=n)
    reopen_s = time.perf_counter() - t
    del reopened
    out = {"add_items_s": add_s, "add_items_vectors_per_s": n / add_s, "reopen_s": reopen_s,
           "query": {**percentiles(latencies), "recall_at_10": recall(labels, truth)},
           "process_rss_bytes": hnswlib_alone_rss(path, dim, n)}
    path.unlink()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--quantization", choices=["int8"], default=None, help="scalar int8 collection")
    parser.add_argument("--no-baseline", action="store_true", help="skip hnswlib alone (hours at 1M x 512)")
    args = parser.parse_args()
    run(args.n, args.dim, quantization=args.quantization, baseline=not args.no_baseline)
