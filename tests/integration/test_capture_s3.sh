#!/bin/bash
# test_capture_s3.sh BUILD_DIR
#
# backupfs-capture into a real S3 store (a one-node Ceph RADOS Gateway, lib/rgw.sh) exactly as
# into a directory. Two TCG domains get the same guest writes (2 disks of 768 MiB, 640 MiB of
# random data before the full): one is captured into s3://BUCKET/vm1, the other into a local
# directory, each full, inc, inc, diff. Checked:
#   - the bucket's object list equals the directory's file list (the domain's name in
#     <domain>.cpt, the diff's unixtime and the logs' timestamps aside), and the data files have
#     the same sizes;
#   - `aws s3 sync` of the bucket down to a directory, and the local directory, each restored
#     with virtnbdrestore at every point, equal the guest disks at that point byte for byte; the
#     bucket mounted with backupfs shows every point exact too;
#   - the full capture into the bucket peaks under 512 MiB of RSS (/usr/bin/time -v) while its
#     vda data file is larger than that;
#   - the run's log is in the bucket at the end;
#   - a fleet (-d A -d B) into s3://BUCKET/fleet puts one saveset under fleet/<domain> each, and
#     -t raw writes a raw image object equal to the disk, zeros where it has holes;
#   - -l auto on a broken chain in a bucket moves the old chain's objects (checkpoints/ too)
#     under broken-chain.<time>/, where it still mounts exact, and starts a new one;
#   - a second capture while one holds the lock (its part uploads held by the fault proxy) is
#     refused at once, naming the holder's host and pid;
#   - connections cut mid-upload (s3_fault_proxy.py) and a gateway stopped mid-capture
#     (rgw.sh stop-gateway) make the capture fail (exit 1) naming the s3:// address, with no new
#     data file visible and no pending multipart upload (or only uploads its message lists for
#     cleanup), the domain's checkpoint and job gone; a later capture succeeds and the chain
#     stays exact;
#   - a capture whose lock object another host's run replaced while a part upload was held
#     stops before it commits its disks (exit 1, naming the lock and where it stopped), with no
#     new data file or sidecar visible, and leaves the other run's lock as it was.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"
# shellcheck source=lib/rgw.sh
source "$HERE/lib/rgw.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" cmp python3 qemu-img virtnbdrestore ceph-mon ceph-osd radosgw \
    radosgw-admin monmaptool ceph flock /usr/bin/time
[[ -x /usr/bin/aws ]] || harness_require aws

BUCKET=bfsit-capture
S3="s3://$BUCKET/vm1"
DOM_S3="bfsit-cap-$$-s3"
DOM_LOCAL="bfsit-cap-$$-local"
LOCAL="$T/local"
DISKS=(vda vdb)
POINTS=()      # restore points of both savesets, oldest first (a diff by the S3 run's unixtime)
CHECKPOINTS=0  # of DOM_S3's chain: the next inc creates virtnbdbackup.$CHECKPOINTS
LOCAL_DIFF=""  # the local diff's unixtime
RUNS=0
RSS_LIMIT_KIB=$((512 * 1024))

# both_write DISK OFFSET LENGTH : the same fresh random bytes into both domains' disk.
both_write() {
    harness_random_file "$T/rnd" "$3"
    harness_guest_write "$DOM_S3" "$1" "$2" "$3" file "$T/rnd"
    harness_guest_write "$DOM_LOCAL" "$1" "$2" "$3" file "$T/rnd"
}

# run_capture DOMAIN OUTPUT LEVEL [OPTION...] : one capture that must succeed, timed by
# /usr/bin/time -v; its output in $T/run.N.out (N in RUN), its peak RSS (KiB) in RSS.
run_capture() {
    local dom="$1" out="$2" level="$3" rc=0
    shift 3
    RUN=$((RUNS++))
    /usr/bin/time -v -o "$T/run.$RUN.time" "$CAPTURE" -d "$dom" -l "$level" -o "$out" -v "$@" \
        >"$T/run.$RUN.out" 2>&1 || rc=$?
    ((rc == 0)) || harness_fail "capture -l $level -o $out: exit $rc: $(cat "$T/run.$RUN.out")"
    RSS="$(sed -n 's/^\tMaximum resident set size (kbytes): //p' "$T/run.$RUN.time")"
    [[ "$RSS" =~ ^[0-9]+$ ]] || harness_fail "no peak RSS in $T/run.$RUN.time"
    harness_log "-l $level -o $out: peak RSS $((RSS / 1024)) MiB: $(tail -n 1 "$T/run.$RUN.out")"
}

# s3_dirty LENGTH : fresh random bytes into DOM_S3's vda (its alone: the local saveset is
# compared before), LENGTH at 700 MiB, enough for several 16 MiB upload parts.
s3_dirty() {
    harness_random_file "$T/rnd" "$1"
    harness_guest_write "$DOM_S3" vda $((700 * M)) "$1" file "$T/rnd"
}

# snapshot POINT : the references of DOM_S3 (the same as DOM_LOCAL's) as POINT.
snapshot() {
    local d
    for d in "${DISKS[@]}"; do harness_snapshot_ref "$DOM_S3" "$d" "$T/ref/$1.$d.raw"; done
    POINTS+=("$1")
}

# point LEVEL [OPTION...] : both captures at LEVEL, then the references as the new point; the
# capture into the bucket's peak RSS in RSS_S3.
point() {
    local level="$1" p
    shift
    run_capture "$DOM_S3" "$S3" "$level" "$@"
    RSS_S3="$RSS"
    run_capture "$DOM_LOCAL" "$LOCAL" "$level" "$@"
    case "$level" in
    diff)
        p="$(rgw_ls "$BUCKET" vm1/vda.diff. | sed -n 's|^vm1/vda\.diff\.\([0-9]*\)\.data\t.*|\1|p')"
        LOCAL_DIFF="$(find "$LOCAL" -maxdepth 1 -name 'vda.diff.*.data' -printf '%f\n' |
            sed 's/^vda\.diff\.//; s/\.data$//')"
        [[ "$p" =~ ^[0-9]+$ && "$LOCAL_DIFF" =~ ^[0-9]+$ ]] ||
            harness_fail "want one diff in each saveset, got '$p' and '$LOCAL_DIFF'"
        ;;
    *) p="virtnbdbackup.$((CHECKPOINTS++))" ;;
    esac
    snapshot "$p"
}

# names_in_bucket / names_in_dir DIR : "NAME<TAB>SIZE" per file, the domain, diff id and log
# time stamps replaced by placeholders, sorted; sizes kept for the data files only (the others
# name the domain or hold times).
normalize() {
    local dom="$1" diff="$2"
    sed -E "s/^$dom\.cpt/DOMAIN.cpt/; s/\.$diff\./.DIFF./g; s/^(backup\.[a-z]+)\.[0-9.]+\.log/\1.TIME.log/" |
        awk -F'\t' '{ print ($1 ~ /\.data$/) ? $1 "\t" $2 : $1 }' | LC_ALL=C sort
}
names_in_bucket() {
    rgw_ls "$BUCKET" vm1/ | sed 's|^vm1/||' | normalize "$DOM_S3" "$(diff_point)"
}
names_in_dir() { (cd "$1" && find . -type f -printf '%P\t%s\n') | normalize "$2" "$3"; }
diff_point() { printf '%s' "${POINTS[3]:-none}"; }

check_same_files() {
    names_in_bucket >"$T/bucket.names"
    names_in_dir "$LOCAL" "$DOM_LOCAL" "$LOCAL_DIFF" >"$T/local.names"
    diff -u "$T/local.names" "$T/bucket.names" >"$T/names.diff" ||
        harness_fail "the bucket's objects differ from the directory's files: $(cat "$T/names.diff")"
    grep -qx 'vda.full.data.idx' "$T/bucket.names" || harness_fail "no sidecar index in the bucket"
    grep -qx 'backup.diff.TIME.log' "$T/bucket.names" || harness_fail "no run log in the bucket"
    harness_log "ok: the bucket holds the same $(wc -l <"$T/bucket.names") files as the directory"
}

# restore_point SAVESET POINT : virtnbdrestore of SAVESET at POINT (the last point: the whole
# chain, diff included) equals the references of POINT. One disk per run: virtnbdrestore 1.9.15
# serves each disk on the same socket, and the first qemu-nbd's exit can remove the second's.
restore_point() {
    local saveset="$1" p="$2" rest="$T/rest" until=() d img
    [[ "$p" == "${POINTS[-1]}" ]] || until=(--until "$p")
    for d in "${DISKS[@]}"; do
        rm -rf "$rest"
        harness_virtnbdrestore -a restore -i "$saveset" -o "$rest" -d "$d" "${until[@]}" -n >/dev/null
        img="$(find "$rest" -maxdepth 1 -name "*$d*" ! -name '*.xml' -print -quit)"
        [[ -n "$img" ]] || harness_fail "virtnbdrestore wrote no $d image: $(ls "$rest")"
        harness_wait_image_free "$img"
        qemu-img convert -O raw "$img" "$T/rest.raw"
        harness_cmp "virtnbdrestore of $(basename "$saveset") at $p, $d" "$T/ref/$p.$d.raw" "$T/rest.raw"
        rm -rf "$T/rest.raw" "$rest"
    done
}

# chain_in_time_order DIR : each disk's data files in DIR have strictly increasing mtimes along
# the chain. virtnbdrestore orders them so, and `aws s3 sync` gives each file its object's
# LastModified in whole seconds: the captures here run back to back, and each waits for a later
# second than the last data file's (a stress run once restored the diff before inc 2 when they
# tied).
chain_in_time_order() {
    local d f last=-1 t
    for d in "${DISKS[@]}"; do
        last=-1
        for f in "$d.full.data" "$d.inc.virtnbdbackup.1.data" "$d.inc.virtnbdbackup.2.data" \
            "$d.diff.$(diff_point).data"; do
            t="$(stat -c %Y "$1/$f")" || harness_fail "no $f in $1: $(ls "$1")"
            ((t > last)) || harness_fail "$1/$f is not newer than the data file before it: $(ls -l --time-style=+%s "$1")"
            last=$t
        done
    done
}

check_restores() {
    local p
    rgw_aws s3 sync --only-show-errors "$S3" "$T/synced"
    chain_in_time_order "$T/synced"
    harness_log "ok: synced down, each disk's data files have the chain's order by mtime"
    for p in "${POINTS[@]}"; do
        restore_point "$T/synced" "$p"
        restore_point "$LOCAL" "$p"
    done
}

# check_mount : the bucket itself, mounted with backupfs, shows every point exact.
check_mount_s3() {
    local mnt="$T/mnt" p d
    harness_mount_backupfs "$BUILD_DIR" "$S3" "$mnt"
    for p in "${POINTS[@]}"; do
        for d in "${DISKS[@]}"; do
            harness_cmp "mount of $S3 $p/$d.raw" "$T/ref/$p.$d.raw" "$mnt/$p/$d.raw"
        done
    done
    harness_unmount "$mnt"
}

# A fleet of both domains (vdb only, a copy: their chains stay as they are) into one prefix, and
# a raw image of DOM_S3's vdb (mostly holes, uploaded as zeros).
check_fleet_and_raw() {
    local fleet="s3://$BUCKET/fleet" dom out="$T/fleet.out" rc=0
    "$CAPTURE" -d "$DOM_S3" -d "$DOM_LOCAL" -l copy -i vdb -o "$fleet" >"$out" 2>&1 || rc=$?
    ((rc == 0)) || harness_fail "fleet into $fleet: exit $rc: $(cat "$out")"
    for dom in "$DOM_S3" "$DOM_LOCAL"; do
        grep -qE "^$dom +copy .* ok\$" "$out" || harness_fail "no ok row for $dom: $(cat "$out")"
        rgw_ls "$BUCKET" "fleet/$dom/" | grep -qP "^fleet/$dom/vdb\.copy\.data\t" ||
            harness_fail "no fleet/$dom/vdb.copy.data: $(rgw_ls "$BUCKET" fleet/)"
        rgw_ls "$BUCKET" "fleet/$dom/" | grep -qP "^fleet/$dom/backup\.copy\.[0-9]+\.log\t" ||
            harness_fail "no log in fleet/$dom/: $(rgw_ls "$BUCKET" fleet/)"
    done
    harness_log "ok: a fleet of 2 domains into $fleet/<domain>"
    harness_snapshot_ref "$DOM_S3" vdb "$T/raw.ref"
    "$CAPTURE" -d "$DOM_S3" -l copy -t raw -i vdb -o "s3://$BUCKET/raw" >"$out" 2>&1 ||
        harness_fail "-t raw into s3://$BUCKET/raw failed: $(cat "$out")"
    rgw_aws s3 cp --only-show-errors "s3://$BUCKET/raw/vdb.copy.data" "$T/raw.got"
    harness_cmp "-t raw into s3://$BUCKET/raw, vdb" "$T/raw.ref" "$T/raw.got"
    rm -f "$T/raw.ref" "$T/raw.got"
}

# The qcow2 format node of DOMAIN's DISK (for QMP bitmap commands).
format_node() {
    harness_virsh qemu-monitor-command "$1" '{"execute":"query-named-block-nodes"}' |
        python3 -c '
import json, sys
for n in json.load(sys.stdin)["return"]:
    if n["drv"] == "qcow2" and n["file"] == sys.argv[1]:
        print(n["node-name"]); break
' "$HARNESS_DIR/images/$1.$2.qcow2"
}

# DOM_LOCAL's vdb (its vda is big, and its local chain is compared already) into a prefix of
# its own: full, inc, then its last bitmap removed, so that auto sets the chain aside.
check_broken_chain() {
    local out="s3://$BUCKET/broken" dom="$DOM_LOCAL" p node aside mnt="$T/mnt"
    for p in full inc; do
        harness_random_file "$T/rnd" "$M"
        harness_guest_write "$dom" vdb $((RUNS * M)) "$M" file "$T/rnd"
        run_capture "$dom" "$out" "$p" -i vdb
        harness_snapshot_ref "$dom" vdb "$T/ref/broken.$p.raw"
    done
    node="$(format_node "$dom" vdb)"
    [[ -n "$node" ]] || harness_fail "no qcow2 node for $dom vdb"
    harness_virsh qemu-monitor-command "$dom" "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"$node\",\"name\":\"virtnbdbackup.1\"}}" >/dev/null
    run_capture "$dom" "$out" auto -i vdb
    grep -qF "its files were moved to $out/broken-chain." "$T/run.$RUN.out" ||
        harness_fail "auto did not set the chain aside: $(cat "$T/run.$RUN.out")"
    aside="$(sed -n "s|.*its files were moved to \($out/broken-chain\.[0-9]*\);.*|\1|p" "$T/run.$RUN.out")"
    for p in vdb.full.data vdb.full.data.idx vdb.inc.virtnbdbackup.1.data "$dom.cpt" \
        checkpoints/virtnbdbackup.1.xml; do
        rgw_ls "$BUCKET" "${aside#s3://"$BUCKET"/}/" | grep -qP "/\Q$p\E\t" ||
            harness_fail "$p is not under $aside: $(rgw_ls "$BUCKET" broken/)"
    done
    rgw_ls "$BUCKET" broken/vdb.full.data | grep -qP '^broken/vdb\.full\.data\t' ||
        harness_fail "auto started no new chain: $(rgw_ls "$BUCKET" broken/)"
    ! rgw_ls "$BUCKET" broken/vdb.inc | grep -q . || harness_fail "an inc of the old chain stayed"
    harness_mount_backupfs "$BUILD_DIR" "$aside" "$mnt"
    harness_cmp "$aside virtnbdbackup.0/vdb.raw" "$T/ref/broken.full.raw" "$mnt/virtnbdbackup.0/vdb.raw"
    harness_cmp "$aside virtnbdbackup.1/vdb.raw" "$T/ref/broken.inc.raw" "$mnt/virtnbdbackup.1/vdb.raw"
    harness_unmount "$mnt"
}

# pending_uploads : "KEY<TAB>UPLOAD_ID" of the multipart uploads under vm1/ (nothing if none).
pending_uploads() {
    local out
    out="$(rgw_aws s3api list-multipart-uploads --bucket "$BUCKET" --prefix vm1/ \
        --query 'Uploads[].[Key,UploadId]' --output text)" || harness_fail "cannot list uploads"
    [[ "$out" == None || -z "$out" ]] || printf '%s\n' "$out"
}

# expect_clean_failure OUT FILE [sidecars] : the failed inc of OUT named the bucket, left no
# data file FILE (with `sidecars`: nor its .idx and .chksum), no checkpoint and no job; pending
# uploads only those OUT lists for cleanup (aborted here, as their warning says to).
expect_clean_failure() {
    local out="$1" file="$2" key id pattern="^vm1/$2\t"
    grep -qF "$S3/" "$out" || harness_fail "the failure does not name $S3: $(cat "$out")"
    [[ "${3:-}" != sidecars ]] || pattern="^vm1/$2"
    ! rgw_ls "$BUCKET" "vm1/$file" | grep -qP "$pattern" ||
        harness_fail "$file is visible after a failed capture: $(rgw_ls "$BUCKET" "vm1/$file")"
    ! harness_virsh checkpoint-info "$DOM_S3" "virtnbdbackup.$CHECKPOINTS" >/dev/null 2>&1 ||
        harness_fail "the failed capture left its checkpoint"
    harness_virsh domjobinfo "$DOM_S3" | grep -qE 'Job type: +None' ||
        harness_fail "the failed capture left its backup job: $(harness_virsh domjobinfo "$DOM_S3")"
    while IFS=$'\t' read -r key id; do
        [[ -n "$key" ]] || continue
        grep -qF "$id" "$out" || harness_fail "pending upload $key ($id) is not listed in: $(cat "$out")"
        rgw_aws s3api abort-multipart-upload --bucket "$BUCKET" --key "$key" --upload-id "$id"
        harness_log "ok: pending upload $key listed for cleanup, aborted"
    done < <(pending_uploads)
}

# inc_through_proxy OUT : an inc of DOM_S3 into the bucket through the fault proxy, in the
# background (its pid in INC_PID).
inc_through_proxy() {
    "$CAPTURE" -d "$DOM_S3" -l inc -o "$S3" --s3-endpoint "$RGW_PROXY_ENDPOINT" -v >"$1" 2>&1 &
    INC_PID=$!
}

proxy_stalls() { (($(rgw_proxy_stat faults.stall) >= 1)); }

check_lock_and_stopped_gateway() {
    local next="vda.inc.virtnbdbackup.$CHECKPOINTS.data" rc=0 left
    s3_dirty $((48 * M))
    rgw_proxy stall match=partNumber= count=all >/dev/null
    inc_through_proxy "$T/stopped.out"
    harness_wait_for 120 "a part upload held by the proxy" proxy_stalls ||
        harness_fail "no part upload reached the proxy: $(cat "$T/stopped.out")"
    expect_fail "a second capture while one holds the lock" \
        "is in use by another run (backupfs-capture on host $(hostname), pid $INC_PID" \
        "$CAPTURE" -d "$DOM_S3" -l inc -o "$S3"
    rgw_stop_gateway
    rgw_proxy clear >/dev/null # the held parts go on, to a gateway that is gone
    wait "$INC_PID" || rc=$?
    rgw_start_gateway
    ((rc == 1)) || harness_fail "capture with the gateway stopped: exit $rc: $(cat "$T/stopped.out")"
    harness_log "ok: gateway stopped mid-capture: $(grep ERROR "$T/stopped.out" | tail -n 1)"
    # Its sidecars went up before the parts failed, and with the store gone they could not be
    # removed: the next inc of this name replaces them.
    expect_clean_failure "$T/stopped.out" "$next"
    # Its log could not go up either: it stays local, named.
    left="$(sed -n 's/.*(it is kept in \([^)]*\)).*/\1/p' "$T/stopped.out" | head -n 1)"
    [[ -s "$left" ]] || harness_fail "the failed run's log is neither stored nor kept: $(cat "$T/stopped.out")"
    rm -rf "$(dirname "$left")"
    # A lock its holder could not release (the store was gone) stays until its lease ends:
    # what a dead holder leaves. Here the holder is known dead: remove it, as an admin would.
    if rgw_ls "$BUCKET" vm1/.backupfs-lock | grep -q .; then
        rgw_aws s3 rm --only-show-errors "$S3/.backupfs-lock"
        harness_log "removed the lock the failed run could not release"
    fi
}

check_cut_connections() {
    local next="vda.inc.virtnbdbackup.$CHECKPOINTS.data" rc=0
    s3_dirty $((40 * M))
    rgw_proxy cut dir=up bytes=262144 match=partNumber= count=all >/dev/null
    inc_through_proxy "$T/cut.out"
    wait "$INC_PID" || rc=$?
    ((rc == 1)) || harness_fail "capture with uploads cut: exit $rc: $(cat "$T/cut.out")"
    (($(rgw_proxy_stat faults.cut_up) >= 1)) || harness_fail "the proxy cut no upload"
    rgw_proxy clear >/dev/null
    harness_log "ok: uploads cut mid-part: $(grep ERROR "$T/cut.out" | tail -n 1)"
    expect_clean_failure "$T/cut.out" "$next" sidecars
    [[ -z "$(pending_uploads)" ]] || harness_fail "uploads left pending: $(pending_uploads)"
    rgw_ls "$BUCKET" vm1/ | grep -q "^vm1/backup\.inc\..*\.log" ||
        harness_fail "the failed run's log is not in the bucket"
}

# Another run takes the lock over while a capture waits on a part upload (as one on another host
# does once the lease looks expired to it): the capture finds the lock lost before it commits
# its disks, stops naming the new holder, records no restore point, and leaves the other run's
# lock alone.
check_lock_taken_over() {
    local next="vda.inc.virtnbdbackup.$CHECKPOINTS.data" rc=0
    s3_dirty $((40 * M))
    rgw_proxy reset >/dev/null
    rgw_proxy stall match=partNumber= count=all >/dev/null
    inc_through_proxy "$T/lost.out"
    harness_wait_for 120 "a part upload held by the proxy" proxy_stalls ||
        harness_fail "no part upload reached the proxy: $(cat "$T/lost.out")"
    rgw_aws s3 cp --only-show-errors "$S3/.backupfs-lock" "$T/lock.json" ||
        harness_fail "the running capture holds no lock object"
    python3 - "$T/lock.json" "$T/other-lock.json" <<'PY' || harness_fail "cannot write another host's lock record"
import json, sys
record = json.load(open(sys.argv[1]))
record.update(host="backup2.example", pid=4242, holder="backupfs-capture")
for key in ("pid_start", "boot_id", "pid_ns"):
    record.pop(key, None)
json.dump(record, open(sys.argv[2], "w"))
PY
    rgw_aws s3 cp --only-show-errors "$T/other-lock.json" "$S3/.backupfs-lock"
    rgw_proxy clear >/dev/null
    wait "$INC_PID" || rc=$?
    ((rc == 1)) || harness_fail "capture whose lock was taken over: exit $rc: $(cat "$T/lost.out")"
    grep -q "another run took over.*lock s3://$BUCKET/vm1/.backupfs-lock" "$T/lost.out" ||
        harness_fail "the capture does not say its lock was taken over: $(cat "$T/lost.out")"
    grep -q "disk vda: .*stopped before its data file was committed; no restore point recorded" "$T/lost.out" ||
        harness_fail "the capture does not say where it stopped: $(cat "$T/lost.out")"
    harness_log "ok: lock taken over mid-capture: $(grep ERROR "$T/lost.out" | tail -n 1)"
    expect_clean_failure "$T/lost.out" "$next" sidecars
    rgw_aws s3 cp --only-show-errors "$S3/.backupfs-lock" "$T/lock-after.json" ||
        harness_fail "the other run's lock is gone after the capture stopped"
    cmp -s "$T/other-lock.json" "$T/lock-after.json" ||
        harness_fail "the stopped capture changed the other run's lock: $(cat "$T/lock-after.json")"
    rgw_aws s3 rm --only-show-errors "$S3/.backupfs-lock" # the other run ends
}

# A later inc of DOM_S3 alone into the bucket: it continues the chain, every point exact.
check_later_capture() {
    run_capture "$DOM_S3" "$S3" inc
    snapshot "virtnbdbackup.$((CHECKPOINTS++))"
}

rgw_up
rgw_make_bucket "$BUCKET"
harness_create_domain "$DOM_S3" 768 2
harness_create_domain "$DOM_LOCAL" 768 2
expect_fail "inc into an empty bucket prefix" "run a full backup" \
    "$CAPTURE" -d "$DOM_S3" -l inc -o "$S3"
expect_fail "inc into an empty directory" "run a full backup" \
    "$CAPTURE" -d "$DOM_LOCAL" -l inc -o "$LOCAL"

for ((i = 0; i < 4; i++)); do both_write vda $((i * 160 * M)) $((160 * M)); done
both_write vdb $((3 * M + 512)) $((5 * M))
point full
((RSS_S3 < RSS_LIMIT_KIB)) || harness_fail "full capture into $S3: peak RSS $RSS_S3 KiB >= $RSS_LIMIT_KIB"
size="$(rgw_ls "$BUCKET" vm1/vda.full.data | awk -F'\t' '$1 == "vm1/vda.full.data" { print $2 }')"
((size > RSS_LIMIT_KIB * 1024)) || harness_fail "vda.full.data has $size bytes: too small to tell"
harness_log "ok: full into $S3: $size bytes of vda in at most $((RSS_S3 / 1024)) MiB of RSS"

both_write vda $((256 * K + 512)) $((70 * K))
both_write vda $((640 * M + 4608)) $((3 * M))
both_write vdb $((20 * M)) "$M"
point inc
both_write vda $((M + 512)) $((100 * K))
both_write vdb $((100 * M)) $((2 * M))
point inc
both_write vda $((63 * M)) "$M"
point diff

check_same_files
check_restores
check_fleet_and_raw
check_broken_chain
rgw_proxy_start
check_lock_and_stopped_gateway
check_later_capture
check_cut_connections
check_later_capture
check_lock_taken_over
check_later_capture
check_mount_s3
echo "PASS: backupfs-capture into $S3 as into a directory; lock, lock taken over, stopped gateway and cut uploads"
