#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-protocol.sh: every option, command and flag of `diskstack serve`
# asserted through libnbd's Python binding (nbd-protocol.py): handshake
# variants, LIST/INFO/META_CONTEXT/ABORT, simple and structured replies,
# hole and data chunks, DF, REQ_ONE, FUA, NO_HOLE, FAST_ZERO, and the
# errors the server must return itself (strict mode off).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_nbd_python

sock=$tmpdir/s.sock
head -c 64 /dev/urandom > "$tmpdir/key"
serve srv -U "$sock" mem:16M --export ro=mem:1M,ro -D "read only" --export diff=memdiff:mem:16M \
	--export "file=file:$tmpdir/f.img;create=8M" \
	--export "crypt=crypt:xts-aes-256:$tmpdir/key:mem:16M"
nbd_py "$(dirname "$0")/nbd-protocol.py" "$sock" || fail "nbd-protocol.py failed"
serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
echo "$0: OK"
