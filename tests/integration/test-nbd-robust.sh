#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-robust.sh: a raw-socket client (nbd-robust.py) sends malformed
# and hostile input — bad magic, oversized options and requests, unknown
# options, commands and flags, truncated headers and payloads, clients
# vanishing mid-request, an option flood, unread pipelines — while another
# client (nbd-steady.py) is served throughout; the server answers each
# with the spec's error or a clean disconnect and exits cleanly after.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_nbd_python

sock=$tmpdir/s.sock
serve srv -U "$sock" --threads 2 mem:32M --export other=mem:16M
"$PY" -I "$(dirname "$0")/nbd-steady.py" "$(uri_unix "$sock" other)" "$tmpdir/stop" \
	> "$tmpdir/steady.out" 2>&1 &
steady=$!
"$PY" -I "$(dirname "$0")/nbd-robust.py" "$sock" > "$tmpdir/robust.out" 2>&1 ||
	{ cat "$tmpdir/robust.out" "$tmpdir/srv.log"; touch "$tmpdir/stop"; fail "nbd-robust.py"; }
touch "$tmpdir/stop"
wait "$steady" || { cat "$tmpdir/steady.out"; fail "the well-behaved client failed"; }
tail -n 1 "$tmpdir/robust.out"
cat "$tmpdir/steady.out"
kill -0 "$srv_pid" || fail "the server died"
serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
# Every refusal that drops a client names the connection.
grep -q 'nbd #[0-9]* unix: bad request magic' "$tmpdir/srv.log" || fail "log lines lack the connection"
echo "$0: OK"
