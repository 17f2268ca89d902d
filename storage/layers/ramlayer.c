/* SPDX-License-Identifier: MIT */
/*
 * ramlayer.c: the RAM layer (reference/openvmm-disk-stack.md §4.1), a sparse,
 * resizable in-memory block store used as a layer of a layered disk
 * (mem:<size>, memdiff:<spec>), and ramdisk_new, the one-layer RAM disk.
 *
 * Notes on the design
 * -------------------
 * Data structures.
 * - Sector data lives in pages of P = max(4096, sector size) bytes, each one
 *   a plain malloc(P): glibc adds a 16-byte header and nothing else, so 4 KiB
 *   pages cost 0.4% more than their data (aligned_alloc would round every
 *   page up to 8 KiB). A page holds spp = P / sector size sectors (8, 4, 2
 *   or 1), so its presence mask is one byte.
 * - Pages are found through a radix tree of fan-out 512 over the page index.
 *   A leaf holds 512 page pointers and their 512 masks (4.5 KiB, covering
 *   2 MiB of 4 KiB pages); an interior node holds 512 child pointers. The
 *   height is the smallest that covers the sector count (2 up to 1 GiB of
 *   4 KiB pages, 5 for a PiB). Nodes are allocated by the first write below
 *   them and published with a CAS, so concurrent writers never take a global
 *   lock. A grow that needs more levels pushes a new root above the old one;
 *   the height never decreases.
 * - zero_after (§4.1): missing sectors at or beyond it read as zero and are
 *   marked. It only ever decreases (unmap, resize), so it is an atomic that
 *   is lowered with a CAS loop and read without a lock.
 *
 * Invariants.
 * - Outside a lock holder's critical section a page pointer is non-NULL iff
 *   its mask is non-zero: the pointer is set before the first mask bit, and
 *   a page whose mask becomes empty is unlinked and freed at once.
 * - No sector >= sector_count is present; zero_after <= sector_count; every
 *   page index below the sector count is < 512^height.
 *
 * Locking.
 * - 256 stripe spinlocks, one per cache line. A page's stripe is a
 *   multiplicative hash of its index, so streams a power of two apart do
 *   not collide. Stripe s protects the contents, pointer and mask of every
 *   page that hashes to s, and the stripe's memory counters.
 * - Holding any one stripe keeps every tree node alive: nodes are freed and
 *   the root/height replaced only by "exclusive" operations, which take all
 *   stripes in index order (resize, an unmap covering a whole leaf; close
 *   runs with no request in flight).
 *   A request therefore walks the tree under the stripe of the page it is
 *   working on, and may peek with relaxed loads (never dereferencing a page)
 *   at other stripes' pointers and masks to skip holes and answer block
 *   status.
 * - An I/O holds at most one stripe at a time (page by page), so stripes
 *   need no lock order outside exclusive mode. A multi-page request is not
 *   atomic as a whole, but every sector is: a reader copies a page under its
 *   lock, so it never sees a freed page or a half-written sector, and
 *   write-no-overwrite tests and writes each sector under the same lock.
 * - resize_lock serialises resizes, so watchers are told sizes in order.
 * - Cost, measured on the 2-core build VM (gcc -O2, layer ops called
 *   directly): an uncontended stripe lock+unlock is ~2 ns; a 4 KiB random
 *   read is ~105 ns over a cache-resident 4 MiB layer (a bare memcpy of the
 *   same pages: 75 ns) and ~650 ns over 1 GiB, where a bare memcpy from
 *   random DRAM pages alone costs ~750 ns; a read of a hole is ~13 ns.
 *   The alternative, a pthread_rwlock taken shared by every I/O and
 *   exclusively by resize, costs 6 ns alone but 45 ns per I/O with two
 *   threads, because its cache line bounces between cores; stripes keep the
 *   fast path at one uncontended lock and make resize pay instead (256
 *   lock acquisitions, ~1 µs).
 * - Races with resize: ops range-check against the count without a lock;
 *   under a stripe the live count is stable (resize holds every stripe), so
 *   a write drops sectors at or past it (as if it had completed just before
 *   the shrink) and a read sees them as missing sectors past zero_after,
 *   i.e. zeroes.
 *
 * Memory.
 * - Held data + 0.4% malloc headers + one leaf (4.5 KiB) per 2 MiB span that
 *   has ever been written + one interior node per 1 GiB span: a 1 GiB layer
 *   with 64 MiB written in random 4 KiB blocks allocates 1.04x its data.
 * - XXX: 512-byte sectors written scattered, one per 4 KiB page, cost 8x
 *   their size, because each holds a whole page (a 4 KiB-sector layer has no
 *   such case). Guest file systems write in 4 KiB blocks, so this is rare;
 *   per-sector allocation would cost a pointer and a header per sector on
 *   the common path instead.
 * - Leaves are freed only in exclusive mode (an unmap covering the whole
 *   leaf, a shrink, close); a leaf emptied by small unmaps stays, which is
 *   bounded by 0.22% of the layer's size.
 * - Pages are allocated on the I/O path (holding data is the point of a RAM
 *   layer), outside the stripe lock; a failure completes with DISK_IO_ERROR
 *   and ENOMEM.
 *
 * Fused transforms (layer_meta.xform; io->xform, see disk.h).
 * - When a request carries a transform (crypt over mem:), the layer calls
 *   it instead of memcpy between a page and the request's buffers, so the
 *   data is touched once: READ transforms page -> buffer, WRITE buffer ->
 *   page (the caller's buffer is only read). Calls cover whole sectors of
 *   one page with their own LBA; disk_xform_iov handles sectors that
 *   straddle buffer entries. Missing sectors past zero_after are zeroed
 *   and then transformed in place, as a plain read plus the transform
 *   would give.
 * - The transform runs under the page's stripe lock, like the memcpy it
 *   replaces, so it holds the lock longer (AES-XTS: ~0.6-0.8 us per 4 KiB
 *   page instead of ~0.1 us); only requests on pages of the same stripe
 *   wait for it.
 * - A failed transform fails the request with its errno; on a write the
 *   sectors it was given are left marked present with whatever it wrote
 *   (a torn write), which keeps a new page's mask non-zero.
 * - XXX: prefetching the next page while transforming one did not help
 *   (the whole page: 10-20% slower reads; four cache lines: noise).
 *
 * Adopted write buffers (layer_meta.adopt_bytes = the page size; disk.h).
 * - A WRITE with DISK_IO_ADOPT (and no transform, not a read-cache fill)
 *   whose iovec entry holds exactly one whole page takes that buffer as
 *   the page, under the stripe lock like the memcpy it replaces, and hands
 *   back the old page (or NULL) in the entry: pages are plain malloc'd
 *   blocks of page_bytes, so the two are interchangeable. Readers copy
 *   under the same lock, so none sees a half-swapped page.
 *
 * Durability: nothing survives the process. Flush is a no-op and FUA is
 * trivially respected. Every op completes immediately.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "common/log.h"
#include "storage/layered.h"

#define RAM_MIN_PAGE_BYTES 4096u
#define RAM_FANOUT_SHIFT 9
#define RAM_FANOUT (1u << RAM_FANOUT_SHIFT)
#define RAM_FANOUT_MASK (RAM_FANOUT - 1)
#define RAM_STRIPE_SHIFT 8
#define RAM_STRIPES (1u << RAM_STRIPE_SHIFT)
/* 512^7 = 2^63 pages: more than any representable sector count needs. */
#define RAM_MAX_HEIGHT 7
/* glibc's chunk header, counted in alloc_bytes for every allocation. */
#define RAM_MALLOC_OVERHEAD 16u
#define RAM_SPIN_BEFORE_YIELD 128

/* The bottom of the tree: 512 pages and their presence masks. */
struct ram_leaf {
	void *page[RAM_FANOUT];         /* page_bytes each, or NULL */
	uint8_t mask[RAM_FANOUT];       /* bit i: sector i of the page is present */
};

/* An interior node: children are nodes, or leaves at level 2. */
struct ram_node {
	void *child[RAM_FANOUT];
};

struct ram_stripe {
	/* 0 = free, 1 = held. Protects the pointer, mask and contents of every
	 * page hashing here, and the two counters below. */
	int lock;
	uint64_t present_sectors;       /* written under lock, read relaxed */
	uint64_t pages;                 /* written under lock, read relaxed */
} __attribute__((aligned(64)));

struct ramlayer {
	struct ram_stripe stripe[RAM_STRIPES];

	/* Configuration from ramlayer_new (0 = inherit). */
	uint64_t cfg_size_bytes;
	uint32_t cfg_sector_size;

	/* Geometry, fixed at attach, before any I/O. */
	bool attached;
	uint32_t sector_size;
	uint32_t sector_shift;
	uint32_t spp_shift;             /* log2(sectors per page) */
	uint8_t full_mask;              /* mask of a page with every sector present */
	size_t page_bytes;

	uint64_t sector_count;          /* atomic; changed only in exclusive mode */
	uint64_t zero_after;            /* atomic; only decreases */
	void *root;                     /* atomic; set by CAS or in exclusive mode */
	unsigned height;                /* levels, 1 = the root is a leaf; exclusive */
	uint64_t node_bytes;            /* atomic; bytes of leaves and nodes */

	/* Serialises ramlayer_resize (taken before the stripes). */
	pthread_mutex_t resize_lock;
	struct resize_notifier *notifier;
};

/* ---- small helpers ------------------------------------------------------ */

static inline void ram_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static void ram_stripe_lock_slow(struct ram_stripe *st)
{
	unsigned spins = 0;

	do {
		while (__atomic_load_n(&st->lock, __ATOMIC_RELAXED)) {
			if (++spins < RAM_SPIN_BEFORE_YIELD)
				ram_cpu_relax();
			else
				sched_yield();
		}
	} while (__atomic_exchange_n(&st->lock, 1, __ATOMIC_ACQUIRE));
}

static inline void ram_stripe_lock(struct ram_stripe *st)
{
	if (unlikely(__atomic_exchange_n(&st->lock, 1, __ATOMIC_ACQUIRE)))
		ram_stripe_lock_slow(st);
}

static inline void ram_stripe_unlock(struct ram_stripe *st)
{
	__atomic_store_n(&st->lock, 0, __ATOMIC_RELEASE);
}

static inline struct ram_stripe *ram_stripe_of(struct ramlayer *r, uint64_t pg)
{
	return &r->stripe[(pg * 0x9E3779B97F4A7C15ull) >> (64 - RAM_STRIPE_SHIFT)];
}

/* Exclusive mode: every stripe, in index order. */
static void ram_lock_all(struct ramlayer *r)
{
	for (unsigned i = 0; i < RAM_STRIPES; i++)
		ram_stripe_lock(&r->stripe[i]);
}

static void ram_unlock_all(struct ramlayer *r)
{
	for (unsigned i = RAM_STRIPES; i-- > 0;)
		ram_stripe_unlock(&r->stripe[i]);
}

/* Counter updates, under the stripe lock (readers load them relaxed). */
static inline void ram_stripe_account(struct ram_stripe *st, int64_t sectors, int64_t pages)
{
	__atomic_store_n(&st->present_sectors, st->present_sectors + (uint64_t)sectors,
			 __ATOMIC_RELAXED);
	if (pages)
		__atomic_store_n(&st->pages, st->pages + (uint64_t)pages, __ATOMIC_RELAXED);
}

/* Mask bits for sectors [a, b) of a page (b <= 8). */
static inline uint8_t ram_bits(unsigned a, unsigned b)
{
	return (uint8_t)(((1u << b) - 1) & ~((1u << a) - 1));
}

static inline uint8_t ram_load_mask(const struct ram_leaf *leaf, unsigned idx)
{
	return __atomic_load_n(&leaf->mask[idx], __ATOMIC_RELAXED);
}

static inline uint64_t ram_count(const struct ramlayer *r)
{
	return __atomic_load_n(&r->sector_count, __ATOMIC_ACQUIRE);
}

static inline uint64_t ram_zero_after(const struct ramlayer *r)
{
	return __atomic_load_n(&r->zero_after, __ATOMIC_ACQUIRE);
}

static void ram_lower_zero_after(struct ramlayer *r, uint64_t v)
{
	uint64_t cur = ram_zero_after(r);

	while (v < cur && !__atomic_compare_exchange_n(&r->zero_after, &cur, v, false,
							__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

static inline uint64_t ram_capacity_pages(unsigned height)
{
	return 1ull << (RAM_FANOUT_SHIFT * height);
}

static unsigned ram_height_for(uint64_t pages)
{
	unsigned h = 1;

	while (h < RAM_MAX_HEIGHT && ram_capacity_pages(h) < pages)
		h++;
	return h;
}

/* Pages needed for @count sectors. */
static inline uint64_t ram_pages_for(const struct ramlayer *r, uint64_t count)
{
	return (count >> r->spp_shift) + ((count & ((1ull << r->spp_shift) - 1)) != 0);
}

/* ---- iovec cursor ------------------------------------------------------- */

/* Walks a request's buffers forward once, so a many-page request over a long
 * iovec list stays linear. */
struct ram_cursor {
	const struct iovec *iov;
	int iovcnt;
	int i;                          /* current element */
	size_t off;                     /* bytes of it consumed */
};

enum ram_cursor_op { RAM_CUR_OUT, RAM_CUR_IN, RAM_CUR_ZERO, RAM_CUR_SKIP };

static void ram_cursor_init(struct ram_cursor *c, const struct iovec *iov, int iovcnt)
{
	c->iov = iov;
	c->iovcnt = iovcnt;
	c->i = 0;
	c->off = 0;
}

/* OUT copies @buf into the request, IN copies the request into @buf, ZERO
 * zero-fills the request, SKIP only advances. */
static void ram_cursor_do(struct ram_cursor *c, enum ram_cursor_op op, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		assert(c->i < c->iovcnt);
		const struct iovec *v = &c->iov[c->i];
		size_t n = MIN(len, v->iov_len - c->off);

		if (n && op != RAM_CUR_SKIP) {
			uint8_t *base = (uint8_t *)v->iov_base + c->off;

			if (op == RAM_CUR_OUT) {
				memcpy(base, p, n);
				p += n;
			} else if (op == RAM_CUR_IN) {
				memcpy(p, base, n);
				p += n;
			} else {
				memset(base, 0, n);
			}
		}
		len -= n;
		c->off += n;
		if (c->off == v->iov_len) {
			c->i++;
			c->off = 0;
		}
	}
}

/*
 * Moves @len bytes (whole sectors, the first at LBA @sector) between the
 * request and @buf in the page - OUT: page to request, IN: request to page -
 * through io->xform when the request has one (the fused path), else by
 * copying. Returns 0 or -errno (the transform failed).
 */
static int ram_move(struct ramlayer *r, struct ram_cursor *c, const struct disk_io *io,
		    enum ram_cursor_op op, uint8_t *buf, size_t len, uint64_t sector)
{
	struct iov_pos p;
	int ret;

	if (likely(!io->xform)) {
		ram_cursor_do(c, op, buf, len);
		return 0;
	}
	p.i = c->i;
	p.off = c->off;
	ret = disk_xform_iov(io, c->iov, c->iovcnt, &p,
			     op == RAM_CUR_OUT ? DISK_XFORM_TO_IOV : DISK_XFORM_FROM_IOV, buf,
			     sector, len >> r->sector_shift, r->sector_shift);
	c->i = p.i;
	c->off = p.off;
	return ret;
}

/* Zero-fills @n sectors of the request from LBA @sector; with a transform,
 * they get the transform of zero sectors, as if read and then transformed. */
static int ram_zero(struct ramlayer *r, struct ram_cursor *c, const struct disk_io *io,
		    uint64_t sector, uint64_t n)
{
	struct iov_pos p = { c->i, c->off };

	ram_cursor_do(c, RAM_CUR_ZERO, NULL, n << r->sector_shift);
	if (likely(!io->xform))
		return 0;
	return disk_xform_iov(io, c->iov, c->iovcnt, &p, DISK_XFORM_IN_IOV, NULL, sector, n,
			      r->sector_shift);
}

/* ---- the tree ----------------------------------------------------------- */

/*
 * The leaf holding page @pg, or NULL with *hole_end set to the first page
 * past the empty subtree that contains @pg. Caller holds a stripe.
 */
static struct ram_leaf *ram_find_leaf(struct ramlayer *r, uint64_t pg, uint64_t *hole_end)
{
	void *node = __atomic_load_n(&r->root, __ATOMIC_ACQUIRE);

	if (!node) {
		*hole_end = ram_capacity_pages(r->height);
		return NULL;
	}
	for (unsigned lvl = r->height; lvl > 1; lvl--) {
		unsigned sh = RAM_FANOUT_SHIFT * (lvl - 1);
		struct ram_node *n = node;

		node = __atomic_load_n(&n->child[(pg >> sh) & RAM_FANOUT_MASK], __ATOMIC_ACQUIRE);
		if (!node) {
			*hole_end = ((pg >> sh) + 1) << sh;
			return NULL;
		}
	}
	return node;
}

/* The leaf holding page @pg, allocating the path to it. NULL on ENOMEM.
 * Caller holds a stripe. */
static struct ram_leaf *ram_get_leaf(struct ramlayer *r, uint64_t pg)
{
	void **slot = &r->root;

	for (unsigned lvl = r->height;; lvl--) {
		void *node = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

		if (unlikely(!node)) {
			/* XXX: allocated under the stripe lock; rare (once per
			 * 2 MiB of address space). */
			size_t sz = lvl == 1 ? sizeof(struct ram_leaf) : sizeof(struct ram_node);
			void *fresh = calloc(1, sz);

			if (!fresh)
				return NULL;
			if (__atomic_compare_exchange_n(slot, &node, fresh, false, __ATOMIC_ACQ_REL,
							__ATOMIC_ACQUIRE)) {
				node = fresh;
				__atomic_add_fetch(&r->node_bytes, sz + RAM_MALLOC_OVERHEAD,
						   __ATOMIC_RELAXED);
			} else {
				free(fresh);
			}
		}
		if (lvl == 1)
			return node;
		slot = &((struct ram_node *)node)->child[(pg >> (RAM_FANOUT_SHIFT * (lvl - 1))) &
							  RAM_FANOUT_MASK];
	}
}

/* The first page in [from, limit) that has data, or @limit. Caller holds a
 * stripe; other stripes' pointers are only peeked at. */
static uint64_t ram_next_page(struct ramlayer *r, uint64_t from, uint64_t limit)
{
	while (from < limit) {
		uint64_t hole_end;
		struct ram_leaf *leaf = ram_find_leaf(r, from, &hole_end);

		if (!leaf) {
			from = hole_end;
			continue;
		}
		uint64_t leaf_end = MIN(limit, (from | RAM_FANOUT_MASK) + 1);

		for (; from < leaf_end; from++)
			if (__atomic_load_n(&leaf->page[from & RAM_FANOUT_MASK], __ATOMIC_RELAXED))
				return from;
	}
	return limit;
}

/* Frees page @pg holding @mask. Exclusive mode. */
static void ram_free_page(struct ramlayer *r, uint64_t pg, void *page, uint8_t mask)
{
	ram_stripe_account(ram_stripe_of(r, pg), -(int64_t)__builtin_popcount(mask), -1);
	free(page);
}

/* Frees a whole subtree at level @lvl whose first page is @base. Exclusive. */
static void ram_free_subtree(struct ramlayer *r, void *node, unsigned lvl, uint64_t base)
{
	size_t sz;

	if (lvl == 1) {
		struct ram_leaf *leaf = node;

		for (unsigned i = 0; i < RAM_FANOUT; i++)
			if (leaf->page[i])
				ram_free_page(r, base + i, leaf->page[i], leaf->mask[i]);
		sz = sizeof(*leaf);
	} else {
		struct ram_node *n = node;
		uint64_t cspan = ram_capacity_pages(lvl - 1);

		for (unsigned i = 0; i < RAM_FANOUT; i++)
			if (n->child[i])
				ram_free_subtree(r, n->child[i], lvl - 1, base + i * cspan);
		sz = sizeof(*n);
	}
	free(node);
	__atomic_sub_fetch(&r->node_bytes, sz + RAM_MALLOC_OVERHEAD, __ATOMIC_RELAXED);
}

/* Sector range [s, e) as page bounds: pages touched [lo, hi), pages wholly
 * inside [full_lo, full_hi). */
struct ram_drop_range {
	uint64_t s, e;
	uint64_t lo, hi;
	uint64_t full_lo, full_hi;
};

/* Removes sectors of the range from the subtree in *@slot (level @lvl, first
 * page @base), freeing pages, leaves and nodes that end up wholly unused.
 * Exclusive mode. */
static void ram_drop_subtree(struct ramlayer *r, void **slot, unsigned lvl, uint64_t base,
			     const struct ram_drop_range *dr)
{
	void *node = *slot;
	uint64_t span = ram_capacity_pages(lvl);

	if (!node)
		return;
	if (base >= dr->full_lo && base + span <= dr->full_hi) {
		ram_free_subtree(r, node, lvl, base);
		__atomic_store_n(slot, NULL, __ATOMIC_RELEASE);
		return;
	}

	uint64_t from = MAX(dr->lo, base), to = MIN(dr->hi, base + span);

	if (from >= to)
		return;
	if (lvl == 1) {
		struct ram_leaf *leaf = node;

		for (uint64_t pg = from; pg < to; pg++) {
			unsigned idx = pg & RAM_FANOUT_MASK;
			void *page = leaf->page[idx];

			if (!page)
				continue;
			uint64_t ps = pg << r->spp_shift, pe = (pg + 1) << r->spp_shift;
			uint8_t want = ram_bits((unsigned)(MAX(dr->s, ps) - ps),
						(unsigned)(MIN(dr->e, pe) - ps));
			uint8_t m = leaf->mask[idx], nm = m & (uint8_t)~want;

			if (nm == m)
				continue;
			__atomic_store_n(&leaf->mask[idx], nm, __ATOMIC_RELAXED);
			if (nm) {
				ram_stripe_account(ram_stripe_of(r, pg),
						   -(int64_t)__builtin_popcount(m & want), 0);
			} else {
				__atomic_store_n(&leaf->page[idx], NULL, __ATOMIC_RELEASE);
				ram_free_page(r, pg, page, m);
			}
		}
		return;
	}

	struct ram_node *n = node;
	uint64_t cspan = ram_capacity_pages(lvl - 1);

	for (uint64_t i = (from - base) / cspan; i <= (to - 1 - base) / cspan; i++)
		ram_drop_subtree(r, &n->child[i], lvl - 1, base + i * cspan, dr);
}

/* Removes sectors [s, e) in exclusive mode. */
static void ram_drop_exclusive(struct ramlayer *r, uint64_t s, uint64_t e)
{
	struct ram_drop_range dr = {
		.s = s, .e = e,
		.lo = s >> r->spp_shift, .hi = ram_pages_for(r, e),
		.full_lo = ram_pages_for(r, s), .full_hi = e >> r->spp_shift,
	};

	if (s >= e)
		return;
	ram_drop_subtree(r, &r->root, r->height, 0, &dr);
}

/* Removes sectors [s, e) page by page, one stripe at a time. */
static void ram_drop_shared(struct ramlayer *r, uint64_t s, uint64_t e)
{
	uint64_t end_pg = ram_pages_for(r, e);
	uint64_t pos = s;

	while (pos < e) {
		uint64_t pg = pos >> r->spp_shift, ps = pg << r->spp_shift;
		unsigned idx = pg & RAM_FANOUT_MASK;
		struct ram_stripe *st = ram_stripe_of(r, pg);
		uint64_t hole_end;

		ram_stripe_lock(st);
		struct ram_leaf *leaf = ram_find_leaf(r, pg, &hole_end);
		void *page = leaf ? leaf->page[idx] : NULL;

		if (!page) {
			uint64_t next = ram_next_page(r, pg + 1, end_pg);

			ram_stripe_unlock(st);
			pos = next << r->spp_shift;
			continue;
		}

		uint64_t pend = MIN(e, ps + (1ull << r->spp_shift));
		uint8_t want = ram_bits((unsigned)(pos - ps), (unsigned)(pend - ps));
		uint8_t m = leaf->mask[idx], nm = m & (uint8_t)~want;
		void *to_free = NULL;

		if (nm != m) {
			__atomic_store_n(&leaf->mask[idx], nm, __ATOMIC_RELAXED);
			if (!nm) {
				__atomic_store_n(&leaf->page[idx], NULL, __ATOMIC_RELEASE);
				to_free = page;
			}
			ram_stripe_account(st, -(int64_t)__builtin_popcount(m & want),
					   to_free ? -1 : 0);
		}
		ram_stripe_unlock(st);
		free(to_free);
		pos = pend;
	}
}

/* ---- ops ---------------------------------------------------------------- */

static int ramlayer_attach(struct layer *l, const struct layer_meta *lower,
			   struct layer_meta *meta, char *err, size_t errlen)
{
	struct ramlayer *r = layer_priv(l);
	uint32_t ss = r->cfg_sector_size ? r->cfg_sector_size : lower ? lower->sector_size : 512;
	uint64_t bytes = r->cfg_size_bytes;

	if (r->attached && __atomic_load_n(&r->root, __ATOMIC_ACQUIRE)) {
		(void)errbuf_printf(err, errlen, "ram layer is already attached and holds data");
		return -EBUSY;
	}
	if (!IS_POW2(ss) || ss < 512) {
		(void)errbuf_printf(err, errlen, "invalid sector size %" PRIu32, ss);
		return -EINVAL;
	}
	if (!bytes && lower && MUL_OVERFLOW(lower->sector_count, (uint64_t)lower->sector_size, &bytes)) {
		(void)errbuf_printf(err, errlen, "lower layer size overflows");
		return -EINVAL;
	}
	if (!bytes) {
		(void)errbuf_printf(err, errlen, "empty disk: a ram layer needs a size or a layer below it");
		return -EINVAL;
	}
	if (bytes % ss) {
		(void)errbuf_printf(err, errlen, "disk size %" PRIu64 " is not a multiple of the sector size %" PRIu32,
			bytes, ss);
		return -EINVAL;
	}
	if (bytes > INT64_MAX) {
		(void)errbuf_printf(err, errlen, "disk size %" PRIu64 " is too large", bytes);
		return -EINVAL;
	}

	r->sector_size = ss;
	r->sector_shift = ilog2_u64(ss);
	r->page_bytes = MAX(ss, RAM_MIN_PAGE_BYTES);
	r->spp_shift = ilog2_u64(r->page_bytes) - r->sector_shift;
	r->full_mask = ram_bits(0, 1u << r->spp_shift);
	uint64_t count = bytes >> r->sector_shift;
	r->height = ram_height_for(ram_pages_for(r, count));
	__atomic_store_n(&r->zero_after, count, __ATOMIC_RELEASE);
	__atomic_store_n(&r->sector_count, count, __ATOMIC_RELEASE);
	r->attached = true;

	memset(meta, 0, sizeof(*meta));
	meta->has_disk_id = false;
	meta->sector_size = ss;
	meta->sector_count = count;
	meta->physical_sector_size = ss;
	/* Beyond OpenVMM (which says UNSPECIFIED always): with nothing below,
	 * every unmap comes with NEXT_IS_ZERO (the layered disk sets it for
	 * its last layer), drops the sectors, and they read back as zero. So a
	 * bottom RAM layer (mem:) reports ZEROES, and the layered disk turns
	 * write-zeroes into unmap instead of allocating pages of zeroes. */
	meta->unmap_behavior = lower ? DISK_UNMAP_UNSPECIFIED : DISK_UNMAP_ZEROES;
	meta->optimal_unmap_sectors = 1;
	meta->read_only = false;
	meta->can_read_cache = true;
	meta->fua_respected = true;
	meta->caps = DISK_CAP_COHERENT | DISK_CAP_RESIZE;
	meta->xform = true;
	meta->adopt_bytes = r->page_bytes;
	return 0;
}

static uint64_t ramlayer_sector_count(struct layer *l)
{
	return ram_count(layer_priv(l));
}

/* Handles missing sectors [a, b) of a read: those at or past @za are zeroed
 * and marked, the others are left to the layers below. Returns 0 or -errno. */
static int ram_read_missing(struct ramlayer *r, struct ram_cursor *cur, const struct disk_io *io,
			    uint64_t a, uint64_t b, uint64_t za)
{
	uint64_t z = MAX(a, za);
	int ret;

	if (z >= b) {
		ram_cursor_do(cur, RAM_CUR_SKIP, NULL, (b - a) << r->sector_shift);
		return 0;
	}
	if (z > a)
		ram_cursor_do(cur, RAM_CUR_SKIP, NULL, (z - a) << r->sector_shift);
	ret = ram_zero(r, cur, io, z, b - z);
	if (ret == 0)
		bitmap_set_range(io->u.marker, z, b - z);
	return ret;
}

/* Sectors [i0, i1) of a partly present page starting at sector @ps.
 * Returns 0 or -errno. */
static int ram_read_partial(struct ramlayer *r, struct ram_cursor *cur, const struct disk_io *io,
			    uint8_t *page, uint8_t m, uint64_t ps, unsigned i0, unsigned i1,
			    uint64_t za)
{
	unsigned i = i0;
	int ret;

	while (i < i1) {
		bool present = (m >> i) & 1;
		unsigned j = i + 1;

		while (j < i1 && (bool)((m >> j) & 1) == present)
			j++;
		if (present) {
			ret = ram_move(r, cur, io, RAM_CUR_OUT, page + ((size_t)i << r->sector_shift),
				       (size_t)(j - i) << r->sector_shift, ps + i);
			if (ret == 0)
				bitmap_set_range(io->u.marker, ps + i, j - i);
		} else {
			ret = ram_read_missing(r, cur, io, ps + i, ps + j, za);
		}
		if (ret < 0)
			return ret;
		i = j;
	}
	return 0;
}

/* A transform failed: fail the request with its errno. */
static int ram_xform_failed(struct disk_io *io, int ret)
{
	io->os_errno = -ret;
	return DISK_IO_ERROR;
}

static int ramlayer_read(struct layer *l, struct disk_io *io)
{
	struct ramlayer *r = layer_priv(l);
	struct bitmap *marker = io->u.marker;
	struct ram_cursor cur;
	uint64_t end, pos = io->sector;
	int ret = 0;

	if (ADD_OVERFLOW(io->sector, io->count, &end) || end > ram_count(r))
		return DISK_ILLEGAL_BLOCK;
	assert(marker || io->count == 0);
	ram_cursor_init(&cur, io->iov, io->iovcnt);

	while (pos < end) {
		uint64_t pg = pos >> r->spp_shift, ps = pg << r->spp_shift;
		unsigned idx = pg & RAM_FANOUT_MASK;
		struct ram_stripe *st = ram_stripe_of(r, pg);
		uint64_t hole_end;

		ram_stripe_lock(st);
		uint64_t za = ram_zero_after(r);
		struct ram_leaf *leaf = ram_find_leaf(r, pg, &hole_end);
		uint8_t *page = leaf ? leaf->page[idx] : NULL;

		if (likely(page)) {
			uint64_t pend = MIN(end, ps + (1ull << r->spp_shift));
			unsigned i0 = (unsigned)(pos - ps), i1 = (unsigned)(pend - ps);
			uint8_t want = ram_bits(i0, i1), m = leaf->mask[idx];

			if (likely((m & want) == want)) {
				ret = ram_move(r, &cur, io, RAM_CUR_OUT,
					       page + ((size_t)i0 << r->sector_shift),
					       (size_t)(i1 - i0) << r->sector_shift, pos);
				ram_stripe_unlock(st);
				if (ret == 0)
					bitmap_set_range(marker, pos, pend - pos);
			} else {
				ret = ram_read_partial(r, &cur, io, page, m, ps, i0, i1, za);
				ram_stripe_unlock(st);
			}
			if (unlikely(ret < 0))
				return ram_xform_failed(io, ret);
			pos = pend;
			continue;
		}

		/* A hole: everything up to the next page with data is missing. */
		uint64_t next = leaf ? pg + 1 : hole_end;

		next = ram_next_page(r, next, ram_pages_for(r, end));
		ram_stripe_unlock(st);
		uint64_t hend = MIN(end, next << r->spp_shift);

		ret = ram_read_missing(r, &cur, io, pos, hend, za);
		if (unlikely(ret < 0))
			return ram_xform_failed(io, ret);
		pos = hend;
	}
	return DISK_OK;
}

/* Copies sectors [i0, i1) of the request into @page, the first at LBA
 * @ps + i0, skipping those in @m (write-no-overwrite). Returns 0 or -errno. */
static int ram_write_sparse(struct ramlayer *r, struct ram_cursor *cur, const struct disk_io *io,
			    uint8_t *page, uint8_t m, uint64_t ps, unsigned i0, unsigned i1)
{
	for (unsigned i = i0; i < i1; i++) {
		int ret;

		if ((m >> i) & 1) {
			ram_cursor_do(cur, RAM_CUR_SKIP, NULL, r->sector_size);
			continue;
		}
		ret = ram_move(r, cur, io, RAM_CUR_IN, page + ((size_t)i << r->sector_shift),
			       r->sector_size, ps + i);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int ramlayer_write(struct layer *l, struct disk_io *io)
{
	struct ramlayer *r = layer_priv(l);
	bool no_overwrite = io->flags & DISK_IO_NO_OVERWRITE;
	bool adopt = (io->flags & DISK_IO_ADOPT) && !no_overwrite && !io->xform;
	struct ram_cursor cur;
	uint64_t end, pos = io->sector;
	void *spare = NULL;
	int ret = DISK_OK;

	if (ADD_OVERFLOW(io->sector, io->count, &end) || end > ram_count(r))
		return DISK_ILLEGAL_BLOCK;
	ram_cursor_init(&cur, io->iov, io->iovcnt);

	while (pos < end) {
		uint64_t pg = pos >> r->spp_shift, ps = pg << r->spp_shift;
		uint64_t pend = MIN(end, ps + (1ull << r->spp_shift));
		unsigned idx = pg & RAM_FANOUT_MASK;
		struct ram_stripe *st = ram_stripe_of(r, pg);

		ram_stripe_lock(st);
		/* Stable under the stripe: a concurrent shrink drops the rest. */
		uint64_t count = ram_count(r);

		if (unlikely(pos >= count)) {
			ram_stripe_unlock(st);
			break;
		}
		uint64_t wend = MIN(pend, count);
		struct ram_leaf *leaf = ram_get_leaf(r, pg);

		if (unlikely(!leaf)) {
			ram_stripe_unlock(st);
			ret = -ENOMEM;
			break;
		}
		uint8_t *page = leaf->page[idx];
		uint8_t m = leaf->mask[idx];

		if (adopt && pos == ps && wend == pend && pend - ps == (1ull << r->spp_shift) &&
		    cur.off == 0 && cur.i < cur.iovcnt && cur.iov[cur.i].iov_len == r->page_bytes) {
			/* Take the caller's buffer as the page; it gets the old
			 * one (or NULL) back (disk.h, "Adopted write buffers"). */
			struct iovec *v = (struct iovec *)&cur.iov[cur.i];
			uint8_t full = ram_bits(0, 1u << r->spp_shift);

			__atomic_store_n(&leaf->page[idx], (uint8_t *)v->iov_base, __ATOMIC_RELEASE);
			v->iov_base = page;
			cur.i++;
			__atomic_store_n(&leaf->mask[idx], full, __ATOMIC_RELAXED);
			ram_stripe_account(st, __builtin_popcount(full & (uint8_t)~(page ? m : 0)),
					   page ? 0 : 1);
			ram_stripe_unlock(st);
			pos = pend;
			continue;
		}
		if (unlikely(!page)) {
			if (!spare) {
				/* Allocate outside the lock, then look again. */
				ram_stripe_unlock(st);
				spare = malloc(r->page_bytes);
				if (!spare) {
					ret = -ENOMEM;
					break;
				}
				continue;
			}
			page = spare;
			spare = NULL;
			m = 0;
			__atomic_store_n(&leaf->page[idx], page, __ATOMIC_RELEASE);
			ram_stripe_account(st, 0, 1);
		}

		unsigned i0 = (unsigned)(pos - ps), i1 = (unsigned)(wend - ps);
		uint8_t want = ram_bits(i0, i1);
		int xret;

		if (!no_overwrite || !(m & want))
			xret = ram_move(r, &cur, io, RAM_CUR_IN, page + ((size_t)i0 << r->sector_shift),
					(size_t)(i1 - i0) << r->sector_shift, pos);
		else
			xret = ram_write_sparse(r, &cur, io, page, m, ps, i0, i1);
		/* If the transform failed part way, the sectors it was given
		 * hold garbage: they are still marked present (as after a
		 * torn write), which keeps a new page's mask non-zero. */
		if (unlikely(xret < 0))
			ret = xret;
		if ((m | want) != m) {
			__atomic_store_n(&leaf->mask[idx], (uint8_t)(m | want), __ATOMIC_RELAXED);
			ram_stripe_account(st, __builtin_popcount(want & (uint8_t)~m), 0);
		}
		ram_stripe_unlock(st);
		if (unlikely(ret < 0))
			break;
		pos = pend;
	}
	free(spare);
	if (ret < 0) {
		io->os_errno = -ret;
		return DISK_IO_ERROR;
	}
	return DISK_OK;
}

static int ramlayer_flush(struct layer *l, struct disk_io *io)
{
	return DISK_OK;
}

static int ramlayer_unmap(struct layer *l, struct disk_io *io)
{
	struct ramlayer *r = layer_priv(l);
	uint64_t s = io->sector, end;

	if (ADD_OVERFLOW(s, io->count, &end) || end > ram_count(r))
		return DISK_ILLEGAL_BLOCK;
	if (!(io->flags & DISK_IO_NEXT_IS_ZERO)) {
		/* The map cannot hold a hole of zeroes below zero_after (§4.1). */
		if (end < ram_zero_after(r))
			return DISK_OK;
		ram_lower_zero_after(r, s);
	}
	if (s == end)
		return DISK_OK;

	/* Whole leaves are freed in exclusive mode; smaller ranges go page by
	 * page so they do not stall other threads. */
	uint64_t leaf_sectors = (uint64_t)RAM_FANOUT << r->spp_shift;
	uint64_t first_leaf = ROUND_UP(s, leaf_sectors);

	if (first_leaf < end && end - first_leaf >= leaf_sectors) {
		ram_lock_all(r);
		ram_drop_exclusive(r, s, MIN(end, ram_count(r)));
		ram_unlock_all(r);
	} else {
		ram_drop_shared(r, s, end);
	}
	return DISK_OK;
}

/* The first run of a block-status answer, built as sectors are classified. */
struct ram_run {
	uint64_t end;                   /* exclusive */
	int flags;                      /* -1 until the first sector */
	bool done;
};

static void ram_run_feed(struct ram_run *run, int flags, uint64_t a, uint64_t b)
{
	if (run->done || a >= b)
		return;
	if (run->flags < 0)
		run->flags = flags;
	if (run->flags != flags) {
		run->done = true;
		return;
	}
	assert(run->end == a);
	run->end = b;
}

/* Missing sectors: absent below zero_after (HOLE); at or past it present
 * (they shadow the layers below), zeroes, and unallocated (ZERO | HOLE). */
static void ram_run_missing(struct ram_run *run, uint64_t a, uint64_t b, uint64_t za)
{
	ram_run_feed(run, DISK_EXTENT_HOLE, a, MIN(b, za));
	ram_run_feed(run, DISK_EXTENT_ZERO | DISK_EXTENT_HOLE, MAX(a, za), b);
}

static int ramlayer_block_status(struct layer *l, struct disk_io *io)
{
	struct ramlayer *r = layer_priv(l);
	uint64_t end, pos = io->sector;
	struct ram_run run = { .end = io->sector, .flags = -1 };

	if (ADD_OVERFLOW(io->sector, io->count, &end) || end > ram_count(r))
		return DISK_ILLEGAL_BLOCK;
	io->u.bs.nr = 0;
	if (io->count == 0)
		return DISK_OK;
	assert(io->u.bs.extents && io->u.bs.max >= 1);

	uint64_t za = ram_zero_after(r);
	uint64_t end_pg = ram_pages_for(r, end);

	while (pos < end && !run.done) {
		uint64_t pg = pos >> r->spp_shift, hole_end;
		/* Any stripe keeps the tree alive; masks are only peeked at. */
		struct ram_stripe *st = ram_stripe_of(r, pg);

		ram_stripe_lock(st);
		struct ram_leaf *leaf = ram_find_leaf(r, pg, &hole_end);

		if (!leaf) {
			uint64_t hend = hole_end >= end_pg ? end : hole_end << r->spp_shift;

			ram_run_missing(&run, pos, hend, za);
			pos = hend;
		} else {
			uint64_t leaf_end = MIN(end_pg, (pg | RAM_FANOUT_MASK) + 1);

			for (; pg < leaf_end && !run.done; pg++) {
				uint64_t ps = pg << r->spp_shift;
				uint64_t pend = MIN(end, ps + (1ull << r->spp_shift));
				uint8_t m = ram_load_mask(leaf, pg & RAM_FANOUT_MASK);

				if (m == 0) {
					ram_run_missing(&run, pos, pend, za);
				} else if (m == r->full_mask) {
					ram_run_feed(&run, 0, pos, pend);
				} else {
					for (uint64_t s = pos; s < pend; s++) {
						if ((m >> (s - ps)) & 1)
							ram_run_feed(&run, 0, s, s + 1);
						else
							ram_run_missing(&run, s, s + 1, za);
					}
				}
				pos = pend;
			}
		}
		ram_stripe_unlock(st);
	}

	io->u.bs.extents[0] = (struct disk_extent){
		.count = run.end - io->sector,
		.flags = (uint32_t)run.flags,
		.layer = -1,
	};
	io->u.bs.nr = 1;
	return DISK_OK;
}

static int ramlayer_watch_resize(struct layer *l, struct disk_resize_watch *w)
{
	struct ramlayer *r = layer_priv(l);

	resize_notifier_add(r->notifier, w, ram_count(r));
	return 0;
}

static void ramlayer_unwatch_resize(struct layer *l, struct disk_resize_watch *w)
{
	struct ramlayer *r = layer_priv(l);

	resize_notifier_remove(r->notifier, w);
}

static void ramlayer_describe(struct layer *l, struct disk_describer *dd)
{
	struct ramlayer *r = layer_priv(l);
	uint64_t data, alloc;

	ramlayer_memory(l, &data, &alloc);
	disk_describe_paramf(dd, "size", "%" PRIu64, ram_count(r) << r->sector_shift);
	disk_describe_paramf(dd, "data_bytes", "%" PRIu64, data);
	disk_describe_paramf(dd, "alloc_bytes", "%" PRIu64, alloc);
}

static void ramlayer_close(struct layer *l)
{
	struct ramlayer *r = layer_priv(l);

	if (!r)
		return;
	if (r->root)
		ram_free_subtree(r, r->root, r->height, 0);
	resize_notifier_free(r->notifier);
	pthread_mutex_destroy(&r->resize_lock);
	free(r);
}

static const struct layer_ops ramlayer_ops = {
	.version = LAYER_OPS_VERSION,
	.type = "ram",
	.attach = ramlayer_attach,
	.sector_count = ramlayer_sector_count,
	.read = ramlayer_read,
	.write = ramlayer_write,
	.flush = ramlayer_flush,
	.unmap = ramlayer_unmap,
	.block_status = ramlayer_block_status,
	.watch_resize = ramlayer_watch_resize,
	.unwatch_resize = ramlayer_unwatch_resize,
	.describe = ramlayer_describe,
	.close = ramlayer_close,
};

/* ---- public ------------------------------------------------------------- */

int ramlayer_new(uint64_t size_bytes, uint32_t sector_size, struct layer **out,
		 char *err, size_t errlen)
{
	struct ramlayer *r;
	int ret;

	if (sector_size && (!IS_POW2(sector_size) || sector_size < 512)) {
		(void)errbuf_printf(err, errlen, "invalid sector size %" PRIu32, sector_size);
		return -EINVAL;
	}
	/* Every valid sector size is a multiple of 512, so an inherited one
	 * can be checked against 512 now and exactly at attach. */
	if (size_bytes % (sector_size ? sector_size : 512)) {
		(void)errbuf_printf(err, errlen, "disk size %" PRIu64 " is not a multiple of the sector size %" PRIu32,
			size_bytes, sector_size ? sector_size : 512);
		return -EINVAL;
	}
	if (size_bytes > INT64_MAX) {
		(void)errbuf_printf(err, errlen, "disk size %" PRIu64 " is too large", size_bytes);
		return -EINVAL;
	}

	r = aligned_alloc(_Alignof(struct ramlayer), sizeof(*r));
	if (!r)
		return -ENOMEM;
	memset(r, 0, sizeof(*r));
	r->cfg_size_bytes = size_bytes;
	r->cfg_sector_size = sector_size;
	r->height = 1;
	ret = -pthread_mutex_init(&r->resize_lock, NULL);
	if (ret) {
		free(r);
		return ret;
	}
	ret = resize_notifier_new(&r->notifier);
	if (ret == 0)
		ret = layer_new(&ramlayer_ops, r, out);
	if (ret) {
		resize_notifier_free(r->notifier);
		pthread_mutex_destroy(&r->resize_lock);
		free(r);
		(void)errbuf_printf(err, errlen, "out of memory");
	}
	return ret;
}

int ramlayer_resize(struct layer *l, uint64_t new_count)
{
	struct ramlayer *r = layer_priv(l);
	int ret = 0;

	if (!r->attached || new_count == 0 || new_count > ((uint64_t)INT64_MAX >> r->sector_shift))
		return -EINVAL;

	pthread_mutex_lock(&r->resize_lock);
	ram_lock_all(r);
	uint64_t old = r->sector_count;
	unsigned height = ram_height_for(ram_pages_for(r, new_count));

	/* Grow the tree first: the only step that can fail. */
	while (r->height < height) {
		if (r->root) {
			struct ram_node *n = calloc(1, sizeof(*n));

			if (!n) {
				ret = -ENOMEM;
				break;
			}
			__atomic_add_fetch(&r->node_bytes, sizeof(*n) + RAM_MALLOC_OVERHEAD,
					   __ATOMIC_RELAXED);
			n->child[0] = r->root;
			__atomic_store_n(&r->root, n, __ATOMIC_RELEASE);
		}
		r->height++;
	}
	if (ret == 0) {
		if (new_count < old)
			ram_drop_exclusive(r, new_count, old);
		ram_lower_zero_after(r, new_count);
		__atomic_store_n(&r->sector_count, new_count, __ATOMIC_RELEASE);
	}
	ram_unlock_all(r);
	if (ret == 0 && new_count != old)
		resize_notifier_notify(r->notifier, new_count);
	pthread_mutex_unlock(&r->resize_lock);
	return ret;
}

void ramlayer_memory(struct layer *l, uint64_t *data_bytes, uint64_t *alloc_bytes)
{
	struct ramlayer *r = layer_priv(l);
	uint64_t sectors = 0, pages = 0;

	for (unsigned i = 0; i < RAM_STRIPES; i++) {
		sectors += __atomic_load_n(&r->stripe[i].present_sectors, __ATOMIC_RELAXED);
		pages += __atomic_load_n(&r->stripe[i].pages, __ATOMIC_RELAXED);
	}
	if (data_bytes)
		*data_bytes = sectors << r->sector_shift;
	if (alloc_bytes)
		*alloc_bytes = pages * (r->page_bytes + RAM_MALLOC_OVERHEAD) +
			       __atomic_load_n(&r->node_bytes, __ATOMIC_RELAXED) + sizeof(*r);
}

int ramdisk_new(uint64_t size_bytes, uint32_t sector_size, bool read_only, struct disk **out,
		char *err, size_t errlen)
{
	struct layered_entry e = { 0 };
	int ret = ramlayer_new(size_bytes, sector_size, &e.layer, err, errlen);

	if (ret)
		return ret;
	ret = layered_disk_new(&e, 1, read_only, out, err, errlen);
	if (ret)
		layer_free(e.layer);
	return ret;
}
