"""Tests of ``projections.filters``: every condition, every error path, and a differential
property test against qdrant-client's local mode (the reference implementation)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient, models

from projections.errors import InvalidFilter
from projections.filters import MAX_DEPTH, Filter, parse_filter
from schemas.ids import PointId

UUID_A = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"


def compile_(obj: dict[str, Any]) -> Filter:
    """Parse a filter that must be valid."""
    parsed = parse_filter(obj)
    assert parsed is not None
    return parsed


def hit(obj: dict[str, Any], payload: dict[str, Any] | None, point_id: PointId = 1) -> bool:
    """Whether the filter ``obj`` matches ``payload``."""
    return compile_(obj).matches(point_id, payload)


def field(key: str, **op: Any) -> dict[str, Any]:
    """A filter with a single field condition, e.g. ``field("a", match={"value": 1})``."""
    return {"must": [{"key": key, **op}]}


# --------------------------------------------------------------------------- basics


def test_none_is_no_filter_and_empty_matches_everything() -> None:
    assert parse_filter(None) is None
    everything = compile_({})
    assert everything.matches(1, None)
    assert everything.matches("x", {"a": 1})
    assert everything.referenced_keys == frozenset()
    assert hit({"must": None, "should": None, "must_not": None, "min_should": None}, {})


def test_filter_is_immutable() -> None:
    parsed = compile_(field("a", match={"value": 1}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.referenced_keys = frozenset()  # type: ignore[misc]


def test_none_payload_is_empty_payload() -> None:
    assert hit({"must": [{"is_empty": {"key": "a"}}]}, None)
    assert not hit(field("a", match={"value": 1}), None)


# --------------------------------------------------------------------------- match


@pytest.mark.parametrize(
    ("value", "payload_value", "expected"),
    [
        (3, 3, True),
        (3, 4, False),
        (3, 3.0, False),  # floats never equal an integer match
        (1, True, False),  # booleans are not integers
        (True, 1, False),
        (True, True, True),
        (False, False, True),
        (False, 0, False),
        ("x", "x", True),
        ("x", "X", False),
        ("1", 1, False),
        (3, [1, 3], True),  # any array element
        (3, [[3]], False),  # arrays are unwrapped one level only
        (3, None, False),
        (3, {"value": 3}, False),
    ],
)
def test_match_value(value: Any, payload_value: Any, expected: bool) -> None:
    assert hit(field("a", match={"value": value}), {"a": payload_value}) is expected


def test_match_value_missing_key() -> None:
    assert not hit(field("a", match={"value": 3}), {"b": 3})


@pytest.mark.parametrize(
    ("values", "payload_value", "expected"),
    [
        ([1, 2], 2, True),
        ([1, 2], 3, False),
        ([1, 2], True, False),
        ([1, 2], 2.0, False),
        (["x", "y"], "y", True),
        (["x", "y"], ["z", "x"], True),
        (["1"], 1, False),
        ([], 1, False),
    ],
)
def test_match_any(values: list[Any], payload_value: Any, expected: bool) -> None:
    assert hit(field("a", match={"any": values}), {"a": payload_value}) is expected


@pytest.mark.parametrize(
    ("values", "payload", "expected"),
    [
        ([1, 2], {"a": 3}, True),
        ([1, 2], {"a": 2}, False),
        ([1, 2], {"a": [2, 5]}, True),  # some element is outside the list
        ([1, 2], {"a": [1, 2]}, False),
        ([1, 2], {"a": "x"}, True),  # another type is "not one of them"
        ([1, 2], {"a": True}, True),
        (["x"], {"a": 1}, True),
        ([1], {"a": None}, False),  # null is absence, not a different value
        ([1], {}, False),
        ([1], {"a": []}, False),
        ([], {"a": 0}, True),
    ],
)
def test_match_except(values: list[Any], payload: dict[str, Any], expected: bool) -> None:
    assert hit(field("a", match={"except": values}), payload) is expected


@pytest.mark.parametrize(
    ("kind", "query", "text", "expected"),
    [
        ("text", "quick fox", "The quick brown fox", True),
        ("text", "fox quick", "The quick brown fox", True),  # order-free
        ("text", "QUICK", "the quick fox", True),  # case-insensitive tokens
        ("text", "qui", "the quick fox", False),  # whole tokens, not substrings
        ("text", "quick cat", "the quick fox", False),
        ("text", "", "anything", False),
        ("text_any", "cat fox", "the quick fox", True),
        ("text_any", "cat dog", "the quick fox", False),
        ("phrase", "quick brown", "The quick brown fox", True),
        ("phrase", "brown quick", "The quick brown fox", False),
        ("phrase", "", "The quick brown fox", False),
        ("prefix", "The q", "The quick", True),
        ("prefix", "the", "The quick", False),  # case-sensitive
        ("substring", "uick b", "The quick brown", True),
        ("substring", "UICK", "The quick brown", False),
        ("substring", "", "", True),
    ],
)
def test_match_text_family(kind: str, query: str, text: str, expected: bool) -> None:
    assert hit(field("a", match={kind: query}), {"a": text}) is expected
    assert not hit(field("a", match={kind: query}), {"a": 7})


# --------------------------------------------------------------------------- range / count


@pytest.mark.parametrize(
    ("bounds", "value", "expected"),
    [
        ({"gt": 1}, 2, True),
        ({"gt": 1}, 1, False),
        ({"gte": 1}, 1, True),
        ({"lt": 1.5}, 1.4, True),
        ({"lte": 1.5}, 1.5, True),
        ({"lte": 1.5}, 1.6, False),
        ({"gt": 0, "lt": 10}, 5, True),
        ({"gt": 0, "lt": 10}, 10, False),
        ({}, 123, True),  # no bounds: any number
        ({}, "123", False),  # never strings
        ({"gte": 0}, True, False),  # never booleans
        ({"gte": 0}, None, False),
        ({"gte": 5}, [1, 7], True),  # any element
        ({"gte": 5}, [1, 2], False),
    ],
)
def test_range(bounds: dict[str, Any], value: Any, expected: bool) -> None:
    assert hit(field("a", range=bounds), {"a": value}) is expected


@pytest.mark.parametrize(
    ("bounds", "payload", "expected"),
    [
        ({"gte": 2}, {"a": [1, 2]}, True),
        ({"gte": 3}, {"a": [1, 2]}, False),
        ({"lt": 1}, {}, True),  # missing counts as 0
        ({"lt": 1}, {"a": None}, True),
        ({"gt": 0}, {"a": "x"}, True),  # a scalar is one value
        ({"gt": 0, "lt": 2}, {"a": [1, 2]}, False),
        ({"gte": 0}, {"a": []}, True),
    ],
)
def test_values_count(bounds: dict[str, int], payload: dict[str, Any], expected: bool) -> None:
    assert hit(field("a", values_count=bounds), payload) is expected


# --------------------------------------------------------------------------- empty / null / id


@pytest.mark.parametrize(
    ("payload", "empty", "null"),
    [
        ({}, True, False),
        ({"a": None}, True, True),
        ({"a": []}, True, False),
        ({"a": [None]}, False, True),  # an array holding null is null, not empty
        ({"a": 0}, False, False),
        ({"a": ""}, False, False),
        ({"a": {}}, False, False),
        ({"a": [1, None]}, False, True),
    ],
)
def test_is_empty_and_is_null(payload: dict[str, Any], empty: bool, null: bool) -> None:
    assert hit({"must": [{"is_empty": {"key": "a"}}]}, payload) is empty
    assert hit(field("a", is_empty=True), payload) is empty
    assert hit(field("a", is_empty=False), payload) is not empty
    assert hit({"must": [{"is_null": {"key": "a"}}]}, payload) is null
    assert hit(field("a", is_null=True), payload) is null
    assert hit(field("a", is_null=False), payload) is not null


def test_has_id() -> None:
    parsed = compile_({"must": [{"has_id": [1, 7, UUID_A.upper(), "plain"]}]})
    assert parsed.matches(7, {})
    assert parsed.matches(UUID_A, {})
    assert parsed.matches("plain", {})
    assert not parsed.matches("7", {})  # strings and integers never collide
    assert not parsed.matches(2, {})
    assert not compile_({"must": [{"has_id": []}]}).matches(1, {})
    assert compile_({"must_not": [{"has_id": [1]}]}).matches(2, {})


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("key", "payload", "expected"),
    [
        ("a.b", {"a": {"b": 1}}, True),
        ("a.b", {"a": [{"b": 1}]}, False),  # `.` does not descend into arrays ...
        ("a[].b", {"a": [{"b": 0}, {"b": 1}]}, True),  # ... `[]` does
        ("a[].b", {"a": {"b": 1}}, False),
        ("a[1]", {"a": [0, 1]}, True),
        ("a[0]", {"a": [0, 1]}, False),
        ("a[5]", {"a": [0, 1]}, False),
        ("a[]", {"a": [[0], [1]]}, True),  # elements of elements
        ("a[].b[].c", {"a": [{"b": [{"c": 1}]}]}, True),
        ('"a.b"', {"a.b": 1}, True),
        ('"a.b"', {"a": {"b": 1}}, False),
        ('x."a.b"[0]', {"x": {"a.b": [1]}}, True),
        ("a-b_c", {"a-b_c": 1}, True),
    ],
)
def test_key_paths(key: str, payload: dict[str, Any], expected: bool) -> None:
    assert hit(field(key, match={"value": 1}), payload) is expected


# --------------------------------------------------------------------------- nested


def test_nested_condition_checks_each_element_on_its_own() -> None:
    inner = {"must": [{"key": "x", "match": {"value": 1}}, {"key": "y", "match": {"value": 2}}]}
    nested = {"must": [{"nested": {"key": "items", "filter": inner}}]}
    flat = {
        "must": [
            {"key": "items[].x", "match": {"value": 1}},
            {"key": "items[].y", "match": {"value": 2}},
        ]
    }
    split = {"items": [{"x": 1, "y": 0}, {"x": 0, "y": 2}]}
    together = {"items": [{"x": 1, "y": 2}]}
    assert not hit(nested, split)
    assert hit(flat, split)
    assert hit(nested, together)
    assert hit({"must": [{"nested": {"key": "items[]", "filter": inner}}]}, together)
    assert not hit(nested, {"items": {"x": 1, "y": 2}})  # not an array
    assert not hit(nested, {"items": [[{"x": 1, "y": 2}]]})  # only object elements


def test_has_id_inside_nested_never_matches() -> None:
    inner = {"must": [{"has_id": [1]}]}
    assert not hit({"must": [{"nested": {"key": "a", "filter": inner}}]}, {"a": [{}]}, point_id=1)


def test_clauses() -> None:
    a1 = {"key": "a", "match": {"value": 1}}
    b1 = {"key": "b", "match": {"value": 1}}
    both, only_a, neither = {"a": 1, "b": 1}, {"a": 1}, dict[str, Any]()
    assert hit({"must": [a1, b1]}, both) and not hit({"must": [a1, b1]}, only_a)
    assert hit({"must": a1}, only_a)  # a single condition without a list
    assert hit({"should": [a1, b1]}, only_a) and not hit({"should": [a1, b1]}, neither)
    assert hit({"should": []}, neither)  # an empty should is no constraint
    assert hit({"must": []}, neither)
    assert hit({"must_not": [a1]}, neither) and not hit({"must_not": a1}, only_a)
    assert hit({"must": [{"should": [a1, b1]}, {"must_not": [b1]}]}, only_a)
    assert hit({"must": [{}]}, neither)  # an empty sub-filter matches everything
    two_of = {"min_should": {"conditions": [a1, b1, {"is_empty": {"key": "c"}}], "min_count": 2}}
    assert hit(two_of, only_a) and hit(two_of, both)
    assert not hit(two_of, {"a": 1, "c": 1})
    assert not hit({"min_should": {"conditions": [], "min_count": 1}}, both)


# --------------------------------------------------------------------------- geo

BERLIN = {"lat": 52.52, "lon": 13.405}
LONDON = {"lat": 51.5074, "lon": -0.1278}


def test_geo_radius() -> None:
    near_berlin = field("loc", geo_radius={"center": {"lat": 52.5, "lon": 13.4}, "radius": 5000})
    assert hit(near_berlin, {"loc": BERLIN})
    assert hit(near_berlin, {"loc": [LONDON, BERLIN]})
    assert not hit(near_berlin, {"loc": LONDON})
    assert not hit(near_berlin, {"loc": {"lat": "52.52", "lon": 13.405}})
    assert not hit(near_berlin, {"loc": [52.52, 13.405]})


def test_geo_bounding_box() -> None:
    europe = field("loc", geo_bounding_box={"top_left": {"lat": 60, "lon": -5}, "bottom_right": {"lat": 40, "lon": 20}})
    assert hit(europe, {"loc": BERLIN}) and hit(europe, {"loc": LONDON})
    assert not hit(europe, {"loc": {"lat": 0, "lon": 0}})
    pacific = field(
        "loc", geo_bounding_box={"top_left": {"lat": 10, "lon": 170}, "bottom_right": {"lat": -10, "lon": -170}}
    )
    assert hit(pacific, {"loc": {"lat": 0, "lon": 179}})
    assert hit(pacific, {"loc": {"lat": 0, "lon": -179}})
    assert not hit(pacific, {"loc": {"lat": 0, "lon": 0}})


def test_geo_polygon() -> None:
    square = [{"lat": 0, "lon": 0}, {"lat": 0, "lon": 10}, {"lat": 10, "lon": 10}, {"lat": 10, "lon": 0}]
    hole = [{"lat": 4, "lon": 4}, {"lat": 4, "lon": 6}, {"lat": 6, "lon": 6}, {"lat": 6, "lon": 4}]
    polygon = field(
        "loc",
        geo_polygon={
            "exterior": {"points": [*square, square[0]]},
            "interiors": [{"points": [*hole, hole[0]]}],
        },
    )
    assert hit(polygon, {"loc": {"lat": 2, "lon": 2}})
    assert not hit(polygon, {"loc": {"lat": 5, "lon": 5}})  # in the hole
    assert not hit(polygon, {"loc": {"lat": 4, "lon": 5}})  # on the hole's edge
    assert not hit(polygon, {"loc": {"lat": 0, "lon": 5}})  # on the outer edge
    assert not hit(polygon, {"loc": {"lat": 20, "lon": 5}})


# --------------------------------------------------------------------------- metadata


def test_referenced_keys() -> None:
    parsed = compile_(
        {
            "must": [
                {"key": "a.b", "match": {"value": 1}},
                {"is_empty": {"key": "c"}},
                {"has_id": [1]},
                {"nested": {"key": "items[]", "filter": {"must": [{"key": "x", "range": {"gt": 1}}]}}},
            ],
            "should": {"key": "d", "is_null": True},
            "min_should": {"conditions": [{"key": "e[]", "values_count": {"gt": 1}}], "min_count": 1},
        }
    )
    assert parsed.referenced_keys == frozenset({"a.b", "c", "items", "items[].x", "d", "e[]"})


# --------------------------------------------------------------------------- errors


def _deep(levels: int) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for _ in range(levels):
        obj = {"must": [obj]}
    return obj


ERRORS: list[tuple[Any, str]] = [
    ([], "filter: expected an object, got an array"),
    ("abc", "filter: expected an object, got 'abc'"),
    ({"foo": 1}, "filter: unknown filter keys {'foo'}"),
    ({"must": 3}, "filter.must: expected a condition or a list of conditions, got 3"),
    ({"must": [None]}, "filter.must[0]: expected a condition object, got null"),
    ({"should": [{"foo": 1}]}, "filter.should[0]: unknown condition keys {'foo'}"),
    ({"must": [{}, {"key": "x", "range": {"gt": "abc"}}]},
     "filter.must[1].range.gt: expected an RFC 3339 datetime, got 'abc'"),
    (
        {"must": {"key": "x", "range": {"gt": "2024-01-01", "lt": 5}}},
        "filter.must.range.lt: expected a datetime string like the other bounds, got 5",
    ),
    ({"must": [{"key": "x", "range": {"gt": True}}]}, "filter.must[0].range.gt: expected a number, got true"),
    ({"must": [{"key": "x", "range": {"gt": 10**400}}]}, "filter.must[0].range.gt: number"),
    (
        {"must": [{"key": "x", "range": {"gt": float("nan")}}]},
        "filter.must[0].range.gt: expected a finite number, got nan",
    ),
    ({"must": [{"key": "x", "range": {"between": 1}}]}, "filter.must[0].range: unknown range keys {'between'}"),
    ({"must": [{"key": "x", "range": [1, 2]}]}, "filter.must[0].range: expected an object, got an array"),
    ({"must": [{"key": 5, "match": {"value": 1}}]}, "filter.must[0].key: expected a string, got 5"),
    ({"must": [{"key": "a..b", "match": {"value": 1}}]}, "filter.must[0].key: invalid payload key 'a..b'"),
    ({"must": [{"key": "", "match": {"value": 1}}]}, "filter.must[0].key: invalid payload key ''"),
    ({"must": [{"key": "a[x]", "match": {"value": 1}}]}, "filter.must[0].key: invalid payload key 'a[x]'"),
    ({"must": [{"key": "a."}]}, "filter.must[0]: expected one of match, range"),
    (
        {"must": [{"key": "a", "match": {"value": 1}, "range": {}}]},
        "filter.must[0]: only one operator per field condition, got {'match', 'range'}",
    ),
    ({"must": [{"key": "a", "match": {"value": 1}, "foo": 2}]}, "filter.must[0]: unknown condition keys {'foo'}"),
    ({"must": [{"key": "a", "has_id": [1]}]}, "filter.must[0]: unknown field condition keys {'has_id'}"),
    ({"must": [{"match": {"value": 1}}]}, "filter.must[0]: field condition without 'key'"),
    ({"must": [{"has_id": [1], "must": []}]}, "filter.must[0]: conflicting condition keys {'has_id', 'must'}"),
    (
        {"must": [{"key": "a", "match": {"value": 1.5}}]},
        "filter.must[0].match.value: expected a string, an integer or a boolean, got 1.5",
    ),
    (
        {"must": [{"key": "a", "match": {"value": None}}]},
        "filter.must[0].match.value: expected a string, an integer or a boolean, got null",
    ),
    (
        {"must": [{"key": "a", "match": {"value": 2**63}}]},
        "filter.must[0].match.value: integer 9223372036854775808 is outside",
    ),
    (
        {"must": [{"key": "a", "match": {"value": 1, "any": [1]}}]},
        "filter.must[0].match: expected exactly one of value, any",
    ),
    ({"must": [{"key": "a", "match": {}}]}, "filter.must[0].match: expected exactly one of"),
    ({"must": [{"key": "a", "match": {"values": 1}}]}, "filter.must[0].match: unknown match keys {'values'}"),
    (
        {"must": [{"key": "a", "match": {"any": 1}}]},
        "filter.must[0].match.any: expected a list of strings or of integers, got 1",
    ),
    (
        {"must": [{"key": "a", "match": {"any": [1, "x"]}}]},
        "filter.must[0].match.any[1]: expected a 64-bit integer (all strings or all integers), got 'x'",
    ),
    (
        {"must": [{"key": "a", "match": {"except": [True]}}]},
        "filter.must[0].match.except[0]: expected a 64-bit integer",
    ),
    ({"must": [{"key": "a", "match": {"text": 1}}]}, "filter.must[0].match.text: expected a string, got 1"),
    (
        {"must": [{"key": "a", "values_count": {"gt": -1}}]},
        "filter.must[0].values_count.gt: expected a non-negative integer, got -1",
    ),
    (
        {"must": [{"key": "a", "values_count": {"gt": 1.5}}]},
        "filter.must[0].values_count.gt: expected a non-negative integer, got 1.5",
    ),
    ({"must": [{"key": "a", "is_empty": "yes"}]}, "filter.must[0].is_empty: expected true or false, got 'yes'"),
    ({"must": [{"is_empty": "a"}]}, "filter.must[0].is_empty: expected an object, got 'a'"),
    ({"must": [{"is_null": {"key": "a", "x": 1}}]}, "filter.must[0].is_null: unknown is_null keys {'x'}"),
    ({"must": [{"is_null": {}}]}, "filter.must[0].is_null: missing required key 'key'"),
    ({"must": [{"is_empty": {"key": "a["}}]}, "filter.must[0].is_empty.key: invalid payload key 'a['"),
    ({"must": [{"has_id": 1}]}, "filter.must[0].has_id: expected a list of point ids, got 1"),
    ({"must": [{"has_id": [1, -1]}]}, "filter.must[0].has_id[1]: integer id -1 is outside"),
    ({"must": [{"has_id": [True]}]}, "filter.must[0].has_id[0]: a boolean is not a point id"),
    ({"must": [{"has_id": [""]}]}, "filter.must[0].has_id[0]: empty string is not a point id"),
    ({"must": [{"has_id": [1.5]}]}, "filter.must[0].has_id[0]: expected an unsigned integer or a string, got float"),
    ({"must": [{"has_vector": "v"}]}, "filter.must[0].has_vector: the 'has_vector' condition needs a collection"),
    ({"must": [{"slice": {"total": 2, "index": 0}}]}, "filter.must[0].slice: the 'slice' condition is not supported"),
    ({"must": [{"nested": {"key": "a"}}]}, "filter.must[0].nested: missing required key 'filter'"),
    (
        {"must": [{"nested": {"key": "a", "filter": {"must": [{"key": "x", "range": {"lt": "z"}}]}}}]},
        "filter.must[0].nested.filter.must[0].range.lt: expected an RFC 3339 datetime, got 'z'",
    ),
    ({"must": [{"nested": {"key": "a", "filter": [], "x": 1}}]}, "filter.must[0].nested: unknown nested keys {'x'}"),
    (
        {"min_should": {"conditions": [], "min_count": 0}},
        "filter.min_should.min_count: expected an integer >= 1, got 0",
    ),
    (
        {"min_should": {"conditions": {}, "min_count": 1}},
        "filter.min_should.conditions: expected a list of conditions, got an object",
    ),
    (
        {"min_should": {"conditions": [{"bad": 1}], "min_count": 1}},
        "filter.min_should.conditions[0]: unknown condition keys {'bad'}",
    ),
    ({"min_should": {"min_count": 1}}, "filter.min_should: missing required key 'conditions'"),
    (
        {"must": [{"key": "g", "geo_radius": {"center": {"lat": 95, "lon": 0}, "radius": 1}}]},
        "filter.must[0].geo_radius.center.lat: latitude must be within -90..90, got 95.0",
    ),
    (
        {"must": [{"key": "g", "geo_radius": {"center": {"lat": 0, "lon": 0}}}]},
        "filter.must[0].geo_radius: missing required key 'radius'",
    ),
    (
        {
            "must": [
                {
                    "key": "g",
                    "geo_bounding_box": {"top_left": {"lat": 0, "lon": 200}, "bottom_right": {"lat": 0, "lon": 0}},
                }
            ]
        },
        "filter.must[0].geo_bounding_box.top_left.lon: longitude must be within",
    ),
    (
        {"must": [{"key": "g", "geo_polygon": {"exterior": {"points": [{"lat": 0, "lon": 0}] * 3}}}]},
        "filter.must[0].geo_polygon.exterior.points: a ring needs at least 4 points, got 3",
    ),
    (
        {"must": [{"key": "g", "geo_polygon": {"exterior": {"points": [{"lat": 0, "lon": i} for i in range(4)]}}}]},
        "filter.must[0].geo_polygon.exterior.points: the first and last points of a ring must be the same",
    ),
    (
        {
            "must": [
                {
                    "key": "g",
                    "geo_polygon": {"exterior": {"points": [{"lat": 0, "lon": 0}] * 4}, "interiors": [{"points": [1]}]},
                }
            ]
        },
        "filter.must[0].geo_polygon.interiors[0].points[0]: expected an object, got 1",
    ),
    (_deep(MAX_DEPTH + 1), f"filter{'.must[0]' * (MAX_DEPTH + 1)}: filter nested deeper than {MAX_DEPTH} levels"),
]


@pytest.mark.parametrize(
    ("obj", "message"), ERRORS, ids=[f"{i}:{m.split(':')[0][-40:]}" for i, (_, m) in enumerate(ERRORS)]
)
def test_error_messages_name_the_path(obj: Any, message: str) -> None:
    with pytest.raises(InvalidFilter) as raised:
        parse_filter(obj)
    assert str(raised.value).startswith(message)


def test_error_path_uses_field_name() -> None:
    with pytest.raises(InvalidFilter, match=r"^query\.filter\.must\[0\]: unknown condition keys \{'x'\}$"):
        parse_filter({"must": [{"x": 1}]}, field="query.filter")


def test_max_depth_is_allowed() -> None:
    assert compile_(_deep(MAX_DEPTH)).matches(1, {})


def test_long_keys_do_not_recurse() -> None:
    key = ".".join(["k"] * 5000)
    payload: dict[str, Any] = {"k": 1}
    for _ in range(4999):
        payload = {"k": payload}
    assert hit(field(key, match={"value": 1}), payload)


# --------------------------------------------------------------------------- fuzzing

_VOCABULARY = [
    *["must", "should", "must_not", "min_should", "conditions", "min_count", "key", "match", "range", "values_count"],
    *["is_empty", "is_null", "has_id", "nested", "filter", "value", "any", "except", "text", "gt", "lt", "gte", "lte"],
    *["geo_radius", "center", "radius", "lat", "lon", "points", "exterior", "a", "a.b", "a[]"],
    "",
]
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.sampled_from(_VOCABULARY),
    st.text(max_size=5),
)
_json = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_VOCABULARY), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_json, payload=st.dictionaries(st.sampled_from(["a", "b"]), _json, max_size=3))
def test_fuzz_only_invalid_filter_escapes(obj: Any, payload: dict[str, Any]) -> None:
    try:
        parsed = parse_filter(obj)
    except InvalidFilter:
        return
    if parsed is None:
        return
    parsed.matches(1, payload)  # must not raise
    models.Filter(**obj)  # whatever we accept, qdrant-client's models accept too


# --------------------------------------------------------------------------- vs qdrant-client
#
# Differential tests: random payloads and filters, our ids against qdrant-client local mode's.
# One test per condition family keeps each family well sampled; the last one mixes everything
# into random boolean trees. Known divergence from Qdrant's *docs* (we follow local mode, the
# brief's reference): an unindexed ``match.text`` compares word tokens, not substrings.

_KEYS = ["a", "b", "c"]
# top-level keys weighted up: deep paths rarely exist in random payloads
_FIELD_KEYS = ["a"] * 6 + ["b"] * 2 + ["a.b", "a[]", "a[].b", "a[0]", "b.c", "a[].b[]", "c[1].a", "a.b.c"]
# small pools, so that filter constants and payload values often collide
_INTS = [0, 1, 2]
_STRINGS = ["x", "foo", "Foo bar", "bar baz qux", "", "x-y"]
_NUMBERS = [-2.5, -1, 0, 0.5, 1, 2, 2.5, 1e300]
_N_POINTS = 16


def _point_id(index: int) -> PointId:
    """Even indexes are integer ids, odd ones UUIDs (the id kinds Qdrant accepts)."""
    return index if index % 2 == 0 else f"00000000-0000-4000-8000-{index:012x}"


_geo = st.builds(
    lambda lat, lon: {"lat": lat, "lon": lon},
    st.sampled_from([0.0, 1.0, 1.5, -1, 3]),
    st.sampled_from([0.0, 1.0, 1.5, -1, 179.5, -179.5]),
)
_leaf = st.one_of(
    st.sampled_from(_INTS),
    st.sampled_from([0.0, 1.0, 2.5, 1e300]),
    st.sampled_from(_STRINGS),
    st.booleans(),
    st.none(),
    _geo,
)
_tree = st.recursive(
    _leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), children, max_size=3),
    max_leaves=8,
)
# mostly scalars and flat arrays, so that conditions on top-level keys often decide
_value = st.one_of(_leaf, _leaf, st.lists(_leaf, max_size=3), _tree, _tree)
_payload = st.fixed_dictionaries({}, optional={key: _value for key in _KEYS})
_payloads = st.lists(_payload, min_size=4, max_size=_N_POINTS)

_field_key = st.sampled_from(_FIELD_KEYS)
_ints = st.lists(st.sampled_from(_INTS), max_size=3)
_strs = st.lists(st.sampled_from(_STRINGS), max_size=3)
_match = st.one_of(
    st.fixed_dictionaries({"value": st.sampled_from(_INTS) | st.booleans() | st.sampled_from(_STRINGS)}),
    st.fixed_dictionaries({"any": _ints | _strs}),
    st.fixed_dictionaries({"except": _ints | _strs}),
    st.builds(
        lambda kind, text: {kind: text},
        st.sampled_from(["text", "text_any", "phrase", "prefix", "substring"]),
        st.sampled_from(["foo", "FOO bar", "bar baz", "x", "", "y x", "Fo", "-", "baz qux"]),
    ),
)
_range = st.fixed_dictionaries({}, optional={b: st.sampled_from(_NUMBERS) for b in ("gt", "gte", "lt", "lte")})
_count = st.fixed_dictionaries({}, optional={b: st.integers(0, 3) for b in ("gt", "gte", "lt", "lte")})
_geo_point = st.fixed_dictionaries(
    {"lat": st.sampled_from([-1.0, 0.5, 1.2, 2.0]), "lon": st.sampled_from([-1.0, 0.5, 1.2, 179.0])}
)
_geo_op = st.one_of(
    st.fixed_dictionaries(
        {"geo_radius": st.fixed_dictionaries({"center": _geo_point, "radius": st.sampled_from([1.0, 1e5, 3e5])})}
    ),
    st.fixed_dictionaries(
        {"geo_bounding_box": st.fixed_dictionaries({"top_left": _geo_point, "bottom_right": _geo_point})}
    ),
)
_field_op = st.one_of(
    st.fixed_dictionaries({"match": _match}),
    st.fixed_dictionaries({"range": _range}),
    st.fixed_dictionaries({"values_count": _count}),
    st.fixed_dictionaries({"is_empty": st.booleans()}),
    st.fixed_dictionaries({"is_null": st.booleans()}),
    _geo_op,
)


def _on_key(ops: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Field conditions ``{"key": ..., **op}``."""
    return st.builds(lambda key, op: {"key": key, **op}, _field_key, ops)


_has_id = st.lists(st.integers(0, _N_POINTS + 1), max_size=4).map(
    lambda indexes: {"has_id": [str(_point_id(i)).upper() if i % 2 else i for i in indexes]}
)
_emptiness = st.one_of(
    _field_key.map(lambda key: {"is_empty": {"key": key}}),
    _field_key.map(lambda key: {"is_null": {"key": key}}),
    _on_key(st.fixed_dictionaries({"is_empty": st.booleans()})),
    _on_key(st.fixed_dictionaries({"is_null": st.booleans()})),
)
_leaf_condition = st.one_of(_on_key(_field_op), _on_key(_field_op), _emptiness, _has_id)


def _single(conditions: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A filter requiring, or forbidding, one condition."""
    return st.builds(lambda clause, c: {clause: c}, st.sampled_from(["must", "must_not"]), conditions)


def _filters(conditions: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Filters whose clauses draw from ``conditions``."""
    clause = conditions | st.lists(conditions, max_size=2)
    min_should = st.fixed_dictionaries({"conditions": st.lists(conditions, max_size=3), "min_count": st.integers(1, 2)})
    optional = {"must": clause, "should": clause, "must_not": clause, "min_should": min_should}
    return st.fixed_dictionaries({}, optional=optional)


def _compound(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    nested = st.builds(
        lambda key, inner: {"nested": {"key": key, "filter": inner}},
        st.sampled_from(["a", "a[]", "b", "a.b", "c"]),
        _filters(children),
    )
    return _filters(children) | nested


_trees = _filters(st.recursive(_leaf_condition, _compound, max_leaves=6))

_client = QdrantClient(":memory:")
_collection_counter = itertools.count()


def _local_matches(points: list[tuple[PointId, dict[str, Any]]], filter_json: dict[str, Any]) -> set[PointId]:
    """Ids qdrant-client's local mode selects with ``filter_json`` (scroll and count agree)."""
    name = f"c{next(_collection_counter)}"
    _client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    try:
        _client.upsert(
            name,
            points=[models.PointStruct(id=pid, vector=[1.0, 0.0], payload=payload) for pid, payload in points],
        )
        found, _ = _client.scroll(
            name, scroll_filter=models.Filter(**filter_json), limit=len(points) + 1, with_payload=False
        )
        count = _client.count(name, count_filter=models.Filter(**filter_json), exact=True).count
    finally:
        _client.delete_collection(name)
    ids: set[PointId] = {point.id if isinstance(point.id, int) else str(point.id) for point in found}
    assert count == len(ids)
    return ids


def _assert_agrees(filter_json: dict[str, Any], payloads: list[dict[str, Any]]) -> None:
    """Our matches equal local mode's for ``filter_json`` over points with ``payloads``."""
    filter_json = json.loads(json.dumps(filter_json))  # exactly what arrives over REST
    points = [(_point_id(i), payload) for i, payload in enumerate(payloads)]
    parsed = compile_(filter_json)
    ours = {pid for pid, payload in points if parsed.matches(pid, payload)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _local_matches(points, filter_json)
    assert ours == theirs, (filter_json, points)


_differential = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_differential
@given(filter_json=_single(_on_key(st.fixed_dictionaries({"match": _match}))), payloads=_payloads)
def test_match_agrees_with_qdrant_client(filter_json: dict[str, Any], payloads: list[dict[str, Any]]) -> None:
    _assert_agrees(filter_json, payloads)


@_differential
@given(
    filter_json=_single(
        _on_key(st.fixed_dictionaries({"range": _range}) | st.fixed_dictionaries({"values_count": _count}))
    ),
    payloads=_payloads,
)
def test_range_and_values_count_agree_with_qdrant_client(
    filter_json: dict[str, Any], payloads: list[dict[str, Any]]
) -> None:
    _assert_agrees(filter_json, payloads)


@_differential
@given(filter_json=_single(_emptiness | _has_id), payloads=_payloads)
def test_empty_null_and_has_id_agree_with_qdrant_client(
    filter_json: dict[str, Any], payloads: list[dict[str, Any]]
) -> None:
    _assert_agrees(filter_json, payloads)


@_differential
@given(filter_json=_single(_on_key(_geo_op)), payloads=_payloads)
def test_geo_agrees_with_qdrant_client(filter_json: dict[str, Any], payloads: list[dict[str, Any]]) -> None:
    _assert_agrees(filter_json, payloads)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filter_json=_trees, payloads=_payloads)
def test_filter_trees_agree_with_qdrant_client(filter_json: dict[str, Any], payloads: list[dict[str, Any]]) -> None:
    _assert_agrees(filter_json, payloads)


# --------------------------------------------------------------------------- corrupted filters


def _locations(obj: Any, path: str = "filter") -> list[str]:
    """Every node of a JSON value, named the way error messages name it."""
    found = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _locations(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += _locations(value, f"{path}[{index}]")
    return found


def _replaced(obj: Any, path: str, new: Any, at: str = "filter") -> Any:
    """A copy of ``obj`` with the node named ``path`` replaced by ``new``."""
    if at == path:
        return new
    if isinstance(obj, dict):
        return {key: _replaced(value, path, new, f"{at}.{key}") for key, value in obj.items()}
    if isinstance(obj, list):
        return [_replaced(value, path, new, f"{at}[{index}]") for index, value in enumerate(obj)]
    return obj


def _related(a: str, b: str) -> bool:
    """One location is the other or contains it."""
    return any(
        longer == shorter or longer.startswith((shorter + ".", shorter + "[")) for longer, shorter in ((a, b), (b, a))
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees.filter(bool), data=st.data(), payloads=_payloads)
def test_corrupted_filters_fail_at_the_corruption_or_agree(
    tree: dict[str, Any], data: st.DataObject, payloads: list[dict[str, Any]]
) -> None:
    """Replace one node of a valid filter with arbitrary JSON: either the error names that
    node (or one around it), or the filter is still valid and still agrees with local mode."""
    where = data.draw(st.sampled_from(_locations(tree)[1:]), label="where")
    broken = _replaced(tree, where, data.draw(_json, label="garbage"))
    try:
        parse_filter(broken)
    except InvalidFilter as exc:
        error_at = str(exc).split(": ", 1)[0]
        assert _related(error_at, where), (str(exc), where)
        return
    _assert_agrees(broken, payloads)
