#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-unix-inuse.sh: regression test for `serve -U PATH` unlinking a
# socket another live server listens on (the first server kept running
# but no new client could reach it). Now a socket that answers a connect
# is refused with a message and exit status 2, and the first server keeps
# serving; a stale socket file (nobody listening) is still replaced.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires nbdinfo timeout

sock=$tmpdir/s.sock
serve first -U "$sock" mem:4M
# (timeout: before the fix the second server ran, serving the stolen path)
expect_exit 2 timeout 60 "$DISKSTACK" serve -U "$sock" mem:8M
expect_stderr "a server is already listening on '$sock'"
[ -S "$sock" ] || fail "the live socket was removed"
kill -0 "$first_pid" || fail "the first server died"
[ "$(nbdinfo --size "$(uri_unix "$sock")")" = 4194304 ] || fail "the first server is unreachable"
serve_stop first
[ "$serve_status" = 0 ] || fail "first server exit status $serve_status"

# A stale socket (bound, never listened on, left behind) is replaced.
/usr/bin/python3 -I -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$sock"
[ -S "$sock" ] || fail "no stale socket to test with"
serve second -U "$sock" mem:8M
[ "$(nbdinfo --size "$(uri_unix "$sock")")" = 8388608 ] || fail "the stale socket was not replaced"
serve_stop second

# Anything else at the path is left alone.
echo data > "$sock"
expect_exit 1 "$DISKSTACK" serve -U "$sock" mem:1M
expect_stderr "exists and is not a socket"
[ "$(cat "$sock")" = data ] || fail "a regular file was touched"
echo "$0: OK"
