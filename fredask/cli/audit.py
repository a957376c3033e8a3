"""Read-only checks of a store: ``fredask verify`` and ``fredask outliers``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fredask.cli.checks import CommandError

#: Structure names shown in a one-line summary before "...".
FIRST_FEW = 5


def verify(args: argparse.Namespace) -> None:
    """Print every problem of a store (exit 1 if any), else one line of what was verified."""
    from fredask.cli.store import open_store

    store = open_store(args.store)
    problems = store.verify()
    for problem in problems:
        print(problem)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise CommandError(f"{args.store}: {len(problems)} {noun} (listed above)")
    names = store.feature_names(complete_only=False)
    print(
        f"{args.store}: verified {store.n_structures} structures, {store.n_atoms} atoms and "
        f"{len(names)} features arrays ({', '.join(names) or 'none'}): no problem found"
    )


def short_bond_lines(table, rule: str) -> list[str]:
    """One line per structure of :func:`~fredask.store.geometry.short_bond_structures`."""
    if table.empty:
        return [f"no structure with {rule}"]
    lines = [f"{len(table)} structures with {rule}:"]
    for index, row in table.iterrows():
        lines.append(
            f"  {index:6d}  {row['source_file']}  {row['formula']}  {row['elements']} "
            f"{row['distance']:.3f} A = {row['shortest_ratio']:.2f}x covalent radii"
            + (f"  [{row['subset']}]" if row["subset"] else "")
        )
    return lines


def left_out_line(table, rule: str) -> str:
    """``left out N structures with <rule>: <first few names>``."""
    names = [str(name) for name in table["source_file"].head(FIRST_FEW)]
    more = ", ..." if len(table) > FIRST_FEW else ""
    return f"left out {len(table)} structures with {rule}: {', '.join(names)}{more}"


def outliers(args: argparse.Namespace) -> None:
    """List a store's structures with unphysically short bonds."""
    from fredask.cli.store import open_store
    from fredask.store.geometry import SHORT_BOND_RATIO, short_bond_rule, short_bond_structures

    ratio = SHORT_BOND_RATIO if args.ratio is None else args.ratio
    rule = short_bond_rule(ratio)  # refuses a ratio that is not a positive number
    store = open_store(args.store)
    table = short_bond_structures(store.structure_table(), ratio=ratio)
    for line in short_bond_lines(table, rule):
        print(line)


def add_parsers(sub) -> None:
    """Add ``verify`` and ``outliers`` to the CLI's subparsers."""
    p = sub.add_parser(
        "verify",
        help="read every chunk of a store and check it (exit 1 with one line per problem)",
    )
    p.add_argument("store", type=Path)
    p.set_defaults(func=verify)

    p = sub.add_parser("outliers", help="structures of a store with unphysically short bonds")
    p.add_argument("store", type=Path)
    p.add_argument(
        "--ratio",
        type=float,
        help="flag a bond shorter than RATIO x the sum of covalent radii (default 0.8)",
    )
    p.set_defaults(func=outliers)
