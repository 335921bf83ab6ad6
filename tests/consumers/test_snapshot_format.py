"""Snapshot format 3 (a graph and points files per index segment) round-trips and writes only what
changed; formats 2 (one graph, integer ids in a .npy column) and 1 (all points in Avro) still load."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np

from consumers import snapshots
from projections.collection import Collection, CollectionConfig
from projections.index.hnsw import VectorIndex
from projections.state import ProjectionState

IDS: list[int | str] = [1, 2**62, "a#0", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", 7, 8, 9, 10, 11, 12]


def _state(segment_size: int = 4) -> ProjectionState:
    state = ProjectionState()
    coll = Collection(CollectionConfig("c", 4, "l2"), 0, segment_size=segment_size)
    labels = np.array([coll.allocate(pid) for pid in IDS])
    coll.index.add(labels, coll.index.prepare(np.arange(40, dtype=np.float32).reshape(10, 4)))
    coll.set_payload(coll.label_of[2**62], {"k": "v"})
    coll.set_payload(coll.label_of["a#0"], {"path": "a"})
    coll.remove(8)
    state.collections["c"] = coll
    return state


def _observable(state: ProjectionState) -> dict[str, object]:
    coll = state.collections["c"]
    top = coll.index.knn(np.zeros(4, np.float32), 5)[0].tolist()
    return {"label_of": dict(coll.label_of), "id_of": dict(coll.id_of), "payload_of": dict(coll.payload_of),
            "next": coll.next_label, "free": list(coll.free_labels), "top": top,
            "vectors": coll.index.vectors(sorted(coll.id_of)).tolist()}


def test_format_3_round_trips_and_links_what_did_not_change(tmp_path: Path) -> None:
    state = _state()
    first = snapshots.write_snapshot(state, {0: 9}, tmp_path, "t")
    manifest = snapshots.read_manifest(first)
    assert manifest["format"] == 3
    assert [(s["lo"], s["hi"], s["count"]) for s in manifest["collections"][0]["segments"]] == \
        [(0, 4, 4), (4, 8, 3), (8, 12, 2)]  # label 5 (id 8) was deleted
    loaded = snapshots.load(first)
    assert _observable(loaded.state) == _observable(state)

    # A payload change in segment 0 and a new point in the label freed in segment 1: the graph of
    # segment 0 and all of segment 2 are links to the first snapshot's files, not new writes.
    coll = state.collections["c"]
    coll.set_payload(coll.label_of[1], {"late": True})
    label = coll.allocate(13)
    coll.index.add(np.array([label]), coll.index.prepare(np.ones((1, 4), np.float32)))
    second = snapshots.write_snapshot(state, {0: 12}, tmp_path, "t")
    shared = {f.name for f in second.iterdir() if f.stat().st_nlink > 1}
    assert label == 5
    assert shared == {"c0000.s0000.hnsw", "c0000.s0002.hnsw", "c0000.s0002.ints.npy", "c0000.s0002.points.avro"}
    assert snapshots.verify(second) == []
    assert _observable(snapshots.load(second).state) == _observable(state)

    # A state loaded from a snapshot links its files too; a backup-style write shares nothing.
    third = snapshots.write_snapshot(snapshots.load(second).state, {0: 12}, tmp_path, "t")
    assert all(f.stat().st_nlink > 1 for f in third.iterdir() if f.name != "manifest.json")
    alone = snapshots.write_snapshot(state, {0: 12}, tmp_path / "backup", "t", share=False)
    assert all(f.stat().st_nlink == 1 for f in alone.iterdir())


def test_an_unchanged_segment_stays_linked_after_the_snapshot_that_wrote_it_is_pruned(tmp_path: Path) -> None:
    """Ten snapshots, keeping two, each adding a vector to the last segment only: the first
    segments' files are the very files the first snapshot wrote (one inode), never written again."""
    state = _state()
    first = snapshots.write_snapshot(state, {0: 9}, tmp_path, "t", keep=2)
    inode = (first / "c0000.s0000.hnsw").stat().st_ino
    coll = state.collections["c"]
    for i in range(10):
        label = coll.allocate(100 + i)
        coll.index.add(np.array([label]), coll.index.prepare(np.full((1, 4), i, np.float32)))
        newest = snapshots.write_snapshot(state, {0: 10 + i}, tmp_path, "t", keep=2)
    assert not first.exists()  # pruned long ago
    assert len(snapshots.list_snapshots(tmp_path)) == 2
    assert (newest / "c0000.s0000.hnsw").stat().st_ino == inode
    assert all((newest / f"c0000.s0000.{part}").stat().st_nlink == 2 for part in ("hnsw", "ints.npy", "points.avro"))
    assert snapshots.written_bytes(newest) < (newest / "c0000.s0000.hnsw").stat().st_size * 6
    assert _observable(snapshots.load(newest).state) == _observable(state)


def test_deleted_after_its_graph_was_written_stays_deleted(tmp_path: Path) -> None:
    state = _state()
    snapshots.write_snapshot(state, {0: 9}, tmp_path, "t")
    coll = state.collections["c"]
    coll.remove(1)  # segment 0's graph file is unchanged (linked); the deletion is in its points file
    path = snapshots.write_snapshot(state, {0: 10}, tmp_path, "t")
    assert (path / "c0000.s0000.hnsw").stat().st_nlink > 1
    restored = snapshots.load(path).state.collections["c"]
    assert 1 not in restored.label_of
    assert coll.label_of.get(1) is None and 0 not in restored.index.knn(np.zeros(4, np.float32), 9)[0].tolist()
    assert _observable(snapshots.load(path).state) == _observable(state)


def _write_format_2(state: ProjectionState, path: Path) -> None:
    """Rewrite the snapshot at ``path`` as format 2 wrote it (the previous version's writer): one
    hnswlib graph of every label, ``c0000.ints.npy`` and ``c0000.points.avro``."""
    coll = state.collections["c"]
    for f in path.iterdir():
        f.unlink()
    whole = VectorIndex(4, "l2", capacity=coll.next_label)
    labels = np.arange(coll.next_label)
    whole.add(labels, coll.index.vectors(labels) if not coll.free_labels else
              np.array([coll.index.vectors([lbl])[0] if lbl in coll.id_of else np.zeros(4, np.float32)
                        for lbl in labels.tolist()]))
    for label in coll.free_labels:
        whole.mark_deleted(label)
    whole.save(path / "c0000.hnsw")
    ints = [(label, pid) for label, pid in coll.id_of.items() if isinstance(pid, int)]
    with open(path / "c0000.ints.npy", "wb") as out:
        np.save(out, np.array(ints, dtype=np.int64).reshape(-1, 2), allow_pickle=False)
    with open(path / "c0000.points.avro", "wb") as out:
        fastavro.writer(out, snapshots._POINTS_SCHEMA, (  # noqa: SLF001 - writes format 2 as the old code did
            {"label": label, "id": pid, "payload": None if label not in coll.payload_of else
             json.dumps(coll.payload_of[label])}
            for label, pid in coll.id_of.items() if not isinstance(pid, int) or label in coll.payload_of))
    entry = {"config": coll.config.as_dict(), "created_offset": 0, "count": len(coll), "next_label": coll.next_label,
             "free_labels": list(coll.free_labels), "capacity": whole.capacity, "index_file": "c0000.hnsw",
             "ints_file": "c0000.ints.npy", "points_file": "c0000.points.avro"}
    manifest = {"format": 2, "snapshot_id": path.name, "created_at": 1.0, "topic": "t", "offsets": {"0": 9},
                "collections": [entry],
                "files": {n: snapshots.file_checksum(path / n) for n in ("c0000.hnsw", "c0000.ints.npy",
                                                                         "c0000.points.avro")}}
    manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - the same
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_formats_2_and_1_still_load_and_go_on_in_segments(tmp_path: Path) -> None:
    state = _state(segment_size=64)
    path = snapshots.write_snapshot(state, {0: 9}, tmp_path, "t")
    _write_format_2(state, path)
    assert snapshots.verify(path) == []
    loaded = snapshots.load(path, segment_bytes=16 * 4 * 4).state  # new segments of 16 labels from here on
    assert _observable(loaded) == _observable(state)
    coll = loaded.collections["c"]
    assert [(s.lo, s.hi) for s in coll.index.segments] == [(0, 10)]
    label = coll.allocate(99)  # reuses the freed label 5, in the old graph
    more = coll.allocate(100)
    coll.index.add(np.array([label, more]), coll.index.prepare(np.full((2, 4), 3, np.float32)))
    assert [(s.lo, s.hi) for s in coll.index.segments] == [(0, 10), (10, 26)]
    again = snapshots.load(snapshots.write_snapshot(loaded, {0: 11}, tmp_path, "t")).state
    assert _observable(again) == _observable(loaded)

    # Format 1: every point in the Avro file, no .npy column.
    _write_format_2(state, path)
    manifest = snapshots.read_manifest(path)
    coll = state.collections["c"]
    (path / "c0000.ints.npy").unlink()
    with open(path / "c0000.points.avro", "wb") as out:
        fastavro.writer(out, snapshots._POINTS_SCHEMA, (  # noqa: SLF001 - writes a format-1 snapshot as the old code did
            {"label": label, "id": pid, "payload": None if label not in coll.payload_of else
             json.dumps(coll.payload_of[label])} for label, pid in coll.id_of.items()))
    manifest["format"] = 1
    del manifest["collections"][0]["ints_file"]
    manifest["files"] = {name: snapshots.file_checksum(path / name) for name in ("c0000.hnsw", "c0000.points.avro")}
    manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - the same
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert snapshots.verify(path) == []
    assert _observable(snapshots.load(path).state) == _observable(state)
