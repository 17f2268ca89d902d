#!/bin/sh
# SPDX-License-Identifier: MIT
# test-error-nvmf.sh: error: (fault injection) through the NVMe/TCP target,
# seen by a raw NVMe/TCP host (error-nvmf.py over nvmfhost.py): the rules
# of a namespace's spec, then fault-set / fault-clear over the control
# socket on the live namespace, each injected status giving the NVMe
# status (SCT/SC and DNR) of docs/decorator-error.md for Read, Write,
# Write Zeroes, Dataset Management and Flush; after each failure the queue
# and the other namespace keep serving and the server stays up.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_python struct

NQN=nqn.2026-12.org.diskstack:fault
port=$(free_port)
ctl=$tmpdir/ctl.sock
serve s --nvme-tcp "127.0.0.1:$port" --nqn $NQN --control "$ctl" \
	--ns '1=error:read:medium;range=0-7/write:readonly;range=0-7:mem:1M' \
	--ns '2=error:write:enospc;once:mem:1M'
"$PY" -I "$(dirname "$0")/error-nvmf.py" "$port" "$NQN" "$DISKSTACK" "$ctl" ||
	{ cat "$tmpdir/s.log"; fail "NVMe statuses"; }
kill -0 "$s_pid" || fail "the server died"
serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
exit 0
