#!/bin/sh
# SPDX-License-Identifier: MIT
# test-info-json.sh: `diskstack info` in text and JSON on a RAM disk and on
# a RAM overlay over a file; info never modifies the file.
. "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 sha256sum

# Evaluates Python expressions (one per argument) over the JSON object in
# $tmpdir/stdout, as d; each must be true. One python3 run per call.
json_check()
{
	/usr/bin/python3 -I -c '
import json, sys
d = json.load(open(sys.argv[1]))
for expr in sys.argv[2:]:
    if not eval(expr):
        print("JSON check failed:", expr, file=sys.stderr)
        print(json.dumps(d, indent=2), file=sys.stderr)
        sys.exit(1)
' "$tmpdir/stdout" "$@" || fail "json check"
}

# mem:1G, text.
expect_exit 0 "$DISKSTACK" info mem:1G
grep -q '^sector count: *2097152$' "$tmpdir/stdout" || fail "mem:1G sector count (text)"
grep -q '^sector size: *512$' "$tmpdir/stdout" || fail "mem:1G sector size (text)"
grep -q '^size: *1073741824 bytes (1 GiB)$' "$tmpdir/stdout" || fail "mem:1G size (text)"
grep -q '^layer count: *1$' "$tmpdir/stdout" || fail "mem:1G layer count (text)"
grep -q '\[0\] ram' "$tmpdir/stdout" || fail "mem:1G layer 0 (text)"

# mem:1G, JSON.
expect_exit 0 "$DISKSTACK" info --json mem:1G
json_check \
	'd["sector_count"] == 2097152' \
	'd["sector_size"] == 512' \
	'd["size_bytes"] == 1 << 30' \
	'd["spec"] == "mem:1G"' \
	'd["type"] == "layered"' \
	'len(d["layers"]) == 1 and d["layer_count"] == 1' \
	'd["layers"][0]["type"] == "ram"' \
	'd["layers"][0]["sector_count"] == 2097152' \
	'd["read_only"] is True' \
	'isinstance(d["caps"], list) and isinstance(d["children"], list)' \
	'd["unmap"] in ("unspecified", "ignored", "zeroes")'

# memdiff over a file (4 MiB with some data and a hole).
img=$tmpdir/base.img
dd if=/dev/urandom of="$img" bs=64K count=4 2>/dev/null
truncate -s 4M "$img"
before=$(sha256sum "$img" | cut -d' ' -f1)
mtime_before=$(stat -c %Y "$img")

expect_exit 0 "$DISKSTACK" info "memdiff:file:$img"
grep -q '^sector count: *8192$' "$tmpdir/stdout" || fail "memdiff sector count (text)"
grep -q '^layer count: *2$' "$tmpdir/stdout" || fail "memdiff layer count (text)"
grep -q '\[0\] ram' "$tmpdir/stdout" || fail "memdiff layer 0 (text)"
grep -q '\[1\] ' "$tmpdir/stdout" || fail "memdiff layer 1 (text)"

expect_exit 0 "$DISKSTACK" info --json "memdiff:file:$img"
# Two layers, top first; the file below the RAM layer shows up as a child
# disk of the bottom layer.
json_check \
	'd["sector_count"] == 8192' \
	'd["type"] == "layered"' \
	'len(d["layers"]) == 2' \
	'[l["index"] for l in d["layers"]] == [0, 1]' \
	'd["layers"][0]["type"] == "ram"' \
	'd["layers"][1]["type"] != "ram"' \
	'all(l["sector_count"] == 8192 for l in d["layers"])' \
	'any(c["type"] in ("file", "block") for c in d["layers"][1]["children"])'

# A bare path and ,ro work too; --ro is accepted.
expect_exit 0 "$DISKSTACK" info --ro --json "$img"
json_check \
	'd["sector_count"] == 8192 and d["read_only"] is True'
expect_exit 0 "$DISKSTACK" info "file:$img,ro"

# JSON escaping: a path with a quote, a backslash and a tab.
odd="$tmpdir/we\"ird\\na	me.img"
cp "$img" "$odd"
expect_exit 0 "$DISKSTACK" info --json "file:$odd"
json_check \
	'd["spec"].endswith("we\"ird\\na\tme.img")'

# info never modified the image.
after=$(sha256sum "$img" | cut -d' ' -f1)
[ "$before" = "$after" ] || fail "info modified $img"
[ "$mtime_before" = "$(stat -c %Y "$img")" ] || fail "info touched $img"

echo "$0: OK"
