"""Snapshots over HTTP, in Qdrant's shapes: a collection's, and the full storage's.

``POST /collections/{c}/snapshots`` asks the projector's thread to write a projection snapshot
between batches (every collection, one set of offsets; concurrent requests may share one,
which records each collection it answered), then cuts that collection out of it into one
downloadable file (:mod:`consumers.artefacts`), kept until deleted, as Qdrant keeps them. A
collection lists the snapshots taken of this very collection (not of an earlier one of the
same name). Recovery (``PUT .../snapshots/recover``, ``POST .../snapshots/upload``) publishes
the snapshot's collection onto the log in one transaction (:mod:`vectorizer.api.recovery`).

``POST /snapshots`` writes a projection snapshot and keeps its tar (every collection) until
deleted. Recovering a full snapshot is not offered: Qdrant does that only at start-up
(``--storage-snapshot``), and here a projection is rebuilt from its own snapshots and the log.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.responses import FileResponse, JSONResponse, StreamingResponse

from consumers import artefacts, sealedstreams, snapshots
from consumers.artefacts import ArtefactInvalid
from consumers.errors import SnapshotCorrupt
from schemas.errors import DecodeError
from vectorizer.api import recovery
from vectorizer.api.context import Api, api, body, json_body, ok, timeout_param
from vectorizer.api.errors import BadRequest, NotFound, NotReady
from vectorizer.api.parsing import Body

router = APIRouter(tags=["snapshots"])
Timeout = timeout_param("Seconds to wait for the snapshot to be written, or the recovery applied (default: "
                        "as long as it takes) and each read of its download")
Wait = Query(True, description="Answer once the projection applied the recovery (else once it is durable in Kafka)")
_writing = threading.Lock()  # one requested_for.json update, one snapshot file written at a time


def _written(a: Api, timeout: float | None) -> Path:
    """A projection snapshot written now (between batches of the projector)."""
    name = a.projection.request_snapshot(a.timeout(timeout))
    if name is None:
        raise NotReady(f"the snapshot could not be written: {a.projection.stats.last_snapshot_error}")
    return a.projection.settings.snapshot_dir / name


def _pruned(name: str) -> NotReady:
    return NotReady(f"snapshot {name} was pruned by newer snapshots before it could be read; retry "
                    "(or raise VECTORIZER_SNAPSHOTS_KEEP)")


def _collection_dir(a: Api, name: str) -> Path:
    return artefacts.collections_root(a.settings.data_dir) / name


def _found(directory: Path, name: str) -> Path:
    path = artefacts.find(directory, name)
    if path is None:
        raise NotFound(f"Not found: Snapshot {name}")
    return path


# A collection's snapshots ---------------------------------------------------------------
@router.post("/collections/{collection_name}/snapshots", summary="Write a snapshot of the collection now")
def create_snapshot(request: Request, collection_name: str, timeout: float | None = Timeout,
                    a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    coll = a.collection(collection_name)
    path = _written(a, timeout)
    try:
        with _writing:
            snapshots.record_request(path, coll.config.name, coll.created_offset)
            made = artefacts.write_collection(path, coll.config.name, coll.created_offset,
                                              _collection_dir(a, coll.config.name), a.projection.keys)
    except (FileNotFoundError, SnapshotCorrupt):  # pruned by newer ones in the meantime
        raise _pruned(path.name) from None
    except KeyError:  # deleted (and maybe created again) before the snapshot was written
        a.collection(collection_name)
        raise NotReady(f"collection {collection_name!r} changed while its snapshot was written; retry") from None
    except OSError as exc:  # a full or unwritable disk
        raise NotReady(f"the snapshot file could not be written: {exc}") from None
    return ok(request, artefacts.describe(made))


@router.get("/collections/{collection_name}/snapshots", summary="List the collection's snapshots, newest first")
def list_snapshots(request: Request, collection_name: str, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    coll = a.collection(collection_name)
    return ok(request, artefacts.listed(_collection_dir(a, coll.config.name), coll.created_offset, a.projection.keys))


@router.get("/collections/{collection_name}/snapshots/{snapshot_name}", summary="Download a snapshot",
            response_model=None)
def download_snapshot(collection_name: str, snapshot_name: str,
                      a: Api = Depends(api)) -> FileResponse | StreamingResponse:
    """The snapshot as Qdrant serves it: the portable tar. One sealed at rest is authenticated whole
    first (a damaged one is refused before any byte is sent), then decrypted as it streams."""
    a.require_ready()
    coll = a.collection(collection_name)
    path = _found(_collection_dir(a, coll.config.name), snapshot_name)
    if not sealedstreams.is_sealed(path):
        return FileResponse(path, media_type="application/octet-stream", filename=snapshot_name)
    size, _ = sealedstreams.digest(path, a.projection.keys)  # Shredded, AuthenticationFailed...: 400, named
    return StreamingResponse(sealedstreams.clear_chunks(path, a.projection.keys), media_type="application/octet-stream",
                             headers={"content-length": str(size),
                                      "content-disposition": f'attachment; filename="{snapshot_name}"'})


@router.delete("/collections/{collection_name}/snapshots/{snapshot_name}", summary="Delete a snapshot")
def delete_snapshot(request: Request, collection_name: str, snapshot_name: str,
                    a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    coll = a.collection(collection_name)
    artefacts.delete(_found(_collection_dir(a, coll.config.name), snapshot_name))
    return ok(request, True)


@router.put("/collections/{collection_name}/snapshots/recover", summary="Recover a collection from a snapshot",
            openapi_extra=json_body("Qdrant's SnapshotRecover: location, priority, checksum, api_key"))
def recover_snapshot(request: Request, collection_name: str, wait: bool = Wait, timeout: float | None = Timeout,
                     b: Body = Depends(body), a: Api = Depends(api)) -> JSONResponse:
    if "location" not in b:
        raise BadRequest("location: required (a file:// path inside the snapshots directory, or an http(s) URL)")
    expected = recovery.checked_checksum(b.get("checksum"))
    recovery.checked_priority(b.get("priority"))
    api_key = b.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise BadRequest("api_key: expected a string")
    a.require_producer()
    allowed = [artefacts.collections_root(a.settings.data_dir), artefacts.full_root(a.settings.data_dir),
               a.settings.snapshot_dir]
    with recovery.located(b["location"], api_key, allowed, _scratch(a), a.timeout(timeout)) as (path, checksum), \
            _clear(path, a) as source:  # a snapshot sealed at rest: its clear tar, the one a download returns
        if expected is not None and (checksum := checksum or artefacts.sha256_of(source)) != expected:
            raise BadRequest(f"Wrong input: Snapshot checksum mismatch: expected {expected}, got {checksum}")
        source.seek(0)
        return _recover(request, a, collection_name, source, wait, timeout)


@contextlib.contextmanager
def _clear(path: Path, a: Api) -> Iterator[IO[bytes]]:
    """The snapshot file's clear bytes (:func:`consumers.artefacts.opened`); one that cannot be
    opened (its key shredded or not held, altered) is a 400 naming why."""
    with contextlib.ExitStack() as stack:
        try:
            source = stack.enter_context(artefacts.opened(path, a.projection.keys))
        except DecodeError as exc:
            raise BadRequest(f"snapshot: {exc}") from None
        yield source


@router.post("/collections/{collection_name}/snapshots/upload", summary="Recover a collection from an uploaded "
             "snapshot")
def upload_snapshot(request: Request, collection_name: str, snapshot: UploadFile = File(...),
                    wait: bool = Wait, priority: str | None = Query(None), checksum: str | None = Query(None),
                    timeout: float | None = Timeout, a: Api = Depends(api)) -> JSONResponse:
    expected = recovery.checked_checksum(checksum)
    recovery.checked_priority(priority)
    a.require_producer()
    if expected is not None:
        got = artefacts.sha256_of(snapshot.file)
        if got != expected:
            raise BadRequest(f"Checksum mismatch: expected {got}, actual {expected}")
    snapshot.file.seek(0)
    return _recover(request, a, collection_name, snapshot.file, wait, timeout)


def _recover(request: Request, a: Api, target: str, source: IO[bytes], wait: bool,
             timeout: float | None) -> JSONResponse:
    try:
        dump = artefacts.read_collection(source)
    except ArtefactInvalid as exc:
        raise BadRequest(f"snapshot: {exc}") from None
    producer = a.require_producer()
    aliases = sorted(alias for alias, named in a.projection.aliases().items() if named == target)
    token = recovery.publish(producer, target, dump, a.projection.collection(target) is not None, aliases)
    if not wait:
        return JSONResponse({"status": "accepted", "time": 0.0}, status_code=202)
    a.projection.wait_for(token.partition, token.offset, timeout)  # None: as long as it takes, as Qdrant
    a.check_verdict(token)
    return ok(request, True)


def _scratch(a: Api) -> Path:
    return a.settings.data_dir / "snapshot_downloads"


# Full-storage snapshots -----------------------------------------------------------------
@router.post("/snapshots", summary="Write a snapshot of every collection now")
def create_full_snapshot(request: Request, timeout: float | None = Timeout, a: Api = Depends(api)) -> JSONResponse:
    a.require_ready()
    path = _written(a, timeout)
    try:
        with _writing:
            made = artefacts.write_full(path, artefacts.full_root(a.settings.data_dir))
    except (FileNotFoundError, SnapshotCorrupt):
        raise _pruned(path.name) from None
    except OSError as exc:
        raise NotReady(f"the snapshot file could not be written: {exc}") from None
    return ok(request, artefacts.describe(made))


@router.get("/snapshots", summary="List the full snapshots, newest first")
def list_full_snapshots(request: Request, a: Api = Depends(api)) -> JSONResponse:
    return ok(request, artefacts.listed(artefacts.full_root(a.settings.data_dir)))


@router.get("/snapshots/{snapshot_name}", summary="Download a full snapshot", response_model=None)
def download_full_snapshot(snapshot_name: str, a: Api = Depends(api)) -> FileResponse:
    path = _found(artefacts.full_root(a.settings.data_dir), snapshot_name)
    return FileResponse(path, media_type="application/octet-stream", filename=snapshot_name)


@router.delete("/snapshots/{snapshot_name}", summary="Delete a full snapshot")
def delete_full_snapshot(request: Request, snapshot_name: str, a: Api = Depends(api)) -> JSONResponse:
    artefacts.delete(_found(artefacts.full_root(a.settings.data_dir), snapshot_name))
    return ok(request, True)

