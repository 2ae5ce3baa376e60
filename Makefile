# Every target does its own set-up from a fresh clone.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
ifneq ($(wildcard ../shared/data),)
export CROSSFUSE_DATA ?= $(abspath ../shared/data)
endif
# The CPU build of torch lies on disk here; let pip see it even where PIP_FIND_LINKS is not set.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup run test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(FIND_LINKS) -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q $(FIND_LINKS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/crossfuse datasets prepare av-digits
	$(VENV)/bin/crossfuse run --data av-digits --task default --fusion late --transfer source-only --seed 0 --out runs/default

test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q tests

bench: setup
	$(VENV)/bin/crossfuse bench --suite quick --out runs/bench-quick

clean:
	rm -rf runs .pytest_cache
