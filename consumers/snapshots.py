"""Snapshots of the in-memory projection: written atomically, verified before loading, incremental.

Layout (format 3): ``<snapshot dir>/<id>/manifest.json`` plus, per collection ``cNNNN`` and per
index segment ``sJJJJ`` of it (``projections.index.segments``): ``cNNNN.sJJJJ.hnsw`` (the
segment's graph, hnswlib's own format), ``cNNNN.sJJJJ.ints.npy`` (label and id of its
integer-id points, an int64 column pair that loads in milliseconds) and
``cNNNN.sJJJJ.points.avro`` (label, id, payload of its points with a string id or a payload;
an Avro container). No pickle anywhere. Formats 1 and 2 (one graph per collection) still load.
The manifest holds the offsets the snapshot covers, the collections' configs, label
allocators and segments, an xxh3-64 per file, and its own checksum. ``requested_for.json``,
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
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
import numpy as np
import xxhash

from consumers.errors import SnapshotCorrupt
from projections.collection import Collection, CollectionConfig
from projections.index.hnsw import VectorIndex
from projections.index.segments import DEFAULT_SEGMENT_BYTES, Segment, segment_size_for
from projections.state import ProjectionState

log = logging.getLogger(__name__)
FORMAT = 3  # 3: one graph and points file per segment; 2: one graph, integer ids in a .npy column; 1: all points
#  in Avro (formats 1 and 2 still load)
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


def file_checksum(path: Path) -> str:
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_checksum"}
    return xxhash.xxh3_64_hexdigest(json.dumps(body, sort_keys=True).encode())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(state: ProjectionState, offsets: dict[int, int], directory: Path, topic: str,
                   keep: int = 3, log_identity: dict[str, str | None] | None = None, *, share: bool = True) -> Path:
    """Write a snapshot of ``state`` covering ``offsets`` (of the log ``log_identity`` names:
    ``{cluster_id, topic_id}``, an optional manifest field older snapshots lack); return its folder.

    The caller guarantees no writer mutates ``state`` meanwhile (the projector's own thread
    takes it between batches); readers may go on. Files that have not changed since an earlier
    snapshot of this state are hard links to that snapshot's (``share=False``: every file is
    written, as a backup needs: it must not share storage with the snapshots it copies).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    snapshot_id = f"{time.time_ns() // 1_000_000:015d}"
    while (directory / snapshot_id).exists():
        snapshot_id = f"{int(snapshot_id) + 1:015d}"
    tmp = directory / f".tmp-{snapshot_id}"
    tmp.mkdir()
    try:
        _write_into(tmp, state, offsets, snapshot_id, topic, log_identity, share)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write must not keep a full disk full
        raise
    final = directory / snapshot_id
    tmp.rename(final)
    _fsync(directory)
    prune(directory, keep)
    return final


def _write_into(tmp: Path, state: ProjectionState, offsets: dict[int, int], snapshot_id: str, topic: str,
                log_identity: dict[str, str | None] | None, share: bool) -> None:
    files: dict[str, str] = {}
    colls: list[dict[str, Any]] = []
    for i, coll in enumerate(state.collections.values()):
        with coll.lock.read():
            segments = [_write_segment(tmp, f"c{i:04d}.s{j:04d}", coll, seg, files, share)
                        for j, seg in enumerate(coll.index.segments)]
            colls.append({"config": coll.config.as_dict(), "created_offset": coll.created_offset,
                          "count": len(coll), "next_label": coll.next_label, "free_labels": list(coll.free_labels),
                          "segment_size": coll.index.segment_size, "segments": segments})
    manifest: dict[str, Any] = {"format": FORMAT, "snapshot_id": snapshot_id, "created_at": time.time(),
                                "topic": topic, "offsets": {str(p): o for p, o in sorted(offsets.items())},
                                "collections": colls, "files": files}
    if log_identity is not None:
        manifest["log"] = dict(log_identity)
    manifest["manifest_checksum"] = _manifest_checksum(manifest)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _fsync(tmp / "manifest.json")
    _fsync(tmp)


def _write_segment(tmp: Path, stem: str, coll: Collection, seg: Segment, files: dict[str, str],
                   share: bool) -> dict[str, Any]:
    """Write one segment's graph and points into ``tmp``, or link the files a previous snapshot
    wrote for them when they have not changed since; return its manifest entry."""
    id_of, payload_of = coll.id_of, coll.payload_of
    live = [(label, id_of[label]) for label in range(seg.lo, seg.hi) if label in id_of]

    def graph(path: Path) -> None:
        seg.graph.save(path)

    def ints(path: Path) -> None:  # (label, id) rows of integer ids: loads in milliseconds
        rows = [(label, pid) for label, pid in live if isinstance(pid, int)]
        with open(path, "wb") as out:
            np.save(out, np.array(rows, dtype=np.int64).reshape(-1, 2), allow_pickle=False)

    def points(path: Path) -> None:  # string ids, and every payload
        with open(path, "wb") as out:
            fastavro.writer(out, _POINTS_SCHEMA, (
                {"label": label, "id": pid, "payload": None if (p := payload_of.get(label)) is None else json.dumps(p)}
                for label, pid in live if not isinstance(pid, int) or label in payload_of))

    entry: dict[str, Any] = {"lo": seg.lo, "hi": seg.hi, "count": len(live), "capacity": seg.graph.capacity}
    for kind, suffix, version, write in (("graph", "hnsw", seg.graph_version, graph),
                                         ("ints", "ints.npy", seg.points_version, ints),
                                         ("points", "points.avro", seg.points_version, points)):
        name = f"{stem}.{suffix}"
        files[name] = _link_or_write(seg, kind, version, tmp / name, write, share)
        entry[f"{kind}_file"] = name
    return entry


def _link_or_write(seg: Segment, kind: str, version: int, target: Path, write: Any, share: bool) -> str:
    """Hard-link the file an earlier snapshot wrote for this part of ``seg`` if the part is unchanged
    since (same version); else write it. Return its checksum. The file is recorded as the part's
    latest (under the name it will have once the snapshot folder is renamed into place)."""
    saved = seg.saved.get(kind)
    if not share:
        write(target)
        _fsync(target)
        return file_checksum(target)
    if saved is not None and saved[2] == version:
        with contextlib.suppress(OSError):  # gone, or another file system: write it again
            os.link(saved[0], target)
            checksum = saved[1]
            seg.saved[kind] = (_final(target), checksum, version)
            return checksum
    write(target)
    _fsync(target)
    checksum = file_checksum(target)
    seg.saved[kind] = (_final(target), checksum, version)
    return checksum


def _final(path: Path) -> Path:
    """Where ``path`` inside a ``.tmp-<id>`` folder will be once the folder is renamed to ``<id>``."""
    folder = path.parent
    return folder.parent / folder.name.removeprefix(".tmp-") / path.name


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
    _fsync(path)


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
    if manifest.get("format") not in (1, 2, FORMAT):
        raise SnapshotCorrupt(f"{path.name}/manifest.json: unknown format {manifest.get('format')!r}")
    return manifest


def verify(path: Path) -> list[str]:
    """Every problem with the snapshot at ``path``, each naming the file; empty when sound."""
    try:
        manifest = read_manifest(path)
    except SnapshotCorrupt as exc:
        return [str(exc)]
    problems = []
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.exists():
            problems.append(f"{path.name}/{name}: missing")
        elif file_checksum(file) != expected:
            problems.append(f"{path.name}/{name}: checksum mismatch")
    return problems


def load(path: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> LoadedSnapshot:
    """Load a verified snapshot; raise :class:`SnapshotCorrupt` naming what failed.

    ``segment_bytes`` sizes the segments collections open from now on (the loaded ones keep theirs).
    """
    problems = verify(path)
    if problems:
        raise SnapshotCorrupt("; ".join(problems))
    manifest = read_manifest(path)
    state = ProjectionState(segment_bytes)
    for entry in manifest["collections"]:
        config = CollectionConfig(**entry["config"])
        size = entry.get("segment_size") or segment_size_for(config.dimension, segment_bytes)
        coll = Collection(config, entry["created_offset"], segment_size=size)
        if "segments" in entry:
            for seg_entry in entry["segments"]:
                _load_segment(path, manifest, coll, seg_entry)
        else:  # formats 1 and 2: one graph for all labels, then segments of the configured size
            _load_segment(path, manifest, coll, {**entry, "graph_file": entry["index_file"], "lo": 0,
                                                 "hi": max(entry["next_label"], 1)}, legacy=True)
        coll.next_label = entry["next_label"]
        coll.free_labels = list(entry["free_labels"])
        if len(coll) != entry["count"]:
            raise SnapshotCorrupt(f"{path.name}: collection {config.name!r} has {len(coll)} points, the manifest "
                                  f"says {entry['count']}")
        state.collections[config.name] = coll
    offsets = {int(p): int(o) for p, o in manifest["offsets"].items()}
    recorded = manifest.get("log")
    return LoadedSnapshot(manifest["snapshot_id"], path, offsets, state, float(manifest["created_at"]),
                          {"cluster_id": recorded.get("cluster_id"), "topic_id": recorded.get("topic_id")}
                          if isinstance(recorded, dict) else None)


def _load_segment(path: Path, manifest: dict[str, Any], coll: Collection, entry: dict[str, Any],
                  legacy: bool = False) -> None:
    """Load one segment's points into ``coll`` and adopt its graph (format 3; ``legacy``: the one
    graph of formats 1 and 2, whose files are not recorded as reusable)."""
    config = coll.config
    labels: list[int] = []
    if entry.get("ints_file"):
        try:
            ints = np.load(path / entry["ints_file"], allow_pickle=False)
        except ValueError as exc:
            raise SnapshotCorrupt(f"{path.name}/{entry['ints_file']}: not a .npy array ({exc})") from None
        labels, pids = ints[:, 0].tolist(), ints[:, 1].tolist()
        coll.label_of.update(zip(pids, labels, strict=True))
        coll.id_of.update(zip(labels, pids, strict=True))
    with open(path / entry["points_file"], "rb") as f:
        for raw in fastavro.reader(f):
            rec = cast(dict[str, Any], raw)
            label = rec["label"]
            if label not in coll.id_of:
                labels.append(label)
            coll.label_of[rec["id"]] = label
            coll.id_of[label] = rec["id"]
            if rec["payload"] is not None:
                coll.payload_of[label] = json.loads(rec["payload"])
    live = np.array(sorted(labels), dtype=np.int64)
    if len(live) and (live[0] < entry["lo"] or live[-1] >= entry["hi"]):
        raise SnapshotCorrupt(f"{path.name}/{entry['points_file']}: labels outside the segment "
                              f"[{entry['lo']}, {entry['hi']})")
    try:
        graph = VectorIndex.load(path / entry["graph_file"], config.dimension, config.metric, config.m,
                                 config.ef_construction, config.ef, entry["capacity"])
    except RuntimeError as exc:
        raise SnapshotCorrupt(f"{path.name}/{entry['graph_file']}: hnswlib cannot load it ({exc})") from None
    seg = coll.index.restore_segment(entry["lo"], entry["hi"], graph, live)
    if not legacy:  # unchanged parts of it are linked by the next snapshot, not written again
        files = manifest["files"]
        for kind in ("graph", "ints", "points"):
            name = entry[f"{kind}_file"]
            seg.saved[kind] = (path / name, files[name], 0)


def load_newest(directory: Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> LoadedSnapshot | None:
    """The newest snapshot that verifies and loads; older ones are tried in turn."""
    for path in list_snapshots(directory):
        try:
            return load(path, segment_bytes)
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
