# A hospital's SuperNode image: the official Flower SuperNode of the pinned version, plus this
# project (the ClientApp runs from the installed package, never from a run's app bundle:
# client/pinned_runner.py beside `flower-supernode --isolation process`, docs/pinned_code.md;
# `lhsfed site check` runs first).
# Build from the repository root:  docker build -f docker/supernode.Dockerfile -t lhsfed-supernode .
FROM flwr/supernode:1.41.0
USER root
WORKDIR /app
COPY pyproject.toml /app/pyproject.toml
COPY federation /app/federation
COPY client /app/client
COPY server /app/server
COPY strategies /app/strategies
COPY configs /app/configs
COPY docker/entrypoint-supernode.sh /usr/local/bin/entrypoint-supernode.sh
COPY docker/entrypoint-lib.sh /usr/local/bin/entrypoint-lib.sh
# The base install only, no extra: what a site runs (tests/unit/test_packaging.py pins it).
RUN python -m pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && python -m pip install --no-cache-dir -e /app \
 && chmod 0755 /usr/local/bin/entrypoint-supernode.sh \
 && mkdir -p /ledger /state && chown app:app /ledger /state
USER app
ENTRYPOINT ["/usr/local/bin/entrypoint-supernode.sh"]
