# shellcheck shell=bash
# Helpers for test_restore_faults.sh (sourced after harness.sh).
#
# - Workspaces: savesets written with stream-tool from raw reference images that the test
#   edits itself (rf_workspace, rf_put, rf_backup, rf_empty_inc, rf_vmconfig), so every
#   restore point of every disk has a reference (WS/ref/<disk>@<checkpoint>.raw).
# - Runs of backupfs-restore with their exit code and log (rf_run, rf_expect_*).
# - Checks on what a run leaves behind (rf_only_files, rf_same_image, rf_qemu_nbd_pids).
#
# Each case runs in a subshell (rf_case): harness_fail ends that case only, and the next case
# runs. What outlives a case (mounts, loop devices, domains, processes, directories) is written
# to $HARNESS_DIR/rf.cleanup as it is made, and one cleanup hook undoes it in reverse order.

RF_BUILD=""
RF_RESTORE=""
RF_STREAM_TOOL=""
RF_DIR=""  # the current case's scratch directory
RF_ERR=""  # stderr of the last rf_run
RF_RC=0    # exit code of the last rf_run
RF_FAILED=()
RF_SKIPPED=()
RF_T0=$SECONDS

rf_init() {
    RF_BUILD="$1"
    RF_RESTORE="$RF_BUILD/tools/backupfs-restore"
    RF_STREAM_TOOL="$RF_BUILD/tests/stream-tool"
    [[ -x "$RF_RESTORE" ]] || harness_fail "$RF_RESTORE missing (ninja -C $RF_BUILD backupfs-restore)"
    [[ -x "$RF_STREAM_TOOL" ]] || harness_fail "$RF_STREAM_TOOL missing (ninja -C $RF_BUILD stream-tool)"
    harness_require qemu-img qemu-nbd python3 losetup mount umount mountpoint cmp sha256sum setsid
    : >"$HARNESS_DIR/rf.cleanup"
    harness_on_exit _rf_cleanup
}

# rf_on_cleanup KIND ARG... : record something to undo at exit (see _rf_cleanup).
rf_on_cleanup() {
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$HARNESS_DIR/rf.cleanup"
}

_rf_cleanup() {
    local -a lines
    local i kind a b cmd
    [[ -f "$HARNESS_DIR/rf.cleanup" ]] || return 0
    mapfile -t lines <"$HARNESS_DIR/rf.cleanup"
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
        IFS=$'\t' read -r kind a b <<<"${lines[i]}"
        case "$kind" in
        pid) # PID and a string its command line holds (so a reused PID is left alone)
            cmd="$({ tr '\0' ' ' <"/proc/$a/cmdline"; } 2>/dev/null)" || continue
            if [[ "$cmd" == *"$b"* ]]; then
                harness_log "cleanup: killing pid $a: $cmd"
                kill "$a" 2>/dev/null || true
            fi
            ;;
        umount)
            if mountpoint -q "$a"; then
                umount "$a" || harness_log "cleanup: cannot unmount $a"
            fi
            ;;
        loop) # DEVICE BACKING_FILE: detached only while it still serves our file
            if [[ "$(losetup -n -O BACK-FILE "$a" 2>/dev/null)" == "$b"* ]]; then
                losetup -d "$a" || harness_log "cleanup: cannot detach $a"
            fi
            ;;
        domain) _harness_remove_domain "$a" ;;
        rmdir) [[ "$a" == /tmp/backupfs-restore.* ]] && rm -rf -- "$a" ;;
        cgroup) # empty once its processes are gone
            if [[ "$a" == /sys/fs/cgroup/cpu/backupfs-rf.* && -d "$a" ]]; then
                rmdir "$a" || harness_log "cleanup: cannot remove cgroup $a"
            fi
            ;;
        *) harness_log "cleanup: unknown record '${lines[i]}'" ;;
        esac
    done
}

# rf_cpu_cgroup PERCENT : a cgroup (v1 cpu controller) whose processes get PERCENT of one core,
# printed; prints nothing, and says so, where no such cgroup can be made.
rf_cpu_cgroup() {
    local dir="/sys/fs/cgroup/cpu/backupfs-rf.$BASHPID"
    if [[ ! -w /sys/fs/cgroup/cpu/cgroup.procs ]] || ! mkdir "$dir"; then
        harness_log "no cpu cgroup to run in at $1% of a core: running at full speed"
        return 0
    fi
    rf_on_cleanup cgroup "$dir"
    echo 100000 >"$dir/cpu.cfs_period_us"
    echo $(($1 * 1000)) >"$dir/cpu.cfs_quota_us"
    printf '%s\n' "$dir"
}

# rf_case ID TITLE FUNCTION : runs FUNCTION in a subshell with RF_DIR set; records the outcome.
# RF_ONLY="1a 7b" runs only those cases (while working on them).
rf_case() {
    local id="$1" title="$2" fn="$3" rc t0=$SECONDS
    [[ -z "${RF_ONLY:-}" || " $RF_ONLY " == *" $id "* ]] || return 0
    RF_DIR="$HARNESS_DIR/case$id"
    mkdir -p "$RF_DIR/logs"
    harness_log "=== case $id: $title"
    set +e
    (
        set -eEuo pipefail
        trap 'harness_fail "case $id: unexpected failure (rc $?) at line $LINENO: $BASH_COMMAND"' ERR
        "$fn"
    )
    rc=$?
    set -e
    case "$rc" in
    0) harness_log "=== case $id: PASS ($((SECONDS - t0)) s)" ;;
    77)
        RF_SKIPPED+=("$id ($title)")
        harness_log "=== case $id: SKIP"
        ;;
    *)
        RF_FAILED+=("$id ($title)")
        harness_log "=== case $id: FAIL"
        ;;
    esac
}

rf_finish() {
    harness_log "all cases done in $((SECONDS - RF_T0)) s"
    if ((${#RF_FAILED[@]})); then
        harness_fail "${#RF_FAILED[@]} case(s) failed: $(printf '[%s] ' "${RF_FAILED[@]}")"
    fi
    if ((${#RF_SKIPPED[@]})); then
        harness_skip "case(s) skipped: $(printf '[%s] ' "${RF_SKIPPED[@]}")"
    fi
    harness_log "PASS: every case"
}

# --- savesets --------------------------------------------------------------------------------

# rf_workspace WS [lz4] : WS/ref (references), WS/plain (a saveset) and, with lz4, WS/lz4 (the
# same backups compressed). rf_backup & co write into every saveset of the workspace.
rf_workspace() {
    mkdir -p "$1/ref" "$1/plain"
    [[ "${2:-}" != lz4 ]] || mkdir -p "$1/lz4"
}

_rf_savesets() {
    local d
    for d in "$1/plain" "$1/lz4"; do [[ -d "$d" ]] && printf '%s\n' "$d"; done
    return 0
}

# rf_disk WS DISK SIZE : the disk starts as SIZE bytes of zeros.
rf_disk() { truncate -s "$3" "$1/ref/$2.raw"; }

# rf_put WS DISK OFFSET LENGTH random|zero : change the disk's current content.
rf_put() {
    local src
    case "$5" in
    random) src=/dev/urandom ;;
    zero) src=/dev/zero ;;
    *) harness_fail "rf_put: want random or zero, got '$5'" ;;
    esac
    dd if="$src" of="$1/ref/$2.raw" bs=4M iflag=count_bytes,fullblock oflag=seek_bytes \
        seek="$3" count="$4" conv=notrunc status=none
}

# rf_backup WS DISK full|inc CHECKPOINT PARENT EXTENTS : a data file of the disk's current
# content (EXTENTS as stream-tool's --extents: data:OFF:LEN,zero:OFF:LEN,...), and a reference
# WS/ref/DISK@CHECKPOINT.raw of what that point must restore.
rf_backup() {
    local ws="$1" disk="$2" level="$3" cp="$4" parent="$5" ext="$6" ss name
    [[ -n "$ext" ]] || harness_fail "rf_backup: empty extents (stream-tool would scan the image)"
    if [[ "$level" == full ]]; then name="$disk.full.data"; else name="$disk.inc.$cp.data"; fi
    for ss in $(_rf_savesets "$ws"); do
        local -a argv=(write --image "$ws/ref/$disk.raw" --output "$ss/$name" --disk "$disk"
            --checkpoint "$cp" --level "$level" --date "2024-01-01T00:00:00.000000" --extents "$ext")
        [[ -z "$parent" ]] || argv+=(--parent "$parent")
        [[ "$ss" != */lz4 ]] || argv+=(--lz4 1)
        "$RF_STREAM_TOOL" "${argv[@]}" || harness_fail "stream-tool could not write $ss/$name"
    done
    cp --sparse=always "$ws/ref/$disk.raw" "$ws/ref/$disk@$cp.raw"
}

# rf_empty_inc WS DISK CHECKPOINT PARENT : an incremental with no frames at all (meta, stop and,
# compressed, an empty trailer), as virtnbdbackup writes when nothing changed.
rf_empty_inc() {
    local ws="$1" disk="$2" cp="$3" parent="$4" ss
    for ss in $(_rf_savesets "$ws"); do
        python3 - "$ss/$disk.inc.$cp.data" "$disk" "$cp" "$parent" \
            "$(stat -c %s "$ws/ref/$disk.raw")" "$([[ "$ss" == */lz4 ]] && echo 1 || echo 0)" <<'EOF' ||
import json, sys
path, disk, cp, parent, size, lz4 = sys.argv[1:]
meta = json.dumps({"virtualSize": int(size), "dataSize": 0, "date": "2024-01-01T00:00:00.000000",
                   "diskName": disk, "diskFormat": "qcow2", "checkpointName": cp,
                   "compressed": 1 if lz4 == "1" else False, "compressionMethod": "lz4",
                   "parentCheckpoint": parent, "incremental": True, "streamVersion": 2},
                  indent=4).encode()
hdr = lambda kind, start, length: b"%s %016x %016x\r\n" % (kind, start, length)
out = hdr(b"meta", 0, len(meta)) + meta + b"\r\n" + hdr(b"stop", 0, 0)
if lz4 == "1":
    out += b"[]\r\n" + hdr(b"comp", 0, 2)
with open(path, "wb") as f:
    f.write(out)
EOF
            harness_fail "could not write $ss/$disk.inc.$cp.data"
    done
    cp --sparse=always "$ws/ref/$disk.raw" "$ws/ref/$disk@$cp.raw"
}

# rf_vmconfig_file FILE DOMAIN TARGET=SOURCE... : a domain XML with these disks.
rf_vmconfig_file() {
    local file="$1" dom="$2" d disks=""
    shift 2
    for d in "$@"; do
        disks+="    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        disks+="<source file='${d#*=}'/><target dev='${d%%=*}' bus='virtio'/></disk>"$'\n'
    done
    cat >"$file" <<EOF
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>96</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
$disks  </devices>
</domain>
EOF
}

# rf_vmconfig WS POINT DOMAIN DISK... : vmconfig.POINT.xml listing these disks, each at
# /var/lib/libvirt/images/DOMAIN.DISK.qcow2 (so restored as OUTDIR/DOMAIN.DISK.qcow2).
rf_vmconfig() {
    local ws="$1" point="$2" dom="$3" ss d
    shift 3
    local -a disks=()
    for d in "$@"; do disks+=("$d=/var/lib/libvirt/images/$dom.$d.qcow2"); done
    for ss in $(_rf_savesets "$ws"); do
        rf_vmconfig_file "$ss/vmconfig.$point.xml" "$dom" "${disks[@]}"
    done
}

# rf_cpt WS DOMAIN CHECKPOINT... : the checkpoint list.
rf_cpt() {
    local ws="$1" dom="$2" ss
    shift 2
    for ss in $(_rf_savesets "$ws"); do
        python3 -c 'import json, sys; print(json.dumps(sys.argv[2:]), file=open(sys.argv[1], "w"))' \
            "$ss/$dom.cpt" "$@"
    done
}

# --- runs ----------------------------------------------------------------------------------

# rf_run NAME ARGS... : backupfs-restore -n ARGS (at most 120 s); sets RF_RC and RF_ERR.
rf_run() {
    local name="$1"
    shift
    RF_ERR="$RF_DIR/logs/$name.err"
    RF_RC=0
    harness_log "run ($name): backupfs-restore $*"
    timeout -k 10 120 "$RF_RESTORE" -n "$@" >"$RF_DIR/logs/$name.out" 2>"$RF_ERR" || RF_RC=$?
    if ((RF_RC == 124 || RF_RC == 137)); then
        harness_fail "$name: backupfs-restore $* did not end within 120 s"
    fi
    return 0
}

_rf_tail() { tail -n 8 "$RF_ERR" | sed 's/^/    | /'; }

# rf_expect_rc WANT : the last run's exit code.
rf_expect_rc() {
    ((RF_RC == $1)) || harness_fail "exit code $RF_RC, expected $1; stderr:
$(_rf_tail)"
}

# rf_expect_error TEXT... : one "ERROR" log line of the last run holds every TEXT (fixed strings).
rf_expect_error() {
    local line t ok
    while IFS= read -r line; do
        [[ "$line" == *" ERROR "* ]] || continue
        ok=1
        for t in "$@"; do [[ "$line" == *"$t"* ]] || ok=0; done
        ((ok)) && return 0
    done <"$RF_ERR"
    harness_fail "no ERROR line naming$(printf " '%s'" "$@"); stderr:
$(_rf_tail)"
}

# rf_expect_stderr TEXT... : stderr of the last run holds every TEXT (anywhere).
rf_expect_stderr() {
    local t
    for t in "$@"; do
        grep -qF -- "$t" "$RF_ERR" || harness_fail "stderr does not say '$t':
$(_rf_tail)"
    done
}

# rf_expect_fail RC TEXT... : exit code RC and an ERROR line holding every TEXT.
rf_expect_fail() {
    local rc="$1"
    shift
    rf_expect_rc "$rc"
    rf_expect_error "$@"
}

# rf_expect_usage TEXT... : exit code 2 and a stderr naming every TEXT.
rf_expect_usage() {
    rf_expect_rc 2
    rf_expect_stderr "$@"
}

# --- what is left --------------------------------------------------------------------------

# rf_only_files DIR NAME... : DIR holds exactly these entries (a missing DIR holds none).
rf_only_files() {
    local dir="$1" want got
    shift
    want="$(printf '%s\n' "$@" | sed '/^$/d' | sort)"
    got=""
    [[ ! -d "$dir" ]] || got="$(find "$dir" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort)"
    [[ "$got" == "$want" ]] ||
        harness_fail "$dir holds [$(tr '\n' ' ' <<<"$got")], expected [$(tr '\n' ' ' <<<"$want")]"
}

# rf_same_image WHAT IMAGE FORMAT REF : IMAGE is a regular file of FORMAT, of REF's size, with
# REF's content.
rf_same_image() {
    local what="$1" img="$2" fmt="$3" ref="$4" info out
    [[ -f "$img" && ! -L "$img" ]] || harness_fail "$what: $img is not a regular file"
    info="$(qemu-img info --output=json "$img" | python3 -c \
        'import json, sys; i = json.load(sys.stdin); print(i["format"], i["virtual-size"])')" ||
        harness_fail "$what: qemu-img info $img failed"
    [[ "$info" == "$fmt $(stat -c %s "$ref")" ]] ||
        harness_fail "$what: $img is '$info' (format, virtual size), expected '$fmt $(stat -c %s "$ref")'"
    out="$(qemu-img compare -f "$fmt" -F raw "$img" "$ref" 2>&1)" ||
        harness_fail "$what: $img differs from $ref: $out"
    harness_log "ok: $what"
}

# rf_qemu_nbd_pids DIR : PIDs of qemu-nbd processes serving a file under DIR.
rf_qemu_nbd_pids() {
    local f pid cmd
    local -a args
    for f in /proc/[0-9]*/cmdline; do
        { mapfile -d '' -t args <"$f"; } 2>/dev/null || continue # no fork: this runs in polls
        cmd="${args[*]}"
        [[ "$cmd" =~ ^([^ ]*/)?qemu-nbd\  && "$cmd" == *" $1/"* ]] || continue
        pid="${f#/proc/}"
        printf '%s\n' "${pid%/cmdline}"
    done
    return 0
}

# rf_no_qemu_nbd DIR : no qemu-nbd serves a file under DIR.
rf_no_qemu_nbd() {
    local pids
    pids="$(rf_qemu_nbd_pids "$1")"
    [[ -z "$pids" ]] || harness_fail "qemu-nbd still runs for $1 after backupfs-restore ended: $(
        for p in $pids; do { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null || true; echo; done)"
}

# rf_alive PID : the process runs (and is not a zombie waiting for us).
rf_alive() {
    local stat
    stat="$({ cat "/proc/$1/stat"; } 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# rf_size_at_least FILE BYTES
rf_size_at_least() {
    local n
    n="$(stat -c %s "$1" 2>/dev/null)" || return 1
    ((n >= $2))
}

# rf_wait_while_running PID TIMEOUT WHAT CMD... : polls CMD every 20 ms; fails if PID ends
# first (the run was too quick for the condition) or after TIMEOUT seconds.
rf_wait_while_running() {
    local pid="$1" deadline=$((SECONDS + $2)) what="$3"
    shift 3
    until "$@"; do
        rf_alive "$pid" || harness_fail "backupfs-restore (pid $pid) ended before $what; stderr:
$(_rf_tail)"
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            harness_fail "timed out after $2 s waiting for $what"
        fi
        sleep 0.02
    done
}

# rf_wait_exit PID TIMEOUT : waits for PID (a child of this shell) to end; sets RF_RC.
rf_wait_exit() {
    local pid="$1" deadline=$((SECONDS + $2))
    while rf_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            harness_fail "backupfs-restore (pid $pid) still runs $2 s after the signal"
        fi
        sleep 0.05
    done
    RF_RC=0
    wait "$pid" || RF_RC=$?
}

# rf_tree_state DIR EXCLUDED : every entry under DIR but DIR/EXCLUDED (names, types, sizes,
# mtimes, link targets, content hashes), to compare before and after a run.
rf_tree_state() {
    (
        cd "$1"
        find . -path "./$2" -prune -o -printf '%p %y %s %T@ %l\n' | sort
        find . -path "./$2" -prune -o -type f -print0 | sort -z | xargs -0r sha256sum
    )
}

# rf_loop FILE : attaches FILE to a free loop device (detached at exit); prints the device.
rf_loop() {
    local dev
    dev="$(losetup -f --show "$1")" || harness_fail "losetup -f --show $1 failed"
    rf_on_cleanup loop "$dev" "$1"
    printf '%s\n' "$dev"
}
