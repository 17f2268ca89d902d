#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-limits.sh: regression test for a server with no limit on
# connections and no configurable timeouts. --max-connections N: N clients
# work, one more is accepted and closed at once (logged once), and a slot
# freed by a client that leaves is usable again. --handshake-timeout: a
# client that connects and sends nothing is dropped and the server stays
# up. --idle-timeout: a connection with nothing in flight is closed, one
# waiting on a slow request is not. No assertion is about time: each wait
# has a generous bound and only checks that the socket was closed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_nbd_python

sock=$tmpdir/s.sock
serve srv -U "$sock" --max-connections 3 --handshake-timeout 2 mem:4M
/usr/bin/python3 -I - "$sock" <<'PYEOF' || { cat "$tmpdir/srv.log"; fail "connection limit"; }
import socket, sys, time, nbd
SOCK = sys.argv[1]
URI = "nbd+unix:///?socket=" + SOCK


def client():
    h = nbd.NBD()
    h.connect_uri(URI)
    return h


def closed_by_server(s, bound=60):
    """True once the server closed @s (EOF); False if it is still open
    after @bound seconds."""
    s.settimeout(bound)
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


hs = [client() for _ in range(3)]
for i, h in enumerate(hs):
    h.pwrite(bytes([i + 1]) * 512, i * 512)
# Over the limit: closed before any greeting, several times.
for _ in range(3):
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    s.settimeout(60)
    assert s.recv(18) == b"", "the connection over the limit got a greeting"
    s.close()
try:
    client()
    sys.exit("libnbd connected over the limit")
except nbd.Error:
    pass
for i, h in enumerate(hs):
    assert h.pread(512, i * 512) == bytes([i + 1]) * 512, "client %d" % i
# A slot freed is usable again (the count drops once the server has
# closed the connection: retry for a while).
hs.pop().shutdown()
for _ in range(600):
    try:
        hs.append(client())
        break
    except nbd.Error:
        time.sleep(0.1)
else:
    sys.exit("the freed slot never became usable")
assert hs[-1].pread(512, 0) == b"\x01" * 512
for h in hs:
    h.shutdown()

# A client that sends nothing after the greeting is dropped; the slot it
# held is free again and the server keeps serving.
for _ in range(600):
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(SOCK)
    idle.settimeout(60)
    if idle.recv(18):
        break                   # greeted: not refused over the limit
    idle.close()
    time.sleep(0.1)
else:
    sys.exit("never greeted")
assert closed_by_server(idle), "a silent handshake was never dropped"
h = client()
assert h.pread(512, 512) == b"\x02" * 512
h.shutdown()
PYEOF
kill -0 "$srv_pid" || fail "the server died"
serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "exit status $serve_status"; }
# One line per stretch at the limit, not one per refused client: the four
# refused in a row above log once (two retry loops may add a stretch each).
n=$(grep -c 'refusing new ones' "$tmpdir/srv.log")
[ "$n" -ge 1 ] && [ "$n" -le 3 ] ||
	{ cat "$tmpdir/srv.log"; fail "the limit was logged $n times"; }
grep -q 'handshake not finished after 2 s' "$tmpdir/srv.log" ||
	{ cat "$tmpdir/srv.log"; fail "the dropped handshake was not logged"; }
grep -q 'stopped after .* ([1-9][0-9]* refused over the limit)' "$tmpdir/srv.log" ||
	{ cat "$tmpdir/srv.log"; fail "refused connections not counted"; }

# --idle-timeout: a quiet connection in transmission is closed; one whose
# request outlasts the timeout (delay: 12 s reads against a 4 s timeout)
# is answered. The timeout leaves a loaded machine room between the
# client's handshake and its first request.
serve idle -U "$sock" --idle-timeout 4 "delay:12000:mem:4M"
/usr/bin/python3 -I - "$sock" "$tmpdir/idle.log" <<'PYEOF' || { cat "$tmpdir/idle.log"; fail "idle timeout"; }
import socket, struct, sys, time, nbd
SOCK, LOG = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri("nbd+unix:///?socket=" + SOCK)
assert h.pread(512, 0) == bytes(512), "a request longer than the idle timeout"
h.shutdown()

def raw_go():
    """A raw client in transmission: through NBD_OPT_GO up to its ACK."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(SOCK)
    s.recv(18)
    s.sendall(struct.pack(">I", 3))
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 6) + struct.pack(">IH", 0, 0))
    buf = b""
    while True:
        while len(buf) < 20:
            c = s.recv(65536)
            assert c, "closed during the handshake"
            buf += c
        magic, opt, typ, ln = struct.unpack(">QIII", buf[:20])
        while len(buf) < 20 + ln:
            buf += s.recv(65536)
        buf = buf[20 + ln:]
        if typ == 1:
            return s

def wait_closed(s, why):
    """Reads @s until the server closes it; exits with @why if it never does."""
    try:
        while s.recv(65536):
            pass
    except socket.timeout:
        sys.exit(why)

# A raw client enters transmission (its GO answered), then sends nothing.
wait_closed(raw_go(), "an idle connection was never closed")

# Regression: a client that vanishes in the middle of a WRITE payload (the
# socket stays open, nothing more comes) is idle too; it used to hold its
# connection slot for ever.
s = raw_go()
# NBD_CMD_WRITE of 1 MiB at 0, and only 1000 bytes of its payload.
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 7, 0, 1 << 20) + bytes(1000))
wait_closed(s, "a connection stalled in the middle of a WRITE payload was never closed")

# A slow but steady upload is not idle: a 3 MiB WRITE sent 1 MiB (the
# server's receive piece) at a time, 2 s apart (6 s in all, longer than
# the 4 s timeout), is answered.
s = raw_go()
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, 9, 0, 3 << 20))
for i in range(3):
    time.sleep(2)
    s.sendall(bytes([i + 1]) * (1 << 20))
rep = b""
while len(rep) < 16:
    c = s.recv(16 - len(rep))
    assert c, "a slow upload was cut off as idle"
    rep += c
magic, err, cookie = struct.unpack(">IIQ", rep)
assert (magic, err, cookie) == (0x67446698, 0, 9), (magic, err, cookie)
s.close()

# A client that stops reading its replies is idle, and is closed even
# though the server's send to it can never finish (regression: a graceful
# close waited on that send for ever). 24 READs of 1 MiB overflow the
# socket buffers; the reads themselves take 12 s (the delay:).
s = raw_go()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
for i in range(24):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 100 + i, 0, 1 << 20))
# Stay connected, reading nothing, until the server's log shows a third
# idle close (generous bound: only a close that never comes fails).
for _ in range(1200):
    if open(LOG).read().count("idle for 4 s: closing") >= 3:
        break
    time.sleep(0.1)
else:
    sys.exit("a client that stopped reading was never judged idle")
# ... and the connection really ends, without the client reading a byte
# (reading would let a graceful close finish its send).
import select
p = select.poll()
p.register(s, select.POLLRDHUP | select.POLLHUP)
ev = p.poll(60000)
assert ev and ev[0][1] & (select.POLLRDHUP | select.POLLHUP), \
    "a client that stopped reading was never disconnected: %r" % ev
s.close()
PYEOF
serve_stop idle
[ "$serve_status" = 0 ] || { cat "$tmpdir/idle.log"; fail "exit status $serve_status"; }
[ "$(grep -c 'idle for 4 s: closing' "$tmpdir/idle.log")" -ge 3 ] || { cat "$tmpdir/idle.log"; fail "not logged"; }

# Bad values are usage errors.
expect_exit 2 "$DISKSTACK" serve --max-connections -1 mem:1M
expect_exit 2 "$DISKSTACK" serve --idle-timeout soon mem:1M
expect_exit 2 "$DISKSTACK" serve --handshake-timeout 99999999 mem:1M
echo "$0: OK"
