#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nvme-pci-seeds.py DIR: writes seed inputs for fuzz-nvme-pci into DIR
# (the operation script of tests/fuzz/fuzz-nvme-pci.c): bring-up and
# Identify, I/O queue creation and reads/writes with PRP1/PRP2, a PRP
# list and an SGL, queue deletion, a reset with commands queued, bad
# doorbells, MSI-X masking.
import os
import struct
import sys

ASQ, ACQ, DATA, LIST, CQ1, SQ1 = 0x10000, 0x20000, 0x30000, 0x38000, 0x40000, 0x50000


def bar0(off, val):
    return struct.pack("<BHI", 0, off, val)


def bar4(off, val):
    return struct.pack("<BHI", 1, off, val)


def mem(addr, data):
    out = b""
    while data:
        chunk, data = data[:64], data[64:]
        out += struct.pack("<B", 3) + struct.pack("<I", addr)[:3] + bytes([len(chunk)]) + chunk
        addr += len(chunk)
    return out


def run(n=31):
    return bytes([4, n])


def read(off):
    return struct.pack("<BH", 5, off)


BRINGUP = bytes([6])


def sqe(opc, cid, nsid=0, prp1=0, prp2=0, cdw=(0, 0, 0, 0, 0, 0), psdt=0):
    b = bytearray(64)
    b[0] = opc
    b[1] = psdt << 6
    struct.pack_into("<HI", b, 2, cid, nsid)
    struct.pack_into("<QQ", b, 24, prp1, prp2)
    struct.pack_into("<6I", b, 40, *cdw)
    return bytes(b)


def admin(slot, q):
    return mem(ASQ + 64 * slot, q) + bar0(0x1000, slot + 1) + run()


def io(slot, q):
    return mem(SQ1 + 64 * slot, q) + bar0(0x1008, slot + 1) + run()


def queues():
    return (admin(0, sqe(0x09, 1, cdw=(7, 0, 0, 0, 0, 0))) +
            admin(1, sqe(0x05, 2, prp1=CQ1, cdw=(15 << 16 | 1, 1 << 16 | 3, 0, 0, 0, 0))) +
            admin(2, sqe(0x01, 3, prp1=SQ1, cdw=(15 << 16 | 1, 1 << 16 | 1, 0, 0, 0, 0))))


def main(d):
    os.makedirs(d, exist_ok=True)
    seeds = {
        "identify": BRINGUP + run() + read(0x1c) + admin(0, sqe(0x06, 1, prp1=DATA, cdw=(1, 0, 0, 0, 0, 0))),
        "rw-prp2": BRINGUP + queues() +
            io(0, sqe(0x01, 1, 1, DATA + 512, DATA + 4096, (0, 0, 15, 0, 0, 0))) +
            io(1, sqe(0x02, 2, 1, DATA, DATA + 4096, (0, 0, 15, 0, 0, 0))),
        "rw-list": BRINGUP + queues() +
            mem(LIST + 4096 - 16, struct.pack("<QQ", DATA + 0x1000, LIST + 0x1000)) +
            mem(LIST + 0x1000, struct.pack("<QQ", DATA + 0x2000, DATA + 0x3000)) +
            io(0, sqe(0x02, 1, 1, DATA + 8, LIST + 4096 - 16, (0, 0, 31, 0, 0, 0))),
        "sgl": BRINGUP + queues() +
            mem(LIST, struct.pack("<QIxxxB", DATA, 2048, 0) + struct.pack("<QIxxxB", LIST + 64, 16, 0x30)) +
            mem(LIST + 64, struct.pack("<QIxxxB", DATA + 8192, 2048, 0)) +
            io(0, sqe(0x01, 1, 1, LIST, 32 | 0x20 << 56, (0, 0, 7, 0, 0, 0), psdt=1)),
        "delete": BRINGUP + queues() + io(0, sqe(0x00, 1, 1)) +
            admin(3, sqe(0x00, 4, cdw=(1, 0, 0, 0, 0, 0))) + admin(4, sqe(0x04, 5, cdw=(1, 0, 0, 0, 0, 0))),
        "reset": BRINGUP + queues() + mem(SQ1, sqe(0x01, 1, 1, DATA, 0, (0, 0, 7, 0, 0, 0)) * 8) +
            bar0(0x1008, 8) + bar0(0x14, 0) + run() + read(0x1c) + BRINGUP + run(),
        "bad-doorbell": BRINGUP + queues() + bar0(0x1008, 200) + read(0x1c) + bar0(0x100c, 17),
        "msix-mask": BRINGUP + queues() + bar4(16 + 12, 1) + io(0, sqe(0x00, 1, 1)) + bar4(16 + 12, 0),
        "aer-feature": BRINGUP + admin(0, sqe(0x09, 1, cdw=(0x0b, 0x100, 0, 0, 0, 0))) +
            admin(1, sqe(0x0c, 2)) + admin(2, sqe(0x09, 3, cdw=(0x08, 0xff03, 0, 0, 0, 0))),
        "shutdown": BRINGUP + run() + bar0(0x14, 0x00464001) + read(0x1c),
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes([1]) + data)
        with open(os.path.join(d, name + "-copy"), "wb") as f:
            f.write(bytes([0]) + data)


if __name__ == "__main__":
    main(sys.argv[1])
