#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-listen.sh: how `diskstack serve` listens and stops: TCP on a
# chosen and on an ephemeral port, IPv6, Unix sockets, --stdio (libnbd's
# connect_command), systemd socket activation, --run with its environment
# and exit status, --pidfile, and SIGTERM/SIGINT draining in-flight writes
# (acknowledged data is in the file afterwards), with idle clients in the
# handshake and in transmission; bad command lines fail with a message.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires nbdinfo
requires_nbd_python

# TCP on a given port; the pid file holds the server's pid.
port=$(free_port)
serve tcp -p "$port" mem:8M
[ "$(cat "$tmpdir/tcp.ready")" = "$tcp_pid" ] || fail "pid file content"
[ "$(nbdinfo --size "nbd://127.0.0.1:$port/")" = 8388608 ] || fail "TCP"
serve_stop tcp
[ ! -e "$tmpdir/tcp.ready" ] || fail "pid file left behind"

# An ephemeral port is logged; IPv6 when the host has ::1.
serve eph -p 0 -i 127.0.0.1 mem:4M
port=$(sed -n 's/.*TCP port \([0-9]*\).*/\1/p' "$tmpdir/eph.log")
[ -n "$port" ] || fail "the ephemeral port was not logged"
[ "$(nbdinfo --size "nbd://127.0.0.1:$port")" = 4194304 ] || fail "ephemeral port"
serve_stop eph
if "$PY" -I -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
	port=$(free_port)
	serve v6 -i ::1 -p "$port" mem:4M
	[ "$(nbdinfo --size "nbd://[::1]:$port")" = 4194304 ] || fail "IPv6"
	serve_stop v6
fi

# Unix socket and TCP at once.
port=$(free_port)
serve both -U "$tmpdir/b.sock" -p "$port" mem:4M
nbdinfo --size "$(uri_unix "$tmpdir/b.sock")" >/dev/null || fail "Unix side"
nbdinfo --size "nbd://127.0.0.1:$port" >/dev/null || fail "TCP side"
serve_stop both

# --stdio and socket activation, through libnbd.
"$PY" -I - "$DISKSTACK" <<'EOF' || fail "--stdio / socket activation"
import sys, nbd
d = sys.argv[1]
h = nbd.NBD()
h.connect_command([d, "serve", "-s", "mem:8M"])
assert h.get_size() == 8 << 20
h.pwrite(b"s" * 4096, 0)
assert h.pread(4096, 0) == b"s" * 4096
h.shutdown()
h = nbd.NBD()
h.connect_systemd_socket_activation([d, "serve", "mem:4M"])
assert h.get_size() == 4 << 20
h.shutdown()
EOF
nbdinfo --size -- [ "$DISKSTACK" serve mem:2M ] > "$tmpdir/size" 2>/dev/null || fail "nbdinfo [ CMD ]"
[ "$(cat "$tmpdir/size")" = 2097152 ] || fail "socket-activated size"

# --run: the environment, the exit status, a private socket by default.
expect_exit 7 "$DISKSTACK" serve mem:4M --export x=mem:1M \
	--run 'nbdinfo --size "$uri" && test -S "$unixsocket" && test "$exportname" = "" && exit 7'
grep -qx 4194304 "$tmpdir/stdout" || fail "--run: nbdinfo output"
expect_exit 0 "$DISKSTACK" serve --export x=mem:1M --run 'nbdinfo --size "$uri"'
grep -qx 1048576 "$tmpdir/stdout" || fail "--run with a named export"
port=$(free_port)
expect_exit 0 "$DISKSTACK" serve -p "$port" mem:1M \
	--run 'test "$port" = '"$port"' && case "$uri" in nbd://127.0.0.1:'"$port"'/) ;; *) exit 9;; esac'

# SIGTERM while writes are in flight: what was acknowledged is on disk.
img=$tmpdir/drain.img
serve drain -U "$tmpdir/d.sock" "file:$img;create=64M"
"$PY" -I - "$(uri_unix "$tmpdir/d.sock")" "$drain_pid" "$img" <<'EOF' || fail "drain on SIGTERM"
import errno, os, signal, sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
bufs = {}
for i in range(48):
    data = bytes([i + 1]) * (1 << 20)
    bufs[h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), i << 20)] = (i, data)
# Stop the server while the rest are in flight.
while h.aio_in_flight() > 40:
    h.poll(-1)
os.kill(int(sys.argv[2]), signal.SIGTERM)
done, failed = [], 0
while h.aio_in_flight() > 0:
    try:
        h.poll(-1)
    except nbd.Error:
        break
for c, (i, data) in bufs.items():
    try:
        if h.aio_command_completed(c):
            done.append(i)
    except nbd.Error as e:
        failed += 1
# Give the server time to flush and exit, then check the file.
pid = int(sys.argv[2])
for _ in range(300):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.1)
f = open(sys.argv[3], "rb")
for i in done:
    f.seek(i << 20)
    assert f.read(1 << 20) == bytes([i + 1]) * (1 << 20), "acknowledged write %d lost" % i
assert len(done) >= 8, done
print("drain: %d acknowledged, %d refused or cut" % (len(done), failed))
EOF
wait_gone "$drain_pid" 300 "server did not stop after SIGTERM"
wait "$drain_pid" || fail "server exit status $? after SIGTERM"
rm -f "$tmpdir/drain.pid"

# Idle clients (one mid-handshake, one in transmission) do not hold up a
# SIGINT: the shutdown closes them itself, not the 10 s drain timer, which
# would log that it dropped them (no clock: the log says which one did).
# The clients stay connected until the server is gone.
serve idle -U "$tmpdir/i.sock" mem:4M
"$PY" -I - "$(uri_unix "$tmpdir/i.sock")" "$idle_pid" <<'EOF' || fail "idle clients at SIGINT"
import os, signal, sys, time, nbd
a = nbd.NBD()
a.set_opt_mode(True)
a.connect_uri(sys.argv[1])
b = nbd.NBD()
b.connect_uri(sys.argv[1])
pid = int(sys.argv[2])
os.kill(pid, signal.SIGINT)
for _ in range(1200):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.05)
else:
    raise SystemExit("server still running 60 s after SIGINT")
EOF
wait "$idle_pid" || fail "exit status after SIGINT"
rm -f "$tmpdir/idle.pid"
! grep -q 'still open' "$tmpdir/idle.log" || fail "idle clients were dropped by the drain timer"

# Bad command lines.
expect_exit 2 "$DISKSTACK" serve
expect_stderr "nothing to serve"
expect_exit 2 "$DISKSTACK" serve --export noequals mem:1M
expect_stderr "NAME=SPEC"
expect_exit 2 "$DISKSTACK" serve --export a=mem:1M --export a=mem:1M
expect_exit 2 "$DISKSTACK" serve -s -U "$tmpdir/x.sock" mem:1M
expect_exit 2 "$DISKSTACK" serve 'mem:bogus'
expect_exit 2 "$DISKSTACK" serve -p 70000 mem:1M
expect_exit 2 "$DISKSTACK" serve --tls=maybe mem:1M
port=$(free_port)
serve busy -p "$port" mem:1M
expect_exit 1 "$DISKSTACK" serve -p "$port" mem:1M
expect_stderr "cannot listen"
serve_stop busy
echo "$0: OK"
