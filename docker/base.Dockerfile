# Stand-in for the official flwr/supernode:1.41.0 and flwr/superlink:1.41.0 images, for sites
# that cannot pull from Docker Hub: Debian (the minbase-built slim image) with its Python 3.11,
# flwr==1.41.0 in a virtual environment at /python/venv, user `app` (uid 49999, home /app),
# and the same binaries on PATH (flower-supernode, flower-superlink, flower-superexec, flwr,
# python), as the official images have them. Not Flower's own image: made here, from the
# distribution's packages and PyPI (or the wheelhouse).
#   docker build -f docker/base.Dockerfile -t lhsfed-base:1.41.0 .    (make base-image)
#   make images SUPERNODE_BASE=lhsfed-base:1.41.0 SUPERLINK_BASE=lhsfed-base:1.41.0
# DEBIAN: a registry mirror's copy, or an image you made with `debootstrap --variant=minbase
#   bookworm`; WHEELHOUSE: as in docker/supernode.Dockerfile (flwr from it, no index).
ARG DEBIAN=debian:bookworm-slim

FROM scratch AS wheels
ARG WHEELHOUSE=docker/wheelhouse
COPY ${WHEELHOUSE} /

FROM ${DEBIAN}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libsqlite3-0 \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=wheels,target=/wheelhouse \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi \
 && python3 -m venv /python/venv \
 && /python/venv/bin/python -m pip install --no-cache-dir flwr==1.41.0 \
 && useradd --no-create-home --home-dir /app -c "" --uid 49999 app \
 && mkdir -p /app && chown -R app:app /app /python/venv
ENV PATH=/python/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONIOENCODING=UTF-8 \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    HOME=/app
WORKDIR /app
USER app
