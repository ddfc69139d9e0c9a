"""``guardrail verify FILE``: every kind of evidence about one file, and one verdict.

Evidence, walked backwards from how guardrail produces an output:

1. **Content Credentials** (C2PA): TRUSTED, VALID_UNTRUSTED, INVALID, ABSENT or ERROR, with
   the signer, whether the asset declares AI generation and the exact failure codes.
2. **Watermark**: guardrail's scheme for the file's modality under the configured key,
   decided at the configured false-positive rate, with the decoded id.
3. **Record match**: when the mark verifies, its id is looked up in the record store (a
   text mark, which carries no id, by the normalised text) and a record counts only if its
   recorded content fingerprint matches this file (pHash for images, energy envelope for
   audio, normalised-text hash for text): ``match``, ``mismatch``, ``no record`` or ``not
   checked`` with the reason (:func:`record_match`). A missing SQLite store is not created.
4. **Detectors**: every configured synthetic-media detector for the modality.

The verdict (:func:`verdict`, in :mod:`guardrail.verify_rules`) follows a table of ten
rules, first that applies (documented there and in the README, tested row by row):

====  ==================================================  ====================================
R1    credentials INVALID                                 Tampered
R2    signed text, visible words unchanged                Signed text, reformatted
R3    credentials TRUSTED, declare AI generation          AI-generated
R4    watermark verified and its record matches           AI-generated
R5    credentials VALID_UNTRUSTED, declare AI             Likely AI-generated
R6    credentials valid, no AI declaration                Signed, not declared AI-generated
R7    credentials ERROR or unsupported algorithm, or      Could not be verified
      content that could not be read, decoded, checked
R8    a detector decides "synthetic"                      Likely AI-generated
R9    watermark verified, record mismatch / no record /   Watermark without matching record
      not checked
R10   otherwise                                           No evidence of AI generation found
====  ==================================================  ====================================

The record match is first-class (:class:`RecordMatch`: ``match``, ``mismatch``, ``no
record``, ``not checked`` with the reason): a watermark is evidence of *this* content only
when a record found through it has a matching content fingerprint, so the verdict never
rests on a mark copied onto other content or embedded outside the guard. The report itself
(:mod:`guardrail.verify_report`) explains every C2PA failure code in a plain sentence.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ._types import Artifact, DetectorResult, Modality, ProvenanceResult, ProvenanceState
from ._types import WatermarkResult as _WM
from .config import Config, Limits
from .errors import DependencyError, GuardrailError, KeyFileError, UnsupportedMediaError
from .store import ReportStore
from .verify_rules import LABELS, RecordMatch, VerifyResult, verdict

__all__ = ["LABELS", "RecordMatch", "VerifyResult", "record_match", "verdict", "verify_file"]

log = logging.getLogger(__name__)


def _unexpected(exc: BaseException) -> str:
    return f"failed unexpectedly: {type(exc).__name__}: {exc}"


def _provenance(cfg: Config, path: Path, data: bytes, limits: Limits,
                res_trust: dict[str, Any]) -> ProvenanceResult:
    try:
        from .provenance.settings import ProvenanceSettings
        from .provenance.verify import verify_path

        trust = ProvenanceSettings.from_config(cfg).trust()
    except GuardrailError as exc:
        res_trust.update(sources=[], anchors=0, error=str(exc))
        return ProvenanceResult(state=ProvenanceState.ERROR, reason=f"not performed: {exc}")
    res_trust.update(sources=list(trust.sources),
                     anchors=trust.anchors_pem.count("BEGIN CERTIFICATE"))
    try:
        return verify_path(path, trust=trust, data=data, limits=limits)
    except DependencyError:
        raise  # c2pa-python is not installed: the install hint, not a verdict
    except Exception as exc:  # verification answers, it does not crash
        log.warning("Content Credentials check failed: %s", exc)
        log.debug("Content Credentials check failed", exc_info=True)
        return ProvenanceResult(state=ProvenanceState.ERROR,
                                reason=f"the Content Credentials check {_unexpected(exc)}")


def _watermark(cfg: Config, art: Artifact, text_generator: Any, res: VerifyResult) -> _WM | None:
    """The configured scheme's check, then the older schemes of ``<modality>_also_detect``.

    The configured false-positive rate is split evenly over every scheme tried, so the
    stated rate holds for the check as a whole. The first scheme that detects the mark
    *with its id* wins (the id finds the record); else the first that detects it at all
    (versions of one scheme share parts: audio version 3 finds version 2's pilot, but only
    version 2 reads version 2's id); when none does, the configured scheme's result is
    returned.
    """
    wm_cfg = cfg.section("watermark")
    mod = art.modality.value
    schemes = [wm_cfg[f"{mod}_scheme"]]
    schemes += [s for s in wm_cfg.get(f"{mod}_also_detect", []) if s not in schemes]
    fpr = float(wm_cfg[f"{mod}_fpr"]) / len(schemes)
    first: _WM | None = None
    found: _WM | None = None
    for scheme in schemes:
        result = _watermark_one(cfg, art, text_generator, res, scheme, fpr)
        if result is not None and result.detected:
            if result.payload is not None:
                return result
            found = found or result
        if first is None:
            first = result
        if result is not None and result.scheme_version == "?":
            break  # no key or no scheme: the older schemes cannot run either
    return found or first


#: image and audio watermarkers by scheme, key file (path, inode, mtime, size) and FPR: a
#: scheme derives its keyed layout once per instance, so a process verifying many files
#: (scan, serve) keeps one instance per scheme instead of building one per file
_WATERMARKERS: dict[tuple[Any, ...], Any] = {}


def _watermarker(cfg: Config, modality: Modality, text_generator: Any, scheme: str,
                 fpr: float) -> Any:
    from .factory import watermarker_from_config

    def build() -> Any:
        return watermarker_from_config(cfg, modality, generator=text_generator,
                                       scheme=scheme, fpr=fpr)

    if modality is Modality.TEXT:  # built on the caller's text generator
        return build()
    path = cfg.watermark_key_file
    try:
        st = path.stat()
    except OSError:
        return build()  # says what is wrong with the key file
    key = (scheme, modality.value, str(path), st.st_ino, st.st_mtime_ns, st.st_size, fpr,
           cfg.section("watermark")["image"]["copy_check"])
    wm = _WATERMARKERS.get(key)
    if wm is None:
        if len(_WATERMARKERS) >= 16:
            _WATERMARKERS.pop(next(iter(_WATERMARKERS)))  # the oldest
        wm = _WATERMARKERS[key] = build()
    return wm


def _watermark_one(cfg: Config, art: Artifact, text_generator: Any, res: VerifyResult,
                   scheme: str, fpr: float) -> _WM | None:
    from .watermark.base import not_performed

    try:
        wm = _watermarker(cfg, art.modality, text_generator, scheme, fpr)
    except KeyFileError as exc:
        # a verifier holds no key of the platform: new keys could not check its marks
        log.debug("no watermark key: %s", exc)
        return not_performed(scheme, "?", "not performed: no watermark key of the platform "
                             f"on this machine ({cfg.keys_dir / 'watermark.key'}); only the "
                             "platform that generated the file can check its watermark")
    except GuardrailError as exc:
        return not_performed(scheme, "?", f"not performed: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported as a check that failed
        res.failed.append(f"the watermark check {_unexpected(exc)}")
        return not_performed(scheme, "?", f"not performed: {_unexpected(exc)}")
    try:
        return wm.detect(art)
    except Exception as exc:  # noqa: BLE001 - a detector crash must not crash verification
        log.warning("watermark detection failed: %s", exc)
        res.failed.append(f"the watermark check {_unexpected(exc)}")
        return not_performed(scheme, getattr(wm, "version", "?"),
                             f"not performed: {type(exc).__name__}: {exc}")


def record_match(store: ReportStore, art: Artifact, wm: _WM | None, *,
                 limits: Limits | None = None) -> tuple[RecordMatch, dict[str, Any] | None]:
    """Look the watermark up in the record store and compare the content fingerprints.

    Records are found through a verified watermark only: by its id (``scheme`` and
    ``payload``, whatever the scheme and its version), or - for a text mark, which carries
    no id - by the normalised text. Returns the :class:`RecordMatch` and, on a match, the
    recovered record's summary (the ``recovered`` object of the JSON document).
    """
    from .fingerprint import observe
    from .fingerprint_region import bind

    if wm is None or not wm.detected:
        return RecordMatch(reason="no verified watermark to look up"), None
    try:
        seen = observe(art, limits=limits)  # with a picture's mirror image
    except UnsupportedMediaError as exc:
        return RecordMatch(reason=f"the content could not be fingerprinted: {exc}"), None
    if wm.payload:
        candidates = store.find_by_watermark(wm.scheme, wm.payload)
        how = "watermark id"
    elif art.modality is Modality.TEXT:
        candidates = store.find_by_text_fingerprint(seen.fingerprints[0])
        how = "text watermark + normalised text"
    else:
        return RecordMatch(reason=f"the {wm.scheme} watermark carries no id to look up"), None
    if not candidates:
        what = f"watermark id {wm.payload}" if wm.payload else "this text"
        return RecordMatch(state="no record", how=how, reason=(
            f"no record of this store carries {what} (marked outside the guard, by another "
            "platform's store, or copied)")), None
    # a detected image mark that reports where the file sits in the marked original can
    # bind a crop or rotation through the record's region fingerprint, also where the
    # whole-picture pHash cannot bind (its own rule: guardrail.fingerprint_region)
    region = wm.geometry if art.modality is Modality.IMAGE else None
    if seen.weak and not region:
        return RecordMatch(state="not checked", how=how, candidates=len(candidates), reason=(
            f"{len(candidates)} record(s) carry this watermark, but {seen.weak}")), None
    best: float | None = None
    unfingerprinted = 0
    for rep in candidates:
        recorded = str(rep.extra.get("fingerprint") or "")
        if not recorded and not (region and rep.extra.get("region")):
            unfingerprinted += 1
            continue
        ok, score, by_region = bind(seen, recorded, rep.extra.get("region"), art, region)
        if score is not None and (best is None or _closer(recorded, score, best)):
            best = score
        if ok:
            via = ("its recorded content fingerprint matches this file" if by_region is None
                   else "the region of the marked original this file shows (placed by the "
                        f"watermark's geometry) matches its record: {by_region.reason}")
            prov = (rep.extra.get("evidence") or {}).get("provenance") or {}
            rec = RecordMatch(state="match", report_id=rep.report_id, how=how,
                              candidates=len(candidates), similarity=score,
                              reason=f"record {rep.report_id} found through the {how}; {via}")
            found = {"report_id": rep.report_id, "how": f"recovered via {how}",
                     "created_at": rep.created_at, "model_id": rep.metadata.model_id,
                     "status": rep.status, "content_match": score,
                     "watermark_id": wm.payload,
                     "manifest": prov.get("manifest_summary") or None,
                     "signer": prov.get("signer")}
            if by_region is not None:
                found["region_match"] = {"correlation": by_region.correlation,
                                         "gain": by_region.gain, "cells": by_region.cells}
            return rec, found
    if seen.weak:
        return RecordMatch(state="not checked", how=how, candidates=len(candidates), reason=(
            f"{len(candidates)} record(s) carry this watermark, but {seen.weak}; nor does "
            "the region the watermark places this file in bind it")), None
    if unfingerprinted == len(candidates):
        return RecordMatch(state="not checked", how=how, candidates=len(candidates), reason=(
            f"{len(candidates)} record(s) carry this watermark but none recorded a content "
            "fingerprint to compare")), None
    return RecordMatch(state="mismatch", how=how, candidates=len(candidates), similarity=best,
                       reason=f"{len(candidates)} record(s) carry this watermark, but this "
                              "file's content matches none of them (the mark was copied onto "
                              "other content, or the content was changed beyond recognition)"
                       ), None


def _visible_text_via_record(res: VerifyResult) -> ProvenanceResult:
    """For a signed text whose manifest carries no visible-text digest (signed before
    ``org.guardrail.text`` existed): its words are the signed ones when the record found by
    the normalised text is the record of this very manifest."""
    import dataclasses

    p = res.provenance
    manifest = p.manifest if isinstance(p.manifest, dict) else None
    recorded = (res.recovered or {}).get("manifest") or {}
    if (res.modality is not Modality.TEXT or p.state is not ProvenanceState.INVALID
            or manifest is None or "visible_text" in manifest or res.record.state != "match"
            or not str(res.record.how or "").startswith("text")
            or set(p.failures) - _UNTRUSTED_ONLY != {"assertion.dataHash.mismatch"}
            or not manifest.get("label") or recorded.get("label") != manifest.get("label")):
        return p
    visible = {"unchanged": True, "via": f"record {res.record.report_id}: the normalised text "
               "matches the record of this very manifest"}
    return dataclasses.replace(p, manifest={**manifest, "visible_text": visible})


_UNTRUSTED_ONLY = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted",
                             "timeStamp.untrusted"})


def _closer(recorded: str, score: float, best: float) -> bool:
    """Is ``score`` a closer fingerprint comparison than ``best``? (distance for images,
    correlation for audio)"""
    return score < best if recorded.startswith("phash:") else score > best


def _open_store(cfg: Config) -> ReportStore | None:
    """The configured record store, or ``None`` when it is a SQLite file that does not
    exist (a verifier without the platform's store: nothing is created)."""
    import sqlalchemy as sa

    url = sa.engine.make_url(cfg.store_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not url.query.get("uri") and not Path(url.database).expanduser().is_file():
        return None
    return ReportStore(cfg.store_url)


def verify_file(path: str | Path, cfg: Config, *, store: ReportStore | None = None,
                detectors: list[Any] | None = None, text_generator: Any = None,
                limits: Limits | None = None) -> VerifyResult:
    """Verify one file: credentials, watermark, recovered record, detectors, verdict.

    The file is read once (regular files only, within ``[limits] max_file_bytes``: a FIFO,
    a device, a socket or a directory is refused before anything is read from it); the same
    bytes go to the Content Credentials reader and to the decoder, which checks the other
    ``[limits]`` (``limits`` overrides the configured ones) from the headers before
    decoding. ``detectors`` default to the ones configured in ``[detectors]`` for the
    file's modality.

    Never raises for bad input: a file that cannot be read or decoded, and any check that
    fails unexpectedly, come back as "Could not be verified" (unless the credentials are
    evidence of their own) with what could not be checked. Only a missing c2pa-python
    (:class:`~guardrail.errors.DependencyError`) is raised.
    """
    p = Path(path)
    try:
        limits = limits or Limits.from_config(cfg)
        return _verify_file(p, cfg, store, detectors, text_generator, limits)
    except DependencyError:
        raise
    except Exception as exc:  # the last resort: an answer, never a crash
        log.warning("verification of %s failed: %s", p, exc)
        log.debug("verification of %s failed", p, exc_info=True)
        reason = f"verification {_unexpected(exc)}"
        res = VerifyResult(file=str(p), media_type=None, modality=None, watermark=None,
                           provenance=ProvenanceResult(state=ProvenanceState.ERROR,
                                                       reason=reason))
        res.fail("credentials, watermark and detectors", reason)
        return verdict(res)


def _verify_file(p: Path, cfg: Config, store: ReportStore | None, detectors: list[Any] | None,
                 text_generator: Any, limits: Limits) -> VerifyResult:
    from .media import MEDIA_TYPES, decode, read_bytes

    try:
        data = read_bytes(p, limits=limits)
    except UnsupportedMediaError as exc:
        res = VerifyResult(file=str(p), media_type=None, modality=None, watermark=None,
                           provenance=ProvenanceResult(state=ProvenanceState.ERROR,
                                                       reason=str(exc)))
        res.fail("credentials, watermark and detectors", str(exc))
        return verdict(res)
    trust: dict[str, Any] = {}
    prov = _provenance(cfg, p, data, limits, trust)
    declared = MEDIA_TYPES.get(p.suffix.lower(), (None, None))[0]
    art: Artifact | None = None
    try:
        art = decode(data, declared, name=p.name, limits=limits)
    except UnsupportedMediaError as exc:
        decode_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder crash is a file not checked
        decode_error = f"the decoder {_unexpected(exc)}"
    # the checks below read the decoded content: the file's bytes are not kept (memory)
    del data
    if art is not None and art.modality is not Modality.TEXT:
        art = art.evolve(data=None)
    res = VerifyResult(file=str(p), media_type=art.media_type if art else None,
                       modality=art.modality if art else None, provenance=prov, watermark=None,
                       trust=trust)
    if art is None:
        res.fail("watermark and detectors", f"the content could not be decoded: {decode_error}")
        return verdict(res)
    if art.modality is Modality.TEXT and text_generator is None:
        from .factory import generator_from_config

        try:
            text_generator = generator_from_config(cfg, Modality.TEXT, progress=False)
        except GuardrailError as exc:
            res.not_checked.append(f"text watermark: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported as a check that failed
            res.fail("text watermark", f"loading the text model {_unexpected(exc)}")
    res.watermark = _watermark(cfg, art, text_generator, res)
    if res.watermark is not None and res.watermark.detected is None:
        res.not_checked.append(f"watermark: {res.watermark.reason}")
    if res.watermark is not None and res.watermark.detected:
        owned = store is None
        try:
            store = store or _open_store(cfg)
            if store is None:
                res.record = RecordMatch(reason="no record store on this machine (only the "
                                         "platform that generated the file holds its records)")
            else:
                res.record, res.recovered = record_match(store, art, res.watermark,
                                                         limits=limits)
        except GuardrailError as exc:
            res.record = RecordMatch(reason=f"the record store could not be read: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported as a check that failed
            res.record = RecordMatch(reason=f"record lookup {_unexpected(exc)}")
            res.failed.append(f"record lookup {_unexpected(exc)}")
        finally:
            if owned and store is not None:
                store.close()
        if res.record.state == "not checked":
            res.not_checked.append(f"record match: {res.record.reason}")
    elif res.watermark is not None:
        res.record = RecordMatch(reason="no verified watermark to look up")
    res.provenance = _visible_text_via_record(res)
    _run_detectors(cfg, art, res, detectors, text_generator)
    return verdict(res)


def _run_detectors(cfg: Config, art: Artifact, res: VerifyResult, detectors: list[Any] | None,
                   text_generator: Any) -> None:
    if detectors is None:
        from .detectors import build_all

        try:
            detectors = build_all(cfg, [art.modality], text_generator=text_generator)
        except GuardrailError as exc:
            res.not_checked.append(f"synthetic-media detectors: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - reported as a check that failed
            res.fail("synthetic-media detectors", f"building the detectors {_unexpected(exc)}")
            return
    for det in detectors:
        try:
            res.detectors.append(det.detect(art))
        except Exception as exc:  # noqa: BLE001 - one detector failing is reported, not fatal
            name = getattr(det, "name", type(det).__name__)
            res.failed.append(f"detector {name} {_unexpected(exc)}")
            res.detectors.append(DetectorResult(detector=name, model_version=None,
                                                probability=None, decision=None,
                                                reason=f"not performed: {type(exc).__name__}: {exc}"))
    for d in res.detectors:
        if d.probability is None:
            res.not_checked.append(f"detector {d.detector}: {d.reason}")
    if not res.detectors:
        res.not_checked.append("synthetic-media detectors: none configured for "
                               f"{art.modality.value}")
