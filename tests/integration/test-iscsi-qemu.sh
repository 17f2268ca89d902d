#!/bin/sh
# SPDX-License-Identifier: MIT
# test-iscsi-qemu.sh: QEMU's iSCSI initiator (libiscsi inside
# qemu-block-extra's block-iscsi module) against `diskstack serve --iscsi`:
# qemu-img info/convert/compare and qemu-io pattern writes and reads over
# iscsi://127.0.0.1:PORT/IQN/LUN on a disk LUN, and a DVD LUN (an ISO made
# with genisoimage, served with ",dvd") read back byte for byte and refusing
# writes. The file behind the disk LUN is checked on the host as well.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires qemu-img qemu-io iscsi-inq genisoimage cmp
"$DISKSTACK" serve --help 2>&1 | grep -q -- '--iscsi' ||
	{ echo "$0: this diskstack has no iSCSI target (serve --iscsi), skipping"; exit 77; }
# qemu-img loads block-iscsi.so on demand: without qemu-block-extra it
# does not know the protocol.
qemu-img --help | grep -q ' iscsi' || skip "qemu-img has no iscsi driver (qemu-block-extra)"

iqn=iqn.2024-01.org.diskstack:qemu
port=$(free_port)
disk=$tmpdir/disk.img
truncate -s 64M "$disk"
mkdir "$tmpdir/iso"
head -c 3000000 /dev/urandom > "$tmpdir/iso/random.bin"
echo "diskstack DVD" > "$tmpdir/iso/hello.txt"
genisoimage -quiet -R -J -V DSTEST -o "$tmpdir/dvd.iso" "$tmpdir/iso" || fail "genisoimage"
cp "$tmpdir/dvd.iso" "$tmpdir/dvd.orig"
serve srv --iscsi "127.0.0.1:$port" --target "$iqn" --lun "0=file:$disk" \
	--lun "1=file:$tmpdir/dvd.iso,dvd"
url=iscsi://127.0.0.1:$port/$iqn

# info: the size and that the raw probe reads LBA 0.
expect_exit 0 qemu-img info "$url/0"
grep -q 'virtual size: 64 MiB (67108864 bytes)' "$tmpdir/stdout" || { cat "$tmpdir/stdout"; fail "disk size"; }

# convert in (data, a hole, data at the last sector), compare, convert out.
head -c 8M /dev/urandom > "$tmpdir/src.img"
truncate -s 64M "$tmpdir/src.img"
dd if=/dev/urandom of="$tmpdir/src.img" bs=4096 seek=$((64 * 256 - 1)) count=1 conv=notrunc 2>/dev/null
expect_exit 0 qemu-img convert -n -f raw -O raw "$tmpdir/src.img" "$url/0"
expect_exit 0 qemu-img compare -f raw -F raw "$tmpdir/src.img" "$url/0"
expect_exit 0 qemu-img convert -f raw -O raw "$url/0" "$tmpdir/out.img"
cmp "$tmpdir/src.img" "$tmpdir/out.img" || fail "qemu-img convert from the LUN differs"
cmp "$tmpdir/src.img" "$disk" || fail "the served file differs from what qemu-img wrote"

# qemu-io: patterns (WRITE(10) with FUA in QEMU's default cache mode),
# an unaligned write (QEMU reads, modifies, writes), zeroes, and a second
# process reading what the first wrote.
expect_exit 0 qemu-io -f raw -c 'write -P 0xab 1M 1M' -c 'read -P 0xab 1M 1M' \
	-c 'write -P 0xcd 3M 4096' -c 'write -P 0x5a 6M 1000' -c 'write -z 8M 2M' \
	-c 'write -P 0xee 67104768 4096' -c flush "$url/0"
expect_exit 0 qemu-io -f raw -r -c 'read -P 0xab 1M 1M' -c 'read -P 0xcd 3M 4096' \
	-c 'read -P 0x5a 6M 1000' -c 'read -P 0 8M 2M' -c 'read -P 0xee 67104768 4096' "$url/0"
grep -q 'Pattern verification failed' "$tmpdir/stdout" "$tmpdir/stderr" &&
	{ cat "$tmpdir/stdout" "$tmpdir/stderr"; fail "qemu-io pattern mismatch"; }
cmp -n 1000 -i 6291456:0 "$disk" /dev/zero >/dev/null 2>&1 && fail "the unaligned write did not reach the file"

# The DVD LUN: a CD/DVD device (MMC, peripheral type 05h) with removable
# media, its size, every byte, and writes refused.
expect_exit 0 iscsi-inq "$url/1"
grep -qi '^Peripheral Device Type:MMC' "$tmpdir/stdout" && grep -q '^Removable:1' "$tmpdir/stdout" ||
	{ head -n 4 "$tmpdir/stdout"; fail "LUN 1 (,dvd) is not a removable CD/DVD device"; }
expect_exit 0 qemu-img info "$url/1"
grep -q "($(stat -c %s "$tmpdir/dvd.iso") bytes)" "$tmpdir/stdout" || { cat "$tmpdir/stdout"; fail "DVD size"; }
expect_exit 0 qemu-img convert -f raw -O raw "$url/1" "$tmpdir/dvd-back.iso"
cmp "$tmpdir/dvd.iso" "$tmpdir/dvd-back.iso" || fail "the DVD LUN read back differs from the ISO"
expect_exit 0 qemu-img compare -f raw -F raw "$tmpdir/dvd.iso" "$url/1"
_rc=0
qemu-io -f raw -c 'write -P 0x11 0 2048' "$url/1" >"$tmpdir/dvdw.out" 2>&1 || _rc=$?
[ $_rc -ne 0 ] || { cat "$tmpdir/dvdw.out"; fail "a write to the DVD LUN succeeded"; }
cmp "$tmpdir/dvd.orig" "$tmpdir/dvd.iso" || fail "the ISO file changed"

serve_stop srv
[ "$serve_status" -eq 0 ] || { cat "$tmpdir/srv.log" >&2; fail "serve exited with $serve_status"; }
