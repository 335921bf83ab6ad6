"""Re-upserting a point with the very same vector updates its payload but leaves the HNSW graph alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from projections.state import ProjectionState
from schemas import events as ev


def _upsert(ids: list[int], vectors: np.ndarray, payloads: list[dict[str, int]]) -> ev.VectorsUpserted:
    return ev.VectorsUpserted(ev.EventMeta.new("c", "t"), tuple(ids), vectors.astype(np.float32), tuple(payloads))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_only_changed_vectors_reach_the_index(metric: ev.Metric, monkeypatch: pytest.MonkeyPatch) -> None:
    state = ProjectionState()
    state.apply(ev.CollectionCreated(ev.EventMeta.new("c", "t"), 4, metric, 8, 32, 16), 0)
    coll = state.get("c")
    assert coll is not None
    vectors = np.random.default_rng(1).random((5, 4))
    state.apply(_upsert([1, 2, 3, 4, 5], vectors, [{"v": 1}] * 5), 1)
    state.apply(_upsert([9], vectors[:1], [{"v": 1}]), 2)
    state.apply(ev.VectorsDeleted(ev.EventMeta.new("c", "t"), (9,)), 3)  # its label is free, its vector stays

    added: list[list[int]] = []
    original = type(coll.index).add

    def add(self: Any, labels: np.ndarray, prepared: np.ndarray) -> None:
        added.append(labels.tolist())
        original(self, labels, prepared)

    monkeypatch.setattr(type(coll.index), "add", add)
    changed = vectors.copy()
    changed[1] += 0.5
    state.apply(_upsert([1, 2, 3, 6, 9], np.vstack([changed[:3], vectors[3:4], vectors[:1]]),
                        [{"v": 2}] * 5), 4)
    # 1 and 3 are unchanged; 2 changed; 6 and 9 are new (9 reuses a freed label holding the same vector).
    assert [sorted(coll.id_of[label] for label in batch) for batch in added] == [[2, 6, 9]]
    assert all(coll.payload_of[coll.label_of[i]] == {"v": 2} for i in (1, 2, 3, 6, 9))
    stored = coll.index.vectors([coll.label_of[i] for i in (1, 2, 3)])
    assert np.allclose(stored, coll.index.prepare(changed[:3]))
