/* SPDX-License-Identifier: MIT */
/*
 * reactor.c: the per-thread event loop (see reactor.h).
 *
 * Notes on the design
 * -------------------
 * - One io_uring per reactor, its fd registered (io_uring_register_ring_fd)
 *   when the kernel allows. The ring is set up with SINGLE_ISSUER,
 *   COOP_TASKRUN + TASKRUN_FLAG, DEFER_TASKRUN and SUBMIT_ALL when the kernel
 *   has them (6.1 does); each flag set that the kernel refuses with -EINVAL
 *   falls back to a smaller one, down to no flags at all.
 *   DISKSTACK_URING_BASIC=1 forces the plain ring (to test the fallback:
 *   no registered ring fd, fixed files or buffer rings either);
 *   so does running under valgrind, which cannot let other threads run
 *   while one blocks in io_uring_enter (see reactor_wait_valgrind).
 *   The CQ ring is four times the SQ ring so bursts of completions rarely
 *   overflow.
 * - A pass (reactor_run_once) is: submit queued SQEs (only if there are any,
 *   and only if the pass has other work: a blocking pass that would find
 *   nothing submits them with the wait, in one io_uring_enter), reap CQEs,
 *   run due timers, move posted tasks to the ready list, run the ready list.
 *   When a blocking pass's only work is tasks (ready, posted, or timers:
 *   no completion to reap), its SQEs are held through that pass, and
 *   through at most REACTOR_SQ_HOLD_PASSES such passes in a row: the tasks
 *   usually queue more SQEs (a completion's reply, an interrupt), and all
 *   of them then go in with the wait that follows, one io_uring_enter for
 *   the lot instead of one for the SQEs and one for the wait
 *   (docs/bench-vhost.md: a request served at one per wake-up cost two).
 *   The bound keeps a task that re-defers itself from holding I/O back
 *   for long; a non-blocking pass never holds.
 *   The ready list is detached before it runs, so tasks deferred by ready
 *   tasks run on the next pass: a task that keeps re-deferring itself cannot
 *   starve I/O or timers. A pass only blocks (in io_uring_enter, with the
 *   earliest timer deadline as timeout) when it ran nothing and nothing is
 *   ready. With no SQEs queued and tasks ready, a pass makes no syscall.
 * - CQEs are copied out of the ring in batches of up to REACTOR_CQE_BATCH and
 *   the CQ head is advanced before any callback runs, so a callback may
 *   submit, or even run a nested pass, without seeing the same CQE twice.
 * - reactor_get_sqe never fails: when the SQ ring is full it submits; when
 *   the kernel refuses (-EBUSY/-EAGAIN, CQ overflow backlog) it copies the
 *   available CQEs into a stash (dispatched on the next pass) and retries.
 * - Timers: a binary min-heap (1-based) of pointers; reactor_timer.heap_index
 *   is the timer's slot, 0 when not armed. Equal deadlines fire in an
 *   unspecified order.
 * - Mailbox: posters append to a mutex-protected list and then set
 *   mb_pending; only the poster that flips it from false to true writes the
 *   eventfd, so a burst of posts costs one write(2). The whole post happens
 *   under mb_lock: once the reactor can see a task, its poster is done with
 *   the reactor, and reactor_free() takes mb_lock to wait for stragglers, so
 *   a task may free the reactor it was posted to. The reactor keeps a read
 *   of the eventfd armed in its ring (that is what wakes a blocked reactor),
 *   and drains the list whenever mb_pending is set: it clears the flag before
 *   taking the list, so a post that misses the drain always sees false and
 *   signals again.
 * - Buffer cache: one intrusive free list per power-of-two size class, 512 B
 *   to 64 MiB, bounded to REACTOR_BUF_CLASS_BYTES (at least one, at most
 *   REACTOR_BUF_CLASS_MAX buffers) per class.
 * - Only the reactor's thread touches anything but the mailbox (mb_lock,
 *   mb_head/mb_tail), mb_pending and stop.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#endif

#include "compiler.h"
#include "log.h"
#include "reactor.h"

#define REACTOR_DEFAULT_ENTRIES 256u
#define REACTOR_MAX_ENTRIES 32768u
#define REACTOR_CQE_BATCH 64u
/* Task-only passes that may hold queued SQEs back (see the notes above):
 * a request's completion is usually two or three deferred hops (the
 * disk's completion, the server's reply or interrupt task). */
#define REACTOR_SQ_HOLD_PASSES 4u
#define REACTOR_TIMERS_INITIAL 64u
/* Slots of the fixed-file table and provided-buffer group ids. */
#define REACTOR_FILES 1024u
#define REACTOR_BUFRINGS 1024u

#define REACTOR_BUF_MIN_SHIFT 9u                /* 512 B */
#define REACTOR_BUF_MAX_SHIFT 26u               /* 64 MiB */
#define REACTOR_BUF_CLASSES (REACTOR_BUF_MAX_SHIFT - REACTOR_BUF_MIN_SHIFT + 1)
#define REACTOR_BUF_CLASS_BYTES ((size_t)32 << 20)
#define REACTOR_BUF_CLASS_MAX 64u
#define REACTOR_BUF_ALIGN 4096u

/* A CQE copied out of the ring. */
struct reactor_cqe {
	uint64_t user_data;
	int32_t res;
	uint32_t flags;
};

/* A pool of small integer ids (fixed-file slots, buffer group ids):
 * never used ones from @next up, freed ones on a stack. */
struct reactor_ids {
	unsigned *free;
	unsigned nfree, next, max;
};

/* A ring of provided buffers (reactor_bufring_new). */
struct reactor_bufring {
	struct io_uring_buf_ring *br;   /* the ring shared with the kernel (mmap) */
	size_t br_bytes;
	uint8_t *mem;                   /* count buffers of size bytes */
	size_t size;
	unsigned count;
	unsigned gid;
};

/* A cached buffer's first bytes while it sits in the cache. */
struct reactor_buf {
	struct reactor_buf *next;
};

struct reactor {
	struct io_uring ring;
	pthread_t owner;

	/* SQEs handed out by reactor_get_sqe whose final CQE is not reaped. */
	unsigned ops_inflight;
	/* Passes in a row that held queued SQEs back (reactor_run_once). */
	unsigned sq_held;

	/* Ready list (FIFO). */
	struct reactor_task *ready_head;
	struct reactor_task **ready_tail;
	unsigned nready;

	/* Timer min-heap, 1-based: heap[1] fires first. */
	struct reactor_timer **heap;
	unsigned heap_len, heap_cap;

	/* CQEs reaped outside a pass (ring-full handling), oldest first. */
	struct reactor_cqe *stash;
	unsigned stash_len, stash_cap;

	/* Mailbox. mb_lock protects mb_head and mb_tail. */
	pthread_mutex_t mb_lock;
	struct reactor_task *mb_head;
	struct reactor_task **mb_tail;
	atomic_bool mb_pending;      /* a post (or stop) is waiting to be seen */
	atomic_bool stop;
	/* Inside reactor_run() (and not in a reactor_run_until() it called):
	 * only then does a stop keep a pass from waiting. */
	bool in_run;

	/* The eventfd that wakes the ring, and its armed read. */
	int efd;
	uint64_t efd_val;
	struct reactor_op efd_op;
	bool efd_armed;
	bool closing;
	struct reactor_op cancel_op;
	/* The user_data of reactor_write_quiet's SQEs (only failures
	 * post a CQE); can_skip: the kernel has IORING_FEAT_CQE_SKIP. */
	struct reactor_op quiet_op;
	bool can_skip;

	/* Running under valgrind: see reactor_wait_valgrind(). */
	bool valgrind;
	/* The plain ring (valgrind or DISKSTACK_URING_BASIC): no registered
	 * ring fd, fixed files or buffer rings either. */
	bool basic;

	/* Buffer cache by size class. */
	struct {
		struct reactor_buf *head;
		unsigned n;
	} bufs[REACTOR_BUF_CLASSES];

	void *local[REACTOR_LOCAL_NR];
	void (*local_dtor[REACTOR_LOCAL_NR])(void *value);

	/* The CQE whose callback runs (reactor_cqe_flags). */
	uint32_t cqe_flags;
	/* Fixed-file slots: 0 = table not tried yet, 1 = registered,
	 * -errno = the kernel has none. */
	int files_state;
	struct reactor_ids files;
	struct reactor_ids bgids;
};

static __thread struct reactor *reactor_tls;

/* ---- small helpers ------------------------------------------------------ */

uint64_t reactor_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

struct reactor *reactor_current(void)
{
	return reactor_tls;
}

static inline void reactor_assert_thread(const struct reactor *r UNUSED)
{
	assert(pthread_equal(r->owner, pthread_self()));
}

/* True when the kernel has completions to post (deferred task work or a CQ
 * overflow backlog) that only a trip into io_uring_enter will deliver. */
static inline bool reactor_cq_needs_flush(const struct reactor *r)
{
	return IO_URING_READ_ONCE(*r->ring.sq.kflags) &
	       (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW);
}

void reactor_mark_defined(const void *p UNUSED, size_t len UNUSED)
{
#ifdef HAVE_VALGRIND_MEMCHECK_H
	if (p && len)
		(void)VALGRIND_MAKE_MEM_DEFINED(p, len);
#endif
}

void reactor_mark_iov_defined(const struct iovec *iov, int iovcnt, size_t len)
{
#ifdef HAVE_VALGRIND_MEMCHECK_H
	if (!RUNNING_ON_VALGRIND)
		return;
	for (int i = 0; i < iovcnt && len > 0; i++) {
		size_t n = MIN(iov[i].iov_len, len);

		reactor_mark_defined(iov[i].iov_base, n);
		len -= n;
	}
#else
	(void)iov;
	(void)iovcnt;
	(void)len;
#endif
}

/* ---- completions -------------------------------------------------------- */

/* Runs the callback of one CQE. Returns 1 if a user callback ran. */
static inline int reactor_dispatch(struct reactor *r, uint64_t user_data, int res, uint32_t flags)
{
	struct reactor_op *op;

	/* 0: an SQE nobody asked to hear about; LIBURING_UDATA_TIMEOUT:
	 * liburing's internal wait timeout on kernels without EXT_ARG. */
	if (unlikely(user_data == 0 || user_data == LIBURING_UDATA_TIMEOUT))
		return 0;
	op = (struct reactor_op *)(uintptr_t)user_data;
	if (unlikely(op == &r->efd_op || op == &r->cancel_op || op == &r->quiet_op)) {
		op->cb(op, res);
		return 0;
	}
	if (!(flags & IORING_CQE_F_MORE)) {
		assert(r->ops_inflight > 0);
		r->ops_inflight--;
	}
	r->cqe_flags = flags;
	op->cb(op, res);
	return 1;
}

static void reactor_stash_push(struct reactor *r, const struct io_uring_cqe *cqe)
{
	if (r->stash_len == r->stash_cap) {
		unsigned cap = r->stash_cap ? r->stash_cap * 2 : 64;
		struct reactor_cqe *s = realloc(r->stash, cap * sizeof(*s));

		if (!s) {
			log_error("reactor: out of memory stashing completions");
			abort();
		}
		r->stash = s;
		r->stash_cap = cap;
	}
	r->stash[r->stash_len++] = (struct reactor_cqe){
		.user_data = cqe->user_data, .res = cqe->res, .flags = cqe->flags,
	};
}

/* Moves every CQE visible in the ring into the stash. Returns how many. */
static unsigned reactor_stash_cqes(struct reactor *r)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&r->ring, head, cqe) {
		reactor_stash_push(r, cqe);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
	return n;
}

/* Dispatches stashed CQEs, oldest first. Each is removed before its
 * callback runs, so a nested pass never sees it again. */
static int reactor_run_stash(struct reactor *r)
{
	int ran = 0;

	while (r->stash_len > 0) {
		struct reactor_cqe c = r->stash[0];

		r->stash_len--;
		memmove(&r->stash[0], &r->stash[1], r->stash_len * sizeof(r->stash[0]));
		ran += reactor_dispatch(r, c.user_data, c.res, c.flags);
	}
	return ran;
}

/* Reaps the CQEs available now (no syscall unless the kernel flagged
 * pending work). Returns the number of user callbacks run. */
static int reactor_reap(struct reactor *r)
{
	struct reactor_cqe batch[REACTOR_CQE_BATCH];
	int ran = 0;

	if (unlikely(r->stash_len))
		ran += reactor_run_stash(r);
	if (reactor_cq_needs_flush(r))
		(void)io_uring_get_events(&r->ring);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_for_each_cqe(&r->ring, head, cqe) {
			batch[n].user_data = cqe->user_data;
			batch[n].res = cqe->res;
			batch[n].flags = cqe->flags;
			if (++n == REACTOR_CQE_BATCH)
				break;
		}
		if (n == 0)
			break;
		io_uring_cq_advance(&r->ring, n);
		for (unsigned i = 0; i < n; i++)
			ran += reactor_dispatch(r, batch[i].user_data, batch[i].res, batch[i].flags);
		if (n < REACTOR_CQE_BATCH)
			break;
	}
	return ran;
}

/* ---- submission --------------------------------------------------------- */

/* Submits queued SQEs, handling a busy kernel. Returns the number submitted
 * or -errno for errors that are not transient. */
static int reactor_submit(struct reactor *r)
{
	unsigned tries = 0;

	r->sq_held = 0;
	for (;;) {
		int ret = io_uring_submit(&r->ring);

		if (likely(ret >= 0))
			return ret;
		if (ret == -EINTR)
			continue;
		if (ret != -EBUSY && ret != -EAGAIN)
			return ret;
		/* The kernel wants its CQ backlog consumed first (or is short of
		 * memory): make room by stashing CQEs, waiting briefly for some
		 * if none are visible. */
		if (reactor_stash_cqes(r) == 0) {
			struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };
			struct io_uring_cqe *cqe;

			if (++tries > 10000)
				return ret;
			(void)io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
			reactor_stash_cqes(r);
		}
	}
}

int reactor_flush(struct reactor *r)
{
	int total = 0;

	reactor_assert_thread(r);
	/* Until the SQ ring is empty: io_uring_enter may take fewer SQEs
	 * than are queued (short of memory, or an SQE it refuses on a ring
	 * without SUBMIT_ALL), and a caller that closes an fd after the
	 * flush (reactor_write_quiet) needs every SQE naming it in. */
	do {
		int ret = reactor_submit(r);

		if (ret < 0)
			return ret;
		if (ret == 0 && io_uring_sq_ready(&r->ring) > 0)
			return -EAGAIN;
		total += ret;
	} while (io_uring_sq_ready(&r->ring) > 0);
	return total;
}

/* A zeroed SQE, not counted as a user op. */
static struct io_uring_sqe *reactor_get_sqe_internal(struct reactor *r)
{
	for (;;) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
		int ret;

		if (likely(sqe != NULL)) {
			memset(sqe, 0, sizeof(*sqe));
			return sqe;
		}
		ret = reactor_submit(r);
		if (ret < 0) {
			/* Only a broken ring gets here (wrong thread, EBADF):
			 * a programming error we cannot report to the caller. */
			log_error("reactor: io_uring submit failed: %s", strerror(-ret));
			abort();
		}
	}
}

struct io_uring_sqe *reactor_get_sqe(struct reactor *r)
{
	struct io_uring_sqe *sqe;

	reactor_assert_thread(r);
	sqe = reactor_get_sqe_internal(r);
	r->ops_inflight++;
	return sqe;
}

static void reactor_quiet_cb(struct reactor_op *op UNUSED, int res)
{
	log_debug("reactor: an op without a completion failed: %s", strerror(-res));
}

int reactor_write_quiet(struct reactor *r, int fd, const void *buf, unsigned len)
{
	struct io_uring_sqe *sqe;

	reactor_assert_thread(r);
	if (!r->can_skip)
		return -ENOTSUP;
	sqe = reactor_get_sqe_internal(r);
	io_uring_prep_write(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data(sqe, &r->quiet_op);
	io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
	return 0;
}

/* ---- mailbox ------------------------------------------------------------ */

static void reactor_efd_arm(struct reactor *r)
{
	struct io_uring_sqe *sqe = reactor_get_sqe_internal(r);

	io_uring_prep_read(sqe, r->efd, &r->efd_val, sizeof(r->efd_val), 0);
	io_uring_sqe_set_data(sqe, &r->efd_op);
	r->efd_armed = true;
}

static void reactor_efd_cb(struct reactor_op *op, int res)
{
	struct reactor *r = container_of(op, struct reactor, efd_op);

	r->efd_armed = false;
	if (r->closing)
		return;
	if (res < 0 && res != -EINTR && res != -EAGAIN && res != -ECANCELED)
		log_error("reactor: eventfd read failed: %s", strerror(-res));
	reactor_efd_arm(r);
}

static void reactor_cancel_cb(struct reactor_op *op UNUSED, int res UNUSED)
{
}

/* Makes sure a blocked reactor wakes up. Called with mb_lock held, so that
 * reactor_free() (which takes mb_lock) cannot free the reactor or close the
 * eventfd under a poster that is still signalling. */
static void reactor_wake(struct reactor *r)
{
	if (!atomic_exchange(&r->mb_pending, true)) {
		uint64_t one = 1;
		ssize_t w;

		do
			w = write(r->efd, &one, sizeof(one));
		while (w < 0 && errno == EINTR);
	}
}

void reactor_post(struct reactor *r, struct reactor_task *task)
{
	assert(task->fn != NULL);
	task->next = NULL;
	pthread_mutex_lock(&r->mb_lock);
	*r->mb_tail = task;
	r->mb_tail = &task->next;
	reactor_wake(r);
	pthread_mutex_unlock(&r->mb_lock);
}

void reactor_stop(struct reactor *r)
{
	if (pthread_equal(r->owner, pthread_self())) {
		atomic_store(&r->stop, true);
		return;
	}
	pthread_mutex_lock(&r->mb_lock);
	atomic_store(&r->stop, true);
	reactor_wake(r);
	pthread_mutex_unlock(&r->mb_lock);
}

/* Moves posted tasks to the end of the ready list. */
static void reactor_drain_mailbox(struct reactor *r)
{
	struct reactor_task *head, **tail;
	unsigned n = 0;

	/* Clear before taking the list: a post that misses this drain then
	 * sees false and signals again. */
	atomic_store(&r->mb_pending, false);
	pthread_mutex_lock(&r->mb_lock);
	head = r->mb_head;
	tail = r->mb_tail;
	r->mb_head = NULL;
	r->mb_tail = &r->mb_head;
	pthread_mutex_unlock(&r->mb_lock);
	if (!head)
		return;
	for (struct reactor_task *t = head; t; t = t->next)
		n++;
	*r->ready_tail = head;
	r->ready_tail = tail;
	r->nready += n;
}

/* ---- ready list --------------------------------------------------------- */

void reactor_defer(struct reactor *r, struct reactor_task *task)
{
	reactor_assert_thread(r);
	assert(task->fn != NULL);
	task->next = NULL;
	*r->ready_tail = task;
	r->ready_tail = &task->next;
	r->nready++;
}

/* Runs the tasks ready now; tasks they defer wait for the next pass. */
static int reactor_run_ready(struct reactor *r)
{
	struct reactor_task *t = r->ready_head;
	int ran = 0;

	r->ready_head = NULL;
	r->ready_tail = &r->ready_head;
	r->nready = 0;
	while (t) {
		struct reactor_task *next = t->next;

		t->fn(t);
		ran++;
		t = next;
	}
	return ran;
}

/* ---- timers ------------------------------------------------------------- */

static inline void reactor_heap_place(struct reactor *r, unsigned i, struct reactor_timer *t)
{
	r->heap[i] = t;
	t->heap_index = i;
}

static void reactor_heap_up(struct reactor *r, unsigned i)
{
	struct reactor_timer *t = r->heap[i];

	while (i > 1) {
		struct reactor_timer *p = r->heap[i / 2];

		if (p->deadline_ns <= t->deadline_ns)
			break;
		reactor_heap_place(r, i, p);
		i /= 2;
	}
	reactor_heap_place(r, i, t);
}

static void reactor_heap_down(struct reactor *r, unsigned i)
{
	struct reactor_timer *t = r->heap[i];

	for (;;) {
		unsigned c = i * 2;

		if (c > r->heap_len)
			break;
		if (c + 1 <= r->heap_len && r->heap[c + 1]->deadline_ns < r->heap[c]->deadline_ns)
			c++;
		if (t->deadline_ns <= r->heap[c]->deadline_ns)
			break;
		reactor_heap_place(r, i, r->heap[c]);
		i = c;
	}
	reactor_heap_place(r, i, t);
}

static void reactor_heap_remove(struct reactor *r, struct reactor_timer *t)
{
	unsigned i = t->heap_index;
	struct reactor_timer *last;

	assert(i >= 1 && i <= r->heap_len && r->heap[i] == t);
	last = r->heap[r->heap_len--];
	t->heap_index = 0;
	if (last == t)
		return;
	reactor_heap_place(r, i, last);
	reactor_heap_up(r, i);
	reactor_heap_down(r, last->heap_index);
}

void reactor_timer_start(struct reactor *r, struct reactor_timer *t, uint64_t delay_ns)
{
	uint64_t deadline;

	reactor_assert_thread(r);
	assert(t->fn != NULL);
	if (ADD_OVERFLOW(reactor_now_ns(), delay_ns, &deadline))
		deadline = UINT64_MAX;
	if (t->heap_index) {
		assert(t->heap_index <= r->heap_len && r->heap[t->heap_index] == t);
		t->deadline_ns = deadline;
		reactor_heap_up(r, t->heap_index);
		reactor_heap_down(r, t->heap_index);
		return;
	}
	if (r->heap_len + 1 >= r->heap_cap) {
		unsigned cap = r->heap_cap * 2;
		struct reactor_timer **h = realloc(r->heap, cap * sizeof(*h));

		if (!h) {
			log_error("reactor: out of memory arming a timer");
			abort();
		}
		r->heap = h;
		r->heap_cap = cap;
	}
	t->deadline_ns = deadline;
	r->heap[++r->heap_len] = t;
	reactor_heap_up(r, r->heap_len);
}

void reactor_timer_cancel(struct reactor *r, struct reactor_timer *t)
{
	reactor_assert_thread(r);
	if (t->heap_index)
		reactor_heap_remove(r, t);
}

/* Fires the timers that are due. A timer re-armed by its own callback waits
 * for the next pass. */
static int reactor_run_timers(struct reactor *r)
{
	unsigned budget = r->heap_len;
	uint64_t now;
	int ran = 0;

	if (likely(budget == 0))
		return 0;
	now = reactor_now_ns();
	while (budget-- > 0 && r->heap_len > 0 && r->heap[1]->deadline_ns <= now) {
		struct reactor_timer *t = r->heap[1];

		reactor_heap_remove(r, t);
		t->fn(t);
		ran++;
	}
	return ran;
}

/* ---- the loop ----------------------------------------------------------- */

static inline bool reactor_has_work(struct reactor *r)
{
	/* Not r->stop: a stale stop must not turn reactor_run_until() into a
	 * busy loop. reactor_run_once() checks it, inside reactor_run() only. */
	return r->ready_head != NULL || r->stash_len > 0 ||
	       atomic_load_explicit(&r->mb_pending, memory_order_relaxed);
}

/*
 * Valgrind (3.19 at least) does not mark io_uring_enter as a syscall that
 * may block, so a thread waiting in it keeps valgrind's big lock and every
 * other thread of the process stops — a reactor waiting for a post would
 * wait forever. Under valgrind the ring is plain (no COOP/DEFER_TASKRUN:
 * completions are posted without our help) and the reactor sleeps in
 * ppoll() on the ring fd instead, which valgrind knows may block.
 */
static int reactor_wait_valgrind(struct reactor *r, const struct __kernel_timespec *kts)
{
	/* Cap the sleep so that a missed wake-up costs latency, not a hang. */
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };
	struct pollfd pfd = { .fd = r->ring.ring_fd, .events = POLLIN };
	int ret = reactor_submit(r);

	if (ret < 0)
		return ret;
	if (io_uring_cq_ready(&r->ring) > 0)
		return 0;
	if (kts && (kts->tv_sec < ts.tv_sec ||
		    (kts->tv_sec == ts.tv_sec && kts->tv_nsec < ts.tv_nsec))) {
		ts.tv_sec = (time_t)kts->tv_sec;
		ts.tv_nsec = (long)kts->tv_nsec;
	}
	if (ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

/* Blocks until a CQE arrives or the first timer is due. */
static int reactor_wait(struct reactor *r)
{
	struct __kernel_timespec ts, *tsp = NULL;
	struct io_uring_cqe *cqe;
	int ret;

	if (r->heap_len > 0) {
		uint64_t now = reactor_now_ns(), deadline = r->heap[1]->deadline_ns;
		uint64_t delta;

		if (deadline <= now)
			return 0;
		delta = deadline - now;
		ts.tv_sec = (long long)(delta / 1000000000u);
		ts.tv_nsec = (long long)(delta % 1000000000u);
		tsp = &ts;
	}
	if (unlikely(r->valgrind))
		return reactor_wait_valgrind(r, tsp);
	r->sq_held = 0;
	ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, tsp, NULL);
	if (ret >= 0 || ret == -ETIME || ret == -EINTR)
		return 0;
	if (ret == -EBUSY || ret == -EAGAIN) {
		reactor_stash_cqes(r);
		return 0;
	}
	return ret;
}

/* One non-blocking pass after submission. */
static int reactor_pass(struct reactor *r)
{
	int ran = reactor_reap(r);

	ran += reactor_run_timers(r);
	if (atomic_load_explicit(&r->mb_pending, memory_order_acquire))
		reactor_drain_mailbox(r);
	if (r->ready_head)
		ran += reactor_run_ready(r);
	return ran;
}

/* True when a pass has completions to reap without blocking. */
static bool reactor_io_ready(struct reactor *r)
{
	return r->stash_len > 0 || io_uring_cq_ready(&r->ring) > 0 || reactor_cq_needs_flush(r);
}

/* True when a pass would find tasks to run without blocking (ready,
 * posted, or a due timer). */
static bool reactor_tasks_ready(struct reactor *r)
{
	if (reactor_has_work(r))
		return true;
	return r->heap_len > 0 && r->heap[1]->deadline_ns <= reactor_now_ns();
}

/* Whether run_once must submit queued SQEs before its pass. Blocking
 * passes submit with the wait when they find nothing to do, and hold the
 * SQEs through a bounded number of task-only passes (notes above). */
static bool reactor_submit_now(struct reactor *r, bool wait)
{
	if (!wait || reactor_io_ready(r) || r->sq_held >= REACTOR_SQ_HOLD_PASSES)
		return true;
	if (reactor_tasks_ready(r))
		r->sq_held++;
	return false;
}

int reactor_run_once(struct reactor *r, bool wait)
{
	int ran, ret;

	reactor_assert_thread(r);
	/* With nothing else to do, queued SQEs go in with the wait below:
	 * one io_uring_enter instead of two per idle transition. */
	if (io_uring_sq_ready(&r->ring) > 0 && reactor_submit_now(r, wait)) {
		ret = reactor_submit(r);
		if (ret < 0)
			return ret;
	}
	ran = reactor_pass(r);
	/* A stop from another thread can be consumed by this very pass: its
	 * eventfd completion reaped and the mailbox drained, nothing run. Its
	 * wake-up is spent, so waiting now would sleep with stop set. */
	if (ran == 0 && wait && !reactor_has_work(r) &&
	    !(r->in_run && atomic_load_explicit(&r->stop, memory_order_acquire))) {
		ret = reactor_wait(r);
		if (ret < 0)
			return ret;
		ran = reactor_pass(r);
	}
	return ran;
}

int reactor_run(struct reactor *r)
{
	bool outer = r->in_run;
	int ret = 0;

	r->in_run = true;
	while (!atomic_load_explicit(&r->stop, memory_order_acquire)) {
		ret = reactor_run_once(r, true);
		if (ret < 0)
			break;
		ret = 0;
	}
	atomic_store(&r->stop, false);
	r->in_run = outer;
	return ret;
}

int reactor_run_until(struct reactor *r, const bool *flag)
{
	/* A stop is not ours to see (it is for an outer reactor_run()), so it
	 * must not keep passes from waiting: that would spin until *flag. */
	bool outer = r->in_run;
	int ret = 0;

	r->in_run = false;
	while (!*(const volatile bool *)flag) {
		ret = reactor_run_once(r, true);
		if (ret < 0)
			break;
		ret = 0;
	}
	r->in_run = outer;
	return ret;
}

unsigned reactor_pending(struct reactor *r)
{
	return r->ops_inflight + r->nready + r->heap_len;
}

/* ---- buffers ------------------------------------------------------------ */

/* Size class of @size, or -1 if it is not cached. */
static inline int reactor_buf_class(size_t size)
{
	unsigned shift;

	if (size <= ((size_t)1 << REACTOR_BUF_MIN_SHIFT))
		return 0;
	if (size > ((size_t)1 << REACTOR_BUF_MAX_SHIFT))
		return -1;
	shift = 64u - (unsigned)__builtin_clzll((unsigned long long)size - 1);
	return (int)(shift - REACTOR_BUF_MIN_SHIFT);
}

static inline unsigned reactor_buf_class_limit(int c)
{
	size_t bytes = (size_t)1 << (c + (int)REACTOR_BUF_MIN_SHIFT);
	size_t n = REACTOR_BUF_CLASS_BYTES / bytes;

	return (unsigned)MAX((size_t)1, MIN(n, (size_t)REACTOR_BUF_CLASS_MAX));
}

void *reactor_buf_get(struct reactor *r, size_t size, bool zero)
{
	int c = reactor_buf_class(size);
	size_t alloc;
	void *p;

	reactor_assert_thread(r);
	if (likely(c >= 0)) {
		struct reactor_buf *b = r->bufs[c].head;

		if (b) {
			r->bufs[c].head = b->next;
			r->bufs[c].n--;
			if (zero)
				memset(b, 0, size);
			return b;
		}
		alloc = (size_t)1 << (c + (int)REACTOR_BUF_MIN_SHIFT);
	} else {
		if (size > SIZE_MAX - REACTOR_BUF_ALIGN)
			return NULL;
		alloc = ROUND_UP(size, (size_t)REACTOR_BUF_ALIGN);
	}
	if (posix_memalign(&p, REACTOR_BUF_ALIGN, alloc) != 0)
		return NULL;
	if (zero)
		memset(p, 0, size);
	return p;
}

void reactor_buf_put(struct reactor *r, void *buf, size_t size)
{
	int c;

	if (!buf)
		return;
	reactor_assert_thread(r);
	c = reactor_buf_class(size);
	if (c < 0 || r->bufs[c].n >= reactor_buf_class_limit(c)) {
		free(buf);
		return;
	}
	struct reactor_buf *b = buf;

	b->next = r->bufs[c].head;
	r->bufs[c].head = b;
	r->bufs[c].n++;
}

/* ---- per-reactor slots -------------------------------------------------- */

void *reactor_local_get(struct reactor *r, enum reactor_local_slot slot)
{
	assert((unsigned)slot < REACTOR_LOCAL_NR);
	return r->local[slot];
}

void reactor_local_set(struct reactor *r, enum reactor_local_slot slot, void *value,
		       void (*dtor)(void *value))
{
	assert((unsigned)slot < REACTOR_LOCAL_NR);
	r->local[slot] = value;
	r->local_dtor[slot] = dtor;
}

/* ---- lifetime ----------------------------------------------------------- */

static int reactor_ring_init(struct reactor *r, unsigned entries)
{
	static const unsigned flag_sets[] = {
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
			IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
			IORING_SETUP_SINGLE_ISSUER,
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		0,
	};
	const char *basic = getenv("DISKSTACK_URING_BASIC");
	size_t first = 0;

	if ((basic && *basic && strcmp(basic, "0") != 0) || r->valgrind) {
		first = ARRAY_SIZE(flag_sets) - 1;
		r->basic = true;
	}
	int ret = -EINVAL;

	for (size_t i = first; i < ARRAY_SIZE(flag_sets); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = entries * 4;
		ret = io_uring_queue_init_params(entries, &r->ring, &p);
		if (ret != -EINVAL)
			break;
	}
	return ret;
}

int reactor_new(struct reactor **out, unsigned entries)
{
	struct reactor *r;
	int ret;

	if (entries == 0)
		entries = REACTOR_DEFAULT_ENTRIES;
	entries = MIN(entries, REACTOR_MAX_ENTRIES);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->owner = pthread_self();
#ifdef HAVE_VALGRIND_MEMCHECK_H
	r->valgrind = RUNNING_ON_VALGRIND;
#endif
	r->ready_tail = &r->ready_head;
	r->mb_tail = &r->mb_head;
	r->efd = -1;
	r->efd_op.cb = reactor_efd_cb;
	r->cancel_op.cb = reactor_cancel_cb;
	r->quiet_op.cb = reactor_quiet_cb;
	pthread_mutex_init(&r->mb_lock, NULL);
	r->files.max = REACTOR_FILES;
	r->bgids.max = REACTOR_BUFRINGS;
	r->heap_cap = REACTOR_TIMERS_INITIAL;
	r->heap = malloc(r->heap_cap * sizeof(*r->heap));
	if (!r->heap) {
		ret = -ENOMEM;
		goto fail_heap;
	}
	r->efd = eventfd(0, EFD_CLOEXEC);
	if (r->efd < 0) {
		ret = -errno;
		goto fail_efd;
	}
	ret = reactor_ring_init(r, entries);
	if (ret < 0)
		goto fail_ring;
	/* A registered ring fd spares every io_uring_enter the lookup of the
	 * ring's file (kernel 5.18; a thread may register 16). The index
	 * belongs to this thread, which is the only one that enters this
	 * ring; without it liburing uses the plain fd. */
	if (!r->basic)
		(void)io_uring_register_ring_fd(&r->ring);
	/* The plain ring (valgrind, the fallback test) keeps to syscalls
	 * for reactor_write_quiet's callers too. */
	r->can_skip = !r->basic && (r->ring.features & IORING_FEAT_CQE_SKIP);
	reactor_efd_arm(r);
	ret = reactor_submit(r);
	if (ret < 0) {
		io_uring_queue_exit(&r->ring);
		goto fail_ring;
	}
	reactor_tls = r;
	*out = r;
	return 0;

fail_ring:
	close(r->efd);
fail_efd:
	free(r->heap);
fail_heap:
	pthread_mutex_destroy(&r->mb_lock);
	free(r);
	return ret;
}

/* Cancels the armed eventfd read and waits for it, so the kernel never
 * writes into r->efd_val after the reactor is gone. */
static void reactor_efd_disarm(struct reactor *r)
{
	struct io_uring_sqe *sqe;

	r->closing = true;
	if (!r->efd_armed)
		return;
	sqe = reactor_get_sqe_internal(r);
	io_uring_prep_cancel(sqe, &r->efd_op, 0);
	io_uring_sqe_set_data(sqe, &r->cancel_op);
	if (reactor_submit(r) < 0)
		return;
	for (unsigned tries = 0; r->efd_armed && tries < 1000; tries++) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 10000000 };
		struct io_uring_cqe *cqe;

		(void)io_uring_wait_cqe_timeout(&r->ring, &cqe, &ts);
		reactor_stash_cqes(r);
		/* Only internal completions are expected here; user ops
		 * must have completed (contract), but run them anyway. */
		reactor_run_stash(r);
	}
}

void reactor_free(struct reactor *r)
{
	if (!r)
		return;
	reactor_assert_thread(r);
	if (reactor_pending(r))
		log_debug("reactor: freed with %u ops, %u tasks, %u timers pending",
			  r->ops_inflight, r->nready, r->heap_len);
	for (unsigned i = 0; i < REACTOR_LOCAL_NR; i++) {
		if (r->local_dtor[i] && r->local[i])
			r->local_dtor[i](r->local[i]);
		r->local[i] = NULL;
		r->local_dtor[i] = NULL;
	}
	reactor_efd_disarm(r);
	io_uring_queue_exit(&r->ring);
	/* Wait for posters still inside reactor_post()/reactor_stop(). */
	pthread_mutex_lock(&r->mb_lock);
	if (r->mb_head)
		log_debug("reactor: freed with posted tasks that never ran");
	pthread_mutex_unlock(&r->mb_lock);
	close(r->efd);
	for (unsigned c = 0; c < REACTOR_BUF_CLASSES; c++) {
		struct reactor_buf *b = r->bufs[c].head;

		while (b) {
			struct reactor_buf *next = b->next;

			free(b);
			b = next;
		}
	}
	free(r->heap);
	free(r->stash);
	free(r->files.free);
	free(r->bgids.free);
	pthread_mutex_destroy(&r->mb_lock);
	if (reactor_tls == r)
		reactor_tls = NULL;
	free(r);
}

/* ---- fixed files and provided buffers ------------------------------------ */

uint32_t reactor_cqe_flags(const struct reactor *r)
{
	return r->cqe_flags;
}

/* An id from @p, or -1 when all are taken (or out of memory). */
static int reactor_id_get(struct reactor_ids *p)
{
	if (p->nfree > 0)
		return (int)p->free[--p->nfree];
	if (p->next >= p->max)
		return -1;
	if (!p->free) {
		p->free = malloc(p->max * sizeof(*p->free));
		if (!p->free)
			return -1;
	}
	return (int)p->next++;
}

static void reactor_id_put(struct reactor_ids *p, unsigned id)
{
	assert(id < p->next && p->nfree < p->max);
	p->free[p->nfree++] = id;
}

int reactor_file_add(struct reactor *r, int fd)
{
	int idx, ret;

	reactor_assert_thread(r);
	if (r->files_state == 0) {
		/* Sparse tables: kernel 5.19. On the plain ring (valgrind
		 * does not know these register calls) the fds are used. */
		ret = r->basic ? -ENOTSUP
				  : io_uring_register_files_sparse(&r->ring, REACTOR_FILES);
		r->files_state = ret < 0 ? ret : 1;
	}
	if (r->files_state < 0)
		return -ENOTSUP;
	idx = reactor_id_get(&r->files);
	if (idx < 0)
		return -ENFILE;
	ret = io_uring_register_files_update(&r->ring, (unsigned)idx, &fd, 1);
	if (ret != 1) {
		reactor_id_put(&r->files, (unsigned)idx);
		return ret < 0 ? ret : -EIO;
	}
	return idx;
}

void reactor_file_remove(struct reactor *r, int idx)
{
	int none = -1;

	reactor_assert_thread(r);
	if (idx < 0)
		return;
	/* The kernel drops the slot's file once the ops using it are done. */
	if (io_uring_register_files_update(&r->ring, (unsigned)idx, &none, 1) != 1) {
		log_debug("reactor: cannot clear fixed file %d: kept out of use", idx);
		return;
	}
	reactor_id_put(&r->files, (unsigned)idx);
}

int reactor_bufring_new(struct reactor *r, unsigned count, size_t size,
			struct reactor_bufring **out)
{
	struct reactor_bufring *b;
	struct io_uring_buf_reg reg;
	int gid, ret;

	reactor_assert_thread(r);
	assert(count > 0 && count <= 32768 && (count & (count - 1)) == 0 && size > 0);
	if (r->basic)
		return -ENOTSUP;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->count = count;
	b->size = size;
	b->br_bytes = ROUND_UP(count * sizeof(struct io_uring_buf), (size_t)4096);
	b->br = mmap(NULL, b->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	if (b->br == MAP_FAILED) {
		free(b);
		return -ENOMEM;
	}
	if (posix_memalign((void **)&b->mem, REACTOR_BUF_ALIGN, count * size) != 0) {
		ret = -ENOMEM;
		goto fail;
	}
	gid = reactor_id_get(&r->bgids);
	if (gid < 0) {
		ret = -ENOSPC;
		goto fail;
	}
	b->gid = (unsigned)gid;
	io_uring_buf_ring_init(b->br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uintptr_t)b->br;
	reg.ring_entries = count;
	reg.bgid = (uint16_t)b->gid;
	ret = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (ret < 0) {
		reactor_id_put(&r->bgids, b->gid);
		goto fail;
	}
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(b->br, b->mem + (size_t)i * size, (unsigned)size,
				      (unsigned short)i, io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(b->br, (int)count);
	*out = b;
	return 0;

fail:
	free(b->mem);
	munmap(b->br, b->br_bytes);
	free(b);
	return ret;
}

void reactor_bufring_free(struct reactor *r, struct reactor_bufring *b)
{
	if (!b)
		return;
	reactor_assert_thread(r);
	if (io_uring_unregister_buf_ring(&r->ring, (int)b->gid) == 0)
		reactor_id_put(&r->bgids, b->gid);
	else
		log_debug("reactor: cannot unregister buffer group %u: kept out of use", b->gid);
	free(b->mem);
	munmap(b->br, b->br_bytes);
	free(b);
}

unsigned reactor_bufring_gid(const struct reactor_bufring *b)
{
	return b->gid;
}

void *reactor_bufring_data(const struct reactor_bufring *b, unsigned bid)
{
	assert(bid < b->count);
	return b->mem + (size_t)bid * b->size;
}

void reactor_bufring_recycle(struct reactor_bufring *b, unsigned bid)
{
	assert(bid < b->count);
	io_uring_buf_ring_add(b->br, b->mem + (size_t)bid * b->size, (unsigned)b->size,
			      (unsigned short)bid, io_uring_buf_ring_mask(b->count), 0);
	io_uring_buf_ring_advance(b->br, 1);
}
