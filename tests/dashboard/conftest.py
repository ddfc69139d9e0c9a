"""A seeded record store for the dashboard tests: reports of every modality and status,
an image output on disk, and audit, robustness and detector evaluations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from guardrail import GenerationMetadata, Report, ReportStore, StageRecord
from guardrail.store import Evaluation

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
N_REPORTS = 30
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _stages(status: str) -> list[StageRecord]:
    wm = "ok" if status != "error" else "skipped"
    out = [StageRecord("input_policy", "ok", 0.1), StageRecord("generate", "ok", 120.0),
           StageRecord("watermark", wm, 8.0, None if wm == "ok" else "no key"),
           StageRecord("self_check", wm, 4.0), StageRecord("provenance", "ok", 13.0)]
    if status == "flagged":
        out.append(StageRecord("output_checks", "flagged", 1.0, "blocked term 'xyz'"))
    if status == "blocked":
        out.append(StageRecord("output_checks", "blocked", 1.0, "policy says no"))
    return out


def make_report(i: int, *, output: str | None = None, modality: str | None = None) -> Report:
    modality = modality or ("text", "image", "audio")[i % 3]
    status = {7: "flagged", 11: "blocked", 13: "error"}.get(i % 15, "ok")
    evidence = {"watermark": {"scheme": f"guardrail-{modality}", "version": "1",
                              "key_id": "k-0001", "payload": f"{i:08x}"},
                "provenance": {"state": "TRUSTED", "signer": "CN=test signer",
                               "manifest_summary": {"title": "generated output",
                                                    "signer": {"common_name": "test signer"},
                                                    "actions": [{"action": "c2pa.created"}]}}}
    return Report(
        report_id=f"r{i:05d}" + "a" * 26, created_at=(T0 + timedelta(hours=7 * i)).isoformat(),
        modality=modality, status=status,
        metadata=GenerationMetadata(model_id=f"fake:{modality}", seed=i),
        stages=tuple(_stages(status)), content_hash=f"sha256:{i:064x}", output=output,
        media_type={"image": "image/png", "audio": "audio/wav", "text": "text/plain"}[modality],
        error="generator crashed: out of memory" if status == "error" else None,
        extra={"evidence": evidence})


def audit(name: str, shift: float, when: datetime) -> Evaluation:
    rows = [{"group": g, "metric": m, "value": v + shift, "ci_low": v + shift - 0.05,
             "ci_high": v + shift + 0.05, "n": 200}
            for m, base in (("refusal_rate", 0.1), ("toxicity_rate", 0.02))
            for g, v in (("group A", base), ("group B", base * 2), ("group C", base * 1.5))]
    return Evaluation(evaluation_id=f"audit-{name}", kind="audit", name=name,
                      created_at=when.isoformat(),
                      summary={"flags": ["refusal_rate: B vs A"], "generations": 1200},
                      rows=rows)


def seed(store: ReportStore, image_dir: Path) -> None:
    from PIL import Image

    image_dir.mkdir(parents=True, exist_ok=True)
    img = image_dir / "out.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img)
    for i in range(N_REPORTS):
        store.save(make_report(i, output=str(img) if i == 1 else None))
    store.save_evaluation(audit("occupations v1", 0.0, T0))
    store.save_evaluation(audit("occupations v2", 0.03, T0 + timedelta(days=1)))
    store.save_evaluation(Evaluation(
        evaluation_id="rob-1", kind="robustness", name="image watermarks",
        created_at=T0.isoformat(),
        rows=[{"scheme": s, "attack": a, "tpr": t}
              for s in ("guardrail-image", "dwtDct")
              for a, t in (("none", 1.0), ("jpeg-50", 0.9), ("crop-0.5", 0.4))]))
    store.save_evaluation(Evaluation(  # a text lab run, older: not the default pick
        evaluation_id="rob-text", kind="robustness", name="text watermarks",
        created_at=(T0 - timedelta(days=1)).isoformat(), summary={"scheme": "kgw"},
        rows=[{"attack": "none", "strength": None, "tpr": 1.0},
              {"attack": "word_deletion", "strength": 0.2, "tpr": 0.95},
              *({"attack": "first_tokens", "strength": n, "tpr": t, "ci_low": t - 0.1,
                 "ci_high": min(1.0, t + 0.1), "performed": 48}
                for n, t in ((24, 0.5), (48, 0.85), (96, 0.98)))]))
    store.save_evaluation(Evaluation(
        evaluation_id="det-1", kind="detector_eval", name="image detectors",
        created_at=T0.isoformat(), summary={"corpus": "toy photos"},
        rows=[{"detector": "toy", "auc": 0.9, "fpr": [0.0, 0.1, 0.3, 1.0],
               "tpr": [0.0, 0.6, 0.9, 1.0],
               "operating_points": [{"fpr_target": 0.01, "threshold": 0.8, "tpr": 0.5}]}]))


@pytest.fixture(autouse=True)
def loopback_server_address() -> Iterator[None]:
    """AppTest runs the app without a server: say it listens on 127.0.0.1 (as
    ``guardrail dashboard`` does by default), so pages render without a token."""
    from streamlit import config as st_config

    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    try:
        yield
    finally:
        st_config.set_option("server.address", before)


@pytest.fixture
def seeded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    with ReportStore(url) as store:
        seed(store, tmp_path / "outputs")
    monkeypatch.setenv("GUARDRAIL_STORE_URL", url)
    monkeypatch.setenv("GUARDRAIL_PATHS__DATA_DIR", str(tmp_path / "data"))
    return url


@pytest.fixture
def empty_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    ReportStore(url).close()
    monkeypatch.setenv("GUARDRAIL_STORE_URL", url)
    monkeypatch.setenv("GUARDRAIL_PATHS__DATA_DIR", str(tmp_path / "data"))
    return url
