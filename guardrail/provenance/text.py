"""Content Credentials for text: embedded in the text itself, or in a sidecar manifest.

c2pa-rs 0.91 (c2pa-python 0.38) has no asset handler for ``text/plain``: it cannot embed a
manifest into text, but it signs text with *no-embed* (``Builder.set_no_embed``), which
yields a standalone manifest store whose ``c2pa.hash.data`` hard binding covers the text
bytes. Both modes use that:

* **sidecar**: the text is left as it is; the manifest store goes into ``<name>.c2pa``
  next to it. Verification hashes the text and validates the store (all in c2pa).
* **embedded** (C2PA unstructured-text embedding, as in the ``c2pa-text`` reference
  implementation): the text is NFC-normalised, and the manifest store travels at its
  end as a ``C2PATextManifestWrapper`` - U+FEFF followed by invisible Unicode variation
  selectors, one per byte - so it survives copy-paste and ordinary string handling. The
  ``c2pa.hash.data`` assertion hashes the whole text with an *exclusion range* over the
  wrapper's UTF-8 bytes, as the specification asks. The exclusion length has to be known
  before signing, so the text is signed for the worst-case wrapper length of the
  manifest's size and the wrapper is padded to exactly that length
  (``c2pa_text.encode_wrapper_padded``).

Both modes also sign ``org.guardrail.text`` (:data:`TEXT_DIGEST_LABEL`): a SHA-256 of the
*visible* text in a normal form (:func:`visible_text_digest`: invisible characters removed,
NFKC, white space collapsed). A copy whose bytes differ from the signed ones only in white
space or Unicode form (a copy-paste that applied NFKC or collapsed spaces) fails the hard
binding, but its visible digest still matches: verification reports it as a signed text
that was reformatted, distinct from one whose words were edited.

Verification (:func:`guardrail.provenance.verify.verify_text`) locates the wrapper,
checks that the exclusion range is exactly the wrapper and that the hash of the rest of
the text matches, and takes every other result (signature, certificate, trust, assertion
hashes) from c2pa. c2pa itself cannot locate a text wrapper, so it always reports the
exclusion as ``assertion.dataHash.mismatch`` ("does not match the manifest location");
guardrail replaces c2pa's data-hash verdict with its own check for embedded text only.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import SigningError, TextWrapperError, UnsupportedMediaError
from ..media import atomic_write
from ..textnorm import visible_text
from ._c2pa import c2pa_text_module
from .manifest import ManifestInfo, SignOptions, build_manifest_definition, run_builder
from .signer import ProvenanceSigner

__all__ = [
    "TEXT_DIGEST_LABEL",
    "SignedText",
    "TextWrapper",
    "find_text_wrapper",
    "sidecar_path",
    "sign_text",
    "strip_text_wrapper",
    "visible_text_digest",
    "write_sidecar",
]

#: the assertion that carries the visible text's digest (see the module notes)
TEXT_DIGEST_LABEL = "org.guardrail.text"
_DIGEST_PREFIX = "nfkc-ws-sha256:"

_MAX_PASSES = 4
# last manifest size per signing certificate: the first signing pass usually fits
_SIZE_HINTS: dict[str, int] = {}


@dataclass(frozen=True)
class SignedText:
    """A signed text.

    Attributes
    ----------
    text : str
        The text to release: with the invisible wrapper at its end (``embedded``), or
        unchanged (``sidecar``).
    manifest : bytes
        The C2PA manifest store (JUMBF). For ``sidecar``, write it with
        :func:`write_sidecar`.
    mode : {"embedded", "sidecar"}
    """

    text: str
    manifest: bytes
    mode: str


@dataclass(frozen=True)
class TextWrapper:
    """A C2PA text wrapper found in a text: the manifest and its UTF-8 byte range."""

    manifest: bytes
    start: int
    length: int


def find_text_wrapper(text: str) -> TextWrapper | None:
    """The C2PA text wrapper in ``text``, ``None`` if there is none.

    Raises
    ------
    TextWrapperError
        ``manifest.text.multipleWrappers`` or ``manifest.text.corruptedWrapper``.
    """
    ct = c2pa_text_module()
    try:
        info = ct.find_wrapper_info(text)
    except ValueError as exc:
        raise TextWrapperError("manifest.text.multipleWrappers", str(exc)) from None
    if info is None:
        check = ct.validate_text(text)
        if not check.valid and check.issues:
            issue = check.issues[0]
            raise TextWrapperError(issue.code.value, issue.message)
        return None
    manifest, start, length = info
    return TextWrapper(manifest=bytes(manifest), start=int(start), length=int(length))


def visible_text_digest(text: str) -> str:
    """SHA-256 of what a reader sees of ``text``: invisible characters (and so any C2PA text
    wrapper) removed, NFKC-normalised, white space collapsed to single spaces."""
    norm = " ".join(unicodedata.normalize("NFKC", visible_text(text)).split())
    return _DIGEST_PREFIX + hashlib.sha256(norm.encode("utf-8")).hexdigest()


def _digest_assertion(text: str) -> dict:
    return {"label": TEXT_DIGEST_LABEL,
            "data": {"visible_text_digest": visible_text_digest(text),
                     "normalization": "invisible characters removed, NFKC, white space "
                                      "collapsed"}}


def strip_text_wrapper(text: str) -> str:
    """``text`` without its C2PA wrapper (NFC-normalised), e.g. to show or to re-sign it."""
    _manifest, clean = c2pa_text_module().extract_manifest(text)
    return clean


def _hash_data_assertion(start: int, length: int, digest: bytes) -> dict:
    return {"label": "c2pa.hash.data",
            "data": {"exclusions": [{"start": start, "length": length}],
                     "name": "jumbf manifest", "alg": "sha256", "hash": list(digest),
                     "pad": []}}


def sign_text(
    text: str,
    *,
    signer: ProvenanceSigner,
    manifest_info: ManifestInfo,
    options: SignOptions | None = None,
    mode: str | None = None,
) -> SignedText:
    """Sign generated text; see the module notes for the two modes.

    Parameters
    ----------
    text : str
    signer : ProvenanceSigner
    manifest_info : ManifestInfo
    options : SignOptions, optional
    mode : {"embedded", "sidecar"}, optional
        Default: ``options.text_mode``.

    Raises
    ------
    UnsupportedMediaError
        Empty text, or text that already carries an embedded manifest.
    SigningError
    """
    options = options or SignOptions()
    mode = mode or options.text_mode
    if mode not in ("embedded", "sidecar"):
        raise ValueError(f"mode must be 'embedded' or 'sidecar', got {mode!r}")
    if not text:
        raise UnsupportedMediaError("cannot sign empty text")
    if mode == "sidecar":
        definition = build_manifest_definition(manifest_info,
                                               claim_generator=options.claim_generator,
                                               extra_assertions=[_digest_assertion(text)])
        _, manifest = run_builder(definition, "text/plain", text.encode("utf-8"),
                                  signer=signer, options=options, no_embed=True)
        return SignedText(text=text, manifest=manifest, mode="sidecar")

    ct = c2pa_text_module()
    nfc = unicodedata.normalize("NFC", text)
    try:
        existing = find_text_wrapper(nfc)
    except TextWrapperError:
        existing = True  # type: ignore[assignment]
    if existing:
        raise UnsupportedMediaError(
            "the text already carries embedded Content Credentials; strip them first "
            "(guardrail.provenance.text.strip_text_wrapper) to sign it anew")
    body = nfc.encode("utf-8")
    digest = hashlib.sha256(body).digest()
    length = ct.worst_case_wrapper_byte_length(_SIZE_HINTS.get(signer.key_id, 4096) + 64)
    for _ in range(_MAX_PASSES):
        definition = build_manifest_definition(
            manifest_info, claim_generator=options.claim_generator,
            extra_assertions=[_hash_data_assertion(len(body), length, digest),
                              _digest_assertion(nfc)])
        _, manifest = run_builder(definition, "text/plain", body, signer=signer,
                                  options=options, no_embed=True)
        needed = ct.worst_case_wrapper_byte_length(len(manifest))
        if needed <= length and length - needed < 512:
            _SIZE_HINTS[signer.key_id] = len(manifest)
            break
        # sign again for the wrapper length this manifest needs (the length is inside it)
        length = ct.worst_case_wrapper_byte_length(len(manifest) + 16)
    else:  # pragma: no cover - the manifest size converges in two passes
        raise SigningError("could not fit the manifest into a text wrapper")
    wrapper = ct.encode_wrapper_padded(manifest, length)
    return SignedText(text=nfc + wrapper, manifest=manifest, mode="embedded")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the sidecar manifest of ``path`` goes: same name, extension ``.c2pa``."""
    return Path(path).with_suffix(".c2pa")


def write_sidecar(path: str | os.PathLike[str], manifest: bytes) -> Path:
    """Write ``manifest`` next to the asset ``path`` (atomically); return the sidecar path."""
    return atomic_write(sidecar_path(path), manifest)
