"""The root of every exception Vectorizer raises on purpose.

Each package defines its own subclasses in its ``errors`` module; every subclass also
inherits the builtin it resembles (``ValueError``, ``LookupError``, ...), so callers that
know nothing of Vectorizer still catch them sensibly. The HTTP layer maps each class to
exactly one status code, in one table (``vectorizer.api.errors``).
"""

from __future__ import annotations


class VectorizerError(Exception):
    """Base class of all Vectorizer errors."""


class ConfigurationError(VectorizerError, ValueError):
    """A setting (flag, environment variable, file) has an invalid value."""


class InfrastructureError(VectorizerError, RuntimeError):
    """Something underneath (broker, database, filesystem) failed or is unreachable."""


class BrokerUnavailable(InfrastructureError):
    """Kafka cannot be reached, or a topic it created has no metadata in time."""


class BrokerError(InfrastructureError):
    """The local broker could not be fetched, started or stopped."""


class EncryptionKeyError(ConfigurationError):
    """The key-encryption key is missing, malformed, or not the one that wrapped the data keys."""
