"""What read-your-writes costs: upsert latency acknowledged (``wait=false``: Kafka has it) against
applied (``wait=true``, what ``Settings.read_your_writes`` makes the default), of 1 point and of
1,000 points, through the real server over REST.

Command: ``python -m benchmarks.write_wait [--dim 128] [--rounds 40]`` (uses the broker at
``VECTORIZER_KAFKA_BOOTSTRAP`` or starts a local one); the result goes to
``benchmarks/results/write-wait-<dim>.json`` for ``benchmarks.report``. The two kinds alternate within one run, so
they share the machine's state; each write is applied before the next is timed. The difference of
their medians is the apply latency a write waits.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.ingest import ensure_broker, percentiles, serve_until_ready
from infra.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"


def measure(http: httpx.Client, collection: str, size: int, dim: int, rounds: int) -> dict[str, Any]:
    """``rounds`` upserts of ``size`` points for each ``wait`` value, alternating; percentiles in ms."""
    rng = np.random.default_rng(size)
    times: dict[str, list[float]] = {"acknowledged": [], "applied": []}
    next_id = 0
    for _ in range(rounds):
        for kind, wait in (("acknowledged", "false"), ("applied", "true")):
            rows = rng.standard_normal((size, dim), dtype=np.float32).round(4).tolist()
            body = {"points": [{"id": next_id + i, "vector": row} for i, row in enumerate(rows)]}
            next_id += size
            began = time.perf_counter()
            r = http.put(f"/collections/{collection}/points", params={"wait": wait}, json=body)
            times[kind].append(time.perf_counter() - began)
            r.raise_for_status()
            # Let the acknowledged write be applied before the next one is timed, so an applied
            # write never waits for its predecessor too.
            token = r.json()["result"]["write_token"]
            http.get(f"/collections/{collection}", params={"consistency": token}).raise_for_status()
    return {kind: percentiles(samples) for kind, samples in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="write_wait_"))
    settings = Settings.load({"topic": f"bench.write_wait.{uuid.uuid4().hex[:8]}", "data_dir": workdir / "data"})
    broker = ensure_broker(settings, workdir)
    if broker is not None:
        settings = settings.replace(kafka_bootstrap=broker.bootstrap)
    replica, thread, _ = serve_until_ready(settings)
    try:
        with httpx.Client(base_url=f"http://{replica.settings.http}", timeout=120) as http:
            http.put("/collections/w", json={"vectors": {"size": args.dim, "distance": "Cosine"}}).raise_for_status()
            results = {f"{size} point{'s' if size > 1 else ''}": measure(http, "w", size, args.dim, args.rounds)
                       for size in (1, 1000)}
    finally:
        replica.request_stop()
        thread.join(60)
        if broker is not None:
            broker.stop()
    out = {"command": f"python -m benchmarks.write_wait --dim {args.dim} --rounds {args.rounds}", "dim": args.dim,
           "rounds": args.rounds, "load_average": os.getloadavg(), "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"write-wait-{args.dim}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
