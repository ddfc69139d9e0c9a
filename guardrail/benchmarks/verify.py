"""``guardrail verify`` on a large JPEG, with and without the image detectors."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .._types import Modality
from ..config import Config
from ._report import machine_line
from .provenance import test_image

__all__ = ["run_verify_benchmark"]


def run_verify_benchmark(cfg: Config, *, runs: int = 10, size: int = 1024) -> dict[str, Any]:
    """``guardrail verify`` on a ``size`` x ``size`` JPEG: with every configured image
    detector on, and without detectors, side by side (warm: models loaded once, as in a
    verification service; the first-call load time is reported separately).

    Three files: an unsigned photo-like JPEG (credentials absent: the store is searched
    through the watermark), the same image watermarked and signed (credentials trusted), and
    a guarded output (in a store of its own) re-encoded without its credentials and cropped
    to a quarter of its area - recovered through the watermark and bound to its record by the
    region fingerprint (:mod:`guardrail.fingerprint_region`), the slowest recovery path.
    """
    from ..detectors import registry
    from ..factory import init_keys
    from ..store import ReportStore
    from ..verify import verify_file

    init_keys(cfg)
    detectors = registry.build_all(cfg, [Modality.IMAGE])
    rows: list[dict[str, Any]] = []
    with (tempfile.TemporaryDirectory() as tmp, ReportStore(cfg.store_url) as store,
          ReportStore(f"sqlite:///{tmp}/guarded.db") as own):
        plain = Path(tmp) / "plain.jpg"
        plain.write_bytes(test_image(size))
        signed = Path(tmp) / "signed.jpg"
        _watermark_and_sign(cfg, plain, signed)
        cropped = _guarded_crop(cfg, plain, own, Path(tmp))
        t0 = time.perf_counter()
        first = verify_file(plain, cfg, store=store, detectors=detectors)
        load_ms = (time.perf_counter() - t0) * 1000
        for label, path, where in (
                ("unsigned JPEG", plain, store), ("watermarked + signed JPEG", signed, store),
                ("guarded output, stripped, quarter-area crop", cropped, own)):
            timings: dict[str, list[float]] = {"with": [], "without": []}
            for _ in range(runs):
                for mode, dets in (("with", detectors), ("without", [])):
                    t = time.perf_counter()
                    res = verify_file(path, cfg, store=where, detectors=dets)
                    timings[mode].append((time.perf_counter() - t) * 1000)
                    if mode == "with":
                        d = res.to_dict()
            ran = [x for x in d.get("detectors") or [] if x.get("probability") is not None]
            w, wo = statistics.median(timings["with"]), statistics.median(timings["without"])
            rows.append({"file": label, "with_detectors_ms": round(w, 1),
                         "without_detectors_ms": round(wo, 1), "ratio": round(w / wo, 2),
                         "detectors_ran": len(ran), "verdict": d["verdict"]["label"]})
    names = ", ".join(d.name for d in detectors) or "none"
    md = [f"`guardrail verify` on a {size}x{size} JPEG, median of {runs} warm runs, image "
          f"detectors: {names} (first call, loading the models: {load_ms:.0f} ms). Target: at "
          "most 500 ms with every detector on.", "", machine_line(), "",
          "| file | with detectors | without | ratio | detectors that ran | verdict |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['file']} | {r['with_detectors_ms']} ms | {r['without_detectors_ms']} ms"
                  f" | {r['ratio']}x | {r['detectors_ran']} | {r['verdict']} |")
    return {"rows": rows, "first_call_ms": round(load_ms, 1), "detectors": names,
            "first_verdict": first.to_dict()["verdict"]["label"], "markdown": "\n".join(md)}


class _Still:
    """An image generator that returns one fixed picture (for a guarded output)."""

    modality = Modality.IMAGE

    def __init__(self, pixels: Any) -> None:
        from .._generator import ModelInfo

        self.pixels = pixels
        self.info = ModelInfo(model_id="benchmark:still", revision="1", device="cpu")

    def generate(self, prompts: Any, *, seed: Any = None, params: Any = None,
                 hooks: Any = None) -> list[Any]:
        from .._generator import Generated

        return [Generated(content=self.pixels.copy(), parameters={"seed": seed})
                for _ in prompts]


def _guarded_crop(cfg: Config, src: Path, store: Any, tmp: Path) -> Path:
    """Guard ``src`` into ``store``; return ``tmp/cropped.jpg``: the output's centre quarter,
    re-encoded (credentials stripped)."""
    from PIL import Image

    from ..guard import Guard
    from ..media import decode

    pixels = decode(src.read_bytes(), name=src.name).content
    with Guard(_Still(pixels), store=store, config=cfg) as guard:
        res = guard.generate("benchmark", output=tmp / "guarded.png", seed=1)
    img = Image.open(res.output).convert("RGB")
    w, h = img.size
    out = tmp / "cropped.jpg"
    img.crop((w // 4, h // 4, w // 4 + w // 2, h // 4 + h // 2)).save(out, quality=90)
    return out


def _watermark_and_sign(cfg: Config, src: Path, dst: Path) -> None:
    from ..factory import watermarker_from_config
    from ..media import decode, encode
    from ..provenance.files import sign_file

    art = decode(src.read_bytes(), name=src.name)
    wm = watermarker_from_config(cfg, Modality.IMAGE)
    marked = wm.embed(art, payload=0x1234)
    tmp = dst.with_suffix(".unsigned.jpg")
    tmp.write_bytes(encode(marked, "image/jpeg"))
    sign_file(cfg, input=tmp, output=dst, model_id="benchmark")
