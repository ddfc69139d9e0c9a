"""``guardrail scan --engine ray`` on a real two-node Ray cluster on this machine (Ray's
``ray.cluster_utils.Cluster``: a head and a second node, one CPU each, so the two actors
run on different nodes): the same rows as the local engine, resuming, and a worker
killed with kill -9 mid-scan costing only retries. Marked slow: the cluster takes ~15 s
to start (once for the module); each test stays under 60 s."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from guardrail.scan import read_rows, scan
from guardrail.scan.ray_engine import map_on_actors

from .conftest import comparable, fast_config, make_collection, png

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'guardrail[ray]')")
pytest.importorskip("ray.data")
psutil = pytest.importorskip("psutil")


@pytest.fixture(scope="module")
def cluster() -> Any:
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def _map_workers() -> list[Any]:
    """The processes of Ray Data's map actors (process title ``ray::MapWorker(...)``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and cmd[0].startswith("ray::MapWorker"):
            found.append(proc)
    return found


@pytest.mark.slow
def test_two_nodes_same_rows_as_local_and_resume(cluster: Any, tmp_path: Path) -> None:
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    cfg = fast_config(tmp_path)
    folder = make_collection(tmp_path / "collection")
    local = scan(str(folder), tmp_path / "local.parquet", cfg, workers=0)
    summary = scan(str(folder), tmp_path / "ray.parquet", cfg, engine="ray", workers=2,
                   address=cluster.address, chunk=2)
    assert summary["engine"] == "ray" and summary["verified"] == local["verified"] == 13
    assert comparable(read_rows(tmp_path / "ray.parquet")) == comparable(
        read_rows(tmp_path / "local.parquet"))
    again = scan(str(folder), tmp_path / "ray.parquet", cfg, engine="ray", workers=2,
                 address=cluster.address)
    assert again["verified"] == 1 and again["skipped"] == 12  # the FIFO is retried


class _Slow:
    """A factory for map_on_actors: each item takes a while, results name the process."""

    def __call__(self) -> Any:
        def fn(items: list[int]) -> list[tuple[int, int]]:
            time.sleep(0.3 * len(items))
            return [(i, os.getpid()) for i in items]
        return fn


def _kill_one_worker_after(event: threading.Event, killed: list[int],
                           done: list[Any]) -> None:
    """Once ``event`` is set, kill -9 one map actor's process; note its pid and how many
    results had arrived."""
    event.wait(60)
    procs = _map_workers()
    if procs:
        killed.append(len(done))
        procs[0].send_signal(signal.SIGKILL)


@pytest.mark.slow
def test_generic_map_survives_a_killed_actor(cluster: Any) -> None:
    results: list[tuple[int, int]] = []
    first, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_worker_after, args=(first, killed, results))
    killer.start()

    def on_results(res: list[tuple[int, int]], n: int) -> None:
        results.extend(res)
        first.set()

    map_on_actors(_Slow(), list(range(40)), on_results, workers=2, batch_size=2,
                  address=cluster.address)
    killer.join()
    assert killed and killed[0] < 30, "no map actor was killed mid-way"
    assert sorted({i for i, _ in results}) == list(range(40))  # none lost
    assert len({pid for _, pid in results}) >= 3  # the killed actor was replaced


@pytest.mark.slow
def test_scan_with_a_killed_actor_has_each_file_once(cluster: Any, tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(60):
        (folder / f"img-{i:03d}.png").write_bytes(png(i, 96))
    import guardrail.scan.ray_engine as engine

    first, killed, seen_rows = threading.Event(), [], []
    killer = threading.Thread(target=_kill_one_worker_after, args=(first, killed, seen_rows))
    killer.start()
    real = engine.map_on_actors

    def watched(make, items, on_results, **kw):
        def seen(res, n):
            on_results(res, n)
            seen_rows.extend(res)
            first.set()
        return real(make, items, seen, **kw)

    engine.map_on_actors = watched
    try:
        summary = scan(str(folder), tmp_path / "ray.parquet", cfg, engine="ray", workers=2,
                       address=cluster.address, chunk=1, flush_rows=5)
    finally:
        engine.map_on_actors = real
        first.set()
        killer.join()
    assert killed and killed[0] < 50, "no map actor was killed mid-scan"
    rows = read_rows(tmp_path / "ray.parquet")
    assert summary["rows"] == len(rows) == 60 == len({r["path"] for r in rows})
    assert all(r["error"] is None for r in rows)
    local = scan(str(folder), tmp_path / "local.parquet", cfg, workers=0)
    assert local["verified"] == 60
    assert comparable(rows) == comparable(read_rows(tmp_path / "local.parquet"))


@pytest.mark.slow
def test_robustness_trials_on_ray_equal_the_local_ones(cluster: Any) -> None:
    """``guardrail robustness --engine ray``: items x attacks on actors of both nodes give the
    same trials, in the same order, as in-process - errors of an attack included."""
    import numpy as np

    from guardrail._types import Artifact, GenerationMetadata, Modality
    from guardrail.robustness.base import Attack
    from guardrail.robustness.harness import Detection, Marked, run_trials, use_engine

    meta = GenerationMetadata(model_id="test")

    def mark(i: int) -> Marked | None:
        if i == 3:
            return None  # cannot be marked: counted, not attacked
        img = np.full((8, 8, 3), 10 * i, np.uint8)
        return Marked(Artifact(Modality.IMAGE, img, meta), name=f"item{i}", context=i)

    def detect(marked: Marked, art: Artifact) -> Detection:
        level = int(np.asarray(art.content).mean())
        return Detection(detected=level % 20 == 0, p_value=1.0 / (1 + level))

    def brighten(art: Artifact, k: int) -> Artifact:
        return art.evolve(content=np.asarray(art.content) + k)

    def fails(art: Artifact, k: int) -> Artifact:
        if int(np.asarray(art.content).mean()) >= 40:
            raise RuntimeError("cannot run on bright images")
        return art

    attacks = [Attack("brighten", 10, Modality.IMAGE, brighten),
               Attack("fails", 0, Modality.IMAGE, fails)]
    local = run_trials(range(7), mark=mark, attacks=attacks, detect=detect)
    with use_engine("ray", workers=2, address=cluster.address):
        remote = run_trials(range(7), mark=mark, attacks=attacks, detect=detect)
    assert remote.names == local.names == [f"item{i}" for i in (0, 1, 2, 4, 5, 6)]
    assert remote.not_marked == local.not_marked == 1
    assert remote.detections == local.detections
    assert remote.errors == local.errors and "fails(0)" in remote.errors
    assert local.detections["brighten(10)"][1].detected  # 10 + 10 = 20: a real decision
