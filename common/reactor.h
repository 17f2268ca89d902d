/* SPDX-License-Identifier: MIT */
/*
 * reactor.h: the per-thread event loop.
 *
 * A reactor owns one io_uring, a ready list of deferred callbacks, a timer
 * heap, a cross-thread mailbox and per-thread caches (aligned buffers and
 * per-module objects). Exactly one thread uses a reactor: the thread that
 * created it ("its thread"). Every function here must be called on that
 * thread, except reactor_post() and reactor_stop(), which any thread may call.
 *
 * Completion model: io_uring SQEs carry a pointer to a struct reactor_op in
 * user_data; when the CQE arrives, op->cb(op, cqe->res) runs on the reactor's
 * thread. Deferred tasks (reactor_defer) run in FIFO order on the next pass of
 * the loop, never inside the call that deferred them. Posted tasks
 * (reactor_post) are moved to the ready list by the reactor's thread.
 *
 * Rules for SQEs: every SQE taken with reactor_get_sqe() must produce exactly
 * one final CQE whose user_data is a struct reactor_op (a multishot op counts
 * once: CQEs flagged IORING_CQE_F_MORE are delivered but not counted). Do not
 * use IOSQE_CQE_SKIP_SUCCESS (reactor_write_quiet queues SQEs that
 * have it). reactor_pending() relies on this.
 *
 * Valgrind: memcheck does not know that the kernel wrote a buffer through
 * io_uring. A backend must call reactor_mark_defined() (or
 * reactor_mark_iov_defined()) on the bytes a successful read returned,
 * before handing them on; outside valgrind these calls cost nothing.
 */
#ifndef DISKSTACK_COMMON_REACTOR_H
#define DISKSTACK_COMMON_REACTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <liburing.h>

struct reactor;

/* A deferred callback. Intrusive: embed it in the object it belongs to. */
struct reactor_task {
	struct reactor_task *next;              /* private to the reactor */
	void (*fn)(struct reactor_task *task);  /* runs on the reactor's thread */
};

/* An io_uring operation. Put its address in the SQE's user_data
 * (reactor_sqe_set_op). @cb receives cqe->res. */
struct reactor_op {
	void (*cb)(struct reactor_op *op, int res);
};

/* A one-shot timer. Embed it; @fn runs on the reactor's thread. */
struct reactor_timer {
	uint64_t deadline_ns;                    /* CLOCK_MONOTONIC */
	void (*fn)(struct reactor_timer *t);
	unsigned heap_index;                     /* private; 0 = not armed */
};

/* Creates a reactor with @entries submission slots (0 = default 256) bound
 * to the calling thread, and makes it the thread's current reactor.
 * Returns 0 or -errno (-ENOSYS when io_uring is unavailable). */
int reactor_new(struct reactor **out, unsigned entries);

/* Frees a reactor. Pending ops must have completed. NULL is allowed. Clears
 * the thread's current reactor if it was this one. */
void reactor_free(struct reactor *r);

/* The calling thread's reactor, or NULL. */
struct reactor *reactor_current(void);

/* Monotonic clock in nanoseconds. */
uint64_t reactor_now_ns(void);

/* Returns a zeroed SQE from the reactor's ring, submitting queued SQEs first
 * if the ring is full. Never NULL: if the kernel cannot take more, the loop
 * reaps completions until a slot frees up (their callbacks run on the next
 * pass, never inside this call). The SQE is submitted on the next pass of
 * the loop (or by reactor_flush). Each call counts as one pending op until
 * its final CQE is reaped (see the rules above). */
struct io_uring_sqe *reactor_get_sqe(struct reactor *r);

/* Queues a write of @len bytes from @buf to @fd that nobody waits for (an
 * eventfd signal, say): an SQE flagged IOSQE_CQE_SKIP_SUCCESS, whose
 * success posts no CQE, so it neither wakes a waiting reactor nor counts
 * in reactor_pending(); a failure is logged (debug). It is submitted like
 * any other SQE (with the next wait at the latest). The SQE holds the fd
 * number, not the file: the kernel looks it up when it takes the SQE, so
 * whoever closes @fd (or dup2s over it) must reactor_flush() first, on
 * this reactor's thread, or the write lands in whatever file gets the
 * number next (test_reactor_write_quiet_fd_reuse). @buf must stay valid for
 * good (a static constant). Returns 0, or -ENOTSUP when the kernel cannot
 * skip completions (before 5.17) or the ring is plain (valgrind,
 * DISKSTACK_URING_BASIC=1): the caller then writes with a syscall. */
int reactor_write_quiet(struct reactor *r, int fd, const void *buf, unsigned len);

/* Attaches @op to @sqe. */
static inline void reactor_sqe_set_op(struct io_uring_sqe *sqe, struct reactor_op *op)
{
	io_uring_sqe_set_data(sqe, op);
}

/* Submits every queued SQE now: when it returns 0 or more, the kernel
 * has taken them all, and has looked up the plain fds they name (it
 * does so while it takes an SQE that is not linked, drained or flagged
 * IOSQE_ASYNC, as none of ours are), so closing such an fd afterwards
 * cannot redirect them. Returns the number submitted or -errno. */
int reactor_flush(struct reactor *r);

/* Runs @task on a later pass of the loop. */
void reactor_defer(struct reactor *r, struct reactor_task *task);

/* Runs @task on @r's thread. Thread-safe; may be called from any thread,
 * including threads without a reactor. Cheap: a mutex and, at most once
 * per pass of the reactor, a write(2) to its eventfd. Once the task has run,
 * the poster no longer touches @r (so the task may lead to reactor_free). */
void reactor_post(struct reactor *r, struct reactor_task *task);

/* Arms @t to fire @delay_ns from now. Re-arming an armed timer moves it. */
void reactor_timer_start(struct reactor *r, struct reactor_timer *t, uint64_t delay_ns);
/* Disarms @t; harmless if not armed. */
void reactor_timer_cancel(struct reactor *r, struct reactor_timer *t);

/* Runs one pass: submits queued SQEs, then runs completions, fired timers,
 * posted and deferred tasks (tasks deferred during the pass wait for the next
 * one). If @wait and the pass ran nothing and nothing is ready, blocks until
 * a completion, a post or the first timer deadline (not when called by
 * reactor_run() with a stop pending). Makes no syscall when no SQE is
 * queued and the kernel has nothing to deliver. If @wait and the pass has
 * only tasks to run (no completion), its queued SQEs may be held for the
 * next pass, for a few passes at most, so that they go in together with
 * what the tasks queue and with the wait; SQEs are always submitted before
 * the reactor blocks, and reactor_flush submits them at once. Returns the
 * number of callbacks run or -errno. */
int reactor_run_once(struct reactor *r, bool wait);

/* Runs passes until reactor_stop() is called. The stop request is consumed
 * when this returns (a stop made while not in reactor_run() makes the next
 * call return at once). Returns 0 or -errno. */
int reactor_run(struct reactor *r);

/* Runs passes until *@flag becomes true (set by a callback on this thread).
 * The tool for synchronous callers (tests, the command line). */
int reactor_run_until(struct reactor *r, const bool *flag);

/* Asks reactor_run() to return. Thread-safe. */
void reactor_stop(struct reactor *r);

/* Number of io_uring operations, deferred tasks and armed timers that have
 * not completed yet (posted tasks not counted). */
unsigned reactor_pending(struct reactor *r);

/* Per-reactor buffer cache: returns a buffer of at least @size bytes aligned
 * to 4096, whose first @size bytes are zeroed if @zero (otherwise the contents
 * are undefined). Buffers are cached by power-of-two size class (512 B to
 * 64 MiB; larger sizes are allocated and freed each time) with a bounded
 * number kept per class, so steady-state I/O does not allocate. NULL on
 * allocation failure (or @size too large). Owned by the caller until put. */
void *reactor_buf_get(struct reactor *r, size_t size, bool zero);
/* Returns a buffer from reactor_buf_get() of the same @size. NULL allowed. */
void reactor_buf_put(struct reactor *r, void *buf, size_t size);

/* Tells valgrind's memcheck that [@p, @p + @len) is defined (the kernel
 * filled it through io_uring). No-op when not built with valgrind support or
 * not running under valgrind. Any thread. */
void reactor_mark_defined(const void *p, size_t len);
/* Same for the first @len bytes of an iovec list (e.g. a read's cqe->res). */
void reactor_mark_iov_defined(const struct iovec *iov, int iovcnt, size_t len);

/* Per-reactor slots for modules that keep per-thread caches. */
enum reactor_local_slot {
	REACTOR_LOCAL_DISK = 0,    /* storage/disk.c: child request cache */
	REACTOR_LOCAL_CRYPT,       /* decorators */
	REACTOR_LOCAL_USER1,
	REACTOR_LOCAL_USER2,
	REACTOR_LOCAL_SQLITE,      /* storage/layers/sqlitelayer.c: its contexts on this reactor */
	REACTOR_LOCAL_NR
};
/* Returns the slot's value (NULL until set). */
void *reactor_local_get(struct reactor *r, enum reactor_local_slot slot);
/* Sets the slot's value and the destructor run by reactor_free() (@dtor may
 * be NULL). Destructors run first in reactor_free(), in slot order, while
 * the reactor still works (they may call reactor_buf_put()). */
void reactor_local_set(struct reactor *r, enum reactor_local_slot slot, void *value,
		       void (*dtor)(void *value));

/* ---- fixed files and provided buffers (optional kernel features) ---------- */

/* The flags of the CQE whose callback is running (IORING_CQE_F_MORE of a
 * multishot op, IORING_CQE_F_BUFFER and the buffer id in the upper 16
 * bits). Only meaningful inside an op's callback. */
uint32_t reactor_cqe_flags(const struct reactor *r);

/* Installs @fd (borrowed: the caller still closes it, after
 * reactor_file_remove) in the ring's table of fixed files, so ops name it
 * by index with IOSQE_FIXED_FILE and the kernel looks nothing up per op.
 * Returns the index (>= 0) or -errno: -ENOTSUP when the kernel has no
 * sparse file table (before 5.19) or the ring is plain (valgrind,
 * DISKSTACK_URING_BASIC=1), -ENFILE when the table is full. The caller
 * then uses @fd as before. */
int reactor_file_add(struct reactor *r, int fd);
/* Frees index @idx (< 0: no-op). Ops still in flight on it keep the file
 * until they complete. */
void reactor_file_remove(struct reactor *r, int idx);

/* A ring of @count (a power of two) buffers of @size bytes that the kernel
 * picks from for ops flagged IOSQE_BUFFER_SELECT with its group id
 * (io_uring_register_buf_ring, kernel 5.19). All buffers start in the
 * ring; a completion names the one it filled (reactor_cqe_flags), which
 * is the caller's until reactor_bufring_recycle. Returns 0 or -errno
 * (-ENOTSUP on the plain ring: valgrind or DISKSTACK_URING_BASIC=1, or
 * what the kernel says). */
struct reactor_bufring;
int reactor_bufring_new(struct reactor *r, unsigned count, size_t size,
			struct reactor_bufring **out);
/* Unregisters and frees @b (NULL allowed). No op may still use it. */
void reactor_bufring_free(struct reactor *r, struct reactor_bufring *b);
/* The group id for io_uring sqe->buf_group. */
unsigned reactor_bufring_gid(const struct reactor_bufring *b);
/* Buffer @bid's memory. */
void *reactor_bufring_data(const struct reactor_bufring *b, unsigned bid);
/* Gives buffer @bid back to the kernel (in any order). */
void reactor_bufring_recycle(struct reactor_bufring *b, unsigned bid);

#endif
