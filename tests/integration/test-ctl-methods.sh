#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-methods.sh: every method of the control socket (docs/ctl.md)
# through `diskstack ctl` against a running serve: discovery, server-info,
# exports added, listed, described and removed, a RAM disk resized and
# seen through nbdinfo, a live delay: changed and read back (values only,
# never timings), statistics that add up to the requests a client made,
# flush, connections listed and closed, the log level, the error codes and
# exit statuses, $DISKSTACK_CONTROL under --run, and shutdown.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires nbdinfo truncate stat
requires_nbd_python
cd "$tmpdir"
sock=$tmpdir/nbd.sock


serve s -U "$sock" --control "$ctl" -e a=mem:64M -e 'b=delay:2ms/3ms:mem:32M' -D "slow disk"

# Discovery and server-info.
expect_exit 0 c rpc-get-methods
json_check "$tmpdir/stdout" 'all(m in r for m in ["rpc-get-methods", "server-info", "export-list",
  "export-add", "export-remove", "disk-info", "disk-resize", "delay-set", "delay-get", "stats",
  "flush", "connection-list", "connection-close", "log-set-level", "shutdown",
  "fault-set", "fault-clear", "fault-get"])'
expect_exit 0 c server-info
json_check "$tmpdir/stdout" "r['pid'] == $s_pid and r['control'] == '$ctl' and r['read_only'] is False"

# Exports.
expect_exit 0 c export-list
json_check "$tmpdir/stdout" '[e["name"] for e in r] == ["a", "b"] and r[1]["description"] == "slow disk"'
json_check "$tmpdir/stdout" 'r[0]["spec"] == "mem:64M" and r[0]["size"] == 64 << 20'
expect_exit 0 c export-add name=c spec=mem:16M description=new
json_check "$tmpdir/stdout" 'r == {"name": "c", "size": 16 << 20, "sector_size": 512}'
[ "$(nbdinfo --size "$(uri_unix "$sock" c)")" = $((16 << 20)) ] || fail "export c not served"
expect_exit 1 c export-add name=c spec=mem:1M
expect_stderr "error -32002"
expect_stderr '"exists":true'
expect_exit 1 c export-add name=d spec='mem:bogus'
expect_stderr "error -32003"
expect_exit 1 c export-add name=d spec=mem:1M bogus=1
expect_stderr "error -32602"
expect_exit 0 c export-list name=c
json_check "$tmpdir/stdout" 'len(r) == 1 and r[0]["description"] == "new"'
expect_exit 0 c disk-info target=b
json_check "$tmpdir/stdout" 'r["type"] == "delay" and r["spec"].startswith("delay:") and r["children"]'
expect_exit 0 c export-remove name=c
json_check "$tmpdir/stdout" 'r == {"connections_closed": 0, "flushed": True}'
nbdinfo --size "$(uri_unix "$sock" c)" >/dev/null 2>&1 && fail "export c still served after removal"
expect_exit 1 c export-remove name=c
expect_stderr "error -32001"

# Resize a RAM disk: new clients see the new size.
expect_exit 0 c disk-resize target=a size=$((128 << 20))
json_check "$tmpdir/stdout" 'r == {"size": 128 << 20}'
[ "$(nbdinfo --size "$(uri_unix "$sock" a)")" = $((128 << 20)) ] || fail "nbdinfo does not see the new size"
expect_exit 1 c disk-resize target=a size=1000
expect_stderr "error -32602"
expect_exit 0 c disk-resize target=b size=$((8 << 20))   # under the delay: decorator
# A file grows (and never shrinks); the new sectors read as zeroes.
truncate -s 1M "$tmpdir/f.raw"
expect_exit 0 c export-add name=f spec="file:$tmpdir/f.raw"
expect_exit 0 c disk-resize target=f size=$((3 << 20))
json_check "$tmpdir/stdout" 'r == {"size": 3 << 20}'
[ "$(stat -c %s "$tmpdir/f.raw")" = $((3 << 20)) ] || fail "the file did not grow"
[ "$(nbdinfo --size "$(uri_unix "$sock" f)")" = $((3 << 20)) ] || fail "nbdinfo does not see the grown file"
expect_exit 1 c disk-resize target=f size=$((2 << 20))
expect_stderr "error -32004"
expect_exit 0 c export-remove name=f

# Delays: values only.
expect_exit 0 c delay-get target=b
json_check "$tmpdir/stdout" 'r == {"read_us": 2000, "write_us": 3000}'
expect_exit 0 c delay-set target=b read_us=5000
json_check "$tmpdir/stdout" 'r == {"read_us": 5000, "write_us": 3000}'
expect_exit 0 c delay-get target=b
json_check "$tmpdir/stdout" 'r == {"read_us": 5000, "write_us": 3000}'
expect_exit 1 c delay-set target=a read_us=1
expect_stderr "error -32004"
expect_exit 1 c delay-set target=b read_us=3600000001
expect_stderr "error -32602"

# Statistics add up to what a client did: 10 reads, 5 writes, 1 flush,
# one read past the end (an error).
expect_exit 0 c stats target=a reset=true
"$PY" -I - "$(uri_unix "$sock" a)" <<'PYEOF' || fail "the client failed"
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(10):
    h.pread(4096, i * 4096)
for i in range(5):
    h.pwrite(b"x" * 8192, i * 8192)
h.flush()
h.set_strict_mode(0)     # let the request past the end reach the server
try:
    h.pread(512, h.get_size())
    raise SystemExit("a read past the end succeeded")
except nbd.Error:
    pass
h.shutdown()
PYEOF
expect_exit 0 c stats target=a
json_check "$tmpdir/stdout" 'len(r["exports"]) == 1'
json_check "$tmpdir/stdout" 'r["exports"][0]["read"]["ops"] == 11 and r["exports"][0]["read"]["bytes"] == 40960'
json_check "$tmpdir/stdout" 'r["exports"][0]["read"]["errors"] == 1'
json_check "$tmpdir/stdout" 'r["exports"][0]["write"]["ops"] == 5 and r["exports"][0]["write"]["bytes"] == 40960'
json_check "$tmpdir/stdout" 'r["exports"][0]["flush"]["ops"] == 1 and r["exports"][0]["write"]["errors"] == 0'
json_check "$tmpdir/stdout" 'r["exports"][0]["read"]["lat_ns"]["p50"] <= r["exports"][0]["read"]["lat_ns"]["max"]'
expect_exit 0 c stats reset=true
expect_exit 0 c stats target=a
json_check "$tmpdir/stdout" 'r["exports"][0]["read"]["ops"] == 0'

# Flush, connections, log level.
expect_exit 0 c flush target=a
json_check "$tmpdir/stdout" 'r == {}'
"$PY" -I - "$(uri_unix "$sock" a)" "$DISKSTACK" "$ctl" <<'PYEOF' || fail "connection-list/close"
import json, nbd, subprocess, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pread(512, 0)
def ctl(*args):
    return json.loads(subprocess.run([sys.argv[2], "ctl", "-S", sys.argv[3]] + list(args),
                                     check=True, capture_output=True).stdout)
conns = ctl("connection-list", "export=a")
assert len(conns) == 1 and conns[0]["export"] == "a", conns
ctl("connection-close", "id=%d" % conns[0]["id"])
try:
    for i in range(100):
        h.pread(512, 0)
    raise SystemExit("the connection was not closed")
except nbd.Error:
    pass
PYEOF
expect_exit 1 c connection-close id=999999
expect_stderr "error -32001"
expect_exit 0 c log-set-level level=debug
json_check "$tmpdir/stdout" 'r == {"level": "debug"}'
expect_exit 0 c log-set-level level=info
expect_exit 1 c log-set-level level=loud
expect_stderr "error -32602"

# The client's own errors.
expect_exit 1 c no-such-method
expect_stderr "error -32601"
expect_exit 2 c
expect_exit 2 c server-info novalue
expect_exit 3 "$DISKSTACK" ctl -S "$tmpdir/nothing.sock" server-info

# Shutdown ends the server like SIGTERM.
expect_exit 0 c shutdown
wait_gone "$s_pid" 300 "the server ignored shutdown"
wait "$s_pid" 2>/dev/null || fail "serve exited with an error after shutdown"
[ ! -e "$ctl" ] || fail "the control socket was left behind"

# --run gets the socket as $DISKSTACK_CONTROL (--control - : next to -U -).
expect_exit 0 "$DISKSTACK" serve -U - --control - mem:1M --run \
	'"$DISKSTACK" ctl export-list && test -S "$DISKSTACK_CONTROL"'
json_check "$tmpdir/stdout" 'r[0]["name"] == "" and r[0]["size"] == 1 << 20'

# With --control, serve may start with no export at all.
expect_exit 0 "$DISKSTACK" serve -U - --control - --run \
	'"$DISKSTACK" ctl export-add name=late spec=mem:2M >/dev/null &&
	 nbdinfo --size "nbd+unix:///late?socket=$unixsocket"'
[ "$(cat "$tmpdir/stdout")" = $((2 << 20)) ] || fail "an export added to an empty server"
expect_exit 2 "$DISKSTACK" serve -U -
expect_stderr "nothing to serve"
exit 0
