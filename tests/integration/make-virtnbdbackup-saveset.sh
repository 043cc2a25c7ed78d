#!/bin/bash
# make-virtnbdbackup-saveset.sh OUTDIR [-z] [-2]
#
# Produces a real virtnbdbackup 1.9.15 saveset (full + 2 incrementals) of a
# running TCG domain, plus byte-exact references of the guest disk at each
# restore point:
#   OUTDIR/saveset/                      virtnbdbackup -o target (vda.full.data, ...)
#   OUTDIR/ref/virtnbdbackup.N.raw       vda as the guest saw it at backup N (N = 0, 1, 2)
#   OUTDIR/ref/vdb.virtnbdbackup.N.raw   same for vdb with -2 (a second 64 MiB disk)
# -z compresses (lz4, virtnbdbackup's default level 2).
#
# No trims here on purpose: what a backup holds for a trimmed range differs
# between virtnbdbackup versions (1.9.15 reads the dirty range and stores a data
# frame of zeros; 2.x drops dirty ranges that are holes, so its restore keeps the
# stale data), so the references would depend on the peer's version.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"

usage() { harness_fail "usage: $0 OUTDIR [-z] [-2]"; }
[[ $# -ge 1 ]] || usage
OUTDIR="$1"
shift
COMPRESS=()
NDISKS=1
for a in "$@"; do
    case "$a" in
    -z) COMPRESS=(-z) ;;
    -2) NDISKS=2 ;;
    *) usage ;;
    esac
done

harness_init
harness_require virtnbdbackup
harness_start_libvirtd

SAVESET="$OUTDIR/saveset"
if [[ -e "$SAVESET" ]] && [[ -n "$(ls -A "$SAVESET")" ]]; then
    harness_fail "$SAVESET exists and is not empty"
fi
mkdir -p "$SAVESET" "$OUTDIR/ref"
mkdir -m 0777 "$HARNESS_DIR/scratch"

K=1024
M=$((1024 * 1024))
DOM="bfsit-vnb-$$-${RANDOM}"
harness_create_domain "$DOM" 64 "$NDISKS"

RND="$HARNESS_DIR/random.bin"
rnd() { # rnd DISK OFFSET LENGTH : fresh random bytes
    harness_random_file "$RND" "$3"
    harness_guest_write "$DOM" "$1" "$2" "$3" file "$RND"
}
pat() { harness_guest_write "$DOM" "$1" "$3" "$4" pattern "$2"; } # pat DISK 0xNN OFFSET LENGTH

# backup LEVEL N : run virtnbdbackup and snapshot the references as restore point N.
backup() {
    local level="$1" n="$2" out="$HARNESS_DIR/virtnbdbackup.$2.out" start=$SECONDS
    if ! timeout 600 virtnbdbackup -d "$DOM" -l "$level" -o "$SAVESET" -n "${COMPRESS[@]}" \
        -f "$HARNESS_DIR/nbd.sock" -S "$HARNESS_DIR/scratch" >"$out" 2>&1; then
        tail -n 30 "$out" >&2
        harness_fail "virtnbdbackup -l $level (restore point $n) failed"
    fi
    local expect="$SAVESET/vda.full.data"
    [[ "$level" == full ]] || expect="$SAVESET/vda.inc.virtnbdbackup.$n.data"
    [[ -s "$expect" ]] || harness_fail "virtnbdbackup -l $level did not write $expect"
    harness_snapshot_ref "$DOM" vda "$OUTDIR/ref/virtnbdbackup.$n.raw"
    if ((NDISKS == 2)); then
        harness_snapshot_ref "$DOM" vdb "$OUTDIR/ref/vdb.virtnbdbackup.$n.raw"
    fi
    harness_log "virtnbdbackup -l $level -> restore point $n ($((SECONDS - start))s)"
}

# Restore point 0: data with holes in between. Offsets are multiples of 512,
# several not 64 KiB aligned (so the 64 KiB qcow2 clusters around them hold
# zeros that virtnbdbackup stores as data).
rnd vda 0 "$M"
rnd vda $((M + 512)) $((300 * K))
pat vda 0x5a $((4 * M)) $((256 * K))
rnd vda $((8 * M + 3584)) $((5 * M))
# 16 MiB .. 20 MiB: hole
pat vda 0xff $((20 * M)) $((64 * K))
pat vda 0x00 $((22 * M)) $((128 * K)) # zeros written as data: allocated, a data frame
# 34 MiB contiguous: one extent >= 32 MiB, which virtnbdbackup reads (and, with
# -z, compresses) in several chunks -> {"TOTAL": [...]} entry in the trailer.
rnd vda $((24 * M)) $((34 * M))
# 58 MiB .. 62 MiB: hole
rnd vda $((62 * M + 1536)) $((12 * K))
pat vda 0xa5 $((64 * M - 512)) 512
if ((NDISKS == 2)); then
    rnd vdb $((512 * K)) $((2 * M + 512))
    pat vdb 0x3c $((20 * M)) $((64 * K))
fi
backup full 0

# Restore point 1: overwrites crossing 64 KiB boundaries, new regions in holes.
rnd vda $((3 * 64 * K - K)) $((100 * K))
pat vda 0x11 $((4 * M + 60 * K)) $((8 * K))
rnd vda $((16 * M + 512)) "$M"
rnd vda $((30 * M + 512000)) $((200 * 512))
rnd vda $((59 * M + 4096)) $((64 * K))
if ((NDISKS == 2)); then
    rnd vdb $((M + 1536)) $((70 * K))
fi
backup inc 1

# Restore point 2: overwrite across old data and an old hole, zeros written as
# data over data (not a trim), more new regions.
rnd vda $((7 * M + 1024)) $((3 * M))
pat vda 0x00 $((10 * M + 4096)) $((64 * K))
rnd vda $((16 * M)) $((128 * K))
rnd vda $((52 * M + 1536)) 512
pat vda 0x77 $((63 * M)) $((64 * K))
if ((NDISKS == 2)); then
    pat vdb 0x00 $((M)) $((64 * K))
fi
backup inc 2

cpt="$SAVESET/$DOM.cpt"
[[ -s "$cpt" ]] || harness_fail "no checkpoint list $cpt"
echo "saveset of domain $DOM (${COMPRESS[*]:-uncompressed}, $NDISKS disk(s)) in $SAVESET:"
ls -l "$SAVESET"
echo "checkpoints: $(cat "$cpt")"
echo "references in $OUTDIR/ref:"
ls -ls "$OUTDIR/ref"
