#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-ublk.sh [KERNEL...]: the ublk benchmark in a QEMU TCG guest (not part
# of make check). fio 4k randread/randwrite at QD32 on /dev/ublkb0 served
# from a file (diskstack ublk add file:..., kernel copy and USER_COPY where
# the kernel has it; on tmpfs also kernel copy with the file backend forced
# onto io_uring, ublk-kernel-uring) against a loop device on the same file,
# alternating in one boot (tests/vm/guest-bench.sh); prints medians and
# ratios.
# KERNEL: 6.12 (default) and/or 6.1.
# Environment: BENCH_RUNTIME (seconds per run, default 10), BENCH_ROUNDS
# (default 3), BENCH_SCENARIOS ("tmpfs direct"), plus the DISKSTACK_VM_*
# knobs of vm-lib.sh. TCG emulates every instruction: only ratios count.
. "$(dirname "$0")/vm-lib.sh"
vm_requires
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.12)
runtime=${BENCH_RUNTIME:-10}
rounds=${BENCH_ROUNDS:-3}
scenarios=${BENCH_SCENARIOS:-tmpfs direct}
work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rc=0
for kernel in "${kernels[@]}"; do
	vm_prepare_initrd "$kernel" bench
	log=$work/console-$kernel-bench.log
	rm -f "$work/vda.img"
	truncate -s 1G "$work/vda.img"
	nsc=$(echo $scenarios | wc -w)
	# Per scenario and round: 2 jobs on up to 4 devices; plus the
	# in-process runs (4 per scenario at most) and boot, set-up, dd.
	tmo=$(( (runtime + 6) * (rounds * 8 + 4) * nsc + 300 ))
	vm_boot "$log" "$tmo" "ds.runtime=$runtime ds.rounds=$rounds ds.scenarios=${scenarios// /,}" \
		-nic none -drive "file=$work/vda.img,format=raw,if=virtio,cache=unsafe"
	if ! grep -aq '^VMTEST: PASS bench' "$log"; then
		grep -a '^VMTEST' "$log"
		tail -n 30 "$log"
		rc=1
		continue
	fi
	# The serial console ends lines with CR LF.
	grep -a '^VMTEST: INFO' "$log" | tr -d '\r' | sed 's/^VMTEST: INFO //'
	res=$(grep -a '^VMTEST: RESULT' "$log" | tr -d '\r' | sed 's/^VMTEST: RESULT //')
	# ratio: median IOPS over the loop device's median IOPS; paired: the
	# median of the per-round ratios (each device against the loop run
	# of the same round), which load drifting between rounds moves less.
	printf '%-7s %-9s %-10s %-17s %10s  %-10s %-7s %s\n' kernel scenario job device "median IOPS" \
		ratio paired runs
	for sc in $scenarios; do
		for job in randread randwrite; do
			loop=$(echo "$res" | awk -v s=$sc -v j=$job '$1 == s && $2 == "loop" && $3 == j { print $5 }' | median)
			for dev in loop ublk-kernel ublk-user ublk-kernel-uring; do
				runs=$(echo "$res" | awk -v s=$sc -v d=$dev -v j=$job '$1 == s && $2 == d && $3 == j { print $5 }')
				[ -n "$runs" ] || continue
				med=$(echo "$runs" | median)
				ratio=$(awk -v a="$med" -v b="$loop" 'BEGIN { printf (b > 0 ? "%.2fx loop" : "-"), a / b }')
				paired=$(echo "$res" | awk -v s=$sc -v d=$dev -v j=$job '
					$1 == s && $3 == j && $2 == "loop" { l[$4] = $5 }
					$1 == s && $3 == j && $2 == d { v[$4] = $5 }
					END { for (r in v) if (l[r] > 0) print v[r] / l[r] }' | median)
				printf '%-7s %-9s %-10s %-17s %10.0f  %-10s %-7s (%s)\n' "$kernel" "$sc" "$job" "$dev" \
					"$med" "$ratio" "$(printf '%.2fx' "$paired")" "$(echo $runs | tr ' ' '/')"
			done
		done
	done
done
exit $rc
