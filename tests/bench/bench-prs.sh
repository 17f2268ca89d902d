#!/bin/sh
# SPDX-License-Identifier: MIT
# bench-prs.sh: the cost of prwrap and striped, measured with the in-process
# `diskstack bench` on one thread (a benchmark, not a pass/fail test).
#
#   prwrap:mem:<size>               vs  mem:<size>       (goal: within 5%)
#   striped:128K:mem:<size/4> x 4   vs  mem:<size>       (goal: within 10%)
#
# Time mode (default): each pair runs interleaved (bare, decorated, bare,
# ...) RUNS times per workload. Printed: the median IOPS of each, the ratio
# of the medians, and the median of the per-run ratios (each decorated run
# divided by the bare run just before it, which cancels slow drifts of a
# shared machine's load).
#
# Instruction mode (IR=1): counts the instructions per request under
# valgrind's callgrind (two runs of different lengths, so start-up cancels
# out). Deterministic, so it is meaningful on a busy machine; it counts
# work, not cycles (a division or a cache miss counts as one).
#
# Environment: DISKSTACK (the binary; default ./diskstack, then
# build/diskstack), RUNS (default 5), TIME (per run, default 2s), SIZE
# (default 256M, a multiple of 4 MiB), WORKLOADS (rw:bs[:prefill] ...),
# IR (1 = instruction mode), IR_OPS (requests per counted run, default
# 200000).
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
IR=${IR:-0}
IR_OPS=${IR_OPS:-200000}
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

# iops SPEC RW BS PREFILL: one timed run, prints its IOPS.
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

# ir SPEC RW BS PREFILL OPS: instructions of one run under callgrind.
ir()
{
	extra=""
	[ "$4" = prefill ] && extra="--prefill"
	valgrind --tool=callgrind --callgrind-out-file=/dev/null "$DISKSTACK" bench "$1" \
		--rw "$2" --bs "$3" --threads 1 --iodepth 32 --ops "$5" --quiet $extra \
		>/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
	sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err"
}

# ir_per_op SPEC RW BS PREFILL: instructions per request.
ir_per_op()
{
	a=$(ir "$1" "$2" "$3" "$4" "$((IR_OPS / 4))")
	b=$(ir "$1" "$2" "$3" "$4" "$((IR_OPS / 4 + IR_OPS))")
	echo $(((b - a) / IR_OPS))
}

median()
{
	$PY -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"
}

if [ "$IR" = 1 ]; then
	command -v valgrind >/dev/null || { echo "bench-prs.sh: IR=1 needs valgrind" >&2; exit 2; }
	echo "instructions per request (callgrind), 1 thread, iodepth 32"
	printf '%-22s %10s %10s %10s %12s %12s\n' workload bare prwrap striped "prwrap/bare" "striped/bare"
	for w in $WORKLOADS; do
		rw=$(echo "$w" | cut -d: -f1)
		bs=$(echo "$w" | cut -d: -f2)
		pf=$(echo "$w" | cut -d: -f3)
		b=$(ir_per_op "$bare" "$rw" "$bs" "$pf")
		p=$(ir_per_op "$prwrap" "$rw" "$bs" "$pf")
		s=$(ir_per_op "$striped" "$rw" "$bs" "$pf")
		printf '%-22s %10d %10d %10d %12s %12s\n' "$rw ${bs}${pf:+ $pf}" "$b" "$p" "$s" \
			"$($PY -c 'import sys; print("%.3f" % (int(sys.argv[2]) / int(sys.argv[1])))' "$b" "$p")" \
			"$($PY -c 'import sys; print("%.3f" % (int(sys.argv[2]) / int(sys.argv[1])))' "$b" "$s")"
	done
	exit 0
fi

echo "diskstack bench, 1 thread, iodepth 32, $RUNS interleaved runs of $TIME each"
printf '%-22s %-8s %12s %12s %9s %12s\n' workload pair "bare IOPS" "decor IOPS" "med/med" "paired med"
for w in $WORKLOADS; do
	rw=$(echo "$w" | cut -d: -f1)
	bs=$(echo "$w" | cut -d: -f2)
	pf=$(echo "$w" | cut -d: -f3)
	for pair in prwrap striped; do
		eval "spec=\$$pair"
		b=""
		d=""
		r=""
		i=0
		while [ $i -lt "$RUNS" ]; do
			x=$(iops "$bare" "$rw" "$bs" "$pf")
			y=$(iops "$spec" "$rw" "$bs" "$pf")
			b="$b $x"
			d="$d $y"
			r="$r $($PY -c 'import sys; print(float(sys.argv[2]) / float(sys.argv[1]))' "$x" "$y")"
			i=$((i + 1))
		done
		# shellcheck disable=SC2086
		mb=$(median $b)
		# shellcheck disable=SC2086
		md=$(median $d)
		# shellcheck disable=SC2086
		mr=$(median $r)
		printf '%-22s %-8s %12.0f %12.0f %9.3f %12.3f\n' "$rw ${bs}${pf:+ $pf}" "$pair" "$mb" "$md" \
			"$($PY -c 'import sys; print(float(sys.argv[2]) / float(sys.argv[1]))' "$mb" "$md")" "$mr"
	done
done
echo "goals: prwrap ratio >= 0.95, striped ratio >= 0.90"
