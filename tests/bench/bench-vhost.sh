#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-vhost.sh [KERNEL]: diskstack's vhost-user-blk back-end against
# qemu-storage-daemon's vhost-user-blk export and QEMU's built-in
# virtio-blk and virtio-scsi, all on the same raw file in /dev/shm, in one
# TCG guest (tests/vm/guest-vhost-bench.sh), taking turns per job, ROUNDS
# times. Not pass/fail; results go into docs/bench-vhost.md by hand.
#
# Disks (one queue each):
#   ds         diskstack vhost-user-blk SOCK file:F --queues 1
#   qsd        qemu-storage-daemon --export type=vhost-user-blk (file + raw,
#              page cache, thread-pool AIO: its defaults), locking=off
#   qemu-blk   -device virtio-blk-pci on -blockdev file + raw (no iothread)
#   qemu-scsi  -device virtio-scsi-pci + scsi-hd on the same nodes' kind
# Jobs: 4 KiB random read and write at QD32 and QD1, 1 MiB sequential read
# and write at QD8 (fio, libaio, O_DIRECT, RUNTIME s after 1 s of ramp).
# Printed per disk and job: median guest IOPS (MiB/s for 1 MiB), the median
# of the per-round ratios to qsd, the back-end process's CPU time per
# request (utime + stime from /proc/PID/stat over the run, divided by the
# requests the guest's disk completed), and QEMU's own CPU per request
# outside its vCPU threads (the main loop, which relays the vhost-user
# kicks and calls under TCG, and its I/O worker threads).
#
# Environment: BENCH_RUNTIME (default 8), BENCH_ROUNDS (default 3),
# BENCH_DEVS (default "ds qsd qemu-blk qemu-scsi"; ds is left out when the
# build has no vhost-user-blk), BENCH_JOBS, BENCH_SIZE_MB (default 512),
# plus the DISKSTACK_VM_* knobs of tests/vm/vm-lib.sh. TCG emulates every
# guest instruction: only ratios within one run mean anything.
. "$(dirname "$0")/../vm/vm-lib.sh"
. "$VM_DIR/vhost-lib.sh"

vm_requires
command -v qemu-storage-daemon >/dev/null 2>&1 || vm_skip "qemu-storage-daemon is missing"
kernel=${1:-6.12}
runtime=${BENCH_RUNTIME:-8}
rounds=${BENCH_ROUNDS:-3}
devs=${BENCH_DEVS:-ds qsd qemu-blk qemu-scsi}
jobs=${BENCH_JOBS:-randread-4k-qd32 randwrite-4k-qd32 randread-4k-qd1 randwrite-4k-qd1 read-1m-qd8 write-1m-qd8}
size_mb=${BENCH_SIZE_MB:-512}
VM_MEM=${DISKSTACK_VM_MEM:-1G}
if [[ " $devs " == *" ds "* ]] && ! "$DISKSTACK" vhost-user-blk --help >/dev/null 2>&1; then
	vm_log "this diskstack has no vhost-user-blk: leaving 'ds' out"
	devs=$(echo " $devs " | sed 's/ ds / /')
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vhost.XXXXXX")
shm=$(mktemp -d /dev/shm/bench-vhost.XXXXXX)
VHOST_WORK=$work
cleanup()
{
	[ -s "$work/qemu.pid" ] && kill "$(cat "$work/qemu.pid")" 2>/dev/null
	vhost_stop_all
	rm -rf "$shm"
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# vm_bench_marks' SAMPLE: the back-end's ticks ("-" for QEMU's own disks)
# and QEMU's outside its vCPU threads.
sample()
{
	echo "$([ -n "${VHOST_PID[$1]:-}" ] && vhost_cpu_ticks "$1" || echo -)" \
		"$(vm_qemu_aux_ticks "$(cat "$work/qemu.pid")")"
}

vm_prepare "$kernel"
MODS="$MODS virtio_scsi sd_mod"
INITRD=$work/initrd.img
vm_initrd "$INITRD" vhost-bench
img=$shm/disk.img
vm_log "filling $img ($size_mb MiB)"
head -c $((size_mb << 20)) /dev/urandom > "$img"

# PCI slots 0x10.. in the order of $devs; the guest finds its disks by slot.
qemu_args=($(vhost_memory_args))
slot=16 devmap=
for d in $devs; do
	hex=$(printf '%02x' $slot)
	case $d in
	ds|qsd)
		[ $d = ds ] && VHOST_PEER=diskstack || VHOST_PEER=qsd
		vhost_start "$d" "$work/$d.sock" "file:$img" "q=1 nolock" ||
			vm_die "cannot start the $d back-end"
		qemu_args+=(-chardev "socket,id=c$slot,path=$work/$d.sock"
			-device "vhost-user-blk-pci,chardev=c$slot,num-queues=1,addr=0x$hex") ;;
	qemu-blk)
		qemu_args+=(-blockdev "driver=file,node-name=bf,filename=$img,locking=off"
			-blockdev "driver=raw,node-name=bd,file=bf"
			-device "virtio-blk-pci,drive=bd,num-queues=1,addr=0x$hex") ;;
	qemu-scsi)
		qemu_args+=(-blockdev "driver=file,node-name=sf,filename=$img,locking=off"
			-blockdev "driver=raw,node-name=sd,file=sf"
			-device "virtio-scsi-pci,id=scsi0,num_queues=1,addr=0x$hex"
			-device "scsi-hd,drive=sd,bus=scsi0.0") ;;
	*) vm_die "unknown disk '$d'" ;;
	esac
	devmap+="${devmap:+,}$d@$hex"
	slot=$((slot + 1))
done

njobs=$(echo $jobs | wc -w)
ndevs=$(echo $devs | wc -w)
tmo=$(( (runtime + 8) * rounds * njobs * ndevs + 300 ))
log=$work/console.log
marks=$work/marks
: > "$marks"
vm_log "$kernel: $ndevs disks x $njobs jobs x $rounds rounds x ${runtime}s (timeout ${tmo}s); load: $(cut -d' ' -f1-3 /proc/loadavg)"
vm_boot "$log" "$tmo" "ds.runtime=$runtime ds.rounds=$rounds ds.devs=$devmap ds.jobs=${jobs// /,}" \
	-nic none -pidfile "$work/qemu.pid" "${qemu_args[@]}" &
boot=$!
vm_bench_marks "$log" "$marks" $boot sample
wait $boot
rm -f "$work/qemu.pid"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
vm_bench_results "$log" vhost-bench "$marks"

# per NAME JOB ROUND: µs of CPU per request, back-end and QEMU aux.
# shellcheck disable=SC2154 # vm_bench_results sets res
cpu=$(vm_bench_cpu "$res" "$marks")

echo
echo "kernel $kernel, $rounds rounds x ${runtime}s, load average at the end: $load_end"
printf '%-17s %-10s %10s  %-9s %12s %12s  %s\n' job disk "IOPS" "vs qsd" "be us/req" "qemu us/req" "IOPS per round"
for j in $jobs; do
	for d in $devs; do
		runs=$(echo "$res" | awk -v d=$d -v j=$j '$1 == d && $2 == j { print $4 }')
		[ -n "$runs" ] || continue
		med=$(echo "$runs" | vm_median)
		paired=$(echo "$res" | awk -v d=$d -v j=$j '
			$2 == j && $1 == "qsd" { q[$3] = $4 }
			$2 == j && $1 == d { v[$3] = $4 }
			END { for (r in v) if (q[r] > 0) print v[r] / q[r] }' | vm_median)
		be=$(echo "$cpu" | awk -v d=$d -v j=$j '$1 == d && $2 == j && $4 != "-" { print $4 }' | vm_median)
		aux=$(echo "$cpu" | awk -v d=$d -v j=$j '$1 == d && $2 == j && $5 != "-" { print $5 }' | vm_median)
		printf '%-17s %-10s %10.0f  %-9s %12s %12s  (%s)\n' "$j" "$d" "$med" \
			"$([ "$paired" = - ] && echo - || printf '%.2fx' "$paired")" \
			"$([ "$be" = - ] && echo - || printf '%.1f' "$be")" \
			"$([ "$aux" = - ] && echo - || printf '%.1f' "$aux")" "$(echo $runs | tr ' ' '/')"
	done
done
