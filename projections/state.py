"""The projection's in-memory state and its event handlers.

``ProjectionState.apply(event, offset)`` dispatches on the event type. A handler checks the
event against the current state, mutates the state, and returns the catalog changes that
mirror it (absolute values). An event that is well-formed but invalid for the current
state raises :class:`Rejected` *before* touching anything, so the decision depends only
on the events before it: every replay rejects the same events.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from functools import singledispatchmethod
from typing import Any, TypeVar

import numpy as np

from projections.changes import (
    Change,
    ConfigureCollection,
    DeletePoints,
    DropCollection,
    PointRow,
    PutAliases,
    PutCollection,
    PutPoints,
)
from projections.collection import Collection, CollectionConfig, canonical_json, point_checksum, vector_record
from projections.errors import InvalidFilter, Rejected
from projections.filters import parse_filter
from projections.index.segments import DEFAULT_SEGMENT_BYTES, segment_size_for
from schemas import events as ev
from schemas import paths
from schemas import validation as check
from schemas.errors import InvalidPath, ValidationError
from schemas.ids import PointId, catalog_key


class ProjectionState:
    """Collections by name, their aliases, and the handlers that change them (the projector's thread only).

    Readers see :attr:`collections` and :attr:`aliases` change only whole: a handler replaces a
    dict rather than editing it, and inside :meth:`unit` the new dicts are published once, at the
    end, while the write locks of the collections the unit touches are held. So a reader sees a
    unit's events all applied or none (see ``consumers.units``).
    """

    def __init__(self, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.segment_bytes = segment_bytes  # the size of a new collection's index segments (of vector data)
        self.collections: dict[str, Collection] = {}  # published: readers' view, replaced whole
        self._staged: dict[str, Collection] | None = None  # inside a unit: the handlers' view
        self.aliases: dict[str, str] = {}  # alias -> collection name; published, replaced whole
        self._staged_aliases: dict[str, str] | None = None

    def get(self, name: str) -> Collection | None:
        return self.collections.get(name)

    @contextlib.contextmanager
    def unit(self, names: Iterable[str]) -> Iterator[None]:
        """Apply several events as one step for readers: hold the write locks of the existing
        collections among ``names`` (readers of them wait), stage creations and deletions, and
        publish the result once when the block ends."""
        with contextlib.ExitStack() as held:
            for name in sorted(set(names)):
                coll = self.collections.get(name)
                if coll is not None:
                    held.enter_context(coll.lock.write())
            self._staged, self._staged_aliases = dict(self.collections), dict(self.aliases)
            try:
                yield
            finally:  # what was applied is published, even if the block failed half-way
                self.collections, self._staged = self._staged, None
                self.aliases, self._staged_aliases = self._staged_aliases, None

    def _working(self) -> dict[str, Collection]:
        return self.collections if self._staged is None else self._staged

    def _replace(self, name: str, coll: Collection | None) -> None:
        """Add, or remove (``None``), one collection without editing a dict a reader may hold."""
        target = dict(self.collections) if self._staged is None else self._staged
        if coll is None:
            target.pop(name, None)
        else:
            target[name] = coll
        if self._staged is None:
            self.collections = target

    def _working_aliases(self) -> dict[str, str]:
        return self.aliases if self._staged_aliases is None else self._staged_aliases

    def _replace_aliases(self, aliases: dict[str, str]) -> None:
        if self._staged_aliases is None:
            self.aliases = aliases
        else:
            self._staged_aliases = aliases

    def _existing(self, event: ev.Event) -> Collection:
        coll = self._working().get(event.collection)
        if coll is None:
            raise Rejected(f"collection {event.collection!r} does not exist", 404)
        if coll.config.kind == "workspace" and not ev.is_workspace_producer(event.meta.producer_id):
            raise Rejected(f"collection {event.collection!r} is a workspace collection (read-only): only the "
                           f"workspace producer changes it, this event came from {event.meta.producer_id!r}", 403)
        return coll

    @singledispatchmethod
    def apply(self, event: ev.Event, offset: int) -> list[Change]:
        raise Rejected(f"no handler for {type(event).__name__}")

    @apply.register
    def _(self, event: ev.CollectionCreated, offset: int) -> list[Change]:
        if event.collection in self._working():
            raise Rejected(f"collection {event.collection!r} already exists", 409)
        if event.collection in self._working_aliases():
            raise Rejected(f"Wrong input: Can't create collection with name {event.collection}. Alias with the same "
                           "name already exists")
        config = CollectionConfig.from_event(event)
        check_config(config)
        self._replace(event.collection, Collection(config, offset,
                                                 segment_size=segment_size_for(config.widest(), self.segment_bytes)))
        return [PutCollection(event, offset)]

    @apply.register
    def _(self, event: ev.CollectionUpdated, offset: int) -> list[Change]:
        """New index settings: the graphs are built again from the vectors the collection holds
        (readers of the collection wait meanwhile), so from here on it searches as if created so."""
        coll = self._existing(event)
        try:
            diff = json.loads(check.collection_diff(json.loads(event.diff)))
        except (ValueError, ValidationError) as exc:
            raise Rejected(f"collection {event.collection!r}: settings: {exc}") from None
        for name in diff.get("named", {}):
            if name not in coll.named:
                raise Rejected(f"Wrong input: Not existing vector name error: {name}")
        for name in diff.get("sparse", {}):
            if name not in coll.sparse:
                raise Rejected(f"Wrong input: Not existing vector name error: {name}")
        if "vector" in diff and not coll.config.has_unnamed:
            raise Rejected("Wrong input: Not existing vector name error: ")
        config = coll.config.updated(diff).with_named(diff)
        _buildable(coll.name, config)
        with coll.lock.write():
            if coll.config.has_unnamed and not config.builds_graphs_like(coll.config):
                coll.index = coll.index.rebuilt(config.m, config.ef_construction, config.quantization, config.on_disk)
            old = coll.config.named()
            for name, spec in config.named().items():
                if not spec.builds_graphs_like(old[name]):
                    coll.named[name] = coll.named[name].rebuilt(spec.m, spec.ef_construction, spec.quantization,
                                                                spec.on_disk)
            for name, params in config.sparse().items():
                coll.sparse[name].idf = params.get("modifier") == "idf"
            coll.config = config
        return [ConfigureCollection(coll.name, config.m, config.ef_construction)]

    @apply.register
    def _(self, event: ev.CollectionDeleted, offset: int) -> list[Change]:
        coll = self._existing(event)
        with coll.lock.write():
            self._replace(event.collection, None)
        aliases = self._working_aliases()
        if event.collection not in aliases.values():
            return [DropCollection(event.collection)]
        kept = {a: c for a, c in aliases.items() if c != event.collection}  # its aliases go with it
        self._replace_aliases(kept)
        return [DropCollection(event.collection), PutAliases(tuple(sorted(kept.items())))]

    @apply.register
    def _(self, event: ev.AliasesChanged, offset: int) -> list[Change]:
        """Qdrant's alias actions, in order, all or none: the first that cannot apply rejects the
        event before anything changed (Qdrant's status and message)."""
        aliases = changed_aliases(self._working_aliases(), self._working(), event.actions)
        self._replace_aliases(aliases)
        return [PutAliases(tuple(sorted(aliases.items())))]

    @apply.register
    def _(self, event: ev.VectorsUpserted, offset: int) -> list[Change]:
        coll = self._existing(event)
        n, dim = event.vectors.shape
        if dim != coll.config.dimension and n:
            raise Rejected(f"collection {coll.name!r}: vectors have dimension {dim}, the collection "
                           f"{coll.config.dimension}" if coll.config.has_unnamed or dim else
                           f"collection {coll.name!r}: the points carry no unnamed vector, the collection needs one")
        if not np.isfinite(event.vectors).all():
            raise Rejected(f"collection {coll.name!r}: vectors hold NaN or infinity")
        if len(set(event.ids)) != len(event.ids):
            raise Rejected(f"collection {coll.name!r}: duplicate ids in one batch")
        check_named(coll, event.named, event.sparse, allow_unnamed=False)
        if event.update_mode != "upsert" or event.update_filter is not None:
            event = _conditional(coll, event)
            n = len(event.ids)
        if n == 0:
            return []
        if event.stored_form:
            check_stored_rows(coll, [("", event.vectors), *((rows.name, rows.vectors) for rows in event.named)])
        prepared = coll.index.prepare(event.vectors) if coll.config.has_unnamed and not event.stored_form \
            else event.vectors
        with coll.lock.write():
            live = [i for i, pid in enumerate(event.ids) if pid in coll.label_of]
            labels = np.fromiter((coll.allocate(pid) for pid in event.ids), dtype=np.int64, count=n)
            if coll.config.has_unnamed:
                changed = np.ones(n, dtype=bool)
                if live:  # a point re-upserted with the very same vector (a retry, a payload-only update)
                    # keeps its place in the graph: re-linking it costs ~4 inserts. A point whose vector
                    # delete_vectors removed has none to compare: it gets the new one.
                    at = np.asarray(live, dtype=np.int64)
                    held = at[coll.index.holds(labels[at])]
                    stored = coll.index.vectors(labels[held])
                    changed[held] = ~np.all(stored == prepared[held], axis=1)
                coll.index.add(labels[changed], prepared[changed])
            if coll.has_named:  # an upsert replaces the whole point: its named vectors go, then the new ones
                for label in labels[live].tolist():
                    coll.drop_vectors(label, [*coll.named, *coll.sparse])
                named_rows = _put_named(coll, labels, event.named, event.sparse, stored_form=event.stored_form)
            for label, payload in zip(labels.tolist(), event.payloads, strict=True):
                coll.set_payload(label, payload)
        vectors: list[Any] = _upserted_bytes(coll, prepared, named_rows, event) if coll.has_named else list(prepared)
        rows = []
        for pid, label, payload, vector in zip(event.ids, labels.tolist(), event.payloads, vectors, strict=True):
            text = canonical_json(payload)
            rows.append(PointRow(catalog_key(pid), label, text, point_checksum(vector, text), offset))
        return [PutPoints(coll.name, tuple(rows))]

    @apply.register
    def _(self, event: ev.PointVectorsUpdated, offset: int) -> list[Change]:
        """Qdrant's ``update_vectors``: every point must exist (else the event is rejected, as
        Qdrant answers 404); the vectors given replace those of the same names."""
        coll = self._existing(event)
        if len(set(event.ids)) != len(event.ids):
            raise Rejected(f"collection {coll.name!r}: duplicate ids in one batch")
        missing = [pid for pid in event.ids if pid not in coll.label_of]
        if missing:
            raise Rejected(f"No point with id {missing[0]} found", 404)
        check_named(coll, event.named, event.sparse, allow_unnamed=True)
        if event.update_filter is not None:
            matches = _update_filter(coll, event.update_filter)
            event = _selected(event, np.array([matches(pid) for pid in event.ids], dtype=bool))
        labels = np.array([coll.label_of[pid] for pid in event.ids], dtype=np.int64)
        with coll.lock.write():
            _put_named(coll, labels, event.named, event.sparse)
            for label in labels.tolist():
                coll.touch(label)
        return self._point_rows(coll, list(zip(event.ids, labels.tolist(), strict=True)), offset)

    @apply.register
    def _(self, event: ev.PointVectorsDeleted, offset: int) -> list[Change]:
        """Qdrant's ``delete_vectors``: unknown ids are ignored; an unknown vector name rejects the event."""
        coll = self._existing(event)
        for name in event.names:
            if coll.dense(name) is None and name not in coll.sparse:
                raise Rejected(f"Wrong input: Not existing vector name error: {name}")
        with coll.lock.write():
            present = [(pid, coll.label_of[pid]) for pid in dict.fromkeys(event.ids) if pid in coll.label_of]
            for _pid, label in present:
                coll.drop_vectors(label, event.names)
        return self._point_rows(coll, present, offset)

    @apply.register
    def _(self, event: ev.VectorsDeleted, offset: int) -> list[Change]:
        coll = self._existing(event)
        with coll.lock.write():
            for pid in event.ids:
                coll.remove(pid)
        return [DeletePoints(coll.name, tuple(catalog_key(pid) for pid in event.ids))]

    @apply.register
    def _(self, event: ev.PayloadSet, offset: int) -> list[Change]:
        """Qdrant's ``set_payload``: merge (a null removes its key) at the root or at a JSON path."""
        if ev.holds_dotted_keys(event):
            return self._rewrite_payloads(event, event.ids, lambda old: _legacy_set_dotted(old, event), offset)
        path = None if event.key is None else _parsed(event.key, "key")

        def merge(old: ev.Payload | None) -> ev.Payload:
            new = copy.deepcopy(old) if old else {}
            value = copy.deepcopy(event.payload)
            if path is None:
                paths.merge(new, value)
            else:
                paths.set_value(new, path, value)
            return new
        return self._rewrite_payloads(event, event.ids, merge, offset)

    @apply.register
    def _(self, event: ev.PayloadOverwritten, offset: int) -> list[Change]:
        return self._rewrite_payloads(event, event.ids, lambda _old: copy.deepcopy(event.payload), offset)

    @apply.register
    def _(self, event: ev.PayloadKeysDeleted, offset: int) -> list[Change]:
        """Qdrant's ``delete_payload``: remove what each JSON path selects."""
        if ev.holds_dotted_keys(event):
            return self._rewrite_payloads(event, event.ids, lambda old: _legacy_delete_dotted(old, event), offset)
        selected = [_parsed(key, f"keys[{i}]") for i, key in enumerate(event.keys)]

        def drop(old: ev.Payload | None) -> ev.Payload | None:
            if not old:
                return old
            new = copy.deepcopy(old)
            for path in selected:
                paths.delete(new, path)
            return new
        return self._rewrite_payloads(event, event.ids, drop, offset)

    @apply.register
    def _(self, event: ev.PayloadCleared, offset: int) -> list[Change]:
        return self._rewrite_payloads(event, event.ids, lambda _old: {}, offset)

    @apply.register
    def _(self, event: ev.PayloadIndexCreated, offset: int) -> list[Change]:
        """An index on a payload field, built from the payloads held and kept on every later write
        (readers of the collection wait while it is built). An index on the same path is replaced."""
        coll = self._existing(event)
        try:
            field = check.payload_path(event.field_name, field="field_name")
            schema = json.loads(check.payload_field_schema(json.loads(event.field_schema)))
        except (ValueError, ValidationError) as exc:
            raise Rejected(f"collection {event.collection!r}: payload index: {exc}") from None
        with coll.lock.write():
            coll.config = _without_index(coll.config, paths.parse(field)).with_payload_index(field, schema)
            coll.indexes.create(field, schema, coll.payload_of)
            coll.keep_rows(True)
        return []

    @apply.register
    def _(self, event: ev.PayloadIndexDropped, offset: int) -> list[Change]:
        coll = self._existing(event)
        path = _parsed(event.field_name, "field_name")
        with coll.lock.write():
            coll.config = _without_index(coll.config, path)
            coll.indexes.drop(event.field_name)
            coll.keep_rows(bool(coll.indexes))
        return []

    def _rewrite_payloads(self, event: ev.Event, ids: tuple[PointId, ...], rewrite: Any,
                          offset: int) -> list[Change]:
        """Apply ``rewrite(old) -> new`` to each existing point; unknown ids are ignored."""
        coll = self._existing(event)
        with coll.lock.write():
            present = [(pid, coll.label_of[pid]) for pid in dict.fromkeys(ids) if pid in coll.label_of]
            for _pid, label in present:
                coll.set_payload(label, rewrite(coll.payload_of.get(label)))
        return self._point_rows(coll, present, offset)

    @staticmethod
    def _point_rows(coll: Collection, present: list[tuple[PointId, int]], offset: int) -> list[Change]:
        """The catalog rows of points whose payload or vectors changed."""
        if not present:
            return []
        vectors: Iterable[Any] = coll.vector_records([label for _, label in present])
        rows = []
        for (pid, label), vector in zip(present, vectors, strict=True):
            text = canonical_json(coll.payload_of.get(label))
            rows.append(PointRow(catalog_key(pid), label, text, point_checksum(vector, text), offset))
        return [PutPoints(coll.name, tuple(rows))]


def changed_aliases(aliases: Mapping[str, str], collections: Container[str],
                    actions: Iterable[ev.AliasAction]) -> dict[str, str]:
    """``aliases`` after Qdrant's alias ``actions``, in order (a new dict); the first that cannot
    apply raises :class:`Rejected` with Qdrant's status and message, and nothing changed. Shared by
    the projection and the API's check before publishing. As Qdrant: a create or rename replaces
    an alias of the same name, deleting a missing alias is no error. As Qdrant's local mode (and
    unlike its server, which lets a rename take a collection's name and shadow it): no alias takes
    a collection's name."""
    out = dict(aliases)
    for action in actions:
        try:
            check.alias_name(action.alias)
            if action.new_alias is not None:
                check.alias_name(action.new_alias, "new_alias_name")
        except ValidationError as exc:
            raise Rejected(str(exc)) from None
        if action.kind == "create":
            if action.collection is None or action.collection not in collections:
                raise Rejected(f"Not found: Collection `{action.collection}` doesn't exist!", 404)
            if action.alias in collections:
                raise Rejected(f"Wrong input: Collection `{action.alias}` already exists!", 409)
            out[action.alias] = action.collection
        elif action.kind == "delete":
            out.pop(action.alias, None)
        elif action.kind == "rename" and action.new_alias is not None:
            if action.alias not in out:
                raise Rejected(f"Not found: Alias {action.alias} does not exists!", 404)
            if action.new_alias in collections:
                raise Rejected(f"Wrong input: Collection `{action.new_alias}` already exists!", 409)
            out[action.new_alias] = out.pop(action.alias)
        else:
            raise Rejected(f"alias action {action.kind!r}: not one of create, delete, rename (with new_alias_name)")
    return out


def check_named(coll: Collection, named: tuple[ev.NamedRows, ...], sparse: tuple[ev.SparseRows, ...], *,
                 allow_unnamed: bool) -> None:
    """Reject named vectors the collection does not have, of the wrong size, not finite, or
    sparse vectors with a repeated index (before anything is applied)."""
    seen: set[str] = set()
    for rows in named:
        index = coll.dense(rows.name) if rows.name or allow_unnamed else None
        if index is None:
            raise Rejected(f"Wrong input: Not existing vector name error: {rows.name}")
        if rows.name in seen:
            raise Rejected(f"collection {coll.name!r}: vector {rows.name!r} given twice")
        seen.add(rows.name)
        if len(rows.positions) and rows.vectors.shape[1] != index.dimension:
            raise Rejected(f"Wrong input: Vector dimension error: expected dim: {index.dimension}, "
                           f"got {rows.vectors.shape[1]} (vector {rows.name!r})")
        if not np.isfinite(rows.vectors).all():
            raise Rejected(f"collection {coll.name!r}: vector {rows.name!r} holds NaN or infinity")
    for block in sparse:
        if block.name not in coll.sparse:
            raise Rejected(f"Wrong input: Not existing vector name error: {block.name}")
        if block.name in seen:
            raise Rejected(f"collection {coll.name!r}: vector {block.name!r} given twice")
        seen.add(block.name)
        try:
            check.sparse_rows(block.offsets, block.indices, block.values, field=block.name)
        except ValidationError as exc:
            raise Rejected(str(exc)) from None


def check_config(config: CollectionConfig) -> None:
    """Reject settings of a new collection the projection cannot hold (:class:`Rejected`): the
    dimension, HNSW parameters, named and sparse vectors, and what no graph here can be built with."""
    named = config.vectors is not None or config.sparse_vectors is not None
    if not (0 if named else 1) <= config.dimension <= 65_536 or config.m < 2 or config.ef_construction < 1 \
            or config.ef < 1:
        raise Rejected(f"collection {config.name!r}: invalid HNSW parameters or dimension")
    try:
        check.named_vectors(config.vectors, config.sparse_vectors)
    except ValidationError as exc:
        raise Rejected(f"collection {config.name!r}: {exc}") from None
    _buildable(config.name, config)


def check_stored_rows(coll: Collection, blocks: Iterable[tuple[str, np.ndarray]]) -> None:
    """Reject rows said to be as stored (``(vector name, rows)``; ``""`` the unnamed vector) that the
    collection could not hold so: of another dimension, or, for a cosine vector, not unit length (or zero)."""
    for name, rows in blocks:
        index = coll.dense(name)
        if index is None or not len(rows):
            continue
        if rows.shape[1] != index.dimension:
            raise Rejected(f"Wrong input: Vector dimension error: expected dim: {index.dimension}, "
                           f"got {rows.shape[1]} (vector {name!r})")
        if index.metric != "cosine":
            continue
        norms = np.linalg.norm(rows.astype(np.float64), axis=1)
        if not np.all((np.abs(norms - 1.0) < 1e-4) | (norms == 0)):
            raise Rejected(f"collection {coll.name!r}: vector {name!r} rows are said to be stored form "
                           "(normalised) but are not unit length")


def _update_filter(coll: Collection, source: str) -> Callable[[PointId], bool]:
    """Whether an existing point matches an event's ``update_filter`` (checked when its event is applied)."""
    try:
        flt = parse_filter(json.loads(source), field="update_filter", has_vector=coll.has_vector)
    except (ValueError, InvalidFilter) as exc:
        raise Rejected(f"update_filter: {exc}") from None
    assert flt is not None
    return lambda pid: flt.matches(pid, coll.payload_of.get(coll.label_of[pid]))


def _conditional(coll: Collection, event: ev.VectorsUpserted) -> ev.VectorsUpserted:
    """The points of a conditional upsert (Qdrant's ``update_mode`` and ``update_filter``) it writes:
    ``insert_only`` skips the points that exist, ``update_only`` those that do not, and an existing
    point not matching ``update_filter`` is left as it is (points that do not exist are inserted
    regardless of the filter, as Qdrant does)."""
    exists = np.array([pid in coll.label_of for pid in event.ids], dtype=bool)
    keep = ~exists if event.update_mode == "insert_only" else exists if event.update_mode == "update_only" \
        else np.ones(len(event.ids), dtype=bool)
    if event.update_filter is not None and event.update_mode != "insert_only":
        matches = _update_filter(coll, event.update_filter)
        keep &= np.array([not there or matches(pid) for pid, there in zip(event.ids, exists.tolist(), strict=True)],
                         dtype=bool)
    return _selected(event, keep)


_Selectable = TypeVar("_Selectable", ev.VectorsUpserted, ev.PointVectorsUpdated)


def _selected(event: _Selectable, keep: np.ndarray) -> _Selectable:
    """``event`` with only the points where ``keep`` is true (named and sparse blocks renumbered)."""
    if keep.all():
        return event
    renumbered = np.cumsum(keep) - 1  # a kept point's position in the new event
    named = []
    for rows in event.named:
        kept = keep[rows.positions]
        named.append(ev.NamedRows(rows.name, renumbered[rows.positions[kept]], rows.vectors[kept]))
    sparse = []
    for block in event.sparse:
        kept = keep[block.positions]
        lengths = np.diff(block.offsets)[kept]
        entries = np.repeat(kept, np.diff(block.offsets))  # one per stored (index, value) pair
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        sparse.append(ev.SparseRows(block.name, renumbered[block.positions[kept]], offsets,
                                    block.indices[entries], block.values[entries]))
    ids = tuple(pid for pid, wanted in zip(event.ids, keep.tolist(), strict=True) if wanted)
    if isinstance(event, ev.VectorsUpserted):
        payloads = tuple(p for p, wanted in zip(event.payloads, keep.tolist(), strict=True) if wanted) \
            if event.payloads else ()
        return dataclasses.replace(event, ids=ids, vectors=event.vectors[keep], payloads=payloads,
                                   named=tuple(named), sparse=tuple(sparse))
    return dataclasses.replace(event, ids=ids, named=tuple(named), sparse=tuple(sparse))


def _upserted_bytes(coll: Collection, prepared: np.ndarray, named: dict[str, np.ndarray],
                    event: ev.VectorsUpserted) -> list[bytes]:
    """Each upserted point's :func:`vector_record` from the event and the rows as stored (``named``:
    the prepared rows :func:`_put_named` added), rather than read back from the indexes: the same
    bytes (the point holds exactly these vectors now), a tenth of the time."""
    n = len(event.ids)
    dense: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(n)]
    sparse: list[list[tuple[str, np.ndarray, np.ndarray]]] = [[] for _ in range(n)]
    for rows in event.named:
        for position, row in zip(rows.positions.tolist(), named[rows.name], strict=True):
            dense[position].append((rows.name, row))
    for block in event.sparse:
        for i, position in enumerate(block.positions.tolist()):
            sparse[position].append((block.name, *block.row(i)))
    return [vector_record(prepared[i] if coll.config.has_unnamed else None, dense[i], sparse[i]) for i in range(n)]


def _put_named(coll: Collection, labels: np.ndarray, named: tuple[ev.NamedRows, ...],
               sparse: tuple[ev.SparseRows, ...], *, stored_form: bool = False) -> dict[str, np.ndarray]:
    """Store the named vectors of a batch whose points hold ``labels`` (checked by :func:`check_named`);
    return the dense rows as stored (prepared: normalised for cosine, unless already ``stored_form``), by name."""
    stored = {}
    for rows in named:
        index = coll.dense(rows.name)
        assert index is not None
        stored[rows.name] = index.prepare(rows.vectors) if len(rows.positions) and not stored_form else rows.vectors
        if len(rows.positions):
            index.add(labels[rows.positions], stored[rows.name])
    for block in sparse:
        coll.sparse[block.name].put_many(labels[block.positions], block.offsets, block.indices, block.values)
    return stored


def _without_index(config: CollectionConfig, path: paths.Path) -> CollectionConfig:
    """``config`` without its payload index on ``path`` (however its field name spells the path)."""
    for field in config.payload_schema():
        if paths.parse(field) == path:
            config = config.with_payload_index(field, None)
    return config


def _parsed(key: str, field: str) -> paths.Path:
    """The JSON path of a v2 event; an invalid one (a producer that skipped validation) is rejected."""
    try:
        return paths.parse(key, field=field)
    except InvalidPath as exc:
        raise Rejected(str(exc)) from None


# Schema v1 payload events (ev.DOTTED_KEYS_VERSION): their keys are split on every ".", and a
# deletion descends into arrays. Kept as they were, so a log holding them replays unchanged.
def _legacy_set_dotted(old: ev.Payload | None, event: ev.PayloadSet) -> ev.Payload:
    """A v1 PayloadSet: ``update`` at the root, or at ``key.split(".")`` (non-objects on the way replaced)."""
    new = copy.deepcopy(old) if old else {}
    if event.key is None:
        new.update(copy.deepcopy(event.payload))
        return new
    target = new
    parts = event.key.split(".")
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    slot = target.get(parts[-1])
    if isinstance(slot, dict):
        slot.update(copy.deepcopy(event.payload))
    else:
        target[parts[-1]] = copy.deepcopy(event.payload)
    return new


def _legacy_delete_dotted(old: ev.Payload | None, event: ev.PayloadKeysDeleted) -> ev.Payload | None:
    """A v1 PayloadKeysDeleted: each key split on ".", applied to every object element of arrays met."""
    if not old:
        return old
    new = copy.deepcopy(old)
    for key in event.keys:
        _legacy_delete_path(new, key.split("."))
    return new


def _legacy_delete_path(payload: dict[str, Any], parts: list[str]) -> None:
    if len(parts) == 1:
        payload.pop(parts[0], None)
        return
    child = payload.get(parts[0])
    if isinstance(child, dict):
        _legacy_delete_path(child, parts[1:])
    elif isinstance(child, list):
        for item in child:
            if isinstance(item, dict):
                _legacy_delete_path(item, parts[1:])


def _buildable(name: str, config: CollectionConfig) -> None:
    """Reject settings no graph here can be built with: scalar quantization of a Manhattan vector
    (faiss's scalar quantizer has no L1 metric; docs/decisions/0008)."""
    for vector, spec in config.dense().items():
        if spec.metric == "manhattan" and spec.quantization is not None:
            raise Rejected(f"collection {name!r}: vector {vector!r}: scalar quantization is not supported with the "
                           f"Manhattan distance by this server")
