"""``CollectionUpdated.diff``: the settings change a producer validates and a projector re-checks,
in canonical JSON, and the effective settings each level gives."""

from __future__ import annotations

import json

import pytest

from projections.collection import CollectionConfig
from schemas import validation as check
from schemas.errors import ValidationError


def test_a_diff_is_canonical_and_keeps_only_what_was_given() -> None:
    a = check.collection_diff({"vector": {"on_disk": True, "hnsw_config": {"m": 8}}, "quantization_config": "Disabled"})
    b = check.collection_diff({"quantization_config": "Disabled", "vector": {"hnsw_config": {"m": 8}, "on_disk": True}})
    assert a == b == '{"quantization_config":"Disabled","vector":{"hnsw_config":{"m":8},"on_disk":true}}'
    assert json.loads(check.collection_diff({"hnsw_config": {"ef_construct": 100, "m": None}})) == \
        {"hnsw_config": {"ef_construct": 100}}


@pytest.mark.parametrize(("diff", "message"), [
    ({"x": 1}, "collection settings: unknown field 'x'"),
    ({"vector": {"size": 4}}, "vector: unknown field 'size'"),
    ({"vector": {"on_disk": 1}}, "vector.on_disk: expected a boolean"),
    ({"hnsw_config": {"m": 1}}, "hnsw_config.m: expected an integer in 2..256"),
    ({"vector": {"hnsw_config": {"ef_construct": 3}}}, "vector.hnsw_config.ef_construct"),
    ({"quantization_config": {"binary": {}}}, "quantization_config.binary: not supported"),
    ([], "collection settings: expected an object"),
])
def test_a_bad_diff_names_what_is_wrong(diff: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        check.collection_diff(diff)


def test_the_vector_level_wins_and_disabling_it_falls_back_to_the_collection_level() -> None:
    config = CollectionConfig("c", 4, "cosine", m=16, ef_construction=200)
    int8 = {"scalar": {"type": "int8"}}
    both = config.updated(json.loads(check.collection_diff(
        {"quantization_config": int8, "hnsw_config": {"ef_construct": 64},
         "vector": {"hnsw_config": {"m": 32}, "quantization_config": {"scalar": {"type": "int8", "quantile": 0.9}}}})))
    assert (both.m, both.ef_construction) == (32, 64)
    assert json.loads(both.quantization or "null") == {"scalar": {"type": "int8", "quantile": 0.9}}
    assert both.levels()["hnsw_config"] == {"m": 16, "ef_construct": 64}
    fallback = both.updated(json.loads(check.collection_diff({"vector": {"quantization_config": "Disabled"}})))
    assert json.loads(fallback.quantization or "null") == int8
    assert "quantization_config" not in fallback.levels()["vector"]
    plain = fallback.updated(json.loads(check.collection_diff({"quantization_config": "Disabled"})))
    assert plain.quantization is None and plain.m == 32
    assert not plain.builds_graphs_like(both) and plain.builds_graphs_like(plain)
    on_disk = plain.updated({"vector": {"on_disk": True}})
    assert not on_disk.builds_graphs_like(plain)  # float32 on disk: another engine
