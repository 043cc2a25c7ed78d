#!/bin/bash
# test_restore_remote.sh BUILD_DIR
#
# backupfs-restore -a restore -U qemu+ssh://... -o REMOTE_DIR: the "remote host" is this
# machine reached through sshd on 127.0.0.2:2222 (tests/integration/lib/remote.sh), so the
# images it writes "there" can be checked here.
#   restore: a running TCG domain (vda 32 MiB, vdb 32 MiB), a local full + inc with
#            backupfs-capture, then each point restored to the remote host (qemu-img and
#            qemu-nbd started there over ssh, NBD over TCP on 127.0.0.2): every image equal
#            to its reference (qemu-img compare), no .partial left, the summary line; once
#            plain, once --tls (libvirt's backup TLS setup of the host, client certificate
#            given with --tls-cert); -w 2 puts the two disks on ports P and P+1.
#   proxy:   --nbd-connect through tests/tools/delay_proxy.py on 127.0.0.3 with --tls (the
#            server certificate names 127.0.0.3 too); then the proxy resets every connection
#            mid-transfer: exit 1 naming the image, no image or .partial left on the host, no
#            qemu-nbd left serving it; the same after SIGTERM mid-transfer.
#   define:  -c -D -N over qemu+ssh: the domain is defined in the remote libvirt, its XML
#            names the remote images, and vmconfig.xml is on the remote host; the --password
#            given appears in no output and no log.
#   faults:  each exit 1 with no image left: an unreachable ssh port (host and port named);
#            the NBD port in use (a listener of the test's own on 127.0.0.2:P; host and port
#            named); a wrong ssh key (host named); a client CA that does not verify the server
#            (its ca-cert.pem named); a relative -o. Usage errors (exit 2): remote options
#            without a remote -U, remote instant recovery without --nbd-serve.
#   peer:    virtnbdrestore's remote mode on the same saveset, when it works here (optional;
#            its vdb compared: 1.9.15 skips zero frames, so vda's trim is not restored).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"
# shellcheck source=lib/restore.sh
source "$HERE/lib/restore.sh"
# shellcheck source=lib/remote.sh
source "$HERE/lib/remote.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
BUILD_DIR="$(realpath "$1")"
CAPTURE="$BUILD_DIR/tools/backupfs-capture"
RESTORE="$BUILD_DIR/tools/backupfs-restore"
for b in "$CAPTURE" "$RESTORE"; do
    [[ -x "$b" ]] || harness_fail "$b not built"
done
harness_init
harness_require cmp python3 qemu-img qemu-nbd ssh-keygen certtool
harness_start_libvirtd
T="$HARNESS_DIR"
K=1024
M=$((1024 * 1024))
remote_start_sshd
remote_libvirt_backup_tls

DOM="rrest-$$"
OUT="$T/saveset"
DISKS=(vda vdb)
POINTS=()
CHECKPOINTS=0
REMOTE_HOST=127.0.0.2
# A free pair of ports on 127.0.0.2 for this run (other tests use 10809 and their own).
read -r PORT < <(python3 - <<'EOF'
import socket
for _ in range(200):
    a = socket.socket(); a.bind(("127.0.0.2", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.2", p + 1))
    except OSError:
        a.close(); continue
    print(p); break
EOF
)
[[ "$PORT" =~ ^[0-9]+$ ]] || harness_fail "no free pair of ports on 127.0.0.2"
harness_log "NBD ports $PORT and $((PORT + 1)) on $REMOTE_HOST"

# remote_restore OUTDIR [OPTION...] : backupfs-restore -i OUT -U REMOTE_URI -o OUTDIR.
remote_restore() {
    local outdir="$1"
    shift
    restore_run "$outdir" -i "$OUT" -U "$REMOTE_URI" -P "$PORT" "$@"
}

image() { printf '%s/%s.%s.qcow2' "$1" "$DOM" "$2"; }

# check_point OUTDIR POINT : each disk's image there equals POINT's reference; nothing partial.
check_point() {
    local outdir="$1" point="$2" d
    for d in "${DISKS[@]}"; do
        restore_check_same "$point/$d in $outdir" "$(image "$outdir" "$d")" qcow2 \
            "$OUT.ref/$point.$d.raw"
    done
    [[ -z "$(find "$outdir" -name '*.partial')" ]] || harness_fail "$outdir holds .partial files"
    [[ "$RESTORED_POINT" == "$point" && "$RESTORED_IMAGES" == 2 ]] ||
        harness_fail "summary says $RESTORED_POINT / $RESTORED_IMAGES images, want $point / 2"
    harness_log "ok: $point restored to $REMOTE_HOST:$outdir exact"
}

# no_image OUTDIR WHAT : a failed restore left no image (complete or partial) in OUTDIR.
no_image() {
    local left
    left="$(find "$1" -name '*.qcow2*' 2>/dev/null || true)"
    [[ -z "$left" ]] || harness_fail "$2: left $left"
}

# --- a saveset: full + inc of a running domain ---------------------------------------------
harness_create_domain "$DOM" 32 2
rnd vda 0 "$M"
pat vda 0x5a $((5 * M + 1536)) $((130 * K + 512))
rnd vdb $((512 * K)) $((2 * M + 512))
capture full
rnd vda $((3 * M)) $((700 * K))
pat vdb 0x3c $((20 * M)) $((64 * K))
harness_guest_trim "$DOM" vda 0 $((256 * K))
capture inc
harness_log "saveset $OUT: ${POINTS[*]}"

# --- every point, plain and TLS ------------------------------------------------------------
for p in "${POINTS[@]}"; do
    remote_restore "$T/remote/plain.$p" -u "$p"
    check_point "$T/remote/plain.$p" "$p"
done
remote_restore "$T/remote/tls" -u "${POINTS[-1]}" --tls --tls-cert "$REMOTE_PKI/client" -w 2 -v
check_point "$T/remote/tls" "${POINTS[-1]}"
grep -qF "(TLS, $REMOTE_PKI/server on the host)" "$T/restore.err" ||
    harness_fail "--tls: the log does not say TLS with the host's directory: $(cat "$T/restore.err")"
# -w 2: the two disks were written at once, each through its own port.
for port in "$PORT" "$((PORT + 1))"; do
    grep -qF "connecting to $REMOTE_HOST:$port (TLS)" "$T/restore.err" ||
        harness_fail "-w 2: no disk written through port $port: $(cat "$T/restore.err")"
done

# --- --nbd-connect through a proxy of our own (127.0.0.3 -> 127.0.0.2), and a cut --------------
read -r PROXY_PORT < <(python3 -c '
import socket; s = socket.socket(); s.bind(("127.0.0.3", 0)); print(s.getsockname()[1])')
PROXY_PID=""
stop_proxy() { [[ -z "$PROXY_PID" ]] || kill "$PROXY_PID" 2>/dev/null || true; }
harness_on_exit stop_proxy
# start_proxy DELAY_MS : the proxy on 127.0.0.3:PROXY_PORT to qemu-nbd's port, started by us.
start_proxy() {
    stop_proxy
    rm -f "$T/proxy.ready"
    python3 "$HERE/../tools/delay_proxy.py" --listen "127.0.0.3:$PROXY_PORT" \
        --to "$REMOTE_HOST:$PORT" --delay-ms "$1" --ready-file "$T/proxy.ready" \
        >"$T/proxy.log" 2>&1 &
    PROXY_PID=$!
    harness_wait_for 30 "the proxy on 127.0.0.3:$PROXY_PORT" test -s "$T/proxy.ready" ||
        harness_fail "the delay proxy does not start: $(cat "$T/proxy.log")"
}
start_proxy 1
remote_restore "$T/remote/proxy" --tls --tls-cert "$REMOTE_PKI/client" \
    --nbd-connect "127.0.0.3:$PROXY_PORT" -v
check_point "$T/remote/proxy" "${POINTS[-1]}"
grep -qF "connecting to 127.0.0.3:$PROXY_PORT (TLS)" "$T/restore.err" ||
    harness_fail "--nbd-connect: not connected through the proxy: $(cat "$T/restore.err")"

# The network cut mid-transfer (the proxy resets every connection while vda is copied, each
# write taking 600 ms there and back): exit 1, nothing of the image left on the host, no
# qemu-nbd left serving it.
# The copy starts once every lane is connected: the log says so ("disk vda: restore point").
copying_vda() { grep -qF "disk vda: restore point" "$1"; } # copying_vda OUTPUT
start_proxy 300
rc=0
"$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" -P "$PORT" --nbd-connect "127.0.0.3:$PROXY_PORT" \
    -o "$T/remote/cut" >"$T/cut.out" 2>&1 &
CUT_PID=$!
harness_wait_for 60 "vda's copy through the proxy" copying_vda "$T/cut.out" ||
    harness_fail "the restore never started copying through the proxy: $(cat "$T/cut.out")"
kill -USR1 "$PROXY_PID"
wait "$CUT_PID" || rc=$?
((rc == 1)) || harness_fail "network cut: exit $rc, want 1: $(cat "$T/cut.out")"
grep -qF "$T/remote/cut/$DOM.vda.qcow2.partial" "$T/cut.out" ||
    harness_fail "network cut: the error does not name the image: $(cat "$T/cut.out")"
no_image "$T/remote/cut" "network cut"
cut_server_gone() { ! pgrep -f "[q]emu-nbd.*$T/remote/cut/" >/dev/null; }
harness_wait_for 30 "qemu-nbd on the cut image to end" cut_server_gone ||
    harness_fail "a qemu-nbd still serves the cut image: $(pgrep -af "[q]emu-nbd.*$T/remote/cut/")"
harness_log "ok: network cut: $(grep -m 1 ERROR "$T/cut.out")"

# SIGTERM mid-transfer: exit 1, the partial image removed from the host, qemu-nbd stopped.
rc=0
"$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" -P "$PORT" --nbd-connect "127.0.0.3:$PROXY_PORT" \
    -o "$T/remote/term" >"$T/term.out" 2>&1 &
TERM_PID=$!
harness_wait_for 60 "vda's copy through the proxy" copying_vda "$T/term.out" ||
    harness_fail "the restore never started copying through the proxy: $(cat "$T/term.out")"
kill -TERM "$TERM_PID"
wait "$TERM_PID" || rc=$?
((rc == 1)) || harness_fail "SIGTERM: exit $rc, want 1: $(cat "$T/term.out")"
grep -qF "interrupted by signal 15: the partial images were removed" "$T/term.out" ||
    harness_fail "SIGTERM: not reported: $(cat "$T/term.out")"
no_image "$T/remote/term" "SIGTERM"
term_server_gone() { ! pgrep -f "[q]emu-nbd.*$T/remote/term/" >/dev/null; }
harness_wait_for 30 "qemu-nbd on the interrupted image to end" term_server_gone ||
    harness_fail "a qemu-nbd still serves the interrupted image"
stop_proxy
harness_log "ok: SIGTERM mid-transfer leaves nothing on the host"

# --- -c -D over qemu+ssh ---------------------------------------------------------------------
NEW="$DOM-def"
SECRET="rrest-secret-$$"
HARNESS_DOMAINS+=("$NEW")
remote_restore "$T/remote/def" -cD -N "$NEW" --password "$SECRET" -v -L "$T/def.log"
check_point "$T/remote/def" "${POINTS[-1]}"
harness_virsh dominfo "$NEW" >/dev/null || harness_fail "-D did not define $NEW"
xml="$(harness_virsh dumpxml "$NEW")"
for d in "${DISKS[@]}"; do
    grep -qF "<source file='$(image "$T/remote/def" "$d")'/>" <<<"$xml" ||
        harness_fail "$NEW's XML does not name the remote image of $d: $xml"
done
grep -qF "<name>$NEW</name>" "$T/remote/def/vmconfig.xml" ||
    harness_fail "no adjusted vmconfig.xml on the remote host"
if grep -rqF -- "$SECRET" "$T/restore.out" "$T/restore.err" "$T/def.log"; then
    harness_fail "the --password appears in the output or the log"
fi
harness_log "ok: -c -D defined $NEW over qemu+ssh with the remote paths; password not logged"

# --- faults ----------------------------------------------------------------------------------
# The NBD port in use: a listener of our own holds it (started by us, stopped by pid).
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.2", int(sys.argv[1]))); s.listen(1)
open(sys.argv[2], "w").close()
time.sleep(600)' "$PORT" "$T/listener.ready" &
LISTENER=$!
stop_listener() { kill "$LISTENER" 2>/dev/null || true; }
harness_on_exit stop_listener
harness_wait_for 30 "the listener on $PORT" test -e "$T/listener.ready" ||
    harness_fail "the test's listener on 127.0.0.2:$PORT does not start"
restore_expect_rc 1 "NBD port in use" "something already listens on $REMOTE_HOST:$PORT" \
    "$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" -P "$PORT" -w 1 -o "$T/remote/busy"
grep -qF "host $REMOTE_HOST" "$T/fail.out" || harness_fail "port in use: no host named: $(cat "$T/fail.out")"
no_image "$T/remote/busy" "port in use"
stop_listener
wait "$LISTENER" 2>/dev/null || true

# Nothing listens on 127.0.0.2:1: an unreachable ssh server, named with its port.
restore_expect_rc 1 "unreachable ssh port" "cannot connect to $REMOTE_HOST:1 over ssh" \
    "$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" --ssh-port 1 -o "$T/remote/unreachable"
no_image "$T/remote/unreachable" "unreachable host"

ssh-keygen -q -t ed25519 -N '' -f "$T/wrong_key"
restore_expect_rc 1 "wrong ssh key" "$REMOTE_HOST" \
    "$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" --ssh-private-key "$T/wrong_key" -P "$PORT" \
    -o "$T/remote/wrongkey"
no_image "$T/remote/wrongkey" "wrong ssh key"

restore_expect_rc 1 "client CA does not verify the server" "ca-cert.pem" \
    "$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" -P "$PORT" --tls --tls-cert "$REMOTE_PKI/wrongca" \
    -o "$T/remote/wrongca"
no_image "$T/remote/wrongca" "wrong CA"

restore_expect_rc 2 "remote options without a remote -U" "goes with a remote -U" \
    "$RESTORE" -n -i "$OUT" -P "$PORT" -o "$T/local"
restore_expect_rc 2 "remote instant recovery without --nbd-serve" "needs --nbd-serve ADDR:PORT" \
    "$RESTORE" -a instant -i "$OUT" -U "$REMOTE_URI" -o "$T/instant"
restore_expect_rc 1 "relative remote -o" "absolute path" \
    "$RESTORE" -n -i "$OUT" -U "$REMOTE_URI" -o relative/dir
harness_log "ok: faults"

# --- peer: virtnbdrestore's remote mode (optional) --------------------------------------------
if virtnbdrestore --help 2>&1 | grep -q -- "--ssh-user"; then
    rc=0
    timeout 120 virtnbdrestore -U "$REMOTE_URI" --ssh-user root -P "$PORT" -i "$OUT" \
        -o "$T/remote/peer" -n -L "$T/peer.log" >"$T/peer.out" 2>&1 || rc=$?
    if ((rc == 0)) && [[ -f "$(image "$T/remote/peer" vdb)" ]]; then
        # vdb only: virtnbdrestore 1.9.15 skips zero frames, so vda's trim keeps stale data.
        restore_check_same "virtnbdrestore -U: vdb" "$(image "$T/remote/peer" vdb)" qcow2 \
            "$OUT.ref/${POINTS[-1]}.vdb.raw"
        harness_log "peer: virtnbdrestore's remote mode restored into $T/remote/peer; vdb exact"
    else
        harness_log "peer: virtnbdrestore's remote mode does not work here (exit $rc): $(tail -n 2 "$T/peer.out")"
    fi
fi
harness_log "PASS"
