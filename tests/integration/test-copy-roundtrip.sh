#!/bin/sh
# SPDX-License-Identifier: MIT
# test-copy-roundtrip.sh: `diskstack copy` is byte-exact, keeps holes,
# never modifies the source, and refuses a destination that is too small.
. "$(dirname "$0")/functions.sh"
requires cmp sha256sum stat truncate dd

src=$tmpdir/src.img
# 8 MiB: data at 0-1M, a hole at 1M-3M, data at 3M-3.5M, a hole to 6M,
# 64K of data at 6M, a hole to the end (8M).
truncate -s 8M "$src"
dd if=/dev/urandom of="$src" bs=64K count=16 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$src" bs=64K count=8 seek=48 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$src" bs=64K count=1 seek=96 conv=notrunc 2>/dev/null
# Some zeroes written as data (allocated in the source, zero in content).
dd if=/dev/zero of="$src" bs=64K count=4 seek=100 conv=notrunc 2>/dev/null
sum_before=$(sha256sum "$src" | cut -d' ' -f1)

blocks()
{
	stat -c %b "$1"
}

# Is the filesystem able to hold sparse files at all?
sparse_fs=yes
[ "$(blocks "$src")" -lt 8192 ] || sparse_fs=no

# 1. file -> new file (created by the spec).
dst=$tmpdir/dst.img
expect_exit 0 "$DISKSTACK" copy "file:$src" "file:$dst;create=8M"
cmp "$src" "$dst" || fail "copy 1: contents differ"
grep -q 'copied 8388608 bytes' "$tmpdir/stdout" || fail "copy 1: no summary"
if [ $sparse_fs = yes ]; then
	# The source holds about 1.6 MiB of data (3200 blocks of 512 bytes);
	# the copy must not be much larger.
	b=$(blocks "$dst")
	[ "$b" -le $(( $(blocks "$src") + 1024 )) ] ||
		fail "copy 1: destination not sparse ($b blocks, source $(blocks "$src"))"
	[ "$b" -lt 8192 ] || fail "copy 1: destination fully allocated ($b blocks)"
fi

# 2. Through memdiff stacks, with a small block size and queue depth, into
# a larger destination whose tail must be left alone.
dst2=$tmpdir/dst2.img
expect_exit 0 "$DISKSTACK" copy --quiet --block-size 64K --queue-depth 3 \
	"memdiff:file:$src" "file:$dst2;create=9M"
[ ! -s "$tmpdir/stdout" ] || fail "copy 2: --quiet printed something"
[ "$(stat -c %s "$dst2")" = 9437184 ] || fail "copy 2: destination size changed"
cmp -n 8388608 "$src" "$dst2" || fail "copy 2: contents differ"
if [ $sparse_fs = yes ]; then
	b=$(blocks "$dst2")
	[ "$b" -lt 8192 ] || fail "copy 2: destination fully allocated ($b blocks)"
fi

# 3. Copy over existing data: zero ranges of the source must be written as
# zeroes on a destination that holds data there.
dst3=$tmpdir/dst3.img
dd if=/dev/urandom of="$dst3" bs=1M count=8 2>/dev/null
expect_exit 0 "$DISKSTACK" copy "$src" "$dst3"
cmp "$src" "$dst3" || fail "copy 3: contents differ over existing data"

# 4. A bare path destination that exists is used as is; memdiff source
# with a one-request queue.
expect_exit 0 "$DISKSTACK" copy --queue-depth 1 --block-size 4K "memdiff:$src" "$dst3"
cmp "$src" "$dst3" || fail "copy 4: contents differ"

# 5. RAM to file and back: a mem: disk reads as zeroes.
dst5=$tmpdir/dst5.img
expect_exit 0 "$DISKSTACK" copy mem:2M "file:$dst5;create=2M"
[ "$(stat -c %s "$dst5")" = 2097152 ] || fail "copy 5: wrong size"
# cmp reports EOF on the file (and no difference) when it is all zero.
cmp_out=$(cmp "$dst5" /dev/zero 2>&1 || true)
case $cmp_out in
*EOF*) ;;
*) fail "copy 5: mem:2M did not copy as zeroes: $cmp_out" ;;
esac

# 6. Refusals: a too-small destination (existing or to be created) and a
# read-only one; nothing is modified.
small=$tmpdir/small.img
dd if=/dev/urandom of="$small" bs=1M count=4 2>/dev/null
small_sum=$(sha256sum "$small" | cut -d' ' -f1)
_got=0
"$DISKSTACK" copy "$src" "$small" >"$tmpdir/stdout" 2>"$tmpdir/stderr" || _got=$?
[ "$_got" -ne 0 ] || fail "copy into a too-small destination succeeded"
expect_stderr "too small"
[ "$small_sum" = "$(sha256sum "$small" | cut -d' ' -f1)" ] || fail "too-small destination modified"
_got=0
"$DISKSTACK" copy "$src" "file:$tmpdir/new-small.img;create=1M" >"$tmpdir/stdout" \
	2>"$tmpdir/stderr" || _got=$?
[ "$_got" -ne 0 ] || fail "copy into a too-small created destination succeeded"
[ ! -e "$tmpdir/new-small.img" ] || fail "too-small destination was created"
expect_exit 2 "$DISKSTACK" copy "$src" "file:$dst3,ro"
expect_stderr "read-only"
expect_exit 2 "$DISKSTACK" copy "$src" "file:$src;create=8M"
expect_stderr "truncate"

# The source never changed.
[ "$sum_before" = "$(sha256sum "$src" | cut -d' ' -f1)" ] || fail "the source was modified"

echo "$0: OK"
