#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# scsi-seeds.py DIR: writes seed inputs for fuzz-scsi-cdb into DIR: a
# set-up byte, then commands (flags, CDB length, transfer length, CDB,
# data-out; see tests/fuzz/fuzz-scsi-cdb.c): every SPC command of the core
# with valid and invalid fields, the SBC data commands, PR IN/OUT, from
# two nexuses, on the LUNs the target has and has not.
import os
import struct
import sys

NONE, IN, OUT = 0, 1, 2


def cmd(cdb, dir=NONE, xfer=0, data=b"", nexus=0, lun=0, reset=False, relogin=False):
    flags = nexus | lun << 1 | dir << 3 | reset << 5 | relogin << 6
    return struct.pack("<BBH", flags, len(cdb), xfer) + bytes(cdb) + data


TUR = cmd([0, 0, 0, 0, 0, 0])
INQ = cmd([0x12, 0, 0, 0, 255, 0], IN, 255)
login = [TUR, cmd([0x03, 0, 0, 0, 18, 0], IN, 18), INQ]
mode_page_caching = bytes([0x08, 0x12, 0x04] + [0] * 17)
mode_page_control = bytes([0x0A, 0x0A, 0, 0x10, 0x08, 0x40, 0, 0, 0xff, 0xff, 0, 0])
sel = bytes([0, 0, 0, 8]) + struct.pack(">II", 0, 512) + mode_page_caching + mode_page_control
seeds = {
    "login": login,
    "inquiry": login + [cmd([0x12, 1, p, 0, 255, 0], IN, 255) for p in (0, 0x80, 0x83, 0xB0, 0xB1, 0xB2, 0x42)]
    + [cmd([0x12, 2, 0, 0, 36, 0], IN, 36), cmd([0x12, 0, 0, 0, 5, 0], IN, 3)],
    "absent": [cmd([0x12, 0, 0, 0, 96, 0], IN, 96, lun=2), cmd([0, 0, 0, 0, 0, 0], lun=2),
               cmd([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], IN, 256, lun=3),
               cmd([0x03, 0, 0, 0, 18, 0], IN, 18, lun=2)],
    "report-luns": [cmd([0xA0, 0, s, 0, 0, 0, 0, 0, 1, 0, 0, 0], IN, 256) for s in (0, 1, 2, 3)],
    "mode": login + [cmd([0x1A, dbd, pc << 6 | 0x3f, 0, 255, 0], IN, 255) for dbd in (0, 8) for pc in range(4)]
    + [cmd([0x5A, 0x10, 0x3f, 0, 0, 0, 0, 1, 0, 0], IN, 256),
       cmd([0x15, 0x10, 0, 0, len(sel), 0], OUT, len(sel), sel),
       cmd([0x15, 0x11, 0, 0, len(sel), 0], OUT, len(sel), sel),
       cmd([0x55, 0x10, 0, 0, 0, 0, 0, 0, 40, 0], OUT, 40, bytes(8) + mode_page_caching + bytes(12)),
       TUR, cmd(TUR[4:], nexus=1)],
    "rsoc": login + [cmd([0xA3, 0x0C, r, op, 0, sa, 0, 0, 0x10, 0, 0, 0], IN, 4096)
                     for (r, op, sa) in ((0, 0, 0), (0x80, 0, 0), (1, 0x12, 0), (2, 0x5E, 3), (3, 0xA3, 0x0C), (1, 0x5E, 0))],
    "reserve": login + [cmd([0x16, 0, 0, 0, 0, 0]), cmd([0x16, 0, 0, 0, 0, 0], nexus=1),
                        cmd([0x1A, 0, 0x3f, 0, 255, 0], IN, 255, nexus=1), cmd([0x17, 0, 0, 0, 0, 0], nexus=1),
                        cmd([0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]), cmd([0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                        cmd([0x16, 0, 0, 0, 0, 0], relogin=True), cmd([0x16, 0, 0, 0, 0, 0], reset=True)],
    "prevent": login + [cmd([0x1E, 0, 0, 0, 1, 0]), cmd([0x1B, 0, 0, 0, 2, 0]), cmd([0x1E, 0, 0, 0, 0, 0]),
                        cmd([0x1B, 0, 0, 0, 2, 0]), TUR, cmd([0x1B, 1, 0, 0, 3, 0]), cmd([0x1B, 0, 0, 0, 0x20, 0]),
                        cmd([0x1B, 0, 0, 0, 0, 0])],
    "pr": login + [cmd([0x5E, sa, 0, 0, 0, 0, 0, 0, 255, 0], IN, 255) for sa in range(5)]
    + [cmd([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0], OUT, 24, struct.pack(">QQ", 0, 0x1234) + bytes(8)),
       cmd([0x5F, 1, 1, 0, 0, 0, 0, 0, 24, 0], OUT, 24, struct.pack(">QQ", 0x1234, 0) + bytes(8))],
    "sbc": login + [cmd([0x25] + [0] * 9, IN, 8), cmd([0x9E, 0x10] + [0] * 11 + [32, 0, 0], IN, 32),
                    cmd([0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0], OUT, 512, b"\x55" * 512),
                    cmd([0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0], IN, 512),
                    cmd([0x35] + [0] * 9), cmd([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], OUT, 24,
                                               struct.pack(">HH4xQI4x", 22, 16, 8, 8)),
                    cmd([0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0], OUT, 1024, bytes(1024))],
}
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for cfg in (0, 1, 2, 4, 8 | 4):
    for name, cmds in seeds.items():
        with open(os.path.join(d, "%s-%d" % (name, cfg)), "wb") as f:
            f.write(bytes([cfg]) + b"".join(cmds))
