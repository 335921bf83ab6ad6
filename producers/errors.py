"""Errors of the producer library (validation errors come from ``schemas.errors``)."""

from __future__ import annotations

from vectorizer.errors import InfrastructureError, VectorizerError


class ProducerError(VectorizerError):
    """Base class of producer errors."""


class PublishFailed(ProducerError, InfrastructureError):
    """Kafka did not acknowledge a write; nothing may be assumed about its durability."""


class ProducerFenced(PublishFailed):
    """Another producer with the same transactional id started: this one can no longer write."""


class TopicMisconfigured(ProducerError, InfrastructureError):
    """The events topic exists with settings that could lose the source of truth."""
