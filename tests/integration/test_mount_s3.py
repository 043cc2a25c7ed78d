#!/usr/bin/env python3
"""backupfs mounts of savesets in a real S3 store (a one-node Ceph RADOS Gateway):

  - a saveset copied into a bucket with a stock client (`aws s3 sync`) mounts the same as its
    directory: every image of every restore point equals its reference byte for byte, and the
    per-point files (vmconfig.xml) too;
  - a saveset uploaded without its sidecar indexes (as virtnbdbackup's are) is indexed once:
    the index goes to s3_cache_dir, never into the bucket, and a second mount reads it from
    there with fewer requests;
  - the mount follows the bucket: a restore point uploaded later appears, and while a writer's
    lock object is there the mount keeps showing what it showed;
  - faults: wrong keys and a missing bucket fail the mount at once naming the s3:// address;
    a gateway stopped mid-read gives EIO and a log line, and reads work again once it is back;
    503 SlowDown answers are retried; an object replaced under an open image gives its old
    bytes or an error, never a mix.

Usage: test_mount_s3.py BUILD_DIR"""
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20


def build_saveset(build_dir, directory, rng, incs=3):
    work = directory + ".work"
    os.makedirs(work)
    vda = mountlib.Disk(work, "vda", 24 * MiB)
    vdb = mountlib.Disk(work, "vdb", 6 * MiB)
    vda.write(0, rng.randbytes(vda.size()))  # dense: more than a small s3_memory holds
    mountlib.random_writes(vdb, rng, 12)
    s = mountlib.Saveset(build_dir, directory)
    s.full((vda, vdb))
    for _ in range(incs):
        mountlib.random_writes(vda, rng, 6)
        mountlib.random_writes(vdb, rng, 2)
        s.inc((vda, vdb))
    for point in s.checkpoints:
        write_vmconfig(directory, point)
    return s, (vda, vdb)


def write_vmconfig(directory, point):
    with open(os.path.join(directory, f"vmconfig.{point}.xml"), "w") as f:
        f.write(f"<domain><name>demo</name><description>{point}</description></domain>\n")


def sha(path, offset=0, length=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left is None or left > 0:
            block = f.read(MiB if left is None else min(MiB, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def check_points(mnt, saveset, disks, what):
    points = sorted(e for e in os.listdir(mnt) if e != "latest")
    assert points == sorted(saveset.checkpoints), f"{what}: points {points}"
    for p in points:
        for d in disks:
            img = os.path.join(mnt, p, f"{d.name}.raw")
            assert sha(img) == sha(saveset.ref(p, d.name)), f"{what}: {p}/{d.name}.raw differs"
        with open(os.path.join(mnt, p, "vmconfig.xml")) as f, \
                open(os.path.join(saveset.dir, f"vmconfig.{p}.xml")) as g:
            assert f.read() == g.read(), f"{what}: {p}/vmconfig.xml differs"


def aws(rgw, *args, env=None):
    return mountlib.run("aws", "--endpoint-url", rgw.endpoint, *args, env=env or rgw.environ())


def mount_opts(extra=()):
    return ["-o", ",".join(["ro", *extra])] if extra else []


def main():
    build_dir = os.path.abspath(sys.argv[1])
    mountlib.require_fuse()
    try:
        import rgwlib
    except ImportError as e:
        sys.exit(f"python3-boto3 missing ({e}): scripts/install-deps.sh installs it")
    for tool in ("aws", "ceph-mon", "radosgw"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: scripts/install-deps.sh installs it")
    rng = random.Random(14)
    tmp = tempfile.mkdtemp(prefix="bfs-s3-", dir="/var/tmp")
    try:
        with rgwlib.Rgw() as rgw:
            os.environ.update(rgw.environ())
            run_tests(build_dir, tmp, rng, rgw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


def run_tests(build_dir, tmp, rng, rgw):
    s3 = rgw.client()
    rgw.make_bucket("saves")
    local = os.path.join(tmp, "vm1")
    saveset, disks = build_saveset(build_dir, local, rng)

    # A stock client copies the saveset into the bucket: it mounts as its directory does.
    aws(rgw, "s3", "sync", "--only-show-errors", local, "s3://saves/vm1")
    with mountlib.mounted(build_dir, local) as (_, lmnt), \
            mountlib.mounted(build_dir, "s3://saves/vm1") as (_, smnt):
        check_points(lmnt, saveset, disks, "local")
        check_points(smnt, saveset, disks, "s3")
        assert os.readlink(os.path.join(smnt, "latest")) == saveset.checkpoints[-1]
    print("ok: a saveset synced into the bucket mounts as its directory does")

    # Without sidecar indexes (virtnbdbackup's): indexed once, kept in the cache directory.
    aws(rgw, "s3", "sync", "--only-show-errors", "--exclude", "*.idx", local, "s3://saves/vnb")
    cache = os.path.join(tmp, "cache")
    with rgw.fault_proxy() as proxy:
        env = dict(os.environ, AWS_ENDPOINT_URL=proxy.endpoint)
        counts = []
        for round_ in range(2):
            before = proxy.stats()["requests"]
            with mounted_env(build_dir, "s3://saves/vnb", env,
                             "-o", f"s3_cache_dir={cache}") as smnt:
                check_points(smnt, saveset, disks, f"no sidecars, mount {round_ + 1}")
            counts.append(proxy.stats()["requests"] - before)
        assert counts[1] < counts[0], f"requests per mount: {counts}"
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="saves", Prefix="vnb/")["Contents"]}
    assert not any(k.endswith(".idx") for k in listed), f"the mount wrote into the bucket: {listed}"
    assert os.listdir(cache), "nothing was kept in s3_cache_dir"
    print(f"ok: a saveset without sidecars is indexed once (requests per mount: {counts})")

    check_faults(build_dir, tmp, rgw, saveset, disks)
    check_live(build_dir, rgw, saveset, disks, rng)


class mounted_env:
    """mountlib.mounted with its own environment for backupfs (a proxy's endpoint)."""

    def __init__(self, build_dir, saveset, env, *options):
        self.args = (build_dir, saveset, *options)
        self.env = env

    def __enter__(self):
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            self.cm = mountlib.mounted(*self.args)
            _, mnt = self.cm.__enter__()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return mnt

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def check_faults(build_dir, tmp, rgw, saveset, disks):
    # Wrong keys: refused at once, naming the address and the store's answer.
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY="not-the-secret")
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(build_dir, "tools", "backupfs"), "s3://saves/vm1",
                        tempfile.mkdtemp(dir=tmp)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode != 0, "a mount with a wrong secret succeeded"
    assert "s3://saves/vm1" in r.stderr and "SignatureDoesNotMatch" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 10, "wrong keys were retried"
    # A missing bucket.
    r = subprocess.run([os.path.join(build_dir, "tools", "backupfs"), "s3://no-such-bucket/vm1",
                        tempfile.mkdtemp(dir=tmp)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "no-such-bucket" in r.stderr, r.stderr
    print("ok: wrong keys and a missing bucket fail the mount, naming the address")

    point = saveset.checkpoints[-1]
    ref = saveset.ref(point, "vda")
    with rgw.fault_proxy() as proxy:
        env = dict(os.environ, AWS_ENDPOINT_URL=proxy.endpoint)
        with mounted_env(build_dir, "s3://saves/vm1", env, "-o", "s3_memory=8") as smnt:
            img = os.path.join(smnt, point, "vda.raw")
            # The gateway goes away: EIO (bounded), the daemon stays up. Nothing of the image
            # has been read yet, and the mount's start reads only the data files' heads and
            # tails: the middle of vda.full.data is in no cache, whatever readahead does.
            rgw.stop_gateway()
            t0 = time.monotonic()
            try:
                with open(img, "rb") as f:
                    f.seek(12 * MiB)
                    f.read(4 * MiB)
                raise AssertionError("a read with the gateway down succeeded")
            except OSError as e:
                assert e.errno == 5, e
            assert time.monotonic() - t0 < 60, "a read with the gateway down took over a minute"
            rgw.start_gateway()
            # 503 SlowDown on the next few GETs: retried, and the bytes are right.
            proxy.fail(status=503, code="SlowDown", count=3, match="GET")
            assert sha(img, 4 * MiB, 4 * MiB) == sha(ref, 4 * MiB, 4 * MiB)
            st = proxy.stats()
            assert st["faults"].get("fail_503", 0) >= 1, (st["faults"], st["recent"][-8:])
            proxy.clear()
            assert sha(img) == sha(ref), "reads after the gateway came back differ"
    print("ok: a stopped gateway gives EIO; reads work again after; SlowDown is retried")

    # An object replaced under an open image: old bytes or an error, never a mix.
    with mountlib.mounted(build_dir, "s3://saves/vm1", "-o", "s3_memory=8") as (_, smnt):
        img = os.path.join(smnt, point, "vda.raw")
        with open(img, "rb") as f:
            head = f.read(MiB)
            assert head == open(ref, "rb").read(MiB)
            full = f"vda.full.data"
            body = open(os.path.join(saveset.dir, full), "rb").read()
            # Same size, different bytes after the metadata: a replacement the ETag tells.
            changed = body[:len(body) // 2] + bytes(b ^ 0xFF for b in body[len(body) // 2:])
            rgw.client().put_object(Bucket="saves", Key=f"vm1/{full}", Body=changed)
            try:
                rest = f.read()
                with open(ref, "rb") as g:
                    g.seek(MiB)
                    assert rest == g.read(), "an image read mixed old and new bytes"
            except OSError as e:
                assert e.errno == 5, e
        rgw.client().put_object(Bucket="saves", Key=f"vm1/{full}", Body=body)
    print("ok: an object replaced while read gives its old bytes or EIO, never a mix")


def check_live(build_dir, rgw, saveset, disks, rng):
    s3 = rgw.client()
    with mountlib.mounted(build_dir, "s3://saves/vm1") as (_, smnt):
        shown = sorted(e for e in os.listdir(smnt) if e != "latest")
        # A writer holds the saveset: a point uploaded now is not shown until it lets go.
        s3.put_object(Bucket="saves", Key="vm1/.backupfs-lock",
                      Body=b'{"holder":"test","host":"here","pid":1,'
                           b'"started":0,"expires":4102444800}')
        mountlib.random_writes(disks[0], rng, 3)
        mountlib.random_writes(disks[1], rng, 1)
        new = saveset.inc(disks)
        write_vmconfig(saveset.dir, new)
        aws(rgw, "s3", "sync", "--only-show-errors", saveset.dir, "s3://saves/vm1")
        # Looked at for 3 s, several polls of the bucket: never shown while locked.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert sorted(e for e in os.listdir(smnt) if e != "latest") == shown, \
                "a point was shown while a writer held the lock"
            time.sleep(0.1)
        s3.delete_object(Bucket="saves", Key="vm1/.backupfs-lock")
        mountlib.wait_for(lambda: new in os.listdir(smnt), f"{new} to appear", timeout=20)
        check_points(smnt, saveset, disks, "after a new point")
    print("ok: the mount follows the bucket, and holds back while a writer has the lock")


if __name__ == "__main__":
    main()
