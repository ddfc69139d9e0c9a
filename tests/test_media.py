"""Decoding files that users hand to `watermark detect` / `verify`: every odd or broken
input gets a clear message or a sensible conversion, never a crash."""

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from guardrail.errors import UnsupportedMediaError
from guardrail.media import MAX_IMAGE_PIXELS, decode, read_file, sniff_media_type


def png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


def test_grayscale_rgba_cmyk_and_16_bit_images_are_converted():
    gray = decode(png(Image.new("L", (70, 50), 128)))
    assert gray.content.shape == (50, 70, 3) and gray.content.dtype == np.uint8
    rgba = decode(png(Image.new("RGBA", (70, 50), (10, 20, 30, 40))))
    assert rgba.content.shape == (50, 70, 4)  # alpha kept for the schemes to preserve
    cmyk = decode(png(Image.new("CMYK", (70, 50), (0, 255, 0, 0)), format="JPEG"))
    assert cmyk.content.shape == (50, 70, 3)
    arr16 = (np.arange(70 * 50, dtype=np.uint16).reshape(50, 70) * 18).astype(np.uint16)
    deep = decode(png(Image.fromarray(arr16)))
    assert deep.content.shape == (50, 70, 3) and deep.content.max() > 200


def test_animated_images_and_decompression_bombs_are_refused():
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedMediaError, match="animated image with 2 frames"):
        decode(buf.getvalue())
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 64
    bomb = png(Image.new("1", (side, side)))  # a few KB that would expand to > 64 Mpx
    assert len(bomb) < 1_000_000
    with pytest.raises(UnsupportedMediaError, match="decompression bomb"):
        decode(bomb)


def test_truncated_empty_unknown_and_mislabelled_files():
    data = png(Image.new("RGB", (64, 64), "green"))
    with pytest.raises(UnsupportedMediaError, match="truncated or corrupt"):
        decode(data[: len(data) // 2])
    with pytest.raises(UnsupportedMediaError, match="empty"):
        decode(b"")
    with pytest.raises(UnsupportedMediaError, match="not a supported"):
        decode(bytes(range(256)) * 4)
    with pytest.raises(UnsupportedMediaError, match="the name says image/jpeg but the content is image/png"):
        decode(data, "image/jpeg")


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_audio_rates_and_channels(rate, channels):
    x = (0.1 * np.sin(np.arange(rate // 2) / 7.0)).astype(np.float32)
    x = np.stack([x] * channels, axis=1) if channels == 2 else x
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV")
    art = decode(buf.getvalue())
    assert art.sample_rate == rate and art.content.shape == x.shape


def test_flac_behind_an_id3_tag_is_flac():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(800, np.float32), 8000, format="FLAC")
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10
    assert sniff_media_type(tag + buf.getvalue()) == "audio/flac"


def test_read_file_reports_missing_and_directories(tmp_path):
    with pytest.raises(UnsupportedMediaError, match="no such file"):
        read_file(tmp_path / "nope.png")
    with pytest.raises(UnsupportedMediaError, match="is a directory"):
        read_file(tmp_path)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "P+transparency", "1", "CMYK",
                                  "I;16", "I"])
def test_images_are_converted_a_block_of_rows_at_a_time_without_changing_a_pixel(
        monkeypatch, mode):
    import guardrail.media as media

    rgb = Image.fromarray(np.random.default_rng(5).integers(0, 256, (67, 83, 3), dtype=np.uint8))
    if mode == "P+transparency":
        img = rgb.convert("P")
        img.info["transparency"] = 3
    elif mode == "I;16":
        img = Image.fromarray(np.random.default_rng(6).integers(0, 65535, (67, 83))
                              .astype(np.uint16))
    elif mode == "I":
        img = Image.fromarray(np.random.default_rng(7).integers(0, 10**6, (67, 83))
                              .astype(np.int32), mode="I")
    else:
        img = rgb.convert(mode)
    data = png(img, format="TIFF" if mode in ("CMYK", "I") else "PNG")
    monkeypatch.setattr(media, "_BLOCK_BYTES", 1000)  # a few rows per block
    got = decode(data).content
    ref = Image.open(io.BytesIO(data))
    if ref.mode.startswith("I"):
        x = np.asarray(ref, dtype=np.float64)
        top = 65535.0 if ref.mode.startswith("I;16") else max(float(x.max()), 1.0)
        gray = np.clip(np.rint(x / top * 255.0), 0, 255).astype(np.uint8)
        expected = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        alpha = ref.mode in ("RGBA", "LA", "PA") or (ref.mode == "P" and "transparency" in ref.info)
        expected = np.asarray(ref.convert("RGBA" if alpha else "RGB"))
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
