"""Qdrant-compatible payload filters: validate the REST JSON once, evaluate it many times.

:func:`parse_filter` turns the ``filter`` object of a Qdrant REST request into an immutable
:class:`Filter` whose :meth:`Filter.matches` is a tree of pre-built closures, cheap enough to
run for every node an HNSW search visits. Validation happens entirely at parse time; a
malformed filter raises :class:`~projections.errors.InvalidFilter` whose message starts with
the JSON path of the offending value (``filter.must[1].range.gt: expected a number, got
'abc'``). No other exception escapes :func:`parse_filter`, whatever JSON it is given.

The semantics follow qdrant-client's local mode (``qdrant_client/local/payload_filters.py``),
which mirrors the Qdrant server:

* ``must`` — all conditions hold; ``must_not`` — none holds; ``should`` — at least one holds
  (an empty ``should`` list is no constraint); ``min_should`` — at least ``min_count`` of its
  conditions hold. Each clause takes one condition or a list; a condition may itself be a
  filter. ``{}`` matches everything.
* Keys are JSON paths (one grammar for the whole project, :mod:`schemas.paths`): ``a.b``,
  ``"quoted.key"``, ``a[].b`` (every element of array ``a``), ``a[0]`` (one element). A
  plain ``.`` step does *not* descend into arrays (``a.b`` finds nothing when ``a`` is an
  array — write ``a[].b``), exactly as in Qdrant. An array found at
  the end of the path is unwrapped one level, so a condition on it holds when any element
  satisfies it.
* Exact matches keep JSON types apart: ``true`` is not ``1`` and ``1.0`` is not ``1``.
  Ranges compare only integers and floats (never booleans or strings).
* ``match.text`` / ``text_any`` / ``phrase`` compare lowercase word tokens (the server's
  behaviour on a field without a text index); ``match.substring`` / ``prefix`` are
  case-sensitive substring / prefix tests.

* A ``range`` whose bounds are strings is a datetime range (Qdrant's ``DatetimeRange``):
  string values that parse as datetimes (:mod:`projections.datetimes`) compared as instants.

Deliberately unsupported (rejected with :class:`InvalidFilter`):
``has_vector`` and ``slice`` conditions, and field conditions carrying more than one
operator (Qdrant's behaviour there is ambiguous: the server ORs them, local mode uses the
first one).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from projections import datetimes
from projections.errors import InvalidFilter
from schemas import paths
from schemas.errors import InvalidPath, InvalidPointId
from schemas.ids import PointId, normalize_point_id

__all__ = ["MAX_DEPTH", "Filter", "parse_filter"]

Payload = dict[str, Any]
#: A compiled condition: ``(point_id, payload) -> bool``. ``point_id`` is ``None`` inside a
#: nested filter, where conditions see an array element rather than a point.
Predicate = Callable[[PointId | None, Payload], bool]
#: A test of one payload value found under a key.
ValueTest = Callable[[Any], bool]
#: Returns the payload values a key resolves to (possibly none).
Getter = Callable[[Payload], Sequence[Any]]

#: Sub-filters and nested conditions may nest at most this many levels below the top filter.
MAX_DEPTH: Final = 64

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_EMPTY_PAYLOAD: Final[Payload] = {}
_MISSING: Final = object()

_FILTER_KEYS: Final = frozenset({"must", "should", "must_not", "min_should"})
_FIELD_OPS: Final = (
    "match",
    "range",
    "geo_bounding_box",
    "geo_radius",
    "geo_polygon",
    "values_count",
    "is_empty",
    "is_null",
)
_FIELD_KEYS: Final = frozenset({"key", *_FIELD_OPS})
_SPECIAL_KINDS: Final = frozenset({"is_empty", "is_null", "has_id", "nested", "has_vector", "slice"})
_CONDITION_KEYS: Final = _FILTER_KEYS | _FIELD_KEYS | _SPECIAL_KINDS
_MATCH_KINDS: Final = ("value", "any", "except", "text", "text_any", "phrase", "prefix", "substring")
_BOUNDS: Final = ("gt", "gte", "lt", "lte")
_TOKEN_RE: Final = re.compile(r"[^\W_]+")


# --------------------------------------------------------------------------- public API


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Filter:
    """A validated, compiled filter. Immutable and safe to share between threads.

    ``referenced_keys`` holds every payload key the filter reads, as written in the filter;
    keys inside a nested condition on ``k`` appear as ``k[].inner`` (and ``k`` itself).
    """

    _predicate: Predicate = dataclasses.field(repr=False)
    referenced_keys: frozenset[str]
    #: The filter as given (validated JSON): what ``projections.planner`` reads to answer it
    #: from payload indexes.
    source: Any = dataclasses.field(default=None, repr=False)

    def matches(self, point_id: PointId, payload: Payload | None) -> bool:
        """Whether the point satisfies the filter; a ``None`` payload is an empty one.

        ``point_id`` must be in canonical form (:func:`~schemas.ids.normalize_point_id`), as
        stored ids are. ``payload`` must be JSON-shaped (dict/list/str/int/float/bool/None);
        for such payloads this never raises.
        """
        return self._predicate(point_id, _EMPTY_PAYLOAD if payload is None else payload)

    @classmethod
    def all_of(cls, *filters: Filter | None) -> Filter | None:
        """The points every one of ``filters`` matches (``None``s ignored; none at all: ``None``)."""
        given = [f for f in filters if f is not None]
        if len(given) <= 1:
            return given[0] if given else None
        predicates = [f._predicate for f in given]  # noqa: SLF001 - the same class
        return cls(lambda pid, payload: all(test(pid, payload) for test in predicates),
                   frozenset().union(*(f.referenced_keys for f in given)), {"must": [f.source for f in given]})

    @classmethod
    def has_ids(cls, points: Iterable[PointId]) -> Filter:
        """The points among ``points`` (canonical ids)."""
        wanted = frozenset(points)
        return cls(lambda pid, _payload: pid in wanted, frozenset(), {"has_id": sorted(wanted, key=str)})

    @classmethod
    def excluding(cls, points: Iterable[PointId]) -> Filter:
        """Every point but ``points`` (canonical ids)."""
        unwanted = frozenset(points)
        return cls(lambda pid, _payload: pid not in unwanted, frozenset(),
                   {"must_not": [{"has_id": sorted(unwanted, key=str)}]})


def parse_filter(obj: object, *, field: str = "filter",
                 has_vector: Callable[[PointId, str], bool] | None = None) -> Filter | None:
    """Validate and compile a REST filter object; ``None`` means "no filter" and yields ``None``.

    ``has_vector(id, name)``: whether a point holds the named vector, for ``has_vector``
    conditions (a filter compiled for one collection); without it they are refused.
    Raises :class:`InvalidFilter` (and nothing else, for any input) when ``obj`` is not a
    valid filter; the message starts with the path of the problem, rooted at ``field``.
    """
    if obj is None:
        return None
    keys: set[str] = set()
    predicate = _compile_filter(obj, field, _Scope(keys=keys, prefix="", depth=0, has_vector=has_vector))
    return Filter(predicate, frozenset(keys), obj)


# --------------------------------------------------------------------------- helpers


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    """Where the compiler is: the shared key collector, key prefix (nested) and depth."""

    keys: set[str]
    prefix: str
    depth: int
    has_vector: Callable[[PointId, str], bool] | None = None

    def deeper(self, path: str, prefix: str | None = None) -> _Scope:
        """The scope one filter level down; raises when that exceeds :data:`MAX_DEPTH`."""
        if self.depth >= MAX_DEPTH:
            raise InvalidFilter(f"{path}: filter nested deeper than {MAX_DEPTH} levels")
        if prefix is None:
            return dataclasses.replace(self, depth=self.depth + 1)
        return dataclasses.replace(self, prefix=prefix, depth=self.depth + 1)

    def use_key(self, key: str) -> None:
        """Record that the filter reads ``key`` (relative to this scope)."""
        self.keys.add(self.prefix + key)


def _show(value: object) -> str:
    """A short description of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, (str, int, float)):
        try:
            text = repr(value)
        except Exception:  # e.g. an int too long to print
            return type(value).__name__
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__


def _show_keys(keys: Iterable[object]) -> str:
    """``{'a', 'b'}``, sorted, for error messages."""
    return "{" + ", ".join(sorted(_show_key(k) for k in keys)) + "}"


def _show_key(key: object) -> str:
    text = repr(key) if isinstance(key, str) else _show(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(path: str, message: str) -> InvalidFilter:
    return InvalidFilter(f"{path}: {message}")


def _expect_object(value: object, path: str, what: str = "an object") -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected {what}, got {_show(value)}")
    return value


def _expect_keys(obj: dict[Any, Any], path: str, allowed: Iterable[str], what: str) -> None:
    unknown = set(obj) - set(allowed)
    if unknown:
        raise _fail(path, f"unknown {what} keys {_show_keys(unknown)}")


def _require(obj: dict[Any, Any], path: str, key: str) -> Any:
    if key not in obj:
        raise _fail(path, f"missing required key {key!r}")
    return obj[key]


def _expect_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {_show(value)}")
    return value


def _expect_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, f"expected true or false, got {_show(value)}")
    return value


def _expect_number(value: object, path: str) -> float:
    """A finite JSON number (not a boolean), as a float like Qdrant's ``f64`` bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, f"expected a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _fail(path, f"number {_show(value)} is out of range") from None
    if not math.isfinite(number):
        raise _fail(path, f"expected a finite number, got {_show(value)}")
    return number


def _expect_count(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, f"expected a non-negative integer, got {_show(value)}")
    return value


def _is_i64(value: object) -> bool:
    return type(value) is int and _I64_MIN <= value <= _I64_MAX


# --------------------------------------------------------------------------- keys


def _parse_key(key: object, path: str) -> paths.Path:
    """Parse a payload key with the one grammar (:func:`schemas.paths.parse`), as Qdrant does."""
    text = _expect_str(key, path)
    try:
        return paths.parse(text, field=path)
    except InvalidPath as exc:
        raise InvalidFilter(str(exc)) from None


def _getter(steps: paths.Path, *, flat: bool) -> Getter:
    """Values the path selects in a payload; with ``flat``, a selected array is unwrapped."""
    if len(steps) == 1 and not flat:
        return _single_key_getter(str(steps[0]))  # a path always starts with a key
    if all(isinstance(step, str) for step in steps):
        return _dotted_getter(tuple(str(step) for step in steps), flat=flat)

    def get(payload: Payload) -> list[Any]:
        return paths.values(payload, steps, flat=flat)

    return get


def _dotted_getter(names: tuple[str, ...], *, flat: bool) -> Getter:
    """Fast path of :func:`_getter` for ``a.b.c``: objects all the way, no array steps."""

    def get(payload: Payload) -> Sequence[Any]:
        data: Any = payload
        for name in names:
            if not isinstance(data, dict):
                return ()
            data = data.get(name, _MISSING)
            if data is _MISSING:
                return ()
        if flat and isinstance(data, list):
            return data
        return (data,)

    return get


def _single_key_getter(name: str) -> Getter:
    """Fast path of :func:`_getter` for a plain top-level key, arrays kept whole."""

    def get(payload: Payload) -> Sequence[Any]:
        value = payload.get(name, _MISSING)
        return () if value is _MISSING else (value,)

    return get


# --------------------------------------------------------------------------- filters


def _always(_point_id: PointId | None, _payload: Payload) -> bool:
    return True


def _compile_filter(obj: object, path: str, scope: _Scope) -> Predicate:
    """Compile ``{must, should, must_not, min_should}``."""
    spec = _expect_object(obj, path)
    _expect_keys(spec, path, _FILTER_KEYS, "filter")
    must = _compile_clause(spec.get("must"), f"{path}.must", scope)
    must_not = _compile_clause(spec.get("must_not"), f"{path}.must_not", scope)
    should = _compile_clause(spec.get("should"), f"{path}.should", scope)
    min_should = _compile_min_should(spec.get("min_should"), f"{path}.min_should", scope)
    return _combine(must, must_not, should, min_should)


def _compile_clause(value: object, path: str, scope: _Scope) -> tuple[Predicate, ...]:
    """A clause is absent (``null``), one condition, or a list of conditions."""
    if value is None:
        return ()
    if isinstance(value, dict):
        return (_compile_condition(value, path, scope),)
    if isinstance(value, list):
        return tuple(_compile_condition(c, f"{path}[{i}]", scope) for i, c in enumerate(value))
    raise _fail(path, f"expected a condition or a list of conditions, got {_show(value)}")


def _compile_min_should(value: object, path: str, scope: _Scope) -> tuple[tuple[Predicate, ...], int] | None:
    if value is None:
        return None
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("conditions", "min_count"), "min_should")
    conditions = _require(spec, path, "conditions")
    if not isinstance(conditions, list):
        raise _fail(f"{path}.conditions", f"expected a list of conditions, got {_show(conditions)}")
    min_count = _require(spec, path, "min_count")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise _fail(f"{path}.min_count", f"expected an integer >= 1, got {_show(min_count)}")
    compiled = tuple(_compile_condition(c, f"{path}.conditions[{i}]", scope) for i, c in enumerate(conditions))
    return compiled, min_count


def _combine(
    must: tuple[Predicate, ...],
    must_not: tuple[Predicate, ...],
    should: tuple[Predicate, ...],
    min_should: tuple[tuple[Predicate, ...], int] | None,
) -> Predicate:
    """AND of the clauses; an empty ``should`` list is no constraint, as on the server."""
    if min_should is None and not must_not and not should:
        if not must:
            return _always
        if len(must) == 1:
            return must[0]
    min_conditions, min_count = min_should if min_should is not None else ((), 0)

    def check(point_id: PointId | None, payload: Payload) -> bool:
        for condition in must:
            if not condition(point_id, payload):
                return False
        for condition in must_not:
            if condition(point_id, payload):
                return False
        if should and not any(c(point_id, payload) for c in should):
            return False
        if min_count:
            hits = 0
            for condition in min_conditions:
                if condition(point_id, payload):
                    hits += 1
                    if hits >= min_count:
                        break
            else:
                return False
        return True

    return check


def _compile_condition(obj: object, path: str, scope: _Scope) -> Predicate:
    """Dispatch a condition object on its keys."""
    spec = _expect_object(obj, path, "a condition object")
    keys = set(spec)
    unknown = keys - _CONDITION_KEYS
    if unknown:
        raise _fail(path, f"unknown condition keys {_show_keys(unknown)}")
    if "key" in keys:
        return _compile_field_condition(spec, path, scope)
    if keys <= _FILTER_KEYS:
        return _compile_filter(spec, path, scope.deeper(path))
    if len(keys) == 1 and keys <= _SPECIAL_KINDS:
        (kind,) = keys
        return _compile_special(kind, spec[kind], f"{path}.{kind}", scope)
    if keys & _FIELD_KEYS:
        raise _fail(path, "field condition without 'key'")
    raise _fail(path, f"conflicting condition keys {_show_keys(keys)}")


def _compile_special(kind: str, value: object, path: str, scope: _Scope) -> Predicate:
    if kind == "has_id":
        return _compile_has_id(value, path)
    if kind == "nested":
        return _compile_nested(value, path, scope)
    if kind in ("is_empty", "is_null"):
        spec = _expect_object(value, path)
        _expect_keys(spec, path, ("key",), kind)
        key = _require(spec, path, "key")
        return _compile_emptiness(kind, key, True, f"{path}.key", scope)
    if kind == "has_vector":
        name = _expect_str(value, path) if value != "" else ""
        held = scope.has_vector
        if held is None:
            raise _fail(path, "the 'has_vector' condition needs a collection (not supported here)")
        return lambda point_id, _payload: point_id is not None and held(point_id, name)
    raise _fail(path, f"the {kind!r} condition is not supported")


def _compile_has_id(value: object, path: str) -> Predicate:
    """``has_id``: the point id is one of the listed ids (never inside a nested filter)."""
    if not isinstance(value, list):
        raise _fail(path, f"expected a list of point ids, got {_show(value)}")
    ids: set[PointId] = set()
    for i, raw in enumerate(value):
        try:
            ids.add(normalize_point_id(raw, field=f"{path}[{i}]"))
        except InvalidPointId as exc:
            raise InvalidFilter(str(exc)) from None
    wanted = frozenset(ids)

    def check(point_id: PointId | None, _payload: Payload) -> bool:
        return point_id in wanted

    return check


def _compile_nested(value: object, path: str, scope: _Scope) -> Predicate:
    """``nested``: some object element of the array at ``key`` satisfies ``filter`` on its own."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("key", "filter"), "nested")
    raw_key = _expect_str(_require(spec, path, "key"), f"{path}.key")
    key = raw_key[:-2] if len(raw_key) > 2 and raw_key.endswith("[]") else raw_key
    steps = _parse_key(key, f"{path}.key")
    scope.use_key(key)
    inner_scope = scope.deeper(path, prefix=f"{scope.prefix}{key}[].")
    inner = _compile_filter(_require(spec, path, "filter"), f"{path}.filter", inner_scope)
    get = _getter(steps, flat=False)

    def check(_point_id: PointId | None, payload: Payload) -> bool:
        for found in get(payload):
            if isinstance(found, list):
                for element in found:
                    if isinstance(element, dict) and inner(None, element):
                        return True
        return False

    return check


# --------------------------------------------------------------------------- field conditions


def _compile_field_condition(spec: dict[Any, Any], path: str, scope: _Scope) -> Predicate:
    """``{"key": ..., <exactly one operator>}``."""
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise _fail(path, f"unknown field condition keys {_show_keys(unknown)}")
    key = _expect_str(spec["key"], f"{path}.key")
    ops = [op for op in _FIELD_OPS if spec.get(op) is not None]
    if not ops:
        raise _fail(path, f"expected one of {', '.join(_FIELD_OPS)} with 'key'")
    if len(ops) > 1:
        raise _fail(path, f"only one operator per field condition, got {_show_keys(ops)}")
    op = ops[0]
    value = spec[op]
    op_path = f"{path}.{op}"
    if op in ("is_empty", "is_null"):
        wanted = _expect_bool(value, op_path)
        return _compile_emptiness(op, key, wanted, f"{path}.key", scope)
    steps = _parse_key(key, f"{path}.key")
    scope.use_key(key)
    if op == "values_count":
        return _values_count_predicate(steps, _compile_values_count(value, op_path))
    return _any_value_predicate(steps, _VALUE_TESTS[op](value, op_path))


def _any_value_predicate(steps: paths.Path, test: ValueTest) -> Predicate:
    """Holds when any value under the key (arrays unwrapped) passes ``test``."""
    if len(steps) == 1:
        name = str(steps[0])  # a path always starts with a key

        def check_one(_point_id: PointId | None, payload: Payload) -> bool:
            value = payload.get(name, _MISSING)
            if value is _MISSING:
                return False
            if isinstance(value, list):
                return any(map(test, value))
            return test(value)

        return check_one
    get = _getter(steps, flat=True)

    def check(_point_id: PointId | None, payload: Payload) -> bool:
        return any(map(test, get(payload)))

    return check


def _compile_emptiness(kind: str, key: object, wanted: bool, key_path: str, scope: _Scope) -> Predicate:
    """``is_empty`` (no value, or only nulls / empty arrays) or ``is_null`` (some value is
    null, or an array holding a null) — compared with ``wanted``."""
    name = _expect_str(key, key_path)
    steps = _parse_key(name, key_path)
    scope.use_key(name)
    get = _getter(steps, flat=False)
    if kind == "is_empty":

        def check_empty(_point_id: PointId | None, payload: Payload) -> bool:
            return all(map(_is_empty_value, get(payload))) is wanted

        return check_empty

    def check_null(_point_id: PointId | None, payload: Payload) -> bool:
        return any(map(_is_null_value, get(payload))) is wanted

    return check_null


def _is_empty_value(value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value)


def _is_null_value(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, list) and any(element is None for element in value)


def _compile_values_count(value: object, path: str) -> Callable[[int], bool]:
    spec = _expect_object(value, path)
    _expect_keys(spec, path, _BOUNDS, "values_count")
    bounds = {b: _expect_count(spec[b], f"{path}.{b}") for b in _BOUNDS if spec.get(b) is not None}
    return _bounds_test(bounds)


def _values_count_predicate(steps: paths.Path, test: Callable[[int], bool]) -> Predicate:
    """Holds when the count of some value under the key passes ``test``: an array counts its
    elements, null counts 0, anything else 1; no value at all counts 0."""
    get = _getter(steps, flat=False)

    def check(_point_id: PointId | None, payload: Payload) -> bool:
        values = get(payload)
        if all(v is None for v in values):
            return test(0)
        return any(test(_count(v)) for v in values)

    return check


def _count(value: Any) -> int:
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


def _bounds_test(bounds: Mapping[str, float]) -> Callable[[Any], bool]:
    """``gt/gte/lt/lte`` on an already type-checked number; no bounds accepts everything."""
    gt, gte, lt, lte = (bounds.get(b) for b in _BOUNDS)

    def test(x: Any) -> bool:
        return (
            (gt is None or x > gt)
            and (gte is None or x >= gte)
            and (lt is None or x < lt)
            and (lte is None or x <= lte)
        )

    return test


# --------------------------------------------------------------------------- match


def _compile_match(value: object, path: str) -> ValueTest:
    spec = _expect_object(value, path)
    _expect_keys(spec, path, _MATCH_KINDS, "match")
    if len(spec) != 1:
        raise _fail(path, f"expected exactly one of {', '.join(_MATCH_KINDS)}")
    ((kind, arg),) = spec.items()
    arg_path = f"{path}.{kind}"
    if kind == "value":
        return _match_value(arg, arg_path)
    if kind in ("any", "except"):
        return _match_set(arg, arg_path, negate=kind == "except")
    text = _expect_str(arg, arg_path)
    return _TEXT_MATCHERS[kind](text)


def _match_value(arg: object, path: str) -> ValueTest:
    """Exact match; booleans, integers and strings never equal one another or floats."""
    if isinstance(arg, bool):
        return (lambda x: x is True) if arg else (lambda x: x is False)
    if _is_i64(arg):
        return lambda x: x.__class__ is int and x == arg
    if isinstance(arg, str):
        return lambda x: x.__class__ is str and x == arg
    if isinstance(arg, int):
        raise _fail(path, f"integer {_show(arg)} is outside the 64-bit signed range")
    raise _fail(path, f"expected a string, an integer or a boolean, got {_show(arg)}")


def _match_set(arg: object, path: str, *, negate: bool) -> ValueTest:
    """``any``: the value is one of a list of strings or of integers. ``except``: a non-null
    value that is not one of them (values of another type pass)."""
    if not isinstance(arg, list):
        raise _fail(path, f"expected a list of strings or of integers, got {_show(arg)}")
    kind: type = str if arg and isinstance(arg[0], str) else int
    for i, item in enumerate(arg):
        if not (isinstance(item, str) if kind is str else _is_i64(item)):
            expected = "a string" if kind is str else "a 64-bit integer"
            raise _fail(
                f"{path}[{i}]",
                f"expected {expected} (all strings or all integers), got {_show(item)}",
            )
    members = frozenset(arg)
    if negate:
        return lambda x: x is not None and not (x.__class__ is kind and x in members)
    return lambda x: x.__class__ is kind and x in members


def _tokens(text: str) -> list[str]:
    """The server's default word tokenizer: runs of letters/digits, lowercased."""
    return [token.lower() for token in _TOKEN_RE.findall(text)]


def _match_text(query: str) -> ValueTest:
    """Every query token is a token of the value (order-free); an empty query never matches.

    Qdrant's docs describe an unindexed ``match.text`` as a substring test; qdrant-client's
    local mode (our reference) tokenizes both sides, as the current server does
    (qdrant#10341). Use ``match.substring`` for a substring test.
    """
    wanted = frozenset(_tokens(query))
    if not wanted:
        return lambda x: False
    return lambda x: x.__class__ is str and wanted.issubset(_tokens(x))


def _match_text_any(query: str) -> ValueTest:
    """At least one query token is a token of the value."""
    wanted = frozenset(_tokens(query))
    return lambda x: x.__class__ is str and not wanted.isdisjoint(_tokens(x))


def _match_phrase(query: str) -> ValueTest:
    """The query tokens appear consecutively, in order, among the value's tokens."""
    phrase = _tokens(query)
    size = len(phrase)
    if not size:
        return lambda x: False

    def test(x: Any) -> bool:
        if x.__class__ is not str:
            return False
        tokens = _tokens(x)
        return any(tokens[i : i + size] == phrase for i in range(len(tokens) - size + 1))

    return test


def _match_prefix(prefix: str) -> ValueTest:
    return lambda x: x.__class__ is str and x.startswith(prefix)


def _match_substring(substring: str) -> ValueTest:
    return lambda x: x.__class__ is str and substring in x


_TEXT_MATCHERS: Final[dict[str, Callable[[str], ValueTest]]] = {
    "text": _match_text,
    "text_any": _match_text_any,
    "phrase": _match_phrase,
    "prefix": _match_prefix,
    "substring": _match_substring,
}


# --------------------------------------------------------------------------- range


def _compile_range(value: object, path: str) -> ValueTest:
    """Numeric range; only integer and float values (not booleans) can satisfy it. A range whose
    bounds are strings is a datetime range (:func:`_compile_datetime_range`)."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, _BOUNDS, "range")
    if any(isinstance(spec.get(b), str) for b in _BOUNDS):
        return _compile_datetime_range(spec, path)
    bounds = {b: _expect_number(spec[b], f"{path}.{b}") for b in _BOUNDS if spec.get(b) is not None}
    in_bounds = _bounds_test(bounds)

    def test(x: Any) -> bool:
        cls = x.__class__
        return (cls is int or cls is float) and in_bounds(x)

    return test


def datetime_bounds(spec: Mapping[str, Any], path: str) -> dict[str, int]:
    """The bounds of a datetime range as microseconds since the epoch (UTC when no offset)."""
    bounds: dict[str, int] = {}
    for b in _BOUNDS:
        raw = spec.get(b)
        if raw is None:
            continue
        if not isinstance(raw, str):
            raise _fail(f"{path}.{b}", f"expected a datetime string like the other bounds, got {_show(raw)}")
        micros = datetimes.parse(raw)
        if micros is None:
            raise _fail(f"{path}.{b}", f"expected an RFC 3339 datetime, got {_show(raw)}")
        bounds[b] = micros
    return bounds


def _compile_datetime_range(spec: Mapping[str, Any], path: str) -> ValueTest:
    """Qdrant's ``DatetimeRange``: string values that parse as datetimes, compared as instants."""
    in_bounds = _bounds_test(datetime_bounds(spec, path))

    def test(x: Any) -> bool:
        if x.__class__ is not str:
            return False
        micros = datetimes.parse(x)
        return micros is not None and in_bounds(micros)

    return test


# --------------------------------------------------------------------------- geo

_EARTH_RADIUS_M: Final = 6371008.8  # mean radius (IUGG), as Qdrant


def _geo_point(value: object, path: str) -> tuple[float, float]:
    """A filter's ``{lon, lat}`` as ``(lat, lon)``, range-checked like the server does."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("lon", "lat"), "geo point")
    lat = _expect_number(_require(spec, path, "lat"), f"{path}.lat")
    lon = _expect_number(_require(spec, path, "lon"), f"{path}.lon")
    if not -90.0 <= lat <= 90.0:
        raise _fail(f"{path}.lat", f"latitude must be within -90..90, got {_show(lat)}")
    if not -180.0 <= lon <= 180.0:
        raise _fail(f"{path}.lon", f"longitude must be within -180..180, got {_show(lon)}")
    return lat, lon


def _payload_geo(value: Any) -> tuple[float, float] | None:
    """``(lat, lon)`` of a payload geo point: an object with finite numeric lat and lon."""
    if not isinstance(value, dict):
        return None
    lat = value.get("lat")
    lon = value.get("lon")
    try:
        if (
            (lat.__class__ is int or lat.__class__ is float)
            and (lon.__class__ is int or lon.__class__ is float)
            and math.isfinite(lat)
            and math.isfinite(lon)
        ):
            return lat, lon
    except OverflowError:
        pass
    return None


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (lat1, lon1, lat2, lon2))
    a = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    # same operation order as qdrant-client, so results agree to the last bit; min() guards
    # against rounding pushing ``a`` just above 1 for antipodal points
    return _EARTH_RADIUS_M * (2 * math.asin(math.sqrt(min(1.0, a))))


def _compile_geo_radius(value: object, path: str) -> ValueTest:
    """Geo points strictly closer than ``radius`` metres to ``center`` (haversine)."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("center", "radius"), "geo_radius")
    center_lat, center_lon = _geo_point(_require(spec, path, "center"), f"{path}.center")
    radius = _expect_number(_require(spec, path, "radius"), f"{path}.radius")

    def test(x: Any) -> bool:
        point = _payload_geo(x)
        return point is not None and _haversine_m(point[0], point[1], center_lat, center_lon) < radius

    return test


def _compile_geo_bounding_box(value: object, path: str) -> ValueTest:
    """Geo points strictly inside the box; ``top_left.lon > bottom_right.lon`` crosses the
    antimeridian."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("top_left", "bottom_right"), "geo_bounding_box")
    top, left = _geo_point(_require(spec, path, "top_left"), f"{path}.top_left")
    bottom, right = _geo_point(_require(spec, path, "bottom_right"), f"{path}.bottom_right")
    wraps = left > right

    def test(x: Any) -> bool:
        point = _payload_geo(x)
        if point is None:
            return False
        lat, lon = point
        in_lon = (lon > left or lon < right) if wraps else left < lon < right
        return in_lon and top > lat > bottom

    return test


def _geo_ring(value: object, path: str) -> list[tuple[float, float]]:
    """A closed ring ``{"points": [...]}`` of at least 4 points, as ``(lat, lon)`` pairs."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("points",), "geo line string")
    points = _require(spec, path, "points")
    if not isinstance(points, list):
        raise _fail(f"{path}.points", f"expected a list of geo points, got {_show(points)}")
    ring = [_geo_point(p, f"{path}.points[{i}]") for i, p in enumerate(points)]
    if len(ring) < 4:
        raise _fail(f"{path}.points", f"a ring needs at least 4 points, got {len(ring)}")
    if ring[0] != ring[-1]:
        raise _fail(f"{path}.points", "the first and last points of a ring must be the same")
    return ring[:-1]


def _compile_geo_polygon(value: object, path: str) -> ValueTest:
    """Geo points inside ``exterior`` (boundary excluded) and outside every interior ring
    (whose boundary counts as inside the hole)."""
    spec = _expect_object(value, path)
    _expect_keys(spec, path, ("exterior", "interiors"), "geo_polygon")
    exterior = _geo_ring(_require(spec, path, "exterior"), f"{path}.exterior")
    raw_interiors = spec.get("interiors")
    if raw_interiors is None:
        raw_interiors = []
    if not isinstance(raw_interiors, list):
        raise _fail(f"{path}.interiors", f"expected a list of rings, got {_show(raw_interiors)}")
    interiors = [_geo_ring(r, f"{path}.interiors[{i}]") for i, r in enumerate(raw_interiors)]

    def test(x: Any) -> bool:
        point = _payload_geo(x)
        if point is None or not _in_ring(point, exterior, on_boundary=False):
            return False
        return not any(_in_ring(point, hole, on_boundary=True) for hole in interiors)

    return test


def _in_ring(point: tuple[float, float], ring: list[tuple[float, float]], *, on_boundary: bool) -> bool:
    """Even-odd test of ``point`` against an open ring; points on an edge give ``on_boundary``."""
    px, py = point
    inside = False
    xj, yj = ring[-1]
    for xi, yi in ring:
        if (
            py * (xi - xj) + yi * (xj - px) + yj * (px - xi) == 0
            and (xi - px) * (xj - px) <= 0
            and (yi - py) * (yj - py) <= 0
        ):
            return on_boundary
        if (yi > py) != (yj > py) and px < (xj - xi) * (py - yi) / (yj - yi) + xi:
            inside = not inside
        xj, yj = xi, yi
    return inside


_VALUE_TESTS: Final[dict[str, Callable[[object, str], ValueTest]]] = {
    "match": _compile_match,
    "range": _compile_range,
    "geo_radius": _compile_geo_radius,
    "geo_bounding_box": _compile_geo_bounding_box,
    "geo_polygon": _compile_geo_polygon,
}
