#!/usr/bin/env bash
# Hospital-facing TLS proxy (nginx) in front of a SuperLink bound to loopback: passes only the
# Fleet API. Renders docker/proxy.conf.template, checks it with `nginx -t`, runs nginx in front.
#
# Environment (defaults in brackets):
#   LHSFED_TLS_DIR        folder with ca.pem, superlink.pem, superlink.key  [/pki]
#   LHSFED_PROXY_HOST     address hospitals connect to                     [0.0.0.0]
#   LHSFED_PROXY_PORT     port hospitals connect to                        [9092]
#   LHSFED_UPSTREAM       the SuperLink on loopback, HOST:PORT             [127.0.0.1:9093]
#   LHSFED_PROXY_DIR      nginx's rendered config, pid and temp files      [$TMPDIR/lhsfed-proxy]
#   LHSFED_NGINX          nginx binary                                     [nginx from PATH, else /usr/sbin/nginx]
#   TMPDIR                scratch; a tmpfs with a read-only root filesystem [/tmp]
#   LHSFED_CONFIG_ERROR_DELAY  seconds to wait before exiting 64 on a configuration error [30]
set -euo pipefail

ENTRYPOINT_NAME=entrypoint-proxy
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/entrypoint-lib.sh
source "$here/entrypoint-lib.sh"
template=$here/proxy.conf.template
tls_dir=${LHSFED_TLS_DIR:-/pki}
listen_host=${LHSFED_PROXY_HOST:-0.0.0.0}
listen_port=${LHSFED_PROXY_PORT:-9092}
upstream=${LHSFED_UPSTREAM:-127.0.0.1:9093}
run_dir=${LHSFED_PROXY_DIR:-${TMPDIR:-/tmp}/lhsfed-proxy}
nginx=${LHSFED_NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

[[ -x "$nginx" ]] || die "LHSFED_NGINX=$nginx is not an executable nginx (apt-get install nginx-light)"
[[ -f "$template" ]] || die "$template not found"
for file in ca.pem superlink.pem superlink.key; do
  [[ -f "$tls_dir/$file" ]] || die "LHSFED_TLS_DIR=$tls_dir has no $file (lhsfed pki init / server-cert)"
  require_readable_file LHSFED_TLS_DIR "$tls_dir/$file" "lhsfed pki server-cert"
done
[[ "$upstream" =~ ^(127\.[0-9.]+|localhost|\[::1\]):[0-9]+$ ]] \
  || die "LHSFED_UPSTREAM=$upstream must be a loopback HOST:PORT (the SuperLink binds to loopback)"
[[ "$listen_port" =~ ^[0-9]+$ ]] || die "LHSFED_PROXY_PORT=$listen_port is not a port number"
for value in "$tls_dir" "$run_dir" "$listen_host"; do
  [[ "$value" =~ ^[A-Za-z0-9_./:@+-]+$ ]] || die "'$value': use a path/host without spaces or ; { } | & characters"
done

require_writable_dir "LHSFED_PROXY_DIR=$run_dir" "$run_dir" \
  "with a read-only root filesystem mount a tmpfs (--tmpfs /tmp) and set TMPDIR=/tmp"
tls_dir=$(cd "$tls_dir" && pwd)  # nginx resolves relative paths against its prefix, not $PWD
run_dir=$(cd "$run_dir" && pwd)
listen=$listen_host:$listen_port
[[ "$listen_host" == *:* ]] && listen="[$listen_host]:$listen_port"
sed -e "s|@TLS_DIR@|$tls_dir|g" -e "s|@RUN_DIR@|$run_dir|g" \
    -e "s|@UPSTREAM@|$upstream|g" -e "s|@LISTEN@|$listen|g" "$template" > "$run_dir/nginx.conf"

# As root (a test host, not the image: it runs as `app`) the workers would drop to `nobody`;
# keep them as the caller so they can use the run folder.
globals="daemon off;"
[[ "$(id -u)" == 0 ]] && globals="$globals user root;"
"$nginx" -t -q -e stderr -p "$run_dir" -c "$run_dir/nginx.conf" -g "$globals" || die "nginx rejected $run_dir/nginx.conf"
exec "$nginx" -e stderr -p "$run_dir" -c "$run_dir/nginx.conf" -g "$globals"
