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
LOCALNQN=nqn.2026-12.org.diskstack:guest-nvmet
DSNQN=nqn.2026-12.org.diskstack:guest-ds
DSPORT=4421
ds_pid=

nvme_disks() { ls /sys/block | grep -E '^nvme[0-9]+n[0-9]+$' | sort; }

# fabrics_connect ADDR PORT NQN: connects the kernel's NVMe/TCP host (the
# nvme-cli-free way: one write to /dev/nvme-fabrics) and prints the new
# namespace's block device.
fabrics_connect()
{
	before=$(nvme_disks)
	echo "transport=tcp,traddr=$1,trsvcid=$2,nqn=$3" > /dev/nvme-fabrics ||
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

# ds_start: diskstack's target in this guest, on a tmpfs file made the
# way nvmet's is (reactor threads: one per guest CPU, the default).
ds_start()
{
	dd if=/dev/urandom of=/tmp/ds-guest.img bs=1M count="$SIZE_MB" 2>/dev/null || return 1
	"$DS" serve --nvme-tcp "127.0.0.1:$DSPORT" --nqn "$DSNQN" -P "$T/ds-guest.pid" \
		file:/tmp/ds-guest.img >"$T/ds-guest.out" 2>>"$T/ds.err" &
	# shellcheck disable=SC2016 # wait_for evaluates it
	wait_for '[ -s "$T/ds-guest.pid" ]' 60 || return 1
	ds_pid=$(cat "$T/ds-guest.pid")
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
		*) fail "unknown path $n"; return 1 ;;
		esac
	done
	for n in $PATHS; do
		b=$(eval echo "\$dev_$(echo "$n" | tr '-' '_')")
		echo none > "/sys/block/$b/queue/scheduler" 2>/dev/null
		info "$n: /dev/$b, $(($(cat /sys/block/$b/size) / 2048)) MiB, max_sectors_kb $(cat /sys/block/$b/queue/max_sectors_kb)"
	done
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
	/usr/sbin/nbd-client -d /dev/nbd0 >/dev/null 2>&1
	for c in /sys/class/nvme/nvme*; do
		[ -e "$c/delete_controller" ] && echo 1 > "$c/delete_controller"
	done
	[ -n "$ds_pid" ] && kill "$ds_pid"
	echo "VMTEST: PASS nvme-bench"
}
bench
