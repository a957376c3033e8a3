"""Maps of feature spaces: PCovR projections against a property (:mod:`.pcovr`).

:func:`pcovr` fits and projects any features (numpy, Dask, Zarr, a
FeatureSet) against a target, from one statistics pass and the small dense
problem of :mod:`.solve`; :func:`store_pcovr` takes a store's model and
one of its recorded properties, at atom or structure level (:mod:`.inputs`);
:func:`scatter` draws the map coloured by the property and :func:`save_map`
writes it (:mod:`.plot`, :mod:`.files`).
"""

from fredask.maps.files import save_map
from fredask.maps.inputs import MapInputs, row_property, store_inputs, store_pcovr
from fredask.maps.pcovr import SCALINGS, PCovRError, PCovRMap, pcovr
from fredask.maps.plot import scatter

__all__ = [
    "SCALINGS",
    "MapInputs",
    "PCovRError",
    "PCovRMap",
    "pcovr",
    "row_property",
    "save_map",
    "scatter",
    "store_inputs",
    "store_pcovr",
]
