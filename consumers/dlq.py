"""The dead-letter topic ``<topic>.dlq``: records that fail to decode or to apply.

The original key and value are kept byte for byte; headers say why and where from:
``vectorizer.reason`` (a short code), ``vectorizer.detail`` (the message),
``vectorizer.source`` (``topic/partition/offset``). :meth:`DeadLetters.send` returns once
Kafka acknowledged every record, so the projector may then commit past them.
Delivery is at-least-once: a crash between this and the catalog commit re-sends them;
readers deduplicate by ``vectorizer.source``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaProducer

from vectorizer.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str


class DeadLetters:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self.count = 0

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                           enable_idempotence=True,
                                           max_request_size=self.settings.max_message_bytes + 65536)
        futures = []
        for letter in letters:
            log.warning("dead-lettering %s/%d/%d: %s: %s", self.settings.topic, letter.partition, letter.offset,
                        letter.reason, letter.detail[:500])
            headers = [("vectorizer.reason", letter.reason.encode()),
                       ("vectorizer.detail", letter.detail[:4000].encode()),
                       ("vectorizer.source", f"{self.settings.topic}/{letter.partition}/{letter.offset}".encode())]
            futures.append(self._producer.send(self.settings.dlq_topic, key=letter.key, value=letter.value,
                                               headers=headers))
        for f in futures:
            f.get(timeout=60)
        self.count += len(letters)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
