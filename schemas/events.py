"""What an event is, in memory: frozen dataclasses, one per event type.

Every event carries :class:`EventMeta` (the Avro envelope minus the checksum, which the
codec computes). Vectors travel as a contiguous ``(count, dimension)`` float32 array.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from schemas.ids import PointId

Metric = Literal["cosine", "l2", "ip", "manhattan"]
CollectionKind = Literal["dynamic", "workspace"]
#: Qdrant's ``update_mode`` of an upsert: ``insert_only`` leaves existing points alone,
#: ``update_only`` creates no point.
UpdateMode = Literal["upsert", "insert_only", "update_only"]
UPDATE_MODES: tuple[str, ...] = ("upsert", "insert_only", "update_only")
METRICS: tuple[str, ...] = ("cosine", "l2", "ip", "manhattan")
KINDS: tuple[str, ...] = ("dynamic", "workspace")
WORKSPACE_PRODUCER = "vectorizer-workspace"  # producer ids of the workspace producer start with this


def is_workspace_producer(producer_id: str) -> bool:
    """Whether events from ``producer_id`` may change a workspace collection (see vectorizer.workspace)."""
    return producer_id == WORKSPACE_PRODUCER or producer_id.startswith(WORKSPACE_PRODUCER + ":")
Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventMeta:
    """The envelope: who wrote what, when. ``schema_version`` is the writer's version."""

    event_id: str
    collection: str
    producer_id: str
    created_at: int  # milliseconds since the epoch
    schema_version: int = 0  # filled by the codec

    @classmethod
    def new(cls, collection: str, producer_id: str) -> EventMeta:
        return cls(str(uuid.uuid4()), collection, producer_id, int(time.time() * 1000))


@dataclass(frozen=True, slots=True)
class Event:
    meta: EventMeta

    @property
    def collection(self) -> str:
        return self.meta.collection


@dataclass(frozen=True, slots=True)
class CollectionCreated(Event):
    dimension: int
    metric: Metric = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef: int = 64
    kind: CollectionKind = "dynamic"
    embedder: str | None = None  # JSON definition of the text embedder (schema v2)
    quantization: str | None = None  # Qdrant's quantization_config, canonical JSON (schema v3); None: float32
    on_disk: bool | None = None  # Qdrant's vectors.on_disk (schema v4); None: not given
    vectors: str | None = None  # named dense vectors, canonical JSON {name: {size, metric, ...}} (schema v5)
    sparse_vectors: str | None = None  # sparse vectors, canonical JSON {name: {modifier}} (schema v5)


@dataclass(frozen=True, slots=True)
class CollectionDeleted(Event):
    pass


@dataclass(frozen=True, slots=True)
class CollectionUpdated(Event):
    """New index settings for a collection (Qdrant's ``PATCH /collections/{c}``).

    ``diff`` is canonical JSON in Qdrant's shapes: ``hnsw_config`` (``m``, ``ef_construct``) and
    ``quantization_config`` (a config or ``"Disabled"``) at the collection level, and ``vector``:
    the unnamed vector's own ``hnsw_config``, ``quantization_config`` and ``on_disk``, which win
    over the collection's (see ``projections.collection.CollectionConfig.updated``)."""

    diff: str


@dataclass(frozen=True, slots=True, eq=False)
class NamedRows:
    """One named dense vector of some points of a batch: ``positions`` index the event's ids."""

    name: str
    positions: np.ndarray  # int64, ascending, unique
    vectors: np.ndarray  # (len(positions), dimension) float32, C-contiguous

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, NamedRows) and self.name == other.name
                and np.array_equal(self.positions, other.positions) and self.vectors.shape == other.vectors.shape
                and np.array_equal(self.vectors, other.vectors))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, eq=False)
class SparseRows:
    """One named sparse vector of some points of a batch, CSR: point ``positions[i]`` holds
    ``indices[offsets[i]:offsets[i + 1]]`` (unique) with their ``values``."""

    name: str
    positions: np.ndarray  # int64, ascending, unique
    offsets: np.ndarray  # int64, len(positions) + 1, from 0, non-decreasing
    indices: np.ndarray  # uint32
    values: np.ndarray  # float32

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.indices[lo:hi], self.values[lo:hi]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SparseRows) and self.name == other.name
                and all(np.array_equal(a, b) for a, b in ((self.positions, other.positions),
                                                           (self.offsets, other.offsets),
                                                           (self.indices, other.indices),
                                                           (self.values, other.values))))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, eq=False)
class VectorsUpserted(Event):
    """Points inserted or replaced whole: ``vectors`` are their unnamed vectors (``(count, 0)`` in a
    collection without one), ``named`` and ``sparse`` the named vectors some of them carry (schema v2)."""

    ids: tuple[PointId, ...]
    vectors: np.ndarray  # (count, dimension) float32, C-contiguous
    payloads: tuple[Payload | None, ...] = field(default=())
    named: tuple[NamedRows, ...] = ()
    sparse: tuple[SparseRows, ...] = ()
    update_mode: UpdateMode = "upsert"  # schema v3: Qdrant's conditional upsert, decided when applied
    update_filter: str | None = None  # schema v3: canonical JSON of a Qdrant filter existing points must match
    stored_form: bool = False  # schema v3: rows already as stored (cosine: normalised), kept bit for bit

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, VectorsUpserted) and self.meta == other.meta and self.ids == other.ids
                and self.payloads == other.payloads and self.vectors.shape == other.vectors.shape
                and np.array_equal(self.vectors, other.vectors) and self.named == other.named
                and self.sparse == other.sparse and self.update_mode == other.update_mode
                and self.update_filter == other.update_filter and self.stored_form == other.stored_form)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, eq=False)
class PointVectorsUpdated(Event):
    """Qdrant's ``update_vectors``: these vectors replace the points' vectors of the same names
    (``""``: the unnamed one); their other vectors and payloads stay."""

    ids: tuple[PointId, ...]
    named: tuple[NamedRows, ...] = ()
    sparse: tuple[SparseRows, ...] = ()
    update_filter: str | None = None  # schema v2: canonical JSON of a Qdrant filter the points must match

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PointVectorsUpdated) and self.meta == other.meta and self.ids == other.ids
                and self.named == other.named and self.sparse == other.sparse
                and self.update_filter == other.update_filter)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class PointVectorsDeleted(Event):
    """Qdrant's ``delete_vectors``: the vectors ``names`` (dense or sparse) are removed from the points."""

    ids: tuple[PointId, ...]
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VectorsDeleted(Event):
    ids: tuple[PointId, ...]


#: PayloadSet / PayloadKeysDeleted events written with this schema version hold dotted keys,
#: split on every ``.`` (and descending into arrays); later versions hold JSON paths in Qdrant's
#: grammar (``schemas.paths``). Events on a log keep the meaning they were written with.
DOTTED_KEYS_VERSION = 1


@dataclass(frozen=True, slots=True)
class PayloadSet(Event):
    """Merge ``payload`` into each point's payload, or into the object(s) at ``key``.

    ``key`` is a JSON path (a dotted key in a v1 event, see :func:`holds_dotted_keys`).
    """

    ids: tuple[PointId, ...]
    payload: Payload
    key: str | None = None


@dataclass(frozen=True, slots=True)
class PayloadOverwritten(Event):
    ids: tuple[PointId, ...]
    payload: Payload


@dataclass(frozen=True, slots=True)
class PayloadKeysDeleted(Event):
    """Remove what each of ``keys`` selects (JSON paths; dotted keys in a v1 event)."""

    ids: tuple[PointId, ...]
    keys: tuple[str, ...]


def holds_dotted_keys(event: PayloadSet | PayloadKeysDeleted) -> bool:
    """Whether the event was written as v1, whose keys are dotted rather than JSON paths.

    An event that was never encoded (``schema_version`` 0) is what a producer writes now: paths.
    """
    return event.meta.schema_version == DOTTED_KEYS_VERSION


@dataclass(frozen=True, slots=True)
class PayloadCleared(Event):
    ids: tuple[PointId, ...]


@dataclass(frozen=True, slots=True)
class PayloadIndexCreated(Event):
    """A payload index on ``field_name`` (a JSON path); ``field_schema`` is canonical JSON of
    Qdrant's ``field_schema``: a type name or an object of parameters with ``type``."""

    field_name: str
    field_schema: str


@dataclass(frozen=True, slots=True)
class PayloadIndexDropped(Event):
    field_name: str


AliasActionKind = Literal["create", "delete", "rename"]


@dataclass(frozen=True, slots=True)
class AliasAction:
    """One of Qdrant's alias actions: ``create`` (``alias`` names ``collection``, replacing what it
    named), ``delete`` (``alias`` is gone, if it was there), ``rename`` (``alias`` is now called
    ``new_alias``, replacing what that named)."""

    kind: AliasActionKind
    alias: str
    collection: str | None = None  # create
    new_alias: str | None = None  # rename


@dataclass(frozen=True, slots=True)
class AliasesChanged(Event):
    """Qdrant's ``POST /collections/aliases``: ``actions`` apply in order, all or none. The envelope's
    ``collection`` is the first collection they concern (the record's key), ``""`` when none."""

    actions: tuple[AliasAction, ...]


EVENT_TYPES: tuple[type[Event], ...] = (
    CollectionCreated, CollectionDeleted, VectorsUpserted, VectorsDeleted,
    PayloadSet, PayloadOverwritten, PayloadKeysDeleted, PayloadCleared, CollectionUpdated,
    PayloadIndexCreated, PayloadIndexDropped, PointVectorsUpdated, PointVectorsDeleted, AliasesChanged,
)
