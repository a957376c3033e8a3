"""The orthogonal Procrustes step of the global reconstruction distortion (GFRD)."""

from __future__ import annotations

import numpy as np

from fredask.backend import svd


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
    u, _, vt = svd(cross, np, full_matrices=True)
    difference = np.zeros((p, r))
    difference[:, :q] = weights
    return difference - (u @ vt)[:p]
