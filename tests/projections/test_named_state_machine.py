"""A stateful property test of named dense and sparse vectors through the real apply path.

Random programs of upserts (each point carrying any subset of the vectors), update-vectors
(of existing and missing points), delete-vectors and point deletions are encoded, decoded and
applied to a live ``ProjectionState``; snapshots are written and restarts load the newest one
and replay the log after it. A small model (id -> {name: vector}) predicts every outcome.
Asserted after every step: the state holds exactly the model's vectors per name (dense rows
exactly, normalised for cosine; sparse vectors sorted by index), ``has_vector`` agrees, a fresh
replay of the whole log is byte-for-byte the live state, exact dense search by each name gives
brute force's top scores over the points holding that vector, and sparse search (with IDF on
one vector) gives the model's dot products, only for points sharing an index with the query.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from consumers import snapshots
from projections.changes import DeletePoints, PutPoints
from projections.collection import point_checksum
from projections.errors import Rejected
from projections.search import search, sparse_search
from projections.state import ProjectionState
from schemas import events as ev
from schemas.codec import decode, encode
from schemas.ids import catalog_key

DENSE = {"a": (3, "cosine"), "b": (2, "l2")}
SPARSE = {"s": True, "t": False}  # name -> idf
VECTORS = json.dumps({n: {"size": d, "metric": m} for n, (d, m) in DENSE.items()}, sort_keys=True)
SPARSE_JSON = json.dumps({n: ({"modifier": "idf"} if idf else {}) for n, idf in SPARSE.items()}, sort_keys=True)
Vector = Any  # np.ndarray (dense) or (indices tuple, values tuple) (sparse)


def _meta() -> ev.EventMeta:
    return ev.EventMeta.new("c", "p")


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _blocks(points: list[dict[str, Vector]]) -> tuple[tuple[ev.NamedRows, ...], tuple[ev.SparseRows, ...]]:
    named, sparse = [], []
    for name, (dim, _) in DENSE.items():
        at = [i for i, p in enumerate(points) if name in p]
        if at:
            rows = np.array([points[i][name] for i in at], np.float32).reshape(len(at), dim)
            named.append(ev.NamedRows(name, np.array(at, np.int64), rows))
    for name in SPARSE:
        at = [i for i, p in enumerate(points) if name in p]
        if at:
            pairs = [points[i][name] for i in at]
            offsets = np.zeros(len(at) + 1, np.int64)
            offsets[1:] = np.cumsum([len(r[0]) for r in pairs])
            sparse.append(ev.SparseRows(name, np.array(at, np.int64), offsets,  # each row's pairs unsorted
                                        np.array([x for r in pairs for x in r[0][::-1]], np.uint32),
                                        np.array([x for r in pairs for x in r[1][::-1]], np.float32)))
    return tuple(named), tuple(sparse)


vectors_of = st.fixed_dictionaries({}, optional={
    "a": st.lists(st.integers(-3, 3).map(float), min_size=3, max_size=3).filter(any),
    "b": st.lists(st.integers(-3, 3).map(float), min_size=2, max_size=2),
    "s": st.dictionaries(st.integers(0, 12), st.integers(1, 5).map(float), max_size=4),
    "t": st.dictionaries(st.integers(0, 12), st.integers(1, 5).map(float), max_size=4),
})


def _normal(raw: dict[str, Any]) -> dict[str, Vector]:
    out: dict[str, Vector] = {}
    for name, value in raw.items():
        if name in DENSE:
            out[name] = np.array(value, np.float32)
        else:
            keys = sorted(value)
            out[name] = (tuple(keys), tuple(float(value[k]) for k in keys))
    return out


def _observe(state: ProjectionState) -> dict[Any, Any]:
    coll = state.get("c")
    assert coll is not None
    return {pid: coll.vector_bytes(label) for pid, label in coll.label_of.items()}


class NamedVectors(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="named-sm-"))
        self.log: list[bytes] = []
        self.state = ProjectionState(segment_bytes=16 * 4 * 3)  # 16-label segments: several of them
        self.model: dict[int, dict[str, Vector]] = {}
        self.checksums: dict[str, str] = {}
        self._submit(ev.CollectionCreated(_meta(), 0, "cosine", vectors=VECTORS, sparse_vectors=SPARSE_JSON), None)

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _submit(self, event: ev.Event, expect: int | None) -> None:
        value = encode(event)
        self.log.append(value)
        try:
            changes = self.state.apply(decode(value), len(self.log) - 1)
            outcome = None
        except Rejected as exc:
            changes, outcome = [], exc.status
        for change in changes:  # the catalog rows: the checksum of each changed point
            if isinstance(change, PutPoints):
                self.checksums.update({row.key: row.checksum for row in change.rows})
            elif isinstance(change, DeletePoints):
                for key in change.keys:
                    self.checksums.pop(key, None)
        assert outcome == expect, (type(event).__name__, outcome, expect)

    @rule(batch=st.dictionaries(st.integers(0, 40), vectors_of, min_size=1, max_size=6))
    def upsert(self, batch: dict[int, dict[str, Any]]) -> None:
        ids = tuple(batch)
        points = [_normal(batch[i]) for i in ids]
        named, sparse = _blocks(points)
        self._submit(ev.VectorsUpserted(_meta(), ids, np.empty((len(ids), 0), np.float32), (None,) * len(ids),
                                        named, sparse), None)
        for pid, vectors in zip(ids, points, strict=True):
            self.model[pid] = vectors

    @rule(ids=st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True), data=st.data())
    def update_vectors(self, ids: list[int], data: st.DataObject) -> None:
        points = [_normal(data.draw(vectors_of)) for _ in ids]
        named, sparse = _blocks(points)
        missing = any(pid not in self.model for pid in ids)
        self._submit(ev.PointVectorsUpdated(_meta(), tuple(ids), named, sparse), 404 if missing else None)
        if not missing:
            for pid, vectors in zip(ids, points, strict=True):
                self.model[pid].update(vectors)

    @rule(ids=st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True),
          names=st.lists(st.sampled_from([*DENSE, *SPARSE]), min_size=1, max_size=3, unique=True))
    def delete_vectors(self, ids: list[int], names: list[str]) -> None:
        self._submit(ev.PointVectorsDeleted(_meta(), tuple(ids), tuple(names)), None)
        for pid in ids:
            for name in names:
                self.model.get(pid, {}).pop(name, None)

    @rule(name=st.sampled_from(["nope", ""]))
    def delete_an_unknown_vector(self, name: str) -> None:
        self._submit(ev.PointVectorsDeleted(_meta(), (1,), (name,)), 400)

    @rule(ids=st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True))
    def delete_points(self, ids: list[int]) -> None:
        self._submit(ev.VectorsDeleted(_meta(), tuple(ids)), None)
        for pid in ids:
            self.model.pop(pid, None)

    @rule()
    def snapshot_and_restart(self) -> None:
        snapshots.write_snapshot(self.state, {0: len(self.log)}, self.tmp, "t")
        loaded = snapshots.load_newest(self.tmp)
        assert loaded is not None
        assert _observe(loaded.state) == _observe(self.state)
        self.state = loaded.state

    @invariant()
    def matches_the_model(self) -> None:
        coll = self.state.get("c")
        assert coll is not None
        assert set(coll.label_of) == set(self.model)
        for pid, vectors in self.model.items():
            label = coll.label_of[pid]
            for name, (_, metric) in DENSE.items():
                assert coll.has_vector(pid, name) == (name in vectors)
                if name in vectors:
                    want = _unit(vectors[name]) if metric == "cosine" else vectors[name]
                    assert np.array_equal(coll.named[name].vectors([label])[0], want.astype(np.float32))
            for name in SPARSE:
                held = coll.sparse[name].get(label)
                assert (held is not None) == (name in vectors) == coll.has_vector(pid, name)
                if held is not None:
                    assert (tuple(held[0].tolist()), tuple(held[1].tolist())) == vectors[name]

    @invariant()
    def the_catalog_checksums_are_the_vectors(self) -> None:
        """What apply told the catalog is what verify recomputes from the indexes."""
        coll = self.state.get("c")
        assert coll is not None
        assert self.checksums == {catalog_key(pid): point_checksum(coll.vector_bytes(label), None)
                                  for pid, label in coll.label_of.items()}

    @invariant()
    def a_replay_is_the_same(self) -> None:
        fresh = ProjectionState(segment_bytes=16 * 4 * 3)
        for offset, value in enumerate(self.log):
            with contextlib.suppress(Rejected):
                fresh.apply(decode(value), offset)
        assert _observe(fresh) == _observe(self.state)

    @precondition(lambda self: bool(self.model))
    @invariant()
    def searches_agree_with_brute_force(self) -> None:
        coll = self.state.get("c")
        assert coll is not None
        rng = np.random.default_rng(len(self.log))
        for name, (dim, metric) in DENSE.items():
            held = {pid: v[name] for pid, v in self.model.items() if name in v}
            q = rng.normal(size=dim).astype(np.float32)
            hits = search(coll, q, 5, using=name, exact=True)
            if metric == "cosine":
                truth = sorted((float(_unit(v) @ _unit(q)) for v in held.values()), reverse=True)[:5]
            else:
                truth = sorted(float(np.linalg.norm(v - q)) for v in held.values())[:5]
            assert {h.id for h in hits} <= set(held) and len(hits) == len(truth)
            assert np.allclose([h.score for h in hits], truth, atol=1e-4)
        for name, idf in SPARSE.items():
            terms = {pid: dict(zip(*v[name], strict=True)) for pid, v in self.model.items() if name in v}
            query = {0: 1.0, 3: 2.0, 7: 0.5, 11: 1.5}
            weights = dict(query)
            if idf:
                n = len(terms)
                for term in weights:
                    df = sum(term in v for v in terms.values())
                    weights[term] *= float(np.log((n - df + 0.5) / (df + 0.5) + 1))
            sums: dict[Any, float] = {pid: sum(weights[t] * v[t] for t in weights if t in v) for pid, v in terms.items()
                    if set(v) & set(weights)}
            hits = sparse_search(coll, name, np.array(list(query), np.uint32), np.array(list(query.values()),
                                                                                         np.float32), 50)
            assert {h.id for h in hits} == set(sums)
            for h in hits:
                assert np.isclose(h.score, sums[h.id], rtol=1e-5, atol=1e-6)


NamedVectors.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_named_vectors = NamedVectors.TestCase
