"""The data keys: one or more AES-256 keys per collection, kept wrapped on the topic ``<topic>.keys``.

Every process that reads the events topic reads the keys topic too (the server, its workers,
projectors, ``replay``/``verify``/``backup`` on any machine that reaches the cluster), and
unwraps each data key with the key-encryption key (``infra.kek``). The topic is compacted and
has one partition; its records are keyed ``<collection>/<key id hex>`` with a JSON value:

- a **key record** ``{"collection", "key_id", "version", "created_at", "kek", "wrapped"}``:
  ``version`` counts the collection's keys from 1 (``keys rotate`` adds the next one; new events
  use the highest), ``kek`` names the KEK that wrapped it, ``wrapped`` is base64;
- a **shred record** ``{"collection", "key_id", "version", "shredded_at"}`` under the same key:
  compaction then drops the key record it replaces, and with it the only copy of the key. The
  shred record itself stays (it holds no secret): readers know the key was destroyed on purpose,
  and skip its events as deleted instead of reporting them as damaged.

Nothing is ever removed from this topic but by compaction; a key is added before the first
event sealed with it is sent, so a reader that meets an unknown key id reads the topic to its
end once before concluding the key is not there.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from infra import kek as keks
from infra.errors import BrokerUnavailable, EncryptionKeyError
from infra.kafka import clients
from infra.settings import Settings

log = logging.getLogger(__name__)

KEY_ID_BYTES = 16
_REFRESH_SECONDS = 5.0  # how stale a sealing process's view of rotations may be
_READ_TIMEOUT = 15.0


def keys_topic_configs() -> dict[str, str]:
    """Compacted, kept forever: compaction (not time) removes a shredded key's record. Segments
    roll hourly and the cleaner runs on little dirt, so a shredded key leaves the broker's disks
    within about an hour (plus the cleaner's own pace)."""
    return {"cleanup.policy": "compact", "retention.ms": "-1", "segment.ms": str(3600 * 1000),
            "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
            "max.compaction.lag.ms": str(3600 * 1000)}


@dataclass(frozen=True)
class DataKey:
    """One data key as the keys topic describes it (``cipher`` None: shredded, or no KEK)."""

    collection: str
    key_id: bytes
    version: int
    created_at: int | None
    kek: str | None
    cipher: AESGCM | None = None
    shredded_at: int | None = None

    def row(self) -> dict[str, Any]:
        return {"collection": self.collection, "version": self.version, "key_id": self.key_id.hex(),
                "created_at": self.created_at, "kek": self.kek,
                "state": "shredded" if self.shredded_at is not None else "active", "shredded_at": self.shredded_at}


def _context(collection: str, key_id: bytes) -> bytes:
    return f"vectorizer data key\x00{collection}\x00{key_id.hex()}".encode()


class Keyring:
    """The data keys of one events topic. Thread-safe. Implements ``schemas.sealing.DataKeys``.

    :meth:`open` reads the whole keys topic and unwraps every key, refusing (``EncryptionKeyError``)
    a KEK that does not unwrap them: a process with the wrong key stops before it writes anything."""

    def __init__(self, settings: Settings, kek: keks.KeyEncryptionKey | None) -> None:
        self.settings = settings
        self.kek = kek
        self._keys: dict[tuple[str, bytes], DataKey] = {}
        self._lock = threading.RLock()
        self._consumer: KafkaConsumer | None = None
        self._position = 0
        self._refreshed = 0.0
        self._undecodable: dict[tuple[str, bytes], str] = {}  # keys the KEK could not unwrap, and why

    @classmethod
    def open(cls, settings: Settings) -> Keyring | None:
        """The keyring of ``settings.topic``; None when no KEK is configured and no data key exists
        (nothing on the topic is encrypted: readers decode as they always did)."""
        kek = keks.from_settings(settings)
        if kek is None and not settings.encryption and not _topic_exists(settings):
            return None
        ring = cls(settings, kek)
        try:
            ring.refresh(strict=True)
        except BaseException:
            ring.close()
            raise
        live = [k for k in ring.data_keys() if k.shredded_at is None]
        if kek is None and live:
            ring.close()
            raise EncryptionKeyError(f"{settings.keys_topic} holds {len(live)} data keys (of "
                                     f"{len({k.collection for k in live})} collections): events on {settings.topic} "
                                     "are encrypted; set VECTORIZER_ENCRYPTION_KEY_FILE or VECTORIZER_ENCRYPTION_KEY "
                                     "to the key-encryption key. Nothing was read or written")
        if kek is None and not ring._keys:
            ring.close()
            return None
        return ring

    # Reading ---------------------------------------------------------------------------
    def cipher(self, collection: str, key_id: bytes) -> AESGCM | None:
        """The data key ``key_id``. Key ids are unique across collections, so a record moved to
        another collection gets its own key back here, and fails on the associated data instead
        (``AuthenticationFailed``, not a missing key)."""
        key = self._find(collection, key_id)
        if key is None:
            self.refresh()  # written after this reader last looked (a key precedes its events)
            key = self._find(collection, key_id)
        return None if key is None else key.cipher

    def _find(self, collection: str, key_id: bytes) -> DataKey | None:
        key = self._keys.get((collection, key_id))
        if key is None:
            key = next((k for (_, kid), k in list(self._keys.items()) if kid == key_id), None)
        return key

    def shredded(self, collection: str, key_id: bytes) -> bool:
        key = self._keys.get((collection, key_id))
        return key is not None and key.shredded_at is not None

    def has_shredded(self, collection: str) -> bool:
        """Whether any data key of ``collection`` was shredded (its earlier events are gone)."""
        return any(k.shredded_at is not None for k in self.data_keys(collection))

    def data_keys(self, collection: str | None = None) -> list[DataKey]:
        """The data keys known (of ``collection``), by collection and version."""
        with self._lock:
            found = [k for k in self._keys.values() if collection is None or k.collection == collection]
        return sorted(found, key=lambda k: (k.collection, k.version))

    def refresh(self, strict: bool = False) -> None:
        """Read the keys topic from where this keyring stopped to its end.

        ``strict``: a key the KEK cannot unwrap raises :class:`EncryptionKeyError` (at start);
        otherwise it is logged and its events stay unreadable here (``DataKeyUnavailable``)."""
        with self._lock:
            consumer = self._reader()
            if consumer is None:
                return
            tp = TopicPartition(self.settings.keys_topic, 0)
            end = consumer.end_offsets([tp])[tp]
            deadline = time.monotonic() + _READ_TIMEOUT
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"{self.settings.keys_topic} not read to its end ({end}) within "
                                            f"{_READ_TIMEOUT:.0f}s")
                for records in consumer.poll(timeout_ms=200).values():
                    for rec in records:
                        self._apply(rec.key, rec.value, strict)
            self._refreshed = time.monotonic()

    def _reader(self) -> KafkaConsumer | None:
        if self._consumer is None:
            if not _topic_exists(self.settings):
                return None
            consumer = clients.consumer(self.settings, "keys", request_timeout_ms=15_000)
            tp = TopicPartition(self.settings.keys_topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            self._consumer = consumer
        return self._consumer

    def _apply(self, raw_key: bytes | None, raw: bytes | None, strict: bool) -> None:
        if raw is None:
            return  # a tombstone (never written by Vectorizer): nothing to learn
        try:
            value = json.loads(raw)
            collection, key_id, version = value["collection"], bytes.fromhex(value["key_id"]), int(value["version"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("%s: a record that is not a data key (%s); ignored", self.settings.keys_topic, exc)
            return
        slot = (collection, key_id)
        if "shredded_at" in value:
            earlier = self._keys.get(slot)
            self._keys[slot] = DataKey(collection, key_id, version, None if earlier is None else earlier.created_at,
                                       None if earlier is None else earlier.kek, None, int(value["shredded_at"]))
            self._undecodable.pop(slot, None)
            return
        if slot in self._keys and self._keys[slot].shredded_at is not None:
            return  # shredded stays shredded (a stale copy of the key record read after the shred)
        cipher = None
        if self.kek is not None:
            try:
                cipher = AESGCM(self.kek.unwrap(base64.b64decode(value["wrapped"]), _context(collection, key_id)))
            except (EncryptionKeyError, ValueError, KeyError) as exc:
                problem = (f"the data key {version} of collection {collection!r} (key id {key_id.hex()}) was "
                           f"wrapped by key-encryption key {value.get('kek')}; the configured one "
                           f"({self.kek.key_id}) does not unwrap it ({exc})")
                if strict:
                    raise EncryptionKeyError(f"{problem}: wrong VECTORIZER_ENCRYPTION_KEY_FILE / "
                                             "VECTORIZER_ENCRYPTION_KEY? Nothing was read or written") from None
                log.error("%s", problem)
                self._undecodable[slot] = problem
        self._keys[slot] = DataKey(collection, key_id, version, value.get("created_at"), value.get("kek"), cipher)

    # Writing ---------------------------------------------------------------------------
    def sealing_key(self, collection: str, *, fresh: bool = False) -> tuple[bytes, AESGCM]:
        """The key new events of ``collection`` are sealed with: its highest active version, made
        now if there is none. ``fresh``: read the keys topic first (a create after a shred)."""
        with self._lock:
            if fresh or time.monotonic() - self._refreshed > _REFRESH_SECONDS:
                self.refresh()
            newest = max(self.data_keys(collection), key=lambda k: k.version, default=None)
            if newest is None or newest.cipher is None:
                newest = self.add(collection)
            assert newest.cipher is not None
            return newest.key_id, newest.cipher

    def snapshot_key(self, collection: str) -> tuple[bytes, AESGCM] | None:
        """The key a projection snapshot seals ``collection``'s files with (``consumers.sealedfiles``):
        with encryption on, the one its new events get (made now if it has none); off, its newest
        key still held, None if it has none (its events are clear: so are its files)."""
        if self.settings.encryption:
            return self.sealing_key(collection)
        held = [k for k in self.data_keys(collection) if k.cipher is not None]
        newest = max(held, key=lambda k: k.version, default=None)
        return None if newest is None or newest.cipher is None else (newest.key_id, newest.cipher)

    def add(self, collection: str) -> DataKey:
        """A new data key for ``collection`` (its next version), durable on the keys topic when this returns."""
        if self.kek is None:
            raise EncryptionKeyError("making a data key needs the key-encryption key: set "
                                     "VECTORIZER_ENCRYPTION_KEY_FILE or VECTORIZER_ENCRYPTION_KEY")
        with self._lock:
            self.refresh()
            version = max((k.version for k in self.data_keys(collection)), default=0) + 1
            secret, key_id = AESGCM.generate_key(256), os.urandom(KEY_ID_BYTES)
            created = int(time.time() * 1000)
            value = {"collection": collection, "key_id": key_id.hex(), "version": version, "created_at": created,
                     "kek": self.kek.key_id,
                     "wrapped": base64.b64encode(self.kek.wrap(secret, _context(collection, key_id))).decode()}
            self._write([(collection, key_id, value)])
            key = DataKey(collection, key_id, version, created, self.kek.key_id, AESGCM(secret))
            self._keys[(collection, key_id)] = key
            return key

    def shred(self, collection: str) -> list[DataKey]:
        """Destroy every data key of ``collection``: its events become unreadable everywhere (readers
        skip them as deleted). Returns the keys shredded now; durable when this returns. A later
        create of the same name gets a new key."""
        with self._lock:
            self.refresh()
            live = [k for k in self.data_keys(collection) if k.shredded_at is None]
            now = int(time.time() * 1000)
            self._write([(collection, k.key_id, {"collection": collection, "key_id": k.key_id.hex(),
                                                  "version": k.version, "shredded_at": now}) for k in live])
            shredded = [replace(k, cipher=None, shredded_at=now) for k in live]
            for k in shredded:
                self._keys[(collection, k.key_id)] = k
            return shredded

    def _write(self, records: list[tuple[str, bytes, dict[str, Any]]]) -> None:
        if not records:
            return
        ensure_keys_topic(self.settings)
        producer = clients.producer(self.settings, "keys", enable_idempotence=True)
        try:
            futures = [producer.send(self.settings.keys_topic, key=f"{c}/{k.hex()}".encode(),
                                     value=json.dumps(v, sort_keys=True).encode(), partition=0)
                       for c, k, v in records]
            for f in futures:
                f.get(timeout=self.settings.publish_timeout)
        except KafkaError as exc:
            raise BrokerUnavailable(f"writing to {self.settings.keys_topic} failed: {exc}") from exc
        finally:
            producer.close()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def _topic_exists(settings: Settings) -> bool:
    consumer = clients.consumer(settings, "keys-probe", request_timeout_ms=15_000)
    try:
        return settings.keys_topic in consumer.topics()
    finally:
        consumer.close()


def ensure_keys_topic(settings: Settings) -> None:
    """Create ``<topic>.keys`` (one partition, compacted) if it is missing."""
    admin = clients.admin(settings, "keys", request_timeout_ms=15_000)
    try:
        admin.create_topics([NewTopic(settings.keys_topic, 1, settings.replication_factor,
                                      topic_configs=keys_topic_configs())])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
