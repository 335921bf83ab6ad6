"""Snapshots of the in-memory projection: written atomically, verified before loading, incremental.

Layout (format 3): ``<snapshot dir>/<id>/manifest.json`` plus, per collection ``cNNNN`` and per
index segment ``sJJJJ`` of it (``projections.index.segments``): ``cNNNN.sJJJJ.hnsw`` (the
segment's graph, hnswlib's own format), ``cNNNN.sJJJJ.ints.npy`` (label and id of its
integer-id points, an int64 column pair that loads in milliseconds) and
``cNNNN.sJJJJ.points.avro`` (label, id, payload of its points with a string id or a payload;
an Avro container). No pickle anywhere. Formats 1 and 2 (one graph per collection) still load.
The manifest holds the offsets the snapshot covers, the collections' aliases (``aliases``:
alias -> collection; a snapshot without the field has none), the collections' configs, label
allocators and segments (each segment's graphs keyed by vector name, ``""`` for the unnamed
vector: named vectors add entries ``cNNNN.sJJJJ.vKKK.*`` with a ``labels_file`` of the labels
holding them, not a format; the ``""`` entry has one, ``cNNNN.sJJJJ.labels.npy``, only when some
point of the segment lacks its unnamed vector), sparse indexes as their columns (``cNNNN.pKKK.*.npy``: the
vectors and the postings segments, adopted on load without a rebuild), an xxh3-64 per file,
and its own checksum. Format 4 is format 3 written by a process holding data keys (encryption
at rest): each collection entry says whether its files are ``sealed``
(:mod:`consumers.sealedfiles`, the checksums being those of the sealed bytes). ``requested_for.json``,
outside the manifest (added after the snapshot is complete, never read by ``load``), names the
collections whose ``POST /collections/{c}/snapshots`` the snapshot answered; folders
without it (periodic snapshots, older versions) were requested for none.

Incremental: a segment's graph file is written again only when vectors were added to it since
the snapshot that last wrote it, its points files only when its points changed; otherwise the
new snapshot's file is a hard link to the earlier one (same bytes, same checksum, no write).
So a snapshot writes what changed, segment by segment: after a bulk load, the segment being
filled; the full segments before it are written once. Snapshots sharing a file share its
fate: a damaged shared file makes every snapshot holding it fail verification, and recovery
falls back to an older snapshot without it, or to the log.

Write protocol: files go to ``.tmp-<id>``, each fsynced, the manifest last, the folder
fsynced, then renamed to ``<id>`` and the parent fsynced. A crash at any point leaves
either no snapshot or a complete one; leftovers named ``.tmp-*`` are removed on the next
write. Only the newest ``keep`` snapshots are kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import fastavro
import numpy as np
import xxhash

from consumers import sealedfiles
from consumers.errors import SnapshotCorrupt
from projections.collection import Collection, CollectionConfig, VectorSpec
from projections.index.hnsw import VectorIndex
from projections.index.quantized import ENGINES, FullVectors, QuantizedGraph
from projections.index.segments import DEFAULT_SEGMENT_BYTES, Segment, segment_size_for
from projections.payload_index import FieldIndex
from projections.sparse import SparseIndex
from projections.state import ProjectionState
from schemas.errors import DecodeError, Shredded
from schemas.sealing import DataKeys, SealingKeys

log = logging.getLogger(__name__)
FORMAT = 3  # 3: one graph and points file per segment; 2: one graph, integer ids in a .npy column; 1: all points
#  in Avro (formats 1 and 2 still load)
SEALED_FORMAT = 4  # format 3, each collection entry saying whether its files are sealed (consumers.sealedfiles):
#  written by a process that holds data keys (encryption at rest), format 3 otherwise
_POINTS_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "SnapshotPoint", "namespace": "vectorizer.snapshot",
    "fields": [{"name": "label", "type": "long"}, {"name": "id", "type": ["long", "string"]},
               {"name": "payload", "type": ["null", "string"]}],
})


@dataclass(frozen=True)
class LoadedSnapshot:
    snapshot_id: str
    path: Path
    offsets: dict[int, int]
    state: ProjectionState
    created_at: float
    log: dict[str, str | None] | None = None  # {cluster_id, topic_id} of the log it covers; None: not recorded
    shredded: tuple[str, ...] = ()  # collections left out: their data keys were shredded (as if deleted)


class _Files:
    """How one collection's files of a snapshot are read: as they are, or (a sealed collection)
    unsealed in memory with its data key, each checked as the file it must be (``_roles``)."""

    def __init__(self, path: Path, entry: dict[str, Any], sealed: bool, keys: DataKeys | None) -> None:
        self.path, self.sealed, self.keys = path, sealed, keys
        self.collection, self.created_offset = entry["config"]["name"], entry["created_offset"]
        self.roles = _roles(entry) if sealed else {}

    def clear(self, name: str) -> bytes:
        """The clear bytes of the file ``name``; :class:`Shredded` when its key was shredded,
        :class:`SnapshotCorrupt` when it does not authenticate or its key is not held."""
        data = (self.path / name).read_bytes()
        if not self.sealed:
            return data
        try:
            return sealedfiles.unseal(data, self.collection, self.created_offset, self.roles[name], self.keys)
        except Shredded:
            raise
        except DecodeError as exc:
            raise SnapshotCorrupt(f"{self.path.name}/{name}: {exc}") from None
        except KeyError:
            raise SnapshotCorrupt(f"{self.path.name}/{name}: a file the manifest does not describe") from None

    def erased(self) -> bool:
        """Whether this sealed collection's data keys were shredded (a key id read from one of its
        files: shredding destroys every key of a collection at once)."""
        if not self.sealed or self.keys is None or not self.roles:
            return False
        with open(self.path / next(iter(self.roles)), "rb") as f:
            head = f.read(sealedfiles.HEADER_BYTES)
        return self.keys.shredded(self.collection, head[4:4 + sealedfiles.KEY_ID_BYTES])

    def array(self, name: str) -> np.ndarray:
        """The ``.npy`` array in the file ``name`` (read in place when clear)."""
        if not self.sealed:
            return np.load(self.path / name, allow_pickle=False)
        return np.load(io.BytesIO(self.clear(name)), allow_pickle=False)

    @contextlib.contextmanager
    def local(self, name: str) -> Iterator[Path]:
        """A path holding the clear file ``name``: the file itself, or a copy in memory."""
        if not self.sealed:
            yield self.path / name
            return
        with sealedfiles.clear_copy(self.clear(name)) as copy:
            yield copy


def _roles(entry: dict[str, Any]) -> dict[str, str]:
    """File name -> identity within the collection (what its seal binds it to) of a format-4
    collection entry: the same strings the writer gives ``_link_or_write``."""
    roles: dict[str, str] = {}
    for seg in entry.get("segments") or []:
        lo = seg["lo"]
        roles[seg["ints_file"]], roles[seg["points_file"]] = f"segment {lo} ints", f"segment {lo} points"
        for vector, graph in seg["graphs"].items():
            prefix = f"segment {lo}" if vector == "" else f"segment {lo} vector {vector}"
            for kind, key in (("graph", "file"), ("map", "map_file"), ("vectors", "vectors_file"),
                              ("labels", "labels_file")):
                if key in graph:
                    roles[graph[key]] = f"{prefix} {kind}"
    for field_name, index in (entry.get("payload_indexes") or {}).items():
        for kind in ("keys", "labels", "codes"):
            roles[index[f"{kind}_file"]] = f"payload index {field_name} {kind}"
    for vector, sparse in (entry.get("sparse") or {}).items():
        for column, file in sparse["files"].items():
            roles[file] = f"sparse {vector} column-{column}"
    return roles


def _files(path: Path, manifest: dict[str, Any], entry: dict[str, Any], keys: DataKeys | None) -> _Files:
    sealed = manifest["format"] == SEALED_FORMAT and entry.get("sealed") is True
    return _Files(path, entry, sealed, keys)


def file_checksum(path: Path) -> str:
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_checksum"}
    return xxhash.xxh3_64_hexdigest(json.dumps(body, sort_keys=True).encode())


def fsync(path: Path) -> None:
    """fsync a file or a directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(state: ProjectionState, offsets: dict[int, int], directory: Path, topic: str,
                   keep: int = 3, log_identity: dict[str, str | None] | None = None, *, share: bool = True,
                   keys: SealingKeys | None = None) -> Path:
    """Write a snapshot of ``state`` covering ``offsets`` (of the log ``log_identity`` names:
    ``{cluster_id, topic_id}``, an optional manifest field older snapshots lack); return its folder.

    The caller guarantees no writer mutates ``state`` meanwhile; readers may go on. Files that
    have not changed since an earlier snapshot of this state are hard links to that snapshot's
    (``share=False``: every file is written, as a backup needs: it must not share storage with
    the snapshots it copies). ``keys``: the data keys (encryption at rest): the files of each
    collection ``keys.snapshot_key`` gives a key for are sealed with it (format 4); None: every
    file is written in clear, as format 3. :func:`begin` and :meth:`Pending.complete` are its two halves.
    """
    pending = begin(state, offsets, directory, topic, keep, log_identity, share=share, keys=keys)
    path = pending.complete()
    pending.adopt_rows()
    return path


class _Saves(Protocol):
    """What a snapshot writes files for and links them from next time: a segment, a payload index."""

    saved: dict[str, tuple[Path, str, int]]  # kind -> (file, checksum, version)


@dataclass
class Pending:
    """A snapshot whose files are written (not yet durable): :meth:`complete` makes it one.

    ``complete`` touches no state, so it may run on another thread while the state changes:
    it fsyncs the files, checksums them, writes the manifest and renames the folder into place.
    Until it returns, nothing may :func:`begin` another snapshot of the same state.
    """

    tmp: Path
    final: Path
    manifest: dict[str, Any]
    written: list[tuple[_Saves, str, int, str]]  # (segment or index, part, version, file name) to fsync, checksum
    keep: int
    # Files linked from an earlier snapshot: the next one links them from this one, which outlives
    # that earlier one (pruned first): linking from where a file was first written would fail
    # once that snapshot is pruned, and write the file again.
    linked: list[tuple[_Saves, str, int, str]] = field(default_factory=list)
    # Float32 rows written for quantized segments: read from the written file once it is durable.
    adopt: list[tuple[Collection, FullVectors, str, dict[int, np.ndarray]]] = field(default_factory=list)
    keys: SealingKeys | None = None  # None: nothing is sealed (and no file is looked at to tell)
    # While one collection's files are written: (name, created offset, key id, cipher) to seal them
    # with, or None (its files are clear).
    sealing: tuple[str, int, bytes, Any] | None = None

    def adopt_rows(self) -> None:
        """Once :meth:`complete` returned: quantized segments read their float32 rows from the
        files this snapshot wrote (on demand) and drop them from RAM. Call on the thread that
        applies events (it takes the collections' write locks)."""
        for coll, full, name, captured in self.adopt:
            with coll.lock.write():
                full.adopt(self.final / name, captured)
        self.adopt = []

    def complete(self) -> Path:
        try:
            files = self.manifest["files"]
            for seg, kind, version, name in self.written:
                fsync(self.tmp / name)
                files[name] = file_checksum(self.tmp / name)
                if kind:
                    seg.saved[kind] = (self.final / name, files[name], version)
            for seg, kind, version, name in self.linked:
                seg.saved[kind] = (self.final / name, files[name], version)
            self.manifest["manifest_checksum"] = _manifest_checksum(self.manifest)
            (self.tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=1, sort_keys=True))
            fsync(self.tmp / "manifest.json")
            fsync(self.tmp)
            self.tmp.rename(self.final)
        except BaseException:
            self.abandon()
            raise
        fsync(self.final.parent)
        prune(self.final.parent, self.keep)
        return self.final

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)  # a failed write must not keep a full disk full


def begin(state: ProjectionState, offsets: dict[int, int], directory: Path, topic: str, keep: int = 3,
          log_identity: dict[str, str | None] | None = None, *, share: bool = True,
          keys: SealingKeys | None = None) -> Pending:
    """Write the files of a snapshot of ``state`` into a ``.tmp-<id>`` folder, linking what did not
    change: the part that reads the state (no writer may mutate it meanwhile)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    snapshot_id = f"{time.time_ns() // 1_000_000:015d}"
    while (directory / snapshot_id).exists():
        snapshot_id = f"{int(snapshot_id) + 1:015d}"
    tmp = directory / f".tmp-{snapshot_id}"
    tmp.mkdir()
    pending = Pending(tmp, directory / snapshot_id, {}, [], keep, keys=keys)
    try:
        pending.manifest = _write_into(pending, state, offsets, snapshot_id, topic, log_identity, share)
    except BaseException:
        pending.abandon()
        raise
    return pending


def _write_into(pending: Pending, state: ProjectionState, offsets: dict[int, int], snapshot_id: str, topic: str,
                log_identity: dict[str, str | None] | None, share: bool) -> dict[str, Any]:
    files: dict[str, str] = {}
    colls: list[dict[str, Any]] = []
    for i, coll in enumerate(state.collections.values()):
        key = None if pending.keys is None else pending.keys.snapshot_key(coll.name)
        pending.sealing = None if key is None else (coll.name, coll.created_offset, *key)
        with coll.lock.read():
            segments = [_write_segment(pending, f"c{i:04d}.s{j:04d}", coll, seg, files, share)
                        for j, seg in enumerate(coll.index.segments)]
            for k, (name, named) in enumerate(sorted(coll.named.items())):
                for j, seg in enumerate(named.segments):
                    segments[j]["graphs"][name] = _write_named_segment(pending, f"c{i:04d}.s{j:04d}.v{k:03d}",
                                                                       coll, name, seg, files, share)
            indexes = {index.field: _write_payload_index(pending, f"c{i:04d}.x{k:03d}", index, files, share)
                       for k, index in enumerate(coll.indexes)}
            sparse = {name: _write_sparse(pending, f"c{i:04d}.p{k:03d}", name, index, files, share)
                      for k, (name, index) in enumerate(sorted(coll.sparse.items()))}
            colls.append({"config": coll.config.as_dict(), "created_offset": coll.created_offset,
                          "count": len(coll), "next_label": coll.next_label, "free_labels": list(coll.free_labels),
                          "segment_size": coll.index.segment_size, "segments": segments,
                          "payload_indexes": indexes, **({"sparse": sparse} if sparse else {}),
                          **({} if pending.keys is None else {"sealed": key is not None})})
    pending.sealing = None
    manifest: dict[str, Any] = {"format": FORMAT if pending.keys is None else SEALED_FORMAT,
                                "snapshot_id": snapshot_id, "created_at": time.time(),
                                "topic": topic, "offsets": {str(p): o for p, o in sorted(offsets.items())},
                                "collections": colls, "files": files, "aliases": dict(sorted(state.aliases.items()))}
    if log_identity is not None:
        manifest["log"] = dict(log_identity)
    return manifest


def _write_segment(pending: Pending, stem: str, coll: Collection, seg: Segment, files: dict[str, str],
                   share: bool) -> dict[str, Any]:
    """Write one segment's graph and points into the pending folder, or link the files a previous
    snapshot wrote for them when they have not changed since; return its manifest entry."""
    payload_of = coll.payload_of
    int_labels, int_ids = coll.id_of.int_points(seg.lo, seg.hi)
    str_points = coll.id_of.str_points(seg.lo, seg.hi)

    def ints(path: Path) -> None:  # (label, id) rows of integer ids: loads in milliseconds
        with open(path, "wb") as out:
            np.save(out, np.stack([int_labels, int_ids], axis=1).reshape(-1, 2), allow_pickle=False)

    def points(path: Path) -> None:  # string ids, and every payload
        with_payload = [(label, pid) for label, pid in zip(int_labels.tolist(), int_ids.tolist(), strict=True)
                        if label in payload_of]
        rows = sorted([*str_points, *with_payload])
        with open(path, "wb") as out:
            fastavro.writer(out, _POINTS_SCHEMA, (
                {"label": label, "id": pid, "payload": None if (p := payload_of.get(label)) is None else json.dumps(p)}
                for label, pid in rows))

    # Graphs are keyed by vector name ("": the collection's unnamed vector; named ones are added by
    # _write_into; a collection without an unnamed vector has no "" graph).
    graph_entry, parts = _graph_parts(pending, stem, coll, seg, share)
    entry: dict[str, Any] = {"lo": seg.lo, "hi": seg.hi, "count": len(int_labels) + len(str_points),
                             "graphs": {"": graph_entry} if coll.config.has_unnamed else {},
                             "ints_file": f"{stem}.ints.npy", "points_file": f"{stem}.points.avro"}
    if not coll.config.has_unnamed:
        parts = []
    elif seg.live < entry["count"]:  # points without their unnamed vector (delete_vectors): which hold it
        parts.append(_labels_part(graph_entry, stem, seg))
    for kind, suffix, version, write in (*parts, ("ints", "ints.npy", seg.points_version, ints),
                                         ("points", "points.avro", seg.points_version, points)):
        _link_or_write(pending, seg, kind, version, f"{stem}.{suffix}", write, files, share,
                       f"segment {seg.lo} {kind}")
    return entry


def _graph_parts(pending: Pending, stem: str, coll: Collection, seg: Segment,
                 share: bool) -> tuple[dict[str, Any], list[tuple[str, str, int, Callable[[Path], None]]]]:
    """A segment graph's manifest entry and its files: the hnswlib graph, or the int8/fp16 graph
    (faiss), its internal-id map and its float32 rows."""
    def graph(path: Path) -> None:
        seg.graph.save(path)

    graph_entry: dict[str, Any] = {"file": f"{stem}.hnsw", "capacity": seg.graph.capacity}
    parts: list[tuple[str, str, int, Callable[[Path], None]]] = [("graph", "hnsw", seg.graph_version, graph)]
    quantized = seg.graph if isinstance(seg.graph, QuantizedGraph) else None
    if quantized is not None:  # int8 graph (faiss), its internal-id map, the float32 rows
        captured: dict[int, np.ndarray] = {}

        def rows(path: Path) -> None:
            full, taken = quantized.full.capture()
            captured.update(taken)
            with open(path, "wb") as out:
                np.save(out, full, allow_pickle=False)
            if share and pending.sealing is None:  # sealed rows stay in RAM: the file is not rows
                pending.adopt.append((coll, quantized.full, path.name, captured))

        def graph_map(path: Path) -> None:
            quantized.save_map(path)

        graph_entry = {"file": f"{stem}.faiss", "engine": quantized.engine, "map_file": f"{stem}.map.npy",
                       "vectors_file": f"{stem}.f32.npy", "capacity": seg.graph.capacity}
        parts = [("graph", "faiss", seg.graph_version, graph), ("map", "map.npy", seg.graph_version, graph_map),
                 ("vectors", "f32.npy", seg.graph_version, rows)]
    return graph_entry, parts


def _write_named_segment(pending: Pending, stem: str, coll: Collection, vector: str, seg: Segment,
                         files: dict[str, str], share: bool) -> dict[str, Any]:
    """One segment of a named vector's index: its graph files, and the labels holding the vector
    (points may lack a named vector, so the points files do not say which labels are live)."""
    graph_entry, parts = _graph_parts(pending, stem, coll, seg, share)
    for kind, suffix, version, write in (*parts, _labels_part(graph_entry, stem, seg)):
        _link_or_write(pending, seg, kind, version, f"{stem}.{suffix}", write, files, share,
                       f"segment {seg.lo} vector {vector} {kind}")
    return graph_entry


def _labels_part(graph_entry: dict[str, Any], stem: str,
                 seg: Segment) -> tuple[str, str, int, Callable[[Path], None]]:
    """The file of the labels holding a graph's vector (``labels_file`` in ``graph_entry``): every
    named vector's, and the unnamed vector's when some point of the segment lacks it."""
    alive = (np.flatnonzero(seg.alive) + seg.lo).astype(np.int64)

    def labels(path: Path) -> None:
        with open(path, "wb") as out:
            np.save(out, alive, allow_pickle=False)

    graph_entry["labels_file"] = f"{stem}.labels.npy"
    return "labels", "labels.npy", seg.alive_version, labels


def _write_sparse(pending: Pending, stem: str, vector: str, index: SparseIndex, files: dict[str, str],
                  share: bool) -> dict[str, Any]:
    """A sparse vector's inverted index as its flat columns (``SparseIndex.columns``)."""
    columns = index.columns()
    entry: dict[str, Any] = {"files": {}}
    for k, (column, array) in enumerate(sorted(columns.items())):
        def write(path: Path, array: np.ndarray = array) -> None:
            with open(path, "wb") as out:
                np.save(out, array, allow_pickle=False)
        name = f"{stem}.{k:02d}.npy"
        entry["files"][column] = name
        _link_or_write(pending, index, f"column-{column}", index.version, name, write, files, share,
                       f"sparse {vector} column-{column}")
    return entry


def _link_or_write(pending: Pending, owner: _Saves, kind: str, version: int, name: str,
                   write: Callable[[Path], None], files: dict[str, str], share: bool, role: str) -> None:
    """Link the file an earlier snapshot wrote for ``owner``'s ``kind`` when it has not changed
    since (``version``) and is sealed or clear as this collection's files are now, else write it
    (sealed as ``role``, the file's identity within its collection, when the collection is)."""
    saved = owner.saved.get(kind)
    if share and saved is not None and saved[2] == version and (pending.keys is None or _sealed_as(
            saved[0], pending.sealing is not None)):
        try:  # unchanged since the snapshot that wrote it: share that file
            os.link(saved[0], pending.tmp / name)
            files[name] = saved[1]
            pending.linked.append((owner, kind, version, name))
            return
        except OSError:  # gone, or another file system: write it again
            pass
    if pending.sealing is None:
        write(pending.tmp / name)
    else:  # written in memory, sealed, then written to disk: the clear bytes never reach it
        collection, created_offset, key_id, cipher = pending.sealing
        with sealedfiles.scratch() as clear:
            write(clear)
            data = clear.read_bytes()
        with open(pending.tmp / name, "wb") as out:
            out.write(sealedfiles.seal(data, collection, created_offset, role, key_id, cipher))
    pending.written.append((owner, kind if share else "", version, name))


def _sealed_as(path: Path, sealed: bool) -> bool:
    """Whether the file at ``path`` is sealed (``sealed``) or clear (not): encryption turned on or
    off since an earlier snapshot wrote it means writing it again."""
    try:
        return sealedfiles.is_sealed(path) == sealed
    except OSError:
        return False  # gone: written again


def _write_payload_index(pending: Pending, stem: str, index: FieldIndex, files: dict[str, str],
                         share: bool) -> dict[str, Any]:
    """A payload index's sorted columns and interned strings (loading them is a read, where
    building the index again from the payloads is a pass over every point)."""
    keys, labels, codes, counters = index.columns()

    def save(array: np.ndarray) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            with open(path, "wb") as out:
                np.save(out, array, allow_pickle=False)
        return write

    def strings(path: Path) -> None:
        path.write_text(json.dumps(codes, ensure_ascii=False))

    entry: dict[str, Any] = {"keys_file": f"{stem}.keys.npy", "labels_file": f"{stem}.labels.npy",
                             "codes_file": f"{stem}.codes.json", **counters}
    for kind, write in (("keys", save(keys)), ("labels", save(labels)), ("codes", strings)):
        _link_or_write(pending, index, kind, index.version, entry[f"{kind}_file"], write, files, share,
                       f"payload index {index.field} {kind}")
    return entry


def written_bytes(path: Path) -> int:
    """The bytes the snapshot at ``path`` wrote: its files not shared (hard-linked) with another."""
    return sum(st.st_size for f in path.iterdir() if (st := f.stat()).st_nlink == 1)


def list_snapshots(directory: Path) -> list[Path]:
    """Complete snapshot folders, newest first (none when ``directory`` is missing or not a folder)."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name, reverse=True)


REQUESTED_FOR = "requested_for.json"


def record_request(path: Path, name: str, created_offset: int) -> None:
    """Record that the snapshot at ``path`` was requested for collection ``name`` (the one created
    at ``created_offset``). Idempotent; the file is replaced atomically and fsynced before returning.
    Callers serialise calls on one snapshot (one process writes a snapshot directory)."""
    entries = requested_for(path)
    entry = {"name": name, "created_offset": created_offset}
    if entry in entries:
        return
    tmp = path / f".{REQUESTED_FOR}.tmp"
    with open(tmp, "w") as out:
        json.dump([*entries, entry], out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path / REQUESTED_FOR)
    fsync(path)


def requested_for(path: Path) -> list[dict[str, Any]]:
    """The collections (``name``, ``created_offset``) the snapshot at ``path`` was requested for;
    empty when none was recorded or the record is unreadable (it is not part of the snapshot)."""
    try:
        entries = json.loads((path / REQUESTED_FOR).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)
            and isinstance(e.get("created_offset"), int)]


def prune(directory: Path, keep: int) -> None:
    for old in list_snapshots(directory)[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: Path) -> dict[str, Any]:
    """The verified manifest of the snapshot at ``path`` (files are not checked here)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise SnapshotCorrupt(f"{path.name}/manifest.json: missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SnapshotCorrupt(f"{path.name}/manifest.json: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_checksum") != _manifest_checksum(manifest):
        raise SnapshotCorrupt(f"{path.name}/manifest.json: checksum mismatch")
    if manifest.get("format") not in (1, 2, FORMAT, SEALED_FORMAT):
        raise SnapshotCorrupt(f"{path.name}/manifest.json: unknown format {manifest.get('format')!r}")
    return manifest


def verify(path: Path, only: str = "", keys: DataKeys | None = None, *, authenticate: bool = False) -> list[str]:
    """Every problem with the snapshot at ``path``, each naming the file; empty when sound
    (``only``: the files whose names start with it, and the manifest). ``authenticate``: every
    sealed file's AES-GCM tag is checked too, with ``keys`` (files of shredded collections are not
    problems: they count as deleted)."""
    try:
        manifest = read_manifest(path)
    except SnapshotCorrupt as exc:
        return [str(exc)]
    problems = []
    for name, expected in manifest["files"].items():
        if not name.startswith(only):
            continue
        file = path / name
        if not file.exists():
            problems.append(f"{path.name}/{name}: missing")
        elif file_checksum(file) != expected:
            problems.append(f"{path.name}/{name}: checksum mismatch")
    if authenticate and not problems:
        for entry in manifest["collections"]:
            files = _files(path, manifest, entry, keys)
            if files.erased():
                continue  # the whole collection is erased
            for name in [n for n in files.roles if n.startswith(only)]:
                try:
                    files.clear(name)
                except (Shredded, SnapshotCorrupt) as exc:
                    problems.append(f"{path.name}/{name}: {exc}" if isinstance(exc, Shredded) else str(exc))
    return problems


def load(path: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES, keys: DataKeys | None = None) -> LoadedSnapshot:
    """Load a verified snapshot; raise :class:`SnapshotCorrupt` naming what failed.

    ``segment_bytes`` sizes the segments collections open from now on (the loaded ones keep theirs).
    Sealed collections (format 4) are opened with ``keys``: a file that does not authenticate, or
    whose key is not held, makes the snapshot corrupt; a collection whose key was shredded is left
    out, with its aliases, as if deleted (its clear deletion on the log is then skipped as erased).
    """
    problems = verify(path)
    if problems:
        raise SnapshotCorrupt("; ".join(problems))
    manifest = read_manifest(path)
    state = ProjectionState(segment_bytes)
    shredded: list[str] = []
    for entry in manifest["collections"]:
        try:
            coll = _load_collection(path, manifest, entry, segment_bytes, keys)
        except Shredded:
            shredded.append(entry["config"]["name"])
            continue
        state.collections[coll.name] = coll
    state.aliases = _aliases(path, manifest, state, set(shredded))
    offsets = {int(p): int(o) for p, o in manifest["offsets"].items()}
    recorded = manifest.get("log")
    return LoadedSnapshot(manifest["snapshot_id"], path, offsets, state, float(manifest["created_at"]),
                          {"cluster_id": recorded.get("cluster_id"), "topic_id": recorded.get("topic_id")}
                          if isinstance(recorded, dict) else None, tuple(shredded))


def load_collection(path: Path, name: str, created_offset: int,
                    keys: DataKeys | None = None) -> tuple[Collection, dict[str, Any]]:
    """The collection ``name`` (the one created at ``created_offset``) of the snapshot at ``path``,
    and the snapshot's manifest: only that collection's files are verified and read.
    :class:`SnapshotCorrupt` names what failed (a shredded key too); :class:`KeyError` when the
    snapshot lacks it. A sealed collection is opened with ``keys``."""
    manifest = read_manifest(path)
    found = [(i, entry) for i, entry in enumerate(manifest["collections"])
             if entry["config"]["name"] == name and entry["created_offset"] == created_offset]
    if not found:
        raise KeyError(f"snapshot {path.name} holds no collection {name!r} created at offset {created_offset}")
    i, entry = found[0]
    prefix = f"c{i:04d}." if manifest["format"] in (FORMAT, SEALED_FORMAT) else ""  # 1 and 2: every file
    problems = verify(path, only=prefix)
    if problems:
        raise SnapshotCorrupt("; ".join(problems))
    try:
        return _load_collection(path, manifest, entry, DEFAULT_SEGMENT_BYTES, keys), manifest
    except Shredded as exc:
        raise SnapshotCorrupt(f"{path.name}: {exc}") from None


def _load_collection(path: Path, manifest: dict[str, Any], entry: dict[str, Any], segment_bytes: int,
                     keys: DataKeys | None = None) -> Collection:
    files = _files(path, manifest, entry, keys)
    if files.erased():
        raise Shredded(f"collection {files.collection!r}: its data keys were shredded")
    config = CollectionConfig(**entry["config"])
    size = entry.get("segment_size") or segment_size_for(config.dimension, segment_bytes)
    coll = Collection(config, entry["created_offset"], segment_size=size)
    if "segments" in entry:
        for seg_entry in entry["segments"]:
            _load_segment(path, manifest, coll, seg_entry, files)
    else:  # formats 1 and 2: one graph for all labels, then segments of the configured size
        _load_segment(path, manifest, coll, {**entry, "lo": 0, "hi": max(entry["next_label"], 1),
                                             "graphs": {"": {"file": entry["index_file"],
                                                             "capacity": entry["capacity"]}}}, files, legacy=True)
    coll.next_label = entry["next_label"]
    coll.free_labels = list(entry["free_labels"])
    if len(coll) != entry["count"]:
        raise SnapshotCorrupt(f"{path.name}: collection {config.name!r} has {len(coll)} points, the manifest "
                              f"says {entry['count']}")
    for seg_entry in entry.get("segments") or []:
        _load_named_segment(path, manifest, coll, seg_entry, files)
    for name, sparse_entry in (entry.get("sparse") or {}).items():
        coll.sparse[name] = _load_sparse(path, manifest, coll, name, sparse_entry, files)
    coll.index_payloads(_load_payload_indexes(path, manifest, config, entry.get("payload_indexes") or {}, files))
    return coll


def _aliases(path: Path, manifest: dict[str, Any], state: ProjectionState,
             shredded: set[str] | None = None) -> dict[str, str]:
    """The manifest's ``aliases`` (alias -> collection; a snapshot older than the field has none),
    but those of ``shredded`` collections (left out of the state)."""
    found = manifest.get("aliases") or {}
    if shredded and isinstance(found, dict):
        found = {a: c for a, c in found.items() if c not in shredded}
    if not isinstance(found, dict) or any(not isinstance(a, str) or c not in state.collections
                                          for a, c in found.items()):
        raise SnapshotCorrupt(f"{path.name}/manifest.json: aliases must name collections of the snapshot")
    return dict(found)


def _load_payload_indexes(path: Path, manifest: dict[str, Any], config: CollectionConfig,
                          stored: dict[str, Any], files_of: _Files) -> dict[str, FieldIndex]:
    """The payload indexes the snapshot stored (snapshots before them store none: those are built
    from the payloads by the caller)."""
    files = manifest["files"]
    out: dict[str, FieldIndex] = {}
    for field_name, schema in config.payload_schema().items():
        entry = stored.get(field_name)
        if entry is None:
            continue
        try:
            keys = files_of.array(entry["keys_file"])
            labels = files_of.array(entry["labels_file"])
            codes = json.loads(files_of.clear(entry["codes_file"]))
            index = FieldIndex.restore(field_name, schema, keys, labels, codes, entry)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotCorrupt(f"{path.name}: payload index on {field_name!r}: {exc}") from None
        for kind in ("keys", "labels", "codes"):
            name = entry[f"{kind}_file"]
            index.saved[kind] = (path / name, files[name], 0)
        out[field_name] = index
    return out


def _load_segment(path: Path, manifest: dict[str, Any], coll: Collection, entry: dict[str, Any], files_of: _Files,
                  legacy: bool = False) -> None:
    """Load one segment's points into ``coll`` and adopt its graph (format 3; ``legacy``: the one
    graph of formats 1 and 2, whose files are not recorded as reusable)."""
    config = coll.config
    int_labels = np.empty(0, np.int64)
    if entry.get("ints_file"):
        try:
            ints = files_of.array(entry["ints_file"])
        except ValueError as exc:
            raise SnapshotCorrupt(f"{path.name}/{entry['ints_file']}: not a .npy array ({exc})") from None
        coll.label_of.set_ints(ints[:, 1], ints[:, 0])
        coll.id_of.set_ints(ints[:, 0], ints[:, 1])
        int_labels = ints[:, 0].astype(np.int64)
    other: list[int] = []  # labels of string ids
    with io.BytesIO(files_of.clear(entry["points_file"])) if files_of.sealed else open(
            path / entry["points_file"], "rb") as f:
        for raw in fastavro.reader(f):
            rec = cast(dict[str, Any], raw)
            label = rec["label"]
            if label not in coll.id_of:
                other.append(label)
            coll.label_of[rec["id"]] = label
            coll.id_of[label] = rec["id"]
            if rec["payload"] is not None:
                coll.payload_of[label] = json.loads(rec["payload"])
    live = np.sort(np.concatenate([int_labels, np.array(other, dtype=np.int64)]))
    if len(live) and (live[0] < entry["lo"] or live[-1] >= entry["hi"]):
        raise SnapshotCorrupt(f"{path.name}/{entry['points_file']}: labels outside the segment "
                              f"[{entry['lo']}, {entry['hi']})")
    graph_entry = entry["graphs"].get("")
    parts: list[tuple[str, str]] = []
    graph: VectorIndex | QuantizedGraph
    if graph_entry is None:  # no unnamed vector: its graphs hold nothing
        graph = coll.index.empty_graph(entry["lo"], entry["hi"])
    else:
        graph, parts = _load_graph(path, graph_entry, config.dense()[""], entry["lo"], entry["hi"], files_of)
        if "labels_file" in graph_entry:  # some points lack the unnamed vector: those holding it
            live = _held_labels(path, graph_entry["labels_file"], entry, live, files_of)
            parts.append(("labels", graph_entry["labels_file"]))
    seg = coll.index.restore_segment(entry["lo"], entry["hi"], graph, live if graph_entry is not None
                                     else np.empty(0, np.int64))
    if not legacy:  # unchanged parts of it are linked by the next snapshot, not written again
        files = manifest["files"]
        for kind, name in (*parts, ("ints", entry["ints_file"]), ("points", entry["points_file"])):
            seg.saved[kind] = (path / name, files[name], 0)


def _load_graph(path: Path, graph_entry: dict[str, Any], spec: VectorSpec, lo: int, hi: int,
                files_of: _Files) -> tuple[VectorIndex | QuantizedGraph, list[tuple[str, str]]]:
    """One segment's graph of one dense vector, and its files by kind. (A sealed collection's
    on-disk float32 rows are read from a copy in memory: they cannot be read in place.)"""
    parts = [("graph", graph_entry["file"])]
    graph: VectorIndex | QuantizedGraph
    try:
        if graph_entry.get("engine") in ENGINES:
            with files_of.local(graph_entry["file"]) as graph_file, files_of.local(graph_entry["map_file"]) as \
                    map_file, files_of.local(graph_entry["vectors_file"]) as vectors_file:
                graph = QuantizedGraph.load(graph_file, map_file, vectors_file, spec.size, spec.metric, spec.m,
                                            spec.ef_construction, spec.ef, lo, hi,
                                            on_disk=spec.on_disk is not False, engine=graph_entry["engine"])
            parts += [("map", graph_entry["map_file"]), ("vectors", graph_entry["vectors_file"])]
        else:
            with files_of.local(graph_entry["file"]) as graph_file:
                graph = VectorIndex.load(graph_file, spec.size, spec.metric, spec.m,
                                         spec.ef_construction, spec.ef, graph_entry["capacity"])
    except (RuntimeError, ValueError) as exc:
        raise SnapshotCorrupt(f"{path.name}/{graph_entry['file']}: cannot load it ({exc})") from None
    return graph, parts


def _load_named_segment(path: Path, manifest: dict[str, Any], coll: Collection, entry: dict[str, Any],
                        files_of: _Files) -> None:
    """The named vectors' graphs of one segment (format 3 entries keyed by vector name)."""
    files = manifest["files"]
    specs = coll.config.named()
    for name, graph_entry in entry["graphs"].items():
        if name == "":
            continue
        if name not in specs:
            raise SnapshotCorrupt(f"{path.name}: a graph of vector {name!r}, which the collection "
                                  f"{coll.name!r} does not have")
        graph, parts = _load_graph(path, graph_entry, specs[name], entry["lo"], entry["hi"], files_of)
        live = _held_labels(path, graph_entry["labels_file"], entry, coll.id_of.labels(), files_of)
        seg = coll.named[name].restore_segment(entry["lo"], entry["hi"], graph, live)
        for kind, file in (*parts, ("labels", graph_entry["labels_file"])):
            seg.saved[kind] = (path / file, files[file], 0)


def _held_labels(path: Path, file: str, entry: dict[str, Any], points: np.ndarray, files_of: _Files) -> np.ndarray:
    """The labels of a graph's ``labels_file``: in the segment, each a label of ``points``."""
    try:
        live = files_of.array(file).astype(np.int64)
    except ValueError as exc:
        raise SnapshotCorrupt(f"{path.name}/{file}: not a .npy array ({exc})") from None
    if len(live) and (live[0] < entry["lo"] or live[-1] >= entry["hi"] or not np.all(np.isin(live, points))):
        raise SnapshotCorrupt(f"{path.name}/{file}: labels outside the segment or of no point")
    return live


def _load_sparse(path: Path, manifest: dict[str, Any], coll: Collection, name: str,
                 entry: dict[str, Any], files_of: _Files) -> SparseIndex:
    params = coll.config.sparse().get(name)
    if params is None:
        raise SnapshotCorrupt(f"{path.name}: a sparse index of vector {name!r}, which the collection "
                              f"{coll.name!r} does not have")
    try:
        columns = {column: files_of.array(file)
                   for column, file in entry["files"].items()}
        index = SparseIndex.restore(columns, idf=params.get("modifier") == "idf")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotCorrupt(f"{path.name}: sparse vector {name!r}: {exc}") from None
    files = manifest["files"]
    for column, file in entry["files"].items():
        index.saved[f"column-{column}"] = (path / file, files[file], 0)
    return index


def load_newest(directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                keys: DataKeys | None = None) -> LoadedSnapshot | None:
    """The newest snapshot that verifies and loads (sealed files opened with ``keys``: one that fails
    authentication is unusable like a damaged one); older ones are tried in turn."""
    for path in list_snapshots(directory):
        try:
            return load(path, segment_bytes, keys)
        except SnapshotCorrupt as exc:
            log.warning("snapshot %s is unusable, trying an older one: %s", path.name, exc)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            log.warning("snapshot %s cannot be loaded (%s: %s), trying an older one", path.name,
                        type(exc).__name__, exc)
    return None


def age_seconds(directory: Path) -> float | None:
    newest = next(iter(list_snapshots(directory)), None)
    if newest is None:
        return None
    with contextlib.suppress(SnapshotCorrupt, KeyError):
        return max(0.0, time.time() - float(read_manifest(newest)["created_at"]))
    return None
