"""The ``[limits]`` section: configured, validated, and checked before the work it bounds -
file sizes before reading, special files before opening, header fields (image dimensions,
audio rate, channels, frames) before decoding, text length before tokenising."""

from __future__ import annotations

import io
import os
import struct
import threading
import tomllib
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from guardrail import Config
from guardrail._types import Artifact, GenerationMetadata, Modality
from guardrail.config import Limits
from guardrail.errors import ConfigError, UnsupportedMediaError
from guardrail.fingerprint import fingerprint
from guardrail.media import decode, read_bytes, read_file

META = GenerationMetadata(model_id="limits")
DEFAULTS = tomllib.loads((Path(__file__).resolve().parents[1] / "guardrail" / "defaults.toml")
                         .read_text(encoding="utf-8"))["limits"]


def wav(rate: int, n: int = 1600, channels: int = 1) -> bytes:
    """A valid 16-bit WAV whose header then claims ``rate`` (any 32-bit value)."""
    buf = io.BytesIO()
    x = (0.1 * np.sin(np.arange(n) / 7.0)).astype(np.float32)
    sf.write(buf, np.stack([x] * channels, axis=1) if channels > 1 else x, 16000,
             format="WAV", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"fmt "
    struct.pack_into("<I", data, 24, rate)
    struct.pack_into("<I", data, 28, (rate * 2 * channels) & 0xFFFFFFFF)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims ``width`` x ``height`` (with a valid CRC)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# -- configuration --------------------------------------------------------------------------
def test_defaults_come_from_defaults_toml_and_reach_the_config():
    assert Limits() == Limits.from_mapping(DEFAULTS) == Config.load(environ={}).limits
    assert Limits().max_file_bytes == 256 * 1024 * 1024
    assert 1000 <= Limits().min_audio_rate < Limits().max_audio_rate == 192000
    cfg = Config.load(environ={"GUARDRAIL_LIMITS__MAX_TEXT_CHARS": "5000"},
                      overrides={"limits": {"max_audio_seconds": 60}})
    assert cfg.limits.max_text_chars == 5000 and cfg.limits.max_audio_seconds == 60.0


@pytest.mark.parametrize(("text", "message"), [
    ("[limits]\nmax_file_bytes = 0\n", "limits.max_file_bytes must be positive"),
    ("[limits]\nmax_image_pixels = -1\n", "limits.max_image_pixels must be positive"),
    ("[limits]\nmax_check_seconds = 0.0\n", "limits.max_check_seconds must be positive"),
    ("[limits]\nmax_audio_seconds = nan\n", "limits.max_audio_seconds must be positive"),
    ("[limits]\nmax_text_chars = 1.5\n", "'limits.max_text_chars' must be int"),
    ("[limits]\nmax_audio_channels = true\n", "'limits.max_audio_channels' must be int"),
    ("[limits]\nmin_audio_rate = 96000\nmax_audio_rate = 48000\n",
     r"limits.min_audio_rate \(96000\) must be <= limits.max_audio_rate \(48000\)"),
    ("[limits]\nmax_bytes = 1\n", "unknown setting 'limits.max_bytes'"),
])
def test_bad_limits_are_config_errors_naming_the_setting(tmp_path, text, message):
    f = tmp_path / "limits.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.load(f, environ={})


# -- reading: special files and sizes --------------------------------------------------------
def in_thread(fn, timeout_s: float = 20.0):
    """Run ``fn`` in a thread; ``(finished, value)`` after at most ``timeout_s``."""
    box: dict = {}
    done = threading.Event()

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["value"] = exc
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(timeout_s), box.get("value")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    finished, value = in_thread(lambda: read_file(fifo))
    if not finished:  # give the blocked reader its end-of-file before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert finished, "read_file waited on a FIFO"
    assert isinstance(value, UnsupportedMediaError)
    assert "is a FIFO (named pipe), not a regular file" in str(value)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_before_anything_is_read(tmp_path, device):
    link = tmp_path / "looks-like.png"
    link.symlink_to(device)
    with pytest.raises(UnsupportedMediaError, match="is a character device, not a regular file"):
        read_bytes(link)
    with pytest.raises(UnsupportedMediaError, match="character device"):
        read_bytes(device)


def test_directories_missing_files_and_sockets(tmp_path):
    import socket

    with pytest.raises(UnsupportedMediaError, match="is a directory"):
        read_bytes(tmp_path)
    with pytest.raises(UnsupportedMediaError, match="no such file"):
        read_bytes(tmp_path / "nope.wav")
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(UnsupportedMediaError, match="is a socket"):
            read_bytes(path)


def test_a_sparse_file_over_the_limit_is_refused_from_its_size(tmp_path):
    big = tmp_path / "sparse.png"
    with open(big, "wb") as fh:
        fh.truncate(2 * 1024 ** 3)  # 2 GiB that take no disk space
    with pytest.raises(UnsupportedMediaError,
                       match=r"2147483648 bytes, above the limit of 268435456 bytes "
                             r"\(limits.max_file_bytes\)"):
        read_bytes(big)
    small = tmp_path / "small.txt"
    small.write_bytes(b"x" * 101)
    assert read_bytes(small, max_bytes=101) == b"x" * 101
    with pytest.raises(UnsupportedMediaError, match="101 bytes, above the limit of 100"):
        read_bytes(small, limits=Limits(max_file_bytes=100))


def test_a_file_without_a_size_is_read_up_to_the_limit_only():
    """/proc files report size 0: reading goes on in bounded steps and stops at the limit."""
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip("no /proc")
    assert b"Name:" in read_bytes(status)
    with pytest.raises(UnsupportedMediaError, match="grew past the limit of 10 bytes"):
        read_bytes(status, max_bytes=10)


# -- header fields, checked before decoding ------------------------------------------------
@pytest.mark.parametrize("rate", [2**31 - 1, 1_000_000, 3_000_001, 7_000_000, 192_001, 999])
def test_a_wav_header_rate_outside_the_limits_is_refused_naming_the_field(rate):
    with pytest.raises(UnsupportedMediaError,
                       match=rf"sample rate {rate} Hz is outside the accepted 1000-192000 Hz "
                             r"\(limits.min_audio_rate, limits.max_audio_rate\)"):
        decode(wav(rate), name="x.wav")


def test_audio_rates_at_the_limits_and_channels_frames_duration():
    assert decode(wav(192_000)).sample_rate == 192_000
    assert decode(wav(1000)).sample_rate == 1000
    with pytest.raises(UnsupportedMediaError, match=r"9 channels; the limit is 8 "
                                                    r"\(limits.max_audio_channels\)"):
        decode(wav(16000, channels=9))
    clip = wav(16000, n=3200)  # 0.2 s
    with pytest.raises(UnsupportedMediaError, match=r"lasts 0.2 s .* above the limit of 0.1 s "
                                                    r"\(limits.max_audio_seconds\)"):
        decode(clip, limits=Limits(max_audio_seconds=0.1))
    with pytest.raises(UnsupportedMediaError, match=r"3200 samples, above the limit of 3000 "
                                                    r"\(limits.max_audio_samples\)"):
        decode(clip, limits=Limits(max_audio_samples=3000))


def test_an_audio_header_is_checked_before_the_samples_are_read(monkeypatch):
    read = []
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, *a, **k: read.append(1))
    with pytest.raises(UnsupportedMediaError, match="sample rate"):
        decode(wav(2**31 - 1))
    assert read == []


@pytest.mark.parametrize(("width", "height", "message"), [
    (9000, 9000, r"9000x9000 = 81000000 pixels, above the limit of 67108864 "
                 r"\(limits.max_image_pixels; possible decompression bomb\)"),
    (40_000, 10, r"40000x10, its longer side above the limit of 32768 pixels "
                 r"\(limits.max_image_side\)"),
    # beyond Pillow's own hard limit (checked while opening): refused all the same
    (100_000, 100_000, r"decompression bomb.*limits.max_image_pixels.*10000000000 pixels"),
    (2**31 - 1, 1, r"decompression bomb.*2147483647 pixels"),
])
def test_image_dimensions_are_refused_from_the_header(monkeypatch, width, height, message):
    data = png_claiming(width, height)  # a 70-byte file
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(1))
    with pytest.raises(UnsupportedMediaError, match=message):
        decode(data)
    assert loads == []  # nothing was decoded


def test_image_limits_can_be_lowered():
    buf = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buf, format="PNG")
    assert decode(buf.getvalue()).content.shape == (20, 30, 3)
    with pytest.raises(UnsupportedMediaError, match="600 pixels, above the limit of 599"):
        decode(buf.getvalue(), limits=Limits(max_image_pixels=599))


def test_a_text_is_measured_before_it_is_decoded_then_by_characters():
    limits = Limits(max_text_chars=10)
    assert decode(b"0123456789", limits=limits).content == "0123456789"
    with pytest.raises(UnsupportedMediaError,
                       match=r"a text of 41 bytes holds more than the limit of 10 characters"):
        decode(b"x" * 41, limits=limits)
    with pytest.raises(UnsupportedMediaError, match=r"the text has 11 characters, above the "
                                                    r"limit of 10 \(limits.max_text_chars\)"):
        decode(("é" * 11).encode("utf-8"), limits=limits)  # 22 bytes, 11 characters


def test_data_larger_than_the_file_limit_is_refused_by_decode():
    with pytest.raises(UnsupportedMediaError, match=r"limits.max_file_bytes"):
        decode(b"hello world", limits=Limits(max_file_bytes=5))


# -- the fingerprint bounds its own work -----------------------------------------------------
@pytest.mark.parametrize("rate", [2**31 - 1, 7_000_000, 1_234_567, 1])
def test_the_fingerprint_refuses_rates_outside_the_limits(rate):
    """Before: resampling to 8 kHz from 2**31-1 Hz asked for a 320 GiB FFT (MemoryError)."""
    art = Artifact(Modality.AUDIO, np.zeros(32000, np.float32), META, sample_rate=rate)
    with pytest.raises(UnsupportedMediaError, match=rf"{rate} Hz: outside the accepted"):
        fingerprint(art)


def test_the_fingerprint_refuses_content_beyond_the_limits():
    clip = Artifact(Modality.AUDIO, np.zeros(16000, np.float32), META, sample_rate=8000)
    with pytest.raises(UnsupportedMediaError, match="limits.max_audio_seconds"):
        fingerprint(clip, limits=Limits(max_audio_seconds=1.0))
    img = Artifact(Modality.IMAGE, np.zeros((40, 40, 3), np.uint8), META)
    with pytest.raises(UnsupportedMediaError, match="limits.max_image_pixels"):
        fingerprint(img, limits=Limits(max_image_pixels=1000))
    with pytest.raises(UnsupportedMediaError, match="limits.max_text_chars"):
        fingerprint(Artifact(Modality.TEXT, "x" * 11, META), limits=Limits(max_text_chars=10))
    stereo = (0.1 * np.random.default_rng(0).standard_normal((8000, 2))).astype(np.float32)
    assert fingerprint(Artifact(Modality.AUDIO, stereo, META, sample_rate=8000)).startswith(
        "env:8000:")


# -- detectors and the text watermark score bounded windows -------------------------------
class RecordingTokenizer:
    """Counts the characters it is asked to tokenise; one token per character."""

    bos_token_id = None
    eos_token_id = None

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, text, add_special_tokens=False, truncation=False, max_length=None,
                 return_tensors=None):
        import torch

        self.seen.append(len(text))
        ids = [ord(c) % 200 + 1 for c in text]
        if truncation and max_length:
            ids = ids[:max_length]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}


def test_text_scorers_tokenise_only_the_window_they_score():
    pytest.importorskip("torch")
    from guardrail.detectors.text import CHARS_PER_TOKEN, FastDetectGPTScorer

    tok = RecordingTokenizer()
    scorer = FastDetectGPTScorer(model=None, tokenizer=tok, min_tokens=4, max_tokens=16)
    text = "abcdefgh " * 200_000  # 1.8 million characters
    scorer.check(text)
    ids = scorer._ids(text)
    assert ids.shape[1] == 16
    assert max(tok.seen) == CHARS_PER_TOKEN * 16


def test_the_text_watermark_scores_at_most_its_window():
    pytest.importorskip("torch")
    from guardrail.watermark.text import TextWatermarker, TextWatermarkParams

    tok = RecordingTokenizer()
    wm = TextWatermarker(b"k" * 32, tokenizer=tok, tokenizer_id="test", vocab_size=256,
                         params=TextWatermarkParams(scheme="kgw"))
    ids = wm._ids("word " * 400_000)
    assert ids.shape[1] == 512 == wm.params.max_tokens
    assert max(tok.seen) == 32 * 512


class CountingDetector:
    """A BaseDetector whose scoring counts its calls."""

    @staticmethod
    def make(modality):
        from guardrail.detectors.base import BaseDetector

        class Counting(BaseDetector):
            name = "counting"

            def __init__(self):
                super().__init__()
                self.modality = modality
                self.calls = 0

            def score(self, artifact):
                self.calls += 1
                return 0.5, "scored"

        return Counting()


@pytest.mark.parametrize(("artifact", "message"), [
    (Artifact(Modality.IMAGE, np.zeros((40, 50, 3), np.uint8), META), "limits.max_image_pixels"),
    (Artifact(Modality.AUDIO, np.zeros(16000, np.float32), META, sample_rate=2**31 - 1),
     "limits.max_audio_rate"),
    (Artifact(Modality.AUDIO, np.zeros(3 * 8000, np.float32), META, sample_rate=8000),
     "limits.max_audio_seconds"),
    (Artifact(Modality.TEXT, "x" * 101, META), "limits.max_text_chars"),
])
def test_detectors_check_the_limits_before_scoring(artifact, message):
    det = CountingDetector.make(artifact.modality)
    det.limits = Limits(max_image_pixels=1999, max_audio_seconds=2.0, max_text_chars=100)
    res = det.detect(artifact)
    assert res.probability is None and message in res.reason
    assert det.calls == 0
    det.limits = None  # the defaults accept all of these but the rate
    res = det.detect(artifact)
    assert (res.probability is None) == (message == "limits.max_audio_rate")


def test_the_registry_gives_detectors_the_configured_limits(config):
    from guardrail.detectors import registry

    cfg = Config.load(overrides={"paths": {"data_dir": str(config.data_dir)},
                                 "limits": {"max_image_pixels": 1234}})
    from guardrail.detectors.base import UnavailableDetector

    built = [d for d in registry.build_all(cfg, [Modality.IMAGE])
             if not isinstance(d, UnavailableDetector)]
    if not built:
        pytest.skip("no image detector can be built here")
    assert all(d.limits == cfg.limits for d in built)
    assert cfg.limits.max_image_pixels == 1234


def test_clip_preprocessing_of_an_rgba_view_equals_the_copy():
    from guardrail.detectors import image as clip

    rgba = np.random.default_rng(3).integers(0, 256, (300, 257, 4), dtype=np.uint8)
    view = rgba[..., :3]
    assert not view.flags.c_contiguous
    old = clip._BLOCK_PIXELS
    clip._BLOCK_PIXELS = 1000  # many blocks
    try:
        assert np.array_equal(clip.preprocess(view), clip.preprocess(np.ascontiguousarray(view)))
    finally:
        clip._BLOCK_PIXELS = old


def test_audio_features_are_computed_in_blocks_with_the_same_values():
    """LFCCs of a long clip are computed a block of frames at a time, with the
    pre-emphasis done per block: the same numbers as the whole-clip formulas."""
    from scipy.fft import dct

    from guardrail.detectors import features

    def reference(audio, sr):
        x = np.asarray(audio, dtype=np.float64)
        x = np.append(x[0], x[1:] - 0.97 * x[:-1])
        flen, hop = max(16, int(sr * 0.02)), max(8, int(sr * 0.01))
        n_fft = 1 << int(np.ceil(np.log2(flen)))
        if x.size < flen:
            x = np.pad(x, (0, flen - x.size))
        n = 1 + (x.size - flen) // hop
        idx = np.arange(flen)[None, :] + hop * np.arange(n)[:, None]
        power = np.abs(np.fft.rfft(x[idx] * np.hamming(flen), n=n_fft, axis=1)) ** 2
        energies = np.log(power @ features._linear_filterbank(20, n_fft).T + 1e-10)
        ceps = dct(energies, type=2, axis=1, norm="ortho")[:, :20]
        d1 = features._deltas(ceps)
        return np.hstack([ceps, d1, features._deltas(d1)])

    rng = np.random.default_rng(4)
    for n, sr in [(100, 16000), (321, 16000), (200_000, 16000), (150_000, 44100)]:
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        assert np.allclose(features.lfcc(x, sr), reference(x, sr), rtol=0, atol=1e-12)


def test_the_silence_check_of_audio_detectors_needs_no_float64_copy():
    from guardrail.detectors.base import NotPerformed, _rms, as_float_audio

    x = (0.5 * np.sin(np.arange(3_000_000) / 5.0)).astype(np.float32)
    assert abs(_rms(x) - float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))) < 1e-12
    with pytest.raises(NotPerformed, match="silent"):
        as_float_audio(Artifact(Modality.AUDIO, np.zeros(16000, np.float32), META,
                                sample_rate=16000), min_seconds=0.5)


def test_training_folders_are_read_within_the_limits(tmp_path):
    from guardrail.detectors.train import load_folder

    (tmp_path / "a.txt").write_text("a short human text")
    (tmp_path / "b.txt").write_text("x" * (Limits().max_text_chars + 1))
    arts, skipped = load_folder(tmp_path, Modality.TEXT)
    assert [a.content for a in arts] == ["a short human text"]
    assert len(skipped) == 1 and skipped[0].startswith("b.txt:") and "limits.max_text_chars" \
        in skipped[0]
