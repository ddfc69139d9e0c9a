"""Detectors trained by users on their own labelled data, saved and loaded by name.

A trained detector is one JSON file, ``<data_dir>/detectors/NAME.json``: metadata (kind,
modality, operating point and its measured false-positive rate, training data counts,
metrics, library versions) and the fitted model as plain numbers (standardisation means
and scales, logistic coefficients). No pickles: loading a detector someone sent you runs
no code.

Calibrations that ship with guardrail (``guardrail/detectors/calibrations/NAME.json``,
e.g. ``fast-detectgpt-smollm2`` for the embedded text model) are found by name when
``<data_dir>/detectors`` has no detector of that name; one trained there wins.

Kinds (see :data:`TRAINABLE_KINDS`):

``spectral``        images: :func:`~guardrail.detectors.features.spectral_features` +
                    logistic regression.
``lfcc``            audio: pooled LFCC statistics + logistic regression.
``fast-detectgpt``  text: the Fast-DetectGPT criterion of the configured scoring model,
                    calibrated to a probability by a one-feature logistic regression.
``binoculars``      text: the Binoculars score (observer + performer), calibrated likewise.
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

__all__ = ["SHIPPED_DIR", "TRAINABLE_KINDS", "LogisticModel", "TrainedDetector",
           "detectors_dir", "fit_classifier", "trained_kind", "list_trained", "load_trained", "save_trained"]

#: calibrations shipped as package data
SHIPPED_DIR = Path(__file__).resolve().parent / "calibrations"

TRAINABLE_KINDS: dict[str, Modality] = {
    "spectral": Modality.IMAGE,
    "lfcc": Modality.AUDIO,
    "fast-detectgpt": Modality.TEXT,
    "binoculars": Modality.TEXT,
}
#: kinds whose feature is a zero-shot criterion computed by a scoring language model
ZERO_SHOT_KINDS = ("fast-detectgpt", "binoculars")
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
    if kind in ZERO_SHOT_KINDS:
        if text_scorer is None:
            raise ConfigError(f"kind {kind!r} needs a scoring model (a text generator)")
        return lambda a: np.array([text_scorer.criterion(a.content)])
    raise ConfigError(f"unknown trainable kind {kind!r}; choose one of: "
                      f"{', '.join(TRAINABLE_KINDS)}")


class LogisticModel:
    """Standardisation + logistic regression as plain numbers (what every trainable kind
    fits), so a detector is saved as JSON and loads without unpickling anything.

    ``predict_proba(X)[:, 1] = sigmoid(((X - mean) / scale) @ coef + intercept)``
    """

    def __init__(self, mean: Sequence[float], scale: Sequence[float], coef: Sequence[float],
                 intercept: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        if not (self.mean.shape == self.scale.shape == self.coef.shape and self.mean.ndim == 1):
            raise ValueError("mean, scale and coef must be vectors of one length")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.coef))
                and np.all(self.scale > 0) and np.isfinite(self.intercept)):
            raise ValueError("model parameters must be finite, scales positive")

    @classmethod
    def from_sklearn(cls, pipeline: Any) -> LogisticModel:
        """From the ``StandardScaler + LogisticRegression`` pipeline of :func:`fit_classifier`."""
        scaler, clf = pipeline[0], pipeline[-1]
        return cls(scaler.mean_, scaler.scale_, clf.coef_[0], clf.intercept_[0])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticModel:
        return cls(d["mean"], d["scale"], d["coef"], d["intercept"])

    def to_dict(self) -> dict[str, Any]:
        return {"type": "standardised-logistic", "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(self.coef))
        z = ((X - self.mean) / self.scale) @ self.coef + self.intercept
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        return np.column_stack([1 - p, p])


def fit_classifier(X: np.ndarray, y: np.ndarray, *, target_fpr: float = 0.05,
                   seed: int = 0) -> tuple[Any, float, float, dict[str, Any]]:
    """Fit scaler + logistic regression; choose the operating point on held-out data.

    With a single feature the calibration is monotone: the threshold is the quantile of
    all real examples' scores that meets ``target_fpr``. Otherwise, with at least 8
    examples of each class, a stratified quarter is held out: the
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
    if X.ndim == 2 and X.shape[1] == 1:
        # one feature (a zero-shot criterion): the calibration is monotone, so the operating
        # point is a quantile of the real examples' scores - estimated on all of them
        est = make().fit(X, y)
        if float(est[-1].coef_[0][0]) <= 0:
            raise ConfigError("the criterion does not separate the classes on this data "
                              "(synthetic examples do not score higher than real ones)")
        thr, fpr = threshold_at_fpr(est.predict_proba(X[y == 0])[:, 1], target_fpr)
        return est, float(min(thr, 1.0)), float(fpr), {
            "operating_point_from": f"all {int(counts[0])} real training examples (one "
                                    "feature: a monotone calibration, the threshold is a "
                                    "quantile of the real scores)",
            "n_calibration": int(len(y)), "target_fpr": target_fpr}
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
            self.kind not in ZERO_SHOT_KINDS or text_scorer is not None) else None
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
    """Write ``NAME.json`` (metadata + model parameters) atomically; returns its path."""
    import sklearn

    from ..media import atomic_write

    _check_name(name)
    model = estimator if isinstance(estimator, LogisticModel) else \
        LogisticModel.from_sklearn(estimator)
    folder = detectors_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "name": name, "sklearn_version": sklearn.__version__,
            "created_at": meta.get("created_at") or datetime.now(UTC).isoformat(),
            "model": model.to_dict()}
    path = folder / f"{name}.json"
    data = json.dumps(meta, indent=2, sort_keys=True, default=str).encode("utf-8")
    return atomic_write(path, data)


def _find(data_dir: str | Path, name: str) -> Path | None:
    for folder in (detectors_dir(data_dir), SHIPPED_DIR):
        path = folder / f"{name}.json"
        if path.is_file():
            return path
    return None


def _kind_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def trained_kind(data_dir: str | Path, name: str) -> str | None:
    """The ``kind`` of the saved or shipped detector ``name`` (``None`` if unknown)."""
    path = _find(data_dir, name) if _NAME.match(name) else None
    return _kind_of(path) if path else None


def load_trained(data_dir: str | Path, name: str, *, text_scorer: Any = None,
                 threshold: float | None = None) -> TrainedDetector:
    """Load a saved detector by name (``<data_dir>/detectors`` first, then the shipped
    calibrations); :class:`ModelLoadError` if missing or unreadable."""
    _check_name(name)
    path = _find(data_dir, name)
    if path is None:
        known = ", ".join(list_trained(data_dir)) or "none"
        raise ModelLoadError(name, f"no trained detector named {name!r} in "
                             f"{detectors_dir(data_dir)} (trained detectors: {known})",
                             hint="train one with `guardrail detectors train`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        model = LogisticModel.from_dict(meta["model"])
        missing = [k for k in ("kind", "modality", "threshold") if k not in meta]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
        if meta["kind"] not in TRAINABLE_KINDS:
            raise ValueError(f"unknown kind {meta['kind']!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(name, f"cannot load trained detector {path}: "
                             f"{type(exc).__name__}: {exc}") from None
    meta["path"] = str(path)
    meta["shipped"] = path.parent == SHIPPED_DIR
    expected = meta.get("scoring_model")
    if text_scorer is not None and expected and text_scorer.model_version != expected:
        raise ModelLoadError(name, f"calibrated for scoring model {expected!r}, but the "
                             f"configured text model is {text_scorer.model_version!r}",
                             hint="calibrate it with `guardrail detectors train "
                                  f"{meta['kind']} HUMAN_DIR GENERATED_DIR --name {name}`")
    return TrainedDetector(name, model, meta, text_scorer=text_scorer, threshold=threshold)


def list_trained(data_dir: str | Path) -> list[str]:
    """Names of the saved detectors and of the shipped calibrations."""
    names = set()
    for folder in (detectors_dir(data_dir), SHIPPED_DIR):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.json")
                         if _kind_of(p) in TRAINABLE_KINDS)
    return sorted(names)


def features_for(artifacts: Sequence[Artifact], kind: str, *,
                 text_scorer: Any = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Feature matrix of the usable artifacts, their indices, and the reasons others failed."""
    from ..progress import bar
    from .base import NotPerformed

    fn = feature_fn(kind, text_scorer=text_scorer)
    rows, kept, skipped = [], [], []
    for i, a in enumerate(bar(artifacts, desc=f"{kind} features", unit="file")):
        try:
            if text_scorer is not None:
                text_scorer.check(a)
            rows.append(fn(a))
            kept.append(i)
        except NotPerformed as exc:
            skipped.append(f"#{i}: {exc.reason}")
    X = np.vstack(rows) if rows else np.zeros((0, 0))
    return X, kept, skipped
