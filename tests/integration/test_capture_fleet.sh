#!/bin/bash
# test_capture_fleet.sh BUILD_DIR
#
# backupfs-capture on a fleet: several domains in one command, each into OUTPUT/<domain>.
#   full: -d 'fleet-<pid>-*' selects four domains with 64 MiB disks (one shut off, read offline:
#         its full becomes a copy), two at a time; the summary table has a row per domain, the
#         stderr lines say their domain, each saveset has its own log file.
#   inc:  -d a,b -d c (repeated and comma lists) with --user/--password while b's saveset is
#         locked by another process (flock): a and c take their inc, b fails, exit 1, the
#         table says FAILED and why; b's saveset is untouched.
#   next: b plus a pattern that matches nothing: b's inc runs (and covers what it missed),
#         the pattern's row is FAILED naming it and the host, exit 1; a pattern alone too.
#   all:  --all selects every domain of the host (into an output root where no run can start:
#         the host's libvirtd is shared with other tests, whose domains stay untouched); and
#         over qemu+ssh, when the remote tests' sshd fixture (lib/remote.sh) is in the tree.
#   signal: SIGTERM mid-copy stops the running domain (cleaned up) and starts no other.
# Every restore point, mounted with backupfs, equals the guest-disk reference byte for byte.
# The password given with --password appears in no output and no log file.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp python3 qemu-img qemu-io flock

P="fleet-$$"
FLEET="$T/fleet"
PW="S3cret-$$-fleet-pw"
declare -A REFPOINTS # domain -> its restore points, oldest first (space separated)

# fleet_run RC OUT CMD... : CMD (backupfs-capture, possibly under flock) must exit RC; stdout
# in OUT, stderr in OUT.err. The password is not shown in the test's own log either.
fleet_run() {
    local want="$1" out="$2" rc=0 shown
    shift 2
    "$@" >"$out" 2>"$out.err" || rc=$?
    shown="${*//"$PW"/<password>}"
    ((rc == want)) || harness_fail "$shown: exit $rc, want $want: $(cat "$out" "$out.err")"
    harness_log "${shown//"$CAPTURE"/backupfs-capture} -> exit $rc:"$'\n'"$(cat "$out")"
}

# row OUT DOMAIN : the summary table's row of DOMAIN, fields separated by one blank.
row() { awk -v d="$2" '$1 == d { $1 = $1; print }' "$1"; }

# expect_row OUT DOMAIN LEVEL STATUS... : the row has that level and status (read, written
# and seconds are numbers; read > 0 when the status is ok).
expect_row() {
    local out="$1" dom="$2" level="$3" r
    shift 3
    r="$(row "$out" "$dom")"
    [[ "$r" =~ ^"$dom $level "([0-9]+)\ ([0-9]+)\ [0-9]+\.[0-9]{2}\ (.*)$ ]] ||
        harness_fail "no row '$dom $level ...' in the summary: $(cat "$out")"
    [[ "${BASH_REMATCH[3]}" == "$*"* ]] ||
        harness_fail "$dom: status '${BASH_REMATCH[3]}', want '$*': $(cat "$out")"
    [[ "$*" != ok ]] || ((BASH_REMATCH[1] > 0)) || harness_fail "$dom: 0 bytes read: $(cat "$out")"
}

# point DOMAIN POINT : DOMAIN's reference now is restore point POINT of its saveset.
point() {
    harness_snapshot_ref "$1" vda "$FLEET.ref/$1/$2.vda.raw"
    REFPOINTS[$1]="${REFPOINTS[$1]:-} $2"
}

# check_saveset DIR DOMAIN [REFDIR] : every restore point of DOMAIN mounts exact.
check_saveset() {
    local dir="$1" dom="$2" refdir="${3:-$FLEET.ref/$2}" mnt="$T/mnt" p
    local -a points
    read -ra points <<<"${REFPOINTS[$dom]}"
    harness_mount_backupfs "$BUILD_DIR" "$dir" "$mnt"
    for p in "${points[@]}"; do
        harness_cmp "$dom $p/vda.raw" "$refdir/$p.vda.raw" "$mnt/$p/vda.raw"
    done
    [[ "$(readlink "$mnt/latest")" == "${points[-1]}" ]] ||
        harness_fail "$dom: latest is $(readlink "$mnt/latest"), want ${points[-1]}"
    [[ "$(find "$mnt" -mindepth 1 -maxdepth 1 -type d | wc -l)" == "${#points[@]}" ]] ||
        harness_fail "$dom: points $(ls "$mnt"), want ${points[*]}"
    harness_unmount "$mnt"
}

setup_fleet() {
    local x
    for x in a b c d; do
        harness_create_domain "$P-$x" 64 1
        DOM="$P-$x"
        rnd vda 0 "$M"
        pat vda "0x1$x" $((5 * M + 1536)) $((130 * K + 512))
    done
    # d is shut off: read offline through qemu-nbd; its writes go into the image.
    harness_virsh destroy "$P-d" >/dev/null
    harness_offline_write "$P-d" vda $((20 * M)) $((3 * M)) 0x6d
}

run_full() {
    local out="$T/full.out" x log
    fleet_run 0 "$out" "$CAPTURE" -d "$P-*" -l full -o "$FLEET" --parallel 2
    for x in a b c; do expect_row "$out" "$P-$x" full ok; done
    expect_row "$out" "$P-d" copy ok
    grep -qx "4 domain(s) in [0-9.]* s: 4 ok, 0 skipped, 0 FAILED" "$out" ||
        harness_fail "no totals line: $(cat "$out")"
    for x in a b c; do point "$P-$x" virtnbdbackup.0; done
    point "$P-d" copy
    for x in a b c d; do
        log="$(find "$FLEET/$P-$x" -maxdepth 1 -name 'backup.full.*.log')"
        [[ -n "$log" ]] || harness_fail "no log file in $FLEET/$P-$x: $(ls "$FLEET/$P-$x")"
        grep -qF "domain $P-$x" "$log" || harness_fail "$log is not about $P-$x"
        ! grep -E "domain $P-[^$x]" "$log" || harness_fail "$log holds another domain's lines"
        grep -qE "^\[$P-$x\] [0-9-]+ [0-9:.]+ INFO " "$out.err" ||
            harness_fail "no stderr line prefixed [$P-$x]: $(cat "$out.err")"
        check_saveset "$FLEET/$P-$x" "$P-$x"
    done
    harness_log "ok: full fleet, four savesets exact"
}

run_inc_with_a_locked_saveset() {
    local out="$T/inc.out" x
    for x in a b c; do
        DOM="$P-$x"
        rnd vda $((M + 512)) $((300 * K))
        harness_guest_trim "$DOM" vda 0 $((256 * K))
        pat vda 0x7e $((40 * M)) $((64 * K))
    done
    fleet_run 1 "$out" flock "$FLEET/$P-b" "$CAPTURE" -d "$P-a,$P-b" -d "$P-c" -l inc \
        -o "$FLEET" --user fleetuser --password "$PW"
    expect_row "$out" "$P-a" inc ok
    expect_row "$out" "$P-b" - FAILED: "$FLEET/$P-b is in use by another"
    expect_row "$out" "$P-c" inc ok
    grep -qx "3 domain(s) in [0-9.]* s: 2 ok, 0 skipped, 1 FAILED" "$out" ||
        harness_fail "no totals line: $(cat "$out")"
    point "$P-a" virtnbdbackup.1
    point "$P-c" virtnbdbackup.1
    for x in a b c; do check_saveset "$FLEET/$P-$x" "$P-$x"; done
    harness_log "ok: a locked saveset fails its domain only"
}

run_unmatched_patterns() {
    local out="$T/next.out"
    fleet_run 1 "$out" "$CAPTURE" -d "$P-b" -d "$P-nothing*" -l inc -o "$FLEET" --password "$PW"
    expect_row "$out" "$P-b" inc ok
    expect_row "$out" "$P-nothing*" - FAILED: "matches no domain of qemu:///system"
    grep -qF -- "-d $P-nothing*: matches no domain of qemu:///system" "$out.err" ||
        harness_fail "no message naming the pattern: $(cat "$out.err")"
    point "$P-b" virtnbdbackup.1
    check_saveset "$FLEET/$P-b" "$P-b"
    expect_fail "a pattern alone that matches nothing" \
        "-d $P-zz*: matches no domain of qemu:///system" \
        "$CAPTURE" -d "$P-zz*" -l full -o "$FLEET"
    [[ ! -e "$FLEET/$P-zz*" ]] || harness_fail "a directory for the pattern was made"
}

run_bad_arguments() {
    expect_fail "-f with several domains" "-f/--socketfile names one socket" \
        "$CAPTURE" -d "$P-a,$P-b" -l full -o "$T/none" -f "$T/x.sock"
    expect_fail "no -d and no --all" "-d/--domain or --all is required" \
        "$CAPTURE" -l full -o "$T/none"
    expect_fail "a bad --nbd-connect" "--nbd-connect 127.0.0.1:99999: the port must be" \
        "$CAPTURE" -d "$P-a" -l full -o "$T/none" --nbd-connect 127.0.0.1:99999
    # A parse error that quotes the password (here: it also stands alone) shows it redacted.
    expect_fail "a parse error quoting the password" "<password>" \
        "$CAPTURE" -d "$P-a" -l full -o "$T/none" --password "$PW" "$PW"
}

# --all takes every domain of the host. This libvirtd is shared with other tests, whose
# domains must not be touched: the output root is a file, so every domain's run fails at
# once on its directory (before it does anything to the domain), and the table shows that
# every domain, ours among them, was selected.
run_all() {
    local out="$T/all.out" x rows
    : >"$T/notadir"
    fleet_run 1 "$out" "$CAPTURE" --all -l inc -o "$T/notadir" --parallel 4
    for x in a b c d; do
        expect_row "$out" "$P-$x" - FAILED: "cannot create $T/notadir/$P-$x"
    done
    ! grep -E " (ok|skipped)$" "$out" || harness_fail "--all backed up a domain: $(cat "$out")"
    rows=$(($(wc -l <"$out") - 2))
    grep -qx "$rows domain(s) in [0-9.]* s: 0 ok, 0 skipped, $rows FAILED" "$out" ||
        harness_fail "no totals line for $rows domains: $(cat "$out")"
    harness_log "ok: --all selected the host's $rows domains"
}

# --all over qemu+ssh: the domains of the host the URI names (this machine, reached through the
# remote tests' sshd on 127.0.0.2, lib/remote.sh). As in run_all, no run can start. Not run
# (said so) on a tree without lib/remote.sh (REMOTE_LIB= names another copy of it).
run_all_remote() {
    local lib="${REMOTE_LIB:-$HERE/lib/remote.sh}" out="$T/all-remote.out" x
    if [[ ! -f "$lib" ]]; then
        harness_log "not run: --all over qemu+ssh (no $lib)"
        return 0
    fi
    # shellcheck source=/dev/null
    source "$lib"
    remote_start_sshd
    fleet_run 1 "$out" "$CAPTURE" -U "$REMOTE_URI" --all -l inc -o "$T/notadir" --parallel 2 \
        --password "$PW"
    for x in a b c d; do expect_row "$out" "$P-$x" - FAILED:; done
    ! grep -E " (ok|skipped)$" "$out" || harness_fail "--all backed up a domain: $(cat "$out")"
    harness_log "ok: --all over qemu+ssh listed the remote host's domains"
}

# SIGTERM while the first of three domains copies (--parallel 1): it stops and cleans up as a
# run of its own does, the other two never start, exit 1, the table says so.
run_signal() {
    local root="$T/signal" out="$T/signal.out" partial pid rc=0 deadline x
    # The rows below show where the signal landed: a FAILED mid-copy, b and c never started.
    DOM="$P-a"
    rnd vda $((8 * M)) $((48 * M)) # enough to copy for a while
    partial="$root/$P-a/vda.full.data.partial"
    "$CAPTURE" -d "$P-[abc]" -l full -o "$root" --parallel 1 >"$out" 2>"$out.err" &
    pid=$!
    deadline=$((SECONDS + 60))
    until [[ -e "$partial" ]] || ((SECONDS > deadline)); do
        kill -0 "$pid" 2>/dev/null || break
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    ((rc == 1)) || harness_fail "fleet after SIGTERM: exit $rc, want 1: $(cat "$out" "$out.err")"
    expect_row "$out" "$P-a" - FAILED:
    for x in b c; do
        expect_row "$out" "$P-$x" - FAILED: "not started: interrupted by a signal"
        [[ ! -e "$root/$P-$x" ]] || harness_fail "$P-$x was started after the signal"
    done
    grep -qF "interrupted by signal 15" "$out.err" || harness_fail "no message about the signal: $(cat "$out.err")"
    [[ -z "$(find "$root" -name '*.partial' -o -name '*.data')" ]] ||
        harness_fail "files left after the signal: $(find "$root")"
    harness_virsh domjobinfo "$P-a" | grep -qE 'Job type: +None' ||
        harness_fail "$P-a still runs a backup job after the signal"
    harness_log "ok: SIGTERM stops the running domain and starts no other: $(row "$out" "$P-a")"
}

check_password_never_shown() {
    local hits
    hits="$(grep -rlF -- "$PW" "$T"/*.out "$T"/*.err "$FLEET" 2>/dev/null || true)"
    [[ -z "$hits" ]] || harness_fail "the password appears in: $hits"
    harness_log "ok: the password appears in no output and no log file"
}

setup_fleet
run_full
run_inc_with_a_locked_saveset
run_unmatched_patterns
run_bad_arguments
run_all
run_all_remote
run_signal
check_password_never_shown
echo "PASS: backupfs-capture fleets: patterns, lists, --all, a failed domain, every point exact"
