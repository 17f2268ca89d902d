#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-nbd.sh: the Linux kernel's NBD client and QEMU's NBD client
# against diskstack's NBD server (tests/vm/guest-nbd.sh), on Debian's 6.12
# and bookworm 6.1 kernels. The host serves two exports with
# `diskstack serve`: "vda" on a Unix socket, which QEMU uses as the backend
# of a virtio-blk disk (nbd+unix://), and "net" over TCP on 127.0.0.1, which
# the guest's nbd-client reaches as 10.0.2.2 through QEMU user networking.
# After each boot the host checks the filesystem the guest left on "vda".
. "$(dirname "$0")/vm-lib.sh"

"$DISKSTACK" serve --help >/dev/null 2>&1 ||
	vm_skip "the NBD server is not in this build"
vm_requires
command -v debugfs >/dev/null 2>&1 || vm_skip "debugfs (e2fsprogs) is missing"

work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-nbd.XXXXXX")
srv_pid=
cleanup()
{
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# start_server: serves "vda" (file) on a Unix socket and "net" (RAM) on TCP.
start_server()
{
	rm -f "$work/vda.img"
	truncate -s 256M "$work/vda.img"
	vm_serve_retry "diskstack serve" launch_server
}

# launch_server: diskstack serve on $port and $work/nbd.sock.
launch_server()
{
	rm -f "$work/nbd.sock"
	"$DISKSTACK" serve -U "$work/nbd.sock" -i 127.0.0.1 -p "$port" -P "$work/srv.pid" \
		--export "vda=file:$work/vda.img" --export "net=mem:256M" 2>>"$work/serve.log" &
}

for kernel in ${DISKSTACK_VM_KERNELS:-6.12 6.1}; do
	vm_prepare_initrd "$kernel" nbd
	start_server
	log=$work/console-$kernel-nbd.log
	vm_boot "$log" "${DISKSTACK_VM_TIMEOUT:-300}" "ds.net=1 ds.port=$port" \
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
		-drive "file=nbd+unix:///vda?socket=$work/nbd.sock,format=raw,if=virtio,cache=none"
	vm_stop_server
	r=0
	vm_results "$log" "$kernel/nbd" || r=$?
	if [ $r -eq 0 ]; then
		# The filesystem the guest wrote through QEMU's NBD client, read
		# back on the host from the file diskstack served.
		if e2fsck -fn "$work/vda.img" >"$work/fsck.out" 2>&1 &&
			[ "$(debugfs -R 'cat /from-guest' "$work/vda.img" 2>/dev/null)" = "written by $KVER" ]; then
			echo "[$kernel/nbd] PASS host-side check of the export QEMU wrote"
		else
			cat "$work/fsck.out"
			echo "[$kernel/nbd] FAIL the export QEMU wrote does not hold the guest's filesystem"
			r=1
		fi
	fi
	vm_tally $r || sed 's/^/    serve: /' "$work/serve.log" | tail -n 20
done
vm_exit
