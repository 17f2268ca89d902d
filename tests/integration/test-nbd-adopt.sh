#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-adopt.sh: large WRITE payloads received into blocks the disk may
# keep (DISK_IO_ADOPT, see nbd/transmit.c and storage/disk.h). Pipelined
# writes of 64 KiB - 3 MiB at page-aligned and unaligned offsets, with
# overwrites (the disk hands old pages back, the server reuses them) and
# small writes mixed in, must read back exactly, on mem:, on memdiff: over
# a file with data, and on exports that cannot adopt (file:, crypt:); the
# server's close log proves which connections adopted blocks. The base
# file of the memdiff: export is unchanged afterwards.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires fio
requires_nbd_python

head -c 64 /dev/urandom > "$tmpdir/key"
head -c $((32 << 20)) /dev/urandom > "$tmpdir/base.img"
cp "$tmpdir/base.img" "$tmpdir/base.orig"
sock=$tmpdir/s.sock
serve srv -v -U "$sock" --threads 1 mem:32M \
	--export "diff=memdiff:file:$tmpdir/base.img" \
	--export "file=file:$tmpdir/disk.img;create=32M" \
	--export "crypt=crypt:xts-aes-256:$tmpdir/key:mem:32M"

for exp in "" diff file crypt; do
	lines_before=$(wc -l < "$tmpdir/srv.log")
	"$PY" -I - "$(uri_unix "$sock" "$exp")" <<'PYEOF' || fail "adopted writes, export '$exp'"
import random, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
size = h.get_size()
rng = random.Random(7)
K = 1024
def readall():
    return b"".join(h.pread(4096 * K, o) for o in range(0, size, 4096 * K))
# What the export holds: read it first (memdiff: shows its base file).
data = bytearray(readall())
for rnd in range(6):
    # Non-overlapping writes in flight together: sorted random cuts.
    taken = []
    for i in range(10):
        ln = rng.choice([64 * K, 68 * K, 256 * K, 1024 * K, 3 * 1024 * K + 512, 4 * K, 512])
        align = rng.choice([512, 4096, 65536])
        off = rng.randrange(0, size - ln) // align * align
        if any(off < e and o < off + ln for o, e in taken):
            continue
        taken.append((off, off + ln))
        buf = bytearray(rng.randbytes(ln))
        data[off:off + ln] = buf
        h.aio_pwrite(nbd.Buffer.from_bytearray(buf), off,
                     flags=nbd.CMD_FLAG_FUA if i % 3 == 0 else 0)
    while h.aio_in_flight():
        h.poll(-1)
    back = readall()
    if back != data:
        bad = next(i for i in range(size) if back[i] != data[i])
        print("round %d: mismatch at byte %d" % (rnd, bad), file=sys.stderr)
        sys.exit(1)
h.shutdown()
PYEOF
	fio --name=seq1m --ioengine=nbd --uri="$(uri_unix "$sock" "$exp")" --rw=randwrite --bs=1M \
		--offset=1536 --size=24M --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--verify_state_save=0 \
		--output="$tmpdir/fio.out" ||
		{ cat "$tmpdir/fio.out"; fail "fio 1M verify, export '$exp'"; }
	grep -q 'err= 0' "$tmpdir/fio.out" || { cat "$tmpdir/fio.out"; fail "fio reported errors"; }
	# This export's three connections (the Python client, fio's size probe
	# and fio's data connection) have closed, or are closing: wait for all
	# three log lines, so none spills into the next export's window.
	for _ in $(seq 100); do
		[ "$(tail -n +"$((lines_before + 1))" "$tmpdir/srv.log" | grep -c 'closed after')" -ge 3 ] && break
		sleep 0.1
	done
	tail -n +"$((lines_before + 1))" "$tmpdir/srv.log" | grep -o 'closed after.*' > "$tmpdir/closed"
	cat "$tmpdir/closed" >&2
	[ "$(wc -l < "$tmpdir/closed")" -eq 3 ] || fail "export '$exp': not three close lines"
	case $exp in
	""|diff)
		# The Python client and fio's data connection (fio also opens
		# one that only asks the size).
		[ "$(grep -vc ', 0 write blocks adopted' "$tmpdir/closed")" -ge 2 ] ||
			fail "export '$exp': a writing connection adopted nothing" ;;
	*)
		grep -v ', 0 write blocks adopted' "$tmpdir/closed" | grep -q . &&
			fail "export '$exp' cannot adopt, yet blocks were adopted" ;;
	esac
done

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
cmp "$tmpdir/base.img" "$tmpdir/base.orig" || fail "the memdiff: base file changed"
echo "$0: OK"
