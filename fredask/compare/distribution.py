"""The distribution of a pair's pointwise errors: is its number carried by a few rows?

A reconstruction error is the root mean square of per-test-row errors
``e_i``; an LFRE of 4.1 can come from two atoms that carry 99.98% of the
squared error while the median row is reconstructed to 0.002.  Every
reconstruction matrix therefore carries, per ordered pair, the median and the
90th / 99th percentiles of ``e_i``, the share of ``sum e_i^2`` that the top 1%
of test rows carry, whether that share is more than half (the pair is
"dominated by a few rows"), and the worst rows (their structures too, given a
row -> structure map).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: The top share of test rows whose part of the squared error is reported.
TOP_FRACTION = 0.01
#: A pair is dominated by a few rows when its top rows carry more than this share.
DOMINATED_SHARE = 0.5
#: RMS errors below this are round-off (a model reconstructed from itself): never "dominated".
ROUND_OFF = 1e-8
#: Worst rows listed per pair.
N_WORST = 5
#: Columns of :func:`summary_frame`.
COLUMNS = (
    "value",
    "median",
    "p90",
    "p99",
    "top1_share",
    "dominated",
    "worst_rows",
    "worst_errors",
    "worst_structures",
)


def summarise(
    errors: np.ndarray,
    test_idx: np.ndarray,
    row_structures: np.ndarray | None = None,
    n_worst: int = N_WORST,
) -> dict:
    """Summary of one pair's pointwise errors.

    Parameters
    ----------
    errors : numpy.ndarray, shape (n_test,)
        ``e_i`` in the order of ``test_idx``.
    test_idx : numpy.ndarray of int, shape (n_test,)
        The rows of the data the errors belong to.
    row_structures : numpy.ndarray of int, shape (n_rows,), optional
        The structure of every row of the data.
    n_worst : int
        How many of the largest errors to list.

    Returns
    -------
    dict
        ``median``, ``p90``, ``p99``, ``top1_share`` (share of ``sum e^2`` from
        the ``ceil(1% of n_test)`` largest errors), ``dominated``
        (``top1_share > 0.5`` and an RMS error above :data:`ROUND_OFF`),
        ``worst_rows`` / ``worst_errors`` (largest first) and
        ``worst_structures`` (``None`` without ``row_structures``).
    """
    errors = np.asarray(errors, dtype=np.float64)
    squares = errors**2
    n_top = max(1, int(np.ceil(TOP_FRACTION * errors.size)))
    order = np.argsort(-errors, kind="stable")
    total = squares.sum()
    share = float(squares[order[:n_top]].sum() / total) if total > 0 else 0.0
    worst = order[:n_worst]
    rows = np.asarray(test_idx)[worst]
    return {
        "median": float(np.median(errors)),
        "p90": float(np.percentile(errors, 90)),
        "p99": float(np.percentile(errors, 99)),
        "top1_share": share,
        # a round-off error (a model from itself) is not "dominated", whatever its spread
        "dominated": bool(share > DOMINATED_SHARE and np.sqrt(squares.mean()) > ROUND_OFF),
        "worst_rows": tuple(int(r) for r in rows),
        "worst_errors": tuple(float(e) for e in errors[worst]),
        "worst_structures": None
        if row_structures is None
        else tuple(int(s) for s in np.asarray(row_structures)[rows]),
    }


def summary_frame(
    pointwise: Mapping[tuple[str, str], np.ndarray],
    values: Mapping[tuple[str, str], float],
    test_idx: np.ndarray,
    row_structures: np.ndarray | None = None,
) -> pd.DataFrame:
    """:func:`summarise` of every pair, one row per (source, target).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``(source, target)``, with the columns of :data:`COLUMNS`
        (``value`` is the pair's matrix entry).
    """
    records = [
        {"value": float(values[pair]), **summarise(errors, test_idx, row_structures)}
        for pair, errors in pointwise.items()
    ]
    index = pd.MultiIndex.from_tuples(list(pointwise), names=["source", "target"])
    return pd.DataFrame(records, index=index, columns=list(COLUMNS))


def flat_summaries(errors: pd.DataFrame) -> pd.DataFrame:
    """The summaries with the worst-row lists as ``;``-joined text (for CSV)."""
    flat = errors.copy()
    for column in ("worst_rows", "worst_errors", "worst_structures"):
        flat[column] = ["" if v is None else ";".join(map(str, v)) for v in flat[column]]
    return flat.reset_index()
