"""The development chain, the up-front certificate checks and the signing identity."""

from __future__ import annotations

import datetime as dt
import os
import socket
import stat
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from guardrail.errors import KeyFileError
from guardrail.provenance import (
    CertificateError,
    ManifestInfo,
    ProvenanceSigner,
    SigningError,
    check_signing_certificate,
    dev_chain_paths,
    init_dev_chain,
    sign_bytes,
    verify_bytes,
)
from guardrail.provenance.certs import encode_certificate, encode_private_key
from guardrail.provenance.keys import _issue_certificate

from ._helpers import MEDIA


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the development chain ----------------------------------------------------------------
def test_dev_chain_files_modes_and_trust(tmp_path):
    paths = init_dev_chain(tmp_path / "keys")
    assert paths.created
    assert mode(paths.signer_key) == 0o600
    assert mode(paths.folder) == 0o700
    for cert in (paths.signer_chain, paths.root_cert, paths.trust_anchors):
        assert mode(cert) & 0o077 == 0o044  # public files
        assert b"PRIVATE KEY" not in cert.read_bytes()
    assert b"BEGIN PRIVATE KEY" in paths.signer_key.read_bytes()
    # only the signer's key is kept: the CA keys are never written
    assert sorted(p.name for p in paths.folder.iterdir()) == sorted(
        ["dev-signer.key", "dev-signer-chain.pem", "dev-root.pem", "trust-anchors.pem"])
    summary = paths.certificate
    assert summary.key_type == "P-256" and summary.algorithm == "es256"
    assert "emailProtection" in summary.extended_key_usages
    assert summary.chain_length == 2


def test_dev_chain_is_never_overwritten(tmp_path):
    first = init_dev_chain(tmp_path)
    before = {p: p.read_bytes() for p in first.folder.iterdir()}
    again = init_dev_chain(tmp_path)
    assert not again.created
    assert {p: p.read_bytes() for p in first.folder.iterdir()} == before


def test_partial_dev_chain_is_refused_not_overwritten(tmp_path):
    paths = init_dev_chain(tmp_path)
    key = paths.signer_key.read_bytes()
    paths.signer_chain.unlink()
    with pytest.raises(KeyFileError, match="incomplete development chain"):
        init_dev_chain(tmp_path)
    assert paths.signer_key.read_bytes() == key
    assert not paths.signer_chain.exists()


def test_signer_key_readable_by_others_is_refused(tmp_path):
    paths = init_dev_chain(tmp_path)
    os.chmod(paths.signer_key, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        ProvenanceSigner.from_dev_chain(tmp_path)


def test_missing_dev_chain_says_how_to_create_it(tmp_path):
    with pytest.raises(KeyFileError, match="keys init|does not exist"):
        ProvenanceSigner.from_dev_chain(tmp_path)
    assert dev_chain_paths(tmp_path).folder == tmp_path / "c2pa"


def test_repr_never_shows_the_key(signer):
    key = signer._key_pem
    assert "PRIVATE" not in repr(signer) and key not in repr(signer)


# -- up-front refusal of bad certificates -------------------------------------------------
@pytest.fixture(scope="module")
def ca():
    """A CA key and certificate that issues the test certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue_certificate(subject="test CA", public_key=key.public_key(), issuer_key=key,
                              ca=True, path_length=0, days=3650)
    return key, cert


def issue(issuer, *, key=None, **kw):
    ca_key, ca_cert = issuer
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = _issue_certificate(subject="test signer", public_key=key.public_key(),
                              issuer_key=ca_key, issuer_name=ca_cert.subject, **kw)
    chain = encode_certificate(cert) + encode_certificate(ca_cert)
    return chain.decode(), encode_private_key(key).decode()


def test_good_certificate_passes(ca):
    chain, key = issue(ca)
    summary = check_signing_certificate(chain, private_key_pem=key)
    assert summary.algorithm == "es256" and summary.chain_length == 2


@pytest.mark.parametrize("kind, kwargs, message", [
    ("missing EKU", {"ekus": None}, "no extended key usage"),
    ("EKU c2pa does not accept", {"ekus": ["1.3.6.1.5.5.7.3.1"]}, "none of the extended key"),
    ("anyExtendedKeyUsage", {"ekus": ["2.5.29.37.0", "1.3.6.1.5.5.7.3.4"]},
     "anyExtendedKeyUsage"),
    ("expired", {"not_before": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "days": 30}, "expired on"),
    ("not yet valid", {"not_before": dt.datetime.now(dt.UTC) + dt.timedelta(days=10)},
     "not valid yet"),
    ("CA flag on the end entity", {"ca": True}, "is a CA certificate"),
    ("no digitalSignature", {"digital_signature": False}, "digitalSignature"),
    ("no key usage", {"key_usage": False}, "digitalSignature"),
])
def test_bad_certificates_are_refused_up_front(ca, kind, kwargs, message):
    chain, key = issue(ca, **kwargs)
    with pytest.raises(CertificateError, match=message):
        check_signing_certificate(chain, private_key_pem=key)


def test_self_signed_end_entity_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue_certificate(subject="lonely signer", public_key=key.public_key(),
                              issuer_key=key)
    with pytest.raises(CertificateError, match="self-signed"):
        check_signing_certificate(encode_certificate(cert).decode(),
                                  private_key_pem=encode_private_key(key).decode())


@pytest.mark.parametrize("key_factory, algorithm, message", [
    (lambda: ec.generate_private_key(ec.SECP384R1()), "es256", "P-384 key.*needs a P-256"),
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "es256",
     "RSA-2048 key.*needs a P-256"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ps256", "needs an RSA key"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ed25519", "needs an Ed25519 key"),
    (lambda: ec.generate_private_key(ec.SECP256K1()), None, "secp256k1"),
])
def test_wrong_key_type_is_refused(ca, key_factory, algorithm, message):
    chain, key = issue(ca, key=key_factory())
    with pytest.raises(CertificateError, match=message):
        check_signing_certificate(chain, private_key_pem=key, algorithm=algorithm)


def test_ed25519_key_with_ed25519_algorithm_passes(ca):
    chain, key = issue(ca, key=ed25519.Ed25519PrivateKey.generate())
    assert check_signing_certificate(chain, private_key_pem=key).algorithm == "ed25519"


def test_key_that_does_not_match_is_refused(ca):
    chain, _ = issue(ca)
    _, other_key = issue(ca)
    with pytest.raises(CertificateError, match="does not belong"):
        check_signing_certificate(chain, private_key_pem=other_key)


def test_chain_in_the_wrong_order_is_refused(ca):
    chain, key = issue(ca)
    ee, ca_pem = chain.split("-----END CERTIFICATE-----\n", 1)
    swapped = ca_pem + ee + "-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateError, match="CA certificate|self-signed"):
        check_signing_certificate(swapped)


def test_chain_with_a_foreign_issuer_is_refused(ca):
    chain, _ = issue(ca)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _issue_certificate(subject="test CA", public_key=other_key.public_key(),
                               issuer_key=other_key, ca=True, path_length=0)
    ee = chain.split("-----END CERTIFICATE-----\n", 1)[0] + "-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateError, match="was not issued by"):
        check_signing_certificate(ee + encode_certificate(other).decode())


def test_not_pem_and_encrypted_key_are_explained(ca):
    with pytest.raises(CertificateError, match="no PEM certificate"):
        check_signing_certificate("hello")
    chain, _ = issue(ca)
    enc = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")).decode()
    with pytest.raises(CertificateError, match="encrypted"):
        check_signing_certificate(chain, private_key_pem=enc)


def test_signer_refuses_bad_certificate_at_construction(ca):
    chain, key = issue(ca, ekus=None)
    with pytest.raises(CertificateError):
        ProvenanceSigner(chain_pem=chain, private_key_pem=key)


# -- KMS/HSM callback and timestamp authority ---------------------------------------------
def test_callback_signer_produces_trusted_credentials(dev_keys, trust):
    paths = dev_chain_paths(dev_keys)
    key = serialization.load_pem_private_key(paths.signer_key.read_bytes(), None)
    calls = []

    def kms_sign(data: bytes) -> bytes:  # what a KMS returns: a DER ECDSA signature
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    signer = ProvenanceSigner(chain_pem=paths.signer_chain.read_text(), callback=kms_sign)
    signed = sign_bytes(MEDIA["image/png"](), "image/png", signer=signer,
                        manifest_info=ManifestInfo(model_id="m"))
    assert calls
    assert verify_bytes(signed, "image/png", trust=trust).state.value == "TRUSTED"


def test_failing_callback_is_reported(dev_keys):
    paths = dev_chain_paths(dev_keys)

    def broken(_data: bytes) -> bytes:
        raise RuntimeError("KMS unavailable")

    signer = ProvenanceSigner(chain_pem=paths.signer_chain.read_text(), callback=broken)
    with pytest.raises(SigningError, match="signing callback failed: RuntimeError: KMS"):
        sign_bytes(MEDIA["image/png"](), "image/png", signer=signer,
                   manifest_info=ManifestInfo(model_id="m"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_timestamp_authority_fails_fast_and_clearly(dev_keys):
    paths = dev_chain_paths(dev_keys)
    signer = ProvenanceSigner.from_files(paths.signer_chain, paths.signer_key,
                                         tsa_url=f"http://127.0.0.1:{closed_port()}/tsa",
                                         tsa_timeout_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(SigningError, match="timestamp authority .* is unreachable"):
        sign_bytes(MEDIA["image/png"](), "image/png", signer=signer,
                   manifest_info=ManifestInfo(model_id="m"))
    assert time.monotonic() - t0 < 5


def test_timestamp_authority_that_never_answers_times_out(dev_keys):
    """A TSA that accepts the connection and then hangs: stopped by the deadline."""
    paths = dev_chain_paths(dev_keys)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        signer = ProvenanceSigner.from_files(
            paths.signer_chain, paths.signer_key,
            tsa_url=f"http://127.0.0.1:{server.getsockname()[1]}/tsa", tsa_timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(SigningError, match="did not answer in time|timestamp"):
            sign_bytes(MEDIA["image/png"](), "image/png", signer=signer,
                       manifest_info=ManifestInfo(model_id="m"))
        assert time.monotonic() - t0 < 5
    finally:
        server.close()


@pytest.mark.parametrize("kwargs", [{"ekus": None}, {"ca": True},
                                    {"not_before": dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                                     "days": 30}],
                         ids=["no-EKU", "CA-flag", "expired"])
def test_c2pa_itself_rejects_what_the_check_refuses(ca, kwargs):
    """Without the up-front check c2pa fails too - with a less helpful message."""
    chain, key = issue(ca, **kwargs)
    signer = ProvenanceSigner(chain_pem=chain, private_key_pem=key, check=False)
    with pytest.raises(SigningError, match="c2pa could not sign"):
        sign_bytes(MEDIA["image/png"](), "image/png", signer=signer,
                   manifest_info=ManifestInfo(model_id="m"))
