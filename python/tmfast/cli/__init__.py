"""The ``tmfast`` command line (Typer).

Each subcommand lives in its own module with a ``register(app)`` function. Commands
are thin: parse, build a config, call one library function, write outputs. Errors
derived from :class:`tmfast.errors.TmfastError` are printed as one line and exit
with their ``exit_code`` (2 for usage and input errors); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

import typer

from tmfast.errors import TmfastError

__all__ = ["app", "main"]

app = typer.Typer(
    name="tmfast",
    no_args_is_help=True,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Fast template matching for cryo-ET: match, extract, batch on SLURM.",
)

_state = {"debug": False}

#: Command modules, each with ``register(app)``; order is the order in --help.
_COMMAND_MODULES = (
    "demo",
    "match",
    "extract",
    "stars",
    "batch",
    "templates",
    "angles",
    "info",
)


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "-v", "--verbose", count=True, help="More log output."
    ),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Warnings and errors only."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True
    ),
) -> None:
    """Fast template matching for cryo-ET."""
    if version:
        from tmfast import __version__

        typer.echo(f"tmfast {__version__}")
        raise typer.Exit()
    _state["debug"] = debug
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    configure_logging(level)


def configure_logging(level: int) -> None:
    """Send tmfast's log records to stderr: rich on a terminal, timestamps otherwise."""
    root = logging.getLogger("tmfast")
    root.setLevel(level)
    for h in list(root.handlers):
        if not isinstance(h, logging.NullHandler):
            root.removeHandler(h)
    handler: logging.Handler
    if sys.stderr.isatty() and "SLURM_JOB_ID" not in os.environ:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    root.addHandler(handler)


for _name in _COMMAND_MODULES:
    importlib.import_module(f"tmfast.cli.{_name}").register(app)


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Python warnings as one line (the default format adds the file and the
    source line, e.g. ``template = template_from_map(``)."""
    return f"tmfast: warning: {message}\n"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and not any(e is s for s in seen):
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _writes_stdout(stream: object) -> bool:
    """Whether ``stream`` is standard output (the object or its file descriptor)."""
    if stream is sys.stdout or stream is sys.__stdout__:
        return True
    try:
        return int(stream.fileno()) == 1  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


def _stdout_error(exc: BaseException) -> OSError | None:
    """The OSError in ``exc``'s chain raised writing standard output, if any.

    Commands print with ``typer.echo`` and the help with rich: the error is
    standard output's when the innermost frame of its traceback writes to it
    (``echo``'s ``file``, a rich ``Console``'s ``self.file``); an OSError from an
    output file passes through as before."""
    for e in _chain(exc):
        if not isinstance(e, OSError):
            continue
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is None:
            continue
        where = tb.tb_frame.f_locals
        streams = (where.get("file"), getattr(where.get("self"), "file", None))
        if any(s is not None and _writes_stdout(s) for s in streams):
            return e
    return None


def _silence_stdout() -> None:
    """Point standard output at /dev/null so that the interpreter's last flush of
    what could not be written raises nothing (Python's recipe for SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing is flushed at exit
    os.dup2(devnull, fd)
    os.close(devnull)


def _stdout_failed(err: OSError) -> None:
    """Exit for a failed write to standard output: quietly (0) when the reader
    went away (``| head``: the output was cut short on purpose, as with any
    filter), else one line and exit 1 (a full disk, an I/O error)."""
    _silence_stdout()
    if isinstance(err, BrokenPipeError):
        sys.exit(0)
    print(
        f"tmfast: error: cannot write to standard output ({err.strerror or err}); "
        "redirect it to a file system with space, or to a file you can write",
        file=sys.stderr,
    )
    sys.exit(1)


def _flush_stdout() -> None:
    """Flush standard output now, so a failure is reported here, not as noise
    from the interpreter at exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _stdout_failed(exc)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one line and exit with code 2.

    Typer runs in standalone mode, which turns Ctrl-C into a silent exit 130 and
    a closed pipe (``tmfast angles | head -1``) into exit 1: both are recognised
    from the exit's exception chain. Ctrl-C prints one line and exits 130; a
    closed pipe exits 0 quietly; any other failure to write standard output
    (``> /dev/full``) is one line and exit 1.
    """
    warnings.formatwarning = _warning_line
    try:
        app(args=argv, prog_name="tmfast")
    except SystemExit as exc:
        chain = _chain(exc)
        if any(isinstance(e, KeyboardInterrupt) for e in chain):
            print("tmfast: interrupted", file=sys.stderr)
            sys.exit(130)
        err = _stdout_error(exc)
        if err is not None:
            _stdout_failed(err)
        _flush_stdout()
        raise
    except TmfastError as exc:
        if _state["debug"]:
            raise
        print(f"tmfast: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("tmfast: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        err = _stdout_error(exc)
        if err is None or _state["debug"]:
            raise
        _stdout_failed(err)
