#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-vhost-ceiling.sh: the vhost-user-blk back-end's own ceiling, with
# no guest: `diskstack vhost-user-blk SOCK mem:SIZE` driven by the
# host-side test front-end (tests/bench/vhost-ceiling.c), against
# `diskstack bench` on the same kind of disk, taking turns job by job for
# ROUNDS rounds. Both disks are filled first (a mem: block's first write
# allocates it). Printed per job: median IOPS of each, median IOPS per
# core (requests / CPU seconds: the back-end process's utime + stime from
# /proc, and bench's worker-thread cpu_s), and the median of the per-round
# ratios vhost / bench of IOPS per core. Not pass/fail; results go into
# docs/bench-vhost.md by hand.
#
# Environment: BENCH_RUNTIME (s per run, default 5), BENCH_ROUNDS (3),
# BENCH_SIZE_MB (64), BENCH_JOBS (default "randread-4k-qd32
# randwrite-4k-qd32 read-1m-qd8 write-1m-qd8"), BUILD (the build
# directory, default ./build), DISKSTACK (the binary, default BUILD's).
# The two share this machine's cores with whatever else runs: compare
# within one run only.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../../build}
ds=${DISKSTACK:-$build/diskstack}
front=$build/tests/bench/vhost-ceiling
runtime=${BENCH_RUNTIME:-5}
rounds=${BENCH_ROUNDS:-3}
size_mb=${BENCH_SIZE_MB:-64}
jobs=${BENCH_JOBS:-randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8}
bytes=$((size_mb << 20))

[ -x "$ds" ] || { echo "no $ds: build first" >&2; exit 77; }
[ -x "$front" ] || make -C "$build" tests/bench/vhost-ceiling >/dev/null || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vhost-ceiling.XXXXXX")
pid=
cleanup()
{
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

"$ds" vhost-user-blk "$work/vub.sock" "mem:${size_mb}M" -P "$work/pid" 2>"$work/ds.err" &
pid=$!
for _ in $(seq 100); do [ -s "$work/pid" ] && break; sleep 0.1; done
[ -s "$work/pid" ] || { cat "$work/ds.err" >&2; exit 1; }
"$front" "$work/vub.sock" "$pid" write 1048576 8 0 "$bytes" >/dev/null || exit 1

# job -> mode bs qd
job_args()
{
	local rw=${1%%-*} rest=${1#*-}
	local bs=${rest%%-*} qd=${rest##*-qd}
	case $bs in 4k) bs=4096 ;; 1m) bs=1048576 ;; esac
	echo "$rw $bs $qd"
}

echo "# bench-vhost-ceiling: mem:${size_mb}M, ${runtime} s per run, $rounds rounds, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
	for job in $jobs; do
		read -r rw bs qd <<<"$(job_args "$job")"
		out=$("$front" "$work/vub.sock" "$pid" "$rw" "$bs" "$qd" "$runtime" "$bytes") || exit 1
		iops=$(sed -n 's/.* iops=\([0-9]*\) .*/\1/p' <<<"$out")
		ipc=$(sed -n 's/.*iops_per_core=\([0-9]*\).*/\1/p' <<<"$out")
		echo "$r $job vhost $iops $ipc" >>"$work/results"
		bench_rw=$rw
		json=$("$ds" bench "mem:${size_mb}M" --rw "$bench_rw" --bs "$bs" --iodepth "$qd" \
			--time "${runtime}s" --prefill --json -q) || exit 1
		read -r biops bcpu bops < <(/usr/bin/python3 -I -c '
import json, sys
j = json.load(sys.stdin)
print(round(j["iops"]), j["cpu_s"], j["ops"])' <<<"$json")
		bipc=$(awk -v o="$bops" -v c="$bcpu" 'BEGIN { printf "%d", (c > 0 ? o / c : 0) }')
		echo "$r $job bench $biops $bipc" >>"$work/results"
		echo "round $r $job: vhost $iops IOPS ($ipc/core), bench $biops IOPS ($bipc/core)" >&2
	done
done

/usr/bin/python3 -I - "$work/results" $jobs <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("| job | vhost IOPS | bench IOPS | vhost IOPS/core | bench IOPS/core | ratio per core | ratio per round |")
print("|---|---:|---:|---:|---:|---:|---|")
for job in sys.argv[2:]:
    v = {int(r[0]): (int(r[3]), int(r[4])) for r in rows if r[1] == job and r[2] == "vhost"}
    b = {int(r[0]): (int(r[3]), int(r[4])) for r in rows if r[1] == job and r[2] == "bench"}
    ratios = [v[k][1] / b[k][1] for k in sorted(v) if k in b and b[k][1]]
    med = lambda xs: statistics.median(xs) if xs else 0
    print("| %s | %s | %s | %s | %s | **%.2fx** | %s |" % (
        job, f"{med([x[0] for x in v.values()]):,.0f}", f"{med([x[0] for x in b.values()]):,.0f}",
        f"{med([x[1] for x in v.values()]):,.0f}", f"{med([x[1] for x in b.values()]):,.0f}",
        med(ratios), "/".join("%.2f" % x for x in ratios)))
PY
