"""Third-party C2PA files (c2pa-rs test fixtures): every file has a stated verdict.

The folder comes from ``GUARDRAIL_C2PA_FIXTURES`` or ``../shared/fixtures/c2pa-peer``
relative to the repository root. Verification is offline, trusting only guardrail's
development root - so none of these files can be ``TRUSTED``: intact third-party
credentials are ``VALID_UNTRUSTED`` (their test CA is not a trust anchor here).

Expected verdicts (derived from the folder's README and c2pa-rs 0.91.3's own results):

=================================  ===============  ===========================================
file                               state            failure codes / notes
=================================  ===============  ===========================================
C.jpg                              VALID_UNTRUSTED  signingCredential.untrusted; created as
                                                    algorithmicMedia -> ai_generated False
CA.jpg                             VALID_UNTRUSTED  signingCredential.untrusted; parent A.jpg
CACA.jpg                           VALID_UNTRUSTED  signingCredential.untrusted
CACAE-uri-CA.jpg                   VALID_UNTRUSTED  signingCredential.untrusted; an ingredient
                                                    deep in the chain (E-uri-CA.jpg) was recorded
                                                    with assertion.hashedURI.mismatch
CIE-sig-CA.jpg                     VALID_UNTRUSTED  signingCredential.untrusted; ingredient
                                                    E-sig-CA.jpg recorded claimSignature.mismatch
C_with_CAWG_data.jpg               VALID_UNTRUSTED  signingCredential.untrusted,
                                                    cawg.x509.credential.untrusted
E-sig-CA.jpg                       INVALID          claimSignature.mismatch (+ untrusted)
XCA.jpg                            INVALID          assertion.dataHash.mismatch (+ untrusted)
adobe-20220124-E-clm-CAICAI.jpg    INVALID          assertion.hashedURI.mismatch,
                                                    ingredient.manifest.missing (+ untrusted)
boxhash.jpg                        VALID_UNTRUSTED  signingCredential.untrusted (box hash)
legacy_ingredient_hash.jpg         VALID_UNTRUSTED  signingCredential.untrusted
ocsp.jpg                           VALID_UNTRUSTED  signingCredential.untrusted; OCSP not fetched
                                                    (offline); ai_generated True
update_manifest.jpg                VALID_UNTRUSTED  signingCredential.untrusted (update manifest)
cloud.jpg                          ERROR            manifest.inaccessible: the manifest is remote
                                                    and verification is offline
no_alg.jpg                         ERROR            algorithm.unsupported (c2pa: unknown algorithm):
                                                    cannot be checked here, not tampered
prerelease.jpg                     ERROR            pre-release C2PA format: cannot be verified
sample3.invalid.wav                ERROR            invalid RIFF: cannot be parsed
riff_bomb_1000.wav                 ABSENT           malformed RIFF, parsed quickly, no manifest
id3v23_compression_underflow.mp3   ABSENT           broken ID3 frame, no manifest
IMG_0003.jpg, P1000827.jpg,        ABSENT           no manifest
earth_apollo17.jpg, no_manifest.jpg,
libpng-test.png, mars.webp,
sample1.{png,webp,wav,mp3,flac}
=================================  ===============  ===========================================
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from guardrail import ProvenanceState
from guardrail.provenance import result_to_dict, verify_path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("GUARDRAIL_C2PA_FIXTURES")
                or ROOT.parent / "shared" / "fixtures" / "c2pa-peer")

TRUSTED = ProvenanceState.TRUSTED
VU, INV = ProvenanceState.VALID_UNTRUSTED, ProvenanceState.INVALID
ABS, ERR = ProvenanceState.ABSENT, ProvenanceState.ERROR
UNTRUSTED = "signingCredential.untrusted"

#: file -> (state, exact set of failure codes, reason must contain)
EXPECTED: dict[str, tuple[ProvenanceState, set[str], str]] = {
    "C.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "CA.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "CACA.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "CACAE-uri-CA.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "CIE-sig-CA.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "C_with_CAWG_data.jpg": (VU, {UNTRUSTED, "cawg.x509.credential.untrusted"}, "not trusted"),
    "E-sig-CA.jpg": (INV, {UNTRUSTED, "claimSignature.mismatch"}, "claimSignature.mismatch"),
    "XCA.jpg": (INV, {UNTRUSTED, "assertion.dataHash.mismatch"}, "assertion.dataHash.mismatch"),
    "adobe-20220124-E-clm-CAICAI.jpg": (
        INV, {UNTRUSTED, "assertion.hashedURI.mismatch", "ingredient.manifest.missing"},
        "do not validate"),
    "boxhash.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "legacy_ingredient_hash.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "ocsp.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "update_manifest.jpg": (VU, {UNTRUSTED}, "not trusted"),
    "cloud.jpg": (ERR, {"manifest.inaccessible"}, "stored remotely"),
    "no_alg.jpg": (ERR, {"algorithm.unsupported"}, "algorithm this verifier does not support"),
    "prerelease.jpg": (ERR, set(), "pre-release"),
    "sample3.invalid.wav": (ERR, set(), "malformed"),
    "riff_bomb_1000.wav": (ABS, set(), "no Content Credentials"),
    "id3v23_compression_underflow.mp3": (ABS, set(), "no Content Credentials"),
    "IMG_0003.jpg": (ABS, set(), "no Content Credentials"),
    "P1000827.jpg": (ABS, set(), "no Content Credentials"),
    "earth_apollo17.jpg": (ABS, set(), "no Content Credentials"),
    "no_manifest.jpg": (ABS, set(), "no Content Credentials"),
    "libpng-test.png": (ABS, set(), "no Content Credentials"),
    "mars.webp": (ABS, set(), "no Content Credentials"),
    "sample1.png": (ABS, set(), "no Content Credentials"),
    "sample1.webp": (ABS, set(), "no Content Credentials"),
    "sample1.wav": (ABS, set(), "no Content Credentials"),
    "sample1.mp3": (ABS, set(), "no Content Credentials"),
    "sample1.flac": (ABS, set(), "no Content Credentials"),
}

#: extra facts checked on some files
AI_GENERATED = {"C.jpg": False, "ocsp.jpg": True, "C_with_CAWG_data.jpg": False, "CA.jpg": None}
INGREDIENT_HISTORY = {"CACAE-uri-CA.jpg": "assertion.hashedURI.mismatch",
                      "CIE-sig-CA.jpg": "claimSignature.mismatch"}

# CI always has shared/ beside the clone: there a missing folder is a failure, not a skip
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir() and not os.environ.get("CI"),
    reason=f"C2PA fixtures folder {FIXTURES} is absent (set GUARDRAIL_C2PA_FIXTURES)")


@needs_fixtures
def test_every_fixture_has_a_stated_verdict():
    files = {p.name for p in FIXTURES.iterdir() if p.is_file() and p.suffix != ".md"}
    assert files == set(EXPECTED), (
        f"without a verdict: {sorted(files - set(EXPECTED))}; "
        f"missing files: {sorted(set(EXPECTED) - files)}")


@needs_fixtures
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_verdict(name, trust):
    state, codes, reason_part = EXPECTED[name]
    t0 = time.monotonic()
    res = verify_path(FIXTURES / name, trust=trust)
    elapsed = time.monotonic() - t0
    assert elapsed < 5, f"{name} took {elapsed:.1f} s"
    assert res.state is state, res.reason
    assert set(res.failures) == codes
    assert reason_part in res.reason
    assert res.state is not TRUSTED
    result_to_dict(res)  # serialisable
    if name in AI_GENERATED:
        assert res.ai_generated is AI_GENERATED[name]
    if name in INGREDIENT_HISTORY:
        history = [c for h in res.manifest["ingredient_history_failures"] for c in h["failures"]]
        assert INGREDIENT_HISTORY[name] in history
    if state is VU:
        m = res.manifest
        assert m["signer"]["common_name"] and m["signer"]["issuer"]
        assert m["claim_generator"]


@needs_fixtures
def test_timestamped_fixture_reports_signing_time_and_authority(trust):
    res = verify_path(FIXTURES / "C.jpg", trust=trust)
    assert res.manifest["signing_time"].startswith("2024-")
    assert "Timestamp" in res.manifest["timestamp_authority"]


@needs_fixtures
def test_remote_manifest_is_reported_quickly_and_offline(trust):
    t0 = time.monotonic()
    res = verify_path(FIXTURES / "cloud.jpg", trust=trust)
    assert time.monotonic() - t0 < 5
    assert res.manifest["remote_url"].startswith("https://")
    assert "offline" in res.reason


@needs_fixtures
def test_remote_fetch_that_hangs_is_cut_off(trust, monkeypatch):
    """With fetching on, a manifest server that never answers is abandoned in time."""
    import dataclasses
    import urllib.request

    def hang(*_a, **_k):
        time.sleep(30)

    monkeypatch.setattr(urllib.request, "urlopen", hang)
    online = dataclasses.replace(trust, remote_manifest_fetch=True, remote_fetch_timeout_s=1.0)
    t0 = time.monotonic()
    res = verify_path(FIXTURES / "cloud.jpg", trust=online)
    assert time.monotonic() - t0 < 5
    assert res.state is ERR and res.failures == ("manifest.inaccessible",)
    assert "could not be fetched" in res.reason
