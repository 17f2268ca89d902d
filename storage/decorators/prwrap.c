/* SPDX-License-Identifier: MIT */
/*
 * prwrap.c: the prwrap decorator — in-memory persistent reservations
 * (docs/openvmm-compat.md §5.3, §5.4, §1.6) for anonymous callers,
 * and SPC-4 / NVMe reservations for callers that name an initiator.
 *
 * Notes on the design
 * -------------------
 * - Two states, chosen per request by io->initiator. An anonymous request
 *   (no initiator, or host_id_len 0) is OpenVMM's single client: its PR
 *   calls run §5.3's table against @anon (one key, one type, a generation)
 *   and nothing about @anon ever refuses I/O. A request with a host id
 *   works on the identified table: one registration per host id in
 *   @slots, SPC-4 rules for REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT and
 *   PREEMPT AND ABORT over all six types, and its I/O is checked. Anonymous
 *   I/O is checked against the identified table as a non-registrant, so a
 *   caller that leaves out its identity cannot slip past a fence; with no
 *   identified registrant (the OpenVMM case) nothing is ever checked.
 * - I/O check, fast path: @nregs == 0 (no identified registrant, hence no
 *   identified reservation) is one atomic load, and the request is handed
 *   to the lower disk unchanged (disk_forward, no child request).
 * - I/O check, slow path: the fields the check reads (each slot's host id
 *   and tag, @rtype, @holder, @nslots, each slot's @aborts) are atomics
 *   behind a sequence lock (@seq): readers never take a lock or write a
 *   shared line, they scan the slots and retry if a writer ran meanwhile.
 *   Writers are PR ops, serialised by @lock.
 * - PREEMPT AND ABORT. A request from a registered initiator is tracked: it
 *   increments its slot's @inflight before re-validating @seq, runs as a
 *   child request (disk_submit_child), and decrements @inflight when the
 *   lower disk is done. PREEMPT AND ABORT vacates the preempted slots
 *   (bumping their @aborts), then, still under @lock, marks each one
 *   @draining and reads @inflight (seq_cst on both sides: either the
 *   request sees the new @seq and retries as a non-registrant, or the
 *   preempt sees the request). It
 *   completes only when every preempted initiator's tracked requests have
 *   finished below: the last one to finish takes @lock and posts the PR
 *   request's completion to its reactor. Those requests complete with
 *   DISK_ABORTED_PREEMPT whatever the lower disk said. The lower disk
 *   cannot be interrupted, so an aborted write may or may not have reached
 *   the medium; what is guaranteed is that none lands after the PREEMPT AND
 *   ABORT has completed. A draining slot is not reused until it drains.
 *   Requests from unregistered or anonymous initiators are not tracked
 *   (they cannot be preempted), nor are block status and CACHE, which move
 *   no data.
 * - Nothing is persisted: "persist through power loss" is reported (as
 *   OpenVMM does) and remembered, but the state lives as long as the disk.
 * - Locking: @lock (a mutex) protects @anon, @generation, @ptpl and each
 *   slot's @key, @controller_id and @waiter, and is held by every writer of
 *   the seqlock fields. Nothing outside this file is called with it held
 *   (the drain's completion is posted after unlocking).
 * - Expected workload: PR calls are rare (cluster membership changes); I/O
 *   is the hot path and never takes @lock.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "storage/decorators/prwrap.h"
#include "storage/kind.h"

/* Slot tag: set while in use, ORed with the host id length. */
#define PRWRAP_TAG_USED 0x100u

/* hctx of a PREEMPT AND ABORT waiting for drains: slots left to drain. */
#define PRWRAP_HCTX_WAITING 0

/* Child request scratch (child->sctx) of a tracked request. */
enum { PRWRAP_CTX_PR = 0, PRWRAP_CTX_SLOT, PRWRAP_CTX_ABORTS };

/* One registration of the identified table, on its own cache line. */
struct prwrap_slot {
	/* Seqlock-protected: written under prwrap.lock in a write section,
	 * read lock-free by the I/O check. */
	atomic_uint_least64_t id[2];    /* host id, zero padded */
	atomic_uint tag;                /* 0 = free, else PRWRAP_TAG_USED | host_id_len */
	atomic_uint aborts;             /* times a PREEMPT AND ABORT vacated the slot */
	/* Lock-free request accounting (see the notes). */
	atomic_uint inflight;           /* tracked requests in flight */
	atomic_bool draining;           /* vacated by PREEMPT AND ABORT, requests still in flight */
	/* Under prwrap.lock. */
	uint64_t key;
	uint16_t controller_id;
	struct disk_io *waiter;         /* the PREEMPT AND ABORT waiting for this slot */
} __attribute__((aligned(64)));

struct prwrap {
	/* Read by every request (fast path); written under @lock. */
	atomic_uint nregs;              /* identified registrations */
	atomic_uint seq;                /* sequence lock: odd while a writer runs */
	atomic_uint rtype;              /* identified reservation (enum disk_pr_type) */
	atomic_int holder;              /* slot holding a non-all-registrants reservation, -1 */
	atomic_uint nslots;             /* slots [0, nslots) may be in use */

	/* Protects @anon, @generation, @ptpl, every slot's key, controller_id
	 * and waiter, and serialises the writers of the fields above. */
	pthread_mutex_t lock;
	uint32_t generation;            /* identified table, wrapping */
	bool ptpl;                      /* identified table */
	struct {                        /* §5.3: the anonymous single client */
		uint32_t generation;
		uint64_t key;           /* 0 = not registered */
		enum disk_pr_type type; /* NONE = not reserved */
		bool ptpl;
	} anon;

	struct prwrap_slot slots[PRWRAP_MAX_REGISTRANTS];
};

/* ---- helpers ----------------------------------------------------------------- */

static bool prwrap_anonymous(const struct disk_initiator *ini)
{
	return !ini || ini->host_id_len == 0;
}

static bool prwrap_all_regs(unsigned type)
{
	return type == DISK_PR_WRITE_EXCLUSIVE_ALL_REG || type == DISK_PR_EXCLUSIVE_ACCESS_ALL_REG;
}

/* The host id of @ini as two zero-padded words and a slot tag. */
static void prwrap_id_of(const struct disk_initiator *ini, uint64_t id[2], unsigned *tag)
{
	uint8_t buf[16] = { 0 };
	unsigned len = MIN(ini->host_id_len, (uint8_t)sizeof(buf));

	memcpy(buf, ini->host_id, len);
	memcpy(&id[0], buf, 8);
	memcpy(&id[1], buf + 8, 8);
	*tag = PRWRAP_TAG_USED | len;
}

/* ---- the sequence lock --------------------------------------------------------- */

static inline void prwrap_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static unsigned prwrap_read_begin(struct prwrap *pr)
{
	for (;;) {
		unsigned s = atomic_load_explicit(&pr->seq, memory_order_acquire);

		if (!(s & 1))
			return s;
		prwrap_cpu_relax();
	}
}

static bool prwrap_read_retry(struct prwrap *pr, unsigned s)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&pr->seq, memory_order_relaxed) != s;
}

/* Call with @lock held. */
static void prwrap_write_begin(struct prwrap *pr)
{
	unsigned s = atomic_load_explicit(&pr->seq, memory_order_relaxed);

	atomic_store_explicit(&pr->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void prwrap_write_end(struct prwrap *pr)
{
	unsigned s = atomic_load_explicit(&pr->seq, memory_order_relaxed);

	/* A reservation always has a registered holder. */
	assert(atomic_load_explicit(&pr->rtype, memory_order_relaxed) == DISK_PR_NONE ||
	       atomic_load_explicit(&pr->nregs, memory_order_relaxed) > 0);
	/* seq_cst: pairs with the tracked request's increment-then-recheck. */
	atomic_store(&pr->seq, s + 1);
}

/* ---- request tracking ---------------------------------------------------------------- */

static void prwrap_wait_done(struct reactor_task *t)
{
	struct disk_io *io = container_of(t, struct disk_io, task);

	disk_io_complete(io, DISK_OK);
}

/* The last tracked request of a draining slot has finished. */
static void prwrap_drained(struct prwrap *pr, int slot)
{
	struct prwrap_slot *sl = &pr->slots[slot];
	struct disk_io *done = NULL;

	pthread_mutex_lock(&pr->lock);
	if (atomic_load_explicit(&sl->draining, memory_order_relaxed) &&
	    atomic_load(&sl->inflight) == 0) {
		struct disk_io *w = sl->waiter;

		atomic_store_explicit(&sl->draining, false, memory_order_relaxed);
		sl->waiter = NULL;
		if (w && --w->hctx[PRWRAP_HCTX_WAITING] == 0)
			done = w;
	}
	pthread_mutex_unlock(&pr->lock);
	if (done) {
		done->task.fn = prwrap_wait_done;
		reactor_post(done->reactor, &done->task);
	}
}

/* Ends the tracking of a request on @slot. Returns true when a PREEMPT AND
 * ABORT vacated the slot since @aborts was read. */
static bool prwrap_untrack(struct prwrap *pr, int slot, unsigned aborts)
{
	struct prwrap_slot *sl = &pr->slots[slot];
	unsigned left = atomic_fetch_sub(&sl->inflight, 1) - 1;
	/* Read after the decrement: a preempt that saw this request in
	 * flight bumped @aborts before it looked. */
	bool aborted = atomic_load(&sl->aborts) != aborts;

	if (left == 0 && atomic_load(&sl->draining))
		prwrap_drained(pr, slot);
	return aborted;
}

/*
 * Checks a request of @ini against the identified table. Returns DISK_OK
 * or DISK_RESERVATION_CONFLICT. With DISK_OK and @track, *slot is the
 * registrant's slot, on which the request is now tracked (its @aborts value
 * in *aborts), or -1 for an unregistered or anonymous initiator.
 */
static int prwrap_check(struct prwrap *pr, const struct disk_initiator *ini, bool write,
			bool track, int *slot, unsigned *aborts)
{
	bool anon = prwrap_anonymous(ini);
	uint64_t id[2] = { 0, 0 };
	unsigned tag = 0;

	if (!anon)
		prwrap_id_of(ini, id, &tag);
	for (;;) {
		unsigned s = prwrap_read_begin(pr);
		unsigned rtype = atomic_load_explicit(&pr->rtype, memory_order_relaxed);
		int holder = atomic_load_explicit(&pr->holder, memory_order_relaxed);
		unsigned n = anon ? 0 : atomic_load_explicit(&pr->nslots, memory_order_relaxed);
		unsigned ab = 0;
		int found = -1;
		bool is_holder, ok;

		for (unsigned i = 0; i < n && i < PRWRAP_MAX_REGISTRANTS; i++) {
			struct prwrap_slot *sl = &pr->slots[i];

			if (atomic_load_explicit(&sl->tag, memory_order_relaxed) == tag &&
			    atomic_load_explicit(&sl->id[0], memory_order_relaxed) == id[0] &&
			    atomic_load_explicit(&sl->id[1], memory_order_relaxed) == id[1]) {
				found = (int)i;
				ab = atomic_load_explicit(&sl->aborts, memory_order_relaxed);
				break;
			}
		}
		is_holder = found >= 0 && rtype != DISK_PR_NONE &&
			    (prwrap_all_regs(rtype) || holder == found);
		ok = disk_pr_access_allowed((enum disk_pr_type)rtype, found >= 0, is_holder, write);
		if (prwrap_read_retry(pr, s))
			continue;
		if (!ok)
			return DISK_RESERVATION_CONFLICT;
		*slot = -1;
		if (found < 0 || !track)
			return DISK_OK;
		atomic_fetch_add(&pr->slots[found].inflight, 1);
		if (atomic_load(&pr->seq) == s) {
			*slot = found;
			*aborts = ab;
			return DISK_OK;
		}
		/* A PR op ran since the check: undo and look again. */
		prwrap_untrack(pr, found, ab);
	}
}

/* ---- I/O ------------------------------------------------------------------------------ */

/* A tracked request has finished below: its result for the parent. */
static int prwrap_tracked_result(struct disk_io *io, struct disk_io *child)
{
	struct prwrap *pr = (struct prwrap *)child->sctx[PRWRAP_CTX_PR];
	int slot = (int)child->sctx[PRWRAP_CTX_SLOT];
	unsigned aborts = (unsigned)child->sctx[PRWRAP_CTX_ABORTS];
	int st = child->status;

	disk_io_copy_result(io, child);
	disk_io_put(io->reactor, child);
	if (prwrap_untrack(pr, slot, aborts))
		st = DISK_ABORTED_PREEMPT;
	return st;
}

static void prwrap_tracked_done(struct disk_io *child)
{
	struct disk_io *io = child->opaque;

	disk_io_complete(io, prwrap_tracked_result(io, child));
}

static int prwrap_io(struct disk *d, struct disk_io *io, bool write, bool track)
{
	struct prwrap *pr = disk_priv(d);
	struct disk_io *child;
	unsigned aborts = 0;
	int slot, st;

	/* No identified registrant: nothing can refuse or abort this request. */
	if (likely(atomic_load_explicit(&pr->nregs, memory_order_acquire) == 0))
		return disk_forward(disk_lower(d), io);
	st = prwrap_check(pr, io->initiator, write, track, &slot, &aborts);
	if (st != DISK_OK)
		return st;
	if (slot < 0)
		return disk_forward(disk_lower(d), io);

	child = disk_io_get_copy(io, prwrap_tracked_done);
	if (!child) {
		prwrap_untrack(pr, slot, aborts);
		io->os_errno = ENOMEM;
		return DISK_IO_ERROR;
	}
	child->sctx[PRWRAP_CTX_PR] = (uintptr_t)pr;
	child->sctx[PRWRAP_CTX_SLOT] = (uintptr_t)slot;
	child->sctx[PRWRAP_CTX_ABORTS] = aborts;
	if (disk_submit_child(disk_lower(d), child) == DISK_PENDING)
		return DISK_PENDING;
	return prwrap_tracked_result(io, child);
}

static int prwrap_read(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, false, true); }
static int prwrap_write(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, true, true); }
static int prwrap_flush(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, true, true); }
static int prwrap_unmap(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, true, true); }
static int prwrap_write_zeroes(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, true, true); }
static int prwrap_block_status(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, false, false); }
static int prwrap_cache(struct disk *d, struct disk_io *io) { return prwrap_io(d, io, false, false); }

/* §5.4: eject and resize watching are not forwarded. */
static int prwrap_eject(struct disk *d UNUSED, struct disk_io *io UNUSED)
{
	return DISK_UNSUPPORTED;
}

static int prwrap_watch_resize(struct disk *d UNUSED, struct disk_resize_watch *w UNUSED)
{
	return -EOPNOTSUPP;
}

static void prwrap_unwatch_resize(struct disk *d UNUSED, struct disk_resize_watch *w UNUSED)
{
}

/* ---- PR: the anonymous client (§5.3) ---------------------------------------------------- */

/* "Key matches": the stored key (0 = none) equals @key. */
static bool prwrap_anon_registered_as(const struct prwrap *pr, uint64_t key)
{
	return pr->anon.key != 0 && pr->anon.key == key;
}

/* Runs one PR op of the anonymous client. Call with @lock held. */
static int prwrap_anon_op(struct prwrap *pr, struct disk_io *io)
{
	struct disk_pr_args *a = &io->u.pr;

	switch (io->op) {
	case DISK_OP_PR_REPORT: {
		struct disk_pr_report *r = a->report;

		r->generation = pr->anon.generation;
		r->type = pr->anon.type;
		r->ptpl = pr->anon.ptpl;
		r->nr_controllers = pr->anon.key != 0;
		if (pr->anon.key != 0 && r->max_controllers > 0 && r->controllers) {
			struct disk_pr_controller *c = &r->controllers[0];

			memset(c, 0, sizeof(*c));
			c->key = pr->anon.key;
			c->host_id_len = 8;     /* 8 zero bytes */
			c->controller_id = 0;
			c->holds_reservation = pr->anon.type != DISK_PR_NONE;
		}
		return DISK_OK;
	}
	case DISK_OP_PR_REGISTER:
		if (a->has_current_key && a->key != pr->anon.key)
			return DISK_RESERVATION_CONFLICT;
		pr->anon.key = a->new_key;
		if (a->new_key == 0)
			pr->anon.type = DISK_PR_NONE;
		if (a->ptpl >= 0)
			pr->anon.ptpl = a->ptpl != 0;
		pr->anon.generation++;
		return DISK_OK;
	case DISK_OP_PR_RESERVE:
		if (!prwrap_anon_registered_as(pr, a->key))
			return DISK_RESERVATION_CONFLICT;
		if (pr->anon.type != DISK_PR_NONE && pr->anon.type != a->type)
			return DISK_RESERVATION_CONFLICT;
		pr->anon.type = a->type;
		return DISK_OK;
	case DISK_OP_PR_RELEASE:
		if (!prwrap_anon_registered_as(pr, a->key))
			return DISK_RESERVATION_CONFLICT;
		if (pr->anon.type != DISK_PR_NONE) {
			if (pr->anon.type != a->type)
				return DISK_INVALID_INPUT;
			pr->anon.type = DISK_PR_NONE;
		}
		return DISK_OK;
	case DISK_OP_PR_CLEAR:
		if (!prwrap_anon_registered_as(pr, a->key))
			return DISK_RESERVATION_CONFLICT;
		pr->anon.key = 0;
		pr->anon.type = DISK_PR_NONE;
		pr->anon.generation++;
		return DISK_OK;
	case DISK_OP_PR_PREEMPT:
		if (!prwrap_anon_registered_as(pr, a->key))
			return DISK_RESERVATION_CONFLICT;
		if (a->new_key != pr->anon.key ||
		    (pr->anon.type != DISK_PR_NONE && pr->anon.type != a->type))
			return DISK_INVALID_INPUT;
		/* The abort flag is ignored: nothing is aborted (§5.3). */
		pr->anon.type = DISK_PR_NONE;
		pr->anon.generation++;
		return DISK_OK;
	default:
		return DISK_INVALID_INPUT;
	}
}

/* ---- PR: identified initiators (SPC-4) ------------------------------------------------------ */

/* The slot of @ini, or -1. Call with @lock held. */
static int prwrap_find(struct prwrap *pr, const struct disk_initiator *ini)
{
	unsigned n = atomic_load_explicit(&pr->nslots, memory_order_relaxed);
	uint64_t id[2];
	unsigned tag;

	prwrap_id_of(ini, id, &tag);
	for (unsigned i = 0; i < n; i++) {
		struct prwrap_slot *sl = &pr->slots[i];

		if (atomic_load_explicit(&sl->tag, memory_order_relaxed) == tag &&
		    atomic_load_explicit(&sl->id[0], memory_order_relaxed) == id[0] &&
		    atomic_load_explicit(&sl->id[1], memory_order_relaxed) == id[1])
			return (int)i;
	}
	return -1;
}

static bool prwrap_slot_used(struct prwrap *pr, int i)
{
	return atomic_load_explicit(&pr->slots[i].tag, memory_order_relaxed) != 0;
}

static unsigned prwrap_type(struct prwrap *pr)
{
	return atomic_load_explicit(&pr->rtype, memory_order_relaxed);
}

/* True when slot @i holds the identified reservation. Call with @lock held. */
static bool prwrap_is_holder(struct prwrap *pr, int i)
{
	unsigned t = prwrap_type(pr);

	if (t == DISK_PR_NONE || !prwrap_slot_used(pr, i))
		return false;
	return prwrap_all_regs(t) || atomic_load_explicit(&pr->holder, memory_order_relaxed) == i;
}

/* Sets the identified reservation (in a write section). */
static void prwrap_set_reservation(struct prwrap *pr, unsigned type, int holder)
{
	atomic_store_explicit(&pr->rtype, type, memory_order_relaxed);
	atomic_store_explicit(&pr->holder, type == DISK_PR_NONE || prwrap_all_regs(type) ? -1 : holder,
			      memory_order_relaxed);
}

/* Registers @ini with @key in a free slot (in a write section). Returns
 * the slot or -ENOSPC. Slots still draining are skipped, and slots with
 * requests in flight are taken last. */
static int prwrap_slot_alloc(struct prwrap *pr, const struct disk_initiator *ini, uint64_t key)
{
	unsigned n = atomic_load_explicit(&pr->nslots, memory_order_relaxed);
	int pick = -1;
	uint64_t id[2];
	unsigned tag;

	for (int pass = 0; pass < 2 && pick < 0; pass++) {
		for (int i = 0; i < PRWRAP_MAX_REGISTRANTS; i++) {
			struct prwrap_slot *sl = &pr->slots[i];

			if (prwrap_slot_used(pr, i) || atomic_load(&sl->draining))
				continue;
			if (pass == 0 && atomic_load(&sl->inflight) != 0)
				continue;
			pick = i;
			break;
		}
	}
	if (pick < 0)
		return -ENOSPC;
	prwrap_id_of(ini, id, &tag);
	atomic_store_explicit(&pr->slots[pick].id[0], id[0], memory_order_relaxed);
	atomic_store_explicit(&pr->slots[pick].id[1], id[1], memory_order_relaxed);
	atomic_store_explicit(&pr->slots[pick].tag, tag, memory_order_relaxed);
	pr->slots[pick].key = key;
	pr->slots[pick].controller_id = ini->controller_id;
	if ((unsigned)pick >= n)
		atomic_store_explicit(&pr->nslots, (unsigned)pick + 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&pr->nregs, 1, memory_order_relaxed);
	return pick;
}

/* Removes registration @i (in a write section). @abort: by PREEMPT AND
 * ABORT (its requests in flight are aborted). The caller fixes up the
 * reservation. */
static void prwrap_slot_free(struct prwrap *pr, int i, bool abort)
{
	struct prwrap_slot *sl = &pr->slots[i];

	atomic_store_explicit(&sl->tag, 0, memory_order_relaxed);
	atomic_store_explicit(&sl->id[0], 0, memory_order_relaxed);
	atomic_store_explicit(&sl->id[1], 0, memory_order_relaxed);
	if (abort)
		atomic_fetch_add_explicit(&sl->aborts, 1, memory_order_relaxed);
	sl->key = 0;
	sl->controller_id = 0;
	atomic_fetch_sub_explicit(&pr->nregs, 1, memory_order_relaxed);
}

/* After a PREEMPT AND ABORT vacated the slots in @aborted (after
 * prwrap_write_end, @lock still held): waits for their tracked requests.
 * Returns the number of slots @io now waits for. */
static unsigned prwrap_abort_drain(struct prwrap *pr, const bool *aborted, struct disk_io *io)
{
	unsigned waiting = 0;

	io->hctx[PRWRAP_HCTX_WAITING] = 0;
	for (int i = 0; i < PRWRAP_MAX_REGISTRANTS; i++) {
		struct prwrap_slot *sl = &pr->slots[i];

		if (!aborted[i])
			continue;
		/* seq_cst store, then load: pairs with prwrap_untrack(). */
		atomic_store(&sl->draining, true);
		if (atomic_load(&sl->inflight) == 0) {
			atomic_store(&sl->draining, false);
			continue;
		}
		sl->waiter = io;
		waiting++;
	}
	io->hctx[PRWRAP_HCTX_WAITING] = waiting;
	return waiting;
}

static int prwrap_ident_register(struct prwrap *pr, struct disk_io *io)
{
	const struct disk_pr_args *a = &io->u.pr;
	int s = prwrap_find(pr, io->initiator);

	if (s < 0) {
		if (a->has_current_key && a->key != 0)
			return DISK_RESERVATION_CONFLICT;
		if (a->new_key != 0) {
			prwrap_write_begin(pr);
			s = prwrap_slot_alloc(pr, io->initiator, a->new_key);
			prwrap_write_end(pr);
			if (s < 0) {
				io->os_errno = ENOSPC;
				return DISK_IO_ERROR;
			}
		}
		/* An unregistered initiator registering key 0: nothing to do,
		 * but the command is performed (SPC-4 counts it). */
	} else {
		struct prwrap_slot *sl = &pr->slots[s];

		if (a->has_current_key && a->key != sl->key)
			return DISK_RESERVATION_CONFLICT;
		if (a->new_key != 0) {
			sl->key = a->new_key;
			sl->controller_id = io->initiator->controller_id;
		} else {
			bool was_holder = prwrap_is_holder(pr, s);
			unsigned t = prwrap_type(pr);

			prwrap_write_begin(pr);
			prwrap_slot_free(pr, s, false);
			/* A holder that unregisters releases the reservation;
			 * an all-registrants one goes with the last registrant. */
			if (was_holder && (!prwrap_all_regs(t) ||
					   atomic_load_explicit(&pr->nregs, memory_order_relaxed) == 0))
				prwrap_set_reservation(pr, DISK_PR_NONE, -1);
			prwrap_write_end(pr);
		}
	}
	if (a->ptpl >= 0)
		pr->ptpl = a->ptpl != 0;
	pr->generation++;
	return DISK_OK;
}

static int prwrap_ident_reserve(struct prwrap *pr, struct disk_io *io, int s)
{
	const struct disk_pr_args *a = &io->u.pr;
	unsigned t = prwrap_type(pr);

	if (t == DISK_PR_NONE) {
		prwrap_write_begin(pr);
		prwrap_set_reservation(pr, a->type, s);
		prwrap_write_end(pr);
		return DISK_OK;
	}
	/* Only a holder may reserve again, and only with the same type. */
	if (prwrap_is_holder(pr, s) && t == (unsigned)a->type)
		return DISK_OK;
	return DISK_RESERVATION_CONFLICT;
}

static int prwrap_ident_release(struct prwrap *pr, struct disk_io *io, int s)
{
	unsigned t = prwrap_type(pr);

	/* No reservation, or a registrant that does not hold it: success,
	 * nothing changes. Any registrant holds an all-registrants one. */
	if (t == DISK_PR_NONE || !prwrap_is_holder(pr, s))
		return DISK_OK;
	if (t != (unsigned)io->u.pr.type)
		return DISK_INVALID_INPUT;   /* INVALID RELEASE OF PERSISTENT RESERVATION */
	prwrap_write_begin(pr);
	prwrap_set_reservation(pr, DISK_PR_NONE, -1);
	prwrap_write_end(pr);
	return DISK_OK;
}

static int prwrap_ident_clear(struct prwrap *pr)
{
	unsigned n = atomic_load_explicit(&pr->nslots, memory_order_relaxed);

	prwrap_write_begin(pr);
	for (unsigned i = 0; i < n; i++)
		if (prwrap_slot_used(pr, (int)i))
			prwrap_slot_free(pr, (int)i, false);
	prwrap_set_reservation(pr, DISK_PR_NONE, -1);
	prwrap_write_end(pr);
	pr->generation++;
	return DISK_OK;
}

/*
 * PREEMPT and PREEMPT AND ABORT (SPC-4 "preempting" and "removing
 * registrations"). @s is the requester's slot.
 * - All-registrants reservation, preempt key 0: every other registration
 *   goes and the requester gets a new reservation of the given type.
 * - All-registrants reservation, preempt key K: the other registrations
 *   with key K go; the reservation stays. None → RESERVATION CONFLICT.
 * - Otherwise a preempt key of 0 is INVALID_INPUT.
 * - K is the holder's key: the reservation goes, so do the other
 *   registrations with key K, and the requester gets a reservation of the
 *   given type (preempting oneself changes the type and keeps the key).
 * - K is not the holder's key (or nothing is reserved): every
 *   registration with key K goes, the requester's included; the
 *   reservation stays. None → RESERVATION CONFLICT.
 * The generation goes up on success. With @abort the removed initiators'
 * tracked requests are aborted and waited for (not the requester's).
 */
static int prwrap_ident_preempt(struct prwrap *pr, struct disk_io *io, int s)
{
	const struct disk_pr_args *a = &io->u.pr;
	unsigned n = atomic_load_explicit(&pr->nslots, memory_order_relaxed);
	unsigned t = prwrap_type(pr);
	int holder = atomic_load_explicit(&pr->holder, memory_order_relaxed);
	bool removed[PRWRAP_MAX_REGISTRANTS] = { false };
	bool any = false, take = false, keep_self;
	unsigned waiting = 0;

	if (t != DISK_PR_NONE && prwrap_all_regs(t)) {
		take = a->new_key == 0;
		keep_self = true;
	} else {
		if (a->new_key == 0)
			return DISK_INVALID_INPUT;
		take = t != DISK_PR_NONE && holder >= 0 && pr->slots[holder].key == a->new_key;
		keep_self = take;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!prwrap_slot_used(pr, (int)i) || ((int)i == s && keep_self))
			continue;
		if (a->new_key != 0 && pr->slots[i].key != a->new_key)
			continue;
		removed[i] = true;
		any = true;
	}
	if (!any && !take)
		return DISK_RESERVATION_CONFLICT;

	prwrap_write_begin(pr);
	for (unsigned i = 0; i < n; i++)
		if (removed[i])
			prwrap_slot_free(pr, (int)i, a->abort && (int)i != s);
	/* Otherwise the reservation stays: its holder (or, for the
	 * all-registrants types, the requester) is still registered. */
	if (take)
		prwrap_set_reservation(pr, a->type, s);
	prwrap_write_end(pr);
	pr->generation++;

	if (a->abort) {
		removed[s] = false;
		waiting = prwrap_abort_drain(pr, removed, io);
	}
	return waiting ? DISK_PENDING : DISK_OK;
}

static void prwrap_ident_report(struct prwrap *pr, struct disk_pr_report *r)
{
	unsigned n = atomic_load_explicit(&pr->nslots, memory_order_relaxed);
	uint32_t filled = 0;

	r->generation = pr->generation;
	r->type = prwrap_type(pr);
	r->ptpl = pr->ptpl;
	r->nr_controllers = atomic_load_explicit(&pr->nregs, memory_order_relaxed);
	for (unsigned i = 0; i < n && r->controllers && filled < r->max_controllers; i++) {
		struct prwrap_slot *sl = &pr->slots[i];
		struct disk_pr_controller *c;
		unsigned tag = atomic_load_explicit(&sl->tag, memory_order_relaxed);
		uint64_t id[2];

		if (!tag)
			continue;
		c = &r->controllers[filled++];
		memset(c, 0, sizeof(*c));
		id[0] = atomic_load_explicit(&sl->id[0], memory_order_relaxed);
		id[1] = atomic_load_explicit(&sl->id[1], memory_order_relaxed);
		memcpy(c->host_id, &id[0], 8);
		memcpy(c->host_id + 8, &id[1], 8);
		c->host_id_len = (uint8_t)(tag & 0xff);
		c->key = sl->key;
		c->controller_id = sl->controller_id;
		c->holds_reservation = prwrap_is_holder(pr, (int)i);
	}
}

/* Runs one PR op of an identified initiator. Call with @lock held. */
static int prwrap_ident_op(struct prwrap *pr, struct disk_io *io)
{
	const struct disk_pr_args *a = &io->u.pr;
	int s;

	switch (io->op) {
	case DISK_OP_PR_REPORT:
		prwrap_ident_report(pr, a->report);
		return DISK_OK;
	case DISK_OP_PR_REGISTER:
		return prwrap_ident_register(pr, io);
	default:
		break;
	}
	/* Every other action needs the requester registered with @key. */
	s = prwrap_find(pr, io->initiator);
	if (s < 0 || pr->slots[s].key != a->key)
		return DISK_RESERVATION_CONFLICT;
	switch (io->op) {
	case DISK_OP_PR_RESERVE:
		return prwrap_ident_reserve(pr, io, s);
	case DISK_OP_PR_RELEASE:
		return prwrap_ident_release(pr, io, s);
	case DISK_OP_PR_CLEAR:
		return prwrap_ident_clear(pr);
	case DISK_OP_PR_PREEMPT:
		return prwrap_ident_preempt(pr, io, s);
	default:
		return DISK_INVALID_INPUT;
	}
}

static int prwrap_pr(struct disk *d, struct disk_io *io)
{
	struct prwrap *pr = disk_priv(d);
	bool anon = prwrap_anonymous(io->initiator);
	int st;

	switch (io->op) {
	case DISK_OP_PR_CAPS:
		io->u.pr.caps = DISK_PR_CAP_WE | DISK_PR_CAP_EA | DISK_PR_CAP_WE_RO |
				DISK_PR_CAP_EA_RO | DISK_PR_CAP_PTPL;
		if (!anon)
			io->u.pr.caps |= DISK_PR_CAP_WE_AR | DISK_PR_CAP_EA_AR;
		return DISK_OK;
	default:
		/* The dispatcher checked the type of RESERVE, RELEASE and
		 * PREEMPT (a real one, in range). */
		break;
	}
	pthread_mutex_lock(&pr->lock);
	st = anon ? prwrap_anon_op(pr, io) : prwrap_ident_op(pr, io);
	pthread_mutex_unlock(&pr->lock);
	return st;
}

/* ---- the disk ------------------------------------------------------------------------------ */

static const char *prwrap_type_name(unsigned t)
{
	static const char *const names[] = {
		[DISK_PR_NONE] = "none",
		[DISK_PR_WRITE_EXCLUSIVE] = "write-exclusive",
		[DISK_PR_EXCLUSIVE_ACCESS] = "exclusive-access",
		[DISK_PR_WRITE_EXCLUSIVE_REG_ONLY] = "write-exclusive-registrants-only",
		[DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY] = "exclusive-access-registrants-only",
		[DISK_PR_WRITE_EXCLUSIVE_ALL_REG] = "write-exclusive-all-registrants",
		[DISK_PR_EXCLUSIVE_ACCESS_ALL_REG] = "exclusive-access-all-registrants",
	};

	return t < ARRAY_SIZE(names) ? names[t] : "unknown";
}

static void prwrap_describe(struct disk *d, struct disk_describer *dd)
{
	struct prwrap *pr = disk_priv(d);
	unsigned nregs, type;

	pthread_mutex_lock(&pr->lock);
	nregs = atomic_load_explicit(&pr->nregs, memory_order_relaxed);
	type = prwrap_type(pr);
	pthread_mutex_unlock(&pr->lock);
	disk_describe_paramf(dd, "state", "in memory (lost when the disk is closed)");
	disk_describe_paramf(dd, "max_registrants", "%d", PRWRAP_MAX_REGISTRANTS);
	disk_describe_paramf(dd, "registrants", "%u", nregs);
	disk_describe_paramf(dd, "reservation", "%s", prwrap_type_name(type));
}

static void prwrap_close(struct disk *d)
{
	struct prwrap *pr = disk_priv(d);

	pthread_mutex_destroy(&pr->lock);
	free(pr);
}

static const struct disk_ops prwrap_ops = {
	.version = DISK_OPS_VERSION,
	.read = prwrap_read,
	.write = prwrap_write,
	.flush = prwrap_flush,
	.unmap = prwrap_unmap,
	.write_zeroes = prwrap_write_zeroes,
	.block_status = prwrap_block_status,
	.cache = prwrap_cache,
	.eject = prwrap_eject,
	.pr = prwrap_pr,
	.watch_resize = prwrap_watch_resize,
	.unwatch_resize = prwrap_unwatch_resize,
	.describe = prwrap_describe,
	.close = prwrap_close,
};

int prwrap_new(struct disk *lower, struct disk **out)
{
	struct disk_info info;
	struct prwrap *pr;
	void *p = NULL;
	int r;

	assert(lower && out);
	if (posix_memalign(&p, 64, sizeof(*pr)) != 0)
		return -ENOMEM;
	pr = p;
	memset(pr, 0, sizeof(*pr));
	atomic_init(&pr->holder, -1);
	pthread_mutex_init(&pr->lock, NULL);

	disk_info_inherit(&info, lower);
	info.type = "prwrap";
	/* §5.4: the size is watched through nobody here, eject is refused. */
	info.caps &= ~(uint32_t)(DISK_CAP_RESIZE | DISK_CAP_EJECT);
	info.caps |= DISK_CAP_PR;
	/* Reads and writes are checked here and passed on whole (forwarded
	 * or repeated below): a pipe reaches the disk that can take it. */
	info.caps |= disk_get_info(lower)->caps & DISK_CAP_PIPE;
	r = disk_new(&prwrap_ops, &info, pr, lower, out);
	if (r < 0) {
		pthread_mutex_destroy(&pr->lock);
		free(pr);
	}
	return r;
}

static int prwrap_spec_wrap(const struct spec *s, struct disk *lower, void *arg,
			    struct disk **out, char *err, size_t errlen)
{
	int r;

	(void)s;
	(void)arg;
	r = prwrap_new(lower, out);
	if (r < 0)
		snprintf(err, errlen, "%s", strerror(-r));
	return r;
}

/* The prwrap: kind's open function: opens @s->inner with @read_only and
 * wraps it. */
static int prwrap_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx,
			    struct disk **out, char *err, size_t errlen)
{
	return spec_open_decorator(s, read_only, ctx, prwrap_spec_wrap, NULL, out, err, errlen);
}

const struct spec_kind prwrap_kind_prwrap = {
	.name = "prwrap",
	.usage = "prwrap:<spec>",
	.summary = "persistent-reservation emulation over <spec>",
	.open_disk = prwrap_spec_open,
	.tail = SPEC_TAIL_INNER,
};
