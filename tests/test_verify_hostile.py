"""``guardrail verify`` on hostile and broken files: every one is answered (never an
exception, never a hang), and a file whose content could not be read or decoded is never
called clean - it is "Could not be verified" (exit 4) with what failed."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guardrail import Config
from guardrail._types import Modality, ProvenanceResult, ProvenanceState
from guardrail.cli import main
from guardrail.verify import VerifyResult, verdict, verify_file
from tests.test_limits import in_thread, png_claiming, wav

CLEAN = "No evidence of AI generation found"
UNVERIFIED = "Could not be verified"


def png(size: int = 96, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def answer(fn, timeout_s: float = 60.0):
    """``fn()`` in a thread; fails the test if there is no answer within ``timeout_s``."""
    finished, value = in_thread(fn, timeout_s)
    assert finished, "no answer: verification hangs"
    assert not isinstance(value, BaseException), f"raised {value!r}"
    return value


def hostile(kind: str, folder: Path) -> Path:
    """A file (or something that is not one) of the given kind."""
    if kind == "fifo":
        path = folder / "clip.wav"
        os.mkfifo(path)
    elif kind in ("dev-zero", "dev-urandom"):
        path = folder / f"{kind}.png"
        path.symlink_to("/dev/zero" if kind == "dev-zero" else "/dev/urandom")
    elif kind == "directory":
        path = folder / "folder.png"
        path.mkdir()
    elif kind == "sparse-2GiB":
        path = folder / "sparse.png"
        with open(path, "wb") as fh:
            fh.truncate(2 * 1024 ** 3)
    elif kind == "missing":
        path = folder / "missing.png"
    elif kind == "empty":
        path = folder / "empty.png"
        path.write_bytes(b"")
    elif kind == "rate-2^31-1":
        path = folder / "rate.wav"
        path.write_bytes(wav(2**31 - 1, n=32000))
    elif kind == "rate-7MHz":
        path = folder / "rate7.wav"
        path.write_bytes(wav(6_999_997, n=32000))
    elif kind == "bomb":
        path = folder / "bomb.png"
        path.write_bytes(png_claiming(9000, 9000))
    elif kind == "truncated-png":
        path = folder / "cut.png"
        data = png()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path = folder / "noise.bin"
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "long-text":
        path = folder / "long.txt"
        path.write_bytes(b"words " * 2000)  # 12,000 bytes; the test limit is 1,000 characters
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


KINDS = ["fifo", "dev-zero", "dev-urandom", "directory", "sparse-2GiB", "missing", "empty",
         "rate-2^31-1", "rate-7MHz", "bomb", "truncated-png", "garbage", "long-text"]


@pytest.fixture
def small_text_config(config: Config) -> Config:
    return Config.load(overrides={"paths": {"data_dir": str(config.data_dir)},
                                  "limits": {"max_text_chars": 1000}})


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_files_get_could_not_be_verified(tmp_path, small_text_config, store, kind):
    path = hostile(kind, tmp_path)
    res = answer(lambda: verify_file(path, small_text_config, store=store, detectors=[]))
    if kind == "fifo" and res is None:  # pragma: no cover - only if it hung
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert res.label == UNVERIFIED, (kind, res.summary)
    assert res.modality is None and res.failed and res.not_checked
    assert res.summary.startswith(f"{UNVERIFIED}: ")
    assert res.to_dict()["verdict"]["label"] == UNVERIFIED


@pytest.mark.parametrize(("kind", "expected"), [
    ("fifo", "is a FIFO (named pipe), not a regular file"),
    ("dev-zero", "is a character device, not a regular file"),
    ("sparse-2GiB", "2147483648 bytes, above the limit of 268435456 bytes (limits.max_file_bytes)"),
    ("rate-2^31-1", "sample rate 2147483647 Hz is outside the accepted 1000-192000 Hz"),
    ("bomb", "above the limit of 67108864 (limits.max_image_pixels; possible decompression bomb)"),
    ("long-text", "holds more than the limit of 1000 characters (limits.max_text_chars)"),
])
def test_the_reason_names_the_problem_and_the_limit(tmp_path, small_text_config, store, kind,
                                                    expected):
    res = answer(lambda: verify_file(hostile(kind, tmp_path), small_text_config, store=store,
                                     detectors=[]))
    assert expected in res.summary
    assert any(expected in line for line in res.not_checked)


def test_the_file_is_read_once_and_the_same_bytes_reach_both_readers(tmp_path, config, store,
                                                                     monkeypatch):
    import guardrail.media as media
    import guardrail.provenance.verify as pv

    reads: list[str] = []
    real = media.read_bytes

    def counting(path, **kw):
        reads.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(media, "read_bytes", counting)
    monkeypatch.setattr(pv, "read_bytes", counting)
    seen: list[bytes] = []
    real_verify_bytes = pv.verify_bytes

    def spy(data, *a, **kw):
        seen.append(data)
        return real_verify_bytes(data, *a, **kw)

    monkeypatch.setattr(pv, "verify_bytes", spy)
    path = tmp_path / "photo.png"
    path.write_bytes(png())
    res = verify_file(path, config, store=store, detectors=[])
    assert reads == [str(path)]
    assert seen and seen[0] == path.read_bytes()
    assert res.label == CLEAN and res.modality is Modality.IMAGE


def test_a_decodable_file_without_evidence_is_still_clean(tmp_path, config, store):
    path = tmp_path / "photo.png"
    path.write_bytes(png())
    res = verify_file(path, config, store=store, detectors=[])
    assert res.label == CLEAN and not res.failed


# -- damaged signed outputs -----------------------------------------------------------------
@pytest.fixture
def signed(tmp_path, config):
    pytest.importorskip("c2pa", reason="c2pa-python is not installed")
    from guardrail.factory import init_keys
    from guardrail.provenance.files import sign_file

    init_keys(config)
    out = {}
    for fmt in ("png", "jpg"):
        plain = tmp_path / f"plain.{fmt}"
        Image.open(io.BytesIO(png())).save(plain)
        out[fmt] = tmp_path / f"signed.{fmt}"
        sign_file(config, input=plain, output=out[fmt], model_id="test-model")
    return out


def damaged_copies(data: bytes, fmt: str) -> dict[str, bytes]:
    copies = {f"cut at {k}/8": data[: len(data) * k // 8] for k in range(1, 8)}
    marker = data.find(b"\xff\xeb") if fmt == "jpg" else data.find(b"caBX")
    bad = bytearray(data)
    if fmt == "jpg":  # the APP11 segment holding the manifest becomes an APP12 segment
        bad[marker + 1] = 0xEC
    else:  # the caBX chunk gets another name (its CRC no longer matches)
        bad[marker:marker + 4] = b"caBY"
    copies["manifest segment renamed"] = bytes(bad)
    return copies


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_damaged_signed_outputs_are_never_called_clean(tmp_path, config, store, signed, fmt):
    intact = verify_file(signed[fmt], config, store=store, detectors=[])
    assert intact.provenance.state is ProvenanceState.TRUSTED, intact.summary
    for change, data in damaged_copies(signed[fmt].read_bytes(), fmt).items():
        path = tmp_path / f"damaged.{fmt}"
        path.write_bytes(data)
        res = answer(lambda p=path: verify_file(p, config, store=store, detectors=[]))
        assert res.label != CLEAN, (fmt, change, res.summary)


def test_a_hidden_manifest_in_a_decodable_jpeg_is_not_absent(tmp_path, config, store, signed):
    """The JPEG still decodes when its manifest segment is renamed; c2pa then finds no
    manifest, but the manifest store is still in the file: ERROR, not ABSENT."""
    data = damaged_copies(signed["jpg"].read_bytes(), "jpg")["manifest segment renamed"]
    path = tmp_path / "renamed.jpg"
    path.write_bytes(data)
    res = verify_file(path, config, store=store, detectors=[])
    assert res.modality is Modality.IMAGE  # the picture itself is fine
    assert res.provenance.state is ProvenanceState.ERROR
    assert "C2PA manifest store that c2pa could not find" in res.provenance.reason
    assert res.label == UNVERIFIED


# -- a check that fails unexpectedly ------------------------------------------------------
class Exploding:
    name = "exploding"
    modality = Modality.IMAGE
    model_version = None

    def detect(self, artifact):
        raise RuntimeError("boom")


def test_a_crashing_detector_makes_the_verdict_unverified(tmp_path, config, store):
    path = tmp_path / "photo.png"
    path.write_bytes(png())
    res = verify_file(path, config, store=store, detectors=[Exploding()])
    assert res.label == UNVERIFIED
    assert "detector exploding failed unexpectedly: RuntimeError: boom" in res.summary
    assert res.detectors[0].reason == "not performed: RuntimeError: boom"


def test_a_crashing_watermark_decoder_or_verifier_is_an_answer(tmp_path, config, store,
                                                              monkeypatch):
    import guardrail.factory as factory
    import guardrail.media as media
    import guardrail.verify as verify

    path = tmp_path / "photo.png"
    path.write_bytes(png())

    class BadMark:
        version = "1"

        def detect(self, artifact):
            raise ZeroDivisionError("bad mark")

    with monkeypatch.context() as m:
        m.setattr(factory, "watermarker_from_config", lambda *a, **k: BadMark())
        res = verify_file(path, config, store=store, detectors=[])
    assert res.label == UNVERIFIED and "ZeroDivisionError: bad mark" in res.summary
    with monkeypatch.context() as m:
        m.setattr(media, "decode", lambda *a, **k: (_ for _ in ()).throw(KeyError("x")))
        res = verify_file(path, config, store=store, detectors=[])
    assert res.label == UNVERIFIED and "the decoder failed unexpectedly: KeyError" in res.summary
    with monkeypatch.context() as m:
        m.setattr(verify, "_verify_file", lambda *a, **k: (_ for _ in ()).throw(OSError("io")))
        res = verify_file(path, config, store=store, detectors=[])
    assert res.label == UNVERIFIED and "verification failed unexpectedly: OSError" in res.summary


# -- the verdict rules --------------------------------------------------------------------
def result(state: ProvenanceState, *, ai: bool | None = None, failed: bool) -> VerifyResult:
    res = VerifyResult(file="f", media_type=None, modality=None, watermark=None,
                       provenance=ProvenanceResult(state=state, ai_generated=ai,
                                                   signer="Signer" if ai is not None else None,
                                                   reason="why"))
    if failed:
        res.fail("watermark and detectors", "the content could not be decoded: broken")
    return verdict(res)


@pytest.mark.parametrize(("state", "ai", "label"), [
    (ProvenanceState.ABSENT, None, UNVERIFIED),
    (ProvenanceState.ERROR, None, UNVERIFIED),
    (ProvenanceState.INVALID, None, "Tampered"),
    (ProvenanceState.TRUSTED, True, "AI-generated"),
    (ProvenanceState.VALID_UNTRUSTED, True, "Likely AI-generated"),
    (ProvenanceState.TRUSTED, False, "Signed, not declared AI-generated"),
])
def test_credentials_are_still_evidence_on_undecodable_content(state, ai, label):
    res = result(state, ai=ai, failed=True)
    assert res.label == label
    assert res.not_checked == ["watermark and detectors: the content could not be decoded: broken"]
    if label.startswith("Signed"):
        assert res.summary.endswith("; not checked: the content could not be decoded: broken")
    assert result(ProvenanceState.ABSENT, failed=False).label == CLEAN


# -- the command line ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "rate-2^31-1", "truncated-png"])
def test_cli_verify_exits_4_with_the_reason(tmp_path, capsys, kind):
    path = hostile(kind, tmp_path)
    args = ["--data-dir", str(tmp_path / "data"), "--store", f"sqlite:///{tmp_path / 'v.db'}"]
    code = answer(lambda: main(["verify", str(path), *args]))
    out = capsys.readouterr().out
    assert code == 4 and out.startswith(f"{UNVERIFIED}: ")
    assert "Not checked:\n  - " in out
    code = answer(lambda: main(["verify", str(path), "--json", *args]))
    obj = json.loads(capsys.readouterr().out)
    assert code == 4 and obj["verdict"]["label"] == UNVERIFIED and obj["modality"] is None


# -- the Content Credentials reader runs under the time limit -----------------------------
def test_reading_credentials_past_the_time_limit_is_an_error(monkeypatch):
    pytest.importorskip("c2pa", reason="c2pa-python is not installed")
    from guardrail.provenance._c2pa import c2pa_module
    from guardrail.provenance.verify import verify_bytes

    release = threading.Event()

    class SlowReader:
        def __init__(self, *a, **k):
            release.wait(60)
            raise RuntimeError("released")

    monkeypatch.setattr(c2pa_module(), "Reader", SlowReader)
    try:
        res = verify_bytes(png(), "image/png", timeout_s=0.2)
    finally:
        release.set()
    assert res.state is ProvenanceState.ERROR
    assert "did not finish within 0.2 s (limits.max_check_seconds = 0.2)" in res.reason
