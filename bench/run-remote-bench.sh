#!/usr/bin/env bash
# The remote-hypervisor issue's benchmark, in one run: backupfs-capture against virtnbdbackup
# 1.9.15's remote mode on the same setup: this machine reached as another host (sshd on
# 127.0.0.2:2222, libvirt over qemu+libssh, the backup job's NBD export on TCP 127.0.0.2:PORT,
# plain and TLS with certificates made here). Figures, each without added latency and through
# the test's own TCP proxy on 127.0.0.3 that delays every segment by DELAY_MS (5) each way:
#   A  -l copy of a running TCG domain with a 1 GiB disk of random data (dense);
#   B  -l diff after WRITES (4096) scattered 64 KiB guest writes made after one checkpoint
#      (both tools read the very same dirty bitmap; each run into a fresh hard-linked chain).
# Reps are interleaved (one of every figure per round); medians, min..max and the ratios with
# their targets are printed: A ours >= 2x faster than virtnbdbackup (TCP and TLS); B with the
# delay ours >= 5x faster than virtnbdbackup and within 2x of ours without it.
# Also, as the limit of this machine: nbdcopy of the same export over TCP (A, no delay).
#
# Reaching the export through the proxy needs the client to connect to an address other than
# the one the export binds: ours has --nbd-connect; virtnbdbackup has no such option, so its
# libnbd connect_uri is redirected by tests/tools/virtnbdbackup_remote.py, which also points
# it at the test CA (1.9.15 gives libnbd no certificate directory) and its paramiko at the
# test sshd's port and key. Round 1 checks every output byte for byte through a backupfs mount.
#
# Usage (root; exit 77 = skip otherwise): bench/run-remote-bench.sh [BUILD_DIR] (default build)
#   DISK_MIB=1024 WRITES=4096 REPS=3 DELAY_MS=5 CHECK=1 BENCH_ROOT=/var/tmp/backupfs-bench KEEP=0
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
here=$(pwd)
# shellcheck source=tests/integration/lib/harness.sh
source tests/integration/lib/harness.sh
# shellcheck source=tests/integration/lib/remote.sh
source tests/integration/lib/remote.sh

build=$(realpath -m "${1:-build}")
disk_mib=${DISK_MIB:-1024}
writes=${WRITES:-4096}
reps=${REPS:-3}
delay_ms=${DELAY_MS:-5}
check=${CHECK:-1}
HARNESS_ROOT=${BENCH_ROOT:-/var/tmp/backupfs-bench}
KEEP_SCRATCH=${KEEP:-0}
capture=$build/tools/backupfs-capture
size=$((disk_mib << 20))
wsize=65536
port=${PORT:-10870}

harness_init
for b in "$capture" "$build/tools/backupfs"; do
  [[ -x $b ]] || harness_fail "$b not built"
done
harness_require virtnbdbackup nbdcopy qemu-img virsh python3 cmp
harness_need_fuse
harness_start_libvirtd
remote_start_sshd
remote_pki
pki=$REMOTE_PKI
remote_libvirt_backup_tls
uri=$REMOTE_URI

T=$HARNESS_DIR
tsv=$T/times.tsv
info=$T/info.tsv
out=$T/out
mkdir -p "$out" "$T/images" "$T/ref" "$T/io" "$T/logs"
note() { printf '%s\t%s\n' "$1" "$2" >>"$info"; }
note "source" "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo ?)"
note "setup" "uri $uri, export 127.0.0.2:$port, proxy 127.0.0.3:$port (+${delay_ms} ms each way)"

# --- the proxy and virtnbdbackup's wrapper ----------------------------------------------------

python3 "$here/tests/tools/delay_proxy.py" --listen "127.0.0.3:$port" --to "127.0.0.2:$port" \
  --delay-ms "$delay_ms" --ready-file "$T/proxy.ready" >"$T/proxy.log" 2>&1 &
proxy_pid=$!
stop_proxy() { kill "$proxy_pid" 2>/dev/null || true; }
harness_on_exit stop_proxy
harness_wait_for 30 "the delaying proxy" test -e "$T/proxy.ready" || harness_fail "proxy: $(cat "$T/proxy.log")"


# --- domains ---------------------------------------------------------------------------------

new_domain() {
  local name=$1 img=$2
  chmod 0666 "$img"
  cat >"$T/$name.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='$img'/><target dev='vda' bus='virtio'/></disk></devices>
</domain>
EOF
  harness_virsh define "$T/$name.xml" >/dev/null || harness_fail "virsh define $name failed"
  HARNESS_DOMAINS+=("$name")
  harness_virsh start "$name" >/dev/null || harness_fail "virsh start $name failed"
}

dom_a=bfsrbench-$$-a
dom_b=bfsrbench-$$-b
ref=$T/ref/a.raw
harness_log "making the images: ${disk_mib} MiB of random data"
head -c "$size" /dev/urandom >"$ref"
qemu-img convert -q -f raw -O qcow2 "$ref" "$T/images/a.qcow2"
cp "$T/images/a.qcow2" "$T/images/b.qcow2"
new_domain "$dom_a" "$T/images/a.qcow2"
new_domain "$dom_b" "$T/images/b.qcow2"

chain=$T/chain
mkdir -m 0777 -p "$T/job"
virtnbdbackup -d "$dom_b" -l full -o "$chain" -n -f "$T/job/vnb.sock" >"$T/chain.log" 2>&1 ||
  harness_fail "virtnbdbackup -l full of $dom_b: $(tail -n 20 "$T/chain.log")"
python3 - "$writes" "$size" "$wsize" "$dom_b" >"$T/io/writes.virsh" 2>"$T/io/writes.tsv" <<'PY'
import random, sys
n, size, w, dom = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
slots = random.Random(20261130).sample(range(size // w), n)
dev = "/machine/peripheral/virtio-disk0/virtio-backend"
for i, s in enumerate(slots):
    p = 1 + i % 255
    print(f"qemu-monitor-command {dom} --hmp 'qemu-io -d {dev} \"write -P 0x{p:02x} {s * w} {w}\"'")
    print(f"{s * w}\t{p}", file=sys.stderr)
PY
dlog=/var/log/libvirt/qemu/$dom_b.log
pos=$(stat -c %s "$dlog")
virsh -q -c "$HARNESS_URI" <"$T/io/writes.virsh" >/dev/null 2>"$T/io/writes.err" ||
  harness_fail "qemu-io writes: $(tail -n 5 "$T/io/writes.err")"
for ((i = 0; i < 300; i++)); do
  done_writes=$(tail -c "+$((pos + 1))" "$dlog" | grep -c "^wrote $wsize/$wsize bytes at offset " || true)
  ((done_writes < writes)) || break
  sleep 0.1
done
((done_writes == writes)) || harness_fail "the domain log confirms $done_writes of $writes writes"
cp "$ref" "$T/ref/b.raw"
python3 - "$T/ref/b.raw" "$wsize" "$T/io/writes.tsv" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    for line in open(sys.argv[3]):
        off, p = map(int, line.split())
        f.seek(off)
        f.write(bytes([p]) * int(sys.argv[2]))
PY

# --- runs ------------------------------------------------------------------------------------

wait_no_job() {
  local i
  for ((i = 0; i < 300; i++)); do
    harness_virsh domjobinfo "$1" 2>/dev/null | grep -qE '^Job type: +None' && return 0
    sleep 0.1
  done
  harness_fail "domain $1 still runs a job"
}

fresh() {
  wait_no_job "$1"
  rm -rf "$out"
  mkdir -p "$out"
  sync
}

timed() {
  local name=$1 bytes=$2 log=$3 t0 t1 rc=0
  shift 3
  t0=${EPOCHREALTIME/./}
  "$@" >"$log" 2>&1 || rc=$?
  t1=${EPOCHREALTIME/./}
  ((rc == 0)) || harness_fail "$name failed (exit $rc): $(tail -n 20 "$log")"
  printf '%s\t%d\t%d\n' "$name" $((t1 - t0)) "$bytes" >>"$tsv"
  cp "$log" "$T/logs/${name//[^A-Za-z0-9,.-]/_}.$round.log" # each figure's output, kept with KEEP=1
}

saveset=$out/saveset
# ours NAME BYTES DOM LEVEL VIA TLS : VIA direct|proxy, TLS 0|1
ours() {
  local name=$1 bytes=$2 dom=$3 level=$4 via=$5 tls=$6 args=(-U "$uri" -P "$port" -n)
  ((tls == 0)) || args+=(--tls --tls-cert "$pki/client")
  [[ $via == direct ]] || args+=(--nbd-connect "127.0.0.3:$port")
  timed "$name" "$bytes" "$T/last.log" "$capture" -d "$dom" -l "$level" -o "$saveset" "${args[@]}"
}
vnb() {
  local name=$1 bytes=$2 dom=$3 level=$4 via=$5 tls=$6 args=(-U "$uri" --ssh-user root -I 127.0.0.2 -P "$port" -n)
  ((tls == 0)) || args+=(--tls)
  local connect=""
  [[ $via == direct ]] || connect="127.0.0.3:$port"
  timed "$name" "$bytes" "$T/last.log" env VNB_CONNECT="$connect" \
    VNB_EXPORT="127.0.0.2:$port" VNB_CERTS="$pki/client" VNB_SSH_HOST=127.0.0.2 VNB_SSH_PORT=2222 \
    VNB_SSH_KEY="$REMOTE_KEY" /usr/bin/python3 "$here/tests/tools/virtnbdbackup_remote.py" \
    -d "$dom" -l "$level" -o "$saveset" "${args[@]}"
  ! grep -E ' (ERROR|CRITICAL) |Traceback' "$T/last.log" >&2 || harness_fail "$name logged errors"
}

check_saveset() {
  ((round == 1 && check)) || return 0
  harness_mount_backupfs "$build" "$saveset" "$T/mnt"
  harness_cmp "$1" "$2" "$T/mnt/latest/vda.raw"
  harness_unmount "$T/mnt"
}

nbdcopy_limit() {
  fresh "$dom_a"
  cat >"$T/backup.xml" <<EOF
<domainbackup mode='pull'>
  <server transport='tcp' name='127.0.0.2' port='$port'/>
  <disks><disk name='vda' backup='yes' type='file'><scratch file='$T/job/vda.scratch'/></disk></disks>
</domainbackup>
EOF
  local t0 t1 rc=0
  t0=${EPOCHREALTIME/./}
  virsh -q -c "$uri" backup-begin "$dom_a" "$T/backup.xml" >"$T/nbdcopy.log" 2>&1 || rc=$?
  ((rc != 0)) || nbdcopy "nbd://127.0.0.2:$port/vda" "$out/vda.raw" >>"$T/nbdcopy.log" 2>&1 || rc=$?
  virsh -q -c "$uri" domjobabort "$dom_a" >>"$T/nbdcopy.log" 2>&1 || rc=$?
  t1=${EPOCHREALTIME/./}
  ((rc == 0)) || harness_fail "nbdcopy limit: $(tail -n 5 "$T/nbdcopy.log")"
  printf '%s\t%d\t%d\n' "A nbdcopy over TCP into a raw file (no fsync)" $((t1 - t0)) "$size" >>"$tsv"
}

figure_a() { # VIA TLS
  local tag="A copy, $1, $([[ $2 == 1 ]] && echo TLS || echo TCP)"
  fresh "$dom_a"
  vnb "$tag: virtnbdbackup" "$size" "$dom_a" copy "$1" "$2"
  check_saveset "$tag: virtnbdbackup" "$ref"
  fresh "$dom_a"
  ours "$tag: backupfs-capture" "$size" "$dom_a" copy "$1" "$2"
  check_saveset "$tag: backupfs-capture" "$ref"
}

figure_b() { # VIA TLS
  local tag="B diff, $1, $([[ $2 == 1 ]] && echo TLS || echo TCP)" tool
  for tool in vnb ours; do
    fresh "$dom_b"
    cp -al "$chain" "$saveset"
    "$tool" "$tag: $([[ $tool == ours ]] && echo backupfs-capture || echo virtnbdbackup)" \
      $((writes * wsize)) "$dom_b" diff "$1" "$2"
    check_saveset "$tag: $tool" "$T/ref/b.raw"
  done
}

round() {
  cat "$T"/images/*.qcow2 >/dev/null
  nbdcopy_limit
  local via tls
  for via in direct proxy; do
    for tls in 0 1; do
      figure_a "$via" "$tls"
      figure_b "$via" "$tls"
    done
  done
  rm -rf "$out"
}

note "load before (uptime)" "$(uptime)"
for ((round = 1; round <= reps; round++)); do
  t=$SECONDS
  round
  harness_log "round $round of $reps done in $((SECONDS - t)) s"
done
note "load after (uptime)" "$(uptime)"

python3 - "$tsv" "$info" "$reps" "$delay_ms" <<'PY'
import statistics, sys
tsv, info, reps, delay = sys.argv[1:]
runs, size = {}, {}
for line in open(tsv):
    name, usec, nbytes = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append(int(usec) / 1e6)
    size[name] = int(nbytes)
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    print(f"{k}: {v}")
print(f"\n{reps} rounds, medians (min..max); 'proxy' = +{delay} ms each way\n")
med = {n: statistics.median(v) for n, v in runs.items()}
for n, v in runs.items():
    mib = size[n] / (1 << 20)
    rate = f"{mib / med[n]:8.1f} MiB/s" if size[n] else ""
    print(f"{n:60s} {med[n]:8.3f} s ({min(v):.3f}..{max(v):.3f}) {rate}")
print()
def ratio(label, slow, fast, target):
    if slow in med and fast in med:
        r = med[slow] / med[fast]
        print(f"{label:70s} {r:6.2f}x  (target {target})")
for via in ("direct", "proxy"):
    for t in ("TCP", "TLS"):
        ratio(f"A {via} {t}: virtnbdbackup / ours", f"A copy, {via}, {t}: virtnbdbackup",
              f"A copy, {via}, {t}: backupfs-capture", ">= 2" if via == "direct" else "-")
        ratio(f"B {via} {t}: virtnbdbackup / ours", f"B diff, {via}, {t}: virtnbdbackup",
              f"B diff, {via}, {t}: backupfs-capture", ">= 5" if via == "proxy" else "-")
for t in ("TCP", "TLS"):
    ratio(f"B ours {t}: with the delay / without", f"B diff, proxy, {t}: backupfs-capture",
          f"B diff, direct, {t}: backupfs-capture", "<= 2")
ratio("A direct TCP: ours / nbdcopy (no fsync)", "A copy, direct, TCP: backupfs-capture",
      "A nbdcopy over TCP into a raw file (no fsync)", "-")
PY
