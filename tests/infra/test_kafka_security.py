"""Kafka over TLS and SASL: a broker with a SASL_SSL listener (a certificate made for the test,
SASL PLAIN), a server that reaches it through the one client factory, and the refusals: a wrong
password, no TLS, a CA that did not sign the broker's certificate."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka.errors import KafkaError
from qdrant_client import QdrantClient, models

from infra.errors import ConfigurationError
from infra.kafka import clients
from infra.kafka.certs import local_certificates
from infra.kafka.launcher import LocalBroker, NodeSpec, SecureListener, broker_answers
from infra.settings import Settings
from tests.api.conftest import serving
from tests.conftest import free_ports
from tests.helpers import wait_until

PASSWORD = "s3cret-\"quoted\"-$HOME"  # a quote and a dollar sign: escaped on the broker's side


@dataclass(frozen=True)
class SecureBroker:
    broker: LocalBroker
    ca: Path
    bootstrap: str  # the SASL_SSL listener


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    home = tmp_path_factory.mktemp("secure-kafka")
    certs = local_certificates(home / "certs")
    port, controller, secure = free_ports(3)
    broker = LocalBroker(home / "kafka", Settings().cache_dir,
                         NodeSpec(port=port, controller_port=controller, voters=f"1@127.0.0.1:{controller}"),
                         heap="384m", secure=SecureListener(secure, certs.broker, {"vectorizer": PASSWORD}))
    broker.start(timeout=180)
    try:
        yield SecureBroker(broker, certs.ca, f"127.0.0.1:{secure}")
    finally:
        broker.stop()


def _secure(found: SecureBroker, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(kafka_bootstrap=found.bootstrap, topic=f"t.tls_{uuid.uuid4().hex[:10]}",
                    data_dir=tmp_path / "data", snapshot_every_events=1_000_000, snapshot_every_seconds=3600.0,
                    kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=found.ca,
                    kafka_sasl_username="vectorizer", kafka_sasl_password=PASSWORD).replace(**overrides)


def test_the_server_reaches_a_sasl_ssl_broker_and_qdrant_client_works_through_it(
        secure_broker: SecureBroker, tmp_path: Path) -> None:
    settings = _secure(secure_broker, tmp_path)
    with serving(settings) as running:
        client = QdrantClient(url=running.url, timeout=30)
        client.create_collection("tls", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
        client.upsert("tls", points=[models.PointStruct(id=i, vector=[1.0, float(i), 0.5], payload={"i": i})
                                     for i in range(1, 6)], wait=True)
        hits = client.query_points("tls", query=[1.0, 5.0, 0.5], limit=2).points
        assert hits[0].id == 5
        assert client.count("tls").count == 5
    # The events are on the topic, read back over the same secured connection.
    consumer = clients.consumer(settings, "test", auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    try:
        consumer.subscribe([settings.topic])
        records = list(consumer)
    finally:
        consumer.close()
    assert len(records) >= 2  # the collection's creation and the upsert


def test_wrong_password_no_tls_and_an_unknown_ca_are_refused(secure_broker: SecureBroker, tmp_path: Path) -> None:
    good = _secure(secure_broker, tmp_path)
    assert broker_answers(good.kafka_bootstrap, connection=clients.connection(good))
    wrong_password = good.replace(kafka_sasl_password="not-the-password")
    assert not broker_answers(good.kafka_bootstrap, connection=clients.connection(wrong_password))
    assert not broker_answers(good.kafka_bootstrap)  # plaintext to the TLS listener
    other_ca = local_certificates(tmp_path / "other").ca  # a CA that never signed the broker's certificate
    untrusted = good.replace(kafka_ssl_cafile=other_ca)
    assert not broker_answers(good.kafka_bootstrap, connection=clients.connection(untrusted))
    with pytest.raises(KafkaError):
        clients.admin(wrong_password, "test", bootstrap_timeout_ms=5_000, request_timeout_ms=5_000).list_topics()


def test_a_server_with_a_wrong_password_stays_not_ready_and_names_the_failure(
        secure_broker: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _secure(secure_broker, tmp_path, kafka_sasl_password="not-the-password")
    with caplog.at_level(logging.WARNING), serving(settings, wait_ready=False) as running:
        wait_until(lambda: "connecting to Kafka failed" in caplog.text, 60, message="the connection failure logged")
        assert running.http.get("/ready").status_code == 503
        created = running.http.put("/collections/never", json={"vectors": {"size": 2, "distance": "Dot"}})
        assert created.status_code == 503, created.text
    assert "not-the-password" not in caplog.text


def test_security_settings_are_checked_at_the_edge(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here beyond existing")
    env = {"VECTORIZER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "VECTORIZER_KAFKA_SSL_CAFILE": str(ca),
           "VECTORIZER_KAFKA_SASL_USERNAME": "u", "VECTORIZER_KAFKA_SASL_PASSWORD": "p",
           "VECTORIZER_KAFKA_SSL_CHECK_HOSTNAME": "false"}
    loaded = Settings.load(environ=env)
    assert (loaded.kafka_ssl_cafile, loaded.kafka_ssl_check_hostname) == (ca, False)
    options = clients.connection(loaded)
    assert (options["security_protocol"], options["ssl_cafile"], options["sasl_plain_password"]) == (
        "SASL_SSL", str(ca), "p")
    assert "ssl_cafile" not in clients.connection(Settings())
    refusals = {
        "VECTORIZER_KAFKA_SECURITY_PROTOCOL": {"VECTORIZER_KAFKA_SECURITY_PROTOCOL": "TLS"},
        "VECTORIZER_KAFKA_SASL_USERNAME": {"VECTORIZER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
        "VECTORIZER_KAFKA_SASL_MECHANISM": {**env, "VECTORIZER_KAFKA_SASL_MECHANISM": "GSSAPI"},
        "no such file": {**env, "VECTORIZER_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")},
        "use SSL or SASL_SSL": {"VECTORIZER_KAFKA_SSL_CAFILE": str(ca)},
        "give both or neither": {**env, "VECTORIZER_KAFKA_SSL_CERTFILE": str(ca)},
    }
    for named, environ in refusals.items():
        with pytest.raises(ConfigurationError, match=named):
            Settings.load(environ=environ)


def test_the_sasl_password_is_never_in_the_settings_repr() -> None:
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                        kafka_sasl_password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "kafka_sasl_username='u'" in repr(settings)
