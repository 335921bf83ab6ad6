"""One collection's vectors as HNSW segments over consecutive label ranges.

A segment owns the labels ``[lo, hi)``: one hnswlib graph holds their vectors. New labels
open a new segment of ``segment_size`` labels once the last one is full, so a bulk load
fills one segment at a time and leaves the older ones unchanged. That is what makes
snapshots incremental: a snapshot writes a segment's graph again only when vectors were
added to it (:attr:`Segment.graph_version`) and its points only when its points changed
(:attr:`Segment.points_version`); everything else is linked from the previous snapshot.
Deletions do not change a graph's file: a loaded graph marks deleted every label it holds
that is not live (:meth:`SegmentedIndex.restore_segment`).

A search asks every segment that holds a live point for its k best and keeps the k best
of those; its cost grows with the number of segments (collection size / segment size),
the price of writing each graph once. Labels are allocated by the collection exactly as
before segments existed, so the segment layout never changes what a replay yields.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from projections.index.hnsw import VectorIndex, prepare
from projections.index.quantized import QuantizedGraph, QuantizedSearch

DEFAULT_SEGMENT_BYTES = 128 * 1024 * 1024  # of float32 vector data: 262,144 labels at 128-d, 65,536 at 512-d
MIN_SEGMENT_SIZE = 16


def segment_size_for(dimension: int, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> int:
    """Labels per segment for vectors of ``dimension``: ``segment_bytes`` of float32 rows."""
    return max(MIN_SEGMENT_SIZE, segment_bytes // (4 * max(dimension, 1)))


@dataclass(eq=False)
class Segment:
    lo: int
    hi: int
    graph: VectorIndex | QuantizedGraph
    alive: np.ndarray  # bool per label in [lo, hi): live in the graph
    graph_version: int = 0  # bumped by every add: the graph differs from any file written before
    points_version: int = 0  # bumped by every change to its points' ids or payloads (Collection.touch)
    alive_version: int = 0  # bumped by every change to which labels are live
    saved: dict[str, tuple[Path, str, int]] = field(default_factory=dict)  # kind -> (file, checksum, version)
    rows: np.ndarray | None = None  # hnswlib graphs, with keep_rows: a float32 copy of the rows, by local label

    @property
    def live(self) -> int:
        return int(self._live)

    def __post_init__(self) -> None:
        self._live = int(self.alive.sum())

    def set_alive(self, local: np.ndarray, value: bool) -> None:
        self.alive_version += 1
        if len(local) == 1:
            self._live += int(value) - int(self.alive[local[0]])
            self.alive[local[0]] = value
        else:
            self.alive[local] = value
            self._live = int(np.count_nonzero(self.alive))


class SegmentedIndex:
    """The collection's vector index: segments, searched together, each written on its own."""

    def __init__(self, dimension: int, metric: str, m: int = 16, ef_construction: int = 200, ef: int = 64,
                 segment_size: int | None = None, *, quantization: str | None = None,
                 on_disk: bool | None = None) -> None:
        self.dimension, self.metric, self.m = dimension, metric, m
        self.quantization = quantization  # None: float32 graphs; else int8 faiss graphs (quantized.py)
        self.on_disk = on_disk is not False  # faiss graphs: full-precision rows read from disk, else in RAM
        # float32 graphs are hnswlib's (the vectors inside them, in RAM), unless on_disk is true:
        # then faiss graphs over float16 codes, the float32 rows on disk (quantized.py)
        # Manhattan graphs are faiss's over float32 rows whatever on_disk says (hnswlib has no L1
        # space, faiss's scalar quantizer no L1 metric: docs/decisions/0008)
        if metric == "manhattan" and quantization is not None:
            raise ValueError("scalar quantization is not supported with the Manhattan distance")
        self.engine = "faiss-flat" if metric == "manhattan" else "faiss-sq8" if quantization is not None \
            else "faiss-fp16" if on_disk is True else "hnswlib"
        self.ef_construction, self.default_ef = ef_construction, ef
        self.segment_size = segment_size or segment_size_for(dimension)
        self.segments: list[Segment] = []
        self.rows_kept = False  # hnswlib graphs: a float32 copy of every row beside them (keep_rows)
        self._los: list[int] = []
        self._los_array = np.empty(0, np.int64)  # the same, for np.searchsorted

    # Layout --------------------------------------------------------------------------
    def _new_graph(self, lo: int, hi: int) -> VectorIndex | QuantizedGraph:
        if self.engine != "hnswlib":
            return QuantizedGraph(self.dimension, self.metric, self.m, self.ef_construction, self.default_ef, lo, hi,
                                  self.on_disk, self.engine)
        return VectorIndex(self.dimension, self.metric, self.m, self.ef_construction, self.default_ef,
                           capacity=min(hi - lo, 1024))

    def empty_graph(self, lo: int, hi: int) -> VectorIndex | QuantizedGraph:
        """A graph for ``[lo, hi)`` holding nothing (a collection without an unnamed vector)."""
        return self._new_graph(lo, hi)

    def _append(self, segment: Segment) -> None:
        if self.segments and segment.lo != self.segments[-1].hi:
            raise ValueError(f"segment [{segment.lo}, {segment.hi}) does not follow [{self.segments[-1].lo}, "
                             f"{self.segments[-1].hi})")
        self.segments.append(segment)
        self._los.append(segment.lo)
        self._los_array = np.asarray(self._los, dtype=np.int64)

    def segment_of(self, label: int) -> Segment | None:
        i = bisect.bisect_right(self._los, label) - 1
        if i < 0 or label >= self.segments[i].hi:
            return None
        return self.segments[i]

    def segment_for(self, label: int) -> Segment:
        """The segment of ``label``, opening new ones up to it (labels grow one at a time)."""
        while not self.segments or label >= self.segments[-1].hi:
            lo = self.segments[-1].hi if self.segments else 0
            size = self.segment_size
            self._append(Segment(lo, lo + size, self._new_graph(lo, lo + size), np.zeros(size, dtype=bool)))
            if self.rows_kept:
                self.segments[-1].rows = np.zeros((size, self.dimension), np.float32)
        seg = self.segment_of(label)
        assert seg is not None
        return seg

    def _grouped(self, labels: np.ndarray) -> Iterable[tuple[Segment, np.ndarray]]:
        """(segment, positions in ``labels``) for each segment the labels fall in."""
        if len(labels) == 0:
            return
        which = np.searchsorted(self._los_array, labels, side="right") - 1
        for i in np.unique(which).tolist():
            if i < 0 or i >= len(self.segments):
                raise KeyError(f"labels {labels[which == i][:5].tolist()} are in no segment")
            yield self.segments[i], np.flatnonzero(which == i)

    def restore_segment(self, lo: int, hi: int, graph: VectorIndex | QuantizedGraph,
                        live_labels: np.ndarray) -> Segment:
        """Adopt a graph loaded from a file for ``[lo, hi)``: labels it holds that are not in
        ``live_labels`` (deleted after the file was written) are marked deleted."""
        held = np.asarray(graph.labels(), dtype=np.int64)
        for label in np.setdiff1d(held, live_labels, assume_unique=True).tolist():  # both hold each label once
            graph.mark_deleted(label, missing_ok=True)
        alive = np.zeros(hi - lo, dtype=bool)
        alive[live_labels - lo] = True
        seg = Segment(lo, hi, graph, alive)
        self._append(seg)
        if self.rows_kept:
            self._copy_rows(seg)
        return seg

    def keep_rows(self, on: bool) -> None:
        """Keep (or stop keeping) a float32 copy of hnswlib graphs' rows beside them: what an exact
        scan of a few thousand selected points reads (a payload index's matches), since hnswlib
        hands its rows out one Python float at a time. Graphs over quantized codes keep their
        full-precision rows anyway. The copy costs 4 bytes per dimension and point."""
        if self.engine != "hnswlib" or on == self.rows_kept:
            return
        self.rows_kept = on
        for seg in self.segments:
            if on:
                self._copy_rows(seg)
            else:
                seg.rows = None

    def _copy_rows(self, seg: Segment) -> None:
        assert isinstance(seg.graph, VectorIndex)
        seg.rows = np.zeros((seg.hi - seg.lo, self.dimension), np.float32)
        labels, rows = seg.graph.rows()
        if len(labels):
            seg.rows[labels - seg.lo] = rows

    def rebuilt(self, m: int, ef_construction: int, quantization: str | None,
                on_disk: bool | None) -> SegmentedIndex:
        """A new index of the same segments holding the same live vectors, its graphs built with
        these settings (a collection's settings changed: ``CollectionUpdated``)."""
        new = SegmentedIndex(self.dimension, self.metric, m, ef_construction, self.default_ef, self.segment_size,
                             quantization=quantization, on_disk=on_disk)
        new.rows_kept = self.rows_kept and new.engine == "hnswlib"
        for seg in self.segments:  # the same layout: each segment's labels stay in their range
            new._append(Segment(seg.lo, seg.hi, new._new_graph(seg.lo, seg.hi), np.zeros(seg.hi - seg.lo, dtype=bool),
                                rows=np.zeros((seg.hi - seg.lo, self.dimension), np.float32)
                                if new.rows_kept else None))
            live = np.flatnonzero(seg.alive) + seg.lo
            for start in range(0, len(live), 65_536):
                chunk = live[start:start + 65_536]
                new.add(chunk, self.vectors(chunk))  # the rows as stored (prepared): not normalised again
        return new

    # Writes --------------------------------------------------------------------------
    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """The float32 rows as the index stores them (normalised for cosine)."""
        return prepare(vectors, self.metric)

    def add(self, labels: np.ndarray, prepared: np.ndarray) -> None:
        """Insert or replace rows at ``labels`` (an existing label is updated in place, even if deleted)."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return
        self.segment_for(int(labels.max()))
        for seg, at in self._grouped(labels):
            seg.graph.add(labels[at], prepared[at])
            if seg.rows is not None:
                seg.rows[labels[at] - seg.lo] = prepared[at]
            seg.set_alive(labels[at] - seg.lo, True)
            seg.graph_version += 1

    def mark_deleted(self, label: int) -> None:
        seg = self.segment_of(label)
        if seg is None:
            raise KeyError(f"label {label} is in no segment")
        seg.graph.mark_deleted(label)
        seg.set_alive(np.array([label - seg.lo]), False)

    def discard(self, label: int) -> bool:
        """Delete ``label``'s vector if it holds one (a named vector some points lack); whether it did."""
        seg = self.segment_of(label)
        if seg is None or not seg.alive[label - seg.lo]:
            return False
        self.mark_deleted(label)
        return True

    # Reads ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """The labels holding a vector."""
        return sum(seg.live for seg in self.segments)

    def holds(self, labels: np.ndarray) -> np.ndarray:
        """Whether each of ``labels`` holds a vector here (bool per label)."""
        labels = np.asarray(labels, dtype=np.int64)
        out = np.zeros(len(labels), dtype=bool)
        if len(labels) == 0 or not self.segments:
            return out
        which = np.searchsorted(self._los_array, labels, side="right") - 1
        for i in np.unique(which).tolist():
            if 0 <= i < len(self.segments):
                seg, at = self.segments[i], np.flatnonzero(which == i)
                inside = labels[at] < seg.hi
                out[at[inside]] = seg.alive[labels[at[inside]] - seg.lo]
        return out

    def live_labels(self) -> np.ndarray:
        """Every label holding a vector, ascending."""
        parts = [np.flatnonzero(seg.alive) + seg.lo for seg in self.segments if seg.live]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    @property
    def capacity(self) -> int:
        return sum(seg.graph.capacity for seg in self.segments)

    def vectors(self, labels: np.ndarray | list[int]) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        out = np.empty((len(labels), self.dimension), np.float32)
        for seg, at in self._grouped(labels):
            out[at] = seg.graph.vectors(labels[at]) if seg.rows is None else seg.rows[labels[at] - seg.lo]
        return out

    def knn(self, query: np.ndarray, k: int, ef: int | None = None, allowed: Callable[[int], bool] | None = None,
            quantized: QuantizedSearch | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate k nearest labels and their scores (best first) over every segment
        (``quantized``: how quantized graphs search, Qdrant's ``params.quantization``)."""
        q = self.prepare(query.reshape(1, -1))
        found = [seg.graph.knn_prepared(q, min(k, seg.live), ef, allowed, quantized)
                 for seg in self.segments if seg.live]
        if not found:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if len(found) == 1:
            return found[0]
        labels = np.concatenate([lbl for lbl, _ in found])
        scores = np.concatenate([s for _, s in found])
        order = np.argsort(-scores if self.higher_is_better() else scores, kind="stable")[:k]
        return labels[order], scores[order]

    def exact(self, query: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest among ``labels`` by brute force (chunked)."""
        return exact_search(self, query, labels, k)

    def higher_is_better(self) -> bool:
        """Similarities (cosine, dot product) are better higher, distances (Euclid, Manhattan) lower."""
        return self.metric not in ("l2", "manhattan")


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first, ties in position order (a stable sort of
    the scores at least the k-th best: no full sort of a large chunk)."""
    if len(scores) > 4 * k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)
        return candidates[np.argsort(-scores[candidates], kind="stable")][:k]
    return np.argsort(-scores, kind="stable")[:k]


def exact_search(index: SegmentedIndex, query: np.ndarray, labels: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest among ``labels`` by brute force, reading their vectors in chunks (each
    segment's rows scored where they lie when the labels are sorted and the rows in RAM)."""
    q = index.prepare(query.reshape(1, -1))[0]
    best_labels: list[np.ndarray] = []
    best_scores: list[np.ndarray] = []
    for chunk, data in rows_in_chunks(index, labels):
        s = similarities(index.metric, q[None, :], data)[0]
        top = _best(s, k)
        best_labels.append(chunk[top])
        best_scores.append(s[top])
    if not best_labels:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    all_labels, all_scores = np.concatenate(best_labels), np.concatenate(best_scores)
    order = np.argsort(-all_scores, kind="stable")[:k]
    scores = all_scores[order]
    return all_labels[order].astype(np.int64), (scores if index.higher_is_better() else -scores).astype(np.float32)


def similarities(metric: str, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(len(queries), len(rows))`` exact scores, higher is nearer: the similarity (cosine rows
    prepared, dot product) or the negated distance (Euclid, Manhattan)."""
    if metric == "l2":
        return -np.sqrt(np.maximum(np.square(queries[:, None, :] - rows[None, :, :]).sum(axis=2), 0))
    if metric == "manhattan":
        return -np.abs(queries[:, None, :] - rows[None, :, :]).sum(axis=2)
    if len(queries) == 1:  # one query: a matrix-vector product, as exact search always summed it
        return (rows @ queries[0])[None, :]
    return queries @ rows.T


_CHUNK = 65_536


def rows_in_chunks(index: SegmentedIndex, labels: np.ndarray) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(labels, their rows)`` in chunks: straight from each segment's kept rows when the labels
    are ascending (one gather per segment, no regrouping), else through ``index.vectors``."""
    ascending = len(labels) < 2 or bool(np.all(labels[1:] > labels[:-1]))
    if ascending and all(seg.rows is not None for seg in index.segments):
        bounds = np.searchsorted(labels, index._los_array).tolist() + [len(labels)]  # noqa: SLF001 - same module
        for seg, lo, hi in zip(index.segments, bounds[:-1], bounds[1:], strict=True):
            for start in range(lo, hi, _CHUNK):
                chunk = labels[start:min(hi, start + _CHUNK)]
                assert seg.rows is not None
                yield chunk, seg.rows[chunk - seg.lo]
        return
    for start in range(0, len(labels), _CHUNK):
        chunk = labels[start:start + _CHUNK]
        yield chunk, index.vectors(chunk)
