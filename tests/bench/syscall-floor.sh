#!/bin/sh
# SPDX-License-Identifier: MIT
# syscall-floor.sh: the kernel's floor for the per-request work of a socket
# server on this machine (tests/bench/syscall-floor.c: a no-op syscall, an
# io_uring NOP round trip, pipe and Unix-socket ping-pongs between two
# processes), ROUNDS rounds, medians, with the load average: the figures
# docs/bench-nbd.md compares the NBD server's kernel time per request with.
#   tests/bench/syscall-floor.sh [BUILD_DIR]     ROUNDS=5 ITERATIONS=200000
set -eu
build=${1:-$(dirname "$0")/../../build}
rounds=${ROUNDS:-5}
iters=${ITERATIONS:-200000}
make -C "$build" tests/bench/syscall-floor >/dev/null
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
while [ "$i" -lt "$rounds" ]; do
	"$build/tests/bench/syscall-floor" "$iters" >> "$out"
	i=$((i + 1))
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %10s   %s\n' operation "median ns" "rounds"
for op in getppid uring-nop pipe-pingpong unix-pingpong; do
	vals=$(awk -v op="$op" '$1 == op { print $2 }' "$out" | sort -n)
	[ -n "$vals" ] || continue
	n=$(echo "$vals" | wc -l)
	med=$(echo "$vals" | sed -n "$(( (n + 1) / 2 ))p")
	printf '%-14s %10s   %s\n' "$op" "$med" "$(echo "$vals" | tr '\n' ' ')"
done
