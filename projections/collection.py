"""One collection in memory: its config, HNSW index, id<->label maps (numpy columns) and payloads.

Label allocation is deterministic (a freed label is reused, lowest-freed-last first, else
the next new one), so replaying the same events always yields the same labels. An upsert
of an existing id rewrites its label in place: one id never has two labels, so a search
never returns an id twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import xxhash

from projections.idmap import IdsByLabel, LabelsById
from projections.index.segments import SegmentedIndex, segment_size_for
from projections.payload_index import FieldIndex, PayloadIndexes
from projections.sparse import SparseIndex
from projections.waiting import before_waiting
from schemas.events import CollectionCreated, Payload
from schemas.ids import PointId


@dataclass(frozen=True)
class CollectionConfig:
    name: str
    dimension: int
    metric: str
    m: int = 16
    ef_construction: int = 200
    ef: int = 64
    kind: str = "dynamic"
    embedder: str | None = None
    quantization: str | None = None  # Qdrant's quantization_config (canonical JSON); None: float32 graphs
    on_disk: bool | None = None  # Qdrant's vectors.on_disk as given; quantized rows stay on disk unless False
    settings: str | None = None  # after a CollectionUpdated: the settings by level, as set (see levels())
    payload_indexes: str | None = None  # canonical JSON {field_name: field_schema}; None: no payload index
    vectors: str | None = None  # named dense vectors, canonical JSON {name: VectorSpec fields}; None: none
    sparse_vectors: str | None = None  # sparse vectors, canonical JSON {name: {"modifier": "idf"?}}; None: none

    @property
    def has_unnamed(self) -> bool:
        """Whether points carry an unnamed vector (``dimension`` 0: only named ones)."""
        return self.dimension > 0

    def named(self) -> dict[str, VectorSpec]:
        """The named dense vectors, by name."""
        if self.vectors is None:
            return {}
        return {name: VectorSpec(**spec) for name, spec in json.loads(self.vectors).items()}

    def sparse(self) -> dict[str, dict[str, Any]]:
        """The sparse vectors, by name: their parameters (``modifier``)."""
        return {} if self.sparse_vectors is None else cast(dict[str, dict[str, Any]], json.loads(self.sparse_vectors))

    def unnamed(self) -> VectorSpec:
        """The unnamed vector's parameters (``size`` 0: the collection has none)."""
        return VectorSpec(self.dimension, self.metric, self.m, self.ef_construction, self.ef, self.quantization,
                          self.on_disk)

    def dense(self) -> dict[str, VectorSpec]:
        """Every dense vector by name, the unnamed one as ``""``."""
        return {**({"": self.unnamed()} if self.has_unnamed else {}), **self.named()}

    def widest(self) -> int:
        """The largest dimension among the dense vectors (sizes index segments), at least 1."""
        return max([1, self.dimension, *(spec.size for spec in self.named().values())])

    def payload_schema(self) -> dict[str, Any]:
        """The payload indexes: field name -> Qdrant's ``field_schema`` as given."""
        return {} if self.payload_indexes is None else cast(dict[str, Any], json.loads(self.payload_indexes))

    def with_payload_index(self, field: str, schema: Any | None) -> CollectionConfig:
        """This config with an index on ``field`` (``schema``), or without one (``None``)."""
        indexes = self.payload_schema()
        if schema is None:
            indexes.pop(field, None)
        else:
            indexes[field] = schema
        return replace(self, payload_indexes=json.dumps(indexes, sort_keys=True, separators=(",", ":"))
                       if indexes else None)

    @classmethod
    def from_event(cls, e: CollectionCreated) -> CollectionConfig:
        return cls(e.collection, e.dimension, e.metric, e.m, e.ef_construction, e.ef, e.kind, e.embedder,
                   e.quantization, e.on_disk, vectors=e.vectors, sparse_vectors=e.sparse_vectors)

    def levels(self) -> dict[str, Any]:
        """The settings as the user set them, by level (Qdrant reports both): the collection's
        ``hnsw_config`` and ``quantization_config``, and the unnamed ``vector``'s own."""
        if self.settings is not None:
            return cast(dict[str, Any], json.loads(self.settings))
        return {"hnsw_config": {"m": self.m, "ef_construct": self.ef_construction},
                "quantization_config": None if self.quantization is None else json.loads(self.quantization),
                "vector": {}}

    def updated(self, diff: dict[str, Any]) -> CollectionConfig:
        """This config changed by a ``CollectionUpdated`` diff (``schemas.validation.collection_diff``):
        each level merged, then the effective settings: the vector's own, else the collection's."""
        levels = self.levels()
        vector = dict(levels["vector"])
        for target, change in ((levels, diff), (vector, diff.get("vector", {}))):
            if "hnsw_config" in change:
                target["hnsw_config"] = {**(target.get("hnsw_config") or {}), **change["hnsw_config"]}
            if "quantization_config" in change:
                q = change["quantization_config"]
                target["quantization_config"] = None if q == "Disabled" else q
        if "on_disk" in diff.get("vector", {}):
            vector["on_disk"] = diff["vector"]["on_disk"]
        levels["vector"] = {k: v for k, v in vector.items() if v is not None}
        hnsw = {**levels["hnsw_config"], **vector.get("hnsw_config", {})}
        quantization = vector.get("quantization_config") or levels["quantization_config"]
        return replace(self, m=hnsw["m"], ef_construction=hnsw["ef_construct"],
                       quantization=None if quantization is None else json.dumps(quantization, sort_keys=True,
                                                                                   separators=(",", ":")),
                       on_disk=vector.get("on_disk", self.on_disk),
                       settings=json.dumps(levels, sort_keys=True, separators=(",", ":")))

    def with_named(self, diff: dict[str, Any]) -> CollectionConfig:
        """This config with a ``CollectionUpdated`` diff applied to the named vectors: the
        collection's ``hnsw_config`` and ``quantization_config`` to every one of them, then each
        one's own (``named``); sparse vectors' ``modifier`` (``sparse``)."""
        specs = self.named()
        for name, spec in specs.items():
            for level in (diff, diff.get("named", {}).get(name, {})):
                hnsw = level.get("hnsw_config", {})
                spec = replace(spec, m=hnsw.get("m", spec.m), ef_construction=hnsw.get("ef_construct",
                                                                                       spec.ef_construction))
                if "quantization_config" in level:
                    q = level["quantization_config"]
                    spec = replace(spec, quantization=None if q == "Disabled" else json.dumps(
                        q, sort_keys=True, separators=(",", ":")))
                if "on_disk" in level:
                    spec = replace(spec, on_disk=level["on_disk"])
            specs[name] = spec
        sparse = self.sparse()
        for name, change in diff.get("sparse", {}).items():
            sparse[name] = {"modifier": "idf"} if change.get("modifier") == "idf" else {}
        return replace(self, vectors=None if self.vectors is None else json.dumps(
            {name: {k: v for k, v in spec.__dict__.items() if v is not None} for name, spec in specs.items()},
            sort_keys=True, separators=(",", ":")),
            sparse_vectors=None if self.sparse_vectors is None else json.dumps(sparse, sort_keys=True,
                                                                               separators=(",", ":")))

    def builds_graphs_like(self, other: CollectionConfig) -> bool:
        """Whether the unnamed vector's graphs built under ``other`` are what this config builds."""
        return self.unnamed().builds_graphs_like(other.unnamed())

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class VectorSpec:
    """One named dense vector's parameters (``CollectionCreated.vectors``)."""

    size: int
    metric: str
    m: int = 16
    ef_construction: int = 200
    ef: int = 64
    quantization: str | None = None  # canonical JSON, as CollectionConfig.quantization
    on_disk: bool | None = None

    def builds_graphs_like(self, other: VectorSpec) -> bool:
        """Whether graphs built under ``other`` are what these parameters build."""
        def placement(c: VectorSpec) -> bool:  # float32: on disk only if asked; int8: unless refused
            return c.on_disk is True if c.quantization is None else c.on_disk is not False
        return ((self.quantization, self.m, self.ef_construction, placement(self))
                == (other.quantization, other.m, other.ef_construction, placement(other)))

    def index(self, segment_size: int) -> SegmentedIndex:
        return SegmentedIndex(self.size, self.metric, self.m, self.ef_construction, self.ef, segment_size,
                              quantization=self.quantization, on_disk=self.on_disk)


def canonical_json(payload: Payload | None) -> str | None:
    return None if payload is None else json.dumps(payload, sort_keys=True, separators=(",", ":"),
                                                   ensure_ascii=False)


def vector_record(unnamed: np.ndarray | None, dense: Iterable[tuple[str, np.ndarray]],
                  sparse: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> bytes:
    """A point's vectors as the bytes its checksum covers: the unnamed row (stored form), then each
    named dense row and each sparse vector (indices ascending) by name. With only an unnamed
    vector, exactly its row."""
    parts = [] if unnamed is None else [np.ascontiguousarray(unnamed, "<f4").tobytes()]
    for name, row in sorted(dense, key=lambda item: item[0]):
        parts += [b"\0" + name.encode() + b"\0", np.ascontiguousarray(row, "<f4").tobytes()]
    for name, indices, values in sorted(sparse, key=lambda item: item[0]):
        order = np.argsort(indices, kind="stable")
        parts += [b"\1" + name.encode() + b"\0", np.asarray(indices[order], "<u4").tobytes(),
                  np.asarray(values[order], "<f4").tobytes()]
    return b"".join(parts)


def point_checksum(vector: np.ndarray | bytes, payload_json: str | None) -> str:
    """xxh3-64 of a point's vector bytes (its unnamed row, or :meth:`Collection.vector_bytes`) and payload."""
    h = xxhash.xxh3_64(vector if isinstance(vector, bytes) else np.ascontiguousarray(vector, dtype="<f4").tobytes())
    h.update((payload_json or "").encode())
    return h.hexdigest()


class RWLock:
    """Many readers or one writer; writers wait for readers to drain and block new ones.

    Both are reentrant: the writing thread may take the lock again, to read or write (a unit of
    events holds the write lock while each event's handler takes it too), and a reading thread
    may read again (one request reads one state: the route holds the lock around the helpers
    that take it too) without queueing behind a waiting writer."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer: int | None = None  # the writing thread's ident
        self._depth = 0
        self._waiting_writers = 0
        self._mine = threading.local()  # this thread's read depth

    @contextmanager
    def read(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        if depth or self._writer == threading.get_ident():
            self._mine.depth = depth + 1  # held already (reading, or writing): read what it holds
            try:
                yield
            finally:
                self._mine.depth = depth
            return
        with self._cond:
            if self._writer is not None or self._waiting_writers:
                before_waiting()  # a never_wait thread takes nothing and tries elsewhere
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                self._waiting_writers += 1
                while self._writer is not None or self._readers:
                    self._cond.wait()
                self._waiting_writers -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._writer = None
                    self._cond.notify_all()


class Collection:
    def __init__(self, config: CollectionConfig, created_offset: int, index: SegmentedIndex | None = None,
                 segment_size: int | None = None) -> None:
        self.config = config
        self.created_offset = created_offset
        size = segment_size or (index.segment_size if index is not None else segment_size_for(config.widest()))
        # The label layout and the unnamed vector's graphs; without an unnamed vector, its graphs stay
        # empty (1-d) and it only lays out the segments whose points snapshots write.
        self.index = index or SegmentedIndex(max(config.dimension, 1), config.metric, config.m,
                                             config.ef_construction, config.ef, size,
                                             quantization=config.quantization, on_disk=config.on_disk)
        self.named = {name: spec.index(size) for name, spec in config.named().items()}
        self.sparse = {name: SparseIndex(idf=params.get("modifier") == "idf")
                       for name, params in config.sparse().items()}
        self.label_of = LabelsById()
        self.id_of = IdsByLabel()
        self.payload_of: dict[int, Payload] = {}  # only points that have a payload (memory)
        self.indexes = PayloadIndexes()  # the payload indexes of config.payload_indexes (index_payloads)
        self.free_labels: list[int] = []
        self.next_label = 0
        self.lock = RWLock()

    @property
    def name(self) -> str:
        return self.config.name

    def __len__(self) -> int:
        return len(self.label_of)

    def count(self) -> int:
        """The number of points, for a reader: waits out a unit of events being applied (never
        counts part of a transaction)."""
        with self.lock.read():
            return len(self.label_of)

    def allocate(self, point_id: PointId) -> int:
        label = self.label_of.get(point_id)
        if label is not None:
            return label
        if self.free_labels:
            label = self.free_labels.pop()
        else:
            label = self.next_label
            self.next_label += 1
        self.label_of[point_id] = label
        self.id_of[label] = point_id
        self.touch(label)
        return label

    def touch(self, label: int) -> None:
        """Note that the id or payload at ``label`` changed: its segment's points are written again."""
        self.index.segment_for(label).points_version += 1

    def index_payloads(self, restored: dict[str, FieldIndex] | None = None) -> None:
        """The payload indexes ``config`` names, once a snapshot was loaded: those it stored
        (``restored``), the others built from the payloads held (snapshots older than stored
        indexes); and the rows an exact scan of their matches reads."""
        self.indexes = PayloadIndexes()
        for field, schema in self.config.payload_schema().items():
            if restored is not None and field in restored:
                self.indexes.adopt(restored[field])
            else:
                self.indexes.create(field, schema, self.payload_of)
        self.keep_rows(bool(self.indexes))

    def keep_rows(self, on: bool) -> None:
        """Every dense index keeps (or stops keeping) a float32 copy of its rows (see ``SegmentedIndex.keep_rows``)."""
        for _, index in self.dense_spaces():
            index.keep_rows(on)

    def set_payload(self, label: int, payload: Payload | None) -> None:
        self.touch(label)
        if self.indexes:
            self.indexes.update(label, self.payload_of.get(label), payload)
        if payload is None:
            self.payload_of.pop(label, None)
        else:
            self.payload_of[label] = payload

    def remove(self, point_id: PointId) -> bool:
        label = self.label_of.pop(point_id, None)
        if label is None:
            return False
        del self.id_of[label]
        if self.has_named:
            self.drop_vectors(label, [*self.named, *self.sparse])
        self.touch(label)
        old = self.payload_of.pop(label, None)
        if self.indexes and old is not None:
            self.indexes.update(label, old, None)
        self.index.discard(label)
        self.free_labels.append(label)
        return True

    def live_labels(self) -> np.ndarray:
        return self.id_of.labels()

    def vector(self, point_id: PointId) -> np.ndarray | None:
        """The unnamed vector of ``point_id`` (None: no such point, or no unnamed vector)."""
        label = self.label_of.get(point_id)
        if label is None or not self.config.has_unnamed or not self.index.holds(np.array([label]))[0]:
            return None
        return self.index.vectors([label])[0]

    @property
    def has_named(self) -> bool:
        """Whether the collection has named vectors (dense or sparse) beside or instead of the unnamed one."""
        return bool(self.named or self.sparse)

    @property
    def partial(self) -> bool:
        """Whether a point may lack one of the collection's vectors: it has named vectors, or some
        point lacks its unnamed one (Qdrant's ``delete_vectors`` of ``""``). When false, every live
        label has its row in :attr:`index` and that row is all its :func:`vector_record` holds."""
        return self.has_named or len(self.index) != len(self.label_of)

    def vector_records(self, labels: list[int]) -> list[np.ndarray | bytes]:
        """Each of ``labels``' vectors as :func:`vector_record` gives them (what checksums hash): the
        unnamed rows read at once when no point lacks a vector (the same bytes), else one by one."""
        if not self.partial:
            return list(self.index.vectors(labels))
        return [self.vector_bytes(label) for label in labels]

    def dense(self, name: str) -> SegmentedIndex | None:
        """The index of the dense vector ``name`` (``""``: the unnamed one); None: no such dense vector."""
        if name == "":
            return self.index if self.config.has_unnamed else None
        return self.named.get(name)

    def dense_spaces(self) -> Iterator[tuple[str, SegmentedIndex]]:
        """Every dense vector's index by name, the unnamed one (``""``) first."""
        if self.config.has_unnamed:
            yield "", self.index
        yield from self.named.items()

    def has_vector(self, point_id: PointId, name: str) -> bool:
        """Whether the point holds the vector ``name`` (Qdrant's ``has_vector`` condition)."""
        label = self.label_of.get(point_id)
        if label is None:
            return False
        if name in self.sparse:
            return label in self.sparse[name]
        index = self.dense(name)
        return index is not None and bool(index.holds(np.array([label]))[0])

    def drop_vectors(self, label: int, names: Iterable[str]) -> None:
        """Remove the vectors ``names`` of ``label`` (``""``: its unnamed vector); names it lacks are skipped."""
        for name in names:
            index = self.dense(name)
            if index is not None:
                index.discard(label)
            elif name in self.sparse:
                self.sparse[name].remove(label)
        self.touch(label)

    def vector_bytes(self, label: int) -> bytes:
        """Every vector of ``label`` as :func:`vector_record` bytes, read from the indexes."""
        one = np.array([label])
        unnamed = self.index.vectors(one)[0] if self.config.has_unnamed and self.index.holds(one)[0] else None
        dense = [(name, index.vectors(one)[0]) for name, index in self.named.items() if index.holds(one)[0]]
        sparse = [(name, *held) for name, index in self.sparse.items() if (held := index.get(label)) is not None]
        return vector_record(unnamed, dense, sparse)
