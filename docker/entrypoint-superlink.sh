#!/usr/bin/env bash
# Coordinator's SuperLink: TLS on, only registered SuperNodes admitted, and in front of it the
# hospital-facing proxy (docker/entrypoint-proxy.sh) that passes only the Fleet API.
# Flower 1.41 serves Fleet, Control (no authentication without Flower's enterprise plugin) and
# runtime APIs on one port, so the SuperLink listens on loopback only: the coordinator's
# `lhsfed-train` / `lhsfed pki register` reach Control there, on the SuperLink host.
#
# Environment (defaults in brackets):
#   LHSFED_TLS_DIR        folder with ca.pem, superlink.pem, superlink.key  [/pki]
#   LHSFED_BIND_HOST      loopback address the SuperLink listens on          [127.0.0.1]
#   LHSFED_PORT           SuperLink port (Control + Fleet + runtime, loopback) [9093]
#   LHSFED_PROXY_HOST     address hospitals connect to (the proxy)           [0.0.0.0]
#   LHSFED_PROXY_PORT     port hospitals connect to (Fleet API only)         [9092]
#   LHSFED_RUNS_ROOT      the only folder a run's run.output_dir may lie in  [$PWD/outputs]
#   LHSFED_STATE_DB       SQLite state (registered nodes, runs); keep it on a volume  [/state/superlink.db]
#   LHSFED_BIN            folder holding flower-superlink and flower-superexec; put first
#                         on PATH (Flower finds its helpers there)  [empty: from PATH]
#   FLWR_HOME             Flower's home (the app bundles the ServerApp installs)
#                                                          [flwr-home beside LHSFED_STATE_DB]
#   TMPDIR                scratch; a tmpfs with a read-only root filesystem  [/tmp]
#   LHSFED_CONFIG_ERROR_DELAY  seconds to wait before exiting 64 on a configuration error,
#                         so a restart policy does not loop hot (entrypoint-lib.sh)  [30]
# Any start failure prints one line naming its cause, then exits 64 (after the delay).
set -euo pipefail

ENTRYPOINT_NAME=entrypoint-superlink
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/entrypoint-lib.sh
source "$here/entrypoint-lib.sh"
tls_dir=${LHSFED_TLS_DIR:-/pki}
host=${LHSFED_BIND_HOST:-127.0.0.1}
port=${LHSFED_PORT:-9093}
state_db=${LHSFED_STATE_DB:-/state/superlink.db}
bin=${LHSFED_BIN:+${LHSFED_BIN%/}/}
# flower-superlink starts flower-superexec by name, from PATH: LHSFED_BIN goes first there too.
[[ -n "$bin" ]] && export PATH="${LHSFED_BIN%/}:$PATH"
export LHSFED_RUNS_ROOT=${LHSFED_RUNS_ROOT:-$PWD/outputs}

for file in ca.pem superlink.pem superlink.key; do
  [[ -f "$tls_dir/$file" ]] || die "LHSFED_TLS_DIR=$tls_dir has no $file (lhsfed pki init / server-cert)"
  require_readable_file LHSFED_TLS_DIR "$tls_dir/$file" "lhsfed pki server-cert"
done
[[ "$host" =~ ^(127\.[0-9.]+|localhost|::1)$ ]] \
  || die "LHSFED_BIND_HOST=$host: the SuperLink's Control API has no authentication; bind it to 127.0.0.1 and let hospitals in through the proxy (LHSFED_PROXY_PORT)"
for tool in flower-superlink flower-superexec python; do
  command -v "${bin}$tool" >/dev/null \
    || die "${bin}$tool: not found (set LHSFED_BIN to the folder holding flower-superlink)"
done
[[ "$port" =~ ^[0-9]+$ ]] || die "LHSFED_PORT=$port must be a port number"
proxy_port=${LHSFED_PROXY_PORT:-9092}
for pair in "LHSFED_PORT:$host:$port" "LHSFED_PROXY_PORT:${LHSFED_PROXY_HOST:-0.0.0.0}:$proxy_port"; do
  var=${pair%%:*} address=${pair#*:}
  "${bin}python" -c 'import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))' "$address" 2>/dev/null \
    || die "$var: $address is in use or cannot be bound; choose a free port"
done
require_writable_dir "LHSFED_STATE_DB=$state_db" "$(dirname "$state_db")" \
  "mount a writable volume there (e.g. -v lhsfed-state:/state)"
require_writable_dir "LHSFED_RUNS_ROOT=$LHSFED_RUNS_ROOT" "$LHSFED_RUNS_ROOT" \
  "mount a writable volume there (e.g. -v lhsfed-runs:/app/outputs)"
export FLWR_HOME=${FLWR_HOME:-$(dirname "$state_db")/flwr-home}
require_writable_dir "FLWR_HOME=$FLWR_HOME" "$FLWR_HOME" \
  "unset it (default: flwr-home beside LHSFED_STATE_DB) or point it to a writable volume"
require_writable_dir "TMPDIR=${TMPDIR:-/tmp}" "${TMPDIR:-/tmp}" \
  "with a read-only root filesystem mount a tmpfs (--tmpfs /tmp) and set TMPDIR=/tmp"

"${bin}flower-superlink" \
  --ssl-ca-certfile "$tls_dir/ca.pem" \
  --ssl-certfile "$tls_dir/superlink.pem" \
  --ssl-keyfile "$tls_dir/superlink.key" \
  --enable-supernode-auth \
  --disable-runtime-dependency-installation \
  --database "$state_db" \
  --host "$host" --port "$port" &
children=("$!")
upstream=$host:$port
[[ "$host" == *:* ]] && upstream="[$host]:$port"
LHSFED_TLS_DIR=$tls_dir LHSFED_UPSTREAM=$upstream bash "$here/entrypoint-proxy.sh" &
children+=("$!")
trap 'kill -TERM "${children[@]}" 2>/dev/null || true' TERM INT
# Either process ending ends the container: a SuperLink without its proxy serves no hospital,
# a proxy without its SuperLink answers 502.
status=0
wait -n "${children[@]}" || status=$?
kill -TERM "${children[@]}" 2>/dev/null || true
wait || true
echo "entrypoint-superlink: flower-superlink or its proxy exited (status $status); SuperLink and proxy stopped" >&2
exit $((status ? status : 70))
