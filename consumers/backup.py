"""backup and restore: a consistent copy of a projection at its catalog position.

A backup is one snapshot-isolated read of the catalog (checked to be one consistent cut),
the state a restart would serve at that position as a snapshot, and a manifest with the
offsets, the log the projection was built from, and a checksum per file. A restore installs
it into a data directory — onto the log it was taken from only — and a server started there
catches up by replay.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import xxhash
from kafka.errors import KafkaError

from consumers import logid, sealedfiles, snapshots
from consumers.errors import BackupCorrupt
from consumers.integrity import catalog_location, open_existing, served_state
from consumers.replay import ahead_of_log, log_ends
from infra.errors import VectorizerError
from infra.kafka.topics import partition_for
from infra.settings import Settings
from projections.catalog import sealed
from projections.catalog.store import Catalog, CatalogCut

BACKUP_FORMAT = 3  # 3: catalog.jsonl also holds the aliases; 2: the projection's rejections (1 and 2 restore as before)


def backup(settings: Settings, out: Path) -> dict[str, Any]:
    """A consistent backup at the catalog position: snapshot files + catalog rows + manifest.

    The catalog is read as one cut (:meth:`Catalog.cut`, one snapshot-isolated transaction) and the
    cut is checked (:func:`cut_problems`) before anything is written; a catalog ahead of the log's
    end is refused (it cannot be restored and caught up).
    """
    catalog = open_existing(settings)
    if catalog is None:
        raise VectorizerError(f"no catalog at {catalog_location(settings)}: nothing to back up")
    try:
        cut = catalog.cut()
        built_from = catalog.log_identity()  # the log the catalog was built from (None: not recorded)
    finally:
        catalog.close()
    ends = log_ends(settings)
    problem = ahead_of_log(cut.positions, ends)
    if problem is not None:
        raise VectorizerError(problem)
    torn = cut_problems(cut, len(ends))
    if torn:
        raise VectorizerError("the catalog read is not one consistent cut: " + "; ".join(torn[:5]))
    position = cut.positions
    state, _ = served_state(settings, position)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise VectorizerError(f"{out} is not empty")
    log = None if built_from is None else {"cluster_id": built_from[0], "topic_id": built_from[1]}
    with sealedfiles.opened_keys(settings) as keys:  # encryption at rest: sealed as the data directory's are
        snap = snapshots.write_snapshot(state, position, out / "snapshot", settings.topic, keep=1, log_identity=log,
                                        share=False, keys=keys)  # a backup shares no file with the snapshots
        stored = sealed.Sealer(keys)  # payloads as the catalog holds them; clear ones sealed if they have a key
        points = cut.points if keys is None else [
            {**r, "payload": stored(r["collection"], r["point_key"], r["payload"])} for r in cut.points]
    with open(out / "catalog.jsonl", "w") as f:
        for row in cut.collections:
            f.write(json.dumps({"table": "collections", **row}) + "\n")
        for row in points:
            f.write(json.dumps({"table": "points", **row}) + "\n")
        for row in cut.rejections:
            f.write(json.dumps({"table": "rejections", **row}) + "\n")
        for row in cut.aliases:
            f.write(json.dumps({"table": "aliases", **row}) + "\n")
        for partition, offset in sorted(cut.verdicts_from.items()):
            f.write(json.dumps({"table": "verdicts_from", "partition_id": partition, "from_offset": offset}) + "\n")
    files = {str(p.relative_to(out)): snapshots.file_checksum(p) for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {"format": BACKUP_FORMAT, "topic": settings.topic, "projection": settings.projection,
                "offsets": {str(p): o for p, o in position.items()}, "snapshot_id": snap.name,
                "created_at": time.time(), "files": files}
    if log is not None:
        manifest["log"] = log  # optional: backups without it (older ones) restore as before
    manifest["manifest_checksum"] = xxhash.xxh3_64_hexdigest(json.dumps(manifest, sort_keys=True).encode())
    (out / "backup.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def cut_problems(cut: CatalogCut, partitions: int) -> list[str]:
    """Rows of ``cut`` newer than its own tracking rows (empty: a consistent cut).

    Every row the projector writes is covered by the tracking row committed with it, so in one
    committed state no collection, point or rejection names an offset past its partition's position.
    """
    def past(collection: str, offset: int) -> bool:
        partition = partition_for(collection, max(1, partitions))
        return offset > cut.positions.get(partition, -1)

    out = [f"collection {c['name']} was created at offset {c['created_offset']}, past the position "
           f"{cut.positions}" for c in cut.collections if past(c["name"], int(c["created_offset"]))]
    out += [f"point {r['collection']}/{r['point_key']} has version {r['version']}, past the position "
            f"{cut.positions}" for r in cut.points if past(r["collection"], int(r["version"]))]
    out += [f"rejection {r['partition_id']}:{r['record_offset']} is past the position {cut.positions}"
            for r in cut.rejections if int(r["record_offset"]) > cut.positions.get(int(r["partition_id"]), -1)]
    return out


def check_backup(path: Path) -> dict[str, Any]:
    """The backup's manifest if every file verifies; else :class:`BackupCorrupt` naming the bad files."""
    try:
        manifest = json.loads((path / "backup.json").read_text())
        body = {k: v for k, v in manifest.items() if k != "manifest_checksum"}
        if manifest["manifest_checksum"] != xxhash.xxh3_64_hexdigest(json.dumps(body, sort_keys=True).encode()):
            raise BackupCorrupt(f"{path}/backup.json: checksum mismatch")
    except (OSError, ValueError, KeyError) as exc:
        raise BackupCorrupt(f"{path}/backup.json: unreadable ({exc})") from None
    bad = []
    for rel, expected in manifest["files"].items():
        file = path / rel
        if not file.exists():
            bad.append(f"{rel} (missing)")
        elif snapshots.file_checksum(file) != expected:
            bad.append(f"{rel} (checksum mismatch)")
    if bad:
        raise BackupCorrupt(f"backup {path} is damaged: " + ", ".join(bad))
    return manifest


def restore(settings: Settings, source: Path) -> dict[str, Any]:
    """Install a verified backup into this data directory; a server then catches up by replay."""
    manifest = check_backup(source)
    if manifest["topic"] != settings.topic:
        raise VectorizerError(f"the backup is of topic {manifest['topic']!r}, not {settings.topic!r}")
    if int(manifest.get("format", 1)) > BACKUP_FORMAT:
        raise VectorizerError(f"backup format {manifest['format']} is newer than this version reads "
                              f"({BACKUP_FORMAT}); restore it with a newer vectorizer")
    offsets = {int(p): o for p, o in manifest["offsets"].items()}
    log = manifest.get("log")
    recorded = None if log is None else logid.LogIdentity(log.get("cluster_id"), log.get("topic_id"))
    log_note: str | None = None
    try:
        trouble = logid.diagnose(settings, recorded, offsets)
    except KafkaError as exc:  # no broker to ask: the server checks the same when it starts
        log_note = f"the log was not checked (the broker did not answer: {exc}); the server checks it at start"
        trouble = []
    if trouble:
        raise VectorizerError(f"the backup does not belong to the log at {settings.kafka_bootstrap}: "
                              f"{'; '.join(trouble)}. A backup restores onto the log it was taken from; to build "
                              "this data directory from the log as it is, use `vectorizer replay --from-beginning`")
    catalog = Catalog.of(settings, create=True)
    tables: dict[str, list[dict[str, Any]]] = {"collections": [], "points": [], "rejections": [], "verdicts_from": [],
                                               "aliases": []}
    for line in (source / "catalog.jsonl").read_text().splitlines():
        row = json.loads(line)
        tables[row.pop("table")].append(row)
    marks = ({int(r["partition_id"]): int(r["from_offset"]) for r in tables["verdicts_from"]}
             if tables["verdicts_from"] else None)  # a format-1 backup: verdicts known from its offsets on
    identity = None if recorded is None else (recorded.cluster_id, recorded.topic_id)
    # Sealed payloads are installed as they are; with encryption on, clear ones (an older backup) get sealed.
    with (sealedfiles.opened_keys(settings) if settings.encryption else contextlib.nullcontext()) as keys:
        catalog.keys = keys
        catalog.import_rows(tables["collections"], tables["points"], offsets, tables["rejections"], marks, identity,
                            tables["aliases"])
        catalog.keys = None
    settings.snapshot_dir.mkdir(parents=True, exist_ok=True)
    target = settings.snapshot_dir / manifest["snapshot_id"]
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source / "snapshot" / manifest["snapshot_id"], target)
    catalog.close()
    return manifest if log_note is None else {**manifest, "note": log_note}
