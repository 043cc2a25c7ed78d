#!/bin/bash
# test_instant_remote.sh BUILD_DIR
#
# Remote instant recovery with a real sshd (lib/remote.sh: 127.0.0.2:2222, reaching this
# machine as "the hypervisor"), libvirtd over qemu+libssh, QEMU (TCG), FUSE and nbdkit, on a
# saveset backupfs-capture takes locally of a running domain (vda 64 MiB, vdb 32 MiB; full +
# inc, every guest write mirrored in raw references):
#   instant:  -a instant -U REMOTE -u the inc point -N NAME -o REMOTE_WORKDIR --nbd-serve
#             127.0.0.1:PORT: one summary line; the domain runs on the remote host on qcow2
#             overlays in REMOTE_WORKDIR whose backing files are nbd://127.0.0.1:PORT/vda and
#             PORT+1/vdb; each disk as the domain sees it (the overlay read over ssh with
#             qemu-img) equals the point's reference byte for byte, and reads in the guest
#             (HMP qemu-io "read -P") agree; one nbdkit per disk (the pids of the record) and
#             the mount serve it after the command ended; -a instant-list -U shows it. A guest
#             write lands in the overlay, the served image still equals the reference, and
#             every saveset file keeps its checksum.
#   refusals: --nbd-serve whose second port is in use (a listener of the test's own): exit 1,
#             the message names 127.0.0.1:PORT; nothing left: no domain, no remote work
#             directory, no nbdkit, no mount, no served directory. -a instant -U without
#             --nbd-serve: a usage error (exit 2).
#   end:      a second remote instant domain (--no-start): -a instant-end -U removes the
#             domain, its overlays and work directory on the remote host, its nbdkits and the
#             mount here.
#   live:     -a instant-migrate -U --migrate-to REMOTE_DIR: the domain runs on standalone
#             qcow2 images (no backing file) in REMOTE_DIR equal to what the guest saw before
#             (its writes included); the overlays, the work directory, the nbdkits, the mount
#             and the record are gone.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/restore.sh
source "$HERE/lib/restore.sh"
# shellcheck source=lib/remote.sh
source "$HERE/lib/remote.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
BUILD_DIR="$(realpath "$1")"
CAPTURE="$BUILD_DIR/tools/backupfs-capture"
RESTORE="$BUILD_DIR/tools/backupfs-restore"
for b in "$CAPTURE" "$RESTORE" "$BUILD_DIR/tools/backupfs"; do
    [[ -x "$b" ]] || harness_fail "$b not built"
done
harness_init
harness_need_fuse
harness_require qemu-img nbdkit nbdinfo ssh python3 sha256sum findmnt
harness_start_libvirtd
remote_start_sshd
RURI="$REMOTE_LIBSSH_URI" # libvirt's libssh transport honours known_hosts=
T="$HARNESS_DIR"
M=$((1024 * 1024))
SERVED_PREFIX="/var/tmp/backupfs-served.rinst-$$"

# What serves this test's remote instant domains goes even when it fails: nbdkits (by pid,
# found by their image path under our served directories), then the mounts.
_rinst_cleanup() {
    local f pid cmdline m
    for f in /proc/[0-9]*/cmdline; do
        pid="${f#/proc/}"
        pid="${pid%/cmdline}"
        cmdline="$({ tr '\0' ' ' <"$f"; } 2>/dev/null)" || continue
        [[ "$cmdline" == nbdkit\ *"file=$SERVED_PREFIX"* ]] && kill "$pid" 2>/dev/null
    done
    for m in $(findmnt -rn -t fuse.backupfs -o TARGET | grep -F "$SERVED_PREFIX" || true); do
        fusermount3 -u -z "$m" 2>/dev/null || true
    done
    [[ -n "${BUSY_PID:-}" ]] && kill "$BUSY_PID" 2>/dev/null
    rm -rf --one-file-system "$SERVED_PREFIX"-* 2>/dev/null
    return 0
}
harness_on_exit _rinst_cleanup

# proc_runs PID : PID runs (a zombie does not: a detached nbdkit is reaped by init, not us).
proc_runs() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ "${stat##*) }" != [ZX]* ]]
}

# remote_sh CMD... : CMD on "the hypervisor" over the test's sshd, each word quoted.
remote_sh() {
    ssh -q -i "$REMOTE_KEY" -o UserKnownHostsFile="$REMOTE_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
        -o BatchMode=yes -p "$REMOTE_SSH_PORT" "root@$REMOTE_SSH_ADDRESS" "${@@Q}"
}

# free_ports N : a port P on 127.0.0.1 with P .. P+N-1 all free (bound and released here).
free_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 60000)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    sys.exit(0)
sys.exit("no free ports")
EOF
}

# instant NAME [OPTION...] : remote -a instant -N NAME; must exit 0 with the summary line.
instant() {
    local name="$1" rc=0 re
    shift
    HARNESS_DOMAINS+=("$name")
    "$RESTORE" -n -a instant -U "$RURI" -N "$name" "$@" >"$T/instant.out" 2>"$T/instant.err" || rc=$?
    ((rc == 0)) || harness_fail "instant $name $*: exit $rc: $(cat "$T/instant.out" "$T/instant.err")"
    re="^instant recovery of [^ ]+: domain $name (running|defined) on [0-9]+ overlay\(s\) in .+ \(([0-9.]+) s\)$"
    [[ "$(cat "$T/instant.out")" =~ $re ]] ||
        harness_fail "instant $name: summary line not as documented: $(cat "$T/instant.out")"
    harness_log "ok: remote instant $name in ${BASH_REMATCH[2]} s"
}

# source_of DOM DISK : the disk's source file in the live XML.
source_of() { harness_virsh domblklist "$1" --details | awk -v d="$2" '$3 == d { print $4 }'; }

# backing_of IMAGE : the backing file named in a qcow2 header, read on the remote host.
backing_of() {
    remote_sh qemu-img info -U --output=json "$1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("backing-filename", ""))' ||
        harness_fail "qemu-img info of $1 on the remote host failed"
}

# record_pids DOM : the nbdkit pids the domain's backupfs record names.
record_pids() {
    harness_virsh metadata "$1" urn:backupfs:instant:1 | grep -o "nbdkit-pid=\"[0-9]*\"" | grep -o "[0-9]*"
}

# served_dirs NAME : this host's served directories of the instant domain NAME.
served_dirs() { compgen -G "/var/tmp/backupfs-served.$1.*" || true; }

# remote_disk_view IMAGE OUT : the disk as a domain on IMAGE sees it (the overlay over its NBD
# backing), converted to raw on the remote host.
remote_disk_view() {
    remote_sh qemu-img convert -U -f qcow2 -O raw "$1" "$2" >"$T/convert.err" 2>&1 ||
        harness_fail "qemu-img convert of $1 on the remote host: $(cat "$T/convert.err")"
}

# nothing_served NAME : no nbdkit, mount or served directory of NAME is left on this host.
nothing_served() {
    local f cmdline
    [[ -z "$(served_dirs "$1")" ]] || harness_fail "served directories of $1 are left: $(served_dirs "$1")"
    ! findmnt -rn -t fuse.backupfs -o TARGET | grep -qF "/var/tmp/backupfs-served.$1." ||
        harness_fail "a mount of $1 is left: $(findmnt -rn -t fuse.backupfs -o TARGET)"
    for f in /proc/[0-9]*/cmdline; do
        cmdline="$({ tr '\0' ' ' <"$f"; } 2>/dev/null)" || continue
        [[ "$cmdline" != nbdkit\ *"file=/var/tmp/backupfs-served.$1."* ]] ||
            harness_fail "an nbdkit of $1 is left: ${f%/cmdline}: $cmdline"
    done
}

# nothing_left NAME WORKDIR : no domain NAME, no WORKDIR on the remote host, nothing served.
nothing_left() {
    ! harness_virsh dominfo "$1" >/dev/null 2>&1 || harness_fail "domain $1 is still defined"
    local i
    for i in "${!HARNESS_DOMAINS[@]}"; do
        [[ "${HARNESS_DOMAINS[i]}" != "$1" ]] || unset "HARNESS_DOMAINS[i]"
    done
    ! remote_sh test -e "$2" || harness_fail "$2 is left on the remote host: $(remote_sh ls -la "$2")"
    nothing_served "$1"
}

saveset_sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }

# ---------------------------------------------------------------------------------------
# The source domain and its backups, taken on this host.
DOM="rinst-src-$$"
harness_create_domain "$DOM" 32 2
restore_grow_disk "$DOM" vda $((64 * M))
S="$T/plain"
harness_random_file "$T/rnd" $((8 * M))
harness_guest_write "$DOM" vda 0 $((4 * M)) file "$T/rnd"
harness_guest_write "$DOM" vda $((8 * M)) $M pattern 0x5a
harness_guest_write "$DOM" vdb $M $((2 * M)) pattern 0x11
"$CAPTURE" -d "$DOM" -l full -o "$S" >/dev/null 2>"$T/capture.err" || harness_fail "full: $(cat "$T/capture.err")"
harness_guest_write "$DOM" vda $((16 * M)) $((512 * 1024)) pattern 0x3c
harness_guest_write "$DOM" vda $((40 * M)) $((8 * M)) file "$T/rnd"
harness_guest_write "$DOM" vdb 0 $((64 * 1024)) pattern 0x22
"$CAPTURE" -d "$DOM" -l inc -o "$S" >/dev/null 2>"$T/capture.err" || harness_fail "inc: $(cat "$T/capture.err")"
mkdir -p "$T/point1"
for d in vda vdb; do harness_snapshot_ref "$DOM" "$d" "$T/point1/$d.raw"; done
saveset_sums "$S" >"$T/plain.sums"
harness_virsh destroy "$DOM" >/dev/null

# ---------------------------------------------------------------------------------------
# Remote instant recovery of the inc point.
I1="rinst-$$-a"
W1="$T/remote-work-a" # on the remote host (which is this machine)
PORT="$(free_ports 2)"
instant "$I1" -i "$S" -u virtnbdbackup.1 -o "$W1" --nbd-serve "127.0.0.1:$PORT"
[[ "$(harness_virsh domstate "$I1")" == running ]] || harness_fail "$I1 is not running"
i=0
for d in vda vdb; do
    src="$(source_of "$I1" "$d")"
    [[ "$src" == "$W1/$DOM.$d.qcow2" ]] || harness_fail "$I1/$d runs on '$src', want $W1/$DOM.$d.qcow2"
    want="nbd://127.0.0.1:$((PORT + i))/$d"
    [[ "$(backing_of "$src")" == "$want" ]] || harness_fail "$src is backed by '$(backing_of "$src")', want $want"
    remote_disk_view "$src" "$T/seen.$d.raw"
    harness_cmp "$I1/$d as the domain sees it is the inc point" "$T/point1/$d.raw" "$T/seen.$d.raw"
    i=$((i + 1))
done
harness_log "ok: $I1 runs on the remote host on overlays backed by NBD, disks equal the point"
restore_guest_read "$I1" vda $((8 * M)) $M 0x5a ok
restore_guest_read "$I1" vda $((16 * M)) $((512 * 1024)) 0x3c ok
restore_guest_read "$I1" vdb 0 $((64 * 1024)) 0x22 ok
restore_guest_read "$I1" vdb $((2 * M)) $M 0x11 ok

mapfile -t pids < <(record_pids "$I1")
((${#pids[@]} == 2)) || harness_fail "the record of $I1 names ${#pids[@]} nbdkit pids, want 2: $(harness_virsh metadata "$I1" urn:backupfs:instant:1)"
for pid in "${pids[@]}"; do
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == nbdkit\ * ]] || harness_fail "pid $pid of the record is no nbdkit"
done
mnt="$(findmnt -rn -t fuse.backupfs -o TARGET | grep -F "/var/tmp/backupfs-served.$I1.")" ||
    harness_fail "no mount serves $I1"
harness_log "ok: nbdkit ${pids[*]} and the mount $mnt serve $I1 after the command ended"
"$RESTORE" -a instant-list -U "$RURI" >"$T/list.out" 2>&1 || harness_fail "instant-list -U: $(cat "$T/list.out")"
grep -qE "^$I1 +running +virtnbdbackup\.1 .* mounted +-$" "$T/list.out" || harness_fail "instant-list -U: $(cat "$T/list.out")"

# Guest writes go to the overlay; the backup does not change.
_harness_qemu_io "$I1" vda $((32 * M)) $M "write -P 0x77 $((32 * M)) $M"
restore_guest_read "$I1" vda $((32 * M)) $M 0x77 ok
remote_disk_view "$W1/$DOM.vda.qcow2" "$T/seen-written.vda.raw"
cp "$T/point1/vda.raw" "$T/want.vda.raw"
head -c $M /dev/zero | tr '\0' '\167' | dd of="$T/want.vda.raw" bs=$M seek=32 conv=notrunc status=none
harness_cmp "$I1/vda after the guest's write" "$T/want.vda.raw" "$T/seen-written.vda.raw"
harness_cmp "the served vda is still the point's" "$T/point1/vda.raw" "$mnt/virtnbdbackup.1/vda.raw"
saveset_sums "$S" | diff "$T/plain.sums" - >&2 || harness_fail "the saveset changed under the instant domain"
harness_log "ok: guest writes in the overlay, the served point and the saveset unchanged"

# As after a reboot of the backup host: the nbdkits gone, the domain shut off; instant-resume
# -U serves the point again on the same ports and starts the domain.
harness_virsh destroy "$I1" >/dev/null
kill "${pids[@]}"
_nbdkits_gone() { ! proc_runs "${pids[0]}" && ! proc_runs "${pids[1]}"; }
harness_wait_for 30 "nbdkit ${pids[*]} to end" _nbdkits_gone ||
    harness_fail "nbdkit ${pids[*]} do not end: $(cat "/proc/${pids[0]}/stat" "/proc/${pids[1]}/stat" 2>&1)"
"$RESTORE" -a instant-resume -U "$RURI" -N "$I1" 2>"$T/resume.err" || harness_fail "instant-resume -U: $(cat "$T/resume.err")"
[[ "$(harness_virsh domstate "$I1")" == running ]] || harness_fail "$I1 not running after instant-resume"
mapfile -t pids < <(record_pids "$I1")
((${#pids[@]} == 2)) || harness_fail "the record names ${#pids[@]} nbdkit pids after the resume"
for pid in "${pids[@]}"; do proc_runs "$pid" || harness_fail "nbdkit $pid of the record does not run"; done
grep -qF -- "-p $((PORT + 1)) " <(tr '\0' ' ' <"/proc/${pids[1]}/cmdline") ||
    harness_fail "vdb's nbdkit does not serve port $((PORT + 1)): $(tr '\0' ' ' <"/proc/${pids[1]}/cmdline")"
restore_guest_read "$I1" vda $((32 * M)) $M 0x77 ok
restore_guest_read "$I1" vdb $((2 * M)) $M 0x11 ok
harness_log "ok: instant-resume -U started nbdkit ${pids[*]} on the same ports and the domain"

# ---------------------------------------------------------------------------------------
# Refusals leave nothing behind.
BUSY="$(free_ports 2)"
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("listening", flush=True); time.sleep(3600)' \
    $((BUSY + 1)) >"$T/busy.out" &
BUSY_PID=$!
harness_wait_for 30 "the test's listener on 127.0.0.1:$((BUSY + 1))" grep -q listening "$T/busy.out" ||
    harness_fail "the test's listener does not start"
HARNESS_DOMAINS+=("$I1-x")
restore_expect_rc 1 "vdb's NBD port in use" "127.0.0.1:$((BUSY + 1))" \
    "$RESTORE" -n -a instant -U "$RURI" -i "$S" -N "$I1-x" -o "$T/remote-work-x" --nbd-serve "127.0.0.1:$BUSY"
grep -qF "port is in use" "$T/fail.out" || harness_fail "the message does not say the port is in use: $(cat "$T/fail.out")"
nothing_left "$I1-x" "$T/remote-work-x"
kill "$BUSY_PID"
BUSY_PID=""
restore_expect_rc 2 "remote instant without --nbd-serve" "--nbd-serve" \
    "$RESTORE" -a instant -U "$RURI" -i "$S" -N "$I1-y" -o "$T/remote-work-y"
nothing_left "$I1-y" "$T/remote-work-y"
restore_expect_rc 1 "remote instant with --tls (not supported yet)" "serves NBD without TLS for now" \
    "$RESTORE" -a instant -U "$RURI" --tls -i "$S" -N "$I1-t" -o "$T/remote-work-t" --nbd-serve "127.0.0.1:$PORT"
nothing_left "$I1-t" "$T/remote-work-t"
restore_expect_rc 1 "remote instant with a relative work directory" "must be an absolute path" \
    "$RESTORE" -a instant -U "$RURI" -i "$S" -N "$I1-r" -o "relative-work" --nbd-serve "127.0.0.1:$PORT"
nothing_left "$I1-r" "relative-work"

# ---------------------------------------------------------------------------------------
# The end of a remote instant domain.
I2="rinst-$$-b"
instant "$I2" -i "$S" -o "$T/remote-work-b" --nbd-serve "127.0.0.1:$(free_ports 2)" --no-start
[[ "$(harness_virsh domstate "$I2")" == "shut off" ]] || harness_fail "$I2 runs despite --no-start"
[[ -n "$(served_dirs "$I2")" ]] || harness_fail "nothing serves $I2"
"$RESTORE" -a instant-end -U "$RURI" -N "$I2" 2>"$T/end.err" || harness_fail "instant-end -U: $(cat "$T/end.err")"
nothing_left "$I2" "$T/remote-work-b"
harness_log "ok: instant-end -U removed domain, overlays, work directory, nbdkits and mount"

# ---------------------------------------------------------------------------------------
# Live restore onto the remote host.
R="$T/remote-images"
"$RESTORE" -n -a instant-migrate -U "$RURI" -N "$I1" --migrate-to "$R" >"$T/migrate.out" 2>&1 ||
    harness_fail "instant-migrate -U: $(cat "$T/migrate.out")"
[[ "$(harness_virsh domstate "$I1")" == running ]] || harness_fail "$I1 stopped during the live restore"
cp "$T/point1/vdb.raw" "$T/want.vdb.raw"
for d in vda vdb; do
    src="$(source_of "$I1" "$d")"
    [[ "$src" == "$R/$DOM.$d.qcow2" ]] || harness_fail "$I1/$d runs on '$src' after the live restore, want $R/$DOM.$d.qcow2"
    [[ -z "$(backing_of "$src")" ]] || harness_fail "$src still has a backing file: $(backing_of "$src")"
    remote_disk_view "$src" "$T/migrated.$d.raw"
    harness_cmp "$I1/$d after the live restore is what the guest saw" "$T/want.$d.raw" "$T/migrated.$d.raw"
done
restore_guest_read "$I1" vda $((32 * M)) $M 0x77 ok
for pid in "${pids[@]}"; do
    ! proc_runs "$pid" || harness_fail "nbdkit $pid still runs after the live restore"
done
nothing_served "$I1"
! remote_sh test -e "$W1" || harness_fail "$W1 is left on the remote host: $(remote_sh ls -la "$W1")"
[[ -z "$(harness_virsh metadata "$I1" urn:backupfs:instant:1 2>/dev/null)" ]] ||
    harness_fail "$I1 still has its backupfs record"
harness_log "ok: live restore onto the remote host: standalone images equal the guest's view, nothing served"
harness_log "PASS"
