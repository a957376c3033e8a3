"""Principal covariates regression (PCovR) maps, from one pass over the rows.

PCovR (de Jong and Kiers 1992; scikit-matter's ``PCovR``) projects features
``X`` (n x p) on the directions that mix the variance of ``X`` with that of
the linear prediction ``Yhat`` of a target ``Y`` (n x q): the eigenvectors of
the modified covariance (docs/method.md, section 13)::

    C~ = a X^T X + (1 - a) (X^T X)^(-1/2) X^T Yhat Yhat^T X (X^T X)^(-1/2)

with mixing ``a``.  This is the feature-space form: every term is a product of
blocks of the scatter of ``Z = [X | Y]``, so one chunked pass over the rows
(:func:`fredask.stats.passes.statistics_graph`, with every fitted row a "test"
row) gives all of it, at any number of rows; a second, cheap pass maps every
row through the ``p x k`` projector.

The small dense problem and what of scikit-matter it reproduces, step by step,
are in :mod:`fredask.maps.solve`.

Scaling (``scaling=``): ``"standard"`` (default) centres ``X`` and divides it
by one scalar, the square root of its total variance (scikit-matter's
``StandardFlexibleScaler(column_wise=False)``), and centres every target
column and divides it by its standard deviation (``column_wise=True``), as
scikit-matter's PCovR documentation recommends; ``"centre"`` only centres
both; ``"none"`` fits on the data as given (scikit-matter's fit does not
centre; its ``transform`` still subtracts the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from fredask.backend import ArrayBackend, resolve_backend, to_device, to_host
from fredask.cluster.clients import compute, resolve_client
from fredask.maps.solve import REGULARIZATION, TOL, PCovRError, solve
from fredask.stats.features import FeatureSet, as_feature_set, is_zarr_array, zarr_rows
from fredask.stats.moments import (
    METHODS,
    Moments,
    column_sum_squares,
    factor_about,
    moments_to_host,
)
from fredask.stats.passes import statistics_graph
from fredask.stats.scaler import ScalerSettings, fit_scaler
from fredask.stats.splits import TEST, UNUSED

#: How the features and the target are preprocessed (see the module docstring).
SCALINGS = ("standard", "centre", "none")
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class PCovRMap:
    """A fitted PCovR map and the projection of every row.

    Attributes
    ----------
    projection : numpy.ndarray, shape (n_rows, n_components)
        Every row's coordinates (``transform``); NaN for rows with NaN features.
    projector : numpy.ndarray, shape (p, n_components)
        scikit-matter's ``pxt_``: from the preprocessed features to the map.
    eigenvalues : numpy.ndarray, shape (n_components,)
        The leading eigenvalues of the modified covariance ``C~``.
    mixing : float
    centre, scale : numpy.ndarray, shape (p,)
        The preprocessing of the features: ``projection = (x - centre) / scale
        @ projector`` (``centre`` is the fitted rows' mean, ``scale`` ones
        unless ``scaling="standard"``).
    target_centre, target_scale : numpy.ndarray, shape (q,)
        The target's preprocessing: the fit regresses ``(y - target_centre) /
        target_scale`` (zeros and ones for ``"none"``).
    pty, ptx, pxy : numpy.ndarray
        scikit-matter's ``pty_`` (k, q), ``ptx_`` (k, p) and ``pxy_`` (p, q),
        in preprocessed units.
    regression_weights : numpy.ndarray, shape (p, q)
        The ridge's ``W`` (``regressor_.coef_.T``) on the kept directions.
    loss_x, loss_y : float
        scikit-matter's two terms of ``score`` on the fitted rows:
        ``||X - T P_TX||^2 / ||X||^2`` and ``||Y - T P_TY||^2 / ||Y||^2``.
    n_fitted : int
        The number of rows the map was fitted on.
    scaling, method : str
    """

    projection: np.ndarray
    projector: np.ndarray
    eigenvalues: np.ndarray
    mixing: float
    centre: np.ndarray
    scale: np.ndarray
    target_centre: np.ndarray
    target_scale: np.ndarray
    pty: np.ndarray
    ptx: np.ndarray
    pxy: np.ndarray
    regression_weights: np.ndarray
    loss_x: float
    loss_y: float
    n_fitted: int
    scaling: str = "standard"
    method: str = "qr"

    @property
    def n_components(self) -> int:
        """The number of map coordinates."""
        return int(self.projector.shape[1])

    @property
    def singular_values(self) -> np.ndarray:
        """scikit-matter's ``singular_values_``: the square roots of the eigenvalues."""
        return np.sqrt(self.eigenvalues)

    @property
    def explained_variance(self) -> np.ndarray:
        """scikit-matter's ``explained_variance_``: eigenvalues over ``n_fitted - 1``."""
        return self.eigenvalues / (self.n_fitted - 1)

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """scikit-matter's ``explained_variance_ratio_`` (shares of the kept components' sum)."""
        total = self.eigenvalues.sum()
        return self.eigenvalues / total if total > 0 else np.zeros_like(self.eigenvalues)

    @property
    def score(self) -> float:
        """scikit-matter's ``score(X, Y)`` on the fitted rows: ``-(loss_x + loss_y)``."""
        return -(self.loss_x + self.loss_y)

    def transform(self, x) -> np.ndarray:
        """The map coordinates of new rows ``x`` (n, p), in the fitted preprocessing."""
        z = (np.asarray(x, dtype=np.float64) - self.centre) / self.scale
        return z @ self.projector


def check_request(mixing: float, n_components: int, scaling: str, method: str) -> None:
    """Refuse a mixing outside [0, 1], a non-positive ``n_components``, unknown options."""
    if not (isinstance(mixing, int | float | np.floating) and 0.0 <= float(mixing) <= 1.0):
        raise PCovRError(f"mixing must lie in [0, 1], got {mixing!r}")
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise PCovRError(f"n_components must be a positive integer, got {n_components!r}")
    if n_components < 1:
        raise PCovRError(f"n_components must be a positive integer, got {n_components}")
    if scaling not in SCALINGS:
        raise PCovRError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if method not in METHODS:
        raise PCovRError(f"method must be one of {METHODS}, got {method!r}")


def _as_chunked(value):
    """Zarr as Dask (through the checked chunk reader); anything else as it is."""
    return zarr_rows(value) if is_zarr_array(value) else value


def aligned_inputs(features, target, model: str | None, names: tuple[str, str]) -> FeatureSet:
    """``[X | Y]`` as one FeatureSet: the features (one model) and the 2-D target, same rows."""
    if isinstance(features, FeatureSet):
        if model is None and len(features.names) != 1:
            raise PCovRError(f"name the model to map (model=); the features hold {features.names}")
        model = features.names[0] if model is None else model
        if model not in features.names:
            raise PCovRError(f"no features named {model!r}; have {list(features.names)}")
        features = features.arrays[features.names.index(model)]
    x_name, y_name = names
    if y_name == x_name:
        y_name = f"{y_name} (target)"
    x = as_feature_set({x_name: features}).arrays[0]
    y = _as_chunked(target)
    if not isinstance(y, da.Array):
        y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if isinstance(y, da.Array) and y.ndim == 2 and y.shape[0] == x.shape[0]:
        y = y.rechunk({0: x.chunks[0], 1: -1})
    return as_feature_set({x_name: x, y_name: y})


def _preprocessed_factor(moments: Moments, inputs: FeatureSet, scaling: str, method: str):
    """The factor of the preprocessed ``[X | Y]`` about the fit's origin, the preprocessed
    data's mean, and the preprocessing's centre and scale of every column (data units)."""
    p = inputs.widths[0]
    n_cols = inputs.n_columns
    power = moments.exponent
    if power is not None and scaling != "standard":
        raise PCovRError(
            f"features {inputs.names[0]!r} or the target reach magnitudes beyond 2**256, whose "
            f"squares leave float64's range; use scaling='standard' (not {scaling!r})"
        )
    variance = column_sum_squares(moments, method, np) / moments.count
    constant = np.sqrt(variance[p:]) <= 16 * _EPS * np.abs(moments.mean[p:])  # rounding only
    target = inputs.names[1]
    if scaling == "standard" and constant.any():
        column = f"column {int(np.flatnonzero(constant)[0])} of " if constant.size > 1 else ""
        raise PCovRError(
            f"{column}the target {target!r} is constant over the fitted rows: it cannot be "
            "scaled to unit variance"
        )
    if scaling == "centre" and constant.all():
        raise PCovRError(f"the target {target!r} is constant over the fitted rows: nothing to fit")
    zero = np.zeros(n_cols)
    if scaling == "none":
        return factor_about(moments, zero, method, np), moments.mean, zero, np.ones(n_cols)
    if scaling == "centre":
        factor = factor_about(moments, moments.mean, method, np)
        return factor, zero, moments.mean, np.ones(n_cols)
    features = FeatureSet(inputs.names[:1], inputs.arrays[:1], inputs.dtypes[:1])
    centre, scale = fit_scaler(moments, features, ScalerSettings(), method)  # X: total variance
    power = np.zeros(n_cols, dtype=np.int64) if power is None else power
    scale[p:] = np.ldexp(np.sqrt(variance[p:]), power[p:])  # Y: column by column
    centre_units, scale_units = np.ldexp(centre, -power), np.ldexp(scale, -power)
    factor = factor_about(moments, centre_units, method, np) / scale_units
    return factor, zero, centre, scale


def _project_kernel(block, centre, projector, xp):
    z = xp.astype(to_device(block, xp), xp.float64) - to_device(centre, xp)
    return to_host(z @ to_device(projector, xp))


def pcovr(
    features,
    target,
    mixing: float = 0.5,
    n_components: int = 2,
    *,
    rows=None,
    model: str | None = None,
    names: tuple[str, str] = ("features", "target"),
    scaling: str = "standard",
    method: str = "qr",
    regularization: float = REGULARIZATION,
    tol: float = TOL,
    client=None,
    progress: bool = False,
    device: str | ArrayBackend = "cpu",
) -> PCovRMap:
    """The PCovR map of ``features`` against ``target``: one statistics pass, one projection pass.

    Parameters
    ----------
    features : array-like (n, p) or FeatureSet
        numpy, Dask, Zarr (a store's ``features/<name>``) or xarray; or a
        :class:`~fredask.stats.features.FeatureSet` (``model`` names which of its models).
    target : array-like, shape (n,) or (n, q)
        The property of every row (numpy, Dask or Zarr).
    mixing : float in [0, 1]
        1: PCA of the features; 0: the directions of the ridge prediction only.
    n_components : int
        Map coordinates, at most ``min(fitted rows, p)``.
    rows : array of int, optional
        The rows the map is fitted on (default: all); every row is projected.
    model : str, optional
        The model of a FeatureSet (needed when it holds several).
    names : (str, str)
        How messages name the features and the target.
    scaling : {"standard", "centre", "none"}
        The preprocessing (module docstring).
    method : {"qr", "gram"}
        The scatter's form in the pass: an R factor (exact) or the Gram matrix.
    regularization : float
        The ridge ``alpha`` of ``Yhat`` (scikit-matter's default 1e-6, on the
        preprocessed data).
    tol : float
        scikit-matter's ``tol``.
    client : distributed.Client, "threads" or "sync", optional
        Default: the active client, else the embedded LocalCluster.
    progress : bool
        Progress bars for the two passes.
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        Where the chunk kernels run (:func:`fredask.backend.resolve_backend`).

    Returns
    -------
    PCovRMap

    Raises
    ------
    PCovRError
        A mixing outside [0, 1], too many components, a constant target or
        features; :class:`~fredask.stats.features.FeatureInputError` for rows
        that do not line up; NaN in a fitted row names the row.
    """
    check_request(mixing, n_components, scaling, method)
    inputs = aligned_inputs(features, target, model, names)
    n_rows, p = inputs.n_rows, inputs.widths[0]
    labels = np.full(n_rows, TEST, dtype=np.int8)
    if rows is not None:
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise PCovRError("rows must be a 1-D array of row indices")
        if rows.size and (rows.min() < -n_rows or rows.max() >= n_rows):
            raise PCovRError(f"rows must lie in 0..{n_rows - 1}")
        labels[:] = UNUSED
        labels[rows] = TEST
    n_fitted = int(np.count_nonzero(labels == TEST))
    if n_fitted < 2:
        raise PCovRError(f"PCovR needs at least 2 fitted rows, got {n_fitted}")
    if n_components > min(n_fitted, p):
        raise PCovRError(
            f"n_components {n_components}: at most min(rows, features) = "
            f"min({n_fitted}, {p}) = {min(n_fitted, p)}"
        )
    scheduler = resolve_client(client)
    backend = resolve_backend(device, inputs.arrays, scheduler)
    graph = statistics_graph(inputs, labels, method, backend.xp)
    moments = moments_to_host(compute(graph, scheduler, progress)[TEST])
    factor, mean, centre, scale = _preprocessed_factor(moments, inputs, scaling, method)
    rcond = None
    if method == "gram":  # singular values of an eigh factor carry sqrt(eps) errors
        rcond = np.sqrt(max(factor.shape) * _EPS)
    fit = solve(
        factor, p, n_fitted, mean, float(mixing), int(n_components), regularization, tol, rcond
    )
    offset = centre[:p] + scale[:p] * mean[:p]  # the fitted rows' mean, which transform removes
    x = inputs.arrays[0]
    projected = x.map_blocks(
        _project_kernel,
        centre=offset,
        projector=fit["projector"] / scale[:p, None],
        xp=backend.xp,
        dtype=np.float64,
        chunks=(x.chunks[0], (int(n_components),)),
        meta=np.empty((0, 0), dtype=np.float64),
    )
    return PCovRMap(
        projection=np.asarray(compute(projected, scheduler, progress)),
        mixing=float(mixing),
        centre=offset,
        scale=scale[:p],
        target_centre=centre[p:],
        target_scale=scale[p:],
        n_fitted=n_fitted,
        scaling=scaling,
        method=method,
        **fit,
    )
