"""Server time of one request, without a client or a socket: the ASGI app called in process.

    python -m benchmarks.app_time --n 20000 --dim 128 [--profile search]

A real ``Replica`` (projector and app) over the broker (a local one unless one answers), ``n``
random points loaded through qdrant-client over REST, then each request kind called on the app
``--calls`` times, one after another: ``search`` and ``query`` (top 10), ``retrieve`` (10 ids with
payload and vector), ``upsert`` (100 points, ``wait=false``: until Kafka acknowledged). What is
left when the client's own cost (benchmarks/NOTES.md: httpx spends 1.2 ms a request here) and
uvicorn are taken away: the figure the hot lane (docs/decisions/0012) was measured with.
``--profile KIND`` prints cProfile's top functions of that kind.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ingest import ensure_broker, free_port
from infra.settings import Settings

CALLS = {"search": 2000, "query": 2000, "retrieve": 2000, "upsert": 300}


def run(n: int, dim: int, profile: str | None = None, calls: dict[str, int] | None = None) -> dict[str, float]:
    """Milliseconds of server time a call, by kind."""
    from qdrant_client import QdrantClient, models

    from vectorizer.api.server import Replica

    workdir = Path(tempfile.mkdtemp(prefix="vz-app-"))
    settings = Settings.load().replace(topic=f"bench.app.{int(time.time())}", data_dir=workdir / "data",
                                       catalog_url="", http=f"127.0.0.1:{free_port()}", grpc="off")
    broker = ensure_broker(settings, workdir)
    settings = settings if broker is None else settings.replace(kafka_bootstrap=broker.bootstrap)
    replica = Replica(settings)
    server = threading.Thread(target=replica.serve, daemon=True)
    server.start()
    try:
        client = QdrantClient(url=f"http://{settings.http}", check_compatibility=False, timeout=120)
        deadline = time.monotonic() + 120
        while not replica.projector.serving():
            if time.monotonic() > deadline or not server.is_alive():
                raise RuntimeError(f"the server did not get ready: {replica.failure!r}")
            time.sleep(0.1)
        base = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
        client.create_collection("b", vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
        for s in range(0, n, 1000):
            e = min(n, s + 1000)
            client.upsert("b", models.Batch(ids=list(range(s, e)), vectors=base[s:e].tolist(),
                                            payloads=[{"i": i} for i in range(s, e)]), wait=e == n)
        q = base[5].tolist()
        kinds = {
            "search": ("POST", "/collections/b/points/search", {"vector": q, "limit": 10}),
            "query": ("POST", "/collections/b/points/query", {"query": q, "limit": 10, "with_payload": True}),
            "retrieve": ("POST", "/collections/b/points", {"ids": list(range(10)), "with_payload": True,
                                                           "with_vector": True}),
            "upsert": ("PUT", "/collections/b/points?wait=false",
                       {"batch": {"ids": list(range(100)), "vectors": base[:100].tolist()}}),
        }
        return asyncio.run(_timed(replica.app, kinds, calls or CALLS, profile))
    finally:
        replica.request_stop()
        server.join(60)
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _timed(app: Any, kinds: dict[str, tuple[str, str, Any]], calls: dict[str, int],
                 profile: str | None) -> dict[str, float]:
    out = {}
    for kind, (method, path, body) in kinds.items():
        raw = json.dumps(body).encode()
        status = await _call(app, method, path, raw)
        if status != 200:
            raise RuntimeError(f"{kind}: answered {status}")
        t0 = time.perf_counter()
        for _ in range(calls[kind]):
            await _call(app, method, path, raw)
        out[kind] = (time.perf_counter() - t0) / calls[kind] * 1000
        print(f"{kind}: {out[kind]:.3f} ms a call", flush=True)
        if kind == profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(calls[kind]):
                await _call(app, method, path, raw)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return out


async def _call(app: Any, method: str, path: str, raw: bytes) -> int:
    route, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": route, "raw_path": route.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    given = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal given
        if given:
            await asyncio.Event().wait()  # no disconnect while the answer is written
        given = True
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--profile", choices=sorted(CALLS), help="cProfile one kind after timing it")
    args = ap.parse_args(argv)
    run(args.n, args.dim, args.profile)


if __name__ == "__main__":
    main(sys.argv[1:])
