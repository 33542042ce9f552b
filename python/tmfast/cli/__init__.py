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


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one line and exit with code 2."""
    warnings.formatwarning = _warning_line
    try:
        app(args=argv, prog_name="tmfast")
    except TmfastError as exc:
        if _state["debug"]:
            raise
        print(f"tmfast: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("tmfast: interrupted", file=sys.stderr)
        sys.exit(130)
