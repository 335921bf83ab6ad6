"""Collection creation rejects what Qdrant rejects, with Qdrant's status (issue 13, defect 8).

Qdrant answers a value of the wrong type (serde) with 400 ``Format error in JSON body: ...`` and
a well-typed value its validation refuses with 422 ``Validation error in JSON body: [field:
reason]`` (``src/actix/mod.rs``, ``validation_error_handler``). Product and binary quantization
do not exist here: asking for them is a 400 naming the field, never an option silently dropped.
"""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.api.conftest import Running, unique

VECTORS = {"size": 2, "distance": "Dot"}


def _create(server: Running, body: dict[str, Any]) -> tuple[str, int, str]:
    name = unique("create")
    r = server.http.put(f"/collections/{name}", json={"vectors": VECTORS, **body})
    error = r.json().get("status", {}).get("error", "") if r.status_code != 200 else ""
    return name, r.status_code, error


@pytest.mark.parametrize("field", ["shard_number", "replication_factor", "write_consistency_factor"])
def test_counts_below_one_are_refused_as_qdrant_does(server: Running, field: str) -> None:
    name, status, error = _create(server, {field: 0})
    assert (status, error) == (422, f"Validation error in JSON body: [{field}: value 0 invalid, must be 1 or larger]")
    assert server.http.get(f"/collections/{name}").status_code == 404
    _, status, error = _create(server, {field: -1})
    assert (status, error) == (400, f"Format error in JSON body: {field}: invalid value: integer `-1`, expected u32")
    _, status, error = _create(server, {field: "2"})
    assert status == 400 and error.startswith(f"Format error in JSON body: {field}: invalid type: string")
    name, status, _ = _create(server, {field: 1})
    assert status == 200
    assert server.http.get(f"/collections/{name}").json()["result"]["config"]["params"][field] == 1


@pytest.mark.parametrize(("body", "field", "storage"), [
    ({"vectors": {**VECTORS, "memory": "pinned"}}, "vectors.memory", "dense vector storage"),
    ({"payload": {"memory": "pinned"}}, "payload.memory", "payload storage"),
])
def test_pinned_memory_is_refused_where_qdrant_refuses_it(server: Running, body: dict[str, Any], field: str,
                                                          storage: str) -> None:
    name, status, error = _create(server, body)
    assert (status, error) == (422, f"Validation error in JSON body: [{field}: `pinned` memory placement is not "
                                    f"supported for {storage}]")
    assert server.http.get(f"/collections/{name}").status_code == 404


def test_memory_placements_qdrant_accepts_are_accepted(server: Running) -> None:
    assert _create(server, {"vectors": {**VECTORS, "memory": "cold", "on_disk": True},
                            "hnsw_config": {"memory": "pinned", "on_disk": False},
                            "payload": {"memory": "cached"}, "on_disk_payload": True})[1] == 200
    _, status, error = _create(server, {"vectors": {**VECTORS, "memory": "hot"}})
    assert status == 400 and error.startswith("Format error in JSON body: vectors.memory: unknown variant `hot`")
    _, status, error = _create(server, {"on_disk_payload": "yes"})
    assert status == 400 and "on_disk_payload: invalid type: string" in error


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"hnsw_config": {"ef_construct": 3}}, "hnsw_config.ef_construct", "value 3 invalid, must be 4 or larger"),
    ({"hnsw_config": {"full_scan_threshold": 5}}, "hnsw_config.full_scan_threshold",
     "value 5 invalid, must be 10 or larger"),
    ({"wal_config": {"wal_capacity_mb": 0}}, "wal_config.wal_capacity_mb", "value 0 invalid, must be 1 or larger"),
    ({"optimizers_config": {"deleted_threshold": 1.5}}, "optimizers_config.deleted_threshold",
     "value 1.5 invalid, must be from 0.0 to 1.0"),
    ({"optimizers_config": {"vacuum_min_vector_number": 10}}, "optimizers_config.vacuum_min_vector_number",
     "value 10 invalid, must be 100 or larger"),
])
def test_tuning_values_qdrant_refuses_are_refused(server: Running, body: dict[str, Any], field: str,
                                                  reason: str) -> None:
    name, status, error = _create(server, body)
    assert (status, error) == (422, f"Validation error in JSON body: [{field}: {reason}]")
    assert server.http.get(f"/collections/{name}").status_code == 404


def test_product_and_binary_quantization_are_refused_naming_the_field_not_dropped(server: Running) -> None:
    client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
    product = m.ProductQuantization(product=m.ProductQuantizationConfig(compression=m.CompressionRatio.X16))
    binary = m.BinaryQuantization(binary=m.BinaryQuantizationConfig())
    for top, per_vector, field in ((product, None, "quantization_config.product"),
                                   (None, binary, "vectors.quantization_config.binary")):
        name = unique("quant")
        with pytest.raises(UnexpectedResponse) as raised:
            client.create_collection(name, quantization_config=top, vectors_config=m.VectorParams(
                size=2, distance=m.Distance.DOT, quantization_config=per_vector))
        assert raised.value.status_code == 400
        assert str(raised.value.content, "utf-8").count(f'"{field}: not supported by this server') == 1
        assert not client.collection_exists(name)
    name, status, error = _create(server, {"quantization_config": {"scalar": {"type": "int8", "quantile": 0.3}}})
    assert (status, error) == (422, "Validation error in JSON body: [quantization_config.scalar.quantile: value 0.3 "
                                    "invalid, must be from 0.5 to 1.0]")
    name, status, error = _create(server, {"strict_mode_config": {"enabled": True, "max_query_limit": 10}})
    assert status == 400 and error.startswith("strict_mode_config: not supported")
    assert _create(server, {"quantization_config": None, "strict_mode_config": {"enabled": False}})[1] == 200


@pytest.mark.parametrize(("body", "message"), [
    ({"vectors": {"size": 64, "distance": "Cosine"}, "embedder": {"name": "hashing", "dimension": 32}},
     "embedder: its dimension is 32, the vector's size 64"),
    ({"vectors": {"size": 64, "distance": "Cosine"}, "embedder": {"name": "word2vec"}}, "unknown model 'word2vec'"),
    ({"vectors": {"size": 64, "distance": "Cosine"}, "embedder": {"name": "hashing", "dimension": 64,
                                                                    "sparse": {"name": "bm25"}}},
     "embedder.sparse: not supported here"),
    ({"vectors": {"a": {"size": 64, "distance": "Cosine"}}, "embedder": {"name": "hashing", "dimension": 64}},
     "embedder: an embedder fills the unnamed vector"),
    ({"vectors": {"size": 64, "distance": "Cosine"}, "embedder": "hashing"}, "embedder"),
])
def test_an_embedder_that_cannot_fill_the_vector_is_refused(server: Running, body: dict[str, Any],
                                                            message: str) -> None:
    name = unique("emb")
    r = server.http.put(f"/collections/{name}", json=body)
    assert r.status_code == 400 and message in r.json()["status"]["error"], r.text
    assert server.http.get(f"/collections/{name}/exists").json()["result"]["exists"] is False


def test_texts_are_embedded_and_kept_in_the_payload(server: Running) -> None:
    name = unique("emb")
    assert server.http.put(f"/collections/{name}", json={"vectors": {"size": 512, "distance": "Cosine"},
                                                         "embedder": {"name": "hashing", "dimension": 512}}
                           ).status_code == 200
    r = server.http.put(f"/collections/{name}/points/text", params={"wait": "true"}, json={"points": [
        {"id": 1, "text": "the log is the source of truth"},
        {"id": 2, "text": "snapshots bound recovery", "payload": {"text": "own text wins", "n": 2}}]})
    assert r.status_code == 200 and r.json()["result"]["status"] == "completed", r.text
    got = server.http.post(f"/collections/{name}/points", json={"ids": [1, 2], "with_vector": True}).json()["result"]
    assert [p["payload"] for p in got] == [{"text": "the log is the source of truth"},
                                           {"text": "own text wins", "n": 2}]
    assert len(got[0]["vector"]) == 512
    hits = server.http.post(f"/collections/{name}/search/text", json={"query": "source of truth", "limit": 1})
    assert hits.json()["result"]["points"][0]["id"] == 1
    for body, message in (({"points": [{"id": 3, "text": "  "}]}, "points[0].text: expected a non-empty text"),
                          ({"points": [{"id": 3, "text": "x", "vector": [1]}]}, "points[0]"),
                          ({"points": [{"text": "no id"}]}, "points[0].id")):
        r = server.http.put(f"/collections/{name}/points/text", json=body)
        assert r.status_code == 400 and message in r.json()["status"]["error"], (body, r.text)
