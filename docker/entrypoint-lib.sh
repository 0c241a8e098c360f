# Sourced by the entrypoints (not run): start checks shared by SuperLink, proxy and SuperNode.
# The caller sets ENTRYPOINT_NAME (the prefix of its error lines).
#
#   LHSFED_CONFIG_ERROR_DELAY  seconds to wait after a configuration error before exiting 64,
#                              so that a restart policy (compose `restart: unless-stopped`,
#                              podman/docker --restart) retries every 30 s instead of in a
#                              hot loop; the error line is printed first. 0 exits at once;
#                              at most 300; not a whole number: 30.     [30]

config_error_delay() {
  local delay=${LHSFED_CONFIG_ERROR_DELAY:-30}
  [[ "$delay" =~ ^[0-9]+$ ]] || delay=30
  (( delay > 300 )) && delay=300
  echo "$delay"
}

# Wait before a configuration error's exit. As a container's PID 1, bash ignores SIGTERM
# unless trapped: the trap lets `docker stop` end the wait at once.
pause_before_exit() {
  local delay sleeper
  delay=$(config_error_delay)
  (( delay > 0 )) || return 0
  sleep "$delay" &
  sleeper=$!
  trap 'kill "$sleeper" 2>/dev/null; exit 64' TERM INT
  wait "$sleeper" || true
  trap - TERM INT
}

# One line naming the cause and its fix, then (after the delay) exit 64.
die() {
  echo "$ENTRYPOINT_NAME: $*" >&2
  pause_before_exit
  exit 64
}

# VAR=PATH must be a file this user can read.
require_readable_file() {
  local var=$1 path=$2 fix=$3
  [[ -f "$path" ]] || die "$var=$path: file not found ($fix)"
  [[ -r "$path" ]] || die "$var=$path: not readable by uid $(id -u) (owner uid $(stat -c %u "$path"), mode $(stat -c %a "$path")): run \`sudo chown $(id -u) $path\` on the host (lhsfed pki ... --owner-uid $(id -u) for a new key)"
}

# DIR must exist (it is created if need be) and take a new file: a probe file is created
# and removed, which also catches a read-only mount (root passes permission bits, not EROFS).
require_writable_dir() {
  local what=$1 dir=$2 fix=$3 probe
  if mkdir -p -- "$dir" 2>/dev/null && probe=$(mktemp "$dir/.lhsfed-write-probe.XXXXXX" 2>/dev/null); then
    rm -f -- "$probe"
    return 0
  fi
  die "$what: $dir is not writable by uid $(id -u); $fix"
}
