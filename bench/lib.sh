# shellcheck shell=bash
# Helpers the benchmark scripts share (sourced from the repository's top directory, which the
# scripts cd to). The sourcing script sets BENCH_NAME before, and `info` (its notes file)
# before calling note.

fail() {
  printf '%s: %s\n' "$BENCH_NAME" "$*" >&2
  exit 1
}
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
note() { printf '%s\t%s\n' "$1" "$2" >>"$info"; }

libvirt_answers() { timeout 30 virsh -q -c qemu:///system version >/dev/null 2>&1; }
# virtnbdrestore connects to libvirt even to restore: start it as the tests do.
start_libvirtd() {
  libvirt_answers && return 0
  log "starting virtlogd and libvirtd (virtnbdrestore connects to libvirt)"
  pgrep -x virtlogd >/dev/null || virtlogd -d </dev/null >/dev/null 2>&1 || true
  pgrep -x libvirtd >/dev/null || libvirtd -d </dev/null >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 120))
  until libvirt_answers; do
    ((SECONDS < deadline)) || fail "libvirtd does not answer on qemu:///system after 120s"
    sleep 0.5
  done
}
