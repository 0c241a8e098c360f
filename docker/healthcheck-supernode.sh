#!/usr/bin/env bash
# The SuperNode image's HEALTHCHECK: exit 0 when this node's two processes run and its local
# runtime API answers, 1 with one line naming what is not. It is a liveness check, NOT a
# "connected to the SuperLink" check: Flower 1.41 exposes no local connection state (the
# runtime API's GET /health answers 200 from the moment flower-supernode starts, before and
# whether or not it reaches the SuperLink; its --health-server-address gRPC servicer always
# answers SERVING). Whether a site is connected: `lhsfed nodes` on the coordinator (`online`),
# or the node's log (`SuperNode ID: ...` after it was admitted; docs/operations.md).
#
# Environment (the container's own): LHSFED_NODE_PORT [9094], TMPDIR [/tmp], LHSFED_BIN.
set -euo pipefail

port=${LHSFED_NODE_PORT:-9094}
pids=${TMPDIR:-/tmp}/lhsfed-supernode-$port.pids  # written by entrypoint-supernode.sh
bin=${LHSFED_BIN:+${LHSFED_BIN%/}/}

unhealthy() { echo "unhealthy: $*"; exit 1; }

[[ -r "$pids" ]] || unhealthy "$pids missing: the node was not started (or is still checking its data)"
read -r node runner <"$pids"
kill -0 "$node" 2>/dev/null || unhealthy "flower-supernode (pid $node) is not running"
kill -0 "$runner" 2>/dev/null || unhealthy "this site's runner (pid $runner) is not running"
"${bin}python" -c 'import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as reply:
    sys.exit(reply.status != 200)' "$port" 2>/dev/null \
  || unhealthy "the node's runtime API on 127.0.0.1:$port does not answer GET /health"
echo "running: flower-supernode (pid $node), runner (pid $runner), runtime API 127.0.0.1:$port (not a connection check)"
