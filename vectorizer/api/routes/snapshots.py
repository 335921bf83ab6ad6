"""Snapshots over HTTP, in Qdrant's shapes.

A Vectorizer snapshot covers every collection of the projection at once (one set of
offsets). ``POST`` asks the projector's thread to write one between batches, records the
collection it was requested for (concurrent requests may share one snapshot, which then
names each), and answers once both are on disk. A collection lists the snapshots requested
for it (for this very collection: not for an earlier one of the same name), as Qdrant does;
periodic snapshots belong to no collection.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from consumers import snapshots
from consumers.errors import SnapshotCorrupt
from vectorizer.api.context import Api, api, ok, timeout_param
from vectorizer.api.errors import NotReady

router = APIRouter(tags=["snapshots"])
Timeout = timeout_param("Seconds to wait for the snapshot to be written")
_recording = threading.Lock()  # one read-modify-write of a snapshot's requested_for.json at a time


def describe(path: Path) -> dict[str, Any]:
    manifest = snapshots.read_manifest(path)
    size = sum((path / name).stat().st_size for name in ("manifest.json", *manifest["files"]))  # the snapshot's own
    created = datetime.fromtimestamp(float(manifest["created_at"]), tz=UTC).replace(tzinfo=None)
    return {"name": path.name, "creation_time": created.isoformat(timespec="seconds"), "size": size,
            "checksum": manifest["manifest_checksum"]}


@router.post("/collections/{collection_name}/snapshots", summary="Write a snapshot now")
def create_snapshot(request: Request, collection_name: str, timeout: float | None = Timeout,
                    a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    coll = a.collection(collection_name)
    name = a.projection.request_snapshot(a.timeout(timeout))
    if name is None:
        raise NotReady(f"the snapshot could not be written: {a.projection.stats.last_snapshot_error}")
    path = a.projection.settings.snapshot_dir / name
    try:
        with _recording:
            snapshots.record_request(path, coll.config.name, coll.created_offset)
        return ok(request, describe(path))
    except (FileNotFoundError, SnapshotCorrupt):  # pruned by newer ones in the meantime
        raise NotReady(f"snapshot {name} was pruned by newer snapshots before it could be recorded; retry "
                       "(or raise VECTORIZER_SNAPSHOTS_KEEP)") from None


@router.get("/collections/{collection_name}/snapshots", summary="List snapshots, newest first")
def list_snapshots(request: Request, collection_name: str, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    coll = a.collection(collection_name)
    mine = {"name": coll.config.name, "created_offset": coll.created_offset}
    found = []
    for path in snapshots.list_snapshots(a.projection.settings.snapshot_dir):
        if mine not in snapshots.requested_for(path):
            continue
        try:
            found.append(describe(path))
        except SnapshotCorrupt:
            continue  # verify/repair report it; a listing shows loadable snapshots only
    return ok(request, found)
