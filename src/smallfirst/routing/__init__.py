"""Routing: answer each request with the smallest model that gets it right.

The contract and registry are in :mod:`.base`; prompt features in :mod:`.features`;
strategies (fixed, random, oracle, predictive, cascade) in :mod:`.strategies`; policies and
calibration in :mod:`.policy`; the fitted router's file in :mod:`.artifact`; training data
from stored evaluation results in :mod:`.data`; fitting in :mod:`.fit` and :mod:`.train`;
metrics (APGR, CPT, AIQ) in :mod:`.metrics` and the held-out report in :mod:`.evaluation`.

Importing this package imports nothing else: numpy loads with the modules that need it.
"""
