#!/usr/bin/env bash
# The main job on a built-in demo, from a fresh Debian 12 machine, as root: installs, builds,
# writes a small saveset (a full backup and an incremental) with the stream library, dumps and
# verifies it with backupfs-restore, and mounts it with backupfs.
# (Capturing from a live VM arrives with backupfs-capture.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD_DIR=build bash scripts/build.sh
demo=$(mktemp -d /var/tmp/backupfs-demo.XXXXXX)
cleanup() {
  mountpoint -q "$demo/mnt" && fusermount3 -u "$demo/mnt"
  rm -rf "$demo"
}
trap cleanup EXIT
tool=build/tests/stream-tool

echo "==> a 64 MiB demo disk: 24 MiB of data, the rest zeros; a full backup"
truncate -s 64M "$demo/disk.raw"
head -c 16M /dev/urandom | dd of="$demo/disk.raw" conv=notrunc status=none
head -c 8M /dev/urandom | dd of="$demo/disk.raw" bs=1M seek=40 conv=notrunc status=none
mkdir "$demo/saveset" "$demo/mnt"
"$tool" write --image "$demo/disk.raw" --output "$demo/saveset/vda.full.data" \
  --checkpoint virtnbdbackup.0 --lz4 1
cp "$demo/disk.raw" "$demo/point0.raw"
echo "==> 1 MiB changed at 20 MiB; an incremental backup of just that"
head -c 1M /dev/urandom | dd of="$demo/disk.raw" bs=1M seek=20 conv=notrunc status=none
"$tool" write --image "$demo/disk.raw" --output "$demo/saveset/vda.inc.virtnbdbackup.1.data" \
  --checkpoint virtnbdbackup.1 --parent virtnbdbackup.0 --level inc --lz4 1 \
  --extents data:20971520:1048576
ls -l "$demo/saveset"

echo "==> backupfs-restore -a dump (first lines)"
build/tools/backupfs-restore -a dump -i "$demo/saveset" | head -n 16
echo "==> backupfs-restore -a verify"
build/tools/backupfs-restore -a verify -i "$demo/saveset"

echo "==> backupfs $demo/saveset $demo/mnt"
build/tools/backupfs "$demo/saveset" "$demo/mnt"
ls -l "$demo/mnt" "$demo/mnt/virtnbdbackup.0"
cmp "$demo/mnt/virtnbdbackup.0/vda.raw" "$demo/point0.raw" && echo "virtnbdbackup.0/vda.raw == the disk at the full backup"
cmp "$demo/mnt/latest/vda.raw" "$demo/disk.raw" && echo "latest/vda.raw == the disk now"
echo
echo "backupfs-capture (live VM backups) is not built yet: see the open issues."
