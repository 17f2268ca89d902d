#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nbd-seeds.py DIR: writes seed inputs for fuzz-nbd-server into DIR: whole
# client byte streams (handshake, options, requests) that exercise every
# option, command and flag the server knows, for the fuzzer to mutate.
import os
import struct
import sys

OPT_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513
FIXED, NO_ZEROES = 1, 2
EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO, SR, LIST_META, SET_META = 1, 2, 3, 5, 6, 7, 8, 9, 10
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZERO, BLOCK_STATUS = range(8)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def opt(code, data=b""):
    return struct.pack(">QII", OPT_MAGIC, code, len(data)) + data


def name_infos(name, infos=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + \
        b"".join(struct.pack(">H", i) for i in infos)


def meta(name, queries):
    n = name.encode()
    out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        out += struct.pack(">I", len(q)) + q.encode()
    return out


cookie = 0


def req(cmd, off, length, flags=0, payload=b""):
    global cookie
    cookie += 1
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + payload


def session_requests():
    return b"".join([
        req(WRITE, 0, 4096, 0, b"\xab" * 4096),
        req(READ, 0, 4096, DF),
        req(READ, 4096, 8192),
        req(WRITE, 8192, 512, FUA, b"\x01" * 512),
        req(BLOCK_STATUS, 0, 1 << 20),
        req(BLOCK_STATUS, 0, 65536, REQ_ONE),
        req(TRIM, 0, 4096),
        req(ZERO, 4096, 4096, NO_HOLE),
        req(ZERO, 65536, 65536, FAST_ZERO),
        req(CACHE, 0, 65536),
        req(FLUSH, 0, 0),
        req(READ, (1 << 20) - 512, 1024),     # past the end
        req(READ, 1, 512),                    # unaligned
        req(99, 0, 0),                        # unknown command
        req(DISC, 0, 0),
    ])


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    flags = struct.pack(">I", FIXED | NO_ZEROES)
    seeds = {
        "go-sr-meta": flags + opt(SR) +
        opt(SET_META, meta("", ["base:allocation", "diskstack:layer"])) +
        opt(GO, name_infos("", (0, 1, 2, 3))) + session_requests(),
        "go-simple": flags + opt(GO, name_infos("")) + session_requests(),
        "export-name-ro": struct.pack(">I", FIXED) + opt(EXPORT_NAME, b"ro") +
        req(WRITE, 0, 512, 0, b"\x00" * 512) + req(READ, 0, 512) + req(DISC, 0, 0),
        "options": flags + opt(LIST) + opt(INFO, name_infos("ro", (0, 1, 2, 3))) +
        opt(LIST_META, meta("", ["base:"])) + opt(LIST_META, meta("", [])) +
        opt(SR) + opt(LIST_META, meta("", ["diskstack:"])) + opt(STARTTLS) +
        opt(INFO, name_infos("missing")) + opt(77, b"xyz") + opt(ABORT),
        "meta-before-sr": flags + opt(SET_META, meta("", ["base:allocation"])) +
        opt(GO, name_infos("nope")) + opt(GO, name_infos("ro")) +
        req(BLOCK_STATUS, 0, 4096) + req(READ, 0, 4096, DF) + req(DISC, 0, 0),
        "empty": b"",
        "bad-magic": flags + struct.pack(">QII", 0x1234, GO, 0),
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


main()
