"""Collection aliases, differential against qdrant-client's local mode: changing them (in order,
all or none), listing them, reading and writing through them, a collection's deletion taking its
aliases; the mistakes Qdrant refuses, refused with its status; the projection's verdict on a set
that became invalid after the API's check; aliases surviving a restart from a snapshot and a
rebuild from the log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from consumers import backup, integrity, snapshots
from infra.settings import Settings
from producers.errors import WriteRejected
from projections.catalog.store import Catalog
from schemas import events as ev
from tests.api.conftest import Running, serving, unique

VECTORS = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.2]]


def create(alias: str, collection: str) -> m.CreateAliasOperation:
    return m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=collection, alias_name=alias))


def delete(alias: str) -> m.DeleteAliasOperation:
    return m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias))


def rename(old: str, new: str) -> m.RenameAliasOperation:
    return m.RenameAliasOperation(rename_alias=m.RenameAlias(old_alias_name=old, new_alias_name=new))


def _aliases(client: QdrantClient, collection: str | None = None) -> list[tuple[str, str]]:
    found = client.get_aliases() if collection is None else client.get_collection_aliases(collection)
    return sorted((a.alias_name, a.collection_name) for a in found.aliases)


def _both(clients: tuple[QdrantClient, QdrantClient], call: Callable[[QdrantClient], Any]) -> Any:
    """``call`` on both; the answers must be equal (the server's is returned)."""
    ours, local = (call(c) for c in clients)
    assert ours == local
    return ours


def _collection(clients: tuple[QdrantClient, QdrantClient], name: str) -> None:
    for c in clients:
        c.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT))
        c.upsert(name, m.Batch(ids=[1, 2], vectors=VECTORS[:2], payloads=[{"n": 1}, {"n": 2}]), wait=True)


def _points(client: QdrantClient, name: str) -> list[tuple[Any, Any]]:
    return sorted((p.id, p.payload) for p in client.scroll(name, limit=100, with_payload=True)[0])


def test_aliases_read_write_rename_and_go_with_their_collection(server: Running,
                                                               clients: tuple[QdrantClient, QdrantClient]) -> None:
    a, b = unique("alias_a"), unique("alias_b")
    x, y, z, w = (unique(n) for n in ("x", "y", "z", "w"))
    _collection(clients, a)
    _collection(clients, b)
    assert _both(clients, lambda c: c.update_collection_aliases([create(x, a), create(y, a), create(z, b)]))
    assert _both(clients, lambda c: [p for p in _aliases(c) if p[1] in (a, b)]) == sorted([(x, a), (y, a), (z, b)])
    _both(clients, lambda c: _aliases(c, a))
    assert _both(clients, lambda c: _aliases(c, x)) == []  # an alias has no aliases (no 404 either)

    # reads and writes through an alias are the collection's; the log holds the real name
    for c in clients:
        c.upsert(x, m.Batch(ids=[3, 4], vectors=VECTORS[2:], payloads=[{"n": 3}, {}]), wait=True)
        c.set_payload(y, {"via": "alias"}, points=[1], wait=True)
        c.delete(x, m.PointIdsList(points=[2]), wait=True)
    assert _both(clients, lambda c: _points(c, a)) == _both(clients, lambda c: _points(c, x))
    assert _both(clients, lambda c: c.count(y, exact=True).count) == 3
    _both(clients, lambda c: [(p.id, p.score) for p in c.query_points(x, query=VECTORS[0], limit=3).points])
    _both(clients, lambda c: [p.id for p in c.retrieve(y, ids=[1, 3, 4])])
    assert _both(clients, lambda c: [(p.id, p.score) for p in c.query_points(  # a body's name resolves too
        b, query=1, lookup_from=m.LookupLocation(collection=y), limit=2).points]) == [(1, 1.0), (2, 0.0)]
    assert _both(clients, lambda c: c.get_collection(x).points_count) == 3
    assert _both(clients, lambda c: c.collection_exists(x))
    coll = server.replica.projector.state.get(a)
    assert coll is not None and len(coll) == 3 and server.replica.projector.state.get(x) is None
    metrics = server.http.get("/metrics").text  # requests through an alias count under their route
    assert 'endpoint="unmatched"' not in metrics and 'endpoint="/collections/{collection_name}/points/query"' in metrics

    # in order, all at once: a swap of z from b to a, a rename (replacing nothing)
    assert _both(clients, lambda c: c.update_collection_aliases([delete(z), create(z, a), rename(y, w)]))
    assert _both(clients, lambda c: _aliases(c, a)) == sorted([(x, a), (z, a), (w, a)])
    assert _both(clients, lambda c: _aliases(c, b)) == []
    assert _both(clients, lambda c: c.update_collection_aliases([delete(unique("never"))]))  # no error

    assert _both(clients, lambda c: c.delete_collection(x)) is False  # deleting takes a name, not an alias
    assert _both(clients, lambda c: c.delete_collection(a)) is True
    assert _both(clients, lambda c: [p for p in _aliases(c) if p[1] in (a, b)]) == []
    r = server.http.get(f"/collections/{x}")
    assert r.status_code == 404, r.text


def _status(call: Callable[[], Any]) -> int:
    try:
        call()
    except UnexpectedResponse as exc:
        return int(exc.status_code or 0)
    return 200


def test_mistakes_qdrant_refuses_are_refused_whole(server: Running, clients: tuple[QdrantClient, QdrantClient]) -> None:
    a = unique("alias_err")
    x, y = unique("ex"), unique("ey")
    _collection(clients, a)
    assert _both(clients, lambda c: c.update_collection_aliases([create(x, a)]))
    ours, local = clients
    cases: list[tuple[list[m.AliasOperations], int]] = [
        ([create(y, unique("missing"))], 404),
        ([create(a, a)], 409),  # an alias named like a collection
        ([rename(unique("missing"), y)], 404),
        ([rename(x, a)], 409),
        ([create(y, a), rename(unique("missing"), unique("n"))], 404),  # none applies
        ([create(y, x)], 404)]  # an alias names a collection, not an alias
    for actions, status in cases:
        assert _status(lambda: ours.update_collection_aliases(actions)) == status, actions  # noqa: B023 - called at once
        with pytest.raises(ValueError):
            local.update_collection_aliases(actions)
    assert _both(clients, lambda c: _aliases(c, a)) == [(x, a)]
    assert _status(lambda: ours.create_collection(x, vectors_config=m.VectorParams(size=4,
                                                                                   distance=m.Distance.DOT))) == 400
    with pytest.raises(ValueError):
        local.create_collection(x, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT))
    http: httpx.Client = server.http
    for body, text in [({"actions": [{"create_alias": {"collection_name": a, "alias_name": "no/slash"}}]},
                        "alias_name"),
                       ({"actions": [{"make_alias": {"alias_name": y}}]}, "actions[0]"),
                       ({"actions": [{"delete_alias": {"alias_name": y, "collection_name": a}}]},
                        "actions[0].delete_alias.collection_name"),
                       ({"actions": []}, "actions"), ({"actions": "x"}, "actions")]:
        r = http.post("/collections/aliases", json=body)
        assert r.status_code == 400 and text in r.json()["status"]["error"], r.text
    assert _aliases(ours, a) == [(x, a)]


def test_a_write_through_an_alias_of_a_workspace_collection_is_refused(server: Running) -> None:
    """The read-only rule applies to the collection the alias names."""
    name, alias = unique("alias_ws"), unique("ws")
    api = server.replica.app.state.api
    api.await_tokens([api.producer.create_collection(name, 4, kind="workspace")], 30)
    r = server.http.post("/collections/aliases", json={"actions": [{"create_alias": {"collection_name": name,
                                                                                     "alias_name": alias}}]})
    assert r.status_code == 200 and r.json()["result"] is True, r.text
    r = server.http.put(f"/collections/{alias}/points", json={"points": [{"id": 1, "vector": VECTORS[0]}]})
    assert r.status_code == 403 and name in r.json()["status"]["error"], r.text
    assert server.http.get(f"/collections/{alias}").json()["result"]["points_count"] == 0


def test_the_projection_rejects_what_became_invalid(server: Running) -> None:
    """A set checked against an older state (here: not checked at all) is the projection's to refuse:
    the verdict has Qdrant's status, and nothing of the set applied."""
    a = unique("alias_race")
    assert server.http.put(f"/collections/{a}", json={"vectors": {"size": 4, "distance": "Dot"}}).status_code == 200
    api = server.replica.app.state.api
    token = api.producer.change_aliases([ev.AliasAction("create", unique("ok"), a),
                                         ev.AliasAction("create", unique("bad"), unique("gone"))])
    api.await_tokens([token], 30)
    with pytest.raises(WriteRejected) as caught:
        api.check_verdict(token)
    assert caught.value.status == 404 and "doesn't exist" in str(caught.value)
    assert server.http.get(f"/collections/{a}/aliases").json()["result"] == {"aliases": []}


def test_aliases_survive_a_restart_from_a_snapshot_and_a_rebuild_from_the_log(kafka_bootstrap: str,
                                                                               tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('aliases')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    a, b = unique("ra"), unique("rb")
    x, y, z = unique("rx"), unique("ry"), unique("rz")
    with serving(settings) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        for name in (a, b):
            client.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT))
        client.upsert(a, m.Batch(ids=[1, 2], vectors=VECTORS[:2]), wait=True)
        client.update_collection_aliases([create(x, a), create(y, b)])
        assert server.replica.projector.request_snapshot(60) is not None
        client.update_collection_aliases([rename(x, z), create(x, b)])  # after the snapshot: replayed
        client.delete_collection(b)  # y and the new x go with it
        want = _aliases(client)
        assert want == [(z, a)]
        client.close()
    with serving(settings) as restarted:  # from the snapshot, then the log after it
        client = QdrantClient(url=restarted.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        assert restarted.replica.projector.stats.loaded_snapshot is not None
        assert _aliases(client) == want
        assert client.count(z, exact=True).count == 2
        client.close()
    report = integrity.verify(settings)
    assert report.ok, report.problems
    restored = settings.replace(data_dir=tmp_path / "restored")
    backup.backup(settings, tmp_path / "backup")
    backup.restore(restored, tmp_path / "backup")
    for where in (settings, restored):  # the catalog's rows, and the backup's snapshot
        catalog = Catalog.of(where, create=False)
        try:
            assert catalog.alias_rows() == dict(want)
        finally:
            catalog.close()
    loaded = snapshots.load_newest(restored.snapshot_dir)
    assert loaded is not None and loaded.state.aliases == dict(want)
    rebuilt = settings.replace(data_dir=tmp_path / "rebuilt")  # no snapshot, no catalog: the whole log
    with serving(rebuilt) as fresh:
        client = QdrantClient(url=fresh.url, prefer_grpc=False, timeout=60, check_compatibility=False)
        assert fresh.replica.projector.stats.loaded_snapshot is None
        assert _aliases(client) == want
        assert [p.id for p in client.query_points(z, query=VECTORS[0], limit=1).points] == [1]
        client.close()
