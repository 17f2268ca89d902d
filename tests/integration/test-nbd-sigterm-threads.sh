#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-sigterm-threads.sh: regression test for SIGTERM killing
# `diskstack serve` when an export's disk starts threads of its own (sql:'s
# checkpointer, blob:'s HTTP engine). Those threads were created before the
# stop signals were blocked, so SIGTERM could land on one and end the
# process at once (status 143): no drain, no flush at exit, the socket
# file left behind. Now the server drains, flushes and exits 0, and what
# was written without a flush is there when the file is served again.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_kind sql
requires_nbd_python

db=$tmpdir/t.dbhd
sock=$tmpdir/s.sock
for round in 1 2 3; do
	serve srv -U "$sock" "sql:$db;create=16M"
	/usr/bin/python3 -I - "$sock" "$round" <<'PYEOF' || fail "write, round $round"
import sys, nbd
h = nbd.NBD()
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
r = int(sys.argv[2])
h.pwrite(bytes([r]) * 65536, r * 65536)     # no flush: the exit must do it
h.shutdown()
PYEOF
	serve_stop srv
	[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "exit status $serve_status, round $round"; }
	grep -q 'nbd: stopped after' "$tmpdir/srv.log" || { cat "$tmpdir/srv.log"; fail "no drain"; }
	[ ! -e "$sock" ] || fail "socket file left behind, round $round"
	rm -f "$db"
done

# Data written and never flushed by the client survives the stop.
serve srv -U "$sock" "sql:$db;create=16M"
/usr/bin/python3 -I - "$sock" <<'PYEOF' || fail "write"
import sys, nbd
h = nbd.NBD()
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
h.pwrite(b"\x5a" * 65536, 65536)
h.shutdown()
PYEOF
serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "exit status $serve_status"; }
serve srv -U "$sock" "sql:$db"
/usr/bin/python3 -I - "$sock" <<'PYEOF' || fail "data lost at the stop"
import sys, nbd
h = nbd.NBD()
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
assert h.pread(65536, 65536) == b"\x5a" * 65536
h.shutdown()
PYEOF
serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "exit status $serve_status"; }
echo "$0: OK"
