"""One HNSW graph (hnswlib): a segment of a collection's index, with scores as Qdrant defines them.

Labels are chosen by the caller (the collection state), never by this class; they need not
be below the graph's capacity (a segment holds a range of a collection's labels). Cosine
collections store unit vectors in an inner-product space: the bytes hnswlib holds are
exactly the normalised float32 the caller computed, so checksums over them are stable.
Scores: cosine similarity and dot product (higher is better), Euclidean distance
(lower is better). hnswlib has no L1 space: Manhattan collections use faiss graphs (``quantized``).

Thread-safety: hnswlib allows concurrent queries, but not queries concurrent with
``add``/``resize``/``mark_deleted``; the caller serialises writers against readers.
hnswlib's search breadth (``ef``) is one field of the whole index, so queries run in
phases of one ``ef`` each (``EfGate``): queries at the same ``ef`` run in parallel, a
query at another ``ef`` waits until the running phase ends.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import hnswlib
import numpy as np

from projections.waiting import before_waiting

_SPACE = {"cosine": "ip", "ip": "ip", "l2": "l2"}


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (zero rows stay zero), float32 C-contiguous."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, np.float32(1e-30)), dtype=np.float32)


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """The float32 rows as an index of ``metric`` stores them (normalised for cosine)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return normalize(vectors) if metric == "cosine" else vectors


class VectorIndex:
    def __init__(self, dimension: int, metric: str, m: int = 16, ef_construction: int = 200, ef: int = 64,
                 capacity: int = 1024, *, seed: int = 100, load_from: Path | None = None) -> None:
        """A new empty index, or (``load_from``) the one hnswlib saved there."""
        self.dimension, self.metric, self.m = dimension, metric, m
        self.ef_construction, self.default_ef = ef_construction, ef
        self._index = hnswlib.Index(space=_SPACE[metric], dim=dimension)
        if load_from is None:
            self._index.init_index(max_elements=max(capacity, 16), M=m, ef_construction=ef_construction,
                                   random_seed=seed)
        else:
            self._index.load_index(str(load_from), max_elements=max(capacity, 16))
        self._index.set_ef(ef)
        self._gate = EfGate(self._index.set_ef)
        self._num_threads = -1

    # Writes ------------------------------------------------------------------------
    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        return prepare(vectors, self.metric)

    def add(self, labels: np.ndarray, prepared: np.ndarray) -> None:
        """Insert or replace rows at ``labels`` (an existing label is updated in place, even if deleted)."""
        if len(labels) == 0:
            return
        capacity = self._index.get_max_elements()
        if self._index.get_current_count() + len(labels) > capacity:
            self._index.resize_index(max(capacity * 2, self._index.get_current_count() + len(labels)))
        self._index.add_items(prepared, labels, num_threads=self._num_threads)

    def mark_deleted(self, label: int, *, missing_ok: bool = False) -> None:
        """Mark ``label`` deleted; with ``missing_ok``, a label already deleted is no error."""
        try:
            self._index.mark_deleted(label)
        except RuntimeError:
            if not missing_ok:
                raise

    # Reads -------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self._index.get_max_elements())

    def vectors(self, labels: np.ndarray | list[int]) -> np.ndarray:
        if len(labels) == 0:
            return np.empty((0, self.dimension), np.float32)
        return np.asarray(self._index.get_items(list(labels), return_type="numpy"), dtype=np.float32)

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every label the graph holds (deleted ones included) and its float32 row, in one copy of
        the graph's memory (``get_items`` builds a Python float per component: 100x slower)."""
        state = self._index.__getstate__()[0]
        count, size = state["cur_element_count"], state["size_data_per_element"]
        memory = state["data_level0"][: count * size].view(np.uint8).reshape(count, size)
        at = state["offset_data"]
        rows = memory[:, at:at + 4 * self.dimension].copy().view(np.float32)
        at = state["label_offset"]
        labels = memory[:, at:at + 8].copy().view(np.uint64).reshape(count).astype(np.int64)
        return labels, rows

    def labels(self) -> list[int]:
        """Every label the graph holds, deleted ones included."""
        return list(self._index.get_ids_list())

    def knn_prepared(self, q: np.ndarray, k: int, ef: int | None = None,
                     allowed: Callable[[int], bool] | None = None,
                     quantized: object = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate k nearest labels and their scores (best first) to the prepared row ``q``
        (shape (1, dimension)); fewer if fewer exist. ``quantized`` (search params of int8
        graphs, ``quantized.QuantizedSearch``) does not apply to a float32 graph.

        ``allowed`` is evaluated inside the graph search, so filtered results are never
        cut to k before filtering.
        """
        ef = max(ef or self.default_ef, k)
        with self._gate.phase(ef):  # hnswlib's ef is index-wide: no query at another ef meanwhile
            while k > 0:
                try:
                    labels, dist = self._index.knn_query(q, k=k, num_threads=1, filter=allowed)
                    return labels[0].astype(np.int64), self.scores(dist[0])
                except RuntimeError:  # fewer than k reachable (small, heavily deleted or filtered)
                    k = k // 2 if k > 8 else k - 1
        return np.empty(0, np.int64), np.empty(0, np.float32)

    def scores(self, distances: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return np.sqrt(np.maximum(distances, 0)).astype(np.float32)
        return (1.0 - distances).astype(np.float32)

    # Persistence -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write hnswlib's file and check its structure: hnswlib's C++ writer ignores write errors
        (a full disk or a file-size limit leaves a short file behind without a word)."""
        self._index.save_index(str(path))
        check_file(path)

    @classmethod
    def load(cls, path: Path, dimension: int, metric: str, m: int, ef_construction: int, ef: int,
             capacity: int) -> VectorIndex:
        return cls(dimension, metric, m, ef_construction, ef, capacity, load_from=path)


class EfGate:
    """Admits queries in phases of one ``ef``: any number at once within a phase, one phase at a time.

    A query joins the running phase if it has the same ``ef`` and nobody waits; otherwise it
    queues, joining the last queued phase of its ``ef`` if that is the tail of the queue.
    Phases start in arrival order (no ``ef`` starves), and ``set_ef`` is called only when a
    phase starts, i.e. while no query runs.
    """

    def __init__(self, set_ef: Callable[[int], None]) -> None:
        self._set_ef = set_ef
        self._cond = threading.Condition()
        self._ef: int | None = None  # the ef hnswlib was last set to here: the running phase's, if any
        self._running = 0
        self._queue: deque[_Phase] = deque()

    @contextmanager
    def phase(self, ef: int) -> Iterator[None]:
        with self._cond:
            if not self._queue and (self._running == 0 or self._ef == ef):
                if self._ef != ef:
                    self._set_ef(ef)
                    self._ef = ef
                self._running += 1
            else:
                before_waiting()  # a never_wait thread queues nowhere and tries elsewhere
                if not self._queue or self._queue[-1].ef != ef:
                    self._queue.append(_Phase(ef))
                waiting = self._queue[-1]
                waiting.size += 1
                self._cond.wait_for(lambda: waiting.started)
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if self._running == 0 and self._queue:
                    following = self._queue.popleft()
                    self._set_ef(following.ef)
                    self._ef, self._running, following.started = following.ef, following.size, True
                    self._cond.notify_all()


class _Phase:
    __slots__ = ("ef", "size", "started")

    def __init__(self, ef: int) -> None:
        self.ef, self.size, self.started = ef, 0, False


_HEADER = struct.Struct("<6QiI3QdQ")  # hnswlib 0.8 saveIndex: offsets, counts, sizes, levels, M, mult, ef_c


def check_file(path: Path) -> None:
    """Raise ``OSError`` unless ``path`` is a complete hnswlib index file.

    The file is the header, the level-0 block (``count`` x ``size_per_element`` bytes), then
    per element a 4-byte length and that many bytes of upper-level links; its size must be
    exactly that. Walks only the elements with upper levels (about 1/M of them).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise OSError(f"{path.name}: {size} bytes, shorter than hnswlib's header (incomplete write)")
        _, _, count, per_element, *_ = _HEADER.unpack(header)
        f.seek(_HEADER.size + count * per_element)
        tail = f.read()
    if _HEADER.size + count * per_element > size or len(tail) % 4:
        raise OSError(f"{path.name}: {size} bytes, too short for {count} elements (incomplete write)")
    words = np.frombuffer(tail, dtype="<u4")
    nonzero = np.flatnonzero(words)  # the length words of elements with upper levels (and their links)
    at, seen = 0, 0
    while seen < count:
        k = int(np.searchsorted(nonzero, at))
        j = int(nonzero[k]) if k < len(nonzero) else len(words)
        if j - at >= count - seen:  # the remaining elements all have empty upper levels
            at, seen = at + count - seen, count
        elif j >= len(words):
            break
        else:
            seen += j - at + 1
            at = j + 1 + int(words[j]) // 4
    if seen < count or at != len(words):
        raise OSError(f"{path.name}: {size} bytes, not the size its {count} elements need (incomplete or damaged)")
