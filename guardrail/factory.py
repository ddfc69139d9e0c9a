"""Build generators, watermarkers and the protective stages from the configuration."""

from __future__ import annotations

import logging
from typing import Any

from ._generator import Generator, load_generator
from ._types import Modality
from .config import Config
from .errors import GuardrailError
from .stages import Stage

__all__ = ["default_stages", "detector_stages", "generator_from_config", "init_keys",
           "key_problem", "provenance_stages", "watermark_stages", "watermarker_from_config"]

log = logging.getLogger(__name__)

# keys of [generators.<modality>] that configure loading rather than generation
_LOAD_KEYS = ("model", "device", "dtype", "batch_size")


def generator_from_config(
    config: Config,
    modality: Modality | str,
    *,
    model: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Generator:
    """Load the generator for ``modality`` as configured; arguments override the config."""
    modality = Modality.parse(modality)
    section = dict(config.generator(modality.value))
    defaults = {k: v for k, v in section.items() if k not in _LOAD_KEYS}
    options: dict[str, Any] = {
        "device": device or section.get("device") or "auto",
        "dtype": section.get("dtype") or "auto",
        "progress": progress,
        "cache_dir": str(config.cache_dir),
        "batch_size": int(section.get("batch_size", 4)),
        "defaults": defaults,
    }
    name = model or section.get("model") or None
    log.info("loading %s model %s", modality.value, name or "(embedded default)")
    return load_generator(modality, name, **options)


def default_stages(config: Config, generator: Generator) -> list[Stage]:
    """The protective stages that ``config`` asks for around ``generator``: detectors,
    watermark + self-check, C2PA signing - what :class:`~guardrail.Guard` runs when it is
    given no ``stages``, and what ``guardrail generate`` runs.

    A stage that cannot be built here (no key file, a generator whose model cannot carry a
    text watermark) is still returned, as a stand-in that is recorded as ``skipped`` with
    the reason, so its slot's policy applies: a guard is never unprotected in silence.
    """
    return [*detector_stages(config, generator), *watermark_stages(config, generator),
            *provenance_stages(config)]


#: Image schemes that take ``[watermark.image] copy_check``.
COPY_CHECKED = ("guardrail-image-v2",)


def watermarker_from_config(config: Config, modality: Modality | str, *,
                            generator: Generator | None = None, scheme: str | None = None,
                            fpr: float | None = None, key: bytes | None = None) -> Any:
    """The configured watermarker for ``modality`` (raises KeyFileError without a key).

    ``scheme`` and ``fpr`` override the configured scheme and false-positive rate, ``key``
    the configured watermark key (the robustness lab's runs under other keys).

    Text watermarks need the generating model's tokenizer and vocabulary size: from
    ``generator`` (which must expose ``tokenizer`` and ``model``).
    """
    from .keys import load_secret
    from .watermark import registry

    modality = Modality.parse(modality)
    wm_cfg = config.section("watermark")
    name = scheme or wm_cfg[f"{modality.value}_scheme"]
    key = load_secret(config.watermark_key_file) if key is None else key
    options: dict[str, Any] = {}
    if modality is Modality.TEXT:
        tokenizer = getattr(generator, "tokenizer", None)
        model = getattr(generator, "model", None)
        if tokenizer is None or model is None:
            from .errors import DependencyError

            raise DependencyError("a transformers text generator", "text",
                                  purpose="generation-time text watermarks (the generator "
                                          "must expose .tokenizer and .model)")
        options.update(dict(wm_cfg["text"]), tokenizer=tokenizer,
                       tokenizer_id=generator.info.model_id,
                       vocab_size=model.config.get_text_config().vocab_size)
    elif name in COPY_CHECKED:
        options["copy_check"] = wm_cfg["image"]["copy_check"]
    rate = float(wm_cfg[f"{modality.value}_fpr"]) if fpr is None else float(fpr)
    return registry.build(name, key=key, fpr=rate, **options)


def detector_stages(config: Config, generator: Generator) -> list[Stage]:
    """The output check that records synthetic-media detector scores for the generator's
    modality (``[detectors] guard_outputs``); none when no detector is configured for it.

    A configured detector that cannot be built still runs as a stand-in whose result says
    "not performed" and why, so the report shows it could not run.
    """
    from .detectors import registry
    from .detectors.stage import DetectorStage

    settings = registry.settings(config)
    modality = Modality.parse(generator.modality)
    if not settings["guard_outputs"] or not settings.get(modality.value):
        return []
    text_generator = generator if modality is Modality.TEXT else None
    detectors = registry.build_all(config, [modality], text_generator=text_generator)
    return [DetectorStage(detectors)]


def provenance_stages(config: Config) -> list[Stage]:
    """The C2PA signing stage, as configured (it is skipped, with the reason, when no
    signing key is available; ConfigError for invalid settings)."""
    from .provenance.stages import ProvenanceStage

    if not config.section("provenance")["enabled"]:
        return []
    stage = ProvenanceStage.from_config(config)
    return [stage] if stage is not None else []


def watermark_stages(config: Config, generator: Generator) -> list[Stage]:
    """Watermark + self-check stages for ``generator``'s modality, as configured.

    When they cannot be built (no key file, a missing package), stand-ins are returned that
    are recorded as ``skipped`` with the reason, so the configured policy still applies.
    """
    from .errors import DependencyError, KeyFileError
    from .watermark.stages import UnavailableStage, WatermarkSelfCheck, WatermarkStage

    if not config.section("watermark")["enabled"]:
        return []
    modality = Modality.parse(generator.modality)
    try:
        wm = watermarker_from_config(config, modality, generator=generator)
    except (KeyFileError, DependencyError) as exc:
        reason = f"watermark unavailable: {exc}"
        return [UnavailableStage("watermark", reason, modalities=[modality]),
                UnavailableStage("self_check", reason, modalities=[modality])]
    return [WatermarkStage(wm),
            WatermarkSelfCheck(wm, unverifiable_text=str(config.policy["unverifiable_text"]))]


def key_problem(config: Config) -> tuple[str, GuardrailError] | None:
    """The first key file that an enabled protective stage needs and cannot use, as
    ``(slot, error)``; ``None`` when every one is in place. Cheap: run it before loading a
    model, as ``guardrail generate`` does.

    Checked: the watermark key (``[watermark] enabled``) and the C2PA signing certificate
    and key (``[provenance] enabled``). The error is a :class:`~guardrail.errors.KeyFileError`
    (or :class:`~guardrail.errors.CertificateError`) whose message says how to fix it
    (``guardrail keys init``, the config key, or disabling the stage), or a
    :class:`~guardrail.errors.ConfigError` for unusable ``[provenance]`` settings. A missing
    optional package is not a key problem: the stage is then skipped with the reason, under
    its policy, as :func:`default_stages` documents.
    """
    from .errors import CertificateError, DependencyError, KeyFileError
    from .keys import load_secret

    if config.section("watermark")["enabled"]:
        try:
            load_secret(config.watermark_key_file)
        except KeyFileError as exc:
            return "watermark", KeyFileError(
                f"outputs are watermarked ([watermark] enabled) but {exc} (or set "
                "[watermark] enabled = false)")
    if config.section("provenance")["enabled"]:
        try:
            from .provenance.settings import ProvenanceSettings

            ProvenanceSettings.from_config(config).signer()
        except (DependencyError, ImportError):
            return None
        except CertificateError as exc:
            return "provenance", exc
        except KeyFileError as exc:
            return "provenance", KeyFileError(
                f"outputs are signed with Content Credentials ([provenance] enabled) but "
                f"{exc} (or set [provenance] enabled = false)")
        except GuardrailError as exc:
            return "provenance", exc
    return None


def init_keys(config: Config) -> list[dict[str, Any]]:
    """Create every missing key file named by ``config`` (mode 0600); never overwrite one.

    The prompt-hashing key, the watermark key and the development C2PA signing chain.

    Returns
    -------
    list of dict
        One entry per key: ``purpose``, ``file``, public ``key_id`` and ``created``.

    Raises
    ------
    DependencyError
        The ``provenance`` extra (c2pa-python, cryptography) is not installed; the two
        secret keys are created first.
    KeyFileError
        A key file cannot be written or read, or only part of a signing chain exists.
    """
    from .keys import PROMPT_KEY_FILE, init_secret
    from .provenance.keys import init_signing_chain

    return [init_secret(config.keys_dir / PROMPT_KEY_FILE, purpose="prompt hashing (HMAC-SHA256)"),
            init_secret(config.watermark_key_file, purpose="watermarks (text, image, audio)"),
            init_signing_chain(config.keys_dir)]
