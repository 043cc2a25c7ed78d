#!/usr/bin/env bash
# Stream library throughput vs memcpy and cat of the same 512 MiB, in one run.
# Prints the median of each benchmark and the ratios the foundation issue asks for.
# Usage: bench/run-stream-bench.sh [BUILD_DIR]   (BENCH_DIR=/var/tmp by default, REPS=5)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
reps=${REPS:-5}
export BENCH_DIR=${BENCH_DIR:-/var/tmp}
[ -x "$build/bench/stream_bench" ] || ninja -C "$build" stream_bench
json=$(mktemp)
trap 'rm -f "$json" "$BENCH_DIR"/bfs-bench.*' EXIT
"$build/bench/stream_bench" --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
  --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json >/dev/null
python3 - "$json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
med = {r["run_name"]: r["bytes_per_second"] / 2**20 for r in runs if r.get("aggregate_name") == "median"}
print(f"{'benchmark (median of runs, 512 MiB each)':58} {'MiB/s':>9}")
for name, v in med.items():
    print(f"{name:58} {v:9.0f}")
def ratio(a, b, label):
    print(f"{label:58} {med[a] / med[b]:9.2f}")
print()
ratio("BM_StreamWrite/lz4:0/real_time", "BM_CatWrite/real_time", "stream write (raw) / cat write   [target >= 0.70]")
ratio("BM_StreamRandomRead/lz4:0/verify:1/real_time", "BM_CatRead/real_time", "random read (raw, verified) / cat read [target >= 0.70]")
ratio("BM_StreamRandomRead/lz4:0/verify:0/real_time", "BM_CatRead/real_time", "random read (raw, unverified) / cat read")
ratio("BM_StreamSequentialRead/lz4:0/verify:1/real_time", "BM_CatRead/real_time", "sequential read (raw, verified) / cat read")
ratio("BM_StreamWrite/lz4:1/real_time", "BM_CatWrite/real_time", "stream write (lz4) / cat write")
ratio("BM_StreamSequentialRead/lz4:1/verify:1/real_time", "BM_CatRead/real_time", "sequential read (lz4) / cat read")
ratio("BM_StreamRandomRead/lz4:1/verify:1/real_time", "BM_CatRead/real_time", "random read (lz4) / cat read")
PY
