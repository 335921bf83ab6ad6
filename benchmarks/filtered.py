"""Filtered search with payload indexes: keyword filters matching 1 %, 10 % and 50 % of the points.

    python -m benchmarks.filtered --n 1000000 --dim 128          # in process
    python -m benchmarks.filtered --n 100000 --dim 128 --http    # and qdrant-client over REST

In process, the projection is built by applying the events the producer writes (the
projector's code, without Kafka): a cosine collection (m 16, ef_construct 200, ef 64) loaded
in 10,000-point upserts whose payloads hold three keyword fields (``p1``, ``p10``, ``p50``:
one value in 100, 10, 2), then a keyword index on each (the build is timed, and each index's
memory per point reported). Each query is k=10 under ``{"key": "pN", "match": {"value": ...}}``.
Baselines in the same run: exact filtered search (``exact=True``: numpy over the matching
rows), the unfiltered search, and (``--hnswlib``) hnswlib alone on the same vectors with a
Python filter callback. The truth for recall@10 is computed before any loop is timed, and
each loop runs alone (an exact scan streams the matching rows through the caches: interleaved,
it made the next search cold). ``exact_scans`` counts the queries the exact scan answered.
With ``--http`` the same collection is loaded through qdrant-client into the real server
(Kafka, projector, REST) and queried there.
Writes ``benchmarks/results/filtered-<n>x<dim>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from benchmarks.data import dataset, exact_topk
from benchmarks.ingest import EF, EF_C, M, commit, ensure_broker, percentiles, recall, serve_until_ready
from consumers import snapshots
from infra.settings import Settings
from projections.filters import parse_filter
from projections.search import search
from projections.state import ProjectionState
from schemas import events as ev

RESULTS = Path(__file__).resolve().parent / "results"
SHARES = {"p1": 100, "p10": 10, "p50": 2}  # field -> number of distinct values
BATCH = 10_000


def _payload(i: int) -> dict[str, str]:
    return {field: f"v{i % values}" for field, values in SHARES.items()}


def _meta() -> ev.EventMeta:
    return ev.EventMeta.new("bench", "bench")


def in_process(base: np.ndarray, queries: np.ndarray, with_hnswlib: bool) -> dict[str, Any]:
    n, dim = base.shape
    state = ProjectionState()
    state.apply(ev.CollectionCreated(_meta(), dim, "cosine", M, EF_C, EF), 0)
    t = time.perf_counter()
    for s in range(0, n, BATCH):
        ids = tuple(range(s, min(n, s + BATCH)))
        state.apply(ev.VectorsUpserted(_meta(), ids, base[s:s + BATCH], tuple(_payload(i) for i in ids)), 1)
    load_s = time.perf_counter() - t
    coll = state.get("bench")
    assert coll is not None
    out: dict[str, Any] = {"load_s": load_s, "indexes": {}, "filters": {}}
    for field in SHARES:
        t = time.perf_counter()
        state.apply(ev.PayloadIndexCreated(_meta(), field, '"keyword"'), 2)
        index = next(i for i in coll.indexes if i.field == field)
        out["indexes"][field] = {"build_s": time.perf_counter() - t, "bytes_per_point": index.memory_bytes() / n}
    out["rows_copy_bytes_per_point"] = 4 * dim
    out["restart"] = _restart_costs(state)
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        search(coll, q, 10)
        lat.append(time.perf_counter() - t0)
    out["unfiltered"] = percentiles(lat)
    baseline = _hnswlib_index(base) if with_hnswlib else None
    rng = np.random.default_rng(3)
    for field, values in SHARES.items():
        wanted = [f"v{v}" for v in rng.integers(0, values, len(queries))]
        filters = [parse_filter({"must": [{"key": field, "match": {"value": w}}]}) for w in wanted]
        truth = _truth(base, queries, wanted, values)  # before any timing: it streams the matching rows
        exact_calls = _counting(coll.index, "exact")
        gc.collect()
        ours, found = [], []
        for q, flt in zip(queries, filters, strict=True):
            t0 = time.perf_counter()
            hits = search(coll, q, 10, flt=flt)
            ours.append(time.perf_counter() - t0)
            found.append([h.id for h in hits])
        exact_paths = exact_calls()
        exact_lat = []
        for q, flt in zip(queries, filters, strict=True):
            t0 = time.perf_counter()
            search(coll, q, 10, flt=flt, exact=True)
            exact_lat.append(time.perf_counter() - t0)
        entry = {**percentiles(ours), "recall_at_10": recall(found, truth), "exact_scans": exact_paths,
                 "exact_filtered": percentiles(exact_lat)}
        if baseline is not None:
            entry["hnswlib_filter_callback"] = _hnswlib_filtered(baseline, queries, wanted, field, values, truth)
        out["filters"][f"{100 // values}%"] = entry
    return out


def _truth(base: np.ndarray, queries: np.ndarray, wanted: list[str], values: int) -> np.ndarray:
    """Exact filtered top-10 of each query (numpy over the matching rows)."""
    truth = []
    for q, w in zip(queries, wanted, strict=True):
        allowed = np.arange(int(w[1:]), len(base), values)  # the ids holding w
        truth.append(allowed[exact_topk(base[allowed], q[None, :], 10)[0]])
    return np.array(truth)


def _counting(index: Any, name: str) -> Any:
    """Count calls of ``index.<name>`` from now on; returns a function giving the count so far."""
    calls = [0]
    original = getattr(index, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(index, name, counted)
    return lambda: calls[0]


def _restart_costs(state: ProjectionState) -> dict[str, Any]:
    """What the indexes add to a restart: a snapshot loaded with its stored indexes, the same
    snapshot as an older one (no stored indexes: built from its payloads), and as if the
    collection had none (no index, no rows kept beside the graphs)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = snapshots.write_snapshot(state, {0: 2}, Path(tmp), "bench", keep=1)
        t = time.perf_counter()
        snapshots.load(path)
        stored = time.perf_counter() - t
        manifest = json.loads((path / "manifest.json").read_text())
        for entry in manifest["collections"]:
            entry.pop("payload_indexes", None)
        manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - an older format
        (path / "manifest.json").write_text(json.dumps(manifest))
        t = time.perf_counter()
        snapshots.load(path)
        rebuilt = time.perf_counter() - t
        for entry in manifest["collections"]:
            entry["config"]["payload_indexes"] = None
        manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - as if never indexed
        (path / "manifest.json").write_text(json.dumps(manifest))
        t = time.perf_counter()
        snapshots.load(path)
        none = time.perf_counter() - t
    return {"load_with_stored_indexes_s": stored, "load_building_indexes_from_payloads_s": rebuilt,
            "load_without_indexes_s": none}


def _hnswlib_index(base: np.ndarray) -> hnswlib.Index:
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=M, ef_construction=EF_C, random_seed=100)
    index.add_items(base, np.arange(len(base)), num_threads=-1)
    index.set_ef(EF)
    return index


def _hnswlib_filtered(index: hnswlib.Index, queries: np.ndarray, wanted: list[str], field: str, values: int,
                      truth: np.ndarray) -> dict[str, Any]:
    lat, found = [], []
    for q, w in zip(queries, wanted, strict=True):
        value = int(w[1:])
        t0 = time.perf_counter()
        labels, _ = index.knn_query(q, k=10, num_threads=1, filter=lambda i, v=value: i % values == v)
        lat.append(time.perf_counter() - t0)
        found.append(labels[0].tolist())
    return {**percentiles(lat), "recall_at_10": recall(found, truth)}


def over_http(base: np.ndarray, queries: np.ndarray, workdir: Path) -> dict[str, Any]:
    from qdrant_client import QdrantClient, models

    n, dim = base.shape
    settings = Settings.load().replace(data_dir=workdir / "data", topic=f"bench.filtered.{n}x{dim}.{int(time.time())}",
                                       grpc="off")
    broker = ensure_broker(settings, workdir)
    settings = settings if broker is None else settings.replace(kafka_bootstrap=broker.bootstrap)
    replica, thread, _ = serve_until_ready(settings)
    try:
        client = QdrantClient(url=f"http://{replica.settings.http}", prefer_grpc=False, timeout=600,
                              check_compatibility=False)
        client.create_collection("bench", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
        for s in range(0, n, 1000):
            client.upsert("bench", models.Batch(ids=list(range(s, min(n, s + 1000))), vectors=base[s:s + 1000].tolist(),
                                                payloads=[_payload(i) for i in range(s, min(n, s + 1000))]), wait=False)
        for field in SHARES:
            client.create_payload_index("bench", field, models.PayloadSchemaType.KEYWORD, wait=True)
        while client.count("bench").count < n:
            time.sleep(0.5)
        out: dict[str, Any] = {}
        rng = np.random.default_rng(3)
        for field, values in SHARES.items():
            wanted = [f"v{v}" for v in rng.integers(0, values, len(queries))]
            truth = _truth(base, queries, wanted, values)
            gc.collect()
            lat, found = [], []
            for q, w in zip(queries, wanted, strict=True):
                flt = models.Filter(must=[models.FieldCondition(key=field, match=models.MatchValue(value=w))])
                t0 = time.perf_counter()
                points = client.query_points("bench", query=q.tolist(), query_filter=flt, limit=10).points
                lat.append(time.perf_counter() - t0)
                found.append([p.id for p in points])
            out[f"{100 // values}%"] = {**percentiles(lat[20:]), "recall_at_10": recall(found, truth)}
        return out
    finally:
        replica.request_stop()
        thread.join(600)
        if broker is not None:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--hnswlib", action="store_true", help="hnswlib alone with a Python filter callback too")
    args = parser.parse_args()
    base, queries, _ = dataset(args.n, args.dim, 1000)
    queries = queries[: args.queries]
    command = "python -m benchmarks.filtered " + " ".join(sys.argv[1:])
    result: dict[str, Any] = {"command": command, "code": commit(), "n": args.n, "dim": args.dim,
                              "queries": len(queries), "k": 10, "in_process": in_process(base, queries, args.hnswlib)}
    print(json.dumps(result, indent=2), flush=True)
    if args.http:
        with tempfile.TemporaryDirectory() as tmp:
            result["http"] = over_http(base, queries, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"filtered-{args.n}x{args.dim}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
