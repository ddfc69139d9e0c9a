"""Fixtures of the service tests: a configuration with keys and no detectors (fast), a
photo-like image generator whose outputs carry guardrail's watermark, the application
behind Starlette's test client, and API keys."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient

from guardrail import Config, Generated, Modality, ModelInfo, ReportStore, init_keys
from guardrail.serve.app import create_app
from guardrail.serve.auth import create_key

ALL_SCOPES = ("verify", "fetch:manifests", "generate", "reports:read")


class PhotoGenerator:
    """Photo-like 320-px images (smooth gradients and shapes), which carry the mark."""

    modality = Modality.IMAGE

    def __init__(self) -> None:
        self.info = ModelInfo(model_id="fake:photo", revision="1", device="cpu")

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None, hooks: Any = None) -> list[Generated]:
        from PIL import Image

        from guardrail.benchmarks.provenance import test_image

        base = np.asarray(Image.open(io.BytesIO(test_image(320))).convert("RGB"))
        out = []
        for i, _ in enumerate(prompts):
            shift = int(seed or 0) + i
            out.append(Generated(content=np.roll(base, 7 * shift, axis=1).copy(),
                                 parameters={"seed": seed}))
        return out


def make_config(tmp_path: Path, **serve: Any) -> Config:
    cfg = Config.load(overrides={
        "paths": {"data_dir": str(tmp_path / "data")},
        "detectors": {"image": [], "text": [], "audio": []},
        "serve": serve})
    init_keys(cfg)
    return cfg


@pytest.fixture
def serve_config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def client(serve_config: Config) -> Iterator[TestClient]:
    app = create_app(serve_config, generators={"image": PhotoGenerator()})
    with TestClient(app) as c:
        yield c


@pytest.fixture
def token(serve_config: Config) -> str:
    """A key with every scope."""
    with ReportStore(serve_config.store_url) as store:
        tok, _ = create_key(store, "tests", ALL_SCOPES)
    return tok


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
def generated(client: TestClient, token: str) -> dict[str, Any]:
    """One guarded image made through the API: its answer and the output's bytes."""
    r = client.post("/v1/generate", json={"modality": "image", "prompt": "a photo", "seed": 1},
                    headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["report"]["status"] == "ok", body["report"]["stages"]
    out = client.get(body["output"]["url"], headers=bearer(token))
    assert out.status_code == 200
    return {**body, "bytes": out.content}
