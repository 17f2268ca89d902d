# SPDX-License-Identifier: MIT
# guest-vhost-blk.sh: virtio-blk disks whose device is a vhost-user-blk
# back-end on the host (tests/vm/test-vm-vhost-blk.sh starts it and QEMU),
# run inside the guest by /init (busybox sh). The host gives each disk its
# own size, which is how the guest tells them apart (PCI order is QEMU's
# business):
#   main    128 MiB  memdiff over a base file, 2 queues: ext4, fio --verify
#   disc     32 MiB  a file: discard and write-zeroes, checked on the host too
#   ro       24 MiB  a read-only export of a file whose md5 is ds.romd5=
#   resize   16 MiB  grown to 48 MiB by the host on request
#   rc      256 MiB  a file, 2 queues, chardev reconnect=1: the host kills the
#                    back-end with SIGKILL under fio and starts it again
# ds.tests= lists the tests to run. The guest asks the host for an action
# with a "VMTEST: HOST <action>" line on the console; the host's watcher
# acts on each such line once.
. /vm/guest-lib.sh

TESTS=$(ds_arg tests | tr ',' ' ')
ROMD5=$(ds_arg romd5)

host() { echo "VMTEST: HOST $*"; }

# dev_by_size SECTORS: the /dev/vdX of that many 512-byte sectors.
dev_by_size()
{
	for _s in /sys/block/vd*/size; do
		[ "$(cat "$_s")" = "$1" ] || continue
		_n=${_s%/size}
		echo "/dev/${_n##*/}"
		return 0
	done
	return 1
}

# need NAME SECTORS: sets $dev and $name, or fails the test.
need()
{
	dev=$(dev_by_size "$2") || { ls -l /sys/block/; fail "no virtio disk of $2 sectors (the '$1' disk)"; return 1; }
	name=${dev#/dev/}
}

# Sums the fields of /sys/block/NAME/stat given as awk field numbers.
stat_sum() { awk -v f="$2" 'BEGIN { n = split(f, a, ",") } { s = 0; for (i = 1; i <= n; i++) s += $a[i]; print s }' "/sys/block/$1/stat"; }

# zero_at DEV MIB_OFF MIB_LEN: that range of DEV reads as zeroes (O_DIRECT).
zero_at()
{
	[ "$(dd if="$1" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null | tr -d '\000' | wc -c)" = 0 ]
}

# 1. ext4 on a memdiff overlay; the host checks that the base did not change.
test_ext4()
{
	need main 262144 || return 1
	info "main: $dev, $(ls /sys/block/$name/mq | wc -l) queues, cache $(cat /sys/block/$name/queue/write_cache)"
	fs_check "$dev"
}

# 2. fio --verify at QD32, one job per CPU on the two queues.
test_fio()
{
	need main 262144 || return 1
	nq=$(ls "/sys/block/$name/mq" | wc -l)
	[ "$nq" -eq 2 ] || { fail "$nq hardware queues, expected 2"; return 1; }
	t0=$(now)
	fio_verify "$dev" --size=48M --offset_increment=64M ||
		{ cat "$T/fio.out"; fail "fio verify"; return 1; }
	grep -q 'err= 0' "$T/fio.out" || { cat "$T/fio.out"; fail "fio reported errors"; return 1; }
	queues_dispatched "$name" 0 1 || return 1
	info "fio verify on two queues: OK in $(elapsed "$t0") s"
}

# 3. Discard and write-zeroes (with and without the unmap flag) reach the
# disk. The host then checks the file: the zeroed ranges hold zeroes, the
# discarded range was deallocated, the rest is what the guest wrote.
test_discard()
{
	need disc 65536 || return 1
	q=/sys/block/$name/queue
	info "disc: discard_max_bytes=$(cat $q/discard_max_bytes) write_zeroes_max_bytes=$(cat $q/write_zeroes_max_bytes) cache $(cat $q/write_cache)"
	[ "$(cat $q/discard_max_bytes)" -gt 0 ] || { fail "no discard"; return 1; }
	[ "$(cat $q/write_zeroes_max_bytes)" -gt 0 ] || { fail "no write-zeroes"; return 1; }
	# max_discard_seg 64: the block layer may merge that many discards
	# into one request (docs/vhost.md).
	[ "$(cat $q/max_discard_segments)" = 64 ] ||
		{ fail "max_discard_segments $(cat $q/max_discard_segments), expected 64"; return 1; }
	dd if=/dev/urandom of="$T/pat" bs=1M count=32 2>/dev/null
	dd if="$T/pat" of="$dev" bs=1M oflag=direct conv=fsync 2>/dev/null || { fail "write the pattern"; return 1; }
	d0=$(stat_sum "$name" 12)
	# Discard (REQ_OP_DISCARD), [0, 8M).
	$BLKDISCARD -o 0 -l 8M "$dev" || { fail "blkdiscard"; return 1; }
	d1=$(stat_sum "$name" 12)
	[ "$d1" -gt "$d0" ] || { fail "no discard request completed ($d0 -> $d1)"; return 1; }
	# BLKZEROOUT: write-zeroes without unmap, [8M, 16M).
	$BLKDISCARD -z -o 8M -l 8M "$dev" || { fail "blkdiscard -z"; return 1; }
	# fallocate --punch-hole: write-zeroes that may unmap, and no fallback
	# to writing zero pages, [16M, 24M).
	$FALLOCATE -p -o 16M -l 8M "$dev" || { fail "fallocate -p (write-zeroes with unmap)"; return 1; }
	echo 3 > /proc/sys/vm/drop_caches
	zero_at "$dev" 8 8 || { fail "the BLKZEROOUT range does not read zero"; return 1; }
	zero_at "$dev" 16 8 || { fail "the punched range does not read zero"; return 1; }
	[ "$(dd if="$dev" bs=1M skip=24 count=8 iflag=direct 2>/dev/null | md5sum)" = \
		"$(dd if="$T/pat" bs=1M skip=24 count=8 2>/dev/null | md5sum)" ] ||
		{ fail "data outside the ranges changed"; return 1; }
	# For the host's check of the file.
	echo "VMTEST: DISC-MD5 $(dd if="$T/pat" bs=1M skip=24 count=8 2>/dev/null | md5sum | cut -d' ' -f1)"
}

# 4. A read-only export: the kernel shows it, writes fail, reads are right.
test_read_only()
{
	need ro 49152 || return 1
	[ "$(cat /sys/block/$name/ro)" = 1 ] || { fail "the kernel does not show $dev read-only"; return 1; }
	[ "$(cat /sys/block/$name/queue/discard_max_bytes)" = 0 ] ||
		info "the read-only disk offers discard ($(cat /sys/block/$name/queue/discard_max_bytes) bytes)"
	if dd if=/dev/zero of="$dev" bs=4k count=4 oflag=direct conv=fsync 2>"$T/dd.err"; then
		fail "a write to the read-only disk succeeded"
		return 1
	fi
	info "write refused: $(grep -v records "$T/dd.err" | head -n1)"
	# BLKROSET 0 clears only the block device's own flag: the disk stays
	# read-only (VIRTIO_BLK_F_RO), so the kernel still refuses.
	blockdev --setrw "$dev" 2>/dev/null
	dd if=/dev/zero of="$dev" bs=4k count=4 oflag=direct conv=fsync 2>/dev/null &&
		{ fail "a write succeeded after blockdev --setrw"; return 1; }
	$BLKDISCARD "$dev" 2>/dev/null && { fail "discard succeeded"; return 1; }
	sum=$(dd if="$dev" bs=1M iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	[ "$sum" = "$ROMD5" ] || { fail "reads give md5 $sum, the file has $ROMD5"; return 1; }
}

# 5. Online resize: the host grows the disk; virtio_blk sees the config
# change and the new sectors are usable.
test_resize()
{
	need resize 32768 || return 1
	host resize
	t0=$(now)
	wait_for '[ "$(cat /sys/block/'"$name"'/size)" = 98304 ]' 120 ||
		{ fail "size still $(cat /sys/block/$name/size) sectors 120 s after asking for 48 MiB"; return 1; }
	info "resize: $dev 16 MiB -> $(($(cat /sys/block/$name/size) / 2048)) MiB after $(elapsed "$t0") s"
	dmesg | grep -a "$name" | grep -ai 'size' | tail -n 2 | sed 's/^/    dmesg: /'
	[ "$(blockdev --getsize64 "$dev")" = $((48 << 20)) ] || { fail "blockdev --getsize64 $(blockdev --getsize64 "$dev")"; return 1; }
	dd if=/dev/urandom of="$T/tail" bs=1M count=1 2>/dev/null
	dd if="$T/tail" of="$dev" bs=1M seek=47 oflag=direct conv=fsync 2>/dev/null || { fail "write past the old end"; return 1; }
	echo 3 > /proc/sys/vm/drop_caches
	dd if="$dev" of="$T/back" bs=1M skip=47 count=1 iflag=direct 2>/dev/null
	cmp "$T/tail" "$T/back" || { fail "the new last MiB reads back wrong"; return 1; }
}

# 6. The back-end dies (SIGKILL) and comes back under fio: QEMU reconnects
# (reconnect=1 on its chardev), I/O carries on, and fio's verification pass
# finds every write. The host serves this disk through a delay decorator
# (reads 1 ms, writes 20 ms), and a reader runs beside the writer on both
# queues, so when the back-end dies it holds dozens of taken requests and
# has completed later reads before earlier writes. Resuming exactly those
# needs the in-flight buffer (INFLIGHT_SHMFD): restarting at the used index
# alone loses some writes (fio then waits for good and the host's timeout
# ends the boot) and completes some reads twice (virtio_ring complains).
# The host fails the test if fio had ended before it acted.
test_reconnect()
{
	need rc 524288 || return 1
	nq=$(ls "/sys/block/$name/mq" | wc -l)
	[ "$nq" -eq 2 ] || { fail "$nq hardware queues, expected 2"; return 1; }
	w0=$(stat_sum "$name" 5)
	fio_verify "$dev" --bssplit=4k/90:64k/10 --size=32M --offset_increment=64M &
	fiopid=$!
	fio --name=reader --filename="$dev" --ioengine=libaio --direct=1 --rw=randread --bs=4k \
		--iodepth=16 --numjobs=2 --offset=192M --size=64M --cpus_allowed=0-1 \
		--cpus_allowed_policy=split --time_based --runtime=600 >"$T/reader.out" 2>&1 &
	readpid=$!
	# Going, and with many writes in flight (they take 20 ms each).
	wait_for '[ $(($(stat_sum '"$name"' 5) - w0)) -ge 500 ] && [ $(awk "{ print \$2 }" /sys/block/'"$name"'/inflight) -ge 8 ]' 120 ||
		{ cat "$T/fio.out"; fail "fio did not get going"; return 1; }
	kill -0 $fiopid 2>/dev/null || { cat "$T/fio.out"; fail "fio ended before the restart"; return 1; }
	info "reconnect: $(cat /sys/block/$name/inflight | tr -s ' ' | sed 's/^ //') requests in flight (read, write) when asking"
	t0=$(now)
	host restart
	wait $fiopid
	rc=$?
	echo "VMTEST: INFO reconnect: fio ended (exit $rc) $(elapsed "$t0") s after the restart request"
	kill -INT $readpid 2>/dev/null
	wait $readpid
	info "reconnect: writer $(grep -o 'write: IOPS=[^,]*' "$T/fio.out" | head -n1), reader $(grep -o 'read: IOPS=[^,]*' "$T/reader.out" | head -n1)"
	[ $rc -eq 0 ] && grep -q 'err= 0' "$T/fio.out" || { cat "$T/fio.out"; fail "fio failed (exit $rc)"; return 1; }
	grep -q 'err= 0' "$T/reader.out" || { cat "$T/reader.out"; fail "the reader failed"; return 1; }
	dmesg | grep -aq "I/O error, dev $name" && { dmesg | tail -n 20; fail "the guest saw I/O errors on $dev"; return 1; }
	dmesg | grep -aqiE 'virtio.*(is not a head|broken|unexpected)' && { dmesg | tail -n 20; fail "virtio_ring complained"; return 1; }
	return 0
}

for t in $TESTS; do
	case $t in
	fs) run_test vhost-blk-ext4-memdiff test_ext4 ;;
	fio) run_test vhost-blk-fio-verify-2q test_fio ;;
	discard) run_test vhost-blk-discard-write-zeroes test_discard ;;
	ro) run_test vhost-blk-read-only test_read_only ;;
	resize) run_test vhost-blk-resize test_resize ;;
	reconnect) run_test vhost-blk-reconnect test_reconnect ;;
	*) echo "VMTEST: FAIL unknown test '$t' in ds.tests" ;;
	esac
done
