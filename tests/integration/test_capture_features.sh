#!/bin/bash
# test_capture_features.sh BUILD_DIR
#
# backupfs-capture beyond the basic levels, against real libvirtd and TCG domains with two
# 64 MiB qcow2 disks; every restore point mounted with backupfs equals its reference:
#   chain:   full -w 1; libvirt loses its checkpoint records -> the next inc (-w 2) redefines
#            them from checkpoints/; SIGTERM mid-inc aborts cleanly (exit 1, no .partial, no new
#            checkpoint, no job, .cpt unchanged) and the next inc is exact; -q (nbdinfo maps);
#            -p and -T skip without writing; the shut-off domain: inc becomes a diff read through
#            qemu-nbd (a warning: exit 2 with -e), copy works, -S takes an inc with a checkpoint
#            and stops the domain again; log files; a second domain's run is refused.
#   broken:  a guest agent channel without an agent: the freeze fails with a warning only;
#            a checkpoint's bitmap removed from QEMU: -l inc fails naming it, -l auto moves the
#            old chain to broken-chain.<time> (still mountable, still exact) and starts anew.
#   disks:   -x and -i select disks; -t raw writes sparse raw images equal to the disks; a
#            progress bar on a terminal only, not with -n;
#            auto on a shut-off domain without a chain fails saying what to do.
#   raw:     a raw disk is skipped unless --raw, which takes it whole (as <disk>.copy.data) in
#            full and copy backups, online and offline, never in an inc.
#   iothreads: disks served by iothreads (QEMU 7.2 aborts the domain when an NBD client
#            disconnects from such an export before the job has ended): a full into a full
#            disk, full -w 2, inc, a second run while an inc of ours (stopped with SIGSTOP)
#            or another tool's job runs, a SIGTERM mid-inc, -q refused; the domain keeps
#            running through all of them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp python3 qemu-img qemu-io qemu-nbd nbdinfo

last_log() { printf '%s/capture.%d.out' "$T" "$((${#POINTS[@]} - 1))"; }

expect_in_log() { # expect_in_log FILE TEXT
    grep -qF -- "$2" "$1" || harness_fail "$(basename "$1") lacks '$2': $(cat "$1")"
}

domstate() { harness_virsh domstate "$DOM" | head -n 1; }

# job_type CONTEXT : the domain's job type from one `virsh domjobinfo` (a mismatch is
# reported with that same answer, not a second one taken later).
job_type() {
    local info
    info="$(harness_virsh domjobinfo "$DOM" 2>&1)" ||
        harness_fail "$1: virsh domjobinfo $DOM failed: $info"
    [[ "$info" =~ Job\ type:\ +([A-Za-z]+) ]] ||
        harness_fail "$1: no job type in virsh domjobinfo's answer: $info"
    printf '%s\n' "${BASH_REMATCH[1]}"
}

no_job() {
    local type
    type="$(job_type "$1")"
    [[ "$type" == None ]] || harness_fail "$1: a backup job is still running: job type $type"
}

# SIGTERM while an inc copies: exit 1, nothing of the run left, the chain intact.
check_sigterm() {
    local partial="$OUT/vda.inc.virtnbdbackup.$CHECKPOINTS.data.partial" rc=0
    local cpt_before
    cpt_before="$(cat "$OUT/$DOM.cpt")"
    rnd vda $((8 * M)) $((40 * M))
    inc_in_background "$T/term.out"
    kill -TERM "$INC_PID" 2>/dev/null || true
    wait "$INC_PID" || rc=$?
    [[ -e "${partial%.partial}" ]] && harness_fail "SIGTERM: the run finished before the signal"
    ((rc == 1)) || harness_fail "SIGTERM: exit $rc, want 1: $(cat "$T/term.out")"
    expect_in_log "$T/term.out" "interrupted by signal 15"
    [[ -z "$(find "$OUT" -name '*.partial')" ]] || harness_fail "SIGTERM left .partial files: $(ls "$OUT")"
    [[ "$(cat "$OUT/$DOM.cpt")" == "$cpt_before" ]] || harness_fail "SIGTERM changed $DOM.cpt"
    ! harness_virsh checkpoint-info "$DOM" "virtnbdbackup.$CHECKPOINTS" >/dev/null 2>&1 ||
        harness_fail "SIGTERM left checkpoint virtnbdbackup.$CHECKPOINTS"
    no_job "SIGTERM"
    harness_log "ok: SIGTERM mid-inc: $(grep -m1 'interrupted' "$T/term.out")"
}

# -p prints the estimate and writes nothing; -T above it skips the backup.
check_estimates() {
    local files
    files="$(ls "$OUT" | grep -c '\.data$')"
    rnd vda $((2 * M)) $((256 * K))
    "$CAPTURE" -d "$DOM" -l inc -o "$OUT" -p >"$T/p.out" 2>"$T/p.err" ||
        harness_fail "-p failed: $(cat "$T/p.err")"
    [[ "$(cat "$T/p.out")" =~ ^[0-9]+$ ]] && (($(cat "$T/p.out") >= 256 * K)) ||
        harness_fail "-p printed '$(cat "$T/p.out")', want the changed bytes (>= 256 KiB)"
    "$CAPTURE" -d "$DOM" -l inc -o "$OUT" -T $((1024 * M)) >"$T/t.out" 2>&1 ||
        harness_fail "-T failed: $(cat "$T/t.out")"
    expect_in_log "$T/t.out" "below the threshold"
    [[ "$(ls "$OUT" | grep -c '\.data$')" == "$files" ]] || harness_fail "-p/-T wrote data files"
    harness_virsh checkpoint-info "$DOM" "virtnbdbackup.$CHECKPOINTS" >/dev/null 2>&1 &&
        harness_fail "-p/-T created checkpoint virtnbdbackup.$CHECKPOINTS"
    harness_log "ok: -p printed $(cat "$T/p.out"), -T skipped"
}

run_chain() {
    local start=$SECONDS n
    start_variant chain 2
    rnd vda 0 $((2 * M))
    rnd vdb $((M + 512)) $((3 * M))
    capture full -w 1
    expect_in_log "$(ls "$OUT"/backup.full.*.log)" "disk vdb"

    # libvirt forgets every checkpoint (as after a host reinstall): redefined from checkpoints/.
    harness_virsh checkpoint-delete "$DOM" virtnbdbackup.0 --metadata >/dev/null
    rnd vda $((M + 4096)) $((70 * K))
    harness_guest_trim "$DOM" vdb $((2 * M)) $((M + 1024))
    capture inc -w 2
    expect_in_log "$(last_log)" "redefined it from"

    check_sigterm
    capture inc -q
    check_estimates
    capture inc

    # Another domain's run into this directory is refused.
    expect_fail "another domain's saveset" "another domain" \
        "$CAPTURE" -d "bfsit-cap-$$-disks" -l inc -o "$OUT"

    # Shut off: the inc becomes a diff read through qemu-nbd from the last bitmap.
    harness_virsh destroy "$DOM" >/dev/null
    harness_offline_write "$DOM" vda $((10 * M + 512)) $((33 * K)) 0x3c
    harness_offline_write "$DOM" vdb 0 $((K)) 0xc3
    KIND=diff WANT_RC=2 capture inc -e
    expect_in_log "$(last_log)" "taking a diff backup"
    [[ "$(domstate)" == "shut off" ]] || harness_fail "domain is '$(domstate)' after an offline diff"
    harness_offline_write "$DOM" vda $((11 * M)) $((4 * K)) 0x99
    capture copy

    # -S: started paused for an inc with a checkpoint, then stopped again.
    harness_offline_write "$DOM" vdb $((5 * M)) $((12 * K)) 0x42
    capture inc -S
    [[ "$(domstate)" == "shut off" ]] || harness_fail "domain is '$(domstate)' after -S"
    n="$(ls "$OUT"/backup.*.log | wc -l)"
    ((n >= 8)) || harness_fail "want a log file per run, found $n: $(ls "$OUT")"
    check_files
    check_mount
    harness_virsh start "$DOM" >/dev/null
    harness_log "chain: done in $((SECONDS - start))s"
}

# The node name of the qcow2 format node of DISK (for QMP bitmap commands).
format_node() {
    harness_virsh qemu-monitor-command "$DOM" '{"execute":"query-named-block-nodes"}' |
        python3 -c '
import json, sys
img = sys.argv[1]
for n in json.load(sys.stdin)["return"]:
    if n["drv"] == "qcow2" and n["file"] == img:
        print(n["node-name"]); break
' "$HARNESS_DIR/images/$DOM.$1.qcow2"
}

run_broken() {
    local start=$SECONDS node old aside p d
    HARNESS_AGENT=1 start_variant broken 1
    rnd vda 0 "$M"
    capture full
    # An agent channel nobody answers on: a warning, not a failure (exit 2 only with -e).
    expect_in_log "$(last_log)" "filesystems not frozen (crash-consistent backup)"
    rnd vda $((3 * M)) "$M"
    capture inc
    node="$(format_node vda)"
    [[ -n "$node" ]] || harness_fail "no qcow2 node for vda"
    harness_virsh qemu-monitor-command "$DOM" \
        "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"$node\",\"name\":\"virtnbdbackup.1\"}}" >/dev/null
    expect_fail "inc with a removed bitmap" "virtnbdbackup.1" "$CAPTURE" -d "$DOM" -l inc -o "$OUT"
    grep -qF -- "-l full" "$T/fail.out" || harness_fail "the message does not say what to run: $(cat "$T/fail.out")"
    old=("${POINTS[@]}")
    cp -r "$OUT.ref" "$OUT.oldref" # the new chain reuses the point names
    rnd vda $((5 * M)) $((64 * K))
    POINTS=()
    CHECKPOINTS=0
    capture auto
    expect_in_log "$(last_log)" "broken-chain."
    aside="$(find "$OUT" -maxdepth 1 -name 'broken-chain.*' -type d)"
    [[ -d "$aside" && -f "$aside/vda.full.data" ]] || harness_fail "old chain not kept: $(ls -R "$OUT")"
    check_files
    check_mount
    # The old chain stays restorable where it was moved.
    harness_mount_backupfs "$BUILD_DIR" "$aside" "$T/mnt"
    for p in "${old[@]}"; do
        harness_cmp "broken-chain $p" "$OUT.oldref/$p.vda.raw" "$T/mnt/$p/vda.raw"
    done
    harness_unmount "$T/mnt"
    harness_log "broken: done in $((SECONDS - start))s"
}

run_disks() {
    local start=$SECONDS d
    start_variant disks 2
    rnd vda 0 $((3 * M))
    rnd vdb $((7 * M)) $((2 * M))
    "$CAPTURE" -d "$DOM" -l full -o "$T/x" -x vdb >"$T/x.out" 2>&1 || harness_fail "-x: $(cat "$T/x.out")"
    [[ -f "$T/x/vda.full.data" && ! -e "$T/x/vdb.full.data" ]] || harness_fail "-x vdb: $(ls "$T/x")"
    "$CAPTURE" -d "$DOM" -l copy -o "$T/i" -i vdb >"$T/i.out" 2>&1 || harness_fail "-i: $(cat "$T/i.out")"
    [[ -f "$T/i/vdb.copy.data" && ! -e "$T/i/vda.copy.data" ]] || harness_fail "-i vdb: $(ls "$T/i")"
    expect_fail "-i of a disk the domain lacks" "has no disk vdz" \
        "$CAPTURE" -d "$DOM" -l copy -o "$T/iz" -i vdz
    "$CAPTURE" -d "$DOM" -l copy -t raw -o "$T/raw" >"$T/raw.out" 2>&1 ||
        harness_fail "-t raw: $(cat "$T/raw.out")"
    for d in vda vdb; do
        harness_cmp "-t raw $d" "$(_harness_ref "$DOM" "$d")" "$T/raw/$d.copy.data"
    done
    expect_fail "-t raw with inc" "-t raw is for" "$CAPTURE" -d "$DOM" -l inc -t raw -o "$T/raw2"
    # A progress bar on a terminal (script(1) gives one), none otherwise or with -n.
    script -qec "$CAPTURE -d $DOM -l copy -o $T/tty" /dev/null >"$T/tty.out" 2>&1 ||
        harness_fail "copy on a terminal: $(cat "$T/tty.out")"
    grep -qE 'vda 100% 3\.0 MiB \| vdb 100% 2\.0 MiB' "$T/tty.out" ||
        harness_fail "no progress bar on a terminal: $(cat -v "$T/tty.out")"
    script -qec "$CAPTURE -d $DOM -l copy -o $T/tty-n -n" /dev/null >"$T/tty-n.out" 2>&1 ||
        harness_fail "copy -n on a terminal: $(cat "$T/tty-n.out")"
    ! grep -q '100%' "$T/tty-n.out" "$T/raw.out" || harness_fail "a progress bar with -n or without a terminal"
    harness_virsh destroy "$DOM" >/dev/null
    expect_fail "auto on a shut-off domain without a chain" "use -S" \
        "$CAPTURE" -d "$DOM" -l auto -o "$T/auto"
    # Remote runs are test_capture_remote.sh's; here only a host that does not resolve.
    expect_fail "a remote host that does not resolve" "cannot connect to elsewhere.invalid:22 over ssh" \
        "$CAPTURE" -d "$DOM" -l full -o "$T/r" -U qemu+ssh://root@elsewhere.invalid/system
    [[ ! -e "$T/r" ]] || [[ -z "$(ls -A "$T/r")" ]] || harness_fail "the failed remote run left $(ls "$T/r")"
    harness_log "disks: done in $((SECONDS - start))s"
}

# A raw disk beside a qcow2 one: skipped unless --raw, which takes it whole into
# <disk>.copy.data in copy and full backups (online and offline) and never in an inc.
run_raw() {
    local start=$SECONDS mnt="$T/mnt" out="$T/raw-full"
    HARNESS_DISK_FORMATS="qcow2 raw" start_variant rawdisk 2
    rnd vda 0 $((2 * M))
    rnd vdb $((M + 512)) $((3 * M))
    "$CAPTURE" -d "$DOM" -l full -o "$T/noraw" >"$T/noraw.out" 2>&1 ||
        harness_fail "full without --raw: $(cat "$T/noraw.out")"
    expect_in_log "$T/noraw.out" "skipping disk vdb"
    [[ ! -e "$T/noraw/vdb.full.data" && ! -e "$T/noraw/vdb.copy.data" ]] ||
        harness_fail "a raw disk was taken without --raw: $(ls "$T/noraw")"
    "$CAPTURE" -d "$DOM" -l full --raw -o "$out" >"$T/rawfull.out" 2>&1 ||
        harness_fail "full --raw: $(cat "$T/rawfull.out")"
    harness_snapshot_ref "$DOM" vda "$T/rawdisk.vda.0.raw"
    harness_snapshot_ref "$DOM" vdb "$T/rawdisk.vdb.0.raw"
    rnd vda $((5 * M)) $((64 * K))
    "$CAPTURE" -d "$DOM" -l inc --raw -o "$out" >"$T/rawinc.out" 2>&1 ||
        harness_fail "inc --raw: $(cat "$T/rawinc.out")"
    expect_in_log "$T/rawinc.out" "only copy and full backups take it"
    [[ -f "$out/vda.full.data" && -f "$out/vdb.copy.data" && -f "$out/vda.inc.virtnbdbackup.1.data" &&
        ! -e "$out/vdb.inc.virtnbdbackup.1.data" ]] || harness_fail "--raw files: $(ls "$out")"
    harness_mount_backupfs "$BUILD_DIR" "$out" "$mnt"
    harness_cmp "--raw virtnbdbackup.0/vda" "$T/rawdisk.vda.0.raw" "$mnt/virtnbdbackup.0/vda.raw"
    harness_cmp "--raw copy/vdb" "$T/rawdisk.vdb.0.raw" "$mnt/copy/vdb.raw"
    harness_cmp "--raw virtnbdbackup.1/vda" "$(_harness_ref "$DOM" vda)" "$mnt/virtnbdbackup.1/vda.raw"
    harness_unmount "$mnt"
    # Offline: qemu-nbd serves the raw image with its own format.
    harness_virsh destroy "$DOM" >/dev/null
    "$CAPTURE" -d "$DOM" -l copy --raw -o "$T/raw-off" >"$T/rawoff.out" 2>&1 ||
        harness_fail "offline copy --raw: $(cat "$T/rawoff.out")"
    harness_mount_backupfs "$BUILD_DIR" "$T/raw-off" "$mnt"
    harness_cmp "offline --raw copy/vdb" "$(_harness_ref "$DOM" vdb)" "$mnt/copy/vdb.raw"
    harness_cmp "offline --raw copy/vda" "$(_harness_ref "$DOM" vda)" "$mnt/copy/vda.raw"
    harness_unmount "$mnt"
    harness_log "raw: done in $((SECONDS - start))s"
}

# expect_running WHAT : the domain still runs (QEMU did not abort during WHAT), checked for a
# second: libvirt learns of a crash asynchronously.
expect_running() {
    local state i
    for i in 1 2 3; do
        sleep 0.3
        state="$(harness_virsh domstate "$DOM")" || harness_fail "virsh domstate $DOM failed"
        [[ "$state" == running* ]] ||
            harness_fail "$1: domain $DOM is '$state': $(tail -n 2 "/var/log/libvirt/qemu/$DOM.log")"
    done
}

# Another backup job on the domain: a second run fails at once naming it and leaves it alone,
# whether the job is a live run of ours (stopped with SIGSTOP mid-copy, so that it cannot
# finish first) into another directory, or another tool's (virsh backup-begin).
check_concurrent() {
    local partial="$OUT/vda.inc.virtnbdbackup.$CHECKPOINTS.data.partial" rc=0
    rnd vda $((8 * M)) $((40 * M))
    inc_in_background "$T/first.out"
    kill -STOP "$INC_PID" 2>/dev/null || true
    [[ -e "$partial" ]] || harness_fail "concurrent: the first run did not start: $(cat "$T/first.out")"
    expect_fail "concurrent: a second run during ours" "another backup is in progress" \
        "$CAPTURE" -d "$DOM" -l copy -o "$T/second"
    kill -CONT "$INC_PID"
    wait "$INC_PID" || rc=$?
    ((rc == 0)) || harness_fail "concurrent: the first run failed (exit $rc): $(cat "$T/first.out")"
    record_point inc
    [[ -z "$(find "$T/second" -name '*.data')" ]] || harness_fail "concurrent: the second run wrote data"
    mkdir -m 0777 "$T/other-tool"
    printf '%s\n' "<domainbackup mode='pull'><server transport='unix' socket='$T/other-tool/nbd.sock'/></domainbackup>" \
        >"$T/other-tool/backup.xml"
    harness_virsh backup-begin "$DOM" "$T/other-tool/backup.xml" >/dev/null ||
        harness_fail "concurrent: virsh backup-begin failed"
    expect_fail "concurrent: a run during another tool's job" "$T/other-tool/nbd.sock" \
        "$CAPTURE" -d "$DOM" -l inc -o "$OUT"
    local type
    type="$(job_type "concurrent")"
    [[ "$type" == Unbounded ]] || harness_fail "concurrent: the other tool's job is gone: job type $type"
    harness_virsh domjobabort "$DOM" >/dev/null
    no_job "concurrent"
}

run_iothreads() {
    local start=$SECONDS
    HARNESS_IOTHREADS=1 start_variant iothreads 2
    rnd vda 0 "$M" # vda alone overflows check_disk_full's 1 MiB tmpfs, and is named
    check_disk_full # a failure path: the job must end before the connections close
    expect_running "iothreads: a full into a full disk"
    rnd vdb $((2 * M)) "$M"
    capture full -w 2
    expect_running "iothreads: full -w 2"
    pat vda 0x3c $((7 * M)) $((64 * K))
    rnd vdb $((9 * M)) $((256 * K))
    capture inc -w 1
    expect_running "iothreads: inc"
    check_concurrent
    expect_running "iothreads: concurrent runs"
    expect_fail "iothreads: -q" "runs in iothread" "$CAPTURE" -d "$DOM" -l inc -o "$OUT" -q
    expect_running "iothreads: -q refused"
    check_sigterm
    expect_running "iothreads: SIGTERM mid-inc"
    rnd vda $((3 * M)) $((128 * K))
    capture inc
    expect_running "iothreads: inc after SIGTERM"
    check_files
    check_mount
    harness_log "iothreads: done in $((SECONDS - start))s"
}

run_iothreads
run_disks
run_raw
run_chain
run_broken
echo "PASS: backupfs-capture options, offline and broken chains, every restore point exact"
