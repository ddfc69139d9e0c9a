"""A chunk task for the local-engine tests: the thread settings its worker process runs
with, one row per file."""

from __future__ import annotations

import os
from typing import Any

from guardrail.scan import local_engine
from guardrail.scan.worker import THREAD_ENV


def task(paths: list[str]) -> list[dict[str, Any]]:
    import cv2

    ctx = local_engine._CTX
    return [{"path": p, "pid": os.getpid(), "ctx_threads": ctx.threads if ctx else None,
             "cv2": cv2.getNumThreads(), "env": {k: os.environ.get(k) for k in THREAD_ENV}}
            for p in paths]
