# SPDX-License-Identifier: MIT
# guest-bench.sh: the ublk benchmark, run inside the guest by /init (busybox
# sh): fio 4k randread and randwrite at QD32 on /dev/ublkbN served from a
# file (kernel copy and, where the kernel has it, USER_COPY) and on a loop
# device over the same file, in the same boot, alternating. Two scenarios:
#   tmpfs   the file on the guest's tmpfs, page cache I/O on both sides;
#   direct  the file on ext4 on a virtio disk (/dev/vda), O_DIRECT on both
#           sides: `file:...;direct` against `losetup --direct-io=on`.
# Prints "VMTEST: RESULT <scenario> <device> <job> <round> <iops>" lines;
# tests/vm/bench-ublk.sh turns them into medians and ratios. TCG: ratios only.
. /vm/guest-lib.sh

arg() { sed -n "s/.*ds\\.$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
RUNTIME=$(arg runtime)
ROUNDS=$(arg rounds)
SCENARIOS=$(arg scenarios | tr ',' ' ')
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

# scenario NAME IMG SIZE_MB LOSETUP_OPTS SPEC_SUFFIX
scenario()
{
	name=$1 img=$2 size=$3 lopts=$4 suffix=$5
	dd if=/dev/urandom of="$img" bs=1M count="$size" conv=fsync 2>/dev/null ||
		{ fail "$name: cannot create $img"; return 1; }
	loop=$($LOSETUP $lopts --show -f "$img") || { fail "$name: losetup $lopts"; return 1; }
	echo none > "/sys/block/${loop#/dev/}/queue/scheduler" 2>/dev/null
	for rw in randread randwrite; do
		info "$name: backend alone (diskstack bench file:$img$suffix), $rw: $("$DS" bench \
			"file:$img$suffix" --rw $rw --bs 4K --iodepth 32 --time "${RUNTIME}s" --force-write \
			2>/dev/null | grep -i 'iops=' | head -n1)"
	done
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for rw in randread randwrite; do
			echo "VMTEST: RESULT $name loop $rw $r $(fio_iops "$loop" "$rw")"
			for m in $modes; do
				dev=$(ublk_up "file:$img$suffix" --copy "$m" --queues 1 --depth 64 \
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
