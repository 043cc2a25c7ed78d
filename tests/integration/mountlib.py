"""Shared pieces of the mount integration tests: saveset generation from reference images
(through our writer, tests/stream-tool), and real backupfs mounts with guaranteed unmount."""
import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(SKIP)


def require_fuse():
    if os.geteuid() != 0:
        skip("needs root (FUSE mounts, loop devices)")
    if not os.path.exists("/dev/fuse"):
        skip("no /dev/fuse")
    if shutil.which("fusermount3") is None:
        sys.exit("fusermount3 missing: scripts/install-deps.sh installs fuse3")


def run(*argv, **kw):
    """Runs an argument vector; raises with its output on failure."""
    r = subprocess.run(list(map(str, argv)), capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def wait_for(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def mounted(build_dir, saveset, *options, expect_fail=False, cwd=None):
    """Mounts SAVESET with backupfs (in the background, as users run it) and always unmounts."""
    mnt = tempfile.mkdtemp(prefix="bfs-mnt-", dir="/var/tmp")
    argv = [os.path.abspath(os.path.join(build_dir, "tools", "backupfs")), *options, saveset, mnt]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    try:
        if expect_fail:
            yield r, mnt
            return
        if r.returncode != 0:
            raise RuntimeError(f"backupfs exited {r.returncode}: {r.stderr}")
        # backupfs returns only once the mount is ready: no waiting needed, but check it.
        if not os.path.ismount(mnt):
            raise RuntimeError("backupfs returned 0 but nothing is mounted")
        yield r, mnt
    finally:
        if os.path.ismount(mnt):
            for _ in range(100):
                if subprocess.run(["fusermount3", "-u", mnt], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                subprocess.run(["fusermount3", "-u", "-z", mnt])
        wait_for(lambda: not os.path.ismount(mnt), "unmount")
        os.rmdir(mnt)


def daemon_pid(mnt):
    """The pid of the backupfs daemon serving MNT (its last argument)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"backupfs" and argv[-1] == mnt.encode():
            return int(pid)
    raise RuntimeError(f"no backupfs daemon serves {mnt}")


def open_data_files(pid):
    """The data files (*.data) process PID has open, as paths."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".data") or target.endswith(".data (deleted)"):
            out.append(target)
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_file(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


class Disk:
    """A reference raw image and the chain of data files written for it."""

    def __init__(self, workdir, name, size):
        self.name = name
        self.path = os.path.join(workdir, f"{name}.ref.raw")
        with open(self.path, "wb") as f:
            f.truncate(size)
        self.changed = []  # extents since the last backup: (kind, offset, length)

    def size(self):
        return os.path.getsize(self.path)

    def write(self, offset, data):
        assert offset % 512 == 0 and len(data) % 512 == 0, "test writes are whole sectors"
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)
        self.changed.append(("data", offset, len(data)))

    def zero(self, offset, length):
        """Zeroes a range the way a trim does in our captures: a zero frame in the next inc."""
        assert offset % 512 == 0 and length % 512 == 0, "test writes are whole sectors"
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(bytes(length))
        self.changed.append(("zero", offset, length))

    def grow(self, new_size):
        with open(self.path, "r+b") as f:
            f.truncate(new_size)

    def extents(self):
        """The changed ranges, merged and sorted; later changes win where they overlap."""
        owner = {}
        # Resolve at 512-byte granularity: every test write is a multiple of 512.
        for kind, off, length in self.changed:
            for s in range(off // 512, (off + length) // 512):
                owner[s] = kind
        out = []
        for s in sorted(owner):
            kind = owner[s]
            if out and out[-1][0] == kind and out[-1][1] + out[-1][2] == s * 512:
                out[-1][2] += 512
            else:
                out.append([kind, s * 512, 512])
        return out


class Saveset:
    """Writes virtnbdbackup-layout savesets with stream-tool and keeps a reference per point."""

    def __init__(self, build_dir, directory, lz4=None, refs=None, domain="demo"):
        self.tool = os.path.join(build_dir, "tests", "stream-tool")
        self.dir = directory
        self.refs = refs or os.path.join(directory + ".refs")
        self.domain = domain
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.refs, exist_ok=True)
        self.lz4 = lz4
        self.checkpoints = []
        self.dates = 0

    def _date(self):
        self.dates += 1
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1_700_000_000 + 60 * self.dates)) + ".000000"

    def _write(self, disk, out, checkpoint, parent, level, extents=None):
        argv = [self.tool, "write", "--image", disk.path, "--output", out, "--disk", disk.name,
                "--checkpoint", checkpoint, "--level", level, "--date", self._date()]
        if parent:
            argv += ["--parent", parent]
        if self.lz4 is not None:
            argv += ["--lz4", self.lz4]
        if extents is not None:
            argv += ["--extents", ",".join(f"{k}:{o}:{n}" for k, o, n in extents)]
        run(*argv)

    def _snapshot(self, point, disks):
        for d in disks:
            shutil.copyfile(d.path, os.path.join(self.refs, f"{point}.{d.name}.raw"))

    def _save_cpt(self):
        with open(os.path.join(self.dir, f"{self.domain}.cpt"), "w") as f:
            json.dump(self.checkpoints, f)

    def full(self, disks):
        cpt = "virtnbdbackup.0"
        for d in disks:
            self._write(d, os.path.join(self.dir, f"{d.name}.full.data"), cpt, "", "full")
            d.changed = []
        with open(os.path.join(self.dir, f"vmconfig.{cpt}.xml"), "w") as f:
            f.write(f"<domain><name>{self.domain}</name><!-- {cpt} --></domain>\n")
        self.checkpoints = [cpt]
        self._save_cpt()
        self._snapshot(cpt, disks)
        return cpt

    def inc(self, disks):
        parent = self.checkpoints[-1]
        cpt = f"virtnbdbackup.{len(self.checkpoints)}"
        for d in disks:
            self._write(d, os.path.join(self.dir, f"{d.name}.inc.{cpt}.data"), cpt, parent, "inc",
                        d.extents())
            d.changed = []
        self.checkpoints.append(cpt)
        self._save_cpt()
        self._snapshot(cpt, disks)
        return cpt

    def diff(self, disks, unixtime):
        """A differential backup: every change since the last checkpoint (earlier diffs'
        included), named by its time; it creates no checkpoint."""
        parent = self.checkpoints[-1]
        point = str(unixtime)
        for d in disks:
            self._write(d, os.path.join(self.dir, f"{d.name}.diff.{point}.data"),
                        f"virtnbdbackup.{len(self.checkpoints)}", parent, "diff", d.extents())
        self._snapshot(point, disks)
        return point

    def copy(self, disks):
        """A copy backup: the whole disk, outside the chain."""
        for d in disks:
            self._write(d, os.path.join(self.dir, f"{d.name}.copy.data"), "", "", "copy")
        self._snapshot("copy", disks)
        return "copy"

    def ref(self, point, disk):
        return os.path.join(self.refs, f"{point}.{disk}.raw")


def random_writes(disk, rng, count, max_len=300_000):
    """Writes of random data at 512-byte aligned offsets (mostly not 64 KiB aligned)."""
    for _ in range(count):
        length = 512 * rng.randint(1, max_len // 512)
        offset = 512 * rng.randrange(0, (disk.size() - length) // 512)
        disk.write(offset, rng.randbytes(length))


class CaptureSaveset(Saveset):
    """A Saveset with each checkpoint's own files, as backupfs-capture and virtnbdbackup write
    them: vmconfig.<cpt>.xml (naming every disk, so virtnbdrestore can restore it),
    <disk>.<cpt>.qcow.json, a boot-file copy and checkpoints/<cpt>.xml with its parent. It
    continues a chain that a consolidation shortened: the checkpoint list is read back from
    <domain>.cpt, and the next inc follows the highest number (as backupfs-capture does)."""

    DOMAIN = "demo"

    def _point_files(self, cpt, parent, disks):
        devices = "".join(
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='/var/lib/libvirt/images/{self.DOMAIN}.{d.name}.qcow2'/>"
            f"<target dev='{d.name}' bus='virtio'/></disk>" for d in disks)
        with open(os.path.join(self.dir, f"vmconfig.{cpt}.xml"), "w") as f:
            f.write(f"<domain type='qemu'><name>{self.DOMAIN}</name><memory unit='MiB'>96</memory>"
                    f"<os><type arch='x86_64' machine='pc'>hvm</type></os>"
                    f"<devices>{devices}</devices><!-- {cpt} --></domain>\n")
        for d in disks:
            with open(os.path.join(self.dir, f"{d.name}.{cpt}.qcow.json"), "w") as f:
                json.dump({"virtual-size": d.size(), "format": "qcow2", "cluster-size": 65536,
                           "format-specific": {"type": "qcow2", "data": {
                               "compat": "1.1", "lazy-refcounts": False}}}, f)
        with open(os.path.join(self.dir, f"{self.DOMAIN}_VARS.fd.{cpt}"), "wb") as f:
            f.write(cpt.encode() * 64)
        os.makedirs(os.path.join(self.dir, "checkpoints"), exist_ok=True)
        with open(os.path.join(self.dir, "checkpoints", f"{cpt}.xml"), "w") as f:
            p = f"<parent><name>{parent}</name></parent>" if parent else ""
            f.write(f"<domaincheckpoint><name>{cpt}</name>{p}"
                    f"<creationTime>{1_700_000_000 + 60 * self.dates}</creationTime>"
                    f"<disks><disk name='vda' checkpoint='bitmap'/></disks></domaincheckpoint>\n")

    def reload_checkpoints(self):
        """Takes the checkpoint list from the saveset (after a consolidation shortened it)."""
        with open(os.path.join(self.dir, f"{self.DOMAIN}.cpt")) as f:
            self.checkpoints = json.load(f)

    def full(self, disks):
        cpt = super().full(disks)
        self._point_files(cpt, "", disks)
        return cpt

    def inc(self, disks):
        self.reload_checkpoints()
        parent = self.checkpoints[-1]
        cpt = f"virtnbdbackup.{int(parent.rsplit('.', 1)[1]) + 1}"
        for d in disks:
            self._write(d, os.path.join(self.dir, f"{d.name}.inc.{cpt}.data"), cpt, parent, "inc",
                        d.extents())
            d.changed = []
        self.checkpoints.append(cpt)
        self._point_files(cpt, parent, disks)
        self._save_cpt()
        self._snapshot(cpt, disks)
        return cpt


def changed_extents(old, new, block=65536):
    """The `block`-sized blocks of NEW that differ from OLD, as Disk.changed extents
    (kind, offset, length): data, or zero frames where the block is now all zero."""
    out = []
    with open(old, "rb") as a, open(new, "rb") as b:
        off = 0
        while True:
            x, y = a.read(block), b.read(block)
            if not y:
                break
            if x != y:
                kind = "zero" if y.count(0) == len(y) else "data"
                if out and out[-1][0] == kind and out[-1][1] + out[-1][2] == off:
                    out[-1][2] += len(y)
                else:
                    out.append([kind, off, len(y)])
            off += len(y)
    return [tuple(e) for e in out]
