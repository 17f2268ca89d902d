#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-readpass.sh: large READs pipelined on one connection are
# dispatched a bounded amount per loop pass (NBDSRV_PASS_READ_BYTES, see
# nbd/transmit.c): the split path is taken (the server's close log counts
# it) and every reply still carries the right data, with small reads,
# writes and a flush mixed in, on mem: and on a file: export, and with
# fio's 1 MiB sequential verify at QD8 (the benchmark's pattern).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires fio
requires_nbd_python

sock=$tmpdir/s.sock
serve srv -v -U "$sock" --threads 1 mem:64M --export "file=file:$tmpdir/disk.img;create=64M"

for exp in "" file; do
	"$PY" -I - "$(uri_unix "$sock" "$exp")" <<'PYEOF' || fail "pipelined reads, export '$exp'"
import os, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
M = 1 << 20
data = bytearray(os.urandom(32 * M))
for off in range(0, len(data), M):
    h.aio_pwrite(nbd.Buffer.from_bytearray(data[off:off + M]), off)
while h.aio_in_flight():
    h.poll(-1)
for rnd in range(4):
    # 1 MiB and 3 MiB reads, 4 KiB reads and a write all in flight at
    # once: the server parses them from one receive buffer.
    reqs = []
    for i in range(12):
        off = ((i * 5 + rnd) % 28) * M
        ln = 3 * M if i % 4 == 3 else M
        buf = nbd.Buffer(ln)
        reqs.append((h.aio_pread(buf, off), buf, off, ln))
        small = nbd.Buffer(4096)
        soff = off + 8192
        reqs.append((h.aio_pread(small, soff), small, soff, 4096))
    woff = 30 * M + rnd * 4096
    new = bytearray(os.urandom(4096))
    data[woff:woff + 4096] = new
    h.aio_pwrite(nbd.Buffer.from_bytearray(new), woff)
    h.aio_flush()
    while h.aio_in_flight():
        h.poll(-1)
    for cookie, buf, off, ln in reqs:
        if buf.to_bytearray() != data[off:off + ln]:
            print("mismatch at %d+%d" % (off, ln), file=sys.stderr)
            sys.exit(1)
    if h.pread(4096, woff) != new:
        print("write lost at %d" % woff, file=sys.stderr)
        sys.exit(1)
h.shutdown()
PYEOF
	fio --name=seq1m --ioengine=nbd --uri="$(uri_unix "$sock" "$exp")" --rw=write --bs=1M \
		--iodepth=8 --size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--verify_state_save=0 --output="$tmpdir/fio.out" ||
		{ cat "$tmpdir/fio.out"; fail "fio 1M verify, export '$exp'"; }
	grep -q 'err= 0' "$tmpdir/fio.out" || { cat "$tmpdir/fio.out"; fail "fio reported errors"; }
done

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
# Every client above sent pipelined 1 MiB reads: at least one pass split.
grep -o "closed after.*" "$tmpdir/srv.log" >&2
grep 'read passes split' "$tmpdir/srv.log" | grep -qv '(0 read passes split,' ||
	{ cat "$tmpdir/srv.log"; fail "no read pass was split"; }
echo "$0: OK"
