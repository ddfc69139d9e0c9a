"""Valid seed files for the fault suite: real guardrail outputs (watermarked, then signed
with the development chain, through :class:`guardrail.Guard` with the default stages) of
every media type, plain unsigned files, and the third-party C2PA fixtures when present.

The image and audio content is synthetic but natural enough to carry the marks (a smooth
pattern with discs and grain; brown noise with a syllable envelope). Text is either the
embedded SmolLM2 model's output (watermarked with KGW and signed: ``real_text=True``, about
a minute on 2 cores) or an echo generator's (signed, not watermarked: fast, for tests).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guardrail import Config, Guard, testing
from guardrail._generator import Generated, GenerationHooks, ModelInfo
from guardrail._types import Artifact, GenerationMetadata, Modality
from guardrail.factory import init_keys
from guardrail.media import encode
from guardrail.testing import EchoTextGenerator

__all__ = ["ROOT", "PEER_FIXTURES", "Seed", "SeedSet", "isolated_config_env", "make_seeds",
           "pattern_image", "speechlike"]

ROOT = Path(__file__).resolve().parents[2]
#: the third-party C2PA files (read-only; copied where they are needed)
PEER_FIXTURES = Path(os.environ.get("GUARDRAIL_C2PA_FIXTURES")
                     or ROOT.parent / "shared" / "fixtures" / "c2pa-peer")
#: extensions of the peer fixtures the suite uses
_PEER_EXTS = (".jpg", ".png", ".webp", ".wav", ".flac", ".mp3")


@dataclass(frozen=True)
class Seed:
    """One valid input file.

    Attributes
    ----------
    name : str
        Short unique name (``guardrail.png``, ``peer.CA.jpg``, ...).
    path : Path
    kind : {"guardrail", "plain", "peer"}
        A guardrail output (watermarked and signed), a plain file, or a third-party one.
    """

    name: str
    path: Path
    kind: str

    @property
    def ext(self) -> str:
        return self.path.suffix.lower()

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class SeedSet:
    """The seeds and the data folder (keys, record store) that produced them."""

    data_dir: Path
    seeds: tuple[Seed, ...]

    def __repr__(self) -> str:
        return f"SeedSet({len(self.seeds)} seeds in {self.data_dir.parent})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis's failure reports
        p.text(repr(self))

    def config(self, **overrides: Any) -> Config:
        """The configuration that verifies these seeds (their keys and record store)."""
        base: dict[str, Any] = {"paths": {"data_dir": str(self.data_dir)}}
        for section, values in overrides.items():
            base.setdefault(section, {}).update(values)
        with isolated_config_env(self.data_dir.parent / "home"):
            return Config.load(overrides=base)

    def by_name(self, name: str) -> Seed:
        return next(s for s in self.seeds if s.name == name)

    def of_kind(self, *kinds: str) -> list[Seed]:
        return [s for s in self.seeds if s.kind in kinds]


def pattern_image(seed: int, size: int = 160) -> np.ndarray:
    """A deterministic ``size x size`` RGB picture: waves, discs and grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        img[..., c] = 128 + 60 * np.sin(x / (7 + 3 * c) + rng.uniform(0, 6)) * np.cos(y / (11 + c))
    for _ in range(12):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(5, 30)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def speechlike(seed: int, seconds: float = 2.0, sr: int = 16000) -> np.ndarray:
    """:func:`guardrail.testing.speechlike` with the seed first."""
    return testing.speechlike(seconds, sr=sr, seed=seed)


class _PatternImages:
    modality = Modality.IMAGE
    info = ModelInfo(model_id="faults:pattern", revision="1", device="cpu")

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        return [Generated(content=pattern_image(seed or 0)) for _ in prompts]


class _SpeechlikeAudio:
    modality = Modality.AUDIO
    info = ModelInfo(model_id="faults:speechlike", revision="1", device="cpu")

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        return [Generated(content=speechlike(seed or 0), sample_rate=16000) for _ in prompts]


#: the echo generator cannot carry a text watermark: release its text signed, unmarked
_NO_TEXT_MARK = {"watermark": "continue", "self_check": "continue"}


@contextmanager
def isolated_config_env(home: Path) -> Iterator[None]:
    """No user configuration and no ``GUARDRAIL_*`` variable while seeds are made."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith("GUARDRAIL_") and name != "GUARDRAIL_PATHS__CACHE_DIR":
                del os.environ[name]
        os.environ["XDG_CONFIG_HOME"] = str(home / "config")
        os.environ["XDG_DATA_HOME"] = str(home / "data")
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _guarded(cfg: Config, generator: Any, outputs: dict[str, Path], seed: int) -> None:
    with Guard(generator, config=cfg) as guard:
        for name, out in outputs.items():
            res = guard.generate(f"fault-suite seed {name}", output=out, seed=seed)
            if res.status != "ok" or not out.exists():
                stages = [(s.stage, s.status.value, s.reason) for s in res.report.stages]
                raise RuntimeError(f"seed {name}: the guard did not release it ({stages})")


def make_seeds(folder: str | os.PathLike[str], *, real_text: bool = False,
               peer: bool = True) -> SeedSet:
    """Write the seeds into ``folder`` (created) and return them.

    Parameters
    ----------
    folder
        Receives ``data/`` (keys and record store) and ``seeds/``.
    real_text : bool
        Generate the text seed with the embedded SmolLM2 model (KGW watermark + signed),
        instead of the echo generator (signed only).
    peer : bool
        Copy the third-party C2PA fixtures (:data:`PEER_FIXTURES`) when they exist.
    """
    folder = Path(folder)
    data_dir, out = folder / "data", folder / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    seeds: list[Seed] = []
    with isolated_config_env(folder / "home"):
        base = {"paths": {"data_dir": str(data_dir)}, "detectors": {"guard_outputs": False}}
        cfg = Config.load(overrides=base)
        init_keys(cfg)
        media = {ext: out / f"guardrail.{ext}" for ext in ("png", "jpg", "webp")}
        _guarded(cfg, _PatternImages(), media, seed=11)
        audio = {ext: out / f"guardrail.{ext}" for ext in ("wav", "flac", "mp3")}
        _guarded(cfg, _SpeechlikeAudio(), audio, seed=12)
        seeds += [Seed(p.name, p, "guardrail") for p in [*media.values(), *audio.values()]]
        if real_text:
            from guardrail.guard import guard_from_config

            tcfg = Config.load(overrides={**base, "generators": {"text": {"max_new_tokens": 128}}})
            with guard_from_config(tcfg, "text", progress=False) as guard:
                res = guard.generate("Write a short paragraph about the history of bridges.",
                                     output=out / "guardrail.txt", seed=3)
                if res.status not in ("ok", "flagged"):
                    raise RuntimeError(f"text seed not released: {res.status}")
        else:
            tcfg = Config.load(overrides={**base, "policy": {"on_fail": _NO_TEXT_MARK}})
            _guarded(tcfg, EchoTextGenerator(), {"txt": out / "guardrail.txt"}, seed=13)
        seeds.append(Seed("guardrail.txt", out / "guardrail.txt", "guardrail"))
        side = Config.load(overrides={**base, "provenance": {"text_mode": "sidecar"},
                                      "policy": {"on_fail": _NO_TEXT_MARK}})
        _guarded(side, EchoTextGenerator(), {"txt": out / "sidecar.txt"}, seed=14)
        seeds.append(Seed("sidecar.txt", out / "sidecar.txt", "guardrail"))
    md = GenerationMetadata(model_id="faults:plain")
    plain = {
        "plain.png": encode(Artifact(Modality.IMAGE, pattern_image(21, 96), md), "image/png"),
        "plain.jpg": encode(Artifact(Modality.IMAGE, pattern_image(22, 96), md), "image/jpeg"),
        "plain.wav": encode(Artifact(Modality.AUDIO, speechlike(23, 1.5), md,
                                     sample_rate=16000), "audio/wav"),
        "plain.flac": encode(Artifact(Modality.AUDIO, speechlike(24, 1.5), md,
                                      sample_rate=8000), "audio/flac"),
        "plain.txt": ("The river bridge was rebuilt in stone after the flood of 1841; "
                      "its nine arches still carry the road. Ünïcödé, 中文, emoji \U0001F309.\n"
                      * 3).encode("utf-8"),
    }
    for name, data in plain.items():
        (out / name).write_bytes(data)
        seeds.append(Seed(name, out / name, "plain"))
    if peer and PEER_FIXTURES.is_dir():
        for src in sorted(PEER_FIXTURES.iterdir()):
            if src.suffix.lower() in _PEER_EXTS and src.is_file():
                dst = out / f"peer.{src.name}"
                shutil.copyfile(src, dst)
                seeds.append(Seed(dst.name, dst, "peer"))
    return SeedSet(data_dir=data_dir, seeds=tuple(seeds))
