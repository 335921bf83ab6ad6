"""Vectors come back as Qdrant prints them: each stored float32 as its shortest round-trip decimal
(``[0.15, 0.31]``, not ``[0.15000000596046448, 0.3100000023841858]``; issue 13, defect 5)."""

from __future__ import annotations

import json

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as m

from projections.index.hnsw import normalize
from tests.api.conftest import Running, unique
from vectorizer.api.floats import shortest


def _reference(values: np.ndarray) -> list[float]:
    """numpy's Dragon4 shortest repr of each float32, element by element."""
    return [float(str(v)) for v in values]


def test_shortest_is_numpys_shortest_repr_and_round_trips_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    samples = [
        bits[np.isfinite(bits)],  # every magnitude, subnormals included
        rng.standard_normal(200_000).astype(np.float32),
        (rng.integers(-10**6, 10**6, 200_000) / 10.0 ** rng.integers(0, 8, 200_000)).astype(np.float32),
        np.array([0.0, -0.0, 1.0, -2.0, 0.5, 2.0**-20, 2.0**100, 1e-45, 3.4028235e38, 16777216.0, 0.15, 0.31,
                  1e-14, 9.999999e21, 1e23, np.inf, -np.inf], np.float32),
    ]
    for values in samples:
        out = shortest(values)
        assert out.dtype == np.float64 and out.shape == values.shape
        assert np.array_equal(out.astype(np.float32).view(np.uint32), values.view(np.uint32))  # bit for bit
        assert [repr(x) for x in out.tolist()] == [repr(x) for x in _reference(values)]
    grid = rng.standard_normal((3, 5)).astype(np.float32)
    assert shortest(grid).tolist() == [_reference(row) for row in grid]


def test_retrieve_scroll_and_query_return_the_vectors_as_written(server: Running) -> None:
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    name, cosine = unique("vec_dot"), unique("vec_cos")
    client.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    client.create_collection(cosine, vectors_config=m.VectorParams(size=768, distance=m.Distance.COSINE))
    client.upsert(name, [m.PointStruct(id=1, vector=[0.15, 0.31]), m.PointStruct(id=2, vector=[-1e-7, 3e5])],
                  wait=True)
    assert [p.vector for p in client.retrieve(name, [1, 2], with_vectors=True)] == [[0.15, 0.31], [-1e-7, 3e5]]
    assert [p.vector for p in client.scroll(name, with_vectors=True)[0]] == [[0.15, 0.31], [-1e-7, 3e5]]
    hits = client.query_points(name, [1.0, 0.0], with_vectors=True, limit=2).points
    assert {p.id: p.vector for p in hits} == {1: [0.15, 0.31], 2: [-1e-7, 3e5]}
    raw = server.http.post(f"/collections/{name}/points/search",
                           json={"vector": [1.0, 0.0], "limit": 1, "with_vector": True})
    assert '"vector":[0.15,0.31]' in raw.text.replace(" ", "")
    assert server.http.get(f"/collections/{name}/points/1").json()["result"]["vector"] == [0.15, 0.31]

    # A long vector, stored normalised (cosine): the answer parses back to the stored float32 exactly.
    vector = np.random.default_rng(5).standard_normal(768).astype(np.float32)
    client.upsert(cosine, [m.PointStruct(id=9, vector=vector.tolist())], wait=True)
    stored = normalize(vector.reshape(1, -1))[0]  # what the index holds, computed as the server does
    text = server.http.post(f"/collections/{cosine}/points", json={"ids": [9], "with_vector": True}).text
    answered = json.loads(text)["result"][0]["vector"]
    assert np.array_equal(np.array(answered, np.float32).view(np.uint32), stored.view(np.uint32))
    assert answered == _reference(np.array(answered, np.float32))  # each number printed shortest
