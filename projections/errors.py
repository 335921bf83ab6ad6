"""Errors raised while reading or changing the projections (index, catalog, queries)."""

from __future__ import annotations

from vectorizer.errors import VectorizerError


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
