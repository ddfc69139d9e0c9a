"""Where a scan's rows go: append-only part files, merged into one Parquet file.

Rows are buffered and written as Parquet part files in ``OUT.parts/`` (each written to a
temporary name, synced, then renamed: a part is whole or absent), every ``flush_rows``
rows or ``flush_seconds``. A process killed mid-scan loses only the rows not yet in a
part. :meth:`ResultSink.merge` combines the previous ``OUT`` and the parts into ``OUT``
(again through a temporary file and a rename), one row per path - the newest one - sorted
by path, and then removes the parts. A rerun reads both to know which files are done.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DependencyError, OutputError
from .rows import schema

__all__ = ["ResultSink", "read_rows"]

log = logging.getLogger(__name__)


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DependencyError("guardrail scan writes Parquet with pyarrow: "
                              "pip install 'guardrail[scan]'") from None
    return pq


def _write_atomic(table: Any, path: Path) -> None:
    pq = _pq()
    tmp = path.with_name(f".tmp-{os.getpid()}-{time.time_ns()}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a scan's Parquet file, as dicts (for tests and small files)."""
    return _pq().read_table(path).to_pylist()


class ResultSink:
    """Buffered, crash-safe output of a scan (see the module docstring).

    Parameters
    ----------
    out
        The Parquet file to write; ``OUT.parts/`` holds the parts until the merge.
    flush_rows, flush_seconds
        A part is written when this many rows are buffered, or this long after the last.
    """

    def __init__(self, out: str | os.PathLike[str], *, flush_rows: int = 200,
                 flush_seconds: float = 10.0) -> None:
        _pq()
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self._seq = 0
        self.written = 0

    # -- what is done -----------------------------------------------------------------
    def _part_files(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        return sorted(p for p in self.parts.iterdir()
                      if p.name.startswith("part-") and p.suffix == ".parquet")

    def _tables(self, columns: list[str] | None = None) -> list[Any]:
        pq = _pq()
        tables = []
        for f in ([self.out] if self.out.is_file() else []) + self._part_files():
            try:
                tables.append(pq.read_table(f, columns=columns))
            except Exception as exc:  # noqa: BLE001 - parts are atomic; anything else is noted
                if f == self.out:
                    raise OutputError(f"{f} exists but is not a readable Parquet file "
                                      f"({exc}); move it away or choose another --out") from None
                log.warning("unreadable part %s skipped: %s", f, exc)
        return tables

    def done(self) -> dict[str, str]:
        """``path -> sha256`` of the rows already written without a scan error (a file
        whose content still has this hash is skipped)."""
        out: dict[str, str] = {}
        for t in self._tables(["path", "sha256", "error"]):
            for path, digest, error in zip(t.column("path").to_pylist(),
                                           t.column("sha256").to_pylist(),
                                           t.column("error").to_pylist(), strict=True):
                if digest and not error:
                    out[path] = digest
                else:
                    out.pop(path, None)
        return out

    # -- writing ----------------------------------------------------------------------
    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Buffer rows; write a part when the buffer is full or old enough."""
        self._buffer.extend(rows)
        if len(self._buffer) >= self.flush_rows or (
                self._buffer and time.monotonic() - self._last >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one part file (nothing when the buffer is empty)."""
        self._last = time.monotonic()
        if not self._buffer:
            return
        import pyarrow as pa

        self.parts.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(self._buffer, schema=schema())
        self._seq += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        _write_atomic(table, self.parts / name)
        self.written += len(self._buffer)
        self._buffer = []

    def merge(self) -> Any:
        """Flush, then write ``out`` from the previous file and the parts (one row per
        path, the newest; sorted by path) and remove the parts. Returns the table."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.flush()
        parts = self._part_files()
        tables = self._tables()
        if not tables:
            table = schema().empty_table()
        else:
            table = pa.concat_tables(tables, promote_options="default")
            paths = table.column("path").to_pylist()
            last = {p: i for i, p in enumerate(paths)}  # the newest row of each path
            table = table.take(pa.array(sorted(last.values()), type=pa.int64()))
            table = table.take(pc.sort_indices(table, sort_keys=[("path", "ascending")]))
        if parts or not self.out.is_file():
            self.out.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(table, self.out)
        for p in parts:
            p.unlink(missing_ok=True)
        if self.parts.is_dir():
            for p in self.parts.iterdir():  # temporary files of a killed writer
                if p.name.startswith(".tmp-"):
                    p.unlink(missing_ok=True)
            try:
                self.parts.rmdir()
            except OSError:
                pass
        return table
