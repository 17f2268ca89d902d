# SPDX-License-Identifier: MIT
# guest-bench.sh: the ublk benchmark, run inside the guest by /init (busybox
# sh): fio 4k randread and randwrite at QD32 on /dev/ublkbN served from a
# file (kernel copy and, where the kernel has it, USER_COPY) and on a loop
# device over the same file, in the same boot, alternating. Two scenarios:
#   tmpfs   the file on the guest's tmpfs, page cache I/O on both sides;
#   direct  the file on ext4 on a virtio disk (/dev/vda), O_DIRECT on both
#           sides: `file:...;direct` against `losetup --direct-io=on`.
# The file backend moves data inline on tmpfs (storage/backends/filedisk.c); on the
# tmpfs scenario ublk-kernel-uring is kernel copy with DISKSTACK_FILE_RW=uring
# (the io_uring path), and INFO lines say how many of the backend's io_uring
# reads and writes the kernel punted to io-wq (tracepoint
# io_uring:io_uring_queue_async_work) and what the backend does alone on
# either path.
# Prints "VMTEST: RESULT <scenario> <device> <job> <round> <iops>" lines;
# tests/vm/bench-ublk.sh turns them into medians and ratios. TCG: ratios only.
. /vm/guest-lib.sh

RUNTIME=$(ds_arg runtime)
ROUNDS=$(ds_arg rounds)
SCENARIOS=$(ds_arg scenarios | tr ',' ' ')
RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-tmpfs direct}

fio_iops()
{
	# fio_iops DEV RW: one run; prints the IOPS.
	fio --name=b --filename="$1" --ioengine=libaio --direct=1 --rw="$2" --bs=4k --iodepth=32 \
		--numjobs=1 --time_based --runtime="$RUNTIME" --ramp_time=1 \
		--randrepeat=0 --norandommap --output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' -v rw="$2" '{ print (rw == "randread") ? $8 : $49 }'
}

# punted SPEC RW: "P of N" io_uring requests of an in-process run of 2000
# requests that went to io-wq, with the backend forced onto io_uring.
punted()
{
	tr=/sys/kernel/tracing
	[ -d $tr/events/io_uring ] || mount -t tracefs nodev $tr 2>/dev/null
	[ -f $tr/events/io_uring/io_uring_queue_async_work/enable ] || { echo "no tracefs"; return; }
	echo 0 > $tr/tracing_on
	echo > $tr/trace
	echo 1 > $tr/events/io_uring/io_uring_queue_async_work/enable
	echo 1 > $tr/events/io_uring/io_uring_complete/enable
	echo 1 > $tr/tracing_on
	DISKSTACK_FILE_RW=uring "$DS" bench "$1" --rw "$2" --bs 4K --iodepth 32 --ops 2000 \
		--force-write --quiet >/dev/null 2>&1
	echo 0 > $tr/tracing_on
	echo 0 > $tr/events/io_uring/enable
	echo "$(grep -c 'io_uring_queue_async_work:' $tr/trace) of $(grep -c 'io_uring_complete:' $tr/trace)"
	echo > $tr/trace
}

# scenario NAME IMG SIZE_MB LOSETUP_OPTS SPEC_SUFFIX
scenario()
{
	name=$1 img=$2 size=$3 lopts=$4 suffix=$5
	dd if=/dev/urandom of="$img" bs=1M count="$size" conv=fsync 2>/dev/null ||
		{ fail "$name: cannot create $img"; return 1; }
	loop=$($LOSETUP $lopts --show -f "$img") || { fail "$name: losetup $lopts"; return 1; }
	echo none > "/sys/block/${loop#/dev/}/queue/scheduler" 2>/dev/null
	for rw in randread randwrite; do
		info "$name: $rw: io_uring requests punted to io-wq: $(punted "file:$img$suffix" $rw)"
		for m in uring inline; do
			[ "$name" = tmpfs ] || [ $m = uring ] || continue
			info "$name: backend alone (diskstack bench file:$img$suffix), $m, $rw: $(\
				DISKSTACK_FILE_RW=$m "$DS" bench "file:$img$suffix" --rw $rw --bs 4K \
				--iodepth 32 --time "${RUNTIME}s" --force-write \
				2>/dev/null | grep -i 'iops=' | head -n1)"
		done
	done
	devs=$modes
	[ "$name" = tmpfs ] && devs="$modes kernel-uring"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for rw in randread randwrite; do
			echo "VMTEST: RESULT $name loop $rw $r $(fio_iops "$loop" "$rw")"
			for m in $devs; do
				dev=$(if [ $m = kernel-uring ]; then export DISKSTACK_FILE_RW=uring; fi
				      ublk_up "file:$img$suffix" --copy "${m%-uring}" --queues 1 --depth 64 \
					--pidfile "$T/s.pid") || { fail "$name: ublk add --copy $m"; return 1; }
				echo none > "/sys/block/${dev#/dev/}/queue/scheduler" 2>/dev/null
				echo "VMTEST: RESULT $name ublk-$m $rw $r $(fio_iops "$dev" "$rw")"
				"$DS" ublk del "$(dev_id "$dev")" || { fail "$name: del"; return 1; }
			done
		done
		r=$((r + 1))
	done
	$LOSETUP -d "$loop"
	rm -f "$img"
}

bench()
{
	TNAME=bench
	mkdir -p "$T"
	modes="kernel"
	"$DS" ublk add mem:4M --copy user --daemon >"$T/probe" 2>/dev/null &&
		"$DS" ublk del "$(dev_id "$(cat "$T/probe")")" && modes="kernel user"
	info "bench: $(uname -r), $(nproc) CPUs, ${RUNTIME}s per run, $ROUNDS rounds, copy modes: $modes"
	for s in $SCENARIOS; do
		case $s in
		tmpfs)
			scenario tmpfs /tmp/bench.img 512 "" "" || return 1 ;;
		direct)
			[ -b /dev/vda ] || { info "direct: no /dev/vda, skipped"; continue; }
			$MKFS_EXT4 -q -F /dev/vda && mkdir -p /mnt/d && mount -t ext4 /dev/vda /mnt/d ||
				{ fail "direct: ext4 on /dev/vda"; return 1; }
			scenario direct /mnt/d/bench.img 256 "--direct-io=on" ";direct" || return 1
			umount /mnt/d ;;
		esac
	done
	echo "VMTEST: PASS bench"
}
bench
