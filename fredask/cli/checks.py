"""What the command line checks before any store is created or any work starts.

Every check raises :class:`CommandError` (a :class:`~fredask.errors.FredaskError`)
with one line naming the option, file or folder; nothing here writes to disk or
imports more than the standard library.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from fredask.errors import FredaskError

#: Options that take a positive integer (attribute -> option), checked by :func:`check_ranges`.
POSITIVE = {
    "n_test": "--n-test",
    "n_local_points": "--n-local-points",
    "batch_atoms": "--batch-atoms",
}
#: The cumulant orders fredask computes.
ORDERS = range(1, 9)


class CommandError(FredaskError):
    """A command line that cannot run as given (bad value, missing file, ignored option)."""


def check_ranges(args: argparse.Namespace) -> None:
    """Refuse out-of-range values of the options a command has (``--n-test -5``, ...)."""
    for attribute, option in POSITIVE.items():
        value = getattr(args, attribute, None)
        if value is not None and value <= 0:
            raise CommandError(f"{option} {value}: must be a positive integer")
    order = getattr(args, "order", None)
    if order is not None and order not in ORDERS:
        raise CommandError(f"--order {order}: order must lie in 1..8")
    timeout = getattr(args, "cluster_timeout", None)
    if timeout is not None and not timeout > 0:
        raise CommandError(f"--cluster-timeout {timeout:g}: must be a positive number of seconds")


def refuse_unless(condition: bool, given: Iterable[str], reason: str) -> None:
    """Refuse the options in ``given`` (those the user set) unless ``condition`` holds.

    Parameters
    ----------
    condition : bool
        Whether the options are used.
    given : iterable of str
        Option names as typed (``"--n-test"``), only those that were given.
    reason : str
        When they apply, e.g. ``"with --split paper only"``.
    """
    given = list(given)
    if given and not condition:
        verb = "applies" if len(given) == 1 else "apply"
        raise CommandError(f"{' and '.join(given)} {verb} {reason}; leave it out")


def given(args: argparse.Namespace, options: dict[str, str]) -> list[str]:
    """The options (``{attribute: "--option"}``) that ``args`` holds a value for."""
    return [option for attribute, option in options.items() if getattr(args, attribute) is not None]


def existing_files(paths: Iterable[str | Path], what: str) -> list[Path]:
    """``paths`` as Paths, each an existing file, or one line naming the first that is not."""
    out = []
    for path in map(Path, paths):
        if not path.exists():
            raise CommandError(f"{what} {path} does not exist")
        if not path.is_file():
            raise CommandError(f"{what} {path} is not a file")
        if not os.access(path, os.R_OK):
            raise CommandError(f"{what} {path} is not readable")
        out.append(path)
    return out


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_folder(path: str | Path, what: str = "--output") -> Path:
    """Refuse a folder that cannot be written (or created), without creating anything.

    Parameters
    ----------
    path : path
        A folder that exists, or one that would be created with its parents.
    what : str
        How messages name it (the option, or "store").

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{what} {path}: exists and is not a folder")
    base = nearest_existing(path)
    if not base.is_dir():
        raise CommandError(f"{what} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        where = "" if base == Path(os.path.abspath(path)) else f" ({base} is not writable)"
        raise CommandError(f"{what} {path}: permission denied{where}")
    return path


def new_store_path(path: str | Path) -> Path:
    """Refuse a store path that does not exist and cannot be created."""
    path = Path(path)
    if not path.exists():
        writable_folder(path, "store")
    elif not path.is_dir():
        raise CommandError(f"store {path}: exists and is not a folder")
    return path


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a pair (an argparse ``type``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value
