"""The [provenance] settings, the development chain, signing an existing file, and the
C2PA benchmark."""

from __future__ import annotations

import json

import pytest

from guardrail import Config
from guardrail.errors import ConfigError, KeyFileError
from guardrail.provenance import (
    CertificateError,
    ProvenanceSettings,
    TrustSettings,
    check_signing_certificate,
    init_dev_chain,
    result_to_dict,
    verify_path,
)
from guardrail.provenance.certs import encode_certificate, encode_private_key
from guardrail.provenance.files import sign_file
from guardrail.provenance.keys import _issue_certificate

from ._helpers import MEDIA


def test_defaults_apply_without_a_provenance_section(config):
    s = ProvenanceSettings.from_config(config)
    assert s.enabled and s.require_trusted
    assert s.sign_options().thumbnail == "small"
    assert s.training_mining()["ai_generative_training"] == "notAllowed"
    with pytest.raises(KeyFileError, match="keys init"):
        s.signer()
    assert s.trust_files() == []


def _settings(**section):
    return ProvenanceSettings.from_config(Config.load(overrides={"provenance": section}))


@pytest.mark.parametrize("section, message", [
    ({"thumbnail": "huge"}, "provenance.thumbnail"),
    ({"text_mode": "html"}, "provenance.text_mode"),
    ({"algorithm": "rs256"}, "provenance.algorithm"),
    ({"training_mining": {"ai_training": "maybe"}}, "training_mining.ai_training"),
    ({"bogus": 1}, "unknown setting 'provenance.bogus'"),
])
def test_bad_settings_are_config_errors(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        _settings(**section)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    conf = tmp_path / "conf" / "config.toml"
    conf.parent.mkdir()
    conf.write_text('[provenance]\ntrust_anchors = ["roots.pem"]\n', encoding="utf-8")
    s = ProvenanceSettings.from_config(Config.load(conf))
    assert s.trust_files() == [tmp_path / "conf" / "roots.pem"]
    with pytest.raises(CertificateError, match="cannot read"):
        s.trust()


def test_cert_chain_without_key_is_a_config_error(tmp_path):
    s = _settings(cert_chain="chain.pem")
    with pytest.raises(ConfigError, match="both"):
        s.signer()


def test_signer_callback_is_imported_from_the_config(tmp_path, monkeypatch):
    paths = init_dev_chain(tmp_path).to_dict()
    import sys
    import types

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(open(paths["signer_key"], "rb").read(), None)
    module = types.ModuleType("fake_kms")
    module.sign = lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    monkeypatch.setitem(sys.modules, "fake_kms", module)
    s = _settings(cert_chain=paths["signer_chain"], signer_callback="fake_kms:sign")
    signer = s.signer()
    assert "callback" in repr(signer)
    bad = _settings(cert_chain=paths["signer_chain"], signer_callback="fake_kms:nope")
    with pytest.raises(ConfigError, match="cannot be imported"):
        bad.signer()


def _verify(config, path, *, dev_root=True):
    trust = ProvenanceSettings.from_config(config).trust() if dev_root else \
        TrustSettings.from_files([])
    return result_to_dict(verify_path(path, trust=trust))


def test_init_dev_sign_verify_round_trip(config, tmp_path):
    created = init_dev_chain(config.keys_dir).to_dict()
    assert created["created"] and created["certificate"]["algorithm"] == "es256"
    assert init_dev_chain(config.keys_dir).created is False
    src = tmp_path / "in.png"
    src.write_bytes(MEDIA["image/png"]())
    out = sign_file(config, input=src, output=tmp_path / "out.png", model_id="embedded:digits")
    assert out["verification"]["state"] == "TRUSTED"
    json.dumps(out)
    res = _verify(config, tmp_path / "out.png")
    assert res["state"] == "TRUSTED" and res["ai_generated"] is True
    # without the dev root the same file is only valid, not trusted
    assert _verify(config, tmp_path / "out.png", dev_root=False)["state"] == "VALID_UNTRUSTED"
    assert _verify(config, src)["state"] == "ABSENT"
    assert _verify(config, tmp_path / "missing.png")["state"] == "ERROR"


def test_sign_text_in_sidecar_mode_writes_the_c2pa_file(config, tmp_path):
    init_dev_chain(config.keys_dir)
    src = tmp_path / "note.txt"
    src.write_text("generated words", encoding="utf-8")
    out = sign_file(config, input=src, output=tmp_path / "signed.txt", text_mode="sidecar")
    assert out["sidecar"] == str(tmp_path / "signed.c2pa")
    assert (tmp_path / "signed.txt").read_text(encoding="utf-8") == "generated words"
    assert _verify(config, tmp_path / "signed.txt")["state"] == "TRUSTED"


def test_check_cert_refuses_a_bad_certificate(config, tmp_path):
    init_dev_chain(config.keys_dir)
    signer = ProvenanceSettings.from_config(config).signer()
    assert signer.certificate.to_dict()["key_type"] == "P-256"
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue_certificate(subject="self", public_key=key.public_key(), issuer_key=key)
    (tmp_path / "c.pem").write_bytes(encode_certificate(cert))
    (tmp_path / "k.pem").write_bytes(encode_private_key(key))
    (tmp_path / "k.pem").chmod(0o600)
    with pytest.raises(CertificateError, match="self-signed"):
        check_signing_certificate((tmp_path / "c.pem").read_text(encoding="ascii"),
                                  private_key_pem=(tmp_path / "k.pem").read_text(encoding="ascii"))


def test_benchmark_returns_numbers_and_markdown(config, tmp_path):
    from guardrail.benchmarks import write_section
    from guardrail.benchmarks.provenance import render_markdown, run_provenance_benchmark

    result = run_provenance_benchmark(iterations=2, size=256, warmup=0)
    for name in ("default", "default_without_thumbnail", "guardrail", "guardrail_no_thumbnail"):
        assert result["sign"][name]["median_ms"] > 0
    assert result["verify_states"]["guardrail"] == "TRUSTED"
    assert "| c2pa-python defaults |" in render_markdown(result)
    write_section(tmp_path / "BENCH.md", "provenance", render_markdown(result))
    assert "Content Credentials" in (tmp_path / "BENCH.md").read_text()


def test_importing_provenance_stays_light():
    import subprocess
    import sys

    code = ("import sys, guardrail.provenance; "
            "print(','.join(m for m in ('c2pa', 'c2pa_text', 'cryptography') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
