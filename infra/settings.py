"""One typed, frozen settings object, built once at the edge (CLI or environment).

Precedence: explicit overrides (command-line flags) > environment variables > defaults.
Nothing below the edge reads the environment: components receive a :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import ConfigurationError

ENV_PREFIX = "VECTORIZER_"
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    """Every knob of a Vectorizer process. Field names match the variables without prefix."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    # How every Kafka client (server, projectors, CLI, producer library) talks to the brokers:
    # PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (docs/security.md). With TLS, the CA file
    # holds the certificates that sign the brokers' (empty: the system's trusted CAs); a client
    # certificate and its key (PEM) are for brokers that require client authentication.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    topic: str = "vectorizer.events"
    # Encryption at rest (docs/security.md): on, new events are sealed with AES-256-GCM under
    # per-collection data keys kept, wrapped by the key-encryption key (KEK), on the compacted
    # topic <topic>.keys. The KEK (64 hex digits or base64 of 32 bytes; a file may hold the 32 raw
    # bytes) comes from a file or a variable; a process that only reads an encrypted topic needs
    # the KEK, not the setting.
    encryption: bool = False
    encryption_key_file: Path | None = None
    encryption_key: str | None = field(default=None, repr=False)
    data_dir: Path = Path("./data")
    cache_dir: Path = Path.home() / ".cache" / "vectorizer"  # fetched broker jars
    catalog_url: str = field(default="", repr=False)  # empty: sqlite:///<data_dir>/catalog.db (may hold a password)
    http: str = "127.0.0.1:15002"
    grpc: str = "127.0.0.1:6334"  # Qdrant's gRPC API; "off": none
    # Serving processes: each holds its own projection (its own data directory under
    # <data_dir>/workers/) and answers on the same ports (SO_REUSEPORT), so reads use every core.
    workers: int = 1
    reuse_port: bool = False  # set for a worker: it shares the HTTP and gRPC ports with its siblings
    worker: int = 0  # which worker this process is; one > 0 listens only once its projection caught up
    projection: str = "default"
    api_key: str | None = field(default=None, repr=False)
    read_only_api_key: str | None = field(default=None, repr=False)
    # Qdrant's jwt_rbac: JWTs signed (HS256) with api_key grant access per collection (vectorizer.api.access).
    jwt_rbac: bool = False
    # Topic creation.
    partitions: int = 1
    replication_factor: int = 1
    max_message_bytes: int = 8 * 1024 * 1024
    # Snapshots: whichever comes first of N events, V vectors inserted into graphs, B bytes of
    # records applied since the last one, or T seconds; keep the last K. V and B bound what a
    # restart replays from the log, whatever the collection's size: inserting a vector into HNSW
    # is most of a replay's cost and grows with its dimension, so V counts a d-dimension vector as
    # d/128 of one (25,000 at 128-d, 6,250 at 512-d), and a settings change that rebuilds a
    # collection's graphs counts all its vectors. Measured here at 1M x 128: ~3,000 inserts/s.
    snapshot_every_events: int = 10_000
    snapshot_every_vectors: int = 25_000
    snapshot_every_bytes: int = 64 * 1024 * 1024
    snapshot_every_seconds: float = 300.0
    snapshots_keep: int = 3
    # The vector data (float32) of one index segment: a snapshot writes a segment's graph again
    # only if vectors were added to it, so this bounds what a snapshot rewrites during a bulk load
    # (at most about 1.3x this); a search visits every segment (a collection of N vectors of
    # dimension d has N * 4d / segment_bytes of them).
    segment_bytes: int = 128 * 1024 * 1024
    # Projector batching.
    poll_max_records: int = 2_000
    # HTTP.
    max_body_bytes: int = 64 * 1024 * 1024
    default_timeout: float = 30.0
    # How long a write waits for Kafka's acknowledgement before it is reported as not
    # acknowledged (PublishFailed, HTTP 503). The record may still land later: clients retry,
    # and upserts by id are idempotent.
    publish_timeout: float = 15.0
    # Kafka's transaction.timeout.ms of every transactional producer, in seconds. A producer
    # killed inside a transaction holds every read_committed reader of its partitions (the last
    # stable offset) until the broker aborts it: at most this long, plus the broker's 1 s check.
    # A live transaction running longer is aborted by the broker (its commit fails: PublishFailed).
    # 30 s = twice publish_timeout: a transaction's sends and its commit are each bounded by
    # publish_timeout, so one call's transaction outlives a slow broker yet a dead producer
    # stalls readers for half of Kafka's 60 s default. The broker caps it
    # (transaction.max.timeout.ms, 900 s by default).
    transaction_timeout: float = 30.0
    # The most a transaction may write (record values, bytes): a projector holds a transaction's
    # records in memory until it has all of them, to apply them as one step for readers, so the
    # producer refuses a transaction past this (TransactionTooLarge) before writing the record
    # that would pass it. A projector holds at most twice this before giving up on showing a
    # transaction whole (other writers' records between its records are held with it).
    max_transaction_bytes: int = 256 * 1024 * 1024
    # Read-your-writes: a write that does not say ``wait`` waits for this server's projection to
    # apply it, as ``wait=true`` does (``wait=false`` still answers once Kafka acknowledged). Off
    # by default, as Qdrant's ``wait`` defaults to false; ``vectorizer up`` turns it on. Its cost:
    # one apply latency per write (docs/benchmarks.md, "Read-your-writes": at the median about 6 ms
    # for one point, 0.3 s for 1,000 x 128-d points on the 2-core machine).
    read_your_writes: bool = False
    # The workspace file ``POST /vectorizer/workspace/sync`` (and the MCP tool ``workspace_sync``)
    # syncs, relative to the server's working directory: only this file, never one a request names,
    # so an API key never lets a caller index arbitrary files of the server's machine.
    workspace_file: Path = Path("vectorize-workspace.yml")

    def __post_init__(self) -> None:
        for name in ("data_dir", "cache_dir", "workspace_file", "kafka_ssl_cafile", "kafka_ssl_certfile",
                     "kafka_ssl_keyfile", "encryption_key_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def kafka_tls(self) -> bool:
        """Whether Kafka clients speak TLS (``SSL`` or ``SASL_SSL``)."""
        return self.kafka_security_protocol.endswith("SSL")

    @property
    def kafka_sasl(self) -> bool:
        """Whether Kafka clients authenticate with SASL (``SASL_PLAINTEXT`` or ``SASL_SSL``)."""
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def resolved_catalog_url(self) -> str:
        """The catalog URL, defaulting to a SQLite file inside the data directory."""
        return self.catalog_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def catalog_file(self) -> Path | None:
        """The catalog's SQLite file (in the data directory by default); None for a database server."""
        url = self.resolved_catalog_url
        return Path(url.removeprefix("sqlite:///").partition("?")[0]) if url.startswith("sqlite:///") else None

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def keys_topic(self) -> str:
        """Where the data keys live, wrapped by the KEK (compacted: ``infra.keyring``)."""
        return f"{self.topic}.keys"

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0] or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots" / self.projection

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) then ``overrides``.

        ``None`` values in ``overrides`` mean "flag not given" and are ignored. A relative
        data directory (the default ``./data`` included) is resolved here, once, against the
        current directory, so every later use and message names the same absolute folder.
        Raises :class:`ConfigurationError` naming the variable whose value is invalid.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw, ENV_PREFIX + f.name.upper())
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            ftype = next((f.type for f in dataclasses.fields(cls) if f.name == name), None)
            if ftype is None:
                raise ConfigurationError(f"unknown setting {name!r}")
            values[name] = _coerce(name, ftype, value, f"--{name.replace('_', '-')}")
        settings = cls(**values)
        settings = settings.replace(data_dir=settings.data_dir.expanduser().resolve())
        settings.validate()
        return settings

    def validate(self) -> None:
        if ":" not in self.http:
            raise ConfigurationError(f"VECTORIZER_HTTP: expected host:port, got {self.http!r}")
        if not self.http.rpartition(":")[2].isdigit():
            raise ConfigurationError(f"VECTORIZER_HTTP: port is not a number in {self.http!r}")
        if self.grpc != "off" and (":" not in self.grpc or not self.grpc.rpartition(":")[2].isdigit()):
            raise ConfigurationError(f"VECTORIZER_GRPC: expected host:port or 'off', got {self.grpc!r}")
        if not self.topic:
            raise ConfigurationError("VECTORIZER_TOPIC: must not be empty")
        if not self.projection.replace("-", "").replace("_", "").isalnum():
            raise ConfigurationError(
                f"VECTORIZER_PROJECTION: use letters, digits, '-' and '_' only, got {self.projection!r}"
            )
        if not 1.0 <= self.transaction_timeout <= 900.0:
            raise ConfigurationError("VECTORIZER_TRANSACTION_TIMEOUT: expected 1 to 900 seconds (the broker's "
                                     f"transaction.max.timeout.ms), got {self.transaction_timeout}")
        if self.max_transaction_bytes < self.max_message_bytes:
            raise ConfigurationError("VECTORIZER_MAX_TRANSACTION_BYTES: must be at least max_message_bytes "
                                     f"({self.max_message_bytes}), got {self.max_transaction_bytes}")
        if self.workers > 1 and (self.http_port == 0 or self.grpc.endswith(":0")):
            raise ConfigurationError("VECTORIZER_WORKERS: workers share their ports; give VECTORIZER_HTTP and "
                                     "VECTORIZER_GRPC a port other than 0")
        if self.workers > 1 and self.catalog_url:
            raise ConfigurationError("VECTORIZER_WORKERS: each worker keeps its own SQLite catalog in its data "
                                     "directory; leave VECTORIZER_CATALOG_URL unset to run more than one")
        if self.jwt_rbac and not self.api_key:
            raise ConfigurationError("VECTORIZER_JWT_RBAC: JWTs are signed with the API key; set VECTORIZER_API_KEY "
                                     "too")
        self._validate_kafka_security()
        self._validate_encryption()
        for name in ("partitions", "replication_factor", "workers", "snapshot_every_events", "snapshot_every_vectors",
                     "snapshot_every_bytes", "snapshots_keep", "poll_max_records", "segment_bytes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name}: must be at least 1")

    def _validate_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ConfigurationError(f"VECTORIZER_KAFKA_SECURITY_PROTOCOL: expected one of "
                                     f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}, got {protocol!r}")
        if self.kafka_sasl:
            if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                raise ConfigurationError(f"VECTORIZER_KAFKA_SASL_MECHANISM: expected one of "
                                         f"{', '.join(KAFKA_SASL_MECHANISMS)}, got {self.kafka_sasl_mechanism!r}")
            if not self.kafka_sasl_username or self.kafka_sasl_password is None:
                raise ConfigurationError(f"VECTORIZER_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                         "VECTORIZER_KAFKA_SASL_USERNAME and VECTORIZER_KAFKA_SASL_PASSWORD")
        tls_files = {"VECTORIZER_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
                     "VECTORIZER_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                     "VECTORIZER_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        given = [name for name, path in tls_files.items() if path is not None]
        if given and not self.kafka_tls:
            raise ConfigurationError(f"{given[0]} is set but VECTORIZER_KAFKA_SECURITY_PROTOCOL is {protocol}: "
                                     "use SSL or SASL_SSL for TLS")
        for name, path in tls_files.items():
            if path is not None and not path.is_file():
                raise ConfigurationError(f"{name}: no such file {str(path)!r}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ConfigurationError("VECTORIZER_KAFKA_SSL_CERTFILE and VECTORIZER_KAFKA_SSL_KEYFILE: a client "
                                     "certificate needs its key; give both or neither")


    def _validate_encryption(self) -> None:
        if self.encryption_key_file is not None and self.encryption_key is not None:
            raise ConfigurationError("VECTORIZER_ENCRYPTION_KEY_FILE and VECTORIZER_ENCRYPTION_KEY are both set: "
                                     "give the key-encryption key one way")
        if self.encryption_key_file is not None and not self.encryption_key_file.is_file():
            raise ConfigurationError(f"VECTORIZER_ENCRYPTION_KEY_FILE: no such file {str(self.encryption_key_file)!r}")
        if self.encryption and self.encryption_key_file is None and self.encryption_key is None:
            raise ConfigurationError("VECTORIZER_ENCRYPTION=on needs a key-encryption key: set "
                                     "VECTORIZER_ENCRYPTION_KEY_FILE (a file holding 64 hex digits; "
                                     "`vectorizer keys generate` makes one) or VECTORIZER_ENCRYPTION_KEY")

    @property
    def has_kek(self) -> bool:
        """Whether a key-encryption key is configured (encrypted events can be read)."""
        return self.encryption_key_file is not None or self.encryption_key is not None


def _coerce(name: str, ftype: Any, raw: Any, source: str) -> Any:
    type_name = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", str(ftype))
    if type_name.startswith("bool"):
        return _boolean(raw, source)
    try:
        if "Path" in type_name:
            return Path(raw)
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source}: expected a number for {name}, got {raw!r}") from None
    return str(raw) if raw is not None else None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(raw: Any, source: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigurationError(f"{source}: expected true or false, got {raw!r}")
