"""Tests of the image generator (generators/image.py): offline, CPU, well under a minute.

* the hub-model code path runs on a tiny randomly initialised Stable Diffusion pipeline
  built from configs and saved to a temporary folder (no download);
* the embedded default is the committed toy digits model, checked with an sklearn
  classifier that must recognise the requested digits;
* bad model sources must fail fast with a ModelLoadError naming the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import guardrail
from generators import image
from generators._digits import DIGIT_WORDS, classify_digits, prompt_digit
from guardrail.errors import ConfigError, InputError, ModelLoadError

#: The embedded model must draw the requested digit at least this often (measured at
#: 100 % on 300 samples at the default guidance; see generators/weights/digits/README.md).
MIN_DIGIT_ACCURACY = 0.85


def _tiny_sd_pipeline(directory: Path, tokenizer_dir: Path) -> Path:
    """Save a tiny random StableDiffusionPipeline (as in diffusers' own tests) to ``directory``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from generators._digits import make_word_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    tokenizer = make_word_tokenizer(["a", "red", "cat", "blue", "dog", "photo", "of"],
                                    tokenizer_dir, max_length=16)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
        )
    )
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, scheduler=scheduler,
                                   text_encoder=text_encoder, tokenizer=tokenizer,
                                   safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-sd")
    return _tiny_sd_pipeline(root / "tiny-sd", root / "tokenizer")


@pytest.fixture(scope="module")
def hub_gen(tiny_sd: Path) -> image.ImageGenerator:
    return image.load(str(tiny_sd), progress=False)


@pytest.fixture(scope="module")
def digits_gen() -> image.ImageGenerator:
    return image.load(progress=False)


# -- hub-model code path -----------------------------------------------------------------


def test_diffusers_pipeline_generates(hub_gen: image.ImageGenerator, tiny_sd: Path) -> None:
    params = {"steps": 2, "height": 32, "width": 32, "guidance_scale": 5.0,
              "negative_prompt": "blue"}
    out = hub_gen.generate(["a red cat", "a blue dog"], seed=3, params=params)
    assert len(out) == 2
    for i, item in enumerate(out):
        assert item.content.shape == (32, 32, 3)
        assert item.content.dtype == np.uint8
        assert dict(item.parameters) == {
            "steps": 2, "guidance_scale": 5.0, "height": 32, "width": 32,
            "negative_prompt": "blue", "scheduler": "DDIMScheduler", "seed": 3 + i,
        }
    assert not np.array_equal(out[0].content, out[1].content)

    again = hub_gen.generate(["a red cat", "a blue dog"], seed=3, params=params)
    for first, second in zip(out, again, strict=True):
        np.testing.assert_array_equal(first.content, second.content)
    other = hub_gen.generate(["a red cat"], seed=4, params=params)
    assert not np.array_equal(other[0].content, out[0].content)

    info = hub_gen.info
    assert info.model_id == str(tiny_sd)
    assert (info.device, info.dtype) == ("cpu", "float32")
    assert info.details["pipeline"] == "StableDiffusionPipeline"


def test_diffusers_pipeline_defaults_seed_and_scheduler(hub_gen: image.ImageGenerator) -> None:
    out = hub_gen.generate(["a cat"], params={"steps": 1, "scheduler": "euler"})
    params = out[0].parameters
    # the pipeline's native size: unet sample_size 16 x vae scale factor 2
    assert out[0].content.shape == (32, 32, 3)
    assert params["scheduler"] == "EulerDiscreteScheduler"
    assert isinstance(params["seed"], int)
    assert hub_gen.pipeline.scheduler.__class__.__name__ == "DDIMScheduler"  # restored
    with pytest.raises(InputError, match="multiples of 2"):
        hub_gen.generate(["a cat"], params={"steps": 1, "height": 33, "width": 32})
    with pytest.raises(InputError, match="unknown generation parameter"):
        hub_gen.generate(["a cat"], params={"stepz": 1})


def test_sdxl_pipelines_are_loaded_without_their_watermarker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import diffusers

    seen: dict = {}

    def fake_config(name, **kwargs):
        return {"_class_name": "StableDiffusionXLPipeline"}, "c0ffee"

    def fake_auto(name, **kwargs):
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(diffusers.DiffusionPipeline, "load_config", fake_config)
    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", fake_auto)
    _, commit = image._load_diffusers("some/sdxl", local_files_only=True)
    assert seen["add_watermarker"] is False
    assert commit == "c0ffee"

    seen.clear()
    monkeypatch.setattr(diffusers.DiffusionPipeline, "load_config",
                        lambda name, **kw: ({"_class_name": "StableDiffusionPipeline"}, None))
    image._load_diffusers("some/sd15", local_files_only=True)
    assert "add_watermarker" not in seen


# -- embedded default ---------------------------------------------------------------------


def test_embedded_digits_are_recognisable(digits_gen: image.ImageGenerator) -> None:
    prompts = [f"a handwritten digit {w}" for w in DIGIT_WORDS] + [
        f"the number {d}" for d in range(10)
    ]
    out = digits_gen.generate(prompts, seed=0)
    for item in out:
        assert item.content.dtype == np.uint8
        assert item.content.ndim == 3 and item.content.shape[2] == 3
        assert min(item.content.shape[:2]) >= 256
        assert item.parameters["height"] == item.parameters["width"] == 256
    wanted = np.array([prompt_digit(p) for p in prompts])
    got = classify_digits([item.content for item in out])
    accuracy = float(np.mean(got == wanted))
    assert accuracy >= MIN_DIGIT_ACCURACY, f"recognised {accuracy:.0%}: wanted {wanted}, got {got}"


def test_embedded_reproducible_and_independent_of_batching(
    digits_gen: image.ImageGenerator,
) -> None:
    prompts = ["digit 3", "a seven", "a cat on the moon"]  # the last names no digit
    params = {"steps": 10, "height": 64, "width": 48}
    whole = digits_gen.generate(prompts, seed=11, params=params)
    single = digits_gen.generate(prompts, seed=11, params={**params, "batch_size": 1})
    for a, b in zip(whole, single, strict=True):
        assert a.content.shape == (64, 48, 3)
        assert np.abs(a.content.astype(int) - b.content.astype(int)).max() <= 2
        assert a.parameters == b.parameters
    assert not np.array_equal(whole[0].content, whole[1].content)
    assert whole[2].content.std() > 0  # a prompt without a digit still gives an image
    alone = digits_gen.generate(["a seven"], seed=12, params=params)
    assert np.abs(alone[0].content.astype(int) - whole[1].content.astype(int)).max() <= 2


def test_embedded_model_info(digits_gen: image.ImageGenerator) -> None:
    info = digits_gen.info
    assert info.model_id == "embedded:digits"
    assert info.revision is not None and info.revision.startswith("sha256:")
    assert len(info.revision) == len("sha256:") + 64
    assert info.device == "cpu" and info.dtype == "float32"
    assert info.details["pipeline"] == "DigitsPipeline"
    assert image.load("embedded:digits", progress=False).info.revision == info.revision


def test_embedded_folder_loads_as_a_path() -> None:
    gen = image.load(str(image.EMBEDDED_DIR), progress=False, steps=5)
    assert gen.info.details["pipeline"] == "DigitsPipeline"
    assert gen.info.revision == image.load(progress=False).info.revision
    assert gen.generate(["9"], seed=1)[0].parameters["steps"] == 5


def test_generator_protocol_and_entry_point(digits_gen: image.ImageGenerator) -> None:
    assert isinstance(digits_gen, guardrail.Generator)
    assert digits_gen.modality is guardrail.Modality.IMAGE
    assert digits_gen.generate([]) == []
    gen = guardrail.load_generator("image", progress=False)
    assert isinstance(gen, image.ImageGenerator)


def test_bad_generation_input(digits_gen: image.ImageGenerator) -> None:
    with pytest.raises(InputError, match="sequence of strings"):
        digits_gen.generate("a seven")
    with pytest.raises(InputError, match="steps"):
        digits_gen.generate(["a seven"], params={"steps": 0})
    with pytest.raises(InputError, match="unknown scheduler"):
        digits_gen.generate(["a seven"], params={"scheduler": "nope"})
    with pytest.raises(InputError, match="seed"):
        digits_gen.generate(["a seven"], seed=-1)


def test_generation_failure_is_a_generation_error(
    digits_gen: image.ImageGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(digits_gen.pipeline.unet, "forward", broken)
    with pytest.raises(guardrail.errors.GenerationError, match="embedded:digits.*boom"):
        digits_gen.generate(["a seven"], seed=1, params={"steps": 2})


# -- bad model sources --------------------------------------------------------------------


def _load_error(model: str) -> ModelLoadError:
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        image.load(model, progress=False)
    assert time.monotonic() - start < 30, "a bad model source must fail fast, not hang"
    assert model in str(info.value)
    return info.value


def test_missing_path(tmp_path: Path) -> None:
    error = _load_error(str(tmp_path / "no-such-model"))
    assert "does not exist" in str(error)


def test_file_instead_of_folder(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"not a model")
    assert "is a file" in str(_load_error(str(path)))


def test_folder_without_a_pipeline(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hello": "world"}))
    assert "does not hold a loadable" in str(_load_error(str(folder)))


def test_hub_id_while_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    error = _load_error("guardrail-tests/no-such-image-model")
    assert "offline" in str(error) and "--model" in str(error)


def test_unknown_embedded_model_and_options() -> None:
    assert "unknown embedded" in str(_load_error("embedded:cats"))
    with pytest.raises(ConfigError, match="unknown option"):
        image.load(progress=False, colour="red")
    with pytest.raises(ConfigError, match="invalid default"):
        image.load(progress=False, steps=0)
