"""The audit trail over an encrypted topic: sealed records are opened with the keyring, their
attribution headers read as on clear ones; once shredded they are counted, not listed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from consumers.audit import Trail
from infra import kek
from infra.keyring import Keyring
from infra.settings import Settings
from producers.producer import VectorProducer
from schemas.sealing import is_sealed
from tests.helpers import read_topic


def test_sealed_writes_are_attributed_and_shredded_ones_are_counted(settings: Settings, tmp_path: Path) -> None:
    key_file = tmp_path / "kek"
    key_file.write_text(kek.generate() + "\n")
    encrypted = settings.replace(encryption=True, encryption_key_file=key_file)
    with VectorProducer(encrypted, caller="app-sealed") as producer:
        producer.create_collection("vault", 2, "l2")
        producer.upsert("vault", [1, 2], np.eye(2, dtype=np.float32), [{"s": 1}, None])
        producer.set_payload("vault", [2], {"s": 2})
    assert all(is_sealed(r.value) for r in read_topic(settings.kafka_bootstrap, settings.topic, 3))

    with Trail(encrypted, collection="vault", point=2) as trail:
        rows = [w.row(2) for w in trail]
    assert [(r["operation"], r["caller"]) for r in rows] == [
        ("CollectionCreated", "app-sealed"), ("VectorsUpserted", "app-sealed"), ("PayloadSet", "app-sealed")]
    assert rows[1]["change"]["payload_keys"] is None and rows[2]["change"] == {"payload_keys": ["s"]}
    assert trail.complete and trail.undecodable == 0

    ring = Keyring.open(encrypted)
    assert ring is not None
    try:
        ring.shred("vault")
    finally:
        ring.close()
    with Trail(encrypted, collection="vault") as trail:
        assert list(trail) == []
    assert trail.shredded == 3 and trail.undecodable == 0
