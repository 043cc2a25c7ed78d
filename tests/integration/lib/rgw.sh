# shellcheck shell=bash
# A real S3 store for the integration tests: a one-node Ceph RADOS Gateway (scripts/rgw.sh) on a
# free block of 127.0.0.1 ports, and the fault-injecting proxy (s3_fault_proxy.py) in front of it.
# Sourced, not executed. Works with or without harness.sh (with it, teardown joins its cleanup).
#
#   rgw_up                    start a gateway; export AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
#                             AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; set RGW_DIR, RGW_PORT;
#                             rgw_down runs at exit
#   rgw_down                  stop the proxy and the gateway, remove their files (idempotent)
#   rgw_stop_gateway / rgw_start_gateway   radosgw only (the start waits until S3 answers)
#   rgw_aws ARG...            the aws CLI against the gateway, path-style addressing
#   rgw_make_bucket NAME      create a bucket
#   rgw_ls BUCKET [PREFIX]    "KEY<TAB>SIZE" lines, sorted by key (nothing for no objects)
#   rgw_proxy_start           start s3_fault_proxy.py in front of the gateway: RGW_PROXY_PORT,
#                             RGW_PROXY_CONTROL, RGW_PROXY_ENDPOINT (http://127.0.0.1:PORT)
#   rgw_proxy CMD [K=V...]    one control command (cut, fail, stall, clear, stats, reset); prints
#                             the JSON reply; fails unless it says ok
#   rgw_proxy_stat PATH       one counter from `stats`, e.g. requests or faults.cut_down (0 if unset)
#   rgw_proxy_stop            stop the proxy (rgw_down does too)
#
# Environment: RGW_ROOT (where the cluster directories go, default /var/tmp),
# RGW_MEMSTORE_BYTES, RGW_ACCESS_KEY, RGW_SECRET_KEY (passed to scripts/rgw.sh).

RGW_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RGW_SH="$(cd "$RGW_LIB_DIR/../../.." && pwd)/scripts/rgw.sh"
RGW_PROXY_PY="$RGW_LIB_DIR/../s3_fault_proxy.py"
RGW_PORT_LOCKS=/var/tmp/backupfs-rgw-ports
RGW_DIR=""
RGW_PORT=""
RGW_LOCK_FD=""  # holds the flock on RGW_PORT's block while the cluster is ours
RGW_WATCHDOG_FD=""
RGW_PROXY_PID=""
RGW_PROXY_PORT=""
RGW_PROXY_CONTROL=""
RGW_PROXY_ENDPOINT=""

_rgw_log() { printf '[%(%H:%M:%S)T] rgw: %s\n' -1 "$*" >&2; }
_rgw_fail() {
    if declare -F harness_fail >/dev/null; then harness_fail "$*"; fi
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# _rgw_port_free PORT : nothing on 127.0.0.1 accepts connections on PORT.
# shellcheck disable=SC2016 # $1 is the inner shell's
_rgw_port_free() { ! timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

# _rgw_claim_ports : RGW_PORT = the base of a block of ten free ports in 20000..31999 (below the
# kernel's ephemeral range), flock'ed under RGW_PORT_LOCKS so that parallel tests (bash or
# rgwlib.py, which takes the same locks) never pick the same block. The lock dies with us.
_rgw_claim_ports() {
    local try base p fd free
    mkdir -p "$RGW_PORT_LOCKS"
    for ((try = 0; try < 100; try++)); do
        base=$((20000 + 10 * (RANDOM % 1200)))
        exec {fd}>"$RGW_PORT_LOCKS/$base.lock"
        if flock -n "$fd"; then
            free=1
            for ((p = base; p < base + 10; p++)); do
                _rgw_port_free "$p" || { free=0 && break; }
            done
            if ((free)); then
                RGW_PORT="$base"
                RGW_LOCK_FD="$fd"
                return 0
            fi
        fi
        exec {fd}>&-
    done
    _rgw_fail "no free block of ten ports on 127.0.0.1 in 20000..31999 after 100 tries"
}

# _rgw_at_exit : run rgw_down at exit: through harness.sh's cleanup when it is sourced, else
# in front of whatever EXIT trap is set.
_rgw_at_exit() {
    if declare -F harness_on_exit >/dev/null; then
        harness_on_exit rgw_down
        return
    fi
    local current parts
    current="$(trap -p EXIT)"
    [[ "$current" != *rgw_down* ]] || return 0
    if [[ -z "$current" ]]; then
        trap rgw_down EXIT
    else
        eval "parts=($current)" # trap -- 'COMMAND' EXIT
        # shellcheck disable=SC2064 # the current command, expanded now, runs after rgw_down
        trap "rgw_down; ${parts[2]}" EXIT
    fi
}

# _rgw_watchdog : `rgw.sh down` runs once nobody holds RGW_WATCHDOG_FD, the write end of a pipe:
# when this shell ends, even by SIGKILL (a ctest timeout), and so do the processes it starts
# later (they inherit the fd). The watchdog is its own session, reparented to init, so killing
# this test's process tree does not take it along; its output goes nowhere (no pipe of the
# caller stays open).
_rgw_watchdog() {
    # shellcheck disable=SC2016 # $0 and $1 are the inner shell's
    exec {RGW_WATCHDOG_FD}> >(setsid -f bash -c 'read -r _; exec bash "$0" down "$1"' \
        "$RGW_SH" "$RGW_DIR" >/dev/null 2>&1)
}

rgw_up() {
    [[ -z "$RGW_DIR" ]] || _rgw_fail "rgw_up: a gateway already runs in $RGW_DIR"
    local start=$SECONDS
    _rgw_claim_ports
    # The cluster's directory also holds the aws config and the proxy's files: `rgw.sh down`
    # removes them all.
    RGW_DIR="$(mktemp -d "${RGW_ROOT:-/var/tmp}/backupfs-rgw.XXXXXX")"
    _rgw_at_exit
    if ! bash "$RGW_SH" up "$RGW_DIR" "$RGW_PORT" >"$RGW_DIR/up.out" 2>&1; then
        _rgw_fail "scripts/rgw.sh up $RGW_DIR $RGW_PORT failed: $(cat "$RGW_DIR/up.out")"
    fi
    _rgw_watchdog
    # shellcheck source=/dev/null
    source "$RGW_DIR/env"
    # Debian's aws CLI (2.9) ignores AWS_ENDPOINT_URL: rgw_aws passes it; this file asks for
    # path-style addressing, which Ceph needs.
    printf '[default]\ns3 =\n    addressing_style = path\n' >"$RGW_DIR/aws-config"
    _rgw_log "gateway up on $AWS_ENDPOINT_URL in $((SECONDS - start))s ($RGW_DIR)"
}

rgw_down() {
    rgw_proxy_stop
    if [[ -n "$RGW_DIR" ]]; then
        if [[ -e "$RGW_DIR/ceph.conf" ]]; then
            bash "$RGW_SH" down "$RGW_DIR" || _rgw_log "scripts/rgw.sh down $RGW_DIR failed"
        else # `up` failed before it wrote anything of its own
            rm -rf --one-file-system -- "$RGW_DIR"
        fi
    fi
    if [[ -n "$RGW_WATCHDOG_FD" ]]; then
        exec {RGW_WATCHDOG_FD}>&- # the watchdog's `down` finds nothing left to do
    fi
    if [[ -n "$RGW_LOCK_FD" ]]; then
        exec {RGW_LOCK_FD}>&-
    fi
    RGW_DIR="" RGW_PORT="" RGW_LOCK_FD="" RGW_WATCHDOG_FD=""
}

rgw_stop_gateway() { bash "$RGW_SH" stop-gateway "$RGW_DIR" || _rgw_fail "rgw.sh stop-gateway failed"; }
rgw_start_gateway() { bash "$RGW_SH" start-gateway "$RGW_DIR" || _rgw_fail "rgw.sh start-gateway failed"; }

# rgw_aws ARG... : Debian's aws CLI (/usr/bin/aws, else the first aws on PATH) against the
# gateway, quiet unless it fails.
rgw_aws() {
    local aws=/usr/bin/aws
    [[ -x "$aws" ]] || aws=aws
    AWS_CONFIG_FILE="$RGW_DIR/aws-config" AWS_PAGER="" \
        "$aws" --endpoint-url "$AWS_ENDPOINT_URL" "$@"
}

rgw_make_bucket() {
    rgw_aws s3api create-bucket --bucket "$1" >/dev/null || _rgw_fail "cannot create bucket $1"
}

rgw_ls() {
    local out
    out="$(rgw_aws s3api list-objects-v2 --bucket "$1" --prefix "${2:-}" \
        --query 'Contents[].[Key,Size]' --output text)" || _rgw_fail "cannot list s3://$1/${2:-}"
    [[ "$out" == None || -z "$out" ]] || LC_ALL=C sort <<<"$out"
}

# _rgw_proxy_ready FILE : the proxy printed its ports (a JSON line) into FILE.
_rgw_proxy_ready() {
    kill -0 "$RGW_PROXY_PID" 2>/dev/null || _rgw_fail "s3_fault_proxy.py exited: $(cat "$1.err")"
    [[ -s "$1" ]]
}

rgw_proxy_start() {
    [[ -n "$RGW_PORT" ]] || _rgw_fail "rgw_proxy_start: no gateway (rgw_up first)"
    [[ -z "$RGW_PROXY_PID" ]] || _rgw_fail "rgw_proxy_start: a proxy already runs"
    local info="$RGW_DIR/proxy.json" deadline=$((SECONDS + 10)) line
    python3 "$RGW_PROXY_PY" --upstream "$RGW_PORT" </dev/null >"$info" 2>"$info.err" &
    RGW_PROXY_PID=$!
    until _rgw_proxy_ready "$info"; do
        ((SECONDS < deadline)) || _rgw_fail "s3_fault_proxy.py did not start in 10s"
        sleep 0.05
    done
    line="$(head -n 1 "$info")"
    [[ "$line" =~ \"listen\":\ ([0-9]+),\ \"control\":\ ([0-9]+) ]] ||
        _rgw_fail "s3_fault_proxy.py printed '$line'"
    RGW_PROXY_PORT="${BASH_REMATCH[1]}"
    RGW_PROXY_CONTROL="${BASH_REMATCH[2]}"
    RGW_PROXY_ENDPOINT="http://127.0.0.1:$RGW_PROXY_PORT"
    _rgw_log "fault proxy on $RGW_PROXY_ENDPOINT (control port $RGW_PROXY_CONTROL)"
}

rgw_proxy() {
    [[ -n "$RGW_PROXY_CONTROL" ]] || _rgw_fail "rgw_proxy: no proxy (rgw_proxy_start first)"
    python3 "$RGW_PROXY_PY" ctl "$RGW_PROXY_CONTROL" "$@" ||
        _rgw_fail "fault proxy command '$*' failed"
}

rgw_proxy_stat() {
    rgw_proxy stats | python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k, 0) if isinstance(v, dict) else 0
print(v)' "$1"
}

rgw_proxy_stop() {
    [[ -n "$RGW_PROXY_PID" ]] || return 0
    local deadline=$((SECONDS + 10))
    kill "$RGW_PROXY_PID" 2>/dev/null || true
    while kill -0 "$RGW_PROXY_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$RGW_PROXY_PID" 2>/dev/null || true
    wait "$RGW_PROXY_PID" 2>/dev/null || true
    RGW_PROXY_PID="" RGW_PROXY_PORT="" RGW_PROXY_CONTROL="" RGW_PROXY_ENDPOINT=""
}
