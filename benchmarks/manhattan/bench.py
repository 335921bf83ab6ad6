"""Manhattan (L1) HNSW candidates: faiss ``IndexHNSWFlat(METRIC_L1)`` against hnswlib's L2 graph
rescored by L1 (hnswlib has no L1 space), exact L1 search as the truth.

    python -m benchmarks.manhattan.bench --n 100000 --dim 64

Clustered float32 data (``benchmarks.data.clustered``), M 16, ef_construction 200, ef 64, k 10,
200 queries, one thread per query (as the server searches). Prints a JSON line per engine:
build vectors/s, p50 query ms, recall@10 against exact L1. Then the product's ``SegmentedIndex``
in 10,000-row adds: Manhattan (faiss-flat graphs) against Euclid (hnswlib) on the same rows,
each against its own exact truth.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import faiss as _faiss
import hnswlib
import numpy as np

from benchmarks.data import clustered
from projections.index.segments import SegmentedIndex

faiss: Any = _faiss  # its SWIG stubs lack most of the module

M, EF_C, EF, K = 16, 200, 64, 10


def exact_l1(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), np.int64)
    for i, q in enumerate(queries):
        d = np.abs(base - q).sum(axis=1)
        out[i] = np.argsort(d, kind="stable")[:k]
    return out


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def timed(queries: np.ndarray, one: object) -> tuple[list[np.ndarray], float]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(one(q))  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return found, 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    everything = clustered(args.n + 200, args.dim)
    base, queries = np.ascontiguousarray(everything[:args.n]), np.ascontiguousarray(everything[args.n:])
    truth = exact_l1(base, queries, K)
    faiss.omp_set_num_threads(2)

    t = time.perf_counter()
    flat = faiss.IndexHNSWFlat(args.dim, M, faiss.METRIC_L1)
    flat.hnsw.efConstruction = EF_C
    flat.add(base)
    build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    params = faiss.SearchParametersHNSW(efSearch=EF)
    found, p50 = timed(queries, lambda q: flat.search(q.reshape(1, -1), K, params=params)[1][0])
    print(json.dumps({"engine": "faiss IndexHNSWFlat L1", "build_per_s": round(args.n / build),
                      "p50_ms": round(p50, 3), "recall@10": round(recall(found, truth), 4)}), flush=True)

    t = time.perf_counter()
    l2 = hnswlib.Index(space="l2", dim=args.dim)
    l2.init_index(max_elements=args.n, M=M, ef_construction=EF_C, random_seed=100)
    l2.add_items(base, np.arange(args.n), num_threads=2)
    build = time.perf_counter() - t
    for over in (1, 2, 4, 8):
        l2.set_ef(max(EF, K * over))

        def rescored(q: np.ndarray, over: int = over) -> np.ndarray:
            labels, _ = l2.knn_query(q.reshape(1, -1), k=K * over, num_threads=1)
            d = np.abs(base[labels[0]] - q).sum(axis=1)
            return labels[0][np.argsort(d, kind="stable")[:K]]
        found, p50 = timed(queries, rescored)
        print(json.dumps({"engine": f"hnswlib L2, L1 rescore x{over}", "build_per_s": round(args.n / build),
                          "p50_ms": round(p50, 3), "recall@10": round(recall(found, truth), 4)}), flush=True)

    found, p50 = timed(queries, lambda q: np.argsort(np.abs(base - q).sum(axis=1), kind="stable")[:K])
    print(json.dumps({"engine": "exact numpy L1", "p50_ms": round(p50, 3), "recall@10": 1.0}), flush=True)

    # The product's index (projections.index.segments) in 10,000-row adds, as upserts reach it:
    # Manhattan on faiss-flat graphs, against Euclid on hnswlib graphs over the same rows.
    l2_truth = np.stack([np.argsort(((base - q) ** 2).sum(axis=1), kind="stable")[:K] for q in queries])
    for metric, want in (("manhattan", truth), ("l2", l2_truth)):
        index = SegmentedIndex(args.dim, metric, M, EF_C, EF)
        t = time.perf_counter()
        for s in range(0, args.n, 10_000):
            index.add(np.arange(s, min(args.n, s + 10_000)), index.prepare(base[s:s + 10_000]))
        build = time.perf_counter() - t
        found, p50 = timed(queries, lambda q, index=index: index.knn(q, K)[0])
        print(json.dumps({"engine": f"SegmentedIndex {metric} ({index.engine})", "build_per_s": round(args.n / build),
                          "p50_ms": round(p50, 3), "recall@10": round(recall(found, want), 4)}), flush=True)


if __name__ == "__main__":
    main()
