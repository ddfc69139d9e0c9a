"""The text generator: the embedded SmolLM2 default, the hub-model path with a tiny
random Llama built from a config, and models that cannot be loaded."""

import json
import time
from pathlib import Path

import pytest

import guardrail
from generators.text import EMBEDDED_MODEL, _embedded_smollm2, load
from guardrail.errors import GenerationError, ModelLoadError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2():
    return load(progress=False)


def test_embedded_default_generates_with_chat_template(smollm2):
    assert isinstance(smollm2, guardrail.Generator)
    assert smollm2.info.model_id == EMBEDDED_MODEL
    assert smollm2.info.revision.startswith("gguf-sha256:")
    assert smollm2.info.device == "cpu" and smollm2.info.dtype == "bfloat16"
    assert smollm2.has_chat_template
    outs = smollm2.generate(["Name a fruit.", "Name a colour."], seed=3,
                            params={"max_new_tokens": 12})
    assert len(outs) == 2
    for out in outs:
        assert isinstance(out.content, str) and out.content.strip()
        assert 0 < out.parameters["new_tokens"] <= 12
        assert out.parameters["use_chat_template"] is True
        assert out.parameters["max_new_tokens"] == 12


def test_same_seed_same_text_different_seed_differs(smollm2):
    p = {"max_new_tokens": 16, "temperature": 1.0}
    a = smollm2.generate(["Tell me about owls."], seed=11, params=p)[0].content
    b = smollm2.generate(["Tell me about owls."], seed=11, params=p)[0].content
    c = smollm2.generate(["Tell me about owls."], seed=12, params=p)[0].content
    assert a == b
    assert a != c


def test_converted_copy_is_cached(smollm2):
    from guardrail import Config

    path, revision = _embedded_smollm2(Config.load().cache_dir)
    marker = Path(path) / "guardrail-conversion.json"
    before = marker.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = load(progress=False)
    assert time.perf_counter() - t0 < 20  # the GGUF is not dequantised again
    assert marker.stat().st_mtime_ns == before
    assert json.loads(marker.read_text())["revision"] == revision == again.info.revision


def test_embedded_copy_is_stored_in_the_dtype_it_is_loaded_in(smollm2):
    import torch

    from guardrail import Config

    path, _ = _embedded_smollm2(Config.load().cache_dir, dtype="bfloat16")
    marker = json.loads((Path(path) / "guardrail-conversion.json").read_text())
    assert marker["dtype"] == "bfloat16" and "bfloat16" in Path(path).name
    assert next(smollm2.model.parameters()).dtype == torch.bfloat16
    # a float32 copy lives in another folder: an old float32 copy is never read as bf16
    assert "float32" not in Path(path).name


def test_auto_dtype_is_bfloat16_only_for_the_embedded_model_on_cpu(monkeypatch):
    import generators.text as gt

    seen = {}

    def fake_embedded(cache_dir, *, dtype):
        seen["dtype"] = dtype
        raise RuntimeError("stop")

    monkeypatch.setattr(gt, "_embedded_smollm2", fake_embedded)
    for dtype, expected in ((None, "bfloat16"), ("auto", "bfloat16"), ("float32", "float32")):
        with pytest.raises(RuntimeError, match="stop"):
            load(dtype=dtype, device="cpu", progress=False)
        assert seen["dtype"] == expected


def test_watermarking_hook_reaches_model_generate(smollm2):
    from transformers import WatermarkDetector, WatermarkingConfig

    wm = WatermarkingConfig(bias=4.0, seeding_scheme="lefthash", context_width=1)
    hooks = guardrail.GenerationHooks(watermarking_config=wm)
    params = {"max_new_tokens": 48, "temperature": 1.0}
    marked = smollm2.generate(["Describe a city at night."], seed=5, params=params, hooks=hooks)[0]
    plain = smollm2.generate(["Describe a city at night."], seed=5, params=params)[0]
    det = WatermarkDetector(model_config=smollm2.model.config, device="cpu",
                            watermarking_config=wm)
    tok = smollm2.tokenizer

    def z(text):
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        return float(det(ids, return_dict=True).z_score[0])

    assert z(marked.content) > 4.0 > z(plain.content)


def test_unknown_generation_parameter_is_rejected(smollm2):
    with pytest.raises(GenerationError, match="unknown text generation parameter"):
        smollm2.generate(["x"], params={"max_tokens_typo": 3})


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2):
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer, saved like a hub model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = smollm2.tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hub_model_path_with_tiny_random_llama(tiny_llama_dir):
    gen = load(str(tiny_llama_dir), device="cpu", progress=False, batch_size=1)
    assert gen.info.model_id == str(tiny_llama_dir)
    assert gen.info.revision.startswith("sha256:")
    assert gen.info.details["architecture"] == "LlamaForCausalLM"
    outs = gen.generate(["a", "b c"], seed=1, params={"max_new_tokens": 5, "min_new_tokens": 5})
    assert len(outs) == 2
    assert all(o.parameters["new_tokens"] == 5 for o in outs)
    assert [o.parameters["batch_index"] for o in outs] == [0, 1]  # batch_size=1: two batches


def test_tiny_model_without_chat_template_uses_raw_prompt(tiny_llama_dir):
    gen = load(str(tiny_llama_dir), progress=False)
    gen.tokenizer.chat_template = None
    assert gen.format_prompt("plain words") == "plain words"


def test_models_that_cannot_be_loaded_fail_fast(tmp_path, monkeypatch):
    (tmp_path / "file.bin").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    vit = tmp_path / "vit"
    from transformers import ViTConfig

    ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
              intermediate_size=8).save_pretrained(vit)
    cases = [
        (str(tmp_path / "nope"), "does not exist"),
        (str(tmp_path / "file.bin"), "is a file, not a model directory"),
        (str(tmp_path / "empty"), "no config.json"),
        (str(vit), "does not hold a loadable transformers causal language model"),
        ("someone/not-cached-model", "offline mode is on"),
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model, message in cases:
        t0 = time.perf_counter()
        with pytest.raises(ModelLoadError, match=message) as info:
            load(model, progress=False)
        assert model in str(info.value) and "how to fix" in str(info.value)
        assert time.perf_counter() - t0 < 30, f"{model} took too long: a hang, not a fast failure"


def test_unknown_embedded_name():
    with pytest.raises(ModelLoadError, match="unknown embedded text model"):
        load("embedded:gpt5")
