"""JSON answers, encoded by orjson; what orjson refuses (an integer beyond 64 bits, which a payload
may hold) by msgspec, the library that parses bodies (``parsing.load_body``).

Measured (docs/decisions/0012): a search answer of 10 hits encodes in 3.2 us (the standard
library, which Starlette's ``JSONResponse`` uses: 70 us), 10 points with 128-d vectors in 67 us
(1,244 us). The same JSON, with two differences that only widen what can be answered: NumPy
scalars and arrays encode as their numbers, and a non-finite float is ``null`` (the standard
library refuses it, which answered 500).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import orjson
from starlette.responses import JSONResponse


def _numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise NotImplementedError(f"cannot encode {type(value).__name__} as JSON")


_ENCODER = msgspec.json.Encoder(enc_hook=_numpy)


def dumps(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # an integer beyond 64 bits, a NumPy array orjson does not take
        return _ENCODER.encode(content)


class JsonAnswer(JSONResponse):
    """A ``JSONResponse`` whose body :func:`dumps` encodes."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
