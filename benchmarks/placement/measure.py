"""Where a float32 collection's vectors live: hnswlib (inside the graph, RAM) against faiss over
float16 codes with the float32 rows on disk (``on_disk: true``), through the projection.

    python -m benchmarks.placement.measure --n 100000 --dim 128

Per engine, one process loads the collection through ``ProjectionState`` (1,000-point events)
and snapshots it (the rows go to disk); a fresh process loads the snapshot alone, answers k=10
searches (p50 / p99, recall@10 against exact search) and reports its RSS, beside the RSS of a
process holding only the same imports and data (``floor``).
Writes ``benchmarks/placement/results-<n>x<dim>.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def build(engine: str, n: int, dim: int, folder: Path) -> dict[str, object]:
    from benchmarks.data import dataset
    from consumers import snapshots
    from projections.state import ProjectionState
    from schemas import events as ev

    base, _, _ = dataset(n, dim, 500)
    state = ProjectionState()
    meta = ev.EventMeta.new("bench", "p")
    state.apply(ev.CollectionCreated(meta, dim, "cosine", on_disk=True if engine == "fp16-on-disk" else None), 0)
    t = time.perf_counter()
    for s in range(0, n, 1000):
        state.apply(ev.VectorsUpserted(meta, tuple(range(s, min(n, s + 1000))), base[s:s + 1000],
                                       (None,) * len(base[s:s + 1000])), 1 + s // 1000)
    load_s = time.perf_counter() - t
    path = snapshots.write_snapshot(state, {0: n // 1000}, folder, "placement")
    return {"insert_vectors_per_s": n / load_s, "snapshot": str(path),
            "snapshot_bytes": sum(f.stat().st_size for f in path.iterdir()),
            "files": {f.name.split(".", 2)[-1]: f.stat().st_size for f in path.iterdir()}}


def serve(n: int, dim: int, snapshot: str | None) -> dict[str, object]:
    from benchmarks.data import dataset
    from benchmarks.ingest import our_queries, percentiles, recall
    from consumers import snapshots

    _, queries, truth = dataset(n, dim, 500)
    if snapshot is None:
        return {"rss_bytes": psutil.Process().memory_info().rss}
    loaded = snapshots.load(Path(snapshot))
    lat, found = our_queries(loaded.state.get("bench"), queries)
    return {"rss_bytes": psutil.Process().memory_info().rss,
            "query": {**percentiles(lat), "recall_at_10": recall(found, truth)}}


def _run(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.placement.measure", *args], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--build")
    parser.add_argument("--serve")
    parser.add_argument("--folder")
    args = parser.parse_args()
    size = ["--n", str(args.n), "--dim", str(args.dim)]
    if args.build:
        print(json.dumps(build(args.build, args.n, args.dim, Path(args.folder))))
        return
    if args.serve is not None:
        print(json.dumps(serve(args.n, args.dim, args.serve or None)))
        return
    from benchmarks.data import dataset
    dataset(args.n, args.dim, 500)  # cached once, outside the measured processes
    out: dict[str, object] = {"floor": _run(*size, "--serve", "")}
    for engine in ("hnswlib", "fp16-on-disk"):
        built = _run(*size, "--build", engine, "--folder", tempfile.mkdtemp(prefix="placement-"))
        out[engine] = {**built, **_run(*size, "--serve", str(built["snapshot"]))}
        print(engine, out[engine], flush=True)
    print(out["floor"])
    (HERE / f"results-{args.n}x{args.dim}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
