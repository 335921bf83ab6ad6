"""``vectorizer.api.encoding``: answers encode as the standard library's JSON would read them back."""

from __future__ import annotations

import json

import numpy as np

from vectorizer.api.encoding import dumps
from vectorizer.api.floats import shortest


def test_the_same_values_as_the_standard_library() -> None:
    value = {"a": [1, -2.5, 0.15, 1e-7, 1e22, 2**70, -0.0], "s": "é\u2028\"\\", "n": None, "t": True,
             "nested": [{"x": {}}, []]}
    assert json.loads(dumps(value)) == value


def test_numpy_and_non_finite_values() -> None:
    assert json.loads(dumps({"v": np.arange(3, dtype=np.float32), "f": np.float32(0.5), "i": np.int64(7)})) == \
        {"v": [0.0, 1.0, 2.0], "f": 0.5, "i": 7}
    assert json.loads(dumps({"score": float("nan"), "inf": float("inf")})) == {"score": None, "inf": None}


def test_stored_vectors_print_their_shortest_decimals() -> None:
    stored = np.array([0.15, 1 / 3, 3.4028235e38, -7.0, 0.1], np.float32)
    text = dumps(shortest(stored).tolist()).decode()
    assert np.array_equal(np.array(json.loads(text), np.float32), stored)  # bit for bit
    assert text.split(",")[0] == "[0.15" and text.split(",")[1] == "0.33333334" and text.endswith(",0.1]")
