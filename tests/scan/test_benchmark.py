"""The ``scan`` benchmark suite's pieces: the mixed collection, the report, and the large
scan killed with kill -9 and resumed through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail.benchmarks.scan import _report, build_mixed_set, run_large_scan
from guardrail.scan import list_sources

from .conftest import FIXTURES

pytest.importorskip("pyarrow")


def test_mixed_set_has_every_kind_and_distinct_outputs(cfg, tmp_path: Path) -> None:
    counts = build_mixed_set(tmp_path / "mix", cfg, n=40, bases=4,
                             peer=FIXTURES if FIXTURES.is_dir() else None)
    files = list_sources(str(tmp_path / "mix"))
    assert len(files) == sum(counts.values()) == 40
    assert counts["signed"] == 6 and counts["stripped"] == 14
    assert counts["attacked"] == 40 - 6 - 14 - counts["peer"]
    made = [Path(f).read_bytes() for f in files if "/peer-" not in f
            and "/signed-" not in f]
    assert len(set(made)) == len(made)  # stripped and attacked copies all differ


def test_report_ratios_and_targets() -> None:
    arms = [{"engine": "shell loop of guardrail verify", "workers": 1, "files": 10,
             "seconds": 50.0, "files_per_s": 0.2, "peak_rss_mb": None, "labels": {}}]
    for engine, workers, rate in (("local", 1, 5.0), ("local", 2, 9.0), ("ray", 1, 4.0),
                                  ("ray", 2, 8.1)):
        arms.append({"engine": engine, "workers": workers, "files": 100, "seconds": 1.0,
                     "files_per_s": rate, "per_round": [rate], "peak_rss_mb": 100,
                     "cpu_s_per_file": 0.125 if engine == "local" else None,
                     "labels": {"No evidence of AI generation found": 100}})
    res = _report(arms, 100, {"peer": 10, "signed": 15, "stripped": 35, "attacked": 40}, 8, 1)
    assert res["ratios"] == {"local_2_vs_shell": 45.0, "local_1_vs_shell": 25.0,
                             "local_2_vs_local_1": 1.8, "ray_2_vs_local_2": 0.9}
    assert ("| local, 2 workers (the default here: one per core) / shell loop | 45.0x | "
            ">= 20x |") in res["markdown"]
    assert "| local, 1 worker / shell loop | 25.0x | |" in res["markdown"]
    assert "| local | 2 | 100 | 1.0 | 9.0 | 9.0 | 0.125 | 100 MB |" in res["markdown"]
    assert "| ray | 2 | 100 | 1.0 | 8.1 | 8.1 | - | 100 MB |" in res["markdown"]
    no_ray = _report(arms[:3], 100, None, 8, 1)
    assert no_ray["ratios"]["ray_2_vs_local_2"] is None
    assert "| Ray, 2 actors / local, 2 workers | not measured | >= 0.85x |" in no_ray[
        "markdown"]


@pytest.mark.slow
def test_large_scan_killed_and_resumed(tmp_path: Path) -> None:
    conf = tmp_path / "fast.toml"
    conf.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n'
                    f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n'
                    '[detectors]\nimage = []\naudio = []\ntext = []\n', encoding="utf-8")
    res = run_large_scan(300, workers=1, flush_rows=10, chunk=2, kill_at=0.2,
                         cfg_args=["--config", str(conf)])
    assert res["rows"] == 300
    assert 0 < res["rows_kept_at_kill"] < 300
    assert res["resumed_skipped"] == res["rows_kept_at_kill"]
    assert res["resumed_verified"] == 300 - res["rows_kept_at_kill"]
    assert res["lost_bound"] == 10 + 2 * 1 * 2
