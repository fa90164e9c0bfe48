"""Build llama.cpp's `llama-server` and `llama-batched-bench`: the peers of the serving benchmarks.

They are built from the llama.cpp vendored in the llama-cpp-python sdist of the installed
version (the same llama.cpp as our engine), with llama-cpp-python's default build flags, and
cached in ~/.cache/smallfirst/peers/llama-cpp-python-<version>/bin (SMALLFIRST_PEERS_DIR
overrides the root). 8-15 minutes on 2 cores; needs cmake and a C++ compiler, and pip's
access to PyPI for the sdist. A second run finds the binaries and only prints where they are.
`bench/vs_peers.py` and the llama-server tier's tests (tests/engines/test_llama_server.py) call the
same code (`smallfirst.peers`), so running this first is optional; `make test` runs it first
so that a fresh machine's build shows its progress.

    .venv/bin/python bench/build_peers.py [--jobs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from smallfirst.errors import PeerBuildError
from smallfirst.peers import ensure_peers


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--jobs", type=int, help="parallel compile jobs (default: all cores)")
    args = p.parse_args()
    try:
        peers = ensure_peers(jobs=args.jobs, progress=print)
    except PeerBuildError as exc:
        raise SystemExit(f"build_peers: {exc}") from None
    print(f"llama-cpp-python {peers.version}: {peers.bin_dir}")
    for binary in (peers.server, peers.batched_bench):
        version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False
        )
        first = (version.stdout + version.stderr).strip().splitlines()[:1]
        print(f"  {binary.name}: {first[0] if first else '?'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
