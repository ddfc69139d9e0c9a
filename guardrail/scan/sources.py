"""What a scan reads: the files of a folder, of a glob or of a list file, local or remote.

A ``SOURCE`` is

* a folder: every file below it (recursively, hidden files and folders skipped);
* a glob (``*``, ``?`` or ``[`` in it; ``**`` crosses folders): the files it matches;
* a list file: one path or URL per line (blank lines and ``#`` comments skipped; a
  relative path is relative to the list file's folder); ``-`` reads the list from
  standard input;
* a URL (``s3://bucket/prefix/``, ``gs://...``, any fsspec protocol whose filesystem
  package is installed): a folder or a glob there.

Local paths are made absolute (workers on other processes or nodes open them); URLs are
kept as written. The list is sorted and without duplicates.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import DependencyError, InputError

__all__ = ["is_url", "list_sources"]

_GLOB = ("*", "?", "[")


def is_url(path: str) -> bool:
    """Whether ``path`` names a file through an fsspec protocol (``s3://``, ``gs://``...);
    ``file://`` URLs are local paths."""
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return os.path.abspath(path[len("file://"):] if path.startswith("file://") else path)


def _fs(url: str) -> Any:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with the scan extra
        raise DependencyError(f"{url}: reading URLs needs fsspec (pip install fsspec)") from None
    protocol = url.split("://", 1)[0]
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as exc:
        raise DependencyError(f"{url}: no filesystem for {protocol}:// is installed ({exc}); "
                              "install its fsspec package (s3fs, gcsfs, adlfs...)") from None


def _walk(folder: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in files if not f.startswith("."))
    return out


def _remote(url: str) -> list[str]:
    fs = _fs(url)
    protocol = url.split("://", 1)[0]
    if any(c in url for c in _GLOB):
        found = fs.glob(url)
    elif fs.isdir(url):
        found = fs.find(url)
    else:
        found = [url]
    return [f if "://" in f else f"{protocol}://{f}" for f in found]


def _read_list(source: str) -> list[str]:
    if source == "-":
        lines, base = sys.stdin.read().splitlines(), os.getcwd()
    else:
        try:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the list file {source}: {exc}") from None
        base = os.path.dirname(os.path.abspath(source))
    out = []
    for line in lines:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        out.append(item if is_url(item) else _local(os.path.join(base, item)))
    return out


def list_sources(source: str) -> list[str]:
    """The files ``source`` names (see the module docstring), sorted, without duplicates.

    Raises
    ------
    InputError
        ``source`` names nothing that exists, or a list file that cannot be read.
    DependencyError
        A URL whose fsspec filesystem package is not installed.
    """
    if is_url(source):
        found = _remote(source)
    elif source == "-":
        found = _read_list(source)
    elif any(c in source for c in _GLOB):
        found = [_local(p) for p in glob.glob(_local(source), recursive=True)
                 if not os.path.isdir(p)]
    elif os.path.isdir(_local(source)):
        found = _walk(_local(source))
    elif os.path.isfile(_local(source)):
        found = _read_list(_local(source))
    else:
        raise InputError(f"scan source {source!r}: no such folder, list file or glob")
    return sorted(set(found))
