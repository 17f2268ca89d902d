/* SPDX-License-Identifier: MIT */
/*
 * fuzz-ublk-iod.c: libFuzzer target for what the ublk server does with the
 * I/O descriptors the kernel writes into the shared array (ublk/): each
 * 24-byte struct ubsrv_io_desc of the input goes through
 * ubsrv_iod_prepare (the validation and decoding of ubsrv-queue.c), is
 * submitted to a mem: disk on this thread's reactor exactly as a queue
 * thread submits it, and its commit result comes from ubsrv_io_result. No
 * kernel is involved: the tag's buffer is a heap block of exactly
 * max_io_bytes, so ASan sees any byte outside it.
 *
 * Input: 4 bytes of set-up, then descriptors (op_flags, nr_sectors,
 * start_sector, addr; little-endian, as the kernel writes them).
 *   cfg[0]  bits 0-1: disk sector size 512 << k; bit 2: the server's
 *           read-only option; bit 3: a read-only disk (the device is
 *           read-only with either, as in ubsrv-dev.c: disks report
 *           read-only, frontends enforce it)
 *   cfg[1]  max_io_bytes = 4096 * (1 + cfg[1] % 64)
 *   cfg[2]  disk size in its sectors: 1 + cfg[2]
 *   cfg[3]  unused (room for later knobs)
 * Checks, besides memory safety: a descriptor is accepted only for an op
 * we serve, aligned to the disk's sectors and (READ/WRITE) within the
 * buffer; an accepted READ/WRITE points at the tag's buffer and no
 * further; a request never succeeds past the end of the disk or on a
 * read-only one when it writes; the commit result is the length, 0 or a
 * -errno; and the disk's contents follow a flat reference model (reads
 * return what earlier writes, zeroes and discards left).
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_PRELUDE_INITIALIZE
#include "tests/fuzz/fuzz-prelude.h"
#include "common/compiler.h"
#include "storage/layered.h"
#include "ublk/ubsrv.h"

#define CFG_BYTES 4
#define MAX_DESCS 64

static bool is_errno(int r)
{
	switch (-r) {
	case EINVAL: case EOPNOTSUPP: case EROFS: case EREMOTEIO: case EIO:
	case ENOSPC: case ETIMEDOUT: case ENODATA: case EILSEQ: case EFAULT:
	case EBADE: case ECANCELED:
		return true;
	default:
		return false;
	}
}

static void done_cb(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint32_t shift = 9 + (data[0] & 3);
	const bool disk_ro = data[0] & 8, dev_ro = (data[0] & 4) || disk_ro;
	uint32_t max_io, sectors;
	uint8_t *buf, *model, *scratch;
	struct disk *d = NULL;
	char err[256];

	if (size < CFG_BYTES)
		return 0;
	max_io = 4096u * (1 + data[1] % 64);
	sectors = 1 + data[2];
	if (ramdisk_new((uint64_t)sectors << shift, 1u << shift, disk_ro, &d, err, sizeof(err)) < 0)
		abort();
	buf = malloc(max_io);
	model = calloc(sectors, 1u << shift);
	scratch = malloc(max_io);
	if (!buf || !model || !scratch)
		abort();

	for (size_t pos = CFG_BYTES, n = 0;
	     pos + sizeof(struct ubsrv_io_desc) <= size && n < MAX_DESCS;
	     pos += sizeof(struct ubsrv_io_desc), n++) {
		struct ubsrv_io_desc iod;
		struct disk_io io;
		struct iovec iov;
		uint64_t end;
		bool done = false;
		int ret, res;

		memcpy(&iod, data + pos, sizeof(iod));
		memset(&io, 0, sizeof(io));
		ret = ubsrv_iod_prepare(&iod, shift, max_io, dev_ro, buf, &iov, &io);
		if (ret < 0) {
			if (ret != -EINVAL && ret != -EOPNOTSUPP && ret != -EROFS)
				abort();
			continue;
		}
		/* Accepted: an op we serve, in whole disk sectors. */
		if ((iod.start_sector | iod.nr_sectors) & ((1u << (shift - 9)) - 1) &&
		    io.op != DISK_OP_FLUSH)
			abort();
		if (ret > 0) {
			if ((io.op != DISK_OP_READ && io.op != DISK_OP_WRITE) ||
			    (uint64_t)ret != io.count << shift || (uint32_t)ret > max_io ||
			    io.iovcnt != 1 || io.iov != &iov || iov.iov_base != buf ||
			    iov.iov_len != (size_t)ret)
				abort();
		} else if (io.op == DISK_OP_READ || io.op == DISK_OP_WRITE || io.iov) {
			abort();
		}
		if (dev_ro && io.op != DISK_OP_READ && io.op != DISK_OP_FLUSH)
			abort();        /* a write accepted by a read-only device */
		if (io.op == DISK_OP_WRITE)
			memset(buf, (int)(n * 37 + 1), (size_t)ret);

		io.done = done_cb;
		io.opaque = &done;
		disk_submit(d, &io);
		if (reactor_run_until(main_reactor, &done) < 0 || !done)
			abort();
		res = ubsrv_io_result(&io, (uint32_t)ret);
		if (!(res == ret || (res < 0 && is_errno(res))))
			abort();
		if (io.status != DISK_OK)
			continue;

		/* It succeeded: then it was in range and allowed. */
		if (io.op != DISK_OP_FLUSH &&
		    (__builtin_add_overflow(io.sector, io.count, &end) || end > sectors))
			abort();
		switch (io.op) {
		case DISK_OP_READ:
			if (memcmp(buf, model + (io.sector << shift), (size_t)ret) != 0)
				abort();
			break;
		case DISK_OP_WRITE:
			memcpy(model + (io.sector << shift), buf, (size_t)ret);
			break;
		case DISK_OP_UNMAP:
		case DISK_OP_WRITE_ZEROES:
			memset(model + (io.sector << shift), 0, (size_t)(io.count << shift));
			break;
		default:
			break;
		}
	}
	/* The whole disk, read back the ordinary way, is the model. */
	for (uint64_t s = 0; s < sectors; s += max_io >> shift) {
		uint64_t k = MIN((uint64_t)(max_io >> shift), sectors - s);

		if (disk_sync_read(d, s, scratch, (size_t)(k << shift)) != DISK_OK ||
		    memcmp(scratch, model + (s << shift), (size_t)(k << shift)) != 0)
			abort();
	}
	disk_unref(d);
	free(buf);
	free(model);
	free(scratch);
	return 0;
}
