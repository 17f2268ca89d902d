#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-stats-frontends.sh: the control socket without the NBD server
# and `stats` for the other frontends (docs/ctl.md, "Frontends", "stats").
# A serve with only --iscsi (then only --nvme-tcp) and --control answers
# ctl: the NBD-only methods with -32004, the rest by target names
# "IQN/LUN" and "NQN/NSID". After stats-enable, traffic sent through iSCSI (qemu-io), NVMe/TCP
# (the raw host of nvmf-raw.py) and vhost-user-blk (the test front-end of
# tests/bench/vhost-ceiling) is counted exactly, op by op and byte by
# byte, on the frontend's entry and per layer of a memdiff: over a file
# (the layered disk, its RAM layer, the file) and of a sqldiff:.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires qemu-io
requires_python json
here=$(cd "$(dirname "$0")" && pwd)
cd "$tmpdir"

# check FILE EXPR: json_check on the stdout of the last `c`.
check() { json_check "$tmpdir/stdout" "$1"; }

# ---- iSCSI only -------------------------------------------------------------
iport=$(free_port)
truncate -s 4M base.img
serve s --iscsi "127.0.0.1:$iport" --lun 0=memdiff:file:base.img --control "$ctl"

expect_exit 0 c server-info
check 'r["frontends"] == ["iscsi"]'
expect_exit 0 c export-list
check 'len(r) == 1 and r[0]["frontend"] == "iscsi" and r[0]["lun"] == 0'
IQN=$("$PY" -I -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["name"])' "$tmpdir/stdout")
T=$IQN/0
# The entry of $T in a stats reply.
E="[x for x in r['exports'] if x['name'] == '$T'][0]"

# The NBD-only methods: -32004, "no NBD server".
for m in "export-add name=x spec=mem:1M" "export-remove name=x" "connection-list" \
	"connection-close id=1" "ublk-add export=x" "vhost-blk-add export=x socket=$tmpdir/v.sock"; do
	# shellcheck disable=SC2086
	expect_exit 1 c $m
	expect_stderr "error -32004"
	expect_stderr "no NBD server"
done

# Everything else, by the LUN's target name.
expect_exit 0 c disk-info "target=$T"
check 'r["type"] == "layered" and r["size_bytes"] == 4 << 20 and r["spec"] == "memdiff:file:base.img"'
expect_exit 1 c disk-info "target=$IQN/7"
expect_stderr "error -32001"
expect_exit 1 c delay-get "target=$T"
expect_stderr "error -32004"
expect_exit 1 c fault-get "target=$T"
expect_stderr "error -32004"
expect_exit 0 c iscsi-lun-add lun=1 spec=mem:1M
expect_exit 0 c disk-resize "target=$IQN/1" size=2097152
check 'r["size"] == 2 << 20'
timeout 30 iscsi-readcapacity16 "iscsi://127.0.0.1:$iport/$IQN/1" > cap 2>/dev/null &&
	{ grep -q "Total size:2097152" cap || { cat cap; fail "LUN 1 was not resized"; }; }
expect_exit 0 c flush "target=$IQN/1"
expect_exit 0 c iscsi-lun-remove lun=1
expect_exit 0 c log-set-level level=info

# Counting at the disks is opt-in: the entry has no counters before it.
expect_exit 0 c stats "target=$T"
check "'write' not in ${E} and ${E}['layers'] == []"
expect_exit 0 c stats-enable
check "r == {'enabled': ['$T']}"

# Traffic: 3 writes of 4 KiB, 2 reads of 8 KiB of what was written and one
# of 16 KiB of what was not (which the overlay asks of the file below).
expect_exit 0 c stats "target=$T" reset=true
timeout 60 qemu-io -f raw -c "write -P 1 0 4k" -c "write -P 2 4k 4k" -c "write -P 3 1M 4k" \
	-c "read -P 1 0 4k" -c "read 0 8k" -c "read 2M 16k" "iscsi://127.0.0.1:$iport/$T" > qio 2>&1 ||
	{ cat qio; fail "qemu-io over iSCSI"; }
expect_exit 0 c stats "target=$T"
check "len(r['exports']) == 1 and r['exports'][0]['frontend'] == 'iscsi' and r['exports'][0]['name'] == '$T'"
check "(lambda e: (e['write']['ops'], e['write']['bytes'], e['read']['ops'], e['read']['bytes'],
	e['write']['errors'], e['read']['errors']))($E) == (3, 12288, 3, 4096 + 8192 + 16384, 0, 0)"
# Per layer: the overlay's disk saw everything, its RAM layer took the
# writes and served the reads of what was written, the file below only
# the unwritten read.
check "[l['type'] for l in ${E}['layers']] == ['layered', 'ram', 'file']"
check "(lambda l: (l[0]['write']['ops'], l[0]['read']['ops'], l[2]['write']['ops'], l[2]['read']['ops'],
	l[2]['read']['bytes']))(${E}['layers']) == (3, 3, 0, 1, 16384)"
check "(lambda m: (m['write']['ops'], m['write']['bytes'], m['read']['ops'], m['read']['bytes'],
	m['read']['errors'], m['flush']['ops']))(${E}['layers'][1]) == (3, 12288, 2, 4096 + 8192, 0, 1)"
check "${E}['read']['lat_ns']['max'] >= ${E}['read']['lat_ns']['p50'] > 0"
expect_exit 0 c stats reset=true
expect_exit 0 c stats "target=$T"
check "(${E}['write']['ops'], ${E}['layers'][1]['write']['ops'],
	${E}['layers'][2]['read']['ops']) == (0, 0, 0)"
# A LUN added after stats-enable is counted from the start.
expect_exit 0 c iscsi-lun-add lun=2 spec=mem:1M
expect_exit 0 c stats "target=$IQN/2"
check "r['exports'][0]['write']['ops'] == 0 and len(r['exports'][0]['layers']) == 1"
# A sqldiff: LUN: its SQLite layer has an entry of its own too.
truncate -s 1M base3.img
expect_exit 0 c iscsi-lun-add lun=3 "spec=sqldiff:$tmpdir/o.db;create:file:base3.img"
timeout 60 qemu-io -f raw -c "write -P 6 0 4k" -c "read -P 6 0 4k" -c "read 64k 8k" \
	"iscsi://127.0.0.1:$iport/$IQN/3" > qio 2>&1 || { cat qio; fail "qemu-io over iSCSI"; }
expect_exit 0 c stats "target=$IQN/3"
check "[l['type'] for l in r['exports'][0]['layers']] == ['layered', 'sqlite', 'file']"
check "(lambda l: (l[1]['write']['ops'], l[1]['write']['bytes'], l[1]['read']['ops'],
	l[1]['read']['bytes'], l[2]['read']['ops'], l[2]['read']['bytes'],
	l[2]['write']['ops']))(r['exports'][0]['layers']) == (1, 4096, 1, 4096, 1, 8192, 0)"
expect_exit 0 c iscsi-lun-remove lun=3
expect_exit 1 c stats target=nosuch
expect_stderr "error -32001"
# stats-enable enable=false turns counting off (the entries lose their
# counters, traffic meanwhile is not counted); turned on again, the
# counters start at zero.
expect_exit 0 c stats-enable enable=false
check "r == {'disabled': ['$T', '$IQN/2']}"
expect_exit 0 c stats "target=$T"
check "'write' not in ${E} and ${E}['layers'] == []"
timeout 60 qemu-io -f raw -c "write -P 4 0 4k" "iscsi://127.0.0.1:$iport/$T" > qio 2>&1 ||
	{ cat qio; fail "qemu-io over iSCSI"; }
expect_exit 0 c stats-enable "target=$T"
check "r == {'enabled': ['$T']}"
expect_exit 0 c stats "target=$T"
check "${E}['write']['ops'] == 0 and ${E}['layers'][0]['write']['ops'] == 0"
timeout 60 qemu-io -f raw -c "write -P 5 0 4k" "iscsi://127.0.0.1:$iport/$T" > qio 2>&1 ||
	{ cat qio; fail "qemu-io over iSCSI"; }
expect_exit 0 c stats "target=$T"
check "${E}['write']['ops'] == 1 and ${E}['write']['bytes'] == 4096"
expect_exit 0 c stats-enable "target=$T" enable=false
check "r == {'disabled': ['$T']}"
expect_exit 0 c shutdown
wait_gone "$s_pid" 300 "serve did not stop after ctl shutdown"
wait "$s_pid" || fail "serve exited with $? after ctl shutdown"
rm -f "$tmpdir/s.pid"

# ---- NVMe/TCP only ------------------------------------------------------------
nport=$(free_port)
serve n --nvme-tcp "127.0.0.1:$nport" --ns 1=mem:8M --control "$ctl"
expect_exit 0 c server-info
check 'r["frontends"] == ["nvme-tcp"]'
expect_exit 0 c export-list
NQN=$("$PY" -I -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["name"])' "$tmpdir/stdout")
expect_exit 1 c export-add name=x spec=mem:1M
expect_stderr "error -32004"
expect_exit 0 c stats-enable "target=$NQN/1"
check "r == {'enabled': ['$NQN/1']}"
expect_exit 0 c nvme-ns-add nsid=2 spec=mem:1M
expect_exit 0 c disk-info "target=$NQN/2"
check 'r["size_bytes"] == 1 << 20'
expect_exit 0 c nvme-ns-remove nsid=2
# The raw host of nvmf-raw.py (its helpers, not its cases): 2 writes of
# 4 KiB, 3 reads of 4 KiB and one of 8 KiB on namespace 1.
"$PY" -I - "$here/nvmf-raw.py" "$nport" "$NQN" <<'PYEOF' || fail "the NVMe/TCP host failed"
import sys
path = sys.argv.pop(1)
sys.path.insert(0, __import__("os").path.dirname(path))
import nvmfhost  # noqa: E402
from nvmfhost import *  # noqa: E402,F401,F403 (the raw host: Queue, admin, io_queue, ...)
PORT, NQN = int(sys.argv[1]), sys.argv[2]
nvmfhost.target(PORT, NQN)
a, cntlid = admin()
q = io_queue(cntlid)
assert write(q, 0, pattern(1, 4096)) == 0
assert write(q, 8, pattern(2, 4096)) == 0
for _ in range(3):
    read(q, 0, 4096)
read(q, 0, 8192)
q.close()
a.close()
PYEOF
expect_exit 0 c stats "target=$NQN/1"
check "(lambda e: (e['frontend'], e['write']['ops'], e['write']['bytes'], e['read']['ops'],
	e['read']['bytes']))(r['exports'][0]) == ('nvme-tcp', 2, 8192, 4, 3 * 4096 + 8192)"
serve_stop n
[ "$serve_status" = 0 ] || { cat "$tmpdir/n.log"; fail "serve exited with $serve_status"; }

# ---- vhost-user-blk ------------------------------------------------------------
front=${abs_top_builddir:-$(cd "$(dirname "$DISKSTACK")" && pwd)}/tests/bench/vhost-ceiling
[ -x "$front" ] || skip "no tests/bench/vhost-ceiling (make tests/bench/vhost-ceiling)"
serve v -U "$tmpdir/nbd.sock" --control "$ctl" -e a=mem:4M
vs=$tmpdir/vhost.sock
expect_exit 0 c stats-enable
check "r == {'enabled': ['a']}"
expect_exit 0 c vhost-blk-add export=a "socket=$vs"
# One sequential pass of 4 KiB writes over 1 MiB: 256 requests.
timeout 60 "$front" "$vs" "$v_pid" write 4096 8 0 1048576 > front.out 2>&1 ||
	{ cat front.out; fail "the vhost-user front-end failed"; }
expect_exit 0 c stats "target=$vs"
check "(lambda e: (e['frontend'], e['export'], e['write']['ops'], e['write']['bytes'],
	e['write']['errors']))(r['exports'][0]) == ('vhost-user-blk', 'a', 256, 1 << 20, 0)"
# The export's own counters are NBD's (none); its disk's layer saw the
# vhost-user writes (the same disk handle).
expect_exit 0 c stats target=a
check "(lambda e: (e['frontend'], e['write']['ops'],
	e['layers'][0]['write']['ops']))(r['exports'][0]) == ('nbd', 0, 256)"
expect_exit 0 c vhost-blk-del "socket=$vs"
serve_stop v
[ "$serve_status" = 0 ] || { cat "$tmpdir/v.log"; fail "serve exited with $serve_status"; }
exit 0
