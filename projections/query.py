"""Reading one collection: the scans, selections and thresholds every read path uses.

Each function takes the collection's read lock itself; the lock is reentrant per thread, so
a caller that needs several reads from one state (a page and its records, hits and their
payloads) holds :func:`reading` around them, and never sees a unit of events half-applied
(``ProjectionState.unit``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from projections import planner
from projections.collection import Collection
from projections.filters import Filter
from projections.payload_index import FieldIndex
from schemas.events import Payload
from schemas.ids import PointId, id_order


class _Scored(Protocol):
    @property
    def score(self) -> float: ...


H = TypeVar("H", bound=_Scored)


def reading(coll: Collection) -> AbstractContextManager[None]:
    """Hold one state of ``coll`` for several reads (its read lock)."""
    return coll.lock.read()


def matching_labels(coll: Collection, flt: Filter | None) -> np.ndarray:
    """The labels of every point ``flt`` matches, ascending (every live label without a filter):
    from the payload indexes when they narrow the filter (``projections.planner``), else by
    checking every point; call it inside :func:`reading`."""
    if flt is None:
        return coll.live_labels()
    selection = planner.select(coll, flt)
    if selection is not None:
        return selection.matching(coll, flt)
    payload_of = coll.payload_of
    found = np.fromiter((label for label, pid in coll.id_of.items() if flt.matches(pid, payload_of.get(label))),
                        np.int64)
    found.sort()
    return found


def matching(coll: Collection, flt: Filter | None) -> Iterator[tuple[int, PointId]]:
    """``(label, id)`` of every point ``flt`` matches (all points without a filter); call it
    inside :func:`reading`."""
    if flt is None:
        yield from coll.id_of.items()
        return
    id_of = coll.id_of
    for label in matching_labels(coll, flt).tolist():
        yield label, id_of[label]


def vector(coll: Collection, point: PointId) -> np.ndarray | None:
    """The stored vector of ``point``, None when there is no such point."""
    with reading(coll):
        return coll.vector(point)


def select_ids(coll: Collection, flt: Filter | None) -> list[PointId]:
    """The ids of every point ``flt`` matches now."""
    with reading(coll):
        return [pid for _, pid in matching(coll, flt)]


def count(coll: Collection, flt: Filter | None) -> int:
    """How many points ``flt`` matches (all points without a filter)."""
    if flt is None:
        return coll.count()
    with reading(coll):
        return len(matching_labels(coll, flt))


def first_by_id(coll: Collection, flt: Filter | None, n: int, start: PointId | None = None) -> list[PointId]:
    """The first ``n`` matching ids in Qdrant's id order (integers, then UUIDs), from ``start`` on."""
    floor = None if start is None else id_order(start)
    with reading(coll):
        candidates = (id_order(pid) for _, pid in matching(coll, flt))
        if floor is not None:
            candidates = (key for key in candidates if key >= floor)
        return [key[-1] for key in heapq.nsmallest(n, candidates)]


def ordered(coll: Collection, index: FieldIndex, flt: Filter | None, limit: int, *, descending: bool = False,
            start: float | None = None) -> list[tuple[PointId, int | float]]:
    """Qdrant's ``order_by`` scroll: ``(id, value)`` by the values ``index`` holds (a point once per
    value), from ``start`` on, ties in label order, the first ``limit`` that ``flt`` matches."""
    with reading(coll):
        keys, labels = index.in_order(descending)
        keep = np.ones(len(labels), dtype=bool)
        if start is not None:
            keep &= keys <= start if descending else keys >= start
        if flt is not None:
            allowed = np.zeros(coll.next_label, dtype=bool)
            allowed[matching_labels(coll, flt)] = True
            keep &= allowed[labels]
        at = np.flatnonzero(keep)[:limit]
        id_of = coll.id_of
        return [(id_of[label], value) for label, value in zip(labels[at].tolist(), keys[at].tolist(), strict=True)]


#: A sparse vector as stored: (indices uint32 ascending, values float32).
Sparse = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Points:
    """The stored points among some asked-for ids, in the order asked."""

    positions: list[int]  # where each found id was in the request
    ids: list[PointId]
    payloads: list[Payload | None]
    vectors: np.ndarray | None  # (found, dim) float32: unnamed vectors, when asked for in a collection of them
    #  only and every point holds its own (not ``Collection.partial``)
    named: dict[str, tuple[np.ndarray, np.ndarray | list[Sparse]]] | None = None  # name -> (which points hold it,
    #  their rows in that order): vectors asked for by name, or in a collection where points may lack one


def points(coll: Collection, ids: Sequence[PointId], with_vectors: bool | Sequence[str]) -> Points:
    """Payloads (and vectors: all, or those named) of those of ``ids`` that exist, from one state;
    a point deleted since ``ids`` were chosen is left out."""
    with reading(coll):
        present = [(i, pid, coll.label_of[pid]) for i, pid in enumerate(ids) if pid in coll.label_of]
        labels = np.array([label for _, _, label in present], dtype=np.int64)
        vectors = None
        named: dict[str, tuple[np.ndarray, np.ndarray | list[Sparse]]] | None = None
        if with_vectors is True and not coll.partial:
            vectors = coll.index.vectors(labels)
        elif with_vectors is not False:
            named = {}
            wanted = None if with_vectors is True else set(with_vectors)
            for name, index in coll.dense_spaces():
                if wanted is None or name in wanted:
                    held = index.holds(labels)
                    named[name] = (held, index.vectors(labels[held]))
            for name, sparse in coll.sparse.items():
                if wanted is None or name in wanted:
                    rows = [sparse.get(label) for label in labels.tolist()]
                    named[name] = (np.array([r is not None for r in rows], dtype=bool),
                                   [r for r in rows if r is not None])
        return Points([i for i, _, _ in present], [pid for _, pid, _ in present],
                      [coll.payload_of.get(label) for _, _, label in present], vectors, named)


def better_than(hits: Sequence[H], threshold: float | None, higher_is_better: bool) -> list[H]:
    """The hits strictly better than ``threshold``, as Qdrant (a hit exactly at it is not)."""
    if threshold is None:
        return list(hits)
    return [h for h in hits if (h.score > threshold if higher_is_better else h.score < threshold)]
