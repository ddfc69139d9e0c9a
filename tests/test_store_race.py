"""Many processes opening one fresh record store at once: every open and every save succeeds.

Each round starts from a store that does not exist yet (a new SQLite file in a new folder,
or a new PostgreSQL database); 16 worker processes (spawned, so nothing is shared) wait on
one barrier, then each opens the store and saves one report. The tests run a few rounds;
for the full campaign run this file as a script::

    python tests/test_store_race.py --rounds 20 [--url postgresql+psycopg://...]

or set ``GUARDRAIL_TEST_STORE_RACE_ROUNDS=20`` for pytest.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from guardrail import GenerationMetadata, Report, ReportStore

PROCESSES = 16
# read at import: the autouse fixture clears GUARDRAIL_* variables before each test
ROUNDS = int(os.environ.get("GUARDRAIL_TEST_STORE_RACE_ROUNDS", "5"))
REQUIRE_POSTGRES = bool(os.environ.get("GUARDRAIL_TEST_REQUIRE_POSTGRES"))
BARRIER_TIMEOUT_S = 120

_barrier: Any = None


def _init_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _open_and_save(url: str, report_id: str) -> str:
    """Open ``url`` as soon as every worker is ready, save one report; '' or the error."""
    _barrier.wait(BARRIER_TIMEOUT_S)
    try:
        with ReportStore(url) as store:
            store.save(Report(
                report_id=report_id, created_at="2026-01-01T00:00:00+00:00", modality="text",
                status="ok", metadata=GenerationMetadata(model_id="m", prompt_hash="h"),
                stages=(), content_hash="sha256:x", media_type="text/plain",
                output=f"/o/{report_id}"))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which asserts on it
        return f"{report_id}: {type(exc).__name__}: {exc}"
    return ""


def run_rounds(fresh_urls: Iterator[str], rounds: int) -> list[str]:
    """Run ``rounds`` rounds, each on the next URL of ``fresh_urls``; the failures."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    failures: list[str] = []
    with ctx.Pool(PROCESSES, initializer=_init_worker, initargs=(barrier,)) as pool:
        for n in range(rounds):
            url = next(fresh_urls)
            ids = [f"round{n:02d}-worker{i:02d}" for i in range(PROCESSES)]
            # one task per worker: a worker waiting on the barrier takes no second task
            errors = [e for e in pool.starmap(_open_and_save, [(url, i) for i in ids],
                                              chunksize=1) if e]
            failures += [f"round {n}: {e}" for e in errors]
            with ReportStore(url) as store:
                stored = {r.report_id for r in store.list(limit=PROCESSES * 2)}
            failures += [f"round {n}: report {i} missing" for i in ids if i not in stored]
    return failures


def sqlite_urls(folder: Path) -> Iterator[str]:
    """Endless fresh SQLite stores under ``folder``, each in a folder that does not exist."""
    n = 0
    while True:
        yield f"sqlite:///{folder / f'round{n:02d}' / 'new' / 'guardrail.db'}"
        n += 1


@contextmanager
def postgres_databases(server_url: str) -> Iterator[Iterator[str]]:
    """Fresh PostgreSQL databases on the server of ``server_url``, dropped afterwards."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def fresh() -> Iterator[str]:
        while True:
            name = f"guardrail_race_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            created.append(name)
            yield sa.engine.make_url(server_url).set(database=name).render_as_string(
                hide_password=False)

    try:
        yield fresh()
    finally:
        with admin.connect() as conn:
            for name in created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
def test_fresh_sqlite_store_opened_by_16_processes_at_once(tmp_path: Path):
    assert run_rounds(sqlite_urls(tmp_path), ROUNDS) == []


@pytest.mark.slow
def test_sqlite_store_opened_by_16_processes_once_fresh_then_existing(tmp_path: Path):
    """The same store twice: created by the first round, only read by the second."""
    url = next(sqlite_urls(tmp_path))
    assert run_rounds(iter([url, url]), 2) == []
    with ReportStore(url) as store:
        assert store.count() == 2 * PROCESSES


@pytest.mark.slow
def test_fresh_postgres_store_opened_by_16_processes_at_once(postgres_url: str | None):
    if not postgres_url:
        if REQUIRE_POSTGRES:
            pytest.fail("GUARDRAIL_TEST_REQUIRE_POSTGRES is set but no PostgreSQL server "
                        "could be started")
        pytest.skip("no PostgreSQL server (install Debian's postgresql, or set "
                    "GUARDRAIL_TEST_POSTGRES_URL)")
    with postgres_databases(postgres_url) as urls:
        assert run_rounds(urls, ROUNDS) == []


def main(argv: list[str] | None = None) -> int:
    """Command line: run the race ``--rounds`` times and print the failures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--url", help="a PostgreSQL server URL; SQLite in a temporary folder "
                                      "when omitted")
    args = parser.parse_args(argv)
    if args.url:
        with postgres_databases(args.url) as urls:
            failures = run_rounds(urls, args.rounds)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            failures = run_rounds(sqlite_urls(Path(tmp)), args.rounds)
    print("\n".join(failures))
    print(f"{args.rounds} rounds x {PROCESSES} processes: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
