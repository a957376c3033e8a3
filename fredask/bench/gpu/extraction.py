"""The GPU check's step (d): extraction atoms per second of CHGNet and SevenNet with
``device="cuda"`` against ``device="cpu"``, and their agreement.

A preset is skipped, with the reason, where it takes no ``device=``, its package is not
installed or torch sees no CUDA.
"""

from __future__ import annotations

import time

import numpy as np

from fredask.bench.gpu.device import DeviceSide
from fredask.bench.gpu.run import CheckRun, Skipped, error_record


def extraction_structures(n: int) -> list:
    """``n`` shipped molecules and crystals (ASE's G2, S22, dcdft), evenly spaced."""
    from fredask.store.datasets import shipped_structures

    shipped = shipped_structures(subsets=("g2", "s22", "dcdft"))
    index = np.unique(np.linspace(0, len(shipped) - 1, min(n, len(shipped))).astype(int))
    return [shipped[i] for i in index]


def _extract(spec: str, device: str, structures: list) -> dict:
    from fredask.extract import get_extractor

    extractor = get_extractor(spec, device=device)
    start = time.perf_counter()
    extractor.load()
    load_s = time.perf_counter() - start
    covered = [a for a in structures if set(a.numbers) <= set(extractor.elements)]
    extractor.atom_features(covered[:1])  # first call: lazy initialisation
    start = time.perf_counter()
    features = extractor.atom_features(covered)
    seconds = time.perf_counter() - start
    atoms = int(sum(len(a) for a in covered))
    return {
        "device": device,
        "load_s": load_s,
        "seconds": seconds,
        "structures": len(covered),
        "atoms": atoms,
        "atoms_per_s": atoms / seconds,
        "features": np.concatenate(features),
    }


def extraction_model(spec: str, side: DeviceSide, structures: list) -> dict:
    """One preset on the device side and on the CPU: atoms per second and agreement."""
    from fredask.extract.presets import check_ready, preset_options

    accepted = preset_options(spec)
    if "device" not in accepted:
        raise Skipped(f"the {spec} preset takes no device= option (it takes {', '.join(accepted)})")
    if side.extraction == "cuda":
        try:
            import torch
        except ImportError as error:
            raise Skipped(f"torch is not installed: {error}") from None
        if not torch.cuda.is_available():
            raise Skipped(f"CUDA is not available to torch {torch.__version__}")
    from fredask.extract import ModelSpecError, get_extractor

    try:
        check_ready(get_extractor(spec, device="cpu"))
    except ModelSpecError as error:  # its package is not installed
        raise Skipped(str(error)) from None
    runs = {"device": _extract(spec, side.extraction, structures)}
    runs["cpu"] = _extract(spec, "cpu", structures)
    got, want = runs["device"].pop("features"), runs["cpu"].pop("features")
    scale = float(np.max(np.abs(want))) or 1.0
    return runs | {
        "status": "ok",
        "speedup": runs["cpu"]["seconds"] / runs["device"]["seconds"],
        "agreement": {"max_abs_over_max": float(np.max(np.abs(got - want))) / scale},
    }


def extraction_step(run: CheckRun, record: dict) -> None:
    """(d) Extraction atoms/s of each preset with ``device="cuda"`` and ``"cpu"``."""
    structures = extraction_structures(run.sizes.extraction_structures)
    record.update(structures=len(structures), atoms=int(sum(len(a) for a in structures)))
    record["models"] = {}
    for spec in run.sizes.models:
        run.progress(f"extraction: {spec}")
        try:
            record["models"][spec] = extraction_model(spec, run.side, structures)
        except Skipped as reason:
            record["models"][spec] = {"status": "skipped", "reason": str(reason)}
        except Exception as error:
            record["models"][spec] = {"status": "failed", "error": error_record(error)}
        entry = record["models"][spec]
        run.progress(f"extraction: {spec}: {entry.get('reason') or entry['status']}")
    statuses = {m["status"] for m in record["models"].values()}
    if statuses == {"skipped"}:
        reasons = "; ".join(f"{spec}: {m['reason']}" for spec, m in record["models"].items())
        raise Skipped(reasons)
    if statuses == {"failed"}:
        record["status"] = "failed"
