#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# error-nvmf.py PORT NQN DISKSTACK CTL: the NVMe status a raw NVMe/TCP host
# (nvmfhost.py) gets for each status the error: decorator injects
# (docs/decorator-error.md, "What each frontend reports"), for Read, Write,
# Write Zeroes, Dataset Management (deallocate) and Flush. Namespace 1 starts
# with the rules of its spec; then fault-set over the control socket puts
# each status in turn on it. After every failure the same queue reads and
# writes outside the rule's range, and namespace 2 (once) keeps serving.
# Status codes: NVMe Base spec 2.0, Figure 100 (status field: SC bits 0-7,
# SCT bits 8-10, DNR bit 14 of the 15 bits after the phase tag), Generic
# Command Status (SCT 0h), Command Specific (1h), Media and Data Integrity
# Errors (2h); the NVM Command Set spec for the I/O command statuses.
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nvmfhost  # noqa: E402
from nvmfhost import admin, check_io, io_queue, pattern, read, read_status, write  # noqa: E402

PORT, NQN, DISKSTACK, CTL = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
nvmfhost.target(PORT, NQN)
DNR = 0x4000
INVALID_FIELD = 0x002               # SCT 0h SC 02h
INTERNAL_ERROR = 0x006              # SCT 0h SC 06h
CAPACITY_EXCEEDED = 0x081           # SCT 0h SC 81h (NVM command set)
WRITE_TO_RO = 0x182                 # SCT 1h SC 82h Attempted Write to Read Only Range
WRITE_FAULT = 0x280                 # SCT 2h SC 80h
UNRECOVERED_READ = 0x281            # SCT 2h SC 81h
NAMES = {0x002: "Invalid Field", 0x006: "Internal Error", 0x081: "Capacity Exceeded",
         0x182: "Write to RO", 0x280: "Write Fault", 0x281: "Unrecovered Read"}

# The expected NVMe status of each status the grammar has, by read and by
# the other (writing) commands: the table of docs/decorator-error.md.
MEDIUM = (UNRECOVERED_READ, WRITE_FAULT)
EXPECT = {
    "eio": MEDIUM, "enodata": MEDIUM, "eilseq": MEDIUM, "medium": MEDIUM,
    "readonly": (WRITE_TO_RO | DNR,) * 2, "erofs": (WRITE_TO_RO | DNR,) * 2,
    "eperm": (WRITE_TO_RO | DNR,) * 2, "eacces": (WRITE_TO_RO | DNR,) * 2,
    "enospc": (CAPACITY_EXCEEDED | DNR,) * 2, "edquot": (CAPACITY_EXCEEDED | DNR,) * 2,
    "efbig": (CAPACITY_EXCEEDED | DNR,) * 2,
    "einval": (INVALID_FIELD | DNR,) * 2, "enotsup": (INVALID_FIELD | DNR,) * 2,
    # A transient or unknown failure: Internal Error without DNR, so a
    # host retries.
    "enomem": (INTERNAL_ERROR,) * 2, "eagain": (INTERNAL_ERROR,) * 2,
    "etimedout": (INTERNAL_ERROR,) * 2, "ebusy": (INTERNAL_ERROR,) * 2,
    "eshutdown": (INTERNAL_ERROR,) * 2, "enodev": (INTERNAL_ERROR,) * 2,
    "enxio": (INTERNAL_ERROR,) * 2,
}


def ctl(*args):
    p = subprocess.run([DISKSTACK, "ctl", "-S", CTL] + list(args), capture_output=True)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    return json.loads(p.stdout)


def show(st):
    return "%#x (%s%s)" % (st, NAMES.get(st & 0x7FF, "?"), ", DNR" if st & DNR else "")


def op_write(q, nsid):
    return write(q, 0, pattern(9, 4096), nsid=nsid)


def op_zeroes(q, nsid):
    return q.cmd(q.sqe(0x08, nsid, (0, 0, 7)))[0]


def op_deallocate(q, nsid):
    # One range (NR 0), AD: 16 bytes of context, length 8, LBA 0.
    rng = struct.pack("<IIQ", 0, 8, 0)
    return q.cmd(q.sqe(0x09, nsid, (0, 1 << 2)), rng)[0]


def op_flush(q, nsid):
    return q.cmd(q.sqe(0x00, nsid))[0]


def op_read(q, nsid):
    return read_status(q, 0, 4096, nsid)[0]


WRITING = {"write": op_write, "write-zeroes": op_zeroes, "deallocate": op_deallocate}
cases = 0


def ok(name):
    global cases
    cases += 1
    print("ok %d - %s" % (cases, name))


def expect(q, nsid, what, f, want):
    st = f(q, nsid)
    assert st & 0x47FF == want, "%s: %s, want %s" % (what, show(st), show(want))
    # The same queue still serves outside the range, and so does ns 2.
    d = pattern(cases & 0xFF, 4096)
    assert write(q, 64, d, nsid=nsid) == 0, what
    assert read(q, 64, 4096, nsid=nsid) == d, what
    check_io(q, cases & 0xFF)


a, cntlid = admin()
q = io_queue(cntlid, 1)
check_io(q, 1)

# The rules of the spec: --ns 1='error:read:medium;range=0-7/write:readonly;range=0-7:...'.
expect(q, 1, "spec: read medium", op_read, UNRECOVERED_READ)
expect(q, 1, "spec: write readonly", op_write, WRITE_TO_RO | DNR)
expect(q, 1, "spec: write-zeroes readonly", op_zeroes, WRITE_TO_RO | DNR)
ok("the spec's rules: medium read, read-only write")
# --ns 2='error:write:enospc;once:...': the first write only.
assert op_write(q, 2) == CAPACITY_EXCEEDED | DNR
for i in range(3):
    assert op_write(q, 2) == 0
assert read(q, 0, 4096, nsid=2) == pattern(9, 4096)
ok("once: one Capacity Exceeded, then the writes go through")

target = "%s/1" % NQN
for name, (want_read, want_write) in EXPECT.items():
    r = ctl("fault-set", "target=" + target, "rules=all:%s;range=0-7" % name)
    assert r["rules"] == "all:%s;range=0-7" % name, r
    expect(q, 1, name + " read", op_read, want_read)
    for what, f in WRITING.items():
        expect(q, 1, "%s %s" % (name, what), f, want_write)
    ctl("fault-set", "target=" + target, "rules=flush:" + name)
    expect(q, 1, name + " flush", op_flush, want_write)
    r = ctl("fault-get", "target=" + target)
    assert r["stats"] == [{"matched": 1, "injected": 1}], (name, r)
    ok("%s: read %s, writes %s" % (name, show(want_read), show(want_write)))

r = ctl("fault-clear", "target=" + target)
assert r == {"rules": "", "stats": []}, r
for f in (op_read, op_flush) + tuple(WRITING.values()):
    assert f(q, 1) == 0, f.__name__
ok("fault-clear: every command succeeds again")
a.close()
q.close()
print("1..%d" % cases)
