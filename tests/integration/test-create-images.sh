#!/bin/sh
# SPDX-License-Identifier: MIT
# test-create-images.sh: `diskstack create` makes raw, fixed-VHD and sql
# images (type from the extension or --type), refuses to replace a file
# without --force, preallocates on request, and its VHDs are read by
# qemu-img exactly as the raw content.
. "$(dirname "$0")/functions.sh"
requires qemu-img sqlite3 cmp stat dd truncate

# Raw, sparse and preallocated.
expect_exit 0 "$DISKSTACK" create "$tmpdir/a.img" 16M
grep -q "created $tmpdir/a.img: raw, 16 MiB (32768 sectors of 512 bytes)" "$tmpdir/stdout" ||
	fail "raw: summary"
[ "$(stat -c %s "$tmpdir/a.img")" = 16777216 ] || fail "raw: size"
expect_exit 0 "$DISKSTACK" create "$tmpdir/b.img" 16M --preallocate
[ "$(stat -c %b "$tmpdir/b.img")" -ge 32768 ] || fail "raw: not preallocated ($(stat -c %b "$tmpdir/b.img") blocks)"

# Refusals.
expect_exit 1 "$DISKSTACK" create "$tmpdir/a.img" 1M
expect_stderr "already exists"
[ "$(stat -c %s "$tmpdir/a.img")" = 16777216 ] || fail "refused create changed the file"
expect_exit 0 "$DISKSTACK" create "$tmpdir/a.img" 1M --force
[ "$(stat -c %s "$tmpdir/a.img")" = 1048576 ] || fail "--force: size"
expect_exit 1 "$DISKSTACK" create /dev/null 1M --force
expect_stderr "not a regular file"
expect_exit 2 "$DISKSTACK" create "$tmpdir/c.img" 1000
expect_exit 2 "$DISKSTACK" create "$tmpdir/c.img" 1M --type qcow2
expect_exit 2 "$DISKSTACK" create "$tmpdir/c.vhd" 1M --sector-size 4096
expect_exit 2 "$DISKSTACK" create "$tmpdir/c.img"
[ ! -e "$tmpdir/c.img" ] && [ ! -e "$tmpdir/c.vhd" ] || fail "a refused create left a file"

# VHD by extension and by --type; qemu-img sees the same bytes.
expect_exit 0 "$DISKSTACK" create "$tmpdir/d.vhd" 8M --preallocate
grep -q "vhd, 8 MiB" "$tmpdir/stdout" || fail "vhd: summary"
[ "$(stat -c %s "$tmpdir/d.vhd")" = 8389120 ] || fail "vhd: file size"
dd if=/dev/urandom of="$tmpdir/content.img" bs=1M count=8 2>/dev/null
expect_exit 0 "$DISKSTACK" copy "file:$tmpdir/content.img" "file:$tmpdir/d.vhd"
qemu-img compare -f vpc -F raw "$tmpdir/d.vhd" "$tmpdir/content.img" >/dev/null ||
	fail "qemu-img compare: differs"
expect_exit 0 "$DISKSTACK" create "$tmpdir/e.disk" 4M --type vhd
tail -c 512 "$tmpdir/e.disk" | head -c 8 | grep -q conectix || fail "--type vhd: no footer"
truncate -s 4M "$tmpdir/zero4.img"
qemu-img compare -f vpc -F raw "$tmpdir/e.disk" "$tmpdir/zero4.img" >/dev/null ||
	fail "qemu-img compare: new VHD is not all zero"

# sql needs SQLite in the build: without it, create refuses it by name.
_why=$(kind_missing sql)
if [ -n "$_why" ]; then
	expect_exit 1 "$DISKSTACK" create "$tmpdir/f.dbhd" 4M --type sql
	expect_stderr "sql: this diskstack was $_why"
	[ ! -e "$tmpdir/f.dbhd" ] || fail "create made f.dbhd without SQLite"
	echo "test-create-images: ok (sql: not in this build, $_why)"
	exit 0
fi

# sql, with another sector size.
expect_exit 0 "$DISKSTACK" create "$tmpdir/f.dbhd" 4M --sector-size 4096
[ "$(sqlite3 "$tmpdir/f.dbhd" 'SELECT metadata FROM meta')" = '{"logically_read_only":false,"sector_count":1024,"sector_size":4096}' ] ||
	fail "sql: meta"
expect_exit 0 "$DISKSTACK" create "$tmpdir/g.bin" 4M --type sql -q
[ ! -s "$tmpdir/stdout" ] || fail "--quiet printed something"
expect_exit 0 "$DISKSTACK" info "sql:$tmpdir/g.bin"

echo "test-create-images: ok"
