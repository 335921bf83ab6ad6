"""The sparse vector index against its definitions, computed the slow way, and against Qdrant.

Random programs of writes (put, batch put, remove, re-put of the same label, empty vectors,
labels reused) and reads (search with and without an ``allowed`` filter, ``k`` past the hits,
scores of any labels, a snapshot restored mid-program, whole or in its older form) run on
:class:`SparseIndex` and on a dict of vectors, with the default thresholds and with thresholds so
small that every write flushes, merges, rewrites and compacts. Values are multiples of 1/4, so the
dot products are exact and the rankings (ties by lower label) must agree exactly; with IDF the
model sums the same float64 products in the same (ascending index) order, so they agree exactly too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient, models

from projections.sparse import DEFAULT_TUNING, SparseIndex, Tuning

TINY = Tuning(flush_labels=3, flush_entries=8, fanout=2, rewrite_min=1, stale_min=1, stale_share=0.1, sort_chunk=5,
              prune_min=1)
SMALL = Tuning(flush_labels=8, flush_entries=40, fanout=3, rewrite_min=16, stale_min=32, stale_share=0.25,
               sort_chunk=64, prune_min=1)
TUNINGS = {"default": DEFAULT_TUNING, "tiny": TINY, "small": SMALL}
FORWARD = ("labels", "offsets", "indices", "values")  # the columns of older snapshots
LABELS = 24
TERMS = 12

Vector = tuple[np.ndarray, np.ndarray]


# The definitions, the slow way -------------------------------------------------------------
def weights_of(model: dict[int, Vector], query: Vector, idf: bool) -> dict[int, float]:
    """index -> weight: the value, times ln((N - df + 0.5) / (df + 0.5) + 1) with IDF."""
    out = {}
    for term, value in zip(query[0].tolist(), query[1].astype(np.float32).tolist(), strict=True):
        if idf:
            df = sum(term in set(indices.tolist()) for indices, _ in model.values())
            value *= math.log((len(model) - df + 0.5) / (df + 0.5) + 1)
        out[term] = value
    return out


def score_of(vector: Vector | None, weights: dict[int, float]) -> tuple[float, bool]:
    """The dot product in float64, summed in ascending index order, and whether any index is shared."""
    if vector is None:
        return 0.0, False
    total, overlap = 0.0, False
    for term, value in sorted(zip(vector[0].tolist(), vector[1].tolist(), strict=True)):
        if term in weights:
            total += value * weights[term]
            overlap = True
    return total, overlap


def expected_search(model: dict[int, Vector], query: Vector, k: int, idf: bool,
                    allowed: np.ndarray | None) -> list[tuple[int, np.float32]]:
    weights = weights_of(model, query, idf)
    hits = []
    for label, vector in model.items():
        if allowed is not None and label not in set(allowed.tolist()):
            continue
        total, overlap = score_of(vector, weights)
        if overlap:
            hits.append((label, np.float32(total)))
    hits.sort(key=lambda hit: (-hit[1], hit[0]))
    return hits[:max(k, 0)]


def assert_search(index: SparseIndex, model: dict[int, Vector], query: Vector, k: int,
                  allowed: np.ndarray | None) -> None:
    labels, scores = index.search(query[0], query[1], k, allowed)
    assert labels.dtype == np.int64 and scores.dtype == np.float32
    want = expected_search(model, query, k, index.idf, allowed)
    assert labels.tolist() == [label for label, _ in want]
    np.testing.assert_allclose(scores, [score for _, score in want], rtol=1e-5, atol=1e-7)


def assert_scores(index: SparseIndex, model: dict[int, Vector], query: Vector, labels: np.ndarray) -> None:
    scores, overlap = index.scores(query[0], query[1], labels)
    assert scores.dtype == np.float32 and overlap.dtype == bool and scores.shape == overlap.shape == labels.shape
    weights = weights_of(model, query, index.idf)
    want = [score_of(model.get(label), weights) for label in labels.tolist()]
    assert overlap.tolist() == [over for _, over in want]
    np.testing.assert_allclose(scores, [total for total, _ in want], rtol=1e-5, atol=1e-7)


def assert_holds(index: SparseIndex, model: dict[int, Vector]) -> None:
    assert len(index) == len(model)
    assert index.labels().tolist() == sorted(model)
    assert index.labels().dtype == np.int64
    for label in range(LABELS + 2):
        got, want = index.get(label), model.get(label)
        assert (label in index) == (want is not None)
        if want is None:
            assert got is None
        else:
            assert got is not None and got[0].dtype == np.uint32 and got[1].dtype == np.float32
            assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def canonical(indices: list[int], values: list[float]) -> Vector:
    order = np.argsort(indices, kind="stable")
    return np.asarray(indices, np.uint32)[order], np.asarray(values, np.float32)[order]


# Programs ---------------------------------------------------------------------------------
values = st.sampled_from([-1.5, -1.0, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0])


@st.composite
def vectors(draw: Any, min_size: int = 0) -> tuple[list[int], list[float]]:
    """A sparse vector in a random order (indices unique), sometimes empty; some far past the small ones."""
    terms = draw(st.lists(st.one_of(st.integers(0, TERMS), st.just(4_000_000_000)), min_size=min_size,
                          max_size=6, unique=True))
    return terms, [draw(values) for _ in terms]


labels_ = st.integers(0, LABELS)
allowed_ = st.one_of(st.none(), st.lists(st.integers(-2, LABELS + 3), max_size=LABELS, unique=True)
                     .map(lambda xs: np.asarray(sorted(xs), np.int64)))
steps = st.one_of(
    st.tuples(st.just("put"), labels_, vectors()),
    st.tuples(st.just("put"), labels_, vectors()),
    st.tuples(st.just("put_many"), st.lists(st.tuples(labels_, vectors()), max_size=12,
                                            unique_by=lambda row: row[0])),
    st.tuples(st.just("remove"), st.integers(0, LABELS + 2)),
    st.tuples(st.just("search"), vectors(min_size=1), st.integers(0, LABELS + 5), allowed_),
    st.tuples(st.just("scores"), vectors(), st.lists(st.integers(-1, LABELS + 3), max_size=10)),
    st.tuples(st.just("restore")),
    st.tuples(st.just("restore_forward")),
)


@pytest.mark.parametrize("tuning", TUNINGS.values(), ids=TUNINGS.keys())
@pytest.mark.parametrize("idf", [False, True], ids=["dot", "idf"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(steps, max_size=60))
def test_index_agrees_with_its_definition(program: list[tuple[Any, ...]], idf: bool, tuning: Tuning) -> None:
    """Also against ``twin``, the index never restored: a snapshot restored whole must leave the
    same state (columns) after the same writes; one restored from the forward store alone, the
    same vectors."""
    index, twin = SparseIndex(idf, tuning), SparseIndex(idf, tuning)
    model: dict[int, Vector] = {}
    rebuilt = False
    for step in program:
        kind, version, changed = step[0], index.version, False
        if kind in ("put", "put_many", "remove"):
            write(twin, step)
            changed = write(index, step)
        if kind == "put":
            _, label, (terms, weights) = step
            model[label] = canonical(terms, weights)
        elif kind == "put_many":
            model.update({label: canonical(terms, weights) for label, (terms, weights) in step[1]})
        elif kind == "remove":
            assert changed == (step[1] in model)
            model.pop(step[1], None)
        elif kind == "search":
            _, (terms, weights), k, allowed = step
            assert_search(index, model, canonical(terms, weights), k, allowed)
        elif kind == "scores":
            _, (terms, weights), labels = step
            assert_scores(index, model, canonical(terms, weights), np.asarray(labels, np.int64))
        elif kind == "restore":
            columns = index.columns()
            index = SparseIndex.restore(columns, idf, tuning)
            assert listed(index.columns()) == listed(columns)
        else:
            columns = {name: a for name, a in index.columns().items() if name in FORWARD}
            index = SparseIndex.restore(columns, idf, tuning)
            assert listed(index.columns(), FORWARD) == listed(columns)
            rebuilt = True
        if kind not in ("restore", "restore_forward"):
            assert (index.version > version) == changed  # a snapshot rewrites the index exactly when it changed
    assert_holds(index, model)
    assert_search(index, model, canonical(list(range(TERMS + 1)), [1.0] * (TERMS + 1)), LABELS + 1, None)
    assert listed(index.columns(), FORWARD if rebuilt else None) == listed(twin.columns(), FORWARD if rebuilt else None)


def write(index: SparseIndex, step: tuple[Any, ...]) -> bool:
    """Apply a put, put_many or remove step; whether it changed the index."""
    if step[0] == "put":
        _, label, (terms, weights) = step
        index.put(label, np.asarray(terms, np.int64), np.asarray(weights, np.float32))
        return True
    if step[0] == "put_many":
        rows = step[1]
        lens = [len(terms) for _, (terms, _) in rows]
        index.put_many(np.asarray([label for label, _ in rows], np.int64), np.concatenate([[0], np.cumsum(lens)]),
                       np.asarray([t for _, (terms, _) in rows for t in terms], np.int64),
                       np.asarray([w for _, (_, ws) in rows for w in ws], np.float32))
        return bool(rows)
    return index.remove(step[1])


def listed(columns: dict[str, np.ndarray], names: tuple[str, ...] | None = None) -> dict[str, tuple[str, list[Any]]]:
    """The columns (or those ``names`` of them) comparable with ``==``: dtype and values."""
    return {name: (str(a.dtype), a.tolist()) for name, a in columns.items() if names is None or name in names}


def test_random_floats_at_a_larger_scale() -> None:
    """3,000 labels of random float vectors, rewritten and removed in batches and one at a time
    with small thresholds (so segments flush, merge and get rewritten), against a dense brute force."""
    rng = np.random.default_rng(7)
    terms, count = 300, 3_000
    index = SparseIndex(True, SMALL)
    dense = np.zeros((count, terms))
    held = np.zeros(count, bool)
    touched = np.zeros((count, terms), bool)

    def put(label: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = rng.choice(terms, int(rng.integers(0, 30)), replace=False)
        vals = rng.standard_normal(len(chosen)).astype(np.float32)
        dense[label], touched[label] = 0, False
        dense[label, chosen], touched[label, chosen], held[label] = vals, True, True
        return chosen, vals

    for round_ in range(6):
        labels = rng.choice(count, 800, replace=False)
        rows = [put(int(label)) for label in labels]
        index.put_many(labels, np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])]),
                       np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]))
        for label in rng.choice(count, 200, replace=False).tolist():
            if rng.random() < 0.4:
                index.remove(label)
                dense[label], touched[label], held[label] = 0, False, False
            else:
                index.put(label, *put(label))
        for _ in range(5):
            q = rng.choice(terms, 25, replace=False)
            qv = rng.random(25).astype(np.float32)
            df = touched[:, q].sum(0)
            w = qv * np.log((held.sum() - df + 0.5) / (df + 0.5) + 1)
            np.testing.assert_allclose(index.query_weights(q, qv)[1][np.argsort(np.argsort(q))], w, rtol=1e-9)
            want = dense[:, q] @ w
            overlap = touched[:, q].sum(1) > 0
            allowed = np.sort(rng.choice(count, 40 if round_ % 2 else 2_000, replace=False))
            for flt in (None, allowed):
                got, scores = index.search(q, qv, 50, flt)
                ok = overlap if flt is None else overlap & np.isin(np.arange(count), flt)
                best = np.sort(want[ok])[::-1][:50]
                np.testing.assert_allclose(scores, best, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(scores, want[got], rtol=1e-5, atol=1e-6)
                assert ok[got].all()
            sample = rng.integers(-5, count + 5, 500)
            scores, over = index.scores(q, qv, sample)
            inside = (sample >= 0) & (sample < count)
            assert over.tolist() == np.where(inside, overlap[np.clip(sample, 0, count - 1)], False).tolist()
            np.testing.assert_allclose(scores, np.where(inside, want[np.clip(sample, 0, count - 1)], 0), atol=1e-5)
    columns = index.columns()
    for restored in (SparseIndex.restore(columns, True, SMALL),
                     SparseIndex.restore({name: columns[name].copy() for name in FORWARD}, True, SMALL)):
        q, qv = np.arange(0, terms, 7), np.ones(len(np.arange(0, terms, 7)), np.float32)
        for a, b in zip(restored.search(q, qv, 100), index.search(q, qv, 100), strict=True):
            np.testing.assert_array_equal(a, b)


def zipf_rows(rng: np.random.Generator, count: int, terms: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` vectors of up to ``size`` distinct indices drawn Zipf-like (index 0 the commonest, in
    most vectors), values of both signs with a few zeros."""
    rows = []
    for _ in range(count):
        drawn = rng.zipf(1.1, 4 * size) - 1
        chosen = np.unique(drawn[drawn < terms])[:size]
        vals = np.round(rng.standard_normal(len(chosen)) + 0.8, 1).astype(np.float32)
        rows.append((chosen, vals))
    return rows


@pytest.mark.parametrize("idf", [False, True], ids=["dot", "idf"])
def test_pruned_search_on_skewed_postings_is_the_full_search(idf: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Zipf-skewed postings (the commonest indices in most vectors) across segments, stale
    postings, pending pairs and a restore, search prunes (MaxScore) and answers bit for bit as the
    full sum does (an index that never prunes) and as a dense brute force does."""
    rng = np.random.default_rng(11)
    terms, count = 2_000, 3_000
    pruning = Tuning(flush_labels=400, flush_entries=1 << 20, fanout=3, rewrite_min=1 << 30, prune_min=1)
    index, full = SparseIndex(idf, pruning), SparseIndex(idf, Tuning(prune_min=1 << 62))
    dense, touched, held = np.zeros((count, terms)), np.zeros((count, terms), bool), np.zeros(count, bool)

    def put(labels: np.ndarray) -> None:
        rows = zipf_rows(rng, len(labels), terms, 40)
        for label, (chosen, vals) in zip(labels.tolist(), rows, strict=True):
            dense[label], touched[label], held[label] = 0, False, True
            dense[label, chosen], touched[label, chosen] = vals, True
        offsets = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])])
        for target in (index, full):
            target.put_many(labels, offsets, np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows]))

    taken = []
    pruned = SparseIndex._pruned  # noqa: SLF001 - the pruned path, observed

    def spy(self: SparseIndex, *args: Any) -> tuple[np.ndarray, np.ndarray] | None:
        answer = pruned(self, *args)
        if self is not full:
            taken.append(answer is not None)
        return answer

    monkeypatch.setattr(SparseIndex, "_pruned", spy)
    put(np.arange(count))
    for round_ in range(3):
        put(rng.choice(count, 300, replace=False))  # stale postings in the older segments
        put(rng.choice(count, 7, replace=False))  # pending pairs
        for label in rng.choice(count, 20, replace=False).tolist():
            index.remove(label), full.remove(label)
            dense[label], touched[label], held[label] = 0, False, False
        if round_ == 2:
            index = SparseIndex.restore(index.columns(), idf, pruning)
        for _ in range(8):
            q, qv = zipf_rows(rng, 1, terms, 30)[0]
            qv = np.abs(qv) if rng.random() < 0.5 else qv
            qv = qv if idf else (qv * np.sqrt(q + 1.0)).astype(np.float32)  # the common indices weigh less
            df = touched[:, q].sum(0)
            w = qv * np.log((held.sum() - df + 0.5) / (df + 0.5) + 1) if idf else qv.astype(np.float64)
            want, overlap = dense[:, q] @ w, np.asarray(touched[:, q].any(1))
            for k in (1, 10, 50, 5_000):
                got, scores = index.search(q, qv, k)
                expect = full.search(q, qv, k)
                assert got.tolist() == expect[0].tolist() and scores.tobytes() == expect[1].tobytes()
                best = np.sort(want[overlap])[::-1][:k]
                np.testing.assert_allclose(scores, best, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(scores, want[got], rtol=1e-5, atol=1e-5)
                assert overlap[got].all()
    assert len(taken) == 3 * 8 * 4 and sum(taken) >= (40 if idf else 2)  # without IDF the common indices weigh more


# Snapshots --------------------------------------------------------------------------------
def filled() -> SparseIndex:
    index = SparseIndex(False, TINY)
    index.put(3, np.array([9, 2, 5]), np.array([1, 2, 3], np.float32))
    index.put(0, np.array([], np.int64), np.array([], np.float32))
    index.put(7, np.array([1]), np.array([0.5], np.float32))
    index.put_many(np.array([5, 3]), np.array([0, 2, 3]), np.array([4, 1, 8]), np.array([1, 1, 2], np.float32))
    index.remove(7)
    index.put(7, np.array([2, 3]), np.array([4, 4], np.float32))
    return index


def test_columns_are_both_stores_as_they_are() -> None:
    """The forward store in label order; the one segment (label 7's posting stale: it was removed,
    then put again, now pending); the homes, the pending labels."""
    index = filled()
    columns = index.columns()
    assert listed(columns) == listed(index.columns()) and index.version == filled().version  # a read
    assert listed(columns) == {
        "labels": ("int64", [0, 3, 5, 7]), "offsets": ("int64", [0, 0, 1, 3, 5]),
        "indices": ("uint32", [8, 1, 4, 2, 3]), "values": ("float32", [2, 1, 1, 4, 4]),
        "home": ("int32", [-1, 0, 0, -2]), "pending": ("int64", [7]),
        "segment_terms": ("int64", [0, 3]), "terms": ("uint32", [1, 4, 8]), "term_offsets": ("int64", [0, 2, 3, 4]),
        "posting_labels": ("int32", [5, 7, 5, 3]), "posting_values": ("float32", [1, 0.5, 1, 2])}
    for form in (columns, {name: columns[name] for name in FORWARD}):
        restored = SparseIndex.restore(form, False)
        assert restored.version == 0 and restored.saved == {}
        assert restored.search(np.array([2, 8]), np.array([1, 1], np.float32), 5)[0].tolist() == [7, 3]
        assert restored.get(0) is not None and len(restored) == 4


def test_a_snapshot_adopts_the_postings_as_they_are() -> None:
    """After interleaved writes (several segments, stale postings, pending labels), the restored
    index holds the same columns as the original, answers as the model does, and stays the
    original's twin through further writes: same flushes and merges, so the same columns."""
    rng = np.random.default_rng(13)
    for tuning, idf in ((TINY, False), (SMALL, True)):
        index = SparseIndex(idf, tuning)
        model: dict[int, Vector] = {}
        for _ in range(2_000):
            random_write(index, model, rng)
            columns = index.columns()
            current = int(np.diff(columns["offsets"])[columns["home"] >= 0].sum())
            if len(columns["segment_terms"]) > 3 and len(columns["posting_labels"]) > current and \
                    (columns["home"] == -2).any():
                break
        else:
            raise AssertionError("never three segments, stale postings and pending labels at once")
        restored = SparseIndex.restore(columns, idf, tuning)
        assert listed(restored.columns()) == listed(index.columns())
        for _ in range(150):
            seed = int(rng.integers(2**32))
            for target, book in ((index, model), (restored, {})):  # the same write on both
                random_write(target, book, np.random.default_rng(seed))
            assert listed(restored.columns()) == listed(index.columns())
        assert_holds(restored, model)
        for _ in range(10):
            query = canonical(rng.choice(TERMS + 1, 4, replace=False).tolist(), [1.0, 0.5, 2.0, -1.0])
            assert_search(restored, model, query, 8, None)
            assert_scores(restored, model, query, np.arange(-1, LABELS + 3))


def random_write(index: SparseIndex, model: dict[int, Vector], rng: np.random.Generator) -> None:
    """A put (or, 15% of the time, a remove) of one of the labels up to ``LABELS``, on the index and the model."""
    label = int(rng.integers(0, LABELS + 1))
    if rng.random() < 0.15:
        index.remove(label)
        model.pop(label, None)
        return
    terms = rng.choice(TERMS + 1, int(rng.integers(0, 6)), replace=False)
    weights = (rng.integers(-8, 9, len(terms)) / 4).astype(np.float32)
    index.put(label, terms, weights)
    model[label] = canonical(terms.tolist(), weights.tolist())


def test_a_read_only_snapshot_is_copied_before_writes() -> None:
    """``np.load(..., mmap_mode="r")`` gives read-only arrays: the forward store is written in place, so copied."""
    columns = filled().columns()
    for column in columns.values():
        column.flags.writeable = False
    restored = SparseIndex.restore(columns, False, TINY)
    restored.put(3, np.array([9]), np.array([5], np.float32))
    restored.put(7, np.array([2, 3]), np.array([1, 1], np.float32))
    assert restored.search(np.array([9, 2]), np.array([1, 1], np.float32), 5)[0].tolist() == [3, 7]
    assert columns["values"].tolist() == [2, 1, 1, 4, 4]


def _broken(change: str) -> dict[str, np.ndarray]:
    columns = filled().columns()
    if change == "missing":
        del columns["values"]
    elif change == "extra":
        columns["postings"] = np.zeros(1, np.int32)
    elif change == "dtype":
        columns["indices"] = columns["indices"].astype(np.int64)
    elif change == "2-d":
        columns["values"] = columns["values"].reshape(1, -1)
    elif change == "short offsets":
        columns["offsets"] = columns["offsets"][:-1]
    elif change == "offsets start":
        columns["offsets"] = columns["offsets"] + 1
    elif change == "offsets decrease":
        columns["offsets"][2] = 4
    elif change == "values length":
        columns["values"] = columns["values"][:-1]
    elif change == "labels order":
        columns["labels"] = columns["labels"][::-1].copy()
    elif change == "labels repeat":
        columns["labels"][2] = 3
    elif change == "negative label":
        columns["labels"][0] = -1
    elif change == "row order":
        columns["indices"][3:5] = [3, 2]
    elif change == "row repeat":
        columns["indices"][3:5] = [3, 3]
    else:
        _break_postings(columns, change)
    return columns


def _break_postings(columns: dict[str, np.ndarray], change: str) -> None:
    """Postings columns that do not fit: see :func:`test_columns_are_both_stores_as_they_are` for the whole ones."""
    if change == "half the postings":
        del columns["home"]
    elif change == "home dtype":
        columns["home"] = columns["home"].astype(np.int64)
    elif change == "home length":
        columns["home"] = columns["home"][:-1]
    elif change == "home past the segments":
        columns["home"][1] = 1
    elif change == "home below pending":
        columns["home"][1] = -3
    elif change == "pairs without a home":
        columns["home"][1] = -1
    elif change == "an empty vector with a home":
        columns["home"][0] = 0
    elif change == "pending not listed":
        columns["pending"] = np.zeros(0, np.int64)
    elif change == "pending repeat":
        columns["pending"] = np.array([7, 7], np.int64)
    elif change == "a segment all stale":
        columns["home"][1:3] = -2
        columns["pending"] = np.array([3, 5, 7], np.int64)
    elif change == "segments past the terms":
        columns["segment_terms"] = np.array([0, 2], np.int64)
    elif change == "an empty segment":
        columns["segment_terms"] = np.array([0, 0, 3], np.int64)
    elif change == "terms order":
        columns["terms"][:2] = [4, 1]
    elif change == "another term":
        columns["terms"][2] = 9
    elif change == "term offsets shifted":
        columns["term_offsets"] = np.array([0, 1, 2, 4], np.int64)
    elif change == "a term without postings":
        columns["term_offsets"] = np.array([0, 2, 2, 4], np.int64)
    elif change == "another label":
        columns["posting_labels"][0] = 3
    elif change == "a negative posting label":
        columns["posting_labels"][0] = -1
    elif change == "another value":
        columns["posting_values"][0] = 9
    elif change == "posting values length":
        columns["posting_values"] = columns["posting_values"][:-1]
    else:
        raise AssertionError(change)


@pytest.mark.parametrize("change", ["missing", "extra", "dtype", "2-d", "short offsets", "offsets start",
                                    "offsets decrease", "values length", "labels order", "labels repeat",
                                    "negative label", "row order", "row repeat",
                                    "half the postings", "home dtype", "home length", "home past the segments",
                                    "home below pending", "pairs without a home", "an empty vector with a home",
                                    "pending not listed", "pending repeat", "a segment all stale",
                                    "segments past the terms", "an empty segment", "terms order", "another term",
                                    "term offsets shifted", "a term without postings", "another label",
                                    "a negative posting label", "another value", "posting values length"])
def test_restore_refuses_inconsistent_columns(change: str) -> None:
    with pytest.raises(ValueError):
        SparseIndex.restore(_broken(change), False)


def test_restore_takes_a_consistent_state_it_did_not_write() -> None:
    """Label 5 pending again, its postings in the segment stale: a state the index could be in."""
    columns = filled().columns()
    columns["home"][2] = -2
    columns["pending"] = np.array([5, 7], np.int64)
    restored = SparseIndex.restore(columns, False, TINY)
    assert restored.search(np.array([1, 4]), np.array([1, 1], np.float32), 5)[0].tolist() == [5]


def test_restore_takes_rows_descending_across_a_boundary() -> None:
    columns: dict[str, np.ndarray] = {"labels": np.array([1, 2], np.int64), "offsets": np.array([0, 2, 4], np.int64),
                                      "indices": np.array([5, 9, 1, 2], np.uint32), "values": np.ones(4, np.float32)}
    assert SparseIndex.restore(columns, False).columns()["indices"].tolist() == [5, 9, 1, 2]


def test_writes_refuse_what_would_corrupt_the_sums() -> None:
    index = SparseIndex()
    with pytest.raises(ValueError):
        index.put(1, np.array([3, 3]), np.array([1, 2], np.float32))
    with pytest.raises(ValueError):
        index.put(1, np.array([-1]), np.array([1], np.float32))
    with pytest.raises(ValueError):
        index.put(-1, np.array([1]), np.array([1], np.float32))
    with pytest.raises(ValueError):
        index.put_many(np.array([1, 1]), np.array([0, 1, 2]), np.array([1, 2]), np.ones(2, np.float32))
    with pytest.raises(ValueError):
        index.put_many(np.array([1]), np.array([0, 3]), np.array([4, 2, 4]), np.ones(3, np.float32))
    with pytest.raises(ValueError):
        index.put(1, np.array([0.5]), np.array([1], np.float32))
    with pytest.raises(ValueError):
        index.put(1, np.array([1, 2]), np.array([1], np.float32))
    with pytest.raises(ValueError):
        index.put_many(np.array([1]), np.array([0, 1]), np.array([1]), np.ones(2, np.float32))
    with pytest.raises(ValueError):
        index.put_many(np.array([1, 2]), np.array([0, 2, 1]), np.array([1, 2]), np.ones(2, np.float32))
    with pytest.raises(ValueError):
        index.put_many(np.array([-3]), np.array([0, 1]), np.array([1]), np.ones(1, np.float32))
    assert len(index) == 0 and index.version == 0


def test_tuning_refuses_thresholds_that_never_settle() -> None:
    with pytest.raises(ValueError):
        Tuning(fanout=1)
    with pytest.raises(ValueError):
        Tuning(flush_labels=0)


def test_an_unsorted_allowed_is_taken_as_a_set() -> None:
    index = filled()
    query = np.array([1, 2, 4, 8]), np.ones(4, np.float32)
    assert index.search(*query, 10, np.array([7, 3, 7, 5]))[0].tolist() == \
        index.search(*query, 10, np.array([3, 5, 7]))[0].tolist() == [7, 3, 5]


def test_large_batches_with_wide_indices() -> None:
    """Batches past the radix sort's threshold (65,536 pairs), the second with indices above 2**16
    (its two-digit path), each sorted in several chunks and merged; rows given out of order; then
    restored."""
    rng = np.random.default_rng(11)
    index = SparseIndex(False, Tuning(sort_chunk=70_000))
    model: dict[int, Vector] = {}
    for wide in (False, True):
        rows = []
        for _ in range(4_000):
            n = int(rng.integers(0, 40))
            shared = rng.choice(500, n // 2, replace=False)
            rest = rng.integers(2**16, 2**32, n - n // 2) if wide else rng.integers(500, 2_000, n - n // 2)
            rows.append(rng.permutation(np.unique(np.concatenate([shared, rest]))))
        lens = [len(row) for row in rows]
        terms = np.concatenate(rows)
        vals = (rng.integers(-8, 9, len(terms)) / 4).astype(np.float32)
        labels = rng.permutation(5_000)[:len(rows)]
        offsets = np.concatenate([[0], np.cumsum(lens)])
        index.put_many(labels, offsets, terms, vals)
        for label, a, b in zip(labels.tolist(), offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            model[label] = canonical(terms[a:b].tolist(), vals[a:b].tolist())
        for _ in range(3):
            q = np.unique(rng.choice(terms, 8))
            assert_search(index, model, (q.astype(np.uint32), np.ones(len(q), np.float32)), 30, None)
    assert index.labels().tolist() == sorted(model)
    for label in list(model)[:200]:
        got = index.get(label)
        assert got is not None and got[0].tolist() == model[label][0].tolist()
    restored = SparseIndex.restore(index.columns(), False, index.tuning)  # segments past one gather's chunk
    assert listed(restored.columns()) == listed(index.columns())
    q = np.arange(0, 500, 9, dtype=np.uint32)
    assert_search(restored, model, (q, np.ones(len(q), np.float32)), 30, None)


def test_memory_is_the_pairs_twice_and_a_little() -> None:
    """8 bytes a pair in the forward store, 8 in the postings, a few per label: no Python object per vector."""
    rng = np.random.default_rng(5)
    index = SparseIndex()
    empty = index.memory_bytes()
    for label in range(5_000):
        index.put(label, rng.choice(1_000, 20, replace=False), np.ones(20, np.float32))
    pairs = 5_000 * 20
    assert 16 * pairs < index.memory_bytes() - empty < 16 * pairs * 1.6 + 20 * 5_000


# IDF --------------------------------------------------------------------------------------
def test_idf_by_hand() -> None:
    index = SparseIndex(idf=True)
    index.put(0, np.array([1, 2]), np.array([1, 1], np.float32))
    index.put(1, np.array([2]), np.array([1], np.float32))
    index.put(2, np.array([], np.int64), np.array([], np.float32))  # holds the vector: N counts it
    index.put(3, np.array([2, 5]), np.array([1, 1], np.float32))
    index.put(4, np.array([7]), np.array([1], np.float32))
    index.remove(4)  # N = 4
    terms, weights = index.query_weights(np.array([9, 2, 1]), np.array([1.0, 2.0, 0.5], np.float32))
    assert terms.tolist() == [1, 2, 9]
    # df: index 1 -> 1, index 2 -> 3, index 9 -> 0.
    assert weights.tolist() == pytest.approx([0.5 * math.log(3.5 / 1.5 + 1), 2 * math.log(1.5 / 3.5 + 1),
                                              math.log(4.5 / 0.5 + 1)], rel=1e-12)
    labels, scores = index.search(np.array([9, 2, 1]), np.array([1.0, 2.0, 0.5], np.float32), 10)
    assert labels.tolist() == [0, 1, 3]  # 0 holds both of its indices; 1 and 3 tie, lower label first
    assert scores.tolist() == pytest.approx([weights[0] + weights[1], weights[1], weights[1]], rel=1e-6)


@pytest.mark.parametrize("idf", [False, True], ids=["dot", "idf"])
def test_scores_match_qdrant_local_mode(idf: bool) -> None:
    rng = np.random.default_rng(3)
    client = QdrantClient(":memory:")
    modifier = models.Modifier.IDF if idf else models.Modifier.NONE
    client.create_collection("c", vectors_config={},
                             sparse_vectors_config={"s": models.SparseVectorParams(modifier=modifier)})
    index = SparseIndex(idf, TINY)
    points = []
    for label in range(40):
        size = 0 if label % 13 == 0 else int(rng.integers(1, 8))
        terms = rng.choice(30, size, replace=False)
        vals = rng.standard_normal(size).astype(np.float32)
        index.put(label, terms, vals)
        points.append(models.PointStruct(id=label, vector={
            "s": models.SparseVector(indices=terms.tolist(), values=vals.tolist())}))
    points.append(models.PointStruct(id=99, vector={}))  # a point without the vector: not in IDF's N
    client.upsert("c", points)
    for label in (4, 5):  # deleted, and re-put with another vector
        index.remove(label)
    client.delete("c", models.PointIdsList(points=[4, 5]))
    index.put(5, np.array([1, 2, 3]), np.array([0.5, -1, 2], np.float32))
    client.upsert("c", [models.PointStruct(id=5, vector={"s": models.SparseVector(indices=[1, 2, 3],
                                                                                   values=[0.5, -1.0, 2.0])})])
    for _ in range(8):
        terms = rng.choice(30, 6, replace=False)
        vals = rng.random(6).astype(np.float32)
        query = models.SparseVector(indices=terms.tolist(), values=vals.tolist())
        for allowed in (None, np.arange(0, 40, 3)):
            flt = None if allowed is None else models.Filter(must=[models.HasIdCondition(has_id=[*allowed.tolist()])])
            hits = client.query_points("c", query=query, using="s", limit=15, query_filter=flt).points
            labels, scores = index.search(terms, vals, 15, allowed)
            assert labels.tolist() == [hit.id for hit in hits]
            np.testing.assert_allclose(scores, [hit.score for hit in hits], rtol=1e-5)
