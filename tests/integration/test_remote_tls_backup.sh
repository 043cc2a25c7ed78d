#!/usr/bin/env bash
# The TLS fixture of tests/integration/lib/remote.sh against libvirt: after
# remote_libvirt_backup_tls, a pull-mode backup over TCP with tls='yes' serves the disk over
# TLS (read byte-exact with the client certificates), plain NBD and a client of another CA are
# refused.
# Usage: test_remote_tls_backup.sh BUILD_DIR
# shellcheck source=lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"
# shellcheck source=lib/remote.sh
source "$(dirname "$0")/lib/remote.sh"

harness_init
harness_require nbdcopy nbdinfo certtool
harness_start_libvirtd
remote_libvirt_backup_tls "" 1 # verify-peer on: clients show a certificate of the CA
DOM="ssh_tls_$$"
PORT=$((30000 + $$ % 10000))
harness_create_domain "$DOM" 8 1
harness_guest_write "$DOM" vda 1048576 65536 pattern 0x5a
harness_random_file "$HARNESS_DIR/io/rand" 131072
harness_guest_write "$DOM" vda 4194304 131072 file "$HARNESS_DIR/io/rand"

printf '%s\n' "<domainbackup mode='pull'><server transport='tcp' tls='yes' name='127.0.0.2' port='$PORT'/><disks><disk name='vda' backup='yes' type='file'><scratch file='$HARNESS_DIR/images/$DOM.scratch'/></disk></disks></domainbackup>" \
    >"$HARNESS_DIR/backup.xml"
harness_virsh backup-begin "$DOM" "$HARNESS_DIR/backup.xml" >/dev/null || harness_fail "backup-begin over TLS failed"
harness_wait_for 30 "the TLS export on 127.0.0.2:$PORT" timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.2/$PORT" ||
    harness_fail "nothing listens on 127.0.0.2:$PORT"

uri="nbds://127.0.0.2:$PORT/vda?tls-certificates=$REMOTE_PKI/client"
nbdcopy "$uri" "$HARNESS_DIR/copy.raw" || harness_fail "nbdcopy over TLS failed"
harness_snapshot_ref "$DOM" vda "$HARNESS_DIR/ref.raw"
harness_cmp "the disk over TLS" "$HARNESS_DIR/ref.raw" "$HARNESS_DIR/copy.raw"

if out="$(nbdinfo --size "nbd://127.0.0.2:$PORT/vda" 2>&1)"; then
    harness_fail "plain NBD was served by a TLS export: $out"
fi
if out="$(nbdinfo --size "nbds://127.0.0.2:$PORT/vda?tls-certificates=$REMOTE_PKI/wrongca" 2>&1)"; then
    harness_fail "a client of another CA was served: $out"
fi
grep -qi "certificate" <<<"$out" || harness_fail "wrong CA: the error does not mention the certificate: $out"
harness_log "ok: plain NBD and another CA's client are refused ($out)"
harness_virsh domjobabort "$DOM" >/dev/null
