"""Every Kafka client Vectorizer opens is built here, from :class:`~infra.settings.Settings`.

One place holds what all clients share — the bootstrap servers, a client id naming the role,
a reconnect backoff of 1 s (kafka-python's 30 s default slows failover) — so connection
security (TLS, SASL) is one edit. Each caller passes only what its role needs on top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

if TYPE_CHECKING:
    from pathlib import Path

    from infra.settings import Settings


def connection(settings: Settings) -> dict[str, Any]:
    """What every client of this cluster needs to reach it, its TLS and SASL settings included."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "reconnect_backoff_max_ms": 1000,
                               "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_tls:
        options.update(ssl_check_hostname=settings.kafka_ssl_check_hostname,
                       ssl_cafile=_path(settings.kafka_ssl_cafile), ssl_certfile=_path(settings.kafka_ssl_certfile),
                       ssl_keyfile=_path(settings.kafka_ssl_keyfile))
    if settings.kafka_sasl:
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def consumer(settings: Settings, role: str, *, committed: bool = True, **config: Any) -> KafkaConsumer:
    """A consumer that never commits offsets by itself and reads only committed records
    (``committed=False``: also those of open transactions)."""
    options: dict[str, Any] = {**connection(settings), "enable_auto_commit": False,
                               "isolation_level": "read_committed" if committed else "read_uncommitted",
                               "client_id": f"vectorizer-{role}-{settings.projection}"}
    return KafkaConsumer(**{**options, **config})


def producer(settings: Settings, role: str, **config: Any) -> KafkaProducer:
    """A producer waiting for every in-sync replica (``acks=all``)."""
    options: dict[str, Any] = {**connection(settings), "acks": "all", "client_id": f"vectorizer-{role}"}
    return KafkaProducer(**{**options, **config})


def admin(settings: Settings, role: str, **config: Any) -> KafkaAdminClient:
    options: dict[str, Any] = {**connection(settings), "client_id": f"vectorizer-{role}-{settings.projection}"}
    return KafkaAdminClient(**{**options, **config})
