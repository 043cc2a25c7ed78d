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

# harness_need_fuse : skip if this machine cannot do FUSE (no /dev/fuse or not
# openable); a missing fusermount3 (package fuse3) is a failure.
harness_need_fuse() {
    harness_require fusermount3
    [[ -c /dev/fuse ]] || harness_skip "/dev/fuse missing"
    { : <>/dev/fuse; } 2>/dev/null || harness_skip "/dev/fuse cannot be opened"
}

# harness_after_second T : the clock has moved past unix second T (with harness_wait_for: an
# object stored from now on has a later LastModified, which has whole seconds, than one stored
# by T).
harness_after_second() { (($(date +%s) > $1)); }

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
        cmdline="$({ tr '\0' ' ' <"$f"; } 2>/dev/null)" || continue # may be gone
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
    for dom in "${HARNESS_DOMAINS[@]}"; do
        _harness_remove_domain "$dom"
        # libvirt keeps the domain's QEMU log: drop it unless it may explain a failure.
        ((rc != 0)) || [[ "${KEEP_SCRATCH:-0}" == 1 ]] || rm -f "/var/log/libvirt/qemu/$dom.log"
    done
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

# Can take seconds: libvirt 9.0 re-probes QEMU's capabilities on each lookup
# while /dev/kvm is root-only (its cache says KVM, the access check says no).
_harness_libvirt_answers() { timeout 30 virsh -q -c "$HARNESS_URI" version >/dev/null 2>&1; }

harness_start_libvirtd() {
    harness_require virsh libvirtd virtlogd qemu-system-x86_64 qemu-img
    _harness_libvirt_answers && return 0
    [[ "$(id -u)" == 0 ]] || harness_skip "libvirtd not running and we are not root"
    mkdir -p "$HARNESS_ROOT"
    local log="$HARNESS_ROOT/libvirtd-start.log"
    if ! pgrep -x virtlogd >/dev/null; then
        harness_log "starting virtlogd"
        virtlogd -d </dev/null >>"$log" 2>&1 || harness_log "virtlogd -d failed (see $log)"
    fi
    if ! pgrep -x libvirtd >/dev/null; then
        harness_log "starting libvirtd"
        libvirtd -d </dev/null >>"$log" 2>&1 || harness_log "libvirtd -d failed (see $log)"
    fi
    if ! harness_wait_for 120 "virsh -c $HARNESS_URI version" _harness_libvirt_answers; then
        tail -n 20 "$log" >&2 2>/dev/null || true
        harness_fail "libvirtd does not answer on $HARNESS_URI after 120s (log: $log)"
    fi
}

HARNESS_LETTERS=abcdefgh

# vda -> 0, vdb -> 1, ...
_harness_disk_index() {
    [[ "$1" =~ ^vd([a-h])$ ]] || harness_fail "bad disk name '$1' (want vda .. vdh)"
    local head="${HARNESS_LETTERS%%"${BASH_REMATCH[1]}"*}"
    printf '%d' "${#head}"
}

_harness_ref() { printf '%s/ref/%s.%s.raw' "$HARNESS_DIR" "$1" "$2"; }

harness_create_domain() {
    local name="$1" size_mib="$2" ndisks="${3:-1}" i disk img fmt disks_xml="" iothread_attr
    local iothreads_xml=""
    [[ "${HARNESS_IOTHREADS:-0}" == 1 ]] && iothreads_xml="<iothreads>$ndisks</iothreads>"
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || harness_fail "bad domain name '$name'"
    ((ndisks >= 1 && ndisks <= 8)) || harness_fail "bad disk count $ndisks"
    if harness_virsh dominfo "$name" >/dev/null 2>&1; then
        harness_fail "domain $name already exists; refusing to touch it"
    fi
    # HARNESS_DISK_FORMATS="qcow2 raw": the format of each disk in turn (default qcow2).
    local -a formats
    read -ra formats <<<"${HARNESS_DISK_FORMATS:-}"
    for ((i = 0; i < ndisks; i++)); do
        disk="vd${HARNESS_LETTERS:i:1}"
        fmt="${formats[i]:-qcow2}"
        img="$HARNESS_DIR/images/$name.$disk.$fmt"
        qemu-img create -q -f "$fmt" "$img" "${size_mib}M"
        chmod 0666 "$img"
        truncate -s "${size_mib}M" "$(_harness_ref "$name" "$disk")"
        # HARNESS_IOTHREADS=1: each disk served by its own iothread, not QEMU's main loop.
        iothread_attr=""
        [[ "${HARNESS_IOTHREADS:-0}" == 1 ]] && iothread_attr=" iothread='$((i + 1))'"
        disks_xml+="<disk type='file' device='disk'><driver name='qemu' type='$fmt'$iothread_attr/>"
        disks_xml+="<source file='$img'/><target dev='$disk' bus='virtio'/></disk>"
    done
    local xml="$HARNESS_DIR/$name.xml" agent_xml=""
    # HARNESS_AGENT=1: a guest agent channel (no agent answers on it: there is no guest OS).
    [[ "${HARNESS_AGENT:-0}" == 1 ]] &&
        agent_xml="<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
    cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>96</memory>
  <vcpu>1</vcpu>$iothreads_xml
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>$disks_xml$agent_xml</devices>
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

# _harness_qemu_io DOM DISK OFFSET LENGTH QEMU_IO_COMMAND : run one qemu-io write
# in the guest and confirm it. HMP returns nothing of qemu-io's own output in
# QEMU 7.2 (not even errors): qemu-io prints to QEMU's stderr, which virtlogd
# appends to /var/log/libvirt/qemu/DOM.log. The HMP command is synchronous;
# the log line may lag a little behind it, so poll the log for the result.
# _harness_hmp_qemu_io DOM DISK CMD : runs qemu-io CMD on DISK through HMP. Its output lands
# in the domain's log: HARNESS_QEMU_IO_LOG is that log, HARNESS_QEMU_IO_POS its size before.
_harness_hmp_qemu_io() {
    local dom="$1" disk="$2" cmd="$3" idx out
    HARNESS_QEMU_IO_LOG="/var/log/libvirt/qemu/$dom.log"
    idx="$(_harness_disk_index "$disk")"
    [[ -f "$HARNESS_QEMU_IO_LOG" ]] ||
        harness_fail "domain log $HARNESS_QEMU_IO_LOG missing (cannot see qemu-io's output)"
    HARNESS_QEMU_IO_POS="$(stat -c %s "$HARNESS_QEMU_IO_LOG")"
    out="$(harness_virsh qemu-monitor-command "$dom" --hmp \
        "qemu-io -d /machine/peripheral/virtio-disk$idx/virtio-backend \"$cmd\"")" ||
        harness_fail "qemu-monitor-command on $dom failed for '$cmd': $out"
    [[ -z "${out//[[:space:]]/}" ]] || harness_fail "qemu-io '$cmd' on $dom/$disk: $out"
}

_harness_qemu_io() {
    local dom="$1" disk="$2" off="$3" len="$4" cmd="$5" pos new log
    local want="wrote $len/$len bytes at offset $off"
    _harness_hmp_qemu_io "$dom" "$disk" "$cmd"
    log="$HARNESS_QEMU_IO_LOG"
    pos="$HARNESS_QEMU_IO_POS"
    local deadline=$((SECONDS + 30))
    while :; do
        (($(stat -c %s "$log") >= pos)) || pos=0 # rotated by virtlogd
        new="$(tail -c "+$((pos + 1))" "$log")"
        grep -qxF "$want" <<<"$new" && return 0
        if grep -qiE 'failed|error|not found|no such|denied|invalid' <<<"$new"; then
            harness_fail "qemu-io '$cmd' on $dom/$disk failed: $new"
        fi
        ((SECONDS < deadline)) || harness_fail "qemu-io '$cmd' on $dom/$disk: no '$want' in $log after 30s"
        sleep 0.1
    done
}

# _harness_ref_apply REF OFFSET LENGTH SOURCE_FILE : copy LENGTH bytes of SOURCE into REF.
_harness_ref_apply() {
    dd if="$4" of="$1" bs=1M iflag=count_bytes oflag=seek_bytes \
        seek="$2" count="$3" conv=notrunc status=none
}

# _harness_pattern_file LENGTH 0xNN FILE : FILE holds LENGTH bytes of the pattern byte.
_harness_pattern_file() {
    [[ "$2" =~ ^0x[0-9a-fA-F]{1,2}$ ]] || harness_fail "bad pattern '$2'"
    head -c "$1" /dev/zero | tr '\000' "\\$(printf '%03o' "$(($2))")" >"$3"
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
        _harness_pattern_file "$len" "$arg" "$src"
        _harness_qemu_io "$dom" "$disk" "$off" "$len" "write -P $arg $off $len"
        ;;
    file)
        [[ -f "$arg" ]] || harness_fail "source file '$arg' missing"
        (($(stat -c %s "$arg") >= len)) || harness_fail "source file '$arg' shorter than $len"
        head -c "$len" "$arg" >"$src" # private copy readable by libvirt-qemu
        chmod 0644 "$src"
        _harness_qemu_io "$dom" "$disk" "$off" "$len" "write -s $src $off $len"
        ;;
    *) harness_fail "harness_guest_write: want 'pattern 0xNN' or 'file PATH', got '$how'" ;;
    esac
    _harness_ref_apply "$ref" "$off" "$len" "$src"
    rm -f -- "$src"
}

# harness_offline_write DOM DISK OFFSET LENGTH 0xNN : a pattern written with qemu-io into the
# image of a shut-off domain (its persistent dirty bitmaps record it, as a guest write would).
harness_offline_write() {
    local dom="$1" disk="$2" off="$3" len="$4" pat="$5" ref img src out
    ref="$(_harness_ref "$dom" "$disk")"
    img="$HARNESS_DIR/images/$dom.$disk.qcow2"
    [[ -f "$ref" && -f "$img" ]] || harness_fail "no image or reference for $dom/$disk"
    _harness_check_range "$off" "$len"
    [[ "$pat" =~ ^0x[0-9a-fA-F]{1,2}$ ]] || harness_fail "bad pattern '$pat'"
    out="$(qemu-io -f qcow2 -c "write -P $pat $off $len" "$img" 2>&1)" ||
        harness_fail "qemu-io write on $img failed: $out"
    grep -qF "wrote $len/$len bytes at offset $off" <<<"$out" || harness_fail "qemu-io on $img: $out"
    src="$(mktemp "$HARNESS_DIR/io/src.XXXXXX")"
    _harness_pattern_file "$len" "$pat" "$src"
    _harness_ref_apply "$ref" "$off" "$len" "$src"
    rm -f -- "$src"
}

# harness_guest_trim DOM DISK OFFSET LENGTH : zero+discard in the guest, zeros in the reference.
harness_guest_trim() {
    local dom="$1" disk="$2" off="$3" len="$4" ref
    ref="$(_harness_ref "$dom" "$disk")"
    [[ -f "$ref" ]] || harness_fail "no reference for $dom/$disk"
    _harness_check_range "$off" "$len"
    _harness_qemu_io "$dom" "$disk" "$off" "$len" "write -z -u $off $len"
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
    # Its log goes to stderr too: keep that out of the test output.
    timeout 300 virtnbdrestore -L "$log" -f "$log.sock" "$@" 2>"$log.stderr" ||
        harness_fail "virtnbdrestore $* failed (rc $?): $(tail -n 20 "$log.stderr")"
    if grep -E ' (ERROR|CRITICAL) |Traceback' "$log" >&2; then
        harness_fail "virtnbdrestore $* logged errors (see above)"
    fi
}

# harness_corrupt_frame DATAFILE header|payload : damage a stream data file.
#   header : the first data frame's kind "data" becomes "dbta".
#   payload: one byte in the middle of the largest data frame's payload is
#            inverted (meant for lz4 streams, whose frames carry checksums).
# The mtime is kept: virtnbdrestore orders a chain by it.
harness_corrupt_frame() {
    python3 - "$1" "$2" <<'EOF' || harness_fail "could not corrupt $1 ($2)"
import json, os, sys
path, what = sys.argv[1], sys.argv[2]
st = os.stat(path)
with open(path, "r+b") as f:
    buf = f.read()
    def hdr(pos):
        h = buf[pos:pos + 40]
        if len(h) != 40 or h[38:40] != b"\r\n":
            sys.exit(f"{path}: no frame header at {pos}")
        return h[:4].decode("ascii"), int(h[5:21], 16), int(h[22:38], 16)
    kind, _, mlen = hdr(0)
    assert kind == "meta", kind
    meta = json.loads(buf[40:40 + mlen])
    sizes = None
    if meta.get("compressed", False) is not False:
        kind, _, tlen = hdr(len(buf) - 40)
        assert kind == "comp", kind
        sizes = json.loads(buf[len(buf) - 40 - 2 - tlen:len(buf) - 40])
    pos, frames = 40 + mlen + 2, []
    while True:
        kind, start, length = hdr(pos)
        if kind == "stop":
            break
        if kind == "zero":
            pos += 40
            continue
        assert kind == "data", kind
        plen = length
        if sizes is not None:
            e = sizes[len(frames)]
            plen = int(next(iter(e))) if isinstance(e, dict) else e
        frames.append((pos, plen))
        pos += 40 + plen + 2
    assert frames, f"{path}: no data frame"
    if what == "header":
        off = frames[0][0] + 1
        assert buf[off:off + 1] == b"a"
        new = b"b"
    else:
        fpos, plen = max(frames, key=lambda fr: fr[1])
        off = fpos + 40 + plen // 2
        new = bytes([buf[off] ^ 0xFF])
    f.seek(off)
    f.write(new)
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # keep chain order by mtime
print(f"{path}: {what}: byte at offset {off} changed", file=sys.stderr)
EOF
}

# harness_mount_backupfs BUILD_DIR SAVESET MOUNTPOINT : mounts with backupfs (it returns only
# once the mount is ready) and makes sure cleanup unmounts it even on failure.
HARNESS_MOUNTS=()
_harness_unmount_all() {
    local m
    for m in "${HARNESS_MOUNTS[@]}"; do
        mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m"; }
    done
}
harness_mount_backupfs() {
    local build="$1" saveset="$2" mnt="$3"
    mkdir -p "$mnt"
    ((${#HARNESS_MOUNTS[@]})) || harness_on_exit _harness_unmount_all
    HARNESS_MOUNTS+=("$mnt")
    "$build/tools/backupfs" "$saveset" "$mnt" || harness_fail "backupfs could not mount $saveset"
    mountpoint -q "$mnt" || harness_fail "backupfs returned but $mnt is not a mount point"
}
harness_unmount() { fusermount3 -u "$1" || harness_fail "cannot unmount $1"; }
