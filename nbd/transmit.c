/* SPDX-License-Identifier: MIT */
/*
 * transmit.c: the NBD transmission phase (reference/nbd.md §1.4-1.7,
 * §1.11-1.12): parse requests, validate them, run them on the export's
 * disk, and send simple or structured replies.
 *
 * Notes on the design
 * -------------------
 * - Pipelining. Requests are parsed from a receive buffer that one recv
 *   fills with as many headers (and small WRITE payloads) as the socket
 *   holds; each parsed request takes a preallocated slot and goes to the
 *   disk at once. The connection keeps receiving while disk requests are
 *   in flight, and replies go out in completion order (out of order), so
 *   the disk and the socket overlap.
 * - Back-pressure. A connection has max_requests slots and a budget of
 *   NBDSRV_INFLIGHT_BYTES; when either runs out parsing stops (nothing
 *   more is received) until a reply has gone out. The budget counts what
 *   a request makes the server hold or fetch, not what it carries on the
 *   wire: a READ or WRITE its payload, a CACHE the bytes it reads (the
 *   stack emulates CACHE by reading: through a blob: or nbd: disk that is
 *   network traffic), a BLOCK_STATUS its reply buffer. Commands without
 *   a payload are bounded too: a CACHE longer than the maximum block size
 *   is refused with EOVERFLOW, and a BLOCK_STATUS looks at no more than
 *   NBDSRV_BS_MAX_BYTES of the export (the NBD protocol, "Block size
 *   constraints" and NBD_CMD_BLOCK_STATUS), so one 28-byte request can no
 *   longer make the server read a whole export.
 * - No allocation per request: slots, reply headers, iovecs and the
 *   extent arrays live in the slot; payload buffers come from the
 *   reactor's buffer cache and stay attached to their slot while they are
 *   small (NBDSRV_SLOT_KEEP_BYTES) and the connection holds less than
 *   NBDSRV_CONN_CACHE_BYTES of them.
 * - Copies: a WRITE whose payload arrived in the receive buffer along with
 *   its header is written from there (the buffer is reference-counted and
 *   the connection receives into another one until the write is done;
 *   profiles put that copy at up to a quarter of the user CPU of 4k random
 *   writes); larger
 *   payloads are received straight into the slot's buffer - or, when the
 *   export's disk can adopt write buffers (disk_info.adopt_bytes: mem:,
 *   memdiff:) and the payload is at least NBDSRV_ADOPT_MIN_BYTES, into
 *   blocks of that size laid out on the disk's block grid, one recvmsg
 *   with one iovec entry per block. The disk keeps whole blocks as its
 *   pages instead of copying them and hands back the pages they replace
 *   (or NULL); those go to the connection's pool (bounded by
 *   NBDSRV_CONN_CACHE_BYTES) for the next payload. The blocks only reach
 *   the disk once the whole payload is in, so a client that vanishes
 *   mid-payload changes nothing. Measured: 1 MiB sequential writes on
 *   mem: 0.92x -> 1.39x nbdkit --threads 1 (docs/bench-nbd.md, run 6). READ data is
 *   sent from the buffer the disk filled, the reply header in front of it,
 *   gathered with other replies into one sendmsg (conn.c).
 * - Read budget per pass: parsing stops once a pass has dispatched
 *   NBDSRV_PASS_READ_BYTES of READs and resumes on the next pass, after
 *   the flush task queued this pass's replies (the reactor submits them
 *   before it runs the next pass). An in-memory disk fills the buffer
 *   inside disk_submit, so without the budget 8 pipelined 1 MiB reads were
 *   8 MiB of copies before the first byte went to the socket, and the
 *   socket copy read cold buffers; with it each buffer is sent while it is
 *   still in cache and the freed slot (LIFO) reuses it. Disks that complete
 *   later lose nothing: the next pass follows at once, not after the
 *   completion. Measured (1 MiB reads, QD8, mem:, one quiet A/B): the
 *   RAM layer's copy ~90 -> ~57 us per read, 4-9% less CPU per read,
 *   10-15% more IOPS (docs/bench-nbd.md).
 * - Structured READs ask the disk's block status alongside the read (both
 *   are submitted together) and send OFFSET_HOLE chunks for ranges that
 *   read as zeroes, OFFSET_DATA for the rest. With DF the reply is a
 *   single chunk (OFFSET_HOLE only if the whole range is a hole). Probing
 *   is adaptive: block status can cost far more than the read
 *   (SEEK_HOLE on a fully written 1 GiB tmpfs file walks every page:
 *   about 2.8 ms, which took 4k random reads of a file: export from ~50k
 *   to 108 IOPS when every read probed), and on dense data it finds
 *   nothing. So only reads of NBDSRV_HOLE_MIN_BYTES or more probe; a
 *   probe that finds a hole refills the connection's credit, one that
 *   finds none spends it, and with no credit left the connection probes
 *   once per NBDSRV_HOLE_REPROBE_BYTES read. Sending zeroes as data is
 *   always correct; holes only save bandwidth.
 * - Validation happens here, at the protocol boundary, before the disk
 *   sees anything: magic, command, flags against what was advertised,
 *   read-only, alignment to the sector size (the advertised minimum block
 *   size), the payload limit, and the export size. A bad magic or an
 *   oversized WRITE payload (which cannot be skipped safely) drops the
 *   client; everything else gets an error reply. Errors from the disk are
 *   translated by the one table in errmap.c.
 * - Idle connections (opts.idle_timeout_s, off by default: the kernel's
 *   client and QEMU keep a connection for the life of the device and may
 *   send nothing for hours) are closed once nothing has been in flight and
 *   nothing received for that long. No timer is moved per request: a
 *   receive stamps the clock, and the timer, when it fires early, re-arms
 *   for the rest.
 * - Ordering: a FLUSH is submitted after the writes it must cover have
 *   completed (their replies have been queued), which is what the spec
 *   asks. TRIM with FUA is an unmap followed by a flush.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nbd/errmap.h"
#include "nbd/meta.h"
#include "nbd/server-internal.h"

/* Buffer for BLOCK_STATUS: the extents, then the encoded descriptors of
 * every context. */
#define XMIT_BS_EXT_BYTES (NBDSRV_BS_EXTENTS * sizeof(struct disk_extent))
#define XMIT_BS_BUF_BYTES (XMIT_BS_EXT_BYTES + NBDSRV_META_COUNT * NBDSRV_BS_EXTENTS * 8)

static void xmit_pump(struct nbdsrv_conn *c);
static void xmit_dispatch(struct nbdsrv_req *req);
static void xmit_rx_cb(struct nbdsrv_conn *c, ssize_t res);

/* What a request counts against NBDSRV_INFLIGHT_BYTES (see the design
 * notes). A CACHE over the maximum block size is refused before it reads
 * anything, so it never counts for more than that. */
static uint64_t xmit_cost(uint16_t type, uint32_t len)
{
	switch (type) {
	case NBDW_CMD_READ:
	case NBDW_CMD_WRITE:
		return len;
	case NBDW_CMD_CACHE:
		return MIN(len, NBDSRV_MAX_PAYLOAD);
	case NBDW_CMD_BLOCK_STATUS:
		return XMIT_BS_BUF_BYTES;
	default:
		return 0;
	}
}

/* ---- slots and buffers ----------------------------------------------------- */

static size_t pow2_at_least(size_t n)
{
	size_t p = 4096;

	while (p < n)
		p <<= 1;
	return p;
}

/* Makes req->buf hold at least @len bytes. Returns 0 or -ENOMEM. */
static int req_buf_reserve(struct nbdsrv_req *req, size_t len)
{
	struct nbdsrv_conn *c = req->c;
	size_t cap;
	void *p;

	if (len <= req->buf_cap)
		return 0;
	cap = pow2_at_least(len);
	p = reactor_buf_get(c->r, cap, false);
	if (!p)
		return -ENOMEM;
	if (req->buf) {
		reactor_buf_put(c->r, req->buf, req->buf_cap);
		c->cached_bytes -= req->buf_cap;
	}
	req->buf = p;
	req->buf_cap = cap;
	c->cached_bytes += cap;
	return 0;
}

static void req_buf_drop(struct nbdsrv_req *req)
{
	struct nbdsrv_conn *c = req->c;

	if (!req->buf)
		return;
	reactor_buf_put(c->r, req->buf, req->buf_cap);
	c->cached_bytes -= req->buf_cap;
	req->buf = NULL;
	req->buf_cap = 0;
}

/* ---- adopted WRITE payloads ------------------------------------------------ */

/* A spare block of c->adopt_bytes, or NULL when out of memory. */
static void *adopt_block_get(struct nbdsrv_conn *c)
{
	if (c->napool) {
		c->cached_bytes -= c->adopt_bytes;
		return c->apool[--c->napool];
	}
	return malloc(c->adopt_bytes);
}

/* The pool shares NBDSRV_CONN_CACHE_BYTES with the slots' buffers. */
static void adopt_block_put(struct nbdsrv_conn *c, void *p)
{
	if (!p)
		return;
	if (c->napool < c->apool_cap &&
	    c->cached_bytes + c->adopt_bytes <= NBDSRV_CONN_CACHE_BYTES) {
		c->apool[c->napool++] = p;
		c->cached_bytes += c->adopt_bytes;
	} else {
		free(p);
	}
}

/* Lays @req's payload out over blocks when it is worth it: one iovec
 * entry per piece of the disk's block grid (up to the first boundary,
 * whole blocks, the rest), each in a block of its own, so every whole
 * block can be adopted. Returns true when it did (req->aiov set), false
 * to receive into one buffer (too small, too many pieces, out of memory;
 * nothing held). */
static bool adopt_setup(struct nbdsrv_conn *c, struct nbdsrv_req *req)
{
	uint64_t a = c->adopt_bytes, off = req->offset, left = req->len;
	size_t pieces;
	unsigned n = 0;

	if (!a || left < NBDSRV_ADOPT_MIN_BYTES)
		return false;
	pieces = (off % a + left + a - 1) / a;
	if (pieces > NBDSRV_ADOPT_MAX_IOV)
		return false;
	/* The entries and the original pointers, from the reactor's cache. */
	req->aiov_bytes = pow2_at_least(pieces * (sizeof(*req->aiov) + sizeof(void *)));
	req->aiov = reactor_buf_get(c->r, req->aiov_bytes, false);
	if (!req->aiov)
		return false;
	req->aorig = (void **)(req->aiov + pieces);
	while (left) {
		uint64_t take = MIN(left, a - off % a);
		void *p = adopt_block_get(c);

		if (!p) {
			while (n)
				adopt_block_put(c, req->aiov[--n].iov_base);
			reactor_buf_put(c->r, req->aiov, req->aiov_bytes);
			req->aiov = NULL;
			return false;
		}
		req->aiov[n].iov_base = p;
		req->aiov[n].iov_len = take;
		req->aorig[n] = p;
		n++;
		off += take;
		left -= take;
	}
	req->naiov = n;
	return true;
}

/* Takes back what the disk left in @req's entries (its old blocks or
 * NULL for the ones it kept) and counts what it kept. */
static void adopt_release(struct nbdsrv_conn *c, struct nbdsrv_req *req)
{
	for (unsigned i = 0; i < req->naiov; i++) {
		if (req->aiov[i].iov_base != req->aorig[i])
			c->nadopted++;
		adopt_block_put(c, req->aiov[i].iov_base);
	}
	reactor_buf_put(c->r, req->aiov, req->aiov_bytes);
	req->aiov = NULL;
	req->naiov = 0;
}

static void xmit_task_fn(struct reactor_task *t)
{
	struct nbdsrv_conn *c = container_of(t, struct nbdsrv_conn, xmit_task);

	c->xmit_task_busy = false;
	if (c->closing) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	xmit_pump(c);
}

/* Transmission over (DISC, or the server stopping): close once nothing is
 * in flight. */
static void xmit_check_done(struct nbdsrv_conn *c)
{
	if (c->closing || !(c->disc || c->draining))
		return;
	if (c->ninflight > (c->payload_req ? 1u : 0u))
		return;
	nbdsrv_conn_close(c, true, c->disc ? "client sent NBD_CMD_DISC" : "server is shutting down");
}

/* Returns a slot to the free list. @notify: tell the connection (resume
 * parsing, finish a close); false when the caller is tearing down. */
static void xmit_release(struct nbdsrv_req *req, bool notify)
{
	struct nbdsrv_conn *c = req->c;

	c->inflight_bytes -= req->charged;
	req->charged = 0;
	if (req->rb) {
		req->rb->refs--;
		req->rb = NULL;
	}
	if (req->aiov)
		adopt_release(c, req);
	if (req->buf_cap > NBDSRV_SLOT_KEEP_BYTES || c->cached_bytes > NBDSRV_CONN_CACHE_BYTES)
		req_buf_drop(req);
	req->next_free = c->free_slots;
	c->free_slots = req;
	c->ninflight--;
	if (c->idle_ns && c->ninflight == 0)
		c->last_active_ns = reactor_now_ns();   /* quiet from here */
	if (!notify)
		return;
	if (c->closing) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	if (c->rx_blocked && !c->xmit_task_busy) {
		c->rx_blocked = false;
		c->xmit_task_busy = true;
		reactor_defer(c->r, &c->xmit_task);
	}
	xmit_check_done(c);
}

static void xmit_req_sent(struct nbdsrv_conn *c UNUSED, struct nbdsrv_tx *tx)
{
	xmit_release(container_of(tx, struct nbdsrv_req, tx), true);
}

void nbdsrv_xmit_free_payload_req(struct nbdsrv_conn *c)
{
	struct nbdsrv_req *req = c->payload_req;

	c->payload_req = NULL;
	if (req)
		xmit_release(req, false);
}

/* ---- replies ------------------------------------------------------------------- */

/* Writes a structured chunk header at @h. */
static void put_chunk(uint8_t *h, uint16_t flags, uint16_t type, uint64_t cookie, uint32_t len)
{
	nbdw_put32(h, NBDW_STRUCTURED_REPLY_MAGIC);
	nbdw_put16(h + 4, flags);
	nbdw_put16(h + 6, type);
	nbdw_put64(h + 8, cookie);
	nbdw_put32(h + 16, len);
}

static unsigned reply_simple(struct nbdsrv_req *req)
{
	nbdw_put32(req->hdr, NBDW_SIMPLE_REPLY_MAGIC);
	nbdw_put32(req->hdr + 4, req->error);
	nbdw_put64(req->hdr + 8, req->cookie);
	req->riov[0].iov_base = req->hdr;
	req->riov[0].iov_len = NBDW_SIMPLE_REPLY_BYTES;
	if (req->type == NBDW_CMD_READ && req->error == 0 && req->len > 0) {
		req->riov[1].iov_base = req->buf;
		req->riov[1].iov_len = req->len;
		return 2;
	}
	return 1;
}

static unsigned reply_error_chunk(struct nbdsrv_req *req)
{
	const char *msg = req->errmsg ? req->errmsg : "";
	size_t mlen = MIN(strlen(msg), (size_t)NBDSRV_ERRMSG_MAX);
	uint8_t *h = req->hdr;

	put_chunk(h, NBDW_REPLY_FLAG_DONE, NBDW_REPLY_TYPE_ERROR, req->cookie, (uint32_t)(6 + mlen));
	nbdw_put32(h + 20, req->error);
	nbdw_put16(h + 24, (uint16_t)mlen);
	memcpy(h + 26, msg, mlen);
	req->riov[0].iov_base = h;
	req->riov[0].iov_len = 26 + mlen;
	return 1;
}

/* One run of a structured read reply. */
struct read_run {
	bool hole;
	uint64_t off;    /* from the request's offset */
	uint64_t len;
};

/* Splits the read into hole and data runs from the block-status extents. */
static unsigned read_runs(struct nbdsrv_req *req, struct read_run *runs, unsigned max)
{
	struct nbdsrv_conn *c = req->c;
	uint64_t pos = 0;
	unsigned n = 0;

	if (req->holes) {
		for (uint32_t i = 0; i < req->io2.u.bs.nr && pos < req->len; i++) {
			uint64_t bytes = MIN(req->ext[i].count << c->shift, req->len - pos);
			bool hole = req->ext[i].flags & DISK_EXTENT_ZERO;

			if (bytes == 0)
				continue;
			if (n > 0 && runs[n - 1].hole == hole) {
				runs[n - 1].len += bytes;
			} else {
				if (n == max - 1)
					break;   /* the last run is reserved for the rest */
				runs[n++] = (struct read_run){ hole, pos, bytes };
			}
			pos += bytes;
		}
	}
	if (pos < req->len) {
		if (n > 0 && !runs[n - 1].hole)
			runs[n - 1].len += req->len - pos;
		else
			runs[n++] = (struct read_run){ false, pos, req->len - pos };
	}
	return n;
}

static unsigned reply_read(struct nbdsrv_req *req)
{
	struct read_run runs[NBDSRV_READ_EXTENTS + 1];
	unsigned nr, niov = 0;
	uint8_t *h = req->hdr;

	if (req->len == 0) {
		put_chunk(h, NBDW_REPLY_FLAG_DONE, NBDW_REPLY_TYPE_NONE, req->cookie, 0);
		req->riov[0].iov_base = h;
		req->riov[0].iov_len = NBDW_CHUNK_HDR_BYTES;
		return 1;
	}
	nr = read_runs(req, runs, ARRAY_SIZE(runs));
	if ((req->flags & NBDW_CMD_FLAG_DF) && nr > 1) {
		/* Don't fragment: one data chunk, holes included as zeroes
		 * (the disk read filled them). */
		runs[0] = (struct read_run){ false, 0, req->len };
		nr = 1;
	}
	for (unsigned i = 0; i < nr; i++) {
		uint16_t flags = i == nr - 1 ? NBDW_REPLY_FLAG_DONE : 0;

		if (runs[i].hole) {
			put_chunk(h, flags, NBDW_REPLY_TYPE_OFFSET_HOLE, req->cookie, 12);
			nbdw_put64(h + 20, req->offset + runs[i].off);
			nbdw_put32(h + 28, (uint32_t)runs[i].len);
			req->riov[niov].iov_base = h;
			req->riov[niov++].iov_len = 32;
		} else {
			put_chunk(h, flags, NBDW_REPLY_TYPE_OFFSET_DATA, req->cookie,
				  (uint32_t)(8 + runs[i].len));
			nbdw_put64(h + 20, req->offset + runs[i].off);
			req->riov[niov].iov_base = h;
			req->riov[niov++].iov_len = 28;
			req->riov[niov].iov_base = (char *)req->buf + runs[i].off;
			req->riov[niov++].iov_len = runs[i].len;
		}
		h += 32;
	}
	return niov;
}

static unsigned reply_block_status(struct nbdsrv_req *req)
{
	struct nbdsrv_conn *c = req->c;
	struct disk_extent *ext = req->buf, one;
	uint8_t *desc = (uint8_t *)req->buf + XMIT_BS_EXT_BYTES;
	uint32_t nr = req->io.u.bs.nr, max_desc = (UINT32_MAX / c->ss) * c->ss;
	bool req_one = req->flags & NBDW_CMD_FLAG_REQ_ONE;
	unsigned niov = 0, nctx = 0, done = 0;
	uint8_t *h = req->hdr;

	if (nr == 0) {
		/* "Unknown" is always a safe answer. */
		one = (struct disk_extent){ .count = req->io.count, .flags = 0, .layer = -1 };
		ext = &one;
		nr = 1;
	}
	for (unsigned i = 0; i < NBDSRV_META_COUNT; i++)
		if (c->meta_active & (1u << i))
			nctx++;
	for (unsigned i = 0; i < NBDSRV_META_COUNT; i++) {
		uint32_t nd;

		if (!(c->meta_active & (1u << i)))
			continue;
		nd = nbdsrv_meta_encode(ext, nr, c->shift, i, max_desc, req_one, req->len, desc);
		put_chunk(h, ++done == nctx ? NBDW_REPLY_FLAG_DONE : 0, NBDW_REPLY_TYPE_BLOCK_STATUS,
			  req->cookie, 4 + 8 * nd);
		nbdw_put32(h + 20, nbdsrv_meta_id(i));
		req->riov[niov].iov_base = h;
		req->riov[niov++].iov_len = 24;
		req->riov[niov].iov_base = desc;
		req->riov[niov++].iov_len = 8 * (size_t)nd;
		desc += 8 * (size_t)nd;
		h += 24;
	}
	return niov;
}

/* Builds the reply of a finished request and queues it. */
static void xmit_reply(struct nbdsrv_req *req)
{
	struct nbdsrv_conn *c = req->c;
	unsigned n;

	if (c->closing) {
		xmit_release(req, true);
		return;
	}
	if (!c->sr)
		n = reply_simple(req);
	else if (req->error)
		n = reply_error_chunk(req);
	else if (req->type == NBDW_CMD_READ)
		n = reply_read(req);
	else if (req->type == NBDW_CMD_BLOCK_STATUS)
		n = reply_block_status(req);
	else
		n = reply_simple(req);
	req->tx.iov = req->riov;
	req->tx.iovcnt = n;
	nbdsrv_tx_queue(c, &req->tx);
	nbdsrv_tx_schedule(c);
}

static void xmit_fail(struct nbdsrv_req *req, uint32_t error, const char *msg)
{
	log_debug("nbd %s: command %u at %llu+%u refused: %s (%s)", req->c->name, req->type,
		  (unsigned long long)req->offset, req->len, msg, nbdsrv_error_name(error));
	req->error = error;
	req->errmsg = msg;
	xmit_reply(req);
}

/* ---- disk requests ----------------------------------------------------------------- */

static enum nbdsrv_err_class req_class(const struct nbdsrv_req *req)
{
	switch (req->type) {
	case NBDW_CMD_WRITE:
		return NBDSRV_ERRC_WRITE;
	case NBDW_CMD_WRITE_ZEROES:
		return (req->flags & NBDW_CMD_FLAG_FAST_ZERO) ? NBDSRV_ERRC_FAST_ZERO
							       : NBDSRV_ERRC_WRITE;
	default:
		return NBDSRV_ERRC_READ;
	}
}

static void xmit_io_done(struct disk_io *io);

/* True when the block status of a READ found a range reading as zeroes. */
static bool xmit_found_hole(const struct nbdsrv_req *req)
{
	for (uint32_t i = 0; i < req->io2.u.bs.nr; i++)
		if (req->ext[i].flags & DISK_EXTENT_ZERO)
			return true;
	return false;
}

/* Whether this READ should ask for block status (see the design notes). */
static bool xmit_probe_holes(struct nbdsrv_conn *c, uint32_t len)
{
	if (!c->holes || len < NBDSRV_HOLE_MIN_BYTES)
		return false;
	if (c->hole_credit > 0)
		return true;
	c->hole_unprobed += len;
	if (c->hole_unprobed < NBDSRV_HOLE_REPROBE_BYTES)
		return false;
	c->hole_unprobed = 0;
	return true;
}

static void xmit_submit(struct nbdsrv_req *req, struct disk_io *io, enum disk_op op,
			uint32_t flags, uint64_t sector, uint64_t count)
{
	io->op = op;
	io->flags = flags;
	io->sector = sector;
	io->count = count;
	io->iov = NULL;
	io->iovcnt = 0;
	io->done = xmit_io_done;
	io->opaque = req;
	if (op == DISK_OP_WRITE && req->aiov) {
		io->flags |= DISK_IO_ADOPT;
		io->iov = req->aiov;
		io->iovcnt = (int)req->naiov;
	} else if (op == DISK_OP_READ || op == DISK_OP_WRITE) {
		req->dio.iov_base = req->rb ? req->wdata : req->buf;
		req->dio.iov_len = req->len;
		io->iov = &req->dio;
		io->iovcnt = 1;
	}
	req->pending++;
	disk_submit(req->c->disk, io);
}

static void xmit_io_done(struct disk_io *io)
{
	struct nbdsrv_req *req = io->opaque;
	struct nbdsrv_conn *c = req->c;

	if (req->rb && io == &req->io) {
		/* The disk has the payload: the receive buffer is free again
		 * (before the reply goes out, so the next receive reuses the
		 * same, cache-warm, buffer). */
		req->rb->refs--;
		req->rb = NULL;
		if (c->rx_blocked && !c->xmit_task_busy && !c->closing) {
			c->rx_blocked = false;
			c->xmit_task_busy = true;
			reactor_defer(c->r, &c->xmit_task);
		}
	}
	if (io == &req->io2) {
		req->holes = io->status == DISK_OK && io->u.bs.nr > 0;
		if (req->holes && xmit_found_hole(req))
			c->hole_credit = NBDSRV_HOLE_CREDIT;
		else if (c->hole_credit > 0)
			c->hole_credit--;
	} else if (io->status != DISK_OK && req->error == 0) {
		req->error = nbdsrv_error_of(io->status, io->os_errno, req_class(req));
		req->errmsg = io->status == DISK_UNSUPPORTED &&
			      (req->flags & NBDW_CMD_FLAG_FAST_ZERO)
			      ? "zeroing this range would not be fast" : disk_status_str(io->status);
		if (req->error == NBDW_ENOTSUP)
			log_debug("nbd %s: fast zero at %llu+%u refused", c->name,
				  (unsigned long long)req->offset, req->len);
		else
			log_warn("nbd %s: %s at %llu+%u failed: %s%s%s", c->name, disk_op_str(io->op),
				 (unsigned long long)req->offset, req->len,
				 disk_status_str(io->status), io->os_errno ? ": " : "",
				 io->os_errno ? strerror(io->os_errno) : "");
	}
	if (--req->pending > 0)
		return;
	if (req->type == NBDW_CMD_TRIM && (req->flags & NBDW_CMD_FLAG_FUA) && req->stage == 0 &&
	    req->error == 0) {
		/* FUA on a trim: make it durable before answering. */
		req->stage = 1;
		xmit_submit(req, &req->io, DISK_OP_FLUSH, 0, 0, 0);
		return;
	}
	xmit_reply(req);
}

/* Validates @req against the export and what was negotiated, then starts
 * it. */
static void xmit_dispatch(struct nbdsrv_req *req)
{
	struct nbdsrv_conn *c = req->c;
	const uint16_t tf = c->tflags;
	uint16_t allowed = (tf & NBDW_FLAG_SEND_FUA) ? NBDW_CMD_FLAG_FUA : 0;
	const uint32_t mask = c->ss - 1;
	bool is_write = false;
	uint64_t end;

	if (c->draining) {
		xmit_fail(req, NBDW_ESHUTDOWN, "the server is shutting down");
		return;
	}
	switch (req->type) {
	case NBDW_CMD_READ:
		if (tf & NBDW_FLAG_SEND_DF)
			allowed |= NBDW_CMD_FLAG_DF;
		break;
	case NBDW_CMD_WRITE:
		is_write = true;
		break;
	case NBDW_CMD_FLUSH:
	case NBDW_CMD_CACHE:
		break;
	case NBDW_CMD_TRIM:
		is_write = true;
		if (!c->ro && !(tf & NBDW_FLAG_SEND_TRIM)) {
			xmit_fail(req, NBDW_EINVAL, "trim is not supported by this export");
			return;
		}
		break;
	case NBDW_CMD_WRITE_ZEROES:
		is_write = true;
		allowed |= NBDW_CMD_FLAG_NO_HOLE;
		if (tf & NBDW_FLAG_SEND_FAST_ZERO)
			allowed |= NBDW_CMD_FLAG_FAST_ZERO;
		break;
	case NBDW_CMD_BLOCK_STATUS:
		allowed |= NBDW_CMD_FLAG_REQ_ONE;
		if (!c->meta_active) {
			xmit_fail(req, NBDW_EINVAL, "no metadata context was negotiated");
			return;
		}
		break;
	default:
		xmit_fail(req, NBDW_EINVAL, "unknown command");
		return;
	}
	if (is_write && c->ro) {
		xmit_fail(req, NBDW_EPERM, "the export is read-only");
		return;
	}
	if (req->flags & ~allowed) {
		xmit_fail(req, NBDW_EINVAL, "invalid flags for this command");
		return;
	}
	if (req->type == NBDW_CMD_FLUSH) {
		if (req->offset || req->len) {
			xmit_fail(req, NBDW_EINVAL, "flush with a nonzero offset or length");
			return;
		}
		xmit_submit(req, &req->io, DISK_OP_FLUSH, 0, 0, 0);
		return;
	}
	if (ADD_OVERFLOW(req->offset, (uint64_t)req->len, &end) || end > c->size) {
		if (req->type == NBDW_CMD_WRITE || req->type == NBDW_CMD_WRITE_ZEROES)
			xmit_fail(req, NBDW_ENOSPC, "request beyond the end of the export");
		else
			xmit_fail(req, NBDW_EINVAL, "request beyond the end of the export");
		return;
	}
	if (req->type == NBDW_CMD_TRIM) {
		/* A hint: round inwards to whole sectors. */
		uint64_t first = (req->offset + mask) >> c->shift, last = end >> c->shift;

		if (last <= first) {
			xmit_reply(req);
			return;
		}
		xmit_submit(req, &req->io, DISK_OP_UNMAP, 0, first, last - first);
		return;
	}
	if (req->type == NBDW_CMD_BLOCK_STATUS) {
		uint64_t count;

		if (req->len == 0 || (req->offset & mask)) {
			xmit_fail(req, NBDW_EINVAL, req->len ? "unaligned offset" : "zero length");
			return;
		}
		if (req_buf_reserve(req, XMIT_BS_BUF_BYTES) < 0) {
			xmit_fail(req, NBDW_ENOMEM, "out of memory");
			return;
		}
		/* Bounded work per request: the reply may describe less than
		 * was asked, and the client asks again for the rest. */
		count = MIN(((uint64_t)req->len + mask) >> c->shift,
			    (uint64_t)(NBDSRV_BS_MAX_BYTES >> c->shift));
		req->io.u.bs.extents = req->buf;
		req->io.u.bs.max = (req->flags & NBDW_CMD_FLAG_REQ_ONE) ? 1 : NBDSRV_BS_EXTENTS;
		req->io.u.bs.nr = 0;
		xmit_submit(req, &req->io, DISK_OP_BLOCK_STATUS, 0, req->offset >> c->shift, count);
		return;
	}
	if ((req->offset | req->len) & mask) {
		xmit_fail(req, NBDW_EINVAL, "request not aligned to the export's block size");
		return;
	}
	if ((req->type == NBDW_CMD_READ || req->type == NBDW_CMD_WRITE) &&
	    req->len > NBDSRV_MAX_PAYLOAD) {
		xmit_fail(req, NBDW_EINVAL, "request larger than the maximum block size");
		return;
	}
	if (req->type == NBDW_CMD_CACHE && req->len > NBDSRV_MAX_PAYLOAD) {
		/* The error the protocol names for a command without payload
		 * over the advertised maximum; a client that honours the block
		 * size constraints never sees it. */
		xmit_fail(req, NBDW_EOVERFLOW, "cache larger than the maximum block size");
		return;
	}
	if (req->len == 0) {
		xmit_reply(req);
		return;
	}
	switch (req->type) {
	case NBDW_CMD_READ:
		if (req_buf_reserve(req, req->len) < 0) {
			xmit_fail(req, NBDW_ENOMEM, "out of memory");
			return;
		}
		req->holes = false;
		if (xmit_probe_holes(c, req->len)) {
			req->io2.u.bs.extents = req->ext;
			req->io2.u.bs.max = NBDSRV_READ_EXTENTS;
			req->io2.u.bs.nr = 0;
			/* Both in flight at once; completions are deferred,
			 * so the count covers both before either finishes. */
			xmit_submit(req, &req->io, DISK_OP_READ, 0, req->offset >> c->shift, 0);
			xmit_submit(req, &req->io2, DISK_OP_BLOCK_STATUS, 0, req->offset >> c->shift,
				    req->len >> c->shift);
			return;
		}
		xmit_submit(req, &req->io, DISK_OP_READ, 0, req->offset >> c->shift, 0);
		return;
	case NBDW_CMD_WRITE:
		xmit_submit(req, &req->io, DISK_OP_WRITE,
			    (req->flags & NBDW_CMD_FLAG_FUA) ? DISK_IO_FUA : 0,
			    req->offset >> c->shift, 0);
		return;
	case NBDW_CMD_WRITE_ZEROES: {
		uint32_t f = 0;

		if (req->flags & NBDW_CMD_FLAG_FUA)
			f |= DISK_IO_FUA;
		if (req->flags & NBDW_CMD_FLAG_NO_HOLE)
			f |= DISK_IO_NO_UNMAP;
		if (req->flags & NBDW_CMD_FLAG_FAST_ZERO)
			f |= DISK_IO_FAST_ZERO;
		xmit_submit(req, &req->io, DISK_OP_WRITE_ZEROES, f, req->offset >> c->shift,
			    req->len >> c->shift);
		return;
	}
	case NBDW_CMD_CACHE:
		xmit_submit(req, &req->io, DISK_OP_CACHE, 0, req->offset >> c->shift,
			    req->len >> c->shift);
		return;
	default:
		xmit_fail(req, NBDW_EINVAL, "unknown command");
		return;
	}
}

/* ---- receiving requests -------------------------------------------------------------- */


static void xmit_payload_cb(struct nbdsrv_conn *c, ssize_t res);

/* Receives the rest of c->payload_req's payload (from c->payload_got). */
static void xmit_payload_rx(struct nbdsrv_conn *c, struct nbdsrv_req *req)
{
	if (req->aiov) {
		int n = iov_slice(req->aiov, (int)req->naiov, c->payload_got,
				  req->len - c->payload_got, c->arx, NBDSRV_ADOPT_MAX_IOV);

		assert(n > 0);
		nbdsrv_rxv(c, c->arx, n, xmit_payload_cb);
		return;
	}
	nbdsrv_rx(c, (char *)req->buf + c->payload_got, req->len - c->payload_got, true,
		  xmit_payload_cb);
}

static void xmit_payload_cb(struct nbdsrv_conn *c, ssize_t res)
{
	struct nbdsrv_req *req = c->payload_req;

	if (res <= 0) {
		if (c->draining && res == -ECANCELED) {
			xmit_check_done(c);
			return;
		}
		log_warn("nbd %s: client left in the middle of a %u-byte WRITE payload%s%s", c->name,
			 req->len, res < 0 ? ": " : "", res < 0 ? strerror((int)-res) : "");
		nbdsrv_conn_close(c, false, NULL);
		return;
	}
	if (c->idle_ns)
		c->last_active_ns = reactor_now_ns();
	c->payload_got += (uint32_t)res;
	if (c->payload_got < req->len) {
		xmit_payload_rx(c, req);
		return;
	}
	c->payload_req = NULL;
	xmit_dispatch(req);
	xmit_pump(c);
}

static void xmit_disc(struct nbdsrv_conn *c, struct nbdsrv_req *req)
{
	c->disc = true;
	xmit_release(req, false);
	xmit_check_done(c);
}

/* Parses every complete request in the receive buffer, then receives
 * more unless something says stop. */
static void xmit_pump(struct nbdsrv_conn *c)
{
	uint64_t pass_read = 0;

	c->parse_later = false;
	while (!c->closing && !c->payload_req && !c->disc) {
		size_t avail = c->rtail - c->rhead;
		const uint8_t *h = c->rbuf + c->rhead;
		struct nbdsrv_req *req;
		uint64_t cost;
		uint32_t len;
		uint16_t type;

		if (avail < NBDW_REQUEST_BYTES)
			break;
		if (nbdw_get32(h) != NBDW_REQUEST_MAGIC) {
			log_warn("nbd %s: bad request magic 0x%08x: dropping the client", c->name,
				 nbdw_get32(h));
			nbdsrv_conn_close(c, false, NULL);
			return;
		}
		type = nbdw_get16(h + 6);
		len = nbdw_get32(h + 24);
		if (type == NBDW_CMD_WRITE && len > NBDSRV_MAX_PAYLOAD) {
			log_warn("nbd %s: WRITE of %u bytes is over the %u-byte limit: dropping the "
				 "client", c->name, len, NBDSRV_MAX_PAYLOAD);
			nbdsrv_conn_close(c, false, NULL);
			return;
		}
		cost = xmit_cost(type, len);
		if (!c->free_slots) {
			c->rx_blocked = true;
			return;
		}
		if (c->ninflight > 0 && c->inflight_bytes + cost > NBDSRV_INFLIGHT_BYTES) {
			c->rx_blocked = true;
			c->nbudget_waits++;
			return;
		}
		req = c->free_slots;
		c->free_slots = req->next_free;
		c->ninflight++;
		c->nrequests++;
		req->flags = nbdw_get16(h + 4);
		req->type = type;
		req->cookie = nbdw_get64(h + 8);
		req->offset = nbdw_get64(h + 16);
		req->len = len;
		req->error = 0;
		req->errmsg = NULL;
		req->pending = 0;
		req->stage = 0;
		req->holes = false;
		assert(!req->aiov);     /* released with the slot */
		req->charged = cost;
		c->inflight_bytes += cost;
		c->rhead += NBDW_REQUEST_BYTES;
		if (type == NBDW_CMD_DISC) {
			xmit_disc(c, req);
			return;
		}
		if (type == NBDW_CMD_READ && !c->draining)
			pass_read += len;
		req->rb = NULL;
		if (type == NBDW_CMD_WRITE && len > 0 && c->rtail - c->rhead >= len) {
			/* The whole payload is here: write it from here. */
			req->rb = c->rb;
			req->rb->refs++;
			req->wdata = c->rbuf + c->rhead;
			c->rhead += len;
		} else if (type == NBDW_CMD_WRITE && len > 0) {
			bool adopt = adopt_setup(c, req);
			size_t copy;

			if (!adopt && req_buf_reserve(req, len) < 0) {
				/* The payload cannot be skipped without a buffer
				 * to put it in. */
				log_error("nbd %s: out of memory for a %u-byte WRITE: dropping the "
					  "client", c->name, len);
				nbdsrv_conn_close(c, false, NULL);
				return;
			}
			copy = MIN((size_t)len, c->rtail - c->rhead);
			if (adopt)
				iov_from_buf(req->aiov, (int)req->naiov, 0, c->rbuf + c->rhead, copy);
			else
				memcpy(req->buf, c->rbuf + c->rhead, copy);
			c->rhead += copy;
			if (copy < len) {
				c->payload_req = req;
				c->payload_got = (uint32_t)copy;
				if (c->draining)
					return;   /* never arrives: released at close */
				xmit_payload_rx(c, req);
				return;
			}
		}
		xmit_dispatch(req);
		if (pass_read >= NBDSRV_PASS_READ_BYTES && c->rtail - c->rhead >= NBDW_REQUEST_BYTES) {
			/* Send what was read before reading more (see the
			 * design notes). */
			c->parse_later = true;
			c->npass_splits++;
			break;
		}
	}
	if (c->closing || c->draining || c->disc || c->payload_req || c->rx_blocked)
		return;
	/* Receive more after this pass's replies are queued (see conn.c). */
	nbdsrv_rx_later(c);
}

/* A receive buffer no WRITE points into, other than the current one; NULL
 * if all are busy (or out of memory). */
static struct nbdsrv_rbuf *xmit_rbuf_spare(struct nbdsrv_conn *c)
{
	for (unsigned i = 0; i < NBDSRV_RBUFS; i++) {
		struct nbdsrv_rbuf *rb = &c->rbufs[i];

		if (rb == c->rb || rb->refs)
			continue;
		if (!rb->data)
			rb->data = reactor_buf_get(c->r, NBDSRV_RBUF_BYTES, false);
		if (rb->data)
			return rb;
	}
	return NULL;
}

/* The flush task's receive: more requests into the buffer. */
static void xmit_rx_arm(struct nbdsrv_conn *c)
{
	if (c->closing || c->draining || c->disc || c->payload_req || c->rx_blocked)
		return;
	if (c->parse_later) {
		/* The send of this pass's replies is queued and goes to the
		 * kernel before the next pass, which parses the rest. */
		c->parse_later = false;
		if (!c->xmit_task_busy) {
			c->xmit_task_busy = true;
			reactor_defer(c->r, &c->xmit_task);
		}
		return;
	}
	if (c->rx_busy || c->rx_task_busy)
		return;
	if (c->rb->refs == 0 && c->rhead == c->rtail) {
		c->rhead = c->rtail = 0;
	} else if (NBDSRV_RBUF_BYTES - c->rtail < NBDSRV_RBUF_BYTES / 2) {
		size_t left = c->rtail - c->rhead;
		struct nbdsrv_rbuf *nb;

		if (c->rb->refs == 0) {
			memmove(c->rbuf, c->rbuf + c->rhead, left);
		} else if ((nb = xmit_rbuf_spare(c))) {
			/* Writes still point into this one: move on. */
			memcpy(nb->data, c->rbuf + c->rhead, left);
			c->rb = nb;
			c->rbuf = nb->data;
		} else if (c->rtail < NBDSRV_RBUF_BYTES) {
			goto receive;   /* what room is left, for now */
		} else {
			c->rx_blocked = true;   /* until a write completes */
			return;
		}
		c->rtail = left;
		c->rhead = 0;
	}
receive:
	nbdsrv_rx(c, c->rbuf + c->rtail, NBDSRV_RBUF_BYTES - c->rtail, false, xmit_rx_cb);
}

static void xmit_rx_cb(struct nbdsrv_conn *c, ssize_t res)
{
	if (res <= 0) {
		if (c->draining && res == -ECANCELED) {
			xmit_check_done(c);
			return;
		}
		if (res == 0 && c->rhead == c->rtail) {
			nbdsrv_conn_close(c, true, "client closed the connection");
		} else if (res == 0) {
			log_warn("nbd %s: client left in the middle of a request header", c->name);
			nbdsrv_conn_close(c, false, NULL);
		} else {
			log_warn("nbd %s: receive failed: %s", c->name, strerror((int)-res));
			nbdsrv_conn_close(c, false, NULL);
		}
		return;
	}
	if (c->idle_ns)
		c->last_active_ns = reactor_now_ns();
	c->rtail += (size_t)res;
	xmit_pump(c);
}

/* The idle timer: closes the connection once it has been quiet for
 * c->idle_ns, else waits for the rest (see the design notes). */
static void xmit_idle_timeout(struct reactor_timer *t)
{
	struct nbdsrv_conn *c = container_of(t, struct nbdsrv_conn, idle_timer);
	uint64_t quiet = reactor_now_ns() - c->last_active_ns;

	if (c->closing || c->draining || c->disc)
		return;
	if (c->ninflight > 0) {
		reactor_timer_start(c->r, t, c->idle_ns);
		return;
	}
	if (quiet < c->idle_ns) {
		reactor_timer_start(c->r, t, c->idle_ns - quiet);
		return;
	}
	log_info("nbd %s: idle for %u s: closing the connection (--idle-timeout)", c->name,
		 c->srv->opts.idle_timeout_s);
	nbdsrv_conn_close(c, true, NULL);
}

/* ---- phase entry and exit ---------------------------------------------------------------- */

void nbdsrv_xmit_begin(struct nbdsrv_conn *c, struct nbdsrv_export *e)
{
	const struct disk_info *info = disk_get_info(e->disk);

	c->phase = NBDSRV_PH_TRANSMIT;
	c->exp = e;
	c->disk = e->disk;
	c->ss = info->sector_size;
	c->shift = info->sector_shift;
	c->size = disk_sector_count(e->disk) << c->shift;
	c->tflags = nbdsrv_tflags(e, c->sr);
	c->ro = e->read_only;
	c->holes = c->sr && (info->caps & DISK_CAP_BLOCK_STATUS);
	c->hole_credit = NBDSRV_HOLE_CREDIT;
	c->nslots = c->srv->opts.max_requests;
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	c->rb = &c->rbufs[0];
	c->rb->data = reactor_buf_get(c->r, NBDSRV_RBUF_BYTES, false);
	c->rbuf = c->rb->data;
	c->xmit_task.fn = xmit_task_fn;
	c->rx_arm = xmit_rx_arm;
	/* Adopted payloads: plain sockets only (TLS decrypts into a buffer of
	 * its own, a pipe has no recvmsg). */
	if (info->adopt_bytes && c->is_sock && !c->ssl && !c->ro) {
		c->apool_cap = NBDSRV_CONN_CACHE_BYTES / info->adopt_bytes;
		c->apool = calloc(c->apool_cap, sizeof(*c->apool));
		c->arx = calloc(NBDSRV_ADOPT_MAX_IOV, sizeof(*c->arx));
		if (c->apool && c->arx)
			c->adopt_bytes = info->adopt_bytes;
	}
	if (!c->slots || !c->rbuf) {
		log_error("nbd %s: out of memory entering transmission", c->name);
		nbdsrv_conn_close(c, false, NULL);
		return;
	}
	for (unsigned i = c->nslots; i-- > 0;) {
		struct nbdsrv_req *req = &c->slots[i];

		req->c = c;
		req->tx.sent = xmit_req_sent;
		req->next_free = c->free_slots;
		c->free_slots = req;
	}
	if (c->srv->opts.idle_timeout_s) {
		c->idle_ns = (uint64_t)c->srv->opts.idle_timeout_s * 1000000000ull;
		c->last_active_ns = reactor_now_ns();
		c->idle_timer.fn = xmit_idle_timeout;
		reactor_timer_start(c->r, &c->idle_timer, c->idle_ns);
	}
	log_debug("nbd %s: export '%s' (%llu bytes, flags 0x%x%s%s)", c->name, e->name,
		  (unsigned long long)c->size, c->tflags, c->sr ? ", structured" : "",
		  c->tls ? ", TLS" : "");
	if (c->draining || atomic_load(&c->srv->stop_requested)) {
		/* The stop reached this worker before transmission began. */
		nbdsrv_xmit_drain(c);
		return;
	}
	xmit_pump(c);
}

void nbdsrv_xmit_drain(struct nbdsrv_conn *c)
{
	if (c->closing)
		return;
	c->draining = true;
	if (c->phase != NBDSRV_PH_TRANSMIT || !c->slots)
		return;
	/* Stop receiving; requests already buffered are parsed and, with
	 * draining set, answered with ESHUTDOWN. */
	nbdsrv_rx_cancel(c);
	if (!c->payload_req)
		xmit_pump(c);
	xmit_check_done(c);
}

void nbdsrv_xmit_free(struct nbdsrv_conn *c)
{
	if (c->slots) {
		for (unsigned i = 0; i < c->nslots; i++) {
			req_buf_drop(&c->slots[i]);
			if (c->slots[i].aiov)
				adopt_release(c, &c->slots[i]);
		}
		free(c->slots);
		c->slots = NULL;
	}
	while (c->napool)
		free(c->apool[--c->napool]);
	free(c->apool);
	free(c->arx);
	c->apool = NULL;
	c->arx = NULL;
	c->apool_cap = 0;
	c->adopt_bytes = 0;
	for (unsigned i = 0; i < NBDSRV_RBUFS; i++) {
		reactor_buf_put(c->r, c->rbufs[i].data, NBDSRV_RBUF_BYTES);
		c->rbufs[i].data = NULL;
	}
	c->rbuf = NULL;
}
