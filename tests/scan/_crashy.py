"""A chunk task for the local-engine tests: a file named ``crash*`` kills its worker
process (as a native crash or kill -9 would), the others are scanned as usual."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from guardrail.scan import local_engine


def task(paths: list[str]) -> list[dict[str, Any]]:
    if any(Path(p).name.startswith("crash") for p in paths):
        os._exit(9)
    return local_engine._task(paths)
