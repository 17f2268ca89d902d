# SPDX-License-Identifier: MIT
"""iscsi-raw.py PORT TARGET: a raw-socket iSCSI initiator (RFC 7143) that
sends what real initiators do not: malformed PDUs, PDUs out of order, bad
digests, out-of-window CmdSNs, Data-Out nobody asked for, a bad DataSN,
mutual CHAP. Each case checks for a Reject or a clean close, and a session
opened first must keep working through all of it. Exits 1 on the first
failure. No check depends on time: "ignored" is shown by the next answer
being the one to a later PDU.
"""

import hashlib
import os
import socket
import struct
import time
import sys

PORT = int(sys.argv[1])
TARGET = sys.argv[2]
CHAP = sys.argv[3:5] if len(sys.argv) > 4 else None
CHAP_T = sys.argv[5:7] if len(sys.argv) > 6 else None


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def fail(msg):
    print("iscsi-raw: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def pad(n):
    return (4 - n % 4) % 4


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
        self.hd = False
        self.dd = False
        self.cmdsn = 1
        self.itt = 1
        self.isid = os.urandom(6)

    def send(self, bhs, data=b"", bad_hd=False, bad_dd=False, pieces=1, upto=None):
        """The PDU, its data in @pieces sends 0.2 s apart; only the first
        @upto bytes of it when @upto is given."""
        bhs = bytearray(bhs)
        bhs[5:8] = struct.pack(">I", len(data))[1:]
        out = bytes(bhs)
        if self.hd:
            d = crc32c(out) ^ (1 if bad_hd else 0)
            out += struct.pack("<I", d)
        if data:
            body = data + b"\0" * pad(len(data))
            out += body
            if self.dd:
                out += struct.pack("<I", crc32c(body) ^ (1 if bad_dd else 0))
        if upto is not None:
            out = out[:upto]
        step = max(1, (len(out) - 48) // pieces)
        self.s.sendall(out[:48 + step])
        for off in range(48 + step, len(out), step):
            time.sleep(0.2)
            self.s.sendall(out[off:off + step])

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv(self):
        """(bhs, data) or None at end of stream."""
        bhs = self.recv_exact(48)
        if bhs is None:
            return None
        ahs = bhs[4] * 4
        dlen = struct.unpack(">I", b"\0" + bhs[5:8])[0]
        rest = ahs + (4 if self.hd else 0)
        rest += dlen + pad(dlen) + (4 if self.dd and dlen else 0)
        body = self.recv_exact(rest) if rest else b""
        if body is None:
            return None
        off = ahs + (4 if self.hd else 0)
        return bhs, body[off:off + dlen]

    def closed(self):
        """True if the target closes the connection (after any PDUs)."""
        try:
            while True:
                if self.recv() is None:
                    return True
        except (ConnectionResetError, socket.timeout):
            return False

    def next_itt(self):
        self.itt += 1
        return self.itt

    def login(self, keys, csg=1, nsg=3, transit=True):
        data = b"".join(k.encode() + b"\0" for k in keys)
        bhs = bytearray(48)
        bhs[0] = 0x43
        bhs[1] = (0x80 if transit else 0) | (csg << 2) | nsg
        bhs[8:14] = self.isid
        bhs[16:20] = struct.pack(">I", 0x77)
        bhs[24:28] = struct.pack(">I", self.cmdsn)
        self.send(bhs, data)
        r = self.recv()
        if r is None:
            fail("connection closed during login")
        rbhs, rdata = r
        kv = dict(p.split("=", 1) for p in rdata.decode().split("\0") if p)
        return rbhs, kv

    def normal_login(self, extra=()):
        rbhs, kv = self.login(["InitiatorName=iqn.2026-12.org.diskstack:raw",
                               "TargetName=" + TARGET, "SessionType=Normal",
                               "InitialR2T=No", "ImmediateData=Yes"] + list(extra))
        if rbhs[36] != 0:
            fail("login refused: %d/%d" % (rbhs[36], rbhs[37]))
        self.expcmdsn = struct.unpack(">I", rbhs[28:32])[0]
        self.maxcmdsn = struct.unpack(">I", rbhs[32:36])[0]
        self.hd = kv.get("HeaderDigest") == "CRC32C"
        self.dd = kv.get("DataDigest") == "CRC32C"
        return kv

    def cmd(self, cdb, edtl=0, read=False, write=False, data=b"", final=True, imm=False,
            cmdsn=None, pieces=1, upto=None):
        bhs = bytearray(48)
        bhs[0] = 0x01 | (0x40 if imm else 0)
        bhs[1] = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
        itt = self.next_itt()
        bhs[16:20] = struct.pack(">I", itt)
        bhs[20:24] = struct.pack(">I", edtl)
        bhs[24:28] = struct.pack(">I", (self.cmdsn if cmdsn is None else cmdsn) & 0xffffffff)
        bhs[32:32 + len(cdb)] = cdb
        if cmdsn is None and not imm:
            self.cmdsn += 1
        self.send(bhs, data, pieces=pieces, upto=upto)
        return itt

    def nop(self, data=b"", bad_dd=False):
        bhs = bytearray(48)
        bhs[0] = 0x40          # immediate NOP-Out
        bhs[1] = 0x80
        itt = self.next_itt()
        bhs[16:20] = struct.pack(">I", itt)
        bhs[20:24] = b"\xff\xff\xff\xff"
        bhs[24:28] = struct.pack(">I", self.cmdsn)
        self.send(bhs, data, bad_dd=bad_dd)
        return itt

    def expect(self, what):
        r = self.recv()
        if r is None:
            fail("connection closed, expected " + what)
        return r

    def ping_ok(self):
        itt = self.nop(b"ping")
        while True:
            bhs, data = self.expect("NOP-In")
            if bhs[0] & 0x3f == 0x20 and struct.unpack(">I", bhs[16:20])[0] == itt:
                if data != b"ping":
                    fail("NOP-In did not echo the data")
                return

    def tur_good(self):
        itt = self.cmd(b"\x00" * 6)
        while True:
            bhs, data = self.expect("SCSI Response")
            if bhs[0] & 0x3f == 0x21 and struct.unpack(">I", bhs[16:20])[0] == itt:
                return bhs[3]


def expect_reject(c, reason, what):
    bhs, data = c.expect("Reject (%s)" % what)
    if bhs[0] & 0x3f != 0x3f:
        fail("%s: got opcode 0x%02x, expected Reject" % (what, bhs[0] & 0x3f))
    if bhs[2] != reason:
        fail("%s: Reject reason 0x%02x, expected 0x%02x" % (what, bhs[2], reason))
    if len(data) != 48:
        fail("%s: the Reject does not carry the header" % what)
    return data


def chap_cases():
    """Mutual CHAP against a server started with both credentials."""
    c = Conn()
    names = ["InitiatorName=iqn.2026-12.org.diskstack:raw", "TargetName=" + TARGET]
    rbhs, kv = c.login(names + ["AuthMethod=CHAP,None"], csg=0, nsg=1)
    if kv.get("AuthMethod") != "CHAP":
        fail("AuthMethod answered %r" % kv)
    rbhs, kv = c.login(["CHAP_A=5"], csg=0, nsg=1)
    cid = int(kv["CHAP_I"])
    chal = bytes.fromhex(kv["CHAP_C"][2:])
    resp = hashlib.md5(bytes([cid]) + CHAP[1].encode() + chal).hexdigest()
    mychal = os.urandom(16)
    rbhs, kv = c.login(["CHAP_N=" + CHAP[0], "CHAP_R=0x" + resp, "CHAP_I=7",
                        "CHAP_C=0x" + mychal.hex()], csg=0, nsg=1)
    if rbhs[36] != 0 or not rbhs[1] & 0x80:
        fail("mutual CHAP login refused: %d/%d" % (rbhs[36], rbhs[37]))
    want = hashlib.md5(bytes([7]) + CHAP_T[1].encode() + mychal).hexdigest()
    if kv.get("CHAP_N") != CHAP_T[0] or kv.get("CHAP_R", "").lower() != "0x" + want:
        fail("the target's CHAP answer is wrong: %r" % kv)
    c.s.close()
    # A reflected challenge is refused.
    c = Conn()
    c.login(names + ["AuthMethod=CHAP"], csg=0, nsg=1)
    rbhs, kv = c.login(["CHAP_A=5"], csg=0, nsg=1)
    cid = int(kv["CHAP_I"])
    chal = bytes.fromhex(kv["CHAP_C"][2:])
    resp = hashlib.md5(bytes([cid]) + CHAP[1].encode() + chal).hexdigest()
    rbhs, kv = c.login(["CHAP_N=" + CHAP[0], "CHAP_R=0x" + resp, "CHAP_I=7",
                        "CHAP_C=0x" + chal.hex()], csg=0, nsg=1)
    if rbhs[36] != 2 or rbhs[37] != 1:
        fail("a reflected CHAP challenge was accepted")
    c.s.close()



def response_to(c, itt, what):
    """The SCSI Response (or the status-carrying Data-In) ending @itt,
    with the data of its Data-Ins: (status, data)."""
    got = b""
    while True:
        bhs, data = c.expect(what)
        if struct.unpack(">I", bhs[16:20])[0] != itt:
            continue
        if bhs[0] & 0x3f == 0x25:
            got += data
            if bhs[1] & 0x01:
                return bhs[3], got
        elif bhs[0] & 0x3f == 0x21:
            return bhs[3], got


def big_data_out(c, itt, data, pieces):
    """An unsolicited Data-Out of @data (offset 0, F) sent in @pieces."""
    d = bytearray(48)
    d[0] = 0x05
    d[1] = 0x80
    d[5:8] = struct.pack(">I", len(data))[1:]
    d[16:20] = struct.pack(">I", itt)
    d[20:24] = b"\xff\xff\xff\xff"
    step = len(data) // pieces
    c.s.sendall(bytes(d) + data[:step])
    for i in range(1, pieces):
        time.sleep(0.2)
        c.s.sendall(data[i * step:(i + 1) * step if i < pieces - 1 else len(data)])


def big_data_out_cases():
    c = Conn()
    c.normal_login()
    for _ in range(3):      # past the unit attention of a new I_T nexus
        if c.tur_good() == 0:
            break
    itt = c.cmd(b"\x25" + b"\x00" * 9, edtl=8, read=True)   # READ CAPACITY(10)
    st, cap = response_to(c, itt, "READ CAPACITY(10) data")
    bs = struct.unpack(">I", cap[4:8])[0]
    size = 65536           # the RFC's default FirstBurstLength: all unsolicited
    blocks = size // bs
    data = bytes((i * 7) & 0xff for i in range(size))
    cdb = b"\x2a\x00" + struct.pack(">I", 0) + b"\x00" + struct.pack(">H", blocks) + b"\x00"
    itt = c.cmd(cdb, edtl=size, write=True, final=False)
    big_data_out(c, itt, data, 3)
    st, _ = response_to(c, itt, "SCSI Response to the 64 KiB WRITE")
    if st != 0:
        fail("a 64 KiB WRITE sent in pieces ended with status 0x%02x" % st)
    cdb = b"\x28\x00" + struct.pack(">I", 0) + b"\x00" + struct.pack(">H", blocks) + b"\x00"
    itt = c.cmd(cdb, edtl=size, read=True)
    st, back = response_to(c, itt, "Data-In of the 64 KiB READ")
    if st != 0 or back != data:
        fail("a 64 KiB WRITE sent in pieces did not read back (status 0x%02x)" % st)
    # All 64 KiB as immediate data, in pieces: the server receives a large
    # command's data in place and then the next header alone. A WRITE
    # whose data is a Data-Out, and a small command, follow at once.
    data2 = bytes((i * 13 + 1) & 0xff for i in range(size))
    wcdb = cdb.replace(b"\x28", b"\x2a", 1)
    itt = c.cmd(wcdb, edtl=size, write=True, data=data2, pieces=3)
    st, _ = response_to(c, itt, "SCSI Response to the 64 KiB immediate-data WRITE")
    if st != 0:
        fail("a 64 KiB immediate-data WRITE sent in pieces ended with status 0x%02x" % st)
    itt = c.cmd(cdb, edtl=size, read=True)
    st, back = response_to(c, itt, "Data-In of the 64 KiB READ")
    if st != 0 or back != data2:
        fail("a 64 KiB immediate-data WRITE did not read back (status 0x%02x)" % st)
    itt = c.cmd(wcdb, edtl=size, write=True, final=False)
    big_data_out(c, itt, data, 1)
    itt2 = c.cmd(b"\x00" * 6)
    st, _ = response_to(c, itt, "SCSI Response to the WRITE after the immediate-data one")
    if st != 0:
        fail("the WRITE after a large immediate-data WRITE ended with status 0x%02x" % st)
    st, _ = response_to(c, itt2, "TEST UNIT READY after the large PDUs")
    if st != 0:
        fail("TEST UNIT READY after the large PDUs ended with status 0x%02x" % st)
    itt = c.cmd(cdb, edtl=size, read=True)
    st, back = response_to(c, itt, "Data-In of the 64 KiB READ")
    if st != 0 or back != data:
        fail("the WRITE after the immediate-data WRITE did not read back (status 0x%02x)" % st)
    # Half a Data-Out, then the initiator goes away.
    itt = c.cmd(cdb.replace(b"\x28", b"\x2a", 1), edtl=size, write=True, final=False)
    d = bytearray(48)
    d[0] = 0x05
    d[1] = 0x80
    d[5:8] = struct.pack(">I", size)[1:]
    d[16:20] = struct.pack(">I", itt)
    d[20:24] = b"\xff\xff\xff\xff"
    c.s.sendall(bytes(d) + data[:size // 2])
    time.sleep(0.2)
    c.s.close()
    # Half the immediate data of a large WRITE, then the initiator goes away.
    c = Conn()
    c.normal_login()
    c.cmd(wcdb, edtl=size, write=True, data=data2, upto=48 + size // 2)
    time.sleep(0.2)
    c.s.close()


def main():
    if CHAP:
        chap_cases()
        print("iscsi-raw: CHAP cases passed")
        return
    # The session that must survive everything below.
    keeper = Conn()
    keeper.normal_login()
    while keeper.tur_good() != 0:
        pass                    # the unit attention after login

    # An unknown opcode: Reject "command not supported", connection kept.
    c = Conn()
    c.normal_login()
    bad = bytearray(48)
    bad[0] = 0x1f
    bad[16:20] = struct.pack(">I", 5)
    c.send(bad)
    expect_reject(c, 0x05, "unknown opcode")
    c.ping_ok()

    # Data-Out for a Target Transfer Tag nobody handed out.
    d = bytearray(48)
    d[0] = 0x05
    d[1] = 0x80
    d[16:20] = struct.pack(">I", 99)
    d[20:24] = struct.pack(">I", 0x12345)
    c.send(d, b"x" * 512)
    expect_reject(c, 0x09, "Data-Out for an unknown TTT")
    c.ping_ok()

    # CmdSN beyond MaxCmdSN: ignored (the next answer is the ping's).
    c.cmd(b"\x00" * 6, cmdsn=c.cmdsn + 100000)
    c.ping_ok()
    # CmdSN below ExpCmdSN: ignored too.
    c.cmd(b"\x00" * 6, cmdsn=c.cmdsn - 5)
    c.ping_ok()

    # A WRITE(10) of 2 blocks whose second Data-Out has a wrong DataSN
    # (InitialR2T=No: unsolicited data) must not end GOOD.
    cdb = b"\x2a\x00" + struct.pack(">I", 8) + b"\x00" + struct.pack(">H", 2) + b"\x00"
    itt = c.cmd(cdb, edtl=1024, write=True, final=False)
    for sn, off, fin in ((0, 0, 0), (5, 512, 0x80)):
        d = bytearray(48)
        d[0] = 0x05
        d[1] = fin
        d[16:20] = struct.pack(">I", itt)
        d[20:24] = b"\xff\xff\xff\xff"
        d[36:40] = struct.pack(">I", sn)
        d[40:44] = struct.pack(">I", off)
        c.send(d, b"y" * 512)
    while True:
        bhs, data = c.expect("SCSI Response to the bad-DataSN WRITE")
        if bhs[0] & 0x3f == 0x21 and struct.unpack(">I", bhs[16:20])[0] == itt:
            if bhs[3] == 0:
                fail("a WRITE with a wrong DataSN ended GOOD")
            break

    # Login PDU in the full-feature phase: Reject, connection kept.
    lg = bytearray(48)
    lg[0] = 0x43
    lg[1] = 0x87
    c.send(lg)
    expect_reject(c, 0x04, "Login Request after login")
    c.ping_ok()

    # DataSegmentLength over what the target declared: Reject, then close.
    big = bytearray(48)
    big[0] = 0x40
    big[1] = 0x80
    big[5:8] = b"\xff\xff\xff"
    c.s.sendall(bytes(big))
    expect_reject(c, 0x04, "huge DataSegmentLength")
    if not c.closed():
        fail("the connection stayed open after a huge DataSegmentLength")

    # Something other than a Login Request first: login refused, closed.
    c = Conn()
    c.cmd(b"\x00" * 6)
    bhs, data = c.expect("Login Response")
    if bhs[0] & 0x3f != 0x23 or bhs[36] != 2:
        fail("a SCSI Command before login was not refused with status class 2")
    if not c.closed():
        fail("the connection stayed open after a PDU before login")

    # A truncated header, then the peer goes away.
    c = Conn()
    c.s.sendall(b"\x43\x87" + b"\0" * 18)
    c.s.close()

    # Digests: a data digest error gets Reject (reason 2) and the
    # connection goes on; a header digest error closes it.
    c = Conn()
    kv = c.normal_login(["HeaderDigest=CRC32C", "DataDigest=CRC32C"])
    if not (c.hd and c.dd):
        fail("digests not negotiated: %r" % kv)
    c.nop(b"abcdef", bad_dd=True)
    expect_reject(c, 0x02, "data digest error")
    c.ping_ok()
    nop = bytearray(48)
    nop[0] = 0x40
    nop[1] = 0x80
    nop[16:20] = struct.pack(">I", 1234)
    nop[20:24] = b"\xff\xff\xff\xff"
    c.send(nop, bad_hd=True)
    if not c.closed():
        fail("the connection stayed open after a header digest error")

    # Marker keys are answered Reject, unknown keys NotUnderstood.
    c = Conn()
    kv = c.normal_login(["IFMarker=No", "OFMarkInt=2048", "X-org.example.Foo=1"])
    if kv.get("IFMarker") != "Reject" or kv.get("OFMarkInt") != "Reject" or \
            kv.get("X-org.example.Foo") != "NotUnderstood":
        fail("marker/unknown keys answered %r" % kv)
    if kv.get("MaxRecvDataSegmentLength") != "262144":
        fail("the target did not declare MaxRecvDataSegmentLength=262144: %r" % kv)
    c.s.close()

    # Large Data-Out segments are received straight into the command's
    # buffer (server.c): one that arrives in two pieces must land whole,
    # and a connection that goes in the middle of one must not hurt.
    big_data_out_cases()

    # The first session saw none of it.
    keeper.ping_ok()
    if keeper.tur_good() != 0:
        fail("the first session's TEST UNIT READY failed")
    print("iscsi-raw: all cases passed")


main()
