"""Exceptions raised by tmfast.

Every tmfast error derives from :class:`TmfastError` and also from the builtin that
fits, so callers may catch either. Messages are one line naming the file or value,
the problem and the fix; the CLI prints them without a traceback.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "FormatError",
    "GpuOutOfMemoryError",
    "OutputExistsError",
    "OutputWriteError",
    "TmfastError",
]


class TmfastError(Exception):
    """Base class of all tmfast errors."""

    #: Exit code the CLI uses: 2 for usage and input errors, 1 for runtime failures.
    exit_code: int = 2


class ConfigError(TmfastError, ValueError):
    """An option or a combination of options is invalid."""


class FormatError(TmfastError, ValueError):
    """An input file is missing, unreadable or malformed."""


class OutputExistsError(TmfastError, FileExistsError):
    """An output file exists and ``overwrite`` was not given."""


class OutputWriteError(TmfastError, OSError):
    """Writing an output or checkpoint failed (disk full, quota, read-only file
    system, folder removed...). An :class:`OSError` too, with the original
    ``errno`` where one is known, so callers that catch ``OSError`` around their
    writes keep working."""

    exit_code = 1


class BackendUnavailableError(TmfastError, RuntimeError):
    """The requested compute backend cannot run on this machine."""

    exit_code = 1


class GpuOutOfMemoryError(TmfastError, MemoryError):
    """The job does not fit in device memory."""

    exit_code = 1
