#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""badserver.py: a deliberately misbehaving HTTP/1.1 server for the blob tests.

Usage: badserver.py PORTFILE SIZE
Listens on 127.0.0.1 on a free port, writes the port to PORTFILE once it
accepts connections, and serves a SIZE-byte blob whose 8-byte little-endian
words are (0x42 << 48) | word index (tests/unit/testutil.c tu_fill, tag 0x42).
The first path component picks the behaviour of GET (HEAD always answers 200
with Content-Length: SIZE unless said otherwise):

  /good        honours Range (206 + Content-Range)
  /short       206 with a body 512 bytes shorter than asked (Content-Length too)
  /norange     ignores Range: 200 with the whole blob
  /badrange    206 with the Content-Range of another range
  /nocr        206 without Content-Range
  /416         416 Range Not Satisfiable
  /404         404 for GET
  /500         500 for every GET
  /flaky<N>    503 for the first N GETs of this path, then like /good
  /close       206 announcing the full length, closes after half the body
  /flakyclose  like /close for the first GET of this path, then like /good
  /stall       206, sends 1 KiB of the body, then sleeps (until the client gives up)
  /stallhead   HEAD never answers
  /nolength    HEAD without Content-Length
  /loop        HEAD redirects to itself (302)
  /relredir    HEAD and GET redirect (307) to the relative "good"
  /shrink      HEAD says SIZE; a GET past SIZE/2 gets 416 (the blob shrank)
  /vhd         a fixed VHD: the blob data (SIZE - 512 bytes) and a valid
               footer at the end (checked by the vhd1 tests)
  /stats       JSON: {"connections": N, "requests": {"GET /path": N, ...}}
"""
import http.server
import json
import os
import socketserver
import struct
import sys
import threading
import time

SIZE = 0
STATS = {"connections": 0, "requests": {}}
STATS_LOCK = threading.Lock()


def pattern(off, length):
    """Bytes [off, off+length) of the blob (tu_fill with tag 0x42)."""
    first = off // 8
    last = (off + length + 7) // 8
    words = b"".join(struct.pack("<Q", (0x42 << 48) | i) for i in range(first, last))
    start = off - first * 8
    return words[start:start + length]


def vhd_footer(size):
    """A fixed-VHD footer for SIZE data bytes (docs/openvmm-compat.md §4.6)."""
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">I", f, 8, 2)
    struct.pack_into(">I", f, 12, 0x00010000)
    struct.pack_into(">Q", f, 16, 0xFFFFFFFFFFFFFFFF)
    struct.pack_into(">I", f, 32, 0x000A0000)
    struct.pack_into(">Q", f, 40, size)
    struct.pack_into(">Q", f, 48, size)
    struct.pack_into(">I", f, 60, 2)
    f[68:84] = bytes(range(0x10, 0x20))
    struct.pack_into(">I", f, 64, (~sum(f)) & 0xFFFFFFFF)
    return bytes(f)


def content(kind, off, length):
    if kind == "vhd":
        data_size = SIZE - 512
        out = b""
        if off < data_size:
            n = min(length, data_size - off)
            out += pattern(off, n)
            off += n
            length -= n
        if length:
            out += vhd_footer(data_size)[off - data_size:off - data_size + length]
        return out
    return pattern(off, length)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and
    # delayed ACKs add 40 ms to every request.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with STATS_LOCK:
            STATS["connections"] += 1

    def log_message(self, fmt, *args):
        pass

    def count(self):
        key = "%s %s" % (self.command, self.path)
        with STATS_LOCK:
            STATS["requests"][key] = STATS["requests"].get(key, 0) + 1
            return STATS["requests"][key]

    def kind(self):
        return self.path.lstrip("/").split("/")[0].split("?")[0]

    def send_empty(self, code, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.count()
        kind = self.kind()
        if kind == "stallhead":
            time.sleep(3600)
            return
        if kind == "loop":
            self.send_empty(302, [("Location", self.path)])
            return
        if kind == "relredir":
            self.send_empty(307, [("Location", "good")])
            return
        if kind == "foldredir":
            self.send_empty(307, [("Location", "foldhead")])
            return
        if kind == "foldhead":
            self.send_folded(200, [("Content-Length", str(SIZE))])
            return
        self.send_response(200)
        if kind != "nolength":
            self.send_header("Content-Length", str(SIZE))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def send_folded(self, code, headers, body=b""):
        # A reply whose first header line is an obs-fold continuation
        # (RFC 9112 §5.2): leading whitespace, nothing to continue.
        head = "HTTP/1.1 %d X\r\n X-Folded: y\r\n" % code
        head += "".join("%s: %s\r\n" % kv for kv in headers)
        self.wfile.write(head.encode() + b"\r\n" + body)

    def parse_range(self):
        r = self.headers.get("Range", "")
        if not r.startswith("bytes="):
            return None
        a, b = r[6:].split("-")
        return int(a), int(b)

    def send_body(self, code, off, length, announce=None, headers=()):
        kind = self.kind()
        body = content(kind, off, length)
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(announce if announce is not None else len(body)))
        self.end_headers()
        return body

    def do_GET(self):
        n = self.count()
        kind = self.kind()
        if kind == "stats":
            with STATS_LOCK:
                body = json.dumps(STATS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        rng = self.parse_range()
        if rng is None:
            self.send_empty(400)
            return
        a, b = rng
        length = b - a + 1
        cr = ("Content-Range", "bytes %d-%d/%d" % (a, b, SIZE))
        if kind.startswith("flaky") and kind != "flakyclose":
            if n <= int(kind[5:] or "1"):
                self.send_empty(503)
                return
            kind = "good"
        if kind == "flakyclose":
            kind = "close" if n == 1 else "good"
        if kind == "relredir":
            self.send_empty(307, [("Location", "good")])
            return
        if kind == "shrink" and b >= SIZE // 2:
            self.send_empty(416, [("Content-Range", "bytes */%d" % (SIZE // 2))])
            return
        if kind == "folded" and n > 1:
            body = content("good", a, length)
            self.send_folded(206, [cr, ("Content-Length", str(len(body)))], body)
            return
        if kind in ("good", "vhd", "shrink", "folded"):
            self.wfile.write(self.send_body(206, a, length, headers=[cr]))
        elif kind == "short":
            body = self.send_body(206, a, length - 512, headers=[cr])
            self.wfile.write(body)
        elif kind == "norange":
            self.wfile.write(self.send_body(200, 0, SIZE))
        elif kind == "badrange":
            other = ("Content-Range", "bytes %d-%d/%d" % (a + 512, b + 512, SIZE))
            self.wfile.write(self.send_body(206, a, length, headers=[other]))
        elif kind == "nocr":
            self.wfile.write(self.send_body(206, a, length))
        elif kind == "416":
            self.send_empty(416, [("Content-Range", "bytes */%d" % SIZE)])
        elif kind == "404":
            self.send_empty(404)
        elif kind == "500":
            self.send_empty(500)
        elif kind == "close":
            body = self.send_body(206, a, length, headers=[cr])
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "stall":
            body = self.send_body(206, a, length, headers=[cr])
            self.wfile.write(body[:1024])
            self.wfile.flush()
            # The client's low-speed limit must give up first; the thread
            # dies with the server.
            time.sleep(600)
            self.close_connection = True
        else:
            self.send_empty(404)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hang up on purpose in these tests; stay quiet.
        pass


def main():
    global SIZE
    portfile, SIZE = sys.argv[1], int(sys.argv[2])
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
