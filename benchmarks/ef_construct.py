"""ef_construct 100 (Qdrant's default) against 200 (this server's): build rate and recall@10 of hnswlib
alone (M 16, one thread), on the clustered benchmark data and on Gaussian vectors (the hard case).

Command: ``python -m benchmarks.ef_construct [--n 100000] [--gaussian-n 50000]``. Both values are
built in the same process on the same data, so their ratio is what to read; the result goes to
``benchmarks/results/ef-construct.json`` for ``benchmarks.report``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import hnswlib
import numpy as np

from benchmarks.data import dataset, exact_topk

DIM = 128
RESULTS = Path(__file__).resolve().parent / "results"


def compare(base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for efc in (100, 200):
        index = hnswlib.Index(space="cosine", dim=base.shape[1])
        index.init_index(max_elements=len(base), M=16, ef_construction=efc, random_seed=1)
        began = time.perf_counter()
        index.add_items(base, np.arange(len(base)), num_threads=1)
        row: dict[str, float] = {"build_points_per_s": len(base) / (time.perf_counter() - began)}
        for ef in (64, 128):
            index.set_ef(ef)
            labels, _ = index.knn_query(queries, k=10, num_threads=1)
            row[f"recall@10_ef{ef}"] = float(np.mean([len(set(found) & set(t[:10].tolist())) / 10
                                                      for found, t in zip(labels, truth, strict=True)]))
        out[f"ef_construct {efc}"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--gaussian-n", type=int, default=50_000)
    args = parser.parse_args()
    base, queries, truth = dataset(args.n, DIM, 1000)
    rng = np.random.default_rng(3)
    g_base = rng.standard_normal((args.gaussian_n, DIM), dtype=np.float32)
    g_queries = rng.standard_normal((500, DIM), dtype=np.float32)
    out = {"command": f"python -m benchmarks.ef_construct --n {args.n} --gaussian-n {args.gaussian_n}",
           "load_average": os.getloadavg(),
           "results": {f"clustered {args.n:,} × {DIM}": compare(base, queries, truth),
                       f"Gaussian {args.gaussian_n:,} × {DIM}": compare(g_base, g_queries,
                                                                         exact_topk(g_base, g_queries, 10))}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ef-construct.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
