#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-stats-workers.sh: `stats` is exact with per-connection counters
# (docs/ctl.md, "stats"): four fio jobs on two worker threads add up to
# exactly what they did; counts of live and of closed connections are
# summed once each; a reset while a connection is live restarts the
# counts, and that connection closing later loses or repeats nothing.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires fio
requires_nbd_python
cd "$tmpdir"
sock=$tmpdir/nbd.sock


serve s -U "$sock" --control "$ctl" -t 2 -e a=mem:64M

# Four connections (fio's nbd engine: one per job) spread over the two
# workers; each writes every 4 KiB block of its 4 MiB once.
fio --name=w --ioengine=nbd --uri="$(uri_unix "$sock" a)" --rw=randwrite --bs=4k \
	--size=4M --numjobs=4 --iodepth=8 --output="$tmpdir/fio.out" ||
	{ cat "$tmpdir/fio.out"; fail "fio failed"; }
expect_exit 0 c stats target=a
json_check "$tmpdir/stdout" 'r["exports"][0]["write"]["ops"] == 4 * 1024 and r["exports"][0]["write"]["bytes"] == 16 << 20'
json_check "$tmpdir/stdout" 'r["exports"][0]["write"]["errors"] == 0 and r["exports"][0]["read"]["ops"] == 0'
expect_exit 0 c stats target=a reset=true
json_check "$tmpdir/stdout" 'r["exports"][0]["write"]["ops"] == 4 * 1024'
expect_exit 0 c stats target=a
json_check "$tmpdir/stdout" 'r["exports"][0]["write"]["ops"] == 0 and r["exports"][0]["write"]["bytes"] == 0'

# One connection stays open across a reset; another closes in between.
"$PY" -I - "$(uri_unix "$sock" a)" "$DISKSTACK" "$ctl" <<'PYEOF' || fail "the client failed"
import json, nbd, subprocess, sys
def stats(*extra):
    out = subprocess.run([sys.argv[2], "ctl", "-S", sys.argv[3], "stats", "target=a", *extra],
                         check=True, capture_output=True).stdout
    return json.loads(out)["exports"][0]
live, gone = nbd.NBD(), nbd.NBD()
live.connect_uri(sys.argv[1])
gone.connect_uri(sys.argv[1])
for i in range(7):
    live.pread(4096, i * 4096)
for i in range(5):
    gone.pwrite(b"z" * 512, i * 512)
gone.shutdown()
e = stats()
assert e["read"]["ops"] == 7 and e["write"]["ops"] == 5 and e["read"]["bytes"] == 7 * 4096, e
e = stats("reset=true")
assert e["read"]["ops"] == 7 and e["write"]["ops"] == 5, e
for i in range(3):
    live.pread(512, 0)
live.flush()
e = stats()
assert e["read"]["ops"] == 3 and e["write"]["ops"] == 0 and e["flush"]["ops"] == 1, e
assert e["read"]["bytes"] == 3 * 512, e
live.shutdown()
e = stats()
assert e["read"]["ops"] == 3 and e["flush"]["ops"] == 1, e
PYEOF
# The closed connections' counts stay (folded once into the export).
expect_exit 0 c stats target=a
json_check "$tmpdir/stdout" 'r["exports"][0]["read"]["ops"] == 3 and r["exports"][0]["write"]["ops"] == 0'
serve_stop s
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
exit 0
