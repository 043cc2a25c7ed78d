#!/usr/bin/env bash
# The S3 issue's benchmark (issue 14, "Performance"), in one run, against a one-node Ceph RADOS
# Gateway on 127.0.0.1 (tests/integration/lib/rgw.sh; memstore OSD, so the store is RAM):
#   mount    the first read (dd bs=1M) of the newest image of the 1 GiB + 3 x 128 MiB saveset
#            (bench/make_bench_saveset.py, uploaded once with `aws s3 sync`), each on a fresh
#            mount, so nothing is cached:
#              ours    backupfs s3://bench/saveset MNT (no s3_cache_dir: memory only); also with
#                      an emptied s3_cache_dir on local disk (informational)
#              anchor  s3fs-fuse (Debian's) mounting the bucket read-only, backupfs on its
#                      saveset directory; each of S3FS_VARIANTS is a figure, the fastest is the
#                      anchor. Target: ours >= 2x faster.
#              limit   the saveset's *.data objects (all of them, more bytes than the newest image
#                      needs) downloaded into tmpfs by a stock client: `aws s3 cp --recursive`
#                      (its default 10 requests in flight) and boto3's TransferManager
#                      (BOTO_CONCURRENCY in flight, one figure per value); the fastest is the
#                      limit. Target: ours <= 1.5x its time. Beside it (not the target's limit):
#                      curl 7.88 fetching the data objects with one GET stream each (--parallel),
#                      a C client that leaves the gateway more of the 2 cores than Python does.
#   restore  backupfs-restore -a restore (qcow2) from s3://bench/saveset and from the local copy
#            (its files evicted from the page cache first: read from disk, as a restore of a
#            backup nobody has just read). Target: S3 <= 1.5x local.
#   capture  backupfs-capture -l full then INCS x -l inc of a TCG domain with a DISK_MIB disk of
#            random data and INC_MIB of scattered 256 KiB guest writes (HMP qemu-io) before each
#            inc. Two identical domains (the same image, the same writes): one captures into a
#            local directory, the other into s3://bench/cap-ROUND, level by level, the order
#            alternating by round. Targets: S3 <= 1.3x local (each level and the chain), peak
#            RSS (/usr/bin/time) < 512 MiB.
#   gateway  the gateway's own figures: one GET stream of the full's object (aws s3api
#            get-object into tmpfs, and curl into /dev/null: a C client), a multipart PUT of
#            PUT_MIB from tmpfs (aws s3 cp, 8 MiB parts, 10 in flight) and one PUT stream of it
#            (curl -T).
# Reps are interleaved: every round runs one of each figure (the order inside a part rotates by
# round), so background load hits all of them alike. Request counts: every figure's requests are
# read from the gateway's own log (its beast access lines: method, status, body bytes); beside
# them the CPU seconds radosgw and ceph-osd used during the figure, and the CPU of the clients
# (/usr/bin/time) and of the FUSE daemons (/proc/PID/stat before unmounting). Before
# round 1, an untimed pass checks every read path byte for byte (cmp with the reference image;
# qemu-img compare of the restored images), and round 1 checks the captured chains (the newest
# image of both savesets, mounted, against the domain's disk as written).
#
# Usage (root; exit 77 otherwise): bench/run-s3-bench.sh [BUILD_DIR]   (default build)
#   needs BUILD_DIR's backupfs, backupfs-restore, backupfs-capture and tests/stream-tool
#   REPS=5                   rounds (median reported)
#   PARTS="mount restore capture gateway"   the parts to run
#   DISK_MIB=1024 INC_MIB=128 INCS=3   the saveset, and the captured domain
#   S3FS_VARIANTS="NAME=OPTS;..."   s3fs -o options per variant (on top of url, path style,
#                            passwd_file, ro); default: see s3fs_variants below
#   BOTO_CONCURRENCY="10 32" requests in flight of the boto3 limit figures
#   PUT_MIB=512              the multipart PUT's object
#   CACHE_DIR_FIGURE=1       the s3_cache_dir figure (0 skips it)
#   CURL_FIGURE=1            the curl --parallel figure (0 skips it)
#   CHECK=1                  the byte checks (0 skips them)
#   BENCH_ROOT=/var/tmp/backupfs-bench   scratch parent; KEEP=1 keeps the scratch
#   TMPFS=/dev/shm           where the stock clients download to
#   RGW_MEMSTORE_BYTES       the OSD's memstore cap (default here 8 GiB; about 2x the stored
#                            data is held in RAM)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
# shellcheck source=tests/integration/lib/harness.sh
source tests/integration/lib/harness.sh
# shellcheck source=tests/integration/lib/rgw.sh
source tests/integration/lib/rgw.sh

build=$(realpath -m "${1:-build}")
reps=${REPS:-5}
read -ra parts <<<"${PARTS:-mount restore capture gateway}"
disk_mib=${DISK_MIB:-1024}
inc_mib=${INC_MIB:-128}
incs=${INCS:-3}
read -ra boto_conc <<<"${BOTO_CONCURRENCY:-10 32}"
put_mib=${PUT_MIB:-512}
cache_dir_figure=${CACHE_DIR_FIGURE:-1}
curl_figure=${CURL_FIGURE:-1}
check=${CHECK:-1}
HARNESS_ROOT=${BENCH_ROOT:-/var/tmp/backupfs-bench}
KEEP_SCRATCH=${KEEP:-0}
tmpfs=${TMPFS:-/dev/shm}
export RGW_MEMSTORE_BYTES=${RGW_MEMSTORE_BYTES:-$((8 << 30))}
size=$((disk_mib << 20))
wsize=$((256 << 10)) # the capture's guest writes
bucket=bench
# s3fs 1.90's options that matter for one sequential reader: parallel_count (ranged GETs in
# flight per file), multipart_size (their size, MB), multireq_max (parallel HEADs of a
# listing), max_stat_cache_size; use_cache keeps downloads in a local directory (tmpfs here).
s3fs_variants=${S3FS_VARIANTS:-"defaults=;par16=parallel_count=16,multireq_max=32,max_stat_cache_size=100000;mp64=parallel_count=8,multipart_size=64,max_stat_cache_size=100000"}

harness_init # root (else exit 77), scratch $HARNESS_DIR, cleanup trap (domains, hooks)
T=$HARNESS_DIR
has() { [[ " ${parts[*]} " == *" $1 "* ]]; }
int() { [[ $2 =~ ^[0-9]+$ ]] || harness_fail "$1 must be a non-negative integer, not '$2'"; }
for v in reps disk_mib inc_mib incs put_mib; do int "$v" "${!v}"; done
((reps >= 1 && disk_mib >= 8 && inc_mib >= 1 && inc_mib <= disk_mib / 2)) ||
  harness_fail "REPS >= 1, DISK_MIB >= 8, 1 <= INC_MIB <= DISK_MIB / 2"
for p in "${parts[@]}"; do
  [[ $p == mount || $p == restore || $p == capture || $p == gateway ]] || harness_fail "unknown part '$p'"
done
[[ $(stat -f -c %T "$tmpfs" 2>/dev/null) == tmpfs ]] || harness_fail "TMPFS=$tmpfs is not a tmpfs"
harness_require python3 /usr/bin/python3 /usr/bin/aws /usr/bin/time s3fs curl qemu-img cmp \
  fusermount3 fusermount mountpoint radosgw-admin dd sync
harness_need_fuse
bfs=$build/tools/backupfs
restore=$build/tools/backupfs-restore
capture=$build/tools/backupfs-capture
tool=$build/tests/stream-tool
for b in "$bfs" "$restore" "$capture" "$tool"; do
  [[ -x $b ]] || harness_fail "$b not built (ninja -C $build backupfs backupfs-restore backupfs-capture stream-tool)"
done
client=(/usr/bin/python3 bench/s3_bench_client.py) # Debian's python3-boto3

tsv=$T/times.tsv     # name, round, wall µs, bytes, peak RSS KiB
info=$T/info.tsv     # key, value
marks=$T/marks.tsv   # name, round, gateway log offset: each figure's requests
mnt=$T/mnt           # backupfs mounts
s3fs_mnt=$T/s3fs     # s3fs mounts of the bucket
out=$T/out           # restore outputs, the local capture's saveset
logs=$T/logs
dl=$(mktemp -d "$tmpfs/backupfs-s3-bench.XXXXXX") # stock clients' downloads, the PUT's source
rm_dl() { rm -rf --one-file-system -- "$dl"; }
harness_on_exit rm_dl
mkdir -p "$mnt" "$s3fs_mnt" "$out" "$logs"
note() { printf '%s\t%s\n' "$1" "$2" >>"$info"; }

src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
if [[ -n $src ]] && rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
  rev+=" ($(git -C "$src" status --porcelain --untracked-files=no | wc -l) tracked files modified)"
else
  rev="unknown (not a git checkout)"
fi
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
note "source" "${src:-?} at $rev; build type ${btype:-unset (the project default, RelWithDebInfo)}"
note "machine" "$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 " GiB RAM" }'), kernel $(uname -r)"
note "versions" "$(/usr/bin/aws --version 2>&1); $(s3fs --version 2>&1 | head -n 1); boto3 $(/usr/bin/python3 -c 'import boto3; print(boto3.__version__)'); $(radosgw --version | head -n 1)"

# What the tools under test can do in this build (the S3 paths land one by one).
capture_s3=0
restore_s3=0
! "$capture" --help 2>&1 | grep -q 's3://' || capture_s3=1
! "$restore" --help 2>&1 | grep -q 's3://' || restore_s3=1
capture_common=()
! "$capture" --help 2>&1 | grep -q -- '--noprogress' || capture_common+=(-n)
note "capture to s3://" "$( ((capture_s3)) && echo yes || echo "not in this build (backupfs-capture --help names no s3://)")"
note "restore from s3://" "$( ((restore_s3)) && echo yes || echo "not in this build (backupfs-restore --help names no s3://)")"

# --- processes and mounts -----------------------------------------------------------------------

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

# alive PID : running (a zombie has exited: a daemonized FUSE server is reaped by PID 1, late).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# stuck_report PID : what a process that does not exit is doing: each thread's kernel wait
# channel and stack (the FUSE daemon below it, s3fs, may be what it waits for).
stuck_report() {
  local t
  printf 'pid %s: %s\n' "$1" "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)"
  for t in /proc/"$1"/task/*; do
    printf '  thread %s (%s) wchan %s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" "$(cat "$t/wchan" 2>/dev/null)"
    sed 's/^/    /' "$t/stack" 2>/dev/null | head -n 8
  done
}

# wait_gone PID... : waits for each to exit. One still running after 30 s is reported (its
# threads' stacks into the notes, s3fs's too), given 90 s more, then killed: the run goes on,
# and the report lists it.
wait_gone() {
  local p i s
  for p in "$@"; do
    for ((i = 0; i < 600; i++)); do
      alive "$p" || break
      sleep 0.05
    done
    alive "$p" || continue
    stuck=$((stuck + 1))
    {
      stuck_report "$p"
      for s in $(pids_with_arg "$s3fs_mnt"); do stuck_report "$s"; done
    } >"$logs/stuck.$stuck.txt" 2>&1
    for ((i = 0; i < 900; i++)); do
      alive "$p" || break
      sleep 0.1
    done
    if alive "$p"; then
      kill "$p" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do alive "$p" && sleep 0.1; done
      alive "$p" && kill -KILL "$p" 2>/dev/null
      note "stuck daemon" "round $round: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c 1-120)... still running 2 min after its unmount, killed; threads: logs/stuck.$stuck.txt"
    else
      note "slow exit" "round $round: pid $p exited between 30 s and 2 min after its unmount; threads at 30 s: logs/stuck.$stuck.txt"
    fi
    harness_log "process $p did not exit within 30 s of its unmount (logs/stuck.$stuck.txt)"
  done
  return 0
}
stuck=0

# unmount DIR [fusermount|fusermount3] : unmounts a FUSE mount and waits for its daemon's exit
# (its exit, and the CPU it takes, must not overlap the next figure). The root mount here is
# private: a mount namespace created while the mount existed (libvirt starts each QEMU, other
# users' domains too, in one) keeps a copy of it that no unmount here reaches, and the FUSE
# connection, so the daemon, lives on. After 5 s the daemon gets SIGTERM (it exits as on the
# last unmount); the report counts these.
unmount() {
  local pids i p left
  pids=$(pids_with_arg "$1")
  for ((i = 0; i < 50; i++)); do
    "${2:-fusermount3}" -u "$1" 2>/dev/null && break
    sleep 0.1
  done
  ! mountpoint -q "$1" || harness_fail "cannot unmount $1"
  for ((i = 0; i < 100; i++)); do
    left=$(for p in $pids; do if alive "$p"; then echo "$p"; fi; done)
    [[ -n $left ]] || return 0
    sleep 0.05
  done
  for p in $left; do
    kill -TERM "$p" 2>/dev/null || true
    note "daemon signalled" "round $round: $1 unmounted, its daemon (pid $p) still ran after 5 s: SIGTERM"
  done
  # shellcheck disable=SC2086
  wait_gone $left
}

unmount_all() {
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done < <(awk -v w="$T/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | tac)
}
harness_on_exit unmount_all

# files_bytes DIR : the bytes of the files under DIR.
files_bytes() { find "$1" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }'; }

# cpu_s PID : user + system CPU seconds the process has used so far.
cpu_s() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / t }' <<<"$stat"
}

# hwm PID : the process's peak RSS so far (KiB).
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- recording --------------------------------------------------------------------------------

round=0
# mark NAME : the gateway requests from here to the next mark are NAME's ("-": not a figure).
# Also the CPU seconds radosgw and ceph-osd have used so far: where a figure's time goes.
mark() {
  printf '%s\t%d\t%d\t%s\t%s\n' "$1" "$round" "$(stat -c %s "$RGW_DIR/log/client.rgw.log")" \
    "$(cpu_s "$(cat "$RGW_DIR/run/client.rgw.pid")")" "$(cpu_s "$(cat "$RGW_DIR/run/osd.0.pid")")" >>"$marks"
}

# timed NAME BYTES CMD... : runs CMD (stdout and stderr into a log), records its wall time and
# peak RSS (/usr/bin/time %M, KiB: the largest of CMD and the children it waited for) and CPU
# seconds (CMD's and its children's).
timed() {
  local name=$1 bytes=$2 log t0 t1 rc=0 kib user sys
  shift 2
  log=$logs/${name//[^A-Za-z0-9._-]/_}.log
  t0=${EPOCHREALTIME/./}
  /usr/bin/time -f '%M %U %S' -o "$log.rss" "$@" >"$log" 2>&1 || rc=$?
  t1=${EPOCHREALTIME/./}
  ((rc == 0)) || harness_fail "$name failed (exit $rc, round $round): $(tail -n 20 "$log")"
  read -r kib user sys < <(tail -n 1 "$log.rss")
  printf '%s\t%d\t%d\t%d\t%d\t%s\n' "$name" "$round" $((t1 - t0)) "$bytes" "$kib" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" >>"$tsv"
}

# record NAME BYTES USEC : a figure timed by its caller.
record() { printf '%s\t%d\t%d\t%d\t0\t0\n' "$1" "$round" "$3" "$2" >>"$tsv"; }

# run_group FIGURE... : the figures (each "function args") in an order rotated by the round.
run_group() {
  local n=$# i
  local -a figs=("$@")
  for ((i = 0; i < n; i++)); do
    # shellcheck disable=SC2086 # a figure is a function and its words
    ${figs[(i + round) % n]}
  done
}

# The aws CLI as a command (rgw_aws is a function; /usr/bin/time needs a program): Debian's
# 2.9 ignores AWS_ENDPOINT_URL, so the endpoint is passed; the config asks for path style.
aws_cmd() { aws_argv=(env "AWS_CONFIG_FILE=$RGW_DIR/aws-config" AWS_PAGER= /usr/bin/aws --endpoint-url "$AWS_ENDPOINT_URL"); }

# gc : deleted objects' RADOS data freed now (the memstore is RAM), not after rgw's gc delay.
gc() {
  timeout 300 radosgw-admin -c "$RGW_DIR/ceph.conf" gc process --include-all >"$logs/gc.log" 2>&1 ||
    harness_log "radosgw-admin gc process failed: $(tail -n 3 "$logs/gc.log")"
}

# --- the gateway and the saveset ----------------------------------------------------------------

start_all=$SECONDS
# The gateway's log into the scratch before rgw_down removes it (KEEP=1 keeps the scratch).
keep_gateway_log() { [[ -z $RGW_DIR ]] || cp "$RGW_DIR/log/client.rgw.log" "$logs/" 2>/dev/null || true; }
harness_on_exit keep_gateway_log
rgw_up
aws_cmd
rgw_make_bucket "$bucket"
note "gateway" "$AWS_ENDPOINT_URL ($RGW_DIR), memstore cap $((RGW_MEMSTORE_BYTES >> 20)) MiB"

t=$SECONDS
harness_log "saveset: ${disk_mib} MiB disk + $incs incs of ${inc_mib} MiB"
python3 bench/make_bench_saveset.py --stream-tool "$tool" --out "$T/disk" --size "$size" disk \
  --incs "$incs" --inc-bytes $((inc_mib << 20)) --no-qcow2 >"$logs/make-saveset.log" 2>&1 ||
  harness_fail "make_bench_saveset.py failed: $(tail -n 20 "$logs/make-saveset.log")"
saveset=$T/disk/plain
ref=$T/disk/ref.raw
t0=${EPOCHREALTIME/./}
"${aws_argv[@]}" s3 sync --only-show-errors "$saveset" "s3://$bucket/saveset/" >"$logs/sync.log" 2>&1 ||
  harness_fail "aws s3 sync of the saveset failed: $(tail -n 20 "$logs/sync.log")"
t1=${EPOCHREALTIME/./}
read -r data_bytes data_objects < <("${client[@]}" size "$bucket" saveset/) ||
  harness_fail "cannot list s3://$bucket/saveset/"
mapfile -t data_keys < <(cd "$saveset" && find . -maxdepth 1 -name '*.data' -printf 'saveset/%P\n' | sort)
note "saveset" "$(find "$saveset" -type f | wc -l) files, $(files_bytes "$saveset") bytes; $data_objects data objects of $data_bytes bytes"
note "upload" "aws s3 sync of the saveset: $(((t1 - t0) / 1000)) ms"
harness_log "saveset made and uploaded in $((SECONDS - t)) s"

# --- mount: ours, s3fs + ours, the stock clients -----------------------------------------------

# ours NAME [BACKUPFS_OPTION...] : backupfs s3://bench/saveset, the first read, unmount.
ours_read() {
  local name=$1 pid
  shift
  mark "$name"
  timed "$name: mount" 0 "$bfs" "$@" "s3://$bucket/saveset" "$mnt"
  pid=$(pids_with_arg "$mnt")
  timed "$name: first read" "$size" dd if="$mnt/latest/vda.raw" of=/dev/null bs=1M status=none
  note "hwm $name round $round" "$(hwm "$pid")"
  note "daemon cpu $name round $round" "$(cpu_s "$pid")"
  mark -
  unmount "$mnt"
}
ours() { ours_read "mount ours"; }
ours_cache_dir() {
  rm -rf "$T/s3cache"
  mkdir -p "$T/s3cache"
  sync
  ours_read "mount ours, s3_cache_dir" -o "s3_cache_dir=$T/s3cache"
}

# s3fs_mount OPTS : the bucket read-only at $s3fs_mnt (s3fs returns once mounted).
s3fs_opts() {
  local o="url=$AWS_ENDPOINT_URL,use_path_request_style,passwd_file=$T/s3fs.passwd,ro"
  [[ -z $1 ]] || o+=",$1"
  printf '%s' "$o"
}

# s3fs_figure NAME OPTS : s3fs of the bucket, backupfs on its saveset directory, the first read.
s3fs_figure() {
  local name="mount s3fs $1 + ours" opts=${2:-} t0 t1
  mark "$name"
  t0=${EPOCHREALTIME/./}
  s3fs "$bucket" "$s3fs_mnt" -o "$(s3fs_opts "$opts")" >"$logs/s3fs.log" 2>&1 ||
    harness_fail "s3fs $bucket $s3fs_mnt -o $(s3fs_opts "$opts") failed: $(cat "$logs/s3fs.log")"
  "$bfs" "$s3fs_mnt/saveset" "$mnt" >"$logs/s3fs-backupfs.log" 2>&1 ||
    harness_fail "backupfs on s3fs failed: $(cat "$logs/s3fs-backupfs.log")"
  t1=${EPOCHREALTIME/./}
  record "$name: mount" 0 $((t1 - t0))
  timed "$name: first read" "$size" dd if="$mnt/latest/vda.raw" of=/dev/null bs=1M status=none
  note "daemon cpu $name round $round" "$(awk '{ s += $1 } END { printf "%.2f", s }' \
    <<<"$(cpu_s "$(pids_with_arg "$mnt")")
$(cpu_s "$(pids_with_arg "$s3fs_mnt")")")"
  mark -
  unmount "$mnt"
  unmount "$s3fs_mnt" fusermount
}

limit_aws() {
  local name="limit aws s3 cp --recursive *.data (10 in flight)"
  rm -rf "$dl/get"
  mark "$name"
  timed "$name" "$data_bytes" "${aws_argv[@]}" s3 cp --recursive --only-show-errors \
    --exclude '*' --include '*.data' "s3://$bucket/saveset/" "$dl/get/"
  mark -
  [[ $(files_bytes "$dl/get") == "$data_bytes" ]] || harness_fail "$name: not $data_bytes bytes"
  rm -rf "$dl/get"
}

# limit_curl N : curl 7.88 (a C client) fetching the data objects, N at a time, one GET stream each.
limit_curl() {
  local name="limit curl --parallel *.data ($1 streams)" key
  local -a urls=()
  rm -rf "$dl/get"
  mkdir -p "$dl/get"
  for key in "${data_keys[@]}"; do urls+=(-o "$dl/get/${key##*/}" "$AWS_ENDPOINT_URL/$bucket/$key"); done
  mark "$name"
  timed "$name" "$data_bytes" curl -sSf --parallel --parallel-max "$1" \
    --aws-sigv4 "aws:amz:${AWS_DEFAULT_REGION}:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "${urls[@]}"
  mark -
  [[ $(files_bytes "$dl/get") == "$data_bytes" ]] || harness_fail "$name: not $data_bytes bytes"
  rm -rf "$dl/get"
}

limit_boto() {
  local name="limit boto3 TransferManager *.data ($1 in flight)"
  rm -rf "$dl/get"
  mark "$name"
  timed "$name" "$data_bytes" "${client[@]}" download "$bucket" saveset/ "$dl/get" --concurrency "$1"
  mark -
  rm -rf "$dl/get"
}

# --- restore ------------------------------------------------------------------------------------

restore_figure() { # restore_figure local|s3
  local name="restore $1" input=$saveset img=$out/restore/bfsbench.vda.qcow2
  [[ $1 == local ]] || input=s3://$bucket/saveset
  rm -rf "$out/restore"
  sync
  [[ $1 != local ]] || "${client[@]}" evict "$saveset"
  mark "$name"
  timed "$name" "$size" "$restore" -a restore -i "$input" -o "$out/restore" -n
  mark -
  [[ -f $img ]] || harness_fail "$name wrote no $img: $(ls "$out/restore")"
  if ((check && round == 0)); then
    qemu-img compare -q -f qcow2 -F raw "$img" "$ref" || harness_fail "$name: $img differs from $ref"
    harness_log "ok: $name == the reference"
  fi
  rm -rf "$out/restore"
}

# --- capture ------------------------------------------------------------------------------------

dom_l=bfs3bench-$$-l
dom_s=bfs3bench-$$-s

# new_domain NAME IMAGE : defines and starts a TCG domain with IMAGE (qcow2) as vda.
new_domain() {
  chmod 0666 "$2"
  cat >"$T/$1.xml" <<EOF
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$2'/><target dev='vda' bus='virtio'/></disk></devices>
</domain>
EOF
  ! harness_virsh dominfo "$1" >/dev/null 2>&1 || harness_fail "domain $1 already exists"
  harness_virsh define "$T/$1.xml" >/dev/null || harness_fail "virsh define $1 failed"
  HARNESS_DOMAINS+=("$1") # the harness's cleanup aborts jobs, drops checkpoints, undefines
  harness_virsh start "$1" >/dev/null || harness_fail "virsh start $1 failed"
}

setup_capture() {
  local t=$SECONDS
  harness_start_libvirtd
  # libvirt 9.0 re-probes QEMU's capabilities (~36 s) on each define unless /dev/kvm is root:kvm 0660.
  [[ $(stat -c '%U:%G %a' /dev/kvm 2>/dev/null) == "root:kvm 660" ]] ||
    harness_log "warning: /dev/kvm is '$(stat -c '%U:%G %a' /dev/kvm 2>&1)', not 'root:kvm 660': defines will be slow"
  head -c "$size" /dev/urandom >"$T/ref/cap.raw"
  qemu-img convert -q -f raw -O qcow2 "$T/ref/cap.raw" "$T/images/l.qcow2"
  cp "$T/images/l.qcow2" "$T/images/s.qcow2"
  new_domain "$dom_l" "$T/images/l.qcow2"
  new_domain "$dom_s" "$T/images/s.qcow2"
  ((check)) || rm -f "$T/ref/cap.raw"
  harness_log "capture: 2 domains with a ${disk_mib} MiB disk of random data in $((SECONDS - t)) s"
}

wait_no_job() {
  local i
  for ((i = 0; i < 300; i++)); do
    harness_virsh domjobinfo "$1" 2>/dev/null | grep -qE '^Job type: +None' && return 0
    sleep 0.1
  done
  harness_fail "domain $1 still runs a job: $(harness_virsh domjobinfo "$1" 2>&1)"
}

# guest_writes INC : INC_MIB of distinct random 256 KiB slots (seeded by round and inc), pattern
# 1 + (k + inc) % 255, written into both domains through HMP qemu-io: one virsh process reads
# all the monitor commands from stdin. Waits until each domain's log confirms every write; in
# round 1 (with CHECK) also applies them to the reference.
guest_writes() {
  local n=$((inc_mib * 1048576 / wsize)) dom pos done_writes i
  declare -A logpos=()
  python3 - "$n" "$size" "$wsize" "$((round * 100 + $1))" "$1" "$dom_l" "$dom_s" \
    >"$T/io/writes.virsh" 2>"$T/io/writes.tsv" <<'PY'
import random, sys
n, size, w, seed, inc = map(int, sys.argv[1:6])
slots = random.Random(seed).sample(range(size // w), n)
dev = "/machine/peripheral/virtio-disk0/virtio-backend"
for dom in sys.argv[6:]:
    for k, s in enumerate(slots):
        print(f"qemu-monitor-command {dom} --hmp 'qemu-io -d {dev} \"write -P 0x{1 + (k + inc) % 255:02x} {s * w} {w}\"'")
for k, s in enumerate(slots):
    print(f"{s * w}\t{1 + (k + inc) % 255}", file=sys.stderr)
PY
  for dom in "$dom_l" "$dom_s"; do logpos[$dom]=$(stat -c %s "/var/log/libvirt/qemu/$dom.log"); done
  virsh -q -c "$HARNESS_URI" <"$T/io/writes.virsh" >"$T/io/writes.out" 2>"$T/io/writes.err" ||
    harness_fail "virsh (qemu-io writes) failed: $(tail -n 5 "$T/io/writes.err")"
  [[ ! -s $T/io/writes.err ]] || harness_fail "qemu-io writes: $(head -n 5 "$T/io/writes.err")"
  for dom in "$dom_l" "$dom_s"; do
    pos=${logpos[$dom]}
    for ((i = 0; i < 100; i++)); do
      done_writes=$(tail -c "+$((pos + 1))" "/var/log/libvirt/qemu/$dom.log" | grep -c "^wrote $wsize/$wsize bytes at offset " || true)
      ((done_writes < n)) || break
      sleep 0.1
    done
    ((done_writes == n)) || harness_fail "the log of $dom confirms $done_writes of $n qemu-io writes"
  done
  ((check && round == 1)) || return 0
  python3 - "$T/ref/cap.raw" "$wsize" "$T/io/writes.tsv" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    for line in open(sys.argv[3]):
        off, p = map(int, line.split())
        f.seek(off)
        f.write(bytes([p]) * int(sys.argv[2]))
PY
}

cap_target() { # cap_target local|s3
  if [[ $1 == local ]]; then printf '%s' "$out/cap"; else printf 's3://%s/cap-%d' "$bucket" "$round"; fi
}

capture_figure() { # capture_figure local|s3 LEVEL_INDEX
  local dom=$dom_l level=full label=full bytes=$size
  [[ $1 == local ]] || dom=$dom_s
  ((${2} == 0)) || { level=inc && label=inc$2 && bytes=$((inc_mib << 20)); }
  wait_no_job "$dom"
  sync
  mark "capture $1 $label"
  timed "capture $1 $label" "$bytes" "$capture" -d "$dom" -l "$level" -o "$(cap_target "$1")" \
    "${capture_common[@]}"
  mark -
}

# check_capture local|s3 : round 1: the newest image of the chain is the domain's disk.
check_capture() {
  local target points
  target=$(cap_target "$1")
  "$bfs" "$target" "$mnt" || harness_fail "backupfs cannot mount the captured $target"
  points=$(find "$mnt" -mindepth 1 -maxdepth 1 ! -name latest | wc -l)
  ((points == incs + 1)) || harness_fail "captured $target shows $points points, want $((incs + 1))"
  harness_cmp "capture $1: latest/vda.raw of $target" "$T/ref/cap.raw" "$mnt/latest/vda.raw"
  unmount "$mnt"
}

capture_round() {
  local i tgt
  local -a order=(local)
  if ((capture_s3)); then
    order=(local s3)
    ((round % 2)) || order=(s3 local)
  fi
  rm -rf "$out/cap"
  for ((i = 0; i <= incs; i++)); do
    ((i == 0)) || guest_writes "$i"
    for tgt in "${order[@]}"; do capture_figure "$tgt" "$i"; done
  done
  if ((check && round == 1)); then
    for tgt in "${order[@]}"; do check_capture "$tgt"; done
  fi
  note "capture local saveset bytes round $round" "$(files_bytes "$out/cap")"
  rm -rf "$out/cap"
  if ((capture_s3)); then
    note "capture s3 objects round $round" "$("${client[@]}" size "$bucket" "cap-$round/" --suffix '' || true)"
    "${aws_argv[@]}" s3 rm --recursive --only-show-errors "s3://$bucket/cap-$round/" >"$logs/rm.log" 2>&1 ||
      harness_fail "cannot delete s3://$bucket/cap-$round/: $(tail -n 5 "$logs/rm.log")"
    gc
  fi
}

# --- the gateway's own figures ------------------------------------------------------------------

full_key=saveset/vda.full.data
full_bytes=$(stat -c %s "$saveset/vda.full.data")

gw_get_aws() {
  local name="gateway one GET stream (aws s3api get-object)"
  rm -f "$dl/one"
  mark "$name"
  timed "$name" "$full_bytes" "${aws_argv[@]}" s3api get-object --bucket "$bucket" --key "$full_key" "$dl/one"
  mark -
  rm -f "$dl/one"
}

gw_get_curl() {
  local name="gateway one GET stream (curl)"
  mark "$name"
  timed "$name" "$full_bytes" curl -sSf --aws-sigv4 "aws:amz:${AWS_DEFAULT_REGION}:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -o /dev/null "$AWS_ENDPOINT_URL/$bucket/$full_key"
  mark -
}

gw_put_curl() {
  local name="gateway one PUT stream (curl)"
  mark "$name"
  timed "$name" $((put_mib << 20)) curl -sSf --aws-sigv4 "aws:amz:${AWS_DEFAULT_REGION}:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -T "$dl/put.bin" -o /dev/null "$AWS_ENDPOINT_URL/$bucket/put/put-curl.bin"
  mark -
  "${aws_argv[@]}" s3 rm --only-show-errors "s3://$bucket/put/put-curl.bin" >"$logs/rm.log" 2>&1 ||
    harness_fail "cannot delete s3://$bucket/put/put-curl.bin: $(cat "$logs/rm.log")"
}

gw_put() {
  local name="gateway multipart PUT (aws s3 cp, 10 in flight)"
  mark "$name"
  timed "$name" $((put_mib << 20)) "${aws_argv[@]}" s3 cp --only-show-errors "$dl/put.bin" "s3://$bucket/put/put.bin"
  mark -
  "${aws_argv[@]}" s3 rm --only-show-errors "s3://$bucket/put/put.bin" >"$logs/rm.log" 2>&1 ||
    harness_fail "cannot delete s3://$bucket/put/put.bin: $(cat "$logs/rm.log")"
}

# --- setup, checks, rounds ----------------------------------------------------------------------

printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$T/s3fs.passwd"
chmod 0600 "$T/s3fs.passwd"
declare -a s3fs_figs=()
IFS=';' read -ra variants <<<"$s3fs_variants"
for v in "${variants[@]}"; do
  [[ $v == *=* ]] || harness_fail "S3FS_VARIANTS: '$v' is not NAME=OPTIONS"
  s3fs_figs+=("s3fs_figure ${v%%=*} ${v#*=}")
  note "s3fs variant ${v%%=*}" "$(s3fs_opts "${v#*=}" | sed "s|$T|\$T|g")"
done
mount_figs=(ours)
if ((cache_dir_figure)); then mount_figs+=(ours_cache_dir); fi
mount_figs+=("${s3fs_figs[@]}" limit_aws)
for c in "${boto_conc[@]}"; do mount_figs+=("limit_boto $c"); done
if ((curl_figure)); then mount_figs+=("limit_curl ${#data_keys[@]}"); fi
restore_figs=("restore_figure local")
if ((restore_s3)); then restore_figs+=("restore_figure s3"); fi
if has gateway; then head -c $((put_mib << 20)) /dev/urandom >"$dl/put.bin"; fi
if has capture; then setup_capture; fi

# Round 0 (untimed, not reported): every read path once, byte for byte, and every program once.
round=0
if ((check)); then
  if has mount; then
    "$bfs" "s3://$bucket/saveset" "$mnt" || harness_fail "backupfs s3://$bucket/saveset failed"
    harness_cmp "ours: latest/vda.raw" "$ref" "$mnt/latest/vda.raw"
    unmount "$mnt"
    for v in "${variants[@]}"; do
      s3fs "$bucket" "$s3fs_mnt" -o "$(s3fs_opts "${v#*=}")" || harness_fail "s3fs (${v%%=*}) failed"
      "$bfs" "$s3fs_mnt/saveset" "$mnt" || harness_fail "backupfs on s3fs (${v%%=*}) failed"
      harness_cmp "s3fs ${v%%=*} + ours: latest/vda.raw" "$ref" "$mnt/latest/vda.raw"
      unmount "$mnt"
      unmount "$s3fs_mnt" fusermount
    done
  fi
  if has restore; then for f in "${restore_figs[@]}"; do $f; done; fi
fi
rm -f "$tsv" "$marks"

note "load before (uptime)" "$(uptime)"
for ((round = 1; round <= reps; round++)); do
  t=$SECONDS
  note "load round $round" "$(cut -d ' ' -f 1-3 /proc/loadavg); compilers running: $(pgrep -c 'cc1plus|clang' || true); gateways running: $(pgrep -c -x radosgw || true)"
  if has mount; then run_group "${mount_figs[@]}"; fi
  if has restore; then run_group "${restore_figs[@]}"; fi
  if has capture; then capture_round; fi
  if has gateway; then
    run_group gw_get_aws gw_get_curl gw_put gw_put_curl
    gc
  fi
  harness_log "round $round of $reps done in $((SECONDS - t)) s"
done
note "load after (uptime)" "$(uptime)"
note "ceph-osd RSS KiB at the end" "$(ps -o rss= -p "$(cat "$RGW_DIR/run/osd.0.pid")" 2>/dev/null || echo ?)"
note "total run" "$((SECONDS - start_all)) s"
mark -

keep_gateway_log
python3 - "$tsv" "$info" "$marks" "$logs/client.rgw.log" "$disk_mib" "$inc_mib" "$incs" \
  "$reps" <<'PY'
import collections, re, statistics, sys
tsv, info, marks, gwlog, disk_mib, inc_mib, incs, reps = sys.argv[1:]
incs = int(incs)
runs, size, rss, cpus, by_round = {}, {}, {}, {}, collections.defaultdict(dict)
for line in open(tsv):
    name, rnd, usec, nbytes, kib, cpu = line.rstrip("\n").split("\t")
    cpus.setdefault(name, []).append(float(cpu))
    runs.setdefault(name, []).append(int(usec) / 1e6)
    rss.setdefault(name, []).append(int(kib))
    size[name] = int(nbytes)
    by_round[int(rnd)][name] = int(usec) / 1e6
notes = collections.defaultdict(list)
for line in open(info):
    k, v = line.rstrip("\n").split("\t", 1)
    notes[k].append(v)
med = {k: statistics.median(v) for k, v in runs.items()}
verdict = lambda ok: "PASS" if ok else "MISS"

# Requests of each figure: the gateway's beast access lines between its mark and the next.
beast = re.compile(rb'beast: \S+: \S+ - \S+ \[[^]]+\] "(\w+) (\S+) HTTP/[0-9.]+" (\d+) (\d+|-)')
ms = [l.rstrip("\n").split("\t") for l in open(marks)]
reqs = collections.defaultdict(list)  # figure -> per round Counter
with open(gwlog, "rb") as f:
    for (name, rnd, off, rgw_cpu, osd_cpu), nxt in zip(ms, ms[1:]):
        if name == "-":
            continue
        f.seek(int(off))
        c = collections.Counter()
        for m in beast.finditer(f.read(int(nxt[2]) - int(off))):
            method, target, status, sent = m.groups()
            kind = method.decode()
            if method == b"GET" and b"?" in target and b"uploadId" not in target and b"partNumber" not in target:
                kind = "LIST"  # GET of the bucket with a query: a listing
            elif method == b"PUT" and b"partNumber=" in target:
                kind = "PUT part"
            c[kind] += 1
            c["status>=400"] += int(status) >= 400
            c["bytes sent"] += int(sent) if sent != b"-" else 0
        c["rgw cpu"] = float(nxt[3]) - float(rgw_cpu)
        c["osd cpu"] = float(nxt[4]) - float(osd_cpu)
        reqs[name].append(c)
daemon_cpu = collections.defaultdict(list)
for k, vs in notes.items():
    if k.startswith("daemon cpu "):
        daemon_cpu[k[len("daemon cpu "):k.rindex(" round ")]] += [float(v) for v in vs]

print(f"\nsaveset: {disk_mib} MiB disk, full + {incs} incs of {inc_mib} MiB; capture: the same "
      f"disk, {incs} incs of {inc_mib} MiB of 256 KiB writes; medians of {reps} interleaved rounds\n")
print(f"| {'figure':62} | {'median s':>8} | {'MiB/s':>6} | {'min..max s':>15} | {'peak RSS MiB':>12} | {'CPU s':>5} |")
print(f"|{'-' * 64}|{'-' * 10}|{'-' * 8}|{'-' * 17}|{'-' * 14}|{'-' * 7}|")
for name, v in runs.items():
    mibs = f"{size[name] / 2**20 / med[name]:6.0f}" if size[name] else f"{'':6}"
    peak = f"{max(rss[name]) / 1024:12.1f}" if max(rss[name]) else f"{'':12}"
    cpu = f"{statistics.median(cpus[name]):5.2f}" if max(rss[name]) else f"{'':5}"
    print(f"| {name:62} | {med[name]:8.3f} | {mibs} | {min(v):7.3f}..{max(v):7.3f} | {peak} | {cpu} |")

print("\nrequests per figure, from the gateway's log, and CPU seconds during it (medians of the rounds;")
print("LIST = GET with a query; >=400: error answers; MiB body: bytes of the bodies either way;")
print("FUSE = the mount daemons, s3fs's included):\n")
kinds = ["GET", "HEAD", "LIST", "PUT", "PUT part", "POST", "DELETE", "status>=400"]
heads = ["GET", "HEAD", "LIST", "PUT", "PUT part", "POST", "DELETE", ">=400"]
print(f"| {'figure':52} | " + " | ".join(f"{k:>5}" for k in heads) +
      f" | {'MiB body':>8} | {'rgw CPU':>7} | {'osd CPU':>7} | {'FUSE CPU':>8} |")
print(f"|{'-' * 54}|" + "|".join("-" * (max(5, len(k)) + 2) for k in heads) + f"|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 10}|")
for name, cs in reqs.items():
    cells = [f"{statistics.median(c[k] for c in cs):{max(5, len(h))}.0f}" for k, h in zip(kinds, heads)]
    sent = statistics.median(c["bytes sent"] for c in cs) / 2**20
    rgw = statistics.median(c["rgw cpu"] for c in cs)
    osd = statistics.median(c["osd cpu"] for c in cs)
    fuse = f"{statistics.median(daemon_cpu[name]):8.2f}" if name in daemon_cpu else f"{'':8}"
    print(f"| {name:52} | " + " | ".join(cells) + f" | {sent:8.1f} | {rgw:7.2f} | {osd:7.2f} | {fuse} |")

rows = []
def row(label, value, target=None, ok=None):
    rows.append((label, value, f"{target} {verdict(ok)}" if ok is not None else (target or "")))
def fastest(prefix, suffix=""):
    c = [n for n in med if n.startswith(prefix) and n.endswith(suffix)]
    return min(c, key=med.get) if c else None

ours = "mount ours: first read"
# A mount's total: its mount (s3fs's can fetch ahead while backupfs on top opens the data files)
# and the first read.
total = lambda read: med[read] + med.get(read.replace("first read", "mount"), 0)
anchors = [n for n in med if n.startswith("mount s3fs") and n.endswith(": first read")]
anchor = min(anchors, key=total) if anchors else None
short = lambda limit: limit[6:].replace(" --recursive", "").replace(" TransferManager", "").replace(" *.data", "")
limits = [n for n in med if n.startswith(("limit aws", "limit boto3"))]
limit = min(limits, key=med.get) if limits else None
if ours in med:
    if anchor:
        v = total(anchor) / total(ours)
        row(f"read: {anchor.split(': ')[0]} / ours, mount + first read (speedup)", f"{v:.2f}", ">= 2.00", v >= 2)
        v = med[anchor] / med[ours]
        row("  the same, first read alone", f"{v:.2f}", ">= 2.00", v >= 2)
    if limit:
        v = total(ours) / med[limit]
        row(f"read: ours, mount + first read / limit: {short(limit)} (time)", f"{v:.2f}", "<= 1.50", v <= 1.5)
        v = med[ours] / med[limit]
        row("  the same, first read alone", f"{v:.2f}", "<= 1.50", v <= 1.5)
        row("  ours MiB/s (image, first read) / limit MiB/s (data objects)",
            f"{size[ours] / med[ours] / 2**20:.0f} / {size[limit] / med[limit] / 2**20:.0f}")
    curl = fastest("limit curl")
    if curl:
        v = total(ours) / med[curl]
        row(f"read: ours, mount + first read / {short(curl)} (time; not the target's limit)", f"{v:.2f}")
    if "mount ours, s3_cache_dir: first read" in med:
        row("read: ours with s3_cache_dir / ours (time)", f"{med['mount ours, s3_cache_dir: first read'] / med[ours]:.2f}")
    h = [int(v) for k, vs in notes.items() if k.startswith("hwm mount ours round") for v in vs]
    if h:
        row("ours' mount daemon peak RSS after the read (MiB, max of rounds)", f"{max(h) / 1024:.0f}")
    if "gateway one GET stream (curl)" in med:
        row("read: ours MiB/s / one GET stream MiB/s (curl)",
            f"{med['gateway one GET stream (curl)'] / size['gateway one GET stream (curl)'] * size[ours] / med[ours]:.2f}")

if "restore s3" in med and "restore local" in med:
    v = med["restore s3"] / med["restore local"]
    row("restore: s3 / local (time)", f"{v:.2f}", "<= 1.50", v <= 1.5)
    row("restore: peak RSS s3 / local (MiB)", f"{max(rss['restore s3']) / 1024:.0f} / {max(rss['restore local']) / 1024:.0f}")
elif "restore local" in med:
    row("restore: s3 / local (time)", "not available", "(no s3:// in backupfs-restore)")

levels = ["full"] + [f"inc{i}" for i in range(1, incs + 1)]
if all(f"capture local {l}" in med for l in levels):
    if all(f"capture s3 {l}" in med for l in levels):
        for l in levels:
            v = med[f"capture s3 {l}"] / med[f"capture local {l}"]
            row(f"capture {l}: s3 / local (time)", f"{v:.2f}", "<= 1.30", v <= 1.3)
        chain = lambda t: statistics.median(sum(r[f"capture {t} {l}"] for l in levels) for r in by_round.values())
        v = chain("s3") / chain("local")
        row("capture chain (full + incs, median of per-round sums): s3 / local", f"{v:.2f}", "<= 1.30", v <= 1.3)
        peak = max(max(rss[f"capture s3 {l}"]) for l in levels) / 1024
        row("capture to s3: peak RSS, any level, any round (MiB)", f"{peak:.0f}", "< 512", peak < 512)
    else:
        row("capture: s3 / local", "not available", "(no s3:// in backupfs-capture)")
    peak = max(max(rss[f"capture local {l}"]) for l in levels) / 1024
    row("capture to local: peak RSS, any level, any round (MiB)", f"{peak:.0f}")

print(f"\n| {'ratio (medians) or figure':84} | {'value':>13} | {'target':>14} |")
print(f"|{'-' * 86}|{'-' * 15}|{'-' * 16}|")
for label, value, t in rows:
    print(f"| {label:84} | {value:>13} | {t:>14} |")
print()
for k, vs in notes.items():
    if not k.startswith(("hwm ", "daemon cpu ")):
        for v in vs:
            print(f"{k}: {v.strip()}")
PY
