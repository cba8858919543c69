"""Errors that tell the user what went wrong and what to do about it.

Every error raised on bad user input derives from :class:`CertnnError`, so the CLI can print the
message without a traceback and exit with a documented code.
"""
from __future__ import annotations

from collections.abc import Iterable


class CertnnError(Exception):
    """Base class of every error certnn raises on purpose."""

    exit_code: int = 2


class ConfigError(CertnnError, ValueError):
    """A configuration has an unknown key or an invalid value."""


class UnsupportedOpError(CertnnError):
    """A layer, function or node is not supported by the importer or by a method.

    The message names the offending op and lists what is supported.
    """

    def __init__(self, what: str, supported: Iterable[str], where: str | None = None,
                 hint: str | None = None):
        names = sorted(set(supported))
        msg = f"unsupported {what}"
        if where:
            msg += f" (at {where})"
        msg += ". Supported: " + ", ".join(names)
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.what = what
        self.supported = names


class ModelImportError(CertnnError):
    """A model file or module cannot be imported (malformed file, wrong factory, shape mismatch)."""


class SpecError(CertnnError):
    """A specification (Lp ball, box, VNN-LIB property) is malformed."""


class DataError(CertnnError):
    """A data file is missing, malformed or inconsistent with the model."""


class SoundnessError(CertnnError):
    """An internal consistency check failed: a certified bound was contradicted (a bug in certnn)."""

    exit_code = 3
