"""Sealed collection snapshot files: the portable tar of ``POST /collections/{c}/snapshots``, sealed at rest.

The file in ``collection_snapshots/`` is the clear tar (:mod:`consumers.artefacts`) encrypted in
chunks, so that a download is decrypted as it streams and a large snapshot is never whole in memory::

    "VZS" 01 | key id (16 bytes) | chunk size (4 bytes, big-endian) | nonce prefix (8 random bytes)
             | created offset (8 bytes, big-endian, signed) | collection length (2 bytes) | collection (UTF-8)
    then chunk 0, 1, ... n-1: AES-256-GCM(clear[i * size : (i + 1) * size]) with its 16-byte tag

Chunk ``i`` has the nonce ``prefix | i`` (4 bytes, big-endian) and as associated data the whole
header, then ``i`` (8 bytes) and a final flag (1 byte: 1 on the last chunk, else 0). Every chunk
but the last holds exactly ``chunk size`` clear bytes; the last one fewer (possibly none). So a
chunk moved, dropped, repeated or cut off, a file truncated at a chunk boundary, another
collection's or incarnation's file, or another key id, fails authentication like altered bytes.
The header names the collection and its incarnation (``created offset``) in clear, as the
snapshot's side record and file name do: a sealed file opens with the data keys alone.

The data key is the collection's (``infra.keyring.Keyring.snapshot_key``, as for projection
snapshot files): shredding it makes the stored snapshot unreadable.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.errors import AuthenticationFailed, InvalidContent
from schemas.sealing import DataKeys, cipher_for

MAGIC = b"VZS\x01"
KEY_ID_BYTES = 16
CHUNK_BYTES = 1 << 20
_FIXED = struct.Struct(">4s16sI8sqH")  # magic, key id, chunk size, nonce prefix, created offset, name length
_TAG_BYTES = 16


def is_sealed(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= 1 << 32:
        raise InvalidContent("sealed snapshot: more chunks than a nonce counts")
    return prefix + struct.pack(">I", index)


def _ad(head: bytes, index: int, final: bool) -> bytes:
    return head + struct.pack(">QB", index, 1 if final else 0)


class SealingWriter:
    """A write-only binary file that seals what is written to ``raw`` (call :meth:`finish` once
    everything is written). :attr:`size` and :attr:`sha256` describe the clear bytes: the file a
    download returns."""

    def __init__(self, raw: IO[bytes], collection: str, created_offset: int, key_id: bytes, cipher: AESGCM,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        name = collection.encode()
        self._head = _FIXED.pack(MAGIC, key_id, chunk_bytes, os.urandom(8), created_offset, len(name)) + name
        self._raw, self._cipher, self._chunk = raw, cipher, chunk_bytes
        self._prefix = self._head[24:32]
        self._pending = bytearray()
        self._index = 0
        self._digest = hashlib.sha256()
        self.size = 0
        raw.write(self._head)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._pending += data
        self._digest.update(data)
        self.size += len(data)
        while len(self._pending) >= self._chunk + 1:  # a full chunk is final only if nothing follows it
            self._seal(bytes(self._pending[:self._chunk]), final=False)
            del self._pending[:self._chunk]
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    def finish(self) -> None:
        """Seal what is left as the final chunk (fewer than ``chunk size`` bytes: a full remainder
        first goes out as a chunk of its own, then an empty final one)."""
        if len(self._pending) == self._chunk:
            self._seal(bytes(self._pending), final=False)
            self._pending.clear()
        self._seal(bytes(self._pending), final=True)
        self._pending.clear()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def _seal(self, clear: bytes, final: bool) -> None:
        self._raw.write(self._cipher.encrypt(_nonce(self._prefix, self._index), clear,
                                             _ad(self._head, self._index, final)))
        self._index += 1


def header(path: Path) -> tuple[str, int, bytes]:
    """A sealed snapshot's collection, incarnation (created offset) and key id."""
    with open(path, "rb") as f:
        head = _read_head(f)
    _, key_id, _, _, created, _ = _FIXED.unpack(head[:_FIXED.size])
    return head[_FIXED.size:].decode(), created, key_id


def _read_head(f: IO[bytes]) -> bytes:
    fixed = f.read(_FIXED.size)
    if len(fixed) < _FIXED.size or fixed[:4] != MAGIC:
        raise InvalidContent("not a sealed collection snapshot")
    length = _FIXED.unpack(fixed)[5]
    name = f.read(length)
    if len(name) < length:
        raise InvalidContent("sealed collection snapshot: shorter than its header")
    try:
        name.decode()
    except UnicodeDecodeError:
        raise InvalidContent("sealed collection snapshot: the collection name is not UTF-8") from None
    return fixed + name


def clear_chunks(path: Path, keys: DataKeys | None) -> Iterator[bytes]:
    """The clear bytes of a sealed snapshot, chunk by chunk, each authenticated before it is given.

    Raises :class:`Shredded` (its data key was shredded), :class:`DataKeyUnavailable` (no KEK, or a
    key the keys topic lacks), :class:`AuthenticationFailed` (altered, truncated, reordered, or
    another collection's), :class:`InvalidContent` (not a sealed snapshot) — the first two before
    any chunk, the others possibly after some: callers that answer with the bytes check first
    (:func:`digest`)."""
    with open(path, "rb") as f:
        head = _read_head(f)
        _, key_id, chunk, prefix, _, _ = _FIXED.unpack(head[:_FIXED.size])
        collection = head[_FIXED.size:].decode()
        cipher = cipher_for(keys, collection, key_id, "the snapshot")
        index = 0
        while True:
            sealed = f.read(chunk + _TAG_BYTES)
            final = len(sealed) < chunk + _TAG_BYTES
            if final and f.read(1):
                raise AuthenticationFailed(f"collection {collection!r}: the sealed snapshot has bytes after "
                                           "its last chunk")
            try:
                clear = cipher.decrypt(_nonce(prefix, index), sealed, _ad(head, index, final))
            except InvalidTag:
                what = "truncated, " if final and len(sealed) in (0, chunk + _TAG_BYTES) else ""
                raise AuthenticationFailed(f"collection {collection!r}: the sealed snapshot failed authentication "
                                           f"at chunk {index} ({what}altered, or another collection's file)") from None
            if clear:
                yield clear
            if final:
                return
            index += 1


def digest(path: Path, keys: DataKeys | None) -> tuple[int, str]:
    """The clear size and SHA-256 of a sealed snapshot, every chunk authenticated (what a download returns)."""
    h, size = hashlib.sha256(), 0
    for chunk in clear_chunks(path, keys):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()
