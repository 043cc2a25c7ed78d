#!/usr/bin/env bash
# A one-node Ceph RADOS Gateway on 127.0.0.1 for the S3 tests and benchmarks, from Debian's
# ceph-mon, ceph-osd, radosgw and ceph-common. No systemd, no mgr, nothing in /etc/ceph or
# /var/lib/ceph: config, data, logs, pid files and admin sockets all live under DIR, so several
# clusters (one per DIR and PORT) run side by side.
#
#   rgw.sh up DIR [PORT]      start mon, OSD (memstore) and radosgw; create the test user; wait
#                             until S3 answers; print `export AWS_...` lines (also in DIR/env)
#   rgw.sh down DIR           stop every daemon of DIR (by pid file), then remove DIR
#   rgw.sh stop-gateway DIR   stop radosgw only (the "gateway down" fault)
#   rgw.sh start-gateway DIR  start it again and wait until S3 answers
#
# Ports: the block PORT..PORT+9 on 127.0.0.1. PORT is the S3 endpoint (default 7480), PORT+1 the
# mon (msgr v2), PORT+2..PORT+9 the OSD's messengers. Pick blocks ten apart for parallel clusters.
#
# Environment: RGW_ACCESS_KEY (default backupfs-test), RGW_SECRET_KEY (default
# backupfs-test-secret), RGW_MEMSTORE_BYTES (the OSD's memstore cap, default 4 GiB; the OSD holds
# about twice the stored data in RAM, and a full memstore hangs uploads instead of failing them),
# RGW_TIMEOUT (seconds for each wait, default 30).
#
# Exit codes: 0 done, 1 failed (the message names the step; the daemon logs are in DIR/log), 2 usage.
set -euo pipefail

ACCESS_KEY="${RGW_ACCESS_KEY:-backupfs-test}"
SECRET_KEY="${RGW_SECRET_KEY:-backupfs-test-secret}"
MEMSTORE_BYTES="${RGW_MEMSTORE_BYTES:-$((4 * 1024 * 1024 * 1024))}"
TIMEOUT="${RGW_TIMEOUT:-30}"

die() {
    printf 'rgw.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '7,11p' "$0" >&2
    exit 2
}

# wait_until TIMEOUT_S WHAT CMD... : poll CMD (every 50 ms) until it succeeds; fail after TIMEOUT_S.
# CMD keeps its stderr (so a die inside it is seen): it must be quiet while merely not ready.
wait_until() {
    local timeout="$1" what="$2" deadline
    shift 2
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what (logs: $DIR/log)"
        sleep 0.05
    done
}

ceph_cli() { timeout "$TIMEOUT" ceph -c "$DIR/ceph.conf" "$@"; }

write_conf() {
    local port="$1" fsid="$2"
    cat >"$DIR/ceph.conf" <<EOF
# Written by scripts/rgw.sh: a throwaway one-node cluster on 127.0.0.1, everything under $DIR.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$((port + 1))]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
# radosgw hangs fetching its config from the mon without this, even with cephx off.
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
# The data is in RAM: a nearly full host disk must not stop the mon (it would at 5% free).
mon data avail warn = 1
mon data avail crit = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
# A daemon whose port is taken exits after 2 s instead of the default 15 s.
ms bind retry count = 2
ms bind retry delay = 1
# Cuts radosgw's first start (pool and zone creation, each a mon proposal) from 8 s to 0.5 s.
paxos propose interval = 0.05

[mon]
mon data = $DIR/mon/\$id

[osd]
osd data = $DIR/osd/\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
ms bind port min = $((port + 2))
ms bind port max = $((port + 9))

[client.rgw]
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
# Deleted and overwritten objects free their RADOS data after a minute, not the default two
# hours: tests and benchmarks that rewrite savesets would fill the memstore.
rgw gc obj min wait = 60
rgw gc processor period = 30
EOF
}

# daemon_pid NAME : the pid of DIR's daemon NAME if it runs (its pid file names a live process
# started with DIR's config, not a recycled pid), else fail.
daemon_pid() {
    local pid cmdline
    pid="$(cat "$DIR/run/$1.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$DIR/ceph.conf"* ]] || return 1
    printf '%s\n' "$pid"
}

# not_running PID : PID has exited. A zombie counts as exited: the daemons are reparented to PID 1,
# which here may reap them only seconds later.
not_running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    [[ "${stat%% *}" == Z ]]
}

# stop_daemon NAME SIGNAL : send SIGNAL, wait until it exits; SIGKILL after TIMEOUT seconds.
stop_daemon() {
    local name="$1" sig="$2" pid deadline
    pid="$(daemon_pid "$name")" || {
        rm -f "$DIR/run/$name.pid"
        return 0
    }
    kill "-$sig" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while ! not_running "$pid" && ((SECONDS < deadline)); do sleep 0.02; done
    if ! not_running "$pid"; then
        printf 'rgw.sh: %s (pid %s) still running after %ss: SIGKILL\n' "$name" "$pid" "$TIMEOUT" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 10 "$name (pid $pid) to exit after SIGKILL" not_running "$pid"
    fi
    rm -f "$DIR/run/$name.pid"
}

# port_in_use PORT : something on 127.0.0.1 accepts connections on PORT.
# shellcheck disable=SC2016 # $1 is the inner shell's
port_in_use() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

# s3_answers : the gateway answers an HTTP request on its port (any S3 status line will do: an
# anonymous GET / is a ListAllMyBuckets). Pure bash, so no curl is needed.
s3_answers() {
    # shellcheck disable=SC2016 # $1 is the inner shell's
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        read -r proto status _ <&3
        [[ "$proto" == HTTP/1.* && "$status" =~ ^[0-9]{3}$ ]]' _ "$(cat "$DIR/port")" 2>/dev/null
}

# spawn NAME PROGRAM ARG... : start a daemon of DIR in the foreground (-f) in its own session,
# in the background, and write its pid file at once (a daemonizing radosgw writes its own only
# after it has set up, so a waiter could not tell "starting" from "exited"). stdio goes to a file:
# nothing holds the caller's pipes open.
spawn() {
    local name="$1" prog="$2"
    shift 2
    setsid "$prog" -f -c "$DIR/ceph.conf" "$@" </dev/null >>"$DIR/log/$name.stderr" 2>&1 &
    printf '%s\n' "$!" >"$DIR/run/$name.pid"
    # Until it has exec'd, the child is a copy of this shell that daemon_pid does not recognize.
    wait_until 10 "$name to start" daemon_pid "$name"
}

# gateway_ready : radosgw runs (it exits if it cannot bind its port) and answers S3.
gateway_ready() {
    daemon_pid client.rgw >/dev/null || die "radosgw exited: $(tail -n 3 "$DIR/log/client.rgw.log")"
    s3_answers
}

start_gateway() {
    daemon_pid client.rgw >/dev/null && die "radosgw of $DIR already runs"
    spawn client.rgw radosgw -n client.rgw
    wait_until "$TIMEOUT" "radosgw to answer S3 on 127.0.0.1:$(cat "$DIR/port")" gateway_ready
}

osd_up() {
    daemon_pid osd.0 >/dev/null || die "ceph-osd exited: $(tail -n 3 "$DIR/log/osd.0.log")"
    ceph_cli osd dump 2>/dev/null | grep -q '^osd\.0 up'
}

# mon_ready PORT : the mon runs (it exits if it cannot bind) and listens on PORT+1.
mon_ready() {
    daemon_pid mon.a >/dev/null || die "ceph-mon exited: $(tail -n 3 "$DIR/log/mon.a.log")"
    port_in_use "$(($1 + 1))"
}

start_mon() {
    local port="$1" fsid="$2"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$((port + 1))]" "$DIR/monmap" \
        >/dev/null || die "monmaptool failed"
    ceph-mon -c "$DIR/ceph.conf" -i a --mkfs --monmap "$DIR/monmap" ||
        die "ceph-mon --mkfs failed (see $DIR/log/mon.a.log)"
    spawn mon.a ceph-mon -i a
    wait_until "$TIMEOUT" "ceph-mon to listen on 127.0.0.1:$((port + 1))" mon_ready "$port"
}

start_osd() {
    local uuid id
    uuid="$(cat /proc/sys/kernel/random/uuid)"
    id="$(ceph_cli osd new "$uuid")" || die "ceph osd new failed (is the mon up? $DIR/log/mon.a.log)"
    [[ "$id" == 0 ]] || die "ceph osd new gave id '$id', want 0"
    mkdir -p "$DIR/osd/0"
    ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" 2>"$DIR/log/osd-mkfs.err" ||
        die "ceph-osd --mkfs failed: $(cat "$DIR/log/osd-mkfs.err")"
    spawn osd.0 ceph-osd -i 0
    wait_until "$TIMEOUT" "osd.0 to be up" osd_up
}

create_user() {
    timeout "$TIMEOUT" radosgw-admin -c "$DIR/ceph.conf" user create \
        --uid backupfs-test --display-name "backupfs tests" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >"$DIR/log/user-create.out" 2>&1 ||
        die "radosgw-admin user create failed: $(tail -n 5 "$DIR/log/user-create.out")"
}

write_env() {
    local port="$1"
    cat >"$DIR/env" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
EOF
}

# stop_all : stop DIR's daemons, the gateway first and the mon last. The OSD gets SIGKILL at
# once: on SIGTERM memstore writes all its data into DIR (gigabytes for the benchmarks), which is
# thrown away anyway.
stop_all() {
    stop_daemon client.rgw TERM
    stop_daemon osd.0 KILL
    stop_daemon mon.a TERM
}

# A failed `up` stops what it started and keeps DIR with its logs; `rgw.sh down DIR` removes it.
up_failed() {
    trap - EXIT
    stop_all
    printf 'rgw.sh: up failed; logs kept in %s/log (rgw.sh down %s removes it)\n' "$DIR" "$DIR" >&2
}

cmd_up() {
    local port="${1:-7480}" fsid p
    if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1024 || port + 9 > 65535)); then
        die "PORT must be a number in 1024..65526 (it uses PORT..PORT+9), got '$port'"
    fi
    [[ ! -e "$DIR/ceph.conf" ]] || die "$DIR already holds a cluster (rgw.sh down $DIR first)"
    for ((p = port; p <= port + 9; p++)); do
        ! port_in_use "$p" || die "127.0.0.1:$p is in use (the cluster needs PORT..PORT+9 = $port..$((port + 9)))"
    done
    mkdir -p "$DIR"/{run,log,mon,crash,rgw}
    trap up_failed EXIT
    : >"$DIR/keyring"
    printf '%s\n' "$port" >"$DIR/port"
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    write_conf "$port" "$fsid"
    start_mon "$port" "$fsid"
    start_osd
    # radosgw-admin creates the default zone and its pools before radosgw starts: the two
    # creating them at once can race.
    create_user
    start_gateway
    write_env "$port"
    trap - EXIT
    cat "$DIR/env"
}

# A DIR that is gone is already down (teardown may run twice); a DIR without our ceph.conf is
# refused rather than removed.
cmd_down() {
    [[ -e "$DIR" ]] || return 0
    require_cluster
    stop_all
    rm -rf --one-file-system -- "$DIR"
}

require_cluster() {
    head -n 1 "$DIR/ceph.conf" 2>/dev/null | grep -q '^# Written by scripts/rgw.sh' ||
        die "$DIR holds no cluster of rgw.sh (no ceph.conf written by it)"
}

main() {
    (($# >= 2)) || usage
    local cmd="$1"
    DIR="$(realpath -m -- "$2")"
    shift 2
    case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    stop-gateway)
        require_cluster
        stop_daemon client.rgw TERM
        ;;
    start-gateway)
        require_cluster
        start_gateway
        ;;
    *) usage ;;
    esac
}

main "$@"
