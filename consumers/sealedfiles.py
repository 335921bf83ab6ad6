"""Sealed snapshot files: a projection snapshot's file encrypted with its collection's data key.

Layout of a sealed file::

    "VZF" 01 | key id (16 bytes) | nonce (12 bytes) | AES-256-GCM(the clear file) with its 16-byte tag

The associated data is that 32-byte header followed by the file's identity,
``"vectorizer snapshot file" 00 collection 00 created offset 00 role`` (UTF-8): the collection
incarnation it belongs to and what the file is within it (``segment 0 points``, ``payload index
city keys``..., never the ``cNNNN`` file name, which changes as collections come and go while the
file is hard-linked from snapshot to snapshot). A file moved to another collection, to another
role, or altered fails authentication. The data keys are those of the events (``infra.keyring``):
shredding a collection's keys makes its snapshot files unreadable as well.

Libraries that only read and write paths (hnswlib, faiss) get a memory-backed file
(``memfd_create``: the clear bytes never reach a disk) through :func:`scratch` and :func:`clear_copy`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.keyring import Keyring
from infra.settings import Settings
from schemas.errors import AuthenticationFailed, InvalidContent
from schemas.sealing import DataKeys, cipher_for

MAGIC = b"VZF\x01"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
_TAG_BYTES = 16




def _identity(collection: str, created_offset: int, role: str) -> bytes:
    return f"vectorizer snapshot file\x00{collection}\x00{created_offset}\x00{role}".encode()


def seal(clear: bytes, collection: str, created_offset: int, role: str, key_id: bytes, cipher: AESGCM) -> bytes:
    """``clear`` (a file's bytes) sealed as the file ``role`` of collection ``collection``."""
    head = MAGIC + key_id + os.urandom(NONCE_BYTES)
    return head + cipher.encrypt(head[-NONCE_BYTES:], clear, head + _identity(collection, created_offset, role))


def unseal(data: bytes, collection: str, created_offset: int, role: str, keys: DataKeys | None) -> bytes:
    """The clear bytes of a sealed file, or :class:`Shredded` (its data key was shredded),
    :class:`DataKeyUnavailable` (no KEK, or a key the keys topic lacks), :class:`AuthenticationFailed`
    (altered, or another collection's or role's file), :class:`InvalidContent` (not a sealed file)."""
    if data[:4] != MAGIC or len(data) < HEADER_BYTES + _TAG_BYTES:
        raise InvalidContent("not a sealed snapshot file (the collection's files are encrypted)")
    key_id = bytes(data[4:4 + KEY_ID_BYTES])
    cipher = cipher_for(keys, collection, key_id, "the snapshot file")
    head = bytes(data[:HEADER_BYTES])
    try:
        return cipher.decrypt(head[-NONCE_BYTES:], bytes(data[HEADER_BYTES:]),
                              head + _identity(collection, created_offset, role))
    except InvalidTag:
        raise AuthenticationFailed(f"collection {collection!r}: {role}: authentication failed (the file was "
                                   "altered, or belongs to another collection or role)") from None


def is_sealed(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A path to an empty file in memory (``memfd_create``), gone when the block exits. Where the
    system has no memfd, a temporary file in the system's temporary folder, removed on exit."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("vectorizer-snapshot-file", os.MFD_CLOEXEC)
        try:
            yield Path(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    fd, name = tempfile.mkstemp(prefix="vectorizer-snapshot-")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


@contextlib.contextmanager
def clear_copy(data: bytes) -> Iterator[Path]:
    """A path to a memory file holding ``data`` (see :func:`scratch`). A reader that opens it
    itself (an on-disk row file) keeps it alive after the block exits, as long as it is open."""
    with scratch() as path:
        with open(path, "wb") as out:
            out.write(data)
        yield path


@contextlib.contextmanager
def opened_keys(settings: Settings) -> Iterator[Keyring | None]:
    """The data keys of ``settings.topic`` for a tool that reads or writes snapshots (``verify``,
    ``backup``, ``snapshot``), closed on exit; None when nothing is encrypted (``Keyring.open``)."""
    keys = Keyring.open(settings)
    try:
        yield keys
    finally:
        if keys is not None:
            keys.close()
