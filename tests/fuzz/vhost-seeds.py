#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# vhost-seeds.py DIR: writes seed inputs for fuzz-vhost-ring into DIR: 4
# bytes of set-up (see tests/fuzz/fuzz-vhost-ring.c), then region 1 of the
# guest's memory from gpa 0x20000: a descriptor table, an avail ring and
# the requests' headers and data, as a Linux virtio_blk driver lays them
# out (direct and indirect chains, every request type, good and bad).
import os
import struct
import sys

R1 = 0x20000
DESC, AVAIL, FREE = R1, R1 + 0x400, R1 + 0x1000
NEXT, WRITE, INDIRECT = 1, 2, 4
IN, OUT, FLUSH, GET_ID, DISCARD, WZ = 0, 1, 4, 8, 11, 13


class Guest:
    def __init__(self, k=2, event_idx=True, indirect=True, sec4k=False, ro=False):
        self.qsize = 4 << k
        self.cfg = bytes([k | event_idx << 3 | indirect << 4, sec4k, ro, 0])
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
        bufs = [(self.alloc(struct.pack("<IIQ", typ, 0, sector)), 16, 0)]
        if data:
            bufs.append((self.alloc(data), len(data), 0 if data_out else WRITE))
        if status:
            bufs.append((self.alloc(b"\xee"), 1, WRITE))
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


def main(d):
    seeds = []
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
    os.makedirs(d, exist_ok=True)
    for i, g in enumerate(seeds):
        with open(os.path.join(d, "ring%d" % i), "wb") as f:
            f.write(g.bytes())


main(sys.argv[1])
