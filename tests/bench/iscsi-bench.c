// SPDX-License-Identifier: MIT
/*
 * iscsi-bench.c: a small iSCSI load client on libiscsi's asynchronous API,
 * for tests/bench/bench-iscsi.sh (Debian's fio has no iSCSI engine, and
 * libiscsi's iscsi-perf only reads). One session, a fixed number of
 * commands in flight, for a fixed time:
 *
 *   iscsi-bench [-w] [-r] [-b BYTES] [-q DEPTH] [-t SECONDS] [-s SPAN] URL
 *
 * URL is iscsi://HOST:PORT/IQN/LUN, or an NBD URI (nbd://, nbd+unix://...):
 * then the same loop drives libnbd's asynchronous API instead (pread or
 * pwrite at the same offsets), so an iSCSI target and an NBD server are
 * compared with one client program at one depth (docs/bench-iscsi.md).
 *
 *   -w  WRITE(16) (default READ(16))     -r  random offsets (default sequential)
 *   -b  bytes per command (default 4096, a multiple of the block size)
 *   -q  commands in flight (default 32)  -t  seconds (default 10)
 *   -s  bytes of the LU to cover from offset 0 (default the whole LU)
 *
 * Prints one line: "ios N seconds S iops I mib_s M errors E". Exit 1 when
 * any command failed. Built by bench-iscsi.sh (libiscsi-dev,
 * libnbd-dev), not by make.
 *
 * Each slot owns its data buffer, given to libiscsi as an iovec, so the
 * client copies nothing per command (libiscsi still allocates the task).
 * Random offsets come from a xorshift generator seeded with a constant, so
 * two targets see the same offsets.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <libnbd.h>

struct bench;

struct slot {
	struct bench *b;
	unsigned char *buf;
	struct scsi_iovec iov;
	struct slot *next_ready;        /* NBD: done, to be resubmitted */
};

struct bench {
	struct iscsi_context *iscsi;
	struct nbd_handle *nbd;         /* set in NBD mode (then iscsi is NULL) */
	struct slot *ready;
	int lun;
	bool write, random;
	uint32_t block_bytes, io_bytes;
	uint64_t span_blocks, next_lba, rng;
	uint64_t ios, errors, inflight;
	double end;
	bool stopping;
};

static double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t bench_rand(struct bench *b)
{
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	return b->rng;
}

static uint64_t bench_next_lba(struct bench *b)
{
	uint64_t per_io = b->io_bytes / b->block_bytes;
	uint64_t slots = b->span_blocks / per_io;
	uint64_t lba;

	if (b->random)
		return bench_rand(b) % slots * per_io;
	lba = b->next_lba;
	b->next_lba = lba + per_io + per_io > b->span_blocks ? 0 : lba + per_io;
	return lba;
}

static void bench_done(struct iscsi_context *iscsi, int status, void *command_data, void *opaque);
static int nbd_done(void *opaque, int *error);

static int bench_submit(struct slot *s)
{
	struct bench *b = s->b;
	uint64_t lba = bench_next_lba(b);
	struct scsi_task *t;

	if (b->nbd) {
		nbd_completion_callback cb = { .callback = nbd_done, .user_data = s };
		uint64_t off = lba * b->block_bytes;
		int64_t h = b->write ? nbd_aio_pwrite(b->nbd, s->buf, b->io_bytes, off, cb, 0)
				     : nbd_aio_pread(b->nbd, s->buf, b->io_bytes, off, cb, 0);

		if (h < 0) {
			fprintf(stderr, "iscsi-bench: cannot queue a command: %s\n", nbd_get_error());
			return -ENOMEM;
		}
		b->inflight++;
		return 0;
	}
	if (b->write)
		t = iscsi_write16_iov_task(b->iscsi, b->lun, lba, NULL, b->io_bytes, b->block_bytes,
					   0, 0, 0, 0, 0, bench_done, s, &s->iov, 1);
	else
		t = iscsi_read16_iov_task(b->iscsi, b->lun, lba, b->io_bytes, b->block_bytes,
					  0, 0, 0, 0, 0, bench_done, s, &s->iov, 1);
	if (!t) {
		fprintf(stderr, "iscsi-bench: cannot queue a command: %s\n", iscsi_get_error(b->iscsi));
		return -ENOMEM;
	}
	b->inflight++;
	return 0;
}

static void bench_done(struct iscsi_context *iscsi, int status, void *command_data, void *opaque)
{
	struct slot *s = opaque;
	struct bench *b = s->b;
	struct scsi_task *t = command_data;

	(void)iscsi;
	b->inflight--;
	if (status != SCSI_STATUS_GOOD) {
		if (b->errors++ < 5)
			fprintf(stderr, "iscsi-bench: command failed: %s\n", iscsi_get_error(b->iscsi));
	} else {
		b->ios++;
	}
	scsi_free_scsi_task(t);
	if (!b->stopping && bench_now() >= b->end)
		b->stopping = true;
	if (!b->stopping && bench_submit(s) < 0)
		b->stopping = true;
}

/* libnbd completion: counted here, resubmitted from the main loop (not
 * from inside libnbd's callback). Returning 1 retires the command. */
static int nbd_done(void *opaque, int *error)
{
	struct slot *s = opaque;
	struct bench *b = s->b;

	b->inflight--;
	if (*error) {
		if (b->errors++ < 5)
			fprintf(stderr, "iscsi-bench: command failed: %s\n", strerror(*error));
	} else {
		b->ios++;
	}
	s->next_ready = b->ready;
	b->ready = s;
	return 1;
}

/* NBD: connects to @uri; sets the size (in 512-byte units, so random
 * offsets match the iSCSI run's byte offsets). */
static int nbd_open(struct bench *b, const char *uri)
{
	int64_t size;

	b->nbd = nbd_create();
	if (!b->nbd || nbd_connect_uri(b->nbd, uri) < 0 || (size = nbd_get_size(b->nbd)) < 0) {
		fprintf(stderr, "iscsi-bench: %s: %s\n", uri, nbd_get_error());
		return -1;
	}
	b->block_bytes = 512;
	b->span_blocks = (uint64_t)size / b->block_bytes;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: iscsi-bench [-w] [-r] [-b BYTES] [-q DEPTH] [-t SECONDS] [-s SPAN] URL\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct bench b = { .rng = 0x9e3779b97f4a7c15ull };
	unsigned depth = 32;
	double seconds = 10, t0, t1;
	uint64_t span_bytes = 0;
	struct iscsi_url *url;
	struct scsi_task *t;
	struct scsi_readcapacity16 *rc16;
	struct slot *slots;
	int opt;

	b.io_bytes = 4096;
	while ((opt = getopt(argc, argv, "wrb:q:t:s:")) != -1) {
		switch (opt) {
		case 'w': b.write = true; break;
		case 'r': b.random = true; break;
		case 'b': b.io_bytes = strtoul(optarg, NULL, 0); break;
		case 'q': depth = strtoul(optarg, NULL, 0); break;
		case 't': seconds = strtod(optarg, NULL); break;
		case 's': span_bytes = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || depth == 0 || b.io_bytes == 0)
		usage();

	if (strncmp(argv[optind], "nbd", 3) == 0) {
		if (nbd_open(&b, argv[optind]) < 0)
			return 1;
	} else {
		b.iscsi = iscsi_create_context("iqn.2024-01.org.diskstack:iscsi-bench");
		if (!b.iscsi) {
			fprintf(stderr, "iscsi-bench: no libiscsi context\n");
			return 1;
		}
		url = iscsi_parse_full_url(b.iscsi, argv[optind]);
		if (!url) {
			fprintf(stderr, "iscsi-bench: %s\n", iscsi_get_error(b.iscsi));
			return 1;
		}
		iscsi_set_targetname(b.iscsi, url->target);
		iscsi_set_session_type(b.iscsi, ISCSI_SESSION_NORMAL);
		iscsi_set_header_digest(b.iscsi, ISCSI_HEADER_DIGEST_NONE);
		if (iscsi_full_connect_sync(b.iscsi, url->portal, url->lun) != 0) {
			fprintf(stderr, "iscsi-bench: login to %s failed: %s\n", argv[optind], iscsi_get_error(b.iscsi));
			return 1;
		}
		b.lun = url->lun;
		iscsi_destroy_url(url);

		t = iscsi_readcapacity16_sync(b.iscsi, b.lun);
		if (!t || t->status != SCSI_STATUS_GOOD || !(rc16 = scsi_datain_unmarshall(t))) {
			fprintf(stderr, "iscsi-bench: READ CAPACITY(16) failed: %s\n", iscsi_get_error(b.iscsi));
			return 1;
		}
		b.block_bytes = rc16->block_length;
		b.span_blocks = rc16->returned_lba + 1;
		scsi_free_scsi_task(t);
	}
	if (span_bytes && span_bytes / b.block_bytes < b.span_blocks)
		b.span_blocks = span_bytes / b.block_bytes;
	if (b.io_bytes % b.block_bytes || b.io_bytes / b.block_bytes > b.span_blocks) {
		fprintf(stderr, "iscsi-bench: %u bytes per command do not fit blocks of %u in %" PRIu64 "\n",
			b.io_bytes, b.block_bytes, b.span_blocks);
		return 1;
	}

	slots = calloc(depth, sizeof(*slots));
	if (!slots)
		return 1;
	for (unsigned i = 0; i < depth; i++) {
		slots[i].b = &b;
		if (posix_memalign((void **)&slots[i].buf, 4096, b.io_bytes))
			return 1;
		memset(slots[i].buf, 0x5a ^ i, b.io_bytes);
		slots[i].iov = (struct scsi_iovec){ .iov_base = slots[i].buf, .iov_len = b.io_bytes };
	}

	t0 = bench_now();
	b.end = t0 + seconds;
	for (unsigned i = 0; i < depth; i++)
		if (bench_submit(&slots[i]) < 0)
			return 1;
	while (b.nbd && b.inflight > 0) {
		if (nbd_poll(b.nbd, 1000) < 0) {
			fprintf(stderr, "iscsi-bench: %s\n", nbd_get_error());
			return 1;
		}
		if (!b.stopping && bench_now() >= b.end)
			b.stopping = true;
		while (b.ready) {
			struct slot *s = b.ready;

			b.ready = s->next_ready;
			if (!b.stopping && bench_submit(s) < 0)
				b.stopping = true;
		}
	}
	while (!b.nbd && b.inflight > 0) {
		struct pollfd pfd = { .fd = iscsi_get_fd(b.iscsi), .events = iscsi_which_events(b.iscsi) };

		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
			perror("iscsi-bench: poll");
			return 1;
		}
		if (iscsi_service(b.iscsi, pfd.revents) < 0) {
			fprintf(stderr, "iscsi-bench: %s\n", iscsi_get_error(b.iscsi));
			return 1;
		}
		if (!b.stopping && bench_now() >= b.end)
			b.stopping = true;
	}
	t1 = bench_now();

	printf("ios %" PRIu64 " seconds %.3f iops %.0f mib_s %.1f errors %" PRIu64 "\n", b.ios, t1 - t0,
	       b.ios / (t1 - t0), b.ios * (double)b.io_bytes / (t1 - t0) / 1048576.0, b.errors);
	if (b.nbd) {
		nbd_shutdown(b.nbd, 0);
		nbd_close(b.nbd);
	} else {
		iscsi_logout_sync(b.iscsi);
		iscsi_destroy_context(b.iscsi);
	}
	for (unsigned i = 0; i < depth; i++)
		free(slots[i].buf);
	free(slots);
	return b.errors ? 1 : 0;
}
