"""``guardrail watermark embed | detect``: watermarks in existing files."""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from .._release import check_output
from .._types import Modality
from ..config import Config, Limits
from ..errors import InputError
from ..media import atomic_write, encode, media_type_for_path, read_file
from ..progress import library_bars
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def _watermarker_for(cfg: Config, modality: Modality, scheme: str | None,
                     progress: bool) -> Any:
    from ..factory import generator_from_config, watermarker_from_config

    generator = None
    if modality is Modality.TEXT:
        # text marks are tied to the generating model's tokenizer and vocabulary
        generator = generator_from_config(cfg, modality, progress=progress)
    return watermarker_from_config(cfg, modality, generator=generator, scheme=scheme)


def _parse_payload(text: str | None) -> int | None:
    """``--payload``: a watermark id in hexadecimal (``0x`` optional), or ``None``."""
    if text is None:
        return None
    digits = text.strip().lower().removeprefix("0x").replace("_", "")
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        raise InputError(f"--payload {text!r} is not a hexadecimal watermark id; give hex "
                         "digits such as c0ffee (the scheme's payload_bits say how many fit)")
    return int(digits, 16)


def cmd_watermark_embed(args: argparse.Namespace) -> int:
    """Watermark an image or audio file and write the marked copy."""
    from ..watermark.base import CannotWatermark

    cfg = load_config(args)
    requested = _parse_payload(args.payload)
    art = read_file(args.file, limits=Limits.from_config(cfg))
    out = check_output(args.output)
    media_type = media_type_for_path(out, art.modality)
    if art.modality is Modality.TEXT:
        raise CannotWatermark(
            "cannot embed: text is watermarked while it is generated (guardrail generate "
            "--modality text); an existing text cannot be marked afterwards")
    wm = _watermarker_for(cfg, art.modality, args.scheme, progress=library_bars())
    payload = requested if requested is not None else secrets.randbits(wm.payload_bits)
    if payload >= 1 << wm.payload_bits:
        raise CannotWatermark(f"cannot embed: payload {args.payload} does not fit in "
                              f"{wm.payload_bits} bits")
    marked = wm.embed(art, payload)
    atomic_write(out, encode(marked, media_type))
    result = {"file": str(out), "scheme": wm.scheme, "version": wm.version,
              "payload": f"{payload:0{max(1, (wm.payload_bits + 3) // 4)}x}",
              "media_type": media_type}
    if args.json:
        emit_json(result)
    else:
        print(f"marked {args.file} -> {out} with {wm.scheme} v{wm.version}, id {result['payload']}")
    return EXIT_OK


def cmd_watermark_detect(args: argparse.Namespace) -> int:
    """Look for guardrail's watermark in a file."""
    cfg = load_config(args)
    art = read_file(args.file, limits=Limits.from_config(cfg))
    wm = _watermarker_for(cfg, art.modality, args.scheme, progress=library_bars())
    res = wm.detect(art)
    result = {"file": args.file, "modality": art.modality.value, "detected": res.detected,
              "scheme": res.scheme, "version": res.scheme_version, "p_value": res.p_value,
              "fpr": res.fpr, "payload": res.payload, "score": res.score, "reason": res.reason}
    if args.json:
        emit_json(result)
    elif res.detected is None:
        print(f"not performed: {res.reason}")
    else:
        verdict = "DETECTED" if res.detected else "not detected"
        print(f"{verdict}: {res.scheme} v{res.scheme_version}, p-value {res.p_value:.3g} "
              f"(decided at false-positive rate {res.fpr:g})"
              + (f", id {res.payload}" if res.payload else ""))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail watermark embed`` and ``guardrail watermark detect``."""
    w = add_parser(subparsers, "watermark", help="embed or detect watermarks in files")
    wsub = w.add_subparsers(dest="watermark_verb", metavar="VERB", required=True)
    we = add_parser(wsub, "embed", help="watermark an image or audio file")
    we.add_argument("file")
    we.add_argument("-o", "--output", required=True, metavar="OUT")
    we.add_argument("--scheme", help="watermark scheme (default: from config)")
    we.add_argument("--payload", metavar="HEX", help="watermark id in hex (default: random)")
    we.add_argument("--json", action="store_true")
    we.set_defaults(func=cmd_watermark_embed)
    wd = add_parser(wsub, "detect", help="look for guardrail's watermark in a file")
    wd.add_argument("file")
    wd.add_argument("--scheme", help="watermark scheme (default: from config)")
    wd.add_argument("--json", action="store_true")
    wd.set_defaults(func=cmd_watermark_detect)
