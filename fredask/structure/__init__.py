"""Structure-level features: per-structure cumulants of atom features, stored and compared.

:mod:`.power_sums` and :mod:`.power_sums_compiled` hold the numerics,
:mod:`.cumulants` the streamed pass, :mod:`.stored` writes and reads them
through the store, :mod:`.compare` compares them between models and orders.
"""

from fredask.structure.cumulants import structure_cumulants

__all__ = ["structure_cumulants"]
