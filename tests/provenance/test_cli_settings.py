"""The [provenance] settings and the command bodies the CLI wires."""

from __future__ import annotations

import json

import pytest

from guardrail.errors import ConfigError, KeyFileError
from guardrail.provenance import CertificateError, ProvenanceSettings
from guardrail.provenance.cli import (
    cmd_bench,
    cmd_check_cert,
    cmd_init_dev,
    cmd_sign,
    cmd_verify,
    format_verify,
    verify_exit_code,
)
from guardrail.provenance.keys import _issue_certificate, _key_pem, _pem

from ._helpers import MEDIA


def test_defaults_apply_without_a_provenance_section(config):
    s = ProvenanceSettings.from_config(config)
    assert s.enabled and s.require_trusted
    assert s.sign_options().thumbnail == "small"
    assert s.training_mining()["ai_generative_training"] == "notAllowed"
    with pytest.raises(KeyFileError, match="keys init"):
        s.signer()
    assert s.trust_files() == []


@pytest.mark.parametrize("section, message", [
    ({"thumbnail": "huge"}, "provenance.thumbnail"),
    ({"text_mode": "html"}, "provenance.text_mode"),
    ({"algorithm": "rs256"}, "provenance.algorithm"),
    ({"training_mining": {"ai_training": "maybe"}}, "training_mining.ai_training"),
    ({"bogus": 1}, "unknown setting 'provenance.bogus'"),
])
def test_bad_settings_are_config_errors(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        ProvenanceSettings.from_mapping(section, keys_dir=tmp_path)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    s = ProvenanceSettings.from_mapping({"trust_anchors": ["roots.pem"]}, keys_dir=tmp_path,
                                        base_dir=tmp_path / "conf")
    assert s.trust_files() == [tmp_path / "conf" / "roots.pem"]
    with pytest.raises(CertificateError, match="cannot read"):
        s.trust()


def test_cert_chain_without_key_is_a_config_error(tmp_path):
    s = ProvenanceSettings.from_mapping({"cert_chain": "chain.pem"}, keys_dir=tmp_path)
    with pytest.raises(ConfigError, match="both"):
        s.signer()


def test_signer_callback_is_imported_from_the_config(tmp_path, monkeypatch):
    paths = cmd_init_dev(type("C", (), {"keys_dir": tmp_path})())
    import sys
    import types

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key(open(paths["signer_key"], "rb").read(), None)
    module = types.ModuleType("fake_kms")
    module.sign = lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    monkeypatch.setitem(sys.modules, "fake_kms", module)
    s = ProvenanceSettings.from_mapping(
        {"cert_chain": paths["signer_chain"], "signer_callback": "fake_kms:sign"},
        keys_dir=tmp_path)
    signer = s.signer()
    assert "callback" in repr(signer)
    bad = ProvenanceSettings.from_mapping(
        {"cert_chain": paths["signer_chain"], "signer_callback": "fake_kms:nope"},
        keys_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot be imported"):
        bad.signer()


def test_init_dev_sign_verify_round_trip(config, tmp_path):
    created = cmd_init_dev(config)
    assert created["created"] and created["certificate"]["algorithm"] == "es256"
    assert cmd_init_dev(config)["created"] is False
    src = tmp_path / "in.png"
    src.write_bytes(MEDIA["image/png"]())
    out = cmd_sign(config, input=src, output=tmp_path / "out.png", model_id="embedded:digits")
    assert out["verification"]["state"] == "TRUSTED"
    json.dumps(out)
    res = cmd_verify(config, path=tmp_path / "out.png")
    assert res["state"] == "TRUSTED" and verify_exit_code(res) == 0
    assert "AI-generated: yes" in format_verify(res)
    # without the dev root the same file is only valid, not trusted
    res = cmd_verify(config, path=tmp_path / "out.png", no_dev_root=True)
    assert res["state"] == "VALID_UNTRUSTED" and verify_exit_code(res) == 3
    res = cmd_verify(config, path=src)
    assert res["state"] == "ABSENT" and verify_exit_code(res) == 3
    res = cmd_verify(config, path=tmp_path / "missing.png")
    assert res["state"] == "ERROR" and verify_exit_code(res) == 4


def test_sign_text_in_sidecar_mode_writes_the_c2pa_file(config, tmp_path):
    cmd_init_dev(config)
    src = tmp_path / "note.txt"
    src.write_text("generated words", encoding="utf-8")
    out = cmd_sign(config, input=src, output=tmp_path / "signed.txt", text_mode="sidecar")
    assert out["sidecar"] == str(tmp_path / "signed.c2pa")
    assert (tmp_path / "signed.txt").read_text(encoding="utf-8") == "generated words"
    assert cmd_verify(config, path=tmp_path / "signed.txt")["state"] == "TRUSTED"


def test_check_cert_refuses_a_bad_certificate(config, tmp_path):
    cmd_init_dev(config)
    assert cmd_check_cert(config)["certificate"]["key_type"] == "P-256"
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue_certificate(subject="self", public_key=key.public_key(), issuer_key=key)
    (tmp_path / "c.pem").write_bytes(_pem(cert))
    (tmp_path / "k.pem").write_bytes(_key_pem(key))
    (tmp_path / "k.pem").chmod(0o600)
    with pytest.raises(CertificateError, match="self-signed"):
        cmd_check_cert(config, chain=tmp_path / "c.pem", key=tmp_path / "k.pem")


def test_benchmark_returns_numbers_and_markdown(config, tmp_path):
    from guardrail.provenance.bench import render_markdown, run_provenance_benchmark

    result = run_provenance_benchmark(iterations=2, size=256, warmup=0)
    for name in ("default", "default_without_thumbnail", "guardrail", "guardrail_no_thumbnail"):
        assert result["sign"][name]["median_ms"] > 0
    assert result["verify_states"]["guardrail"] == "TRUSTED"
    assert "| c2pa-python defaults |" in render_markdown(result)
    written = cmd_bench(config, iterations=1, out=tmp_path / "BENCH.md")
    assert "Content Credentials" in (tmp_path / "BENCH.md").read_text()
    assert written["written"]


def test_importing_provenance_stays_light():
    import subprocess
    import sys

    code = ("import sys, guardrail.provenance; "
            "print(','.join(m for m in ('c2pa', 'c2pa_text', 'cryptography') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
