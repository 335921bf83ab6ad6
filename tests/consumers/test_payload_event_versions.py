"""Payload events keep the meaning they were written with: v1 PayloadSet / PayloadKeysDeleted
(dotted keys) replay exactly as before JSON paths existed; v2 events (what producers write now)
follow Qdrant's path grammar. Both kinds sit on one topic and go through the real projector."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from kafka import KafkaProducer

from infra.settings import Settings
from producers import VectorProducer
from projections.catalog.store import Catalog
from schemas import events as ev
from schemas.codec import decode, encode
from schemas.registry import VERSIONS, latest
from tests.helpers import catalog_of, read_topic, running_projector, state_of

START: dict[str, Any] = {"nest": [{"a": "100", "b": "200"}], "a": [{"b": 1, "c": 2}], "x.y": 1, "x": {"y": 2},
                         "n": {"m": 1}}
# (event builder, for one point id) - the same edits are written once as v1 and once as v2
EDITS: list[Any] = [
    lambda meta, pid: ev.PayloadSet(meta, (pid,), {"a": "101"}, "nest[0]"),
    lambda meta, pid: ev.PayloadSet(meta, (pid,), {"v": 1}, '"q.r"'),
    lambda meta, pid: ev.PayloadSet(meta, (pid,), {"gone": None}),
    lambda meta, pid: ev.PayloadKeysDeleted(meta, (pid,), ("a.b", '"x.y"')),
    lambda meta, pid: ev.PayloadSet(meta, (pid,), {"w": 1}, "n.m"),
    lambda meta, pid: ev.PayloadSet(meta, (pid,), {"z": 1}, "a["),  # not a JSON path
]
# What the projection built from these v1 events before v2 existed (dotted keys, split on ".").
OLD_RESULT = {"nest": [{"a": "100", "b": "200"}], "nest[0]": {"a": "101"}, '"q': {'r"': {"v": 1}}, "gone": None,
              "a": [{"c": 2}], "x.y": 1, "x": {"y": 2}, "n": {"m": {"w": 1}}, "a[": {"z": 1}}
# Qdrant's semantics; the last edit is dead-lettered (rejected), so it changes nothing.
NEW_RESULT = {"nest": [{"a": "101", "b": "200"}], "q.r": {"v": 1}, "a": [{"b": 1, "c": 2}], "x": {"y": 2},
              "n": {"m": {"w": 1}}}


def _v1(event: ev.Event) -> bytes:
    return encode(event, schema=VERSIONS[type(event).__name__][1])


def test_v1_payload_events_replay_as_before_and_v2_follow_json_paths(settings: Settings, catalog_url: str,
                                                                    tmp_path: Any) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("c", 2, "l2")
        p.upsert("c", [1, 2], np.eye(2, dtype=np.float32), [START, START])
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    values = [_v1(edit(ev.EventMeta.new("c", "old-producer"), 1)) for edit in EDITS]
    values += [encode(edit(ev.EventMeta.new("c", "new-producer"), 2)) for edit in EDITS]
    assert [decode(v).meta.schema_version for v in values] == [1] * 6 + [2] * 6
    assert latest("PayloadSet").version == latest("PayloadKeysDeleted").version == 2
    for value in values[:-1]:
        raw.send(settings.topic, key=b"c", value=value)
    last = raw.send(settings.topic, key=b"c", value=values[-1]).get(30)
    raw.close()

    with running_projector(settings, Catalog(catalog_url, settings.projection, settings.topic)) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        coll = proj.state.get("c")
        assert coll.payload_of[coll.label_of[1]] == OLD_RESULT
        assert coll.payload_of[coll.label_of[2]] == NEW_RESULT
        assert proj.stats.dead_letters == 1
        rows = catalog_of(proj)["c"]["points"]
        assert json.loads(rows["n:1"][0]) == OLD_RESULT and json.loads(rows["n:2"][0]) == NEW_RESULT
        first = state_of(proj), catalog_of(proj)
    letters = read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=1)
    assert [r.value for r in letters] == [values[-1]]
    headers = dict(letters[0].headers)
    assert headers["vectorizer.reason"] == b"rejected"
    assert headers["vectorizer.detail"].decode().startswith("key: invalid payload key 'a['")

    # A fresh projection replaying the whole topic builds exactly the same thing.
    fresh = settings.replace(data_dir=tmp_path / "replay")
    with running_projector(fresh) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        assert (state_of(proj), catalog_of(proj)) == first
