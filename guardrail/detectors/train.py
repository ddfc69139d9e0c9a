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
          n_bootstrap: int = 1000) -> dict[str, Any]:
    """Fit a trainable detector on a stratified split, evaluate it on the held-out part,
    then save it (fitted on the training part) as ``name`` in ``<data_dir>/detectors``.

    Returns
    -------
    dict
        ``{"name", "kind", "path", "threshold", "operating_fpr", "metrics", "roc",
        "n_train", "n_test", "skipped"}``. ``metrics`` is ``None`` when the test part
        lacks a class (too few files).
    """
    from sklearn.model_selection import train_test_split

    if kind not in TRAINABLE_KINDS:
        raise ConfigError(f"unknown trainable kind {kind!r}; choose one of: "
                          f"{', '.join(TRAINABLE_KINDS)}")
    modality = TRAINABLE_KINDS[kind]
    arts, y_all, skipped = _labelled(real_dir, synthetic_dir, modality, limit)
    X, kept, why = features_for(arts, kind, text_scorer=text_scorer)
    skipped += why
    y = y_all[kept]
    counts = np.bincount(y, minlength=2)
    if counts.min() < 3:
        raise InputError(f"too few usable examples ({counts[0]} real, {counts[1]} synthetic; "
                         "need at least 3 of each)")
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, stratify=y,
                                          random_state=seed)
    est, thr, fpr, info = fit_classifier(Xtr, ytr, target_fpr=target_fpr, seed=seed)
    scores = est.predict_proba(Xte)[:, 1]
    m = metrics(yte, scores, n_bootstrap=n_bootstrap, seed=seed) if len(set(yte)) == 2 else None
    if m is not None:
        m["test_fpr_at_threshold"] = float(np.mean(scores[yte == 0] >= thr))
        m["test_tpr_at_threshold"] = float(np.mean(scores[yte == 1] >= thr))
    meta = {"kind": kind, "modality": modality.value, "threshold": thr, "operating_fpr": fpr,
            "n_real": int((ytr == 0).sum()), "n_synthetic": int((ytr == 1).sum()),
            "n_test": int(len(yte)), "real_dir": str(real_dir),
            "synthetic_dir": str(synthetic_dir), "seed": seed, "test_metrics": m, **info}
    if text_scorer is not None:
        meta.update(scoring_model=text_scorer.model_version, min_tokens=text_scorer.min_tokens,
                    max_tokens=text_scorer.max_tokens)
    path = save_trained(data_dir, name, est, meta)
    return {"name": name, "kind": kind, "modality": modality.value, "path": str(path),
            "threshold": thr, "operating_fpr": fpr, "metrics": m,
            "roc": roc_points(yte, scores) if m is not None else [],
            "n_train": int(len(ytr)), "n_test": int(len(yte)), "skipped": skipped}


def score_artifacts(detector: Any, artifacts: list[Artifact]) -> tuple[list[float | None],
                                                                         list[str]]:
    """Probabilities (``None`` where not performed) and the not-performed reasons."""
    probs: list[float | None] = []
    reasons: list[str] = []
    for i, a in enumerate(artifacts):
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
