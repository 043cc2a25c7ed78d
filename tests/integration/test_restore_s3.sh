#!/bin/bash
# test_restore_s3.sh BUILD_DIR
#
# backupfs-restore on savesets in a bucket of a real Ceph RADOS Gateway (lib/rgw.sh), put there
# with the stock aws CLI (path-style), against the same savesets in a directory:
#   ours:    backupfs-capture of a running TCG domain (vda, vdb 64 MiB; full, inc, diff, inc;
#            sidecar indexes), `aws s3 sync`ed to s3://B/ours:
#            verify  exit 0, the local verify's output with the directory replaced by the s3://
#                    URL (-v: notes too); through a counting proxy the gateway sends the data
#                    files, indexes and checksums once: no more bytes than their sizes plus a
#                    bound per response; a saveset with a flipped payload byte: exit 1, the
#                    same problems as locally, and restore fails naming the s3:// file;
#            dump    the local dump's JSON, byte for byte;
#            restore every point as qcow2 (the local restore's summary, qemu-img compare with
#                    it and with the reference) and as --format raw (cmp with the local
#                    restore), vmconfig.xml as saved; -c -D -N (the adjusted XML as locally but
#                    for the output directory, the domain defined on the images); -s;
#            export  a point over NBD from the bucket (the daemon mounts s3://): equal to the
#                    local restore; instant --no-start: the overlays read as the local restore;
#                    both daemons read with -i's settings (--s3-endpoint only, --s3-cache-dir
#                    filled), and instant-resume mounts the bucket again with them.
#   peer:    virtnbdbackup -z, two disks (make-virtnbdbackup-saveset.sh: no sidecars, linked and
#            split lz4 frames): verify (read once), dump, every point as above, equal to its
#            references.
#   raw:     -r from a saveset whose raw disk's data file is a raw image: cmp with local.
#   down:    ours put into the bucket file by file in the order it was written (as a capture
#            into the bucket puts it), synced down with the aws CLI: every file as the
#            original, and virtnbdrestore restores it as ours does.
#   faults:  a wrong secret key, a missing bucket, an endpoint given by --s3-endpoint only;
#            consolidation at a point the bucket lacks: exit 1, naming it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/capture.sh
source "$HERE/lib/capture.sh"
# shellcheck source=lib/restore.sh
source "$HERE/lib/restore.sh"
# shellcheck source=lib/rgw.sh
source "$HERE/lib/rgw.sh"

[[ $# -eq 1 ]] || harness_fail "usage: $0 BUILD_DIR"
capture_test_setup "$1" qemu-img nbdinfo nbdkit virtnbdbackup virtnbdrestore python3 cmp \
    ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph flock
[[ -x /usr/bin/aws ]] || harness_require aws
STREAM_TOOL="$BUILD_DIR/tests/stream-tool"
[[ -x "$STREAM_TOOL" ]] || harness_fail "$STREAM_TOOL not built"
BUCKET=restore-test
LATE_FAILURES=()

# Instant domains and mounts of this test go even when it fails.
_s3_cleanup() {
    local m
    for m in $(findmnt -rn -t fuse.backupfs -o TARGET | grep -F "$T/" || true); do
        fusermount3 -u -z "$m" 2>/dev/null || true
    done
}
harness_on_exit _s3_cleanup

# --- fixtures --------------------------------------------------------------------------------

# Ours: full, inc, diff, inc of vda and vdb, with writes, overwrites and (before the last inc)
# a trim, which virtnbdrestore 1.9.15 does not apply (it skips zero frames in incrementals).
make_ours() {
    DOM="bfsit-s3-$$"
    OUT="$T/ours"
    DISKS=(vda vdb)
    harness_create_domain "$DOM" 64 2
    rnd vda 0 "$M"
    rnd vda $((3 * M + 512)) $((300 * K))
    pat vda 0x5a $((9 * M)) $((130 * K + 512))
    rnd vda $((20 * M)) $((12 * M)) # one long data extent
    rnd vdb $((512 * K)) $((2 * M + 512))
    capture full
    rnd vda $((256 * K + 512)) $((70 * K))
    pat vdb 0x3c $((20 * M)) $((64 * K))
    capture inc
    pat vda 0x77 $((30 * M + 512)) $((3 * K))
    rnd vdb $((10 * M)) "$M"
    capture diff
    rnd vda $((40 * M)) $((256 * K))
    harness_guest_trim "$DOM" vda $((21 * M)) $((M + 1536))
    capture inc
    harness_virsh destroy "$DOM" >/dev/null
}

# The raw set: vda a stream, vdb (raw in the domain XML) a raw image as virtnbdbackup -t raw
# writes it; -r copies vdb as it is.
make_rawset() {
    local r="$T/rawset" img="$T/rawset.vda.raw"
    mkdir -p "$r" "$T/rawset.ref"
    truncate -s $((16 * M)) "$img" "$T/rawset.ref/vdb.raw"
    head -c $((3 * M)) /dev/urandom | dd of="$img" bs=64K seek=16 conv=notrunc status=none
    head -c $((2 * M + 4096)) /dev/urandom |
        dd of="$T/rawset.ref/vdb.raw" bs=4K seek=1000 conv=notrunc status=none
    "$STREAM_TOOL" write --image "$img" --output "$r/vda.full.data" --disk vda --format qcow2 \
        --checkpoint virtnbdbackup.0 --level full || harness_fail "stream-tool write failed"
    cp --sparse=always "$T/rawset.ref/vdb.raw" "$r/vdb.full.data"
    cat >"$r/vmconfig.virtnbdbackup.0.xml" <<EOF
<domain type='qemu'><name>rawvm</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/rawvm.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/img/rawvm-data.img'/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>
EOF
}

# sync_up DIR PREFIX : aws s3 sync of a saveset directory into s3://BUCKET/PREFIX.
sync_up() {
    rgw_aws s3 sync --only-show-errors "$1" "s3://$BUCKET/$2" || harness_fail "aws s3 sync $1 failed"
    [[ "$(rgw_ls "$BUCKET" "$2/" | wc -l)" == "$(find "$1" -type f | wc -l)" ]] ||
        harness_fail "s3://$BUCKET/$2 does not hold every file of $1: $(rgw_ls "$BUCKET" "$2/")"
}

# put_in_order DIR PREFIX : DIR into s3://BUCKET/PREFIX as a capture into the bucket puts it:
# the data files one by one in the order they were written, each in a later second than the
# one before (LastModified has whole seconds, and virtnbdrestore orders a synced-down chain by
# the mtimes the aws CLI gives it), the other files first.
put_in_order() {
    local f now
    rgw_aws s3 sync --only-show-errors --exclude '*.data' "$1" "s3://$BUCKET/$2" ||
        harness_fail "aws s3 sync $1 failed"
    while IFS= read -r f; do
        rgw_aws s3 cp --only-show-errors "$1/$f" "s3://$BUCKET/$2/$f" || harness_fail "aws s3 cp $f failed"
        now=$(date +%s)
        harness_wait_for 5 "the next second" harness_after_second "$now" || harness_fail "the clock stands still"
    done < <(cd "$1" && find . -type f -name '*.data' -printf '%T@ %P\n' | sort -n | cut -d' ' -f2-)
}

# --- comparisons -----------------------------------------------------------------------------

# image_of OUTDIR DISK : the image a restore wrote for DISK (named after its source).
image_of() {
    local f
    f="$(find "$1" -maxdepth 1 -name "*$2*" ! -name '*.xml' | head -n 1)"
    [[ -n "$f" ]] || harness_fail "no image of $2 in $1: $(ls "$1")"
    printf '%s' "$f"
}

# summary_numbers : "POINT IMAGES DATA WRITTEN" of the restore summary in $T/restore.out.
summary_numbers() {
    sed -E 's/^restored ([^ :]+): ([0-9]+) image\(s\) into .*, ([0-9]+) bytes of data, ([0-9]+) written .*/\1 \2 \3 \4/' \
        "$T/restore.out"
}

# restore_both NAME LOCAL URL FORMAT [OPTION...] : the same restore from the directory and from
# the bucket into $T/l.NAME and $T/s.NAME: the same summary (but for the time), the same files;
# images equal (cmp for raw, qemu-img compare for qcow2), vmconfig.xml the same but for the
# output directory it names.
restore_both() {
    local name="$1" local_dir="$2" url="$3" fmt="$4" f want got
    shift 4
    rm -rf "$T/l.$name" "$T/s.$name"
    local -a opts=(--format "$fmt" "$@")
    restore_run "$T/l.$name" -i "$local_dir" "${opts[@]}"
    want="$(summary_numbers)"
    restore_run "$T/s.$name" -i "$url" "${opts[@]}"
    got="$(summary_numbers)"
    [[ "$got" == "$want" ]] || harness_fail "$name from $url: restored '$got', from $local_dir '$want'"
    [[ "$(ls "$T/s.$name")" == "$(ls "$T/l.$name")" ]] ||
        harness_fail "$name: from $url: $(ls "$T/s.$name"); from the directory: $(ls "$T/l.$name")"
    for f in "$T/l.$name"/*; do
        f="$(basename "$f")"
        case "$f" in
        *.xml)
            sed "s|$T/l.$name|OUT|g" "$T/l.$name/$f" >"$T/want.xml"
            sed "s|$T/s.$name|OUT|g" "$T/s.$name/$f" >"$T/got.xml"
            harness_cmp "$name: $f from the bucket" "$T/want.xml" "$T/got.xml"
            ;;
        *)
            if [[ "$fmt" == raw ]]; then
                harness_cmp "$name: $f from the bucket" "$T/l.$name/$f" "$T/s.$name/$f"
            else
                qemu-img compare -q -f qcow2 -F qcow2 "$T/l.$name/$f" "$T/s.$name/$f" ||
                    harness_fail "$name: $f from $url differs from the local restore"
            fi
            ;;
        esac
    done
    harness_log "ok: $name: from $url as from the directory: $got"
}

# every_point NAME LOCAL URL REF_OF POINT... : each POINT restored both ways as qcow2 (also
# equal to its reference: REF_OF POINT DISK prints the path) and as raw.
every_point() {
    local name="$1" local_dir="$2" url="$3" ref_of="$4" p d
    shift 4
    for p in "$@"; do
        restore_both "$name.$p" "$local_dir" "$url" qcow2 -u "$p"
        for d in "${DISKS[@]}"; do
            restore_check_same "$name $p $d from $url" "$(image_of "$T/s.$name.$p" "$d")" qcow2 \
                "$("$ref_of" "$p" "$d")"
        done
        restore_both "$name.$p.raw" "$local_dir" "$url" raw -u "$p"
        rm -rf "$T/l.$name.$p.raw" "$T/s.$name.$p.raw"
    done
}
ours_ref() { printf '%s' "$T/ours.ref/$1.$2.raw"; }
peer_ref() {
    if [[ "$2" == vda ]]; then printf '%s' "$T/peer/ref/$1.raw"; else printf '%s' "$T/peer/ref/$2.$1.raw"; fi
}

# same_output WHAT LOCAL URL -- ARG... : the output (stdout, stderr, exit status) of
# backupfs-restore ARG... -i URL is that of -i LOCAL with LOCAL replaced by URL.
same_output() {
    local what="$1" local_dir="$2" url="$3" rc_l=0 rc_s=0
    shift 4
    "$RESTORE" -i "$local_dir" "$@" >"$T/l.out" 2>"$T/l.err" || rc_l=$?
    "$RESTORE" -i "$url" "$@" >"$T/s.out" 2>"$T/s.err" || rc_s=$?
    ((rc_l == rc_s)) || harness_fail "$what: exit $rc_s from $url, $rc_l from $local_dir: $(cat "$T/s.err")"
    sed -i "s|$local_dir|$url|g" "$T/l.out" "$T/l.err"
    harness_cmp "$what: standard output from $url" "$T/l.out" "$T/s.out"
    harness_cmp "$what: standard error from $url" "$T/l.err" "$T/s.err"
    SAME_RC=$rc_s
}

# read_once LOCAL URL : -a verify of URL through the counting proxy: the gateway sends every
# data file, index and checksum of the saveset, and each only once.
read_once() {
    local local_dir="$1" url="$2" size down reqs
    size="$(find "$local_dir" -type f \( -name '*.data' -o -name '*.idx' -o -name '*.chksum' \) \
        -printf '%s\n' | awk '{ s += $1 } END { print s }')"
    rgw_proxy reset >/dev/null
    AWS_ENDPOINT_URL="$RGW_PROXY_ENDPOINT" "$RESTORE" -a verify -i "$url" >"$T/v.out" 2>&1 ||
        harness_fail "verify of $url through the proxy: exit $?: $(cat "$T/v.out")"
    down="$(rgw_proxy_stat bytes_down)"
    reqs="$(rgw_proxy_stat requests)"
    # Each response adds its headers (and a listing its XML): under 1 KiB a request.
    ((down >= size && down <= size + 1024 * reqs)) ||
        harness_fail "verify of $url: the gateway sent $down bytes in $reqs responses for $size bytes of files"
    harness_log "ok: verify of $url read $size bytes of files once ($down bytes in $reqs responses)"
}

# --- the checks --------------------------------------------------------------------------------

check_verify_dump() {
    local local_dir="$1" url="$2"
    same_output "verify -v" "$local_dir" "$url" -- -a verify -v
    ((SAME_RC == 0)) || harness_fail "verify of $url: exit $SAME_RC: $(cat "$T/s.err")"
    grep -q "^verified .*: 0 problems$" "$T/s.out" || harness_fail "verify of $url: $(cat "$T/s.out")"
    read_once "$local_dir" "$url"
    same_output "dump" "$local_dir" "$url" -- -a dump
    ((SAME_RC == 0)) || harness_fail "dump of $url: exit $SAME_RC: $(cat "$T/s.err")"
}

check_damage() {
    local bad="$T/ours.bad" url="s3://$BUCKET/bad"
    cp -a "$OUT" "$bad"
    harness_corrupt_frame "$bad/vda.full.data" payload
    sync_up "$bad" bad
    same_output "verify of a flipped byte" "$bad" "$url" -- -a verify
    ((SAME_RC == 1)) || harness_fail "verify of damaged $url: exit $SAME_RC"
    grep -qF "ERROR: $url/vda.full.data: offset " "$T/s.err" ||
        harness_fail "verify of damaged $url does not name the file: $(cat "$T/s.err")"
    restore_expect_rc 1 "restore through a flipped byte in $url" "ERROR disk vda: $url/vda.full.data: offset " \
        "$RESTORE" -n -i "$url" -o "$T/s.bad" -u virtnbdbackup.0
}

check_config_define() {
    local url="$1" new="restored_s3_$DOM" p=virtnbdbackup.1
    restore_both define "$OUT" "$url" qcow2 -u "$p" -c
    HARNESS_DOMAINS+=("$new")
    restore_run "$T/s.defined" -i "$url" -u "$p" -c -D -N "$new"
    [[ "$(cat "$T/restore.out")" == *", defined as domain $new" ]] ||
        harness_fail "-D from $url: $(cat "$T/restore.out")"
    [[ "$(harness_virsh domblklist "$new" | awk '{ print $2 }' | sort | tr '\n' ' ')" == \
        "$T/s.defined/$DOM.vda.qcow2 $T/s.defined/$DOM.vdb.qcow2 " ]] ||
        harness_fail "-D from $url: $new's disks: $(harness_virsh domblklist "$new")"
    harness_log "ok: -c -D -N from $url: $new defined on the restored images"
    restore_both sequence "$OUT" "$url" qcow2 -s vda.full.data,vda.inc.virtnbdbackup.1.data
}

# has_files DIR : DIR holds at least one file.
has_files() { [[ -n "$(find "$1" -type f -print -quit 2>/dev/null)" ]]; }

# Export and instant recovery mount the bucket with a backupfs daemon of their own: it reads the
# store with the settings -i was opened with, here the endpoint given only as an option and a
# cache directory, which its reads fill; instant-resume mounts it again with the same settings,
# which -a instant recorded.
check_export_instant() {
    local url="$1" p="${POINTS[1]}" pid rc=0 sock="$T/export.sock" name="instant_s3_$DOM"
    local -a by_option=(--s3-endpoint "$AWS_ENDPOINT_URL")
    local mnt="$T/instant/backupfs-instant.mnt"
    env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 "$RESTORE" -a export -i "$url" -u "$p" -d vda \
        --socket "$sock" "${by_option[@]}" --s3-cache-dir "$T/export-cache" \
        >"$T/export.out" 2>"$T/export.err" &
    pid=$!
    harness_wait_for 120 "the export's URI" test -s "$T/export.out" ||
        harness_fail "export of $url: no URI: $(cat "$T/export.err")"
    qemu-img compare -q -f raw -F qcow2 "nbd+unix:///vda?socket=$sock" "$(image_of "$T/l.ours.$p" vda)" ||
        harness_fail "export of $url $p vda differs from the local restore"
    has_files "$T/export-cache" || harness_fail "export of $url: its mount left --s3-cache-dir empty"
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    ((rc == 0)) || harness_fail "export of $url: exit $rc after SIGTERM: $(cat "$T/export.err")"
    harness_log "ok: export of $url $p vda over NBD equals the local restore, read through --s3-cache-dir"

    HARNESS_DOMAINS+=("$name")
    env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 "$RESTORE" -n -a instant -i "$url" -u "$p" \
        -o "$T/instant" -N "$name" --no-start "${by_option[@]}" --s3-cache-dir "$T/instant-cache" \
        >"$T/instant.out" 2>"$T/instant.err" || harness_fail "instant from $url: exit $?: $(cat "$T/instant.err")"
    check_instant_overlays "$url" "$p"
    has_files "$T/instant-cache" || harness_fail "instant from $url: its mount left --s3-cache-dir empty"

    # The mount gone (a reboot), its cache emptied: instant-resume mounts the bucket again with
    # the recorded settings, and refuses settings of its own.
    fusermount3 -u "$mnt" || harness_fail "cannot unmount $mnt"
    harness_wait_for 30 "$mnt unmounted" bash -c '! mountpoint -q "$1"' _ "$mnt"
    rm -rf "$T/instant-cache"
    rc=0
    "$RESTORE" -a instant-resume -N "$name" --no-start "${by_option[@]}" >"$T/resume.out" 2>&1 || rc=$?
    ((rc == 2)) || harness_fail "instant-resume with --s3-endpoint: exit $rc, not 2: $(cat "$T/resume.out")"
    grep -q -- "--s3-\* options go with -i s3://" "$T/resume.out" ||
        harness_fail "instant-resume with --s3-endpoint: $(cat "$T/resume.out")"
    env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 "$RESTORE" -a instant-resume -N "$name" --no-start \
        >"$T/resume.out" 2>&1 || harness_fail "instant-resume $name: exit $?: $(cat "$T/resume.out")"
    mountpoint -q "$mnt" || harness_fail "instant-resume $name did not mount $mnt"
    check_instant_overlays "$url" "$p"
    has_files "$T/instant-cache" || harness_fail "instant-resume of $name: the recorded --s3-cache-dir stayed empty"

    "$RESTORE" -a instant-end -N "$name" >"$T/end.out" 2>&1 || harness_fail "instant-end $name: $(cat "$T/end.out")"
    [[ ! -e "$T/instant" ]] || harness_fail "instant-end left $T/instant"
    unset 'HARNESS_DOMAINS[-1]' # gone: nothing for the cleanup to undefine
    harness_log "ok: instant --no-start from $url: overlays on the mounted bucket read as the local restore," \
        "through --s3-cache-dir; instant-resume mounts it again with the recorded settings"
}

# check_instant_overlays URL POINT : every disk's overlay reads as the local restore.
check_instant_overlays() {
    local d
    for d in "${DISKS[@]}"; do
        qemu-img compare -q -f qcow2 -F qcow2 "$(image_of "$T/instant" "$d")" "$(image_of "$T/l.ours.$2" "$d")" ||
            harness_fail "instant from $1: the overlay of $d differs from the local restore"
    done
}

check_raw_copy() {
    make_rawset
    sync_up "$T/rawset" rawset
    restore_both rawcopy "$T/rawset" "s3://$BUCKET/rawset" raw -u virtnbdbackup.0 -r
    harness_cmp "-r: vdb from the bucket is the raw image" "$T/rawset.ref/vdb.raw" "$T/s.rawcopy/rawvm-data.img"
}

check_down() {
    local url="s3://$BUCKET/ordered" p=virtnbdbackup.1 d f
    put_in_order "$OUT" ordered
    rgw_aws s3 sync --only-show-errors "$url" "$T/down" || harness_fail "aws s3 sync $url down failed"
    for f in $(cd "$OUT" && find . -type f -printf '%P\n'); do
        cmp -s "$OUT/$f" "$T/down/$f" || harness_fail "synced down, $f differs from the original"
    done
    [[ "$(find "$T/down" -type f | wc -l)" == "$(find "$OUT" -type f | wc -l)" ]] ||
        harness_fail "synced down: $(ls "$T/down"), want: $(ls "$OUT")"
    harness_virtnbdrestore -a restore -i "$T/down" -o "$T/vnr" --until "$p" -n >/dev/null
    for d in "${DISKS[@]}"; do
        harness_wait_image_free "$T/vnr/$DOM.$d.qcow2"
        qemu-img compare -q -f qcow2 -F qcow2 "$T/vnr/$DOM.$d.qcow2" "$(image_of "$T/l.ours.$p" "$d")" ||
            harness_fail "virtnbdrestore of the synced-down saveset: $d differs from ours"
    done
    harness_log "ok: $url synced down: the same files, and virtnbdrestore --until $p restores ours"
}

check_faults() {
    local url="s3://$BUCKET/ours"
    restore_expect_rc 1 "verify with a wrong secret key" "$url" \
        env AWS_SECRET_ACCESS_KEY=wrong "$RESTORE" -a verify -i "$url"
    grep -qE "403|SignatureDoesNotMatch" "$T/fail.out" || harness_fail "wrong key: $(cat "$T/fail.out")"
    restore_expect_rc 1 "restore with a wrong secret key" "$url" \
        env AWS_SECRET_ACCESS_KEY=wrong "$RESTORE" -n -i "$url" -o "$T/wrongkey"
    [[ ! -e "$T/wrongkey" ]] || harness_fail "a restore that could not read the bucket made its output"
    restore_expect_rc 1 "restore from a missing bucket" "s3://no-such-bucket-$$" \
        "$RESTORE" -n -i "s3://no-such-bucket-$$/ours" -o "$T/nobucket"
    grep -q "NoSuchBucket" "$T/fail.out" || harness_fail "missing bucket: $(cat "$T/fail.out")"
    # Consolidation on a bucket is test_consolidate_s3's; here only a point it does not have.
    restore_expect_rc 1 "consolidate at a point the bucket does not have" "no-such-point" \
        "$RESTORE" -a consolidate -i "$url" -u no-such-point
    # The endpoint from the option alone.
    env -u AWS_ENDPOINT_URL "$RESTORE" -a dump -i "$url" --s3-endpoint "$AWS_ENDPOINT_URL" >"$T/opt.json" ||
        harness_fail "dump with --s3-endpoint: exit $?"
    "$RESTORE" -a dump -i "$OUT" >"$T/local.json"
    harness_cmp "--s3-endpoint: the dump" "$T/local.json" "$T/opt.json"
}

start=$SECONDS
make_ours
"$HERE/make-virtnbdbackup-saveset.sh" "$T/peer" -z -2 >"$T/peer.log" 2>&1 ||
    harness_fail "make-virtnbdbackup-saveset.sh failed: $(tail -n 30 "$T/peer.log")"
harness_log "fixtures made ($((SECONDS - start))s)"

rgw_up
rgw_make_bucket "$BUCKET"
rgw_proxy_start
sync_up "$OUT" ours
sync_up "$T/peer/saveset" peer

check_verify_dump "$OUT" "s3://$BUCKET/ours"
check_damage
every_point ours "$OUT" "s3://$BUCKET/ours" ours_ref "${POINTS[@]}"
check_config_define "s3://$BUCKET/ours"
check_export_instant "s3://$BUCKET/ours"
check_raw_copy
check_down
check_faults

DISKS=(vda vdb)
check_verify_dump "$T/peer/saveset" "s3://$BUCKET/peer"
every_point peer "$T/peer/saveset" "s3://$BUCKET/peer" peer_ref virtnbdbackup.0 virtnbdbackup.1 virtnbdbackup.2

((${#LATE_FAILURES[@]} == 0)) || harness_fail "$(printf '%s\n' "${LATE_FAILURES[@]}")"
echo "PASS: backupfs-restore reads savesets in a bucket as in a directory ($((SECONDS - start))s)"
