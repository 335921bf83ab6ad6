"""Snapshot format 2 (integer ids in a .npy column) round-trips; format 1 (all points in Avro) still loads."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np

from consumers import snapshots
from projections.collection import Collection, CollectionConfig
from projections.state import ProjectionState


def _state() -> ProjectionState:
    state = ProjectionState()
    coll = Collection(CollectionConfig("c", 4, "l2"), 0)
    ids: list[int | str] = [1, 2**62, "a#0", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", 7]
    labels = np.array([coll.allocate(pid) for pid in ids])
    coll.index.add(labels, coll.index.prepare(np.arange(20, dtype=np.float32).reshape(5, 4)))
    coll.set_payload(coll.label_of[2**62], {"k": "v"})
    coll.set_payload(coll.label_of["a#0"], {"path": "a"})
    state.collections["c"] = coll
    return state


def _observable(state: ProjectionState) -> dict[str, object]:
    coll = state.collections["c"]
    return {"label_of": dict(coll.label_of), "id_of": dict(coll.id_of), "payload_of": dict(coll.payload_of),
            "next": coll.next_label, "vectors": coll.index.vectors(sorted(coll.id_of)).tolist()}


def test_format_2_round_trips_and_format_1_still_loads(tmp_path: Path) -> None:
    state = _state()
    path = snapshots.write_snapshot(state, {0: 9}, tmp_path, "t")
    manifest = snapshots.read_manifest(path)
    assert manifest["format"] == 2 and "c0000.ints.npy" in manifest["files"]
    assert _observable(snapshots.load(path).state) == _observable(state)

    # Rewrite it as format 1 wrote it: every point in the Avro file, no .npy column.
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
