"""A small mixed collection for the scan tests: peer C2PA fixtures (signed, tampered, no
manifest, malformed audio), generated images, an empty file, bytes of no known type, a
nested folder and a FIFO; and a configuration without detectors (fast)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from guardrail import Config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("GUARDRAIL_C2PA_FIXTURES")
                or ROOT.parent / "shared" / "fixtures" / "c2pa-peer")
PEER = ("C.jpg", "E-sig-CA.jpg", "no_manifest.jpg", "libpng-test.png", "riff_bomb_1000.wav",
        "id3v23_compression_underflow.mp3")


def png(seed: int, size: int = 48) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_collection(folder: Path, *, extra_pngs: int = 4, fifo: bool = True) -> Path:
    """Fill ``folder`` with the mixed collection; returns it."""
    if not FIXTURES.is_dir():
        pytest.skip(f"peer fixtures not found at {FIXTURES}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in PEER:
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "nested").mkdir()
    for i in range(extra_pngs):
        (folder / "nested" / f"gen-{i}.png").write_bytes(png(i))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "noise.bin").write_bytes(bytes(range(256)) * 4)
    (folder / ".hidden.png").write_bytes(png(99))
    if fifo and hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.png")
    return folder


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    return make_collection(tmp_path / "collection")


def fast_config(tmp_path: Path) -> Config:
    """No detectors (the per-file work is the credentials and the watermark)."""
    return Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                  "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
                                  "detectors": {"image": [], "text": [], "audio": []}})


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return fast_config(tmp_path)


def comparable(rows: list[dict]) -> list[dict]:
    """Rows keyed and ordered by path, as compared across engines."""
    return sorted(rows, key=lambda r: r["path"])
