# clusterkit — every target installs what it needs first.
#   make lab        virtual environment + kernel, then JupyterLab on notebooks/ (127.0.0.1, token)
#   make test       everything: lint, stripped notebooks, unit tests, every notebook (smoke + demo)
#   make test-fast  unit tests + smoke notebooks (under 5 minutes)
#   make demo       every notebook in the demo profile, headless, and a table of their metrics
#   make screenshots  the README's browser screenshots (notebooks/figures/browser_*.png)
#   make reproduce  the papers' tables on a GPU (benchmarks/results/); ARGS="--cpu --tiny" to try it
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
# The browser tests (tests/browser) drive JupyterLab in Debian's Chromium, never a downloaded one.
CHROMIUM ?= /usr/bin/chromium

.PHONY: install lab test test-fast demo check strip clean browser screenshots reproduce

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

test: check browser
	$(PYTEST) --timeout 1800 --durations 15

# Debian's Chromium for the browser tests, when it is missing and this machine lets us install
# it (root and apt-get); otherwise nothing happens and the browser tests skip, saying why.
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
		  || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
		       chromium >/dev/null; }; } \
		|| echo "could not install chromium: the browser tests will be skipped" >&2; \
	else \
		echo "no $(CHROMIUM), and installing it needs root and apt-get:" \
		     "the browser tests will be skipped" >&2; \
	fi

screenshots: install browser
	CLUSTERKIT_SCREENSHOTS=notebooks/figures $(PYTEST) tests/browser -m browser --timeout 600 -q

demo: install
	$(BIN)/python benchmarks/demo_notebooks.py --profile demo

# every method in its paper profile, several seeds; refuses without a GPU unless ARGS has --cpu
reproduce: install
	$(BIN)/python benchmarks/reproduce.py $(ARGS)

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
