#!/bin/bash
# test_mount_guest_capture.sh BUILD_DIR
#
# Guest files in the mount (issue 13) on savesets of the real producers. guestlib.py builds four
# restore points of vda (GPT: ext4, NTFS) and vdb (MBR: swap, extended, logical ext4) and an
# ext4 copied while mounted (vdc, its journal needing recovery). Two running TCG domains get
# each point's changed 64 KiB runs written into their disks through qemu-io `write -s`; after
# each point one is captured with backupfs-capture (full, inc, inc, inc; vda, vdb, vdc), the
# other with virtnbdbackup (vda, vdb). Both savesets mounted with backupfs: every point's
# <disk>.raw, <disk>.parts/ (bytes, blkid listing, xattrs) and <disk>.files/ trees equal the
# kernel's loop mounts (ntfs-3g for NTFS) of that point's image (guestlib.py check); vdc's
# tree equals its e2fsck'ed copy and the mount log says the journal was replayed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" python3 cmp virtnbdbackup sfdisk mkfs.ext4 mkswap mkntfs ntfs-3g blkid partx \
    losetup dumpe2fs e2fsck
GUESTLIB="$HERE/guestlib.py"
IMG="$T/guest-images"

python3 "$GUESTLIB" build "$IMG" >"$T/build.out" 2>&1 ||
    harness_fail "guestlib.py build: $(tail -n 20 "$T/build.out")"
truncate -s 64M "$T/empty.raw"
harness_log "built the guest images in $IMG"

# put_image DOM DISK OLD NEW : writes NEW's 64 KiB blocks that differ from OLD into DOM's DISK
# (merged runs, qemu-io write -s), then checks the harness reference (every write mirrored)
# equals NEW.
put_image() {
    local dom="$1" disk="$2" old="$3" new="$4" off len n=0
    while read -r off len; do
        dd if="$new" of="$T/run.bin" bs=64K iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none
        harness_guest_write "$dom" "$disk" "$off" "$len" file "$T/run.bin"
        n=$((n + 1))
    done < <(python3 "$GUESTLIB" runs "$old" "$new")
    cmp -s "$new" "$HARNESS_DIR/ref/$dom.$disk.raw" ||
        harness_fail "$dom/$disk does not hold $(basename "$new") after $n writes"
    harness_log "$dom/$disk: $(basename "$new") written ($n runs)"
}

# vnb_backup LEVEL N : virtnbdbackup of the second domain as restore point N.
vnb_backup() {
    local out="$T/vnb.$2.out"
    timeout 600 virtnbdbackup -d "$VNB_DOM" -l "$1" -o "$VNB_OUT" -n -f "$T/vnb.sock" \
        -S "$T/vnb-scratch" >"$out" 2>&1 || harness_fail "virtnbdbackup -l $1 (point $2): $(tail -n 30 "$out")"
    harness_log "virtnbdbackup -l $1 -> virtnbdbackup.$2"
}

# check_saveset SAVESET POINT... : mounts SAVESET (foreground, its log kept) and runs every
# guestlib.py comparison for the POINTs (point i holds point$i's images).
check_saveset() {
    local saveset="$1" mnt args=() i=0 p
    mnt="$T/mnt.$(basename "$1")"
    shift
    for p in "$@"; do
        args+=("$p" "vda=$IMG/point$i.vda.raw,vdb=$IMG/point$i.vdb.raw")
        i=$((i + 1))
    done
    mkdir -p "$mnt"
    ((${#HARNESS_MOUNTS[@]})) || harness_on_exit _harness_unmount_all
    HARNESS_MOUNTS+=("$mnt")
    "$BUILD_DIR/tools/backupfs" -f "$saveset" "$mnt" >"$mnt.log" 2>&1 &
    harness_wait_for 60 "the mount of $saveset" mountpoint -q "$mnt" ||
        harness_fail "backupfs did not mount $saveset: $(tail -n 20 "$mnt.log")"
    python3 "$GUESTLIB" check "$mnt" "${args[@]}" >"$mnt.check" 2>&1 ||
        harness_fail "$(basename "$saveset"): $(tail -n 40 "$mnt.check")"
    sed 's/^/  /' "$mnt.check" >&2
    CHECKED_MNT="$mnt"
}

mkdir -m 0777 "$T/vnb-scratch"
DOM="bfsit-guest-$$"
OUT="$T/capture"
DISKS=(vda vdb vdc)
harness_create_domain "$DOM" 64 3
VNB_DOM="bfsit-guestvnb-$$"
VNB_OUT="$T/vnb"
harness_create_domain "$VNB_DOM" 64 2

prev_vda="$T/empty.raw"
prev_vdb="$T/empty.raw"
for i in 0 1 2 3; do
    for dom in "$DOM" "$VNB_DOM"; do
        put_image "$dom" vda "$prev_vda" "$IMG/point$i.vda.raw"
        put_image "$dom" vdb "$prev_vdb" "$IMG/point$i.vdb.raw"
    done
    level=inc
    if ((i == 0)); then
        put_image "$DOM" vdc "$T/empty.raw" "$IMG/crash.vdc.raw"
        level=full
    fi
    capture "$level"
    vnb_backup "$level" "$i"
    prev_vda="$IMG/point$i.vda.raw"
    prev_vdb="$IMG/point$i.vdb.raw"
done

check_saveset "$OUT" "${POINTS[@]}"
for p in "${POINTS[0]}" "${POINTS[-1]}"; do
    python3 "$GUESTLIB" check-crash "$CHECKED_MNT" "$p" vdc "$IMG/crash.vdc.raw" "$IMG/fsck.vdc.raw" >&2 ||
        harness_fail "backupfs-capture's $p: vdc's tree is not the recovered one"
done
grep -i vdc "$CHECKED_MNT.log" | grep -i journal | grep -qiE 'replay|recover' ||
    harness_fail "the mount log says nothing of vdc's journal replay: $(tail -n 20 "$CHECKED_MNT.log")"
harness_log "ok: the mount log: $(grep -i vdc "$CHECKED_MNT.log" | grep -i journal | head -n 1)"
harness_unmount "$CHECKED_MNT"

check_saveset "$VNB_OUT" virtnbdbackup.0 virtnbdbackup.1 virtnbdbackup.2 virtnbdbackup.3
harness_unmount "$CHECKED_MNT"
echo "PASS: guest partitions and files of 4 points captured by backupfs-capture and virtnbdbackup, a replayed journal"
