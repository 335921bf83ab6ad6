"""A log that changes beneath the projection is never served as if nothing happened.

A topic deleted and recreated (a new topic id, offsets from 0 again), or a broker whose
storage was wiped: the server reports not ready with the reason, answers no write, and a
rebuild (`vectorizer replay --from-beginning`) gives the new log's state.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from kafka import KafkaAdminClient

from infra.kafka import topics
from infra.settings import Settings
from producers import VectorProducer, WriteToken
from tests.api.conftest import Running, serving, unique
from tests.conftest import single_node
from tests.helpers import run_cli, wait_until

DIM = 4


def _recreate_topic(settings: Settings) -> None:
    """Delete the events topic and let the next producer create it anew (a new topic id)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_topics([settings.topic])
        wait_until(lambda: settings.topic not in admin.list_topics(), 60, message="the topic deleted")
    finally:
        admin.close()
    topics._checked.clear()  # noqa: SLF001 - the process-wide "already created" cache names the old topic


def _fill_old_log(settings: Settings) -> None:
    with VectorProducer(settings) as p:
        p.create_collection("old", DIM, "ip", wait=True, timeout=60)
        p.upsert("old", list(range(20)), np.ones((20, DIM), np.float32), wait=True, timeout=60)


def _not_ready_because(running: Running, words: str) -> bool:
    r = running.http.get("/ready")
    return r.status_code == 503 and words in r.json()["status"]["error"]


def _assert_refuses(running: Running) -> None:
    r = running.http.put("/collections/new", json={"vectors": {"size": DIM, "distance": "Dot"}})
    assert r.status_code == 503 and "the log changed beneath this projection" in r.json()["status"]["error"], r.text
    r = running.http.put("/collections/old/points", params={"wait": "true"},
                         json={"points": [{"id": 1, "vector": [1.0] * DIM}]})
    assert r.status_code == 503, r.text
    assert running.http.post("/collections/old/points/count", json={}).status_code == 503


def test_a_recreated_topic_stops_the_server_then_a_rebuild_serves_the_new_log(kafka_bootstrap: str,
                                                                                 tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('logid')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    with serving(settings) as running:
        _fill_old_log(settings)
        written = running.http.put("/collections/old/points", params={"wait": "true"},
                                   json={"points": [{"id": 99, "vector": [1.0] * DIM}]}).json()["result"]
        old_token = written["write_token"]
        assert running.replica.projector.identity is not None
        assert WriteToken.parse(old_token).log == running.replica.projector.identity.tag  # it names its log
        assert running.http.post("/collections/old/points/count", params={"consistency": old_token},
                                 json={}).json()["result"]["count"] == 21
        assert running.http.post("/collections/old/snapshots").status_code == 200
        # Recreated while the server runs: it stops serving within its check interval.
        _recreate_topic(settings)
        with VectorProducer(settings) as p:
            p.create_collection("new", DIM, "ip")
        wait_until(lambda: _not_ready_because(running, "the topic"), 60, message="not ready, naming the topic")
        _assert_refuses(running)

    # Restarted on the changed log (snapshot and catalog of the old one): still refuses, with the reason.
    with serving(settings, wait_ready=False) as running:
        wait_until(lambda: _not_ready_because(running, "the topic id is"), 60, message="not ready at start")
        _assert_refuses(running)
    code, out = run_cli(settings, "status")
    assert code == 1 and "the log changed beneath this projection" in out, out

    code, out = run_cli(settings, "replay", "--from-beginning")
    assert code == 0, out
    with serving(settings) as running:
        names = [c["name"] for c in running.http.get("/collections").json()["result"]["collections"]]
        assert names == ["new"]
        assert running.http.put("/collections/new/points", params={"wait": "true"},
                                json={"points": [{"id": 1, "vector": [1.0] * DIM}]}).status_code == 200
        # A token of the old log is refused, never satisfied by a coincidence of offsets.
        r = running.http.post("/collections/new/points/count", params={"consistency": old_token}, json={})
        assert r.status_code == 400 and "is from another log" in r.json()["status"]["error"], r.text
        # A token without a log (older ones, the producer library's) is still accepted.
        assert running.http.post("/collections/new/points/count", params={"consistency": "0:0"},
                                 json={}).status_code == 200


def test_a_wiped_broker_or_another_cluster_is_a_changed_log(kafka_bootstrap: str, tmp_path: Path) -> None:
    broker = single_node(tmp_path / "kafka")
    broker.start(timeout=120)
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic="wiped.events", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    try:
        with serving(settings):
            _fill_old_log(settings)
        broker.stop()
        shutil.rmtree(broker.log_dirs)  # the broker's storage is lost; it is formatted anew at start
        broker.start(timeout=120)
        topics._checked.clear()  # noqa: SLF001 - this process created the topic on the old storage
        with VectorProducer(settings) as p:  # the topic is created again, offsets from 0
            p.create_collection("new", DIM, "ip")
        with serving(settings, wait_ready=False) as running:
            wait_until(lambda: _not_ready_because(running, "the log changed beneath this projection"), 60,
                       message="not ready after the wipe")
            _assert_refuses(running)
        # The same data directory pointed at another cluster (the session's broker) holding that topic.
        elsewhere = settings.replace(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('moved')}")
        with VectorProducer(settings.replace(topic=elsewhere.topic)) as p:
            p.create_collection("old", DIM, "ip")
        topics._checked.clear()  # noqa: SLF001
        with VectorProducer(elsewhere) as p:
            p.create_collection("other", DIM, "ip")
        with serving(settings.replace(topic=elsewhere.topic), wait_ready=True):
            pass  # the projection of that topic on the wiped broker's cluster
        with serving(elsewhere, wait_ready=False) as running:
            wait_until(lambda: _not_ready_because(running, "the cluster id is"), 60, message="another cluster")
            _assert_refuses(running)
    finally:
        broker.stop()



def test_a_backup_names_its_log_and_restores_only_onto_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The backup carries the log identity; restored, the catalog names that log (so a server
    started on another log halts); a restore onto a recreated topic is refused, writing nothing."""
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic=f"t.{unique('logbk')}", data_dir=tmp_path / "data",
                        snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0)
    with serving(settings):
        _fill_old_log(settings)
    code, out = run_cli(settings, "backup", str(tmp_path / "bk"))
    assert code == 0, out
    manifest = json.loads((tmp_path / "bk" / "backup.json").read_text())
    from projections.catalog.store import Catalog
    catalog = Catalog(settings.resolved_catalog_url, settings.projection, settings.topic, create=False)
    built_from = catalog.log_identity()
    catalog.close()
    assert built_from is not None and manifest["log"] == {"cluster_id": built_from[0], "topic_id": built_from[1]}

    same = settings.replace(data_dir=tmp_path / "same")
    code, out = run_cli(same, "restore", str(tmp_path / "bk"))
    assert code == 0, out
    restored = Catalog(same.resolved_catalog_url, same.projection, same.topic, create=False)
    assert restored.log_identity() == built_from
    restored.close()

    _recreate_topic(settings)
    with VectorProducer(settings) as p:  # the same names and offsets on a new topic: only the topic id tells
        p.create_collection("old", DIM, "ip")
        p.upsert("old", list(range(20)), np.ones((20, DIM), np.float32))
    other = settings.replace(data_dir=tmp_path / "other")
    code, out = run_cli(other, "restore", str(tmp_path / "bk"))
    assert code == 1 and "the topic id is" in out and "does not belong to the log" in out, out
    assert not (other.data_dir / "catalog.db").exists(), "a refused restore writes no catalog"
