"""Payload indexes against the filters' own predicates: the same answers, always.

Random programs of events (upserts, the four payload edits, deletes, index creation and
removal, snapshot and restart) go through ``ProjectionState.apply``. After each step, for random
filters over indexed and unindexed fields (keyword, integer, float, bool, text, datetime, uuid;
nested keys and arrays), what the planner answers (``query.matching``, ``query.count``) equals a
scan of every point with the filter's predicate, filtered search equals exact search over the
scan's matches, and every index equals one rebuilt from the payloads held.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers import snapshots
from projections import payload_index, planner, query
from projections.collection import Collection
from projections.filters import parse_filter
from projections.payload_index import FieldIndex
from projections.search import search
from projections.state import ProjectionState
from schemas import events as ev

DIM = 4
WORDS = ("red", "green", "blue", "Red", "sky blue")
DATES = ("2024-01-01", "2024-06-15T12:00:00Z", "2024-06-15 13:00:00+02:00", "2025-03-01T00:00:00.5", "not a date")
FIELDS = {"k": "keyword", "n": "integer", "f": "float", "b": "bool", "t": "text", "d": "datetime",
          "a.k": "keyword", "arr[].n": "integer", "u": "uuid"}
SEGMENT_BYTES = 16 * 4 * DIM  # 16 labels a segment: programs span several
UUIDS = ("5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "a1b2c3d4-0000-0000-0000-000000000001")

scalars = st.one_of(st.sampled_from(WORDS), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False),
                    st.booleans(), st.none(), st.sampled_from(DATES), st.sampled_from(UUIDS))
values = st.one_of(scalars, st.lists(scalars, max_size=3))
payloads = st.fixed_dictionaries({}, optional={
    "k": values, "n": values, "f": values, "b": values, "d": values, "u": values,
    "t": st.one_of(st.sampled_from(("the red fox", "blue sky", "Red red", "sky blue green", "")), values),
    "a": st.one_of(st.fixed_dictionaries({"k": values}), values),
    "arr": st.lists(st.fixed_dictionaries({}, optional={"n": values}), max_size=3),
})


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    key = st.sampled_from(["k", "k", "n", "n", "f", "t", "d", "a.k", "arr[].n", "u", "b"])  # indexed ones first
    field = st.one_of(
        st.builds(lambda k, v: {"key": k, "match": {"value": v}}, key,
                  st.one_of(st.sampled_from(WORDS[:3]), st.sampled_from(WORDS + UUIDS), st.integers(-5, 5),
                            st.booleans())),
        st.builds(lambda k, v: {"key": k, "match": {"any": v}}, key,
                  st.one_of(st.lists(st.sampled_from(WORDS), max_size=3), st.lists(st.integers(-5, 5), max_size=3))),
        st.builds(lambda k, v: {"key": k, "match": {"except": v}}, key, st.lists(st.sampled_from(WORDS), max_size=2)),
        st.builds(lambda k, lo, hi: {"key": k, "range": {"gte": lo, "lt": hi}}, key,
                  st.floats(-6, 6, allow_nan=False), st.floats(-6, 6, allow_nan=False)),
        st.builds(lambda k, lo: {"key": k, "range": {"gt": lo}}, key, st.integers(-6, 6)),
        st.builds(lambda k, op, text: {"key": k, "match": {op: text}}, st.sampled_from(["t", "k"]),
                  st.sampled_from(["text", "text_any", "phrase"]),
                  st.sampled_from(("red", "blue sky", "sky", "red fox"))),
        st.builds(lambda lo, hi: {"key": "d", "range": {"gte": lo, "lte": hi}},
                  st.sampled_from(DATES[:4]), st.sampled_from(DATES[:4])),
        st.builds(lambda k: {"is_empty": {"key": k}}, key),
        st.builds(lambda ids: {"has_id": ids}, st.lists(st.integers(0, 30), max_size=4)),
    )
    return st.recursive(field, lambda inner: st.builds(
        lambda must, should, must_not: {"must": must, "should": should, "must_not": must_not},
        st.lists(inner, max_size=2), st.lists(inner, max_size=2), st.lists(inner, max_size=2)), max_leaves=5)


operations = st.lists(st.one_of(
    st.tuples(st.just("upsert"), st.lists(st.tuples(st.integers(0, 30), payloads), min_size=1, max_size=8)),
    st.tuples(st.just("set"), st.lists(st.integers(0, 30), min_size=1, max_size=4), payloads),
    st.tuples(st.just("overwrite"), st.lists(st.integers(0, 30), min_size=1, max_size=4), payloads),
    st.tuples(st.just("delete_keys"), st.lists(st.integers(0, 30), min_size=1, max_size=4),
              st.lists(st.sampled_from(["k", "n", "t", "a.k", "arr[].n"]), min_size=1, max_size=2)),
    st.tuples(st.just("clear"), st.lists(st.integers(0, 30), min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.lists(st.integers(0, 30), min_size=1, max_size=4)),
    st.tuples(st.just("index"), st.sampled_from(sorted(FIELDS))),
    st.tuples(st.just("drop"), st.sampled_from(sorted(FIELDS))),
    st.tuples(st.just("restart"),),
), min_size=1, max_size=12)


def _meta() -> ev.EventMeta:
    return ev.EventMeta.new("c", "test")


def _apply(state: ProjectionState, op: tuple[Any, ...], rng: np.random.Generator, offset: int,
           snapshot_dir: Path) -> ProjectionState:
    kind = op[0]
    if kind == "upsert":
        points = dict(op[1])
        ids = tuple(points)
        state.apply(ev.VectorsUpserted(_meta(), ids, rng.standard_normal((len(ids), DIM)).astype(np.float32),
                                       tuple(points.values())), offset)
    elif kind == "set":
        state.apply(ev.PayloadSet(_meta(), tuple(op[1]), op[2]), offset)
    elif kind == "overwrite":
        state.apply(ev.PayloadOverwritten(_meta(), tuple(op[1]), op[2]), offset)
    elif kind == "delete_keys":
        state.apply(ev.PayloadKeysDeleted(_meta(), tuple(op[1]), tuple(op[2])), offset)
    elif kind == "clear":
        state.apply(ev.PayloadCleared(_meta(), tuple(op[1])), offset)
    elif kind == "delete":
        state.apply(ev.VectorsDeleted(_meta(), tuple(op[1])), offset)
    elif kind == "index":
        schema: Any = FIELDS[op[1]] if offset % 2 else {"type": FIELDS[op[1]]}
        state.apply(ev.PayloadIndexCreated(_meta(), op[1], json.dumps(schema)), offset)
    elif kind == "drop":
        state.apply(ev.PayloadIndexDropped(_meta(), op[1]), offset)
    elif kind == "restart":
        snapshots.write_snapshot(state, {0: offset}, snapshot_dir, "payload-index", keep=1)
        loaded = snapshots.load_newest(snapshot_dir, SEGMENT_BYTES)
        assert loaded is not None
        return loaded.state
    return state


def _check(coll: Collection, filters: list[dict[str, Any]]) -> None:
    for index in coll.indexes:
        fresh = FieldIndex(index.field, index.schema)
        fresh.build(coll.payload_of)
        assert index.pairs() == fresh.pairs(), index.field
        assert (index.points, index.values) == (fresh.points, fresh.values), index.field
    query_vector = np.ones(DIM, np.float32)
    for cond in filters:
        spec = {"must": [cond]}
        flt = parse_filter(spec)
        assert flt is not None
        scanned = sorted(label for label, pid in coll.id_of.items() if flt.matches(pid, coll.payload_of.get(label)))
        assert sorted(label for label, _ in query.matching(coll, flt)) == scanned, spec
        assert query.count(coll, flt) == len(scanned), spec
        selection = planner.select(coll, flt)
        if selection is not None:
            assert set(scanned) <= set(selection.labels.tolist()), spec
            if selection.exact:
                assert selection.labels.tolist() == scanned, spec
        hits = search(coll, query_vector, 5, flt=flt)
        exact = coll.index.exact(query_vector, np.asarray(scanned, np.int64), 5)
        assert [h.label for h in hits] == exact[0].tolist() or \
            np.allclose([h.score for h in hits], exact[1], atol=1e-5), spec


#: The levels' fold thresholds (projections.payload_index): the library's, and tiny ones, so that
#: programs of a few writes go through every level (overlay, delta, main) and every fold.
LEVELS = {"default": {}, "tiny": {"_READ_MERGE_AT": 0, "_WRITE_FOLD_AT": 1, "_WRITE_MERGE_MIN": 2,
                                  "_WRITE_MERGE_SHARE": 0.0}}


@contextmanager
def _thresholds(values: dict[str, Any]) -> Iterator[None]:
    saved = {name: getattr(payload_index, name) for name in values}
    for name, value in values.items():
        setattr(payload_index, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(payload_index, name, value)


@pytest.mark.parametrize("levels", sorted(LEVELS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=operations, filters=st.lists(conditions(), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_indexes_answer_as_the_predicates(levels: str, ops: list[tuple[Any, ...]], filters: list[dict[str, Any]],
                                          seed: int) -> None:
    with _thresholds(LEVELS[levels]):
        _run_program(ops, filters, seed)


def _run_program(ops: list[tuple[Any, ...]], filters: list[dict[str, Any]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    state = ProjectionState(SEGMENT_BYTES)
    state.apply(ev.CollectionCreated(_meta(), DIM, "l2"), 0)
    with tempfile.TemporaryDirectory() as tmp:
        first = [("index", field) for field in ("k", "n", "f", "t", "d", "arr[].n")]
        for offset, op in enumerate([*first, *ops], start=1):
            state = _apply(state, op, rng, offset, Path(tmp))
            coll = state.get("c")
            assert coll is not None
            _check(coll, filters)


def test_an_index_answers_a_selective_filter_without_reading_other_payloads() -> None:
    """The planner's answer for an indexed condition is the index's labels: payloads are not read."""
    state = ProjectionState()
    state.apply(ev.CollectionCreated(_meta(), DIM, "ip"), 0)
    n = 2_000
    state.apply(ev.VectorsUpserted(_meta(), tuple(range(n)), np.random.default_rng(0).standard_normal(
        (n, DIM)).astype(np.float32), tuple({"k": f"v{i % 100}", "n": i} for i in range(n))), 1)
    state.apply(ev.PayloadIndexCreated(_meta(), "k", '"keyword"'), 2)
    state.apply(ev.PayloadIndexCreated(_meta(), "n", '"integer"'), 3)
    coll = state.get("c")
    assert coll is not None
    coll.payload_of.clear()  # were the payloads read, nothing would match
    flt = parse_filter({"must": [{"key": "k", "match": {"value": "v7"}}, {"key": "n", "range": {"lt": 1000}}]})
    assert flt is not None
    selection = planner.select(coll, flt)
    assert selection is not None and selection.exact
    assert selection.labels.tolist() == [coll.label_of[i] for i in range(7, 1000, 100)]
    assert coll.index.rows_kept  # exact scans read the rows kept beside the graphs
    assert [h.id for h in search(coll, np.ones(DIM, np.float32), 3, flt=flt)] == \
        [h.id for h in search(coll, np.ones(DIM, np.float32), 3, flt=flt, exact=True)]


def test_verify_finds_an_index_that_differs_from_its_payloads() -> None:
    from consumers.integrity import _check_payload_indexes  # noqa: PLC0415 - the check alone, without a log

    state = ProjectionState()
    state.apply(ev.CollectionCreated(_meta(), DIM, "l2"), 0)
    state.apply(ev.VectorsUpserted(_meta(), (1, 2), np.ones((2, DIM), np.float32), ({"k": "a"}, {"k": "b"})), 1)
    state.apply(ev.PayloadIndexCreated(_meta(), "k", '"keyword"'), 2)
    coll = state.get("c")
    assert coll is not None
    assert _check_payload_indexes(coll, coll, "c") == []
    next(iter(coll.indexes)).update(coll.label_of[1], {"k": "a"}, {"k": "z"})  # the payload still says "a"
    problems = _check_payload_indexes(coll, coll, "c")
    assert len(problems) == 1 and "index on 'k' differs from its payloads" in problems[0].detail


def test_each_strategy_for_broad_matches_finds_the_exact_answer(monkeypatch: Any) -> None:
    """Matches over 3 % of the points: HNSW then the bitmap, or (when that leaves fewer than k) HNSW
    with the bitmap inside the search; both agree with the exact scan of the matches."""
    import projections.search as search_module  # noqa: PLC0415 - its thresholds are patched

    rng = np.random.default_rng(4)
    n, dim = 3_000, 8
    centres = rng.normal(size=(20, dim)).astype(np.float32)
    vectors = (centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    state = ProjectionState()
    state.apply(ev.CollectionCreated(ev.EventMeta.new("c", "t"), dim, "cosine"), 0)
    state.apply(ev.VectorsUpserted(ev.EventMeta.new("c", "t"), tuple(range(n)), vectors,
                                   tuple({"g": f"g{i % 10}"} for i in range(n))), 1)
    state.apply(ev.PayloadIndexCreated(ev.EventMeta.new("c", "t"), "g", '"keyword"'), 2)
    coll = state.get("c")
    assert coll is not None
    flt = parse_filter({"must": [{"key": "g", "match": {"value": "g3"}}]})
    queries = vectors[rng.integers(0, n, 30)] + 0.05
    calls: list[str] = []
    original_knn = coll.index.knn

    def knn(*args: Any, **kwargs: Any) -> Any:
        calls.append("inside" if (len(args) > 3 and args[3] is not None) else "after")
        return original_knn(*args, **kwargs)

    monkeypatch.setattr(coll.index, "knn", knn)
    for margin, path in ((1.5, "after"), (0.001, "inside")):
        monkeypatch.setattr(search_module, "POST_FILTER_MARGIN", margin)
        calls.clear()
        agree = 0
        for q in queries:
            got = [h.id for h in search(coll, q, 10, flt=flt)]
            want = [h.id for h in search(coll, q, 10, flt=flt, exact=True)]
            agree += len(set(got) & set(want))
            assert all(pid % 10 == 3 for pid in got)
        assert path in calls
        assert agree / (10 * len(queries)) >= 0.95, (margin, agree)


@pytest.mark.parametrize("levels", sorted(LEVELS))
@pytest.mark.parametrize("kind", ["keyword", "integer", "float"])
def test_levels_answer_as_a_model_through_interleaved_writes_and_reads(levels: str, kind: str) -> None:
    """Thousands of single-point writes and reads on one index, against a dict of what each point
    holds: every read (equality, range, order, facets) agrees while the overlay, the delta level
    and the main level take turns holding the changes."""
    rng = np.random.default_rng(11)
    value = (lambda v: f"v{v}") if kind == "keyword" else (lambda v: v) if kind == "integer" else (lambda v: v / 2)
    with _thresholds(LEVELS[levels] or {"_READ_MERGE_AT": 8, "_WRITE_FOLD_AT": 64, "_WRITE_MERGE_MIN": 256}):
        held: dict[int, Any] = {label: {"x": value(int(rng.integers(0, 20)))} for label in range(300)}
        index = FieldIndex("x", kind)
        index.build(held)
        for step in range(3_000):
            label = int(rng.integers(0, 400))
            old = held.get(label)
            new = None if rng.random() < 0.2 else {"x": [value(int(v)) for v in rng.integers(0, 20, 2)]
                                                     if rng.random() < 0.3 else value(int(rng.integers(0, 20)))}
            index.update(label, old, new)
            if new is None:
                held.pop(label, None)
            else:
                held[label] = new
            if step % 7:
                continue
            wanted = value(int(rng.integers(0, 20)))

            def has(p: Any, test: Any) -> bool:
                xs = p["x"] if isinstance(p["x"], list) else [p["x"]]
                return any(test(x) for x in xs)

            if kind != "float":
                got = index.answer("match", {"value": wanted})
                assert got is not None
                assert got[0].tolist() == sorted(lbl for lbl, p in held.items()
                                                 if has(p, lambda x, w=wanted: x == w))
            if kind != "keyword":
                lo = float(wanted)
                got = index.answer("range", {"gte": lo, "lt": lo + 3})
                assert got is not None
                assert got[0].tolist() == sorted(lbl for lbl, p in held.items()
                                                 if has(p, lambda x, low=lo: low <= x < low + 3))
            assert index.points == len(held)
        fresh = FieldIndex("x", kind)
        fresh.build(held)
        assert index.pairs() == fresh.pairs()
        if kind == "keyword":
            assert sorted(index.counts(None)) == sorted(fresh.counts(None))
        else:
            assert [k for k in index.in_order()[0].tolist()] == fresh.in_order()[0].tolist()


def test_snapshots_store_the_indexes_link_them_when_unchanged_and_older_ones_rebuild(tmp_path: Path) -> None:
    state = ProjectionState()
    state.apply(ev.CollectionCreated(_meta(), DIM, "l2"), 0)
    state.apply(ev.VectorsUpserted(_meta(), tuple(range(50)), np.ones((50, DIM), np.float32),
                                   tuple({"k": f"v{i % 5}", "n": i} for i in range(50))), 1)
    state.apply(ev.PayloadIndexCreated(_meta(), "k", '"keyword"'), 2)
    state.apply(ev.PayloadIndexCreated(_meta(), "n", '{"type":"integer","range":true}'), 3)
    first = snapshots.write_snapshot(state, {0: 3}, tmp_path, "t", keep=5)
    stored = json.loads((first / "manifest.json").read_text())["collections"][0]["payload_indexes"]
    assert set(stored) == {"k", "n"} and stored["k"]["points"] == 50
    second = snapshots.write_snapshot(state, {0: 3}, tmp_path, "t", keep=5)
    assert (second / stored["k"]["keys_file"]).stat().st_nlink == 2  # unchanged: linked, not written again
    state.apply(ev.PayloadSet(_meta(), (3,), {"k": "new"}), 4)
    third = snapshots.write_snapshot(state, {0: 4}, tmp_path, "t", keep=5)
    assert (third / stored["k"]["keys_file"]).stat().st_nlink == 1  # changed: written
    assert (third / stored["n"]["keys_file"]).stat().st_nlink == 3  # unchanged: linked
    loaded = snapshots.load(third)
    coll = loaded.state.get("c")
    assert coll is not None
    index = next(i for i in coll.indexes if i.field == "k")
    assert index.answer("match", {"value": "new"}) is not None
    assert index.answer("match", {"value": "new"})[0].tolist() == [coll.label_of[3]]
    assert index.info() == {"data_type": "keyword", "points": 50}
    assert next(i for i in coll.indexes if i.field == "n").info()["params"] == {"type": "integer", "range": True}
    # a snapshot from before indexes were stored (no "payload_indexes" entry): built from its payloads
    manifest = json.loads((third / "manifest.json").read_text())
    del manifest["collections"][0]["payload_indexes"]
    manifest["manifest_checksum"] = snapshots._manifest_checksum(manifest)  # noqa: SLF001 - an older manifest, rebuilt
    (third / "manifest.json").write_text(json.dumps(manifest))
    rebuilt = snapshots.load(third).state.get("c")
    assert rebuilt is not None
    assert {i.field: i.pairs() for i in rebuilt.indexes} == {i.field: i.pairs() for i in coll.indexes}
