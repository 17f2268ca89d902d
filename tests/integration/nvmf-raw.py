#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nvmf-raw.py PORT NQN: a raw-socket NVMe/TCP host (NVMe/TCP transport
# spec 1.0, NVMe over Fabrics 1.1) against `diskstack serve --nvme-tcp`:
# ICReq/ICResp, admin and I/O Connect, Property Get/Set, Identify, Set
# Features, Write with in-capsule data and with R2T/H2CData, Read through
# C2HData (and SUCCESS with SQ flow control off), header and data digests,
# discovery, two hosts, keep-alive expiry, then malformed PDUs -- each must
# get a C2HTermReq or a clean close, or an NVMe status -- while a first
# association keeps reading and writing.
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nvmfhost  # noqa: E402
from nvmfhost import (DISC, HOSTNQN, Queue, admin, check_io, expect_closed,  # noqa: E402
                      expect_term, identify, io_queue, pattern, read, write)

PORT = int(sys.argv[1])
NQN = sys.argv[2]
nvmfhost.target(PORT, NQN)
cases = 0


def ok(name):
    global cases
    cases += 1
    print("ok %d - %s" % (cases, name))


# ---- a working association -------------------------------------------------
a, cntlid = admin(kato=0)
idc = identify(a, 1)
assert struct.unpack_from("<H", idc, 78)[0] == cntlid, "Identify CNTLID != Connect CNTLID"
assert idc[111] == 1 and idc[76] & 2, "CNTRLTYPE/CMIC"
assert struct.unpack_from("<H", idc, 320)[0] > 0, "KAS"
assert struct.unpack_from("<I", idc, 536)[0] & 3, "SGLS"
assert struct.unpack_from("<I", idc, 1792)[0] >= 4 and struct.unpack_from("<I", idc, 1796)[0] >= 1
assert idc[768:768 + len(NQN)] == NQN.encode()
ok("admin connect, properties, identify controller")
idn = identify(a, 0, 1)
nsze = struct.unpack_from("<Q", idn, 0)[0]
assert nsze == 16384 and idn[30] & 1, (nsze, idn[30])
st, dw0, _, _ = a.cmd(a.sqe(0x09, 0, (0x07, 0x00010001)))
assert st == 0 and dw0 == 0x00010001, (hex(st), hex(dw0))
ok("identify namespace, set features number of queues")
act = identify(a, 2)
assert struct.unpack_from("<III", act, 0) == (1, 5, 0), struct.unpack_from("<III", act, 0)
assert struct.unpack_from("<Q", identify(a, 0, 5), 0)[0] == 2048
ok("active namespace list: --ns 5 next to the positional SPEC")

q1 = io_queue(cntlid, 1)
q2 = io_queue(cntlid, 2)
check_io(q1, 1)
d = pattern(2, 65536)
assert write(q2, 100, d, inline=False, split=16384) == 0
assert read(q1, 100, 65536) == d
ok("I/O queues: in-capsule write, R2T/H2CData write split in 4, C2HData read")
st, _, _, _ = q1.cmd(q1.sqe(0x00, 1))
assert st == 0
st, _, _, _ = q1.cmd(q1.sqe(0x02, 1, (16384, 0, 7)), rlen=4096)
assert st & 0xFF == 0x80 and st & 0x4000, "read past the end: %#x" % st
ok("flush; out-of-range read gets LBA Out of Range + DNR")

# Duplicate queue ID, unknown controller, wrong host.
dup = Queue()
st, dw0, _, _ = dup.connect(NQN, qid=1, cntlid=cntlid, sqsize=127)
assert st & 0x7FF == 0x182 and dw0 == 42, (hex(st), hex(dw0))
dup.close()
dup = Queue()
st, dw0, _, _ = dup.connect(NQN, qid=1, cntlid=0x7777, sqsize=127)
assert st & 0x7FF == 0x182 and dw0 == (1 << 16 | 16), (hex(st), hex(dw0))
dup.close()
dup = Queue()
st, _, _, _ = dup.connect(NQN, qid=3, cntlid=cntlid, hostnqn=HOSTNQN + "x", sqsize=127)
assert st & 0x7FF == 0x184, hex(st)
dup.close()
bad = Queue()
st, dw0, _, _ = bad.connect("nqn.2026-12.org.example:nope")
assert st & 0x7FF == 0x182 and dw0 == (1 << 16 | 256), (hex(st), hex(dw0))
bad.close()
ok("Connect refusals: taken QID, unknown CNTLID, other host, unknown NQN")

# ---- digests and SQ flow control off ---------------------------------------
b, cntlid_b = admin(hd=True, dd=True, hostnqn=HOSTNQN + "-b",
                    hostid=bytes(range(101, 117)))
assert cntlid_b != cntlid
qb = io_queue(cntlid_b, 1, hd=True, dd=True, hostnqn=HOSTNQN + "-b",
              hostid=bytes(range(101, 117)), cattr=0x04)
d = pattern(3, 32768)
assert write(qb, 200, d, inline=False) == 0
assert read(qb, 200, 32768) == d
assert write(qb, 300, pattern(4, 4096)) == 0
assert read(q1, 300, 4096) == pattern(4, 4096)
ok("second host: header+data digests, SUCCESS C2HData, shared namespace")

# ---- discovery ----------------------------------------------------------------
dq = Queue()
st, dw0, _, _ = dq.connect(DISC)
assert st == 0
idd = identify(dq, 1)
assert idd[111] == 2, "discovery CNTRLTYPE"
st, _, _, hdr = dq.cmd(dq.sqe(0x02, 0, (0x70 | (255 << 16),)), rlen=1024)
assert st == 0
nrec = struct.unpack_from("<Q", hdr, 8)[0]
assert nrec == 2, nrec
st, _, _, page = dq.cmd(dq.sqe(0x02, 0, (0x70 | ((1024 * 3 // 4 - 1) << 16),)), rlen=3072)
assert st == 0 and page[1024] == 3 and page[1026] == 2, page[1024:1028]
assert page[1024 + 256:1024 + 256 + len(NQN)] == NQN.encode()
assert page[1024 + 32:1024 + 32 + len(str(PORT))] == str(PORT).encode()
dq.close()
ok("discovery: identify, log page 70h with the subsystem and itself")

# ---- keep-alive expiry ---------------------------------------------------------
k, _ = admin(kato=1000, hostnqn=HOSTNQN + "-k", hostid=bytes(range(201, 217)))
k.s.settimeout(30)
expect_closed(k, "keep-alive")
ok("keep-alive timeout ends a silent association")
check_io(q1, 5)

# ---- malformed PDUs, each on its own connection --------------------------------
m = Queue(icreq=False)
m.pdu(4, bytes(64))
expect_term(m, 2, "CapsuleCmd before ICReq")
ok("CapsuleCmd before ICReq -> TermReq PDU sequence error")

m = Queue(icreq=False)
p = bytearray(128)
struct.pack_into("<BBBBI", p, 0, 0, 0, 128, 0, 128)
struct.pack_into("<H", p, 8, 1)
m.s.sendall(p)
expect_term(m, 6, "ICReq PFV 1")
ok("ICReq with PFV 1 -> TermReq unsupported parameter")

m = Queue()
m.pdu(7, bytes(16))
expect_term(m, 1, "C2HData from the host")
ok("C2HData from the host -> TermReq invalid header")

m = Queue()
m.pdu(4, bytes(64), hlen=80)
expect_term(m, 1, "CapsuleCmd HLEN 80")
ok("CapsuleCmd with a wrong HLEN -> TermReq")

m = Queue(hd=True)
m.pdu(4, bytes(m.sqe(0x7F, fctype=4)), bad_hdgst=True)
expect_term(m, 3, "header digest")
ok("header digest mismatch -> TermReq header digest error")

m = Queue()
m.pdu(6, struct.pack("<HHIII", 1, 77, 0, 512, 0), bytes(512), flags=4)
expect_term(m, 1, "H2CData without an R2T")
ok("H2CData for an unknown TTAG -> TermReq")

m = Queue()
m.pdu(4, bytes(m.sqe(0x01, 1)), bytes(8192 + 512))
expect_term(m, 5, "in-capsule data over ICSZ")
ok("in-capsule data over the limit -> TermReq data limit exceeded")

m = Queue()
m.s.sendall(struct.pack("<BBBBI", 4, 0, 72, 0, 0xFFFFFFFF))
expect_term(m, 1, "huge PLEN")
ok("PLEN 4 GiB -> TermReq")

m = Queue()
m.s.sendall(struct.pack("<BBBBI", 4, 0, 72, 0, 72) + bytes(20))
m.close()
ok("truncated header then close")

m, mc = admin(hd=True, dd=True, hostnqn=HOSTNQN + "-m", hostid=bytes(range(31, 47)))
mq = io_queue(mc, 1, hd=True, dd=True, hostnqn=HOSTNQN + "-m", hostid=bytes(range(31, 47)))
qq = mq.sqe(0x01, 1, (400, 0, 0))
struct.pack_into("<QIBBBB", qq, 24, 0, 512, 0, 0, 0, 0x01)
mq.pdu(4, bytes(qq), bytes(512), bad_ddgst=True)
typ, _, hdr, _ = mq.recv_pdu()
assert typ == 5 and (struct.unpack_from("<H", hdr, 22)[0] >> 1) & 0x7FF == 0x22
check_io(mq, 6)
ok("in-capsule data digest mismatch -> Transient Transport Error, queue goes on")
qq = mq.sqe(0x01, 1, (400, 0, 7))
struct.pack_into("<QIBBBB", qq, 24, 0, 4096, 0, 0, 0, 0x5A)
mq.pdu(4, bytes(qq))
typ, _, hdr, _ = mq.recv_pdu()
assert typ == 9
cid, ttag = struct.unpack_from("<HH", hdr, 8)
mq.pdu(6, struct.pack("<HHIII", cid, ttag, 0, 4096, 0), bytes(4096), flags=4, bad_ddgst=True)
expect_closed(mq, "H2CData data digest")
ok("H2CData data digest mismatch -> close")
m.close()

qq = q1.sqe(0x02, 1, (0, 0, 7))
struct.pack_into("<QIBBBB", qq, 24, 0, 4096, 0, 0, 0, 0x20)
q1.pdu(4, bytes(qq))
typ, _, hdr, _ = q1.recv_pdu()
assert typ == 5 and (struct.unpack_from("<H", hdr, 22)[0] >> 1) & 0x7FF == 0x11
ok("unknown SGL descriptor -> SGL Descriptor Type Invalid, queue goes on")

m = Queue()
m.s.sendall(struct.pack("<BBBBI", 2, 0, 24, 0, 24) + bytes(16))
expect_closed(m, "H2CTermReq")
ok("H2CTermReq from the host -> close")

# ---- the first association still works ----------------------------------------------
check_io(q1, 7)
check_io(q2, 8)
assert read(qb, 200, 32768) == pattern(3, 32768)
ok("first associations unaffected")

# Orderly shutdown as the Linux host does it.
a.prop_set(0x14, 0x464001)
assert a.prop_get(0x1C) & 0xC == 0x8
ok("CC.SHN -> CSTS.SHST complete")
for x in (q1, q2, qb, a, b):
    x.close()
print("1..%d" % cases)
