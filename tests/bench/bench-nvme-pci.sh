#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-nvme-pci.sh [BUILDDIR]: 4 KiB random read and write at QD32
# through the NVMe PCI function in process (tests/bench/nvme-pci-bench.c,
# the unit tests' guest driver as the driver, one thread) against
# `diskstack bench` on the same spec, over mem: and memdiff:, taking
# turns, ROUNDS times. The measure is IOPS per core: requests divided by
# the process's CPU time (user + system) over the measured run, so a
# loaded machine changes it less than IOPS. Prints, per spec and job, the
# median of each side and the median of the per-round ratios
# (nvme-pci / diskstack bench). Not pass/fail; results go into
# docs/bench-nvme.md by hand.
#
# Environment: BENCH_SECONDS (default 3), BENCH_ROUNDS (default 3),
# BENCH_MIB (default 64: the disk size and range).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
secs=${BENCH_SECONDS:-3}
rounds=${BENCH_ROUNDS:-3}
mib=${BENCH_MIB:-64}

make -s -C "$build" diskstack tests/bench/nvme-pci-bench >/dev/null
shm=$(mktemp -d /dev/shm/bench-nvme-pci.XXXXXX)
trap 'rm -rf "$shm"' EXIT
truncate -s "${mib}M" "$shm/base.raw"
specs=("mem:${mib}M" "memdiff:file:$shm/base.raw")
out=$shm/results.txt

ds_run() {  # spec rw -> iops per core
	"$build/diskstack" bench "$1" --rw "$2" --bs 4K --iodepth 32 --time "${secs}s" \
		--prefill --json --quiet |
		/usr/bin/python3 -I -c 'import json,sys; j=json.load(sys.stdin); print(round(j["ops"]/j["process_cpu_s"]))'
}

nvme_run() {
	"$build/tests/bench/nvme-pci-bench" "$1" "$2" "$secs" 32 "$mib" | awk '{print $10}'
}

for ((round = 1; round <= rounds; round++)); do
	for spec in "${specs[@]}"; do
		for rw in randread randwrite; do
			if ((round % 2)); then
				d=$(ds_run "$spec" "$rw"); n=$(nvme_run "$spec" "$rw")
			else
				n=$(nvme_run "$spec" "$rw"); d=$(ds_run "$spec" "$rw")
			fi
			label=${spec%%:*}
			echo "$round $label $rw $d $n" | tee -a "$out" >&2
		done
	done
done

/usr/bin/python3 -I - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r, spec, rw, d, n = line.split()
    rows.setdefault((spec, rw), []).append((int(d), int(n)))
print("| disk | job | diskstack bench IOPS/core | nvme-pci IOPS/core | ratio (median of rounds) | rounds |")
print("|---|---|---|---|---|---|")
for (spec, rw), v in rows.items():
    d = statistics.median(x[0] for x in v)
    n = statistics.median(x[1] for x in v)
    ratio = statistics.median(x[1] / x[0] for x in v)
    print(f"| {spec}: | {rw} 4K QD32 | {d/1000:.0f} k | {n/1000:.0f} k | {ratio:.2f}x | {len(v)} |")
PY
