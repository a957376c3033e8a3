"""The small dense problem of a PCovR map: the feature-space form from a factor of the scatter.

:func:`solve` takes a factor ``F`` of ``Z^T Z``, ``Z = [X | Y]``
(preprocessed), and returns the projector and everything scikit-matter
derives from it (docs/method.md, section 13).  What it reproduces, step by
step, is scikit-matter 0.4.1's ``PCovR(mixing, n_components).fit(X, Y)
.transform(X)`` in feature space (its choice when n > p):

* ``Yhat`` from its default regressor ``Ridge(alpha=1e-6,
  fit_intercept=False)``, ``W = (X^T X + alpha I)^-1 X^T Y``;
* eigenvalues of ``X^T X`` at or below ``tol = 1e-12`` left out of
  ``(X^T X)^(-1/2)``; eigenvalues of ``C~`` at or below ``tol`` give a zero
  projector column;
* the sign of each eigenvector chosen so that its entry of largest magnitude
  is positive (scikit-learn's ``svd_flip``; the first such entry on ties);
* ``transform`` subtracting the fitted rows' mean.

Here the spectrum of ``X^T X`` comes from the SVD of the scatter's factor (no
squared condition number), and directions whose singular value lies below
``max(rows, p) eps`` of the largest (their rounding noise; its square root on
the Gram path) are dropped as well, where scikit-matter would keep those
above ``tol`` and amplify their noise; eigenvalues of ``C~`` below ``r eps``
of the largest are zero likewise.  Equal eigenvalues of ``C~`` leave the
basis of their eigenspace, and so the projection, undetermined in both.
"""

from __future__ import annotations

import numpy as np

from fredask.backend import svd
from fredask.errors import FredaskError

#: The ridge of scikit-matter's default regressor, ``Ridge(alpha=1e-6, fit_intercept=False)``.
REGULARIZATION = 1e-6
#: scikit-matter's ``PCovR(tol=1e-12)``: eigenvalues at or below it count as zero.
TOL = 1e-12
_EPS = np.finfo(np.float64).eps


class PCovRError(FredaskError, ValueError):
    """A PCovR request that cannot be computed (bad mixing, too many components, ...)."""


def _flip_signs(vectors: np.ndarray) -> np.ndarray:
    """+1 or -1 per column: its entry of largest magnitude (the first on ties) positive."""
    largest = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[largest, np.arange(vectors.shape[1])])
    return np.where(signs == 0, 1.0, signs)


def _squared_norm(factor, count, mean, linear, offset) -> float:
    """``||Z A + 1 c^T||_F^2`` from a factor of ``Z^T Z``, the mean of Z, A and c."""
    cross = 2.0 * count * float((mean @ linear) @ offset)
    return float(np.sum((factor @ linear) ** 2) + cross + count * float(offset @ offset))


def solve(
    factor: np.ndarray,
    n_features: int,
    count: int,
    mean: np.ndarray,
    mixing: float,
    n_components: int,
    regularization: float = REGULARIZATION,
    tol: float = TOL,
    rcond: float | None = None,
) -> dict:
    """PCovR in feature space from a factor ``F`` of ``Z^T Z``, ``Z = [X | Y]`` (preprocessed).

    Parameters
    ----------
    factor : numpy.ndarray, shape (k, p + q)
        ``F^T F = Z^T Z`` about the fit's origin (the data as scikit-matter is given it).
    n_features : int
        ``p``, the columns of ``X``.
    count : int
        The number of rows.
    mean : numpy.ndarray, shape (p + q,)
        The mean of ``Z`` (zero for centred data), which ``transform`` subtracts.
    mixing, n_components, regularization, tol
        As in :func:`pcovr`.
    rcond : float, optional
        Singular values of ``F_X`` below ``rcond`` times the largest are dropped
        (default ``max(k, p) eps``).

    Returns
    -------
    dict
        ``projector``, ``eigenvalues``, ``pty``, ``ptx``, ``pxy``,
        ``regression_weights``, ``loss_x``, ``loss_y`` (see :class:`PCovRMap`).
    """
    fx, fy = factor[:, :n_features], factor[:, n_features:]
    u, s, vt = svd(fx, np)
    if s.size == 0 or not s[0] > 0:
        raise PCovRError("the features are constant over the fitted rows: nothing to map")
    if not np.any(fy):
        raise PCovRError("the target is zero over the fitted rows: nothing to regress")
    rcond = max(fx.shape) * _EPS if rcond is None else rcond
    kept = (s**2 > tol) & (s > rcond * s[0])
    u, s, v = u[:, kept], s[kept], vt[kept].T
    g = u.T @ fy  # V^T X^T Y = s g
    shrunk = (s**2 / (s**2 + regularization))[:, None] * g  # V^T (X^T X)^(-1/2) X^T Yhat
    modified = mixing * np.diag(s**2) + (1.0 - mixing) * (shrunk @ shrunk.T)
    values, q = np.linalg.eigh(modified)
    values, q = np.clip(values[::-1], 0.0, None), q[:, ::-1]
    q = q * _flip_signs(v @ q)
    rank = s.size
    k = min(n_components, rank)
    eigenvalues = np.zeros(n_components)
    eigenvalues[:k] = values[:k]
    q_k = np.zeros((rank, n_components))
    q_k[:, :k] = q[:, :k]
    floor = max(tol, rank * _EPS * values[0])
    good = eigenvalues > floor
    root = np.where(good, np.sqrt(eigenvalues), 0.0)
    inv_root = np.where(good, 1.0 / np.sqrt(np.where(good, eigenvalues, 1.0)), 0.0)
    projector = v @ (q_k / s[:, None]) * root
    ptx = inv_root[:, None] * (q_k.T * s) @ v.T
    pty = inv_root[:, None] * (q_k.T @ g)
    pxy = projector @ pty
    weights = v @ ((s / (s**2 + regularization))[:, None] * g)
    m_x, n_targets = mean[:n_features], factor.shape[1] - n_features
    reconstruction = projector @ ptx
    linear_x = np.vstack([np.eye(n_features) - reconstruction, np.zeros((n_targets, n_features))])
    linear_y = np.vstack([-pxy, np.eye(n_targets)])
    residual_x = _squared_norm(factor, count, mean, linear_x, m_x @ reconstruction)
    residual_y = _squared_norm(factor, count, mean, linear_y, m_x @ pxy)
    return {
        "projector": projector,
        "eigenvalues": eigenvalues,
        "pty": pty,
        "ptx": ptx,
        "pxy": pxy,
        "regression_weights": weights,
        "loss_x": residual_x / float(np.sum(fx**2)),
        "loss_y": residual_y / float(np.sum(fy**2)),
    }
