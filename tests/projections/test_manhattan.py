"""Manhattan vectors in the projection: faiss L1 graphs per segment (``faiss-flat``), searched as
exactly as their scores say, across segments, after deletes and updates; scalar quantization of
such a vector rejected whichever way the event arrives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from consumers import integrity
from projections.errors import Rejected
from projections.index.quantized import TRAIN_AT, QuantizedGraph, QuantizedSearch
from projections.search import search
from projections.state import ProjectionState
from schemas import events as ev
from schemas import validation as check

DIM = 8
INT8 = str(check.quantization({"scalar": {"type": "int8"}}))  # canonical JSON


def _meta() -> ev.EventMeta:
    return ev.EventMeta.new("m", "t")


N = 2 * TRAIN_AT + 500  # two segments of TRAIN_AT + 250 labels, both trained


def _loaded() -> tuple[ProjectionState, np.ndarray]:
    state = ProjectionState(segment_bytes=(TRAIN_AT + 250) * DIM * 4)
    state.apply(ev.CollectionCreated(_meta(), DIM, "manhattan", 16, 100, 64), 0)
    rows = np.random.default_rng(1).normal(size=(N, DIM)).astype(np.float32)
    state.apply(ev.VectorsUpserted(_meta(), tuple(range(N)), rows, (None,) * N), 1)
    state.apply(ev.VectorsDeleted(_meta(), (0, 1, 2)), 2)
    rows[5] = rows[9] + 0.001
    state.apply(ev.VectorsUpserted(_meta(), (5,), rows[5:6], (None,)), 3)
    return state, rows


def test_l1_graphs_over_segments_answer_with_exact_l1_scores() -> None:
    state, rows = _loaded()
    coll = state.collections["m"]
    graphs = [seg.graph for seg in coll.index.segments]
    assert len(graphs) == 2 and all(isinstance(g, QuantizedGraph) and g.engine == "faiss-flat"
                                    and g.index is not None for g in graphs)
    assert not coll.index.higher_is_better()
    found = 0
    for q in np.random.default_rng(2).normal(size=(30, DIM)).astype(np.float32):
        exact = search(coll, q, 10, exact=True)
        distances = np.abs(rows - q).sum(axis=1)
        distances[[0, 1, 2]] = np.inf
        assert [h.id for h in exact] == np.argsort(distances, kind="stable")[:10].tolist()
        assert np.allclose([h.score for h in exact], np.sort(distances)[:10], atol=1e-4)
        approx = search(coll, q, 10)
        assert [h.score for h in approx] == sorted(h.score for h in approx)  # nearest first
        assert np.allclose([h.score for h in approx], distances[[h.id for h in approx]], atol=1e-4)
        found += len({h.id for h in approx} & {h.id for h in exact})
        ignored = search(coll, q, 10, quantized=QuantizedSearch(ignore=True))  # searched from the rows
        assert [h.id for h in ignored] == [h.id for h in exact]
    assert found >= 0.95 * 300
    assert search(coll, rows[9], 2, exact=True)[1].id == 5  # the updated row is found, its old one gone


def test_verify_samples_the_recall_of_l1_graphs() -> None:
    (served, _), (fresh, _) = _loaded(), _loaded()
    problems, recall = integrity._check_recall(served.collections["m"], fresh.collections["m"], "m", 30)  # noqa: SLF001
    assert problems == [] and recall is not None and recall["served"] >= 0.95


@pytest.mark.parametrize("event", [
    ev.CollectionCreated(_meta(), DIM, "manhattan", quantization=INT8),
    ev.CollectionCreated(_meta(), 0, "cosine", vectors=json.dumps({"a": {"size": 4, "metric": "manhattan",
                                                                         "quantization": INT8}})),
])
def test_quantized_manhattan_is_rejected_by_the_projection(event: ev.CollectionCreated) -> None:
    state = ProjectionState()
    with pytest.raises(Rejected, match="Manhattan") as refused:
        state.apply(event, 0)
    assert refused.value.status == 400 and "m" not in state.collections


def test_quantizing_a_manhattan_collection_later_is_rejected() -> None:
    state = ProjectionState()
    state.apply(ev.CollectionCreated(_meta(), DIM, "manhattan"), 0)
    with pytest.raises(Rejected, match="Manhattan"):
        state.apply(ev.CollectionUpdated(_meta(), json.dumps({"quantization_config": json.loads(INT8)})), 1)
    assert state.collections["m"].config.quantization is None
