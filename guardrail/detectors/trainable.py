"""Detectors trained by users on their own labelled data, saved and loaded by name.

A trained detector is two files in ``<data_dir>/detectors/``: ``NAME.joblib`` (the
scikit-learn estimator) and ``NAME.json`` (metadata: kind, modality, operating point and
its measured false-positive rate, training data counts, metrics, library versions).

Kinds (see :data:`TRAINABLE_KINDS`):

``spectral``        images: :func:`~guardrail.detectors.features.spectral_features` +
                    logistic regression.
``lfcc``            audio: pooled LFCC statistics + logistic regression.
``fast-detectgpt``  text: the Fast-DetectGPT criterion of the configured scoring model,
                    calibrated to a probability by a one-feature logistic regression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Artifact, Modality
from ..errors import ConfigError, ModelLoadError
from .base import BaseDetector, as_float_audio, as_rgb
from .metrics import threshold_at_fpr

__all__ = ["TRAINABLE_KINDS", "TrainedDetector", "detectors_dir", "fit_classifier",
           "list_trained", "load_trained", "save_trained"]

TRAINABLE_KINDS: dict[str, Modality] = {
    "spectral": Modality.IMAGE,
    "lfcc": Modality.AUDIO,
    "fast-detectgpt": Modality.TEXT,
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_IMAGE_SIDE = 64
MIN_AUDIO_SECONDS = 0.5


def detectors_dir(data_dir: str | Path) -> Path:
    """``<data_dir>/detectors``."""
    return Path(data_dir) / "detectors"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"invalid detector name {name!r}: use letters, digits, '.', '_', '-'")
    return name


def feature_fn(kind: str, *, text_scorer: Any = None) -> Callable[[Artifact], np.ndarray]:
    """The function turning an artifact into a feature vector for ``kind``."""
    from .features import lfcc_features, spectral_features

    if kind == "spectral":
        return lambda a: spectral_features(as_rgb(a, min_side=MIN_IMAGE_SIDE))
    if kind == "lfcc":
        return lambda a: lfcc_features(*as_float_audio(a, min_seconds=MIN_AUDIO_SECONDS))
    if kind == "fast-detectgpt":
        if text_scorer is None:
            raise ConfigError("kind 'fast-detectgpt' needs a scoring model (a text generator)")
        return lambda a: np.array([text_scorer.criterion(a.content)])
    raise ConfigError(f"unknown trainable kind {kind!r}; choose one of: "
                      f"{', '.join(TRAINABLE_KINDS)}")


def fit_classifier(X: np.ndarray, y: np.ndarray, *, target_fpr: float = 0.05,
                   seed: int = 0) -> tuple[Any, float, float, dict[str, Any]]:
    """Fit scaler + logistic regression; choose the operating point on held-out data.

    With at least 8 examples of each class, a stratified quarter is held out: the
    threshold is the lowest whose false-positive rate on its real examples is
    ``<= target_fpr``, and that rate is reported. With fewer, the threshold is chosen on
    the training data itself (optimistic; the metadata says so).

    Returns
    -------
    (estimator, threshold, operating_fpr, info)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=1.0, class_weight="balanced", max_iter=2000, random_state=seed))

    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ConfigError("training needs at least 2 real and 2 synthetic examples")
    if counts.min() >= 8:
        Xa, Xc, ya, yc = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
        how = "held-out calibration split (25%)"
    else:
        Xa, Xc, ya, yc = X, X, y, y
        how = "training data (too few examples for a held-out split: optimistic)"
    est = make().fit(Xa, ya)
    cal = est.predict_proba(Xc)[:, 1]
    thr, fpr = threshold_at_fpr(cal[yc == 0], target_fpr)
    thr = min(thr, 1.0)
    if how.startswith("held-out"):
        est = make().fit(X, y)  # final model on everything; operating point from the split
    info = {"operating_point_from": how, "n_calibration": int(len(yc)),
            "target_fpr": target_fpr}
    return est, float(thr), float(fpr), info


class TrainedDetector(BaseDetector):
    """A saved, user-trained detector (see the module docstring)."""

    def __init__(self, name: str, estimator: Any, meta: dict[str, Any], *,
                 text_scorer: Any = None, threshold: float | None = None) -> None:
        super().__init__(threshold=float(meta["threshold"] if threshold is None else threshold),
                         operating_fpr=meta.get("operating_fpr") if threshold is None else None)
        self.name = name
        self.kind = meta["kind"]
        self.modality = Modality.parse(meta["modality"])
        self.model_version = f"{self.kind}:{name}@{meta.get('created_at', '?')}"
        self.meta = meta
        self.estimator = estimator
        self._features = feature_fn(self.kind, text_scorer=text_scorer) if (
            self.kind != "fast-detectgpt" or text_scorer is not None) else None
        self.text_scorer = text_scorer

    def load(self) -> None:
        if self._features is None:
            raise ModelLoadError(self.name, f"needs its scoring model "
                                 f"({self.meta.get('scoring_model')}); none was given")
        if self.text_scorer is not None:
            self.text_scorer.load()

    def score(self, artifact: Artifact) -> tuple[float, str]:
        assert self._features is not None
        if self.text_scorer is not None:
            self.text_scorer.check(artifact)
        x = self._features(artifact)
        p = float(self.estimator.predict_proba(x.reshape(1, -1))[0, 1])
        fpr = self.operating_fpr
        return p, (f"{self.kind} classifier trained on {self.meta.get('n_real')} real / "
                   f"{self.meta.get('n_synthetic')} synthetic examples; operating point "
                   f"{self.threshold:.3f}" + (f" (FPR {fpr:.3f} measured on "
                                              f"{self.meta.get('operating_point_from')})"
                                              if fpr is not None else ""))


def save_trained(data_dir: str | Path, name: str, estimator: Any,
                 meta: dict[str, Any]) -> Path:
    """Write ``NAME.joblib`` and ``NAME.json``; returns the JSON path."""
    import joblib
    import sklearn

    _check_name(name)
    folder = detectors_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "name": name, "sklearn_version": sklearn.__version__,
            "created_at": meta.get("created_at") or datetime.now(UTC).isoformat()}
    joblib.dump(estimator, folder / f"{name}.joblib")
    path = folder / f"{name}.json"
    path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path


def load_trained(data_dir: str | Path, name: str, *, text_scorer: Any = None,
                 threshold: float | None = None) -> TrainedDetector:
    """Load a saved detector by name; :class:`ModelLoadError` if missing or unreadable.

    Only load models you trained yourself: joblib files are pickles and run code on load.
    """
    import joblib

    _check_name(name)
    folder = detectors_dir(data_dir)
    meta_path, model_path = folder / f"{name}.json", folder / f"{name}.joblib"
    if not meta_path.is_file() or not model_path.is_file():
        known = ", ".join(list_trained(data_dir)) or "none"
        raise ModelLoadError(name, f"no trained detector named {name!r} in {folder} "
                             f"(trained detectors: {known})",
                             hint="train one with `guardrail detectors train`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        est = joblib.load(model_path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a load error
        raise ModelLoadError(name, f"cannot load trained detector: {exc}") from None
    return TrainedDetector(name, est, meta, text_scorer=text_scorer, threshold=threshold)


def list_trained(data_dir: str | Path) -> list[str]:
    """Names of the saved detectors."""
    folder = detectors_dir(data_dir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.joblib").is_file())


def features_for(artifacts: Sequence[Artifact], kind: str, *,
                 text_scorer: Any = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Feature matrix of the usable artifacts, their indices, and the reasons others failed."""
    from .base import NotPerformed

    fn = feature_fn(kind, text_scorer=text_scorer)
    rows, kept, skipped = [], [], []
    for i, a in enumerate(artifacts):
        try:
            if text_scorer is not None:
                text_scorer.check(a)
            rows.append(fn(a))
            kept.append(i)
        except NotPerformed as exc:
            skipped.append(f"#{i}: {exc.reason}")
    X = np.vstack(rows) if rows else np.zeros((0, 0))
    return X, kept, skipped
