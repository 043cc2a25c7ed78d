#!/usr/bin/env python3
"""backupfs mounts of generated savesets: every image of every restore point equals its
reference byte for byte (two disks, one growing, 55 incrementals, holes, zero frames,
overwrites off 64 KiB boundaries), uncompressed and lz4; qemu-img map sees the holes and
qemu-img convert reads the content; parallel readers agree with the references.

Usage: test_mount_generated.py BUILD_DIR"""
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20
INCS = 55


def full_extents(disk, rng):
    """Data for non-zero 64 KiB blocks; zero blocks become zero frames or holes (no frame)."""
    out = []
    with open(disk.path, "rb") as f:
        for off in range(0, disk.size(), 65536):
            block = f.read(65536)
            kind = "data" if block.count(0) != len(block) else rng.choice(["zero", "hole"])
            if kind == "hole":
                continue
            if out and out[-1][0] == kind and out[-1][1] + out[-1][2] == off:
                out[-1][2] += len(block)
            else:
                out.append([kind, off, len(block)])
    return out


def build(build_dir, directory, lz4, seed):
    rng = random.Random(seed)
    work = directory + ".work"
    os.makedirs(work)
    vda = mountlib.Disk(work, "vda", 8 * MiB)
    vdb = mountlib.Disk(work, "vdb", 4 * MiB)
    for d in (vda, vdb):
        mountlib.random_writes(d, rng, 6)
    vda.write(5 * MiB, b"\x5a" * (512 * 300))  # a pattern run crossing 64 KiB boundaries
    s = mountlib.Saveset(build_dir, directory, lz4)
    # The full: written through explicit extents so that it has holes as well as zero frames.
    cpt = "virtnbdbackup.0"
    for d in (vda, vdb):
        s._write(d, os.path.join(directory, f"{d.name}.full.data"), cpt, "", "full",
                 full_extents(d, rng))
        d.changed = []
    with open(os.path.join(directory, f"vmconfig.{cpt}.xml"), "w") as f:
        f.write("<domain><name>demo</name></domain>\n")
    s.checkpoints = [cpt]
    s._save_cpt()
    s._snapshot(cpt, (vda, vdb))
    for i in range(1, INCS + 1):
        mountlib.random_writes(vda, rng, rng.randint(0, 4), max_len=200_000)
        if i % 3 == 0:
            mountlib.random_writes(vdb, rng, 1, max_len=100_000)
        if i % 7 == 0:  # a trim: the range reads as zeros from this point on
            off = 512 * rng.randrange(0, (vda.size() - 70_000) // 512)
            vda.zero(off, 512 * rng.randint(1, 130))
        if i == 20:  # vdb grows, and the new space gets data
            vdb.grow(6 * MiB)
            vdb.write(5 * MiB + 512, rng.randbytes(137 * 512))
        s.inc((vda, vdb))
    # Two differential backups since the last inc (the second holds the first's changes too),
    # and a copy backup outside the chain.
    s.points = list(s.checkpoints)
    for unixtime in (1_700_100_000, 1_700_200_000):
        mountlib.random_writes(vda, rng, 2, max_len=100_000)
        mountlib.random_writes(vdb, rng, 1, max_len=100_000)
        s.points.append(s.diff((vda, vdb), unixtime))
    mountlib.random_writes(vda, rng, 2)
    s.points.append(s.copy((vda, vdb)))
    return s


def check_all_points(s, mnt):
    shown = sorted(p for p in os.listdir(mnt) if p != "latest")
    if shown != sorted(s.points):
        raise AssertionError(f"restore points {shown}, want {sorted(s.points)}")
    for point in s.points:
        for disk in ("vda", "vdb"):
            image = os.path.join(mnt, point, f"{disk}.raw")
            if not mountlib.same_file(image, s.ref(point, disk)):
                raise AssertionError(f"{image} differs from its reference")
    if os.readlink(os.path.join(mnt, "latest")) != "copy":  # the newest backup
        raise AssertionError("latest does not point at the newest restore point")
    vmconfig = os.path.join(mnt, "virtnbdbackup.0", "vmconfig.xml")
    if open(vmconfig).read() != "<domain><name>demo</name></domain>\n":
        raise AssertionError("vmconfig.xml does not show the saved domain XML")
    if os.stat(os.path.join(mnt, "virtnbdbackup.20", "vdb.raw")).st_size != 6 * MiB:
        raise AssertionError("the grown disk does not have its new size")
    if os.stat(os.path.join(mnt, "virtnbdbackup.19", "vdb.raw")).st_size != 4 * MiB:
        raise AssertionError("the disk before growing does not keep its old size")
    mode = os.stat(os.path.join(mnt, "latest", "vda.raw")).st_mode & 0o777
    if mode != 0o440:
        raise AssertionError(f"images are mode {mode:o}, not 0440")


def check_qemu_img(mnt, s, tmp):
    image = os.path.join(mnt, "virtnbdbackup.0", "vda.raw")
    ref = s.ref("virtnbdbackup.0", "vda")
    mapping = json.loads(mountlib.run("qemu-img", "map", "--output=json", "-f", "raw", image).stdout)
    holes = [m for m in mapping if not m["data"]]
    if not holes:
        raise AssertionError("qemu-img map reports no hole in an image with holes")
    with open(ref, "rb") as f:  # every hole it reports must read as zeros
        for m in holes:
            f.seek(m["start"])
            if f.read(m["length"]).count(0) != m["length"]:
                raise AssertionError(f"qemu-img map calls non-zero data a hole: {m}")
    qcow = os.path.join(tmp, "out.qcow2")
    mountlib.run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", image, qcow)
    mountlib.run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", qcow, ref)
    sparse = os.path.join(tmp, "sparse.raw")
    mountlib.run("cp", "--sparse=always", image, sparse)
    if not mountlib.same_file(sparse, ref):
        raise AssertionError("cp --sparse=always of the image differs from the reference")


def check_parallel(mnt, s):
    rng = random.Random(9)
    jobs = []
    for _ in range(400):
        point = rng.choice(s.points)
        disk = rng.choice(["vda", "vdb"])
        size = os.path.getsize(s.ref(point, disk))
        off = rng.randrange(0, size - 1)
        jobs.append((point, disk, off, rng.randint(1, 300_000)))

    def read(job):
        point, disk, off, n = job
        with open(os.path.join(mnt, point, f"{disk}.raw"), "rb") as a, open(s.ref(point, disk), "rb") as b:
            a.seek(off)
            b.seek(off)
            return a.read(n) == b.read(n)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        if not all(pool.map(read, jobs)):
            raise AssertionError("a parallel read returned bytes that differ from the reference")


def main():
    build_dir = sys.argv[1]
    mountlib.require_fuse()
    with tempfile.TemporaryDirectory(prefix="bfs-gen-", dir="/var/tmp") as tmp:
        for lz4 in (None, "1"):
            label = "lz4" if lz4 else "raw"
            s = build(build_dir, os.path.join(tmp, label), lz4, seed=5)
            with mountlib.mounted(build_dir, s.dir) as (_, mnt):
                check_all_points(s, mnt)
                check_qemu_img(mnt, s, tmp)
                check_parallel(mnt, s)
            # Without verification and with -o splice, uncompressed data and zeros are answered
            # with file descriptors (fuse_reply_data), a separate reply path.
            with mountlib.mounted(build_dir, s.dir, "-o", "verify=off,splice") as (_, mnt):
                check_all_points(s, mnt)
                check_parallel(mnt, s)
            print(f"ok: {label}: {len(s.points)} restore points (incs, diffs, copy) x 2 disks equal "
                  "their references")
    return 0


if __name__ == "__main__":
    sys.exit(main())
