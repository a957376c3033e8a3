"""The batched 2-fold ridge against a Python loop of scikit-matter's ``Ridge2FoldCV``.

Every batch element has its own train rows; they are placed with
:func:`fredask.stats.splits.fold_positions` so that scikit-matter's ``KFold`` cuts them
into exactly the fold-1 and fold-2 rows passed to :func:`ridge_2fold_batched`.
Nothing here is compared with fredask's own numbers except the factor and
precomputed-SVD paths (against the row path, itself checked against scikit-matter).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold
from skmatter.linear_model import Ridge2FoldCV

from fredask.solvers.ridge import SubsetFactor, ridge_2fold, ridge_2fold_batched
from fredask.solvers.settings import RidgeSettings
from fredask.stats.splits import SKMATTER_SEED, fold_positions

BATCH = 7
DEFAULT_ALPHAS = np.geomspace(1e-9, 0.9, 20)
#: Relative grid with a zero, a repeated value and values that cut the spectrum.
RELATIVE_ALPHAS = np.array([0.0, 1e-12, 1e-6, 1e-3, 1e-3, 0.02, 0.1, 0.3, 0.6, 0.9])
#: Absolute grid (singular values of the generated rows are O(0.1 .. 10)).
ABSOLUTE_ALPHAS = np.array([0.0, 1e-10, 1e-6, 1e-3, 1e-3, 0.01, 0.1, 0.5, 1.0, 3.0, 10.0])
SCORINGS = ["neg_root_mean_squared_error", "neg_mean_squared_error", None]

#: name: (n_train, p, q, rank of the source rows or None, number of duplicated rows)
CASES = {
    "tall": (40, 6, 5, None, 0),
    "wide": (16, 24, 7, None, 0),
    "rank_deficient": (30, 10, 4, 3, 0),
    "duplicated": (25, 8, 12, None, 10),
}


def _element(rng, n, p, q, rank, n_duplicated):
    """Centred rows of one batch element: correlated targets, spread spectrum."""
    if rank is None:
        x = rng.normal(size=(n, p)) * np.geomspace(0.1, 3.0, p)
    else:
        x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p))
    y = np.tanh(x @ rng.normal(size=(p, q)) / np.sqrt(p)) + 0.1 * rng.normal(size=(n, q))
    if n_duplicated:
        copies = rng.choice(n - n_duplicated, n_duplicated)
        x[n - n_duplicated :], y[n - n_duplicated :] = x[copies], y[copies]
        order = rng.permutation(n)
        x, y = x[order], y[order]
    return x - x.mean(axis=0), y - y.mean(axis=0)


def _batch(case, seed=0):
    """Fold rows ``(x1, y1, x2, y2)`` and train rows ``(x, y)`` of ``BATCH`` elements."""
    n, p, q, rank, n_duplicated = CASES[case]
    rng = np.random.default_rng(seed)
    rows = [_element(rng, n, p, q, rank, n_duplicated) for _ in range(BATCH)]
    fold1, fold2 = fold_positions(n, SKMATTER_SEED, True)
    folds1 = [(x[: fold1.size], y[: fold1.size]) for x, y in rows]
    folds2 = [(x[fold1.size :], y[fold1.size :]) for x, y in rows]
    # place the fold rows at the positions scikit-matter's KFold gives each fold
    x = np.empty((BATCH, n, p))
    y = np.empty((BATCH, n, q))
    x[:, fold1] = [f[0] for f in folds1]
    y[:, fold1] = [f[1] for f in folds1]
    x[:, fold2] = [f[0] for f in folds2]
    y[:, fold2] = [f[1] for f in folds2]
    return (
        np.stack([f[0] for f in folds1]),
        np.stack([f[1] for f in folds1]),
        np.stack([f[0] for f in folds2]),
        np.stack([f[1] for f in folds2]),
        x,
        y,
    )


def _skmatter_loop(x, y, settings):
    fits = []
    for xb, yb in zip(x, y, strict=True):
        fits.append(
            Ridge2FoldCV(
                alphas=settings.alphas,
                alpha_type=settings.alpha_type,
                regularization_method=settings.regularization_method,
                random_state=SKMATTER_SEED,
                shuffle=True,
                scoring=settings.scoring,
                n_jobs=1,
            ).fit(xb, yb)
        )
    return fits


def _rcond(x):
    return max(x.shape[1:]) * np.finfo(x.dtype).eps


def test_batch_folds_are_skmatter_folds():
    n = CASES["tall"][0]
    x1, _, x2, _, x, _ = _batch("tall")
    fold1, fold2 = next(KFold(2, shuffle=True, random_state=SKMATTER_SEED).split(x[0]))
    np.testing.assert_array_equal(x[:, fold1], x1)
    np.testing.assert_array_equal(x[:, fold2], x2)
    assert fold1.size + fold2.size == n


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("scoring", SCORINGS)
@pytest.mark.parametrize("alpha_type", ["relative", "absolute"])
@pytest.mark.parametrize("regularization", ["cutoff", "tikhonov"])
@pytest.mark.parametrize("grid", ["default", "custom"])
def test_batched_equals_skmatter_loop(case, scoring, alpha_type, regularization, grid):
    if grid == "default":
        alphas = DEFAULT_ALPHAS if alpha_type == "relative" else np.geomspace(1e-8, 10.0, 20)
    else:
        alphas = RELATIVE_ALPHAS if alpha_type == "relative" else ABSOLUTE_ALPHAS
    settings = RidgeSettings(
        alphas=alphas,
        alpha_type=alpha_type,
        regularization_method=regularization,
        scoring=scoring,
    )
    x1, y1, x2, y2, x, y = _batch(case, seed=len(case))
    fit = ridge_2fold_batched(
        x1,
        y1,
        x2,
        y2,
        x,
        y,
        settings,
        _rcond(x),
        count1=x1.shape[1],
        count2=x2.shape[1],
    )
    assert fit.weights.shape == (BATCH, x.shape[2], y.shape[2])
    assert fit.alpha.shape == fit.scaled_alpha.shape == (BATCH,)
    assert fit.cv_values.shape == (BATCH, alphas.size)
    for b, reference in enumerate(_skmatter_loop(x, y, settings)):
        want_cv = np.asarray(reference.cv_values_)
        np.testing.assert_allclose(fit.cv_values[b], want_cv, rtol=1e-9, atol=0)
        # alphas with the same truncation tie exactly in scikit-matter, and here
        ties = want_cv[:, None] == want_cv[None, :]
        assert np.array_equal(ties, fit.cv_values[b][:, None] == fit.cv_values[b][None, :])
        assert fit.alpha[b] == reference.alpha_
        coef = reference.coef_.T
        np.testing.assert_allclose(fit.weights[b], coef, rtol=1e-9, atol=1e-12 * np.abs(coef).max())


def test_ties_choose_the_smallest_alpha():
    """Well-conditioned rows: the small relative alphas all keep every direction."""
    settings = RidgeSettings()
    x1, y1, x2, y2, x, y = _batch("tall")
    fit = ridge_2fold_batched(
        x1, y1, x2, y2, x, y, settings, _rcond(x), count1=x1.shape[1], count2=x2.shape[1]
    )
    assert np.all(fit.cv_values[:, 0] == fit.cv_values[:, 1])
    for b, reference in enumerate(_skmatter_loop(x, y, settings)):
        assert fit.alpha[b] == reference.alpha_


@pytest.mark.parametrize("regularization", ["cutoff", "tikhonov"])
def test_factors_and_precomputed_svds(regularization):
    """R factors stand for the rows (explicit counts); a given SVD is used as is."""
    settings = RidgeSettings(regularization_method=regularization)
    x1, y1, x2, y2, x, y = _batch("wide", seed=3)
    rcond = _rcond(x)
    counts = {"count1": x1.shape[1], "count2": x2.shape[1]}
    rows = ridge_2fold_batched(x1, y1, x2, y2, x, y, settings, rcond, **counts)

    def factor(a, b):
        r = np.linalg.qr(np.concatenate([a, b], axis=2), mode="r")
        return r[:, :, : a.shape[2]], r[:, :, a.shape[2] :]

    factors = (*factor(x1, y1), *factor(x2, y2), *factor(x, y))
    from_factors = ridge_2fold_batched(*factors, settings, rcond, **counts)
    np.testing.assert_allclose(from_factors.cv_values, rows.cv_values, rtol=1e-9)
    np.testing.assert_array_equal(from_factors.alpha, rows.alpha)
    np.testing.assert_allclose(from_factors.weights, rows.weights, rtol=1e-8, atol=1e-12)

    svds = tuple(np.linalg.svd(a, full_matrices=False) for a in (x1, x2, x))
    given = ridge_2fold_batched(x1, y1, x2, y2, None, y, settings, rcond, svds=svds, **counts)
    np.testing.assert_array_equal(given.weights, rows.weights)
    np.testing.assert_array_equal(given.cv_values, rows.cv_values)


def test_single_fit_wrapper_is_the_batched_solver():
    """``ridge_2fold`` (the global engine's solver) is element 0 of the batch."""
    settings = RidgeSettings()
    x1, y1, x2, y2, x, y = _batch("rank_deficient", seed=5)
    rcond = _rcond(x)
    batched = ridge_2fold_batched(
        x1, y1, x2, y2, x, y, settings, rcond, count1=x1.shape[1], count2=x2.shape[1]
    )
    for b in range(BATCH):
        parts = [
            SubsetFactor(s, t, s.shape[0], np.linalg.svd(s, full_matrices=False))
            for s, t in ((x1[b], y1[b]), (x2[b], y2[b]), (x[b], y[b]))
        ]
        single = ridge_2fold(*parts, settings, rcond)
        np.testing.assert_allclose(single.weights, batched.weights[b], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(single.cv_values, batched.cv_values[b], rtol=1e-13)
        assert single.alpha == batched.alpha[b]
        assert single.scaled_alpha == batched.scaled_alpha[b]


def test_shapes_are_checked():
    x1, y1, x2, y2, x, y = _batch("tall")
    with pytest.raises(ValueError, match="shape"):
        ridge_2fold_batched(x1[0], y1, x2, y2, x, y, RidgeSettings(), 1e-14, count1=20, count2=20)


@pytest.mark.parametrize("regularization", ["cutoff", "tikhonov"])
def test_predictions_are_the_weights_applied(regularization):
    """``x_predict`` gives ``x_predict W`` without forming ``W``."""
    settings = RidgeSettings(regularization_method=regularization)
    x1, y1, x2, y2, x, y = _batch("rank_deficient", seed=7)
    counts = {"count1": x1.shape[1], "count2": x2.shape[1]}
    new = np.random.default_rng(8).normal(size=(BATCH, 3, x.shape[2]))
    mapped = ridge_2fold_batched(x1, y1, x2, y2, x, y, settings, _rcond(x), **counts)
    predicted = ridge_2fold_batched(
        x1, y1, x2, y2, x, y, settings, _rcond(x), x_predict=new, **counts
    )
    assert predicted.weights is None and mapped.predictions is None
    np.testing.assert_allclose(predicted.predictions, new @ mapped.weights, rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(predicted.cv_values, mapped.cv_values)


def test_targets_of_one_source_are_fitted_as_alone():
    """Lists of targets share the source's work and get exactly their own fits."""
    settings = RidgeSettings()
    x1, y1, x2, y2, x, y = _batch("wide", seed=9)
    counts = {"count1": x1.shape[1], "count2": x2.shape[1]}
    other = [a[:, :, ::-1] * 3.0 for a in (y1, y2, y)]
    fits = ridge_2fold_batched(
        x1, [y1, other[0]], x2, [y2, other[1]], x, [y, other[2]], settings, _rcond(x), **counts
    )
    for fit, targets in zip(fits, ((y1, y2, y), other), strict=True):
        alone = ridge_2fold_batched(
            x1, targets[0], x2, targets[1], x, targets[2], settings, _rcond(x), **counts
        )
        np.testing.assert_array_equal(fit.weights, alone.weights)
        np.testing.assert_array_equal(fit.cv_values, alone.cv_values)
