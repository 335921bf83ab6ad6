"""verify's sampled recall is judged against an index freshly built from the log (through the real broker).

Random vectors at a small ``ef`` give a sound HNSW index a recall well below 0.9; verify must
call that collection clean (and repair must have nothing to do), while an index that lost
points is still reported, and repaired.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from consumers import integrity, snapshots
from infra.settings import Settings
from producers import VectorProducer
from tests.helpers import run_cli, running_projector

_cli = run_cli


@pytest.fixture
def random_collection(settings: Settings) -> Settings:
    """2,000 uniform random 64-d vectors in a collection with small HNSW parameters, projected and snapshotted."""
    rng = np.random.default_rng(11)
    with VectorProducer(settings) as p:
        p.create_collection("rand", 64, "cosine", m=8, ef_construction=32, ef=10)
        token = p.upsert("rand", list(range(2000)), rng.random((2000, 64), dtype=np.float32))
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 60)
    assert snapshots.list_snapshots(settings.snapshot_dir), "a final snapshot was written on stop"
    return settings


def test_a_sound_collection_of_random_vectors_verifies_clean(random_collection: Settings) -> None:
    code, out = _cli(random_collection, "--json", "verify")
    report = json.loads(out.strip().splitlines()[-1])
    assert code == 0, out
    recall = report["checked"]["recall"]["rand"]
    assert recall["fresh_build"] < 0.9, "the data is hard: an absolute 0.9 bar would call this index damaged"
    assert recall["served"] >= recall["fresh_build"] - integrity.RECALL_TOLERANCE
    assert report["checked"]["snapshot_loaded"] is not None, "the served index came from the snapshot"
    code, out = _cli(random_collection, "repair")
    assert (code, out.strip()) == (0, "repaired; verify is clean")


def test_an_index_that_lost_points_is_reported_and_repaired(random_collection: Settings) -> None:
    s = random_collection
    loaded = snapshots.load_newest(s.snapshot_dir)
    assert loaded is not None
    coll = loaded.state.get("rand")
    assert coll is not None
    for label in sorted(coll.live_labels().tolist())[::2]:  # half the points vanish from the graph
        coll.index.mark_deleted(label)
    for path in snapshots.list_snapshots(s.snapshot_dir):
        shutil.rmtree(path)
    snapshots.write_snapshot(loaded.state, loaded.offsets, s.snapshot_dir, s.topic, s.snapshots_keep)
    assert not any(snapshots.verify(p) for p in snapshots.list_snapshots(s.snapshot_dir)), "its checksums verify"

    code, out = _cli(s, "verify")
    assert code == 1, out
    assert "recall: [rand] sampled recall@10 is" in out and "an index freshly built from the log gets" in out, out
    assert "is not in the HNSW index" in out, out
    code, out = _cli(s, "repair")
    assert code == 0, out
    code, out = _cli(s, "verify")
    assert code == 0, out
