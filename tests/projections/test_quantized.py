"""Scalar int8 collections: faiss graphs over int8 codes, rescored from float32 rows that snapshots
write and the process then reads from those files on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consumers import snapshots
from projections.index import quantized
from projections.index.quantized import FullVectors, QuantizedGraph, QuantizedSearch, RowFile
from projections.search import search
from projections.state import ProjectionState
from schemas import events as ev
from schemas import validation as check
from schemas.errors import ValidationError

DIM = 32
INT8 = check.quantization({"scalar": {"type": "int8", "quantile": 0.99}})


def _clustered(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM)).astype(np.float32)
    return (centres[rng.integers(0, 50, n)] + 0.35 * rng.normal(size=(n, DIM))).astype(np.float32)


def _state(n: int, metric: ev.Metric = "cosine", segment_bytes: int = 4096 * DIM * 4,
           quantization: str | None = INT8) -> tuple[ProjectionState, np.ndarray]:
    state = ProjectionState(segment_bytes)
    state.apply(ev.CollectionCreated(ev.EventMeta.new("q", "t"), DIM, metric, 16, 100, 64,
                                     quantization=quantization), 0)
    vectors = _clustered(n)
    for s in range(0, n, 1000):
        ids = tuple(range(s, min(n, s + 1000)))
        state.apply(ev.VectorsUpserted(ev.EventMeta.new("q", "t"), ids, vectors[s:s + 1000],
                                       tuple({"i": i} for i in ids)), 1 + s)
    return state, vectors


def _recall(state: ProjectionState, queries: np.ndarray, params: QuantizedSearch | None = None) -> float:
    coll = state.collections["q"]
    hits = 0
    for q in queries:
        got = {h.id for h in search(coll, q, 10, quantized=params)}
        truth = {h.id for h in search(coll, q, 10, exact=True)}
        hits += len(got & truth)
    return hits / (10 * len(queries))


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_search_is_rescored_from_float32_rows(metric: ev.Metric) -> None:
    state, vectors = _state(10_300, metric)  # three segments of 4,096 labels, each past TRAIN_AT
    coll = state.collections["q"]
    assert [type(s.graph) for s in coll.index.segments] == [QuantizedGraph] * 3
    assert all(isinstance(s.graph, QuantizedGraph) and s.graph.index is not None for s in coll.index.segments)
    queries = _clustered(40, seed=7)
    float32, _ = _state(10_300, metric, quantization=None)  # the same points in hnswlib float32 graphs
    baseline = _recall(float32, queries)
    assert _recall(state, queries) >= min(0.95, baseline - 0.03), baseline  # inner product is hard for HNSW
    assert _recall(state, queries, QuantizedSearch(ignore=True)) == 1.0  # the float32 rows, exactly
    # Scores are exact (from the float32 rows), whichever graph found the hit.
    hit = search(coll, queries[0], 1)[0]
    exact = search(coll, queries[0], 1, exact=True)[0]
    if hit.id == exact.id:
        assert hit.score == pytest.approx(exact.score, rel=1e-5)
    stored = coll.vector(5)
    assert stored is not None and np.allclose(stored, coll.index.prepare(vectors[5:6])[0])


def test_deletes_and_updates_are_seen_by_the_graph() -> None:
    state, vectors = _state(5000)
    coll = state.collections["q"]
    gone = tuple(range(0, 5000, 10))
    state.apply(ev.VectorsDeleted(ev.EventMeta.new("q", "t"), gone), 100)
    moved = (1, 2, 3)
    far = np.full((3, DIM), 9.0, np.float32) * np.array([[1], [-1], [1]], np.float32)
    state.apply(ev.VectorsUpserted(ev.EventMeta.new("q", "t"), moved, far, (None, None, None)), 101)
    for q in _clustered(20, seed=3):
        assert not {h.id for h in search(coll, q, 20)} & set(gone)
    assert search(coll, far[0], 1)[0].id in (1, 3)
    moved_vector = coll.vector(2)
    assert moved_vector is not None and np.allclose(moved_vector, coll.index.prepare(far[1:2])[0])
    assert _recall(state, _clustered(20, seed=4)) >= 0.95


def test_a_segment_below_the_training_size_is_searched_exactly() -> None:
    state, _ = _state(quantized.TRAIN_AT - 100)
    coll = state.collections["q"]
    graph = coll.index.segments[0].graph
    assert isinstance(graph, QuantizedGraph) and graph.index is None
    assert _recall(state, _clustered(10, seed=5)) == 1.0


def test_snapshots_write_the_rows_once_and_the_process_maps_them(tmp_path: Path) -> None:
    state, _ = _state(9000)
    queries = _clustered(10, seed=9)
    before = [[(h.id, round(h.score, 5)) for h in search(state.collections["q"], q, 10)] for q in queries]
    first = snapshots.write_snapshot(state, {0: 9}, tmp_path, "t")
    names = {f.name for f in first.iterdir()}
    assert {"c0000.s0000.faiss", "c0000.s0000.map.npy", "c0000.s0000.f32.npy"} <= names
    graphs = [s.graph for s in state.collections["q"].index.segments]
    assert all(isinstance(g, QuantizedGraph) and isinstance(g.full.base, RowFile) and not g.full.overlay
               for g in graphs), "after the snapshot the float32 rows are read from its files, not RAM"
    assert [[(h.id, round(h.score, 5)) for h in search(state.collections["q"], q, 10)] for q in queries] == before
    loaded = snapshots.load(first).state
    assert [[(h.id, round(h.score, 5)) for h in search(loaded.collections["q"], q, 10)] for q in queries] == before
    assert loaded.collections["q"].config.quantization == INT8

    # A payload change: the graphs, maps and rows are links to the first snapshot's files.
    state.apply(ev.PayloadSet(ev.EventMeta.new("q", "t"), (1,), {"late": True}), 200)
    second = snapshots.write_snapshot(state, {0: 200}, tmp_path, "t")
    shared = {f.name for f in second.iterdir() if f.stat().st_nlink > 1}
    assert {"c0000.s0000.faiss", "c0000.s0000.map.npy", "c0000.s0000.f32.npy", "c0000.s0001.f32.npy"} <= shared
    assert "c0000.s0000.points.avro" not in shared
    assert snapshots.verify(second) == []


def test_quantization_config_is_validated() -> None:
    assert check.quantization(None) is None
    assert check.quantization({"scalar": {"type": "int8"}}) == '{"scalar":{"type":"int8"}}'
    for bad, message in (({"product": {"compression": "x16"}}, "not supported"),
                         ({"binary": {}}, "not supported"), ({"scalar": {"type": "int4"}}, "int8"),
                         ({"scalar": {"type": "int8", "quantile": 0.2}}, "quantile"), ({"other": {}}, "unknown")):
        with pytest.raises(ValidationError, match=message):
            check.quantization(bad)


def test_a_damaged_rows_file_is_refused_at_load(tmp_path: Path) -> None:
    state, _ = _state(quantized.TRAIN_AT + 100)
    older = snapshots.write_snapshot(state, {0: 9}, tmp_path, "t")
    state.apply(ev.VectorsUpserted(ev.EventMeta.new("q", "t"), (99_999,), np.ones((1, DIM), np.float32), (None,)), 50)
    newest = snapshots.write_snapshot(state, {0: 50}, tmp_path, "t")
    rows = newest / "c0000.s0000.f32.npy"
    assert rows.stat().st_nlink == 1, "a new vector: the segment's rows were written again"
    data = bytearray(rows.read_bytes())
    data[-7] ^= 0x40
    rows.write_bytes(bytes(data))
    assert snapshots.verify(newest) == [f"{newest.name}/c0000.s0000.f32.npy: checksum mismatch"]
    loaded = snapshots.load_newest(tmp_path)
    assert loaded is not None and loaded.path == older  # never served: the older snapshot, then the log
    rows.unlink()
    assert snapshots.verify(newest) == [f"{newest.name}/c0000.s0000.f32.npy: missing"]


def test_row_files_read_any_rows_in_the_order_asked(tmp_path: Path) -> None:
    rows = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    path = tmp_path / "rows.npy"
    np.save(path, rows)
    f = RowFile(path, 40, 3)
    for local in ([5], [39, 0, 1, 2, 7, 7, 20], list(range(40)), []):
        assert np.array_equal(f.read(np.array(local, np.int64)), rows[local])
    with pytest.raises(ValueError, match="expected at most"):  # more rows than the segment holds
        RowFile(path, 39, 3)
    with pytest.raises(ValueError, match="expected at most"):
        RowFile(path, 40, 4)
    shorter = RowFile(path, 64, 3)  # a file ends at the segment's last row written
    assert shorter.rows == 40 and np.array_equal(shorter.read(np.array([39, 3])), rows[[39, 3]])
    with pytest.raises(IndexError, match="not in the file"):
        shorter.read(np.array([40]))


def test_full_vectors_write_up_to_the_last_row_and_read_past_the_file_from_ram(tmp_path: Path) -> None:
    full = FullVectors(100, 1100, 3)  # a segment of 1,000 labels
    first = np.arange(30, dtype=np.float32).reshape(10, 3)
    full.put(np.arange(100, 110), first)
    rows, captured = full.capture()
    assert rows.shape == (10, 3)  # the labels written, not the segment's capacity
    np.save(tmp_path / "a.npy", rows)
    full.adopt(tmp_path / "a.npy", captured)
    assert not full.overlay and full.base is not None and full.base.rows == 10
    later = np.full((2, 3), 7.0, np.float32)
    full.put(np.array([150, 103]), later)  # one past the file's end, one replacing a row in it
    got = full.get(np.array([150, 101, 103, 109]))
    assert np.array_equal(got, np.stack([later[0], first[1], later[1], first[9]]))
    rows, _ = full.capture()
    assert rows.shape == (51, 3) and np.array_equal(rows[50], later[0]) and not rows[20].any()


def test_a_segment_updated_over_and_over_is_compacted_and_finds_the_new_vectors() -> None:
    rng = np.random.default_rng(2)
    graph = QuantizedGraph(8, "l2", 16, 64, 64, 0, 4096)
    labels = np.arange(3000)
    for round_ in range(4):  # every vector replaced three times: 12,000 entries without compaction
        rows = rng.normal(size=(3000, 8)).astype(np.float32)
        for s in range(0, 3000, 500):
            graph.add(labels[s:s + 500], rows[s:s + 500])
        assert graph.index is not None and graph.index.ntotal <= 2 * 3000 + 500, round_
    assert sorted(graph.labels()) == labels.tolist()
    for i in (0, 1234, 2999):
        found, scores = graph.knn_prepared(rows[i:i + 1], 1)
        assert found[0] == i and scores[0] < 1e-5  # its own, newest vector is the nearest
        assert np.array_equal(graph.vectors([i])[0], rows[i])
