/* SPDX-License-Identifier: MIT */
/*
 * ramlayer.c: the RAM layer (docs/openvmm-compat.md §4.1), a sparse,
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
 *   A leaf holds 512 page pointers and their masks (5 KiB, covering 2 MiB
 *   of 4 KiB pages); an interior node holds 512 child pointers. The
 *   height is the smallest that covers the sector count (2 up to 1 GiB of
 *   4 KiB pages, 5 for a PiB). Nodes are allocated by the first write below
 *   them and published with a CAS, so concurrent writers never take a global
 *   lock. A grow that needs more levels pushes a new root above the old one;
 *   the height never decreases.
 * - zero_after (§4.1): missing sectors at or beyond it read as zero and are
 *   marked, so write-no-overwrite (a read-cache fill) leaves them alone
 *   as present. It only ever decreases (unmap, resize), so it is an atomic that
 *   is lowered with a CAS loop and read without a lock.
 * - Zeroed runs: sectors that are present and read zero but hold no data,
 *   so that write-zeroes over another layer (an unmap without
 *   NEXT_IS_ZERO: memdiff:) costs metadata, not pages of zeroes, and
 *   still hides the layer below. A sector is absent (mask bit clear),
 *   data (mask bit set, zmask bit clear: bytes in the page) or zeroed
 *   (both set: the page's bytes for it, if there is a page, are stale).
 *   A whole subtree of zeroed sectors is the pointer RAM_ZERO in place
 *   of a node or leaf, so zeroing a large range sets a few pointers. A
 *   write into a zeroed page allocates that page alone and clears the
 *   zmask bits it writes; the others stay zeroed around the data.
 *
 * Invariants.
 * - Outside a lock holder's critical section a page pointer is non-NULL iff
 *   the page has a data sector (mask & ~zmask): the pointer is set before
 *   the first data bit, and a page left without data is unlinked and freed
 *   at once. zmask is a subset of mask.
 * - No sector >= sector_count is present (RAM_ZERO subtrees too: they are
 *   made only inside the count, and a shrink expands one it cuts);
 *   zero_after <= sector_count; every page index below the sector count is
 *   < 512^height.
 *
 * Locking.
 * - 256 stripe spinlocks, one per cache line. A page's stripe is a
 *   multiplicative hash of its index, so streams a power of two apart do
 *   not collide. Stripe s protects the contents, pointer and mask of every
 *   page that hashes to s, and the stripe's memory counters.
 * - Holding any one stripe keeps every tree node alive: nodes are freed,
 *   pointers set to NULL or RAM_ZERO, and the root/height replaced only by
 *   "exclusive" operations, which take all stripes in index order (resize,
 *   an unmap covering a whole leaf; close runs with no request in flight).
 *   Under one stripe a pointer only goes from NULL to a new empty node or
 *   from RAM_ZERO to a new node of zeroed sectors (a write into a zero
 *   subtree), both with a CAS and both invisible to readers, which see the
 *   same sectors through either pointer.
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
 * - Cost: an uncontended stripe lock is small next to the page copy it
 *   guards. The alternative, a pthread_rwlock taken shared by every I/O
 *   and exclusively by resize, costs several times more per I/O with two
 *   threads, because its cache line bounces between cores; stripes keep
 *   the fast path at one uncontended lock and make resize pay instead
 *   (256 lock acquisitions). Figures: docs/layer-ram.md, "Measured".
 * - Races with resize: ops range-check against the count without a lock;
 *   under a stripe the live count is stable (resize holds every stripe), so
 *   a write drops sectors at or past it (as if it had completed just before
 *   the shrink) and a read sees them as missing sectors past zero_after,
 *   i.e. zeroes.
 *
 * Memory.
 * - Held data + 0.4% malloc headers + one leaf (5 KiB) per 2 MiB span that
 *   has ever been written (or zeroed in part) + one interior node per
 *   1 GiB span: a 1 GiB layer with 64 MiB written in random 4 KiB blocks
 *   allocates 1.04x its data. Zeroed runs hold no pages; data_bytes counts
 *   data sectors only.
 * - XXX: 512-byte sectors written scattered, one per 4 KiB page, cost 8x
 *   their size, because each holds a whole page (a 4 KiB-sector layer has no
 *   such case). Guest file systems write in 4 KiB blocks, so this is rare;
 *   per-sector allocation would cost a pointer and a header per sector on
 *   the common path instead.
 * - Leaves are freed only in exclusive mode (an unmap covering the whole
 *   leaf, a shrink, close); a leaf emptied by small unmaps stays, which is
 *   bounded by 0.25% of the layer's size. Zeroing part of a leaf span
 *   allocates the leaf (and a write into a zero subtree allocates the
 *   nodes down to its leaf), so a zeroing unmap or write-zeroes can fail
 *   with ENOMEM, like a write.
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
 *   replaces, so it holds the lock longer (AES-XTS: several times the
 *   memcpy, docs/layer-ram.md, "Measured"); only requests on pages of the
 *   same stripe wait for it.
 * - A failed transform fails the request with its errno; on a write the
 *   sectors it was given are left marked present with whatever it wrote
 *   (a torn write), which keeps a new page's mask non-zero.
 * - XXX: prefetching the next page while transforming one did not help
 *   (the whole page made reads slower; four cache lines: noise;
 *   docs/layer-ram.md, "Measured").
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
	uint8_t zmask[RAM_FANOUT];      /* bit i: ... and zeroed (a subset of mask); its
	                                 * bytes in the page, if any, are stale */
};

/* A child pointer (or the root) standing for a whole subtree of zeroed
 * sectors: every sector below is present and reads zero, and nothing is
 * allocated. Never dereferenced; malloc never returns it. */
#define RAM_ZERO ((void *)(uintptr_t)1)

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

static inline bool ram_is_zero(const void *node)
{
	return node == RAM_ZERO;
}

/* Sectors of a page that hold data: present and not zeroed. */
static inline uint8_t ram_data_bits(uint8_t m, uint8_t z)
{
	return m & (uint8_t)~z;
}

static inline int ram_popcount(uint8_t bits)
{
	return __builtin_popcount(bits);
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
 * The leaf holding page @pg; or, when the path to it ends early, NULL for
 * an empty subtree or RAM_ZERO for a zero subtree, with *span_end set to
 * the first page past that subtree. Caller holds a stripe.
 */
static struct ram_leaf *ram_find_leaf(struct ramlayer *r, uint64_t pg, uint64_t *span_end)
{
	void *node = __atomic_load_n(&r->root, __ATOMIC_ACQUIRE);

	for (unsigned lvl = r->height;; lvl--) {
		if (!node || ram_is_zero(node)) {
			unsigned sh = RAM_FANOUT_SHIFT * lvl;

			*span_end = ((pg >> sh) + 1) << sh;
			return node;
		}
		if (lvl == 1)
			return node;

		unsigned sh = RAM_FANOUT_SHIFT * (lvl - 1);

		node = __atomic_load_n(&((struct ram_node *)node)->child[(pg >> sh) & RAM_FANOUT_MASK],
				       __ATOMIC_ACQUIRE);
	}
}

/* A new node for level @lvl (a leaf at 1): empty, or (@zero) the expansion
 * of a zero subtree - children RAM_ZERO, or every sector present and
 * zeroed - which reads exactly as the subtree it replaces. Not yet counted
 * in node_bytes. NULL on ENOMEM. */
static void *ram_node_alloc(struct ramlayer *r, unsigned lvl, bool zero)
{
	if (lvl == 1) {
		struct ram_leaf *leaf = calloc(1, sizeof(*leaf));

		if (leaf && zero) {
			memset(leaf->mask, r->full_mask, sizeof(leaf->mask));
			memset(leaf->zmask, r->full_mask, sizeof(leaf->zmask));
		}
		return leaf;
	}

	struct ram_node *n = calloc(1, sizeof(*n));

	if (n && zero)
		for (unsigned i = 0; i < RAM_FANOUT; i++)
			n->child[i] = RAM_ZERO;
	return n;
}

static inline size_t ram_node_bytes(unsigned lvl)
{
	return (lvl == 1 ? sizeof(struct ram_leaf) : sizeof(struct ram_node)) + RAM_MALLOC_OVERHEAD;
}

/*
 * The leaf holding page @pg, allocating the path to it. A zero subtree on
 * the way is expanded (@split), or else RAM_ZERO is returned: the page is
 * zeroed already. NULL on ENOMEM. Caller holds a stripe.
 *
 * Expanding publishes, with a CAS, a node that reads the same as the
 * RAM_ZERO it replaces, so threads on other stripes peeking at the old or
 * the new pointer see the same sectors; of two threads expanding the same
 * slot, the loser frees its copy and walks the winner's.
 */
static struct ram_leaf *ram_get_leaf(struct ramlayer *r, uint64_t pg, bool split)
{
	void **slot = &r->root;

	for (unsigned lvl = r->height;; lvl--) {
		void *node = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

		if (unlikely(!node || ram_is_zero(node))) {
			if (node && !split)
				return RAM_ZERO;
			/* XXX: allocated under the stripe lock; rare (once per
			 * 2 MiB of address space). */
			void *fresh = ram_node_alloc(r, lvl, node != NULL);

			if (!fresh)
				return NULL;
			if (__atomic_compare_exchange_n(slot, &node, fresh, false, __ATOMIC_ACQ_REL,
							__ATOMIC_ACQUIRE)) {
				node = fresh;
				__atomic_add_fetch(&r->node_bytes, ram_node_bytes(lvl), __ATOMIC_RELAXED);
			} else {
				/* Only exclusive mode stores NULL or RAM_ZERO,
				 * so the winner's node is a real one. */
				free(fresh);
				assert(node && !ram_is_zero(node));
			}
		}
		if (lvl == 1)
			return node;
		slot = &((struct ram_node *)node)->child[(pg >> (RAM_FANOUT_SHIFT * (lvl - 1))) &
							  RAM_FANOUT_MASK];
	}
}

/* The first page in [from, limit) that holds a present sector (data or
 * zeroed), or @limit. Caller holds a stripe; other stripes' masks are only
 * peeked at. */
static uint64_t ram_next_page(struct ramlayer *r, uint64_t from, uint64_t limit)
{
	while (from < limit) {
		uint64_t span_end;
		struct ram_leaf *leaf = ram_find_leaf(r, from, &span_end);

		if (!leaf) {
			from = span_end;
			continue;
		}
		if (ram_is_zero(leaf))
			return from;
		uint64_t leaf_end = MIN(limit, (from | RAM_FANOUT_MASK) + 1);

		for (; from < leaf_end; from++)
			if (ram_load_mask(leaf, from & RAM_FANOUT_MASK))
				return from;
	}
	return limit;
}

/* Frees page @pg holding the sectors @data. Exclusive mode. */
static void ram_free_page(struct ramlayer *r, uint64_t pg, void *page, uint8_t data)
{
	ram_stripe_account(ram_stripe_of(r, pg), -(int64_t)ram_popcount(data), -1);
	free(page);
}

/* Frees a whole subtree at level @lvl whose first page is @base (nothing
 * to free for a zero subtree). Exclusive. */
static void ram_free_subtree(struct ramlayer *r, void *node, unsigned lvl, uint64_t base)
{
	if (!node || ram_is_zero(node))
		return;
	if (lvl == 1) {
		struct ram_leaf *leaf = node;

		for (unsigned i = 0; i < RAM_FANOUT; i++)
			if (leaf->page[i])
				ram_free_page(r, base + i, leaf->page[i],
					      ram_data_bits(leaf->mask[i], leaf->zmask[i]));
	} else {
		struct ram_node *n = node;
		uint64_t cspan = ram_capacity_pages(lvl - 1);

		for (unsigned i = 0; i < RAM_FANOUT; i++)
			ram_free_subtree(r, n->child[i], lvl - 1, base + i * cspan);
	}
	free(node);
	__atomic_sub_fetch(&r->node_bytes, ram_node_bytes(lvl), __ATOMIC_RELAXED);
}

/*
 * Sets the sectors @want of page @pg (in @leaf, slot @idx) to absent
 * (!@zero: dropped) or to present zeroes (@zero), and frees the page when
 * no data is left in it. Caller holds the page's stripe (or all of them);
 * returns the page to free after unlocking, or NULL.
 */
static void *ram_page_clear(struct ramlayer *r, struct ram_leaf *leaf, unsigned idx,
			    struct ram_stripe *st, uint8_t want, bool zero)
{
	uint8_t m = leaf->mask[idx], z = leaf->zmask[idx];
	uint8_t nm = zero ? m | want : m & (uint8_t)~want;
	uint8_t nz = zero ? z | want : z & (uint8_t)~want;
	uint8_t before = ram_data_bits(m, z), after = ram_data_bits(nm, nz);
	void *page = leaf->page[idx];

	if (nm == m && nz == z)
		return NULL;
	/* Masks first: a peeker that sees no page sees no data bits. */
	__atomic_store_n(&leaf->zmask[idx], nz, __ATOMIC_RELAXED);
	__atomic_store_n(&leaf->mask[idx], nm, __ATOMIC_RELAXED);
	if (after || !page) {
		ram_stripe_account(st, ram_popcount(after) - ram_popcount(before), 0);
		return NULL;
	}
	__atomic_store_n(&leaf->page[idx], NULL, __ATOMIC_RELEASE);
	ram_stripe_account(st, -(int64_t)ram_popcount(before), -1);
	return page;
}

/*
 * Sector range [s, e) as page bounds: pages touched [lo, hi), pages wholly
 * inside [full_lo, full_hi); and what to make of them (@zero: present
 * zeroes, else absent).
 */
struct ram_range {
	uint64_t s, e;
	uint64_t lo, hi;
	uint64_t full_lo, full_hi;
	bool zero;
};

static struct ram_range ram_range_of(const struct ramlayer *r, uint64_t s, uint64_t e, bool zero)
{
	return (struct ram_range){
		.s = s, .e = e,
		.lo = s >> r->spp_shift, .hi = ram_pages_for(r, e),
		.full_lo = ram_pages_for(r, s), .full_hi = e >> r->spp_shift,
		.zero = zero,
	};
}

/* Mask bits of page @pg that lie in the range. */
static uint8_t ram_range_bits(const struct ramlayer *r, const struct ram_range *rr, uint64_t pg)
{
	uint64_t ps = pg << r->spp_shift, pe = (pg + 1) << r->spp_shift;

	return ram_bits((unsigned)(MAX(rr->s, ps) - ps), (unsigned)(MIN(rr->e, pe) - ps));
}

/*
 * Applies the range to the subtree in *@slot (level @lvl, first page
 * @base): subtrees wholly inside become NULL (drop) or RAM_ZERO (zero),
 * freeing what they held; the edges are done page by page, allocating on
 * the way down the nodes a zero range needs and expanding a zero subtree
 * that a drop covers in part. Exclusive mode. Returns 0 or -ENOMEM. The
 * allocations happen on the way down to the first page of the range,
 * before anything is freed, except for the last page's path in a zero
 * range; a zero subtree never covers a sector past the count, so one that
 * a drop ending at the count covers in part also holds its start. Hence a
 * failed drop to the end (a shrink) has changed nothing.
 */
static int ram_range_subtree(struct ramlayer *r, void **slot, unsigned lvl, uint64_t base,
			     const struct ram_range *rr)
{
	void *node = *slot;
	uint64_t span = ram_capacity_pages(lvl);

	if (rr->zero ? ram_is_zero(node) : !node)
		return 0;
	if (base >= rr->full_lo && base + span <= rr->full_hi) {
		ram_free_subtree(r, node, lvl, base);
		__atomic_store_n(slot, rr->zero ? RAM_ZERO : NULL, __ATOMIC_RELEASE);
		return 0;
	}

	uint64_t from = MAX(rr->lo, base), to = MIN(rr->hi, base + span);

	if (from >= to)
		return 0;
	if (!node || ram_is_zero(node)) {
		/* Zeroing part of an empty subtree, or dropping part of a
		 * zero one: expand it. */
		node = ram_node_alloc(r, lvl, node != NULL);
		if (!node)
			return -ENOMEM;
		__atomic_add_fetch(&r->node_bytes, ram_node_bytes(lvl), __ATOMIC_RELAXED);
		__atomic_store_n(slot, node, __ATOMIC_RELEASE);
	}
	if (lvl == 1) {
		struct ram_leaf *leaf = node;

		for (uint64_t pg = from; pg < to; pg++)
			free(ram_page_clear(r, leaf, pg & RAM_FANOUT_MASK, ram_stripe_of(r, pg),
					    ram_range_bits(r, rr, pg), rr->zero));
		return 0;
	}

	struct ram_node *n = node;
	uint64_t cspan = ram_capacity_pages(lvl - 1);

	for (uint64_t i = (from - base) / cspan; i <= (to - 1 - base) / cspan; i++) {
		int ret = ram_range_subtree(r, &n->child[i], lvl - 1, base + i * cspan, rr);

		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Drops (or zeroes) sectors [s, e) in exclusive mode. Returns 0 or
 * -ENOMEM. */
static int ram_range_exclusive(struct ramlayer *r, uint64_t s, uint64_t e, bool zero)
{
	struct ram_range rr = ram_range_of(r, s, e, zero);

	if (s >= e)
		return 0;
	return ram_range_subtree(r, &r->root, r->height, 0, &rr);
}

/* Drops (or zeroes) sectors [s, e) page by page, one stripe at a time, so
 * other threads are not stalled. Sectors at or past the live count are
 * left alone (a shrink raced with us). Returns 0 or -ENOMEM. */
static int ram_range_shared(struct ramlayer *r, uint64_t s, uint64_t e, bool zero)
{
	struct ram_range rr = ram_range_of(r, s, e, zero);
	uint64_t pos = s;

	while (pos < e) {
		uint64_t pg = pos >> r->spp_shift, span_end;
		struct ram_stripe *st = ram_stripe_of(r, pg);
		void *to_free;

		ram_stripe_lock(st);
		if (unlikely(pos >= ram_count(r))) {
			ram_stripe_unlock(st);
			break;
		}
		struct ram_leaf *leaf = ram_find_leaf(r, pg, &span_end);

		if (!zero && !ram_is_zero(leaf) &&
		    (!leaf || !ram_load_mask(leaf, pg & RAM_FANOUT_MASK))) {
			/* Nothing to drop up to the next page holding sectors. */
			uint64_t next = ram_next_page(r, leaf ? pg + 1 : span_end, rr.hi);

			ram_stripe_unlock(st);
			pos = next << r->spp_shift;
			continue;
		}
		if (zero ? !leaf : ram_is_zero(leaf))
			leaf = ram_get_leaf(r, pg, !zero);
		if (unlikely(!leaf)) {
			ram_stripe_unlock(st);
			return -ENOMEM;
		}
		to_free = ram_is_zero(leaf) ? NULL :
			  ram_page_clear(r, leaf, pg & RAM_FANOUT_MASK, st, ram_range_bits(r, &rr, pg),
					 zero);
		ram_stripe_unlock(st);
		free(to_free);
		pos = (pg + 1) << r->spp_shift;
	}
	return 0;
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
	/* Beyond OpenVMM (which says UNSPECIFIED always): unmapped sectors
	 * read back as zero. With nothing below, every unmap comes with
	 * NEXT_IS_ZERO (the layered disk sets it for its last layer) and drops
	 * the sectors; over another layer, they become zeroed runs that hide
	 * it. Either way it costs metadata only, so the layered disk turns
	 * write-zeroes into unmap and offers FAST_ZERO (mem:, memdiff:). */
	meta->unmap_behavior = DISK_UNMAP_ZEROES;
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

/* Zero-fills and marks sectors [a, b) of a read that are zeroed in the
 * layer. Returns 0 or -errno. */
static int ram_read_zeroed(struct ramlayer *r, struct ram_cursor *cur, const struct disk_io *io,
			   uint64_t a, uint64_t b)
{
	int ret = ram_zero(r, cur, io, a, b - a);

	if (ret == 0)
		bitmap_set_range(io->u.marker, a, b - a);
	return ret;
}

/* What sector @i of a page with masks @m, @z holds. */
enum ram_class { RAM_MISSING, RAM_DATA, RAM_ZEROED };

static inline enum ram_class ram_class_of(uint8_t m, uint8_t z, unsigned i)
{
	if (!((m >> i) & 1))
		return RAM_MISSING;
	return (z >> i) & 1 ? RAM_ZEROED : RAM_DATA;
}

/* Sectors [i0, i1) of a page with masks @m, @z starting at sector @ps,
 * not all of them data. Returns 0 or -errno. */
static int ram_read_partial(struct ramlayer *r, struct ram_cursor *cur, const struct disk_io *io,
			    uint8_t *page, uint8_t m, uint8_t z, uint64_t ps, unsigned i0, unsigned i1,
			    uint64_t za)
{
	unsigned i = i0;
	int ret;

	while (i < i1) {
		enum ram_class cls = ram_class_of(m, z, i);
		unsigned j = i + 1;

		while (j < i1 && ram_class_of(m, z, j) == cls)
			j++;
		if (cls == RAM_DATA) {
			ret = ram_move(r, cur, io, RAM_CUR_OUT, page + ((size_t)i << r->sector_shift),
				       (size_t)(j - i) << r->sector_shift, ps + i);
			if (ret == 0)
				bitmap_set_range(io->u.marker, ps + i, j - i);
		} else if (cls == RAM_ZEROED) {
			ret = ram_read_zeroed(r, cur, io, ps + i, ps + j);
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
	uint64_t end_pg = ram_pages_for(r, end);

	while (pos < end) {
		uint64_t pg = pos >> r->spp_shift, ps = pg << r->spp_shift;
		unsigned idx = pg & RAM_FANOUT_MASK;
		struct ram_stripe *st = ram_stripe_of(r, pg);
		uint64_t span_end;

		ram_stripe_lock(st);
		uint64_t za = ram_zero_after(r);
		struct ram_leaf *leaf = ram_find_leaf(r, pg, &span_end);

		if (unlikely(ram_is_zero(leaf))) {
			/* A zero subtree: zeroes up to its end. */
			ram_stripe_unlock(st);
			uint64_t zend = span_end >= end_pg ? end : span_end << r->spp_shift;

			ret = ram_read_zeroed(r, &cur, io, pos, zend);
			if (unlikely(ret < 0))
				return ram_xform_failed(io, ret);
			pos = zend;
			continue;
		}
		uint8_t m = leaf ? leaf->mask[idx] : 0;

		if (likely(m)) {
			uint8_t *page = leaf->page[idx], z = leaf->zmask[idx];
			uint64_t pend = MIN(end, ps + (1ull << r->spp_shift));
			unsigned i0 = (unsigned)(pos - ps), i1 = (unsigned)(pend - ps);
			uint8_t want = ram_bits(i0, i1);

			if (likely((ram_data_bits(m, z) & want) == want)) {
				ret = ram_move(r, &cur, io, RAM_CUR_OUT,
					       page + ((size_t)i0 << r->sector_shift),
					       (size_t)(i1 - i0) << r->sector_shift, pos);
				ram_stripe_unlock(st);
				if (ret == 0)
					bitmap_set_range(marker, pos, pend - pos);
			} else {
				ret = ram_read_partial(r, &cur, io, page, m, z, ps, i0, i1, za);
				ram_stripe_unlock(st);
			}
			if (unlikely(ret < 0))
				return ram_xform_failed(io, ret);
			pos = pend;
			continue;
		}

		/* A hole: everything up to the next page holding sectors is
		 * missing. */
		uint64_t next = ram_next_page(r, leaf ? pg + 1 : span_end, end_pg);

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
		/* Write-no-overwrite leaves a zero subtree whole: every
		 * sector of it is present. */
		struct ram_leaf *leaf = ram_get_leaf(r, pg, !no_overwrite);

		if (unlikely(!leaf)) {
			ram_stripe_unlock(st);
			ret = -ENOMEM;
			break;
		}
		unsigned i0 = (unsigned)(pos - ps), i1 = (unsigned)(wend - ps);
		uint8_t want = ram_bits(i0, i1);
		uint8_t m = ram_is_zero(leaf) ? r->full_mask : leaf->mask[idx];
		/* Missing sectors at or past zero_after are present too (they
		 * read as zero): a read-cache fill that missed before an unmap
		 * lowered zero_after must not bring the old data back. */
		uint64_t za = MAX(ram_zero_after(r), ps);
		uint8_t keep = no_overwrite && za < pend ? m | ram_bits((unsigned)(za - ps),
									 1u << r->spp_shift) : m;
		/* The sectors written: with write-no-overwrite, the absent ones. */
		uint8_t eff = no_overwrite ? want & (uint8_t)~keep : want;

		if (!eff) {
			ram_stripe_unlock(st);
			ram_cursor_do(&cur, RAM_CUR_SKIP, NULL, (size_t)(i1 - i0) << r->sector_shift);
			pos = pend;
			continue;
		}
		uint8_t *page = leaf->page[idx];
		uint8_t z = leaf->zmask[idx];

		if (adopt && pos == ps && wend == pend && pend - ps == (1ull << r->spp_shift) &&
		    cur.off == 0 && cur.i < cur.iovcnt && cur.iov[cur.i].iov_len == r->page_bytes) {
			/* Take the caller's buffer as the page; it gets the old
			 * one (or NULL) back (disk.h, "Adopted write buffers"). */
			struct iovec *v = (struct iovec *)&cur.iov[cur.i];

			__atomic_store_n(&leaf->page[idx], (uint8_t *)v->iov_base, __ATOMIC_RELEASE);
			v->iov_base = page;
			cur.i++;
			__atomic_store_n(&leaf->mask[idx], r->full_mask, __ATOMIC_RELAXED);
			__atomic_store_n(&leaf->zmask[idx], 0, __ATOMIC_RELAXED);
			ram_stripe_account(st, ram_popcount(r->full_mask) -
					       ram_popcount(ram_data_bits(m, z)), page ? 0 : 1);
			ram_stripe_unlock(st);
			pos = pend;
			continue;
		}
		if (unlikely(!page)) {
			/* No data here yet (the page may hold zeroed sectors,
			 * which stay zeroed around what is written). */
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
			__atomic_store_n(&leaf->page[idx], page, __ATOMIC_RELEASE);
			ram_stripe_account(st, 0, 1);
		}

		int xret;

		if (eff == want)
			xret = ram_move(r, &cur, io, RAM_CUR_IN, page + ((size_t)i0 << r->sector_shift),
					(size_t)(i1 - i0) << r->sector_shift, pos);
		else
			xret = ram_write_sparse(r, &cur, io, page, keep, ps, i0, i1);
		/* If the transform failed part way, the sectors it was given
		 * hold garbage: they are still marked present (as after a
		 * torn write), which keeps a new page's data bits non-zero. */
		if (unlikely(xret < 0))
			ret = xret;
		uint8_t nm = m | eff, nz = z & (uint8_t)~eff;

		if (nm != m || nz != z) {
			__atomic_store_n(&leaf->mask[idx], nm, __ATOMIC_RELAXED);
			__atomic_store_n(&leaf->zmask[idx], nz, __ATOMIC_RELAXED);
			ram_stripe_account(st, ram_popcount(ram_data_bits(nm, nz)) -
					       ram_popcount(ram_data_bits(m, z)), 0);
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
	bool zero = false;
	int ret;

	if (ADD_OVERFLOW(s, io->count, &end) || end > ram_count(r))
		return DISK_ILLEGAL_BLOCK;
	if (s == end)
		return DISK_OK;
	if (!(io->flags & DISK_IO_NEXT_IS_ZERO)) {
		/* The layer below may hold data here: below zero_after the
		 * sectors become zeroed (present, hiding it); a range that
		 * reaches zero_after moves it down instead (§4.1) and is
		 * dropped, which reads zero too. */
		if (end < ram_zero_after(r))
			zero = true;
		else
			ram_lower_zero_after(r, s);
	}

	/* Whole leaves are freed (or replaced by a zero subtree) in
	 * exclusive mode; smaller ranges go page by page so they do not
	 * stall other threads. */
	uint64_t leaf_sectors = (uint64_t)RAM_FANOUT << r->spp_shift;
	uint64_t first_leaf = ROUND_UP(s, leaf_sectors);

	if (first_leaf < end && end - first_leaf >= leaf_sectors) {
		ram_lock_all(r);
		ret = ram_range_exclusive(r, s, MIN(end, ram_count(r)), zero);
		ram_unlock_all(r);
	} else {
		ret = ram_range_shared(r, s, end, zero);
	}
	if (ret < 0) {
		io->os_errno = -ret;
		return DISK_IO_ERROR;
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

/* Zeroed sectors, and missing ones at or past zero_after: present (they
 * hide the layers below), zeroes, and unallocated (a write to them
 * allocates a page). */
#define RAM_ZEROED_FLAGS (DISK_EXTENT_ZERO | DISK_EXTENT_HOLE)

/* Missing sectors: absent below zero_after (HOLE), else RAM_ZEROED_FLAGS. */
static void ram_run_missing(struct ram_run *run, uint64_t a, uint64_t b, uint64_t za)
{
	ram_run_feed(run, DISK_EXTENT_HOLE, a, MIN(b, za));
	ram_run_feed(run, RAM_ZEROED_FLAGS, MAX(a, za), b);
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
		uint64_t pg = pos >> r->spp_shift, span_end;
		/* Any stripe keeps the tree alive; masks are only peeked at. */
		struct ram_stripe *st = ram_stripe_of(r, pg);

		ram_stripe_lock(st);
		struct ram_leaf *leaf = ram_find_leaf(r, pg, &span_end);

		if (!leaf || ram_is_zero(leaf)) {
			uint64_t hend = span_end >= end_pg ? end : span_end << r->spp_shift;

			if (leaf)
				ram_run_feed(&run, RAM_ZEROED_FLAGS, pos, hend);
			else
				ram_run_missing(&run, pos, hend, za);
			pos = hend;
		} else {
			uint64_t leaf_end = MIN(end_pg, (pg | RAM_FANOUT_MASK) + 1);

			for (; pg < leaf_end && !run.done; pg++) {
				uint64_t ps = pg << r->spp_shift;
				uint64_t pend = MIN(end, ps + (1ull << r->spp_shift));
				unsigned idx = pg & RAM_FANOUT_MASK;
				uint8_t m = ram_load_mask(leaf, idx);
				uint8_t z = __atomic_load_n(&leaf->zmask[idx], __ATOMIC_RELAXED) & m;

				if (m == 0) {
					ram_run_missing(&run, pos, pend, za);
				} else if (m == r->full_mask && z == 0) {
					ram_run_feed(&run, 0, pos, pend);
				} else if (z == r->full_mask) {
					ram_run_feed(&run, RAM_ZEROED_FLAGS, pos, pend);
				} else {
					for (uint64_t s = pos; s < pend; s++) {
						switch (ram_class_of(m, z, (unsigned)(s - ps))) {
						case RAM_DATA:
							ram_run_feed(&run, 0, s, s + 1);
							break;
						case RAM_ZEROED:
							ram_run_feed(&run, RAM_ZEROED_FLAGS, s, s + 1);
							break;
						default:
							ram_run_missing(&run, s, s + 1, za);
							break;
						}
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
		/* Fails (ENOMEM expanding a zero subtree across the new
		 * end) only before anything is dropped. */
		if (new_count < old)
			ret = ram_range_exclusive(r, new_count, old, false);
	}
	if (ret == 0) {
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
