# SPDX-License-Identifier: MIT
# guest-nvme-tcp.sh: the Linux NVMe/TCP host against the host's `diskstack
# serve --nvme-tcp` (tests/vm/test-vm-nvme-tcp.sh), inside the guest
# (busybox sh). The kernel command line carries ds.port= and ds.nqn=; the
# host is 10.0.2.2 (QEMU user networking). nvme_core is reloaded with
# multipath=N so that a second host identity gets its own block device.
#   - nvme discover: the discovery log lists the subsystem
#   - nvme connect with header and data digests, two I/O queues;
#     nvme id-ctrl / id-ns
#   - ext4 (mkfs, mount, write, remount, compare, fsck)
#   - fio --verify=crc32c QD32 on two jobs, both I/O queues used
#   - resize: the host grows the namespace; the AEN makes the guest rescan
#   - reservations between two host identities (register, acquire, report
#     with --eds, a conflicting write failing at once, preempt, release,
#     clear)
#   - large transfers without digests (through the target's pipes), fio
#     verified, the same bytes read by both hosts
#   - target restart: the host reconnects and I/O goes on
#   - keep-alive expiry: the guest's link down for 10 s; the target ends
#     the associations, the host reconnects
#   - nvme disconnect
. /vm/guest-lib.sh

PORT=$(sed -n 's/.*ds\.port=\([0-9]*\).*/\1/p' /proc/cmdline)
NQN=$(sed -n 's/.*ds\.nqn=\([^ ]*\).*/\1/p' /proc/cmdline)
RESIZE=$(sed -n 's/.*ds\.resize=\([01]\).*/\1/p' /proc/cmdline)
# ds.ctl=1: the host runs serve's control socket and acts on HOST-CTL lines.
CTL=$(sed -n 's/.*ds\.ctl=\([01]\).*/\1/p' /proc/cmdline)
NVME=/usr/sbin/nvme
MiB=1048576
mkdir -p /etc/nvme
cp /vm/hostnqn /etc/nvme/hostnqn
cp /vm/hostid /etc/nvme/hostid
# Per-controller block devices (/dev/nvme1n1 for the second host), not one
# multipath head: busybox insmod does not read the kernel command line.
rmmod nvme_tcp nvme_fabrics nvme_core 2>/dev/null
modprobe nvme_core multipath=N && modprobe nvme_tcp ||
	echo "VMTEST: INFO reloading nvme_core with multipath=N failed"

# ctrl_of NQN HOSTNQN: the nvmeN controller of that subsystem and host.
ctrl_of()
{
	for _c in /sys/class/nvme/nvme*; do
		[ -e "$_c/subsysnqn" ] || continue
		[ "$(cat "$_c/subsysnqn")" = "$1" ] || continue
		[ "$(cat "$_c/hostnqn" 2>/dev/null)" = "$2" ] || continue
		echo "${_c##*/}"
		return 0
	done
	return 1
}
A=$(cat /vm/hostnqn)
B=$(cat /vm/hostnqn2)

test_discover()
{
	[ -n "$PORT" ] && [ -n "$NQN" ] || { fail "no ds.port/ds.nqn on the command line"; return 1; }
	ip addr show eth0 2>/dev/null | grep -q 10.0.2.15 || { fail "no network (eth0)"; return 1; }
	timeout 60 $NVME discover -t tcp -a 10.0.2.2 -s "$PORT" >"$T/disc" 2>&1 ||
		{ cat "$T/disc"; fail "nvme discover -t tcp -a 10.0.2.2 -s $PORT"; return 1; }
	grep -q "subnqn: *$NQN" "$T/disc" || { cat "$T/disc"; fail "the discovery log lacks $NQN"; return 1; }
	grep -q "traddr: *10.0.2.2" "$T/disc" || { cat "$T/disc"; fail "the discovery log lacks traddr 10.0.2.2"; return 1; }
	grep -E 'subtype|subnqn|traddr|trsvcid|treq' "$T/disc" | sed 's/^/    discover: /'
}

test_connect()
{
	t0=$(now)
	timeout 60 $NVME connect -t tcp -a 10.0.2.2 -s "$PORT" -n "$NQN" -i 2 -g -G -c 1 -l 120 \
		>"$T/conn" 2>&1 || { cat "$T/conn"; dmesg | tail -n 20; fail "nvme connect -g -G -i 2"; return 1; }
	wait_for "ctrl_of $NQN $A >/dev/null" 30 || { dmesg | tail -n 20; fail "no controller for $NQN"; return 1; }
	c=$(ctrl_of "$NQN" "$A")
	wait_for "[ -b /dev/${c}n1 ]" 30 || { dmesg | tail -n 20; fail "/dev/${c}n1 did not appear"; return 1; }
	info "connected in $(elapsed "$t0") s: /dev/${c}n1, $(cat /sys/class/nvme/$c/address)"
	[ "$(blockdev --getsize64 /dev/${c}n1)" = $((64 * MiB)) ] ||
		{ fail "/dev/${c}n1 is $(blockdev --getsize64 /dev/${c}n1) bytes, not 64 MiB"; return 1; }
	$NVME id-ctrl /dev/$c >"$T/idc" 2>&1 || { cat "$T/idc"; fail "nvme id-ctrl /dev/$c"; return 1; }
	grep -q "subnqn *: *$NQN" "$T/idc" || { cat "$T/idc"; fail "id-ctrl subnqn"; return 1; }
	grep -E '^(mn|cntlid|ver|cmic|kas|sgls|ioccsz|oncs|subnqn) ' "$T/idc" | sed 's/^/    id-ctrl: /'
	$NVME id-ns /dev/${c}n1 >"$T/idn" 2>&1 || { cat "$T/idn"; fail "nvme id-ns"; return 1; }
	grep -q 'nsze *: *0x20000' "$T/idn" || { cat "$T/idn"; fail "id-ns nsze is not 0x20000"; return 1; }
	grep -E '^(nsze|nmic|rescap|nguid|eui64)' "$T/idn" | sed 's/^/    id-ns: /'
	dmesg | grep -E 'nvme nvme[0-9]' | sed 's/^/    dmesg: /' | tail -n 6
}

dev_a() { c=$(ctrl_of "$NQN" "$A") && [ -b "/dev/${c}n1" ] && echo "/dev/${c}n1"; }

test_fs()
{
	d=$(dev_a) || { skip "not connected"; return 77; }
	fs_check "$d"
}

test_fio()
{
	d=$(dev_a) || { skip "not connected"; return 77; }
	fio_verify "$d" || { cat "$T/fio.out"; fail "fio --verify=crc32c on $d"; return 1; }
	grep -E 'IOPS|err=' "$T/fio.out" | sed 's/^/    fio: /' | head -n 4
	queues_dispatched "${d#/dev/}" 0 1
}

test_resize()
{
	[ "$RESIZE" = 1 ] || { skip "the host has no loop device to grow"; return 77; }
	d=$(dev_a) || { skip "not connected"; return 77; }
	echo "VMTEST: HOST-RESIZE"
	wait_for '[ "$(blockdev --getsize64 $d)" = $((96 * MiB)) ]' 60 ||
		{ dmesg | tail -n 20; fail "$d still $(blockdev --getsize64 "$d") bytes after the host grew it"; return 1; }
	dmesg | grep -E 'capacity change|rescanning' | tail -n 2 | sed 's/^/    dmesg: /'
	$NVME id-ns "$d" | grep -q 'nsze *: *0x30000' || { fail "id-ns nsze after the resize"; return 1; }
	last_mib_rw "$d" 95 || return 1
}

# connect_b: host B through /dev/nvme-fabrics (nvme-cli 2.3 refuses a
# second host NQN to the same subsystem as "already connected"), with SQ
# flow control off: its reads complete with C2HData SUCCESS, no response.
connect_b()
{
	ctrl_of "$NQN" "$B" >/dev/null && return 0
	exec 3<>/dev/nvme-fabrics
	echo -n "transport=tcp,traddr=10.0.2.2,trsvcid=$PORT,nqn=$NQN,hostnqn=$B,hostid=$(cat /vm/hostid2),nr_io_queues=1,reconnect_delay=1,ctrl_loss_tmo=120,disable_sqflow" >&3 ||
		{ exec 3>&-; return 1; }
	read -r reply <&3
	exec 3>&-
	info "host B: $reply"
	wait_for "ctrl_of $NQN $B >/dev/null" 30
}

test_resv()
{
	a=$(dev_a) || { skip "not connected"; return 77; }
	connect_b || { dmesg | tail -n 20; fail "second host connect"; return 1; }
	cb=$(ctrl_of "$NQN" "$B")
	wait_for "[ -b /dev/${cb}n1 ]" 30 || { fail "/dev/${cb}n1 did not appear (multipath=N?)"; return 1; }
	b=/dev/${cb}n1
	info "host A: $a, host B: $b"
	if $NVME resv-report "$a" -n 1 -d 64 >"$T/r" 2>&1; then
		cat "$T/r"; fail "resv-report without --eds succeeded (fabrics host IDs are 128-bit)"; return 1
	fi
	$NVME resv-register "$a" -n 1 -k 0xaaaa -r 0 >"$T/r" 2>&1 || { cat "$T/r"; fail "register A"; return 1; }
	$NVME resv-acquire "$a" -n 1 -c 0xaaaa -t 1 -a 0 >"$T/r" 2>&1 || { cat "$T/r"; fail "acquire WE by A"; return 1; }
	$NVME resv-report "$a" -n 1 -d 64 --eds -o json >"$T/rep" 2>&1 || { cat "$T/rep"; fail "report --eds"; return 1; }
	tr -d ' \n' < "$T/rep" | grep -q '"rtype":1' || { cat "$T/rep"; fail "report: no WE reservation"; return 1; }
	sed 's/^/    resv-report: /' "$T/rep" | head -n 20
	dd if=/dev/urandom of="$T/x" bs=4k count=1 2>/dev/null
	t0=$(now)
	if dd if="$T/x" of="$b" bs=4k count=1 oflag=direct 2>/dev/null; then
		fail "host B wrote through A's Write Exclusive reservation"; return 1
	fi
	info "B's write failed after $(elapsed "$t0") s: $(dmesg | grep -i 'reservation conflict\|sc 0x83' | tail -n 1)"
	dd if="$b" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || { fail "B cannot read (WE allows reads)"; return 1; }
	dd if="$a" of="$T/a.read" bs=64k count=16 iflag=direct 2>/dev/null
	dd if="$b" of="$T/b.read" bs=64k count=16 iflag=direct 2>/dev/null || { fail "B (SQ flow control off) cannot read 1 MiB"; return 1; }
	cmp "$T/a.read" "$T/b.read" || { fail "A and B read different data"; return 1; }
	$NVME resv-register "$b" -n 1 -k 0xbbbb -r 0 >"$T/r" 2>&1 || { cat "$T/r"; fail "register B"; return 1; }
	$NVME resv-acquire "$b" -n 1 -c 0xbbbb -p 0xaaaa -t 1 -a 1 >"$T/r" 2>&1 || { cat "$T/r"; fail "preempt by B"; return 1; }
	dd if="$T/x" of="$b" bs=4k count=1 oflag=direct 2>/dev/null || { fail "B (holder) cannot write"; return 1; }
	if dd if="$T/x" of="$a" bs=4k count=1 oflag=direct 2>/dev/null; then
		fail "A wrote after being preempted"; return 1
	fi
	$NVME resv-release "$b" -n 1 -c 0xbbbb -t 1 -a 0 >"$T/r" 2>&1 || { cat "$T/r"; fail "release by B"; return 1; }
	$NVME resv-release "$b" -n 1 -c 0xbbbb -a 1 >"$T/r" 2>&1 || { cat "$T/r"; fail "clear by B"; return 1; }
	$NVME resv-report "$b" -n 1 -d 64 --eds -o json >"$T/rep" 2>&1
	tr -d ' \n' < "$T/rep" | grep -q '"regctl":0' || { cat "$T/rep"; fail "registrants left after clear"; return 1; }
	dd if="$T/x" of="$a" bs=4k count=1 oflag=direct 2>/dev/null || { fail "A cannot write after the clear"; return 1; }
}

# Host B has no digests, so its large transfers go through the target's
# pipes (docs/nvme.md, "Zero-copy transfers": file pages spliced into and
# out of the socket): fio with 1 MiB, 128 KiB and 64 KiB blocks, verified,
# and host A (digests: through memory) reads the same bytes back.
test_large_nodigest()
{
	a=$(dev_a) || { skip "not connected"; return 77; }
	connect_b || { dmesg | tail -n 20; fail "second host connect"; return 1; }
	b=/dev/$(ctrl_of "$NQN" "$B")n1
	wait_for "[ -b $b ]" 30 || { fail "$b did not appear"; return 1; }
	fio --name=large --filename="$b" --ioengine=libaio --direct=1 --rw=randwrite \
		--bssplit=1m/50:128k/30:64k/20 --iodepth=8 --size=32M --verify=crc32c \
		--do_verify=1 --verify_fatal=1 >"$T/fio.out" 2>&1 ||
		{ cat "$T/fio.out"; fail "fio --verify=crc32c, 64 KiB-1 MiB blocks, on $b (no digests)"; return 1; }
	grep -E 'IOPS|err=' "$T/fio.out" | sed 's/^/    fio: /' | head -n 2
	echo "VMTEST: HOST-PIPES"
	sleep 1
	dd if="$a" of="$T/a.read" bs=1M count=8 iflag=direct 2>/dev/null
	dd if="$b" of="$T/b.read" bs=1M count=8 iflag=direct 2>/dev/null || { fail "B cannot read 8 MiB"; return 1; }
	cmp "$T/a.read" "$T/b.read" || { fail "A (digests) and B (no digests) read different data"; return 1; }
}

# Namespaces added and removed on the running subsystem through serve's
# control socket (docs/ctl.md): the Namespace Attribute Changed event
# makes the host rescan, so the new namespace appears on its own; removed
# while dd writes to it, the writes end with an error (never a hang), the
# block device goes away, and namespace 1 carries on.
HOTNS=5
# ns_dev CTRL NSID: the block device of namespace NSID on controller CTRL.
ns_dev()
{
	for _b in /sys/class/nvme/$1/$1n*; do
		[ -e "$_b/nsid" ] && [ "$(cat "$_b/nsid")" = "$2" ] && { echo "/dev/${_b##*/}"; return 0; }
	done
	return 1
}
test_ns_hotplug()
{
	[ "$CTL" = 1 ] || { skip "the host runs no control socket"; return 77; }
	d=$(dev_a) || { skip "not connected"; return 77; }
	c=$(ctrl_of "$NQN" "$A")
	echo "VMTEST: HOST-CTL nvme-ns-add nsid=$HOTNS spec=mem:32M"
	wait_for "ns_dev $c $HOTNS >/dev/null" 60 ||
		{ dmesg | tail -n 20; fail "namespace $HOTNS did not appear after the host added it"; return 1; }
	h=$(ns_dev "$c" $HOTNS)
	info "namespace $HOTNS appeared as $h"
	$NVME list-ns "/dev/$c" >"$T/ns" 2>&1
	grep -q "0x$HOTNS\|: $HOTNS\$" "$T/ns" || info "list-ns: $(tr '\n' ' ' < "$T/ns")"
	[ "$(blockdev --getsize64 "$h")" = $((32 * MiB)) ] || { fail "$h is $(blockdev --getsize64 "$h") bytes"; return 1; }
	last_mib_rw "$h" 31 || return 1
	remove_under_io "$h" namespace "nvme-ns-remove nsid=$HOTNS" || return 1
	wait_for "! ns_dev $c $HOTNS >/dev/null" 60 || { fail "$h remains after the host removed namespace $HOTNS"; return 1; }
	dmesg | grep -iE 'nvme.*(rescan|removing|ns changed|attribute)' | tail -n 2 | sed 's/^/    dmesg: /'
	dd if="$d" of=/dev/null bs=1M count=4 iflag=direct 2>/dev/null || { fail "namespace 1 fails after the removal"; return 1; }
	last_mib_rw "$d" 10 || return 1
}

test_restart()
{
	d=$(dev_a) || { skip "not connected"; return 77; }
	c=$(ctrl_of "$NQN" "$A")
	echo "VMTEST: HOST-RESTART"
	# The host sees the connection drop, then reconnects every second.
	wait_for '[ "$(cat /sys/class/nvme/$c/state)" != live ]' 30 ||
		info "never saw $c leave 'live' (reconnected faster than the poll?)"
	wait_for '[ "$(cat /sys/class/nvme/$c/state)" = live ]' 90 ||
		{ dmesg | tail -n 20; fail "$c did not reconnect (state $(cat /sys/class/nvme/$c/state))"; return 1; }
	dmesg | grep -iE 'reconnect|reset' | tail -n 3 | sed 's/^/    dmesg: /'
	rw_back "$d" 64k 10 4 "after the reconnect" || return 1
}

# The guest's link goes down for longer than KATO (5 s): the target sees
# no Keep Alive and ends both associations (test-vm-nvme-tcp.sh checks its
# log for that); once the link is back the host reconnects.
test_kato()
{
	d=$(dev_a) || { skip "not connected"; return 77; }
	c=$(ctrl_of "$NQN" "$A")
	ip link set eth0 down
	sleep 10
	ip link set eth0 up
	wait_for '[ "$(cat /sys/class/nvme/$c/state)" = live ]' 120 ||
		{ dmesg | tail -n 20; fail "$c did not come back (state $(cat /sys/class/nvme/$c/state))"; return 1; }
	dmesg | grep -iE 'keep.?alive|reconnect' | tail -n 3 | sed 's/^/    dmesg: /'
	rw_back "$d" 4k 40 4 "after the link came back" || return 1
}

test_disconnect()
{
	dev_a >/dev/null || { skip "not connected"; return 77; }
	$NVME disconnect -n "$NQN" >"$T/disc" 2>&1 || { cat "$T/disc"; fail "nvme disconnect -n $NQN"; return 1; }
	wait_for '! ctrl_of $NQN $A >/dev/null && ! ctrl_of $NQN $B >/dev/null' 30 ||
		{ fail "controllers left after nvme disconnect"; return 1; }
	cat "$T/disc" | sed 's/^/    /'
}

run_test nvme-tcp-discover test_discover
run_test nvme-tcp-connect test_connect
run_test nvme-tcp-ext4 test_fs
run_test nvme-tcp-fio-verify test_fio
run_test nvme-tcp-resize test_resize
run_test nvme-tcp-reservations test_resv
run_test nvme-tcp-large-nodigest test_large_nodigest
run_test nvme-tcp-ns-hotplug test_ns_hotplug
run_test nvme-tcp-restart test_restart
run_test nvme-tcp-keep-alive test_kato
run_test nvme-tcp-disconnect test_disconnect
