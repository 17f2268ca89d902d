#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-fault.sh: fault-set / fault-clear / fault-get over the control
# socket change a live error: decorator (docs/decorator-error.md) while an
# NBD client is connected: reads pass, then fail with EIO once a rule is
# set (counted by the rule), bad rules are refused and leave the old ones
# in force, and clearing lets everything through again; a stack without
# error: is told so.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_nbd_python
cd "$tmpdir"
sock=$tmpdir/nbd.sock
ctl=$tmpdir/ctl.sock

serve s -U "$sock" --control "$ctl" -e 'f=error:write:enospc;once:mem:1M' -e plain=mem:1M

"$PY" -I - "$(uri_unix "$sock" f)" "$DISKSTACK" "$ctl" <<'PYEOF' || fail "fault methods"
import errno, json, nbd, subprocess, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])

def ctl(*args, code=0):
    p = subprocess.run([sys.argv[2], "ctl", "-S", sys.argv[3]] + list(args), capture_output=True)
    assert p.returncode == code, (args, p.returncode, p.stderr)
    return json.loads(p.stdout) if code == 0 else p.stderr.decode()

def read_fails():
    try:
        h.pread(512, 0)
        return None
    except nbd.Error as e:
        return e.errnum

r = ctl("fault-get", "target=f")
assert r["rules"].startswith("write:enospc") and r["stats"] == [{"matched": 0, "injected": 0}], r
r = ctl("fault-clear", "target=f")
assert r == {"rules": "", "stats": []}, r
h.pwrite(b"a" * 512, 0)
assert read_fails() is None
r = ctl("fault-set", "target=f", "rules=read:eio")
assert r["rules"] == "read:eio" and len(r["stats"]) == 1, r
assert read_fails() == errno.EIO
h.pwrite(b"b" * 512, 512)                # writes still pass
r = ctl("fault-get", "target=f")
assert r["stats"] == [{"matched": 1, "injected": 1}], r
err = ctl("fault-set", "target=f", "rules=read:bogus", code=1)
assert "error -32602" in err, err
assert ctl("fault-get", "target=f")["rules"] == "read:eio"
ctl("fault-clear", "target=f")
assert read_fails() is None
err = ctl("fault-set", "target=plain", "rules=read:eio", code=1)
assert "error -32004" in err, err
err = ctl("fault-clear", "target=nope", code=1)
assert "error -32001" in err, err
h.shutdown()
PYEOF
serve_stop s
[ "$serve_status" = 0 ] || fail "serve exited with $serve_status"
exit 0
