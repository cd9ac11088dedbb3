# Quickstart: `make demo` then `make test` (both create .venv on first use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
DEMO_OUT := out

.PHONY: demo test bench bench-scale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk (an unpinned torch pulls CUDA)
$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,models]"
	touch $@ $(RUNTIME)

demo: $(RUNTIME)
	@bash scripts/demo.sh "$(BIN)" "$(DEMO_OUT)"

test: $(DEV)
	$(BIN)/python -m pytest

bench: $(DEV)
	$(BIN)/python benchmarks/bench_analyze.py

bench-scale: $(DEV)
	$(BIN)/python benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) bench-data .pytest_cache
