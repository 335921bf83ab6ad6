"""Request bodies mean exactly what the standard library's JSON parser makes of them: msgspec
parses them faster, and whatever it refuses goes to the standard library (same value or error)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vectorizer.api.errors import BadRequest
from vectorizer.api.parsing import load_body

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


def _stdlib(raw: bytes) -> object:
    try:
        value = json.loads(raw)
    except RecursionError:
        return "nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return f"body: not valid JSON ({exc})"
    return value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"


def _ours(raw: bytes) -> object:
    try:
        return load_body(raw)
    except BadRequest as exc:
        message = str(exc)
        return "nested too deeply" if "nested too deeply" in message else message.replace("body: expected", "expected")


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_parses_as_the_standard_library_parses_it(value: object) -> None:
    raw = json.dumps({"v": value}, ensure_ascii=False).encode()
    assert load_body(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [
    b'{"id": 18446744073709551616}', b'{"id": -9223372036854775809}', b'{"id": 18446744073709551615}',
    b'{"v": NaN}', b'{"v": Infinity}', b'{"v": 1e400}', b'{"s": "\\ud800"}', b'{"a": 1, "a": 2}',
    b'\xff\xfe{\x00}\x00', b'{"a": [' * 2000 + b']' * 2000 + b'}', b'[1, 2]', b'"text"', b'{"a": 1',
    b'{"a": 1} trailing', b'{"x": "\xe9"}', b'  {"a": 0.1}  ', b'{"a": -0.0}', b'{"a": 1E2}',
])
def test_edge_cases_mean_and_fail_as_before(raw: bytes) -> None:
    assert _ours(raw) == _stdlib(raw)
