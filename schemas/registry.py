"""The schema files, loaded and validated at import.

``schemas/avro/<EventType>.v<N>.avsc`` holds version N of an event type; every version
ever written stays here, so old records keep decoding. The newest version of each type is
the reader (and writer) schema. ``vectorizer.Envelope.avsc`` is shared by all of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema, to_parsing_canonical_form

AVRO_DIR = Path(__file__).resolve().parent / "avro"
_FILE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")

# CRC-64-AVRO (Rabin) as the Avro specification defines it.
_EMPTY = 0xC15D213AA4D7A795
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO fingerprint of ``data`` (an unsigned 64-bit integer)."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one event type, with the pieces the codec needs."""

    event_type: str
    version: int
    full: Any  # parsed schema of the whole record (envelope + body)
    body: Any  # parsed schema of the body alone (the fields after the envelope)
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO of the canonical form

    @property
    def header(self) -> bytes:
        return b"\xc3\x01" + self.fingerprint


def _body_schema(raw: dict[str, Any]) -> Any:
    body = {k: v for k, v in raw.items() if k != "fields"}
    body["fields"] = [f for f in raw["fields"] if f["name"] != "envelope"]
    return fastavro.parse_schema(body)


def _load() -> tuple[Any, dict[str, dict[int, SchemaVersion]], dict[bytes, SchemaVersion]]:
    envelope = load_schema(str(AVRO_DIR / "vectorizer.Envelope.avsc"))
    by_type: dict[str, dict[int, SchemaVersion]] = {}
    by_fp: dict[bytes, SchemaVersion] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        match = _FILE.match(path.name)
        if match is None:
            continue
        raw = json.loads(path.read_text())
        if raw.get("fields", [{}])[0].get("name") != "envelope":
            raise ValueError(f"{path.name}: the first field must be the envelope")
        full = load_schema(str(path))
        fingerprint = crc64_avro(to_parsing_canonical_form(full).encode()).to_bytes(8, "little")
        version = SchemaVersion(match["name"], int(match["version"]), full, _body_schema(raw), fingerprint)
        if fingerprint in by_fp:
            raise ValueError(f"{path.name}: same fingerprint as {by_fp[fingerprint].event_type}")
        by_type.setdefault(version.event_type, {})[version.version] = version
        by_fp[fingerprint] = version
    return envelope, by_type, by_fp


ENVELOPE_SCHEMA, VERSIONS, BY_FINGERPRINT = _load()


def latest(event_type: str) -> SchemaVersion:
    """The newest version of ``event_type``: what producers write and readers decode into."""
    versions = VERSIONS[event_type]
    return versions[max(versions)]
