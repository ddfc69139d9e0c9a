"""Child processes that die with their parent.

The service's verify pool and the dashboard's server are children whose parent can be
killed outright (``kill -9``, out of memory), when no clean shutdown reaches them. On Linux
the kernel then sends them ``SIGKILL`` (``prctl(PR_SET_PDEATHSIG)``); everywhere, a child
that finds its parent already gone exits at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["die_with_parent", "parent_death_signal"]

_PR_SET_PDEATHSIG = 1


def parent_death_signal(parent: int | None = None) -> Callable[[], None]:
    """A function that, run in a child, makes the kernel kill it when ``parent`` (default:
    the calling process) dies, and exits at once when ``parent`` is already gone. libc is
    looked up here, in the caller, so the function may run between fork and exec
    (``subprocess.Popen(preexec_fn=...)``)."""
    parent = os.getpid() if parent is None else parent
    prctl = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl

    def in_child() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return in_child


def die_with_parent(parent: int) -> None:
    """In a running child: :func:`parent_death_signal`, plus a thread that exits the process
    within a second of ``parent`` being gone (where the kernel does not)."""
    parent_death_signal(parent)()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="guardrail-parent-watch", daemon=True).start()
