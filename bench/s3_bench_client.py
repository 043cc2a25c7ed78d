#!/usr/bin/python3
"""Helpers of bench/run-s3-bench.sh (not a test itself). Run with Debian's /usr/bin/python3, whose
python3-boto3 is the stock client measured; the endpoint and keys come from the AWS_* environment
that tests/integration/lib/rgw.sh's rgw_up exports. Path-style addressing (Ceph needs it).

  download BUCKET PREFIX DEST [--suffix .data] [--concurrency N] [--chunk-mib M]
      Every object under PREFIX whose key ends in SUFFIX into DEST/ (a tmpfs), all of them
      through one boto3 TransferManager (s3transfer: ranged GETs of CHUNK_MIB parts, N in
      flight across all objects). Prints "BYTES OBJECTS" on stdout.
  size BUCKET PREFIX [--suffix .data]
      "BYTES OBJECTS" of those objects (a listing, nothing downloaded).
  evict PATH...
      Drops the files' (and directories' files') clean pages from the page cache
      (posix_fadvise DONTNEED): a local read after it comes from the disk.
"""
import argparse
import os
import sys


def client(concurrency):
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        sys.exit("AWS_ENDPOINT_URL is not set (rgw_up exports it)")
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, concurrency),
                    retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def listing(s3, bucket, prefix, suffix):
    """(key, size) of the objects under prefix ending in suffix; bounded by the store's paging."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if o["Key"].endswith(suffix):
                found.append((o["Key"], o["Size"]))
    if not found:
        sys.exit(f"no objects s3://{bucket}/{prefix}*{suffix}")
    return found


def download(a):
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    s3 = client(a.concurrency)
    objects = listing(s3, a.bucket, a.prefix, a.suffix)
    chunk = a.chunk_mib << 20
    config = TransferConfig(max_concurrency=a.concurrency, multipart_threshold=chunk,
                            multipart_chunksize=chunk, use_threads=True)
    os.makedirs(a.dest, exist_ok=True)
    with create_transfer_manager(s3, config) as manager:
        futures = [manager.download(a.bucket, key, os.path.join(a.dest, key.replace("/", "_")))
                   for key, _ in objects]
        for f in futures:
            f.result()  # raises the transfer's error
    total = 0
    for key, size in objects:
        got = os.path.getsize(os.path.join(a.dest, key.replace("/", "_")))
        if got != size:
            sys.exit(f"s3://{a.bucket}/{key}: downloaded {got} bytes, the listing says {size}")
        total += size
    print(total, len(objects))


def size(a):
    objects = listing(client(1), a.bucket, a.prefix, a.suffix)
    print(sum(s for _, s in objects), len(objects))


def evict(a):
    for top in a.paths:
        files = [top] if os.path.isfile(top) else [
            os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download")
    d.add_argument("bucket")
    d.add_argument("prefix")
    d.add_argument("dest")
    d.add_argument("--suffix", default=".data")
    d.add_argument("--concurrency", type=int, default=10)
    d.add_argument("--chunk-mib", type=int, default=8)
    s = sub.add_parser("size")
    s.add_argument("bucket")
    s.add_argument("prefix")
    s.add_argument("--suffix", default=".data")
    e = sub.add_parser("evict")
    e.add_argument("paths", nargs="+")
    a = p.parse_args()
    {"download": download, "size": size, "evict": evict}[a.cmd](a)


if __name__ == "__main__":
    main()
