#!/usr/bin/env python3
"""Guest files in the mount (issue 13), on savesets written by our writer (no libvirt):
- a GPT disk (ext4 + NTFS) and an MBR disk (swap, extended, logical ext4) changed across four
  restore points: every point's <disk>.parts/ (bytes, blkid listing, xattrs) and <disk>.files/
  trees equal the kernel's loop mounts (ntfs-3g for NTFS) of that point's raw image: diff -r,
  lstat of every path, symlink targets, user.* xattrs, hard links, SEEK_DATA/SEEK_HOLE; a
  `cp -a` out of the mount equals the tree;
- an ext4 copied while mounted (journal needing recovery) shows the e2fsck'ed tree, and the
  mount log says the journal was replayed;
- hostile images (the fuzzers' corpora and our own: overlapping and out-of-range MBR entries,
  a GPT claiming 10,000 entries, a directory loop, a huge inode size, an extent past the disk)
  can be walked completely: clean errors, the daemon alive, the problem named in the log;
- security: -o allow_other with the default umask keeps other users out of guest files
  whatever the guest's modes and uids; umask=0222 (or gid= of the user's group) lets them
  read world-readable ones, and the guest's modes keep them out of the others; the mount
  is nosuid,nodev: a setuid guest binary runs without privileges, a device node cannot be opened.

Usage: test_mount_guest.py BUILD_DIR"""
import glob
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestlib  # noqa: E402
import mountlib  # noqa: E402
from guestlib import MiB, log, run  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = 65534


# ---------------------------------------------------------------- savesets

def guest_saveset(build_dir, tmp, points, crash):
    """Full + 3 incs of vda and vdb (the points' images, changed 64 KiB blocks only), vdc the
    crashed ext4 (unchanged after the full). Returns (saveset dir, point names)."""
    disks = {name: mountlib.Disk(tmp, name, guestlib.DISK_SIZE) for name in ("vda", "vdb", "vdc")}
    s = mountlib.Saveset(build_dir, os.path.join(tmp, "saveset"))
    names = []
    for i, images in enumerate(points):
        for name, img in list(images.items()) + ([("vdc", crash)] if i == 0 else []):
            disks[name].changed = mountlib.changed_extents(disks[name].path, img)
            shutil.copyfile(img, disks[name].path)
        names.append(s.full(list(disks.values())) if i == 0 else s.inc(list(disks.values())))
    return s.dir, names


def mbr_hostile(path):
    """4 MiB: an ext4 in partition 1, partition 2 overlapping it, 3 far past the disk's end,
    4 starting inside the table and running past the end."""
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    fs = path + ".fs"
    with open(fs, "wb") as f:
        f.truncate(2 * MiB)
    run("mkfs.ext4", "-q", "-F", "-L", "overlapped", fs)
    guestlib.write_at(path, MiB, fs)
    os.remove(fs)
    entries = [(2048, 4096, 0x83), (3000, 4096, 0x83), (1 << 31, 1000, 0x83), (100, 0xFFFFFFFF, 0x07)]
    table = b"".join(struct.pack("<B3sB3sII", 0, b"\0\0\0", t, b"\0\0\0", start, size)
                     for start, size, t in entries)
    with open(path, "r+b") as f:
        f.seek(440)
        f.write(struct.pack("<I", 0xBADC0DE))
        f.seek(446)
        f.write(table + b"\x55\xaa")


def gpt_hostile(path):
    """A valid GPT (one ext4 partition) whose primary header then claims 10,000 entries, with
    both CRCs recomputed so the claim looks genuine."""
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
    run("sfdisk", "-q", path, input="label: gpt\nstart=2048, size=8192, type=L\n")
    with open(path, "r+b") as f:
        f.seek(512)
        hdr = bytearray(f.read(92))
        n, esize = 10000, struct.unpack_from("<I", hdr, 84)[0]
        f.seek(2 * 512)
        entries = f.read(n * esize)
        struct.pack_into("<I", hdr, 80, n)
        struct.pack_into("<I", hdr, 88, zlib.crc32(entries))
        struct.pack_into("<I", hdr, 16, 0)
        struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr)))
        f.seek(512)
        f.write(hdr)


def ext4_hostile(tmp, name, debugfs_cmds, prepare):
    """An unpartitioned 8 MiB ext4 filled by PREPARE(root), then damaged with debugfs -w."""
    path = os.path.join(tmp, f"{name}.img")
    staging = os.path.join(tmp, f"{name}.d")
    os.makedirs(staging)
    prepare(staging)
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
    run("mkfs.ext4", "-q", "-F", "-d", staging, path)
    shutil.rmtree(staging)
    for c in debugfs_cmds:
        run("debugfs", "-w", "-R", c, path)
    return path


def inode_of(image, path):
    out = run("debugfs", "-R", f"stat {path}", image).stdout
    return int(out.split("Inode:")[1].split()[0])


def hostile_images(tmp):
    """{disk name: (image, {what the log must name})}."""
    out = {}
    corpus = sorted(glob.glob(os.path.join(REPO, "fuzz", "corpus", "fuzz_partitions", "*")) +
                    glob.glob(os.path.join(REPO, "fuzz", "corpus", "fuzz_guestfs", "*")))
    for i, src in enumerate(corpus):
        dst = os.path.join(tmp, f"fz{i:03d}.img")
        shutil.copyfile(src, dst)
        size = os.path.getsize(dst)
        with open(dst, "r+b") as f:
            f.truncate(max(512, -(-size // 512) * 512))
        out[f"fz{i:03d}"] = (dst, set())
    mbr = os.path.join(tmp, "hmbr.img")
    mbr_hostile(mbr)
    out["hmbr"] = (mbr, set())
    gpt = os.path.join(tmp, "hgpt.img")
    gpt_hostile(gpt)
    out["hgpt"] = (gpt, set())

    def tree(root):
        os.makedirs(os.path.join(root, "a", "b"))
        guestlib.write_file(os.path.join(root, "a", "b", "f"), b"inside the loop\n")
        guestlib.write_file(os.path.join(root, "huge"), b"x" * 5000)
        guestlib.write_file(os.path.join(root, "past"), os.urandom(20000))
        guestlib.write_file(os.path.join(root, "fine"), b"readable\n")

    loop = ext4_hostile(tmp, "hloop", ["link /a /a/b/up"], tree)
    out["hloop"] = (loop, set())
    huge = ext4_hostile(tmp, "hhuge", ["sif /huge size 0x7fffffffffffff"], tree)
    out["hhuge"] = (huge, set())
    past = ext4_hostile(tmp, "hpast", [], tree)
    run("debugfs", "-w", "-R", "sif /past block[5] 0x7ffffff", past)
    out["hpast"] = (past, {"hpast", str(inode_of(past, "/past"))})
    return out


# ---------------------------------------------------------------- the checks

def check_points(mnt, names, points, tmp):
    for i, (name, images) in enumerate(zip(names, points)):
        guestlib.check_point(mnt, name, images, tmp if i == len(names) - 1 else None)


def check_crash(mnt, names, crash, fscked, log_path):
    for name in (names[0], names[-1]):
        guestlib.check_crash(mnt, name, "vdc", crash, fscked)
    text = open(log_path, errors="replace").read()
    lines = [line for line in text.splitlines() if "vdc" in line and "journal" in line.lower()]
    if not any("replay" in line.lower() or "recover" in line.lower() for line in lines):
        raise AssertionError(f"the mount log says nothing of vdc's journal replay:\n{text[-3000:]}")
    log(f"ok: the mount log: {lines[0].strip()}")


def as_user(uid, *argv):
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60)


def as_nobody(*argv):
    return as_user(NOBODY, *argv)


def expect_denied(path, why, uid=NOBODY):
    r = as_user(uid, "cat", path)
    if r.returncode == 0 or "Permission denied" not in r.stderr:
        raise AssertionError(f"uid {uid} reads {path} ({why}): rc {r.returncode} {r.stdout!r} {r.stderr!r}")
    log(f"ok: uid {uid} cannot read {os.path.basename(path)} ({why})")


def check_mount_flags(mnt):
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == mnt:
            opts = f[5].split(",")
            if "nosuid" not in opts or "nodev" not in opts:
                raise AssertionError(f"{mnt} is mounted {f[5]}, want nosuid,nodev")
            log(f"ok: the mount's options: {f[5]}")
            return
    raise AssertionError(f"{mnt} not in /proc/self/mountinfo")


def check_guest_dir_modes(mnt, point, mode):
    """<disk>.parts and <disk>.files carry the raw image's owner and the mount's directory mode."""
    raw = os.stat(os.path.join(mnt, point, "vda.raw"))
    for sub in ("vda.parts", "vda.files"):
        st = os.stat(os.path.join(mnt, point, sub))
        if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (mode, raw.st_uid, raw.st_gid):
            raise AssertionError(f"{sub} is {oct(st.st_mode)} {st.st_uid}:{st.st_gid}, want "
                                 f"{oct(mode)} {raw.st_uid}:{raw.st_gid} (vda.raw's owner)")
    log(f"ok: vda.parts and vda.files are {oct(mode)}, owned like vda.raw")


def check_security(build_dir, saveset, point, tmp):
    files = f"{point}/vda.files/1"
    log_path = os.path.join(tmp, "security.log")
    with guestlib.mounted_fg(build_dir, saveset, "-o", "allow_other", log_path=log_path) as (mnt, _):
        check_mount_flags(mnt)
        check_guest_dir_modes(mnt, point, 0o550)
        root = os.path.join(mnt, files)
        if os.stat(os.path.join(root, "docs", "world.txt")).st_mode & 0o777 != 0o644:
            raise AssertionError("docs/world.txt is not 0644 in the guest tree")
        expect_denied(os.path.join(root, "docs", "world.txt"), "0644 in the guest, default umask")
        if os.stat(os.path.join(root, "docs", "owned65534")).st_uid != NOBODY:
            raise AssertionError("docs/owned65534 is not owned by guest uid 65534")
        expect_denied(os.path.join(root, "docs", "owned65534"), "guest uid == host uid, default umask")
        expect_denied(os.path.join(mnt, point, "vda.parts", "1"), "partition file, default umask")
        with open(os.path.join(root, "docs", "owned1234"), "rb") as f:
            f.read()  # root reads everything
        try:
            os.open(os.path.join(root, "null-c"), os.O_RDONLY)
            raise AssertionError("a guest device node opened on a nodev mount")
        except PermissionError:
            log("ok: a guest device node cannot be opened (nodev)")
    with guestlib.mounted_fg(build_dir, saveset, "-o", "allow_other,umask=0222", log_path=log_path) as (mnt, _):
        check_guest_dir_modes(mnt, point, 0o555)
        root = os.path.join(mnt, files)
        r = as_nobody("cat", os.path.join(root, "docs", "world.txt"))
        if r.returncode != 0 or r.stdout != "world-readable in the guest\n":
            raise AssertionError(f"umask=0222: nobody cannot read world.txt: {r.stderr}")
        log("ok: umask=0222: nobody reads the world-readable guest file")
        expect_denied(os.path.join(root, "docs", "owned1234"), "0640 1234:5678 in the guest, umask=0222")
        suid = os.path.join(root, "bin", "suid-id")
        st = os.stat(suid)
        if st.st_mode & 0o7777 != 0o4755 or st.st_uid != 0:
            raise AssertionError(f"bin/suid-id is {oct(st.st_mode)} uid {st.st_uid}, want 04755 root")
        r = as_nobody(suid)
        if r.returncode != 0 or "uid=65534" not in r.stdout or "euid=" in r.stdout:
            raise AssertionError(f"the setuid guest binary: rc {r.returncode}: {r.stdout!r} {r.stderr!r}")
        log(f"ok: a setuid guest binary runs without privileges (nosuid): {r.stdout.strip()}")
    # gid=65534: nobody's group may read the raw image, so inside the guest's modes decide;
    # uid 65533 (another group) still gets nowhere, whatever the guest says.
    with guestlib.mounted_fg(build_dir, saveset, "-o", "allow_other,gid=65534", log_path=log_path) as (mnt, _):
        root = os.path.join(mnt, files)
        for path, want in ((os.path.join(mnt, point, "vda.raw"), None),
                           (os.path.join(root, "docs", "world.txt"), "world-readable in the guest\n")):
            # The raw image is binary: read its first MiB, do not decode it.
            r = as_nobody("cat", path) if want is not None else \
                as_nobody("dd", f"if={path}", "of=/dev/null", "bs=1M", "count=1", "status=none")
            if r.returncode != 0 or (want is not None and r.stdout != want):
                raise AssertionError(f"gid=65534: nobody cannot read {path}: {r.stderr}")
        log("ok: gid=65534: nobody reads vda.raw and the world-readable guest file")
        expect_denied(os.path.join(root, "docs", "owned1234"), "0640 1234:5678 in the guest, gid=65534")
        expect_denied(os.path.join(root, "docs", "world.txt"), "0644 in the guest, not in the mount's group",
                      uid=65533)


def check_hostile(build_dir, tmp):
    images = hostile_images(tmp)
    disks = []
    for name, (img, _) in images.items():
        d = mountlib.Disk(tmp, name, os.path.getsize(img))
        shutil.copyfile(img, d.path)
        disks.append(d)
    s = mountlib.Saveset(build_dir, os.path.join(tmp, "hostile"))
    point = s.full(disks)
    log_path = os.path.join(tmp, "hostile.log")
    with guestlib.mounted_fg(build_dir, s.dir, log_path=log_path) as (mnt, proc):
        for name, (img, must_name) in images.items():
            results = {}
            for sub in (f"{name}.parts", f"{name}.files"):
                if not os.path.isdir(os.path.join(mnt, point, sub)):
                    raise AssertionError(f"{point}/{sub} is not a directory (it always must be)")
                r = subprocess.run([sys.executable, guestlib.__file__, "walk", os.path.join(mnt, point, sub)],
                                   capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    raise AssertionError(f"walking {name}/{sub} failed: {r.stderr[-2000:]}")
                results[sub] = json.loads(r.stdout)
            if proc.poll() is not None:
                raise AssertionError(f"backupfs exited ({proc.returncode}) while walking {name}")
            if not mountlib.same_file(img, os.path.join(mnt, point, f"{name}.raw")):
                raise AssertionError(f"{name}.raw no longer reads right after the walk")
            text = open(log_path, errors="replace").read()
            eio = [p for res in results.values() for p in res["errors"].get("EIO", [])]
            if eio and name not in text:
                raise AssertionError(f"{name}: EIO on {eio[:5]} but the mount log does not name {name}")
            for word in must_name:
                if not any(name in line and word in line for line in text.splitlines()):
                    raise AssertionError(f"{name}: no log line names {name} and {word}:\n{text[-3000:]}")
            if name == "hpast" and not any(p.endswith("/past") for p in eio):
                raise AssertionError(f"hpast: reading /past (extent past the disk) gave no EIO: {results}")
            summary = {sub: (res["entries"], {k: len(v) for k, v in res["errors"].items()})
                       for sub, res in results.items()}
            log(f"ok: hostile {name}: walked {summary}, the daemon answers")
        os.listdir(mnt)
    log(f"ok: {len(images)} hostile images walked; the mount log has {len(open(log_path).readlines())} lines")


def main():
    build_dir = os.path.abspath(sys.argv[1])
    mountlib.require_fuse()
    for tool in ("sfdisk", "mkfs.ext4", "mkswap", "mkntfs", "ntfs-3g", "debugfs", "blkid", "partx",
                 "setpriv", "losetup", "dumpe2fs", "e2fsck"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: scripts/install-deps.sh installs it")
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="bfs-guest-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o755)
        points = guestlib.build_points(os.path.join(tmp, "images"), rng)
        crash, fscked = guestlib.build_crash_ext4(os.path.join(tmp, "images"), rng)
        saveset, names = guest_saveset(build_dir, tmp, points, crash)
        log(f"built 4 points of vda (GPT: ext4, NTFS), vdb (MBR: swap, extended, logical ext4), "
            f"vdc (ext4 needing recovery): {names}")
        log_path = os.path.join(tmp, "mount.log")
        with guestlib.mounted_fg(build_dir, saveset, log_path=log_path) as (mnt, _):
            check_points(mnt, names, points, tmp)
            check_crash(mnt, names, crash, fscked, log_path)
        check_security(build_dir, saveset, names[-1], tmp)
        check_hostile(build_dir, tmp)
    print("PASS: guest partitions and files of 4 restore points, a replayed journal, hostile images, "
          "allow_other/umask/nosuid/nodev")
    return 0


if __name__ == "__main__":
    sys.exit(main())
