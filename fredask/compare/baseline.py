"""Chance level of a comparison: the same measure from random features of the same widths.

Reconstruction errors and similarities depend on the features' widths and
on the number of rows as well as on what the features encode: a source of
many columns reconstructs part of any target by chance on finite train rows,
and the CKA or canonical correlations of two unrelated spaces are not zero.
``baseline="random"`` computes, for every ordered pair ``(source, target)``,
the same measure between standard-normal features of the source's width and
dtype and the target's features, on the same rows, split and settings
(:func:`baseline_values`); a heat map shows it under each value.  The
random features are generated chunk by chunk with the data's row chunks
(``dask.array.random``, seeded), so they cost no memory and no storage.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da

from fredask.stats.features import FeatureSet, Pair

#: Baselines :func:`baseline_values` knows.
BASELINES = ("random",)
#: Prefix of the random stand-ins' names.
PREFIX = "random:"


def with_random_sources(features: FeatureSet, seed: int = 0) -> FeatureSet:
    """``features`` followed by one standard-normal stand-in per model (``random:<name>``).

    Each stand-in has its model's width, dtype and row chunks; stand-ins of
    different models are independent draws of one seeded generator.
    """
    rng = da.random.default_rng(seed)
    chunks = features.row_chunks
    randoms = tuple(
        rng.standard_normal((features.n_rows, width), chunks=(chunks, width)).astype(dtype)
        for width, dtype in zip(features.widths, features.dtypes, strict=True)
    )
    return FeatureSet(
        names=features.names + tuple(PREFIX + name for name in features.names),
        arrays=features.arrays + randoms,
        dtypes=features.dtypes + features.dtypes,
    )


def baseline_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    """The pairs of the baseline: each source replaced by its random stand-in."""
    return [(PREFIX + source, target) for source, target in pairs]


def check_baseline(baseline: str | None) -> None:
    """Refuse an unknown baseline."""
    if baseline is not None and baseline not in BASELINES:
        from fredask.compare.matrix import ComparisonError

        raise ComparisonError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")
