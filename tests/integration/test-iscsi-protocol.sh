#!/bin/sh
# SPDX-License-Identifier: MIT
# test-iscsi-protocol.sh: malformed and out-of-order PDUs from a raw
# socket (iscsi-raw.py): unknown opcodes, Data-Out for an unknown TTT,
# CmdSN outside the window, a bad DataSN, Login after login, a huge
# DataSegmentLength, a PDU before login, a truncated header, header and
# data digest errors; each gets a Reject or a clean close while another
# session keeps working, and the server still drains on SIGTERM.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
requires_python hashlib

T=iqn.2026-12.org.diskstack:raw
port=$(free_port)
serve s --iscsi "$port" --target $T --lun 0=mem:1M
"$PY" -I "$(dirname "$0")/iscsi-raw.py" "$port" "$T" || { cat "$tmpdir/s.log"; fail "raw cases"; }
serve_stop s
[ "$serve_status" = 0 ] || { cat "$tmpdir/s.log"; fail "serve exited with $serve_status"; }
