# SPDX-License-Identifier: MIT
# guest-bench.sh: the ublk benchmark, run inside the guest by /init (busybox
# sh): fio 4k randread and randwrite at QD32 on /dev/ublkbN served from a
# file (kernel copy and, where the kernel has it, USER_COPY) and on
# /dev/loop0 over the same file, in the same boot, alternating. Prints
# "VMTEST: RESULT <device> <job> <round> <iops>" lines; tests/vm/bench-ublk.sh
# turns them into medians and ratios. TCG numbers: ratios only.
. /vm/guest-lib.sh

RUNTIME=$(sed -n 's/.*ds\.runtime=\([0-9]*\).*/\1/p' /proc/cmdline)
ROUNDS=$(sed -n 's/.*ds\.rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
IMG=/tmp/bench.img
SIZE_MB=512

fio_iops()
{
	# fio_iops DEV RW: one run; prints the IOPS.
	fio --name=b --filename="$1" --ioengine=libaio --direct=1 --rw="$2" --bs=4k --iodepth=32 \
		--numjobs=1 --time_based --runtime="$RUNTIME" --ramp_time=1 --size=${SIZE_MB}M \
		--randrepeat=0 --norandommap --output-format=terse --terse-version=3 2>/dev/null |
		awk -F';' -v rw="$2" '{ print (rw == "randread") ? $8 : $49 }'
}

bench()
{
	TNAME=bench
	mkdir -p "$T"
	echo 1 > /proc/sys/vm/drop_caches
	# A file with data everywhere, so reads hit real pages.
	dd if=/dev/urandom of="$IMG" bs=1M count=$SIZE_MB 2>/dev/null
	loop=$($LOSETUP --show -f "$IMG") || { fail "losetup"; return 1; }
	echo none > "/sys/block/${loop#/dev/}/queue/scheduler" 2>/dev/null
	modes="kernel"
	"$DS" ublk add mem:4M --copy user --daemon >"$T/probe" 2>/dev/null &&
		"$DS" ublk del "$(dev_id "$(cat "$T/probe")")" && modes="kernel user"
	info "bench: $(uname -r), $(nproc) CPUs, ${RUNTIME}s per run, $ROUNDS rounds, copy modes: $modes"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for rw in randread randwrite; do
			echo "VMTEST: RESULT loop $rw $r $(fio_iops "$loop" "$rw")"
			for m in $modes; do
				dev=$(ublk_up "file:$IMG" --copy "$m" --queues 1 --depth 64 --pidfile "$T/s.pid") ||
					{ fail "ublk add --copy $m"; return 1; }
				echo none > "/sys/block/${dev#/dev/}/queue/scheduler" 2>/dev/null
				echo "VMTEST: RESULT ublk-$m $rw $r $(fio_iops "$dev" "$rw")"
				"$DS" ublk del "$(dev_id "$dev")" || { fail "del"; return 1; }
			done
		done
		r=$((r + 1))
	done
	$LOSETUP -d "$loop"
	echo "VMTEST: PASS bench"
}
bench
