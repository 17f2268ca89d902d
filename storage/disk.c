/* SPDX-License-Identifier: MIT */
/*
 * disk.c: the dispatcher — the one place between callers and disk
 * implementations. It validates every request once (representability,
 * whole sectors, flags), forwards NULL ops of decorators to the disk below,
 * emulates what a backend leaves out (write-zeroes, FUA, CACHE, block
 * status), short-circuits unmap on disks that ignore it, and turns immediate
 * results into deferred completions so that io->done never runs inside
 * disk_submit().
 *
 * Notes on the design
 * -------------------
 * - Emulations run as child requests taken from the per-reactor request
 *   cache (disk_io_get); the parent's state during an emulation lives in the
 *   child (child->opaque = parent, child->sctx = progress). The parent's own
 *   hctx belongs to the disk that handles it, so the dispatcher never
 *   touches it.
 * - The request cache is per reactor (REACTOR_LOCAL_DISK): requests are
 *   taken and returned on the reactor's own thread, so no lock is needed.
 * - Handles: an atomic reference count. The last disk_unref() calls
 *   ops->close and then drops the lower disk.
 * - Fused transforms (io->xform): the dispatcher refuses a READ or WRITE
 *   that carries one unless the disk advertises DISK_CAP_XFORM (it would
 *   be silently ignored otherwise), passes it on in the FUA emulation,
 *   and disk_info_inherit() strips the bit from decorators.
 *   disk_xform_iov() is the shared walk that disks honouring it use to run
 *   the transform over an iovec list (whole-entry runs in one call each,
 *   straddling sectors through a bounce sector).
 * - Statistics (disk_stats_enable, off by default): disk_start swaps the
 *   request's done for disk_stats_done, which counts it in the counters of
 *   the submitting reactor (struct disk_stats_slot, allocated by that
 *   reactor on its first request to the disk, written only by it) and
 *   calls the submitter's done. Each reactor gets a slot number for its
 *   life (io_cache.stats_slot) from a pool of DISK_STATS_MAX_REACTORS;
 *   when the pool is empty, it shares one more slot with the others past
 *   it, counted with atomic additions. A disabled handle costs one load
 *   and a predictable branch per request. The same counters, as a
 *   struct disk_stats behind an owner's pointer (disk_stats_set_*), count
 *   the layers of a layered disk (layered.c).
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/compiler.h"
#include "common/iostats.h"
#include "common/log.h"
#include "storage/disk.h"

/* One reactor's counters for one disk (written by that reactor only). */
struct disk_stats_slot {
	struct iostats_counters k[IOSTATS_COUNT];
};

/* A handle's statistics (docs/ctl.md "stats"): per-reactor counters,
 * summed by disk_stats_read under @lock, less @base (the totals at the
 * last reset). */
struct disk_stats {
	pthread_mutex_t lock;
	uint64_t since_ns;                       /* under @lock */
	struct iostats_sums base[IOSTATS_COUNT]; /* under @lock */
	_Atomic uint64_t lat_max_ns[IOSTATS_COUNT];
	/* One per reactor slot number, and the last shared by the reactors
	 * beyond them (STATS_SHARED). */
	_Atomic(struct disk_stats_slot *) slot[DISK_STATS_MAX_REACTORS + 1];
	/* Turned off by disk_stats_disable: the counters stay allocated
	 * (requests already wrapped still count into them when they end),
	 * new requests are not wrapped. */
	atomic_bool off;
	uint32_t sector_shift;                   /* of the sectors counted */
};

struct disk {
	atomic_uint refs;
	const struct disk_ops *ops;
	struct disk_info info;
	void *priv;
	struct disk *lower;     /* owned; decorators only */
	_Atomic(struct disk_stats *) stats;   /* NULL: not counted */
};

/* ---- names ------------------------------------------------------------- */

const char *disk_status_str(int status)
{
	static const char *const names[DISK_STATUS_COUNT] = {
		[DISK_OK] = "success",
		[DISK_ILLEGAL_BLOCK] = "illegal request",
		[DISK_INVALID_INPUT] = "invalid input",
		[DISK_IO_ERROR] = "io error",
		[DISK_MEDIUM_ERROR] = "medium error",
		[DISK_MEMORY_ACCESS] = "failed to access guest memory",
		[DISK_READ_ONLY] = "attempt to write to read-only disk/range",
		[DISK_RESERVATION_CONFLICT] = "reservation conflict",
		[DISK_ABORTED_PREEMPT] = "aborted command",
		[DISK_UNSUPPORTED] = "unsupported operation",
	};
	if (status < 0 || status >= DISK_STATUS_COUNT)
		return "unknown status";
	return names[status];
}

const char *disk_op_str(enum disk_op op)
{
	static const char *const names[DISK_OP_COUNT] = {
		[DISK_OP_READ] = "read",
		[DISK_OP_WRITE] = "write",
		[DISK_OP_FLUSH] = "flush",
		[DISK_OP_UNMAP] = "unmap",
		[DISK_OP_WRITE_ZEROES] = "write-zeroes",
		[DISK_OP_BLOCK_STATUS] = "block-status",
		[DISK_OP_CACHE] = "cache",
		[DISK_OP_EJECT] = "eject",
		[DISK_OP_PR_CAPS] = "pr-capabilities",
		[DISK_OP_PR_REPORT] = "pr-report",
		[DISK_OP_PR_REGISTER] = "pr-register",
		[DISK_OP_PR_RESERVE] = "pr-reserve",
		[DISK_OP_PR_RELEASE] = "pr-release",
		[DISK_OP_PR_CLEAR] = "pr-clear",
		[DISK_OP_PR_PREEMPT] = "pr-preempt",
	};
	if ((unsigned)op >= DISK_OP_COUNT)
		return "unknown";
	return names[op];
}

/* ---- handles ------------------------------------------------------------ */

static void disk_stats_free(struct disk_stats *st);

int disk_new(const struct disk_ops *ops, const struct disk_info *info, void *priv,
	     struct disk *lower, struct disk **out)
{
	struct disk *d;

	assert(ops && info && out);
	if (ops->version < 1)
		return -EINVAL;
	if (!IS_POW2(info->sector_size) || info->sector_size < 512) {
		log_error("%s: invalid sector size %u", info->type ? info->type : "disk",
			  info->sector_size);
		return -EINVAL;
	}
	if (!IS_POW2(info->physical_sector_size) ||
	    info->physical_sector_size < info->sector_size) {
		log_error("%s: invalid physical sector size %u",
			  info->type ? info->type : "disk", info->physical_sector_size);
		return -EINVAL;
	}
	if (info->unmap_behavior > DISK_UNMAP_ZEROES)
		return -EINVAL;
	/* A backend must at least read, write and know its size; a decorator
	 * may forward them. */
	if (!lower && (!ops->sector_count || !ops->read || !ops->write))
		return -EINVAL;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	atomic_init(&d->refs, 1);
	d->ops = ops;
	d->info = *info;
	if (!d->info.type)
		d->info.type = "disk";
	d->info.sector_shift = ilog2_u64(info->sector_size);
	if (d->info.optimal_unmap_sectors == 0)
		d->info.optimal_unmap_sectors = 1;
	d->priv = priv;
	d->lower = lower;
	*out = d;
	return 0;
}

struct disk *disk_ref(struct disk *d)
{
	atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
	return d;
}

void disk_unref(struct disk *d)
{
	struct disk *lower;

	if (!d)
		return;
	if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) != 1)
		return;
	lower = d->lower;
	if (d->ops->close)
		d->ops->close(d);
	disk_stats_free(atomic_load_explicit(&d->stats, memory_order_acquire));
	free(d);
	disk_unref(lower);
}

bool disk_has_ops(const struct disk *d, const struct disk_ops *ops) { return d->ops == ops; }
void *disk_priv(const struct disk *d) { return d->priv; }
struct disk *disk_lower(const struct disk *d) { return d->lower; }
const struct disk_info *disk_get_info(const struct disk *d) { return &d->info; }

void disk_info_inherit(struct disk_info *info, const struct disk *lower)
{
	*info = lower->info;
	/* A decorator would have to pass io->xform on to honour it. */
	info->caps &= ~(uint32_t)DISK_CAP_XFORM;
	/* Likewise it would have to pass the caller's iovec array down. */
	info->adopt_bytes = 0;
	/* And a pipe would reach a disk that does not hold a file's bytes. */
	info->caps &= ~(uint32_t)DISK_CAP_PIPE;
}

/* The disk that implements the op at member @off of struct disk_ops: @d
 * itself, or the first disk below with it set (decorators pass through). */
static struct disk *disk_handler(struct disk *d, size_t off)
{
	for (;;) {
		void *fn;

		memcpy(&fn, (const char *)d->ops + off, sizeof(fn));
		if (fn || !d->lower)
			return d;
		d = d->lower;
	}
}

#define HANDLER(d, member) disk_handler((d), offsetof(struct disk_ops, member))

uint64_t disk_sector_count(struct disk *d)
{
	struct disk *h = HANDLER(d, sector_count);

	return h->ops->sector_count(h);
}

bool disk_range_representable(uint64_t sector, uint64_t count, uint32_t shift)
{
	uint64_t end;

	if (ADD_OVERFLOW(sector, count, &end))
		return false;
	return end <= ((uint64_t)INT64_MAX >> shift);
}

/* ---- iovec helpers ------------------------------------------------------ */

uint64_t iov_length(const struct iovec *iov, int iovcnt)
{
	uint64_t len = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (ADD_OVERFLOW(len, (uint64_t)iov[i].iov_len, &len))
			return UINT64_MAX;
	}
	return len;
}

enum iov_copy_mode { IOV_TO_BUF, IOV_FROM_BUF, IOV_MEMSET };

/* Walks bytes [off, off+len) of the list, copying to/from @buf or setting
 * them to @c. Returns the bytes done (less than @len if the list is short). */
static size_t iov_copy(const struct iovec *iov, int iovcnt, size_t off, void *buf, int c,
		       size_t len, enum iov_copy_mode mode)
{
	size_t done = 0;

	for (int i = 0; i < iovcnt && done < len; i++) {
		char *base = iov[i].iov_base;
		size_t n;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		n = MIN(iov[i].iov_len - off, len - done);
		switch (mode) {
		case IOV_TO_BUF:
			memcpy((char *)buf + done, base + off, n);
			break;
		case IOV_FROM_BUF:
			memcpy(base + off, (const char *)buf + done, n);
			break;
		case IOV_MEMSET:
			memset(base + off, c, n);
			break;
		}
		done += n;
		off = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, int iovcnt, size_t off, void *buf, size_t len)
{
	return iov_copy(iov, iovcnt, off, buf, 0, len, IOV_TO_BUF);
}

size_t iov_from_buf(const struct iovec *iov, int iovcnt, size_t off, const void *buf, size_t len)
{
	return iov_copy(iov, iovcnt, off, (void *)buf, 0, len, IOV_FROM_BUF);
}

void iov_memset(const struct iovec *iov, int iovcnt, size_t off, int c, size_t len)
{
	iov_copy(iov, iovcnt, off, NULL, c, len, IOV_MEMSET);
}

int iov_slice(const struct iovec *iov, int iovcnt, size_t off, size_t len,
	      struct iovec *out, int max)
{
	int n = 0;

	for (int i = 0; i < iovcnt && len > 0; i++) {
		size_t take;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		if (n == max)
			return -E2BIG;
		take = MIN(iov[i].iov_len - off, len);
		out[n].iov_base = (char *)iov[i].iov_base + off;
		out[n].iov_len = take;
		n++;
		len -= take;
		off = 0;
	}
	return n;
}

/* Skips to an entry with bytes left at @p. */
static inline void iov_pos_settle(const struct iovec *iov, int iovcnt, struct iov_pos *p)
{
	while (p->i < iovcnt && p->off >= iov[p->i].iov_len) {
		p->i++;
		p->off = 0;
	}
}

int disk_xform_iov(const struct disk_io *io, const struct iovec *iov, int iovcnt,
		   struct iov_pos *p, enum disk_xform_dir dir, void *buf, uint64_t sector,
		   uint64_t n, uint32_t shift)
{
	const struct disk_xform *xf = io->xform;
	const size_t ss = (size_t)1 << shift;
	uint8_t stack_bounce[4096], *bounce = NULL, *b = buf;
	int r = 0;

	assert(xf && xf->fn);
	while (n > 0) {
		size_t avail;
		uint8_t *base;

		iov_pos_settle(iov, iovcnt, p);
		assert(p->i < iovcnt);
		avail = iov[p->i].iov_len - p->off;
		base = (uint8_t *)iov[p->i].iov_base + p->off;
		if (likely(avail >= ss)) {
			uint64_t k = MIN((uint64_t)(avail >> shift), n);
			size_t len = (size_t)(k << shift);

			if (dir == DISK_XFORM_TO_IOV)
				r = xf->fn(xf, base, b, len, sector);
			else if (dir == DISK_XFORM_FROM_IOV)
				r = xf->fn(xf, b, base, len, sector);
			else
				r = xf->fn(xf, base, base, len, sector);
			if (r < 0)
				break;
			p->off += len;
			if (dir != DISK_XFORM_IN_IOV)
				b += len;
			sector += k;
			n -= k;
			continue;
		}
		/* The sector straddles entries. */
		if (dir == DISK_XFORM_FROM_IOV) {
			iov_to_buf(iov + p->i, iovcnt - p->i, p->off, b, ss);
			r = xf->fn(xf, b, b, ss, sector);
		} else {
			if (!bounce) {
				bounce = ss <= sizeof(stack_bounce) ? stack_bounce
								   : reactor_buf_get(io->reactor, ss, false);
				if (!bounce) {
					r = -ENOMEM;
					break;
				}
			}
			if (dir == DISK_XFORM_TO_IOV) {
				r = xf->fn(xf, bounce, b, ss, sector);
			} else {
				iov_to_buf(iov + p->i, iovcnt - p->i, p->off, bounce, ss);
				r = xf->fn(xf, bounce, bounce, ss, sector);
			}
			if (r == 0)
				iov_from_buf(iov + p->i, iovcnt - p->i, p->off, bounce, ss);
		}
		if (r < 0)
			break;
		/* Step over the sector: it ends inside a later entry. */
		for (size_t left = ss; left > 0;) {
			size_t take = MIN(left, iov[p->i].iov_len - p->off);

			left -= take;
			p->off += take;
			if (left > 0) {
				p->i++;
				p->off = 0;
			}
		}
		if (dir != DISK_XFORM_IN_IOV)
			b += ss;
		sector++;
		n--;
	}
	if (bounce && bounce != stack_bounce)
		reactor_buf_put(io->reactor, bounce, ss);
	return r;
}

/* ---- the per-reactor request cache --------------------------------------- */

/* Cached requests of one reactor; touched only on its thread. */
struct io_cache {
	struct disk_io *free;
	unsigned nfree;
	unsigned stats_slot;    /* 1 + this reactor's statistics slot */
};

/* The slot the reactors beyond DISK_STATS_MAX_REACTORS share. */
#define STATS_SHARED DISK_STATS_MAX_REACTORS

/* The statistics slot numbers in use by live reactors. */
static pthread_mutex_t stats_slots_lock = PTHREAD_MUTEX_INITIALIZER;
static bool stats_slots_used[DISK_STATS_MAX_REACTORS];

static unsigned stats_slot_get(void)
{
	unsigned got = STATS_SHARED + 1;

	pthread_mutex_lock(&stats_slots_lock);
	for (unsigned i = 0; i < DISK_STATS_MAX_REACTORS; i++) {
		if (!stats_slots_used[i]) {
			stats_slots_used[i] = true;
			got = i + 1;
			break;
		}
	}
	pthread_mutex_unlock(&stats_slots_lock);
	return got;
}

static void stats_slot_put(unsigned slot)
{
	if (slot == STATS_SHARED + 1)
		return;
	pthread_mutex_lock(&stats_slots_lock);
	stats_slots_used[slot - 1] = false;
	pthread_mutex_unlock(&stats_slots_lock);
}

#define IO_CACHE_MAX 4096

static void io_cache_free(void *p)
{
	struct io_cache *c = p;
	struct disk_io *io;

	while ((io = c->free)) {
		c->free = io->cache_next;
		free(io);
	}
	stats_slot_put(c->stats_slot);
	free(c);
}

static struct io_cache *io_cache_of(struct reactor *r)
{
	struct io_cache *c = reactor_local_get(r, REACTOR_LOCAL_DISK);

	if (unlikely(!c)) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
		c->stats_slot = stats_slot_get();
		reactor_local_set(r, REACTOR_LOCAL_DISK, c, io_cache_free);
	}
	return c;
}

struct disk_io *disk_io_get(struct reactor *r)
{
	struct io_cache *c = io_cache_of(r);
	struct disk_io *io;

	if (likely(c && c->free)) {
		io = c->free;
		c->free = io->cache_next;
		c->nfree--;
		memset(io, 0, sizeof(*io));
		return io;
	}
	return calloc(1, sizeof(struct disk_io));
}

void disk_io_put(struct reactor *r, struct disk_io *io)
{
	struct io_cache *c;

	if (!io)
		return;
	c = io_cache_of(r);
	if (unlikely(!c || c->nfree >= IO_CACHE_MAX)) {
		free(io);
		return;
	}
	io->cache_next = c->free;
	c->free = io;
	c->nfree++;
}

/* ---- statistics ------------------------------------------------------------ */

static void disk_stats_free(struct disk_stats *st)
{
	if (!st)
		return;
	for (unsigned i = 0; i <= STATS_SHARED; i++)
		free(atomic_load_explicit(&st->slot[i], memory_order_acquire));
	pthread_mutex_destroy(&st->lock);
	free(st);
}

int disk_stats_set_enable(_Atomic(struct disk_stats *) *p, uint32_t sector_shift)
{
	struct disk_stats *st = atomic_load_explicit(p, memory_order_acquire), *none = NULL;

	if (st) {
		if (atomic_load_explicit(&st->off, memory_order_acquire)) {
			struct iostats_op ops[IOSTATS_COUNT];
			uint64_t since;

			/* Counters start at zero when counting is turned on
			 * again: a reset, then the switch. */
			atomic_store_explicit(&st->off, false, memory_order_release);
			(void)disk_stats_set_read(p, true, &since, ops);
		}
		return 0;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	st->since_ns = reactor_now_ns();
	st->sector_shift = sector_shift;
	if (!atomic_compare_exchange_strong_explicit(p, &none, st, memory_order_acq_rel,
						     memory_order_acquire))
		disk_stats_free(st);   /* another thread enabled it first */
	return 0;
}

void disk_stats_set_disable(_Atomic(struct disk_stats *) *p)
{
	struct disk_stats *st = atomic_load_explicit(p, memory_order_acquire);

	if (st)
		atomic_store_explicit(&st->off, true, memory_order_release);
}

bool disk_stats_set_on(const struct disk_stats *st)
{
	return st && !atomic_load_explicit(&((struct disk_stats *)st)->off, memory_order_acquire);
}

void disk_stats_set_free(struct disk_stats *st)
{
	disk_stats_free(st);
}

int disk_stats_enable(struct disk *d)
{
	return disk_stats_set_enable(&d->stats, d->info.sector_shift);
}

void disk_stats_disable(struct disk *d)
{
	disk_stats_set_disable(&d->stats);
}

bool disk_stats_enabled(const struct disk *d)
{
	return disk_stats_set_on(atomic_load_explicit(&((struct disk *)d)->stats,
						      memory_order_acquire));
}

static enum iostats_class disk_stats_class(enum disk_op op)
{
	switch (op) {
	case DISK_OP_READ: return IOSTATS_READ;
	case DISK_OP_WRITE: return IOSTATS_WRITE;
	case DISK_OP_FLUSH: return IOSTATS_FLUSH;
	case DISK_OP_UNMAP: return IOSTATS_TRIM;
	case DISK_OP_WRITE_ZEROES: return IOSTATS_ZERO;
	default: return IOSTATS_OTHER;
	}
}

static struct io_cache *io_cache_of(struct reactor *r);

void disk_stats_set_count(struct disk_stats *st, struct reactor *r, enum disk_op op,
			  int status, uint64_t sectors, uint64_t t0_ns)
{
	struct io_cache *c = io_cache_of(r);
	enum iostats_class cls = disk_stats_class(op);
	struct disk_stats_slot *sl, *none = NULL;
	uint64_t bytes = 0, lat;
	unsigned i;

	if (unlikely(!c))
		return;
	i = c->stats_slot - 1;
	sl = atomic_load_explicit(&st->slot[i], memory_order_acquire);
	if (unlikely(!sl)) {
		/* Once per slot and set; the shared slot may race. */
		sl = calloc(1, sizeof(*sl));
		if (!sl)
			return;
		if (!atomic_compare_exchange_strong_explicit(&st->slot[i], &none, sl,
							     memory_order_acq_rel,
							     memory_order_acquire)) {
			free(sl);
			sl = none;
		}
	}
	if (op == DISK_OP_READ || op == DISK_OP_WRITE)
		bytes = sectors << st->sector_shift;
	lat = reactor_now_ns() - t0_ns;
	if (unlikely(i == STATS_SHARED))
		iostats_count_shared(&sl->k[cls], status != DISK_OK, bytes, lat,
				     &st->lat_max_ns[cls]);
	else
		iostats_count(&sl->k[cls], status != DISK_OK, bytes, lat, &st->lat_max_ns[cls]);
}

/* Counts finished @io in its disk's slot of the submitting reactor (the
 * one thread that writes that slot). */
static void disk_stats_count(struct disk_io *io)
{
	disk_stats_set_count(atomic_load_explicit(&io->stats_disk->stats, memory_order_acquire),
			     io->reactor, io->op, io->status, io->count, io->stats_t0_ns);
}

static void disk_stats_done(struct disk_io *io)
{
	io->done = io->stats_done;
	disk_stats_count(io);
	io->done(io);
}

/* Makes @io count on @d when it finishes (disk_start). */
static inline void disk_stats_wrap(struct disk *d, struct disk_io *io)
{
	struct disk_stats *st = atomic_load_explicit(&d->stats, memory_order_relaxed);

	if (likely(!st) || io->done == disk_stats_done ||
	    atomic_load_explicit(&st->off, memory_order_relaxed))
		return;
	io->stats_disk = d;
	io->stats_done = io->done;
	io->stats_t0_ns = reactor_now_ns();
	io->done = disk_stats_done;
}

int disk_stats_read(struct disk *d, bool reset, uint64_t *since_ns, struct iostats_op *out)
{
	return disk_stats_set_read(&d->stats, reset, since_ns, out);
}

int disk_stats_set_read(_Atomic(struct disk_stats *) *p, bool reset, uint64_t *since_ns,
			struct iostats_op *out)
{
	struct disk_stats *st = atomic_load_explicit(p, memory_order_acquire);
	struct iostats_sums *t;
	uint64_t now = reactor_now_ns();

	if (!st || atomic_load_explicit(&st->off, memory_order_acquire))
		return -ENOENT;
	t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_lock(&st->lock);
	*since_ns = st->since_ns;
	if (reset)
		st->since_ns = now;
	for (unsigned c = 0; c < IOSTATS_COUNT; c++) {
		memset(t, 0, sizeof(*t));
		for (unsigned i = 0; i <= STATS_SHARED; i++) {
			struct disk_stats_slot *sl = atomic_load_explicit(&st->slot[i],
									  memory_order_acquire);

			if (sl)
				iostats_sums_add(t, &sl->k[c]);
		}
		iostats_report(t, &st->base[c], reset,
			       reset ? atomic_exchange_explicit(&st->lat_max_ns[c], 0,
								memory_order_relaxed)
				     : atomic_load_explicit(&st->lat_max_ns[c], memory_order_relaxed),
			       &out[c]);
	}
	pthread_mutex_unlock(&st->lock);
	free(t);
	return 0;
}

/* ---- completion ---------------------------------------------------------- */

void disk_io_complete(struct disk_io *io, int status)
{
	assert(status >= 0 && status < DISK_STATUS_COUNT);
	io->status = status;
	io->done(io);
}

void disk_io_complete_errno(struct disk_io *io, int os_errno)
{
	io->os_errno = os_errno;
	disk_io_complete(io, DISK_IO_ERROR);
}

void disk_io_copy_result(struct disk_io *to, const struct disk_io *from)
{
	to->status = from->status;
	to->os_errno = from->os_errno;
	to->medium = from->medium;
}

int disk_io_end_child(struct disk_io *parent, struct disk_io *child, int status,
		      bool from_callback)
{
	if (status == DISK_IO_ERROR)
		parent->os_errno = child->os_errno;
	if (status == DISK_MEDIUM_ERROR)
		parent->medium = child->medium;
	disk_io_put(parent->reactor, child);
	if (!from_callback)
		return status;
	disk_io_complete(parent, status);
	return DISK_PENDING;
}

static void disk_deferred_done(struct reactor_task *t)
{
	struct disk_io *io = container_of(t, struct disk_io, task);

	io->done(io);
}

/* Finishes @io with @status on a later pass of its reactor's loop. */
static void disk_defer(struct disk_io *io, int status)
{
	assert(status >= 0 && status < DISK_STATUS_COUNT);
	io->status = status;
	io->task.fn = disk_deferred_done;
	reactor_defer(io->reactor, &io->task);
}

void disk_io_complete_later(struct disk_io *io, int status, int os_errno,
			    bool from_other_thread)
{
	if (status == DISK_IO_ERROR)
		io->os_errno = os_errno;
	if (!from_other_thread) {
		disk_defer(io, status);
		return;
	}
	assert(status >= 0 && status < DISK_STATUS_COUNT);
	io->status = status;
	io->task.fn = disk_deferred_done;
	reactor_post(io->reactor, &io->task);
}

/* ---- emulations ------------------------------------------------------------ */

/* Submits an emulation's child to the disk of its parent: like
 * disk_submit, but not counted (the parent is, once). */
static void emu_submit(struct disk *d, struct disk_io *child);

/*
 * A zero buffer shared by every thread (read-only anonymous memory: the
 * kernel maps its zero page, so it costs no memory).
 */
#define ZERO_BUF_BYTES (1u << 20)
static const void *zero_buf;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_buf_init(void)
{
	void *p = mmap(NULL, ZERO_BUF_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	zero_buf = p == MAP_FAILED ? calloc(1, ZERO_BUF_BYTES) : p;
}

static const void *disk_zero_buf(void)
{
	pthread_once(&zero_once, zero_buf_init);
	return zero_buf;
}

/* Child state kept in child->sctx (the submitter's scratch). */
enum {
	EMU_NEXT = 0,      /* next sector to do */
	EMU_END,           /* end sector */
	EMU_STAGE,         /* emulation-specific stage */
	EMU_BUF,           /* buffer (cache emulation) */
	EMU_IOV_BASE,      /* a one-entry iovec lives in sctx[4..5] */
};

static struct iovec *emu_iov(struct disk_io *child)
{
	_Static_assert(sizeof(struct iovec) <= 2 * sizeof(uintptr_t), "iovec fits");
	return (struct iovec *)(void *)&child->sctx[EMU_IOV_BASE];
}

void disk_io_copy_request(struct disk_io *to, const struct disk_io *from)
{
	to->op = from->op;
	to->flags = from->flags;
	to->sector = from->sector;
	to->count = from->count;
	to->iov = from->iov;
	to->iovcnt = from->iovcnt;
	to->pipe_fd = from->pipe_fd;
	to->initiator = from->initiator;
	to->xform = from->xform;
}

struct disk_io *disk_io_get_child(struct disk_io *parent, void (*done)(struct disk_io *))
{
	struct disk_io *child = disk_io_get(parent->reactor);

	if (!child)
		return NULL;
	child->done = done;
	child->opaque = parent;
	child->initiator = parent->initiator;
	return child;
}

struct disk_io *disk_io_get_copy(struct disk_io *parent, void (*done)(struct disk_io *))
{
	struct disk_io *child = disk_io_get_child(parent, done);

	if (child)
		disk_io_copy_request(child, parent);
	return child;
}

struct disk_io *disk_io_get_staged(struct disk_io *parent, void (*done)(struct disk_io *),
				   size_t bytes, void **buf)
{
	struct disk_io *child = disk_io_get_child(parent, done);

	if (!child)
		return NULL;
	*buf = reactor_buf_get(parent->reactor, bytes, false);
	if (!*buf) {
		disk_io_put(parent->reactor, child);
		return NULL;
	}
	return child;
}

static void emu_finish(struct disk_io *child, int status)
{
	disk_io_end_child(child->opaque, child, status, true);
}

/* FUA emulation: WRITE without FUA, then FLUSH. */
static void emu_fua_done(struct disk_io *child)
{
	struct disk_io *parent = child->opaque;

	if (child->status != DISK_OK || child->op == DISK_OP_FLUSH) {
		emu_finish(child, child->status);
		return;
	}
	child->op = DISK_OP_FLUSH;
	child->flags = 0;
	child->iov = NULL;
	child->iovcnt = 0;
	child->count = 0;
	emu_submit(parent->disk, child);
}

static int emu_fua_write(struct disk_io *io)
{
	struct disk_io *child = disk_io_get_copy(io, emu_fua_done);

	if (!child)
		return DISK_IO_ERROR;
	child->flags &= ~DISK_IO_FUA;
	emu_submit(io->disk, child);
	return DISK_PENDING;
}

/* Write-zeroes emulation by writes of the shared zero buffer, 1 MiB at a time,
 * FUA carried on each write (and emulated below if needed). */
static void emu_zero_step(struct disk_io *child)
{
	struct disk_io *parent = child->opaque;
	uint32_t shift = parent->disk->info.sector_shift;
	uint64_t next = child->sctx[EMU_NEXT], end = child->sctx[EMU_END];
	uint64_t n;

	if (child->status != DISK_OK || next >= end) {
		emu_finish(child, child->status);
		return;
	}
	n = MIN(end - next, (uint64_t)(ZERO_BUF_BYTES >> shift));
	child->op = DISK_OP_WRITE;
	child->flags = parent->flags & DISK_IO_FUA;
	child->sector = next;
	emu_iov(child)->iov_base = (void *)disk_zero_buf();
	emu_iov(child)->iov_len = n << shift;
	child->iov = emu_iov(child);
	child->iovcnt = 1;
	child->sctx[EMU_NEXT] = next + n;
	emu_submit(parent->disk, child);
}

/* Write-zeroes through unmap (behaviour ZEROES), then a flush for FUA. */
static void emu_zero_unmap_done(struct disk_io *child)
{
	struct disk_io *parent = child->opaque;

	if (child->status != DISK_OK || child->op == DISK_OP_FLUSH ||
	    !(parent->flags & DISK_IO_FUA)) {
		emu_finish(child, child->status);
		return;
	}
	child->op = DISK_OP_FLUSH;
	child->flags = 0;
	child->count = 0;
	emu_submit(parent->disk, child);
}

static int emu_write_zeroes(struct disk *h, struct disk_io *io)
{
	struct disk_io *child;

	if (io->count == 0)
		return DISK_OK;
	if (!(io->flags & DISK_IO_NO_UNMAP) && h->info.unmap_behavior == DISK_UNMAP_ZEROES &&
	    HANDLER(h, unmap)->ops->unmap) {
		child = disk_io_get_child(io, emu_zero_unmap_done);
		if (!child)
			return DISK_IO_ERROR;
		child->op = DISK_OP_UNMAP;
		child->sector = io->sector;
		child->count = io->count;
		emu_submit(io->disk, child);
		return DISK_PENDING;
	}
	/* The writes go 1 MiB at a time: a range past the end must fail
	 * before the first one, not after zeroing what lies before the end. */
	if (disk_range_check_live(h, io->sector, io->count) != DISK_OK)
		return DISK_ILLEGAL_BLOCK;
	/* It would write data: not fast (NBD_CMD_FLAG_FAST_ZERO). */
	if (io->flags & DISK_IO_FAST_ZERO)
		return DISK_UNSUPPORTED;
	child = disk_io_get_child(io, emu_zero_step);
	if (!child)
		return DISK_IO_ERROR;
	child->sctx[EMU_NEXT] = io->sector;
	child->sctx[EMU_END] = io->sector + io->count;
	/* count > 0, so the first step submits a write (whose completion is
	 * deferred) rather than finishing the parent inside disk_submit. */
	emu_zero_step(child);
	return DISK_PENDING;
}

/* CACHE emulation: read the range (which fills read caches) into a scratch
 * buffer, 1 MiB at a time, and discard the data. */
#define CACHE_CHUNK_BYTES (1u << 20)

static void emu_cache_step(struct disk_io *child)
{
	struct disk_io *parent = child->opaque;
	uint32_t shift = parent->disk->info.sector_shift;
	uint64_t next = child->sctx[EMU_NEXT], end = child->sctx[EMU_END];
	uint64_t n;

	if (child->status != DISK_OK || next >= end) {
		reactor_buf_put(parent->reactor, (void *)child->sctx[EMU_BUF], CACHE_CHUNK_BYTES);
		emu_finish(child, child->status);
		return;
	}
	n = MIN(end - next, (uint64_t)(CACHE_CHUNK_BYTES >> shift));
	child->op = DISK_OP_READ;
	child->flags = 0;
	child->sector = next;
	emu_iov(child)->iov_base = (void *)child->sctx[EMU_BUF];
	emu_iov(child)->iov_len = n << shift;
	child->iov = emu_iov(child);
	child->iovcnt = 1;
	child->sctx[EMU_NEXT] = next + n;
	emu_submit(parent->disk, child);
}

static int emu_cache(struct disk_io *io)
{
	struct disk_io *child;
	void *buf;

	if (io->count == 0)
		return DISK_OK;
	child = disk_io_get_staged(io, emu_cache_step, CACHE_CHUNK_BYTES, &buf);
	if (!child)
		return DISK_IO_ERROR;
	child->sctx[EMU_BUF] = (uintptr_t)buf;
	child->sctx[EMU_NEXT] = io->sector;
	child->sctx[EMU_END] = io->sector + io->count;
	emu_cache_step(child);
	return DISK_PENDING;
}

/* ---- dispatch ---------------------------------------------------------------- */

/* Flags each op accepts. */
static const uint32_t allowed_flags[DISK_OP_COUNT] = {
	[DISK_OP_READ] = DISK_IO_PIPE,
	[DISK_OP_WRITE] = DISK_IO_FUA | DISK_IO_ADOPT | DISK_IO_PIPE,
	[DISK_OP_UNMAP] = DISK_IO_BLOCK_LEVEL_ONLY,
	[DISK_OP_WRITE_ZEROES] = DISK_IO_FUA | DISK_IO_NO_UNMAP | DISK_IO_FAST_ZERO,
};

int disk_range_check_live(struct disk *d, uint64_t sector, uint64_t count)
{
	uint64_t end;

	if (ADD_OVERFLOW(sector, count, &end) || end > disk_sector_count(d))
		return DISK_ILLEGAL_BLOCK;
	return DISK_OK;
}

int disk_block_status_data(struct disk *d, struct disk_io *io)
{
	if (disk_range_check_live(d, io->sector, io->count) != DISK_OK)
		return DISK_ILLEGAL_BLOCK;
	io->u.bs.extents[0].count = io->count;
	io->u.bs.extents[0].flags = 0;
	io->u.bs.extents[0].layer = -1;
	io->u.bs.nr = 1;
	return DISK_OK;
}

/* The prologue @h's ops->checks ask for, before its op for @io: the
 * status to finish @io with, or DISK_PENDING to call the op. */
static inline int disk_checks(struct disk *h, struct disk_io *io)
{
	uint32_t c = h->ops->checks;

	if (likely(!c))
		return DISK_PENDING;
	if ((c & DISK_CHECK_RANGE) && disk_range_check_live(h, io->sector, io->count) != DISK_OK)
		return DISK_ILLEGAL_BLOCK;
	if ((c & DISK_CHECK_READ_ONLY) && h->info.read_only &&
	    (io->op == DISK_OP_WRITE || io->op == DISK_OP_WRITE_ZEROES))
		return DISK_READ_ONLY;
	if ((c & DISK_CHECK_EMPTY) && io->count == 0 && io->op != DISK_OP_BLOCK_STATUS)
		return DISK_OK;
	return DISK_PENDING;
}

/* Calls @h's op @member for @io after the checks it asked for. */
#define CALL_OP(h, member, io) \
	({ int st_ = disk_checks((h), (io)); \
	   st_ == DISK_PENDING ? (h)->ops->member((h), (io)) : st_; })

static int disk_dispatch(struct disk *d, struct disk_io *io)
{
	const uint32_t shift = d->info.sector_shift;
	struct disk *h;

	if (unlikely((unsigned)io->op >= DISK_OP_COUNT))
		return DISK_INVALID_INPUT;
	if (unlikely(io->flags & ~allowed_flags[io->op]))
		return DISK_INVALID_INPUT;

	switch (io->op) {
	case DISK_OP_READ:
	case DISK_OP_WRITE: {
		uint64_t len;

		if (unlikely(io->flags & DISK_IO_PIPE)) {
			/* Only to a disk that holds a file's bytes (the notes
			 * in disk.h): the caller falls back to memory. */
			if (!(d->info.caps & DISK_CAP_PIPE))
				return DISK_UNSUPPORTED;
			if (io->xform || io->pipe_fd < 0 || (io->flags & DISK_IO_ADOPT))
				return DISK_INVALID_INPUT;
			if (unlikely(io->count > (UINT64_MAX >> shift)))
				return DISK_ILLEGAL_BLOCK;
			len = io->count << shift;
		} else {
			len = iov_length(io->iov, io->iovcnt);
			if (unlikely(io->iovcnt < 0 || (len & (d->info.sector_size - 1))))
				return DISK_INVALID_INPUT;
		}
		/* A transform only goes to a disk that applies it. */
		if (unlikely(io->xform && !(d->info.caps & DISK_CAP_XFORM)))
			return DISK_INVALID_INPUT;
		/* Adoption is a permission: a disk that cannot adopt never
		 * sees it (it might pass the buffers to one that could). */
		if (io->flags & DISK_IO_ADOPT && !d->info.adopt_bytes)
			io->flags &= ~(uint32_t)DISK_IO_ADOPT;
		io->count = len >> shift;
		if (unlikely(!disk_range_representable(io->sector, io->count, shift)))
			return DISK_ILLEGAL_BLOCK;
		if (io->op == DISK_OP_READ) {
			h = HANDLER(d, read);
			return CALL_OP(h, read, io);
		}
		if ((io->flags & DISK_IO_FUA) && !d->info.fua_respected)
			return emu_fua_write(io);
		h = HANDLER(d, write);
		return CALL_OP(h, write, io);
	}
	case DISK_OP_FLUSH:
		h = HANDLER(d, flush);
		return h->ops->flush ? h->ops->flush(h, io) : DISK_OK;
	case DISK_OP_UNMAP:
		if (!disk_range_representable(io->sector, io->count, shift))
			return DISK_ILLEGAL_BLOCK;
		if (d->info.unmap_behavior == DISK_UNMAP_IGNORED)
			return disk_range_check_live(d, io->sector, io->count);
		h = HANDLER(d, unmap);
		if (!h->ops->unmap)
			return disk_range_check_live(d, io->sector, io->count);
		return CALL_OP(h, unmap, io);
	case DISK_OP_WRITE_ZEROES:
		if (!disk_range_representable(io->sector, io->count, shift))
			return DISK_ILLEGAL_BLOCK;
		h = HANDLER(d, write_zeroes);
		if (h->ops->write_zeroes) {
			if ((io->flags & DISK_IO_FUA) && !d->info.fua_respected)
				return emu_fua_write(io);
			return CALL_OP(h, write_zeroes, io);
		}
		if (io->count == 0)
			return disk_range_check_live(d, io->sector, 0);
		return emu_write_zeroes(d, io);
	case DISK_OP_BLOCK_STATUS:
		if (!disk_range_representable(io->sector, io->count, shift))
			return DISK_ILLEGAL_BLOCK;
		if (!io->u.bs.extents || io->u.bs.max == 0)
			return DISK_INVALID_INPUT;
		io->u.bs.nr = 0;
		if (io->count == 0)
			return disk_range_check_live(d, io->sector, 0);
		h = HANDLER(d, block_status);
		if (h->ops->block_status)
			return CALL_OP(h, block_status, io);
		return disk_block_status_data(d, io);
	case DISK_OP_CACHE:
		if (!disk_range_representable(io->sector, io->count, shift))
			return DISK_ILLEGAL_BLOCK;
		h = HANDLER(d, cache);
		if (h->ops->cache)
			return CALL_OP(h, cache, io);
		if (io->count == 0)
			return disk_range_check_live(d, io->sector, 0);
		return emu_cache(io);
	case DISK_OP_EJECT:
		h = HANDLER(d, eject);
		return h->ops->eject ? h->ops->eject(h, io) : DISK_UNSUPPORTED;
	case DISK_OP_PR_REPORT:
		if (!io->u.pr.report)
			return DISK_INVALID_INPUT;
		goto pr;
	case DISK_OP_PR_RESERVE:
	case DISK_OP_PR_RELEASE:
	case DISK_OP_PR_PREEMPT:
		if ((unsigned)io->u.pr.type > DISK_PR_EXCLUSIVE_ACCESS_ALL_REG)
			return DISK_INVALID_INPUT;
		/* "none" is not a type to reserve, release or preempt with;
		 * a disk without PR still says UNSUPPORTED first. */
		h = HANDLER(d, pr);
		if (h->ops->pr && (h->info.caps & DISK_CAP_PR) && io->u.pr.type == DISK_PR_NONE)
			return DISK_INVALID_INPUT;
		goto pr;
	case DISK_OP_PR_CAPS:
	case DISK_OP_PR_REGISTER:
	case DISK_OP_PR_CLEAR:
	pr:
		h = HANDLER(d, pr);
		return h->ops->pr ? h->ops->pr(h, io) : DISK_UNSUPPORTED;
	case DISK_OP_COUNT:
		break;
	}
	return DISK_INVALID_INPUT;
}

int disk_forward(struct disk *lower, struct disk_io *io)
{
	struct disk *h;

	assert(lower && io->reactor == reactor_current());
	/* Same geometry, so the checks made above hold here too. */
	assert(lower->info.sector_shift == io->disk->info.sector_shift);
	io->disk = lower;
	/* A wrapper the frontend made (prwrap, ...) is not counted; the
	 * first counted disk the request reaches counts it. */
	disk_stats_wrap(lower, io);
	/* Reads and writes skip the re-validation (they are the hot path);
	 * everything else is dispatched again, so that the emulations and
	 * short-cuts that depend on @lower's ops and metadata run there. */
	switch (io->op) {
	case DISK_OP_READ:
		h = HANDLER(lower, read);
		return CALL_OP(h, read, io);
	case DISK_OP_WRITE:
		if ((io->flags & DISK_IO_FUA) && !lower->info.fua_respected)
			return emu_fua_write(io);
		h = HANDLER(lower, write);
		return CALL_OP(h, write, io);
	default:
		return disk_dispatch(lower, io);
	}
}

/* What disk_submit and disk_submit_child share: binds @io to @d and to the
 * calling reactor, resets its results and dispatches it. Returns the
 * dispatch status (DISK_PENDING: the op completes @io later). */
static int disk_start(struct disk *d, struct disk_io *io, bool count)
{
	io->disk = d;
	io->reactor = reactor_current();
	assert(io->reactor && "disk_submit and disk_submit_child need a reactor thread");
	assert(io->done);
	io->status = DISK_OK;
	io->os_errno = 0;
	io->medium = DISK_MEDIUM_NONE;
	if (count)
		disk_stats_wrap(d, io);
	return disk_dispatch(d, io);
}

int disk_submit_child(struct disk *d, struct disk_io *child)
{
	int st = disk_start(d, child, true);

	if (st != DISK_PENDING) {
		child->status = st;
		/* Finished at once: done will not run, so count it here. */
		if (child->done == disk_stats_done) {
			child->done = child->stats_done;
			disk_stats_count(child);
		}
	}
	return st;
}

void disk_submit(struct disk *d, struct disk_io *io)
{
	int st = disk_start(d, io, true);

	if (st != DISK_PENDING)
		disk_defer(io, st);
}

static void emu_submit(struct disk *d, struct disk_io *child)
{
	int st = disk_start(d, child, false);

	if (st != DISK_PENDING)
		disk_defer(child, st);
}

/* ---- resize watch -------------------------------------------------------------- */

int disk_watch_resize(struct disk *d, struct disk_resize_watch *w)
{
	struct disk *h = HANDLER(d, watch_resize);

	if (!h->ops->watch_resize)
		return -EOPNOTSUPP;
	return h->ops->watch_resize(h, w);
}

void disk_unwatch_resize(struct disk *d, struct disk_resize_watch *w)
{
	struct disk *h = HANDLER(d, unwatch_resize);

	if (h->ops->unwatch_resize)
		h->ops->unwatch_resize(h, w);
}

struct resize_notifier {
	pthread_mutex_t lock;            /* protects the list and each watcher's seen_count */
	struct disk_resize_watch head;   /* circular list sentinel */
};

int resize_notifier_new(struct resize_notifier **out)
{
	struct resize_notifier *n = calloc(1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	pthread_mutex_init(&n->lock, NULL);
	n->head.next = n->head.prev = &n->head;
	*out = n;
	return 0;
}

void resize_notifier_free(struct resize_notifier *n)
{
	if (!n)
		return;
	pthread_mutex_destroy(&n->lock);
	free(n);
}

void resize_notifier_add(struct resize_notifier *n, struct disk_resize_watch *w, uint64_t current)
{
	pthread_mutex_lock(&n->lock);
	w->next = &n->head;
	w->prev = n->head.prev;
	n->head.prev->next = w;
	n->head.prev = w;
	if (w->seen_count != current) {
		w->seen_count = current;
		w->cb(w, current);
	}
	pthread_mutex_unlock(&n->lock);
}

void resize_notifier_remove(struct resize_notifier *n, struct disk_resize_watch *w)
{
	pthread_mutex_lock(&n->lock);
	if (w->next) {
		w->prev->next = w->next;
		w->next->prev = w->prev;
		w->next = w->prev = NULL;
	}
	pthread_mutex_unlock(&n->lock);
}

void resize_notifier_notify(struct resize_notifier *n, uint64_t new_count)
{
	pthread_mutex_lock(&n->lock);
	for (struct disk_resize_watch *w = n->head.next; w != &n->head; w = w->next) {
		if (w->seen_count != new_count) {
			w->seen_count = new_count;
			w->cb(w, new_count);
		}
	}
	pthread_mutex_unlock(&n->lock);
}

/* ---- description ----------------------------------------------------------------- */

void disk_describe(struct disk *d, struct disk_describer *dd)
{
	if (d->ops->describe)
		d->ops->describe(d, dd);
	if (d->lower && dd->child)
		dd->child(dd, "inner", d->lower);
}

void disk_describe_paramf(struct disk_describer *dd, const char *key, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (dd->param)
		dd->param(dd, key, buf);
}

/* ---- synchronous helpers ------------------------------------------------------------ */

static void disk_sync_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

int disk_sync_io(struct disk *d, struct disk_io *io)
{
	struct reactor *r = reactor_current();
	bool done = false;

	assert(r && "disk_sync_io needs a reactor on this thread");
	io->done = disk_sync_done;
	io->opaque = &done;
	disk_submit(d, io);
	if (reactor_run_until(r, &done) < 0 && !done)
		return DISK_IO_ERROR;
	return io->status;
}

int disk_sync_read(struct disk *d, uint64_t sector, void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct disk_io io = { .op = DISK_OP_READ, .sector = sector, .iov = &iov, .iovcnt = 1 };

	return disk_sync_io(d, &io);
}

int disk_sync_write(struct disk *d, uint64_t sector, const void *buf, size_t len, uint32_t flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct disk_io io = { .op = DISK_OP_WRITE, .flags = flags, .sector = sector,
			      .iov = &iov, .iovcnt = 1 };

	return disk_sync_io(d, &io);
}

int disk_sync_flush(struct disk *d)
{
	struct disk_io io = { .op = DISK_OP_FLUSH };

	return disk_sync_io(d, &io);
}

int disk_sync_unmap(struct disk *d, uint64_t sector, uint64_t count, uint32_t flags)
{
	struct disk_io io = { .op = DISK_OP_UNMAP, .flags = flags, .sector = sector, .count = count };

	return disk_sync_io(d, &io);
}

int disk_sync_write_zeroes(struct disk *d, uint64_t sector, uint64_t count, uint32_t flags)
{
	struct disk_io io = { .op = DISK_OP_WRITE_ZEROES, .flags = flags, .sector = sector,
			      .count = count };

	return disk_sync_io(d, &io);
}

int disk_sync_block_status(struct disk *d, uint64_t sector, uint64_t count,
			   struct disk_extent *ext, uint32_t max, uint32_t *nr)
{
	struct disk_io io = { .op = DISK_OP_BLOCK_STATUS, .sector = sector, .count = count };
	int st;

	io.u.bs.extents = ext;
	io.u.bs.max = max;
	st = disk_sync_io(d, &io);
	if (nr)
		*nr = io.u.bs.nr;
	return st;
}

/* ---- persistent reservations --------------------------------------------------- */

bool disk_pr_access_allowed(enum disk_pr_type type, bool registered, bool holder, bool write)
{
	if (type == DISK_PR_NONE || holder)
		return true;
	switch (type) {
	case DISK_PR_WRITE_EXCLUSIVE:
		return !write;
	case DISK_PR_EXCLUSIVE_ACCESS:
		return false;
	case DISK_PR_WRITE_EXCLUSIVE_REG_ONLY:
	case DISK_PR_WRITE_EXCLUSIVE_ALL_REG:
		return !write || registered;
	case DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY:
	case DISK_PR_EXCLUSIVE_ACCESS_ALL_REG:
		return registered;
	default:
		return false;
	}
}
