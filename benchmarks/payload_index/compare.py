"""Postings for a keyword index: sorted numpy columns (what projections/payload_index.py keeps)
against Roaring bitmaps (pyroaring), on 1M points holding one of 100 values (1 % each) and one
of 2 (50 %), the shapes of benchmarks/filtered.py.

    python -m benchmarks.payload_index.compare

Measured: memory per point, build time, the matches of one value as the numpy label array the
exact scan and the bitmap need, the intersection of a 1 % and a 50 % value, and 1,000 single-point
updates followed by a read; and a field whose every point holds its own value (an id as a keyword),
where roaring needs one bitmap object per value. Writes benchmarks/payload_index/results.json (docs/decisions/0006).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from pyroaring import BitMap

from projections.payload_index import FieldIndex
from projections.planner import _intersect

N = 1_000_000
OUT = Path(__file__).resolve().parent / "results.json"


def _time(fn: Any, repeat: int = 50) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000


def main() -> None:
    payloads = {i: {"p1": f"v{i % 100}", "p50": f"v{i % 2}"} for i in range(N)}
    out: dict[str, Any] = {"n": N}

    t = time.perf_counter()
    ours = {f: FieldIndex(f, "keyword") for f in ("p1", "p50")}
    for index in ours.values():
        index.build(payloads)
    build = time.perf_counter() - t
    out["numpy_columns"] = {
        "build_s": build,
        "bytes_per_point": sum(i.memory_bytes() for i in ours.values()) / N / 2,
        "one_value_ms": _time(lambda: ours["p1"].answer("match", {"value": "v7"})),
        "intersect_1pct_50pct_ms": _time(lambda: _intersect(ours["p1"].answer("match", {"value": "v7"})[0],
                                                            ours["p50"].answer("match", {"value": "v1"})[0])),
    }
    t = time.perf_counter()
    for label in range(1000):
        ours["p1"].update(label * 997, payloads[label * 997], {"p1": "v3"})
    ours["p1"].answer("match", {"value": "v3"})
    out["numpy_columns"]["1000_updates_then_read_ms"] = (time.perf_counter() - t) * 1000

    t = time.perf_counter()
    roaring: dict[str, dict[str, BitMap]] = {}
    for field in ("p1", "p50"):
        groups: dict[str, list[int]] = {}
        for label, payload in payloads.items():
            groups.setdefault(payload[field], []).append(label)
        roaring[field] = {value: BitMap(labels) for value, labels in groups.items()}
    build = time.perf_counter() - t
    size = sum(len(b.serialize()) for f in roaring.values() for b in f.values())
    out["roaring"] = {
        "build_s": build,
        "bytes_per_point": size / N / 2,
        "one_value_ms": _time(lambda: np.asarray(roaring["p1"]["v7"].to_array(), dtype=np.int64)),
        "intersect_1pct_50pct_ms": _time(lambda: np.asarray((roaring["p1"]["v7"] & roaring["p50"]["v1"]).to_array(),
                                                            dtype=np.int64)),
    }
    t = time.perf_counter()
    for label in range(1000):
        roaring["p1"][payloads[label * 997]["p1"]].discard(label * 997)
        roaring["p1"]["v3"].add(label * 997)
    np.asarray(roaring["p1"]["v3"].to_array(), dtype=np.int64)
    out["roaring"]["1000_updates_then_read_ms"] = (time.perf_counter() - t) * 1000
    process = psutil.Process(os.getpid())
    before = process.memory_info().rss
    unique = FieldIndex("id", "keyword")
    unique.build({i: {"id": f"u{i}"} for i in range(N)})
    out["numpy_columns"]["unique_values_bytes_per_point"] = unique.memory_bytes() / N
    del unique
    before = process.memory_info().rss
    singletons = {i: BitMap([i]) for i in range(N)}
    out["roaring"]["unique_values_bytes_per_point"] = (process.memory_info().rss - before) / N
    del singletons
    t = time.perf_counter()
    BitMap(np.arange(N, dtype=np.uint32))
    out["roaring"]["from_numpy_1m_labels_ms"] = (time.perf_counter() - t) * 1000
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
