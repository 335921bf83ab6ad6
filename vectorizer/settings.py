"""The public import path of :class:`Settings` for applications (``from vectorizer.settings import
Settings``); the class lives in :mod:`infra.settings`, the floor every layer builds on."""

from infra.settings import ENV_PREFIX, Settings

__all__ = ["ENV_PREFIX", "Settings"]
