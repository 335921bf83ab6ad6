"""Key-encryption keys: what wraps the per-collection data keys (``infra.keyring``).

A :class:`KeyEncryptionKey` turns a data key into bytes that are safe to store beside the data
(``wrap``) and back (``unwrap``); ``context`` is bound to the result (associated data), so a
wrapped key moved to another collection or key id does not unwrap. :class:`LocalKek` is the
one implementation here: a 32-byte AES-256-GCM key read from a file or an environment
variable. A KMS (AWS KMS, Vault transit, ...) fits the same protocol: ``wrap`` and ``unwrap``
become calls to it and the KEK never leaves it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.errors import EncryptionKeyError
from infra.settings import Settings

_NONCE = 12


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys. ``key_id`` names the KEK (never the key itself): stored with
    each wrapped key, so a wrong KEK is named as such rather than as a damaged record."""

    key_id: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """``data_key`` sealed under this KEK, bound to ``context``."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key; :class:`EncryptionKeyError` if this KEK did not wrap it for ``context``."""
        ...


class LocalKek:
    """A KEK held in this process's memory: AES-256-GCM, a random 96-bit nonce per wrap."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise EncryptionKeyError(f"a key-encryption key is 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)
        # A public name for the key: HMAC of a constant, so it reveals nothing about the key.
        self.key_id = hmac.new(key, b"vectorizer key-encryption key id", hashlib.sha256).hexdigest()[:16]

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], context)
        except InvalidTag:
            raise EncryptionKeyError("the key-encryption key does not unwrap this data key") from None

    def __repr__(self) -> str:
        return f"LocalKek(key_id={self.key_id})"


def parse_key(text: str | bytes, source: str) -> bytes:
    """32 bytes from what a key file or variable holds: 64 hex digits, base64 of 32 bytes, or (a
    file) the 32 raw bytes. :class:`EncryptionKeyError` naming ``source`` otherwise."""
    raw = text if isinstance(text, bytes) else text.encode()
    if len(raw) == 32 and isinstance(text, bytes):
        return raw
    stripped = raw.strip()
    if len(stripped) == 64:
        try:
            return binascii.unhexlify(stripped)
        except binascii.Error:
            pass
    try:
        decoded = base64.b64decode(stripped, validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) == 32:
        return decoded
    raise EncryptionKeyError(f"{source}: expected a 256-bit key as 64 hex digits or base64 of 32 bytes "
                             "(make one with `vectorizer keys generate`)")


def from_settings(settings: Settings) -> LocalKek | None:
    """The KEK the settings name (``VECTORIZER_ENCRYPTION_KEY_FILE`` or ``_KEY``); None if neither."""
    if settings.encryption_key_file is not None:
        path: Path = settings.encryption_key_file
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise EncryptionKeyError(f"VECTORIZER_ENCRYPTION_KEY_FILE: cannot read {str(path)!r} ({exc})") from None
        return LocalKek(parse_key(content, f"VECTORIZER_ENCRYPTION_KEY_FILE {str(path)!r}"))
    if settings.encryption_key is not None:
        return LocalKek(parse_key(settings.encryption_key, "VECTORIZER_ENCRYPTION_KEY"))
    return None


def generate() -> str:
    """A new random KEK, as 64 hex digits (what a key file holds)."""
    return os.urandom(32).hex()
