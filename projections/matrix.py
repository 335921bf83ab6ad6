"""Qdrant's distance matrix: a random sample of the points a filter matches, and for each sampled
point its nearest among the sample (itself left out).

As Qdrant (``lib/collection/src/collection/distance_matrix.rs``) and qdrant-client's local mode:
the sample holds only points with the vector ``using``; fewer than two sampled points give an
empty matrix; the sampled ids come sorted in Qdrant's id order (integers, then strings); each row
is the point's ``limit`` nearest among the other sampled points, best first, scored with the
vector's metric as searches score (cosine and dot product higher is better, Euclid and Manhattan
distances lower is better; sparse vectors by dot product). Rows are scored exactly: a sample is
small, and exact scores are what a search over a handful of allowed points gives anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from projections import query as reads
from projections.collection import Collection
from projections.filters import Filter
from projections.payload_index import members
from projections.search import Hit, hits_of
from schemas.ids import PointId, id_order


@dataclass(frozen=True)
class Matrix:
    """The sampled ids (in id order) and, per sampled id, its nearest sampled points."""

    ids: list[PointId]
    nearest: list[list[Hit]]


def distance_matrix(coll: Collection, flt: Filter | None, sample: int, limit: int, using: str) -> Matrix:
    """The matrix of up to ``sample`` points ``flt`` matches that hold ``using`` (a name the
    collection has), ``limit`` nearest per point; from one state of the collection."""
    with reads.reading(coll):
        labels = reads.matching_labels(coll, flt)
        sparse = coll.sparse.get(using)
        index = None if sparse is not None else coll.dense(using)
        if sparse is not None:
            labels = labels[members(labels, sparse.labels())]
        elif coll.has_named:
            assert index is not None
            labels = labels[index.holds(labels)]
        picked = labels[np.random.default_rng().permutation(len(labels))[:sample]]
        if len(picked) < 2:
            return Matrix([], [])
        id_of = coll.id_of
        picked = np.asarray(sorted(picked.tolist(), key=lambda label: id_order(id_of[label])), np.int64)
        among = np.sort(picked)
        rows: list[list[Hit]] = []
        for label in picked.tolist():
            if sparse is not None:
                row = sparse.get(label)
                assert row is not None
                found, scores = sparse.search(*row, limit + 1, among)
            else:
                assert index is not None
                found, scores = index.exact(index.vectors([label])[0], among, limit + 1)
            hits = hits_of(coll, found, scores)
            mine = [i for i, hit in enumerate(hits) if hit.label == label]
            if mine:
                del hits[mine[0]]
            rows.append(hits[:limit])
        return Matrix([id_of[label] for label in picked.tolist()], rows)
