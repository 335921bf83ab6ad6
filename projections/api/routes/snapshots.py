"""Snapshots over HTTP, in Qdrant's shapes.

A Vectorizer snapshot covers every collection of the projection at once (one set of
offsets), so each collection lists the same snapshots. ``POST`` asks the projector's thread
to write one between batches and answers once it is on disk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from consumers import snapshots
from projections.api.context import Api, api, ok, timeout_param
from projections.api.errors import NotReady

router = APIRouter(tags=["snapshots"])
Timeout = timeout_param("Seconds to wait for the snapshot to be written")


def describe(path: Path) -> dict[str, Any]:
    manifest = snapshots.read_manifest(path)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    created = datetime.fromtimestamp(float(manifest["created_at"]), tz=UTC).replace(tzinfo=None)
    return {"name": path.name, "creation_time": created.isoformat(timespec="seconds"), "size": size,
            "checksum": manifest["manifest_checksum"]}


@router.post("/collections/{collection_name}/snapshots", summary="Write a snapshot now")
def create_snapshot(request: Request, collection_name: str, timeout: float | None = Timeout,
                    a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    a.collection(collection_name)
    name = a.projector.request_snapshot(a.timeout(timeout))
    if name is None:
        raise NotReady(f"the snapshot could not be written: {a.projector.stats.last_snapshot_error}")
    return ok(request, describe(a.projector.settings.snapshot_dir / name))


@router.get("/collections/{collection_name}/snapshots", summary="List snapshots, newest first")
def list_snapshots(request: Request, collection_name: str, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    a.collection(collection_name)
    found = []
    for path in snapshots.list_snapshots(a.projector.settings.snapshot_dir):
        try:
            found.append(describe(path))
        except snapshots.SnapshotCorrupt:
            continue  # verify/repair report it; a listing shows loadable snapshots only
    return ok(request, found)
