#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-targets.sh: whole iSCSI targets and NVMe/TCP subsystems added
# and removed on a running serve (docs/ctl.md, "Targets and subsystems"):
# export-add frontend=iscsi / nvme-tcp makes one that initiators reach at
# once (iscsi-ls, qemu-io; the raw host of nvmf-raw.py, and the discovery
# log page); export-remove drops its sessions or controllers (a live
# qemu-io session is drained; live NVMe queues are closed), its disks are
# flushed, later logins and Connects are refused and the discovery log
# leaves it out, while a session on the command line's target and a
# controller of its subsystem carry on. nvme-ns-add/-remove nqn= change
# the namespaces of a subsystem added at run time (a connected host gets
# the Namespace Attribute Changed event and sees them come and go). Also
# the parameter errors and -32004 on a serve without the frontend.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires iscsi-ls iscsi-inq qemu-io stdbuf mkfifo
requires_python json
here=$(cd "$(dirname "$0")" && pwd)
cd "$tmpdir"

check() { json_check "$tmpdir/stdout" "$1"; }

iport=$(free_port)
nport=$(free_port)
serve s --iscsi "127.0.0.1:$iport" --lun 0=mem:4M --nvme-tcp "127.0.0.1:$nport" \
	--ns 1=mem:4M --control "$ctl"
expect_exit 0 c export-list
T0=$("$PY" -I -c 'import json, sys; print([e["name"] for e in json.load(open(sys.argv[1])) if e["frontend"] == "iscsi"][0])' "$tmpdir/stdout")
N0=$("$PY" -I -c 'import json, sys; print([e["name"] for e in json.load(open(sys.argv[1])) if e["frontend"] == "nvme-tcp"][0])' "$tmpdir/stdout")
T=iqn.2026-12.org.diskstack.test:added
N=nqn.2026-12.org.diskstack.test:added

# ---- iSCSI -------------------------------------------------------------------
# Parameter errors; a bad spec leaves nothing behind.
expect_exit 1 c export-add frontend=iscsi name=Not-An-IQN
expect_stderr "error -32602"
expect_exit 1 c export-add frontend=smb name=x
expect_stderr "error -32602"
expect_exit 1 c export-add frontend=iscsi "name=$T" 'luns={"256":"mem:1M"}'
expect_stderr "error -32602"
expect_exit 1 c export-add frontend=iscsi "name=$T0"
expect_stderr "error -32002"
expect_exit 1 c export-add frontend=iscsi "name=$T" 'luns={"0":"mem:1M","1":"nosuch:x"}'
expect_stderr "error -32003"
expect_exit 1 c export-remove frontend=iscsi "name=$T"
expect_stderr "error -32001"

truncate -s 4M t.img
expect_exit 0 c export-add frontend=iscsi "name=$T" 'luns={"0":"file:t.img","2":"mem:1M"}'
check "r['name'] == '$T' and [(l['lun'], l['size']) for l in r['luns']] == [(0, 4 << 20), (2, 1 << 20)]"
expect_exit 0 c export-list "name=$T"
check "[e['lun'] for e in r] == [0, 2]"
timeout 30 iscsi-ls "iscsi://127.0.0.1:$iport" > ls.out 2>&1 || { cat ls.out; fail "iscsi-ls"; }
grep -q "Target:$T " ls.out || { cat ls.out; fail "SendTargets does not list the new target"; }
timeout 30 iscsi-inq "iscsi://127.0.0.1:$iport/$T/2" > inq.out 2>&1 ||
	{ cat inq.out; fail "login to the new target"; }

# Two sessions kept open from FIFOs: one on the new target, one on the
# command line's.
mkfifo f1 f2
(timeout 60 stdbuf -oL qemu-io -f raw "iscsi://127.0.0.1:$iport/$T/0" < f1 > q1 2>&1) &
q1pid=$!
(timeout 60 stdbuf -oL qemu-io -f raw "iscsi://127.0.0.1:$iport/$T0/0" < f2 > q2 2>&1
 echo "exit $?" >> q2) &
q2pid=$!
exec 7>f1 8>f2
echo "write -P 0x5a 0 64k" >&7
echo "write -P 0x33 0 4k" >&8
i=0
until grep -q "wrote 65536/65536" q1 && grep -q "wrote 4096/4096" q2; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat q1 q2; fail "qemu-io did not log in"; }
	sleep 0.1
done

expect_exit 0 c export-remove frontend=iscsi "name=$T"
check "r == {'connections_closed': 1, 'flushed': True}"
grep -q "target $T removed: draining the session" s.log || { cat s.log; fail "the session was not drained"; }
expect_exit 1 c export-remove frontend=iscsi "name=$T"
expect_stderr "error -32001"
expect_exit 1 c export-list "name=$T"
expect_stderr "error -32001"
# What the session wrote is in the file.
"$PY" -I -c 'import sys; d = open("t.img", "rb").read(65536); sys.exit(d != b"\x5a" * 65536)' ||
	fail "the removed target's writes are not in its file"
# New logins are refused, SendTargets leaves it out.
expect_exit_nonzero() { "$@" > "$tmpdir/out" 2>&1 && { cat "$tmpdir/out"; fail "$* succeeded"; }; :; }
expect_exit_nonzero timeout 30 iscsi-inq "iscsi://127.0.0.1:$iport/$T/2"
grep -qi "not found" "$tmpdir/out" || { cat "$tmpdir/out"; fail "the login was not refused as not found"; }
timeout 30 iscsi-ls "iscsi://127.0.0.1:$iport" > ls.out 2>&1 || { cat ls.out; fail "iscsi-ls"; }
grep -q "Target:$T " ls.out && { cat ls.out; fail "SendTargets still lists the removed target"; }
# The other target's session carries on.
echo "read -P 0x33 0 4k" >&8
echo quit >&8
exec 8>&-
wait $q2pid
grep -q "read 4096/4096" q2 && grep -q "exit 0$" q2 || { cat q2; fail "the other target's session"; }
# The removed target's initiator retries its login; end it.
exec 7>&-
kill "$q1pid" 2>/dev/null
wait $q1pid 2>/dev/null || true

# Added again under the same name: a new, working target.
expect_exit 0 c export-add frontend=iscsi "name=$T" 'luns={"0":"mem:1M"}'
timeout 30 iscsi-inq "iscsi://127.0.0.1:$iport/$T/0" > inq.out 2>&1 ||
	{ cat inq.out; fail "login to the target added again"; }
expect_exit 0 c export-remove frontend=iscsi "name=$T" mode=force
check "r == {'connections_closed': 0, 'flushed': True}"

# ---- NVMe/TCP -------------------------------------------------------------------
expect_exit 1 c export-add frontend=nvme-tcp name=not-an-nqn
expect_stderr "error -32602"
expect_exit 1 c export-add frontend=nvme-tcp "name=$N0"
expect_stderr "error -32002"
expect_exit 1 c export-add frontend=nvme-tcp "name=$N" 'namespaces={"0":"mem:1M"}'
expect_stderr "error -32602"
expect_exit 0 c export-add frontend=nvme-tcp "name=$N" 'namespaces={"1":"mem:2M","3":"mem:1M"}'
check "r['name'] == '$N' and [(n['nsid'], n['size']) for n in r['namespaces']] == [(1, 2 << 20), (3, 1 << 20)]"
expect_exit 0 c export-list "name=$N"
check "sorted(e['nsid'] for e in r) == [1, 3]"
# nvme-ns-add and nvme-ns-remove with nqn= act on a subsystem added at run
# time: a host connected to it gets the Namespace Attribute Changed event
# and sees the namespace come (Identify, I/O) and go; the command line's
# subsystem is not touched.
expect_exit 1 c nvme-ns-add nqn=nqn.2026-12.org.diskstack.test:nosuch nsid=2 spec=mem:1M
expect_stderr "error -32001"
expect_exit 1 c nvme-ns-remove nqn=nqn.2026-12.org.diskstack.test:nosuch nsid=1
expect_stderr "error -32001"
expect_exit 1 c nvme-ns-add "nqn=$N" nsid=3 spec=mem:1M
expect_stderr "error -32002"
expect_exit 1 c nvme-ns-add "nqn=$N" nsid=1025 spec=mem:1M
expect_stderr "error -32602"
expect_exit 1 c nvme-ns-remove "nqn=$N" nsid=2
expect_stderr "error -32001"
expect_exit 1 c nvme-ns-add "nqn=$N" nsid=2 spec=nosuch:x
expect_stderr "error -32003"
"$PY" -I - "$here/nvmf-raw.py" "$nport" "$N" "$N0" "$DISKSTACK" "$ctl" <<'PYEOF' || fail "nvme-ns-add/-remove nqn= with a host"
import json
import subprocess
import sys
path = sys.argv.pop(1)
NEW, OLD, DISKSTACK, CTL = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
sys.path.insert(0, __import__("os").path.dirname(path))
import nvmfhost  # noqa: E402
from nvmfhost import *  # noqa: E402,F401,F403 (the raw host: Queue, admin, io_queue, ...)
PORT, NQN = int(sys.argv[1]), sys.argv[2]
nvmfhost.target(PORT, NQN)


def ctl(*args):
    r = subprocess.run([DISKSTACK, "ctl", "-S", CTL] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def active(a):
    d = identify(a, 0x02)
    ids = struct.unpack("<1024I", d)
    return [i for i in ids if i]


def arm(a):
    # Namespace Attribute Notices on (Set Features 0Bh), then one
    # Asynchronous Event Request left outstanding.
    st, _, _, _ = a.cmd(a.sqe(0x09, 0, (0x0B, 1 << 8)))
    assert st == 0, hex(st)
    q = a.sqe(0x0C)
    a.pdu(4, bytes(q))
    return struct.unpack_from("<H", q, 2)[0]


def event(a, cid):
    typ, _, hdr, _ = a.recv_pdu()
    dw0, _, _, _, rcid, st = struct.unpack_from("<IIHHHH", hdr, 8)
    assert typ == 5 and rcid == cid and st >> 1 == 0, (typ, rcid, hex(st))
    # Notice, Namespace Attribute Changed, log page 04h (NVMe Base §5.2).
    assert dw0 == 0x040002, hex(dw0)
    st, _, _, d = a.cmd(a.sqe(0x02, 0, (0x04 | (1023 << 16),)), rlen=4096)
    assert st == 0, hex(st)
    return [i for i in struct.unpack("<1024I", d) if i]


def io2(q, seed):
    d = pattern(seed, 4096)
    st, _, _, _ = q.cmd(q.sqe(0x01, 2, (8, 0, 7)), d)
    if st:
        return st
    st, _, _, got = q.cmd(q.sqe(0x02, 2, (8, 0, 7)), rlen=4096)
    assert st == 0 and got == d, hex(st)
    return 0


nvmfhost.target(PORT, OLD)
a_old, c_old = admin(OLD)
nvmfhost.target(PORT, NEW)
a, cntlid = admin(NEW)
q = io_queue(cntlid)
assert active(a) == [1, 3], active(a)
assert io2(q, 5) & 0xFF == 0x0B            # Invalid Namespace or Format
cid = arm(a)
r = ctl("nvme-ns-add", "nqn=" + NEW, "nsid=2", "spec=mem:1M")
assert r["nqn"] == NEW and r["nsid"] == 2 and r["size"] == 1 << 20, r
assert event(a, cid) == [2]
assert active(a) == [1, 2, 3], active(a)
assert io2(q, 6) == 0
check_io(q, 7)                             # namespace 1 as before
assert active(a_old) == [1], active(a_old)
ents = ctl("export-list", "name=" + NEW)
assert sorted(e["nsid"] for e in ents) == [1, 2, 3], ents
cid = arm(a)
assert ctl("nvme-ns-remove", "nqn=" + NEW, "nsid=2") == {}
assert event(a, cid) == [2]
assert active(a) == [1, 3], active(a)
assert io2(q, 8) & 0xFF == 0x0B
assert active(a_old) == [1], active(a_old)
for x in (q, a, a_old):
    x.close()
PYEOF
expect_exit 0 c export-list "name=$N"
check "sorted(e['nsid'] for e in r) == [1, 3]"
# The command line's subsystem by its NQN, as without nqn=.
expect_exit 0 c nvme-ns-add "nqn=$N0" nsid=4 spec=mem:1M
check "r['nqn'] == '$N0' and r['nsid'] == 4"
expect_exit 0 c nvme-ns-remove nsid=4
check "r == {}"
expect_exit 1 c nvme-ns-remove "nqn=$N0" nsid=4
expect_stderr "error -32001"
expect_exit 0 c stats-enable "target=$N/3"

"$PY" -I - "$here/nvmf-raw.py" "$nport" "$N" "$N0" "$DISKSTACK" "$ctl" <<'PYEOF' || fail "the NVMe/TCP host failed"
import subprocess
import sys
path = sys.argv.pop(1)
NEW, OLD, DISKSTACK, CTL = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
sys.path.insert(0, __import__("os").path.dirname(path))
import nvmfhost  # noqa: E402
from nvmfhost import *  # noqa: E402,F401,F403 (the raw host: Queue, admin, io_queue, ...)
PORT, NQN = int(sys.argv[1]), sys.argv[2]
nvmfhost.target(PORT, NQN)


def discovered():
    dq = Queue()
    st, _, _, _ = dq.connect(DISC)
    assert st == 0
    st, _, _, page = dq.cmd(dq.sqe(0x02, 0, (0x70 | ((1024 * 4 // 4 - 1) << 16),)), rlen=4096)
    assert st == 0
    dq.close()
    n = struct.unpack_from("<Q", page, 8)[0]
    return [page[1024 * i + 256:1024 * i + 512].rstrip(b"\0").decode() for i in range(1, n + 1)]


def connect_as(nqn):
    nvmfhost.target(PORT, nqn)
    a, cntlid = admin(nqn)
    return a, io_queue(cntlid)


assert sorted(discovered()) == sorted([OLD, NEW, DISC]), discovered()
a_new, q_new = connect_as(NEW)
check_io(q_new, 1)
a_old, q_old = connect_as(OLD)
check_io(q_old, 2)
r = subprocess.run([DISKSTACK, "ctl", "-S", CTL, "export-remove", "frontend=nvme-tcp",
                    "name=" + NEW], capture_output=True, text=True)
assert r.returncode == 0, r
assert r.stdout.strip() == '{"connections_closed":1,"flushed":true}', r.stdout
# Both queues of its controller are closed.
expect_closed(q_new, "I/O queue of the removed subsystem")
expect_closed(a_new, "admin queue of the removed subsystem")
# A new Connect is refused; the discovery log leaves it out.
q = Queue()
st, _, _, _ = q.connect(NEW)
assert st == 0x182 | 0x2000 or st & 0xFFF == 0x182, hex(st)
q.close()
assert sorted(discovered()) == sorted([OLD, DISC]), discovered()
# The other subsystem's controller carries on.
check_io(q_old, 3)
q_old.close()
a_old.close()
PYEOF
expect_exit 1 c export-remove frontend=nvme-tcp "name=$N"
expect_stderr "error -32001"
expect_exit 1 c export-list "name=$N"
expect_stderr "error -32001"
expect_exit 1 c stats "target=$N/3"
expect_stderr "error -32001"
serve_stop s
[ "$serve_status" = 0 ] || { cat s.log; fail "serve exited with $serve_status"; }

# ---- without the frontend: -32004 -------------------------------------------------
serve n -U "$tmpdir/nbd.sock" --control "$ctl" -e a=mem:1M
for fe in iscsi nvme-tcp; do
	expect_exit 1 c export-add "frontend=$fe" name=nqn.2026-12.x:y
	expect_stderr "error -32004"
	expect_exit 1 c export-remove "frontend=$fe" name=nqn.2026-12.x:y
	expect_stderr "error -32004"
done
# frontend=nbd is the NBD export-add of before.
expect_exit 0 c export-add frontend=nbd name=b spec=mem:1M
expect_exit 0 c export-remove frontend=nbd name=b
serve_stop n
[ "$serve_status" = 0 ] || { cat n.log; fail "serve exited with $serve_status"; }
exit 0
