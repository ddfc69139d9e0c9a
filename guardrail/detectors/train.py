"""Train, calibrate and evaluate detectors on labelled folders.

``real_dir`` holds human / natural content, ``synthetic_dir`` generated content: images
(.png .jpg .jpeg .webp), audio (.wav .flac .mp3 .ogg) or texts (.txt, one text per file).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Artifact, GenerationMetadata, Modality
from ..errors import ConfigError, InputError, UnsupportedMediaError
from .metrics import metrics, roc_points
from .trainable import TRAINABLE_KINDS, features_for, fit_classifier, save_trained

__all__ = ["evaluate", "load_folder", "score_artifacts", "train"]

_EXT = {Modality.IMAGE: {".png", ".jpg", ".jpeg", ".webp"},
        Modality.AUDIO: {".wav", ".flac", ".mp3", ".ogg"},
        Modality.TEXT: {".txt"}}


def load_folder(folder: str | Path, modality: Modality, *,
                limit: int | None = None) -> tuple[list[Artifact], list[str]]:
    """Artifacts of ``modality`` in ``folder`` (sorted by name) and the files skipped
    (with the reason: unreadable, undecodable, beyond the default ``[limits]``)."""
    from ..config import Limits
    from ..media import read_bytes, read_file

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{str(root)!r} is not a folder")
    arts: list[Artifact] = []
    skipped: list[str] = []
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        if f.suffix.lower() not in _EXT[modality]:
            continue
        if limit is not None and len(arts) >= limit:
            break
        try:
            if modality is Modality.TEXT:
                text = read_bytes(f).decode("utf-8", errors="replace")
                if len(text) > Limits().max_text_chars:
                    raise UnsupportedMediaError(f"{len(text)} characters, above the limit of "
                                                f"{Limits().max_text_chars} (limits.max_text_chars)")
                art = Artifact(modality=Modality.TEXT, content=text.strip(),
                               metadata=GenerationMetadata(model_id=f"file:{f.name}"))
            else:
                art = read_file(f)
        except (OSError, UnsupportedMediaError) as exc:
            skipped.append(f"{f.name}: {exc}")
            continue
        if art.modality is modality:
            arts.append(art)
        else:
            skipped.append(f"{f.name}: {art.modality.value}, not {modality.value}")
    return arts, skipped


def _labelled(real_dir: Any, synthetic_dir: Any, modality: Modality,
              limit: int | None) -> tuple[list[Artifact], np.ndarray, list[str]]:
    real, s1 = load_folder(real_dir, modality, limit=limit)
    synth, s2 = load_folder(synthetic_dir, modality, limit=limit)
    if not real or not synth:
        raise InputError(f"need {modality.value} files in both folders (found {len(real)} "
                         f"real, {len(synth)} synthetic)")
    return real + synth, np.array([0] * len(real) + [1] * len(synth)), s1 + s2


def train(kind: str, real_dir: str | Path, synthetic_dir: str | Path, name: str, *,
          data_dir: str | Path, test_size: float = 0.3, target_fpr: float = 0.05,
          seed: int = 0, text_scorer: Any = None, limit: int | None = None,
          n_bootstrap: int = 1000,
          heldout: tuple[str | Path, str | Path] | None = None) -> dict[str, Any]:
    """Fit a trainable detector on a stratified split, evaluate it on the held-out part,
    then save it (fitted on the training part) as ``name`` in ``<data_dir>/detectors``.

    With ``heldout`` (a second pair of real / synthetic folders sharing no item with the
    first), ``test_size`` may be 0 (fit on all of the first pair), the detector is also
    evaluated there, and the false-positive rate it states (``operating_fpr``) is the one
    measured on the held-out real items, with its Clopper-Pearson and Wilson intervals
    (``heldout`` in the saved metadata), not the rate on the data it was fitted on.

    Returns
    -------
    dict
        ``{"name", "kind", "path", "threshold", "operating_fpr", "metrics", "roc",
        "n_train", "n_test", "skipped", "heldout"}``. ``metrics`` is ``None`` when the
        test part lacks a class (too few files) or ``test_size`` is 0.
    """
    from sklearn.model_selection import train_test_split

    if kind not in TRAINABLE_KINDS:
        raise ConfigError(f"unknown trainable kind {kind!r}; choose one of: "
                          f"{', '.join(TRAINABLE_KINDS)}")
    if test_size == 0 and heldout is None:
        raise InputError("--test-size 0 needs --heldout REAL_DIR SYNTHETIC_DIR (the "
                         "detector must be evaluated on data it was not fitted on)")
    modality = TRAINABLE_KINDS[kind]
    arts, y_all, skipped = _labelled(real_dir, synthetic_dir, modality, limit)
    X, kept, why = features_for(arts, kind, text_scorer=text_scorer)
    skipped += why
    y = y_all[kept]
    counts = np.bincount(y, minlength=2)
    if counts.min() < 3:
        raise InputError(f"too few usable examples ({counts[0]} real, {counts[1]} synthetic; "
                         "need at least 3 of each)")
    if test_size == 0:
        Xtr, Xte, ytr, yte = X, X[:0], y, y[:0]
    else:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y,
                                              random_state=seed)
    est, thr, fpr, info = fit_classifier(Xtr, ytr, target_fpr=target_fpr, seed=seed)
    scores = est.predict_proba(Xte)[:, 1] if len(yte) else np.zeros(0)
    m = metrics(yte, scores, n_bootstrap=n_bootstrap, seed=seed) if len(set(yte)) == 2 else None
    held = None
    if heldout is not None:
        held = _heldout(est, thr, kind, heldout, modality, text_scorer=text_scorer,
                        limit=limit, n_bootstrap=n_bootstrap, seed=seed)
        info = {**info, "fitted_fpr": fpr,
                "operating_point_from": f"{held['n_real']} held-out real examples (no item "
                                        "shared with the fitting data); 95% interval "
                                        f"[{held['fpr_ci'][0]:.3f}, {held['fpr_ci'][1]:.3f}]"}
        fpr = held["fpr"]
    if m is not None:
        m["test_fpr_at_threshold"] = float(np.mean(scores[yte == 0] >= thr))
        m["test_tpr_at_threshold"] = float(np.mean(scores[yte == 1] >= thr))
    meta = {"kind": kind, "modality": modality.value, "threshold": thr, "operating_fpr": fpr,
            "n_real": int((ytr == 0).sum()), "n_synthetic": int((ytr == 1).sum()),
            "n_test": int(len(yte)), "real_dir": str(real_dir),
            "synthetic_dir": str(synthetic_dir), "seed": seed, "test_metrics": m, **info}
    if held is not None:
        meta["heldout"] = {k: v for k, v in held.items() if k != "roc"}
    if text_scorer is not None:
        meta.update(scoring_model=text_scorer.model_version, min_tokens=text_scorer.min_tokens,
                    max_tokens=text_scorer.max_tokens,
                    scoring_dtype=str(getattr(text_scorer.model, "dtype", "")).replace(
                        "torch.", "") or None)
    path = save_trained(data_dir, name, est, meta)
    return {"name": name, "kind": kind, "modality": modality.value, "path": str(path),
            "threshold": thr, "operating_fpr": fpr, "metrics": m,
            "roc": roc_points(yte, scores) if m is not None else [],
            "n_train": int(len(ytr)), "n_test": int(len(yte)), "skipped": skipped,
            "heldout": meta.get("heldout")}


def _heldout(est: Any, thr: float, kind: str, folders: tuple[str | Path, str | Path],
             modality: Modality, *, text_scorer: Any, limit: int | None, n_bootstrap: int,
             seed: int) -> dict[str, Any]:
    """Rates of a fitted detector at threshold ``thr`` on held-out folders, with intervals;
    the true-positive rate also per file-name prefix (e.g. the parts of a guard corpus)."""
    from ..stats import clopper_pearson, wilson

    arts, y_all, _ = _labelled(folders[0], folders[1], modality, limit)
    X, kept, why = features_for(arts, kind, text_scorer=text_scorer)
    if not kept:
        raise InputError(f"no held-out example could be scored ({'; '.join(why[:3])})")
    y = y_all[kept]
    s = est.predict_proba(X)[:, 1]
    real, synth = s[y == 0], s[y == 1]
    if not len(real) or not len(synth):
        raise InputError("the held-out folders need scorable real and synthetic examples")
    fp, tp = int((real >= thr).sum()), int((synth >= thr).sum())
    out: dict[str, Any] = {
        "real_dir": str(folders[0]), "synthetic_dir": str(folders[1]),
        "n_real": int(len(real)), "n_synthetic": int(len(synth)),
        "not_performed": len(why), "false_positives": fp, "fpr": fp / len(real),
        "fpr_ci": list(clopper_pearson(fp, len(real))), "fpr_wilson": list(wilson(fp, len(real))),
        "tpr": tp / len(synth), "tpr_ci": list(clopper_pearson(tp, len(synth))),
        "metrics": metrics(y, s, n_bootstrap=n_bootstrap, seed=seed)}
    names = [str(arts[i].metadata.model_id).removeprefix("file:") for i in kept]
    parts: dict[str, list[bool]] = {}
    for name, label, score in zip(names, y, s, strict=True):
        if label == 1:
            parts.setdefault(name.rsplit("-", 1)[0] if "-" in name else "all", []).append(
                bool(score >= thr))
    if len(parts) > 1:
        out["tpr_by_part"] = {p: {"n": len(v), "tpr": sum(v) / len(v),
                                  "ci": list(clopper_pearson(sum(v), len(v)))}
                              for p, v in sorted(parts.items())}
    return out


def score_artifacts(detector: Any, artifacts: list[Artifact]) -> tuple[list[float | None],
                                                                         list[str]]:
    """Probabilities (``None`` where not performed) and the not-performed reasons."""
    from ..progress import bar

    probs: list[float | None] = []
    reasons: list[str] = []
    for i, a in enumerate(bar(artifacts, desc=f"scoring with {detector.name}", unit="file")):
        r = detector.detect(a)
        probs.append(r.probability)
        if r.probability is None:
            reasons.append(f"#{i}: {r.reason}")
    return probs, reasons


def evaluate(detector: Any, real_dir: str | Path, synthetic_dir: str | Path, *,
             limit: int | None = None, n_bootstrap: int = 1000,
             seed: int = 0) -> dict[str, Any]:
    """Score labelled folders with ``detector``: metrics with bootstrap CIs, the ROC points
    and the false-positive / true-positive rates at its configured operating point."""
    arts, y, skipped = _labelled(real_dir, synthetic_dir, detector.modality, limit)
    probs, reasons = score_artifacts(detector, arts)
    ok = np.array([p is not None for p in probs])
    s = np.array([p for p in probs if p is not None], dtype=float)
    yk = y[ok]
    if len(set(yk.tolist())) < 2:
        raise InputError(f"the detector could not score both classes ({'; '.join(reasons[:5])})")
    m = metrics(yk, s, n_bootstrap=n_bootstrap, seed=seed)
    thr = getattr(detector, "threshold", None)
    if thr is not None:
        m["fpr_at_threshold"] = float(np.mean(s[yk == 0] >= thr))
        m["tpr_at_threshold"] = float(np.mean(s[yk == 1] >= thr))
    return {"detector": detector.name, "model_version": detector.model_version,
            "modality": detector.modality.value, "threshold": thr,
            "claimed_operating_fpr": getattr(detector, "operating_fpr", None),
            "metrics": m, "roc": roc_points(yk, s), "n_not_performed": int((~ok).sum()),
            "not_performed": reasons, "skipped_files": skipped}


def evaluation_record(result: dict[str, Any], *, name: str, config: dict[str, Any]) -> Any:
    """A :class:`~guardrail.store.Evaluation` (kind ``detector_eval``) of ``result``."""
    from ..store import Evaluation

    m = result.get("metrics") or {}
    rows = result.get("roc") or ([m] if m else [])
    summary = {k: v for k, v in m.items()}
    summary.update({k: result.get(k) for k in ("threshold", "operating_fpr", "model_version",
                                               "claimed_operating_fpr") if k in result})
    return Evaluation(evaluation_id=f"det-{uuid.uuid4().hex[:12]}", kind="detector_eval",
                      name=name, created_at=datetime.now(UTC).isoformat(), config=config,
                      summary=summary, rows=rows)
