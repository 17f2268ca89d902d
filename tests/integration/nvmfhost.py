# SPDX-License-Identifier: MIT
# nvmfhost.py: a raw-socket NVMe/TCP host (NVMe/TCP transport spec 1.0,
# NVMe over Fabrics 1.1) for the integration tests (nvmf-raw.py,
# test-error-nvmf.py): PDUs with optional digests, SQEs with SGLs, Connect,
# Property Get/Set, Identify, Read/Write, and the checks the tests share.
# target(port, nqn) names the subsystem first.
import socket
import struct

PORT = None
NQN = None


def target(port, nqn):
    """Every later connection goes to 127.0.0.1:@port, subsystem @nqn."""
    global PORT, NQN
    PORT, NQN = port, nqn


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


def admin(nqn=None, hd=False, dd=False, hostnqn=HOSTNQN, hostid=HOSTID, kato=0):
    a = Queue(hd, dd)
    st, dw0, _, _ = a.connect(nqn or NQN, hostnqn=hostnqn, hostid=hostid, kato=kato)
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


def write(q, lba, data, inline=True, split=None, nsid=1):
    st, _, _, _ = q.cmd(q.sqe(0x01, nsid, (lba, 0, len(data) // 512 - 1)), data, inline=inline,
                        h2c_split=split)
    return st


def read_status(q, lba, nbytes, nsid=1):
    """Reads; returns (status, data) without judging the status."""
    st, _, _, d = q.cmd(q.sqe(0x02, nsid, (lba, 0, nbytes // 512 - 1)), rlen=nbytes)
    return st, d


def read(q, lba, nbytes, nsid=1):
    st, d = read_status(q, lba, nbytes, nsid)
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
