#!/bin/sh
# SPDX-License-Identifier: MIT
# test-delay-cli.sh: delay: from the command line. `diskstack info` shows
# both delays; under `diskstack bench` with 32 requests in flight, no read
# completes in less than the read delay and no write in less than the write
# delay (lower bounds only: how long the run takes depends on the machine's
# load; that requests overlap is test_delay_concurrent's job, which counts
# armed timers); bad delays are refused.
. "$(dirname "$0")/functions.sh"
requires sed
py=/usr/bin/python3
requires $py
cd "$tmpdir"

expect_exit 0 "$DISKSTACK" info 'delay:5/250us:mem:1M'
grep -q 'read-delay: *5ms' "$tmpdir/stdout" || fail "info does not show the read delay"
grep -q 'write-delay: *250us' "$tmpdir/stdout" || fail "info does not show the write delay"
grep -q 'type: *delay' "$tmpdir/stdout" || fail "info does not show the type"

# 256 requests, 32 at a time, 20 ms reads and 5 ms writes.
expect_exit 0 "$DISKSTACK" bench 'delay:20/5:mem:1M' --rw randrw --iodepth 32 --ops 256 --json -q
$py -I - "$tmpdir/stdout" <<'PYEOF' || fail "bench timings violate the delays"
import json, sys
r = json.load(open(sys.argv[1]))
ms = 1000000
assert r["errors"] == 0, r
assert r["read"]["ops"] > 0 and r["write"]["ops"] > 0, r
assert r["read"]["lat_ns"]["min"] >= 20 * ms, r["read"]
assert r["write"]["lat_ns"]["min"] >= 5 * ms, r["write"]
PYEOF

expect_exit 2 "$DISKSTACK" info 'delay:5x:mem:1M'
expect_stderr "bad delay"
expect_exit 2 "$DISKSTACK" info 'delay:3600001:mem:1M'
expect_stderr "too long"
exit 0
