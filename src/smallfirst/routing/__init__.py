"""Routing: answer each request with the smallest model that gets it right.

What runs per request: the contract's types in :mod:`.base`; prompt features in
:mod:`.features`; the fitted predictors (P(correct), joules) in :mod:`.predictors`; the
strategies (fixed, random, predictive, cascade) in :mod:`.strategies`, built from a spec by
:mod:`.registry`; policies and their calibration from a stored sweep in :mod:`.policy`; the
fitted router's file in :mod:`.artifact`.

What runs offline (tables from stored evaluation results, fitting, calibration sweeps,
held-out evaluation, reports) is :mod:`.training`, which nothing here imports.

Importing this package imports nothing else: numpy loads with the modules that need it.
"""
