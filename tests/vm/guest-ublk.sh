# SPDX-License-Identifier: MIT
# guest-ublk.sh: the ublk checks, run inside the guest by /init (busybox sh).
# Every check uses real clients: mkfs.ext4/e2fsck, mount, fio --verify,
# util-linux blkdiscard/fallocate, dd.
. /vm/guest-lib.sh

# The kernel's ublk module file, wherever depmod put it.
ublk_ko() { find "/lib/modules/$KV" -name 'ublk_drv.ko*' | head -n1; }

# 1. No driver: the module is not loaded and modprobe cannot find it.
test_driver_missing()
{
	ko=$(ublk_ko)
	[ -n "$ko" ] || { fail "no ublk_drv.ko in the initramfs"; return 1; }
	grep -q '^ublk_drv ' /proc/modules && rmmod ublk_drv
	mv "$ko" "$T/hidden.ko"
	"$DS" ublk add mem:16M >"$T/out" 2>"$T/err"
	rc=$?
	mv "$T/hidden.ko" "$ko"
	[ $rc -eq 1 ] || { cat "$T/err"; fail "exit $rc, expected 1"; return 1; }
	grep -q 'ublk driver is not available' "$T/err" ||
		{ cat "$T/err"; fail "no clear message"; return 1; }
	grep -q "modprobe ublk_drv" "$T/err" || { cat "$T/err"; fail "message does not mention modprobe"; return 1; }
	[ ! -s "$T/out" ] || { fail "printed a device anyway"; return 1; }
	info "driver missing: $(cat "$T/err")"
}

# 2. The driver is loaded by modprobe on first use; add, size, list, del.
test_modprobe_add_del()
{
	grep -q '^ublk_drv ' /proc/modules && { fail "ublk_drv already loaded"; return 1; }
	dev=$(ublk_up mem:24M --pidfile "$T/s.pid") || { fail "ublk add failed"; return 1; }
	grep -q '^ublk_drv ' /proc/modules || { fail "ublk_drv was not loaded"; return 1; }
	id=$(dev_id "$dev")
	[ -b "$dev" ] || { fail "$dev is not a block device"; return 1; }
	[ -c "/dev/ublkc$id" ] || { fail "/dev/ublkc$id missing"; return 1; }
	size=$(blockdev --getsize64 "$dev")
	[ "$size" = $((24 << 20)) ] || { fail "size $size"; return 1; }
	q=/sys/block/ublkb$id/queue
	# RAM caches nothing: no volatile cache; 512-byte sectors; 512K requests.
	[ "$(cat $q/write_cache)" = "write through" ] || { fail "write_cache: $(cat $q/write_cache)"; return 1; }
	[ "$(cat $q/logical_block_size)" = 512 ] || { fail "logical_block_size $(cat $q/logical_block_size)"; return 1; }
	[ "$(cat $q/max_hw_sectors_kb)" = 512 ] || { fail "max_hw_sectors_kb $(cat $q/max_hw_sectors_kb)"; return 1; }
	pid=$(cat "$T/s.pid")
	ds ublk list > "$T/list" || { fail "ublk list failed"; return 1; }
	cat "$T/list"
	# The default copy mode (auto) is kernel copy on every kernel.
	awk -v id="$id" -v pid="$pid" '$1 == id && $2 == "live" && $3 == "24MiB" && $6 == "kern" &&
		$7 == pid && $NF == "mem:24M" { ok = 1 } END { exit !ok }' "$T/list" ||
		{ fail "list does not show id/state/size/kernel copy/pid/spec"; return 1; }
	ds ublk list --json | grep -q "\"spec\": \"mem:24M\"" || { fail "list --json"; return 1; }
	[ -f "/run/diskstack/ublk/$id" ] || { fail "no device record"; return 1; }
	# Data goes through.
	rw_back "$dev" 64k 0 64 "to the device" || return 1
	ds ublk del "$id" || { fail "ublk del failed"; return 1; }
	[ ! -e "$dev" ] && [ ! -e "/dev/ublkc$id" ] || { fail "device nodes remain after del"; return 1; }
	wait_for '! kill -0 $pid 2>/dev/null || grep -q "^State:.*Z" /proc/$pid/status' 10 ||
		{ fail "server still running"; return 1; }
	[ ! -f "/run/diskstack/ublk/$id" ] || { fail "record remains"; return 1; }
	[ ! -f "$T/s.pid" ] || { fail "pidfile remains"; return 1; }
	ds ublk list | awk -v id="$id" '$1 == id { exit 1 }' || { fail "list still shows it"; return 1; }
	"$DS" ublk del "$id" 2>"$T/err"
	[ $? -eq 1 ] && grep -q "no ublk device $id" "$T/err" || { fail "second del"; return 1; }
}

# 3. Bad arguments and impossible requests: exit 2 (usage) or 1, and a message.
expect_rc()
{
	want=$1
	shift
	"$DS" "$@" >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc -eq "$want" ] || { cat "$T/err"; fail "'$*' exited $rc, expected $want"; return 1; }
	[ -s "$T/err" ] || { fail "'$*' printed no message"; return 1; }
}
expect_msg() { grep -q -- "$1" "$T/err" || { cat "$T/err"; fail "message lacks '$1'"; return 1; }; }

test_bad_args()
{
	expect_rc 2 ublk && expect_msg "missing subcommand" || return 1
	expect_rc 2 ublk frob && expect_msg "unknown subcommand" || return 1
	expect_rc 2 ublk add && expect_msg "missing SPEC" || return 1
	expect_rc 2 ublk add mem:1M --queues 0 && expect_msg "--queues" || return 1
	expect_rc 2 ublk add mem:1M --depth 5000 && expect_msg "--depth" || return 1
	expect_rc 2 ublk add mem:1M --max-io 1000 && expect_msg "--max-io" || return 1
	expect_rc 2 ublk add mem:1M --copy sideways && expect_msg "--copy" || return 1
	expect_rc 2 ublk add mem:1M --bogus && expect_msg "unknown option" || return 1
	expect_rc 2 ublk add nosuchkind:1M && expect_msg "bad SPEC" || return 1
	expect_rc 1 ublk add file:/nonexistent.img && expect_msg "/nonexistent.img" || return 1
	expect_rc 2 ublk del && expect_msg "missing ID" || return 1
	expect_rc 2 ublk del abc && expect_msg "bad device ID" || return 1
	expect_rc 1 ublk del 77 && expect_msg "no ublk device 77" || return 1
	expect_rc 1 ublk recover 77 mem:1M && expect_msg "no ublk device 77" || return 1
	expect_rc 2 ublk list --recoverable && expect_msg "not an option" || return 1
	# A taken id; recovering a device that is not recoverable.
	dev=$(ublk_up mem:8M --id 7 --pidfile "$T/a.pid") || { fail "ublk add --id 7"; return 1; }
	[ "$dev" = /dev/ublkb7 ] || { fail "--id 7 gave $dev"; return 1; }
	expect_rc 1 ublk add mem:8M --id 7 && expect_msg "already in use" || return 1
	expect_rc 2 ublk recover 7 mem:8M && expect_msg "not created with --recoverable" || return 1
	ds ublk del 7 || { fail "del 7"; return 1; }
}

# 4. ext4 on a RAM overlay of a base image; the base is never written.
test_ext4_memdiff()
{
	dd if=/dev/urandom of="$T/base.img" bs=1M count=96 2>/dev/null
	sum0=$(md5sum < "$T/base.img")
	dev=$(ublk_up "memdiff:file:$T/base.img" --max-io 256K --pidfile "$T/s.pid") || { fail "ublk add"; return 1; }
	q=/sys/block/$(basename "$dev")/queue
	[ "$(cat $q/max_hw_sectors_kb)" = 256 ] || { fail "--max-io 256K: max_hw_sectors_kb $(cat $q/max_hw_sectors_kb)"; return 1; }
	$MKFS_EXT4 -q -F -b 4096 "$dev" || { fail "mkfs.ext4"; return 1; }
	mkdir -p /mnt/u
	mount -t ext4 "$dev" /mnt/u || { fail "mount"; return 1; }
	dd if=/dev/urandom of="$T/f1" bs=1M count=8 2>/dev/null
	cp "$T/f1" /mnt/u/f1
	mkdir /mnt/u/dir
	for i in 1 2 3 4 5 6 7 8; do echo "file $i" > "/mnt/u/dir/s$i"; done
	sync
	umount /mnt/u || { fail "umount"; return 1; }
	echo 3 > /proc/sys/vm/drop_caches
	$E2FSCK -fn "$dev" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck"; return 1; }
	mount -t ext4 "$dev" /mnt/u || { fail "second mount"; return 1; }
	cmp "$T/f1" /mnt/u/f1 || { fail "f1 differs after remount"; return 1; }
	[ "$(cat /mnt/u/dir/s5)" = "file 5" ] || { fail "small file differs"; return 1; }
	umount /mnt/u
	ds ublk del "$(dev_id "$dev")" || { fail "del"; return 1; }
	[ "$(md5sum < "$T/base.img")" = "$sum0" ] || { fail "the base image changed"; return 1; }
}

# 5. fio --verify=crc32c on the raw device, QD32 per job, two queues
# (fio_verify, guest-lib.sh).
fio_ios() { awk '/ios=/{ sub(/.*ios=/, ""); sub(/,.*/, ""); print; exit }' "$T/fio.out"; }

test_fio()
{
	copy=$1
	dev=$(ublk_up mem:64M --queues 2 --depth 64 --copy "$copy" --pidfile "$T/s.pid") ||
		{ fail "ublk add --copy $copy"; return 1; }
	id=$(dev_id "$dev")
	nq=$(ls "/sys/block/ublkb$id/mq" | wc -l)
	[ "$nq" -eq 2 ] || { fail "$nq hardware queues, expected 2"; return 1; }
	t0=$(now)
	fio_verify "$dev" || { cat "$T/fio.out"; fail "fio verify ($copy copy)"; return 1; }
	grep -q 'err= 0' "$T/fio.out" || { cat "$T/fio.out"; fail "fio reported errors"; return 1; }
	queues_dispatched "ublkb$id" 0 1 || return 1
	info "fio verify, $copy copy: OK in $(elapsed "$t0") s"
	ds ublk del "$id" || { fail "del"; return 1; }
}
test_fio_kernel() { test_fio kernel; }
test_fio_user()
{
	if ! "$DS" ublk add mem:8M --copy user --daemon >"$T/out" 2>"$T/err"; then
		grep -q "does not offer USER_COPY" "$T/err" ||
			{ cat "$T/err"; fail "--copy user failed without a clear message"; return 1; }
		info "--copy user refused on $KV: $(cat "$T/err")"
		skip "no USER_COPY on this kernel"
		return 77
	fi
	dev=$(cat "$T/out")
	ds ublk list --json | grep -q "\"device\": \"$dev\".*\"copy\": \"user\"" ||
		{ ds ublk list --json; fail "--copy user: list does not say user"; return 1; }
	ds ublk del "$(dev_id "$dev")"
	test_fio user
}

# 6. Discard and write-zeroes reach the disk; NOUNMAP is honoured.
blocks() { stat -c %b "$1"; }
zero_at() { dd if="$1" bs=1M skip="$2" count="$3" 2>/dev/null | cmp -s - /dev/zero -n $(($3 << 20)); }

test_discard_wzeroes()
{
	img=$T/d.img
	dd if=/dev/urandom of="$img" bs=1M count=64 2>/dev/null
	keep=$(dd if="$img" bs=1M skip=8 count=8 2>/dev/null | md5sum)
	dev=$(ublk_up "file:$img" --pidfile "$T/s.pid") || { fail "ublk add"; return 1; }
	id=$(dev_id "$dev")
	q=/sys/block/ublkb$id/queue
	info "discard_max_bytes=$(cat $q/discard_max_bytes) discard_granularity=$(cat $q/discard_granularity) write_zeroes_max_bytes=$(cat $q/write_zeroes_max_bytes)"
	[ "$(cat $q/discard_max_bytes)" -gt 0 ] || { fail "no discard"; return 1; }
	[ "$(cat $q/write_zeroes_max_bytes)" -gt 0 ] || { fail "no write-zeroes"; return 1; }
	# A file is written through the page cache: FLUSH and FUA must reach us.
	[ "$(cat $q/write_cache)" = "write back" ] || { fail "write_cache: $(cat $q/write_cache)"; return 1; }
	[ "$(cat $q/fua)" = 1 ] || { fail "fua: $(cat $q/fua)"; return 1; }
	b0=$(blocks "$img")
	# Discard: the backend punches a hole.
	$BLKDISCARD -o 0 -l 8M "$dev" || { fail "blkdiscard"; return 1; }
	zero_at "$img" 0 8 || { fail "discarded range does not read zero in the file"; return 1; }
	b1=$(blocks "$img")
	[ $((b0 - b1)) -ge 16000 ] || { fail "discard freed $((b0 - b1)) blocks, expected ~16384"; return 1; }
	# Write-zeroes with NOUNMAP (BLKZEROOUT): zeroes, allocation kept.
	$BLKDISCARD -z -o 16M -l 8M "$dev" || { fail "blkdiscard -z"; return 1; }
	zero_at "$img" 16 8 || { fail "BLKZEROOUT range does not read zero"; return 1; }
	b2=$(blocks "$img")
	[ "$b2" -ge "$b1" ] || { fail "NOUNMAP write-zeroes deallocated ($b1 -> $b2 blocks)"; return 1; }
	# Write-zeroes that may unmap (fallocate --punch-hole on the device).
	$FALLOCATE -p -o 32M -l 8M "$dev" || { fail "fallocate -p"; return 1; }
	zero_at "$img" 32 8 || { fail "punched range does not read zero"; return 1; }
	b3=$(blocks "$img")
	[ $((b2 - b3)) -ge 16000 ] || { fail "write-zeroes without NOUNMAP freed $((b2 - b3)) blocks"; return 1; }
	[ "$(dd if="$img" bs=1M skip=8 count=8 2>/dev/null | md5sum)" = "$keep" ] ||
		{ fail "data outside the ranges changed"; return 1; }
	info "blocks: $b0 -> discard $b1 -> zeroout(nounmap) $b2 -> punch $b3"
	ds ublk del "$id" || { fail "del"; return 1; }
}

# 7. A read-only device refuses writes.
test_read_only()
{
	img=$T/ro.img
	dd if=/dev/urandom of="$img" bs=1M count=16 2>/dev/null
	sum0=$(md5sum < "$img")
	dev=$(ublk_up "file:$img" --ro --pidfile "$T/s.pid") || { fail "ublk add --ro"; return 1; }
	id=$(dev_id "$dev")
	[ "$(cat /sys/block/ublkb$id/ro)" = 1 ] || { fail "the kernel does not show it read-only"; return 1; }
	[ "$(cat /sys/block/ublkb$id/queue/discard_max_bytes)" = 0 ] || { fail "read-only device offers discard"; return 1; }
	if dd if=/dev/zero of="$dev" bs=4k count=4 oflag=direct conv=fsync 2>"$T/dd.err"; then
		fail "a write to the read-only device succeeded"
		return 1
	fi
	info "write refused: $(grep -v records "$T/dd.err" | head -n2 | tr '\n' ' ')"
	# The kernel refuses before we see it; make the block device writable
	# behind the server's back and the server must refuse too.
	if blockdev --setrw "$dev" 2>/dev/null; then
		if dd if=/dev/zero of="$dev" bs=4k count=4 oflag=direct conv=fsync 2>"$T/dd.err"; then
			fail "the server accepted a write to a read-only device"
			return 1
		fi
		if grep -q 'Operation not permitted' "$T/dd.err"; then
			info "after BLKROSET 0 the kernel still refuses (the disk itself is read-only)"
		else
			info "server refused the write: $(grep -v records "$T/dd.err" | head -n1)"
		fi
	else
		info "BLKROSET 0 refused by the kernel; server-side refusal not reachable"
	fi
	$BLKDISCARD "$dev" 2>/dev/null && { fail "discard succeeded"; return 1; }
	cmp "$dev" "$img" || { fail "reads differ from the image"; return 1; }
	[ "$(md5sum < "$img")" = "$sum0" ] || { fail "the image changed"; return 1; }
	ds ublk del "$id" || { fail "del"; return 1; }
}

# 8. --recoverable: kill -9 the server under fio, recover, fio verifies.
# The depth is above fio's per-queue load: on 6.12 a server that dies with
# every tag of a queue busy is only noticed by the block layer's request
# timeout (30 s), because there is no armed command left to cancel. The
# waits for the kernel to notice a dead server allow 120 s (a TCG guest on a
# busy host is slow); the times are printed, never compared.
test_recover()
{
	img=$T/r.img
	dd if=/dev/zero of="$img" bs=1M count=0 seek=128 2>/dev/null
	dev=$(ublk_up "file:$img" --recoverable --queues 2 --depth 64 --pidfile "$T/s1.pid") ||
		{ fail "ublk add --recoverable"; return 1; }
	id=$(dev_id "$dev")
	pid1=$(cat "$T/s1.pid")
	fio --name=recover --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
		--iodepth=32 --numjobs=2 --size=48M --offset_increment=48M --cpus_allowed=0-1 \
		--cpus_allowed_policy=split --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--group_reporting >"$T/fio.out" 2>&1 &
	fiopid=$!
	sleep 3
	kill -0 $fiopid 2>/dev/null || { cat "$T/fio.out"; fail "fio ended before the kill"; return 1; }
	t0=$(now)
	kill -9 "$pid1"
	wait_for '[ "$(ublk_state '"$id"')" = quiesced ]' 120 || { fail "state $(ublk_state "$id") 120 s after kill -9"; return 1; }
	tq=$(elapsed "$t0")
	[ -b "$dev" ] || { fail "$dev disappeared"; return 1; }
	kill -0 $fiopid 2>/dev/null || { cat "$T/fio.out"; fail "fio ended while the server was dead"; return 1; }
	t1=$(now)
	ds ublk recover "$id" "file:$img" --daemon --pidfile "$T/s2.pid" >"$T/rec.out" ||
		{ fail "ublk recover"; return 1; }
	tr=$(elapsed "$t1")
	[ "$(cat "$T/rec.out")" = "$dev" ] || { fail "recover printed '$(cat "$T/rec.out")'"; return 1; }
	[ "$(ublk_state "$id")" = live ] || { fail "state $(ublk_state "$id") after recover"; return 1; }
	pid2=$(cat "$T/s2.pid")
	ds ublk list | awk -v id="$id" -v p="$pid2" '$1 == id && $7 == p { ok = 1 } END { exit !ok }' ||
		{ ds ublk list; fail "list does not show the new server"; return 1; }
	wait $fiopid
	rc=$?
	[ $rc -eq 0 ] && grep -q 'err= 0' "$T/fio.out" || { cat "$T/fio.out"; fail "fio failed (exit $rc)"; return 1; }
	info "recover on $KV under fio: kill -9 -> quiesced after $tq s (I/O held, $dev stayed), recover took $tr s, fio verify passed"

	# Recovering a device whose server is alive is refused at once.
	expect_rc 1 ublk recover "$id" "file:$img" && expect_msg "is live, served by pid $pid2" || return 1

	# An idle server killed: how long until the kernel notices; recover
	# again, this time with the spec from the device record (after a spec
	# of the wrong size is refused).
	sum=$(dd if="$dev" bs=1M count=96 iflag=direct 2>/dev/null | md5sum)
	t0=$(now)
	kill -9 "$pid2"
	wait_for '[ "$(ublk_state '"$id"')" = quiesced ]' 120 || { fail "idle: state $(ublk_state "$id") 120 s after kill -9"; return 1; }
	tq=$(elapsed "$t0")
	expect_rc 2 ublk recover "$id" mem:64M && expect_msg "does not match" || return 1
	[ "$(ublk_state "$id")" = quiesced ] || { fail "a refused recover changed the state"; return 1; }
	ds ublk recover "$id" --daemon --pidfile "$T/s3.pid" >/dev/null || { fail "recover from the record"; return 1; }
	[ "$(dd if="$dev" bs=1M count=96 iflag=direct 2>/dev/null | md5sum)" = "$sum" ] ||
		{ fail "data changed across the second recovery"; return 1; }
	info "recover on $KV, idle: quiesced after $tq s, recovered from the record"

	# A dead server's quiesced device can also just be deleted.
	kill -9 "$(cat "$T/s3.pid")"
	wait_for '[ "$(ublk_state '"$id"')" = quiesced ]' 120 || { fail "third kill: state $(ublk_state "$id")"; return 1; }
	ds ublk del "$id" || { fail "del of the quiesced device"; return 1; }
	[ ! -e "$dev" ] && [ ! -e "/dev/ublkc$id" ] || { fail "nodes remain after del"; return 1; }
}

# 9. A non-recoverable server killed: the kernel stops the device (DEAD) and
# `ublk del` removes the leftover.
test_kill_then_del()
{
	dev=$(ublk_up mem:16M --pidfile "$T/s.pid") || { fail "ublk add"; return 1; }
	id=$(dev_id "$dev")
	t0=$(now)
	kill -9 "$(cat "$T/s.pid")"
	wait_for '[ ! -e '"$dev"' ] && [ "$(ublk_state '"$id"')" = dead ]' 120 ||
		{ ds ublk list; fail "device not dead 120 s after kill -9"; return 1; }
	info "kill -9 without --recoverable: device dead after $(elapsed "$t0") s"
	ds ublk del "$id" || { fail "del of the dead device"; return 1; }
	[ ! -e "/dev/ublkc$id" ] || { fail "/dev/ublkc$id remains"; return 1; }
}

# 10. SIGINT/SIGTERM to a foreground server: clean teardown, exit 0.
test_signal()
{
	sig=$1
	"$DS" ublk add mem:16M >"$T/out" 2>"$T/err" &
	pid=$!
	wait_for '[ -s '"$T"'/out ]' 60 || { cat "$T/err"; fail "no device printed"; return 1; }
	dev=$(cat "$T/out")
	echo hello | dd of="$dev" bs=4k conv=sync oflag=direct 2>/dev/null
	kill -"$sig" $pid
	wait $pid
	rc=$?
	[ $rc -eq 0 ] || { cat "$T/err"; fail "exit $rc after SIG$sig"; return 1; }
	[ ! -e "$dev" ] || { fail "$dev remains"; return 1; }
}

# 11. Injected faults (error:): the guest's dd sees the errno of the ublk
# status table (ublk/ubsrv-queue.c): EIO for an I/O error, ENOSPC for out
# of space, ENODATA (BLK_STS_MEDIUM) for a medium error and for an I/O
# error with ENODATA (what a host disk's medium error is); requests outside
# the rules' ranges keep working, and so does the device afterwards.
# Direct I/O of whole 4 KiB blocks: busybox dd drops O_DIRECT when the
# kernel refuses its buffer (6.1 wants 512-byte aligned memory), and
# through the page cache a read error is EIO and a write error waits for
# writeback.
dd_fails()
{
	# $1: the expected strerror text; the rest: dd's arguments
	want=$1
	shift
	if dd "$@" 2>"$T/dd.err"; then
		fail "dd $* succeeded"
		return 1
	fi
	grep -q "$want" "$T/dd.err" || { cat "$T/dd.err"; fail "dd $*: not '$want'"; return 1; }
	info "dd $*: $(grep -v records "$T/dd.err" | head -n1)"
}
test_error_statuses()
{
	dev=$(ublk_up 'error:read:eio;range=2048-4095/write:enospc;range=8192/read:medium;range=16384/write:medium;range=16385/read:enodata;range=24576:mem:16M' \
		--pidfile "$T/s.pid") || { fail "ublk add"; return 1; }
	id=$(dev_id "$dev")
	dd if="$dev" of=/dev/null bs=4k count=16 iflag=direct 2>"$T/dd.err" ||
		{ cat "$T/dd.err"; fail "read outside the ranges"; return 1; }
	dd_fails 'Input/output error' if="$dev" of=/dev/null bs=4k skip=256 count=1 iflag=direct || return 1
	dd_fails 'No space left on device' if=/dev/zero of="$dev" bs=4k seek=1024 count=1 oflag=direct || return 1
	dd_fails 'No data available' if="$dev" of=/dev/null bs=4k skip=2048 count=1 iflag=direct || return 1
	dd_fails 'No data available' if=/dev/zero of="$dev" bs=4k seek=2048 count=1 oflag=direct || return 1
	# A host disk's medium error (ENODATA) is a medium error here too.
	dd_fails 'No data available' if="$dev" of=/dev/null bs=4k skip=3072 count=1 iflag=direct || return 1
	# The device and its server are still there and serve the rest.
	rw_back "$dev" 4k 600 4 "after the errors" || return 1
	kill -0 "$(cat "$T/s.pid")" || { fail "the server died"; return 1; }
	ds ublk del "$id" || { fail "del"; return 1; }
}

# 12. serve --control in the guest (docs/ctl.md, "ublk devices"): ublk-add
# on an NBD export makes a device over the same disk (data written through
# it reads back over NBD); disk-resize on the export reaches it with
# UPDATE_SIZE where the kernel has it (Linux 6.16: /sys/block/ublkbN/size
# changes), else the result says so and the size stays; a new NBD client
# sees the new size either way; ublk-del removes the device; a device
# still up when serve stops is torn down with it.
json_num() { sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p" "$2" | head -n1; }
test_ctl_ublk()
{
	"$DS" serve -U "$T/nbd.sock" --control "$T/ctl.sock" -e a=mem:16M -e b=mem:8M \
		-P "$T/serve.pid" 2>>"$T/ds.err" &
	wait_for '[ -f "$T/serve.pid" ]' 30 || { fail "serve did not start"; return 1; }
	c() { "$DS" ctl -S "$T/ctl.sock" "$@" 2>>"$T/ctl.err"; }
	c ublk-add export=a > "$T/add" || { cat "$T/ctl.err"; fail "ublk-add"; return 1; }
	cat "$T/add"
	id=$(json_num id "$T/add")
	dev=/dev/ublkb$id
	wait_for '[ -b "$dev" ]' 10 || { fail "$dev did not appear"; return 1; }
	[ "$(blockdev --getsize64 "$dev")" = $((16 << 20)) ] || { fail "size $(blockdev --getsize64 "$dev")"; return 1; }
	grep -q '"export":"a"' "$T/add" || { fail "ublk-add result lacks the export"; return 1; }
	# Counting on (stats-enable): the device's entry counts the requests
	# on the export's disk, so the 1 MiB written below shows as exactly
	# that many write bytes (docs/ctl.md, "stats").
	c stats-enable > /dev/null || { cat "$T/ctl.err"; fail "stats-enable"; return 1; }
	# The same disk: written over ublk, read over NBD.
	dd if=/dev/urandom of="$T/pat" bs=64k count=16 2>/dev/null
	dd if="$T/pat" of="$dev" bs=64k oflag=direct 2>/dev/null || { fail "write"; return 1; }
	c stats "target=$dev" > "$T/stats" || { cat "$T/ctl.err"; fail "stats of $dev"; return 1; }
	grep -q "\"name\":\"$dev\"" "$T/stats" || { cat "$T/stats"; fail "stats: no entry for $dev"; return 1; }
	w=$(grep -o '"write":{"ops":[0-9]*,"bytes":[0-9]*' "$T/stats" | head -n1)
	wops=$(echo "$w" | sed -n 's/.*"ops":\([0-9]*\).*/\1/p')
	wbytes=$(echo "$w" | sed -n 's/.*"bytes":\([0-9]*\)/\1/p')
	[ "$wbytes" = 1048576 ] && [ "${wops:-0}" -ge 1 ] ||
		{ cat "$T/stats"; fail "stats: writes $wops ops, $wbytes bytes, expected 1048576 bytes"; return 1; }
	info "stats of $dev: $wops writes, $wbytes bytes"
	ds copy "nbd:nbd+unix:///a?socket=$T/nbd.sock" "file:$T/back;create=16M" ||
		{ fail "copy over NBD"; return 1; }
	head -c $((1 << 20)) "$T/back" | cmp - "$T/pat" || { fail "NBD does not read what ublk wrote"; return 1; }
	c ublk-list > "$T/list" && grep -q "\"name\":\"$dev\"" "$T/list" && grep -q '"state":"live"' "$T/list" ||
		{ cat "$T/list"; fail "ublk-list"; return 1; }
	c export-list > "$T/elist"
	grep -q '"frontend":"ublk"' "$T/elist" || { cat "$T/elist"; fail "export-list lacks the ublk device"; return 1; }
	c ublk-add export=b "id=$id" 2>/dev/null && { fail "a second device took id $id"; return 1; }
	grep -q -- "-32002" "$T/ctl.err" || { cat "$T/ctl.err"; fail "id taken: not -32002"; return 1; }

	# Resize through the control socket.
	c disk-resize target=a size=$((32 << 20)) > "$T/resize" || { cat "$T/ctl.err"; fail "disk-resize"; return 1; }
	cat "$T/resize"
	sectors=$(cat "/sys/block/ublkb$id/size")
	if grep -q '"updated":true' "$T/resize"; then
		wait_for '[ "$(cat /sys/block/ublkb$id/size)" = 65536 ]' 10 ||
			{ fail "UPDATE_SIZE reported, but the size is $(cat /sys/block/ublkb$id/size) sectors"; return 1; }
		last_mib_rw "$dev" 31 || return 1
		info "UPDATE_SIZE: /sys/block/ublkb$id/size is now 65536 sectors"
	else
		grep -q '"updated":false' "$T/resize" && grep -q 'UPDATE_SIZE' "$T/resize" ||
			{ fail "disk-resize did not report the ublk device"; return 1; }
		[ "$sectors" = 32768 ] || { fail "no UPDATE_SIZE, but the size changed to $sectors"; return 1; }
		info "kernel $KV lacks UBLK_F_UPDATE_SIZE (Linux 6.16): /dev/ublkb$id keeps 32768 sectors; the result says so"
	fi
	ds info --json "nbd:nbd+unix:///a?socket=$T/nbd.sock" > "$T/info" || { fail "info over NBD"; return 1; }
	grep -q '"size_bytes": 33554432' "$T/info" || { cat "$T/info"; fail "a new NBD client does not see 32 MiB"; return 1; }

	# `ublk del` would stop the whole server: refused, with the way to do it.
	"$DS" ublk del "$id" 2>"$T/del.err"
	rc=$?
	[ $rc -eq 1 ] && grep -q "diskstack ctl ublk-del id=$id" "$T/del.err" ||
		{ cat "$T/del.err"; fail "ublk del of a serve device: exit $rc"; return 1; }
	kill -0 "$(cat "$T/serve.pid")" && [ -b "$dev" ] || { fail "ublk del stopped the server"; return 1; }
	c ublk-del "id=$id" > "$T/del" || { cat "$T/ctl.err"; fail "ublk-del"; return 1; }
	wait_for '[ ! -e "$dev" ]' 10 || { fail "$dev remains after ublk-del"; return 1; }
	c ublk-del "id=$id" 2>/dev/null && { fail "second ublk-del succeeded"; return 1; }

	# A device still up when serve stops goes with it.
	c ublk-add export=b > "$T/add2" || { cat "$T/ctl.err"; fail "ublk-add b"; return 1; }
	id2=$(json_num id "$T/add2")
	[ -b "/dev/ublkb$id2" ] || wait_for '[ -b /dev/ublkb$id2 ]' 10 || { fail "/dev/ublkb$id2 missing"; return 1; }
	pid=$(cat "$T/serve.pid")
	kill -TERM "$pid"
	wait_for '! kill -0 $pid 2>/dev/null' 30 || { fail "serve did not stop"; return 1; }
	wait "$pid"
	rc=$?
	[ $rc -eq 0 ] || { fail "serve exited $rc"; return 1; }
	[ ! -e "/dev/ublkb$id2" ] || { fail "/dev/ublkb$id2 survived serve"; return 1; }
	rm -f "$T/serve.pid"
}

run_test driver-missing test_driver_missing
run_test modprobe-add-list-del test_modprobe_add_del
run_test bad-arguments test_bad_args
run_test ext4-memdiff test_ext4_memdiff
run_test fio-verify-kernel-copy test_fio_kernel
run_test fio-verify-user-copy test_fio_user
run_test discard-write-zeroes test_discard_wzeroes
run_test read-only test_read_only
run_test recover test_recover
run_test kill-then-del test_kill_then_del
test_sigint() { test_signal INT; }
test_sigterm() { test_signal TERM; }
run_test sigint test_sigint
run_test sigterm test_sigterm
run_test error-statuses test_error_statuses
run_test ctl-ublk test_ctl_ublk
