#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-iscsi.sh: diskstack's iSCSI target against Debian's tgt, and against
# diskstack's own NBD server, on one tmpfs-backed disk (docs/bench-iscsi.md).
# Not pass/fail: it prints medians and ratios.
#
#   tests/bench/bench-iscsi.sh          (environment knobs below)
#
# One file of $SIZE (default 1G) in /dev/shm, filled with zeroes first so
# every page exists, is served at the same time by
#   ours  diskstack serve --iscsi, LUN 0 = file:<it>
#   tgt   tgtd, LUN 1 = the file (rdwr backing store)
#   nbd   diskstack serve (NBD), the same file
# and measured by one client at a time, $ROUNDS rounds (default 3), the
# order of the servers rotating each round, $RUNTIME seconds per job
# (default 10): 4 KiB random read and write at QD32, 1 MiB sequential read
# and write at QD8. All load comes from one client, iscsi-bench.c (built
# here: Debian's fio has no iSCSI engine): libiscsi for the two targets,
# libnbd's async API for the NBD server, the same loop, offsets and depth. Server CPU per I/O is the change of
# utime+stime in /proc/PID/stat over the job divided by the I/Os done.
# Raw lines go to $R/raw.txt (default a new directory under $TMPDIR),
# the summary (bench-iscsi-summary.py) to stdout and $R/summary.md.
# SERVERS="ours tgt nbd" and JOBS=... pick a subset. DISKSTACK is the
# binary (default build/diskstack); BASE=<another diskstack binary> adds
# the server "base", its iSCSI target, for a before/after in one run.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tgt-functions.sh"
DISKSTACK=${DISKSTACK:-$top/build/diskstack}
SIZE=${SIZE:-1G}
ROUNDS=${ROUNDS:-3}
RUNTIME=${RUNTIME:-10}
BASE=${BASE:-}
SERVERS=${SERVERS:-ours tgt nbd${BASE:+ base}}
JOBS=${JOBS:-randread-4k-qd32 randwrite-4k-qd32 seqread-1m-qd8 seqwrite-1m-qd8}
R=${R:-$(mktemp -d "${TMPDIR:-/tmp}/bench-iscsi.XXXXXX")}
mkdir -p "$R"

say() { echo "bench-iscsi: $*" >&2; }
for t in cc tgtd tgtadm; do
	command -v "$t" >/dev/null || { say "$t not found (tools/quickstart.sh deps)"; exit 77; }
done
[ -f /usr/include/iscsi/iscsi.h ] || { say "libiscsi-dev is not installed"; exit 77; }
[ -f /usr/include/libnbd.h ] || { say "libnbd-dev is not installed"; exit 77; }
case " $SERVERS " in
*" ours "*|*" nbd "*) [ -x "$DISKSTACK" ] || { say "$DISKSTACK is not built"; exit 77; } ;;
esac
case " $SERVERS " in
*" ours "*)
	# No `| grep -q`: under pipefail, grep closing the pipe early makes
	# serve die of SIGPIPE once its help outgrows a pipe buffer.
	case $("$DISKSTACK" serve --help 2>&1) in
	*--iscsi*) ;;
	*) say "$DISKSTACK has no iSCSI target; leaving 'ours' out"; SERVERS=${SERVERS//ours/} ;;
	esac ;;
esac

cc -O2 -Wall -o "$R/iscsi-bench" "$here/iscsi-bench.c" -liscsi -lnbd || { say "cannot build iscsi-bench"; exit 1; }

free_port() { /usr/bin/python3 -I -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

shm=$(mktemp -d /dev/shm/bench-iscsi.XXXXXX)
ours_pid= nbd_pid= base_pid=
cleanup()
{
	local p
	tgt_stop
	for p in $ours_pid $nbd_pid $base_pid; do
		kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$shm"
}
trap cleanup EXIT

disk=$shm/disk.img
say "filling $SIZE in $disk"
fallocate -l "$SIZE" "$disk" && dd if=/dev/zero of="$disk" bs=1M count=$(( $(stat -c %s "$disk") >> 20 )) \
	conv=notrunc status=none || exit 1

# start_diskstack NAME ARGS...: serve in the background until its pid file
# says it is ready; sets NAME_pid. BIN overrides the binary.
start_diskstack()
{
	local name=$1 i
	shift
	"${BIN:-$DISKSTACK}" serve -P "$R/$name.ready" "$@" >"$R/$name.log" 2>&1 &
	eval "${name}_pid=$!"
	for i in $(seq 200); do
		[ -s "$R/$name.ready" ] && return 0
		sleep 0.1
	done
	cat "$R/$name.log" >&2
	say "$name did not start"
	exit 1
}

iqn=iqn.2024-01.org.diskstack:bench
for s in $SERVERS; do
	case $s in
	ours)
		ours_port=$(free_port)
		start_diskstack ours --iscsi "127.0.0.1:$ours_port" --target "$iqn" --lun "0=file:$disk" ;;
	tgt)
		tgt_port=$(free_port)
		tgt_start "$R" "$tgt_port" && tgt_lun 1 "$iqn-tgt" 1 "$disk" || exit 1 ;;
	base)
		base_port=$(free_port)
		BIN=$BASE start_diskstack base --iscsi "127.0.0.1:$base_port" --target "$iqn" \
			--lun "0=file:$disk" ;;
	nbd)
		nbd_port=$(free_port)
		start_diskstack nbd -i 127.0.0.1 -p "$nbd_port" "file:$disk" ;;
	*) say "unknown server $s"; exit 2 ;;
	esac
done

server_pid()
{
	case $1 in
	ours) echo "$ours_pid" ;;
	tgt) tgt_pid ;;
	nbd) echo "$nbd_pid" ;;
	base) echo "$base_pid" ;;
	esac
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_job SERVER JOB: prints "ios seconds" of one run.
run_job()
{
	local s=$1 job=$2 rw bs qd iscsi_args=()
	IFS=- read -r rw bs qd <<< "$job"
	qd=${qd#qd}
	case $bs in 4k) bs=4096 ;; 1m) bs=1048576 ;; *) say "bad job $job"; exit 2 ;; esac
	case $rw in
	randread) iscsi_args=(-r) ;;
	randwrite) iscsi_args=(-r -w) ;;
	seqread) iscsi_args=() ;;
	seqwrite) iscsi_args=(-w) ;;
	*) say "bad job $job"; exit 2 ;;
	esac
	local url
	case $s in
	ours) url=iscsi://127.0.0.1:$ours_port/$iqn/0 ;;
	base) url=iscsi://127.0.0.1:$base_port/$iqn/0 ;;
	tgt) url=iscsi://127.0.0.1:$tgt_port/$iqn-tgt/1 ;;
	nbd) url=nbd://127.0.0.1:$nbd_port/ ;;
	esac
	"$R/iscsi-bench" "${iscsi_args[@]}" -b "$bs" -q "$qd" -t "$RUNTIME" "$url" 2>>"$R/client.err" |
		awk '{ print $2, $4 }'
}

echo "# round job server ios seconds iops cpu_s cpu_us_per_io load1" > "$R/raw.txt"
say "servers: $SERVERS; jobs: $JOBS; $ROUNDS rounds of $RUNTIME s; results in $R"
order=($SERVERS)
for round in $(seq "$ROUNDS"); do
	for job in $JOBS; do
		for s in "${order[@]}"; do
			pid=$(server_pid "$s")
			c0=$(cpu_ticks "$pid")
			read -r ios secs < <(run_job "$s" "$job")
			c1=$(cpu_ticks "$pid")
			load=$(cut -d' ' -f1 /proc/loadavg)
			awk -v r="$round" -v j="$job" -v s="$s" -v n="${ios:-0}" -v t="${secs:-0}" \
				-v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v l="$load" 'BEGIN {
				iops = t > 0 ? n / t : 0; cs = c / hz
				per = n > 0 ? cs * 1e6 / n : 0
				printf "%d %s %s %d %.3f %.0f %.2f %.1f %s\n", r, j, s, n, t, iops, cs, per, l }' | tee -a "$R/raw.txt" >&2
		done
	done
	# Rotate: each server takes each position once every len(order) rounds.
	order=("${order[@]:1}" "${order[0]}")
done
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, SIZE=$SIZE RUNTIME=$RUNTIME ROUNDS=$ROUNDS" >> "$R/raw.txt"
/usr/bin/python3 -I "$here/bench-iscsi-summary.py" "$R/raw.txt" | tee "$R/summary.md"
