/* SPDX-License-Identifier: MIT */
/*
 * fuzz-nbd-client.c: libFuzzer target for the nbd: backend
 * (storage/nbdclient.c, over libnbd): the input is what a remote NBD server
 * says, as a script for the scripted server of tests/unit/nbdscript.h (a
 * header describing the export, then a program of replies; or, in raw
 * mode, every byte from the greeting on). Each run opens an nbd: disk
 * whose connections are socketpairs to that server, drives reads (one
 * buffer and a scatter list), writes, block status, write-zeroes, trim,
 * flush and cache through the disk interface, one at a time and then
 * several at once, and closes the disk. The backend must never crash,
 * leak, hang, or touch memory out of bounds, whatever the server says.
 *
 * Seeds: tests/fuzz/nbd-client-seeds.py writes replies to the requests
 * this harness makes, valid and not (every chunk type, errors, short and
 * odd block-status answers, reconnects, the raw mode), so that mutations
 * start past the handshake.
 */
#include "config.h"

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/backends/nbdclient.h"
#include "tests/unit/nbdscript.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct reactor *main_reactor;
static uint8_t *iobuf;                  /* the client's buffers */
#define IOBUF_BYTES (4u << 20)

/* ---- the client ------------------------------------------------------------------- */

static void fz_io_done(struct disk_io *io)
{
	unsigned *left = io->opaque;

	if (nbdscript_verbose)
		fprintf(stderr, "client: %s %" PRIu64 "+%" PRIu64 ": %s\n", disk_op_str(io->op),
			io->sector, io->count, disk_status_str(io->status));
	(*left)--;
}

static void fz_submit(struct disk *d, struct disk_io *io, unsigned *left)
{
	io->done = fz_io_done;
	io->opaque = left;
	(*left)++;
	disk_submit(d, io);
}

static void fz_one(struct nbdscript *f, struct disk *d, struct disk_io *io)
{
	unsigned left = 0;

	fz_submit(d, io, &left);
	nbdscript_run_until(f, main_reactor, &left);
}

static void fz_drive(struct nbdscript *f, struct disk *d)
{
	uint32_t sec = disk_sector_size(d);
	uint64_t nsec = disk_sector_count(d);
	uint64_t run = MIN(nsec, 8);          /* sectors per read or write */
	struct disk_extent ext[8];
	struct iovec iov[4];
	struct disk_io io;
	unsigned left = 0;
	struct disk_io batch[4];

	if (nsec == 0 || 8ull * sec * 4 > IOBUF_BYTES)
		return;
	/* One buffer; block status over much; a write; a scatter list. */
	iov[0] = (struct iovec){ iobuf, run * sec };
	io = (struct disk_io){ .op = DISK_OP_READ, .iov = iov, .iovcnt = 1 };
	fz_one(f, d, &io);
	io = (struct disk_io){ .op = DISK_OP_BLOCK_STATUS, .count = MIN(nsec, 1u << 20),
			       .u.bs = { .extents = ext, .max = 8 } };
	fz_one(f, d, &io);
	if (!disk_get_info(d)->read_only) {
		memset(iobuf, 0x5a, run * sec);
		io = (struct disk_io){ .op = DISK_OP_WRITE, .sector = nsec - run, .iov = iov,
				       .iovcnt = 1 };
		fz_one(f, d, &io);
	}
	iov[0] = (struct iovec){ iobuf, sec };
	iov[1] = (struct iovec){ iobuf + 2 * sec, (run - 1) * sec };
	io = (struct disk_io){ .op = DISK_OP_READ, .iov = iov, .iovcnt = run > 1 ? 2 : 1 };
	fz_one(f, d, &io);
	io = (struct disk_io){ .op = DISK_OP_BLOCK_STATUS, .sector = nsec / 2,
			       .count = nsec - nsec / 2, .u.bs = { .extents = ext, .max = 2 } };
	fz_one(f, d, &io);
	if (!disk_get_info(d)->read_only) {
		io = (struct disk_io){ .op = DISK_OP_WRITE_ZEROES, .count = run };
		fz_one(f, d, &io);
		io = (struct disk_io){ .op = DISK_OP_UNMAP, .count = run };
		fz_one(f, d, &io);
		io = (struct disk_io){ .op = DISK_OP_FLUSH };
		fz_one(f, d, &io);
	}
	io = (struct disk_io){ .op = DISK_OP_CACHE, .count = run };
	fz_one(f, d, &io);

	/* Several at once: their replies may come in any order. */
	for (unsigned i = 0; i < 3; i++) {
		iov[i] = (struct iovec){ iobuf + i * 8 * sec, run * sec };
		batch[i] = (struct disk_io){ .op = DISK_OP_READ, .sector = (i * run) % nsec,
					     .iov = &iov[i], .iovcnt = 1 };
		if (batch[i].sector + run > nsec)
			batch[i].sector = 0;
	}
	batch[3] = (struct disk_io){ .op = DISK_OP_BLOCK_STATUS, .count = nsec,
				     .u.bs = { .extents = ext, .max = 8 } };
	for (unsigned i = 0; i < 4; i++)
		fz_submit(d, &batch[i], &left);
	nbdscript_run_until(f, main_reactor, &left);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	nbdscript_verbose = getenv("FUZZ_VERBOSE") != NULL;
	log_set_level(nbdscript_verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	iobuf = malloc(IOBUF_BYTES);
	if (!iobuf || reactor_new(&main_reactor, 0) < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nbdclient_opts o;
	struct nbdscript *f;
	struct disk *d = NULL;
	char err[256];

	if (size > (1u << 20) || nbdscript_new(data, size, &f) < 0)
		return 0;
	nbdclient_opts_default(&o);
	o.max_connections = 1;
	o.reconnect_delay_ms = 0;
	o.reconnect_max_ms = 0;
	o.reconnect_attempts = 2;
	nbdscript_client_opts(f, &o);
	if (nbdclient_open("nbd+unix:///?socket=fuzz", nbdscript_read_only(f), &o, &d, err,
			   sizeof(err)) == 0) {
		fz_drive(f, d);
		disk_unref(d);
	}
	nbdscript_free(f);
	return 0;
}
