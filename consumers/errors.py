"""Errors of the consumers: the projector, replay, snapshots, backups, the dead-letter topic."""

from __future__ import annotations

from infra.errors import InfrastructureError, VectorizerError


class ConsumerError(VectorizerError):
    """Base class of consumer errors."""


class ProjectorError(ConsumerError, InfrastructureError):
    """The projector cannot start or go on (e.g. the topic has no partition metadata)."""


class LogChanged(ProjectorError):
    """The log is not the one the projection was built from (see :mod:`consumers.logid`)."""


class SnapshotCorrupt(ConsumerError, ValueError):
    """A snapshot failed verification; the message names the file and what is wrong."""


class BackupCorrupt(ConsumerError, ValueError):
    """A backup's files do not match its manifest; the message names every bad file."""


class LogWaitTimeout(ConsumerError, TimeoutError):
    """The log did not answer, or stopped delivering, within a deadline; the message says what was awaited."""


class LogBehindProjection(ConsumerError, RuntimeError):
    """The catalog's tracking rows are at or past the log's end: the log changed beneath the projection."""


class DlqReadTimeout(ConsumerError, InfrastructureError):
    """The dead-letter topic could not be read to its end in time."""
