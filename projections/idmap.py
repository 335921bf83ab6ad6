"""A collection's id <-> label maps in numpy columns: about 25 bytes per integer-id point.

Two Python dicts of ints cost ~160 bytes per point (their entries and the int objects); at
10M points that is 1.6 GB beside a 6 GB index. Here integer ids live in numpy arrays:

- :class:`IdsByLabel` (label -> id): an int64 column indexed by label, and a kind byte per
  label (free, integer, string);
- :class:`LabelsById` (id -> label): sorted int64 ids with their labels (binary search), plus
  a small dict of ids added since the last merge; the dict is merged into the arrays once it
  holds :data:`MERGE_AT` ids (one O(n) pass per 65,536 inserts), deletions in the arrays are
  tombstones, dropped at a merge once they are a quarter of them.

String ids (UUIDs and any other string) stay in dicts. Both classes are mutable mappings, so
they read like the dicts they replace; the column methods serve the hot paths (snapshots,
exact search) without a Python object per point. Iteration is in label order (ids by label)
and in id order for integer ids, then strings (labels by id).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import numpy as np

from schemas.ids import PointId

MERGE_AT = 65_536
_FREE, _INT, _STR = 0, 1, 2


class IdsByLabel(MutableMapping[int, PointId]):
    """label -> point id."""

    def __init__(self) -> None:
        self._ints = np.zeros(0, np.int64)
        self._kind = np.zeros(0, np.uint8)
        self._strs: dict[int, str] = {}
        self._len = 0

    def _reserve(self, label: int) -> None:
        if label >= len(self._kind):
            size = max(1024, 2 * len(self._kind), label + 1)
            self._ints = np.concatenate([self._ints, np.zeros(size - len(self._ints), np.int64)])
            self._kind = np.concatenate([self._kind, np.zeros(size - len(self._kind), np.uint8)])

    def __setitem__(self, label: int, pid: PointId) -> None:
        self._reserve(label)
        if self._kind[label] == _FREE:
            self._len += 1
        elif self._kind[label] == _STR:
            del self._strs[label]
        if isinstance(pid, str):
            self._kind[label] = _STR
            self._strs[label] = pid
        else:
            self._kind[label] = _INT
            self._ints[label] = pid

    def __getitem__(self, label: int) -> PointId:
        kind = self._kind[label] if 0 <= label < len(self._kind) else _FREE
        if kind == _INT:
            return int(self._ints[label])
        if kind == _STR:
            return self._strs[label]
        raise KeyError(label)

    def get(self, label: int, default: PointId | None = None) -> PointId | None:  # type: ignore[override]
        try:
            return self[label]
        except KeyError:
            return default

    def __contains__(self, label: object) -> bool:
        return isinstance(label, int) and 0 <= label < len(self._kind) and self._kind[label] != _FREE

    def __delitem__(self, label: int) -> None:
        if label not in self:
            raise KeyError(label)
        if self._kind[label] == _STR:
            del self._strs[label]
        self._kind[label] = _FREE
        self._len -= 1

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        return iter(self.labels().tolist())

    # Columns -------------------------------------------------------------------------
    def labels(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """The labels in use in ``[lo, hi)``, ascending."""
        hi = len(self._kind) if hi is None else min(hi, len(self._kind))
        return np.flatnonzero(self._kind[lo:hi] != _FREE) + lo if lo < hi else np.zeros(0, np.int64)

    def int_points(self, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, ids) of the integer-id points with labels in ``[lo, hi)``."""
        hi = len(self._kind) if hi is None else min(hi, len(self._kind))
        if lo >= hi:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        labels = np.flatnonzero(self._kind[lo:hi] == _INT) + lo
        return labels, self._ints[labels]

    def str_points(self, lo: int = 0, hi: int | None = None) -> list[tuple[int, str]]:
        """(label, id) of the string-id points with labels in ``[lo, hi)``, by label."""
        end = hi if hi is not None else len(self._kind)
        return sorted((label, pid) for label, pid in self._strs.items() if lo <= label < end)

    def set_ints(self, labels: np.ndarray, ids: np.ndarray) -> None:
        """Set many integer ids at free labels at once (loading a snapshot)."""
        if not len(labels):
            return
        self._reserve(int(labels.max()))
        if (self._kind[labels] != _FREE).any():
            raise ValueError("set_ints: some labels are in use")
        if len(labels) > 1 and not (np.diff(labels) > 0).all() and len(np.unique(labels)) != len(labels):
            raise ValueError("set_ints: a label is given twice")  # (a snapshot's labels come sorted)
        self._kind[labels] = _INT
        self._ints[labels] = ids
        self._len += len(labels)


class LabelsById(MutableMapping[PointId, int]):
    """point id -> label."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, np.int64)  # sorted integer ids
        self._vals = np.zeros(0, np.int64)  # their labels; -1: deleted (a tombstone)
        self._dead = 0
        self._recent: dict[int, int] = {}  # integer ids not in the arrays yet
        self._strs: dict[str, int] = {}

    def _find(self, pid: int) -> int:
        """The index of ``pid`` in the arrays (tombstone or not), or -1."""
        i = int(self._keys.searchsorted(pid))
        return i if i < len(self._keys) and self._keys[i] == pid else -1

    def __getitem__(self, pid: PointId) -> int:
        if isinstance(pid, str):
            return self._strs[pid]
        label = self._recent.get(pid)
        if label is not None:
            return label
        i = self._find(pid)
        if i < 0 or self._vals[i] < 0:
            raise KeyError(pid)
        return int(self._vals[i])

    def get(self, pid: PointId, default: int | None = None) -> int | None:  # type: ignore[override]
        try:
            return self[pid]
        except KeyError:
            return default

    def __contains__(self, pid: object) -> bool:
        if isinstance(pid, str):
            return pid in self._strs
        if not isinstance(pid, int) or isinstance(pid, bool):
            return False
        if pid in self._recent:
            return True
        i = self._find(pid)
        return i >= 0 and self._vals[i] >= 0

    def __setitem__(self, pid: PointId, label: int) -> None:
        if isinstance(pid, str):
            self._strs[pid] = label
            return
        i = self._find(pid)
        if i >= 0:  # in the arrays (perhaps deleted): set in place
            if self._vals[i] < 0:
                self._dead -= 1
            self._vals[i] = label
            return
        self._recent[pid] = label
        if len(self._recent) >= MERGE_AT:
            self._merge()

    def __delitem__(self, pid: PointId) -> None:
        if isinstance(pid, str):
            del self._strs[pid]
            return
        if self._recent.pop(pid, None) is not None:
            return
        i = self._find(pid)
        if i < 0 or self._vals[i] < 0:
            raise KeyError(pid)
        self._vals[i] = -1
        self._dead += 1
        if self._dead * 4 > len(self._keys) and self._dead > 1024:
            self._merge()

    def __len__(self) -> int:
        return len(self._keys) - self._dead + len(self._recent) + len(self._strs)

    def __iter__(self) -> Iterator[PointId]:
        self._merge()
        yield from self._keys.tolist()
        yield from list(self._strs)

    def _merge(self) -> None:
        """Fold the recent ids into the sorted arrays and drop tombstones."""
        if not self._recent and not self._dead:
            return  # nothing to fold (a snapshot's load calls this once per segment)
        keep = self._vals >= 0
        keys, vals = self._keys[keep], self._vals[keep]
        if self._recent:
            new_keys = np.fromiter(self._recent.keys(), np.int64, len(self._recent))
            new_vals = np.fromiter(self._recent.values(), np.int64, len(self._recent))
            keys, vals = np.concatenate([keys, new_keys]), np.concatenate([vals, new_vals])
            order = np.argsort(keys, kind="stable")
            keys, vals = keys[order], vals[order]
        self._keys, self._vals, self._dead, self._recent = keys, vals, 0, {}

    def set_ints(self, ids: np.ndarray, labels: np.ndarray) -> None:
        """Add many integer ids at once (loading a snapshot); none may be present already."""
        if not len(ids):
            return
        self._merge()
        order = np.argsort(ids, kind="stable")  # only the new ids are sorted: a snapshot's segments
        ids, labels = ids.astype(np.int64)[order], labels.astype(np.int64)[order]  # load one by one
        if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
            raise ValueError("set_ints: an id is given twice")
        if not len(self._keys) or ids[0] > self._keys[-1]:  # past every id held (a bulk load's order)
            self._keys, self._vals = np.concatenate([self._keys, ids]), np.concatenate([self._vals, labels])
            return
        at = self._keys.searchsorted(ids)
        inside = at < len(self._keys)
        if (self._keys[at[inside]] == ids[inside]).any():
            raise ValueError("set_ints: an id is present already")
        self._keys, self._vals = np.insert(self._keys, at, ids), np.insert(self._vals, at, labels)
