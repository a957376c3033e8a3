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

from fredask.backend import svd
from fredask.solvers.settings import RidgeSettings


@dataclass(frozen=True)
class SubsetFactor:
    """Source and target columns of one row subset's factor.

    ``svd`` is the thin SVD ``(U, s, Vt)`` of ``source``; it depends on the
    source model only, so callers compute it once per source and subset.
    ``target`` may be a list of targets fitted from the same source (their
    fits then share the source's fold projections).
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
    weights : array of shape (B, p, q), or None
        ``W_b`` of each batch element: ``y_hat = x W_b`` (``None`` where
        predictions were asked for instead).
    predictions : array of shape (B, m, q), or None
        ``x_predict[b] W_b``, where ``x_predict`` was given.
    alpha : array, shape (B,)
        The chosen grid value of each element (``Ridge2FoldCV.alpha_``).
    scaled_alpha : array, shape (B,)
        The threshold (cutoff) or penalty (Tikhonov) actually applied.
    cv_values : array, shape (B, n_alphas)
        The mean 2-fold score of each grid value (``Ridge2FoldCV.cv_values_``).
    """

    weights: Any
    predictions: Any
    alpha: Any
    scaled_alpha: Any
    cv_values: Any


#: A stacked thin SVD ``(U, s, Vt)`` with shapes ``(B, n, k)``, ``(B, k)``, ``(B, k, p)``.
BatchedSVD = tuple[Any, Any, Any]


def _transpose(a, xp):
    return xp.swapaxes(a, -1, -2)


def _scores(residual, count: int, scoring: str | None, xp):
    """Minus the column-averaged (root) mean squared error of ``(m, n, q)`` residuals."""
    mse = xp.sum(residual**2, axis=-2) / count
    if scoring == "neg_root_mean_squared_error":
        return -xp.mean(xp.sqrt(mse), axis=-1)
    return -xp.mean(mse, axis=-1)


@dataclass(frozen=True)
class _FoldSide:
    """What the models fitted on one fold need of the source, whatever the target.

    ``u``: the fold's left vectors; ``other_xv``: the other fold's rows in the
    fold's right-vector basis, divided by the kept singular values (dropped
    directions divided by infinity, so weighted zero) in cutoff mode, or not
    divided (Tikhonov, with ``s`` and ``kept`` kept for the shrink factors);
    ``stops``: the number of directions each alpha keeps (cutoff mode).
    """

    u: Any
    s: Any
    kept: Any
    other_xv: Any
    stops: Any


def _fold_side(fold_svd: BatchedSVD, other_source, scaled_alphas, rcond: float, cutoff: bool, xp):
    u, s, vt = fold_svd
    kept = s > rcond
    other_xv = other_source @ _transpose(vt, xp)
    if not cutoff:
        return _FoldSide(u, s, kept, other_xv, None)
    # kept directions per alpha: a prefix (s is sorted), non-increasing as alpha grows
    stops = xp.sum(kept[:, None, :] & (s[:, None, :] > scaled_alphas[:, :, None]), axis=-1)
    return _FoldSide(u, s, kept, other_xv / xp.where(kept, s, xp.inf)[:, None, :], stops)


def _fold_losses(
    side: _FoldSide,
    fold_target,
    other_target,
    other_count: int,
    scaled_alphas,
    descending: list[int],
    scoring: str | None,
    xp,
):
    """Scores ``(B, n_alphas)`` of the models fitted on one fold, predicting the other.

    ``descending`` lists the alpha indices from the largest alpha to the
    smallest.  In cutoff mode every alpha keeps a prefix of the fold's
    singular directions, so the predictions are built up once, from the
    largest alpha (fewest directions) to the smallest: each alpha adds only
    the directions it keeps beyond the previous one, as one stacked product
    of the widest such segment of the batch.  That is about one
    ``n_other x r x q`` product for all alphas instead of one per alpha
    (segments summed to 1.15 r at the paper's atom-level shapes), and the
    alphas with the same truncation of an element see the same prediction,
    so they tie exactly, as in scikit-matter.
    """
    ut_y = _transpose(side.u, xp) @ fold_target
    batch, n_alphas = scaled_alphas.shape
    losses = xp.zeros((batch, n_alphas), dtype=ut_y.dtype)
    if side.stops is None:
        s_kept = xp.where(side.kept, side.s, 1.0)
        for a in range(n_alphas):
            factor = xp.where(side.kept, s_kept / (s_kept**2 + scaled_alphas[:, a, None]), 0.0)
            prediction = (side.other_xv * factor[:, None, :]) @ ut_y
            losses[:, a] = _scores(other_target - prediction, other_count, scoring, xp)
        return losses
    prediction = xp.zeros_like(other_target, dtype=ut_y.dtype)
    start = xp.zeros(batch, dtype=side.stops.dtype)
    last = None
    for a in descending:
        stop = side.stops[:, a]
        width = int(xp.max(stop - start))
        if width > 0 and batch == 1:  # one element: views, not gathered copies
            begin, end = int(start[0]), int(stop[0])
            prediction = prediction + side.other_xv[:, :, begin:end] @ ut_y[:, begin:end]
            last = None
        elif width > 0:
            index = start[:, None] + xp.arange(width)[None, :]
            inside = index < stop[:, None]
            index = xp.minimum(index, side.s.shape[-1] - 1)
            segment_xv = xp.take_along_axis(side.other_xv, index[:, None, :], axis=2)
            segment_y = xp.take_along_axis(ut_y, index[:, :, None], axis=1)
            prediction = prediction + (segment_xv * inside[:, None, :]) @ segment_y
            last = None
        if last is None:
            last = _scores(other_target - prediction, other_count, scoring, xp)
        losses[:, a] = last
        start = stop
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
    x_predict=None,
) -> BatchedRidgeFit | list[BatchedRidgeFit]:
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
        ``y1``, ``y2`` and ``y_train`` may also be equal-length lists of
        targets fitted from the same source: the source's SVDs and
        projections are then computed once for all of them.
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
    x_predict : array, shape (B, m, p), optional
        Rows to predict with each element's final map.  Given, the result
        holds the predictions ``x_predict[b] W_b`` instead of ``W_b``, computed
        as ``((x_predict V) / s) (U^T y)`` without forming the ``p x q`` map
        (``m (p + q) k`` multiplications instead of ``p k q``).

    Returns
    -------
    BatchedRidgeFit, or a list of them for lists of targets
    """
    several = isinstance(y_train, list | tuple)
    targets = list(zip(y1, y2, y_train, strict=True)) if several else [(y1, y2, y_train)]
    named = [("x1", x1), ("x2", x2)] + [
        (name, a) for t in targets for name, a in zip(("y1", "y2", "y_train"), t, strict=True)
    ]
    for name, a in named:
        if a.ndim != 3:
            raise ValueError(f"{name} must have shape (B, rows, columns), got {a.shape}")
    svds = svds or (None, None, None)
    svd1, svd2, svd_train = (
        given if given is not None else svd(x, xp)
        for given, x in zip(svds, (x1, x2, x_train), strict=True)
    )
    s1, s2 = svd1[1], svd2[1]
    alphas = xp.asarray(settings.alphas)
    scaled_alphas = xp.broadcast_to(alphas, (s1.shape[0], alphas.shape[0]))
    if settings.alpha_type == "relative":
        largest = xp.maximum(xp.max(s1, axis=-1), xp.max(s2, axis=-1))
        scaled_alphas = scaled_alphas * largest[:, None]

    cutoff = settings.regularization_method == "cutoff"
    side1 = _fold_side(svd1, x2, scaled_alphas, rcond, cutoff, xp)
    side2 = _fold_side(svd2, x1, scaled_alphas, rcond, cutoff, xp)
    grid = np.asarray(settings.alphas)
    common = {
        "scaled_alphas": scaled_alphas,
        "descending": np.argsort(-grid, kind="stable").tolist(),
        "scoring": settings.scoring,
        "xp": xp,
    }
    # equal grid values tie exactly, whatever the batched products do
    first_equal = xp.asarray((grid[:, None] == grid[None, :]).argmax(axis=1))
    u, s, vt = svd_train
    basis = _transpose(vt, xp) if x_predict is None else x_predict @ _transpose(vt, xp)
    fits = []
    for t1, t2, t_train in targets:
        loss_1_to_2 = _fold_losses(side1, t1, t2, count2, **common)
        loss_2_to_1 = _fold_losses(side2, t2, t1, count1, **common)
        cv_values = ((loss_1_to_2 + loss_2_to_1) / 2)[:, first_equal]
        best = xp.argmax(cv_values, axis=1)
        best_alpha = xp.take_along_axis(scaled_alphas, best[:, None], axis=1)
        if cutoff:
            shrunk = basis / xp.where(s > best_alpha, s, xp.inf)[:, None, :]
        else:
            shrunk = basis * (s / (s**2 + best_alpha))[:, None, :]
        mapped = shrunk @ (_transpose(u, xp) @ t_train)
        fits.append(
            BatchedRidgeFit(
                weights=mapped if x_predict is None else None,
                predictions=None if x_predict is None else mapped,
                alpha=alphas[best],
                scaled_alpha=best_alpha[:, 0],
                cv_values=cv_values,
            )
        )
    return fits if several else fits[0]


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
    RidgeFit, or a list of them where the targets are lists
    """
    parts = (fold1, fold2, train)
    several = isinstance(train.target, list | tuple)

    def stacked(target):
        return [t[None] for t in target] if several else target[None]

    fits = ridge_2fold_batched(
        *(a for f in parts for a in (f.source[None], stacked(f.target))),
        settings,
        rcond,
        count1=fold1.count,
        count2=fold2.count,
        svds=tuple(tuple(a[None] for a in f.svd) for f in parts),
    )
    fits = [
        RidgeFit(
            weights=fit.weights[0],
            alpha=float(fit.alpha[0]),
            scaled_alpha=float(fit.scaled_alpha[0]),
            cv_values=fit.cv_values[0],
        )
        for fit in (fits if several else [fits])
    ]
    return fits if several else fits[0]
