#!/usr/bin/env bash
# The instant-recovery issue's benchmark, in one run (random and sequential reads of a mounted
# point are in bench/run-read-bench.sh):
#   time to a running domain: from the command to the domain running, for
#     a1   a 1 GiB disk fully written + 1 incremental (64 MiB of scattered writes)
#     a50  a 1 GiB disk fully written + 50 incrementals (8 MiB each)
#     c1   a 64 GiB sparse disk holding 1 GiB of data (a full backup)
#     c50  a 64 GiB sparse disk, a chain of 50 (small scattered writes)
#   ours: backupfs-restore -a instant; the anchor: virtnbdrestore -cD of the same saveset, then
#   virsh start (virtnbdmap needs the nbd kernel module, which these machines lack); for a1,
#   a50 and c1 (c50's anchor would only repeat c1's point).
#   live restore of a1: backupfs-restore -a instant-migrate of a running instant domain, against
#   backupfs-restore -a restore of the same point (qcow2, fsynced); target: <= 1.5x. The floor:
#   the same block copy (and flush) of a domain whose overlay sits on the local raw reference.
#   NBD export of a1 (plain and lz4): nbdcopy of the whole disk to null: through our export
#   (nbdkit's file plugin on the mounted image), against qemu-nbd serving the raw reference
#   file (the limit) and qemu-nbd on the mounted plain image (the alternative server).
# Every round runs one of each figure (interleaved); prints medians, ratios and raw times.
# Savesets: bench/make_bench_saveset.py with backupfs's stream-tool (a TCG domain, 96 MiB, no
# guest OS: "running" is libvirt's state, what the issue's target is about).
#
# Usage (root; exit 77 otherwise): bench/run-instant-bench.sh BUILD_DIR
#   NO_BUILD=1   do not run ninja first;   REPS=5   rounds (median reported)
#   WORK=/var/tmp/bfs-instant-bench   scratch parent (needs about 8 GiB; KEEP=1 keeps it)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
(($# == 1)) || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
build=$(realpath -m "$1")
reps=${REPS:-5}
work_root=${WORK:-/var/tmp/bfs-instant-bench}
export HOME=${HOME:-/root}
BENCH_NAME=run-instant-bench
# shellcheck source=bench/lib.sh
source bench/lib.sh
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (libvirt's system daemon, FUSE allow_other)"; exit 77; }
for c in python3 qemu-img qemu-nbd nbdcopy nbdinfo virtnbdrestore virsh fusermount3 findmnt; do
  command -v "$c" >/dev/null || fail "$c not found (scripts/install-deps.sh installs it)"
done
if [[ ${NO_BUILD:-0} != 1 ]]; then
  ninja -C "$build" backupfs backupfs-restore stream-tool >&2
fi
restore=$build/tools/backupfs-restore
tool=$build/tests/stream-tool
start_libvirtd
mkdir -p "$work_root"
work=$(mktemp -d "$work_root/run.XXXXXX")
chmod 0755 "$work"
info=$work/info.tsv
tsv=$work/times.tsv
: >"$tsv"

cleanup() {
  local rc=$? d m
  set +e
  trap - EXIT INT TERM
  for d in $(virsh -q -c qemu:///system list --all --name | grep '^bfsbench-'); do
    virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1
    virsh -q -c qemu:///system undefine --nvram "$d" >/dev/null 2>&1
  done
  for m in $(findmnt -rn -t fuse.backupfs -o TARGET | grep -F "$work/"); do fusermount3 -u -z "$m"; done
  pkill -f "qemu-nbd.*$work/" 2>/dev/null
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mk() { python3 bench/make_bench_saveset.py --stream-tool "$tool" "$@" >&2 || fail "make_bench_saveset $*"; }
log "making the savesets in $work"
mk --out "$work/a1" disk --incs 1 --inc-bytes $((64 << 20)) --no-qcow2 --lz4
mk --out "$work/a50" disk --incs 50 --inc-bytes $((8 << 20)) --min-write 4096 --max-write 262144 --no-qcow2
mk --out "$work/c1" --size $((64 << 30)) sparse --data-bytes $((1 << 30))
mk --out "$work/c50" --size $((64 << 30)) chain --links 50
mv "$work/c50/saveset" "$work/c50/plain" # chain names its saveset "saveset"
for s in a1 a50 c1 c50; do rm -f "$work/$s/ref.full.raw"; done

now() { echo "${EPOCHREALTIME/./}"; } # microseconds
record() { printf '%s\t%s\n' "$1" "$2" >>"$tsv"; }
secs() { python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / 1e6:.3f}')" "$1" "$2"; }

domain_running() { [[ $(virsh -q -c qemu:///system domstate "$1" 2>/dev/null) == running ]]; }

# ours_instant SET : -a instant, timed to the domain running; then ended (untimed).
ours_instant() {
  local set=$1 name="bfsbench-i-$1" t0 t1
  t0=$(now)
  "$restore" -n -a instant -i "$work/$set/plain" -o "$work/w-$set" -N "$name" >/dev/null 2>"$work/err" ||
    fail "instant $set: $(cat "$work/err")"
  t1=$(now)
  domain_running "$name" || fail "$name is not running after -a instant"
  record "instant/$set ours" "$(secs "$t0" "$t1")"
  "$restore" -a instant-end -N "$name" 2>"$work/err" || fail "instant-end $name: $(cat "$work/err")"
}

# anchor_instant SET : virtnbdrestore -cD + virsh start, timed; then removed (untimed).
anchor_instant() {
  local set=$1 name="bfsbench-v-$1" t0 t1
  rm -rf "$work/v-$set"
  sync
  t0=$(now)
  virtnbdrestore -i "$work/$set/plain" -o "$work/v-$set" -c -D -N "$name" -n -L "$work/vr.log" \
    >/dev/null 2>"$work/err" || fail "virtnbdrestore $set: $(tail -3 "$work/err")"
  # Its qemu-nbd may still hold the image for a moment after it returns: a start fails then.
  until qemu-img info "$work/v-$set/bfsbench.vda.qcow2" >/dev/null 2>&1; do sleep 0.02; done
  virsh -q -c qemu:///system start "$name" >/dev/null || fail "virsh start $name"
  t1=$(now)
  record "instant/$set virtnbdrestore+start" "$(secs "$t0" "$t1")"
  virsh -q -c qemu:///system destroy "$name" >/dev/null
  virsh -q -c qemu:///system undefine "$name" >/dev/null
  rm -rf "$work/v-$set"
}

# live_restore : instant-migrate of a running instant domain of a1, against -a restore.
live_restore() {
  local name=bfsbench-live t0 t1
  rm -rf "$work/live" "$work/w-live"
  "$restore" -n -a instant -i "$work/a1/plain" -o "$work/w-live" -N "$name" >/dev/null 2>"$work/err" ||
    fail "instant for live restore: $(cat "$work/err")"
  sync
  t0=$(now)
  "$restore" -n -a instant-migrate -N "$name" --migrate-to "$work/live" 2>"$work/err" ||
    fail "instant-migrate: $(cat "$work/err")"
  t1=$(now)
  domain_running "$name" || fail "$name stopped during the live restore"
  record "live/a1 instant-migrate" "$(secs "$t0" "$t1")"
  virsh -q -c qemu:///system destroy "$name" >/dev/null
  virsh -q -c qemu:///system undefine "$name" >/dev/null
  rm -rf "$work/live"
}
# mirror_local : the same copy (libvirt block copy, full, pivot, flush) of a domain whose
# overlay is backed by the local raw reference instead of the mount: what QEMU's mirror costs
# without FUSE, the floor of a live restore here.
mirror_local() {
  local name=bfsbench-mirror t0 t1
  rm -rf "$work/ml" && mkdir -m 0755 "$work/ml"
  qemu-img create -q -f qcow2 -b "$work/a1/ref.raw" -F raw "$work/ml/overlay.qcow2"
  sed -e "s|<name>bfsbench</name>|<name>$name</name>|" \
    -e "s|/var/lib/libvirt/images/bfsbench.vda.qcow2|$work/ml/overlay.qcow2|" \
    "$work/a1/plain/vmconfig.virtnbdbackup.0.xml" >"$work/ml/dom.xml"
  virsh -q -c qemu:///system define "$work/ml/dom.xml" >/dev/null || fail "define $name"
  virsh -q -c qemu:///system start "$name" >/dev/null || fail "start $name"
  sync
  t0=$(now)
  virsh -q -c qemu:///system blockcopy "$name" vda "$work/ml/copy.qcow2" --format qcow2 \
    --transient-job --wait --pivot >/dev/null || fail "blockcopy of $name"
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$work/ml/copy.qcow2"
  t1=$(now)
  record "live/a1 mirror of a local raw (floor)" "$(secs "$t0" "$t1")"
  virsh -q -c qemu:///system destroy "$name" >/dev/null
  virsh -q -c qemu:///system undefine "$name" >/dev/null
  rm -rf "$work/ml"
}

offline_restore() {
  local t0 t1
  rm -rf "$work/restored"
  sync
  t0=$(now)
  "$restore" -n -i "$work/a1/plain" -o "$work/restored" >/dev/null 2>"$work/err" || fail "restore: $(cat "$work/err")"
  t1=$(now)
  record "live/a1 restore" "$(secs "$t0" "$t1")"
  rm -rf "$work/restored"
}

# export_read KIND : nbdcopy of a1's newest vda to null, through our export (plain, lz4) or
# through qemu-nbd on the raw reference (ref).
export_read() {
  local kind=$1 sock="$work/nbd.$1.sock" pid uri t0 t1
  rm -f "$sock"
  if [[ $kind == ref || $kind == qemu-nbd ]]; then
    local img="$work/a1/ref.raw"
    if [[ $kind == qemu-nbd ]]; then
      # The alternative server: qemu-nbd on a fresh mount, as our export's nbdkit gets (a
      # mount kept from an earlier round would serve from its page cache).
      "$build/tools/backupfs" "$work/a1/plain" "$work/mnt" || fail "cannot mount a1 for qemu-nbd"
      img="$work/mnt/latest/vda.raw"
    fi
    qemu-nbd -r -f raw -x vda -k "$sock" --persistent --shared=0 "$img" &
    pid=$!
    uri="nbd+unix:///vda?socket=$sock"
    until nbdinfo --size "$uri" >/dev/null 2>&1; do sleep 0.05; done
  else
    "$restore" -a export -i "$work/a1/$kind" -d vda --socket "$sock" >"$work/uri" 2>"$work/err" &
    pid=$!
    until [[ -s $work/uri ]]; do
      kill -0 "$pid" 2>/dev/null || fail "export $kind: $(cat "$work/err")"
      sleep 0.05
    done
    uri=$(cat "$work/uri")
    : >"$work/uri"
  fi
  t0=$(now)
  nbdcopy "$uri" null: || fail "nbdcopy from $uri"
  t1=$(now)
  kill -TERM "$pid"
  wait "$pid" || true
  if [[ $kind == qemu-nbd ]]; then fusermount3 -u "$work/mnt" || fail "cannot unmount $work/mnt"; fi
  record "export/a1 $kind" "$(secs "$t0" "$t1")"
}

mkdir -p "$work/mnt"

# Warm-up (untimed): programs and savesets in the page cache for everyone alike.
for s in a1 a50 c1 c50; do cat "$work/$s/plain/"* >/dev/null; done
cat "$work/a1/lz4/"* "$work/a1/ref.raw" >/dev/null
ours_instant a1
sed -i '/^instant/d' "$tsv"

for ((r = 1; r <= reps; r++)); do
  log "round $r/$reps"
  for s in a1 a50 c1 c50; do ours_instant "$s"; done
  for s in a1 a50 c1; do anchor_instant "$s"; done
  if ((r % 2)); then live_restore; offline_restore; else offline_restore; live_restore; fi
  mirror_local
  for k in ref plain lz4 qemu-nbd; do export_read "$k"; done
done

python3 - "$tsv" <<'EOF'
import collections, statistics, sys
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, v = line.rstrip("\n").split("\t")
    t[k].append(float(v))
med = {k: statistics.median(v) for k, v in t.items()}
print(f"{'figure':40} {'median s':>9}  runs")
for k in sorted(med):
    print(f"{k:40} {med[k]:9.3f}  {' '.join(f'{x:.3f}' for x in t[k])}")
print()
for s in ("a1", "a50", "c1", "c50"):
    ours = med[f"instant/{s} ours"]
    line = f"time to running, {s}: ours {ours:.2f} s (target < 2 s)"
    if f"instant/{s} virtnbdrestore+start" in med:
        a = med[f"instant/{s} virtnbdrestore+start"]
        line += f", virtnbdrestore+start {a:.2f} s, {a / ours:.1f}x faster"
    print(line)
o = [med[f"instant/{s} ours"] for s in ("a1", "a50", "c1", "c50")]
print(f"spread of ours over size and chain length: max/min {max(o) / min(o):.2f}")
lr, rs = med["live/a1 instant-migrate"], med["live/a1 restore"]
print(f"live restore of 1 GiB: {lr:.2f} s vs -a restore {rs:.2f} s: {lr / rs:.2f}x (target <= 1.5x)")
fl = med["live/a1 mirror of a local raw (floor)"]
print(f"  floor: QEMU's mirror of the same disk from a local raw file {fl:.2f} s: live restore "
      f"{lr / fl:.2f}x of it; the floor itself is {fl / rs:.2f}x of -a restore")
ref = med["export/a1 ref"]
for k in ("plain", "lz4", "qemu-nbd"):
    print(f"export {k}: nbdcopy 1 GiB {med[f'export/a1 {k}']:.2f} s vs qemu-nbd on a raw file "
          f"{ref:.2f} s: {med[f'export/a1 {k}'] / ref:.2f}x")
EOF
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
