#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-vhost-blk.sh: QEMU guests (Debian's 6.12 and 6.1 kernels, TCG)
# whose virtio-blk disks are vhost-user-blk back-ends on the host
# (tests/vm/guest-vhost-blk.sh has the guest side and the disks). One boot
# per kernel with five disks, each served by its own back-end process:
# ext4 on a memdiff overlay and fio --verify on two queues, discard and
# write-zeroes, a read-only export, an online resize, and SIGKILL plus
# restart of a back-end under fio (served through delay:, so it dies holding
# dozens of requests). After each boot the host checks the files the guest
# wrote through the back-ends, that the base under the overlay did not
# change, that every back-end survived and stops cleanly with no sanitizer
# report, and that the restarted one got QEMU's in-flight buffer.
# Environment: DISKSTACK_VHOST_PEER=qsd runs the same guest against
# qemu-storage-daemon's export (how the harness itself was validated);
# DISKSTACK_VHOST_TESTS (default fs,fio,discard,ro,resize,reconnect);
# DISKSTACK_VM_KERNELS, DISKSTACK_VM_TIMEOUT, DISKSTACK_VM_KEEP=1 as in
# vm-lib.sh.
. "$(dirname "$0")/vm-lib.sh"
. "$VM_DIR/vhost-lib.sh"

vhost_requires "${DISKSTACK_VHOST_PEER:-diskstack}"
vm_requires
# Guest RAM is a memfd the back-ends map whole: keep it small.
VM_MEM=${DISKSTACK_VM_MEM:-1G}
tests=${DISKSTACK_VHOST_TESTS:-fs,fio,discard,ro,resize,reconnect}
# qemu-storage-daemon 7.2 grows the file on QMP block_resize but sends no
# config-change message (strace: nothing on its back-end request socket), so
# the guest never sees the new size: not a harness check there.
[ "$VHOST_PEER" = qsd ] && [ -z "${DISKSTACK_VHOST_TESTS:-}" ] && tests=${tests/,resize/}
MiB=$((1 << 20))

work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-vhost.XXXXXX")
VHOST_WORK=$work
loopdev=
qemu_pid=
cleanup()
{
	[ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
	vhost_stop_all
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# start_backends: fresh files and one back-end per disk; sets qemu_args.
start_backends()
{
	local d
	rm -rf "$work/d"
	mkdir -p "$work/d"
	d=$work/d
	head -c $((128 * MiB)) /dev/urandom > "$d/base.img"
	base_md5=$(md5sum < "$d/base.img")
	truncate -s $((32 * MiB)) "$d/disc.img"
	head -c $((24 * MiB)) /dev/urandom > "$d/ro.img"
	ro_md5=$(md5sum < "$d/ro.img" | cut -d' ' -f1)
	truncate -s $((16 * MiB)) "$d/resize.img"
	truncate -s $((256 * MiB)) "$d/rc.img"

	vhost_start main "$d/main.sock" "memdiff:file:$d/base.img" q=2 || return 1
	vhost_start disc "$d/disc.sock" "file:$d/disc.img" || return 1
	vhost_start ro "$d/ro.sock" "file:$d/ro.img" ro || return 1
	if [ "$VHOST_PEER" = qsd ]; then
		vhost_start resize "$d/resize.sock" "file:$d/resize.img" "qmp=$d/qmp.sock" || return 1
	elif loopdev=$(losetup --find --show "$d/resize.img"); then
		# diskstack's file backend follows the size of a block device.
		vhost_start resize "$d/resize.sock" "file:$loopdev" || return 1
	else
		echo "[$kernel/vhost-blk] SKIP resize: no loop device on this machine"
		tests=${tests/,resize/}
		vhost_start resize "$d/resize.sock" "file:$d/resize.img" || return 1
	fi
	# Slow requests, writes slower than reads: many in flight, completed
	# out of order (qemu-storage-daemon gets the plain file).
	vhost_start rc "$d/rc.sock" "delay:1/20:file:$d/rc.img" "q=2 verbose" || return 1

	mapfile -t qemu_args < <(vhost_memory_args
		vhost_device_args c0 "$d/main.sock" 2
		vhost_device_args c1 "$d/disc.sock" 1
		vhost_device_args c2 "$d/ro.sock" 1
		vhost_device_args c3 "$d/resize.sock" 1
		vhost_device_args c4 "$d/rc.sock" 2 reconnect)
}

# host_checks KERNEL LOG: what the guest left in the files; the back-ends.
host_checks()
{
	local k=$1 log=$2 d=$work/d r=0 n want alloc
	pass() { echo "[$k/vhost-blk] PASS host: $*"; }
	bad() { echo "[$k/vhost-blk] FAIL host: $*"; r=1; }
	for n in main disc ro resize rc; do
		vhost_alive "$n" || bad "the $n back-end exited: $(tail -n 5 "${VHOST_LOG[$n]}" | tr '\n' ' ')"
	done
	# Stopped now, so that leak reports at exit are seen too.
	if ! vhost_stop_all; then
		[ "$VHOST_PEER" = diskstack ] && bad "a back-end exited non-zero after SIGTERM (see above)"
	fi
	for n in main disc ro resize rc; do
		vhost_sanitizer_report "$n" && { bad "sanitizer report from the $n back-end"; \
			grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "${VHOST_LOG[$n]}" | head -n 40; }
	done
	[ "$(md5sum < "$d/base.img")" = "$base_md5" ] && pass "the memdiff base is unchanged" ||
		bad "the base under memdiff changed"
	[ "$(md5sum < "$d/ro.img" | cut -d' ' -f1)" = "$ro_md5" ] && pass "the read-only file is unchanged" ||
		bad "the read-only export's file changed"
	want=$(grep -a '^VMTEST: DISC-MD5 ' "$log" | tr -d '\r' | awk '{ print $3 }')
	if [ -n "$want" ]; then
		alloc=$(( $(stat -c '%b * %B' "$d/disc.img") ))
		vm_log "disc.img: $((alloc / 1024)) KiB allocated of 32768 after discard, write-zeroes, punch"
		cmp -s -n $((24 * MiB)) "$d/disc.img" /dev/zero && pass "discarded and zeroed ranges read zero in the file" ||
			bad "discarded or zeroed ranges of the file are not zero"
		[ "$(tail -c $((8 * MiB)) "$d/disc.img" | md5sum | cut -d' ' -f1)" = "$want" ] &&
			pass "the file holds what the guest wrote outside them" || bad "the file's last 8 MiB differ from the guest's data"
		# 32 MiB written; the discard of 8 MiB must have freed them.
		[ "$alloc" -le $((24 * MiB)) ] && pass "the discard deallocated ($((alloc / MiB)) MiB left)" ||
			bad "discard freed nothing: $((alloc / 1024)) KiB still allocated"
	fi
	# QEMU 7.2 hands a restarted back-end the in-flight buffer it kept
	# (SET_INFLIGHT_FD) only if INFLIGHT_SHMFD was negotiated; without it
	# the requests a killed back-end held are lost or repeated, which the
	# guest notices only if the kill lands in the wrong moment.
	if [[ ",$tests," == *,reconnect,* ]] && [ "$VHOST_PEER" = diskstack ]; then
		if awk '/^\+ killed with SIGKILL/ { after = 1; n = 0 } after && /SET_INFLIGHT_FD/ { n++ }
			END { exit !(after && n > 0) }' "${VHOST_LOG[rc]}"; then
			pass "the restarted back-end got QEMU's in-flight buffer (SET_INFLIGHT_FD)"
		else
			bad "the restarted back-end never got SET_INFLIGHT_FD: no in-flight recovery"
		fi
		grep -h 'resubmitting' "${VHOST_LOG[rc]}" | sed "s#^#[$k/vhost-blk] INFO rc back-end: #"
	fi
	return $r
}

# host_request ACTION: the guest's request (guest-vhost-blk.sh); failures
# go to host_fail.
host_request()
{
	case $1 in
	resize)
		vhost_resize resize $((48 * MiB)) || host_fail+="resize failed; " ;;
	restart)
		if vhost_restart rc; then
			grep -aq 'reconnect: fio ended' "$log" &&
				host_fail+="the restart came after fio had ended; "
		else
			# The guest's I/O would wait for good.
			host_fail+="the rc back-end did not start again; "
			kill "$qemu_pid" 2>/dev/null
		fi ;;
	*) host_fail+="unknown request '$1'; " ;;
	esac
}

for kernel in ${DISKSTACK_VM_KERNELS:-6.12 6.1}; do
	vm_prepare_initrd "$kernel" vhost-blk
	log=$work/console-$kernel-vhost-blk.log
	VHOST_WORK=$work/$kernel
	mkdir -p "$VHOST_WORK"
	start_backends || { vhost_stop_all; vm_die "cannot start the $VHOST_PEER back-ends"; }
	rm -f "$work/qemu.pid"
	vm_boot "$log" "${DISKSTACK_VM_TIMEOUT:-420}" "ds.tests=$tests ds.romd5=$ro_md5" \
		-nic none -pidfile "$work/qemu.pid" "${qemu_args[@]}" &
	boot=$!
	# The guest's requests ("VMTEST: HOST <action>"), each acted on once.
	# shellcheck disable=SC2034 # vm_host_requests (vm-lib.sh) counts on it
	vm_host_handled=0 host_fail=
	while kill -0 $boot 2>/dev/null; do
		[ -z "$qemu_pid" ] && [ -s "$work/qemu.pid" ] && qemu_pid=$(cat "$work/qemu.pid")
		vm_host_requests "$log" host_request
		sleep 0.2
	done
	wait $boot
	qemu_pid=
	r=0
	vm_results "$log" "$kernel/vhost-blk" || r=$?
	[ -n "$host_fail" ] && { echo "[$kernel/vhost-blk] FAIL host: $host_fail"; r=1; }
	if [ $r -ne 77 ]; then
		host_checks "$kernel" "$log" || r=1
	fi
	vhost_stop_all
	[ -n "$loopdev" ] && losetup -d "$loopdev" && loopdev=
	if ! vm_tally $r; then
		for n in main disc ro resize rc; do
			sed "s/^/    $n: /" "${VHOST_LOG[$n]}" | tail -n 15
		done
	fi
done
vm_exit
