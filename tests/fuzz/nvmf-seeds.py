#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nvmf-seeds.py DIR: writes seed inputs for fuzz-nvmf-pdu into DIR: one
# set-up byte (bit 0/1: header/data digests after the ICReq), then PDUs as
# the Linux nvme-tcp host sends them (NVMe/TCP transport spec 1.0): ICReq,
# admin Connect with its 1024 data bytes in the capsule, Property Get/Set,
# Identify, an in-capsule write, a write by H2CData, with and without
# digests, and malformed ones.
import os
import struct
import sys


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def icreq(dgst):
    p = bytearray(128)
    struct.pack_into("<BBBBI", p, 0, 0, 0, 128, 0, 128)
    p[11] = dgst
    return bytes(p)


def pdu(typ, rest, data=b"", hd=False, dd=False, flags=0):
    hlen = 8 + len(rest)
    h4 = 4 if hd else 0
    if data:
        pdo = hlen + h4
        plen = pdo + len(data) + (4 if dd else 0)
    else:
        pdo, plen = 0, hlen + h4
    fl = flags | (1 if hd else 0) | (2 if dd and data else 0)
    h = struct.pack("<BBBBI", typ, fl, hlen, pdo, plen) + rest
    out = h + (struct.pack("<I", crc32c(h)) if hd else b"")
    if data:
        out += data + (struct.pack("<I", crc32c(data)) if dd else b"")
    return out


def sqe(opc, cid, nsid=0, cdw=(), sgl_id=0x5A, sgl_len=0, fctype=None):
    q = bytearray(64)
    q[0] = opc
    q[1] = 0x40
    struct.pack_into("<H", q, 2, cid)
    if fctype is not None:
        q[4] = fctype
    else:
        struct.pack_into("<I", q, 4, nsid)
    struct.pack_into("<QIBBBB", q, 24, 0, sgl_len, 0, 0, 0, sgl_id)
    for i, v in enumerate(cdw):
        struct.pack_into("<I", q, 40 + 4 * i, v)
    return bytes(q)


def connect(hd, dd, qid=0):
    d = bytearray(1024)
    d[0:16] = bytes(range(16))
    struct.pack_into("<H", d, 16, 0xFFFF if qid == 0 else 1)
    n = b"nqn.2026-12.org.diskstack:fuzz"
    h = b"nqn.2014-08.org.nvmexpress:uuid:69570000-0000-0000-0000-000000000001"
    d[256:256 + len(n)] = n
    d[512:512 + len(h)] = h
    q = bytearray(sqe(0x7F, 1, sgl_id=0x01, sgl_len=1024, fctype=1))
    struct.pack_into("<HHHBBI", q, 40, 0, qid, 31, 0, 0, 5000)
    return pdu(4, bytes(q), bytes(d), hd, dd)


def session(hd, dd):
    s = icreq((1 if hd else 0) | (2 if dd else 0)) + connect(hd, dd)
    pg = bytearray(sqe(0x7F, 2, fctype=4))
    pg[40] = 1
    s += pdu(4, bytes(pg), hd=hd)
    ps = bytearray(sqe(0x7F, 3, fctype=0))
    struct.pack_into("<IQ", ps, 44, 0x14, 0x460001)
    s += pdu(4, bytes(ps), hd=hd)
    s += pdu(4, sqe(0x06, 4, cdw=(1,), sgl_len=4096), hd=hd)
    s += pdu(4, sqe(0x01, 5, 1, (0, 0, 7), 0x01, 4096), bytes([0xa5]) * 4096, hd, dd)
    s += pdu(4, sqe(0x01, 6, 1, (8, 0, 127), 0x5A, 65536), hd=hd)
    s += pdu(6, struct.pack("<HHIII", 6, 0, 0, 32768, 0), bytes(32768), hd, dd)
    s += pdu(6, struct.pack("<HHIII", 6, 0, 32768, 32768, 0), bytes(32768), hd, dd, flags=4)
    return s


seeds = {
    "plain": b"\0" + session(False, False),
    "digests": b"\x03" + session(True, True),
    "hdgst": b"\x01" + session(True, False),
    "ioq": b"\0" + icreq(0) + connect(False, False, qid=1),
    "term": b"\0" + icreq(0) + struct.pack("<BBBBI", 2, 0, 24, 0, 24 + 8) + bytes(24),
    "before-ic": b"\0" + pdu(4, sqe(0x06, 1)),
    "bad-hlen": b"\0" + icreq(0) + struct.pack("<BBBBI", 4, 0, 80, 0, 80) + bytes(72),
    "c2h-from-host": b"\0" + icreq(0) + pdu(7, bytes(16)),
    "bad-pfv": b"\0" + icreq(0)[:8] + b"\x01" + icreq(0)[9:],
}
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for name, b in seeds.items():
    with open(os.path.join(d, name), "wb") as f:
        f.write(b)
