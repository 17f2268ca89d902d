#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-valgrind.sh: one run of `diskstack serve` under valgrind
# (memcheck, definite leaks are errors) while the protocol checks, the
# hostile client and a well-behaved client run against it, over plaintext
# and TLS; the server must stop on SIGTERM with zero valgrind errors.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires valgrind nbdcopy cmp dd
requires_nbd_python
if [ -n "${DISKSTACK_SANITIZED:-}" ]; then
	echo "$0: skipped: valgrind cannot run a sanitizer (ASan) build"
	exit 77
fi

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
sock=$tmpdir/s.sock
psk=$tmpdir/keys.psk
printf 'alice:%s\n' 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff > "$psk"
# nbd-protocol.py's crypt export (no fast zero).
head -c 64 /dev/urandom > "$tmpdir/key"

rm -f "$tmpdir/ready"
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --track-origins=yes --quiet \
	--suppressions="$srcdir/tests/valgrind.supp" --log-file="$tmpdir/valgrind.log" \
	"$DISKSTACK" serve -P "$tmpdir/ready" -U "$sock" --threads 2 --tls=on --tls-psk "$psk" \
	mem:16M --export other=mem:16M --export ro=mem:1M,ro -D "read only" --export diff=memdiff:mem:16M \
	--export "file=file:$tmpdir/f.img;create=8M" \
	--export "crypt=crypt:xts-aes-256:$tmpdir/key:mem:16M" > "$tmpdir/srv.log" 2>&1 &
vpid=$!
echo "$vpid" > "$tmpdir/vg.pid"
cleanup_fn "stop_bg '$tmpdir/vg.pid'"
i=0
while [ ! -s "$tmpdir/ready" ]; do
	kill -0 "$vpid" 2>/dev/null || { cat "$tmpdir/srv.log" "$tmpdir/valgrind.log"; fail "server died"; }
	i=$((i + 1))
	[ $i -lt 600 ] || fail "server under valgrind did not start in 60 s"
	sleep 0.1
done

"$PY" -I "$(dirname "$0")/nbd-steady.py" "$(uri_unix "$sock" other)" "$tmpdir/stop" \
	> "$tmpdir/steady.out" 2>&1 &
steady=$!
"$PY" -I "$(dirname "$0")/nbd-protocol.py" "$sock" > "$tmpdir/protocol.out" 2>&1 ||
	{ cat "$tmpdir/protocol.out"; touch "$tmpdir/stop"; fail "nbd-protocol.py under valgrind"; }
"$PY" -I "$(dirname "$0")/nbd-robust.py" "$sock" > "$tmpdir/robust.out" 2>&1 ||
	{ cat "$tmpdir/robust.out"; touch "$tmpdir/stop"; fail "nbd-robust.py under valgrind"; }
dd if=/dev/urandom of="$tmpdir/src.img" bs=1M count=8 2>/dev/null
u="nbds+unix://alice@/file?socket=$sock&tls-psk-file=$psk"
nbdcopy "$tmpdir/src.img" "$u" || fail "nbdcopy over TLS under valgrind"
nbdcopy "$u" "$tmpdir/back.img" || fail "nbdcopy back over TLS under valgrind"
cmp "$tmpdir/src.img" "$tmpdir/back.img" || fail "TLS round trip under valgrind"
# Plaintext, many large reads in flight (the per-pass read budget).
nbdcopy "$(uri_unix "$sock" file)" "$tmpdir/back2.img" || fail "nbdcopy back under valgrind"
cmp "$tmpdir/src.img" "$tmpdir/back2.img" || fail "plaintext read-back under valgrind"
touch "$tmpdir/stop"
wait "$steady" || { cat "$tmpdir/steady.out"; fail "the well-behaved client failed"; }

kill -TERM "$vpid"
status=0
wait "$vpid" || status=$?
rm -f "$tmpdir/vg.pid"
if [ "$status" != 0 ] || [ -s "$tmpdir/valgrind.log" ]; then
	cat "$tmpdir/valgrind.log" "$tmpdir/srv.log"
	fail "valgrind: exit status $status"
fi
tail -n 1 "$tmpdir/robust.out" "$tmpdir/protocol.out" "$tmpdir/steady.out"
echo "$0: OK"
