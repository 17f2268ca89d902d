#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-qemu.sh: qemu's NBD client against `diskstack serve` on several
# specs: qemu-io write -P / read -P / discard / write -z with aio, and
# qemu-img convert, compare and map (block status) over TCP and Unix.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires qemu-img qemu-io cmp truncate dd sha256sum

sock=$tmpdir/s.sock
base=$tmpdir/base.img
random_image "$base" 16M 1M 2@0 1@8
base_sum=$(sha256sum "$base" | cut -d' ' -f1)
port=$(free_port)

serve srv -U "$sock" -p "$port" mem:16M \
	--export overlay="memdiff:file:$base" \
	--export "raw=file:$tmpdir/raw.img;create=16M"

qio()
{
	# qemu-io with an NBD URI; fails on any I/O error or pattern mismatch.
	_u=$1
	shift
	qemu-io -f raw "$_u" "$@" > "$tmpdir/qio.out" 2>&1 || { cat "$tmpdir/qio.out"; fail "qemu-io $*"; }
	if grep -Eq 'Pattern verification failed|error|failed' "$tmpdir/qio.out"; then
		cat "$tmpdir/qio.out"
		fail "qemu-io $*"
	fi
}

for exp in "" overlay raw; do
	u=$(uri_unix "$sock" "$exp")
	qio "$u" -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' \
		-c 'write -P 0x5a 4M 1M' -c 'aio_write -P 0x11 6M 512k' -c 'aio_write -P 0x22 7M 512k' \
		-c 'aio_flush' -c 'read -P 0x11 6M 512k' -c 'read -P 0x22 7M 512k' \
		-c 'write -z 4M 256k' -c 'read -P 0 4M 256k' -c 'read -P 0x5a 4352k 768k' \
		-c 'discard 6M 512k' -c 'write -z -u 7M 64k' -c 'read -P 0 7M 64k' \
		-c 'write -f -P 0x33 15M 1M' -c 'read -P 0x33 15M 1M'
done
# TCP too.
qio "nbd://127.0.0.1:$port/" -c 'read -P 0xab 0 64k' -c 'write -P 0x77 1M 4k' -c 'read -P 0x77 1M 4k'

# convert + compare: the base image through the overlay and back.
qemu-img convert -f raw -O raw "$base" "$(uri_unix "$sock" raw)" ||
	fail "qemu-img convert into the raw export"
qemu-img compare -f raw -F raw "$base" "$(uri_unix "$sock" raw)" > /dev/null ||
	fail "qemu-img compare after convert"
qemu-img convert -f raw -O raw "$(uri_unix "$sock" raw)" "$tmpdir/back.img"
cmp "$base" "$tmpdir/back.img" || fail "convert round trip differs"

# map: the base's data extents, seen through block status.
qemu-img map --output=json -f raw "$(uri_unix "$sock" raw)" > "$tmpdir/map.json"
grep -q '"start": 0, "length": 2097152, .*"data": true' "$tmpdir/map.json" ||
	{ cat "$tmpdir/map.json"; fail "map: no data at 0-2M"; }
grep -q '"start": 8388608, "length": 1048576, .*"data": true' "$tmpdir/map.json" ||
	{ cat "$tmpdir/map.json"; fail "map: no data at 8M-9M"; }
grep -q '"start": 2097152, .*"zero": true, "data": false' "$tmpdir/map.json" ||
	{ cat "$tmpdir/map.json"; fail "map: no hole at 2M"; }
# An untouched mem export maps as one hole; an overlay shows the RAM data
# written above (present) over the base.
qemu-img map --output=json -f raw "$(uri_unix "$sock" overlay)" > "$tmpdir/omap.json"
grep -q '"data": true' "$tmpdir/omap.json" || fail "overlay map has no data"

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
[ "$base_sum" = "$(sha256sum "$base" | cut -d' ' -f1)" ] || fail "the base image changed"
echo "$0: OK"
