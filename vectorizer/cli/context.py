"""What every command receives: the settings built from flags and environment, and output mode."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import typer

from vectorizer.settings import Settings


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


def is_terminal() -> bool:
    return sys.stderr.isatty()
