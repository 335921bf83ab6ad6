"""Which points can match a filter, answered from payload indexes before any point is read.

:func:`select` walks the filter as given (``Filter.source``, validated when it was parsed) and
combines the answers of the conditions an index (or the id map) can give:

* ``must``: the intersection of the conditions' sets; ``should``: their union, when every
  ``should`` condition has a set; ``must_not``: exact sets are subtracted;
* a field condition on an indexed field: :meth:`FieldIndex.answer` (exactly, or a superset);
  ``has_id``: the labels of those ids; a sub-filter: the same rules, recursively;
* any other condition (unindexed fields, ``is_empty``, ``nested``, geo ...) narrows nothing,
  and makes the result a superset.

The result is ``None`` when nothing narrows the filter (scan every point), else the labels
that may match and whether all of them do. A superset is checked with the filter's predicate,
point by point, over those labels only: unindexed conditions cost O(candidates), not O(points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from projections.collection import Collection
from projections.filters import Filter
from projections.payload_index import members
from schemas import paths
from schemas.ids import normalize_point_id

__all__ = ["Selection", "select"]

_FILTER_KEYS = frozenset({"must", "should", "must_not", "min_should"})
_OPS = ("match", "range", "geo_bounding_box", "geo_radius", "geo_polygon", "values_count", "is_empty", "is_null")
_NONE = np.empty(0, np.int64)


@dataclass(frozen=True, slots=True)
class Selection:
    labels: np.ndarray  # sorted, unique, live labels
    exact: bool  # every one of them matches; else they are the candidates to check

    def matching(self, coll: Collection, flt: Filter) -> np.ndarray:
        """The labels that match (the candidates checked with the filter when not exact)."""
        if self.exact:
            return self.labels
        id_of, payload_of = coll.id_of, coll.payload_of
        return np.fromiter((label for label in self.labels.tolist()
                            if flt.matches(id_of[label], payload_of.get(label))), np.int64)


def select(coll: Collection, flt: Filter) -> Selection | None:
    """The points ``flt`` may match, from the indexes; ``None`` when they narrow nothing. Call it
    under the collection's read lock."""
    labels, exact = _node(coll, flt.source)
    if labels is None:
        return None
    return Selection(labels, exact)


def _clause(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


def _node(coll: Collection, spec: dict[str, Any]) -> tuple[np.ndarray | None, bool]:
    """(labels that may match or None for all points, whether exactly) of ``{must, should, ...}``."""
    exact = True
    sets: list[np.ndarray] = []
    for cond in _clause(spec.get("must")):
        found, ok = _condition(coll, cond)
        exact &= ok
        if found is not None:
            sets.append(found)
    should = [_condition(coll, cond) for cond in _clause(spec.get("should"))]
    if should:
        if all(found is not None for found, _ in should):
            sets.append(_union([found for found, _ in should if found is not None]))
            exact &= all(ok for _, ok in should)
        else:
            exact = False
    if spec.get("min_should") is not None:
        exact = False
    negatives: list[np.ndarray] = []
    for cond in _clause(spec.get("must_not")):
        found, ok = _condition(coll, cond)
        if found is not None and ok:
            negatives.append(found)
        else:
            exact = False
    result: np.ndarray | None = None
    for found in sorted(sets, key=len):
        result = found if result is None else _intersect(result, found)
    if negatives and (result is not None or exact):  # live points minus exact exclusions
        base = coll.live_labels() if result is None else result
        result = np.setdiff1d(base, _union(negatives), assume_unique=True)
    return result, exact


def _condition(coll: Collection, cond: dict[str, Any]) -> tuple[np.ndarray | None, bool]:
    if "key" in cond:
        op = next((op for op in _OPS if cond.get(op) is not None), None)
        if op not in ("match", "range"):
            return None, False
        index = coll.indexes.get(paths.parse(cond["key"]))
        answer = None if index is None else index.answer(op, cond[op])
        return (None, False) if answer is None else answer
    if set(cond) <= _FILTER_KEYS:  # a sub-filter ({} matches every point)
        return _node(coll, cond)
    if "has_vector" in cond:  # the labels the vector's index holds
        name = cond["has_vector"]
        if name in coll.sparse:
            return coll.sparse[name].labels(), True
        space = coll.dense(name)
        if space is None:
            return _NONE, True
        return (space.live_labels() if coll.partial else coll.live_labels()), True
    if "has_id" in cond:
        label_of = coll.label_of
        found = [label for raw in cond["has_id"]
                 if (label := label_of.get(normalize_point_id(raw))) is not None]
        return np.unique(np.asarray(found, np.int64)), True
    return None, False


def _intersect(small: np.ndarray, large: np.ndarray) -> np.ndarray:
    """The labels of sorted ``small`` that are in sorted ``large`` (10,000 into 500,000: 0.3 ms,
    where ``np.intersect1d`` sorts both together: 3.8 ms)."""
    return small[members(small, large)]


def _union(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return _NONE
    return parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))
