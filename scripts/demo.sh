#!/usr/bin/env bash
# The main job end to end, from a fresh Debian 12 machine, as root: installs, builds, starts
# libvirtd if needed, creates a small throw-away TCG domain with a 64 MiB qcow2 disk, writes
# data in the guest, takes a full and an incremental backup with backupfs-capture, verifies
# the saveset, mounts it with backupfs, shows the restore points and checks each against the
# disk as it was. Everything it creates (domain, images, mount) is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD_DIR=build bash scripts/build.sh
# libvirt 9 re-probes QEMU on every call while /dev/kvm is root-only (see scripts/test.sh).
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# shellcheck source=../tests/integration/lib/harness.sh
source tests/integration/lib/harness.sh
harness_init # a scratch directory; its EXIT trap removes the domain and unmounts
harness_start_libvirtd
M=$((1024 * 1024))
dom="backupfs-demo-$$"
saveset="$HARNESS_DIR/saveset"
mnt="$HARNESS_DIR/mnt"
capture=build/tools/backupfs-capture

echo "==> a TCG domain $dom with a 64 MiB qcow2 disk; 8 MiB of random data written in the guest"
harness_create_domain "$dom" 64 1
harness_random_file "$HARNESS_DIR/data" $((8 * M))
harness_guest_write "$dom" vda $((M + 512)) $((8 * M)) file "$HARNESS_DIR/data"
harness_snapshot_ref "$dom" vda "$HARNESS_DIR/at-full.raw"

echo "==> backupfs-capture -d $dom -l full -o $saveset"
"$capture" -d "$dom" -l full -o "$saveset"

echo "==> 1 MiB rewritten and 2 MiB trimmed in the guest; backupfs-capture -l inc"
harness_guest_write "$dom" vda $((20 * M)) "$M" pattern 0x5a
harness_guest_trim "$dom" vda $((4 * M)) $((2 * M))
"$capture" -d "$dom" -l inc -o "$saveset"
ls -l "$saveset"

echo "==> backupfs-restore -a verify -i $saveset"
build/tools/backupfs-restore -a verify -i "$saveset"

echo "==> backupfs $saveset $mnt"
harness_mount_backupfs "$PWD/build" "$saveset" "$mnt"
ls -l "$mnt" "$mnt/virtnbdbackup.0"
harness_cmp "virtnbdbackup.0/vda.raw (the disk at the full backup)" \
  "$HARNESS_DIR/at-full.raw" "$mnt/virtnbdbackup.0/vda.raw"
harness_cmp "latest/vda.raw (the disk now, trim included)" "$(_harness_ref "$dom" vda)" \
  "$mnt/latest/vda.raw"
qemu-img map -f raw "$mnt/latest/vda.raw" | head -n 8
harness_unmount "$mnt"
echo "demo done: the domain, its images and the saveset are removed on exit"
