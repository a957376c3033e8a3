"""A tiny torch model behind an ASE calculator, whose features are known exactly.

Used by the tests of the generic hook extractor and of resumable extraction:
the per-atom embedding is ``[Z, Z^2 / 100, sin(Z), 1]`` and the mixing layer's
input is that embedding plus ``0.1 * (x + y + z)`` of the atom's position.
"""

from __future__ import annotations

import time

import numpy as np


def known_embedding(numbers: np.ndarray) -> np.ndarray:
    """The embedding the tiny model's ``embed`` layer returns for ``numbers``."""
    z = np.asarray(numbers, dtype=np.float64)
    return np.stack([z, z**2 / 100, np.sin(z), np.ones_like(z)], axis=1).astype(np.float32)


def make_tiny_calculator(delay: float = 0.0):
    """An ASE calculator over a torch model with known layers (CPU).

    Parameters
    ----------
    delay : float
        Seconds to sleep per evaluation (to interrupt runs in tests).
    """
    import torch
    from ase.calculators.calculator import Calculator, all_changes

    class TinyModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            table = torch.from_numpy(known_embedding(np.arange(120)))
            self.embed = torch.nn.Embedding.from_pretrained(table)
            self.mix = torch.nn.Linear(4, 3, bias=False)
            with torch.no_grad():
                self.mix.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10)

        def forward(self, numbers, positions):
            h = self.embed(numbers) + 0.1 * positions.sum(dim=1, keepdim=True)
            return self.mix(h).sum()

    class TinyCalculator(Calculator):
        implemented_properties = ("energy",)

        def __init__(self):
            super().__init__()
            self.model = TinyModel()

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            if delay:
                time.sleep(delay)
            numbers = torch.from_numpy(np.asarray(self.atoms.numbers, dtype=np.int64))
            positions = torch.from_numpy(self.atoms.positions.astype(np.float32))
            with torch.no_grad():
                self.results = {"energy": float(self.model(numbers, positions))}

    return TinyCalculator()
