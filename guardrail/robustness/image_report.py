"""The image section of docs/ROBUSTNESS.md: the image lab at several sizes, side by side.

``python -m guardrail.robustness.image_report --photos DIR --out docs/ROBUSTNESS.md`` runs
:func:`guardrail.robustness.image_lab.evaluate` at 256, 512 and 1024 px on held-out photos
(every natural image the lab finds except :data:`TUNING`, the photos the schemes were
tuned on) and writes the section ``robustness-image``: TPR at the configured
false-positive rate per attack with its 95% interval and ``n``, the keyless copy and
removal attacks, the measured false-positive rate, quality and speed, and the targets.

``--keys N`` runs the same report under the report's key and ``N - 1`` further public
evaluation keys (:func:`report_keys`): a key's copies and aimed removals are a sample of
one, so the section adds a table of every key's rates side by side with their pooled
counts, and a target counts as met only when it is met under every key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..stats import clopper_pearson

if TYPE_CHECKING:
    from .image_lab import PhotoDirs

__all__ = ["KEY", "SCHEMES", "TUNING", "main", "render", "report_keys", "run"]

#: Photos the image schemes were tuned on; the report evaluates on the others.
TUNING = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry")
#: Schemes the report measures by default (``--schemes``; ``guardrail-image-v2-strict`` is
#: version 2 with ``[watermark.image] copy_check = "strict"``).
SCHEMES = ("guardrail-image-v2", "guardrail-image", "dwtDct")
#: The report's evaluation key (public: never a key a platform uses).
KEY = b"held-out evaluation key 2026-12"


def report_keys(n: int, key: bytes = KEY) -> list[bytes]:
    """The ``n`` keys a report runs under: ``key``, then ``n - 1`` public evaluation keys
    derived from it (fixed, so that a run can be repeated)."""
    if n < 1:
        raise ValueError(f"keys must be at least 1, got {n}")
    return [key] + [hashlib.sha256(key + b" / %d" % i).digest() for i in range(1, n)]


def run(sizes: Sequence[int] = (256, 512, 1024), *, photo_dir: PhotoDirs = None,
        schemes: Sequence[str] = SCHEMES,
        n_unmarked: int = 1000, key: bytes = KEY, keys: int = 1,
        log: Any = None) -> dict[int, dict[str, Any]]:
    """The image lab at each size on the held-out photos (dwtDct only at the largest),
    under ``keys`` keys (:func:`report_keys`): the first key's results as they are, every
    key's schemes and targets in ``by_key`` when there are several."""
    from ..keys import key_id
    from .image_lab import evaluate, load_natural_images, photo_dirs

    imgs = [(n, i) for n, i in load_natural_images(photo_dir) if n not in TUNING]
    dirs = [str(p) for p in photo_dirs(photo_dir)]
    runs: list[tuple[bytes, dict[int, dict[str, Any]]]] = []
    for k, kb in enumerate(report_keys(keys, key)):
        if keys > 1 and log is not None:
            log(f"key {k + 1} of {keys} ({key_id(kb)})")
        per_size = {}
        for size in sizes:
            use = [s for s in schemes if s.startswith("guardrail") or size == max(sizes)]
            res = evaluate(imgs, schemes=use, size=size, key=kb, log=log, repeats=5,
                           n_unmarked=n_unmarked if size == sizes[0] else min(300, n_unmarked),
                           max_images={"dwtDct": 8, "dwtDctSvd": 4},
                           max_unmarked={"dwtDct": 100, "dwtDctSvd": 50})
            res["setup"]["held_out"] = [n for n, _ in imgs]
            res["setup"]["photo_dirs"] = dirs
            per_size[size] = res
        runs.append((kb, per_size))
    out = runs[0][1]
    if keys > 1:  # every key's results; per scheme, a target is met only under every key
        from .lab import met_under_every_key

        for size, res in out.items():
            res["by_key"] = [{"key": key_id(kb), "schemes": r[size]["schemes"],
                              "targets": r[size].get("targets") or {}} for kb, r in runs]
            res["targets"] = {name: met_under_every_key(
                [e["targets"].get(name) or {} for e in res["by_key"]])
                for name in res.get("targets") or {}}
    return out


def _counts(e: Mapping[str, Any], label: str) -> tuple[int, int] | None:
    """(successes, trials) of one scheme's row ``label``: an attack's detections, or a
    keyless attack's detected copies or kept marks."""
    kl = e.get("keyless") or {}
    r = kl.get("copy", {}).get(label) or kl.get("removal", {}).get(label)
    if r is not None:
        return round(r["rate"] * r["n"]), int(r["n"])
    rate = (e.get("tpr") or {}).get(label)
    n = (e.get("n") or {}).get(label) or e.get("n_images")
    return None if rate is None or not n else (round(rate * n), int(n))


def _by_key_table(results: Mapping[int, Mapping[str, Any]], schemes: Sequence[str],
                  sizes: Sequence[int], labels: Sequence[str]) -> list[str]:
    """Every key's rate per row and (scheme, size), then the counts pooled over the keys
    with their exact interval."""
    cols = [(s, z) for s in schemes for z in sizes
            if all(s in e["schemes"] for e in results[z].get("by_key") or [])
            and results[z].get("by_key")]
    head = ["attack"] + [f"{s} @{z}" for s, z in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for lb in labels:
        cells = []
        for s, z in cols:
            per = [_counts(e["schemes"][s], lb) for e in results[z]["by_key"]]
            if any(c is None for c in per):
                cells.append("-")
                continue
            k, n = sum(c[0] for c in per), sum(c[1] for c in per)
            lo, hi = clopper_pearson(k, n)
            cells.append(" / ".join(f"{c[0] / c[1]:.2f}" for c in per)
                         + f"; pooled {k} of {n} [{lo:.2f}, {hi:.2f}]")
        lines.append("| " + " | ".join([lb, *cells]) + " |")
    return lines


def _f(v: Any, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _cell(rate: Any, ci: Any, n: int | None = None) -> str:
    if rate is None:
        return "-"
    s = f"{rate:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{rate:.2f}"
    return s + (f" n={n}" if n is not None else "")


def _columns(results: Mapping[int, Mapping[str, Any]], schemes: Sequence[str],
             sizes: Sequence[int]) -> list[tuple[str, int, Mapping[str, Any]]]:
    """(scheme, size, its results) for every scheme measured at each size, scheme-major."""
    return [(s, z, results[z]["schemes"][s]) for s in schemes for z in sizes
            if results[z]["schemes"].get(s) is not None]


def _table(labels: Sequence[str], columns: Sequence[tuple[str, int, Mapping[str, Any]]],
           cell: Callable[[Mapping[str, Any], str], str]) -> list[str]:
    """A markdown table: a row per attack label, a column per (scheme, size)."""
    head = ["attack"] + [f"{s} @{z}" for s, z, _ in columns]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join([lb] + [cell(e, lb) for _, _, e in columns]) + " |"
              for lb in labels)]


def _keyless_cell(e: Mapping[str, Any], label: str) -> str:
    kl = e.get("keyless") or {}
    r = kl.get("copy", {}).get(label) or kl.get("removal", {}).get(label)
    if r is None:
        return "-"
    cell = _cell(r["rate"], (r["ci_low"], r["ci_high"]), r["n"])
    if "ai_verdicts" in r:  # copies: with a victim's id / that verify would call AI-generated
        cell += f"; id {r['victim_ids']}, AI {r['ai_verdicts']}"
    return cell


def _payload_cell(e: Mapping[str, Any], label: str, key: str = "payload_ok") -> str:
    rate, n = (e.get(key) or {}).get(label), e["n_images"]
    if rate is None or not n:
        return "-"
    return _cell(rate, clopper_pearson(round(rate * n), n), n)


def render(results: Mapping[int, Mapping[str, Any]], *, when: str, machine: str,
           load: str | None = None) -> str:
    """Markdown for the ``robustness-image`` section (``load``: the machine's load while
    it ran, when known)."""
    sizes = sorted(int(s) for s in results)
    first = results[sizes[0]]
    held = first["setup"].get("held_out", [])
    dirs = first["setup"].get("photo_dirs")
    # results saved before the folders were recorded were all run on the c2pa-peer fixtures
    sources = ("the photos in " + ", ".join(f"`{d}`" for d in dirs) if dirs
               else "the c2pa-peer fixtures" if dirs is None else "no photo folder")
    fpr = first["setup"]["fpr"]
    lines = [
        "## Robustness: image watermarks",
        "",
        f"`python -m guardrail.robustness.image_report` on {when}; {machine}. "
        f"{len(held)} held-out natural photos (scikit-image, scikit-learn and {sources}; "
        f"not the {len(TUNING)} photos the schemes were tuned on: "
        f"{', '.join(TUNING)}), centre-cropped to a square of each size. TPR is the share of "
        f"marked images detected at FPR {fpr:g} (and, for the guardrail schemes, not taken for "
        "a copy by their copy checks), with its 95% Clopper-Pearson interval and n "
        "(dwtDct: 8 images; rivaGan and dwtDctSvd are too slow to run this suite here - "
        "see docs/BENCHMARKS.md for their speed). Times are medians on a shared machine "
        f"({load or 'load not recorded'}): compare them side "
        "by side, and see docs/BENCHMARKS.md.",
        "",
    ]
    schemes = [s for s in ("guardrail-image-v2", "guardrail-image-v2-strict", "guardrail-image",
                           "dwtDct") if any(s in results[z]["schemes"] for z in sizes)]
    labels = ["clean", *first["setup"]["attacks"]]
    columns = _columns(results, schemes, sizes)
    lines += _table(labels, columns, lambda e, lb: _cell(
        e["tpr"].get(lb), e.get("tpr_ci", {}).get(lb), e["n_images"]))
    lines += ["", "### The id recovered", "",
              "Share of the same marked images whose payload id came back (detected, with the "
              "id that was embedded). The id is what finds the record when the metadata was "
              "stripped.", ""]
    lines += _table(labels, columns, _payload_cell)
    if any(e.get("bound") for _, _, e in columns):
        lines += ["", "### Bound to its record", "",
                  "Share of the same marked images that `guardrail verify`, with the "
                  "credentials stripped, would bind to their record (the id came back and "
                  "the record's pHash, or the region the watermark's geometry places the "
                  "file in - guardrail.fingerprint_region - matches): the verdict is then "
                  "AI-generated, not a watermark without a matching record.", ""]
        lines += _table(labels, columns, lambda e, lb: _payload_cell(e, lb, "bound"))
    refusals = [f"{s} @{z}: {', '.join(e['refused'])}" for s, z, e in columns
                if e.get("refused")]
    if refusals:
        lines += ["", "Refused by `embed` (the image cannot carry the mark; not in n, and a "
                  "guard does not release such an output with a mark nobody could find): "
                  + "; ".join(refusals) + "."]
    from .image_lab import N_COPY_PHOTOS, N_SMOOTH_PHOTOS

    n_copy = next((r["n"] for _, _, e in columns for r in
                   ((e.get("keyless") or {}).get("copy") or {}).values()), 0)
    targets = (f"{n_copy} unrelated photos ({N_COPY_PHOTOS} random crops of photos none of "
               f"the donors came from, and {N_SMOOTH_PHOTOS} smooth targets"
               if n_copy == N_COPY_PHOTOS + N_SMOOTH_PHOTOS else
               f"{n_copy} unrelated photos (random crops of photos none of the donors came "
               "from, a third as many smooth targets")
    lines += ["", "### Keyless copy and removal attacks (38 dB)", "",
              "Copy: the mark estimated without the key from 1 or 10 marked outputs of one key "
              "(`residual`: the high-pass residual, sigma 1.5 px; `tile`: its average over the "
              "positions of a tile of side/8 px, the estimator that copied v1; `wide`: the "
              "residual over a wider band, sigma 4 px per 256 px of side, which also carries "
              "the donor's coarse structure - the informed choice against a content-bound "
              f"mark) is added at 38 dB to {targets} - colour gradients and heavily "
              "blurred photos - where a copy brings its own structure); the rate is the share "
              "detected (target <= 0.01); `id` counts the detected copies that carry a "
              "victim's id, `AI` those whose content also matches the victim's record - "
              "what `guardrail verify` would call AI-generated (target: none). Removal: the "
              "estimate from the marked image itself (plus 9 other outputs) subtracted at "
              "38 dB; the rate is the share still detected (target >= 0.95).", ""]
    own = [s for s in schemes if s.startswith("guardrail-image")]
    kl_labels: list[str] = []
    for z in sizes:
        for s in own:
            kl = results[z]["schemes"].get(s, {}).get("keyless") or {}
            for kind in ("copy", "removal"):
                kl_labels += [lb for lb in kl.get(kind, {}) if lb not in kl_labels]
    lines += _table(kl_labels, _columns(results, own, sizes), _keyless_cell)
    lines += ["", "### False positives, quality, speed", "",
              "Unmarked images: random crops and rescales of the held-out photos (30% "
              "re-encoded as JPEG, 1 in 7 marked under another key), each tested under a "
              "fresh key. `p<=a` is the share of unmarked images with a p-value at most a "
              "(the p-value is a bound, so each share should be at most a).", "",
              "| scheme | size | FPR measured (n) | p<=0.1 / 0.01 / 0.001 | PSNR mean (min) dB "
              "| SSIM | embed ms | detect ms (marked / unmarked) |",
              "|---|---|---|---|---|---|---|---|"]
    for s, z, e in columns:
        pa = e.get("unmarked_p_at_most") or {}
        lines.append(
            f"| {s} | {z} | {_f(e['fpr_measured'], '.4f')} ({e['n_unmarked']}) | "
            f"{' / '.join(_f(pa.get(k), '.3f') for k in ('0.1', '0.01', '0.001'))} | "
            f"{_f(e['psnr_mean'], '.1f')} ({_f(e['psnr_min'], '.1f')}) | "
            f"{_f(e['ssim_mean'], '.3f')} | {_f(e['embed_ms'], '.1f')} | "
            f"{_f(e['detect_ms'], '.1f')} / {_f(e['detect_unmarked_ms'], '.1f')} |")
    by_key = [z for z in sizes if results[z].get("by_key")]
    if by_key:
        kids = [e["key"] for e in results[by_key[0]]["by_key"]]
        lines += ["", "### Under each key", "",
                  f"The same report under {len(kids)} keys ({', '.join(f'`{k}`' for k in kids)};"
                  " the first is the key of the tables above): each key's rate, then the "
                  "counts pooled over the keys with their 95% Clopper-Pearson interval. The "
                  "copies and aimed removals depend on the key; the targets below count as "
                  "met only when met under every key.", ""]
        lines += _by_key_table(results, [s for s in schemes if s.startswith("guardrail-image")],
                               sizes, [*labels, *kl_labels])
    lines += ["", "### Targets", ""]
    for z in sizes:
        for s, t in (results[z].get("targets") or {}).items():
            met = [k for k, v in t.items() if v]
            missed = [k for k, v in t.items() if not v]
            lines.append(f"- {s} @{z}: met {', '.join(met) or 'none'}; "
                         f"**missed {', '.join(missed) or 'none'}**")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    from ..benchmarks._report import machine_line, now, write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", action="append", metavar="DIR",
                    help="a folder of extra photos (e.g. the c2pa-peer fixtures); repeat the "
                         "option for several folders")
    ap.add_argument("--out", default="docs/ROBUSTNESS.md")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 256])
    ap.add_argument("--unmarked", type=int, default=1000)
    ap.add_argument("--from-json", nargs="*", help="render saved results instead of running")
    ap.add_argument("--save-json", help="also save the results here")
    ap.add_argument("--keys", type=int, default=1,
                    help="run under this many keys: the report's own, then public evaluation "
                         "keys derived from it")
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES),
                    help="schemes to measure; guardrail-image-v2-strict is version 2 with "
                         "[watermark.image] copy_check = \"strict\"")
    args = ap.parse_args(argv)
    if args.from_json:
        results = {}
        for f in args.from_json:
            saved = json.loads(Path(f).read_text())
            # one size's results, or what --save-json writes: every size's, by size
            for res in [saved] if "setup" in saved else saved.values():
                results[int(res["setup"]["size"])] = res
        # saved results keep the time, machine and load of the run that measured them
        stamp = next(iter(results.values()))["setup"].get("run") or {
            "when": f"a run whose time was not saved (rendered {now()})",
            "machine": machine_line(), "load": None}
    else:
        if args.keys < 1:
            ap.error(f"--keys must be at least 1, got {args.keys}")
        results = run(args.sizes, photo_dir=args.photos, schemes=args.schemes,
                      n_unmarked=args.unmarked, keys=args.keys, log=print)
        stamp = {"when": now(), "machine": machine_line(), "load": (
            "load average {:.1f} / {:.1f} / {:.1f} over 1 / 5 / 15 minutes at the end of the "
            "run".format(*os.getloadavg()))}
        for res in results.values():
            res["setup"]["run"] = stamp
    if args.save_json:
        Path(args.save_json).write_text(json.dumps(results, default=str, indent=1))
    write_section(Path(args.out), "robustness-image", render(results, **stamp))


if __name__ == "__main__":
    main()
