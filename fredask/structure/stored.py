"""Structure-level features in the store: ``structure_features/<name>/cumulants``.

The per-structure cumulants of ``features/<name>`` (:mod:`fredask.structure.cumulants`),
``(n_structures, order * d)`` float64, cumulant-major, in row chunks of
:data:`STRUCTURE_CHUNK_ROWS` structures for every model (so the arrays of all
models line up for the comparison engine).  Attributes: ``order``,
``kappa8``, ``root_scale``, ``n_features``, ``source`` (``features/<name>``),
``source_attributes`` (the source's model, package, version, ...),
``skipped`` (structures left NaN), ``created`` and ``complete``.

The pass streams the atom chunks of the store and writes each output chunk
from a task, so memory does not grow with the number of structures.  The
array is stored uncompressed (but checksummed, like every store array):
root-scaled cumulants shrink by 5% under zstd, which would cost six times the
plain write.
"""

from __future__ import annotations

import dask.array as da
import zarr

from fredask.backend import ArrayBackend, resolve_backend
from fredask.cluster.clients import compute, resolve_client
from fredask.stats.features import zarr_rows
from fredask.store.feature_store import FeatureStore, StoreError
from fredask.structure.cumulants import check_options, structure_cumulants

#: Structures per chunk of every structure-level array (16 MiB at 128 features of order
#: 8).  Each stored chunk costs about 10 ms whatever its size: 2048 rather than 512 cut
#: the write of 10^5 structures' cumulants from 1.9 s to 0.9 s of worker time.  Fewer
#: than the structures of one 64 MiB read task (about 3600 at 36 atoms), so a written
#: chunk waits on at most two computed blocks.
STRUCTURE_CHUNK_ROWS = 2048
KIND = "cumulants"
#: Attributes that must match for stored cumulants to be reused.
SETTINGS = ("order", "kappa8", "root_scale")


def cumulants_array(store: FeatureStore, name: str) -> zarr.Array | None:
    """The stored cumulants of ``name`` (complete or not), or None."""
    return store.structure_features(name, KIND)


def cumulant_names(store: FeatureStore) -> list[str]:
    """Models with complete stored cumulants."""
    return store.structure_feature_names(KIND)


def write_cumulants(
    store: FeatureStore,
    name: str,
    order: int = 8,
    root_scale: bool = True,
    kappa8: str = "textbook",
    *,
    client=None,
    progress: bool = False,
    overwrite: bool = False,
    device: str | ArrayBackend = "cpu",
) -> zarr.Array:
    """Compute the cumulants of ``features/<name>`` and write them into the store.

    Complete cumulants with the same settings are reused, unless
    ``overwrite=True``; other settings need ``overwrite=True``.  Structures
    the model skipped are NaN rows.

    Parameters
    ----------
    store : FeatureStore
        Opened with ``mode="a"``.
    name : str
        A complete features array of the store.
    order, root_scale, kappa8
        As in :func:`fredask.structure.cumulants.structure_cumulants`.
    client : distributed.Client, "threads" or "sync", optional
        Default: the active client, else the embedded LocalCluster.
    progress : bool
        Show a progress bar.
    overwrite : bool
        Compute again and replace stored cumulants (of any settings).
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        Where the power sums run (:func:`fredask.backend.resolve_backend`, against
        the workers of ``client``); the blocks are written from the host.

    Returns
    -------
    zarr.Array
        ``structure_features/<name>/cumulants``.
    """
    check_options(order, kappa8)
    source = store.feature_arrays([name])[name]
    settings = {"order": int(order), "kappa8": kappa8, "root_scale": bool(root_scale)}
    existing = cumulants_array(store, name)
    if existing is not None and existing.attrs.get("complete") and not overwrite:
        stored = {key: existing.attrs.get(key) for key in SETTINGS}
        if stored == settings:
            return existing
        raise StoreError(
            f"{store.path}: cumulants of {name!r} exist with {stored}; "
            f"pass overwrite=True (--overwrite) to replace them with {settings}"
        )
    skipped = [int(s) for s in store.skipped_structures([name])]
    scheduler = resolve_client(client)
    backend = resolve_backend(device, [source], scheduler)
    values = structure_cumulants(
        source,
        store.n_atoms_per_structure(),
        order,
        root_scale,
        kappa8,
        skipped=skipped,
        name=name,
        device=backend,
    )
    with store.writing(f"structure_features-{name}"):
        source_attributes = {k: v for k, v in source.attrs.items() if k not in ("complete",)}
        target = store.create_structure_features(
            name,
            KIND,
            values.shape[1],
            STRUCTURE_CHUNK_ROWS,
            {
                **settings,
                "n_features": int(source.shape[1]),
                "layout": "cumulant-major: columns [j*d, (j+1)*d) hold cumulant j+1",
                "source": f"features/{name}",
                "source_attributes": source_attributes,
                "skipped": skipped,
            },
            compressors=None,  # cumulants barely compress (5%), zstd would cost 6x the write
        )
        writes = da.store(
            values.rechunk({0: STRUCTURE_CHUNK_ROWS}),
            store.writable(target),
            lock=False,
            compute=False,
        )
        compute(writes, scheduler, progress)
        store.finish_structure_features(target)
    return target


def stored_cumulants(store: FeatureStore, names=None, order: int | None = None) -> dict:
    """Complete stored cumulants as Dask arrays, the first ``order`` blocks of each.

    Parameters
    ----------
    names : sequence of str, optional
        Models (default: every model with complete cumulants).
    order : int, optional
        Keep cumulants 1..order (default: all stored).

    Returns
    -------
    dict of str to dask.array.Array
        ``(n_structures, order * d)`` per model, same row chunks.
    """
    names = cumulant_names(store) if names is None else list(names)
    out = {}
    for name in names:
        array = cumulants_array(store, name)
        if array is None or not array.attrs.get("complete"):
            raise StoreError(
                f"{store.path}: no complete cumulants of {name!r}; run `fredask cumulants`"
            )
        stored_order = int(array.attrs["order"])
        keep = stored_order if order is None else int(order)
        if not 1 <= keep <= stored_order:
            raise StoreError(
                f"{store.path}: cumulants of {name!r} go up to order {stored_order}, "
                f"{keep} requested"
            )
        values = zarr_rows(array)[:, : keep * int(array.attrs["n_features"])]
        # the same row chunks for every model, even for arrays stored with other chunks
        out[name] = values.rechunk({0: STRUCTURE_CHUNK_ROWS})
    return out
