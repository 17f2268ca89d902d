#!/bin/bash
# SPDX-License-Identifier: MIT
# ab-nbd.sh RW ROUNDS ENV_A ENV_B [BIN_A [BIN_B]]: two `diskstack serve`
# processes (A and B: the same or two binaries, each started under its own
# environment, e.g. X=1 and GLIBC_TUNABLES=glibc.malloc.hugetlb=1) serving
# $SPEC (default mem:1G) on Unix sockets; fio's nbd engine runs 4k RW
# (randread or randwrite) at QD32, one job, $RT seconds (default 5), on A
# then B, ROUNDS times. Prints per run: IOPS, server CPU us per I/O
# (utime + stime, /proc/PID/stat) and server context switches per I/O.
# For A/B checks of one change; bench-nbd.sh compares with other servers.
# $SIZE (default 1G) is fio's range; each export is filled once first.
# $BS (default 4k) and $QD (default 32): another block size or depth, and
# RW may then be any fio --rw (read, write, ...).
set -uo pipefail

[ $# -ge 4 ] || { echo "usage: $0 randread|randwrite ROUNDS ENV_A ENV_B [BIN_A [BIN_B]]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-functions.sh"
rw=$1 rounds=$2 env_a=$3 env_b=$4
bin_a=${5:-${DISKSTACK:-$here/../../build/diskstack}}
bin_b=${6:-$bin_a}
SPEC=${SPEC:-mem:1G} SIZE=${SIZE:-1G} RT=${RT:-5} PERF=${PERF:-1}
PY=${PY:-/usr/bin/python3}
HZ=$(getconf CLK_TCK)
W=$(mktemp -d "${TMPDIR:-/tmp}/ab-nbd.XXXXXX")
declare -A PID
cleanup() {
	for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

start() { # name env binary
	# shellcheck disable=SC2086
	env $2 "$3" serve -U "$W/$1.sock" -P "$W/$1.pid" "$SPEC" 2>"$W/$1.log" &
	for _ in $(seq 200); do
		[ -S "$W/$1.sock" ] && [ -s "$W/$1.pid" ] && break
		sleep 0.05
	done
	[ -s "$W/$1.pid" ] || { echo "ab-nbd: server $1 did not start" >&2; cat "$W/$1.log" >&2; exit 1; }
	PID[$1]=$(cat "$W/$1.pid")
	bench_fill ab-nbd "$1" "$W/$1.sock" "$SIZE"
}
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
ctxsw() { cat "/proc/$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }'; }

start A "$env_a" "$bin_a"
start B "$env_b" "$bin_b"
echo "# ab-nbd $rw, $SPEC, fio range $SIZE, ${RT}s x $rounds; A: $env_a $bin_a; B: $env_b $bin_b"
for _ in $(seq "$rounds"); do
	for s in A B; do
		pid=${PID[$s]}
		c0=$(ticks "$pid") x0=$(ctxsw "$pid")
		rm -f "$W/perf.txt"
		if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
			perf stat -x, -o "$W/perf.txt" -p "$pid" \
				-e raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter 2>/dev/null &
			perf_pid=$!
		else
			perf_pid=
		fi
		fio --name=ab --ioengine=nbd --uri="nbd+unix:///?socket=$W/$s.sock" --rw="$rw" \
			--bs="${BS:-4k}" --iodepth="${QD:-32}" --size="$SIZE" --time_based --runtime="$RT" \
			--output-format=json --output="$W/out.json" >/dev/null ||
			{ echo "ab-nbd: fio on $s failed" >&2; exit 1; }
		c1=$(ticks "$pid") x1=$(ctxsw "$pid")
		if [ -n "$perf_pid" ]; then
			kill -INT "$perf_pid" 2>/dev/null
			wait "$perf_pid" 2>/dev/null
		fi
		# shellcheck disable=SC2086
		"$PY" -I - "$W/out.json" "$W/perf.txt" "$s" $c0 $c1 "$x0" "$x1" "$HZ" <<'PYEOF'
import json, sys
f, pf, s = sys.argv[1:4]
u0, k0, u1, k1, x0, x1, hz = map(int, sys.argv[4:])
j = json.load(open(f))["jobs"][0]
n = j["read"]["total_ios"] + j["write"]["total_ios"]
iops = j["read"]["iops"] + j["write"]["iops"]
sc = {}
try:
    for line in open(pf):
        p = line.strip().split(",")
        if len(p) > 2 and p[0].isdigit():
            sc[p[2]] = int(p[0])
except OSError:
    pass
extra = ""
if sc:
    # perf counted over the whole fio run (start-up included): per I/O
    # it is a slight overestimate.
    extra = " syscalls_per_io=%.3f enter_per_io=%.3f" % (
        sc.get("raw_syscalls:sys_enter", 0) / n,
        sc.get("syscalls:sys_enter_io_uring_enter", 0) / n)
print("%s iops=%.0f cpu_us_per_io=%.2f (%.2f user + %.2f kernel) ctxsw_per_io=%.3f%s"
      % (s, iops, (u1 + k1 - u0 - k0) / hz * 1e6 / n, (u1 - u0) / hz * 1e6 / n,
         (k1 - k0) / hz * 1e6 / n, (x1 - x0) / n, extra))
PYEOF
	done
done
