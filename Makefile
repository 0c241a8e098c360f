# Two commands a newcomer needs: `make run` and `make test`. Both set up .venv if missing.
# torch==2.13.0 (CPU) is installed before the project so that `torch>=2.6` pulls nothing more.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lhsfed-installed
PYTEST_ARGS ?=
# Headless browser the report test renders report.html with (Debian package; root or sudo).
CHROMIUM ?= /usr/bin/chromium
# Reverse proxy the deployment tests put in front of the SuperLink (Debian package).
NGINX    ?= /usr/sbin/nginx
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

BENCH_ARGS ?=

.PHONY: setup run test lint bench bench-flamby bench-quality clean chromium nginx

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lhsfed-train

chromium:
	test -x $(CHROMIUM) || ($(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium)

nginx:
	test -x $(NGINX) || ($(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q nginx-light)

test: $(STAMP) chromium nginx
	$(PY) -m pytest $(PYTEST_ARGS)

# Layers one way down (import-linter contract in pyproject.toml), then ruff lint and format;
# all three run, so one pass shows every problem. CI runs it beside `make test` (.ci/run).
lint: $(STAMP)
	@status=0; \
	$(VENV)/bin/lint-imports || status=1; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	exit $$status

# Scale benchmarks (issue F) -> benchmarks/RESULTS.md; BENCH_ARGS="--quick" for a smoke run.
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# FLamby Fed-Heart-Disease side by side (issue G) -> benchmarks/results/flamby_heart.{md,csv,png}.
bench-flamby: $(STAMP)
	$(PY) -m benchmarks.flamby_heart $(BENCH_ARGS)

# Model quality on every benchmark dataset (issue J) -> benchmarks/results/quality.{md,json};
# BENCH_ARGS="--quick" for a smoke run (one dataset, one seed, 2 rounds).
bench-quality: $(STAMP)
	$(PY) -m benchmarks.quality $(BENCH_ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
