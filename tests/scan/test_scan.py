"""``guardrail scan`` with the local engine: sources, rows built from verification, error
rows, resuming, crash safety of the output, the process pool and the command line."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from guardrail.errors import InputError
from guardrail.scan import read_rows, scan
from guardrail.scan.local_engine import run_local
from guardrail.scan.output import ResultSink
from guardrail.scan.rows import COLUMNS, row_from_verify
from guardrail.scan.sources import list_sources
from guardrail.verify import verify_file

from . import _crashy
from .conftest import comparable, png

pytest.importorskip("pyarrow")


# -- sources ------------------------------------------------------------------------------
def test_sources_folder_glob_and_list(collection: Path, tmp_path: Path) -> None:
    found = list_sources(str(collection))
    names = {Path(p).name for p in found}
    assert "gen-0.png" in names and "C.jpg" in names and "pipe.png" in names
    assert ".hidden.png" not in names
    assert all(os.path.isabs(p) for p in found) and found == sorted(found)
    assert {Path(p).name for p in list_sources(str(collection / "**" / "*.png"))} == {
        "libpng-test.png", "pipe.png", "gen-0.png", "gen-1.png", "gen-2.png", "gen-3.png"}
    listing = tmp_path / "files.lst"
    listing.write_text(f"# a comment\n\ncollection/C.jpg\n{collection / 'noise.bin'}\n"
                       "collection/C.jpg\ns3://bucket/key.jpg\n", encoding="utf-8")
    assert list_sources(str(listing)) == sorted(
        [str(collection / "C.jpg"), str(collection / "noise.bin"), "s3://bucket/key.jpg"])
    with pytest.raises(InputError, match="no such folder"):
        list_sources(str(tmp_path / "missing"))


# -- rows ---------------------------------------------------------------------------------
def test_rows_are_verify_results(collection: Path, cfg, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    summary = scan(str(collection), out, cfg, workers=0)
    rows = {r["path"]: r for r in read_rows(out)}
    assert summary["files"] == summary["verified"] == summary["rows"] == len(rows) == 13
    assert [c for c, _ in COLUMNS] == list(next(iter(rows.values())))
    for path in (collection / "C.jpg", collection / "E-sig-CA.jpg",
                 collection / "nested" / "gen-1.png", collection / "riff_bomb_1000.wav"):
        row, res = rows[str(path)], verify_file(path, cfg).to_dict()
        assert row["label"] == res["verdict"]["label"]
        assert row["provenance_state"] == res["provenance"]["state"]
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row["size"] == path.stat().st_size
        assert json.loads(row["verify"])["verdict"] == res["verdict"]
        assert row["watermark_detected"] == (res["watermark"] or {}).get("detected")
    assert rows[str(collection / "E-sig-CA.jpg")]["label"] == "Tampered"
    assert rows[str(collection / "C.jpg")]["signer"]
    assert sum(summary["labels"].values()) == 13


def test_bad_files_are_rows_not_failures(collection: Path, cfg, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import guardrail.verify as verify_mod

    real = verify_mod.verify_file

    def flaky(path, *a, **kw):
        if Path(path).name == "gen-2.png":
            raise RuntimeError("boom")
        return real(path, *a, **kw)

    monkeypatch.setattr(verify_mod, "verify_file", flaky)
    out = tmp_path / "out.parquet"
    summary = scan(str(collection), out, cfg, workers=0)
    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows["gen-2.png"]["error"] == "RuntimeError: boom"
    assert rows["gen-2.png"]["label"] == "Could not be verified"
    for name in ("empty.jpg", "noise.bin", "pipe.png", "riff_bomb_1000.wav"):
        assert rows[name]["label"] == "Could not be verified", name
    assert rows["pipe.png"]["sha256"] is None and "FIFO" in rows["pipe.png"]["error"]
    assert rows["empty.jpg"]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert summary["errors"] == 2 and summary["rows"] == 13
    # rows with a scan error are retried on the next run; the others are skipped
    monkeypatch.setattr(verify_mod, "verify_file", real)
    again = scan(str(collection), out, cfg, workers=0)
    assert again["verified"] == 2 and again["skipped"] == 11
    assert {Path(r["path"]).name: r for r in read_rows(out)}["gen-2.png"]["error"] is None


# -- resuming and crash safety -------------------------------------------------------------
def test_resume_skips_by_content_hash(collection: Path, cfg, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    first = scan(str(collection), out, cfg, workers=0)
    before = read_rows(out)
    (collection / "nested" / "gen-0.png").write_bytes(png(1234))  # changed content
    (collection / "nested" / "new.png").write_bytes(png(77))      # a new file
    second = scan(str(collection), out, cfg, workers=0)
    # the FIFO cannot be read, so it is tried again every run
    assert second["verified"] == 3 and second["skipped"] == first["files"] - 2
    rows = read_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == 14
    changed = next(r for r in rows if r["path"].endswith("gen-0.png"))
    assert changed["sha256"] == hashlib.sha256(png(1234)).hexdigest()
    kept = {r["path"]: r for r in rows}
    assert all(kept[r["path"]] == r for r in before if not r["path"].endswith("gen-0.png"))


def test_interrupted_scan_keeps_its_parts(collection: Path, cfg, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import guardrail.scan.worker as worker

    out = tmp_path / "out.parquet"
    real, seen = worker.scan_file, []

    def dies_after_eight(path, ctx):
        if len(seen) == 8:
            raise KeyboardInterrupt
        seen.append(path)
        return real(path, ctx)

    monkeypatch.setattr(worker, "scan_file", dies_after_eight)
    with pytest.raises(KeyboardInterrupt):
        scan(str(collection), out, cfg, workers=0, chunk=2, flush_rows=2)
    assert not out.exists()
    sink = ResultSink(out)
    assert len(sink.done()) == 8  # every finished chunk was written as a part
    monkeypatch.setattr(worker, "scan_file", real)
    summary = scan(str(collection), out, cfg, workers=0)
    assert summary["skipped"] == 8 and summary["verified"] == 5
    assert not sink.parts.exists() and len(read_rows(out)) == 13


def test_merge_keeps_one_row_per_path_newest_last(tmp_path: Path) -> None:
    sink = ResultSink(tmp_path / "o.parquet", flush_rows=1)
    base = {"verdict": {"label": "A"}, "provenance": {"state": "ABSENT"}}
    sink.add([row_from_verify("/x", 1, "h1", base)])
    sink.add([row_from_verify("/y", 1, "h2", base)])
    sink.add([row_from_verify("/x", 1, "h3", {**base, "verdict": {"label": "B"}})])
    table = sink.merge()
    assert table.column("path").to_pylist() == ["/x", "/y"]
    assert table.column("label").to_pylist() == ["B", "A"]
    assert sink.done() == {"/x": "h3", "/y": "h2"}


# -- the process pool ----------------------------------------------------------------------
@pytest.mark.slow
def test_process_pool_gives_the_in_process_rows(collection: Path, cfg, tmp_path: Path) -> None:
    scan(str(collection), tmp_path / "a.parquet", cfg, workers=0)
    summary = scan(str(collection), tmp_path / "b.parquet", cfg, workers=2)
    assert summary["workers"] == 2
    assert comparable(read_rows(tmp_path / "a.parquet")) == comparable(
        read_rows(tmp_path / "b.parquet"))


def test_a_dead_worker_costs_retries_and_an_error_row(cfg, tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(6):
        (folder / f"ok-{i}.png").write_bytes(png(i, 16))
    (folder / "crash.png").write_bytes(png(50, 16))
    rows: list[dict] = []
    files = list_sources(str(folder))
    counted = []
    run_local(files, cfg, lambda r, n: (rows.extend(r), counted.append(n)), workers=2,
              chunk=3, task=_crashy.task)
    assert sum(counted) == len(files) == 7
    by_name = {Path(r["path"]).name: r for r in rows}
    assert sorted(by_name) == sorted(Path(f).name for f in files) and len(rows) == 7
    assert "worker process died" in by_name["crash.png"]["error"]
    assert all(by_name[f"ok-{i}.png"]["error"] is None for i in range(6))


# -- the command line ----------------------------------------------------------------------
def test_cli_scan_json_and_record(collection: Path, tmp_path: Path, capsys) -> None:
    from guardrail.cli import main
    from guardrail.store import ReportStore

    db = tmp_path / "rec.db"
    out = tmp_path / "cli.parquet"
    argv = ["scan", str(collection), "--out", str(out), "--workers", "0", "--json",
            "--record", "--store", f"sqlite:///{db}"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 13 and summary["evaluation_id"].startswith("scan-")
    with ReportStore(f"sqlite:///{db}") as store:
        ev = store.get_evaluation(summary["evaluation_id"])
    assert ev.kind == "scan" and len(ev.rows) == 13 and ev.summary["files"] == 13
    assert main(["scan", str(tmp_path / "nope"), "--out", str(out)]) == 4
    assert main(["scan", str(collection), "--out", str(out), "--engine", "local",
                 "--workers", "-1"]) == 4


def test_cli_scan_defaults_to_one_worker_per_core(collection: Path, tmp_path: Path,
                                                  capsys, monkeypatch) -> None:
    """Without --workers the local engine runs one worker per usable core."""
    import os

    from guardrail.cli import main

    seen = {}
    import guardrail.scan as scan_mod

    real = scan_mod.scan

    def spy(*args, **kwargs):
        seen["workers"] = kwargs["workers"]
        kwargs["workers"] = 0  # keep the test in-process
        return real(*args, **kwargs)

    monkeypatch.setattr(scan_mod, "scan", spy)
    out = tmp_path / "default.parquet"
    assert main(["scan", str(collection), "--out", str(out), "--json"]) == 0
    assert seen["workers"] == len(os.sched_getaffinity(0))
