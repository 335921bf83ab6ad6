"""The sparse vectors' inverted index (``projections.sparse.SparseIndex``) against scipy.sparse.

    python -m benchmarks.sparse_index.compare --n 100000     # and --n 1000000

Points with 100 non-zeros each over a 30,000-term vocabulary (uniform), 200 queries of 100
terms, k=10, exact dot products on both sides. scipy keeps a CSR matrix and its transpose
(term -> points: the postings); a query is either the full product with the query vector or
the query's rows of the transpose summed with ``np.bincount``. Also measured: the cost of one
point re-upserted (the index writes it in place; a CSR matrix has no cheap row replacement and
is rebuilt) and bytes per non-zero. Writes ``benchmarks/sparse_index/results-<n>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from projections.sparse import SparseIndex

VOCABULARY, NNZ, QUERIES, K = 30_000, 100, 200, 10


def _p50_ms(queries: list[tuple[np.ndarray, np.ndarray]], run: Callable[[np.ndarray, np.ndarray], Any]) -> float:
    times = []
    for indices, values in queries:
        start = time.perf_counter()
        run(indices, values)
        times.append(time.perf_counter() - start)
    return round(float(np.percentile(times, 50)) * 1000, 3)


def _top(scores: np.ndarray) -> np.ndarray:
    best = np.argpartition(-scores, K)[:K]
    return best[np.argsort(-scores[best], kind="stable")]


def main() -> None:
    import scipy  # type: ignore[import-untyped]  # bench extra
    import scipy.sparse as sp  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    n = parser.parse_args().n
    rng = np.random.default_rng(0)
    indices = np.concatenate([rng.choice(VOCABULARY, NNZ, replace=False) for _ in range(n)]).astype(np.uint32)
    values = rng.random(n * NNZ).astype(np.float32)
    offsets = np.arange(0, n * NNZ + 1, NNZ)
    queries = [(np.sort(rng.choice(VOCABULARY, 100, replace=False)).astype(np.uint32),
                rng.random(100).astype(np.float32)) for _ in range(QUERIES)]
    out: dict[str, Any] = {"n": n, "nnz_per_point": NNZ, "vocabulary": VOCABULARY, "scipy": scipy.__version__,
                           "command": f"python -m benchmarks.sparse_index.compare --n {n}"}
    start = time.perf_counter()
    index = SparseIndex()
    index.put_many(np.arange(n), offsets, indices, values)
    out["index_build_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    matrix = sp.csr_matrix((values, indices, offsets), shape=(n, VOCABULARY))
    postings = matrix.T.tocsr()
    out["scipy_build_s"] = round(time.perf_counter() - start, 2)

    def product(qi: np.ndarray, qv: np.ndarray) -> np.ndarray:
        query = sp.csr_matrix((qv, qi, [0, len(qi)]), shape=(1, VOCABULARY))
        return _top((query @ postings).toarray()[0])

    def summed(qi: np.ndarray, qv: np.ndarray) -> np.ndarray:
        rows = postings[qi]
        return _top(np.bincount(rows.indices, weights=np.repeat(qv, np.diff(rows.indptr)) * rows.data, minlength=n))

    out["index_query_p50_ms"] = _p50_ms(queries, lambda qi, qv: index.search(qi, qv, K))
    out["scipy_product_p50_ms"] = _p50_ms(queries, product)
    out["scipy_postings_p50_ms"] = _p50_ms(queries, summed)
    out["same_top10"] = all(set(index.search(qi, qv, K)[0].tolist()) == set(summed(qi, qv).tolist())
                            for qi, qv in queries[:20])
    start = time.perf_counter()
    index.put(5, indices[:NNZ], values[:NNZ])
    out["index_one_upsert_ms"] = round((time.perf_counter() - start) * 1000, 3)
    start = time.perf_counter()
    sp.csr_matrix((values, indices, offsets), shape=(n, VOCABULARY)).T.tocsr()
    out["scipy_rebuild_ms"] = round((time.perf_counter() - start) * 1000, 1)
    out["index_bytes_per_nnz"] = round(index.memory_bytes() / (n * NNZ), 1)
    out["scipy_bytes_per_nnz"] = round(sum(a.nbytes for a in (matrix.data, matrix.indices, postings.data,
                                                              postings.indices)) / (n * NNZ), 1)
    print(json.dumps(out, indent=1))
    (Path(__file__).parent / f"results-{n}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
