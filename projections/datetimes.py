"""Datetime payload values and range bounds, read as Qdrant reads them.

Qdrant (and qdrant-client's local mode, ``qdrant_client/local/datetime_utils.py``, our
reference) accepts RFC 3339 and a few looser forms (a space for ``T``, no seconds, a bare
date, an offset of hours only, ``Z``/``z``/`` UTC``); a value without an offset is UTC.
:func:`parse` gives microseconds since the epoch, so datetimes compare as integers, exactly
as ``datetime`` objects do (their resolution is the microsecond).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Final

__all__ = ["parse"]

_FORMATS: Final = (
    "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f %z", "%Y-%m-%d %H:%M:%S.%f %z", "%Y-%m-%dT%H:%M:%S %z", "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _normalized(text: str) -> str:
    text = text.lstrip()
    if text.endswith(" UTC"):
        text = text[: -len(" UTC")] + "+00:00"
    elif text.endswith("z"):
        text = text[:-1] + "Z"
    dot = text.find(".")
    if dot != -1:  # more than 6 fraction digits: cut to microseconds (rounded down, as Qdrant keeps them)
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        if end - dot > 7:
            text = text[: dot + 7] + text[end:]
    return text


def _strptime(text: str) -> datetime | None:
    for fmt in _FORMATS:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    return None


@lru_cache(maxsize=65_536)
def parse(text: str) -> int | None:
    """Microseconds since the epoch (UTC) of a datetime string, None when it is not one."""
    text = _normalized(text)
    dt = _strptime(text)
    if dt is None:
        offset = text[-3:]  # "+01": an offset of hours only
        if len(offset) == 3 and offset[0] in "+-" and offset[1:].isdigit():
            dt = _strptime(text + ":00")
    if dt is None:
        return None
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
