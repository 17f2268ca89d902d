#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-fast-zero.sh: regression test for "mem:/memdiff: cannot zero
# fast". A writable memdiff: export answered can_fast_zero false and
# emulated WRITE_ZEROES with writes that allocate RAM, so nbdcopy of a
# sparse image filled the server's memory (8 GiB of RSS for an 8 GiB
# image). Now the RAM layer keeps zeroed runs (storage/ramlayer.c).
#
# 1. On mem: and on memdiff: over a file with data: can_fast_zero is true;
#    WRITE_ZEROES with NBD_CMD_FLAG_FAST_ZERO succeeds, reads back zero
#    (hiding the base file's data) and base:allocation says ZERO | HOLE;
#    a partial write into the zeroes reads back with zeroes around it;
#    FAST_ZERO with NO_HOLE (which would have to write data) fails with
#    ENOTSUP and changes nothing (the NBD protocol's NBD_CMD_FLAG_FAST_ZERO).
# 2. nbdcopy of a sparse 8 GiB image (a few MiB of data) into mem:8G and
#    into memdiff: over a sparse 8 GiB base with other data: copied out
#    again, each is byte-exact (compared over the data segments of either
#    file; both are holes elsewhere), the base is unchanged, and the
#    server's VmRSS stays under 256 MiB (a memory bound).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires nbdcopy
requires_nbd_python

G=$((1 << 30))
# The source: 8 GiB, holes but for 24 scattered runs of 64-384 KiB.
truncate -s 8G "$tmpdir/src.img"
# The base of the memdiff: export: other data, some of it where the
# source has holes (which the copy must zero over).
truncate -s 8G "$tmpdir/base.img"
"$PY" -I - "$tmpdir/src.img" "$tmpdir/base.img" <<'PYEOF'
import os, random, sys
rng = random.Random(12)
for path, runs in ((sys.argv[1], 24), (sys.argv[2], 12)):
    with open(path, "r+b") as f:
        for i in range(runs):
            off = rng.randrange(0, (8 << 30) - (1 << 20)) // 512 * 512
            f.seek(off)
            f.write(rng.randbytes(rng.choice([64, 100, 256, 384]) * 1024))
    # Data where part 1 zeroes, under the memdiff: export.
    with open(sys.argv[2], "r+b") as f:
        f.seek(1 << 30)
        f.write(rng.randbytes(4 << 20))
PYEOF
cp --sparse=always "$tmpdir/base.img" "$tmpdir/base.orig"

sock=$tmpdir/s.sock
serve srv -U "$sock" --threads 2 mem:8G --export "diff=memdiff:file:$tmpdir/base.img"

# ---- 1. fast zero -----------------------------------------------------------
for exp in "" diff; do
	"$PY" -I - "$(uri_unix "$sock" "$exp")" <<'PYEOF' || fail "fast zero, export '$exp'"
import errno, sys, nbd
G = 1 << 30
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
if not h.can_fast_zero():
    sys.exit("can_fast_zero is false")

def extents(off, length):
    out = []
    def cb(metacontext, offset, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            out.extend(zip(entries[0::2], entries[1::2]))
        return 0
    pos = off
    while pos < off + length:
        out.clear()
        h.block_status(off + length - pos, pos, cb)
        for ln, fl in out:
            yield pos, min(ln, off + length - pos), fl
            pos += ln
            if pos >= off + length:
                break

# Data first (the RAM layer holds it), then 256 MiB of fast zeroes over it
# and over the base file's data at 1 GiB.
h.pwrite(b"\xab" * (1 << 20), G + 12345 * 512)
h.zero(256 << 20, G, flags=nbd.CMD_FLAG_FAST_ZERO)
for off in (G, G + 12345 * 512, G + (3 << 20), G + (255 << 20)):
    if h.pread(1 << 20, off) != bytes(1 << 20):
        sys.exit("zeroed range reads non-zero at %d" % off)
for pos, ln, fl in extents(G, 256 << 20):
    if fl & (nbd.STATE_ZERO | nbd.STATE_HOLE) != nbd.STATE_ZERO | nbd.STATE_HOLE:
        sys.exit("block status at %d+%d: flags %d, want ZERO|HOLE" % (pos, ln, fl))

# A partial write into the zeroes: zeroes around it, the rest stays ZERO.
h.pwrite(b"\x5a" * 1024, G + 40960 + 512)
page = h.pread(8192, G + 40960 - 4096)
if page != bytes(4096 + 512) + b"\x5a" * 1024 + bytes(8192 - 4096 - 512 - 1024):
    sys.exit("partial write into zeroes reads back wrong")
zero_after = [fl for pos, ln, fl in extents(G + (1 << 20), 1 << 20)]
if any(not fl & nbd.STATE_ZERO for fl in zero_after):
    sys.exit("zeroes next to the written page lost ZERO")

# FAST_ZERO | NO_HOLE would have to write data: ENOTSUP, nothing changed.
try:
    h.zero(1 << 20, G, flags=nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
    sys.exit("FAST_ZERO | NO_HOLE succeeded")
except nbd.Error as e:
    if e.errnum != errno.ENOTSUP:
        sys.exit("FAST_ZERO | NO_HOLE failed with %s, want ENOTSUP" % e)
if h.pread(1024, G + 40960 + 512) != b"\x5a" * 1024:
    sys.exit("a refused fast zero changed the data")
# NO_HOLE alone stores real zeroes: allocated, no longer a hole.
h.zero(1 << 20, G, flags=nbd.CMD_FLAG_NO_HOLE)
for pos, ln, fl in extents(G, 1 << 20):
    if fl & nbd.STATE_HOLE:
        sys.exit("NO_HOLE zeroes reported as a hole at %d" % pos)
h.shutdown()
PYEOF
done

# ---- 2. nbdcopy of a sparse image -------------------------------------------
nbdcopy "$tmpdir/src.img" "$(uri_unix "$sock")" || fail "nbdcopy into mem:"
nbdcopy "$tmpdir/src.img" "$(uri_unix "$sock" diff)" || fail "nbdcopy into memdiff:"
rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$srv_pid/status")
echo "$0: server VmRSS after copying 8 GiB sparse twice: $rss_kib KiB" >&2
[ "$rss_kib" -lt $((256 * 1024)) ] ||
	fail "server VmRSS $rss_kib KiB after nbdcopy of a sparse 8 GiB image (limit 256 MiB)"

# Compares two sparse files of equal size byte for byte, reading only the
# union of their data segments (SEEK_DATA/SEEK_HOLE): outside it both are
# holes, which read zero. (cmp would read 8 GiB of holes.)
cat > "$tmpdir/sparse-cmp.py" <<'PYEOF'
import os, sys

def data_segments(path):
    fd = os.open(path, os.O_RDONLY)
    size, off, out = os.fstat(fd).st_size, 0, []
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        e = os.lseek(fd, d, os.SEEK_HOLE)
        out.append((d, e))
        off = e
    os.close(fd)
    return size, out

sa, a = data_segments(sys.argv[1])
sb, b = data_segments(sys.argv[2])
if sa != sb:
    sys.exit("%s: size %d, %s: size %d" % (sys.argv[1], sa, sys.argv[2], sb))
checked = 0
with open(sys.argv[1], "rb") as fa, open(sys.argv[2], "rb") as fb:
    for s, e in sorted(a + b):
        fa.seek(s)
        fb.seek(s)
        if fa.read(e - s) != fb.read(e - s):
            sys.exit("%s and %s differ in [%d, %d)" % (sys.argv[1], sys.argv[2], s, e))
        checked += e - s
if checked == 0:
    sys.exit("no data segments: the files cannot be told apart from empty ones")
PYEOF

for exp in "" diff; do
	out=$tmpdir/out-${exp:-mem}.img
	truncate -s 8G "$out"
	nbdcopy "$(uri_unix "$sock" "$exp")" "$out" || fail "nbdcopy out of export '$exp'"
	"$PY" -I "$tmpdir/sparse-cmp.py" "$tmpdir/src.img" "$out" ||
		fail "export '$exp' differs from the source"
done

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
"$PY" -I "$tmpdir/sparse-cmp.py" "$tmpdir/base.img" "$tmpdir/base.orig" ||
	fail "the memdiff: base file changed"
echo "$0: OK"
