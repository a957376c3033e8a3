"""``fredask pcovr``: PCovR maps of each model's features against a property of the store.

The whole request is checked before any pass and before anything is
written: the mixing and the number of components, the output folder, the
store, the models, the property (one the store records, or a file of one
value per structure or per atom row), and at structure level the cumulants
(computed into the store where missing, as ``fredask compare --level
structure`` does).  Per model it writes ``pcovr_<model>_<property>`` (atom
level) or ``pcovr_structure_<model>_<property>``: ``.json``, ``.npz`` and the
``.png`` scatter plot coloured by the property (:mod:`fredask.maps.files`).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from fredask.cli.checks import CommandError, existing_files, given, refuse_unless, writable_folder
from fredask.cli.cluster import (
    add_cluster_argument,
    add_device_argument,
    checked_device,
    cluster_client,
)
from fredask.cli.store import open_store

#: fredask.maps.pcovr.SCALINGS, spelled here so that ``--help`` imports nothing heavy.
SCALINGS = ("standard", "centre", "none")


def check_request(args: argparse.Namespace) -> None:
    """Refuse a mixing outside [0, 1], no components, options that would be ignored."""
    if not 0.0 <= args.mixing <= 1.0:
        raise CommandError(f"--mixing {args.mixing:g}: must lie in [0, 1]")
    if args.n_components < 1:
        raise CommandError(f"--n-components {args.n_components}: must be a positive integer")
    refuse_unless(
        args.level == "structure",
        given(args, {"order": "--order"}),
        "with --level structure only",
    )
    writable_folder(args.output)


def property_values(args: argparse.Namespace, store):
    """The property's name and its values (per structure, or per atom from a file)."""
    if args.property is not None:
        return args.property, store.structure_property(args.property)
    import numpy as np

    (path,) = existing_files([args.property_file], "--property-file")
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except ValueError as error:
        raise CommandError(f"--property-file {path}: not numbers ({error})") from None
    return path.stem, np.asarray(values, dtype=np.float64).reshape(-1)


def feature_widths(args: argparse.Namespace, store, models: list[str]) -> dict[str, int]:
    """The columns each model's map is fitted on (at structure level: of its cumulants)."""
    if args.level == "atom":
        return {name: int(store.features(name).shape[1]) for name in models}
    from fredask.cli.compare import planned_cumulants

    planned = planned_cumulants(store, models, args.order)
    return {name: int(values.shape[1]) for name, values in planned.items()}


def stem_of(level: str, model: str, prop: str) -> str:
    """``pcovr[_structure]_<model>_<property>``, with only file-name-safe characters."""
    text = "_".join(["pcovr", *(["structure"] if level == "structure" else []), model, prop])
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def pcovr_command(args: argparse.Namespace) -> None:
    """PCovR maps of every (or the named) model against one property."""
    import numpy as np

    from fredask.maps import row_property, save_map, store_pcovr

    check_request(args)
    store = open_store(args.store)
    available = store.feature_names()
    if not available:
        raise CommandError(f"{args.store}: no complete features to map")
    models = list(dict.fromkeys(args.model or available))
    unknown = [name for name in models if name not in available]
    if unknown:
        raise CommandError(
            f"--model {', '.join(unknown)}: no such complete features; the store has "
            f"{', '.join(available)}"
        )
    prop, values = property_values(args, store)
    what = f"property {prop!r}" if args.property else f"--property-file {args.property_file}"
    known = int(np.isfinite(row_property(store, values, args.level, what)).sum())
    if args.n_components > known:
        raise CommandError(
            f"--n-components {args.n_components}: {what} is known for {known} {args.level}s only"
        )
    for name, width in feature_widths(args, store, models).items():
        if args.n_components > width:
            raise CommandError(
                f"--n-components {args.n_components}: {name!r} has {width} features "
                f"at {args.level} level"
            )
    client = cluster_client(args)
    device = checked_device(args, client)
    if args.level == "structure":
        from fredask.structure.stored import cumulant_names, write_cumulants

        missing = sorted(set(models) - set(cumulant_names(store)))
        store = open_store(args.store, mode="a") if missing else store
        for name in missing:
            print(f"{name}: no cumulants in the store yet, computing them (fredask cumulants)")
            write_cumulants(store, name, client=client, device=device)
    for name in models:
        start = time.perf_counter()
        result, inputs = store_pcovr(
            store,
            name,
            values,
            args.level,
            args.order,
            name=prop,
            mixing=args.mixing,
            n_components=args.n_components,
            scaling=args.scaling,
            method=args.method,
            client=client,
            device=device,
        )
        title = f"PCovR of {name} ({args.level}s), mixing {args.mixing:g}, coloured by {prop}"
        metadata = {
            "model": name,
            "property": prop,
            "level": args.level,
            "order": args.order,
            "store": str(args.store),
            "property_file": None if args.property_file is None else str(args.property_file),
            "rows": int(result.projection.shape[0]),
        }
        paths = save_map(
            result,
            args.output,
            stem_of(args.level, name, prop),
            inputs.values,
            rows=inputs.rows,
            structures=inputs.structures,
            label=prop,
            title=title,
            metadata=metadata,
        )
        shares = ", ".join(f"{v:.3f}" for v in result.explained_variance_ratio)
        print(
            f"{name}: PCovR of {result.projector.shape[0]} features against {prop} on "
            f"{result.n_fitted} {args.level}s in {time.perf_counter() - start:.1f} s: "
            f"loss_x {result.loss_x:.4f}, loss_y {result.loss_y:.4f}, eigenvalue shares {shares}"
        )
        print("wrote " + ", ".join(str(p) for p in paths.values()))


def add_parser(sub) -> None:
    """Add ``pcovr`` to the CLI's subparsers."""
    p = sub.add_parser(
        "pcovr", help="PCovR maps of the models' features, coloured by a property of the store"
    )
    p.add_argument("store", type=Path, help="fredask store")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--property",
        metavar="NAME",
        help="a property the store recorded from its structure files (energy, "
        "energy_per_atom, numeric atoms.info entries; `fredask info` lists them)",
    )
    source.add_argument(
        "--property-file",
        type=Path,
        metavar="FILE",
        help="the property's values instead: .npy or text, one per structure, or one per "
        "atom row (--level atom)",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="map only these features (repeatable; default: every model)",
    )
    p.add_argument(
        "--level",
        choices=("atom", "structure"),
        default="atom",
        help="map atoms (each takes its structure's property), or structures described by "
        "the model's cumulants (computed into the store when missing)",
    )
    p.add_argument("--order", type=int, help="--level structure: use cumulants 1..ORDER")
    p.add_argument(
        "--mixing",
        type=float,
        default=0.5,
        help="PCovR's alpha in [0, 1]: 1 is PCA of the features, 0 the regression only "
        "(default 0.5, as in the paper)",
    )
    p.add_argument("--n-components", type=int, default=2, help="map coordinates (default 2)")
    p.add_argument(
        "--scaling",
        choices=SCALINGS,
        default="standard",
        help="standard: centre, features to unit total variance, property to unit variance "
        "(default); centre: centre only; none: as stored",
    )
    p.add_argument(
        "--method",
        choices=("qr", "gram"),
        default="qr",
        help="the pass's scatter: qr, exact (default); gram, faster, squares the condition number",
    )
    add_cluster_argument(p)
    add_device_argument(p)
    p.add_argument(
        "--output",
        type=Path,
        default=Path("fredask-results"),
        metavar="DIR",
        help="folder of the pcovr_*.json, .npz and .png files (default fredask-results; "
        "--out works too)",
    )
    p.set_defaults(func=pcovr_command)
