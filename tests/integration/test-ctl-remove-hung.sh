#!/bin/sh
# SPDX-License-Identifier: MIT
# test-ctl-remove-hung.sh: iscsi-lun-remove and nvme-ns-remove of a unit
# whose disk holds a command (a write waiting on a long delay:) answer as
# soon as the unit is hidden when timeout_ms runs out, with a job that
# ends after the drain and the flush (docs/ctl.md, "iSCSI LUNs and
# NVMe/TCP namespaces"); meanwhile the control socket answers other calls
# and the write in flight completes. Without a hung command the call
# still returns {} once everything is done.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires qemu-io stdbuf mkfifo
requires_python json
here=$(cd "$(dirname "$0")" && pwd)
cd "$tmpdir"

check() { json_check "$tmpdir/stdout" "$1"; }
# wait_job ID: polls job-get until the job is no longer running.
wait_job()
{
	_i=0
	while :; do
		expect_exit 0 c job-get "id=$1"
		grep -q '"state":"running"' "$tmpdir/stdout" || return 0
		_i=$((_i + 1))
		[ $_i -lt 600 ] || fail "job $1 still running"
		sleep 0.1
	done
}

# The write waits this long in delay: (much longer than the test needs
# to see the removal answered while it waits).
HOLD=6000ms

iport=$(free_port)
nport=$(free_port)
serve s --iscsi "127.0.0.1:$iport" --lun 0=mem:1M --lun "1=delay:$HOLD:mem:4M" \
	--nvme-tcp "127.0.0.1:$nport" --ns 1=mem:1M --ns "2=delay:$HOLD:mem:4M" --control "$ctl"
expect_exit 0 c export-list
T=$("$PY" -I -c 'import json, sys; print([e["name"] for e in json.load(open(sys.argv[1])) if e["frontend"] == "iscsi"][0])' "$tmpdir/stdout")
NQN=$("$PY" -I -c 'import json, sys; print([e["name"] for e in json.load(open(sys.argv[1])) if e["frontend"] == "nvme-tcp"][0])' "$tmpdir/stdout")

# ---- iSCSI ----------------------------------------------------------------------
expect_exit 1 c iscsi-lun-remove lun=1 timeout_ms=-1
expect_stderr "error -32602"
mkfifo qfifo
(timeout 60 stdbuf -oL qemu-io -f raw "iscsi://127.0.0.1:$iport/$T/1" < qfifo > qio 2>&1
 echo "exit $?" >> qio) &
qpid=$!
exec 7>qfifo
echo "aio_write -P 0x5a 0 4k" >&7
# Give the write time to reach the disk (it then waits there for $HOLD).
sleep 1
expect_exit 0 c iscsi-lun-remove lun=1 timeout_ms=0
check "r['job']['type'] == 'iscsi-lun-remove' and r['job']['target'] == '$T/1' and r['job']['state'] == 'running'"
JOB=$("$PY" -I -c 'import json, sys; print(json.load(open(sys.argv[1]))["job"]["id"])' "$tmpdir/stdout")
# Hidden at once; the control socket answers meanwhile.
expect_exit 0 c export-list "name=$T"
check "[e['lun'] for e in r] == [0]"
expect_exit 0 c server-info
expect_exit 0 c job-list
check "[j['id'] for j in r if j['state'] == 'running'] == [$JOB]"
expect_exit 1 c job-cancel "id=$JOB"
expect_stderr "error -32004"
# The same LUN number cannot come back before the removal ends (its end
# clears the slot's per-session state, which would be the new LUN's).
expect_exit 1 c iscsi-lun-add lun=1 spec=mem:1M
expect_stderr "error -32002"
expect_stderr "being_removed"
wait_job "$JOB"
check "r['state'] == 'done' and 'error' not in r"
expect_exit 0 c iscsi-lun-add lun=1 spec=mem:1M
expect_exit 0 c iscsi-lun-remove lun=1
check "r == {}"
echo aio_flush >&7
echo quit >&7
exec 7>&-
wait $qpid
grep -q "wrote 4096/4096" qio || { cat qio; fail "the write in flight did not complete"; }
# Nothing held: {} as before.
expect_exit 0 c iscsi-lun-remove lun=0
check "r == {}"

# ---- NVMe/TCP ---------------------------------------------------------------------
"$PY" -I - "$here/nvmf-raw.py" "$nport" "$NQN" "$DISKSTACK" "$ctl" <<'PYEOF' || fail "the NVMe/TCP host failed"
import json
import subprocess
import sys
import threading
import time
path = sys.argv.pop(1)
DISKSTACK, CTL = sys.argv[3], sys.argv[4]
sys.path.insert(0, __import__("os").path.dirname(path))
import nvmfhost  # noqa: E402
from nvmfhost import *  # noqa: E402,F401,F403 (the raw host: Queue, admin, io_queue, ...)
PORT, NQN = int(sys.argv[1]), sys.argv[2]
nvmfhost.target(PORT, NQN)


def ctl(*args):
    r = subprocess.run([DISKSTACK, "ctl", "-S", CTL] + list(args), capture_output=True,
                       text=True)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


a, cntlid = admin()
q = io_queue(cntlid)
status = []


def hung_write():
    st, _, _, _ = q.cmd(q.sqe(0x01, 2, (0, 0, 7)), pattern(7, 4096))
    status.append(st)


t = threading.Thread(target=hung_write)
t.start()
time.sleep(1)  # the write reaches the disk, then waits there
r = ctl("nvme-ns-remove", "nsid=2", "timeout_ms=0")
job = r["job"]
assert job["type"] == "nvme-ns-remove" and job["target"] == NQN + "/2", r
assert job["state"] == "running", r
assert [e["nsid"] for e in ctl("export-list", "name=" + NQN)] == [1]
r = subprocess.run([DISKSTACK, "ctl", "-S", CTL, "nvme-ns-add", "nsid=2", "spec=mem:1M"],
                   capture_output=True, text=True)
assert r.returncode == 1 and "-32002" in r.stderr and "being_removed" in r.stderr, r
while ctl("job-get", "id=%d" % job["id"])["state"] == "running":
    time.sleep(0.1)
assert ctl("job-get", "id=%d" % job["id"])["state"] == "done"
t.join()
assert status == [0], status
q.close()
a.close()
assert ctl("nvme-ns-remove", "nsid=1") == {}
PYEOF
serve_stop s
[ "$serve_status" = 0 ] || { cat s.log; fail "serve exited with $serve_status"; }
exit 0
