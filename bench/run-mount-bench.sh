#!/usr/bin/env bash
# The mount issue's benchmark, in one run: reading the newest image of a saveset (a 1 GiB disk
# fully written in the full + 3 incrementals of 128 MiB of scattered writes) through backupfs,
# against a minimal passthrough FUSE file (the ceiling), qemu-storage-daemon's FUSE export of the
# equivalent qcow2 chain, and virtnbdrestore; plus the mount time and memory of a 100-link chain.
# Every input file is in page cache; every first read is on a fresh mount (remounting drops the
# FUSE mount's cache, never the global page cache). Reps are interleaved (one of each figure per
# round) so background load hits all figures alike. Prints medians and the ratios with targets.
#
# Usage (root): bench/run-mount-bench.sh [BUILD_DIR]          (BUILD_DIR defaults to build)
#   REPS=5        repetitions of every figure (median reported)
#   DISK_MIB=1024 INC_MIB=128 INCS=3   the disk and its incrementals ("make bigger ones too")
#   LINKS=100     the long chain for the mount time
#   LZ4=1         also an lz4 saveset (read figures only); 0 skips it (saves disk and cache)
#   RAS="128 1024 4096 16384"   readahead sweep (KiB) of the ceiling and of backupfs
#   BENCH_DIR=/var/tmp   scratch (needs ~5x DISK_MIB); KEEP=1 keeps it
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
reps=${REPS:-5}
disk_mib=${DISK_MIB:-1024}
inc_mib=${INC_MIB:-128}
incs=${INCS:-3}
links=${LINKS:-100}
lz4=${LZ4:-1}
read -ra ras <<<"${RAS:-128 1024 4096 16384}"
bench_dir=$(realpath "${BENCH_DIR:-/var/tmp}")
size=$((disk_mib << 20))

BENCH_NAME=run-mount-bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (FUSE mounts, sysfs readahead, virtnbdrestore)"; exit 77; }
for c in ninja python3 fusermount3 mountpoint qemu-img qemu-io qemu-storage-daemon virtnbdrestore \
  virsh libvirtd virtlogd; do
  command -v "$c" >/dev/null || fail "$c not found (scripts/install-deps.sh installs it)"
done
[[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja >&2
ninja -C "$build" backupfs stream-tool passthrough_fuse >&2
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
if rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
  rev+=" ($(git -C "$src" status --porcelain --untracked-files=no | wc -l) files modified)"
else
  rev="not a git checkout"
fi
bfs=$build/tools/backupfs
pt=$build/bench/passthrough_fuse
tool=$build/tests/stream-tool

work=$(mktemp -d "$bench_dir/bfs-mount-bench.XXXXXX")
chmod 0755 "$work"
data=$work/disk   # ref.raw, plain/, lz4/, qcow2/ (make_bench_saveset.py disk)
mnt=$work/mnt     # every FUSE mount, one at a time
qsd_img=$work/qsd.img
out=$work/out     # restore and convert targets
tsv=$work/times.tsv
info=$work/info.tsv
mkdir -p "$mnt" "$out"

# --- process and mount plumbing ---------------------------------------------------------------

# pids_with_arg ARG : processes with ARG as one of their arguments.
pids_with_arg() {
  local f a pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
    while IFS= read -r -d '' a; do
      [[ $a == "$1" ]] && { echo "$pid"; break; }
    done 2>/dev/null <"$f" || true
  done
}

# pids_under DIR : processes with DIR/ anywhere in their command line (cleanup only).
pids_under() {
  local f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
    cmd=$({ tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
    [[ $cmd == *"$1/"* ]] && echo "$pid"
  done
  return 0
}

# alive PID : running (a zombie has exited: a daemonized FUSE server is reaped by PID 1, late).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

wait_gone() {
  local p i
  for p in "$@"; do
    for ((i = 0; i < 600; i++)); do
      alive "$p" || break
      sleep 0.05
    done
    ! alive "$p" || fail "process $p did not exit within 30 s"
  done
  return 0
}

# devnum PATH : major:minor of the filesystem mounted at PATH (mountinfo; no stat of the mount).
devnum() { awk -v p="$1" '$5 == p { d = $3 } END { if (d == "") exit 1; print d }' /proc/self/mountinfo; }

# set_ra PATH KIB : the mount's readahead, once the kernel has processed INIT (stat waits for it).
set_ra() {
  stat "$1" >/dev/null
  echo "$2" >"/sys/class/bdi/$(devnum "$1")/read_ahead_kb"
}
get_ra() { cat "/sys/class/bdi/$(devnum "$1")/read_ahead_kb"; }

unmount_fuse() {
  local pids i
  pids=$(pids_with_arg "$1")
  for ((i = 0; i < 50; i++)); do
    fusermount3 -u "$1" 2>/dev/null && break
    sleep 0.1
  done
  ! mountpoint -q "$1" || fail "cannot unmount $1"
  # shellcheck disable=SC2086
  wait_gone $pids  # the daemon's exit (and its CPU) must not overlap the next figure
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
  : >"$qsd_img"  # a FUSE export's mount point is a regular file
  args+=(--export "type=fuse,id=exp0,node-name=q$incs,mountpoint=$qsd_img,writable=off")
  qemu-storage-daemon "${args[@]}"
  mountpoint -q "$qsd_img" || fail "qemu-storage-daemon returned but $qsd_img is not mounted"
}

qsd_stop() {
  local pid
  pid=$(cat "$work/qsd.pid")
  kill "$pid"
  wait_gone "$pid"
  ! mountpoint -q "$qsd_img" || fail "$qsd_img still mounted after qemu-storage-daemon exited"
  rm -f "$work/qsd.pid"
}

cleanup() {
  local rc=$? m p
  set +e
  trap - EXIT INT TERM
  [[ -f $work/qsd.pid ]] && kill "$(cat "$work/qsd.pid")" 2>/dev/null
  while read -r m; do
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
  done < <(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | tac)
  for p in $(pids_under "$work"); do
    log "cleanup: killing leftover pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    kill "$p" 2>/dev/null
  done
  if [[ ${KEEP:-0} == 1 ]]; then
    log "KEEP=1: scratch kept in $work"
  else
    rm -rf --one-file-system -- "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- recording ---------------------------------------------------------------------------------

# timed NAME BYTES CMD... : runs CMD and records its wall time in microseconds.
timed() {
  local name=$1 bytes=$2 t0 t1
  shift 2
  t0=${EPOCHREALTIME/./}
  "$@"
  t1=${EPOCHREALTIME/./}
  printf '%s\t%d\t%d\n' "$name" $((t1 - t0)) "$bytes" >>"$tsv"
}
# --- test data --------------------------------------------------------------------------------

start_libvirtd
t=$SECONDS
log "generating a ${disk_mib} MiB disk + $incs incs of ${inc_mib} MiB, and a $links-link chain"
gen=(python3 bench/make_bench_saveset.py --stream-tool "$tool")
lz4_opt=()
((lz4 == 0)) || lz4_opt=(--lz4)
"${gen[@]}" --out "$data" --size "$size" disk --incs "$incs" --inc-bytes $((inc_mib << 20)) \
  "${lz4_opt[@]}" >&2
"${gen[@]}" --out "$work/long" --size $((1024 << 20)) chain --links "$links" >&2
"${gen[@]}" --out "$work/tiny" --size $((64 << 20)) chain --links 1 --full-writes 1 >&2
rm -f "$work/long/ref.raw" "$work/tiny/ref.raw"  # only the savesets are read from now on
ref=$data/ref.raw
plain=$data/plain
log "test data generated in $((SECONDS - t)) s"

# Input files into page cache (and keep them there: re-read before every round). sync flushes
# dirty pages only (nothing is dropped), so that writeback of earlier writes does not throttle
# the writers timed in the round (qemu-img convert, virtnbdrestore).
warm() {
  find "$data" "$work/long" "$work/tiny" -type f -exec cat {} + >/dev/null
  sync
}

# --- one round of every figure -----------------------------------------------------------------

# read_twice PREFIX FILE : first read (fresh mount) and second read (the mount's page cache).
read_twice() {
  timed "$1 first read" "$size" cat "$2" >/dev/null
  timed "$1 second read" "$size" cat "$2" >/dev/null
}

round() {
  local r=$1 mode ra img i bfs_ra
  warm
  timed "cat ref.raw (page cache)" "$size" cat "$ref" >/dev/null

  for mode in splice pread; do
    for ra in "${ras[@]}"; do
      "$pt" -o "$mode" "$ref" "$mnt"
      set_ra "$mnt" "$ra"
      read_twice "passthrough $mode ra=$ra" "$mnt/file"
      unmount_fuse "$mnt"
    done
  done

  timed "backupfs mount ($((incs + 1)) links)" 0 "$bfs" "$plain" "$mnt"
  stat "$mnt" >/dev/null
  bfs_ra=$(get_ra "$mnt")
  note "backupfs default readahead_kb" "$bfs_ra"
  read_twice "backupfs ra=default" "$mnt/latest/vda.raw"
  ((r > 1)) || cmp "$ref" "$mnt/latest/vda.raw" || fail "backupfs latest/vda.raw differs from the reference"
  unmount_fuse "$mnt"

  # The same mount with each other readahead of the sweep (128 KiB: -o readahead_kb=0 keeps it).
  for ra in "${ras[@]}"; do
    ((ra != bfs_ra)) || continue
    "$bfs" -o "readahead_kb=$((ra == 128 ? 0 : ra))" "$plain" "$mnt"
    stat "$mnt" >/dev/null
    [[ $(get_ra "$mnt") == "$ra" ]] || fail "backupfs -o readahead_kb: readahead is $(get_ra "$mnt"), not $ra"
    timed "backupfs ra=$ra first read" "$size" cat "$mnt/latest/vda.raw" >/dev/null
    unmount_fuse "$mnt"
  done

  # Not targets: what the checksums cost (a verified read reads and hashes whole 1 MiB chunks).
  for ra in "$bfs_ra" 128; do
    "$bfs" -o "verify=off,readahead_kb=$((ra == 128 ? 0 : ra))" "$plain" "$mnt"
    timed "backupfs verify=off ra=$ra first read" "$size" cat "$mnt/latest/vda.raw" >/dev/null
    unmount_fuse "$mnt"
  done

  if ((lz4)); then
    "$bfs" "$data/lz4" "$mnt"
    read_twice "backupfs lz4 ra=default" "$mnt/latest/vda.raw"
    ((r > 1)) || cmp "$ref" "$mnt/latest/vda.raw" || fail "backupfs lz4 latest/vda.raw differs"
    unmount_fuse "$mnt"
  fi

  for ra in 128 16384; do
    qsd_start
    set_ra "$qsd_img" "$ra"
    timed "qemu-storage-daemon fuse ra=$ra first read" "$size" cat "$qsd_img" >/dev/null
    ((r > 1 || ra > 128)) || cmp "$ref" "$qsd_img" || fail "qemu-storage-daemon export differs"
    qsd_stop
  done

  sync
  "$bfs" "$plain" "$mnt"
  timed "qemu-img convert -O qcow2 from backupfs" "$size" \
    qemu-img convert -f raw -O qcow2 "$mnt/latest/vda.raw" "$out/convert.qcow2"
  unmount_fuse "$mnt"
  ((r > 1)) || qemu-img compare -q -f qcow2 -F raw "$out/convert.qcow2" "$ref" ||
    fail "qemu-img convert from backupfs differs from the reference"
  rm -f "$out/convert.qcow2"
  sync

  timed "virtnbdrestore -a restore" "$size" virtnbdrestore -a restore -i "$plain" -o "$out/vr" -n \
    -L "$out/vr.log" -f "$out/vr.sock" >"$out/vr.stdout" 2>"$out/vr.stderr" ||
    fail "virtnbdrestore failed: $(tail -n 5 "$out/vr.stderr")"
  ! grep -E ' (ERROR|CRITICAL) |Traceback' "$out/vr.log" >&2 || fail "virtnbdrestore logged errors"
  img=$out/vr/bfsbench.vda.qcow2
  for ((i = 0; i < 100; i++)); do qemu-img info "$img" >/dev/null 2>&1 && break; sleep 0.1; done
  ((r > 1)) || qemu-img compare -q -f qcow2 -F raw "$img" "$ref" ||
    fail "virtnbdrestore's image differs from the reference"
  rm -rf "$out/vr" "$out/vr".*

  # Mount ready = backupfs returned. A point's extent map may be built on its first read: time
  # that too (one 4 KiB block of the newest image).
  timed "backupfs mount ($links links)" 0 "$bfs" "$work/long/saveset" "$mnt"
  timed "backupfs $links links: first 4 KiB of latest" 0 \
    dd if="$mnt/latest/vda.raw" of=/dev/null bs=4096 count=1 status=none
  unmount_fuse "$mnt"
}

# rss_probe NAME SAVESET : VmRSS (KiB) of backupfs mounted as users run it, after one read of
# the newest image; then with -f -d, which prints the extent count (building every point's map).
rss_probe() {
  local err=$work/$1.stderr pid i line
  "$bfs" "$2" "$mnt"
  dd if="$mnt/latest/vda.raw" of=/dev/null bs=4096 count=1 status=none
  pid=$(pids_with_arg "$mnt")
  note "$1 VmRSS KiB, one point read" "$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")"
  unmount_fuse "$mnt"
  "$bfs" -f -d "$2" "$mnt" 2>"$err" &
  pid=$!
  for ((i = 0; i < 600; i++)); do mountpoint -q "$mnt" && break; sleep 0.05; done
  stat "$mnt" >/dev/null
  note "$1 VmRSS KiB, all maps" "$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")"
  line=$(grep -m1 -E '^backupfs: [0-9]+ restore points' "$err") || fail "no extent count from backupfs -d"
  note "$1 backupfs -d" "${line#backupfs: }"
  unmount_fuse "$mnt"
  wait "$pid" || fail "backupfs -f -d $2 exited $?"
}

note "source" "$src at $rev"
note "load before (uptime)" "$(uptime)"
for ((r = 1; r <= reps; r++)); do
  t=$SECONDS
  round "$r"
  log "round $r of $reps done in $((SECONDS - t)) s"
done
rss_probe tiny "$work/tiny/saveset"
rss_probe long "$work/long/saveset"
note "load after (uptime)" "$(uptime)"

python3 - "$tsv" "$info" "$disk_mib" "$inc_mib" "$incs" "$links" "$reps" "${ras[@]}" <<'PY'
import re, statistics, sys
tsv, info, disk_mib, inc_mib, incs, links, reps, *ras = sys.argv[1:]
ras = [int(r) for r in ras]
runs, size = {}, {}
for line in open(tsv):
    name, usec, nbytes = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append(int(usec) / 1e6)
    size[name] = int(nbytes)
notes = {}
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    notes.setdefault(k, []).append(v)
med = {k: statistics.median(v) for k, v in runs.items()}
mib = lambda name: size[name] / 2**20 / med[name]
verdict = lambda ok: "PASS" if ok else "MISS"

print(f"\nsaveset: {disk_mib} MiB disk, full + {incs} incs of {inc_mib} MiB; medians of {reps} "
      "interleaved runs, each first read on a fresh mount\n")
print(f"| {'figure':52} | {'median s':>8} | {'MiB/s':>7} | {'min..max s':>14} |")
print(f"|{'-' * 54}|{'-' * 10}|{'-' * 9}|{'-' * 16}|")
for name, v in runs.items():
    rate = f"{mib(name):7.0f}" if size[name] else f"{'':7}"
    spread = f"{min(v):.3f}..{max(v):.3f}"
    print(f"| {name:52} | {med[name]:8.3f} | {rate} | {spread:>14} |")

ra_set = sorted(set(notes["backupfs default readahead_kb"]))
if len(ra_set) != 1:
    sys.exit(f"backupfs set different readaheads in different rounds: {ra_set}")
bfs_ra = int(ra_set[0])
def bfs(ra):
    return "backupfs ra=default first read" if ra == bfs_ra else f"backupfs ra={ra} first read"
def ceiling(ra):
    return min((f"passthrough {m} ra={ra} first read" for m in ("splice", "pread")), key=med.get)

print("\nreadahead sweep, first reads (ceiling: the faster of splice and pread at that readahead):\n")
print("| readahead KiB          | ceiling s | ceiling MiB/s | backupfs s | backupfs MiB/s | backupfs/ceiling | target       |")
print("|------------------------|-----------|---------------|------------|----------------|------------------|--------------|")
for ra in ras:
    c, b = ceiling(ra), bfs(ra)
    value = med[c] / med[b]
    target = f">= 0.80 {verdict(value >= 0.8)}" if ra in (bfs_ra, 128) else ""
    label = f"{ra} (backupfs's own)" if ra == bfs_ra else str(ra)
    print(f"| {label:22} | {med[c]:9.3f} | {mib(c):13.0f} | {med[b]:10.3f} | {mib(b):14.0f} "
          f"| {value:16.2f} | {target:12} |")

rows = []
def ratio(label, num, den, target=None):
    """Throughput of num over den (den's time / num's time), with its target if any."""
    value = med[den] / med[num]
    rows.append((label, f"{value:.2f}", f">= {target:.2f} {verdict(value >= target)}" if target else ""))

best_ceiling = min((ceiling(ra) for ra in ras), key=med.get)
best_bfs = min((bfs(ra) for ra in ras), key=med.get)
best_bfs_ra = bfs_ra if best_bfs == bfs(bfs_ra) else int(best_bfs.split()[1][3:])
ceil_2nd = min((n for n in med if n.startswith("passthrough") and n.endswith("second read")), key=med.get)
own = "backupfs ra=default first read"
ratio(f"backupfs at its own readahead ({bfs_ra} KiB) / ceiling at the same", own, ceiling(bfs_ra), 0.8)
ratio("backupfs at 128 KiB / ceiling at 128 KiB", bfs(128), ceiling(128), 0.8)
ratio(f"backupfs at its own readahead / backupfs at its best ({best_bfs_ra} KiB)", own, best_bfs, 0.9)
ratio(f"backupfs at its own readahead / best ceiling ({' '.join(best_ceiling.split()[1:3])})",
      own, best_ceiling)
ratio("backupfs / qemu-storage-daemon fuse at 128 KiB (as it comes)", own,
      "qemu-storage-daemon fuse ra=128 first read", 1.5)
ratio("backupfs / qemu-storage-daemon fuse at 16384 KiB", own,
      "qemu-storage-daemon fuse ra=16384 first read", 1.5)
ratio(f"backupfs second read / ceiling second read ({' '.join(ceil_2nd.split()[1:3])})",
      "backupfs ra=default second read", ceil_2nd, 0.8)
ratio("qemu-img convert -O qcow2 from backupfs / virtnbdrestore",
      "qemu-img convert -O qcow2 from backupfs", "virtnbdrestore -a restore", 3.0)
ratio(f"backupfs verify=off / verify=on at {bfs_ra} KiB", f"backupfs verify=off ra={bfs_ra} first read", own)
ratio("backupfs verify=off / verify=on at 128 KiB", "backupfs verify=off ra=128 first read", bfs(128))
ratio("backupfs verify=off at 128 KiB / ceiling at 128 KiB", "backupfs verify=off ra=128 first read",
      ceiling(128))
if "backupfs lz4 ra=default first read" in med:
    ratio(f"backupfs lz4 / ceiling at {bfs_ra} KiB", "backupfs lz4 ra=default first read", ceiling(bfs_ra))
    ratio("backupfs lz4 second read / ceiling second read", "backupfs lz4 ra=default second read", ceil_2nd)
mount = med[f"backupfs mount ({links} links)"]
rows.append((f"backupfs mount time, {links}-link chain (s)", f"{mount:.3f}", f"< 0.50 {verdict(mount < 0.5)}"))
first = med[f"backupfs {links} links: first 4 KiB of latest"]
rows.append(("  then its first 4 KiB read of latest (s)", f"{first:.3f}", ""))

def probe(name):
    m = re.match(r"(\d+) restore points, (\d+) extents \((\d+) bytes each\)", notes[f"{name} backupfs -d"][0])
    return (int(notes[f"{name} VmRSS KiB, one point read"][0]), int(notes[f"{name} VmRSS KiB, all maps"][0]),
            *map(int, m.groups()))
one_t, all_t, pts_t, ext_t, each = probe("tiny")
one_l, all_l, pts_l, ext_l, _ = probe("long")
per = (all_l - all_t) * 1024 / max(1, ext_l - ext_t)
rows.append((f"VmRSS KiB, {links}-link mount, latest read once / 1-link", f"{one_l} / {one_t}", ""))
rows.append((f"VmRSS KiB, {links}-link mount, every map built (-d) / 1-link", f"{all_l} / {all_t}", ""))
rows.append((f"extents in every map, {links}-link / 1-link ({each} B each)", f"{ext_l} / {ext_t}", ""))
rows.append(("memory per extent: RSS delta / extent delta (B, incl. indexes)", f"{per:.0f}", ""))

print(f"\n| {'ratio (throughput, higher is better) or figure':66} | {'value':>13} | {'target':>12} |")
print(f"|{'-' * 68}|{'-' * 15}|{'-' * 14}|")
for label, value, v in rows:
    print(f"| {label:66} | {value:>13} | {v:>12} |")
print()
for k in ("source", "load before (uptime)", "load after (uptime)"):
    print(f"{k}: {notes[k][0].strip()}")
PY
