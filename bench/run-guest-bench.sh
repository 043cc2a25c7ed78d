#!/usr/bin/env bash
# Issue 13's benchmark: the guest files of a restore point (MNT/<point>/vda.files/1, our
# in-process ext4 reader) against the limit, the kernel's ext4 mounted read-only on a loop device
# over our own partition file (MNT/<point>/vda.parts/1: the kernel's ext4 over our image reader),
# and against guestmount (libguestfs) over MNT/<point>/vda.raw where it runs. For reference also
# the kernel's ext4 over the reference image on the host's filesystem (no backupfs at all).
# The disk (bench/make_guest_saveset.py): GPT, one 1.5 GiB ext4 of 20,000 files / 1 GiB, two
# restore points (the second changes /etc and other files).
#
# Figures, one of each per round, interleaved, medians of REPS rounds:
#   find | wc -l           cold (fresh mounts, caches dropped just before) and warm (again, at once)
#   tar cf - . | wc -c     cold
#   first ls               from the mount command to `ls` of the partition's root finishing,
#                          caches dropped before (ours is the target; the kernel's for reference)
#   diff -r etc            between the two points, cold (ours and the kernel's)
# Cold: `sync; echo 3 >/proc/sys/vm/drop_caches` drops the saveset's pages too, so a cold figure
# reads the saveset from the host's disk. guestmount's figures include no launch (timed apart);
# its appliance starts with an empty cache anyway.
#
# Usage (root): bench/run-guest-bench.sh [BUILD_DIR]          (BUILD_DIR defaults to build)
#   REPS=5           rounds
#   GUESTFS=auto     guestmount figures if guestmount is installed (1: required, 0: skipped);
#                    scripts/install-deps.sh --bench-guestfs installs it
#   GUESTFS_SETTINGS LIBGUESTFS_BACKEND_SETTINGS (default force_tcg when the CPU shows no
#                    vmx/svm: qemu's KVM then aborts at launch)
#   GUESTFS_REPS=$REPS  rounds that include guestmount (TCG makes it slow)
#   REF=1            the kernel's ext4 over the reference image too (0 skips it)
#   DATA=DIR         reuse test data made earlier (make_guest_saveset.py --out DIR; kept)
#   BENCH_DIR=/var/tmp   scratch (needs ~5 GiB); KEEP=1 keeps it
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
reps=${REPS:-5}
guestfs=${GUESTFS:-auto}
guestfs_reps=${GUESTFS_REPS:-$reps}
ref_limit=${REF:-1}
bench_dir=$(realpath "${BENCH_DIR:-/var/tmp}")

BENCH_NAME=run-guest-bench
export BENCH_NAME  # read by lib.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (loop mounts, drop_caches)"; exit 77; }
for c in ninja python3 fusermount3 mountpoint sfdisk mkfs.ext4 losetup find tar diff; do
  command -v "$c" >/dev/null || fail "$c not found (scripts/install-deps.sh installs it)"
done
if [[ $guestfs == auto ]]; then
  guestfs=0
  command -v guestmount >/dev/null && guestfs=1
elif [[ $guestfs == 1 ]]; then
  command -v guestmount >/dev/null || fail "guestmount not found (scripts/install-deps.sh --bench-guestfs)"
fi
gfs_settings=${GUESTFS_SETTINGS-}
[[ -n ${GUESTFS_SETTINGS+x} ]] || grep -qwE 'vmx|svm' /proc/cpuinfo || gfs_settings=force_tcg

[[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja >&2
ninja -C "$build" backupfs stream-tool >&2
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
if rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
  rev+=" ($(git -C "$src" status --porcelain --untracked-files=no | wc -l) files modified)"
else
  rev="not a git checkout"
fi
bfs=$build/tools/backupfs
tool=$build/tests/stream-tool

work=$(mktemp -d "$bench_dir/bfs-guest-bench.XXXXXX")
chmod 0755 "$work"
data=${DATA:-$work/data}  # ref0.raw ref1.raw saveset/ tree.json
mnt=$work/mnt             # backupfs
lim=$work/lim             # kernel ext4 (loop), point 1; lim0: point 0 (diff)
gfs=$work/gfs             # guestmount
tsv=$work/times.tsv
info=$work/info.tsv
out=$work/out
mkdir -p "$mnt" "$lim" "$work/lim0" "$gfs" "$out"

# --- process and mount plumbing (as run-mount-bench.sh) ---------------------------------------

alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

wait_gone() {
  local p i
  for p in "$@"; do
    for ((i = 0; i < 1200; i++)); do
      alive "$p" || break
      sleep 0.05
    done
    ! alive "$p" || fail "process $p did not exit within 60 s"
  done
  return 0
}

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

bfs_mount() { "$bfs" "$data/saveset" "$mnt"; }
bfs_unmount() {
  local pids i
  pids=$(pids_with_arg "$mnt")
  for ((i = 0; i < 50; i++)); do
    fusermount3 -u "$mnt" 2>/dev/null && break
    sleep 0.1
  done
  ! mountpoint -q "$mnt" || fail "cannot unmount $mnt"
  # shellcheck disable=SC2086
  wait_gone $pids
}

part_start=$((1 << 20))  # make_guest_saveset.py's partition offset
# loop_mount SOURCE DIR : the kernel's ext4, read-only, on a loop device over SOURCE: `ours:P`
# is point P's partition file in our mount, `ref:P` the reference disk image of point P.
loop_mount() {
  local how=${1%%:*} p=${1#*:}
  case $how in
    ours) mount -t ext4 -o ro,loop "$mnt/${points[p]}/vda.parts/1" "$2" ;;
    ref) mount -t ext4 -o "ro,loop,offset=$part_start,sizelimit=$part_size" "$data/ref$p.raw" "$2" ;;
    *) fail "loop_mount: no source '$1'" ;;
  esac
}
loop_unmount() { umount "$1"; }  # the loop device is detached with it (autoclear)

gfs_mount() {
  LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=$gfs_settings \
    guestmount --format=raw -a "$1" -m /dev/sda1 --ro --pid-file "$work/gfs.pid" "$gfs" \
    2>"$work/gfs.stderr" || fail "guestmount failed: $(tail -n 5 "$work/gfs.stderr")"
}
gfs_unmount() {
  local pid
  pid=$(cat "$work/gfs.pid")
  guestunmount "$gfs" >/dev/null
  wait_gone "$pid"  # qemu and guestmount gone before the next figure
  rm -f "$work/gfs.pid"
}

cleanup() {
  local rc=$? m
  set +e
  trap - EXIT INT TERM
  while read -r m; do
    umount "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"
  done < <(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | tac)
  [[ -f $work/gfs.pid ]] && kill "$(cat "$work/gfs.pid")" 2>/dev/null
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

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# timed NAME CMD... : runs CMD and records its wall time in microseconds.
timed() {
  local name=$1 t0 t1
  shift
  t0=${EPOCHREALTIME/./}
  "$@"
  t1=${EPOCHREALTIME/./}
  printf '%s\t%d\n' "$name" $((t1 - t0)) >>"$tsv"
}

# The measured commands; each records what it counted, once per system and round.
count_files() { find . | wc -l >"$out/find.$1"; }
tar_bytes() { tar cf - . | wc -c >"$out/tar.$1"; }
list_root() { ls "$1" >"$out/ls.$2"; }
# mount_and_list "MOUNT ARGS" ROOT WHO : the mount (a function and words without blanks), then ls.
mount_and_list() {
  local -a m
  read -ra m <<<"$1"
  "${m[@]}"
  list_root "$2" "$3"
}
diff_etc() {
  local rc=0
  diff -r --no-dereference "$1/etc" "$2/etc" >"$out/diff.$3" || rc=$?
  ((rc <= 1)) || fail "diff -r --no-dereference $1/etc $2/etc exited $rc"
}
# normalise_diff WHO A B : WHO's diff output with its two roots named A and B (comparable).
normalise_diff() { sed -i "s|$2/etc|A|g; s|$3/etc|B|g" "$out/diff.$1"; }
# in_dir DIR CMD... : CMD run in DIR (find and tar see the same relative names on every system).
in_dir() (cd "$1" && shift && "$@")

# check WHAT WHO : WHO's result of WHAT (find, tar, ls, diff) equals the kernel's over our image
# (or over the reference image when there is no guest layout): noted, never fatal, so that a
# mismatch shows in the results next to the figures.
check() {
  local base=lim
  [[ -f $out/$1.lim ]] || base=ref
  [[ $2 != "$base" ]] || return 0
  if cmp -s "$out/$1.$base" "$out/$1.$2"; then
    note "check $1 $2" "same as $base"
  else
    note "check $1 $2" "DIFFERS from $base: $(head -c 200 "$out/$1.$2" | tr '\n' ' ')"
  fi
}

# --- test data --------------------------------------------------------------------------------

if [[ -z ${DATA-} ]]; then
  t=$SECONDS
  log "generating the disk (20,000 files / 1 GiB in a 1.5 GiB ext4) and its two restore points"
  python3 bench/make_guest_saveset.py --stream-tool "$tool" --out "$data" >&2
  log "test data generated in $((SECONDS - t)) s"
fi
part_size=$(($(stat -c %s "$data/ref0.raw") - part_start - (1 << 20)))
bfs_mount
mapfile -t points < <(find "$mnt" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V)
((${#points[@]} == 2)) || fail "expected 2 restore points in the mount, found: ${points[*]}"
ours=1
[[ -d $mnt/${points[1]}/vda.files ]] || ours=0
cmp "$mnt/${points[1]}/vda.raw" "$data/ref1.raw" || fail "backupfs's newest vda.raw differs from ref1.raw"
bfs_unmount
note "tree" "$(cat "$data/tree.json")"
((ours)) || { note "no guest layout" "the mount has no vda.files: only the kernel's and guestmount's figures"; log "no guest layout in this build: measuring the kernel and guestmount only"; }
((guestfs)) && note "guestmount settings" "LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=$gfs_settings"

# --- one round of every figure -----------------------------------------------------------------

# One system's figures. WHO: ours, lim (kernel over our image), ref (kernel over the reference
# image). Each cold figure on fresh mounts with caches dropped.
round_kernel_or_ours() {
  local who=$1 r=$2 root image=ours
  [[ $who != ref ]] || image=ref  # loop_mount's source: our partition file or the reference
  case $who in
    ours) root=$mnt/${points[1]}/vda.files/1 ;;
    *) root=$lim ;;
  esac
  # first ls: from the mount command (ours: backupfs's; kernel: the loop mount's, backupfs
  # already mounted) to ls of the partition's root finishing.
  drop_caches
  case $who in
    ours) timed "$who first ls" mount_and_list bfs_mount "$root" "$who" ;;
    lim) bfs_mount; timed "$who first ls" mount_and_list "loop_mount ours:1 $lim" "$root" "$who" ;;
    ref) timed "$who first ls" mount_and_list "loop_mount ref:1 $lim" "$root" "$who" ;;
  esac
  [[ $who == ours ]] || loop_unmount "$lim"
  [[ $who == ref ]] || bfs_unmount

  [[ $who == ref ]] || bfs_mount
  [[ $who == ours ]] || loop_mount "$image:1" "$lim"
  drop_caches
  timed "$who find cold" in_dir "$root" count_files "$who"
  timed "$who find warm" in_dir "$root" count_files "$who"
  [[ $who == ours ]] || loop_unmount "$lim"
  [[ $who == ref ]] || bfs_unmount

  [[ $who == ref ]] || bfs_mount
  [[ $who == ours ]] || loop_mount "$image:1" "$lim"
  drop_caches
  timed "$who tar cold" in_dir "$root" tar_bytes "$who"
  [[ $who == ours ]] || loop_unmount "$lim"
  [[ $who == ref ]] || bfs_unmount

  [[ $who == ref ]] || bfs_mount
  if [[ $who == ours ]]; then
    drop_caches
    timed "$who diff -r etc cold" diff_etc "$mnt/${points[0]}/vda.files/1" "$root" "$who"
    normalise_diff "$who" "$mnt/${points[0]}/vda.files/1" "$root"
  else
    loop_mount "$image:0" "$work/lim0"
    loop_mount "$image:1" "$lim"
    drop_caches
    timed "$who diff -r etc cold" diff_etc "$work/lim0" "$lim" "$who"
    normalise_diff "$who" "$work/lim0" "$lim"
    loop_unmount "$work/lim0"
    loop_unmount "$lim"
  fi
  [[ $who == ref ]] || bfs_unmount
}

round_guestfs() {
  local r=$1 img
  bfs_mount
  img=$mnt/${points[1]}/vda.raw
  drop_caches
  timed "guestmount launch" gfs_mount "$img"
  timed "guestmount find cold" in_dir "$gfs" count_files gfs
  timed "guestmount find warm" in_dir "$gfs" count_files gfs
  gfs_unmount
  drop_caches
  gfs_mount "$img"
  timed "guestmount tar cold" in_dir "$gfs" tar_bytes gfs
  gfs_unmount
  bfs_unmount
  if ((r == 1)); then
    check find gfs
    check tar gfs
  fi
}

round() {
  local r=$1
  ((ours)) && round_kernel_or_ours ours "$r"
  ((ours)) && round_kernel_or_ours lim "$r"
  ((ref_limit || !ours)) && round_kernel_or_ours ref "$r"
  if ((r == 1)); then  # every system's results against the limit's, once all have run
    local what who
    for who in ours ref; do
      for what in find tar ls diff; do [[ ! -f $out/$what.$who ]] || check "$what" "$who"; done
    done
  fi
  ((guestfs && r <= guestfs_reps)) && round_guestfs "$r"
  return 0
}

note "source" "$src at $rev"
note "load before (uptime)" "$(uptime)"
for ((r = 1; r <= reps; r++)); do
  t=$SECONDS
  round "$r"
  log "round $r of $reps done in $((SECONDS - t)) s (load $(cut -d' ' -f1-3 /proc/loadavg))"
  note "load after round $r" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
note "load after (uptime)" "$(uptime)"

python3 - "$tsv" "$info" "$reps" "$guestfs_reps" <<'PY'
import json, statistics, sys
tsv, info, reps, gfs_reps = sys.argv[1:]
runs = {}
for line in open(tsv):
    name, usec = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append(int(usec) / 1e6)
notes = {}
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    notes.setdefault(k, []).append(v)
med = {k: statistics.median(v) for k, v in runs.items()}
verdict = lambda ok: "PASS" if ok else "MISS"
short = {"ours": "ours", "lim": "limit", "ref": "ref", "guestmount": "guestmount"}
tree = json.loads(notes["tree"][0])

print(f"\nguest files: GPT disk, ext4 with {tree['files']} files ({tree['bytes'] >> 20} MiB; "
      f"/etc {tree['etc_files']}) and {tree['symlinks']} symlinks; the second point changes "
      f"{tree['inc_bytes'] >> 20} MiB; medians of {reps} interleaved rounds "
      + (f"(guestmount: {min(int(reps), int(gfs_reps))})" if "guestmount launch" in runs else "")
      + "; cold = fresh mounts, caches dropped\n")
print(f"| {'figure':44} | {'median s':>8} | {'min..max s':>15} |")
print(f"|{'-' * 46}|{'-' * 10}|{'-' * 17}|")
for name, v in runs.items():
    w, fig = name.split(" ", 1)
    label = f"{short.get(w, w)}: {fig}"
    print(f"| {label:44} | {med[name]:8.3f} | {min(v):7.3f}..{max(v):<7.3f}|")
print("\nours = backupfs vda.files/1; limit = kernel ext4 on a loop device over our vda.parts/1;"
      "\nref = kernel ext4 on a loop device over the reference image (no backupfs)\n")

rows = []
def ratio(label, num, den, target=None):
    if num not in med or den not in med:
        return
    value = med[num] / med[den]
    rows.append((label, f"{value:.2f}", f"<= {target:.1f} {verdict(value <= target)}" if target else ""))
ratio("find | wc -l cold: ours / limit", "ours find cold", "lim find cold", 2.0)
ratio("find | wc -l warm: ours / limit", "ours find warm", "lim find warm")
ratio("tar cf - . | wc -c cold: ours / limit", "ours tar cold", "lim tar cold", 1.5)
ratio("diff -r etc cold: ours / limit", "ours diff -r etc cold", "lim diff -r etc cold")
ratio("first ls: ours / kernel over our image", "ours first ls", "lim first ls")
for fig in ("find cold", "find warm", "tar cold", "diff -r etc cold", "first ls"):
    ratio(f"{fig}: limit / ref (our image reader under the kernel)", f"lim {fig}", f"ref {fig}")
for fig in ("find cold", "find warm", "tar cold"):
    ratio(f"{fig}: guestmount / ours", f"guestmount {fig}", f"ours {fig}")
    if "ours find cold" not in med:
        ratio(f"{fig}: guestmount / ref", f"guestmount {fig}", f"ref {fig}")
if "ours first ls" in med:
    v = med["ours first ls"]
    rows.append(("first ls of the partition root, fresh mount: ours (s)", f"{v:.3f}",
                 f"< 0.1 {verdict(v < 0.1)}"))
print(f"| {'ratio of times (lower is better for ours) or figure':62} | {'value':>7} | {'target':>11} |")
print(f"|{'-' * 64}|{'-' * 9}|{'-' * 13}|")
for label, value, v in rows:
    print(f"| {label:62} | {value:>7} | {v:>11} |")
print()
for k, v in notes.items():
    if k == "tree":
        continue
    print(f"{k}: {v[0].strip()}")
PY
