#!/bin/sh
# SPDX-License-Identifier: MIT
# test-error-nbd.sh: error: (fault injection) through the NBD server, seen
# by libnbd: each injected status becomes the NBD error of nbd/errmap.c
# for reads, writes, flushes, trims and write-zeroes, with structured and
# with simple replies; a failure in the middle of a large read; a layered
# disk over a failing lower layer; once; and after every failure the same
# connection, a new connection and the other exports keep working and the
# server stays up (until SIGTERM, when its final flush meets the flush
# rules). `diskstack info` shows the rules; bad rules exit 2.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_nbd_python

expect_exit 0 "$DISKSTACK" info 'error:read:eio;range=8-15/write:enospc;once:mem:1M'
grep -q 'rules: *read:eio;range=8-15/write:enospc;once' "$tmpdir/stdout" ||
	{ cat "$tmpdir/stdout"; fail "info does not show the rules"; }
expect_exit 2 "$DISKSTACK" info 'error:read:eoi:mem:1M'
expect_stderr "unknown status 'eoi' at offset 11 of 'error:read:eoi:mem:1M'"
expect_exit 2 "$DISKSTACK" info 'error:read:eio;rate=2:mem:1M'
expect_stderr "bad rate '2'"
expect_exit 2 "$DISKSTACK" info 'error:read:eio'
expect_stderr "missing ':<spec>' after the error rules"

sock=$tmpdir/nbd.sock
serve s -U "$sock" \
	-e 'eio=error:read:eio;range=0-7/write:eio;range=0-7/flush:eio/trim:eio;range=0-7:mem:1M' \
	-e 'medium=error:read:medium;range=0-7/write:medium;range=0-7:mem:1M' \
	-e 'ro=error:write:readonly:mem:1M' \
	-e 'perm=error:write:erofs/trim:eperm:mem:1M' \
	-e 'nospc=error:write:enospc/flush:edquot:mem:1M' \
	-e 'shut=error:read:eshutdown;range=0-7/write:einval:mem:1M' \
	-e 'mid=error:read:eio;range=1000:mem:4M' \
	-e 'once=error:read:eio;once:mem:1M' \
	-e 'layered=memdiff:error:read:medium;range=1-1000:mem:1M' \
	-e 'fine=mem:1M'

nbd_py - "$sock" <<'PYEOF' || fail "NBD errors"
import errno, sys
import nbd

sock = sys.argv[1]
M = 1 << 20


def conn(name, structured=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    h.connect_uri("nbd+unix:///%s?socket=%s" % (name, sock))
    return h


def fails(f, want, what):
    try:
        f()
    except nbd.Error as e:
        if e.errnum != want:
            raise AssertionError("%s: errno %s, want %s (%s)" % (what, e.errnum, want, e.string))
        return
    raise AssertionError("%s: succeeded, want errno %d" % (what, want))


def still_works(h):
    """The connection (a read outside every rule's range), a new connection
    and another export all still serve."""
    assert h.pread(512, 64 * 512) == b"\0" * 512
    g = conn("fine")
    g.pwrite(b"\x5a" * 4096, 8192)
    assert g.pread(4096, 8192) == b"\x5a" * 4096
    g.shutdown()


# (export, operation, expected errno), with both reply styles.
cases = [
    ("eio", "read", errno.EIO), ("eio", "write", errno.EIO),
    ("eio", "flush", errno.EIO), ("eio", "trim", errno.EIO),
    ("eio", "zero", errno.EIO),
    ("medium", "read", errno.EIO), ("medium", "write", errno.EIO),
    ("ro", "write", errno.EPERM), ("ro", "zero", errno.EPERM),
    ("perm", "write", errno.EPERM), ("perm", "trim", errno.EPERM),
    ("nospc", "write", errno.ENOSPC), ("nospc", "flush", errno.ENOSPC),
    # A disk's ESHUTDOWN must not tell the client the server is stopping.
    ("shut", "read", errno.EIO), ("shut", "write", errno.EINVAL),
]
ops = {
    "read": lambda h: h.pread(4096, 0),
    "write": lambda h: h.pwrite(b"x" * 4096, 0),
    "flush": lambda h: h.flush(),
    "trim": lambda h: h.trim(4096, 0),
    "zero": lambda h: h.zero(4096, 0),
}
for structured in (True, False):
    for name, op, want in cases:
        h = conn(name, structured)
        fails(lambda: ops[op](h), want, "%s %s (structured=%s)" % (name, op, structured))
        still_works(h)
        h.shutdown()

# A failure in the middle of a large read (sector 1000 of 2 MiB from 0),
# with structured replies (chunks may have gone out) and simple ones.
for structured in (True, False):
    h = conn("mid", structured)
    h.pwrite(b"\x11" * (2 * M), 0)
    fails(lambda: h.pread(2 * M, 0), errno.EIO, "mid read")
    assert h.pread(512, 999 * 512) == b"\x11" * 512
    assert h.pread(512, 1001 * 512) == b"\x11" * 512
    assert h.pread(1000 * 512, 0) == b"\x11" * (1000 * 512)
    h.shutdown()

# once: the first read fails, the next ones work.
h = conn("once")
fails(lambda: h.pread(512, 0), errno.EIO, "once")
for _ in range(3):
    assert h.pread(512, 0) == b"\0" * 512
h.shutdown()

# memdiff over a failing lower layer: what the top layer holds reads; a
# read that needs the lower layer fails, whole, with EIO.
h = conn("layered")
h.pwrite(b"\x22" * 512, 512)
assert h.pread(512, 512) == b"\x22" * 512
assert h.pread(512, 0) == b"\0" * 512          # below, outside the range
fails(lambda: h.pread(512, 1024), errno.EIO, "layered lower sector")
fails(lambda: h.pread(4096, 0), errno.EIO, "layered mid-read")
h.shutdown()
PYEOF

kill -0 "$s_pid" || fail "the server died"
grep -q "read at 0+4096 failed: io error: Input/output error" "$tmpdir/s.log" ||
	{ cat "$tmpdir/s.log"; fail "no log line for the injected error"; }
# The flush at shutdown meets the flush rules too, and says so in the
# exit status.
serve_stop s
[ "$serve_status" = 1 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status, want 1"; }
grep -q "export 'eio': flush at shutdown failed" "$tmpdir/s.log" ||
	{ cat "$tmpdir/s.log"; fail "no log line for the failed flush at shutdown"; }
exit 0
