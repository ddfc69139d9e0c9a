"""Image generator: diffusers text-to-image pipelines, and an embedded toy digits model.

``load()`` is the ``image`` entry point of the ``guardrail.generators`` group.

* ``model=None`` or ``"embedded:digits"``: the embedded model that ships in
  ``generators/weights/digits`` - a tiny text-conditioned diffusion model trained on
  scikit-learn's 8x8 handwritten digits (see :mod:`generators._digits` and that folder's
  README). It only draws digits, at a native resolution of 16x16 upscaled to the
  requested size; it exists so that everything works without network access.
* a hub id or a local folder: any diffusers text-to-image pipeline (Stable Diffusion
  1.x/2.x, SDXL, SD-Turbo, ...) through :class:`diffusers.AutoPipelineForText2Image`.
  A folder saved from :class:`generators._digits.DigitsPipeline` (e.g. a retrained
  digits model) is loaded as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import numbers
import secrets
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guardrail._generator import (
    Generated,
    GenerationHooks,
    ModelInfo,
    import_optional,
    resolve_device,
)
from guardrail._types import Modality
from guardrail.errors import (
    ConfigError,
    GenerationError,
    GuardrailError,
    InputError,
    ModelLoadError,
)

from ._common import is_embedded, load_pretrained, looks_like_path, torch_dtype

__all__ = ["EMBEDDED_DIR", "EMBEDDED_MODEL", "PARAMETERS", "SCHEDULERS", "ImageGenerator", "load"]

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded:digits"
#: Where the embedded digits pipeline lives (written by ``generators.training.train_digits``).
EMBEDDED_DIR = Path(__file__).resolve().parent / "weights" / "digits"

_KIND = "diffusers text-to-image pipeline"
_TRAIN_CMD = "python -m generators.training.train_digits --out generators/weights/digits"

#: Generation parameters understood by :meth:`ImageGenerator.generate` (also accepted by
#: :func:`load` as defaults).
PARAMETERS = ("steps", "guidance_scale", "height", "width", "negative_prompt", "scheduler",
              "batch_size")
_ALIASES = {"num_inference_steps": "steps"}
_LOAD_OPTIONS = ("revision", "variant")

#: Short scheduler names; any diffusers scheduler class name is accepted too.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}

_EMBEDDED_DEFAULTS = {"steps": 50, "guidance_scale": 4.0, "height": 256, "width": 256,
                      "negative_prompt": None, "scheduler": None, "batch_size": 32}
_HUB_DEFAULTS = {"steps": 30, "guidance_scale": 7.5, "height": None, "width": None,
                 "negative_prompt": None, "scheduler": None, "batch_size": 4}
_TURBO_DEFAULTS = {"steps": 1, "guidance_scale": 0.0}


class ImageGenerator:
    """A text-to-image :class:`guardrail.Generator` around a diffusers pipeline.

    Build it with :func:`load`. Each call of :meth:`generate` returns one
    :class:`guardrail.Generated` per prompt whose ``content`` is an ``HxWx3`` ``uint8``
    RGB array and whose ``parameters`` are the parameters actually used.

    Attributes
    ----------
    modality : Modality
        Always :attr:`Modality.IMAGE`.
    info : ModelInfo
        Model id, revision (hub commit hash, or ``sha256:`` digest of the embedded
        weights), device and dtype.
    pipeline : diffusers.DiffusionPipeline
        The wrapped pipeline.
    """

    modality = Modality.IMAGE
    #: the keys of ``params`` that :meth:`generate` accepts (the guard checks them first)
    parameters = frozenset(PARAMETERS) | frozenset(_ALIASES)

    def __init__(
        self,
        pipeline: Any,
        info: ModelInfo,
        *,
        defaults: Mapping[str, Any],
        embedded: bool,
        progress: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.info = info
        self._defaults = dict(defaults)
        self._embedded = embedded
        pipeline.set_progress_bar_config(disable=not progress)

    def __repr__(self) -> str:
        return f"ImageGenerator(model={self.info.model_id!r}, device={self.info.device!r})"

    # -- parameters -------------------------------------------------------------------

    def _default_size(self) -> int:
        pipe = self.pipeline
        if self._embedded:
            return 256
        sample = getattr(pipe, "default_sample_size", None) or getattr(
            getattr(getattr(pipe, "unet", None), "config", None), "sample_size", None
        )
        factor = getattr(pipe, "vae_scale_factor", None) or 8
        return int(sample * factor) if isinstance(sample, int) else 512

    def _resolve(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(self._defaults)
        for key, value in _canonical(params or {}, InputError, "generation parameter").items():
            merged[key] = value
        steps = _int(merged["steps"], "steps", 1, 1000)
        guidance = merged["guidance_scale"]
        if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not (
            0 <= float(guidance) <= 100
        ):
            raise InputError(f"guidance_scale must be a number from 0 to 100, got {guidance!r}")
        size = self._default_size()
        height = _int(size if merged["height"] is None else merged["height"], "height", 8, 4096)
        width = _int(size if merged["width"] is None else merged["width"], "width", 8, 4096)
        if not self._embedded:
            multiple = int(getattr(self.pipeline, "vae_scale_factor", None) or 8)
            if height % multiple or width % multiple:
                raise InputError(
                    f"height and width must be multiples of {multiple} for this pipeline, "
                    f"got {height}x{width}"
                )
        negative = merged["negative_prompt"]
        if negative is not None and not isinstance(negative, str):
            raise InputError(f"negative_prompt must be a string, got {type(negative).__name__}")
        batch_size = _int(merged["batch_size"], "batch_size", 1, 4096)
        return {"steps": steps, "guidance_scale": float(guidance), "height": height,
                "width": width, "negative_prompt": negative, "scheduler": merged["scheduler"],
                "batch_size": batch_size}

    # -- generation -------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str],
        *,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        hooks: GenerationHooks | None = None,
    ) -> list[Generated]:
        """Generate one image per prompt.

        Parameters
        ----------
        prompts : sequence of str
            One image is made per prompt. They go through the pipeline together, in
            chunks of ``batch_size``. With the embedded digits model, a prompt that names
            no digit still gives an image (close to an unconditional sample).
        seed : int, optional
            Image ``i`` uses ``torch.Generator(device).manual_seed(seed + i)``, so a run
            is reproducible, the images of a batch differ, and an image does not depend
            on the chunking. ``None`` draws a random seed; the seed used for each image
            is recorded in its ``parameters["seed"]``.
        params : mapping, optional
            ``steps``, ``guidance_scale``, ``height``, ``width``, ``negative_prompt``,
            ``scheduler`` (a diffusers scheduler class name or one of
            :data:`SCHEDULERS`), ``batch_size``. Missing ones take the defaults given to
            :func:`load` (embedded: 50 steps, guidance 4, 256x256; hub: 30 steps,
            guidance 7.5, the pipeline's native size; ``*turbo*`` models: 1 step,
            guidance 0).
        hooks : GenerationHooks, optional
            Ignored: its members are text-generation hooks. Images are watermarked by
            the guard after generation.

        Returns
        -------
        list of Generated
            ``content`` is an ``HxWx3`` ``uint8`` RGB array.

        Raises
        ------
        InputError
            For unknown or invalid parameters.
        GenerationError
            When the pipeline fails or returns nothing usable.
        """
        del hooks  # text-only hooks; see the docstring
        if isinstance(prompts, str):
            raise InputError("prompts must be a sequence of strings, not one string")
        prompts = list(prompts)
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise InputError(f"every prompt must be a string, got {type(prompt).__name__}")
        if not prompts:
            return []
        used = self._resolve(params)
        if seed is None:
            seed = secrets.randbits(31)
        elif (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
              or not 0 <= seed <= 2**63 - 1 - len(prompts)):
            raise InputError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
        seed = int(seed)

        torch = import_optional("torch", "image", purpose="image generation")
        device = self.info.device
        generator_device = "cuda" if device.startswith("cuda") else "cpu"
        pipe = self.pipeline
        original_scheduler = pipe.scheduler
        if used["scheduler"] is not None:
            pipe.scheduler = _make_scheduler(used["scheduler"], original_scheduler)
        scheduler_name = type(pipe.scheduler).__name__
        results: list[Generated] = []
        try:
            step = used["batch_size"]
            for start in range(0, len(prompts), step):
                chunk = prompts[start:start + step]
                generators = [
                    torch.Generator(generator_device).manual_seed(seed + start + i)
                    for i in range(len(chunk))
                ]
                images = self._call(chunk, generators, used)
                for i, image in enumerate(images):
                    parameters = {
                        "steps": used["steps"],
                        "guidance_scale": used["guidance_scale"],
                        "height": int(image.shape[0]),
                        "width": int(image.shape[1]),
                        "negative_prompt": used["negative_prompt"],
                        "scheduler": scheduler_name,
                        "seed": seed + start + i,
                    }
                    results.append(Generated(content=image, parameters=parameters))
        finally:
            pipe.scheduler = original_scheduler
        return results

    def _call(self, prompts: list[str], generators: list[Any], used: Mapping[str, Any]) -> list:
        kwargs: dict[str, Any] = {
            "num_inference_steps": used["steps"],
            "guidance_scale": used["guidance_scale"],
            "height": used["height"],
            "width": used["width"],
            "generator": generators,
            "output_type": "np",
        }
        if used["negative_prompt"] is not None:
            kwargs["negative_prompt"] = [used["negative_prompt"]] * len(prompts)
        try:
            output = self.pipeline(prompts, **kwargs)
        except GuardrailError:
            raise
        except Exception as exc:  # every pipeline failure becomes one error type
            raise GenerationError(
                f"image generation with {self.info.model_id!r} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        images = getattr(output, "images", None)
        if images is None or len(images) != len(prompts):
            got = "nothing" if images is None else f"{len(images)} images"
            raise GenerationError(
                f"image generation with {self.info.model_id!r} returned {got} "
                f"for {len(prompts)} prompts"
            )
        flagged = getattr(output, "nsfw_content_detected", None)
        if flagged and any(flagged):
            logger.warning(
                "the pipeline's own safety checker replaced %d of %d images with black images",
                sum(bool(f) for f in flagged), len(flagged),
            )
        return [self._to_uint8(image) for image in images]

    def _to_uint8(self, image: Any) -> np.ndarray:
        array = np.asarray(image)
        if array.size == 0:
            raise GenerationError(f"image generation with {self.info.model_id!r} returned an empty image")
        if not np.all(np.isfinite(array)):
            raise GenerationError(
                f"image generation with {self.info.model_id!r} produced NaN/inf pixels "
                "(with float16 this is often a numerical overflow; try dtype='float32')"
            )
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise GenerationError(f"unexpected image shape {array.shape} from the pipeline")
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        elif array.shape[2] == 4:
            array = array[:, :, :3]
        if array.dtype != np.uint8:
            array = np.clip(np.rint(array.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(array)


# -- loading ------------------------------------------------------------------------------


def load(
    model: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = True,
    defaults: Mapping[str, Any] | None = None,
    cache_dir: Any = None,
    **options: Any,
) -> ImageGenerator:
    """Load an image generator.

    Parameters
    ----------
    model : str, optional
        ``None`` or ``"embedded:digits"`` for the embedded toy digits model (native
        resolution 16x16, rendered at 256x256 by default; it only draws digits), or a
        hub id / local folder of a diffusers text-to-image pipeline.
    device : str, optional
        ``cpu``, ``cuda``, ``cuda:1``...; default: CUDA when present, else CPU.
    dtype : str, optional
        ``auto`` (default: float16 on CUDA, float32 on CPU), ``float32``, ``float16``,
        ``bfloat16``.
    progress : bool
        Show diffusers' progress bar while sampling.
    defaults : mapping, optional
        Generation parameter defaults (as in the ``[generators.image]`` config section);
        explicit ``**options`` win.
    cache_dir : path, optional
        Accepted for the common generator-factory signature; diffusers keeps its own cache.
    **options
        ``revision`` and ``variant`` (e.g. ``"fp16"``) are passed to ``from_pretrained``;
        generation parameters (``steps``, ``guidance_scale``, ``height``, ``width``,
        ``negative_prompt``, ``scheduler``, ``batch_size``) set this generator's
        defaults.

    Returns
    -------
    ImageGenerator

    Raises
    ------
    ModelLoadError
        When the model cannot be loaded; the message names it and how to provide it.
        A local path that does not exist, a file, a folder without a pipeline and a hub
        id that is not cached while offline (``HF_HUB_OFFLINE=1``) all fail fast.
    ConfigError
        For unknown options, an invalid device or dtype.
    DependencyError
        When torch or diffusers is not installed.

    Notes
    -----
    SDXL pipelines are loaded with ``add_watermarker=False`` (when the pipeline class
    accepts it) and any pipeline watermarker is switched off: watermarking belongs to
    guardrail's watermark stage, which records what it embeds. A second, unrecorded
    invisible watermark from the pipeline would be invisible to the guard's records and
    could disturb its detector. The pipeline's own NSFW safety checker, where a
    pipeline has one, is left as it is.
    """
    import_optional("torch", "image", purpose="image generation")
    import_optional("diffusers", "image", purpose="image generation")
    options = {**dict(defaults or {}), **options}
    load_options = {k: options.pop(k) for k in _LOAD_OPTIONS if k in options}
    defaults_override = _canonical(options, ConfigError, "option of the image generator")
    device = resolve_device(device)
    torch_type = torch_dtype(dtype, device)

    if is_embedded(model):
        name = model or EMBEDDED_MODEL
        if name != EMBEDDED_MODEL:
            raise ModelLoadError(
                name,
                "unknown embedded image model",
                hint=f"use {EMBEDDED_MODEL!r} (or no model) or a diffusers pipeline id or folder",
            )
        with _loading_bars(progress):
            pipe = _load_embedded(torch_type)
        revision, source = _weights_digest(EMBEDDED_DIR), "embedded"
        embedded = True
    else:
        model = str(model)
        with _loading_bars(progress):
            pipe, commit = load_pretrained(model, _KIND, _load_diffusers,
                                           **{_dtype_kwarg(): torch_type}, **load_options)
        embedded = type(pipe).__name__ == "DigitsPipeline"
        source = "local" if looks_like_path(model) else "hub"
        revision = commit
        if revision is None and embedded and source == "local":
            revision = _weights_digest(Path(model).expanduser())
        _disable_pipeline_watermark(pipe)

    try:
        pipe = pipe.to(device)
    except Exception as exc:
        raise ModelLoadError(
            model or EMBEDDED_MODEL, f"could not move the pipeline to {device!r}: {exc}",
            hint="choose another device with --device",
        ) from exc

    defaults = dict(_EMBEDDED_DEFAULTS if embedded else _HUB_DEFAULTS)
    if not embedded and model is not None and "turbo" in model.lower():
        defaults.update(_TURBO_DEFAULTS)
    defaults.update(defaults_override)
    details: dict[str, Any] = {"pipeline": type(pipe).__name__, "source": source,
                               "scheduler": type(pipe.scheduler).__name__}
    if embedded:
        from ._digits import NATIVE_SIZE

        details["native_size"] = NATIVE_SIZE
        details["note"] = "toy model of handwritten digits trained on sklearn load_digits"
    info = ModelInfo(
        model_id=model or EMBEDDED_MODEL,
        revision=revision,
        device=device,
        dtype=str(torch_type).removeprefix("torch."),
        details=details,
    )
    generator = ImageGenerator(pipe, info, defaults=defaults, embedded=embedded, progress=progress)
    try:
        generator._resolve(None)
    except InputError as exc:
        raise ConfigError(f"invalid default for the image generator: {exc}") from None
    logger.info("loaded image model %s (%s) on %s", info.model_id, details["pipeline"], device)
    return generator


def _load_embedded(torch_type: Any) -> Any:
    if not (EMBEDDED_DIR / "model_index.json").is_file():
        raise ModelLoadError(
            EMBEDDED_MODEL,
            f"the embedded weights are missing from {EMBEDDED_DIR}",
            hint=f"reinstall guardrail, or recreate them with `{_TRAIN_CMD}`, "
                 "or pass a diffusers pipeline with --model",
        )
    from ._digits import DigitsPipeline

    try:
        return DigitsPipeline.from_pretrained(str(EMBEDDED_DIR), local_files_only=True,
                                              **{_dtype_kwarg(): torch_type})
    except Exception as exc:
        raise ModelLoadError(
            EMBEDDED_MODEL,
            f"the embedded weights in {EMBEDDED_DIR} could not be loaded "
            f"({type(exc).__name__}: {exc})",
            hint=f"reinstall guardrail or recreate them with `{_TRAIN_CMD}`",
        ) from exc


def _load_diffusers(name: str, **kwargs: Any) -> tuple[Any, str | None]:
    """Loader for :func:`load_pretrained`: returns the pipeline and its hub commit hash."""
    import diffusers
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    config_kwargs = {k: kwargs[k] for k in ("local_files_only", "revision") if k in kwargs}
    config, commit = DiffusionPipeline.load_config(name, return_commit_hash=True, **config_kwargs)
    class_name = config.get("_class_name", "")
    if class_name == "DigitsPipeline":
        from ._digits import DigitsPipeline

        return DigitsPipeline.from_pretrained(name, **kwargs), commit
    pipeline_class = getattr(diffusers, class_name, None)
    if pipeline_class is not None and "add_watermarker" in inspect.signature(
        pipeline_class.__init__
    ).parameters:
        # The SDXL family; AutoPipeline maps it to a text-to-image class of that family,
        # which takes the same argument.
        kwargs["add_watermarker"] = False
    return AutoPipelineForText2Image.from_pretrained(name, **kwargs), commit


def _dtype_kwarg() -> str:
    """``dtype`` for diffusers versions that deprecate ``torch_dtype``, else ``torch_dtype``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


@contextlib.contextmanager
def _loading_bars(enabled: bool) -> Iterator[None]:
    """Switch diffusers' and transformers' loading progress bars off unless ``enabled``."""
    if enabled:
        yield
        return
    from diffusers.utils import logging as diffusers_logging

    toggles = [diffusers_logging]
    try:
        from transformers.utils import logging as transformers_logging

        toggles.append(transformers_logging)
    except ImportError:  # pragma: no cover - transformers comes with the image extra
        pass
    was_enabled = [t.is_progress_bar_enabled() for t in toggles]
    for toggle in toggles:
        toggle.disable_progress_bar()
    try:
        yield
    finally:
        for toggle, was in zip(toggles, was_enabled, strict=True):
            if was:
                toggle.enable_progress_bar()


def _disable_pipeline_watermark(pipe: Any) -> None:
    if getattr(pipe, "watermark", None) is not None:
        logger.info("switching off the pipeline's own watermarker: guardrail watermarks images")
        pipe.watermark = None


def _weights_digest(directory: Path) -> str:
    """``sha256:`` digest of a pipeline folder's weights, configs and tokenizer files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel in ("README.md", "training.json") or "__pycache__" in rel:
            continue
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def _make_scheduler(name: str, current: Any) -> Any:
    import diffusers

    if not isinstance(name, str):
        raise InputError(f"scheduler must be a scheduler name, got {type(name).__name__}")
    class_name = SCHEDULERS.get(name.lower(), name)
    cls = getattr(diffusers, class_name, None)
    if cls is None or not class_name.endswith("Scheduler"):
        names = ", ".join(sorted(SCHEDULERS))
        raise InputError(f"unknown scheduler {name!r}; use one of {names} or a diffusers scheduler class name")
    try:
        return cls.from_config(current.config)
    except Exception as exc:
        raise InputError(f"scheduler {name!r} cannot be built from this pipeline's config: {exc}") from exc


def _canonical(values: Mapping[str, Any], error: type[GuardrailError], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = _ALIASES.get(key, key)
        if key not in PARAMETERS:
            allowed = ", ".join(PARAMETERS)
            raise error(f"unknown {what} {key!r}; known: {allowed}")
        out[key] = value
    return out


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
        low <= value <= high
    ):
        raise InputError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return int(value)

