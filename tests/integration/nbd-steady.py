# SPDX-License-Identifier: MIT
# nbd-steady.py URI STOPFILE: a well-behaved client that writes and reads
# back 64 KiB blocks (several in flight) until STOPFILE exists; exits 1 on
# any error or mismatch. The robustness tests run it alongside the hostile
# client to show the server keeps serving others.
import os
import random
import sys

import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
size = h.get_size()
rounds = 0
rng = random.Random(42)
while not os.path.exists(sys.argv[2]) or rounds < 5:
    blocks = []
    for i in range(8):
        off = rng.randrange(0, size // 65536) * 65536
        data = os.urandom(65536)
        blocks.append((off, data))
    blocks = list(dict(blocks).items())
    for off, data in blocks:
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off)
    while h.aio_in_flight():
        h.poll(-1)
    for off, data in blocks:
        if h.pread(65536, off) != data:
            print("nbd-steady.py: mismatch at %d" % off, file=sys.stderr)
            sys.exit(1)
    rounds += 1
h.shutdown()
print("nbd-steady.py: %d rounds" % rounds)
