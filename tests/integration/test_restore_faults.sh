#!/usr/bin/env bash
# backupfs-restore -a restore when things go wrong: broken chains, corrupt chunks, existing
# files, a taken domain name, a full filesystem, names that would escape the output directory,
# signals, SIGKILL leftovers, disks added mid-chain or unchanged in an incremental, usage errors,
# unknown points, block devices.
#
# What every failing case asserts: the exit code (1, or 2 for usage errors), an ERROR line
# naming the file / offset / point / disk it is about, and that nothing looking complete is
# left in the output directory (no final-named image; only what the case allows).
#
# Savesets are written with stream-tool from raw references (no libvirt); libvirtd is used
# only for -D (case 4). Real qemu-img, qemu-nbd, tmpfs and loop devices; nothing mocked.
#
# Usage: test_restore_faults.sh BUILD_DIR   (root; 0 pass, 1 fail, 77 skip)
# Each case runs on its own: one failing case does not hide the others' results.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/restore_faults.sh
source "$HERE/lib/restore_faults.sh"

BUILD="$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)"
harness_init
rf_init "$BUILD"

MiB=$((1 << 20))
DOM="bfsrf$$" # domain name in the savesets' XML: unique, for -D (case 4)
V="virtnbdbackup"

# --- shared savesets -----------------------------------------------------------------------

# STD: disk vda, 32 MiB of random data in the full backup, three incrementals; plain and lz4.
STD="$HARNESS_DIR/std"
make_std() {
    rf_workspace "$STD" lz4
    rf_disk "$STD" vda $((32 * MiB))
    rf_put "$STD" vda 0 $((32 * MiB)) random
    rf_backup "$STD" vda full $V.0 "" "data:0:$((32 * MiB))"
    rf_put "$STD" vda $((1 * MiB)) $((2 * MiB)) random
    rf_put "$STD" vda $((20 * MiB)) $((1 * MiB)) random
    rf_backup "$STD" vda inc $V.1 $V.0 "data:$((1 * MiB)):$((2 * MiB)),data:$((20 * MiB)):$MiB"
    rf_put "$STD" vda $((4 * MiB)) $((4 * MiB)) random
    rf_put "$STD" vda $((30 * MiB)) $((512 << 10)) random
    rf_backup "$STD" vda inc $V.2 $V.1 "data:$((4 * MiB)):$((4 * MiB)),data:$((30 * MiB)):$((512 << 10))"
    rf_put "$STD" vda 0 $MiB random
    rf_put "$STD" vda $((16 * MiB)) $((2 * MiB)) random
    rf_backup "$STD" vda inc $V.3 $V.2 "data:0:$MiB,data:$((16 * MiB)):$((2 * MiB))"
    rf_vmconfig "$STD" $V.0 "$DOM" vda
    rf_cpt "$STD" "$DOM" $V.0 $V.1 $V.2 $V.3
}
IMG="$DOM.vda.qcow2" # what STD's vda is restored as

# BIG: disk vda of 1 GiB with 512 MiB of random data, for runs that must still be copying
# when a signal comes (the copy runs at several hundred MiB/s).
BIG="$HARNESS_DIR/big"
make_big() {
    rf_workspace "$BIG"
    rf_disk "$BIG" vda $((1024 * MiB))
    rf_put "$BIG" vda $((128 * MiB)) $((256 * MiB)) random
    rf_put "$BIG" vda $((512 * MiB)) $((256 * MiB)) random
    rf_backup "$BIG" vda full $V.0 "" "data:$((128 * MiB)):$((256 * MiB)),data:$((512 * MiB)):$((256 * MiB))"
    rf_vmconfig "$BIG" $V.0 "$DOM" vda
}

# --- 1. broken chains ------------------------------------------------------------------------

# A copy of STD without vda's virtnbdbackup.1 (the parent of .2).
gap_saveset() {
    cp -a "$STD/plain" "$RF_DIR/ss"
    rm -- "$RF_DIR/ss/vda.inc.$V.1.data" "$RF_DIR/ss/vda.inc.$V.1.data.idx" \
        "$RF_DIR/ss/vda.inc.$V.1.data.chksum"
}

case_gap_points() {
    gap_saveset
    local p
    for p in $V.2 $V.3; do
        rf_run "u-$p" -i "$RF_DIR/ss" -o "$RF_DIR/out-$p" -u "$p"
        # The refusal names the point asked for and the checkpoint whose data file is missing.
        rf_expect_fail 1 "'$p'" "checkpoint '$V.1'"
        rf_only_files "$RF_DIR/out-$p"
    done
    # The point before the gap still restores, byte for byte.
    rf_run u-0 -i "$RF_DIR/ss" -o "$RF_DIR/out-0" -u $V.0
    rf_expect_rc 0
    rf_only_files "$RF_DIR/out-0" "$IMG" vmconfig.xml
    rf_same_image "$V.0 before the gap" "$RF_DIR/out-0/$IMG" qcow2 "$STD/ref/vda@$V.0.raw"
}

# Without -u ("the newest"), a saveset whose newest points are cut off by a gap must not quietly
# restore an older point with exit 0: ARCHITECTURE.md, "refuses a broken chain with a clear
# message". (virtnbdrestore would apply every data file there is.)
case_gap_default() {
    gap_saveset
    rf_run newest -i "$RF_DIR/ss" -o "$RF_DIR/out"
    rf_expect_fail 1 "checkpoint '$V.1'"
    rf_only_files "$RF_DIR/out"
}

# Two disks, the gap in vdb only: the point after it cannot be restored whole, so it must not
# be restored at all (not vda alone with exit 0).
case_gap_one_disk() {
    local ws="$RF_DIR/ws" d
    rf_workspace "$ws"
    for d in vda vdb; do
        rf_disk "$ws" $d $((4 * MiB))
        rf_put "$ws" $d 0 $((4 * MiB)) random
        rf_backup "$ws" $d full $V.0 "" "data:0:$((4 * MiB))"
        rf_put "$ws" $d $MiB $MiB random
        rf_backup "$ws" $d inc $V.1 $V.0 "data:$MiB:$MiB"
        rf_put "$ws" $d $((2 * MiB)) $MiB random
        rf_backup "$ws" $d inc $V.2 $V.1 "data:$((2 * MiB)):$MiB"
    done
    rf_vmconfig "$ws" $V.0 "$DOM" vda vdb
    rf_cpt "$ws" "$DOM" $V.0 $V.1 $V.2
    rm -- "$ws/plain/vdb.inc.$V.1.data"
    rf_run u-2 -i "$ws/plain" -o "$RF_DIR/out" -u $V.2
    rf_expect_fail 1 "vdb" "'$V.1'"
    rf_only_files "$RF_DIR/out"
}

# --- 2. corrupt chunks -------------------------------------------------------------------------

# corrupt_case plain|lz4 : one byte of a data frame's payload in vda's virtnbdbackup.2 flipped.
corrupt_case() {
    local kind="$1" file msg off named dstart dlen
    cp -a "$STD/$kind" "$RF_DIR/ss-$kind"
    file="$RF_DIR/ss-$kind/vda.inc.$V.2.data"
    msg="$(harness_corrupt_frame "$file" payload 2>&1)"
    [[ "$msg" =~ byte\ at\ offset\ ([0-9]+)\ changed ]] || harness_fail "harness_corrupt_frame said: $msg"
    off="${BASH_REMATCH[1]}"
    rf_run "$kind" -i "$RF_DIR/ss-$kind" -o "$RF_DIR/out-$kind"
    rf_expect_fail 1 "$file: offset " "vda"
    # The offset named is that of the chunk holding the flipped byte (its frame or payload).
    [[ "$(grep -F " ERROR " "$RF_ERR")" =~ $file:\ offset\ ([0-9]+)\ \(disk\ offset\ ([0-9]+),\ ([0-9]+)\ bytes\) ]] ||
        harness_fail "$kind: no 'FILE: offset N (disk offset D, L bytes)' in: $(grep -F " ERROR " "$RF_ERR" || true)"
    named="${BASH_REMATCH[1]}" dstart="${BASH_REMATCH[2]}" dlen="${BASH_REMATCH[3]}"
    ((named <= off && off < named + 40 + dlen + dlen / 64 + 1024)) ||
        harness_fail "$kind: the error names offset $named (a chunk of $dlen bytes at disk offset $dstart), the flipped byte is at $off"
    rf_only_files "$RF_DIR/out-$kind"
    rf_no_qemu_nbd "$RF_DIR/out-$kind"
}
case_corrupt_plain() { corrupt_case plain; }
case_corrupt_lz4() { corrupt_case lz4; }

# --- 3. existing files ---------------------------------------------------------------------------

case_existing() {
    local out="$RF_DIR/out" before
    mkdir -p "$out"
    echo "the admin's own image" >"$out/$IMG"
    touch -d '2020-01-01 00:00' "$out/$IMG"
    before="$(rf_tree_state "$out" none)"
    rf_run refused -i "$STD/plain" -o "$out"
    rf_expect_fail 1 "$out/$IMG" "--force"
    [[ "$(rf_tree_state "$out" none)" == "$before" ]] || harness_fail "$out changed although the restore was refused"
    rf_only_files "$out" "$IMG"

    # An existing vmconfig.xml alone is refused too, before any image is written.
    mkdir -p "$RF_DIR/out2"
    echo "<domain/>" >"$RF_DIR/out2/vmconfig.xml"
    rf_run refused-xml -i "$STD/plain" -o "$RF_DIR/out2"
    rf_expect_fail 1 "$RF_DIR/out2/vmconfig.xml" "--force"
    rf_only_files "$RF_DIR/out2" vmconfig.xml
    [[ "$(cat "$RF_DIR/out2/vmconfig.xml")" == "<domain/>" ]] || harness_fail "vmconfig.xml changed"

    rf_run force -i "$STD/plain" -o "$out" --force
    rf_expect_rc 0
    rf_only_files "$out" "$IMG" vmconfig.xml
    rf_same_image "--force replaces the existing image" "$out/$IMG" qcow2 "$STD/ref/vda@$V.3.raw"
}

# --- 4. -D with a taken domain name --------------------------------------------------------------

case_define_taken() {
    harness_start_libvirtd
    local taken xml before
    local -a nameopt
    for taken in "restore_$DOM" "$DOM-taken"; do
        harness_virsh dominfo "$taken" >/dev/null 2>&1 && harness_fail "domain $taken exists before the test"
        xml="$RF_DIR/$taken.xml"
        rf_vmconfig_file "$xml" "$taken"
        rf_on_cleanup domain "$taken"
        harness_virsh define "$xml" >/dev/null || harness_fail "virsh define $taken failed"
    done
    for taken in "restore_$DOM" "$DOM-taken"; do
        before="$(harness_virsh dumpxml "$taken")"
        nameopt=()
        [[ "$taken" == "restore_$DOM" ]] || nameopt=(-N "$taken")
        rf_run "D-$taken" -i "$STD/plain" -o "$RF_DIR/out-$taken" -D "${nameopt[@]}"
        rf_expect_fail 1 "$taken" "exists"
        rf_only_files "$RF_DIR/out-$taken"
        [[ "$(harness_virsh dumpxml "$taken")" == "$before" ]] || harness_fail "domain $taken changed"
    done
}

# --- 5. a full filesystem ------------------------------------------------------------------------

case_enospc() {
    local mnt="$RF_DIR/mnt" fmt used
    mkdir -p "$mnt"
    rf_on_cleanup umount "$mnt"
    mount -t tmpfs -o size=8m tmpfs "$mnt" || harness_fail "cannot mount a tmpfs on $mnt"
    local img
    for fmt in qcow2 raw; do
        # An explicit --format raw names the image after what it holds: .qcow2 becomes .raw.
        img="$IMG"
        [[ "$fmt" == raw ]] && img="${IMG%.qcow2}.raw"
        rf_run "$fmt" -i "$STD/plain" -o "$mnt/out-$fmt" --format "$fmt"
        rf_expect_fail 1 "No space left" "$mnt/out-$fmt/$img"
        rf_only_files "$mnt/out-$fmt"
        rf_no_qemu_nbd "$mnt/out-$fmt"
        # Nothing holds the removed partial file open: its space is free again.
        used="$(df --output=used -B1 "$mnt" | tail -n 1)"
        ((used < MiB)) || harness_fail "$mnt still has $used bytes in use after the failed restore"
    done
    umount "$mnt" || harness_fail "cannot unmount $mnt"
}

# --- 6. names that would escape the output directory ------------------------------------------

# A saveset of one small disk vda whose only domain XML is written by each sub-case.
names_saveset() {
    rf_workspace "$RF_DIR/ws"
    rf_disk "$RF_DIR/ws" vda $((4 * MiB))
    rf_put "$RF_DIR/ws" vda 0 $((4 * MiB)) random
    rf_backup "$RF_DIR/ws" vda full $V.0 "" "data:0:$((4 * MiB))"
}

# escape_run NAME VMCONFIG_DISK ARGS... : a restore into W/out with a fresh world W (an
# outside file and whatever the caller plants); fails if anything outside W/out changed.
escape_run() {
    local name="$1" disk="$2" before
    shift 2
    W="$RF_DIR/w-$name"
    mkdir -p "$W/ss" "$W/out"
    cp "$RF_DIR/ws/plain/"* "$W/ss/"
    rf_vmconfig_file "$W/ss/vmconfig.$V.0.xml" "$DOM" "$disk"
    echo "outside, never to be written" >"$W/outside"
    touch -d '2020-01-01 00:00' "$W/outside"
    [[ -z "${PLANT:-}" ]] || ln -s "$W/outside" "$W/out/$PLANT"
    before="$(rf_tree_state "$W" out)"
    rf_run "$name" -i "$W/ss" -o "$W/out" "$@"
    [[ "$(rf_tree_state "$W" out)" == "$before" ]] ||
        harness_fail "$name: something outside $W/out changed: $(diff <(echo "$before") <(rf_tree_state "$W" out) || true)"
}

case_names() {
    local ref="$RF_DIR/ws/ref/vda@$V.0.raw" W
    names_saveset
    # A source of ../escape.qcow2 is restored under its basename.
    PLANT="" escape_run dotdot-dir "vda=../escape.qcow2"
    rf_expect_rc 0
    rf_only_files "$W/out" escape.qcow2 vmconfig.xml
    rf_same_image "source ../escape.qcow2 restored as OUTDIR/escape.qcow2" "$W/out/escape.qcow2" qcow2 "$ref"

    # A source whose basename is .. cannot name a file in OUTDIR: refused, naming disk and name.
    PLANT="" escape_run dotdot-base "vda=/var/lib/libvirt/images/.."
    rf_expect_fail 1 "vda" "'..'"
    rf_only_files "$W/out"

    # A target dev of .. (no data file can belong to it): nothing escapes, the log names it,
    # refused or not restored.
    PLANT="" escape_run dotdot-target "..=/var/lib/libvirt/images/$DOM.qcow2"
    rf_expect_stderr "disk .."
    ((RF_RC == 0)) || rf_expect_fail 1 ".."

    # -C ../x.xml writes OUTDIR/x.xml.
    PLANT="" escape_run config-dir "vda=/var/lib/libvirt/images/$DOM.vda.qcow2" -C ../x.xml
    rf_expect_rc 0
    rf_only_files "$W/out" "$IMG" x.xml

    # A symlink planted at the image's name, the partial's name or vmconfig.xml, pointing
    # outside: refused without --force; with --force the link itself is replaced.
    local plant
    for plant in "$IMG" "$IMG.partial" vmconfig.xml; do
        PLANT="$plant" escape_run "link-$plant" "vda=/var/lib/libvirt/images/$DOM.vda.qcow2"
        rf_expect_fail 1 "$W/out/$plant" "--force"
        rf_only_files "$W/out" "$plant"
        [[ -L "$W/out/$plant" ]] || harness_fail "the planted symlink $W/out/$plant is gone"
        PLANT="$plant" escape_run "link-$plant-force" "vda=/var/lib/libvirt/images/$DOM.vda.qcow2" --force
        rf_expect_rc 0
        rf_only_files "$W/out" "$IMG" vmconfig.xml
        [[ ! -L "$W/out/vmconfig.xml" && -f "$W/out/vmconfig.xml" ]] || harness_fail "$W/out/vmconfig.xml is not a regular file"
        rf_same_image "--force over a symlink at $plant" "$W/out/$IMG" qcow2 "$ref"
    done
}

# --- 7, 8. signals -------------------------------------------------------------------------------

# The writer the signal cases use: the direct qcow2 writer (default), or qemu-nbd.
RF_WRITER=()

# start_big OUT [PREFIX...] : a restore of BIG into OUT in the background; RF_PID.
start_big() {
    local out="$1"
    shift
    RF_ERR="$RF_DIR/logs/$(basename "$out").err"
    harness_log "run: $* backupfs-restore -n -i $BIG/plain -o $out ${RF_WRITER[*]}"
    "$@" "$RF_RESTORE" -n -i "$BIG/plain" -o "$out" "${RF_WRITER[@]}" \
        >"$RF_DIR/logs/$(basename "$out").out" 2>"$RF_ERR" &
    RF_PID=$!
    rf_on_cleanup pid "$RF_PID" "$out"
}

# copying OUT : the partial image has grown past 16 MiB (and qemu-nbd serves it, when the
# image goes through qemu-nbd).
copying() {
    rf_size_at_least "$1/$IMG.partial" $((16 * MiB)) &&
        { ((${#RF_WRITER[@]} == 0)) || [[ -n "$(rf_qemu_nbd_pids "$1")" ]]; }
}

# The socket directory of the qemu-nbd serving OUT (from its command line).
socket_dir_of() {
    local p
    p="$(rf_qemu_nbd_pids "$1" | head -n 1)"
    [[ -n "$p" ]] || return 0
    tr '\0' '\n' <"/proc/$p/cmdline" | sed -n 's|^--socket=\(/tmp/backupfs-restore\.[^/]*\)/.*|\1|p'
}

# interrupted OUT SOCKET_DIR : what a run stopped by a signal must leave.
interrupted() {
    ((RF_RC != 0)) || harness_fail "exit code 0 after the signal; stderr:
$(_rf_tail)"
    rf_expect_error "interrupted"
    rf_only_files "$1"
    rf_no_qemu_nbd "$1"
    [[ -z "$2" || ! -e "$2" ]] || harness_fail "the socket directory $2 is left behind"
}

# SIGINT to the whole process group as soon as the partial image appears (Ctrl-C in a
# terminal: qemu-nbd gets it too), with SIGINT's default disposition as a shell gives it.
case_sigint() {
    local out="$RF_DIR/out-int" cg
    local -a throttle=()
    # A fifth of a core: at full speed the copy can end (0.6 s) before a shell on a loaded
    # machine sees the partial and sends the signal, and the case would test nothing.
    cg="$(rf_cpu_cgroup 20)"
    [[ -z "$cg" ]] || throttle=(bash -c 'echo "$$" >"$0/cgroup.procs" && exec "$@"' "$cg")
    start_big "$out" setsid env --default-signal=INT,TERM "${throttle[@]}"
    rf_wait_while_running "$RF_PID" 60 "$out/$IMG.partial to appear" test -e "$out/$IMG.partial"
    [[ "$(ps -o pgid= -p "$RF_PID" | tr -d ' ')" == "$RF_PID" ]] || harness_fail "setsid did not make pid $RF_PID a group leader"
    kill -INT -- "-$RF_PID"
    rf_wait_exit "$RF_PID" 60
    interrupted "$out" ""
}

# SIGTERM to backupfs-restore alone while it copies.
case_sigterm() {
    local out="$RF_DIR/out-term" sockdir
    start_big "$out"
    rf_wait_while_running "$RF_PID" 60 "the copy into $out/$IMG.partial to be under way" copying "$out"
    sockdir="$(socket_dir_of "$out")"
    kill -TERM "$RF_PID"
    rf_wait_exit "$RF_PID" 60
    interrupted "$out" "$sockdir"
}

case_sigkill() {
    local out="$RF_DIR/out-kill" nbd sockdir
    start_big "$out"
    rf_wait_while_running "$RF_PID" 60 "the copy into $out/$IMG.partial to be under way" copying "$out"
    nbd="$(rf_qemu_nbd_pids "$out" | head -n 1)"
    sockdir="$(socket_dir_of "$out")"
    if ((${#RF_WRITER[@]} > 0)); then
        [[ -n "$nbd" ]] || harness_fail "no qemu-nbd serves $out/$IMG.partial during the copy"
        rf_on_cleanup pid "$nbd" "$out/$IMG.partial"
    else
        [[ -z "$nbd" ]] || harness_fail "the direct writer started qemu-nbd (pid $nbd)"
    fi
    [[ -z "$sockdir" ]] || rf_on_cleanup rmdir "$sockdir"
    kill -KILL "$RF_PID"
    rf_wait_exit "$RF_PID" 60
    ((RF_RC == 137)) || harness_fail "exit code $RF_RC after SIGKILL, expected 137"
    # Only the partial image: nothing under a final name, not even the domain XML.
    rf_only_files "$out" "$IMG.partial"

    rf_run again -i "$BIG/plain" -o "$out"
    rf_expect_fail 1 "$out/$IMG.partial" "--force"
    rf_only_files "$out" "$IMG.partial"

    rf_run force -i "$BIG/plain" -o "$out" --force
    rf_expect_rc 0
    rf_only_files "$out" "$IMG" vmconfig.xml
    rf_same_image "--force after SIGKILL" "$out/$IMG" qcow2 "$BIG/ref/vda@$V.0.raw"

    # The killed restore's qemu-nbd (--persistent, serving the unlinked partial image) must not
    # outlive it: nothing else will ever stop it.
    if [[ -n "$nbd" ]] && ! harness_wait_for 10 "qemu-nbd $nbd to exit" eval '! rf_alive '"$nbd"; then
        harness_fail "qemu-nbd (pid $nbd) of the SIGKILLed restore still runs 10 s later: $({ tr '\0' ' ' <"/proc/$nbd/cmdline"; } 2>/dev/null || true)"
    fi
}

# --- 9. a disk added mid-chain -------------------------------------------------------------------

case_disk_added() {
    local ws="$RF_DIR/ws" dom="$DOM-add" o
    rf_workspace "$ws"
    rf_disk "$ws" vda $((8 * MiB))
    rf_put "$ws" vda 0 $((8 * MiB)) random
    rf_backup "$ws" vda full $V.0 "" "data:0:$((8 * MiB))"
    rf_vmconfig "$ws" $V.0 "$dom" vda
    rf_put "$ws" vda $MiB $MiB random
    rf_backup "$ws" vda inc $V.1 $V.0 "data:$MiB:$MiB"
    rf_vmconfig "$ws" $V.1 "$dom" vda
    # vdb appears at virtnbdbackup.2: its full backup carries that checkpoint.
    rf_put "$ws" vda $((2 * MiB)) $MiB random
    rf_backup "$ws" vda inc $V.2 $V.1 "data:$((2 * MiB)):$MiB"
    rf_disk "$ws" vdb $((4 * MiB))
    rf_put "$ws" vdb 0 $((4 * MiB)) random
    rf_backup "$ws" vdb full $V.2 "" "data:0:$((4 * MiB))"
    rf_vmconfig "$ws" $V.2 "$dom" vda vdb
    rf_put "$ws" vda $((3 * MiB)) $MiB random
    rf_backup "$ws" vda inc $V.3 $V.2 "data:$((3 * MiB)):$MiB"
    rf_put "$ws" vdb 0 $((512 << 10)) random
    rf_backup "$ws" vdb inc $V.3 $V.2 "data:0:$((512 << 10))"
    rf_vmconfig "$ws" $V.3 "$dom" vda vdb
    rf_cpt "$ws" "$dom" $V.0 $V.1 $V.2 $V.3

    o="$RF_DIR/out-1"
    rf_run u-1 -i "$ws/plain" -o "$o" -u $V.1
    rf_expect_rc 0
    rf_only_files "$o" "$dom.vda.qcow2" vmconfig.xml
    rf_same_image "vda at $V.1 (before vdb was added)" "$o/$dom.vda.qcow2" qcow2 "$ws/ref/vda@$V.1.raw"
    ! grep -q vdb "$o/vmconfig.xml" || harness_fail "$o/vmconfig.xml lists vdb, which $V.1 did not have"

    o="$RF_DIR/out-2"
    rf_run u-2 -i "$ws/plain" -o "$o" -u $V.2
    rf_expect_rc 0
    rf_only_files "$o" "$dom.vda.qcow2" "$dom.vdb.qcow2" vmconfig.xml
    rf_same_image "vdb at $V.2 (its full backup)" "$o/$dom.vdb.qcow2" qcow2 "$ws/ref/vdb@$V.2.raw"

    o="$RF_DIR/out-3"
    rf_run newest -i "$ws/plain" -o "$o"
    rf_expect_rc 0
    rf_only_files "$o" "$dom.vda.qcow2" "$dom.vdb.qcow2" vmconfig.xml
    rf_same_image "vda at $V.3" "$o/$dom.vda.qcow2" qcow2 "$ws/ref/vda@$V.3.raw"
    rf_same_image "vdb at $V.3" "$o/$dom.vdb.qcow2" qcow2 "$ws/ref/vdb@$V.3.raw"

    o="$RF_DIR/out-vdb-1"
    rf_run vdb-1 -i "$ws/plain" -o "$o" -d vdb -u $V.1
    rf_expect_fail 1 "vdb" "$V.1"
    rf_only_files "$o"
}

# --- 10. an incremental without data for one disk ---------------------------------------------

case_quiet_inc() {
    local ws="$RF_DIR/ws" dom="$DOM-quiet" kind o d
    rf_workspace "$ws" lz4
    for d in vda vdb; do
        rf_disk "$ws" $d $((8 * MiB))
        rf_put "$ws" $d 0 $((8 * MiB)) random
        rf_backup "$ws" $d full $V.0 "" "data:0:$((8 * MiB))"
        rf_put "$ws" $d $((2 * MiB)) $MiB random
        rf_backup "$ws" $d inc $V.1 $V.0 "data:$((2 * MiB)):$MiB"
    done
    rf_put "$ws" vda $((5 * MiB)) $MiB random
    rf_backup "$ws" vda inc $V.2 $V.1 "data:$((5 * MiB)):$MiB"
    rf_empty_inc "$ws" vdb $V.2 $V.1
    rf_vmconfig "$ws" $V.0 "$dom" vda vdb
    rf_cpt "$ws" "$dom" $V.0 $V.1 $V.2
    cmp -s "$ws/ref/vda@$V.1.raw" "$ws/ref/vda@$V.2.raw" && harness_fail "vda must change at $V.2"
    for kind in plain lz4; do
        o="$RF_DIR/out-$kind"
        rf_run "$kind" -i "$ws/$kind" -o "$o" -u $V.2
        rf_expect_rc 0
        rf_only_files "$o" "$dom.vda.qcow2" "$dom.vdb.qcow2" vmconfig.xml
        rf_same_image "$kind: vda at $V.2" "$o/$dom.vda.qcow2" qcow2 "$ws/ref/vda@$V.2.raw"
        rf_same_image "$kind: vdb at $V.2 = at $V.1" "$o/$dom.vdb.qcow2" qcow2 "$ws/ref/vdb@$V.1.raw"
    done
}

# --- 11. usage errors ----------------------------------------------------------------------------

case_usage() {
    local o="$RF_DIR/out" a
    rf_run unknown -i "$STD/plain" -o "$o" --no-such-option
    rf_expect_usage "--no-such-option"
    rf_run format -i "$STD/plain" -o "$o" --format xyz
    rf_expect_usage "xyz"
    rf_run no-o -i "$STD/plain" -a restore
    rf_expect_usage "-o"
    rf_run compress-raw -i "$STD/plain" -o "$o" --compress --format raw
    rf_expect_usage "--compress" "raw"
    rf_run device -i "$STD/plain" -o "$o" --device vda
    rf_expect_usage "--device vda"
    # Remote options need a -U that names a host (remote restores: test_restore_remote.sh).
    for a in "--ssh-user x" "-P 10809" "-I 127.0.0.2" "--tls" "--nbd-connect 127.0.0.3"; do
        # shellcheck disable=SC2086 # the option and its value
        rf_run "remote${a%% *}" -i "$STD/plain" -o "$o" $a
        rf_expect_usage "${a%% *}" "goes with a remote -U"
    done
    rf_only_files "$o"
}

# --- 12. an unknown point ------------------------------------------------------------------------

case_unknown_point() {
    rf_run u-9 -i "$STD/plain" -o "$RF_DIR/out" -u $V.9
    rf_expect_fail 1 "'$V.9'" "$V.0" "$V.1" "$V.2" "$V.3"
    rf_only_files "$RF_DIR/out"
}

# --- 13. block devices ---------------------------------------------------------------------------

# ff_file PATH BYTES : a file of 0xff bytes (what a used device holds, not zeros).
ff_file() { head -c "$2" /dev/zero | tr '\000' '\377' >"$1"; }

case_device() {
    local ws="$RF_DIR/ws" size=$((16 * MiB)) dev small o
    rf_workspace "$ws"
    rf_disk "$ws" vda $size
    # Full: data, a zero frame, data, and a hole (no frame) at the end.
    rf_put "$ws" vda 0 $((4 * MiB)) random
    rf_put "$ws" vda $((8 * MiB)) $((2 * MiB)) random
    rf_backup "$ws" vda full $V.0 "" "data:0:$((4 * MiB)),zero:$((4 * MiB)):$((4 * MiB)),data:$((8 * MiB)):$((2 * MiB))"
    # Inc: data that is all zeros, a zero frame over old data (a trim), new data in the hole.
    rf_put "$ws" vda $MiB $MiB zero
    rf_put "$ws" vda $((8 * MiB)) $MiB zero
    rf_put "$ws" vda $((12 * MiB)) $MiB random
    rf_backup "$ws" vda inc $V.1 $V.0 "data:$MiB:$MiB,zero:$((8 * MiB)):$MiB,data:$((12 * MiB)):$MiB"
    rf_vmconfig "$ws" $V.0 "$DOM" vda
    rf_cpt "$ws" "$DOM" $V.0 $V.1

    ff_file "$RF_DIR/dev.img" $size
    dev="$(rf_loop "$RF_DIR/dev.img")"
    o="$RF_DIR/out"
    rf_run device -i "$ws/plain" -o "$o" --device "vda=$dev"
    rf_expect_rc 0
    rf_only_files "$o" vmconfig.xml
    local out
    out="$(cmp -n $size "$dev" "$ws/ref/vda@$V.1.raw" 2>&1)" ||
        harness_fail "$dev differs from the reference (0xff left in zero ranges?): $out"
    harness_log "ok: $dev holds the restore point byte for byte"

    # A device smaller than the image: refused, naming the device; the device is untouched.
    ff_file "$RF_DIR/small.img" $((8 * MiB))
    cp "$RF_DIR/small.img" "$RF_DIR/small.orig"
    small="$(rf_loop "$RF_DIR/small.img")"
    o="$RF_DIR/out-small"
    rf_run small -i "$ws/plain" -o "$o" --device "vda=$small"
    rf_expect_fail 1 "$small" "$size"
    rf_only_files "$o"
    cmp -s "$small" "$RF_DIR/small.orig" || harness_fail "$small was written although refused"

    # Not a block device: refused, the file untouched.
    cp "$RF_DIR/small.orig" "$RF_DIR/plain-file"
    o="$RF_DIR/out-file"
    rf_run not-a-device -i "$ws/plain" -o "$o" --device "vda=$RF_DIR/plain-file"
    rf_expect_fail 1 "$RF_DIR/plain-file" "block device"
    rf_only_files "$o"
    cmp -s "$RF_DIR/plain-file" "$RF_DIR/small.orig" || harness_fail "$RF_DIR/plain-file was written"

    # --device for a disk the restore point does not have must not be ignored (vda would go to
    # a file instead, and the device the admin named would keep its old content).
    o="$RF_DIR/out-vdz"
    rf_run unknown-disk -i "$ws/plain" -o "$o" --device "vdz=$dev"
    ((RF_RC == 1 || RF_RC == 2)) || harness_fail "--device vdz=$dev (no disk vdz): exit $RF_RC, expected a refusal; stderr:
$(_rf_tail)"
    rf_expect_stderr "vdz"
    rf_only_files "$o"
}

# --- run ---------------------------------------------------------------------------------------

harness_log "writing savesets"
make_std
make_big

rf_case 1a "broken chain: points after the gap fail, the one before restores" case_gap_points
rf_case 1b "broken chain: no -u does not restore an older point with exit 0" case_gap_default
rf_case 1c "broken chain of one disk of two" case_gap_one_disk
rf_case 2a "corrupt chunk, plain" case_corrupt_plain
rf_case 2b "corrupt chunk, lz4" case_corrupt_lz4
rf_case 3 "existing output files and --force" case_existing
rf_case 4 "-D with a domain name libvirt has" case_define_taken
rf_case 5 "a full target filesystem" case_enospc
rf_case 6 "names that would escape the output directory" case_names
rf_case 7a "SIGINT to the process group as the partial appears" case_sigint
rf_case 7b "SIGTERM mid-copy" case_sigterm
rf_case 8 "SIGKILL mid-copy, then a second run" case_sigkill
RF_WRITER=(--qemu-writer)
rf_case 7c "SIGTERM mid-copy through qemu-nbd" case_sigterm
rf_case 8b "SIGKILL mid-copy through qemu-nbd, then a second run" case_sigkill
RF_WRITER=()
rf_case 9 "a disk added mid-chain" case_disk_added
rf_case 10 "an incremental without data for one disk" case_quiet_inc
rf_case 11 "usage errors exit 2" case_usage
rf_case 12 "an unknown --until point" case_unknown_point
rf_case 13 "--device into loop devices" case_device
rf_finish
