#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nvme-seeds.py DIR: writes seed inputs for fuzz-nvme-cmd into DIR: a
# set-up byte, then commands (flags, buffer length, 64-byte SQE, data;
# see tests/fuzz/fuzz-nvme-cmd.c): the Linux host's bring-up sequence
# (Identify CNS 01h/06h/02h/03h/00h, Set Features 07h/0Bh, AER, log
# pages), reads and writes, the NVM commands, features, reservations
# between two hosts, and resize with a held AER.
import os
import struct
import sys

ADMIN, NODATA, RESIZE, RESET, FAULT = 2, 4, 8, 0x10, 0x20


def sqe(opc, nsid=0, cdw=(0, 0, 0, 0, 0, 0), cid=1):
    b = bytearray(64)
    b[0] = opc
    struct.pack_into("<HI", b, 2, cid, nsid)
    struct.pack_into("<6I", b, 40, *cdw)
    return bytes(b)


def cmd(q, flags=0, length=0, data=b"", ctrl=0):
    return struct.pack("<BH", flags | ctrl, length) + q + data[:64]


def admin(opc, nsid=0, cdw=(0, 0, 0, 0, 0, 0), length=4096, data=b"", ctrl=0, flags=0):
    return cmd(sqe(opc, nsid, cdw), ADMIN | flags, length, data, ctrl)


def io(opc, nsid=1, slba=0, nlb=1, cdw12=0, length=512, data=b"", ctrl=0, flags=0, cdw=None):
    c = cdw or (slba & 0xffffffff, slba >> 32, ((nlb - 1) & 0xffff) | cdw12, 0, 0, 0)
    return cmd(sqe(opc, nsid, c), flags, length, data, ctrl)


def log(lid, nsid=0xffffffff, numd=1023, rae=0, lpo=0):
    return admin(0x02, nsid, (lid | rae << 15 | (numd & 0xffff) << 16, numd >> 16, lpo, 0, 0, 0),
                 (numd + 1) * 4)


bringup = [admin(0x06, 0, (1, 0, 0, 0, 0, 0)), log(0x05), log(0x02, numd=127),
           admin(0x09, 0, (0x07, 0x00030003, 0, 0, 0, 0), 0, flags=NODATA),
           admin(0x09, 0, (0x0B, 0x100, 0, 0, 0, 0), 0, flags=NODATA),
           admin(0x0C, flags=NODATA, length=0),
           admin(0x06, 0, (6, 0, 0, 0, 0, 0)), admin(0x06, 0, (2, 0, 0, 0, 0, 0)),
           admin(0x06, 1, (3, 0, 0, 0, 0, 0)), admin(0x06, 1, (0, 0, 0, 0, 0, 0))]
key = lambda a, b=0: struct.pack("<QQ", a, b)
seeds = {
    "bringup": (0x00, bringup),
    "bringup-fabrics-4k": (0x05 | 0x08, bringup),
    "rw": (0x10, [io(0x01, 1, 0, 8, length=4096, data=b"\x11" * 64), io(0x02, 1, 0, 8, length=4096),
                  io(0x01, 1, 500, 12, 1 << 30, length=6144), io(0x05, 1, 0, 8, length=4096),
                  io(0x02, 1, 511, 2, length=1024), io(0x00, length=0, flags=NODATA)]),
    "nvm": (0x00, [io(0x08, 1, 0, 64, 1 << 25, length=0, flags=NODATA),
                   io(0x09, 1, cdw=(1, 4, 0, 0, 0, 0), length=32,
                      data=struct.pack("<IIQIIQ", 0, 8, 0, 0, 4, 100)),
                   io(0x04, 1, 0, 1), io(0x02, 0xffffffff, 0, 1), io(0x01, 1, 0, 1, flags=FAULT)]),
    "ro": (0x02, [io(0x01, 1, 0, 1), io(0x08, 1, 0, 1, flags=NODATA, length=0),
                  io(0x09, 1, cdw=(0, 4, 0, 0, 0, 0), length=16, data=struct.pack("<IIQ", 0, 1, 0))]),
    "features": (0x00, [admin(0x0A, 0, (f, 0, 0, 0, 0, 0), 16) for f in (1, 2, 4, 5, 6, 7, 8, 9, 0xB, 0xE, 0xF, 0x81)]
                 + [admin(0x0A, 1, (0x82, 0, 0, 0, 0, 0)), admin(0x0A, 1, (0x83, 0, 0, 0, 0, 0)),
                    admin(0x09, 0, (0x0E, 0, 0, 0, 0, 0), 8, b"\x01" * 8),
                    admin(0x09, 0, (0x81, 1, 0, 0, 0, 0), 16, b"\x42" * 16),
                    admin(0x09, 0, (0x0F, 5000, 0, 0, 0, 0), 0, flags=NODATA),
                    admin(0x0A, 0, (0x301, 0, 0, 0, 0, 0), 0, flags=NODATA)]),
    "logs": (0x00, [log(l) for l in (0, 1, 2, 3, 4, 5, 0x80, 0x70)] + [log(3, lpo=8, numd=1), log(4, rae=1)]),
    "resv": (0x04, [io(0x0D, 1, cdw=(0, 0, 0, 0, 0, 0), length=16, data=key(0, 0xaaaa)),
                    io(0x11, 1, cdw=(1 << 8, 0, 0, 0, 0, 0), length=16, data=key(0xaaaa)),
                    io(0x0E, 1, cdw=(255, 1, 0, 0, 0, 0), length=1024),
                    io(0x01, 1, 0, 1, ctrl=1),
                    io(0x0D, 1, cdw=(0, 0, 0, 0, 0, 0), length=16, data=key(0, 0xbbbb), ctrl=1),
                    io(0x11, 1, cdw=(1 | 1 << 8, 0, 0, 0, 0, 0), length=16, data=key(0xbbbb, 0xaaaa), ctrl=1),
                    log(0x80), io(0x15, 1, cdw=(1, 0, 0, 0, 0, 0), length=8, data=key(0xbbbb)[:8], ctrl=1),
                    io(0x0E, 1, cdw=(255, 0, 0, 0, 0, 0), length=1024)]),
    "aer-resize": (0x00, [admin(0x09, 0, (0x0B, 0x100, 0, 0, 0, 0), 0, flags=NODATA),
                          admin(0x0C, flags=NODATA, length=0), admin(0x0C, flags=NODATA | RESIZE, length=0),
                          log(4), admin(0x08, 0, (1 << 16, 0, 0, 0, 0, 0), 0, flags=NODATA),
                          admin(0x0C, flags=NODATA | RESET, length=0)]),
    "attach": (0x08, [admin(0x15, 2, (1, 0, 0, 0, 0, 0), 4096, struct.pack("<HH", 1, 1)),
                      admin(0x06, 0, (0x13, 0, 0, 0, 0, 0)), admin(0x06, 2, (0x12, 0, 0, 0, 0, 0)),
                      admin(0x15, 2, (0, 0, 0, 0, 0, 0), 4096, struct.pack("<HH", 1, 1))]),
}
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for name, (cfg, cmds) in seeds.items():
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes([cfg]) + b"".join(cmds))
