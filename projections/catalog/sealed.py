"""Sealed catalog payloads: ``vz_points.payload`` encrypted with its collection's data key.

The column holds a point's payload as canonical JSON text (an object: it starts with ``{``),
NULL for none. Sealed, it holds the standard base64 text (padded) of::

    "VZC" 01 | key id (16 bytes) | nonce (12 bytes) | AES-256-GCM(the canonical JSON, UTF-8) with its 16-byte tag

which starts with ``VlpD`` (``VZC`` in base64): a clear value never does, so a column that mixes
them (encryption turned on midway, an old backup restored) reads as written. NULL stays NULL (a
point without a payload says so). The associated data is the 32-byte header followed by
``"vectorizer catalog payload" 00 collection 00 point key`` (UTF-8): a value copied to another
point, or another collection's row, fails authentication like an altered one. The row's other
columns (label, checksum, version) stay in clear. No column type changes: the text fits ``TEXT``
in SQLite and Postgres alike.

The data keys are the events' (``infra.keyring.Keyring``): shredding a collection's keys makes
its sealed rows unreadable too. A value is sealed with the key the collection's snapshot files
get (``snapshot_key``), so the catalog is sealed exactly when its projection snapshots are.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.errors import AuthenticationFailed, InvalidContent
from schemas.sealing import DataKeys, SealingKeys, cipher_for

MAGIC = b"VZC\x01"
TEXT_PREFIX = "VlpD"  # base64 of "VZC": how every sealed value starts
KEY_ID_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
_TAG_BYTES = 16




def _identity(collection: str, point_key: str) -> bytes:
    return f"vectorizer catalog payload\x00{collection}\x00{point_key}".encode()


def is_sealed(stored: str | None) -> bool:
    return stored is not None and stored.startswith(TEXT_PREFIX)


def seal(clear: str, collection: str, point_key: str, key_id: bytes, cipher: AESGCM) -> str:
    """The payload text ``clear`` of point ``point_key`` of ``collection``, sealed (base64 text)."""
    head = MAGIC + key_id + os.urandom(NONCE_BYTES)
    sealed = head + cipher.encrypt(head[-NONCE_BYTES:], clear.encode(), head + _identity(collection, point_key))
    return base64.b64encode(sealed).decode("ascii")


def open_payload(stored: str | None, collection: str, point_key: str, keys: DataKeys | None) -> str | None:
    """The clear payload text of a stored value: a clear one (or NULL) as it is, a sealed one decrypted.

    Raises :class:`Shredded` (its data key was shredded), :class:`DataKeyUnavailable` (no KEK, or a
    key the keys topic lacks), :class:`AuthenticationFailed` (altered, or another point's or
    collection's value), :class:`InvalidContent` (``VlpD``... that is not a sealed value)."""
    if not is_sealed(stored):
        return stored
    assert stored is not None
    try:
        data = base64.b64decode(stored, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidContent(f"collection {collection!r}: point {point_key}: the payload is not a sealed "
                             "value (bad base64)") from None
    if data[:4] != MAGIC or len(data) < HEADER_BYTES + _TAG_BYTES:
        raise InvalidContent(f"collection {collection!r}: point {point_key}: the payload is not a sealed value")
    key_id = data[4:4 + KEY_ID_BYTES]
    cipher = cipher_for(keys, collection, key_id, f"point {point_key}'s payload in the catalog")
    head = data[:HEADER_BYTES]
    try:
        clear = cipher.decrypt(head[-NONCE_BYTES:], data[HEADER_BYTES:], head + _identity(collection, point_key))
    except InvalidTag:
        raise AuthenticationFailed(f"collection {collection!r}: point {point_key}: the payload failed "
                                   "authentication (altered, or another point's or collection's)") from None
    return clear.decode()


class Sealer:
    """Seals the payloads of rows as they are written, one key lookup per collection (a batch's)."""

    def __init__(self, keys: SealingKeys | None) -> None:
        self.keys = keys
        self._held: dict[str, tuple[bytes, AESGCM] | None] = {}

    def __call__(self, collection: str, point_key: str, payload: str | None) -> str | None:
        """The value to store: NULL and already sealed values as they are, clear ones sealed when the
        collection has a sealing key (else clear: encryption off and no key of its own)."""
        if self.keys is None or payload is None or is_sealed(payload):
            return payload
        if collection not in self._held:
            self._held[collection] = self.keys.snapshot_key(collection)
        key = self._held[collection]
        return payload if key is None else seal(payload, collection, point_key, key[0], key[1])
