"""Signing and verifying images and audio: states, failure codes and bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from guardrail import ProvenanceState
from guardrail.errors import UnsupportedMediaError
from guardrail.provenance import (
    ManifestInfo,
    SignOptions,
    TrustSettings,
    result_to_dict,
    sign_bytes,
    verify_bytes,
    verify_path,
)

from ._helpers import (
    MEDIA,
    encode_image,
    pixels,
    png_build,
    png_change_one_pixel,
    png_chunks,
    riff_chunk_offset,
)

TRUSTED, VALID_UNTRUSTED = ProvenanceState.TRUSTED, ProvenanceState.VALID_UNTRUSTED
INVALID, ABSENT, ERROR = ProvenanceState.INVALID, ProvenanceState.ABSENT, ProvenanceState.ERROR
AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


@pytest.fixture(scope="module")
def signed_media(signer):
    info = ManifestInfo(model_id="embedded:digits", model_revision="rev-123",
                        prompt_hash="hmac-sha256:abcdefabcdef:" + "1" * 64,
                        parameters={"steps": 4}, seed=7,
                        watermark={"scheme": "guardrail-image", "version": "1",
                                   "key_id": "k-0001", "payload": "00ff00ff"},
                        stages=[{"stage": "watermark", "status": "ok"}],
                        training_mining={"ai_generative_training": "notAllowed"})
    return {mt: sign_bytes(make(), mt, signer=signer, manifest_info=info)
            for mt, make in MEDIA.items()}


@pytest.mark.parametrize("media_type", list(MEDIA))
def test_sign_and_verify_trusted_for_every_media_type(signed_media, trust, media_type):
    original = MEDIA[media_type]()
    signed = signed_media[media_type]
    assert len(signed) > len(original)
    res = verify_bytes(signed, media_type, trust=trust)
    assert res.state is TRUSTED, res.reason
    assert res.failures == ()
    assert res.ai_generated is True
    assert res.signer == "guardrail development signer"
    m = res.manifest
    created = m["actions"][0]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == AI
    assert created["softwareAgent"] == {"name": "embedded:digits", "version": "rev-123"}
    assert "c2pa.watermarked" in [a["action"] for a in m["actions"]]
    assert m["soft_binding"]["alg"] == "io.guardrail.watermark.image.v1"
    assert m["soft_binding"]["blocks"][0]["value"] == "AP8A/w=="  # base64 of the id 00ff00ff
    assert m["generation"]["prompt_hash"].startswith("hmac-sha256:")
    assert m["generation"]["stages"] == [{"stage": "watermark", "status": "ok"}]
    assert m["training_mining"] == {"cawg.ai_generative_training": {"use": "notAllowed"}}
    assert m["claim_generator"][0]["name"] == "guardrail"
    assert m["embedded"] is True
    json.dumps(result_to_dict(res))  # the --json shape is serialisable


@pytest.mark.parametrize("media_type", list(MEDIA))
def test_signed_media_still_decodes(signed_media, media_type):
    data = io.BytesIO(signed_media[media_type])
    if media_type.startswith("image/"):
        from PIL import Image

        assert Image.open(data).size == (64, 64)
    else:
        import soundfile as sf

        samples, rate = sf.read(data)
        assert rate == 16000 and len(samples) > 15000


def test_prompt_is_never_written(signer, trust):
    secret_prompt = "a very secret prompt about a purple elephant"
    info = ManifestInfo(model_id="m", prompt_hash="hmac-sha256:k:" + "2" * 64)
    signed = sign_bytes(MEDIA["image/png"](), "image/png", signer=signer, manifest_info=info)
    assert secret_prompt.encode() not in signed and b"purple" not in signed


def test_thumbnail_policy(signer, trust):
    png = encode_image("PNG", size=300)
    sizes = {}
    for policy in ("none", "small"):
        signed = sign_bytes(png, "image/png", signer=signer, manifest_info=ManifestInfo(
            model_id="m"), options=SignOptions(thumbnail=policy, thumbnail_long_edge=64))
        res = verify_bytes(signed, "image/png", trust=trust)
        assert res.state is TRUSTED
        sizes[policy] = len(signed)
        import c2pa

        reader = c2pa.Reader("image/png", io.BytesIO(signed))
        thumb = reader.get_active_manifest().get("thumbnail")
        if policy == "none":
            assert thumb is None
        else:
            buf = io.BytesIO()
            reader.resource_to_stream(thumb["identifier"], buf)
            from PIL import Image

            assert max(Image.open(io.BytesIO(buf.getvalue())).size) == 64
        reader.close()
    assert sizes["small"] > sizes["none"]


def test_thumbnail_from_pixels_when_given(signer, trust):
    arr = pixels(3, 128)
    png = encode_image("PNG", 3, 128)
    signed = sign_bytes(png, "image/png", signer=signer, manifest_info=ManifestInfo(model_id="m"),
                        pixels=arr)
    assert verify_bytes(signed, "image/png", trust=trust).state is TRUSTED


# -- tampering ------------------------------------------------------------------------------
def test_one_changed_pixel_is_invalid_with_the_failure_code(signed_media, trust):
    tampered = png_change_one_pixel(signed_media["image/png"])
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(signed_media["image/png"])), dtype=int)
    b = np.asarray(Image.open(io.BytesIO(tampered)), dtype=int)
    assert np.count_nonzero(np.any(a != b, axis=-1)) == 1  # exactly one pixel differs
    res = verify_bytes(tampered, "image/png", trust=trust)
    assert res.state is INVALID
    assert "assertion.dataHash.mismatch" in res.failures
    assert "do not validate" in res.reason


def test_one_changed_audio_sample_is_invalid(signed_media, trust):
    wav = bytearray(signed_media["audio/wav"])
    wav[riff_chunk_offset(bytes(wav), b"data") + 2000] ^= 0x01  # one PCM sample
    res = verify_bytes(bytes(wav), "audio/wav", trust=trust)
    assert res.state is INVALID and "assertion.dataHash.mismatch" in res.failures


def test_metadata_stripped_by_reencoding_is_absent(signed_media, trust):
    from PIL import Image

    for mt, fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP")):
        buf = io.BytesIO()
        Image.open(io.BytesIO(signed_media[mt])).save(buf, format=fmt)
        res = verify_bytes(buf.getvalue(), mt, trust=trust)
        assert res.state is ABSENT, (mt, res.reason)
        assert "no Content Credentials" in res.reason


def test_untrusted_signer_is_valid_untrusted_never_trusted(other_signer, trust):
    signed = sign_bytes(MEDIA["image/png"](), "image/png", signer=other_signer,
                        manifest_info=ManifestInfo(model_id="m"))
    res = verify_bytes(signed, "image/png", trust=trust)
    assert res.state is VALID_UNTRUSTED
    assert res.failures == ("signingCredential.untrusted",)
    assert "not trusted" in res.reason
    assert result_to_dict(res)["trusted"] is False
    # and with no trust anchors at all, even our own signer is only VALID_UNTRUSTED
    assert verify_bytes(signed, "image/png", trust=TrustSettings()).state is VALID_UNTRUSTED


def test_manifest_transplanted_from_another_file_is_invalid(signer, trust):
    donor = sign_bytes(MEDIA["image/png"](1), "image/png", signer=signer,
                       manifest_info=ManifestInfo(model_id="m"))
    manifest_chunk = next(c for c in png_chunks(donor) if c[0] == b"caBX")
    target = png_chunks(MEDIA["image/png"](2))
    transplanted = png_build([target[0], manifest_chunk, *target[1:]])
    res = verify_bytes(transplanted, "image/png", trust=trust)
    assert res.state is INVALID
    assert "assertion.dataHash.mismatch" in res.failures


def test_manifest_transplanted_into_a_jpeg_is_invalid(signer, trust):
    donor = sign_bytes(MEDIA["image/jpeg"](1), "image/jpeg", signer=signer,
                       manifest_info=ManifestInfo(model_id="m"))
    target = MEDIA["image/jpeg"](2)
    # the C2PA manifest travels in APP11 segments right after SOI: move them over
    segments, i = [], 2
    while donor[i] == 0xFF and donor[i + 1] != 0xDA:
        length = int.from_bytes(donor[i + 2:i + 4], "big")
        if donor[i + 1] == 0xEB:
            segments.append(donor[i:i + 2 + length])
        i += 2 + length
    assert segments
    transplanted = target[:2] + b"".join(segments) + target[2:]
    res = verify_bytes(transplanted, "image/jpeg", trust=trust)
    assert res.state is INVALID and "assertion.dataHash.mismatch" in res.failures


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.97])
def test_truncated_files_are_error_or_invalid_with_a_reason(signed_media, trust, fraction):
    for mt, data in signed_media.items():
        cut = data[: max(1, int(len(data) * fraction))]
        res = verify_bytes(cut, mt, trust=trust)
        assert res.state in (ERROR, INVALID, ABSENT), (mt, fraction)
        assert res.state is not TRUSTED and res.reason
        if res.state is ERROR:
            assert any(w in res.reason for w in ("truncated", "not a", "content is", "c2pa"))


def test_empty_and_garbage_input(trust):
    assert verify_bytes(b"", trust=trust).state is ERROR
    res = verify_bytes(bytes(range(256)) * 8, trust=trust)
    assert res.state is ERROR and "unsupported format" in res.reason
    res = verify_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "image/png", trust=trust)
    assert res.state is ERROR and "truncated or malformed" in res.reason


def test_unsupported_format_without_credentials(trust):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels()).save(buf, format="BMP")
    res = verify_bytes(buf.getvalue(), "image/bmp", trust=trust)
    assert res.state is ERROR and "unsupported" in res.reason


def test_gif_without_credentials_is_absent(trust):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels()).save(buf, format="GIF")
    assert verify_bytes(buf.getvalue(), trust=trust).state is ABSENT


def test_extension_lies_are_errors_with_the_reason(signed_media, trust, tmp_path):
    fake_png = tmp_path / "photo.png"
    fake_png.write_bytes(signed_media["image/jpeg"])
    res = verify_path(fake_png, trust=trust)
    assert res.state is ERROR
    assert "says image/png but the content is image/jpeg" in res.reason
    text_as_wav = tmp_path / "sound.wav"
    text_as_wav.write_text("just some words")
    res = verify_path(text_as_wav, trust=trust)
    assert res.state is ERROR and "audio/wav" in res.reason
    # the same bytes under their real name verify
    real = tmp_path / "photo.jpg"
    real.write_bytes(signed_media["image/jpeg"])
    assert verify_path(real, trust=trust).state is TRUSTED


def test_missing_file_and_directory(tmp_path, trust):
    assert verify_path(tmp_path / "nope.png", trust=trust).state is ERROR
    assert verify_path(tmp_path, trust=trust).state is ERROR


def test_sign_refuses_unsupported_or_mislabelled_media(signer):
    info = ManifestInfo(model_id="m")
    with pytest.raises(UnsupportedMediaError, match="cannot sign 'image/gif'"):
        sign_bytes(b"GIF89a....", "image/gif", signer=signer, manifest_info=info)
    with pytest.raises(UnsupportedMediaError, match="says image/png but the bytes are image/jpeg"):
        sign_bytes(MEDIA["image/jpeg"](), "image/png", signer=signer, manifest_info=info)
    with pytest.raises(UnsupportedMediaError, match="empty"):
        sign_bytes(b"", "image/png", signer=signer, manifest_info=info)


def test_sign_and_verify_are_fast_for_a_1024_jpeg(signer, trust):
    """Loose bound for a shared CI machine (the benchmark measures the real numbers)."""
    import time

    from guardrail.benchmarks.provenance import test_image

    data = test_image(1024)
    info = ManifestInfo(model_id="m")
    sign_bytes(data, "image/jpeg", signer=signer, manifest_info=info)  # warm up
    sign_ms, verify_ms = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        signed = sign_bytes(data, "image/jpeg", signer=signer, manifest_info=info)
        t1 = time.perf_counter()
        assert verify_bytes(signed, "image/jpeg", trust=trust).state is TRUSTED
        sign_ms.append((t1 - t0) * 1000)
        verify_ms.append((time.perf_counter() - t1) * 1000)
    assert sorted(sign_ms)[2] < 60 and sorted(verify_ms)[2] < 30
