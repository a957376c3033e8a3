"""Data for the main job until the feature store of real models exists.

* scikit-matter's degenerate CH4 manifold: the power spectrum and bispectrum
  of 162 methane environments (SPEC section 8), plus two non-linear views;
* a synthetic "model zoo": features of four models that share a latent
  description of each atom to different degrees, written chunk by chunk into
  a local Zarr store (``features/<model>``), like the feature store will be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

SYNTHETIC_MODELS = {
    # name: (number of latent directions seen, non-linearity, noise)
    "smooth-64": (24, 0.5, 0.05),
    "sharp-64": (24, 2.0, 0.05),
    "partial-48": (12, 1.0, 0.05),
    "noisy-32": (24, 1.0, 0.5),
}
LATENT_DIM = 24


def ch4_features() -> dict[str, np.ndarray]:
    """Four views of scikit-matter's degenerate CH4 environments (162 rows)."""
    from skmatter.datasets import load_degenerate_CH4_manifold

    data = load_degenerate_CH4_manifold().data
    power, bispectrum = data.SOAP_power_spectrum, data.SOAP_bispectrum
    return {
        "power spectrum": power,
        "bispectrum": bispectrum,
        "power spectrum^2": (power / power.std()) ** 2,
        "tanh(bispectrum)": np.tanh(bispectrum / bispectrum.std()),
    }


def write_synthetic_store(
    path: str | Path, n_rows: int = 1_000_000, chunk_rows: int = 32_768, seed: int = 0
) -> zarr.Group:
    """Write the synthetic model zoo into a Zarr group, one chunk at a time.

    The group is reused when it already holds the same rows and seed.
    """
    group = zarr.open_group(path, mode="a")
    if group.attrs.get("synthetic") == {"n_rows": n_rows, "seed": seed}:
        return group
    rng = np.random.default_rng(seed)
    projections = {
        name: rng.normal(size=(seen, int(name.rsplit("-", 1)[1]))) / np.sqrt(seen)
        for name, (seen, _, _) in SYNTHETIC_MODELS.items()
    }
    arrays = {
        name: group.create_array(
            f"features/{name}",
            shape=(n_rows, proj.shape[1]),
            chunks=(chunk_rows, proj.shape[1]),
            dtype="float32",
            dimension_names=("atom", f"{name}_feature"),
            overwrite=True,
        )
        for name, proj in projections.items()
    }
    for start in range(0, n_rows, chunk_rows):
        stop = min(start + chunk_rows, n_rows)
        block_rng = np.random.default_rng([seed, start])
        latent = block_rng.normal(size=(stop - start, LATENT_DIM))
        for name, (seen, sharpness, noise) in SYNTHETIC_MODELS.items():
            pre = latent[:, :seen] @ projections[name]
            values = np.tanh(sharpness * pre) + noise * block_rng.normal(size=pre.shape)
            arrays[name][start:stop] = values.astype(np.float32)
    group.attrs["synthetic"] = {"n_rows": n_rows, "seed": seed}
    return group
