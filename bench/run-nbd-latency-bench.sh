#!/usr/bin/env bash
# NBD reads over a network with latency (issue 12): the capture reader (nbd-read: block status,
# then ReadExtents into nothing) against nbdcopy (to null:, the anchor and the limit), on
#   - a 1 GiB dense disk of random data, and
#   - a 1 GiB sparse disk with 4,096 scattered writes of 4 KiB..64 KiB (an incremental's shape:
#     what base:allocation reports as data is what a dirty bitmap would),
# each served by qemu-nbd over TCP on 127.0.0.2 and reached
#   - directly (no added latency),
#   - through tests/tools/delay_proxy.py with 0 ms (the proxy's own cost and throughput),
#   - through delay_proxy.py with DELAY_MS each way (5 ms: 10 ms per round trip),
# and, as the local reference, over a unix socket. "ours 1x16" is our reader with the landed
# settings (one connection, 16 reads in flight, 4 MiB of buffers) to show what the window and
# multi-conn buy. Rounds are interleaved (every figure once per round); medians are printed
# with the ratios the issue sets targets for.
#
# Usage (root): bench/run-nbd-latency-bench.sh [BUILD_DIR]     (BUILD_DIR defaults to build)
#   REPS=5            rounds (median reported)
#   DELAY_MS=5        the delay each way through the proxy
#   BASE_READER=FILE  also an nbd-read built from other code, on the unix socket (before/after)
#   NO_BUILD=1        use the binaries as they are
#   BENCH_DIR=/var/tmp   scratch (~1.2 GiB); KEEP=1 keeps it
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
reps=${REPS:-5}
delay_ms=${DELAY_MS:-5}
base_reader=${BASE_READER:+$(realpath "$BASE_READER")}
bench_dir=$(realpath "${BENCH_DIR:-/var/tmp}")

BENCH_NAME=run-nbd-latency-bench
# shellcheck source=bench/lib.sh
source bench/lib.sh

((EUID == 0)) || fail "run as root"
for p in qemu-nbd nbdcopy python3; do
  command -v "$p" >/dev/null || fail "$p is not installed"
done
if [[ -z ${NO_BUILD:-} ]]; then
  ninja -C "$build" -j2 nbd-read >/dev/null || fail "building nbd-read failed"
fi
reader=$build/capture/nbd-read
[[ -x $reader ]] || fail "$reader does not exist (build it, or give BUILD_DIR)"

work=$(mktemp -d "$bench_dir/nbd-latency-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

free_port() { # $1: address
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}

wait_until() { # $1: what, then a command that succeeds once ready
  local what=$1 deadline=$((SECONDS + 30))
  shift
  until "$@" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "$what never got ready"
    sleep 0.05
  done
}

log "making the images in $work"
head -c 1G /dev/urandom >"$work/dense.raw"
python3 - "$work/scattered.raw" <<'EOF'
import os, random, sys
rng = random.Random(12)
size, writes = 1 << 30, 4096
slot = size // writes
with open(sys.argv[1], "wb") as f:
    f.truncate(size)
    for i in range(writes):  # one write of 4..64 KiB at a random 4 KiB place in each slot
        length = rng.randrange(1, 17) * 4096
        f.seek(i * slot + rng.randrange(0, (slot - length) // 4096 + 1) * 4096)
        f.write(os.urandom(length))
EOF

declare -A tcp_port unix_socket proxy0_port proxyd_port
for img in dense scattered; do
  tcp_port[$img]=$(free_port 127.0.0.2)
  unix_socket[$img]=$work/$img.sock
  qemu-nbd --bind 127.0.0.2 --port "${tcp_port[$img]}" -x "$img" -f raw --read-only \
    --shared=0 --persistent "$work/$img.raw" 2>>"$work/qemu-nbd.log" &
  pids+=($!)
  qemu-nbd --socket "${unix_socket[$img]}" -x "$img" -f raw --read-only --shared=0 \
    --persistent "$work/$img.raw" 2>>"$work/qemu-nbd.log" &
  pids+=($!)
  for d in 0 "$delay_ms"; do
    port=$(free_port 127.0.0.3)
    python3 tests/tools/delay_proxy.py --listen "127.0.0.3:$port" \
      --to "127.0.0.2:${tcp_port[$img]}" --delay-ms "$d" \
      --ready-file "$work/proxy-$img-$d.ready" >/dev/null 2>>"$work/proxy.log" &
    pids+=($!)
    if [[ $d == 0 ]]; then proxy0_port[$img]=$port; else proxyd_port[$img]=$port; fi
  done
done
for img in dense scattered; do
  wait_until "qemu-nbd for $img" nbdinfo --size >/dev/null "nbd://127.0.0.2:${tcp_port[$img]}/$img"
  wait_until "qemu-nbd for $img (unix)" nbdinfo --size >/dev/null "nbd+unix:///$img?socket=${unix_socket[$img]}"
  for d in 0 "$delay_ms"; do wait_until "the proxy" test -e "$work/proxy-$img-$d.ready"; done
done

# Wall time of a command, in seconds; its output must be empty or go to the log.
timed() {
  local start=$EPOCHREALTIME
  "$@" >>"$work/runs.log" 2>&1 || fail "failed: $* (see $work/runs.log)"
  echo "$EPOCHREALTIME - $start" | bc -l
}

# Figures: "<image> <path> <program>" -> seconds, one line per run in results.tsv.
run_round() {
  local img path host port uri
  for img in dense scattered; do
    for path in unix direct proxy0 "proxy$delay_ms"; do
      case $path in
      unix) host="" ;;
      direct) host=127.0.0.2 port=${tcp_port[$img]} ;;
      proxy0) host=127.0.0.3 port=${proxy0_port[$img]} ;;
      *) host=127.0.0.3 port=${proxyd_port[$img]} ;;
      esac
      if [[ -z $host ]]; then
        uri="nbd+unix:///$img?socket=${unix_socket[$img]}"
        printf '%s\t%s\tours\t%s\n' "$img" "$path" \
          "$(timed "$reader" --socket "${unix_socket[$img]}" --export "$img")"
        if [[ -n $base_reader ]]; then
          printf '%s\t%s\tbase\t%s\n' "$img" "$path" \
            "$(timed "$base_reader" --socket "${unix_socket[$img]}" --export "$img")"
        fi
      else
        uri="nbd://$host:$port/$img"
        printf '%s\t%s\tours\t%s\n' "$img" "$path" \
          "$(timed "$reader" --host "$host" --port "$port" --export "$img")"
        printf '%s\t%s\tours-1x16\t%s\n' "$img" "$path" \
          "$(timed "$reader" --host "$host" --port "$port" --export "$img" \
            --connections 1 --window 16 --buffer-mib 4)"
      fi
      printf '%s\t%s\tnbdcopy\t%s\n' "$img" "$path" "$(timed nbdcopy "$uri" null:)"
    done
  done
}

for ((round = 1; round <= reps; round++)); do
  log "round $round of $reps"
  run_round >>"$work/results.tsv"
done

python3 - "$work/results.tsv" "$delay_ms" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    img, path, prog, secs = line.split("\t")
    runs[(img, path, prog)].append(float(secs))
delay = sys.argv[2]
med = {k: statistics.median(v) for k, v in runs.items()}
paths = ["unix", "direct", "proxy0", "proxy" + delay]
progs = ["ours", "base", "ours-1x16", "nbdcopy"]
print(f"medians of {len(next(iter(runs.values())))} rounds, wall seconds (connect + map + read)")
print(f"{'image':10} {'path':8} " + " ".join(f"{p:>10}" for p in progs) + "   ours/nbdcopy")
for img in ["dense", "scattered"]:
    for path in paths:
        cells = [med.get((img, path, p)) for p in progs]
        ratio = med[(img, path, "ours")] / med[(img, path, "nbdcopy")]
        print(f"{img:10} {path:8} " +
              " ".join(f"{c:10.3f}" if c is not None else f"{'-':>10}" for c in cells) +
              f"   {ratio:.2f}")
print()
for img in ["dense", "scattered"]:
    slow, fast = med[(img, "proxy" + delay, "ours")], med[(img, "direct", "ours")]
    print(f"{img}: ours at {delay} ms each way / ours direct = {slow / fast:.2f} (target <= 2)")
gib = 1.0
for path in ["proxy0", "proxy" + delay]:
    t = med[("dense", path, "nbdcopy")]
    print(f"proxy throughput ({path}, nbdcopy of 1 GiB dense): {1024 / t:.0f} MiB/s")
EOF
