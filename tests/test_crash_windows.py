"""Crash windows between generation and record, by fault injection: every step of releasing
an output (writing the partial files, fsync, saving the pending report, each rename, the
folder fsync, finalising the report) is made to fail - by an exception in this process, or
by ``os._exit`` in a child process just before or just after the step - and after each:

* no output (or companion) file exists without its report;
* a pending report whose output is absent reads as ``interrupted``;
* after the next start in that folder, no partial file is left.

Against SQLite and, when the fixture has a server, PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardrail import Config, Guard, ReportStore
from guardrail._release import (
    INTERRUPTED,
    STALE_AFTER_S,
    check_output,
    release_state,
    sweep_partials,
)
from guardrail.errors import OutputError, StoreError
from guardrail.stages import StageOutcome
from guardrail.testing import EchoTextGenerator, FakeCheck

REQUIRE_POSTGRES = bool(os.environ.get("GUARDRAIL_TEST_REQUIRE_POSTGRES"))

#: the child: one guarded generation with a sidecar file, the ``nth`` call of ``target``
#: replaced by os._exit(99) just ``before`` or ``after`` the real call
CHILD = r"""
import json, os, sys
args = json.loads(sys.argv[1])
from guardrail import Config, Guard, ReportStore
from guardrail.stages import StageOutcome
from guardrail.testing import EchoTextGenerator, FakeCheck

config = Config.load(overrides={"paths": {"data_dir": args["data"]}})
store = ReportStore(args["store"])
sidecar = FakeCheck(lambda ctx: StageOutcome(files={".c2pa": b"manifest"}),
                    slot="provenance", name="sidecar")
guard = Guard(EchoTextGenerator(), store=store, config=config, stages=[sidecar])
owner = os if args["target"] in ("fsync", "replace") else ReportStore
original = getattr(owner, args["target"])
count = [0]

def patched(*a, **k):
    count[0] += 1
    hit = count[0] == args["nth"]
    if hit and args["when"] == "before":
        os._exit(99)
    out = original(*a, **k)
    if hit and args["when"] == "after":
        os._exit(99)
    return out

setattr(owner, args["target"], patched)
guard.generate("hello", output=args["out"])
sys.exit(0)
"""

# (target, nth call, when) -> (partial files left, report status, output there, sidecar there)
# fsync 1 and 2: the sidecar's and the output's partial files; fsync 3: the folder, after
# the renames; replace 1: the sidecar; replace 2: the output
KILLS = {
    ("fsync", 1, "before"): (True, None, False, False),
    ("fsync", 1, "after"): (True, None, False, False),
    ("fsync", 2, "before"): (True, None, False, False),
    ("fsync", 2, "after"): (True, None, False, False),
    ("save", 1, "before"): (True, None, False, False),
    ("save", 1, "after"): (True, INTERRUPTED, False, False),
    ("replace", 1, "before"): (True, INTERRUPTED, False, False),
    ("replace", 1, "after"): (True, INTERRUPTED, False, True),
    ("replace", 2, "before"): (True, INTERRUPTED, False, True),
    ("replace", 2, "after"): (False, "pending", True, True),
    ("fsync", 3, "before"): (False, "pending", True, True),
    ("fsync", 3, "after"): (False, "pending", True, True),
    ("finalise", 1, "before"): (False, "pending", True, True),
    ("finalise", 1, "after"): (False, "ok", True, True),
}
#: the windows checked against PostgreSQL too (each store call, and each side of the renames)
PG_KILLS = [("save", 1, "before"), ("save", 1, "after"), ("replace", 2, "after"),
            ("finalise", 1, "before"), ("finalise", 1, "after")]


def _store_url(kind: str, tmp_path: Path, postgres_url: str | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    if not postgres_url:
        if REQUIRE_POSTGRES:
            pytest.fail("GUARDRAIL_TEST_REQUIRE_POSTGRES is set but no PostgreSQL server could "
                        "be started")
        pytest.skip("no PostgreSQL server (install Debian's postgresql, or set "
                    "GUARDRAIL_TEST_POSTGRES_URL)")
    return postgres_url


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def _reports_for(store: ReportStore, out: Path) -> list:
    """The reports of this output (the store may be shared: PostgreSQL)."""
    return [r for r in store.list(limit=50, search=str(out)) if r.output == str(out)]


def _sidecar_stage() -> FakeCheck:
    return FakeCheck(lambda ctx: StageOutcome(files={".c2pa": b"manifest"}),
                     slot="provenance", name="sidecar")


def _next_start(url: str, config: Config, folder: Path) -> None:
    """Another process starting in the folder: its first generation there sweeps it."""
    with ReportStore(url) as store:
        res = Guard(EchoTextGenerator(), store=store, config=config,
                    stages=[_sidecar_stage()]).generate("again", output=folder / "next.txt")
        assert res.status == "ok"


def _check_killed(tmp_path: Path, url: str, config: Config, case: tuple) -> None:
    target, nth, when = case
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "o.txt"
    args = {"target": target, "nth": nth, "when": when, "out": str(out),
            "store": url, "data": str(config.data_dir)}
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 99, f"the fault was not reached: {res.returncode} {res.stderr}"
    left, status, has_out, has_side = KILLS[case]
    with ReportStore(url) as store:
        reports = _reports_for(store, out)
    assert out.exists() is has_out and out.with_suffix(".c2pa").exists() is has_side
    assert bool(_partials(folder)) is left
    if status is None:
        assert reports == []
    else:
        assert len(reports) == 1 and release_state(reports[0]) == status
    if has_out or has_side:  # no file without its report
        assert reports and reports[0].status in ("pending", "ok")
    _next_start(url, config, folder)
    assert _partials(folder) == []


@pytest.mark.parametrize("case", list(KILLS), ids=["-".join(map(str, c)) for c in KILLS])
def test_a_kill_at_any_step_leaves_no_output_without_its_report_sqlite(tmp_path, config, case):
    _check_killed(tmp_path, _store_url("sqlite", tmp_path, None), config, case)


@pytest.mark.parametrize("case", PG_KILLS, ids=["-".join(map(str, c)) for c in PG_KILLS])
def test_a_kill_at_any_step_leaves_no_output_without_its_report_postgres(
        tmp_path, config, postgres_url, case):
    _check_killed(tmp_path, _store_url("postgres", tmp_path, postgres_url), config, case)


# -- failures the process survives -----------------------------------------------------------
def _failing(monkeypatch, owner, name: str, nth: int, exc: BaseException) -> None:
    original = getattr(owner, name)
    count = [0]

    def patched(*a, **k):
        count[0] += 1
        if count[0] == nth:
            raise exc
        return original(*a, **k)

    monkeypatch.setattr(owner, name, patched)


RAISES = {
    # (target, nth, exception) -> (exception raised by generate, report status)
    ("fsync", 1, "oserror"): (OutputError, "error"),
    ("fsync", 2, "oserror"): (OutputError, "error"),
    ("save", 1, "storeerror"): (StoreError, None),
    ("replace", 1, "oserror"): (OutputError, "error"),
    ("replace", 2, "oserror"): (OutputError, "error"),
    ("replace", 2, "runtimeerror"): (RuntimeError, INTERRUPTED),
    ("fsync", 3, "oserror"): (None, "ok"),  # the folder cannot be synced: the renames stand
    ("finalise", 1, "storeerror"): (StoreError, INTERRUPTED),
}
_EXC = {"oserror": lambda: OSError(5, "Input/output error"),
        "storeerror": lambda: StoreError("the store went away"),
        "runtimeerror": lambda: RuntimeError("unexpected")}


#: every failure with SQLite; those that touch the store or the rename with PostgreSQL too
RAISE_CASES = [("sqlite", c) for c in RAISES] + [
    ("postgres", c) for c in RAISES if c[0] in ("save", "finalise", "replace")]


@pytest.mark.parametrize(("kind", "case"), RAISE_CASES,
                         ids=[f"{k}-" + "-".join(map(str, c)) for k, c in RAISE_CASES])
def test_a_failed_step_is_undone_and_recorded(tmp_path, config, postgres_url, monkeypatch,
                                              kind, case):
    url = _store_url(kind, tmp_path, postgres_url)
    target, nth, exc_name = case
    raised, status = RAISES[case]
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "o.txt"
    with ReportStore(url) as store:
        guard = Guard(EchoTextGenerator(), store=store, config=config, stages=[_sidecar_stage()])
        owner = os if target in ("fsync", "replace") else ReportStore
        _failing(monkeypatch, owner, target, nth, _EXC[exc_name]())
        if raised is None:
            result = guard.generate("hello", output=out)
            report_id = result.report_id
        else:
            with pytest.raises(raised) as info:
                guard.generate("hello", output=out)
            report_id = getattr(info.value, "report_id", None)
        monkeypatch.undo()
        reports = ([r for r in store.list(limit=50) if r.report_id == report_id] if report_id
                   else _reports_for(store, out))
    assert _partials(folder) == []  # undone at once, no sweep needed
    if status in ("error", None, INTERRUPTED):
        assert not out.exists() and not out.with_suffix(".c2pa").exists()
    if status is None:
        assert reports == []
    else:
        assert len(reports) == 1 and release_state(reports[0]) == status
    if status == "error":
        rep = reports[0]
        assert rep.output is None and "cannot write output" in rep.error
        assert rep.stage("record").status.value == "error"


def test_a_failed_rename_returns_an_error_report_with_the_reason(tmp_path, config, store,
                                                                monkeypatch):
    guard = Guard(EchoTextGenerator(), store=store, config=config, stages=[])
    _failing(monkeypatch, os, "replace", 1, OSError(28, "No space left on device"))
    with pytest.raises(OutputError, match="No space left on device") as info:
        guard.generate("hello", output=tmp_path / "o.txt")
    monkeypatch.undo()
    stored = store.get(info.value.report_id)
    assert stored.status == "error" and "No space left on device" in stored.error
    assert not (tmp_path / "o.txt").exists() and _partials(tmp_path) == []


# -- the sweep -------------------------------------------------------------------------------
def test_the_sweep_never_removes_a_partial_that_a_live_process_may_be_writing(tmp_path):
    import socket
    from hashlib import sha256

    host = sha256(socket.gethostname().encode()).hexdigest()[:8]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        dead_pid = int(dead.stdout)
        names = {
            "live": f".o.txt.{host}-{child.pid}-0badcafe.partial",      # a live writer
            "mine": f".o.txt.{host}-{os.getpid()}-0badcafe.partial",    # this process
            "dead": f".o.txt.{host}-{dead_pid}-0badcafe.partial",       # its writer is gone
            "other_host": f".o.txt.00000000-{dead_pid}-0badcafe.partial",  # maybe live there
            "old_other_host": f".p.txt.00000000-{dead_pid}-0badcafe.partial",
            "atomic_write": ".o.txt.0123456789ab.partial",              # media.atomic_write
            "old_atomic_write": ".p.txt.0123456789ab.partial",
            "not_ours": ".o.txt.partial",
            "visible": "o.txt.partial",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        old = time.time() - STALE_AFTER_S - 60
        for key in ("old_other_host", "old_atomic_write"):
            os.utime(tmp_path / names[key], (old, old))
        removed = {p.name for p in sweep_partials(tmp_path)}
    finally:
        child.kill()
        child.wait()
    assert removed == {names["dead"], names["old_other_host"], names["old_atomic_write"]}
    left = {p.name for p in tmp_path.iterdir()}
    assert {names[k] for k in ("live", "mine", "other_host", "atomic_write", "not_ours",
                               "visible")} <= left


def test_check_output_finds_what_permission_bits_do_not(tmp_path):
    with pytest.raises(OutputError, match="not a regular file"):
        check_output("/dev/null")
    with pytest.raises(OutputError, match="too long for its temporary file"):
        check_output(tmp_path / ("a" * 250 + ".txt"))
    if Path("/proc/self").exists():
        with pytest.raises(OutputError, match="cannot write output"):
            check_output("/proc/guardrail-test.txt")
    assert check_output(tmp_path / "fine.txt") == tmp_path / "fine.txt"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
