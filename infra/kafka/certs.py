"""A certificate authority and a broker certificate for a TLS listener on loopback.

For tests and local setups only: the CA's key is written beside its certificate, and both
certificates name ``localhost`` and ``127.0.0.1``. A deployment brings its own certificates
(docs/security.md). Keys are EC P-256; the broker's PEM file holds its unencrypted PKCS#8
key, its certificate and the CA's, the layout Kafka's ``ssl.keystore.type=PEM`` reads.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: what clients trust (VECTORIZER_KAFKA_SSL_CAFILE)
    broker: Path  # the broker's key, certificate and the CA's certificate (its PEM keystore)


def local_certificates(folder: Path, days: int = 30) -> Certificates:
    """Make (or reuse, when both files exist) a CA and a broker certificate signed by it in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    found = Certificates(folder / "ca.pem", folder / "broker.pem")
    if found.ca.exists() and found.broker.exists():
        return found
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vectorizer local CA")])
    ca_cert = (_builder(ca_name, ca_name, ca_key.public_key(), now, days)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, key.public_key(),
                     now, days)
            .add_extension(names, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.key").write_bytes(ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    found.ca.write_bytes(ca_cert.public_bytes(pem))
    found.broker.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                             + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    return found


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: datetime.datetime, days: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days)))
