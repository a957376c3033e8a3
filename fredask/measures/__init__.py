"""Reconstruction measures of one model's features from another's.

:mod:`.global_fit` (GFRE, GFRD and their pointwise forms, from one pass),
:mod:`.neighbours` (the streamed k-nearest-neighbour search) and
:mod:`.local_fit` (the LFRE, from local 2-fold ridge fits).
"""
