#!/usr/bin/env bash
# A hospital's SuperNode: check the local data, then connect OUT to the SuperLink over TLS,
# authenticated by this site's registered key. Nothing listens for inbound connections
# except the node's local runtime API on 127.0.0.1.
#
# Environment (required unless a default is shown):
#   LHSFED_SUPERLINK          SuperLink address HOST:PORT (the coordinator gives it)
#   LHSFED_CA_CERT            federation CA certificate (ca.pem from the coordinator)
#   LHSFED_NODE_KEY           this site's private key (SITE.key from `lhsfed pki node-key`)
#   LHSFED_DATA_PATH          this site's data file (mounted read-only)
#   LHSFED_SITE_NAME          this site's name as it appears in the results
#   LHSFED_SPEC_PATH          this site's own dataset spec file (YAML); runs whose spec differs
#                             are refused                                [configs/data/$LHSFED_DATASET.yaml]
#   LHSFED_DATASET            bundled dataset spec, if no LHSFED_SPEC_PATH [uci_heart]
#   The site's privacy policy (docs/privacy.md). Required: the node does not start without them.
#   LHSFED_MAX_EPSILON        largest ε this site ever spends, over every run (its cap)
#   LHSFED_LEDGER_PATH        this site's privacy ledger, on a persistent volume
#   Optional policy (node config key in brackets; default after):
#   LHSFED_DELTA              this site's δ, at most 1/(10 x its training rows) (delta)
#                             [auto: min(1e-5, 1/(10 x its training rows)), 2 digits, rounded down]
#   LHSFED_NODE_STATE         where the node remembers its ledger's last entry (node-state),
#                             on a writable volume apart from the ledger's [beside LHSFED_NODE_KEY;
#                             a read-only key mount needs this set]
#   LHSFED_REQUIRE_DP         refuse privacy=off (require-dp)                 [true]
#   LHSFED_MIN_NOISE_MULTIPLIER  smallest DP noise multiplier accepted       [0]
#   LHSFED_MAX_ROUNDS         most rounds a run may ask (max-rounds)         [100]
#   LHSFED_MAX_LOCAL_EPOCHS   most local epochs per round (max-local-epochs) [10]
#   LHSFED_ACCOUNTANT         rdp or prv (accountant)                        [rdp]
#   LHSFED_MIN_EVAL_ROWS      smallest test split that is evaluated          [50]
#   LHSFED_MIN_CELL_SIZE      smallest released count (k)                    [10]
#   LHSFED_RELEASE_EPSILON_SHARE  share of a run's ε its DP releases spend   [0.5]
#   LHSFED_QUERY_EPSILON      ε of one compare or drift query (query-epsilon) [0.5]
#   LHSFED_TRUSTED_ENTITIES   YAML of app publishers this site accepts   [unset: no app check]
#   LHSFED_NODE_PORT          local runtime API port (127.0.0.1 only; one per node on a host,
#                             a busy port exits 64)                      [9094]
#   FLWR_HOME                 this node's Flower home (apps it installs)  [flwr-home beside the ledger]
#   LHSFED_BIN                folder holding lhsfed and flower-supernode; put first on PATH
#                                                                        [empty: from PATH]
#   LHSFED_APP_PIN            the only app this site runs, PUBLISHER/NAME[==VERSION]
#                                                 [lhs-federation/lhs-federation-run]
#   TMPDIR                    scratch (the runner's secret, the pid file the health check
#                             reads); a tmpfs with a read-only root filesystem [/tmp]
#   LHSFED_CONFIG_ERROR_DELAY seconds to wait before exiting 64 on a configuration error, so
#                             a restart policy does not loop hot (entrypoint-lib.sh)   [30]
#
# Before anything starts, every file it reads must exist and be readable, and every folder
# it writes (the ledger's, the node state's, FLWR_HOME, TMPDIR) must take a new file: each
# failure is one line naming the variable and the fix, then exit 64.
# The node runs with process isolation: beside it, this site's own runner
# (client/pinned_runner.py) takes each task from the node's runtime API (LHSFED_NODE_PORT)
# and runs the ClientApp installed in this image, never code from the run's app bundle;
# it refuses a bundle whose identity or client code differs (docs/pinned_code.md). If the
# node or the runner exits, the other is stopped and the script exits non-zero.
set -euo pipefail

ENTRYPOINT_NAME=entrypoint-supernode
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/entrypoint-lib.sh
source "$here/entrypoint-lib.sh"

required=(LHSFED_SUPERLINK LHSFED_CA_CERT LHSFED_NODE_KEY LHSFED_DATA_PATH LHSFED_SITE_NAME
          LHSFED_MAX_EPSILON LHSFED_LEDGER_PATH)
for var in "${required[@]}"; do
  [[ -n "${!var:-}" ]] || die "$var is not set: the site's privacy policy is mandatory (see docs/deployment.md)"
done
require_readable_file LHSFED_CA_CERT "$LHSFED_CA_CERT" "the federation's ca.pem from the coordinator"
require_readable_file LHSFED_NODE_KEY "$LHSFED_NODE_KEY" "this site's SITE.key from lhsfed pki node-key"
require_readable_file LHSFED_DATA_PATH "$LHSFED_DATA_PATH" "mount this site's data file read-only"
if [[ -n "${LHSFED_TRUSTED_ENTITIES:-}" ]]; then
  require_readable_file LHSFED_TRUSTED_ENTITIES "$LHSFED_TRUSTED_ENTITIES" "lhsfed pki trusted-entities"
fi
bin=${LHSFED_BIN:+${LHSFED_BIN%/}/}
# Flower's own binaries look up their helpers on PATH: LHSFED_BIN goes first there too.
[[ -n "$bin" ]] && export PATH="${LHSFED_BIN%/}:$PATH"
for tool in lhsfed flower-supernode python; do
  command -v "${bin}$tool" >/dev/null \
    || die "${bin}$tool: not found (set LHSFED_BIN to the folder holding lhsfed and flower-supernode)"
done
number='^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'
[[ "${LHSFED_DELTA:-}" == auto ]] && LHSFED_DELTA=  # the same as leaving it out
for var in LHSFED_MAX_EPSILON LHSFED_DELTA LHSFED_MIN_NOISE_MULTIPLIER LHSFED_MAX_ROUNDS \
           LHSFED_MAX_LOCAL_EPOCHS LHSFED_MIN_EVAL_ROWS LHSFED_MIN_CELL_SIZE \
           LHSFED_RELEASE_EPSILON_SHARE LHSFED_QUERY_EPSILON; do
  [[ -z "${!var:-}" || "${!var}" =~ $number ]] || die "$var=${!var} must be a number"
done
spec=${LHSFED_SPEC_PATH:-$here/../configs/data/${LHSFED_DATASET:-uci_heart}.yaml}
require_readable_file LHSFED_SPEC_PATH "$spec" "the site's dataset spec"
ledger=$LHSFED_LEDGER_PATH

# Every folder the node writes, checked now rather than at the first round's ledger entry.
require_writable_dir "LHSFED_LEDGER_PATH=$ledger" "$(dirname "$ledger")" \
  "mount a writable volume for the ledger there (e.g. -v lhsfed-ledger:/ledger)"
if [[ -n "${LHSFED_NODE_STATE:-}" ]]; then
  require_writable_dir "LHSFED_NODE_STATE=$LHSFED_NODE_STATE" "$(dirname "$LHSFED_NODE_STATE")" \
    "put it on a writable volume apart from the ledger's (e.g. -v lhsfed-node-state:/state)"
else
  require_writable_dir "LHSFED_NODE_STATE is not set and the node state goes beside LHSFED_NODE_KEY" \
    "$(dirname "$LHSFED_NODE_KEY")" \
    "the key is on a read-only mount: set LHSFED_NODE_STATE=/state/node.ledger-state.json on a writable volume apart from the ledger's (-v lhsfed-node-state:/state)"
fi
tmp=${TMPDIR:-/tmp}
require_writable_dir "TMPDIR=$tmp" "$tmp" \
  "with a read-only root filesystem mount a tmpfs (--tmpfs /tmp) and set TMPDIR=/tmp"

port=${LHSFED_NODE_PORT:-9094}
[[ "$port" =~ ^[0-9]+$ ]] || die "LHSFED_NODE_PORT=$port must be a port number"
# Two nodes on one host must not share a runtime port (the second would never serve) nor a
# Flower home (installed app bundles): a busy port is refused now; the home is per node.
"${bin}python" -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null \
  || die "LHSFED_NODE_PORT=$port: 127.0.0.1:$port is in use (another node on this host?); give each node its own LHSFED_NODE_PORT"
export FLWR_HOME=${FLWR_HOME:-$(dirname "$ledger")/flwr-home}
require_writable_dir "FLWR_HOME=$FLWR_HOME" "$FLWR_HOME" \
  "unset it (default: flwr-home beside the ledger) or point it to a writable volume"

# Refuse to join with data the training code would misread.
"${bin}lhsfed" site check --data "$LHSFED_DATA_PATH" --site "$LHSFED_SITE_NAME" \
  --spec "$spec" || die "site check failed for $LHSFED_DATA_PATH; node not started"

node_config="data-path='$LHSFED_DATA_PATH' site-name='$LHSFED_SITE_NAME' ledger-path='$ledger'"
node_config+=" spec-path='$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")' node-key='$LHSFED_NODE_KEY'"
node_config+=" max-epsilon=$LHSFED_MAX_EPSILON"
[[ -n "${LHSFED_DELTA:-}" ]] && node_config+=" delta=$LHSFED_DELTA"
[[ -n "${LHSFED_NODE_STATE:-}" ]] && node_config+=" node-state='$LHSFED_NODE_STATE'"
[[ -n "${LHSFED_REQUIRE_DP:-}" ]] && node_config+=" require-dp=${LHSFED_REQUIRE_DP,,}"
[[ -n "${LHSFED_ACCOUNTANT:-}" ]] && node_config+=" accountant='$LHSFED_ACCOUNTANT'"
for pair in MIN_NOISE_MULTIPLIER:min-noise-multiplier MAX_ROUNDS:max-rounds \
            MAX_LOCAL_EPOCHS:max-local-epochs MIN_EVAL_ROWS:min-eval-rows MIN_CELL_SIZE:min-cell-size \
            RELEASE_EPSILON_SHARE:release-epsilon-share QUERY_EPSILON:query-epsilon; do
  var=LHSFED_${pair%%:*}
  [[ -n "${!var:-}" ]] && node_config+=" ${pair#*:}=${!var}"
done
extra=()
[[ -n "${LHSFED_TRUSTED_ENTITIES:-}" ]] && extra+=(--trusted-entities "$LHSFED_TRUSTED_ENTITIES")

secret=$(mktemp "$tmp/lhsfed-superexec.XXXXXX")  # 0600: only our runner may take tasks
head -c 32 /dev/urandom >"$secret"
"${bin}flower-supernode" \
  --superlink "$LHSFED_SUPERLINK" \
  --root-certificates "$LHSFED_CA_CERT" \
  --auth-supernode-private-key "$LHSFED_NODE_KEY" \
  --node-config "$node_config" \
  --isolation process --superexec-auth-secret-file "$secret" \
  --host 127.0.0.1 --port "$port" \
  "${extra[@]}" &
node=$!
"${bin}python" -P -m client.pinned_runner serve --runtime-api-address "127.0.0.1:$port" \
  --pin "${LHSFED_APP_PIN:-lhs-federation/lhs-federation-run}" --superexec-auth-secret-file "$secret" &
runner=$!
# What docker/healthcheck-supernode.sh checks: both processes, and the node's runtime API.
pids=$tmp/lhsfed-supernode-$port.pids
echo "$node $runner" >"$pids"
trap 'kill -TERM "$node" "$runner" 2>/dev/null || true' TERM INT
status=0
wait -n "$node" "$runner" || status=$?
kill -TERM "$node" "$runner" 2>/dev/null || true
wait || true
rm -f "$secret" "$pids"
echo "entrypoint-supernode: node or runner exited (status $status); both stopped" >&2
# 64: the runner refused its configuration (e.g. LHSFED_APP_PIN): no hot restart loop either.
(( status == 64 )) && pause_before_exit
exit $((status ? status : 70))
