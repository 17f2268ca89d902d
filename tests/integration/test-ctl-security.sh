#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-security.sh: the control socket's protocol edges and access
# control, with a raw Python client: mode 0600; a client of another uid
# is refused, both by the file mode and, with the mode opened up, by the
# SO_PEERCRED check (-32006); malformed JSON gets -32700 and the
# connection closes; invalid requests, unknown methods and bad params get
# their codes; batches, notifications and requests split across writes or
# packed into one work; a live control socket is not taken over.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires stat
cd "$tmpdir"
[ "$(id -u)" = 0 ] || skip "needs root (to run a client as another uid)"
chmod 711 "$tmpdir"   # let the other uid reach the socket file itself
sock=$tmpdir/nbd.sock
ctl=$tmpdir/ctl.sock

serve s -U "$sock" --control "$ctl" mem:1M
[ "$(stat -c %a "$ctl")" = 600 ] || fail "the control socket is not mode 0600"

"$PY" -I - "$ctl" <<'PYEOF' || fail "protocol checks"
import json, os, socket, sys, time
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(10)
    return s

def replies(s, n):
    buf, out = b"", []
    while len(out) < n:
        c = s.recv(65536)
        assert c, "eof after %d replies" % len(out)
        buf += c
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            out.append(json.loads(line))
    return out

def call(s, text):
    s.sendall(text.encode() if isinstance(text, str) else text)
    return replies(s, 1)[0]

def closed(s):
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True

s = conn()
# Two requests in one write, then one split across writes.
s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"server-info"}{"jsonrpc":"2.0","id":"two","method":"export-list"}')
a, b = replies(s, 2)
assert a["id"] == 1 and "pid" in a["result"], a
assert b["id"] == "two" and b["result"][0]["name"] == "", b
s.sendall(b'{"jsonrpc":"2.0","id":3,"met')
time.sleep(0.1)
s.sendall(b'hod":"server-info"}\n')
assert replies(s, 1)[0]["id"] == 3
# Errors that keep the connection.
r = call(s, '{"jsonrpc":"2.0","id":4,"method":"nope"}')
assert r["error"]["code"] == -32601 and r["error"]["data"]["method"] == "nope", r
r = call(s, '{"jsonrpc":"2.0","id":5,"method":"export-add","params":{"name":"x"}}')
assert r["error"]["code"] == -32602 and r["id"] == 5, r
r = call(s, '{"jsonrpc":"2.0","id":6,"method":"export-list","params":[1]}')
assert r["error"]["code"] == -32602, r
r = call(s, '{"jsonrpc":"1.0","id":7,"method":"server-info"}')
assert r["error"]["code"] == -32600 and r["id"] == 7, r
r = call(s, '{"id":8,"method":"server-info"}')
assert r["error"]["code"] == -32600, r
r = call(s, '{"jsonrpc":"2.0","id":{"x":1},"method":"server-info"}')
assert r["error"]["code"] == -32600 and r["id"] is None, r
r = call(s, '42')
assert r["error"]["code"] == -32600 and r["id"] is None, r
r = call(s, '[]')
assert r["error"]["code"] == -32600, r
r = call(s, '{"jsonrpc":"2.0","id":9,"method":"server-info","extra":1}')
assert r["error"]["code"] == -32600, r
# A batch with a notification, an error and a call.
r = call(s, '[{"jsonrpc":"2.0","method":"log-set-level","params":{"level":"info"}},'
            '{"jsonrpc":"2.0","id":10,"method":"nope"},1,'
            '{"jsonrpc":"2.0","id":11,"method":"delay-get","params":{"target":""}}]')
assert isinstance(r, list) and len(r) == 3, r
assert r[0]["id"] == 10 and r[0]["error"]["code"] == -32601, r
assert r[1]["id"] is None and r[1]["error"]["code"] == -32600, r
assert r[2]["id"] == 11 and r[2]["error"]["code"] == -32004, r
# Notifications alone get nothing back; the next call is answered.
s.sendall(b'{"jsonrpc":"2.0","method":"server-info"}[{"jsonrpc":"2.0","method":"nope"}]')
r = call(s, '{"jsonrpc":"2.0","id":12,"method":"server-info"}')
assert r["id"] == 12, r
# Malformed JSON: -32700, then the connection closes.
r = call(s, '{"jsonrpc":"2.0",, "id":13}')
assert r["error"]["code"] == -32700 and r["id"] is None, r
assert closed(s), "the connection stayed open after a parse error"
s = conn()
r = call(s, '{"jsonrpc":"2.0","id":14,"id":15,"method":"server-info"}')
assert r["error"]["code"] == -32700, r     # duplicate keys
assert closed(s)
s = conn()
r = call(s, b'{"jsonrpc":"2.0","id":16,"method":"\xff"}')
assert r["error"]["code"] == -32700, r     # not UTF-8
# The server is still fine.
s = conn()
assert call(s, '{"jsonrpc":"2.0","id":17,"method":"server-info"}')["id"] == 17

# Another uid: the 0600 socket keeps it out ...
pid = os.fork()
if pid == 0:
    os.setgid(65534)
    os.setuid(65534)
    try:
        conn()
        os._exit(1)
    except PermissionError:
        os._exit(0)
_, st = os.waitpid(pid, 0)
assert os.WEXITSTATUS(st) == 0, "a client of another uid could connect"
# ... and with the mode opened up, the peer credentials do.
os.chmod(path, 0o666)
pid = os.fork()
if pid == 0:
    os.setgid(65534)
    os.setuid(65534)
    s = conn()
    r = replies(s, 1)[0]     # refused at once, before any request
    ok = r["error"]["code"] == -32006 and closed(s)
    os._exit(0 if ok else 1)
_, st = os.waitpid(pid, 0)
os.chmod(path, 0o600)
assert os.WEXITSTATUS(st) == 0, "a client of another uid was not refused"
s = conn()
assert call(s, '{"jsonrpc":"2.0","id":18,"method":"server-info"}')["id"] == 18
PYEOF

# A second server does not take over a live control socket.
expect_exit 2 "$DISKSTACK" serve -U "$tmpdir/other.sock" --control "$ctl" mem:1M
expect_stderr "already listening"
kill -0 "$s_pid" || fail "the server died"
expect_exit 0 "$DISKSTACK" ctl -S "$ctl" server-info
serve_stop s
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
exit 0
