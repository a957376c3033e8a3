"""Command line: ``fredask extract | ingest | info | compare | cumulants | demo | bench``.

And ``fredask cluster``; every command that runs Dask work takes ``--cluster``.
"""

from fredask.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
