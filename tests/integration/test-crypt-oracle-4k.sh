#!/bin/sh
# SPDX-License-Identifier: MIT
# test-crypt-oracle-4k.sh: crypt: over a disk with 4096-byte logical sectors
# (a loop device made with losetup --sector-size 4096) uses one 4 KiB sector
# as the XTS data unit and its 4K LBA as the tweak: the backing file matches
# the independent oracle (xts-oracle.py) byte for byte, and decrypts back,
# also through the fused path (crypt over memdiff:, whose RAM layer applies
# the cipher).
# Needs root and loop devices (skips otherwise).
. "$(dirname "$0")/functions.sh"
requires cmp dd head truncate od losetup
py=/usr/bin/python3
requires_python cryptography
[ "$(id -u)" = 0 ] || { echo "$0: needs root for losetup, skipping"; exit 77; }
oracle="$py -I $(cd "$(dirname "$0")" && pwd)/xts-oracle.py"
cd "$tmpdir"

xts_key k.bin
truncate -s 2M plain.img
dd if=/dev/urandom of=plain.img bs=4K count=100 conv=notrunc 2>/dev/null
dd if=/dev/urandom of=plain.img bs=4K count=50 seek=300 conv=notrunc 2>/dev/null
truncate -s 2M backing.img
dev=$(losetup --sector-size 4096 -f --show backing.img 2>/dev/null) ||
	{ echo "$0: cannot set up a 4K loop device, skipping"; exit 77; }
# Evaluated at exit, and cleared once detached: a detach by name after that
# could hit the same /dev/loopN attached meanwhile by a test running in
# parallel.
cleanup_fn '[ -n "$dev" ] && losetup -d "$dev" 2>/dev/null'

expect_exit 0 "$DISKSTACK" info "file:$dev"
grep -q 'sector size: *4096' "$tmpdir/stdout" || fail "the loop device does not have 4K sectors"
expect_exit 0 "$DISKSTACK" copy --quiet plain.img "crypt:xts-aes-256:k.bin:file:$dev"
expect_exit 0 "$DISKSTACK" copy --quiet "crypt:xts-aes-256:k.bin:file:$dev" "file:back.img;create=2M"
cmp plain.img back.img || fail "diskstack does not decrypt its own ciphertext"
# The fused path (memdiff:'s RAM layer applies the cipher) reads it too.
expect_exit 0 "$DISKSTACK" copy --quiet "crypt:xts-aes-256:k.bin:memdiff:file:$dev" \
	"file:back2.img;create=2M"
cmp plain.img back2.img || fail "the fused path does not decrypt 4K ciphertext"
losetup -d "$dev"
dev=""

$oracle encrypt k.bin 4096 plain.img expect.img
cmp expect.img backing.img || fail "4K ciphertext differs from the oracle"
# The 512-byte numbering gives something else: the unit really is 4 KiB.
$oracle encrypt k.bin 512 plain.img expect512.img
cmp -s expect512.img backing.img && fail "4K disk encrypted with 512-byte units"
exit 0
