"""Settings of the 2-fold cross-validated ridge, and its scikit-matter twin.

The measures accept scikit-matter's own ``Ridge2FoldCV`` and read its
parameters; :class:`RidgeSettings` is fredask's plain equivalent (no
scikit-matter import needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from fredask.stats.splits import SKMATTER_SEED

SCORINGS = ("neg_root_mean_squared_error", "neg_mean_squared_error")


def _default_alphas() -> np.ndarray:
    return np.geomspace(1e-9, 0.9, 20)


@dataclass(frozen=True)
class RidgeSettings:
    """Parameters of the 2-fold cross-validated ridge (``Ridge2FoldCV``).

    The defaults are those scikit-matter's reconstruction measures use.

    Parameters
    ----------
    alphas : array-like of float
        Regularisation grid.
    alpha_type : {"relative", "absolute"}
        Relative alphas are multiplied by the largest singular value of the two
        folds and must lie in [0, 1).
    regularization_method : {"cutoff", "tikhonov"}
        Truncated SVD or Tikhonov (ridge) regularisation.
    random_state : int, numpy.random.RandomState or None
        Seed of the fold shuffle.
    shuffle : bool
        Shuffle the train rows before cutting them into two folds.
    scoring : {"neg_root_mean_squared_error", "neg_mean_squared_error"} or None
        Cross-validation score (``None`` means mean squared error, as in
        scikit-matter).
    precision : {"input", "float64"}
        Whose machine epsilon sets the fold truncation ``max(n, p) * eps``:
        the input dtype's, as scikit-matter (default), or float64's.  fredask
        always computes in float64; with float32 features, ``"float64"``
        treats them as the exact numbers they are, where ``"input"`` drops
        fold singular values below float32 precision, which in small local
        neighbourhoods can leave noise-level directions in the final fit.
    """

    alphas: np.ndarray = field(default_factory=_default_alphas)
    alpha_type: str = "relative"
    regularization_method: str = "cutoff"
    random_state: int | np.random.RandomState | None = SKMATTER_SEED
    shuffle: bool = True
    scoring: str | None = "neg_root_mean_squared_error"
    precision: str = "input"

    def __post_init__(self):
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        object.__setattr__(self, "alphas", alphas)
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError("alphas must be a non-empty one-dimensional grid")
        if not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
            raise ValueError(f"alphas must be finite and >= 0, got {alphas}")
        if self.regularization_method not in ("cutoff", "tikhonov"):
            raise ValueError(
                f"regularization method {self.regularization_method!r} is not known "
                "(use 'cutoff' or 'tikhonov')"
            )
        if self.alpha_type not in ("relative", "absolute"):
            raise ValueError(f"alpha type {self.alpha_type!r} is not known")
        if self.alpha_type == "relative" and np.any(alphas >= 1):
            raise ValueError(
                "relative alphas must lie in [0, 1); got "
                f"{alphas[alphas >= 1].tolist()} (use 0.9 as the largest relative alpha)"
            )
        if self.scoring is not None and self.scoring not in SCORINGS:
            raise ValueError(f"scoring {self.scoring!r} is not supported; use one of {SCORINGS}")
        if self.precision not in ("input", "float64"):
            raise ValueError(f"precision must be 'input' or 'float64', got {self.precision!r}")
        if not isinstance(self.shuffle, bool):
            raise TypeError(f"shuffle must be True or False; got {self.shuffle!r}")

    @classmethod
    def from_estimator(cls, estimator) -> RidgeSettings:
        """Read the parameters of a scikit-matter ``Ridge2FoldCV`` (or settings)."""
        if estimator is None:
            return cls()
        if isinstance(estimator, cls):
            return estimator
        if type(estimator).__name__ != "Ridge2FoldCV":
            raise TypeError(
                "estimator must be skmatter.linear_model.Ridge2FoldCV or "
                f"fredask.RidgeSettings, got {type(estimator).__name__}"
            )
        if getattr(estimator, "cv", None) is not None:
            raise ValueError("Ridge2FoldCV with a custom cv is not supported; leave cv=None")
        names = [f.name for f in fields(cls) if f.name != "precision"]
        return cls(**{name: getattr(estimator, name) for name in names})

    def eps(self, dtype) -> float:
        """Machine epsilon for the fold truncation of features of ``dtype``."""
        dtype = np.dtype(dtype)
        if self.precision == "float64" or not np.issubdtype(dtype, np.floating):
            dtype = np.dtype(np.float64)
        return float(np.finfo(dtype).eps)
