# Shared by the backupfs-restore integration tests: run a restore and check the images it
# writes (format, size, content, thinness), grow a guest disk with its reference, and read
# a pattern back inside a running guest.
# Needs harness.sh sourced and RESTORE (the backupfs-restore binary), T (scratch) set.
# shellcheck shell=bash disable=SC2034 # RESTORED_*: results for the caller

# restore_run OUTDIR [OPTION...] : backupfs-restore -i ... -o OUTDIR OPTION...; must exit 0
# and print one summary line "restored POINT: N image(s) into OUTDIR, ...". Sets
# RESTORED_POINT, RESTORED_IMAGES (count) and RESTORED_DATA (data bytes read) from it; the
# output is in $T/restore.out, $T/restore.err.
restore_run() {
    local outdir="$1" rc=0 line re
    shift
    "$RESTORE" -n -o "$outdir" "$@" >"$T/restore.out" 2>"$T/restore.err" || rc=$?
    ((rc == 0)) || harness_fail "backupfs-restore -o $outdir $*: exit $rc: $(cat "$T/restore.out" "$T/restore.err")"
    [[ "$(wc -l <"$T/restore.out")" == 1 ]] ||
        harness_fail "backupfs-restore $*: want one summary line on stdout, got: $(cat "$T/restore.out")"
    line="$(cat "$T/restore.out")"
    re="^restored ([^ :]+): ([0-9]+) image\(s\) into (.+), ([0-9]+) bytes of data, ([0-9]+) written "
    [[ "$line" =~ $re ]] || harness_fail "backupfs-restore $*: summary line not as documented: $line"
    [[ "${BASH_REMATCH[3]}" == "$outdir" ]] ||
        harness_fail "backupfs-restore $*: summary names ${BASH_REMATCH[3]}, want $outdir: $line"
    RESTORED_POINT="${BASH_REMATCH[1]}"
    RESTORED_IMAGES="${BASH_REMATCH[2]}"
    RESTORED_DATA="${BASH_REMATCH[4]}"
}

# restore_expect_rc RC WHAT PATTERN CMD... : CMD must exit RC and print PATTERN (stdout or
# stderr).
restore_expect_rc() {
    local want="$1" what="$2" pattern="$3" rc=0
    shift 3
    "$@" >"$T/fail.out" 2>&1 || rc=$?
    ((rc == want)) || harness_fail "$what: exit $rc, want $want: $(cat "$T/fail.out")"
    grep -qF -- "$pattern" "$T/fail.out" ||
        harness_fail "$what: output lacks '$pattern': $(cat "$T/fail.out")"
    harness_log "ok: $what: exit $rc: $(grep -F -m 1 -- "$pattern" "$T/fail.out")"
}

# restore_info_field IMAGE FORMAT KEY : a top-level member of `qemu-img info --output=json`.
restore_info_field() {
    qemu-img info -f "$2" --output=json "$1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$3" ||
        harness_fail "qemu-img info of $1 failed"
}

# restore_check_same WHAT IMAGE FORMAT REF : IMAGE (qcow2 or raw) holds exactly the bytes of
# the raw file REF: same virtual size and content (a trimmed range reads as zeros in both).
restore_check_same() {
    local what="$1" img="$2" fmt="$3" ref="$4" size out rc=0
    [[ -f "$img" ]] || harness_fail "$what: no image $img (output: $(ls "$(dirname "$img")"))"
    size="$(restore_info_field "$img" "$fmt" virtual-size)"
    [[ "$size" == "$(stat -c %s "$ref")" ]] ||
        harness_fail "$what: $img has virtual size $size, want $(stat -c %s "$ref")"
    # Not -s (strict): allocation may differ (thin image, sparse reference), content may not.
    out="$(qemu-img compare -f "$fmt" -F raw "$img" "$ref" 2>&1)" || rc=$?
    ((rc == 0)) || harness_fail "$what: qemu-img compare $img $ref: exit $rc (1 = differ): $out"
}

# restore_check_qcow2 WHAT IMAGE REF : a consistent qcow2 image (qemu-img check) with REF's size
# and bytes, and thin: every cluster it allocates holds a non-zero byte of REF (no cluster of
# zeros, written or never written, is allocated). Adds the allocated bytes to RESTORED_ALLOCATED.
RESTORED_ALLOCATED=0
restore_check_qcow2() {
    local what="$1" img="$2" ref="$3" fmt alloc
    fmt="$(qemu-img info --output=json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')" ||
        harness_fail "$what: qemu-img info $img failed"
    [[ "$fmt" == qcow2 ]] || harness_fail "$what: $img is $fmt, want qcow2"
    restore_check_same "$what" "$img" qcow2 "$ref"
    # 0: no corruption, no leaked clusters (2 and 3 would be those).
    qemu-img check -q -f qcow2 "$img" >"$T/check.out" 2>&1 ||
        harness_fail "$what: qemu-img check $img: exit $?: $(cat "$T/check.out")"
    qemu-img map -f qcow2 --output=json "$img" >"$T/map.json" || harness_fail "$what: qemu-img map $img failed"
    alloc="$(python3 - "$T/map.json" "$ref" "$(restore_info_field "$img" qcow2 cluster-size)" 2>&1 <<'EOF'
import json, sys
extents = json.load(open(sys.argv[1]))
ref = open(sys.argv[2], "rb").read()
cluster = int(sys.argv[3])
allocated = 0
for e in extents:
    if not e["data"]:
        continue
    allocated += e["length"]
    for c in range(e["start"] // cluster * cluster, e["start"] + e["length"], cluster):
        if not any(ref[c:c + cluster]):
            sys.exit(f"cluster at {c} is allocated ({e}) but reads as zeros in the reference")
print(allocated)
EOF
    )" || harness_fail "$what: $img is not thin: $alloc"
    RESTORED_ALLOCATED=$((RESTORED_ALLOCATED + alloc))
    harness_log "ok: $what: qcow2, $(stat -c %s "$ref") bytes as the reference, $((alloc / 1024)) KiB allocated"
}

# restore_grow_disk DOM DISK BYTES : virsh blockresize of a running domain's disk, and its
# reference grown to match (the new range reads as zeros).
restore_grow_disk() {
    local dom="$1" disk="$2" bytes="$3" img
    img="$HARNESS_DIR/images/$dom.$disk.qcow2"
    harness_virsh blockresize "$dom" "$disk" "${bytes}B" >/dev/null ||
        harness_fail "virsh blockresize $dom $disk ${bytes}B failed"
    [[ "$(qemu-img info -U --output=json "$img" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" == "$bytes" ]] ||
        harness_fail "$img is not $bytes bytes after blockresize"
    truncate -s "$bytes" "$HARNESS_DIR/ref/$dom.$disk.raw"
    harness_log "$dom/$disk grown to $((bytes / 1024 / 1024)) MiB"
}

# _restore_log_has LOG POS LINE : LOG holds LINE after byte POS.
_restore_log_has() { tail -c "+$(($2 + 1))" "$1" | grep -qxF -- "$3"; }

# restore_guest_read DOM DISK OFFSET LENGTH 0xNN ok|mismatch : qemu-io "read -P" in the running
# guest. qemu-io prints "read LENGTH/LENGTH bytes at offset OFFSET" after every read, preceded
# by "Pattern verification failed at offset ..." when the bytes are not the pattern; its output
# goes to the domain's log (HMP returns nothing), which is polled for the read line.
restore_guest_read() {
    local dom="$1" disk="$2" off="$3" len="$4" pat="$5" want="$6" log pos new
    local done_line="read $4/$4 bytes at offset $3"
    _harness_hmp_qemu_io "$dom" "$disk" "read -P $pat $off $len"
    log="$HARNESS_QEMU_IO_LOG"
    pos="$HARNESS_QEMU_IO_POS"
    harness_wait_for 30 "'$done_line' in $log" _restore_log_has "$log" "$pos" "$done_line" ||
        harness_fail "qemu-io read -P $pat $off $len on $dom/$disk: no '$done_line' in $log: $(tail -c "+$((pos + 1))" "$log")"
    new="$(tail -c "+$((pos + 1))" "$log")"
    case "$want" in
    ok)
        ! grep -qF "Pattern verification failed" <<<"$new" ||
            harness_fail "$dom/$disk does not read back $pat at $off+$len: $new"
        ;;
    mismatch)
        grep -qxF "Pattern verification failed at offset $off, $len bytes" <<<"$new" ||
            harness_fail "$dom/$disk: read -P $pat at $off+$len should mismatch: $new"
        ;;
    *) harness_fail "restore_guest_read: want ok or mismatch, got '$want'" ;;
    esac
}
