"""Run an extractor over a store's structures on Dask workers, resumably.

Work is split by row chunk of the store: one task computes the features of
the structures that overlap its chunk (in fixed batches) and writes exactly
that chunk, then flags it done in ``progress/<name>``.  No two tasks write the
same Zarr chunk, a killed worker's tasks are retried by Dask, and a killed run
restarted with the same command computes only the chunks not flagged yet;
since every task is a deterministic function of its chunk, the finished store
is byte-identical to an uninterrupted run.  Each worker process loads the
model once per device (:func:`worker_extractor`), on the device of the
extractor's ``device`` option, checked where the work runs before any task
starts (:func:`fredask.extract.device.check_devices`); on a dask-cuda
cluster ``"cuda"`` is each worker's own GPU.

The features are written under the store's ``staging/`` and moved into
``features/`` when complete.  Their source (the model's metadata: package,
version, checkpoint hash, layer, options) is recorded: a run into a name that
already holds features of the same source does nothing, one of another source
is refused unless ``overwrite=True``, and a resumed run only continues a write
of the same source.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import numpy as np

from fredask.cluster.clients import resolve_client
from fredask.cluster.progress import is_terminal, log_interval
from fredask.extract.base import ExtractionError, Extractor, atom_batches
from fredask.extract.device import check_devices, torch_device
from fredask.store.feature_store import FeatureStore, model_source

#: Extractors loaded in this (worker) process, by the hash of their pickle and the
#: torch device they run on here.
_LOADED: dict[tuple[str, str], tuple[Extractor, threading.Lock]] = {}
_LOADED_GUARD = threading.Lock()


@dataclass(frozen=True)
class ExtractionReport:
    """What one call of :func:`extract` did.

    Attributes
    ----------
    name : str
        The features' name in the store.
    chunks_computed, chunks_total : int
        Row chunks computed by this call (the others were already done).
    skipped : list of dict
        Structures left NaN (``skip_errors=True``), with the reason.
    """

    name: str
    chunks_computed: int
    chunks_total: int
    skipped: list[dict]


def extraction_source(extractor: Extractor) -> dict[str, object]:
    """The source recorded with an extractor's features (its metadata, without
    what describes a run), computed without loading the model."""
    return model_source(extractor.metadata())


def worker_extractor(key: str, extractor: Extractor) -> tuple[Extractor, threading.Lock]:
    """This process's cached copy of an extractor (loaded once), and the lock of its model.

    Parameters
    ----------
    key : str
        The hash of the extractor's pickle (computed where the run started).
    extractor : Extractor
        Cached, if no copy is yet, under ``(key, device)``, ``device`` being
        the torch device its ``device`` option resolves to here (``"auto"``
        on a GPU worker and on a CPU one differ): the same model on two
        devices is two entries.

    Returns
    -------
    (Extractor, threading.Lock)

    Raises
    ------
    ModelSpecError
        For a CUDA device torch does not see in this process.
    """
    slot = (key, torch_device(extractor.device, extractor.name))
    with _LOADED_GUARD:
        if slot not in _LOADED:
            _LOADED[slot] = (extractor, threading.Lock())
        return _LOADED[slot]


def structure_features(
    extractor: Extractor, structures: list, skip_errors: bool
) -> tuple[list[np.ndarray | None], list[dict]]:
    """Features of each structure; with ``skip_errors`` a failing one gives None."""
    try:
        return list(extractor.atom_features(structures)), []
    except ExtractionError:
        if not skip_errors:
            raise
    out, skipped = [], []
    for atoms in structures:
        try:
            out.append(extractor.atom_features([atoms])[0])
        except ExtractionError as error:
            out.append(None)
            skipped.append({"structure": atoms.info["structure_index"], "reason": str(error)})
    return out, skipped


def extract_chunk(
    store_path: str,
    name: str,
    index: int,
    key: str,
    extractor: Extractor,
    batch_atoms: int,
    skip_errors: bool,
) -> dict:
    """Compute and write row chunk ``index`` of features ``name`` (one task)."""
    store = FeatureStore.open(store_path, mode="a")
    start, stop = store.chunk_bounds(index)
    wanted = store.structures_in_rows(start, stop)
    model, lock = worker_extractor(key, extractor)
    array = store.features(name)
    values = np.full((stop - start, array.shape[1]), np.nan, dtype=array.dtype)
    skipped = []
    row = int(wanted[0].info["first_row"])
    for group in atom_batches([len(a) for a in wanted], batch_atoms):
        structures = [wanted[i] for i in group]
        with lock:
            features, skips = structure_features(model, structures, skip_errors)
        skipped += skips
        for atoms, block in zip(structures, features, strict=True):
            first, last = row, row + len(atoms)
            row = last
            if block is None:
                continue
            lo, hi = max(first, start), min(last, stop)
            values[lo - start : hi - start] = block[lo - first : hi - first]
    store.write_chunk(name, index, values)
    return {"chunk": index, "atoms": stop - start, "skipped": skipped}


def probe(store_path: str, key: str, extractor: Extractor) -> tuple[int, str, dict]:
    """Number of features, dtype and metadata, from the first structure.

    The metadata records the ``device`` option and the torch device the probe
    ran on (``torch_device``); they describe the run, not the features' source.
    """
    atoms = FeatureStore.open(store_path).structures_in_rows(0, 1)[0]
    model, lock = worker_extractor(key, extractor)
    with lock:
        values = model.atom_features([atoms])[0]
        metadata = model.metadata()
    metadata.update(device=model.device, torch_device=model.torch_device())
    return int(values.shape[1]), str(values.dtype), metadata


def extract(
    store: str | Path | FeatureStore,
    extractor: Extractor,
    name: str | None = None,
    client=None,
    batch_atoms: int = 512,
    skip_errors: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> ExtractionReport:
    """Extract features of ``extractor`` for every structure of ``store``.

    Parameters
    ----------
    store : path or FeatureStore
        The store, created with its structure table.
    extractor : Extractor
        e.g. ``fredask.extract.get_extractor("chgnet:0.3.0")``, or with
        ``device="cuda"`` (or ``"auto"``) to run the model on each worker's GPU.
    name : str, optional
        Name of the features (default ``extractor.name``).
    client : distributed.Client, "threads" or "sync", optional
        Default: the active client, else the embedded LocalCluster.
    batch_atoms : int
        Atoms per model call.
    skip_errors : bool
        On an element the model does not cover (or another ExtractionError),
        leave that structure's rows NaN and record it in the array's
        ``skipped`` attribute instead of failing.
    progress : bool
        Show a progress bar with atoms per second (in a log, not a terminal:
        a line every :func:`fredask.cluster.progress.log_interval` seconds).
    overwrite : bool
        Replace features of ``name`` from another source (or the same one):
        the new array is written aside and swapped in when complete.

    Returns
    -------
    ExtractionReport

    Raises
    ------
    ModelSpecError
        Before anything is written, when the extractor's device is a CUDA
        device that torch does not see where the work runs (this process for
        ``"sync"`` / ``"threads"``, every connected worker of a cluster).
    """
    import dask

    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store, mode="a")
    name = name or extractor.name
    path = str(store.path)
    key = hashlib.blake2b(cloudpickle.dumps(extractor), digest_size=16).hexdigest()
    scheduler = resolve_client(client)
    check_devices([extractor], scheduler)
    source = extraction_source(extractor)
    with store.writing(name):
        if store.has_features(name) and not overwrite:  # kept, resumed or refused
            old = store.features(name)
            n_features, dtype, metadata = old.shape[1], old.dtype, dict(old.attrs)
        else:
            n_features, dtype, metadata = _run(scheduler, probe, path, key, extractor)
            metadata["command"] = shlex.join(sys.argv)
        store.create_features(name, n_features, dtype, metadata, source, overwrite=overwrite)
        pending = store.pending_chunks(name)
        skipped = list(store.features(name).attrs.get("skipped", []))
        bar = progress_bar(store.n_atoms, name, progress)
        bar.update(store.n_atoms - sum(np.diff(store.chunk_bounds(i))[0] for i in pending))
        args = (key, extractor, batch_atoms, skip_errors)
        if isinstance(scheduler, str):
            with dask.config.set(scheduler=scheduler):
                for index in pending:
                    _record(store, name, extract_chunk(path, name, index, *args), skipped, bar)
        elif pending:
            from distributed import as_completed

            futures = [
                scheduler.submit(extract_chunk, path, name, index, *args, pure=False)
                for index in pending
            ]
            for future in as_completed(futures, loop=scheduler.loop):
                _record(store, name, future.result(), skipped, bar)
        bar.close()
        store.finish_features(name)
    return ExtractionReport(name, len(pending), store.n_chunks, skipped)


def _record(store: FeatureStore, name: str, result: dict, skipped: list, bar) -> None:
    if result["skipped"]:
        known = {s["structure"] for s in skipped}
        skipped += [s for s in result["skipped"] if s["structure"] not in known]
        store.features(name).attrs["skipped"] = skipped
    bar.update(result["atoms"])


def progress_bar(total: int, name: str, show: bool):
    """A bar of atoms: tqdm, live, in a terminal or notebook; in a log file (a batch
    job's output), :class:`AtomLines` instead of ten redraws a second.

    ``tqdm.auto`` only where a live bar is shown, so Jupyter without
    ipywidgets prints no ``IProgress`` warning when progress is off.
    """
    from tqdm import tqdm

    if not show:
        return tqdm(total=total, disable=True)
    if not (is_terminal() or "ipykernel" in sys.modules):
        return AtomLines(total, name)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="atom", unit_scale=True, desc=name)


class AtomLines:
    """Progress of an extraction as plain lines on stderr, one per
    :func:`fredask.cluster.progress.log_interval` seconds and one at the end:
    ``chgnet-0.3.0: 2048 of 5760 atoms (36%), 276 atoms/s, 7 s``.

    tqdm writes carriage returns even to a file, which a log keeps as one
    ever-growing line; this has tqdm's ``update``/``close`` and nothing more.
    """

    def __init__(self, total: int, name: str):
        self.total, self.name, self.done = int(total), name, 0
        self.start = self.last = time.perf_counter()
        self.interval = log_interval()
        self.first = None

    def update(self, n: int) -> None:
        if self.first is None:  # atoms already done when the run resumed
            self.first = self.done + int(n)
            self.done = self.first
            return
        self.done += int(n)
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._write(now)

    def close(self) -> None:
        self._write(time.perf_counter())

    def _write(self, now: float) -> None:
        seconds = max(now - self.start, 1e-9)
        rate = (self.done - (self.first or 0)) / seconds
        percent = int(100 * self.done / self.total) if self.total else 100
        line = (
            f"{self.name}: {self.done} of {self.total} atoms ({percent}%), "
            f"{rate:.0f} atoms/s, {seconds:.0f} s\n"
        )
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.write(line)
            sys.stderr.flush()


def _run(scheduler, function, *args):
    if isinstance(scheduler, str):
        return function(*args)
    return scheduler.submit(function, *args, pure=False).result()
