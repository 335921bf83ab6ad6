"""Encryption at rest and crypto-shredding, through the real broker (docs/security.md)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from consumers import integrity
from consumers.replay import replay_into
from infra import kek
from infra.errors import ConfigurationError, EncryptionKeyError
from infra.keyring import Keyring
from infra.settings import Settings
from producers import VectorProducer
from schemas import sealing
from schemas.codec import decode, encode
from schemas.errors import AuthenticationFailed, DataKeyUnavailable, DecodeError
from tests.helpers import read_topic, running_projector, state_of
from tests.infra.conftest import ROWS, SECRET, operator_cli


def _write(settings: Settings, collection: str = "secret") -> None:
    with VectorProducer(settings) as p:
        p.create_collection(collection, 8, "l2")
        p.upsert(collection, [1, 2, 3], ROWS, [{"note": SECRET}, None, {"n": 3}])
        p.set_payload(collection, [2], {"note": SECRET})


def _values(settings: Settings) -> list[bytes]:
    return [r.value for r in read_topic(settings.kafka_bootstrap, settings.topic, 1) if r.value]


def test_the_topic_read_raw_holds_no_vector_or_payload_and_a_restart_replays_it(encrypted: Settings) -> None:
    _write(encrypted)
    raw = _values(encrypted)
    assert raw and all(sealing.is_sealed(v) for v in raw)
    for value in raw:
        assert ROWS.tobytes()[:16] not in value and SECRET.encode() not in value
    with running_projector(encrypted) as proj:
        proj.wait_for(0, len(raw) - 1, 30)
        before = state_of(proj)
    assert before["secret"]["points"]["2"][0] == {"note": SECRET}
    with running_projector(encrypted) as proj:  # restart: from the final snapshot, then the log
        assert state_of(proj) == before
    fresh = replay_into(encrypted)  # the whole log, from offset 0
    assert fresh.sealed == len(raw) and fresh.rejected == 0 and set(fresh.state.collections) == {"secret"}


def test_clear_records_written_before_encryption_keep_replaying(settings: Settings, key_file: Path) -> None:
    _write(settings, "plain")  # encryption off: as every log written so far
    on = settings.replace(encryption=True, encryption_key_file=key_file)
    _write(on, "sealed")
    raw = _values(on)
    assert any(v[:2] == b"\xc3\x01" for v in raw) and any(sealing.is_sealed(v) for v in raw)
    result = replay_into(on)
    assert result.rejected == 0 and set(result.state.collections) == {"plain", "sealed"}
    plain, sealed = result.state.get("plain"), result.state.get("sealed")
    assert plain is not None and sealed is not None and plain.payload_of == sealed.payload_of


def test_a_wrong_or_missing_kek_refuses_to_start_and_writes_nothing(encrypted: Settings, tmp_path: Path) -> None:
    _write(encrypted)
    other = tmp_path / "other-kek"
    other.write_text(kek.generate())
    wrong = encrypted.replace(encryption_key_file=other)
    with pytest.raises(EncryptionKeyError, match="does not unwrap"):
        VectorProducer(wrong)
    with pytest.raises(EncryptionKeyError, match="does not unwrap"):
        Keyring.open(wrong.replace(encryption=False))
    with pytest.raises(EncryptionKeyError, match="are encrypted; set VECTORIZER_ENCRYPTION_KEY_FILE"):
        replay_into(encrypted.replace(encryption=False, encryption_key_file=None))
    assert not encrypted.data_dir.exists() or not any(encrypted.data_dir.rglob("catalog.db"))
    with pytest.raises(ConfigurationError, match="VECTORIZER_ENCRYPTION=on needs a key-encryption key"):
        Settings.load(environ={"VECTORIZER_ENCRYPTION": "on"})
    with pytest.raises(EncryptionKeyError, match="VECTORIZER_ENCRYPTION_KEY: expected a 256-bit key"):
        kek.from_settings(Settings(encryption_key="too short"))


def test_a_tampered_record_is_dead_lettered_as_authentication_failed(encrypted: Settings) -> None:
    _write(encrypted)
    upsert = _values(encrypted)[1]
    tampered = bytearray(upsert)
    tampered[-20] ^= 0x01
    moved = upsert.replace(b"\x00\x06secret", b"\x00\x06othe_r")  # the same record under another collection
    from kafka import KafkaProducer

    raw = KafkaProducer(bootstrap_servers=encrypted.kafka_bootstrap)
    for value in (bytes(tampered), moved):
        raw.send(encrypted.topic, key=b"secret", value=value).get(30)
    raw.close()
    with running_projector(encrypted) as proj:
        proj.wait_for(0, 4, 30)
        letters = proj.stats.dead_letters_by_reason
        assert letters == {"authentication-failed": 2}, letters
        assert len(proj.state.get("secret")) == 3
    report = integrity.verify(encrypted)
    assert [p.detail for p in report.problems if p.kind == "log"] == [
        "record 0:3: collection 'secret': authentication failed (the record was altered, or sealed for "
        "another collection or key)",
        "record 0:4: collection 'othe_r': authentication failed (the record was altered, or sealed for "
        "another collection or key)"]
    assert report.checked["encrypted"] == {"records": 5, "shredded": 0, "authentication_failed": 2}


def test_rotation_seals_new_events_with_the_new_key_and_old_ones_stay_readable(encrypted: Settings) -> None:
    _write(encrypted)
    code, out = operator_cli(encrypted, "--json", "keys", "rotate", "secret")
    assert code == 0, out
    assert [k["version"] for k in json.loads(out)] == [2]
    with VectorProducer(encrypted) as p:
        p.upsert("secret", [4], ROWS[:1])
    raw = _values(encrypted)
    ring = Keyring.open(encrypted)
    assert ring is not None
    versions = {k.key_id: k.version for k in ring.data_keys("secret")}
    ring.close()
    used = [versions[sealing.header(v)[1]] for v in raw]
    assert used == [1, 1, 1, 2]
    result = replay_into(encrypted)
    assert result.rejected == 0 and len(result.state.collections["secret"]) == 4


def test_shredding_makes_one_collection_unreadable_and_leaves_the_rest(encrypted: Settings) -> None:
    _write(encrypted, "gone")
    _write(encrypted, "kept")
    with running_projector(encrypted) as proj:
        proj.wait_for(0, 5, 30)
    code, out = operator_cli(encrypted, "shred", "gone")
    assert code == 1 and "collection 'gone' exists: delete it first" in out
    code, out = operator_cli(encrypted, "collections", "delete", "gone", "--shred", "--no-wait")
    assert code == 0 and "shredded 1 data keys of gone" in out, out
    ring = Keyring.open(encrypted)
    assert ring is not None
    for value in _values(encrypted):
        if sealing.is_sealed(value) and sealing.header(value)[0] == "gone":
            with pytest.raises(DecodeError) as caught:
                decode(value, ring)
            assert caught.value.reason == "shredded"
        else:
            decode(value, ring)  # the rest (and the clear deletion) still decode
    ring.close()
    fresh = replay_into(encrypted)  # from offset 0: the collection does not come back, nothing is poison
    assert set(fresh.state.collections) == {"kept"} and fresh.rejected == 0 and fresh.shredded == 4
    with running_projector(encrypted) as proj:  # the running projection applied the deletion
        proj.wait_for(0, 6, 30)
        assert set(proj.collections()) == {"kept"} and proj.stats.dead_letters == 0
    report = integrity.verify(encrypted)
    assert report.ok, report.problems
    code, out = operator_cli(encrypted, "shred", "gone")
    assert code == 0 and "already shredded" in out
    with VectorProducer(encrypted) as p:  # the name can be used again, under a new data key
        p.create_collection("gone", 8, "l2")
        token = p.upsert("gone", [9], ROWS[:1])
    with running_projector(encrypted) as proj:
        proj.wait_for(token.partition, token.offset, 30)
        assert len(proj.state.get("gone")) == 1 and proj.stats.dead_letters == 0


def test_without_keys_a_sealed_record_says_so() -> None:
    from schemas import events as ev

    event = ev.CollectionCreated(ev.EventMeta.new("c", "p"), 4)
    cipher_key = bytes(32)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    value = sealing.seal(encode(event), "c", bytes(16), AESGCM(cipher_key))
    with pytest.raises(DataKeyUnavailable, match="no key-encryption key is configured"):
        decode(value)

    class One:
        def cipher(self, collection: str, key_id: bytes) -> AESGCM | None:
            return AESGCM(cipher_key if collection == "c" else bytes(range(32)))

        def shredded(self, collection: str, key_id: bytes) -> bool:
            return False

    assert decode(value, One()).collection == "c"
    with pytest.raises(AuthenticationFailed):
        decode(value[:-1] + bytes([value[-1] ^ 1]), One())


def test_backup_and_restore_of_an_encrypted_topic_catch_up_by_replay(encrypted: Settings, tmp_path: Path) -> None:
    _write(encrypted)
    with running_projector(encrypted) as proj:
        proj.wait_for(0, 2, 30)
    code, out = operator_cli(encrypted, "backup", str(tmp_path / "bk"))
    assert code == 0, out
    with VectorProducer(encrypted) as p:  # after the backup: the restored projection replays it, sealed
        token = p.upsert("secret", [7], ROWS[:1], [{"late": SECRET}])
    target = encrypted.replace(data_dir=tmp_path / "restored")
    code, out = operator_cli(target, "restore", str(tmp_path / "bk"))
    assert code == 0, out
    with running_projector(target) as restored:
        restored.wait_for(token.partition, token.offset, 30)
        assert restored.stats.loaded_snapshot is not None and restored.stats.dead_letters == 0
        got = state_of(restored)
    with running_projector(encrypted) as original:
        original.wait_for(token.partition, token.offset, 30)
        assert state_of(original) == got and got["secret"]["points"]["7"][0] == {"late": SECRET}


def test_a_server_with_the_wrong_kek_stops_at_start_with_the_reason(encrypted: Settings, tmp_path: Path) -> None:
    from vectorizer.api.server import Replica

    _write(encrypted)
    other = tmp_path / "other-kek"
    other.write_text(kek.generate())
    replica = Replica(encrypted.replace(encryption_key_file=other, http="127.0.0.1:0", grpc="off"))
    thread = threading.Thread(target=replica.serve, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the server kept running with a KEK that unwraps nothing"
    assert isinstance(replica.failure, EncryptionKeyError) and "does not unwrap" in str(replica.failure)
    assert replica.app.state.api.producer is None  # nothing could write
    assert not (encrypted.data_dir / "catalog.db").exists()
