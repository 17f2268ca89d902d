#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-fio.sh: fio's nbd engine writes and verifies (crc32c) through
# `diskstack serve`, with one job and with four jobs (four connections to
# a multi-conn export), on mem: and on a file: export; then several
# concurrent clients write disjoint regions of one export at once, and
# every region is verified afterwards.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires fio nbdcopy cmp dd
requires_nbd_python

sock=$tmpdir/s.sock
serve srv -U "$sock" --threads 2 mem:64M --export "file=file:$tmpdir/disk.img;create=64M"

for exp in "" file; do
	for jobs in 1 4; do
		# Each job owns a 16 MiB slice (offset_increment), as multi-conn
		# clients of one export do.
		fio --name="verify-$jobs" --ioengine=nbd --uri="$(uri_unix "$sock" "$exp")" \
			--rw=randwrite --bs=4k --iodepth=16 --numjobs="$jobs" --size=8M \
			--offset_increment=16M --verify=crc32c --do_verify=1 \
			--verify_fatal=1 --verify_state_save=0 --group_reporting \
			--output="$tmpdir/fio.out" ||
			{ cat "$tmpdir/fio.out"; fail "fio verify, export '$exp', $jobs jobs"; }
		grep -q 'err= 0' "$tmpdir/fio.out" || { cat "$tmpdir/fio.out"; fail "fio reported errors"; }
	done
	# Mixed sizes and reads while writing.
	fio --name=mixed --ioengine=nbd --uri="$(uri_unix "$sock" "$exp")" --rw=randrw \
		--bsrange=4k-256k --bs_unaligned=0 --iodepth=32 --size=16M --verify=crc32c \
		--verify_fatal=1 --verify_state_save=0 --output="$tmpdir/fio.out" ||
		{ cat "$tmpdir/fio.out"; fail "fio mixed, export '$exp'"; }
done

# Concurrent clients on disjoint 8 MiB regions of the file export, all at
# once, then each region read back and compared.
pids=""
for i in 0 1 2 3 4 5; do
	dd if=/dev/urandom of="$tmpdir/part$i" bs=1M count=8 2>/dev/null
	"$PY" -I - "$(uri_unix "$sock" file)" "$tmpdir/part$i" $((i * 8)) <<'PYEOF' &
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
data = open(sys.argv[2], "rb").read()
base = int(sys.argv[3]) << 20
# Many small writes in flight on each connection.
step = 65536
for off in range(0, len(data), step):
    h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data[off:off + step])), base + off)
    while h.aio_in_flight() >= 32:
        h.poll(-1)
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
h.shutdown()
PYEOF
	pids="$pids $!"
done
for p in $pids; do
	wait "$p" || fail "a concurrent writer failed"
done
nbdcopy "$(uri_unix "$sock" file)" "$tmpdir/all.img"
for i in 0 1 2 3 4 5; do
	dd if="$tmpdir/all.img" of="$tmpdir/got$i" bs=1M skip=$((i * 8)) count=8 2>/dev/null
	cmp "$tmpdir/part$i" "$tmpdir/got$i" || fail "region $i differs"
done

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
# The file holds what was acknowledged, after a clean stop.
dd if="$tmpdir/disk.img" of="$tmpdir/got0" bs=1M count=8 2>/dev/null
cmp "$tmpdir/part0" "$tmpdir/got0" || fail "the file lost region 0 after shutdown"
echo "$0: OK"
