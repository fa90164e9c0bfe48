"""Routing, offline: from stored evaluation results to a fitted, calibrated, judged router.

The routing table from the results store and the benchmarks' prompts in :mod:`.table`, its
seeded splits in :mod:`.splits`; fitting the predictors in :mod:`.regression` (and their
penalties in :mod:`.regularisation`); the tuned strategies' scores on a table in
:mod:`.scores` and the threshold sweep in :mod:`.sweep`; fitting and calibrating in
:mod:`.fit`, the whole pipeline in :mod:`.train`; held-out judgement in :mod:`.evaluation`
with the metrics (APGR, CPT, AIQ) of :mod:`.metrics` and the oracles of :mod:`.oracle`;
presentation in :mod:`.report` and :mod:`.plot`.

Nothing here runs per request, and nothing in :mod:`smallfirst.routing` outside this
package imports it: the request path loads a saved artifact and never pulls in the
evaluation harness or the store. Importing this package imports nothing else.
"""
