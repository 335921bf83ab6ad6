"""Recovering a collection from a collection snapshot, as an operation on the log.

The log is the only source of truth, so a recovery is not a copy of files into the projection:
it publishes, in ONE Kafka transaction, the target collection's deletion (if it exists), its
creation with the snapshot's config (every named and sparse vector, HNSW and quantization
settings, the settings as set by level when the source was updated), its payload indexes, and
its points (ids, every vector, payloads) as upserts the producer splits within
``max_message_bytes``. Readers see all of it or none; a replay from offset 0 rebuilds the
recovered collection like any other.

Vectors travel as stored, in upserts marked ``stored_form`` (VectorsUpserted v3): cosine rows,
stored normalised, are kept as they are instead of being normalised again, so every vector of
every metric comes back bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import numpy as np

from consumers.artefacts import CollectionDump
from producers.producer import WriteToken
from schemas import events as ev
from vectorizer.api.errors import BadRequest, Forbidden
from vectorizer.api.reader import Publisher

PRIORITIES = ("no_sync", "snapshot", "replica")


def publish(producer: Publisher, target: str, dump: CollectionDump, exists: bool,
            aliases: Sequence[str] = ()) -> WriteToken:
    """Publish the recovery of ``dump`` into the collection ``target`` in one transaction; the
    token of its last record (a projection that applied it applied all of it). ``aliases``: the
    target's aliases, which its deletion drops: created again, so they keep naming it (as in Qdrant,
    where a recovery leaves aliases alone)."""
    config = dump.config
    tokens: list[WriteToken] = []
    ids = list(dump.ids)
    with producer.transaction():
        if exists:
            tokens.append(producer.delete_collection(target))
        tokens.append(producer.create_collection(
            target, config.dimension, config.metric, m=config.m, ef_construction=config.ef_construction,
            ef=config.ef, kind=config.kind, embedder=_json(config.embedder), quantization=_json(config.quantization),
            on_disk=config.on_disk, vectors=_json(config.vectors), sparse_vectors=_json(config.sparse_vectors)))
        if config.settings is not None:
            tokens.append(producer.update_collection(target, _levels_diff(dump)))
        if aliases:
            tokens.append(producer.change_aliases([ev.AliasAction("create", alias, target) for alias in aliases],
                                                  collection=target))
        for field_name, schema in sorted(dump.payload_indexes.items()):
            tokens.append(producer.create_payload_index(target, field_name, schema))
        if ids:
            unnamed, lacking = _unnamed(dump)
            tokens.append(producer.upsert(target, ids, unnamed, list(dump.payloads),
                                          named=[rows for rows in dump.dense if rows.name != ""],
                                          sparse=list(dump.sparse), stored_form=True))
            if lacking:  # points whose unnamed vector was deleted: an upsert must carry one, so drop it after
                tokens.append(producer.delete_vectors(target, [ids[i] for i in lacking], [""]))
    return WriteToken.joined(tokens)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _unnamed(dump: CollectionDump) -> tuple[np.ndarray | None, list[int]]:
    """Every point's unnamed row (zeros where it has none) and the positions lacking one;
    ``None`` in a collection without an unnamed vector."""
    if not dump.config.has_unnamed:
        return None, []
    rows = next((r for r in dump.dense if r.name == ""), None)
    out = np.zeros((len(dump.ids), dump.config.dimension), np.float32)
    held = np.zeros(len(dump.ids), bool)
    if rows is not None:
        out[rows.positions] = rows.vectors
        held[rows.positions] = True
    return out, np.flatnonzero(~held).tolist()


def _levels_diff(dump: CollectionDump) -> dict[str, Any]:
    """The ``CollectionUpdated`` diff that makes a collection created with the effective settings
    report the source's settings by level (``CollectionConfig.levels``); each named vector's own
    settings given again, as the collection's level is applied to every one of them."""
    levels = dump.config.levels()
    diff: dict[str, Any] = {"hnsw_config": levels["hnsw_config"],
                            "quantization_config": levels["quantization_config"] or "Disabled"}
    if levels["vector"]:
        diff["vector"] = levels["vector"]
    named = {}
    for name, spec in dump.config.named().items():
        own: dict[str, Any] = {"hnsw_config": {"m": spec.m, "ef_construct": spec.ef_construction},
                               "quantization_config": _json(spec.quantization) or "Disabled"}
        if spec.on_disk is not None:
            own["on_disk"] = spec.on_disk
        named[name] = own
    if named:
        diff["named"] = named
    return diff


# Where a snapshot comes from ------------------------------------------------------------
@contextlib.contextmanager
def located(location: str, api_key: str | None, allowed: list[Path], scratch: Path,
            timeout: float) -> Iterator[tuple[Path, str | None]]:
    """The snapshot file ``location`` names and its SHA-256 when known without reading it again
    (a download's; ``None`` for a local file), for the block's duration.

    ``file://``: a file inside one of the ``allowed`` directories (symlinks and ``..`` resolved),
    else :class:`Forbidden`, as Qdrant restricts it. ``http(s)://``: downloaded into ``scratch``
    (sending ``api_key`` as the ``api-key`` header), removed afterwards. Anything else: 400.
    """
    if not isinstance(location, str) or not location:
        raise BadRequest("location: expected a file:// path or an http(s) URL")
    url = urlparse(location)
    if url.scheme == "file":
        if url.netloc not in ("", "localhost"):
            raise BadRequest("location: invalid snapshot URI, file path must be absolute or on localhost")
        path = Path(unquote(url.path))
        if not path.exists():
            raise BadRequest(f"location: snapshot file {str(path)!r} does not exist")
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root.resolve()) for root in allowed if root.exists()):
            raise Forbidden(f"Forbidden: Snapshot file path must be inside the snapshots directory "
                            f"{str(allowed[0].resolve())!r}")
        if not resolved.is_file():
            raise BadRequest(f"location: {str(path)!r} is not a file")
        yield resolved, None
        return
    if url.scheme not in ("http", "https"):
        raise BadRequest(f"location: URL {location} with scheme {url.scheme or '(none)'!r} is not supported")
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".download-", dir=scratch))
    try:
        target, digest = folder / "download.snapshot", hashlib.sha256()
        headers = {"api-key": api_key} if api_key else None
        try:
            with httpx.stream("GET", location, headers=headers, timeout=timeout, follow_redirects=True) as answer:
                if answer.status_code != 200:
                    raise BadRequest(f"location: downloading {location} answered HTTP {answer.status_code}")
                with open(target, "wb") as out:
                    for chunk in answer.iter_bytes(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise BadRequest(f"location: downloading {location} failed ({exc})") from None
        yield target, digest.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def checked_checksum(value: object, field: str = "checksum") -> str | None:
    """A given SHA-256 (64 hex digits, any case) in lower case; ``None`` when not given."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise BadRequest(f"{field}: expected a SHA-256 as 64 hex digits, got {json.dumps(value)[:80]}")
    return value.lower()


def checked_priority(value: object) -> str | None:
    if value is None:
        return None
    if value not in PRIORITIES:
        raise BadRequest(f"priority: expected one of {', '.join(PRIORITIES)}, got {json.dumps(value)[:80]}")
    return str(value)
