#!/usr/bin/env python3
"""backupfs on bad savesets and under stress: empty or missing directories refuse to mount
with a clear message; a corrupted byte gives EIO on the covering read (never data) while the
rest reads correctly; a broken chain, a leftover .partial, unrelated files and a stale index
cost only the affected restore points; reads past the end, writes, and an unmount with
reads in flight neither crash nor hang.

Usage: test_mount_faults.py BUILD_DIR"""
import errno
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20


def make(build_dir, directory, lz4=None, incs=4):
    rng = random.Random(3)
    os.makedirs(directory + ".work")
    vda = mountlib.Disk(directory + ".work", "vda", 4 * MiB)
    mountlib.random_writes(vda, rng, 8)
    s = mountlib.Saveset(build_dir, directory, lz4)
    s.full([vda])
    for _ in range(incs):
        mountlib.random_writes(vda, rng, 3)
        s.inc([vda])
    return s


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def check_refuses(build_dir, tmp):
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    with open(os.path.join(empty, "notes.txt"), "w") as f:
        f.write("not a backup\n")
    for directory, needle in ((empty, "no restore point"), (os.path.join(tmp, "missing"), "missing")):
        with mountlib.mounted(build_dir, directory, expect_fail=True) as (r, mnt):
            expect(r.returncode != 0, f"backupfs mounted {directory}")
            expect(needle in r.stderr, f"message does not say why: {r.stderr!r}")
            expect(not os.path.ismount(mnt), "something got mounted")


def flip_byte_in_chunk(s, name, point):
    """Flips a byte in the middle of the first data chunk of a data file; returns the disk
    offset of that byte."""
    dump = mountlib.run(os.path.join(s.tool.rsplit("/tests/", 1)[0], "tools", "backupfs-restore"),
                        "-a", "dump", "-i", s.dir).stdout
    import json
    entry = next(e for e in json.loads(dump) if e["dataFile"] == name)
    frame = next(f for f in entry["frames"] if f["kind"] == "data")
    path = os.path.join(s.dir, name)
    payload = frame["fileOffset"] + 40
    stored = frame.get("storedSize", frame["length"])
    with open(path, "r+b") as f:
        f.seek(payload + stored // 2)
        b = f.read(1)
        f.seek(payload + stored // 2)
        f.write(bytes([b[0] ^ 0x10]))
    return frame["start"] + frame["length"] // 2


def check_corruption(build_dir, tmp, lz4):
    s = make(build_dir, os.path.join(tmp, "corrupt-" + (lz4 or "raw")), lz4)
    bad = "vda.inc.virtnbdbackup.2.data"
    disk_offset = flip_byte_in_chunk(s, bad, "virtnbdbackup.2")
    if lz4:  # no sidecar: lz4's own checksums must catch it
        os.remove(os.path.join(s.dir, bad + ".idx"))
    with mountlib.mounted(build_dir, s.dir) as (_, mnt):
        image = os.path.join(mnt, "virtnbdbackup.2", "vda.raw")
        fd = os.open(image, os.O_RDONLY)
        try:
            os.pread(fd, 4096, disk_offset & ~4095)
            raise AssertionError("reading a corrupted chunk returned data")
        except OSError as e:
            expect(e.errno == errno.EIO, f"corrupted read failed with {e}, not EIO")
        finally:
            os.close(fd)
        # Points whose chain does not hold the bad file read correctly in full.
        for point in ("virtnbdbackup.0", "virtnbdbackup.1"):
            expect(mountlib.same_file(os.path.join(mnt, point, "vda.raw"), s.ref(point, "vda")),
                   f"{point} is wrong although its chain is intact")
        # In the damaged image, a range that the bad chunk does not cover still reads.
        with open(image, "rb") as f, open(s.ref("virtnbdbackup.2", "vda"), "rb") as ref:
            for off in range(0, 4 * MiB, 64 * 1024):
                try:
                    f.seek(off)
                    got = f.read(4096)
                except OSError:
                    continue
                ref.seek(off)
                expect(got == ref.read(4096), f"wrong data at {off} next to a corrupted chunk")


def check_partial_damage(build_dir, tmp):
    s = make(build_dir, os.path.join(tmp, "broken"), incs=5)
    os.remove(os.path.join(s.dir, "vda.inc.virtnbdbackup.3.data"))
    with open(os.path.join(s.dir, "vda.inc.virtnbdbackup.6.data.partial"), "wb") as f:
        f.write(b"meta 0000000000000000 00000000000")  # an interrupted backup
    with open(os.path.join(s.dir, "vdc.inc.virtnbdbackup.1.data"), "wb") as f:
        f.write(os.urandom(1000))  # garbage with a data file's name
    with open(os.path.join(s.dir, "README"), "w") as f:
        f.write("unrelated\n")
    # A stale index: the full's index replaced by inc 1's.
    shutil.copyfile(os.path.join(s.dir, "vda.inc.virtnbdbackup.1.data.idx"),
                    os.path.join(s.dir, "vda.full.data.idx"))
    with mountlib.mounted(build_dir, s.dir) as (r, mnt):
        shown = sorted(os.listdir(mnt))
        expect(shown == ["latest", "virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"],
               f"unexpected restore points {shown}")
        for needle in ("virtnbdbackup.3", ".partial", "vdc.inc.virtnbdbackup.1.data",
                       "vda.full.data.idx"):
            expect(needle in r.stderr, f"the mount does not report {needle}: {r.stderr}")
        for point in ("virtnbdbackup.0", "virtnbdbackup.1", "virtnbdbackup.2"):
            expect(mountlib.same_file(os.path.join(mnt, point, "vda.raw"), s.ref(point, "vda")),
                   f"{point} differs from its reference")
        expect(os.readlink(os.path.join(mnt, "latest")) == "virtnbdbackup.2", "latest is wrong")


def check_names(build_dir, tmp):
    """A saveset given by a relative path still shows its per-point files once the daemon is
    in the background (it changes to /); a checkpoint name that cannot be a directory is
    refused with a message, not shown."""
    s = make(build_dir, os.path.join(tmp, "relative"), incs=1)
    with mountlib.mounted(build_dir, "relative", cwd=tmp) as (_, mnt):
        expect(open(os.path.join(mnt, "virtnbdbackup.0", "vmconfig.xml")).read().startswith("<domain>"),
               "vmconfig.xml unreadable when the saveset was given by a relative path")
    bad = os.path.join(tmp, "badname")
    os.makedirs(bad)
    mountlib.run(s.tool, "write", "--image", s.ref("virtnbdbackup.0", "vda"), "--output",
                 os.path.join(bad, "vda.full.data"), "--checkpoint", "latest")
    with mountlib.mounted(build_dir, bad, expect_fail=True) as (r, _):
        expect(r.returncode == 1 and "cannot be shown as a directory" in r.stderr,
               f"a restore point named 'latest' was not refused: {r.returncode} {r.stderr}")


def check_edges(build_dir, tmp):
    s = make(build_dir, os.path.join(tmp, "edges"), incs=1)
    with mountlib.mounted(build_dir, s.dir) as (_, mnt):
        image = os.path.join(mnt, "latest", "vda.raw")
        with open(image, "rb") as f:
            f.seek(4 * MiB - 10)
            expect(len(f.read(100)) == 10, "a read across the end is not cut at the end")
            f.seek(4 * MiB + 4096)
            expect(f.read(10) == b"", "a read past the end returned data")
        for flags in (os.O_WRONLY, os.O_RDWR):
            try:
                os.close(os.open(image, flags))
                raise AssertionError("an image opened for writing")
            except OSError as e:
                expect(e.errno in (errno.EROFS, errno.EACCES), f"open for writing: {e}")
        # Unmount with readers in flight: lazy unmount, readers finish, the daemon exits.
        pid = int(subprocess.run(["pgrep", "-f", "backupfs .*" + mnt], capture_output=True,
                                 text=True).stdout.split()[0])
        stop = threading.Event()
        failures = []
        reads = [0] * 4  # each reader counts its own

        def reader(i):
            try:
                with open(image, "rb") as f:
                    while not stop.is_set():
                        f.seek(random.randrange(0, 4 * MiB))
                        f.read(65536)
                        reads[i] += 1
            except OSError as e:
                failures.append(e)

        def all_read_since(before):
            return failures or all(n > b for n, b in zip(reads, before))

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        mountlib.wait_for(lambda: all_read_since([0] * 4), "every reader to open and read")
        mountlib.run("fusermount3", "-u", "-z", mnt)
        detached = list(reads)
        mountlib.wait_for(lambda: all_read_since(detached),
                          "every reader to read again after the lazy unmount")
        stop.set()
        for t in threads:
            t.join()
        mountlib.wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the daemon to exit", 20)
        expect(not failures, f"readers failed during a lazy unmount: {failures}")


def main():
    build_dir = sys.argv[1]
    mountlib.require_fuse()
    with tempfile.TemporaryDirectory(prefix="bfs-faults-", dir="/var/tmp") as tmp:
        check_refuses(build_dir, tmp)
        print("ok: empty and missing savesets are refused with a message")
        check_corruption(build_dir, tmp, None)
        check_corruption(build_dir, tmp, "1")
        print("ok: a flipped byte gives EIO, never data; intact ranges and points still read")
        check_partial_damage(build_dir, tmp)
        print("ok: a broken chain, .partial leftovers, garbage and a stale index cost only "
              "what they touch")
        check_names(build_dir, tmp)
        print("ok: relative saveset paths; restore point names that cannot be directories")
        check_edges(build_dir, tmp)
        print("ok: reads past the end, writes, and a lazy unmount under load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
