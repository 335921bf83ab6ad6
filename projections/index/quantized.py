"""A segment's graph over int8 codes (faiss ``IndexHNSWSQ``, 8-bit scalar quantizer), rescored
from full-precision rows kept beside it.

Chosen by measurement (``docs/decisions/0003-scalar-quantization-with-faiss.md``). The graph
holds one byte per dimension and its links; the float32 rows live in :class:`FullVectors`:
read on demand from the file the last snapshot wrote, with the rows changed since in RAM. A query
walks the graph with quantized distances for ``k x oversampling`` candidates, then scores
those exactly from the float32 rows and keeps the best ``k`` (Qdrant's ``rescore``).

The quantizer is trained per segment, once it holds :data:`TRAIN_AT` live vectors (on them, in
label order: the same log trains the same quantizer); until then the segment is searched
exactly. faiss's HNSW cannot delete or update in place: a graph entry is an *internal id*;
deleting a label clears its entry's bit in a bitmap every search passes to faiss
(``IDSelectorBitmap``, evaluated in C++), and updating it adds a new entry. Dead entries stay
in the graph until they outnumber the live ones; then the segment's graph is built again
from its live rows.
"""

from __future__ import annotations

import importlib
import math
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class _OnFirstUse:
    """faiss, imported when a faiss graph is first used (0.3 s and 13 MiB a server holding only
    hnswlib graphs does not pay); typed as Any: its SWIG stubs lack most of the module."""

    def __getattr__(self, name: str) -> Any:
        module = importlib.import_module("faiss")
        globals()["faiss"] = module
        return getattr(module, name)


faiss: Any = _OnFirstUse()

TRAIN_AT = 2048
#: The codes a graph walks, by snapshot engine name: int8 (Qdrant's scalar quantization),
#: float16 for float32 collections with ``on_disk: true`` (rows on disk, scores from them), or
#: float32 for Manhattan collections (``faiss-flat``: ``IndexHNSWFlat`` with ``METRIC_L1``, which
#: hnswlib and faiss's scalar quantizer lack; docs/decisions/0008).
ENGINES = {"faiss-sq8": "QT_8bit", "faiss-fp16": "QT_fp16", "faiss-flat": None}
DEFAULT_OVERSAMPLING = 2.0  # measured: rescoring 2k candidates gives recall@10 >= 0.99 (docs/decisions/0003)


@dataclass(frozen=True, slots=True)
class QuantizedSearch:
    """Qdrant's ``params.quantization``: ``ignore`` (search the float32 rows exactly), ``rescore``
    (score the candidates from the float32 rows) and ``oversampling`` (candidates per hit)."""

    ignore: bool = False
    rescore: bool = True
    oversampling: float = DEFAULT_OVERSAMPLING


class RowFile:
    """The float32 rows of an ``.npy`` file a snapshot wrote, read on demand with ``preadv`` straight
    into numpy arrays: the rows stay on disk and in the kernel's page cache, never in the process
    (a memory map would count every page a query touches, and its neighbours, in the process's
    memory). Holding the file open keeps it readable after its snapshot is pruned."""

    def __init__(self, path: Path, rows: int, dimension: int) -> None:
        """``rows``: at most this many (a file holds the rows up to the segment's last one written)."""
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(f)
            self.offset = f.tell()
        if len(shape) != 2 or shape[0] > rows or shape[1] != dimension or fortran or dtype != np.dtype("<f4"):
            raise ValueError(f"{path.name}: {shape} {dtype} rows, expected at most ({rows}, {dimension}) float32")
        self.rows, self.dimension, self.row_bytes = int(shape[0]), dimension, 4 * dimension
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def read(self, local: np.ndarray) -> np.ndarray:
        """The rows at ``local`` (positions in the file), in that order."""
        out = np.empty((len(local), self.dimension), np.float32)
        if not len(local):
            return out
        if int(local.max()) >= self.rows or int(local.min()) < 0:
            raise IndexError(f"rows {local[(local < 0) | (local >= self.rows)][:5].tolist()} are not in the file "
                             f"({self.rows} rows)")
        order = np.argsort(local, kind="stable")
        wanted = local[order]
        rows = np.empty_like(out)
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1  # runs of consecutive rows: one read each
        for a, b in zip([0, *breaks.tolist()], [*breaks.tolist(), len(wanted)], strict=True):
            self._read_into(rows[a:b], int(wanted[a]))
        out[order] = rows
        return out

    def _read_into(self, target: np.ndarray, first: int) -> None:
        view = memoryview(target.data).cast("B")
        at, position = 0, self.offset + first * self.row_bytes
        while at < len(view):
            got = os.preadv(self._fd, [view[at:at + (64 << 20)]], position + at)
            if got <= 0:
                raise OSError(f"rows file ends {len(view) - at} bytes early")
            at += got


class RamRows:
    """The rows of such a file read whole into one array (Qdrant's ``on_disk: false``)."""

    def __init__(self, path: Path, rows: int, dimension: int) -> None:
        self.data = np.load(path, allow_pickle=False)
        if self.data.ndim != 2 or self.data.shape[0] > rows or self.data.shape[1] != dimension \
                or self.data.dtype != np.dtype("<f4"):
            raise ValueError(f"{path.name}: {self.data.shape} {self.data.dtype} rows, expected at most ({rows}, "
                             f"{dimension}) float32")
        self.rows = self.data.shape[0]

    def read(self, local: np.ndarray) -> np.ndarray:
        return np.array(self.data[local], dtype=np.float32)


class FullVectors:
    """The float32 rows of the labels ``[lo, hi)``: those in the file the last snapshot wrote
    (:class:`RowFile`, read on demand; with ``on_disk`` false read whole into RAM, :class:`RamRows`),
    and the rows written since, in RAM (at most what one snapshot covers)."""

    def __init__(self, lo: int, hi: int, dimension: int, on_disk: bool = True) -> None:
        self.lo, self.size, self.dimension, self.on_disk = lo, hi - lo, dimension, on_disk
        self.base: RowFile | RamRows | None = None
        self.overlay: dict[int, np.ndarray] = {}

    def put(self, labels: np.ndarray, rows: np.ndarray) -> None:
        for label, row in zip(labels.tolist(), rows, strict=True):
            self.overlay[label - self.lo] = np.array(row, dtype=np.float32)

    def get(self, labels: np.ndarray) -> np.ndarray:
        local = np.asarray(labels, dtype=np.int64) - self.lo
        if self.base is not None and len(local) and int(local.max()) < self.base.rows:
            out = self.base.read(local)
        else:  # rows past the file's end were written since (in RAM)
            out = np.zeros((len(local), self.dimension), np.float32)
            inside = local < self.base.rows if self.base is not None else np.zeros(len(local), dtype=bool)
            if self.base is not None and inside.any():
                out[inside] = self.base.read(local[inside])
        if self.overlay:
            for i, at in enumerate(local.tolist()):
                row = self.overlay.get(at)
                if row is not None:
                    out[i] = row
        return out

    def capture(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Every row as of now, up to the last one written (to write), and the RAM rows it
        includes (for :meth:`adopt`)."""
        held = self.base.rows if self.base is not None else 0
        rows = max(held, max(self.overlay) + 1 if self.overlay else 0)
        full = np.zeros((rows, self.dimension), np.float32)
        if self.base is not None and held:
            full[:held] = self.base.read(np.arange(held))
        for at, row in self.overlay.items():
            full[at] = row
        return full, dict(self.overlay)

    def open(self, path: Path) -> None:
        self.base = (RowFile if self.on_disk else RamRows)(path, self.size, self.dimension)

    def adopt(self, path: Path, captured: dict[int, np.ndarray]) -> None:
        """Read from ``path`` (the file the captured rows were written to) and drop from RAM the
        captured rows not written again since."""
        self.open(path)
        for at, row in captured.items():
            if self.overlay.get(at) is row:
                del self.overlay[at]


class QuantizedGraph:
    """The quantized graph of one segment, with the interface of ``hnsw.VectorIndex``.

    ``engine`` names the codes (:data:`ENGINES`): ``faiss-sq8`` for an int8 collection, whose
    searches follow Qdrant's ``params.quantization``; ``faiss-fp16`` for a float32 collection whose
    vectors are ``on_disk``: its searches always rescore from the rows, as a float32 graph would score;
    ``faiss-flat`` for a Manhattan collection: the graph holds the float32 rows and its distances are
    the scores (L1), never rescored."""

    def __init__(self, dimension: int, metric: str, m: int, ef_construction: int, ef: int, lo: int, hi: int,
                 on_disk: bool = True, engine: str = "faiss-sq8") -> None:
        self.engine = engine
        self.dimension, self.metric, self.m = dimension, metric, m
        self.ef_construction, self.default_ef = ef_construction, ef
        self.lo, self.hi = lo, hi
        self.full = FullVectors(lo, hi, dimension, on_disk)
        self.index: Any = None  # faiss.IndexHNSWSQ; None until trained
        self.label_of = np.zeros(0, np.int64)  # internal id -> label; -1: dead (deleted or replaced)
        self.internal_of = np.full(hi - lo, -1, np.int64)  # label - lo -> internal id; -1: none
        self._bits = np.zeros(0, np.uint8)  # live internal ids, a bitmap for faiss (bit i of byte i >> 3)

    # Writes --------------------------------------------------------------------------
    def add(self, labels: np.ndarray, prepared: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        self.full.put(labels, prepared)
        if self.index is None:
            self.internal_of[labels - self.lo] = -2  # live, not in a graph yet (searched exactly)
            live = np.flatnonzero(self.internal_of != -1) + self.lo
            if len(live) >= TRAIN_AT:
                self._train(live)
            return
        self._retire(labels)
        self._append(labels, prepared)
        dead = int(np.count_nonzero(self.label_of < 0))
        if dead > max(len(self.label_of) - dead, TRAIN_AT):
            self._compact()

    def _compact(self) -> None:
        """Build the graph again from the live rows once dead entries (deleted or replaced) outnumber
        the live ones: faiss's HNSW cannot remove an entry, and a segment updated over and over
        would otherwise grow without bound. The same log compacts at the same points."""
        live = np.flatnonzero(self.internal_of >= 0) + self.lo
        self.index, self.label_of, self._bits = None, np.zeros(0, np.int64), np.zeros(0, np.uint8)
        self._train(live)

    def _train(self, live: np.ndarray) -> None:
        rows = self.full.get(live)
        space = {"l2": faiss.METRIC_L2, "manhattan": faiss.METRIC_L1}.get(self.metric, faiss.METRIC_INNER_PRODUCT)
        if self.engine == "faiss-flat":
            index = faiss.IndexHNSWFlat(self.dimension, self.m, space)
        else:  # faiss's scalar quantizer knows L2 and inner product only (it aborts the process on L1)
            codes = ENGINES[self.engine]
            assert codes is not None
            index = faiss.IndexHNSWSQ(self.dimension, getattr(faiss.ScalarQuantizer, codes), self.m, space)
        index.hnsw.efConstruction = self.ef_construction
        index.train(rows)
        self.index = index
        self.internal_of[:] = -1
        self._append(live, rows)

    def _append(self, labels: np.ndarray, rows: np.ndarray) -> None:
        assert self.index is not None
        first = self.index.ntotal
        self.index.add(np.ascontiguousarray(rows, dtype=np.float32))
        ids = np.arange(first, first + len(labels), dtype=np.int64)
        self.label_of = np.concatenate([self.label_of, labels])
        self.internal_of[labels - self.lo] = ids
        bits = np.zeros((first + len(labels) + 7) // 8, np.uint8)
        bits[:len(self._bits)] = self._bits
        np.bitwise_or.at(bits, ids >> 3, (1 << (ids & 7)).astype(np.uint8))
        self._bits = bits

    def _retire(self, labels: np.ndarray) -> None:
        """Clear the graph entries of ``labels`` (those that have one)."""
        ids = self.internal_of[labels - self.lo]
        ids = ids[ids >= 0]
        if len(ids):
            self.label_of[ids] = -1
            np.bitwise_and.at(self._bits, ids >> 3, (~(1 << (ids & 7))).astype(np.uint8))
        self.internal_of[labels - self.lo] = -1

    def mark_deleted(self, label: int, *, missing_ok: bool = False) -> None:
        if self.internal_of[label - self.lo] == -1:
            if not missing_ok:
                raise RuntimeError(f"label {label} is not in the graph")
            return
        self._retire(np.array([label], np.int64))

    # Reads ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.hi - self.lo

    def labels(self) -> list[int]:
        return (np.flatnonzero(self.internal_of != -1) + self.lo).tolist()

    def vectors(self, labels: np.ndarray | list[int]) -> np.ndarray:
        return self.full.get(np.asarray(labels, dtype=np.int64))

    def knn_prepared(self, q: np.ndarray, k: int, ef: int | None = None,
                     allowed: Callable[[int], bool] | None = None,
                     search: QuantizedSearch | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.engine == "faiss-flat":  # float32 codes: faiss's distances are the scores
            search = QuantizedSearch(ignore=search is not None and search.ignore, rescore=False)
        elif search is None or self.engine != "faiss-sq8":
            search = QuantizedSearch()
        if self.index is None or search.ignore:
            live = np.flatnonzero(self.internal_of != -1) + self.lo
            if allowed is not None:
                live = np.array([lbl for lbl in live.tolist() if allowed(lbl)], np.int64)
            return self._exact(q[0], live, k)
        want = max(k, math.ceil(k * search.oversampling)) if search.rescore else k
        bitmap = faiss.IDSelectorBitmap(self.index.ntotal, faiss.swig_ptr(self._bits))
        selector = bitmap
        if allowed is not None:
            label_of = self.label_of
            callback = faiss.PyCallbackIDSelector(lambda i: allowed(int(label_of[i])))
            selector = faiss.IDSelectorAnd(bitmap, callback)
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef or self.default_ef, want))
        faiss.omp_set_num_threads(1)  # this thread's searches: one query gains nothing from OpenMP's spinning threads
        dist, ids = self.index.search(q, want, params=params)
        found = ids[0][ids[0] >= 0]
        labels = self.label_of[found]
        if search.rescore:
            return self._exact(q[0], labels, k)
        kept = dist[0][ids[0] >= 0]
        scores = np.sqrt(np.maximum(kept, 0)) if self.metric == "l2" else kept  # faiss's L1 is not squared
        return labels[:k], scores[:k].astype(np.float32)

    def _exact(self, q: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(labels):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows = self.full.get(labels)
        if self.metric in ("l2", "manhattan"):
            dist = np.sqrt(np.maximum(((rows - q) ** 2).sum(axis=1), 0)) if self.metric == "l2" \
                else np.abs(rows - q).sum(axis=1)
            order = np.argsort(dist, kind="stable")[:k]
            return labels[order], dist[order].astype(np.float32)
        scores = rows @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return labels[order], scores[order].astype(np.float32)

    # Persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The graph (faiss's format; an empty file before training)."""
        if self.index is not None:
            faiss.write_index(self.index, str(path))
        else:
            path.write_bytes(b"")

    def save_map(self, path: Path) -> None:
        """The label of each internal id (-1: dead), or before training the live labels."""
        held = self.label_of if self.index is not None else np.flatnonzero(self.internal_of != -1) + self.lo
        with open(path, "wb") as out:
            np.save(out, held, allow_pickle=False)

    @classmethod
    def load(cls, path: Path, map_path: Path, vectors_path: Path, dimension: int, metric: str, m: int,
             ef_construction: int, ef: int, lo: int, hi: int, on_disk: bool = True,
             engine: str = "faiss-sq8") -> QuantizedGraph:
        graph = cls(dimension, metric, m, ef_construction, ef, lo, hi, on_disk, engine)
        graph.full.open(vectors_path)
        label_of = np.load(map_path, allow_pickle=False)
        if path.stat().st_size:
            graph.index = faiss.read_index(str(path))
            if graph.index.ntotal != len(label_of):
                raise ValueError(f"{path.name}: {graph.index.ntotal} entries, its map {len(label_of)}")
            graph.label_of = label_of.astype(np.int64)
            live = np.flatnonzero(label_of >= 0)
            graph.internal_of[label_of[live] - lo] = live
            graph._bits = np.zeros((len(label_of) + 7) // 8, np.uint8)
            np.bitwise_or.at(graph._bits, live >> 3, (1 << (live & 7)).astype(np.uint8))
        else:
            graph.internal_of[label_of - lo] = -2
        return graph
