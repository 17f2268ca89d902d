# SPDX-License-Identifier: MIT
# guest-vhost-bench.sh: the guest side of tests/bench/bench-vhost.sh, run by
# /init (busybox sh). Several disks over the same host file, each found by
# the PCI slot the host gave it (ds.devs=NAME@SLOT,...): vhost-user-blk
# back-ends and QEMU's built-in virtio-blk and virtio-scsi. Per round, per
# job, the disks take turns. Around each fio run the guest prints
#   VMTEST: HOST mark NAME JOB ROUND start|end
# so that the host samples the back-ends' CPU time, and after it
#   VMTEST: RESULT NAME JOB ROUND IOPS REQUESTS
# with REQUESTS the requests the disk completed during the run (from
# /sys/block/X/stat). TCG emulates every instruction: only ratios count.
. /vm/guest-lib.sh

arg() { sed -n "s/.*ds\\.$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
RUNTIME=$(arg runtime)
ROUNDS=$(arg rounds)
DEVS=$(arg devs | tr ',' ' ')
JOBS=$(arg jobs | tr ',' ' ')

# blockdev_at SLOT: the disk (vdX or sdX) under PCI device 0000:00:SLOT.0.
blockdev_at()
{
	for _b in /sys/block/vd* /sys/block/sd*; do
		[ -e "$_b/device" ] || continue
		case $(readlink -f "$_b/device") in
		*/0000:00:$1.0/*) echo "${_b##*/}"; return 0 ;;
		esac
	done
	return 1
}

# Requests completed by /sys/block/NAME: reads + writes (+ flushes).
requests() { awk '{ print $1 + $5 + ($16 == "" ? 0 : $16) }' "/sys/block/$1/stat"; }

# job_args JOB: fio options of one job name.
job_args()
{
	case $1 in
	randread-4k-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	randread-4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	randwrite-4k-qd1) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
	read-1m-qd8) echo "--rw=read --bs=1M --iodepth=8" ;;
	write-1m-qd8) echo "--rw=write --bs=1M --iodepth=8" ;;
	*) return 1 ;;
	esac
}

bench()
{
	TNAME=vhost-bench
	mkdir -p "$T"
	names=
	for d in $DEVS; do
		n=${d%@*}
		b=$(blockdev_at "${d#*@}") || { fail "no disk at PCI slot ${d#*@} ($n)"; ls -l /sys/block; return 1; }
		echo none > "/sys/block/$b/queue/scheduler" 2>/dev/null
		eval "dev_$(echo "$n" | tr '-' '_')=$b"
		info "$n: /dev/$b, $(($(cat /sys/block/$b/size) / 2048)) MiB, $(ls /sys/block/$b/mq | wc -l) queue(s), $(cat /sys/block/$b/queue/write_cache)"
		names="$names $n"
	done
	info "$(uname -r), $(nproc) CPUs, ${RUNTIME}s per run, $ROUNDS rounds, jobs: $JOBS"
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for j in $JOBS; do
			a=$(job_args "$j") || { fail "unknown job $j"; return 1; }
			for n in $names; do
				b=$(eval echo "\$dev_$(echo "$n" | tr '-' '_')")
				q0=$(requests "$b")
				echo "VMTEST: HOST mark $n $j $r start"
				# The host samples on seeing the line; give it the time.
				sleep 0.3
				iops=$(fio --name=b --filename="/dev/$b" --ioengine=libaio --direct=1 $a \
					--numjobs=1 --time_based --runtime="$RUNTIME" --ramp_time=1 --size=512M \
					--randrepeat=0 --norandommap --output-format=terse --terse-version=3 2>"$T/fio.err" |
					awk -F';' '{ printf "%.0f\n", $8 + $49 }')
				q1=$(requests "$b")
				echo "VMTEST: HOST mark $n $j $r end"
				[ -n "$iops" ] || { cat "$T/fio.err"; fail "fio on $n ($j)"; return 1; }
				echo "VMTEST: RESULT $n $j $r $iops $((q1 - q0))"
			done
		done
		r=$((r + 1))
	done
	echo "VMTEST: PASS vhost-bench"
}
bench
