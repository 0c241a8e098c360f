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

# Images (docs/deployment.md, "Building the images"): podman when present, docker otherwise;
# the same Dockerfiles either way. SUPERNODE_BASE / SUPERLINK_BASE: the official Flower images,
# or lhsfed-base:1.41.0 (`make base-image`, docker/base.Dockerfile) where they cannot be pulled.
ENGINE         ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
SUPERNODE_BASE ?= flwr/supernode:1.41.0
SUPERLINK_BASE ?= flwr/superlink:1.41.0
IMAGE_TAG      ?= 0.1.0
# Wheels for offline builds, for the images' Python and platform (not this machine's).
WHEELHOUSE     ?= docker/wheelhouse
IMAGE_PYTHON   ?= 3.11
IMAGE_PLATFORM ?= manylinux_2_28_x86_64
TORCH_INDEX    ?= https://download.pytorch.org/whl/cpu
WHEEL_ARGS      = --dest $(WHEELHOUSE) --only-binary=:all: --python-version $(IMAGE_PYTHON) \
                  --platform $(IMAGE_PLATFORM) --platform manylinux2014_x86_64 --platform linux_x86_64
IMAGE_ARGS      = --build-arg WHEELHOUSE=$(WHEELHOUSE)

.PHONY: setup run test lint bench bench-flamby bench-quality clean chromium nginx wheelhouse images base-image

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

# Every wheel the images install: CPU torch, the project's dependencies with the coordinator
# and modeler extras (read from pyproject.toml), flwr for the stand-in base, setuptools for the
# editable install. Then `make images` needs no index.
wheelhouse:
	mkdir -p $(WHEELHOUSE)
	$(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  x = p["optional-dependencies"]; print("\n".join(p["dependencies"] + x["coordinator"] + x["modeler"]))' \
	  > $(WHEELHOUSE)/requirements.txt
	$(PYTHON) -m pip download $(WHEEL_ARGS) --index-url $(TORCH_INDEX) torch==2.13.0
	$(PYTHON) -m pip download $(WHEEL_ARGS) --find-links $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt \
	  'torch==2.13.0+cpu' flwr==1.41.0 'setuptools>=68' wheel

images:
	$(ENGINE) build -f docker/supernode.Dockerfile --build-arg BASE=$(SUPERNODE_BASE) $(IMAGE_ARGS) \
	  -t lhsfed-supernode:$(IMAGE_TAG) .
	$(ENGINE) build -f docker/superlink.Dockerfile --build-arg BASE=$(SUPERLINK_BASE) $(IMAGE_ARGS) \
	  -t lhsfed-superlink:$(IMAGE_TAG) .

base-image:
	$(ENGINE) build -f docker/base.Dockerfile $(IMAGE_ARGS) -t lhsfed-base:1.41.0 .

clean:
	rm -rf outputs multirun .pytest_cache
