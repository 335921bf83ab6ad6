"""Errors raised while reading or changing the projections (index, catalog, queries)."""

from __future__ import annotations

from infra.errors import InfrastructureError, VectorizerError


class ProjectionError(VectorizerError):
    """Base class of projection errors."""


class InvalidFilter(ProjectionError, ValueError):
    """A filter is malformed; the message names the offending path, e.g. ``filter.must[0].range``."""


class CollectionNotFound(ProjectionError, LookupError):
    """No collection of that name exists in this projection."""


class CollectionExists(ProjectionError, ValueError):
    """A collection of that name already exists."""


class PointNotFound(ProjectionError, LookupError):
    """No point with that id exists in the collection."""


class ConsistencyTimeout(ProjectionError, TimeoutError):
    """The projection did not apply a write token within the allowed time."""


class Rejected(ProjectionError, ValueError):
    """A well-formed event that is invalid for the current state; it goes to the dead-letter topic.

    ``status`` is the HTTP status the same mistake gets when the API catches it before
    publishing (404 unknown collection, 409 existing one, 403 read-only, 400 bad input), so a
    ``wait=true`` answer reports a rejection exactly as an early check would have.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TrackingConflict(ProjectionError, RuntimeError):
    """The stored position is already at or past the one being written: a replayed batch."""


class CatalogUnavailable(ProjectionError, InfrastructureError):
    """The catalog database cannot be reached or written."""
