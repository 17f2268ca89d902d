/* SPDX-License-Identifier: MIT */
/*
 * transmit.c: the NBD transmission phase (the NBD protocol, doc/proto.md in
 * the nbd project: "Transmission", "Request types", "Command flags",
 * "Structured reply types", "Ordering of messages and writes", "Error
 * values"): parse requests, validate them, run them on the export's disk,
 * and send simple or structured replies.
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
 *   mid-payload changes nothing. This saves the copy into the disk's
 *   pages (docs/bench-nbd.md, "Write payloads adopted by the disk"). READ data is
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
 *   completion. Figures: docs/bench-nbd.md, "Read budget per pass".
 * - Structured READs ask the disk's block status alongside the read (both
 *   are submitted together) and send OFFSET_HOLE chunks for ranges that
 *   read as zeroes, OFFSET_DATA for the rest. With DF the reply is a
 *   single chunk (OFFSET_HOLE only if the whole range is a hole). Probing
 *   is adaptive: block status can cost far more than the read
 *   (SEEK_HOLE on a fully written tmpfs file walks every page: see
 *   docs/bench-nbd.md, "Adaptive hole probing"), and on dense data it
 *   finds nothing. So only reads of NBDSRV_HOLE_MIN_BYTES or more probe; a
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
 * - Idle connections (the engine's idle timeout, off by default: the
 *   kernel's client and QEMU keep a connection for the life of the device
 *   and may send nothing for hours) are closed once nothing has been in
 *   flight and nothing received for that long: the engine stamps every
 *   receive, this file says when the last request finished
 *   (netsrv_conn_touch) and whether any is in flight (server.c).
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

static void xmit_pump(struct nbdsrv_xmit *x);
static void xmit_dispatch(struct nbdsrv_req *req);
static void xmit_rx_cb(struct netsrv_conn *nc, ssize_t res);
static void xmit_rx_arm(struct netsrv_conn *nc);

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
	struct nbdsrv_xmit *x = req->x;
	size_t cap;
	void *p;

	if (len <= req->buf_cap)
		return 0;
	cap = pow2_at_least(len);
	p = reactor_buf_get(x->r, cap, false);
	if (!p)
		return -ENOMEM;
	if (req->buf) {
		reactor_buf_put(x->r, req->buf, req->buf_cap);
		x->cached_bytes -= req->buf_cap;
	}
	req->buf = p;
	req->buf_cap = cap;
	x->cached_bytes += cap;
	return 0;
}

static void req_buf_drop(struct nbdsrv_req *req)
{
	struct nbdsrv_xmit *x = req->x;

	if (!req->buf)
		return;
	reactor_buf_put(x->r, req->buf, req->buf_cap);
	x->cached_bytes -= req->buf_cap;
	req->buf = NULL;
	req->buf_cap = 0;
}

/* ---- adopted WRITE payloads ------------------------------------------------ */

/* A spare block of x->adopt_bytes, or NULL when out of memory. */
static void *adopt_block_get(struct nbdsrv_xmit *x)
{
	if (x->napool) {
		x->cached_bytes -= x->adopt_bytes;
		return x->apool[--x->napool];
	}
	return malloc(x->adopt_bytes);
}

/* The pool shares NBDSRV_CONN_CACHE_BYTES with the slots' buffers. */
static void adopt_block_put(struct nbdsrv_xmit *x, void *p)
{
	if (!p)
		return;
	if (x->napool < x->apool_cap &&
	    x->cached_bytes + x->adopt_bytes <= NBDSRV_CONN_CACHE_BYTES) {
		x->apool[x->napool++] = p;
		x->cached_bytes += x->adopt_bytes;
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
static bool adopt_setup(struct nbdsrv_xmit *x, struct nbdsrv_req *req)
{
	uint64_t a = x->adopt_bytes, off = req->offset, left = req->len;
	size_t pieces;
	unsigned n = 0;

	if (!a || left < NBDSRV_ADOPT_MIN_BYTES)
		return false;
	pieces = (off % a + left + a - 1) / a;
	if (pieces > NBDSRV_ADOPT_MAX_IOV)
		return false;
	/* The entries and the original pointers, from the reactor's cache. */
	req->aiov_bytes = pow2_at_least(pieces * (sizeof(*req->aiov) + sizeof(void *)));
	req->aiov = reactor_buf_get(x->r, req->aiov_bytes, false);
	if (!req->aiov)
		return false;
	req->aorig = (void **)(req->aiov + pieces);
	while (left) {
		uint64_t take = MIN(left, a - off % a);
		void *p = adopt_block_get(x);

		if (!p) {
			while (n)
				adopt_block_put(x, req->aiov[--n].iov_base);
			reactor_buf_put(x->r, req->aiov, req->aiov_bytes);
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
static void adopt_release(struct nbdsrv_xmit *x, struct nbdsrv_req *req)
{
	for (unsigned i = 0; i < req->naiov; i++) {
		if (req->aiov[i].iov_base != req->aorig[i])
			x->nadopted++;
		adopt_block_put(x, req->aiov[i].iov_base);
	}
	reactor_buf_put(x->r, req->aiov, req->aiov_bytes);
	req->aiov = NULL;
	req->naiov = 0;
}

static void xmit_task_fn(struct reactor_task *t)
{
	struct nbdsrv_xmit *x = container_of(t, struct nbdsrv_xmit, xmit_task);

	x->xmit_task_busy = false;
	if (netsrv_conn_closing(x->nc)) {
		netsrv_conn_maybe_free(x->nc);
		return;
	}
	xmit_pump(x);
}

/* Transmission over (DISC, or the server stopping): close once nothing is
 * in flight. */
static void xmit_check_done(struct nbdsrv_xmit *x)
{
	if (netsrv_conn_closing(x->nc) || !(x->disc || x->draining))
		return;
	if (x->ninflight > (x->payload_req ? 1u : 0u))
		return;
	netsrv_conn_close(x->nc, true, x->disc ? "client sent NBD_CMD_DISC" : "server is shutting down");
}

/* Returns a slot to the free list. @notify: tell the connection (resume
 * parsing, finish a close); false when the caller is tearing down. */
static void xmit_release(struct nbdsrv_req *req, bool notify)
{
	struct nbdsrv_xmit *x = req->x;

	x->inflight_bytes -= req->charged;
	req->charged = 0;
	if (req->rb) {
		req->rb->refs--;
		req->rb = NULL;
	}
	if (req->aiov)
		adopt_release(x, req);
	if (req->buf_cap > NBDSRV_SLOT_KEEP_BYTES || x->cached_bytes > NBDSRV_CONN_CACHE_BYTES)
		req_buf_drop(req);
	req->next_free = x->free_slots;
	x->free_slots = req;
	x->ninflight--;
	if (x->ninflight == 0)
		netsrv_conn_touch(x->nc);   /* quiet from here */
	if (!notify)
		return;
	if (netsrv_conn_closing(x->nc)) {
		netsrv_conn_maybe_free(x->nc);
		return;
	}
	if (x->rx_blocked && !x->xmit_task_busy) {
		x->rx_blocked = false;
		x->xmit_task_busy = true;
		reactor_defer(x->r, &x->xmit_task);
	}
	xmit_check_done(x);
}

static void xmit_req_sent(struct netsrv_conn *nc UNUSED, struct netsrv_tx *tx)
{
	struct nbdsrv_req *req = container_of(tx, struct nbdsrv_req, tx);

	assert(req->x->nreplying > 0);
	req->x->nreplying--;
	xmit_release(req, true);
}

void nbdsrv_xmit_free_payload_req(struct nbdsrv_xmit *x)
{
	struct nbdsrv_req *req = x->payload_req;

	x->payload_req = NULL;
	if (req)
		xmit_release(req, false);
}

/* ---- replies ------------------------------------------------------------------- */

/* Writes a structured chunk header at @h. */
static void put_chunk(uint8_t *h, uint16_t flags, uint16_t type, uint64_t cookie, uint32_t len)
{
	ds_put_be32(h, NBDW_STRUCTURED_REPLY_MAGIC);
	ds_put_be16(h + 4, flags);
	ds_put_be16(h + 6, type);
	ds_put_be64(h + 8, cookie);
	ds_put_be32(h + 16, len);
}

static unsigned reply_simple(struct nbdsrv_req *req)
{
	ds_put_be32(req->hdr, NBDW_SIMPLE_REPLY_MAGIC);
	ds_put_be32(req->hdr + 4, req->error);
	ds_put_be64(req->hdr + 8, req->cookie);
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
	ds_put_be32(h + 20, req->error);
	ds_put_be16(h + 24, (uint16_t)mlen);
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
	struct nbdsrv_xmit *x = req->x;
	uint64_t pos = 0;
	unsigned n = 0;

	if (req->holes) {
		for (uint32_t i = 0; i < req->io2.u.bs.nr && pos < req->len; i++) {
			uint64_t bytes = MIN(req->ext[i].count << x->shift, req->len - pos);
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
			ds_put_be64(h + 20, req->offset + runs[i].off);
			ds_put_be32(h + 28, (uint32_t)runs[i].len);
			req->riov[niov].iov_base = h;
			req->riov[niov++].iov_len = 32;
		} else {
			put_chunk(h, flags, NBDW_REPLY_TYPE_OFFSET_DATA, req->cookie,
				  (uint32_t)(8 + runs[i].len));
			ds_put_be64(h + 20, req->offset + runs[i].off);
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
	struct nbdsrv_xmit *x = req->x;
	struct disk_extent *ext = req->buf, one;
	uint8_t *desc = (uint8_t *)req->buf + XMIT_BS_EXT_BYTES;
	uint32_t nr = req->io.u.bs.nr, max_desc = (UINT32_MAX / x->ss) * x->ss;
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
		if (x->meta_active & (1u << i))
			nctx++;
	for (unsigned i = 0; i < NBDSRV_META_COUNT; i++) {
		uint32_t nd;

		if (!(x->meta_active & (1u << i)))
			continue;
		nd = nbdsrv_meta_encode(ext, nr, x->shift, i, max_desc, req_one, req->len, desc);
		put_chunk(h, ++done == nctx ? NBDW_REPLY_FLAG_DONE : 0, NBDW_REPLY_TYPE_BLOCK_STATUS,
			  req->cookie, 4 + 8 * nd);
		ds_put_be32(h + 20, nbdsrv_meta_id(i));
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
	struct nbdsrv_xmit *x = req->x;
	unsigned n;

	nbdsrv_stats_count(x, req->type, req->len, req->error != 0,
			   reactor_now_ns() - req->t0_ns);

	if (netsrv_conn_closing(x->nc)) {
		xmit_release(req, true);
		return;
	}
	if (!x->sr)
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
	x->nreplying++;
	netsrv_tx_queue(x->nc, &req->tx);
	netsrv_tx_schedule(x->nc);
}

static void xmit_fail(struct nbdsrv_req *req, uint32_t error, const char *msg)
{
	log_debug("%s: command %u at %llu+%u refused: %s (%s)", req->x->name, req->type,
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
static bool xmit_probe_holes(struct nbdsrv_xmit *x, uint32_t len)
{
	if (!x->holes || len < NBDSRV_HOLE_MIN_BYTES)
		return false;
	if (x->hole_credit > 0)
		return true;
	x->hole_unprobed += len;
	if (x->hole_unprobed < NBDSRV_HOLE_REPROBE_BYTES)
		return false;
	x->hole_unprobed = 0;
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
	disk_submit(req->x->disk, io);
}

static void xmit_io_done(struct disk_io *io)
{
	struct nbdsrv_req *req = io->opaque;
	struct nbdsrv_xmit *x = req->x;

	if (req->rb && io == &req->io) {
		/* The disk has the payload: the receive buffer is free again
		 * (before the reply goes out, so the next receive reuses the
		 * same, cache-warm, buffer). */
		req->rb->refs--;
		req->rb = NULL;
		if (x->rx_blocked && !x->xmit_task_busy && !netsrv_conn_closing(x->nc)) {
			x->rx_blocked = false;
			x->xmit_task_busy = true;
			reactor_defer(x->r, &x->xmit_task);
		}
	}
	if (io == &req->io2) {
		req->holes = io->status == DISK_OK && io->u.bs.nr > 0;
		if (req->holes && xmit_found_hole(req))
			x->hole_credit = NBDSRV_HOLE_CREDIT;
		else if (x->hole_credit > 0)
			x->hole_credit--;
	} else if (io->status != DISK_OK && req->error == 0) {
		req->error = nbdsrv_error_of(io->status, io->os_errno, req_class(req));
		req->errmsg = io->status == DISK_UNSUPPORTED &&
			      (req->flags & NBDW_CMD_FLAG_FAST_ZERO)
			      ? "zeroing this range would not be fast" : disk_status_str(io->status);
		if (req->error == NBDW_ENOTSUP)
			log_debug("%s: fast zero at %llu+%u refused", x->name,
				  (unsigned long long)req->offset, req->len);
		else
			log_warn("%s: %s at %llu+%u failed: %s%s%s", x->name, disk_op_str(io->op),
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
	struct nbdsrv_xmit *x = req->x;
	const uint16_t tf = x->tflags;
	uint16_t allowed = (tf & NBDW_FLAG_SEND_FUA) ? NBDW_CMD_FLAG_FUA : 0;
	const uint32_t mask = x->ss - 1;
	bool is_write = false;
	uint64_t end;

	req->t0_ns = reactor_now_ns();
	if (x->draining) {
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
		if (!x->ro && !(tf & NBDW_FLAG_SEND_TRIM)) {
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
		if (!x->meta_active) {
			xmit_fail(req, NBDW_EINVAL, "no metadata context was negotiated");
			return;
		}
		break;
	default:
		xmit_fail(req, NBDW_EINVAL, "unknown command");
		return;
	}
	if (is_write && x->ro) {
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
	if (ADD_OVERFLOW(req->offset, (uint64_t)req->len, &end) || end > x->size) {
		if (req->type == NBDW_CMD_WRITE || req->type == NBDW_CMD_WRITE_ZEROES)
			xmit_fail(req, NBDW_ENOSPC, "request beyond the end of the export");
		else
			xmit_fail(req, NBDW_EINVAL, "request beyond the end of the export");
		return;
	}
	if (req->type == NBDW_CMD_TRIM) {
		/* A hint: round inwards to whole sectors. */
		uint64_t first = (req->offset + mask) >> x->shift, last = end >> x->shift;

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
		count = MIN(((uint64_t)req->len + mask) >> x->shift,
			    (uint64_t)(NBDSRV_BS_MAX_BYTES >> x->shift));
		req->io.u.bs.extents = req->buf;
		req->io.u.bs.max = (req->flags & NBDW_CMD_FLAG_REQ_ONE) ? 1 : NBDSRV_BS_EXTENTS;
		req->io.u.bs.nr = 0;
		xmit_submit(req, &req->io, DISK_OP_BLOCK_STATUS, 0, req->offset >> x->shift, count);
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
		if (xmit_probe_holes(x, req->len)) {
			req->io2.u.bs.extents = req->ext;
			req->io2.u.bs.max = NBDSRV_READ_EXTENTS;
			req->io2.u.bs.nr = 0;
			/* Both in flight at once; completions are deferred,
			 * so the count covers both before either finishes. */
			xmit_submit(req, &req->io, DISK_OP_READ, 0, req->offset >> x->shift, 0);
			xmit_submit(req, &req->io2, DISK_OP_BLOCK_STATUS, 0, req->offset >> x->shift,
				    req->len >> x->shift);
			return;
		}
		xmit_submit(req, &req->io, DISK_OP_READ, 0, req->offset >> x->shift, 0);
		return;
	case NBDW_CMD_WRITE:
		xmit_submit(req, &req->io, DISK_OP_WRITE,
			    (req->flags & NBDW_CMD_FLAG_FUA) ? DISK_IO_FUA : 0,
			    req->offset >> x->shift, 0);
		return;
	case NBDW_CMD_WRITE_ZEROES: {
		uint32_t f = 0;

		if (req->flags & NBDW_CMD_FLAG_FUA)
			f |= DISK_IO_FUA;
		if (req->flags & NBDW_CMD_FLAG_NO_HOLE)
			f |= DISK_IO_NO_UNMAP;
		if (req->flags & NBDW_CMD_FLAG_FAST_ZERO)
			f |= DISK_IO_FAST_ZERO;
		xmit_submit(req, &req->io, DISK_OP_WRITE_ZEROES, f, req->offset >> x->shift,
			    req->len >> x->shift);
		return;
	}
	case NBDW_CMD_CACHE:
		xmit_submit(req, &req->io, DISK_OP_CACHE, 0, req->offset >> x->shift,
			    req->len >> x->shift);
		return;
	default:
		xmit_fail(req, NBDW_EINVAL, "unknown command");
		return;
	}
}

/* ---- receiving requests -------------------------------------------------------------- */


static void xmit_payload_cb(struct netsrv_conn *nc, ssize_t res);

/* Receives the rest of x->payload_req's payload (from x->payload_got), at
 * most NBDSRV_PAYLOAD_PIECE bytes per receive: each piece that arrives is
 * activity for --idle-timeout (a whole-payload receive completes only at
 * its end, so a slow but steady upload would look idle). */
static void xmit_payload_rx(struct nbdsrv_xmit *x, struct nbdsrv_req *req)
{
	uint32_t want = MIN(req->len - x->payload_got, NBDSRV_PAYLOAD_PIECE);

	if (req->aiov) {
		int n = iov_slice(req->aiov, (int)req->naiov, x->payload_got, want, x->arx,
				  NBDSRV_ADOPT_MAX_IOV);

		assert(n > 0);
		netsrv_rxv(x->nc, x->arx, n, xmit_payload_cb);
		return;
	}
	netsrv_rx(x->nc, (char *)req->buf + x->payload_got, want, true, xmit_payload_cb);
}

static void xmit_payload_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct nbdsrv_xmit *x = ((struct nbdsrv_conn *)netsrv_conn_priv(nc))->x;
	struct nbdsrv_req *req = x->payload_req;

	if (res <= 0) {
		if (x->draining && res == -ECANCELED) {
			xmit_check_done(x);
			return;
		}
		log_warn("%s: client left in the middle of a %u-byte WRITE payload%s%s", x->name,
			 req->len, res < 0 ? ": " : "", res < 0 ? strerror((int)-res) : "");
		netsrv_conn_close(x->nc, false, NULL);
		return;
	}
	x->payload_got += (uint32_t)res;
	if (x->payload_got < req->len) {
		xmit_payload_rx(x, req);
		return;
	}
	x->payload_req = NULL;
	xmit_dispatch(req);
	xmit_pump(x);
}

static void xmit_disc(struct nbdsrv_xmit *x, struct nbdsrv_req *req)
{
	x->disc = true;
	xmit_release(req, false);
	xmit_check_done(x);
}

/* Parses every complete request in the receive buffer, then receives
 * more unless something says stop. */
static void xmit_pump(struct nbdsrv_xmit *x)
{
	uint64_t pass_read = 0;

	x->parse_later = false;
	while (!netsrv_conn_closing(x->nc) && !x->payload_req && !x->disc) {
		size_t avail = x->rtail - x->rhead;
		const uint8_t *h = x->rbuf + x->rhead;
		struct nbdsrv_req *req;
		uint64_t cost;
		uint32_t len;
		uint16_t type;

		if (avail < NBDW_REQUEST_BYTES)
			break;
		if (ds_get_be32(h) != NBDW_REQUEST_MAGIC) {
			log_warn("%s: bad request magic 0x%08x: dropping the client", x->name,
				 ds_get_be32(h));
			netsrv_conn_close(x->nc, false, NULL);
			return;
		}
		type = ds_get_be16(h + 6);
		len = ds_get_be32(h + 24);
		if (type == NBDW_CMD_WRITE && len > NBDSRV_MAX_PAYLOAD) {
			log_warn("%s: WRITE of %u bytes is over the %u-byte limit: dropping the "
				 "client", x->name, len, NBDSRV_MAX_PAYLOAD);
			netsrv_conn_close(x->nc, false, NULL);
			return;
		}
		cost = xmit_cost(type, len);
		if (!x->free_slots) {
			x->rx_blocked = true;
			return;
		}
		if (x->ninflight > 0 && x->inflight_bytes + cost > NBDSRV_INFLIGHT_BYTES) {
			x->rx_blocked = true;
			x->nbudget_waits++;
			return;
		}
		req = x->free_slots;
		x->free_slots = req->next_free;
		x->ninflight++;
		x->nrequests++;
		req->flags = ds_get_be16(h + 4);
		req->type = type;
		req->cookie = ds_get_be64(h + 8);
		req->offset = ds_get_be64(h + 16);
		req->len = len;
		req->error = 0;
		req->errmsg = NULL;
		req->pending = 0;
		req->stage = 0;
		req->holes = false;
		assert(!req->aiov);     /* released with the slot */
		req->charged = cost;
		x->inflight_bytes += cost;
		x->rhead += NBDW_REQUEST_BYTES;
		if (type == NBDW_CMD_DISC) {
			xmit_disc(x, req);
			return;
		}
		if (type == NBDW_CMD_READ && !x->draining)
			pass_read += len;
		req->rb = NULL;
		if (type == NBDW_CMD_WRITE && len > 0 && x->rtail - x->rhead >= len) {
			/* The whole payload is here: write it from here. */
			req->rb = x->rb;
			req->rb->refs++;
			req->wdata = x->rbuf + x->rhead;
			x->rhead += len;
		} else if (type == NBDW_CMD_WRITE && len > 0) {
			bool adopt = adopt_setup(x, req);
			size_t copy;

			if (!adopt && req_buf_reserve(req, len) < 0) {
				/* The payload cannot be skipped without a buffer
				 * to put it in. */
				log_error("%s: out of memory for a %u-byte WRITE: dropping the "
					  "client", x->name, len);
				netsrv_conn_close(x->nc, false, NULL);
				return;
			}
			copy = MIN((size_t)len, x->rtail - x->rhead);
			if (adopt)
				iov_from_buf(req->aiov, (int)req->naiov, 0, x->rbuf + x->rhead, copy);
			else
				memcpy(req->buf, x->rbuf + x->rhead, copy);
			x->rhead += copy;
			if (copy < len) {
				x->payload_req = req;
				x->payload_got = (uint32_t)copy;
				if (x->draining)
					return;   /* never arrives: released at close */
				xmit_payload_rx(x, req);
				return;
			}
		}
		xmit_dispatch(req);
		if (pass_read >= NBDSRV_PASS_READ_BYTES && x->rtail - x->rhead >= NBDW_REQUEST_BYTES) {
			/* Send what was read before reading more (see the
			 * design notes). */
			x->parse_later = true;
			x->npass_splits++;
			break;
		}
	}
	if (netsrv_conn_closing(x->nc) || x->draining || x->disc || x->payload_req || x->rx_blocked)
		return;
	/* Receive more after this pass's replies are queued (see conn.c). */
	netsrv_rx_later(x->nc, xmit_rx_arm);
}

/* A receive buffer no WRITE points into, other than the current one; NULL
 * if all are busy (or out of memory). */
static struct nbdsrv_rbuf *xmit_rbuf_spare(struct nbdsrv_xmit *x)
{
	for (unsigned i = 0; i < NBDSRV_RBUFS; i++) {
		struct nbdsrv_rbuf *rb = &x->rbufs[i];

		if (rb == x->rb || rb->refs)
			continue;
		if (!rb->data)
			rb->data = reactor_buf_get(x->r, NBDSRV_RBUF_BYTES, false);
		if (rb->data)
			return rb;
	}
	return NULL;
}

/* The flush task's receive: more requests into the buffer. */
static void xmit_rx_arm(struct netsrv_conn *nc)
{
	struct nbdsrv_xmit *x = ((struct nbdsrv_conn *)netsrv_conn_priv(nc))->x;

	if (netsrv_conn_closing(x->nc) || x->draining || x->disc || x->payload_req || x->rx_blocked)
		return;
	if (x->parse_later) {
		/* The send of this pass's replies is queued and goes to the
		 * kernel before the next pass, which parses the rest. */
		x->parse_later = false;
		if (!x->xmit_task_busy) {
			x->xmit_task_busy = true;
			reactor_defer(x->r, &x->xmit_task);
		}
		return;
	}
	if (netsrv_rx_busy(x->nc))
		return;
	if (x->rb->refs == 0 && x->rhead == x->rtail) {
		x->rhead = x->rtail = 0;
	} else if (NBDSRV_RBUF_BYTES - x->rtail < NBDSRV_RBUF_BYTES / 2) {
		size_t left = x->rtail - x->rhead;
		struct nbdsrv_rbuf *nb;

		if (x->rb->refs == 0) {
			memmove(x->rbuf, x->rbuf + x->rhead, left);
		} else if ((nb = xmit_rbuf_spare(x))) {
			/* Writes still point into this one: move on. */
			memcpy(nb->data, x->rbuf + x->rhead, left);
			x->rb = nb;
			x->rbuf = nb->data;
		} else if (x->rtail < NBDSRV_RBUF_BYTES) {
			goto receive;   /* what room is left, for now */
		} else {
			x->rx_blocked = true;   /* until a write completes */
			return;
		}
		x->rtail = left;
		x->rhead = 0;
	}
receive:
	netsrv_rx(x->nc, x->rbuf + x->rtail, NBDSRV_RBUF_BYTES - x->rtail, false, xmit_rx_cb);
}

static void xmit_rx_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct nbdsrv_xmit *x = ((struct nbdsrv_conn *)netsrv_conn_priv(nc))->x;

	if (res <= 0) {
		if (x->draining && res == -ECANCELED) {
			xmit_check_done(x);
			return;
		}
		if (res == 0 && x->rhead == x->rtail) {
			netsrv_conn_close(x->nc, true, "client closed the connection");
		} else if (res == 0) {
			log_warn("%s: client left in the middle of a request header", x->name);
			netsrv_conn_close(x->nc, false, NULL);
		} else {
			log_warn("%s: receive failed: %s", x->name, strerror((int)-res));
			netsrv_conn_close(x->nc, false, NULL);
		}
		return;
	}
	x->rtail += (size_t)res;
	xmit_pump(x);
}

/* ---- phase entry and exit ---------------------------------------------------------------- */

void nbdsrv_xmit_begin(struct nbdsrv_conn *c, struct nbdsrv_export *e, bool sr,
		       uint32_t meta_active)
{
	const struct disk_info *info = disk_get_info(e->disk);
	struct nbdsrv_xmit *x = calloc(1, sizeof(*x));

	if (!x) {
		log_error("%s: out of memory entering transmission", c->name);
		nbdsrv_export_put(e);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	c->x = x;
	x->c = c;
	x->nc = c->nc;
	x->srv = c->srv;
	x->r = c->r;
	x->name = c->name;
	x->sr = sr;
	x->meta_active = meta_active;
	x->exp = e;
	x->disk = e->disk;
	if (!nbdsrv_conn_bind(c, e)) {
		/* export-remove hid it while this client finished its handshake. */
		netsrv_conn_close(c->nc, false, "the export was removed");
		return;
	}
	x->ss = info->sector_size;
	x->shift = info->sector_shift;
	x->size = disk_sector_count(e->disk) << x->shift;
	x->tflags = nbdsrv_tflags(e, x->sr);
	x->ro = e->read_only;
	x->holes = x->sr && (info->caps & DISK_CAP_BLOCK_STATUS);
	x->hole_credit = NBDSRV_HOLE_CREDIT;
	x->nslots = x->srv->opts.max_requests;
	x->slots = calloc(x->nslots, sizeof(*x->slots));
	x->rb = &x->rbufs[0];
	x->rb->data = reactor_buf_get(x->r, NBDSRV_RBUF_BYTES, false);
	x->rbuf = x->rb->data;
	x->xmit_task.fn = xmit_task_fn;
	/* Adopted payloads: plain sockets only (TLS decrypts into a buffer of
	 * its own, a pipe has no recvmsg). */
	if (info->adopt_bytes && netsrv_conn_can_rxv(x->nc) && !x->ro) {
		x->apool_cap = NBDSRV_CONN_CACHE_BYTES / info->adopt_bytes;
		x->apool = calloc(x->apool_cap, sizeof(*x->apool));
		x->arx = calloc(NBDSRV_ADOPT_MAX_IOV, sizeof(*x->arx));
		if (x->apool && x->arx)
			x->adopt_bytes = info->adopt_bytes;
	}
	if (!x->slots || !x->rbuf) {
		log_error("%s: out of memory entering transmission", x->name);
		netsrv_conn_close(x->nc, false, NULL);
		return;
	}
	for (unsigned i = x->nslots; i-- > 0;) {
		struct nbdsrv_req *req = &x->slots[i];

		req->x = x;
		req->tx.sent = xmit_req_sent;
		req->next_free = x->free_slots;
		x->free_slots = req;
	}
	log_debug("%s: export '%s' (%llu bytes, flags 0x%x%s%s)", x->name, e->name,
		  (unsigned long long)x->size, x->tflags, x->sr ? ", structured" : "",
		  netsrv_conn_tls(x->nc) ? ", TLS" : "");
	if (netsrv_conn_stopping(x->nc)) {
		/* The stop reached this worker before transmission began. */
		nbdsrv_xmit_drain(x);
		return;
	}
	xmit_pump(x);
}

void nbdsrv_xmit_drain(struct nbdsrv_xmit *x)
{
	if (netsrv_conn_closing(x->nc))
		return;
	x->draining = true;
	if (!x->slots)
		return;
	/* Stop receiving; requests already buffered are parsed and, with
	 * draining set, answered with ESHUTDOWN. */
	netsrv_rx_cancel(x->nc);
	if (!x->payload_req)
		xmit_pump(x);
	xmit_check_done(x);
}

void nbdsrv_xmit_free(struct nbdsrv_conn *c)
{
	struct nbdsrv_xmit *x = c->x;

	if (!x)
		return;
	c->x = NULL;
	if (x->slots) {
		for (unsigned i = 0; i < x->nslots; i++) {
			req_buf_drop(&x->slots[i]);
			if (x->slots[i].aiov)
				adopt_release(x, &x->slots[i]);
		}
		free(x->slots);
	}
	while (x->napool)
		free(x->apool[--x->napool]);
	free(x->apool);
	free(x->arx);
	for (unsigned i = 0; i < NBDSRV_RBUFS; i++)
		reactor_buf_put(x->r, x->rbufs[i].data, NBDSRV_RBUF_BYTES);
	nbdsrv_export_put(x->exp);
	free(x);
}
