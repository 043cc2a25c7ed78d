#!/usr/bin/env python3
"""Test data for bench/run-mount-bench.sh (not a test itself).

  disk:  a raw reference image of random data, fully written in the full backup, then INCS
         incrementals of INC_BYTES each in scattered non-overlapping writes (MIN..MAX bytes,
         4 KiB aligned); the reference ends as the newest image. Writes, with stream-tool:
         OUT/plain/ (uncompressed), OUT/lz4/ (--lz4 1, optional); and the equivalent qcow2 chain
         OUT/qcow2/base.qcow2 <- ov1.qcow2 <- ... (qemu-io applies the same writes to each
         overlay), checked once against the reference with qemu-img compare.
         --no-qcow2 skips the chain (restore benchmarks need only the savesets and the
         reference); --full-ref also keeps OUT/ref.full.raw, the image of the full backup.
  chain: a long chain of small scattered writes over a sparse disk (full + LINKS-1 incs), for
         mount time and memory.
  vnb-lz4: converts OUT/plain/ (made by `disk`) into OUT/vnb/, the lz4 saveset virtnbdbackup
         1.9.15 -z would write for the same extents: each data frame cut into NBD reads of at
         most 32 MiB, each compressed with lz4.frame.compress(content_checksum=True,
         block_checksum=True, compression_level=2) as virtnbdbackup's lz4CompressFrame does
         (python's defaults: linked 64 KiB blocks, content size stored), and its trailer. Needs
         python3-lz4 (virtnbdbackup's own dependency; run with /usr/bin/python3).
  sparse: a full backup of a big sparse disk holding only DATA_BYTES of random data, scattered
         (non-overlapping writes of MIN..MAX bytes, 4 KiB aligned) or in one region (the middle
         of the disk); the rest are zero extents. Writes OUT/ref.raw (sparse: holes where the
         disk holds no data), OUT/plain/ and with --lz4 OUT/lz4/. For bench/run-restore-bench.sh.

Every saveset gets what virtnbdrestore needs: a domain XML (vmconfig.virtnbdbackup.0.xml,
disk vda), a checkpoint list, and data file mtimes in chain order. Deterministic per --seed.
"""
import argparse
import bisect
import json
import os
import random
import subprocess
import sys
import time

KiB, MiB = 1 << 10, 1 << 20
ALIGN = 4 * KiB
DOMAIN = "bfsbench"


def run(*argv):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} exited {r.returncode}:\n{r.stdout}{r.stderr}")


def run_all(argvs):
    """Runs argument vectors concurrently (at most 2: the machines have 2 cores)."""
    pending = list(argvs)
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [(a, subprocess.Popen([str(x) for x in a], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)) for a in batch]
        for a, p in procs:
            out = p.communicate()[0]
            if p.returncode != 0:
                sys.exit(f"{' '.join(map(str, a))} exited {p.returncode}:\n{out}")


def plan_writes(rng, size, total, lo, hi):
    """Non-overlapping (offset, length) writes summing to `total`, sorted by offset."""
    starts, writes, left = [], {}, total
    while left > 0:
        length = min(left, ALIGN * rng.randint(lo // ALIGN, hi // ALIGN))
        off = ALIGN * rng.randrange(0, (size - length) // ALIGN + 1)
        i = bisect.bisect_left(starts, off)
        if i > 0 and starts[i - 1] + writes[starts[i - 1]] > off:
            continue
        if i < len(starts) and off + length > starts[i]:
            continue
        starts.insert(i, off)
        writes[off] = length
        left -= length
    return [(o, writes[o]) for o in starts]


TEXT = (b"backupfs bench: compressible filler, as a guest's files and metadata are. " * 64)


def compressible(rng, n):
    """n bytes (a multiple of 4 KiB) that lz4 compresses to about half: each 4 KiB is 2 KiB of
    random bytes and 2 KiB of text at a random phase."""
    out = bytearray()
    for _ in range(n // 4096):
        k = rng.randrange(0, len(TEXT) - 2048)
        out += rng.randbytes(2048) + TEXT[k:k + 2048]
    return bytes(out)


def merged(writes):
    out = []
    for off, length in sorted(writes):
        if out and out[-1][0] + out[-1][1] >= off:
            out[-1][1] = max(out[-1][1], off + length - out[-1][0])
        else:
            out.append([off, length])
    return out


def extents_arg(data, size=None):
    """stream-tool --extents: data extents, and zero extents for the gaps when size is given."""
    items, pos = [], 0
    for off, length in data:
        if size is not None and off > pos:
            items.append(f"zero:{pos}:{off - pos}")
        items.append(f"data:{off}:{length}")
        pos = off + length
    if size is not None and pos < size:
        items.append(f"zero:{pos}:{size - pos}")
    return ",".join(items)


class Saveset:
    """A virtnbdbackup-layout saveset of disk vda written with stream-tool."""

    def __init__(self, tool, directory, lz4):
        self.tool, self.dir, self.lz4 = tool, directory, lz4
        os.makedirs(directory, exist_ok=True)
        self.files = []

    def write_argv(self, image, extents):
        n = len(self.files)
        cpt = f"virtnbdbackup.{n}"
        name = "vda.full.data" if n == 0 else f"vda.inc.{cpt}.data"
        path = os.path.join(self.dir, name)
        self.files.append(path)
        date = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1_700_000_000 + 60 * n))
        argv = [self.tool, "write", "--image", image, "--output", path, "--disk", "vda",
                "--checkpoint", cpt, "--level", "full" if n == 0 else "inc",
                "--date", date + ".000000", "--extents", extents]
        if n > 0:
            argv += ["--parent", f"virtnbdbackup.{n - 1}"]
        if self.lz4:
            argv += ["--lz4", "1"]
        return argv

    def finish(self):
        with open(os.path.join(self.dir, "vmconfig.virtnbdbackup.0.xml"), "w") as f:
            f.write(f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>96</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/{DOMAIN}.vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
""")
        with open(os.path.join(self.dir, f"{DOMAIN}.cpt"), "w") as f:
            json.dump([f"virtnbdbackup.{i}" for i in range(len(self.files))], f)
        # virtnbdrestore orders a chain by mtime (backupfs by the metadata links).
        base = int(time.time()) - 10 * len(self.files) - 60
        for i, path in enumerate(self.files):
            os.utime(path, (base + i, base + i))


def make_disk(a):
    ref = os.path.join(a.out, "ref.raw")
    qdir = os.path.join(a.out, "qcow2")
    os.makedirs(qdir, exist_ok=True)
    rng = random.Random(a.seed)
    fill = (lambda n: compressible(rng, n)) if a.compressible else rng.randbytes
    with open(ref, "wb") as f:
        for pos in range(0, a.size, 8 * MiB):
            f.write(fill(min(8 * MiB, a.size - pos)))
    savesets = [Saveset(a.stream_tool, os.path.join(a.out, "plain"), False)]
    if a.lz4:
        savesets.append(Saveset(a.stream_tool, os.path.join(a.out, "lz4"), True))
    full = f"data:0:{a.size}"
    base = os.path.join(qdir, "base.qcow2")
    qcow2 = [] if a.no_qcow2 else [["qemu-img", "convert", "-f", "raw", "-O", "qcow2", ref, base]]
    run_all([s.write_argv(ref, full) for s in savesets] + qcow2)
    if a.full_ref:
        with open(ref, "rb") as src, open(os.path.join(a.out, "ref.full.raw"), "wb") as dst:
            while chunk := src.read(8 * MiB):
                dst.write(chunk)
    backing, log = base, []
    for i in range(1, a.incs + 1):
        writes = plan_writes(rng, a.size, a.inc_bytes, a.min_write, a.max_write)
        log.append(writes)
        overlay = os.path.join(qdir, f"ov{i}.qcow2")
        if not a.no_qcow2:
            run("qemu-img", "create", "-q", "-f", "qcow2", "-b", os.path.basename(backing), "-F",
                "qcow2", overlay)
        qemu_io = ["qemu-io", "-f", "qcow2", overlay]
        with open(ref, "r+b") as f:
            for k, (off, length) in enumerate(writes):
                data = fill(length)
                f.seek(off)
                f.write(data)
                if a.no_qcow2:
                    continue
                src = os.path.join(qdir, f"src.{k}")
                with open(src, "wb") as s:
                    s.write(data)
                qemu_io += ["-c", f"write -q -s {src} {off} {length}"]
        ext = extents_arg(merged(writes))
        run_all([s.write_argv(ref, ext) for s in savesets] + ([] if a.no_qcow2 else [qemu_io]))
        if not a.no_qcow2:
            for k in range(len(writes)):
                os.unlink(os.path.join(qdir, f"src.{k}"))
        backing = overlay
    for s in savesets:
        s.finish()
    # The qcow2 chain must show exactly the reference (backupfs is checked by the script).
    if a.no_qcow2:
        os.rmdir(qdir)
    else:
        run("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", backing, ref)
    with open(os.path.join(a.out, "writes.json"), "w") as f:
        json.dump({"size": a.size, "incs": log}, f)
    print(f"{a.out}: {a.size >> 20} MiB disk, {a.incs} incs of {a.inc_bytes >> 20} MiB "
          f"({sum(map(len, log))} writes); " +
          ("no qcow2 chain" if a.no_qcow2 else "qcow2 chain matches the reference"))


def make_chain(a):
    ref = os.path.join(a.out, "ref.raw")
    os.makedirs(a.out, exist_ok=True)
    with open(ref, "wb") as f:
        f.truncate(a.size)
    rng = random.Random(a.seed)
    s = Saveset(a.stream_tool, os.path.join(a.out, "saveset"), False)
    nwrites = 0
    for link in range(a.links):
        writes = []  # may overlap each other: merged() makes the extents
        for _ in range(a.full_writes if link == 0 else a.writes):
            length = ALIGN * rng.randint(a.min_write // ALIGN, a.max_write // ALIGN)
            writes.append((ALIGN * rng.randrange(0, (a.size - length) // ALIGN + 1), length))
        with open(ref, "r+b") as f:
            for off, length in writes:
                f.seek(off)
                f.write(rng.randbytes(length))
        # Later links read the image as it is now: write each data file before the next writes.
        run(*s.write_argv(ref, extents_arg(merged(writes), a.size if link == 0 else None)))
        nwrites += len(writes)
    s.finish()
    print(f"{a.out}: {a.links} links over a {a.size >> 20} MiB sparse disk, {nwrites} writes")


FRAME_HDR = 40
MAX_REQUEST = 32 * MiB


def vnb_convert(src, dst, level):
    """One plain data file -> the lz4 data file virtnbdbackup writes for the same frames."""
    import lz4.frame
    with open(src, "rb") as f:
        data = f.read()
    out, trailer, pos = bytearray(), [], 0
    while True:
        kind, start, length = data[pos:pos + 4], int(data[pos + 5:pos + 21], 16), int(data[pos + 22:pos + 38], 16)
        hdr = data[pos:pos + FRAME_HDR]
        pos += FRAME_HDR
        if kind == b"meta":
            meta = json.loads(data[pos:pos + length])
            meta["compressed"] = level
            meta["compressionMethod"] = "lz4"
            body = json.dumps(meta, indent=4).encode()
            out += b"meta %016x %016x\r\n" % (0, len(body)) + body + b"\r\n"
            pos += length + 2
        elif kind == b"data":
            out += hdr
            sizes = []
            for o in range(0, length, MAX_REQUEST):
                piece = data[pos + o:pos + min(length, o + MAX_REQUEST)]
                packed = lz4.frame.compress(piece, content_checksum=True, block_checksum=True,
                                            compression_level=level)
                sizes.append(len(packed))
                out += packed
            out += b"\r\n"
            trailer.append(sizes[0] if len(sizes) == 1 else {str(sum(sizes)): sizes})
            pos += length + 2
        elif kind == b"zero":
            out += hdr
        elif kind == b"stop":
            text = json.dumps(trailer).encode()
            out += hdr + text + b"\r\n" + b"comp %016x %016x\r\n" % (0, len(text))
            break
        else:
            sys.exit(f"{src}: unexpected frame {kind!r} at {pos - FRAME_HDR}")
    with open(dst, "wb") as f:
        f.write(out)
    st = os.stat(src)
    os.utime(dst, (st.st_atime, st.st_mtime))


def make_vnb_lz4(a):
    import shutil
    src, dst = os.path.join(a.out, "plain"), os.path.join(a.out, "vnb")
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if name.endswith(".data"):
            vnb_convert(os.path.join(src, name), os.path.join(dst, name), a.level)
        elif not name.endswith(".idx"):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    print(f"{dst}: virtnbdbackup-style lz4 saveset (level {a.level}) of {src}")


def make_sparse(a):
    if a.data_bytes % ALIGN or not 0 < a.data_bytes <= a.size:
        sys.exit(f"--data-bytes must be a multiple of {ALIGN} in 1..--size")
    if a.layout == "scattered" and a.data_bytes > a.size // 2:
        sys.exit("--layout scattered places writes at random: --data-bytes must be <= --size / 2")
    ref = os.path.join(a.out, "ref.raw")
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    if a.layout == "region":
        off = (a.size - a.data_bytes) // 2 // MiB * MiB
        writes = [(off, a.data_bytes)]
    else:
        writes = plan_writes(rng, a.size, a.data_bytes, a.min_write, a.max_write)
    with open(ref, "wb") as f:
        f.truncate(a.size)
        for off, length in writes:
            f.seek(off)
            for pos in range(0, length, 8 * MiB):
                f.write(rng.randbytes(min(8 * MiB, length - pos)))
    savesets = [Saveset(a.stream_tool, os.path.join(a.out, "plain"), False)]
    if a.lz4:
        savesets.append(Saveset(a.stream_tool, os.path.join(a.out, "lz4"), True))
    ext = extents_arg(merged(writes), a.size)
    run_all([s.write_argv(ref, ext) for s in savesets])
    for s in savesets:
        s.finish()
    with open(os.path.join(a.out, "writes.json"), "w") as f:
        json.dump({"size": a.size, "full": writes}, f)
    print(f"{a.out}: {a.size >> 20} MiB sparse disk, {a.data_bytes >> 20} MiB of data "
          f"({a.layout}: {len(writes)} extents), a full backup")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stream-tool", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", type=int, default=1024 * MiB)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("disk")
    d.add_argument("--incs", type=int, default=3)
    d.add_argument("--inc-bytes", type=int, default=128 * MiB)
    d.add_argument("--lz4", action="store_true")
    d.add_argument("--min-write", type=int, default=64 * KiB)
    d.add_argument("--max-write", type=int, default=4 * MiB)
    d.add_argument("--no-qcow2", action="store_true", help="no qcow2 chain")
    d.add_argument("--full-ref", action="store_true", help="also OUT/ref.full.raw")
    d.add_argument("--compressible", action="store_true",
                   help="data that lz4 halves (each 4 KiB: 2 KiB random, 2 KiB of text) instead "
                   "of random bytes that lz4 stores uncompressed")
    c = sub.add_parser("chain")
    c.add_argument("--links", type=int, default=100)
    c.add_argument("--full-writes", type=int, default=256)
    c.add_argument("--writes", type=int, default=16)
    c.add_argument("--min-write", type=int, default=4 * KiB)
    c.add_argument("--max-write", type=int, default=256 * KiB)
    v = sub.add_parser("vnb-lz4")
    v.add_argument("--level", type=int, default=2)
    s = sub.add_parser("sparse")
    s.add_argument("--data-bytes", type=int, default=1024 * MiB)
    s.add_argument("--layout", choices=("scattered", "region"), default="scattered")
    s.add_argument("--lz4", action="store_true")
    s.add_argument("--min-write", type=int, default=64 * KiB)
    s.add_argument("--max-write", type=int, default=4 * MiB)
    a = p.parse_args()
    for n in ("size", "min_write", "max_write"):
        if getattr(a, n, 0) % ALIGN:
            sys.exit(f"--{n.replace('_', '-')} must be a multiple of {ALIGN}")
    {"disk": make_disk, "chain": make_chain, "sparse": make_sparse, "vnb-lz4": make_vnb_lz4}[a.cmd](a)


if __name__ == "__main__":
    main()
