"""Vector events keep their meaning across versions, through the real broker and projector:
CollectionCreated v4 and VectorsUpserted v1 (what producers wrote before named vectors) and
VectorsUpserted v2 (before conditional upserts) replay exactly as the same operations written now;
named dense and sparse vectors, their updates and deletions, and conditional upserts and updates
(``update_mode``, ``update_filter``: decided when applied) replay, snapshot and reload equal; and
the checksums verify."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaProducer

from consumers import integrity, snapshots
from infra.kafka.topics import ensure_topics
from infra.settings import Settings
from projections.catalog.store import Catalog
from projections.index.hnsw import normalize
from schemas import events as ev
from schemas.codec import decode, encode
from schemas.registry import VERSIONS, latest
from tests.helpers import catalog_of, running_projector, state_of


def _send(settings: Settings, values: list[bytes]) -> Any:
    ensure_topics(settings)
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for value in values[:-1]:
        raw.send(settings.topic, key=b"k", value=value)
    last = raw.send(settings.topic, key=b"k", value=values[-1]).get(30)
    raw.close()
    return last


def _events(name: str, rng: np.random.Generator) -> list[ev.Event]:
    meta = lambda: ev.EventMeta.new(name, "p")  # noqa: E731 - a fresh envelope per event
    vectors = rng.normal(size=(6, 3)).astype(np.float32)
    return [ev.CollectionCreated(meta(), 3, "l2", 8, 50, 20),
            ev.VectorsUpserted(meta(), tuple(range(6)), vectors, tuple({"i": i} for i in range(6))),
            ev.VectorsUpserted(meta(), (2, "a"), vectors[:2] * 2, ({"again": True}, None)),
            ev.VectorsDeleted(meta(), (4,))]


def test_previous_versions_replay_as_the_current_ones(settings: Settings, catalog_url: str) -> None:
    """A topic holding v4/v1 (and v5/v2) events builds what the same events written now build."""
    def written(name: str, created: int, upserted: int) -> list[bytes]:
        chosen = {"CollectionCreated": created, "VectorsUpserted": upserted}
        return [encode(e, schema=VERSIONS[type(e).__name__][chosen[type(e).__name__]])
                if type(e).__name__ in chosen else encode(e) for e in _events(name, np.random.default_rng(3))]

    old, mid = written("old", 4, 1), written("mid", 5, 2)
    new = [encode(e) for e in _events("new", np.random.default_rng(3))]
    assert [decode(v).meta.schema_version for v in old[:3]] == [4, 1, 1]
    assert [decode(v).meta.schema_version for v in mid[:3]] == [5, 2, 2]
    upserted = latest("VectorsUpserted").version
    assert upserted > 2
    assert [decode(v).meta.schema_version for v in new[:3]] == [latest("CollectionCreated").version, upserted,
                                                                 upserted]
    last = _send(settings, old + mid + new)
    with running_projector(settings, Catalog(catalog_url, settings.projection, settings.topic)) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        state, catalog = state_of(proj), catalog_of(proj)
    for earlier in ("old", "mid"):
        assert state[earlier]["points"] == state["new"]["points"] and len(state[earlier]["points"]) == 6
        assert {k: v for k, v in state[earlier]["config"].items() if k != "name"} == \
            {k: v for k, v in state["new"]["config"].items() if k != "name"}
        assert catalog[earlier]["points"] == catalog["new"]["points"]  # the same checksums


#: A unit row whose float32 normalisation is not itself (normalising it again changes its bits).
STORED_ROW = normalize(np.random.default_rng(0).normal(size=(1, 4)).astype(np.float32))


def _named_events(rng: np.random.Generator) -> list[ev.Event]:
    meta = lambda: ev.EventMeta.new("h", "p")  # noqa: E731
    text = rng.normal(size=(5, 4)).astype(np.float32)
    image = rng.normal(size=(2, 2)).astype(np.float32)
    sparse = ev.SparseRows("s", np.array([0, 2, 3]), np.array([0, 2, 2, 5]), np.array([7, 1, 3, 4, 9], np.uint32),
                           np.array([0.5, 1.0, 2.0, 0.25, 0.75], np.float32))
    return [
        ev.CollectionCreated(meta(), 0, "cosine", vectors='{"image":{"metric":"l2","size":2},'
                                                         '"text":{"metric":"cosine","size":4}}',
                             sparse_vectors='{"s":{"modifier":"idf"}}'),
        ev.VectorsUpserted(meta(), (1, 2, 3, 4, 5), np.empty((5, 0), np.float32), tuple({"n": i} for i in range(5)),
                           (ev.NamedRows("text", np.arange(5), text), ev.NamedRows("image", np.array([1, 4]), image)),
                           (sparse,)),
        ev.PointVectorsUpdated(meta(), (3,), (ev.NamedRows("image", np.array([0]), image[:1] * 3),)),
        ev.PointVectorsDeleted(meta(), (1,), ("text", "s")),
        ev.VectorsUpserted(meta(), (5,), np.empty((1, 0), np.float32), (None,),
                           (ev.NamedRows("text", np.array([0]), text[:1]),)),  # replaces point 5 whole
        ev.PointVectorsUpdated(meta(), (99,), (ev.NamedRows("text", np.array([0]), text[:1]),)),  # no such point
        ev.VectorsUpserted(meta(), (6,), np.empty((1, 0), np.float32), (None,),
                           (ev.NamedRows("nope", np.array([0]), text[:1]),)),  # no such vector: rejected
        ev.VectorsUpserted(meta(), (10, 11), np.empty((2, 0), np.float32), ({"k": 10}, {"k": 11}),
                           (ev.NamedRows("text", np.array([0, 1]), text[:2]),)),
        # conditional: 10 exists (left alone), 12 is new (inserted with its sparse vector)
        ev.VectorsUpserted(meta(), (10, 12), np.empty((2, 0), np.float32), ({"cond": 1}, {"cond": 1}),
                           (ev.NamedRows("text", np.array([0, 1]), text[:2] * 5),),
                           (ev.SparseRows("s", np.array([1]), np.array([0, 2]), np.array([1, 2], np.uint32),
                                          np.array([3.0, 4.0], np.float32)),), update_mode="insert_only"),
        ev.VectorsUpserted(meta(), (13,), np.empty((1, 0), np.float32), (None,), update_mode="update_only"),
        # replaced only where the filter matches the point as it is: 10 (k == 10), not 11
        ev.VectorsUpserted(meta(), (10, 11, 14), np.empty((3, 0), np.float32), ({"cond": 2},) * 3,
                           (ev.NamedRows("image", np.array([0, 1, 2]), np.ones((3, 2), np.float32)),),
                           update_filter='{"must":[{"key":"k","match":{"value":10}}]}'),
        ev.PointVectorsUpdated(meta(), (11, 12), (ev.NamedRows("image", np.array([0, 1]), image * 7),),
                               update_filter='{"must":[{"key":"k","match":{"value":11}}]}'),
        # rows as stored (a snapshot's recovery): kept bit for bit; a cosine row not of unit length is refused
        ev.VectorsUpserted(meta(), (15,), np.empty((1, 0), np.float32), (None,),
                           (ev.NamedRows("text", np.array([0]), STORED_ROW),), stored_form=True),
        ev.VectorsUpserted(meta(), (16,), np.empty((1, 0), np.float32), (None,),
                           (ev.NamedRows("text", np.array([0]), STORED_ROW * 2),), stored_form=True),
    ]


def test_named_and_sparse_vectors_replay_snapshot_and_verify(settings: Settings, tmp_path: Path) -> None:
    events = _named_events(np.random.default_rng(5))
    assert normalize(STORED_ROW).tobytes() != STORED_ROW.tobytes()  # else stored_form would not be seen
    values = [encode(e) for e in events]
    for value, event in zip(values, events, strict=True):  # every field round-trips, bytes and all
        back = decode(value)
        assert back.meta.event_id == event.meta.event_id
        assert dataclasses.replace(back, meta=event.meta) == event
    last = _send(settings, values)
    with running_projector(settings) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        coll = proj.state.get("h")
        assert proj.stats.dead_letters == 3  # the update of a missing point, the unknown vector name, 16
        label = coll.label_of
        assert not any(coll.has_vector(1, name) for name in ("text", "image", "s"))  # deleted
        assert coll.has_vector(2, "image") and coll.has_vector(2, "text") and not coll.has_vector(2, "s")
        assert all(coll.has_vector(3, name) for name in ("text", "image", "s"))  # image: updated in
        assert coll.sparse["s"].get(label[3])[0].tolist() == []  # an empty sparse vector is one
        assert coll.sparse["s"].get(label[4])[0].tolist() == [3, 4, 9]
        assert coll.has_vector(5, "text") and not coll.has_vector(5, "image")  # upserted again, whole
        assert coll.payload_of.get(label[5]) is None
        assert coll.payload_of[label[12]] == {"cond": 1}  # insert_only: inserted
        assert coll.sparse["s"].get(label[12])[1].tolist() == [3.0, 4.0] and not coll.has_vector(12, "image")
        assert 13 not in label  # update_only of a point that does not exist
        assert coll.payload_of[label[10]] == {"cond": 2} and not coll.has_vector(10, "text")  # matched: replaced
        assert coll.payload_of[label[14]] == {"cond": 2}  # new: inserted whatever the filter
        assert coll.payload_of[label[11]] == {"k": 11} and coll.has_vector(11, "text")  # not matched: as it was
        assert coll.named["text"].vectors(np.array([label[15]]))[0].tobytes() == STORED_ROW[0].tobytes()
        assert 16 not in label
        updated = events[-3]
        assert isinstance(updated, ev.PointVectorsUpdated)
        assert coll.named["image"].vectors(np.array([label[11]]))[0].tolist() == updated.named[0].vectors[0].tolist()
        first = state_of(proj), catalog_of(proj)
        snapshot = snapshots.write_snapshot(proj.state, {last.partition: last.offset + 1}, tmp_path / "snaps",
                                            settings.topic)
    loaded = snapshots.load(snapshot)
    assert state_of(loaded) == first[0]
    fresh = settings.replace(data_dir=tmp_path / "replay")
    with running_projector(fresh) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        assert (state_of(proj), catalog_of(proj)) == first
    report = integrity.verify(settings)
    assert report.ok, report.problems
