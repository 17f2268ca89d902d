#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-vhost-scsi.sh: QEMU guests (Debian's 6.12 and 6.1 kernels, TCG)
# with a vhost-user-scsi-pci HBA whose back-end is `diskstack
# vhost-user-scsi` on the host (tests/vm/guest-vhost-scsi.sh has the guest
# side). The back-end serves target 0 with
#   LUN 0  a disk: a loop device over a 64 MiB file, so that the host can
#          grow it while the guest runs (the file backend follows a device's
#          size from kernel uevents); a plain file if loop devices are
#          unavailable (the resize check then skips)
#   LUN 1  a DVD: an ISO made here with genisoimage, file:<iso>,dvd
# The guest asks for the resize with a "VMTEST: HOST-RESIZE" console line;
# a watcher here grows the file and tells the loop driver (losetup -c).
# A second HBA, at PCI address 10h, is served by `diskstack serve
# --vhost-user-scsi` with a control socket (LUN 0 mem:8M): the guest asks
# for a LUN to be added and removed there ("VMTEST: HOST-CTL" lines,
# vm_watch_ctl) and checks the new sd comes and goes on the events alone.
# Guest RAM is a shared memfd the back-ends map (docs/vhost.md). No
# reconnect= on the chardev: QEMU 7.2 cannot reconnect vhost-user-scsi.
# Environment: DISKSTACK_VM_KERNELS, DISKSTACK_VM_TIMEOUT, DISKSTACK_VM_KEEP=1
# as in vm-lib.sh.
. "$(dirname "$0")/vm-lib.sh"

"$DISKSTACK" vhost-user-scsi --help >/dev/null 2>&1 ||
	vm_skip "this diskstack has no vhost-user-scsi back-end"
vm_requires
for t in genisoimage sg_persist sg_reset sg_start md5sum; do
	command -v "$t" >/dev/null 2>&1 || vm_skip "$t is missing (tools/quickstart.sh deps)"
done
# The back-end maps all of guest RAM: keep it small.
VM_MEM=${DISKSTACK_VM_MEM:-1G}
VM_EXTRA_MODS="virtio_scsi sd_mod sr_mod cdrom sg isofs"

work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-vscsi.XXXXXX")
srv_pid= loopdev= watch_pid= serve_pid= ctl_watch_pid=
cleanup()
{
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	[ -n "$ctl_watch_pid" ] && kill "$ctl_watch_pid" 2>/dev/null
	[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# Called by vm_initrd: sg3-utils and the DVD's checksums.
vm_stage_extra()
{
	local st=$1
	_vm_copy_with_libs "$st" "$(command -v sg_persist)" "$(command -v sg_reset)" \
		"$(command -v sg_start)" "$(command -v sg_turs)"
	cp "$work/dvd.md5" "$work/iso.md5" "$st/vm/"
}

# The DVD: a small tree with a random file and a text file; the guest
# checks both its files and the whole raw image.
mkdir -p "$work/iso"
head -c 3000000 /dev/urandom > "$work/iso/random.bin"
echo "diskstack DVD" > "$work/iso/hello.txt"
genisoimage -quiet -R -J -V DSTEST -o "$work/dvd.iso" "$work/iso" || vm_die "genisoimage failed"
(cd "$work/iso" && md5sum random.bin hello.txt) > "$work/dvd.md5"
echo "$(md5sum < "$work/dvd.iso" | cut -d' ' -f1) $(stat -c %s "$work/dvd.iso")" > "$work/iso.md5"

# start_backend: a fresh 64 MiB disk (through a loop device when possible)
# and the DVD; sets sock, srv_pid, loopdev.
start_backend()
{
	local disk
	rm -f "$work/disk.img" "$work/vus.pid"
	truncate -s 64M "$work/disk.img"
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	loopdev=$(losetup -f --show "$work/disk.img" 2>/dev/null) || loopdev=
	disk=${loopdev:-$work/disk.img}
	sock=$work/vus.sock
	"$DISKSTACK" vhost-user-scsi "$sock" -P "$work/vus.pid" --lun "0=file:$disk" \
		--lun "1=file:$work/dvd.iso,dvd" 2>>"$work/backend.log" &
	srv_pid=$!
	vm_wait_pidfile "$work/vus.pid" "$srv_pid" && return 0
	cat "$work/backend.log" >&2
	vm_die "diskstack vhost-user-scsi did not start"
}

# start_ctl_backend: serve's device for the second HBA, its socket and
# control socket named relative to $work (the guest's HOST-CTL lines name
# the device by that path); sets serve_pid.
start_ctl_backend()
{
	rm -f "$work/serve.pid" "$work/ctl-vus.sock" "$work/ctl.sock"
	(cd "$work" && exec "$DISKSTACK" serve -U nbd.sock -P serve.pid --control ctl.sock \
		--vhost-user-scsi ctl-vus.sock mem:8M) 2>>"$work/serve.log" &
	serve_pid=$!
	vm_wait_pidfile "$work/serve.pid" "$serve_pid" && return 0
	cat "$work/serve.log" >&2
	vm_die "diskstack serve --vhost-user-scsi did not start"
}

for kernel in ${DISKSTACK_VM_KERNELS:-6.12 6.1}; do
	vm_prepare_initrd "$kernel" vhost-scsi
	: > "$work/backend.log"
	: > "$work/serve.log"
	start_backend
	start_ctl_backend
	log=$work/console-$kernel-vhost-scsi.log
	: > "$log"
	resize=0
	if [ -n "$loopdev" ]; then
		resize=1
		vm_watch_resize "$log"
	fi
	vm_watch_ctl "$log" "$work/ctl.sock"
	vm_boot "$log" "${DISKSTACK_VM_TIMEOUT:-420}" "ds.resize=$resize" -nic none \
		-object "memory-backend-memfd,id=mem0,size=$VM_MEM,share=on" -machine memory-backend=mem0 \
		-chardev "socket,id=vus0,path=$sock" -device vhost-user-scsi-pci,chardev=vus0,num_queues=1 \
		-chardev "socket,id=vus1,path=$work/ctl-vus.sock" \
		-device vhost-user-scsi-pci,chardev=vus1,num_queues=1,addr=0x10
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	watch_pid=
	kill "$ctl_watch_pid" 2>/dev/null
	ctl_watch_pid=
	r=0
	vm_results "$log" "$kernel/vhost-scsi" || r=$?
	# The back-end must have survived everything the guest did.
	if ! kill -0 "$srv_pid" 2>/dev/null; then
		echo "[$kernel/vhost-scsi] FAIL host: the back-end exited"
		r=1
	fi
	if ! kill -0 "$serve_pid" 2>/dev/null; then
		echo "[$kernel/vhost-scsi] FAIL host: serve (the second HBA's back-end) exited"
		r=1
	fi
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/backend.log" "$work/serve.log"; then
		echo "[$kernel/vhost-scsi] FAIL host: sanitizer report from a back-end"
		r=1
	fi
	vm_stop_server
	kill "$serve_pid" 2>/dev/null
	wait "$serve_pid" 2>/dev/null
	serve_pid=
	vm_tally $r || sed 's/^/    back-end: /' "$work/backend.log" | tail -n 30
done
vm_exit
