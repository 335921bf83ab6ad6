"""A query's ``hnsw_ef`` is its own while other threads query the same collection at another ``ef``.

hnswlib's search breadth is one field of the whole index; the server must not let a query at
``hnsw_ef=1`` lower the breadth of a concurrent one at ``hnsw_ef=400`` (issue 13, defect 6).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from tests.api.conftest import Running, unique

N, DIM, K, QUERIES = 3000, 32, 10, 150


@pytest.fixture(scope="module")
def client(server: Running) -> Iterator[QdrantClient]:
    c = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    yield c
    c.close()


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def test_high_ef_queries_keep_their_recall_while_others_run_at_ef_1(server: Running, client: QdrantClient) -> None:
    name = unique("ef")
    rng = np.random.default_rng(7)
    data = rng.standard_normal((N, DIM)).astype(np.float32)
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    # A sparse graph (m=8, ef_construct=32): recall at ef=k is far below recall at ef=400.
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.EUCLID),
                             hnsw_config=m.HnswConfigDiff(m=8, ef_construct=32))
    client.upload_points(name, [m.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(data)],
                         batch_size=500, wait=True)

    def ask(q: np.ndarray, ef: int | None = None, exact: bool = False) -> list[int]:
        params = m.SearchParams(hnsw_ef=ef, exact=exact)
        return [int(p.id) for p in client.query_points(name, q.tolist(), limit=K, search_params=params).points]

    truth = [ask(q, exact=True) for q in queries]
    alone = [ask(q, 400) for q in queries]
    low = [ask(q, 1) for q in queries]
    assert _recall(alone, truth) > 0.95
    assert _recall(low, truth) < _recall(alone, truth) - 0.2  # the data is sensitive to ef

    stop = threading.Event()
    hammered = 0

    def hammer() -> None:
        nonlocal hammered
        other = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        i = 0
        while not stop.is_set():
            other.query_points(name, queries[i % QUERIES].tolist(), limit=1, search_params=m.SearchParams(hnsw_ef=1))
            i, hammered = i + 1, hammered + 1
        other.close()

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        together = [ask(q, 400) for _ in range(3) for q in queries]
    finally:
        stop.set()
        thread.join(60)
    assert hammered > len(together) // 2  # the two really ran side by side
    # The same query at the same ef on the same graph finds the same points: any difference
    # is a query that ran at another query's ef.
    assert together == alone * 3
    assert _recall(together, truth * 3) == _recall(alone * 3, truth * 3)
