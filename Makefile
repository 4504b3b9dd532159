# clusterkit — every target installs what it needs first.
#   make lab        virtual environment + kernel, then JupyterLab on notebooks/ (127.0.0.1, token)
#   make test       everything: lint, stripped notebooks, unit tests, every notebook (smoke + demo)
#   make test-fast  unit tests + smoke notebooks (under 5 minutes)
#   make demo       every notebook in the demo profile, headless, and a table of their metrics
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default. With an NVIDIA GPU: make lab TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
# The full datasets: ../shared/data on the project's machines, else ~/.cache/clusterkit (downloads).
ifeq ($(origin CLUSTERKIT_DATA), undefined)
ifneq ($(wildcard ../shared/data),)
export CLUSTERKIT_DATA := $(abspath ../shared/data)
endif
endif
export MPLBACKEND ?= Agg
PYTEST := $(BIN)/python -m pytest

.PHONY: install lab test test-fast demo check strip clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH) 2> >(grep -v "is ignored: it is neither" >&2)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[notebooks,test]" 2> >(grep -v "is ignored: it is neither" >&2)
	$(BIN)/python -m ipykernel install --sys-prefix --name clusterkit --display-name "Python (clusterkit)" >/dev/null
	touch $@

lab: install
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(LAB_ARGS) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

check: install
	$(BIN)/ruff check clusterkit widgets tests benchmarks
	$(BIN)/python .ci/nbstrip.py --check notebooks

strip: install
	$(BIN)/python .ci/nbstrip.py notebooks

test-fast: check
	$(PYTEST) -m "not slow and not browser" --timeout 600

test: check
	$(PYTEST) --timeout 1800 --durations 15

demo: install
	$(BIN)/python benchmarks/demo_notebooks.py --profile demo

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
