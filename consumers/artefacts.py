"""Downloadable snapshots, as Qdrant's ``.snapshot`` files: one collection's, or every collection's.

A *collection snapshot* is one tar file holding that collection only, cut from a projection
snapshot (:mod:`consumers.snapshots`) so that it covers a known set of offsets:

- ``manifest.json`` (the first member): ``format`` (:data:`FORMAT`) and ``version``
  (:data:`VERSION`), the ``collection``'s ``config`` as the projection holds it
  (``CollectionConfig`` fields), its ``payload_indexes`` (field -> Qdrant's ``field_schema``),
  the ``offsets`` (partition -> next offset) and ``log`` (``{cluster_id, topic_id}``) it covers,
  the projection ``snapshot_id`` it was cut from, the point ``count``, which members hold which
  vector (``dense``: name -> stem, ``""`` the unnamed one; ``sparse``: name -> stem) and the
  SHA-256 of every other member (``members``).
- ``points.avro``: every point's ``id`` and ``payload`` (canonical JSON or null), in label
  order; the *position* of a point is its index in this file.
- per dense vector ``<stem>.positions.npy`` (int64: the positions of the points holding it)
  and ``<stem>.vectors.npy`` (float32 rows, as stored: normalised for cosine);
  per sparse vector ``<stem>.positions.npy``, ``.offsets.npy`` (int64, one more than
  positions), ``.indices.npy`` (uint32), ``.values.npy`` (float32). No pickle anywhere.

A *full snapshot* is the tar of one projection snapshot folder (its manifest and files).

Both are written to a ``.tmp-`` file, fsynced and renamed into place, with a ``<name>.json``
side record (its SHA-256, the collection incarnation it was taken of, when): so a listing reads
no tar, and Qdrant's ``SnapshotDescription.checksum`` is the SHA-256 of the file. They stay
until deleted (Qdrant keeps snapshots until deleted); projection snapshots are pruned, these are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import fastavro
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consumers import sealedfiles, sealedstreams, snapshots
from consumers.errors import ConsumerError
from projections.collection import Collection, CollectionConfig, canonical_json
from projections.errors import Rejected
from projections.state import check_config, check_named, check_stored_rows
from schemas import events as ev
from schemas.errors import DecodeError
from schemas.ids import PointId
from schemas.sealing import DataKeys, SealingKeys

FORMAT = "vectorizer-collection-snapshot"
VERSION = 1
SUFFIX = ".snapshot"
_POINTS_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "SnapshotPoint", "namespace": "vectorizer.collection_snapshot",
    "fields": [{"name": "id", "type": ["long", "string"]}, {"name": "payload", "type": ["null", "string"]}],
})
_NAME = re.compile(r"[A-Za-z0-9_.:\-]+\.snapshot")  # collection names' characters (schemas.validation)


class ArtefactInvalid(ConsumerError, ValueError):
    """A snapshot file that is not a sound collection snapshot; the message names what is wrong."""


@dataclass(frozen=True)
class CollectionDump:
    """What a collection snapshot holds, read back: enough to publish the collection again."""

    config: CollectionConfig
    payload_indexes: dict[str, Any]
    ids: tuple[PointId, ...]
    payloads: tuple[ev.Payload | None, ...]
    dense: tuple[ev.NamedRows, ...]  # the unnamed vector as name ""
    sparse: tuple[ev.SparseRows, ...]
    manifest: dict[str, Any]


def collections_root(data_dir: Path) -> Path:
    """Where collection snapshots live: one folder per collection name below it."""
    return data_dir / "collection_snapshots"


def full_root(data_dir: Path) -> Path:
    return data_dir / "full_snapshots"


def sha256_of(source: Path | IO[bytes]) -> str:
    """The SHA-256 (hex) of a file, or of a binary file object read from its start."""
    if isinstance(source, Path):
        with open(source, "rb") as f:
            return sha256_of(f)
    source.seek(0)
    h = hashlib.sha256()
    while chunk := source.read(1 << 22):
        h.update(chunk)
    return h.hexdigest()


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d-%H-%M-%S")


# Writing -----------------------------------------------------------------------------
def write_collection(snapshot: Path, name: str, created_offset: int, directory: Path,
                     keys: SealingKeys | None = None) -> Path:
    """Cut the collection ``name`` (created at ``created_offset``) out of the projection snapshot
    at ``snapshot`` into ``directory/{name}-{snapshot id}-{date}.snapshot``; return its path,
    durable when this returns (callers serialise calls on one directory). Sealed at rest
    (:mod:`consumers.sealedstreams`) when ``keys`` give the collection a key, as its projection
    snapshot files are: the clear tar is then never on disk. Raises
    :class:`~consumers.errors.SnapshotCorrupt` or ``KeyError`` (see
    :func:`consumers.snapshots.load_collection`, which opens a sealed collection with ``keys``),
    ``OSError`` if the snapshot was pruned meanwhile."""
    now = time.time()
    target = directory / f"{name}-{snapshot.name}-{_stamp(now)}{SUFFIX}"  # the folder's name is the snapshot id
    if target.exists():  # cut from the same projection snapshot within this second: the same points
        return target
    coll, source = snapshots.load_collection(snapshot, name, created_offset, keys)
    members, dense, sparse = _members(coll)
    manifest = {"format": FORMAT, "version": VERSION, "collection": name, "config": coll.config.as_dict(),
                "payload_indexes": coll.config.payload_schema(), "created_offset": created_offset,
                "offsets": source["offsets"], "log": source.get("log"), "snapshot_id": source["snapshot_id"],
                "created_at": now, "count": len(coll), "dense": dense, "sparse": sparse,
                "members": {member: hashlib.sha256(data).hexdigest() for member, data in members.items()}}
    key = None if keys is None else keys.snapshot_key(name)
    return _write_tar(target, [("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode()),
                               *members.items()], {"collection": name, "created_offset": created_offset,
                                                   "created_at": now},
                      None if key is None else (name, created_offset, *key))


def _members(coll: Collection) -> tuple[dict[str, bytes], dict[str, str], dict[str, str]]:
    """The data members of ``coll``'s snapshot, and the stems of its dense and sparse vectors."""
    labels = np.sort(coll.live_labels())
    points = io.BytesIO()
    fastavro.writer(points, _POINTS_SCHEMA, ({"id": coll.id_of[label],
                                              "payload": canonical_json(coll.payload_of.get(label))}
                                             for label in labels.tolist()), codec="deflate")
    members = {"points.avro": points.getvalue()}
    dense, sparse = {}, {}
    for k, (vector, index) in enumerate(coll.dense_spaces()):
        held = np.flatnonzero(index.holds(labels))
        stem = dense[vector] = f"dense.{k:03d}"
        members[f"{stem}.positions.npy"] = _npy(held.astype(np.int64))
        members[f"{stem}.vectors.npy"] = _npy(index.vectors(labels[held]).astype(np.float32))
    for k, (vector, sindex) in enumerate(sorted(coll.sparse.items())):
        stem = sparse[vector] = f"sparse.{k:03d}"
        positions, indices, values, offsets = [], [], [], [0]
        for position, label in enumerate(labels.tolist()):
            got = sindex.get(label)
            if got is not None:
                positions.append(position)
                indices.append(got[0])
                values.append(got[1])
                offsets.append(offsets[-1] + len(got[0]))
        members[f"{stem}.positions.npy"] = _npy(np.asarray(positions, np.int64))
        members[f"{stem}.offsets.npy"] = _npy(np.asarray(offsets, np.int64))
        members[f"{stem}.indices.npy"] = _npy(np.concatenate(indices).astype(np.uint32) if indices
                                              else np.empty(0, np.uint32))
        members[f"{stem}.values.npy"] = _npy(np.concatenate(values).astype(np.float32) if values
                                             else np.empty(0, np.float32))
    return members, dense, sparse


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(array), allow_pickle=False)
    return out.getvalue()


def write_full(snapshot: Path, directory: Path) -> Path:
    """The projection snapshot folder ``snapshot`` as one tar, ``directory/full-snapshot-{date}.snapshot``
    (Qdrant's name; ``-2``, ``-3``... when one of that second exists); durable when this returns
    (callers serialise calls on one directory)."""
    manifest = snapshots.read_manifest(snapshot)
    now = time.time()
    target = directory / f"full-snapshot-{_stamp(now)}{SUFFIX}"
    n = 1
    while target.exists():
        n += 1
        target = directory / f"full-snapshot-{_stamp(now)}-{n}{SUFFIX}"
    files = ["manifest.json", *sorted(manifest["files"])]
    return _write_tar(target, [(f, snapshot / f) for f in files],
                      {"snapshot_id": manifest["snapshot_id"], "created_at": now})


def _write_tar(target: Path, members: list[tuple[str, bytes | Path]], record: dict[str, Any],
               seal: tuple[str, int, bytes, AESGCM] | None = None) -> Path:
    """Write the tar of ``members`` (bytes, or a file to copy) and its side record; fsync both, rename.
    ``seal`` (collection, created offset, key id, cipher): the tar sealed as it is written; the side
    record then gives the clear tar's size and SHA-256 (a download's) and the file's ``stored_size``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{target.name}")
    try:
        with open(tmp, "wb") as raw:
            out: IO[bytes] | sealedstreams.SealingWriter = raw if seal is None else sealedstreams.SealingWriter(
                raw, *seal)
            with tarfile.open(fileobj=cast(IO[bytes], out), mode="w", format=tarfile.PAX_FORMAT) as tar:
                for member, data in members:
                    info = tarfile.TarInfo(member)  # always a regular file (hard-linked ones included)
                    info.mtime, info.mode = int(time.time()), 0o644
                    if isinstance(data, Path):
                        info.size = data.stat().st_size
                        with open(data, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
            if isinstance(out, sealedstreams.SealingWriter):
                out.finish()
                described = {"checksum": out.sha256, "size": out.size, "sealed": True}
            raw.flush()
            os.fsync(raw.fileno())
        if seal is None:
            described = {"checksum": sha256_of(tmp), "size": tmp.stat().st_size}
        else:
            described["stored_size"] = tmp.stat().st_size
        side = _side(target).with_name(f".tmp-{_side(target).name}")
        side.write_text(json.dumps({**record, **described}, sort_keys=True))
        with open(side, "rb") as f:
            os.fsync(f.fileno())
        os.replace(side, _side(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    snapshots.fsync(target.parent)
    return target


def _side(path: Path) -> Path:
    return path.with_name(f"{path.name}.json")


# Listing, finding, deleting -----------------------------------------------------------
def listed(directory: Path, created_offset: int | None = None,
           keys: DataKeys | None = None) -> list[dict[str, Any]]:
    """Qdrant's ``SnapshotDescription`` of each snapshot in ``directory``, newest first
    (``created_offset``: only those taken of the collection created there; ``keys``: see :func:`describe`)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if path.name.startswith(".") or not path.name.endswith(SUFFIX) or not path.is_file():
            continue
        record = _record(path)
        if created_offset is not None and record.get("created_offset") != created_offset:
            continue
        found.append((record.get("created_at", path.stat().st_mtime), path, record))
    found.sort(key=lambda item: (item[0], item[1].name), reverse=True)
    return [describe(path, record, keys) for _, path, record in found]


def _record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(_side(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(path: Path, record: dict[str, Any] | None = None, keys: DataKeys | None = None) -> dict[str, Any]:
    """Qdrant's ``SnapshotDescription``: name, creation time (UTC, seconds), size, SHA-256 — of the
    file a download returns: for a sealed one, the clear tar's (from its side record, else computed
    by decrypting it with ``keys``; a checksum of null when it cannot be read)."""
    record = _record(path) if record is None else record
    stat = path.stat()
    created = datetime.fromtimestamp(float(record.get("created_at", stat.st_mtime)), tz=UTC)
    size, checksum = stat.st_size, record.get("checksum") if record.get("size") == stat.st_size else None
    if sealedstreams.is_sealed(path):
        if record.get("sealed") and record.get("stored_size") == stat.st_size:
            size, checksum = int(record["size"]), record.get("checksum")
        else:
            try:
                size, checksum = sealedstreams.digest(path, keys)
            except DecodeError:
                checksum = None
    elif checksum is None:
        checksum = sha256_of(path)
    return {"name": path.name, "creation_time": created.replace(tzinfo=None).isoformat(timespec="seconds"),
            "size": size, "checksum": checksum}


@contextlib.contextmanager
def opened(path: Path, keys: DataKeys | None) -> Iterator[IO[bytes]]:
    """The snapshot file at ``path`` as a seekable binary file of its clear bytes: the file itself,
    or a sealed one decrypted into memory (``memfd``: the clear tar never reaches a disk). Raises
    what :func:`consumers.sealedstreams.clear_chunks` raises."""
    if not sealedstreams.is_sealed(path):
        with open(path, "rb") as f:
            yield f
        return
    with sealedfiles.scratch() as scratch, open(scratch, "w+b") as clear:
        for chunk in sealedstreams.clear_chunks(path, keys):
            clear.write(chunk)
        clear.seek(0)
        yield clear


def find(directory: Path, name: str) -> Path | None:
    """The snapshot file ``name`` in ``directory`` (never outside it: a name with a separator or
    ``..`` finds nothing), or ``None``."""
    if not _NAME.fullmatch(name) or name.startswith("."):
        return None
    path = directory / name
    return path if path.is_file() else None


def delete(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _side(path).unlink()
    path.unlink()
    snapshots.fsync(path.parent)


# Reading ------------------------------------------------------------------------------
def read_collection(source: IO[bytes]) -> CollectionDump:
    """Read and verify a collection snapshot (a seekable binary file); :class:`ArtefactInvalid`
    names what is wrong: not a tar, another format or version, a member missing, extra or
    damaged (its SHA-256), arrays of the wrong shape or type, settings or vectors the projection
    would refuse (so that a recovery is refused before anything of it is published)."""
    try:
        return _read_collection(source)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a manifest of the wrong shape
        raise ArtefactInvalid(f"manifest.json: {type(exc).__name__}: {exc}") from None


def _read_collection(source: IO[bytes]) -> CollectionDump:
    data = _read_members(source)
    manifest = _manifest(data.pop("manifest.json", None))
    expected = manifest["members"]
    for member in sorted(set(expected) | set(data)):
        if member not in data:
            raise ArtefactInvalid(f"snapshot member {member}: missing")
        if member not in expected:
            raise ArtefactInvalid(f"snapshot member {member}: not listed in the manifest")
        if hashlib.sha256(data[member]).hexdigest() != expected[member]:
            raise ArtefactInvalid(f"snapshot member {member}: SHA-256 mismatch (the file is damaged)")
    try:
        config = CollectionConfig(**manifest["config"])
        check_config(config)
    except (TypeError, Rejected) as exc:
        raise ArtefactInvalid(f"manifest.json: config: {exc}") from None
    if config.kind != "dynamic":
        raise ArtefactInvalid(f"manifest.json: a {config.kind} collection: only its own producer writes it, so it "
                              "is not recovered through the API (its source files rebuild it)")
    ids, payloads = _points(data["points.avro"])
    n = len(ids)
    if n != manifest["count"]:
        raise ArtefactInvalid(f"points.avro: {n} points, the manifest says {manifest['count']}")
    specs = config.dense()
    dense = []
    for vector, stem in manifest["dense"].items():
        if vector not in specs:
            raise ArtefactInvalid(f"manifest.json: dense vector {vector!r} is not in the collection's config")
        positions = _array(data, f"{stem}.positions.npy", np.int64, 1, n)
        rows = _array(data, f"{stem}.vectors.npy", np.float32, 2, None)
        if rows.shape != (len(positions), specs[vector].size):
            raise ArtefactInvalid(f"{stem}.vectors.npy: shape {rows.shape}, expected ({len(positions)}, "
                                  f"{specs[vector].size})")
        dense.append(ev.NamedRows(vector, positions, rows))
    sparse = []
    for vector, stem in manifest["sparse"].items():
        if vector not in config.sparse():
            raise ArtefactInvalid(f"manifest.json: sparse vector {vector!r} is not in the collection's config")
        positions = _array(data, f"{stem}.positions.npy", np.int64, 1, n)
        offsets = _array(data, f"{stem}.offsets.npy", np.int64, 1, None)
        indices = _array(data, f"{stem}.indices.npy", np.uint32, 1, None)
        values = _array(data, f"{stem}.values.npy", np.float32, 1, None)
        if len(offsets) != len(positions) + 1 or offsets[0] != 0 or offsets[-1] != len(indices) \
                or len(indices) != len(values) or np.any(np.diff(offsets) < 0):
            raise ArtefactInvalid(f"{stem}: offsets, indices and values do not match the positions")
        sparse.append(ev.SparseRows(vector, positions, offsets, indices, values))
    scratch = Collection(config, 0)  # the checks the projection makes of the upserts, made now
    try:
        check_named(scratch, tuple(rows for rows in dense if rows.name), tuple(sparse), allow_unnamed=False)
        check_stored_rows(scratch, [(rows.name, rows.vectors) for rows in dense])
    except Rejected as exc:
        raise ArtefactInvalid(f"snapshot vectors: {exc}") from None
    return CollectionDump(config, dict(manifest["payload_indexes"]), ids, payloads, tuple(dense), tuple(sparse),
                          manifest)


def _read_members(source: IO[bytes]) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    try:
        tar = tarfile.open(fileobj=source, mode="r:")  # noqa: SIM115 - closed in the finally below
    except tarfile.TarError as exc:
        raise ArtefactInvalid(f"the snapshot is not a tar file ({exc})") from None
    try:
        for info in _regular(tar):
            if info.name in data:
                raise ArtefactInvalid(f"snapshot member {info.name}: given twice")
            extracted = tar.extractfile(info)
            if extracted is None:
                raise ArtefactInvalid(f"snapshot member {info.name}: not a regular file")
            data[info.name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArtefactInvalid(f"the snapshot is not a readable tar file ({exc})") from None
    finally:
        tar.close()
    return data


def _regular(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for info in tar:
        if not info.isfile():
            raise ArtefactInvalid(f"snapshot member {info.name}: not a regular file")
        yield info


def _manifest(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise ArtefactInvalid("the snapshot has no manifest.json: not a Vectorizer collection snapshot "
                              "(a full snapshot, or another program's?)")
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtefactInvalid(f"manifest.json: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArtefactInvalid(f"manifest.json: format {got!r}, expected {FORMAT!r} (a full snapshot, or "
                              "another program's file?)")
    if manifest.get("version") != VERSION:
        raise ArtefactInvalid(f"manifest.json: version {manifest.get('version')!r}, this server reads {VERSION}")
    for key, kind in (("config", dict), ("payload_indexes", dict), ("members", dict), ("dense", dict),
                      ("sparse", dict), ("count", int)):
        if not isinstance(manifest.get(key), kind):
            raise ArtefactInvalid(f"manifest.json: {key}: missing or not a {kind.__name__}")
    return manifest


def _points(raw: bytes) -> tuple[tuple[PointId, ...], tuple[ev.Payload | None, ...]]:
    ids: list[PointId] = []
    payloads: list[ev.Payload | None] = []
    try:
        for record in fastavro.reader(io.BytesIO(raw), reader_schema=_POINTS_SCHEMA):
            rec = cast(dict[str, Any], record)
            ids.append(rec["id"])
            payloads.append(None if rec["payload"] is None else json.loads(rec["payload"]))
    except (ValueError, TypeError, KeyError, EOFError) as exc:
        raise ArtefactInvalid(f"points.avro: not the snapshot's points ({exc})") from None
    return tuple(ids), tuple(payloads)


def _array(data: dict[str, bytes], member: str, dtype: type[np.generic], ndim: int, bound: int | None) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data[member]), allow_pickle=False)
    except KeyError:
        raise ArtefactInvalid(f"snapshot member {member}: missing") from None
    except ValueError as exc:
        raise ArtefactInvalid(f"snapshot member {member}: not a .npy array ({exc})") from None
    if array.dtype != np.dtype(dtype) or array.ndim != ndim:
        raise ArtefactInvalid(f"snapshot member {member}: {array.dtype} with {array.ndim} dimensions, expected "
                              f"{np.dtype(dtype)} with {ndim}")
    if bound is not None and len(array) and (array.min() < 0 or array.max() >= bound
                                             or np.any(np.diff(array) <= 0)):
        raise ArtefactInvalid(f"snapshot member {member}: positions must be ascending, unique, within "
                              f"0..{bound - 1}")
    return array
