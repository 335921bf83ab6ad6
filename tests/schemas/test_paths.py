"""schemas/paths.py: the payload-path grammar, examples and differential against qdrant-client's local mode.

The local-mode functions (``parse_json_path``, ``value_by_key``, ``set_value_by_key``,
``delete_value_by_key``) are the reference; every generated path and payload must give the
same steps, values and resulting payloads.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qdrant_client.local.json_path_parser import JsonPathItem, JsonPathItemType, parse_json_path
from qdrant_client.local.payload_value_extractor import value_by_key
from qdrant_client.local.payload_value_setter import delete_value_by_key, set_value_by_key

from schemas import paths
from schemas.errors import InvalidPath, ValidationError

# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(("key", "steps"), [
    ("a", ("a",)),
    ("a.b-c_d.9", ("a", "b-c_d", "9")),
    ("a[]", ("a", None)),
    ("a[0][12].b", ("a", 0, 12, "b")),
    ("a[007]", ("a", 7)),
    (f"a[{2**64 - 1}]", ("a", 2**64 - 1)),
    ('"x.y"', ("x.y",)),
    ('a."b[.]c".d', ("a", "b[.]c", "d")),
    ('""', ("",)),
    ('"a b"[]', ("a b", None)),
    ("é日本", ("é日本",)),
])
def test_valid_paths_parse_into_steps(key: str, steps: paths.Path) -> None:
    assert paths.parse(key) == steps


@pytest.mark.parametrize(("key", "reason"), [
    ("", "the path is empty"),
    ("a.", "ends with '.'"),
    (".a", "expected a key at position 0"),
    ("a..b", "expected a key at position 2"),
    ("a[", "'[' at position 1 is not closed"),
    ("a[1", "'[' at position 1 is not closed"),
    ("a]", "expected '.' or '[' at position 1"),
    ("a[x]", "found 'x'"),
    ("a[-1]", "found '-1'"),
    ("a[ 1]", "found ' 1'"),
    (f"a[{2**64}]", "0..2^64-1"),
    ('"a', "quote at position 0 is not closed"),
    ('a."b', "quote at position 2 is not closed"),
    ('"a"b', "expected '.' or '[' at position 3"),
    ("a b", "expected '.' or '[' at position 1"),
    ("[0]", "expected a key at position 0"),
    ("a.[0]", "expected a key at position 2"),
])
def test_invalid_paths_name_the_field_the_key_and_the_fault(key: str, reason: str) -> None:
    with pytest.raises(InvalidPath) as info:
        paths.parse(key, field="keys[2]")
    assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"keys[2]: invalid payload key {key!r}: ")
    assert reason in str(info.value)
    with pytest.raises(ValueError):  # the reference refuses it too
        parse_json_path(key)


def test_a_non_string_key_is_invalid() -> None:
    with pytest.raises(InvalidPath, match=r"^key: expected a payload key \(a string\), got int"):
        paths.parse(3)


def test_a_very_long_path_is_walked_without_recursion() -> None:
    path = paths.parse(".".join(["a"] * 5000))
    payload: dict[str, Any] = {}
    paths.set_value(payload, path, {"x": 1})
    assert paths.values(payload, path + ("x",)) == [1]
    paths.delete(payload, path + ("x",))
    assert paths.values(payload, path) == [{}]


def _set(payload: dict[str, Any], key: str, value: dict[str, Any]) -> dict[str, Any]:
    paths.set_value(payload, paths.parse(key), value)
    return payload


def _delete(payload: dict[str, Any], key: str) -> dict[str, Any]:
    paths.delete(payload, paths.parse(key))
    return payload


def test_set_into_an_array_element_updates_it() -> None:  # issue 13: was a literal key "nest[0]"
    assert _set({"nest": [{"a": "100", "b": "200"}]}, "nest[0]", {"a": "101"}) == {"nest": [{"a": "101", "b": "200"}]}
    assert _set({"arr": [{"x": 1}, 2]}, "arr[]", {"y": 1}) == {"arr": [{"x": 1, "y": 1}, {"y": 1}]}
    assert _set({"k": {"arr": [{"a1": {"z": 0}}, {"a1": 1}]}}, "k.arr[0].a1", {"w": 1}) == \
        {"k": {"arr": [{"a1": {"z": 0, "w": 1}}, {"a1": 1}]}}


def test_set_under_a_quoted_key_and_merge_rules() -> None:
    assert _set({}, '"q.r"', {"v": 1}) == {"q.r": {"v": 1}}
    assert _set({"a": {"b": 1, "c": 2}}, "a", {"b": None, "d": 3}) == {"a": {"c": 2, "d": 3}}  # null removes
    assert _set({"a": 5}, "a.b.c", {"v": 1}) == {"a": {"b": {"c": {"v": 1}}}}
    assert _set({"a": 5}, "a[0]", {"v": 1}) == {"a": []}  # an index on a non-array makes it []
    assert _set({"a": [1]}, "a[3]", {"v": 1}) == {"a": [1]}  # past the end: nothing
    assert paths.merge({"a": 1, "b": 2}, {"a": None, "c": 3}) == {"b": 2, "c": 3}


def test_set_under_a_wildcard_gives_each_element_its_own_copy() -> None:
    payload = _set({"l": [{}, {}]}, "l[]", {"inner": {"n": 1}})
    payload["l"][0]["inner"]["n"] = 2
    assert payload["l"][1] == {"inner": {"n": 1}}


def test_delete_follows_the_path_and_nothing_else() -> None:
    assert _delete({"a": [{"b": 1, "c": 2}, {"b": 3}]}, "a[].b") == {"a": [{"c": 2}, {}]}
    assert _delete({"x.y": 1, "x": {"y": 2}}, '"x.y"') == {"x": {"y": 2}}
    assert _delete({"x.y": 1, "x": {"y": 2}}, "x.y") == {"x.y": 1, "x": {}}
    assert _delete({"a": [{"b": 1}]}, "a.b") == {"a": [{"b": 1}]}  # a plain step does not enter arrays
    assert _delete({"a": [1, 2]}, "a[0]") == {"a": [1, 2]}  # a final index deletes nothing
    assert _delete({"a": [1, 2], "b": 1}, "a[]") == {"a": [], "b": 1}
    assert _delete({"a": {"b": 1}}, "a.b.c.d") == {"a": {"b": 1}}


def test_values_unwrap_a_final_array_only_when_flat() -> None:
    payload = {"a": [{"b": [1, 2]}, {"b": 3}, {"c": 4}], "d": {"e": None}}
    assert paths.values(payload, paths.parse("a[].b")) == [1, 2, 3]
    assert paths.values(payload, paths.parse("a[].b"), flat=False) == [[1, 2], 3]
    assert paths.values(payload, paths.parse("a.b")) == []
    assert paths.values(payload, paths.parse("a[1].b")) == [3]
    assert paths.values(payload, paths.parse("a[9]")) == []
    assert paths.values(payload, paths.parse("d.e")) == [None]


# --------------------------------------------------------------------------- differential

NAMES = ["a", "b", "c-1", "x.y", "k 1", "", "[0]", "é"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["s", "t", ""]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)), max_leaves=12)
payloads = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=4)
set_values = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=3)
steps = st.one_of(st.sampled_from(NAMES), st.integers(0, 3), st.none())
path_steps = st.tuples(st.sampled_from(NAMES), st.lists(steps, max_size=4)).map(lambda t: (t[0], *t[1]))


@st.composite
def payload_and_path(draw: st.DrawFn) -> tuple[dict[str, Any], paths.Path]:
    """A payload and a path that mostly follows its structure (so it selects something), then
    wanders off with a few random steps."""
    payload = draw(payloads)
    first = draw(st.sampled_from(sorted(payload) or NAMES))
    path: list[paths.Step] = [first]
    node: Any = payload.get(first)
    while draw(st.integers(0, 3)):
        if isinstance(node, dict) and node and draw(st.booleans()):
            path.append(draw(st.sampled_from(sorted(node))))
            node = node[path[-1]]
        elif isinstance(node, list) and node and draw(st.booleans()):
            index = draw(st.integers(0, len(node) - 1))
            element = node[index]
            if isinstance(element, dict) and element and draw(st.booleans()):
                path.append(draw(st.sampled_from(sorted(element))))  # a key step on an array: selects nothing
                node = None
            else:
                path.append(None if draw(st.booleans()) else index)
                node = element
        else:
            path.append(draw(steps))
            node = None
    return payload, tuple(path)


def render(path: paths.Path) -> str:
    """A path as text, quoting the keys that are not plain."""
    out = []
    for i, step in enumerate(path):
        if isinstance(step, str):
            plain = step != "" and all(c.isalnum() or c in "_-" for c in step)
            name = step if plain else f'"{step}"'
            out.append(name if i == 0 else f".{name}")
        else:
            out.append("[]" if step is None else f"[{step}]")
    return "".join(out)


def from_local(items: list[JsonPathItem]) -> paths.Path:
    return tuple(item.key if item.item_type == JsonPathItemType.KEY
                 else None if item.item_type == JsonPathItemType.WILDCARD_INDEX else item.index for item in items)


@given(st.text(alphabet='ab.[]"0 1-_é\\', max_size=12))
@settings(max_examples=1500, deadline=None)
def test_parse_accepts_and_refuses_exactly_what_local_mode_does(text: str) -> None:
    try:
        expected = from_local(parse_json_path(text))
    except ValueError:
        with pytest.raises(InvalidPath):
            paths.parse(text)
        return
    assert paths.parse(text) == expected


@given(path_steps)
@settings(max_examples=300, deadline=None)
def test_rendered_paths_parse_back(path: paths.Path) -> None:
    assert paths.parse(render(path)) == path == from_local(parse_json_path(render(path)))


@given(payload_and_path(), st.booleans())
@settings(max_examples=500, deadline=None)
def test_values_match_value_by_key(case: tuple[dict[str, Any], paths.Path], flat: bool) -> None:
    payload, path = case
    assert paths.values(payload, path, flat=flat) == (value_by_key(payload, render(path), flat=flat) or [])


@given(payload_and_path(), set_values)
@settings(max_examples=500, deadline=None)
def test_set_value_matches_set_value_by_key(case: tuple[dict[str, Any], paths.Path], value: dict[str, Any]) -> None:
    payload, path = case
    expected = copy.deepcopy(payload)
    set_value_by_key(expected, parse_json_path(render(path)), copy.deepcopy(value))
    ours = copy.deepcopy(payload)
    paths.set_value(ours, path, copy.deepcopy(value))
    assert ours == expected


@given(payload_and_path())
@settings(max_examples=500, deadline=None)
def test_delete_matches_delete_value_by_key(case: tuple[dict[str, Any], paths.Path]) -> None:
    payload, path = case
    expected = copy.deepcopy(payload)
    delete_value_by_key(expected, parse_json_path(render(path)))
    ours = copy.deepcopy(payload)
    paths.delete(ours, path)
    assert ours == expected
