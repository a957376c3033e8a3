"""Structure-level comparisons: the reconstruction matrices of per-structure cumulants.

* between models: every model's stored cumulants (``structure_features/``)
  as the features, rows = structures;
* between orders of one model, as in the paper: the descriptor of order
  ``o`` is the first ``o`` cumulant blocks, and orders 1..8 are compared as
  if they were models (reconstructing order o from order o - 1 says how much
  the o-th cumulant adds).

Both use the paper's split over structures by default: a fixed number of
test structures, stratified by subset, among those no model skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from fredask.compare.matrix import ReconstructionMatrix, check_comparison, reconstruction_matrix
from fredask.stats.splits import Split, split_usable
from fredask.store.feature_store import FeatureStore
from fredask.structure.stored import cumulants_array, stored_cumulants


def structure_split(
    store: FeatureStore, names=None, kind: str = "paper", n_test: int = 1000, seed: int = 0
) -> Split:
    """Train/test structures among those no model in ``names`` skipped.

    Parameters
    ----------
    kind : {"paper", "default"}
        ``n_test`` structures stratified by subset (seed ``seed``), or
        scikit-matter's 50/50 split.
    """
    subsets = store.structures()["subset"].to_numpy()
    return split_usable(store.usable_structures(names), subsets, kind, n_test, seed)


def order_descriptors(cumulants, n_features: int, orders: Sequence[int] | None = None) -> dict:
    """The descriptors of orders 1..o of one model: the first ``o`` cumulant blocks.

    Parameters
    ----------
    cumulants : array-like, shape (n_structures, order * n_features)
        Cumulant-major cumulants of one model.
    n_features : int
        Features per block.
    orders : sequence of int, optional
        Default: every order the array holds.

    Returns
    -------
    dict of str to array
        ``{"order 1": cumulants[:, :d], "order 2": cumulants[:, :2d], ...}``.
    """
    n_orders, rest = divmod(cumulants.shape[1], n_features)
    if rest:
        raise ValueError(f"{cumulants.shape[1]} columns are not whole blocks of {n_features}")
    orders = range(1, n_orders + 1) if orders is None else orders
    bad = [o for o in orders if not 1 <= o <= n_orders]
    if bad:
        raise ValueError(f"orders {bad} outside 1..{n_orders}")
    return {f"order {o}": cumulants[:, : o * n_features] for o in orders}


def structure_comparisons(
    store: FeatureStore,
    metrics: Sequence[str] = ("gfre", "lfre"),
    *,
    names=None,
    order: int | None = None,
    order_model: str | None = None,
    split: Split | None = None,
    **options,
) -> Iterator[tuple[str, ReconstructionMatrix]]:
    """Structure-level matrices between models and between orders of one model.

    Every requested comparison is validated (:func:`fredask.compare.check_comparison`:
    metrics, split, ``n_local_points`` against the train structures) when this
    is called, before the first matrix is computed; the matrices are then
    computed one by one as the iterator is advanced.

    Parameters
    ----------
    store : FeatureStore
        With complete cumulants of the models (:func:`write_cumulants`).
    metrics : sequence of {"gfre", "gfrd", "lfre"}
    names : sequence of str, optional
        Models (default: all with cumulants).
    order : int, optional
        Cumulants 1..order of each model (default: all stored).
    order_model : str, optional
        The model whose orders are compared with each other (default: the
        first model; ``""`` for none).
    split : Split, optional
        Default: :func:`structure_split` of the models, the paper's.
    **options
        Passed to :func:`fredask.compare.reconstruction_matrix` (``client``,
        ``estimator``, ``n_local_points``, ``method``, ``progress``...); the
        default estimator fits float32 features as exact (``precision="float64"``).

    Returns
    -------
    iterator of (str, ReconstructionMatrix)
        ``("structure_<metric>", between models)`` (level ``"structure"``),
        then ``("orders_<model>_<metric>", between orders)`` (level
        ``"order"``, ``model`` set).

    Raises
    ------
    FredaskError
        From the validation, before anything is computed.
    """
    features = stored_cumulants(store, names, order)
    names = list(features)
    if split is None:
        split = structure_split(store, names)
    jobs = []
    if len(names) >= 2:
        jobs += [(f"structure_{m}", features, m, "structure", None) for m in metrics]
    order_model = names[0] if order_model is None else order_model
    if order_model:
        n_features = int(cumulants_array(store, order_model).attrs["n_features"])
        cumulants = stored_cumulants(store, [order_model], order)[order_model]
        descriptors = order_descriptors(cumulants, n_features)
        jobs += [
            (f"orders_{order_model}_{m}", descriptors, m, "order", order_model) for m in metrics
        ]
    checks = {k: options[k] for k in ("n_local_points", "method") if k in options}
    n_local_points = checks.pop("n_local_points", None)
    for inputs in {id(job[1]): job[1] for job in jobs}.values():
        check_comparison(inputs, list(metrics), split, n_local_points, level="structure", **checks)
    return _computed(jobs, split, options)


def _computed(jobs, split: Split, options: dict) -> Iterator[tuple[str, ReconstructionMatrix]]:
    for stem, inputs, metric, level, model in jobs:
        result = reconstruction_matrix(inputs, metric, split=split, level=level, **options)
        yield stem, replace(result, model=model)
