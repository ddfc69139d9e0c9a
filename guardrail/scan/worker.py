"""The per-file work of a scan, the same for every engine.

A :class:`ScanContext` is built once per worker (process or Ray actor): the
configuration, the ``[limits]``, the record store, and - on first need - the detectors
of each modality and the text model. :func:`scan_file` reads one file, hashes it, skips
it when its path already has a row with the same hash, and otherwise verifies it with
:func:`guardrail.verify.verify_file` and builds its row (:mod:`guardrail.scan.rows`).

Workers share the machine's cores: a context built with ``threads`` (the engines pass
:func:`threads_per_worker`) caps every native thread pool of its process at that many
threads - OpenCV, torch, the ONNX Runtime sessions of the detectors that take a
``threads`` setting (their threads sleep rather than spin between operators), and,
through :func:`thread_env` (set before a worker process starts, so before it imports
numpy), OpenMP and the BLAS libraries. Without the cap each worker
would start pools sized for the whole machine, and two workers on two cores would run
four or more busy threads. The thread count does not change any result.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._types import Modality
from ..config import Config, Limits
from ..errors import GuardrailError, UnsupportedMediaError
from .rows import error_row, row_from_verify
from .sources import is_url

__all__ = ["THREAD_ENV", "ScanContext", "cpu_count", "limit_threads", "scan_file",
           "scan_many", "thread_env", "threads_per_worker"]

log = logging.getLogger(__name__)

#: the marker a worker returns for a file whose row is already written
SKIPPED = "skipped"

#: environment variables that size native thread pools when a library starts them
#: (OpenMP - torch's intra-op pool included -, OpenBLAS, MKL, numexpr, Accelerate)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity where the system reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Native threads for each of ``workers`` processes sharing this machine's cores:
    ``max(1, cores // workers)``."""
    return max(1, cpu_count() // max(1, workers))


@contextlib.contextmanager
def thread_env(threads: int) -> Iterator[None]:
    """Within the block, :data:`THREAD_ENV` variables not set by the user say ``threads``:
    processes started in the block inherit them (this process's pools, already running,
    are not affected); the environment is restored at the end."""
    added = [name for name in THREAD_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def limit_threads(threads: int) -> None:
    """Cap this process's thread pools that can still be resized at ``threads``: OpenCV's
    (imported here when installed), torch's intra-op pool (when torch is imported) and,
    for pools started later, the :data:`THREAD_ENV` variables not set by the user."""
    for name in THREAD_ENV:
        os.environ.setdefault(name, str(threads))
    try:
        import cv2
    except ImportError:
        pass
    else:
        cv2.setNumThreads(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


@dataclass
class ScanContext:
    """What a worker loads once and uses for every file.

    Parameters
    ----------
    config
        The configuration (detectors, keys, trust settings, store, limits).
    done
        ``path -> sha256`` of the rows already written: such a file is read and hashed,
        then skipped.
    open_store
        Open the record store once, for records recovered through a watermark (without
        it, verification opens it per file that needs it).
    threads
        Cap this process's native thread pools at this many threads
        (:func:`limit_threads`, and the ``threads`` of the detectors that have one);
        ``None`` leaves them as the libraries size them.
    """

    config: Config
    done: Mapping[str, str] = field(default_factory=dict)
    open_store: bool = True
    threads: int | None = None
    limits: Limits = field(init=False)
    _detectors: dict[Modality, Any] = field(default_factory=dict, init=False)
    _text: list[Any] = field(default_factory=list, init=False)
    _store: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.limits = Limits.from_config(self.config)
        if self.threads is not None:
            if self.threads < 1:
                raise ValueError(f"threads must be at least 1, got {self.threads}")
            limit_threads(self.threads)

    def store(self) -> Any:
        """The record store, opened on first use (``None`` when it cannot be opened:
        verification then says why, per file)."""
        if self._store is None and self.open_store:
            from ..store import ReportStore

            try:
                self._store = ReportStore(self.config.store_url)
            except GuardrailError as exc:
                log.warning("record store not opened: %s", exc)
                self.open_store = False
        return self._store

    def text_generator(self) -> Any:
        """The text model (for the text watermark and detectors), loaded on first use;
        ``None`` when it cannot be loaded (verification then reports why per file)."""
        if not self._text:
            from ..factory import generator_from_config

            try:
                self._text.append(generator_from_config(self.config, Modality.TEXT,
                                                        progress=False))
            except Exception as exc:  # noqa: BLE001 - verification reports it per file
                log.warning("text model not loaded: %s", exc)
                self._text.append(None)
            if self.threads is not None:
                limit_threads(self.threads)  # torch is imported by now
        return self._text[0]

    def detectors(self, modality: Modality) -> list[Any] | None:
        """The configured detectors of ``modality``, built on first use (``None``: building
        failed, verification reports why)."""
        if modality not in self._detectors:
            from ..detectors import build_all, share_cores

            gen = self.text_generator() if modality is Modality.TEXT else None
            try:
                self._detectors[modality] = build_all(self.config, [modality],
                                                      text_generator=gen)
            except Exception as exc:  # noqa: BLE001 - verification reports it per file
                log.warning("detectors for %s not built: %s", modality.value, exc)
                self._detectors[modality] = None
            if self.threads is not None:
                share_cores(self._detectors[modality] or [], self.threads)
        return self._detectors[modality]

    def close(self) -> None:
        """Close the record store."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _modality(data: bytes) -> Modality | None:
    from ..media import sniff_media_type

    sniffed = sniff_media_type(data) or ""
    for prefix, mod in (("image/", Modality.IMAGE), ("audio/", Modality.AUDIO),
                        ("text/", Modality.TEXT)):
        if sniffed.startswith(prefix):
            return mod
    return None


def _read(path: str, limits: Limits) -> bytes:
    if not is_url(path):
        from ..media import read_bytes

        return read_bytes(path, limits=limits)
    import fsspec

    limit = limits.max_file_bytes
    try:
        with fsspec.open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except (OSError, ValueError) as exc:
        raise UnsupportedMediaError(f"{path}: cannot read: {exc}") from None
    if len(data) > limit:
        raise UnsupportedMediaError(f"{path}: above the limit of {limit} bytes "
                                    "(limits.max_file_bytes)")
    return data


def _verify(path: str, data: bytes, ctx: ScanContext) -> dict[str, Any]:
    from ..verify import verify_file

    mod = _modality(data)
    kwargs: dict[str, Any] = {"store": ctx.store(), "limits": ctx.limits}
    if mod is not None:
        kwargs["detectors"] = ctx.detectors(mod)
    if mod is Modality.TEXT:
        kwargs["text_generator"] = ctx.text_generator()
    if not is_url(path):
        return verify_file(path, ctx.config, **kwargs).to_dict()
    # a remote file is verified from a local copy with the same name (the name's
    # extension is the declared type)
    with tempfile.TemporaryDirectory(prefix="guardrail-scan-") as tmp:
        local = Path(tmp) / (path.rstrip("/").rsplit("/", 1)[-1] or "file")
        local.write_bytes(data)
        del data
        return verify_file(local, ctx.config, **kwargs).to_dict()


def scan_file(path: str, ctx: ScanContext) -> dict[str, Any] | None:
    """The row of one file, or ``None`` when ``ctx.done`` already has its path with the
    same content hash. Never raises: a failure is a row with ``error`` set.
    """
    try:
        try:
            data = _read(path, ctx.limits)
        except UnsupportedMediaError as exc:
            # unreadable, special or too large: verification gives the documented verdict
            size = None
            if not is_url(path):
                try:
                    size = os.stat(path).st_size
                except OSError:
                    size = None
            return _unread(path, size, str(exc), ctx)
        digest = hashlib.sha256(data).hexdigest()
        if ctx.done.get(path) == digest:
            return None
        size = len(data)
        return row_from_verify(path, size, digest, _verify(path, data, ctx))
    except Exception as exc:  # noqa: BLE001 - a file's failure is its row, never the scan's
        log.warning("scan of %s failed: %s", path, exc)
        return error_row(path, f"{type(exc).__name__}: {exc}")


def _unread(path: str, size: int | None, reason: str, ctx: ScanContext) -> dict[str, Any]:
    if is_url(path):
        return error_row(path, reason, size=size)
    from ..verify import verify_file

    res = verify_file(path, ctx.config, store=ctx.store(), limits=ctx.limits, detectors=[])
    return row_from_verify(path, size, None, res.to_dict(), error=reason)


def scan_many(paths: list[str], ctx: ScanContext) -> list[dict[str, Any]]:
    """:func:`scan_file` over ``paths``: the rows of the files not skipped."""
    rows = []
    for p in paths:
        row = scan_file(p, ctx)
        if row is not None:
            rows.append(row)
    return rows
