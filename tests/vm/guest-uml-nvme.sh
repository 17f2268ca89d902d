# SPDX-License-Identifier: MIT
# guest-uml-nvme.sh: the User-Mode Linux guest of test-uml-nvme.sh (busybox
# sh, run by init.sh). The UML kernel's own NVMe PCI driver (nvme.c,
# transport "pcie") drives diskstack's emulated NVMe function over virt-pci:
# namespace 1 is a memdiff overlay (filesystem, O_DIRECT), namespace 2 a
# loop device the host grows on request ("VMTEST: HOST resize").
. /vm/guest-lib.sh

CTRL=/sys/class/nvme/nvme0
# The disks by each one's nsid (here, before the tests, which run in
# subshells): Linux names nvme0nX in the order its asynchronous namespace
# scan finishes, not by NSID, so under load namespace 2 can be nvme0n1.
B1= B2=
wait_for "[ -b /dev/nvme0n1 ] && [ -b /dev/nvme0n2 ]" 20
for b in nvme0n1 nvme0n2; do
	case $(cat /sys/block/$b/nsid 2>/dev/null) in
	1) B1=$b ;;
	2) B2=$b ;;
	esac
done
N1=/dev/$B1 N2=/dev/$B2

t_probe()
{
	[ -n "$B1" ] && [ -n "$B2" ] ||
		{ fail "no disks with NSIDs 1 and 2 after 20 s (B1='$B1' B2='$B2')"; return 1; }
	info "$N1 (NSID 1) and $N2 (NSID 2) present at $(now) s, $(cat /sys/block/$B1/size) and $(cat /sys/block/$B2/size) sectors"
	[ "$(cat $CTRL/transport)" = pcie ] || { fail "transport is '$(cat $CTRL/transport)', not pcie"; return 1; }
	for a in model serial firmware_rev state queue_count sqsize; do
		info "nvme0 $a = $(cat $CTRL/$a 2>/dev/null)"
	done
	for d in /sys/bus/pci/devices/*; do
		info "pci ${d##*/} vendor=$(cat $d/vendor) device=$(cat $d/device) class=$(cat $d/class) driver=$(basename "$(readlink $d/driver)")"
	done
	grep nvme /proc/interrupts | sed 's/^/VMTEST: INFO irq /'
}

t_fs() { fs_check $N1; }

t_direct()
{
	dd if=/dev/urandom of="$T/src" bs=1M count=16 2>/dev/null
	# 4 KiB requests (one PRP entry each), then 1 MiB ones (PRP lists).
	dd if="$T/src" of=$N1 bs=4k count=64 oflag=direct 2>/dev/null || { fail "4k O_DIRECT write"; return 1; }
	dd if="$T/src" of=$N1 bs=1M count=16 oflag=direct 2>/dev/null || { fail "1M O_DIRECT write"; return 1; }
	dd if=$N1 of="$T/back" bs=1M count=16 iflag=direct 2>/dev/null || { fail "O_DIRECT read"; return 1; }
	cmp "$T/src" "$T/back" || { fail "O_DIRECT read differs from what was written"; return 1; }
	md5sum < "$T/src" | cut -d' ' -f1 > /tmp/direct.md5
}

t_resize()
{
	[ -b $N2 ] || { fail "no $N2"; return 1; }
	s0=$(cat /sys/block/$B2/size)
	echo "VMTEST: HOST resize"
	wait_for "[ \"\$(cat /sys/block/$B2/size)\" != $s0 ]" 30 ||
		{ fail "the size of $B2 stayed $s0 sectors"; return 1; }
	info "$B2: $s0 -> $(cat /sys/block/$B2/size) sectors"
	dmesg | grep -q "$B2: detected capacity change" ||
		{ fail "no 'detected capacity change' in dmesg"; return 1; }
	dmesg | grep 'detected capacity change' | sed 's/^/VMTEST: INFO dmesg: /'
}

t_reset()
{
	echo 1 > $CTRL/reset_controller || { fail "reset_controller write"; return 1; }
	wait_for "[ \"\$(cat $CTRL/state)\" = live ]" 30 ||
		{ fail "state $(cat $CTRL/state) after the reset"; return 1; }
	# The data written before the reset are still there.
	dd if=$N1 of="$T/back" bs=1M count=16 iflag=direct 2>/dev/null || { fail "read after reset"; return 1; }
	[ "$(md5sum < "$T/back" | cut -d' ' -f1)" = "$(cat /tmp/direct.md5)" ] ||
		{ fail "data differ after the reset"; return 1; }
	dmesg | grep -iE 'nvme0: .*reset|nvme nvme0' | tail -n 3 | sed 's/^/VMTEST: INFO dmesg: /'
}

t_shutdown()
{
	# Unbinding runs the driver's remove path: delete the I/O queues,
	# then CC.SHN and wait for CSTS.SHST (the host checks its log).
	echo 0000:00:00.0 > /sys/bus/pci/drivers/nvme/unbind || { fail "unbind"; return 1; }
	wait_for "[ ! -e $CTRL ]" 20 || { fail "nvme0 still there after unbind"; return 1; }
	dmesg | grep -iE 'shutdown (incomplete|timeout)|timeout' && { fail "the shutdown timed out"; return 1; }
	dmesg | grep -iE 'shutdown|nvme' | tail -n 3 | sed 's/^/VMTEST: INFO dmesg: /'
}

run_test probe t_probe
run_test fs t_fs
run_test direct t_direct
run_test resize t_resize
run_test reset t_reset
run_test shutdown t_shutdown
dmesg | grep -E 'virt-pci|virtio|nvme' | sed 's/^/VMTEST: INFO dmesg: /' | tail -n 30
