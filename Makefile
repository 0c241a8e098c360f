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
# podman where systemd cgroups and raised ulimits are not available (this project's CI): runc,
# explicit ulimits (crun and podman's defaults fail there: "setrlimit RLIMIT_NOFILE: Operation
# not permitted"), the host's network for apt/pip, and the docker format, which keeps the
# HEALTHCHECK (the OCI format drops it). docker needs none of these.
BUILD_FLAGS    ?= $(if $(findstring podman,$(ENGINE)),--runtime runc --network host --format docker \
                  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
# The stand-in base's Debian, built from Debian's packages (no registry pull): debootstrap.
DEBIAN_IMAGE   ?= localhost/debian:bookworm-min
DEBIAN_ROOTFS  ?= /var/tmp/lhsfed-debian-rootfs
STANDIN_BASE   := localhost/lhsfed-base:1.41.0

.PHONY: setup run test lint bench bench-flamby bench-quality bench-frontier bench-defaults-frontier bench-scale-deployment bench-faults clean chromium nginx podman wheelhouse images \
        base-image debian-image standin-images

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

# The whole suite builds the images (make standin-images, minutes) in the background while the
# other tests run; tests/integration/test_containers.py, collected last, waits for that build
# (LHSFED_IMAGE_BUILD: its log; LOG.status: its exit status). With PYTEST_ARGS nothing is built
# ahead: the container test, if selected, builds the images itself.
IMAGE_BUILD_LOG := $(CURDIR)/outputs/image-build.log
test: $(STAMP) chromium nginx podman
	@if [ -z "$(PYTEST_ARGS)" ]; then \
	  mkdir -p $(dir $(IMAGE_BUILD_LOG)) && rm -f $(IMAGE_BUILD_LOG).status && \
	  { $(MAKE) -s standin-images ENGINE=podman > $(IMAGE_BUILD_LOG) 2>&1; \
	    echo $$? > $(IMAGE_BUILD_LOG).status; } & \
	  export LHSFED_IMAGE_BUILD=$(IMAGE_BUILD_LOG); \
	fi; \
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; wait; exit $$status

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

# The DP reference frontier per dataset (issue Q): a grid, chosen on exact pooled validation loss.
bench-frontier: $(STAMP)
	$(PY) -m benchmarks.dp_frontier $(BENCH_ARGS)

# The defaults as they are now against that stored frontier (the defaults' runs only, ~4 min).
bench-defaults-frontier: $(STAMP)
	$(PY) -m benchmarks.defaults_vs_frontier $(BENCH_ARGS)

# Deployment scale (issue S): N SuperNodes through the proxy, TLS, node auth (nginx needed) ->
# benchmarks/results/scale.md "Deployment curve" + deployment_scale.json; BENCH_ARGS="--quick": N=2, 1 round.
bench-scale-deployment: $(STAMP) nginx
	PYTHONPATH=$(CURDIR) $(PY) -m benchmarks.deployment_scale $(BENCH_ARGS)

# Faults at scale (issue S): a killed SuperLink (twice), 10 % of the SuperNodes killed, a node's
# network cut for a minute, on N=10 hospitals -> benchmarks/results/faults.md + deployment_faults.json.
bench-faults: $(STAMP) nginx
	PYTHONPATH=$(CURDIR) $(PY) -m benchmarks.deployment_faults $(BENCH_ARGS)

# Every wheel the images install: CPU torch, the project's dependencies with the coordinator
# and modeler extras (read from pyproject.toml), flwr for the stand-in base, setuptools for the
# editable install. Then `make images` needs no index. The CPU torch wheel comes from pip's own
# configuration when it has one (a find-links folder or a mirror), else from TORCH_INDEX.
# hydra-core's antlr4-python3-runtime 4.9 is published as source only: built here (pure Python).
wheelhouse:
	mkdir -p $(WHEELHOUSE)
	$(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  x = p["optional-dependencies"]; print("\n".join(p["dependencies"] + x["coordinator"] + x["modeler"]))' \
	  > $(WHEELHOUSE)/requirements.txt
	$(PYTHON) -m pip wheel -q --no-deps --wheel-dir $(WHEELHOUSE) 'antlr4-python3-runtime==4.9.*'
	$(PYTHON) -m pip download $(WHEEL_ARGS) --no-deps 'torch==2.13.0+cpu' 2>/dev/null \
	  || $(PYTHON) -m pip download $(WHEEL_ARGS) --index-url $(TORCH_INDEX) torch==2.13.0
	$(PYTHON) -m pip download $(WHEEL_ARGS) --find-links $(WHEELHOUSE) -r $(WHEELHOUSE)/requirements.txt \
	  'torch==2.13.0+cpu' flwr==1.41.0 'setuptools>=68' wheel

images:
	$(ENGINE) build $(BUILD_FLAGS) -f docker/supernode.Dockerfile --build-arg BASE=$(SUPERNODE_BASE) \
	  $(IMAGE_ARGS) -t lhsfed-supernode:$(IMAGE_TAG) .
	$(ENGINE) build $(BUILD_FLAGS) -f docker/superlink.Dockerfile --build-arg BASE=$(SUPERLINK_BASE) \
	  $(IMAGE_ARGS) -t lhsfed-superlink:$(IMAGE_TAG) .

base-image:
	$(ENGINE) build $(BUILD_FLAGS) -f docker/base.Dockerfile --build-arg DEBIAN=$(DEBIAN_IMAGE) \
	  $(IMAGE_ARGS) -t $(STANDIN_BASE) .

# Debian bookworm minbase as an image, from Debian's own packages (root: debootstrap), once.
debian-image:
	$(ENGINE) image inspect $(DEBIAN_IMAGE) >/dev/null 2>&1 || { \
	  $(SUDO) rm -rf $(DEBIAN_ROOTFS) && \
	  $(SUDO) debootstrap --variant=minbase bookworm $(DEBIAN_ROOTFS) >/dev/null && \
	  $(SUDO) rm -rf $(DEBIAN_ROOTFS)/var/cache/apt/archives/*.deb $(DEBIAN_ROOTFS)/var/cache/apt/*.bin && \
	  $(SUDO) tar -C $(DEBIAN_ROOTFS) -c . | $(ENGINE) import - $(DEBIAN_IMAGE) && \
	  $(SUDO) rm -rf $(DEBIAN_ROOTFS); }

# Where flwr/supernode and flwr/superlink cannot be pulled (here): the whole chain offline
# after the wheelhouse, from Debian's packages and PyPI. tests/integration/test_containers.py.
standin-images: debian-image wheelhouse
	$(MAKE) base-image
	$(MAKE) images SUPERNODE_BASE=$(STANDIN_BASE) SUPERLINK_BASE=$(STANDIN_BASE)

# podman, runc and debootstrap from Debian (the container test builds and runs the images).
podman:
	command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null \
	  || ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	      podman runc debootstrap)

clean:
	rm -rf outputs multirun .pytest_cache
