"""Text: manifests embedded in invisible variation selectors, and sidecar manifests."""

from __future__ import annotations

import io
import json
import pickle
import unicodedata

import pytest

from guardrail import ProvenanceState
from guardrail.errors import UnsupportedMediaError
from guardrail.provenance import (
    ManifestInfo,
    sign_bytes,
    sign_text,
    strip_text_wrapper,
    verify_bytes,
    verify_path,
    verify_text,
    write_sidecar,
)
from guardrail.provenance.text import find_text_wrapper

TEXT = "The café opened at dawn — naïve visitors queued.\nSecond paragraph: 42 % done.\n"


@pytest.fixture(scope="module")
def embedded(signer):
    info = ManifestInfo(model_id="embedded:smollm2", model_revision="r1",
                        prompt_hash="hmac-sha256:k:" + "3" * 64,
                        watermark={"scheme": "kgw", "version": "1", "key_id": "k", "payload": None})
    return sign_text(TEXT, signer=signer, manifest_info=info, mode="embedded")


def test_embedded_text_is_trusted_and_looks_unchanged(embedded, trust):
    assert embedded.mode == "embedded"
    assert embedded.text.startswith(unicodedata.normalize("NFC", TEXT))
    invisible = embedded.text[len(TEXT):]
    assert invisible[0] == "\ufeff"
    assert all(0xFE00 <= ord(c) <= 0xFE0F or 0xE0100 <= ord(c) <= 0xE01EF
               for c in invisible[1:])
    res = verify_text(embedded.text, trust=trust)
    assert res.state is ProvenanceState.TRUSTED, res.reason
    assert res.ai_generated is True and res.failures == ()
    assert res.manifest["embedded"] is True
    assert res.manifest["text_wrapper"]["start"] == len(TEXT.encode("utf-8"))
    assert strip_text_wrapper(embedded.text) == unicodedata.normalize("NFC", TEXT)


def test_embedded_binding_uses_an_exclusion_over_the_wrapper(embedded):
    import c2pa

    wrapper = find_text_wrapper(embedded.text)
    reader = c2pa.Reader("text/plain", io.BytesIO(embedded.text.encode()), wrapper.manifest)
    store = json.loads(reader.detailed_json())
    reader.close()
    binding = store["manifests"][store["active_manifest"]]["assertion_store"]["c2pa.hash.data"]
    assert binding["exclusions"] == [{"start": wrapper.start, "length": wrapper.length}]


@pytest.mark.parametrize("operation", [
    lambda s: "".join(list(s)),
    lambda s: s.encode("utf-8").decode("utf-8"),
    lambda s: json.loads(json.dumps(s)),
    lambda s: json.loads(json.dumps(s, ensure_ascii=False)),
    lambda s: pickle.loads(pickle.dumps(s)),
    lambda s: io.StringIO(s).read(),
    lambda s: f"{s}",
    lambda s: "".join(s.splitlines(keepends=True)),
    lambda s: s.strip("\n") + "\n" if s.endswith("\n") else s,
    lambda s: unicodedata.normalize("NFC", s),
    lambda s: s[:],
], ids=["join", "utf8", "json", "json-unicode", "pickle", "stringio", "fstring", "lines",
        "strip-newlines", "nfc", "slice"])
def test_copy_paste_round_trip_keeps_the_credentials(embedded, trust, operation):
    pasted = operation(embedded.text)
    assert pasted == embedded.text or unicodedata.normalize("NFC", pasted) == embedded.text
    assert verify_text(pasted, trust=trust).state is ProvenanceState.TRUSTED


def test_copy_to_a_file_and_back(embedded, trust, tmp_path):
    path = tmp_path / "answer.txt"
    path.write_text(embedded.text, encoding="utf-8")
    assert verify_path(path, trust=trust).state is ProvenanceState.TRUSTED
    assert verify_bytes(path.read_bytes(), trust=trust).state is ProvenanceState.TRUSTED


def test_edited_text_is_invalid(embedded, trust):
    for edited in (embedded.text.replace("dawn", "dusk"),  # same length
                   embedded.text.replace("café", "cafe"),  # shorter
                   "Prefix. " + embedded.text):            # pasted into a longer text
        res = verify_text(edited, trust=trust)
        assert res.state is ProvenanceState.INVALID
        assert res.failures == ("assertion.dataHash.mismatch",)


def test_removed_wrapper_is_absent(embedded, trust):
    res = verify_text(strip_text_wrapper(embedded.text), trust=trust)
    assert res.state is ProvenanceState.ABSENT


def test_broken_wrappers_are_invalid_with_the_text_codes(embedded, trust):
    wrapper = embedded.text[len(TEXT):]
    # cut inside the manifest: the wrapper itself is broken
    res = verify_text(embedded.text[:-(len(wrapper) // 2)], trust=trust)
    assert res.state is ProvenanceState.INVALID
    assert res.failures == ("manifest.text.corruptedWrapper",)
    # cut only its padding: the manifest reads, but no longer covers what it excludes
    res = verify_text(embedded.text[:-1], trust=trust)
    assert res.state is ProvenanceState.INVALID
    assert res.failures == ("assertion.dataHash.mismatch",)
    res = verify_text(embedded.text + " and more " + wrapper, trust=trust)
    assert res.state is ProvenanceState.INVALID
    assert res.failures == ("manifest.text.multipleWrappers",)


def test_untrusted_text_signer(other_signer, trust):
    signed = sign_text("hello there", signer=other_signer,
                       manifest_info=ManifestInfo(model_id="m"))
    res = verify_text(signed.text, trust=trust)
    assert res.state is ProvenanceState.VALID_UNTRUSTED
    assert res.failures == ("signingCredential.untrusted",)


def test_signed_text_is_not_signed_again(embedded, signer):
    with pytest.raises(UnsupportedMediaError, match="already carries"):
        sign_text(embedded.text, signer=signer, manifest_info=ManifestInfo(model_id="m"))


def test_sign_bytes_handles_text(signer, trust):
    data = sign_bytes("Bonjour é".encode(), "text/plain", signer=signer,
                      manifest_info=ManifestInfo(model_id="m"))
    assert verify_bytes(data, "text/plain", trust=trust).state is ProvenanceState.TRUSTED


def test_nfd_input_is_signed_as_nfc(signer, trust):
    nfd = unicodedata.normalize("NFD", "Crème brûlée")
    signed = sign_text(nfd, signer=signer, manifest_info=ManifestInfo(model_id="m"))
    assert signed.text.startswith(unicodedata.normalize("NFC", nfd))
    assert verify_text(signed.text, trust=trust).state is ProvenanceState.TRUSTED


# -- sidecar ------------------------------------------------------------------------------
def test_sidecar_manifest(signer, trust, tmp_path):
    signed = sign_text(TEXT, signer=signer, manifest_info=ManifestInfo(model_id="m"),
                       mode="sidecar")
    assert signed.mode == "sidecar" and signed.text == TEXT
    assert signed.manifest[4:8] == b"jumb"
    res = verify_text(TEXT, trust=trust, sidecar=signed.manifest)
    assert res.state is ProvenanceState.TRUSTED and res.ai_generated is True
    assert res.manifest["embedded"] is False
    edited = verify_text(TEXT.replace("dawn", "dusk"), trust=trust, sidecar=signed.manifest)
    assert edited.state is ProvenanceState.INVALID
    assert "assertion.dataHash.mismatch" in edited.failures
    # next to the file: <name>.c2pa is found automatically
    path = tmp_path / "answer.txt"
    path.write_text(TEXT, encoding="utf-8")
    side = write_sidecar(path, signed.manifest)
    assert side == tmp_path / "answer.c2pa"
    assert verify_path(path, trust=trust).state is ProvenanceState.TRUSTED
    side.unlink()
    assert verify_path(path, trust=trust).state is ProvenanceState.ABSENT


def test_sidecar_for_another_text_is_invalid(signer, trust):
    a = sign_text("first text", signer=signer, manifest_info=ManifestInfo(model_id="m"),
                  mode="sidecar")
    res = verify_text("second text", trust=trust, sidecar=a.manifest)
    assert res.state is ProvenanceState.INVALID


def test_invalid_utf8_is_an_error(trust):
    assert verify_text(b"\xff\xfe\x00bad", trust=trust).state is ProvenanceState.ERROR
