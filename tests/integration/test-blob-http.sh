#!/bin/sh
# SPDX-License-Identifier: MIT
# test-blob-http.sh: blob: disks served by a real nginx on 127.0.0.1 —
# byte-exact copies of a flat image and of fixed VHDs (ours and qemu-img's)
# through memdiff:, redirects, the refusal of a writable plain blob, and no
# credentials in what info and errors show.
. "$(dirname "$0")/functions.sh"
requires cmp dd
requires_kind blob
srcdir=${abs_top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}

www=$tmpdir/www
mkdir -p "$www"
dd if=/dev/urandom of="$www/flat.img" bs=1M count=8 2>/dev/null
# A sparse stretch, so the copy sees zeroes from a blob too.
dd if=/dev/zero of="$www/flat.img" bs=1M count=2 seek=3 conv=notrunc 2>/dev/null

_st=0
port=$(NGINX_PARENT_PID=$$ sh "$srcdir/tests/http/nginx-start.sh" "$tmpdir/nginx" "$www" 1) || _st=$?
[ $_st -ne 77 ] || exit 77
[ $_st -eq 0 ] || fail "nginx did not start"
cleanup_fn 'kill "$(cat "$tmpdir/nginx/nginx.pid")" 2>/dev/null'
base=http://127.0.0.1:$port

# 1. memdiff over a flat blob, copied out byte for byte.
expect_exit 0 "$DISKSTACK" copy -q "memdiff:blob:flat:$base/flat.img" "file:$tmpdir/out1.img;create=8M"
cmp "$www/flat.img" "$tmpdir/out1.img" || fail "memdiff:blob copy differs"

# 2. A plain blob opened read-only by copy (the source), through a redirect
#    chain of 5; a chain of 6 is refused.
expect_exit 0 "$DISKSTACK" copy -q "blob:flat:$base/chain5" "file:$tmpdir/out2.img;create=8M"
cmp "$www/flat.img" "$tmpdir/out2.img" || fail "copy through redirects differs"
expect_exit 1 "$DISKSTACK" info "blob:flat:$base/chain6"
expect_stderr "too many redirects"

# 3. A writable plain blob is refused, with the way out in the message.
expect_exit 1 "$DISKSTACK" copy mem:8M "blob:flat:$base/flat.img"
expect_stderr "writable blob disks are not supported; put memdiff:, sqldiff: or autocache: above it, or add ,ro"

# 4. Fixed VHDs: the footer is checked and never read as data.
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on \
		"$www/flat.img" "$www/qemu.vhd"
	expect_exit 0 "$DISKSTACK" copy -q "blob:vhd1:$base/qemu.vhd" "file:$tmpdir/out3.img;create=8M"
	cmp "$www/flat.img" "$tmpdir/out3.img" || fail "vhd1 blob (qemu-img) differs"
	expect_exit 0 "$DISKSTACK" info "blob:vhd1:$base/qemu.vhd"
	grep -q "sector count: *16384" "$tmpdir/stdout" || fail "vhd1 size is not the data size"
	grep -q "disk id: *none" "$tmpdir/stdout" && fail "vhd1 blob has no disk id"
	# Read flat, the same file shows its footer in the last sector.
	expect_exit 0 "$DISKSTACK" info "blob:flat:$base/qemu.vhd"
	grep -q "sector count: *16385" "$tmpdir/stdout" || fail "flat view of the vhd has the wrong size"
	# A flat image is not a VHD.
	expect_exit 2 "$DISKSTACK" info "blob:vhd1:$base/flat.img"
	expect_stderr "cookie"
else
	echo "$0: qemu-img not found, VHD interop part skipped"
fi

# 5. Credentials never show: userinfo and query strings are stripped from
#    info (text and JSON) and from errors.
secret_url="http://alice:hunter2@127.0.0.1:$port/flat.img?sv=2024&sig=TOPSECRET"
expect_exit 0 "$DISKSTACK" info "blob:flat:$secret_url"
grep -q "flat.img" "$tmpdir/stdout" || fail "info does not show the URL"
for s in hunter2 alice TOPSECRET sv=2024; do
	grep -q "$s" "$tmpdir/stdout" "$tmpdir/stderr" && fail "info shows '$s'"
done
expect_exit 0 "$DISKSTACK" info --json "memdiff:blob:flat:$secret_url"
for s in hunter2 TOPSECRET; do
	grep -q "$s" "$tmpdir/stdout" "$tmpdir/stderr" && fail "info --json shows '$s'"
done
expect_exit 1 "$DISKSTACK" info "blob:flat:http://bob:pw123@127.0.0.1:$port/missing.img?sig=NOPE"
expect_stderr "404"
for s in pw123 NOPE; do
	grep -q "$s" "$tmpdir/stderr" && fail "the error shows '$s'"
done

echo "$0: OK"
