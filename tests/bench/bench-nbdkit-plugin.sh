#!/bin/bash
# SPDX-License-Identifier: MIT
# bench-nbdkit-plugin.sh: what serving a diskstack spec through nbdkit costs
# (docs/bench-nbdkit-plugin.md). fio's nbd engine over a Unix socket, the
# servers taking turns, REPS rounds:
#   plugin   nbdkit diskstack mem:1G   (the plugin from the build dir)
#   memory   nbdkit memory 1G          (nbdkit's own RAM plugin: the target)
#   serve    diskstack serve mem:1G    (the native path, for reference)
# Jobs: 4 KiB randread and randwrite at QD32, one connection. Printed per
# job and server: median IOPS and median server CPU microseconds per I/O
# (utime + stime of every thread, /proc/PID/stat), and the plugin's ratio
# to nbdkit's memory plugin.
#
# Environment: RUNTIME (s per run, default 5), REPS (default 3, at least
# 3 for a median worth reading), SERVERS, JOBS, R (results dir),
# DISKSTACK, PLUGIN (the .so). The machine's other load skews every
# number: compare within one run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-functions.sh"
DISKSTACK=${DISKSTACK:-$here/../../build/diskstack}
PLUGIN=${PLUGIN:-$(dirname "$DISKSTACK")/nbdkit-diskstack-plugin.so}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
SERVERS=${SERVERS:-"plugin memory serve"}
JOBS=${JOBS:-"randread-4k-qd32 randwrite-4k-qd32"}
R=${R:-$PWD/bench-results/nbdkit-plugin-$(date +%Y%m%d-%H%M%S)}
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-nbdkit-plugin.XXXXXX")
HZ=$(getconf CLK_TCK)
PY=${PY:-/usr/bin/python3}

for t in fio nbdkit "$PY"; do
	command -v "$t" >/dev/null || { echo "bench-nbdkit-plugin: '$t' not found" >&2; exit 77; }
done
[ -x "$DISKSTACK" ] || { echo "bench-nbdkit-plugin: $DISKSTACK not built" >&2; exit 77; }
[ -f "$PLUGIN" ] || { echo "bench-nbdkit-plugin: $PLUGIN not built" >&2; exit 77; }
PLUGIN=$(cd "$(dirname "$PLUGIN")" && pwd)/$(basename "$PLUGIN")
mkdir -p "$R"

declare -A PID
cleanup() {
	bench_stop_servers
	rm -rf "$W"
}
trap cleanup EXIT

start_server() {
	local s=$1 sock=$W/$1.sock pidf=$W/$1.pid
	case $s in
	plugin) nbdkit -U "$sock" -P "$pidf" "$PLUGIN" mem:1G ;;
	memory) nbdkit -U "$sock" -P "$pidf" memory 1G ;;
	serve)  "$DISKSTACK" serve -U "$sock" -P "$pidf" mem:1G 2>"$W/$s.log" & ;;
	*) echo "bench-nbdkit-plugin: unknown server $s" >&2; exit 2 ;;
	esac
	for _ in $(seq 200); do
		[ -S "$sock" ] && [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null && break
		sleep 0.05
	done
	[ -S "$sock" ] || { echo "bench-nbdkit-plugin: $s did not start" >&2; exit 1; }
	PID[$s]=$(cat "$pidf")
}

jobargs() {
	case $1 in
	randread-4k-qd32)  echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite-4k-qd32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	randread-4k-qd1)   echo "--rw=randread --bs=4k --iodepth=1" ;;
	*) echo "bench-nbdkit-plugin: unknown job $1" >&2; exit 2 ;;
	esac
}

cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

{
	echo "# bench-nbdkit-plugin $(date -Is)"
	echo "host: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "diskstack: $("$DISKSTACK" --version)  nbdkit: $(nbdkit --version | head -1)  fio: $(fio --version)"
	echo "runtime ${RUNTIME}s x ${REPS} rounds; servers: $SERVERS"
} | tee "$R/env.txt"

for s in $SERVERS; do
	start_server "$s"
	# Filled once, so reads hit allocated memory in every server.
	bench_fill bench-nbdkit-plugin "$s" "$W/$s.sock" 1G
done

for rep in $(seq "$REPS"); do
	for j in $JOBS; do
		for s in $SERVERS; do
			pid=${PID[$s]}
			c0=$(cputicks "$pid")
			# shellcheck disable=SC2046
			fio --name="$j" --ioengine=nbd --uri="nbd+unix:///?socket=$W/$s.sock" \
				$(jobargs "$j") --size=1G --time_based --runtime="$RUNTIME" \
				--group_reporting --output-format=json --output="$R/$j.$s.$rep.json" ||
				echo "bench-nbdkit-plugin: fio $j on $s failed" >&2
			c1=$(cputicks "$pid")
			echo "$(( c1 - c0 ))" > "$R/$j.$s.$rep.ticks"
			printf 'bench-nbdkit-plugin: round %d %-18s %-7s done\n' "$rep" "$j" "$s" >&2
		done
	done
done

"$PY" -I - "$R" "$REPS" "$SERVERS" "$JOBS" "$HZ" <<'EOF' | tee "$R/summary.md"
import json, statistics, sys
r, reps, servers, jobs, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])

def run(j, s, rep):
    with open(f"{r}/{j}.{s}.{rep}.json") as f:
        job = json.load(f)["jobs"][0]
    ios = job["read"]["total_ios"] + job["write"]["total_ios"]
    iops = job["read"]["iops"] + job["write"]["iops"]
    with open(f"{r}/{j}.{s}.{rep}.ticks") as f:
        cpu_us = int(f.read()) / hz * 1e6
    return iops, cpu_us / ios if ios else float("nan")

print("| job | " + " | ".join(f"{s} IOPS | {s} CPU us/IO" for s in servers) +
      (" | plugin/memory IOPS | plugin/memory CPU |" if "plugin" in servers and "memory" in servers else " |"))
print("|---|" + "---:|---:|" * len(servers) +
      ("---:|---:|" if "plugin" in servers and "memory" in servers else ""))
for j in jobs:
    med = {}
    for s in servers:
        runs = [run(j, s, rep) for rep in range(1, reps + 1)]
        med[s] = (statistics.median(x[0] for x in runs), statistics.median(x[1] for x in runs))
    row = f"| {j} | " + " | ".join(f"{med[s][0] / 1000:.1f}k | {med[s][1]:.1f}" for s in servers)
    if "plugin" in med and "memory" in med:
        row += f" | {med['plugin'][0] / med['memory'][0]:.2f} | {med['plugin'][1] / med['memory'][1]:.2f}"
    print(row + " |")
EOF
echo "bench-nbdkit-plugin: results in $R" >&2
