"""Sealed records: an event's record value encrypted with AES-256-GCM under its collection's data key.

Layout of a sealed record value::

    "VZE" 01 | key id (16 bytes) | collection length (2 bytes, big-endian) | collection (UTF-8)
             | nonce (12 bytes) | AES-256-GCM(clear record) with its 16-byte tag

The clear record is the value ``schemas.codec.encode`` makes (``C3 01`` ...), whole: envelope
and body. Everything before the ciphertext is the associated data, so the tag authenticates
the collection and the key id too: a record copied under another collection's name, or given
another key id, fails like an altered one. A clear record starts with the Avro single-object
marker ``C3 01``, a sealed one with ``VZE``: the two never look alike, so logs that mix them
(encryption turned on midway) replay as written.

The data keys come from a :class:`DataKeys` (``infra.keyring.Keyring``, the keys topic).
"""

from __future__ import annotations

import os
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.errors import AuthenticationFailed, DataKeyUnavailable, InvalidContent, Shredded

MAGIC = b"VZE\x01"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
_FIXED = len(MAGIC) + KEY_ID_BYTES + 2


class DataKeys(Protocol):
    """Where a reader finds a collection's data keys."""

    def cipher(self, collection: str, key_id: bytes) -> AESGCM | None:
        """The data key ``key_id`` of ``collection``; None if it is not held (or was shredded)."""
        ...

    def shredded(self, collection: str, key_id: bytes) -> bool:
        """Whether ``key_id`` of ``collection`` was destroyed on purpose (crypto-shredding)."""
        ...


class SealingKeys(DataKeys, Protocol):
    """Data keys that also seal what is written at rest now (``infra.keyring.Keyring``)."""

    def snapshot_key(self, collection: str) -> tuple[bytes, AESGCM] | None:
        """The key ``collection``'s files and rows are sealed with now (key id, cipher); None: leave them clear."""
        ...


def cipher_for(keys: DataKeys | None, collection: str, key_id: bytes, what: str) -> AESGCM:
    """The data key ``key_id`` of ``collection`` that sealed ``what`` ("the record", "the snapshot
    file", ...): :class:`Shredded` if it was shredded, :class:`DataKeyUnavailable` if it is not held."""
    if keys is None:
        raise DataKeyUnavailable(f"collection {collection!r}: {what} is encrypted and no key-encryption key is "
                                 "configured (VECTORIZER_ENCRYPTION_KEY_FILE or VECTORIZER_ENCRYPTION_KEY)")
    cipher = keys.cipher(collection, key_id)
    if cipher is None:
        if keys.shredded(collection, key_id):
            raise Shredded(f"collection {collection!r}: data key {key_id.hex()} was shredded: {what} cannot be read")
        raise DataKeyUnavailable(f"collection {collection!r}: data key {key_id.hex()} is not on the keys topic")
    return cipher


def is_sealed(data: bytes) -> bool:
    return data[:4] == MAGIC


def seal(clear: bytes, collection: str, key_id: bytes, cipher: AESGCM) -> bytes:
    """``clear`` (a record value) sealed for ``collection`` under data key ``key_id``."""
    name = collection.encode()
    head = MAGIC + key_id + struct.pack(">H", len(name)) + name + os.urandom(NONCE_BYTES)
    return head + cipher.encrypt(head[-NONCE_BYTES:], clear, head)


def header(data: bytes) -> tuple[str, bytes, int]:
    """A sealed record's collection, key id and where its ciphertext starts."""
    if len(data) < _FIXED:
        raise InvalidContent("sealed record: shorter than its header")
    key_id = bytes(data[4:4 + KEY_ID_BYTES])
    (length,) = struct.unpack(">H", data[4 + KEY_ID_BYTES:_FIXED])
    start = _FIXED + length + NONCE_BYTES
    if len(data) < start + 16:
        raise InvalidContent("sealed record: shorter than its header and tag")
    try:
        collection = bytes(data[_FIXED:_FIXED + length]).decode()
    except UnicodeDecodeError:
        raise InvalidContent("sealed record: the collection name is not UTF-8") from None
    return collection, key_id, start


def unseal(data: bytes, keys: DataKeys | None) -> tuple[str, bytes]:
    """The collection and clear record of a sealed record.

    Raises :class:`Shredded` if its data key was shredded (the record is gone for good, as if
    deleted), :class:`DataKeyUnavailable` if the key is not held (no KEK configured, or a key
    the keys topic does not have), :class:`AuthenticationFailed` if the tag does not verify."""
    collection, key_id, start = header(data)
    cipher = cipher_for(keys, collection, key_id, "the record")
    try:
        clear = cipher.decrypt(bytes(data[start - NONCE_BYTES:start]), bytes(data[start:]), bytes(data[:start]))
    except InvalidTag:
        raise AuthenticationFailed(f"collection {collection!r}: authentication failed (the record was altered, "
                                   f"or sealed for another collection or key)") from None
    return collection, clear
