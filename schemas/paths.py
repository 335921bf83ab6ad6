"""Payload key paths: Qdrant's JSON-path grammar, and reading, setting and deleting by path.

One grammar for every place a payload key appears (filters, ``with_payload`` selectors,
``set_payload(key=...)``, ``delete_payload``), matching qdrant-client's local mode
(``qdrant_client/local/json_path_parser.py``, ``payload_value_setter.py``,
``payload_value_extractor.py``), which mirrors the server (``lib/segment/src/json_path``):

* a path is a key followed by any number of ``.key``, ``[]`` (every element of an array)
  and ``[n]`` (element ``n``) steps;
* a plain key is a run of letters, digits, ``_`` and ``-``; any other key is quoted:
  ``"a.b"`` is the single key ``a.b`` (a quoted key ends at the next ``"``; it cannot hold
  one). ``a.b`` never descends into an array: write ``a[].b``.

A parsed path is a tuple of steps: ``str`` (a key), ``int`` (an index) or ``None`` (``[]``).
The first step is always a key. Payloads are JSON-shaped (dict/list/str/int/float/bool/None).
The functions walk paths with explicit stacks, so a very long path cannot exhaust the stack.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from schemas.errors import InvalidPath

__all__ = ["Path", "Step", "delete", "merge", "parse", "set_value", "values"]

#: One step of a path: a key, an array index, or ``None`` for every element (``[]``).
Step = str | int | None
Path = tuple[Step, ...]

_U64_MAX_DIGITS: Final = len(str(2**64 - 1))
_U64_MAX: Final = 2**64 - 1


def parse(key: object, *, field: str = "key") -> Path:
    """The steps of ``key``; raise :class:`InvalidPath` naming ``field`` and the key if it is not a path.

    Accepts exactly what qdrant-client's ``parse_json_path`` accepts (the server additionally
    refuses a backslash inside a quoted key; local mode, the reference here, does not).
    """
    if not isinstance(key, str):
        raise InvalidPath(f"{field}: expected a payload key (a string), got {type(key).__name__}")
    if not key:
        raise _invalid(field, key, "the path is empty")
    steps: list[Step] = []
    pos, end = 0, len(key)
    while True:
        pos = _take_key(key, pos, steps, field)
        pos = _take_brackets(key, pos, steps, field)
        if pos == end:
            return tuple(steps)
        if key[pos] != ".":
            raise _invalid(field, key, f"expected '.' or '[' at position {pos}, found {key[pos]!r}")
        if pos == end - 1:
            raise _invalid(field, key, "the path ends with '.'")
        pos += 1


def values(payload: Any, path: Path, *, flat: bool = True) -> list[Any]:
    """Every value ``path`` selects in ``payload``, in document order; ``[]`` if none.

    ``a.b`` looks into objects only; ``[]`` and ``[n]`` into arrays only; an index past the
    end selects nothing. With ``flat`` (what ``match`` and ``range`` see), a selected array
    is unwrapped one level; without it (``is_empty``, ``is_null``, ``values_count``, nested
    filters) arrays are returned whole. Like qdrant-client's ``value_by_key`` (which returns
    ``None`` where this returns ``[]``).
    """
    current: list[Any] = [payload]
    for step in path:
        following: list[Any] = []
        for data in current:
            if isinstance(step, str):
                if isinstance(data, dict) and step in data:
                    following.append(data[step])
            elif isinstance(data, list):
                if step is None:
                    following.extend(data)
                elif step < len(data):
                    following.append(data[step])
        if not following:
            return following
        current = following
    if not flat:
        return current
    found: list[Any] = []
    for data in current:
        if isinstance(data, list):
            found.extend(data)
        else:
            found.append(data)
    return found


def merge(dest: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Merge ``src`` into ``dest`` in place and return ``dest``: a ``null`` value removes the key.

    Qdrant's ``set_payload`` merge (the server's ``merge_map``). Values are not copied.
    """
    for name, value in src.items():
        if value is None:
            dest.pop(name, None)
        else:
            dest[name] = value
    return dest


def set_value(payload: dict[str, Any], path: Path, value: dict[str, Any]) -> None:
    """``set_payload(value, key=path)``: merge ``value`` into the object(s) at ``path``, in place.

    Exactly qdrant-client's ``set_value_by_key``:

    * a missing key on the way is created as ``{}``; a key whose value is not an object is
      replaced by ``{next_key: ...}``;
    * an index or ``[]`` step meeting something that is not an array replaces it by ``[]``
      and stops there; an index past the end of an array changes nothing;
    * at the end of the path an object gets ``value`` merged in (:func:`merge`), anything
      else is replaced by the merge of ``value`` into ``{}``;
    * under ``[]`` each element receives its own copy of ``value``.

    ``payload`` is changed in place and may come to hold parts of ``value``: pass copies
    when either is shared. ``path`` must come from :func:`parse` (it starts with a key).
    """
    root = [payload]
    last = len(path) - 1
    # (container, slot, position): apply path[position] to container[slot]
    stack: list[tuple[Any, Any, int, dict[str, Any]]] = [(root, 0, 0, value)]
    while stack:
        container, slot, position, val = stack.pop()
        data = container[slot]
        step = path[position]
        if isinstance(step, str):
            if not isinstance(data, dict):
                data = container[slot] = {}
            if position == last:
                _merge_at(data, step, val)
                continue
            data.setdefault(step, {})
            stack.append((data, step, position + 1, val))
        elif not isinstance(data, list):
            container[slot] = []
        elif step is None:
            for i in range(len(data)):
                item_value = copy.deepcopy(val)
                if position == last:
                    _merge_at(data, i, item_value)
                else:
                    stack.append((data, i, position + 1, item_value))
        elif step < len(data):
            if position == last:
                _merge_at(data, step, val)
            else:
                stack.append((data, step, position + 1, val))


def delete(payload: dict[str, Any], path: Path) -> None:
    """``delete_payload([path])``, in place; a path that selects nothing changes nothing.

    Exactly qdrant-client's ``delete_value_by_key``: a final key is removed from the
    object(s) it is in; a final ``[]`` empties the array(s); a final ``[n]`` does nothing (the
    server does not delete array elements by index: that would not be idempotent). ``a.b``
    with ``a`` an array removes nothing (write ``a[].b``).
    """
    last = len(path) - 1
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        data, position = stack.pop()
        step = path[position]
        if position == last:
            if isinstance(step, str) and isinstance(data, dict):
                data.pop(step, None)
            elif step is None and isinstance(data, list):
                data.clear()
        elif isinstance(step, str):
            if isinstance(data, dict) and step in data:
                stack.append((data[step], position + 1))
        elif isinstance(data, list):
            if step is None:
                stack.extend((item, position + 1) for item in data)
            elif step < len(data):
                stack.append((data[step], position + 1))


# --------------------------------------------------------------------------- helpers


def _merge_at(container: Any, slot: Any, value: dict[str, Any]) -> None:
    """The end of a set: merge into the object at ``container[slot]``, or put a new object there."""
    target = container.get(slot) if isinstance(container, dict) else container[slot]
    if isinstance(target, dict):
        merge(target, value)
    else:
        container[slot] = merge({}, value)


def _invalid(field: str, key: str, reason: str) -> InvalidPath:
    shown = key if len(key) <= 80 else key[:77] + "..."
    return InvalidPath(f"{field}: invalid payload key {shown!r}: {reason}")


def _take_key(key: str, pos: int, steps: list[Step], field: str) -> int:
    """One key at ``pos`` (quoted, or a run of letters, digits, ``_``, ``-``); the position after it."""
    if key.startswith('"', pos):
        close = key.find('"', pos + 1)
        if close == -1:
            raise _invalid(field, key, f"the quote at position {pos} is not closed")
        steps.append(key[pos + 1 : close])
        return close + 1
    end = pos
    while end < len(key) and (key[end].isalnum() or key[end] in "_-"):
        end += 1
    if end == pos:
        raise _invalid(field, key, f"expected a key at position {pos}, found {key[pos]!r}")
    steps.append(key[pos:end])
    return end


def _take_brackets(key: str, pos: int, steps: list[Step], field: str) -> int:
    """The ``[]`` / ``[n]`` steps at ``pos``; the position after them."""
    while key.startswith("[", pos):
        close = key.find("]", pos + 1)
        if close == -1:
            raise _invalid(field, key, f"the '[' at position {pos} is not closed")
        inner = key[pos + 1 : close]
        if not inner:
            steps.append(None)
        else:
            digits = inner.lstrip("0") or "0"
            if not (inner.isascii() and inner.isdigit()) or len(digits) > _U64_MAX_DIGITS or int(digits) > _U64_MAX:
                raise _invalid(field, key, f"expected an index (0..2^64-1) or nothing in the brackets at "
                                           f"position {pos}, found {inner!r}")
            steps.append(int(digits))
        pos = close + 1
    return pos
