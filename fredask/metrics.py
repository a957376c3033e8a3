"""Drop-ins for scikit-matter's reconstruction measures (global and local).

Same names, argument names, defaults and results as ``skmatter.metrics``
(including the order of ``train_idx``/``test_idx``, which differs between
``pointwise_global_reconstruction_error`` and the others), for numpy, Dask or
Zarr arrays.  The extra keyword-only arguments choose the statistics
(``method="qr"``, exact, or ``"gram"``, fast) and the Dask scheduler.

Differences from scikit-matter, by design:

* the distortion also works for ``p > q`` (scikit-matter raises a broadcast
  error): the comparison is made in the zero-padded space, see
  :func:`fredask.solvers.procrustes_difference`;
* repeated rows in ``train_idx`` or ``test_idx``, overlapping train and test
  rows, NaN or infinite features and constant features are errors;
* computation is in float64 whatever the input dtype; the truncation
  threshold uses the input dtype's epsilon as scikit-matter does: with the
  default ``estimator`` (``RidgeSettings()``, ``precision="input"``) float32
  features follow scikit-matter's float32 rule, fold singular values below
  ``max(n, p) * eps(float32)`` dropped.  Pass
  ``estimator=RidgeSettings(precision="float64")`` for the float64-exact fit
  (the default of :func:`fredask.compare.reconstruction_matrix`; on real
  float32 features the two can differ by orders of magnitude in the LFRE,
  docs/method.md, section 5.4);
* features of huge magnitude (squares beyond float64) are rescaled by an
  exact power of two before squaring, which leaves every error unchanged;
* ``n_local_points`` must be a whole number >= 2 (scikit-matter raises a
  ``TypeError`` for 5.5; fredask refuses 5.5, ``True`` and ``"5"`` alike).
"""

from __future__ import annotations

import numpy as np

from fredask.backend import ArrayBackend
from fredask.cluster.clients import resolve_client
from fredask.measures.global_fit import GlobalFit, fit_global
from fredask.measures.local_fit import check_local_points, local_errors
from fredask.solvers.settings import RidgeSettings
from fredask.stats.features import as_feature_set
from fredask.stats.scaler import ScalerSettings
from fredask.stats.splits import resolve_split

PAIR = ("X", "Y")


def _fit(
    X, Y, train_idx, test_idx, scaler, estimator, method, client, distortion, device
) -> GlobalFit:
    ridge = RidgeSettings.from_estimator(estimator)
    scaler = ScalerSettings.from_scaler(scaler)
    features = as_feature_set({"X": X, "Y": Y})
    split = resolve_split(features.n_rows, train_idx=train_idx, test_idx=test_idx)
    return fit_global(
        features,
        split,
        [PAIR],
        ridge=ridge,
        scaler=scaler,
        method=method,
        distortion=distortion,
        scheduler=resolve_client(client, embedded=False),
        device=device,
    )


def pointwise_global_reconstruction_error(
    X,
    Y,
    train_idx=None,
    test_idx=None,
    scaler=None,
    estimator=None,
    *,
    method: str = "qr",
    client=None,
    device: str | ArrayBackend = "cpu",
) -> np.ndarray:
    """Per test row error ``||y_i - x_i W||`` of the best linear map ``W``.

    Parameters
    ----------
    X : array-like of shape (n_samples, p)
        Source features (numpy, Dask, Zarr or xarray).
    Y : array-like of shape (n_samples, q)
        Target features, rows matching ``X``.
    train_idx, test_idx : array-like of int, optional
        Train and test rows; scikit-matter's defaults when omitted.
    scaler : StandardFlexibleScaler or ScalerSettings, optional
    estimator : Ridge2FoldCV or RidgeSettings, optional
        Default ``RidgeSettings()``: scikit-matter's rule, the fold truncation
        at the input dtype's epsilon (float32 epsilon for float32 features);
        ``RidgeSettings(precision="float64")`` treats float32 features as exact.
    method : {"qr", "gram"}, keyword-only
        Exact QR statistics or fast Gram statistics.
    client : distributed.Client, "threads" or "sync", keyword-only
        Scheduler; default: the active client, else Dask's local threads.
    device : {"cpu", "gpu", "auto"} or ArrayBackend, keyword-only
        Array module of the chunk kernels (:func:`fredask.backend.resolve_backend`).

    Returns
    -------
    numpy.ndarray of shape (n_test,)
        In the order of ``test_idx``.
    """
    fit = _fit(X, Y, train_idx, test_idx, scaler, estimator, method, client, False, device)
    return fit.pointwise("error", scheduler=resolve_client(client, embedded=False))[:, 0]


def global_reconstruction_error(
    X,
    Y,
    test_idx=None,
    train_idx=None,
    scaler=None,
    estimator=None,
    *,
    method: str = "qr",
    client=None,
    device: str | ArrayBackend = "cpu",
) -> float:
    """Global feature reconstruction error (GFRE) of ``Y`` from ``X``.

    ``sqrt(mean_i ||y_i - x_i W||^2)`` over the test rows, for the ridge map
    ``W`` fitted on the scaled train rows.  Arguments as in
    :func:`pointwise_global_reconstruction_error`; no second pass is made.

    Returns
    -------
    float
    """
    fit = _fit(X, Y, train_idx, test_idx, scaler, estimator, method, client, False, device)
    return fit.pairs[PAIR].gfre


def pointwise_global_reconstruction_distortion(
    X,
    Y,
    test_idx=None,
    train_idx=None,
    scaler=None,
    estimator=None,
    *,
    method: str = "qr",
    client=None,
    device: str | ArrayBackend = "cpu",
) -> np.ndarray:
    """Per test row distortion ``||x_i W - x_i Q||`` (``Q`` orthogonal Procrustes).

    Arguments as in :func:`pointwise_global_reconstruction_error`.

    Returns
    -------
    numpy.ndarray of shape (n_test,)
    """
    fit = _fit(X, Y, train_idx, test_idx, scaler, estimator, method, client, True, device)
    return fit.pointwise("distortion", scheduler=resolve_client(client, embedded=False))[:, 0]


def global_reconstruction_distortion(
    X,
    Y,
    test_idx=None,
    train_idx=None,
    scaler=None,
    estimator=None,
    *,
    method: str = "qr",
    client=None,
    device: str | ArrayBackend = "cpu",
) -> float:
    """Global feature reconstruction distortion (GFRD) of ``Y`` from ``X``.

    Arguments as in :func:`pointwise_global_reconstruction_error`.

    Returns
    -------
    float
    """
    fit = _fit(X, Y, train_idx, test_idx, scaler, estimator, method, client, True, device)
    return fit.pairs[PAIR].gfrd


def _local(
    X,
    Y,
    n_local_points,
    test_idx,
    train_idx,
    scaler,
    estimator,
    client,
    allow_overlap,
    device,
    on_phase,
):
    check_local_points(n_local_points)
    features = as_feature_set({"X": X, "Y": Y})
    split = resolve_split(
        features.n_rows, train_idx=train_idx, test_idx=test_idx, allow_overlap=allow_overlap
    )
    errors = local_errors(
        features,
        split,
        [PAIR],
        n_local_points=n_local_points,
        ridge=RidgeSettings.from_estimator(estimator),
        scaler=ScalerSettings.from_scaler(scaler),
        scheduler=resolve_client(client, embedded=False),
        device=device,
        on_phase=on_phase,
    )
    return errors[PAIR]


def pointwise_local_reconstruction_error(
    X,
    Y,
    n_local_points=10,
    test_idx=None,
    train_idx=None,
    scaler=None,
    estimator=None,
    n_jobs=None,
    *,
    client=None,
    allow_overlap: bool = False,
    device: str | ArrayBackend = "cpu",
    on_phase=None,
) -> np.ndarray:
    """Per test row local reconstruction error (scikit-matter's LFRE, streamed).

    For each test row, a ridge map fitted on its ``n_local_points`` nearest
    train rows (scaled source space, ties ordered by row index), centred on
    their means: ``||y_i - (y_bar + (x_i - x_bar) W_i)||``.

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, p) and (n_samples, q)
        numpy, Dask, Zarr or xarray arrays.
    n_local_points : int, default=10
        Neighbours per test row (``k``; the paper uses ``min(p, q)``): a whole
        number (numpy integers too) from 2 to the number of train rows; 5.5,
        ``True`` or ``"5"`` are refused (:class:`NeighbourCountError`, also a
        ``TypeError``).  ``None``: ``min(p, q)``, capped at the train rows
        with a warning.
    test_idx, train_idx : array-like of int, optional
    scaler, estimator : optional
        As in :func:`pointwise_global_reconstruction_error` (the default
        estimator follows scikit-matter's float32 rule).
    n_jobs : ignored
        Accepted for scikit-matter compatibility; Dask decides the parallelism.
    client : distributed.Client, "threads" or "sync", keyword-only
    allow_overlap : bool, keyword-only
        Let test rows also be train rows (an error otherwise).
    device : {"cpu", "gpu", "auto"} or ArrayBackend, keyword-only
        Array module of the chunk kernels (:func:`fredask.backend.resolve_backend`).
    on_phase : callable (name, seconds, details), keyword-only
        Profiling hook, called after each pass
        (:func:`fredask.measures.local_fit.local_errors`).

    Returns
    -------
    numpy.ndarray of shape (n_test,)
    """
    return _local(
        X,
        Y,
        n_local_points,
        test_idx,
        train_idx,
        scaler,
        estimator,
        client,
        allow_overlap,
        device,
        on_phase,
    )


def local_reconstruction_error(
    X,
    Y,
    n_local_points=10,
    test_idx=None,
    train_idx=None,
    scaler=None,
    estimator=None,
    n_jobs=None,
    *,
    client=None,
    allow_overlap: bool = False,
    device: str | ArrayBackend = "cpu",
    on_phase=None,
) -> float:
    """Local feature reconstruction error (LFRE): RMS of the pointwise errors.

    Arguments as in :func:`pointwise_local_reconstruction_error`.

    Returns
    -------
    float
    """
    errors = _local(
        X,
        Y,
        n_local_points,
        test_idx,
        train_idx,
        scaler,
        estimator,
        client,
        allow_overlap,
        device,
        on_phase,
    )
    return float(np.sqrt(np.mean(errors**2)))
