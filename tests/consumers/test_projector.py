"""The projector through the real broker: handlers, catalog on both backends, DLQ, snapshots."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import pytest
import xxhash
from kafka import KafkaProducer

from consumers import snapshots
from infra.settings import Settings
from producers import VectorProducer, WriteToken
from projections.catalog.store import Catalog
from projections.filters import parse_filter
from projections.search import search
from schemas import events as ev
from schemas.codec import encode
from tests.helpers import catalog_of, exact_top, read_topic, running_projector, state_of, wait_until


def _catalog(settings: Settings, url: str) -> Catalog:
    return Catalog(url, settings.projection, settings.topic)


def test_lifecycle_of_points_and_collections(settings: Settings, catalog_url: str) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("a", 4, "l2")
        p.upsert("a", [1, 2, "x"], np.arange(12, dtype=np.float32).reshape(3, 4), [{"k": 1}, {"k": 2}, None])
        p.delete("a", [1])
        p.upsert("a", [1], [[9, 9, 9, 9]], [{"k": "again"}])           # upsert -> delete -> upsert
        p.upsert("a", [2], [[0, 0, 0, 1]], [{"k": 22}])                  # replace: never two results for one id
        p.set_payload("a", [2, "missing"], {"extra": True})
        p.set_payload("a", ["x"], {"deep": 1}, key="n.m")
        p.delete_payload_keys("a", [2], ["k"])
        p.overwrite_payload("a", [1], {"only": 1})
        p.create_collection("b", 2, "ip")
        p.upsert("b", [5], [[1, 0]])
        p.delete_collection("b")
        token = p.create_collection("b", 3, "cosine")                    # re-create with another dimension
        token = p.upsert("b", [6], [[0, 3, 4]])
    with running_projector(settings, _catalog(settings, catalog_url)) as proj:
        proj.wait_for(token.partition, token.offset, 30)
        a, b = proj.state.get("a"), proj.state.get("b")
        assert len(a) == 3 and len(b) == 1
        assert a.payload_of[a.label_of[1]] == {"only": 1}
        assert a.payload_of[a.label_of[2]] == {"extra": True}
        assert a.payload_of[a.label_of["x"]] == {"n": {"m": {"deep": 1}}}
        assert a.vector(1).tolist() == [9, 9, 9, 9]
        hits = search(a, np.zeros(4, np.float32), 10)
        assert sorted([h.id for h in hits], key=repr) == sorted([1, 2, "x"], key=repr), "no duplicates, no ghosts"
        assert b.config.dimension == 3 and np.allclose(b.vector(6), [0, 0.6, 0.8])
        cat = catalog_of(proj)
        assert set(cat) == {"a", "b"} and cat["b"]["dimension"] == 3
        assert set(cat["a"]["points"]) == {"n:1", "n:2", "s:x"} and set(cat["b"]["points"]) == {"n:6"}
        assert json.loads(cat["a"]["points"]["n:1"][0]) == {"only": 1}
        assert proj.catalog.positions() == {token.partition: token.offset}


def test_replayed_batch_is_rejected_by_tracking(settings: Settings, catalog_url: str) -> None:
    from projections.errors import TrackingConflict

    catalog = _catalog(settings, catalog_url)
    catalog.commit([], {0: 10})
    with pytest.raises(TrackingConflict):
        catalog.commit([], {0: 10})
    with pytest.raises(TrackingConflict):
        catalog.commit([], {0: 3})
    assert catalog.positions() == {0: 10}


def test_poison_records_go_to_the_dlq_and_the_rest_is_applied(settings: Settings) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("c", 3)
    good = encode(ev.VectorsUpserted(ev.EventMeta.new("c", "t"), (1,), np.ones((1, 3), np.float32), (None,)))
    bad_checksum = good[:-1] + bytes([good[-1] ^ 0xFF])
    wrong_dim = encode(ev.VectorsUpserted(ev.EventMeta.new("c", "t"), (2,), np.ones((1, 5), np.float32), (None,)))
    missing = encode(ev.VectorsUpserted(ev.EventMeta.new("nope", "t"), (3,), np.ones((1, 3), np.float32), (None,)))
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    poison = [os.urandom(40), b"\xc3\x01" + bytes(8) + b"junk", bad_checksum, wrong_dim, missing]
    for value in poison[:3]:
        raw.send(settings.topic, key=b"c", value=value)
    raw.send(settings.topic, key=b"c", value=good)
    raw.send(settings.topic, key=b"c", value=wrong_dim)
    raw.send(settings.topic, key=b"nope", value=missing)
    last = raw.send(settings.topic, key=b"c",
                    value=encode(ev.VectorsUpserted(ev.EventMeta.new("c", "t"), (4,), np.ones((1, 3), np.float32),
                                                    (None,)))).get(30)
    raw.close()
    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        assert sorted(proj.state.get("c").label_of) == [1, 4]
        assert proj.stats.dead_letters == 5
    letters = read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=5)
    reasons = [dict(r.headers)["vectorizer.reason"].decode() for r in letters]
    assert reasons == ["not-single-object-avro", "unknown-fingerprint", "checksum-mismatch", "rejected", "rejected"]
    assert [r.value for r in letters] == poison
    # A restart replays from the snapshot/catalog and dead-letters nothing twice.
    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        assert sorted(proj.state.get("c").label_of) == [1, 4]
    assert len(read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=5)) == 5


def _ingest(p: VectorProducer, name: str, n: int, dim: int, seed: int = 0,
            batch: int = 500) -> tuple[np.ndarray, WriteToken | None]:
    rng = np.random.default_rng(seed)
    vectors = rng.random((n, dim), dtype=np.float32)
    token: WriteToken | None = None
    for s in range(0, n, batch):
        token = p.upsert(name, list(range(s, min(n, s + batch))), vectors[s:s + batch],
                         [{"i": i, "g": i % 7} for i in range(s, min(n, s + batch))])
    return vectors, token


def test_restart_from_snapshot_equals_fresh_replay(settings: Settings) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("s", 8, "cosine", m=8, ef_construction=64)
        vectors, _ = _ingest(p, "s", 3000, 8)
    with running_projector(settings.replace(snapshot_every_events=3, poll_max_records=2)) as proj:
        wait_to_end(proj, settings)
        wait_until(lambda: proj.stats.snapshots_taken >= 2, 30, message="two snapshots")
    with VectorProducer(settings) as p:                         # more events after the last snapshot
        p.delete("s", list(range(0, 3000, 3)))
        token = p.set_payload("s", [1, 2], {"late": True})
    with running_projector(settings) as restarted:
        restarted.wait_for(token.partition, token.offset, 30)
        assert restarted.stats.loaded_snapshot is not None
        got, got_cat, got_top = state_of(restarted), catalog_of(restarted), exact_top(restarted, "s", vectors[:20])
    fresh_settings = settings.replace(data_dir=settings.data_dir.parent / "fresh", projection="fresh")
    with running_projector(fresh_settings) as fresh:
        fresh.wait_for(token.partition, token.offset, 30)
        assert fresh.stats.loaded_snapshot is None
        assert state_of(fresh) == got
        assert catalog_of(fresh) == got_cat
        assert exact_top(fresh, "s", vectors[:20]) == got_top


def wait_to_end(proj: Any, settings: Settings, timeout: float = 60) -> None:
    records = read_topic(settings.kafka_bootstrap, settings.topic, expected=1)
    last = max(r.offset for r in records)
    proj.wait_for(0, last, timeout)
    wait_until(lambda: proj.ready.is_set(), timeout, message="projector ready")


@pytest.mark.parametrize("damage", ["flip-index-byte", "corrupt-manifest", "delete-points-file",
                                    "flip-rows-byte", "truncate-rows-file", "delete-rows-file"])
def test_corrupt_newest_snapshot_falls_back_to_an_older_one(settings: Settings, damage: str) -> None:
    rows = damage.endswith("rows-byte") or damage.endswith("rows-file")  # an int8 collection's float32 rows
    with VectorProducer(settings) as p:
        p.create_collection("s", 8, "l2", m=8, ef_construction=32,
                            quantization={"scalar": {"type": "int8"}} if rows else None)
        _ingest(p, "s", 1000, 8, batch=250)
    with running_projector(settings.replace(snapshot_every_events=2, poll_max_records=2)) as proj:
        wait_to_end(proj, settings)
        wait_until(lambda: proj.stats.snapshots_taken >= 2, 30, message="two snapshots")
        expected = state_of(proj)
    found = snapshots.list_snapshots(settings.snapshot_dir)
    assert len(found) >= 2
    newest = found[0]
    if damage == "flip-index-byte":
        path = newest / "c0000.s0000.hnsw"
        assert path.stat().st_nlink == 1, "vectors were added since the snapshot before: its graph is its own"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        assert snapshots.verify(newest) == [f"{newest.name}/c0000.s0000.hnsw: checksum mismatch"]
    elif damage == "corrupt-manifest":
        text = (newest / "manifest.json").read_text().replace('"count": 1000', '"count": 999')
        (newest / "manifest.json").write_text(text)
        assert snapshots.verify(newest) == [f"{newest.name}/manifest.json: checksum mismatch"]
    elif rows:
        path = newest / "c0000.s0000.f32.npy"
        assert path.stat().st_nlink == 1, "vectors were added since the snapshot before: its rows are its own"
        data = bytearray(path.read_bytes())
        if damage == "flip-rows-byte":
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        elif damage == "truncate-rows-file":
            path.write_bytes(bytes(data[:len(data) - 4 * 8]))
        else:
            path.unlink()
        problem = "missing" if damage == "delete-rows-file" else "checksum mismatch"
        assert snapshots.verify(newest) == [f"{newest.name}/c0000.s0000.f32.npy: {problem}"]
    else:
        (newest / "c0000.s0000.points.avro").unlink()
        assert snapshots.verify(newest) == [f"{newest.name}/c0000.s0000.points.avro: missing"]
    with running_projector(settings) as proj:
        wait_to_end(proj, settings)
        assert proj.stats.loaded_snapshot == found[1].name
        assert state_of(proj) == expected


def test_a_damaged_file_shared_by_snapshots_is_refused_in_each(settings: Settings) -> None:
    """Snapshots share a segment's unchanged files (hard links): damage to one such file is damage
    to every snapshot holding it, and recovery goes back past all of them."""
    with VectorProducer(settings) as p:
        p.create_collection("s", 8, "l2", m=8, ef_construction=32)
        _ingest(p, "s", 600, 8, batch=200)
    small = settings.replace(snapshot_every_events=1, poll_max_records=1, segment_bytes=256 * 4 * 8)
    with running_projector(small) as proj:
        wait_to_end(proj, settings)
        wait_until(lambda: proj.stats.snapshots_taken >= 3, 30, message="three snapshots")
        with VectorProducer(settings) as p:  # a payload change: the graphs' files are shared
            token = p.set_payload("s", [599], {"late": True})
        proj.wait_for(token.partition, token.offset, 30)
        name = proj.request_snapshot(30)
        expected = state_of(proj)
    found = snapshots.list_snapshots(settings.snapshot_dir)
    assert found[0].name == name
    shared = found[0] / "c0000.s0000.hnsw"  # segment 0 (labels 0-255) was full before the last two
    assert shared.stat().st_nlink >= 2
    holders = [f for f in found if (f / shared.name).exists() and (f / shared.name).samefile(shared)]
    data = bytearray(shared.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shared.write_bytes(bytes(data))
    assert all(snapshots.verify(f) == [f"{f.name}/{shared.name}: checksum mismatch"] for f in holders)
    with running_projector(small) as proj:
        wait_to_end(proj, settings)
        assert proj.stats.loaded_snapshot not in {f.name for f in holders}
        assert state_of(proj) == expected


def test_snapshot_lost_entirely_rebuilds_from_the_log(settings: Settings) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("s", 8)
        _ingest(p, "s", 500, 8)
    with running_projector(settings) as proj:
        wait_to_end(proj, settings)
        expected = state_of(proj)
    shutil.rmtree(settings.snapshot_dir)
    with running_projector(settings) as proj:
        wait_to_end(proj, settings)
        assert proj.stats.loaded_snapshot is None and state_of(proj) == expected


def test_recall_at_10_against_exact_search_on_clustered_data(settings: Settings) -> None:
    rng = np.random.default_rng(42)
    dim, n = 32, 20_000
    centers = rng.normal(size=(50, dim)).astype(np.float32) * 4
    vectors = (centers[rng.integers(0, 50, n)] + rng.normal(size=(n, dim))).astype(np.float32)
    queries = (centers[rng.integers(0, 50, 200)] + rng.normal(size=(200, dim))).astype(np.float32)
    with VectorProducer(settings) as p:
        p.create_collection("r", dim, "cosine")
        token = None
        for s in range(0, n, 2000):
            token = p.upsert("r", list(range(s, s + 2000)), vectors[s:s + 2000])
    assert token is not None
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 120)
        coll = proj.state.get("r")
        recalls = []
        for q in queries:
            exact = {h.id for h in search(coll, q, 10, exact=True)}
            approx = [h.id for h in search(coll, q, 10)]
            assert len(approx) == len(set(approx)) == 10
            recalls.append(len(exact & set(approx)) / 10)
        assert float(np.mean(recalls)) >= 0.95, f"recall@10 = {np.mean(recalls):.3f}"
        # A filter is applied inside the search: every hit matches, and it agrees with exact search.
        flt = parse_filter({"must": [{"has_id": list(range(0, n, 2))}]})
        for q in queries[:20]:
            hits = search(coll, q, 10, flt=flt)
            assert len(hits) == 10 and all(h.id % 2 == 0 for h in hits)
            exact = {h.id for h in search(coll, q, 10, flt=flt, exact=True)}
            assert len(exact & {h.id for h in hits}) >= 8


def test_point_checksums_in_the_catalog_match_the_index(settings: Settings) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("c", 4)
        token = p.upsert("c", [1, 2], [[1, 2, 3, 4], [0, 0, 0, 1]], [{"a": 1}, None])
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 30)
        rows = {r["point_key"]: r for r in proj.catalog.point_rows("c")}
        coll = proj.state.get("c")
        for key, pid in (("n:1", 1), ("n:2", 2)):
            h = xxhash.xxh3_64(coll.vector(pid).astype("<f4").tobytes())
            h.update((rows[key]["payload"] or "").encode())
            assert rows[key]["checksum"] == h.hexdigest()
            assert rows[key]["version"] == token.offset





def test_a_failing_handler_dead_letters_the_event_and_the_projector_goes_on(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from projections.state import ProjectionState
    from schemas import codec

    with VectorProducer(settings) as p:
        p.create_collection("c", 2)
        p.upsert("c", [1, 2], [[1, 0], [0, 1]], [{"a": 1}, {"a": 2}])
        p.clear_payload("c", [1])                                   # the handler will blow up on this one
        monkeypatch.setattr(codec, "_json", lambda obj: '{"a":' * 5000 + "1" + "}" * 5000)
        p.publish(ev.PayloadSet(ev.EventMeta.new("c", "t"), (2,), {}))  # 5,000-deep JSON on the log
        monkeypatch.undo()
        token = p.upsert("c", [3], [[1, 1]])

    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in a handler")

    monkeypatch.setattr(ProjectionState, "_rewrite_payloads", broken)
    with running_projector(settings) as proj:
        proj.wait_for(token.partition, token.offset, 30)
        assert sorted(proj.state.get("c").label_of) == [1, 2, 3]
        assert proj.stats.dead_letters == 2
    letters = read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=2)
    reasons = {dict(r.headers)["vectorizer.reason"].decode(): dict(r.headers)["vectorizer.detail"].decode()
               for r in letters}
    assert reasons.keys() == {"handler-error", "invalid-content"}
    assert "RuntimeError: a bug in a handler" in reasons["handler-error"]
    assert "RecursionError" in reasons["invalid-content"]


def test_snapshots_are_due_by_insert_work_dimension_and_rebuilds_included(settings: Settings) -> None:
    """``snapshot_every_vectors`` counts 128-dimension equivalents: 1,500 vectors of 96 dimensions
    are 1,125 of the 2,000 that make a snapshot due; rebuilding their graphs (a settings change)
    counts 1,125 more; 600 vectors of 512 dimensions are 2,400 on their own."""
    quiet = settings.replace(snapshot_every_vectors=2000, snapshot_every_events=1_000_000,
                             snapshot_every_bytes=1 << 40, snapshot_every_seconds=100_000.0)
    rng = np.random.default_rng(1)
    with VectorProducer(settings) as p:
        p.create_collection("narrow", 96, "l2")
        token = p.upsert("narrow", list(range(1500)), rng.random((1500, 96), dtype=np.float32))
    with running_projector(quiet) as proj:
        proj.wait_for(token.partition, token.offset, 60)
        assert proj.stats.snapshots_taken == 0
        with VectorProducer(settings) as p:
            token = p.update_collection("narrow", {"quantization_config": {"scalar": {"type": "int8"}}})
            proj.wait_for(token.partition, token.offset, 60)
            wait_until(lambda: proj.stats.snapshots_taken == 1, 30, message="a snapshot after the rebuild")
            p.create_collection("wide", 512, "l2")
            token = p.upsert("wide", list(range(600)), rng.random((600, 512), dtype=np.float32))
            proj.wait_for(token.partition, token.offset, 60)
            wait_until(lambda: proj.stats.snapshots_taken == 2, 30, message="a snapshot after 2,400 equivalents")
