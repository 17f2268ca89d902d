#!/bin/sh
# SPDX-License-Identifier: MIT
# test-vhd-qemu.sh: fixed VHDs interoperate with qemu-img: images made by
# `qemu-img create/convert -f vpc -o subformat=fixed` open and read back
# the raw content; images made by diskstack compare equal to the raw
# content in qemu-img and are not recognised as anything but raw+footer.
. "$(dirname "$0")/functions.sh"
requires qemu-img cmp truncate head tail od

raw=$tmpdir/raw.img
head -c 4194304 /dev/urandom > "$raw"

# Reads a VHD through diskstack into a raw file of SIZE bytes.
vhd_to_raw()
{
	expect_exit 0 "$DISKSTACK" copy "file:$1,ro" "file:$2;create=$3"
}

# Data region of a VHD (current_size, from the footer) in bytes.
vhd_size()
{
	tail -c 464 "$1" | head -c 8 | od -An -tu1 |
		awk '{ v = 0; for (i = 1; i <= NF; i++) v = v * 256 + $i; print v }'
}

# 1. qemu-img convert (default: the size is rounded up to the CHS geometry,
#    the tail reads as zeroes).
qemu-img convert -f raw -O vpc -o subformat=fixed "$raw" "$tmpdir/q1.vhd"
size=$(vhd_size "$tmpdir/q1.vhd")
[ "$size" -ge 4194304 ] || fail "qemu convert: unexpected size $size"
expect_exit 0 "$DISKSTACK" info "file:$tmpdir/q1.vhd"
grep -q "^type: *vhd1$" "$tmpdir/stdout" || fail "qemu convert: not opened as vhd1"
grep -q "^creator: qemu$" "$tmpdir/stdout" || fail "qemu convert: creator"
vhd_to_raw "$tmpdir/q1.vhd" "$tmpdir/q1.raw" "$size"
cmp -n 4194304 "$raw" "$tmpdir/q1.raw" || fail "qemu convert: data differs"
if [ "$size" -gt 4194304 ]; then
	tail -c $((size - 4194304)) "$tmpdir/q1.raw" | cmp -n $((size - 4194304)) - /dev/zero ||
		fail "qemu convert: tail not zero"
fi

# 2. qemu-img convert with force_size (exact size).
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$raw" "$tmpdir/q2.vhd"
[ "$(vhd_size "$tmpdir/q2.vhd")" = 4194304 ] || fail "force_size: size"
vhd_to_raw "$tmpdir/q2.vhd" "$tmpdir/q2.raw" 4194304
cmp "$raw" "$tmpdir/q2.raw" || fail "force_size: data differs"

# 3. qemu-img create: all zeroes, writable through diskstack, and qemu
#    reads back what diskstack wrote.
qemu-img create -f vpc -o subformat=fixed "$tmpdir/q3.vhd" 8M >/dev/null
size=$(vhd_size "$tmpdir/q3.vhd")
expect_exit 0 "$DISKSTACK" copy "file:$raw" "file:$tmpdir/q3.vhd"
qemu-img convert -f vpc -O raw "$tmpdir/q3.vhd" "$tmpdir/q3.raw"
cmp -n 4194304 "$raw" "$tmpdir/q3.raw" || fail "qemu create: qemu reads other data"
tail -c 512 "$tmpdir/q3.vhd" | head -c 8 | grep -q conectix || fail "qemu create: footer lost"

# 4. Made by diskstack: qemu-img compare against the raw content.
expect_exit 0 "$DISKSTACK" copy "file:$raw" "file:$tmpdir/d.vhd;create=4M"
[ "$(stat -c %s "$tmpdir/d.vhd")" = 4194816 ] || fail "diskstack vhd: file size"
qemu-img compare -f vpc -F raw "$tmpdir/d.vhd" "$raw" >/dev/null ||
	fail "qemu-img compare: diskstack vhd differs from the raw content"
qemu-img info -f vpc --output=json "$tmpdir/d.vhd" > "$tmpdir/info.json"
grep -q '"virtual-size": 4194304' "$tmpdir/info.json" || fail "qemu-img info: size"
# qemu-img check has no checker for vpc; it says so (exit 63). Anything
# else is a failure.
rc=0
qemu-img check -f vpc "$tmpdir/d.vhd" >"$tmpdir/check.out" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
	[ $rc -eq 63 ] && grep -q "does not support checks" "$tmpdir/check.out" ||
		{ cat "$tmpdir/check.out" >&2; fail "qemu-img check: exit $rc"; }
fi

# 5. A dynamic VHD is refused with the message of docs/openvmm-compat.md
#    §4.6.
qemu-img create -f vpc -o subformat=dynamic "$tmpdir/dyn.vhd" 8M >/dev/null
expect_exit 1 "$DISKSTACK" info "file:$tmpdir/dyn.vhd"
expect_stderr "non-fixed VHD not supported"

echo "test-vhd-qemu: ok"
