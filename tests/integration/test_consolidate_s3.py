#!/usr/bin/env python3
"""backupfs-restore -a consolidate and -a retention on savesets in a bucket of a real Ceph RADOS
Gateway (rgwlib.py), against the same runs on the same saveset in a directory.

The saveset: test_consolidate_generated.py's chain of a full and five incs (random writes and
zeroed ranges between points), vda 32 MiB with 20 MiB of data (its new full is larger than one
16 MiB upload part: a multipart upload), vdb 4 MiB grown to 6 MiB, put into the bucket object by
object with boto3.
- consolidate -o NEWDIR from the bucket: the same files as from the directory;
- consolidate at virtnbdbackup.3: the prefix then holds exactly the files of the directory
  consolidated locally, byte for byte; no staging object, no lock, no multipart upload is left;
  every remaining point restores from s3:// (--format raw) equal to its image before (the
  reference and the restore made from the bucket before the consolidation);
- the consolidated prefix (put into the bucket a point per second, as captures put it) synced
  down with the aws CLI: its new fulls are the newest files, and virtnbdrestore refuses it
  ("Unable to locate base full"); with them made the oldest (the
  workaround man backupfs-restore(1) gives under BUGS) virtnbdrestore restores the last point
  and --until virtnbdbackup.4 as it should;
- retention --keep-last 2: the same files as locally; every file of points 0-3 gone, those of
  4 and 5 kept, the new full at 4;
- killed (SIGKILL) while the fault proxy holds a request:
  - the journal PUT (before the commit): staged objects and no journal are left, readers see
    the old points exact; the next run takes over the dead run's lock at once (its holder
    died on this host), saying so, removes the staged objects and consolidates: the same
    files as locally;
  - an upload part of a staged file: a multipart upload is left under the staging prefix; the
    next run aborts it and consolidates: the same files, no upload left;
  - the roll forward's first delete (after the commit, a staged object copied into place but
    not deleted): readers already see the new points exact; the next run completes the journal
    ("completed the consolidation"): the same files as locally.

Usage: test_consolidate_s3.py BUILD_DIR"""
import copy
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mountlib  # noqa: E402
import test_consolidate_generated as gen  # noqa: E402

BUCKET = "consolidate-test"
POINT = "virtnbdbackup.3"
ALL = [f"virtnbdbackup.{n}" for n in range(6)]
STAGING = ".backupfs-consolidate/"
LOCK = ".backupfs-lock"
MiB = 1 << 20


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bucket:
    def __init__(self, rgw, build_dir, tmp):
        self.rgw = rgw
        self.s3 = rgw.client()
        self.tool = os.path.join(build_dir, "tools", "backupfs-restore")
        self.tmp = tmp

    def address(self, prefix):
        return f"s3://{BUCKET}/{prefix}"

    def upload(self, directory, prefix, wanted=lambda name: True):
        for root, _, files in os.walk(directory):
            for name in files:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, directory)
                if wanted(rel):
                    self.s3.upload_file(path, BUCKET, f"{prefix}/{rel}")

    def upload_in_order(self, directory, prefix):
        """DIRECTORY into PREFIX as captures put it there: each point's data files in a later
        second than the point before (LastModified has whole seconds, and virtnbdrestore
        orders a synced-down chain by the mtimes the aws CLI gives it), the other files first."""
        self.upload(directory, prefix, lambda name: not name.endswith(".data"))
        data = [n for n in os.listdir(directory) if n.endswith(".data")]
        last = None
        for point in sorted({point_of(n) for n in data}):
            if last is not None:
                mountlib.wait_for(lambda: int(time.time()) > last, "the next second")
            for n in sorted(n for n in data if point_of(n) == point):
                self.s3.upload_file(os.path.join(directory, n), BUCKET, f"{prefix}/{n}")
            last = int(time.time())

    def sync_down(self, prefix, directory):
        """aws s3 sync of PREFIX into DIRECTORY (each file's mtime its object's LastModified)."""
        env = dict(self.rgw.environ(), AWS_CONFIG_FILE=os.path.join(self.rgw.dir, "aws-config"),
                   AWS_PAGER="")
        mountlib.run("aws", "--endpoint-url", self.rgw.endpoint, "s3", "sync", "--only-show-errors",
                     self.address(prefix), directory, env=env)

    def files(self, prefix):
        """{name relative to the prefix: sha256} of every object under it."""
        out = {}
        for key in self.rgw.ls(BUCKET, prefix + "/"):
            body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            out[key[len(prefix) + 1:]] = hashlib.sha256(body).hexdigest()
        return out

    def uploads(self, prefix):
        r = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix + "/")
        return [u["Key"] for u in r.get("Uploads", [])]

    def run(self, *args, rc=0, endpoint=None):
        argv = [self.tool, *map(str, args)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                           env=self.rgw.environ(endpoint))
        if r.returncode != rc:
            raise AssertionError(f"{' '.join(argv)} exited {r.returncode}, want {rc}:\n"
                                 f"{r.stdout}{r.stderr}")
        return r

    def consolidate_argv(self, prefix):
        return ["-a", "consolidate", "-i", self.address(prefix), "-u", POINT, "-U", gen.NO_LIBVIRT]

    def restore(self, prefix, point, out):
        self.run("-a", "restore", "-i", self.address(prefix), "-o", out, "-u", point,
                 "--format", "raw", "-n")
        return {d: os.path.join(out, f"demo.{d}.raw") for d in gen.DISKS}


def point_of(name):
    """The restore point a file of the saveset belongs to: -1 for the full backup's own."""
    n = gen.point_number(name)
    return -1 if n is None else n


def local_files(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def expect_same_files(b, prefix, want, what):
    got = b.files(prefix)
    if got == want:
        return
    diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    raise AssertionError(f"{what}: s3://{BUCKET}/{prefix} differs from the local saveset in "
                         f"{diff}")


def expect_points_exact(b, s, prefix, points, tmp):
    for p in points:
        out = tempfile.mkdtemp(dir=tmp)
        for disk, image in b.restore(prefix, p, out).items():
            expect(mountlib.same_file(image, s.ref(p, disk)),
                   f"restore -i s3://{BUCKET}/{prefix} -u {p}: {disk} differs from its reference")
        shutil.rmtree(out)


def consolidate(b, s, tmp, want):
    log("consolidate -o NEWDIR from s3")
    newdir = os.path.join(tmp, "newdir-s3")
    b.run(*b.consolidate_argv("c"), "-o", newdir)
    got, local = local_files(newdir), local_files(os.path.join(tmp, "newdir-local"))
    expect(got == local, f"-o NEWDIR from s3:// differs from the local one: "
                         f"{sorted(set(got.items()) ^ set(local.items()))}")
    log("consolidate on s3")
    before = b.restore("c", POINT, os.path.join(tmp, "before"))
    r = b.run(*b.consolidate_argv("c"))
    expect(r.returncode == 0, r.stderr)
    expect_same_files(b, "c", want, "consolidate")
    expect(not b.uploads("c"), f"multipart uploads left: {b.uploads('c')}")
    after = b.restore("c", POINT, os.path.join(tmp, "after"))
    for d in gen.DISKS:
        expect(mountlib.same_file(before[d], after[d]),
               f"{POINT}: {d} after the consolidation differs from before")
    expect_points_exact(b, s, "c", ALL[3:], tmp)
    r = b.run("-a", "restore", "-i", b.address("c"), "-o", os.path.join(tmp, "gone"), "-u",
              ALL[1], "--format", "raw", "-n", rc=1)
    expect(ALL[1] in r.stderr, f"a folded point restored: {r.stderr}")


def synced_down(b, s, tmp):
    """The consolidated prefix synced down restores with virtnbdrestore once its new full
    backups are made the oldest files, as man backupfs-restore(1) says under BUGS (the store
    gave them the consolidation's time)."""
    log("consolidated on s3, synced down, restored by virtnbdrestore")
    down = os.path.join(tmp, "down")
    b.sync_down("c", down)
    fulls = [os.path.join(down, f"{d}.full.data") for d in gen.DISKS]
    newest_inc = os.path.getmtime(os.path.join(down, f"{gen.DISKS[0]}.inc.{ALL[-1]}.data"))
    expect(os.path.getmtime(fulls[0]) > newest_inc,
           "the synced-down new full is not newer than the incs: BUGS has it wrong")
    # As it is, virtnbdrestore meets an inc first and refuses (what BUGS says).
    out = os.path.join(tmp, "refused")
    r = subprocess.run(["virtnbdrestore", "-U", "test:///default", "-a", "restore", "-i", down,
                        "-o", out, "-n", "-L", os.path.join(tmp, "refused.log"), "-f",
                        os.path.join(tmp, "refused.sock")], capture_output=True, text=True,
                       timeout=300)
    expect(r.returncode != 0 and "Unable to locate base full" in r.stderr,
           f"virtnbdrestore of the copy as synced: exit {r.returncode}: {r.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    mountlib.run("touch", "-d", "@0", *fulls)
    view = copy.copy(s)
    view.dir = down
    gen.check_virtnbdrestore(view, ALL[3:], tmp)
    gen.check_virtnbdrestore(view, ALL[3:5], tmp)
    shutil.rmtree(down)


def retention(b, s, base, tmp):
    log("retention on s3")
    local = os.path.join(tmp, "retention")
    shutil.copytree(base, local)
    gen.Tools(os.path.dirname(os.path.dirname(b.tool))).retention(local, "--keep-last", "2")
    b.upload(base, "r")
    b.run("-a", "retention", "-i", b.address("r"), "-U", gen.NO_LIBVIRT, "--keep-last", "2")
    want = local_files(local)
    expect_same_files(b, "r", want, "retention")
    names = b.files("r")
    for n in names:
        k = gen.point_number(n)
        expect(k is None or k >= 4, f"{n} of a folded point is left")
    for d in gen.DISKS:
        expect(f"{d}.inc.virtnbdbackup.5.data" in names, f"{d}'s inc 5 went")
        expect(f"{d}.full.data" in names, f"{d}.full.data went")
    for p in ALL[:4]:
        expect(f"checkpoints/{p}.xml" not in names, f"checkpoints/{p}.xml is left")
    expect_points_exact(b, s, "r", ALL[4:], tmp)


def wait_stalled(proxy, proc, what):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proxy.stats()["faults"].get("stall", 0) >= 1:
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what}: the consolidation ended ({proc.returncode}) before "
                                 f"the proxy held its request:\n{out}{err}")
        time.sleep(0.05)
    raise AssertionError(f"{what}: the proxy held no request within 120 s")


def killed_at(b, prefix, base, match, what):
    """A consolidation of s3://BUCKET/PREFIX through the proxy, SIGKILLed while the proxy
    holds the first request whose line contains MATCH."""
    log(f"kill at {what}")
    b.upload(base, prefix)
    with b.rgw.fault_proxy() as proxy:
        proxy.stall(count=1, match=match)
        proc = subprocess.Popen([b.tool, *b.consolidate_argv(prefix)], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=b.rgw.environ(proxy.endpoint))
        try:
            wait_stalled(proxy, proc, what)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            # Ends the proxy with the request still held: clear() would forward it, and the
            # body curl sent after its 1 s wait for 100-continue would store the object.
            proxy.close()
    expect(proc.returncode == -signal.SIGKILL, f"{what}: exit {proc.returncode}")


def rerun_after_kill(b, prefix, what):
    """The killed run's lock still stands; its holder died on this host, so the next run takes
    it over at once (not after the lease) and says so, naming the saveset and the holder."""
    keys = b.rgw.ls(BUCKET, prefix + "/")
    expect(f"{prefix}/{LOCK}" in keys, f"{what}: no lock left by the killed run")
    r = b.run(*b.consolidate_argv(prefix))
    expect(f"took over the lock of s3://{BUCKET}/{prefix}" in r.stderr
           and "backupfs-restore" in r.stderr and "is no longer running" in r.stderr,
           f"{what}: the takeover does not name the saveset and its dead holder: {r.stderr}")
    return r


def staged(b, prefix):
    return sorted(k for k in b.rgw.ls(BUCKET, prefix + "/") if STAGING in k)


def kill_before_commit(b, s, base, want):
    p = "k1"
    killed_at(b, p, base, f"/{p}/{STAGING}journal.json", "the journal PUT")
    left = staged(b, p)
    expect(left and not any(k.endswith("journal.json") for k in left),
           f"before the commit: staged objects and no journal, got {left}")
    expect_points_exact(b, s, p, [ALL[1], ALL[5]], b.tmp)  # the old saveset
    r = rerun_after_kill(b, p, "before the commit")
    expect("interrupted before its commit" in r.stderr, f"no word of the cleanup: {r.stderr}")
    expect_same_files(b, p, want, "rerun after a kill before the commit")


def kill_mid_upload(b, base, want):
    p = "k2"
    killed_at(b, p, base, "uploadId=", "an upload part")
    pending = b.uploads(p)
    expect(any(STAGING in k for k in pending), f"no multipart upload left: {pending}")
    rerun_after_kill(b, p, "mid-upload")
    expect(not b.uploads(p), f"multipart uploads left after the rerun: {b.uploads(p)}")
    expect_same_files(b, p, want, "rerun after a kill mid-upload")


def kill_after_commit(b, s, base, want):
    p = "k3"
    # The first DELETE of the run is the roll forward's, of a staged object just copied.
    killed_at(b, p, base, "DELETE", "the roll forward's first delete")
    expect(f"{p}/{STAGING}journal.json" in b.rgw.ls(BUCKET, p + "/"), "no journal committed")
    expect_points_exact(b, s, p, ALL[3:], b.tmp)  # the new saveset, through the journal
    r = rerun_after_kill(b, p, "after the commit")
    expect(f"completed the consolidation at {POINT}" in r.stderr,
           f"no word of the roll forward: {r.stderr}")
    expect_same_files(b, p, want, "rerun after a kill after the commit")
    expect_points_exact(b, s, p, ALL[3:], b.tmp)


def make_chain(build, directory):
    rng = random.Random(14)
    work = directory + ".work"
    os.makedirs(work)
    disks = [mountlib.Disk(work, "vda", 32 * MiB), mountlib.Disk(work, "vdb", 4 * MiB)]
    s = mountlib.CaptureSaveset(build, directory, None)
    s.rng, s.disks, s.extents = rng, disks, {}
    disks[0].write(4 * MiB, rng.randbytes(20 * MiB))
    for d in disks:
        mountlib.random_writes(d, rng, 12)
    s.full(disks)
    for i in range(1, 6):
        gen.next_inc(s, grow=i == 2)
    return s


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        mountlib.skip("needs root (the Ceph daemons)")
    for tool in ("radosgw", "ceph-mon", "ceph-osd"):
        if shutil.which(tool) is None:
            mountlib.skip(f"{tool} is not installed")
    from rgwlib import Rgw
    tmp = tempfile.mkdtemp(prefix="bfs-consolidate-s3.")
    try:
        base = os.path.join(tmp, "base")
        s = make_chain(build, base)
        local = os.path.join(tmp, "local")
        shutil.copytree(base, local)
        gen.Tools(build).consolidate(base, POINT, "-o", os.path.join(tmp, "newdir-local"))
        gen.Tools(build).consolidate(local, POINT)
        want = local_files(local)
        with Rgw() as rgw:
            rgw.make_bucket(BUCKET)
            b = Bucket(rgw, build, tmp)
            b.upload_in_order(base, "c")
            expect_points_exact(b, s, "c", ALL, tmp)
            consolidate(b, s, tmp, want)
            synced_down(b, s, tmp)
            retention(b, s, base, tmp)
            kill_before_commit(b, s, base, want)
            kill_mid_upload(b, base, want)
            kill_after_commit(b, s, base, want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log("PASS")


if __name__ == "__main__":
    main()
