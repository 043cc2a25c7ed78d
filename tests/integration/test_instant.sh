#!/bin/bash
# test_instant.sh BUILD_DIR
#
# Instant recovery, live restore and NBD export with real libvirtd, QEMU (TCG) and FUSE, on
# savesets backupfs-capture takes of a running domain with vda 64 MiB and vdb 32 MiB (full +
# inc, plain; and an lz4 copy backup) and virtnbdbackup's -z copy of it, every guest write
# mirrored in raw references:
#   instant:  -a instant -u the inc point: one summary line, the domain runs on qcow2 overlays
#             in WORKDIR backed by the mounted point; data written before the backup reads back
#             in the guest (HMP qemu-io "read -P"); -a instant-list shows it; guest writes land
#             in the overlay, the mounted image still equals the reference, and every saveset
#             file keeps its checksum.
#   refusals: an unknown point, a domain name in use, a WORKDIR under a directory the QEMU user
#             cannot search: exit 1 naming it, and nothing left (no domain, mount, WORKDIR).
#             --no-start: defined, shut off, listed; instant-end removes it all.
#   faults:   the backupfs daemon killed under a running instant domain: guest reads fail (no
#             wrong data), the list says stale with what to do, the saveset and the overlay are
#             intact; destroy + instant-resume mounts again and the reads work. A corrupt chunk
#             read by the guest: an I/O error, logged with the data file and offset. As after a
#             host reboot (domain off, mount gone): listed as missing with the command to run,
#             and instant-resume brings it back. A mount whose domain was undefined by hand:
#             listed as a leftover with the command that clears it. instant-end
#             refused while a copy job runs, then it removes domain, overlays, mount, WORKDIR.
#   live:     instant-migrate into a 16 MiB filesystem fails (full), the domain keeps running on
#             its overlays, no partial image stays, the list says failed; a slow copy
#             (--bandwidth 1) interrupted by SIGINT: the same, the list says interrupted; one
#             killed with SIGKILL: its copy runs on, the list shows it, the next run takes it
#             over and finishes: the domain runs on standalone qcow2 images (no backing file)
#             equal to the overlays' view (qemu-img compare), the mount and WORKDIR are gone.
#             -a instant --migrate-to in one command from the lz4 saveset, and from a saveset
#             virtnbdbackup wrote with -z (linked lz4 frames): equal to the backup's reference.
#   export:   -a export of a plain point on a unix socket (read-only: nbdinfo, nbdcopy equal to
#             the reference, writes refused) and of the lz4 saveset on TCP 127.0.0.1 with
#             --writable (writes read back, the whole image equals reference + writes, the
#             saveset unchanged); SIGTERM ends it with exit 0 and removes mount and overlay.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/restore.sh
source "$HERE/lib/restore.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
BUILD_DIR="$(realpath "$1")"
CAPTURE="$BUILD_DIR/tools/backupfs-capture"
RESTORE="$BUILD_DIR/tools/backupfs-restore"
for b in "$CAPTURE" "$RESTORE" "$BUILD_DIR/tools/backupfs"; do
    [[ -x "$b" ]] || harness_fail "$b not built"
done
harness_init
harness_need_fuse
harness_require qemu-img qemu-io nbdinfo nbdcopy nbdkit mkfs.ext4 losetup sha256sum virtnbdbackup
harness_start_libvirtd
T="$HARNESS_DIR"
M=$((1024 * 1024))

# Instant domains and mounts this test makes go even when it fails.
_instant_cleanup() {
    local m
    for m in $(findmnt -rn -t fuse.backupfs -o TARGET | grep -F "$T/" || true); do
        fusermount3 -u -z "$m" 2>/dev/null || true
    done
    if mountpoint -q "$T/small" 2>/dev/null; then umount "$T/small" || true; fi
}
harness_on_exit _instant_cleanup

# saveset_sums DIR : the sha256 of every file in DIR, sorted by name.
saveset_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# instant NAME [OPTION...] : -a instant -N NAME; must exit 0 with the documented summary line.
instant() {
    local name="$1" rc=0 re
    shift
    HARNESS_DOMAINS+=("$name")
    "$RESTORE" -n -a instant -N "$name" "$@" >"$T/instant.out" 2>"$T/instant.err" || rc=$?
    ((rc == 0)) || harness_fail "instant $name $*: exit $rc: $(cat "$T/instant.out" "$T/instant.err")"
    re="^instant recovery of [^ ]+: domain $name (running|defined) on [0-9]+ overlay\(s\) in .+ \(([0-9.]+) s\)$"
    [[ "$(cat "$T/instant.out")" =~ $re ]] ||
        harness_fail "instant $name: summary line not as documented: $(cat "$T/instant.out")"
    harness_log "ok: instant $name in ${BASH_REMATCH[2]} s"
}

# info_field IMAGE KEY : a member of `qemu-img info` of an image a running domain holds.
info_field() {
    qemu-img info -U --output=json "$1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$2" ||
        harness_fail "qemu-img info of $1 failed"
}

# listed NAME : the instant-list line of NAME (fails when absent).
listed() {
    "$RESTORE" -a instant-list >"$T/list.out" 2>&1 || harness_fail "instant-list: exit $?: $(cat "$T/list.out")"
    grep -E "^$1 " "$T/list.out" || harness_fail "instant-list does not show $1: $(cat "$T/list.out")"
}

# source_of DOM DISK : the disk's source file in the live XML.
source_of() {
    harness_virsh domblklist "$1" --details | awk -v d="$2" '$3 == d { print $4 }'
}

# guest_read_fails DOM DISK OFFSET LENGTH : qemu-io in the guest reports a failed read.
_log_has_read_failure() { tail -c "+$(($2 + 1))" "$1" | grep -q "^read failed: "; }
guest_read_fails() {
    _harness_hmp_qemu_io "$1" "$2" "read $3 $4"
    harness_wait_for 30 "a failed read in $HARNESS_QEMU_IO_LOG" _log_has_read_failure \
        "$HARNESS_QEMU_IO_LOG" "$HARNESS_QEMU_IO_POS" ||
        harness_fail "$1/$2: read $3+$4 should fail: $(tail -c "+$((HARNESS_QEMU_IO_POS + 1))" "$HARNESS_QEMU_IO_LOG")"
    harness_log "ok: $1/$2: the read at $3 fails: $(tail -c "+$((HARNESS_QEMU_IO_POS + 1))" "$HARNESS_QEMU_IO_LOG" | grep -m1 "^read failed")"
}

# nothing_left NAME WORKDIR : no domain NAME, no backupfs mount under WORKDIR, no WORKDIR.
nothing_left() {
    ! harness_virsh dominfo "$1" >/dev/null 2>&1 || harness_fail "domain $1 is still defined"
    local i
    for i in "${!HARNESS_DOMAINS[@]}"; do # gone: nothing for the cleanup to remove
        [[ "${HARNESS_DOMAINS[i]}" != "$1" ]] || unset "HARNESS_DOMAINS[i]"
    done
    ! findmnt -rn -t fuse.backupfs -o TARGET | grep -qF "$2" || harness_fail "a mount under $2 is left"
    [[ ! -e "$2" ]] || harness_fail "$2 is left: $(ls -la "$2")"
}

# ---------------------------------------------------------------------------------------
# The source domain and its backups.
DOM="bfsit-inst-$$"
harness_create_domain "$DOM" 32 2
restore_grow_disk "$DOM" vda $((64 * M))
S="$T/plain"
Z="$T/lz4"
harness_random_file "$T/rnd" $((24 * M))
harness_guest_write "$DOM" vda 0 $((4 * M)) file "$T/rnd"
harness_guest_write "$DOM" vda $((8 * M)) $M pattern 0x5a
harness_guest_write "$DOM" vdb $M $((2 * M)) pattern 0x11
"$CAPTURE" -d "$DOM" -l full -o "$S" >/dev/null 2>"$T/capture.err" || harness_fail "full: $(cat "$T/capture.err")"
harness_guest_write "$DOM" vda $((16 * M)) $((512 * 1024)) pattern 0x3c
harness_guest_write "$DOM" vda $((24 * M)) $((24 * M)) file "$T/rnd" # for the full target
harness_guest_write "$DOM" vdb 0 $((64 * 1024)) pattern 0x22
"$CAPTURE" -d "$DOM" -l inc -o "$S" >/dev/null 2>"$T/capture.err" || harness_fail "inc: $(cat "$T/capture.err")"
"$CAPTURE" -d "$DOM" -l copy -z -o "$Z" >/dev/null 2>"$T/capture.err" || harness_fail "copy -z: $(cat "$T/capture.err")"
V="$T/vnb-lz4" # virtnbdbackup's own -z: linked lz4 frames
timeout 300 virtnbdbackup -d "$DOM" -l copy -z -o "$V" -n >"$T/vnb.log" 2>&1 ||
    harness_fail "virtnbdbackup -l copy -z failed: $(tail -n 20 "$T/vnb.log")"
for d in vda vdb; do harness_snapshot_ref "$DOM" "$d" "$T/point1/$d.raw"; done
saveset_sums "$S" >"$T/plain.sums"
saveset_sums "$Z" >"$T/lz4.sums"
harness_virsh destroy "$DOM" >/dev/null # its images stay locked otherwise; not needed anymore

# ---------------------------------------------------------------------------------------
# Instant recovery of the inc point.
# A small filesystem for a migration target that fills up. Mounted before the domain starts:
# libvirt runs QEMU in a mount namespace of its own, which sees no later mount when the
# host's mounts are private (as in containers).
truncate -s 16M "$T/small.img"
mkfs.ext4 -q "$T/small.img"
mkdir -m 0777 "$T/small"
mount -o loop "$T/small.img" "$T/small"
chmod 0777 "$T/small"
I1="bfsit-inst-$$-a"
W1="$T/work-a"
instant "$I1" -i "$S" -u virtnbdbackup.1 -o "$W1"
[[ "$(harness_virsh domstate "$I1")" == running ]] || harness_fail "$I1 is not running"
for d in vda vdb; do
    src="$(source_of "$I1" "$d")"
    [[ "$src" == "$W1/$DOM.$d.qcow2" ]] || harness_fail "$I1/$d runs on '$src', want $W1/$DOM.$d.qcow2"
    [[ "$(info_field "$src" full-backing-filename)" == "$W1/backupfs-instant.mnt/virtnbdbackup.1/$d.raw" ]] ||
        harness_fail "$src is not backed by the mounted point"
done
restore_guest_read "$I1" vda $((8 * M)) $M 0x5a ok
restore_guest_read "$I1" vda $((16 * M)) $((512 * 1024)) 0x3c ok
restore_guest_read "$I1" vdb 0 $((64 * 1024)) 0x22 ok
restore_guest_read "$I1" vdb $((2 * M)) $M 0x11 ok
line="$(listed "$I1")"
[[ "$line" =~ ^$I1\ +running\ +virtnbdbackup\.1\ .*\ mounted\ +-$ ]] || harness_fail "list line: $line"
harness_log "ok: listed: $line"

# Guest writes go to the overlay; the backup does not change.
_harness_qemu_io "$I1" vda $((32 * M)) $M "write -P 0x77 $((32 * M)) $M"
restore_guest_read "$I1" vda $((32 * M)) $M 0x77 ok
qemu-img map -U -f qcow2 --output=json "$W1/$DOM.vda.qcow2" |
    python3 -c 'import json,sys; sys.exit(0 if any(e["depth"] == 0 and e["data"] and e["start"] <= 32<<20 < e["start"] + e["length"] for e in json.load(sys.stdin)) else 1)' ||
    harness_fail "the guest's write is not in the overlay"
harness_cmp "the mounted inc point's vda is the backup's" "$T/point1/vda.raw" "$W1/backupfs-instant.mnt/virtnbdbackup.1/vda.raw"
saveset_sums "$S" | diff "$T/plain.sums" - >&2 || harness_fail "the saveset changed under the instant domain"
harness_log "ok: guest writes in the overlay, saveset unchanged"

# ---------------------------------------------------------------------------------------
# Refusals leave nothing behind.
restore_expect_rc 1 "unknown point" "nosuch" "$RESTORE" -n -a instant -i "$S" -u nosuch -o "$T/w-x" -N "$I1-x"
nothing_left "$I1-x" "$T/w-x"
restore_expect_rc 1 "name in use" "a domain named $I1 exists already" "$RESTORE" -n -a instant -i "$S" -o "$T/w-y" -N "$I1"
nothing_left "nosuch-domain-$$" "$T/w-y"
mkdir -m 0700 "$T/closed"
restore_expect_rc 1 "WORKDIR out of QEMU's reach" "$T/closed (mode 0700" "$RESTORE" -n -a instant -i "$S" -o "$T/closed/w" -N "$I1-z"
nothing_left "$I1-z" "$T/closed/w"
restore_expect_rc 2 "instant without -o" "-o WORKDIR" "$RESTORE" -a instant -i "$S"
restore_expect_rc 1 "end of a domain that is not instant" "not an instant-recovery domain" "$RESTORE" -a instant-end -N "$DOM"

# --no-start defines, does not start; a shut-off instant domain ends as well.
I5="bfsit-inst-$$-e"
instant "$I5" -i "$S" -o "$T/work-e" --no-start
grep -qF "domain $I5 defined on" "$T/instant.out" || harness_fail "--no-start summary: $(cat "$T/instant.out")"
[[ "$(harness_virsh domstate "$I5")" == "shut off" ]] || harness_fail "$I5 runs despite --no-start"
[[ "$(listed "$I5")" =~ ^$I5\ +shut-off\ .*\ mounted\  ]] || harness_fail "list: $(cat "$T/list.out")"
"$RESTORE" -a instant-end -N "$I5" 2>"$T/end.err" || harness_fail "instant-end of a shut-off domain: $(cat "$T/end.err")"
nothing_left "$I5" "$T/work-e"
harness_log "ok: --no-start, and the end of a shut-off instant domain"

# ---------------------------------------------------------------------------------------
# The daemon killed under a running domain, resume, a copy job blocking the end.
I2="bfsit-inst-$$-b"
W2="$T/work-b"
instant "$I2" -i "$S" -o "$W2"
pid="$(pgrep -f "backupfs -f .* $W2/backupfs-instant.mnt")" || harness_fail "no backupfs daemon for $W2"
kill -9 "$pid"
harness_wait_for 30 "backupfs daemon $pid to die" bash -c "! kill -0 $pid 2>/dev/null" || harness_fail "daemon $pid lives"
guest_read_fails "$I2" vda $((8 * M)) $M
line="$(listed "$I2")"
[[ "$line" == *" stale "* ]] || harness_fail "list after the kill: $line"
grep -A2 -E "^$I2 " "$T/list.out" | grep -qF "virsh destroy $I2" || harness_fail "no advice for $I2: $(cat "$T/list.out")"
saveset_sums "$S" | diff "$T/plain.sums" - >&2 || harness_fail "the saveset changed after the kill"
# qemu-img check opens the backing file too, which the dead mount cannot give: check a copy
# with the backing file removed from its header.
cp "$W2/$DOM.vda.qcow2" "$T/overlay-copy.qcow2"
qemu-img rebase -u -b "" -f qcow2 "$T/overlay-copy.qcow2" || harness_fail "rebase of the overlay's copy failed"
qemu-img check -q -f qcow2 "$T/overlay-copy.qcow2" || harness_fail "the overlay is damaged after the kill"
harness_log "ok: daemon killed: reads fail, saveset and overlay intact, list says stale"
restore_expect_rc 1 "resume while running on a stale mount" "virsh destroy $I2" "$RESTORE" -a instant-resume -N "$I2"
harness_virsh destroy "$I2" >/dev/null
"$RESTORE" -a instant-resume -N "$I2" 2>"$T/resume.err" || harness_fail "instant-resume: $(cat "$T/resume.err")"
[[ "$(harness_virsh domstate "$I2")" == running ]] || harness_fail "$I2 not running after resume"
restore_guest_read "$I2" vda $((8 * M)) $M 0x5a ok
[[ "$(listed "$I2")" == *" mounted "* ]] || harness_fail "not mounted after resume: $(cat "$T/list.out")"
harness_log "ok: instant-resume mounted again and started $I2"
# As after a host reboot: the domain shut off, the mount gone. Found again, resumed.
harness_virsh destroy "$I2" >/dev/null
fusermount3 -u -z "$W2/backupfs-instant.mnt"
line="$(listed "$I2")"
[[ "$line" =~ ^$I2\ +shut-off\ .*\ missing\  ]] || harness_fail "list after a 'reboot': $line"
grep -A2 -E "^$I2 " "$T/list.out" | grep -qF "backupfs-restore -a instant-resume -N $I2" ||
    harness_fail "no advice after a 'reboot': $(cat "$T/list.out")"
"$RESTORE" -a instant-resume -N "$I2" 2>"$T/resume.err" || harness_fail "instant-resume: $(cat "$T/resume.err")"
restore_guest_read "$I2" vda $((8 * M)) $M 0x5a ok
harness_log "ok: after a 'reboot' the list says what to run, and instant-resume brings $I2 back"

harness_virsh blockcopy "$I2" vda "$T/foreign.qcow2" --format qcow2 --transient-job --bandwidth 1 >/dev/null ||
    harness_fail "virsh blockcopy on $I2 failed"
restore_expect_rc 1 "end during a copy job" "a copy job runs" "$RESTORE" -a instant-end -N "$I2"
restore_expect_rc 1 "migrate over a foreign job" "another block job runs" "$RESTORE" -n -a instant-migrate -N "$I2" --migrate-to "$T/final-b"
harness_virsh blockjob "$I2" vda --abort >/dev/null || harness_fail "blockjob --abort failed"
harness_wait_for 30 "the copy job on $I2 to end" bash -c "! virsh -c $HARNESS_URI blockjob $I2 vda --raw 2>/dev/null | grep -q type="
"$RESTORE" -a instant-end -N "$I2" 2>"$T/end.err" || harness_fail "instant-end: $(cat "$T/end.err")"
nothing_left "$I2" "$W2"
harness_log "ok: instant-end removed domain, overlays, mount and work directory"

# A corrupt chunk read by the guest: an I/O error, logged with file and offset.
cp -a "$S" "$T/damaged"
inc_file="$(cd "$T/damaged" && ls vda.inc.virtnbdbackup.1.data)"
harness_corrupt_frame "$T/damaged/$inc_file" payload 2>/dev/null
I3="bfsit-inst-$$-c"
W3="$T/work-c"
instant "$I3" -i "$T/damaged" -o "$W3"
guest_read_fails "$I3" vda 0 $((64 * M))
grep -E "$inc_file.*offset [0-9]+" "$W3/backupfs-instant.log" ||
    harness_fail "the daemon's log names no file and offset: $(cat "$W3/backupfs-instant.log")"
restore_guest_read "$I3" vdb 0 $((64 * 1024)) 0x22 ok
# Its domain removed by hand: the mount is listed as a leftover, with the command that clears it.
harness_virsh destroy "$I3" >/dev/null
harness_virsh undefine "$I3" >/dev/null
"$RESTORE" -a instant-list >"$T/list.out" 2>&1 || harness_fail "instant-list: $(cat "$T/list.out")"
clear="$(sed -n "s|^leftover: $W3/backupfs-instant.mnt: .*clear it with: ||p" "$T/list.out")"
[[ "$clear" == "fusermount3 -u $W3/backupfs-instant.mnt" ]] || harness_fail "no leftover line for $W3: $(cat "$T/list.out")"
$clear || harness_fail "'$clear' failed"
"$RESTORE" -a instant-list >"$T/list.out" 2>&1 || harness_fail "instant-list: $(cat "$T/list.out")"
! grep -qF "$W3" "$T/list.out" || harness_fail "still listed after clearing: $(cat "$T/list.out")"
rm -rf "$W3"
nothing_left "$I3" "$W3"
harness_log "ok: a mount whose domain was undefined by hand is listed as a leftover and cleared"

# ---------------------------------------------------------------------------------------
# Live restore: a target that fills up, then a real one.
restore_expect_rc 1 "migrate into a full filesystem" "keeps running on its overlays" \
    "$RESTORE" -n -a instant-migrate -N "$I1" --migrate-to "$T/small/images"
[[ "$(harness_virsh domstate "$I1")" == running ]] || harness_fail "$I1 stopped after the failed copy"
[[ "$(source_of "$I1" vda)" == "$W1/$DOM.vda.qcow2" ]] || harness_fail "$I1/vda left its overlay"
[[ -z "$(ls -A "$T/small/images")" ]] || harness_fail "partial copies left: $(ls -la "$T/small/images")"
[[ "$(listed "$I1")" == *"failed: "* ]] || harness_fail "list after the failure: $(cat "$T/list.out")"
restore_guest_read "$I1" vda $((32 * M)) $M 0x77 ok
harness_log "ok: a full target fails the copy; $I1 runs on its overlays"
umount "$T/small"

for d in vda vdb; do qemu-img convert -U -f qcow2 -O raw "$W1/$DOM.$d.qcow2" "$T/view.$d.raw"; done

# start_slow_migration DIR : instant-migrate of $I1 at 1 MiB/s in the background (MIGRATE_PID),
# returning once libvirt shows its copy job.
_copy_job_runs() { harness_virsh blockjob "$I1" vda --raw 2>/dev/null | grep -q "type=Block Copy"; }
start_slow_migration() {
    "$RESTORE" -n -a instant-migrate -N "$I1" --migrate-to "$1" --bandwidth 1 >"$T/slow.out" 2>&1 &
    MIGRATE_PID=$!
    harness_wait_for 60 "the copy job of $I1" _copy_job_runs || harness_fail "no copy job: $(cat "$T/slow.out")"
}
# An interrupted live restore: cancelled, the domain stays on its overlays, nothing left.
start_slow_migration "$T/final-i"
kill -INT "$MIGRATE_PID"
rc=0
wait "$MIGRATE_PID" || rc=$?
((rc == 1)) || harness_fail "interrupted instant-migrate exited $rc: $(cat "$T/slow.out")"
grep -qF "live restore interrupted: the domain $I1 keeps running on its overlays" "$T/slow.out" ||
    harness_fail "interrupted instant-migrate says: $(cat "$T/slow.out")"
! _copy_job_runs || harness_fail "the copy job survived the interruption"
[[ "$(source_of "$I1" vda)" == "$W1/$DOM.vda.qcow2" ]] || harness_fail "$I1/vda left its overlay"
[[ -z "$(ls -A "$T/final-i")" ]] || harness_fail "unfinished copies left: $(ls -la "$T/final-i")"
[[ "$(listed "$I1")" == *"interrupted (to $T/final-i)"* ]] || harness_fail "list: $(cat "$T/list.out")"
harness_log "ok: SIGINT cancels the live restore; $I1 stays on its overlays"
# A killed run's copies run on in libvirt: the list shows them, the next run takes them over
# (and lifts the speed limit).
start_slow_migration "$T/final-a"
kill -KILL "$MIGRATE_PID"
wait "$MIGRATE_PID" || true
[[ "$(listed "$I1")" == *"copying "*"% to $T/final-a"* ]] || harness_fail "list after kill -9: $(cat "$T/list.out")"
grep -A2 -E "^$I1 " "$T/list.out" | grep -qF "instant-migrate -N $I1 --migrate-to $T/final-a" ||
    harness_fail "no advice after kill -9: $(cat "$T/list.out")"
"$RESTORE" -n -a instant-migrate -N "$I1" --migrate-to "$T/final-a" 2>"$T/migrate.err" ||
    harness_fail "instant-migrate: $(cat "$T/migrate.err")"
grep -qF "disk vda: taking over the copy to $T/final-a/$DOM.vda.qcow2" "$T/migrate.err" ||
    harness_fail "the killed run's copy was not taken over: $(cat "$T/migrate.err")"
[[ "$(harness_virsh domstate "$I1")" == running ]] || harness_fail "$I1 is not running after the migration"
for d in vda vdb; do
    img="$T/final-a/$DOM.$d.qcow2"
    [[ "$(source_of "$I1" "$d")" == "$img" ]] || harness_fail "$I1/$d runs on $(source_of "$I1" "$d"), want $img"
    [[ -z "$(info_field "$img" backing-filename)" ]] || harness_fail "$img has a backing file"
    qemu-img compare -U -f raw -F qcow2 "$T/view.$d.raw" "$img" >&2 || harness_fail "$img differs from the overlay's view"
done
nothing_left "no-such-domain-$$" "$W1"
"$RESTORE" -a instant-list >"$T/list.out" || harness_fail "instant-list failed"
! grep -qE "^$I1 " "$T/list.out" || harness_fail "$I1 still listed as instant: $(cat "$T/list.out")"
harness_virsh dumpxml --inactive "$I1" | grep -qF "$T/final-a/$DOM.vda.qcow2" || harness_fail "the persistent XML of $I1 still names the overlays"
restore_guest_read "$I1" vda $((32 * M)) $M 0x77 ok
harness_log "ok: live restore: $I1 runs on standalone images equal to its overlays; mount and work directory gone"

# One command from the lz4 saveset.
I4="bfsit-inst-$$-d"
instant "$I4" -i "$Z" -o "$T/work-d" --migrate-to "$T/final-d"
for d in vda vdb; do
    qemu-img compare -U -F qcow2 -f raw "$T/point1/$d.raw" "$T/final-d/$DOM.$d.qcow2" >&2 ||
        harness_fail "the live restore of $d from the lz4 saveset differs from the reference"
done
nothing_left "no-such-domain-$$" "$T/work-d"
saveset_sums "$Z" | diff "$T/lz4.sums" - >&2 || harness_fail "the lz4 saveset changed"
harness_log "ok: -a instant --migrate-to from lz4: standalone images equal to the backup"
# The same from virtnbdbackup's -z saveset (linked lz4 frames).
I6="bfsit-inst-$$-f"
instant "$I6" -i "$V" -o "$T/work-f" --migrate-to "$T/final-f"
for d in vda vdb; do
    qemu-img compare -U -F qcow2 -f raw "$T/point1/$d.raw" "$T/final-f/$DOM.$d.qcow2" >&2 ||
        harness_fail "the live restore of $d from virtnbdbackup's -z saveset differs from the reference"
done
nothing_left "no-such-domain-$$" "$T/work-f"
harness_log "ok: -a instant --migrate-to from virtnbdbackup's -z saveset: equal to the backup"

# ---------------------------------------------------------------------------------------
# NBD export.
# start_export OUT ARGS... : backupfs-restore -a export in the background; waits for its URI.
start_export() {
    local out="$1"
    shift
    "$RESTORE" -a export "$@" >"$out" 2>"$out.err" &
    EXPORT_PID=$!
    harness_wait_for 60 "the export's URI" test -s "$out" ||
        harness_fail "no export URI: $(cat "$out.err")"
    EXPORT_URI="$(head -1 "$out")"
}
stop_export() {
    kill -TERM "$EXPORT_PID"
    local rc=0
    wait "$EXPORT_PID" || rc=$?
    ((rc == 0)) || harness_fail "export exited $rc after SIGTERM: $(cat "$1.err")"
    ! findmnt -rn -t fuse.backupfs -o TARGET | grep -q backupfs-export || harness_fail "export mount left"
    ! ls -d /var/tmp/backupfs-export.* 2>/dev/null | grep -q . || harness_fail "export directory left"
}
mounts_before="$({ findmnt -rn -t fuse.backupfs || true; } | wc -l)"

start_export "$T/e1" -i "$S" -u virtnbdbackup.1 -d vda --socket "$T/e1.sock"
[[ "$EXPORT_URI" == "nbd+unix:///vda?socket=$T/e1.sock" ]] || harness_fail "export URI: $EXPORT_URI"
[[ "$(nbdinfo --size "$EXPORT_URI")" == $((64 * M)) ]] || harness_fail "nbdinfo size: $(nbdinfo --size "$EXPORT_URI")"
nbdcopy "$EXPORT_URI" "$T/e1.raw" || harness_fail "nbdcopy from the export failed"
harness_cmp "read-only export of the inc point's vda" "$T/point1/vda.raw" "$T/e1.raw"
out="$(qemu-io -f raw -c "write -P 0x99 0 4096" "$EXPORT_URI" 2>&1)" && [[ "$out" != *"write failed"* ]] &&
    harness_fail "a write to the read-only export succeeded: $out"
harness_log "ok: read-only export refuses writes: $out"
stop_export "$T/e1"

start_export "$T/e2" -i "$Z" -d vdb --tcp 127.0.0.1:10850 --writable
[[ "$EXPORT_URI" == "nbd://127.0.0.1:10850/vdb" ]] || harness_fail "export URI: $EXPORT_URI"
out="$(qemu-io -f raw -c "write -P 0x99 $M 65536" "$EXPORT_URI" 2>&1)" || harness_fail "write to the writable export: $out"
[[ "$out" == *"wrote 65536/65536 bytes at offset $M"* ]] || harness_fail "write to the writable export: $out"
out="$(qemu-io -f raw -c "read -P 0x99 $M 65536" "$EXPORT_URI" 2>&1)"
[[ "$out" == *"read 65536/65536"* && "$out" != *"verification failed"* ]] || harness_fail "read back: $out"
nbdcopy "$EXPORT_URI" "$T/e2.raw" || harness_fail "nbdcopy from the writable export failed"
cp "$T/point1/vdb.raw" "$T/e2.ref"
_harness_pattern_file 65536 0x99 "$T/p99"
_harness_ref_apply "$T/e2.ref" "$M" 65536 "$T/p99"
harness_cmp "writable lz4 export over TCP reads the backup plus its writes" "$T/e2.ref" "$T/e2.raw"
stop_export "$T/e2"
saveset_sums "$Z" | diff "$T/lz4.sums" - >&2 || harness_fail "the writable export changed the saveset"
start_export "$T/e3" -i "$Z" -d vdb --tcp 127.0.0.1:10850
nbdcopy "$EXPORT_URI" "$T/e3.raw" || harness_fail "nbdcopy from the export failed"
harness_cmp "the writes of the ended writable export are gone" "$T/point1/vdb.raw" "$T/e3.raw"
stop_export "$T/e3"
[[ "$({ findmnt -rn -t fuse.backupfs || true; } | wc -l)" == "$mounts_before" ]] || harness_fail "exports left mounts"
restore_expect_rc 1 "export of a missing disk" "has no disk vdx" "$RESTORE" -a export -i "$S" -d vdx --socket "$T/x.sock"
restore_expect_rc 1 "export of a two-disk point without -d" "choose one with -d" "$RESTORE" -a export -i "$S" --socket "$T/x.sock"
restore_expect_rc 2 "export without an address" "--socket PATH or --tcp" "$RESTORE" -a export -i "$S" -d vda

harness_log "PASS: instant recovery, live restore and NBD export"
