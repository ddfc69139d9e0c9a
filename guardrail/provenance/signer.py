"""The signing identity: a certificate chain with a PEM key or a KMS/HSM callback.

:class:`ProvenanceSigner` is the signing identity the signer functions use: a PEM key and
chain, or a callback into a KMS/HSM (c2pa's ``Signer.from_callback``), with an optional
RFC 3161 timestamp authority that is checked quickly before each use
(:func:`check_tsa_reachable`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import CertificateError, SigningError
from .certs import (
    ALGORITHMS,
    CertificateSummary,
    check_signing_certificate,
    read_certificate_file,
    read_private_key_file,
)
from .keys import dev_chain_paths

__all__ = ["ProvenanceSigner", "check_tsa_reachable", "signer_error_message"]

# -- timestamp authority ------------------------------------------------------------------
_TSA_OK: dict[str, float] = {}
_TSA_LOCK = threading.Lock()
_TSA_CACHE_S = 60.0


def check_tsa_reachable(url: str, *, timeout_s: float = 5.0) -> None:
    """Fail fast, with a clear message, when the timestamp authority cannot be reached.

    A TCP connection to the TSA's host and port is attempted (within ``timeout_s``); a
    success is remembered for a minute. Raises :class:`SigningError` otherwise.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SigningError(f"timestamp authority URL {url!r} is not an http(s) URL")
    with _TSA_LOCK:
        if time.monotonic() - _TSA_OK.get(url, -1e9) < _TSA_CACHE_S:
            return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    t0 = time.monotonic()
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (
            exc.strerror or type(exc).__name__)
        raise SigningError(
            f"timestamp authority {url} is unreachable ({why} after "
            f"{time.monotonic() - t0:.1f} s); nothing was signed. Fix the network or the "
            "URL, or set provenance.tsa_url = \"\" to sign without a trusted timestamp") from None
    with _TSA_LOCK:
        _TSA_OK[url] = time.monotonic()


# -- the signer ---------------------------------------------------------------------------
_C2PA_ALGS = {"es256": "ES256", "es384": "ES384", "es512": "ES512", "ps256": "PS256",
              "ps384": "PS384", "ps512": "PS512", "ed25519": "ED25519"}


class ProvenanceSigner:
    """A C2PA signing identity: a certificate chain and a private key or a signing callback.

    Parameters
    ----------
    chain_pem : str
        The end-entity certificate, then its intermediates (PEM).
    private_key_pem : str, optional
        The end-entity private key (PEM, unencrypted). Exactly one of ``private_key_pem``
        and ``callback`` must be given.
    callback : callable, optional
        ``callback(data: bytes) -> bytes`` returning the signature of ``data`` made by a
        KMS/HSM with the end-entity key (ECDSA signatures as DER or raw ``r||s``).
    algorithm : str, optional
        ``es256`` (default for P-256 keys), ``es384``, ``es512``, ``ps256``..., ``ed25519``.
    tsa_url : str, optional
        RFC 3161 timestamp authority; checked for reachability before signing.
    tsa_timeout_s : float, optional
        How long the reachability check and the signing call may take with a TSA.
    check : bool, optional
        Run :func:`check_signing_certificate` now (default); errors are raised here.

    Notes
    -----
    The private key is kept in memory only for handing to c2pa; it never appears in
    ``repr``, logs or errors. Native c2pa signers are cached per thread (PEM keys) or made
    for each signature (callbacks), so one ``ProvenanceSigner`` can be shared by threads.
    """

    def __init__(
        self,
        *,
        chain_pem: str,
        private_key_pem: str | None = None,
        callback: Callable[[bytes], bytes] | None = None,
        algorithm: str | None = None,
        tsa_url: str | None = None,
        tsa_timeout_s: float = 5.0,
        check: bool = True,
    ) -> None:
        if (private_key_pem is None) == (callback is None):
            raise ValueError("give exactly one of private_key_pem and callback")
        if algorithm is not None and algorithm.lower() not in ALGORITHMS:
            raise CertificateError(
                f"unknown signing algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")
        self.chain_pem = chain_pem
        self._key_pem = private_key_pem
        self._callback = callback
        self.tsa_url = tsa_url or None
        self._local = threading.local()
        self.tsa_timeout_s = float(tsa_timeout_s)
        if check:
            self.certificate: CertificateSummary | None = check_signing_certificate(
                chain_pem, private_key_pem=private_key_pem, algorithm=algorithm)
            self.algorithm = self.certificate.algorithm
        else:
            self.certificate = None
            self.algorithm = (algorithm or "es256").lower()

    @classmethod
    def from_files(cls, chain_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
                   *, algorithm: str | None = None, tsa_url: str | None = None,
                   tsa_timeout_s: float = 5.0) -> ProvenanceSigner:
        """A signer from a PEM chain file and a PEM key file (mode 0600 enforced)."""
        return cls(chain_pem=read_certificate_file(chain_path),
                   private_key_pem=read_private_key_file(key_path), algorithm=algorithm,
                   tsa_url=tsa_url, tsa_timeout_s=tsa_timeout_s)

    @classmethod
    def from_dev_chain(cls, keys_dir: str | os.PathLike[str], *,
                       tsa_url: str | None = None) -> ProvenanceSigner:
        """The development signer created by :func:`init_dev_chain` under ``keys_dir``."""
        paths = dev_chain_paths(keys_dir)
        return cls.from_files(paths.signer_chain, paths.signer_key, tsa_url=tsa_url)

    @property
    def key_id(self) -> str:
        """A short public id of the signing certificate (not of the key)."""
        digest = hashlib.sha256(self.chain_pem.encode("ascii", "replace")).hexdigest()
        return (self.certificate.fingerprint if self.certificate else digest)[:12]

    def __repr__(self) -> str:  # never show the key
        kind = "callback" if self._callback is not None else "pem-key"
        return (f"ProvenanceSigner(subject={getattr(self.certificate, 'subject', '?')!r}, "
                f"algorithm={self.algorithm!r}, key={kind}, tsa={self.tsa_url!r})")

    def preflight(self) -> None:
        """Checks that must pass before each signature (the TSA is reachable)."""
        if self.tsa_url:
            check_tsa_reachable(self.tsa_url, timeout_s=self.tsa_timeout_s)

    @contextlib.contextmanager
    def native(self) -> Iterator[tuple[Any, list[BaseException]]]:
        """A ``c2pa.Signer`` for one signature, and the list that will hold the exception
        the signing callback raised during it (if any).

        PEM-key signers are cached per thread (creating one costs ~1 ms); callback signers
        are made for each signature.
        """
        from ._c2pa import c2pa_module

        c2pa = c2pa_module()
        alg = getattr(c2pa.C2paSigningAlg, _C2PA_ALGS[self.algorithm])
        errors: list[BaseException] = []
        if self._callback is None:
            cached = getattr(self._local, "signer", None)
            if cached is None or not cached.is_valid:
                info = c2pa.C2paSignerInfo(alg, self.chain_pem.encode("ascii"),
                                           self._key_pem.encode("ascii"), self.tsa_url)
                cached = c2pa.Signer.from_info(info)
                self._local.signer = cached
            yield cached, errors
            return
        user_callback = self._callback

        def call(data: bytes) -> bytes:
            try:
                sig = user_callback(data)
            except Exception as exc:  # noqa: BLE001 - reported after the sign call
                errors.append(exc)
                return b""
            if not isinstance(sig, (bytes, bytearray)) or not sig:
                errors.append(SigningError("the signing callback returned no signature"))
                return b""
            return bytes(sig)

        signer = c2pa.Signer.from_callback(call, alg, self.chain_pem, self.tsa_url)
        try:
            yield signer, errors
        finally:
            signer.close()


def signer_error_message(exc: BaseException, signer: ProvenanceSigner,
                         callback_errors: Sequence[BaseException] = ()) -> str:
    """Turn a c2pa signing failure into a message in the user's terms."""
    text = str(exc)
    if callback_errors:
        cb = callback_errors[0]
        return f"the signing callback failed: {type(cb).__name__}: {cb}"
    if signer.tsa_url and ("http" in text.lower() or "resolver" in text.lower()
                           or "time stamp" in text.lower() or "timestamp" in text.lower()):
        return (f"the timestamp authority {signer.tsa_url} did not answer properly ({text}); "
                "nothing was signed")
    return f"c2pa could not sign: {text}"
