"""k-nearest-neighbour search over one collection, with payload filters applied inside.

Strategy per query:
- no filter: HNSW (``ef`` = max(ef, k + offset));
- a filter that payload indexes answer (``projections.planner``): the matching labels are known,
  so their number decides. A few (under ``POST_FILTER_SHARE`` of the points and at most
  ``EXACT_ROWS_DIMS`` / dimension of them) are scored exactly from the stored rows (numpy); a
  broad set is answered by HNSW asked for ``k / share`` neighbours, kept when in the set (a
  bitmap: no Python call per visited node); should that leave fewer than k, HNSW with the
  bitmap evaluated inside the search (a C-level call per node), then the exact scan;
- a filter no index narrows: estimate its selectivity on a sample of points. Selective filters (few
  matching points) are answered by an exact scan of the matching points; the others by
  HNSW with the filter evaluated on every visited node (hnswlib's filter callback), so
  the top-k is never cut before filtering. If HNSW returns fewer hits than requested while
  more points match, the exact scan answers instead;
- ``exact=True``: brute force over all (matching) points, the reference for recall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from projections import planner
from projections.collection import Collection
from projections.filters import Filter
from projections.index.quantized import QuantizedSearch
from projections.index.segments import SegmentedIndex
from projections.payload_index import members
from projections.query import matching_labels
from schemas.ids import PointId

EXACT_SCAN_MAX_MATCHES = 5_000  # never scan more matches than this exactly ...
EXACT_SCAN_MAX_SHARE = 0.05     # ... nor a filter that lets more than 5 % through (unless <= 256 match):
EXACT_SCAN_ALWAYS = 256         # HNSW with the filter inside finds those fast (hnswlib's get_items is slow)
_SAMPLE = 512
EXACT_ROWS_DIMS = 2_560_000  # exact scan of indexed matches up to this many components (20,000 x 128-d) ...
POST_FILTER_SHARE = 0.03  # ... when they are under 3 % of the points; else HNSW, then the bitmap
POST_FILTER_MARGIN = 1.5  # HNSW is asked for margin x k / share neighbours before the bitmap keeps k


@dataclass(frozen=True, slots=True)
class Hit:
    id: PointId
    label: int
    score: float


def search(coll: Collection, query: np.ndarray, k: int, *, using: str = "", ef: int | None = None,
           flt: Filter | None = None, exact: bool = False, offset: int = 0,
           quantized: QuantizedSearch | None = None) -> list[Hit]:
    """The best ``k`` hits after ``offset`` by the dense vector ``using`` (``""``: the unnamed one;
    the caller checked it exists); ``quantized`` says how a quantized collection's graphs search
    (Qdrant's ``params.quantization``; ignored by float32 collections)."""
    need = k + offset
    if need <= 0:
        return []
    with coll.lock.read():
        index = coll.dense(using)
        if index is None:
            raise KeyError(f"no dense vector {using!r}")
        space = _Space(coll, index)
        if space.total == 0:
            return []
        labels, scores = _search_locked(space, np.asarray(query, np.float32), need, ef, flt, exact, quantized)
        hits = hits_of(coll, labels, scores)
    return hits[offset:need]


def sparse_search(coll: Collection, using: str, indices: np.ndarray, values: np.ndarray, k: int, *,
                  flt: Filter | None = None, offset: int = 0) -> list[Hit]:
    """The best ``k`` hits after ``offset`` by dot product with the sparse vector ``using``, exact
    (``projections.sparse``): only points sharing an index with the query are hits."""
    need = k + offset
    if need <= 0:
        return []
    with coll.lock.read():
        allowed = None if flt is None else matching_labels(coll, flt)
        hits = hits_of(coll, *coll.sparse[using].search(indices, values, need, allowed))
    return hits[offset:need]


def hits_of(coll: Collection, labels: np.ndarray, scores: np.ndarray) -> list[Hit]:
    """The hits at ``labels`` with their ``scores``, in order (labels of no live point left out);
    call it under the collection's read lock."""
    id_of = coll.id_of
    return [Hit(id_of[lbl], lbl, float(s)) for lbl, s in zip(labels.tolist(), scores.tolist(), strict=True)
            if lbl in id_of]


class _Space:
    """The collection and one of its dense indexes. Points may lack this vector (named vectors, or an
    unnamed one deleted: ``Collection.partial``), then its live labels are the index's own; otherwise
    every point's."""

    def __init__(self, coll: Collection, index: SegmentedIndex) -> None:
        self.coll, self.index = coll, index
        self.partial = coll.partial
        self.total = len(index) if self.partial else len(coll)

    def live(self) -> np.ndarray:
        return self.index.live_labels() if self.partial else self.coll.live_labels()

    def held(self, labels: np.ndarray) -> np.ndarray:
        """Those of ``labels`` whose points hold this vector."""
        return labels[self.index.holds(labels)] if self.partial else labels


def _search_locked(space: _Space, query: np.ndarray, need: int, ef: int | None, flt: Filter | None,
                   exact: bool, quantized: QuantizedSearch | None) -> tuple[np.ndarray, np.ndarray]:
    coll, index = space.coll, space.index
    if flt is None:
        if exact:
            return index.exact(query, space.live(), need)
        labels, scores = index.knn(query, min(need, space.total), ef, quantized=quantized)
        if len(labels) < min(need, space.total):
            return index.exact(query, space.live(), need)
        return labels, scores
    selection = planner.select(coll, flt)
    if selection is not None:
        return _search_among(space, query, need, ef, space.held(selection.matching(coll, flt)), exact, quantized)
    payload_of, id_of = coll.payload_of, coll.id_of
    if exact or _selective(_estimated_matches(coll, flt), space.total):
        return _exact_filtered(space, query, need, flt)

    def allowed(label: int) -> bool:
        pid = id_of.get(label)
        return pid is not None and flt.matches(pid, payload_of.get(label))

    labels, scores = index.knn(query, need, max(ef or index.default_ef, need), allowed, quantized)
    if len(labels) < need:
        return _exact_filtered(space, query, need, flt)
    return labels, scores


def _search_among(space: _Space, query: np.ndarray, need: int, ef: int | None, labels: np.ndarray,
                  exact: bool, quantized: QuantizedSearch | None) -> tuple[np.ndarray, np.ndarray]:
    """The best ``need`` among ``labels`` (the matches of an indexed filter)."""
    coll, index, matches, total = space.coll, space.index, len(labels), space.total
    if matches == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    fast_rows = index.rows_kept or index.engine != "hnswlib"
    if fast_rows:  # a scan of the rows costs O(matches x dimension); HNSW costs about O(k / share)
        few = matches < POST_FILTER_SHARE * total and matches * index.dimension <= EXACT_ROWS_DIMS
    else:
        few = matches <= EXACT_SCAN_ALWAYS
    if exact or few or matches <= need:
        return index.exact(query, labels, need)
    ef = ef or index.default_ef
    wanted = min(total, int(need * POST_FILTER_MARGIN * total / matches) + 10)
    found, scores = index.knn(query, wanted, max(ef, wanted), quantized=quantized)
    keep = members(found, labels)  # labels are sorted: a binary search each, no bitmap of the collection
    if np.count_nonzero(keep) >= need:
        return found[keep][:need], scores[keep][:need]
    allowed = np.zeros(coll.next_label, dtype=bool)
    allowed[labels] = True
    member = cast(Callable[[int], bool], memoryview(cast(Any, allowed)).__getitem__)  # a C call per node
    found, scores = index.knn(query, need, max(ef, need), member, quantized)
    if len(found) < need:
        return index.exact(query, labels, need)
    return found, scores


def _exact_filtered(space: _Space, query: np.ndarray, need: int, flt: Filter) -> tuple[np.ndarray, np.ndarray]:
    return space.index.exact(query, space.held(matching_labels(space.coll, flt)), need)


def _selective(matches: float, total: int) -> bool:
    """Whether a filter is best answered by an exact scan of its matches rather than filtered HNSW."""
    return matches <= EXACT_SCAN_ALWAYS or (
        matches <= EXACT_SCAN_MAX_MATCHES and matches <= EXACT_SCAN_MAX_SHARE * total)


def _estimated_matches(coll: Collection, flt: Filter) -> float:
    """Matching points estimated from a deterministic sample of labels."""
    total = len(coll)
    if total <= _SAMPLE:
        return float(len(matching_labels(coll, flt)))
    rng = np.random.default_rng(total)
    sample = [lbl for lbl in rng.integers(0, coll.next_label, _SAMPLE * 2).tolist() if lbl in coll.id_of][:_SAMPLE]
    if not sample:
        return float(total)
    hits = sum(flt.matches(coll.id_of[lbl], coll.payload_of.get(lbl)) for lbl in sample)
    return total * hits / len(sample)
