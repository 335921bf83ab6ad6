"""A point of a collection with only an unnamed vector may lose it (Qdrant's ``delete_vectors`` of
``""``): the point stays, holds no vector, its checksum covers ``b""``; searches skip it, an
upsert gives it a vector again, and snapshots keep which points hold one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from consumers import integrity, snapshots
from projections.changes import PutPoints
from projections.collection import Collection, canonical_json, point_checksum
from projections.search import search
from projections.state import ProjectionState
from schemas import events as ev
from schemas.ids import catalog_key

IDS = (1, 2, 3, 4, 5, 6)


def _meta() -> ev.EventMeta:
    return ev.EventMeta.new("c", "t")


def _upsert(ids: tuple[int, ...], vectors: np.ndarray) -> ev.VectorsUpserted:
    return ev.VectorsUpserted(_meta(), ids, vectors.astype(np.float32), tuple({"n": i} for i in ids))


def _collection(state: ProjectionState) -> Collection:
    coll = state.get("c")
    assert coll is not None
    return coll


@pytest.fixture(params=["hnswlib", "hnswlib-rows", "sq8"])
def state(request: pytest.FixtureRequest) -> ProjectionState:
    """A collection of six points in segments of four labels: float32 graphs (with the kept rows a
    payload index adds) or int8 ones, whose full-precision rows outlive a deleted vector."""
    out = ProjectionState(segment_bytes=4 * 4 * 4)
    quantization = json.dumps({"scalar": {"type": "int8"}}) if request.param == "sq8" else None
    out.apply(ev.CollectionCreated(_meta(), 4, "l2", 8, 32, 16, quantization=quantization), 0)
    if request.param == "hnswlib-rows":
        out.apply(ev.PayloadIndexCreated(_meta(), "n", json.dumps({"type": "integer"})), 1)
    out.apply(_upsert(IDS, np.arange(24, dtype=np.float32).reshape(6, 4)), 2)
    return out


def test_deleting_the_unnamed_vector_keeps_the_point_without_it(state: ProjectionState, tmp_path: Path) -> None:
    coll = _collection(state)
    before = snapshots.write_snapshot(state, {0: 2}, tmp_path, "t")
    assert all("labels_file" not in seg["graphs"][""]  # every point holds its vector: the format as it was
               for seg in snapshots.read_manifest(before)["collections"][0]["segments"])

    changes = state.apply(ev.PointVectorsDeleted(_meta(), (3, 99), ("",)), 3)
    assert isinstance(changes[0], PutPoints)
    assert [(row.label, row.checksum) for row in changes[0].rows] == \
        [(coll.label_of[3], point_checksum(b"", canonical_json({"n": 3})))]
    assert coll.vector(3) is None and coll.partial and len(coll) == 6
    assert not coll.has_vector(3, "") and coll.has_vector(4, "")
    assert 3 not in [h.id for h in search(coll, np.zeros(4, np.float32), 10, exact=True)]
    assert 3 not in [h.id for h in search(coll, np.zeros(4, np.float32), 10)]
    assert [h.id for h in search(coll, np.full(4, 8.0, np.float32), 1, exact=True)] == [2]  # 3 was nearest
    sums = integrity._checksums(coll)  # noqa: SLF001 - what verify compares
    assert sums[catalog_key(3)] == point_checksum(b"", canonical_json({"n": 3}))

    # The incremental snapshot links the segment's graph (a deletion does not rewrite it) and
    # says which labels hold the vector; the loaded collection is the same.
    after = snapshots.write_snapshot(state, {0: 3}, tmp_path, "t")
    segment = snapshots.read_manifest(after)["collections"][0]["segments"][0]
    assert "labels_file" in segment["graphs"][""]
    loaded = _collection(snapshots.load(after).state)
    assert integrity._checksums(loaded) == sums  # noqa: SLF001
    assert loaded.vector(3) is None and loaded.vector(4) is not None
    assert [h.id for h in search(loaded, np.full(4, 8.0, np.float32), 6, exact=True)] == \
        [h.id for h in search(coll, np.full(4, 8.0, np.float32), 6, exact=True)]
    assert 3 not in [h.id for h in search(loaded, np.full(4, 8.0, np.float32), 6)]
    again = snapshots.write_snapshot(snapshots.load(after).state, {0: 3}, tmp_path, "t")
    assert (again / segment["graphs"][""]["labels_file"]).stat().st_nlink > 1  # unchanged: linked

    # Upserting the very same vector gives it back (none is stored to compare with).
    state.apply(_upsert((3,), np.arange(8, 12, dtype=np.float32).reshape(1, 4)), 4)
    assert not coll.partial and coll.vector(3) is not None
    assert [h.id for h in search(coll, np.full(4, 8.0, np.float32), 1, exact=True)] == [3]
    assert [h.id for h in search(coll, np.full(4, 8.0, np.float32), 1)] == [3]
    state.apply(ev.PointVectorsDeleted(_meta(), (3,), ("",)), 5)
    state.apply(ev.VectorsDeleted(_meta(), (3,)), 6)  # a point without its vector is deleted as any other
    assert 3 not in coll.label_of and not coll.partial
