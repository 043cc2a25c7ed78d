#!/usr/bin/env bash
# The fleet benchmark: full backups of FLEET domains (default 4), each with one dense qcow2 disk
# of DISK_MIB random data (default 256, prefilled with qemu-img convert before the domain is
# defined), on running TCG domains:
#   sequential   FLEET separate runs, one after another: backupfs-capture -d DOM -l full
#   fleet -p 2   one run: backupfs-capture -d 'PREFIX-*' -l full --parallel 2
#   fleet -p 4   the same with --parallel 4
# Each figure is the wall time of the whole set. Rounds are interleaved (one of each figure per
# round, so background load hits all figures alike); every figure's median and min..max, and
# the ratios sequential / fleet, are printed. Target (issue 12): a fleet takes less wall time
# than one after another. Round 1 also mounts every saveset of the fleet -p 2 run with backupfs
# and compares each disk byte for byte with its random source.
#
# Usage (root; exit 77 = skip otherwise): bench/run-fleet-bench.sh [BUILD_DIR]  (default build)
#   needs BUILD_DIR/tools/backupfs-capture and backupfs
#   FLEET=4 DISK_MIB=256 REPS=3 CHECK=1
#   BENCH_ROOT=/var/tmp/backupfs-bench   scratch parent (needs ~3x FLEET x DISK_MIB); KEEP=1 keeps it
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
# shellcheck source=tests/integration/lib/harness.sh
source tests/integration/lib/harness.sh

build=$(realpath -m "${1:-build}")
fleet=${FLEET:-4}
disk_mib=${DISK_MIB:-256}
reps=${REPS:-3}
check=${CHECK:-1}
HARNESS_ROOT=${BENCH_ROOT:-/var/tmp/backupfs-bench}
KEEP_SCRATCH=${KEEP:-0}
capture=$build/tools/backupfs-capture

harness_init # root (else exit 77), scratch dir $HARNESS_DIR, cleanup trap (domains, mounts)
((fleet >= 2 && fleet <= 8)) || harness_fail "FLEET must be 2..8"
((disk_mib >= 1 && reps >= 1)) || harness_fail "DISK_MIB and REPS must be >= 1"
for b in "$capture" "$build/tools/backupfs"; do
  [[ -x $b ]] || harness_fail "$b not built (ninja -C $build backupfs-capture backupfs)"
done
harness_require qemu-img virsh python3 cmp sync
harness_need_fuse
harness_start_libvirtd

T=$HARNESS_DIR
tsv=$T/times.tsv # figure, wall µs
out=$T/out
prefix=fleetbench-$$
domains=()

# new_domain NAME IMAGE : defines and starts a TCG domain with IMAGE (qcow2) as vda.
new_domain() {
  local name=$1 img=$2
  chmod 0666 "$img"
  cat >"$T/$name.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='$img'/><target dev='vda' bus='virtio'/></disk></devices>
</domain>
EOF
  ! harness_virsh dominfo "$name" >/dev/null 2>&1 || harness_fail "domain $name already exists"
  harness_virsh define "$T/$name.xml" >/dev/null || harness_fail "virsh define $name failed"
  HARNESS_DOMAINS+=("$name") # the harness's cleanup aborts jobs, drops checkpoints, undefines
  harness_virsh start "$name" >/dev/null || harness_fail "virsh start $name failed"
}

t=$SECONDS
for ((i = 0; i < fleet; i++)); do
  dom=$prefix-$i
  head -c $((disk_mib << 20)) /dev/urandom >"$T/ref/$dom.raw"
  qemu-img convert -q -f raw -O qcow2 "$T/ref/$dom.raw" "$T/images/$dom.qcow2"
  new_domain "$dom" "$T/images/$dom.qcow2"
  domains+=("$dom")
done
harness_log "$fleet domains with ${disk_mib} MiB dense disks ready in $((SECONDS - t)) s"

# fresh : untimed, before each figure: no earlier output, nothing dirty in the page cache.
fresh() {
  rm -rf "$out"
  mkdir -p "$out"
  sync
}

# timed NAME CMD... : runs CMD (output into $T/NAME.log), records its wall time.
timed() {
  local name=$1 log t0 t1 rc=0
  shift
  log="$T/${name// /_}.log"
  t0=${EPOCHREALTIME/./}
  "$@" >"$log" 2>&1 || rc=$?
  t1=${EPOCHREALTIME/./}
  ((rc == 0)) || harness_fail "$name failed (exit $rc): $(tail -n 20 "$log")"
  printf '%s\t%d\n' "$name" $((t1 - t0)) >>"$tsv"
}

sequential() {
  local dom
  for dom in "${domains[@]}"; do
    "$capture" -d "$dom" -l full -o "$out/$dom" -n || return
  done
}

check_fleet_output() {
  local dom mnt=$T/mnt
  for dom in "${domains[@]}"; do
    harness_mount_backupfs "$build" "$out/$dom" "$mnt"
    harness_cmp "$dom virtnbdbackup.0/vda.raw" "$T/ref/$dom.raw" "$mnt/virtnbdbackup.0/vda.raw"
    harness_unmount "$mnt"
  done
}

for ((round = 1; round <= reps; round++)); do
  fresh
  timed "sequential ($fleet runs)" sequential
  fresh
  timed "fleet --parallel 2" "$capture" -d "$prefix-*" -l full -o "$out" --parallel 2 -n
  ((round > 1 || check == 0)) || check_fleet_output
  fresh
  timed "fleet --parallel 4" "$capture" -d "$prefix-*" -l full -o "$out" --parallel 4 -n
  harness_log "round $round of $reps done"
done
harness_log "the fleet -p 4 run's table (last round):"
cat "$T/fleet_--parallel_4.log" >&2

python3 - "$tsv" "$fleet" "$disk_mib" "$reps" <<'EOF'
import statistics, sys
path, fleet, mib, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
times = {}
for line in open(path):
    name, us = line.rstrip("\n").split("\t")
    times.setdefault(name, []).append(int(us) / 1e6)
print(f"{fleet} domains x {mib} MiB dense, full backups, {reps} interleaved rounds\n")
print(f"| {'figure':26} | {'median s':>8} | {'MiB/s':>6} | {'min..max s':>13} |")
print(f"|{'-' * 28}|{'-' * 9}:|{'-' * 7}:|{'-' * 14}:|")
med = {}
for name, ts in times.items():
    med[name] = statistics.median(ts)
    rate = fleet * mib / med[name]
    print(f"| {name:26} | {med[name]:8.2f} | {rate:6.1f} | {min(ts):6.2f}..{max(ts):6.2f} |")
seq = next(n for n in med if n.startswith("sequential"))
print()
for name in med:
    if name != seq:
        ok = "met" if med[name] < med[seq] else "NOT met"
        print(f"{seq} / {name}: {med[seq] / med[name]:.2f}x (target > 1: {ok})")
EOF
