"""Guest files in the mount (issue 13), shared by test_mount_guest.py and
test_mount_guest_capture.sh: partitioned disk images built with the real tools (sfdisk,
mkfs.ext4 -d, mkswap, mkntfs, ntfs-3g) and changed across four restore points, a
crash-consistent ext4 image, hostile images, and the comparisons of a backupfs mount's
<disk>.parts/ and <disk>.files/ with what the kernel (loop mounts) and ntfs-3g show.

As a program (for the libvirt test):
  guestlib.py build OUTDIR              point{0..3}.{vda,vdb}.raw, crash.vdc.raw, fsck.vdc.raw
  guestlib.py runs OLD NEW              changed 64 KiB runs of NEW against OLD: "OFFSET LENGTH"
  guestlib.py check MNT POINT vda=RAW,vdb=RAW [POINT ...]   every comparison of one mount
  guestlib.py check-crash MNT POINT DISK CRASH_RAW FSCKED_RAW   the replayed journal's tree
  guestlib.py walk DIR                  a bounded walk of everything under DIR, as JSON"""
import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402
from mountlib import run  # noqa: E402

MiB = 1 << 20
BLOCK = 65536
SECTOR = 512
DISK_SIZE = 64 * MiB

# vda: GPT, 1 = ext4 (1 KiB blocks), 2 = NTFS. vdb: MBR, 1 = swap (a type we do not parse),
# 2 = extended, 5 = logical ext4 (4 KiB blocks). Fixed ids: the listings are compared.
GPT_SCRIPT = """label: gpt
label-id: 0F5B7C8A-1111-2222-3333-444455556666
first-lba: 2048
start=2048, size=49152, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root", uuid=1A2B3C4D-0000-4000-8000-000000000001
start=51200, size=69632, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="data", uuid=1A2B3C4D-0000-4000-8000-000000000002
"""
MBR_SCRIPT = """label: dos
label-id: 0x5eed1234
start=2048, size=8192, type=82
start=10240, size=110592, type=5
start=12288, size=65536, type=83
"""
EXT_UUIDS = {"vda": "6f1c2a40-1111-4c1e-9a0b-0000000000a1", "vdb": "6f1c2a40-2222-4c1e-9a0b-0000000000b5"}
# What each disk's .files/ directory must list.
FILES_NAMES = {"vda": ["1", "2"], "vdb": ["1.swap", "5"]}
FS_OF = {("vda", 1): "ext4", ("vda", 2): "ntfs", ("vdb", 5): "ext4"}
NS_TIMES = ["2001-02-03 04:05:06.123456789", "2019-12-31 23:59:59.999999999",
            "2024-06-07 08:09:10.000000001", "1999-01-01 00:00:00.5"]


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- partitions and loop devices

def partitions(image):
    """The partition table of IMAGE as sfdisk reads it: {number: (offset, size, type)}."""
    import json
    table = json.loads(run("sfdisk", "-J", image).stdout)["partitiontable"]
    out = {}
    for p in table["partitions"]:
        n = int(p["node"][len(image):])
        out[n] = (p["start"] * SECTOR, p["size"] * SECTOR, p["type"])
    return out


@contextlib.contextmanager
def loop_device(image, offset=0, size=None, ro=False):
    argv = ["losetup", "--find", "--show", "-o", str(offset)]
    if size is not None:
        argv += ["--sizelimit", str(size)]
    if ro:
        argv.append("-r")
    dev = run(*argv, image).stdout.strip()
    try:
        yield dev
    finally:
        mountlib.run("losetup", "-d", dev)


@contextlib.contextmanager
def fs_mounted(image, fstype, offset=0, size=None, ro=True, extra=()):
    """IMAGE[offset, offset+size) mounted by the kernel (ext4) or ntfs-3g (ntfs, its
    defaults plus ro): the reference a backupfs tree is compared with."""
    mnt = tempfile.mkdtemp(prefix="bfs-ref-", dir="/var/tmp")
    try:
        with loop_device(image, offset, size, ro=ro) as dev:
            if fstype == "ntfs":
                opts = ["ro"] if ro else []
                run("ntfs-3g", *(["-o", ",".join(opts + list(extra))] if opts or extra else []), dev, mnt)
            else:
                run("mount", "-t", fstype, "-o", ",".join((["ro"] if ro else ["rw"]) + list(extra)), dev, mnt)
            try:
                yield mnt
            finally:
                run("umount", mnt)
    finally:
        os.rmdir(mnt)


def write_at(image, offset, src):
    run("dd", f"if={src}", f"of={image}", "bs=1M", "oflag=seek_bytes", f"seek={offset}",
        "conv=notrunc,sparse", "status=none")


# ---------------------------------------------------------------- contents of the points

def touch_ns(path, when):
    run("touch", "-h", "-d", when, path)


def write_file(path, data, mode=None):
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def make_sparse(path, pieces, size):
    with open(path, "wb") as f:
        for off, data in pieces:
            f.seek(off)
            f.write(data)
        f.truncate(size)


def make_socket(path):
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(path)
    finally:
        s.close()


def content_point0(root, rng, ntfs):
    """The first point's tree (written into a staging dir for mkfs.ext4 -d, or into an ntfs-3g
    mount). NTFS gets what ntfs-3g's defaults can store (no owners, modes or device nodes)."""
    os.makedirs(os.path.join(root, "docs", "deep", "er"))
    write_file(os.path.join(root, "docs", "readme.txt"), b"hello from the guest\n", 0o644)
    write_file(os.path.join(root, "docs", "world.txt"), b"world-readable in the guest\n", 0o644)
    write_file(os.path.join(root, "docs", "deep", "er", "leaf"), rng.randbytes(5000))
    write_file(os.path.join(root, "big.bin"), rng.randbytes(1536 * 1024 + 77))
    write_file(os.path.join(root, "empty"), b"")
    write_file(os.path.join(root, "todelete.txt"), b"gone at point 1\n")
    write_file(os.path.join(root, "torename.txt"), b"renamed at point 1\n")
    make_sparse(os.path.join(root, "sparse.img"),
                [(0, rng.randbytes(64 * 1024)), (5 * MiB, rng.randbytes(70000))], 9 * MiB + 123)
    write_file(os.path.join(root, "hl_a"), b"hard linked\n")
    os.link(os.path.join(root, "hl_a"), os.path.join(root, "hl_b"))
    os.symlink("docs/readme.txt", os.path.join(root, "sym_short"))
    os.symlink("/" + "/".join(["long-target-component"] * 8), os.path.join(root, "sym_long"))
    os.symlink("../nowhere/at/all", os.path.join(root, "docs", "sym_dangling"))
    os.setxattr(os.path.join(root, "docs", "readme.txt"), "user.color", b"blue")
    os.setxattr(os.path.join(root, "big.bin"), "user.big", bytes(range(256)) * 3)
    os.setxattr(os.path.join(root, "docs"), "user.dir", b"a directory's xattr")
    if not ntfs:
        os.mkfifo(os.path.join(root, "fifo"))
        os.mknod(os.path.join(root, "null-c"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(root, "loop-b"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
        write_file(os.path.join(root, "docs", "owned65534"), b"guest uid 65534's own\n", 0o600)
        os.chown(os.path.join(root, "docs", "owned65534"), 65534, 65534)
        write_file(os.path.join(root, "docs", "owned1234"), b"guest uid 1234's\n", 0o640)
        os.chown(os.path.join(root, "docs", "owned1234"), 1234, 5678)
        os.makedirs(os.path.join(root, "private"), 0o700)
        os.chown(os.path.join(root, "private"), 1234, 1234)
        os.makedirs(os.path.join(root, "bin"))
        shutil.copyfile("/usr/bin/id", os.path.join(root, "bin", "suid-id"))
        os.chmod(os.path.join(root, "bin", "suid-id"), 0o4755)
    for i, p in enumerate(["docs/readme.txt", "big.bin", "sym_short", "docs", "hl_a"]):
        touch_ns(os.path.join(root, p), NS_TIMES[i % len(NS_TIMES)])


def change_point1(root, rng, ntfs):
    write_file(os.path.join(root, "docs", "new1.txt"), b"added at point 1\n")
    with open(os.path.join(root, "big.bin"), "r+b") as f:
        f.seek(700000)
        f.write(rng.randbytes(70000))
    os.remove(os.path.join(root, "todelete.txt"))
    os.rename(os.path.join(root, "torename.txt"), os.path.join(root, "docs", "renamed.txt"))
    os.link(os.path.join(root, "hl_a"), os.path.join(root, "docs", "hl_c"))
    os.setxattr(os.path.join(root, "docs", "readme.txt"), "user.color", b"red, now")
    with open(os.path.join(root, "sparse.img"), "r+b") as f:
        f.seek(7 * MiB)
        f.write(rng.randbytes(4096))
    if not ntfs:
        os.chmod(os.path.join(root, "empty"), 0o604)
        os.chown(os.path.join(root, "empty"), 2000, 2001)
        make_socket(os.path.join(root, "sock"))
    touch_ns(os.path.join(root, "sparse.img"), NS_TIMES[1])
    touch_ns(os.path.join(root, "docs", "new1.txt"), NS_TIMES[2])


def change_point2(root, rng, ntfs):
    many = os.path.join(root, "many")
    os.makedirs(many)
    for i in range(300):  # an indexed directory (ext4 htree, NTFS index allocation)
        write_file(os.path.join(many, f"file-{i:04d}-with-a-longer-name"), b"%d\n" % i)
    os.remove(os.path.join(root, "sym_short"))
    os.symlink("big.bin", os.path.join(root, "sym_short"))
    os.removexattr(os.path.join(root, "big.bin"), "user.big")
    os.remove(os.path.join(root, "hl_b"))
    with open(os.path.join(root, "big.bin"), "r+b") as f:
        f.truncate(MiB + 17)
    if not ntfs:
        os.mkfifo(os.path.join(root, "docs", "fifo2"))
    touch_ns(os.path.join(root, "big.bin"), NS_TIMES[3])


def change_point3(root, rng, ntfs):
    many = os.path.join(root, "many")
    for name in sorted(os.listdir(many))[3:]:
        os.remove(os.path.join(many, name))
    os.rename(os.path.join(root, "docs", "new1.txt"), os.path.join(root, "docs", "renamed.txt"))
    os.setxattr(os.path.join(root, "hl_a"), "user.added", b"at point 3")
    with open(os.path.join(root, "docs", "deep", "er", "leaf"), "ab") as f:
        f.write(rng.randbytes(3000))
    if not ntfs:
        os.chmod(os.path.join(root, "docs", "deep"), 0o751)
        os.chown(os.path.join(root, "hl_a"), 3000, 3000)
    touch_ns(os.path.join(root, "docs", "deep", "er", "leaf"), NS_TIMES[0])
    touch_ns(root, NS_TIMES[2])


CHANGES = [change_point1, change_point2, change_point3]


# ---------------------------------------------------------------- building the images

def mkfs_ext4_into(image, offset, size, staging, label, uuid, block_size):
    fsfile = image + ".fs"
    with open(fsfile, "wb") as f:
        f.truncate(size)
    run("mkfs.ext4", "-q", "-F", "-b", block_size, "-I", "256", "-L", label, "-U", uuid,
        "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", staging, fsfile)
    write_at(image, offset, fsfile)
    os.remove(fsfile)


def build_point0(workdir, rng):
    """vda and vdb of point 0 in WORKDIR: {disk: path}."""
    out = {}
    for disk, script in (("vda", GPT_SCRIPT), ("vdb", MBR_SCRIPT)):
        path = os.path.join(workdir, f"{disk}.raw")
        with open(path, "wb") as f:
            f.truncate(DISK_SIZE)
        run("sfdisk", "-q", path, input=script)
        out[disk] = path
    parts_a, parts_b = partitions(out["vda"]), partitions(out["vdb"])
    for disk, n, parts, label, bs in (("vda", 1, parts_a, "root", "1024"), ("vdb", 5, parts_b, "logical", "4096")):
        staging = os.path.join(workdir, f"staging-{disk}")
        content_point0(staging, rng, ntfs=False)
        off, size, _ = parts[n]
        mkfs_ext4_into(out[disk], off, size, staging, label, EXT_UUIDS[disk], bs)
        shutil.rmtree(staging)
    off, size, _ = parts_a[2]
    with loop_device(out["vda"], off, size) as dev:
        run("mkntfs", "-Q", "-F", "-q", "-L", "data", "-p", str(off // SECTOR), "-H", "255", "-S", "63", dev)
    with fs_mounted(out["vda"], "ntfs", off, size, ro=False) as m:
        content_point0(m, rng, ntfs=True)
    off, size, _ = parts_b[1]
    swap = out["vdb"] + ".swap"
    with open(swap, "wb") as f:
        f.truncate(size)
    run("mkswap", "-q", "-L", "swp", "-U", "5a5a5a5a-0000-4000-8000-00000000cafe", swap)
    write_at(out["vdb"], off, swap)
    os.remove(swap)
    return out


def apply_change(images, step, rng):
    """Point STEP+1 from point STEP, in place: every filesystem mounted read-write by the
    kernel (ext4) or ntfs-3g (NTFS) and changed the way a guest would."""
    change = CHANGES[step]
    for disk, n in (("vda", 1), ("vda", 2), ("vdb", 5)):
        off, size, _ = partitions(images[disk])[n]
        fstype = FS_OF[(disk, n)]
        with fs_mounted(images[disk], fstype, off, size, ro=False) as m:
            change(m, rng, ntfs=fstype == "ntfs")


def build_points(workdir, rng):
    """The four points' images, each its own copy: [{disk: path}] oldest first."""
    os.makedirs(workdir, exist_ok=True)
    cur = build_point0(workdir, rng)
    points = []
    for step in range(4):
        if step:
            apply_change(cur, step - 1, rng)
        snap = {}
        for disk, path in cur.items():
            snap[disk] = os.path.join(workdir, f"point{step}.{disk}.raw")
            run("cp", "--sparse=always", path, snap[disk])
        points.append(snap)
    for path in cur.values():
        os.remove(path)
    return points


def build_crash_ext4(workdir, rng, size=DISK_SIZE):
    """An unpartitioned ext4 copied while mounted (after writes and a sync), so its journal
    needs recovery, and an e2fsck -fy'ed copy of it: (crash, fscked)."""
    img = os.path.join(workdir, "live.vdc.raw")
    with open(img, "wb") as f:
        f.truncate(size)
    run("mkfs.ext4", "-q", "-F", "-L", "crashed", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
    crash = os.path.join(workdir, "crash.vdc.raw")
    with fs_mounted(img, "ext4", ro=False, extra=("commit=60",)) as m:
        write_file(os.path.join(m, "before-sync"), rng.randbytes(300000))
        os.makedirs(os.path.join(m, "journalled", "dir"))
        for i in range(40):
            write_file(os.path.join(m, "journalled", "dir", f"f{i}"), rng.randbytes(1000 + 97 * i))
        os.symlink("dir/f1", os.path.join(m, "journalled", "link"))
        os.setxattr(os.path.join(m, "journalled", "dir", "f2"), "user.j", b"journalled xattr")
        os.rename(os.path.join(m, "before-sync"), os.path.join(m, "journalled", "moved"))
        # fsync commits the transaction to the journal and writes nothing to its home
        # locations (sync(2) would also write back the block device's dirty buffers).
        for p in (os.path.join(m, "journalled", "dir", "f0"), os.path.join(m, "journalled")):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        run("cp", "--sparse=always", img, crash)
    os.remove(img)
    hdr = run("dumpe2fs", "-h", crash).stdout
    features = next(line for line in hdr.splitlines() if line.startswith("Filesystem features:"))
    if "needs_recovery" not in features:
        raise AssertionError(f"{crash} does not need recovery: {features}")
    # The journal must matter: without its replay the tree has no /journalled at all.
    unreplayed = subprocess.run(["debugfs", "-R", "stat /journalled", crash], capture_output=True, text=True)
    if "File not found" not in unreplayed.stdout + unreplayed.stderr:
        raise AssertionError(f"{crash}: /journalled reached its home blocks; the journal would not matter")
    fscked = os.path.join(workdir, "fsck.vdc.raw")
    run("cp", "--sparse=always", crash, fscked)
    r = subprocess.run(["e2fsck", "-fy", fscked], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise AssertionError(f"e2fsck -fy {fscked} exited {r.returncode}: {r.stdout}{r.stderr}")
    if mountlib.same_file(crash, fscked):
        raise AssertionError("e2fsck changed nothing: the journal held nothing to replay")
    return crash, fscked


def changed_runs(old, new):
    """64 KiB blocks of NEW that differ from OLD, merged into runs: [[offset, length]]."""
    out = []
    for _, off, length in mountlib.changed_extents(old, new, BLOCK):
        if out and out[-1][0] + out[-1][1] == off:
            out[-1][1] += length
        else:
            out.append([off, length])
    return out


# ---------------------------------------------------------------- comparisons

def lstat_fields(st):
    return {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "nlink": st.st_nlink,
            "rdev": (os.major(st.st_rdev), os.minor(st.st_rdev))}


def user_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return f"listxattr: {e.strerror}"
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names) if n.startswith("user.")}


def data_segments(path):
    """[(start, end)] of data as SEEK_DATA/SEEK_HOLE report it."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size and len(out) < 10000:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out


def check_holes_are_zero(what, root):
    """Every sparse* file under ROOT: the bytes outside SEEK_DATA's segments are zeros, and
    the segments hold every non-zero byte."""
    for d, _, names in os.walk(root):
        for n in names:
            path = os.path.join(d, n)
            if not n.startswith("sparse") or not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            data = open(path, "rb").read()
            pos = 0
            for start, end in data_segments(path) + [(len(data), len(data))]:
                if data[pos:start].count(0) != start - pos:
                    raise AssertionError(f"{what}: {os.path.relpath(path, root)}: SEEK_HOLE says "
                                         f"[{pos}, {start}) is a hole but it holds data")
                pos = end
            log(f"ok: {what}: {os.path.relpath(path, root)}: {data_segments(path)} hold all its data")


def tree(root):
    """{relative path: (lstat fields, symlink target, user xattrs)} of every entry, the root
    ('.') included, and the hard-link groups (sets of paths sharing an st_ino)."""
    entries, inodes = {}, {}
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in [""] + sorted(dirs + names) if d == root else sorted(dirs + names):
            p = os.path.join(d, n) if n else d
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            entries[rel] = (lstat_fields(st), target, user_xattrs(p))
            if not stat.S_ISDIR(st.st_mode):
                inodes.setdefault(st.st_ino, set()).add(rel)
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    return entries, groups


def compare_trees(what, want_root, got_root, skip=()):
    """diff -r, then every entry's lstat fields, symlink target and user.* xattrs, the hard-link
    groups, and SEEK_DATA/SEEK_HOLE on sparse files. SKIP: lstat fields not compared ("dir_fs":
    the size and link count of directories, which a copy onto another filesystem has its own; "seek": the
    SEEK_DATA/SEEK_HOLE check, block-size dependent)."""
    r = subprocess.run(["diff", "-r", "--no-dereference", want_root, got_root], capture_output=True, text=True)
    # diff opens no fifo, socket or device node, it names them: same type on both sides is fine
    # (their attributes are compared below).
    same_kind = re.compile(r"^File .* is a (fifo|socket|character special file|block special file) while file .* is a \1$")
    out = [line for line in r.stdout.splitlines() if not same_kind.match(line)]
    if r.returncode not in (0, 1) or out or r.stderr:
        raise AssertionError(f"{what}: diff -r {want_root} {got_root}:\n" + "\n".join(out[:50]) + r.stderr[:2000])
    want, want_groups = tree(want_root)
    got, got_groups = tree(got_root)
    if sorted(want) != sorted(got):
        raise AssertionError(f"{what}: entries differ: only in reference {sorted(set(want) - set(got))}, "
                             f"only in mount {sorted(set(got) - set(want))}")
    bad = []
    for rel in sorted(want):
        w, g = want[rel], got[rel]
        drop = set(skip)
        if "dir_fs" in skip and w[0]["mode"].startswith("0o4"):
            drop |= {"size", "nlink"}
        wf = {k: v for k, v in w[0].items() if k not in drop}
        gf = {k: v for k, v in g[0].items() if k not in drop}
        if (wf, w[1], w[2]) != (gf, g[1], g[2]):
            bad.append(f"  {rel}:\n    want {wf} {w[1]!r} {w[2]}\n    got  {gf} {g[1]!r} {g[2]}")
    if bad:
        raise AssertionError(f"{what}: {len(bad)} entries differ:\n" + "\n".join(bad[:20]))
    if want_groups != got_groups:
        raise AssertionError(f"{what}: hard links differ: want {want_groups}, got {got_groups}")
    for rel in want:
        if "seek" not in skip and os.path.basename(rel).startswith("sparse"):
            ws, gs = data_segments(os.path.join(want_root, rel)), data_segments(os.path.join(got_root, rel))
            if ws != gs:
                raise AssertionError(f"{what}: {rel}: SEEK_DATA/SEEK_HOLE: want {ws}, got {gs}")
    return len(want)


def blkid_export(image, offset=None, size=None):
    argv = ["blkid", "-p", "-o", "export"]
    if offset is not None:
        argv += ["--offset", str(offset), "--size", str(size)]
    r = subprocess.run(argv + [image], capture_output=True, text=True)
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def partx_entries(image):
    """{number: {START, SIZE, PART_ENTRY_TYPE, PART_ENTRY_NAME, PART_ENTRY_UUID}} by partx."""
    out = {}
    r = run("partx", "-g", "-o", "NR,START,SECTORS,TYPE,NAME,UUID", "-P", image)
    for line in r.stdout.splitlines():
        import shlex
        f = dict(kv.split("=", 1) for kv in shlex.split(line))
        out[int(f["NR"])] = {"START": str(int(f["START"]) * SECTOR), "SIZE": str(int(f["SECTORS"]) * SECTOR),
                             "PART_ENTRY_TYPE": f["TYPE"], "PART_ENTRY_NAME": f["NAME"],
                             "PART_ENTRY_UUID": f["UUID"]}
    return out


def parse_listing(text):
    """MNT/<point>/<disk>.parts/blkid: {'table': {...}, N: {...}} (values unquoted)."""
    import shlex
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        head, sep, rest = line.partition(": ")
        if sep and (head.isdigit() or head == "disk"):
            key = int(head) if head.isdigit() else head
        else:
            key, rest = "table", line
        out[key] = dict(kv.split("=", 1) for kv in shlex.split(rest))
    return out


def expected_listing(raw):
    """What the blkid listing of RAW must say, by blkid -p and partx on the raw image."""
    out = {}
    top = blkid_export(raw)
    out["table"] = {k: top[k] for k in ("PTTYPE", "PTUUID") if k in top}
    for n, e in partx_entries(raw).items():
        fs = blkid_export(raw, int(e["START"]), int(e["SIZE"]))
        want = dict(e)
        for k in ("TYPE", "LABEL", "UUID", "VERSION"):
            if fs.get(k):
                want[k] = fs[k]
        out[n] = {k: v for k, v in want.items() if v}
    return out


def check_parts(what, mnt_point, disk, raw):
    """<disk>.parts/: each partition file's bytes, the blkid listing, the user.blkid.* xattrs."""
    parts_dir = os.path.join(mnt_point, f"{disk}.parts")
    want = expected_listing(raw)
    got = parse_listing(open(os.path.join(parts_dir, "blkid")).read())
    for key, fields in want.items():
        if key not in got:
            raise AssertionError(f"{what}: {disk}.parts/blkid has no entry {key}: {got}")
        diff = {k: (v, got[key].get(k)) for k, v in fields.items() if got[key].get(k) != v}
        if diff:
            raise AssertionError(f"{what}: {disk}.parts/blkid entry {key}: (want, got) {diff}")
    numbers = sorted(k for k in want if isinstance(k, int))
    listed = sorted(n for n in os.listdir(parts_dir) if n != "blkid")
    if listed != sorted(map(str, numbers)):
        raise AssertionError(f"{what}: {disk}.parts/ lists {listed}, want {numbers} and blkid")
    with open(raw, "rb") as r:
        for n in numbers:
            path = os.path.join(parts_dir, str(n))
            off, size = int(want[n]["START"]), int(want[n]["SIZE"])
            if os.path.getsize(path) != size:
                raise AssertionError(f"{what}: {disk}.parts/{n} has {os.path.getsize(path)} bytes, want {size}")
            r.seek(off)
            with open(path, "rb") as p:
                left = size
                while left:
                    a, b = r.read(min(left, 4 * MiB)), p.read(min(left, 4 * MiB))
                    if a != b:
                        raise AssertionError(f"{what}: {disk}.parts/{n} differs from the raw image "
                                             f"at [{off}, {off + size})")
                    left -= len(a)
            xattrs = {k: os.getxattr(path, k) for k in os.listxattr(path) if k.startswith("user.blkid.")}
            want_x = {f"user.blkid.{k}": v.encode() for k, v in want[n].items()
                      if k in ("TYPE", "LABEL", "UUID", "VERSION", "PART_ENTRY_TYPE", "PART_ENTRY_NAME",
                               "PART_ENTRY_UUID")}
            if xattrs != want_x:
                raise AssertionError(f"{what}: {disk}.parts/{n} xattrs {xattrs}, want {want_x}")
    return numbers


def check_files(what, mnt_point, disk, raw, copy_dir=None):
    """<disk>.files/: the names, the symlink of an unparsed type, and every parsed tree against
    the reference mount of the same partition of RAW. COPY_DIR: `cp -a` each tree there and
    compare the copy too."""
    files = os.path.join(mnt_point, f"{disk}.files")
    names = sorted(os.listdir(files))
    if names != FILES_NAMES[disk]:
        raise AssertionError(f"{what}: {disk}.files/ lists {names}, want {FILES_NAMES[disk]}")
    for name in names:
        if "." in name:
            n = name.split(".")[0]
            link = os.readlink(os.path.join(files, name))
            if link != f"../{disk}.parts/{n}":
                raise AssertionError(f"{what}: {disk}.files/{name} -> {link}")
    parts = partitions(raw)
    for (d, n), fstype in FS_OF.items():
        if d != disk:
            continue
        off, size, _ = parts[n]
        got = os.path.join(files, str(n))
        with fs_mounted(raw, fstype, off, size) as ref:
            # ntfs-3g implements no SEEK_DATA (to it every byte is data): there the mount's
            # holes are checked to read as zeros instead.
            skip = ("seek",) if fstype == "ntfs" else ()
            count = compare_trees(f"{what} {disk}.files/{n} ({fstype})", ref, got, skip=skip)
            if fstype == "ntfs":
                check_holes_are_zero(f"{what} {disk}.files/{n}", got)
            if copy_dir is not None:
                dst = os.path.join(copy_dir, f"{disk}.{n}")
                run("cp", "-a", got, dst)
                compare_trees(f"{what} cp -a of {disk}.files/{n}", ref, dst, skip=("dir_fs", "seek"))
                shutil.rmtree(dst)
        log(f"ok: {what} {disk}.files/{n} ({fstype}): {count} entries equal the reference mount")


def check_point(mnt, point, raws, copy_dir=None):
    """Every check of one restore point: RAWS {disk: reference raw image}."""
    mp = os.path.join(mnt, point)
    for disk, raw in raws.items():
        if not mountlib.same_file(raw, os.path.join(mp, f"{disk}.raw")):
            raise AssertionError(f"{point}: {disk}.raw differs from its reference {raw}")
        numbers = check_parts(point, mp, disk, raw)
        log(f"ok: {point} {disk}.parts/ {numbers}: bytes, blkid listing and xattrs")
        check_files(point, mp, disk, raw, copy_dir)


def check_unpartitioned(mnt, point, disk, raw):
    """A disk without a partition table: <disk>.parts/ holds only the listing, which has a
    `disk:` line with blkid's TYPE, LABEL and UUID; <disk>.files/ holds `disk`."""
    parts = os.path.join(mnt, point, f"{disk}.parts")
    if sorted(os.listdir(parts)) != ["blkid"]:
        raise AssertionError(f"{point}: {disk}.parts/ lists {sorted(os.listdir(parts))}, want blkid only")
    got = parse_listing(open(os.path.join(parts, "blkid")).read()).get("disk", {})
    want = {k: v for k, v in blkid_export(raw).items() if k in ("TYPE", "LABEL", "UUID")}
    if {k: got.get(k) for k in want} != want:
        raise AssertionError(f"{point}: {disk}.parts/blkid disk entry {got}, want {want}")
    if sorted(os.listdir(os.path.join(mnt, point, f"{disk}.files"))) != ["disk"]:
        raise AssertionError(f"{point}: {disk}.files/ lists {os.listdir(os.path.join(mnt, point, f'{disk}.files'))}")
    log(f"ok: {point} {disk} (no partition table): listing {want}, files/disk")


def check_crash(mnt, point, disk, crash, fscked):
    """MNT/<point>/<disk>.files/disk (journal replayed in memory) == the e2fsck'ed copy."""
    check_unpartitioned(mnt, point, disk, crash)
    got = os.path.join(mnt, point, f"{disk}.files", "disk")
    with fs_mounted(fscked, "ext4") as ref:
        count = compare_trees(f"{point} {disk} (journal replayed)", ref, got)
    log(f"ok: {point} {disk}.files/disk: {count} entries equal the e2fsck'ed image")


# ---------------------------------------------------------------- mounts and hostile walks

@contextlib.contextmanager
def mounted_fg(build_dir, saveset, *options, log_path):
    """backupfs -f (its log in LOG_PATH) over SAVESET: yields (mountpoint, process); always
    unmounts and waits for the daemon to exit."""
    mnt = tempfile.mkdtemp(prefix="bfs-mnt-", dir="/var/tmp")
    os.chmod(mnt, 0o755)
    argv = [os.path.abspath(os.path.join(build_dir, "tools", "backupfs")), "-f", *options, saveset, mnt]
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
    try:
        mountlib.wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, "the mount", 60)
        if not os.path.ismount(mnt):
            raise RuntimeError(f"backupfs exited {proc.returncode}: {open(log_path).read()[-3000:]}")
        yield mnt, proc
    finally:
        if os.path.ismount(mnt):
            if subprocess.run(["fusermount3", "-u", mnt], capture_output=True).returncode != 0:
                subprocess.run(["fusermount3", "-u", "-z", mnt])
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mountlib.wait_for(lambda: not os.path.ismount(mnt), "unmount")
        os.rmdir(mnt)


def walk(root, max_entries=5000, max_depth=24):
    """Everything a user may do under ROOT, bounded (a hostile tree may loop or claim huge
    sizes): lstat, readdir, readlink, listxattr/getxattr, and reads of each regular file's
    first MiB and last 64 KiB. Returns {"entries": N, "errors": {errno name: [paths]}}."""
    import errno as errno_mod
    errors, count = {}, 0

    def note(path, e):
        errors.setdefault(errno_mod.errorcode.get(e.errno, str(e.errno)), []).append(path)

    stack = [(root, 0)]
    while stack and count < max_entries:
        path, depth = stack.pop()
        count += 1
        try:
            st = os.lstat(path)
            for name in os.listxattr(path, follow_symlinks=False):
                os.getxattr(path, name, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    f.read(MiB)
                    if st.st_size > MiB:
                        f.seek(max(0, st.st_size - BLOCK))
                        f.read(BLOCK)
            elif stat.S_ISDIR(st.st_mode) and depth < max_depth:
                for name in sorted(os.listdir(path)):
                    stack.append((os.path.join(path, name), depth + 1))
        except OSError as e:
            note(path, e)
    return {"entries": count, "errors": errors}


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "build" and len(argv) == 3:
        import random
        out = argv[2]
        rng = random.Random(13)
        points = build_points(out, rng)
        build_crash_ext4(out, rng)
        for p in points:
            log(" ".join(sorted(p.values())))
        return 0
    if cmd == "runs" and len(argv) == 4:
        for off, length in changed_runs(argv[2], argv[3]):
            print(off, length)
        return 0
    if cmd == "check" and len(argv) >= 5 and len(argv) % 2 == 1:
        with tempfile.TemporaryDirectory(prefix="bfs-cpa-", dir="/var/tmp") as copies:
            for i in range(3, len(argv), 2):
                raws = dict(kv.split("=", 1) for kv in argv[i + 1].split(","))
                check_point(argv[2], argv[i], raws, copies if i == 3 else None)
        return 0
    if cmd == "walk" and len(argv) == 3:
        import json
        print(json.dumps(walk(argv[2])))
        return 0
    if cmd == "check-crash" and len(argv) == 7:
        check_crash(*argv[2:7])
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
