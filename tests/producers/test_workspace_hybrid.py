"""Hybrid text search over a workspace collection, through the real broker and server: the
workspace producer writes a BM25 sparse vector beside each chunk's dense one (defined on the log
by the collection's embedder spec), and ``search/text`` answers ``mode`` dense, sparse and
hybrid (both, fused by reciprocal rank) as the Query API answers the same requests; a collection
without a sparse embedder says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from infra.errors import ConfigurationError
from infra.settings import Settings
from tests.api.conftest import Running, serving
from vectorizer import embedders
from vectorizer.workspace import WorkspaceProducer, load

WORKSPACE = """\
projects:
  - root: tree
    collections:
      - name: {name}
        include: ["*.txt"]
        chunk_size: 200
        chunk_overlap: 0
        embedding: {{model: hashing, dimension: 64{sparse}}}
"""
TEXTS = {
    "fruit.txt": "Apples and pears ripen in autumn. The orchard smells of apples.",
    "boats.txt": "A submarine dives below the waves; the submarine crew checks the sonar.",
    "kitchen.txt": "Bake the apples with cinnamon. Serve warm with cream.",
    "harbour.txt": "Boats in the harbour: sail boats, fishing boats and one old submarine.",
}


def _workspace(tmp_path: Path, name: str, sparse: str = "") -> Any:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    for file, text in TEXTS.items():
        (tree / file).write_text(text + "\n")
    (tmp_path / "vectorize-workspace.yml").write_text(WORKSPACE.format(name=name, sparse=sparse))
    return load(tmp_path / "vectorize-workspace.yml")


def _search(server: Running, name: str, status: int = 200, **body: Any) -> Any:
    r = server.http.post(f"/collections/{name}/search/text", json={"limit": 4, **body})
    assert r.status_code == status, r.text
    return r.json()["result"]["points"] if status == 200 else r.json()["status"]["error"]


def test_hybrid_text_search_over_a_workspace_collection(settings: Settings, tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, "hyb")
    spec = workspace.collections[0]
    assert embedders.build_sparse(spec.embedder) is not None, "bm25 is the default sparse embedder"
    with serving(settings) as server:
        with WorkspaceProducer(settings, workspace) as producer:
            producer.sync()
            producer.wait_applied(60)
        info = server.http.get("/collections/hyb").json()["result"]["config"]["params"]
        assert info["sparse_vectors"] == {"bm25": {"modifier": "idf"}} and info["vectors"]["size"] == 64
        client = QdrantClient(url=server.url, timeout=60)
        (record,) = client.retrieve("hyb", ["fruit.txt#0"], with_vectors=True)
        assert isinstance(record.vector, dict) and set(record.vector) == {"", "bm25"}
        sparse = embedders.build_sparse(spec.embedder)
        assert sparse is not None
        want = sparse.embed_documents([TEXTS["fruit.txt"] + "\n"])[0]
        got = record.vector["bm25"]
        assert isinstance(got, m.SparseVector) and got.indices == want[0].tolist()
        assert np.allclose(got.values, want[1])

        query = "submarine boats"
        terms = sparse.embed_query(query)
        dense = embedders.build(spec.embedder).embed([query])[0].tolist()
        by_sparse = _search(server, "hyb", query=query, mode="sparse")
        assert [p["payload"]["path"] for p in by_sparse][:2] in (["boats.txt", "harbour.txt"],
                                                                 ["harbour.txt", "boats.txt"])
        assert {p["payload"]["path"] for p in by_sparse} == {"boats.txt", "harbour.txt"}, "only chunks sharing a word"
        via_query = client.query_points("hyb", query=m.SparseVector(indices=terms[0].tolist(),
                                                                    values=terms[1].tolist()),
                                        using="bm25", limit=4).points
        assert [(p.id, round(p.score, 5)) for p in via_query] == [(p["id"], round(p["score"], 5)) for p in by_sparse]

        hybrid = _search(server, "hyb", query=query, mode="hybrid")
        fused = client.query_points("hyb", prefetch=[
            m.Prefetch(query=dense, limit=50),
            m.Prefetch(query=m.SparseVector(indices=terms[0].tolist(), values=terms[1].tolist()), using="bm25",
                       limit=50)], query=m.FusionQuery(fusion=m.Fusion.RRF), limit=4).points
        assert [(p.id, round(p.score, 6)) for p in fused] == [(p["id"], round(p["score"], 6)) for p in hybrid]
        assert hybrid[0]["payload"]["path"] in ("boats.txt", "harbour.txt")
        assert _search(server, "hyb", query=query, mode="auto") == hybrid, "auto: hybrid when there is a sparse one"
        dense_hits = _search(server, "hyb", query=query)
        assert [p["id"] for p in dense_hits] == [p.id for p in client.query_points("hyb", query=dense, limit=4).points]
        flt = {"must": [{"key": "path", "match": {"value": "harbour.txt"}}]}
        assert [p["payload"]["path"] for p in _search(server, "hyb", query=query, mode="hybrid", filter=flt)] == \
            ["harbour.txt"], "the filter applies to both searches"
        assert "mode" in _search(server, "hyb", 400, query=query, mode="fuzzy")


@pytest.mark.parametrize("mode", ["sparse", "hybrid"])
def test_sparse_modes_need_a_sparse_embedder(settings: Settings, tmp_path: Path, mode: str) -> None:
    workspace = _workspace(tmp_path, "plain", sparse=", sparse: none")
    assert embedders.build_sparse(workspace.collections[0].embedder) is None
    with serving(settings) as server:
        with WorkspaceProducer(settings, workspace) as producer:
            producer.sync()
            producer.wait_applied(60)
        assert "sparse_vectors" not in server.http.get("/collections/plain").json()["result"]["config"]["params"]
        assert "no sparse embedder" in _search(server, "plain", 400, query="apples", mode=mode)
        assert _search(server, "plain", query="apples", mode="auto")[0]["payload"]["path"] in ("fruit.txt",
                                                                                               "kitchen.txt")


def test_bm25_weights_are_a_function_of_the_spec() -> None:
    bm25 = embedders.BM25Embedder(k1=1.2, b=0.75, avg_len=4.0)
    ((indices, values),) = bm25.embed_documents(["cat cat hat"])
    tf = {int(i): float(v) for i, v in zip(indices, values, strict=True)}
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 4.0)
    cat, hat = bm25.embed_query("cat")[0][0], bm25.embed_query("hat")[0][0]
    assert np.isclose(tf[int(cat)], 2 * 2.2 / (2 + norm)) and np.isclose(tf[int(hat)], 1 * 2.2 / (1 + norm))
    assert list(indices) == sorted(indices)
    assert bm25.embed_query("Cat CAT hat")[1].tolist() == [1.0, 1.0], "distinct words, case-folded, weight 1"
    again = embedders.build_sparse({"name": "hashing", "sparse": bm25.spec})
    assert again == bm25
    with pytest.raises(ConfigurationError, match="unknown sparse model"):
        embedders.build_sparse({"name": "hashing", "sparse": {"name": "splade"}})
