# Coordinator's SuperLink image: the official Flower SuperLink of the pinned version, plus this
# project (the ServerApp runs inside the SuperLink's SuperExec, from the installed package) and
# nginx, the hospital-facing proxy that passes only the Fleet API (docker/entrypoint-proxy.sh).
# Build from the repository root (`make images` does, with podman when present, else docker):
#   docker build -f docker/superlink.Dockerfile -t lhsfed-superlink:0.1.0 .
# BASE and WHEELHOUSE: as in docker/supernode.Dockerfile (stand-in base: docker/base.Dockerfile).
ARG BASE=flwr/superlink:1.41.0

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
COPY docker/entrypoint-superlink.sh docker/entrypoint-proxy.sh docker/entrypoint-lib.sh docker/proxy.conf.template /app/docker/
# nginx from the distribution (the base image is Debian/Ubuntu or Alpine depending on the tag).
RUN (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
     && rm -rf /var/lib/apt/lists/*) || apk add --no-cache nginx
# CPU-only torch first, so `torch>=2.6` in the project pulls no CUDA build. The `coordinator` extra:
# the ServerApp and the coordinator's `lhsfed-train` / `lhsfed pki register`; the `modeler` extra:
# `lhsfed evaluate RUN` here, where the run folders are (its report's plots need matplotlib).
RUN --mount=type=bind,from=wheels,target=/wheelhouse \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
 && python -m pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && python -m pip install --no-cache-dir -e '/app[coordinator,modeler]' \
 && chmod 0755 /app/docker/*.sh \
 && mkdir -p /state /app/outputs && chown app:app /state /app/outputs
USER app
# The root filesystem is read-only: matplotlib (lhsfed evaluate's plots) caches under the tmpfs.
ENV MPLCONFIGDIR=/tmp/matplotlib
# 9092: the proxy (Fleet API, hospitals). The SuperLink itself listens on 127.0.0.1:9093.
EXPOSE 9092
ENTRYPOINT ["/app/docker/entrypoint-superlink.sh"]
