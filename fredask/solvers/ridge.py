"""The 2-fold cross-validated ridge (``Ridge2FoldCV``) solved on subset factors, batched.

Everything here works on factors ``F`` (any matrix with ``F^T F`` equal to the
scatter of the scaled, train-centred rows of a subset, docs/method.md, section 6): the SVD
of the source columns ``F[:, a]`` has the singular values and right vectors of
the data, ``U^T Y = U_F^T F[:, b]``, and the residual sum of squares of any
linear map ``M`` over the concatenated columns is ``||F M||^2``.  The
arithmetic mirrors scikit-matter's ``Ridge2FoldCV._2fold_cv`` and
``OrthogonalRegression`` step by step.

:func:`ridge_2fold_batched` fits ``B`` independent problems of equal shapes
(the local error's neighbourhoods) with stacked SVDs and products of the array
module ``xp`` (numpy or cupy); :func:`ridge_2fold`, the global engine's
solver, is its ``B = 1`` case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fredask.solvers.settings import RidgeSettings


@dataclass(frozen=True)
class SubsetFactor:
    """Source and target columns of one row subset's factor.

    ``svd`` is the thin SVD ``(U, s, Vt)`` of ``source``; it depends on the
    source model only, so callers compute it once per source and subset.
    """

    source: np.ndarray
    target: np.ndarray
    count: int
    svd: tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RidgeFit:
    """A fitted 2-fold cross-validated ridge map.

    Attributes
    ----------
    weights : numpy.ndarray, shape (p, q)
        ``W`` in the scaled space: ``y_hat = x W``.
    alpha : float
        The chosen grid value (``Ridge2FoldCV.alpha_``).
    scaled_alpha : float
        The threshold (cutoff) or penalty (Tikhonov) actually applied.
    cv_values : numpy.ndarray
        The mean 2-fold score of each grid value.
    """

    weights: np.ndarray
    alpha: float
    scaled_alpha: float
    cv_values: np.ndarray


@dataclass(frozen=True)
class BatchedRidgeFit:
    """``B`` independent 2-fold cross-validated ridge maps (arrays of module ``xp``).

    Attributes
    ----------
    weights : array, shape (B, p, q)
        ``W_b`` of each batch element: ``y_hat = x W_b``.
    alpha : array, shape (B,)
        The chosen grid value of each element (``Ridge2FoldCV.alpha_``).
    scaled_alpha : array, shape (B,)
        The threshold (cutoff) or penalty (Tikhonov) actually applied.
    cv_values : array, shape (B, n_alphas)
        The mean 2-fold score of each grid value (``Ridge2FoldCV.cv_values_``).
    """

    weights: Any
    alpha: Any
    scaled_alpha: Any
    cv_values: Any


#: A stacked thin SVD ``(U, s, Vt)`` with shapes ``(B, n, k)``, ``(B, k)``, ``(B, k, p)``.
BatchedSVD = tuple[Any, Any, Any]


def _transpose(a, xp):
    return xp.swapaxes(a, -1, -2)


def _first_equal(keys, xp):
    """For each ``keys[b, a]`` the first index ``a' <= a`` with the same key."""
    n = keys.shape[-1]
    equal = keys[..., :, None] == keys[..., None, :]
    return xp.where(equal, xp.arange(n)[None, None, :], n).min(axis=-1)


def _scores(residual, count: int, scoring: str | None, xp):
    """Minus the column-averaged (root) mean squared error of ``(m, n, q)`` residuals."""
    mse = (residual**2).sum(axis=-2) / count
    if scoring == "neg_root_mean_squared_error":
        return -xp.mean(xp.sqrt(mse), axis=-1)
    return -xp.mean(mse, axis=-1)


def _fold_losses(
    fold_svd: BatchedSVD,
    fold_target,
    other_source,
    other_target,
    other_count: int,
    scaled_alphas,
    rcond: float,
    cutoff: bool,
    scoring: str | None,
    xp,
):
    """Scores ``(B, n_alphas)`` of the models fitted on one fold, predicting the other.

    The fold's singular values at or below ``rcond`` are dropped with a mask
    (``kept``) instead of slicing; dropped directions get a zero weight, so
    the products equal scikit-matter's sliced ones up to rounding.  In cutoff
    mode the alphas with the same truncation of an element share one
    computation (the first of them), so they tie exactly, as in scikit-matter.
    """
    u, s, vt = fold_svd
    kept = s > rcond
    ut_y = _transpose(u, xp) @ fold_target
    other_xv = other_source @ _transpose(vt, xp)
    batch, n_alphas = scaled_alphas.shape
    losses = xp.zeros((batch, n_alphas), dtype=ut_y.dtype)
    if cutoff:
        # s is sorted in decreasing order: every mask is a prefix
        masks = kept[:, None, :] & (s[:, None, :] > scaled_alphas[:, :, None])
        first = _first_equal(masks.sum(axis=-1), xp)
        for a in range(n_alphas):
            rows = xp.nonzero(first[:, a] == a)[0]
            if rows.size == 0:
                continue
            if rows.size == batch:
                rows = slice(None)
            divisor = xp.where(masks[rows, a], s[rows], xp.inf)
            prediction = (other_xv[rows] / divisor[:, None, :]) @ ut_y[rows]
            losses[rows, a] = _scores(other_target[rows] - prediction, other_count, scoring, xp)
        return xp.take_along_axis(losses, first, axis=1)
    s_kept = xp.where(kept, s, 1.0)
    for a in range(n_alphas):
        factor = xp.where(kept, s_kept / (s_kept**2 + scaled_alphas[:, a, None]), 0.0)
        prediction = (other_xv * factor[:, None, :]) @ ut_y
        losses[:, a] = _scores(other_target - prediction, other_count, scoring, xp)
    return losses


def ridge_2fold_batched(
    x1,
    y1,
    x2,
    y2,
    x_train,
    y_train,
    settings: RidgeSettings,
    rcond: float,
    *,
    count1: int,
    count2: int,
    xp=np,
    svds: tuple[BatchedSVD | None, BatchedSVD | None, BatchedSVD | None] | None = None,
) -> BatchedRidgeFit:
    """``B`` independent ``Ridge2FoldCV.fit`` calls as stacked linear algebra.

    Element ``b`` reproduces scikit-matter's ``Ridge2FoldCV._2fold_cv`` on
    the rows ``x_train[b], y_train[b]`` with folds ``(x1[b], y1[b])`` and
    ``(x2[b], y2[b])``: cutoff or Tikhonov, relative or absolute alphas, both
    scorings; fold singular values at or below ``rcond`` are dropped, the
    final fit on all train rows drops only those at or below the chosen
    cutoff (scikit-matter's ``len(s > rcond)``); the chosen alpha is the first
    maximum of the CV values.  Any array with the Gram matrix of the rows (a
    factor, as the global engine passes) may stand for the rows themselves.

    Parameters
    ----------
    x1, y1 : array, shape (B, n1, p), (B, n1, q)
        Source and target rows (or factor) of fold 1 of every element.
    x2, y2 : array, shape (B, n2, p), (B, n2, q)
        The same for fold 2.
    x_train, y_train : array, shape (B, n, p), (B, n, q)
        All train rows (or a factor) of every element; ``x_train`` may be
        ``None`` when its SVD is given in ``svds``.
    settings : RidgeSettings
    rcond : float
        Singular values of a fold at or below ``rcond`` are dropped
        (``max(n_train, p) * eps(dtype)`` in scikit-matter).
    count1, count2 : int
        Number of data rows of fold 1 and fold 2 (the score denominators;
        for factors not the number of array rows).
    xp : module
        Array module of the inputs (numpy or cupy).
    svds : tuple of three stacked SVDs or None, optional
        Precomputed thin SVDs ``(U, s, Vt)`` of ``x1``, ``x2`` and
        ``x_train`` (each entry may be ``None``: computed here).

    Returns
    -------
    BatchedRidgeFit
    """
    for name, a in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2), ("y_train", y_train)):
        if a.ndim != 3:
            raise ValueError(f"{name} must have shape (B, rows, columns), got {a.shape}")
    svds = svds or (None, None, None)
    svd1, svd2, svd_train = (
        svd if svd is not None else xp.linalg.svd(x, full_matrices=False)
        for svd, x in zip(svds, (x1, x2, x_train), strict=True)
    )
    s1, s2 = svd1[1], svd2[1]
    alphas = xp.asarray(settings.alphas)
    scaled_alphas = xp.broadcast_to(alphas, (s1.shape[0], alphas.size))
    if settings.alpha_type == "relative":
        scaled_alphas = scaled_alphas * xp.maximum(s1.max(axis=-1), s2.max(axis=-1))[:, None]

    cutoff = settings.regularization_method == "cutoff"
    common = {"rcond": rcond, "cutoff": cutoff, "scoring": settings.scoring, "xp": xp}
    loss_1_to_2 = _fold_losses(svd1, y1, x2, y2, count2, scaled_alphas, **common)
    loss_2_to_1 = _fold_losses(svd2, y2, x1, y1, count1, scaled_alphas, **common)
    cv_values = (loss_1_to_2 + loss_2_to_1) / 2
    # equal grid values tie exactly, whatever the batched products do
    grid = np.asarray(settings.alphas)
    cv_values = cv_values[:, xp.asarray((grid[:, None] == grid[None, :]).argmax(axis=1))]

    best = xp.argmax(cv_values, axis=1)
    best_alpha = xp.take_along_axis(scaled_alphas, best[:, None], axis=1)
    u, s, vt = svd_train
    ut_y = _transpose(u, xp) @ y_train
    if cutoff:
        divisor = xp.where(s > best_alpha, s, xp.inf)
        weights = (_transpose(vt, xp) / divisor[:, None, :]) @ ut_y
    else:
        weights = (_transpose(vt, xp) * s[:, None, :] / (s**2 + best_alpha)[:, None, :]) @ ut_y
    return BatchedRidgeFit(
        weights=weights,
        alpha=alphas[best],
        scaled_alpha=best_alpha[:, 0],
        cv_values=cv_values,
    )


def ridge_2fold(
    fold1: SubsetFactor,
    fold2: SubsetFactor,
    train: SubsetFactor,
    settings: RidgeSettings,
    rcond: float,
) -> RidgeFit:
    """``Ridge2FoldCV.fit`` from subset factors (:func:`ridge_2fold_batched`, ``B = 1``).

    Parameters
    ----------
    fold1, fold2, train : SubsetFactor
        Factors of the two folds and of all train rows (scaled, centred on
        the train mean); their SVDs are reused.
    settings : RidgeSettings
    rcond : float
        Singular values of a fold at or below ``rcond`` are dropped
        (``max(n_train, p) * eps(dtype)`` in scikit-matter).

    Returns
    -------
    RidgeFit
    """
    parts = (fold1, fold2, train)
    fit = ridge_2fold_batched(
        *(a[None] for f in parts for a in (f.source, f.target)),
        settings,
        rcond,
        count1=fold1.count,
        count2=fold2.count,
        svds=tuple(tuple(a[None] for a in f.svd) for f in parts),
    )
    return RidgeFit(
        weights=fit.weights[0],
        alpha=float(fit.alpha[0]),
        scaled_alpha=float(fit.scaled_alpha[0]),
        cv_values=fit.cv_values[0],
    )
