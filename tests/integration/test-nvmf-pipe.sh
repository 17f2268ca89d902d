#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nvmf-pipe.sh: NVMe/TCP Reads answered through a pipe (the file's
# pages spliced into the socket, nvmf/server.c) from a raw-socket host
# (nvmf-pipe.py), on a file in tmpfs (the file backend's inline splice)
# and one on the test directory's filesystem (its io_uring splice), then
# both on io_uring (DISKSTACK_FILE_RW=uring), then with pipes too small
# for the transfers (DISKSTACK_NVMF_PIPE=65536: Writes that fill one
# half-way move to memory, and must land all the same). The server must have made
# pipes (counted in /proc/PID/fd), so the test cannot pass on the buffer
# path alone.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_python struct

NQN=nqn.2026-12.org.diskstack:pipe
shm=$(mktemp -d /dev/shm/ds-nvmf-pipe.XXXXXX) || fail "mktemp in /dev/shm"
cleanup_fn "rm -rf '$shm'"
f1=$shm/ns1.img
f2=$tmpdir/ns2.img
random_image "$f1" 64M 1M 64@0
random_image "$f2" 48M 1M 48@0

for mode in auto uring small; do
	port=$(free_port)
	case $mode in
	uring)
		DISKSTACK_FILE_RW=uring serve s -v --nvme-tcp "$port" --nqn $NQN "file:$f1" \
			--ns "2=file:$f2" ;;
	small)
		# 64 KiB pipes: 1 MiB Reads go through memory, and a Write's
		# 128 KiB H2CData fills the pipe half-way (the move to memory).
		DISKSTACK_NVMF_PIPE=65536 serve s -v --nvme-tcp "$port" --nqn $NQN "file:$f1" \
			--ns "2=file:$f2" ;;
	*)
		serve s -v --nvme-tcp "$port" --nqn $NQN "file:$f1" --ns "2=file:$f2" ;;
	esac
	"$PY" -I "$(dirname "$0")/nvmf-pipe.py" "$port" "$NQN" "$f1" "$f2" "$s_pid" ||
		{ cat "$tmpdir/s.log"; fail "pipe cases ($mode)"; }
	serve_stop s
	[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
	if [ "$mode" = small ]; then
		grep -Eq 'write data through memory after [1-9][0-9]* bytes in the pipe' "$tmpdir/s.log" ||
			{ cat "$tmpdir/s.log"; fail "no Write moved to memory from a full pipe"; }
	fi
done
echo "ok"
