"""Shared, session-scoped models and inputs for the detector tests."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail._types import Artifact, GenerationMetadata, Modality

MD = GenerationMetadata(model_id="test")


def art(modality: str, content, sample_rate: int | None = None) -> Artifact:
    return Artifact(modality=Modality.parse(modality), content=content, metadata=MD,
                    sample_rate=sample_rate)


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    from guardrail.corpora import natural_images

    return [a for _, a in natural_images()]


@pytest.fixture(scope="session")
def digit_images() -> list[np.ndarray]:
    from guardrail import load_generator

    g = load_generator("image", progress=False)
    return [r.content for r in g.generate(["a handwritten digit seven", "a handwritten digit two",
                                           "a handwritten digit four"], seed=1,
                                          params={"steps": 10})]


@pytest.fixture(scope="session")
def text_generator():
    from guardrail import load_generator

    return load_generator("text", progress=False)
