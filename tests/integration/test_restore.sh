#!/bin/bash
# test_restore.sh BUILD_DIR
#
# backupfs-restore -a restore against real savesets of running TCG domains with two qcow2
# disks (vda 64 MiB, vdb 32 MiB grown to 48 MiB mid-chain), guest writes (random data,
# patterns, zeros written as data, trims of ranges that held data) mirrored into raw
# references:
#   capture: backupfs-capture full, inc, inc (vdb grown before it), diff; once plain, once -z.
#            Every restore point (each checkpoint and the diff's id) restores with exit 0 and
#            the documented summary line into qcow2 images named after the disks' sources,
#            each of that point's virtual size, equal to its reference, and thin (no cluster
#            allocated that reads as zeros); vmconfig.xml is the point's saved domain XML;
#            no -u restores the newest point; an unknown point fails listing the points.
#   peer:    savesets written by virtnbdbackup 1.9.15 (full, inc, inc, with trims; plain with
#            vdb grown mid-chain, and -z): ours restores every point exactly, and so does
#            virtnbdrestore --until (1.9.15 stores a trimmed dirty range as a data frame of
#            zeros), with the same images as ours, except after the growth, which
#            virtnbdrestore 1.9.15 cannot restore.
#   define:  -c -D -N: vmconfig.xml has the new name, no uuid and the restored images as disk
#            sources; the defined domain starts and its disks read back (qemu-io read -P in the
#            guest) data and trims of that point.
#   options: -d vdb -c (one image, one disk in the XML); --format raw (sparse, cmp-identical,
#            raw in the adjusted XML, a relative -o); --compress (compressed clusters); -A
#            (fully allocated); -s FULL,INC into OUTDIR/vda, and -s starting with an inc refused.
#   damage:  a byte flipped in a data frame of each capture saveset (checked through the
#            sidecar index, or lz4's checksums): exit 1 naming the file and offset, no image
#            of that disk, no .partial, no domain XML.
# Failure cases in depth (signals, ENOSPC, existing files, --device, ...) are in
# test_restore_faults.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"
# shellcheck source=lib/restore.sh
source "$HERE/lib/restore.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
BUILD_DIR="$(realpath "$1")"
CAPTURE="$BUILD_DIR/tools/backupfs-capture"
RESTORE="$BUILD_DIR/tools/backupfs-restore"
for b in "$CAPTURE" "$RESTORE"; do
    [[ -x "$b" ]] || harness_fail "$b not built"
done
harness_init
harness_require cmp du python3 qemu-img qemu-nbd virtnbdbackup virtnbdrestore
harness_start_libvirtd
T="$HARNESS_DIR"
K=1024
M=$((1024 * 1024))
mkdir -m 0777 "$T/scratch"

# new_domain NAME : a running domain with vda 64 MiB and vdb 32 MiB, a fresh saveset OUT.
new_domain() {
    DOM="bfsit-rst-$$-$1"
    OUT="$T/$1"
    POINTS=()
    CHECKPOINTS=0
    DISKS=(vda vdb)
    harness_create_domain "$DOM" 32 2
    restore_grow_disk "$DOM" vda $((64 * M))
}

# image OUTDIR DISK [FORMAT] : where a restore puts DISK: the basename of its source in the
# domain XML (DOM.DISK.qcow2), with the extension of an explicit --format FORMAT.
image() { printf '%s/%s.%s.%s' "$1" "$DOM" "$2" "${3:-qcow2}"; }

# Writes between the backups of every chain; the backups are taken by "$@" LEVEL.
# vda 48 MiB .. 62 MiB is never written: it must stay unallocated in every restore.
chain_writes() {
    rnd vda 0 "$M"
    rnd vda $((M + 512)) $((300 * K))
    pat vda 0x5a $((5 * M + 1536)) $((130 * K + 512))
    pat vda 0x00 $((22 * M)) $((128 * K)) # zeros written as data
    rnd vda $((40 * M - 512)) $((2 * M))
    rnd vdb $((512 * K)) $((2 * M + 512))
    pat vdb 0x3c $((20 * M)) $((64 * K))
    "$@" full

    rnd vda $((256 * K + 512)) $((70 * K))
    harness_guest_trim "$DOM" vda $((40 * M)) $((M + 1536)) # held random data
    pat vda 0xa5 $((20 * M + 4608)) $((64 * K))
    rnd vdb $((M + 1536)) $((70 * K))
    "$@" inc

    [[ "${GROW:-1}" == 0 ]] || restore_grow_disk "$DOM" vdb $((48 * M))
    harness_guest_trim "$DOM" vda $((M + 512)) $((100 * K)) # held data at point 0
    rnd vda $((63 * M)) "$M"
    pat vda 0x11 $((5 * M + 2048)) 512
    [[ "${GROW:-1}" == 0 ]] || rnd vdb $((40 * M + 512)) "$M" # in the grown range
    harness_guest_trim "$DOM" vdb $((512 * K)) $((256 * K))
    "$@" inc
}

diff_writes() {
    pat vda 0x77 $((30 * M + 512)) $((3 * K))
    harness_guest_trim "$DOM" vda 0 $((512 * K))
    rnd vdb $((10 * M)) "$M"
}

# check_point OUTDIR POINT [UNTIL] : restore -u UNTIL (default POINT; "" for no -u: the newest)
# of OUT and check both images against POINT's references.
check_point() {
    local outdir="$1" p="$2" until="${3-$2}" d
    local -a opt=()
    [[ -z "$until" ]] || opt=(-u "$until")
    RESTORED_ALLOCATED=0
    restore_run "$outdir" -i "$OUT" "${opt[@]}"
    [[ "$RESTORED_POINT" == "$p" && "$RESTORED_IMAGES" == 2 ]] ||
        harness_fail "$OUT -u '$until': restored $RESTORED_POINT ($RESTORED_IMAGES images), want $p (2 images)"
    for d in "${DISKS[@]}"; do
        restore_check_qcow2 "$(basename "$OUT") $p $d" "$(image "$outdir" "$d")" "$OUT.ref/$p.$d.raw"
    done
    ((RESTORED_ALLOCATED <= RESTORED_DATA + 2 * 64 * K)) ||
        harness_fail "$OUT $p: $RESTORED_ALLOCATED bytes allocated, more than the $RESTORED_DATA bytes of data"
    harness_cmp "$(basename "$OUT") $p: vmconfig.xml as saved" "$OUT/vmconfig.$p.xml" "$outdir/vmconfig.xml"
    [[ "$(find "$outdir" -mindepth 1 | wc -l)" == 3 ]] ||
        harness_fail "$outdir: want two images and vmconfig.xml, got: $(ls -a "$outdir")"
}

# Every restore point of OUT, the newest once more without -u; an unknown point fails.
check_all_points() {
    local p name
    name="$(basename "$OUT")"
    for p in "${POINTS[@]}"; do
        check_point "$T/r.$name.$p" "$p"
        rm -rf "$T/r.$name.$p"
    done
    check_point "$T/r.$name.latest" "${POINTS[-1]}" ""
    rm -rf "$T/r.$name.latest"
    restore_expect_rc 1 "$name: unknown restore point" \
        "no restore point 'virtnbdbackup.9'; the saveset has: ${POINTS[*]}" \
        "$RESTORE" -n -i "$OUT" -o "$T/none" -u virtnbdbackup.9
    [[ ! -e "$T/none" ]] || harness_fail "a refused restore created its output directory"
}

# --- backupfs-capture savesets -------------------------------------------------------------

run_capture() {
    local start=$SECONDS
    new_domain "$1"
    shift
    chain_writes capture_as "$@"
    diff_writes
    capture diff "$@"
    # An inc after the diff: its checkpoint (virtnbdbackup.3) is the one the diff's metadata
    # names too, with the same parent.
    rnd vda $((33 * M)) $((256 * K))
    harness_guest_trim "$DOM" vdb $((10 * M + 64 * K)) $((128 * K))
    capture inc "$@"
    check_all_points
    check_corrupt "$(basename "$OUT")" vda.full.data
    harness_log "$(basename "$OUT"): every restore point exact ($((SECONDS - start))s)"
}

# check_corrupt NAME FILE : one byte of a data frame of FILE (in a copy of OUT) flipped: the
# restore of point 0 fails naming FILE and the byte offset, and leaves no image of that disk, no
# .partial and no domain XML.
check_corrupt() {
    local bad="$T/$1.bad" o="$T/r.$1.bad"
    cp -a "$OUT" "$bad"
    harness_corrupt_frame "$bad/$2" payload
    restore_expect_rc 1 "$1: restore through a flipped byte of $2" "ERROR disk ${2%%.*}: $bad/$2: offset " \
        "$RESTORE" -n -i "$bad" -o "$o" -u virtnbdbackup.0
    [[ -z "$(find "$o" -name "*.${2%%.*}.qcow2*" -o -name '*.partial' -o -name vmconfig.xml)" ]] ||
        harness_fail "$1: a failed restore left: $(ls "$o")"
    rm -rf "$bad" "$o"
}

capture_as() { # capture_as [OPTION...] LEVEL : chain_writes' backup command
    local level="${*: -1}"
    capture "$level" "${@:1:$#-1}"
}

# --- virtnbdbackup 1.9.15 savesets ---------------------------------------------------------

vnb_backup() { # vnb_backup [OPTION...] LEVEL
    local level="${*: -1}" log="$T/vnb.${#POINTS[@]}.out"
    timeout 300 virtnbdbackup -d "$DOM" -l "$level" -o "$OUT" -n "${@:1:$#-1}" \
        -f "$T/nbd.sock" -S "$T/scratch" >"$log" 2>&1 ||
        harness_fail "virtnbdbackup -l $level ${*:1:$#-1} failed: $(tail -n 30 "$log")"
    record_point "$level"
}

# check_peer_points PEER_POINT... : every point of OUT restored by ours equals its reference;
# the PEER_POINTs restored by virtnbdrestore --until too, and equal ours.
# (Not the domain XML: virtnbdrestore 1.9.15 copies the newest vmconfig.*.xml of the saveset,
# whatever --until says, under its own name; ours writes the point's as vmconfig.xml.)
check_peer_points() {
    local p d name peer
    name="$(basename "$OUT")"
    for p in "${POINTS[@]}"; do
        check_point "$T/r.$name.$p" "$p"
        [[ " $* " == *" $p "* ]] || {
            rm -rf "$T/r.$name.$p"
            continue
        }
        peer="$T/peer.$name.$p"
        harness_virtnbdrestore -a restore -i "$OUT" -o "$peer" --until "$p" -n >/dev/null
        for d in "${DISKS[@]}"; do
            harness_wait_image_free "$(image "$peer" "$d")"
            restore_check_same "virtnbdrestore $name $p $d" "$(image "$peer" "$d")" qcow2 "$OUT.ref/$p.$d.raw"
            qemu-img compare -q -f qcow2 -F qcow2 "$(image "$T/r.$name.$p" "$d")" "$(image "$peer" "$d")" ||
                harness_fail "$name $p $d: ours and virtnbdrestore's images differ"
        done
        harness_log "ok: $name $p: virtnbdrestore restores the same images"
        rm -rf "$T/r.$name.$p" "$peer"
    done
}

run_peer() {
    local start=$SECONDS
    new_domain peer
    chain_writes vnb_backup
    # Not virtnbdrestore at point 2: 1.9.15 creates each image with the size of the full
    # backup, so the inc of the grown vdb fails ("nbd_pwrite: request out of bounds").
    check_peer_points virtnbdbackup.0 virtnbdbackup.1
    harness_log "$(basename "$OUT"): ours exact, virtnbdrestore agrees ($((SECONDS - start))s)"
    # The same domain (vdb now 48 MiB throughout), a new chain with -z.
    start=$SECONDS
    OUT="$T/peer-lz4"
    POINTS=()
    CHECKPOINTS=0
    GROW=0 chain_writes vnb_backup -z
    check_peer_points "${POINTS[@]}"
    harness_log "$(basename "$OUT"): ours exact, virtnbdrestore agrees ($((SECONDS - start))s)"
}

# --- -c -D -N ------------------------------------------------------------------------------

# check_config XML NAME FORMAT OUTDIR DISK... : the adjusted domain XML names the domain NAME,
# has no uuid, and has exactly the DISKs, each a file disk of FORMAT at its image in OUTDIR.
check_config() {
    local xml="$1" name="$2" fmt="$3" outdir="$4" d
    local -a pairs=()
    shift 4
    for d in "$@"; do pairs+=("$d=$(image "$outdir" "$d" "$fmt")"); done
    python3 - "$xml" "$name" "$fmt" "${pairs[@]}" <<'EOF' || harness_fail "adjusted $xml: $(cat "$xml")"
import sys, xml.etree.ElementTree as ET
path, name, fmt = sys.argv[1:4]
want = dict(p.split("=", 1) for p in sys.argv[4:])
root = ET.parse(path).getroot()
assert root.findtext("name") == name, f"name {root.findtext('name')!r}, want {name!r}"
assert root.find("uuid") is None, "a <uuid> is left"
disks = {d.find("target").get("dev"): d for d in root.iter("disk")}
assert sorted(disks) == sorted(want), f"disks {sorted(disks)}, want {sorted(want)}"
for dev, img in want.items():
    d = disks[dev]
    src, drv = d.find("source").get("file"), d.find("driver").get("type")
    assert d.get("type") == "file", f"{dev}: disk type {d.get('type')!r}"
    assert src == img, f"{dev}: source {src!r}, want {img!r}"
    assert drv == fmt, f"{dev}: driver type {drv!r}, want {fmt!r}"
EOF
    harness_log "ok: $(basename "$xml"): name $name, no uuid, disks $* at the $fmt images in $outdir"
}

run_define() {
    local new="restored_$DOM" out="$T/defined" p=virtnbdbackup.1 d state
    HARNESS_DOMAINS+=("$new") # cleanup destroys and undefines it
    restore_run "$out" -i "$OUT" -u "$p" -c -D -N "$new"
    [[ "$(cat "$T/restore.out")" == *", defined as domain $new" ]] ||
        harness_fail "-D: the summary does not name the domain: $(cat "$T/restore.out")"
    check_config "$out/vmconfig.xml" "$new" qcow2 "$out" vda vdb
    for d in "${DISKS[@]}"; do
        restore_check_qcow2 "-D $p $d" "$(image "$out" "$d")" "$OUT.ref/$p.$d.raw"
    done
    [[ "$(harness_virsh domuuid "$new")" != "$(harness_virsh domuuid "$DOM")" ]] ||
        harness_fail "$new has the uuid of $DOM"
    harness_virsh start "$new" >/dev/null || harness_fail "virsh start $new failed"
    state="$(harness_virsh domstate "$new")"
    [[ "$state" == running* ]] || harness_fail "$new is '$state' after start"
    restore_guest_read "$new" vda $((5 * M + 1536)) $((130 * K + 512)) 0x5a ok
    restore_guest_read "$new" vda $((20 * M + 4608)) $((64 * K)) 0xa5 ok
    restore_guest_read "$new" vda $((40 * M)) $((M + 1536)) 0x00 ok # trimmed before the backup
    restore_guest_read "$new" vdb $((20 * M)) $((64 * K)) 0x3c ok
    restore_guest_read "$new" vda $((22 * M)) $((128 * K)) 0x00 ok
    restore_guest_read "$new" vda $((5 * M + 1536)) 4096 0x5b mismatch # the check can fail
    harness_log "ok: -D: $new runs and reads back point $p's data"
    harness_virsh destroy "$new" >/dev/null # undefined by the cleanup
}

# --- options ---------------------------------------------------------------------------------

run_options() {
    local o p=virtnbdbackup.2 d img size used clusters

    o="$T/only-vdb"
    restore_run "$o" -i "$OUT" -u "$p" -d vdb -c
    ((RESTORED_IMAGES == 1)) || harness_fail "-d vdb: $RESTORED_IMAGES images restored"
    restore_check_qcow2 "-d vdb $p" "$(image "$o" vdb)" "$OUT.ref/$p.vdb.raw"
    [[ "$(ls "$o")" == "$(printf '%s\n' "$DOM.vdb.qcow2" vmconfig.xml)" ]] ||
        harness_fail "-d vdb wrote: $(ls "$o")"
    [[ "$(stat -c %a "$(image "$o" vdb)")" == 600 ]] ||
        harness_fail "qcow2 image of mode $(stat -c %a "$(image "$o" vdb)"), want 600"
    check_config "$o/vmconfig.xml" "restore_$DOM" qcow2 "$o" vdb

    o="$T/raw" # given as a relative -o: the adjusted XML still names absolute paths
    cd "$T"
    restore_run raw -i "$OUT" -u "$p" --format raw -c
    cd - >/dev/null
    for d in "${DISKS[@]}"; do
        img="$(image "$o" "$d" raw)" # the .qcow2 of the source's name becomes .raw
        harness_cmp "--format raw $p $d" "$OUT.ref/$p.$d.raw" "$img"
        size="$(stat -c %s "$img")"
        used="$(du -B1 "$img" | cut -f1)"
        ((used < size / 2)) || harness_fail "--format raw: $img is not sparse: $used of $size bytes used"
        [[ "$(stat -c %a "$img")" == 640 ]] || harness_fail "sparse raw image of mode $(stat -c %a "$img"), want 640"
    done
    [[ "$(find "$o" -mindepth 1 | wc -l)" == 3 ]] || harness_fail "--format raw wrote: $(ls "$o")"
    check_config "$o/vmconfig.xml" "restore_$DOM" raw "$o" vda vdb

    o="$T/compressed"
    p=virtnbdbackup.1
    restore_run "$o" -i "$OUT" -u "$p" --compress
    for d in "${DISKS[@]}"; do
        restore_check_qcow2 "--compress $p $d" "$(image "$o" "$d")" "$OUT.ref/$p.$d.raw"
    done
    clusters="$(qemu-img check --output=json "$(image "$o" vda)" |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("compressed-clusters", 0))')"
    # The 0x5a pattern alone fills two whole 64 KiB clusters.
    ((clusters >= 2)) || harness_fail "--compress: $(image "$o" vda) has $clusters compressed clusters"
    harness_log "ok: --compress: $clusters compressed clusters in vda"

    o="$T/preallocated"
    restore_run "$o" -i "$OUT" -u "$p" -A
    for d in "${DISKS[@]}"; do
        restore_check_same "-A $p $d" "$(image "$o" "$d")" qcow2 "$OUT.ref/$p.$d.raw"
        size="$(stat -c %s "$OUT.ref/$p.$d.raw")"
        used="$(du -B1 "$(image "$o" "$d")" | cut -f1)"
        ((used >= size)) || harness_fail "-A: $(image "$o" "$d") uses $used bytes, less than its $size"
    done
    harness_log "ok: -A: fully allocated images"

    o="$T/sequence"
    restore_run "$o" -i "$OUT" -s vda.full.data,vda.inc.virtnbdbackup.1.data
    [[ "$RESTORED_POINT" == virtnbdbackup.1 && "$(ls "$o")" == vda ]] ||
        harness_fail "-s: restored $RESTORED_POINT into: $(ls "$o")"
    restore_check_qcow2 "-s full,inc.1 vda" "$o/vda" "$OUT.ref/virtnbdbackup.1.vda.raw"
    restore_expect_rc 1 "-s starting with an inc" "a sequence must start with a full or copy backup" \
        "$RESTORE" -n -i "$OUT" -o "$T/sequence2" -s vda.inc.virtnbdbackup.1.data

    # A sequence ending in the diff restores the diff's point, which is named by its id: its
    # metadata's checkpointName (virtnbdbackup.3) is that of the inc taken after it.
    p="${POINTS[3]}"
    o="$T/sequence-diff"
    restore_run "$o" -i "$OUT" -s "vda.full.data,vda.inc.virtnbdbackup.1.data,vda.inc.virtnbdbackup.2.data,vda.diff.$p.data"
    restore_check_qcow2 "-s full,inc.1,inc.2,diff vda" "$o/vda" "$OUT.ref/$p.vda.raw"
    [[ "$RESTORED_POINT" == "$p" ]] ||
        LATE_FAILURES+=("-s ...,vda.diff.$p.data: the summary says 'restored $RESTORED_POINT', want the diff's point $p: $(cat "$T/restore.out")")
}

# Failures that leave the state of the test sound: reported at the end, after the other checks.
LATE_FAILURES=()

start=$SECONDS
run_capture plain
run_define
run_options
harness_virsh destroy "$DOM" >/dev/null # its work is done: free the CPU for the others
run_capture lz4 -z
harness_virsh destroy "$DOM" >/dev/null
run_peer
((${#LATE_FAILURES[@]} == 0)) || harness_fail "$(printf '%s\n' "${LATE_FAILURES[@]}")"
echo "PASS: backupfs-restore restores every point of backupfs-capture and virtnbdbackup savesets exactly ($((SECONDS - start))s)"
