# Two entry points on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
DEVSTAMP = $(VENV)/.installed-dev

.PHONY: run test lint typecheck docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# torch (for `fluidgate calibrate measure` and its tests) is pinned to the CPU build.
$(DEVSTAMP): pyproject.toml constraints/torch-cpu.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,docs,calibrate]" -c constraints/torch-cpu.txt
	touch $(STAMP) $@

## run: solve the bundled example with HiGHS and print the plan
run: $(STAMP)
	$(BIN)/fluidgate solve examples/two_class.sli

## test: lint, type-check, run the whole test suite, build the docs
test: $(DEVSTAMP)
	$(BIN)/ruff check fluidgate tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

lint: $(DEVSTAMP)
	$(BIN)/ruff check fluidgate tests bench

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

docs: $(DEVSTAMP)
	$(BIN)/mkdocs build --strict --site-dir $(VENV)/site

## bench: the benchmarks of docs/performance.md
bench: $(DEVSTAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
