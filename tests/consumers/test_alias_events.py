"""AliasesChanged v1 through the real broker and projector: a set of actions applies in order and
whole, or is rejected whole; a collection's deletion takes its aliases, in the state and the
catalog (both backends); the state's aliases survive a snapshot, and a snapshot written before
aliases existed loads with none."""

from __future__ import annotations

import json
from pathlib import Path

from kafka import KafkaProducer

from consumers import snapshots
from infra.kafka.topics import ensure_topics
from infra.settings import Settings
from projections.catalog.store import Catalog
from projections.state import ProjectionState
from schemas import events as ev
from schemas.codec import decode, encode
from schemas.registry import VERSIONS
from tests.helpers import running_projector


def _meta(collection: str) -> ev.EventMeta:
    return ev.EventMeta.new(collection, "p")


def _events() -> list[ev.Event]:
    create, delete, rename = (lambda *a: ev.AliasAction("create", *a), lambda a: ev.AliasAction("delete", a),
                              lambda a, b: ev.AliasAction("rename", a, new_alias=b))
    return [ev.CollectionCreated(_meta("a"), 2), ev.CollectionCreated(_meta("b"), 2),
            ev.AliasesChanged(_meta("a"), (create("x", "a"), create("y", "b"), create("old", "a"))),
            ev.AliasesChanged(_meta("a"), (rename("old", "z"), create("w", "a"), delete("w"))),
            ev.AliasesChanged(_meta("a"), (delete("x"), create("q", "gone"))),  # rejected whole: x stays
            ev.AliasesChanged(_meta("b"), (create("a", "b"),)),  # an alias named like a collection: rejected
            ev.CollectionDeleted(_meta("b"))]  # y goes with b


def test_the_event_round_trips_and_is_version_1() -> None:
    event = _events()[3]
    assert isinstance(event, ev.AliasesChanged)
    decoded = decode(encode(event))
    assert isinstance(decoded, ev.AliasesChanged) and decoded.actions == event.actions
    assert decoded.meta.schema_version == 1 and set(VERSIONS["AliasesChanged"]) == {1}


def test_aliases_apply_whole_through_the_projector(settings: Settings, catalog_url: str) -> None:
    ensure_topics(settings)
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    sent = [raw.send(settings.topic, key=e.collection.encode(), value=encode(e)) for e in _events()]
    last = sent[-1].get(30)
    raw.close()
    with running_projector(settings, Catalog(catalog_url, settings.projection, settings.topic)) as proj:
        proj.wait_for(last.partition, last.offset, 30)
        assert proj.aliases() == {"x": "a", "z": "a"}
        assert proj.catalog.alias_rows() == {"x": "a", "z": "a"}
        refused = proj.verdict(last.partition, range(last.offset + 1))
        assert [(r.offset, r.status) for r in refused] == [(last.offset - 2, 404), (last.offset - 1, 409)]
        assert "Collection `gone` doesn't exist" in refused[0].detail


def test_aliases_survive_a_snapshot_and_old_snapshots_load_with_none(tmp_path: Path) -> None:
    state = ProjectionState()
    for offset, event in enumerate(_events()[:4]):
        state.apply(event, offset)
    assert state.aliases == {"x": "a", "y": "b", "z": "a"}
    path = snapshots.write_snapshot(state, {0: 4}, tmp_path, "t")
    assert snapshots.load(path).state.aliases == state.aliases
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["aliases"]  # as written before aliases existed
    manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - an older manifest, rebuilt
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = snapshots.load(path).state
    assert loaded.aliases == {} and sorted(loaded.collections) == ["a", "b"]
