#!/usr/bin/env python3
"""A live backupfs mount follows its savesets (generated ones; test_mount_live.sh does the same
with backupfs-capture and virtnbdbackup):
- a new incremental shows within 5 s, `latest` moves, unchanged points keep their inode
  numbers, and a file held open across the change keeps reading its old content;
- while another process holds the saveset's lock (a writer at work) the new point stays
  hidden, and shows once the lock is gone;
- a consolidated chain (full + inc merged, the inc removed) and a removed point: the points
  go, the changed ones get new inode numbers and read their new content, and files held open
  on the old ones keep reading the old bytes; the same with backupfs-restore -a consolidate
  (its journal and lock) under the mount;
- broken-chain.* directories are shown read-only under their saveset and named at mount;
- a saveset moved away and back; -o allow_empty mounts an empty directory that later fills;
- a mount over a directory of monthly savesets of two domains: MNT/<saveset>/<point>, `latest`
  by natural name order (2026-9 before 2026-10), no data file open until a saveset is used,
  at most -o open_files data files open over many savesets, a saveset removed and another
  replaced under the mount.

Usage: test_mount_live.py BUILD_DIR"""
import fcntl
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20
VISIBLE_WITHIN = 5.0  # seconds, from the issue


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def make(build_dir, tmp, name, incs=2, domain="demo", seed=1, directory=None):
    rng = random.Random(seed)
    work = os.path.join(tmp, "work", name)
    os.makedirs(work)
    vda = mountlib.Disk(work, "vda", 4 * MiB)
    mountlib.random_writes(vda, rng, 6)
    s = mountlib.Saveset(build_dir, directory or os.path.join(tmp, name),
                         refs=os.path.join(work, "refs"), domain=domain)
    s.disk, s.rng = vda, rng
    s.full([vda])
    for _ in range(incs):
        mountlib.random_writes(vda, rng, 3)
        s.inc([vda])
    return s


def add_inc(s):
    mountlib.random_writes(s.disk, s.rng, 3)
    return s.inc([s.disk])


def points(mnt):
    return sorted(os.listdir(mnt))


def check_images(mnt, s, names, prefix=""):
    for p in names:
        image = os.path.join(mnt, prefix, p, "vda.raw")
        expect(mountlib.same_file(image, s.ref(p, "vda")), f"{image} differs from its reference")


def wait_visible(path, what):
    start = time.monotonic()
    mountlib.wait_for(lambda: os.path.exists(path), what, timeout=VISIBLE_WITHIN)
    return time.monotonic() - start


def check_follows(build_dir, tmp):
    s = make(build_dir, tmp, "follow")
    with mountlib.mounted(build_dir, s.dir) as (_, mnt):
        expect(os.readlink(os.path.join(mnt, "latest")) == "virtnbdbackup.2", "latest at mount")
        before = {p: os.stat(os.path.join(mnt, p, "vda.raw")).st_ino for p in s.checkpoints}
        held = open(os.path.join(mnt, "latest", "vda.raw"), "rb")
        try:
            cpt = add_inc(s)
            took = wait_visible(os.path.join(mnt, cpt), f"{cpt} to show in the mount")
            print(f"ok: {cpt} showed {took:.2f} s after it was written")
            mountlib.wait_for(lambda: os.readlink(os.path.join(mnt, "latest")) == cpt,
                              "latest to move", timeout=VISIBLE_WITHIN)
            check_images(mnt, s, s.checkpoints)
            for p, ino in before.items():
                expect(os.stat(os.path.join(mnt, p, "vda.raw")).st_ino == ino,
                       f"{p}/vda.raw changed its inode number although its chain did not change")
            # The file opened as latest before the change still reads virtnbdbackup.2.
            with open(s.ref("virtnbdbackup.2", "vda"), "rb") as ref:
                held.seek(0)
                expect(held.read() == ref.read(), "a file held open across the change reads wrong")
        finally:
            held.close()
        check_busy(s, mnt)


def check_busy(s, mnt):
    """A writer's lock on the saveset keeps the new point hidden until it is released."""
    fd = os.open(s.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cpt = add_inc(s)
        deadline = time.monotonic() + 2.5  # several poll intervals: it must stay hidden
        while time.monotonic() < deadline:
            expect(cpt not in os.listdir(mnt), f"{cpt} showed while the saveset was locked")
            time.sleep(0.1)
    finally:
        os.close(fd)  # releases the lock
    took = wait_visible(os.path.join(mnt, cpt), f"{cpt} to show once the lock is gone")
    check_images(mnt, s, [cpt])
    print(f"ok: a locked saveset keeps its new point hidden; shown {took:.2f} s after the unlock")


def write_full_from(s, point, checkpoint):
    """Consolidation by hand: a new full backup holding `point`'s content, with `checkpoint`,
    written aside and renamed over vda.full.data (sidecar index first)."""
    aside = os.path.join(os.path.dirname(s.dir), "consolidate-" + os.path.basename(s.dir))
    os.makedirs(aside)
    out = os.path.join(aside, "vda.full.data")
    mountlib.run(s.tool, "write", "--image", s.ref(point, "vda"), "--output", out, "--disk", "vda",
                 "--checkpoint", checkpoint, "--level", "full", "--date", s._date())
    for f in sorted(os.listdir(aside), key=lambda n: n.endswith(".data")):
        os.rename(os.path.join(aside, f), os.path.join(s.dir, f))
    os.rmdir(aside)


def check_consolidated(build_dir, tmp):
    s = make(build_dir, tmp, "consolidate", incs=3)
    with mountlib.mounted(build_dir, s.dir) as (_, mnt):
        ino = {p: os.stat(os.path.join(mnt, p)).st_ino for p in s.checkpoints}
        held0 = open(os.path.join(mnt, "virtnbdbackup.0", "vda.raw"), "rb")
        held3 = open(os.path.join(mnt, "virtnbdbackup.3", "vda.raw"), "rb")
        try:
            # Full + inc 1 merged into a full with checkpoint virtnbdbackup.1; inc 1 removed.
            write_full_from(s, "virtnbdbackup.1", "virtnbdbackup.1")
            os.remove(os.path.join(s.dir, "vda.inc.virtnbdbackup.1.data"))
            want = ["latest", "virtnbdbackup.1", "virtnbdbackup.2", "virtnbdbackup.3"]
            mountlib.wait_for(lambda: points(mnt) == want, f"the mount to show {want}",
                              timeout=VISIBLE_WITHIN)
            check_images(mnt, s, want[1:])
            for p in want[1:]:
                expect(os.stat(os.path.join(mnt, p)).st_ino != ino[p],
                       f"{p} kept its inode number although its chain changed")
            # Retention: the newest point removed.
            os.remove(os.path.join(s.dir, "vda.inc.virtnbdbackup.3.data"))
            mountlib.wait_for(lambda: os.readlink(os.path.join(mnt, "latest")) == "virtnbdbackup.2",
                              "latest to go back to virtnbdbackup.2", timeout=VISIBLE_WITHIN)
            expect("virtnbdbackup.3" not in points(mnt), "a removed point is still shown")
            for held, p in ((held0, "virtnbdbackup.0"), (held3, "virtnbdbackup.3")):
                with open(s.ref(p, "vda"), "rb") as ref:
                    held.seek(0)
                    expect(held.read() == ref.read(), f"{p}, held open, reads wrong after it went")
        finally:
            held0.close()
            held3.close()
    print("ok: consolidated and removed points go; open files keep their bytes; new inodes")


def check_real_consolidation(build_dir, tmp):
    s = make(build_dir, tmp, "rolling", incs=3)
    restore = os.path.join(build_dir, "tools", "backupfs-restore")
    with mountlib.mounted(build_dir, s.dir) as (_, mnt):
        ino = os.stat(os.path.join(mnt, "virtnbdbackup.2")).st_ino
        with open(os.path.join(mnt, "virtnbdbackup.1", "vda.raw"), "rb") as held:
            # libvirt out of reach: the saveset is consolidated all the same.
            mountlib.run(restore, "-a", "consolidate", "-i", s.dir, "-u", "virtnbdbackup.2",
                         "-U", f"qemu+unix:///system?socket={tmp}/no-libvirt.sock")
            want = ["latest", "virtnbdbackup.2", "virtnbdbackup.3"]
            mountlib.wait_for(lambda: points(mnt) == want, f"the mount to show {want}",
                              timeout=VISIBLE_WITHIN)
            check_images(mnt, s, want[1:])
            expect(os.stat(os.path.join(mnt, "virtnbdbackup.2")).st_ino != ino,
                   "the consolidated point kept its inode number")
            with open(s.ref("virtnbdbackup.1", "vda"), "rb") as ref:
                expect(held.read() == ref.read(), "a folded point held open reads wrong")
    print("ok: backupfs-restore -a consolidate under a live mount")


def check_broken_chain(build_dir, tmp):
    s = make(build_dir, tmp, "withbroken", incs=1)
    b = make(build_dir, tmp, "setaside", incs=1, seed=7,
             directory=os.path.join(s.dir, "broken-chain.1767261600"))
    os.makedirs(os.path.join(s.dir, ".backupfs-consolidate"))  # a dot-directory: never shown
    with mountlib.mounted(build_dir, s.dir) as (r, mnt):
        expect(points(mnt) == ["broken-chain.1767261600", "latest", "virtnbdbackup.0",
                               "virtnbdbackup.1"], f"unexpected entries {points(mnt)}")
        expect("broken-chain.1767261600" in r.stderr, f"not named at mount: {r.stderr!r}")
        check_images(mnt, b, b.checkpoints, "broken-chain.1767261600")
        expect(os.readlink(os.path.join(mnt, "latest")) == "virtnbdbackup.1", "latest")
        try:
            open(os.path.join(mnt, "broken-chain.1767261600", "latest", "vda.raw"), "r+b")
            raise AssertionError("a broken chain's image opened for writing")
        except OSError:
            pass
    print("ok: broken-chain.* shown read-only under its saveset, named at mount")


def check_moved_away(build_dir, tmp):
    s = make(build_dir, tmp, "moving", incs=1)
    with mountlib.mounted(build_dir, s.dir) as (_, mnt):
        os.rename(s.dir, s.dir + ".away")
        mountlib.wait_for(lambda: points(mnt) == [], "the points to go with their directory",
                          timeout=VISIBLE_WITHIN)
        os.rename(s.dir + ".away", s.dir)
        wait_visible(os.path.join(mnt, "virtnbdbackup.1"), "the points to come back")
        check_images(mnt, s, s.checkpoints)
    empty = os.path.join(tmp, "later")
    os.makedirs(empty)
    with mountlib.mounted(build_dir, empty, "-o", "allow_empty") as (r, mnt):
        expect(points(mnt) == [], f"an empty saveset shows {points(mnt)}")
        expect("no restore point yet" in r.stderr, f"no notice at mount: {r.stderr!r}")
        s = make(build_dir, tmp, "later-gen", incs=1, directory=empty)
        wait_visible(os.path.join(mnt, "virtnbdbackup.1"), "the first backups to show")
        check_images(mnt, s, s.checkpoints)
    print("ok: a saveset moved away and back; -o allow_empty shows backups as they arrive")


def check_collection(build_dir, tmp):
    coll = os.path.join(tmp, "webvm")
    os.makedirs(coll)
    months = ["2026-9", "2026-10", "2026-11"]
    sets = {m: make(build_dir, tmp, m, incs=2, seed=i, directory=os.path.join(coll, m))
            for i, m in enumerate(months)}
    # Another domain's saveset side by side, a dot-directory and a directory of other files.
    sets["2026-08-dbvm"] = make(build_dir, tmp, "db", incs=1, domain="dbvm", seed=9,
                                directory=os.path.join(coll, "2026-08-dbvm"))
    os.makedirs(os.path.join(coll, ".snapshots"))
    os.makedirs(os.path.join(coll, "notes"))
    with open(os.path.join(coll, "notes", "README"), "w") as f:
        f.write("not a saveset\n")
    with mountlib.mounted(build_dir, coll, "-o", "open_files=4") as (_, mnt):
        pid = mountlib.daemon_pid(mnt)
        expect(points(mnt) == sorted(["latest", *sets]), f"unexpected savesets {points(mnt)}")
        expect(mountlib.open_data_files(pid) == [], "data files open before any saveset was used")
        expect(os.readlink(os.path.join(mnt, "latest")) == "2026-11",
               f"latest is {os.readlink(os.path.join(mnt, 'latest'))}, want 2026-11 (natural order)")
        for name, s in sets.items():
            expect(os.readlink(os.path.join(mnt, name, "latest")) == s.checkpoints[-1],
                   f"{name}/latest is wrong")
            check_images(mnt, s, s.checkpoints, name)
            opened = mountlib.open_data_files(pid)
            expect(len(opened) <= 4, f"{len(opened)} data files open with open_files=4: {opened}")
        expect(open(os.path.join(mnt, "2026-08-dbvm", "virtnbdbackup.0", "vmconfig.xml")).read()
               .startswith("<domain><name>dbvm</name>"), "the other domain's vmconfig.xml")
        check_collection_changes(build_dir, tmp, coll, mnt, sets)
    print("ok: a directory of savesets (two domains): natural-order latest, lazy opens, "
          "open_files bound, savesets removed, replaced and added under the mount")


def check_collection_changes(build_dir, tmp, coll, mnt, sets):
    held = open(os.path.join(mnt, "2026-9", "latest", "vda.raw"), "rb")
    try:
        shutil.rmtree(os.path.join(coll, "2026-9"))
        mountlib.wait_for(lambda: "2026-9" not in points(mnt), "a removed saveset to go",
                          timeout=VISIBLE_WITHIN)
        with open(sets["2026-9"].ref("virtnbdbackup.2", "vda"), "rb") as ref:
            expect(held.read() == ref.read(), "a file held open in a removed saveset reads wrong")
    finally:
        held.close()
    ino = os.stat(os.path.join(mnt, "2026-10")).st_ino
    other = make(build_dir, tmp, "replacement", incs=1, seed=11)
    shutil.rmtree(os.path.join(coll, "2026-10"))
    os.rename(other.dir, os.path.join(coll, "2026-10"))
    mountlib.wait_for(lambda: os.stat(os.path.join(mnt, "2026-10")).st_ino != ino,
                      "a replaced saveset to get a new node", timeout=VISIBLE_WITHIN)
    expect(points(os.path.join(mnt, "2026-10")) == ["latest", "virtnbdbackup.0", "virtnbdbackup.1"],
           f"the replaced saveset shows {points(os.path.join(mnt, '2026-10'))}")
    check_images(mnt, other, other.checkpoints, "2026-10")
    s = make(build_dir, tmp, "2026-12", incs=0, seed=12, directory=os.path.join(coll, "2026-12"))
    wait_visible(os.path.join(mnt, "2026-12", "virtnbdbackup.0"), "a new month to show")
    mountlib.wait_for(lambda: os.readlink(os.path.join(mnt, "latest")) == "2026-12",
                      "the top-level latest to move", timeout=VISIBLE_WITHIN)
    check_images(mnt, s, s.checkpoints, "2026-12")


def main():
    build_dir = sys.argv[1]
    mountlib.require_fuse()
    with tempfile.TemporaryDirectory(prefix="bfs-live-", dir="/var/tmp") as tmp:
        check_follows(build_dir, tmp)
        check_consolidated(build_dir, tmp)
        check_real_consolidation(build_dir, tmp)
        check_broken_chain(build_dir, tmp)
        check_moved_away(build_dir, tmp)
        check_collection(build_dir, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
