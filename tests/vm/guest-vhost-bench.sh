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

RUNTIME=$(ds_arg runtime)
ROUNDS=$(ds_arg rounds)
DEVS=$(ds_arg devs | tr ',' ' ')
JOBS=$(ds_arg jobs | tr ',' ' ')

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
	BENCH_FIO_ARGS=--size=512M bench_rounds "$names" || return 1
	echo "VMTEST: PASS vhost-bench"
}
bench
