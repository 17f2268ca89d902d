# SPDX-License-Identifier: MIT
# guest-nvme-bench.sh: the guest side of tests/bench/bench-nvme-tcp.sh, run
# by /init (busybox sh). Three paths to a disk of the same size, each a
# file on tmpfs:
#   nvme-tcp  the host's `diskstack serve --nvme-tcp` (10.0.2.2:ds.nvport,
#             subsystem ds.nqn) through the kernel's nvme-tcp host, over
#             QEMU user networking (slirp);
#   nbd       the same diskstack process's NBD server (10.0.2.2:ds.port,
#             the same file) through the kernel's nbd client, same slirp;
#   nvmet     the kernel's own NVMe/TCP target inside this guest
#             (nvmet-tcp on 127.0.0.1:4420, a file on the guest's tmpfs,
#             buffered I/O) through the same nvme-tcp host, on loopback.
# Per round, per job, the paths take turns (bench_rounds in guest-lib.sh,
# whose mark lines let the host sample the server's and QEMU's CPU time
# around each fio run). TCG emulates every instruction: only ratios count.
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
	bench_rounds "$PATHS" || return 1
	/usr/sbin/nbd-client -d /dev/nbd0 >/dev/null 2>&1
	for c in /sys/class/nvme/nvme*; do
		[ -e "$c/delete_controller" ] && echo 1 > "$c/delete_controller"
	done
	echo "VMTEST: PASS nvme-bench"
}
bench
