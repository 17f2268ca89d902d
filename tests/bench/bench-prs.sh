#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-prs.sh: the cost of prwrap and striped, measured with the in-process
# `diskstack bench` on one thread (a benchmark, not a pass/fail test).
#
#   prwrap:mem:<size>               vs  mem:<size>       (goal: within 5%)
#   striped:128K:mem:<size/4> x 4   vs  mem:<size>       (goal: within 10%)
#
# Each pair runs interleaved, RUNS times, per workload; the script prints
# the median IOPS of each and the ratio decorated / bare.
#
# Environment: DISKSTACK (the binary; default ./diskstack, then
# build/diskstack), RUNS (default 5), TIME (per run, default 2s), SIZE
# (default 256M, a multiple of 4 MiB), WORKLOADS (default below).
set -eu

DISKSTACK=${DISKSTACK:-}
if [ -z "$DISKSTACK" ]; then
	for c in ./diskstack ./build/diskstack "$(dirname "$0")/../../build/diskstack"; do
		if [ -x "$c" ]; then
			DISKSTACK=$c
			break
		fi
	done
fi
[ -n "$DISKSTACK" ] && [ -x "$DISKSTACK" ] || { echo "bench-prs.sh: set DISKSTACK" >&2; exit 2; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

RUNS=${RUNS:-5}
TIME=${TIME:-2s}
SIZE=${SIZE:-256M}
# rw:bs[:prefill]
WORKLOADS=${WORKLOADS:-"randread:4K randread:4K:prefill randwrite:4K read:64K:prefill write:64K"}

quarter=$($PY -c '
import sys
s = sys.argv[1]
mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
n = int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)
print("%dK" % (n // 4 // 1024))' "$SIZE")
bare="mem:$SIZE"
prwrap="prwrap:mem:$SIZE"
striped="striped:128K:mem:$quarter+mem:$quarter+mem:$quarter+mem:$quarter"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# iops SPEC RW BS PREFILL: one run, prints its IOPS.
iops()
{
	extra=""
	[ "$4" = prefill ] && extra="--prefill"
	"$DISKSTACK" bench "$1" --rw "$2" --bs "$3" --threads 1 --iodepth 32 --time "$TIME" \
		--quiet --json $extra >"$tmp/out" 2>"$tmp/err" || {
		cat "$tmp/err" >&2
		exit 1
	}
	$PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["iops"])' "$tmp/out"
}

median()
{
	$PY -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"
}

echo "diskstack bench, 1 thread, iodepth 32, $RUNS runs of $TIME each; medians"
printf '%-22s %-10s %14s %14s %8s\n' workload pair "bare IOPS" "decor IOPS" ratio
for w in $WORKLOADS; do
	rw=$(echo "$w" | cut -d: -f1)
	bs=$(echo "$w" | cut -d: -f2)
	pf=$(echo "$w" | cut -d: -f3)
	for pair in prwrap striped; do
		eval "spec=\$$pair"
		b=""
		d=""
		i=0
		while [ $i -lt "$RUNS" ]; do
			b="$b $(iops "$bare" "$rw" "$bs" "$pf")"
			d="$d $(iops "$spec" "$rw" "$bs" "$pf")"
			i=$((i + 1))
		done
		# shellcheck disable=SC2086
		mb=$(median $b)
		# shellcheck disable=SC2086
		md=$(median $d)
		ratio=$($PY -c 'import sys; print("%.3f" % (float(sys.argv[2]) / float(sys.argv[1])))' "$mb" "$md")
		printf '%-22s %-10s %14.0f %14.0f %8s\n' "$rw ${bs}${pf:+ $pf}" "$pair" "$mb" "$md" "$ratio"
	done
done
echo "goals: prwrap ratio >= 0.95, striped ratio >= 0.90"
