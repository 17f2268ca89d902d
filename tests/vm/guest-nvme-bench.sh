# SPDX-License-Identifier: MIT
# guest-nvme-bench.sh: the guest side of tests/bench/bench-nvme-tcp.sh, run
# by /init (busybox sh). Four paths to a disk of the same size, each a
# file on tmpfs:
#   nvme-tcp  the host's `diskstack serve --nvme-tcp` (10.0.2.2:ds.nvport,
#             subsystem ds.nqn) through the kernel's nvme-tcp host, over
#             QEMU user networking (slirp);
#   nbd       the same diskstack process's NBD server (10.0.2.2:ds.port,
#             the same file) through the kernel's nbd client, same slirp;
#   nvmet     the kernel's own NVMe/TCP target inside this guest
#             (nvmet-tcp on 127.0.0.1:4420, a file on the guest's tmpfs,
#             buffered I/O) through the same nvme-tcp host, on loopback.
#   ds-guest  `diskstack serve --nvme-tcp` inside this guest (127.0.0.1:
#             4421, a file on the guest's tmpfs like nvmet's) through the
#             same nvme-tcp host, on loopback: the like-for-like rival of
#             nvmet (both targets in the guest, on TCG, no slirp).
#   ds-alt    the same with another build (/usr/bin/diskstack-alt, the
#             host's BENCH_DS_ALT) on 127.0.0.1:4422 and its own file.
# Per round, per job, the paths take turns (bench_rounds in guest-lib.sh,
# whose mark lines let the host sample the server's and QEMU's CPU time
# around each fio run). At the same marks the guest samples its own
# clocks (cpu_marks): the in-guest diskstack's CPU time and the guest's
# busy time on all its CPUs. TCG emulates every instruction: only ratios
# count.
. /vm/guest-lib.sh

RUNTIME=$(ds_arg runtime)
ROUNDS=$(ds_arg rounds)
JOBS=$(ds_arg jobs | tr ',' ' ')
PATHS=$(ds_arg paths | tr ',' ' ')
NBDPORT=$(ds_arg port)
NVPORT=$(ds_arg nvport)
NQN=$(ds_arg nqn)
SIZE_MB=$(ds_arg size)
PERF=$(ds_arg perf)
LOCALNQN=nqn.2026-12.org.diskstack:guest-nvmet
DSNQN=nqn.2026-12.org.diskstack:guest-ds
DSPORT=4421
DSALTPORT=4422
ds_pid=
ds_alt_pid=

nvme_disks() { ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$' | sort; }

# fabrics_connect ADDR PORT NQN: connects the kernel's NVMe/TCP host (the
# nvme-cli-free way: one write to /dev/nvme-fabrics) and prints the new
# namespace's block device.
# ds.nvopts=: more options for every NVMe/TCP connect (disable_sqflow, ...).
NVOPTS=$(sed -n 's/.*ds\.nvopts=\([^ ]*\).*/\1/p' /proc/cmdline)
fabrics_connect()
{
	before=$(nvme_disks)
	echo "transport=tcp,traddr=$1,trsvcid=$2,nqn=$3${NVOPTS:+,$NVOPTS}" > /dev/nvme-fabrics ||
		{ dmesg | tail -n 10 >&2; return 1; }
	for _ in $(seq 300); do
		for b in $(nvme_disks); do
			echo "$before" | grep -qx "$b" || { echo "$b"; return 0; }
		done
		sleep 0.1
	done
	return 1
}

# nvmet_start: the in-guest kernel target, one namespace on a tmpfs file.
nvmet_start()
{
	mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config || return 1
	C=/sys/kernel/config/nvmet
	S=$C/subsystems/$LOCALNQN
	mkdir "$S" && echo 1 > "$S/attr_allow_any_host" && mkdir "$S/namespaces/1" || return 1
	dd if=/dev/urandom of=/tmp/nvmet.img bs=1M count="$SIZE_MB" 2>/dev/null || return 1
	echo -n /tmp/nvmet.img > "$S/namespaces/1/device_path"
	echo 1 > "$S/namespaces/1/buffered_io"   # tmpfs (O_DIRECT there only since 6.6)
	echo 1 > "$S/namespaces/1/enable" || return 1
	P=$C/ports/1
	mkdir "$P" && echo tcp > "$P/addr_trtype" && echo ipv4 > "$P/addr_adrfam" &&
		echo 127.0.0.1 > "$P/addr_traddr" && echo 4420 > "$P/addr_trsvcid" &&
		ln -s "$S" "$P/subsystems/$LOCALNQN"
}

# ds_start [alt]: diskstack's target in this guest, on a tmpfs file made
# the way nvmet's is (reactor threads: one per guest CPU, the default);
# with "alt", the ds-alt build on its own port and file. Sets ds_pid or
# ds_alt_pid.
ds_start()
{
	_bin=$DS _name=ds-guest _port=$DSPORT _nqn=$DSNQN
	[ "${1:-}" = alt ] && _bin=/usr/bin/diskstack-alt _name=ds-alt _port=$DSALTPORT _nqn=$DSNQN-alt
	dd if=/dev/urandom of="/tmp/$_name.img" bs=1M count="$SIZE_MB" 2>/dev/null || return 1
	"$_bin" serve --nvme-tcp "127.0.0.1:$_port" --nqn "$_nqn" -P "$T/$_name.pid" \
		"file:/tmp/$_name.img" >"$T/$_name.out" 2>>"$T/ds.err" &
	wait_for "[ -s $T/$_name.pid ]" 60 || return 1
	if [ "$_name" = ds-alt ]; then ds_alt_pid=$(cat "$T/$_name.pid"); else ds_pid=$(cat "$T/$_name.pid"); fi
}

# proc_ticks PID: utime + stime of PID in clock ticks (fields 14 and 15
# of /proc/PID/stat, proc(5); diskstack's comm has no blank), "-" if gone.
proc_ticks()
{
	read -r _st < "/proc/$1/stat" 2>/dev/null || { echo -; return; }
	# shellcheck disable=SC2086 # split into the fields
	set -- $_st
	shift 13
	echo $(($1 + $2))
}

# busy_ticks: the guest's CPU time on all CPUs outside idle and iowait
# (the "cpu" line of /proc/stat, proc(5)).
busy_ticks()
{
	read -r _c _u _n _s _i _w _q _sq _st _rest < /proc/stat
	echo $((_u + _n + _s + _q + _sq + _st))
}

# cpu_marks: copies bench_rounds' lines and, after each mark line, prints
#   VMTEST: GUESTCPU NAME JOB ROUND start|end SRV BUSY
# SRV the in-guest diskstack's ticks (ds-guest only, else "-"), BUSY the
# guest's (busy_ticks). bench_rounds waits 0.3 s after a start mark
# before fio starts, and the end mark comes after fio has ended.
cpu_marks()
{
	while IFS= read -r _l; do
		echo "$_l"
		case $_l in
		"VMTEST: HOST mark "*)
			# shellcheck disable=SC2086 # NAME JOB ROUND start|end
			set -- ${_l#VMTEST: HOST mark }
			_srv=-
			[ "$1" = ds-guest ] && _srv=$(proc_ticks "$ds_pid")
			[ "$1" = ds-alt ] && _srv=$(proc_ticks "$ds_alt_pid")
			echo "VMTEST: GUESTCPU $1 $2 $3 $4 $_srv $(busy_ticks)" ;;
		esac
	done
}

setup()
{
	for n in $PATHS; do
		case $n in
		nbd)
			timeout 30 /usr/sbin/nbd-client 10.0.2.2 "$NBDPORT" /dev/nbd0 -b 4096 \
				>"$T/nbd.out" 2>&1 || { cat "$T/nbd.out"; fail "nbd-client 10.0.2.2 $NBDPORT"; return 1; }
			dev_nbd=nbd0 ;;
		nvme-tcp)
			dev_nvme_tcp=$(fabrics_connect 10.0.2.2 "$NVPORT" "$NQN") ||
				{ fail "nvme-tcp connect to 10.0.2.2:$NVPORT"; return 1; } ;;
		nvmet)
			nvmet_start || { dmesg | tail -n 10; fail "the in-guest nvmet target"; return 1; }
			dev_nvmet=$(fabrics_connect 127.0.0.1 4420 "$LOCALNQN") ||
				{ fail "nvme-tcp connect to the in-guest nvmet"; return 1; } ;;
		ds-guest)
			ds_start || { cat "$T/ds.err"; fail "the in-guest diskstack target"; return 1; }
			dev_ds_guest=$(fabrics_connect 127.0.0.1 "$DSPORT" "$DSNQN") ||
				{ fail "nvme-tcp connect to the in-guest diskstack"; return 1; } ;;
		ds-alt)
			ds_start alt || { cat "$T/ds.err"; fail "the in-guest ds-alt target"; return 1; }
			dev_ds_alt=$(fabrics_connect 127.0.0.1 "$DSALTPORT" "$DSNQN-alt") ||
				{ fail "nvme-tcp connect to the in-guest ds-alt"; return 1; } ;;
		*) fail "unknown path $n"; return 1 ;;
		esac
	done
	for n in $PATHS; do
		b=$(eval echo "\$dev_$(echo "$n" | tr '-' '_')")
		echo none > "/sys/block/$b/queue/scheduler" 2>/dev/null
		info "$n: /dev/$b, $(($(cat /sys/block/$b/size) / 2048)) MiB, max_sectors_kb $(cat /sys/block/$b/queue/max_sectors_kb)"
	done
}

# With ds.perf=1 (BENCH_PERF=1 on the host) every fio run of bench_rounds
# runs under `perf record -a -g` with the software cpu-clock event (TCG
# emulates no PMU), one data file per run, named after bench_rounds' loop
# variables (NAME JOB ROUND: _n _j _r). The function shadows the fio
# program for bench_rounds; perf passes fio's output through.
if [ "$PERF" = 1 ]; then
	fio()
	{
		mkdir -p "$T/perf"
		# shellcheck disable=SC2154 # bench_rounds' loop variables
		perf record -q -e cpu-clock -F 1000 -a -g -o "$T/perf/$_n.$_j.$_r.data" \
			-- /usr/bin/fio "$@" 2>>"$T/perf.err"
	}
fi

# perf_views: after the runs, for each profiled run, what `perf report`
# makes of it as "VMTEST: PERF NAME JOB ROUND | LINE": the share of the
# samples by command, the top symbols (kernel and user) by command, and the
# call chains into the busiest kernel symbols of the target (the in-guest
# diskstack, or the kworkers where nvmet-tcp runs).
perf_views()
{
	info "CPU flags (string copies): $(grep -m1 -ow -e erms -e fsrm /proc/cpuinfo | tr '\n' ' ')"
	for f in "$T"/perf/*.data; do
		[ -e "$f" ] || continue
		k=$(basename "$f" .data | tr '.' ' ')
		{
			echo "== samples by command"
			perf report -i "$f" --no-children --sort comm -n --stdio \
				-g none 2>>"$T/perf.err" | grep -v -e '^#$' -e '^$' -e '^# To display' | head -n 16
			echo "== by command, object and symbol (>= 0.5 %)"
			perf report -i "$f" --no-children --sort comm,dso,sym --stdio -q -g none \
				--percent-limit 0.5 2>>"$T/perf.err" | head -n 60
			echo "== call chains into the top symbols (callee order, >= 2 %)"
			perf report -i "$f" --no-children --sort comm,sym --stdio -q \
				-g graph,2,callee,function,percent --percent-limit 3 2>>"$T/perf.err" | head -n 250
		} | sed "s/^/VMTEST: PERF $k | /"
	done
	[ -s "$T/perf.err" ] && sed "s/^/VMTEST: PERF stderr | /" "$T/perf.err" | sort -u | head -n 20
}

bench()
{
	TNAME=nvme-bench
	mkdir -p "$T"
	setup || return 1
	info "$(uname -r), $(nproc) CPUs, ${RUNTIME}s per run, $ROUNDS rounds, jobs: $JOBS"
	# The pipe hides bench_rounds' status; its fail() leaves $T/.failed.
	bench_rounds "$PATHS" | cpu_marks
	[ ! -e "$T/.failed" ] || return 1
	[ "$PERF" = 1 ] && perf_views
	/usr/sbin/nbd-client -d /dev/nbd0 >/dev/null 2>&1
	for c in /sys/class/nvme/nvme*; do
		[ -e "$c/delete_controller" ] && echo 1 > "$c/delete_controller"
	done
	[ -n "$ds_pid" ] && kill "$ds_pid"
	[ -n "$ds_alt_pid" ] && kill "$ds_alt_pid"
	echo "VMTEST: PASS nvme-bench"
}
bench
