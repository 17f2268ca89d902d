# SPDX-License-Identifier: MIT
# guest-nbd.sh: the Linux kernel and QEMU as clients of diskstack's NBD
# server, run inside the guest by /init (busybox sh):
#   - the kernel NBD client (nbd-client + nbd.ko) against `diskstack serve`
#     running in the guest on a Unix socket;
#   - the same client against the host's `diskstack serve` over QEMU user
#     networking (10.0.2.2 is the host's loopback; ds.port= on the command
#     line), export "net";
#   - /dev/vda, a virtio-blk disk whose QEMU backend is nbd+unix:// served
#     by the host (export "vda"); the host checks the filesystem afterwards.
. /vm/guest-lib.sh

NBD_CLIENT=/usr/sbin/nbd-client
PORT=$(sed -n 's/.*ds\.port=\([0-9]*\).*/\1/p' /proc/cmdline)

nbd_attach()
{
	# nbd-client 3.24: -N export name, -b block size; a Unix socket with -u.
	timeout 30 $NBD_CLIENT "$@" -b 4096 >"$T/nbd-client.out" 2>&1 ||
		{ cat "$T/nbd-client.out"; return 1; }
}

nbd_detach() { $NBD_CLIENT -d "$1" >/dev/null 2>&1; }

test_nbd_guest_unix()
{
	"$DS" serve -U "$T/nbd.sock" -P "$T/srv.pid" mem:256M 2>>"$T/ds.err" &
	wait_for '[ -S '"$T"'/nbd.sock ] && [ -s '"$T"'/srv.pid ]' 30 || { fail "diskstack serve did not start"; return 1; }
	nbd_attach -u "$T/nbd.sock" /dev/nbd0 || { fail "nbd-client -u"; return 1; }
	[ "$(blockdev --getsize64 /dev/nbd0)" = $((256 << 20)) ] || { nbd_detach /dev/nbd0; fail "size"; return 1; }
	fs_check /dev/nbd0 || { nbd_detach /dev/nbd0; return 1; }
	fio --name=nbd --filename=/dev/nbd0 --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
		--iodepth=16 --size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 >"$T/fio.out" 2>&1 ||
		{ cat "$T/fio.out"; nbd_detach /dev/nbd0; fail "fio verify on /dev/nbd0"; return 1; }
	nbd_detach /dev/nbd0
}

test_nbd_host_tcp()
{
	[ -n "$PORT" ] || { skip "no host server port (ds.port=)"; return 77; }
	ip addr show eth0 2>/dev/null | grep -q 10.0.2.15 || { fail "no network (eth0)"; return 1; }
	nbd_attach 10.0.2.2 "$PORT" /dev/nbd1 -N net || { fail "nbd-client 10.0.2.2 $PORT -N net"; return 1; }
	fs_check /dev/nbd1 || { nbd_detach /dev/nbd1; return 1; }
	nbd_detach /dev/nbd1
}

test_qemu_nbd_vda()
{
	[ -b /dev/vda ] || { fail "no /dev/vda (QEMU's nbd+unix backend)"; return 1; }
	info "/dev/vda: $(blockdev --getsize64 /dev/vda) bytes"
	fs_check /dev/vda || return 1
	# Leave a file for the host to find through its own server.
	mount -t ext4 /dev/vda /mnt/n && echo "written by $(uname -r)" > /mnt/n/from-guest &&
		umount /mnt/n || { fail "final write"; return 1; }
	sync
}

if ! "$DS" serve --help >/dev/null 2>&1; then
	echo "VMTEST: SKIP nbd: this diskstack has no 'serve' command (the NBD server)"
	exit 0
fi
run_test nbd-kernel-client-guest-unix test_nbd_guest_unix
run_test nbd-kernel-client-host-tcp test_nbd_host_tcp
run_test qemu-nbd-client-virtio-blk test_qemu_nbd_vda
