# Shared by the backupfs-capture integration tests (test_capture_*.sh): the variant state,
# capture (run and snapshot the references), and the checks of a saveset's files and mount.
# Needs harness.sh sourced; capture_test_setup sets up the rest.
# shellcheck shell=bash

# capture_test_setup BUILD_DIR PROGRAM... : the start of every test_capture_*.sh: the built
# programs (BUILD_DIR, CAPTURE, RESTORE), the harness (root, FUSE, the PROGRAMs, libvirtd), and
# T (the scratch directory), K, M.
capture_test_setup() {
    local b
    BUILD_DIR="$(realpath "$1")"
    shift
    CAPTURE="$BUILD_DIR/tools/backupfs-capture"
    RESTORE="$BUILD_DIR/tools/backupfs-restore"
    for b in "$CAPTURE" "$RESTORE" "$BUILD_DIR/tools/backupfs"; do
        [[ -x "$b" ]] || harness_fail "$b not built"
    done
    harness_init
    harness_need_fuse
    harness_require "$@"
    harness_start_libvirtd
    T="$HARNESS_DIR"
    K=1024
    M=$((1024 * 1024))
}

# The variant being run.
DOM=""
OUT=""
DISKS=()
POINTS=()    # restore point names, oldest first
CHECKPOINTS=0 # checkpoints created so far (virtnbdbackup.0 .. N-1)

# expect_fail WHAT PATTERN CMD... : CMD must exit 1 and print PATTERN.
expect_fail() {
    local what="$1" pattern="$2" rc=0
    shift 2
    "$@" >"$T/fail.out" 2>&1 || rc=$?
    ((rc == 1)) || harness_fail "$what: exit $rc, want 1: $(cat "$T/fail.out")"
    grep -qF -- "$pattern" "$T/fail.out" ||
        harness_fail "$what: output lacks '$pattern': $(cat "$T/fail.out")"
    harness_log "ok: $what fails: $(head -n 1 "$T/fail.out")"
}

rnd() { # rnd DISK OFFSET LENGTH : fresh random bytes
    harness_random_file "$T/rnd" "$3"
    harness_guest_write "$DOM" "$1" "$2" "$3" file "$T/rnd"
}
pat() { harness_guest_write "$DOM" "$1" "$3" "$4" pattern "$2"; } # pat DISK 0xNN OFFSET LENGTH

# capture LEVEL [OPTION...] : run backupfs-capture, snapshot the references as the new point.
# KIND=diff|copy|inc names the point as that kind (a shut-off domain's inc is a diff);
# WANT_RC=N expects that exit code (2: warnings with -e).
capture() {
    local level="$1" start=$SECONDS log rc=0
    shift
    log="$T/capture.${#POINTS[@]}.out"
    "$CAPTURE" -d "$DOM" -l "$level" -o "$OUT" -v "$@" >"$log" 2>&1 || rc=$?
    ((rc == ${WANT_RC:-0})) ||
        harness_fail "backupfs-capture -l $level $*: exit $rc, want ${WANT_RC:-0}: $(cat "$log")"
    record_point "${KIND:-$level}"
    harness_log "-l $level $* -> ${POINTS[-1]} ($((SECONDS - start))s): $(tail -n 1 "$log")"
}

# record_point KIND : a run of that kind (full, inc, auto, diff, copy) just succeeded: snapshot
# the references as its restore point.
record_point() {
    local kind="$1" point d ids
    case "$kind" in
    copy) point=copy ;;
    diff)
        # The diff point this run added: the one unixtime id not yet among POINTS.
        ids="$(find "$OUT" -maxdepth 1 -name "${DISKS[0]}.diff.*.data" -printf '%f\n' |
            sed 's/^[^.]*\.diff\.//; s/\.data$//' | grep -vxF -f <(printf '%s\n' "${POINTS[@]}" x) || true)"
        [[ "$ids" =~ ^[0-9]+$ ]] || harness_fail "want one new ${DISKS[0]}.diff.<unixtime>.data, got '$ids'"
        point="$ids"
        ;;
    *)
        point="virtnbdbackup.$CHECKPOINTS"
        CHECKPOINTS=$((CHECKPOINTS + 1))
        ;;
    esac
    for d in "${DISKS[@]}"; do
        harness_snapshot_ref "$DOM" "$d" "$OUT.ref/$point.$d.raw"
    done
    POINTS+=("$point")
}

check_files() {
    local p d n
    python3 - "$OUT/$DOM.cpt" "$CHECKPOINTS" <<'EOF' || harness_fail "$OUT/$DOM.cpt: $(cat "$OUT/$DOM.cpt")"
import json, sys
assert json.load(open(sys.argv[1])) == [f"virtnbdbackup.{i}" for i in range(int(sys.argv[2]))]
EOF
    for ((n = 0; n < CHECKPOINTS; n++)); do
        [[ -s "$OUT/checkpoints/virtnbdbackup.$n.xml" ]] || harness_fail "no checkpoints/virtnbdbackup.$n.xml"
    done
    for p in "${POINTS[@]}"; do
        [[ -s "$OUT/vmconfig.$p.xml" ]] || harness_fail "no vmconfig.$p.xml"
        for d in "${DISKS[@]}"; do
            python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["format"] == "qcow2"' \
                "$OUT/$d.$p.qcow.json" || harness_fail "bad $d.$p.qcow.json"
        done
    done
    [[ -z "$(find "$OUT" -name '*.partial')" ]] || harness_fail "$OUT holds .partial files"
    "$RESTORE" -a verify -i "$OUT" >"$T/verify.out" 2>&1 ||
        harness_fail "backupfs-restore -a verify $OUT: $(cat "$T/verify.out")"
    harness_log "ok: saveset files of $OUT, verify passes"
}

check_mount() {
    local mnt="$T/mnt" p d
    harness_mount_backupfs "$BUILD_DIR" "$OUT" "$mnt"
    for p in "${POINTS[@]}"; do
        for d in "${DISKS[@]}"; do
            harness_cmp "$(basename "$OUT") $p/$d.raw" "$OUT.ref/$p.$d.raw" "$mnt/$p/$d.raw"
        done
    done
    [[ "$(readlink "$mnt/latest")" == "${POINTS[-1]}" ]] ||
        harness_fail "latest is $(readlink "$mnt/latest"), want ${POINTS[-1]}"
    harness_unmount "$mnt"
}

# The peer restores our full backup: virtnbdrestore --until virtnbdbackup.0 == reference.
# Only point 0: virtnbdrestore 1.9.15 skips zero frames (it restores into a fresh sparse image),
# so the zero frames our incs write for trimmed ranges do not reach its restore, which keeps
# the stale data there. backupfs is exact, checked above.
check_virtnbdrestore() {
    local rest="$T/rest" img
    harness_virtnbdrestore -a restore -i "$OUT" -o "$rest" --until virtnbdbackup.0 -n >/dev/null
    img="$(find "$rest" -maxdepth 1 -name '*vda*' -print -quit)"
    [[ -n "$img" ]] || harness_fail "virtnbdrestore wrote no vda image: $(ls "$rest")"
    harness_wait_image_free "$img"
    qemu-img convert -O raw "$img" "$T/rest.raw"
    harness_cmp "virtnbdrestore of $(basename "$OUT") --until virtnbdbackup.0" \
        "$OUT.ref/virtnbdbackup.0.vda.raw" "$T/rest.raw"
    rm -rf "$rest" "$T/rest.raw"
}

# A full backup into a 1 MiB tmpfs runs out of space after the job started: exit 1 naming the
# file, no data file or .partial left, the job ended and the new checkpoint deleted again.
_unmount_small() { ! mountpoint -q "$T/small" || umount "$T/small"; }
# named_full_disk DIR LOG : LOG names a disk of $DISKS and that disk's data file in DIR as the
# one it could not write. With two disks either may run out first: they are read in parallel.
named_full_disk() {
    local disk
    for disk in "${DISKS[@]}"; do
        grep -qF "disk $disk: cannot write $1/$disk.full.data" "$2" && return 0
    done
    return 1
}
check_disk_full() {
    local out="$T/small" rc=0
    mkdir -p "$out"
    mount -t tmpfs -o size=1m bfsit-small "$out" || harness_skip "cannot mount a tmpfs"
    harness_on_exit _unmount_small
    "$CAPTURE" -d "$DOM" -l full -o "$out" >"$T/full.out" 2>&1 || rc=$?
    ((rc == 1)) || harness_fail "full backup into a full disk: exit $rc: $(cat "$T/full.out")"
    named_full_disk "$out" "$T/full.out" || harness_fail "message does not name the file: $(cat "$T/full.out")"
    [[ -z "$(find "$out" -name '*.data' -o -name '*.partial')" ]] ||
        harness_fail "data files left after a failed backup: $(ls -l "$out")"
    [[ -z "$(harness_virsh checkpoint-list "$DOM" --name)" ]] ||
        harness_fail "checkpoint left after a failed backup: $(harness_virsh checkpoint-list "$DOM" --name)"
    harness_virsh domjobinfo "$DOM" | grep -qE 'Job type: +None' ||
        harness_fail "backup job still running after a failed backup: $(harness_virsh domjobinfo "$DOM")"
    umount "$out"
    harness_log "ok: disk full: $(head -n 1 "$T/full.out")"
}

# inc_in_background LOG [OPTION...] : starts an inc of $DOM into $OUT in the background (its
# pid in INC_PID, its output in LOG) and returns once vda's .partial file is there (or the run
# has ended, or after 60 s). The run is then mid-copy: the tests signal it there.
inc_in_background() {
    local log="$1" deadline partial="$OUT/vda.inc.virtnbdbackup.$CHECKPOINTS.data.partial"
    shift
    "$CAPTURE" -d "$DOM" -l inc -o "$OUT" "$@" >"$log" 2>&1 &
    INC_PID=$!
    deadline=$((SECONDS + 60))
    until [[ -e "$partial" ]] || ((SECONDS > deadline)); do
        kill -0 "$INC_PID" 2>/dev/null || break
    done
}

# check_killed_run [OPTION...] : an inc (with OPTIONs, -f SOCKET say) killed (SIGKILL) while it
# copies leaves its job running, its checkpoint and a .partial file; a run while another holds
# the directory fails at once; the next inc (same OPTIONs) cleans up.
check_killed_run() {
    local partial="$OUT/vda.inc.virtnbdbackup.$CHECKPOINTS.data.partial" pid workdir
    rnd vda $((8 * M + 512)) $((48 * M)) # enough to copy for a while
    expect_fail "run while the directory is locked" "in use by another" \
        flock "$OUT" "$CAPTURE" -d "$DOM" -l inc -o "$OUT"
    inc_in_background "$T/killed.out" "$@"
    pid=$INC_PID
    workdir="$(grep -lx "$pid" /var/tmp/backupfs-capture.*/owner.pid 2>/dev/null || true)"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [[ -n "$workdir" ]] || harness_fail "no work directory of the killed run (pid $pid) in /var/tmp"
    workdir="$(dirname "$workdir")"
    [[ -e "$partial" && ! -e "${partial%.partial}" ]] ||
        harness_fail "could not kill the inc mid-copy: $(ls "$OUT"; cat "$T/killed.out")"
    harness_virsh checkpoint-info "$DOM" "virtnbdbackup.$CHECKPOINTS" >/dev/null ||
        harness_fail "the killed run left no checkpoint virtnbdbackup.$CHECKPOINTS"
    ! harness_virsh domjobinfo "$DOM" | grep -qE 'Job type: +None' ||
        harness_fail "the killed run left no backup job"
    harness_log "ok: inc killed mid-copy (job, checkpoint and .partial left behind) $*"
    capture inc "$@"
    grep -qF "aborted the backup job of an interrupted run" "$T/capture.$((${#POINTS[@]} - 1)).out" ||
        harness_fail "the next run did not report the stale job"
    [[ ! -e "$workdir" ]] || harness_fail "the killed run's work directory $workdir is still there"
}

# start_variant NAME NDISKS : a fresh domain and output directory, inc refused without a chain.
start_variant() {
    DOM="bfsit-cap-$$-$1"
    OUT="$T/$1"
    POINTS=()
    CHECKPOINTS=0
    DISKS=(vda)
    (($2 == 1)) || DISKS=(vda vdb)
    harness_create_domain "$DOM" 64 "$2"
    expect_fail "$1: inc without a full" "run a full backup" "$CAPTURE" -d "$DOM" -l inc -o "$OUT"
}

# first_points [OPTION...] : the writes and backups both variants share: full, inc, inc.
first_points() {
    rnd vda 0 "$M"
    rnd vda $((M + 512)) $((300 * K))
    pat vda 0x5a $((5 * M + 1536)) $((130 * K + 512))
    rnd vda $((40 * M - 512)) $((2 * M))
    [[ "${1:-}" == -z ]] || check_disk_full
    capture full "$@"

    rnd vda $((256 * K + 512)) $((70 * K))
    harness_guest_trim "$DOM" vda $((40 * M)) $((M + 512 * 3)) # held random data
    pat vda 0xa5 $((20 * M + 4608)) $((64 * K))
    capture inc "$@"

    harness_guest_trim "$DOM" vda $((M + 512)) $((100 * K)) # held data at point 0
    rnd vda $((63 * M)) "$M"
    pat vda 0x11 $((5 * M + 2048)) 512
    capture inc "$@"
}

