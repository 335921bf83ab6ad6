"""Point ids: unsigned integers and UUIDs as in Qdrant, any other string as an extension.

In memory an id is a Python ``int`` (0 <= id < 2**63, the range an Avro ``long`` holds)
or a ``str``. A string in the canonical UUID layout (8-4-4-4-12 hexadecimal digits) is
normalised to lowercase, so ``"A0..."`` and ``"a0..."`` name the same point; every other
string is kept exactly as written (spaces, ``/``, ``%``, quotes, emoji, any Unicode).
Integers and strings never collide: ``7`` and ``"7"`` are different points.

A string id must be valid Unicode (no lone surrogate: it could not be encoded on the log)
and at most :data:`MAX_STR_ID_LEN` characters. A write may not introduce an id holding the
NUL character (:func:`storable_point_id`): a PostgreSQL catalog cannot store it.
"""

from __future__ import annotations

import re
import uuid
from typing import Union

from schemas.errors import InvalidPointId

PointId = Union[int, str]

MAX_INT_ID = 2**63 - 1
MAX_STR_ID_LEN = 512
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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
        if _UUID.fullmatch(value):  # strictly the canonical layout: uuid.UUID() would accept more
            return value.lower()
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidPointId(f"{field}: string id is not valid Unicode (it holds a lone surrogate)") from None
        return value
    raise InvalidPointId(f"{field}: expected an unsigned integer or a string, got {type(value).__name__}")


def storable_point_id(value: object, *, field: str = "id") -> PointId:
    """:func:`normalize_point_id` for an id a write introduces: the NUL character is refused too.

    Records already on the log are read with :func:`normalize_point_id` alone, as written.
    """
    point_id = normalize_point_id(value, field=field)
    if isinstance(point_id, str) and "\x00" in point_id:
        raise InvalidPointId(f"{field}: the NUL character (U+0000) is not allowed in a string id")
    return point_id


def catalog_key(point_id: PointId) -> str:
    """The point's key in the SQL catalog: type-tagged so ``7`` and ``"7"`` stay distinct."""
    return f"n:{point_id}" if isinstance(point_id, int) else f"s:{point_id}"


def from_catalog_key(key: str) -> PointId:
    """Inverse of :func:`catalog_key`."""
    tag, _, rest = key.partition(":")
    return int(rest) if tag == "n" else rest


def id_order(point_id: PointId) -> tuple[int, int | str]:
    """Qdrant's scroll order: integer ids ascending, then string ids (UUIDs) lexicographically."""
    return (0, point_id) if isinstance(point_id, int) else (1, point_id)
