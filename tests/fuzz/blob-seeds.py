#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# blob-seeds.py DIR: writes seed inputs for fuzz-blob (8 bytes of plan, then
# the server's replies separated by "#NEXT#"; see tests/fuzz/fuzz-blob.c)
# and for fuzz-blob-reply (4 bytes of range, then header lines) into
# DIR/blob and DIR/blob-reply: well-formed HEAD and ranged-GET exchanges
# for flat and vhd1 blobs, redirects, and the misbehaviours the backend
# must refuse, for the fuzzer to mutate.
import os
import struct
import sys

SEP = b"#NEXT#"
MIB = 1 << 20


def plan(vhd1=False, piece=1, retries=0, reads=((0, 8), (0, 0), (0, 0)), layout=0):
    """piece: 512 << 3*piece bytes; reads: (where, len) bytes of fuzz-blob."""
    p = bytes([int(vhd1) | piece << 1 | retries << 3])
    for w, n in reads:
        p += bytes([w, n])
    return p + bytes([layout])


def head(length, extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nAccept-Ranges: bytes\r\n"
            b"ETag: \"5f-1\"\r\nLast-Modified: Tue, 01 Oct 2024 10:00:00 GMT\r\n" % length
            + extra + b"\r\n")


def part(total=b"*"):
    return (b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes $R/" + total +
            b"\r\nContent-Length: $N\r\n\r\n$D")


def redirect(code, to):
    return b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n" % (code, to)


def vhd_footer(size):
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQ", f, 8, 2, 0x00010000, 0xffffffffffffffff)
    struct.pack_into(">QQ", f, 40, size, size)
    struct.pack_into(">I", f, 60, 2)
    f[68:84] = bytes(range(0xa0, 0xb0))
    struct.pack_into(">I", f, 64, (~sum(f)) & 0xffffffff)
    return bytes(f)


def session(p, *replies):
    return p + SEP.join(replies)


# A read of 8 sectors in 4 KiB pieces takes one GET.
gets = [part()] * 3
seeds = {
    "flat": session(plan(), head(MIB), *gets),
    "flat-3reads": session(plan(reads=((0, 8), (1 | 4 << 2, 4), (2 | 32 << 2, 16)), layout=3),
                           head(MIB), *([part(b"1048576")] * 6)),
    "flat-small-pieces": session(plan(piece=0, reads=((0, 4), (0, 0), (0, 0)), layout=2),
                                 head(MIB), *([part()] * 4)),
    "flat-past-end": session(plan(reads=((3, 7), (1, 8), (0, 0))), head(4096), *gets),
    "vhd1": session(plan(vhd1=True, reads=((0, 8), (1 | 8 << 2, 8), (0, 0))),
                    head(MIB + 512),
                    b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 1048576-1049087/1049088"
                    b"\r\nContent-Length: 512\r\n\r\n" + vhd_footer(MIB),
                    *gets),
    "vhd1-short-footer": session(plan(vhd1=True), head(MIB + 512),
                                 b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes $R/*\r\n"
                                 b"Content-Length: 100\r\n\r\n" + vhd_footer(MIB)[:100]),
    "redirect-relative": session(plan(), redirect(302, b"/moved/disk.img"), head(MIB), *gets),
    "redirect-chain": session(plan(), redirect(301, b"http://other.test/a"),
                              redirect(307, b"http://third.test:8080/b?x=1"),
                              redirect(308, b"/c"), head(MIB), *gets),
    "redirect-ftp": session(plan(), redirect(302, b"ftp://files.test/disk.img")),
    "redirect-loop": session(plan(), *([redirect(302, b"/again")] * 7)),
    "redirect-no-location": session(plan(), b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n"),
    "head-404": session(plan(), b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    "head-no-length": session(plan(), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "head-503-retry": session(plan(retries=1),
                              b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
                              head(MIB), *gets),
    "get-200-at-0": session(plan(), head(MIB),
                            b"HTTP/1.1 200 OK\r\nContent-Length: $N\r\n\r\n$D", *gets),
    "get-200-not-at-0": session(plan(reads=((8, 8), (0, 0), (0, 0))), head(MIB),
                                b"HTTP/1.1 200 OK\r\nContent-Length: $N\r\n\r\n$D"),
    "get-long-body": session(plan(), head(MIB),
                             b"HTTP/1.1 200 OK\r\nContent-Length: 8192\r\n\r\n$D$D"),
    "get-short-body": session(plan(retries=1), head(MIB),
                              b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes $R/*\r\n"
                              b"Content-Length: $N\r\n\r\nshort", *gets),
    "get-wrong-range": session(plan(), head(MIB),
                               b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/*\r\n"
                               b"Content-Length: 2\r\n\r\nab"),
    "get-no-range": session(plan(), head(MIB),
                            b"HTTP/1.1 206 Partial Content\r\nContent-Length: $N\r\n\r\n$D"),
    "get-416": session(plan(), head(MIB),
                       b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */10\r\n"
                       b"Content-Length: 0\r\n\r\n"),
    "get-chunked": session(plan(), head(MIB),
                           b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes $R/*\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n1000\r\n$D\r\n0\r\n\r\n"),
    "get-continue": session(plan(), head(MIB),
                            b"HTTP/1.1 100 Continue\r\n\r\n" + part()),
    "get-http10-close": session(plan(), head(MIB),
                                b"HTTP/1.0 206 Partial Content\r\nContent-Range: bytes $R/*\r\n"
                                b"Connection: close\r\n\r\n$D"),
    "get-500-retry": session(plan(retries=2), head(MIB),
                             b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", *gets),
}

reply_seeds = {
    "206": struct.pack("<HH", 2, 4095) + b"HTTP/1.1 206 Partial Content\r\n"
           b"Content-Range: bytes 1024-5119/1048576\r\nContent-Length: 4096\r\n\r\n",
    "206-star": struct.pack("<HH", 0, 511) + b"HTTP/1.1 206 Partial Content\r\n"
                b"content-range:\tbytes 0-511/*\r\n",
    "200-at-0": struct.pack("<HH", 0, 511) + b"HTTP/1.1 200 OK\r\nContent-Length: 512\r\n",
    "continue": struct.pack("<HH", 1, 0) + b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 512-512/513\r\n",
    "bad-total": struct.pack("<HH", 0, 511) + b"HTTP/1.1 206 Partial Content\r\n"
                 b"Content-Range: bytes 0-511/100\r\n",
    "no-newline": struct.pack("<HH", 0, 0) + b"HTTP/1.1 206",
}

out = sys.argv[1]
for sub, table in (("blob", seeds), ("blob-reply", reply_seeds)):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name, data in table.items():
        with open(os.path.join(out, sub, name), "wb") as f:
            f.write(data)
