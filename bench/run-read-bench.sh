#!/usr/bin/env bash
# The compressed-reads benchmark of issue 10, in one run: random 4 KiB reads (fio, O_DIRECT,
# QD1 psync and QD16 libaio, over the whole image) and sequential first reads (cat, fresh mount)
# of one 1 GiB restore point, through
#   - a minimal passthrough FUSE file over the raw reference image (the limit),
#   - backupfs on the plain saveset, on our -z saveset (stream-tool --lz4, as backupfs-capture
#     -z writes), and on virtnbdbackup's -z saveset (make_bench_saveset.py vnb-lz4: linked
#     64 KiB blocks, as virtnbdbackup 1.9.15 writes them),
#   - qemu-storage-daemon's FUSE export of the equivalent qcow2 chain,
#   - and, with BASE=DIR (a build of the landed code, e.g. main at 432d3e5), that backupfs on
#     the same three savesets (our -z saveset as the landed writer wrote it: 4 MiB blocks).
# The data compresses to about half with lz4 (2 KiB random + 2 KiB text per 4 KiB), so lz4
# blocks are really compressed (random data would be stored as raw blocks, which cost nothing
# to decode). Rounds are interleaved (every figure once per round); medians are printed, with
# the ratios against the targets, and the machine's limits measured in the same run.
#
# Usage (root): bench/run-read-bench.sh [BUILD_DIR]          (BUILD_DIR defaults to build)
#   REPS=3          rounds (median reported)
#   RUNTIME=5       seconds per fio job
#   DISK_MIB=1024   the disk (full backup + INCS incs of INC_MIB scattered writes)
#   INCS=1 INC_MIB=64
#   BASE=DIR        also the landed backupfs from build DIR (its stream-tool writes its -z set)
#   NO_BUILD=1      use the binaries as they are
#   BENCH_DIR=/var/tmp   scratch (needs ~4x DISK_MIB); KEEP=1 keeps it
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
reps=${REPS:-3}
runtime=${RUNTIME:-5}
disk_mib=${DISK_MIB:-1024}
incs=${INCS:-1}
inc_mib=${INC_MIB:-64}
base=${BASE:+$(realpath "$BASE")}
bench_dir=$(realpath "${BENCH_DIR:-/var/tmp}")
size=$((disk_mib << 20))

BENCH_NAME=run-read-bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (FUSE mounts, sysfs readahead)"; exit 77; }
for c in ninja fio fusermount3 mountpoint qemu-img qemu-io qemu-storage-daemon lz4 /usr/bin/python3; do
  command -v "$c" >/dev/null || fail "$c not found (apt-get install fio lz4 qemu-utils ...)"
done
/usr/bin/python3 -c 'import lz4.frame' 2>/dev/null || fail "python3-lz4 missing (apt-get install python3-lz4)"
if [[ ${NO_BUILD:-0} != 1 ]]; then
  [[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja >&2
  ninja -C "$build" backupfs stream-tool passthrough_fuse >&2
  [[ -z $base ]] || ninja -C "$base" backupfs stream-tool >&2
fi
bfs=$build/tools/backupfs
pt=$build/bench/passthrough_fuse
rev() {
  local src
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt")
  git -C "$src" rev-parse --short HEAD 2>/dev/null || echo "$src (not a git checkout)"
}

work=$(mktemp -d "$bench_dir/bfs-read-bench.XXXXXX")
chmod 0755 "$work"
data=$work/disk
mnt=$work/mnt
qsd_img=$work/qsd.img
tsv=$work/figures.tsv
info=$work/info.tsv
mkdir -p "$mnt"

alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}
# The pid of the FUSE daemon serving MNT (its command line names it).
daemon_of() {
  local f a pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    while IFS= read -r -d '' a; do
      [[ $a == "$1" ]] && { echo "$pid"; return 0; }
    done 2>/dev/null <"$f" || true
  done
}
unmount_fuse() {
  local pid i
  pid=$(daemon_of "$1")
  for ((i = 0; i < 50; i++)); do
    fusermount3 -u "$1" 2>/dev/null && break
    sleep 0.1
  done
  ! mountpoint -q "$1" || fail "cannot unmount $1"
  for ((i = 0; i < 600 && ${#pid} > 0; i++)); do alive "$pid" || break; sleep 0.05; done
  if [[ -n $pid ]] && alive "$pid"; then
    daemon_report "$pid" >&2
    fail "FUSE daemon $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) did not exit"
  fi
}
# What a daemon that outlives its unmount is doing: each thread's state, wait channel and
# kernel stack (the failed run of round 2 left nothing to tell which reader hung, or where).
daemon_report() {
  local t
  for t in /proc/"$1"/task/*; do
    echo "thread ${t##*/}: $(cut -d' ' -f3 "$t/stat" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
    sed 's/^/    /' "$t/stack" 2>/dev/null | head -8
  done
  command -v gdb >/dev/null && timeout 20 gdb -p "$1" -batch -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^(Thread|#)'
}
qsd_start() {
  local -a args=(--daemonize --pidfile "$work/qsd.pid")
  local i node backing=""
  for ((i = 0; i <= incs; i++)); do
    node=$data/qcow2/ov$i.qcow2
    ((i > 0)) || node=$data/qcow2/base.qcow2
    args+=(--blockdev "driver=file,node-name=f$i,filename=$node,read-only=on")
    args+=(--blockdev "driver=qcow2,node-name=q$i,file=f$i,read-only=on$backing")
    backing=",backing=q$i"
  done
  : >"$qsd_img"
  args+=(--export "type=fuse,id=exp0,node-name=q$incs,mountpoint=$qsd_img,writable=off")
  qemu-storage-daemon "${args[@]}"
  mountpoint -q "$qsd_img" || fail "qemu-storage-daemon returned but $qsd_img is not mounted"
}
qsd_stop() {
  local pid i
  pid=$(cat "$work/qsd.pid")
  kill "$pid"
  for ((i = 0; i < 600; i++)); do alive "$pid" || break; sleep 0.05; done
  ! alive "$pid" || fail "qemu-storage-daemon $pid did not exit"
  rm -f "$work/qsd.pid"
}
cleanup() {
  local rc=$? m
  set +e
  trap - EXIT INT TERM
  [[ -f $work/qsd.pid ]] && kill "$(cat "$work/qsd.pid")" 2>/dev/null
  while read -r m; do
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
  done < <(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | tac)
  if [[ ${KEEP:-0} == 1 ]]; then log "KEEP=1: scratch kept in $work"; else rm -rf --one-file-system -- "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- test data ---------------------------------------------------------------------------------
t=$SECONDS
gen=(/usr/bin/python3 bench/make_bench_saveset.py --stream-tool "$build/tests/stream-tool" --out "$data")
"${gen[@]}" --size "$size" disk --incs "$incs" --inc-bytes $((inc_mib << 20)) --lz4 --compressible >&2
"${gen[@]}" vnb-lz4 >&2
if [[ -n $base ]]; then  # the landed writer's -z saveset (4 MiB blocks), same data
  /usr/bin/python3 bench/make_bench_saveset.py --stream-tool "$base/tests/stream-tool" \
    --out "$work/basedisk" --size "$size" disk --incs "$incs" --inc-bytes $((inc_mib << 20)) \
    --lz4 --compressible --no-qcow2 >&2
  cmp "$work/basedisk/ref.raw" "$data/ref.raw" || fail "the landed writer's data differs"
  rm -rf "$work/basedisk/plain" "$work/basedisk/ref.raw"
fi
log "test data generated in $((SECONDS - t)) s"
ref=$data/ref.raw

# --- figures -------------------------------------------------------------------------------------
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$tsv"; }  # FIGURE KIND VALUE

# fio_iops FILE QD : IOPS of random 4 KiB O_DIRECT reads over the whole file.
fio_iops() {
  local engine=psync
  (($2 == 1)) || engine=libaio
  fio --name=rr --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine="$engine" \
    --iodepth="$2" --runtime="$runtime" --time_based --norandommap --randrepeat=0 \
    --size="$size" --output-format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

# measure NAME FILE : both fio figures on FILE (then the caller unmounts).
measure_random() {
  local qd v
  for qd in 1 16; do
    v=$(fio_iops "$2" "$qd") || fail "fio on $1 failed"
    record "$1" "qd$qd" "$v"
  done
}

# bfs_point BIN SAVESET NAME : random figures on a fresh mount, then a sequential first read on
# another fresh mount (the FUSE page cache starts empty; the input files stay in page cache).
bfs_point() {
  local t0 t1
  "$1" "$2" "$mnt"
  ((r > 1)) || cmp "$ref" "$mnt/latest/vda.raw" || fail "$3: latest/vda.raw differs from the reference"
  unmount_fuse "$mnt"
  "$1" "$2" "$mnt"
  measure_random "$3" "$mnt/latest/vda.raw"
  unmount_fuse "$mnt"
  "$1" "$2" "$mnt"
  t0=${EPOCHREALTIME/./}
  cat "$mnt/latest/vda.raw" >/dev/null
  t1=${EPOCHREALTIME/./}
  record "$3" seq $((t1 - t0))
  unmount_fuse "$mnt"
}

warm() { find "$data" "$work/basedisk" -type f -exec cat {} + >/dev/null 2>&1 || true; sync; }

round() {
  local t0 t1
  warm
  "$pt" "$ref" "$mnt"
  measure_random "passthrough FUSE (raw file)" "$mnt/file"
  unmount_fuse "$mnt"
  "$pt" "$ref" "$mnt"
  stat "$mnt" >/dev/null
  echo 1024 >"/sys/class/bdi/$(awk -v p="$mnt" '$5 == p { d = $3 } END { print d }' /proc/self/mountinfo)/read_ahead_kb"
  t0=${EPOCHREALTIME/./}
  cat "$mnt/file" >/dev/null
  t1=${EPOCHREALTIME/./}
  record "passthrough FUSE (raw file)" seq $((t1 - t0))
  unmount_fuse "$mnt"

  bfs_point "$bfs" "$data/plain" "backupfs plain"
  bfs_point "$bfs" "$data/lz4" "backupfs ours -z"
  bfs_point "$bfs" "$data/vnb" "backupfs virtnbdbackup -z"
  if [[ -n $base ]]; then
    bfs_point "$base/tools/backupfs" "$data/plain" "landed backupfs plain"
    bfs_point "$base/tools/backupfs" "$work/basedisk/lz4" "landed backupfs ours -z (4 MiB blocks)"
    bfs_point "$base/tools/backupfs" "$data/vnb" "landed backupfs virtnbdbackup -z"
  fi

  qsd_start
  ((r > 1)) || cmp "$ref" "$qsd_img" || fail "qemu-storage-daemon export differs"
  measure_random "qemu-storage-daemon FUSE (qcow2 chain)" "$qsd_img"
  qsd_stop
}

note() { printf '%s\t%s\n' "$1" "$2" >>"$info"; }
note "source" "$(rev "$build")${base:+; landed: $(rev "$base")}"
note "load before" "$(uptime)"
# Machine limits: lz4's own decode speed of 64 KiB blocks (independent and linked) on this data.
head -c $((64 << 20)) "$ref" >"$work/sample"
note "lz4 -b1 -B4 -BI (64 KiB independent blocks)" "$(lz4 -b1 -B4 -BI "$work/sample" 2>&1 | tr '\r' '\n' | grep -E 'MB/s' | tail -1)"
note "lz4 -b1 -B4 -BD (64 KiB linked blocks)" "$(lz4 -b1 -B4 -BD "$work/sample" 2>&1 | tr '\r' '\n' | grep -E 'MB/s' | tail -1)"
rm -f "$work/sample"
for ((r = 1; r <= reps; r++)); do
  t=$SECONDS
  round
  log "round $r of $reps done in $((SECONDS - t)) s"
done
note "load after" "$(uptime)"
note "sizes" "$(du -sh "$data/plain" "$data/lz4" "$data/vnb" | awk '{ printf "%s %s; ", $2, $1 }')"

/usr/bin/python3 - "$tsv" "$info" "$disk_mib" "$incs" "$inc_mib" "$reps" "$runtime" <<'PY'
import statistics, sys
tsv, info, disk_mib, incs, inc_mib, reps, runtime = sys.argv[1:]
runs = {}
for line in open(tsv):
    name, kind, v = line.rstrip("\n").split("\t")
    runs.setdefault(name, {}).setdefault(kind, []).append(int(v))
med = {(n, k): statistics.median(v) for n, d in runs.items() for k, v in d.items()}
print(f"\n1 GiB point ({disk_mib} MiB disk, full + {incs} inc of {inc_mib} MiB), data lz4 halves; "
      f"medians of {reps} interleaved rounds; fio {runtime} s per figure; seq = cat on a fresh mount\n")
print(f"| {'reader':42} | {'QD1 IOPS':>9} | {'QD16 IOPS':>9} | {'seq first read s':>16} |")
print(f"|{'-' * 44}|{'-' * 11}|{'-' * 11}|{'-' * 18}|")
for n in runs:
    q1, q16 = med.get((n, "qd1")), med.get((n, "qd16"))
    seq = med.get((n, "seq"))
    f = lambda v: f"{v:9.0f}" if v is not None else f"{'':9}"
    print(f"| {n:42} | {f(q1)} | {f(q16)} | {seq / 1e6 if seq else 0:16.3f} |")
verdict = lambda ok: "PASS" if ok else "MISS"
rows = []
pt, plain, qsd = "passthrough FUSE (raw file)", "backupfs plain", "qemu-storage-daemon FUSE (qcow2 chain)"
for qd in ("qd1", "qd16"):
    v = med[(pt, qd)] / med[(plain, qd)]
    rows.append((f"{qd}: passthrough / plain (<= 1.5)", f"{v:.2f}", verdict(v <= 1.5)))
    for z in ("backupfs ours -z", "backupfs virtnbdbackup -z"):
        v = med[(plain, qd)] / med[(z, qd)]
        rows.append((f"{qd}: plain / {z[9:]} (<= 3)", f"{v:.2f}", verdict(v <= 3)))
    for z in (plain, "backupfs ours -z", "backupfs virtnbdbackup -z"):
        v = med[(z, qd)] / med[(qsd, qd)]
        rows.append((f"{qd}: {z[9:]} / qemu-storage-daemon (> 1)", f"{v:.2f}", verdict(v > 1)))
    for landed, now in (("landed backupfs ours -z (4 MiB blocks)", "backupfs ours -z"),
                        ("landed backupfs virtnbdbackup -z", "backupfs virtnbdbackup -z")):
        if (landed, qd) in med:
            rows.append((f"{qd}: {now[9:]} / landed", f"{med[(now, qd)] / med[(landed, qd)]:.1f}", ""))
for z in ("backupfs ours -z", "backupfs virtnbdbackup -z"):
    v = med[(plain, "seq")] / med[(z, "seq")]
    rows.append((f"seq first read speed: {z[9:]} / plain (>= 0.5)", f"{v:.2f}", verdict(v >= 0.5)))
print(f"\n| {'ratio':58} | {'value':>6} | target |\n|{'-' * 60}|{'-' * 8}|--------|")
for label, v, t in rows:
    print(f"| {label:58} | {v:>6} | {t:6} |")
print()
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    print(f"{k}: {v.strip()}")
PY
