#!/bin/bash
# test_virtnbdrestore_reads_ours.sh BUILD_DIR
#
# Savesets written by OUR writer (stream-tool write: a full and two incs, once
# uncompressed and once with --lz4 1) must be restored by the real
# virtnbdrestore 1.9.15 to exactly the reference image of each restore point,
# and stream-tool apply must give the same bytes. virtnbdrestore -a dump must
# read the metadata. The full holds a 41 MiB data frame, so its lz4 payload is
# split into several lz4 frames ({"TOTAL": [...]} in the trailer).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
BUILD_DIR="$(realpath "$1")"
STREAM_TOOL="$BUILD_DIR/tests/stream-tool"
[[ -x "$STREAM_TOOL" ]] || harness_fail "$STREAM_TOOL not built"

harness_init
harness_require virtnbdrestore qemu-img qemu-nbd python3 cmp
harness_start_libvirtd # virtnbdrestore -a restore connects to libvirt
T="$HARNESS_DIR"
K=1024
M=$((1024 * 1024))
DOM=bfsit-ours
IMAGE_NAME="$DOM.vda.qcow2" # basename of the disk source in vmconfig: restore target

# put REF OFFSET LENGTH random|zero : dd into the reference (conv=notrunc).
put() {
    local src=/dev/urandom
    [[ "$4" == random ]] || src=/dev/zero
    dd if="$src" of="$1" bs=1M iflag=count_bytes oflag=seek_bytes \
        seek="$2" count="$3" conv=notrunc status=none
}

# --- references ---------------------------------------------------------
R0="$T/ref.0.raw" R1="$T/ref.1.raw" R2="$T/ref.2.raw"
truncate -s $((48 * M)) "$R0"
put "$R0" 0 $((41 * M)) random # one 41 MiB data frame (> 32 MiB)
# 41 MiB .. 42 MiB: hole
put "$R0" $((42 * M)) $((256 * K)) zero # zeros written explicitly
put "$R0" $((43 * M + 512)) $((100 * K)) random
put "$R0" $((45 * M)) "$M" random
# 46 MiB .. 48 MiB - 4 KiB: hole
put "$R0" $((48 * M - 4096)) 4096 random

cp --sparse=always "$R0" "$R1"
put "$R1" $((10 * M + 1536)) $((200 * K)) random # overwrite inside the big frame
put "$R1" $((41 * M + 4096)) $((64 * K)) random  # new data in the hole
put "$R1" $((42 * M + 64 * K)) $((32 * K)) random # over the explicit zeros
# The zero extent covers bytes that are zero already: virtnbdrestore 1.9.15
# skips zero frames in incrementals, so it cannot be relied on to clear data.
EXT1="data:$((10 * M + 1536)):$((200 * K)),data:$((41 * M + 4096)):$((64 * K))"
EXT1+=",data:$((42 * M + 64 * K)):$((32 * K)),zero:$((46 * M)):$((64 * K))"

cp --sparse=always "$R1" "$R2"
put "$R2" $((39 * M + 512)) $((3 * M)) random # across the big frame's end, the hole, inc 1
put "$R2" $((45 * M + 1024)) $((8 * K)) zero  # zeros as a data extent over data
put "$R2" $((47 * M)) 512 random
EXT2="data:$((39 * M + 512)):$((3 * M)),data:$((45 * M + 1024)):$((8 * K)),data:$((47 * M)):512"

# frame_summary DATAFILE : JSON {"frames": [[kind, start, len], ...], "trailer": [...]|null}
frame_summary() {
    python3 - "$1" <<'EOF'
import json, sys
buf = open(sys.argv[1], "rb").read()
def hdr(pos):
    h = buf[pos:pos + 40]
    assert len(h) == 40 and h[38:40] == b"\r\n", f"bad header at {pos}"
    return h[:4].decode(), int(h[5:21], 16), int(h[22:38], 16)
kind, _, mlen = hdr(0)
meta = json.loads(buf[40:40 + mlen])
trailer = None
if meta["compressed"] is not False:
    kind, _, tlen = hdr(len(buf) - 40)
    trailer = json.loads(buf[len(buf) - 42 - tlen:len(buf) - 40])
pos, frames = 40 + mlen + 2, []
while True:
    kind, start, length = hdr(pos)
    if kind == "stop":
        break
    frames.append([kind, start, length])
    pos += 40
    if kind == "data":
        e = trailer[sum(f[0] == "data" for f in frames) - 1] if trailer else length
        pos += (int(next(iter(e))) if isinstance(e, dict) else e) + 2
print(json.dumps({"meta": meta, "frames": frames, "trailer": trailer}))
EOF
}

# make_saveset DIR LZ4(0|1)
make_saveset() {
    local dir="$1" lz4="$2" base
    local -a opt=()
    ((lz4 == 0)) || opt=(--lz4 1)
    mkdir -p "$dir"
    "$STREAM_TOOL" write --image "$R0" --output "$dir/vda.full.data" --disk vda \
        --checkpoint virtnbdbackup.0 --level full "${opt[@]}" ||
        harness_fail "stream-tool write full failed"
    "$STREAM_TOOL" write --image "$R1" --output "$dir/vda.inc.virtnbdbackup.1.data" --disk vda \
        --checkpoint virtnbdbackup.1 --parent virtnbdbackup.0 --level inc --extents "$EXT1" "${opt[@]}" ||
        harness_fail "stream-tool write inc 1 failed"
    "$STREAM_TOOL" write --image "$R2" --output "$dir/vda.inc.virtnbdbackup.2.data" --disk vda \
        --checkpoint virtnbdbackup.2 --parent virtnbdbackup.1 --level inc --extents "$EXT2" "${opt[@]}" ||
        harness_fail "stream-tool write inc 2 failed"
    cat >"$dir/vmconfig.virtnbdbackup.0.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>96</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/$IMAGE_NAME'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
    printf '["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"]' >"$dir/$DOM.cpt"
    # virtnbdrestore orders data files by mtime: make the chain order explicit.
    base=$(($(date +%s) - 60))
    touch -d "@$base" "$dir/vda.full.data"
    touch -d "@$((base + 1))" "$dir/vda.inc.virtnbdbackup.1.data"
    touch -d "@$((base + 2))" "$dir/vda.inc.virtnbdbackup.2.data"

    # The full must really hold a data frame over 40 MiB (split into several
    # lz4 frames when compressed), and the incs exactly our extents.
    frame_summary "$dir/vda.full.data" >"$T/full.frames.json"
    python3 - "$T/full.frames.json" "$lz4" <<'EOF' || harness_fail "$dir/vda.full.data: unexpected frames: $(cat "$T/full.frames.json")"
import json, sys
s = json.load(open(sys.argv[1]))
data = [f for f in s["frames"] if f[0] == "data"]
idx = [i for i, f in enumerate(data) if f[2] > 40 << 20]
assert idx, "no data frame > 40 MiB"
assert any(f[0] == "zero" for f in s["frames"]), "no zero frame"
if sys.argv[2] == "1":
    e = s["trailer"][idx[0]]
    assert isinstance(e, dict) and len(next(iter(e.values()))) >= 2, f"big frame not split: {e}"
EOF
    local n ext got
    for n in 1 2; do
        ext="$EXT1"
        ((n == 1)) || ext="$EXT2"
        got="$(frame_summary "$dir/vda.inc.virtnbdbackup.$n.data" |
            python3 -c 'import json,sys; print(",".join(f"{k}:{s}:{l}" for k,s,l in json.load(sys.stdin)["frames"]))')"
        [[ "$got" == "$ext" ]] || harness_fail "inc $n frames $got, want $ext"
    done
}

# check_saveset NAME DIR LZ4(0|1)
check_saveset() {
    local name="$1" dir="$2" lz4="$3" n i ref img
    local -a files
    for n in 0 1 2; do
        ref="$T/ref.$n.raw"
        files=("$dir/vda.full.data")
        for ((i = 1; i <= n; i++)); do files+=("$dir/vda.inc.virtnbdbackup.$i.data"); done
        "$STREAM_TOOL" apply --output "$T/ours.raw" "${files[@]}" ||
            harness_fail "$name: stream-tool apply up to point $n failed"
        harness_cmp "$name: stream-tool apply up to virtnbdbackup.$n" "$ref" "$T/ours.raw"
        rm -f "$T/ours.raw"

        harness_virtnbdrestore -a restore -i "$dir" -o "$T/rest$n" --until "virtnbdbackup.$n" -n >/dev/null
        img="$T/rest$n/$IMAGE_NAME"
        [[ -f "$img" ]] || harness_fail "$name: virtnbdrestore made no $img"
        harness_wait_image_free "$img"
        qemu-img convert -O raw "$img" "$T/rest$n.raw"
        harness_cmp "$name: virtnbdrestore --until virtnbdbackup.$n" "$ref" "$T/rest$n.raw"
        rm -rf "$T/rest$n" "$T/rest$n.raw"
    done

    harness_virtnbdrestore -a dump -i "$dir" -o dump >"$T/$name.dump.json"
    python3 - "$T/$name.dump.json" "$lz4" $((48 * M)) <<'EOF' ||
import json, sys
d = json.load(open(sys.argv[1]))
lz4, size = sys.argv[2] == "1", int(sys.argv[3])
assert [e["checkpointName"] for e in d] == ["virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"], d
assert [e["parentCheckpoint"] for e in d] == ["", "virtnbdbackup.0", "virtnbdbackup.1"], d
assert [e["incremental"] for e in d] == [False, True, True], d
for e in d:
    assert e["virtualSize"] == size and e["diskName"] == "vda" and e["diskFormat"] == "qcow2", e
    assert e["streamVersion"] == 2 and (e["compressed"] is not False) == lz4, e
assert d[1]["dataSize"] == (200 + 64 + 32) * 1024, d[1]
assert d[2]["dataSize"] == 3 * 2**20 + 8192 + 512, d[2]
EOF
        harness_fail "$name: virtnbdrestore dump output wrong: $(cat "$T/$name.dump.json")"
    harness_log "ok: $name: virtnbdrestore -a dump reads the metadata:"
    python3 -c 'import json,sys; [print("   ", {k: e[k] for k in ("checkpointName","parentCheckpoint","dataSize","compressed")}) for e in json.load(open(sys.argv[1]))]' "$T/$name.dump.json" >&2
}

# The .chksum files hold what newer virtnbdrestore's `-a verify` compares (1.9.15 has no
# verify action): zlib's adler32 of the whole data file, in decimal. Python's zlib checks
# ours independently.
check_chksum() {
    local dir="$1" name="$2"
    python3 - "$dir" <<'EOF' || harness_fail "$name: a .chksum file does not hold zlib's adler32"
import glob, sys, zlib
files = sorted(glob.glob(sys.argv[1] + "/*.data"))
assert files, "no data files"
for f in files:
    want = open(f + ".chksum").read().strip()
    got = str(zlib.adler32(open(f, "rb").read()))
    assert want == got, f"{f}: .chksum says {want}, zlib.adler32 gives {got}"
EOF
    harness_log "ok: $name: every .chksum matches zlib.adler32 of its data file"
}

for variant in plain lz4; do
    start=$SECONDS
    lz4=0
    [[ "$variant" == plain ]] || lz4=1
    make_saveset "$T/$variant" "$lz4"
    check_saveset "$variant" "$T/$variant" "$lz4"
    check_chksum "$T/$variant" "$variant"
    harness_log "$variant saveset written and checked in $((SECONDS - start))s"
done
echo "PASS: virtnbdrestore 1.9.15 restores savesets written by stream-tool"
