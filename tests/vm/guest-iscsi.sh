# SPDX-License-Identifier: MIT
# guest-iscsi.sh: the Linux iSCSI initiator against the host's
# `diskstack serve --iscsi` (tests/vm/test-vm-iscsi.sh), inside the guest
# (busybox sh). The kernel command line carries ds.port= and ds.target=;
# the host is 10.0.2.2 (QEMU user networking). Sessions are made with
# open-iscsi's iscsistart (no iscsid, no discovery: behind the NAT the
# portal a target advertises is not the one the guest reaches), one per
# initiator name:
#   - login: LUN 0 appears as /dev/sdX (LUN 1 as /dev/srN: the DVD test)
#   - ext4 on the disk (mkfs, mount, write, remount, compare, fsck)
#   - fio --verify=crc32c on the raw disk
#   - resize: the host grows LUN 0; the guest sees it after the capacity
#     unit attention and a rescan
#   - sg_persist: registrations and an Exclusive Access reservation between
#     two sessions (two initiator names, two I_T nexuses to the same LU)
#   - the DVD mounted as iso9660 and compared; eject (START STOP UNIT)
. /vm/guest-lib.sh

PORT=$(sed -n 's/.*ds\.port=\([0-9]*\).*/\1/p' /proc/cmdline)
TARGET=$(sed -n 's/.*ds\.target=\([^ ]*\).*/\1/p' /proc/cmdline)
RESIZE=$(sed -n 's/.*ds\.resize=\([01]\).*/\1/p' /proc/cmdline)
# ds.luns=DISK,DVD (tgt keeps LUN 0 for itself: 1,2 there).
LUNS=$(sed -n 's/.*ds\.luns=\([0-9]*,[0-9]*\).*/\1/p' /proc/cmdline)
DISK_LUN=${LUNS%,*} DVD_LUN=${LUNS#*,}
# ds.ctl=1: the host runs serve's control socket and acts on HOST-CTL lines.
CTL=$(sed -n 's/.*ds\.ctl=\([01]\).*/\1/p' /proc/cmdline)
[ -n "$LUNS" ] || { DISK_LUN=0 DVD_LUN=1; }
INIT1=iqn.2024-01.org.diskstack:vm-guest-1
INIT2=iqn.2024-01.org.diskstack:vm-guest-2
MiB=1048576

# Where open-iscsi looks for its files; iscsistart reads iscsid.conf only.
mkdir -p /etc/iscsi /run/lock/iscsi /var/lib/iscsi
echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd
echo "InitiatorName=$INIT1" > /etc/iscsi/initiatorname.iscsi
cat > /etc/iscsi/iscsid.conf <<'EOF'
node.startup = manual
node.session.iscsi.InitialR2T = No
node.session.iscsi.ImmediateData = Yes
node.session.iscsi.FirstBurstLength = 262144
node.session.iscsi.MaxBurstLength = 16776192
node.conn[0].iscsi.MaxRecvDataSegmentLength = 262144
node.conn[0].timeo.noop_out_interval = 5
node.conn[0].timeo.noop_out_timeout = 5
EOF

# login INITIATOR [IFACE]: one session to the host's target. iscsistart
# refuses a second session to the same target and portal on the same iface
# ("session exists") whatever the initiator name, so a second session
# names an iface of its own.
login()
{
	timeout 60 /sbin/iscsistart -i "$1" -t "$TARGET" -g 1 -a 10.0.2.2 -p "$PORT" \
		${2:+-P iface.iscsi_ifacename=$2} >"$T/iscsistart-$1.out" 2>&1 ||
		{ cat "$T/iscsistart-$1.out"; return 1; }
}

# lun_dev SESSION LUN CLASS: the /dev name of LUN on the SESSION-th iSCSI
# session (1 = the first made), CLASS block (sd*) or sr.
lun_dev()
{
	_sess=$(ls -d /sys/class/iscsi_session/session* 2>/dev/null | sort -t n -k 2 -n |
		sed -n "${1}p")
	[ -n "$_sess" ] || return 1
	for _d in /sys/block/sd* /sys/block/sr*; do
		[ -e "$_d/device" ] || continue
		_hctl=$(basename "$(readlink "$_d/device")")
		# The device sits under the session in sysfs (.../hostH/sessionN/target...).
		readlink -f "$_d/device" | grep -q "/${_sess##*/}/" || continue
		[ "${_hctl##*:}" = "$2" ] || continue
		case $3:${_d##*/} in
		block:sd*|sr:sr*) echo "/dev/${_d##*/}"; return 0 ;;
		esac
	done
	return 1
}

hctl_of() { basename "$(readlink "/sys/block/${1#/dev/}/device")"; }

SESSIONS=0
test_login()
{
	[ -n "$PORT" ] && [ -n "$TARGET" ] || { fail "no ds.port/ds.target on the command line"; return 1; }
	ip addr show eth0 2>/dev/null | grep -q 10.0.2.15 || { fail "no network (eth0)"; return 1; }
	t0=$(now)
	login "$INIT1" || { fail "iscsistart -i $INIT1 -t $TARGET -a 10.0.2.2 -p $PORT"; return 1; }
	wait_s 'lun_dev 1 $DISK_LUN block >/dev/null' 30 || { dmesg | tail -n 30; fail "LUN $DISK_LUN did not appear as /dev/sdX"; return 1; }
	d=$(lun_dev 1 $DISK_LUN block)
	info "logged in as $INIT1 in $(elapsed "$t0") s: LUN $DISK_LUN is $d ($(hctl_of "$d"))"
	[ "$(blockdev --getsize64 "$d")" = $((64 * MiB)) ] || { fail "$d is $(blockdev --getsize64 "$d") bytes, not 64 MiB"; return 1; }
	dmesg | grep -iE 'scsi [0-9]+:|sd [0-9:]+: \[sd|sr [0-9:]+:' | sed 's/^/    dmesg: /' | head -n 12
}

test_fs()
{
	d=$(lun_dev 1 $DISK_LUN block) || { skip "no disk (login failed)"; return 77; }
	fs_check "$d"
}

test_fio()
{
	d=$(lun_dev 1 $DISK_LUN block) || { skip "no disk (login failed)"; return 77; }
	fio --name=iscsi --filename="$d" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
		--iodepth=16 --size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 >"$T/fio.out" 2>&1 ||
		{ cat "$T/fio.out"; fail "fio --verify=crc32c on $d"; return 1; }
	fio --name=iscsi-big --filename="$d" --ioengine=libaio --direct=1 --rw=write --bs=1M \
		--iodepth=4 --offset=16M --size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 \
		>"$T/fio2.out" 2>&1 || { cat "$T/fio2.out"; fail "fio 1 MiB writes with verify on $d"; return 1; }
}

test_resize()
{
	[ "$RESIZE" = 1 ] || { skip "the host has no loop device to grow"; return 77; }
	d=$(lun_dev 1 $DISK_LUN block) || { skip "no disk (login failed)"; return 77; }
	echo "VMTEST: HOST-RESIZE"
	hctl=$(hctl_of "$d")
	# Any command now gets the unit attention CAPACITY DATA HAS CHANGED
	# (2A/09); the sd driver logs it, and a rescan reads the new capacity.
	grow() {
		dd if="$d" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
		echo 1 > "/sys/class/scsi_device/$hctl/device/rescan"
		[ "$(blockdev --getsize64 "$d")" = $((96 * MiB)) ]
	}
	wait_s grow 60 || { dmesg | tail -n 20; fail "$d still $(blockdev --getsize64 "$d") bytes after the host grew it to 96 MiB"; return 1; }
	dmesg | grep -qi 'capacity data has changed' &&
		info "the kernel saw the unit attention: $(dmesg | grep -i 'capacity data has changed' | tail -n 1)"
	last_mib_rw "$d" 95
}

test_persist()
{
	a=$(lun_dev 1 $DISK_LUN block) || { skip "no disk (login failed)"; return 77; }
	login "$INIT2" ds2 || { fail "second session (iscsistart -i $INIT2)"; return 1; }
	wait_s 'lun_dev 2 $DISK_LUN block >/dev/null' 30 || { fail "LUN $DISK_LUN did not appear on the second session"; return 1; }
	b=$(lun_dev 2 $DISK_LUN block)
	info "two sessions: $a ($INIT1) and $b ($INIT2)"
	sg_persist --out --register --param-sark=0x1111 "$a" >"$T/pr" 2>&1 || { cat "$T/pr"; fail "REGISTER on $a"; return 1; }
	sg_persist --out --register --param-sark=0x2222 "$b" >"$T/pr" 2>&1 || { cat "$T/pr"; fail "REGISTER on $b"; return 1; }
	sg_persist --in --read-keys "$b" >"$T/keys" 2>&1
	grep -q 0x1111 "$T/keys" && grep -q 0x2222 "$T/keys" || { cat "$T/keys"; fail "READ KEYS does not list both keys"; return 1; }
	# Exclusive Access (type 3): only the holder may read or write.
	sg_persist --out --reserve --param-rk=0x1111 --prout-type=3 "$a" >"$T/pr" 2>&1 ||
		{ cat "$T/pr"; fail "RESERVE (exclusive access) on $a"; return 1; }
	sg_persist --in --read-reservation "$b" >"$T/resv" 2>&1
	grep -q 0x1111 "$T/resv" || { cat "$T/resv"; fail "READ RESERVATION does not show the holder"; return 1; }
	dd if="$a" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null || { fail "the holder cannot read"; return 1; }
	if dd if="$b" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; then
		fail "the other nexus read through an exclusive-access reservation"; return 1
	fi
	dmesg | grep -qi 'reservation conflict' || info "no 'reservation conflict' in dmesg (kernel wording differs?)"
	sg_persist --out --release --param-rk=0x1111 --prout-type=3 "$a" >"$T/pr" 2>&1 ||
		{ cat "$T/pr"; fail "RELEASE on $a"; return 1; }
	dd if="$b" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null || { fail "the other nexus cannot read after RELEASE"; return 1; }
	# PREEMPT: $b takes over with a reservation of its own, removing $a's key.
	sg_persist --out --reserve --param-rk=0x1111 --prout-type=1 "$a" >/dev/null 2>&1
	sg_persist --out --preempt --param-rk=0x2222 --param-sark=0x1111 --prout-type=1 "$b" >"$T/pr" 2>&1 ||
		{ cat "$T/pr"; fail "PREEMPT from $b"; return 1; }
	sg_persist --in --read-keys "$a" >"$T/keys" 2>&1
	grep -q 0x1111 "$T/keys" && { cat "$T/keys"; fail "the preempted key is still registered"; return 1; }
	sg_persist --out --clear --param-rk=0x2222 "$b" >"$T/pr" 2>&1 || { cat "$T/pr"; fail "CLEAR from $b"; return 1; }
	sg_persist --in --read-keys "$a" >"$T/keys" 2>&1
	grep -q 'NO registered reservation keys' "$T/keys" || { cat "$T/keys"; fail "keys left after CLEAR"; return 1; }
	return 0
}

test_dvd()
{
	lun_dev 1 $DISK_LUN block >/dev/null || { skip "no session (login failed)"; return 77; }
	wait_s 'lun_dev 1 $DVD_LUN sr >/dev/null' 20 || {
		dmesg | grep -E "scsi [0-9]+:0:0:$DVD_LUN" | sed 's/^/    dmesg: /'
		fail "LUN $DVD_LUN (the DVD) did not appear as /dev/srN"; return 1; }
	cd=$(lun_dev 1 $DVD_LUN sr)
	info "LUN $DVD_LUN is $cd"
	mkdir -p /mnt/cd
	mount -t iso9660 -o ro "$cd" /mnt/cd || { dmesg | tail -n 20; fail "mount -t iso9660 $cd"; return 1; }
	(cd /mnt/cd && md5sum -c /vm/dvd.md5) >"$T/md5" 2>&1 || { cat "$T/md5"; umount /mnt/cd; fail "the DVD's files differ"; return 1; }
	umount /mnt/cd
	dvd_eject_load "$cd"
}

# LUNs added and removed on the running target through serve's control
# socket (docs/ctl.md, "iSCSI LUNs"): the initiator gets REPORTED LUNS
# DATA HAS CHANGED on LUN 0, a rescan finds the new LUN, data goes
# through it; removed while dd writes to it, the writes in flight finish,
# the next ones fail (I/O error, never a hang), and LUN 0 carries on.
HOTLUN=7
test_lun_hotplug()
{
	[ "$CTL" = 1 ] || { skip "the host runs no control socket"; return 77; }
	d=$(lun_dev 1 $DISK_LUN block) || { skip "no disk (login failed)"; return 77; }
	host=$(hctl_of "$d")
	host=${host%%:*}
	echo "VMTEST: HOST-CTL iscsi-lun-add target=$TARGET lun=$HOTLUN spec=mem:32M"
	appear() {
		dd if="$d" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
		echo '- - -' > "/sys/class/scsi_host/host$host/scan"
		lun_dev 1 $HOTLUN block >/dev/null
	}
	wait_s appear 60 || { dmesg | tail -n 20; fail "LUN $HOTLUN did not appear after the host added it"; return 1; }
	h=$(lun_dev 1 $HOTLUN block)
	info "LUN $HOTLUN appeared as $h"
	dmesg | grep -qi 'LUN assignments on this target have changed\|reported luns data has changed' &&
		info "the kernel saw the unit attention: $(dmesg | grep -i 'LUN assignments\|reported luns data' | tail -n 1)"
	[ "$(blockdev --getsize64 "$h")" = $((32 * MiB)) ] || { fail "$h is $(blockdev --getsize64 "$h") bytes"; return 1; }
	last_mib_rw "$h" 31 || return 1
	remove_under_io "$h" LUN "iscsi-lun-remove target=$TARGET lun=$HOTLUN" || return 1
	hctl=$(hctl_of "$h")
	gone() { ! dd if="$h" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null; }
	wait_s gone 60 || { fail "$h still reads after the host removed LUN $HOTLUN"; return 1; }
	echo 1 > "/sys/class/scsi_device/$hctl/device/delete"
	dd if="$d" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null || { fail "LUN $DISK_LUN fails after the removal"; return 1; }
	last_mib_rw "$d" 10 || return 1
}

run_test iscsi-login test_login
run_test iscsi-ext4 test_fs
run_test iscsi-fio-verify test_fio
run_test iscsi-resize test_resize
run_test iscsi-persistent-reservations test_persist
run_test iscsi-dvd test_dvd
run_test iscsi-lun-hotplug test_lun_hotplug
