"""Comparison commands: ``fredask compare`` (atoms or structures) and ``fredask cumulants``.

The whole request is checked before any computation and before anything is
written: options that would be ignored are refused, the output folder must be
writable, the store readable, and every requested metric's split and
neighbour counts possible (:func:`fredask.compare.matrix.check_comparison`);
at structure level that includes the cumulants still to be computed.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from pathlib import Path

from fredask.cli.checks import CommandError, given, refuse_unless, writable_folder
from fredask.cli.cluster import (
    add_cluster_argument,
    add_device_argument,
    checked_device,
    cluster_client,
)
from fredask.cli.store import open_store

#: fredask.compare.matrix.METRICS, spelled here so that ``--help`` imports nothing heavy.
METRICS = ("gfre", "gfrd", "lfre", "cka", "cca", "procrustes", "mutual_knn")
#: Test rows of ``--split paper`` when ``--n-test`` is not given.
DEFAULT_N_TEST = 1000
#: Highest cumulant order :func:`fredask.structure.stored.write_cumulants` computes by default.
DEFAULT_ORDER = 8


#: Dominated pairs named after a matrix (the rest: in the errors CSV).
MAX_NOTES = 5


def save_and_print(result, output: Path, stem: str | None = None) -> None:
    """Save a result into ``output`` and print its matrix (or curve) and the files written."""
    paths = result.save(output, stem)
    if hasattr(result, "curve"):
        print(result.title)
        print(result.curve.round(4).to_string())
    else:
        print(result.matrix.round(4).to_string())
    notes = dominated_lines(result)
    for line in notes[:MAX_NOTES]:
        print(line)
    if len(notes) > MAX_NOTES:
        print(f"note: {len(notes) - MAX_NOTES} more dominated pairs in {paths['errors']}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def dominated_lines(result) -> list[str]:
    """One line per pair whose error the top 1% of test rows dominate (marked † in the plot)."""
    if result.errors is None:
        return []
    lines = []
    for (source, target), row in result.errors[result.errors["dominated"]].iterrows():
        worst = row["worst_structures"] if row["worst_structures"] is not None else None
        where = (
            f"structures {list(worst)[:3]}"
            if worst is not None
            else f"rows {list(row['worst_rows'])[:3]}"
        )
        lines.append(
            f"note: {result.metric.upper()} {source} -> {target} = {row['value']:.3g} is dominated "
            f"by a few test rows: the top 1% carry {row['top1_share']:.0%} of the squared error "
            f"(median pointwise error {row['median']:.3g}; worst at {where})"
        )
    return lines


def with_metadata(result, **metadata):
    """``result`` with ``metadata`` merged into its ``metadata`` (JSON-serialisable)."""
    return dataclasses.replace(result, metadata={**result.metadata, **metadata})


def store_features(path: Path) -> tuple[dict, object]:
    """Complete per-model arrays of a fredask store (or of any group's ``features/``)."""
    if not Path(path).exists():
        raise CommandError(f"store {path} does not exist")
    from fredask.store.feature_store import StoreError, group_features

    try:
        opened = open_store(path)
    except StoreError as error:
        if "not a fredask store" not in str(error):
            raise
        return group_features(path), None
    return opened.feature_arrays(), opened


def selected_models(features: dict, args: argparse.Namespace) -> dict:
    """The ``--model`` features (in the order given; default all) and a checked ``--reference``."""
    known = list(features)
    for flag, names in (("--model", args.model or []), ("--reference", [args.reference])):
        for name in names:
            if name is not None and name not in known:
                raise CommandError(
                    f"{flag} {name}: not a model of {args.store}; it has {', '.join(known)}"
                )
    if args.model:
        if args.reference is not None and args.reference not in args.model:
            raise CommandError(
                f"--reference {args.reference}: not among the --model names {args.model}"
            )
        features = {name: features[name] for name in dict.fromkeys(args.model)}
    return features


def split_of(store, n_rows: int, kind: str, n_test: int, seed: int):
    """The atom split: scikit-matter's 50/50 or the paper's, among usable rows."""
    import numpy as np

    from fredask.stats.splits import split_usable

    if kind == "paper" and store is None:
        raise CommandError("--split paper needs a fredask store (it stratifies by subset)")
    usable = np.arange(n_rows) if store is None else store.usable_rows()
    groups = None if store is None else store.atom_subsets()
    try:
        return split_usable(usable, groups, kind, n_test, seed)
    except ValueError as error:  # e.g. more test rows asked than there are
        raise CommandError(f"--split {kind} --n-test {n_test}: {error}") from None


def split_metadata(args: argparse.Namespace, kind: str, store, names) -> dict:
    """What the saved JSON records of the request beside the numbers."""
    skipped = [] if store is None else store.skipped_structures(list(names)).tolist()
    return {
        "split": kind,
        "n_test": args.n_test if kind == "paper" else None,
        "seed": args.seed if kind == "paper" else None,
        "store": str(args.store),
        "skipped_structures": skipped,
    }


def resolve_request(args: argparse.Namespace) -> tuple[list[str], str]:
    """The metrics and split kind of a compare command line; ignored options refused.

    Also fills ``args.n_test`` and ``args.seed`` with their defaults and checks
    that ``--output`` can be written.
    """
    structure = args.level == "structure"
    metrics = list(args.metric or (["gfre", "lfre"] if structure else ["gfre"]))
    kind = args.split or ("paper" if structure else "default")
    refuse_unless(
        structure,
        given(args, {"order": "--order", "order_matrix": "--order-matrix"}),
        "with --level structure only",
    )
    refuse_unless(
        kind == "paper",
        given(args, {"n_test": "--n-test", "seed": "--seed"}),
        "with --split paper only (the default split is scikit-matter's 50/50 of all rows)",
    )
    refuse_unless(
        bool({"lfre", "mutual_knn"} & set(metrics)),
        given(args, {"n_local_points": "--n-local-points"}),
        "to --metric lfre and mutual_knn only",
    )
    refuse_unless(
        any(m != "lfre" for m in metrics),
        given(args, {"method": "--method"}),
        "to --metric gfre and gfrd only",
    )
    refuse_unless(
        "cca" in metrics and not structure,
        given(args, {"kept_variance": "--kept-variance"}),
        "to --metric cca at --level atom only (SVCCA)",
    )
    refuse_unless(
        not structure,
        given(args, {"reference": "--reference"}),
        "with --level atom only (at structure level, compare all pairs)",
    )
    refuse_unless(
        args.bootstrap is not None,
        given(args, {"confidence": "--confidence"}),
        "with --bootstrap only",
    )
    refuse_unless(
        "cka" in metrics and not structure,
        given(args, {"debiased": "--debiased"}),
        "to --metric cka at --level atom only",
    )
    refuse_unless(
        not structure and args.reference is None,
        given(args, {"baseline": "--baseline"}),
        "with the atom-level all-pairs matrix only",
    )
    refuse_unless(
        args.reference is None,
        given(args, {"bootstrap": "--bootstrap"}),
        "with the all-pairs matrix only, not --reference",
    )
    if args.bootstrap is not None:
        if args.debiased:
            raise CommandError("--bootstrap: the debiased CKA is not resampled; drop one of them")
        bootstrap_option(args)  # its settings refused before any work
    writable_folder(args.output)
    args.n_test = DEFAULT_N_TEST if args.n_test is None else args.n_test
    args.seed = 0 if args.seed is None else args.seed
    return metrics, kind


def bootstrap_option(args: argparse.Namespace) -> dict:
    """``{"bootstrap": Bootstrap}`` for ``--bootstrap B [--confidence C]``, else ``{}``."""
    if args.bootstrap is None:
        return {}
    from fredask.measures.bootstrap import DEFAULT_CONFIDENCE, Bootstrap

    confidence = DEFAULT_CONFIDENCE if args.confidence is None else args.confidence
    return {"bootstrap": Bootstrap(args.bootstrap, confidence)}


def ridge(args: argparse.Namespace):
    """The ridge settings of ``--precision``."""
    from fredask.solvers.settings import RidgeSettings

    return RidgeSettings(precision=args.precision)


def compare_atoms(args: argparse.Namespace, metrics: list[str], kind: str) -> None:
    """``compare`` at atom level: one matrix per metric, all checked first."""
    features, store = store_features(args.store)
    features = selected_models(features, args)
    import numpy as np

    from fredask.compare.matrix import check_comparison, reconstruction_matrix
    from fredask.compare.reference import reference_curve

    if len(features) < 2:
        raise CommandError(
            f"{args.store}: need features of at least two models, found {list(features)}"
        )
    n_rows = next(iter(features.values())).shape[0]
    split = split_of(store, n_rows, kind, args.n_test, args.seed)
    rows = None
    if store is not None:
        rows = np.repeat(np.arange(store.n_structures), store.n_atoms_per_structure())
    method = args.method or "qr"
    check_comparison(
        features,
        metrics,
        split,
        args.n_local_points,
        method=method,
        row_structures=rows,
        reference=args.reference,
        **bootstrap_option(args),
    )
    metadata = split_metadata(args, kind, store, features)
    client = cluster_client(args)
    device = checked_device(args, client)
    extra = bootstrap_option(args)
    for metric in metrics:
        start = time.perf_counter()
        if args.reference is None:
            compute, stem = reconstruction_matrix, metric
        else:  # the 2 (n - 1) pairs with the reference only
            compute, stem = partial(reference_curve, reference=args.reference), None
        result = compute(
            features,
            metric=metric,
            split=split,
            method=method,
            client=client,
            n_local_points=args.n_local_points,
            estimator=ridge(args),
            row_structures=rows,
            device=device,
            kept_variance=args.kept_variance if metric == "cca" else None,
            **extra,
            **({"baseline": args.baseline} if args.baseline else {}),
            **({"debiased": True} if args.debiased and metric == "cka" else {}),
        )
        print(f"{metric.upper()} of {len(features)} models in {time.perf_counter() - start:.1f} s")
        save_and_print(with_metadata(result, **metadata), args.output, stem)


def planned_cumulants(store, names: list[str], order: int | None) -> dict:
    """Shape-only stand-ins of every model's cumulants (stored or still to compute).

    Zero-strided views: they cost no memory and are never computed on, only
    checked (:func:`~fredask.compare.matrix.check_comparison` reads shapes).
    """
    import numpy as np

    from fredask.structure.stored import cumulants_array

    out = {}
    for name in names:
        stored = cumulants_array(store, name)
        n_features = store.features(name).shape[1]
        held = DEFAULT_ORDER if stored is None else int(stored.attrs["order"])
        if order is not None and order > held:
            raise CommandError(
                f"--order {order}: the stored cumulants of {name!r} go to order {held}; "
                f"compute them with `fredask cumulants --order {order} --overwrite` first"
            )
        orders = order or held
        out[name] = np.broadcast_to(np.zeros(1), (store.n_structures, orders * n_features))
    return out


def check_structure_request(args, store, names, metrics, split) -> str | None:
    """Check every structure-level comparison before any cumulant is written.

    Returns
    -------
    str or None
        The model whose orders are compared (None: no order matrix).
    """
    import numpy as np

    from fredask.compare.matrix import check_comparison
    from fredask.structure.compare import order_descriptors

    order_model = names[0] if args.order_matrix is None else args.order_matrix
    if order_model and order_model not in names:
        raise CommandError(f"--order-matrix {order_model}: no such model; the store has {names}")
    planned = planned_cumulants(store, names, args.order)
    method = {"method": args.method} if args.method else {}
    checks = [planned] if len(names) >= 2 else []
    if order_model:
        n_features = store.features(order_model).shape[1]
        checks.append(order_descriptors(planned[order_model], n_features))
    for inputs in checks:
        check_comparison(
            inputs,
            metrics,
            split,
            args.n_local_points,
            level="structure",
            row_structures=np.arange(store.n_structures),
            **method,
            **bootstrap_option(args),
        )
    return order_model or None


def compare_structures(args: argparse.Namespace, metrics: list[str], kind: str) -> None:
    """``compare --level structure``: models' cumulants, and one model's orders."""
    import numpy as np

    from fredask.structure.compare import structure_comparisons, structure_split
    from fredask.structure.stored import cumulant_names, write_cumulants

    store = open_store(args.store)
    names = store.feature_names()
    if not names:
        raise CommandError(f"{args.store}: no complete features to compare")
    try:
        split = structure_split(store, names, kind, args.n_test, args.seed)
    except ValueError as error:
        raise CommandError(f"--split {kind} --n-test {args.n_test}: {error}") from None
    order_model = check_structure_request(args, store, names, metrics, split)
    client = cluster_client(args)
    device = checked_device(args, client)
    store = open_store(args.store, mode="a")
    for name in sorted(set(names) - set(cumulant_names(store))):
        print(f"{name}: no cumulants in the store yet, computing them (fredask cumulants)")
        write_cumulants(store, name, client=client, device=device)
    metadata = split_metadata(args, kind, store, names)
    options = {"method": args.method} if args.method else {}
    options.update(bootstrap_option(args))
    results = structure_comparisons(
        store,
        metrics,
        names=names,
        order=args.order,
        order_model=order_model or "",
        split=split,
        client=client,
        n_local_points=args.n_local_points,
        estimator=ridge(args),
        row_structures=np.arange(store.n_structures),
        device=device,
        **options,
    )
    start = time.perf_counter()
    for stem, result in results:
        print(f"{stem} in {time.perf_counter() - start:.1f} s")
        save_and_print(with_metadata(result, **metadata), args.output, stem)
        start = time.perf_counter()


def compare(args: argparse.Namespace) -> None:
    """All-pairs errors of the models in a store."""
    metrics, kind = resolve_request(args)
    if args.level == "structure":
        compare_structures(args, metrics, kind)
    else:
        compare_atoms(args, metrics, kind)


def cumulants(args: argparse.Namespace) -> None:
    """Per-structure cumulants of every (or the named) model, into the store."""
    from fredask.structure.stored import write_cumulants

    store = open_store(args.store)
    available = store.feature_names()
    unknown = [name for name in args.model or [] if name not in available]
    if unknown:
        raise CommandError(
            f"--model {', '.join(unknown)}: no such complete features; the store has {available}"
        )
    client = cluster_client(args)
    device = checked_device(args, client)
    store = open_store(args.store, mode="a")
    for name in args.model or available:
        start = time.perf_counter()
        try:
            array = write_cumulants(
                store,
                name,
                args.order or DEFAULT_ORDER,
                root_scale=not args.no_root_scale,
                kappa8=args.kappa8,
                client=client,
                overwrite=args.overwrite,
                device=device,
            )
        except ValueError as error:  # NaN features, naming the structure
            raise CommandError(str(error)) from None
        print(
            f"{name}: cumulants 1..{array.attrs['order']} ({array.attrs['kappa8']} kappa_8) "
            f"of {array.attrs['n_features']} features, {array.shape[0]} structures -> "
            f"{array.path} in {time.perf_counter() - start:.1f} s"
        )


def add_parsers(sub) -> None:
    """Add ``compare`` and ``cumulants`` to the CLI's subparsers."""
    p = sub.add_parser("compare", help="all-pairs errors of the models in a store")
    p.add_argument("store", type=Path, help="fredask store (or Zarr group with features/)")
    p.add_argument(
        "--metric",
        nargs="+",
        choices=METRICS,
        help="default: gfre; gfre lfre with --level structure; cka, cca, procrustes, "
        "mutual_knn: symmetric similarities of the test rows (no fit)",
    )
    p.add_argument(
        "--level",
        choices=("atom", "structure"),
        default="atom",
        help="compare atom features, or per-structure cumulants (computed into the store "
        "when missing) between models and between the orders of one model",
    )
    p.add_argument("--order", type=int, help="--level structure: use cumulants 1..ORDER")
    p.add_argument(
        "--order-matrix",
        metavar="MODEL",
        help="--level structure: the model whose orders are compared (default: the first; "
        "'' for none)",
    )
    p.add_argument(
        "--n-local-points",
        type=int,
        help="--metric lfre: neighbours (default: min(p, q) per pair, capped at the train rows); "
        "--metric mutual_knn: neighbours compared (default 10)",
    )
    p.add_argument(
        "--kept-variance",
        type=float,
        metavar="SHARE",
        help="--metric cca: SVCCA, keeping each model's leading directions explaining SHARE "
        "(0 < SHARE <= 1) of its variance",
    )
    p.add_argument(
        "--debiased",
        action="store_true",
        default=None,
        help="--metric cka: the debiased CKA (unbiased HSIC; one more read of the test rows)",
    )
    p.add_argument(
        "--precision",
        choices=("float64", "input"),
        default="float64",
        help="epsilon of the fold truncation: float64's (default; float32 features taken as "
        "exact, the float64-exact answer) or the input dtype's (scikit-matter's rule)",
    )
    p.add_argument(
        "--method",
        choices=("qr", "gram"),
        help="--metric gfre/gfrd: qr, exact (default); gram, faster, squares the condition number",
    )
    p.add_argument(
        "--split",
        choices=("default", "paper"),
        help="scikit-matter's 50/50 split (default for atoms), or the paper's stratified "
        "test set (default for structures)",
    )
    p.add_argument(
        "--n-test",
        type=int,
        help=f"--split paper: test atoms (or structures) (default {DEFAULT_N_TEST})",
    )
    p.add_argument("--seed", type=int, help="--split paper: its seed (default 0)")
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="compare only these features, in this order (repeatable; default: all), e.g. "
        "one model's layers and another model (a layer sweep)",
    )
    p.add_argument(
        "--reference",
        metavar="MODEL",
        help="every other model against MODEL, both directions (the training-progress curve: "
        "2 (n - 1) pairs, not the n x n matrix); writes <metric>_vs_<MODEL>.*",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="B",
        help="percentile intervals from B resamples of the test rows' structures (gfre, gfrd, "
        "lfre, mutual_knn: the fits held fixed, the target's scale resampled; cka, cca, "
        "procrustes: per-group scatters), in the JSON and under each number of the heat map",
    )
    p.add_argument(
        "--confidence",
        type=float,
        help="--bootstrap: share of the resamples between the interval's ends (default 0.9)",
    )
    p.add_argument(
        "--baseline",
        choices=("random",),
        help="also each pair's chance level: the same measure from standard-normal features "
        "of the source's width to the target, on the same rows (one more pass)",
    )
    add_cluster_argument(p)
    add_device_argument(p)
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    p.set_defaults(func=compare)

    p = sub.add_parser("cumulants", help="per-structure cumulants of the models, into the store")
    p.add_argument("store", type=Path)
    p.add_argument("--order", type=int, help="highest cumulant, 1..8 (default 8)")
    p.add_argument(
        "--kappa8",
        choices=("textbook", "paper"),
        default="textbook",
        help="kappa_8 formula: textbook, or the paper script's (two coefficients swapped)",
    )
    p.add_argument("--no-root-scale", action="store_true", help="keep kappa_j, not its j-th root")
    p.add_argument("--model", action="append", help="features name (default: all; repeatable)")
    p.add_argument(
        "--overwrite", action="store_true", help="compute again, replacing stored cumulants"
    )
    add_cluster_argument(p)
    add_device_argument(p)
    p.set_defaults(func=cumulants)
