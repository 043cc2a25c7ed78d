#!/usr/bin/env python3
"""backupfs-restore -a consolidate and -a retention on generated savesets (two disks, one
growing, zeroed ranges, uncompressed and lz4), checked through real backupfs mounts, -a verify,
-a restore --format raw and virtnbdrestore 1.9.15 (the peer):
- a consolidation at virtnbdbackup.3 leaves points 3-5 byte-identical and nothing of 0-2 (no
  file, no checkpoint, no staging directory); the chain continues with new incs, consolidated
  again ten times (by point and by retention --keep-last), exact every round;
- --dry-run changes nothing and names exactly the files a real run removes;
- retention by count, by age (dates near now), both (union), and a kept diff keeping its
  checkpoint; a diff against a folded checkpoint folded; diff and copy points refused;
- -o NEWDIR: a standalone saveset of one point, the source untouched, a used NEWDIR refused;
- bad input: an unknown point, a broken chain, a second writer (refused at once, naming the
  lock holder's pid), a full filesystem (everything as it was);
- a mount that has images open while the saveset is consolidated keeps reading exact bytes
  (or EIO, never wrong bytes).

Usage: test_consolidate_generated.py BUILD_DIR"""
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20
DISKS = ("vda", "vdb")
# Consolidations must not reach a libvirtd that may run on the machine: the folded checkpoints
# are left pending, as when libvirt is down.
NO_LIBVIRT = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def cpt(n):
    return f"virtnbdbackup.{n}"


class Tools:
    def __init__(self, build_dir):
        self.build = os.path.abspath(build_dir)
        self.restore = os.path.join(self.build, "tools", "backupfs-restore")

    def run(self, *args, rc=0, timeout=300):
        argv = [self.restore, *map(str, args)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if r.returncode != rc:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}, want {rc}:\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    def consolidate(self, d, point, *extra, rc=0):
        return self.run("-a", "consolidate", "-i", d, "-u", point, "-U", NO_LIBVIRT, *extra, rc=rc)

    def retention(self, d, *extra, rc=0):
        return self.run("-a", "retention", "-i", d, "-U", NO_LIBVIRT, *extra, rc=rc)


def make_chain(build_dir, directory, lz4, seed, incs=5, date=None):
    """A full and INCS incs of vda (8 MiB) and vdb (4 MiB, grown to 6 MiB at the second inc),
    random writes and zeroed ranges between points."""
    rng = random.Random(seed)
    work = directory + ".work"
    os.makedirs(work)
    disks = [mountlib.Disk(work, "vda", 8 * MiB), mountlib.Disk(work, "vdb", 4 * MiB)]
    s = mountlib.CaptureSaveset(build_dir, directory, lz4)
    if date is not None:
        s._date = date
    s.rng = rng
    s.disks = disks
    s.extents = {}  # inc -> disk -> its extents
    for d in disks:
        mountlib.random_writes(d, rng, 12)
    s.full(disks)
    for i in range(1, incs + 1):
        next_inc(s, grow=i == 2)
    return s


def next_inc(s, grow=False):
    vda, vdb = s.disks
    rng = s.rng
    mountlib.random_writes(vda, rng, 4, max_len=200_000)
    mountlib.random_writes(vdb, rng, 2, max_len=100_000)
    vda.zero(512 * rng.randrange(0, (vda.size() - 200_000) // 512), 512 * rng.randint(1, 300))
    vdb.zero(512 * rng.randrange(0, (vdb.size() - 100_000) // 512), 512 * rng.randint(1, 150))
    if grow:
        vdb.grow(6 * MiB)
        vdb.write(5 * MiB + 512, rng.randbytes(137 * 512))
    extents = {d.name: d.extents() for d in s.disks}
    point = s.inc(s.disks)
    s.extents[point] = extents
    return point


def state(directory):
    """Every file under the saveset: path -> (sha256, size, mtime)."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            st = os.lstat(path)
            out[rel] = (mountlib.sha256(path) if os.path.isfile(path) else "dir", st.st_size,
                        st.st_mtime_ns)
    return out


def expect_same_state(before, after, what):
    if before == after:
        return
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    raise AssertionError(f"{what}: the saveset changed: {changed}")


def check_mount(tools, s, points, latest):
    """A fresh mount shows exactly POINTS, each disk equal to its reference."""
    with mountlib.mounted(tools.build, s.dir) as (_, mnt):
        shown = sorted(p for p in os.listdir(mnt) if p != "latest")
        expect(shown == sorted(points), f"{s.dir}: mount shows {shown}, want {sorted(points)}")
        for p in points:
            for disk in DISKS:
                image = os.path.join(mnt, p, f"{disk}.raw")
                expect(mountlib.same_file(image, s.ref(p, disk)),
                       f"{image} differs from its reference")
        got = os.readlink(os.path.join(mnt, "latest"))
        expect(got == latest, f"latest -> {got}, want {latest}")


def point_number(name):
    m = re.search(r"virtnbdbackup\.(\d+)(?:\.|$)", name)
    return int(m.group(1)) if m else None


def check_consolidated(tools, s, point, kept, folded, old_full_mtimes):
    """The directory after a consolidation at POINT: nothing of FOLDED, the checkpoint list is
    KEPT, the new fulls are POINT without parent and keep the old fulls' mtimes."""
    d = s.dir
    folded_numbers = {point_number(p) for p in folded}
    for root, _, files in os.walk(d):
        for name in files:
            n = point_number(name)
            expect(n not in folded_numbers or n is None,
                   f"{os.path.join(root, name)} of a folded point is left")
            expect(not name.endswith(".partial"), f"{name} left")
    expect(not os.path.exists(os.path.join(d, ".backupfs-consolidate")), "staging directory left")
    with open(os.path.join(d, "demo.cpt")) as f:
        listed = json.load(f)
    expect(listed == [p for p in kept if p.startswith("virtnbdbackup.")],
           f"demo.cpt lists {listed}, want {kept}")
    with open(os.path.join(d, "checkpoints", f"{point}.xml")) as f:
        xml = f.read()
    expect("<parent>" not in xml and f"<name>{point}</name>" in xml,
           f"checkpoints/{point}.xml: {xml}")
    dump = json.loads(tools.run("-a", "dump", "-i", d).stdout)
    for disk in DISKS:
        full = [e for e in dump if e["dataFile"] == f"{disk}.full.data"]
        expect(len(full) == 1, f"{disk}: dump lists {len(full)} fulls")
        meta = full[0]
        expect(meta["checkpointName"] == point and meta["parentCheckpoint"] == "" and
               meta["incremental"] is False, f"{disk}.full.data metadata: {meta}")
        mtime = os.stat(os.path.join(d, f"{disk}.full.data")).st_mtime_ns
        expect(mtime == old_full_mtimes[disk],
               f"{disk}.full.data mtime {mtime}, the old full's was {old_full_mtimes[disk]}")


def full_mtimes(d):
    return {disk: os.stat(os.path.join(d, f"{disk}.full.data")).st_mtime_ns for disk in DISKS}


def check_verify(tools, d):
    r = tools.run("-a", "verify", "-i", d)
    expect(" 0 problems" in r.stdout, f"verify of {d}: {r.stdout}")


def check_restore_raw(tools, s, points, tmp):
    for p in points:
        out = os.path.join(tmp, f"restore-{p}")
        tools.run("-a", "restore", "-i", s.dir, "-o", out, "-u", p, "--format", "raw", "-n")
        for disk in DISKS:
            img = os.path.join(out, f"demo.{disk}.raw")
            expect(mountlib.same_file(img, s.ref(p, disk)),
                   f"backupfs-restore -u {p}: {img} differs from the reference")
        shutil.rmtree(out)


def peer_image(s, chain, disk, out):
    """What virtnbdrestore 1.9.15 restores from CHAIN (the full's point, then incs): it skips
    the zero frames of incs (STREAM-FORMAT-FACTS.md), so a range an inc zeroed keeps the bytes
    it had before. Built from the references and each inc's extents."""
    shutil.copyfile(s.ref(chain[0], disk), out)
    with open(out, "r+b") as f:
        for p in chain[1:]:
            f.truncate(os.path.getsize(s.ref(p, disk)))
            with open(s.ref(p, disk), "rb") as ref:
                for kind, off, length in s.extents[p][disk]:
                    if kind == "data":
                        ref.seek(off)
                        f.seek(off)
                        f.write(ref.read(length))


def check_virtnbdrestore(s, chain, tmp):
    """virtnbdrestore 1.9.15 (it orders files by mtime) restores the last point of CHAIN
    (the full's point, then incs) as the peer should. Its libvirt connection goes to the test
    driver: no libvirtd needed."""
    if shutil.which("virtnbdrestore") is None:
        sys.exit("virtnbdrestore missing: scripts/install-deps.sh installs virtnbdbackup")
    out = tempfile.mkdtemp(prefix="vnr-", dir=tmp)
    argv = ["virtnbdrestore", "-U", "test:///default", "-a", "restore", "-i", s.dir, "-o", out,
            "-n", "-L", os.path.join(out, "log"), "-f", os.path.join(out, "sock")]
    if chain[-1] != s.checkpoints[-1]:
        argv += ["--until", chain[-1]]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, HOME=os.environ.get("HOME", "/root")))
    expect(r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    for disk in DISKS:
        raw = os.path.join(out, f"{disk}.raw")
        mountlib.run("qemu-img", "convert", "-O", "raw", os.path.join(out, f"demo.{disk}.qcow2"),
                     raw)
        want = os.path.join(out, f"{disk}.want")
        peer_image(s, chain, disk, want)
        expect(mountlib.same_file(raw, want),
               f"virtnbdrestore --until {chain[-1]}: {disk} differs from what it should restore")
    shutil.rmtree(out)


def dry_run_lists(stdout):
    lists = {}
    for line in stdout.splitlines():
        m = re.match(r"\s+([a-z ]+):(.*)$", line)
        if m:
            lists[m.group(1)] = m.group(2).split()
    return lists


# --- the main path: consolidate, continue, consolidate again -------------------------------


def test_chain(tools, tmp, lz4):
    name = f"chain-{lz4 or 'plain'}"
    s = make_chain(tools.build, os.path.join(tmp, name), lz4, seed=11)
    points = [cpt(n) for n in range(6)]
    check_mount(tools, s, points, cpt(5))

    # --dry-run: nothing changes; it names what a real run does.
    before = state(s.dir)
    dry = tools.consolidate(s.dir, cpt(3), "--dry-run")
    expect_same_state(before, state(s.dir), "--dry-run")
    lists = dry_run_lists(dry.stdout)
    expect(lists.get("folded") == [cpt(0), cpt(1), cpt(2)], f"--dry-run output:\n{dry.stdout}")
    expect(lists.get("kept") == [cpt(3), cpt(4), cpt(5)], f"--dry-run output:\n{dry.stdout}")
    expect("would fold 3 restore point(s)" in dry.stdout, dry.stdout)
    to_remove = set(lists.get("files to remove", []))
    expect({"vda.inc.virtnbdbackup.1.data", "vdb.inc.virtnbdbackup.3.data.idx",
            "vmconfig.virtnbdbackup.0.xml", "checkpoints/virtnbdbackup.2.xml"} <= to_remove,
           f"--dry-run files to remove: {sorted(to_remove)}")

    mtimes = full_mtimes(s.dir)
    r = tools.consolidate(s.dir, cpt(3))
    after = state(s.dir)
    removed = set(before) - set(after)
    expect(removed == to_remove, f"removed {sorted(removed)}, --dry-run said {sorted(to_remove)}")
    expect("folded 3 restore point(s)" in r.stdout, r.stdout)
    # libvirt is out of reach: the folded checkpoints are left pending, and named.
    for c in (cpt(0), cpt(1), cpt(2)):
        expect(c in r.stderr, f"the warning does not name {c}: {r.stderr}")
    with open(os.path.join(s.dir, ".backupfs-pending-checkpoints.json")) as f:
        pending = json.load(f)
    expect(pending == {"domain": "demo", "checkpoints": [cpt(0), cpt(1), cpt(2)]},
           f"pending checkpoints: {pending}")
    kept = [cpt(3), cpt(4), cpt(5)]
    check_consolidated(tools, s, cpt(3), kept, [cpt(0), cpt(1), cpt(2)], mtimes)
    check_mount(tools, s, kept, cpt(5))
    check_verify(tools, s.dir)
    check_restore_raw(tools, s, kept, tmp)
    check_virtnbdrestore(s, kept, tmp)
    check_virtnbdrestore(s, kept[:1], tmp)
    check_virtnbdrestore(s, kept[:2], tmp)

    # A point that is the full already: nothing to do, nothing changes.
    before = state(s.dir)
    r = tools.consolidate(s.dir, cpt(3))
    expect("nothing to fold" in r.stdout, r.stdout)
    expect_same_state(before, state(s.dir), "a consolidation at the full")
    if lz4 is None:
        # A libvirt that answers (the test driver, in process) and has no domain "demo": the
        # pending checkpoints went with the domain, and the list goes.
        r = tools.run("-a", "consolidate", "-i", s.dir, "-u", cpt(3), "-U", "test:///default")
        expect("domain demo is gone" in r.stderr, r.stderr)
        expect(not os.path.exists(os.path.join(s.dir, ".backupfs-pending-checkpoints.json")),
               "the pending checkpoints are still listed")

    # The chain continues, and is consolidated again, ten times.
    pending = [] if lz4 is None else [cpt(0), cpt(1), cpt(2)]
    for rnd in range(10):
        new = next_inc(s)
        kept.append(new)
        expect(s.checkpoints == kept, f"round {rnd}: the generator's chain {s.checkpoints}")
        check_mount(tools, s, kept, new)
        mtimes = full_mtimes(s.dir)
        if rnd % 2 == 0:
            at = kept[-2]
            r = tools.consolidate(s.dir, at)
        else:
            r = tools.retention(s.dir, "--keep-last", 2)
            at = kept[-2]
        folded = kept[:kept.index(at)]
        expect(f"folded {len(folded)} restore point(s)" in r.stdout, f"round {rnd}: {r.stdout}")
        kept = kept[kept.index(at):]
        check_consolidated(tools, s, at, kept, folded, mtimes)
        check_mount(tools, s, kept, new)
        pending += folded
        with open(os.path.join(s.dir, ".backupfs-pending-checkpoints.json")) as f:
            listed = json.load(f)["checkpoints"]
        expect(listed == pending, f"round {rnd}: pending checkpoints {listed}, want {pending}")
    check_verify(tools, s.dir)
    check_virtnbdrestore(s, kept, tmp)
    check_virtnbdrestore(s, kept[:1], tmp)
    shutil.rmtree(s.dir)
    shutil.rmtree(s.refs)
    print(f"ok: {name}: consolidated at 3, then 10 rounds of inc + consolidate, exact throughout")


# --- retention ------------------------------------------------------------------------------


def dates_from(start, step):
    counter = iter(range(1_000_000))

    def date():
        return time.strftime("%Y-%m-%dT%H:%M:%S",
                             time.localtime(start + step(next(counter)))) + ".000000"

    return date


def test_retention(tools, tmp):
    all6 = [cpt(n) for n in range(6)]

    s = make_chain(tools.build, os.path.join(tmp, "keep-last"), None, seed=21)
    mtimes = full_mtimes(s.dir)
    r = tools.retention(s.dir, "--keep-last", 2)
    expect("folded 4 restore point(s)" in r.stdout, r.stdout)
    check_consolidated(tools, s, cpt(4), [cpt(4), cpt(5)], all6[:4], mtimes)
    check_mount(tools, s, [cpt(4), cpt(5)], cpt(5))
    r = tools.retention(s.dir, "--keep-last", 2)
    expect("nothing to fold" in r.stdout, r.stdout)

    # The generator's dates are in 2023: by age alone only the newest stays.
    s = make_chain(tools.build, os.path.join(tmp, "keep-days-old"), None, seed=22)
    before = state(s.dir)
    dry = tools.retention(s.dir, "--keep-days", 1, "--dry-run")
    expect_same_state(before, state(s.dir), "retention --dry-run")
    expect(dry_run_lists(dry.stdout).get("kept") == [cpt(5)], dry.stdout)
    mtimes = full_mtimes(s.dir)
    tools.retention(s.dir, "--keep-days", 1)
    check_consolidated(tools, s, cpt(5), [cpt(5)], all6[:5], mtimes)
    check_mount(tools, s, [cpt(5)], cpt(5))
    check_verify(tools, s.dir)

    # Dates near now: points 0-3 ten days old (two disk files per point, one date each),
    # points 4-5 an hour old. --keep-days 3 keeps 4-5; with --keep-last 3 (union) 3-5.
    now = int(time.time())
    date = dates_from(now - 10 * 86400, lambda i: i * 60 if i < 8 else 10 * 86400 - 3600 + i)
    for policy, at in ((["--keep-days", 3], 4), (["--keep-days", 3, "--keep-last", 3], 3),
                       (["--keep-days", 30], None)):
        s = make_chain(tools.build, os.path.join(tmp, f"keep-days-{at}"), None, seed=23,
                       date=date)
        date = dates_from(now - 10 * 86400, lambda i: i * 60 if i < 8 else 10 * 86400 - 3600 + i)
        mtimes = full_mtimes(s.dir)
        before = state(s.dir)
        r = tools.retention(s.dir, *policy)
        if at is None:
            expect("nothing to fold" in r.stdout, f"{policy}: {r.stdout}")
            expect_same_state(before, state(s.dir), f"retention {policy}")
            continue
        expect(f"folded {at} restore point(s)" in r.stdout, f"{policy}: {r.stdout}")
        check_consolidated(tools, s, cpt(at), all6[at:], all6[:at], mtimes)
        check_mount(tools, s, all6[at:], cpt(5))

    # A kept diff keeps the checkpoint it was taken against: --keep-last 1 of
    # 0..3, diff 1, diff 2 consolidates at 3. Diff and copy points are refused.
    s = make_chain(tools.build, os.path.join(tmp, "diffs"), None, seed=24, incs=3)
    diffs = []
    for unixtime in (1_800_000_000, 1_800_000_100):
        mountlib.random_writes(s.disks[0], s.rng, 2, max_len=100_000)
        mountlib.random_writes(s.disks[1], s.rng, 1, max_len=100_000)
        diffs.append(s.diff(s.disks, unixtime))
    copy = s.copy(s.disks)
    before = state(s.dir)
    for bad, word in ((diffs[1], "diff"), (copy, "copy")):
        r = tools.consolidate(s.dir, bad, rc=1)
        expect(f"is a {word} backup" in r.stderr and s.dir in r.stderr,
               f"-u {bad}: {r.stderr}")
    expect_same_state(before, state(s.dir), "refused diff/copy consolidations")
    mtimes = full_mtimes(s.dir)
    r = tools.retention(s.dir, "--keep-last", 1)
    expect("folded 3 restore point(s)" in r.stdout, r.stdout)
    kept = [cpt(3), *diffs, copy]
    check_consolidated(tools, s, cpt(3), kept, all6[:3], mtimes)
    check_mount(tools, s, kept, copy)
    check_verify(tools, s.dir)
    print("ok: retention by count, by age, by both; a kept diff keeps its checkpoint")


def test_folded_diff(tools, tmp):
    """A diff taken against a checkpoint older than the point goes with the folded points."""
    s = make_chain(tools.build, os.path.join(tmp, "folded-diff"), None, seed=25, incs=1)
    mountlib.random_writes(s.disks[0], s.rng, 2, max_len=100_000)
    diff = s.diff(s.disks, 1_800_000_000)  # against virtnbdbackup.1
    for _ in range(3):
        next_inc(s)
    check_mount(tools, s, [cpt(0), cpt(1), diff, cpt(2), cpt(3), cpt(4)], cpt(4))
    mtimes = full_mtimes(s.dir)
    r = tools.consolidate(s.dir, cpt(3))
    expect("folded 4 restore point(s)" in r.stdout and diff in r.stdout, r.stdout)
    check_consolidated(tools, s, cpt(3), [cpt(3), cpt(4)], [cpt(0), cpt(1), cpt(2)], mtimes)
    expect(not any(diff in n for n in os.listdir(s.dir)), f"files of {diff} left")
    check_mount(tools, s, [cpt(3), cpt(4)], cpt(4))
    check_verify(tools, s.dir)
    print("ok: a diff against a folded checkpoint is folded")


# --- a synthetic full into a new directory ---------------------------------------------------


def test_new_dir(tools, tmp):
    s = make_chain(tools.build, os.path.join(tmp, "source"), "2", seed=31)
    before = state(s.dir)
    for point, newest in ((cpt(5), True), (cpt(2), False)):
        new = os.path.join(tmp, f"synthetic-{point}")
        r = tools.consolidate(s.dir, point, "-o", new)
        expect(f"wrote {new}" in r.stdout, r.stdout)
        expect_same_state(before, state(s.dir), f"-o {new}")
        names = sorted(os.listdir(new))
        data = [n for n in names if n.endswith(".data")]
        expect(data == ["vda.full.data", "vdb.full.data"], f"{new}: data files {data}")
        expect(all(point_number(n) in (None, point_number(point)) for n in names),
               f"{new} holds another point's files: {names}")
        expect(f"vmconfig.{point}.xml" in names, f"{new}: {names}")
        if newest:
            with open(os.path.join(new, "demo.cpt")) as f:
                expect(json.load(f) == [point], f"{new}/demo.cpt")
            expect(os.path.exists(os.path.join(new, "checkpoints", f"{point}.xml")),
                   f"{new}: no checkpoint XML")
        else:
            expect("demo.cpt" not in names and "checkpoints" not in names,
                   f"{new}: an archive of an older point has a checkpoint list: {names}")
        check_mount(tools, types.SimpleNamespace(dir=new, ref=s.ref), [point], point)
        check_verify(tools, new)

    # NEWDIR written with a trailing slash (as shell completion writes an existing directory),
    # new or existing and empty.
    for existing in (False, True):
        new = os.path.join(tmp, f"slash-{existing}")
        if existing:
            os.makedirs(new)
        r = tools.consolidate(s.dir, cpt(4), "-o", new + "/")
        expect(sorted(n for n in os.listdir(new) if n.endswith(".data")) ==
               ["vda.full.data", "vdb.full.data"], f"-o {new}/: {os.listdir(new)}")
        expect(not os.path.exists(new + ".backupfs-partial"), f"{new}.backupfs-partial left")
        check_mount(tools, types.SimpleNamespace(dir=new, ref=s.ref), [cpt(4)], cpt(4))
    expect_same_state(before, state(s.dir), "-o NEWDIR/")

    # NEWDIR inside the saveset is refused.
    inside = os.path.join(s.dir, "synthetic")
    r = tools.consolidate(s.dir, cpt(5), "-o", inside, rc=1)
    expect(inside in r.stderr and "inside the saveset" in r.stderr, r.stderr)
    expect_same_state(before, state(s.dir), "-o inside the saveset")

    # A used NEWDIR is refused, and left as it was.
    used = os.path.join(tmp, "used")
    os.makedirs(used)
    with open(os.path.join(used, "keep.txt"), "w") as f:
        f.write("mine\n")
    r = tools.consolidate(s.dir, cpt(5), "-o", used, rc=1)
    expect(used in r.stderr and "not empty" in r.stderr, r.stderr)
    expect(os.listdir(used) == ["keep.txt"], f"{used}: {os.listdir(used)}")
    expect_same_state(before, state(s.dir), "a refused -o")
    print("ok: -o NEWDIR: a standalone saveset of one point; the source only read")


# --- bad input and faults --------------------------------------------------------------------


def test_refusals(tools, tmp):
    s = make_chain(tools.build, os.path.join(tmp, "refusals"), None, seed=41)
    all6 = [cpt(n) for n in range(6)]
    before = state(s.dir)

    r = tools.consolidate(s.dir, cpt(42), rc=1)
    expect(cpt(42) in r.stderr and s.dir in r.stderr, f"unknown point: {r.stderr}")
    expect_same_state(before, state(s.dir), "an unknown point")

    # A second writer: refused at once, naming the pid that holds the lock.
    holder = subprocess.Popen(["flock", "-o", s.dir, "sleep", "30"], start_new_session=True)
    try:
        mountlib.wait_for(lambda: f" {holder.pid} " in open("/proc/locks").read(),
                          "flock to take the saveset lock")
        for args in (("-a", "consolidate", "-u", cpt(3)), ("-a", "retention", "--keep-last", 1)):
            start = time.monotonic()
            r = tools.run(*args, "-i", s.dir, "-U", NO_LIBVIRT, rc=1)
            took = time.monotonic() - start
            # Refused, not queued behind the 30 s holder; 10 s leaves room for an ASan build
            # starting on a loaded machine.
            expect(took < 10.0, f"{args}: a second writer took {took:.2f} s to be refused")
            expect(f"pid {holder.pid}" in r.stderr and s.dir in r.stderr,
                   f"{args}: the refusal does not name the holder: {r.stderr}")
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    expect_same_state(before, state(s.dir), "a refused second writer")

    # A broken chain: refused, naming the damage; nothing changes.
    os.unlink(os.path.join(s.dir, "vda.inc.virtnbdbackup.2.data"))
    before = state(s.dir)
    r = tools.consolidate(s.dir, cpt(4), rc=1)
    expect("damaged" in r.stderr and s.dir in r.stderr and cpt(2) in r.stderr,
           f"broken chain: {r.stderr}")
    expect_same_state(before, state(s.dir), "a broken chain")
    r = tools.retention(s.dir, "--keep-last", 1, rc=1)
    expect("damaged" in r.stderr, f"retention on a broken chain: {r.stderr}")
    expect_same_state(before, state(s.dir), "retention on a broken chain")
    print("ok: unknown point, second writer, broken chain refused; the saveset unchanged")

    # A full filesystem: the new full cannot be written; everything stays as it was. The
    # saveset is copied (mtimes kept) onto a tmpfs with 1 MiB to spare.
    s = make_chain(tools.build, os.path.join(tmp, "enospc"), None, seed=42)
    fs = os.path.join(tmp, "small-fs")
    os.makedirs(fs)
    used = sum(os.path.getsize(os.path.join(r_, f)) for r_, _, files in os.walk(s.dir)
               for f in files)
    mountlib.run("mount", "-t", "tmpfs", "-o", f"size={used + MiB}", "tmpfs", fs)
    try:
        shutil.copytree(s.dir, os.path.join(fs, "saveset"))
        s.dir = os.path.join(fs, "saveset")
        before = state(s.dir)
        r = tools.consolidate(s.dir, cpt(4), rc=1)
        expect("No space left on device" in r.stderr and ".backupfs-consolidate/vda.full.data"
               in r.stderr, f"ENOSPC: {r.stderr}")
        expect_same_state(before, state(s.dir), "a failed (ENOSPC) consolidation")
        check_mount(tools, s, all6, cpt(5))
        check_verify(tools, s.dir)
    finally:
        if os.path.ismount(fs):
            mountlib.run("umount", fs)
    print(f"ok: a full filesystem ({used} bytes of saveset + 1 MiB): refused, nothing changed")


def read_exact_or_eio(fd, ref, what):
    """Reads the whole open image in 1 MiB pieces: each equals the reference or fails with EIO.
    Returns the number of EIO pieces."""
    eio = 0
    size = os.fstat(fd).st_size
    with open(ref, "rb") as f:
        for off in range(0, size, MiB):
            f.seek(off)
            want = f.read(MiB)
            try:
                got = os.pread(fd, MiB, off)
            except OSError as e:
                expect(e.errno == errno.EIO, f"{what} at {off}: {e}")
                eio += 1
                continue
            expect(got == want, f"{what}: wrong bytes at offset {off} after the consolidation")
    return eio


def test_live_mount(tools, tmp):
    s = make_chain(tools.build, os.path.join(tmp, "live"), "2", seed=51)
    with mountlib.mounted(tools.build, s.dir) as (_, mnt):
        opened = {
            "latest/vda.raw": (cpt(5), "vda"),
            "latest/vdb.raw": (cpt(5), "vdb"),
            f"{cpt(1)}/vda.raw": (cpt(1), "vda"),
            f"{cpt(3)}/vdb.raw": (cpt(3), "vdb"),
        }
        fds = {path: os.open(os.path.join(mnt, path), os.O_RDONLY) for path in opened}
        try:
            for path, fd in fds.items():  # read once before: the mount's caches are warm
                expect(read_exact_or_eio(fd, s.ref(*opened[path]), path) == 0,
                       f"{path}: EIO before the consolidation")
            tools.consolidate(s.dir, cpt(3))
            eio = {path: read_exact_or_eio(fd, s.ref(*opened[path]), path)
                   for path, fd in fds.items()}
            # Images the mount had not opened yet, of folded and kept points alike.
            for p in (cpt(0), cpt(2), cpt(4)):
                for disk in DISKS:
                    path = f"{p}/{disk}.raw"
                    try:
                        fd = os.open(os.path.join(mnt, path), os.O_RDONLY)
                    except OSError as e:
                        expect(e.errno in (errno.ENOENT, errno.EIO), f"open {path}: {e}")
                        eio[path] = "gone"
                        continue
                    try:
                        eio[path] = read_exact_or_eio(fd, s.ref(p, disk), path)
                    finally:
                        os.close(fd)
        finally:
            for fd in fds.values():
                os.close(fd)
    check_mount(tools, s, [cpt(3), cpt(4), cpt(5)], cpt(5))
    print(f"ok: images open across a consolidation read exact bytes (EIO pieces: {eio})")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    mountlib.require_fuse()
    for tool in ("qemu-img", "flock", "cmp"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: scripts/install-deps.sh installs it")
    tools = Tools(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="bfs-consolidate-", dir="/var/tmp")
    start = time.monotonic()
    try:
        test_chain(tools, tmp, None)
        test_chain(tools, tmp, "2")
        test_retention(tools, tmp)
        test_folded_diff(tools, tmp)
        test_new_dir(tools, tmp)
        test_refusals(tools, tmp)
        test_live_mount(tools, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"PASS: consolidation and retention of generated savesets "
          f"({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
