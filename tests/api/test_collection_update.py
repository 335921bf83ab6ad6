"""``PATCH /collections/{c}`` through qdrant-client: quantization turned on and off, HNSW settings
changed, ``on_disk`` honoured, reported by level as Qdrant reports them, surviving a restart
and ``verify``; and the mistakes Qdrant refuses, refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from benchmarks.data import exact_topk
from consumers import integrity
from infra.settings import Settings
from projections.index.hnsw import VectorIndex
from projections.index.quantized import QuantizedGraph, RamRows, RowFile
from tests.api.conftest import Running, serving, unique

DIM, N = 16, 5000


def _points(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, DIM)).astype(np.float32)
    return (centres[rng.integers(0, 30, n)] + 0.35 * rng.normal(size=(n, DIM))).astype(np.float32)


def _recall(client: QdrantClient, name: str, base: np.ndarray, queries: np.ndarray, dot: bool = False) -> float:
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10] if dot else exact_topk(base, queries, 10)
    hits = 0
    for q, want in zip(queries, truth, strict=True):
        got = {int(p.id) for p in client.query_points(name, query=q.tolist(), limit=10).points}
        hits += len(got & set(want.tolist()))
    return hits / (10 * len(queries))


def _graphs(server: Running, name: str) -> list[object]:
    coll = server.replica.projector.state.get(name)
    assert coll is not None
    return [seg.graph for seg in coll.index.segments]


def test_patch_quantizes_a_loaded_collection_and_turns_it_back(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('patch')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0, segment_bytes=2500 * DIM * 4)
    base, queries = _points(N), _points(40, seed=9)
    name = unique("patch")
    with serving(settings) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE,
                                                                     on_disk=False))
        for s in range(0, N, 1000):
            client.upsert(name, m.Batch(ids=list(range(s, s + 1000)), vectors=base[s:s + 1000].tolist()), wait=True)
        assert all(isinstance(g, VectorIndex) for g in _graphs(server, name))
        float32_recall = _recall(client, name, base, queries)

        assert client.update_collection(
            name, hnsw_config=m.HnswConfigDiff(ef_construct=123),
            quantization_config=m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(
                type=m.ScalarType.INT8, quantile=0.99, always_ram=True)),
            vectors_config={"": m.VectorParamsDiff(hnsw_config=m.HnswConfigDiff(m=32), on_disk=True,
                                                   quantization_config=m.ScalarQuantization(
                                                       scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8,
                                                                                         quantile=0.8)))})
        raw = server.http.get(f"/collections/{name}").json()["result"]["config"]
        # Qdrant's levels: the vector's own settings beside the collection's
        assert raw["params"]["vectors"]["hnsw_config"] == {"m": 32}
        assert raw["params"]["vectors"]["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.8}}
        assert raw["params"]["vectors"]["on_disk"] is True
        assert (raw["hnsw_config"]["m"], raw["hnsw_config"]["ef_construct"]) == (16, 123)
        assert raw["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}
        graphs = _graphs(server, name)
        assert len(graphs) == 2 and all(isinstance(g, QuantizedGraph) and g.m == 32 for g in graphs)
        assert client.count(name, exact=True).count == N
        assert _recall(client, name, base, queries) >= min(0.95, float32_recall - 0.03)
        # every point keeps its vector, read from the full-precision rows
        got = client.retrieve(name, ids=[0, 4999], with_vectors=True)
        want = base[[0, 4999]] / np.linalg.norm(base[[0, 4999]], axis=1, keepdims=True)
        assert np.allclose(np.array([p.vector for p in got], np.float32), want, atol=1e-6)
        assert server.replica.projector.request_snapshot(60) is not None

    with serving(settings) as restarted:  # the new settings come back from the snapshot
        client = QdrantClient(url=restarted.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        graphs = _graphs(restarted, name)
        assert all(isinstance(g, QuantizedGraph) and isinstance(g.full.base, RowFile) for g in graphs)
        assert restarted.http.get(f"/collections/{name}").json()["result"]["config"] == raw
        assert client.update_collection(name, vectors_config={"": m.VectorParamsDiff(on_disk=False)})
        assert client.update_collection(name, vectors_config={"": m.VectorParamsDiff(
            quantization_config=m.Disabled.DISABLED)})
        # the collection-level int8 still applies: rows in RAM now (on_disk false)
        assert restarted.replica.projector.request_snapshot(60) is not None
        graphs = _graphs(restarted, name)
        assert all(isinstance(g, QuantizedGraph) and isinstance(g.full.base, RamRows) for g in graphs)
        assert client.update_collection(name, quantization_config=m.Disabled.DISABLED)
        assert all(isinstance(g, VectorIndex) and g.m == 32 for g in _graphs(restarted, name))
        info = client.get_collection(name)
        assert info.config.quantization_config is None and info.config.params.vectors.on_disk is False  # type: ignore[union-attr]
        assert _recall(client, name, base, queries) >= float32_recall - 0.03
    report = integrity.verify(settings)
    assert report.ok, report.problems


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"vectors": {"text": {"on_disk": True}}}, 400, "Wrong input: Not existing vector name error: text"),
    ({"quantization_config": {"product": {"compression": "x4"}}}, 400, "quantization_config.product"),
    ({"quantization_config": {"scalar": {"type": "int8", "quantile": 0.3}}}, 422, "quantile"),
    ({"quantization_config": "Enabled"}, 400, "quantization_config"),
    ({"hnsw_config": {"m": "many"}}, 400, "hnsw_config.m"),
    ({"sparse_vectors": {"s": {"modifier": "idf"}}}, 400, "Wrong input: Not existing vector name error: s"),
    ({"vectors": {"": {"on_disk": "yes"}}}, 400, "on_disk"),
    ({"hnsw_config": {"ef": 10}}, 400, "hnsw_config.ef"),
])
def test_patch_refuses_what_qdrant_refuses(server: Running, body: dict[str, object], status: int,
                                           text: str) -> None:
    name = unique("patchbad")
    assert server.http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Dot"}}).status_code == 200
    r = server.http.patch(f"/collections/{name}", json=body)
    assert r.status_code == status, r.text
    assert text in r.json()["status"]["error"]
    assert server.http.get(f"/collections/{name}").json()["result"]["config"]["quantization_config"] is None


def test_patch_of_a_missing_collection_is_404_and_a_knob_only_patch_changes_nothing(server: Running) -> None:
    r = server.http.patch(f"/collections/{unique('nope')}", json={"quantization_config": "Disabled"})
    assert r.status_code == 404, r.text
    name = unique("knobs")
    http: httpx.Client = server.http
    assert http.put(f"/collections/{name}", json={"vectors": {"size": 4, "distance": "Dot"}}).status_code == 200
    before = http.get(f"/collections/{name}").json()["result"]["config"]
    r = http.patch(f"/collections/{name}", json={"optimizers_config": {"indexing_threshold": 10000},
                                                 "params": {"replication_factor": 1}})
    assert r.status_code == 200 and r.json()["result"] is True
    assert http.get(f"/collections/{name}").json()["result"]["config"] == before


def test_on_disk_float32_vectors_live_on_disk_and_score_exactly(server: Running) -> None:
    """``on_disk: true`` on a float32 collection: a graph over float16 codes in RAM, the float32
    rows on disk (after a snapshot), every score computed from those rows."""
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    name = unique("ondisk")
    base, queries = _points(3000, seed=4), _points(20, seed=8)
    client.create_collection(name, vectors_config=m.VectorParams(size=DIM, distance=m.Distance.DOT, on_disk=True))
    client.upsert(name, m.Batch(ids=list(range(3000)), vectors=base.tolist()), wait=True)
    assert server.replica.projector.request_snapshot(60) is not None
    graphs = _graphs(server, name)
    assert graphs and all(isinstance(g, QuantizedGraph) and g.engine == "faiss-fp16" and g.index is not None
                          and isinstance(g.full.base, RowFile) for g in graphs)
    assert client.get_collection(name).config.params.vectors.on_disk is True  # type: ignore[union-attr]
    for q in queries:
        hits = client.query_points(name, query=q.tolist(), limit=5).points
        assert [p.score for p in hits] == pytest.approx([float(base[int(p.id)] @ q) for p in hits], abs=1e-5)
    got = client.retrieve(name, ids=[7, 2999], with_vectors=True)
    assert np.array_equal(np.array([p.vector for p in got], np.float32), base[[7, 2999]])
    on_disk_recall = _recall(client, name, base, queries, dot=True)
    # back in RAM: hnswlib graphs again, the same points, found about as well
    assert client.update_collection(name, vectors_config={"": m.VectorParamsDiff(on_disk=False)})
    assert all(isinstance(g, VectorIndex) for g in _graphs(server, name))
    assert client.count(name, exact=True).count == 3000
    assert on_disk_recall >= _recall(client, name, base, queries, dot=True) - 0.03


@pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")
def test_named_vectors_and_sparse_modifiers_change_as_in_local_mode(server: Running, tmp_path: Path) -> None:
    """``vectors.<name>`` settings rebuild that vector's graphs (quantized here), ``sparse_vectors.<name>
    .modifier`` switches IDF on: answers before and after match local mode; unknown names are refused."""
    name = unique("named_patch")
    ours, local = QdrantClient(url=server.url, timeout=60), QdrantClient(":memory:")
    rng = np.random.default_rng(11)
    text, image = rng.normal(size=(300, DIM)).astype(np.float32), rng.normal(size=(300, 4)).astype(np.float32)
    points = [m.PointStruct(id=i, vector={"text": text[i].tolist(), "image": image[i].tolist(),
                                          "bm25": m.SparseVector(indices=rng.choice(40, 6, replace=False).tolist(),
                                                                 values=rng.random(6).tolist())})
              for i in range(300)]
    for client in (ours, local):
        client.create_collection(name, vectors_config={"text": m.VectorParams(size=DIM, distance=m.Distance.COSINE),
                                                       "image": m.VectorParams(size=4, distance=m.Distance.EUCLID)},
                                 sparse_vectors_config={"bm25": m.SparseVectorParams()})
        client.upsert(name, points, wait=True)
    sparse_query = m.SparseVector(indices=[1, 2, 3, 5, 8, 13], values=[1.0] * 6)

    def answers(client: QdrantClient) -> list[list[tuple[Any, float]]]:
        out = []
        for using, q in (("text", text[7] + 0.01), ("image", image[9])):
            out.append([(p.id, round(p.score, 4)) for p in client.query_points(
                name, query=q.tolist(), using=using, limit=5, search_params=m.SearchParams(exact=True)).points])
        out.append([(p.id, round(p.score, 4)) for p in client.query_points(name, query=sparse_query, using="bm25",
                                                                           limit=8).points])
        return out

    before = answers(ours)
    assert before == answers(local)
    for client in (ours, local):
        client.update_collection(name, vectors_config={"text": m.VectorParamsDiff(
            hnsw_config=m.HnswConfigDiff(m=8), quantization_config=m.ScalarQuantization(
                scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8)))},
            sparse_vectors_config={"bm25": m.SparseVectorParams(modifier=m.Modifier.IDF)})
    params = ours.get_collection(name).config.params
    assert isinstance(params.vectors, dict) and params.sparse_vectors is not None
    text_params = params.vectors["text"]
    assert text_params.hnsw_config is not None and text_params.hnsw_config.m == 8
    assert text_params.quantization_config is not None and params.vectors["image"].quantization_config is None
    assert params.sparse_vectors["bm25"].modifier == m.Modifier.IDF
    after = answers(ours)
    assert after == answers(local) and after[2] != before[2], "IDF re-weighs the sparse scores"
    assert after[:2] == before[:2], "exact dense answers do not depend on the graphs"
    served = server.replica.projector.state.get(name)
    assert served is not None
    graphs = [seg.graph for seg in served.named["text"].segments]
    assert graphs and all(isinstance(g, QuantizedGraph) for g in graphs), "the text vector's graphs were rebuilt"
    for body in ({"vectors": {"nope": {"hnsw_config": {"m": 8}}}}, {"sparse_vectors": {"nope": {"modifier": "idf"}}},
                 {"vectors": {"": {"hnsw_config": {"m": 8}}}}):
        r = httpx.patch(f"{server.url}/collections/{name}", json=body)
        assert r.status_code == 400 and "Not existing vector name" in r.text, r.text
