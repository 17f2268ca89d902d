#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nbd-client-seeds.py DIR: writes seed inputs for fuzz-nbd-client into DIR:
# a header (the export the scripted server offers) and a program of replies
# to the requests the harness makes (the format is in fuzz-nbd-client.c),
# valid and not: every chunk type, errors, short and odd block-status
# answers, replies split at a small maximum payload, 4 KiB sectors, simple
# replies only, EXPORT_NAME, reconnects, and the raw mode (a whole server
# transcript, from the greeting on).
import os
import struct
import sys

HAS_FLAGS, READ_ONLY, FLUSH, FUA, TRIM, ZEROES, DF, CACHE, FAST_ZERO = \
    1, 2, 4, 8, 32, 64, 128, 1024, 2048
ALL = HAS_FLAGS | FLUSH | FUA | TRIM | ZEROES | DF | CACHE | FAST_ZERO
RAW, NO_SR, NO_META, NO_BLOCK_SIZE, NO_GO, META_OTHER, OPEN_RO = 1, 2, 4, 8, 16, 32, 64
READ, WRITE, FLUSH_CMD, TRIM_CMD, CACHE_CMD, ZERO_CMD, BS = 0, 1, 3, 4, 5, 6, 7
DONE = 1
HOLE, ZERO = 1, 2
CTX = 7


def header(mode=0, tflags=ALL, size=1 << 20, bmin=512, pref=4096, bmax=1 << 20, ctx=CTX):
    return struct.pack(">BHQIIII", mode, tflags, size, bmin, pref, bmax, ctx)


# ---- ops ----
def ok():
    return b"\x07"


def simple(err):
    return b"\x00" + struct.pack(">I", err)


def data(rel=0, length=0xffffffff, flags=DONE, fill=0x11):
    return b"\x01" + struct.pack(">BIIB", flags, rel, length, fill)


def hole(rel, length, flags=DONE):
    return b"\x02" + struct.pack(">BII", flags, rel, length)


def status(pairs, flags=DONE, idx=0):
    out = b"\x03" + struct.pack(">BIB", flags, idx, len(pairs))
    return out + b"".join(struct.pack(">II", ln, fl) for ln, fl in pairs)


def chunk(ctype, payload, flags=DONE):
    return b"\x04" + struct.pack(">BHH", flags, ctype, len(payload)) + payload


def none():
    return chunk(0, b"")


def error(err, msg=b"", offset=None, flags=DONE):
    if offset is None:
        return chunk(0x8001, struct.pack(">IH", err, len(msg)) + msg, flags)
    return chunk(0x8002, struct.pack(">IH", err, len(msg)) + msg + struct.pack(">Q", offset), flags)


def raw(b):
    return b"\x05" + struct.pack(">H", len(b)) + b


def close():
    return b"\x06"


# ---- the harness's requests (fz_drive), as the server sees them ----
def requests(size=1 << 20, sec=512, bmax=1 << 20, tflags=ALL, bs=True, ro=False):
    nsec = size // sec
    run = min(nsec, 8)
    maxp = min(bmax, 32 << 20) // sec * sec or sec

    def rw(t, sector, count):
        off, ln = sector * sec, count * sec
        return [(t, off + d, min(maxp, ln - d)) for d in range(0, ln, maxp)]

    out = rw(READ, 0, run)
    if bs:
        out.append((BS, 0, min(nsec, 1 << 20) * sec))
    if not ro:
        out += rw(WRITE, nsec - run, run)
    out += rw(READ, 0, run)
    if bs:
        out.append((BS, nsec // 2 * sec, (nsec - nsec // 2) * sec))
    if not ro:
        if tflags & ZEROES:
            out.append((ZERO_CMD, 0, run * sec))
        else:
            out += rw(WRITE, 0, run)                    # emulated with writes
        if tflags & TRIM:
            out.append((TRIM_CMD, 0, run * sec))
        if tflags & FLUSH:
            out.append((FLUSH_CMD, 0, 0))
    if tflags & CACHE:
        out.append((CACHE_CMD, 0, run * sec))
    for i in range(3):
        s = (i * run) % nsec
        if s + run > nsec:
            s = 0
        out += rw(READ, s, run)
    if bs:
        out.append((BS, 0, nsec * sec))
    return out


def good_reply(req, pattern=0):
    """A valid structured reply, in one of a few shapes."""
    t, off, ln = req
    if t == READ:
        if pattern == 1 and ln >= 1024:
            return data(0, 512, 0, 0x22) + hole(512, 512, 0) + data(1024, ln - 1024, DONE, 0x33)
        if pattern == 2:
            return hole(0, ln, 0) + none()
        return data(fill=0x11 + (off >> 9) % 200)
    if t == BS:
        if pattern == 1:
            return status([(4096, 0)])                  # fewer extents than asked
        if pattern == 2:
            return status([(512, 0), (1536, ZERO), (0, 0), (2048, HOLE | ZERO),
                           (ln, HOLE), (ln, 0)], 0) + none()
        q = ln // 4
        return status([(q, 0), (q, ZERO), (q, HOLE | ZERO), (ln - 3 * q + 4096, HOLE)])
    if pattern == 1:
        return none()
    return ok()


def session(reqs, pattern=0):
    return b"".join(good_reply(r, pattern) for r in reqs)


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    reqs = requests()
    seeds = {
        "good": header() + session(reqs),
        "shapes": header() + session(reqs, 1),
        "holes": header() + session(reqs, 2),
        "small-payload": header(pref=512, bmax=1024) + session(requests(bmax=1024)),
        "sector-4k": header(bmin=4096, pref=65536, size=4 << 20) +
        session(requests(size=4 << 20, sec=4096), 1),
        "read-only": header(tflags=ALL | READ_ONLY) + session(requests(ro=True)),
        "export-name": header(mode=NO_GO | NO_BLOCK_SIZE) + session(reqs),
        "no-meta": header(mode=NO_META) + session(requests(bs=False)),
        "meta-other": header(mode=META_OTHER) + session(requests(bs=False)),
        "simple-only": header(mode=NO_SR) + b"".join(ok() for _ in requests(bs=False)),
        "no-flags": header(tflags=HAS_FLAGS, size=1 << 20) +
        session(requests(tflags=HAS_FLAGS)),
        "odd-size": header(size=(1 << 20) + 100, bmin=1) + session(reqs),
    }
    # Errors: remote errors of every kind, as simple replies and chunks.
    errs = [5, 1, 28, 75, 95, 108, 22, 12, 0x7fffffff]
    prog = b""
    for i, r in enumerate(reqs):
        e = errs[i % len(errs)]
        if r[0] == READ:
            prog += error(e, b"bad sector", r[1] + 512) if i % 2 else error(e, b"nope")
        elif r[0] == BS:
            prog += status([(512, 0)], 0) + error(e)
        else:
            prog += simple(e)
    seeds["errors"] = header() + prog
    # Protocol violations: data past the request, a chunk for a read that
    # is not one, a wrong context id, odd block-status payloads, a simple
    # reply to a read, an unknown chunk type, duplicated status chunks.
    bad = [
        data(4096, 4096),
        status([(4096, 0)], DONE, 1),
        chunk(5, struct.pack(">I", CTX) + b"\x00\x00\x10\x00\x00\x00\x00"),
        ok(),
        status([(4096, ZERO)], 0) + status([(4096, 0), (4096, ZERO)]),
        chunk(0x4242, b"xyz") + none(),
        hole(0, 0xffffffff, DONE),
        chunk(1, struct.pack(">Q", 0)),
    ]
    prog = b""
    for i, r in enumerate(reqs):
        prog += bad[i % len(bad)] if i % 2 == 0 else good_reply(r)
    seeds["violations"] = header() + prog
    # The server goes away twice (the request it was reading fails); the
    # client reconnects and goes on.
    prog = session(reqs[:3]) + close() + session(reqs[4:7]) + close() + session(reqs[8:])
    seeds["reconnect"] = header() + prog
    # Garbage instead of a reply (the client must drop the connection).
    seeds["garbage"] = header() + session(reqs[:2]) + \
        raw(struct.pack(">IHHQI", 0x668e33ef, 1, 5, 99, 12) + b"\x00" * 12) + session(reqs)
    seeds["empty"] = b""
    # A chunk header (not DONE) sent raw, then a simple error reply that
    # the client takes as that chunk's data: it waits for more, the server
    # for a request (the harness's stall check closes the connection).
    seeds["stall"] = header() + raw(struct.pack(">IHHQIQ", 0x668e33ef, 0, 1, 1, 24, 0)) + \
        simple(5) + session(reqs[1:])
    # Reads whose successful replies do not cover them: one short chunk,
    # and overlapping chunks (past findings: stale buffer bytes).
    seeds["read-short"] = header() + data(0, 512) + session(reqs[1:])
    seeds["read-overlap"] = header() + data(0, 2048, 0, 0x77) + data(0, 2048, DONE, 0x78) + \
        session(reqs[1:])

    # Raw mode: the whole server side of a session, from the greeting.
    def optrep(opt, typ, payload=b""):
        return struct.pack(">QIII", 0x0003e889045565a9, opt, typ, len(payload)) + payload
    tr = struct.pack(">QQH", 0x4e42444d41474943, 0x49484156454F5054, 3)
    tr += optrep(8, 1)                                          # structured replies
    tr += optrep(10, 4, struct.pack(">I", CTX) + b"base:allocation") + optrep(10, 1)
    tr += optrep(7, 3, struct.pack(">HQH", 0, 1 << 20, ALL))
    tr += optrep(7, 3, struct.pack(">HIII", 3, 512, 4096, 1 << 20)) + optrep(7, 1)

    def sreply(cookie, flags, ctype, payload):
        return struct.pack(">IHHQI", 0x668e33ef, flags, ctype, cookie, len(payload)) + payload
    tr += sreply(1, DONE, 1, struct.pack(">Q", 0) + b"\x44" * 4096)
    tr += sreply(2, DONE, 5, struct.pack(">IIIII", CTX, 4096, 0, 4096, ZERO))
    seeds["raw"] = header(mode=RAW) + tr
    for name, blob in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(blob)


main()
