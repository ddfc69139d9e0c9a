"""What runs inside the verify pool's processes (see :class:`.work.ProcessPool`).

Each process is started with ``spawn`` by a worker of ``guardrail serve`` and set up once
by :func:`initialize`: it dies with that worker (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
and, everywhere, a thread that watches the parent's id), opens the record store itself and,
with ``[serve] preload_detectors``, builds the detectors and runs one verification of a
small image so that the watermark keys and the Content Credentials reader are loaded
before the first request. :func:`call` then runs
:meth:`.state.Resources.verify` or :meth:`.state.Resources.by_content` and hands back
plain data: an error crosses the process boundary as its class name and message, never
as a pickled exception.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any

from .._children import die_with_parent
from ..config import Config
from ..errors import GuardrailError, UnsupportedMediaError
from .settings import ServeSettings

__all__ = ["CALLS", "call", "initialize", "ping", "raise_error"]

log = logging.getLogger(__name__)

#: the methods of Resources the pool runs
CALLS = frozenset({"verify", "by_content"})
_resources: Any = None


def initialize(config: Config, settings: ServeSettings, store_url: str, parent: int) -> None:
    """Set a pool process up (the executor's initializer)."""
    global _resources
    die_with_parent(parent)
    from .logs import configure_logging

    configure_logging()
    from ..store import ReportStore
    from .state import Resources

    _resources = Resources(config, settings, store=ReportStore(store_url))
    _no_spinning(_resources)
    if settings.preload_detectors:  # the generators stay with the worker
        _warm(_resources)


def _no_spinning(resources: Any) -> None:
    """Build the image and audio detectors (their models load on first use) set up for a
    process that shares the cores (:func:`guardrail.detectors.share_cores`: no spinning
    threads)."""
    from .._types import Modality
    from ..detectors import share_cores

    for modality in (Modality.IMAGE, Modality.AUDIO):
        share_cores(resources.detectors(modality) or [])


def _warm(resources: Any) -> None:
    """One verification of a small JPEG: loads what the first request would load."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (128, 1))
    buf = io.BytesIO()
    Image.fromarray(np.dstack([pixels, pixels.T, 255 - pixels])).save(buf, format="JPEG")
    try:
        resources.verify(buf.getvalue(), "warm-up.jpg")
    except Exception as exc:  # noqa: BLE001 - a warm-up that fails only costs time later
        log.warning("the verify pool's warm-up failed: %s: %s", type(exc).__name__, exc)


def ping(hold: float = 0.0) -> int:
    """The process id after ``hold`` seconds (to start the processes and to wait until
    each is set up)."""
    if hold > 0:
        time.sleep(hold)
    return os.getpid()


def _use_threads(threads: int) -> None:
    """Let torch (when loaded) use ``threads`` threads for the next job: all of the pool's
    cores for a job that runs alone, a share of them when the pool's processes are all
    busy (more threads than cores only slows every job down)."""
    torch = sys.modules.get("torch")
    if torch is not None and threads >= 1:
        with contextlib.suppress(Exception):
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)


def call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
         threads: int = 0) -> tuple[str, Any]:
    """Run ``Resources.<method>`` here: ``("ok", result)`` or ``("error", (kind, message))``
    with ``kind`` one of ``unsupported-media``, ``guardrail``, ``unexpected``. ``threads``:
    the threads torch may use for it (0: leave as is)."""
    if method not in CALLS or _resources is None:
        return "error", ("unexpected", f"no pool call {method!r}")
    _use_threads(threads)
    try:
        return "ok", getattr(_resources, method)(*args, **kwargs)
    except UnsupportedMediaError as exc:
        return "error", ("unsupported-media", str(exc))
    except GuardrailError as exc:
        return "error", ("guardrail", str(exc))
    except Exception as exc:  # noqa: BLE001 - handed to the server, which logs and answers
        return "error", ("unexpected", f"{type(exc).__name__}: {exc}")


def raise_error(kind: str, message: str) -> None:
    """Raise in the server what :func:`call` reported from a pool process."""
    if kind == "unsupported-media":
        raise UnsupportedMediaError(message)
    if kind == "guardrail":
        raise GuardrailError(message)
    raise RuntimeError(message)  # as an unexpected error in a thread would be
