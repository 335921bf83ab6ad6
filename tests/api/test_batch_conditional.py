"""Conditional upserts and updates (``update_mode``, ``update_filter``) and the atomic batch update
(``POST /points/batch``), through qdrant-client against this server and against qdrant-client's
local mode (Qdrant's behaviour, in process): the same calls on both, then every point compared
(ids, payloads, vectors within 1e-6). The condition is decided when the projection applies the
event, against the point as it is then.

Qdrant applies a batch's operations in order; this server validates all of them first and
publishes them in one Kafka transaction: a batch whose third operation is invalid changes
nothing, on both sides (local mode also validates every operation first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.api.conftest import Running, unique

DIM = 4


@pytest.fixture(scope="module")
def remote(server: Running) -> Iterator[QdrantClient]:
    client = QdrantClient(url=server.url, timeout=60, check_compatibility=False)
    yield client
    client.close()


def _both(remote: QdrantClient, vectors: Any = None) -> tuple[str, QdrantClient]:
    name = unique("cond")
    local = QdrantClient(":memory:")
    config = vectors or m.VectorParams(size=DIM, distance=m.Distance.EUCLID)
    for client in (remote, local):
        client.create_collection(name, vectors_config=config)
    return name, local


def _points(ids: range | list[int], seed: int, **payload: Any) -> list[m.PointStruct]:
    rng = np.random.default_rng(seed)
    return [m.PointStruct(id=i, vector=rng.normal(size=DIM).round(3).tolist(), payload={"g": i % 3, **payload})
            for i in ids]


def _state(client: QdrantClient, name: str) -> dict[Any, tuple[Any, Any]]:
    records, _ = client.scroll(name, limit=1000, with_payload=True, with_vectors=True)
    return {r.id: (r.payload, r.vector) for r in records}


def _same(remote: QdrantClient, local: QdrantClient, name: str) -> dict[Any, tuple[Any, Any]]:
    ours, theirs = _state(remote, name), _state(local, name)
    assert ours.keys() == theirs.keys()
    for pid, (payload, vector) in ours.items():
        assert payload == theirs[pid][0], pid
        if isinstance(vector, dict):
            assert vector.keys() == theirs[pid][1].keys(), pid
            for key, value in vector.items():
                np.testing.assert_allclose(value, theirs[pid][1][key], atol=1e-6)
        else:
            np.testing.assert_allclose(vector, theirs[pid][1], atol=1e-6)
    return ours


def test_update_modes_insert_only_and_update_only(remote: QdrantClient) -> None:
    name, local = _both(remote)
    for client in (remote, local):
        client.upsert(name, _points(range(1, 7), 1))
        client.upsert(name, _points(range(4, 9), 2, round=2), update_mode=m.UpdateMode.INSERT_ONLY)
        client.upsert(name, m.Batch(ids=[6, 7, 9, 10], vectors=[[0.5] * DIM] * 4, payloads=[{"round": 3}] * 4),
                      update_mode=m.UpdateMode.UPDATE_ONLY)
    state = _same(remote, local, name)
    assert sorted(state) == list(range(1, 9))  # 9, 10: update_only created nothing
    assert state[4][0] == {"g": 1} and state[8][0] == {"g": 2, "round": 2}  # insert_only: 4 kept, 8 new
    assert state[6][0] == {"round": 3} and state[7][0] == {"round": 3}  # update_only: replaced


def test_update_filter_replaces_only_matching_points(remote: QdrantClient) -> None:
    name, local = _both(remote)
    only_g0 = m.Filter(must=[m.FieldCondition(key="g", match=m.MatchValue(value=0))])
    for client in (remote, local):
        client.upsert(name, _points(range(1, 7), 1))
        client.upsert(name, _points([1, 2, 3, 20], 3, new=True), update_filter=only_g0)
    state = _same(remote, local, name)
    assert state[3][0] == {"g": 0, "new": True} and state[20][0] == {"g": 2, "new": True}  # matched; new
    assert state[1][0] == {"g": 1} and state[2][0] == {"g": 2}  # did not match: as they were


def test_update_vectors_with_update_filter(remote: QdrantClient) -> None:
    vectors = {"a": m.VectorParams(size=2, distance=m.Distance.DOT),
               "b": m.VectorParams(size=3, distance=m.Distance.DOT)}
    name, local = _both(remote, vectors)
    points = [m.PointStruct(id=i, vector={"a": [i, 1.0]}, payload={"even": i % 2 == 0}) for i in range(6)]
    even = m.Filter(must=[m.FieldCondition(key="even", match=m.MatchValue(value=True))])
    for client in (remote, local):
        client.upsert(name, points)
        client.update_vectors(name, [m.PointVectors(id=i, vector={"b": [i, i, 1.0]}) for i in range(4)],
                              update_filter=even)
    state = _same(remote, local, name)
    assert set(state[2][1]) == {"a", "b"} and set(state[1][1]) == {"a"}


def _operations(good_third: bool = True) -> list[Any]:
    third: Any = m.UpsertOperation(upsert=m.PointsList(points=_points([30, 31], 5) if good_third else
                                                       [m.PointStruct(id=30, vector=[1.0] * (DIM + 1))]))
    return [
        m.UpsertOperation(upsert=m.PointsList(points=_points(range(10, 16), 4))),
        m.SetPayloadOperation(set_payload=m.SetPayload(payload={"tag": "x"}, points=[10, 11, 12])),
        third,
        m.DeleteOperation(delete=m.PointIdsList(points=[13])),
        m.OverwritePayloadOperation(overwrite_payload=m.SetPayload(payload={"only": 1}, points=[14])),
        m.DeletePayloadOperation(delete_payload=m.DeletePayload(keys=["g"], points=[10])),
        m.ClearPayloadOperation(clear_payload=m.PointIdsList(points=[11])),
        m.UpdateVectorsOperation(update_vectors=m.UpdateVectors(points=[m.PointVectors(id=15, vector=[9.0] * DIM)])),
        m.SetPayloadOperation(set_payload=m.SetPayload(payload={"late": True},
                                                       filter=m.Filter(must=[m.HasIdCondition(has_id=[1, 2])]))),
        m.DeleteOperation(delete=m.FilterSelector(filter=m.Filter(must=[m.FieldCondition(
            key="g", match=m.MatchValue(value=2))]))),
    ]


def test_batch_applies_every_operation_as_qdrant(remote: QdrantClient, server: Running) -> None:
    name, local = _both(remote)
    for client in (remote, local):
        client.upsert(name, _points(range(1, 6), 1))
        results = client.batch_update_points(name, _operations())
        assert len(results) == len(_operations()) and all(r.status == m.UpdateStatus.COMPLETED for r in results)
    state = _same(remote, local, name)
    assert state[10][0] == {"tag": "x"} and 13 not in state and 15 in state and state[1][0]["late"] is True
    assert 2 not in state and 5 not in state  # g == 2 before the batch: deleted by the filter
    raw = server.http.post(f"/collections/{name}/points/batch", params={"wait": "true"}, json={"operations": [
        {"set_payload": {"payload": {"raw": 1}, "points": [1]}}, {"clear_payload": {"points": [3]}}]}).json()
    assert raw["atomic"] is True and [r["status"] for r in raw["result"]] == ["completed", "completed"]
    inserted = server.http.post(f"/collections/{name}/points/batch", params={"wait": "true"}, json={"operations": [
        {"upsert": {"points": [{"id": 40, "vector": [1.0] * DIM}], "update_mode": "insert_only"}},
        {"update_vectors": {"points": [{"id": 40, "vector": [2.0] * DIM}]}}]})  # 40 exists once the first applies
    assert inserted.status_code == 200, inserted.text
    assert remote.retrieve(name, [40], with_vectors=True)[0].vector == [2.0] * DIM
    assert {"write_token", "operation_id"} <= raw["result"][0].keys()


def test_batch_with_an_invalid_third_operation_changes_nothing(remote: QdrantClient, server: Running) -> None:
    name, local = _both(remote)
    for client in (remote, local):
        client.upsert(name, _points(range(1, 6), 1))
    before = _same(remote, local, name)
    with pytest.raises(UnexpectedResponse) as refused:
        remote.batch_update_points(name, _operations(good_third=False))
    assert refused.value.status_code == 400 and b"operations[2].upsert" in refused.value.content
    with pytest.raises(ValueError, match="dim"):
        local.batch_update_points(name, _operations(good_third=False))
    assert _same(remote, local, name) == before
    answer = server.http.post(f"/collections/{name}/points/batch", json={"operations": [
        {"delete": {"points": [1]}}, {"upsert": {"points": [{"id": 2, "vector": [1.0] * DIM}]}},
        {"bogus": {}}]})
    assert answer.status_code == 400 and "operations[2]" in answer.json()["status"]["error"]
    missing = server.http.post(f"/collections/{name}/points/batch", params={"wait": "false"}, json={"operations": [
        {"delete": {"points": [1]}}, {"update_vectors": {"points": [{"id": 99, "vector": [1.0] * DIM}]}}]})
    assert missing.status_code == 404 and "99" in missing.json()["status"]["error"]  # waiting or not
    assert _same(remote, local, name) == before


def test_bad_update_mode_and_filter_are_refused(server: Running, remote: QdrantClient) -> None:
    name, _ = _both(remote)
    point = {"id": 1, "vector": [1.0] * DIM}
    bad_mode = server.http.put(f"/collections/{name}/points", json={"points": [point], "update_mode": "replace"})
    assert bad_mode.status_code == 400 and "update_mode" in bad_mode.json()["status"]["error"]
    for mode in (False, "", 0):
        wrong = server.http.put(f"/collections/{name}/points", json={"points": [point], "update_mode": mode})
        assert wrong.status_code == 400 and "update_mode" in wrong.json()["status"]["error"], mode
    bad_filter = server.http.put(f"/collections/{name}/points", json={"points": [point], "update_filter": {"must": 3}})
    assert bad_filter.status_code == 400 and "update_filter" in bad_filter.json()["status"]["error"]
    assert remote.count(name).count == 0
