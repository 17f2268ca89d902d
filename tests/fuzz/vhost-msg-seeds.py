#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# vhost-msg-seeds.py DIR: writes seed inputs for fuzz-vhost-msg into DIR:
# the message sequences QEMU 7.2 sends a vhost-user-blk back-end (realize,
# start with an inflight buffer and a memory table, a request in the
# ring, a kick, stop, restart, reset), in the record format described in
# tests/fuzz/fuzz-vhost-msg.c.
import os
import struct
import sys

(GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE) = (1, 2, 3, 4, 5)
(SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE) = (8, 9, 10, 11)
(SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR) = (12, 13, 14)
(GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_ENABLE) = (15, 16, 18)
(SET_BACKEND_REQ_FD, GET_CONFIG, SET_CONFIG) = (21, 24, 25)
(GET_INFLIGHT_FD, SET_INFLIGHT_FD, RESET_DEVICE, GET_MAX_MEM_SLOTS) = (31, 32, 34, 36)
WRITE_MEM, KICK = 0xfe, 0xff
NEED_REPLY = 8
UVA = 0x7f0000000000
QSIZE = 128
FEATURES = (1 << 32) | (1 << 28) | (1 << 29) | (1 << 30) | (1 << 9) | (1 << 13) | (1 << 14)
PROTO = (1 << 0) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 12)


def rec(req, payload=b"", flags=0, nfds=0, memfd=False, mem_units=0):
    return bytes([req, flags, nfds | (8 if memfd else 0), mem_units]) + \
        struct.pack("<H", len(payload)) + payload


def u64(v):
    return struct.pack("<Q", v)


def state(i, n):
    return struct.pack("<II", i, n)


def ring(q):
    return 0x10000 + q * 0x4000


def realize():
    out = rec(GET_FEATURES) + rec(GET_PROTOCOL_FEATURES)
    out += rec(SET_PROTOCOL_FEATURES, u64(PROTO))
    out += rec(SET_BACKEND_REQ_FD, flags=NEED_REPLY, nfds=1)
    out += rec(SET_OWNER) + rec(GET_FEATURES)
    for q in range(2):
        out += rec(SET_VRING_CALL, u64(q), nfds=1) + rec(SET_VRING_ERR, u64(q), nfds=1)
    out += rec(GET_CONFIG, struct.pack("<III", 0, 60, 0) + bytes(60))
    return out


def start(inflight=True, mem_units=15, region_bytes=1 << 20, features=FEATURES):
    out = rec(SET_FEATURES, u64(features))
    if inflight:
        out += rec(GET_INFLIGHT_FD, struct.pack("<QQHH4x", 0, 0, 2, QSIZE))
        out += rec(SET_INFLIGHT_FD, struct.pack("<QQHH4x", 2 * 2112, 0, 2, QSIZE),
                   nfds=1, memfd=True, mem_units=0)
    out += rec(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
               struct.pack("<QQQQ", 0, region_bytes, UVA, 0),
               flags=NEED_REPLY, nfds=1, memfd=True, mem_units=mem_units)
    for q in range(2):
        out += rec(SET_VRING_NUM, state(q, QSIZE)) + rec(SET_VRING_BASE, state(q, 0))
        out += rec(SET_VRING_ADDR, struct.pack("<IIQQQQ", q, 0, UVA + ring(q),
                                               UVA + ring(q) + 0x1000, UVA + ring(q) + 0x800, 0))
        out += rec(SET_VRING_KICK, u64(q), nfds=1)
        out += rec(SET_VRING_ENABLE, state(q, 1))
    return out


def write_mem(off, data):
    return rec(WRITE_MEM, struct.pack("<I", off) + data)


def request(q, typ=0, sector=0, data_len=4096, indirect=False):
    hdr, data, st = 0x40000 + q * 0x8000, 0x41000 + q * 0x8000, 0x43000 + q * 0x8000
    wr = 2 if typ in (0, 8) else 0
    descs = [(hdr, 16, 1, 1), (data, data_len, 1 | wr, 2), (st, 1, 2, 0)]
    out = write_mem(hdr, struct.pack("<IIQ", typ, 0, sector))
    if indirect:
        table = 0x44000 + q * 0x8000
        out += write_mem(table, b"".join(struct.pack("<QIHH", *d) for d in descs))
        out += write_mem(ring(q), struct.pack("<QIHH", table, 48, 4, 0))
    else:
        out += write_mem(ring(q), b"".join(struct.pack("<QIHH", *d) for d in descs))
    out += write_mem(ring(q) + 0x800, struct.pack("<HHH", 0, 1, 0))
    return out + rec(KICK)


def stop():
    out = b""
    for q in range(2):
        out += rec(SET_VRING_ENABLE, state(q, 0)) + rec(GET_VRING_BASE, state(q, 0))
    return out


def main():
    d = sys.argv[1]
    seeds = {
        "session": realize() + start() + request(0) + request(1, typ=1) + stop(),
        "indirect": realize() + start() + request(0, indirect=True) + stop(),
        "restart": realize() + start() + request(0) + stop() + start() + request(1) + stop(),
        "reset": realize() + start() + request(0) + rec(RESET_DEVICE) + start() + stop(),
        "no-inflight": realize() + start(inflight=False) + request(0, typ=4, data_len=0),
        "legacy": rec(GET_FEATURES) + rec(SET_FEATURES, u64(FEATURES & ~(1 << 30))) +
        start(inflight=False, features=FEATURES & ~(1 << 30)) + request(0),
        "config": realize() + rec(SET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4)) +
        rec(GET_MAX_MEM_SLOTS) + rec(RESET_OWNER),
    }
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


main()
