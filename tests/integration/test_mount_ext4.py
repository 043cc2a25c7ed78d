#!/usr/bin/env python3
"""An ext4 filesystem backed up and changed across restore points: loop-mounting each
restore point's image read-only from a backupfs mount shows exactly the files of that point.

Usage: test_mount_ext4.py BUILD_DIR"""
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20


@contextlib.contextmanager
def loop_mounted(image, *options):
    mnt = tempfile.mkdtemp(prefix="bfs-loop-", dir="/var/tmp")
    mountlib.run("mount", "-o", ",".join(("loop",) + options), image, mnt)
    try:
        yield mnt
    finally:
        mountlib.run("umount", mnt)
        os.rmdir(mnt)


def files_of(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if n != "lost+found":
                out[os.path.relpath(p, root)] = mountlib.sha256(p)
    return out


def main():
    build_dir = sys.argv[1]
    mountlib.require_fuse()
    if shutil.which("mkfs.ext4") is None:
        sys.exit("mkfs.ext4 missing: scripts/install-deps.sh installs e2fsprogs")
    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="bfs-ext4-", dir="/var/tmp") as tmp:
        disk = mountlib.Disk(tmp, "vda", 64 * MiB)
        mountlib.run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                     disk.path)
        s = mountlib.Saveset(build_dir, os.path.join(tmp, "saveset"), lz4=None)
        expected = {}
        steps = [
            lambda m: [open(os.path.join(m, f"f{i}"), "wb").write(rng.randbytes(rng.randint(1, 3 * MiB)))
                       for i in range(6)],
            lambda m: (os.remove(os.path.join(m, "f1")),
                       open(os.path.join(m, "f2"), "r+b").write(rng.randbytes(70_000)),
                       os.makedirs(os.path.join(m, "dir")),
                       open(os.path.join(m, "dir", "new"), "wb").write(rng.randbytes(500_000))),
            lambda m: (os.remove(os.path.join(m, "f3")),
                       subprocess.run(["fstrim", m], capture_output=True),
                       open(os.path.join(m, "f4"), "ab").write(rng.randbytes(1_000_000))),
            lambda m: open(os.path.join(m, "dir", "new"), "r+b").write(b"changed"),
        ]
        prev = os.path.join(tmp, "prev.raw")
        for n, step in enumerate(steps):
            shutil.copyfile(disk.path, prev)
            with loop_mounted(disk.path) as m:
                step(m)
                expected[f"virtnbdbackup.{n}"] = files_of(m)
            if n == 0:
                s.full([disk])
            else:
                disk.changed = mountlib.changed_extents(prev, disk.path)
                s.inc([disk])
        with mountlib.mounted(build_dir, s.dir) as (_, mnt):
            for point, files in expected.items():
                image = os.path.join(mnt, point, "vda.raw")
                with loop_mounted(image, "ro", "noload") as m:
                    got = files_of(m)
                if got != files:
                    raise AssertionError(f"{point}: files differ:\n got {got}\nwant {files}")
                print(f"ok: {point}: {len(files)} files with the right checksums")
    return 0


if __name__ == "__main__":
    sys.exit(main())
