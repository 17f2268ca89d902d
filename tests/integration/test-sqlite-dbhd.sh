#!/bin/sh
# SPDX-License-Identifier: MIT
# test-sqlite-dbhd.sh: .dbhd files as the sqlite3 command-line tool sees
# them (exact schema text in sqlite_master, the minified meta row, NULL rows
# for zero sectors, WAL mode), persistence across processes, sqldiff over a
# file (the base is never modified), read-only opens, and the create/exists
# rules of sql: and sqldiff:, and crafted files refused at open.
. "$(dirname "$0")/functions.sh"
requires sqlite3 cmp sha256sum dd truncate
requires_kind sql sqldiff

db=$tmpdir/disk.dbhd

# 1. diskstack create, checked with sqlite3.
expect_exit 0 "$DISKSTACK" create "$db" 2M
grep -q "created $db: sql, 2 MiB (4096 sectors of 512 bytes)" "$tmpdir/stdout" ||
	fail "create: summary"
printf '%s\n' 'CREATE TABLE sectors (' \
	'    -- if data is NULL, that indicates an all-zero sector.' \
	'    -- otherwise, data has len == SECTOR_SIZE, containing the sector data.' \
	'    sector INTEGER NOT NULL,' \
	'    data   BLOB,' \
	'    PRIMARY KEY (sector)' \
	')' 'CREATE TABLE meta (' \
	'    metadata TEXT NOT NULL -- stored as JSON' \
	')' > "$tmpdir/want-schema"
sqlite3 "$db" "SELECT sql FROM sqlite_master ORDER BY rowid" > "$tmpdir/schema"
cmp "$tmpdir/want-schema" "$tmpdir/schema" || { diff "$tmpdir/want-schema" "$tmpdir/schema" >&2; fail "schema text"; }
[ "$(sqlite3 "$db" 'SELECT metadata FROM meta')" = '{"logically_read_only":false,"sector_count":4096,"sector_size":512}' ] ||
	fail "meta row: $(sqlite3 "$db" 'SELECT metadata FROM meta')"
[ "$(sqlite3 "$db" "SELECT json_extract(metadata, '\$') FROM meta")" = '{"logically_read_only":false,"sector_count":4096,"sector_size":512}' ] ||
	fail "meta through json_extract"
[ "$(sqlite3 "$db" 'PRAGMA journal_mode')" = wal ] || fail "not in WAL mode"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM sectors')" = 0 ] || fail "a new disk has rows"

# 2. Data in, zero sectors as NULL rows, persistence across processes.
src=$tmpdir/src.img
truncate -s 2M "$src"
dd if=/dev/urandom of="$src" bs=4096 count=16 conv=notrunc 2>/dev/null        # 128 data sectors
dd if=/dev/zero of="$src" bs=512 count=8 seek=8 conv=notrunc 2>/dev/null      # 8 of them zero
dd if=/dev/urandom of="$src" bs=4096 count=1 seek=300 conv=notrunc 2>/dev/null # 8 more
expect_exit 0 "$DISKSTACK" copy "file:$src" "sql:$db"
rows=$(sqlite3 "$db" 'SELECT count(*) FROM sectors')
nulls=$(sqlite3 "$db" 'SELECT count(*) FROM sectors WHERE data IS NULL')
bad=$(sqlite3 "$db" 'SELECT count(*) FROM sectors WHERE data IS NOT NULL AND length(data) != 512')
zeroblobs=$(sqlite3 "$db" "SELECT count(*) FROM sectors WHERE data = zeroblob(512)")
[ "$bad" = 0 ] || fail "$bad rows of the wrong size"
[ "$zeroblobs" = 0 ] || fail "$zeroblobs zero sectors stored as blobs, not NULL"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM sectors WHERE data IS NOT NULL')" = 128 ] ||
	fail "data rows: $rows rows, $nulls NULL"
expect_exit 0 "$DISKSTACK" copy "sql:$db" "file:$tmpdir/back.img;create=2M"
cmp "$src" "$tmpdir/back.img" || fail "read back differs"
[ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"

# Writing zeroes over data makes NULL rows (copy writes whole blocks).
dd if=/dev/zero of="$src" bs=4096 count=1 seek=1 conv=notrunc 2>/dev/null
"$DISKSTACK" info "sql:$db" > /dev/null || fail "info"
expect_exit 0 "$DISKSTACK" copy "file:$src" "sql:$db"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM sectors WHERE sector BETWEEN 8 AND 15 AND data IS NOT NULL')" = 0 ] ||
	fail "zeroed sectors still hold blobs"

# 3. Read-only opens refuse writes and leave the file alone.
sum=$(sqlite3 "$db" 'SELECT count(*), sum(length(data)) FROM sectors')
expect_exit 2 "$DISKSTACK" copy "file:$src" "sql:$db,ro"
expect_stderr "read-only"
expect_exit 0 "$DISKSTACK" info "sql:$db"
grep -q 'access: read-only' "$tmpdir/stdout" || fail "info opens read-write"
[ "$(sqlite3 "$db" 'SELECT count(*), sum(length(data)) FROM sectors')" = "$sum" ] ||
	fail "read-only open changed the file"

# 4. The create/exists rules.
expect_exit 1 "$DISKSTACK" copy "file:$src" "sql:$db;create=2M"
expect_stderr "already exists"
expect_exit 1 "$DISKSTACK" info "sql:$tmpdir/missing.dbhd"
expect_stderr "No such file"
expect_exit 2 "$DISKSTACK" info "sql:$db;direct"
expect_exit 1 "$DISKSTACK" create "$db" 1M
expect_stderr "already exists"
expect_exit 2 "$DISKSTACK" create "$tmpdir/x.dbhd" 1000
expect_exit 2 "$DISKSTACK" create "$tmpdir/x.dbhd" 1M --preallocate
expect_exit 0 "$DISKSTACK" create "$tmpdir/x4k.dbhd" 1M --sector-size 4096
[ "$(sqlite3 "$tmpdir/x4k.dbhd" 'SELECT metadata FROM meta')" = '{"logically_read_only":false,"sector_count":256,"sector_size":4096}' ] ||
	fail "4K meta"
expect_exit 0 "$DISKSTACK" info "sql:$tmpdir/x4k.dbhd"
grep -q '^sector size: *4096$' "$tmpdir/stdout" || fail "4K sector size"

# 5. sqldiff over a file: the base is never modified.
base=$tmpdir/base.img
dd if=/dev/urandom of="$base" bs=64K count=16 2>/dev/null
base_sum=$(sha256sum "$base" | cut -d' ' -f1)
diff=$tmpdir/diff.dbhd
patch=$tmpdir/patch.img
dd if=/dev/urandom of="$patch" bs=64K count=2 2>/dev/null
expect_exit 0 "$DISKSTACK" copy "file:$patch" "sqldiff:$diff;create:file:$base"
[ "$(sha256sum "$base" | cut -d' ' -f1)" = "$base_sum" ] || fail "sqldiff modified the base"
[ "$(sqlite3 "$diff" 'SELECT metadata FROM meta')" = '{"logically_read_only":false,"sector_count":2048,"sector_size":512}' ] ||
	fail "sqldiff meta (inherited geometry)"
expect_exit 0 "$DISKSTACK" copy "sqldiff:$diff:file:$base" "file:$tmpdir/merged.img;create=1M"
cmp -n 131072 "$patch" "$tmpdir/merged.img" || fail "sqldiff: patched part"
cmp -i 131072 "$base" "$tmpdir/merged.img" || fail "sqldiff: base part"
expect_exit 2 "$DISKSTACK" info "sqldiff:$diff"
expect_exit 1 "$DISKSTACK" copy "file:$patch" "sqldiff:$diff;create:file:$base"
expect_stderr "already exists"
expect_exit 0 "$DISKSTACK" info "sqldiff:$diff:file:$base"
grep -q '\[1\] disk' "$tmpdir/stdout" || fail "sqldiff info: no base layer"
[ "$(sha256sum "$base" | cut -d' ' -f1)" = "$base_sum" ] || fail "the base changed"

# 6. Crafted files (regressions): a TEXT sector column made reads return
# sectors outside the request and abort the server; an AFTER INSERT trigger
# made acknowledged writes read back as zeroes. Both are refused at open.
crafted=$tmpdir/text-sector.dbhd
sqlite3 "$crafted" "CREATE TABLE sectors (sector TEXT NOT NULL, data BLOB, PRIMARY KEY (sector));
CREATE TABLE meta (metadata TEXT NOT NULL);
INSERT INTO meta VALUES (json('{\"logically_read_only\":false,\"sector_count\":64,\"sector_size\":512}'));
INSERT INTO sectors VALUES ('10', zeroblob(512)), ('9', NULL), ('100', NULL);"
expect_exit 2 "$DISKSTACK" copy "sql:$crafted" "file:$tmpdir/crafted.img;create=32K"
expect_stderr "'sectors' is not the table the format creates"
expect_exit 2 "$DISKSTACK" info "sql:$crafted"

crafted=$tmpdir/trigger.dbhd
expect_exit 0 "$DISKSTACK" create "$crafted" 64K
sqlite3 "$crafted" "CREATE TRIGGER drop_writes AFTER INSERT ON sectors BEGIN
	DELETE FROM sectors WHERE sector = new.sector; END;"
expect_exit 2 "$DISKSTACK" copy "file:$patch" "sql:$crafted"
expect_stderr "unexpected trigger 'drop_writes'"
expect_exit 2 "$DISKSTACK" info "sql:$crafted,ro"
expect_stderr "unexpected trigger 'drop_writes'"
sqlite3 "$crafted" "DROP TRIGGER drop_writes; CREATE VIEW v AS SELECT * FROM sectors;"
expect_exit 2 "$DISKSTACK" info "sql:$crafted"
expect_stderr "unexpected view 'v'"
sqlite3 "$crafted" "DROP VIEW v"
head -c 65536 "$patch" > "$tmpdir/64k.img"
expect_exit 0 "$DISKSTACK" copy "file:$tmpdir/64k.img" "sql:$crafted"
expect_exit 0 "$DISKSTACK" copy "sql:$crafted" "file:$tmpdir/64k-back.img;create=64K"
cmp "$tmpdir/64k.img" "$tmpdir/64k-back.img" || fail "writes to a cleaned file lost"

echo "test-sqlite-dbhd: ok"
