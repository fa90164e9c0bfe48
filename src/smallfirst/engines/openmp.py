"""How llama.cpp's OpenMP threads wait between the steps of a forward pass.

The llama.cpp in llama-cpp-python's wheel is built with OpenMP (libgomp). Between the
operations of a graph, and after each one, its threads wait for each other; how they wait is
read from the environment once, when libgomp loads with llama_cpp:

- libgomp's default spins for a long while (``GOMP_SPINCOUNT`` 300,000) before sleeping. On
  free cores that is fastest, and it spends less CPU per token than sleeping and waking at
  every barrier; beside busy processes the spinning threads take the cores from the ones
  that have work, and decoding crawls at several times the CPU time per token.
- ``OMP_WAIT_POLICY=PASSIVE`` sleeps at once: safe under load, but every wait becomes a
  futex wake-up, and on a quiet machine one stream runs much slower.
- A short spin (``GOMP_SPINCOUNT=1000``, the default of earlier versions) sits between the
  two on both kinds of machine.

The default is libgomp's own spin, set explicitly; the batched engine keeps it from hurting
a shared machine by decoding with fewer threads while other processes keep cores busy
(:mod:`.cores`, the ``adaptive_threads`` setting). Figures: bench/openmp_spin.py and
bench/results/serving/peers.md.

:func:`tame_openmp` sets the spin the ``openmp_spin_count`` setting names (default
:data:`SPIN_COUNT`) unless the operator set either variable. It must run before llama_cpp is
first imported; it does not change a libgomp already loaded.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["SPIN_COUNT", "tame_openmp"]

log = logging.getLogger(__name__)

SPIN_COUNT = 300_000  # libgomp's own default


def tame_openmp(spin_count: int = SPIN_COUNT) -> None:
    """Give libgomp ``spin_count`` spins before it sleeps, unless the environment says
    otherwise."""
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if "llama_cpp" in sys.modules:
        log.info("llama.cpp was loaded before its wait policy was set: OpenMP keeps its default")
        return
    os.environ["GOMP_SPINCOUNT"] = str(spin_count)
