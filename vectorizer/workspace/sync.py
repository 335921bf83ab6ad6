"""The workspace producer: keeps workspace collections in step with their files.

One sync, per collection of the workspace file:

1. the collection exists as a *workspace* collection with the file's embedder, else it is
   created (or, when the embedder changed, deleted and created again: every chunk is
   re-embedded);
2. what is indexed — per file, its content hash, how it was chunked, its chunk ids — is
   read from the catalog (the payloads of its points), after waiting until the projection
   has applied everything on the collection's partition;
3. each included file whose hash or chunking differs is re-chunked, embedded and published:
   its chunks upserted (ids ``<path>#<n>``) and its stale chunk ids deleted, in one Kafka
   transaction; an unchanged file publishes nothing;
4. indexed files that are gone, newly excluded, or now skipped (binary, unreadable, huge)
   have their chunks deleted.

Every event carries a producer id ``vectorizer-workspace:<topic>:<hash of the workspace file's
path>`` (also its Kafka transactional id: a second producer for the same workspace file fences
the first). The projector rejects writes to a workspace collection from any producer whose id
does not start with ``vectorizer-workspace`` (``schemas.events.is_workspace_producer``), and the
API refuses them.
``watch`` repeats step 3 and 4 for the files a filesystem watcher reports changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from kafka import TopicPartition
from kafka.errors import KafkaError
from watchdog.events import FileSystemEventHandler

from consumers.replay import has_records
from infra.errors import VectorizerError
from infra.kafka import clients
from infra.kafka.topics import partition_for
from infra.keyring import Keyring
from infra.settings import Settings
from producers.errors import ProducerFenced, WorkspaceError, WorkspaceFenced
from producers.producer import VectorProducer, WriteToken
from projections.catalog import sealed
from projections.catalog.store import Catalog
from schemas import events as ev
from schemas.events import WORKSPACE_PRODUCER
from schemas.ids import from_catalog_key
from vectorizer import embedders
from vectorizer.workspace.config import CollectionSpec, Workspace, load
from vectorizer.workspace.files import Skipped, TextFile, chunk_id, read, scan

log = logging.getLogger(__name__)
UPSERT_BATCH = 256


@dataclass
class Indexed:
    """What the projection holds for one file."""

    digest: str
    chunking: str
    ids: set[str] = field(default_factory=set)


@dataclass
class CollectionReport:
    name: str
    files: int = 0
    unchanged: int = 0
    published: int = 0
    removed: int = 0
    chunks: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    created: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[int, int], None]  # (files done, chunks published)


class WorkspaceProducer:
    def __init__(self, settings: Settings, workspace: Workspace, *, catch_up_timeout: float = 60.0) -> None:
        self.settings, self.workspace = settings, workspace
        self.catch_up_timeout = catch_up_timeout
        where = xxhash.xxh3_64_hexdigest(str(workspace.path).encode())[:8]
        producer_id = f"{WORKSPACE_PRODUCER}:{settings.topic}:{where}"
        self.producer = VectorProducer(settings, producer_id=producer_id)
        self.producer.fence()  # one producer per workspace file: the newest wins, the older one stops
        self.catalog = Catalog.of(settings, create=False)  # the server's: read, never created or migrated here
        self.indexed: dict[str, dict[str, Indexed]] = {}  # collection -> path -> what is indexed
        self._stat: dict[tuple[str, str], tuple[int, int]] = {}  # (collection, path) -> (mtime_ns, size) last read
        self.last_token: WriteToken | None = None

    def close(self) -> None:
        self.producer.close()
        if isinstance(self.catalog.keys, Keyring):
            self.catalog.keys.close()

    def __enter__(self) -> WorkspaceProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # One pass ------------------------------------------------------------------------
    def sync(self, progress: Progress | None = None) -> list[CollectionReport]:
        """Bring every collection in step with its files (see the module doc)."""
        reports = []
        for spec in self.workspace.collections:
            report = CollectionReport(spec.name)
            if spec.name not in self.indexed:
                report.created = self._prepare(spec)
            self._sync_paths(spec, None, report, progress)
            reports.append(report)
        return reports

    def reload(self, workspace: Workspace) -> list[CollectionReport]:
        """Take a new version of the workspace file: fully sync each collection it adds or changes."""
        old = {spec.name: spec for spec in self.workspace.collections}
        self.workspace = workspace
        reports = []
        for spec in workspace.collections:
            if old.get(spec.name) == spec:
                continue
            report = CollectionReport(spec.name)
            report.created = self._prepare(spec)
            self._sync_paths(spec, None, report, None)
            reports.append(report)
        return reports

    def sync_paths(self, changed: Iterable[Path]) -> list[CollectionReport]:
        """Re-check only ``changed`` absolute paths (a watcher's report); folders re-check their contents."""
        changed = [Path(os.path.abspath(p)) for p in changed]  # not resolve(): a symlink is its own path
        reports = []
        for spec in self.workspace.collections:
            relative: set[str] = set()
            folders: list[str] = []
            for path in changed:
                try:
                    rel = path.relative_to(spec.root).as_posix()
                except ValueError:
                    continue
                prefix = "" if rel == "." else rel + "/"
                relative |= {p for p in self.indexed[spec.name] if p == rel or p.startswith(prefix)}
                if path.is_dir():
                    folders.append(prefix)
                elif rel != ".":
                    relative.add(rel)
            if folders:  # one walk for every folder of this round
                relative |= {p for p in scan(spec) if any(p.startswith(f) for f in folders)}
            if relative:
                report = CollectionReport(spec.name)
                self._sync_paths(spec, relative, report, None)
                reports.append(report)
        return reports

    def wait_applied(self, timeout: float = 60.0) -> None:
        """Wait until the projection has applied everything this producer published."""
        token = self.last_token
        if token is None:
            return
        deadline = time.monotonic() + timeout
        while self.catalog.positions().get(token.partition, -1) < token.offset:
            if time.monotonic() > deadline:
                raise WorkspaceError(f"the projection did not apply offset {token} within {timeout:.0f}s; "
                                     "is `vectorizer serve` (or `vectorizer project`) running on this catalog?")
            time.sleep(0.05)

    # Steps ---------------------------------------------------------------------------
    def _prepare(self, spec: CollectionSpec) -> bool:
        """Steps 1 and 2; True when the collection was (re)created."""
        self._wait_caught_up(spec.name)
        rows = {r["name"]: r for r in self.catalog.collection_rows()}
        row = rows.get(spec.name)
        embedder = embedders.build(spec.embedder)
        sparse = embedders.build_sparse(spec.embedder)
        full = {**embedder.spec, **({"sparse": sparse.spec} if sparse is not None else {})}
        created = False
        if row is not None and row["kind"] != "workspace":
            raise WorkspaceError(f"collection {spec.name!r} exists and is not a workspace collection; "
                                 "choose another name in the workspace file")
        if row is not None and _spec_of(row) != full:
            log.warning("collection %s: the embedder changed (%s -> %s); re-creating it", spec.name,
                        _spec_of(row), full)
            self._publish(lambda: self.producer.delete_collection(spec.name))
            row = None
        if row is None:
            self._publish(lambda: self.producer.create_collection(
                spec.name, embedder.dimension, "cosine", kind="workspace", embedder=full,
                sparse_vectors=None if sparse is None else {sparse.vector: {"modifier": "idf"}}))
            created = True
            self.indexed[spec.name] = {}
        else:
            self.indexed[spec.name] = self._read_indexed(spec.name)
        return created

    def _read_indexed(self, collection: str) -> dict[str, Indexed]:
        out: dict[str, Indexed] = {}
        for row in self.catalog.point_rows(collection):
            if sealed.is_sealed(row["payload"]) and self.catalog.keys is None:  # encryption at rest: open with the keys
                self.catalog.keys = Keyring.open(self.settings)
            text = self.catalog.payload(row)
            payload = json.loads(text) if text else {}
            path = payload.get("path")
            if not isinstance(path, str):
                continue
            entry = out.setdefault(path, Indexed(str(payload.get("file_hash")), str(payload.get("chunking"))))
            entry.ids.add(str(from_catalog_key(row["point_key"])))  # chunk ids are strings
        return out

    def _sync_paths(self, spec: CollectionSpec, only: set[str] | None, report: CollectionReport,
                    progress: Progress | None) -> None:
        indexed = self.indexed[spec.name]
        unreadable: list[str] = []
        if only is None:
            present = list(scan(spec, unreadable))
        else:
            present = sorted(p for p in only if spec.matches(p) and os.path.lexists(spec.root / p)
                             and not (spec.root / p).is_dir())
        for folder in unreadable:
            report.skipped.append((folder + "/", "unreadable folder (its indexed files are kept)"))
        embedder = embedders.build(spec.embedder)
        for relative in present:
            report.files += 1
            chunks = self._refresh(spec, relative, indexed, embedder, report)
            if progress is not None:
                progress(1, chunks)
        candidates = set(indexed) if only is None else {p for p in only if p in indexed}
        gone = {p for p in candidates - set(present) if not any(p.startswith(f + "/") for f in unreadable)}
        for relative in sorted(gone):
            self._forget(spec, relative, indexed)
            report.removed += 1

    def _forget(self, spec: CollectionSpec, relative: str, indexed: dict[str, Indexed]) -> None:
        """Delete a file's chunks; it leaves ``indexed`` only once the deletion is on the log."""
        ids = sorted(indexed[relative].ids)
        if ids:
            self._publish(lambda: self.producer.delete(spec.name, ids))
        del indexed[relative]
        self._stat.pop((spec.name, relative), None)

    def _refresh(self, spec: CollectionSpec, relative: str, indexed: dict[str, Indexed],
                 embedder: embedders.Embedder, report: CollectionReport) -> int:
        """Publish one file's chunks if it changed; the number of chunks published."""
        key = (spec.name, relative)
        try:
            st = (spec.root / relative).stat()
            stat = (st.st_mtime_ns, st.st_size)
            settled = time.time() - st.st_mtime > 2.0  # a younger mtime may hide a same-size rewrite
        except OSError:
            stat, settled = (0, -1), False
        known = indexed.get(relative)
        if known is not None and settled and self._stat.get(key) == stat and known.chunking == spec.chunking:
            report.unchanged += 1
            return 0
        found = read(spec, relative)
        if isinstance(found, Skipped):
            report.skipped.append((relative, found.reason))
            if known is not None:
                self._forget(spec, relative, indexed)
                report.removed += 1
            return 0
        ids = {chunk_id(relative, c.number) for c in found.chunks}
        if known is not None and known.digest == found.digest and known.chunking == spec.chunking \
                or known is None and not ids:  # unchanged, or no text at all: nothing to publish
            self._stat[key] = stat
            report.unchanged += 1
            return 0
        self._publish_file(spec, found, known, embedder)
        indexed[relative] = Indexed(found.digest, spec.chunking, ids)
        self._stat[key] = stat  # only now: a failed publish is retried from the file
        report.published += 1
        report.chunks += len(found.chunks)
        return len(found.chunks)

    def _publish_file(self, spec: CollectionSpec, found: TextFile, known: Indexed | None,
                      embedder: embedders.Embedder) -> None:
        ids = [chunk_id(found.relative, c.number) for c in found.chunks]
        stale = sorted((known.ids if known else set()) - set(ids))
        vectors = embedder.embed([c.text for c in found.chunks])
        sparse = embedders.build_sparse(spec.embedder)
        terms = None if sparse is None else sparse.embed_documents([c.text for c in found.chunks])
        payloads = [{"path": found.relative, "chunk": c.number, "start_line": c.start_line, "end_line": c.end_line,
                     "text": c.text, "file_hash": found.digest, "chunking": spec.chunking} for c in found.chunks]

        def publish() -> WriteToken | None:  # in one transaction: the new chunks and the stale ids, or nothing
            token = None
            for s in range(0, len(ids), UPSERT_BATCH):
                blocks = () if sparse is None or terms is None else (
                    _sparse_rows(sparse.vector, terms[s:s + UPSERT_BATCH]),)
                token = self.producer.upsert(spec.name, ids[s:s + UPSERT_BATCH], vectors[s:s + UPSERT_BATCH],
                                             payloads[s:s + UPSERT_BATCH], sparse=blocks)
            for s in range(0, len(stale), UPSERT_BATCH):
                token = self.producer.delete(spec.name, stale[s:s + UPSERT_BATCH])
            return token

        self._publish(publish)

    def _publish(self, send: Callable[[], WriteToken | None]) -> None:
        """Every write of the workspace producer runs in a Kafka transaction under its transactional id,
        so a second producer for the same workspace file fences this one (ProducerFenced), never both."""
        try:
            with self.producer.transaction():
                token = send()
        except ProducerFenced:
            raise WorkspaceFenced(f"another workspace producer for {self.workspace.path} took over "
                                  "(a second `vectorizer workspace sync|watch`?); this one stops") from None
        if token is not None:
            self.last_token = token

    def _wait_caught_up(self, collection: str) -> None:
        """Wait until the catalog holds every data record of the collection's partition (markers aside)."""
        deadline = time.monotonic() + self.catch_up_timeout
        try:
            consumer = clients.consumer(self.settings, "workspace")
        except KafkaError as exc:
            raise WorkspaceError(f"Kafka at {self.settings.kafka_bootstrap} does not answer: {exc}") from None
        try:
            partitions = None
            while not partitions:
                partitions = consumer.partitions_for_topic(self.settings.topic)
                if time.monotonic() > deadline:
                    raise WorkspaceError(f"topic {self.settings.topic!r} not found (is the server running?)")
                if not partitions:
                    time.sleep(0.1)
            partition = partition_for(collection, len(partitions))
            tp = TopicPartition(self.settings.topic, partition)
            consumer.assign([tp])
            while True:
                end = consumer.end_offsets([tp])[tp]
                applied = self.catalog.positions().get(partition, -1)
                if applied + 1 >= end or not has_records(consumer, tp, applied + 1, end, deadline):
                    return
                if time.monotonic() > deadline:
                    raise WorkspaceError(
                        f"the projection has applied {self.settings.topic}/{partition} up to offset {applied}, the "
                        f"log ends at {end}; is `vectorizer serve` (or `vectorizer project`) running on this catalog?")
                time.sleep(0.1)
        except KafkaError as exc:
            raise WorkspaceError(f"reading {self.settings.topic} failed: {exc}") from None
        finally:
            consumer.close()


def _sparse_rows(name: str, rows: list[tuple[np.ndarray, np.ndarray]]) -> ev.SparseRows:
    """Every chunk's sparse vector (an empty one for a chunk without words: it still holds the vector)."""
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(indices) for indices, _ in rows])
    return ev.SparseRows(name, np.arange(len(rows), dtype=np.int64), offsets,
                         np.concatenate([i for i, _ in rows]).astype(np.uint32) if rows else np.empty(0, np.uint32),
                         np.concatenate([v for _, v in rows]).astype(np.float32) if rows else np.empty(0, np.float32))


def _spec_of(row: dict[str, Any]) -> dict[str, Any] | None:
    raw = row.get("embedder")
    return json.loads(raw) if raw else None


class Watcher:
    """Feeds a :class:`WorkspaceProducer` the paths a filesystem watcher (watchdog) reports."""

    def __init__(self, producer: WorkspaceProducer, debounce: float = 0.3) -> None:
        from watchdog.observers import Observer

        self.producer, self.debounce = producer, debounce
        self._changed: set[Path] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._observer = Observer()
        self._handler = _Handler(self)
        self._watched: set[Path] = set()
        self._watch_roots(producer.workspace)
        config_dir = producer.workspace.path.parent
        if not any(config_dir.is_relative_to(root) for root in self._watched):
            self._observer.schedule(self._handler, str(config_dir), recursive=False)  # the workspace file

    def _watch_roots(self, workspace: Workspace) -> None:
        for root in sorted({spec.root for spec in workspace.collections} - self._watched):
            self._observer.schedule(self._handler, str(root), recursive=True)
            self._watched.add(root)

    def _reload(self) -> list[CollectionReport]:
        """The workspace file changed: sync the collections it adds or changes (an invalid file is
        reported and the previous one kept; a collection it no longer lists is left as it is)."""
        try:
            workspace = load(self.producer.workspace.path)
        except VectorizerError as exc:
            log.error("the workspace file changed but is not valid, keeping the previous one: %s", exc)
            return []
        self._watch_roots(workspace)
        return self.producer.reload(workspace)

    def note(self, *paths: str) -> None:
        with self._lock:
            self._changed.update(Path(p) for p in paths if p)
        self._wake.set()

    def start(self) -> None:
        """Start recording changes (before the first sync, so none is missed); ``run`` publishes them."""
        if not self._observer.is_alive():
            self._observer.start()

    def run(self, stop: threading.Event, on_round: Callable[[list[CollectionReport]], None] | None = None) -> None:
        """Until ``stop``: wait for changes, let them settle for ``debounce`` seconds, publish them."""
        self.start()
        try:
            while not stop.is_set():
                if not self._wake.wait(0.2):
                    continue
                settling = time.monotonic()
                while self._wake.is_set() and not stop.is_set():  # quiet period: more events restart it,
                    self._wake.clear()                            # up to a bound (a file written non-stop)
                    stop.wait(self.debounce)
                    if time.monotonic() - settling > max(2.0, 5 * self.debounce):
                        break
                with self._lock:
                    changed, self._changed = self._changed, set()
                try:
                    config = self.producer.workspace.path
                    reports = self._reload() if any(Path(os.path.abspath(p)) == config for p in changed) else []
                    reports += self.producer.sync_paths(changed)
                except WorkspaceFenced:
                    raise
                except VectorizerError as exc:  # e.g. Kafka unreachable: keep the paths, try again
                    log.error("publishing %d changed paths failed, retrying in 2s: %s", len(changed), exc)
                    self.note(*(str(p) for p in changed))
                    stop.wait(2.0)
                    continue
                if on_round is not None and reports:
                    on_round(reports)
        finally:
            self._observer.stop()
            self._observer.join(10)

    @property
    def started(self) -> bool:
        return self._observer.is_alive()


class _Handler(FileSystemEventHandler):
    """Every event names a path (and a destination for moves); all of them go to the watcher."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self.watcher = watcher

    def dispatch(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.watcher.note(str(event.src_path), str(getattr(event, "dest_path", "") or ""))
