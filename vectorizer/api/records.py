"""Points as the API returns them: payload selection, vectors, and Qdrant's id order.

Payload selectors follow Qdrant (``with_payload``): ``true`` / ``false``, a list of keys to
include, ``{"include": [...]}`` or ``{"exclude": [...]}``. Keys are JSON paths (``a.b``,
``"a.b"`` for a key holding a dot, ``l[]`` for every element of an array); ``l[0]``
selects nothing, as in Qdrant. A point stored without payload shows ``{}``. Stored payloads
are replaced by the projection, never changed in place, so views may share their parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from projections import query
from projections.collection import Collection
from schemas import paths
from schemas.errors import InvalidPath
from schemas.ids import PointId
from vectorizer.api.errors import BadRequest
from vectorizer.api.floats import shortest
from vectorizer.api.parsing import array, show

Payload = dict[str, Any]
PayloadView = Callable[[Payload | None], Payload | None]
#: A prefix tree of selected paths: ``{"a": {"b": True}, "l": {None: True}}``; ``True`` selects all below.
Tree = dict[Any, Any]


def payload_view(value: object, path: str, *, default: bool) -> PayloadView:
    """Parse a ``with_payload`` value into a function of the stored payload."""
    if value is None:
        value = default
    if value is False:
        return lambda _payload: None
    if value is True:
        return lambda payload: payload or {}  # stored payloads are replaced, never changed in place
    if isinstance(value, list):
        tree = _tree(value, path)
        return lambda payload: _include(payload or {}, tree)
    if isinstance(value, dict) and len(value) == 1 and ("include" in value or "exclude" in value):
        ((kind, keys),) = value.items()
        tree = _tree(array(keys, f"{path}.{kind}"), f"{path}.{kind}")
        if kind == "include":
            return lambda payload: _include(payload or {}, tree)
        return lambda payload: _exclude(payload or {}, tree)
    raise BadRequest(f"{path}: expected true, false, a list of keys, {{\"include\": [...]}} or "
                     f"{{\"exclude\": [...]}}, got {show(value)}")


#: ``with_vector``: all vectors (``True``), none, or those named.
VectorSelector = bool | tuple[str, ...]


def wants_vector(value: object, path: str) -> VectorSelector:
    """``with_vector``: a boolean or a list of vector names (names a collection lacks select nothing)."""
    if value is None:
        return False
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return tuple(value)
    if not isinstance(value, bool):
        raise BadRequest(f"{path}: expected true, false or a list of vector names, got {show(value)}")
    return value


def records(coll: Collection, ids: list[PointId], view: PayloadView, with_vector: VectorSelector,
            scores: list[float] | None = None) -> list[dict[str, Any]]:
    """Qdrant ``Record`` objects (``ScoredPoint`` with ``scores``) of the ``ids`` that exist, in order.

    Read under the collection's read lock; a point deleted since ``ids`` were chosen is left out.
    """
    found = query.points(coll, ids, with_vector)
    vectors = found.vectors
    out = []
    for i, pid, payload in zip(found.positions, found.ids, found.payloads, strict=True):
        rec: dict[str, Any] = {"id": pid} if scores is None else {"id": pid, "version": 0, "score": scores[i]}
        rec["payload"] = view(payload)
        out.append(rec)
    # Shortest round-trip decimals, as Qdrant prints float32 (0.15, not 0.15000000596046448).
    if found.named is not None:
        for rec, vector in zip(out, _vector_structs(found.named, len(out)), strict=True):
            rec["vector"] = vector
        return out
    rows = [None] * len(out) if vectors is None else shortest(vectors).tolist()
    for rec, vector in zip(out, rows, strict=True):
        rec["vector"] = vector
    return out


def _vector_structs(named: dict[str, tuple[Any, Any]], count: int) -> list[Any]:
    """Qdrant's ``VectorStruct`` per point: ``{name: dense list or {indices, values}}``, or the bare
    list when the unnamed vector is all there is (as Qdrant and qdrant-client answer)."""
    structs: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, (held, rows) in named.items():
        at = np.flatnonzero(held).tolist()
        if isinstance(rows, np.ndarray):
            values: list[Any] = shortest(rows).tolist() if len(at) else []
        else:
            values = [{"indices": indices.tolist(), "values": shortest(vals.reshape(1, -1))[0].tolist()
                       if len(vals) else []} for indices, vals in rows]
        for i, value in zip(at, values, strict=True):
            structs[i][name] = value
    return [s[""] if len(s) == 1 and "" in s else s for s in structs]


# Selector trees ------------------------------------------------------------------------
def _tree(keys: list[Any], path: str) -> Tree:
    tree: Tree = {}
    for i, key in enumerate(keys):
        steps = _steps(key, f"{path}[{i}]")
        node = tree
        for step in steps[:-1]:
            child = node.setdefault(step, {})
            if child is True:  # a shorter path already selects everything below
                break
            node = child
        else:
            node[steps[-1]] = True
    return tree


def _steps(key: object, path: str) -> paths.Path:
    """``a.b[].c`` -> ``("a", "b", None, "c")``; ``l[0]`` -> ``("l", 0)`` (:func:`schemas.paths.parse`)."""
    if not isinstance(key, str) or not key:
        raise BadRequest(f"{path}: expected a payload key, got {show(key)}")
    try:
        return paths.parse(key, field=path)
    except InvalidPath as exc:
        raise BadRequest(str(exc)) from None


def _include(value: Any, tree: Tree) -> Any:
    if isinstance(value, dict):
        return {k: v if tree[k] is True else _include(v, tree[k]) for k, v in value.items() if k in tree}
    if isinstance(value, list):
        if None not in tree:  # only `[]` applies to array elements
            return []
        return value if tree[None] is True else [_include(v, tree[None]) for v in value]
    return value


def _exclude(value: Any, tree: Tree) -> Any:
    if isinstance(value, dict):
        return {k: v if k not in tree else _exclude(v, tree[k]) for k, v in value.items() if tree.get(k) is not True}
    if isinstance(value, list):
        if None not in tree:
            return value
        return [] if tree[None] is True else [_exclude(v, tree[None]) for v in value]
    return value
