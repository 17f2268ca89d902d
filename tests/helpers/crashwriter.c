/* SPDX-License-Identifier: MIT */
/*
 * crashwriter.c: a test helper for crash-safety tests
 * (tests/integration/test-sqlite-crash.sh).
 *
 *   crashwriter write SPEC FLUSH_EVERY
 *     Writes sector i (i = 0, 1, 2, ...) of SPEC with a pattern tagged i,
 *     16 requests in flight. After every FLUSH_EVERY writes it waits for
 *     the writes in flight, sends a flush and, when the flush completes,
 *     prints "flushed N" (N = writes covered) on stdout and flushes stdout.
 *     Runs until killed or the disk is full.
 *   crashwriter verify SPEC N
 *     Checks that sectors 0..N-1 hold their pattern, and that every other
 *     sector holds either its pattern or zeroes (never anything else).
 *     Exit 0 when all is well, 1 with a message otherwise.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/reactor.h"
#include "storage/disk.h"
#include "storage/spec.h"

#define DEPTH 16

struct cw {
	struct disk *d;
	uint32_t ss;
	uint64_t count;
	uint64_t next;          /* next sector to write */
	uint64_t flush_every;
	uint64_t covered;       /* writes covered by the flush in flight */
	unsigned inflight;
	bool flushing;
	bool stop;
	int failed;
	struct disk_io io[DEPTH];
	struct iovec iov[DEPTH];
	uint8_t *buf[DEPTH];
	struct disk_io fio;
};

static void fill(uint8_t *p, uint32_t ss, uint64_t sector)
{
	for (uint32_t i = 0; i < ss; i += 8) {
		uint64_t v = (sector + 1) * 0x9E3779B97F4A7C15ull ^ i;

		memcpy(p + i, &v, 8);
	}
}

static void cw_pump(struct cw *c);

static void cw_write_done(struct disk_io *io)
{
	struct cw *c = io->opaque;

	c->inflight--;
	if (io->status != DISK_OK) {
		if (io->status != DISK_ILLEGAL_BLOCK)
			fprintf(stderr, "crashwriter: write at %" PRIu64 ": %s\n", io->sector,
				disk_status_str(io->status));
		c->failed = io->status != DISK_ILLEGAL_BLOCK;
		c->stop = true;
	}
	cw_pump(c);
}

static void cw_flush_done(struct disk_io *io)
{
	struct cw *c = io->opaque;

	c->flushing = false;
	if (io->status != DISK_OK) {
		fprintf(stderr, "crashwriter: flush: %s\n", disk_status_str(io->status));
		c->failed = 1;
		c->stop = true;
	} else {
		printf("flushed %" PRIu64 "\n", c->covered);
		fflush(stdout);
	}
	cw_pump(c);
}

static void cw_pump(struct cw *c)
{
	if (c->stop || c->flushing)
		return;
	if (c->next > 0 && c->next % c->flush_every == 0 && c->covered != c->next) {
		/* Time to flush: once every write before it has completed. */
		if (c->inflight)
			return;
		c->covered = c->next;
		c->flushing = true;
		memset(&c->fio, 0, sizeof(c->fio));
		c->fio.op = DISK_OP_FLUSH;
		c->fio.done = cw_flush_done;
		c->fio.opaque = c;
		disk_submit(c->d, &c->fio);
		return;
	}
	while (c->inflight < DEPTH && c->next < c->count &&
	       !(c->next > 0 && c->next % c->flush_every == 0 && c->covered != c->next)) {
		unsigned slot = (unsigned)(c->next % DEPTH);
		struct disk_io *io = &c->io[slot];

		fill(c->buf[slot], c->ss, c->next);
		memset(io, 0, sizeof(*io));
		io->op = DISK_OP_WRITE;
		io->sector = c->next;
		c->iov[slot].iov_base = c->buf[slot];
		c->iov[slot].iov_len = c->ss;
		io->iov = &c->iov[slot];
		io->iovcnt = 1;
		io->done = cw_write_done;
		io->opaque = c;
		c->next++;
		c->inflight++;
		disk_submit(c->d, io);
	}
	if (c->next >= c->count && !c->inflight)
		c->stop = true;
}

int main(int argc, char **argv)
{
	struct reactor *r;
	struct disk *d;
	char err[1024] = "";
	int ret;

	if (argc != 4 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "verify") != 0)) {
		fprintf(stderr, "usage: crashwriter write SPEC FLUSH_EVERY | verify SPEC N\n");
		return 2;
	}
	if (reactor_new(&r, 0) < 0)
		return 1;
	ret = spec_open_str(argv[2], strcmp(argv[1], "verify") == 0, NULL, &d, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "crashwriter: %s\n", err);
		return 1;
	}
	uint32_t ss = disk_sector_size(d);
	uint64_t count = disk_sector_count(d), n = strtoull(argv[3], NULL, 10);

	if (strcmp(argv[1], "write") == 0) {
		struct cw c = { .d = d, .ss = ss, .count = count, .flush_every = n ? n : 1 };

		for (unsigned i = 0; i < DEPTH; i++)
			c.buf[i] = reactor_buf_get(r, ss, false);
		cw_pump(&c);
		reactor_run_until(r, &c.stop);
		while (c.inflight || c.flushing)
			reactor_run_once(r, true);
		for (unsigned i = 0; i < DEPTH; i++)
			reactor_buf_put(r, c.buf[i], ss);
		ret = c.failed;
	} else {
		enum { CHUNK = 256 };
		uint8_t *buf = malloc((size_t)ss * CHUNK), *want = malloc(ss), *zero = calloc(1, ss);

		ret = 0;
		for (uint64_t base = 0; base < count && ret == 0; base += CHUNK) {
			uint64_t k = count - base < CHUNK ? count - base : CHUNK;
			int st = disk_sync_read(d, base, buf, (size_t)(k * ss));

			if (st != DISK_OK) {
				fprintf(stderr, "crashwriter: read %" PRIu64 ": %s\n", base,
					disk_status_str(st));
				ret = 1;
			}
			for (uint64_t s = base; s < base + k && ret == 0; s++) {
				uint8_t *got = buf + (s - base) * ss;

				fill(want, ss, s);
				if (s < n && memcmp(got, want, ss) != 0) {
					fprintf(stderr, "crashwriter: sector %" PRIu64 " was covered by a "
						"flush (%" PRIu64 " writes) but does not hold its data\n",
						s, n);
					ret = 1;
				} else if (memcmp(got, want, ss) != 0 && memcmp(got, zero, ss) != 0) {
					fprintf(stderr, "crashwriter: sector %" PRIu64 " holds neither "
						"its data nor zeroes\n", s);
					ret = 1;
				}
			}
		}
		free(buf);
		free(want);
		free(zero);
	}
	disk_unref(d);
	reactor_free(r);
	return ret;
}
