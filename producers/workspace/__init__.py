"""The workspace producer app: keeps workspace collections in step with files on disk."""

from producers.errors import WorkspaceError
from producers.workspace.config import CollectionSpec, Workspace, WorkspaceConfigError, load
from producers.workspace.sync import CollectionReport, Watcher, WorkspaceProducer

__all__ = ["CollectionReport", "CollectionSpec", "Watcher", "Workspace", "WorkspaceConfigError", "WorkspaceError",
           "WorkspaceProducer", "load"]
