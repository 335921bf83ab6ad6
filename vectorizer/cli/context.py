"""What every command receives: the settings built from flags and environment, and output mode."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from infra.settings import Settings

if TYPE_CHECKING:
    from projections.catalog.store import Catalog


@dataclass(frozen=True)
class CliContext:
    settings: Settings
    json_output: bool

    def emit(self, data: Any, human: str | None = None) -> None:
        """Print ``data`` as JSON with ``--json``, else ``human`` (or ``data`` pretty-printed)."""
        if self.json_output or human is None:
            typer.echo(json.dumps(data, indent=None if self.json_output else 2, default=str))
        else:
            typer.echo(human)


def cli_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` to stderr and return an Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def has_catalog(settings: Settings) -> bool:
    """Whether the configured catalog exists (a database server is assumed to)."""
    path = settings.catalog_file
    return path is None or path.exists()


def require_catalog(settings: Settings) -> None:
    """Refuse (exit 1) a command that reads the catalog when there is none; never creates one.

    The message names the folder looked in and how to point at the server's data directory.
    """
    path = settings.catalog_file
    if path is not None and not path.exists():
        where = (f"at {path} (--catalog-url / VECTORIZER_CATALOG_URL)" if settings.catalog_url else
                 f"in the data directory {settings.data_dir} (no {path.name})")
        raise fail(f"no catalog {where}: no server or projector has run there; give the data directory "
                   f"the server uses with --data-dir or VECTORIZER_DATA_DIR (default: ./data of the current "
                   f"directory)")


def open_catalog(settings: Settings) -> Catalog:
    """The configured catalog, for a command that reads it (:func:`require_catalog` first)."""
    from projections.catalog.store import Catalog

    require_catalog(settings)
    return Catalog.of(settings, create=False)  # a reading command never creates or migrates a database
