"""Payload indexes (Qdrant's ``PUT /collections/{c}/index``): the points holding each value of a field.

One :class:`FieldIndex` per indexed field holds ``(key, label)`` pairs sorted by key, then
label, in two numpy columns, so the points holding one value (or a range of values) are one
``searchsorted`` away, in label order. A field's *keys* are its values as the schema reads
them: a keyword's or uuid's code (strings are interned), an integer, a float, a bool (0/1), a
datetime's microseconds, a text's token codes; values of other types are not indexed, as in
Qdrant. The values are read with the filters' own path semantics (``schemas.paths.values``,
arrays unwrapped), so an index answers a condition exactly as the condition's predicate would.

Writes change a few labels at a time, so the pairs live in three levels: the large sorted
``main``; a small sorted ``delta`` holding the current pairs of the labels changed since
``main`` was built; and an overlay (label -> its keys now) of the latest writes, which reads
consult directly. The overlay is folded into the delta once it holds a few hundred labels
(O(delta)), the delta into ``main`` once it holds an eighth of it (O(pairs), amortised over
that many changes), by whichever thread finds them large: a reader under the collection's read
lock (several may race: a lock orders them, and each reader works on one immutable view) or
the projector under the write lock.

:meth:`FieldIndex.answer` returns the labels matching one field condition and whether that set
is exact or a superset (``match.text`` over several tokens: the tokens may sit in different
values of an array); ``None`` when the index cannot answer (a condition on values of a type it
does not hold). ``projections.planner`` combines the answers of a filter's conditions.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from projections import datetimes
from projections.filters import datetime_bounds
from schemas import paths
from schemas.events import Payload

__all__ = ["SCHEMA_TYPES", "FieldIndex", "PayloadIndexes", "members"]

SCHEMA_TYPES: Final = ("keyword", "integer", "float", "bool", "geo", "text", "datetime", "uuid")
_READ_MERGE_AT: Final = 512  # a reader folds an overlay larger than this into the delta level first
_WRITE_FOLD_AT: Final = 4_096  # the projector folds the overlay into the delta level past this
_WRITE_MERGE_MIN: Final = 65_536  # and the delta into the main level once it holds more pairs than this and ...
_WRITE_MERGE_SHARE: Final = 0.125  # ... an eighth of the main level's
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_EXACT_FLOAT: Final = 2**53  # integers beyond this are not exact as float64 keys
_TOKEN_RE: Final = re.compile(r"[^\W_]+")
_NO_LABELS: Final = np.empty(0, np.int64)


@dataclass(frozen=True, slots=True)
class _Level:
    """``(key, label)`` pairs sorted by key, then label."""

    keys: np.ndarray
    labels: np.ndarray

    def between(self, lo: Any, hi: Any, lo_side: str, hi_side: str) -> np.ndarray:
        i = int(np.searchsorted(self.keys, lo, side=lo_side))  # type: ignore[call-overload]
        j = int(np.searchsorted(self.keys, hi, side=hi_side))  # type: ignore[call-overload]
        found = self.labels[i:j]
        if len(found) > 1 and self.keys[i] != self.keys[j - 1]:
            found = np.unique(found)  # several keys: labels sorted within each key only
        return found


@dataclass(frozen=True, slots=True)
class _View:
    """One immutable state of a field's pairs, in three levels: the large sorted ``main``; a small
    sorted ``delta`` holding the current pairs of the labels in ``moved`` (their pairs in ``main``
    are stale); and the overlay ``changed`` (label -> its keys now) of the writes since."""

    main: _Level
    delta: _Level
    moved: np.ndarray  # sorted labels whose pairs in main are stale
    changed: dict[int, tuple[Any, ...]]  # never edited once a reader holds the view
    changed_labels: np.ndarray  # the overlay's labels, sorted (empty: to compute)


def _level(keys: np.ndarray, labels: np.ndarray) -> _Level:
    order = np.lexsort((labels, keys))
    return _Level(keys[order], labels[order])


def _fold_overlay(view: _View, dtype: Any) -> _View:
    """The overlay folded into the delta level: O(delta + overlay), never O(main)."""
    if not view.changed:
        return view
    labels = np.fromiter(view.changed, np.int64, len(view.changed))
    labels.sort()
    keep = ~members(view.delta.labels, labels)
    add_keys = np.asarray([k for keys in view.changed.values() for k in keys], dtype)
    add_labels = np.asarray([label for label, keys in view.changed.items() for _ in keys], np.int64)
    delta = _level(np.concatenate([view.delta.keys[keep], add_keys]),
                   np.concatenate([view.delta.labels[keep], add_labels]))
    return _View(view.main, delta, np.union1d(view.moved, labels), {}, _NO_LABELS)


def _compacted(view: _View, dtype: Any) -> _View:
    """The overlay folded into the delta level, and the delta into ``main`` once it is large: a
    read or write pays O(delta) most of the time, O(pairs) once per ``_WRITE_MERGE_SHARE`` of them."""
    view = _fold_overlay(view, dtype)
    if len(view.delta.keys) > max(_WRITE_MERGE_MIN, _WRITE_MERGE_SHARE * len(view.main.keys)):
        view = _fold_all(view, dtype)
    return view


def _fold_all(view: _View, dtype: Any) -> _View:
    """Every level folded into ``main``: O(pairs)."""
    view = _fold_overlay(view, dtype)
    if not view.moved.size:
        return view
    keep = ~members(view.main.labels, view.moved)
    main = _level(np.concatenate([view.main.keys[keep], view.delta.keys]),
                  np.concatenate([view.main.labels[keep], view.delta.labels]))
    return _View(main, _Level(view.delta.keys[:0], _NO_LABELS), _NO_LABELS, {}, _NO_LABELS)


class FieldIndex:
    """The index of one payload field (see the module docstring)."""

    def __init__(self, field: str, schema: str | Mapping[str, Any]) -> None:
        """``schema`` is Qdrant's ``field_schema`` as given: a type name, or parameters with a ``type``."""
        self.field = field
        self.path = paths.parse(field, field="field_name")
        self.schema: str | dict[str, Any] = schema if isinstance(schema, str) else dict(schema)
        self.type: str = schema if isinstance(schema, str) else schema["type"]
        self._dtype = np.float64 if self.type == "float" else np.int64
        self._codes: dict[str, int] = {}  # keyword, uuid, text: string -> key
        self.points = 0  # points holding at least one indexed value
        self.values = 0  # (point, value) pairs indexed
        self._foreign = 0  # values a range on this field sees but the index does not hold exactly
        empty = _Level(np.empty(0, self._dtype), _NO_LABELS)
        self._view = _View(empty, empty, _NO_LABELS, {}, _NO_LABELS)
        self._merge_lock = threading.Lock()
        self.version = 0  # bumped by every change: a snapshot writes the index again only then
        self.saved: dict[str, tuple[Path, str, int]] = {}  # kind -> (file, checksum, version) of the last snapshot

    # Keys ---------------------------------------------------------------------------
    def keys_of(self, payload: Payload | None) -> tuple[tuple[Any, ...], int]:
        """The keys a payload gives this field (each once, sorted) and its foreign values."""
        if not payload:
            return (), 0
        found = paths.values(payload, self.path, flat=True)
        if not found:
            return (), 0
        keys: set[Any] = set()
        foreign = 0
        kind = self.type
        for value in found:
            cls = value.__class__
            if kind in ("keyword", "uuid"):
                if cls is str:
                    keys.add(self._code(value))
            elif kind == "integer":
                if cls is int and _I64_MIN <= value <= _I64_MAX:
                    keys.add(value)
                elif cls is float or cls is int:
                    foreign += 1  # a range sees it, this index does not hold it
            elif kind == "float":
                if (cls is float and math.isfinite(value)) or cls is int:
                    if cls is int and abs(value) > _EXACT_FLOAT:
                        foreign += 1
                    else:
                        keys.add(float(value))
            elif kind == "bool":
                if cls is bool:
                    keys.add(int(value))
            elif kind == "datetime":
                if cls is str and (micros := datetimes.parse(value)) is not None:
                    keys.add(micros)
            elif kind == "text":
                if cls is str:
                    keys.update(self._code(token.lower()) for token in _TOKEN_RE.findall(value))
            elif kind == "geo" and isinstance(value, dict) and _is_geo(value):
                keys.add(0)
        return tuple(sorted(keys)), foreign

    def _code(self, text: str) -> int:
        code = self._codes.get(text)
        if code is None:
            code = self._codes[text] = len(self._codes)
        return code

    # Writes -------------------------------------------------------------------------
    def build(self, payloads: Mapping[int, Payload]) -> None:
        """Index every point of ``payloads`` (label -> payload) from scratch."""
        keys: list[Any] = []
        labels: list[int] = []
        points = foreign = 0
        for label, payload in payloads.items():
            found, extra = self.keys_of(payload)
            foreign += extra
            if found:
                points += 1
                keys.extend(found)
                labels.extend([label] * len(found))
        empty = _Level(np.empty(0, self._dtype), _NO_LABELS)
        main = _level(np.asarray(keys, dtype=self._dtype), np.asarray(labels, dtype=np.int64))
        self._view = _View(main, empty, _NO_LABELS, {}, _NO_LABELS)
        self.points, self.values, self._foreign = points, len(keys), foreign

    def update(self, label: int, old: Payload | None, new: Payload | None) -> None:
        """The point at ``label`` changed payload (``None``: it has none, or was deleted)."""
        old_keys, old_foreign = self.keys_of(old)
        new_keys, new_foreign = self.keys_of(new)
        self._foreign += new_foreign - old_foreign
        if old_keys == new_keys:
            return
        self.points += bool(new_keys) - bool(old_keys)
        self.values += len(new_keys) - len(old_keys)
        self.version += 1
        view = self._view
        view.changed[label] = new_keys  # the projector's thread, under the write lock: no reader holds it
        if len(view.changed) > _WRITE_FOLD_AT:
            self._view = _compacted(view, self._dtype)
        elif view.changed_labels.size:
            self._view = replace(view, changed_labels=_NO_LABELS)  # recomputed when read

    # Reads --------------------------------------------------------------------------
    def _read(self) -> _View:
        """A view whose overlay is small, with its labels sorted (folding it first if needed)."""
        view = self._view
        if len(view.changed) > _READ_MERGE_AT or (view.changed and not view.changed_labels.size):
            with self._merge_lock:
                view = self._view
                if len(view.changed) > _READ_MERGE_AT:
                    view = self._view = _compacted(view, self._dtype)
                elif view.changed and not view.changed_labels.size:
                    labels = np.fromiter(view.changed, np.int64, len(view.changed))
                    labels.sort()
                    view = self._view = replace(view, changed=dict(view.changed), changed_labels=labels)
        return view

    def _settled(self) -> _Level:
        """Every pair in one sorted level (folded and kept, so the next reader does not fold again)."""
        view = self._view
        if view.changed or view.moved.size:
            with self._merge_lock:
                view = self._view = _fold_all(self._view, self._dtype)
        return view.main

    def _between(self, lo: Any, hi: Any, lo_side: str = "left", hi_side: str = "right") -> np.ndarray:
        """Labels with a key in the interval (sides as ``np.searchsorted``'s), sorted and unique."""
        view = self._read()
        found = view.main.between(lo, hi, lo_side, hi_side)
        if view.moved.size:
            found = found[~members(found, view.moved)]
            found = np.union1d(found, view.delta.between(lo, hi, lo_side, hi_side))
        if view.changed:
            found = found[~members(found, view.changed_labels)]
            lo_ok = (lambda k: k >= lo) if lo_side == "left" else (lambda k: k > lo)
            hi_ok = (lambda k: k <= hi) if hi_side == "right" else (lambda k: k < hi)
            extra = [label for label, keys in view.changed.items() if any(lo_ok(k) and hi_ok(k) for k in keys)]
            if extra:
                found = np.union1d(found, np.asarray(extra, np.int64))
        return found

    def _equal(self, key: Any) -> np.ndarray:
        return self._between(key, key)

    def _any(self, keys: Iterable[Any]) -> np.ndarray:
        parts = [self._equal(k) for k in keys]
        if not parts:
            return _NO_LABELS
        return parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))

    def _strings(self, texts: Iterable[str]) -> np.ndarray:
        return self._any(code for t in texts if (code := self._codes.get(t)) is not None)

    def answer(self, op: str, arg: Any) -> tuple[np.ndarray, bool] | None:
        """Labels matching the condition ``{op: arg}`` on this field and whether exactly (else a
        superset); ``None`` when this index does not answer it. ``arg`` is validated already."""
        kind = self.type
        if op == "match":
            ((what, value),) = arg.items()
            if what == "value":
                if kind in ("keyword", "uuid") and isinstance(value, str):
                    return self._strings([value]), True
                if kind == "integer" and value.__class__ is int:
                    return self._equal(value), True
                if kind == "bool" and isinstance(value, bool):
                    return self._equal(int(value)), True
                return None
            if what == "any" and isinstance(value, list):
                if kind in ("keyword", "uuid") and (not value or isinstance(value[0], str)):
                    return self._strings(value), True
                if kind == "integer" and (not value or value[0].__class__ is int):
                    return self._any(value), True
                return None
            if kind == "text" and what in ("text", "text_any", "phrase"):
                tokens = [t.lower() for t in _TOKEN_RE.findall(value)]
                if not tokens:
                    return _NO_LABELS, True
                if what == "text_any":
                    return self._strings(tokens), True
                sets = [self._strings([t]) for t in dict.fromkeys(tokens)]
                found = sets[0]
                for other in sets[1:]:
                    found = found[members(found, other)]
                # all tokens in one value (and in order, for a phrase) is checked on these candidates
                return found, len(sets) == 1 and what == "text"
            return None
        if op == "range":
            if kind == "datetime" and any(isinstance(arg.get(b), str) for b in ("gt", "gte", "lt", "lte")):
                return self._range(datetime_bounds(arg, "range")), True
            if kind in ("integer", "float") and self._foreign == 0 and not any(
                    isinstance(arg.get(b), str) for b in ("gt", "gte", "lt", "lte")):
                numbers = {b: float(arg[b]) for b in ("gt", "gte", "lt", "lte") if arg.get(b) is not None}
                return self._range(numbers, integers=kind == "integer"), True
        return None

    def _range(self, bounds: Mapping[str, float | int], *, integers: bool = False) -> np.ndarray:
        lo: float | int = -math.inf
        hi: float | int = math.inf
        lo_side, hi_side = "left", "right"
        for b, v in bounds.items():
            if b == "gt" and v >= lo:
                lo, lo_side = v, "right"
            elif b == "gte" and v > lo:
                lo, lo_side = v, "left"
            elif b == "lt" and v <= hi:
                hi, hi_side = v, "left"
            elif b == "lte" and v < hi:
                hi, hi_side = v, "right"
        if integers:  # integer keys against float bounds: the integer interval they leave
            lo = _I64_MIN if lo == -math.inf else (math.floor(lo) + 1 if lo_side == "right" else math.ceil(lo))
            hi = _I64_MAX if hi == math.inf else (math.ceil(hi) - 1 if hi_side == "left" else math.floor(hi))
            if lo > hi or lo > _I64_MAX or hi < _I64_MIN:
                return _NO_LABELS
            lo, hi = max(lo, _I64_MIN), min(hi, _I64_MAX)
            return self._between(lo, hi)
        if lo > hi:
            return _NO_LABELS
        return self._between(lo, hi, lo_side, hi_side)

    def counts(self, labels: np.ndarray | None) -> list[tuple[Any, int]]:
        """Each value and how many of ``labels`` (all points: ``None``) hold it (Qdrant's facets),
        for keyword, uuid, integer and bool indexes."""
        level = self._settled()
        keys, held = level.keys, level.labels
        if labels is not None:
            inside = members(held, labels)
            keys = keys[inside]
        codes, n = np.unique(keys, return_counts=True)
        if self.type == "bool":
            return [(bool(c), k) for c, k in zip(codes.tolist(), n.tolist(), strict=True)]
        if self.type == "integer":
            return list(zip(codes.tolist(), n.tolist(), strict=True))
        names = list(self._codes)  # codes are handed out in order: a string's code is its position
        return [(names[c], k) for c, k in zip(codes.tolist(), n.tolist(), strict=True)]

    def columns(self) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, int]]:
        """What a snapshot stores: the sorted keys and labels, the interned strings by code, and
        the counters (``points``, ``values``, ``foreign``)."""
        level = self._settled()
        codes = list(self._codes)  # by code: codes are handed out in insertion order
        return level.keys, level.labels, codes, {"points": self.points, "values": self.values,
                                                   "foreign": self._foreign}

    @classmethod
    def restore(cls, field: str, schema: str | Mapping[str, Any], keys: np.ndarray, labels: np.ndarray,
                codes: list[str], counters: Mapping[str, int]) -> FieldIndex:
        """The index a snapshot stored (:meth:`columns`); raises ``ValueError`` when the parts disagree."""
        index = cls(field, schema)
        if keys.shape != labels.shape or keys.ndim != 1 or keys.dtype != index._dtype or labels.dtype != np.int64:
            raise ValueError(f"columns of shapes {keys.shape} {labels.shape}, types {keys.dtype} {labels.dtype}")
        if len(keys) != counters["values"] or (len(keys) and np.any(np.diff(keys) < 0)):
            raise ValueError(f"{len(keys)} pairs (not sorted, or not the {counters['values']} recorded)")
        if not all(isinstance(c, str) for c in codes):
            raise ValueError("interned strings that are not strings")
        index._codes = {text: code for code, text in enumerate(codes)}
        index._view = replace(index._view, main=_Level(keys, labels))
        index.points, index.values, index._foreign = counters["points"], counters["values"], counters["foreign"]
        return index

    def in_order(self, descending: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(keys, labels) of every pair, by key (descending with ``descending``), ties by label."""
        level = self._settled()
        if not descending:
            return level.keys, level.labels
        order = np.argsort(-level.keys, kind="stable")  # keys are sorted ascending: ties stay by label
        return level.keys[order], level.labels[order]

    def pairs(self) -> set[tuple[Any, int]]:
        """Every (value, label) held, values decoded (``verify`` compares an index with a rebuild)."""
        view = _fold_all(self._read(), self._dtype)  # not kept: verify should not change what it checks
        names = list(self._codes)
        decode = (lambda k: names[k]) if self._codes else (lambda k: k)
        return {(decode(k), label) for k, label in zip(view.main.keys.tolist(), view.main.labels.tolist(),
                                                       strict=True)}

    @property
    def orders(self) -> bool:
        """Whether ``order_by`` can use this index (Qdrant: a range index)."""
        return self.type in ("float", "datetime") or (
            self.type == "integer" and not (isinstance(self.schema, dict) and self.schema.get("range") is False))

    def memory_bytes(self) -> int:
        view = self._view
        held = (view.main.keys.nbytes + view.main.labels.nbytes + view.delta.keys.nbytes + view.delta.labels.nbytes
                + view.moved.nbytes)
        return int(held) + 80 * len(self._codes) + 100 * len(view.changed)

    def info(self) -> dict[str, Any]:
        """Qdrant's ``PayloadIndexInfo``: ``data_type``, ``params`` (when given) and ``points``."""
        out: dict[str, Any] = {"data_type": self.type}
        if isinstance(self.schema, dict):
            out["params"] = self.schema
        out["points"] = self.points
        return out


def members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the sorted array ``sorted_set`` (a bool mask): a binary search
    each, O(len(values) log len(sorted_set)), where ``np.isin`` / ``np.intersect1d`` sort both."""
    if not sorted_set.size or not values.size:
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_set, values)
    at[at == len(sorted_set)] = 0
    return sorted_set[at] == values


def _is_geo(value: dict[str, Any]) -> bool:
    lat, lon = value.get("lat"), value.get("lon")
    return all(v.__class__ in (int, float) and math.isfinite(v) for v in (lat, lon))


class PayloadIndexes:
    """A collection's payload indexes by field (its ``payload_schema``)."""

    def __init__(self) -> None:
        self.by_path: dict[paths.Path, FieldIndex] = {}

    def __bool__(self) -> bool:
        return bool(self.by_path)

    def __iter__(self) -> Any:
        return iter(self.by_path.values())

    def get(self, path: paths.Path) -> FieldIndex | None:
        return self.by_path.get(path)

    def create(self, field: str, schema: str | Mapping[str, Any], payloads: Mapping[int, Payload]) -> FieldIndex:
        index = FieldIndex(field, schema)
        index.build(payloads)
        self.by_path[index.path] = index
        return index

    def adopt(self, index: FieldIndex) -> None:
        """Hold an index restored from a snapshot."""
        self.by_path[index.path] = index

    def drop(self, field: str) -> bool:
        return self.by_path.pop(paths.parse(field, field="field_name"), None) is not None

    def update(self, label: int, old: Payload | None, new: Payload | None) -> None:
        for index in self.by_path.values():
            index.update(label, old, new)
