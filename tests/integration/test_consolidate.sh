#!/bin/bash
# test_consolidate.sh BUILD_DIR
#
# backupfs-restore -a consolidate / -a retention against real captures (libvirtd, TCG domains,
# backupfs-capture) and real virtnbdbackup savesets:
#  - a 2-disk chain of 6 points (writes and trims between them) consolidated at point 3: the
#    libvirt checkpoints 0-2 are deleted, .cpt, checkpoints/ and the per-point files follow,
#    every remaining point mounts byte-identical to the guest disk at that point, verify
#    passes, virtnbdrestore restores the new full exactly, and the next inc continues;
#  - a consolidation while a capture runs is refused within 1 s, naming the capture;
#  - libvirt out of reach (-U at a dead socket): the saveset is consolidated all the same, the
#    checkpoints left are named, and the next capture deletes them;
#  - the cycle inc + consolidate (or retention --keep-last 2) 10 times, exact every round;
#  - virtnbdbackup 1.9.15 savesets, plain and lz4, consolidated: exact when mounted, and
#    virtnbdrestore restores the result.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp python3 qemu-img virtnbdrestore virtnbdbackup flock

consolidate() { # consolidate ARGS... : backupfs-restore, exit 0 wanted; output in $T/cons.out
    "$RESTORE" "$@" >"$T/cons.out" 2>&1 ||
        harness_fail "backupfs-restore $*: exit $?: $(cat "$T/cons.out")"
}

# keep_points POINT... : the restore points that must remain (the rest were folded).
keep_points() { POINTS=("$@"); }

# meta_field DATAFILE KEY : a key of the data file's metadata (the meta frame that opens it).
meta_field() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1], "rb") as f:
    kind, _, length = f.read(40).split()
    assert kind == b"meta", kind
    print(json.loads(f.read(int(length, 16)))[sys.argv[2]])
EOF
}

libvirt_checkpoints() { harness_virsh checkpoint-list "$DOM" --name | sed '/^$/d' | sort -V | xargs; }

# check_consolidated POINT... : the saveset holds exactly these points, consistently.
check_consolidated() {
    local want="$*" p d got
    python3 - "$OUT/$DOM.cpt" "$@" <<'EOF' || harness_fail ".cpt is $(cat "$OUT/$DOM.cpt"), want $want"
import json, sys
assert json.load(open(sys.argv[1])) == sys.argv[2:]
EOF
    got="$(find "$OUT/checkpoints" -name '*.xml' -printf '%f\n' | sed 's/\.xml$//' | sort -V | xargs)"
    [[ "$got" == "$want" ]] || harness_fail "checkpoints/ holds '$got', want '$want'"
    ! grep -q "<parent>" "$OUT/checkpoints/$1.xml" ||
        harness_fail "checkpoints/$1.xml still names a parent: $(cat "$OUT/checkpoints/$1.xml")"
    got="$(find "$OUT" -maxdepth 1 -name 'vmconfig.*.xml' -printf '%f\n' | sed 's/^vmconfig\.//; s/\.xml$//' | sort -V | xargs)"
    [[ "$got" == "$want" ]] || harness_fail "vmconfig files for '$got', want '$want'"
    for d in "${DISKS[@]}"; do
        got="$(find "$OUT" -maxdepth 1 -name "$d.inc.*.data" -printf '%f\n' | sed "s/^$d\.inc\.//; s/\.data$//" | sort -V | xargs)"
        [[ "$got" == "${want#* }" || ("$#" == 1 && -z "$got") ]] ||
            harness_fail "$d incs are '$got', want those after $1"
        got="$(meta_field "$OUT/$d.full.data" checkpointName) $(meta_field "$OUT/$d.full.data" parentCheckpoint)"
        [[ "$got" == "$1 " ]] || harness_fail "$d.full.data is not the full backup at $1: checkpoint/parent $got"
    done
    [[ ! -e "$OUT/.backupfs-consolidate" ]] || harness_fail "staging directory left: $(ls -la "$OUT/.backupfs-consolidate")"
    "$RESTORE" -a verify -i "$OUT" >"$T/verify.out" 2>&1 ||
        harness_fail "verify after consolidation: $(cat "$T/verify.out")"
    keep_points "$@"
    check_mount
    harness_log "ok: $OUT holds exactly $want, every one exact"
}

# Six points on two disks, writes and trims between them.
six_points() {
    start_variant cons 2
    rnd vdb $((2 * M + 512)) $((3 * M))
    first_points # full, inc, inc
    rnd vdb $((9 * M)) $((700 * K))
    harness_guest_trim "$DOM" vdb $((2 * M + 512)) $((M))
    capture inc
    pat vda 0x3c $((12 * M + 512)) $((200 * K))
    rnd vdb $((40 * M)) $((2 * M))
    capture inc
    harness_guest_trim "$DOM" vda $((12 * M + 512)) $((64 * K))
    rnd vda $((50 * M - 1024)) $((3 * M))
    capture inc
    [[ "${POINTS[*]}" == "virtnbdbackup.0 virtnbdbackup.1 virtnbdbackup.2 virtnbdbackup.3 virtnbdbackup.4 virtnbdbackup.5" ]] ||
        harness_fail "want six checkpoints, have ${POINTS[*]}"
}

check_at_three() {
    consolidate -a consolidate -i "$OUT" -u virtnbdbackup.3
    grep -qF "folded 3 restore point(s) into a new full backup at virtnbdbackup.3" "$T/cons.out" ||
        harness_fail "consolidate summary: $(cat "$T/cons.out")"
    [[ "$(libvirt_checkpoints)" == "virtnbdbackup.3 virtnbdbackup.4 virtnbdbackup.5" ]] ||
        harness_fail "libvirt checkpoints after consolidation: $(libvirt_checkpoints)"
    check_consolidated virtnbdbackup.3 virtnbdbackup.4 virtnbdbackup.5
    # virtnbdrestore 1.9.15 skips zero frames (trims; see check_virtnbdrestore): the new
    # full alone is exact for it, restored into a fresh image.
    local rest="$T/peer" img
    harness_virtnbdrestore -a restore -i "$OUT" -o "$rest" --until virtnbdbackup.3 -n >/dev/null
    for d in "${DISKS[@]}"; do
        img="$(find "$rest" -maxdepth 1 -name "*$d*" ! -name '*.xml' -print -quit)"
        [[ -n "$img" ]] || harness_fail "virtnbdrestore wrote no $d image: $(ls "$rest")"
        harness_wait_image_free "$img"
        qemu-img convert -O raw "$img" "$T/peer.raw"
        harness_cmp "virtnbdrestore of the consolidated $d at virtnbdbackup.3" \
            "$OUT.ref/virtnbdbackup.3.$d.raw" "$T/peer.raw"
    done
    rm -rf "$rest" "$T/peer.raw"
}

# A capture mid-copy holds the saveset lock: the consolidation is refused at once.
check_refused_during_capture() {
    local start rc=0
    rnd vda $((8 * M + 512)) $((48 * M))
    inc_in_background "$T/bg.out"
    start=$(date +%s%N)
    "$RESTORE" -a consolidate -i "$OUT" -u virtnbdbackup.4 >"$T/locked.out" 2>&1 || rc=$?
    local ms=$((($(date +%s%N) - start) / 1000000))
    wait "$INC_PID" || harness_fail "the inc under test failed: $(cat "$T/bg.out")"
    record_point inc
    ((rc == 1)) || harness_fail "consolidation during a capture: exit $rc: $(cat "$T/locked.out")"
    grep -qF "is in use by another run (pid $INC_PID (backupfs-captur" "$T/locked.out" ||
        harness_fail "refusal does not name the capture (pid $INC_PID): $(cat "$T/locked.out")"
    ((ms < 1000)) || harness_fail "refusal took $ms ms"
    harness_log "ok: consolidation during a capture refused in $ms ms: $(tail -n 1 "$T/locked.out")"
}

# libvirt out of reach: consolidated anyway, checkpoints named and left; the next capture
# deletes them.
check_unreachable_libvirt() {
    consolidate -a consolidate -i "$OUT" -u virtnbdbackup.5 -U "qemu+unix:///system?socket=$T/no-libvirt.sock"
    grep -qF "libvirt checkpoints virtnbdbackup.3, virtnbdbackup.4 of domain $DOM are left to delete" "$T/cons.out" ||
        harness_fail "unreachable libvirt: warning missing: $(cat "$T/cons.out")"
    grep -qF "virsh checkpoint-delete $DOM virtnbdbackup.3" "$T/cons.out" ||
        harness_fail "no virsh advice: $(cat "$T/cons.out")"
    [[ -s "$OUT/.backupfs-pending-checkpoints.json" ]] || harness_fail "no pending list"
    [[ "$(libvirt_checkpoints)" == "virtnbdbackup.3 virtnbdbackup.4 virtnbdbackup.5 virtnbdbackup.6 virtnbdbackup.7" ]] ||
        harness_fail "libvirt checkpoints: $(libvirt_checkpoints)"
    check_consolidated virtnbdbackup.5 virtnbdbackup.6 virtnbdbackup.7
    rnd vda $((20 * M)) $((100 * K))
    capture inc
    grep -qF "deleted libvirt checkpoint virtnbdbackup.3 of $DOM" "$T/capture.$((${#POINTS[@]} - 1)).out" ||
        harness_fail "capture did not delete the pending checkpoints: $(cat "$T/capture.$((${#POINTS[@]} - 1)).out")"
    [[ "$(libvirt_checkpoints)" == "virtnbdbackup.5 virtnbdbackup.6 virtnbdbackup.7 virtnbdbackup.8" ]] ||
        harness_fail "libvirt checkpoints after the capture: $(libvirt_checkpoints)"
    [[ ! -e "$OUT/.backupfs-pending-checkpoints.json" ]] || harness_fail "pending list left"
    check_consolidated virtnbdbackup.5 virtnbdbackup.6 virtnbdbackup.7 virtnbdbackup.8
}

# inc, then fold all but the two newest points; ten rounds, alternating the two commands.
check_cycles() {
    local round newest
    for ((round = 1; round <= 10; round++)); do
        rnd vda $((((round * 7) % 60) * M + 512)) $((150 * K))
        pat vdb "0x$((round + 10))" $((((round * 5) % 60) * M)) $((64 * K))
        ((round % 3 == 0)) && harness_guest_trim "$DOM" vda $((((round * 7) % 60) * M + 512)) $((64 * K))
        capture inc
        newest=${#POINTS[@]}
        if ((round % 2)); then
            consolidate -a consolidate -i "$OUT" -u "${POINTS[newest - 2]}"
        else
            consolidate -a retention -i "$OUT" --keep-last 2
        fi
        check_consolidated "${POINTS[newest - 2]}" "${POINTS[newest - 1]}"
        [[ "$(libvirt_checkpoints)" == "${POINTS[*]}" ]] ||
            harness_fail "round $round: libvirt checkpoints $(libvirt_checkpoints), want ${POINTS[*]}"
    done
    harness_log "ok: 10 rounds of inc + consolidate, exact every round"
}

# A synthetic full of the newest point into a new directory: the source unchanged, the new
# saveset exact, and backupfs-capture continues the chain there.
check_synthetic_full() {
    local src="$OUT" newest="${POINTS[-1]}" before after
    before="$(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum)"
    consolidate -a consolidate -i "$src" -u "$newest" -o "$T/synth"
    grep -qF "wrote $T/synth: a standalone saveset whose full backup equals $newest" "$T/cons.out" ||
        harness_fail "synthetic full: $(cat "$T/cons.out")"
    after="$(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum)"
    [[ "$before" == "$after" ]] || harness_fail "the synthetic full changed its source $src"
    [[ ! -e "$T/synth.backupfs-partial" ]] || harness_fail "synth.backupfs-partial left"
    OUT="$T/synth"
    mkdir -p "$OUT.ref"
    cp "$src.ref/$newest."* "$OUT.ref/"
    check_consolidated "$newest"
    rnd vda $((44 * M)) $((256 * K))
    capture inc
    check_consolidated "$newest" "${POINTS[-1]}"
    harness_log "ok: synthetic full of $newest in $OUT, continued by backupfs-capture"
}

# A virtnbdbackup saveset (full + 2 incs), consolidated at 1: mounted exact, restored by
# virtnbdrestore (whole chain and --until the new full) exact.
check_virtnbdbackup_saveset() {
    local name="$1" dir mnt="$T/mnt" rest="$T/vnb-rest" img n
    shift
    "$HERE/make-virtnbdbackup-saveset.sh" "$T/$name" "$@" >"$T/$name.make.out" 2>&1 ||
        harness_fail "make-virtnbdbackup-saveset.sh $*: $(tail -n 20 "$T/$name.make.out")"
    dir="$T/$name/saveset"
    consolidate -a consolidate -i "$dir" -u virtnbdbackup.1
    [[ ! -e "$dir/vda.inc.virtnbdbackup.1.data" && -e "$dir/vda.inc.virtnbdbackup.2.data" ]] ||
        harness_fail "$name: files after consolidation: $(ls "$dir")"
    harness_mount_backupfs "$BUILD_DIR" "$dir" "$mnt"
    [[ "$(ls "$mnt" | xargs)" == "latest virtnbdbackup.1 virtnbdbackup.2" ]] ||
        harness_fail "$name: mount shows $(ls "$mnt" | xargs)"
    for n in 1 2; do
        harness_cmp "$name point $n" "$T/$name/ref/virtnbdbackup.$n.raw" "$mnt/virtnbdbackup.$n/vda.raw"
    done
    harness_unmount "$mnt"
    for n in 1 2; do
        harness_virtnbdrestore -a restore -i "$dir" -o "$rest.$n" --until "virtnbdbackup.$n" -n >/dev/null
        img="$(find "$rest.$n" -maxdepth 1 -name '*vda*' ! -name '*.xml' -print -quit)"
        harness_wait_image_free "$img"
        qemu-img convert -O raw "$img" "$T/vnb.raw"
        harness_cmp "virtnbdrestore of consolidated $name --until $n" "$T/$name/ref/virtnbdbackup.$n.raw" "$T/vnb.raw"
        rm -rf "$rest.$n" "$T/vnb.raw"
    done
    harness_log "ok: virtnbdbackup saveset ($name) consolidated, mounted and restored exactly"
}

six_points
check_at_three
rnd vda $((33 * M)) $((400 * K))
capture inc # virtnbdbackup.6: the chain continues from the new full
check_consolidated virtnbdbackup.3 virtnbdbackup.4 virtnbdbackup.5 virtnbdbackup.6
check_refused_during_capture
check_unreachable_libvirt
check_cycles
check_synthetic_full
check_virtnbdbackup_saveset vnb-plain
check_virtnbdbackup_saveset vnb-lz4 -z
echo "PASS: consolidation and retention of captured and virtnbdbackup savesets, exact throughout"
