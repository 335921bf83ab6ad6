"""What the encryption tests share: a key-encryption key, settings with encryption on, the
CLI run as an operator runs it, and data recognisable in raw bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra import kek
from infra.settings import Settings
from producers import VectorProducer
from tests.helpers import run_cli, running_projector, state_of

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


def write_secrets(settings: Settings, collection: str) -> int:
    """A collection of :data:`ROWS` with :data:`SECRET` payloads and a keyword index on them; the
    offset of the upsert."""
    with VectorProducer(settings) as p:
        p.create_collection(collection, 8, "l2")
        p.create_payload_index(collection, "note", "keyword")
        return p.upsert(collection, [1, 2, 3], ROWS, [{"note": SECRET}, None, {"note": SECRET + "-2"}]).offset


def projected_secrets(settings: Settings, collection: str = "secret") -> tuple[int, dict[str, Any]]:
    """:func:`write_secrets`, applied by a projector (which snapshots as it stops): the upsert's
    offset and the state."""
    last = write_secrets(settings, collection)
    with running_projector(settings) as proj:
        proj.wait_for(0, last, 30)
        return last, state_of(proj)
