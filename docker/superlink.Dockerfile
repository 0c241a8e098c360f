# Coordinator's SuperLink image: the official Flower SuperLink of the pinned version, plus this
# project (the ServerApp runs inside the SuperLink's SuperExec, from the installed package).
# Build from the repository root:  docker build -f docker/superlink.Dockerfile -t lhsfed-superlink .
FROM flwr/superlink:1.41.0
USER root
WORKDIR /app
COPY pyproject.toml /app/pyproject.toml
COPY federation /app/federation
COPY client /app/client
COPY server /app/server
COPY strategies /app/strategies
COPY configs /app/configs
COPY docker/entrypoint-superlink.sh /usr/local/bin/entrypoint-superlink.sh
# CPU-only torch first, so `torch>=2.6` in the project pulls no CUDA build.
RUN python -m pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && python -m pip install --no-cache-dir -e /app \
 && chmod 0755 /usr/local/bin/entrypoint-superlink.sh \
 && mkdir -p /state && chown app:app /state
USER app
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/entrypoint-superlink.sh"]
