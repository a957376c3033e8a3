"""Representation similarity from the test rows' scatter: linear CKA, CCA, Procrustes.

For the centred test rows ``X`` (n x p) and ``Y`` (n x q) of two models
(docs/method.md, section 12), every measure here depends on the data only
through the cross products ``X^T X``, ``X^T Y`` and ``Y^T Y``, and so on any
factor ``F`` of the test rows' centred scatter of all models' concatenated
columns (``F^T F = Z^T Z``, ``X^T Y = F_a^T F_b`` for the column blocks ``a``
and ``b``): the one statistics pass gives them for all pairs at once, at
any number of rows, without an n x n kernel.

* linear CKA (Kornblith et al. 2019): ``||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)``,
  and its debiased form (:func:`debiased_cka`: the unbiased HSIC estimator of
  Song et al. 2012 in place of the biased one), which needs one fourth-order
  statistic more, ``sum_i |x_i|^2 |y_i|^2`` (one more read of the test rows,
  :func:`fredask.stats.passes.norm_products`);
* CCA: the canonical correlations, singular values of ``U_a^T U_b`` with
  ``U_a``, ``U_b`` orthonormal bases of the column spaces (from the SVD of
  ``F_a`` and ``F_b``, with ``F = Q R`` any factor, ``X = Q F_a``); the value
  is their mean square over ``min(rank X, rank Y)``; SVCCA first keeps each
  block's leading singular directions that explain ``kept_variance`` of its
  variance;
* the orthogonal Procrustes distance (Ding et al. 2021) between the blocks
  scaled to unit Frobenius norm: ``2 - 2 ||X^T Y||_* / (||X||_F ||Y||_F)``,
  in [0, 2] (0: one is a rotation of the other).

All three are invariant to a model's isotropic scale, so no scaler is
applied; the per-column powers of two of huge features
(:mod:`fredask.stats.moments`) are brought to one power per model, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fredask.backend import ArrayBackend, resolve_backend, svd
from fredask.cluster.clients import Scheduler
from fredask.stats.features import FeatureSet, Pair
from fredask.stats.moments import METHODS, factor_about
from fredask.stats.splits import TEST, Split, row_labels

#: The similarity metrics of :func:`pair_similarity`.
SIMILARITY_METRICS = ("cka", "cca", "procrustes")
#: Every symmetric measure (these and :mod:`fredask.measures.mutual_knn`'s): no fit,
#: no pointwise errors, heat-map axes that are models rather than source and target.
SYMMETRIC_METRICS = (*SIMILARITY_METRICS, "mutual_knn")


@dataclass(frozen=True)
class Similarity:
    """One pair's similarity.

    Attributes
    ----------
    value : float
        CKA, mean squared canonical correlation, or Procrustes distance.
    spectrum : numpy.ndarray
        CCA: the canonical correlations, descending; Procrustes: the
        singular values of ``X^T Y / (||X||_F ||Y||_F)``; CKA: the same
        (their squares sum to the CKA's numerator over ``||X||_F^2 ||Y||_F^2``).
    """

    value: float
    spectrum: np.ndarray


def linear_cka(fa: np.ndarray, fb: np.ndarray) -> float:
    """Linear CKA of two column blocks of a factor of the centred scatter."""
    cross = np.linalg.norm(fa.T @ fb) ** 2
    return float(cross / (np.linalg.norm(fa.T @ fa) * np.linalg.norm(fb.T @ fb)))


def unbiased_hsic(cross: float, trace_a: float, trace_b: float, products: float, n: int):
    """Song et al.'s unbiased HSIC of linear kernels, from centred-row statistics.

    With ``K = X X^T`` and ``L = Y Y^T`` of the centred rows and their
    diagonals removed (``K~``, ``L~``), the estimator
    ``[tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))``
    depends on the rows through ``cross = ||X^T Y||_F^2``, ``trace_a = tr(X^T X)``,
    ``trace_b = tr(Y^T Y)`` and ``products = sum_i |x_i|^2 |y_i|^2`` only
    (centred rows: ``K 1 = 0``, so ``K~ 1 = -diag(K)``); the estimator does not
    change when the rows are shifted, so centring them loses nothing.
    """
    total = cross - products + trace_a * trace_b / ((n - 1) * (n - 2)) - 2 * products / (n - 2)
    return total / (n * (n - 3))


def debiased_cka(fa: np.ndarray, fb: np.ndarray, products: np.ndarray, n: int) -> float:
    """Debiased linear CKA of two column blocks of a factor of the centred scatter.

    Parameters
    ----------
    fa, fb : numpy.ndarray
        Column blocks of one factor (``F_a^T F_b = X^T Y``).
    products : numpy.ndarray, shape (2, 2)
        ``sum_i`` of the products of ``|x_i|^2`` and ``|y_i|^2`` (rows and
        columns: a, b), in the blocks' units.
    n : int
        Test rows (at least 4).
    """
    if n < 4:
        return float("nan")
    ta, tb = float(np.sum(fa**2)), float(np.sum(fb**2))
    ab = unbiased_hsic(np.linalg.norm(fa.T @ fb) ** 2, ta, tb, products[0, 1], n)
    aa = unbiased_hsic(np.linalg.norm(fa.T @ fa) ** 2, ta, ta, products[0, 0], n)
    bb = unbiased_hsic(np.linalg.norm(fb.T @ fb) ** 2, tb, tb, products[1, 1], n)
    if aa <= 0 or bb <= 0:
        return float("nan")
    return float(ab / np.sqrt(aa * bb))


def _basis(factor: np.ndarray, kept_variance: float | None, rcond: float) -> np.ndarray:
    """Orthonormal basis (within the factor's rows) of a block's column space.

    Directions whose singular value is below ``rcond`` times the largest are
    rank deficiency; with ``kept_variance``, only the leading directions
    whose variance (squared singular values) reaches that share are kept.
    """
    u, s, _ = svd(factor, np)
    if s.size == 0 or s[0] == 0:
        return u[:, :0]
    rank = int(np.sum(s > rcond * s[0]))
    if kept_variance is not None:
        share = np.cumsum(s[:rank] ** 2) / np.sum(s[:rank] ** 2)
        rank = int(np.searchsorted(share, kept_variance - 1e-12) + 1)
    return u[:, :rank]


def canonical_correlations(
    fa: np.ndarray, fb: np.ndarray, kept_variance: float | None = None, rcond: float | None = None
) -> np.ndarray:
    """Canonical correlations of two column blocks, descending, ``min(rank)`` of them.

    Parameters
    ----------
    fa, fb : numpy.ndarray
        Column blocks of one factor of the centred scatter.
    kept_variance : float in (0, 1], optional
        SVCCA: keep each block's leading directions explaining this share.
    rcond : float, optional
        Relative singular value below which a direction is rank deficiency
        (default ``max(rows, p, q) * eps``).
    """
    if rcond is None:
        rcond = max(fa.shape[0], fa.shape[1], fb.shape[1]) * np.finfo(np.float64).eps
    ua = _basis(fa, kept_variance, rcond)
    ub = _basis(fb, kept_variance, rcond)
    rho = svd(ua.T @ ub, np)[1] if min(ua.shape[1], ub.shape[1]) else np.zeros(0)
    return np.clip(rho, 0.0, 1.0)


def procrustes_spectrum(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Singular values of ``X^T Y / (||X||_F ||Y||_F)`` (their sum is ``1 - d / 2``)."""
    return svd(fa.T @ fb, np)[1] / (np.linalg.norm(fa) * np.linalg.norm(fb))


def check_options(metric: str, kept_variance: float | None = None, debiased: bool = False) -> None:
    """Refuse an unknown metric, a ``kept_variance`` outside (0, 1] or not for ``"cca"``,
    or ``debiased`` not for ``"cka"``."""
    if metric not in SIMILARITY_METRICS:
        raise ValueError(f"unknown similarity {metric!r}; use one of {SIMILARITY_METRICS}")
    if kept_variance is not None and (metric != "cca" or not 0 < kept_variance <= 1):
        raise ValueError(f"kept_variance must be in (0, 1] and for cca only, got {kept_variance}")
    if debiased and metric != "cka":
        raise ValueError(f"debiased is an option of cka only, not {metric}")


def pair_similarity(
    metric: str,
    fa: np.ndarray,
    fb: np.ndarray,
    kept_variance: float | None = None,
    rcond: float | None = None,
) -> Similarity:
    """``metric`` (:data:`SIMILARITY_METRICS`) of two column blocks of a factor.

    ``rcond``: as in :func:`canonical_correlations` (CCA only).

    Raises
    ------
    ValueError
        For an unknown metric, or ``kept_variance`` outside (0, 1] or given
        to another metric than ``"cca"``.
    """
    check_options(metric, kept_variance)
    if metric == "cca":
        rho = canonical_correlations(fa, fb, kept_variance, rcond)
        return Similarity(float(np.mean(rho**2)) if rho.size else 0.0, rho)
    spectrum = procrustes_spectrum(fa, fb)
    if metric == "cka":
        return Similarity(linear_cka(fa, fb), spectrum)
    return Similarity(float(max(2.0 - 2.0 * np.sum(spectrum), 0.0)), spectrum)


def block_factor(factor: np.ndarray, exponent: np.ndarray | None, columns: slice) -> np.ndarray:
    """One model's columns of a factor, in one power of two (the block's largest).

    The moments hold huge or tiny columns times ``2**-exponent``; bringing a
    block's columns to its largest power is exact and scales the model
    isotropically, which none of the measures sees.
    """
    block = factor[:, columns]
    if exponent is None:
        return block
    powers = exponent[columns]
    return block * np.ldexp(1.0, powers - powers.max())[None, :]


def similarities(
    features: FeatureSet,
    split: Split,
    pairs: Iterable[Pair],
    metric: str,
    method: str = "qr",
    kept_variance: float | None = None,
    scheduler: Scheduler = "threads",
    progress: bool = False,
    device: str | ArrayBackend = "cpu",
    debiased: bool = False,
) -> dict[Pair, Similarity]:
    """``metric`` of every pair on the split's test rows, from one pass over the data.

    Parameters
    ----------
    features : FeatureSet
    split : Split
        Only its test rows enter (centred on their own mean).
    pairs : iterable of (source, target)
        The measures are symmetric: ``(a, b)`` and ``(b, a)`` are computed once.
    metric : {"cka", "cca", "procrustes"}
    method : {"qr", "gram"}
        The scatter's form: an R factor (exact; CCA sees no squared
        condition number) or the Gram matrix (its factor from an
        eigendecomposition).
    kept_variance : float in (0, 1], optional
        SVCCA's share of each model's variance kept (``metric="cca"``).
    scheduler, progress, device
        As in :func:`fredask.measures.global_fit.fit_global`.
    debiased : bool
        ``metric="cka"``: the debiased CKA (one more read of the test rows).

    Returns
    -------
    dict of (source, target) to Similarity
    """
    from fredask.measures.global_fit import subset_statistics

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_options(metric, kept_variance, debiased)
    pairs = list(pairs)
    labels = row_labels(features.n_rows, split, None, False)  # the folds do not matter
    backend = resolve_backend(device, features.arrays, scheduler)
    moments, _ = subset_statistics(features, labels, method, scheduler, backend, progress)
    products = None
    if debiased:
        products = cka_norm_products(features, labels, moments[TEST], scheduler, backend, progress)
    return similarities_of(features, moments[TEST], pairs, metric, method, kept_variance, products)


def cka_norm_products(features, labels, test, scheduler, backend, progress) -> np.ndarray:
    """The debiased CKA's ``sum_i |x_i|^2 |y_i|^2`` of every two models, one more read.

    In the units of :func:`block_factor` (each model in its largest power of
    two), about the test rows' mean.
    """
    from fredask.stats.passes import norm_products

    n_cols = features.n_columns
    factor, centre = np.ones(n_cols), np.asarray(test.mean, dtype=np.float64)
    if test.exponent is not None:
        top = np.empty(n_cols, dtype=np.int64)
        for name in features.names:
            cols = features.columns(name)
            top[cols] = test.exponent[cols].max()
        factor = np.ldexp(1.0, -top)
        centre = centre * np.ldexp(1.0, test.exponent - top)
    return norm_products(features, labels, centre, factor, scheduler, backend.xp, progress)


def similarities_of(
    features: FeatureSet,
    test,
    pairs: Iterable[Pair],
    metric: str,
    method: str = "qr",
    kept_variance: float | None = None,
    products: np.ndarray | None = None,
) -> dict[Pair, Similarity]:
    """:func:`similarities` from the test rows' moments (of a pass already made).

    ``test`` is the :class:`~fredask.stats.moments.Moments` of the test rows
    (on the host), e.g. :attr:`fredask.measures.global_fit.GlobalFit.test_moments`,
    so a GFRE matrix and every similarity share one pass.  ``products``
    (:func:`cka_norm_products`) makes ``"cka"`` the debiased CKA.
    """
    check_options(metric, kept_variance, products is not None)
    factor = factor_about(test, test.mean, method, np)
    rcond = None
    if method == "gram":  # singular values of an eigh factor carry sqrt(eps) errors
        rcond = np.sqrt(max(factor.shape) * np.finfo(np.float64).eps)
    out: dict[Pair, Similarity] = {}
    for source, target in pairs:
        if (target, source) in out:
            out[(source, target)] = out[(target, source)]
            continue
        fa = block_factor(factor, test.exponent, features.columns(source))
        fb = block_factor(factor, test.exponent, features.columns(target))
        found = pair_similarity(metric, fa, fb, kept_variance, rcond)
        if products is not None:
            a, b = features.names.index(source), features.names.index(target)
            value = debiased_cka(fa, fb, products[np.ix_([a, b], [a, b])], test.count)
            found = Similarity(value, found.spectrum)
        out[(source, target)] = found
    return out
