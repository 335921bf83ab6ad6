"""The application's errors, and the public import path of the root errors for applications
(``except VectorizerError``), which live in :mod:`infra.errors`, the floor every layer builds on."""

from infra.errors import ConfigurationError, InfrastructureError, VectorizerError

__all__ = ["ConfigurationError", "DataDirInUse", "InfrastructureError", "VectorizerError", "WorkspaceConfigError"]


class DataDirInUse(VectorizerError, RuntimeError):
    """Another process holds the data directory's lock; the message names its pid."""


class WorkspaceConfigError(ConfigurationError):
    """The workspace file is invalid; the message names the line and the field."""
