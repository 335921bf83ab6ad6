"""Errors of the producer library (validation errors come from ``schemas.errors``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.errors import InfrastructureError, VectorizerError
from schemas.errors import ValidationError


class ProducerError(VectorizerError):
    """Base class of producer errors."""


class PublishFailed(ProducerError, InfrastructureError):
    """Kafka did not acknowledge a write; nothing may be assumed about its durability."""


class ProducerFenced(PublishFailed):
    """Another producer with the same transactional id started: this one can no longer write."""


class TransactionTooLarge(ValidationError):
    """A transaction would write more than ``Settings.max_transaction_bytes``; it is aborted
    (nothing of it becomes visible) before the record that would pass the limit is written."""


class WriteRejected(ProducerError, ValueError):
    """The projection refused a write Kafka had acknowledged: its event went to the dead-letter topic.

    The write is durable on the log but changed nothing. ``status`` is the HTTP status the
    API answers for the same mistake caught before publishing (404, 409, 403, 400);
    ``offset`` is the rejected record's ``partition:offset``.
    """

    def __init__(self, message: str, *, status: int, reason: str, offset: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.offset = status, reason, offset

    @classmethod
    def of(cls, partition: int, refused: Sequence[Any], records: int) -> WriteRejected:
        """The error for a write of ``records`` records of which ``refused`` (rejections with
        ``offset``, ``status``, ``reason``, ``detail``; at least one) were refused."""
        first = refused[0]
        message = f"{first.detail} (the write's record {partition}:{first.offset} was rejected by the projection)"
        if records > 1:
            message += f"; {len(refused)} of its {records} records were rejected, the others applied"
        return cls(message, status=first.status, reason=first.reason, offset=f"{partition}:{first.offset}")


class VerdictUnknown(ProducerError, LookupError):
    """The write is durable in Kafka, but its verdict cannot be read: no catalog where the
    settings point, or the catalog records verdicts only from a later offset (it predates them,
    or was restored from a backup without them)."""


class WriteNotApplied(ProducerError, TimeoutError):
    """The write is durable in Kafka, but no projection applied it within the wait's timeout."""


class WorkspaceError(ProducerError):
    """A workspace collection cannot be kept in step (the message says why)."""


class WorkspaceFenced(WorkspaceError):
    """Another producer for the same workspace file started; this one must stop."""
