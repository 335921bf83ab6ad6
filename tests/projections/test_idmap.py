"""The numpy id maps behave as the dicts they replace, through merges and tombstones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import idmap
from projections.idmap import IdsByLabel, LabelsById
from schemas.ids import PointId

ids = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 50), st.sampled_from(["a", "b", "7", "3f2504e0-4f89"]))
ops = st.lists(st.tuples(st.sampled_from(["set", "del"]), ids, st.integers(0, 200)), max_size=300)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_labels_by_id_is_a_dict(steps: list[tuple[str, PointId, int]]) -> None:
    model: dict[PointId, int] = {}
    got = LabelsById()
    for op, pid, label in steps:
        if op == "set":
            model[pid] = label
            got[pid] = label
        elif pid in model:
            del model[pid]
            del got[pid]
        else:
            with pytest.raises(KeyError):
                del got[pid]
        assert len(got) == len(model)
        assert (pid in got) == (pid in model) and got.get(pid) == model.get(pid)
    assert dict(got) == model and got == model


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "del"]), st.integers(0, 3000), ids), max_size=300))
def test_ids_by_label_is_a_dict(steps: list[tuple[str, int, PointId]]) -> None:
    model: dict[int, PointId] = {}
    got = IdsByLabel()
    for op, label, pid in steps:
        if op == "set":
            model[label] = pid
            got[label] = pid
        elif label in model:
            del model[label]
            del got[label]
        assert len(got) == len(model) and got.get(label) == model.get(label) and (label in got) == (label in model)
    assert got == model
    assert got.labels().tolist() == sorted(model)
    labels, values = got.int_points(10, 2000)
    assert list(zip(labels.tolist(), values.tolist(), strict=True)) == \
        sorted((lbl, p) for lbl, p in model.items() if isinstance(p, int) and 10 <= lbl < 2000)
    assert got.str_points() == sorted((lbl, p) for lbl, p in model.items() if isinstance(p, str))


def test_merges_and_tombstones_at_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idmap, "MERGE_AT", 1000)
    got, model = LabelsById(), dict[PointId, int]()
    rng = np.random.default_rng(3)
    for pid in rng.integers(0, 2**62, 20_000).tolist():
        got[pid] = model[pid] = len(model)
    for pid in list(model)[::3]:
        del got[pid]
        del model[pid]
    for pid in list(model)[:100]:
        got[pid] = model[pid] = -5 + 10  # relabel in place
    assert len(got) == len(model) and got == model
    got.set_ints(np.array([1, 2, 3]), np.array([7, 8, 9]))
    assert got[2] == 8
    with pytest.raises(ValueError, match="present already"):
        got.set_ints(np.array([2]), np.array([1]))


@given(st.lists(st.lists(st.integers(-2**63, 2**63 - 1), max_size=40, unique=True), max_size=6))
@settings(max_examples=200, deadline=None)
def test_ids_set_in_chunks_as_a_snapshot_loads_them_equal_a_dict(chunks: list[list[int]]) -> None:
    """Chunks in any order (each segment's ids, sorted or not, before or among the ids held): the
    map is the dict of them all; an id given again is refused and changes nothing."""
    by_id, by_label, model = LabelsById(), IdsByLabel(), dict[PointId, int]()
    for chunk in chunks:
        fresh = [pid for pid in chunk if pid not in model]
        labels = np.arange(len(model), len(model) + len(fresh), dtype=np.int64)
        if len(fresh) < len(chunk):
            before = dict(by_id)
            with pytest.raises(ValueError, match="present already"):
                by_id.set_ints(np.array(chunk, np.int64), np.arange(len(chunk), dtype=np.int64) + 10**6)
            assert dict(by_id) == before
        by_id.set_ints(np.array(fresh, np.int64), labels)
        by_label.set_ints(labels, np.array(fresh, np.int64))
        model.update(zip(fresh, labels.tolist(), strict=True))
    assert dict(by_id) == model and len(by_id) == len(model)
    assert {label: pid for pid, label in model.items()} == dict(by_label) and len(by_label) == len(model)
