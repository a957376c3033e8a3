"""The one base class of fredask's expected failures.

Bad input, a damaged or mismatched store, an unreachable cluster, a model that
does not cover an element: every such failure raises a subclass of
:class:`FredaskError` whose message is one line naming the file, model,
structure or row.  The command line prints that line (no traceback unless
``--debug``) and exits with status 1; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class FredaskError(Exception):
    """An expected failure, described in one line (the CLI prints it and exits 1)."""
