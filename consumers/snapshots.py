"""Snapshots of the in-memory projection: written atomically, verified before loading.

Layout: ``<snapshot dir>/<id>/manifest.json`` plus per collection ``cNNNN.hnsw`` (hnswlib's
own format), ``cNNNN.ints.npy`` (label and id of every integer-id point, an int64 column pair
that loads in milliseconds) and ``cNNNN.points.avro`` (label, id, payload of the points with a
string id or a payload; an Avro container). No pickle anywhere.
The manifest holds the offsets the snapshot covers, the collections' configs and label
allocators, an xxh3-64 per file, and its own checksum. ``requested_for.json``, outside the
manifest (added after the snapshot is complete, never read by ``load``), names the
collections whose ``POST /collections/{c}/snapshots`` the snapshot answered; folders
without it (periodic snapshots, older versions) were requested for none.

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
from projections.state import ProjectionState

log = logging.getLogger(__name__)
FORMAT = 2  # 2: integer ids in a .npy column (format 1, all points in Avro, still loads)
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
                   keep: int = 3, log_identity: dict[str, str | None] | None = None) -> Path:
    """Write a snapshot of ``state`` covering ``offsets`` (of the log ``log_identity`` names:
    ``{cluster_id, topic_id}``, an optional manifest field older snapshots lack); return its folder.

    The caller guarantees no writer mutates ``state`` meanwhile (the projector's own thread
    takes it between batches); readers may go on.
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
        _write_into(tmp, state, offsets, snapshot_id, topic, log_identity)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write must not keep a full disk full
        raise
    final = directory / snapshot_id
    tmp.rename(final)
    _fsync(directory)
    prune(directory, keep)
    return final


def _write_into(tmp: Path, state: ProjectionState, offsets: dict[int, int], snapshot_id: str, topic: str,
                log_identity: dict[str, str | None] | None = None) -> None:
    files: dict[str, str] = {}
    colls: list[dict[str, Any]] = []
    for i, coll in enumerate(state.collections.values()):
        stem = f"c{i:04d}"
        with coll.lock.read():
            coll.index.save(tmp / f"{stem}.hnsw")
            ints = [(label, pid) for label, pid in coll.id_of.items() if isinstance(pid, int)]
            with open(tmp / f"{stem}.ints.npy", "wb") as out:  # (label, id) rows: loads in milliseconds
                np.save(out, np.array(ints, dtype=np.int64).reshape(-1, 2), allow_pickle=False)
            payload_of = coll.payload_of
            with open(tmp / f"{stem}.points.avro", "wb") as out:  # string ids, and every payload
                fastavro.writer(out, _POINTS_SCHEMA, (
                    {"label": label, "id": pid,
                     "payload": None if (p := payload_of.get(label)) is None else json.dumps(p)}
                    for label, pid in coll.id_of.items() if not isinstance(pid, int) or label in payload_of))
            colls.append({"config": coll.config.as_dict(), "created_offset": coll.created_offset,
                          "count": len(coll), "next_label": coll.next_label, "free_labels": list(coll.free_labels),
                          "capacity": coll.index.capacity, "index_file": f"{stem}.hnsw",
                          "ints_file": f"{stem}.ints.npy", "points_file": f"{stem}.points.avro"})
        for name in (f"{stem}.hnsw", f"{stem}.ints.npy", f"{stem}.points.avro"):
            _fsync(tmp / name)
            files[name] = file_checksum(tmp / name)
    manifest: dict[str, Any] = {"format": FORMAT, "snapshot_id": snapshot_id, "created_at": time.time(),
                                "topic": topic, "offsets": {str(p): o for p, o in sorted(offsets.items())},
                                "collections": colls, "files": files}
    if log_identity is not None:
        manifest["log"] = dict(log_identity)
    manifest["manifest_checksum"] = _manifest_checksum(manifest)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _fsync(tmp / "manifest.json")
    _fsync(tmp)


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
    if manifest.get("format") not in (1, FORMAT):
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


def load(path: Path) -> LoadedSnapshot:
    """Load a verified snapshot; raise :class:`SnapshotCorrupt` naming what failed."""
    problems = verify(path)
    if problems:
        raise SnapshotCorrupt("; ".join(problems))
    manifest = read_manifest(path)
    state = ProjectionState()
    for entry in manifest["collections"]:
        config = CollectionConfig(**entry["config"])
        try:
            index = VectorIndex.load(path / entry["index_file"], config.dimension, config.metric, config.m,
                                     config.ef_construction, config.ef, entry["capacity"])
        except RuntimeError as exc:
            raise SnapshotCorrupt(f"{path.name}/{entry['index_file']}: hnswlib cannot load it ({exc})") from None
        coll = Collection(config, entry["created_offset"], index)
        if "ints_file" in entry:
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
                coll.label_of[rec["id"]] = label
                coll.id_of[label] = rec["id"]
                if rec["payload"] is not None:
                    coll.payload_of[label] = json.loads(rec["payload"])
        coll.next_label = entry["next_label"]
        coll.free_labels = list(entry["free_labels"])
        if len(coll) != entry["count"]:
            raise SnapshotCorrupt(f"{path.name}/{entry['points_file']}: {len(coll)} points, manifest says "
                                  f"{entry['count']}")
        state.collections[config.name] = coll
    offsets = {int(p): int(o) for p, o in manifest["offsets"].items()}
    recorded = manifest.get("log")
    return LoadedSnapshot(manifest["snapshot_id"], path, offsets, state, float(manifest["created_at"]),
                          {"cluster_id": recorded.get("cluster_id"), "topic_id": recorded.get("topic_id")}
                          if isinstance(recorded, dict) else None)


def load_newest(directory: Path) -> LoadedSnapshot | None:
    """The newest snapshot that verifies and loads; older ones are tried in turn."""
    for path in list_snapshots(directory):
        try:
            return load(path)
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
