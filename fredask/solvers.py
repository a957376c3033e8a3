"""Small dense solves on the factors of the row subsets.

Everything here works on factors ``F`` (any matrix with ``F^T F`` equal to the
scatter of the scaled, train-centred rows of a subset, SPEC section 6): the SVD
of the source columns ``F[:, a]`` has the singular values and right vectors of
the data, ``U^T Y = U_F^T F[:, b]``, and the residual sum of squares of any
linear map ``M`` over the concatenated columns is ``||F M||^2``.  The
arithmetic mirrors scikit-matter's ``Ridge2FoldCV._2fold_cv`` and
``OrthogonalRegression`` step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fredask.settings import RidgeSettings


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


def _score(residual: np.ndarray, count: int, scoring: str | None) -> float:
    mse = (residual**2).sum(axis=0) / count
    if scoring == "neg_root_mean_squared_error":
        return -float(np.mean(np.sqrt(mse)))
    return -float(np.mean(mse))


class _FoldModel:
    """SVD of one fold's source columns, as used to predict the other fold."""

    def __init__(self, fold: SubsetFactor, other: SubsetFactor, rcond: float):
        u, s, vt = fold.svd
        self.n_kept = int(np.sum(s > rcond))
        self.s = s
        self.ut_y = (u.T @ fold.target)[: self.n_kept]
        self.other_xv = other.source @ vt[: self.n_kept].T
        self.other = other

    def residual_cutoff(self, n_alpha: int) -> np.ndarray:
        prediction = (self.other_xv[:, :n_alpha] / self.s[:n_alpha]) @ self.ut_y[:n_alpha]
        return self.other.target - prediction

    def residual_tikhonov(self, alpha: float) -> np.ndarray:
        s = self.s[: self.n_kept]
        return self.other.target - (self.other_xv * (s / (s**2 + alpha))) @ self.ut_y


def ridge_2fold(
    fold1: SubsetFactor,
    fold2: SubsetFactor,
    train: SubsetFactor,
    settings: RidgeSettings,
    rcond: float,
) -> RidgeFit:
    """``Ridge2FoldCV.fit`` from subset factors.

    Parameters
    ----------
    fold1, fold2, train : SubsetFactor
        Factors of the two folds and of all train rows (scaled, centred on
        the train mean).
    settings : RidgeSettings
    rcond : float
        Singular values of a fold at or below ``rcond`` are dropped
        (``max(n_train, p) * eps(dtype)`` in scikit-matter).

    Returns
    -------
    RidgeFit
    """
    one_to_two = _FoldModel(fold1, fold2, rcond)
    two_to_one = _FoldModel(fold2, fold1, rcond)
    scaled_alphas = settings.alphas.copy()
    if settings.alpha_type == "relative":
        scaled_alphas *= max(one_to_two.s.max(initial=0.0), two_to_one.s.max(initial=0.0))

    cutoff = settings.regularization_method == "cutoff"
    cache: dict[tuple[int, int], float] = {}

    def cv_value(alpha: float) -> float:
        if not cutoff:
            return 0.5 * (
                _score(one_to_two.residual_tikhonov(alpha), fold2.count, settings.scoring)
                + _score(two_to_one.residual_tikhonov(alpha), fold1.count, settings.scoring)
            )
        kept = tuple(min(m.n_kept, int(np.sum(m.s > alpha))) for m in (one_to_two, two_to_one))
        if kept not in cache:
            cache[kept] = 0.5 * (
                _score(one_to_two.residual_cutoff(kept[0]), fold2.count, settings.scoring)
                + _score(two_to_one.residual_cutoff(kept[1]), fold1.count, settings.scoring)
            )
        return cache[kept]

    cv_values = np.array([cv_value(alpha) for alpha in scaled_alphas])
    best = int(np.argmax(cv_values))
    best_alpha = float(scaled_alphas[best])

    u, s, vt = train.svd
    if cutoff:
        n_alpha = int(np.sum(s > best_alpha))
        weights = (vt[:n_alpha].T / s[:n_alpha]) @ (u[:, :n_alpha].T @ train.target)
    else:
        weights = (vt.T * (s / (s**2 + best_alpha))) @ (u.T @ train.target)
    return RidgeFit(
        weights=weights,
        alpha=float(settings.alphas[best]),
        scaled_alpha=best_alpha,
        cv_values=cv_values,
    )


def procrustes_difference(train_source: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The map ``D`` with ``d_i = x_i D`` for the global reconstruction distortion.

    scikit-matter pads ``X`` and ``X W`` with zero columns to ``r = max(p, q)``,
    solves the orthogonal Procrustes problem ``Q = U V^T`` from the SVD of
    ``X_pad^T (X W)_pad`` and measures ``||(x_i W)_pad - x_pad,i Q||``.  That is
    ``x_i (W_pad - Q[:p])``.  For ``p > q`` (where scikit-matter raises) the
    same padded-space comparison is used; its norm does not depend on the
    arbitrary completion of ``Q`` on the padded directions.
    """
    p, q = weights.shape
    r = max(p, q)
    cross = np.zeros((r, r))
    cross[:p, :q] = train_source.T @ (train_source @ weights)
    u, _, vt = np.linalg.svd(cross)
    difference = np.zeros((p, r))
    difference[:, :q] = weights
    return difference - (u @ vt)[:p]


def rms_of_map(factor: np.ndarray, linear_map: np.ndarray, count: int) -> float:
    """``sqrt(mean_i ||z_i M||^2)`` over a subset, from its factor."""
    return float(np.sqrt(np.sum((factor @ linear_map) ** 2) / count))
