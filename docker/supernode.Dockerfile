# A hospital's SuperNode image: the official Flower SuperNode of the pinned version, plus this
# project (the ClientApp runs from the installed package, never from a run's app bundle:
# client/pinned_runner.py beside `flower-supernode --isolation process`, docs/pinned_code.md;
# `lhsfed site check` runs first).
# Build from the repository root (`make images` does, with podman when present, else docker):
#   docker build -f docker/supernode.Dockerfile -t lhsfed-supernode:0.1.0 .
# BASE: the image it starts from; where flwr/supernode cannot be pulled, the stand-in
#   docker/base.Dockerfile (same user, same binaries on PATH): --build-arg BASE=lhsfed-base:1.41.0
# WHEELHOUSE: a folder in the build context; when it holds wheels (`make wheelhouse`), torch and
#   the project's dependencies install from it only, with no index; otherwise from the indexes.
ARG BASE=flwr/supernode:1.41.0

FROM scratch AS wheels
ARG WHEELHOUSE=docker/wheelhouse
COPY ${WHEELHOUSE} /

FROM ${BASE}
USER root
WORKDIR /app
COPY pyproject.toml /app/pyproject.toml
COPY federation /app/federation
COPY client /app/client
COPY server /app/server
COPY strategies /app/strategies
COPY configs /app/configs
# The scripts sit in /app/docker, so the entrypoint's default spec (../configs/data) is /app/configs.
COPY docker/entrypoint-supernode.sh docker/entrypoint-lib.sh docker/healthcheck-supernode.sh /app/docker/
# The base install only, no extra: what a site runs (tests/unit/test_packaging.py pins it).
# CPU-only torch first, so `torch>=2.6` in the project pulls no CUDA build. torch's own C++
# headers and test folder (145 MB) serve only extension builds and torch's developers: removed
# (the container test trains with this image; sizes in docs/deployment.md).
RUN --mount=type=bind,from=wheels,target=/wheelhouse \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
 && python -m pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && python -m pip install --no-cache-dir -e /app \
 && torch_dir=$(python -c 'import os, torch; print(os.path.dirname(torch.__file__))') \
 && rm -rf "$torch_dir/include" "$torch_dir/test" \
 && chmod 0755 /app/docker/*.sh \
 && mkdir -p /ledger /state && chown app:app /ledger /state
USER app
# Liveness (both processes and the node's local runtime API), not "connected": Flower 1.41 has
# no local connection state to ask (docker/healthcheck-supernode.sh, docs/operations.md).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["/app/docker/healthcheck-supernode.sh"]
ENTRYPOINT ["/app/docker/entrypoint-supernode.sh"]
