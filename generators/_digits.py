"""The embedded toy image model: a text-conditioned pixel diffusion model of handwritten digits.

No general text-to-image model can be fetched on a machine without network access, so
guardrail ships a small one that it can train itself (``generators/training/
train_digits.py``) on scikit-learn's ``load_digits()`` data (1797 grey 8x8 digits that
ship inside scikit-learn). It is built from real diffusers and transformers parts, and
is sampled through the same diffusers machinery as a hub model:

* a :class:`~diffusers.UNet2DConditionModel` that denoises 1-channel 16x16 images (the
  8x8 digits upsampled), conditioned by cross-attention on
* a tiny :class:`~transformers.CLIPTextModel` trained jointly with the UNet, fed by
* a word-level :class:`~transformers.CLIPTokenizer` whose BPE vocabulary and merges are
  built here from the training prompts' words (every known word is one token), and
* a :class:`~diffusers.DDIMScheduler` (trained with a 1000-step cosine DDPM schedule),
  with classifier-free guidance (10 % empty prompts during training).

:class:`DigitsPipeline` registers these modules, so ``DigitsPipeline.from_pretrained(dir)``
loads everything through diffusers' ``model_index.json`` machinery.

This module also holds the helpers used to check the model honestly: a scikit-learn
classifier trained on the same digits, and the conversion of rendered RGB images back to
sklearn's 8x8, 0..16 format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

__all__ = [
    "DIGIT_WORDS",
    "NATIVE_SIZE",
    "PROMPT_TEMPLATES",
    "DigitsPipeline",
    "classify_digits",
    "digit_classifier",
    "make_word_tokenizer",
    "prompt_digit",
    "prompt_vocabulary",
    "random_prompt",
    "to_sklearn_digits",
]

#: Side of the square images the UNet works on (the sklearn digits are 8x8).
NATIVE_SIZE = 16

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Training prompt templates; ``{w}`` is the digit as a word, ``{n}`` as a numeral and
#: ``{a}`` the article ("a" or "an") that fits the word.
PROMPT_TEMPLATES = (
    "a handwritten digit {w}",
    "a handwritten digit {n}",
    "the number {n}",
    "the number {w}",
    "digit {n}",
    "digit {w}",
    "handwritten {n}",
    "handwritten {w}",
    "{a} {w}",
    "the digit {w}",
    "the digit {n}",
    "{a} handwritten {w}",
    "number {w}",
    "number {n}",
    "an image of the digit {n}",
    "a picture of the number {w}",
    "a drawing of a {n}",
    "a handwritten number {w}",
    "the numeral {n}",
    "{n}",
    "{w}",
)

_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_WORD_RE = re.compile(r"[a-z]+|[0-9]")


def _fill(template: str, digit: int) -> str:
    word = DIGIT_WORDS[digit]
    article = "an" if word[0] in "aeiou" else "a"
    return template.format(w=word, n=str(digit), a=article)


def random_prompt(digit: int, rng: np.random.Generator) -> str:
    """A training prompt for ``digit`` drawn from :data:`PROMPT_TEMPLATES`."""
    return _fill(PROMPT_TEMPLATES[int(rng.integers(len(PROMPT_TEMPLATES)))], digit)


def prompt_vocabulary() -> list[str]:
    """Every word used by the training prompts, sorted."""
    words: set[str] = set()
    for digit in range(10):
        for template in PROMPT_TEMPLATES:
            words.update(_WORD_RE.findall(_fill(template, digit)))
    return sorted(words)


def prompt_digit(prompt: str) -> int | None:
    """The digit a prompt asks for (first digit word or numeral), or ``None``."""
    for token in _WORD_RE.findall(prompt.lower()):
        if token.isdigit():
            return int(token)
        if token in DIGIT_WORDS:
            return DIGIT_WORDS.index(token)
    return None


def make_word_tokenizer(words: Sequence[str], directory: str | Path, *, max_length: int = 16) -> Any:
    """Write a word-level CLIP BPE tokenizer for ``words`` into ``directory`` and load it.

    A :class:`~transformers.CLIPTokenizer` is a byte-level BPE tokenizer described by
    ``vocab.json`` and ``merges.txt``. This builds both so that every word of ``words``
    becomes one token (each word gets the chain of merges that builds it left to right;
    the result is checked), while other lower-case words and numerals still tokenize,
    into characters. Characters outside ``[a-z0-9]`` map to the unknown token.

    Parameters
    ----------
    words : sequence of str
        Lower-case ASCII words (``[a-z]+``) or single numerals.
    directory : str or Path
        Where ``vocab.json`` and ``merges.txt`` are written (created if missing).
    max_length : int
        ``model_max_length`` of the tokenizer (prompts are padded/truncated to it).

    Returns
    -------
    transformers.CLIPTokenizer
    """
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab: dict[str, int] = {}
    for token in [*_SPECIAL, *chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words)):
        if not re.fullmatch(r"[a-z]+|[0-9]", word):
            raise ValueError(f"tokenizer words must be lower-case ASCII or one numeral: {word!r}")
        pieces = [*word[:-1], word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            if (left, right) not in merges:
                merges.append((left, right))
            left = left + right
            vocab.setdefault(left, len(vocab))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=0), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (directory / "merges.txt").write_text(merges_text, encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(str(directory), model_max_length=max_length)
    for word in words:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:  # pragma: no cover - a construction bug, not an input problem
            raise RuntimeError(f"word {word!r} did not become one token: {ids}")
    return tokenizer


class DigitsPipeline(DiffusionPipeline):
    """Text-to-image pipeline of the embedded toy digits model.

    The model's native resolution is tiny (:data:`NATIVE_SIZE` x :data:`NATIVE_SIZE`
    grey pixels); samples are upscaled with a bicubic resampler to ``height`` x ``width``
    and rendered as dark ink on white paper, as RGB.

    It only knows handwritten digits. A prompt that names no digit (no ``zero`` ..
    ``nine`` or ``0`` .. ``9``) still yields an image: its unknown words carry no
    trained meaning, so the sample is close to an unconditional one (some digit-like
    scribble).

    Parameters
    ----------
    unet : diffusers.UNet2DConditionModel
        1-channel pixel-space denoiser with cross-attention.
    scheduler : diffusers.SchedulerMixin
        Noise scheduler (a DDIM scheduler by default).
    text_encoder : transformers.CLIPTextModel
        Tiny text encoder whose last hidden states are the cross-attention context.
    tokenizer : transformers.CLIPTokenizer
        Word-level tokenizer, see :func:`make_word_tokenizer`.
    """

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet: Any, scheduler: Any, text_encoder: Any, tokenizer: Any) -> None:
        super().__init__()
        self.register_modules(
            unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer
        )

    def encode_prompt(self, prompts: Sequence[str], device: torch.device) -> torch.Tensor:
        """Token ids -> text encoder last hidden states, shape ``(B, L, D)``."""
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        return self.text_encoder(ids).last_hidden_state

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        *,
        negative_prompt: str | Sequence[str] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 4.0,
        height: int = 256,
        width: int = 256,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple[Any]:
        """Sample one image per prompt.

        Parameters
        ----------
        prompt : str or sequence of str
            What to draw, e.g. ``"a handwritten digit seven"``.
        negative_prompt : str or sequence of str, optional
            Guidance pushes away from it (default: the empty prompt).
        num_inference_steps : int
            Denoising steps.
        guidance_scale : float
            Classifier-free guidance weight; ``<= 1`` disables guidance.
        height, width : int
            Size of the returned images (the native sample is upscaled to it).
        generator : torch.Generator or list of torch.Generator, optional
            One generator per prompt makes each image reproducible on its own.
        output_type : {"np", "pil", "pt"}
            ``np``: float array ``(B, H, W, 3)`` in ``[0, 1]``; ``pil``: PIL images;
            ``pt``: tensor ``(B, 3, H, W)`` in ``[0, 1]``.
        return_dict : bool
            Return an :class:`ImagePipelineOutput` rather than a tuple.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts)
        if negative_prompt is None:
            negatives = [""] * batch
        elif isinstance(negative_prompt, str):
            negatives = [negative_prompt] * batch
        else:
            negatives = list(negative_prompt)
            if len(negatives) != batch:
                raise ValueError("negative_prompt must be one string or one per prompt")
        device = self._execution_device
        dtype = self.unet.dtype
        guided = guidance_scale > 1.0

        context = self.encode_prompt(prompts, device)
        if guided:
            context = torch.cat([self.encode_prompt(negatives, device), context])
        context = context.to(dtype)

        size = self.unet.config.sample_size
        shape = (batch, self.unet.config.in_channels, size, size)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        sample = sample * self.scheduler.init_noise_sigma
        for t in self.progress_bar(self.scheduler.timesteps):
            model_in = torch.cat([sample, sample]) if guided else sample
            model_in = self.scheduler.scale_model_input(model_in, t)
            noise = self.unet(model_in, t, encoder_hidden_states=context).sample
            if guided:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            sample = self.scheduler.step(noise, t, sample, generator=generator).prev_sample

        # model space: -1 = paper, +1 = ink; rendered: dark ink on white paper.
        ink = (sample.float() / 2 + 0.5).clamp(0, 1)
        if (height, width) != (size, size):
            ink = F.interpolate(ink, size=(height, width), mode="bicubic", align_corners=False)
        image = (1.0 - ink.clamp(0, 1)).repeat(1, 3, 1, 1)
        if output_type == "pt":
            images: Any = image
        else:
            images = image.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def to_sklearn_digits(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Turn rendered images back into scikit-learn's digits format.

    Parameters
    ----------
    images : array ``(N, H, W, 3)`` uint8 or sequence of ``HxWx3`` uint8 arrays
        Dark ink on light paper, as :class:`DigitsPipeline` renders them.

    Returns
    -------
    numpy.ndarray
        ``(N, 64)`` float array on sklearn's 0 (paper) .. 16 (ink) scale, from area
        averaging to 8x8.
    """
    from PIL import Image

    rows = []
    for image in images:
        grey = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L")
        small = np.asarray(grey.resize((8, 8), Image.Resampling.BOX), dtype=np.float64)
        rows.append((255.0 - small) / 255.0 * 16.0)
    return np.stack(rows).reshape(len(rows), 64)


@lru_cache(maxsize=1)
def digit_classifier() -> Any:
    """An SVC trained on all of ``sklearn.datasets.load_digits()`` (about 99 % accurate)."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    data = load_digits()
    return SVC(gamma=0.001, C=10.0).fit(data.data, data.target)


def classify_digits(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Predict the digit shown in each rendered image with :func:`digit_classifier`."""
    return digit_classifier().predict(to_sklearn_digits(images))
