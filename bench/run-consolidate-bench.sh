#!/usr/bin/env bash
# The consolidation benchmark: `backupfs-restore -a consolidate` folding a full backup and its
# incrementals into one new full, against the limit, copying a file of the new full's data size
# durably (`cp --sparse=always` of a raw file of random data, then `sync FILE`, an fsync of it;
# ours fsyncs everything it writes).
#   ours      a 1 GiB disk: a full of SIZE_MIB random data + INCS incs of INC_MIB random data
#             each (disjoint, inside the full's data), consolidated at the last inc: the new
#             full holds SIZE_MIB of data;
#   ours-big  the same data (byte for byte: the same full extent, the same incs at the same
#             offsets) on a BIG_GIB virtual disk, the rest a hole: the work must follow the
#             data, not the virtual size;
#   limit     cp --sparse=always of a SIZE_MIB random-data file + sync FILE.
# The savesets are generated once (stream-tool, plain), each consolidation's result checked once
# against its reference (stream-tool apply + cmp). Each round runs one of each (interleaved,
# the order rotating), on a hard-linked copy of the saveset (a consolidation writes new files
# and renames and unlinks, never writes into an existing one, so the original stays intact).
# Page cache, the same for all three: CACHE=drop (default) syncs and drops it (`echo 3 >
# /proc/sys/vm/drop_caches`) before every timed command, so the inputs come from the disk;
# CACHE=warm reads the inputs into it instead (cat > /dev/null).
# Prints each round, the medians, ours/limit (target <= 1.5) and ours-big/ours (target ~1).
#
# Usage (root; exit 77 otherwise): bench/run-consolidate-bench.sh BUILD_DIR
#   REPS=5  SIZE_MIB=1024  INC_MIB=128  INCS=3  BIG_GIB=16  CACHE=drop|warm
#   WORK=/var/tmp/bfs-consolidate-bench  (a run directory in it, removed at the end; KEEP=1
#   keeps it); needs about 6 x SIZE_MIB MiB of free space
#   PERF=1: also records one consolidation with `perf record -g` and prints the top symbols
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
size_mib=${SIZE_MIB:-1024}
inc_mib=${INC_MIB:-128}
incs=${INCS:-3}
big_gib=${BIG_GIB:-16}
cache=${CACHE:-drop}
work=${WORK:-/var/tmp/bfs-consolidate-bench}
BENCH_NAME="run-consolidate-bench"
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $(id -u) == 0 ]] || {
  echo "$BENCH_NAME: needs root (drop_caches)" >&2
  exit 77
}
[[ $cache == drop || $cache == warm ]] || fail "CACHE=$cache: drop or warm"
restore=$build/tools/backupfs-restore
tool=$build/tests/stream-tool
[[ -x $restore && -x $tool ]] || fail "$restore or $tool not built"
((incs * inc_mib <= size_mib / 2)) || fail "INCS x INC_MIB must fit in half of SIZE_MIB"
# The folded checkpoints stay pending: no libvirt is asked.
no_libvirt='qemu+unix:///system?socket=/nonexistent/libvirt-sock'

mkdir -p "$work"
run=$(mktemp -d "$work/run.XXXXXX")
cleanup() { [[ ${KEEP:-0} == 1 ]] || rm -rf "$run"; }
trap cleanup EXIT
M=$((1024 * 1024))
size=$((size_mib * M))

# --- the savesets (once) ---------------------------------------------------------------------
log "generating $size_mib MiB of random data and $incs incs of $inc_mib MiB"
head -c "$size" /dev/urandom >"$run/limit.src"
head -c "$size" /dev/urandom >"$run/full.bin"
for ((i = 1; i <= incs; i++)); do head -c $((inc_mib * M)) /dev/urandom >"$run/inc$i.bin"; done
inc_offset() { echo $((($1 * 2 - 1) * size / (2 * incs) - inc_mib * M / 2)); } # spread out

# make_saveset NAME VIRTUAL_BYTES: the full (one data extent of size bytes at 0, then a hole) and
# the incs, into $run/NAME; the reference image of the newest point is $run/NAME.ref.
make_saveset() {
  local virt=$2 dir=$run/$1 img=$run/$1.ref i off cpts base
  mkdir "$dir"
  cp "$run/full.bin" "$img"
  truncate -s "$virt" "$img"
  "$tool" write --image "$img" --output "$dir/vda.full.data" --disk vda \
    --checkpoint virtnbdbackup.0 --level full --extents "data:0:$size" \
    --date 2023-11-14T22:14:20.000000 >/dev/null
  cpts='"virtnbdbackup.0"'
  for ((i = 1; i <= incs; i++)); do
    off=$(inc_offset "$i")
    dd if="$run/inc$i.bin" of="$img" bs=1M oflag=seek_bytes seek="$off" conv=notrunc status=none
    "$tool" write --image "$img" --output "$dir/vda.inc.virtnbdbackup.$i.data" --disk vda \
      --checkpoint "virtnbdbackup.$i" --parent "virtnbdbackup.$((i - 1))" --level inc \
      --extents "data:$off:$((inc_mib * M))" --date "2023-11-14T22:1$((4 + i)):20.000000" >/dev/null
    cpts+=",\"virtnbdbackup.$i\""
  done
  echo "[$cpts]" >"$dir/demo.cpt"
  base=$(($(date +%s) - 3600)) # the chain's order in mtimes, as virtnbdbackup leaves it
  touch -d "@$base" "$dir/vda.full.data"
  for ((i = 1; i <= incs; i++)); do touch -d "@$((base + i))" "$dir/vda.inc.virtnbdbackup.$i.data"; done
}
make_saveset dense "$size"
make_saveset big $((big_gib * 1024 * M))
point=virtnbdbackup.$incs

# --- one timed command -------------------------------------------------------------------------
# prepare FIGURE: a fresh copy of the input and output place, untimed; the page cache set.
prepare() {
  rm -rf "$run/out"
  case $1 in
  limit) inputs=("$run/limit.src") ;;
  ours | ours-big)
    local src=$run/dense
    [[ $1 == ours ]] || src=$run/big
    cp -al "$src" "$run/out"
    inputs=("$run/out"/*.data)
    ;;
  esac
  sync
  if [[ $cache == drop ]]; then
    echo 3 >/proc/sys/vm/drop_caches
  else
    cat "${inputs[@]}" >/dev/null
  fi
}

# timed FIGURE: runs it; prints "real user sys" seconds.
timed() {
  local TIMEFORMAT='%R %U %S' t
  case $1 in
  limit) t=$({ time { cp --sparse=always "$run/limit.src" "$run/out" && sync "$run/out"; }; } 2>&1) ;;
  ours | ours-big)
    t=$({ time "$restore" -a consolidate -i "$run/out" -u "$point" -U "$no_libvirt" \
      >"$run/ours.log" 2>&1; } 2>&1) || fail "consolidation failed: $(cat "$run/ours.log")"
    grep -q "folded $incs restore point" "$run/ours.log" || fail "unexpected: $(cat "$run/ours.log")"
    ;;
  esac
  echo "$t"
}

# check FIGURE: the result of the last run equals the reference (once per figure): mounted with
# backupfs, its data range compared (the rest of the big disk is a hole in both: dataSize says
# the new full holds no more data than that).
check() {
  local ref=$run/dense.ref mnt=$run/mnt data_size
  [[ $1 == ours ]] || ref=$run/big.ref
  [[ $(ls "$run/out"/*.data) == "$run/out/vda.full.data" ]] || fail "$1: data files left: $(ls "$run/out")"
  [[ $(stat -c %Y "$run/out/vda.full.data") == $(stat -c %Y "${ref%.ref}/vda.full.data") ]] ||
    fail "$1: the new full does not keep the old full's mtime"
  data_size=$("$restore" -a dump -i "$run/out" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["dataSize"])')
  [[ $data_size == "$size" ]] || fail "$1: the new full holds $data_size bytes of data, want $size"
  mkdir -p "$mnt"
  "$build/tools/backupfs" "$run/out" "$mnt" || fail "$1: cannot mount the result"
  local same=0
  [[ $(stat -c %s "$mnt/$point/vda.raw") == $(stat -c %s "$ref") ]] &&
    cmp -n "$size" "$mnt/$point/vda.raw" "$ref" && same=1
  fusermount3 -u "$mnt"
  ((same)) || fail "$1: the new full differs from the reference"
  log "$1: the new full equals the reference ($data_size bytes of data)"
}

figures=(limit ours ours-big)
declare -A times
log "warm-up (untimed; checks each result)"
for f in ours ours-big; do
  prepare "$f"
  timed "$f" >/dev/null
  check "$f"
done
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%-6s %-9s %8s %8s %8s\n' round figure real_s user_s sys_s
for ((r = 1; r <= reps; r++)); do
  for ((k = 0; k < ${#figures[@]}; k++)); do
    f=${figures[$(((k + r) % ${#figures[@]}))]}
    prepare "$f"
    read -r real user sys <<<"$(timed "$f")"
    times[$f]+="$real "
    printf '%-6s %-9s %8s %8s %8s\n' "$r" "$f" "$real" "$user" "$sys"
  done
done
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
m_limit=$(median "${times[limit]}")
m_ours=$(median "${times[ours]}")
m_big=$(median "${times[ours-big]}")
echo
echo "medians over $reps rounds (CACHE=$cache; load $loadavg_start -> $loadavg_end):"
printf '  %-52s %7.3f s\n' "limit: cp --sparse=always + fsync, $size_mib MiB" "$m_limit" \
  "ours: $size_mib MiB full + $incs x $inc_mib MiB incs, $size_mib MiB disk" "$m_ours" \
  "ours-big: the same data, $big_gib GiB virtual disk" "$m_big"
awk -v o="$m_ours" -v l="$m_limit" -v b="$m_big" 'BEGIN {
  printf "  ours/limit    %.2f  (target <= 1.5)\n", o / l
  printf "  ours-big/ours %.2f  (target ~1: the work follows the data)\n", b / o }'

if [[ ${PERF:-0} == 1 ]]; then
  prepare ours
  perf record -q -g -o "$run/perf.data" -- "$restore" -a consolidate -i "$run/out" -u "$point" \
    -U "$no_libvirt" >/dev/null 2>&1
  perf report -q -i "$run/perf.data" --no-children --percent-limit 2 --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -20
fi
