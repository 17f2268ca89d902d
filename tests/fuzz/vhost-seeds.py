#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# vhost-seeds.py DIR: writes seed inputs for fuzz-vhost-ring into DIR: 4
# bytes of set-up (see tests/fuzz/fuzz-vhost-ring.c), then region 1 of the
# guest's memory from gpa 0x20000: a descriptor table, an avail ring and
# the requests' headers and data, as a Linux virtio_blk driver lays them
# out (direct and indirect chains, every request type, good and bad), and
# as virtio_scsi does on its request, control and event queues.
import os
import struct
import sys

R1 = 0x20000
DESC, AVAIL, FREE = R1, R1 + 0x400, R1 + 0x1000
NEXT, WRITE, INDIRECT = 1, 2, 4
IN, OUT, FLUSH, GET_ID, DISCARD, WZ = 0, 1, 4, 8, 11, 13


class Guest:
    def __init__(self, k=2, event_idx=True, indirect=True, sec4k=False, ro=False, scsi_vq=None,
                 eject=False):
        self.qsize = 4 << k
        if scsi_vq is None:
            self.cfg = bytes([k | event_idx << 3 | indirect << 4, sec4k, ro, 0])
        else:
            self.cfg = bytes([k | event_idx << 3 | indirect << 4, sec4k | 2,
                              scsi_vq << 1 | eject << 3, 0])
        self.mem = bytearray(0x3000)
        self.free = FREE
        self.desc = 0
        self.heads = []

    def alloc(self, data):
        gpa = self.free
        self.free += (len(data) + 15) & ~15
        off = gpa - R1
        self.mem[off:off + len(data)] = data
        return gpa

    def put_desc(self, table_gpa, i, addr, ln, flags, nxt):
        off = table_gpa - R1 + 16 * i
        self.mem[off:off + 16] = struct.pack("<QIHH", addr, ln, flags, nxt)

    def request(self, typ, sector, data=b"", data_out=True, indirect=False, status=True):
        parts = [(struct.pack("<IIQ", typ, 0, sector), False)]
        if data:
            parts.append((data, not data_out))
        if status:
            parts.append((b"\xee", True))
        self.chain(parts, indirect)

    def chain(self, parts, indirect=False):
        """parts: (bytes, device-writable) in order."""
        bufs = [(self.alloc(d), len(d), WRITE if w else 0) for d, w in parts]
        if indirect:
            table = self.alloc(bytes(16 * len(bufs)))
            for i, (a, ln, fl) in enumerate(bufs):
                self.put_desc(table, i, a, ln, fl | (NEXT if i + 1 < len(bufs) else 0), i + 1)
            head = self.desc
            self.put_desc(DESC, head, table, 16 * len(bufs), INDIRECT, 0)
            self.desc += 1
        else:
            head = self.desc
            for i, (a, ln, fl) in enumerate(bufs):
                last = i + 1 == len(bufs)
                self.put_desc(DESC, self.desc, a, ln, fl | (0 if last else NEXT), self.desc + 1)
                self.desc += 1
        self.heads.append(head)

    def bytes(self):
        off = AVAIL - R1
        self.mem[off:off + 4] = struct.pack("<HH", 0, len(self.heads))
        for i, h in enumerate(self.heads):
            self.mem[off + 4 + 2 * i:off + 6 + 2 * i] = struct.pack("<H", h)
        return self.cfg + bytes(self.mem)


def seg(sector, num, flags=0):
    return struct.pack("<QII", sector, num, flags)


def scsi_lun(lun, target=0):
    return bytes([1, target, 0x40 | lun >> 8, lun & 0xff, 0, 0, 0, 0])


def scsi_cmd(lun, cdb, tag=1):
    return scsi_lun(lun) + struct.pack("<QBBB", tag, 0, 0, 0) + cdb.ljust(32, b"\0")


SCSI_RESP = bytes(108)


def scsi_seeds():
    seeds = []
    g = Guest(k=3, scsi_vq=2)
    g.chain([(scsi_cmd(0, b"\x12\0\0\0\x60\0"), False), (SCSI_RESP, True), (bytes(96), True)])
    g.chain([(scsi_cmd(0, bytes([0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0])), False),
             (b"\x5a" * 4096, False), (SCSI_RESP, True)], indirect=True)
    g.chain([(scsi_cmd(0, bytes([0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])), False), (SCSI_RESP, True),
             (bytes(4096), True)])
    g.chain([(scsi_cmd(1, bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])), False), (SCSI_RESP, True),
             (bytes(2048), True)])
    g.chain([(scsi_cmd(0, b"\0" * 6), False), (SCSI_RESP, True)])
    g.chain([(scsi_cmd(0, bytes([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])), False),
             (SCSI_RESP, True), (bytes(256), True)])
    g.chain([(scsi_lun(0, 5) + bytes(43), False), (SCSI_RESP, True)])
    seeds.append(g)
    g = Guest(k=2, scsi_vq=0)
    for tmf in (5, 0, 4, 6):
        g.chain([(struct.pack("<II", 0, tmf) + scsi_lun(0) + struct.pack("<Q", 1), False),
                 (bytes(1), True)])
    g.chain([(struct.pack("<I", 1) + scsi_lun(1) + struct.pack("<I", 1 << 4), False),
             (bytes(8), True)])
    g.chain([(struct.pack("<I", 2) + scsi_lun(1) + struct.pack("<I", 1 << 4), False),
             (bytes(8), True)])
    seeds.append(g)
    g = Guest(k=1, scsi_vq=1, eject=True)
    for _ in range(4):
        g.chain([(bytes(16), True)])
    seeds.append(g)
    return seeds


def main(d):
    seeds = scsi_seeds()
    g = Guest()
    g.request(OUT, 8, b"\x5a" * 4096)
    g.request(IN, 8, bytes(4096), data_out=False)
    g.request(FLUSH, 0)
    seeds.append(g)
    g = Guest(k=3)
    g.request(OUT, 0, b"\x11" * 1024, indirect=True)
    g.request(IN, 0, bytes(1024), data_out=False, indirect=True)
    g.request(GET_ID, 0, bytes(20), data_out=False, indirect=True)
    g.request(DISCARD, 0, seg(0, 8), indirect=True)
    g.request(WZ, 0, seg(8, 8, 1), indirect=True)
    seeds.append(g)
    g = Guest(sec4k=True, ro=True)
    g.request(OUT, 8, b"\x22" * 4096)
    g.request(IN, 1, bytes(4096), data_out=False)
    g.request(IN, 8, bytes(512), data_out=True)
    g.request(OUT, 0, b"\x33" * 512, status=False)
    seeds.append(g)
    g = Guest(event_idx=False, indirect=False)
    g.request(IN, 600, bytes(512), data_out=False)
    g.request(99, 0)
    g.request(WZ, 0, seg(0, 8, 2))
    seeds.append(g)
    # Several DISCARD / WRITE_ZEROES segments in one request, one of them
    # past the end or with an unknown flag.
    g = Guest(k=3)
    g.request(DISCARD, 0, seg(0, 8) + seg(64, 8) + seg(16, 8), indirect=True)
    g.request(WZ, 0, seg(8, 8, 1) + seg(32, 8), indirect=True)
    g.request(DISCARD, 0, seg(0, 8) + seg(1 << 40, 8), indirect=True)
    g.request(DISCARD, 0, seg(0, 8) + seg(8, 8, 4), indirect=True)
    seeds.append(g)
    os.makedirs(d, exist_ok=True)
    for i, g in enumerate(seeds):
        with open(os.path.join(d, "ring%d" % i), "wb") as f:
            f.write(g.bytes())


main(sys.argv[1])
