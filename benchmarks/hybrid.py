"""Sparse + dense hybrid queries (issue 18): latency and throughput next to dense-only in the same run.

    python -m benchmarks.hybrid --n 1000000             # in process
    python -m benchmarks.hybrid --n 100000 --http      # qdrant-client over REST against `vectorizer serve`

Every point holds a 128-d dense vector ``dense`` (``benchmarks.data.dataset``) and a sparse vector
``sparse`` of ~100 distinct terms out of 30,000, drawn without replacement from a power law over
the terms' ranks (``p(rank) ~ rank ** -1.1``, the ranks spread over the term ids by a fixed
permutation) with positive weights; the queries' sparse vectors are drawn the same way (other
seeds). The collection: ``dense`` cosine (m 16, ef_construct 200, ef 64) and ``sparse`` with
``modifier: idf``. Four query kinds, k=10, each timed alone: one client for the latencies, then
4 client threads for the throughput over the same queries:

- ``dense``: nearest by ``dense``; ``sparse``: nearest by ``sparse`` (exact: an inverted index);
- ``rrf`` / ``dbsf``: prefetches of 50 by ``dense`` and 50 by ``sparse``, fused (RRF, DBSF).

Baselines in the same run: hnswlib alone on the same dense vectors (``knn_query``, one thread),
and an exact sparse scan in numpy (the corpus grouped by term, IDF as Qdrant computes it, one
``np.bincount`` over the query's postings). The references are computed before any loop is
timed: exact dense top-50 (numpy), the exact sparse top-50, and the fusion of those two (the
hybrid kinds' recall is against fusing exact prefetches: it shows what the approximate dense
prefetch changes). Sparse recall should be 1.0 (a correctness check, not a quality figure).

In process (default), the projection is built by applying the events the producer writes (the
projector's code, without Kafka) in 10,000-point upserts; the queries are ``projections.plans``
plans, executed as the Query API route executes them. With ``--http`` the same data goes through
qdrant-client (1,000-point batches, ``wait`` on the last) into ``vectorizer serve`` in its own
process (its memory is its own, and the client's encoding does not share its interpreter), ingest
timed from the first batch to the exact count; then the four kinds over REST.
Writes ``benchmarks/results/hybrid-<n>x<dim>.json`` (in process) or ``hybrid-<n>x<dim>-http.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hnswlib
import httpx
import numpy as np
import psutil

from benchmarks.data import dataset
from benchmarks.ingest import (
    EF,
    EF_C,
    M,
    commit,
    ensure_broker,
    free_port,
    hnswlib_queries,
    http_floor,
    machine,
    percentiles,
    recall,
)
from benchmarks.recovery import start_server, stop_server, wait_ready
from infra.settings import Settings
from projections import plans
from projections import query as reads
from projections.collection import Collection
from projections.state import ProjectionState
from schemas import events as ev
from schemas.ids import PointId

RESULTS = Path(__file__).resolve().parent / "results"
VOCABULARY = 30_000
TERMS = 100  # distinct terms per point and per query (a few rows hold fewer: DRAWS ran out)
EXPONENT = 1.1  # p(rank) ~ rank ** -EXPONENT
DRAWS = 250  # draws per row, of which the first TERMS distinct are kept: sampling without replacement
PREFETCH = 50
K = 10
THREADS = 4
WARM_UP = 10
BATCH = 10_000  # points per upsert in process
HTTP_BATCH = 1_000
KINDS = ("dense", "sparse", "rrf", "dbsf")
NOTE = ("measured on a 2-core machine shared with a concurrently running test suite: the figures are noisy, "
        "throughput especially; compare kinds within one run rather than across runs")

Hits = list[tuple[PointId, float]]  # (id, score), best first


# Data -------------------------------------------------------------------------------------
class SparseSet:
    """Rows of sparse vectors, CSR: row ``i`` is ``indices`` and ``values[offsets[i]:offsets[i + 1]]``
    (indices ascending), drawn as the module docstring says from ``seed``."""

    def __init__(self, count: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        cdf = np.cumsum(np.arange(1, VOCABULARY + 1, dtype=np.float64) ** -EXPONENT)
        cdf /= cdf[-1]
        term_of_rank = np.random.default_rng(0).permutation(VOCABULARY).astype(np.int64)
        lens, terms = [], []
        for s in range(0, count, 10_000):
            rows = min(count, s + 10_000) - s
            ranks = np.minimum(np.searchsorted(cdf, rng.random((rows, DRAWS))), VOCABULARY - 1)
            keys = (np.arange(rows, dtype=np.int64)[:, None] * VOCABULARY + term_of_rank[ranks]).ravel()
            first = np.sort(np.unique(keys, return_index=True)[1])  # each (row, term) once, in draw order
            row = first // DRAWS
            kept = np.sort(keys[first[np.arange(len(first)) - np.searchsorted(row, row) < TERMS]])
            lens.append(np.bincount(kept // VOCABULARY, minlength=rows))
            terms.append((kept % VOCABULARY).astype(np.uint32))
        self.offsets = np.concatenate([[0], np.cumsum(np.concatenate(lens))]).astype(np.int64)
        self.indices = np.concatenate(terms)
        self.values = (0.05 + rng.exponential(1.0, len(self.indices))).astype(np.float32)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.indices[lo:hi], self.values[lo:hi]

    def block(self, s: int, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``s..e`` as (offsets from 0, indices, values)."""
        lo, hi = int(self.offsets[s]), int(self.offsets[e])
        return self.offsets[s:e + 1] - lo, self.indices[lo:hi], self.values[lo:hi]


class ExactSparse:
    """The exact reference: the corpus grouped by term (a CSR by term), scored as Qdrant scores with
    ``modifier: idf`` (``ln((N - df + 0.5) / (df + 0.5) + 1)`` times each query value; float64 sums,
    ranked by their float32 value, ties by lower label)."""

    def __init__(self, corpus: SparseSet) -> None:
        self.n = len(corpus)
        order = np.argsort(corpus.indices.astype(np.uint16), kind="stable")  # radix sort: VOCABULARY < 2 ** 16
        self.labels = np.repeat(np.arange(self.n, dtype=np.int32), np.diff(corpus.offsets))[order]
        self.values = corpus.values[order]
        self.df = np.bincount(corpus.indices, minlength=VOCABULARY)
        self.offsets = np.concatenate([[0], np.cumsum(self.df)]).astype(np.int64)

    def postings(self, terms: np.ndarray) -> int:
        return int(self.df[terms].sum())

    def top(self, terms: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        lo, counts = self.offsets[terms], self.df[terms]
        df = counts.astype(np.float64)
        weights = values.astype(np.float64) * np.log((self.n - df + 0.5) / (df + 0.5) + 1.0)
        where = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        labels = self.labels[where]
        sums = np.bincount(labels, weights=self.values[where] * np.repeat(weights, counts), minlength=self.n)
        touched = np.zeros(self.n, bool)
        touched[labels] = True
        hits = np.flatnonzero(touched)
        scores = sums[hits].astype(np.float32)
        if k < len(scores):
            kth = -np.partition(-scores, k - 1)[k - 1]
            above = np.flatnonzero(scores > kth)
            chosen = np.concatenate([above, np.flatnonzero(scores == kth)[:k - len(above)]])
            hits, scores = hits[chosen], scores[chosen]
        order = np.lexsort((hits, -scores))
        return hits[order], scores[order]


def _fused(method: str, sources: list[Hits], k: int) -> list[PointId]:
    """The reference fusion, as qdrant-client's local mode fuses: RRF ``1 / (position + RRF_K)`` (position
    from 0) or DBSF (each source mapped by mean +- 3 sample standard deviations, summed); ties keep
    first appearance (the dense source first)."""
    scores: dict[PointId, float] = {}
    for source in sources:
        if method == "rrf":
            parts = [1.0 / (position + plans.RRF_K) for position in range(len(source))]
        else:
            s = np.array([score for _, score in source], np.float64)
            std = float(s.std(ddof=1)) if len(s) > 1 else 0.0
            parts = ([0.5] * len(s) if std == 0 else ((s - s.mean() + 3 * std) / (6 * std)).tolist())
        for (pid, _), part in zip(source, parts, strict=True):
            scores[pid] = scores.get(pid, 0.0) + part
    return [pid for pid, _ in sorted(scores.items(), key=lambda item: item[1], reverse=True)[:k]]


class Workload:
    """The data, the queries and every reference answer, computed before anything is timed."""

    def __init__(self, n: int, dim: int, queries: int) -> None:
        t = time.perf_counter()
        self.base, dense_queries, truth = dataset(n, dim, 1000)
        self.dense = dense_queries[:queries]
        self.corpus = SparseSet(n, seed=11)
        self.sparse = SparseSet(queries, seed=12)
        self.generation_s = time.perf_counter() - t
        self.dense_truth = truth[:queries, :K]
        bn = self.base[truth[:queries, :PREFETCH]]
        sims = np.einsum("qkd,qd->qk", bn / np.linalg.norm(bn, axis=2, keepdims=True),
                         self.dense / np.linalg.norm(self.dense, axis=1, keepdims=True))
        dense_top: list[Hits] = [list(zip(ids.tolist(), s.tolist(), strict=True))
                                 for ids, s in zip(truth[:queries, :PREFETCH], sims, strict=True)]
        exact = ExactSparse(self.corpus)
        gc.collect()
        lat, sparse_top, postings = [], [], []
        for i in range(queries):  # the numpy baseline, timed alone
            terms, values = self.sparse.row(i)
            t0 = time.perf_counter()
            labels, scores = exact.top(terms, values, PREFETCH)
            lat.append(time.perf_counter() - t0)
            sparse_top.append(list(zip(labels.tolist(), scores.tolist(), strict=True)))
            postings.append(exact.postings(terms))
        self.exact_sparse = {**percentiles(lat), "postings_per_query_mean": float(np.mean(postings))}
        self.sparse_truth = sparse_top
        self.fused_truth = {m: np.array([_fused(m, [d, s], K) for d, s in zip(dense_top, sparse_top, strict=True)])
                            for m in ("rrf", "dbsf")}
        self.facts = {"vocabulary": VOCABULARY, "exponent": EXPONENT, "terms_per_row": TERMS,
                      "terms_per_point_mean": float(np.diff(self.corpus.offsets).mean()),
                      "terms_per_query_mean": float(np.diff(self.sparse.offsets).mean()),
                      "share_of_points_holding_the_commonest_term": float(exact.df.max() / n),
                      "terms_held_by_10pct_of_points_or_more": int(np.count_nonzero(exact.df >= n / 10)),
                      "postings_per_query_mean": self.exact_sparse["postings_per_query_mean"],
                      "generation_and_dense_truth_s": self.generation_s}
        del exact
        gc.collect()

    def check(self, kind: str, answers: list[Hits]) -> dict[str, Any]:
        """Recall@10 of ``answers`` against the kind's reference (and, sparse, the largest score difference)."""
        found = [[pid for pid, _ in hits] for hits in answers]
        if kind == "dense":
            return {"recall_at_10": recall(found, self.dense_truth)}
        if kind == "sparse":
            truth = np.array([[pid for pid, _ in t[:K]] for t in self.sparse_truth])
            diff = max(abs(score - t[j][1]) for hits, t in zip(answers, self.sparse_truth, strict=True)
                       for j, (_, score) in enumerate(hits[:K]))
            return {"recall_at_10": recall(found, truth), "max_abs_score_difference": diff}
        return {"recall_at_10_vs_exact_prefetches": recall(found, self.fused_truth[kind])}


# Timing -----------------------------------------------------------------------------------
Runner = Callable[[int], Hits]  # query i of one kind -> its hits


def _measure(open_runner: Callable[[], contextlib.AbstractContextManager[Runner]], count: int) -> dict[str, Any]:
    """One client: a warm-up, then ``count`` queries timed one by one; then THREADS clients (each its
    own runner) splitting the same ``count`` queries, timed from a common start to the last answer."""
    with open_runner() as run:
        for i in range(min(WARM_UP, count)):
            run(i)
        lat, answers = [], []
        for i in range(count):
            t0 = time.perf_counter()
            answers.append(run(i))
            lat.append(time.perf_counter() - t0)
    gc.collect()
    start = threading.Barrier(THREADS + 1)
    failures: list[BaseException] = []

    def client(first: int) -> None:
        try:
            with open_runner() as own:
                own(first)  # connected and warm before the clock starts
                start.wait()
                for i in range(first, count, THREADS):
                    own(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed: raised below
        start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - t0
    if failures:
        raise failures[0]
    return {"latency": percentiles(lat), "qps_4_threads": count / seconds, "answers": answers}


def _timed_kinds(work: Workload, open_runner: Callable[[str], Callable[[], contextlib.AbstractContextManager[Runner]]],
                 count: int) -> dict[str, Any]:
    out = {}
    for kind in KINDS:
        print(f"  {kind}", flush=True)
        measured = _measure(open_runner(kind), count)
        out[kind] = {**measured["latency"], "qps_4_threads": measured["qps_4_threads"],
                     **work.check(kind, measured["answers"])}
    return out


def _hnswlib(work: Workload) -> dict[str, Any]:
    n, dim = work.base.shape
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=M, ef_construction=EF_C, random_seed=100)
    t = time.perf_counter()
    index.add_items(work.base, np.arange(n), num_threads=-1)
    add_s = time.perf_counter() - t
    index.set_ef(EF)
    hnswlib_queries(index, work.dense[:WARM_UP])
    lat, found = hnswlib_queries(index, work.dense)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "baseline.hnsw"
        index.save_index(str(path))
        size = path.stat().st_size
    return {"add_items_s": add_s, "add_items_vectors_per_s": n / add_s, "index_bytes": size, **percentiles(lat),
            "recall_at_10": recall(found, work.dense_truth)}


# In process -------------------------------------------------------------------------------
def _meta() -> ev.EventMeta:
    return ev.EventMeta.new("bench", "bench")


def _canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _plans(work: Workload, kind: str) -> list[plans.Plan]:
    """The kind's plan per query, as ``vectorizer.api.routes.query`` builds it from the request."""
    out = []
    for i, q in enumerate(work.dense):
        dense = plans.Plan(plans.Nearest(dense=q), "dense", limit=PREFETCH if kind in ("rrf", "dbsf") else K)
        sparse = plans.Plan(plans.Nearest(sparse=work.sparse.row(i)), "sparse",
                            limit=PREFETCH if kind in ("rrf", "dbsf") else K)
        if kind == "dense":
            out.append(dense)
        elif kind == "sparse":
            out.append(sparse)
        else:
            out.append(plans.Plan(plans.Fusion("rrf" if kind == "rrf" else "dbsf"), prefetch=(dense, sparse), limit=K))
    return out


def in_process(work: Workload) -> dict[str, Any]:
    n, dim = work.base.shape
    gc.collect()
    rss = psutil.Process().memory_info().rss
    state = ProjectionState()
    state.apply(ev.CollectionCreated(_meta(), 0, "cosine", M, EF_C, EF,
                                     vectors=_canonical({"dense": {"size": dim, "metric": "cosine", "m": M,
                                                                   "ef_construction": EF_C, "ef": EF}}),
                                     sparse_vectors=_canonical({"sparse": {"modifier": "idf"}})), 0)
    print(f"[{n}x{dim}] in process: {n:,} points in {BATCH:,}-point upserts", flush=True)
    empty = np.empty((0, 0), np.float32)
    t = time.perf_counter()
    for s in range(0, n, BATCH):
        e = min(n, s + BATCH)
        positions = np.arange(e - s, dtype=np.int64)
        offsets, indices, values = work.corpus.block(s, e)
        state.apply(ev.VectorsUpserted(_meta(), tuple(range(s, e)), empty.reshape(e - s, 0), (None,) * (e - s),
                                       (ev.NamedRows("dense", positions, work.base[s:e]),),
                                       (ev.SparseRows("sparse", positions, offsets, indices, values),)), 1 + s)
    ingest_s = time.perf_counter() - t
    gc.collect()
    coll = state.get("bench")
    assert coll is not None and len(coll) == n
    memory = {"rss_delta_bytes": psutil.Process().memory_info().rss - rss,
              "sparse_index_bytes": coll.sparse["sparse"].memory_bytes(),
              "raw_dense_bytes": work.base.nbytes,
              "raw_sparse_bytes": work.corpus.indices.nbytes + work.corpus.values.nbytes}
    memory["rss_delta_bytes_per_point"] = memory["rss_delta_bytes"] / n
    out: dict[str, Any] = {"ingest": {"seconds": ingest_s, "vectors_per_s": n / ingest_s, "batch": BATCH},
                           "memory": memory}
    print(f"[{n}x{dim}] in process: queries ({len(work.dense)} each)", flush=True)

    def opener(kind: str) -> Callable[[], contextlib.AbstractContextManager[Runner]]:
        kind_plans = _plans(work, kind)
        return lambda: contextlib.nullcontext(lambda i: _execute(coll, kind_plans[i]))

    out["queries"] = _timed_kinds(work, opener, len(work.dense))
    return out


def _execute(coll: Collection, plan: plans.Plan) -> Hits:
    with reads.reading(coll):  # as the route: one state of the collection per request
        return [(s.id, s.score) for s in plans.execute(coll, plan)]


# Over HTTP --------------------------------------------------------------------------------
def over_http(work: Workload, workdir: Path) -> dict[str, Any]:
    from qdrant_client import QdrantClient, models

    n, dim = work.base.shape
    port = free_port()
    settings = Settings.load().replace(topic=f"bench.hybrid.{n}x{dim}.{int(time.time())}", data_dir=workdir / "data",
                                       catalog_url="", http=f"127.0.0.1:{port}", grpc="off")
    broker = ensure_broker(settings, workdir)
    settings = settings if broker is None else settings.replace(kafka_bootstrap=broker.bootstrap)
    url = f"http://127.0.0.1:{port}"
    proc = start_server(settings, workdir / "server.log")
    out: dict[str, Any] = {"settings": {k: getattr(settings, k) for k in (
        "snapshot_every_vectors", "snapshot_every_bytes", "snapshot_every_events", "snapshot_every_seconds",
        "segment_bytes")}}
    try:
        http = httpx.Client(base_url=url, timeout=60)
        wait_ready(http, proc)
        client = QdrantClient(url=url, prefer_grpc=False, timeout=600, check_compatibility=False)
        client.create_collection("bench", vectors_config={"dense": models.VectorParams(
                                     size=dim, distance=models.Distance.COSINE)},
                                 sparse_vectors_config={"sparse": models.SparseVectorParams(
                                     modifier=models.Modifier.IDF)},
                                 hnsw_config=models.HnswConfigDiff(m=M, ef_construct=EF_C))  # ef: the default, 64
        idle = psutil.Process(proc.pid).memory_info().rss
        print(f"[{n}x{dim}] over HTTP: {n:,} points in {HTTP_BATCH:,}-point upserts", flush=True)
        started = time.monotonic()
        sent_s = 0.0
        for s in range(0, n, HTTP_BATCH):
            e = min(n, s + HTTP_BATCH)
            sparse = [models.SparseVector(indices=idx.tolist(), values=val.tolist())
                      for idx, val in (work.corpus.row(i) for i in range(s, e))]
            if e == n:
                sent_s = time.monotonic() - started
            vectors: dict[str, Any] = {"dense": work.base[s:e].tolist(), "sparse": sparse}
            client.upsert("bench", models.Batch(ids=list(range(s, e)), vectors=vectors), wait=e == n)
            if s and s % 100_000 == 0:
                print(f"  {s:,} sent, {s / (time.monotonic() - started):,.0f}/s", flush=True)
        while client.count("bench", exact=True).count < n:  # searchable: applied by the projection
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            time.sleep(0.05)
        loaded_s = time.monotonic() - started
        out["ingest"] = {"seconds": loaded_s, "vectors_per_s": n / loaded_s, "sent_but_last_batch_s": sent_s,
                         "batch": HTTP_BATCH}
        rss = psutil.Process(proc.pid).memory_info().rss
        out["memory"] = {"server_idle_rss_bytes": idle, "server_rss_after_ingest_bytes": rss,
                         "rss_delta_bytes": rss - idle, "rss_delta_bytes_per_point": (rss - idle) / n}
        client.close()
        out["floor_get_health"] = http_floor(http)
        print(f"[{n}x{dim}] over HTTP: queries ({len(work.dense)} each)", flush=True)
        requests = _requests(work, models)

        def opener(kind: str) -> Callable[[], contextlib.AbstractContextManager[Runner]]:
            @contextlib.contextmanager
            def runner() -> Iterator[Runner]:
                own = QdrantClient(url=url, prefer_grpc=False, timeout=600, check_compatibility=False)
                try:
                    yield lambda i: [(int(p.id), p.score)
                                     for p in own.query_points("bench", **requests[kind][i]).points]
                finally:
                    own.close()
            return runner

        out["queries"] = _timed_kinds(work, opener, len(work.dense))
        out["memory"]["server_rss_after_queries_bytes"] = psutil.Process(proc.pid).memory_info().rss
        http.close()
    finally:
        stop_server(proc)
        if broker is not None:
            broker.stop()
    return out


def _requests(work: Workload, models: Any) -> dict[str, list[dict[str, Any]]]:
    """qdrant-client's ``query_points`` arguments per kind and query (built before the clock runs)."""
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for i, q in enumerate(work.dense):
        dense = q.tolist()
        terms, values = work.sparse.row(i)
        sparse = models.SparseVector(indices=terms.tolist(), values=values.tolist())
        out["dense"].append({"query": dense, "using": "dense", "limit": K})
        out["sparse"].append({"query": sparse, "using": "sparse", "limit": K})
        prefetch = [models.Prefetch(query=dense, using="dense", limit=PREFETCH),
                    models.Prefetch(query=sparse, using="sparse", limit=PREFETCH)]
        for kind, fusion in (("rrf", models.Fusion.RRF), ("dbsf", models.Fusion.DBSF)):
            out[kind].append({"prefetch": prefetch, "query": models.FusionQuery(fusion=fusion), "limit": K})
    return out


def _table(result: dict[str, Any]) -> str:
    mode = "http" if "http" in result else "in_process"
    run = result[mode]
    lines = [f"{result['n']:,} x {result['dim']} {mode}: ingest {run['ingest']['vectors_per_s']:,.0f} points/s, "
             f"RSS delta {run['memory']['rss_delta_bytes'] / 2**20:,.0f} MiB",
             f"{'kind':<16}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'q/s x4':>9}  recall@10"]
    rows = [(kind, q, q.get("recall_at_10", q.get("recall_at_10_vs_exact_prefetches")))
            for kind, q in run["queries"].items()]
    base = result["baselines"]
    rows += [("hnswlib alone", {**base["hnswlib"], "qps_4_threads": float("nan")}, base["hnswlib"]["recall_at_10"]),
             ("exact sparse np", {**base["exact_sparse_numpy"], "qps_4_threads": float("nan")}, 1.0)]
    for kind, q, r in rows:
        lines.append(f"{kind:<16}{q['p50_ms']:>9.2f}{q['p95_ms']:>9.2f}{q['p99_ms']:>9.2f}{q['qps_4_threads']:>9.1f}"
                     f"  {r:.4f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--http", action="store_true", help="qdrant-client over REST instead of in process")
    args = parser.parse_args()
    if not 200 <= args.queries <= 1000:
        parser.error("--queries: 200 to 1000")
    result: dict[str, Any] = {"command": "python -m benchmarks.hybrid " + " ".join(sys.argv[1:]), "code": commit(),
                              "n": args.n, "dim": args.dim, "queries": args.queries, "k": K,
                              "prefetch_limit": PREFETCH, "threads": THREADS, "m": M, "ef_construction": EF_C,
                              "ef": EF, "machine": machine(NOTE)}
    print(f"[{args.n}x{args.dim}] data and references", flush=True)
    work = Workload(args.n, args.dim, args.queries)
    result["data"] = work.facts
    result["baselines"] = {"exact_sparse_numpy": work.exact_sparse}
    if args.http:
        print(f"[{args.n}x{args.dim}] baseline: hnswlib", flush=True)
        result["baselines"]["hnswlib"] = _hnswlib(work)  # before the server starts: not competing with it
        gc.collect()
        with tempfile.TemporaryDirectory() as tmp:
            result["http"] = over_http(work, Path(tmp))
    else:
        result["in_process"] = in_process(work)
        print(f"[{args.n}x{args.dim}] baseline: hnswlib", flush=True)
        result["baselines"]["hnswlib"] = _hnswlib(work)
    mode = "http" if args.http else "in_process"
    result[mode]["ingest"]["ratio_to_hnswlib_add_items"] = (result[mode]["ingest"]["vectors_per_s"]
                                                            / result["baselines"]["hnswlib"]["add_items_vectors_per_s"])
    result["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"hybrid-{args.n}x{args.dim}{'-http' if args.http else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(_table(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
