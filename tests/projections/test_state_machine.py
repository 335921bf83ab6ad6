"""A stateful property test of the projection: random programs of events, through the real apply path.

A Hypothesis ``RuleBasedStateMachine`` writes events to a log (a list of Avro-encoded values; an
entry's offset is its index) and applies each *decoded* value to a live ``ProjectionState``, as the
projector does. Rules: create a collection (an existing name must be refused with 409, invalid HNSW
parameters with 400), delete one, upsert a batch (int, UUID and other string ids; the same vector
again, a new one, or a batch the state must refuse: wrong dimension, NaN/inf, duplicate ids after
id normalisation), delete points, the four payload operations (set at the root or at a key, with
``null`` removing a key; overwrite; delete keys; clear; an invalid JSON path is refused), a
transaction (2-4 of those inside ``ProjectionState.unit``), a snapshot (``write_snapshot``), a
restart (``load_newest`` then the log after the snapshot's offset, transactions again as units) and
a rebuild (a fresh state replaying the whole log). Producers may lack the right to change a
workspace collection (403).

A small Python model (per collection: id -> raw vector, payload) predicts every event's outcome
(applied, or the status of its rejection). Asserted:

* each event is applied or refused exactly as the model predicts, and a refused event leaves the
  state unchanged (it stays on the log, as the projector keeps it, and a replay refuses it too);
* after every step: the live state holds the model's ids and payloads (compared as canonical
  JSON), its vectors (exactly; normalised for cosine), ``count()`` is the model's count, the id and
  label maps are inverse and labels are exactly the live ones plus the free ones;
* after every step: the live state equals a fresh replay of the whole log (ids, labels, label
  allocator, payloads, the bytes of every vector), so snapshots, restarts and units never drift;
* a restart loads exactly the state the newest snapshot was taken of, at the offsets it recorded;
* searches return no id twice and only live ids, with the scores brute force gives them; exact
  search returns a top-k whose scores are brute force's top-k scores (computed with numpy from the
  model: ties may order ids differently); HNSW search's recall@5 against brute force (tie-aware) is
  at least 0.9 on collections of 10 points or more.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from consumers import snapshots
from projections.collection import Collection
from projections.errors import Rejected
from projections.search import search
from projections.state import ProjectionState
from schemas import events as ev
from schemas import validation as check
from schemas.codec import decode, encode
from schemas.ids import PointId

NAMES = ("alpha", "beta", "gamma")
SETTINGS: tuple[dict[str, Any], ...] = (  # CollectionUpdated diffs: each engine, and back
    {"quantization_config": {"scalar": {"type": "int8"}}}, {"quantization_config": "Disabled"},
    {"vector": {"on_disk": True}}, {"vector": {"on_disk": False}}, {"hnsw_config": {"m": 8, "ef_construct": 64}},
    {"vector": {"quantization_config": {"scalar": {"type": "int8", "quantile": 0.99}}, "on_disk": False}},
)
UUID_LOWER = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
UUID_UPPER = UUID_LOWER.upper()  # the same point once decoded (UUIDs are normalised to lowercase)
STR_IDS: tuple[str, ...] = ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", UUID_LOWER, UUID_UPPER, "7", "p/1")
ID_POOL: tuple[PointId, ...] = (*range(31), *STR_IDS)
KEYS = ("a", "b", "n")
INVALID_KEYS = ("", "a..b", "a.", ".a", "a[x]", "a b")
PRODUCERS = ("api", "api", "vectorizer-workspace", "vectorizer-workspace:2", "vectorizer-workspacex")
K = 5
Payload = dict[str, Any]

finite = st.floats(-10, 10, width=32, allow_subnormal=False)
json_value = st.one_of(st.integers(-3, 3), st.booleans(), st.text("xyé", max_size=3),
                       st.lists(st.integers(0, 3), max_size=2), st.fixed_dictionaries({"x": st.integers(0, 3)}))
payloads = st.dictionaries(st.sampled_from(KEYS), json_value, max_size=3)
# PayloadSet: a null removes its key (Qdrant's merge).
set_payloads = st.dictionaries(st.sampled_from(KEYS), st.none() | json_value, max_size=3)


def canon(pid: PointId) -> PointId:
    """The id a point has once decoded: a canonical UUID in lowercase, anything else as written."""
    return pid.lower() if isinstance(pid, str) and len(pid) == 36 and pid.count("-") == 4 else pid


def text(payload: Payload | None) -> str:
    """A payload as canonical JSON: ``True`` and ``1`` differ here (they are equal as Python values)."""
    return json.dumps(payload, sort_keys=True)


def writes_workspace(producer_id: str) -> bool:
    return producer_id == "vectorizer-workspace" or producer_id.startswith("vectorizer-workspace:")


# --------------------------------------------------------------------------- the model


@dataclass
class ModelCollection:
    dimension: int
    metric: str
    kind: str
    points: dict[PointId, tuple[np.ndarray, Payload | None]] = field(default_factory=dict)
    quantized: tuple[bool, bool] = (False, False)  # int8 asked for at the collection's level, the vector's

    def prepared(self, vector: np.ndarray) -> np.ndarray:
        """What the index should hold for ``vector`` (float64): unit length for cosine, else as is."""
        v = vector.astype(np.float64)
        return v / max(float(np.linalg.norm(v)), 1e-30) if self.metric == "cosine" else v

    def scores(self, query: np.ndarray) -> dict[PointId, float]:
        """Brute-force score of every point (as Qdrant defines it: l2 is a distance)."""
        q = self.prepared(query)
        out = {}
        for pid, (vector, _) in self.points.items():
            v = self.prepared(vector)
            out[pid] = float(np.sqrt(((v - q) ** 2).sum())) if self.metric == "l2" \
                else float(np.abs(v - q).sum()) if self.metric == "manhattan" else float(v @ q)
        return out

    def settings_after(self, diff: dict[str, Any]) -> tuple[bool, bool]:
        """Which levels ask for int8 after a ``CollectionUpdated`` diff ("Disabled" clears a level)."""
        levels = list(self.quantized)
        for at, change in enumerate((diff, diff.get("vector", {}))):
            if "quantization_config" in change:
                levels[at] = change["quantization_config"] != "Disabled"
        return levels[0], levels[1]


def merged(dest: Payload, src: Payload) -> Payload:
    for key, value in copy.deepcopy(src).items():
        if value is None:
            dest.pop(key, None)
        else:
            dest[key] = value
    return dest


class Model:
    """What the projection should hold, and which events it should refuse (HTTP status)."""

    def __init__(self) -> None:
        self.collections: dict[str, ModelCollection] = {}

    def _writable(self, event: ev.Event) -> ModelCollection | int:
        coll = self.collections.get(event.collection)
        if coll is None:
            return 404
        if coll.kind == "workspace" and not writes_workspace(event.meta.producer_id):
            return 403
        return coll

    def _rewrite(self, event: ev.Event, ids: Iterable[PointId],
                 rewrite: Callable[[Payload | None], Payload | None]) -> int | None:
        coll = self._writable(event)
        if isinstance(coll, int):
            return coll
        for pid in dict.fromkeys(canon(p) for p in ids):
            if pid in coll.points:
                vector, old = coll.points[pid]
                coll.points[pid] = (vector, rewrite(copy.deepcopy(old)))
        return None

    def apply(self, event: ev.Event) -> int | None:
        """Apply ``event``; return None, or the status of its rejection (then nothing changed)."""
        if isinstance(event, ev.CollectionCreated):
            if event.collection in self.collections:
                return 409
            if not 1 <= event.dimension <= 65_536 or event.m < 2 or event.ef_construction < 1 or event.ef < 1:
                return 400
            self.collections[event.collection] = ModelCollection(event.dimension, event.metric, event.kind)
            return None
        if isinstance(event, ev.PayloadSet) and event.key is not None and event.key not in KEYS:
            return 400  # the path is parsed before the collection is looked up
        if isinstance(event, ev.PayloadKeysDeleted) and any(k not in KEYS for k in event.keys):
            return 400
        coll = self._writable(event)
        if isinstance(coll, int):
            return coll
        if isinstance(event, ev.CollectionDeleted):
            del self.collections[event.collection]
        elif isinstance(event, ev.CollectionUpdated):  # new index settings: the same points, searched the same way
            quantized = coll.settings_after(json.loads(event.diff))
            if coll.metric == "manhattan" and any(quantized):
                return 400  # no L1 scalar quantizer: refused
            coll.quantized = quantized
        elif isinstance(event, ev.VectorsUpserted):
            n, dim = event.vectors.shape
            ids = [canon(p) for p in event.ids]
            if (n and dim != coll.dimension) or not np.isfinite(event.vectors).all() or len(set(ids)) != n:
                return 400
            for pid, vector, payload in zip(ids, event.vectors, event.payloads or (None,) * n, strict=True):
                coll.points[pid] = (np.array(vector, dtype=np.float32), copy.deepcopy(payload))
        elif isinstance(event, ev.VectorsDeleted):
            for pid in event.ids:
                coll.points.pop(canon(pid), None)
        elif isinstance(event, ev.PayloadSet):
            key, value = event.key, event.payload

            def put(old: Payload | None) -> Payload:
                new = old or {}
                if key is None:
                    return merged(new, value)
                target = new.get(key)
                new[key] = merged(target if isinstance(target, dict) else {}, value)
                return new
            return self._rewrite(event, event.ids, put)
        elif isinstance(event, ev.PayloadOverwritten):
            return self._rewrite(event, event.ids, lambda _old: copy.deepcopy(event.payload))
        elif isinstance(event, ev.PayloadKeysDeleted):
            def drop(old: Payload | None) -> Payload | None:
                if old:
                    for k in event.keys:
                        old.pop(k, None)
                return old
            return self._rewrite(event, event.ids, drop)
        elif isinstance(event, ev.PayloadCleared):
            return self._rewrite(event, event.ids, lambda _old: {})
        else:
            raise AssertionError(f"the model has no rule for {type(event).__name__}")
        return None


# --------------------------------------------------------------------------- the projection side


@dataclass(frozen=True)
class Entry:
    value: bytes           # the encoded event, as on the topic
    status: int | None     # the status it was refused with; None: applied
    unit: int | None       # the transaction it was applied in, if any


def observe(collections: dict[str, Collection]) -> dict[str, Any]:
    """Everything a replay must reproduce, as plain comparable values."""
    out: dict[str, Any] = {}
    for name, coll in collections.items():
        labels = sorted(coll.id_of)
        out[name] = {
            "config": coll.config.as_dict(), "created_offset": coll.created_offset,
            "label_of": dict(coll.label_of), "id_of": dict(coll.id_of),
            "payload_of": {label: text(p) for label, p in coll.payload_of.items()},
            "next_label": coll.next_label, "free_labels": list(coll.free_labels),
            "vectors": coll.index.vectors(labels).tobytes(),
        }
    return out


def handlers_view(state: ProjectionState) -> dict[str, Collection]:
    """The collections the handlers see: inside a unit the staged dict (published at its end)."""
    return state._working()  # noqa: SLF001 - no public view of a unit's staged collections


def replay(state: ProjectionState, entries: list[Entry], first_offset: int) -> None:
    """Apply ``entries`` (offsets from ``first_offset``) as the projector does, transactions as units;
    each must be refused exactly as it was the first time."""
    i = 0
    while i < len(entries):
        j = i + 1
        if entries[i].unit is not None:
            while j < len(entries) and entries[j].unit == entries[i].unit:
                j += 1
        group = [(first_offset + n, decode(entries[n].value), entries[n].status) for n in range(i, j)]
        with state.unit({e.collection for _, e, _ in group}) if entries[i].unit is not None else _no_unit():
            for offset, event, status in group:
                try:
                    state.apply(event, offset)
                    got = None
                except Rejected as exc:
                    got = exc.status
                assert got == status, f"replay of offset {offset} ({type(event).__name__}): {got}, first time {status}"
        i = j


class _no_unit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-3 + 1e-4 * max(abs(a), abs(b))


def at_least_as_good(score: float, than: float, metric: str) -> bool:
    return close(score, than) or (score < than if metric in ("l2", "manhattan") else score > than)


# --------------------------------------------------------------------------- the machine


SEGMENT_BYTES = 1  # index segments of 16 labels (the least): searches and snapshots span several


class ProjectionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = ProjectionState(SEGMENT_BYTES)
        self.model = Model()
        self.log: list[Entry] = []
        self.units = 0
        self.snap_dir = Path(tempfile.mkdtemp(prefix="projection-machine-"))
        self.last_snapshot: tuple[dict[int, int], dict[str, Any]] | None = None

    def teardown(self) -> None:
        shutil.rmtree(self.snap_dir, ignore_errors=True)

    # Building events (from a model: inside a transaction, the one the earlier events left) ----
    def _name(self, data: st.DataObject, model: Model) -> str:
        """Mostly an existing collection (else most events would only be refused with 404)."""
        existing = sorted(model.collections)
        pick_existing: int = data.draw(st.integers(0, 4), label="existing?")
        if existing and pick_existing:
            return data.draw(st.sampled_from(existing), label="name")
        return data.draw(st.sampled_from(NAMES), label="name")

    def _meta(self, data: st.DataObject, model: Model, name: str) -> ev.EventMeta:
        """Mostly a producer allowed to write the collection; sometimes any (a workspace one refuses 403)."""
        coll = model.collections.get(name)
        allowed = "vectorizer-workspace:1" if coll is not None and coll.kind == "workspace" else "api"
        producer = allowed if data.draw(st.integers(0, 3), label="any producer?") else \
            data.draw(st.sampled_from(PRODUCERS), label="producer")
        return ev.EventMeta.new(name, producer)

    def _ids(self, data: st.DataObject, model: Model, name: str, max_size: int, unique: bool) -> tuple[PointId, ...]:
        coll = model.collections.get(name)
        existing = sorted(coll.points, key=repr) if coll is not None else []
        pick = st.sampled_from(ID_POOL) if not existing else st.sampled_from(existing) | st.sampled_from(ID_POOL)
        return tuple(data.draw(st.lists(pick, max_size=max_size, unique_by=canon if unique else None), label="ids"))

    def _create(self, data: st.DataObject, model: Model) -> ev.Event:
        name = data.draw(st.sampled_from(NAMES), label="name")  # an existing one: 409
        dimension = data.draw(st.integers(2, 8), label="dimension")
        metric = cast(ev.Metric, data.draw(st.sampled_from(ev.METRICS), label="metric"))
        m, ef_construction = data.draw(st.sampled_from([(16, 200), (8, 64)]), label="m, ef_construction")
        kind = cast(ev.CollectionKind, data.draw(st.sampled_from(["dynamic", "dynamic", "workspace"]), label="kind"))
        if data.draw(st.integers(0, 9), label="invalid?") == 0:  # refused with 400 (unless the name exists)
            dimension, m, ef_construction = data.draw(st.sampled_from([(0, m, ef_construction), (dimension, 1, 1),
                                                                       (dimension, m, 0)]), label="invalid")
        return ev.CollectionCreated(self._meta(data, model, name), dimension, metric, m, ef_construction, 64, kind)

    def _update(self, data: st.DataObject, model: Model) -> ev.Event:
        """New index settings: graphs rebuilt as int8, float16-on-disk or hnswlib ones."""
        name = self._name(data, model)
        diff = data.draw(st.sampled_from(SETTINGS), label="settings")
        return ev.CollectionUpdated(self._meta(data, model, name), check.collection_diff(diff))

    def _drop(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        return ev.CollectionDeleted(self._meta(data, model, name))

    def _vector(self, data: st.DataObject, coll: ModelCollection | None, dim: int) -> np.ndarray:
        vector = data.draw(arrays(np.float32, dim, elements=finite), label="vector")
        # PRODUCT BUG (see test_cosine_normalises_vectors_whose_float32_norm_underflows below): a cosine
        # collection does not normalise a vector whose float32 squared norm underflows (e.g. [1e-30, 1e-30]
        # is stored as [1, 1], [1e-25, 0] as [1e5, 0]): scores of 2.0 or 1e5 for cosine. Such rows are
        # drawn as the zero vector here (which stays zero, as documented) until that is fixed.
        if coll is not None and coll.metric == "cosine" and 0 < np.linalg.norm(vector.astype(np.float64)) < 1e-15:
            return np.zeros(dim, np.float32)
        return vector

    def _upsert(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        coll = model.collections.get(name)
        dim = coll.dimension if coll is not None else data.draw(st.integers(2, 8), label="dimension")
        ids = self._ids(data, model, name, 12, unique=True)
        rows = []
        for pid in ids:
            old = coll.points.get(canon(pid)) if coll is not None else None
            if old is not None and data.draw(st.booleans(), label="same vector"):
                rows.append(old[0])  # a retry / payload-only update: the index keeps the point's place
            else:
                rows.append(self._vector(data, coll, dim))
        vectors = np.array(rows, dtype=np.float32).reshape(len(ids), dim)
        values = tuple(data.draw(st.none() | payloads, label="payload") for _ in ids)
        return ev.VectorsUpserted(self._meta(data, model, name), ids, vectors, values)

    def _bad_upsert(self, data: st.DataObject, model: Model) -> ev.Event:
        """A batch the state must refuse (400) if the collection exists and the producer may write it."""
        name = self._name(data, model)
        coll = model.collections.get(name)
        dim = coll.dimension if coll is not None else 4
        flaw = data.draw(st.sampled_from(["dimension", "nan", "inf", "duplicate", "uuid case"]), label="flaw")
        ids: tuple[PointId, ...] = (1, 2, 3)
        if flaw == "dimension":
            dim = dim + data.draw(st.sampled_from([-1, 1]), label="off by")
        elif flaw == "duplicate":
            ids = (1, 2, 1)
        elif flaw == "uuid case":
            ids = (UUID_LOWER, 2, UUID_UPPER)  # distinct strings, one point once normalised
        vectors = data.draw(arrays(np.float32, (3, dim), elements=finite), label="vectors")
        if flaw in ("nan", "inf"):
            vectors[data.draw(st.integers(0, 2)), data.draw(st.integers(0, dim - 1))] = np.nan if flaw == "nan" \
                else -np.inf
        return ev.VectorsUpserted(self._meta(data, model, name), ids, vectors, (None, {"a": 1}, None))

    def _delete(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        return ev.VectorsDeleted(self._meta(data, model, name), self._ids(data, model, name, 6, unique=False))

    def _set(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        ids = self._ids(data, model, name, 6, unique=False)
        key = data.draw(st.sampled_from([None, None, "a", "n"]), label="key")
        if data.draw(st.integers(0, 9), label="invalid key?") == 0:
            key = data.draw(st.sampled_from(INVALID_KEYS), label="invalid key")
        return ev.PayloadSet(self._meta(data, model, name), ids, data.draw(set_payloads, label="payload"), key)

    def _overwrite(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        ids = self._ids(data, model, name, 6, unique=False)
        return ev.PayloadOverwritten(self._meta(data, model, name), ids, data.draw(payloads, label="payload"))

    def _delete_keys(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        ids = self._ids(data, model, name, 6, unique=False)
        keys = data.draw(st.lists(st.sampled_from(KEYS), max_size=3), label="keys")
        if data.draw(st.integers(0, 9), label="invalid key?") == 0:
            keys.append(data.draw(st.sampled_from(INVALID_KEYS), label="invalid key"))
        return ev.PayloadKeysDeleted(self._meta(data, model, name), ids, tuple(keys))

    def _clear(self, data: st.DataObject, model: Model) -> ev.Event:
        name = self._name(data, model)
        return ev.PayloadCleared(self._meta(data, model, name), self._ids(data, model, name, 6, unique=False))

    # Applying ------------------------------------------------------------------------
    def _submit(self, event: ev.Event, unit: int | None) -> None:
        """Put ``event`` on the log and apply its decoded value at that offset; check the outcome."""
        value = encode(event)
        offset = len(self.log)
        expected = self.model.apply(event)
        before = observe(handlers_view(self.state))
        try:
            self.state.apply(decode(value), offset)
            got = None
        except Rejected as exc:
            got = exc.status
            assert observe(handlers_view(self.state)) == before, f"the refused {type(event).__name__} changed the state"
        assert got == expected, f"{type(event).__name__} at offset {offset}: projection says {got}, model {expected}"
        self.log.append(Entry(value, got, unit))

    def _one(self, data: st.DataObject, build: Callable[[st.DataObject, Model], ev.Event]) -> None:
        self._submit(build(data, self.model), None)

    # Rules ---------------------------------------------------------------------------
    @initialize(dimension=st.integers(2, 8), metric=st.sampled_from(ev.METRICS))
    def first_collection(self, dimension: int, metric: ev.Metric) -> None:
        """Start with one collection, so that short programs reach collections of 10 points and more."""
        self._submit(ev.CollectionCreated(ev.EventMeta.new(NAMES[0], "api"), dimension, metric), None)

    @rule(data=st.data())
    def create_collection(self, data: st.DataObject) -> None:
        self._one(data, self._create)

    @rule(data=st.data())
    def delete_collection(self, data: st.DataObject) -> None:
        self._one(data, self._drop)

    @rule(data=st.data())
    def update_collection(self, data: st.DataObject) -> None:
        self._one(data, self._update)

    @rule(data=st.data())
    def upsert(self, data: st.DataObject) -> None:
        self._one(data, self._upsert)

    @rule(data=st.data())
    def upsert_refused(self, data: st.DataObject) -> None:
        self._one(data, self._bad_upsert)

    @rule(data=st.data())
    def delete_points(self, data: st.DataObject) -> None:
        self._one(data, self._delete)

    @rule(data=st.data())
    def set_payload(self, data: st.DataObject) -> None:
        self._one(data, self._set)

    @rule(data=st.data())
    def overwrite_payload(self, data: st.DataObject) -> None:
        self._one(data, self._overwrite)

    @rule(data=st.data())
    def delete_payload_keys(self, data: st.DataObject) -> None:
        self._one(data, self._delete_keys)

    @rule(data=st.data())
    def clear_payload(self, data: st.DataObject) -> None:
        self._one(data, self._clear)

    @rule(data=st.data(), size=st.integers(2, 4))
    def transaction(self, data: st.DataObject, size: int) -> None:
        """2-4 events applied as one unit; each is built from the model the earlier ones leave."""
        builders = [self._create, self._drop, self._update, self._upsert, self._upsert, self._bad_upsert, self._delete,
                    self._set, self._overwrite, self._delete_keys, self._clear]
        scratch = copy.deepcopy(self.model)
        events = []
        for _ in range(size):
            event = data.draw(st.sampled_from(builders), label="event")(data, scratch)
            scratch.apply(event)
            events.append(event)
        self.units += 1
        with self.state.unit({e.collection for e in events}):
            for event in events:
                self._submit(event, self.units)

    @rule()
    def snapshot(self) -> None:
        offsets = {0: len(self.log) - 1}  # the last offset applied, as the projector records it
        path = snapshots.write_snapshot(self.state, offsets, self.snap_dir, "projection-machine", keep=2)
        assert snapshots.verify(path) == []
        self.last_snapshot = (offsets, observe(self.state.collections))

    @rule()
    def restart_from_snapshot(self) -> None:
        """A projector restart: the newest snapshot, then the log after it."""
        loaded = snapshots.load_newest(self.snap_dir, SEGMENT_BYTES)
        if self.last_snapshot is None:
            assert loaded is None
            state, start = ProjectionState(SEGMENT_BYTES), 0
        else:
            assert loaded is not None
            offsets, observed = self.last_snapshot
            assert loaded.offsets == offsets
            assert observe(loaded.state.collections) == observed, "the snapshot did not restore the state it saved"
            state, start = loaded.state, offsets[0] + 1
        replay(state, self.log[start:], start)
        self.state = state

    @rule()
    def rebuild(self) -> None:
        """A projector without snapshots: a fresh state from the whole log."""
        state = ProjectionState(SEGMENT_BYTES)
        replay(state, self.log, 0)
        self.state = state

    # Invariants ----------------------------------------------------------------------
    @invariant()
    def state_is_the_model(self) -> None:
        assert sorted(self.state.collections) == sorted(self.model.collections)
        for name, mc in self.model.collections.items():
            coll = self.state.collections[name]
            assert (coll.config.dimension, coll.config.metric, coll.config.kind) == (mc.dimension, mc.metric, mc.kind)
            assert coll.count() == len(mc.points)
            assert set(coll.label_of) == set(mc.points)
            assert {label: pid for pid, label in coll.label_of.items()} == coll.id_of, "label maps not inverse"
            assert set(coll.payload_of) <= set(coll.id_of)
            free = coll.free_labels
            assert len(set(free)) == len(free) and not set(free) & set(coll.id_of)
            assert set(free) | set(coll.id_of) == set(range(coll.next_label))
            for pid, (vector, payload) in mc.points.items():
                label = coll.label_of[pid]
                assert text(coll.payload_of.get(label)) == text(payload), f"{name}/{pid!r}: payload"
                stored = coll.vector(pid)
                assert stored is not None and stored.dtype == np.float32
                if mc.metric == "cosine":
                    assert np.allclose(stored, mc.prepared(vector), rtol=0, atol=1e-6), f"{name}/{pid!r}: vector"
                else:
                    assert np.array_equal(stored, vector), f"{name}/{pid!r}: vector"

    @invariant()
    def state_is_a_fresh_replay(self) -> None:
        fresh = ProjectionState(SEGMENT_BYTES)
        replay(fresh, self.log, 0)
        assert observe(self.state.collections) == observe(fresh.collections)

    @invariant()
    def search_agrees_with_brute_force(self) -> None:
        for name, mc in self.model.collections.items():
            if not mc.points:
                continue
            coll = self.state.collections[name]
            ordered = sorted(mc.points, key=repr)
            queries = [mc.points[ordered[0]][0], mc.points[ordered[-1]][0], np.ones(mc.dimension, np.float32),
                       np.random.default_rng(len(ordered)).normal(size=mc.dimension).astype(np.float32)]
            want = min(K, len(mc.points))
            recalls = []
            for query in queries:
                brute = mc.scores(query)
                best = sorted(brute.values(), reverse=mc.metric not in ("l2", "manhattan"))[:want]
                for exact in (True, False):
                    hits = search(coll, query, K, exact=exact)
                    ids = [h.id for h in hits]
                    assert len(set(ids)) == len(ids), f"{name}: an id twice in {ids}"
                    assert set(ids) <= set(mc.points), f"{name}: a deleted or unknown id in {ids}"
                    assert len(hits) == want, f"{name}: {len(hits)} hits for k={K} over {len(mc.points)} points"
                    for h in hits:
                        assert h.label == coll.label_of[h.id]
                        assert close(h.score, brute[h.id]), f"{name}/{h.id!r}: score {h.score}, brute {brute[h.id]}"
                    if exact:
                        got = sorted((brute[i] for i in ids), reverse=mc.metric not in ("l2", "manhattan"))
                        assert all(close(a, b) for a, b in zip(got, best, strict=True)), f"{name}: {got} != {best}"
                    else:
                        found = sum(at_least_as_good(brute[i], best[-1], mc.metric) for i in ids)
                        recalls.append(found / want)
            if len(mc.points) >= 10:
                assert np.mean(recalls) >= 0.9, f"{name}: HNSW recall@{K} {np.mean(recalls):.2f} over {len(mc.points)}"


@pytest.mark.xfail(strict=True, reason="product bug: cosine normalisation in float32 underflows for tiny vectors "
                   "(VectorIndex.prepare/normalize); remove this mark and the workaround in _vector once fixed")
def test_cosine_normalises_vectors_whose_float32_norm_underflows() -> None:
    """A finite non-zero vector in a cosine collection is stored with unit length, whatever its scale."""
    state = ProjectionState(SEGMENT_BYTES)
    state.apply(ev.CollectionCreated(ev.EventMeta.new("c", "api"), 2, "cosine"), 0)
    tiny = np.array([[1e-30, 1e-30], [1e-25, 0.0]], np.float32)  # normal float32 values; their squares underflow
    state.apply(decode(encode(ev.VectorsUpserted(ev.EventMeta.new("c", "api"), (1, 2), tiny, (None, None)))), 1)
    coll = state.get("c")
    assert coll is not None
    for pid in (1, 2):
        stored = coll.vector(pid)
        assert stored is not None
        assert np.isclose(np.linalg.norm(stored.astype(np.float64)), 1.0, atol=1e-5), f"{pid}: stored {stored}"
    hits = search(coll, np.array([1.0, 1.0], np.float32), 2, exact=True)
    assert all(-1.0 - 1e-5 <= h.score <= 1.0 + 1e-5 for h in hits), hits


ProjectionMachine.TestCase.settings = settings(
    max_examples=120, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TestProjectionStateMachine = ProjectionMachine.TestCase
