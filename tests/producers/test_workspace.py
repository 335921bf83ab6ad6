"""Workspace collections through the real broker and a real server.

A small tree of real text files (this repository's docs) is synced; then, under ``watch``,
files are edited, added, deleted and renamed; text search finds what changed; a second
sync publishes nothing; a restart and a fresh replay answer the same; the API and other
producers cannot change the collection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.settings import Settings
from producers import VectorProducer
from tests.api.conftest import Running, serving
from tests.helpers import read_topic, running_projector, state_of, wait_until
from vectorizer.workspace import Watcher, WorkspaceError, WorkspaceProducer, load
from vectorizer.workspace.files import read, scan

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = """\
projects:
  - name: docs
    root: tree
    collections:
      - name: notes
        include: ["**/*.md", "*.txt"]
        exclude: ["drafts/**"]
        chunk_size: 600
        chunk_overlap: 100
        embedding: {model: hashing, dimension: 256}
"""


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "guide").mkdir(parents=True)
    (tree / "drafts").mkdir()
    shutil.copy(ROOT / "docs" / "architecture.md", tree / "guide" / "architecture.md")
    shutil.copy(ROOT / "README.md", tree / "README.md")
    (tree / "notes.txt").write_text("Groceries: apples, oat milk, coffee beans.\nCall the plumber on Tuesday.\n")
    (tree / "drafts" / "secret.md").write_text("unpublished draft about submarines\n")
    (tree / "logo.md").write_bytes(b"\x89PNG\0\0binary")
    (tmp_path / "vectorize-workspace.yml").write_text(WORKSPACE)
    return tree


def _text_search(server: Running, query: str, limit: int = 3, **extra: Any) -> list[dict[str, Any]]:
    r = server.http.post("/collections/notes/search/text", json={"query": query, "limit": limit, **extra})
    assert r.status_code == 200, r.text
    return list(r.json()["result"]["points"])


def _paths(server: Running) -> dict[str, int]:
    """path -> number of chunks indexed for it."""
    out: dict[str, int] = {}
    offset = None
    while True:
        page = server.http.post("/collections/notes/points/scroll", json={
            "limit": 500, "with_payload": ["path"], **({"offset": offset} if offset is not None else {})}).json()
        for p in page["result"]["points"]:
            out[p["payload"]["path"]] = out.get(p["payload"]["path"], 0) + 1
        offset = page["result"]["next_page_offset"]
        if offset is None:
            return out


@contextlib.contextmanager
def _watching(producer: WorkspaceProducer) -> Iterator[Watcher]:
    """``producer`` under a running watcher, stopped (and checked stopped) at the end."""
    watcher = Watcher(producer, debounce=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: watcher.started, 10, message="the watcher")
    try:
        yield watcher
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the watcher stopped"


def _end_offset(settings: Settings) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        tp = TopicPartition(settings.topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def test_sync_watch_search_restart_replay_and_read_only(settings: Settings, tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    workspace = load(tmp_path / "vectorize-workspace.yml")
    spec = workspace.collections[0]
    expected = {rel: len(found.chunks) for rel in scan(spec) if not hasattr(found := read(spec, rel), "reason")}
    assert set(expected) == {"README.md", "guide/architecture.md", "notes.txt"}

    with serving(settings) as server, contextlib.ExitStack() as stack:
        with WorkspaceProducer(settings, workspace) as first:
            reports = first.sync()
            first.wait_applied(60)
        (report,) = reports
        assert report.created and report.published == 3 and report.chunks == sum(expected.values())
        assert report.skipped == [("logo.md", "binary")]
        assert _paths(server) == expected, "every chunk of every included text file, nothing else"
        point = server.http.get("/collections/notes/points/guide%2Farchitecture.md%230").json()["result"]
        assert point["payload"]["path"] == "guide/architecture.md" and point["payload"]["chunk"] == 0
        assert point["payload"]["start_line"] == 1 and point["payload"]["text"].startswith("#")
        assert set(point["payload"]) == {"path", "chunk", "start_line", "end_line", "text", "file_hash", "chunking"}
        hit = _text_search(server, "oat milk coffee beans plumber")[0]
        assert hit["payload"]["path"] == "notes.txt"

        # A second sync (a fresh producer, state read back from the catalog) publishes nothing.
        end = _end_offset(settings)
        producer = stack.enter_context(WorkspaceProducer(settings, workspace))  # closed on any failure too
        (report,) = producer.sync()
        assert (report.published, report.removed, report.unchanged) == (0, 0, 3)
        assert _end_offset(settings) == end, "an unchanged tree puts nothing on the log"

        # Under watch: edit, add, delete, rename.
        with _watching(producer):
            with open(tree / "notes.txt", "a") as f:
                f.write("Remember the zebra quartz lighthouse appointment.\n")
            wait_until(lambda: _text_search(server, "zebra quartz lighthouse")[0]["payload"]["text"].count("zebra"),
                       30, message="the edited text to be searchable")
            (tree / "guide" / "kafka.md").write_text("# Brokers\n\nA partition leader election after a broker "
                                                     "failure keeps the topic writable.\n")
            wait_until(lambda: _paths(server).get("guide/kafka.md") == 1, 30, message="the new file")
            assert _text_search(server, "partition leader election")[0]["payload"]["path"] == "guide/kafka.md"
            (tree / "README.md").unlink()
            wait_until(lambda: "README.md" not in _paths(server), 30, message="the deleted file's chunks to go")
            (tree / "guide" / "kafka.md").rename(tree / "guide" / "brokers.md")
            wait_until(lambda: _paths(server) == {"guide/architecture.md": expected["guide/architecture.md"],
                                                  "notes.txt": 1, "guide/brokers.md": 1},
                       30, message="the renamed file under its new path only")
            (tree / "drafts" / "more.md").write_text("still a draft\n")  # excluded: never indexed
            (tree / "guide" / "after.md").write_text("written after the draft\n")
            wait_until(lambda: "guide/after.md" in _paths(server), 30, message="a file written after the draft")
        producer.wait_applied(60)
        assert "drafts/more.md" not in _paths(server)
        before = _text_search(server, "partition leader election broker", limit=5)

        # Read-only: the API refuses writes, naming the collection; another producer's events are dead-lettered.
        for method, path, body in [
            ("PUT", "/collections/notes/points", {"points": [{"id": 1, "vector": [0.0] * 256}]}),
            ("POST", "/collections/notes/points/delete", {"points": ["notes.txt#0"]}),
            ("POST", "/collections/notes/points/payload", {"payload": {"x": 1}, "points": ["notes.txt#0"]}),
            ("DELETE", "/collections/notes", None),
        ]:
            r = server.http.request(method, path, json=body)
            assert r.status_code == 403 and "notes" in r.text and "read-only" in r.text, (method, path, r.text)
        with VectorProducer(settings, producer_id="someone-else") as other:
            token = other.upsert("notes", ["intruder#0"], np.ones((1, 256), np.float32), [{"path": "x"}])
        server.replica.projector.wait_for(token.partition, token.offset, 30)
        assert "x" not in _paths(server)
        letters = read_topic(settings.kafka_bootstrap, settings.dlq_topic, expected=1)
        assert [dict(r.headers)["vectorizer.reason"] for r in letters] == [b"rejected"]
        indexed = state_of(server.replica.projector)

    # A restart answers the same; so does a fresh replay of the whole topic elsewhere.
    with serving(settings) as server:
        assert _text_search(server, "partition leader election broker", limit=5) == before
        assert state_of(server.replica.projector) == indexed
    fresh = settings.replace(data_dir=tmp_path / "elsewhere", projection="elsewhere")
    with running_projector(fresh) as replayed:
        replayed.wait_for(token.partition, token.offset, 60)
        assert state_of(replayed) == indexed


def _sync(settings: Settings, tmp_path: Path, text: str, **kwargs: Any) -> Any:
    (tmp_path / "vectorize-workspace.yml").write_text(text)
    with WorkspaceProducer(settings, load(tmp_path / "vectorize-workspace.yml"), **kwargs) as producer:
        (report,) = producer.sync()
        producer.wait_applied(60)
    return report


def test_changed_chunking_exclusions_and_embedder_then_drop(settings: Settings, tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "empty.md").write_text("\n\n")  # no text: no chunks, and nothing to publish on every sync
    with serving(settings) as server:
        first = _sync(settings, tmp_path, WORKSPACE)
        assert first.published == 3 and _sync(settings, tmp_path, WORKSPACE).published == 0
        assert "empty.md" not in _paths(server)

        rechunked = _sync(settings, tmp_path, WORKSPACE.replace("chunk_size: 600", "chunk_size: 300"))
        assert (rechunked.published, rechunked.unchanged) == (3, 1)  # every file cut again; empty.md as before
        spec = load(tmp_path / "vectorize-workspace.yml").collections[0]
        assert _paths(server) == {rel: len(f.chunks) for rel in scan(spec)
                                  if not hasattr(f := read(spec, rel), "reason") and f.chunks}
        assert rechunked.chunks > first.chunks

        excluded = _sync(settings, tmp_path, WORKSPACE.replace('"drafts/**"', '"drafts/**", "notes.txt"')
                         .replace("chunk_size: 600", "chunk_size: 300"))
        assert excluded.removed == 1 and "notes.txt" not in _paths(server)

        recreated = _sync(settings, tmp_path, WORKSPACE.replace("dimension: 256", "dimension: 128"))
        assert recreated.created and recreated.published == 3
        info = server.http.get("/collections/notes").json()["result"]
        assert info["config"]["params"]["vectors"]["size"] == 128
        assert _text_search(server, "Groceries: apples, oat milk, coffee beans. Call the plumber on Tuesday.")[0][
            "payload"]["path"] == "notes.txt"

        env = dict(os.environ, VECTORIZER_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VECTORIZER_TOPIC=settings.topic,
                   VECTORIZER_DATA_DIR=str(settings.data_dir))
        dropped = subprocess.run([sys.executable, "-m", "vectorizer", "workspace", "drop", "notes"], cwd=ROOT,
                                 env=env, capture_output=True, text=True, timeout=120)
        assert dropped.returncode == 0, dropped.stderr
        wait_until(lambda: server.http.get("/collections/notes/exists").json()["result"]["exists"] is False, 30,
                   message="the dropped collection to go")

    # No projector runs: the log holds a record the catalog does not; sync refuses to guess.
    with VectorProducer(settings) as other:
        other.create_collection("unrelated", 4)
    with pytest.raises(WorkspaceError, match="is `vectorizer serve` .* running"):
        _sync(settings, tmp_path, WORKSPACE, catch_up_timeout=2.0)


def test_watch_follows_changes_to_the_workspace_file(settings: Settings, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    tree = _tree(tmp_path)
    config = tmp_path / "vectorize-workspace.yml"
    with serving(settings) as server, WorkspaceProducer(settings, load(config)) as producer:
        producer.sync()
        with _watching(producer):
            wait_until(lambda: "notes.txt" in _paths(server), 30, message="the first sync applied")
            config.write_text(WORKSPACE.replace('"drafts/**"', '"drafts/**", "notes.txt"'))  # newly excluded
            wait_until(lambda: "notes.txt" not in _paths(server), 30, message="the excluded file's chunks to go")
            config.write_text(WORKSPACE.replace("chunk_size: 600", "chunk_size: lots"))  # invalid: kept as was
            wait_until(lambda: any("not valid, keeping the previous one" in r.getMessage() for r in caplog.records),
                       30, message="the invalid workspace file reported")
            (tree / "guide" / "late.md").write_text("written after the bad edit\n")
            wait_until(lambda: "guide/late.md" in _paths(server), 30, message="watching goes on")
            assert "notes.txt" not in _paths(server), "the last valid file still rules"
