#!/bin/bash
# test_mount_live.sh BUILD_DIR
#
# A live backupfs mount over a directory of monthly savesets, with the real producers:
# 2026-10/ written by virtnbdbackup (make-virtnbdbackup-saveset.sh), 2026-11/ by
# backupfs-capture from a running TCG domain. Checked:
# - MNT shows 2026-10, 2026-11 and latest -> 2026-11 (a directory of references beside them,
#   not a saveset, is not shown); every restore point of both reads as its reference;
# - a file opened as 2026-11/latest/vda.raw is held open while backupfs-capture takes another
#   inc; the new point shows in the mount within 5 s of the capture's exit, 2026-11/latest
#   moves to it, the new image equals the guest disk, and the held file still reads the
#   previous point byte for byte.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp virtnbdbackup
COLL="$T/webvm"
MNT="$T/mnt"
mkdir -p "$COLL"

# 2026-10: virtnbdbackup's saveset (full + 2 incs) with its references.
bash "$HERE/make-virtnbdbackup-saveset.sh" "$T/vnb" >"$T/vnb.out" 2>&1 ||
    harness_fail "make-virtnbdbackup-saveset.sh failed: $(tail -n 20 "$T/vnb.out")"
mv "$T/vnb/saveset" "$COLL/2026-10"

# 2026-11: ours, full + inc.
DOM="bfsit-live-$$"
OUT="$COLL/2026-11"
DISKS=(vda)
harness_create_domain "$DOM" 64 1
rnd vda 0 "$M"
pat vda 0x5a $((5 * M + 1536)) $((130 * K + 512))
capture full
rnd vda $((256 * K + 512)) $((70 * K))
capture inc

harness_mount_backupfs "$BUILD_DIR" "$COLL" "$MNT"
[[ "$(ls "$MNT" | tr '\n' ' ')" == "2026-10 2026-11 latest " ]] ||
    harness_fail "the mount shows: $(ls "$MNT")"
[[ "$(readlink "$MNT/latest")" == 2026-11 ]] || harness_fail "latest is $(readlink "$MNT/latest")"
for n in 0 1 2; do
    harness_cmp "virtnbdbackup's 2026-10/virtnbdbackup.$n" "$T/vnb/ref/virtnbdbackup.$n.raw" \
        "$MNT/2026-10/virtnbdbackup.$n/vda.raw"
done
for p in "${POINTS[@]}"; do
    harness_cmp "2026-11/$p" "$OUT.ref/$p.vda.raw" "$MNT/2026-11/$p/vda.raw"
done

# A reader holds the newest image open across the next capture.
held_point="${POINTS[-1]}"
exec 7<"$MNT/2026-11/latest/vda.raw"
rnd vda $((20 * M + 4608)) $((3 * M))
pat vda 0xa5 $((40 * M)) $((64 * K))
"$CAPTURE" -d "$DOM" -l inc -o "$OUT" >"$T/inc.out" 2>&1 ||
    harness_fail "backupfs-capture -l inc: $(cat "$T/inc.out")"
done_at=$(date +%s%N)
new_point="virtnbdbackup.$CHECKPOINTS"
until [[ -e "$MNT/2026-11/$new_point" ]]; do
    (($(date +%s%N) - done_at < 5000000000)) ||
        harness_fail "$new_point not in the mount 5 s after the capture ended: $(ls "$MNT/2026-11")"
    sleep 0.05
done
shown_ms=$((($(date +%s%N) - done_at) / 1000000))
harness_log "ok: $new_point shown in the live mount ${shown_ms} ms after backupfs-capture ended"
record_point inc
latest_is() { [[ "$(readlink "$MNT/2026-11/latest")" == "$1" ]]; }
harness_wait_for 5 "2026-11/latest to move" latest_is "$new_point" ||
    harness_fail "2026-11/latest is $(readlink "$MNT/2026-11/latest"), want $new_point"
harness_cmp "2026-11/$new_point (new)" "$OUT.ref/$new_point.vda.raw" "$MNT/2026-11/$new_point/vda.raw"
cmp - "$OUT.ref/$held_point.vda.raw" <&7 ||
    harness_fail "the file held open as $held_point reads wrong after the change"
exec 7<&-
harness_log "ok: the file held open across the capture still reads $held_point"
harness_unmount "$MNT"
echo "PASS: a live mount of virtnbdbackup's and backupfs-capture's savesets follows a new inc (${shown_ms} ms)"
