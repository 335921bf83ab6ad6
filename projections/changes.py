"""What one applied event changes in the catalog: absolute values, so re-applying is harmless.

The in-memory projection decides (labels, merged payloads, validity); the catalog mirrors
its decisions durably. Every change carries final values, never deltas.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import CollectionCreated


@dataclass(frozen=True, slots=True)
class PutCollection:
    event: CollectionCreated
    offset: int


@dataclass(frozen=True, slots=True)
class ConfigureCollection:
    """A collection's HNSW settings now (after a ``CollectionUpdated``)."""

    name: str
    m: int
    ef_construction: int


@dataclass(frozen=True, slots=True)
class DropCollection:
    name: str


@dataclass(frozen=True, slots=True)
class PutAliases:
    """Every alias now, ``(alias, collection)`` sorted (after an ``AliasesChanged``, or a
    ``CollectionDeleted`` whose collection had aliases): the catalog's aliases are replaced by these."""

    aliases: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PointRow:
    key: str  # catalog key of the point id
    label: int
    payload: str | None  # canonical JSON
    checksum: str  # hex xxh3-64 of vector bytes + payload JSON
    version: int  # offset of the event that last wrote the point


@dataclass(frozen=True, slots=True)
class PutPoints:
    collection: str
    rows: tuple[PointRow, ...]


@dataclass(frozen=True, slots=True)
class DeletePoints:
    collection: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rejection:
    """The projection refused the record at ``partition:offset`` (it went to the dead-letter topic)."""

    partition: int
    offset: int
    collection: str | None
    reason: str  # the dead letter's reason code: "rejected", "checksum-mismatch", ...
    status: int  # the HTTP status of the same mistake caught before publishing
    detail: str
    producer_id: str | None = None


Change = PutCollection | ConfigureCollection | DropCollection | PutAliases | PutPoints | DeletePoints | Rejection
