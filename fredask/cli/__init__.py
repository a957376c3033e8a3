"""Command line: ``fredask extract | ingest | info | verify | outliers | compare | cumulants``.

And ``pcovr``, ``demo``, ``bench`` and ``cluster``; every command that runs Dask
work takes ``--cluster``.  Each module adds its commands to the parser:
:mod:`.store` (extract, ingest, info), :mod:`.audit` (verify, outliers),
:mod:`.compare` (compare, cumulants), :mod:`.pcovr`, :mod:`.demo`,
:mod:`.bench`, :mod:`.cluster`.

Building the parser imports no Dask, Zarr, torch or matplotlib (each command
imports what it needs), so ``--help`` and argument errors return at once.
Every expected failure (:class:`~fredask.errors.FredaskError`, ``OSError``: a
missing file, a full disk, an unwritable folder, an unreachable cluster) ends
the command with one line ``fredask <command>: <message>`` on stderr and exit
status 1; argument syntax errors exit 2 (argparse); Ctrl-C exits 130; with
``--debug`` the traceback is shown instead.  fredask's warnings and library
messages (``logging.getLogger("fredask")``, INFO) are one line each on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from fredask.cli import audit, bench, cluster, compare, demo, pcovr, store
from fredask.cli.checks import check_ranges
from fredask.errors import FredaskError


def build_parser() -> argparse.ArgumentParser:
    """The ``fredask`` parser with every command."""
    parser = argparse.ArgumentParser(
        prog="fredask",
        description="Feature reconstruction errors between interatomic potentials.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of a failure instead of its one-line message",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    store.add_parsers(sub)
    audit.add_parsers(sub)
    compare.add_parsers(sub)
    pcovr.add_parser(sub)
    demo.add_parser(sub)
    bench.add_parser(sub)
    cluster.add_parser(sub)
    return parser


def one_line(error: BaseException) -> str:
    """The message of an expected failure, on one line, naming the file of an OSError."""
    if isinstance(error, OSError) and not isinstance(error, FredaskError) and error.filename:
        text = f"{error.filename}: {error.strerror or error}"
        if error.filename2:
            text += f" (and {error.filename2})"
    else:
        text = str(error) or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class _Stderr(logging.Handler):
    """Library messages (``logging.getLogger("fredask")``) as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)  # the current stderr, also under capture
        except (ValueError, OSError):
            pass


def show_library_messages(debug: bool = False) -> None:
    """Print fredask's INFO messages (e.g. "features 'x' already hold ...: skipped")."""
    logger = logging.getLogger("fredask")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def _one_line_warnings(prefix: str):
    """A ``warnings.showwarning`` printing fredask's warnings as ``<prefix>: warning: ...``."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        caveats = sys.modules.get("fredask.measures.caveats")  # loaded by whoever warns
        if caveats is not None and issubclass(category, caveats.FredaskWarning):
            print(f"{prefix}: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    return show


def _close_clusters() -> None:
    clients = sys.modules.get("fredask.cluster.clients")  # imported only if a command used it
    if clients is not None:
        clients.close_embedded()


def main(argv: list[str] | None = None) -> int:
    """Run one command line.

    Parameters
    ----------
    argv : list of str, optional
        Default: ``sys.argv[1:]``.

    Returns
    -------
    int
        0 once the command succeeded.

    Raises
    ------
    SystemExit
        On failure: with the one line ``fredask <command>: <message>`` as its
        code (Python prints it to stderr and exits 1), 130 after Ctrl-C, 2 for
        argument syntax (argparse).
    """
    args = build_parser().parse_args(argv)
    if args.command == "demo" and not args.model:
        args.model = list(demo.DEMO_MODELS)
    prefix = f"fredask {args.command}"
    show_library_messages(args.debug)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(prefix)
            check_ranges(args)
            args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{prefix}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (FredaskError, OSError) as error:
        if args.debug:
            raise
        raise SystemExit(f"{prefix}: {one_line(error)}") from None
    except SystemExit as exit_:
        if isinstance(exit_.code, str) and not args.debug:
            message = exit_.code.removeprefix(f"{prefix}: ")
            raise SystemExit(f"{prefix}: {one_line(Exception(message))}") from None
        raise
    finally:
        _close_clusters()
    return 0


if __name__ == "__main__":
    main()
