#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-cache-bounded.sh: regression test for unbounded CACHE and
# BLOCK_STATUS requests. A 28-byte CACHE used to make the server read its
# whole length (up to 4 GiB) through the stack - HTTP range GETs on a
# blob: disk - and CACHE and BLOCK_STATUS counted nothing against the
# connection's in-flight budget. Now: a CACHE over the maximum block size
# gets EOVERFLOW and reads nothing, one up to it reads only its range,
# pipelined CACHEs wait for the budget (the server's close log counts the
# waits), and a BLOCK_STATUS describes at most 1 GiB (the client asks
# again for the rest).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_kind blob
requires_nbd_python
srcdir=${abs_top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}

sock=$tmpdir/s.sock
serve srv -v -U "$sock" --threads 1 mem:8G

# Limits seen through libnbd.
/usr/bin/python3 -I - "$sock" <<'PYEOF' || fail "CACHE and BLOCK_STATUS limits"
import errno, sys, nbd
M, G = 1 << 20, 1 << 30
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
h.set_strict_mode(0)          # the server must do the refusing


def fails(fn, err, what):
    try:
        fn()
    except nbd.Error as e:
        if e.errnum != err:
            sys.exit("%s: errno %r, expected %d" % (what, e.errnum, err))
        return
    sys.exit("%s: succeeded, expected errno %d" % (what, err))


assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * M
h.cache(32 * M, 0)
fails(lambda: h.cache(32 * M + 512, 0), errno.EOVERFLOW, "CACHE one sector over")
fails(lambda: h.cache(4 * G - 512, 0), errno.EOVERFLOW, "CACHE of 4 GiB")
fails(lambda: h.cache(512, 8 * G), errno.EINVAL, "CACHE past the end")

# An empty 8 GiB export: one request describes at most 1 GiB; walking
# from where each reply stopped covers the whole range asked for.
covered = []


def cb(meta, off, entries, err):
    covered.append(sum(entries[0::2]))


h.block_status(4 * G - 512, 0, cb)
assert 0 < covered[0] <= G, covered
pos, end = 0, 4 * G - 512
while pos < end:
    covered.clear()
    h.block_status(min(end - pos, 4 * G - 512), pos, cb)
    assert covered and covered[0] > 0, covered
    pos += covered[0]
h.shutdown()
PYEOF

# Pipelined CACHEs in one receive: only the in-flight budget (64 MiB) is
# dispatched at once; the rest waits for replies. Every one is answered.
/usr/bin/python3 -I - "$sock" <<'PYEOF' || fail "pipelined CACHEs"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(sys.argv[1])


def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("server closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


IHAVEOPT = 0x49484156454F5054
rd(18)
s.sendall(struct.pack(">I", 3))                        # FIXED_NEWSTYLE | NO_ZEROES
s.sendall(struct.pack(">QII", IHAVEOPT, 7, 6) + struct.pack(">IH", 0, 0))   # GO ""
while True:
    _, _, rtype, n = struct.unpack(">QIII", rd(20))
    rd(n)
    if rtype == 1:                                      # ACK
        break
    assert rtype == 3, rtype                            # INFO
N, M = 16, 1 << 20
s.sendall(b"".join(struct.pack(">IHHQQI", 0x25609513, 0, 5, i, i * 32 * M, 32 * M)
                   for i in range(N)))
got = set()
for _ in range(N):
    magic, err, cookie = struct.unpack(">IIQ", rd(16))
    assert magic == 0x67446698 and err == 0, (hex(magic), err)
    got.add(cookie)
assert got == set(range(N)), got
s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 0, 0, 0))   # DISC
s.close()
PYEOF

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
grep -q 'closed after 17 requests (.* [1-9][0-9]* waits for the in-flight budget' \
	"$tmpdir/srv.log" || { cat "$tmpdir/srv.log"; fail "the CACHEs did not wait for the budget"; }

# Through a blob: disk on nginx, what the server fetches is what was asked:
# nothing for a refused CACHE, the range for one within the limit.
if nginx=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null); [ -n "$nginx" ]; then
	mkdir -p "$tmpdir/www"
	truncate -s 1G "$tmpdir/www/big.img"
	port=$(NGINX_PARENT_PID=$$ sh "$srcdir/tests/http/nginx-start.sh" "$tmpdir/nginx" \
		"$tmpdir/www" 1) || fail "nginx did not start"
	cleanup_fn 'kill "$(cat "$tmpdir/nginx/nginx.pid")" 2>/dev/null'
	serve blob -U "$tmpdir/b.sock" "memdiff:blob:flat:http://127.0.0.1:$port/big.img"
	fetched() { awk '$6 == "\"GET" { b += $10 } END { print b + 0 }' "$tmpdir/nginx/access.log"; }
	before=$(fetched)
	/usr/bin/python3 -I - "$tmpdir/b.sock" <<'PYEOF' || fail "CACHE through blob:"
import errno, sys, nbd
h = nbd.NBD()
h.connect_uri("nbd+unix:///?socket=" + sys.argv[1])
h.set_strict_mode(0)
try:
    h.cache(1 << 30, 0)
    sys.exit("CACHE of 1 GiB succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EOVERFLOW, e
h.cache(32 << 20, 64 << 20)
h.shutdown()
PYEOF
	serve_stop blob
	[ "$serve_status" = 0 ] || { cat "$tmpdir/blob.log"; fail "blob server exit status"; }
	after=$(fetched)
	[ $((after - before)) -eq $((32 << 20)) ] ||
		fail "CACHEs fetched $((after - before)) bytes over HTTP, expected 32 MiB"
else
	skip "nginx not found (the blob: part)"
fi
echo "$0: OK"
