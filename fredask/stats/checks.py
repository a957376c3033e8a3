"""Checks of the values a pass reads: NaN and infinities, named by model and row."""

from __future__ import annotations

from fredask.backend import to_device, to_host
from fredask.errors import FredaskError


class NonFiniteFeaturesError(FredaskError, ValueError):
    """Features hold NaN or infinite values."""


def check_finite(blocks, used, names, offset: int, xp) -> None:
    """Raise naming the model and the first used rows that hold NaN or inf.

    ``used`` is a boolean mask of the chunk's rows that the computation reads;
    values in other rows do not matter and are not checked.
    """
    for name, block in zip(names, blocks, strict=True):
        finite = xp.all(xp.isfinite(to_device(block, xp)), axis=1)
        bad = xp.nonzero(~finite & used)[0]
        if bad.shape[0]:
            first = [int(i) + offset for i in to_host(bad[:5])]
            raise NonFiniteFeaturesError(
                f"features {name!r} hold NaN or infinite values in rows {first}"
                f"{' and more' if bad.shape[0] > 5 else ''}"
            )
