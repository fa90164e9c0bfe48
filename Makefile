# smallfirst: `make run` starts the gateway on the embedded ladder, `make test` runs the suite.
# Both set up everything they need on a fresh machine (virtualenv, packages, models).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Models and state; override with `make run SMALLFIRST_DATA_DIR=/path`.
export SMALLFIRST_DATA_DIR ?= $(HOME)/.local/share/smallfirst

.PHONY: install models run test test-fast check lint fmt types bench clean

# llama.cpp's AMX kernels kill the process (a general protection fault at the first tile
# instruction) on VMs whose CPU reports AMX that the hypervisor does not enable: build without
# them, as src/smallfirst/peers.py (NO_AMX_FLAGS) builds the peers (docs/deployment.md, "AMX")
export CMAKE_ARGS ?= -DCMAKE_C_FLAGS=-U__AMX_INT8__ -DCMAKE_CXX_FLAGS=-U__AMX_INT8__

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing smallfirst (the first install builds llama-cpp-python from source: ~5 min)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/smallfirst models pull --ladder

run: models
	$(BIN)/smallfirst serve

test: install
	@# the dashboard test drives Debian's Chromium with Playwright (no browser download)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	@# the store's tests run on PostgreSQL too: a throwaway cluster (src/smallfirst/pg_cluster.py)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)
	@# the packaged router routes across the whole chat ladder (tests/server/test_default_router.py)
	$(BIN)/smallfirst models pull smollm2-135m-instruct qwen2.5-coder-0.5b-instruct \
		qwen2.5-coder-1.5b-instruct gemma-3-270m
	@# the llama-server tier's tests (tests/engines/test_llama_server.py) need llama.cpp's own
	@# llama-server, built once from the vendored llama.cpp (8-15 min on 2 cores, then cached)
	command -v cmake >/dev/null && command -v c++ >/dev/null || (apt-get update && apt-get install -y cmake build-essential)
	$(BIN)/python bench/build_peers.py
	$(BIN)/python -m pytest

# the fast lane: tests that need no model, no browser and no network (marked `fast`), < 30 s
test-fast: install
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)
	$(BIN)/python -m pytest -m fast -q

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: install
	$(BIN)/mypy

check: lint types

fmt: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# The serving benchmarks (results in bench/results/serving/); bench/README.md lists the others.
bench: models
	$(BIN)/python bench/gateway_vs_raw.py
	$(BIN)/python bench/vs_llama_server.py
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
