#!/bin/sh
# SPDX-License-Identifier: MIT
# test-prwrap-cli.sh: prwrap: from the command line — data passes through
# unchanged, `info` shows the decorator, its parameters and the inner disk,
# and the bench runs through it.
. "$(dirname "$0")/functions.sh"
requires cmp dd /usr/bin/python3

src=$tmpdir/src.img
dd if=/dev/urandom of="$src" bs=64K count=64 2>/dev/null        # 4 MiB
dst=$tmpdir/dst.img
expect_exit 0 "$DISKSTACK" copy --quiet "file:$src" "prwrap:file:$dst;create=4M"
cmp "$src" "$dst" || fail "copy through prwrap differs"
out=$tmpdir/out.img
expect_exit 0 "$DISKSTACK" copy --quiet "prwrap:file:$dst" "file:$out;create=4M"
cmp "$src" "$out" || fail "copy out of prwrap differs"

expect_exit 0 "$DISKSTACK" info --json "prwrap:file:$dst"
/usr/bin/python3 -I - "$tmpdir/stdout" <<'PY' || fail "info --json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["type"] == "prwrap", d["type"]
assert "pr" in d["caps"], d["caps"]
assert d["params"]["max_registrants"] == "64", d["params"]
assert d["params"]["reservation"] == "none", d["params"]
assert d["children"][0]["role"] == "inner" and d["children"][0]["type"] == "file"
PY

expect_exit 2 "$DISKSTACK" info "prwrap:"
expect_stderr "missing inner disk spec"
expect_exit 1 "$DISKSTACK" info "prwrap:file:$tmpdir/missing.img"
expect_stderr "missing.img"

expect_exit 0 "$DISKSTACK" bench "prwrap:mem:16M" --rw randrw --ops 20000
grep -q 'IOPS=' "$tmpdir/stdout" || fail "bench printed no IOPS"

echo "$0: OK"
