"""The ``vectorizer`` command line. Each sub-module registers one group of commands."""

from vectorizer.cli.main import app, main

__all__ = ["app", "main"]
