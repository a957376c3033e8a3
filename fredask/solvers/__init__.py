"""Small dense solves on the statistics of a pass: the 2-fold ridge and orthogonal Procrustes."""

from fredask.solvers.settings import RidgeSettings

__all__ = ["RidgeSettings"]
