"""The public import path of the root errors for applications (``except VectorizerError``);
they live in :mod:`infra.errors`, the floor every layer builds on."""

from infra.errors import ConfigurationError, InfrastructureError, VectorizerError

__all__ = ["ConfigurationError", "InfrastructureError", "VectorizerError"]
