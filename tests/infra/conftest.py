"""What the encryption tests share: a key-encryption key, settings with encryption on, the
CLI run as an operator runs it, and data recognisable in raw bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra import kek
from infra.settings import Settings
from tests.helpers import run_cli

#: Recognisable float32 bytes and payload text: neither may appear in what encryption seals.
ROWS = np.arange(24, dtype=np.float32).reshape(3, 8) + 1000.25
SECRET = "a-payload-no-one-may-read"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "kek"
    path.write_text(kek.generate() + "\n")
    return path


@pytest.fixture
def encrypted(settings: Settings, key_file: Path) -> Settings:
    return settings.replace(encryption=True, encryption_key_file=key_file)


def operator_cli(settings: Settings, *args: str) -> tuple[int, str]:
    """The CLI as an operator runs it: the KEK (and a Postgres catalog) in the environment."""
    env = {"VECTORIZER_ENCRYPTION_KEY_FILE": str(settings.encryption_key_file)}
    if settings.catalog_url:
        env["VECTORIZER_CATALOG_URL"] = settings.catalog_url
    return run_cli(settings, *args, env=env)
