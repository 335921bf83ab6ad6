"""One collection in memory: its config, HNSW index, id<->label maps (numpy columns) and payloads.

Label allocation is deterministic (a freed label is reused, lowest-freed-last first, else
the next new one), so replaying the same events always yields the same labels. An upsert
of an existing id rewrites its label in place: one id never has two labels, so a search
never returns an id twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from projections.idmap import IdsByLabel, LabelsById
from projections.index.segments import SegmentedIndex, segment_size_for
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

    @classmethod
    def from_event(cls, e: CollectionCreated) -> CollectionConfig:
        return cls(e.collection, e.dimension, e.metric, e.m, e.ef_construction, e.ef, e.kind, e.embedder,
                   e.quantization)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def canonical_json(payload: Payload | None) -> str | None:
    return None if payload is None else json.dumps(payload, sort_keys=True, separators=(",", ":"),
                                                   ensure_ascii=False)


def point_checksum(vector: np.ndarray, payload_json: str | None) -> str:
    h = xxhash.xxh3_64(np.ascontiguousarray(vector, dtype="<f4").tobytes())
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
        self.index = index or SegmentedIndex(config.dimension, config.metric, config.m, config.ef_construction,
                                             config.ef, segment_size or segment_size_for(config.dimension),
                                             quantization=config.quantization)
        self.label_of = LabelsById()
        self.id_of = IdsByLabel()
        self.payload_of: dict[int, Payload] = {}  # only points that have a payload (memory)
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

    def set_payload(self, label: int, payload: Payload | None) -> None:
        self.touch(label)
        if payload is None:
            self.payload_of.pop(label, None)
        else:
            self.payload_of[label] = payload

    def remove(self, point_id: PointId) -> bool:
        label = self.label_of.pop(point_id, None)
        if label is None:
            return False
        del self.id_of[label]
        self.touch(label)
        self.payload_of.pop(label, None)
        self.index.mark_deleted(label)
        self.free_labels.append(label)
        return True

    def live_labels(self) -> np.ndarray:
        return self.id_of.labels()

    def vector(self, point_id: PointId) -> np.ndarray | None:
        label = self.label_of.get(point_id)
        return None if label is None else self.index.vectors([label])[0]
