"""Point ids: unsigned integers and UUIDs as in Qdrant, any other string as an extension.

In memory an id is a Python ``int`` (0 <= id < 2**63, the range an Avro ``long`` holds)
or a ``str``. UUIDs are normalised to lowercase hyphenated form, so ``"A0..."`` and
``"a0..."`` name the same point. Integers and strings never collide: ``7`` and ``"7"``
are different points.
"""

from __future__ import annotations

import uuid
from typing import Union

from schemas.errors import InvalidPointId

PointId = Union[int, str]

MAX_INT_ID = 2**63 - 1
MAX_STR_ID_LEN = 512


def normalize_point_id(value: object, *, field: str = "id") -> PointId:
    """Return the canonical form of ``value`` or raise :class:`InvalidPointId` naming ``field``."""
    if isinstance(value, bool):
        raise InvalidPointId(f"{field}: a boolean is not a point id")
    if isinstance(value, int):
        if value < 0 or value > MAX_INT_ID:
            raise InvalidPointId(f"{field}: integer id {value} is outside 0..{MAX_INT_ID}")
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        if not value:
            raise InvalidPointId(f"{field}: empty string is not a point id")
        if len(value) > MAX_STR_ID_LEN:
            raise InvalidPointId(f"{field}: string id longer than {MAX_STR_ID_LEN} characters")
        if len(value) == 36 and value.count("-") == 4:
            try:
                return str(uuid.UUID(value))
            except ValueError:
                return value
        return value
    raise InvalidPointId(f"{field}: expected an unsigned integer or a string, got {type(value).__name__}")


def catalog_key(point_id: PointId) -> str:
    """The point's key in the SQL catalog: type-tagged so ``7`` and ``"7"`` stay distinct."""
    return f"n:{point_id}" if isinstance(point_id, int) else f"s:{point_id}"


def from_catalog_key(key: str) -> PointId:
    """Inverse of :func:`catalog_key`."""
    tag, _, rest = key.partition(":")
    return int(rest) if tag == "n" else rest
