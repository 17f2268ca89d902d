#!/bin/sh
# SPDX-License-Identifier: MIT
# test-striped-cli.sh: striped: from the command line — data copied onto a
# stripe set of files lands on each member file where the mapping of
# docs/openvmm-compat.md §4.8 says, reads back byte-exact, `info` shows the
# chunk and the members, and bad configurations are refused with a message
# naming the problem.
. "$(dirname "$0")/functions.sh"
requires cmp dd /usr/bin/python3

src=$tmpdir/src.img
dd if=/dev/urandom of="$src" bs=64K count=192 2>/dev/null       # 12 MiB
a=$tmpdir/a.img; b=$tmpdir/b.img; c=$tmpdir/c.img
set3="striped:64K:file:$a;create=4M+file:$b;create=4M+file:$c;create=4M"

expect_exit 0 "$DISKSTACK" copy --quiet "file:$src" "$set3"
set3="striped:64K:file:$a+file:$b+file:$c"
out=$tmpdir/out.img
expect_exit 0 "$DISKSTACK" copy --quiet "$set3" "file:$out;create=12M"
cmp "$src" "$out" || fail "round trip through the stripe set differs"

# Every 64 KiB chunk sits on member (chunk mod 3) at offset (chunk / 3) * 64K.
/usr/bin/python3 -I - "$src" "$a" "$b" "$c" <<'PY' || fail "member layout differs from the mapping"
import sys
src = open(sys.argv[1], "rb").read()
members = [open(p, "rb").read() for p in sys.argv[2:]]
chunk = 64 * 1024
for c in range(len(src) // chunk):
    m, row = c % 3, c // 3
    if members[m][row * chunk:(row + 1) * chunk] != src[c * chunk:(c + 1) * chunk]:
        sys.exit("chunk %d not at member %d row %d" % (c, m, row))
PY

# info: parameters and one child per member.
expect_exit 0 "$DISKSTACK" info --json "$set3"
/usr/bin/python3 -I - "$tmpdir/stdout" <<'PY' || fail "info --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["type"] == "striped", d["type"]
assert d["sector_count"] == 3 * 8192, d["sector_count"]
assert d["params"]["chunk"] == "64K", d["params"]
assert d["params"]["members"] == "3", d["params"]
roles = [c["role"] for c in d["children"]]
assert roles == ["member 0", "member 1", "member 2"], roles
assert all(c["type"] == "file" for c in d["children"])
PY
expect_exit 0 "$DISKSTACK" info "striped:4K:mem:1M+prwrap:mem:1M"
grep -q 'member 1: prwrap' "$tmpdir/stdout" || fail "info: nested member not shown"

# Refused configurations.
expect_exit 2 "$DISKSTACK" info "striped:64K:mem:1M+mem:2M"
expect_stderr "member 1 is not compatible with member 0"
expect_exit 2 "$DISKSTACK" info "striped:1000:mem:1M+mem:1M"
expect_stderr "multiple of 512"
expect_exit 2 "$DISKSTACK" info "striped:2M:mem:1M+mem:1M"
expect_stderr "smaller than one chunk"
expect_exit 2 "$DISKSTACK" info "striped:64K:mem:1M+"
expect_stderr "empty stripe member"

# A short bench through the stripe set (writes land in RAM).
expect_exit 0 "$DISKSTACK" bench "striped:16K:mem:8M+mem:8M+mem:8M+mem:8M" --rw randrw --bs 64K --ops 4000
grep -q 'IOPS=' "$tmpdir/stdout" || fail "bench printed no IOPS"

echo "$0: OK"
