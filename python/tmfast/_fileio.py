"""Atomic output files: write to a temporary name, then rename.

Used by every writer so that a killed job never leaves a partial or corrupt file and
results are never silently overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tmfast.errors import (
    ConfigError,
    FormatError,
    OutputExistsError,
    OutputWriteError,
)

__all__ = [
    "DestinationWriteError",
    "atomic_path",
    "check_output_folder",
    "check_writable",
    "make_folder",
    "missing_folders",
    "read_json",
    "remove_empty_folders",
]


def read_json(path: str | os.PathLike[str], *, what: str, fix: str) -> Any:
    """Read a JSON file, turning a missing or unreadable file into one-line errors.

    Parameters
    ----------
    path
        The JSON file.
    what
        What the file is, for messages (``"manifest"``, ``"job file"``).
    fix
        What to do when the file is missing (``"check the path"``).

    Returns
    -------
    Any
        The parsed JSON value; callers check its shape.

    Raises
    ------
    FormatError
        ``"<path>: <what> not found; <fix>"``, ``"<path>: is a folder, not a
        <what>; ..."`` or ``"<path>: not a readable JSON <what> (<reason>)"``.
    """
    p = Path(path)
    if p.is_dir():
        held = sorted(q.name for q in p.glob("*.json"))
        inside = f" (it holds {', '.join(held[:3])})" if held else ""
        raise FormatError(
            f"{p}: is a folder, not a {what}{inside}; give the file itself ({fix})"
        )
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise FormatError(f"{p}: {what} not found; {fix}") from None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{p}: not a readable JSON {what} ({exc})") from None


def check_writable(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Return ``path`` as a Path, refusing to replace an existing file.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    ConfigError
        If ``path`` is a folder.
    """
    p = Path(path)
    if p.is_dir():  # --overwrite cannot replace a folder with a file
        raise ConfigError(
            f"{p}: is a folder; give a file name for this output (e.g. inside it)"
        )
    if p.exists() and not overwrite:
        raise OutputExistsError(
            f"{p}: output exists; pass --overwrite to replace it (overwrite=True "
            "in the Python API)"
        )
    return p


def check_output_folder(folder: Path, option: str, target: Path | None = None) -> None:
    """Refuse an output folder that is, or lies under, an existing non-folder.

    Checked before any work so that a wrong ``-o`` is one error line, not a
    traceback after the picking. ``target`` is the output file named in the
    message when ``option`` gives a file rather than ``folder`` itself.

    Raises
    ------
    ConfigError
        Naming ``option`` if ``folder`` or one of its parents is a file.
    """
    p = folder
    while not p.exists() and p.parent != p:
        p = p.parent
    if p.exists() and not p.is_dir():
        named = target if target is not None else folder
        what = "is a file" if named == p else f"lies under the file {p}"
        raise ConfigError(f"{named}: {option} {what}, not a folder; give a folder")


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first:
    what creating it would make (for :func:`remove_empty_folders` on failure)."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first, as :func:`missing_folders` lists them)
    while they are empty: a failed run leaves no empty folder it made behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or not ours): keep it and its parents


def make_folder(folder: Path, what: str, subject: Path | None = None) -> list[Path]:
    """Create ``folder`` (and parents), or raise one ConfigError line saying why not
    (a file in the way, permissions): ``{subject}: cannot create {what} (...)``,
    ``subject`` defaulting to the folder. Returns the folders it created, deepest
    first."""
    created = missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        reason = (
            f"{blocker} is a file, not a folder"
            if blocker is not None and not blocker.is_dir()
            else exc.strerror or str(exc)
        )
        raise ConfigError(
            f"{subject or folder}: cannot create {what} ({reason}); choose another path"
        ) from None
    return created


#: Write failures that are the destination's, not the program's: said in one line.
_DESTINATION_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is over the file-size limit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
}


class DestinationWriteError(OutputWriteError):
    """Writing an output failed for the destination's sake (full disk, quota,
    read-only file system); nothing was written. Its ``errno`` and ``strerror``
    are the original ones; the CLI prints its one-line message and exits 1.
    """

    def __init__(self, path: Path, code: int, why: str) -> None:
        strerror = os.strerror(code)
        super().__init__(code, strerror, str(path))
        self.message = (
            f"{path}: cannot write it ({why}: {strerror}); nothing was "
            "written: free space there or choose another output folder"
        )

    def __str__(self) -> str:
        return self.message


def _errno_of(exc: OSError) -> int | None:
    """The errno of ``exc``. The Rust writers (STAR, IMOD) set it too; an error
    without one (an extension built before they did) may still say ``... (os error
    28)`` in its message, which is read as a fallback."""
    if exc.errno is not None:
        return int(exc.errno)
    found = re.search(r"\(os error (\d+)\)", str(exc))
    return int(found.group(1)) if found else None


#: Signals that end the process without running cleanup code when left at their
#: default action (SLURM's time limit and scancel send SIGTERM; a closed terminal
#: SIGHUP).
_FATAL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
#: Temporary files of the atomic writes in progress.
_LIVE_TEMPORARIES: set[Path] = set()


def _remove_temporaries_and_die(signum: int, frame: object) -> None:
    """Remove the temporaries of writes in progress, then end as the signal would."""
    for tmp in list(_LIVE_TEMPORARIES):
        tmp.unlink(missing_ok=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def _temporaries_removed_on_fatal_signals(tmp: Path) -> Iterator[None]:
    """While the body runs, a SIGTERM or SIGHUP that would kill the process (no
    handler of the program's own) first removes ``tmp``. Only the main thread can
    install signal handlers; elsewhere this does nothing."""
    installed: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _FATAL_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                installed[signum] = signal.signal(signum, _remove_temporaries_and_die)
    _LIVE_TEMPORARIES.add(tmp)
    try:
        yield
    finally:
        _LIVE_TEMPORARIES.discard(tmp)
        for signum, previous in installed.items():
            if signal.getsignal(signum) is _remove_temporaries_and_die:
                signal.signal(signum, previous)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path in the target folder; rename it to ``path`` on success.

    The temporary file is removed if the body raises, so no partial output remains,
    and also on a SIGTERM or SIGHUP that would end the process (one the program
    handles itself is left to it).

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    ConfigError
        If the folder cannot be made or written (a file in the way, permissions).
    DestinationWriteError
        If writing fails for want of space or quota, or on a read-only file
        system (the partial file is removed).
    """
    final = check_writable(path, overwrite=overwrite)
    make_folder(final.parent, "its folder", final)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final.name}.", suffix=".part", dir=final.parent
        )
    except OSError as exc:  # e.g. a read-only folder
        raise ConfigError(
            f"{final}: cannot write there ({exc.strerror or exc}); choose an output "
            "folder you can write to"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the result the mode a plain open() would (shared
    # cluster folders need group/other read access).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with _temporaries_removed_on_fatal_signals(tmp):
            yield tmp
            os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        code = _errno_of(exc)
        why = _DESTINATION_ERRNOS.get(code or 0)
        if why is None or code is None:
            raise
        raise DestinationWriteError(final, code, why) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
