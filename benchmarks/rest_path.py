"""The REST hot path (issue 21): one qdrant-client's latency per request, and where the server spends it.

    python -m benchmarks.rest_path --n 100000 --dim 128 --label after [--profile benchmarks/flamegraphs]

``vectorizer serve`` in its own process, ``n`` clustered points loaded through qdrant-client
(REST, 1,000-point upserts), then one client in this process, one request at a time, for each
kind: ``search`` (``POST points/search``, top 10), ``query`` (``POST points/query``, top 10),
``upsert`` (``PUT points``, 100 points of existing ids, ``wait=false``: answered on Kafka's
acknowledgement), ``retrieve`` (``POST points``, 10 ids with payload and vector), and ``GET
/health`` (httpx alone: the floor of uvicorn, the app and loopback). The baseline in the same
run: hnswlib ``knn_query`` on the same vectors. With ``--profile DIR``, py-spy then samples the
server (500 Hz, ``--duration`` seconds) while the same loop runs, into
``DIR/<kind>-<label>.svg``; latencies are measured without py-spy attached. Writes
``benchmarks/results/rest_path-<n>x<dim>-<label>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel

from benchmarks.data import dataset
from benchmarks.ingest import EF, EF_C, M, baseline_hnswlib, ensure_broker, free_port, http_floor, percentiles
from benchmarks.recovery import start_server, wait_ready
from infra.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_BATCH = 1000
UPSERT_POINTS = 100
RETRIEVE_IDS = 10
KINDS = ("search", "query", "upsert", "retrieve")


def run(n: int, dim: int, label: str, requests: int = 3000, profile: Path | None = None,
        duration: int = 20, results: Path = RESULTS) -> dict[str, Any]:
    from qdrant_client import QdrantClient, models

    base, queries, truth = dataset(n, dim)
    workdir = Path(tempfile.mkdtemp(prefix="vz-rest-"))
    port = free_port()
    settings = Settings.load().replace(topic=f"bench.rest.{n}x{dim}.{int(time.time())}", data_dir=workdir / "data",
                                       catalog_url="", http=f"127.0.0.1:{port}", grpc="off")
    broker = ensure_broker(settings, workdir)
    settings = settings if broker is None else settings.replace(kafka_bootstrap=broker.bootstrap)
    url = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"n": n, "dim": dim, "m": M, "ef_construction": EF_C, "ef": EF, "label": label,
                              "requests": requests, "command": f"python -m benchmarks.rest_path --n {n} --dim {dim} "
                                                               f"--label {label}"}
    baseline, _ = baseline_hnswlib(base, queries, truth, workdir)
    result["hnswlib_query"] = baseline["query"]
    proc = start_server(settings, workdir / "server.log")
    try:
        http = httpx.Client(base_url=url, timeout=60)
        wait_ready(http, proc)
        client = QdrantClient(url=url, prefer_grpc=False, timeout=600, check_compatibility=False)
        client.create_collection("bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                                 hnsw_config=models.HnswConfigDiff(m=M, ef_construct=EF_C))
        print(f"[{n}x{dim}] loading through qdrant-client", flush=True)
        for s in range(0, n, LOAD_BATCH):
            e = min(n, s + LOAD_BATCH)
            client.upsert("bench", models.Batch(ids=list(range(s, e)), vectors=base[s:e].tolist(),
                                                payloads=[{"i": i} for i in range(s, e)]), wait=e == n)
        assert client.count("bench", exact=True).count == n
        result["health"] = http_floor(http, requests)
        calls = _calls(client, models, base, queries)
        for kind in KINDS:
            result[kind] = _timed(calls[kind], requests)
            print(f"  {kind}: {result[kind]}", flush=True)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for kind in KINDS:
                _profiled(proc.pid, calls[kind], profile / f"{kind}-{label}.svg", duration)
        client.close()
        http.close()
    finally:
        proc.terminate()
        proc.wait(60)
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results.mkdir(exist_ok=True)
    (results / f"rest_path-{n}x{dim}-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _calls(client: Any, models: Any, base: np.ndarray, queries: np.ndarray) -> dict[str, Callable[[int], object]]:
    """One request of each kind, the ``i``-th of its sequence; request bodies are built beforehand."""
    n = len(base)
    vectors = [q.tolist() for q in queries]
    api = client.http.client  # qdrant-client 1.20 has no search call left: its REST transport, as the calls use

    class Hits(BaseModel):  # the answer of POST points/search, parsed as the client parses the others
        result: list[models.ScoredPoint]
        status: str
        time: float

    rng = np.random.default_rng(7)
    batches = []
    for _ in range(50):
        ids = rng.choice(n, UPSERT_POINTS, replace=False)
        batches.append(models.Batch(ids=ids.tolist(), vectors=base[ids].tolist(),
                                    payloads=[{"i": int(i)} for i in ids]))
    picks = [rng.choice(n, RETRIEVE_IDS, replace=False).tolist() for _ in range(100)]
    return {
        "search": lambda i: api.request(type_=Hits, method="POST", url="/collections/{collection_name}/points/search",
                                        path_params={"collection_name": "bench"},
                                        json={"vector": vectors[i % len(vectors)], "limit": 10}),
        "query": lambda i: client.query_points("bench", query=vectors[i % len(vectors)], limit=10),
        "upsert": lambda i: client.upsert("bench", batches[i % len(batches)], wait=False),
        "retrieve": lambda i: client.retrieve("bench", ids=picks[i % len(picks)], with_vectors=True),
    }


def _timed(call: Callable[[int], object], count: int) -> dict[str, float]:
    for i in range(50):  # warm-up: connection, caches
        call(i)
    lat = []
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        lat.append(time.perf_counter() - t0)
    return percentiles(lat)


def _profiled(pid: int, call: Callable[[int], object], svg: Path, duration: int) -> None:
    """py-spy samples the server for ``duration`` seconds while ``call`` runs back to back."""
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "500",
                            "--duration", str(duration), "--format", "flamegraph", "-o", str(svg)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    i = 0
    while spy.poll() is None:
        call(i)
        i += 1
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed ({spy.returncode}) for {svg.name}")
    print(f"  profiled {svg.name}: {i} requests", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--label", default="run", help="names the results file and the flame graphs")
    ap.add_argument("--requests", type=int, default=3000, help="timed requests per kind")
    ap.add_argument("--profile", type=Path, help="write py-spy flame graphs of the server here")
    ap.add_argument("--duration", type=int, default=20, help="seconds py-spy samples each kind")
    args = ap.parse_args(argv)
    run(args.n, args.dim, args.label, args.requests, args.profile, args.duration)


if __name__ == "__main__":
    main(sys.argv[1:])
