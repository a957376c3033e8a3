"""Warnings about results that are computed but deserve a second look.

:class:`FredaskWarning` is the base of fredask's warnings (a :class:`UserWarning`,
so shown by default and filterable as one class); :func:`warn` issues one
pointing at the caller's code rather than at fredask's internals.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep


class FredaskWarning(UserWarning):
    """A result fredask computed but whose setting deserves a second look."""


class NeighbourCapWarning(FredaskWarning):
    """The default LFRE neighbour count was capped at the number of train rows."""


class UnderdeterminedFitWarning(FredaskWarning):
    """A global fit has fewer train rows than source features."""


def warn(message: str, category: type[FredaskWarning] = FredaskWarning) -> None:
    """Issue ``message`` (one line) as ``category``, attributed to the caller outside fredask."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2: the caller of warn
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)
