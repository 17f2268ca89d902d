#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-client.sh: nbd: disks over nbdkit's memory plugin — copy in and
# out byte for byte, memdiff: over an export keeps the export untouched,
# and a read-only export refuses a writable open.
. "$(dirname "$0")/functions.sh"
requires nbdkit cmp dd
requires_kind nbd

# Waits until nbdkit has written its -P file: it does once it listens.
wait_ready()
{
	_i=0
	while [ ! -s "$1" ] && [ $_i -lt 200 ]; do sleep 0.05; _i=$((_i + 1)); done
	[ -s "$1" ] || fail "nbdkit did not start"
}

sock=$tmpdir/nbd.sock
start_bg "$tmpdir/nbdkit.pid" nbdkit -f -U "$sock" -P "$tmpdir/ready1" memory 16M
wait_ready "$tmpdir/ready1"
uri="nbd+unix:///?socket=$sock"

src=$tmpdir/src.img
truncate -s 16M "$src"
dd if=/dev/urandom of="$src" bs=1M count=5 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$src" bs=1M count=3 seek=10 conv=notrunc 2>/dev/null

# 1. Copy in, copy out.
expect_exit 0 "$DISKSTACK" copy -q "$src" "nbd:$uri"
expect_exit 0 "$DISKSTACK" copy -q "nbd:$uri" "file:$tmpdir/out.img;create=16M"
cmp "$src" "$tmpdir/out.img" || fail "nbd round trip differs"

# 2. memdiff over the export: reads see it, writes stay in RAM.
expect_exit 0 "$DISKSTACK" copy -q "memdiff:nbd:$uri" "file:$tmpdir/out2.img;create=16M"
cmp "$src" "$tmpdir/out2.img" || fail "memdiff:nbd copy differs"
expect_exit 0 "$DISKSTACK" bench "memdiff:nbd:$uri" --rw randwrite --time 1s -q
expect_exit 0 "$DISKSTACK" copy -q "nbd:$uri" "file:$tmpdir/out3.img;create=16M"
cmp "$src" "$tmpdir/out3.img" || fail "memdiff: writes reached the export"

# 3. info shows what the server offers.
expect_exit 0 "$DISKSTACK" info "nbd:$uri"
grep -q "type: *nbd" "$tmpdir/stdout" || fail "info: wrong type"
grep -q "server offers:.*multi-conn" "$tmpdir/stdout" || fail "info: no multi-conn"

# 4. A read-only export: writable opens are refused.
sock2=$tmpdir/ro.sock
start_bg "$tmpdir/nbdkit2.pid" nbdkit -f -r -U "$sock2" -P "$tmpdir/ready2" memory 1M
wait_ready "$tmpdir/ready2"
expect_exit 1 "$DISKSTACK" copy mem:1M "nbd:nbd+unix:///?socket=$sock2"
expect_stderr "read-only"
expect_exit 0 "$DISKSTACK" copy -q "nbd:nbd+unix:///?socket=$sock2" "file:$tmpdir/ro.img;create=1M"

# 5. No server: a clear error.
expect_exit 1 "$DISKSTACK" info "nbd:nbd+unix:///?socket=$tmpdir/none.sock"
expect_stderr "nbd:"

echo "$0: OK"
