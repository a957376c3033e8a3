"""Per-structure numeric properties, read with the structures (energies, ``info`` numbers).

When structures are read (:meth:`fredask.store.StructureTable.from_atoms`),
every real-number scalar of ``atoms.info`` and of the calculator's results
(``atoms.calc.results``: what ASE's extxyz reader makes of ``energy=``,
``free_energy=``) becomes a property column of the structure table; the
calculator's value wins where both name the same key.  Booleans, strings and
arrays are not properties.  A structure without a property holds NaN there.
Where ``energy`` exists, ``energy_per_atom`` (energy over the atom count) is
derived, unless the files give it themselves.  Nothing is computed: a
calculator is only read, never run.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

#: ``atoms.info`` keys fredask itself sets (never properties).
RESERVED = ("subset", "structure_index", "first_row")
#: The property derived from ``energy``.
ENERGY_PER_ATOM = "energy_per_atom"


def is_number(value) -> bool:
    """Whether ``value`` is a real scalar (a Python or numpy number, a 0-d array), not a bool."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"


def numeric_properties(atoms) -> dict[str, float]:
    """The numeric properties of one ``ase.Atoms`` (see the module docstring)."""
    values = {
        str(key): float(value)
        for key, value in atoms.info.items()
        if key not in RESERVED and is_number(value)
    }
    results = getattr(getattr(atoms, "calc", None), "results", None) or {}
    values |= {str(key): float(value) for key, value in results.items() if is_number(value)}
    if "energy" in values and ENERGY_PER_ATOM not in values:
        values[ENERGY_PER_ATOM] = values["energy"] / len(atoms)
    return values


def property_table(structures: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The property names (sorted) and values (NaN where missing) of ``structures``.

    Returns
    -------
    names : numpy.ndarray of str, shape (n_properties,)
    values : numpy.ndarray of float64, shape (n_structures, n_properties)
    """
    per_structure = [numeric_properties(atoms) for atoms in structures]
    names = sorted(set().union(*per_structure))
    values = np.full((len(per_structure), len(names)), np.nan)
    for i, found in enumerate(per_structure):
        for j, name in enumerate(names):
            values[i, j] = found.get(name, np.nan)
    return np.array(names, dtype=str), values
