"""The inverted index of one named sparse vector of a collection (Qdrant's sparse vectors).

A point's sparse vector is a set of ``(index, value)`` pairs: uint32 indices (terms), float32
values. A query scores each point by the dot product over the indices they share; only points
sharing at least one index are hits (Qdrant: no overlap is no result; a zero dot product with an
overlap is one). With ``modifier: idf`` each query value is first multiplied by the index's
inverse document frequency over the points holding this vector.

Two stores, both flat numpy columns, so a million points cost no Python object each:

- the **forward store**: every label's pairs, sorted by index, in two growable columns, each
  label a ``(start, length)`` range (length -1: no vector). A re-put writes in place when it is
  no longer, else at the end; the ranges left behind are garbage, compacted away once they pass
  :attr:`Tuning.stale_share` of the columns. It answers :meth:`SparseIndex.get`, re-scoring a
  given set of labels (:meth:`SparseIndex.scores`), and the writes not yet in a segment.
- the **postings**: immutable *segments* (Lucene's design), each the ``(label, value)`` postings
  of its labels grouped by index (a CSR by term: ``terms`` sorted, ``offsets``), plus a *home*
  per label: the segment holding its current postings. A write never edits a segment: it moves
  the label's home (to "pending" for a put, to none for a remove), which turns the label's old
  postings stale, masked at read time (``home[label] == segment.id``). Pending labels are read
  from the forward store until :attr:`Tuning.flush_labels` of them (or ``flush_entries`` pairs)
  are flushed into a new segment; segments of the same size tier (a factor of
  :attr:`Tuning.fanout`) are merged once there are ``fanout`` of them, dropping stale postings,
  and a segment whose postings are more than half stale is rewritten. Each pair is so copied
  about log_fanout(pairs / flush) times over its life, a read touches at most
  ``(fanout - 1)`` segments per tier, and no write costs more than the segments it merges.

Reads (:meth:`SparseIndex.search`, :meth:`~SparseIndex.scores`, :meth:`~SparseIndex.get`, ...)
never change the index, so concurrent readers are safe while no writer runs (the collection's
read/write lock); writes flush and merge synchronously. Scores are computed in float64 (the
per-label sum in ascending index order, wherever the label's pairs live, so identical vectors
score identically) and returned as float32; ranking and ties (lower label first) use the float32
scores returned.

:meth:`SparseIndex.columns` is both stores as they are (the forward store in label order, the
segments concatenated, the homes and the pending set), so :meth:`SparseIndex.restore` adopts them
after O(pairs) checks, about the cost of reading them, instead of rebuilding the postings; a
snapshot holding the forward store alone (the older form) is restored by a rebuild (a radix sort).
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

__all__ = ["DEFAULT_TUNING", "MAX_LABEL", "SparseIndex", "Tuning"]

MAX_LABEL: Final = 2**31 - 2  # postings hold labels as int32
_PENDING: Final = -2  # home of a label whose current pairs are in the forward store only
_NOWHERE: Final = -1  # home of a label without postings (no vector, or an empty one)
_U32_MAX: Final = 2**32 - 1
_DENSE_SHARE: Final = 16  # accumulate into label-indexed arrays once postings pass 1/16 of the labels
_SHARE: Final = 0.25  # pruning leaves out the indices whose bounds sum below this share of theta
_NO_LABELS: Final = np.empty(0, np.int64)
_NO_SCORES: Final = np.empty(0, np.float32)
_FORWARD: Final = {"labels": np.int64, "offsets": np.int64, "indices": np.uint32, "values": np.float32}
_POSTINGS: Final = {"home": np.int32, "pending": np.int64, "segment_terms": np.int64, "terms": np.uint32,
                    "term_offsets": np.int64, "posting_labels": np.int32, "posting_values": np.float32}


@dataclass(frozen=True, slots=True)
class Tuning:
    """When the index flushes, merges and compacts (tests shrink these to exercise every path)."""

    flush_labels: int = 512  # pending labels flushed into a segment past this many ...
    flush_entries: int = 65_536  # ... or past this many pending pairs (what every read scans)
    fanout: int = 4  # segments per size tier before they merge
    rewrite_min: int = 4_096  # a segment more than half stale is rewritten once it holds this many postings
    stale_min: int = 1 << 20  # the forward store is compacted once its garbage passes this many pairs ...
    stale_share: float = 0.25  # ... and this share of the columns
    sort_chunk: int = 1 << 22  # pairs a new segment is sorted by at a time (then merged)
    prune_min: int = 1 << 16  # a search prunes (MaxScore) only once its query's postings pass this many

    def __post_init__(self) -> None:
        if self.fanout < 2 or min(self.flush_labels, self.flush_entries, self.sort_chunk) < 1:
            raise ValueError(f"{self}: fanout must be 2 or more, flush and chunk sizes 1 or more")


DEFAULT_TUNING: Final = Tuning()


@dataclass(frozen=True, slots=True, eq=False)
class _Segment:
    """Postings grouped by index: those of ``terms[i]`` are ``labels``/``values[offsets[i]:offsets[i + 1]]``.
    A posting is current only while its label's home is ``id``; the others are stale, masked by readers."""

    id: int
    terms: np.ndarray  # uint32, sorted, unique
    offsets: np.ndarray  # int64, len(terms) + 1
    labels: np.ndarray  # int32
    values: np.ndarray  # float32
    peaks: np.ndarray  # float32, per term: the largest |value| of its postings, stale ones included
    dead: np.ndarray  # int64, per term: how many of its postings are stale (the one mutable part)

    @property
    def size(self) -> int:
        return len(self.labels)

    def locate(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the sorted query indices: the positions in ``query`` of those this segment holds,
        and the start and length of each one's postings. (A segment holds a posting at least.)"""
        found, at = self.find(query)
        starts = self.offsets[at]
        return found, starts, self.offsets[at + 1] - starts

    def find(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the sorted query indices: the positions in ``query`` of those this segment holds, and
        their positions in ``terms``."""
        pos = np.searchsorted(self.terms, query)
        found = np.flatnonzero(self.terms[np.minimum(pos, len(self.terms) - 1)] == query)
        return found, pos[found]


class SparseIndex:
    """The sparse vectors of one name by label, and their postings (see the module docstring).

    Labels are ints in ``[0, MAX_LABEL]``, meant dense (handed out 0, 1, 2, ... and reused): the
    per-label columns are as long as the largest label. Indices and values are taken as the
    caller validated them (indices unique within a vector, values finite); a duplicate index or
    one outside uint32 raises ``ValueError`` all the same, as it would corrupt the sums.
    """

    def __init__(self, idf: bool = False, tuning: Tuning = DEFAULT_TUNING) -> None:
        """``idf``: Qdrant's ``modifier: idf`` on this vector."""
        self.idf = idf
        self.tuning = tuning
        # The forward store.
        self._terms = np.empty(0, np.uint32)
        self._weights = np.empty(0, np.float32)
        self._used = 0  # pairs written into the columns, garbage included
        self._stale = 0  # of which garbage
        # Per label: its range in the forward store, and where its current postings are.
        self._start = np.zeros(0, np.int64)
        self._len = np.zeros(0, np.int32)  # -1: no vector
        self._home = np.zeros(0, np.int32)  # a segment id, _PENDING or _NOWHERE
        self._count = 0
        # The postings.
        self._segments: dict[int, _Segment] = {}
        self._live: dict[int, int] = {}  # segment id -> how many of its postings are current
        self._pending: set[int] = set()  # labels put since the last flush (a flush skips those no longer pending)
        self._pending_entries = 0  # pairs of the labels still pending
        self._ids = itertools.count()  # segment ids, never reused (int32 homes: 2**31 segments, ~10**12 puts)
        self.version = 0  # bumped by every change: a snapshot writes the index again only then
        self.saved: dict[str, Any] = {}  # kind -> what the last snapshot recorded of it

    # Writes -------------------------------------------------------------------------
    def put(self, label: int, indices: np.ndarray, values: np.ndarray) -> None:
        """Set or replace ``label``'s vector (indices in any order). An empty one is a vector: the
        point holds it, with no terms, so it counts in ``len`` (and IDF's N) but matches no query."""
        label = operator.index(label)
        if not 0 <= label <= MAX_LABEL:
            raise ValueError(f"label {label} outside [0, {MAX_LABEL}]")
        terms, weights = _sorted_pairs(indices, values)
        n = len(terms)
        self._reserve(label)
        old = int(self._len[label])
        self._drop(label)
        if n > old:  # no room in the old range (or none): at the end
            self._make_room(n)
            self._start[label] = self._used
            self._used += n
        else:  # in place: postings are copies, nothing else reads the old pairs
            self._stale -= n
        start = int(self._start[label])
        self._terms[start:start + n] = terms
        self._weights[start:start + n] = weights
        self._len[label] = n
        self._count += 1
        self.version += 1
        if n:
            self._home[label] = _PENDING
            self._pending.add(label)
            self._pending_entries += n
            self._maybe_flush()

    def put_many(self, labels: np.ndarray, offsets: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        """Set or replace several labels' vectors, CSR style: row ``i``, ``[offsets[i], offsets[i + 1])``
        of ``indices`` and ``values``, is ``labels[i]``'s vector (``offsets[0] == 0``, ``offsets[-1] ==
        len(indices)``; labels unique within the batch; each row's indices in any order). Leaves
        the state one :meth:`put` each would, in a few passes: a batch past the flush thresholds
        becomes a segment directly (radix-sorted by index), a smaller one pending pairs."""
        labels = np.asarray(labels, np.int64)
        offsets = np.asarray(offsets, np.int64)
        terms = _as_terms(indices)
        weights = np.asarray(values, np.float32)
        if labels.ndim != 1 or offsets.shape != (len(labels) + 1,) or weights.shape != terms.shape:
            raise ValueError(f"a batch of {labels.shape} labels, {offsets.shape} offsets, {terms.shape} indices "
                             f"and {weights.shape} values")
        if offsets[0] != 0 or offsets[-1] != len(terms) or np.any(offsets[1:] < offsets[:-1]):
            raise ValueError("offsets do not split the indices into rows")
        if not len(labels):
            return
        if labels.min() < 0 or labels.max() > MAX_LABEL:
            raise ValueError(f"labels outside [0, {MAX_LABEL}]")
        ordered = np.sort(labels)
        if np.any(ordered[1:] == ordered[:-1]):
            raise ValueError("a label given twice in one batch")
        terms, weights = _sort_rows(offsets, terms, weights)
        lens = np.diff(offsets)
        self._reserve(int(labels.max()))
        self._drop_many(labels)
        total = len(terms)
        self._make_room(total)
        self._start[labels] = self._used + offsets[:-1]
        self._terms[self._used:self._used + total] = terms
        self._weights[self._used:self._used + total] = weights
        self._used += total
        self._len[labels] = lens
        self._count += len(labels)
        self.version += 1
        if len(labels) < self.tuning.flush_labels and total < self.tuning.flush_entries:
            held = labels[lens > 0]
            self._home[held] = _PENDING
            self._pending.update(held.tolist())
            self._pending_entries += total
            self._maybe_flush()
        elif total:
            self._add_segment(labels[lens > 0], lens[lens > 0], terms, weights)

    def remove(self, label: int) -> bool:
        """Drop ``label``'s vector; ``False`` (and no change) if it had none."""
        if label not in self:
            return False
        self._drop(label)
        self.version += 1
        return True

    def _drop(self, label: int) -> None:
        """Turn the label's vector, if any, into garbage: its range, and its postings wherever they are."""
        n = int(self._len[label])
        if n < 0:
            return
        self._stale += n
        self._len[label] = -1
        self._count -= 1
        home = int(self._home[label])
        self._home[label] = _NOWHERE
        if home == _PENDING:
            self._pending_entries -= n  # the label stays in the set: a flush skips it unless pending again
        elif home >= 0:
            start = int(self._start[label])
            self._bury(home, self._terms[start:start + n])
            self._lose({home: n})

    def _drop_many(self, labels: np.ndarray) -> None:
        old = self._len[labels].astype(np.int64)
        had = old >= 0
        if not had.any():
            return
        self._stale += int(old[had].sum())
        self._count -= int(had.sum())
        self._len[labels] = -1
        homes = self._home[labels]
        self._home[labels] = _NOWHERE
        self._pending_entries -= int(old[homes == _PENDING].sum())
        moved = homes >= 0
        if moved.any():
            for sid in np.unique(homes[moved]).tolist():
                mine = moved & (homes == sid)
                self._bury(sid, self._terms[_ranges(self._start[labels[mine]], old[mine])])
            ids, at = np.unique(homes[moved], return_inverse=True)
            lost = np.bincount(at, weights=old[moved]).astype(np.int64)
            self._lose(dict(zip(ids.tolist(), lost.tolist(), strict=True)))

    # The forward store ----------------------------------------------------------------
    def _reserve(self, label: int) -> None:
        """Per-label columns long enough for ``label`` (doubling: amortised O(1) a label)."""
        if label < len(self._len):
            return
        size = max(label + 1, 2 * len(self._len), 64)
        grow = size - len(self._len)
        self._start = np.concatenate([self._start, np.zeros(grow, np.int64)])
        self._len = np.concatenate([self._len, np.full(grow, -1, np.int32)])
        self._home = np.concatenate([self._home, np.full(grow, _NOWHERE, np.int32)])

    def _make_room(self, n: int) -> None:
        """Room for ``n`` more pairs at the end: compacted first once garbage passes its share,
        else grown by half (so appends cost amortised O(1) a pair, garbage O(1) a write)."""
        tuning = self.tuning
        if self._stale > max(tuning.stale_min, tuning.stale_share * self._used):
            self._compact(n)
        need = self._used + n
        if need > len(self._terms):
            size = max(need, len(self._terms) * 3 // 2)
            terms, weights = np.empty(size, np.uint32), np.empty(size, np.float32)
            terms[:self._used] = self._terms[:self._used]
            weights[:self._used] = self._weights[:self._used]
            self._terms, self._weights = terms, weights

    def _compact(self, extra: int) -> None:
        """The forward store rewritten without garbage, in label order: O(pairs held)."""
        held = np.flatnonzero(self._len > 0)
        lens = self._len[held].astype(np.int64)
        at = _ranges(self._start[held], lens)
        size = len(at) + extra + len(at) // 4
        terms, weights = np.empty(size, np.uint32), np.empty(size, np.float32)
        terms[:len(at)] = self._terms[at]
        weights[:len(at)] = self._weights[at]
        self._start[held] = np.cumsum(lens) - lens
        self._terms, self._weights = terms, weights
        self._used, self._stale = len(at), 0

    # Segments -------------------------------------------------------------------------
    def _maybe_flush(self) -> None:
        if len(self._pending) >= self.tuning.flush_labels or self._pending_entries >= self.tuning.flush_entries:
            labels = self._pending_labels()
            self._pending.clear()
            self._pending_entries = 0
            lens = self._len[labels].astype(np.int64)
            at = _ranges(self._start[labels], lens)
            self._add_segment(labels, lens, self._terms[at], self._weights[at])

    def _pending_labels(self) -> np.ndarray:
        """The labels whose current pairs are in the forward store only, sorted."""
        labels = np.fromiter(self._pending, np.int64, len(self._pending))
        labels = labels[self._home[labels] == _PENDING]
        labels.sort()
        return labels

    def _add_segment(self, labels: np.ndarray, lens: np.ndarray, terms: np.ndarray, values: np.ndarray) -> None:
        """A new segment of these rows (``labels[i]`` holds the next ``lens[i] > 0`` pairs), home of their labels.
        A large batch is sorted in chunks of about :attr:`Tuning.sort_chunk` pairs, merged at once:
        cache-sized sorts and gathers cost a third of one sort of the whole."""
        if not len(terms):  # a segment holds a posting at least (``_Segment.locate`` relies on it)
            return
        ends = np.cumsum(lens)
        size = self.tuning.sort_chunk
        cuts = np.unique(np.searchsorted(ends, np.arange(size, len(terms), size), side="left") + 1)
        rows = np.concatenate([[0], cuts[cuts < len(labels)], [len(labels)]])
        starts = np.concatenate([[0], ends])
        chunks = []
        for first, last in itertools.pairwise(rows.tolist()):
            lo, hi = int(starts[first]), int(starts[last])
            chunk = _segment(next(self._ids), labels[first:last], lens[first:last], terms[lo:hi], values[lo:hi])
            self._segments[chunk.id] = chunk
            self._live[chunk.id] = chunk.size
            self._home[labels[first:last]] = chunk.id
            chunks.append(chunk)
        if len(chunks) > 1:
            self._merge(chunks)
        self._settle()

    def _bury(self, sid: int, terms: np.ndarray) -> None:
        """Count as stale, per term, segment ``sid``'s postings of these pairs' indices (a label's, moving home)."""
        segment = self._segments[sid]
        spots = np.searchsorted(segment.terms, terms)
        if 8 * len(spots) < len(segment.terms):
            np.add.at(segment.dead, spots, 1)
        else:
            segment.dead[:] += np.bincount(spots, minlength=len(segment.terms))

    def _lose(self, lost: dict[int, int]) -> None:
        """Postings turned stale (segment id -> how many; their labels have moved home already): a
        segment goes once empty, and is rewritten once mostly stale and large enough to matter."""
        for sid, n in lost.items():
            self._live[sid] -= n
        rewrite = []
        for sid in lost:
            segment = self._segments[sid]
            if not self._live[sid]:
                del self._segments[sid], self._live[sid]
            elif 2 * self._live[sid] < segment.size and segment.size >= self.tuning.rewrite_min:
                rewrite.append(segment)
        for segment in rewrite:
            self._merge([segment])
        if rewrite:
            self._settle()

    def _settle(self) -> None:
        """Merge the segments of any size tier holding ``fanout`` of them, smallest tier first, until none does."""
        fanout = self.tuning.fanout
        while True:
            tiers: dict[int, list[_Segment]] = {}
            for sid, segment in self._segments.items():
                tiers.setdefault(_tier(self._live[sid], fanout), []).append(segment)
            full = [tier for tier, group in tiers.items() if len(group) >= fanout]
            if not full:
                return
            self._merge(tiers[min(full)])

    def _merge(self, segments: list[_Segment]) -> None:
        """Replace ``segments`` by one segment of their current postings: a counting merge by term,
        O(their postings), no sort. Within a term, the first segment's postings come first."""
        parts = []
        for segment in segments:
            local = np.repeat(np.arange(len(segment.terms), dtype=np.int32), np.diff(segment.offsets))
            labels, values = segment.labels, segment.values
            if self._live[segment.id] < segment.size:
                keep = self._home[labels] == segment.id
                local, labels, values = local[keep], labels[keep], values[keep]
            parts.append((segment.terms, local, np.bincount(local, minlength=len(segment.terms)), labels, values))
            del self._segments[segment.id], self._live[segment.id]
        terms = np.unique(np.concatenate([held[counts > 0] for held, _, counts, _, _ in parts]))  # live > 0: some
        per_term = np.zeros(len(terms), np.int64)
        spots = []
        for held, _, counts, _, _ in parts:
            spot = np.searchsorted(terms, held[counts > 0])  # distinct: += is safe
            per_term[spot] += counts[counts > 0]
            spots.append(spot)
        offsets = np.concatenate([[0], np.cumsum(per_term)])
        out_labels, out_values = np.empty(offsets[-1], np.int32), np.empty(offsets[-1], np.float32)
        fill = offsets[:-1].copy()  # where the next part's postings of each term go
        for (_, local, counts, labels, values), spot in zip(parts, spots, strict=True):
            shift = np.zeros(len(counts), np.int64)  # per local term: its destination less its kept start
            shift[counts > 0] = fill[spot]
            shift -= np.cumsum(counts) - counts
            dest = np.arange(len(local), dtype=np.int64)
            dest += shift[local]
            out_labels[dest] = labels
            out_values[dest] = values
            fill[spot] += counts[counts > 0]
        merged = _segment_of(next(self._ids), terms, offsets, out_labels, out_values)
        self._segments[merged.id] = merged
        self._live[merged.id] = merged.size
        self._home[np.isin(self._home, [segment.id for segment in segments])] = merged.id  # O(labels), not O(postings)

    # Reads --------------------------------------------------------------------------
    def __contains__(self, label: object) -> bool:
        return bool(isinstance(label, int | np.integer) and 0 <= label < len(self._len) and self._len[label] >= 0)

    def __len__(self) -> int:
        return self._count

    def labels(self) -> np.ndarray:
        """The labels holding a vector (empty ones included), ascending, int64."""
        return np.flatnonzero(self._len >= 0).astype(np.int64)

    def get(self, label: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(indices uint32 ascending, values float32) of ``label``'s vector, copies; ``None`` without one."""
        if label not in self:
            return None
        start, n = int(self._start[label]), int(self._len[label])
        return self._terms[start:start + n].copy(), self._weights[start:start + n].copy()

    def query_weights(self, indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The query as scored: indices (uint32) ascending and their weights (float64): the values,
        times each index's IDF with ``idf`` (``ln((N - df + 0.5) / (df + 0.5) + 1)``, N the labels
        holding a vector, df those of them holding the index: qdrant-client's ``_compute_idf``)."""
        query, weights = _sorted_pairs(indices, values)
        weights = weights.astype(np.float64)
        if self.idf and len(query):
            weights *= self._idf(query, self._gather(query)[1])
        return query, weights

    def _idf(self, query: np.ndarray, at: np.ndarray) -> np.ndarray:
        """IDF of each query index, from the query positions ``at`` of its current postings."""
        return self._idf_of(np.bincount(at, minlength=len(query)))

    def _idf_of(self, df: np.ndarray) -> np.ndarray:
        """IDF of indices held by ``df`` (int) labels each."""
        held = df.astype(np.float64)
        return np.log((self._count - held + 0.5) / (held + 0.5) + 1.0)

    def search(self, indices: np.ndarray, values: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` labels by dot product with the query (see :meth:`query_weights`), best
        first, ties by lower label: (labels int64, scores float32). Only labels sharing an index
        with the query are hits, so fewer than ``k`` may come back. ``allowed`` (sorted int64
        labels, a filter's answer) restricts the hits to those; ``None``: any label.

        Cost: the current postings of the query's indices, gathered from each segment and summed
        per label (``np.bincount``); with a small ``allowed`` and no IDF, the allowed labels' own
        pairs instead, when they are fewer. Without ``allowed``, once the query's postings pass
        :attr:`Tuning.prune_min`, MaxScore-style pruning reads only the postings of the indices that
        can still lift a label into the best ``k`` (see :meth:`_pruned`): the same answer, cheaper
        when a few common indices hold most postings and weigh little (IDF)."""
        query, weights = _sorted_pairs(indices, values)
        if k <= 0 or not len(query) or not self._count:
            return _NO_LABELS, _NO_SCORES
        if allowed is not None:
            allowed = np.asarray(allowed, np.int64)
            if len(allowed) > 1 and np.any(allowed[1:] <= allowed[:-1]):
                allowed = np.unique(allowed)
            postings = self._postings_cost(query)
            if not self.idf and len(allowed) < postings and self._forward_cost(allowed) < postings:
                sums, overlap = self._forward_sums(query, weights.astype(np.float64), allowed)
                hits = np.flatnonzero(overlap)
                return _top(allowed[hits], sums[hits].astype(np.float32), k)
        else:
            pruned = self._pruned(query, weights.astype(np.float64), k)
            if pruned is not None:
                return pruned
        labels, at, held = self._gather(query)
        scaled = weights.astype(np.float64)
        if self.idf:
            scaled *= self._idf(query, at)
        products = held * scaled[at]
        if allowed is not None:
            mask = np.zeros(len(self._len), bool)
            mask[allowed[np.searchsorted(allowed, 0):np.searchsorted(allowed, len(mask))]] = True
            keep = mask[labels]
            labels, products = labels[keep], products[keep]
        hits, sums = self._sums(labels, products)
        return _top(hits, sums.astype(np.float32), k)

    def _pruned(self, query: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`search` without a filter, exactly, by MaxScore pruning; ``None`` when it does not apply
        (few postings, fewer than ``k`` labels found by the first pass, or less than half the postings
        to prune).

        Each query index bounds what it adds to a label by ``|weight| x`` its largest ``|value|``
        (per segment, stale postings included, and the pending pairs). A first pass scores exactly
        (from the forward store) the best labels of the indices of largest bound with few postings;
        the ``k``-th best of those float32 scores less one float32 step is ``theta``: no label scoring
        below it in float64 is in the best ``k``. The indices of smallest bound whose bounds sum below
        a share of ``theta`` (:data:`_SHARE`, less a rounding slack) are *non-essential*: a label holding
        none of the others scores below ``theta``. The others' postings are summed, and the labels whose
        partial sum plus the non-essential bounds reaches ``theta`` are scored exactly (unless their
        pairs outnumber the non-essential postings: then ``None``), as :meth:`scores` scores them (the
        float64 sum in ascending index order: bit for bit what the full path sums)."""
        if self._postings_cost(query) < self.tuning.prune_min:
            return None
        cost, df, peak = self._bounds(query)
        scaled = weights * self._idf_of(df) if self.idf else weights
        bound = np.abs(scaled) * peak
        slack = 1e-12 * float(bound.sum())  # >> the float64 rounding of sums of at most len(query) products
        want = max(4 * k, 64)
        short = np.flatnonzero(cost <= max(int(cost.sum()) // 8, 1))
        short = short[np.argsort(-bound[short], kind="stable")]
        first = np.sort(short[:int(np.searchsorted(np.cumsum(cost[short]), 2 * want)) + 1])
        if not len(first):
            return None
        labels, at, held = self._gather(query[first])
        hits, partial = self._sums(labels, held * scaled[first][at])
        if len(hits) < k:
            return None
        if len(hits) > want:
            hits = np.sort(hits[np.argpartition(-partial, want - 1)[:want]])
        kth = -np.partition(-self._forward_sums(query, scaled, hits)[0].astype(np.float32), k - 1)[k - 1]
        theta = float(np.nextafter(kth, np.float32(-np.inf)))
        if not theta > slack:
            return None
        order = np.argsort(bound, kind="stable")
        rising = np.cumsum(bound[order])
        cut = int(np.searchsorted(rising + slack, _SHARE * theta, side="left"))  # rising + slack < share x theta
        if 2 * int(cost[order[:cut]].sum()) < int(cost.sum()):  # most postings essential: not worth it
            return None
        rest = float(rising[cut - 1]) + slack
        essential = np.sort(order[cut:])
        labels, at, held = self._gather(query[essential])
        hits, partial = self._sums(labels, held * scaled[essential][at])
        hits = hits[partial + rest >= theta]
        if self._forward_cost(hits) > int(cost.sum() - cost[essential].sum()):  # no cheaper than the full sum
            return None
        return _top(hits, self._forward_sums(query, scaled, hits)[0].astype(np.float32), k)

    def _bounds(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per sorted query index: the postings a gather of it reads (stale ones included, and its
        pending pairs), the labels holding it (its current postings, counted from the segments'
        ``dead``) and the largest ``|value|`` of those postings and pairs (float64)."""
        cost, df, peak = np.zeros(len(query), np.int64), np.zeros(len(query), np.int64), np.zeros(len(query))
        for segment in self._segments.values():
            found, at = segment.find(query)
            if not len(found):
                continue
            counts = segment.offsets[at + 1] - segment.offsets[at]
            cost[found] += counts
            peak[found] = np.maximum(peak[found], segment.peaks[at])
            df[found] += counts - segment.dead[at]
        if self._pending_entries:
            pending, lens, where, spot, hit = self._pending_hits(query)
            held = np.bincount(spot[hit], minlength=len(query))
            cost += held
            df += held
            np.maximum.at(peak, spot[hit], np.abs(self._weights[where][hit]))
        return cost, df, peak

    def scores(self, indices: np.ndarray, values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For ``labels`` (any order, repeats allowed): their dot products with the query as
        scored (float32, summed as :meth:`search` sums them) and whether each overlaps the query.
        A label without the vector scores 0, overlapping nothing."""
        labels = np.asarray(labels, np.int64)
        query, weights = _sorted_pairs(indices, values)
        if not len(query) or not len(labels):
            return np.zeros(len(labels), np.float32), np.zeros(len(labels), bool)
        scaled = weights.astype(np.float64)
        cost = self._forward_cost(labels)
        if self.idf or cost > self._postings_cost(query):  # the postings are read anyway, or cheaper
            held_labels, at, held = self._gather(query)
            if self.idf:
                scaled *= self._idf(query, at)
            if cost > len(held_labels):
                hits, sums = self._sums(held_labels, held * scaled[at])
                if not len(hits):
                    return np.zeros(len(labels), np.float32), np.zeros(len(labels), bool)
                spot = np.minimum(np.searchsorted(hits, labels), len(hits) - 1)
                overlap = hits[spot] == labels
                return np.where(overlap, sums[spot], 0.0).astype(np.float32), overlap
        sums, overlap = self._forward_sums(query, scaled, labels)
        return sums.astype(np.float32), overlap

    def _forward_cost(self, labels: np.ndarray) -> int:
        """Pairs held by ``labels`` (what scoring them from the forward store reads)."""
        inside = labels[(labels >= 0) & (labels < len(self._len))]
        return int(np.maximum(self._len[inside], 0).sum())

    def _postings_cost(self, query: np.ndarray) -> int:
        """Postings of the query's indices, stale ones included, and the pending pairs (what a gather reads)."""
        return self._pending_entries + sum(int(segment.locate(query)[2].sum()) for segment in self._segments.values())

    def _pending_hits(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pending labels' pairs against the sorted ``query`` terms: (pending labels, their pair
        counts, the pairs' positions in the forward store, each pair's query position, whether it is
        a query term)."""
        pending = self._pending_labels()
        lens = self._len[pending].astype(np.int64)
        where = _ranges(self._start[pending], lens)
        terms = self._terms[where]
        spot = np.minimum(np.searchsorted(query, terms), len(query) - 1)
        return pending, lens, where, spot, query[spot] == terms

    def _gather(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every current posting of the sorted query indices: (label, position in ``query``, value).
        A label's postings come in ascending index order (they all sit in one segment, or pending)."""
        labels, at, values = [_NO_LABELS], [_NO_LABELS], [_NO_SCORES]
        for segment in self._segments.values():
            found, starts, counts = segment.locate(query)
            if not len(found):
                continue
            where = _ranges(starts, counts)
            held, there, value = segment.labels[where], np.repeat(found, counts), segment.values[where]
            if self._live[segment.id] < segment.size:
                current = self._home[held] == segment.id
                held, there, value = held[current], there[current], value[current]
            labels.append(held)
            at.append(there)
            values.append(value)
        if self._pending_entries:
            pending, lens, where, spot, hit = self._pending_hits(query)
            labels.append(np.repeat(pending, lens)[hit])
            at.append(spot[hit])
            values.append(self._weights[where][hit])
        return np.concatenate(labels), np.concatenate(at), np.concatenate(values)

    def _sums(self, labels: np.ndarray, products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct ``labels`` ascending and each one's sum of ``products``, in their order: into
        label-indexed arrays when the postings are many, through ``np.unique`` when they are few."""
        if len(labels) * _DENSE_SHARE >= len(self._len):
            sums = np.bincount(labels, weights=products)
            hit = np.zeros(len(sums), bool)
            hit[labels] = True
            hits = np.flatnonzero(hit)
            return hits, sums[hits]
        hits, inverse = np.unique(labels, return_inverse=True)
        return hits.astype(np.int64), np.bincount(inverse, weights=products, minlength=len(hits))

    def _forward_sums(self, query: np.ndarray, weights: np.ndarray,
                      labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dot products (float64) of the sorted query with ``labels``' vectors, from the forward store,
        and which overlap it: O(their pairs)."""
        rows = np.flatnonzero((labels >= 0) & (labels < len(self._len)))
        rows = rows[self._len[labels[rows]] > 0]
        lens = self._len[labels[rows]].astype(np.int64)
        where = _ranges(self._start[labels[rows]], lens)
        terms = self._terms[where]
        spot = np.minimum(np.searchsorted(query, terms), len(query) - 1)
        hit = query[spot] == terms
        row = np.repeat(rows, lens)[hit]
        sums = np.bincount(row, weights=self._weights[where][hit] * weights[spot[hit]], minlength=len(labels))
        return sums, np.bincount(row, minlength=len(labels)) > 0

    # Snapshots ------------------------------------------------------------------------
    def columns(self) -> dict[str, np.ndarray]:
        """The whole state as flat columns (copies; the index is not changed), in label order.

        The forward store: ``labels`` (int64, ascending: those holding a vector), ``offsets``
        (int64, one more: row ``i`` of ``indices`` and ``values`` is ``labels[i]``'s vector),
        ``indices`` (uint32, ascending within each row) and ``values`` (float32).

        The postings, segments numbered ``0, 1, ...`` in creation order: ``segment_terms`` (int64,
        one more than the segments: segment ``s`` holds ``terms[segment_terms[s]:segment_terms[s + 1]]``),
        ``terms`` (uint32, ascending within a segment), ``term_offsets`` (int64, one more than the
        terms: term ``j``'s postings are ``posting_labels`` and ``posting_values[term_offsets[j]:
        term_offsets[j + 1]]``), ``posting_labels`` (int32) and ``posting_values`` (float32), stale
        postings included; ``home`` (int32, one per label of ``labels``: the segment holding its
        current postings, -2 for pending in the forward store only, -1 for none: an empty vector);
        ``pending`` (int64, ascending: the labels put since the last flush, whose count decides the
        next one, some of them since moved on)."""
        labels = self.labels()
        lens = self._len[labels].astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        indices, values = self._rows(labels, lens, offsets)
        segments = list(self._segments.values())  # ascending ids: inserted as created
        home = self._home[labels]
        homed = home >= 0
        home[homed] = np.searchsorted(np.array([segment.id for segment in segments], np.int64), home[homed])
        sizes = np.array([segment.size for segment in segments], np.int64)
        term_offsets = [segment.offsets[:-1] + base for segment, base in zip(segments, np.cumsum(sizes) - sizes,
                                                                              strict=True)]
        return {"labels": labels, "offsets": offsets, "indices": indices, "values": values, "home": home,
                "pending": np.sort(np.fromiter(self._pending, np.int64, len(self._pending))),
                "segment_terms": np.concatenate([[0], np.cumsum([len(s.terms) for s in segments])]).astype(np.int64),
                "terms": np.concatenate([np.empty(0, np.uint32), *(s.terms for s in segments)]),
                "term_offsets": np.concatenate([*term_offsets, [sizes.sum()]]).astype(np.int64),
                "posting_labels": np.concatenate([np.empty(0, np.int32), *(s.labels for s in segments)]),
                "posting_values": np.concatenate([np.empty(0, np.float32), *(s.values for s in segments)])}

    def _rows(self, labels: np.ndarray, lens: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the pairs of ``labels`` (ascending), one row after another per ``offsets``: one copy
        when they are laid out so already, else gathered a few million pairs at a time (3x faster
        than one gather of them all, its index array as large as the pairs twice)."""
        held = lens > 0
        if np.array_equal(self._start[labels[held]], offsets[:-1][held]):
            return self._terms[:offsets[-1]].copy(), self._weights[:offsets[-1]].copy()
        terms, weights = np.empty(offsets[-1], np.uint32), np.empty(offsets[-1], np.float32)
        cuts = np.searchsorted(offsets, np.arange(0, offsets[-1], 1 << 20), side="right") - 1
        for first, last in itertools.pairwise([*np.unique(np.concatenate([[0], cuts])).tolist(), len(labels)]):
            lo, hi = int(offsets[first]), int(offsets[last])
            where = _ranges(self._start[labels[first:last]], lens[first:last])
            terms[lo:hi], weights[lo:hi] = self._terms[where], self._weights[where]
        return terms, weights

    @classmethod
    def restore(cls, columns: dict[str, np.ndarray], idf: bool, tuning: Tuning = DEFAULT_TUNING) -> SparseIndex:
        """The index :meth:`columns` described, answering and taking writes as the one it was taken
        of would (version 0, nothing saved). Its postings are adopted after O(pairs) checks, the
        arrays taken over, not copied: the caller gives them up (:meth:`columns` returns copies,
        ``np.load`` fresh arrays; a read-only forward store is copied, as writes change it in
        place). Given the forward store alone (older snapshots), the postings are rebuilt: a radix
        sort of the pairs. ``ValueError`` when columns are missing or extra, of the wrong shape or
        type, or disagree."""
        names = set(columns)
        if names not in (set(_FORWARD), set(_FORWARD) | set(_POSTINGS)):
            raise ValueError(f"sparse columns {sorted(columns)}: not {sorted(_FORWARD)}, "
                             f"with or without {sorted(_POSTINGS)}")
        for name in sorted(names):
            column, dtype = columns[name], {**_FORWARD, **_POSTINGS}[name]
            if not isinstance(column, np.ndarray) or column.ndim != 1 or column.dtype != dtype:
                raise ValueError(f"sparse column {name!r} is not a 1-d {np.dtype(dtype)} array")
        labels, offsets, indices = columns["labels"], columns["offsets"], columns["indices"]
        if len(offsets) != len(labels) + 1 or len(indices) != len(columns["values"]):
            raise ValueError(f"{len(labels)} labels, {len(offsets)} offsets, {len(indices)} indices, "
                             f"{len(columns['values'])} values")
        if len(labels) and (labels[0] < 0 or labels[-1] > MAX_LABEL or np.any(labels[1:] <= labels[:-1])):
            raise ValueError("sparse labels not ascending within [0, MAX_LABEL]")
        if not _splits(offsets, len(indices), 0):
            raise ValueError("sparse offsets do not split the indices into rows")
        if np.any(_out_of_order(offsets, indices)):
            raise ValueError("sparse indices not ascending within a row")
        index = cls(idf, tuning)
        if names == set(_FORWARD):
            index.put_many(labels, offsets, indices, columns["values"])
        else:
            index._adopt(columns)
        index.version = 0
        return index

    def _adopt(self, columns: dict[str, np.ndarray]) -> None:
        """Take :meth:`columns`' stores into this new index (the forward store is checked already),
        refusing postings that do not fit together, with the homes or with the vectors: O(pairs +
        labels x segments), no sort. Per segment, its current postings must match the pairs of the
        labels homed there in number and sum of labels, and all of them the pairs of the labels not
        pending in their sums of indices and of value bits: a cheap check, not a proof (the
        snapshot's checksums guard the bytes; this, that they fit together). The segments are views
        of the given arrays, which stay held whole until every segment restored is merged away."""
        labels, offsets, indices, values = columns["labels"], columns["offsets"], columns["indices"], columns["values"]
        home, pending, cuts, terms = columns["home"], columns["pending"], columns["segment_terms"], columns["terms"]
        term_offsets, post_labels = columns["term_offsets"], columns["posting_labels"]
        post_values = columns["posting_values"]
        if len(home) != len(labels) or len(term_offsets) != len(terms) + 1 or len(post_values) != len(post_labels):
            raise ValueError(f"{len(labels)} labels, {len(home)} homes; {len(terms)} terms, {len(term_offsets)} "
                             f"term offsets; {len(post_labels)} posting labels, {len(post_values)} posting values")
        if not _splits(cuts, len(terms), 1) or not _splits(term_offsets, len(post_labels), 1):
            raise ValueError("sparse segments do not split the terms, or terms the postings, into non-empty runs")
        if np.any(_out_of_order(cuts, terms)):
            raise ValueError("sparse terms not ascending within a segment")
        segments = len(cuts) - 1
        lens = np.diff(offsets)
        if len(home) and (home.min() < _PENDING or home.max() >= segments):
            raise ValueError(f"sparse homes outside [{_PENDING}, {segments})")
        if np.any((home == _NOWHERE) != (lens == 0)):
            raise ValueError("a sparse vector with pairs but no postings, or an empty one with postings")
        if len(pending) and (pending[0] < 0 or pending[-1] > MAX_LABEL or np.any(pending[1:] <= pending[:-1])):
            raise ValueError("sparse pending labels not ascending within [0, MAX_LABEL]")
        if not np.isin(labels[home == _PENDING], pending, assume_unique=True).all():  # a few: those since a flush
            raise ValueError("a sparse label pending but not in the pending labels")
        if len(post_labels) and (post_labels.min() < 0 or post_labels.max() > MAX_LABEL):
            raise ValueError(f"sparse posting labels outside [0, {MAX_LABEL}]")
        top = max(int(labels[-1]) if len(labels) else -1, int(pending[-1]) if len(pending) else -1,
                  int(post_labels.max()) if len(post_labels) else -1)  # stale postings and pending labels too
        if top >= 0:
            self._reserve(top)
        self._start[labels] = offsets[:-1]
        self._len[labels] = lens
        self._home[labels] = home
        bounds = term_offsets[cuts].tolist()  # segment s's postings: [bounds[s], bounds[s + 1])
        label_sums = labels * lens
        held = np.zeros(2, np.int64)  # the current postings' sums of indices and of value bits (int64 arrays:
        for sid in range(segments):   # both sides wrap alike, silently, past 2**31 pairs)
            a, b, lo, hi = int(cuts[sid]), int(cuts[sid + 1]), bounds[sid], bounds[sid + 1]
            segment = _segment_of(sid, terms[a:b], term_offsets[a:b + 1] - lo, post_labels[lo:hi], post_values[lo:hi])
            current = _homed_at(self._home, segment.labels, sid)
            live = int(np.count_nonzero(current))
            mine = home == sid
            if not live or live != np.sum(lens, where=mine) or \
                    np.sum(segment.labels, where=current, dtype=np.int64) != np.sum(label_sums, where=mine):
                raise ValueError(f"sparse segment {sid}'s current postings are not its labels' pairs")
            per_term = np.add.reduceat(current, segment.offsets[:-1], dtype=np.int32).astype(np.int64)
            segment.dead[:] = np.diff(segment.offsets) - per_term
            held += (np.dot(segment.terms.astype(np.int64), per_term),
                     np.sum(segment.values.view(np.int32), where=current, dtype=np.int64))
            self._segments[sid] = segment
            self._live[sid] = live
        bits = values.view(np.int32)
        waiting = _ranges(offsets[:-1][home == _PENDING], lens[home == _PENDING])  # the pairs in no segment
        want = np.array([np.sum(indices, dtype=np.int64), np.sum(bits, dtype=np.int64)])
        want -= (np.sum(indices[waiting], dtype=np.int64), np.sum(bits[waiting], dtype=np.int64))
        if not np.array_equal(held, want):
            raise ValueError("sparse postings disagree with the vectors' indices or values")
        self._ids = itertools.count(segments)
        self._terms = indices if indices.flags.writeable else indices.copy()
        self._weights = values if values.flags.writeable else values.copy()
        self._used = len(indices)
        self._count = len(labels)
        self._pending = set(pending.tolist())
        self._pending_entries = int(lens[home == _PENDING].sum())

    def memory_bytes(self) -> int:
        """Bytes held by the columns and segments, and roughly by the pending set."""
        held = sum(a.nbytes for a in (self._terms, self._weights, self._start, self._len, self._home))
        held += sum(s.terms.nbytes + s.offsets.nbytes + s.labels.nbytes + s.values.nbytes + 200
                    for s in self._segments.values())
        return int(held) + 60 * len(self._pending)


def _segment(sid: int, labels: np.ndarray, lens: np.ndarray, terms: np.ndarray, values: np.ndarray) -> _Segment:
    """The segment of these rows' pairs, grouped by index (a stable sort: labels keep their row order)."""
    order = _stable_order(terms)
    counts = np.bincount(terms, minlength=0) if len(terms) and int(terms.max()) < 1 << 24 else None
    if counts is not None:  # the index column without gathering it: 2x cheaper at 30,000 terms
        held = np.flatnonzero(counts)
        offsets = np.concatenate([[0], np.cumsum(counts[held])])
        held = held.astype(np.uint32)
    else:
        ordered = terms[order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        held = ordered[np.concatenate([[0], cuts])] if len(ordered) else ordered
        offsets = np.concatenate([[0], cuts, [len(ordered)]])
    return _segment_of(sid, held, offsets.astype(np.int64), np.repeat(labels.astype(np.int32), lens)[order],
                       values[order])


def _segment_of(sid: int, terms: np.ndarray, offsets: np.ndarray, labels: np.ndarray, values: np.ndarray) -> _Segment:
    """The segment of these postings (each term's run non-empty), with its per-term peaks: O(postings)."""
    return _Segment(sid, terms, offsets, labels, values, np.maximum.reduceat(np.abs(values), offsets[:-1]),
                    np.zeros(len(terms), np.int64))


def _tier(n: int, fanout: int) -> int:
    """``floor(log_fanout(n))``: segments within a factor ``fanout`` of each other share a tier."""
    tier = 0
    while n >= fanout:
        n //= fanout
        tier += 1
    return tier


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions ``starts[i]`` up to ``starts[i] + counts[i]``, concatenated in order (int64)."""
    total = int(counts.sum())
    if not total:
        return _NO_LABELS
    shift = np.asarray(starts, np.int64) - (np.cumsum(counts) - counts)
    return np.repeat(shift, counts) + np.arange(total, dtype=np.int64)


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for uint32 keys, as numpy's O(n) radix sort of 16-bit
    keys, once per 16-bit digit (low first): 5x faster than the comparison sort at 100M keys."""
    if len(keys) < 1 << 16:
        return np.argsort(keys, kind="stable")
    if int(keys.max()) <= 0xFFFF:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]


def _as_terms(indices: np.ndarray) -> np.ndarray:
    """Indices as uint32, refusing what does not fit."""
    array = np.asarray(indices)
    if array.dtype == np.uint32:
        return array
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"sparse indices of type {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > _U32_MAX):
        raise ValueError("sparse indices outside uint32")
    return array.astype(np.uint32)


def _sorted_pairs(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One vector's (indices uint32, values float32), sorted by index; ``ValueError`` on a repeated index."""
    terms = _as_terms(indices)
    weights = np.asarray(values, np.float32)
    if terms.ndim != 1 or weights.shape != terms.shape:
        raise ValueError(f"a sparse vector of {terms.shape} indices and {weights.shape} values")
    if len(terms) > 1 and np.any(terms[1:] <= terms[:-1]):
        order = np.argsort(terms, kind="stable")
        terms, weights = terms[order], weights[order]
        if np.any(terms[1:] == terms[:-1]):
            raise ValueError("a sparse vector with a repeated index")
    return terms, weights


def _homed_at(home: np.ndarray, labels: np.ndarray, sid: int) -> np.ndarray:
    """``home[labels] == sid``, gathered 65,536 labels at a time into one buffer: twice as fast at 100M
    labels as one gather, whose int32 temporary is as large as the labels."""
    step = 1 << 16
    out, buffer = np.empty(len(labels), bool), np.empty(min(len(labels), step), home.dtype)
    for lo in range(0, len(labels), step):
        part = buffer[:min(step, len(labels) - lo)]
        np.take(home, labels[lo:lo + step], out=part)
        np.equal(part, sid, out=out[lo:lo + step])
    return out


def _splits(offsets: np.ndarray, total: int, least: int) -> bool:
    """Whether ``offsets`` run from 0 to ``total`` in steps of ``least`` or more (cuts into runs)."""
    return bool(len(offsets) and offsets[0] == 0 and offsets[-1] == total
                and not np.any(offsets[1:] - offsets[:-1] < least))


def _out_of_order(offsets: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """For each adjacent pair of ``terms`` in one row (per ``offsets``), whether it is not ascending."""
    bad = terms[1:] <= terms[:-1]
    inner = offsets[1:-1]
    bad[inner[(inner > 0) & (inner < len(terms))] - 1] = False  # a pair across two rows
    return bad


def _sort_rows(offsets: np.ndarray, terms: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' pairs sorted by index within each row (only rows out of order are sorted);
    ``ValueError`` on an index repeated within a row."""
    if len(terms) < 2:
        return terms, values
    bad = _out_of_order(offsets, terms)
    if not bad.any():
        return terms, values
    rows = np.unique(np.searchsorted(offsets, np.flatnonzero(bad), side="right") - 1)
    lens = offsets[rows + 1] - offsets[rows]
    where = _ranges(offsets[rows], lens)
    order = np.lexsort((terms[where], np.repeat(rows, lens)))
    terms, values = terms.copy(), values.copy()
    terms[where], values[where] = terms[where][order], values[where][order]
    if np.any(_out_of_order(offsets, terms)):
        raise ValueError("a sparse vector with a repeated index")
    return terms, values


def _top(labels: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of ``labels`` (ascending) by float32 ``scores``, best first, ties by lower label."""
    if k < len(scores):
        kth = -np.partition(-scores, k - 1)[k - 1]
        above = np.flatnonzero(scores > kth)
        chosen = np.concatenate([above, np.flatnonzero(scores == kth)[:k - len(above)]])
        labels, scores = labels[chosen], scores[chosen]
    order = np.lexsort((labels, -scores))
    return labels[order].astype(np.int64), scores[order]
