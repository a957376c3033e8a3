"""Checks of the values a pass reads: NaN and infinities, named by model and row."""

from __future__ import annotations


class NonFiniteFeaturesError(ValueError):
    """Features hold NaN or infinite values."""


def check_finite(blocks, used, names, offset: int, xp) -> None:
    """Raise naming the model and the first used rows that hold NaN or inf.

    ``used`` is a boolean mask of the chunk's rows that the computation reads;
    values in other rows do not matter and are not checked.
    """
    for name, block in zip(names, blocks, strict=True):
        bad = xp.flatnonzero(~xp.isfinite(block).all(axis=1) & used)
        if bad.size:
            first = [int(i) + offset for i in bad[:5]]
            raise NonFiniteFeaturesError(
                f"features {name!r} hold NaN or infinite values in rows {first}"
                f"{' and more' if bad.size > 5 else ''}"
            )
