/* SPDX-License-Identifier: MIT */
/*
 * nbdclient.c: a remote NBD export as a disk, through libnbd's
 * asynchronous API (nbd:<uri>).
 *
 * Notes on the design
 * -------------------
 * - Connections. A disk owns up to max_conns libnbd handles (struct
 *   nbdc_conn): one unless the server offers multi-conn (then several
 *   connections see each other's writes, and a flush on one covers them
 *   all), else up to opts.max_connections, one per reactor that uses the
 *   disk. The first connection is made by nbdclient_open (blocking, so
 *   open can report errors and learn the export's properties); the others
 *   are made on demand by nbd_connect_uri on the worker pool (it blocks on
 *   DNS, TCP and the handshake).
 * - Ownership. A connection is driven by one reactor at a time, its owner
 *   (an atomic pointer), and only while it has work: commands in flight,
 *   requests waiting for it to connect, or armed polls. Its requests are
 *   always requests submitted on that reactor, so they never change thread:
 *   the owner issues libnbd commands (nbd_aio_*), polls the socket with
 *   io_uring POLL_ADD (one for POLLIN while replies are due, one for POLLOUT
 *   while libnbd has output queued), calls nbd_aio_notify_read/write on
 *   readiness, and completes requests from the libnbd completion callbacks
 *   (deferred with reactor_defer: a callback runs with the handle's lock
 *   held and must not re-enter libnbd). When the connection has nothing
 *   left it is released: its owner becomes NULL, or, if requests of other
 *   reactors are waiting, the first waiter's reactor, which is handed its
 *   waiting requests through a posted task. So no reactor is ever left
 *   with an armed op, and a reactor that goes away owns nothing.
 * - Claiming (on a request's reactor): a connection it already owns; else
 *   an idle one (compare-and-swap of NULL to itself); else, with multi-conn
 *   and room, a new one; else the request joins the disk's waiters (FIFO,
 *   under @lock). While anyone waits, an owner stops taking new requests on
 *   its connection and queues them too, so a busy reactor cannot starve the
 *   others on a single connection. Release and the waiters list are under
 *   @lock, so a release never misses a waiter.
 * - Requests: reads and writes are split at the server's maximum payload
 *   (default 32 MiB) into several commands; trim, zero and cache at 1 GiB.
 *   A scatter list with more than one segment goes through one bounce
 *   buffer from the reactor's cache (a command takes one buffer). The
 *   request's pending count has a bias of one while commands are issued, so
 *   an early reply cannot finish it halfway.
 * - Read coverage: libnbd checks that each chunk of a read reply lies in
 *   its command, not that the chunks tile it (nbd_pread_structured(3)),
 *   but the NBD protocol requires exactly that: chunks must not overlap
 *   and must cover the whole request, in any order. A read keeps the
 *   byte ranges its chunks covered, merged as they arrive, in a list from
 *   the reactor's buffer cache (struct nbdc_cover) with room for one range
 *   per command plus NBDC_COVER_SLACK, enough for a server that sends each
 *   reply's chunks in order whatever order it answers the commands in; a
 *   chunk that overlaps, or a reply that fragments beyond the list, fails
 *   the read with EIO, and so does success with a gap.
 * - Errors: remote errors go through nbdclient_status_of_errno (one table,
 *   unit-tested). A connection that dies (libnbd's DEAD or CLOSED state)
 *   fails its commands with IO_ERROR (ENOTCONN): libnbd calls their
 *   callbacks as it dies. Armed polls are cancelled (POLL_REMOVE), the
 *   handle is closed, and the next request reconnects. Reconnect attempts
 *   that fail are spaced by a doubling delay (reconnect_delay_ms up to
 *   reconnect_max_ms); requests that arrive in between fail at once with
 *   ENOTCONN. After reconnect_attempts consecutive failures, or if the
 *   export changed (size, read-only flag, block size), the disk gives up for
 *   good: every later request fails with ENOTCONN and one error is logged.
 * - Metadata from the first connection: sector size = the server's minimum
 *   block size when it is a power of two above 512 (else 512), physical =
 *   the preferred block size; FUA, trim (UNSPECIFIED, else IGNORED),
 *   write-zeroes (FAST_ZERO when offered), flush (VOLATILE_CACHE), cache,
 *   base:allocation block status and multi-conn (COHERENT) as the server
 *   advertises them; read-only when the server or the caller says so.
 * - Durability is the server's: a completed FLUSH or FUA write is as
 *   durable as the server makes it.
 * - Locking: @lock protects conns[] growth, the waiters list and the
 *   reconnect policy (failures, retry_at_ns, given_up). Everything in a
 *   connection except @owner belongs to its owner.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libnbd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "common/workpool.h"
#include "storage/backends/nbdclient.h"
#include "storage/kind.h"
#include "storage/backends/url.h"

#define NBDC_MAX_CONNS 64
#define NBDC_DEFAULT_PAYLOAD (32u << 20)  /* NBD's customary maximum */
#define NBDC_MAX_RANGE (1ull << 30)        /* trim/zero/cache per command */
#define NBDC_MAX_BS_BYTES (1ull << 31)     /* block status per request */
#define NBDC_MAX_SECTOR 65536u
#define NBDC_COVER_SLACK 15u               /* ranges beyond one per command */

enum nbdc_state {
	NBDC_DOWN = 0,      /* no handle: connect on demand */
	NBDC_CONNECTING,    /* nbd_connect_uri running on the worker pool */
	NBDC_UP,            /* handle ready for commands */
};

struct nbdc;

struct nbdc_conn {
	struct nbdc *n;
	unsigned index;
	/* The reactor driving it; NULL when idle. Written under n->lock (or
	 * by a compare-and-swap from NULL); read without. */
	_Atomic(struct reactor *) owner;

	/* Owner's state. */
	enum nbdc_state state;
	struct nbd_handle *h;
	unsigned inflight;                 /* commands not yet called back */
	bool rpoll, wpoll;                 /* POLL_ADD armed for POLLIN / POLLOUT */
	unsigned cancels;                  /* POLL_REMOVE in flight */
	bool handover_pending;             /* @handover posted, not yet run */
	bool issuing;                      /* inside an nbd_aio_* command call */
	bool unretired;                    /* callbacks ran while issuing */
	struct reactor_op rpoll_op, wpoll_op, cancel_op;
	struct disk_io *waitq_head, *waitq_tail;   /* waiting for the connect */
	struct work_item connect;
	struct nbd_handle *connect_h;      /* pool -> owner */
	int connect_err;
	char connect_msg[256];
	struct reactor_task handover;
	struct disk_io *handover_head;     /* requests handed over with it */
};

struct nbdc {
	char *uri;                         /* owned */
	char *uri_shown;                   /* owned, redacted */
	struct nbdclient_opts o;
	bool read_only;                    /* reported, and enforced here */
	bool export_ro;
	bool can_flush, can_fua, can_trim, can_zero, can_fast_zero, can_cache;
	bool can_multi_conn, base_alloc;
	uint64_t size_bytes;
	uint32_t shift;
	uint32_t min_block, pref_block;
	uint32_t max_payload;              /* bytes per read/write command */
	uint64_t sector_count;
	unsigned max_conns;

	/* lock protects conns[] growth, the waiters list, and failures,
	 * retry_at_ns and given_up. */
	pthread_mutex_t lock;
	struct nbdc_conn *conns[NBDC_MAX_CONNS];
	_Atomic unsigned nconns;
	struct disk_io *waiters_head, *waiters_tail;
	_Atomic unsigned nwaiters;
	unsigned failures;                 /* consecutive failed connects */
	uint64_t retry_at_ns;              /* no connect attempt before */
	_Atomic bool given_up;
	_Atomic uint64_t connects;         /* successful (re)connects, for info */
};

/* Per-request state, in io->hctx. */
struct nbdc_req {
	struct disk_io *next;              /* waiters / waitq / handover link */
	struct nbdc_conn *c;               /* where its commands went */
	union {
		void *bounce;              /* READ/WRITE with several segments */
		bool bs_seen;              /* BLOCK_STATUS: the reply was taken */
	} u;
	uint32_t pending;                  /* commands not called back (+1 while issuing) */
	int status;
	int err;
	struct nbdc_cover *cover;          /* READ: owned, from the reactor's cache */
};

/* The byte ranges of the export a read's chunks covered: sorted, disjoint,
 * not adjacent (adjacent ones are merged). */
struct nbdc_cover {
	uint32_t nr, max;
	bool bad;                          /* a chunk overlapped, or no room */
	struct nbdc_range {
		uint64_t start, end;
	} r[];
};

_Static_assert(sizeof(struct nbdc_req) <= sizeof(((struct disk_io *)0)->hctx),
	       "nbdc_req must fit in disk_io.hctx");

static struct nbdc_req *req_of(struct disk_io *io)
{
	return (struct nbdc_req *)(void *)io->hctx;
}

void nbdclient_opts_default(struct nbdclient_opts *o)
{
	*o = (struct nbdclient_opts){
		.max_connections = 16,
		.reconnect_delay_ms = 100,
		.reconnect_max_ms = 10000,
		.reconnect_attempts = 10,
	};
}

/* ---- tables -------------------------------------------------------------------- */

int nbdclient_status_of_errno(int err)
{
	switch (err) {
	case 0:
		return DISK_OK;
	case EPERM:
	case EROFS:
		return DISK_READ_ONLY;
	case ENOSPC:
	case EINVAL:
		return DISK_ILLEGAL_BLOCK;
	case EOVERFLOW:
		return DISK_INVALID_INPUT;
	case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
	case EOPNOTSUPP:
#endif
		return DISK_UNSUPPORTED;
	default:
		return DISK_IO_ERROR;
	}
}

static void nbdc_extent_emit(struct nbdclient_extent_acc *a, uint64_t sectors, uint32_t flags)
{
	if (a->done >= a->want || sectors == 0)
		return;
	sectors = MIN(sectors, a->want - a->done);
	if (a->nr > 0 && a->ext[a->nr - 1].flags == flags) {
		a->ext[a->nr - 1].count += sectors;
	} else {
		if (a->nr == a->max) {
			a->want = a->done;          /* full: stop here */
			return;
		}
		a->ext[a->nr].count = sectors;
		a->ext[a->nr].flags = flags;
		a->ext[a->nr].layer = -1;
		a->nr++;
	}
	a->done += sectors;
}

void nbdclient_extent_add(struct nbdclient_extent_acc *a, uint64_t bytes, uint32_t flags)
{
	uint32_t sector = 1u << a->shift;

	if (a->partial_bytes) {
		uint64_t take = MIN(bytes, (uint64_t)(sector - a->partial_bytes));

		a->partial_flags &= flags;
		a->partial_bytes += (uint32_t)take;
		bytes -= take;
		if (a->partial_bytes < sector)
			return;
		nbdc_extent_emit(a, 1, a->partial_flags);
		a->partial_bytes = 0;
	}
	nbdc_extent_emit(a, bytes >> a->shift, flags);
	if (bytes & (sector - 1)) {
		a->partial_bytes = (uint32_t)(bytes & (sector - 1));
		a->partial_flags = flags;
	}
}

/* ---- connecting ------------------------------------------------------------- */

/* Connects @h (blocking): to @n's URI, or over the socket the test hook
 * opts.connect_fd makes. Returns 0, or -1 with libnbd's error set or, when
 * the hook failed, its errno in *@hook_err. */
static int nbdc_connect_to(const struct nbdc *n, struct nbd_handle *h, int *hook_err)
{
	int fd;

	*hook_err = 0;
	if (!n->o.connect_fd)
		return nbd_connect_uri(h, n->uri);
	fd = n->o.connect_fd(n->o.connect_opaque);
	if (fd < 0) {
		*hook_err = -fd;
		return -1;
	}
	if (nbd_connect_socket(h, fd) < 0) {
		/* The socket is the handle's once it left the created
		 * state (nbd_connect_socket(3)); else still ours. */
		if (nbd_aio_is_created(h))
			close(fd);
		return -1;
	}
	return 0;
}

/* Creates a handle and connects it (blocking). Returns NULL with an errno
 * in *@err and a message in @msg. */
static struct nbd_handle *nbdc_connect_handle(const struct nbdc *n, int *err, char *msg,
					      size_t msglen)
{
	struct nbd_handle *h = nbd_create();
	int hook_err;

	if (!h) {
		*err = ENOMEM;
		snprintf(msg, msglen, "%s", nbd_get_error() ? nbd_get_error() : "out of memory");
		return NULL;
	}
	nbd_set_handle_name(h, PACKAGE_NAME);
	/* A URI from the command line may name local TLS files. */
	nbd_set_uri_allow_local_file(h, true);
	nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	/* Keep libnbd's zeroing of read buffers (its default): a server may
	 * claim success for a read while its chunks overlap and leave part
	 * of the buffer unwritten, which libnbd does not check
	 * (nbd_pread_structured(3)); the caller would get whatever the
	 * buffer held before, data of other requests included. */
#ifdef LIBNBD_HAVE_NBD_SET_PREAD_INITIALIZE
	nbd_set_pread_initialize(h, true);
#endif
	if (nbdc_connect_to(n, h, &hook_err) < 0) {
		*err = hook_err ? hook_err : nbd_get_errno() ? nbd_get_errno() : EIO;
		if (hook_err)
			snprintf(msg, msglen, "connect: %s", strerror(hook_err));
		else
			snprintf(msg, msglen, "%s", nbd_get_error() ? nbd_get_error() : strerror(*err));
		nbd_close(h);
		return NULL;
	}
	return h;
}

static uint32_t nbdc_block_size(struct nbd_handle *h, int which)
{
#ifdef LIBNBD_HAVE_NBD_GET_BLOCK_SIZE
	int64_t v = nbd_get_block_size(h, which);

	return v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
#else
	(void)h;
	(void)which;
	return 0;
#endif
}

/* Checks that a new connection shows the export as the first one did.
 * Returns 0 or -ESTALE with a message. */
static int nbdc_check_same(const struct nbdc *n, struct nbd_handle *h, char *msg, size_t msglen)
{
	int64_t size = nbd_get_size(h);
	bool ro = nbd_is_read_only(h) == 1;

	if (size < 0 || (uint64_t)size != n->size_bytes) {
		snprintf(msg, msglen, "the export changed: size %" PRIu64 ", now %" PRId64,
			 n->size_bytes, size);
		return -ESTALE;
	}
	if (ro != n->export_ro) {
		snprintf(msg, msglen, "the export changed: it is %s now", ro ? "read-only" : "writable");
		return -ESTALE;
	}
	if (nbdc_block_size(h, LIBNBD_SIZE_MINIMUM) != n->min_block) {
		snprintf(msg, msglen, "the export changed: its minimum block size");
		return -ESTALE;
	}
	return 0;
}

/* ---- read coverage ---------------------------------------------------------- */

static size_t nbdc_cover_bytes(uint32_t max)
{
	return sizeof(struct nbdc_cover) + (size_t)max * sizeof(struct nbdc_range);
}

/* Adds the chunk [@offset, @offset + @count) to @v, or marks @v bad if it
 * overlaps a range already there or there is no room for a new range. */
static void nbdc_cover_add(struct nbdc_cover *v, uint64_t offset, uint64_t count)
{
	uint64_t end;
	uint32_t lo = 0, hi = v->nr;

	if (count == 0 || v->bad)
		return;                             /* libnbd passes empty chunks on */
	if (__builtin_add_overflow(offset, count, &end)) {
		v->bad = true;
		return;
	}
	while (lo < hi) {                           /* the first range ending past offset */
		uint32_t mid = lo + (hi - lo) / 2;

		if (v->r[mid].end > offset)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo < v->nr && v->r[lo].start < end) {
		v->bad = true;                      /* overlaps v->r[lo] */
		return;
	}
	bool left = lo > 0 && v->r[lo - 1].end == offset;
	bool right = lo < v->nr && v->r[lo].start == end;

	if (left && right) {
		v->r[lo - 1].end = v->r[lo].end;
		memmove(&v->r[lo], &v->r[lo + 1], (v->nr - lo - 1) * sizeof(v->r[0]));
		v->nr--;
	} else if (left) {
		v->r[lo - 1].end = end;
	} else if (right) {
		v->r[lo].start = offset;
	} else if (v->nr == v->max) {
		v->bad = true;                      /* too fragmented to check: fail safe */
	} else {
		memmove(&v->r[lo + 1], &v->r[lo], (v->nr - lo) * sizeof(v->r[0]));
		v->r[lo] = (struct nbdc_range){ offset, end };
		v->nr++;
	}
}

/* Whether @v covers [@offset, @offset + @len) exactly once. */
static bool nbdc_cover_whole(const struct nbdc_cover *v, uint64_t offset, uint64_t len)
{
	return v && !v->bad && v->nr == 1 && v->r[0].start == offset &&
	       v->r[0].end - v->r[0].start == len;
}

/* ---- completion --------------------------------------------------------------- */

/* Ends @io (on its reactor, from a later pass of the loop). */
static void nbdc_req_finish(struct disk_io *io)
{
	struct nbdc_req *rq = req_of(io);

	if (io->op == DISK_OP_READ && rq->status == DISK_OK &&
	    !nbdc_cover_whole(rq->cover, io->sector << rq->c->n->shift,
			      io->count << rq->c->n->shift)) {
		/* Success without exactly one chunk for every byte: the NBD
		 * protocol forbids it (chunks MUST NOT overlap and MUST
		 * cover the entire region); some bytes would read as zero. */
		log_error("nbd %s: the reply to a read at byte %" PRIu64 ", %" PRIu64
			  " bytes, has overlapping chunks or does not cover it",
			  rq->c->n->uri_shown, io->sector << rq->c->n->shift,
			  io->count << rq->c->n->shift);
		rq->status = DISK_IO_ERROR;
		rq->err = EIO;
	}
	if (io->op == DISK_OP_READ && rq->cover) {
		reactor_buf_put(io->reactor, rq->cover, nbdc_cover_bytes(rq->cover->max));
		rq->cover = NULL;
	}
	if ((io->op == DISK_OP_READ || io->op == DISK_OP_WRITE) && rq->u.bounce) {
		size_t len = (size_t)(io->count << rq->c->n->shift);

		if (io->op == DISK_OP_READ && rq->status == DISK_OK)
			iov_from_buf(io->iov, io->iovcnt, 0, rq->u.bounce, len);
		reactor_buf_put(io->reactor, rq->u.bounce, len);
		rq->u.bounce = NULL;
	}
	if (io->op == DISK_OP_BLOCK_STATUS && rq->status == DISK_OK && io->u.bs.nr == 0) {
		/* No usable reply, or one that did not cover a whole
		 * sector: the first one is data, the answer that is always
		 * safe. */
		io->u.bs.extents[0] = (struct disk_extent){ .count = 1, .layer = -1 };
		io->u.bs.nr = 1;
	}
	disk_io_complete_later(io, rq->status, rq->err, false);
}

/* Fails @io that never reached the server. */
static void nbdc_req_fail(struct disk_io *io, int status, int err)
{
	struct nbdc_req *rq = req_of(io);

	rq->status = status;
	rq->err = err;
	rq->u.bounce = NULL;
	rq->cover = NULL;
	nbdc_req_finish(io);
}

static void nbdc_req_error(struct nbdc_req *rq, int err)
{
	if (rq->status == DISK_OK) {
		rq->status = nbdclient_status_of_errno(err);
		rq->err = err;
	}
}

/* libnbd: a content chunk of a read reply (also called once for a simple
 * reply). Records the bytes it describes, so that nbdc_req_finish can fail
 * a read whose successful reply did not cover it exactly once. */
static int nbdc_read_chunk(void *opaque, const void *subbuf UNUSED, size_t count,
			   uint64_t offset, unsigned status, int *error UNUSED)
{
	struct disk_io *io = opaque;

	if (status == LIBNBD_READ_DATA || status == LIBNBD_READ_HOLE)
		nbdc_cover_add(req_of(io)->cover, offset, count);
	return 0;
}

/* libnbd: a command finished (runs inside nbd_aio_* with the handle locked). */
static int nbdc_cmd_done(void *opaque, int *error)
{
	struct disk_io *io = opaque;
	struct nbdc_req *rq = req_of(io);

	rq->c->inflight--;
	if (*error)
		nbdc_req_error(rq, *error);
	if (--rq->pending == 0)
		nbdc_req_finish(io);
	/* XXX: libnbd 1.14 reads the command after running the state machine
	 * in nbd_aio_*(); if the connection dies right there and we retire
	 * the command from its callback, that is a use after free (seen with
	 * valgrind). So a command that finishes while one is being issued is
	 * left for nbdc_retire() to retire. */
	if (rq->c->issuing) {
		rq->c->unretired = true;
		return 0;
	}
	return 1;                                   /* retire the command */
}

/* Retires the commands whose callbacks ran inside an nbd_aio_* call. */
static void nbdc_retire(struct nbdc_conn *c)
{
	int64_t cookie;

	if (!c->unretired || c->state != NBDC_UP)
		return;
	c->unretired = false;
	while ((cookie = nbd_aio_peek_command_completed(c->h)) > 0)
		nbd_aio_command_completed(c->h, cookie);  /* the error was seen by the callback */
}

/*
 * libnbd: a block-status chunk (NBD protocol, NBD_REPLY_TYPE_BLOCK_STATUS).
 * All of it comes from the server, so none of it is taken on trust:
 * - @entries holds @nr_entries 32-bit words, nr_entries/2 (length, flags)
 *   pairs (nbd_block_status(3)); an odd last word is ignored;
 * - a server may describe less than was asked (the caller asks again from
 *   where the answer ends), and its last extent may run past the request
 *   (cut off at what was asked, which is at most NBDC_MAX_BS_BYTES);
 * - zero-length extents (the protocol forbids them) add nothing, and
 *   flags other than HOLE and ZERO are ignored;
 * - the protocol allows one chunk per context: a second one is ignored,
 *   so it cannot extend or contradict the first.
 * An answer that covers no whole sector becomes one data sector in
 * nbdc_req_finish.
 */
static int nbdc_extents(void *opaque, const char *context, uint64_t offset,
			uint32_t *entries, size_t nr_entries, int *error)
{
	struct disk_io *io = opaque;
	struct nbdc_req *rq = req_of(io);
	uint32_t shift = rq->c->n->shift;
	struct nbdclient_extent_acc a = {
		.ext = io->u.bs.extents,
		.max = io->u.bs.max,
		.shift = shift,
		.want = MIN(io->count, NBDC_MAX_BS_BYTES >> shift),
	};

	if (*error || strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	if (rq->u.bs_seen || offset != io->sector << shift)
		return 0;
	rq->u.bs_seen = true;
	for (size_t i = 0; i + 1 < nr_entries && a.done < a.want; i += 2) {
		uint32_t f = 0;

		if (entries[i + 1] & LIBNBD_STATE_HOLE)
			f |= DISK_EXTENT_HOLE;
		if (entries[i + 1] & LIBNBD_STATE_ZERO)
			f |= DISK_EXTENT_ZERO;
		nbdclient_extent_add(&a, entries[i], f);
	}
	io->u.bs.nr = a.nr;
	return 0;
}

/* ---- polling ------------------------------------------------------------------ */

static void nbdc_conn_kick(struct nbdc_conn *c);

static void nbdc_arm(struct nbdc_conn *c, struct reactor_op *op, unsigned events)
{
	struct io_uring_sqe *sqe;

	assert(atomic_load(&c->owner) == reactor_current());
	sqe = reactor_get_sqe(reactor_current());

	io_uring_prep_poll_add(sqe, nbd_aio_get_fd(c->h), events);
	reactor_sqe_set_op(sqe, op);
}

/* Cancels an armed poll; its CQE comes back with -ECANCELED. */
static void nbdc_cancel(struct nbdc_conn *c, struct reactor_op *op)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(reactor_current());

	io_uring_prep_rw(IORING_OP_POLL_REMOVE, sqe, -1, NULL, 0, 0);
	sqe->addr = (uint64_t)(uintptr_t)op;
	reactor_sqe_set_op(sqe, &c->cancel_op);
	c->cancels++;
}

/* The connection died: its commands were failed by libnbd. */
static void nbdc_conn_lost(struct nbdc_conn *c, const char *why)
{
	struct nbdc *n = c->n;

	log_error("nbd %s: connection %u lost: %s", n->uri_shown, c->index,
		  why && *why ? why : "closed by the server");
	if (c->rpoll)
		nbdc_cancel(c, &c->rpoll_op);
	if (c->wpoll)
		nbdc_cancel(c, &c->wpoll_op);
	nbd_close(c->h);
	c->h = NULL;
	c->state = NBDC_DOWN;
	c->unretired = false;
	assert(c->inflight == 0);
}

/* After a libnbd call: was the connection lost? */
static bool nbdc_check_dead(struct nbdc_conn *c, const char *why)
{
	if (c->state == NBDC_UP && (nbd_aio_is_dead(c->h) || nbd_aio_is_closed(c->h))) {
		nbdc_conn_lost(c, why);
		return true;
	}
	return false;
}

/* A poll fired (@res: revents, or -errno): lets libnbd make progress. On an
 * error or hang-up, libnbd's own recv/send finds out what happened. */
static void nbdc_poll_event(struct nbdc_conn *c, int res)
{
	const unsigned bad = POLLHUP | POLLERR;
	char why[256] = "";
	int r = 0;

	if (c->state != NBDC_UP || res == -ECANCELED)
		return;
	if ((nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_READ) &&
	    (res < 0 || (res & (POLLIN | bad))))
		r = nbd_aio_notify_read(c->h);
	if (r == 0 && !nbd_aio_is_dead(c->h) && !nbd_aio_is_closed(c->h) &&
	    (nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE) &&
	    (res < 0 || (res & (POLLOUT | bad))))
		r = nbd_aio_notify_write(c->h);
	if (r < 0)
		snprintf(why, sizeof(why), "%s", nbd_get_error() ? nbd_get_error() : "");
	nbdc_check_dead(c, why);
}

static void nbdc_rpoll_done(struct reactor_op *op, int res)
{
	struct nbdc_conn *c = container_of(op, struct nbdc_conn, rpoll_op);

	c->rpoll = false;
	nbdc_poll_event(c, res);
	nbdc_conn_kick(c);
}

static void nbdc_wpoll_done(struct reactor_op *op, int res)
{
	struct nbdc_conn *c = container_of(op, struct nbdc_conn, wpoll_op);

	c->wpoll = false;
	nbdc_poll_event(c, res);
	nbdc_conn_kick(c);
}

static void nbdc_cancel_done(struct reactor_op *op, int res UNUSED)
{
	struct nbdc_conn *c = container_of(op, struct nbdc_conn, cancel_op);

	c->cancels--;
	nbdc_conn_kick(c);
}

/* ---- issuing ---------------------------------------------------------------------- */

/* Issues @io's commands on @c (UP, owned by this reactor). The request
 * finishes through its callbacks (or at once if nothing could be issued). */
static void nbdc_issue(struct nbdc_conn *c, struct disk_io *io)
{
	struct nbdc *n = c->n;
	struct nbdc_req *rq = req_of(io);
	uint64_t off = io->sector << n->shift;
	uint64_t len = io->count << n->shift;
	uint64_t step = NBDC_MAX_RANGE;
	uint32_t flags = 0;
	char *buf = NULL;

	rq->c = c;
	rq->pending = 1;
	rq->status = DISK_OK;
	rq->err = 0;
	rq->u.bounce = NULL;
	rq->cover = NULL;

	switch (io->op) {
	case DISK_OP_READ:
	case DISK_OP_WRITE:
		step = n->max_payload;
		if (io->iovcnt == 1) {
			buf = io->iov[0].iov_base;
		} else {
			rq->u.bounce = reactor_buf_get(io->reactor, (size_t)len, false);
			if (!rq->u.bounce) {
				nbdc_req_error(rq, ENOMEM);
				len = 0;
				break;
			}
			buf = rq->u.bounce;
			if (io->op == DISK_OP_WRITE)
				iov_to_buf(io->iov, io->iovcnt, 0, buf, (size_t)len);
		}
		if (io->flags & DISK_IO_FUA)
			flags |= LIBNBD_CMD_FLAG_FUA;
		if (io->op == DISK_OP_READ && len > 0) {
			uint64_t max = (len - 1) / step + 1 + NBDC_COVER_SLACK;

			rq->cover = max <= UINT32_MAX ?
				reactor_buf_get(io->reactor, nbdc_cover_bytes((uint32_t)max), false) :
				NULL;
			if (!rq->cover) {
				nbdc_req_error(rq, ENOMEM);
				len = 0;
				break;
			}
			*rq->cover = (struct nbdc_cover){ .max = (uint32_t)max };
		}
		break;
	case DISK_OP_WRITE_ZEROES:
		if (io->flags & DISK_IO_FUA)
			flags |= LIBNBD_CMD_FLAG_FUA;
		if (io->flags & DISK_IO_NO_UNMAP)
			flags |= LIBNBD_CMD_FLAG_NO_HOLE;
		if (io->flags & DISK_IO_FAST_ZERO)
			flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
		break;
	case DISK_OP_FLUSH:
		len = 1;                             /* one command */
		break;
	case DISK_OP_BLOCK_STATUS:
		len = MIN(len, NBDC_MAX_BS_BYTES);
		step = len;
		rq->u.bs_seen = false;
		break;
	default:
		break;
	}

	for (uint64_t done = 0; done < len && rq->status == DISK_OK;) {
		nbd_completion_callback cb = { .callback = nbdc_cmd_done, .user_data = io };
		uint64_t k = MIN(step, len - done);
		int64_t cookie = -1;

		rq->pending++;
		c->inflight++;
		c->issuing = true;
		switch (io->op) {
		case DISK_OP_READ: {
			nbd_chunk_callback ccb = { .callback = nbdc_read_chunk, .user_data = io };

			cookie = nbd_aio_pread_structured(c->h, buf + done, k, off + done, ccb, cb, 0);
			break;
		}
		case DISK_OP_WRITE:
			cookie = nbd_aio_pwrite(c->h, buf + done, k, off + done, cb, flags);
			break;
		case DISK_OP_FLUSH:
			cookie = nbd_aio_flush(c->h, cb, 0);
			break;
		case DISK_OP_UNMAP:
			cookie = nbd_aio_trim(c->h, k, off + done, cb, 0);
			break;
		case DISK_OP_WRITE_ZEROES:
			cookie = nbd_aio_zero(c->h, k, off + done, cb, flags);
			break;
		case DISK_OP_CACHE:
			cookie = nbd_aio_cache(c->h, k, off + done, cb, 0);
			break;
		case DISK_OP_BLOCK_STATUS: {
			nbd_extent_callback ecb = { .callback = nbdc_extents, .user_data = io };

			cookie = nbd_aio_block_status(c->h, k, off + done, ecb, cb, 0);
			break;
		}
		default:
			assert(!"nbdc_issue: unexpected op");
			break;
		}
		c->issuing = false;
		if (cookie < 0) {
			int e = nbd_get_errno() ? nbd_get_errno() : EIO;
			char why[256];

			snprintf(why, sizeof(why), "%s", nbd_get_error() ? nbd_get_error() : strerror(e));
			rq->pending--;
			c->inflight--;
			if (!nbdc_check_dead(c, why))
				log_error("nbd %s: %s at byte %" PRIu64 ", %" PRIu64 " bytes: %s",
					  n->uri_shown, disk_op_str(io->op), off + done, k, why);
			/* Refused locally: an I/O error, whatever the errno. */
			if (rq->status == DISK_OK) {
				rq->status = DISK_IO_ERROR;
				rq->err = e;
			}
			break;
		}
		done += k;
	}
	/* The connection may have died while sending (the commands were
	 * failed by their callbacks). */
	if (c->state == NBDC_UP && !nbdc_check_dead(c, nbd_get_error()))
		nbdc_retire(c);
	if (--rq->pending == 0)
		nbdc_req_finish(io);
}

/* The connect on the worker pool. */
static void nbdc_connect_work(struct work_item *w)
{
	struct nbdc_conn *c = container_of(w, struct nbdc_conn, connect);
	struct nbdc *n = c->n;
	struct nbd_handle *h;
	int r;

	c->connect_msg[0] = '\0';
	h = nbdc_connect_handle(n, &c->connect_err, c->connect_msg, sizeof(c->connect_msg));
	if (h) {
		r = nbdc_check_same(n, h, c->connect_msg, sizeof(c->connect_msg));
		if (r < 0) {
			nbd_shutdown(h, 0);
			nbd_close(h);
			h = NULL;
			c->connect_err = -r;
		}
	}
	c->connect_h = h;
}

static uint64_t nbdc_backoff_ns(const struct nbdclient_opts *o, unsigned failures)
{
	uint64_t ms = o->reconnect_delay_ms;

	for (unsigned i = 1; i < failures && ms < o->reconnect_max_ms; i++)
		ms *= 2;
	return MIN(ms, (uint64_t)o->reconnect_max_ms) * 1000000ull;
}

static void nbdc_connect_done(struct work_item *w)
{
	struct nbdc_conn *c = container_of(w, struct nbdc_conn, connect);
	struct nbdc *n = c->n;
	struct disk_io *list = c->waitq_head;

	c->waitq_head = c->waitq_tail = NULL;
	if (c->connect_h) {
		c->h = c->connect_h;
		c->connect_h = NULL;
		c->state = NBDC_UP;
		pthread_mutex_lock(&n->lock);
		if (n->failures)
			log_info("nbd %s: reconnected", n->uri_shown);
		n->failures = 0;
		pthread_mutex_unlock(&n->lock);
		atomic_fetch_add(&n->connects, 1);
		while (list) {
			struct disk_io *io = list;

			list = req_of(io)->next;
			if (c->state == NBDC_UP)
				nbdc_issue(c, io);
			else
				nbdc_req_fail(io, DISK_IO_ERROR, ENOTCONN);
		}
	} else {
		bool give_up = c->connect_err == ESTALE;
		uint64_t delay;

		c->state = NBDC_DOWN;
		pthread_mutex_lock(&n->lock);
		n->failures++;
		delay = nbdc_backoff_ns(&n->o, n->failures);
		n->retry_at_ns = reactor_now_ns() + delay;
		if (n->failures >= n->o.reconnect_attempts)
			give_up = true;
		if (give_up && !atomic_exchange(&n->given_up, true))
			log_error("nbd %s: connecting failed: %s; giving up after %u attempts, "
				  "the disk stays failed", n->uri_shown, c->connect_msg, n->failures);
		else if (!give_up)
			log_error("nbd %s: connecting failed (attempt %u): %s; next attempt in "
				  "%" PRIu64 " ms at the earliest", n->uri_shown, n->failures,
				  c->connect_msg, delay / 1000000);
		pthread_mutex_unlock(&n->lock);
		while (list) {
			struct disk_io *io = list;

			list = req_of(io)->next;
			nbdc_req_fail(io, DISK_IO_ERROR, c->connect_err ? c->connect_err : ENOTCONN);
		}
	}
	nbdc_conn_kick(c);
}

/* Starts @io on @c, owned by this reactor. Returns DISK_PENDING, or a
 * status when the connection cannot be used now. */
static int nbdc_conn_submit(struct nbdc_conn *c, struct disk_io *io)
{
	struct nbdc *n = c->n;
	struct nbdc_req *rq = req_of(io);
	bool may_connect;

	switch (c->state) {
	case NBDC_UP:
		nbdc_issue(c, io);
		return DISK_PENDING;
	case NBDC_CONNECTING:
		break;
	case NBDC_DOWN:
		if (atomic_load(&n->given_up)) {
			io->os_errno = ENOTCONN;
			return DISK_IO_ERROR;
		}
		pthread_mutex_lock(&n->lock);
		may_connect = reactor_now_ns() >= n->retry_at_ns;
		pthread_mutex_unlock(&n->lock);
		if (!may_connect) {
			io->os_errno = ENOTCONN;
			return DISK_IO_ERROR;
		}
		if (!workpool_default()) {
			io->os_errno = ENOMEM;
			return DISK_IO_ERROR;
		}
		c->state = NBDC_CONNECTING;
		c->connect.work = nbdc_connect_work;
		c->connect.done = nbdc_connect_done;
		workpool_submit(workpool_default(), &c->connect);
		break;
	}
	rq->next = NULL;
	if (c->waitq_tail)
		req_of(c->waitq_tail)->next = io;
	else
		c->waitq_head = io;
	c->waitq_tail = io;
	return DISK_PENDING;
}

/* ---- ownership ------------------------------------------------------------------ */

static void nbdc_handover_task(struct reactor_task *t)
{
	struct nbdc_conn *c = container_of(t, struct nbdc_conn, handover);
	struct disk_io *list = c->handover_head;

	c->handover_head = NULL;
	c->handover_pending = false;
	while (list) {
		struct disk_io *io = list;
		int st;

		list = req_of(io)->next;
		st = nbdc_conn_submit(c, io);
		if (st != DISK_PENDING)
			nbdc_req_fail(io, st, io->os_errno);
	}
	nbdc_conn_kick(c);
}

/* Gives up @c (idle): to the first waiter's reactor, with all of that
 * reactor's waiting requests, or to nobody. */
static void nbdc_conn_release(struct nbdc_conn *c)
{
	struct nbdc *n = c->n;
	struct reactor *to = NULL;

	pthread_mutex_lock(&n->lock);
	if (n->waiters_head) {
		struct disk_io **pp = &n->waiters_head, *last = NULL;
		struct disk_io **tail = &c->handover_head;
		unsigned moved = 0;

		to = n->waiters_head->reactor;
		while (*pp) {
			struct disk_io *io = *pp;

			if (io->reactor == to) {
				*pp = req_of(io)->next;
				req_of(io)->next = NULL;
				*tail = io;
				tail = &req_of(io)->next;
				moved++;
			} else {
				last = io;
				pp = &req_of(io)->next;
			}
		}
		n->waiters_tail = last;
		atomic_fetch_sub(&n->nwaiters, moved);
		c->handover_pending = true;
	}
	atomic_store(&c->owner, to);
	pthread_mutex_unlock(&n->lock);
	if (to)
		reactor_post(to, &c->handover);
}

/* Arms what @c needs; releases it when it has nothing left to do. */
static void nbdc_conn_kick(struct nbdc_conn *c)
{
	if (c->state == NBDC_UP) {
		unsigned dir = nbd_aio_get_direction(c->h);

		if ((dir & LIBNBD_AIO_DIRECTION_READ) && c->inflight > 0 && !c->rpoll) {
			nbdc_arm(c, &c->rpoll_op, POLLIN);
			c->rpoll = true;
		}
		if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && !c->wpoll) {
			nbdc_arm(c, &c->wpoll_op, POLLOUT);
			c->wpoll = true;
		}
	}
	if (c->inflight == 0 && !c->rpoll && !c->wpoll && c->cancels == 0 &&
	    c->state != NBDC_CONNECTING && !c->waitq_head && !c->handover_pending)
		nbdc_conn_release(c);
}

/* Finds a connection for @io on its reactor, or queues @io as a waiter
 * (returns NULL). */
static struct nbdc_conn *nbdc_claim(struct nbdc *n, struct disk_io *io)
{
	struct reactor *r = io->reactor;
	unsigned nc = atomic_load_explicit(&n->nconns, memory_order_acquire);
	bool mine = false;

	for (unsigned i = 0; i < nc; i++) {
		if (atomic_load_explicit(&n->conns[i]->owner, memory_order_acquire) == r) {
			if (atomic_load(&n->nwaiters) == 0)
				return n->conns[i];
			mine = true;                /* others wait: queue behind them */
			break;
		}
	}
	if (!mine && atomic_load(&n->nwaiters) == 0) {
		for (unsigned i = 0; i < nc; i++) {
			struct reactor *expected = NULL;

			if (atomic_compare_exchange_strong(&n->conns[i]->owner, &expected, r))
				return n->conns[i];
		}
	}

	pthread_mutex_lock(&n->lock);
	nc = atomic_load(&n->nconns);
	if (!mine && !n->waiters_head) {
		for (unsigned i = 0; i < nc; i++) {
			struct reactor *expected = NULL;

			if (atomic_compare_exchange_strong(&n->conns[i]->owner, &expected, r)) {
				pthread_mutex_unlock(&n->lock);
				return n->conns[i];
			}
		}
		if (nc < n->max_conns) {
			/* A new connection for this reactor (once per reactor,
			 * not per request). */
			struct nbdc_conn *c = calloc(1, sizeof(*c));

			if (c) {
				c->n = n;
				c->index = nc;
				c->state = NBDC_DOWN;
				c->rpoll_op.cb = nbdc_rpoll_done;
				c->wpoll_op.cb = nbdc_wpoll_done;
				c->cancel_op.cb = nbdc_cancel_done;
				c->handover.fn = nbdc_handover_task;
				atomic_init(&c->owner, r);
				n->conns[nc] = c;
				atomic_store_explicit(&n->nconns, nc + 1, memory_order_release);
				pthread_mutex_unlock(&n->lock);
				return c;
			}
			/* Out of memory: wait for an existing one. */
		}
	}
	req_of(io)->next = NULL;
	if (n->waiters_tail)
		req_of(n->waiters_tail)->next = io;
	else
		n->waiters_head = io;
	n->waiters_tail = io;
	atomic_fetch_add(&n->nwaiters, 1);
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

/* ---- disk ops ------------------------------------------------------------------- */

/* Range check and dispatch of every op that goes to the server. */
static int nbdc_start(struct nbdc *n, struct disk_io *io)
{
	struct nbdc_conn *c;
	int st;

	if (atomic_load(&n->given_up)) {
		io->os_errno = ENOTCONN;
		return DISK_IO_ERROR;
	}
	c = nbdc_claim(n, io);
	if (!c)
		return DISK_PENDING;
	st = nbdc_conn_submit(c, io);
	nbdc_conn_kick(c);
	return st;
}

static uint64_t nbdc_sector_count(struct disk *d)
{
	struct nbdc *n = disk_priv(d);

	return n->sector_count;
}

/* READ and WRITE: the dispatcher checked the range and the read-only flag
 * and skipped empty requests (NBDC_CHECKS). */
static int nbdc_rw(struct disk *d, struct disk_io *io)
{
	return nbdc_start(disk_priv(d), io);
}

static int nbdc_flush(struct disk *d, struct disk_io *io)
{
	struct nbdc *n = disk_priv(d);

	if (!n->can_flush || n->read_only)
		return DISK_OK;                     /* nothing cached, or nothing written */
	return nbdc_start(n, io);
}

static int nbdc_unmap(struct disk *d, struct disk_io *io)
{
	struct nbdc *n = disk_priv(d);

	/* Reached only when the server can trim and we may write (else the
	 * behaviour is IGNORED and the dispatcher answers), in range and not
	 * empty (NBDC_CHECKS). */
	return nbdc_start(n, io);
}

static int nbdc_write_zeroes(struct disk *d, struct disk_io *io)
{
	struct nbdc *n = disk_priv(d);

	if ((io->flags & DISK_IO_FAST_ZERO) && !n->can_fast_zero)
		return DISK_UNSUPPORTED;
	return nbdc_start(n, io);
}

static int nbdc_cache(struct disk *d, struct disk_io *io)
{
	struct nbdc *n = disk_priv(d);

	if (!n->can_cache)
		return DISK_OK;                     /* nothing to prefetch into */
	return nbdc_start(n, io);
}

static int nbdc_block_status(struct disk *d, struct disk_io *io)
{
	struct nbdc *n = disk_priv(d);

	if (!n->base_alloc) {
		io->u.bs.extents[0] = (struct disk_extent){ .count = io->count, .layer = -1 };
		io->u.bs.nr = 1;
		return DISK_OK;
	}
	return nbdc_start(n, io);
}

static void nbdc_describe(struct disk *d, struct disk_describer *dd)
{
	struct nbdc *n = disk_priv(d);
	char flags[160];

	dd->param(dd, "uri", n->uri_shown);
	disk_describe_paramf(dd, "export bytes", "%" PRIu64, n->size_bytes);
	snprintf(flags, sizeof(flags), "%s%s%s%s%s%s%s%s%s",
		 n->export_ro ? "read-only " : "", n->can_flush ? "flush " : "",
		 n->can_fua ? "fua " : "", n->can_trim ? "trim " : "", n->can_zero ? "zero " : "",
		 n->can_fast_zero ? "fast-zero " : "", n->can_cache ? "cache " : "",
		 n->can_multi_conn ? "multi-conn " : "", n->base_alloc ? "base:allocation " : "");
	if (flags[0])
		flags[strlen(flags) - 1] = '\0';
	dd->param(dd, "server offers", flags[0] ? flags : "none");
	if (n->min_block || n->pref_block)
		disk_describe_paramf(dd, "block sizes", "minimum %" PRIu32 ", preferred %" PRIu32
				     ", maximum payload %" PRIu32, n->min_block, n->pref_block,
				     n->max_payload);
	disk_describe_paramf(dd, "connections", "%u of at most %u", atomic_load(&n->nconns),
			     n->max_conns);
	disk_describe_paramf(dd, "connects", "%" PRIu64 " (reconnects included)",
			     atomic_load(&n->connects));
	if (atomic_load(&n->given_up))
		dd->param(dd, "state", "failed (gave up reconnecting)");
}

static void nbdc_free(struct nbdc *n)
{
	unsigned nc;

	if (!n)
		return;
	nc = atomic_load(&n->nconns);
	for (unsigned i = 0; i < nc; i++) {
		struct nbdc_conn *c = n->conns[i];

		/* No request is in flight (disk contract): idle and unarmed. */
		assert(c->inflight == 0 && !c->rpoll && !c->wpoll && c->cancels == 0);
		if (c->h) {
			nbd_shutdown(c->h, 0);
			nbd_close(c->h);
		}
		free(c);
	}
	pthread_mutex_destroy(&n->lock);
	free(n->uri);
	free(n->uri_shown);
	free(n);
}

static void nbdc_close(struct disk *d)
{
	nbdc_free(disk_priv(d));
}

/* The dispatcher's prologue: the export's size is fixed, and
 * disk_info.read_only is n->read_only. */
#define NBDC_CHECKS (DISK_CHECK_RANGE | DISK_CHECK_READ_ONLY | DISK_CHECK_EMPTY)

#define NBDC_OPS(zero_op) { \
	.version = DISK_OPS_VERSION, \
	.sector_count = nbdc_sector_count, \
	.read = nbdc_rw, \
	.write = nbdc_rw, \
	.flush = nbdc_flush, \
	.unmap = nbdc_unmap, \
	.write_zeroes = zero_op, \
	.block_status = nbdc_block_status, \
	.cache = nbdc_cache, \
	.describe = nbdc_describe, \
	.close = nbdc_close, \
	.checks = NBDC_CHECKS, \
}

/* With the server's write-zeroes, and without (the dispatcher emulates it
 * with writes). */
static const struct disk_ops nbdc_ops_zero = NBDC_OPS(nbdc_write_zeroes);
static const struct disk_ops nbdc_ops_nozero = NBDC_OPS(NULL);

/* ---- open ------------------------------------------------------------------------ */

/* Reads the export's properties from the first connection. */
static int nbdc_learn(struct nbdc *n, struct nbd_handle *h, char *err, size_t errlen)
{
	int64_t size = nbd_get_size(h);
	uint32_t sector = 512;

	if (size < 0) {
		snprintf(err, errlen, "cannot get the export size: %s", nbd_get_error());
		return -EIO;
	}
	n->size_bytes = (uint64_t)size;
	n->export_ro = nbd_is_read_only(h) == 1;
	n->can_flush = nbd_can_flush(h) == 1;
	n->can_fua = nbd_can_fua(h) == 1;
	n->can_trim = nbd_can_trim(h) == 1;
	n->can_zero = nbd_can_zero(h) == 1;
	n->can_fast_zero = nbd_can_fast_zero(h) == 1;
	n->can_cache = nbd_can_cache(h) == 1;
	n->can_multi_conn = nbd_can_multi_conn(h) == 1;
	n->base_alloc = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	n->min_block = nbdc_block_size(h, LIBNBD_SIZE_MINIMUM);
	n->pref_block = nbdc_block_size(h, LIBNBD_SIZE_PREFERRED);
	if (n->min_block > 512) {
		if (!IS_POW2(n->min_block) || n->min_block > NBDC_MAX_SECTOR) {
			snprintf(err, errlen, "unsupported minimum block size %" PRIu32
				 " (a power of two up to %u is needed)", n->min_block, NBDC_MAX_SECTOR);
			return -EINVAL;
		}
		sector = n->min_block;
	}
	n->shift = ilog2_u64(sector);
	n->max_payload = nbdc_block_size(h, LIBNBD_SIZE_MAXIMUM);
	if (n->max_payload == 0 || n->max_payload > NBDC_DEFAULT_PAYLOAD)
		n->max_payload = NBDC_DEFAULT_PAYLOAD;
	n->max_payload &= ~(sector - 1);
	if (n->max_payload < sector)
		n->max_payload = sector;
	n->sector_count = n->size_bytes >> n->shift;
	return 0;
}

int nbdclient_open(const char *uri, bool read_only, const struct nbdclient_opts *opts,
		   struct disk **out, char *err, size_t errlen)
{
	struct disk_info info = { .type = "nbd" };
	struct nbd_handle *h = NULL;
	struct nbdc_conn *c;
	struct nbdc *n;
	int r, e = 0;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&n->lock, NULL);
	if (opts)
		n->o = *opts;
	else
		nbdclient_opts_default(&n->o);
	if (n->o.max_connections == 0 || n->o.max_connections > NBDC_MAX_CONNS) {
		snprintf(err, errlen, "connections must be 1..%d", NBDC_MAX_CONNS);
		r = -EINVAL;
		goto fail;
	}
	n->uri = strdup(uri);
	n->uri_shown = url_redact_dup(uri);
	c = calloc(1, sizeof(*c));
	if (!n->uri || !n->uri_shown || !c) {
		free(c);
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	c->n = n;
	c->rpoll_op.cb = nbdc_rpoll_done;
	c->wpoll_op.cb = nbdc_wpoll_done;
	c->cancel_op.cb = nbdc_cancel_done;
	c->handover.fn = nbdc_handover_task;
	n->conns[0] = c;
	atomic_store(&n->nconns, 1);

	h = nbdc_connect_handle(n, &e, err, errlen);
	if (!h) {
		/* libnbd's message may quote the URI: redact it. */
		char raw[512];

		snprintf(raw, sizeof(raw), "%s", err);
		url_redact_text(raw, err, errlen);
		r = -e;
		goto fail;
	}
	c->h = h;
	c->state = NBDC_UP;
	atomic_store(&n->connects, 1);
	r = nbdc_learn(n, h, err, errlen);
	if (r < 0)
		goto fail;
	if (n->export_ro && !read_only) {
		snprintf(err, errlen, "the NBD export is read-only; add ,ro (or put memdiff: above it)");
		r = -EROFS;
		goto fail;
	}
	n->read_only = read_only || n->export_ro;
	n->max_conns = n->can_multi_conn ? n->o.max_connections : 1;

	info.sector_size = 1u << n->shift;
	info.physical_sector_size = info.sector_size;
	if (IS_POW2(n->pref_block) && n->pref_block > info.sector_size && n->pref_block <= NBDC_MAX_SECTOR)
		info.physical_sector_size = n->pref_block;
	info.fua_respected = n->can_fua && !n->read_only;
	info.read_only = n->read_only;
	info.unmap_behavior = n->can_trim && !n->read_only ? DISK_UNMAP_UNSPECIFIED : DISK_UNMAP_IGNORED;
	info.optimal_unmap_sectors = 1;
	info.caps = DISK_CAP_PERSISTENT;
	if (n->can_multi_conn)
		info.caps |= DISK_CAP_COHERENT;
	if (n->can_flush && !n->read_only)
		info.caps |= DISK_CAP_VOLATILE_CACHE;
	if (n->base_alloc)
		info.caps |= DISK_CAP_BLOCK_STATUS;
	if (n->can_fast_zero && n->can_zero && !n->read_only)
		info.caps |= DISK_CAP_FAST_ZERO;
	r = disk_new(n->can_zero && !n->read_only ? &nbdc_ops_zero : &nbdc_ops_nozero, &info, n,
		     NULL, out);
	if (r < 0) {
		snprintf(err, errlen, "%s", strerror(-r));
		goto fail;
	}
	return 0;

fail:
	nbdc_free(n);
	return r;
}

int nbdclient_spec_open(const struct spec *s, bool read_only, const struct spec_ctx *ctx UNUSED,
			struct disk **out, char *err, size_t errlen)
{
	return nbdclient_open(s->path, read_only, NULL, out, err, errlen);
}
