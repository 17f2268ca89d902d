# SPDX-License-Identifier: MIT
"""nbdkit-plugin.py URI MODE: the nbdkit plugin's answers, through libnbd
(tests/integration/test-nbdkit-plugin-nbdsh.sh runs it under nbdkit --run).

MODE rw: a writable mem:64M; ro: mem:1M,ro; nozero: a disk without fast
zero (crypt:, whose zeroes are written ciphertext); errors: failures
injected by the error: decorator (the spec in the test script); kind
SIZE rw|ro [IMAGE|-] [written]: any other kind (test-nbdkit-plugin-kinds.sh):
the size, the read-only flag, the disk's bytes equal to the start of
IMAGE, a round trip across 64 KiB boundaries (rw) or writes refused with
EPERM (ro), and with `written` the round trip's data already there (a
reopened persistent disk). Checks every negotiated capability and block
size, data round trips, FUA, trim, zero, cache, block status, and the
errors: unaligned requests (EINVAL from the plugin), past the end
(nbdkit's own range check), writes to a read-only spec (EPERM), fast
zero where it is not fast (ENOTSUP).
"""

import errno
import sys

import nbd

uri, mode = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(uri)
size = h.get_size()


def expect_error(want, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        if e.errnum != want:
            raise AssertionError(f"{fn.__name__}{args[1:]}: errno {e.errnum} ({e.string}), "
                                 f"want {errno.errorcode[want]}")
        return
    raise AssertionError(f"{fn.__name__}{args[1:]}: succeeded, want {errno.errorcode[want]}")


assert h.get_block_size(nbd.SIZE_MINIMUM) == 512
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 << 20
assert h.can_flush() and h.can_cache() and h.can_multi_conn()
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)

# The server's own answers, not libnbd's: let unaligned and out-of-range
# requests reach it.
h.set_strict_mode(0)
expect_error(errno.EINVAL, h.pread, 100, 3)
expect_error(errno.EINVAL, h.pread, 512, size)

# The round trip of `kind`: 192 KiB from 60 KiB, across the 64 KiB chunk
# boundaries of a striped: disk.
kind_data = bytes(range(251)) * (192 * 1024 // 251) + bytes(192 * 1024 % 251)
kind_off = 60 << 10

if mode == "kind":
    want_size, access = int(sys.argv[3]), sys.argv[4]
    image = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    written = len(sys.argv) > 6 and sys.argv[6] == "written"
    assert size == want_size, (size, want_size)
    assert h.is_read_only() == (access == "ro")
    if image:
        with open(image, "rb") as f:
            want = f.read(size)
        for off in range(0, size, 1 << 20):
            n = min(1 << 20, size - off)
            assert h.pread(n, off) == want[off:off + n], f"differs from {image} in [{off}, +{n})"
    if written:
        assert h.pread(len(kind_data), kind_off) == kind_data
    if access == "ro":
        assert not h.can_trim() and not h.can_zero()
        expect_error(errno.EPERM, h.pwrite, b"x" * 512, 0)
        expect_error(errno.EPERM, h.zero, 512, 0)
        h.flush()
    else:
        assert h.can_zero() and h.can_fua()
        h.pwrite(kind_data, kind_off)
        assert h.pread(len(kind_data), kind_off) == kind_data
        h.pwrite(kind_data[:4096], size - 4096, nbd.CMD_FLAG_FUA)
        assert h.pread(4096, size - 4096) == kind_data[:4096]
        h.zero(4096, size - 4096)
        assert h.pread(4096, size - 4096) == bytes(4096)
        # Past the end (nbdkit's range check): a VHD's footer stays intact.
        try:
            h.pwrite(b"x" * 512, size)
            raise AssertionError("write past the end succeeded")
        except nbd.Error as e:
            assert e.errnum in (errno.EINVAL, errno.ENOSPC), e
        h.flush()
    h.cache(1 << 20, 0)
    h.shutdown()
    print("kind", access, "ok")
    sys.exit(0)

if mode == "errors":
    # Injected failures (the error: decorator) reach the client with the
    # errno `diskstack serve` would send, and the server keeps serving.
    expect_error(errno.EIO, h.pread, 512, 0)
    expect_error(errno.ENOSPC, h.pwrite, b"x" * 512, 0)
    expect_error(errno.EPERM, h.trim, 4096, 4096)
    expect_error(errno.EIO, h.flush)
    h.pwrite(b"y" * 512, 4096)
    assert h.pread(512, 4096) == b"y" * 512
    print("errors ok")
    sys.exit(0)

if mode == "ro":
    assert size == 1 << 20
    assert h.is_read_only()
    assert not h.can_trim() and not h.can_zero() and not h.can_fast_zero()
    expect_error(errno.EPERM, h.pwrite, b"x" * 512, 0)
    expect_error(errno.EPERM, h.zero, 512, 0)
    expect_error(errno.EPERM, h.trim, 512, 0)
    assert h.pread(512, 0) == bytes(512)
    h.flush()
    h.cache(4096, 0)
    print("ro ok")
    sys.exit(0)

assert not h.is_read_only()
assert h.can_trim() and h.can_zero() and h.can_fua()
expect_error(errno.EINVAL, h.pwrite, b"x" * 100, 0)
expect_error(errno.EINVAL, h.pwrite, b"x" * 512, 1)
expect_error(errno.EINVAL, h.zero, 100, 0)
expect_error(errno.EINVAL, h.trim, 512, 7)
# Past the end: nbdkit checks the range before the plugin is called.
try:
    h.pwrite(b"x" * 512, size)
    raise AssertionError("write past the end succeeded")
except nbd.Error as e:
    assert e.errnum in (errno.EINVAL, errno.ENOSPC), e

data = bytes(range(256)) * 32
h.pwrite(data, 8192)
assert h.pread(len(data), 8192) == data
h.pwrite(data, 16384, nbd.CMD_FLAG_FUA)
assert h.pread(len(data), 16384) == data
h.flush()
h.zero(4096, 8192)
assert h.pread(4096, 8192) == bytes(4096)
assert h.pread(4096, 12288) == data[4096:]
h.zero(4096, 16384, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
assert h.pread(4096, 16384) == bytes(4096)
h.trim(4096, 20480, nbd.CMD_FLAG_FUA)
h.cache(1 << 20, 0)


def extents(off, length, flags=0):
    got = []

    def cb(metacontext, offset, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            got.extend(zip(entries[0::2], entries[1::2]))
        return 0
    h.block_status(length, off, cb, flags)
    return got


if mode == "rw":
    # A RAM disk reports what it holds: written data, holes elsewhere.
    assert h.can_fast_zero()
    h.zero(1 << 20, 32 << 20, nbd.CMD_FLAG_FAST_ZERO)
    # [0, 12288): never written, or zeroed with trim allowed: a hole;
    # [12288, 20480): data (the second write, then zeroes with NO_HOLE);
    # the rest trimmed or never written.
    ext = extents(0, size)
    assert ext == [(12288, 3), (8192, 0), (size - 20480, 3)], ext
    one = extents(32 << 20, 1 << 20, nbd.CMD_FLAG_REQ_ONE)
    assert len(one) == 1 and one[0][1] & nbd.STATE_HOLE, one
else:
    # Encrypted zeroes are written ciphertext, so a fast zero is refused
    # before anything is written (advertised: the flag is honoured).
    assert h.can_fast_zero()
    h.pwrite(data, 65536)
    expect_error(errno.ENOTSUP, h.zero, 4096, 65536, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(4096, 65536) == data[:4096]
h.shutdown()
print(mode, "ok")
