# SPDX-License-Identifier: MIT
# nbd-protocol.py SOCKET: asserts what `diskstack serve` does with each
# option, command and flag, through libnbd (python3-libnbd, libnbd 1.14).
# Run by test-nbd-protocol.sh against:
#   ""        mem:16M
#   ro        mem:1M,ro      (description "read only")
#   file      a raw file     (fast zero through fallocate)
#   diff      memdiff:mem:16M (a RAM layer over a disk: no fast zero)
# Strict mode is cleared where the server itself must do the refusing.
import errno
import sys

import nbd

SOCK = sys.argv[1]
MiB = 1 << 20
checks = 0


def uri(name=""):
    return "nbd+unix:///%s?socket=%s" % (name, SOCK)


def ok(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def connect(name="", sr=True, meta=(), strict=None, flags=None):
    h = nbd.NBD()
    if not sr:
        h.set_request_structured_replies(False)
    for m in meta:
        h.add_meta_context(m)
    if flags is not None:
        h.set_handshake_flags(flags)
    h.connect_uri(uri(name))
    if strict is not None:
        h.set_strict_mode(strict)
    return h


def fails(fn, err, what):
    try:
        fn()
    except nbd.Error as e:
        ok(e.errnum == err, "%s: expected errno %d, got %r" % (what, err, e))
        return
    raise AssertionError("%s: succeeded, expected errno %d" % (what, err))


# ---- handshake ----------------------------------------------------------------

# Old-style clients: EXPORT_NAME, with and without the 124-byte pad.
for flags in (0, nbd.HANDSHAKE_FLAG_NO_ZEROES,
              nbd.HANDSHAKE_FLAG_FIXED_NEWSTYLE):
    h = connect(flags=flags)
    ok(h.get_size() == 16 * MiB, "size with handshake flags %d" % flags)
    h.pwrite(b"\xaa" * 512, 0)
    ok(h.pread(512, 0) == b"\xaa" * 512, "data with handshake flags %d" % flags)
    h.shutdown()

# Option mode: LIST, INFO, LIST_META_CONTEXT, ABORT.
h = nbd.NBD()
h.set_opt_mode(True)
h.set_full_info(True)
h.connect_uri(uri())
seen = {}
h.opt_list(lambda name, desc: seen.__setitem__(name, desc))
ok({"", "ro", "file"} <= set(seen), "LIST names: %r" % seen)
ok(seen["ro"] == "read only", "LIST description: %r" % seen)

h.set_export_name("ro")
h.opt_info()
ok(h.get_size() == MiB, "INFO size")
ok(h.is_read_only(), "INFO read-only flag")
ok(not h.can_trim() and not h.can_zero() and not h.can_fua(), "INFO ro: no write features")
ok(h.can_flush() and h.can_cache(), "INFO ro: flush and cache")
ok(h.get_export_description() == "read only", "INFO_DESCRIPTION")
ok(h.get_canonical_export_name() == "ro", "INFO_NAME")
ok(h.get_block_size(nbd.SIZE_MINIMUM) == 512, "minimum block size")
ok(h.get_block_size(nbd.SIZE_PREFERRED) == 4096, "preferred block size")
ok(h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * MiB, "maximum block size")

h.set_export_name("nosuch")
fails(h.opt_info, errno.ENOENT, "INFO of an unknown export")

h.set_export_name("")
contexts = []
n = h.opt_list_meta_context(lambda name: contexts.append(name))
ok(sorted(contexts) == ["base:allocation", "diskstack:layer"], "LIST_META_CONTEXT all: %r" % contexts)
for query, want in (("base:", ["base:allocation"]), ("diskstack:", ["diskstack:layer"]),
                    ("base:allocation", ["base:allocation"]), ("qemu:x", [])):
    h.clear_meta_contexts()
    h.add_meta_context(query)
    contexts = []
    h.opt_list_meta_context(lambda name: contexts.append(name))
    ok(contexts == want, "LIST_META_CONTEXT %s: %r" % (query, contexts))
h.opt_abort()
ok(h.aio_is_closed(), "ABORT closes")

# Without structured replies: no DF, no block status, simple read replies.
h = connect(sr=False)
ok(not h.get_structured_replies_negotiated(), "SR refused when not requested?")
ok(not h.can_df(), "DF without structured replies")
h.pwrite(b"\x11" * 4096, 4096)
ok(h.pread(4096, 4096) == b"\x11" * 4096, "simple read")
h.set_strict_mode(0)
fails(lambda: h.pread(512, 16 * MiB), errno.EINVAL, "simple read past the end")
ok(h.pread(512, 4096) == b"\x11" * 512, "connection usable after a simple error")
h.shutdown()

# ---- commands ----------------------------------------------------------------

h = connect(meta=("base:allocation", "diskstack:layer"))
ok(h.get_structured_replies_negotiated(), "structured replies")
ok(h.can_df() and h.can_multi_conn() and h.can_cache(), "flags of a mem export")
# mem: zeroes by dropping pages, so it offers fast zero.
ok(h.can_fast_zero(), "mem export: fast zero")
h.pwrite(b"\x5a" * 65536, 2 * MiB)
h.zero(65536, 2 * MiB, nbd.CMD_FLAG_FAST_ZERO)
ok(h.pread(65536, 2 * MiB) == bytes(65536), "fast zero on mem reads zero")
data = bytes(range(256)) * 256          # 64 KiB
h.pwrite(data, MiB, nbd.CMD_FLAG_FUA)
ok(h.pread(65536, MiB) == data, "FUA write read back")
h.flush()
h.cache(MiB, 0)
h.trim(65536, 4 * MiB, nbd.CMD_FLAG_FUA)
h.pwrite(data, 2 * MiB)
h.zero(65536, 2 * MiB, nbd.CMD_FLAG_NO_HOLE)
ok(h.pread(65536, 2 * MiB) == bytes(65536), "zero with NO_HOLE reads zero")
h.pwrite(data, 2 * MiB)
h.zero(65536, 2 * MiB)
ok(h.pread(65536, 2 * MiB) == bytes(65536), "zero reads zero")

# Block status for both contexts.
ext = {}


def bs_cb(meta, off, entries, err):
    ext[meta] = list(entries)


h.pwrite(data, 12 * MiB + 65536)
h.block_status(4 * 65536, 12 * MiB, bs_cb)
ok(ext["base:allocation"] == [65536, 3, 65536, 0, 2 * 65536, 3],
   "base:allocation: hole, data, hole: %r" % ext["base:allocation"])
ok(ext["diskstack:layer"] == [65536, 0, 65536, 1, 2 * 65536, 0],
   "diskstack:layer: no layer, top layer, no layer: %r" % ext["diskstack:layer"])
ext.clear()
h.block_status(3 * MiB, 0, bs_cb, nbd.CMD_FLAG_REQ_ONE)
for m in ext.values():
    ok(len(m) == 2 and m[0] <= 3 * MiB, "REQ_ONE: exactly one extent: %r" % m)
ext.clear()
h.block_status(4096, MiB + 4096, bs_cb, nbd.CMD_FLAG_REQ_ONE)
ok(ext["base:allocation"] == [4096, 0], "REQ_ONE clamps to the request: %r" % ext)

# Structured reads: a data chunk and a hole chunk, or one chunk with DF.
chunks = []


def chunk_cb(buf, off, status, err):
    chunks.append((off, len(buf), status))
    return 0


buf = h.pread_structured(2 * 65536, MiB, chunk_cb)
ok(buf[:65536] == data and buf[65536:] == bytes(65536), "structured read data")
ok(sorted(chunks) == [(MiB, 65536, nbd.READ_DATA), (MiB + 65536, 65536, nbd.READ_HOLE)],
   "DATA + HOLE chunks: %r" % chunks)
chunks.clear()
buf = h.pread_structured(2 * 65536, MiB, chunk_cb, nbd.CMD_FLAG_DF)
ok(chunks == [(MiB, 2 * 65536, nbd.READ_DATA)], "DF: one data chunk: %r" % chunks)
chunks.clear()
h.pread_structured(65536, 8 * MiB, chunk_cb, nbd.CMD_FLAG_DF)
ok(chunks == [(8 * MiB, 65536, nbd.READ_HOLE)], "DF over a hole: one hole chunk: %r" % chunks)

# Out of order: a big read and small writes in flight together.
cookies = [h.aio_pread(nbd.Buffer(8 * MiB), 0)]
for i in range(32):
    cookies.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray([i]) * 4096),
                                10 * MiB + i * 4096))
ok(h.aio_in_flight() >= 1, "requests in flight together")
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    ok(h.aio_command_completed(c), "pipelined command %d completed" % c)
for i in range(32):
    ok(h.pread(4096, 10 * MiB + i * 4096) == bytes([i]) * 4096, "pipelined write %d" % i)

# ---- refusals (strict mode off: the server must refuse) ----------------------

h.set_strict_mode(0)
end = 16 * MiB
fails(lambda: h.pread(512, end), errno.EINVAL, "read past the end")
fails(lambda: h.pread(1024, end - 512), errno.EINVAL, "read across the end")
fails(lambda: h.pwrite(b"x" * 512, end), errno.ENOSPC, "write past the end")
fails(lambda: h.zero(512, end), errno.ENOSPC, "zero past the end")
fails(lambda: h.trim(512, end), errno.EINVAL, "trim past the end")
fails(lambda: h.cache(512, end), errno.EINVAL, "cache past the end")
fails(lambda: h.block_status(512, end, bs_cb), errno.EINVAL, "block status past the end")
fails(lambda: h.pread(512, 1), errno.EINVAL, "unaligned read")
fails(lambda: h.pwrite(b"x" * 100, 0), errno.EINVAL, "unaligned write")
fails(lambda: h.zero(100, 512), errno.EINVAL, "unaligned zero")
fails(lambda: h.pread(512, 0, 1 << 7), errno.EINVAL, "unknown command flag")
fails(lambda: h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_REQ_ONE), errno.EINVAL, "flag of another command")
fails(lambda: h.pread(32 * MiB + 512, 0), errno.EINVAL, "read over the maximum block size")
ok(h.pread(0, 0) == b"", "zero-length read")
h.pwrite(b"", 0)
h.trim(100, 10)                 # rounds inwards to nothing: a no-op
ok(h.pread(512, 0) == b"\xaa" * 512, "connection still usable after refusals")
h.shutdown()

# Block status without a negotiated context.
h = connect(strict=0)
fails(lambda: h.block_status(512, 0, bs_cb), errno.EINVAL, "block status without a context")
h.shutdown()

# The read-only export refuses every write with EPERM.
h = connect("ro", strict=0)
ok(h.is_read_only(), "ro export is read-only")
fails(lambda: h.pwrite(b"x" * 512, 0), errno.EPERM, "write to a read-only export")
fails(lambda: h.trim(512, 0), errno.EPERM, "trim on a read-only export")
fails(lambda: h.zero(512, 0), errno.EPERM, "zero on a read-only export")
ok(h.pread(512, 0) == bytes(512), "read from the read-only export")
h.flush()
h.shutdown()

# A RAM layer over a disk zeroes with zeroed runs (no pages): fast zero
# is advertised and succeeds; with NO_HOLE it would have to write data, so
# it is refused with ENOTSUP (test-nbd-fast-zero.sh has the rest).
h = connect(name="diff")
ok(h.can_fast_zero(), "memdiff export: fast zero")
h.pwrite(data[:4096], 0)
h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO)
ok(h.pread(4096, 0) == bytes(4096), "fast zero on memdiff")
h.pwrite(data[:4096], 0)
fails(lambda: h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE), errno.ENOTSUP,
      "FAST_ZERO | NO_HOLE on memdiff")
ok(h.pread(4096, 0) == data[:4096], "a refused fast zero changes nothing")
h.shutdown()

# crypt: zeroes must be encrypted, so no fast zero, and the flag is
# refused when it is not advertised.
h = connect(name="crypt")
h.set_strict_mode(0)
ok(not h.can_fast_zero(), "crypt export: no fast zero")
fails(lambda: h.zero(512, 0, nbd.CMD_FLAG_FAST_ZERO), errno.EINVAL, "FAST_ZERO not advertised")
h.zero(512, 0)
ok(h.pread(512, 0) == bytes(512), "plain zero on crypt")
h.shutdown()

# A file export: fast zero is advertised and honoured (or refused fast).
h = connect("file", meta=("base:allocation",))
ok(h.can_fast_zero() and h.can_trim(), "file export: fast zero and trim")
h.pwrite(data, 0)
try:
    h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO)
    ok(h.pread(65536, 0) == bytes(65536), "fast zero reads zero")
except nbd.Error as e:
    ok(e.errnum == errno.ENOTSUP, "fast zero may only fail with ENOTSUP: %r" % e)
    ok(h.pread(65536, 0) == data, "a refused fast zero changes nothing")
h.shutdown()

print("nbd-protocol.py: %d checks passed" % checks)
