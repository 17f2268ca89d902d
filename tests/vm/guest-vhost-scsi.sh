# SPDX-License-Identifier: MIT
# guest-vhost-scsi.sh: the guest side of tests/vm/test-vm-vhost-scsi.sh
# (busybox sh): Linux's virtio_scsi driver on a vhost-user-scsi-pci HBA
# whose back-end is `diskstack vhost-user-scsi` on the host, LUN 0 a 64 MiB
# disk and LUN 1 a DVD holding an ISO the host made. ds.resize=1 on the
# command line: the host can grow LUN 0 when asked.
#   - scan: sd for LUN 0 and sr for LUN 1 on target 0, nothing else
#   - ext4 on the disk (mkfs, mount, write, remount, compare, fsck)
#   - the DVD read raw (byte-exact against the ISO) and mounted as iso9660
#   - sg_persist: register, reserve, read keys and reservation, release, clear
#   - sg_reset -d: LOGICAL UNIT RESET on the control queue, answered, and
#     the LU works on after its unit attention
#   - resize: the host grows LUN 0; the guest sees the new capacity from
#     the PARAM_CHANGE event alone (no manual rescan)
#   - eject: START STOP UNIT LOEJ empties the drive; a load brings it back
#   - ctl hot-plug: on the second HBA (PCI 00:10.0, `diskstack serve` with
#     a control socket) the host adds LUN 1 (vhost-scsi-lun-add): a new sd
#     appears from the RESCAN event alone, reads and writes; the host
#     removes it (vhost-scsi-lun-remove): the sd goes on the REMOVED event
. /vm/guest-lib.sh

RESIZE=$(sed -n 's/.*ds\.resize=\([01]\).*/\1/p' /proc/cmdline)
MiB=1048576

# The second HBA's PCI function: its devices are left out of the first's.
CTL_PCI=0000:00:10.0
on_ctl_hba() { readlink -f "$1" | grep -q "/$CTL_PCI/"; }

# lun_dev LUN CLASS: the /dev name of target 0's LUN, CLASS block (sd*) or sr.
lun_dev()
{
	for _d in /sys/block/sd* /sys/block/sr*; do
		[ -e "$_d/device" ] || continue
		on_ctl_hba "$_d/device" && continue
		_hctl=$(basename "$(readlink "$_d/device")")
		case $_hctl in *:0:0:"$1") ;; *) continue ;; esac
		case $2:${_d##*/} in
		block:sd*|sr:sr*) echo "/dev/${_d##*/}"; return 0 ;;
		esac
	done
	return 1
}

hctl_of() { basename "$(readlink "/sys/block/${1#/dev/}/device")"; }

test_scan()
{
	t0=$(now)
	# virtio_scsi scans asynchronously.
	wait_for 'lun_dev 0 block >/dev/null && lun_dev 1 sr >/dev/null' 60 ||
		{ dmesg | tail -n 30; fail "LUN 0 (sd) and LUN 1 (sr) did not both appear"; return 1; }
	d=$(lun_dev 0 block)
	cd=$(lun_dev 1 sr)
	info "after $(elapsed "$t0") s: LUN 0 is $d ($(hctl_of "$d")), LUN 1 is $cd ($(hctl_of "$cd"))"
	n=$(for _s in /sys/class/scsi_device/*; do readlink -f "$_s/device"; done | grep -vc "/$CTL_PCI/")
	[ "$n" = 2 ] || { ls /sys/class/scsi_device; fail "$n SCSI devices, not 2"; return 1; }
	[ "$(blockdev --getsize64 "$d")" = $((64 * MiB)) ] ||
		{ fail "$d is $(blockdev --getsize64 "$d") bytes, not 64 MiB"; return 1; }
	dmesg | grep -iE 'virtio_scsi|scsi [0-9]+:|sd [0-9:]+: \[sd|sr [0-9:]+:' | sed 's/^/    dmesg: /' | head -n 12
}

test_fs()
{
	d=$(lun_dev 0 block) || { skip "no disk"; return 77; }
	fs_check "$d"
}

test_dvd_read()
{
	cd=$(lun_dev 1 sr) || { skip "no DVD"; return 77; }
	read -r want size < /vm/iso.md5
	[ "$(blockdev --getsize64 "$cd")" = "$size" ] ||
		{ fail "$cd is $(blockdev --getsize64 "$cd") bytes, the ISO $size"; return 1; }
	got=$(dd if="$cd" bs=64k 2>/dev/null | md5sum | cut -d' ' -f1)
	[ "$got" = "$want" ] || { fail "raw $cd md5 $got, the ISO's $want"; return 1; }
	mkdir -p /mnt/cd
	mount -t iso9660 -o ro "$cd" /mnt/cd || { dmesg | tail -n 20; fail "mount -t iso9660 $cd"; return 1; }
	(cd /mnt/cd && md5sum -c /vm/dvd.md5) >"$T/md5" 2>&1 || { cat "$T/md5"; umount /mnt/cd; fail "the DVD's files differ"; return 1; }
	umount /mnt/cd
}

test_persist()
{
	d=$(lun_dev 0 block) || { skip "no disk"; return 77; }
	sg_persist --out --register --param-sark=0x1111 "$d" >"$T/pr" 2>&1 || { cat "$T/pr"; fail "REGISTER on $d"; return 1; }
	sg_persist --in --read-keys "$d" >"$T/keys" 2>&1
	grep -q 0x1111 "$T/keys" || { cat "$T/keys"; fail "READ KEYS does not list the key"; return 1; }
	# Exclusive Access (type 3): the holder (this nexus) reads on.
	sg_persist --out --reserve --param-rk=0x1111 --prout-type=3 "$d" >"$T/pr" 2>&1 ||
		{ cat "$T/pr"; fail "RESERVE (exclusive access) on $d"; return 1; }
	sg_persist --in --read-reservation "$d" >"$T/resv" 2>&1
	grep -q 0x1111 "$T/resv" || { cat "$T/resv"; fail "READ RESERVATION does not show the holder"; return 1; }
	dd if="$d" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null || { fail "the holder cannot read"; return 1; }
	sg_persist --out --release --param-rk=0x1111 --prout-type=3 "$d" >"$T/pr" 2>&1 ||
		{ cat "$T/pr"; fail "RELEASE on $d"; return 1; }
	sg_persist --out --clear --param-rk=0x1111 "$d" >"$T/pr" 2>&1 || { cat "$T/pr"; fail "CLEAR on $d"; return 1; }
	sg_persist --in --read-keys "$d" >"$T/keys" 2>&1
	grep -q 'NO registered reservation keys' "$T/keys" || { cat "$T/keys"; fail "keys left after CLEAR"; return 1; }
}

test_reset()
{
	d=$(lun_dev 0 block) || { skip "no disk"; return 77; }
	cd=$(lun_dev 1 sr) || { skip "no DVD"; return 77; }
	for dev in "$d" "$cd"; do
		# sg_reset -d: the SCSI mid-layer's device reset, which
		# virtio_scsi sends as a LOGICAL UNIT RESET TMF.
		sg_reset -d "$dev" >"$T/reset" 2>&1 || { cat "$T/reset"; fail "sg_reset -d $dev"; return 1; }
	done
	dmesg | grep -i 'device reset' | tail -n 2 | sed 's/^/    dmesg: /'
	dd if="$d" of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null ||
		{ dmesg | tail -n 10; fail "$d does not read after the reset"; return 1; }
	wait_for 'sg_turs "$cd" >/dev/null 2>&1' 10 || { sg_turs "$cd"; fail "$cd not ready after the reset"; return 1; }
}

test_resize()
{
	[ "$RESIZE" = 1 ] || { skip "the host has no loop device to grow"; return 77; }
	d=$(lun_dev 0 block) || { skip "no disk"; return 77; }
	echo "VMTEST: HOST-RESIZE"
	# No read, no rescan from here: the back-end's PARAM_CHANGE event
	# (2Ah/09h) makes virtio_scsi rescan the disk, whose READ CAPACITY
	# meets the unit attention first.
	wait_for '[ "$(blockdev --getsize64 "$d")" = $((96 * MiB)) ]' 60 ||
		{ dmesg | tail -n 20; fail "$d still $(blockdev --getsize64 "$d") bytes after the host grew it to 96 MiB"; return 1; }
	dmesg | grep -qi 'capacity data has changed\|capacity change' &&
		info "the kernel saw it: $(dmesg | grep -i 'capacity' | tail -n 1)"
	last_mib_rw "$d" 95
}

test_eject()
{
	cd=$(lun_dev 1 sr) || { skip "no DVD"; return 77; }
	dvd_eject_load "$cd"
}

# ctl_lun_dev LUN: the sd of the second HBA's LUN.
ctl_lun_dev()
{
	for _d in /sys/block/sd*; do
		[ -e "$_d/device" ] && on_ctl_hba "$_d/device" || continue
		case $(basename "$(readlink "$_d/device")") in *:0:0:"$1") echo "/dev/${_d##*/}"; return 0 ;; esac
	done
	return 1
}

test_ctl_hotplug()
{
	wait_for 'ctl_lun_dev 0 >/dev/null' 60 ||
		{ dmesg | tail -n 20; fail "the second HBA's LUN 0 did not appear"; return 1; }
	echo "VMTEST: HOST-CTL vhost-scsi-lun-add socket=ctl-vus.sock lun=1 spec=mem:16M"
	# No rescan from here: the RESCAN event makes virtio_scsi probe it.
	wait_for 'ctl_lun_dev 1 >/dev/null' 60 ||
		{ dmesg | tail -n 20; fail "LUN 1 added through the control socket did not appear"; return 1; }
	d=$(ctl_lun_dev 1)
	wait_for '[ "$(blockdev --getsize64 "$d" 2>/dev/null)" = $((16 * MiB)) ]' 30 ||
		{ fail "$d is $(blockdev --getsize64 "$d") bytes, not 16 MiB"; return 1; }
	info "LUN 1 added through ctl is $d ($(hctl_of "$d"))"
	last_mib_rw "$d" 15 || return 1
	echo "VMTEST: HOST-CTL vhost-scsi-lun-remove socket=ctl-vus.sock lun=1"
	# The REMOVED event alone makes virtio_scsi delete the device.
	wait_for '[ ! -e "/sys/block/${d#/dev/}" ]' 60 ||
		{ dmesg | tail -n 20; fail "$d is still there after its LUN was removed"; return 1; }
	ctl_lun_dev 0 >/dev/null || { fail "LUN 0 went with LUN 1"; return 1; }
}

run_test vhost-scsi-scan test_scan
run_test vhost-scsi-ext4 test_fs
run_test vhost-scsi-dvd-read test_dvd_read
run_test vhost-scsi-persistent-reservations test_persist
run_test vhost-scsi-tmf-reset test_reset
run_test vhost-scsi-resize test_resize
run_test vhost-scsi-eject test_eject
run_test vhost-scsi-ctl-hotplug test_ctl_hotplug
