#!/usr/bin/env bash
# Installs every Debian 12 package backupfs needs to build, test and run. Idempotent; run as root.
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config clang clang-format libclang-rt-14-dev
  libfuse3-dev libvirt-dev libnbd-dev liblz4-dev libxxhash-dev libdeflate-dev
  nlohmann-json3-dev libcli11-dev libxml2-dev libmount-dev libssh-dev
  libblkid-dev libext2fs-dev ntfs-3g-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
runtime_packages=(
  fuse3 qemu-utils qemu-system-x86 libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
  libnbd-bin nbdkit virtnbdbackup python3 e2fsprogs groff-base man-db procps util-linux diffutils
  strace time
  # Remote hypervisors: the ssh client, and for the tests an sshd on 127.0.0.2 and certtool.
  openssh-client openssh-server gnutls-bin
  # Guest filesystems for the tests: partition tables, NTFS, FAT32 and exFAT images, and
  # losetup and loop mounts (package mount) for the kernel's view to compare with.
  fdisk ntfs-3g dosfstools exfatprogs mount
  # Savesets on S3: a one-node Ceph RADOS Gateway on 127.0.0.1 (scripts/rgw.sh), and stock S3
  # clients to copy savesets in and out and to compare with (boto3, the aws CLI).
  ceph-mon ceph-osd radosgw ceph-common python3-boto3 awscli
)
# The benchmarks (bench/, not run by CI) also need these.
# bench/run-s3-bench.sh also reads through s3fs and uploads and downloads with curl.
bench_packages=(fio lz4 python3-lz4 qemu-system-common s3fs curl)
# bench/run-guest-bench.sh's guestmount figures: opt-in (`--bench-guestfs` or
# BFS_BENCH_GUESTFS=1), never on CI: libguestfs-tools and the kernel its appliance boots are big.
guestfs_packages=()
if [ "${1-}" = --bench-guestfs ] || [ "${BFS_BENCH_GUESTFS:-0}" = 1 ]; then
  guestfs_packages=(libguestfs-tools linux-image-amd64)
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi
missing=()
for p in "${build_packages[@]}" "${runtime_packages[@]}" "${bench_packages[@]}" \
  "${guestfs_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all packages present"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages with services (openssh-server, libvirt) must not start them at install: a machine
# without systemd has no init to ask, and the tests start what they need themselves (sshd on
# 127.0.0.2 only, libvirtd). policy-rc.d is Debian's switch for that, removed afterwards.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
