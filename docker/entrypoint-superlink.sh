#!/usr/bin/env bash
# Coordinator's SuperLink: TLS on, only registered SuperNodes admitted.
# One port carries the Fleet API (hospitals connect here), the Control API (the coordinator's
# `flwr`/`lhsfed-train` connect here) and the local runtime API.
#
# Environment (defaults in brackets):
#   LHSFED_TLS_DIR        folder with ca.pem, superlink.pem, superlink.key  [/pki]
#   LHSFED_BIND_HOST      address to listen on                             [0.0.0.0]
#   LHSFED_PORT           port to listen on                                [9092]
#   LHSFED_STATE_DB       SQLite state (registered nodes, runs); keep it on a volume  [/state/superlink.db]
#   LHSFED_BIN            folder holding flower-superlink (empty: from PATH)  []
set -euo pipefail

die() { echo "entrypoint-superlink: $*" >&2; exit 64; }

tls_dir=${LHSFED_TLS_DIR:-/pki}
host=${LHSFED_BIND_HOST:-0.0.0.0}
port=${LHSFED_PORT:-9092}
state_db=${LHSFED_STATE_DB:-/state/superlink.db}
bin=${LHSFED_BIN:+${LHSFED_BIN%/}/}

for file in ca.pem superlink.pem superlink.key; do
  [[ -f "$tls_dir/$file" ]] || die "LHSFED_TLS_DIR=$tls_dir has no $file (lhsfed pki init / server-cert)"
done
mkdir -p "$(dirname "$state_db")"

exec "${bin}flower-superlink" \
  --ssl-ca-certfile "$tls_dir/ca.pem" \
  --ssl-certfile "$tls_dir/superlink.pem" \
  --ssl-keyfile "$tls_dir/superlink.key" \
  --enable-supernode-auth \
  --disable-runtime-dependency-installation \
  --database "$state_db" \
  --host "$host" --port "$port"
