#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-tools.sh: `diskstack serve` against libnbd's tools: nbdinfo
# (--list with descriptions, --size, --can, --is, --map for both metadata
# contexts) and nbdcopy in both directions, checked with cmp; a read-only
# export; a memdiff export whose base file never changes.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires nbdinfo nbdcopy cmp truncate dd sha256sum
requires_nbd_python

sock=$tmpdir/s.sock
base=$tmpdir/base.img
random_image "$base" 8M 64K 4@0 2@64
base_sum=$(sha256sum "$base" | cut -d' ' -f1)

serve srv -U "$sock" mem:16M \
	--export scratch=mem:4M -D "a scratch disk" \
	--export golden="file:$base,ro" -D "the golden image" \
	--export overlay="memdiff:file:$base"

# --list: every export, with its description.
nbdinfo --list --json "$(uri_unix "$sock")" > "$tmpdir/list.json"
for name in '""' '"scratch"' '"golden"' '"overlay"'; do
	grep -q "\"export-name\": $name" "$tmpdir/list.json" || fail "--list lacks export $name"
done
grep -q '"description": "a scratch disk"' "$tmpdir/list.json" || fail "no description in --list"
grep -q '"description": "the golden image"' "$tmpdir/list.json" || fail "no description in --list"

# --size, --can, --is.
[ "$(nbdinfo --size "$(uri_unix "$sock")")" = 16777216 ] || fail "wrong size of export ''"
[ "$(nbdinfo --size "$(uri_unix "$sock" scratch)")" = 4194304 ] || fail "wrong size of scratch"
for cap in flush fua trim zero cache multi-conn df; do
	nbdinfo --can "$cap" "$(uri_unix "$sock")" || fail "mem export cannot $cap"
done
nbdinfo --is read-only "$(uri_unix "$sock" golden)" || fail "golden is not read-only"
if nbdinfo --is read-only "$(uri_unix "$sock")"; then fail "mem export is read-only"; fi
for cap in trim zero fua; do
	if nbdinfo --can "$cap" "$(uri_unix "$sock" golden)"; then
		fail "read-only export advertises $cap"
	fi
done
# A mem disk zeroes by dropping pages: fast zero.
nbdinfo --can fast-zero "$(uri_unix "$sock")" || fail "mem export does not offer fast zero"

# --map on an empty RAM disk: one hole that reads as zeroes.
nbdinfo --map "$(uri_unix "$sock" scratch)" > "$tmpdir/map"
grep -Eq '^ *0 +4194304 +3 +hole,zero' "$tmpdir/map" || { cat "$tmpdir/map"; fail "bad map of scratch"; }

# nbdcopy file -> export -> file.
src=$tmpdir/src.img
dd if=/dev/urandom of="$src" bs=1M count=16 2>/dev/null
nbdcopy --flush "$src" "$(uri_unix "$sock")"
nbdcopy "$(uri_unix "$sock")" "$tmpdir/back.img"
cmp "$src" "$tmpdir/back.img" || fail "nbdcopy round trip differs"
nbdinfo --map "$(uri_unix "$sock")" | grep -Eq '^ *0 +16777216 +0 +data' || fail "map after copy"

# The overlay: writes land in RAM; diskstack:layer shows which layer holds
# what (1 = the RAM layer on top, 2 = the file below).
dd if=/dev/urandom of="$tmpdir/patch" bs=64K count=1 2>/dev/null
"$PY" -I - "$(uri_unix "$sock" overlay)" "$tmpdir/patch" <<'EOF' || fail "diskstack:layer map after an overlay write"
import sys, nbd
h = nbd.NBD()
h.add_meta_context("diskstack:layer")
h.connect_uri(sys.argv[1])
data = open(sys.argv[2], "rb").read()
h.pwrite(data, 1 << 20)
h.flush()
layers = []
def cb(meta, off, ents, err):
    if meta == "diskstack:layer":
        layers.extend(ents)
h.block_status(8 << 20, 0, cb)
# (length, value) pairs: 1 MiB from the file, 64K in RAM, the rest of the file.
assert layers[0:2] == [1 << 20, 2], layers
assert layers[2:4] == [65536, 1], layers
assert layers[5] == 2, layers
assert h.pread(65536, 1 << 20) == data
h.shutdown()
EOF
nbdinfo --map=diskstack:layer "$(uri_unix "$sock" overlay)" > "$tmpdir/lmap"
grep -q . "$tmpdir/lmap" || fail "empty diskstack:layer map"

# Export -> export (reading one export while writing another).
nbdcopy "$(uri_unix "$sock" golden)" "$(uri_unix "$sock" overlay)"
nbdcopy "$(uri_unix "$sock" overlay)" "$tmpdir/ov.img"
cmp "$base" "$tmpdir/ov.img" || fail "overlay copy differs"

# Writes to the read-only export are refused (nbdcopy fails).
if nbdcopy "$src" "$(uri_unix "$sock" golden)" 2>"$tmpdir/err"; then
	fail "write to a read-only export succeeded"
fi

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
[ "$base_sum" = "$(sha256sum "$base" | cut -d' ' -f1)" ] || fail "the base image changed"
[ ! -e "$sock" ] || fail "the socket was not removed"
echo "$0: OK"
