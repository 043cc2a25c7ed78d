#!/bin/bash
# test_capture_remote.sh BUILD_DIR
#
# backupfs-capture against a "remote" hypervisor: this machine reached through its own network
# paths, as a backup host reaches its hypervisors. sshd on 127.0.0.2:2222 with keys the test
# makes, libvirt over qemu+ssh:// to it, the backup job's NBD export on TCP (127.0.0.2, plain
# and TLS with a CA and certificates the test makes, set up as libvirt's backup TLS), firmware
# and image info fetched over SFTP/ssh. Variants:
#   tcp:     one disk; full, inc, diff over plain TCP.
#   tls:     two disks, -z, --tls; full, inc (-w 2), auto (after libvirt lost the last
#            checkpoint: redefined from the saveset), diff, copy.
#   offline: the tcp domain shut off; an inc becomes a diff read through qemu-nbd started on
#            the remote host over ssh (plain, then TLS), then a copy.
#   cut:     the NBD connection dropped mid-transfer (the test's own proxy on 127.0.0.3 drops
#            every connection once 16 MiB have gone through): exit 1 naming the export, the job aborted and the
#            new checkpoint deleted on the remote side, nothing looking complete left; the
#            next run (through the proxy, --nbd-connect) is exact.
#   peer:    virtnbdbackup's remote mode (the Debian package) takes a full over the same
#            setup; our remote inc continues its chain; both points mount exact, and
#            virtnbdrestore restores our remote full.
# Every restore point, mounted with backupfs, equals the guest-disk reference byte for byte.
# Bad input, each exit 1 with a message naming the host or port and nothing of the run kept:
# an unreachable host, a wrong ssh key, a host key that does not match known_hosts, a TLS CA
# that does not verify the server, a --tls-cert directory without ca-cert.pem, an NBD port in
# use, a domain the host does not have. A password given with --password is never logged.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"
# shellcheck source=lib/remote.sh
source "$HERE/lib/remote.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp python3 qemu-img virtnbdbackup virtnbdrestore flock ssh-keygen
PROXY="$HERE/../tools/delay_proxy.py"
[[ -f "$PROXY" ]] || harness_fail "$PROXY missing"

remote_start_sshd
remote_pki
PKI="$REMOTE_PKI"
remote_libvirt_backup_tls
PORT=$((10900 + $$ % 50 * 2)) # two ports per run: offline servers use -P and -P+1
R=(-U "$REMOTE_URI" -P "$PORT")
TLS=(--tls --tls-cert "$PKI/client")

PROXY_PID=""
LISTENER_PID=""
stop_proxy() { [[ -z "$PROXY_PID" ]] || kill "$PROXY_PID" 2>/dev/null || true; }
stop_listener() { [[ -z "$LISTENER_PID" ]] || kill "$LISTENER_PID" 2>/dev/null || true; }

# remote_state_clean WHAT : no backup job on $DOM, no checkpoint virtnbdbackup.$CHECKPOINTS, no
# data file of a run that failed and no .partial file in $OUT.
remote_state_clean() {
    harness_virsh domjobinfo "$DOM" | grep -qE 'Job type: +None' ||
        harness_fail "$1: a backup job is still running: $(harness_virsh domjobinfo "$DOM")"
    ! harness_virsh checkpoint-info "$DOM" "virtnbdbackup.$CHECKPOINTS" >/dev/null 2>&1 ||
        harness_fail "$1: checkpoint virtnbdbackup.$CHECKPOINTS was left behind"
    [[ -z "$(find "$OUT" -name '*.partial' -o -name "*.inc.virtnbdbackup.$CHECKPOINTS.data")" ]] ||
        harness_fail "$1: files of the failed run left in $OUT: $(ls "$OUT")"
}

run_tcp() {
    start_variant rtcp 1
    rnd vda 0 "$M"
    pat vda 0x5a $((5 * M + 1536)) $((130 * K + 512))
    rnd vda $((40 * M - 512)) $((2 * M))
    capture full "${R[@]}"
    grep -qF "export on 127.0.0.2:$PORT" "$T/capture.0.out" ||
        harness_fail "the job's export did not listen on TCP: $(cat "$T/capture.0.out")"
    rnd vda $((256 * K + 512)) $((70 * K))
    harness_guest_trim "$DOM" vda $((40 * M)) $((M + 512 * 3))
    capture inc "${R[@]}"
    pat vda 0x11 $((5 * M + 2048)) 512
    capture diff "${R[@]}"
    check_files
    check_mount
    check_virtnbdrestore
}

run_tls() {
    start_variant rtls 2
    rnd vda 0 "$M"
    rnd vdb $((3 * M + 512)) $((5 * M))
    capture full "${R[@]}" "${TLS[@]}" -z
    grep -qF "export on 127.0.0.2:$PORT (TLS)" "$T/capture.0.out" ||
        harness_fail "the job's export did not use TLS: $(cat "$T/capture.0.out")"
    rnd vdb $((10 * M)) "$M"
    harness_guest_trim "$DOM" vdb $((4 * M)) $((2 * M))
    capture inc "${R[@]}" "${TLS[@]}" -z -w 2
    # libvirt forgets the last checkpoint: the remote run redefines it from the saveset.
    harness_virsh checkpoint-delete "$DOM" virtnbdbackup.1 --metadata >/dev/null
    pat vda 0x77 $((30 * M + 512)) $((3 * K))
    capture auto "${R[@]}" "${TLS[@]}" -z
    grep -qF "libvirt had lost checkpoint virtnbdbackup.1: redefined it" \
        "$T/capture.$((${#POINTS[@]} - 1)).out" || harness_fail "the lost checkpoint was not redefined"
    harness_guest_trim "$DOM" vda 0 $((512 * K))
    capture diff "${R[@]}" "${TLS[@]}" -z
    rnd vda $((50 * M)) "$M"
    capture copy "${R[@]}" "${TLS[@]}" -z
    check_files
    check_mount
}

# The tcp variant's domain (run right after it), shut off: its inc is a diff read by qemu-nbd
# on the remote host.
run_offline() {
    harness_virsh destroy "$DOM" >/dev/null
    harness_offline_write "$DOM" vda $((7 * M)) $((64 * K)) 0x3c
    KIND=diff capture inc "${R[@]}"
    grep -qF "starting qemu-nbd on host 127.0.0.2" "$T/capture.$((${#POINTS[@]} - 1)).out" ||
        harness_fail "offline: qemu-nbd was not started on the remote host"
    sleep 1 # diffs are named by the second: the next one must not reuse this name
    harness_offline_write "$DOM" vda $((9 * M)) $((64 * K)) 0x3d
    KIND=diff capture inc "${R[@]}" "${TLS[@]}"
    harness_offline_write "$DOM" vda $((63 * M)) "$M" 0x3e
    capture copy "${R[@]}" # the newest point: the mount's latest is a copy when one exists
    [[ -z "$(pgrep -f "qemu-nbd.*$DOM" || true)" ]] || harness_fail "offline: qemu-nbd left running"
    check_files
    check_mount
    harness_virsh start "$DOM" >/dev/null
}

# The NBD connection dropped mid-transfer by the proxy; then an exact run through the proxy.
run_cut() {
    local log="$T/cut.out" rc=0
    start_variant rcut 1
    rnd vda 0 "$M"
    capture full "${R[@]}"
    rnd vda $((8 * M + 512)) $((48 * M))
    # The proxy cuts every connection once 16 MiB of the inc's 48 MiB have gone through.
    python3 "$PROXY" --listen "127.0.0.3:$PORT" --to "127.0.0.2:$PORT" --delay-ms 2 \
        --drop-after-bytes $((16 * M)) --ready-file "$T/proxy.ready" >"$T/proxy.log" 2>&1 &
    PROXY_PID=$!
    harness_on_exit stop_proxy
    harness_wait_for 30 "the proxy" test -e "$T/proxy.ready" || harness_fail "proxy: $(cat "$T/proxy.log")"
    "$CAPTURE" -d "$DOM" -l inc -o "$OUT" "${R[@]}" --nbd-connect "127.0.0.3:$PORT" -v >"$log" 2>&1 ||
        rc=$?
    ((rc == 1)) || harness_fail "cut: exit $rc, want 1: $(cat "$log")"
    grep -F "127.0.0.3:$PORT" "$log" | grep -E "ERROR .* at [0-9]+" >/dev/null ||
        harness_fail "cut: the message does not name the export and offset: $(grep ERROR "$log")"
    remote_state_clean "cut"
    harness_log "ok: network cut mid-transfer: $(grep -m1 ERROR "$log" || tail -n 1 "$log")"
    capture inc "${R[@]}" --nbd-connect "127.0.0.3:$PORT"
    check_files
    check_mount
}

# virtnbdbackup's remote mode as the peer: its full, our inc on its chain, its restore of ours.
run_peer() {
    start_variant rpeer 1
    rnd vda 0 "$M"
    rnd vda $((20 * M)) "$M"
    VNB_SSH_HOST=127.0.0.2 VNB_SSH_PORT=2222 VNB_SSH_KEY="$REMOTE_KEY" timeout 300 /usr/bin/python3 "$HERE/../tools/virtnbdbackup_remote.py" \
        -d "$DOM" -l full -o "$OUT" -U "$REMOTE_URI" --ssh-user root -I 127.0.0.2 -P "$PORT" -n \
        >"$T/vnb.out" 2>&1 || harness_fail "virtnbdbackup remote full: $(tail -n 20 "$T/vnb.out")"
    ! grep -E ' (ERROR|CRITICAL) |Traceback' "$T/vnb.out" >&2 || harness_fail "virtnbdbackup logged errors"
    grep -qF "nbd://127.0.0.2:$PORT/vda" "$T/vnb.out" ||
        harness_fail "virtnbdbackup did not read over TCP (its remote mode): $(grep -i nbd "$T/vnb.out")"
    record_point full
    rnd vda $((30 * M + 512)) $((300 * K))
    capture inc "${R[@]}"
    check_files
    check_mount
    local peer=$OUT
    start_variant rpeer2 1
    rnd vda $((M + 512)) "$M"
    capture full "${R[@]}"
    check_virtnbdrestore
    harness_log "ok: virtnbdbackup remote full + our remote inc; virtnbdrestore of our remote full ($peer, $OUT)"
}

bad_inputs() {
    local dom="bfsit-cap-$$-rtcp" out="$T/bad" otherkey="$T/otherkey" badhosts="$T/bad_known_hosts"
    expect_fail "unreachable host" "127.0.0.9" \
        "$CAPTURE" -d "$dom" -l full -o "$out" -U "${REMOTE_URI/127.0.0.2/127.0.0.9}" -P "$PORT"
    ssh-keygen -q -t ed25519 -N '' -f "$otherkey"
    expect_fail "wrong ssh key" "127.0.0.2" \
        "$CAPTURE" -d "$dom" -l full -o "$out" "${R[@]}" --ssh-private-key "$otherkey"
    ssh-keygen -q -t ed25519 -N '' -f "$T/otherhostkey"
    printf '[127.0.0.2]:2222 %s\n' "$(cut -d' ' -f1,2 "$T/otherhostkey.pub")" >"$badhosts"
    expect_fail "host key mismatch" "does not match" \
        "$CAPTURE" -d "$dom" -l full -o "$out" -P "$PORT" \
        -U "qemu+ssh://root@127.0.0.2:2222/system?keyfile=$REMOTE_KEY&known_hosts=$badhosts"
    expect_fail "TLS CA that does not verify the server" "certificate" \
        "$CAPTURE" -d "$dom" -l full -o "$out" "${R[@]}" --tls --tls-cert "$PKI/wrongca"
    mkdir -p "$T/nocerts"
    expect_fail "--tls-cert without ca-cert.pem" "ca-cert.pem" \
        "$CAPTURE" -d "$dom" -l full -o "$out" "${R[@]}" --tls --tls-cert "$T/nocerts"
    python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.2", int(sys.argv[1]))); s.listen(1)
open(sys.argv[2], "w").close(); time.sleep(120)' "$((PORT + 1))" "$T/listener.ready" &
    LISTENER_PID=$!
    local listener=$LISTENER_PID
    harness_on_exit stop_listener
    harness_wait_for 30 "a listener on port $((PORT + 1))" test -e "$T/listener.ready" ||
        harness_fail "could not start the listener"
    expect_fail "NBD port in use" "$((PORT + 1))" \
        "$CAPTURE" -d "$dom" -l full -o "$out" -U "$REMOTE_URI" -P "$((PORT + 1))"
    kill "$listener"
    expect_fail "a domain the host does not have" "bfsit-no-such-domain" \
        "$CAPTURE" -d bfsit-no-such-domain -l full -o "$out" "${R[@]}"
    [[ -z "$(find "$out" -name '*.data' -o -name '*.partial' 2>/dev/null)" ]] ||
        harness_fail "bad input left data files: $(ls -R "$out")"
    [[ -z "$(harness_virsh checkpoint-list "$dom" --name)" ]] ||
        harness_fail "bad input left checkpoints on $dom: $(harness_virsh checkpoint-list "$dom" --name)"
    # The password is for libvirt's SASL; over qemu+ssh libvirt never asks for it, but it must
    # still never reach a log or the output.
    "$CAPTURE" -d "$dom" -l copy -o "$T/pw" "${R[@]}" --user backup --password 'S3cret-pw-42' -v \
        >"$T/pw.out" 2>&1 || harness_fail "copy with --password failed: $(cat "$T/pw.out")"
    ! grep -rqF 'S3cret-pw-42' "$T/pw.out" "$T/pw" || harness_fail "the password was logged"
    harness_log "ok: the password given with --password appears in no log"
}

run_tcp
run_offline
run_tls
bad_inputs
run_cut
run_peer
echo "PASS: remote capture (qemu+ssh, NBD over TCP and TLS, offline, network cut, virtnbdbackup peer), every restore point exact"
