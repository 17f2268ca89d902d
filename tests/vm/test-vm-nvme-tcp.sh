#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test-vm-nvme-tcp.sh: the Linux NVMe/TCP host (nvme-tcp + nvme-cli) in QEMU
# guests running Debian's 6.12 and bookworm 6.1 kernels against `diskstack
# serve --nvme-tcp` on the host (tests/vm/guest-nvme-tcp.sh), reached as
# 10.0.2.2 through QEMU user networking. The host serves one subsystem
# whose namespace 1 is a loop device over a 64 MiB file (the file backend
# follows the device's size from kernel uevents, so growing it raises the
# namespace-changed AEN); a plain file if loop devices are unavailable (the
# resize check then skips). The guest asks with console lines:
#   VMTEST: HOST-RESIZE   grow the file to 96 MiB (losetup -c)
#   VMTEST: HOST-RESTART  stop the target and start it again on the same port
#   VMTEST: HOST-CTL ...  a call on serve's control socket (vm_watch_ctl):
#                         namespaces added and removed at run time
# nvme-cli comes from the host (tools/quickstart.sh installs it) with its
# libraries; the guest's host identities are fixed here.
. "$(dirname "$0")/vm-lib.sh"

# Not `| grep -q`: under pipefail the early exit would fail the pipeline.
case $("$DISKSTACK" serve --help 2>&1) in
*--nvme-tcp*) ;;
*) vm_skip "this diskstack has no NVMe/TCP target (serve --nvme-tcp)" ;;
esac
vm_requires
command -v nvme >/dev/null 2>&1 || vm_skip "nvme (nvme-cli) is missing (tools/quickstart.sh deps)"

VM_EXTRA_MODS="nvme_core nvme_fabrics nvme_tcp"
NQN=nqn.2026-12.org.diskstack:vm
HOSTNQN_A=nqn.2014-08.org.nvmexpress:uuid:69570000-aaaa-4000-8000-00000000000a
HOSTID_A=69570000-aaaa-4000-8000-00000000000a
HOSTNQN_B=nqn.2014-08.org.nvmexpress:uuid:0b0b0000-bbbb-4000-8000-00000000000b
HOSTID_B=0b0b0000-bbbb-4000-8000-00000000000b

work=$(mktemp -d "${TMPDIR:-/tmp}/diskstack-vm-nvme-tcp.XXXXXX")
srv_pid= loopdev= watch_pid= port= ctl_watch_pid=
cleanup()
{
	[ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null
	[ -n "$ctl_watch_pid" ] && kill "$ctl_watch_pid" 2>/dev/null
	[ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null
	[ -f "$work/srv.pid" ] && kill "$(cat "$work/srv.pid")" 2>/dev/null
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	[ "${DISKSTACK_VM_KEEP:-0}" = 1 ] && vm_log "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# Called by vm_initrd: nvme-cli with its ldd closure, the host identities.
vm_stage_extra()
{
	local st=$1
	_vm_copy_with_libs "$st" "$(command -v nvme)"
	mkdir -p "$st/vm"
	echo "$HOSTNQN_A" > "$st/vm/hostnqn"
	echo "$HOSTID_A" > "$st/vm/hostid"
	echo "$HOSTNQN_B" > "$st/vm/hostnqn2"
	echo "$HOSTID_B" > "$st/vm/hostid2"
}

# serve_on PORT: starts the target on PORT; 0 once it listens.
serve_on()
{
	rm -f "$work/srv.pid"
	"$DISKSTACK" serve -P "$work/srv.pid" --nvme-tcp "127.0.0.1:$1" --nqn "$NQN" \
		--nvme-portal "10.0.2.2:$1" "file:$disk" \
		-U "$work/nbd.sock" --control "$work/ctl.sock" 2>>"$work/serve.log" &
	srv_pid=$!
	for _ in $(seq 100); do
		[ -s "$work/srv.pid" ] && return 0
		kill -0 "$srv_pid" 2>/dev/null || break
		sleep 0.1
	done
	vm_stop_server
	return 1
}

# start_server: a fresh 64 MiB disk (through a loop device when possible);
# sets port, srv_pid, loopdev, disk.
start_server()
{
	rm -f "$work/disk.img"
	truncate -s 64M "$work/disk.img"
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	loopdev=$(losetup -f --show "$work/disk.img" 2>/dev/null) || loopdev=
	disk=${loopdev:-$work/disk.img}
	for _ in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 30000))
		serve_on "$port" && return 0
	done
	cat "$work/serve.log" >&2
	vm_die "diskstack serve --nvme-tcp did not start"
}

# watch LOG: answers the guest's HOST-RESIZE and HOST-RESTART requests,
# and counts the target's pipe ends at HOST-PIPES (into $work/pipes).
watch()
{
	local log=$1
	(
		resized=0 restarted=0 piped=0
		while [ $resized = 0 ] || [ $restarted = 0 ] || [ $piped = 0 ]; do
			if [ $piped = 0 ] && grep -aq '^VMTEST: HOST-PIPES' "$log" 2>/dev/null; then
				piped=1
				n=0
				for f in /proc/"$(cat "$work/srv.pid")"/fd/*; do
					case $(readlink "$f" 2>/dev/null) in pipe:*) n=$((n + 1)) ;; esac
				done
				echo "$n" > "$work/pipes"
				vm_log "the target holds $n pipe ends"
			fi
			if [ $resized = 0 ] && grep -aq '^VMTEST: HOST-RESIZE' "$log" 2>/dev/null; then
				resized=1
				[ -n "$loopdev" ] && truncate -s 96M "$work/disk.img" &&
					losetup -c "$loopdev" && vm_log "grew the disk to 96 MiB"
			fi
			if [ $restarted = 0 ] && grep -aq '^VMTEST: HOST-RESTART' "$log" 2>/dev/null; then
				restarted=1
				old=$(cat "$work/srv.pid" 2>/dev/null)
				[ -n "$old" ] && kill "$old" 2>/dev/null
				while [ -n "$old" ] && kill -0 "$old" 2>/dev/null; do sleep 0.1; done
				sleep 2
				if serve_on "$port"; then
					echo "$srv_pid" > "$work/srv2.pid"
					vm_log "restarted the target on port $port"
				else
					vm_log "could not restart the target"
				fi
			fi
			sleep 0.2
		done
		wait
	) &
	watch_pid=$!
}

for kernel in ${DISKSTACK_VM_KERNELS:-6.12 6.1}; do
	vm_prepare_initrd "$kernel" nvme-tcp
	: > "$work/serve.log"
	rm -f "$work/pipes"
	start_server
	log=$work/console-$kernel-nvme-tcp.log
	: > "$log"
	resize=0
	[ -n "$loopdev" ] && resize=1
	watch "$log"
	vm_watch_ctl "$log" "$work/ctl.sock"
	vm_boot "$log" "${DISKSTACK_VM_TIMEOUT:-600}" "ds.net=1 ds.port=$port ds.nqn=$NQN ds.resize=$resize ds.ctl=1" \
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0
	kill "$watch_pid" 2>/dev/null
	wait "$watch_pid" 2>/dev/null
	watch_pid=
	kill "$ctl_watch_pid" 2>/dev/null
	wait "$ctl_watch_pid" 2>/dev/null
	ctl_watch_pid=
	vm_stop_server
	[ -f "$work/srv.pid" ] && kill "$(cat "$work/srv.pid")" 2>/dev/null
	sleep 0.5
	r=0
	vm_results "$log" "$kernel/nvme-tcp" || r=$?
	if [ $r = 0 ] && ! grep -q 'header+data digests' "$work/serve.log"; then
		echo "[$kernel/nvme-tcp] FAIL the target never saw a connection with both digests"
		r=1
	fi
	# An ASan/UBSan diskstack reports into the target's stderr.
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/serve.log"; then
		echo "[$kernel/nvme-tcp] FAIL sanitizer report from the target:"
		grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/serve.log" | head -n 40
		r=1
	fi
	# Host B's large transfers (no digests) must have taken the pipes;
	# the server's own pipes (its log) are not 3 or more.
	if grep -aq '^VMTEST: PASS nvme-tcp-large-nodigest' "$log" &&
	   [ "$(cat "$work/pipes" 2>/dev/null || echo 0)" -lt 3 ]; then
		echo "[$kernel/nvme-tcp] FAIL the target made no pipe for transfers without digests"
		r=1
	fi
	if grep -aq '^VMTEST: PASS nvme-tcp-keep-alive' "$log"; then
		if grep -q 'keep-alive timeout' "$work/serve.log"; then
			grep 'keep-alive timeout' "$work/serve.log" | sed "s#^#[$kernel/nvme-tcp] target: #"
		else
			echo "[$kernel/nvme-tcp] FAIL the target did not end the silent association"
			r=1
		fi
	fi
	vm_tally $r || sed 's/^/    serve: /' "$work/serve.log" | tail -n 30
done
vm_exit
