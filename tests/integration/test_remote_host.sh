#!/usr/bin/env bash
# The hosts of remote runs against a real sshd on 127.0.0.2:2222: ConnectSsh's commands,
# files, spawned processes and refusals, and qemu-nbd on a host over TCP and TLS
# (common/remote_host_test.cc).
# Usage: test_remote_host.sh BUILD_DIR
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"
# shellcheck source=lib/remote.sh
source "$(dirname "$0")/lib/remote.sh"

BUILD_DIR="${1:?usage: $0 BUILD_DIR}"
harness_init
harness_require qemu-nbd nbdcopy nbdinfo pgrep ssh-keygen
test_bin="$BUILD_DIR/common/remote_host_test"
[[ -x "$test_bin" ]] || harness_fail "$test_bin not built"
remote_start_sshd
remote_pki
# libvirt reaches this machine's libvirtd through the fixture's URIs.
harness_start_libvirtd
for uri in "$REMOTE_URI" "$REMOTE_LIBSSH_URI"; do
    out="$(timeout 60 virsh -c "$uri" uri </dev/null 2>&1)" || harness_fail "virsh -c $uri: $out"
    [[ "$out" == "$uri" ]] || harness_fail "virsh -c $uri uri said: $out"
done
# Scratch files of the test live where both "hosts" (this machine) see them.
TMPDIR="$HARNESS_DIR" "$test_bin" || harness_fail "remote_host_test failed"
