/* SPDX-License-Identifier: MIT */
/*
 * layered.c: the layered disk (docs/openvmm-compat.md §3).
 *
 * Notes on the design
 * -------------------
 * - Construction (§3.4) attaches layers bottom-up, validates, and folds the
 *   metadata once: sector sizes from the top layer, disk id from the first
 *   layer that has one, FUA as the AND and unmap granularity as the max over
 *   the write path (layers 0..k, k = the first layer without write-through),
 *   and the unmap behaviour by the §3.5 fold. The visible sector count of
 *   layer i > 0 is min(count_0..count_i), frozen at construction; the top
 *   layer's count is read live.
 * - Read (§3.6): a presence bitmap over the request; for each layer top-down,
 *   each maximal run of unset sectors is offered to the layer, which fills
 *   and marks what it holds. Runs are clamped to the layer's visible count
 *   with the intended semantics (sectors at or beyond it are zero for that
 *   layer and all below, but earlier runs still go deeper), not upstream's
 *   equality-only check. Once a read-cache layer misses, every later lower
 *   read lands in a private zeroed bounce buffer; at the end the missed runs
 *   are written back into each cache layer with write-no-overwrite (errors
 *   logged, rate-limited, ignored) and then copied to the caller.
 * - Write and flush walk the write path in order, one layer at a time;
 *   unmap does too, telling each layer whether the next one reads zero
 *   there (next_is_zero). Layers that report ZEROES (RAM, SQLite) keep
 *   what they are told to unmap above a layer that may hold data as
 *   present zeroes (zeroed runs), so the fold gives memdiff: ZEROES too:
 *   the dispatcher turns write-zeroes into unmap, which costs the RAM
 *   layer metadata only, and FAST_ZERO is advertised (DISK_CAP_FAST_ZERO
 *   follows ZEROES). Block status then names the top layer for such a
 *   run, with ZERO | HOLE: it hides the layers below and holds no data.
 * - Block status walks the layers for the first run at a position and names
 *   the layer that holds it; a run no layer holds is a hole that reads zero.
 * - Per-request state comes from the reactor's buffer cache
 *   (reactor_buf_get), so steady-state I/O does not allocate; layer calls
 *   may complete at once (RAM) or later (SQLite, disk-as-layer).
 * - Fused transforms (DISK_CAP_XFORM, io->xform; crypt over mem:/memdiff:):
 *   advertised only when every layer of the write path applies the
 *   transform itself (the RAM layer) and no layer is a read cache (a cache
 *   fill must store what the layer below holds, untransformed, and the
 *   bounce buffer that feeds it would need a transform on the way out; not
 *   worth it). A read hands io->xform to the layers that apply it; what a
 *   layer without it (disk-as-layer, sqlite) reads into the caller's
 *   buffer is transformed there in place when its run completes, and so
 *   are the zeroes of sectors no layer holds. The result is byte for byte
 *   what a read without the transform followed by the transform in place
 *   gives. A write passes io->xform to every write-path layer.
 * - Adopted write buffers (disk_info.adopt_bytes, DISK_IO_ADOPT): passed
 *   on when the write path is the top layer alone and there is no read
 *   cache; the layer gets the caller's iovec array (lwalk_issue), so what
 *   it swaps in is what the caller sees.
 * - Commit (layered-commit.c, docs/layered.md "Commit"): while one runs,
 *   each write or unmap the top layer completes sets the bits of its
 *   chunks in the dirty tracker (lwalk_mark; layered-internal.h). Without
 *   a commit that costs one load of a NULL pointer per write.
 * - Thread safety: the layered disk itself is immutable after construction
 *   but for the tracker pointer, set once under commit_lock; layers protect
 *   their own state.
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
#include "storage/layered-internal.h"
#include "storage/layered.h"

struct layer {
	const struct layer_ops *ops;
	void *priv;
	/* Counted by layer_stats_enable (NULL: never); read on every layer
	 * call, beside @ops. */
	_Atomic(struct disk_stats *) stats;
	bool attached;
	struct layer_meta meta;   /* recorded by layer_attach */
};

int layer_new(const struct layer_ops *ops, void *priv, struct layer **out)
{
	struct layer *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->ops = ops;
	l->priv = priv;
	*out = l;
	return 0;
}

void layer_free(struct layer *l)
{
	if (!l)
		return;
	if (l->ops->close)
		l->ops->close(l);
	disk_stats_set_free(atomic_load_explicit(&l->stats, memory_order_acquire));
	free(l);
}

void *layer_priv(const struct layer *l) { return l->priv; }

int layer_attach(struct layer *l, const struct layer_meta *lower, char *err, size_t errlen)
{
	struct layer_meta meta;
	int r;

	memset(&meta, 0, sizeof(meta));
	r = l->ops->attach(l, lower, &meta, err, errlen);
	if (r < 0)
		return r;
	l->meta = meta;
	l->attached = true;
	return 0;
}

const struct layer_meta *layer_get_meta(const struct layer *l)
{
	return l->attached ? &l->meta : NULL;
}
const struct layer_ops *layer_get_ops(const struct layer *l) { return l->ops; }

/* ---- statistics of layers (docs/ctl.md, "stats") ---------------------------------- */

int layer_stats_enable(struct layer *l)
{
	if (!l->attached || !l->meta.sector_size)
		return -EINVAL;
	return disk_stats_set_enable(&l->stats, (uint32_t)__builtin_ctz(l->meta.sector_size));
}

void layer_stats_disable(struct layer *l)
{
	disk_stats_set_disable(&l->stats);
}

int layer_stats_read(struct layer *l, bool reset, uint64_t *since_ns, struct iostats_op *out)
{
	return disk_stats_set_read(&l->stats, reset, since_ns, out);
}

/* Whether a request handed to @l may count: while the layer was never
 * counted, this load and a branch are all a request pays (then
 * layer_stats_on says whether counting is on now). */
static inline bool layer_stats_maybe(const struct layer *l)
{
	return unlikely(atomic_load_explicit(&((struct layer *)l)->stats, memory_order_relaxed) !=
			NULL);
}

/* The statistics a request handed to @l now counts in, or NULL. The
 * caller takes reactor_now_ns() when it is not NULL and, once the layer
 * has answered, counts the request with disk_stats_set_count. */
static struct disk_stats *layer_stats_on(struct layer *l)
{
	struct disk_stats *st = atomic_load_explicit(&l->stats, memory_order_acquire);

	return disk_stats_set_on(st) ? st : NULL;
}

struct lentry {
	struct layer *layer;
	bool read_cache;
	bool write_through;
	struct layer_meta meta;
	uint64_t visible;        /* frozen visible count (i > 0) */
};

struct layered {
	/* The commit's dirty tracker (layered-internal.h): NULL until the
	 * first commit, then owned here; set once under commit_lock. */
	_Atomic(struct layered_dirty *) dirty;
	pthread_mutex_t commit_lock;
	bool xform;              /* DISK_CAP_XFORM advertised */
	unsigned n;
	unsigned write_path;     /* number of layers in the write path */
	unsigned ncache;         /* number of read-cache layers */
	struct lentry l[];
};

static const struct disk_ops layered_ops;

static inline struct layered *layered_of(struct disk *d) { return disk_priv(d); }

/* The layered disk handling @io, saved in io->hctx[0] (the handling disk's
 * scratch) by the ops that need it later: io->disk is the disk the request
 * was submitted to, which may be a pass-through decorator above this one. */
static inline struct disk *layered_hdisk(const struct disk_io *io)
{
	return (struct disk *)io->hctx[0];
}

/* Visible count of layer i: live for the top, frozen below. */
static inline uint64_t layered_visible(struct layered *ld, unsigned i)
{
	return i == 0 ? ld->l[0].layer->ops->sector_count(ld->l[0].layer) : ld->l[i].visible;
}

/* ---- read ----------------------------------------------------------------------- */

/* Rate limit for read-cache population failures: one message per second. */
static _Atomic uint64_t cache_fail_last_ns;

static void layered_log_cache_failure(unsigned layer, uint64_t sector, uint64_t count, int st)
{
	uint64_t now = reactor_now_ns();
	uint64_t last = atomic_load_explicit(&cache_fail_last_ns, memory_order_relaxed);

	if (now - last < 1000000000ull ||
	    !atomic_compare_exchange_strong(&cache_fail_last_ns, &last, now))
		return;
	log_warn("layered: filling read cache layer %u at sector %" PRIu64 " (+%" PRIu64
		 ") failed: %s", layer, sector, count, disk_status_str(st));
}

enum lread_phase { LR_READ, LR_POPULATE };

/* State of one layered read; lives in a buffer from the reactor cache. */
struct lread {
	struct disk_io lio;        /* the request handed to a layer */
	struct disk_io *parent;
	struct layered *ld;
	size_t alloc_bytes;
	struct bitmap marker;
	enum lread_phase phase;
	unsigned layer;            /* current layer */
	uint64_t pos;              /* next LBA to look at in the current layer */
	uint64_t run_end;          /* end of the run being read */
	uint64_t set_before;       /* marker.nset before the run was offered */
	void *bounce;
	size_t bounce_bytes;
	unsigned first_cache;      /* first cache layer that missed (valid if bounce) */
	unsigned pop_layer;        /* populate: current cache layer */
	uint64_t **snap;           /* per layer: bitmap after a missing cache layer's pass, or NULL */
	struct iovec *iov;         /* room for parent iovcnt + 1 entries */
	int iov_room;
	uint64_t *words;           /* marker storage */
	struct disk_stats *lstats; /* the statistics @lio counts in when it ends (NULL:
	                            * none; set only while it is with a layer) */
	uint64_t lt0;              /* with @lstats: when @lio was handed on */
};

static void lread_step(struct lread *st);

/* st->lio goes to layer @l next (layer_stats_maybe(@l) was true): notes
 * the statistics it counts in, if they are on (lread_count). */
static void lread_count_start(struct lread *st, struct layer *l)
{
	st->lstats = layer_stats_on(l);
	st->lt0 = reactor_now_ns();
}

static void lread_count_now(struct lread *st, int status, uint64_t sectors)
{
	if (status != DISK_OK || sectors > 0)
		disk_stats_set_count(st->lstats, st->parent->reactor, st->lio.op, status, sectors,
				     st->lt0);
	st->lstats = NULL;
}

/* st->lio ended with @status: counts it on its layer's statistics, if
 * lread_count_start found them on. A READ counts when the layer served some of
 * it (@sectors: those it marked) or failed: the runs offered to a layer
 * that holds none of them are look-ups, not reads it served. */
static inline void lread_count(struct lread *st, int status, uint64_t sectors)
{
	if (unlikely(st->lstats))
		lread_count_now(st, status, sectors);
}

static void lread_free(struct lread *st)
{
	struct reactor *r = st->parent->reactor;
	size_t words = BITMAP_WORDS(st->marker.len);

	for (unsigned i = 0; i < st->ld->n; i++) {
		if (st->snap[i])
			reactor_buf_put(r, st->snap[i], words * sizeof(uint64_t));
	}
	if (st->bounce)
		reactor_buf_put(r, st->bounce, st->bounce_bytes);
	reactor_buf_put(r, st, st->alloc_bytes);
}

/* Finishes the parent; the caller says whether the parent must be completed
 * through disk_io_complete (we are in a callback) or returned (inline). */
static int lread_finish(struct lread *st, int status, bool from_callback)
{
	struct disk_io *parent = st->parent;

	if (status == DISK_IO_ERROR)
		parent->os_errno = st->lio.os_errno;
	if (status == DISK_MEDIUM_ERROR)
		parent->medium = st->lio.medium;
	lread_free(st);
	if (from_callback) {
		disk_io_complete(parent, status);
		return DISK_PENDING;
	}
	return status;
}

/* Runs the parent's transform in place over sectors [s, e) of its buffers.
 * Returns a status (DISK_IO_ERROR with st->lio.os_errno on failure). */
static int lread_xform(struct lread *st, uint64_t s, uint64_t e)
{
	struct disk_io *p = st->parent;
	uint32_t shift = disk_get_info(p->disk)->sector_shift;
	int n = iov_slice(p->iov, p->iovcnt, (s - p->sector) << shift, (e - s) << shift, st->iov,
			  st->iov_room);
	struct iov_pos pos = { 0, 0 };
	int r;

	assert(n > 0);
	r = disk_xform_iov(p, st->iov, n, &pos, DISK_XFORM_IN_IOV, NULL, s, e - s, shift);
	if (r < 0) {
		st->lio.os_errno = -r;
		return DISK_IO_ERROR;
	}
	return DISK_OK;
}

/* Zero-fills the caller's buffer over every still-unset run (and applies
 * the transform to those zeroes). Returns a status. */
static int lread_zero_unset(struct lread *st)
{
	struct disk_io *p = st->parent;
	uint32_t shift = disk_get_info(p->disk)->sector_shift;
	uint64_t s, e, from = p->sector;

	while (bitmap_next_run(&st->marker, from, false, &s, &e)) {
		iov_memset(p->iov, p->iovcnt, (s - p->sector) << shift, 0, (e - s) << shift);
		if (p->xform) {
			int r = lread_xform(st, s, e);

			if (r != DISK_OK)
				return r;
		}
		from = e;
	}
	return DISK_OK;
}

/* Called when the layer finishes a run (inline or from its callback).
 * Returns a status. */
static int lread_run_done(struct lread *st, uint64_t set_before)
{
	struct lentry *le = &st->ld->l[st->layer];
	uint64_t run_len = st->run_end - st->lio.sector;
	uint64_t marked = st->marker.nset - set_before;

	if (st->parent->xform && !st->lio.xform && marked > 0) {
		/* The layer read untransformed data into the caller's buffer:
		 * everything it marked in the run (which was all unset). */
		uint64_t s, e, from = st->lio.sector;

		while (from < st->run_end && bitmap_next_run(&st->marker, from, true, &s, &e) &&
		       s < st->run_end) {
			int r = lread_xform(st, s, MIN(e, st->run_end));

			if (r != DISK_OK)
				return r;
			from = e;
		}
	}

	if (le->read_cache && marked < run_len && !st->snap[st->layer]) {
		/* Remember that this cache layer missed; its snapshot is taken
		 * when its pass is over. Mark with a sentinel for now. */
		st->snap[st->layer] = (uint64_t *)(uintptr_t)1;
	}
	st->pos = st->run_end;
	return DISK_OK;
}

static void lread_layer_cb(struct disk_io *lio)
{
	struct lread *st = container_of(lio, struct lread, lio);
	int r;

	lread_count(st, lio->status, st->marker.nset - st->set_before);
	if (lio->status != DISK_OK) {
		lread_finish(st, lio->status, true);
		return;
	}
	r = lread_run_done(st, st->set_before);
	if (r != DISK_OK) {
		lread_finish(st, r, true);
		return;
	}
	lread_step(st);
}

/* Ends the pass of the current layer: takes the cache snapshot if needed
 * and allocates the bounce buffer on the first miss. Returns a status. */
static int lread_end_layer(struct lread *st)
{
	unsigned i = st->layer;
	struct disk_io *p = st->parent;
	size_t words = BITMAP_WORDS(st->marker.len);

	if (st->snap[i] == (uint64_t *)(uintptr_t)1) {
		st->snap[i] = reactor_buf_get(p->reactor, words * sizeof(uint64_t), false);
		if (!st->snap[i])
			return DISK_IO_ERROR;
		memcpy(st->snap[i], st->marker.words, words * sizeof(uint64_t));
		if (!st->bounce) {
			uint32_t shift = disk_get_info(p->disk)->sector_shift;

			st->bounce_bytes = st->marker.len << shift;
			st->bounce = reactor_buf_get(p->reactor, st->bounce_bytes, true);
			if (!st->bounce)
				return DISK_IO_ERROR;
			st->first_cache = i;
		}
	}
	st->layer++;
	st->pos = p->sector;
	return DISK_OK;
}

/* Populates cache layers: for each missed cache layer (top-down), write each
 * run unset in its snapshot from the bounce buffer with write-no-overwrite.
 * Returns DISK_PENDING if a layer call is outstanding, else DISK_OK when
 * all is done. */
static int lread_populate(struct lread *st, bool from_callback);

static void lread_pop_cb(struct disk_io *lio)
{
	struct lread *st = container_of(lio, struct lread, lio);

	lread_count(st, lio->status, lio->count);
	if (lio->status != DISK_OK)
		layered_log_cache_failure(st->pop_layer, lio->sector, lio->count, lio->status);
	st->pos = lio->sector + lio->count;
	if (lread_populate(st, true) != DISK_PENDING)
		return;
}

static void lread_copy_bounce(struct lread *st)
{
	struct disk_io *p = st->parent;
	uint32_t shift = disk_get_info(p->disk)->sector_shift;
	struct bitmap snap = st->marker;
	uint64_t s, e, from = p->sector;

	/* Everything unset after the first missing cache layer's pass came
	 * through the bounce buffer (zeroes where no layer had data). */
	snap.words = st->snap[st->first_cache];
	while (bitmap_next_run(&snap, from, false, &s, &e)) {
		size_t off = (s - p->sector) << shift;

		iov_from_buf(p->iov, p->iovcnt, off, (char *)st->bounce + off, (e - s) << shift);
		from = e;
	}
}

static int lread_populate(struct lread *st, bool from_callback)
{
	struct disk_io *p = st->parent;
	uint32_t shift = disk_get_info(p->disk)->sector_shift;

	for (; st->pop_layer < st->ld->n; st->pop_layer++, st->pos = p->sector) {
		struct bitmap snap = st->marker;
		struct layer *l = st->ld->l[st->pop_layer].layer;
		uint64_t s, e;
		bool counted;
		int r;

		if (!st->snap[st->pop_layer])
			continue;
		snap.words = st->snap[st->pop_layer];
		while (bitmap_next_run(&snap, st->pos, false, &s, &e)) {
			/* Nothing past the cache layer's visible count is kept. */
			uint64_t vis = layered_visible(st->ld, st->pop_layer);

			if (s >= vis)
				break;
			e = MIN(e, vis);
			memset(&st->lio, 0, sizeof(st->lio));
			st->lio.op = DISK_OP_WRITE;
			st->lio.flags = DISK_IO_NO_OVERWRITE;
			st->lio.sector = s;
			st->lio.count = e - s;
			st->iov[0].iov_base = (char *)st->bounce + ((s - p->sector) << shift);
			st->iov[0].iov_len = (e - s) << shift;
			st->lio.iov = st->iov;
			st->lio.iovcnt = 1;
			st->lio.initiator = p->initiator;
			st->lio.reactor = p->reactor;
			st->lio.done = lread_pop_cb;
			counted = layer_stats_maybe(l);
			if (counted)
				lread_count_start(st, l);
			r = l->ops->write(l, &st->lio);
			if (r == DISK_PENDING)
				return DISK_PENDING;
			if (counted)
				lread_count(st, r, e - s);
			if (r != DISK_OK)
				layered_log_cache_failure(st->pop_layer, s, e - s, r);
			st->pos = e;
		}
	}
	lread_copy_bounce(st);
	return lread_finish(st, DISK_OK, from_callback);
}

/*
 * Drives the read: offers runs to layers until the request is complete or
 * a layer call is outstanding. Runs either inline from layered_read (then
 * returns the final status or DISK_PENDING) or from a layer's callback.
 */
static int lread_drive(struct lread *st, bool from_callback)
{
	struct disk_io *p = st->parent;
	struct layered *ld = st->ld;
	uint32_t shift = disk_get_info(p->disk)->sector_shift;
	uint64_t end = p->sector + p->count;

	while (st->layer < ld->n && st->marker.nset < st->marker.len) {
		struct layer *l = ld->l[st->layer].layer;
		uint64_t s, e;
		bool counted;
		int r, n;

		if (!bitmap_next_run(&st->marker, st->pos, false, &s, &e)) {
			r = lread_end_layer(st);
			if (r != DISK_OK)
				return lread_finish(st, r, from_callback);
			continue;
		}
		if (st->layer > 0) {
			uint64_t vis = ld->l[st->layer].visible;

			/* Sectors at or past the visible count are zero for this
			 * layer and every deeper one; later runs are higher. */
			if (s >= vis) {
				r = lread_end_layer(st);
				if (r != DISK_OK)
					return lread_finish(st, r, from_callback);
				continue;
			}
			e = MIN(e, vis);
		}
		memset(&st->lio, 0, sizeof(st->lio));
		st->lio.op = DISK_OP_READ;
		st->lio.sector = s;
		st->lio.count = e - s;
		st->lio.u.marker = &st->marker;
		st->lio.initiator = p->initiator;
		st->lio.reactor = p->reactor;
		st->lio.done = lread_layer_cb;
		st->set_before = st->marker.nset;
		if (st->bounce) {
			st->iov[0].iov_base = (char *)st->bounce + ((s - p->sector) << shift);
			st->iov[0].iov_len = (e - s) << shift;
			n = 1;
		} else {
			n = iov_slice(p->iov, p->iovcnt, (s - p->sector) << shift, (e - s) << shift,
				      st->iov, st->iov_room);
			assert(n > 0);
		}
		st->lio.iov = st->iov;
		st->lio.iovcnt = n;
		/* Layers that cannot apply the transform read raw data; it is
		 * transformed when the run is done. */
		st->lio.xform = ld->l[st->layer].meta.xform ? p->xform : NULL;
		st->run_end = e;
		counted = layer_stats_maybe(l);
		if (counted)
			lread_count_start(st, l);
		r = l->ops->read(l, &st->lio);
		if (r == DISK_PENDING)
			return DISK_PENDING;
		if (counted)
			lread_count(st, r, st->marker.nset - st->set_before);
		if (r == DISK_OK)
			r = lread_run_done(st, st->set_before);
		if (r != DISK_OK) {
			st->lio.status = r;
			return lread_finish(st, r, from_callback);
		}
	}
	/* Finish the pass bookkeeping of the layer we stopped in (a cache
	 * layer that missed on its last run needs its snapshot). */
	if (st->layer < ld->n && st->snap[st->layer] == (uint64_t *)(uintptr_t)1) {
		int r = lread_end_layer(st);

		if (r != DISK_OK)
			return lread_finish(st, r, from_callback);
	}
	(void)end;
	if (st->marker.nset < st->marker.len) {
		int r = lread_zero_unset(st);

		if (r != DISK_OK)
			return lread_finish(st, r, from_callback);
	}
	if (!st->bounce)
		return lread_finish(st, DISK_OK, from_callback);
	st->phase = LR_POPULATE;
	st->pop_layer = 0;
	st->pos = p->sector;
	return lread_populate(st, from_callback);
}

static void lread_step(struct lread *st)
{
	(void)lread_drive(st, true);
}

static int layered_read(struct disk *d, struct disk_io *io)
{
	struct layered *ld = layered_of(d);
	struct lread *st;
	size_t words, bytes;
	int room;

	if (io->count == 0)
		return DISK_OK;   /* no layer is consulted (§1.3.1) */
	words = BITMAP_WORDS(io->count);
	room = io->iovcnt + 1;
	bytes = sizeof(*st) + words * sizeof(uint64_t) + (size_t)room * sizeof(struct iovec) +
		ld->n * sizeof(uint64_t *);
	st = reactor_buf_get(io->reactor, bytes, false);
	if (!st)
		return DISK_IO_ERROR;
	memset(st, 0, sizeof(*st));
	st->alloc_bytes = bytes;
	st->parent = io;
	st->ld = ld;
	st->words = (uint64_t *)(st + 1);
	memset(st->words, 0, words * sizeof(uint64_t));
	st->iov = (struct iovec *)(st->words + words);
	st->iov_room = room;
	st->snap = (uint64_t **)(st->iov + room);
	memset(st->snap, 0, ld->n * sizeof(uint64_t *));
	bitmap_init(&st->marker, io->sector, io->count, st->words);
	st->pos = io->sector;
	return lread_drive(st, false);
}

/* ---- write, flush, unmap: one layer after another down the write path ------ */

/* A walk over the write path. The child request's sctx holds the index,
 * and while the current layer counts the request (layer_stats_of), its
 * statistics and the start (in two words, for 32-bit uintptr_t). */
enum { LW_INDEX = 0, LW_STATS, LW_T0, LW_T0_HIGH };

/* Layer @l gets the child next: notes the statistics it counts in, if
 * any (the child comes zeroed, and lwalk_count clears them again). */
static void lwalk_count_start(struct disk_io *child, struct layer *l)
{
	struct disk_stats *ls = layer_stats_on(l);
	uint64_t t0;

	if (!ls)
		return;
	t0 = reactor_now_ns();
	child->sctx[LW_STATS] = (uintptr_t)ls;
	child->sctx[LW_T0] = (uintptr_t)t0;
	child->sctx[LW_T0_HIGH] = (uintptr_t)(t0 >> 32);
}

static void lwalk_count_now(struct disk_io *child, int status)
{
	disk_stats_set_count((struct disk_stats *)child->sctx[LW_STATS], child->reactor,
			     child->op, status, child->count,
			     (uint64_t)child->sctx[LW_T0] | (uint64_t)child->sctx[LW_T0_HIGH] << 32);
	child->sctx[LW_STATS] = 0;
}

/* The current layer answered the child with @status: counts it there. */
static inline void lwalk_count(struct disk_io *child, int status)
{
	if (unlikely(child->sctx[LW_STATS]))
		lwalk_count_now(child, status);
}

static int lwalk_issue(struct disk_io *child, bool from_callback);

/* Layer @i finished @parent's request successfully: while a commit runs,
 * a write or unmap that the top layer completed dirties its chunks
 * (layered-internal.h). */
static void lwalk_mark(struct layered *ld, unsigned i, const struct disk_io *parent)
{
	struct layered_dirty *t;
	uint64_t end, c;

	if (i != 0 || parent->op == DISK_OP_FLUSH || parent->count == 0)
		return;
	t = atomic_load_explicit(&ld->dirty, memory_order_acquire);
	if (!t || !atomic_load(&t->active) || parent->sector >= t->sectors)
		return;
	end = MIN(parent->sector + parent->count, t->sectors);
	for (c = parent->sector >> t->chunk_shift; c <= (end - 1) >> t->chunk_shift; c++)
		atomic_fetch_or(&t->words[c / 64], 1ull << (c % 64));
}

static int lchild_finish(struct disk_io *child, int status, bool from_callback)
{
	return disk_io_end_child(child->opaque, child, status, from_callback);
}

static void lwalk_cb(struct disk_io *child)
{
	struct disk_io *parent = child->opaque;

	lwalk_count(child, child->status);
	if (child->status != DISK_OK) {
		lchild_finish(child, child->status, true);
		return;
	}
	lwalk_mark(layered_of(layered_hdisk(parent)), (unsigned)child->sctx[LW_INDEX], parent);
	child->sctx[LW_INDEX]++;
	lwalk_issue(child, true);
}

static int lwalk_issue(struct disk_io *child, bool from_callback)
{
	struct disk_io *parent = child->opaque;
	struct layered *ld = layered_of(layered_hdisk(parent));

	while (child->sctx[LW_INDEX] < ld->write_path) {
		unsigned i = (unsigned)child->sctx[LW_INDEX];
		struct layer *l = ld->l[i].layer;
		bool counted;
		int r;

		disk_io_copy_request(child, parent);
		/* Every write-path layer applies it when it is advertised. */
		child->xform = parent->op == DISK_OP_WRITE ? parent->xform : NULL;
		child->status = DISK_OK;
		counted = layer_stats_maybe(l);
		if (counted)
			lwalk_count_start(child, l);
		switch (parent->op) {
		case DISK_OP_WRITE:
			r = l->ops->write(l, child);
			break;
		case DISK_OP_FLUSH:
			r = l->ops->flush(l, child);
			break;
		case DISK_OP_UNMAP:
			/* next_is_zero: the last layer, or the whole range lies
			 * beyond the next layer's visible count (§3.8). */
			if (i + 1 == ld->n || parent->sector >= ld->l[i + 1].visible)
				child->flags |= DISK_IO_NEXT_IS_ZERO;
			r = l->ops->unmap(l, child);
			break;
		default:
			r = DISK_INVALID_INPUT;
			break;
		}
		if (r == DISK_PENDING)
			return DISK_PENDING;
		if (counted)
			lwalk_count(child, r);
		if (r != DISK_OK)
			return lchild_finish(child, r, from_callback);
		lwalk_mark(ld, i, parent);
		child->sctx[LW_INDEX]++;
	}
	return lchild_finish(child, DISK_OK, from_callback);
}

static int layered_walk(struct disk *d, struct disk_io *io)
{
	struct disk_io *child = disk_io_get_child(io, lwalk_cb);

	if (!child)
		return DISK_IO_ERROR;
	io->hctx[0] = (uintptr_t)d;
	child->reactor = io->reactor;
	child->sctx[LW_INDEX] = 0;
	return lwalk_issue(child, false);
}

/* ---- block status ------------------------------------------------------------------ */

/* State in a child request's sctx: [0] = position, [1] = current layer,
 * [2] = length of the run being resolved, [3..4] = the layer's answer. */
enum { LB_POS = 0, LB_LAYER, LB_LEN };

static int lbs_issue(struct disk_io *child, bool from_callback);

static void lbs_emit(struct disk_io *parent, uint64_t count, uint32_t flags, int32_t layer)
{
	struct disk_extent *ext = parent->u.bs.extents;
	uint32_t nr = parent->u.bs.nr;

	if (nr > 0 && ext[nr - 1].flags == flags && ext[nr - 1].layer == layer) {
		ext[nr - 1].count += count;
		return;
	}
	ext[nr].count = count;
	ext[nr].flags = flags;
	ext[nr].layer = layer;
	parent->u.bs.nr = nr + 1;
}

/* Decides after layer i answered with (count, flags). Returns true when an
 * extent was emitted. */
static void lbs_answer(struct disk_io *child, uint64_t count, uint32_t flags)
{
	struct disk_io *parent = child->opaque;
	unsigned i = (unsigned)child->sctx[LB_LAYER];

	if (count == 0 || count > child->sctx[LB_LEN])
		count = child->sctx[LB_LEN];   /* defensive: a layer answered oddly */
	if (flags == DISK_EXTENT_HOLE) {
		/* Absent here: ask the next layer about this run only. */
		child->sctx[LB_LEN] = count;
		child->sctx[LB_LAYER] = i + 1;
		return;
	}
	lbs_emit(parent, count, flags, (int32_t)i);
	child->sctx[LB_POS] += count;
	child->sctx[LB_LAYER] = 0;
	child->sctx[LB_LEN] = parent->sector + parent->count - child->sctx[LB_POS];
}


static void lbs_cb(struct disk_io *child)
{
	struct disk_extent *e = (struct disk_extent *)(void *)&child->sctx[3];

	if (child->status != DISK_OK) {
		lchild_finish(child, child->status, true);
		return;
	}
	lbs_answer(child, e->count, e->flags);
	lbs_issue(child, true);
}

/* Upper bound on layer queries per request, to bound latency; the client
 * asks again for the rest. */
#define LBS_MAX_QUERIES 4096

static int lbs_issue(struct disk_io *child, bool from_callback)
{
	struct disk_io *parent = child->opaque;
	struct layered *ld = layered_of(layered_hdisk(parent));
	uint64_t end = parent->sector + parent->count;
	unsigned queries = 0;

	while (child->sctx[LB_POS] < end && parent->u.bs.nr < parent->u.bs.max &&
	       queries < LBS_MAX_QUERIES) {
		unsigned i = (unsigned)child->sctx[LB_LAYER];
		uint64_t pos = child->sctx[LB_POS], len = child->sctx[LB_LEN];
		struct disk_extent *e = (struct disk_extent *)(void *)&child->sctx[3];
		struct layer *l;
		int r;

		if (i > 0 && i < ld->n && pos >= ld->l[i].visible)
			i = ld->n;           /* beyond this layer: zero for all below */
		if (i == ld->n) {
			/* Nobody holds it: a hole that reads zero. A run cut
			 * short by the merge rule is still exact. */
			lbs_emit(parent, len, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO, -1);
			child->sctx[LB_POS] += len;
			child->sctx[LB_LAYER] = 0;
			child->sctx[LB_LEN] = end - child->sctx[LB_POS];
			continue;
		}
		if (i > 0)
			len = MIN(len, ld->l[i].visible - pos);
		l = ld->l[i].layer;
		child->sctx[LB_LAYER] = i;
		child->sctx[LB_LEN] = len;
		child->op = DISK_OP_BLOCK_STATUS;
		child->sector = pos;
		child->count = len;
		child->status = DISK_OK;
		memset(e, 0, sizeof(*e));
		child->u.bs.extents = e;
		child->u.bs.max = 1;
		child->u.bs.nr = 0;
		queries++;
		r = l->ops->block_status(l, child);
		if (r == DISK_PENDING)
			return DISK_PENDING;
		if (r != DISK_OK)
			return lchild_finish(child, r, from_callback);
		lbs_answer(child, e->count, e->flags);
	}
	return lchild_finish(child, DISK_OK, from_callback);
}

static int layered_block_status(struct disk *d, struct disk_io *io)
{
	struct disk_io *child;

	_Static_assert(sizeof(struct disk_extent) <= 3 * sizeof(uintptr_t), "extent fits in sctx");
	child = disk_io_get_child(io, lbs_cb);
	if (!child)
		return DISK_IO_ERROR;
	io->hctx[0] = (uintptr_t)d;
	child->reactor = io->reactor;
	child->sctx[LB_POS] = io->sector;
	child->sctx[LB_LAYER] = 0;
	child->sctx[LB_LEN] = io->count;
	return lbs_issue(child, false);
}

/* ---- metadata and the rest ---------------------------------------------------------- */

static uint64_t layered_sector_count(struct disk *d)
{
	struct layered *ld = layered_of(d);

	return ld->l[0].layer->ops->sector_count(ld->l[0].layer);
}

static int layered_watch_resize(struct disk *d, struct disk_resize_watch *w)
{
	struct layer *top = layered_of(d)->l[0].layer;

	if (!top->ops->watch_resize)
		return -EOPNOTSUPP;
	return top->ops->watch_resize(top, w);
}

static void layered_unwatch_resize(struct disk *d, struct disk_resize_watch *w)
{
	struct layer *top = layered_of(d)->l[0].layer;

	if (top->ops->unwatch_resize)
		top->ops->unwatch_resize(top, w);
}

static void layered_describe(struct disk *d, struct disk_describer *dd)
{
	struct layered *ld = layered_of(d);

	disk_describe_paramf(dd, "layers", "%u", ld->n);
	for (unsigned i = 0; i < ld->n; i++) {
		struct layer *l = ld->l[i].layer;
		struct disk *inner = l->ops->inner_disk ? l->ops->inner_disk(l) : NULL;

		if (dd->layer_begin)
			dd->layer_begin(dd, i, l->ops->type, ld->l[i].read_cache,
					ld->l[i].write_through, l->ops->sector_count(l), inner);
		if (l->ops->describe)
			l->ops->describe(l, dd);
		if (dd->layer_end)
			dd->layer_end(dd);
	}
}

static void layered_close(struct disk *d)
{
	struct layered *ld = layered_of(d);

	for (unsigned i = 0; i < ld->n; i++)
		layer_free(ld->l[i].layer);
	free(atomic_load(&ld->dirty));
	pthread_mutex_destroy(&ld->commit_lock);
	free(ld);
}

static const struct disk_ops layered_ops = {
	.version = DISK_OPS_VERSION,
	.sector_count = layered_sector_count,
	.read = layered_read,
	.write = layered_walk,
	.flush = layered_walk,
	.unmap = layered_walk,
	.block_status = layered_block_status,
	.watch_resize = layered_watch_resize,
	.unwatch_resize = layered_unwatch_resize,
	.describe = layered_describe,
	.close = layered_close,
};

/* ---- construction -------------------------------------------------------------------- */

int layered_disk_new(const struct layered_entry *layers, unsigned n, bool read_only,
		     struct disk **out, char *err, size_t errlen)
{
	struct layered *ld;
	struct disk_info info = { .type = "layered" };
	enum disk_unmap_behavior acc = DISK_UNMAP_ZEROES;
	bool in_write_path = true, must_zero = false;
	uint32_t caps_all = ~0u, caps_wp_or = 0, caps_wp_and = ~0u;
	char aerr[256];
	int r;

	if (n == 0)
		return errbuf_printf(err, errlen, "a layered disk needs at least one layer");
	ld = calloc(1, sizeof(*ld) + n * sizeof(ld->l[0]));
	if (!ld)
		return -ENOMEM;
	ld->n = n;
	ld->commit_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	for (unsigned i = 0; i < n; i++) {
		ld->l[i].layer = layers[i].layer;
		ld->l[i].read_cache = layers[i].read_cache;
		ld->l[i].write_through = layers[i].write_through;
	}

	/* Bottom-up attach (§3.4 step 2). */
	for (unsigned k = n; k-- > 0;) {
		struct lentry *le = &ld->l[k];
		const struct layer_meta *lower = k + 1 < n ? &ld->l[k + 1].meta : NULL;

		aerr[0] = '\0';
		r = layer_attach(le->layer, lower, aerr, sizeof(aerr));
		if (r == 0)
			le->meta = le->layer->meta;
		if (r < 0) {
			errbuf_printf(err, errlen, "layer %u (%s): attach failed: %s", k,
				     le->layer->ops->type, aerr[0] ? aerr : strerror(-r));
			free(ld);
			return r;
		}
		if (le->read_cache && !le->meta.can_read_cache) {
			r = errbuf_printf(err, errlen,
					    "layer %u (%s): read cache not supported", k,
					    le->layer->ops->type);
			free(ld);
			return r;
		}
		if (!IS_POW2(le->meta.sector_size)) {
			r = errbuf_printf(err, errlen, "layer %u (%s): invalid sector size %u", k,
					    le->layer->ops->type, le->meta.sector_size);
			free(ld);
			return r;
		}
		if (le->meta.sector_size != ld->l[n - 1].meta.sector_size) {
			r = errbuf_printf(err, errlen,
					    "layer %u (%s): mismatched sector size: expected %u, found %u",
					    k, le->layer->ops->type, ld->l[n - 1].meta.sector_size,
					    le->meta.sector_size);
			free(ld);
			return r;
		}
	}

	/* Top-down pass (§3.4 step 3, §3.5). */
	info.fua_respected = true;
	info.optimal_unmap_sectors = 1;
	for (unsigned i = 0; i < n; i++) {
		struct lentry *le = &ld->l[i];

		if (in_write_path) {
			if (le->meta.read_only && !read_only) {
				r = errbuf_printf(err, errlen,
						    "layer %u (%s): layer is read-only but the disk is writable",
						    i, le->layer->ops->type);
				free(ld);
				return r;
			}
			info.fua_respected = info.fua_respected && le->meta.fua_respected;
			info.optimal_unmap_sectors = MAX(info.optimal_unmap_sectors,
							 le->meta.optimal_unmap_sectors);
			must_zero = must_zero || le->write_through;
			if (acc == DISK_UNMAP_ZEROES && le->meta.unmap_behavior == DISK_UNMAP_ZEROES)
				acc = DISK_UNMAP_ZEROES;
			else if (must_zero)
				acc = DISK_UNMAP_IGNORED;
			else if (acc == DISK_UNMAP_IGNORED ||
				 le->meta.unmap_behavior == DISK_UNMAP_IGNORED)
				acc = DISK_UNMAP_IGNORED;
			else
				acc = DISK_UNMAP_UNSPECIFIED;
			caps_wp_or |= le->meta.caps;
			caps_wp_and &= le->meta.caps;
			ld->write_path = i + 1;
		} else if (le->write_through) {
			r = errbuf_printf(err, errlen,
					    "layer %u (%s): write-through layers must be contiguous from the top",
					    i, le->layer->ops->type);
			free(ld);
			return r;
		}
		in_write_path = in_write_path && le->write_through;
		if (!info.has_disk_id && le->meta.has_disk_id) {
			info.has_disk_id = true;
			memcpy(info.disk_id, le->meta.disk_id, sizeof(info.disk_id));
		}
		caps_all &= le->meta.caps;
		if (le->read_cache)
			ld->ncache++;
	}
	if (ld->l[n - 1].write_through) {
		r = errbuf_printf(err, errlen,
				    "layer %u (%s): the last layer cannot be write-through", n - 1,
				    ld->l[n - 1].layer->ops->type);
		free(ld);
		return r;
	}

	/* Visible counts (§3.4 step 7): frozen below the top. */
	{
		uint64_t vis = UINT64_MAX;

		for (unsigned i = 0; i < n; i++) {
			vis = MIN(vis, ld->l[i].layer->ops->sector_count(ld->l[i].layer));
			ld->l[i].visible = vis;
		}
	}

	info.sector_size = ld->l[0].meta.sector_size;
	info.physical_sector_size = MAX(ld->l[0].meta.physical_sector_size, info.sector_size);
	info.read_only = read_only;
	info.unmap_behavior = acc;
	info.caps = DISK_CAP_BLOCK_STATUS;
	if (caps_all & DISK_CAP_COHERENT)
		info.caps |= DISK_CAP_COHERENT;
	if (caps_wp_or & DISK_CAP_VOLATILE_CACHE)
		info.caps |= DISK_CAP_VOLATILE_CACHE;
	if (caps_wp_and & DISK_CAP_PERSISTENT)
		info.caps |= DISK_CAP_PERSISTENT;
	if (ld->l[0].meta.caps & DISK_CAP_RESIZE)
		info.caps |= DISK_CAP_RESIZE;
	if (acc == DISK_UNMAP_ZEROES)
		info.caps |= DISK_CAP_FAST_ZERO;
	/* The fused transform: see the notes at the top. */
	ld->xform = ld->ncache == 0;
	for (unsigned i = 0; i < ld->write_path; i++)
		ld->xform = ld->xform && ld->l[i].meta.xform;
	if (ld->xform)
		info.caps |= DISK_CAP_XFORM;
	/* Adopted write buffers (disk.h): a write reaches one layer with the
	 * caller's own iovec array, so the layer's swaps are the caller's.
	 * With a second write-path layer the next one would read the pages
	 * handed back; a read cache fills through its own buffers anyway. */
	if (ld->ncache == 0 && ld->write_path == 1)
		info.adopt_bytes = ld->l[0].meta.adopt_bytes;

	r = disk_new(&layered_ops, &info, ld, NULL, out);
	if (r < 0) {
		free(ld);
		errbuf_printf(err, errlen, "invalid layered disk geometry (sector size %u)",
			     info.sector_size);
		return r;
	}
	return 0;
}

unsigned layered_disk_layer_count(struct disk *d)
{
	if (!d || !disk_has_ops(d, &layered_ops))
		return 0;
	return layered_of(d)->n;
}

struct layer *layered_disk_layer(struct disk *d, unsigned i)
{
	unsigned n = layered_disk_layer_count(d);

	return i < n ? layered_of(d)->l[i].layer : NULL;
}

/* ---- the commit's dirty tracker (layered-internal.h) ------------------------------- */

/* Chunks of at least 64 KiB, and at most 2^24 of them (a 2 MiB bitmap). */
#define LAYERED_DIRTY_MIN_CHUNK_BYTES (64u << 10)
#define LAYERED_DIRTY_MAX_CHUNKS (1ull << 24)

static int layered_dirty_new(const struct layered *ld, struct layered_dirty **out)
{
	uint64_t sectors = ld->l[1].visible, nchunks;
	unsigned shift = 0;
	struct layered_dirty *t;

	while (((uint64_t)ld->l[0].meta.sector_size << shift) < LAYERED_DIRTY_MIN_CHUNK_BYTES)
		shift++;
	while (((sectors + (1ull << shift) - 1) >> shift) > LAYERED_DIRTY_MAX_CHUNKS)
		shift++;
	nchunks = (sectors + (1ull << shift) - 1) >> shift;
	t = calloc(1, sizeof(*t) + BITMAP_WORDS(nchunks) * sizeof(t->words[0]));
	if (!t)
		return -ENOMEM;
	t->sectors = sectors;
	t->chunk_shift = shift;
	t->nchunks = nchunks;
	t->nwords = BITMAP_WORDS(nchunks);
	*out = t;
	return 0;
}

int layered_dirty_claim(struct disk *d, struct layered_dirty **out, char *err, size_t errlen)
{
	struct layered *ld;
	struct layered_dirty *t;
	int r = 0;

	if (layered_disk_layer_count(d) < 2)
		return errbuf_printf(err, errlen, "not a layered disk with a layer below the top");
	ld = layered_of(d);
	if (ld->write_path != 1 || ld->l[0].read_cache)
		return errbuf_printf(err, errlen, "the top layer is %s",
				     ld->l[0].read_cache ? "a read cache" : "write-through");
	pthread_mutex_lock(&ld->commit_lock);
	t = atomic_load(&ld->dirty);
	if (!t) {
		r = layered_dirty_new(ld, &t);
		if (r == 0)
			atomic_store_explicit(&ld->dirty, t, memory_order_release);
	}
	if (r == 0 && atomic_exchange(&t->busy, true))
		r = -EBUSY;
	pthread_mutex_unlock(&ld->commit_lock);
	if (r < 0)
		return r;
	*out = t;
	return 0;
}

void layered_dirty_release(struct layered_dirty *t)
{
	atomic_store(&t->active, false);
	atomic_store(&t->busy, false);
}
