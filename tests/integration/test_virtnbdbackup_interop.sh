#!/bin/bash
# test_virtnbdbackup_interop.sh BUILD_DIR
#
# Reads savesets written by the real virtnbdbackup 1.9.15 from a running TCG
# domain with our tools: "plain" (uncompressed, disk vda) and "lz4" (-z, disks
# vda and vdb). Every restore point is checked byte for byte against the
# guest-disk references:
#   - stream-tool apply of the chain up to point N == reference N
#   - virtnbdrestore --until virtnbdbackup.N == reference N (peer and we agree)
#   - backupfs-restore -a dump: one entry per data file, with the metadata
#     virtnbdrestore's own dump shows
#   - backupfs-restore -a verify: 0 on the intact saveset, 1 naming the file
#     after a frame header is damaged, and (lz4) after a payload byte is flipped.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
BUILD_DIR="$(realpath "$1")"
STREAM_TOOL="$BUILD_DIR/tests/stream-tool"
RESTORE="$BUILD_DIR/tools/backupfs-restore"
for b in "$STREAM_TOOL" "$RESTORE"; do
    [[ -x "$b" ]] || harness_fail "$b not built"
done

harness_init
harness_require virtnbdbackup virtnbdrestore qemu-img python3 cmp
harness_start_libvirtd
T="$HARNESS_DIR"

# chain DISK N : the data files of restore point N, in chain order.
chain() {
    local i
    printf '%s\n' "$1.full.data"
    for ((i = 1; i <= $2; i++)); do printf '%s\n' "$1.inc.virtnbdbackup.$i.data"; done
}

# ref OUTDIR DISK N : the maker's reference for DISK at point N.
ref() {
    if [[ "$2" == vda ]]; then
        printf '%s/ref/virtnbdbackup.%s.raw' "$1" "$3"
    else
        printf '%s/ref/%s.virtnbdbackup.%s.raw' "$1" "$2" "$3"
    fi
}

# check_dump NAME SAVESET COMPRESSED(0|1) DISK...
check_dump() {
    local name="$1" s="$2" comp="$3"
    shift 3
    "$RESTORE" -a dump -i "$s" >"$T/$name.dump.json" 2>"$T/$name.dump.err" ||
        harness_fail "$name: backupfs-restore -a dump failed: $(cat "$T/$name.dump.err")"
    harness_virtnbdrestore -a dump -i "$s" -o dump >"$T/$name.peer-dump.json"
    python3 - "$T/$name.dump.json" "$T/$name.peer-dump.json" "$comp" "$@" <<'EOF' ||
import json, os, sys
ours = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))
compressed = sys.argv[3] == "1"
expect = {}
for d in sys.argv[4:]:
    expect[f"{d}.full.data"] = (d, "virtnbdbackup.0", "")
    for n in (1, 2):
        expect[f"{d}.inc.virtnbdbackup.{n}.data"] = (d, f"virtnbdbackup.{n}", f"virtnbdbackup.{n - 1}")
assert isinstance(ours, list) and len(ours) == len(expect), f"want {len(expect)} entries, got {len(ours)}"
seen = {}
peer_by = {(p["diskName"], p["checkpointName"]): p for p in peer}
assert len(peer_by) == len(expect), f"virtnbdrestore dump: {peer}"
for e in ours:
    for k in ("dataFile", "frames", "diskName", "checkpointName", "parentCheckpoint"):
        assert k in e, f"missing key {k} in {e}"
    seen[os.path.basename(e["dataFile"])] = (e["diskName"], e["checkpointName"], e["parentCheckpoint"])
    assert (e["compressed"] is not False) == compressed, f"compressed flag wrong in {e}"
    p = peer_by[(e["diskName"], e["checkpointName"])]
    diff = {k: (v, e.get(k)) for k, v in p.items() if e.get(k) != v}
    assert not diff, f"{e['dataFile']}: differs from virtnbdrestore's dump: {diff}"
assert seen == expect, f"checkpoints {seen} != {expect}"
EOF
        harness_fail "$name: dump output wrong: $(cat "$T/$name.dump.json")"
    harness_log "ok: $name: dump lists the chains with virtnbdrestore's metadata"
}

# expect_verify_fails WHAT DIR FILE : verify must exit 1 and name FILE.
expect_verify_fails() {
    local what="$1" dir="$2" file="$3" rc=0
    "$RESTORE" -a verify -i "$dir" >"$T/verify.out" 2>&1 || rc=$?
    ((rc == 1)) || harness_fail "$what: verify exited $rc, want 1: $(cat "$T/verify.out")"
    grep -qF "$file" "$T/verify.out" ||
        harness_fail "$what: verify output does not name $file: $(cat "$T/verify.out")"
    harness_log "ok: $what: verify exits 1 naming $file"
}

# check_saveset NAME OUTDIR COMPRESSED(0|1) DISK...
check_saveset() {
    local name="$1" out="$2" comp="$3" s="$2/saveset" n d img
    shift 3
    local -a files imgs
    # The same saveset mounted with backupfs: each image must equal virtnbdrestore's restore.
    harness_mount_backupfs "$BUILD_DIR" "$s" "$T/mnt"
    for ((n = 0; n <= 2; n++)); do
        for d in "$@"; do
            mapfile -t files < <(chain "$d" "$n")
            "$STREAM_TOOL" apply --output "$T/ours.raw" "${files[@]/#/$s/}" ||
                harness_fail "$name: stream-tool apply of $d up to point $n failed"
            harness_cmp "$name: stream-tool apply $d up to virtnbdbackup.$n" "$(ref "$out" "$d" "$n")" "$T/ours.raw"
            rm -f "$T/ours.raw"
        done

        # One virtnbdrestore run restores every disk of the saveset.
        harness_virtnbdrestore -a restore -i "$s" -o "$T/rest$n" --until "virtnbdbackup.$n" -n >/dev/null
        for d in "$@"; do
            mapfile -t imgs < <(find "$T/rest$n" -maxdepth 1 -name "*.$d.qcow2")
            ((${#imgs[@]} == 1)) || harness_fail "$name: want one restored $d image in $T/rest$n, got: ${imgs[*]}"
            img="${imgs[0]}"
            harness_wait_image_free "$img"
            qemu-img convert -O raw "$img" "$T/rest.raw"
            harness_cmp "$name: virtnbdrestore $d --until virtnbdbackup.$n" "$(ref "$out" "$d" "$n")" "$T/rest.raw"
            harness_cmp "$name: backupfs mount of $d at virtnbdbackup.$n" "$T/rest.raw" "$T/mnt/virtnbdbackup.$n/$d.raw"
            rm -f "$T/rest.raw"
        done
        rm -rf "$T/rest$n"
    done
    [[ "$(readlink "$T/mnt/latest")" == virtnbdbackup.2 ]] || harness_fail "$name: latest is not virtnbdbackup.2"
    harness_unmount "$T/mnt"

    check_dump "$name" "$s" "$comp" "$@"

    "$RESTORE" -a verify -i "$s" >"$T/verify.out" 2>&1 ||
        harness_fail "$name: verify of the intact saveset failed: $(cat "$T/verify.out")"
    harness_log "ok: $name: verify of the intact saveset"

    local bad="$T/$name.bad-header" file=vda.inc.virtnbdbackup.1.data
    cp -a "$s" "$bad" # -a keeps mtimes (virtnbdrestore orders by them)
    harness_corrupt_frame "$bad/$file" header
    expect_verify_fails "$name: damaged frame header" "$bad" "$file"
    rm -rf "$bad"

    if ((comp)); then
        bad="$T/$name.bad-payload" file=vda.full.data
        cp -a "$s" "$bad"
        harness_corrupt_frame "$bad/$file" payload
        expect_verify_fails "$name: flipped lz4 payload byte" "$bad" "$file"
        rm -rf "$bad"
    fi
}

for variant in plain lz4; do
    start=$SECONDS
    if [[ "$variant" == plain ]]; then
        make_args=() comp=0 disks=(vda)
    else
        make_args=(-z -2) comp=1 disks=(vda vdb)
    fi
    "$HERE/make-virtnbdbackup-saveset.sh" "$T/$variant" "${make_args[@]}" >"$T/$variant.make.out" 2>&1 ||
        harness_fail "saveset maker failed for $variant: $(tail -n 30 "$T/$variant.make.out")"
    harness_log "$variant saveset (${disks[*]}) made in $((SECONDS - start))s"
    start=$SECONDS
    check_saveset "$variant" "$T/$variant" "$comp" "${disks[@]}"
    harness_log "$variant saveset checked in $((SECONDS - start))s"
done
echo "PASS: virtnbdbackup 1.9.15 savesets read, mounted, restored and verified"
