#!/bin/bash
# test_mount_fstab.sh BUILD_DIR
#
# backupfs mounted the way users of mount(8) and /etc/fstab do it, through the packages'
# helper chain and nothing of ours:
#
#   mount -t fuse.backupfs -o OPTS SAVESET MNT
#     -> /sbin/mount.fuse (-> mount.fuse3, package fuse3) SAVESET MNT -o OPTS -t fuse.backupfs
#     -> /bin/sh -c "'backupfs' 'SAVESET' 'MNT' '-o' 'OPTS'"
#
# mount(8) drops PATH from the helper's environment, so the shell finds `backupfs` in its
# default search path (dash: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin).
# To make that name resolve to BUILD_DIR/tools/backupfs without installing anything, the test
# runs in private mount and PID namespaces (unshare) and bind-mounts a directory holding a
# `backupfs` symlink over the first directory of that search path. Nothing outside the
# namespaces changes (not /etc/fstab: the fstab part uses `mount -T FILE`), and when the test
# ends, however it ends, the kernel kills the daemon and drops every mount it made.
#
# Checks, for `mount -t fuse.backupfs` and for an fstab line (`mount -T FSTAB MNT`):
# the daemon serving the mount is BUILD_DIR's backupfs; options (ours and FUSE's) get through
# mount.fuse3; MNT/latest/vda.raw and an older point equal the images they were made from;
# `mount -a` does not mount a mounted saveset twice (the saveset is the mount's source);
# umount / fusermount3 -u unmount and the daemon exits.
#
# And an fstab line naming a bucket (s3://fstab/vm in a real Ceph RADOS Gateway, lib/rgw.sh),
# mounted with no environment at all, as systemd runs mount(8) at boot (no AWS_* variables;
# mount.fuse3 gives its helper HOME of root's entry in the password database): the keys come
# from root's ~/.aws/credentials, the endpoint and profile from the line's options; the images are exact, `mount -a` does not mount it twice, and
# a profile the files lack fails the mount naming it and both files.
#
# Exit status: 0 pass, 1 fail, 77 skip (not root, or no usable /dev/fuse).
set -euo pipefail

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
skip() {
  if [[ ${HARNESS_NO_SKIP:-0} == 1 ]]; then
    fail "would skip (HARNESS_NO_SKIP=1): $*"
  fi
  printf 'SKIP: %s\n' "$*"
  exit 77
}

[[ $# -eq 1 ]] || fail "usage: $0 BUILD_DIR"
BUILD_DIR=$(realpath "$1")
BACKUPFS=$BUILD_DIR/tools/backupfs
STREAM_TOOL=$BUILD_DIR/tests/stream-tool

# --- outside the namespaces: checks, scratch directory, then the test in the namespaces ---
if [[ ${BFS_FSTAB_INNER:-0} != 1 ]]; then
  [[ $(id -u) -eq 0 ]] || skip "needs root (mount(8), FUSE, namespaces)"
  [[ -c /dev/fuse ]] || skip "no /dev/fuse"
  { : <>/dev/fuse; } 2>/dev/null || skip "/dev/fuse cannot be opened"
  [[ -x $BACKUPFS ]] || fail "$BACKUPFS not built"
  [[ -x $STREAM_TOOL ]] || fail "$STREAM_TOOL not built"
  for c in unshare mount umount fusermount3 findmnt mountpoint setpriv cmp dd timeout; do
    command -v "$c" >/dev/null || fail "required command '$c' not found (package not installed?)"
  done
  [[ -x /sbin/mount.fuse ]] || fail "/sbin/mount.fuse missing: the package fuse3 provides it"
  WORK=$(mktemp -d /var/tmp/bfs-fstab.XXXXXX)
  # The mounts live in the namespaces only: here WORK holds plain directories.
  trap 'rm -rf --one-file-system "$WORK"' EXIT
  chmod 0755 "$WORK" # the allow_other check reads the mount as another user
  # A real S3 store for the fstab line naming a bucket (part 3). It runs out here, so that its
  # watchdog takes it down however the test ends.
  # shellcheck source=lib/rgw.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib/rgw.sh"
  rgw_up
  rc=0
  BFS_FSTAB_INNER=1 BFS_FSTAB_WORK=$WORK BFS_FSTAB_RGW_DIR=$RGW_DIR \
    unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
    bash "${BASH_SOURCE[0]}" "$BUILD_DIR" || rc=$?
  exit "$rc"
fi

# --- inside: PID 1 of a new PID namespace, in a private mount namespace ---
WORK=$BFS_FSTAB_WORK
SAVESET=$WORK/saveset
MNT=$WORK/mnt
SHADOW=$WORK/shadow
mkdir -p "$SAVESET" "$MNT" "$SHADOW"

# Number of mounts stacked on MNT.
mounts_on_mnt() { awk -v m="$MNT" '$5 == m' /proc/self/mountinfo | wc -l; }

cleanup() {
  local _
  for _ in 1 2 3 4 5; do
    [[ $(mounts_on_mnt) -gt 0 ]] || break
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  done
}
trap cleanup EXIT

# PIDs of the backupfs daemons of this PID namespace (we are its init: /proc shows only it).
daemons() {
  local exe pid
  for exe in /proc/[0-9]*/exe; do
    pid=${exe#/proc/}
    pid=${pid%/exe}
    [[ $(readlink "$exe" 2>/dev/null) == "$(realpath "$BACKUPFS")" ]] && printf '%s\n' "$pid"
  done
  return 0
}

# wait_until SECONDS DESCRIPTION CMD... : polls CMD until it succeeds.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out waiting for $what"
    sleep 0.1
  done
}
no_daemon() { [[ -z $(daemons) ]]; }

# --- a saveset: a full and an incremental backup of a 16 MiB disk ---
M=$((1024 * 1024))
REF0=$WORK/vda.0.raw
REF1=$WORK/vda.1.raw
put() { # put IMAGE OFFSET LENGTH : random bytes
  dd if=/dev/urandom of="$1" bs=64K iflag=count_bytes oflag=seek_bytes seek="$2" count="$3" \
    conv=notrunc status=none
}
truncate -s $((16 * M)) "$REF0"
put "$REF0" $((1 * M)) $((2 * M))
put "$REF0" $((9 * M + 512)) $((300 * 1024))
put "$REF0" $((16 * M - 4096)) 4096
cp --sparse=always "$REF0" "$REF1"
put "$REF1" $((5 * M)) $((64 * 1024))
put "$REF1" $((2 * M + 1536)) $((100 * 1024))
"$STREAM_TOOL" write --image "$REF0" --output "$SAVESET/vda.full.data" \
  --checkpoint virtnbdbackup.0 --date 2026-01-01T10:00:00.000000
"$STREAM_TOOL" write --image "$REF1" --output "$SAVESET/vda.inc.virtnbdbackup.1.data" \
  --checkpoint virtnbdbackup.1 --parent virtnbdbackup.0 --level inc \
  --extents "data:$((2 * M + 1536)):$((100 * 1024)),data:$((5 * M)):$((64 * 1024))" \
  --date 2026-01-02T10:00:00.000000
printf '["virtnbdbackup.0", "virtnbdbackup.1"]\n' >"$SAVESET/vm.cpt"
printf '<domain><name>vm</name></domain>\n' >"$SAVESET/vmconfig.virtnbdbackup.1.xml"

# --- make `backupfs` in the helper's default search path resolve to BUILD_DIR's ---
# shellcheck disable=SC2016 # $PATH is expanded by that shell, without a PATH of ours
default_path=$(env -u PATH /bin/sh -c 'printf %s "$PATH"')
first_dir=""
IFS=: read -r -a path_dirs <<<"$default_path"
for d in "${path_dirs[@]}"; do
  if [[ -d $d ]]; then
    first_dir=$d
    break
  fi
done
[[ -n $first_dir ]] || fail "no directory of /bin/sh's default PATH ($default_path) exists"
ln -s "$BACKUPFS" "$SHADOW/backupfs"
mount --bind "$SHADOW" "$first_dir"
export PATH="$first_dir:$PATH" # in case a mount(8) passed PATH on
resolved=$(env -u PATH /bin/sh -c 'command -v backupfs') || true
[[ $(realpath "$resolved" 2>/dev/null) == "$(realpath "$BACKUPFS")" ]] ||
  fail "backupfs in /bin/sh's default PATH is '$resolved', not $BACKUPFS"
log "backupfs resolves to $BACKUPFS (through $first_dir/backupfs)"

# check_mounted WANT_UID WANT_MODE [SOURCE] : the mount on MNT is ours and shows the saveset
# (SOURCE, by default the directory SAVESET).
check_mounted() {
  local want_uid=$1 want_mode=$2 want_source=${3:-$SAVESET} fstype source
  mountpoint -q "$MNT" || fail "nothing is mounted on $MNT"
  [[ $(mounts_on_mnt) -eq 1 ]] || fail "$(mounts_on_mnt) mounts on $MNT, expected 1"
  fstype=$(findmnt -n -o FSTYPE --mountpoint "$MNT")
  source=$(findmnt -n -o SOURCE --mountpoint "$MNT")
  [[ $fstype == fuse.backupfs ]] || fail "type of the mount is '$fstype', not fuse.backupfs"
  [[ $source == "$want_source" ]] || fail "source of the mount is '$source', not $want_source"
  [[ $(daemons | wc -l) -eq 1 ]] || fail "expected one daemon of $BACKUPFS, found: $(daemons)"
  [[ $(readlink "$MNT/latest") == virtnbdbackup.1 ]] ||
    fail "latest -> '$(readlink "$MNT/latest")', expected virtnbdbackup.1"
  cmp "$MNT/latest/vda.raw" "$REF1" || fail "$MNT/latest/vda.raw differs from $REF1"
  cmp "$MNT/virtnbdbackup.0/vda.raw" "$REF0" || fail "$MNT/virtnbdbackup.0/vda.raw differs"
  cmp "$MNT/latest/vmconfig.xml" "$SAVESET/vmconfig.virtnbdbackup.1.xml" ||
    fail "$MNT/latest/vmconfig.xml differs from the saveset's"
  [[ $(stat -c %u "$MNT/latest/vda.raw") == "$want_uid" ]] ||
    fail "owner of vda.raw is $(stat -c %u "$MNT/latest/vda.raw"), expected $want_uid"
  [[ $(stat -c %a "$MNT/latest/vda.raw") == "$want_mode" ]] ||
    fail "mode of vda.raw is $(stat -c %a "$MNT/latest/vda.raw"), expected $want_mode"
}

# --- 1. mount -t fuse.backupfs; umount ---
log "mount -t fuse.backupfs -o ro,uid=65534,umask=0222 $SAVESET $MNT"
timeout 120 mount -t fuse.backupfs -o ro,uid=65534,umask=0222 "$SAVESET" "$MNT" ||
  fail "mount -t fuse.backupfs exited with status $?"
check_mounted 65534 444
[[ ,$(findmnt -n -o VFS-OPTIONS --mountpoint "$MNT"), == *,ro,* ]] || fail "not mounted read-only"
if touch "$MNT/latest/new" 2>/dev/null; then fail "created a file in the mount"; fi
log "umount $MNT"
timeout 60 umount "$MNT" || fail "umount exited with status $?"
mountpoint -q "$MNT" && fail "$MNT still mounted after umount"
wait_until 20 "the daemon to exit after umount" no_daemon

# --- 2. an fstab line: mount -T FSTAB MNT; mount -a; fusermount3 -u ---
FSTAB=$WORK/fstab
printf '# test_mount_fstab.sh\n%s %s fuse.backupfs %s 0 0\n' "$SAVESET" "$MNT" \
  ro,nosuid,nodev,allow_other,nofail,umask=0222 >"$FSTAB"
log "mount -T $FSTAB $MNT: $(tail -n 1 "$FSTAB")"
timeout 120 mount -T "$FSTAB" "$MNT" || fail "mount -T $FSTAB $MNT exited with status $?"
check_mounted 0 444
vfs_opts=,$(findmnt -n -o VFS-OPTIONS --mountpoint "$MNT"),
fs_opts=,$(findmnt -n -o FS-OPTIONS --mountpoint "$MNT"),
for o in ro nosuid nodev; do
  [[ $vfs_opts == *,$o,* ]] || fail "mount options $vfs_opts lack $o"
done
[[ $fs_opts == *,allow_other,* ]] || fail "file system options $fs_opts lack allow_other"
# allow_other: another user reads the image (mode 0444 by umask=0222).
setpriv --reuid=65534 --regid=65534 --clear-groups cat "$MNT/latest/vda.raw" | cmp - "$REF1" ||
  fail "user 65534 cannot read $MNT/latest/vda.raw (allow_other)"
log "mount -a -T $FSTAB: already mounted, must not mount again"
timeout 120 mount -a -T "$FSTAB" || fail "mount -a -T $FSTAB exited with status $?"
[[ $(mounts_on_mnt) -eq 1 ]] || fail "mount -a mounted the saveset again ($(mounts_on_mnt) mounts)"
log "fusermount3 -u $MNT"
fusermount3 -u "$MNT" || fail "fusermount3 -u exited with status $?"
mountpoint -q "$MNT" && fail "$MNT still mounted after fusermount3 -u"
wait_until 20 "the daemon to exit after fusermount3 -u" no_daemon

# --- 3. an fstab line naming a bucket, mounted as at boot: no AWS_* variables, no HOME ---
# The keys are where root keeps them, ~/.aws/credentials of root's home in the password
# database; the endpoint and profile are options of the line. The home directory is overlaid
# in this mount namespace only, so nothing of the real one changes.
# shellcheck source=lib/rgw.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/rgw.sh"
RGW_DIR=$BFS_FSTAB_RGW_DIR
rgw_make_bucket fstab
rgw_aws s3 sync --only-show-errors "$SAVESET" s3://fstab/vm || fail "aws s3 sync to s3://fstab/vm"
home=$(getent passwd "$(id -u)" | cut -d: -f6)
[[ -d $home ]] || fail "home directory '$home' of uid $(id -u) does not exist"
mkdir -p "$WORK/home-layer"
mount -t tmpfs -o mode=0700 tmpfs "$WORK/home-layer"
mkdir "$WORK/home-layer/upper" "$WORK/home-layer/work"
mount -t overlay overlay \
  -o "lowerdir=$home,upperdir=$WORK/home-layer/upper,workdir=$WORK/home-layer/work" "$home"
mkdir -p "$home/.aws"
printf '[fstab-test]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$home/.aws/credentials"
printf '[profile fstab-test]\nregion = us-east-1\n' >"$home/.aws/config"
MOUNT=$(command -v mount)
boot_env() { env -i "$@"; } # no AWS_*, HOME or PATH: what systemd gives a mount unit, or less

FSTAB_S3=$WORK/fstab-s3
printf '%s %s fuse.backupfs %s 0 0\n' s3://fstab/vm "$MNT" \
  "ro,nofail,_netdev,allow_other,s3_endpoint=$AWS_ENDPOINT_URL,s3_profile=fstab-test" >"$FSTAB_S3"
log "env -i mount -T $FSTAB_S3 $MNT: $(cat "$FSTAB_S3")"
boot_env timeout 120 "$MOUNT" -T "$FSTAB_S3" "$MNT" ||
  fail "mount -T $FSTAB_S3 $MNT (no environment) exited with status $?"
check_mounted 0 440 s3://fstab/vm
log "mount -a -T $FSTAB_S3: already mounted, must not mount again"
boot_env timeout 120 "$MOUNT" -a -T "$FSTAB_S3" || fail "mount -a -T $FSTAB_S3 exited with status $?"
[[ $(mounts_on_mnt) -eq 1 ]] || fail "mount -a mounted the bucket again ($(mounts_on_mnt) mounts)"
timeout 60 umount "$MNT" || fail "umount exited with status $?"
wait_until 20 "the daemon to exit after umount" no_daemon

# A profile the files lack: the mount fails at once, naming the profile and both files.
sed -i 's/s3_profile=fstab-test/s3_profile=fstab-missing/' "$FSTAB_S3"
rc=0
err=$(boot_env timeout 120 "$MOUNT" -T "$FSTAB_S3" "$MNT" 2>&1) || rc=$?
[[ $rc -ne 0 ]] || fail "a mount with a missing profile succeeded"
mountpoint -q "$MNT" && fail "$MNT mounted with a missing profile"
[[ $err == *"'fstab-missing' is in neither $home/.aws/config nor $home/.aws/credentials"* ]] ||
  fail "the missing profile's error does not name it and root's files: $err"
log "missing profile refused: $err"

echo "PASS: mount -t fuse.backupfs and fstab lines mount $SAVESET and s3://fstab/vm through mount.fuse3"
