#!/bin/bash
# SPDX-License-Identifier: MIT
# bench-nbd.sh: fio's nbd engine over a Unix socket against diskstack serve
# and its peers, side by side in one invocation (`make bench`).
#
# Servers (all 1 GiB, all filled once with a sequential write first):
#   ds-mem        diskstack serve mem:1G
#   nbdkit        nbdkit memory 1G (default threads)
#   nbdkit-t1     nbdkit --threads 1 memory 1G
#   qemu-nbd      qemu-nbd -t -e 4 -f raw --cache=writeback --aio=threads on a
#                 raw file in /dev/shm
#   ds-file       diskstack serve file: on that same raw file
#   floor-null    tests/bench/nbd-floor in "null" mode: the smallest NBD
#                 server (blocking sockets, one thread per connection, one
#                 recv and one sendmsg per pass), keeping no data
#   floor-mem     the same over a flat 1 GiB array (one copy per request):
#                 the floor any server's CPU per request is measured against
#   (the floor-* servers are not in the default SERVERS; they are built in
#   DISKSTACK's build directory on first use)
# Jobs: 4k randread and randwrite at QD32 with numjobs 1 and 2, 1M
# sequential read and write at QD8. For each job the servers alternate,
# REPS times. Printed: median IOPS per server, IOPS ratios (ds-mem / the
# better nbdkit, ds-file / qemu-nbd, ds-mem / qemu-nbd) and server CPU
# microseconds per I/O from /proc/PID/stat (utime + stime of all threads),
# and that CPU split into user and kernel time.
#
# Environment: RUNTIME (s per run, default 5), REPS (default 3), SERVERS,
# JOBS (subsets, names as above/below), R (results dir), DISKSTACK.
# The machine's other load skews every number: compare within one run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-functions.sh"
DISKSTACK=${DISKSTACK:-$here/../../build/diskstack}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
SERVERS=${SERVERS:-"ds-mem nbdkit nbdkit-t1 qemu-nbd ds-file"}
JOBS=${JOBS:-"randread-4k-qd32-j1 randread-4k-qd32-j2 randwrite-4k-qd32-j1 randwrite-4k-qd32-j2 seqread-1m-qd8-j1 seqwrite-1m-qd8-j1"}
R=${R:-$PWD/bench-results/nbd-$(date +%Y%m%d-%H%M%S)}
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-nbd.XXXXXX")
SHM=$(mktemp -d /dev/shm/bench-nbd.XXXXXX)
HZ=$(getconf CLK_TCK)
PY=${PY:-/usr/bin/python3}

for t in fio nbdkit qemu-nbd "$PY"; do
	command -v "$t" >/dev/null || { echo "bench-nbd: '$t' not found" >&2; exit 77; }
done
[ -x "$DISKSTACK" ] || { echo "bench-nbd: $DISKSTACK not built" >&2; exit 77; }
mkdir -p "$R"
FLOOR=$(dirname "$DISKSTACK")/tests/bench/nbd-floor
case " $SERVERS " in
*" floor-"*)
	make -C "$(dirname "$DISKSTACK")" tests/bench/nbd-floor >/dev/null ||
		{ echo "bench-nbd: cannot build $FLOOR" >&2; exit 1; } ;;
esac

declare -A PID
cleanup() {
	bench_stop_servers
	rm -rf "$W" "$SHM"
}
trap cleanup EXIT

wait_sock() { # sock pidfile
	for _ in $(seq 200); do
		[ -S "$1" ] && [ -s "$2" ] && return 0
		sleep 0.05
	done
	echo "bench-nbd: server for $1 did not start" >&2
	exit 1
}

truncate -s 1G "$SHM/disk.raw"
start_server() {
	local s=$1 sock=$W/$1.sock pidf=$W/$1.pid
	case $s in
	ds-mem)    "$DISKSTACK" serve -U "$sock" -P "$pidf" mem:1G 2>"$W/$s.log" & ;;
	ds-file)   "$DISKSTACK" serve -U "$sock" -P "$pidf" "file:$SHM/disk.raw" 2>"$W/$s.log" & ;;
	nbdkit)    nbdkit -U "$sock" -P "$pidf" memory 1G ;;
	nbdkit-t1) nbdkit -U "$sock" -P "$pidf" --threads 1 memory 1G ;;
	floor-null|floor-mem)
		"$FLOOR" "$sock" "$pidf" $((1 << 30)) "${s#floor-}" 2>"$W/$s.log" & ;;
	qemu-nbd)  qemu-nbd --fork --pid-file="$pidf" -k "$sock" -t -e 4 -f raw \
			--cache=writeback --aio=threads "$SHM/disk.raw" ;;
	*) echo "bench-nbd: unknown server $s" >&2; exit 2 ;;
	esac
	wait_sock "$sock" "$pidf"
	PID[$s]=$(cat "$pidf")
}

jobargs() {
	case $1 in
	randread-4k-qd32-j1)  echo "--rw=randread --bs=4k --iodepth=32 --numjobs=1" ;;
	randread-4k-qd32-j2)  echo "--rw=randread --bs=4k --iodepth=32 --numjobs=2" ;;
	randwrite-4k-qd32-j1) echo "--rw=randwrite --bs=4k --iodepth=32 --numjobs=1" ;;
	randwrite-4k-qd32-j2) echo "--rw=randwrite --bs=4k --iodepth=32 --numjobs=2" ;;
	seqread-1m-qd8-j1)    echo "--rw=read --bs=1M --iodepth=8 --numjobs=1" ;;
	seqwrite-1m-qd8-j1)   echo "--rw=write --bs=1M --iodepth=8 --numjobs=1" ;;
	*) echo "bench-nbd: unknown job $1" >&2; exit 2 ;;
	esac
}

# utime and stime (clock ticks, all threads) of PID $1, as "user sys".
cputicks() { awk '{print $14, $15}' "/proc/$1/stat"; }

{
	echo "# bench-nbd $(date -Is)"
	echo "host: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "diskstack: $("$DISKSTACK" --version)  nbdkit: $(nbdkit --version | head -1)"
	echo "qemu-nbd: $(qemu-nbd --version | head -1)  fio: $(fio --version)"
	echo "runtime ${RUNTIME}s x ${REPS} reps; servers: $SERVERS"
} | tee "$R/env.txt"

for s in $SERVERS; do
	start_server "$s"
	# Fill once so reads hit allocated data (qemu-nbd and ds-file share
	# the file: the second fill is harmless).
	bench_fill bench-nbd "$s" "$W/$s.sock" 1G
done

for j in $JOBS; do
	for rep in $(seq "$REPS"); do
		for s in $SERVERS; do
			pid=${PID[$s]}
			out=$R/$j.$s.$rep.json
			c0=$(cputicks "$pid")
			t0=$(date +%s.%N)
			# shellcheck disable=SC2046
			fio --name="$j" --ioengine=nbd --uri="nbd+unix:///?socket=$W/$s.sock" \
				$(jobargs "$j") --size=1G --time_based --runtime="$RUNTIME" \
				--group_reporting --output-format=json --output="$out" ||
				echo "bench-nbd: fio $j on $s failed" >&2
			c1=$(cputicks "$pid")
			t1=$(date +%s.%N)
			# shellcheck disable=SC2086
			awk -v hz="$HZ" -v t0="$t0" -v t1="$t1" 'BEGIN {
				u = (ARGV[3] - ARGV[1]) / hz; k = (ARGV[4] - ARGV[2]) / hz
				printf "{\"cpu_s\": %g, \"user_s\": %g, \"sys_s\": %g, \"wall_s\": %g}\n",
					u + k, u, k, t1 - t0
			}' $c0 $c1 > "$R/$j.$s.$rep.cpu.json"
			printf 'bench-nbd: %-22s rep %d %-10s done\n' "$j" "$rep" "$s" >&2
		done
	done
done

"$PY" -I "$here/bench-nbd-summary.py" "$R" "$REPS" "$SERVERS" "$JOBS" | tee "$R/summary.md"
echo "bench-nbd: results in $R" >&2
