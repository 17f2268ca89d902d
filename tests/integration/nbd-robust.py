# SPDX-License-Identifier: MIT
# nbd-robust.py SOCKET: a raw-socket NBD client that sends malformed and
# hostile input to `diskstack serve` and checks each gets the spec's error
# reply or a clean disconnect. Exports expected: "" (>= 16 MiB, writable)
# and "other". Run by test-nbd-robust.sh (and under valgrind by
# test-nbd-valgrind.sh) while another client is served throughout.
import socket
import struct
import sys
import time

SOCK = sys.argv[1]
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3e889045565a9
REQ = 0x25609513
SIMPLE = 0x67446698
CHUNK = 0x668e33ef
ACK, SERVER, INFO, META = 1, 2, 3, 4
ERR = 0x80000000
UNSUP, POLICY, INVALID, TLS_REQD, UNKNOWN, TOO_BIG = (ERR + 1, ERR + 2, ERR + 3, ERR + 5,
                                                      ERR + 6, ERR + 9)
EINVAL, ENOSPC, EPERM = 22, 28, 1
MiB = 1 << 20
cases = 0


class Conn:
    def __init__(self, flags=3):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(30)
        self.s.connect(SOCK)
        g = self.rd(18)
        assert struct.unpack(">QQH", g) == (0x4e42444d41474943, IHAVEOPT, 3), g
        if flags is not None:
            self.s.sendall(struct.pack(">I", flags))

    def rd(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("eof after %d of %d bytes" % (len(b), n))
            b += c
        return b

    def eof(self):
        """True when the server closed the connection."""
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def opt(self, o, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)

    def reply(self, want_opt):
        magic, o, t, n = struct.unpack(">QIII", self.rd(20))
        assert magic == REPLY_MAGIC and o == want_opt, (hex(magic), o, want_opt)
        return t, self.rd(n)

    def final(self, o):
        """Reads replies to option @o up to the final one; returns its type."""
        while True:
            t, _ = self.reply(o)
            if t not in (SERVER, INFO, META):
                return t

    def go(self, name=b"", sr=True, meta=None):
        if sr:
            self.opt(8)
            assert self.reply(8)[0] == ACK
        if meta:
            q = struct.pack(">I", len(name)) + name + struct.pack(">I", 1)
            q += struct.pack(">I", len(meta)) + meta
            self.opt(10, q)
            assert self.final(10) == ACK
        self.opt(7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        t = self.final(7)
        assert t == ACK, hex(t)

    def req(self, typ, cookie, off, length, flags=0, payload=b""):
        self.s.sendall(struct.pack(">IHHQQI", REQ, flags, typ, cookie, off, length) + payload)

    def sreply(self):
        """Reads one structured reply (all chunks); returns (cookie, error, data chunks)."""
        chunks, err, cookie = [], 0, None
        while True:
            magic, = struct.unpack(">I", self.rd(4))
            if magic == SIMPLE:
                e, c = struct.unpack(">IQ", self.rd(12))
                return c, e, chunks
            assert magic == CHUNK, hex(magic)
            fl, ty, c, n = struct.unpack(">HHQI", self.rd(16))
            body = self.rd(n)
            cookie = c
            if ty & 0x8000:
                err = struct.unpack(">I", body[:4])[0]
            else:
                chunks.append((ty, body))
            if fl & 1:
                return cookie, err, chunks

    def close(self):
        self.s.close()


def case(name):
    global cases
    cases += 1
    print("case %d: %s" % (cases, name), flush=True)


# ---- handshake ----------------------------------------------------------------

case("unknown client flags: dropped")
c = Conn(flags=0x80000001)
assert c.eof()

case("bad option magic: dropped")
c = Conn()
c.s.sendall(struct.pack(">QII", 0x1122334455667788, 3, 0))
assert c.eof()

case("option length of 100 MiB: dropped without reading it")
c = Conn()
c.s.sendall(struct.pack(">QII", IHAVEOPT, 3, 100 * MiB))
assert c.eof()

case("1 MiB LIST: skipped, TOO_BIG, still usable")
c = Conn()
c.opt(3, b"\0" * MiB)
assert c.reply(3)[0] == TOO_BIG
c.opt(3)
assert c.final(3) == ACK
c.opt(2)
assert c.reply(2)[0] == ACK
assert c.eof()

case("unknown, withdrawn and experimental options: UNSUP")
c = Conn()
for o, data in ((4, b"abc"), (11, b""), (0x7fffffff, b"x" * 5000), (0, b"")):
    c.opt(o, data)
    assert c.reply(o)[0] == UNSUP, o
c.opt(3, b"junk")                     # LIST with data
assert c.reply(3)[0] == INVALID
c.opt(8, b"junk")                     # STRUCTURED_REPLY with data
assert c.reply(8)[0] == INVALID
c.opt(5)                              # STARTTLS: POLICY unless TLS is configured
t = c.reply(5)[0]
assert t in (POLICY, ACK), hex(t)
if t == ACK:
    c.close()                         # the rest needs a plaintext connection
    c = Conn()

case("INFO/GO malformed: INVALID, unknown export: UNKNOWN")
c.opt(6, struct.pack(">I", 100) + b"ab")
assert c.final(6) == INVALID
c.opt(6, struct.pack(">I", 0) + struct.pack(">H", 3) + b"\0\0")
assert c.final(6) == INVALID
c.opt(7, struct.pack(">I", 5) + b"nosuc" + struct.pack(">H", 0))
assert c.final(7) == UNKNOWN
c.opt(7, b"")
assert c.final(7) == INVALID

case("meta contexts: before SR, malformed, too long, unknown export")
q = lambda name, qs: (struct.pack(">I", len(name)) + name + struct.pack(">I", len(qs)) +
                      b"".join(struct.pack(">I", len(x)) + x for x in qs))
c.opt(10, q(b"", [b"base:allocation"]))
assert c.final(10) == INVALID
c.opt(8)
assert c.reply(8)[0] == ACK
c.opt(9, q(b"", [b"noColonHere"]))
assert c.final(9) == INVALID
c.opt(9, q(b"", [b"base:" + b"a" * 5000]))
assert c.final(9) == TOO_BIG
c.opt(10, q(b"nosuch", [b"base:allocation"]))
assert c.final(10) == UNKNOWN
c.opt(10, struct.pack(">I", 0) + struct.pack(">I", 1000))   # query count too big
assert c.final(10) == INVALID
c.opt(9, q(b"", [b"unknown:thing", b"base:allocation"]))
assert c.final(9) == ACK
c.close()

case("EXPORT_NAME of an unknown export, and of a 5000-byte name: dropped")
c = Conn()
c.opt(1, b"nosuch")
assert c.eof()
c = Conn()
c.opt(1, b"x" * 5000)
assert c.eof()

case("option flood: dropped after the limit")
c = Conn()
n = 0
try:
    while n < 10000:
        for _ in range(64):
            c.opt(3)
        for _ in range(64):
            c.final(3)
            n += 1
except (EOFError, ConnectionResetError, BrokenPipeError):
    pass
assert 1000 <= n < 10000, n

case("clients vanishing mid-handshake")
c = Conn(flags=None)
c.close()
c = Conn()
c.s.sendall(struct.pack(">Q", IHAVEOPT))
c.close()
c = Conn()
c.s.sendall(struct.pack(">QII", IHAVEOPT, 3, 100) + b"x" * 10)
c.close()

case("meta context set for one export, GO to another: block status refused")
c = Conn()
c.opt(8)
assert c.reply(8)[0] == ACK
c.opt(10, q(b"other", [b"base:allocation"]))
assert c.final(10) == ACK
c.go(sr=False)
c.req(7, 1, 0, 4096)
assert c.sreply()[1] == EINVAL
c.req(2, 2, 0, 0)
assert c.eof()

# ---- transmission ---------------------------------------------------------------

case("bad request magic: dropped")
c = Conn()
c.go()
c.s.sendall(struct.pack(">IHHQQI", 0xdeadbeef, 0, 0, 1, 0, 512))
assert c.eof()

case("WRITE over the payload limit: dropped")
c = Conn()
c.go()
c.req(1, 1, 0, 64 * MiB)
assert c.eof()

case("READ over the limit, unknown command, bad flags, overflow: EINVAL, still usable")
c = Conn()
c.go()
c.req(0, 1, 0, 64 * MiB)
assert c.sreply()[:2] == (1, EINVAL)
c.req(99, 2, 0, 512)
assert c.sreply()[:2] == (2, EINVAL)
c.req(0, 3, 0, 512, flags=0x8000)
assert c.sreply()[:2] == (3, EINVAL)
c.req(0, 4, 0xFFFFFFFFFFFFFE00, 1024)
assert c.sreply()[:2] == (4, EINVAL)
c.req(1, 5, 0xFFFFFFFFFFFFFE00, 1024, payload=b"z" * 1024)
assert c.sreply()[:2] == (5, ENOSPC)
c.req(3, 6, 512, 0)                     # FLUSH with an offset
assert c.sreply()[:2] == (6, EINVAL)
c.req(7, 7, 0, 4096)                    # no meta context negotiated
assert c.sreply()[:2] == (7, EINVAL)
c.req(1, 8, 4096, 0)                    # zero-length write
assert c.sreply()[:2] == (8, 0)
c.req(0, 9, 0, 0)                       # zero-length read
assert c.sreply()[:2] == (9, 0)
c.req(1, 10, 0, 512, payload=b"w" * 512)
assert c.sreply()[:2] == (10, 0)
c.req(0, 11, 0, 512)
cookie, err, chunks = c.sreply()
assert err == 0 and chunks[0][1][8:] == b"w" * 512
c.req(2, 12, 0, 0)
assert c.eof()

case("simple replies: errors carry no payload")
c = Conn()
c.go(sr=False)
c.req(0, 1, 1 << 40, 512)
assert c.sreply()[:2] == (1, EINVAL)
c.req(0, 2, 0, 512)
magic, err, cookie = struct.unpack(">IIQ", c.rd(16))
assert (magic, err, cookie) == (SIMPLE, 0, 2)
c.rd(512)
c.close()

case("truncated header and truncated payload: the client vanishes")
c = Conn()
c.go()
c.s.sendall(struct.pack(">IHHQ", REQ, 0, 0, 1))
c.close()
# A large WRITE goes straight into blocks the disk may keep (mem:
# adopts them): one cut short must change nothing on the disk.
c = Conn()
c.go()
c.req(1, 1, 0, MiB, payload=b"k" * MiB)
assert c.sreply()[:2] == (1, 0)
c.close()
for sent in (1000, 300 * 1024):
    c = Conn()
    c.go()
    c.req(1, 1, 0, MiB, payload=b"p" * sent)
    c.close()
c = Conn()
c.go()
got = b""
while len(got) < MiB:
    c.req(0, 2, len(got), 256 * 1024)
    cookie, err, chunks = c.sreply()
    assert (cookie, err) == (2, 0)
    for ty, body in chunks:
        assert ty == 1, ty   # OFFSET_DATA: offset, then the bytes
        got += body[8:]
assert got == b"k" * MiB, "a truncated WRITE changed the disk"
c.close()

case("pipelining without reading, then everything answered (back-pressure)")
c = Conn()
c.go()
N = 600
# One send for all of them: the server stops reading when its slots run
# out, and a Unix socket charges each small send a whole buffer.
c.s.sendall(b"".join(struct.pack(">IHHQQI", REQ, 0, 0, i, (i % 16) * MiB, 65536)
                     for i in range(N)))
got = set()
for i in range(N):
    cookie, err, chunks = c.sreply()
    assert err == 0
    got.add(cookie)
assert got == set(range(N))
c.req(2, N, 0, 0)
assert c.eof()

case("client vanishing with requests in flight")
for _ in range(5):
    c = Conn()
    c.go()
    for i in range(64):
        c.req(0, i, i * 65536, 256 * 1024)
    c.close()

case("DISC with writes in flight: all answered before the close")
c = Conn()
c.go()
for i in range(32):
    c.req(1, i, MiB + i * 4096, 4096, payload=bytes([i]) * 4096)
c.req(2, 99, 0, 0)
answered = set()
for i in range(32):
    cookie, err, _ = c.sreply()
    assert err == 0
    answered.add(cookie)
assert answered == set(range(32))
assert c.eof()

print("nbd-robust.py: %d cases passed" % cases)
