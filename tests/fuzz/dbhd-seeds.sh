#!/bin/sh
# SPDX-License-Identifier: MIT
# dbhd-seeds.sh DIR: writes the seeds of tests/fuzz/fuzz-dbhd to DIR.
# Valid .dbhd files from our own create path ($DISKSTACK create/copy: data,
# zero and absent sectors, 512 and 4096-byte sectors, an autocache file with
# an origin), so that mutations start from files that open and hold rows;
# then, when sqlite3 is installed, the crafted files of the regression tests
# (a TEXT sector column, a trigger that drops writes, a view, an index,
# rows of the wrong type), so that mutations also start at the checks.
set -eu
out=$1
ds=${DISKSTACK:-${abs_top_builddir:-.}/diskstack}
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT

# Data: sectors 0-15 random, 8-11 zero (NULL rows), 40-47 random; the
# rest absent. Files of 1 MiB, the size of the sqldiff target's mem: disk.
dd if=/dev/zero of="$w/src" bs=4096 count=256 2>/dev/null
dd if=/dev/urandom of="$w/src" bs=512 count=16 conv=notrunc 2>/dev/null
dd if=/dev/zero of="$w/src" bs=512 count=4 seek=8 conv=notrunc 2>/dev/null
dd if=/dev/urandom of="$w/src" bs=512 count=8 seek=40 conv=notrunc 2>/dev/null
head -c 32768 "$w/src" > "$w/src32k"

"$ds" create -q "$w/empty.dbhd" 1M
cp "$w/empty.dbhd" "$out/empty"
"$ds" create -q "$w/data.dbhd" 1M
"$ds" copy -q "file:$w/src32k" "sql:$w/data.dbhd"
cp "$w/data.dbhd" "$out/data512"
"$ds" create -q "$w/data4k.dbhd" 1M --sector-size 4096
"$ds" copy -q "file:$w/src32k" "sql:$w/data4k.dbhd"
cp "$w/data4k.dbhd" "$out/data4096"
"$ds" create -q "$w/small.dbhd" 8K
cp "$w/small.dbhd" "$out/small"
# A logically read-only file with an origin: an autocache over a VHD.
"$ds" create -q "$w/base.vhd" 1M
"$ds" copy -q "file:$w/src" "file:$w/base.vhd"
"$ds" --cache-dir "$w/cache" copy -q "autocache::file:$w/base.vhd,ro" "file:$w/out;create=1M"
cp "$w"/cache/*/cache.dbhd "$out/autocache"

command -v sqlite3 > /dev/null 2>&1 || exit 0
craft() {
	cp "$w/data.dbhd" "$w/c.dbhd"
	sqlite3 "$w/c.dbhd" "$2" > /dev/null
	cp "$w/c.dbhd" "$out/$1"
}
craft trigger "CREATE TRIGGER drop_writes AFTER INSERT ON sectors BEGIN
	DELETE FROM sectors WHERE sector = new.sector; END;"
craft view "CREATE VIEW v AS SELECT * FROM sectors;"
craft index "CREATE INDEX i ON sectors (data);"
craft badrows "INSERT INTO sectors VALUES (100, 'text'), (101, 7), (102, x'0102');"
sqlite3 "$w/text.dbhd" "PRAGMA journal_mode=WAL;
CREATE TABLE sectors (sector TEXT NOT NULL, data BLOB, PRIMARY KEY (sector));
CREATE TABLE meta (metadata TEXT NOT NULL);
INSERT INTO meta VALUES (json('{\"logically_read_only\":false,\"sector_count\":2048,\"sector_size\":512}'));
INSERT INTO sectors VALUES ('10', randomblob(512)), ('9', NULL), ('100', NULL);" > /dev/null
cp "$w/text.dbhd" "$out/textsector"
