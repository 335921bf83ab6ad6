"""Errors about what an event is: ids, field values, encoding and decoding."""

from __future__ import annotations

from infra.errors import VectorizerError


class SchemaError(VectorizerError):
    """Base class of event-definition errors."""


class InvalidPointId(SchemaError, ValueError):
    """A point id is neither an unsigned integer, a UUID, nor a non-empty string."""


class DecodeError(SchemaError, ValueError):
    """A record could not be turned back into an event. ``reason`` is a short code."""

    reason = "invalid-content"


class NotSingleObjectAvro(DecodeError):
    """The record does not start with the Avro single-object marker ``C3 01``."""

    reason = "not-single-object-avro"


class UnknownFingerprint(DecodeError):
    """The record's writer-schema fingerprint matches no schema in ``schemas/``."""

    reason = "unknown-fingerprint"


class ChecksumMismatch(DecodeError):
    """The xxh3-64 checksum in the envelope does not match the body bytes."""

    reason = "checksum-mismatch"


class InvalidContent(DecodeError):
    """The record decodes as Avro but its content violates the event's rules."""

    reason = "invalid-content"


class ValidationError(SchemaError, ValueError):
    """An operation is not a valid event: the message names the offending item."""


class InvalidCollectionName(ValidationError):
    """A collection name is empty, too long, or holds characters that are not allowed."""


class UnknownMetric(ValidationError):
    """The distance metric is not one of cosine, l2, ip."""


class DimensionMismatch(ValidationError):
    """A vector's length differs from the collection's dimension."""


class InvalidVector(ValidationError):
    """A vector holds NaN or infinity, or the batch is not a 2-d array of numbers."""


class DuplicateId(ValidationError):
    """The same point id appears twice in one batch."""


class InvalidPayload(ValidationError):
    """A payload is not a JSON object that can be serialised (NaN, non-string keys, ...)."""


class InvalidPath(ValidationError):
    """A payload key is not a JSON path in Qdrant's grammar (``a.b``, ``a[]``, ``a[0]``, ``"q.k"``)."""


class SparseVectorInvalid(ValidationError):
    """A sparse vector Qdrant's validator refuses (repeated indices, values not matching them): 422 there."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"Validation error in JSON body: [{path}: {problem}]")
        self.path, self.problem = path, problem


class AuthenticationFailed(DecodeError):
    """A sealed record's AES-GCM tag does not verify: altered, or moved to another collection or key."""

    reason = "authentication-failed"


class DataKeyUnavailable(DecodeError):
    """A sealed record names a data key this reader does not hold (no KEK, or not on the keys topic)."""

    reason = "data-key-unavailable"


class Shredded(DecodeError):
    """A sealed record's data key was shredded: the record is unreadable for good and counts as deleted.

    Readers skip it (no dead letter, no rejection): it is how an erasure on the log looks."""

    reason = "shredded"
