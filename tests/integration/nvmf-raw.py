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
import socket
import struct
import sys

PORT = int(sys.argv[1])
NQN = sys.argv[2]
DISC = "nqn.2014-08.org.nvmexpress.discovery"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
HOSTID = bytes(range(1, 17))


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class Closed(Exception):
    pass


class Queue:
    def __init__(self, hd=False, dd=False, icreq=True, timeout=20):
        self.s = socket.create_connection(("127.0.0.1", PORT))
        self.s.settimeout(timeout)
        self.hd, self.dd = hd, dd
        self.cid = 0
        if icreq:
            self.icreq(hd, dd)

    def close(self):
        self.s.close()

    def rd(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise Closed()
            b += c
        return b

    def icreq(self, hd, dd, pfv=0):
        p = bytearray(128)
        struct.pack_into("<BBBBI", p, 0, 0, 0, 128, 0, 128)
        struct.pack_into("<HBBI", p, 8, pfv, 0, (1 if hd else 0) | (2 if dd else 0), 0)
        self.s.sendall(p)
        r = self.rd(128)
        assert r[0] == 1 and r[2] == 128 and struct.unpack_from("<I", r, 4)[0] == 128, r[:8]
        assert r[11] == (1 if hd else 0) | (2 if dd else 0), "ICResp DGST must mirror ICReq"
        assert r[10] == 0
        self.maxh2c = struct.unpack_from("<I", r, 12)[0]
        assert self.maxh2c >= 4096 and self.maxh2c % 4 == 0

    def pdu(self, typ, hdr_rest, data=b"", flags=0, hlen=None, pdo=None, bad_hdgst=False,
            bad_ddgst=False):
        hlen = hlen or 8 + len(hdr_rest)
        hd = 4 if self.hd else 0
        if data:
            pdo = pdo if pdo is not None else hlen + hd
            dd = 4 if self.dd else 0
            plen = pdo + len(data) + dd
        else:
            pdo, dd, plen = 0, 0, hlen + hd
        fl = flags | (1 if self.hd else 0) | (2 if (self.dd and data) else 0)
        h = struct.pack("<BBBBI", typ, fl, hlen, pdo, plen) + hdr_rest
        out = h
        if self.hd:
            out += struct.pack("<I", crc32c(h) ^ (1 if bad_hdgst else 0))
        if data:
            out += b"\0" * (pdo - len(out)) + data
            if dd:
                out += struct.pack("<I", crc32c(data) ^ (1 if bad_ddgst else 0))
        self.s.sendall(out)

    def recv_pdu(self):
        ch = self.rd(8)
        typ, flags, hlen, pdo, plen = struct.unpack("<BBBBI", ch)
        rest = self.rd(plen - 8)
        hdr = ch + rest[:hlen - 8]
        if typ == 3:
            return typ, flags, hdr, rest[hlen - 8:]
        if flags & 1:
            assert struct.unpack_from("<I", rest, hlen - 8)[0] == crc32c(hdr), "bad HDGST from target"
        data = b""
        if pdo:
            end = plen - (4 if flags & 2 else 0)
            data = (ch + rest)[pdo:end]
            if flags & 2:
                assert struct.unpack_from("<I", rest, plen - 12)[0] == crc32c(data), "bad DDGST"
        return typ, flags, hdr, data

    def sqe(self, opc, nsid=0, cdw=(0,) * 6, sgl=(0x5A, 0), fctype=None):
        self.cid = (self.cid + 1) & 0xFFFF
        q = bytearray(64)
        q[0] = opc
        q[1] = 0x40                         # PSDT: SGL
        struct.pack_into("<H", q, 2, self.cid)
        if fctype is not None:
            q[4] = fctype
        else:
            struct.pack_into("<I", q, 4, nsid)
        struct.pack_into("<QIBBBB", q, 24, 0, sgl[1], 0, 0, 0, sgl[0])
        for i, v in enumerate(cdw):
            struct.pack_into("<I", q, 40 + 4 * i, v & 0xFFFFFFFF)
        return q

    def cmd(self, q, wdata=b"", rlen=0, inline=True, h2c_split=None, expect_r2t=None):
        """Sends SQE q; returns (status, dw0, dw1, data)."""
        cid = struct.unpack_from("<H", q, 2)[0]
        if wdata and inline:
            struct.pack_into("<QIBBBB", q, 24, 0, len(wdata), 0, 0, 0, 0x01)
            self.pdu(4, bytes(q), wdata)
        else:
            n = len(wdata) or rlen
            struct.pack_into("<QIBBBB", q, 24, 0, n, 0, 0, 0, 0x5A)
            self.pdu(4, bytes(q))
        got = b""
        while True:
            typ, flags, hdr, data = self.recv_pdu()
            if typ == 9:                     # R2T
                cccid, ttag, r2to, r2tl = struct.unpack_from("<HHII", hdr, 8)
                assert cccid == cid and r2to == 0 and r2tl == len(wdata), (cccid, r2to, r2tl)
                step = h2c_split or r2tl
                off = 0
                while off < r2tl:
                    n = min(step, r2tl - off)
                    last = 4 if off + n == r2tl else 0
                    self.pdu(6, struct.pack("<HHIII", cid, ttag, off, n, 0), wdata[off:off + n],
                             flags=last)
                    off += n
                continue
            if typ == 7:                     # C2HData
                cccid, _, datao, datal = struct.unpack_from("<HHII", hdr, 8)
                assert cccid == cid and datao == len(got) and datal == len(data)
                got += data
                if flags & 8:
                    assert flags & 4, "SUCCESS without LAST_PDU"
                    return 0, 0, 0, got
                continue
            assert typ == 5, "unexpected PDU type %d" % typ
            dw0, dw1, sqhd, sqid, rcid, st = struct.unpack_from("<IIHHHH", hdr, 8)
            assert rcid == cid, (rcid, cid)
            return st >> 1, dw0, dw1, got

    def connect(self, nqn, qid=0, cntlid=0xFFFF, hostnqn=HOSTNQN, hostid=HOSTID, kato=0,
                sqsize=31, cattr=0):
        d = bytearray(1024)
        d[0:16] = hostid
        struct.pack_into("<H", d, 16, cntlid)
        d[256:256 + len(nqn)] = nqn.encode()
        d[512:512 + len(hostnqn)] = hostnqn.encode()
        q = self.sqe(0x7F, fctype=1)
        struct.pack_into("<HHHBBI", q, 40, 0, qid, sqsize, cattr, 0, kato)
        return self.cmd(q, bytes(d))

    def prop_get(self, ofst, wide=False):
        q = self.sqe(0x7F, fctype=4)
        q[40] = 1 if wide else 0
        struct.pack_into("<I", q, 44, ofst)
        st, dw0, dw1, _ = self.cmd(q)
        assert st == 0, hex(st)
        return dw0 | dw1 << 32

    def prop_set(self, ofst, v):
        q = self.sqe(0x7F, fctype=0)
        struct.pack_into("<IQ", q, 44, ofst, v)
        st, _, _, _ = self.cmd(q)
        assert st == 0, hex(st)


def admin(nqn=NQN, hd=False, dd=False, hostnqn=HOSTNQN, hostid=HOSTID, kato=0):
    a = Queue(hd, dd)
    st, dw0, _, _ = a.connect(nqn, hostnqn=hostnqn, hostid=hostid, kato=kato)
    assert st == 0, "admin Connect status %#x" % st
    cntlid = dw0 & 0xFFFF
    cap = a.prop_get(0, True)
    assert cap & 0xFFFF == 127 and (cap >> 37) & 1, hex(cap)
    a.prop_set(0x14, 0x460000)
    a.prop_set(0x14, 0x460001)
    assert a.prop_get(0x1C) & 1 == 1
    assert a.prop_get(0x08) == 0x20000
    return a, cntlid


def identify(a, cns, nsid=0):
    st, _, _, d = a.cmd(a.sqe(0x06, nsid, (cns,)), rlen=4096)
    assert st == 0 and len(d) == 4096, hex(st)
    return d


def io_queue(cntlid, qid=1, hd=False, dd=False, hostnqn=HOSTNQN, hostid=HOSTID, cattr=0):
    q = Queue(hd, dd)
    st, dw0, _, _ = q.connect(NQN, qid=qid, cntlid=cntlid, hostnqn=hostnqn, hostid=hostid,
                              sqsize=127, cattr=cattr)
    assert st == 0, "I/O Connect status %#x" % st
    return q


def write(q, lba, data, inline=True, split=None):
    st, _, _, _ = q.cmd(q.sqe(0x01, 1, (lba, 0, len(data) // 512 - 1)), data, inline=inline,
                        h2c_split=split)
    return st


def read(q, lba, nbytes):
    st, _, _, d = q.cmd(q.sqe(0x02, 1, (lba, 0, nbytes // 512 - 1)), rlen=nbytes)
    assert st == 0, "read status %#x" % st
    assert len(d) == nbytes
    return d


def pattern(seed, n):
    return bytes((seed * 131 + i * 7) & 0xFF for i in range(n))


def check_io(q, seed):
    d = pattern(seed, 4096)
    assert write(q, 8, d) == 0
    assert read(q, 8, 4096) == d


def expect_term(q, fes, what):
    """The target answers with a C2HTermReq carrying @fes and closes."""
    try:
        typ, flags, hdr, data = q.recv_pdu()
    except Closed:
        raise AssertionError("%s: closed without a C2HTermReq" % what)
    assert typ == 3, "%s: PDU type %d instead of C2HTermReq" % (what, typ)
    got = struct.unpack_from("<H", hdr, 8)[0]
    assert got == fes, "%s: FES %d, want %d" % (what, got, fes)
    expect_closed(q, what)


def expect_closed(q, what):
    try:
        while True:
            q.recv_pdu()
    except Closed:
        pass
    except (ConnectionResetError, socket.timeout):
        pass
    q.close()


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
