#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench-nvme-tcp.sh [KERNEL]: the Linux NVMe/TCP host in a TCG guest
# against four targets, taking turns per job, ROUNDS times
# (tests/vm/guest-nvme-bench.sh). Not pass/fail; results go into
# docs/bench-nvme.md by hand.
#
# Paths (each to a file on tmpfs of BENCH_SIZE_MB MiB, filled with random
# bytes):
#   nvme-tcp  `diskstack serve --nvme-tcp` on the host, reached as
#             10.0.2.2 through QEMU user networking (slirp)
#   nbd       the same diskstack process's NBD server on the same file
#             (the kernel's nbd client), through the same slirp
#   nvmet     the kernel's nvmet-tcp inside the guest on 127.0.0.1 (its
#             own tmpfs file, buffered I/O): no slirp, but the target's
#             work runs on the guest's emulated CPUs
#   ds-guest  `diskstack serve --nvme-tcp` inside the guest on 127.0.0.1
#             (its own tmpfs file, made like nvmet's): the same place,
#             transport and CPUs as nvmet, so its "vs nvmet" compares the
#             two targets alone
#   ds-alt    (not by default) the same as ds-guest with another build,
#             BENCH_DS_ALT (a diskstack binary), on its own file and port:
#             two builds of the target take turns in one guest, an A/B
#             test of a change
# Jobs: 4 KiB random read and write at QD32, 1 MiB sequential read and
# write at QD8 (fio, libaio, O_DIRECT, RUNTIME s after 1 s of ramp).
# Printed per path and job: median guest IOPS, the medians of the
# per-round ratios to nbd and to nvmet, the diskstack process's CPU time
# per request (utime + stime from /proc/PID/stat over the run, divided by
# the requests the guest's block device completed; "-" for nvmet, whose
# target is in the guest; for ds-guest the in-guest process's, sampled by
# the guest from its own /proc/PID/stat, in guest time), QEMU's CPU per
# request outside its vCPU threads (the main loop, where slirp runs) and
# the guest's busy CPU time (all its CPUs, /proc/stat) per request.
#
# Environment: BENCH_RUNTIME (default 8), BENCH_ROUNDS (default 3),
# BENCH_PATHS (default "nvme-tcp nbd nvmet ds-guest"), BENCH_JOBS, BENCH_SIZE_MB
# (default 256), BENCH_PERF (1: the host's perf goes into the guest, each
# fio run is profiled with `perf record -e cpu-clock -a -g` (a software
# clock: TCG has no PMU) and the guest prints `perf report` views of each
# run, which are saved in $work/perf.txt (with DISKSTACK_VM_KEEP=1); the
# profiler's own cost perturbs the figures of such a run), BENCH_DS_ALT
# (the ds-alt path's binary), BENCH_NET (user, the default: QEMU's slirp;
# passt: passt(1), the newer user-mode network, on the same addresses, the
# guest's 10.0.2.2 mapped to the host's loopback; its CPU time over the
# whole run is printed at the end), BENCH_NVME_OPTS (options added to every
# NVMe/TCP connect in the guest, comma-separated: disable_sqflow, ...),
# plus the DISKSTACK_VM_* knobs of
# tests/vm/vm-lib.sh. TCG emulates every guest instruction: only ratios within one run mean
# anything.
. "$(dirname "$0")/../vm/vm-lib.sh"

vm_requires
case $("$DISKSTACK" serve --help 2>&1) in
*--nvme-tcp*) ;;
*) vm_skip "this diskstack has no NVMe/TCP target (serve --nvme-tcp)" ;;
esac
kernel=${1:-6.12}
runtime=${BENCH_RUNTIME:-8}
rounds=${BENCH_ROUNDS:-3}
paths=${BENCH_PATHS:-nvme-tcp nbd nvmet ds-guest}
jobs=${BENCH_JOBS:-randread-4k-qd32 randwrite-4k-qd32 read-1m-qd8 write-1m-qd8}
size_mb=${BENCH_SIZE_MB:-256}
NQN=nqn.2026-12.org.diskstack:bench
VM_EXTRA_MODS="nvme_core nvme_fabrics nvme_tcp nvmet nvmet_tcp configfs"

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-nvme-tcp.XXXXXX")
shm=$(mktemp -d /dev/shm/bench-nvme-tcp.XXXXXX)
srv_pid=
cleanup()
{
	[ -s "$work/qemu.pid" ] && kill "$(cat "$work/qemu.pid")" 2>/dev/null
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
	rm -rf "$shm"
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# One diskstack process serves the file over NBD on $port and over
# NVMe/TCP on $port + 1 (vm_serve_retry picks $port).
launch_server()
{
	"$DISKSTACK" serve -i 127.0.0.1 -p "$port" --nvme-tcp "127.0.0.1:$((port + 1))" \
		--nqn "$NQN" --nvme-portal "10.0.2.2:$((port + 1))" -P "$work/srv.pid" \
		"file:$img" 2>>"$work/serve.log" &
}

# vm_bench_marks' SAMPLE: the host server's ticks (none for the in-guest
# targets) and QEMU's outside its vCPU threads.
sample()
{
	echo "$(case $1 in nvmet | ds-guest | ds-alt) echo - ;; *) vm_pid_ticks "$srv_pid" ;; esac)" \
		"$(vm_qemu_aux_ticks "$(cat "$work/qemu.pid")")"
}

perf=${BENCH_PERF:-0}
[ "$perf" = 1 ] && ! command -v perf >/dev/null 2>&1 &&
	vm_skip "BENCH_PERF=1 needs perf on the host (linux-perf)"
case " $paths " in
*" ds-alt "*)
	[ -x "${BENCH_DS_ALT:-}" ] || vm_die "the ds-alt path needs BENCH_DS_ALT, a diskstack binary" ;;
*) BENCH_DS_ALT= ;;
esac
# The guest's extra programs (vm-lib.sh copies them with their shared
# libraries): perf, and the ds-alt build as /usr/bin/diskstack-alt.
vm_stage_extra()
{
	[ "$perf" = 1 ] && { _vm_copy_with_libs "$1" "$(command -v perf)" || return 1; }
	[ -z "$BENCH_DS_ALT" ] && return 0
	_vm_copy_with_libs "$1" "$BENCH_DS_ALT" && mv "$1$BENCH_DS_ALT" "$1/usr/bin/diskstack-alt"
}

vm_prepare "$kernel"
INITRD=$work/initrd.img
vm_initrd "$INITRD" nvme-bench
img=$shm/disk.img
vm_log "filling $img ($size_mb MiB)"
head -c $((size_mb << 20)) /dev/urandom > "$img"
: > "$work/serve.log"
vm_serve_retry "diskstack serve --nvme-tcp" launch_server

njobs=$(echo $jobs | wc -w)
npaths=$(echo $paths | wc -w)
tmo=$(( (runtime + 8) * rounds * njobs * npaths + 600 ))
log=$work/console.log
marks=$work/marks
: > "$marks"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
vm_log "$kernel: $npaths paths x $njobs jobs x $rounds rounds x ${runtime}s (timeout ${tmo}s); load: $load_start"
net=${BENCH_NET:-user}
case $net in
user)
	netdev="user,id=n0" ;;
passt)
	command -v passt >/dev/null || vm_die "BENCH_NET=passt needs passt(1)"
	# passt drops root for nobody before it writes its socket and pid.
	mkdir -p "$work/passt" && chown nobody "$work/passt" && chmod 755 "$work" ||
		vm_die "cannot make a directory for passt"
	passt -f -1 -s "$work/passt/sock" -P "$work/passt/pid" -a 10.0.2.15 -n 24 -g 10.0.2.2 \
		--no-dhcp-dns --no-dhcp-search >"$work/passt.log" 2>&1 &
	for _ in $(seq 50); do [ -S "$work/passt/sock" ] && [ -s "$work/passt/pid" ] && break; sleep 0.1; done
	[ -S "$work/passt/sock" ] || { cat "$work/passt.log"; vm_die "passt did not start"; }
	passt_pid=$(cat "$work/passt/pid")
	# Its CPU time (utime + stime, ticks), sampled until it leaves with
	# the guest (-1: one client).
	(
		while [ -r "/proc/$passt_pid/stat" ]; do
			awk '{ print $14 + $15 }' "/proc/$passt_pid/stat" > "$work/passt.ticks.new" 2>/dev/null &&
				mv "$work/passt.ticks.new" "$work/passt.ticks"
			sleep 1
		done
	) &
	netdev="stream,id=n0,server=off,addr.type=unix,addr.path=$work/passt/sock" ;;
*)
	vm_die "BENCH_NET=$net: user or passt" ;;
esac
vm_boot "$log" "$tmo" "ds.net=1 ds.port=$port ds.nvport=$((port + 1)) ds.nqn=$NQN ds.size=$size_mb ds.runtime=$runtime ds.rounds=$rounds ds.paths=${paths// /,} ds.jobs=${jobs// /,} ds.perf=$perf${BENCH_NVME_OPTS:+ ds.nvopts=$BENCH_NVME_OPTS}" \
	-netdev "$netdev" -device virtio-net-pci,netdev=n0 -pidfile "$work/qemu.pid" &
boot=$!
vm_bench_marks "$log" "$marks" $boot sample
wait $boot
rm -f "$work/qemu.pid"
[ -n "${passt_pid:-}" ] && kill "$passt_pid" 2>/dev/null
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$perf" = 1 ]; then
	grep -a '^VMTEST: PERF ' "$log" | tr -d '\r' | sed 's/^VMTEST: PERF //' > "$work/perf.txt"
	cat "$work/perf.txt"
fi
vm_bench_results "$log" nvme-bench "$marks" "$work/serve.log"
# shellcheck disable=SC2154 # vm_bench_results sets res
cpu=$(vm_bench_cpu "$res" "$marks")
# The guest's own samples (guest-nvme-bench.sh's cpu_marks), in the marks
# format: NAME JOB ROUND start|end SRV BUSY; SRV is the in-guest server's.
grep -a '^VMTEST: GUESTCPU ' "$log" | tr -d '\r' | sed 's/^VMTEST: GUESTCPU //' > "$work/gmarks"
gcpu=$(vm_bench_cpu "$res" "$work/gmarks")

# ratio NAME JOB BASE: the median over rounds of NAME's IOPS / BASE's.
ratio()
{
	local r
	r=$(echo "$res" | awk -v d="$1" -v j="$2" -v b="$3" '
		$2 == j && $1 == b { q[$3] = $4 }
		$2 == j && $1 == d { v[$3] = $4 }
		END { for (r in v) if (q[r] > 0) print v[r] / q[r] }' | vm_median)
	[ "$r" = - ] && echo - || printf '%.2fx' "$r"
}

echo
[ "$net" = passt ] && echo "network: passt, $(awk -v t="$(cat "$work/passt.ticks" 2>/dev/null || echo 0)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }') s of CPU over the whole run"
echo "kernel $kernel, $rounds rounds x ${runtime}s, ${size_mb} MiB, load average at the start: $load_start, at the end: $load_end"
printf '%-17s %-9s %8s  %-8s %-8s %11s %12s %13s  %s\n' job path IOPS "vs nbd" "vs nvmet" "srv us/req" \
	"qemu us/req" "guest us/req" "IOPS per round"
for j in $jobs; do
	for d in $paths; do
		runs=$(echo "$res" | awk -v d=$d -v j=$j '$1 == d && $2 == j { print $4 }')
		[ -n "$runs" ] || continue
		med=$(echo "$runs" | vm_median)
		be=$(echo "$cpu" | awk -v d=$d -v j=$j '$1 == d && $2 == j && $4 != "-" { print $4 }' | vm_median)
		aux=$(echo "$cpu" | awk -v d=$d -v j=$j '$1 == d && $2 == j && $5 != "-" { print $5 }' | vm_median)
		case $d in ds-guest | ds-alt)
			be=$(echo "$gcpu" | awk -v d="$d" -v j="$j" '$1 == d && $2 == j && $4 != "-" { print $4 }' | vm_median) ;;
		esac
		gbusy=$(echo "$gcpu" | awk -v d="$d" -v j="$j" '$1 == d && $2 == j && $5 != "-" { print $5 }' | vm_median)
		printf '%-17s %-9s %8.0f  %-8s %-8s %11s %12s %13s  (%s)\n' "$j" "$d" "$med" \
			"$(ratio "$d" "$j" nbd)" "$(ratio "$d" "$j" nvmet)" \
			"$([ "$be" = - ] && echo - || printf '%.1f' "$be")" \
			"$([ "$aux" = - ] && echo - || printf '%.1f' "$aux")" \
			"$([ "$gbusy" = - ] && echo - || printf '%.1f' "$gbusy")" "$(echo $runs | tr ' ' '/')"
	done
done
