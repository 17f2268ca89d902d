#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nbd-fs.sh: a real ext4 filesystem on an NBD export, on the host
# without the kernel NBD driver: `diskstack serve` of a memdiff: overlay
# over a base image -> nbdfuse (a FUSE file) -> a loop device -> mkfs.ext4
# -> mount. Files are written, the filesystem unmounted and remounted
# (caches dropped), and read back; the base image is unchanged at the end.
# Needs root, /dev/fuse and loop devices (skips otherwise).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires nbdfuse fusermount3 losetup mkfs.ext4 mount umount mountpoint cmp sha256sum truncate
[ "$(id -u)" = 0 ] || { echo "$0: needs root, skipping"; exit 77; }
[ -c /dev/fuse ] || { echo "$0: no /dev/fuse, skipping"; exit 77; }

sock=$tmpdir/s.sock
base=$tmpdir/base.img
mkdir -p "$tmpdir/fuse" "$tmpdir/mnt"
truncate -s 64M "$base"
dd if=/dev/urandom of="$base" bs=1M count=1 seek=40 conv=notrunc 2>/dev/null
base_sum=$(sha256sum "$base" | cut -d' ' -f1)

serve srv -U "$sock" "memdiff:file:$base"

loop=""
cleanup_fn 'mountpoint -q "$tmpdir/mnt" && umount "$tmpdir/mnt"; [ -n "$loop" ] && losetup -d "$loop"; mountpoint -q "$tmpdir/fuse" && fusermount3 -u "$tmpdir/fuse"'
nbdfuse "$tmpdir/fuse/disk.img" --unix "$sock" &
fuse_pid=$!
echo "$fuse_pid" > "$tmpdir/fuse.pid"
cleanup_fn "stop_bg '$tmpdir/fuse.pid'"
i=0
while [ ! -e "$tmpdir/fuse/disk.img" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "nbdfuse did not appear"
	kill -0 "$fuse_pid" 2>/dev/null || { echo "$0: nbdfuse cannot run here, skipping"; exit 77; }
	sleep 0.1
done
loop=$(losetup --find --show "$tmpdir/fuse/disk.img" 2>/dev/null) ||
	{ echo "$0: no loop device available, skipping"; exit 77; }
mkfs.ext4 -q -F "$loop" || fail "mkfs.ext4"
mount "$loop" "$tmpdir/mnt" || fail "mount"
dd if=/dev/urandom of="$tmpdir/a.bin" bs=1M count=8 2>/dev/null
cp "$tmpdir/a.bin" "$tmpdir/mnt/a.bin"
mkdir "$tmpdir/mnt/dir"
for n in 1 2 3 4 5 6 7 8; do
	echo "file $n" > "$tmpdir/mnt/dir/f$n"
done
sync
umount "$tmpdir/mnt"
echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
mount "$loop" "$tmpdir/mnt" || fail "remount"
cmp "$tmpdir/a.bin" "$tmpdir/mnt/a.bin" || fail "a.bin differs after remount"
[ "$(cat "$tmpdir/mnt/dir/f5")" = "file 5" ] || fail "dir/f5 differs after remount"
umount "$tmpdir/mnt"
# fsck agrees the filesystem is clean.
e2fsck -fn "$loop" > "$tmpdir/fsck.out" 2>&1 || { cat "$tmpdir/fsck.out"; fail "e2fsck"; }
losetup -d "$loop"
loop=""
fusermount3 -u "$tmpdir/fuse"
wait "$fuse_pid" 2>/dev/null || true
rm -f "$tmpdir/fuse.pid"

serve_stop srv
[ "$serve_status" = 0 ] || { cat "$tmpdir/srv.log"; fail "server exit status $serve_status"; }
[ "$base_sum" = "$(sha256sum "$base" | cut -d' ' -f1)" ] || fail "the base image changed"
echo "$0: OK"
