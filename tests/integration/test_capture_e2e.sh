#!/bin/bash
# test_capture_e2e.sh BUILD_DIR
#
# backupfs-capture against real running TCG domains with 64 MiB qcow2 disks, guest writes
# (random data and patterns, not 64 KiB aligned) and trims of ranges that held data between
# the backups. Two variants:
#   plain: one disk; full, inc, inc, an inc killed mid-copy (SIGKILL) then an inc that must
#          clean up after it, then a copy; a run on a locked directory fails; a full backup
#          into a full disk fails cleanly; virtnbdrestore restores our full backup.
#   lz4:   -z, two disks; full, inc, inc, an inc with -f SOCKET killed mid-copy then an inc
#          that must recognise its stale job, auto (becomes inc), diff.
# Every restore point, mounted with backupfs, equals the guest-disk reference byte for byte
# (trimmed ranges read as zeros). Also checked: the .cpt list, checkpoints/, vmconfig and
# qcow.json files, no .partial left, backupfs-restore -a verify, clean failures for an unknown
# domain and for an inc without a chain.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp python3 qemu-img virtnbdrestore flock

run_plain() {
    local start=$SECONDS
    start_variant plain 1
    first_points
    check_killed_run
    harness_guest_trim "$DOM" vda $((16 * M)) $((8 * M + 512))
    capture copy
    check_files
    check_mount
    check_virtnbdrestore
    harness_log "plain: done in $((SECONDS - start))s"
}

run_lz4() {
    local start=$SECONDS
    start_variant lz4 2
    rnd vdb $((3 * M + 512)) $((5 * M))
    first_points -z
    # A socket of the user's (-f): the stale job is still recognised by its scratch files.
    mkdir -m 0777 "$T/sockets"
    check_killed_run -z -f "$T/sockets/lz4.sock"
    rnd vdb $((10 * M)) "$M"
    harness_guest_trim "$DOM" vdb $((4 * M)) $((2 * M))
    capture auto -z
    pat vda 0x77 $((30 * M + 512)) $((3 * K))
    harness_guest_trim "$DOM" vda 0 $((512 * K))
    harness_guest_trim "$DOM" vdb $((10 * M)) $((64 * K))
    capture diff -z
    check_files
    check_mount
    harness_log "lz4: done in $((SECONDS - start))s"
}

expect_fail "unknown domain" "bfsit-no-such-domain" \
    "$CAPTURE" -d bfsit-no-such-domain -l full -o "$T/none"
run_plain
run_lz4
echo "PASS: backupfs-capture copy/full/inc/auto/diff, plain and lz4, every restore point exact"
