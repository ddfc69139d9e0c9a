"""What one worker process holds: the record store, models loaded once (lazily, or at
start with ``preload_*``), and the blocking work that the pool runs - verification,
content matching and guarded generation."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import _records
from .._softbinding import FINGERPRINT_ALGS, fingerprint_binding, watermark_alg, watermark_binding
from .._types import Artifact, Modality
from ..config import Config, Limits
from ..errors import GuardrailError
from ..media import DEFAULT_MEDIA_TYPE, MEDIA_TYPES, sniff_media_type
from ..store import ReportStore
from .settings import ServeSettings

__all__ = ["Resources", "extension_for", "safe_name"]

log = logging.getLogger(__name__)

_EXT = {mt: ext for ext, (mt, _m) in reversed(list(MEDIA_TYPES.items()))}
_UNSAFE = "".join(chr(c) for c in range(128) if not (chr(c).isalnum() or chr(c) in "._-"))


def extension_for(media_type: str | None) -> str:
    """The file suffix guardrail uses for ``media_type`` (``""`` if none)."""
    mt = (media_type or "").split(";")[0].strip().lower()
    mt = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg",
          "image/jpg": "image/jpeg"}.get(mt, mt)
    return _EXT.get(mt, "")


def safe_name(filename: str | None, media_type: str | None) -> str:
    """A file name for an upload: the base name with only ``[A-Za-z0-9._-]``, at most 100
    characters, never hidden; the media type's suffix when the name has no known one."""
    base = Path(str(filename or "").replace("\\", "/")).name
    base = "".join("_" if ch in _UNSAFE or ord(ch) > 127 else ch for ch in base)[-100:]
    base = base.lstrip(".") or "upload"
    if Path(base).suffix.lower() not in MEDIA_TYPES:
        base += extension_for(media_type)
    return base


def _modality(name: str, data: bytes) -> Modality | None:
    known = MEDIA_TYPES.get(Path(name).suffix.lower())
    if known:
        return known[1]
    mt = sniff_media_type(data)
    if mt is None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return Modality.TEXT  # what verify's decoder makes of undeclared UTF-8
    return MEDIA_TYPES.get(extension_for(mt), (None, None))[1]


class Resources:
    """The per-worker state of the service.

    Parameters
    ----------
    config, settings
        The configuration and its ``[serve]`` part.
    store
        The record store (default: ``config.store_url``, opened here and closed by
        :meth:`close`).
    generators
        Generators by modality to guard instead of the configured ones (tests, embedding).
    local_verify
        Whether verification runs in this process (else in the verify pool's processes,
        which preload the detectors themselves).
    """

    def __init__(self, config: Config, settings: ServeSettings, *,
                 store: ReportStore | None = None,
                 generators: Mapping[str, Any] | None = None,
                 local_verify: bool = True) -> None:
        self.config = config
        self.settings = settings
        self._own_store = store is None
        self.store = store or ReportStore(config.store_url)
        self.limits = Limits.from_config(config)
        self.outputs_dir = config.data_dir / "serve" / "outputs"
        self._generators = {Modality.parse(k): v for k, v in (generators or {}).items()}
        self._lock = threading.Lock()
        self._detectors: dict[Modality, list[Any] | None] = {}
        self._watermarkers: dict[Modality, Any] = {}
        self._text_generator: Any = None
        self._text_loaded = False
        self._guards: dict[Modality, Any] = {}
        self._guard_locks = {m: threading.Lock() for m in Modality}
        self._preload_detectors = settings.preload_detectors and local_verify
        self.preloaded = not (self._preload_detectors or settings.preload_generators)

    # -- models, loaded once ----------------------------------------------------------------
    def text_generator(self) -> Any:
        """The configured text model (verification of text needs it), or ``None``."""
        with self._lock:
            if not self._text_loaded:
                from ..factory import generator_from_config

                try:
                    self._text_generator = generator_from_config(self.config, Modality.TEXT,
                                                                 progress=False)
                except Exception as exc:  # noqa: BLE001 - verify reports what it lacks
                    log.warning("text model not loaded: %s", exc)
                self._text_loaded = True
            return self._text_generator

    def detectors(self, modality: Modality) -> list[Any] | None:
        """The configured detectors of ``modality`` (``None``: let verify build and report
        them, when building failed here)."""
        text = self.text_generator() if modality is Modality.TEXT else None
        with self._lock:
            if modality not in self._detectors:
                from ..detectors import build_all

                try:
                    self._detectors[modality] = build_all(self.config, [modality],
                                                          text_generator=text)
                except Exception as exc:  # noqa: BLE001 - verify_file reports the reason
                    log.warning("detectors for %s not built: %s", modality.value, exc)
                    self._detectors[modality] = None
            return self._detectors[modality]

    def watermarker(self, modality: Modality) -> Any:
        with self._lock:
            if modality not in self._watermarkers:
                from ..factory import watermarker_from_config

                self._watermarkers[modality] = watermarker_from_config(self.config, modality)
            return self._watermarkers[modality]

    def guard(self, modality: Modality) -> Any:
        """The guard around this worker's generator for ``modality`` (loaded on first use)."""
        with self._lock:
            if modality not in self._guards:
                from ..guard import Guard, guard_from_config

                gen = self._generators.get(modality)
                self._guards[modality] = (
                    Guard(gen, store=self.store, config=self.config) if gen is not None
                    else guard_from_config(self.config, modality, store=self.store,
                                           progress=False))
            return self._guards[modality]

    def preload(self) -> None:
        """Load what ``[serve] preload_*`` names (blocking)."""
        try:
            if self._preload_detectors:
                for m in (Modality.IMAGE, Modality.AUDIO):
                    self.detectors(m)
            for name in self.settings.preload_generators:
                self.guard(Modality.parse(name))
        finally:
            self.preloaded = True

    def loaded(self) -> dict[str, Any]:
        with self._lock:
            return {"detectors": sorted(m.value for m in self._detectors),
                    "generators": sorted(m.value for m in self._guards),
                    "text_model": self._text_generator is not None}

    def close(self) -> None:
        for guard in self._guards.values():
            try:
                guard.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("closing a guard failed: %s", exc)
        if self._own_store:
            self.store.close()

    # -- the work -----------------------------------------------------------------------------
    def verify(self, data: bytes, name: str) -> dict[str, Any]:
        """``guardrail verify --json`` of uploaded bytes (blocking). ``file`` is the upload's
        name; everything else is the verify JSON document as built by
        :meth:`guardrail.verify.VerifyResult.to_dict`."""
        from ..verify import verify_file

        modality = _modality(name, data)
        dets = self.detectors(modality) if modality is not None else None
        text = self.text_generator() if modality is Modality.TEXT else None
        with tempfile.TemporaryDirectory(prefix="guardrail-serve-") as tmp:
            path = Path(tmp) / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            res = verify_file(path, self.config, store=self.store, detectors=dets,
                              text_generator=text, limits=self.limits)
        res.file = name
        return res.to_dict()

    def supported(self) -> dict[str, list[str]]:
        """Soft-binding algorithms this service answers: the registered image and audio
        watermark schemes (text marks carry no id) and the fingerprints."""
        from ..watermark.registry import registered

        marks = sorted({watermark_alg(name) for m in (Modality.IMAGE, Modality.AUDIO)
                        for name in registered(m)})
        return {"watermarks": marks, "fingerprints": sorted(FINGERPRINT_ALGS.values())}

    def by_binding(self, alg: str, value: str, limit: int) -> list[dict[str, Any]]:
        rows = self.store.lookup(_records.find_by_binding, alg, value, limit)
        return [{"manifestId": mid, "similarityScore": 100} for mid, _fp in rows]

    def by_content(self, data: bytes, media_type: str | None, *, alg: str | None,
                   hint_alg: str | None, hint_value: str | None,
                   limit: int) -> list[dict[str, Any]]:
        """Manifests of the outputs this asset is: through guardrail's watermark (checked
        against the recorded content fingerprint, as verify's recovery does), through the
        fingerprint itself, then through the caller's hint (blocking)."""
        from ..fingerprint import best_match, observe
        from ..media import decode

        art = decode(data, (media_type or "").split(";")[0].strip() or None, name="upload",
                     limits=self.limits)
        seen = observe(art, limits=self.limits)  # with a picture's mirror image
        # a fingerprint that does not bind the content matches no record by content (a faint
        # copy of another output would set it): then only the caller's hint is used
        own = [] if seen.weak else seen.fingerprints
        found: dict[str, int] = {}
        if art.modality is not Modality.TEXT and (alg is None or ".watermark." in alg):
            try:
                result = self.watermarker(art.modality).detect(art.evolve(data=None))
            except GuardrailError as exc:
                log.info("no watermark check on an upload: %s", exc)
                result = None
            binding = (watermark_binding({"scheme": result.scheme, "payload": result.payload})
                       if result is not None and result.detected else None)
            if binding and (alg is None or alg == binding[0]):
                unmatched = []
                for mid, recorded in self.store.lookup(_records.find_by_binding, *binding,
                                                        limit):
                    ok, score = best_match(str(recorded or ""), own)
                    if ok:
                        found.setdefault(mid, _score(own[0], score))
                    else:
                        unmatched.append(mid)
                # a crop or rotation: the region the watermark's geometry places it in
                if unmatched and result is not None and result.geometry:
                    for mid, score in self._by_region(art, result.geometry, unmatched).items():
                        found.setdefault(mid, score)
        for fp in filter(None, map(fingerprint_binding, own)):
            if alg is None or alg == fp[0]:
                for mid, _rec in self.store.lookup(_records.find_by_binding, *fp, limit):
                    found.setdefault(mid, 100)
        if not found and hint_alg and hint_value:
            for mid, _rec in self.store.lookup(_records.find_by_binding, hint_alg,
                                                hint_value, limit):
                found.setdefault(mid, 100)
        ranked = sorted(found.items(), key=lambda kv: -kv[1])[:limit]
        return [{"manifestId": mid, "similarityScore": score} for mid, score in ranked]

    def _by_region(self, art: Artifact, geometry: Mapping[str, Any],
                   manifest_ids: list[str]) -> dict[str, int]:
        """Manifests whose report's region fingerprint the file shows (as verify's
        recovery; similarity: the correlation in percent)."""
        from ..fingerprint_region import region_match

        regions = self.store.lookup(_records.regions_of_manifests, manifest_ids)
        out = {}
        for mid in manifest_ids:
            m = region_match(regions.get(mid, ""), art, geometry)
            if m.matches and m.correlation is not None:
                out[mid] = int(round(100 * m.correlation))
        return out

    def manifest(self, manifest_id: str) -> _records.ManifestRecord | None:
        return self.store.lookup(_records.get_manifest, manifest_id)

    def generate(self, modality: Modality, prompt: str, params: Mapping[str, Any],
                 seed: int | None) -> Any:
        """One guarded generation into this worker's outputs folder (blocking)."""
        guard = self.guard(modality)
        self.outputs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ext = extension_for(DEFAULT_MEDIA_TYPE[modality])
        out = self.outputs_dir / f"{uuid.uuid4().hex}{ext}"
        with self._guard_locks[modality]:
            return guard.generate(prompt, output=out, seed=seed, params=dict(params))


def _score(observed: str, score: float | None) -> int:
    """A similarity score 0-100 from a fingerprint match (pHash distance of 64 bits,
    envelope correlation, exact text)."""
    if score is None:
        return 0
    if observed.startswith("phash:"):
        return max(0, min(100, round(100 * (1 - score / 64))))
    if observed.startswith("env:"):
        return max(0, min(100, round(100 * score)))
    return 100
