#!/usr/bin/env bash
# The S3 test harness itself, against a real Ceph RADOS Gateway: scripts/rgw.sh (through
# lib/rgw.sh), stock clients (the aws CLI, boto3) and s3_fault_proxy.py.
#
# Checks: a 50 MiB multipart upload downloads byte-exact and a ranged GET returns the right
# bytes; through the proxy an injected 503 reaches boto3 (retries off) as SlowDown and a
# retrying client gets through; a download cut mid-stream fails without retries and succeeds
# after the aws CLI's retry; an upload cut mid-part is retried and lands intact; the proxy's
# counters match the faults; a stopped gateway refuses requests and a restarted one serves the
# same objects; `down` leaves no daemon, port or file behind.
#
# Usage: test_rgw_harness.sh [BUILD_DIR]   (root; 0 pass, 1 fail, 77 skip; BUILD_DIR unused)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/harness.sh
source "$HERE/lib/harness.sh"
# shellcheck source=lib/rgw.sh
source "$HERE/lib/rgw.sh"

harness_init
harness_require ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph python3 flock
[[ -x /usr/bin/aws ]] || harness_require aws
python3 -c 'import boto3' 2>/dev/null || harness_fail "python3 cannot import boto3 (python3-boto3)"
T="$HARNESS_DIR"
MiB=$((1 << 20))
BUCKET=harness-test

# py SCRIPT [ARG...] : python with rgwlib importable and the gateway's AWS_* environment.
py() { PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" python3 -c "$@"; }

# expect_eq WHAT GOT WANT
# On a mismatch the proxy's recent requests (if it runs) say what the clients really sent.
expect_eq() {
    [[ "$2" == "$3" ]] && return
    [[ -z "${RGW_PROXY_ENDPOINT:-}" ]] || rgw_proxy stats >&2 || true
    harness_fail "$1: got '$2', want '$3'"
}

start=$SECONDS
rgw_up
up_s=$((SECONDS - start))

# --- plain transfers with stock clients
rgw_make_bucket "$BUCKET"
head -c $((50 * MiB)) /dev/urandom >"$T/obj"
rgw_aws s3 cp --only-show-errors "$T/obj" "s3://$BUCKET/dir/obj"
etag="$(rgw_aws s3api head-object --bucket "$BUCKET" --key dir/obj --query ETag --output text)"
[[ "$etag" =~ -[0-9]+\"?$ ]] || harness_fail "50 MiB aws s3 cp was not multipart: ETag $etag"
expect_eq "rgw_ls" "$(rgw_ls "$BUCKET" dir/)" "$(printf 'dir/obj\t%s' $((50 * MiB)))"
expect_eq "rgw_ls of an empty prefix" "$(rgw_ls "$BUCKET" nothing/)" ""
rgw_aws s3 cp --only-show-errors "s3://$BUCKET/dir/obj" "$T/obj.back"
cmp "$T/obj" "$T/obj.back" || harness_fail "downloaded object differs from the upload"
harness_log "ok: 50 MiB multipart upload (ETag $etag) and download byte-exact"

dd if="$T/obj" of="$T/range.want" bs=4096 skip=12345 count=1 status=none
py '
import sys, rgwlib
body = rgwlib.client_from_env().get_object(Bucket=sys.argv[1], Key="dir/obj",
                                           Range="bytes=50565120-50569215")
assert body["ContentRange"] == "bytes 50565120-50569215/52428800", body["ContentRange"]
sys.stdout.buffer.write(body["Body"].read())' "$BUCKET" >"$T/range.got"
cmp "$T/range.want" "$T/range.got" || harness_fail "ranged GET returned the wrong bytes"
harness_log "ok: ranged GET of 4 KiB at 50565120"

# --- faults through the proxy
rgw_proxy_start
# One python for the three steps (boto3 takes a second to import): pass-through, a 503 with
# retries off, two 503s with retries on. The proxy's rules are set between them.
py '
import sys, rgwlib, botocore.exceptions as bx
from s3_fault_proxy import control_command
bucket, endpoint, control = sys.argv[1], sys.argv[2], int(sys.argv[3])
def proxy(line):
    assert control_command(control, line)["ok"], line

s3 = rgwlib.client_from_env(endpoint=endpoint, retries=0)
assert s3.head_object(Bucket=bucket, Key="dir/obj")["ContentLength"] == 52428800

proxy("fail status=503 count=1")
try:
    s3.get_object(Bucket=bucket, Key="dir/obj", Range="bytes=0-9")
except bx.ClientError as e:
    err, status = e.response["Error"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    assert (err["Code"], status) == ("SlowDown", 503), (err, status)
    assert err["Resource"] == f"/{bucket}/dir/obj", err
else:
    sys.exit("GET succeeded despite an injected 503")
print("ok: an injected 503 reaches boto3 (retries off) as SlowDown")

proxy("fail status=503 count=2")
got = rgwlib.client_from_env(endpoint=endpoint, retries=3).get_object(
    Bucket=bucket, Key="dir/obj", Range="bytes=0-9")
assert got["ResponseMetadata"]["RetryAttempts"] == 2, got["ResponseMetadata"]
assert got["Body"].read() == open(sys.argv[4], "rb").read(10)
print("ok: a retrying client gets past two injected 503s")
' "$BUCKET" "$RGW_PROXY_ENDPOINT" "$RGW_PROXY_CONTROL" "$T/obj" >&2 ||
    harness_fail "injected 503s: see above"
# HEAD, the failed GET, and the retried GET's three attempts.
expect_eq "requests through the proxy" "$(rgw_proxy_stat requests)" 5
expect_eq "requests forwarded" "$(rgw_proxy_stat forwarded)" 2
expect_eq "503s injected" "$(rgw_proxy_stat faults.fail_503)" 3
harness_log "ok: proxy counters: 5 requests, 2 forwarded, 3 injected 503s"

rgw_proxy cut dir=down bytes=$((3 * MiB)) count=1 match=GET >/dev/null
py '
import sys, rgwlib
s3 = rgwlib.client_from_env(endpoint=sys.argv[2], retries=0)
try:
    n = len(s3.get_object(Bucket=sys.argv[1], Key="dir/obj")["Body"].read())
except Exception as e:
    print(f"cut download fails: {type(e).__name__}: {e}")
else:
    sys.exit(f"GET read {n} bytes despite a cut after 3 MiB")
' "$BUCKET" "$RGW_PROXY_ENDPOINT" >&2 || harness_fail "a cut download did not fail"
expect_eq "downloads cut" "$(rgw_proxy_stat faults.cut_down)" 1
rm -f "$T/obj.back"
# The CLI moves 50 MiB as 8 MiB ranges or parts, the last one 2 MiB, and any of them may be the
# first to claim a cut: 1 MiB makes it fire within whichever request claims it. (3 MiB or 5 MiB
# let the 2 MiB part claim it and end uncut: CI saw "uploads cut: got 0".)
rgw_proxy cut dir=down bytes=$((1 * MiB)) count=1 match=GET mode=fin >/dev/null
AWS_ENDPOINT_URL="$RGW_PROXY_ENDPOINT" rgw_aws s3 cp --only-show-errors \
    "s3://$BUCKET/dir/obj" "$T/obj.back" || harness_fail "aws s3 cp did not survive one cut"
cmp "$T/obj" "$T/obj.back" || harness_fail "download retried after a cut differs"
expect_eq "downloads cut" "$(rgw_proxy_stat faults.cut_down)" 2
harness_log "ok: a download cut mid-body fails without retries, the aws CLI retries one"

rgw_proxy cut dir=up bytes=$((1 * MiB)) count=1 match=PUT >/dev/null
AWS_ENDPOINT_URL="$RGW_PROXY_ENDPOINT" rgw_aws s3 cp --only-show-errors \
    "$T/obj" "s3://$BUCKET/dir/obj2" || harness_fail "aws s3 cp upload did not survive one cut"
expect_eq "uploads cut" "$(rgw_proxy_stat faults.cut_up)" 1
rgw_aws s3 cp --only-show-errors "s3://$BUCKET/dir/obj2" "$T/obj2.back"
cmp "$T/obj" "$T/obj2.back" || harness_fail "upload retried after a cut differs"
harness_log "ok: an upload cut after 1 MiB is retried and lands intact"
expect_eq "rules left" "$(rgw_proxy stats | grep -o '"rules": \[[^]]*\]')" '"rules": []'

# --- the gateway stops and starts
rgw_stop_gateway
refused="$(rgw_proxy_stat upstream_refused)"
py '
import sys, rgwlib, botocore.exceptions as bx
bucket, endpoint = sys.argv[1], sys.argv[2]
for ep, errors in ((None, bx.EndpointConnectionError),
                   (endpoint, (bx.ConnectionClosedError, bx.EndpointConnectionError))):
    name = ep or "direct"
    try:
        rgwlib.client_from_env(endpoint=ep, retries=0, timeout=5).head_bucket(Bucket=bucket)
    except errors as e:
        print(f"stopped gateway, {name}: {type(e).__name__}")
    else:
        sys.exit(f"HEAD succeeded with the gateway stopped ({name})")
' "$BUCKET" "$RGW_PROXY_ENDPOINT" >&2 || harness_fail "a stopped gateway still answered"
expect_eq "refused upstream connections" "$(rgw_proxy_stat upstream_refused)" $((refused + 1))
rgw_start_gateway
rgw_aws s3 cp --only-show-errors "s3://$BUCKET/dir/obj" "$T/obj.back"
cmp "$T/obj" "$T/obj.back" || harness_fail "object differs after the gateway restarted"
harness_log "ok: stop-gateway refuses requests; start-gateway serves the same objects"

# --- down leaves nothing behind
dir="$RGW_DIR" port="$RGW_PORT"
start=$SECONDS
rgw_down
down_s=$((SECONDS - start))
[[ ! -e "$dir" ]] || harness_fail "rgw_down left $dir"
for f in /proc/[0-9]*/cmdline; do
    cmdline="$({ tr '\0' ' ' <"$f"; } 2>/dev/null)" || continue # gone meanwhile
    [[ "$cmdline" != *"$dir/"* ]] || harness_fail "a process of $dir still runs: $cmdline"
done
for ((p = port; p < port + 10; p++)); do
    _rgw_port_free "$p" || harness_fail "127.0.0.1:$p still accepts connections after rgw_down"
done
harness_log "ok: up ${up_s}s, down ${down_s}s, nothing left"
echo "PASS"
