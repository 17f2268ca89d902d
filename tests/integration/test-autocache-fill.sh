#!/bin/sh
# SPDX-License-Identifier: MIT
# test-autocache-fill.sh: the autocache: layer over a fixed VHD (whose disk
# id keys the cache). The first read fills the cache (row counts with
# sqlite3); the second is served from it: the base is changed underneath
# and the old data still comes back, so the lower disk was not read. The
# cache root comes from --cache-dir or DISKSTACK_AUTOCACHE_DIR; a writable
# disk with the cache in its write path is refused; racing processes end
# with one valid cache file.
. "$(dirname "$0")/functions.sh"
requires sqlite3 cmp dd od tr
requires_kind autocache

base=$tmpdir/base.vhd
expect_exit 0 "$DISKSTACK" create "$base" 1M -q
dd if=/dev/urandom of="$tmpdir/orig.img" bs=64K count=16 2>/dev/null
expect_exit 0 "$DISKSTACK" copy "file:$tmpdir/orig.img" "file:$base"

# The key: the VHD unique id, 32 lowercase hex digits in footer byte order.
key=$(tail -c 444 "$base" | head -c 16 | od -An -tx1 | tr -d ' \n')
[ ${#key} = 32 ] || fail "cannot read the unique id ($key)"
cache=$tmpdir/cache
db=$cache/$key/cache.dbhd

# No cache directory at all: refused before anything is opened.
unset DISKSTACK_AUTOCACHE_DIR
expect_exit 2 "$DISKSTACK" info "autocache::file:$base,ro"
expect_stderr "DISKSTACK_AUTOCACHE_DIR"

# The cache is logically read-only: only under ,ro or memdiff:.
expect_exit 2 "$DISKSTACK" --cache-dir "$cache" copy "file:$tmpdir/orig.img" "autocache::file:$base"
expect_stderr "read-only"

# 1. First full read: every sector goes into the cache.
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" copy "autocache::file:$base,ro" "file:$tmpdir/r1.img;create=1M"
cmp "$tmpdir/orig.img" "$tmpdir/r1.img" || fail "first read: wrong data"
[ -f "$db" ] || fail "no cache at $db"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM sectors')" = 2048 ] ||
	fail "cache rows after the first read: $(sqlite3 "$db" 'SELECT count(*) FROM sectors')"
[ "$(sqlite3 "$db" "SELECT json_remove(metadata, '\$.origin') FROM meta")" = '{"logically_read_only":true,"sector_count":2048,"sector_size":512}' ] ||
	fail "cache meta"
case $(sqlite3 "$db" "SELECT json_extract(metadata, '\$.origin') FROM meta") in
"file:$(cd "$tmpdir" && pwd -P)/base.vhd;dev="*";ino="*";size=1049088;mtime="*) ;;
*) fail "cache origin: $(sqlite3 "$db" 'SELECT metadata FROM meta')" ;;
esac
ls -a "$cache/$key" | grep -q '^\.tmp-' && fail "temporary directory left behind"

# 2. Change the base underneath (data region only) but give it back its
#    mtime, so that the cache's binding (path, device, inode, size, mtime;
#    docs/layer-autocache.md) still holds: a read through the cache returns
#    the old data, so the lower disk was not read. (A real change that
#    keeps the mtime is the validator's documented blind spot.)
touch -r "$base" "$tmpdir/stamp"
dd if=/dev/urandom of="$base" bs=64K count=16 conv=notrunc 2>/dev/null
touch -r "$tmpdir/stamp" "$base"
DISKSTACK_AUTOCACHE_DIR=$cache
export DISKSTACK_AUTOCACHE_DIR
expect_exit 0 "$DISKSTACK" copy "autocache::file:$base,ro" "file:$tmpdir/r2.img;create=1M"
unset DISKSTACK_AUTOCACHE_DIR
cmp "$tmpdir/orig.img" "$tmpdir/r2.img" || fail "second read was not served from the cache"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM sectors')" = 2048 ] || fail "cache rows changed"

# 3. memdiff above the cache makes a writable disk; writes stay in RAM.
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" info "memdiff:autocache::file:$base"
grep -q "key: $key" "$tmpdir/stdout" || fail "info: no key"
grep -q "\[1\] sqlite" "$tmpdir/stdout" || fail "info: no sqlite layer"

# 4. An explicit key, then another disk under the same key: the cache is
#    emptied and bound to that disk.
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" info "autocache:k1:file:$base,ro"
[ -f "$cache/k1/cache.dbhd" ] || fail "explicit key: no cache"
expect_exit 0 "$DISKSTACK" create "$tmpdir/other.vhd" 2M -q
expect_exit 0 "$DISKSTACK" --cache-dir "$cache" info "autocache:k1:file:$tmpdir/other.vhd,ro"
expect_stderr "emptying it for file:"
[ "$(sqlite3 "$cache/k1/cache.dbhd" "SELECT json_extract(metadata, '\$.sector_count') FROM meta")" = 4096 ] ||
	fail "k1 not rebound to other.vhd"

# 5. Racing processes create one cache.
pids=""
i=0
while [ $i -lt 8 ]; do
	"$DISKSTACK" --cache-dir "$cache" info "autocache:race:file:$base,ro" > "$tmpdir/race.$i" 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
for p in $pids; do
	wait "$p" || { cat "$tmpdir"/race.* >&2; fail "a racing open failed"; }
done
[ "$(sqlite3 "$cache/race/cache.dbhd" 'PRAGMA integrity_check')" = ok ] || fail "race: bad cache"
[ "$(sqlite3 "$cache/race/cache.dbhd" 'SELECT count(*) FROM meta')" = 1 ] || fail "race: meta rows"
[ "$(ls -a "$cache/race" | grep -c '^\.tmp-')" = 0 ] || fail "race: temporary directories left"
[ "$(ls "$cache/race")" = cache.dbhd ] || fail "race: stray files: $(ls "$cache/race")"
# And racing readers filling the same cache stay consistent.
pids=""
i=0
while [ $i -lt 4 ]; do
	"$DISKSTACK" --cache-dir "$cache" copy "autocache:race:file:$base,ro" "file:$tmpdir/rr.$i;create=1M" > /dev/null 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
for p in $pids; do
	wait "$p" || fail "a racing reader failed"
done
i=0
while [ $i -lt 4 ]; do
	cmp "$base" "$tmpdir/rr.$i" -n 1048576 || fail "racing reader $i: wrong data"
	i=$((i + 1))
done
[ "$(sqlite3 "$cache/race/cache.dbhd" 'SELECT count(*) FROM sectors')" = 2048 ] || fail "race: rows"

echo "test-autocache-fill: ok"
