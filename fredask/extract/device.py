"""The device a model preset runs on: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

Every preset (:mod:`fredask.extract.presets`) takes ``device=`` (default
``"cpu"``, today's behaviour).  This module owns what the strings mean:

* ``"cpu"``: the CPU;
* ``"cuda"``: the first CUDA device torch sees, ``"cuda:0"``;
* ``"cuda:N"``: CUDA device ``N`` as torch numbers them in this process;
* ``"auto"``: ``"cuda:0"`` when ``torch.cuda.is_available()``, else ``"cpu"``.

A device string is checked twice.  :func:`parse_device` checks its spelling
when the extractor is built (on the machine that submits the work), without
importing torch; :func:`torch_device` resolves it where the model is loaded
and refuses a CUDA device that torch does not see there.
:func:`check_devices` runs that second check where the work will run (here,
or on every worker of a Dask cluster) before anything is extracted.  Both
raise :class:`~fredask.extract.presets._common.ModelSpecError` (a
:class:`~fredask.errors.FredaskError` and ``ValueError``), one line naming
the device and the model.

On a dask-cuda cluster (``LocalCUDACluster``, ``--cluster local-cuda``, or the
``slurm-gpu`` / ``pbs-gpu`` profiles with one GPU per job) each worker process
sees one GPU: dask-cuda (or the batch system) sets ``CUDA_VISIBLE_DEVICES`` per
worker with that worker's GPU first, so ``"cuda"`` means *that worker's* GPU,
i.e. ``"cuda:0"`` within the worker.  Use ``"cuda"`` (or ``"auto"``) there;
``"cuda:1"`` would name a second GPU the worker does not have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fredask.extract.presets._common import ModelSpecError

#: The device strings of the command line (``"cuda:N"`` is accepted as well).
DEVICE_CHOICES: tuple[str, ...] = ("cpu", "cuda", "auto")

_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def _named(model: str) -> str:
    return f"{model}: " if model else ""


def parse_device(device: object, model: str = "") -> str:
    """The canonical spelling of a device option, checked without importing torch.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` (or ``"gpu"``, as ``fredask compare --device``
        says), ``"cuda:N"`` or ``"auto"`` (any case, spaces around ignored).
    model : str
        The model (preset) the device is for, named in the error.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Raises
    ------
    ModelSpecError
        For anything else (``"tpu"``, ``"cuda:x"``, None), naming
        the device and the model.
    """
    text = device.strip().lower() if isinstance(device, str) else None
    if text == "gpu":  # the spelling of the comparison commands' --device
        return "cuda"
    if text in DEVICE_CHOICES:
        return text
    if text is not None and (match := _CUDA_INDEX.fullmatch(text)):
        return f"cuda:{int(match.group(1))}"
    raise ModelSpecError(
        f"{_named(model)}unknown device {device!r}; use cpu, cuda (gpu), cuda:N or auto"
    )


def torch_device(device: str, model: str = "") -> str:
    """The torch device a model with device option ``device`` runs on in this process.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (see :func:`parse_device`).
    model : str
        The model (preset) the device is for, named in the error.

    Returns
    -------
    str
        ``"cpu"`` or ``"cuda:N"``: ``"auto"`` is ``"cuda:0"`` when torch
        sees a CUDA device, else ``"cpu"``; ``"cuda"`` is ``"cuda:0"`` (on a
        dask-cuda worker: the worker's own GPU).  ``"cpu"`` is answered
        without importing torch.

    Raises
    ------
    ModelSpecError
        For an unknown device string, or a CUDA device torch does not see
        here (no CUDA device, a CPU-only torch, or ``N`` beyond the devices
        visible), naming the device and the model.
    """
    device = parse_device(device, model)
    if device == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda:0" if available else "cpu"
    if not available:
        build = (
            f"torch {torch.__version__} is a CPU-only build"
            if torch.version.cuda is None
            else f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU"
        )
        raise ModelSpecError(
            f"{_named(model)}device {device!r} needs a CUDA device, but torch sees none "
            f"({build}); use cpu or auto"
        )
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ModelSpecError(
            f"{_named(model)}device {device!r}: torch sees {count} CUDA device"
            f"{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1}); on a dask-cuda "
            "worker, use cuda (the worker's own GPU)"
        )
    return f"cuda:{index}"


def _device_problem(device: str, model: str) -> str | None:
    """:func:`torch_device`'s error on this worker, or None (:func:`check_devices` runs it)."""
    try:
        torch_device(device, model)
    except ModelSpecError as error:
        return str(error)
    return None


def check_devices(extractors: Iterable, client=None) -> None:
    """Check, before any work, that each extractor's device exists where its model will run.

    Parameters
    ----------
    extractors : iterable of Extractor
        Each with its ``device`` option and ``name``.  CPU devices and
        ``"auto"`` are always fine and cost nothing.
    client : distributed.Client, str or None
        Where the models will run: a distributed client (checked on every
        worker connected now; workers that start later check when they load
        the model), or None / ``"threads"`` / ``"sync"`` (this process).

    Raises
    ------
    ModelSpecError
        For the first extractor whose CUDA device torch does not see (naming
        the worker on a cluster).
    """
    wanted = [
        (extractor.device, extractor.name)
        for extractor in extractors
        if parse_device(getattr(extractor, "device", "cpu"), extractor.name).startswith("cuda")
    ]
    if not wanted:
        return
    if client is None or isinstance(client, str):
        for device, name in wanted:
            torch_device(device, name)
        return
    for device, name in wanted:
        problems = client.run(_device_problem, device, name)
        for address, problem in sorted(problems.items()):
            if problem is not None:
                raise ModelSpecError(f"{problem} (on worker {address})")
