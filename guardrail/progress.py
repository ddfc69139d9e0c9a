"""guardrail's own progress bars, and the silencing of the libraries' progress output.

Every long piece of work (audits, robustness labs, detector evaluations, benchmarks,
``guardrail demo --evaluations``) shows one :func:`bar` on standard error: a tqdm bar with
the count done, the total, the elapsed time and an ETA. Whether bars show is decided in one
place:

``mode``
    ``"auto"`` (default): when standard error is a terminal; ``"always"``: even when it is
    not (a log file, a test); ``"never"``.
:func:`scope`
    a caller that was asked for no progress (``progress=False`` of a library function, or
    ``--json`` on the command line) turns bars off for the work it runs.

The command line calls :func:`configure` once (``--progress`` and ``-v``): ``--json`` means
``never`` unless ``--progress always`` is given, and without ``-v`` the libraries' own
progress bars and chatter (transformers, diffusers and huggingface_hub bars and info logs,
Piper's logs) are switched off - :func:`library_bars` tells a loader whether to show them.

Only the standard library is imported with this module; tqdm when a bar is made.

Examples
--------
>>> with scope(False):
...     b = bar(total=3, desc="nothing shown")
...     b.update(3)
...     b.close()
>>> enabled(False)
False
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["MODES", "bar", "configure", "enabled", "library_bars", "mode", "note", "scope",
           "silence_libraries"]

MODES = ("auto", "always", "never")
#: library loggers kept at ERROR unless ``-v`` (their INFO lines and bars are noise; Piper
#: logs the text it speaks)
LIBRARY_LOGGERS = ("transformers", "diffusers", "huggingface_hub", "piper", "accelerate",
                   "sentence_transformers")
#: environment switches read by the libraries when they are imported
_LIBRARY_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
                "DIFFUSERS_VERBOSITY": "error"}

_state: dict[str, Any] = {"mode": "auto", "verbose": 0, "env_set": {}, "silenced": False}
_scope: ContextVar[bool | None] = ContextVar("guardrail_progress_scope", default=None)


def mode() -> str:
    """The configured mode (``auto``, ``always`` or ``never``)."""
    return str(_state["mode"])


def _tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def enabled(wanted: bool | None = None) -> bool:
    """Whether a progress bar shows now.

    ``wanted=False`` (a caller asked for no progress) and an enclosing ``scope(False)``
    switch bars off; otherwise the mode decides: ``always`` shows, ``never`` hides, ``auto``
    shows when standard error is a terminal.
    """
    if wanted is False or _scope.get() is False:
        return False
    current = mode()
    if current == "never":
        return False
    return current == "always" or _tty()


@contextlib.contextmanager
def scope(wanted: bool | None) -> Iterator[None]:
    """Within this block, bars show only if ``wanted`` is not False (and the mode allows
    it); nested scopes can only switch bars off."""
    token = _scope.set(False if (wanted is False or _scope.get() is False) else None)
    try:
        yield
    finally:
        _scope.reset(token)


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
        unit: str = "item", initial: int = 0, show: bool | None = None) -> Any:
    """A tqdm bar on standard error with counts, elapsed time and ETA; disabled unless
    :func:`enabled` (``show``: the caller's own wish, as in :func:`enabled`).

    Use it as tqdm: iterate over it, or ``update(n)`` and ``close()`` (or ``with``).
    """
    from tqdm import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    on = enabled(show)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial,
                file=sys.stderr, disable=not on, dynamic_ncols=True, leave=True,
                mininterval=0.5 if _tty() else 5.0,
                bar_format=None if _tty() else "{desc}: {n_fmt}/{total_fmt} {unit}s "
                "[{elapsed}<{remaining}, {rate_fmt}]")


def note(message: str, *, show: bool | None = None) -> None:
    """A one-line progress message on standard error (between bars), when bars show."""
    if enabled(show):
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)


def library_bars() -> bool:
    """Whether the libraries' own progress bars should show (a model loader's ``progress``
    argument): only with ``-v``, and only where guardrail's bars would show."""
    return bool(_state["verbose"]) and enabled()


def configure(progress_mode: str = "auto", *, json_output: bool = False,
              verbose: int = 0) -> str:
    """Set the mode for this process (the command line calls this once per command).

    ``json_output`` turns ``auto`` into ``never`` (machine output; ``always`` still shows
    bars on standard error). Without ``verbose`` the libraries are silenced
    (:func:`silence_libraries`). Returns the effective mode.
    """
    if progress_mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, "
                         f"got {progress_mode!r}")
    effective = "never" if json_output and progress_mode == "auto" else progress_mode
    _state["mode"] = effective
    _state["verbose"] = int(verbose or 0)
    silence_libraries(not verbose)
    return effective


def silence_libraries(silent: bool = True) -> None:
    """Switch the libraries' progress bars and info logs off (``silent``) or back to their
    defaults.

    Environment switches are set only where the user has not set them (and removed again
    by ``silent=False``); libraries already imported are switched at once.
    """
    if not silent and not _state["silenced"]:
        return  # nothing of ours to undo: the libraries keep their own settings
    _state["silenced"] = silent
    env_set: dict[str, str] = _state["env_set"]
    if silent:
        for key, value in _LIBRARY_ENV.items():
            if key not in os.environ:
                os.environ[key] = value
                env_set[key] = value
    else:
        for key, value in list(env_set.items()):
            if os.environ.get(key) == value:
                del os.environ[key]
            env_set.pop(key, None)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR if silent else logging.NOTSET)
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and hasattr(hub, "disable_progress_bars"):
        with warnings.catch_warnings():  # the variable, read at import, has the last word
            warnings.simplefilter("ignore")
            (hub.disable_progress_bars if silent else hub.enable_progress_bars)()
    for module in ("transformers.utils.logging", "diffusers.utils.logging"):
        lib = sys.modules.get(module)
        if lib is None:
            continue
        (lib.disable_progress_bar if silent else lib.enable_progress_bar)()
        if silent and hasattr(lib, "set_verbosity_error"):
            lib.set_verbosity_error()
        elif not silent and hasattr(lib, "set_verbosity_warning"):
            lib.set_verbosity_warning()
