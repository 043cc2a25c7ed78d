#!/usr/bin/env bash
# The restore issue's benchmark, in one run: `backupfs-restore -a restore` (ours) against
# virtnbdrestore 1.9.15 on the same saveset, and against the limit, `qemu-img convert -O qcow2`
# of a local raw file with the same content (the newest point's raw reference). Savesets (made
# by bench/make_bench_saveset.py with backupfs's stream-tool, each checked once):
#   a  a 1 GiB disk fully written + INCS incrementals of INC_MIB scattered writes; plain, lz4.
#      Also ours restoring the full alone (-u virtnbdbackup.0): 1 GiB of data on a 1 GiB disk.
#   b  a 4 GiB disk fully written (B_INCS incrementals, default none); plain, lz4 (REPS_4G rounds).
#   c  a 64 GiB sparse disk holding C_DATA_MIB (default: a's size) of data, C_LAYOUT scattered
#      (writes of 64 KiB..4 MiB) or region (one run in the middle); plain. Ours here against ours
#      on a's full alone (the same amount of data on a dense disk): the cost must follow the data.
# Also per disk, the floor: dd of the same number of bytes from the page cache into a file with
# conv=fdatasync, what this disk takes to make the bytes durable (ours fsyncs its images).
#
# Every round runs one of each figure (interleaved: background load hits all of them alike; the
# order inside a disk's group rotates each round); prints medians, the ratios with their targets,
# ours' peak RSS, the raw per-round times and the load average.
#   vr/ours (speedup) >= 5;  ours/limit <= 1.25;  ours' peak RSS < 256 MiB;  c/a-full <= 2.
#
# Page cache, the same state for all three before every timed command (after a sync: no dirty
# pages of an earlier command; and a fresh output directory):
#   CACHE=cold (default): the command's input files (the saveset, or the raw reference) are
#     evicted from the page cache (posix_fadvise DONTNEED; the residue is checked with mincore
#     and reported), so every tool reads its input from the disk, as a restore of a backup
#     nobody has just read does; the programs themselves stay cached (all three were run once,
#     untimed, before round 1), so virtnbdrestore is not charged for loading Python from disk,
#     and the other users of this shared machine keep their caches.
#   CACHE=drop: `echo 3 > /proc/sys/vm/drop_caches` instead: everything cold, programs too.
#   CACHE=warm: the input files are read into the page cache instead: CPU and writes only.
# Timing: CLOCK_MONOTONIC around fork..exit (a small Python runner, started before the clock).
# Memory: peak RSS from wait4()'s rusage (what GNU time's %M reports: the largest of the process
# and the descendants it reaped, e.g. its qemu-nbd); also the process's own VmHWM, polled every
# 10 ms from /proc/PID/status (no dependency on /usr/bin/time). "durable" adds, after the exit,
# the wait until no process holds the image open (virtnbdrestore's qemu-nbd may still be closing
# it) and an fsync of it: a tool that does not fsync is charged for it there.
#
# Usage (root; exit 77 otherwise): bench/run-restore-bench.sh BUILD_DIR
#   builds BUILD_DIR's backupfs-restore and stream-tool first (ninja; NO_BUILD=1 skips that)
#   REPS=5          rounds (median reported);  REPS_4G=3  rounds that include set b
#   SIZES="1024 4096 65536"   disk sizes (MiB) of a, b and c
#   INC_MIB=128 INCS=3        a's incrementals;  B_INCS=0  b's incrementals (of INC_MIB)
#   C_DATA_MIB=<a's size>  C_LAYOUT=scattered|region   c's data
#   CACHE=cold|drop|warm  (see above)
#   WORK=/var/tmp/bfs-restore-bench   scratch parent (a run dir inside, removed at the end;
#                   KEEP=1 keeps it); needs about 4a + 3b + 2*C_DATA_MIB + b (outputs) MiB
# A 16x smaller smoke run: SIZES="64 256 4096" INC_MIB=8 REPS=1 REPS_4G=1 bench/run-restore-bench.sh B
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}
(($# == 1)) || usage
[[ $1 != -h && $1 != --help ]] || usage
build=$(realpath -m "$1")
reps=${REPS:-5}
reps_4g=${REPS_4G:-3}
read -r a_mib b_mib c_mib extra <<<"${SIZES:-1024 4096 65536}" || true
inc_mib=${INC_MIB:-128}
incs=${INCS:-3}
b_incs=${B_INCS:-0}
c_data_mib=${C_DATA_MIB:-$a_mib}
c_layout=${C_LAYOUT:-scattered}
cache=${CACHE:-cold}
work_root=${WORK:-/var/tmp/bfs-restore-bench}
export HOME=${HOME:-/root} # virtnbdrestore's argparse reads $HOME

BENCH_NAME=run-restore-bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (drop_caches, qemu-nbd, virtnbdrestore)"; exit 77; }
int() { [[ $2 =~ ^[0-9]+$ ]] || fail "$1 must be a non-negative integer, not '$2'"; }
[[ -n ${c_mib:-} && -z ${extra:-} ]] || fail "SIZES must hold three sizes in MiB (a b c), not '${SIZES:-}'"
for v in reps reps_4g a_mib b_mib c_mib inc_mib incs b_incs c_data_mib; do int "$v" "${!v}"; done
((reps >= 1 && a_mib >= 4 && b_mib >= 4 && c_data_mib >= 1)) || fail "REPS >= 1, sizes >= 4 MiB"
((reps_4g <= reps)) || reps_4g=$reps
((incs == 0 && b_incs == 0 || inc_mib >= 1)) || fail "INC_MIB must be >= 1"
((inc_mib <= a_mib / 2)) || fail "INC_MIB must be <= a's size / 2"
[[ $c_layout == scattered || $c_layout == region ]] || fail "C_LAYOUT must be scattered or region"
c_max=$((c_mib / 2)) # scattered: random placement needs room
[[ $c_layout == scattered ]] || c_max=$c_mib
((c_data_mib <= c_max)) || fail "C_DATA_MIB must be <= $c_max for a ${c_mib} MiB disk ($c_layout)"
[[ $cache == cold || $cache == drop || $cache == warm ]] || fail "CACHE must be cold, drop or warm"
[[ $cache != drop || -w /proc/sys/vm/drop_caches ]] || fail "CACHE=drop needs a writable /proc/sys/vm/drop_caches"
for c in python3 qemu-img qemu-nbd virtnbdrestore virsh libvirtd virtlogd dd sync df; do
  command -v "$c" >/dev/null || fail "$c not found (scripts/install-deps.sh installs it)"
done

if [[ ${NO_BUILD:-0} != 1 ]]; then
  [[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja >&2
  ninja -C "$build" backupfs-restore stream-tool >&2
fi
restore=$build/tools/backupfs-restore
tool=$build/tests/stream-tool
for b in "$restore" "$tool"; do
  [[ -x $b ]] || fail "$b not built (ninja -C $build backupfs-restore stream-tool)"
done
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
if [[ -n $src ]] && rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
  rev+=" ($(git -C "$src" status --porcelain --untracked-files=no | wc -l) tracked files modified)"
else
  rev="unknown (not a git checkout)"
fi
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null || true)

mkdir -p "$work_root"
# Scratch: a ≈ ref + full ref + 2 savesets, b ≈ ref + 2 savesets, c ≈ ref + saveset; plus the
# largest output (b) and a 10% margin.
need=$(((4 * a_mib + 4 * incs * inc_mib + 3 * b_mib + 2 * b_incs * inc_mib + 2 * c_data_mib + b_mib) * 11 / 10))
avail=$(($(df -k --output=avail "$work_root" | tail -n 1) / 1024))
((avail >= need)) || fail "$work_root has $avail MiB free, the run needs about $need MiB"
work=$(mktemp -d "$work_root/run.XXXXXX")
chmod 0755 "$work"
out=$work/out # every command's output, one at a time
tsv=$work/times.tsv
info=$work/info.tsv
runner=$work/runner.py

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

cleanup() {
  local rc=$? p
  set +e
  trap - EXIT INT TERM
  for p in $(pids_under "$work"); do
    log "cleanup: killing leftover pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
    kill "$p" 2>/dev/null
  done
  if [[ ${KEEP:-0} == 1 ]]; then
    log "KEEP=1: scratch kept in $work"
  else
    rm -rf --one-file-system -- "$work"
    rmdir "$work_root" 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$runner" <<'PY'
"""run: times one command (CLOCK_MONOTONIC), its peak RSS (wait4) and own VmHWM (polled), then
how long until its image is closed by every process and fsynced; appends one line to the TSV.
warm: reads files' data regions (SEEK_DATA/SEEK_HOLE: a sparse file's holes are not read).
evict: drops files' clean pages from the page cache; prints the bytes still resident (mincore)."""
import ctypes, mmap, os, subprocess, sys, threading, time

def files_of(paths):
    for top in paths:
        if os.path.isfile(top):
            yield top
        else:
            yield from (os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs)

def evict(paths):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    page, resident = os.sysconf("SC_PAGE_SIZE"), 0
    for path in files_of(paths):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            size = os.fstat(fd).st_size
            if size == 0:
                continue
            # A read-only shared mapping, never touched: mincore says which pages are cached.
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), f"mmap {path}")
            try:
                vec = ctypes.create_string_buffer((size + page - 1) // page)
                if libc.mincore(addr, size, vec) != 0:
                    raise OSError(ctypes.get_errno(), f"mincore {path}")
                raw = vec.raw[:(size + page - 1) // page]
                resident += page * (len(raw) - raw.count(0))
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    print(resident)

def warm(paths):
    buf = bytearray(8 << 20)
    for path in files_of(paths):
        fd = os.open(path, os.O_RDONLY)
        try:
            end, pos = os.fstat(fd).st_size, 0
            while pos < end:
                try:
                    pos = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError:
                    break
                hole = os.lseek(fd, pos, os.SEEK_HOLE)
                while pos < hole:
                    n = os.preadv(fd, [memoryview(buf)[:min(len(buf), hole - pos)]], pos)
                    if n <= 0:
                        break
                    pos += n
                pos = hole
        finally:
            os.close(fd)

def holders(path):
    """PIDs with `path` open (any descriptor)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    found.append(pid)
                    break
        except OSError:
            pass
    return found

def run(tsv, key, rnd, logfile, image, argv):
    hwm = [0]
    done = threading.Event()
    with open(logfile, "wb") as logf:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        def poll():
            while not done.is_set():
                try:
                    with open(f"/proc/{p.pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                hwm[0] = max(hwm[0], int(line.split()[1]))
                except (OSError, ValueError):
                    pass
                done.wait(0.01)
        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, ru = os.wait4(p.pid, 0)
        t1 = time.monotonic()
        done.set()
        p.returncode = os.waitstatus_to_exitcode(status)
    th.join()
    synced = t1
    if p.returncode == 0 and image:
        path = os.path.realpath(image)
        deadline = time.monotonic() + 60
        while holders(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        if os.path.exists(path):
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        synced = time.monotonic()
    cpu = ru.ru_utime + ru.ru_stime
    with open(tsv, "a") as f:
        f.write(f"{key}\t{rnd}\t{t1 - t0:.6f}\t{synced - t0:.6f}\t{cpu:.3f}\t{ru.ru_maxrss}\t"
                f"{hwm[0]}\t{p.returncode}\n")
    return p.returncode

if sys.argv[1] == "warm":
    warm(sys.argv[2:])
elif sys.argv[1] == "evict":
    evict(sys.argv[2:])
else:
    _, tsv, key, rnd, logfile, image, *argv = sys.argv[1:]
    assert argv[0] == "--"
    sys.exit(run(tsv, key, rnd, logfile, image, argv[1:]))
PY

# --- test data --------------------------------------------------------------------------------

start_libvirtd
gen=(python3 bench/make_bench_saveset.py --stream-tool "$tool")
t=$SECONDS
log "a: ${a_mib} MiB disk + $incs incs of ${inc_mib} MiB, plain and lz4"
"${gen[@]}" --out "$work/a" --size $((a_mib << 20)) disk --incs "$incs" \
  --inc-bytes $((inc_mib << 20)) --lz4 --no-qcow2 --full-ref >&2
log "b: ${b_mib} MiB disk + $b_incs incs of ${inc_mib} MiB, plain and lz4"
"${gen[@]}" --out "$work/b" --size $((b_mib << 20)) disk --incs "$b_incs" \
  --inc-bytes $((inc_mib << 20)) --lz4 --no-qcow2 >&2
log "c: ${c_mib} MiB sparse disk with ${c_data_mib} MiB of data ($c_layout), plain"
"${gen[@]}" --out "$work/c" --size $((c_mib << 20)) sparse --data-bytes $((c_data_mib << 20)) \
  --layout "$c_layout" >&2
log "test data generated in $((SECONDS - t)) s"
sync

# --- one figure ---------------------------------------------------------------------------------

# prepare INPUT... : untimed, before every timed command: a fresh output directory, no dirty
# pages, and the page cache in the chosen state for the command's inputs.
prepare() {
  local left
  rm -rf "$out"
  mkdir -p "$out"
  sync
  case $cache in
    cold)
      left=$(python3 "$runner" evict "$@")
      ((left < 1 << 20)) || note "evict residue $*" "$left bytes still in the page cache"
      ;;
    drop) echo 3 >/proc/sys/vm/drop_caches ;;
    warm) python3 "$runner" warm "$@" ;;
  esac
}

# timed KEY ROUND LOG IMAGE CMD... : runs CMD, records its time, peak RSS and durable time.
timed() { python3 "$runner" run "$tsv" "$1" "$2" "$3" "$4" -- "${@:5}"; }

# same_as IMAGE REF : qemu-img compare of a qcow2 image with a raw reference.
same_as() { qemu-img compare -q -f qcow2 -F raw "$1" "$2" >"$out/compare.log" 2>&1; }

ours() { # ours SET ROUND [-u virtnbdbackup.0 | --qemu-writer]
  local set=$1 r=$2 key="$1 ours" img=$out/ours/bfsbench.vda.qcow2 ref=$work/${1%/*}/ref.raw
  shift 2
  if [[ ${1:-} == --qemu-writer ]]; then
    key="$set ours --qemu-writer" # the same restore through qemu-nbd: what the direct writer saves
  elif (($# > 0)); then
    key="$set ours -u full"
    ref=$work/${set%/*}/ref.full.raw
  fi
  prepare "$work/$set"
  timed "$key" "$r" "$out/ours.log" "$img" "$restore" -i "$work/$set" -o "$out/ours" -n "$@" ||
    fail "$key failed (round $r): $(tail -n 20 "$out/ours.log")"
  [[ -f $img ]] || fail "$key: no $img: $(tail -n 20 "$out/ours.log")"
  if [[ -z ${checked[$key]:-} ]]; then # once per figure
    same_as "$img" "$ref" || fail "$key: the restored image differs from $ref: $(cat "$out/compare.log")"
    [[ -s $out/ours/vmconfig.xml ]] || fail "$key: no vmconfig.xml"
    checked[$key]=1
    note "check $key" "identical to ${ref#"$work"/}"
  fi
}

vr() { # vr SET ROUND
  local key="$1 virtnbdrestore" img=$out/vr/bfsbench.vda.qcow2 rc=0
  prepare "$work/$1"
  timed "$key" "$2" "$out/vr.stderr" "$img" virtnbdrestore -i "$work/$1" -o "$out/vr" -n \
    -L "$out/vr.log" -f "$out/vr.sock" || rc=$?
  if ((rc != 0)) || grep -sqE ' (ERROR|CRITICAL) |Traceback' "$out/vr.log" "$out/vr.stderr"; then
    note "failure $key round $2" "exit $rc: $(grep -shE 'ERROR|CRITICAL|Error' "$out/vr.log" "$out/vr.stderr" | tail -n 3 | tr '\n' ' ')"
    log "$key round $2 failed (exit $rc), see the report"
  fi
  if [[ -z ${checked[$key]:-} ]]; then
    local verdict="identical to ${1%/*}/ref.raw"
    if [[ ! -f $img ]]; then
      verdict="NO IMAGE written"
    elif ! same_as "$img" "$work/${1%/*}/ref.raw"; then
      verdict="DIFFERS from ${1%/*}/ref.raw: $(head -c 200 "$out/compare.log")"
    fi
    note "check $key" "$verdict"
    checked[$key]=1
  fi
}

limit() { # limit DISK ROUND
  prepare "$work/$1/ref.raw"
  timed "$1 limit" "$2" "$out/limit.log" "$out/limit.qcow2" \
    qemu-img convert -f raw -O qcow2 "$work/$1/ref.raw" "$out/limit.qcow2" ||
    fail "qemu-img convert failed: $(tail -n 5 "$out/limit.log")"
}

floor() { # floor DISK ROUND MIB : dd of MIB from ref.raw (in page cache) into a file, fdatasync
  prepare "$work/$1/ref.raw"
  [[ $cache == warm ]] || python3 "$runner" warm "$work/$1/ref.raw" # read from the page cache
  timed "$1 floor" "$2" "$out/dd.log" "" \
    dd if="$work/$1/ref.raw" of="$out/floor.raw" bs=1M count="$3" conv=fdatasync status=none ||
    fail "dd failed: $(cat "$out/dd.log")"
}

readall() { # readall SET ROUND : the saveset's data files read cold (cat): the reads a restore needs at most
  prepare "$work/$1"
  timed "$1 read" "$2" "$out/read.log" "" bash -c 'cat "$@" >/dev/null' _ "$work/$1"/*.data ||
    fail "reading $1 failed: $(cat "$out/read.log")"
}

declare -A checked=()
note "source" "${src:-?} at $rev; build type ${btype:-unset (the project default, RelWithDebInfo)}; binary built $(date -u -r "$restore" '+%F %T UTC')"
note "machine" "$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 " GiB RAM" }'), kernel $(uname -r)"
note "versions" "$(qemu-img --version | head -n 1); virtnbdrestore $(virtnbdrestore -V 2>&1 | tail -n 1)"
note "load before" "$(uptime)"

# Untimed: every program once, so that round 1 finds them in the page cache like later rounds.
"$restore" --help >/dev/null
virtnbdrestore --help >/dev/null
qemu-nbd --version >/dev/null
qemu-img --version >/dev/null
log "page cache before every timed command: $cache"

# --- rounds -----------------------------------------------------------------------------------

# run_group ROUND FIGURE... : the figures (each "function args") in an order rotated by ROUND.
run_group() {
  local r=$1 n i
  shift
  n=$#
  local -a figs=("$@")
  for ((i = 0; i < n; i++)); do
    # shellcheck disable=SC2086 # a figure is a function and its words
    ${figs[(i + r - 1) % n]}
  done
}

for ((r = 1; r <= reps; r++)); do
  t=$SECONDS
  note "load round $r" "$(cut -d ' ' -f 1-3 /proc/loadavg)"
  run_group "$r" "floor a $r $a_mib" "limit a $r" "ours a/plain $r" "vr a/plain $r" \
    "readall a/plain $r" "readall a/lz4 $r" \
    "ours a/lz4 $r" "vr a/lz4 $r" "ours a/plain $r -u virtnbdbackup.0" \
    "ours a/plain $r --qemu-writer"
  if ((r <= reps_4g)); then
    run_group "$r" "floor b $r $b_mib" "limit b $r" "ours b/plain $r" "vr b/plain $r" \
      "readall b/plain $r" "readall b/lz4 $r" \
      "ours b/lz4 $r" "vr b/lz4 $r"
  fi
  run_group "$r" "floor c $r $c_data_mib" "limit c $r" "ours c/plain $r" "vr c/plain $r" \
    "readall c/plain $r"
  rm -rf "$out"
  log "round $r of $reps done in $((SECONDS - t)) s"
done
note "load after" "$(uptime)"

# --- report -----------------------------------------------------------------------------------

python3 - "$tsv" "$info" "$cache" "$reps" "$reps_4g" "$a_mib" "$b_mib" "$c_mib" "$inc_mib" "$incs" \
  "$b_incs" "$c_data_mib" "$c_layout" <<'PY'
import statistics, sys
tsv, info, cache, reps, reps_4g, a_mib, b_mib, c_mib, inc_mib, incs, b_incs, c_data, layout = sys.argv[1:]
reps = int(reps)
rows = {}  # key -> {round: (secs, durable, cpu, maxrss, hwm, rc)}
for line in open(tsv):
    key, rnd, secs, durable, cpu, maxrss, hwm, rc = line.rstrip("\n").split("\t")
    rows.setdefault(key, {})[int(rnd)] = (float(secs), float(durable), float(cpu), int(maxrss),
                                          int(hwm), int(rc))
notes = {}
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    notes[k] = v
med = lambda key, i=0: statistics.median(v[i] for v in rows[key].values())
verdict = lambda ok: "PASS" if ok else "MISS"
mib = lambda kib: kib / 1024

state = {"cold": "COLD inputs (before every timed command: sync, then the command's input files "
                 "evicted from the page cache: every tool reads its input from disk; programs cached)",
         "drop": "DROPPED (sync; echo 3 > drop_caches before every timed command: all cold, programs too)",
         "warm": "WARM (each command's input read into the page cache first, then sync)"}[cache]
print(f"\nrestore benchmark: medians of {reps} interleaved rounds ({reps_4g} for b); page cache: {state}")
print(f"  a: {a_mib} MiB disk fully written + {incs} incs of {inc_mib} MiB (newest point restored; "
      f"'-u full': the full alone)")
print(f"  b: {b_mib} MiB disk fully written + {b_incs} incs of {inc_mib} MiB")
print(f"  c: {c_mib} MiB sparse disk, {c_data} MiB of data ({layout}), one full")
print("  limit: qemu-img convert -O qcow2 of the newest point's raw reference (c's sparse);"
      " floor: dd of the bytes (a, b: the disk; c: its data) from page cache, conv=fdatasync;"
      " read: cat of the saveset's data files, cold (io floor = read + floor: a restore reads"
      " the chain and writes the image durably)")
print("  durable: + wait until the image is closed by every process + fsync of it (ours/limit"
      " durable: the ratio of those)")
print("  peak RSS: wait4's maxrss (the largest of the process and the children it reaped; at least"
      " the ~14 MiB of the Python runner that forked it); own HWM: the process's VmHWM, polled\n")

print(f"| {'figure':34} | {'median s':>8} | {'durable s':>9} | {'CPU s':>6} | {'min..max s':>15} "
      f"| {'peak RSS MiB':>12} | {'own HWM MiB':>11} |")
print(f"|{'-' * 36}|{'-' * 10}|{'-' * 11}|{'-' * 8}|{'-' * 17}|{'-' * 14}|{'-' * 13}|")
for key, runs in rows.items():
    secs = [v[0] for v in runs.values()]
    print(f"| {key:34} | {med(key):8.3f} | {med(key, 1):9.3f} | {med(key, 2):6.2f} "
          f"| {f'{min(secs):.3f}..{max(secs):.3f}':>15} | {mib(max(v[3] for v in runs.values())):12.1f} "
          f"| {mib(max(v[4] for v in runs.values())):11.1f} |")

print(f"\n| {'saveset':8} | {'ours s':>7} | {'vr s':>7} | {'limit s':>7} | {'vr/ours':>14} "
      f"| {'ours/limit':>17} | {'durable':>7} | {'ours/floor':>10} | {'ours/io floor':>13} "
      f"| {'ours peak RSS MiB':>18} | virtnbdrestore's image |")
print(f"|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 16}|{'-' * 19}|{'-' * 9}|{'-' * 12}|{'-' * 15}"
      f"|{'-' * 20}|{'-' * 24}|")
misses = []
for s in ("a/plain", "a/lz4", "b/plain", "b/lz4", "c/plain"):
    d = s.split("/")[0]
    o, v, l, f = f"{s} ours", f"{s} virtnbdrestore", f"{d} limit", f"{d} floor"
    if o not in rows:
        continue
    speed = med(v) / med(o)
    over = med(o) / med(l)
    peak = mib(max(max(x[3], x[4]) for x in rows[o].values()))
    check = notes.get(f"check {v}", "?")
    check = "identical" if check.startswith("identical") else check
    fails = [k for k in notes if k.startswith(f"failure {v} ")]
    if fails:
        check += f"; FAILED in {len(fails)} round(s): {notes[fails[0]][:80]}"
    print(f"| {s:8} | {med(o):7.3f} | {med(v):7.3f} | {med(l):7.3f} "
          f"| {speed:5.2f} >= 5 {verdict(speed >= 5)} | {over:5.2f} <= 1.25 {verdict(over <= 1.25)} "
          f"| {med(o, 1) / med(l, 1):7.2f} | {med(o) / med(f):10.2f} "
          f"| {med(o) / (med(f) + med(f'{s} read')):13.2f} "
          f"| {peak:6.1f} < 256 {verdict(peak < 256)} | {check} |")
    misses += [f"{s} vr/ours"] * (speed < 5) + [f"{s} ours/limit"] * (over > 1.25) + [f"{s} RSS"] * (peak >= 256)

full, big = "a/plain ours -u full", "c/plain ours"
ratio = med(big) / med(full)
print(f"\nc vs a's full alone ({c_mib} MiB disk with {c_data} MiB of data vs {a_mib} MiB disk with "
      f"{a_mib} MiB): ours {med(big):.3f} s / {med(full):.3f} s = {ratio:.2f}  (target <= 2: "
      f"{verdict(ratio <= 2)}); durable {med(big, 1) / med(full, 1):.2f}; "
      f"the limit's c / a: {med('c limit') / med('a limit'):.2f}")
misses += ["c/a-full"] * (ratio > 2)
checks = [f"  {k[6:]}: {v}" for k, v in notes.items() if k.startswith("check ")]
print("\ncorrectness (qemu-img compare, once per figure):\n" + "\n".join(checks))
trouble = [f"  {k}: {v}" for k, v in notes.items() if k.startswith(("failure ", "evict residue "))]
if trouble:
    print("\nvirtnbdrestore failures / input pages left in the page cache after eviction:\n"
          + "\n".join(trouble))

print("\nraw times per round, s (load average at the round's start below)")
print(f"| {'figure':34} | " + " | ".join(f"{'r' + str(r):>7}" for r in range(1, reps + 1)) + " |")
print(f"|{'-' * 36}|" + "|".join("-" * 9 for _ in range(reps)) + "|")
for key, runs in rows.items():
    print(f"| {key:34} | " + " | ".join(f"{runs[r][0]:7.3f}" if r in runs else f"{'':7}"
                                        for r in range(1, reps + 1)) + " |")
print()
for r in range(1, reps + 1):
    print(f"load round {r}: {notes[f'load round {r}']}")
for k in ("source", "machine", "versions", "load before", "load after"):
    print(f"{k}: {notes[k].strip()}")
print(f"\ntargets missed: {', '.join(misses) if misses else 'none'}")
PY
