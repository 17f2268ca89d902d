#!/bin/sh
# SPDX-License-Identifier: MIT
# test-nvmf-protocol.sh: the NVMe/TCP target from a raw socket
# (nvmf-raw.py): connect, properties, identify, in-capsule and R2T writes,
# C2HData reads, digests, discovery, two hosts, two namespaces,
# keep-alive expiry, then
# malformed PDUs that each get a C2HTermReq, an NVMe status or a clean
# close while the first association keeps working; the server still
# drains on SIGTERM. Option errors first.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_python struct

NQN=nqn.2026-12.org.diskstack:raw
# Usage errors (exit 2) before anything is opened.
expect_exit 2 "$DISKSTACK" serve --nvme-tcp 4420
expect_stderr "nothing to serve over NVMe/TCP"
expect_exit 2 "$DISKSTACK" serve --ns 2=mem:1M mem:1M
expect_stderr "need --nvme-tcp"
expect_exit 2 "$DISKSTACK" serve --nvme-tcp 4420 --ns 1=mem:1M mem:1M
expect_stderr "namespace 1 is SPEC already"
expect_exit 2 "$DISKSTACK" serve --nvme-tcp 4420 --ns 0=mem:1M
expect_exit 2 "$DISKSTACK" serve --nvme-tcp 4420 --nqn nqn.2014-08.org.nvmexpress.discovery mem:1M
expect_exit 2 "$DISKSTACK" serve --nvme-tcp 1:2:3 mem:1M
expect_stderr "[ADDR]:PORT"
port=$(free_port)
serve s --nvme-tcp "$port" --nqn $NQN mem:8M --ns 5=mem:1M
"$PY" -I "$(dirname "$0")/nvmf-raw.py" "$port" "$NQN" || { cat "$tmpdir/s.log"; fail "raw cases"; }
kill -0 "$s_pid" || fail "server died"
serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
