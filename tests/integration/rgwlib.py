"""A real S3 store for the python integration tests: a one-node Ceph RADOS Gateway brought up by
scripts/rgw.sh on a free block of 127.0.0.1 ports, torn down on exit.

    from rgwlib import Rgw
    with Rgw() as rgw:                       # up; down (always) at the end of the block
        s3 = rgw.client()                    # boto3, path-style, the test user's keys
        rgw.make_bucket("saves")
        env = rgw.environ()                  # os.environ + AWS_* for the tools under test
        rgw.stop_gateway(); rgw.start_gateway()
        with rgw.fault_proxy() as proxy:     # s3_fault_proxy.FaultProxy in front of it
            flaky = rgw.client(endpoint=proxy.endpoint, retries=0)

The ports are the same flock'ed blocks lib/rgw.sh takes, so bash and python tests run in
parallel without colliding. Needs root (the Ceph daemons), python3-boto3 and scripts/rgw.sh's
packages.
"""
import contextlib
import fcntl
import os
import random
import shutil
import socket
import subprocess
import tempfile

import boto3
import botocore.config

from s3_fault_proxy import FaultProxy

HERE = os.path.dirname(os.path.abspath(__file__))
RGW_SH = os.path.join(HERE, "..", "..", "scripts", "rgw.sh")
PORT_LOCKS = "/var/tmp/backupfs-rgw-ports"
PORT_BLOCKS = range(20000, 32000, 10)  # below the kernel's ephemeral ports
UP_TIMEOUT_S = 120


def port_free(port):
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) != 0


def claim_port_block(tries=100):
    """(base port, open lock file) of ten free ports, flock'ed like lib/rgw.sh does."""
    os.makedirs(PORT_LOCKS, exist_ok=True)
    for _ in range(tries):
        base = random.choice(PORT_BLOCKS)
        f = open(os.path.join(PORT_LOCKS, f"{base}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        if all(port_free(p) for p in range(base, base + 10)):
            return base, f
        f.close()
    raise RuntimeError("no free block of ten ports on 127.0.0.1 in 20000..31999")


def read_env_file(path):
    """The `export K=V` lines that scripts/rgw.sh writes, as a dict."""
    env = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().removeprefix("export ").partition("=")
            if key:
                env[key] = value
    return env


def make_client(endpoint, access_key, secret_key, region="us-east-1", retries=None,
                timeout=None):
    """A boto3 S3 client with path-style addressing. retries=0: one attempt, errors surface
    as they come; None: botocore's default policy; N: up to N retries (standard mode).
    timeout: connect and read timeout in seconds (botocore's 60 s by default)."""
    kw = {"s3": {"addressing_style": "path"}}
    if retries is not None:
        kw["retries"] = {"total_max_attempts": retries + 1, "mode": "standard"}
    if timeout is not None:
        kw["connect_timeout"] = kw["read_timeout"] = timeout
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name=region,
                        config=botocore.config.Config(**kw))


def client_from_env(endpoint=None, retries=None, timeout=None):
    """A client for the gateway named by the AWS_* environment (as lib/rgw.sh exports it)."""
    e = os.environ
    return make_client(endpoint or e["AWS_ENDPOINT_URL"], e["AWS_ACCESS_KEY_ID"],
                       e["AWS_SECRET_ACCESS_KEY"], e.get("AWS_DEFAULT_REGION", "us-east-1"),
                       retries, timeout)


def start_watchdog(cluster_dir):
    """`rgw.sh down cluster_dir` runs once the returned pipe end is closed: by down(), or by
    the kernel when this process dies, even by SIGKILL (a ctest timeout). The watchdog is its
    own session, reparented to init (setsid -f), so killing this test's process tree does not
    take it along. The pipe end is not inherited by the children of this process."""
    r, w = os.pipe()
    try:
        subprocess.run(["setsid", "-f", "bash", "-c", 'read -r _; exec bash "$0" down "$1"',
                        RGW_SH, cluster_dir], stdin=r, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=10)
    finally:
        os.close(r)
    return os.fdopen(w, "w")


class Rgw:
    """One gateway; a context manager (up on enter, down on exit, even on errors)."""

    def __init__(self, memstore_bytes=None, root="/var/tmp"):
        self.memstore_bytes, self.root = memstore_bytes, root
        self.dir = self.port = self.endpoint = None
        self.env = {}
        self._lock = self._watchdog = None

    def up(self):
        self.port, self._lock = claim_port_block()
        self.dir = tempfile.mkdtemp(prefix="backupfs-rgw.", dir=self.root)
        try:
            self._up()
        except BaseException:
            self.down()  # what a failed or interrupted `up` started
            raise
        return self

    def _up(self):
        env = dict(os.environ)
        if self.memstore_bytes is not None:
            env["RGW_MEMSTORE_BYTES"] = str(self.memstore_bytes)
        r = subprocess.run(["bash", RGW_SH, "up", self.dir, str(self.port)], env=env,
                           capture_output=True, text=True, timeout=UP_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/rgw.sh up {self.dir} {self.port} exited "
                               f"{r.returncode}:\n{r.stdout}{r.stderr}")
        self._watchdog = start_watchdog(self.dir)
        self.env = read_env_file(os.path.join(self.dir, "env"))
        self.endpoint = self.env["AWS_ENDPOINT_URL"]

    def down(self):
        """Idempotent. Raises if scripts/rgw.sh down fails (after releasing what it can)."""
        try:
            if self.dir is not None and os.path.exists(os.path.join(self.dir, "ceph.conf")):
                self._script("down")
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)  # `up` failed before its files
            for f in (self._watchdog, self._lock):
                if f is not None:
                    f.close()  # the watchdog's `down` finds nothing left to do
            self.dir = self._lock = self._watchdog = None

    def _script(self, command):
        r = subprocess.run(["bash", RGW_SH, command, self.dir], capture_output=True, text=True,
                           timeout=UP_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/rgw.sh {command} {self.dir} exited {r.returncode}: "
                               f"{r.stderr}")

    def stop_gateway(self):
        self._script("stop-gateway")

    def start_gateway(self):
        """Returns once the gateway answers S3 again."""
        self._script("start-gateway")

    def environ(self, endpoint=None):
        """os.environ plus the AWS_* variables (endpoint replaced if given, e.g. a proxy's)."""
        env = {**os.environ, **self.env}
        if endpoint is not None:
            env["AWS_ENDPOINT_URL"] = endpoint
        return env

    def client(self, endpoint=None, retries=None, timeout=None):
        return make_client(endpoint or self.endpoint, self.env["AWS_ACCESS_KEY_ID"],
                           self.env["AWS_SECRET_ACCESS_KEY"], self.env["AWS_DEFAULT_REGION"],
                           retries, timeout)

    def make_bucket(self, name):
        self.client().create_bucket(Bucket=name)

    def ls(self, bucket, prefix=""):
        """{key: size} of the objects under prefix."""
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["Size"]
        return out

    @contextlib.contextmanager
    def fault_proxy(self):
        with FaultProxy(self.port) as proxy:
            yield proxy

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
