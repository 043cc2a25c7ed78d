#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root:
#   packages -> release build -> format check -> ASan+UBSan unit tests (clang) -> fuzzers
#   (bounded) beside the mount tests under ASan -> every unit and integration test (real
#   libvirtd, QEMU, FUSE, virtnbdbackup, Ceph RGW).
# Integration tests start the services they need (libvirtd) themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

step() { printf '\n==> %s\n' "$*"; }

step "packages"
bash scripts/install-deps.sh

step "release build"
BUILD_DIR=build bash scripts/build.sh -DCMAKE_BUILD_TYPE=RelWithDebInfo

step "format check"
ninja -C build format-check

step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
# Built with clang, so this build is also the one that checks -Wthread-safety (the release
# build uses the system's c++).
BUILD_DIR=build-asan bash scripts/build.sh -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DBACKUPFS_SANITIZE=ON -DBACKUPFS_BENCH=OFF
ctest --test-dir build-asan -L unit --output-on-failure -j2

step "fuzzers (libFuzzer, ASan+UBSan), ${FUZZ_SECONDS}s each, beside the mount tests under ASan"
# Only the fuzzers and what they link: the whole tree was built with clang just above.
cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DBACKUPFS_SANITIZE=ON -DBACKUPFS_FUZZ=ON -DBACKUPFS_BENCH=OFF >/dev/null
ninja -C build-fuzz fuzzers
# Each fuzzer runs on one core while the mount tests mostly wait on FUSE round trips and
# libvirt: together they take the time of the longer one. The fuzzers' output is kept apart
# and shown after the mount tests.
fuzz_log=$(mktemp /var/tmp/bfs-fuzz.XXXXXX)
(
  set -e
  for fuzzer in build-fuzz/fuzz/fuzz_*; do
    [ -x "$fuzzer" ] || continue
    corpus=$(mktemp -d)
    echo "-- $(basename "$fuzzer")"
    "$fuzzer" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=0 \
      "$corpus" fuzz/corpus/"$(basename "$fuzzer")" 2>&1 | tail -3
    rm -rf "$corpus"
  done
) >"$fuzz_log" 2>&1 &
fuzz_pid=$!

step "mount tests with the FUSE daemon under ASan+UBSan"
# A daemonized backupfs has no stderr: sanitizer reports go to files, and any file fails.
san_logs=$(mktemp -d /var/tmp/bfs-sanitizer.XXXXXX)
mount_status=0
ASAN_OPTIONS="log_path=$san_logs/asan:detect_leaks=1" \
  UBSAN_OPTIONS="log_path=$san_logs/ubsan:print_stacktrace=1:halt_on_error=1" \
  ctest --test-dir build-asan -L mount --output-on-failure || mount_status=$?
fuzz_status=0
wait "$fuzz_pid" || fuzz_status=$?
step "fuzzers' output"
cat "$fuzz_log"
rm -f "$fuzz_log"
if [ "$fuzz_status" -ne 0 ]; then
  echo "a fuzzer failed (above)" >&2
  exit 1
fi
[ "$mount_status" -eq 0 ] || exit "$mount_status"
if compgen -G "$san_logs/*" >/dev/null; then
  cat "$san_logs"/*
  echo "sanitizer reports from the mount tests (above)" >&2
  exit 1
fi
rm -rf "$san_logs"

step "all tests (unit + integration)"
# libvirt 9 re-probes QEMU's capabilities on every call while /dev/kvm is root-only (it
# probes as root, runs QEMU as libvirt-qemu): 36 s per domain define. Debian's udev rule
# would make it root:kvm 0660; our test domains are TCG (type='qemu') either way.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
# Integration tests that need the machine alone are RUN_SERIAL; the unit tests and the S3
# tests (each with its own gateway on its own ports) run two at a time.
ctest --test-dir build --output-on-failure -j2
