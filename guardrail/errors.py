"""The error tree of guardrail.

Every error raised on purpose by guardrail derives from :class:`GuardrailError`.
Each class carries an ``exit_code`` that the CLI uses, so the documented exit codes
and the error tree can never drift apart::

    GuardrailError                      exit 1
    +-- ConfigError                     exit 8   bad configuration file, flag or env var
    +-- InputError                      exit 4   the request itself is unacceptable
    |   +-- PromptError                          empty / over-long prompt
    |   +-- ModalityError                        unknown modality
    |   +-- UnsupportedMediaError                a file type or media type we cannot handle
    |   +-- SuiteError                           an audit prompt suite that is missing or invalid
    |   +-- CannotWatermark                      this input cannot carry (or be checked for) a mark
    |   +-- TextWrapperError                     a C2PA text wrapper that is there but unusable
    +-- ModelLoadError                  exit 5   a model could not be loaded
    +-- GenerationError                 exit 6   the generator raised or returned nothing
    +-- OutputError                     exit 7   the output could not be written
    |   +-- SigningError                         Content Credentials could not be made
    +-- StoreError                      exit 9   the record store failed
    |   +-- ReportNotFound                       no report with that id (or id prefix)
    +-- StageError                      exit 10  a stage failed under a "block" policy
    +-- DependencyError                 exit 11  an optional dependency is not installed
    +-- KeyFileError                    exit 12  a key file is missing, unreadable or too open
        +-- CertificateError                     a signing certificate (or key) c2pa would reject

A blocked output is not an error: :meth:`guardrail.Guard.generate` returns a result
whose ``status`` is ``"blocked"`` (the CLI exits with 3).
"""

from __future__ import annotations

__all__ = [
    "CannotWatermark",
    "CertificateError",
    "ConfigError",
    "DependencyError",
    "GenerationError",
    "GuardrailError",
    "InputError",
    "KeyFileError",
    "ModalityError",
    "ModelLoadError",
    "OutputError",
    "PromptError",
    "ReportNotFound",
    "SigningError",
    "StageError",
    "StoreError",
    "SuiteError",
    "TextWrapperError",
    "UnsupportedMediaError",
]


class GuardrailError(Exception):
    """Root of every error guardrail raises on purpose.

    Attributes
    ----------
    report_id : str or None
        The id of the report recorded for the failed call, when one was recorded.
    """

    exit_code = 1

    def __init__(self, message: str, *, report_id: str | None = None) -> None:
        super().__init__(message)
        self.report_id = report_id


class ConfigError(GuardrailError):
    """A configuration file, flag or environment variable is invalid."""

    exit_code = 8


class InputError(GuardrailError):
    """The request cannot be accepted as given."""

    exit_code = 4


class PromptError(InputError):
    """The prompt is empty, too long or otherwise unusable."""


class ModalityError(InputError):
    """An unknown modality was requested."""


class UnsupportedMediaError(InputError):
    """A file or media type that guardrail cannot handle."""


class SuiteError(InputError):
    """An audit prompt suite cannot be found or is invalid (the message names the file and
    the field)."""


class CannotWatermark(InputError):
    """This input cannot be watermarked or checked by this scheme; the message says why.

    Attributes
    ----------
    payload_dependent : bool
        True when another payload may fit the same input (a short audio clip where some ids
        do not decode with a margin): the watermark stage then draws another id.
    """

    def __init__(self, message: str, *, payload_dependent: bool = False,
                 report_id: str | None = None) -> None:
        super().__init__(message, report_id=report_id)
        self.payload_dependent = payload_dependent


class TextWrapperError(InputError):
    """A C2PA text wrapper that is there but unusable.

    Attributes
    ----------
    code : str
        The C2PA status code (``manifest.text.multipleWrappers``,
        ``manifest.text.corruptedWrapper``, ...).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelLoadError(GuardrailError):
    """A model could not be loaded.

    The message always names the model and says how to provide it.
    """

    exit_code = 5

    def __init__(self, model: str, reason: str, *, hint: str | None = None) -> None:
        message = f"cannot load model {model!r}: {reason}"
        if hint:
            message += f"\n  how to fix: {hint}"
        super().__init__(message)
        self.model = model
        self.reason = reason
        self.hint = hint


class GenerationError(GuardrailError):
    """The generator raised, or returned nothing usable."""

    exit_code = 6


class OutputError(GuardrailError):
    """The output file could not be written."""

    exit_code = 7


class SigningError(OutputError):
    """Content Credentials could not be made (timestamp authority down, KMS error, ...)."""


class StoreError(GuardrailError):
    """The record store could not be opened, migrated, read or written."""

    exit_code = 9


class ReportNotFound(StoreError):
    """No report with that id (or id prefix) is in the store."""


class StageError(GuardrailError):
    """A stage failed and its on-fail policy is ``block``."""

    exit_code = 10


class DependencyError(GuardrailError):
    """An optional dependency is missing; the message names the extra to install."""

    exit_code = 11

    def __init__(self, package: str, extra: str, *, purpose: str = "") -> None:
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the optional package {package!r} is not installed{what}; "
            f"install it with: pip install 'guardrail[{extra}]'"
        )
        self.package = package
        self.extra = extra


class KeyFileError(GuardrailError):
    """A key file is missing, unreadable, malformed or readable by others."""

    exit_code = 12


class CertificateError(KeyFileError):
    """A signing certificate (or its key) that c2pa would reject, with the reason."""
