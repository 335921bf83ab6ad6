"""Attribution: the Kafka record headers that say who wrote an event, for the audit trail.

Every event record a :class:`~producers.VectorProducer` writes carries

- ``vz-caller``: who asked for the write — the identity the server authenticated the request as
  (``api-key``, ``read-only-api-key``, ``jwt:<subject>``, ``anonymous``), or what an app's own
  producer calls itself (``VectorProducer(caller=...)``, by default its producer id). Never a secret.
- ``vz-request-id``: the request the write was made for (the server's ``x-request-id``), when
  there is one.

Headers only, like the transaction framing (``schemas.framing``): the event bodies, their Avro
schemas and what a projection does with them are unchanged, so a log replays to the same state
with or without them, and records written before they existed read as "caller unknown". They are
not signed: anyone allowed to write the topic can write any value (see docs/security.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CALLER = "vz-caller"
REQUEST_ID = "vz-request-id"
#: Longest value kept, in UTF-8 bytes (a longer one is cut there, on a character boundary).
MAX_BYTES = 256


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who wrote a record and for which request; ``None``: not recorded (older records)."""

    caller: str | None = None
    request_id: str | None = None


def headers(caller: str | None, request_id: str | None) -> list[tuple[str, bytes]]:
    """The attribution headers of an event record (a ``None`` value is left out)."""
    out = []
    if caller is not None:
        out.append((CALLER, _bounded(caller)))
    if request_id is not None:
        out.append((REQUEST_ID, _bounded(request_id)))
    return out


def attribution_of(record_headers: Sequence[tuple[str, bytes | None]] | None) -> Attribution:
    """What a record's headers say of its writer (both ``None`` for a record without them)."""
    caller = request_id = None
    for key, value in record_headers or ():
        if key == CALLER and value is not None:
            caller = value.decode("utf-8", "replace")
        elif key == REQUEST_ID and value is not None:
            request_id = value.decode("utf-8", "replace")
    return Attribution(caller, request_id)


def _bounded(text: str) -> bytes:
    raw = text.encode("utf-8", "replace")
    return raw if len(raw) <= MAX_BYTES else raw[:MAX_BYTES].decode("utf-8", "ignore").encode()
