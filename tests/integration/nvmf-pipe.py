#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# nvmf-pipe.py PORT NQN FILE1 FILE2 PID: Reads that the NVMe/TCP target answers
# through a pipe (a file's pages spliced into the socket, nvmf/server.c)
# from a raw-socket host: namespaces 1 and 2 are buffered files (FILE1 and
# FILE2, on different filesystems, so both the inline and the io_uring
# splice of the file backend run). Large Reads at page-aligned and
# unaligned offsets, more at once than a connection has pipes, one past
# the end, one with SQ flow control off (SUCCESS, no response capsule),
# interleaved with small Reads and Writes on the same queue, every byte
# compared with the file and with what was written; then the same with
# data digests (the buffer path), and the files themselves compared. The
# server (PID) must hold pipes while the first queue is open: the cases
# cannot pass on the buffer path alone.
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nvmfhost  # noqa: E402
from nvmfhost import admin, io_queue, pattern, read, read_status, write  # noqa: E402

PORT = int(sys.argv[1])
NQN = sys.argv[2]
FILES = {1: sys.argv[3], 2: sys.argv[4]}
PID = int(sys.argv[5])
nvmfhost.target(PORT, NQN)
cases = 0
MIB = 1 << 20


def ok(name):
    global cases
    cases += 1
    print("ok %d - %s" % (cases, name))


def file_bytes(nsid, off, n):
    with open(FILES[nsid], "rb") as f:
        f.seek(off)
        return f.read(n)


def pipe_ends():
    n = 0
    for f in os.listdir("/proc/%d/fd" % PID):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (PID, f)).startswith("pipe:")
        except FileNotFoundError:
            pass
    return n


def reads_at_once(q, nsid, reqs):
    """Sends every Read of reqs [(lba, nbytes)] before taking any answer;
    returns {cid: (status, data)} keyed like the list's order."""
    cids = []
    for lba, n in reqs:
        s = q.sqe(0x02, nsid, (lba, 0, n // 512 - 1))
        struct.pack_into("<QIBBBB", s, 24, 0, n, 0, 0, 0, 0x5A)
        q.pdu(4, bytes(s))
        cids.append(struct.unpack_from("<H", s, 2)[0])
    got = {c: b"" for c in cids}
    done = {}
    while len(done) < len(cids):
        typ, flags, hdr, data = q.recv_pdu()
        if typ == 7:
            cccid, _, datao, datal = struct.unpack_from("<HHII", hdr, 8)
            assert cccid in got and datao == len(got[cccid]) and datal == len(data)
            got[cccid] += data
            continue
        assert typ == 5, "unexpected PDU type %d" % typ
        st, rcid = struct.unpack_from("<H", hdr, 22)[0] >> 1, struct.unpack_from("<H", hdr, 20)[0]
        done[rcid] = (st, got[rcid])
    return [done[c] for c in cids]


a, cntlid = admin(kato=0)
st, _, _, _ = a.cmd(a.sqe(0x09, 0, (0x07, 0x00040004)))
assert st == 0, hex(st)
q = io_queue(cntlid, 1)
for nsid in (1, 2):
    size = os.path.getsize(FILES[nsid])
    # Page-aligned and not (LBA 1 starts 512 bytes into a page), 64 KiB to
    # the 1 MiB MDTS, each compared with the file.
    for lba, n in ((0, MIB), (1, MIB), (2048 + 7, 64 * 1024), (4096 + 3, 192 * 1024 + 512)):
        assert read(q, lba, n, nsid) == file_bytes(nsid, lba * 512, n), (nsid, lba, n)
    ok("ns %d: Reads of 64 KiB to 1 MiB, aligned and unaligned, match the file" % nsid)

    # More at once than a connection has pipes (8): the rest take memory.
    reqs = [((i * 2048 + i) % (size // 512 - 2048), MIB) for i in range(12)]
    for (lba, n), (st, d) in zip(reqs, reads_at_once(q, nsid, reqs)):
        assert st == 0 and d == file_bytes(nsid, lba * 512, n), (nsid, lba, hex(st))
    ok("ns %d: 12 Reads of 1 MiB in flight at once" % nsid)
    npipe = pipe_ends()
    assert npipe >= 2, "the server holds %d pipe ends: Reads did not take the pipe" % npipe
    ok("ns %d: the server made pipes for them (%d ends)" % (nsid, npipe))

    # Written data read back through the pipe, between small commands.
    d = pattern(nsid + 40, MIB)
    assert write(q, 512, d, inline=False, split=128 * 1024, nsid=nsid) == 0
    small = pattern(nsid + 50, 4096)
    assert write(q, 600, small, nsid=nsid) == 0
    exp = d[:88 * 512] + small + d[88 * 512 + 4096:]
    assert read(q, 512, MIB, nsid) == exp
    assert read(q, 600, 4096, nsid) == small
    assert file_bytes(nsid, 512 * 512, MIB) == exp
    ok("ns %d: 1 MiB R2T write and a small write read back, in the file too" % nsid)

    # Past the end: LBA Out of Range, no data, and the queue goes on.
    st, data = read_status(q, size // 512 - 8, MIB, nsid)
    assert st & 0xFF == 0x80 and st & 0x4000 and data == b"", hex(st)
    assert read(q, 0, 128 * 1024, nsid) == file_bytes(nsid, 0, 128 * 1024)
    ok("ns %d: Read past the end refused, the next Read clean" % nsid)

# A queue that only writes: its 1 MiB R2T writes (H2CData PDUs of 128 KiB,
# 64 KiB and an odd size; one with FUA) make pipes of its own, and the
# data lands.
before = pipe_ends()
q5 = io_queue(cntlid, 5)
for nsid in (1, 2):
    for i, split in enumerate((128 * 1024, 64 * 1024, 96 * 1024 + 512)):
        d = pattern(nsid * 10 + i, MIB)
        assert write(q5, 4096 + i * 2048, d, inline=False, split=split, nsid=nsid) == 0
        assert file_bytes(nsid, (4096 + i * 2048) * 512, MIB) == d, (nsid, i)
    # FUA (CDW12 bit 30): the data lands all the same.
    d = pattern(nsid * 10 + 7, MIB)
    st, _, _, _ = q5.cmd(q5.sqe(0x01, nsid, (12288, 0, (MIB // 512 - 1) | 1 << 30)), d,
                         inline=False, h2c_split=128 * 1024)
    assert st == 0 and file_bytes(nsid, 12288 * 512, MIB) == d, (nsid, hex(st))
after = pipe_ends()
assert after > before, "writes made no pipe (%d ends before, %d after)" % (before, after)
ok("R2T writes of 1 MiB through pipes land in the files (%d pipe ends more)" % (after - before))
q5.close()

# SQ flow control off: the C2HData carries SUCCESS and no response follows.
q3 = io_queue(cntlid, 3, cattr=0x04)
for nsid in (1, 2):
    assert read(q3, 9, MIB, nsid) == file_bytes(nsid, 9 * 512, MIB)
    assert read(q3, 9, 4096, nsid) == file_bytes(nsid, 9 * 512, 4096)
ok("SQ flow control off: SUCCESS C2HData from the pipe")

# Data digests: the buffer path (a digest needs the bytes), same results.
q4 = io_queue(cntlid, 4, hd=True, dd=True)
for nsid in (1, 2):
    assert read(q4, 1, MIB, nsid) == file_bytes(nsid, 512, MIB)
ok("header and data digests: Reads through memory match")
for x in (q, q3, q4, a):
    x.close()
print("1..%d" % cases)
