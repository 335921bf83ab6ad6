"""The workspace producer app: keeps workspace collections in step with files on disk."""

from producers.errors import WorkspaceError
from vectorizer.errors import WorkspaceConfigError
from vectorizer.workspace.config import CollectionSpec, Workspace, load
from vectorizer.workspace.sync import CollectionReport, Watcher, WorkspaceProducer

__all__ = ["CollectionReport", "CollectionSpec", "Watcher", "Workspace", "WorkspaceConfigError", "WorkspaceError",
           "WorkspaceProducer", "load"]
