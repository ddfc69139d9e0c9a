"""Configuration: one TOML file with documented defaults, environment overrides and flags.

The defaults ship as package data (``guardrail/defaults.toml``, read relative to this
module). Precedence, lowest first: defaults, config file, ``GUARDRAIL_<SECTION>__<KEY>``
environment variables, explicit overrides (command-line flags).

Examples
--------
>>> cfg = Config.load(overrides={"policy": {"max_prompt_chars": 500}})
>>> cfg.policy["max_prompt_chars"]
500
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["COPY_CHECKS", "Config", "Limits", "ON_FAIL_POLICIES", "SERVE_SCOPES"]

ON_FAIL_POLICIES = ("block", "flag", "continue")
#: ``[watermark.image] copy_check``: guardrail-image-v2's copy checks (docs/WATERMARKS.md).
COPY_CHECKS = ("standard", "strict")
ENV_PREFIX = "GUARDRAIL_"
# Environment variables that are not config keys.
#: variables of the test suite and CI (``GUARDRAIL_TEST_*``) are not config keys either
_RESERVED_ENV_PREFIX = "GUARDRAIL_TEST_"
_RESERVED_ENV = {"GUARDRAIL_CONFIG", "GUARDRAIL_OFFLINE", "GUARDRAIL_C2PA_FIXTURES",
                 "GUARDRAIL_WORDNET_DIR", "GUARDRAIL_STORE_URL", "GUARDRAIL_AUDIOSEAL_GENERATOR",
                 "GUARDRAIL_AUDIOSEAL_DETECTOR"}


@functools.lru_cache(maxsize=1)
def _default_text() -> str:
    return resources.files("guardrail").joinpath("defaults.toml").read_text(encoding="utf-8")


def _defaults() -> dict[str, Any]:
    return tomllib.loads(_default_text())


def _merge(base: dict[str, Any], update: Mapping[str, Any], defaults: Mapping[str, Any],
           where: str, source: str) -> None:
    """Merge ``update`` into ``base`` in place, checking keys and types against ``defaults``."""
    for key, value in update.items():
        path = f"{where}.{key}" if where else key
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "(none)"
            raise ConfigError(f"{source}: unknown setting {path!r}; known here: {known}")
        expected = defaults[key]
        if isinstance(expected, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {path!r} must be a table, got {type(value).__name__}")
            _merge(base[key], value, expected, path, source)
            continue
        base[key] = _coerce(value, expected, path, source)


def _coerce(value: Any, expected: Any, path: str, source: str) -> Any:
    kind = type(expected)
    if isinstance(value, str) and kind is not str:
        # environment variables arrive as text
        try:
            if kind is bool:
                low = value.strip().lower()
                if low in {"1", "true", "yes", "on"}:
                    return True
                if low in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            if kind is list:
                parsed = json.loads(value) if value.strip().startswith("[") else [
                    v.strip() for v in value.split(",") if v.strip()]
                return list(parsed)
            return kind(value)
        except (ValueError, json.JSONDecodeError):
            raise ConfigError(
                f"{source}: {path!r} must be {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"{source}: {path!r} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _RESERVED_ENV or name.startswith(
                _RESERVED_ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"environment variable {name}: expected GUARDRAIL_<SECTION>__<KEY> "
                "(double underscore between section and key)")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def default_config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$GUARDRAIL_CONFIG`` or ``$XDG_CONFIG_HOME/guardrail/config.toml`` if it exists."""
    environ = os.environ if environ is None else environ
    if environ.get("GUARDRAIL_CONFIG"):
        return Path(environ["GUARDRAIL_CONFIG"]).expanduser()
    base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = base / "guardrail" / "config.toml"
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class Config:
    """Validated configuration. Build it with :meth:`Config.load`."""

    data: Mapping[str, Any]
    source: str | None = None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Read defaults, then ``path`` (or the default config file), env vars, overrides.

        Raises
        ------
        ConfigError
            For a missing or malformed file, an unknown key or a value of the wrong type.
        """
        environ = os.environ if environ is None else environ
        defaults = _defaults()
        data = copy.deepcopy(defaults)
        file = Path(path).expanduser() if path is not None else default_config_file(environ)
        if file is not None:
            if not file.is_file():
                raise ConfigError(f"config file {str(file)!r} does not exist")
            try:
                user = tomllib.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read config file {str(file)!r}: {exc}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {str(file)!r} is not valid TOML: {exc}") from None
            _merge(data, user, defaults, "", str(file))
            _resolve_relative_paths(data, file.parent)
        _merge(data, _env_overrides(environ), defaults, "", "environment")
        if overrides:
            _merge(data, overrides, defaults, "", "flags")
        cfg = cls(data=data, source=str(file) if file else None)
        cfg._validate()
        return cfg

    # -- validation ---------------------------------------------------------------------
    def _validate(self) -> None:
        pol = self.data["policy"]
        if pol["min_prompt_chars"] < 1:
            raise ConfigError("policy.min_prompt_chars must be at least 1")
        if pol["max_prompt_chars"] < pol["min_prompt_chars"]:
            raise ConfigError("policy.max_prompt_chars must be >= policy.min_prompt_chars")
        wm = self.data["watermark"]
        for name in ("text_fpr", "image_fpr", "audio_fpr"):
            if not 0 < wm[name] < 1:
                raise ConfigError(f"watermark.{name} must be between 0 and 1, got {wm[name]}")
        for mod in ("text", "image", "audio"):
            also = wm[f"{mod}_also_detect"]
            if not isinstance(also, list) or not all(isinstance(x, str) and x for x in also):
                raise ConfigError(f"watermark.{mod}_also_detect must be a list of scheme names, "
                                  f"got {also!r}")
        if wm["image"]["copy_check"] not in COPY_CHECKS:
            raise ConfigError(f"watermark.image.copy_check = {wm['image']['copy_check']!r}; "
                              f"choose {' or '.join(COPY_CHECKS)}")
        _validate_audit(self.data["audit"])
        _validate_serve(self.data["serve"])
        Limits.from_mapping(self.data["limits"])
        if pol["unverifiable_text"] not in ON_FAIL_POLICIES:
            raise ConfigError(f"policy.unverifiable_text = {pol['unverifiable_text']!r}; choose one of "
                              f"{', '.join(ON_FAIL_POLICIES)}")
        for stage, value in pol["on_fail"].items():
            if value not in ON_FAIL_POLICIES:
                raise ConfigError(
                    f"policy.on_fail.{stage} = {value!r}; choose one of {', '.join(ON_FAIL_POLICIES)}")

    # -- accessors ----------------------------------------------------------------------
    def section(self, name: str) -> Mapping[str, Any]:
        return self.data[name]

    @property
    def policy(self) -> Mapping[str, Any]:
        return self.data["policy"]

    def on_fail(self, stage: str) -> str:
        return self.data["policy"]["on_fail"].get(stage, "block")

    def generator(self, modality: str) -> Mapping[str, Any]:
        return self.data["generators"][modality]

    @property
    def data_dir(self) -> Path:
        value = self.data["paths"]["data_dir"]
        if value:
            return Path(value).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "guardrail"

    @property
    def keys_dir(self) -> Path:
        value = self.data["paths"]["keys_dir"]
        return Path(value).expanduser() if value else self.data_dir / "keys"

    @property
    def cache_dir(self) -> Path:
        value = self.data["paths"]["cache_dir"]
        if value:
            return Path(value).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "guardrail"

    @property
    def demo_dir(self) -> Path:
        value = self.data["paths"]["demo_dir"]
        return Path(value).expanduser() if value else self.data_dir / "demo"

    @property
    def watermark_key_file(self) -> Path:
        value = self.data["watermark"]["key_file"]
        return Path(value).expanduser() if value else self.keys_dir / "watermark.key"

    @property
    def store_url(self) -> str:
        url = self.data["store"]["url"]
        return url or f"sqlite:///{self.data_dir / 'guardrail.db'}"

    @property
    def store_prompts(self) -> bool:
        return bool(self.data["store"]["store_prompts"])

    @property
    def limits(self) -> Limits:
        """The ``[limits]`` section as a :class:`Limits`."""
        return Limits.from_config(self)


def _limit_default(name: str) -> Any:
    return dataclasses.field(default=_defaults()["limits"][name])


@dataclass(frozen=True)
class Limits:
    """What guardrail reads from a file it is asked to check: the ``[limits]`` section.

    ``Limits()`` holds the documented defaults (``guardrail/defaults.toml``);
    :meth:`from_config` the configured values. Every value must be positive (and
    ``min_audio_rate <= max_audio_rate``).

    Attributes
    ----------
    max_file_bytes : int
        Larger files are refused before they are read.
    max_image_pixels, max_image_side : int
        Width x height, and the longer side, read from the image header before decoding.
    max_audio_seconds : float
        Duration (frames / sample rate) from the audio header.
    min_audio_rate, max_audio_rate : int
        Accepted sample rates in Hz.
    max_audio_channels : int
        Channels.
    max_audio_samples : int
        Frames x channels: what decoding allocates (4 bytes each).
    max_text_chars : int
        Characters of a text.
    max_check_seconds : float
        Wall-clock limit of a check where it can be enforced (reading Content Credentials).

    Examples
    --------
    >>> Limits().max_audio_rate
    192000
    >>> Limits(max_text_chars=10).max_text_chars
    10
    """

    max_file_bytes: int = _limit_default("max_file_bytes")
    max_image_pixels: int = _limit_default("max_image_pixels")
    max_image_side: int = _limit_default("max_image_side")
    max_audio_seconds: float = _limit_default("max_audio_seconds")
    min_audio_rate: int = _limit_default("min_audio_rate")
    max_audio_rate: int = _limit_default("max_audio_rate")
    max_audio_channels: int = _limit_default("max_audio_channels")
    max_audio_samples: int = _limit_default("max_audio_samples")
    max_text_chars: int = _limit_default("max_text_chars")
    max_check_seconds: float = _limit_default("max_check_seconds")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = float if f.type in ("float", float) else int
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    kind is int and not isinstance(value, int)):
                raise ConfigError(f"limits.{f.name} must be {kind.__name__}, got "
                                  f"{type(value).__name__} {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"limits.{f.name} must be positive, got {value!r}")
        if self.min_audio_rate > self.max_audio_rate:
            raise ConfigError(f"limits.min_audio_rate ({self.min_audio_rate}) must be <= "
                              f"limits.max_audio_rate ({self.max_audio_rate})")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Limits:
        """Limits from a ``[limits]`` table (missing keys keep their defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting 'limits.{unknown[0]}'; known here: "
                              f"{', '.join(sorted(known))}")
        return cls(**dict(values))

    @classmethod
    def from_config(cls, config: Config | None) -> Limits:
        """The configured limits (``None``: the defaults)."""
        if config is None:
            return cls()
        return cls.from_mapping(config.section("limits"))


def _validate_audit(audit: Mapping[str, Any]) -> None:
    for name in ("samples", "batch_size", "max_new_tokens", "n_boot", "permutations"):
        if audit[name] < 1:
            raise ConfigError(f"audit.{name} must be at least 1, got {audit[name]}")
    if audit["min_group_n"] < 1:
        raise ConfigError(f"audit.min_group_n must be at least 1, got {audit['min_group_n']}")
    q = audit["ci_quantiles"]
    if (len(q) != 2 or not all(isinstance(x, (int, float)) and 0 < x < 1 for x in q)
            or q[0] >= q[1]):
        raise ConfigError(f"audit.ci_quantiles must be two increasing numbers in (0, 1), got {q}")
    if not 0 < audit["alpha"] < 1:
        raise ConfigError(f"audit.alpha must be between 0 and 1, got {audit['alpha']}")
    if audit["difference_threshold"] < 0:
        raise ConfigError("audit.difference_threshold must be >= 0")
    if not 0 < audit["ratio_threshold"] <= 1:
        raise ConfigError(f"audit.ratio_threshold must be in (0, 1], got {audit['ratio_threshold']}")
    for key, choices in (("bootstrap", ("numpy", "fairlearn")), ("p_adjust", ("holm", "none"))):
        if audit[key] not in choices:
            raise ConfigError(f"audit.{key} = {audit[key]!r}; choose one of {', '.join(choices)}")


#: what an API key of ``guardrail serve`` may be allowed to do
SERVE_SCOPES = ("verify", "fetch:manifests", "generate", "reports:read")


def _validate_serve(serve: Mapping[str, Any]) -> None:
    if not str(serve["address"]).strip():
        raise ConfigError("serve.address must not be empty")
    if not 0 < serve["port"] < 65536:
        raise ConfigError(f"serve.port must be between 1 and 65535, got {serve['port']}")
    for name in ("workers", "executor_threads", "max_queue", "max_body_bytes", "max_results"):
        if serve[name] < 1:
            raise ConfigError(f"serve.{name} must be at least 1, got {serve[name]}")
    if not -1 <= serve["verify_pool"] <= 256:
        raise ConfigError("serve.verify_pool must be -1 (one process per core), 0 (threads) "
                          f"or a number of processes up to 256, got {serve['verify_pool']}")
    if not serve["request_timeout_seconds"] > 0:
        raise ConfigError("serve.request_timeout_seconds must be positive")
    if serve["rate_limit_per_second"] < 0 or serve["rate_limit_burst"] < 1:
        raise ConfigError("serve.rate_limit_per_second must be >= 0 and serve.rate_limit_burst "
                          ">= 1")
    for name in ("anonymous_scopes",):
        bad = [s for s in serve[name] if s not in SERVE_SCOPES]
        if bad:
            raise ConfigError(f"serve.{name}: unknown scope(s) {', '.join(map(repr, bad))}; "
                              f"choose from {', '.join(SERVE_SCOPES)}")
    bad = [m for m in serve["preload_generators"] if m not in ("text", "image", "audio")]
    if bad:
        raise ConfigError(f"serve.preload_generators: unknown modality {bad[0]!r}; choose from "
                          "text, image, audio")


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    for key, value in data["paths"].items():
        if value and not Path(value).expanduser().is_absolute():
            data["paths"][key] = str((base / value).resolve())
    key_file = data["watermark"]["key_file"]
    if key_file and not Path(key_file).expanduser().is_absolute():
        data["watermark"]["key_file"] = str((base / key_file).resolve())
    for key in ("token_file", "verify_dir"):
        value = data["dashboard"][key]
        if value and not Path(value).expanduser().is_absolute():
            data["dashboard"][key] = str((base / value).resolve())
    url = data["store"]["url"]
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        data["store"]["url"] = prefix + str((base / url[len(prefix):]).resolve())
