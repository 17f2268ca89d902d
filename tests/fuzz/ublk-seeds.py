#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# ublk-seeds.py DIR: writes seed inputs for fuzz-ublk-iod into DIR: 4 bytes
# of set-up (see tests/fuzz/fuzz-ublk-iod.c), then struct ubsrv_io_desc
# records as the kernel writes them (op_flags, nr_sectors, start_sector,
# addr; little-endian): every op and flag the server knows, valid and
# refused, on 512-byte and 4 KiB-sector disks, writable and read-only.
import os
import struct
import sys

READ, WRITE, FLUSH, DISCARD, WRITE_SAME, WRITE_ZEROES = 0, 1, 2, 3, 4, 5
ZONE_OPEN, ZONE_APPEND, REPORT_ZONES = 10, 13, 18
FAILFAST = 7 << 8
META, FUA, NOUNMAP, SWAP = 1 << 11, 1 << 13, 1 << 15, 1 << 16
U64 = (1 << 64) - 1


def cfg(shift=9, dev_ro=False, disk_ro=False, max_io_pages=16, sectors=256):
    return bytes([(shift - 9) | dev_ro << 2 | disk_ro << 3, max_io_pages - 1, sectors - 1, 0])


def iod(op, nr, start, flags=0, addr=0x7f0000001000):
    return struct.pack("<IIQQ", op | flags, nr, start, addr)


everything = [
    iod(WRITE, 8, 0), iod(READ, 8, 0), iod(WRITE, 16, 100, FUA), iod(READ, 24, 96),
    iod(FLUSH, 0, 0), iod(DISCARD, 8, 100), iod(READ, 16, 100),
    iod(WRITE_ZEROES, 4, 0, NOUNMAP | FUA), iod(WRITE_ZEROES, 4, 4), iod(READ, 8, 0),
    iod(WRITE, 1, 255, META | FAILFAST | SWAP), iod(READ, 1, 255),
]
refused = [
    iod(READ, 1, 256), iod(WRITE, 8, 250), iod(READ, 0, 0), iod(READ, 129, 0),
    iod(WRITE, 0xffffffff, 0), iod(READ, 8, U64), iod(WRITE, 8, U64 - 7),
    iod(DISCARD, 0xffffffff, 8), iod(WRITE_ZEROES, 8, 1 << 63), iod(DISCARD, 8, U64 - 3),
    iod(WRITE_SAME, 8, 0), iod(ZONE_OPEN, 0, 0), iod(ZONE_APPEND, 8, 0),
    iod(REPORT_ZONES, 4, 0), iod(0xff, 8, 0, 0xffffff00), iod(FLUSH, 0xffffffff, U64),
]
four_k = [
    iod(WRITE, 8, 16), iod(READ, 24, 8), iod(READ, 8, 3), iod(WRITE, 9, 8),
    iod(DISCARD, 8, 8), iod(WRITE_ZEROES, 1, 8), iod(READ, 8, U64 - 7),
]
seeds = {
    "512": cfg() + b"".join(everything),
    "512-refused": cfg() + b"".join(refused),
    "4k": cfg(12, max_io_pages=64, sectors=32) + b"".join(four_k + everything[:4]),
    "2k": cfg(11, sectors=64) + b"".join(four_k),
    "dev-ro": cfg(dev_ro=True) + b"".join(everything),
    "disk-ro": cfg(disk_ro=True) + b"".join(everything),
    "tiny": cfg(max_io_pages=1, sectors=1) + b"".join([iod(WRITE, 1, 0), iod(READ, 8, 0),
                                                      iod(READ, 9, 0), iod(READ, 1, 1)]),
}
os.makedirs(sys.argv[1], exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(data)
