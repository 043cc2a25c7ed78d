# shellcheck shell=bash
# Shared harness for the backupfs integration tests (sourced, not executed).
#
# Runs as root against the system libvirtd and real TCG domains (no guest OS):
# guest writes go through HMP qemu-io, and every write is mirrored into a sparse
# raw reference file so each backup can be compared byte for byte.
#
# Exit codes: 0 pass, 1 fail (harness_fail), 77 skip (harness_skip, ctest
# SKIP_RETURN_CODE). Set KEEP_SCRATCH=1 to keep the scratch directory,
# HARNESS_NO_SKIP=1 to turn skips into failures.

HARNESS_URI="qemu:///system"
HARNESS_ROOT="/var/tmp/backupfs-it"
HARNESS_DIR=""
HARNESS_DOMAINS=()
HARNESS_CLEANUP_HOOKS=()

harness_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

harness_fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

harness_skip() {
    if [[ "${HARNESS_NO_SKIP:-0}" == 1 ]]; then
        harness_fail "would skip (HARNESS_NO_SKIP=1): $*"
    fi
    printf 'SKIP: %s\n' "$*"
    exit 77
}

# harness_require CMD... : a missing command is a failure (setup must install it).
harness_require() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || harness_fail "required command '$c' not found (package not installed?)"
    done
}

# harness_wait_for TIMEOUT_S DESCRIPTION CMD... : poll CMD until it succeeds.
harness_wait_for() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            harness_log "timed out after ${timeout}s waiting for: $what"
            return 1
        fi
        sleep 0.2
    done
}

harness_virsh() { timeout 120 virsh -q -c "$HARNESS_URI" "$@"; }

# Kill processes still running with our scratch dir on their command line
# (e.g. a qemu-nbd left behind by an aborted virtnbdrestore), by PID.
_harness_kill_leftovers() {
    [[ -n "$HARNESS_DIR" && -d "$HARNESS_DIR" ]] || return 0
    local f pid cmdline
    for f in /proc/[0-9]*/cmdline; do
        pid="${f#/proc/}"
        pid="${pid%/cmdline}"
        [[ "$pid" != "$$" && "$pid" != "$BASHPID" ]] || continue
        cmdline="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
        if [[ "$cmdline" == *"$HARNESS_DIR/"* ]]; then
            harness_log "cleanup: killing leftover pid $pid: $cmdline"
            kill "$pid" 2>/dev/null || true
        fi
    done
}

_harness_remove_domain() {
    local dom="$1" cp
    harness_virsh domjobabort "$dom" >/dev/null 2>&1 || true
    harness_virsh destroy "$dom" >/dev/null 2>&1 || true
    # Checkpoint metadata blocks undefine; drop it (the images go with the scratch dir).
    while read -r cp; do
        [[ -n "$cp" ]] || continue
        harness_virsh checkpoint-delete "$dom" "$cp" --metadata >/dev/null 2>&1 || true
    done < <(harness_virsh checkpoint-list "$dom" --name 2>/dev/null || true)
    if ! harness_virsh undefine "$dom" --checkpoints-metadata >/dev/null 2>&1; then
        harness_virsh undefine "$dom" >/dev/null 2>&1 ||
            harness_log "cleanup: could not undefine domain $dom"
    fi
}

_harness_cleanup() {
    local rc=$? h dom
    set +e
    trap - EXIT INT TERM
    for h in "${HARNESS_CLEANUP_HOOKS[@]}"; do "$h"; done
    for dom in "${HARNESS_DOMAINS[@]}"; do _harness_remove_domain "$dom"; done
    _harness_kill_leftovers
    if [[ -n "$HARNESS_DIR" && -d "$HARNESS_DIR" ]]; then
        if [[ "${KEEP_SCRATCH:-0}" == 1 ]]; then
            harness_log "KEEP_SCRATCH=1: scratch kept in $HARNESS_DIR"
        else
            rm -rf --one-file-system -- "$HARNESS_DIR"
        fi
    fi
    exit "$rc"
}

# harness_on_exit FUNCTION : run FUNCTION during cleanup (before domains go).
harness_on_exit() { HARNESS_CLEANUP_HOOKS+=("$1"); }

harness_init() {
    set -euo pipefail
    export LC_ALL=C
    export HOME="${HOME:-/root}" # virtnbdrestore's argparse reads $HOME
    [[ "$(id -u)" == 0 ]] || harness_skip "integration tests need root (libvirtd, qemu-nbd)"
    mkdir -p "$HARNESS_ROOT"
    chmod 0777 "$HARNESS_ROOT"
    HARNESS_DIR="$(mktemp -d "$HARNESS_ROOT/run.XXXXXX")"
    # libvirt-qemu must reach images, sockets and qemu-io source files in here.
    chmod 0777 "$HARNESS_DIR"
    mkdir -m 0777 "$HARNESS_DIR/images" "$HARNESS_DIR/ref" "$HARNESS_DIR/io"
    trap _harness_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    export HARNESS_DIR
}

_harness_libvirt_answers() { timeout 10 virsh -q -c "$HARNESS_URI" version >/dev/null 2>&1; }

harness_start_libvirtd() {
    harness_require virsh libvirtd virtlogd qemu-system-x86_64 qemu-img
    _harness_libvirt_answers && return 0
    [[ "$(id -u)" == 0 ]] || harness_skip "libvirtd not running and we are not root"
    local log="$HARNESS_ROOT/libvirtd-start.log"
    if ! pgrep -x virtlogd >/dev/null; then
        harness_log "starting virtlogd"
        virtlogd -d >>"$log" 2>&1 || harness_log "virtlogd -d failed (see $log)"
    fi
    if ! pgrep -x libvirtd >/dev/null; then
        harness_log "starting libvirtd"
        libvirtd -d >>"$log" 2>&1 || harness_log "libvirtd -d failed (see $log)"
    fi
    if ! harness_wait_for 60 "virsh -c $HARNESS_URI version" _harness_libvirt_answers; then
        tail -n 20 "$log" >&2 2>/dev/null || true
        harness_skip "libvirtd does not answer on $HARNESS_URI after 60s (unusable here)"
    fi
}

# vda -> 0, vdb -> 1, ...
_harness_disk_index() {
    [[ "$1" =~ ^vd([a-z])$ ]] || harness_fail "bad disk name '$1' (want vda, vdb, ...)"
    printf '%d' "$(($(printf '%d' "'${BASH_REMATCH[1]}") - 97))"
}

_harness_ref() { printf '%s/ref/%s.%s.raw' "$HARNESS_DIR" "$1" "$2"; }

harness_create_domain() {
    local name="$1" size_mib="$2" ndisks="${3:-1}" i disk img disks_xml=""
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || harness_fail "bad domain name '$name'"
    ((ndisks >= 1 && ndisks <= 8)) || harness_fail "bad disk count $ndisks"
    if harness_virsh dominfo "$name" >/dev/null 2>&1; then
        harness_fail "domain $name already exists; refusing to touch it"
    fi
    for ((i = 0; i < ndisks; i++)); do
        disk="vd$(printf "\\$(printf '%03o' $((97 + i)))")"
        img="$HARNESS_DIR/images/$name.$disk.qcow2"
        qemu-img create -q -f qcow2 "$img" "${size_mib}M"
        chmod 0666 "$img"
        truncate -s "${size_mib}M" "$(_harness_ref "$name" "$disk")"
        disks_xml+="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        disks_xml+="<source file='$img'/><target dev='$disk' bus='virtio'/></disk>"
    done
    local xml="$HARNESS_DIR/$name.xml"
    cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>$disks_xml</devices>
</domain>
EOF
    harness_virsh define "$xml" >/dev/null || harness_fail "virsh define $name failed"
    HARNESS_DOMAINS+=("$name")
    harness_virsh start "$name" >/dev/null || harness_fail "virsh start $name failed"
    local state
    state="$(harness_virsh domstate "$name")" || harness_fail "virsh domstate $name failed"
    [[ "$state" == running* ]] || harness_fail "domain $name is '$state' after start"
    harness_log "domain $name running with $ndisks x ${size_mib} MiB qcow2 disk(s)"
}

_harness_check_range() {
    local off="$1" len="$2"
    [[ "$off" =~ ^[0-9]+$ && "$len" =~ ^[0-9]+$ ]] || harness_fail "offset/length must be decimal: $off $len"
    ((off % 512 == 0 && len % 512 == 0 && len > 0)) ||
        harness_fail "offset $off / length $len must be positive multiples of 512"
}

# _harness_qemu_io DOM DISK QEMU_IO_COMMAND : run one qemu-io command in the guest.
_harness_qemu_io() {
    local dom="$1" disk="$2" cmd="$3" idx out
    idx="$(_harness_disk_index "$disk")"
    out="$(harness_virsh qemu-monitor-command "$dom" --hmp \
        "qemu-io -d /machine/peripheral/virtio-disk$idx/virtio-backend \"$cmd\"")" ||
        harness_fail "qemu-monitor-command on $dom failed for '$cmd': $out"
    # Success prints nothing; anything else is an error message.
    [[ -z "${out//[[:space:]]/}" ]] || harness_fail "qemu-io '$cmd' on $dom/$disk: $out"
}

# _harness_ref_apply REF OFFSET LENGTH SOURCE_FILE : copy LENGTH bytes of SOURCE into REF.
_harness_ref_apply() {
    dd if="$4" of="$1" bs=1M iflag=count_bytes oflag=seek_bytes \
        seek="$2" count="$3" conv=notrunc status=none
}

# harness_guest_write DOM DISK OFFSET LENGTH pattern 0xNN | file PATH
harness_guest_write() {
    local dom="$1" disk="$2" off="$3" len="$4" how="$5" arg="$6"
    local ref src
    ref="$(_harness_ref "$dom" "$disk")"
    [[ -f "$ref" ]] || harness_fail "no reference for $dom/$disk"
    _harness_check_range "$off" "$len"
    ((off + len <= $(stat -c %s "$ref"))) || harness_fail "write $off+$len beyond end of $dom/$disk"
    src="$(mktemp "$HARNESS_DIR/io/src.XXXXXX")"
    case "$how" in
    pattern)
        [[ "$arg" =~ ^0x[0-9a-fA-F]{1,2}$ ]] || harness_fail "bad pattern '$arg'"
        head -c "$len" /dev/zero | tr '\000' "\\$(printf '%03o' "$((arg))")" >"$src"
        _harness_qemu_io "$dom" "$disk" "write -P $arg $off $len"
        ;;
    file)
        [[ -f "$arg" ]] || harness_fail "source file '$arg' missing"
        (($(stat -c %s "$arg") >= len)) || harness_fail "source file '$arg' shorter than $len"
        head -c "$len" "$arg" >"$src" # private copy readable by libvirt-qemu
        chmod 0644 "$src"
        _harness_qemu_io "$dom" "$disk" "write -s $src $off $len"
        ;;
    *) harness_fail "harness_guest_write: want 'pattern 0xNN' or 'file PATH', got '$how'" ;;
    esac
    _harness_ref_apply "$ref" "$off" "$len" "$src"
    rm -f -- "$src"
}

# harness_guest_trim DOM DISK OFFSET LENGTH : zero+discard in the guest, zeros in the reference.
harness_guest_trim() {
    local dom="$1" disk="$2" off="$3" len="$4" ref
    ref="$(_harness_ref "$dom" "$disk")"
    [[ -f "$ref" ]] || harness_fail "no reference for $dom/$disk"
    _harness_check_range "$off" "$len"
    _harness_qemu_io "$dom" "$disk" "write -z -u $off $len"
    _harness_ref_apply "$ref" "$off" "$len" /dev/zero
}

harness_snapshot_ref() {
    local ref
    ref="$(_harness_ref "$1" "$2")"
    [[ -f "$ref" ]] || harness_fail "no reference for $1/$2"
    mkdir -p "$(dirname "$3")"
    cp --sparse=always "$ref" "$3"
}

# harness_random_file PATH BYTES
harness_random_file() { head -c "$2" /dev/urandom >"$1"; }

# harness_cmp WHAT EXPECTED ACTUAL : byte compare, fail naming WHAT.
harness_cmp() {
    local out
    out="$(cmp -- "$2" "$3" 2>&1)" || harness_fail "$1: $3 differs from $2: $out"
    harness_log "ok: $1"
}

# harness_wait_image_free IMAGE : wait until no process holds IMAGE's write lock
# (virtnbdrestore's forked qemu-nbd may still be closing it when it returns).
harness_wait_image_free() {
    harness_wait_for 30 "$1 to be unlocked" qemu-img info "$1" ||
        harness_fail "$1 is still locked by another process"
}

# harness_virtnbdrestore ARGS... : run virtnbdrestore with a private log and
# socket; fail if it exits non-zero or logs an error (1.9.15 exits 0 even
# when a data file fails to apply: it just stops applying the chain).
harness_virtnbdrestore() {
    local log
    log="$(mktemp "$HARNESS_DIR/virtnbdrestore.XXXXXX.log")"
    timeout 300 virtnbdrestore -L "$log" -f "$log.sock" "$@" ||
        harness_fail "virtnbdrestore $* failed (rc $?), log: $(tail -n 20 "$log")"
    if grep -E ' (ERROR|CRITICAL) |Traceback' "$log" >&2; then
        harness_fail "virtnbdrestore $* logged errors (see above)"
    fi
}
