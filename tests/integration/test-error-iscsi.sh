#!/bin/sh
# SPDX-License-Identifier: MIT
# test-error-iscsi.sh: error: (fault injection) through the SCSI core and
# the iSCSI target, seen by QEMU's iscsi driver (libiscsi), which prints
# the sense key and ASC/ASCQ of a CHECK CONDITION: a medium error on a
# read is 3/11h-00h (UNRECOVERED READ ERROR), on a write 3/0Ch-00h (WRITE
# ERROR), an I/O error the same, a read-only refusal 7/27h-00h (WRITE
# PROTECTED), out of space 7/27h-07h, a failed SYNCHRONIZE CACHE
# 3/0Ch-00h. Reads and writes outside the rules' ranges keep working, a
# new session works, and the server stays up.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires qemu-io

T=iqn.2026-12.org.diskstack:faults
port=$(free_port)
serve s --iscsi "$port" --target $T --lun 0='error:read:medium;range=8-15/write:medium;range=100/write:readonly;range=200/read:eio;range=300/write:eio;range=400/write:enospc;range=500/flush:eio;once:mem:1M'
U="iscsi://127.0.0.1:$port/$T/0"

# Each command on its own line of output; qemu-io goes on after a failure.
timeout 60 qemu-io -f raw "$U" \
	-c 'write -P 0x33 0 4k' -c 'read -P 0x33 0 4k' -c 'read 4k 4k' \
	-c 'write 51200 512' -c 'write 102400 512' -c 'read 153600 512' \
	-c 'write 204800 512' -c 'write 256000 512' -c 'flush' \
	-c 'write -P 0x44 8k 4k' -c 'read -P 0x44 8k 4k' > "$tmpdir/io" 2>&1 || true

expect_sense()
{
	# $1: the command as QEMU names it, $2: sense key, $3: ASC/ASCQ
	grep -q "iSCSI $1.*SENSE KEY:.*($2) ASCQ:.*($3)" "$tmpdir/io" ||
		{ cat "$tmpdir/io"; fail "no $1 failure with sense $2/$3"; }
}
expect_sense 'READ10/16 failed at lba 8' 3 0x1100
expect_sense 'WRITE10/16 failed at lba 100' 3 0x0c00
expect_sense 'READ10/16 failed at lba 300' 3 0x1100
expect_sense 'WRITE10/16 failed at lba 400' 3 0x0c00
expect_sense 'WRITE10/16 failed at lba 200' 7 0x2700
expect_sense 'WRITE10/16 failed at lba 500' 7 0x2707
expect_sense 'SYNCHRONIZECACHE10 failed' 3 0x0c00
[ "$(grep -c 'read failed: Input/output error' "$tmpdir/io")" = 2 ] ||
	{ cat "$tmpdir/io"; fail "two reads should fail with EIO"; }
grep -q 'write failed: Permission denied' "$tmpdir/io" || { cat "$tmpdir/io"; fail "write protect"; }
grep -q 'write failed: No space left on device' "$tmpdir/io" || { cat "$tmpdir/io"; fail "out of space"; }
# The commands outside the ranges worked, before and after the failures.
if grep -q 'Pattern verification failed' "$tmpdir/io"; then cat "$tmpdir/io"; fail "data"; fi
[ "$(grep -c '^read 4096/4096 bytes' "$tmpdir/io")" = 2 ] ||
	{ cat "$tmpdir/io"; fail "the reads outside the ranges did not both work"; }

# A new session, and the flush rule was spent (once).
timeout 60 qemu-io -f raw "$U" -c 'read -P 0x44 8k 4k' -c 'flush' > "$tmpdir/io2" 2>&1 ||
	{ cat "$tmpdir/io2"; fail "a new session failed"; }
if grep -q 'failed' "$tmpdir/io2"; then cat "$tmpdir/io2"; fail "new session"; fi

kill -0 "$s_pid" || fail "the server died"
serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
exit 0
