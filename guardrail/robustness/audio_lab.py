"""The audio robustness lab: speed, quality, robustness and false-positive rate of an audio
watermarker.

:func:`evaluate` runs the measurements on clips the caller provides (the lab skeleton of
:mod:`guardrail.robustness.harness`); :func:`main` builds a corpus offline
(:mod:`guardrail.robustness.audio_corpus`) and prints the numbers as JSON::

    python -m guardrail.robustness.audio_lab --n-speech 120 --n-unmarked 1000
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Artifact, GenerationMetadata, Modality
from ..signal import resample
from ..stats import clopper_pearson
from ..watermark.audio import GuardrailAudioWatermark
from .attacks import build_suite
from .audio_attacks import snr_db
from .audio_corpus import Clip, human_clips, piper_clips, synth_clips, tool_clips
from .audio_quality import Tally
from .base import Attack
from .harness import Detection, Marked, rate, run_trials

__all__ = ["evaluate", "main"]

_META = GenerationMetadata(model_id="eval")

#: The attacks whose true-positive rate has a target (>= 0.99 at the configured FPR).
TARGET_ATTACKS = ("none", "mp3(64)", "resample(16000)", "noise(20)", "gain(6)", "gain(-6)",
                  "crop(0.5)")
#: The attacks of the time-scale and combined-chain targets (TPR >= 0.95).
SCALE_TARGET_ATTACKS = ("speed(1.05)", "speed(0.95)", "tempo(1.05)", "tempo(0.95)",
                        "pitch(1)", "pitch(-1)", "chain((64, 20, 4000))")
#: The further keys whose detectors also check the unmarked windows (false positives do
#: not depend on one key's pattern).
UNMARKED_KEYS = tuple(f"guardrail-audio-unmarked-check-{i}".encode() for i in range(3))
#: Marked outputs of one key the keyless attacker holds (the copies and removals use 1 and
#: all of them).
N_DONORS = 10
#: The attack of the payload target (the id correct in >= 90 % of the clips).
PAYLOAD_TARGET_ATTACK = "noise(10)"


def _artifact(samples: np.ndarray, sr: int) -> Artifact:
    return Artifact(modality=Modality.AUDIO, content=np.asarray(samples, dtype=np.float32),
                    metadata=_META, sample_rate=int(sr))


def _window(clip: Clip, seconds: float, rng: np.random.Generator) -> Clip:
    x, sr = clip
    n = int(round(seconds * sr))
    if x.shape[0] <= n:
        return x, sr
    start = int(rng.integers(0, x.shape[0] - n + 1))
    return x[start:start + n], sr


def _timing(wm: Any, clips: Sequence[Clip], seconds: float, repeats: int) -> dict[str, float]:
    """Embed + detect time (ms) for ``seconds`` of audio at 22.05 kHz."""
    parts, total = [], 0
    for x, sr in clips:
        parts.append(resample(x if x.ndim == 1 else x.mean(axis=1), sr, 22050))
        total += parts[-1].shape[0]
        if total >= seconds * 22050:
            break
    x = np.concatenate(parts)[: int(seconds * 22050)]
    art = _artifact(x, 22050)
    wm.detect(wm.embed(art, 1))  # warm-up (imports, caches)
    emb, det = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        marked = wm.embed(art, i)
        t1 = time.perf_counter()
        wm.detect(marked)
        t2 = time.perf_counter()
        emb.append((t1 - t0) * 1000.0)
        det.append((t2 - t1) * 1000.0)
    tot = [a + b for a, b in zip(emb, det, strict=True)]
    return {"seconds": x.shape[0] / 22050, "embed_ms_median": float(np.median(emb)),
            "detect_ms_median": float(np.median(det)), "total_ms_median": float(np.median(tot)),
            "total_ms_min": float(np.min(tot)), "repeats": repeats}


def _coded_accuracy(wm: Any, art: Artifact, payload: int) -> float | None:
    """Fraction of coded payload bits right before error correction (own scheme only)."""
    soft = getattr(wm, "_raw_soft", None)
    code = getattr(wm, "_code", None)
    if soft is None or code is None:
        return None
    values = soft(art)
    if values is None:
        return 0.5
    truth = np.asarray(code.encode(payload), dtype=bool)
    return float(np.mean((values > 0) == truth))


def evaluate(clips: Iterable[Clip | Artifact], *, key: bytes, fpr: float = 1e-4,
             attacks: Sequence[Attack] | None = None, n_unmarked: int = 1000,
             clip_seconds: float = 5.0, timing_seconds: float = 10.0, timing_repeats: int = 20,
             watermarker: Any = None, labels: Sequence[str] | None = None,
             seed: int = 0, progress: Callable[[str], None] | None = None,
             unmarked_keys: Sequence[bytes] | None = None, keyless: bool = True,
             human: Sequence[Clip] = (), n_copy_targets: int = 300,
             n_removal: int = 40) -> dict[str, Any]:
    """Measure a watermarker on audio clips.

    Parameters
    ----------
    clips : iterable of (samples, sample_rate) or audio Artifact
        Content. Each clip gives one marked trial (a random ``clip_seconds`` window), and
        the unmarked windows are drawn from the clips in turn (random offsets).
    key : bytes
        Key of the default watermarker (:class:`GuardrailAudioWatermark`).
    fpr : float
        The false-positive rate the detector is configured for.
    attacks : sequence of Attack, optional
        Attacks applied to each marked window (default: the audio suite of
        :data:`guardrail.robustness.attacks.SUITES`, built through the attack registry); a
        trial without attack (``none``) is always run.
    n_unmarked : int
        Number of unmarked windows checked for false positives.
    clip_seconds : float
        Length of the windows (seconds).
    timing_seconds, timing_repeats
        Length of the audio (resampled to 22.05 kHz) and number of runs for the timing.
    watermarker : optional
        Another watermarker to measure instead (same protocol); ``key`` and ``fpr`` are
        then only recorded.
    labels : sequence of str, optional
        A content label per clip (e.g. ``piper``, ``midi``): rates are also broken down by
        label.
    seed : int
        Seed of the windows and payloads.
    progress : callable, optional
        Called with a short message now and then.
    unmarked_keys : sequence of bytes, optional
        Further keys of :class:`GuardrailAudioWatermark`: the unmarked windows are also
        checked with a detector of each (``unmarked["by_key"]``; the pooled count is in
        ``unmarked``). Default: :data:`UNMARKED_KEYS` when the watermarker is a
        :class:`GuardrailAudioWatermark`, else none.
    keyless : bool
        Also run the keyless copy and removal attacks
        (:mod:`guardrail.robustness.audio_keyless`) when the watermarker is a
        :class:`GuardrailAudioWatermark` and there are more than ``N_DONORS`` clips: windows
        of the first clips that take a mark are the attacker's ``N_DONORS`` outputs; the
        copies go onto ``n_copy_targets`` unmarked audio - every clip of ``human`` (recorded
        human speech, whole), then windows of the other clips in turn; the removal is tried
        on marked windows of ``n_removal`` of the other clips.
    human : sequence of (samples, sample_rate)
        Recorded human speech the copies also go onto (:func:`.audio_corpus.human_clips`).

    Returns
    -------
    dict
        ``timing``, ``snr_db``, ``quality`` (wideband PESQ of the marked clips:
        :meth:`.audio_quality.Tally.result`), ``attacks`` (per attack: ``tpr``, ``payload_ok``,
        ``payload_wrong``, ``coded_bit_accuracy``, ``score_mean``, ``score_min``, and the
        same per label), ``unmarked`` (``n``, ``false_positives``, ``fpr_measured``,
        ``max_score``, ``min_p_value``, rates at looser levels, and ``not_performed``),
        ``keyless`` (when run: :func:`.audio_keyless.keyless_trials`) and ``targets`` (each
        target and whether it is met).
    """
    rng = np.random.default_rng(seed)
    wm = watermarker or GuardrailAudioWatermark(key, fpr=fpr)
    items: list[Clip] = []
    for c in clips:
        if isinstance(c, Artifact):
            items.append((np.asarray(c.content, dtype=np.float32), int(c.sample_rate)))
        else:
            items.append((np.asarray(c[0], dtype=np.float32), int(c[1])))
    if not items:
        raise ValueError("evaluate needs at least one clip")
    labels = list(labels) if labels is not None else ["all"] * len(items)
    attacks = build_suite(Modality.AUDIO) if attacks is None else list(attacks)
    say = progress or (lambda _msg: None)

    say("timing")
    timing = _timing(wm, items, timing_seconds, timing_repeats)

    # ---- marked trials
    bits = int(getattr(wm, "payload_bits", 32))
    snrs: list[float] = []
    quality = Tally()  # wideband PESQ of each marked clip (when the pesq package is installed)

    def mark(i: int) -> Marked | None:
        x, sr = _window(items[i], clip_seconds, rng)
        payload = int(rng.integers(0, 1 << bits))
        art = _artifact(x, sr)
        try:
            marked = wm.embed(art, payload)
        except Exception as exc:  # noqa: BLE001 - CannotWatermark or a scheme's own error
            say(f"clip {i}: {exc}")
            return None
        snrs.append(snr_db(art.content, marked.content))
        quality.add(art.content, marked.content, sr)
        return Marked(marked, name=labels[i], context=payload)

    def detect(m: Marked, attacked: Artifact) -> Detection:
        res = wm.detect(attacked)
        want = f"{m.context:0{(bits + 3) // 4}x}"
        return Detection(detected=bool(res.detected),
                         score=float(res.score) if res.score is not None else float("nan"),
                         payload_ok=res.payload == want,
                         payload_wrong=res.payload is not None and res.payload != want,
                         bit_accuracy=_coded_accuracy(wm, attacked, m.context))

    def report(i: int, _m: Marked) -> None:
        if i % 20 == 19:
            say(f"marked trials: {i + 1}/{len(items)}")

    trials = run_trials(range(len(items)), mark=mark, attacks=attacks, detect=detect,
                        progress=report)

    def summary(ds: list[Detection]) -> dict[str, Any]:
        if not ds:
            return {"n": 0}
        coded = [d.bit_accuracy for d in ds if d.bit_accuracy is not None]
        scores = np.array([d.score for d in ds])
        r = rate(ds)
        n_ok = int(sum(d.payload_ok for d in ds))
        return {"n": len(ds), "tpr": r["rate"], "tpr_ci": [r["ci_low"], r["ci_high"]],
                "payload_ok": n_ok / len(ds),
                "payload_ok_ci": list(clopper_pearson(n_ok, len(ds))),
                "payload_wrong": int(sum(d.payload_wrong for d in ds)),
                "coded_bit_accuracy": float(np.mean(coded)) if coded else None,
                "score_mean": float(np.nanmean(scores)), "score_min": float(np.nanmin(scores))}

    per_attack: dict[str, Any] = {}
    for name in trials.labels:
        ds = trials.detections[name]
        entry = summary(ds)
        if len(set(labels)) > 1 and name not in trials.errors:
            entry["by_label"] = {
                lab: summary([d for d, n in zip(ds, trials.names, strict=True) if n == lab])
                for lab in sorted(set(labels))}
        if name in trials.errors:
            entry["error"] = trials.errors[name]
        per_attack[name] = entry

    # ---- unmarked windows
    say("unmarked windows")
    unmarked_detections, scores, fp_labels = [], [], []
    if unmarked_keys is None:
        unmarked_keys = UNMARKED_KEYS if isinstance(wm, GuardrailAudioWatermark) else ()
    make = type(wm) if isinstance(wm, GuardrailAudioWatermark) else GuardrailAudioWatermark
    others = [make(k, fpr=fpr) for k in unmarked_keys]
    by_key = [[0, 0] for _ in others]  # performed, positives
    for j in range(n_unmarked):
        k = j % len(items)
        x, sr = _window(items[k], clip_seconds, rng)
        window = _artifact(x, sr)
        for i_wm, det in enumerate([wm, *others]):
            res = det.detect(window)
            unmarked_detections.append(Detection(
                detected=res.detected,
                p_value=1.0 if res.p_value is None else float(res.p_value)))
            if res.detected is None:
                continue
            if i_wm:
                by_key[i_wm - 1][0] += 1
                by_key[i_wm - 1][1] += bool(res.detected)
            scores.append(float(res.score) if res.score is not None else float("nan"))
            if res.detected:
                fp_labels.append(labels[k])
    fp = rate(unmarked_detections)
    pv = np.array([d.p_value for d in unmarked_detections if d.detected is not None])
    unmarked = {
        "n": fp["performed"], "not_performed": fp["not_performed"],
        "false_positives": fp["positives"], "false_positive_labels": fp_labels,
        "fpr_measured": fp["rate"] if fp["performed"] else 0.0,
        "fpr_ci": [fp["ci_low"], fp["ci_high"]], "n_keys": 1 + len(others),
        "n_windows": n_unmarked,
        "by_key": [{"n": n, "false_positives": k} for n, k in by_key],
        "max_score": float(np.nanmax(scores)) if scores else None,
        "min_p_value": fp["min_p"],
        "rate_p_below": {str(a): float(np.mean(pv <= a)) if pv.size else None
                         for a in (0.5, 0.1, 0.01, 0.001)},
    }

    kl = None
    if keyless and isinstance(wm, GuardrailAudioWatermark) and len(items) > N_DONORS:
        say("keyless copy and removal attacks")
        kl = _keyless(wm, items, human, rng, clip_seconds=clip_seconds,
                      n_targets=n_copy_targets, n_removal=n_removal, say=say)

    snr = {"mean": float(np.mean(snrs)) if snrs else None,
           "min": float(np.min(snrs)) if snrs else None}
    targets: dict[str, Any] = {
        "time_total_ms<=50": timing["total_ms_median"] <= 50.0,
        "snr_db>=30": snr["min"] is not None and snr["min"] >= 30.0,
        "unmarked_false_positives_ok": unmarked["fpr_measured"] <= fpr,
    }
    for name in TARGET_ATTACKS:
        if name in per_attack and per_attack[name].get("n"):
            targets[f"tpr[{name}]>=0.99"] = per_attack[name]["tpr"] >= 0.99
    for name in SCALE_TARGET_ATTACKS:
        if name in per_attack and per_attack[name].get("n"):
            targets[f"tpr[{name}]>=0.95"] = per_attack[name]["tpr"] >= 0.95
    if per_attack.get(PAYLOAD_TARGET_ATTACK, {}).get("n"):
        targets[f"payload_ok[{PAYLOAD_TARGET_ATTACK}]>=0.9"] = (
            per_attack[PAYLOAD_TARGET_ATTACK]["payload_ok"] >= 0.9)
    if kl and kl.get("copy"):
        targets["copy<=1/100"] = all(r["rate"] <= 0.01 for r in kl["copy"].values())
        targets["copy_ai_verdicts==0"] = all(r["ai_verdicts"] == 0
                                             for r in kl["copy"].values())
        targets["removal_tpr>=0.95"] = all(r["rate"] >= 0.95 for r in kl["removal"].values())
        at38 = [r for k, r in kl.get("removal_sweep", {}).items() if k.endswith(" at 38 dB")]
        if at38:  # the targets' own figure, with a fifth of the mark's energy (see ROBUSTNESS)
            targets["removal_tpr[38 dB]>=0.95"] = all(r["rate"] >= 0.95 for r in at38)
        then = [r for k, r in kl.get("removal_sweep", {}).items() if " at 38 dB + " in k]
        if then:  # and followed by a speed change (the detector's scale search)
            targets["removal_tpr[38 dB + speed]>=0.95"] = all(r["rate"] >= 0.95 for r in then)
    return {"scheme": getattr(wm, "scheme", "?"), "version": getattr(wm, "version", "?"),
            "fpr": fpr, "clip_seconds": clip_seconds, "n_clips": len(items),
            "cannot_embed": trials.not_marked, "timing": timing, "snr_db": snr,
            "quality": quality.result(),
            "attacks": per_attack, "unmarked": unmarked, "keyless": kl, "targets": targets}


def _keyless(wm: GuardrailAudioWatermark, items: Sequence[Clip], human: Sequence[Clip],
             rng: np.random.Generator, *, clip_seconds: float, n_targets: int, n_removal: int,
             say: Callable[[str], None]) -> dict[str, Any]:
    """Donors, copy targets and removal clips for :func:`.audio_keyless.keyless_trials`."""
    from .audio_keyless import keyless_trials

    bits = int(wm.payload_bits)

    def marked(k: int) -> tuple[np.ndarray, int, int] | None:
        x, sr = _window(items[k], clip_seconds, rng)
        payload = int(rng.integers(0, 1 << bits))
        try:
            return np.asarray(wm.embed(_artifact(x, sr), payload).content), sr, payload
        except Exception as exc:  # noqa: BLE001 - CannotWatermark
            say(f"keyless attacks: clip {k} cannot be marked: {exc}")
            return None

    donors, k = [], 0
    while len(donors) < N_DONORS and k < len(items):
        d = marked(k)
        k += 1
        if d is not None:
            donors.append(d)
    rest = list(range(k, len(items)))
    if not rest:
        return {"copy": {}, "removal": {}, "not_run": "no clips left after the donors"}
    targets = list(human)[:n_targets]
    targets += [_window(items[rest[j % len(rest)]], clip_seconds, rng)
                for j in range(n_targets - len(targets))]
    removal = [m for m in (marked(i) for i in rest[:n_removal]) if m is not None]
    res = keyless_trials(wm, donors, targets, removal, say=say)
    res["n_human_targets"] = min(len(human), n_targets)
    return res


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Build the offline corpus, run :func:`evaluate` and print (or write) the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-speech", type=int, default=120, help="Piper utterances")
    ap.add_argument("--n-tool", type=int, default=40, help="clips per installed tool")
    ap.add_argument("--n-synth", type=int, default=40, help="numpy-made clips")
    ap.add_argument("--n-unmarked", type=int, default=1000)
    ap.add_argument("--n-human", type=int, default=150,
                    help="recorded human speech clips the keyless copies also go onto "
                         "(Debian asterisk-core-sounds-en-wav, when installed)")
    ap.add_argument("--no-keyless", action="store_true",
                    help="skip the keyless copy and removal attacks")
    ap.add_argument("--fpr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        import sys

        sys.stderr.write(msg + "\n")

    say("building corpus")
    clips: list[Clip] = []
    labels: list[str] = []
    for name, cs in [("piper", piper_clips(args.n_speech, seed=args.seed)),
                     *tool_clips(args.n_tool, seed=args.seed).items(),
                     ("synth", synth_clips(args.n_synth, seed=args.seed))]:
        clips += cs
        labels += [name] * len(cs)
    key = (b"guardrail-audio-eval-key-" + str(args.seed).encode()).ljust(32, b"0")
    human = [] if args.no_keyless else human_clips(args.n_human, seed=args.seed)
    result = evaluate(clips, key=key, fpr=args.fpr, n_unmarked=args.n_unmarked,
                      labels=labels, seed=args.seed, progress=say,
                      keyless=not args.no_keyless, human=human)
    result["corpus"] = {lab: labels.count(lab) for lab in sorted(set(labels))}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        say(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
