"""Library wording in errors -> command-line wording (shared by the commands).

The library names its Python parameters (``n_particles=0``, ``tomogram_mask``,
``match['template']``); each command re-raises such an error with its own flags
through :func:`cli_flags`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from tmfast.errors import TmfastError

__all__ = ["cli_flags", "cli_terms"]


def cli_terms(message: str, flags: Mapping[str, str]) -> str:
    """Rewrite the Python parameter names in a library error as command flags.

    ``flags`` maps a parameter name to its flag (``name=VALUE`` becomes
    ``FLAG VALUE``; a bare name with an underscore becomes ``FLAG``) or a phrase to
    its command-line wording (replaced as written). Longer keys go first; a name
    inside a word or a path (``TS_01_tomogram_mask.mrc``) is left alone.
    """
    for key in sorted(flags, key=len, reverse=True):
        flag = flags[key]
        if not re.fullmatch(r"\w+", key):
            message = message.replace(key, flag)
            continue
        before = r"(?<![\w./-])"
        message = re.sub(before + re.escape(key) + "=", flag + " ", message)
        if "_" in key:
            message = re.sub(before + re.escape(key) + r"(?=[\s,;:)]|$)", flag, message)
    return message


@contextmanager
def cli_flags(flags: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a :class:`TmfastError` with its parameter names as ``flags``."""
    try:
        yield
    except TmfastError as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (cli_terms(exc.args[0], flags), *exc.args[1:])
        raise
