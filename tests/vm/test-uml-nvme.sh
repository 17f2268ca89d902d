#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-uml-nvme.sh: the real Linux NVMe PCI driver against diskstack's
# emulated NVMe PCI function, without KVM or QEMU: a User-Mode Linux kernel
# (tests/vm/uml-kernel.sh, built once from Debian's linux-source-6.12 and
# cached) connects over virt-pci (vhost-user) to `diskstack uml-nvme`,
# which presents the function with two namespaces: 1 a memdiff overlay, 2
# a loop device the host grows on the guest's request. The guest
# (tests/vm/guest-uml-nvme.sh) checks the probe, ext4 with fsck, O_DIRECT
# write/read/compare, the resize (`detected capacity change`), a
# reset_controller through sysfs and the driver's shutdown path; the host
# then checks that the base under memdiff did not change, that the server
# saw no virt-pci timeout and stops cleanly with no sanitizer report.
# Environment: DISKSTACK_VM_TIMEOUT (seconds, default 300),
# DISKSTACK_VM_KEEP=1 (keep the work directory), DISKSTACK_VM_CACHE.
. "$(dirname "$0")/vm-lib.sh"

MiB=$((1 << 20))
name=uml/nvme

[ "$(id -u)" -eq 0 ] || vm_skip "needs root (loop device, the kernel cache)"
for t in cpio gzip losetup flock timeout ldd /usr/sbin/mke2fs /usr/sbin/e2fsck; do
	command -v "$t" >/dev/null 2>&1 || vm_skip "missing $t (tools/quickstart.sh deps installs it)"
done
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || vm_skip "needs busybox-static"
[ -x "$DISKSTACK" ] || vm_skip "$DISKSTACK is not built"
"$DISKSTACK" uml-nvme --help >/dev/null 2>&1 ||
	vm_skip "'diskstack uml-nvme' (the emulated NVMe PCI function) is not in this build"
mkdir -p "$VM_CACHE" || vm_die "cannot create $VM_CACHE"
UML=$("$VM_DIR/uml-kernel.sh")
case $? in
0) ;;
77) vm_skip "cannot build the UML kernel here (see above)" ;;
*) vm_die "building the UML kernel failed" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-uml-nvme.XXXXXX")
loopdev= ds_pid= uml_pid=
cleanup()
{
	[ -n "$uml_pid" ] && kill "$uml_pid" 2>/dev/null
	[ -n "$ds_pid" ] && kill -KILL "$ds_pid" 2>/dev/null
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# The initramfs: busybox, the suite's /init and scripts, e2fsprogs. UML has
# everything built in, so no modules.
st=$work/stage
mkdir -p "$st"/{bin,sbin,proc,sys,dev,tmp,mnt,vm,lib/modules}
cp /bin/busybox "$st/bin/busybox"
cp "$VM_DIR/init.sh" "$st/init"
chmod +x "$st/init"
cp "$VM_DIR/guest-lib.sh" "$VM_DIR/guest-uml-nvme.sh" "$st/vm/"
echo uml-nvme > "$st/vm/suite"
: > "$st/modules.load"
_vm_copy_with_libs "$st" /usr/sbin/mke2fs /usr/sbin/e2fsck
(cd "$st" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$work/initrd.gz" ||
	vm_die "cannot build the initramfs"

# The disks.
head -c $((64 * MiB)) /dev/urandom > "$work/base.img"
base_md5=$(md5sum < "$work/base.img")
truncate -s $((16 * MiB)) "$work/grow.img"
loopdev=$(losetup --find --show "$work/grow.img") || vm_skip "no loop device on this machine"

sock=$work/virtpci.sock
dslog=$work/diskstack.log
"$DISKSTACK" uml-nvme "$sock" "memdiff:file:$work/base.img" "file:$loopdev" \
	--pidfile "$work/ds.pid" --verbose > "$dslog" 2>&1 &
ds_pid=$!
for _ in $(seq 100); do [ -s "$work/ds.pid" ] && break; sleep 0.1; done
[ -s "$work/ds.pid" ] || { cat "$dslog"; vm_die "diskstack uml-nvme did not start"; }

log=$work/console.log
# virt_pci.max_delay_us: a config/BAR read waits this many 1 us polls for
# the answer (default 40000: too short on a loaded machine).
timeout "${DISKSTACK_VM_TIMEOUT:-300}" "$UML" mem=384M initrd="$work/initrd.gz" \
	virtio_uml.device="$sock:1234" virt_pci.max_delay_us=5000000 \
	con=null con0=null,fd:1 loglevel=6 </dev/null >"$log" 2>&1 &
uml_pid=$!
# host_request ACTION: the guest's request (guest-uml-nvme.sh).
host_request()
{
	case $1 in
	resize)
		# diskstack's file backend follows a block device's size; the
		# function raises a namespace AEN.
		{ truncate -s $((24 * MiB)) "$work/grow.img" && losetup -c "$loopdev"; } ||
			host_fail+="resize failed; " ;;
	*) host_fail+="unknown request '$1'; " ;;
	esac
}
# shellcheck disable=SC2034 # vm_host_requests (vm-lib.sh) counts on it
vm_host_handled=0 host_fail=
while kill -0 $uml_pid 2>/dev/null; do
	vm_host_requests "$log" host_request
	sleep 0.2
done
wait $uml_pid
uml_rc=$?
uml_pid=

r=0
vm_results "$log" "$name" || r=$?
pass() { echo "[$name] PASS host: $*"; }
bad() { echo "[$name] FAIL host: $*"; r=1; }
[ -n "$host_fail" ] && bad "$host_fail"
[ $uml_rc -eq 0 ] && pass "UML powered off (exit 0)" || bad "UML exited with $uml_rc"
grep -aq 'um virt-pci delay' "$log" && bad "UML timed out waiting for a config/BAR read"
if kill -0 "$ds_pid" 2>/dev/null; then
	kill -TERM "$ds_pid"
	wait "$ds_pid"
	ds_rc=$?
	ds_pid=
	[ $ds_rc -eq 0 ] && pass "diskstack uml-nvme stopped cleanly" ||
		bad "diskstack uml-nvme exited $ds_rc after SIGTERM"
else
	ds_pid=
	bad "diskstack uml-nvme died: $(tail -n 5 "$dslog" | tr '\n' ' ')"
fi
if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$dslog"; then
	bad "sanitizer report from diskstack uml-nvme"
	grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$dslog" | head -n 40
fi
grep -q 'controller shutdown complete' "$dslog" &&
	pass "the driver shut the controller down (CC.SHN, then CSTS.SHST complete)" ||
	bad "no completed controller shutdown in the server's log"
grep -h 'UML left after' "$dslog" | sed "s#^#[$name] INFO #"
[ "$(md5sum < "$work/base.img")" = "$base_md5" ] && pass "the memdiff base is unchanged" ||
	bad "the base under memdiff changed"
grep -aE 'virt-pci|nvme|pci 0000' "$log" | grep -v '^VMTEST' | head -n 20 | sed "s#^#[$name] console: #"
[ $r -ne 0 ] && [ $r -ne 77 ] && tail -n 30 "$dslog" | sed "s#^#[$name] diskstack: #"
exit $r
