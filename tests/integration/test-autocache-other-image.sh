#!/bin/sh
# SPDX-License-Identifier: MIT
# test-autocache-other-image.sh: regression test for "autocache: one
# image's cache serves another image's data". The cache key is the VHD's
# unique id, which a copy of an image shares (cp a.vhd b.vhd), and which a
# remote blob can claim; only the sector count was checked, so b read back
# a's bytes. A cache is bound to its origin (docs/layer-autocache.md):
# another file, a changed file, or a blob whose ETag changed empties and
# rebinds it.
. "$(dirname "$0")/functions.sh"
requires_kind autocache blob
requires sqlite3 cmp dd cp od tr
srcdir=${abs_top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}

cache=$tmpdir/cache
key_of() { tail -c 444 "$1" | head -c 16 | od -An -tx1 | tr -d ' \n'; }
origin_of() { sqlite3 "$cache/$1/cache.dbhd" "SELECT json_extract(metadata, '\$.origin') FROM meta"; }

# 1. a.vhd through the cache, then its copy b.vhd, changed.
expect_exit 0 "$DISKSTACK" create "$tmpdir/a.vhd" 1M -q
dd if=/dev/urandom of="$tmpdir/a.img" bs=64K count=16 2>/dev/null
expect_exit 0 "$DISKSTACK" copy -q "file:$tmpdir/a.img" "file:$tmpdir/a.vhd"
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy -q "autocache::file:$tmpdir/a.vhd,ro" "file:$tmpdir/ra.img;create=1M"
cmp "$tmpdir/a.img" "$tmpdir/ra.img" || fail "a: wrong data"
key=$(key_of "$tmpdir/a.vhd")
case $(origin_of "$key") in
"file:$tmpdir/a.vhd;"*) ;;
*) fail "cache not bound to a.vhd: $(origin_of "$key")" ;;
esac

cp "$tmpdir/a.vhd" "$tmpdir/b.vhd"
[ "$(key_of "$tmpdir/b.vhd")" = "$key" ] || fail "the copy has another id"
dd if=/dev/urandom of="$tmpdir/b.img" bs=64K count=16 2>/dev/null
expect_exit 0 "$DISKSTACK" copy -q "file:$tmpdir/b.img" "file:$tmpdir/b.vhd"
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy -q "autocache::file:$tmpdir/b.vhd,ro" "file:$tmpdir/rb.img;create=1M"
cmp "$tmpdir/b.img" "$tmpdir/rb.img" || fail "b read through the cache is not b (a's bytes: $(cmp -s "$tmpdir/a.img" "$tmpdir/rb.img" && echo yes || echo no))"
expect_stderr "emptying it for file:$tmpdir/b.vhd;"
# Served from the cache now: b's rows, b's binding.
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy -q "autocache::file:$tmpdir/b.vhd,ro" "file:$tmpdir/rb2.img;create=1M"
cmp "$tmpdir/b.img" "$tmpdir/rb2.img" || fail "b again: wrong data"
[ ! -s "$tmpdir/stderr" ] || fail "b again: rebound although nothing changed: $(cat "$tmpdir/stderr")"

# 2. The same file, changed in place: rebuilt, the new bytes come back.
dd if=/dev/urandom of="$tmpdir/b.img" bs=64K count=16 2>/dev/null
expect_exit 0 "$DISKSTACK" copy -q "file:$tmpdir/b.img" "file:$tmpdir/b.vhd"
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy -q "autocache::file:$tmpdir/b.vhd,ro" "file:$tmpdir/rb3.img;create=1M"
cmp "$tmpdir/b.img" "$tmpdir/rb3.img" || fail "changed b: stale data from the cache"

# 3. A remote copy claims the same id: its own binding, its own bytes; and
#    a new version of the blob (new ETag) rebinds the cache.
www=$tmpdir/www
mkdir -p "$www"
cp "$tmpdir/a.vhd" "$www/disk.vhd"
_st=0
port=$(NGINX_PARENT_PID=$$ sh "$srcdir/tests/http/nginx-start.sh" "$tmpdir/nginx" "$www" 1) || _st=$?
if [ $_st -eq 77 ]; then
	echo "test-autocache-other-image: nginx not found, blob part skipped"
	echo "test-autocache-other-image: ok"
	exit 0
fi
[ $_st -eq 0 ] || fail "nginx did not start"
cleanup_fn 'kill "$(cat "$tmpdir/nginx/nginx.pid")" 2>/dev/null'
url=http://127.0.0.1:$port/disk.vhd
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy -q "autocache::blob:vhd1:$url,ro" "file:$tmpdir/rr.img;create=1M"
cmp "$tmpdir/a.img" "$tmpdir/rr.img" || fail "blob: wrong data"
case $(origin_of "$key") in
"blob:vhd1:$url;size=1049088;etag="*) ;;
*) fail "cache not bound to the blob with its ETag: $(origin_of "$key")" ;;
esac
cp "$tmpdir/b.vhd" "$www/disk.vhd.new"
touch -d '2001-01-01' "$www/disk.vhd.new"
mv "$www/disk.vhd.new" "$www/disk.vhd"
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy -q "autocache::blob:vhd1:$url,ro" "file:$tmpdir/rr2.img;create=1M"
cmp "$tmpdir/b.img" "$tmpdir/rr2.img" || fail "new blob version: stale data from the cache"
expect_stderr "emptying it for blob:vhd1:$url"

echo "test-autocache-other-image: ok"
