#!/usr/bin/env bash
# The capture issue's benchmark, in one run: backupfs-capture against its anchors (nbdcopy from
# the same pull-mode export, and virtnbdbackup 1.9.15, whose drop-in replacement it is), on
# running TCG domains whose qcow2 disks are prefilled with random data (qemu-img convert, before
# the domain is defined). Reps are interleaved (one of each figure per round, so background load
# hits all figures alike); prints every figure's median, min..max and peak RSS, and the ratios
# with their targets:
#   A  1 disk of DISK_MIB random data: nbdcopy into a raw file (backup job start and stop
#      included; also with --flush, which is as durable as ours: we fsync), virtnbdbackup -l copy
#      and -l full, backupfs-capture -l copy and -l full. Ours <= 1.1x nbdcopy, faster than
#      virtnbdbackup, peak RSS < 256 MiB.
#   B  -l diff of both tools on one dirty set: WRITES scattered 64 KiB guest writes made after
#      one checkpoint (a virtnbdbackup -l full of a second domain, a copy of A's image). A diff
#      creates no checkpoint, so every rep of both tools reads the very same dirty bitmap; each
#      run writes into a fresh directory holding the chain (hard links). Target: ours >= 3x.
#   C  2 disks of DISK_MIB/2: backupfs-capture -w 1 vs -w 2 (not available: said so, not failed,
#      when its --help lists no --worker); virtnbdbackup -w 1 and -w 2 for reference.
#   D  -z (lz4, default level) on A's disk: ours with -z vs ours without (must keep pace),
#      and virtnbdbackup -z.
# Floors (informational): dd of A's bytes and of B's bytes from the page cache into a file with
# conv=fdatasync, the time this disk takes to make that many bytes durable, which ours (fsync)
# cannot beat; virtnbdbackup never fsyncs, so its figures are also given with a sync of its
# file. C is also run into tmpfs (TMPFS, default /dev/shm: no disk at all) to tell whether
# -w 2 is held back by the disk or by the reads.
# Round 1 also checks every output byte for byte (backupfs mounts of the savesets, cmp of
# nbdcopy's file) against the random source and, for B, the source with the writes applied.
#
# Usage (root; exit 77 = skip otherwise): bench/run-capture-bench.sh [BUILD_DIR]   (default build)
#   needs BUILD_DIR/tools/backupfs-capture and backupfs (ninja -C BUILD_DIR backupfs-capture backupfs)
#   DISK_MIB=1024  disk of A, B, D; C has two disks of DISK_MIB/2
#   WRITES=4096    64 KiB writes of B (distinct 64 KiB-aligned slots of the disk)
#   REPS=3         rounds (median reported)
#   CHECK=1        round-1 byte checks (0 skips them)
#   BENCH_ROOT=/var/tmp/backupfs-bench   scratch parent (needs ~6x DISK_MIB); KEEP=1 keeps it
#   TMPFS=/dev/shm  tmpfs for C's second pair of figures (needs DISK_MIB free); "" skips them
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
# shellcheck source=tests/integration/lib/harness.sh
source tests/integration/lib/harness.sh

build=$(realpath -m "${1:-build}")
disk_mib=${DISK_MIB:-1024}
writes=${WRITES:-4096}
reps=${REPS:-3}
check=${CHECK:-1}
HARNESS_ROOT=${BENCH_ROOT:-/var/tmp/backupfs-bench}
KEEP_SCRATCH=${KEEP:-0}
capture=$build/tools/backupfs-capture
size=$((disk_mib << 20))
size2=$(((disk_mib / 2) << 20)) # each disk of C
wsize=65536
tmpfs=${TMPFS-/dev/shm}

harness_init # root (else exit 77), scratch dir $HARNESS_DIR, cleanup trap (domains, mounts)
((disk_mib >= 2 && disk_mib % 2 == 0)) || harness_fail "DISK_MIB must be even and >= 2"
((writes >= 1 && writes <= size / wsize)) || harness_fail "WRITES must be 1..$((size / wsize))"
((reps >= 1)) || harness_fail "REPS must be >= 1"
for b in "$capture" "$build/tools/backupfs"; do
  [[ -x $b ]] || harness_fail "$b not built (ninja -C $build backupfs-capture backupfs)"
done
harness_require virtnbdbackup nbdcopy qemu-img virsh python3 cmp sync /usr/bin/time
harness_need_fuse
harness_start_libvirtd
# libvirt 9.0 re-probes QEMU's capabilities (~36 s) on each define unless /dev/kvm is root:kvm 0660.
[[ $(stat -c '%U:%G %a' /dev/kvm 2>/dev/null) == "root:kvm 660" ]] ||
  harness_log "warning: /dev/kvm is '$(stat -c '%U:%G %a' /dev/kvm 2>&1)', not 'root:kvm 660': defines will be slow"

T=$HARNESS_DIR
tsv=$T/times.tsv   # name, wall µs, bytes, peak RSS KiB
info=$T/info.tsv   # key, value
out=$T/out         # one output at a time
mkdir -p "$out"
mkdir -m 0777 "$T/job" "$T/scratch"
if [[ -n $tmpfs ]]; then
  [[ $(stat -f -c %T "$tmpfs" 2>/dev/null) == tmpfs ]] || harness_fail "TMPFS=$tmpfs is not a tmpfs"
  tmp_out=$(mktemp -d "$tmpfs/backupfs-bench.XXXXXX")
  rm_tmp_out() { rm -rf "$tmp_out"; }
  harness_on_exit rm_tmp_out
fi
note() { printf '%s\t%s\n' "$1" "$2" >>"$info"; }

src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
if [[ -n $src ]] && rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
  rev+=" ($(git -C "$src" status --porcelain --untracked-files=no | wc -l) tracked files modified)"
else
  rev="unknown (not a git checkout)"
fi
note "source" "${src:-?} at $rev; binary built $(date -u -r "$capture" '+%F %T UTC')"
help=$("$capture" --help 2>&1 || true)
ours_common=()
! grep -q -- '--noprogress' <<<"$help" || ours_common+=(-n)
has_worker=0
! grep -q -- '--worker' <<<"$help" || has_worker=1

# --- domains ---------------------------------------------------------------------------------

# new_domain NAME IMAGE... : defines and starts a TCG domain with these qcow2 images as vda, vdb...
new_domain() {
  local name=$1 disks="" i=0 img
  shift
  for img in "$@"; do
    chmod 0666 "$img"
    disks+="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    disks+="<source file='$img'/><target dev='vd${HARNESS_LETTERS:i:1}' bus='virtio'/></disk>"
    i=$((i + 1))
  done
  cat >"$T/$name.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>$disks</devices>
</domain>
EOF
  ! harness_virsh dominfo "$name" >/dev/null 2>&1 || harness_fail "domain $name already exists"
  harness_virsh define "$T/$name.xml" >/dev/null || harness_fail "virsh define $name failed"
  HARNESS_DOMAINS+=("$name") # the harness's cleanup aborts jobs, drops checkpoints, undefines
  harness_virsh start "$name" >/dev/null || harness_fail "virsh start $name failed"
}

# qcow2_from RAW QCOW2 : the prefilled image (every cluster allocated, as a guest would leave it).
qcow2_from() { qemu-img convert -q -f raw -O qcow2 "$1" "$2"; }

dom_a=bfsbench-$$-a # A and D
dom_b=bfsbench-$$-b # B: a copy of A's image, its own checkpoint (fulls on A delete checkpoints)
dom_c=bfsbench-$$-c # C: two disks
ref=$T/ref/a.raw
t=$SECONDS
harness_log "making the images: ${disk_mib} MiB of random data, qemu-img convert"
head -c "$size" /dev/urandom >"$ref"
qcow2_from "$ref" "$T/images/a.qcow2"
cp "$T/images/a.qcow2" "$T/images/b.qcow2"
head -c "$size2" "$ref" >"$T/ref/c.vda.raw"
tail -c "$size2" "$ref" >"$T/ref/c.vdb.raw"
qcow2_from "$T/ref/c.vda.raw" "$T/images/c.vda.qcow2"
qcow2_from "$T/ref/c.vdb.raw" "$T/images/c.vdb.qcow2"
t1=$SECONDS
new_domain "$dom_a" "$T/images/a.qcow2"
new_domain "$dom_b" "$T/images/b.qcow2"
new_domain "$dom_c" "$T/images/c.vda.qcow2" "$T/images/c.vdb.qcow2"
harness_log "images in $((t1 - t)) s, 3 domains defined and started in $((SECONDS - t1)) s"

# --- runs ------------------------------------------------------------------------------------

wait_no_job() {
  local i
  for ((i = 0; i < 300; i++)); do
    harness_virsh domjobinfo "$1" 2>/dev/null | grep -qE '^Job type: +None' && return 0
    sleep 0.1
  done
  harness_fail "domain $1 still runs a job: $(harness_virsh domjobinfo "$1" 2>&1)"
}

# fresh DOM : untimed, before each figure: no job on DOM, no earlier output, nothing dirty in
# the page cache (writeback of an earlier figure's output must not slow this one).
fresh() {
  wait_no_job "$1"
  rm -rf "$out" "$T/job"/*
  mkdir -p "$out"
  sync
}

# timed NAME BYTES LOG CMD... : runs CMD (stdout and stderr into LOG), records its wall time and
# peak RSS (/usr/bin/time %M, KiB).
timed() {
  local name=$1 bytes=$2 log=$3 t0 t1 rc=0
  shift 3
  t0=${EPOCHREALTIME/./}
  /usr/bin/time -f %M -o "$log.rss" "$@" >"$log" 2>&1 || rc=$?
  t1=${EPOCHREALTIME/./}
  ((rc == 0)) || harness_fail "$name failed (exit $rc): $(tail -n 20 "$log")"
  printf '%s\t%d\t%d\t%d\n' "$name" $((t1 - t0)) "$bytes" "$(tail -n 1 "$log.rss")" >>"$tsv"
}

# nbdcopy_figure NAME DOM [NBDCOPY_OPTION...] : pull-mode backup job started, nbdcopy of vda into
# a raw file, job aborted; all of it timed.
nbdcopy_figure() {
  local name=$1 dom=$2 t0 t1 rc=0
  shift 2
  fresh "$dom"
  cat >"$T/backup.xml" <<EOF
<domainbackup mode='pull'>
  <server transport='unix' socket='$T/job/nbd.sock'/>
  <disks><disk name='vda' backup='yes' type='file'><scratch file='$T/job/vda.scratch'/></disk></disks>
</domainbackup>
EOF
  t0=${EPOCHREALTIME/./}
  harness_virsh backup-begin "$dom" "$T/backup.xml" >"$T/nbdcopy.log" 2>&1 || rc=$?
  ((rc != 0)) || /usr/bin/time -f %M -o "$T/nbdcopy.rss" nbdcopy "$@" \
    "nbd+unix:///vda?socket=$T/job/nbd.sock" "$out/vda.raw" >>"$T/nbdcopy.log" 2>&1 || rc=$?
  harness_virsh domjobabort "$dom" >>"$T/nbdcopy.log" 2>&1 || rc=$?
  t1=${EPOCHREALTIME/./}
  ((rc == 0)) || harness_fail "$name failed: $(tail -n 20 "$T/nbdcopy.log")"
  printf '%s\t%d\t%d\t%d\n' "$name" $((t1 - t0)) "$size" "$(tail -n 1 "$T/nbdcopy.rss")" >>"$tsv"
}

# ours NAME BYTES DOM LEVEL [OPTION...] / vnb ...: one backup into $saveset ($out/saveset).
saveset=$out/saveset
ours() {
  local name=$1 bytes=$2 dom=$3 level=$4
  shift 4
  timed "$name" "$bytes" "$T/last.log" "$capture" -d "$dom" -l "$level" -o "$saveset" \
    "${ours_common[@]}" "$@"
}
vnb() {
  local name=$1 bytes=$2 dom=$3 level=$4
  shift 4
  timed "$name" "$bytes" "$T/last.log" virtnbdbackup -d "$dom" -l "$level" -o "$out/saveset" -n \
    -f "$T/job/vnb.sock" -S "$T/scratch" "$@"
  ! grep -E ' (ERROR|CRITICAL) |Traceback' "$T/last.log" >&2 || harness_fail "$name logged errors"
}

# check_saveset WHAT DISK REFERENCE : round 1 only: latest/DISK.raw of the saveset == REFERENCE.
check_saveset() {
  ((round == 1 && check)) || return 0
  harness_mount_backupfs "$build" "$saveset" "$T/mnt"
  harness_cmp "$1" "$3" "$T/mnt/latest/$2.raw"
  harness_unmount "$T/mnt"
}

# --- B: the checkpoint and the dirty set -----------------------------------------------------

# One checkpoint (virtnbdbackup.0, by a virtnbdbackup full of domain B), then WRITES distinct
# random 64 KiB-aligned 64 KiB guest writes (pattern 1 + i % 255) through HMP qemu-io: one
# monitor command per write (qemu-io takes one command per call), all through one virsh process
# reading them from stdin, so the cost is libvirt's monitor round trip (~8 ms), not a virsh start
# and connect per write. Written while the domain runs, after the checkpoint: the dirty bitmap
# is the guest's own.
chain=$T/chain
harness_log "B: virtnbdbackup -l full of $dom_b (the checkpoint every diff starts from)"
virtnbdbackup -d "$dom_b" -l full -o "$chain" -n -f "$T/job/vnb.sock" -S "$T/scratch" \
  >"$T/chain.log" 2>&1 || harness_fail "virtnbdbackup -l full of $dom_b: $(tail -n 20 "$T/chain.log")"
[[ $(cat "$chain/$dom_b.cpt") == '["virtnbdbackup.0"]' ]] || harness_fail "unexpected $chain/$dom_b.cpt"
python3 - "$writes" "$size" "$wsize" "$dom_b" >"$T/io/writes.virsh" 2>"$T/io/writes.tsv" <<'PY'
import random, sys
n, size, w, dom = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
slots = random.Random(20261126).sample(range(size // w), n)
dev = "/machine/peripheral/virtio-disk0/virtio-backend"
for i, s in enumerate(slots):
    p = 1 + i % 255
    print(f"qemu-monitor-command {dom} --hmp 'qemu-io -d {dev} \"write -P 0x{p:02x} {s * w} {w}\"'")
    print(f"{s * w}\t{p}", file=sys.stderr)
PY
dlog=/var/log/libvirt/qemu/$dom_b.log
pos=$(stat -c %s "$dlog")
t0=${EPOCHREALTIME/./}
virsh -q -c "$HARNESS_URI" <"$T/io/writes.virsh" >"$T/io/writes.out" 2>"$T/io/writes.err" ||
  harness_fail "virsh (qemu-io writes) failed: $(tail -n 5 "$T/io/writes.err")"
t1=${EPOCHREALTIME/./}
[[ ! -s $T/io/writes.err ]] || harness_fail "qemu-io writes: $(head -n 5 "$T/io/writes.err")"
# HMP returns nothing of qemu-io's output; qemu-io prints to QEMU's stderr, i.e. the domain log.
for ((i = 0; i < 100; i++)); do
  done_writes=$(tail -c "+$((pos + 1))" "$dlog" | grep -c "^wrote $wsize/$wsize bytes at offset " || true)
  ((done_writes < writes)) || break
  sleep 0.1
done
((done_writes == writes)) || harness_fail "the domain log confirms $done_writes of $writes qemu-io writes"
! tail -c "+$((pos + 1))" "$dlog" | grep -qiE 'failed|error|denied|invalid' ||
  harness_fail "qemu-io errors in $dlog"
note "B dirty set" "$writes writes of 64 KiB (HMP qemu-io, one virsh): $(((t1 - t0) / 1000)) ms, $(((t1 - t0) / writes)) µs each"
harness_log "B: $writes guest writes in $(((t1 - t0) / 1000)) ms"
if ((check)); then # the guest's vda now: the random source with the writes applied
  cp "$ref" "$T/ref/b.raw"
  python3 - "$T/ref/b.raw" "$wsize" "$T/io/writes.tsv" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    for line in open(sys.argv[3]):
        off, p = map(int, line.split())
        f.seek(off)
        f.write(bytes([p]) * int(sys.argv[2]))
PY
fi

# synced NAME BYTES FILE : the figure just recorded (the last line of $tsv) plus a sync of FILE,
# recorded as NAME: what a tool that never fsyncs would take to leave its file durable.
synced() {
  local t0 t1
  t0=${EPOCHREALTIME/./}
  sync "$3"
  t1=${EPOCHREALTIME/./}
  printf '%s\t%d\t%d\t0\n' "$1" $(($(tail -n 1 "$tsv" | cut -f 2) + t1 - t0)) "$2" >>"$tsv"
}

# floor NAME BYTES : dd of BYTES of the random source (in page cache) into a file, fdatasync
# included: how long this disk takes to make that many bytes durable.
floor() {
  fresh "$dom_a"
  timed "$1" "$2" "$T/dd.log" dd if="$ref" of="$out/floor.raw" bs=64K count=$(($2 / 65536)) \
    conv=fdatasync status=none
}

# data_size FILE : the dataSize of a stream data file's metadata (its first frame).
data_size() {
  python3 - "$1" <<'PY'
import json, sys
head = open(sys.argv[1], "rb").read(1 << 20)
assert head[:5] == b"meta " and head[38:40] == b"\r\n", "no meta frame"
print(json.loads(head[40:40 + int(head[22:38], 16)])["dataSize"])
PY
}

# diff_figure NAME TOOL : TOOL's -l diff into a fresh directory holding the chain (hard links:
# neither tool reads the full's data; they read the .cpt list and checkpoints/, and backupfs
# needs the full to mount the diff for the check).
diff_figure() {
  local name=$1 tool=$2 f got
  fresh "$dom_b"
  cp -al "$chain" "$out/saveset"
  "$tool" "$name" $((writes * wsize)) "$dom_b" diff
  f=$(find "$out/saveset" -name 'vda.diff.*.data')
  [[ $(wc -l <<<"$f") == 1 && -s $f ]] || harness_fail "$name wrote no single vda.diff.*.data"
  [[ $tool != vnb ]] || synced "$name, then sync of its file" $((writes * wsize)) "$f"
  got=$(data_size "$f") || harness_fail "$name: no stream metadata in $f"
  [[ $got == $((writes * wsize)) ]] || harness_fail "$name: dataSize $got in $f, want $((writes * wsize))"
  check_saveset "$name: latest (the diff) == the guest's vda" vda "$T/ref/b.raw"
}

# --- one round of every figure ----------------------------------------------------------------

round() {
  cat "$T"/images/*.qcow2 >/dev/null # the sources in page cache, as they are for QEMU
  # A
  nbdcopy_figure "A nbdcopy" "$dom_a"
  ((round > 1 || !check)) || harness_cmp "A nbdcopy raw file" "$ref" "$out/vda.raw"
  nbdcopy_figure "A nbdcopy --flush" "$dom_a" --flush
  fresh "$dom_a" # what the job's start and stop alone cost in the nbdcopy figures
  # shellcheck disable=SC2016 # expanded by sh -c
  timed "A virsh backup-begin + domjobabort, no copy" 0 "$T/job.log" \
    sh -c 'virsh -q -c "$0" backup-begin "$1" "$2" && virsh -q -c "$0" domjobabort "$1"' \
    "$HARNESS_URI" "$dom_a" "$T/backup.xml"
  fresh "$dom_a"
  floor "A dd of the same bytes, fdatasync (the disk's floor)" "$size"
  fresh "$dom_a"
  vnb "A virtnbdbackup -l copy" "$size" "$dom_a" copy
  synced "A virtnbdbackup -l copy, then sync of its file" "$size" "$out/saveset/vda.copy.data"
  check_saveset "A virtnbdbackup -l copy" vda "$ref"
  fresh "$dom_a"
  ours "A backupfs-capture -l copy" "$size" "$dom_a" copy
  check_saveset "A backupfs-capture -l copy" vda "$ref"
  fresh "$dom_a"
  vnb "A virtnbdbackup -l full" "$size" "$dom_a" full
  fresh "$dom_a"
  ours "A backupfs-capture -l full" "$size" "$dom_a" full
  check_saveset "A backupfs-capture -l full" vda "$ref"
  # D
  fresh "$dom_a"
  vnb "D virtnbdbackup -l copy -z" "$size" "$dom_a" copy -z
  fresh "$dom_a"
  ours "D backupfs-capture -l copy -z" "$size" "$dom_a" copy -z
  check_saveset "D backupfs-capture -l copy -z" vda "$ref"
  # B
  floor "B dd of the same bytes, fdatasync (the disk's floor)" $((writes * wsize))
  diff_figure "B virtnbdbackup -l diff" vnb
  diff_figure "B backupfs-capture -l diff" ours
  # C
  local w
  for w in 1 2; do
    fresh "$dom_c"
    vnb "C virtnbdbackup -l copy -w $w" $((2 * size2)) "$dom_c" copy -w "$w"
    fresh "$dom_c"
    if ((has_worker)); then
      ours "C backupfs-capture -l copy -w $w" $((2 * size2)) "$dom_c" copy -w "$w"
    elif ((w == 1)); then
      ours "C backupfs-capture -l copy (no -w option)" $((2 * size2)) "$dom_c" copy
    fi
    ((has_worker || w == 1)) || continue
    check_saveset "C backupfs-capture -w $w vda" vda "$T/ref/c.vda.raw"
    check_saveset "C backupfs-capture -w $w vdb" vdb "$T/ref/c.vdb.raw"
  done
  if ((has_worker)) && [[ -n $tmpfs ]]; then
    for w in 1 2; do
      fresh "$dom_c"
      rm -rf "$tmp_out/saveset"
      saveset=$tmp_out/saveset ours "C backupfs-capture -l copy -w $w, into tmpfs" \
        $((2 * size2)) "$dom_c" copy -w "$w"
      saveset=$tmp_out/saveset check_saveset "C tmpfs -w $w vda" vda "$T/ref/c.vda.raw"
      saveset=$tmp_out/saveset check_saveset "C tmpfs -w $w vdb" vdb "$T/ref/c.vdb.raw"
      rm -rf "$tmp_out/saveset"
    done
  fi
  rm -rf "$out"
}

note "load before (uptime)" "$(uptime)"
for ((round = 1; round <= reps; round++)); do
  t=$SECONDS
  round
  harness_log "round $round of $reps done in $((SECONDS - t)) s"
done
note "load after (uptime)" "$(uptime)"

python3 - "$tsv" "$info" "$disk_mib" "$writes" "$reps" "$has_worker" <<'PY'
import statistics, sys
tsv, info, disk_mib, writes, reps, has_worker = sys.argv[1:]
runs, size, rss = {}, {}, {}
for line in open(tsv):
    name, usec, nbytes, kib = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append(int(usec) / 1e6)
    rss.setdefault(name, []).append(int(kib))
    size[name] = int(nbytes)
notes = {}
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    notes[k] = v
med = {k: statistics.median(v) for k, v in runs.items()}
verdict = lambda ok: "PASS" if ok else "MISS"

print(f"\nA, D: 1 disk of {disk_mib} MiB random data; B: {writes} scattered 64 KiB writes after a "
      f"checkpoint; C: 2 disks of {int(disk_mib) // 2} MiB; medians of {reps} interleaved runs\n")
print(f"| {'figure':50} | {'median s':>8} | {'MiB/s':>6} | {'min..max s':>15} | {'peak RSS MiB':>12} |")
print(f"|{'-' * 52}|{'-' * 10}|{'-' * 8}|{'-' * 17}|{'-' * 14}|")
for name, v in runs.items():
    mibs = f"{size[name] / 2**20 / med[name]:6.0f}" if size[name] else f"{'':6}"
    peak = f"{max(rss[name]) / 1024:12.1f}" if max(rss[name]) else f"{'':12}"
    spread = f"{min(v):.3f}..{max(v):.3f}"
    print(f"| {name:50} | {med[name]:8.3f} | {mibs} | {spread:>15} | {peak} |")

rows = []
tests = {"<=": lambda v, b: v <= b, ">=": lambda v, b: v >= b, ">": lambda v, b: v > b}
def ratio(label, num, den, target=None):
    """num's median time over den's, with its target (operator, bound) if any."""
    if num not in med or den not in med:
        rows.append((label, "not available", ""))
        return
    value = med[num] / med[den]
    t = f"{target[0]} {target[1]:.2f} {verdict(tests[target[0]](value, target[1]))}" if target else ""
    rows.append((label, f"{value:.2f}", t))

ours_copy, ours_full = "A backupfs-capture -l copy", "A backupfs-capture -l full"
ratio("A ours -l copy / nbdcopy (time)", ours_copy, "A nbdcopy", ("<=", 1.10))
ratio("A ours -l full / nbdcopy (time)", ours_full, "A nbdcopy", ("<=", 1.10))
ratio("A ours -l copy / nbdcopy --flush (time; both fsync)", ours_copy, "A nbdcopy --flush", ("<=", 1.10))
ratio("A ours -l full / nbdcopy --flush (time; both fsync)", ours_full, "A nbdcopy --flush", ("<=", 1.10))
ratio("A virtnbdbackup -l copy / ours -l copy (speedup)", "A virtnbdbackup -l copy", ours_copy, (">", 1.0))
ratio("A virtnbdbackup -l full / ours -l full (speedup)", "A virtnbdbackup -l full", ours_full, (">", 1.0))
ratio("A virtnbdbackup -l copy + sync / ours -l copy (speedup)",
      "A virtnbdbackup -l copy, then sync of its file", ours_copy)
ratio("A ours -l copy / dd fdatasync of its bytes (the floor)", ours_copy,
      "A dd of the same bytes, fdatasync (the disk's floor)")
peak = max(max(v) for k, v in rss.items() if "backupfs-capture" in k)
rows.append(("A..D ours peak RSS, any run (MiB)", f"{peak / 1024:.1f}", f"< 256 {verdict(peak < 256 * 1024)}"))
ratio("B virtnbdbackup -l diff / ours -l diff (speedup)", "B virtnbdbackup -l diff",
      "B backupfs-capture -l diff", (">=", 3.0))
ratio("B virtnbdbackup -l diff + sync / ours -l diff (speedup)",
      "B virtnbdbackup -l diff, then sync of its file", "B backupfs-capture -l diff")
ratio("B ours -l diff / dd fdatasync of its bytes (the floor)", "B backupfs-capture -l diff",
      "B dd of the same bytes, fdatasync (the disk's floor)")
if has_worker == "1":
    ratio("C ours -w 1 / ours -w 2 (speedup of -w 2)", "C backupfs-capture -l copy -w 1",
          "C backupfs-capture -l copy -w 2", (">", 1.0))
else:
    rows.append(("C ours -w 1 / ours -w 2 (speedup of -w 2)", "not available", "(no --worker)"))
ratio("C ours -w 1 / ours -w 2, into tmpfs (speedup of -w 2)",
      "C backupfs-capture -l copy -w 1, into tmpfs", "C backupfs-capture -l copy -w 2, into tmpfs")
ratio("C virtnbdbackup -w 1 / virtnbdbackup -w 2 (its speedup)", "C virtnbdbackup -l copy -w 1",
      "C virtnbdbackup -l copy -w 2")
ratio("D ours -z / ours without -z (time)", "D backupfs-capture -l copy -z", ours_copy, ("<=", 1.10))
ratio("D virtnbdbackup -z / ours -z (speedup)", "D virtnbdbackup -l copy -z",
      "D backupfs-capture -l copy -z", (">", 1.0))

print(f"\n| {'ratio (medians)':58} | {'value':>13} | {'target':>12} |")
print(f"|{'-' * 60}|{'-' * 15}|{'-' * 14}|")
for label, value, t in rows:
    print(f"| {label:58} | {value:>13} | {t:>12} |")
print()
for k in ("source", "B dirty set", "load before (uptime)", "load after (uptime)"):
    print(f"{k}: {notes[k].strip()}")
PY
