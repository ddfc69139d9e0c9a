"""Write the malformed corpus: ``python -m tests.faults.corpus OUT [--seed N] [--real-text]``.

Every input is made from a valid seed (:mod:`tests.faults.seeds`: real guardrail outputs,
watermarked and signed, plain files and the third-party C2PA fixtures) by one described,
deterministic change (:mod:`tests.faults.mutate`), or is a special file. The same seed
number gives the same corpus (the guardrail outputs themselves carry fresh keys and
signing times, so their bytes differ between runs; the changes made to them do not).

Categories:

``truncate``        cut at header boundaries, inside the Content Credentials, near the end
``bitflip_header``  1-3 bit flips in the first 64 bytes
``bitflip_c2pa``    1-8 bit flips inside the JUMBF / C2PA boxes
``bitflip_body``    1-16 bit flips anywhere
``insert``          bytes inserted (zeros, 0xFF, random, a copy of the header)
``header_field``    a header field at an extreme (PNG IHDR, WAV fmt, RIFF and chunk sizes,
                    JPEG SOF and segment lengths, FLAC STREAMINFO)
``c2pa_box_length`` a JUMBF box length (LBox) at an extreme
``lying_extension`` valid or damaged bytes under another type's extension
``text_wrapper``    the C2PA text wrapper damaged (header, length, manifest, duplicated)
``sidecar``         a text with a damaged or mismatched ``.c2pa`` sidecar
``bomb``            decompression bombs: huge declared sizes, zlib bombs
``special``         FIFOs, symlinks to /dev/zero and /dev/urandom, directories named like
                    files, empty files, a multi-GB sparse file, a 50 MB text
``peer_hostile``    the hostile third-party fixtures as they are

``OUT`` receives ``inputs/`` (the corpus), ``data/`` (keys and the record store of the
guardrail seeds, for ``guardrail verify --data-dir``), ``seeds/`` and ``manifest.json``
(one entry per input: ``id``, ``file``, ``category``, ``seed``, ``change``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from tests.faults import mutate
from tests.faults.seeds import Seed, SeedSet, make_seeds

__all__ = ["CATEGORIES", "Entry", "build_corpus", "entries", "main"]

CATEGORIES = ("truncate", "bitflip_header", "bitflip_c2pa", "bitflip_body", "insert",
              "header_field", "c2pa_box_length", "lying_extension", "text_wrapper", "sidecar",
              "bomb", "special", "peer_hostile")
EXTS = (".png", ".jpg", ".webp", ".wav", ".flac", ".mp3", ".txt")

U32 = 0xFFFFFFFF
#: extreme values by field (name suffix), beyond the generic ones
EXTREMES: dict[str, tuple[int, ...]] = {
    "png.width": (0, 1, 65535, 100_000, 2**31 - 1, U32),
    "png.height": (0, 1, 65535, 100_000, 2**31 - 1, U32),
    "png.bit_depth": (0, 3, 16, 255),
    "png.color_type": (1, 5, 255),
    "wav.rate": (0, 1, 2, 7999, 1_000_000, 2_000_000, 4_000_000, 7_000_000, 2**31 - 1, U32),
    "wav.channels": (0, 3, 255, 65535),
    "wav.bits": (0, 1, 7, 24, 64, 65535),
    "wav.format": (0, 3, 0xFFFE, 0xFFFF),
    "wav.block_align": (0, 65535),
    "wav.byte_rate": (0, U32),
    "jpeg.sof.height": (0, 1, 65535),
    "jpeg.sof.width": (0, 1, 65535),
    "jpeg.sof.components": (0, 255),
    "flac.total_samples_low": (0, U32),
    "riff.size": (0, 4, 2**31 - 1, U32),
}
LENGTH_EXTREMES = (0, 1, 2**31 - 1, U32)
LBOX_EXTREMES = (0, 1, 7, 8, 2**31 - 1, U32)


@dataclass
class Entry:
    """One corpus input and how it was made."""

    id: str
    file: str
    category: str
    seed: str
    change: str


@dataclass
class _Made:
    category: str
    seed: str
    change: str
    ext: str
    #: the bytes, or a function that makes them (for the costly bombs)
    data: bytes | Callable[[], bytes] | None = None
    #: for special files: a function of the target path that creates it
    special: str | None = None
    extra: dict | None = None


def _flac_fields(data: bytes) -> Iterator[tuple[str, bytes]]:
    """FLAC STREAMINFO with rate, channels and bits at extremes (bit-packed fields)."""
    for f in mutate.fields(data):
        if f.name != "flac.rate_channels_bps":
            continue
        orig = int.from_bytes(data[f.offset:f.offset + 4], "big")
        low = orig & 0xFFF
        for rate in (0, 1, 655_350, 2**20 - 1):
            yield f"flac.rate={rate}", mutate.set_field(data, f, (rate << 12) | low)
        for ch in (7,):
            yield f"flac.channels={ch + 1}", mutate.set_field(
                data, f, (orig & ~(0x7 << 9)) | (ch << 9))
        for bps in (0, 31):
            yield f"flac.bits={bps + 1}", mutate.set_field(
                data, f, (orig & ~(0x1F << 4)) | (bps << 4))


def _per_seed(seed: Seed, data: bytes, rng: random.Random, rich: bool) -> Iterator[_Made]:
    """Every change made to one seed (``rich``: a guardrail or plain seed, changed more)."""
    n = len(data)
    ext = seed.ext
    region = mutate.c2pa_region(data)
    # truncations
    cuts = {0, 1, 2, 4, 8, 12, 16, 33, 64, n // 2, n - 1, n - 2} if rich else {8, 33, n // 2, n - 1}
    cuts |= {rng.randrange(1, max(2, n)) for _ in range(3 if rich else 1)}
    if region:
        a, b = region
        cuts |= {a + 4, a + 40, (a + b) // 2} if rich else {(a + b) // 2}
    for c in sorted(x for x in cuts if 0 <= x < n):
        yield _Made("truncate", seed.name, f"first {c} of {n} bytes", ext, mutate.truncate(data, c))
    # bit flips
    for _ in range(8 if rich else 3):
        k = rng.randint(1, 3)
        bits = [rng.randrange(min(n, 64) * 8) for _ in range(k)]
        yield _Made("bitflip_header", seed.name, f"bits {bits}", ext, mutate.flip_bits(data, bits))
    if region:
        a, b = region
        for _ in range(12 if rich else 4):
            k = rng.choice((1, 1, 2, 8))
            bits = [rng.randrange(a * 8, b * 8) for _ in range(k)]
            yield _Made("bitflip_c2pa", seed.name, f"bits {bits} in C2PA bytes {a}..{b}", ext,
                        mutate.flip_bits(data, bits))
    for _ in range(6 if rich else 2):
        bits = [rng.randrange(n * 8) for _ in range(rng.choice((1, 4, 16)))]
        yield _Made("bitflip_body", seed.name, f"bits {bits}", ext, mutate.flip_bits(data, bits))
    # insertions
    for _ in range(5 if rich else 2):
        where = rng.choice(("anywhere", "header", "c2pa")) if region else rng.choice(
            ("anywhere", "header"))
        if where == "c2pa" and region:
            off = rng.randrange(*region)
        elif where == "header":
            off = rng.randrange(0, min(n, 64))
        else:
            off = rng.randrange(0, n)
        kind = rng.choice(("zeros", "ff", "random", "header"))
        size = rng.choice((1, 3, 16, 1000))
        chunk = {"zeros": b"\0" * size, "ff": b"\xff" * size,
                 "random": rng.randbytes(size), "header": data[:size]}[kind]
        yield _Made("insert", seed.name, f"{size} {kind} bytes at {off}", ext,
                    mutate.insert(data, off, chunk))
    # header fields
    peer_budget = 12
    for f in mutate.fields(data):
        if f.name.startswith("jumbf."):
            continue
        base = f.name if f.name in EXTREMES else None
        if base is None and f.name.endswith((".length", ".size")):
            values: tuple[int, ...] = LENGTH_EXTREMES
        elif base is not None:
            values = EXTREMES[base]
        else:
            continue
        if not rich:
            values = values[:: max(1, len(values) // 2)]
        for v in values:
            if not rich:
                peer_budget -= 1
                if peer_budget < 0:
                    break
            yield _Made("header_field", seed.name, f"{f.name}={v}", ext,
                        mutate.set_field(data, f, v))
    for change, out in _flac_fields(data):
        yield _Made("header_field", seed.name, change, ext, out)
    # JUMBF box lengths
    boxes = [f for f in mutate.fields(data) if f.name.startswith("jumbf.")]
    chosen = boxes[:4] + rng.sample(boxes[4:], min(len(boxes) - 4, 4)) if len(boxes) > 4 else boxes
    if not rich:
        chosen = chosen[:3]
    for f in chosen:
        orig = int.from_bytes(data[f.offset:f.offset + 4], "big")
        values = LBOX_EXTREMES + (orig + 1, max(orig - 1, 0)) if rich else (0, U32, orig + 1)
        for v in values:
            yield _Made("c2pa_box_length", seed.name, f"{f.name}@{f.offset}={v} (was {orig})",
                        ext, mutate.set_field(data, f, v))
    # lying extensions
    others = [e for e in EXTS if e != ext and not (ext in (".jpg", ".jpeg") and e == ".jpg")]
    for e in (others if rich else rng.sample(others, 2)):
        yield _Made("lying_extension", seed.name, f"{ext} bytes named {e}", e, data)
    if rich:
        damaged = mutate.truncate(data, n // 2)
        yield _Made("lying_extension", seed.name, "first half named .txt", ".txt", damaged)


def _text_wrapper(seed: Seed, data: bytes, rng: random.Random) -> Iterator[_Made]:
    text = data.decode("utf-8")
    found = mutate.decode_text_wrapper(text)
    if found is None:
        return
    start, end, payload = found
    m = len(payload)
    cases: list[tuple[str, str]] = []
    for _ in range(10):
        bits = [rng.randrange(min(m, 16) * 8) for _ in range(rng.randint(1, 2))]
        cases.append((f"wrapper header bits {bits}",
                      mutate.replace_text_wrapper(text, mutate.flip_bits(payload, bits))))
    for _ in range(15):
        bits = [rng.randrange(16 * 8, m * 8) for _ in range(rng.choice((1, 2, 8)))]
        cases.append((f"wrapper manifest bits {bits}",
                      mutate.replace_text_wrapper(text, mutate.flip_bits(payload, bits))))
    for keep in (0, 1, 8, 12, 13, 16, m // 4, m // 2, m - 1):
        cases.append((f"wrapper bytes cut to {keep} of {m}",
                      mutate.replace_text_wrapper(text, payload[:keep])))
    # the header's 4-byte length (after the 8-byte magic and the version byte)
    for v in (0, 1, m - 13 + 1, 2**31 - 1, U32):
        cases.append((f"wrapper length field={v}", mutate.replace_text_wrapper(
            text, mutate.overwrite(payload, 9, struct.pack(">I", v)))))
    wrapper = text[start:end]
    cases += [
        ("wrapper twice", text + wrapper),
        ("wrapper at the start", wrapper + text[:start] + text[end:]),
        ("wrapper in the middle", text[:start // 2] + wrapper + text[start // 2:start] + text[end:]),
        ("wrapper removed", text[:start] + text[end:]),
        ("one word changed", text[:start].replace(" ", "  ", 1) + text[start:]),
        ("text cut before the wrapper", text[start // 2:]),
        ("text cut inside the wrapper at a character", text[: (start + end) // 2]),
        ("U+FEFF without selectors", text[:start] + "\ufeff" + text[end:]),
        ("NUL bytes in the text", text[:10] + "\0" * 100 + text[10:]),
        ("a lone surrogate (invalid UTF-8)", text[:start] + "\ud800" + text[start:]),
    ]
    for change, t in cases:
        yield _Made("text_wrapper", seed.name, change, ".txt",
                    t.encode("utf-8", errors="surrogatepass"))
    raw = text.encode("utf-8")
    for k in (1, 2, 3):  # cut inside a 4-byte variation selector: invalid UTF-8
        yield _Made("text_wrapper", seed.name, f"UTF-8 cut {k} bytes into a selector", ".txt",
                    raw[: len(text[:start + 5].encode('utf-8')) + k])


def _sidecar(seeds: SeedSet, rng: random.Random) -> Iterator[_Made]:
    side = next((s for s in seeds.seeds if s.name == "sidecar.txt"), None)
    if side is None or not side.path.with_suffix(".c2pa").exists():
        return
    text = side.read()
    manifest = side.path.with_suffix(".c2pa").read_bytes()
    n = len(manifest)
    cases: list[tuple[str, bytes, bytes]] = []
    for c in (0, 1, 8, 64, n // 2, n - 1):
        cases.append((f"sidecar cut to {c} of {n}", text, manifest[:c]))
    for _ in range(8):
        bits = [rng.randrange(n * 8) for _ in range(rng.choice((1, 2, 8)))]
        cases.append((f"sidecar bits {bits}", text, mutate.flip_bits(manifest, bits)))
    for f in [f for f in mutate.fields(manifest) if f.name.startswith("jumbf.")][:3]:
        for v in (0, U32):
            cases.append((f"sidecar {f.name}={v}", text, mutate.set_field(manifest, f, v)))
    cases += [("text edited, sidecar intact", text + b" edited", manifest),
              ("text empty, sidecar intact", b"", manifest),
              ("sidecar is text", text, text),
              ("sidecar of zeros", text, b"\0" * 4096)]
    for change, t, m in cases:
        yield _Made("sidecar", side.name, change, ".txt", t, extra={"sidecar": m})


def _bombs() -> Iterator[_Made]:
    for w, h in ((100_000, 100_000), (2**31 - 1, 1), (1, 2**31 - 1), (65535, 65535),
                 (8193, 8193), (U32, U32), (0, 0), (2**31 - 1, 2**31 - 1)):
        yield _Made("bomb", "-", f"PNG IHDR {w}x{h}, 64 bytes of data", ".png",
                    mutate.png_with_size(w, h))
    # zlib bombs: a few hundred KB that inflate to the declared (large) image
    for w, h, ct in ((8000, 8000, 0), (16384, 16384, 0), (4000, 4000, 6), (30000, 30000, 0)):
        rows = min(h, 20000)
        row = 1 + w * (4 if ct == 6 else 1)
        yield _Made("bomb", "-", f"PNG {w}x{h} color type {ct}, zlib inflating to "
                    f"{rows * row} bytes", ".png", partial(_zlib_bomb, w, h, ct, rows, row))
    # a zlib stream far longer than the declared image needs
    yield _Made("bomb", "-", "PNG 64x64 with a zlib stream inflating to 256 MiB", ".png",
                partial(_long_zlib, 256 << 20))
    # WAV headers that promise far more than they hold
    for rate, ch, bits, size in ((96_000, 8, 32, U32), (2**31 - 1, 1, 16, U32),
                                 (8000, 65535, 16, 2**31 - 1), (16000, 1, 16, U32)):
        fmt = struct.pack("<HHIIHH", 1, ch, rate, (rate * ch * bits // 8) & U32,
                          (ch * bits // 8) & 0xFFFF, bits)
        body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack(
            "<I", size) + b"\0" * 4096
        yield _Made("bomb", "-", f"WAV {rate} Hz x {ch} ch x {bits} bit, data size {size}",
                    ".wav", b"RIFF" + struct.pack("<I", len(body)) + body)
    # JPEG and WebP headers that declare huge images
    sof = b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    yield _Made("bomb", "-", "JPEG SOF 65535x65535 with no scan", ".jpg",
                b"\xff\xd8" + sof + b"\xff\xd9")
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (2**24 - 1).to_bytes(3, "little") * 2
    yield _Made("bomb", "-", "WebP VP8X canvas 16777216x16777216", ".webp",
                b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x)


def _zlib_bomb(w: int, h: int, ct: int, rows: int, row: int) -> bytes:
    comp = zlib.compressobj(9)
    raw_row = b"\0" * row
    body = b"".join(comp.compress(raw_row) for _ in range(rows)) + comp.flush()
    return mutate.png_with_size(w, h, idat=body, color_type=ct)


def _long_zlib(size: int) -> bytes:
    comp = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    body = b"".join(comp.compress(block) for _ in range(size >> 20)) + comp.flush()
    return mutate.png_with_size(64, 64, idat=body)


def _special() -> Iterator[_Made]:
    for ext in (".wav", ".png", ".txt"):
        yield _Made("special", "-", f"a FIFO named *{ext}", ext, special="fifo")
    for dev in ("/dev/zero", "/dev/urandom"):
        for ext in (".wav", ".txt", ".png"):
            yield _Made("special", "-", f"a symlink to {dev} named *{ext}", ext,
                        special=f"symlink:{dev}")
    yield _Made("special", "-", "a symlink to /dev/null", ".wav", special="symlink:/dev/null")
    yield _Made("special", "-", "a dangling symlink", ".png", special="symlink:/nonexistent/x")
    for ext in (".png", ".txt"):
        yield _Made("special", "-", f"a directory named *{ext}", ext, special="dir")
    for ext in EXTS:
        yield _Made("special", "-", f"an empty *{ext}", ext, b"")
    yield _Made("special", "-", "a 4 GiB sparse file of zeros", ".txt", special="sparse:0")
    yield _Made("special", "-", "a 4 GiB sparse WAV (valid header, zeros)", ".wav",
                special="sparse:wav")
    yield _Made("special", "-", "a 3 GiB sparse file after a PNG header", ".png",
                special="sparse:png")
    yield _Made("special", "-", "a 50 MB text of words", ".txt", special="bigtext:words")
    yield _Made("special", "-", "a 50 MB text on one line without spaces", ".txt",
                special="bigtext:line")
    yield _Made("special", "-", "a 50 MB text of variation selectors", ".txt",
                special="bigtext:vs")


def _make_special(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind.startswith("symlink:"):
        os.symlink(kind.split(":", 1)[1], path)
    elif kind == "dir":
        path.mkdir()
        (path / "inside.txt").write_text("a file inside a directory\n")
    elif kind.startswith("sparse:"):
        what = kind.split(":", 1)[1]
        size = (3 if what == "png" else 4) << 30
        with open(path, "wb") as fh:
            if what == "wav":
                fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
                fh.write(b"RIFF" + struct.pack("<I", U32) + b"WAVEfmt " + struct.pack("<I", 16)
                         + fmt + b"data" + struct.pack("<I", U32 - 36))
            elif what == "png":
                fh.write(mutate.png_with_size(1024, 1024)[:33])
            fh.truncate(size)
    elif kind.startswith("bigtext:"):
        what = kind.split(":", 1)[1]
        unit = {"words": "the bridge over the river was rebuilt in stone after the flood. ",
                "line": "abcdefghijklmnopqrstuvwxyz0123456789",
                "vs": "\ufeff" + "\U000E0100" * 63}[what]
        data = unit.encode("utf-8")
        reps = (50_000_000 // len(data)) + 1
        with open(path, "wb") as fh:
            for _ in range(0, reps, 10_000):
                fh.write(data * 10_000)
    else:  # pragma: no cover - a programming error
        raise ValueError(kind)


def entries(seeds: SeedSet, seed: int) -> Iterator[_Made]:
    """Every corpus input that ``seed`` makes from ``seeds``, in a fixed order."""
    rng = random.Random(seed)
    for s in seeds.seeds:
        if s.name == "sidecar.txt":
            continue
        data = s.read()
        rich = s.kind in ("guardrail", "plain")
        yield from _per_seed(s, data, rng, rich)
        if s.ext == ".txt" and s.kind == "guardrail":
            yield from _text_wrapper(s, data, rng)
        if s.kind == "peer" and s.name in ("peer.riff_bomb_1000.wav",
                                            "peer.sample3.invalid.wav",
                                            "peer.id3v23_compression_underflow.mp3"):
            yield _Made("peer_hostile", s.name, "as published", s.ext, data)
    yield from _sidecar(seeds, rng)
    yield from _bombs()
    yield from _special()


def build_corpus(out: str | os.PathLike[str], *, seed: int = 11, real_text: bool = False,
                 big: bool = True, limit: int | None = None,
                 seeds: SeedSet | None = None) -> list[Entry]:
    """Write the corpus into ``out`` and return its entries (also in ``manifest.json``).

    Parameters
    ----------
    seed : int
        Chooses every random change.
    real_text : bool
        Make the text seed with the embedded SmolLM2 model (watermarked); see
        :func:`~tests.faults.seeds.make_seeds`.
    big : bool
        Include the multi-GB sparse files and the 50 MB texts.
    limit : int, optional
        Keep every k-th input so that about ``limit`` remain (a sample across categories).
    seeds : SeedSet, optional
        Seeds already made (their folder is used as they are).
    """
    out = Path(out)
    inputs = out / "inputs"
    if inputs.exists():
        shutil.rmtree(inputs)
    inputs.mkdir(parents=True)
    if seeds is None:
        seeds = make_seeds(out, real_text=real_text)
    made = [m for m in entries(seeds, seed)
            if big or not (m.special or "").startswith(("sparse", "bigtext"))]
    if limit is not None and limit < len(made):
        step = len(made) / limit
        made = [made[int(i * step)] for i in range(limit)]
    result: list[Entry] = []
    for i, m in enumerate(made):
        ident = f"{i:05d}"
        path = inputs / f"{ident}-{m.category}{m.ext}"
        if m.special:
            _make_special(m.special, path)
        else:
            path.write_bytes((m.data() if callable(m.data) else m.data) or b"")
        if m.extra and "sidecar" in m.extra:
            path.with_suffix(".c2pa").write_bytes(m.extra["sidecar"])
        result.append(Entry(ident, str(path.relative_to(out)), m.category, m.seed, m.change))
    (out / "manifest.json").write_text(json.dumps(
        {"seed": seed, "real_text": real_text, "data_dir": "data",
         "entries": [asdict(e) for e in result]}, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder to write (its inputs/ is replaced)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--real-text", action="store_true",
                    help="make the text seed with the embedded SmolLM2 model (about a minute)")
    ap.add_argument("--no-big", action="store_true",
                    help="leave out the multi-GB sparse files and the 50 MB texts")
    ap.add_argument("--limit", type=int, help="keep about N inputs, spread over the corpus")
    args = ap.parse_args(argv)
    result = build_corpus(args.out, seed=args.seed, real_text=args.real_text,
                          big=not args.no_big, limit=args.limit)
    counts = Counter(e.category for e in result)
    print(f"{len(result)} inputs in {Path(args.out) / 'inputs'}")
    for cat in CATEGORIES:
        if counts.get(cat):
            print(f"  {cat:<16} {counts[cat]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
