"""Releasing a guarded output so that no output ever exists without its record.

The guard releases an output (and the files that travel with it, such as a ``.c2pa``
sidecar) in four steps, each durable before the next::

    1. write every file to a partial file next to its destination, fsync
    2. save the report with status ``pending``
    3. rename the companion files, then the output, into place; fsync the folder
    4. finalise the report: ``pending`` -> ``ok`` / ``flagged``

A process killed before step 2 leaves partial files only; between steps 2 and 3, a
``pending`` report whose output is absent - an *interrupted* request
(:func:`release_state`); between steps 3 and 4, a ``pending`` report whose output exists.
A failure the process survives is undone: partial files are removed, a failed rename marks
the report ``error``, a failed finalisation withdraws the released files.

Partial files are named ``.NAME.HOST-PID-TOKEN.partial`` (``HOST``: 8 hex digits of a
hash of the host name; ``PID``: the writing process). :func:`sweep_partials` removes
those whose process is gone - written on this host by a PID that no longer runs - and any
older than :data:`STALE_AFTER_S` (from another host sharing the folder, or whose PID was
reused); a partial that a live process may still be writing is never removed. It also
removes the ``.NAME.HEX.partial`` files of :func:`guardrail.media.atomic_write` once they
are that old. The guard sweeps each output folder once per process, on the first request
that writes into it.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._schema import PENDING
from ._types import (
    Artifact,
    GenerationMetadata,
    Modality,
    Report,
    StageRecord,
    StageStatus,
    _jsonable,
)
from .config import Config
from .errors import GuardrailError, OutputError, StoreError
from .keys import PromptHasher
from .media import check_output_path
from .stages import SLOTS, StageContext
from .store import ReportStore

__all__ = ["INTERRUPTED", "STALE_AFTER_S", "Release", "check_output", "now", "record_failure",
           "release_state", "report_extra", "save_and_release", "sweep_once", "sweep_partials"]

log = logging.getLogger(__name__)

#: how a ``pending`` report whose output is absent is shown: the process stopped between
#: saving the report and renaming the output into place
INTERRUPTED = "interrupted"
#: a partial file older than this (seconds) is stale whoever wrote it
STALE_AFTER_S = 3600.0

_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{8}"
                      r"\.partial$")
_ATOMIC_WRITE_PARTIAL = re.compile(r"^\..+\.[0-9a-f]{12}\.partial$")
_swept: set[Path] = set()
_swept_lock = threading.Lock()


def _partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.partial")


def check_output(path: str | os.PathLike[str]) -> Path:
    """The absolute output path, after checking that a file can really be written there.

    Beyond :func:`guardrail.media.check_output_path` (folder exists, permissions), refuses
    an existing output that is not a regular file (a device such as ``/dev/null``, a FIFO:
    renaming onto it would replace it) and creates and removes a partial file in the folder,
    which finds what permission bits do not tell (a read-only or virtual file system such as
    ``/proc``, a name too long, the superuser's writes refused).

    Raises
    ------
    OutputError
        The output cannot be written there; the message says why.
    """
    try:
        p = check_output_path(path)
        if p.exists() and not p.is_file():
            raise OutputError(f"output {str(p)!r} exists and is not a regular file; "
                              "give the name of a file to create or replace")
        probe = _partial_path(p)
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            raise OutputError(f"cannot write output {str(path)!r}: the name is too long for "
                              f"its temporary file {probe.name!r}; use a shorter name") from None
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write output {str(path)!r}: "
                          f"{exc.strerror or exc}") from None
    return p


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:
        return False
    return True


def sweep_partials(folder: str | os.PathLike[str], *,
                   stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the stale partial files in ``folder`` (see the module docstring for which);
    returns what was removed. Never raises: a folder that cannot be read is left alone."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".partial")):
            continue
        m = _PARTIAL.match(name)
        if m is None and not _ATOMIC_WRITE_PARTIAL.match(name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        old = now - st.st_mtime > stale_after_s
        orphan = (m is not None and m["host"] == _HOST and int(m["pid"]) != os.getpid()
                  and not _pid_running(int(m["pid"])))
        if not (old or orphan) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    if removed:
        log.info("removed %d stale partial file(s) in %s", len(removed), folder)
    return removed


def sweep_once(folder: str | os.PathLike[str]) -> list[Path]:
    """:func:`sweep_partials` the first time this process writes into ``folder``."""
    key = Path(folder).absolute()
    if not key.is_dir():
        return []
    with _swept_lock:
        if key in _swept:
            return []
        _swept.add(key)
    return sweep_partials(key)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the renames still happened
        pass
    finally:
        os.close(fd)


@dataclasses.dataclass
class Release:
    """The files of one output on their way into place: ``(partial, destination)`` pairs,
    the output last."""

    pairs: list[tuple[Path, Path]]
    published: list[Path] = dataclasses.field(default_factory=list)

    @property
    def output(self) -> Path:
        return self.pairs[-1][1]

    @property
    def paths(self) -> list[Path]:
        """The destinations, the output first (as the guard reports them)."""
        return [self.output, *(dest for _, dest in self.pairs[:-1])]

    @classmethod
    def write(cls, output: Path, data: bytes, files: Mapping[str, bytes]) -> Release:
        """Step 1: write ``data`` and each companion (``output`` with the suffix) to partial
        files, each fsynced. On any failure the partial files are removed.

        Raises
        ------
        OutputError
            A file cannot be written (the message names it), or a companion would replace
            the output.
        """
        todo: list[tuple[Path, bytes]] = []
        for suffix, content in files.items():
            dest = output.with_suffix(suffix)
            if dest == output:
                raise OutputError(f"a stage's {suffix} file would replace the output "
                                  f"{str(output)!r}")
            todo.append((dest, content))
        todo.append((output, data))
        release = cls(pairs=[])
        try:
            for dest, content in todo:
                tmp = _partial_path(dest)
                release.pairs.append((tmp, dest))
                with open(tmp, "xb") as fh:
                    fh.write(content)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            release.discard()
            raise OutputError(f"cannot write output {str(dest)!r}: "
                              f"{exc.strerror or exc}") from None
        except BaseException:
            release.discard()
            raise
        return release

    def publish(self) -> None:
        """Step 3: rename the companions, then the output, into place; fsync the folders.

        Raises
        ------
        OutputError
            A rename failed; what was renamed is still listed in ``published`` (call
            :meth:`discard`).
        """
        for tmp, dest in self.pairs:
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                raise OutputError(f"cannot write output {str(dest)!r}: "
                                  f"{exc.strerror or exc}") from None
            self.published.append(dest)
        for folder in {dest.parent for _, dest in self.pairs}:
            _fsync_folder(folder)

    def discard(self) -> None:
        """Remove every partial file left and every file already published."""
        for tmp, _ in self.pairs:
            _unlink(tmp)
        for dest in self.published:
            _unlink(dest)
        self.published.clear()


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc.strerror or exc)


def save_and_release(store: ReportStore, report: Report,
                     release: Release | None) -> tuple[Report, OutputError | None]:
    """Record ``report`` and, with a ``release`` (already written, step 1), release its
    files: save ``pending``, publish, finalise.

    Returns the report as stored and, when the rename failed, the :class:`OutputError`
    (the report is then ``error``, without an output, and nothing is left on disk).

    Raises
    ------
    StoreError
        The report could not be saved or finalised; the files are not released (the
        pending report, if saved, then reads as interrupted).
    """
    if release is None:
        store.save(report)
        return report, None
    try:
        store.save(dataclasses.replace(report, status=PENDING))
    except BaseException:
        release.discard()
        raise
    try:
        release.publish()
    except OutputError as exc:
        release.discard()
        failed = _failed(report, exc)
        try:
            store.finalise(report.report_id, "error", error=str(exc), record_reason=str(exc))
        except StoreError as store_exc:  # it stays pending, and reads as interrupted
            log.warning("cannot mark report %s as failed: %s", report.report_id, store_exc)
        return failed, exc
    except BaseException:
        release.discard()
        raise
    try:
        store.finalise(report.report_id, report.status)
    except BaseException:
        release.discard()  # never leave an output whose record is not final
        raise
    return report, None


def _failed(report: Report, exc: OutputError) -> Report:
    stages = tuple(
        StageRecord(stage=s.stage, status=StageStatus.ERROR, duration_ms=s.duration_ms,
                    reason=str(exc), details=s.details) if s.stage == "record" else s
        for s in report.stages)
    return dataclasses.replace(report, status="error", output=None, error=str(exc),
                               stages=stages)


def release_state(report: Report) -> str:
    """The status to show for ``report``: :data:`INTERRUPTED` for a ``pending`` report whose
    output is absent (the process stopped before renaming it into place), else its status.

    A ``pending`` report whose output exists was released by a process that stopped
    before finalising it (or is finalising it right now)."""
    if report.status == PENDING and not (report.output and Path(report.output).is_file()):
        return INTERRUPTED
    return report.status


def now() -> str:
    """The current UTC time as a report's ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record_failure(store: ReportStore, config: Config, *, error: GuardrailError, stage: str,
                   prompt: str, modality: Modality | None, model_id: str,
                   requested_modality: str | None = None, passed: Sequence[str] = (),
                   prompt_hasher: PromptHasher | None = None) -> Report:
    """Record a request that failed before a guard could run it (unknown modality, a model
    that cannot be loaded). Every slot is in the report: ``stage`` as ``error``, the slots
    named in ``passed`` as ``ok`` (they ran and passed), the rest ``skipped``. Sets
    ``error.report_id``.
    """
    hasher = prompt_hasher or PromptHasher.from_keys_dir(config.keys_dir)
    records = []
    for slot in SLOTS:
        if slot == stage:
            records.append(StageRecord(stage=slot, status=StageStatus.ERROR, reason=str(error)))
        elif slot in passed:
            records.append(StageRecord(stage=slot, status=StageStatus.OK))
        else:
            records.append(StageRecord(stage=slot, status=StageStatus.SKIPPED,
                                       reason=f"not run: the request failed at {stage}"))
    report = Report(
        report_id=uuid.uuid4().hex, created_at=now(), modality=modality, status="error",
        metadata=GenerationMetadata(model_id=model_id, prompt_hash=hasher(prompt or "")),
        stages=tuple(records), prompt=prompt if config.store_prompts else None,
        error=str(error),
        extra={"requested_modality": requested_modality} if requested_modality else {})
    store.save(report)
    error.report_id = report.report_id
    return report


def report_extra(ctx: StageContext, art: Artifact | None) -> dict[str, Any]:
    """A report's ``extra``: the stages' evidence and, for a released ``art``, its content
    fingerprint."""
    extra: dict[str, Any] = {}
    evidence = ctx.evidence.to_dict()
    if evidence:
        extra["evidence"] = _jsonable(evidence)
    if art is not None:
        from .config import Limits
        from .fingerprint import fingerprint

        try:
            # the configured limits: an output the guard may release can be fingerprinted
            extra["fingerprint"] = fingerprint(art, limits=Limits.from_config(ctx.config))
        except Exception as exc:  # noqa: BLE001 - a fingerprint is an aid, never a blocker
            log.warning("cannot fingerprint the output: %s", exc)
        if art.modality is Modality.IMAGE:
            from .fingerprint_region import region_fingerprint

            try:  # binds crops and rotations through the watermark's geometry
                extra["region"] = region_fingerprint(art)
            except Exception as exc:  # noqa: BLE001 - as above
                log.warning("cannot take the output's region fingerprint: %s", exc)
    return extra
