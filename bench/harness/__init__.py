"""The benchmark harness: what every script in ``bench/`` shares, measuring nothing itself.

- :mod:`harness.procs`: child processes that are always stopped, and the signal handling;
- :mod:`harness.gateway`: ``smallfirst serve`` (and its config file) as a child process;
- :mod:`harness.sse`: the plain httpx SSE client that times streamed chunks;
- :mod:`harness.stats`: percentiles, latency summaries and text or Markdown tables;
- :mod:`harness.machine`: where and how a run happened, recorded in every result file;
- :mod:`harness.results`: the ``results/<area>/<name>-<stamp>[-quick].{json,md}`` files;
- :mod:`harness.script`: a script's start (argparse, signals, header) and end (the files).

Scripts run as ``python bench/<script>.py``, so ``bench/`` is on ``sys.path`` and they import
``harness`` as a top-level package. Free ports and waiting for a server come from
:mod:`smallfirst.testing`, shared with the test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["BENCH_DIR", "PYTHON", "REPO_DIR"]

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
PYTHON = sys.executable
