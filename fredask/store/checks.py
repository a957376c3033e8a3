"""The store's own checks: cheap ones on open, a full read in ``verify``.

* :func:`check_store` reads metadata and folder listings only: the structure
  table against the atom count (and its properties against their names),
  each complete features array against the shape, chunks, dtype and source
  its progress array recorded when it was written (so an edited
  ``zarr.json`` is found), a checksum in its codecs, every chunk file
  present.  The comparison runs it before reading.
* :func:`verify_store` reads and decodes every chunk of every array against
  its checksum, recomputes every structure's fingerprint from its atoms, and
  looks for NaN rows outside the skipped structures.

Both return one line per problem, naming the array and chunk file.
"""

from __future__ import annotations

import numpy as np

from fredask.store.integrity import damaged_chunks, has_checksum, missing_chunk_files

#: The group of structure-level arrays (``structure_features/<name>/<kind>``).
STRUCTURE_GROUP = "structure_features"
#: The group of features being written (moved into ``features/`` when complete).
STAGING = "staging"
#: The per-structure arrays of the structure table (beside cell and pbc).
TABLE_FIELDS = ("n_atoms", "offset", "fingerprint", "subset", "source_file", "source_index")
#: The optional property arrays of the structure table (:mod:`fredask.store.properties`).
PROPERTY_FIELDS = ("property_names", "properties")


def check_store(store, names=None) -> list[str]:
    """Cheap checks (metadata and listings, no chunk reads): one line per problem.

    The structure table against the atom count; each complete features
    array (``names``, default all) against the shape, chunks, dtype and
    source its progress array recorded, with a checksum in its codecs and
    every chunk file present; each complete structure-level array with
    every chunk file present.
    """
    problems = []
    table = store.group["structures"]
    expected = {"numbers": store.n_atoms, "positions": store.n_atoms}
    expected |= dict.fromkeys((*TABLE_FIELDS, "cell", "pbc"), store.n_structures)
    for name, rows in expected.items():
        if name not in table:
            problems.append(f"{store.path}/structures/{name}: missing")
        elif table[name].shape[0] != rows:
            problems.append(
                f"{store.path}/structures/{name}: {table[name].shape[0]} rows, the store "
                f"records {rows}"
            )
    problems += _property_problems(store, table)
    names = store.feature_names() if names is None else names
    for name in names:
        problems += check_features(store, name)
    if STRUCTURE_GROUP in store.group:
        for _name, group in sorted(store.group[STRUCTURE_GROUP].groups()):
            for _kind, array in sorted(group.arrays()):
                if array.attrs.get("complete"):
                    problems += [
                        f"{path}: chunk file of {array.path} is missing"
                        for path in missing_chunk_files(store.path, array)
                    ]
    return problems


def _property_problems(store, table) -> list[str]:
    """The property arrays of the table: both or neither, one column per name."""
    present = [name for name in PROPERTY_FIELDS if name in table]
    if not present:
        return []
    where = f"{store.path}/structures"
    if len(present) == 1:
        missing = next(name for name in PROPERTY_FIELDS if name not in present)
        return [f"{where}/{missing}: missing (its {present[0]} exists)"]
    expected = (store.n_structures, table["property_names"].shape[0])
    if table["properties"].shape != expected:
        return [
            f"{where}/properties: shape {table['properties'].shape}, the store records "
            f"{expected} (structures, property names)"
        ]
    return []


def check_features(store, name: str) -> list[str]:
    """The cheap checks of one complete features array (see :func:`check_store`)."""
    where = f"{store.path}/features/{name}"
    array = store.group["features"][name]
    if name not in store.group["progress"]:
        return [f"{where}: its progress/{name} record is missing"]
    record = store.group["progress"][name].attrs
    problems = []
    wanted = {
        "shape": tuple(record.get("shape", ())),
        "chunks": tuple(record.get("chunks", ())),
        "dtype": record.get("dtype"),
    }
    actual = {"shape": array.shape, "chunks": array.chunks, "dtype": str(array.dtype)}
    for key, value in wanted.items():
        if actual[key] != value:
            problems.append(
                f"{where}/zarr.json: {key} {actual[key]}, but the features were written "
                f"with {key} {value}"
            )
    if array.attrs.get("source_id") != record.get("source_id"):
        problems.append(f"{where}/zarr.json: source differs from the one recorded at write")
    if not has_checksum(array):
        problems.append(f"{where}/zarr.json: no checksum codec")
    if problems:
        return problems
    if not np.all(store.group["progress"][name][:] == 1):
        problems.append(f"{store.path}/progress/{name}: not every chunk is marked written")
    problems += [
        f"{path}: chunk file of features/{name} is missing"
        for path in missing_chunk_files(store.path, array)
    ]
    return problems


def verify_store(store, progress: bool = False) -> list[str]:
    """Read every chunk of every array and check it: one line per problem.

    :meth:`check`, then every chunk of the structure table, the features
    (complete ones also for NaN rows outside skipped structures), the
    progress arrays and the structure-level arrays decoded against its
    checksum, and each structure's fingerprint recomputed from its atoms.
    An empty list: the store is sound.
    """
    problems = check_store(store)
    arrays = [a for _, a in sorted(store.group["structures"].arrays())]
    for group in ("features", "progress"):
        arrays += [a for _, a in sorted(store.group[group].arrays())]
    if STRUCTURE_GROUP in store.group:
        for _, group in sorted(store.group[STRUCTURE_GROUP].groups()):
            arrays += [a for _, a in sorted(group.arrays())]
    reported = {p.split(":")[0] for p in problems}
    complete = {f"features/{name}": name for name in store.feature_names()}
    non_finite: dict[str, dict[int, str]] = {}  # features name -> chunk -> problem
    if progress:
        from tqdm.auto import tqdm

        arrays = tqdm(arrays, desc="verify", unit="array")
    for array in arrays:
        inspect = None
        if array.path in complete and not problems:  # NaN rows checked on the same read;
            # the table (read first) is sound, so the skipped rows can be found
            inspect = _finite_check(store, complete[array.path], non_finite)
        found = damaged_chunks(store.path, array, inspect=inspect)
        problems += [p for p in found if p.split(":")[0] not in reported]
    if not problems:
        problems += _verify_table(store)
    if not problems:
        for name in store.feature_names():
            found = non_finite.get(name, {})
            problems += [found[min(found)]] if found else []
    return problems


def _verify_table(store) -> list[str]:
    from fredask.store.structures import fingerprint_of

    table = store.group["structures"]
    n_atoms, offset = table["n_atoms"][:], table["offset"][:]
    where = f"{store.path}/structures"
    if int(n_atoms.sum()) != store.n_atoms:
        return [f"{where}/n_atoms: sum {int(n_atoms.sum())}, the store holds {store.n_atoms}"]
    starts = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    if not np.array_equal(starts, offset):
        first = int(np.flatnonzero(starts != offset)[0])
        return [f"{where}/offset: structure {first} starts at {offset[first]}, not {starts[first]}"]
    numbers, positions = table["numbers"][:], table["positions"][:]
    cells, pbcs, stored = table["cell"][:], table["pbc"][:], table["fingerprint"][:]
    for s in range(store.n_structures):
        lo, hi = int(offset[s]), int(offset[s] + n_atoms[s])
        if fingerprint_of(numbers[lo:hi], positions[lo:hi], cells[s], pbcs[s]) != stored[s]:
            return [f"{where}/fingerprint: structure {s} does not match its atoms"]
    return []


def _finite_check(store, name: str, found: dict[str, dict[int, str]]):
    """``inspect(index, values)`` for :func:`damaged_chunks` of ``features/<name>``:
    records, per row chunk, the rows that hold NaN or inf outside skipped structures."""
    skipped = store.skipped_row_mask(store.skipped_structures([name]))

    def inspect(index, values) -> None:
        start, stop = store.chunk_bounds(index[0])
        finite = np.isfinite(values).all(axis=1) | skipped[start:stop]
        if not finite.all():
            rows = start + np.flatnonzero(~finite)
            found.setdefault(name, {})[index[0]] = (
                f"{store.path}/features/{name}: rows {rows[:5].tolist()} (of {rows.size} in "
                f"chunk {index[0]}) hold NaN or infinite values outside skipped structures"
            )

    return inspect
