/* SPDX-License-Identifier: MIT */
/*
 * layered-commit.c: commits the top layer of a layered disk (a memdiff:
 * or sqldiff: overlay) into the disk below it while the disk stays in use
 * (layered.h, docs/layered.md "Commit").
 *
 * Notes on the design
 * -------------------
 * - The job runs on a thread of its own with a reactor of its own, and
 *   talks to the top layer through its layer ops and to the target through
 *   disk_sync_*: one piece (at most LC_PIECE_BYTES) at a time, so it adds
 *   one request's worth of load beside the disk's clients, and a cancel or
 *   an error stops it within one piece.
 * - Which sectors: the top layer's block status, run by run. Data runs are
 *   read from the top layer (only the sectors it marks present are
 *   written), zeroed runs become write-zeroes, absent runs are skipped
 *   (the disk below already answers them).
 * - Writes during the commit: the layered disk marks the chunks of every
 *   write or unmap the top layer completed in the dirty tracker
 *   (layered-internal.h) while the commit is active. A pass takes each
 *   word of the bitmap with an exchange before copying its chunks; pass 0
 *   starts with every chunk set. A chunk written after its bits were taken
 *   is set again and copied by the next pass; the job ends when a pass
 *   finds no chunk set, then flushes the target. So every write completed
 *   before that last look is in the target when the job reports done; a
 *   writer that dirties chunks faster than the job copies them keeps it
 *   running (cancel it, or quiesce the writer).
 * - Nothing is removed from the top layer, ever: a failed or cancelled
 *   commit leaves the layered disk reading exactly as before, and the
 *   target holding some of the top layer's sectors (which the top layer
 *   hides). Committing again finishes the job.
 * - Locking: @lock protects @state, @error and @message and goes with
 *   @cond (signalled when the state leaves RUNNING); the counters are
 *   relaxed atomics read by layered_commit_poll.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/layered-internal.h"
#include "storage/layered.h"

/* The largest piece read from the top layer and written to the target. */
#define LC_PIECE_BYTES (1u << 20)

struct layered_commit {
	struct disk *d;                 /* a reference */
	struct disk *target;            /* owned */
	struct layer *top;              /* borrowed from @d */
	struct layered_dirty *t;        /* claimed; released when the job ends */
	uint32_t shift;                 /* log2 of the sector size */
	uint64_t range;                 /* sectors considered: [0, range) */
	void *buf;                      /* LC_PIECE_BYTES */
	uint64_t *marker_words;         /* a bitmap over one piece */
	struct reactor *r;              /* the job thread's */
	pthread_t thread;

	atomic_bool cancel;
	_Atomic uint64_t done_sectors, total_sectors;
	atomic_uint passes;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum layered_commit_state state;
	int error;
	char message[160];
};

const char *layered_commit_state_str(enum layered_commit_state s)
{
	switch (s) {
	case LAYERED_COMMIT_RUNNING: return "running";
	case LAYERED_COMMIT_DONE: return "done";
	case LAYERED_COMMIT_FAILED: return "failed";
	case LAYERED_COMMIT_CANCELLED: return "cancelled";
	}
	return "?";
}

/* Records the first failure (a -errno and what failed). Job thread. */
static int lc_fail(struct layered_commit *c, int err, const char *fmt, ...) PRINTF_FMT(3, 4);

static int lc_fail(struct layered_commit *c, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->lock);
	if (c->error == 0) {
		c->error = err;
		va_start(ap, fmt);
		vsnprintf(c->message, sizeof(c->message), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* A status of a request as a -errno. */
static int lc_errno(int status, int os_errno)
{
	switch (status) {
	case DISK_OK: return 0;
	case DISK_IO_ERROR: return os_errno > 0 ? -os_errno : -EIO;
	case DISK_READ_ONLY: return -EROFS;
	case DISK_ILLEGAL_BLOCK: return -ERANGE;
	case DISK_INVALID_INPUT: return -EINVAL;
	case DISK_UNSUPPORTED: return -EOPNOTSUPP;
	case DISK_MEDIUM_ERROR: return -EIO;
	default: return -EIO;
	}
}

/* A status for a message: the errno's text for an I/O error. */
static const char *lc_status_text(int status, int os_errno)
{
	return status == DISK_IO_ERROR && os_errno > 0 ? strerror(os_errno)
						       : disk_status_str(status);
}

static void lc_layer_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

/* Runs a READ or BLOCK_STATUS on the top layer and waits for it. */
static int lc_layer_io(struct layered_commit *c, struct disk_io *io)
{
	const struct layer_ops *ops = layer_get_ops(c->top);
	bool done = false;
	int st;

	io->done = lc_layer_done;
	io->opaque = &done;
	io->reactor = c->r;
	st = io->op == DISK_OP_READ ? ops->read(c->top, io) : ops->block_status(c->top, io);
	if (st != DISK_PENDING) {
		io->status = st;
		return st;
	}
	if (reactor_run_until(c->r, &done) < 0 && !done)
		return DISK_IO_ERROR;
	return io->status;
}

/* The top layer's current count, clamped to the range: a RAM layer
 * shrunk during the commit has nothing past its end to copy. */
static uint64_t lc_end(struct layered_commit *c)
{
	return MIN(c->range, layer_get_ops(c->top)->sector_count(c->top));
}

/* Copies the data sectors the top layer holds in [s, s + n) (n at most
 * one piece). Adds what it wrote to *copied. Returns 0 or -errno. */
static int lc_copy_data(struct layered_commit *c, uint64_t s, uint64_t n, uint64_t *copied)
{
	struct iovec iov = { .iov_base = c->buf, .iov_len = n << c->shift };
	struct disk_io io = { .op = DISK_OP_READ, .sector = s, .count = n, .iov = &iov, .iovcnt = 1 };
	struct bitmap marker;
	uint64_t rs, re, from = s;
	int st;

	memset(c->marker_words, 0, BITMAP_WORDS(n) * sizeof(uint64_t));
	bitmap_init(&marker, s, n, c->marker_words);
	io.u.marker = &marker;
	st = lc_layer_io(c, &io);
	if (st != DISK_OK)
		return lc_fail(c, lc_errno(st, io.os_errno),
			       "reading the top layer at sector %" PRIu64 " (+%" PRIu64 "): %s", s, n,
			       lc_status_text(st, io.os_errno));
	while (bitmap_next_run(&marker, from, true, &rs, &re)) {
		struct disk_io w = { .op = DISK_OP_WRITE, .sector = rs };
		struct iovec wiov = { .iov_base = (char *)c->buf + ((rs - s) << c->shift),
				      .iov_len = (re - rs) << c->shift };

		w.iov = &wiov;
		w.iovcnt = 1;
		st = disk_sync_io(c->target, &w);
		if (st != DISK_OK)
			return lc_fail(c, lc_errno(st, w.os_errno),
				       "writing the disk below at sector %" PRIu64 " (+%" PRIu64 "): %s",
				       rs, re - rs, lc_status_text(st, w.os_errno));
		*copied += re - rs;
		from = re;
	}
	return 0;
}

/* Walks the top layer's runs in [s, e): counts the present sectors
 * (@copy false) or copies them (@copy true). Adds to *sectors. Returns 0,
 * -ECANCELED, or -errno. */
static int lc_walk(struct layered_commit *c, uint64_t s, uint64_t e, bool copy, uint64_t *sectors)
{
	uint64_t piece = LC_PIECE_BYTES >> c->shift;

	e = MIN(e, lc_end(c));
	while (s < e) {
		struct disk_extent ext = { 0 };
		struct disk_io io = { .op = DISK_OP_BLOCK_STATUS, .sector = s, .count = e - s };
		int st;

		if (atomic_load_explicit(&c->cancel, memory_order_relaxed))
			return -ECANCELED;
		io.u.bs.extents = &ext;
		io.u.bs.max = 1;
		st = lc_layer_io(c, &io);
		if (st != DISK_OK)
			return lc_fail(c, lc_errno(st, io.os_errno),
				       "block status of the top layer at sector %" PRIu64 ": %s", s,
				       lc_status_text(st, io.os_errno));
		if (io.u.bs.nr == 0 || ext.count == 0)
			return lc_fail(c, -EIO, "the top layer answered no run at sector %" PRIu64, s);
		ext.count = MIN(ext.count, e - s);
		if (ext.flags == DISK_EXTENT_HOLE) {
			/* Absent: the layer below answers; nothing to copy. */
		} else if (!copy) {
			*sectors += ext.count;
		} else if (ext.flags & DISK_EXTENT_ZERO) {
			/* A zeroed run: present, reads zero, holds no data. */
			struct disk_io z = { .op = DISK_OP_WRITE_ZEROES, .sector = s,
					     .count = MIN(ext.count, piece) };

			ext.count = z.count;
			st = disk_sync_io(c->target, &z);
			if (st != DISK_OK)
				return lc_fail(c, lc_errno(st, z.os_errno),
					       "zeroing the disk below at sector %" PRIu64 " (+%" PRIu64
					       "): %s", s, ext.count, lc_status_text(st, z.os_errno));
			*sectors += ext.count;
			atomic_fetch_add_explicit(&c->done_sectors, ext.count, memory_order_relaxed);
		} else {
			uint64_t n = MIN(ext.count, piece), copied = 0;
			int r = lc_copy_data(c, s, n, &copied);

			if (r < 0)
				return r;
			*sectors += copied;
			atomic_fetch_add_explicit(&c->done_sectors, copied, memory_order_relaxed);
			ext.count = n;
		}
		s += ext.count;
	}
	return 0;
}

/* Counts the present sectors of the chunks set in the bitmap, without
 * taking them. Returns 0 with *sectors, or -errno. */
static int lc_count_dirty(struct layered_commit *c, uint64_t *sectors, bool *any)
{
	struct layered_dirty *t = c->t;

	*any = false;
	for (uint64_t w = 0; w < t->nwords; w++) {
		uint64_t bits = atomic_load(&t->words[w]);

		while (bits) {
			uint64_t ch = w * 64 + (uint64_t)__builtin_ctzll(bits);
			int r;

			bits &= bits - 1;
			*any = true;
			r = lc_walk(c, ch << t->chunk_shift, (ch + 1) << t->chunk_shift, false, sectors);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* One pass: takes each word's dirty bits and copies those chunks. */
static int lc_pass(struct layered_commit *c)
{
	struct layered_dirty *t = c->t;

	for (uint64_t w = 0; w < t->nwords; w++) {
		/* Sequentially consistent, as the writers' marks are: the data
		 * of a write whose bit is taken here is what the copy reads,
		 * and a mark made before a pass began is seen by that pass. */
		uint64_t bits = atomic_exchange(&t->words[w], 0);

		while (bits) {
			uint64_t ch = w * 64 + (uint64_t)__builtin_ctzll(bits), copied = 0;
			int r;

			bits &= bits - 1;
			r = lc_walk(c, ch << t->chunk_shift, (ch + 1) << t->chunk_shift, true, &copied);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int lc_run(struct layered_commit *c)
{
	struct layered_dirty *t = c->t;
	struct disk_io flush = { .op = DISK_OP_FLUSH };
	uint64_t total = 0;
	int r, st;

	/* Active before anything is read: a write that completes from now
	 * on marks its chunks; one that completed before is in the layer. */
	atomic_store(&t->active, true);
	for (uint64_t w = 0; w < t->nwords; w++) {
		uint64_t bits = ~0ull;

		if (w == t->nwords - 1 && t->nchunks % 64)
			bits = (1ull << (t->nchunks % 64)) - 1;
		atomic_store_explicit(&t->words[w], bits, memory_order_relaxed);
	}
	r = lc_walk(c, 0, c->range, false, &total);
	if (r < 0)
		return r;
	atomic_store(&c->total_sectors, total);
	for (;;) {
		uint64_t more = 0;
		bool any;

		atomic_fetch_add(&c->passes, 1);
		r = lc_pass(c);
		if (r < 0)
			return r;
		/* What was written meanwhile: the next pass's work. */
		r = lc_count_dirty(c, &more, &any);
		if (r < 0)
			return r;
		if (!any)
			break;
		atomic_fetch_add(&c->total_sectors, more);
	}
	st = disk_sync_io(c->target, &flush);
	if (st != DISK_OK)
		return lc_fail(c, lc_errno(st, flush.os_errno), "flushing the disk below: %s",
			       lc_status_text(st, flush.os_errno));
	return 0;
}

static void *lc_thread(void *arg)
{
	struct layered_commit *c = arg;
	enum layered_commit_state end;
	int r = reactor_new(&c->r, 0);

	if (r < 0)
		lc_fail(c, r, "no reactor for the commit: %s", strerror(-r));
	else
		r = lc_run(c);
	if (r == -ECANCELED) {
		/* What was copied is made durable; the layered disk reads the
		 * same either way. A failing flush is logged, not reported:
		 * the job was asked to stop, and it did. */
		int st = disk_sync_flush(c->target);

		if (st != DISK_OK)
			log_warn("layered commit: flush after cancel: %s", disk_status_str(st));
		end = LAYERED_COMMIT_CANCELLED;
	} else {
		end = r < 0 ? LAYERED_COMMIT_FAILED : LAYERED_COMMIT_DONE;
	}
	/* The total never lags what was copied (pass 0 may copy sectors
	 * written after its count). */
	if (atomic_load(&c->done_sectors) > atomic_load(&c->total_sectors))
		atomic_store(&c->total_sectors, atomic_load(&c->done_sectors));
	layered_dirty_release(c->t);
	if (end == LAYERED_COMMIT_FAILED)
		log_error("layered commit failed: %s", c->message);
	reactor_free(c->r);
	c->r = NULL;
	pthread_mutex_lock(&c->lock);
	c->state = end;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int layered_commit_start(struct disk *d, struct disk *target, struct layered_commit **out,
			 char *err, size_t errlen)
{
	const struct disk_info *di = disk_get_info(d), *ti = disk_get_info(target);
	struct layered_commit *c;
	struct layer *top;
	uint64_t top_count;
	int r;

	if (layered_disk_layer_count(d) < 2)
		return errbuf_printf(err, errlen, "the disk is not an overlay (a layered disk with a "
				     "layer below the top)");
	if (ti->read_only)
		return errbuf_fail(err, errlen, -EROFS, "the disk below is read-only");
	if (ti->sector_size != di->sector_size)
		return errbuf_printf(err, errlen, "the disk below has %u-byte sectors, the overlay %u",
				     ti->sector_size, di->sector_size);
	top = layered_disk_layer(d, 0);
	top_count = layer_get_ops(top)->sector_count(top);
	if (top_count > disk_sector_count(target))
		return errbuf_fail(err, errlen, -EFBIG, "the overlay (%" PRIu64 " sectors) is larger "
				   "than the disk below (%" PRIu64 ")", top_count,
				   disk_sector_count(target));
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->buf = malloc(LC_PIECE_BYTES);
	c->marker_words = calloc(BITMAP_WORDS(LC_PIECE_BYTES >> di->sector_shift),
				 sizeof(uint64_t));
	if (!c->buf || !c->marker_words) {
		r = -ENOMEM;
		goto fail;
	}
	r = layered_dirty_claim(d, &c->t, err, errlen);
	if (r < 0) {
		if (r == -EBUSY)
			errbuf_fail(err, errlen, r, "a commit of this disk is already running");
		goto fail;
	}
	c->top = top;
	c->shift = di->sector_shift;
	c->range = MIN(top_count, c->t->sectors);
	c->d = disk_ref(d);
	c->target = target;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->state = LAYERED_COMMIT_RUNNING;
	r = -pthread_create(&c->thread, NULL, lc_thread, c);
	if (r < 0) {
		layered_dirty_release(c->t);
		disk_unref(c->d);
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->cond);
		errbuf_fail(err, errlen, r, "cannot start the commit thread: %s", strerror(-r));
		goto fail;
	}
	*out = c;
	return 0;

fail:
	free(c->marker_words);
	free(c->buf);
	free(c);
	return r;
}

void layered_commit_poll(struct layered_commit *c, struct layered_commit_progress *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_lock(&c->lock);
	p->state = c->state;
	p->error = c->state == LAYERED_COMMIT_FAILED ? c->error : 0;
	if (p->state == LAYERED_COMMIT_FAILED)
		snprintf(p->message, sizeof(p->message), "%s", c->message);
	pthread_mutex_unlock(&c->lock);
	p->done_sectors = atomic_load_explicit(&c->done_sectors, memory_order_relaxed);
	p->total_sectors = atomic_load_explicit(&c->total_sectors, memory_order_relaxed);
	p->passes = atomic_load_explicit(&c->passes, memory_order_relaxed);
	if (p->total_sectors < p->done_sectors)
		p->total_sectors = p->done_sectors;
}

void layered_commit_cancel(struct layered_commit *c)
{
	atomic_store(&c->cancel, true);
}

void layered_commit_wait(struct layered_commit *c, struct layered_commit_progress *p)
{
	pthread_mutex_lock(&c->lock);
	while (c->state == LAYERED_COMMIT_RUNNING)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	if (p)
		layered_commit_poll(c, p);
}

void layered_commit_free(struct layered_commit *c)
{
	if (!c)
		return;
	layered_commit_cancel(c);
	layered_commit_wait(c, NULL);
	pthread_join(c->thread, NULL);
	disk_unref(c->target);
	disk_unref(c->d);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->marker_words);
	free(c->buf);
	free(c);
}
