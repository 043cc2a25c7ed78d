#!/usr/bin/env python3
"""Test data for bench/run-guest-bench.sh (not a test itself; run as root: it loop-mounts).

A disk with a GPT and one ext4 partition holding FILES regular files totalling TOTAL bytes in a
tree shaped like a system's: an /etc of ETC_FILES small text files, a /usr/share of many small
files, a /usr/lib of medium ones, a few large files in /var/lib, and symlinks. Two restore
points of disk vda, written with stream-tool (no libvirt):

  point 0 (full): the whole image (stream-tool's scan: all-zero 64 KiB blocks become zeros);
  point 1 (inc):  the same filesystem after the kernel's ext4 (rw loop mount) changed files in
                  /etc (rewritten, added, deleted, chmod) and elsewhere (rewritten small files,
                  an appended log, a deleted and a new large file); the incremental holds the
                  64 KiB blocks that differ between the two images.

Writes OUT/ref0.raw and OUT/ref1.raw (the two disks, sparse), OUT/saveset/ and OUT/tree.json
(counts, for the script's checks). Deterministic per --seed, except the ext4 metadata the kernel
and mke2fs time-stamp.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bench_saveset import Saveset, run  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
PART_START = 1 * MiB
BLOCK = 64 * KiB  # the incremental's granularity (stream-tool's scan uses the same)
WORDS = (b"listen port user group allow deny include path timeout enable disable level cache "
         b"server client key value default option = yes no 0 1 # local file dir log").split()


def lognormal_sizes(rng, n, median, sigma, lo, hi):
    return [int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def text(rng, n):
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) + b"\n"
    return bytes(out[:n])


def dirs(rng, root, count, depth):
    """count directory paths under root, up to depth levels, as a package tree looks."""
    out = [root]
    while len(out) < count:
        parent = rng.choice(out)
        if parent.count("/") - root.count("/") >= depth:
            continue
        out.append(f"{parent}/d{len(out):04d}")
    return out


def plan_tree(rng, a):
    """[(relative path, size, kind)] with kind 'text' or 'bin'; sizes sum to a.total."""
    n_small = int((a.files - a.etc_files - a.big_files) * 0.75)
    n_medium = a.files - a.etc_files - a.big_files - n_small
    files = []
    for name, count, ndirs, depth, sizes, kind in (
        ("etc", a.etc_files, 120, 2, lognormal_sizes(rng, a.etc_files, 700, 1.2, 16, 64 * KiB),
         "text"),
        ("usr/share", n_small, 1500, 5, lognormal_sizes(rng, n_small, 4 * KiB, 1.3, 64, 256 * KiB),
         "text"),
        ("usr/lib", n_medium, 400, 3,
         lognormal_sizes(rng, n_medium, 48 * KiB, 1.4, 1 * KiB, 8 * MiB), "bin"),
    ):
        where = dirs(rng, name, ndirs, depth)
        for i, size in enumerate(sizes):
            files.append((f"{rng.choice(where)}/f{i:05d}.{'conf' if name == 'etc' else 'x'}",
                          size, kind))
    rest = a.total - sum(s for _, s, _ in files)
    if rest < a.big_files * MiB:
        sys.exit(f"the small and medium files already take {a.total - rest} of {a.total} bytes")
    for i in range(a.big_files):
        size = rest // a.big_files + (rest % a.big_files if i == 0 else 0)
        files.append((f"var/lib/big/blob{i:02d}.img", size, "bin"))
    return files


def write_file(rng, path, size, kind):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        if kind == "text":
            f.write(text(rng, size))
            return
        for pos in range(0, size, 8 * MiB):
            f.write(rng.randbytes(min(8 * MiB, size - pos)))


def populate(rng, root, files, symlinks):
    for rel, size, kind in files:
        write_file(rng, os.path.join(root, rel), size, kind)
    for i in range(symlinks):
        rel, _, _ = rng.choice(files[:-1])
        link = os.path.join(root, os.path.dirname(rel), f"link{i:04d}")
        if not os.path.lexists(link):
            os.symlink(os.path.basename(rel), link)


def make_disk(a, tree, image):
    part_size = a.part_mib * MiB
    disk_size = PART_START + part_size + 1 * MiB  # room for the backup GPT
    with open(image, "wb") as f:
        f.truncate(disk_size)
    p = subprocess.run(["sfdisk", "-q", image], input=f"label: gpt\nstart={PART_START // 512}, "
                       f"size={part_size // 512}, type=L, name=root\n", text=True,
                       capture_output=True)
    if p.returncode:
        sys.exit(f"sfdisk {image}: {p.stdout}{p.stderr}")
    part = image + ".part"
    # Inode tables and journal written now: the kernel's lazy init would otherwise rewrite them
    # at the first rw mount and make the incremental as big as the filesystem.
    run("mkfs.ext4", "-q", "-F", "-L", "guestroot", "-E", "lazy_itable_init=0,lazy_journal_init=0",
        "-d", tree, part, f"{a.part_mib}M")
    run("dd", f"if={part}", f"of={image}", "bs=1M", f"seek={PART_START // MiB}", "conv=notrunc,sparse",
        "status=none")
    os.unlink(part)


def change(rng, mnt, files):
    """The second point: what a week of a system's life changes."""
    etc = [r for r, _, _ in files if r.startswith("etc/")]
    share = [r for r, _, _ in files if r.startswith("usr/share/")]
    big = [r for r, _, _ in files if r.startswith("var/lib/big/")]
    picked = rng.sample(etc, 110)
    for rel in picked[:60]:
        write_file(rng, os.path.join(mnt, rel), rng.randint(100, 4000), "text")
    for rel in picked[60:80]:
        os.unlink(os.path.join(mnt, rel))
    for rel in picked[80:90]:
        os.chmod(os.path.join(mnt, rel), 0o600)
    for i in range(20):
        write_file(rng, os.path.join(mnt, "etc", f"new{i:02d}.conf"), rng.randint(100, 3000), "text")
    for rel in rng.sample(share, 200):
        write_file(rng, os.path.join(mnt, rel), rng.randint(64, 16 * KiB), "text")
    os.makedirs(os.path.join(mnt, "var/log"), exist_ok=True)
    with open(os.path.join(mnt, "var/log/syslog"), "ab") as f:
        f.write(text(rng, 2 * MiB))
    os.unlink(os.path.join(mnt, big[-1]))
    write_file(rng, os.path.join(mnt, "var/lib/big/new.img"), 32 * MiB, "bin")


def changed_extents(old, new):
    """stream-tool --extents for the BLOCK-sized blocks of new that differ from old."""
    out = []
    with open(old, "rb") as f0, open(new, "rb") as f1:
        pos = 0
        while True:
            b0, b1 = f0.read(BLOCK), f1.read(BLOCK)
            if not b1:
                break
            if b0 != b1:
                if out and out[-1][0] + out[-1][1] == pos:
                    out[-1][1] += len(b1)
                else:
                    out.append([pos, len(b1)])
            pos += len(b1)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stream-tool", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--total", type=int, default=1024 * MiB, help="bytes in regular files")
    p.add_argument("--etc-files", type=int, default=1500)
    p.add_argument("--big-files", type=int, default=12)
    p.add_argument("--symlinks", type=int, default=300)
    p.add_argument("--part-mib", type=int, default=1536)
    a = p.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    files = plan_tree(rng, a)
    ref0, ref1 = os.path.join(a.out, "ref0.raw"), os.path.join(a.out, "ref1.raw")
    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        tree = os.path.join(tmp, "tree")
        populate(rng, tree, files, a.symlinks)
        make_disk(a, tree, ref0)
    run("cp", "--sparse=always", ref0, ref1)
    with tempfile.TemporaryDirectory(dir=a.out) as mnt:
        run("mount", "-t", "ext4", "-o", f"loop,offset={PART_START},sizelimit={a.part_mib * MiB}",
            ref1, mnt)
        try:
            change(rng, mnt, files)
        finally:
            run("umount", mnt)
    inc = changed_extents(ref0, ref1)
    s = Saveset(a.stream_tool, os.path.join(a.out, "saveset"), False)
    run(*s.write_argv(ref0, ""))  # empty --extents: stream-tool scans the whole image
    run(*s.write_argv(ref1, ",".join(f"data:{o}:{n}" for o, n in inc)))
    s.finish()
    info = {"files": len(files), "bytes": sum(n for _, n, _ in files),
            "etc_files": a.etc_files, "symlinks": a.symlinks,
            "inc_bytes": sum(n for _, n in inc), "inc_extents": len(inc)}
    with open(os.path.join(a.out, "tree.json"), "w") as f:
        json.dump(info, f)
    print(f"{a.out}: GPT disk, ext4 of {a.part_mib} MiB with {info['files']} files "
          f"({info['bytes'] >> 20} MiB); inc of {info['inc_bytes'] >> 20} MiB in "
          f"{info['inc_extents']} extents")


if __name__ == "__main__":
    main()
