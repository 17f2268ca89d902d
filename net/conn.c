/* SPDX-License-Identifier: MIT */
/*
 * conn.c: a connection's lifetime and its byte transport for the socket
 * engine (netsrv.h): receive and send over io_uring, optionally through
 * TLS (OpenSSL memory BIOs), the handshake deadline and the idle timer.
 *
 * Notes on the design
 * -------------------
 * - A connection lives on one worker reactor; nothing here takes a lock.
 * - At most one receive and one send are in flight (rx_op, tx_op). The
 *   receive side is driven by the protocol through netsrv_rx/netsrv_rxv;
 *   results always arrive on a later callback, never inside the call. The
 *   send side is a FIFO of items (struct netsrv_tx); a kick gathers as
 *   many queued iovecs as fit into one sendmsg (plaintext) or encrypts up
 *   to NETSRV_TLS_QUANTUM bytes of them into one ciphertext buffer (TLS),
 *   so replies finished in the same loop pass share a syscall. Partial
 *   sends resume where they stopped. The flush runs as a deferred task;
 *   it also calls the protocol's receive arm (netsrv_rx_later), and a
 *   protocol that parsed requests schedules it after their disk
 *   completions, so for an in-memory disk one loop pass answers a batch
 *   and the reactor hands the kernel the send and the next receive in
 *   the same io_uring_enter that waits.
 * - TLS: received ciphertext goes into the read BIO and SSL_read fills the
 *   caller's buffer; SSL_write output is drained from the write BIO into
 *   tls_out and sent. Small plaintext pieces (reply headers) are staged so
 *   a header and its data end up in one record. A reply's buffers are
 *   released as soon as they are encrypted. TLS 1.3 post-handshake
 *   messages produced while reading are flushed by the next kick.
 * - Teardown: netsrv_conn_close marks the connection closing, cancels the
 *   receive (and, for a hard close, the send) with IORING_OP_ASYNC_CANCEL,
 *   and the object is freed by netsrv_conn_maybe_free once no op, task or
 *   protocol reference (proto->busy) refers to it. A graceful close first
 *   lets queued output and the TLS close_notify go out.
 * - Timers: the handshake deadline runs from the start to
 *   netsrv_conn_established. A deadline rather than an idle timer: one
 *   that restarted on every byte would let a client that trickles a byte
 *   now and then hold its connection slot for ever. The idle timer moves
 *   no timer per request: a receive stamps the clock, and the timer, when
 *   it fires early, re-arms for the rest. Output queued since the timer
 *   last looked counts as activity at that look (a flag, no clock read
 *   per reply): a reply that a long request has just queued is work
 *   done, not a client that stopped reading (regression: a 12 s read
 *   under a 4 s timeout was cut off when its reply and the timer came in
 *   the same pass, test-nbd-limits).
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>

#include "common/compiler.h"
#include "common/log.h"
#include "net/netsrv-internal.h"
#include "net/tls.h"

static void conn_rx_task(struct reactor_task *t);
static void conn_ms_cqe(struct reactor_op *op, int res);
static void conn_rx_deliver_later(struct netsrv_conn *c, ssize_t res);
static void conn_tls_cqe(struct reactor_op *op, int res);
static void conn_tx_task(struct reactor_task *t);
static void conn_tx_cqe(struct reactor_op *op, int res);
static void conn_rx_pipe_cqe(struct reactor_op *op, int res);
static void conn_rx_pipe_poll_cqe(struct reactor_op *op, int res);
static void conn_cancel_cqe(struct reactor_op *op, int res);
static void conn_hs_timeout(struct reactor_timer *t);
static void conn_idle_timeout(struct reactor_timer *t);

static bool fd_is_socket(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void conn_format_name(struct netsrv_conn *c)
{
	char addr[INET6_ADDRSTRLEN + 16];

	if (c->stdio)
		snprintf(addr, sizeof(addr), "stdio");
	else if (c->peerlen == 0)
		snprintf(addr, sizeof(addr), "?");
	else
		netsrv_format_addr((const struct sockaddr *)&c->peer, addr, sizeof(addr));
	snprintf(c->name, sizeof(c->name), "%s #%llu %s", c->proto->name,
		 (unsigned long long)c->id, addr);
}

struct netsrv_conn *netsrv_conn_new(struct netsrv *s, const struct netsrv_proto *p, int rfd,
				    int wfd, const struct sockaddr *peer, socklen_t peerlen)
{
	struct netsrv_conn *c = calloc(1, sizeof(*c) + p->priv_bytes);

	if (!c)
		return NULL;
	c->srv = s;
	c->proto = p;
	c->id = atomic_fetch_add(&s->next_conn_id, 1);
	c->rfd = rfd;
	c->wfd = wfd;
	c->rfix = c->wfix = -1;
	if (peer && peerlen <= sizeof(c->peer)) {
		memcpy(&c->peer, peer, peerlen);
		c->peerlen = peerlen;
	}
	c->txq_tail = &c->txq_head;
	c->rx_task.fn = conn_rx_task;
	c->tx_task.fn = conn_tx_task;
	c->tx_op.cb = conn_tx_cqe;
	c->ms_op.cb = conn_ms_cqe;
	c->cancel_op.cb = conn_cancel_cqe;
	c->hs_timer.fn = conn_hs_timeout;
	c->idle_timer.fn = conn_idle_timeout;
	return c;
}

void netsrv_conn_start(struct reactor_task *t)
{
	struct netsrv_conn *c = container_of(t, struct netsrv_conn, start_task);
	struct netsrv_worker *w = c->w;

	c->is_sock = fd_is_socket(c->rfd) && fd_is_socket(c->wfd);
	/* Fixed files: no fd lookup per op (kernel 5.19; else the fds). */
	c->rfix = reactor_file_add(c->r, c->rfd);
	if (c->rfix < 0)
		c->rfix = -1;
	else if (c->wfd == c->rfd)
		c->wfix = c->rfix;
	else if ((c->wfix = reactor_file_add(c->r, c->wfd)) < 0)
		c->wfix = -1;
	conn_format_name(c);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	log_debug("%s: connected (worker %u)", c->name, w->index);
	if (w->stopping) {
		netsrv_conn_close(c, false, "server is shutting down");
		return;
	}
	if (c->srv->handshake_ns)
		reactor_timer_start(c->r, &c->hs_timer, c->srv->handshake_ns);
	c->proto->start(c, c->proto->ctx);
}

/* ---- accessors ------------------------------------------------------------- */

void *netsrv_conn_priv(const struct netsrv_conn *c)
{
	return (void *)c->priv;
}

const char *netsrv_conn_name(const struct netsrv_conn *c)
{
	return c->name;
}

struct reactor *netsrv_conn_reactor(const struct netsrv_conn *c)
{
	return c->r;
}

struct netsrv_tls *netsrv_conn_tls_creds(const struct netsrv_conn *c)
{
	return c->srv->opts.tls;
}

bool netsrv_conn_stopping(const struct netsrv_conn *c)
{
	return atomic_load_explicit(&c->srv->stop_requested, memory_order_relaxed);
}

bool netsrv_conn_closing(const struct netsrv_conn *c)
{
	return c->closing;
}

bool netsrv_conn_peer_gone(const struct netsrv_conn *c)
{
	/* POLLRDHUP: the peer's FIN (or our own SHUT_RD) has arrived, even
	 * if data before it is still unread; POLLHUP/POLLERR: both ways
	 * shut or reset. A pipe (-s) reports only POLLHUP. @c's descriptors
	 * stay open until conn_free. */
	struct pollfd p = { .fd = c->rfd, .events = POLLRDHUP };

	if (poll(&p, 1, 0) < 0)
		return false;
	return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

bool netsrv_conn_tls(const struct netsrv_conn *c)
{
	return c->tls;
}

bool netsrv_conn_can_rxv(const struct netsrv_conn *c)
{
	return c->is_sock && !c->ssl;
}

bool netsrv_rx_busy(const struct netsrv_conn *c)
{
	return c->rx_busy || c->rx_want || c->tls_parked || c->rx_task_busy;
}

bool netsrv_rx_waiting(const struct netsrv_conn *c)
{
	return c->rx_busy || c->rx_want || c->tls_parked;
}

static bool conn_busy(struct netsrv_conn *c, enum netsrv_busy what)
{
	return c->proto->busy && c->proto->busy(c, what);
}

/* ---- timers ------------------------------------------------------------------ */

static void conn_hs_timeout(struct reactor_timer *t)
{
	struct netsrv_conn *c = container_of(t, struct netsrv_conn, hs_timer);

	log_warn("%s: handshake not finished after %u s: dropping the client", c->name,
		 c->srv->opts.handshake_timeout_s);
	netsrv_conn_close(c, false, NULL);
}

/* Closes the connection once it has been quiet for the idle timeout, else
 * waits for the rest (see the design notes). */
static void conn_idle_timeout(struct reactor_timer *t)
{
	struct netsrv_conn *c = container_of(t, struct netsrv_conn, idle_timer);
	uint64_t idle = c->srv->idle_ns, quiet = reactor_now_ns() - c->last_active_ns;

	if (c->closing)
		return;
	if (conn_busy(c, NETSRV_BUSY_IDLE)) {
		c->tx_fresh = false;
		reactor_timer_start(c->r, t, idle);
		return;
	}
	if (c->tx_fresh) {
		c->tx_fresh = false;
		c->last_active_ns = reactor_now_ns();
		quiet = 0;
	}
	if (quiet < idle) {
		reactor_timer_start(c->r, t, idle - quiet);
		return;
	}
	log_info("%s: idle for %u s: closing the connection (--idle-timeout)", c->name,
		 c->srv->opts.idle_timeout_s);
	/* Output still waiting means a client that stopped reading: a
	 * graceful close would wait on that send for ever. */
	netsrv_conn_close(c, !c->tx_busy && !c->txq_head, NULL);
}

void netsrv_conn_established(struct netsrv_conn *c)
{
	reactor_timer_cancel(c->r, &c->hs_timer);
	if (c->srv->idle_ns && !c->idle_on && !c->closing) {
		c->idle_on = true;
		c->last_active_ns = reactor_now_ns();
		reactor_timer_start(c->r, &c->idle_timer, c->srv->idle_ns);
	}
}

void netsrv_conn_touch(struct netsrv_conn *c)
{
	if (c->idle_on)
		c->last_active_ns = reactor_now_ns();
}

/* ---- teardown -------------------------------------------------------------- */

/* Names the file of a prepared @sqe by its fixed index @fix, if it has one. */
static void conn_sqe_file(struct io_uring_sqe *sqe, int fix)
{
	if (fix >= 0) {
		sqe->fd = fix;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
}

static void conn_cancel(struct netsrv_conn *c, struct reactor_op *op)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(c->r);

	io_uring_prep_cancel(sqe, op, 0);
	reactor_sqe_set_op(sqe, &c->cancel_op);
	c->cancels_busy++;
}

static void conn_cancel_cqe(struct reactor_op *op, int res UNUSED)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, cancel_op);

	assert(c->cancels_busy > 0);
	c->cancels_busy--;
	netsrv_conn_maybe_free(c);
}

void netsrv_rx_cancel(struct netsrv_conn *c)
{
	if (c->rx_busy && (c->rx_op.cb == conn_rx_pipe_cqe || c->rx_op.cb == conn_rx_pipe_poll_cqe))
		c->rx_pipe_cancel = true;
	if (c->rx_busy)
		conn_cancel(c, &c->rx_op);
	if (c->rx_want) {
		/* Waiting on the multishot receive, which stays armed: what
		 * it brings waits in ms_q for the next netsrv_rx. */
		c->rx_want = false;
		conn_rx_deliver_later(c, -ECANCELED);
	}
}

/* Stops the multishot receive (its last completion comes later). */
static void conn_ms_stop(struct netsrv_conn *c)
{
	if (c->ms_busy && !c->ms_cancelling) {
		c->ms_cancelling = true;
		conn_cancel(c, &c->ms_op);
	}
}

void netsrv_conn_close(struct netsrv_conn *c, bool graceful, const char *why)
{
	if (c->closing) {
		if (!graceful && !c->hard) {
			c->hard = true;
			if (c->tx_busy)
				conn_cancel(c, &c->tx_op);
		}
		netsrv_conn_maybe_free(c);
		return;
	}
	if (why)
		log_debug("%s: closing (%s)", c->name, why);
	c->closing = true;
	c->hard = !graceful;
	reactor_timer_cancel(c->r, &c->hs_timer);
	reactor_timer_cancel(c->r, &c->idle_timer);
	/* Cancelling is enough for ops armed on the socket; a shutdown also
	 * ends one the kernel handed to a worker thread (a send blocked on a
	 * client that stopped reading). */
	if (c->is_sock) {
		shutdown(c->rfd, c->hard ? SHUT_RDWR : SHUT_RD);
		c->shut_wr = c->hard;
	}
	netsrv_rx_cancel(c);
	conn_ms_stop(c);
	if (c->hard && c->tx_busy)
		conn_cancel(c, &c->tx_op);
	netsrv_conn_maybe_free(c);
}

static bool conn_tls_out_pending(struct netsrv_conn *c)
{
	return c->ssl && (c->tls_out_len > c->tls_out_off || c->tls_stage_len ||
			  BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0);
}

static void conn_free(struct netsrv_conn *c)
{
	struct netsrv_worker *w = c->w;
	bool stdio = c->stdio;

	if (c->proto->free)
		c->proto->free(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	SSL_free(c->ssl);
	free(c->tls_in);
	free(c->tls_out);
	free(c->tls_stage);
	reactor_bufring_free(c->r, c->ms_ring);
	if (c->wfix != c->rfix)
		reactor_file_remove(c->r, c->wfix);
	reactor_file_remove(c->r, c->rfix);
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	free(c);
	netsrv_worker_conn_gone(w, stdio);
}

void netsrv_conn_maybe_free(struct netsrv_conn *c)
{
	static __thread bool in_here;
	bool outer;

	if (!c->closing)
		return;
	if (c->hard && c->is_sock && !c->shut_wr) {
		/* Became hard after a graceful start. */
		c->shut_wr = true;
		shutdown(c->wfd, SHUT_RDWR);
	}
	if (!c->hard) {
		/* Graceful: the replies in flight and queued go out first. */
		if (c->txq_head || c->tx_busy || c->tx_task_busy || conn_busy(c, NETSRV_BUSY_OUTPUT))
			return;
		if (c->ssl && c->tls && !c->tls_bye) {
			c->tls_bye = true;
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
			netsrv_tx_kick(c);
		}
		if (c->tx_busy || conn_tls_out_pending(c))
			return;
	}
	if (c->rx_busy || c->ms_busy || c->tx_busy || c->cancels_busy || c->rx_task_busy ||
	    c->tx_task_busy)
		return;
	/* Nothing refers to the queued output any more: release it. A
	 * release may call back here; the outer call finishes the job. */
	outer = !in_here;
	in_here = true;
	while (c->txq_head) {
		struct netsrv_tx *tx = c->txq_head;

		c->txq_head = tx->next;
		if (!c->txq_head)
			c->txq_tail = &c->txq_head;
		tx->sent(c, tx);
	}
	if (outer)
		in_here = false;
	if (!outer)
		return;
	if (c->proto->closed)
		c->proto->closed(c);
	if (conn_busy(c, NETSRV_BUSY_REFS))
		return;          /* the protocol's work still runs (disk requests) */
	conn_free(c);
}

void netsrv_conn_drain(struct netsrv_conn *c)
{
	if (c->closing)
		return;
	c->proto->drain(c);
}

/* ---- receive ---------------------------------------------------------------- */

static void conn_rx_deliver_later(struct netsrv_conn *c, ssize_t res)
{
	c->rx_task_res = res;
	c->rx_task_busy = true;
	reactor_defer(c->r, &c->rx_task);
}

static void conn_rx_task(struct reactor_task *t)
{
	struct netsrv_conn *c = container_of(t, struct netsrv_conn, rx_task);

	c->rx_task_busy = false;
	if (c->closing) {
		netsrv_conn_maybe_free(c);
		return;
	}
	if (c->rx_task_res > 0 && c->idle_on)
		c->last_active_ns = reactor_now_ns();
	c->rx_cb(c, c->rx_task_res);
}

/* The receive op finished: false when the connection is closing (and
 * may be gone), so its result goes nowhere. */
static bool conn_rx_op_end(struct netsrv_conn *c)
{
	c->rx_busy = false;
	if (c->closing) {
		netsrv_conn_maybe_free(c);
		return false;
	}
	return true;
}

static void conn_rx_plain_cqe(struct reactor_op *op, int res)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, rx_op);

	if (!conn_rx_op_end(c))
		return;
	if (res > 0 && c->rx_msg.msg_iov)
		reactor_mark_iov_defined(c->rx_msg.msg_iov, (int)c->rx_msg.msg_iovlen, (size_t)res);
	else if (res > 0)
		reactor_mark_defined(c->rx_buf, (size_t)res);
	c->rx_msg.msg_iov = NULL;
	if (res > 0 && c->idle_on)
		c->last_active_ns = reactor_now_ns();
	c->rx_cb(c, res);
}

/* Queues a receive of raw bytes (ciphertext or plaintext) into @buf. */
static void conn_rx_raw(struct netsrv_conn *c, void *buf, size_t len, bool all,
			void (*cb)(struct reactor_op *op, int res))
{
	struct io_uring_sqe *sqe;

	if (c->ms_busy) {
		/* TLS began while the multishot receive ran: the bytes it
		 * still brings go to the read BIO first (conn_ms_cqe). */
		assert(cb == conn_tls_cqe && buf == c->tls_in);
		c->tls_parked = true;
		return;
	}
	sqe = reactor_get_sqe(c->r);

	assert(!c->rx_busy);
	if (c->is_sock)
		io_uring_prep_recv(sqe, c->rfd, buf, len, all ? MSG_WAITALL : 0);
	else
		io_uring_prep_read(sqe, c->rfd, buf, (unsigned)len, (uint64_t)-1);
	conn_sqe_file(sqe, c->rfix);
	c->rx_op.cb = cb;
	reactor_sqe_set_op(sqe, &c->rx_op);
	c->rx_busy = true;
}

static void conn_tls_rx_try(struct netsrv_conn *c);
static void conn_tls_hs_step(struct netsrv_conn *c);

/* Ciphertext arrived, during the TLS handshake (c->tls false) or after:
 * into the read BIO, then on with whichever of the two was waiting. */
static void conn_tls_cqe(struct reactor_op *op, int res)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, rx_op);

	if (!conn_rx_op_end(c))
		return;
	if (res <= 0 && c->tls) {
		c->rx_cb(c, res);
		return;
	}
	if (res <= 0) {
		log_warn("%s: client left during the TLS handshake%s%s", c->name,
			 res < 0 ? ": " : "", res < 0 ? strerror(-res) : "");
		netsrv_conn_close(c, false, NULL);
		return;
	}
	reactor_mark_defined(c->tls_in, (size_t)res);
	if (BIO_write(SSL_get_rbio(c->ssl), c->tls_in, res) != res) {
		netsrv_conn_close(c, false, "out of memory buffering TLS input");
		return;
	}
	if (c->tls)
		conn_tls_rx_try(c);
	else
		conn_tls_hs_step(c);
}

static void conn_tls_rx_try(struct netsrv_conn *c)
{
	int n, e;
	char ebuf[256];

	ERR_clear_error();
	n = SSL_read(c->ssl, c->rx_buf, (int)MIN(c->rx_len, (size_t)INT_MAX));
	if (n > 0) {
		conn_rx_deliver_later(c, n);
		if (BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0)
			netsrv_tx_schedule(c);
		return;
	}
	e = SSL_get_error(c->ssl, n);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		if (BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0)
			netsrv_tx_kick(c);
		conn_rx_raw(c, c->tls_in, NETSRV_TLS_IN_BYTES, false, conn_tls_cqe);
		return;
	case SSL_ERROR_ZERO_RETURN:
		conn_rx_deliver_later(c, 0);
		return;
	default:
		log_warn("%s: TLS receive failed: %s", c->name,
			 netsrv_tls_errstr(ebuf, sizeof(ebuf)));
		conn_rx_deliver_later(c, -EPROTO);
		return;
	}
}

/* ---- multishot receive ------------------------------------------------------ */

/* Set once the kernel refused a multishot receive: every later connection
 * receives one-shot (a 5.19 kernel has buffer rings but not this). */
static atomic_bool conn_ms_unsupported;

/* The one-shot receive of the protocol's target, straight into it. */
static void conn_rx_direct(struct netsrv_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->rx_iov == &c->rx_one) {
		conn_rx_raw(c, c->rx_one.iov_base, c->rx_one.iov_len, c->rx_all, conn_rx_plain_cqe);
		return;
	}
	memset(&c->rx_msg, 0, sizeof(c->rx_msg));
	c->rx_msg.msg_iov = (struct iovec *)c->rx_iov;
	c->rx_msg.msg_iovlen = (size_t)c->rx_iovcnt;
	sqe = reactor_get_sqe(c->r);
	io_uring_prep_recvmsg(sqe, c->rfd, &c->rx_msg, MSG_WAITALL);
	conn_sqe_file(sqe, c->rfix);
	c->rx_op.cb = conn_rx_plain_cqe;
	reactor_sqe_set_op(sqe, &c->rx_op);
	c->rx_busy = true;
}

/* Whether this receive goes through the multishot receive: plain
 * sockets, once the kernel has taken the engine's buffer ring. */
static bool conn_ms_use(struct netsrv_conn *c)
{
	if (c->ms_ring)
		return true;
	if (c->ms_off || !c->is_sock || c->ssl)
		return false;
	if (atomic_load_explicit(&conn_ms_unsupported, memory_order_relaxed) ||
	    reactor_bufring_new(c->r, NETSRV_MS_BUFS, NETSRV_MS_BUF_BYTES, &c->ms_ring) < 0) {
		c->ms_off = true;
		return false;
	}
	return true;
}

static void conn_ms_arm(struct netsrv_conn *c)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(c->r);

	io_uring_prep_recv_multishot(sqe, c->rfd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)reactor_bufring_gid(c->ms_ring);
	conn_sqe_file(sqe, c->rfix);
	reactor_sqe_set_op(sqe, &c->ms_op);
	c->ms_busy = true;
}

/* Moves buffered bytes into the protocol's target; returns the count. */
static size_t conn_ms_copy(struct netsrv_conn *c)
{
	size_t n = 0, ioff = 0;
	int i = 0;

	while (c->ms_qlen > 0 && i < c->rx_iovcnt) {
		__typeof__(c->ms_q[0]) *e = &c->ms_q[c->ms_qhead];
		size_t take = MIN((size_t)(e->len - e->off), c->rx_iov[i].iov_len - ioff);

		memcpy((char *)c->rx_iov[i].iov_base + ioff,
		       (const char *)reactor_bufring_data(c->ms_ring, e->bid) + e->off, take);
		e->off += (uint32_t)take;
		ioff += take;
		n += take;
		if (ioff == c->rx_iov[i].iov_len) {
			i++;
			ioff = 0;
		}
		if (e->off == e->len) {
			reactor_bufring_recycle(c->ms_ring, e->bid);
			c->ms_qhead = (c->ms_qhead + 1) % NETSRV_MS_BUFS;
			c->ms_qlen--;
		}
	}
	return n;
}

/*
 * Serves the protocol's waiting receive from what the multishot receive
 * brought: bytes first, then the end of the stream. With nothing
 * buffered it makes sure bytes will come: the multishot op armed, or, for
 * a large payload (rx_direct), the op stopped and then a one-shot receive
 * straight into the target. @now: called from a completion, so the
 * protocol's callback may run at once; else it runs on the next pass.
 */
static void conn_ms_serve(struct netsrv_conn *c, bool now)
{
	ssize_t res;

	if (!c->rx_want)
		return;
	if (c->ms_qlen > 0) {
		res = (ssize_t)conn_ms_copy(c);
	} else if (c->ms_ended) {
		res = c->ms_res;
	} else {
		if (c->rx_direct || c->ms_off) {
			if (!c->ms_busy) {
				c->rx_want = false;
				conn_rx_direct(c);
			} else {
				conn_ms_stop(c);
			}
		} else if (!c->ms_busy) {
			conn_ms_arm(c);
		}
		return;
	}
	c->rx_want = false;
	if (!now) {
		conn_rx_deliver_later(c, res);
		return;
	}
	c->rx_cb(c, res);
}

static void conn_ms_cqe(struct reactor_op *op, int res)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, ms_op);
	uint32_t flags = reactor_cqe_flags(c->r);

	if (!(flags & IORING_CQE_F_MORE)) {
		c->ms_busy = false;
		c->ms_cancelling = false;
	}
	if (res > 0) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		void *data = reactor_bufring_data(c->ms_ring, bid);

		assert(flags & IORING_CQE_F_BUFFER);
		c->ms_worked = true;
		reactor_mark_defined(data, (size_t)res);
		if (c->idle_on)
			c->last_active_ns = reactor_now_ns();
		if (c->ssl) {
			/* TLS began (conn_rx_raw): ciphertext for the read BIO. */
			if (BIO_write(SSL_get_rbio(c->ssl), data, res) != res && !c->closing)
				netsrv_conn_close(c, false, "out of memory buffering TLS input");
			reactor_bufring_recycle(c->ms_ring, bid);
		} else {
			unsigned tail = (c->ms_qhead + c->ms_qlen) % NETSRV_MS_BUFS;

			assert(c->ms_qlen < NETSRV_MS_BUFS);
			c->ms_q[tail].bid = (uint16_t)bid;
			c->ms_q[tail].off = 0;
			c->ms_q[tail].len = (uint32_t)res;
			c->ms_qlen++;
		}
	} else if (res == -EINVAL && !c->ms_worked) {
		/* The kernel has no multishot receive (before 6.0). */
		atomic_store_explicit(&conn_ms_unsupported, true, memory_order_relaxed);
		c->ms_off = true;
	} else if (res != -ENOBUFS && !(res == -ECANCELED && !c->closing)) {
		/* The end of the stream or an error, after what is buffered.
		 * (-ENOBUFS: every buffer waits for the protocol; re-armed
		 * when it asks. -ECANCELED: conn_ms_stop.) */
		c->ms_ended = true;
		c->ms_res = res;
	}
	if (c->closing) {
		netsrv_conn_maybe_free(c);
		return;
	}
	if (c->ssl) {
		if (!c->ms_busy && c->tls_parked) {
			c->tls_parked = false;
			if (c->tls)
				conn_tls_rx_try(c);
			else
				conn_tls_hs_step(c);
		}
		return;
	}
	conn_ms_serve(c, true);
}

/*
 * Starts the receive of the protocol's target (rx_iov); @direct: past
 * the multishot ring whatever the size (netsrv_rx_exact).
 *
 * A payload (NETSRV_MS_DIRECT_BYTES or more, all of it wanted) goes
 * straight into its buffer, but a multishot receive armed for the header
 * before it has usually taken the first NETSRV_MS_BUFS buffers of it
 * already (the peer sends header and payload back to back), and those
 * bytes are copied once more, out of the ring. So after a payload the
 * next NETSRV_MS_QUIET_RX receives, while the multishot receive is not
 * armed and the ring is empty, are one-shot receives of exactly what the
 * protocol asks for (a header): the multishot receive is armed again only
 * once no payload has come for that many. Measured in a TCG guest on
 * 1 MiB NVMe/TCP writes, where every copy through user memory is
 * expensive (docs/bench-nvme.md, "Profile inside the guest").
 */
static void conn_rx_start(struct netsrv_conn *c, size_t len, bool direct)
{
	bool payload;

	if (!conn_ms_use(c)) {
		conn_rx_direct(c);
		return;
	}
	c->rx_want = true;
	payload = (c->rx_all || c->rx_iov != &c->rx_one) && len >= NETSRV_MS_DIRECT_BYTES;
	if (payload) {
		c->ms_quiet = NETSRV_MS_QUIET_RX;
	} else if (c->ms_quiet > 0 && !c->ms_busy && c->ms_qlen == 0) {
		c->ms_quiet--;
		direct = true;
	}
	c->rx_direct = direct || payload;
	conn_ms_serve(c, false);
}

static void conn_rx_buf(struct netsrv_conn *c, void *buf, size_t len, bool all, bool direct,
			netsrv_rx_cb cb)
{
	assert(!netsrv_rx_busy(c) && !c->closing && len > 0);
	c->rx_cb = cb;
	c->rx_buf = buf;
	c->rx_len = len;
	c->rx_msg.msg_iov = NULL;
	if (c->ssl) {
		conn_tls_rx_try(c);
		return;
	}
	c->rx_one.iov_base = buf;
	c->rx_one.iov_len = len;
	c->rx_iov = &c->rx_one;
	c->rx_iovcnt = 1;
	c->rx_all = all;
	conn_rx_start(c, len, direct);
}

void netsrv_rx(struct netsrv_conn *c, void *buf, size_t len, bool all, netsrv_rx_cb cb)
{
	conn_rx_buf(c, buf, len, all, false, cb);
}

void netsrv_rx_exact(struct netsrv_conn *c, void *buf, size_t len, netsrv_rx_cb cb)
{
	conn_rx_buf(c, buf, len, true, true, cb);
}

void netsrv_rxv(struct netsrv_conn *c, struct iovec *iov, int iovcnt, netsrv_rx_cb cb)
{
	size_t len = 0;

	assert(!netsrv_rx_busy(c) && !c->closing && !c->ssl && c->is_sock && iovcnt > 0);
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	c->rx_cb = cb;
	c->rx_iov = iov;
	c->rx_iovcnt = iovcnt;
	c->rx_all = true;
	conn_rx_start(c, len, false);
}

static void conn_rx_pipe_cqe(struct reactor_op *op, int res)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, rx_op);

	if (!conn_rx_op_end(c))
		return;
	/* A cancelled splice ends however the interrupted worker saw it
	 * (-ERESTARTSYS, -EINTR, a short count): the protocol asked for
	 * -ECANCELED. */
	if (c->rx_pipe_cancel)
		res = -ECANCELED;
	c->rx_pipe_cancel = false;
	if (res > 0 && c->idle_on)
		c->last_active_ns = reactor_now_ns();
	c->rx_cb(c, res);
}

/* The socket has bytes (or an end, or an error): splice them. */
static void conn_rx_pipe_poll_cqe(struct reactor_op *op, int res)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, rx_op);
	struct io_uring_sqe *sqe;

	if (c->closing || res < 0 || c->rx_pipe_cancel) {
		conn_rx_pipe_cqe(op, res < 0 ? res : -ECANCELED);
		return;
	}
	sqe = reactor_get_sqe(c->r);
	/* The pipe side never waits (a full pipe: -EAGAIN); the socket side
	 * has data, so the worker takes what is there and returns. */
	io_uring_prep_splice(sqe, c->rfix >= 0 ? c->rfix : c->rfd, -1, c->rx_pipe_fd, -1,
			     (unsigned)MIN(c->rx_pipe_len, (size_t)1 << 30),
			     SPLICE_F_NONBLOCK | SPLICE_F_MOVE |
			     (c->rfix >= 0 ? SPLICE_F_FD_IN_FIXED : 0));
	c->rx_op.cb = conn_rx_pipe_cqe;
	reactor_sqe_set_op(sqe, &c->rx_op);
}

void netsrv_rx_pipe(struct netsrv_conn *c, int pipe_wfd, size_t len, netsrv_rx_cb cb)
{
	struct io_uring_sqe *sqe;

	assert(!netsrv_rx_busy(c) && !c->closing && !c->ssl && c->is_sock && len > 0);
	c->rx_cb = cb;
	if (c->ms_busy || c->ms_qlen > 0 || c->ms_ended) {
		/* Bytes of the stream may be in the ring already (or on their
		 * way into it): they must come first, through memory. */
		conn_rx_deliver_later(c, -EAGAIN);
		return;
	}
	/* A payload: keep the next receives (headers) out of the ring, as
	 * conn_rx_start does. */
	c->ms_quiet = NETSRV_MS_QUIET_RX;
	c->rx_pipe_fd = pipe_wfd;
	c->rx_pipe_len = len;
	c->rx_pipe_cancel = false;
	/* Wait for data with a poll, not in the splice: a peer that goes
	 * quiet must not hold an io-wq worker. */
	sqe = reactor_get_sqe(c->r);
	io_uring_prep_poll_add(sqe, c->rfd, POLLIN);
	conn_sqe_file(sqe, c->rfix);
	c->rx_op.cb = conn_rx_pipe_poll_cqe;
	reactor_sqe_set_op(sqe, &c->rx_op);
	c->rx_busy = true;
}

/* ---- send -------------------------------------------------------------------- */

void netsrv_tx_queue(struct netsrv_conn *c, struct netsrv_tx *tx)
{
	c->tx_fresh = true;
	tx->next = NULL;
	tx->idx = 0;
	tx->off = 0;
	tx->pipe_len = tx->pipe_off = 0;
	*c->txq_tail = tx;
	c->txq_tail = &tx->next;
}

void netsrv_tx_queue_pipe(struct netsrv_conn *c, struct netsrv_tx *tx, int pipe_rfd, size_t len)
{
	assert(c->is_sock && !c->ssl);
	netsrv_tx_queue(c, tx);
	tx->pipe_fd = pipe_rfd;
	tx->pipe_len = len;
}

void netsrv_tx_schedule(struct netsrv_conn *c)
{
	if (c->tx_task_busy)
		return;
	c->tx_task_busy = true;
	reactor_defer(c->r, &c->tx_task);
}

void netsrv_rx_later(struct netsrv_conn *c, void (*arm)(struct netsrv_conn *c))
{
	c->rx_arm = arm;
	netsrv_tx_schedule(c);
}

static void conn_tx_task(struct reactor_task *t)
{
	struct netsrv_conn *c = container_of(t, struct netsrv_conn, tx_task);

	c->tx_task_busy = false;
	if (c->closing) {
		if (c->hard) {
			netsrv_conn_maybe_free(c);
			return;
		}
		c->rx_arm = NULL;
	}
	netsrv_tx_kick(c);
	if (c->rx_arm && !c->closing) {
		void (*arm)(struct netsrv_conn *c) = c->rx_arm;

		c->rx_arm = NULL;
		arm(c);
	}
}

/* Pops the head item and tells its owner. */
static void conn_tx_pop(struct netsrv_conn *c)
{
	struct netsrv_tx *tx = c->txq_head;

	c->txq_head = tx->next;
	if (!c->txq_head)
		c->txq_tail = &c->txq_head;
	tx->sent(c, tx);
}

/* Drops bytes @n from the front of the queue (they were sent). */
static void conn_tx_consume(struct netsrv_conn *c, size_t n)
{
	while (c->txq_head) {
		struct netsrv_tx *tx = c->txq_head;

		while (tx->idx < tx->iovcnt) {
			size_t left = tx->iov[tx->idx].iov_len - tx->off;

			if (n < left) {
				tx->off += n;
				return;
			}
			n -= left;
			tx->idx++;
			tx->off = 0;
		}
		if (tx->pipe_off < tx->pipe_len)
			return;         /* its pipe bytes go next */
		conn_tx_pop(c);
	}
}

static void conn_tx_idle(struct netsrv_conn *c)
{
	if (c->closing)
		netsrv_conn_maybe_free(c);
}

/* Queues one sendmsg of as much of the queue as fits. Returns false when
 * there was nothing to send. */
static bool conn_tx_plain(struct netsrv_conn *c)
{
	struct io_uring_sqe *sqe;
	unsigned n = 0;
	bool more = false;

	/* Items with nothing (left) to send complete at once. */
	while (c->txq_head) {
		struct netsrv_tx *tx = c->txq_head;

		while (tx->idx < tx->iovcnt && tx->iov[tx->idx].iov_len == tx->off) {
			tx->idx++;
			tx->off = 0;
		}
		if (tx->idx < tx->iovcnt || tx->pipe_off < tx->pipe_len)
			break;
		conn_tx_pop(c);
	}
	if (c->txq_head && c->txq_head->idx == c->txq_head->iovcnt) {
		/* The head's iovecs are out: its pipe bytes go next, once the
		 * socket has room (a poll, so that no io-wq worker waits for
		 * a peer that does not read; the splice may still wait there
		 * for the rest of its bytes to fit). */
		sqe = reactor_get_sqe(c->r);
		io_uring_prep_poll_add(sqe, c->wfd, POLLOUT);
		conn_sqe_file(sqe, c->wfix);
		reactor_sqe_set_op(sqe, &c->tx_op);
		c->tx_splice = true;
		c->tx_polled = false;
		return true;
	}
	for (struct netsrv_tx *tx = c->txq_head; tx && n < NETSRV_TX_IOV; tx = tx->next) {
		for (unsigned i = tx->idx; i < tx->iovcnt && n < NETSRV_TX_IOV; i++) {
			size_t skip = i == tx->idx ? tx->off : 0;

			if (tx->iov[i].iov_len == skip)
				continue;
			c->txiov[n].iov_base = (char *)tx->iov[i].iov_base + skip;
			c->txiov[n].iov_len = tx->iov[i].iov_len - skip;
			n++;
		}
		/* Nothing after a pipe's bytes may go before them. */
		if (tx->pipe_len) {
			more = true;
			break;
		}
	}
	if (n == 0)
		return false;
	sqe = reactor_get_sqe(c->r);
	if (c->is_sock) {
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = c->txiov;
		c->msg.msg_iovlen = n;
		io_uring_prep_sendmsg(sqe, c->wfd, &c->msg, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	} else {
		io_uring_prep_writev(sqe, c->wfd, c->txiov, n, (uint64_t)-1);
	}
	conn_sqe_file(sqe, c->wfix);
	reactor_sqe_set_op(sqe, &c->tx_op);
	return true;
}

/* TLS: encrypts one piece, through the staging buffer if it is small.
 * Returns false on a TLS error. */
static bool conn_tls_stage_flush(struct netsrv_conn *c)
{
	int n;

	if (c->tls_stage_len == 0)
		return true;
	n = SSL_write(c->ssl, c->tls_stage, (int)c->tls_stage_len);
	c->tls_stage_len = 0;
	return n > 0;
}

static bool conn_tls_write(struct netsrv_conn *c, const void *p, size_t len)
{
	if (len <= NETSRV_TLS_STAGE_BYTES / 4) {
		if (c->tls_stage_len + len > NETSRV_TLS_STAGE_BYTES && !conn_tls_stage_flush(c))
			return false;
		memcpy(c->tls_stage + c->tls_stage_len, p, len);
		c->tls_stage_len += len;
		return true;
	}
	/* A large piece: top the stage up to a full record first, so the
	 * header before it shares the record. */
	if (c->tls_stage_len) {
		size_t take = MIN(len, (size_t)NETSRV_TLS_STAGE_BYTES - c->tls_stage_len);

		memcpy(c->tls_stage + c->tls_stage_len, p, take);
		c->tls_stage_len += take;
		p = (const char *)p + take;
		len -= take;
		if (!conn_tls_stage_flush(c))
			return false;
		if (len == 0)
			return true;
	}
	return SSL_write(c->ssl, p, (int)len) == (int)len;
}

/* Encrypts part of the queue and queues a send of the ciphertext.
 * Returns false when there was nothing to send (or the connection failed). */
static bool conn_tx_tls(struct netsrv_conn *c)
{
	size_t budget = NETSRV_TLS_QUANTUM;
	BIO *wbio = SSL_get_wbio(c->ssl);
	struct io_uring_sqe *sqe;
	char ebuf[256];

	ERR_clear_error();
	while (c->txq_head && budget > 0 && c->tls && !c->tls_bye) {
		struct netsrv_tx *tx = c->txq_head;

		while (tx->idx < tx->iovcnt && budget > 0) {
			const char *p = (const char *)tx->iov[tx->idx].iov_base + tx->off;
			size_t take = MIN(tx->iov[tx->idx].iov_len - tx->off, budget);

			if (take && !conn_tls_write(c, p, take)) {
				log_warn("%s: TLS encryption failed: %s", c->name,
					 netsrv_tls_errstr(ebuf, sizeof(ebuf)));
				netsrv_conn_close(c, false, NULL);
				return false;
			}
			budget -= take;
			tx->off += take;
			if (tx->off == tx->iov[tx->idx].iov_len) {
				tx->idx++;
				tx->off = 0;
			}
		}
		if (tx->idx < tx->iovcnt)
			break;
		conn_tx_pop(c);
	}
	if (!conn_tls_stage_flush(c)) {
		log_warn("%s: TLS encryption failed: %s", c->name,
			 netsrv_tls_errstr(ebuf, sizeof(ebuf)));
		netsrv_conn_close(c, false, NULL);
		return false;
	}
	if (c->tls_out_off == c->tls_out_len)
		c->tls_out_off = c->tls_out_len = 0;
	while (c->tls_out_len < NETSRV_TLS_OUT_BYTES && BIO_ctrl_pending(wbio) > 0) {
		int n = BIO_read(wbio, c->tls_out + c->tls_out_len,
				 (int)(NETSRV_TLS_OUT_BYTES - c->tls_out_len));

		if (n <= 0)
			break;
		c->tls_out_len += (size_t)n;
	}
	if (c->tls_out_len == c->tls_out_off)
		return false;
	sqe = reactor_get_sqe(c->r);
	if (c->is_sock)
		io_uring_prep_send(sqe, c->wfd, c->tls_out + c->tls_out_off,
				   c->tls_out_len - c->tls_out_off, MSG_NOSIGNAL);
	else
		io_uring_prep_write(sqe, c->wfd, c->tls_out + c->tls_out_off,
				    (unsigned)(c->tls_out_len - c->tls_out_off), (uint64_t)-1);
	conn_sqe_file(sqe, c->wfix);
	reactor_sqe_set_op(sqe, &c->tx_op);
	return true;
}

/*
 * tx_busy is held while a kick runs and while a completion is processed,
 * not only while a send is in flight: the sent() callbacks it triggers may
 * queue more, start the next handshake step or close the connection, and
 * the flag keeps the connection from being freed (and the kick from
 * re-entering) until this code is done with it.
 */
void netsrv_tx_kick(struct netsrv_conn *c)
{
	bool queued;

	if (c->tx_busy || (c->closing && c->hard))
		return;
	c->tx_busy = true;
	queued = c->ssl ? conn_tx_tls(c) : conn_tx_plain(c);
	if (!queued) {
		c->tx_busy = false;
		conn_tx_idle(c);
	}
}

static void conn_tx_cqe(struct reactor_op *op, int res)
{
	struct netsrv_conn *c = container_of(op, struct netsrv_conn, tx_op);

	if (res < 0) {
		c->tx_busy = false;
		c->tx_splice = false;
		if (res == -EAGAIN && !c->closing)
			/* SPLICE_F_NONBLOCK found the pipe empty: the protocol
			 * queued bytes it does not hold. */
			log_error("%s: a reply's pipe ran dry", c->name);
		else if (!c->closing) {
			if (res == -EPIPE || res == -ECONNRESET)
				log_debug("%s: client went away while we were sending", c->name);
			else
				log_warn("%s: send failed: %s", c->name, strerror(-res));
		}
		netsrv_conn_close(c, false, NULL);
		return;
	}
	/* A client that reads, however slowly, is not idle (a poll for
	 * room says nothing about that). */
	if (res > 0 && c->idle_on && !(c->tx_splice && !c->tx_polled))
		c->last_active_ns = reactor_now_ns();
	if (c->ssl) {
		c->tls_out_off += (size_t)res;
		if (c->tls_out_off == c->tls_out_len)
			c->tls_out_off = c->tls_out_len = 0;
	} else if (c->tx_splice && !c->tx_polled) {
		/* The socket has room: the splice, on an io-wq worker (io_uring
		 * runs every splice there). The pipe side never waits. */
		struct netsrv_tx *tx = c->txq_head;
		struct io_uring_sqe *sqe;

		if (c->closing && c->hard) {
			c->tx_busy = false;
			c->tx_splice = false;
			netsrv_conn_maybe_free(c);
			return;
		}
		sqe = reactor_get_sqe(c->r);
		io_uring_prep_splice(sqe, tx->pipe_fd, -1, c->wfd, -1,
				     (unsigned)MIN(tx->pipe_len - tx->pipe_off, (size_t)1 << 30),
				     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		conn_sqe_file(sqe, c->wfix);
		reactor_sqe_set_op(sqe, &c->tx_op);
		c->tx_polled = true;
		return;
	} else if (c->tx_splice) {
		struct netsrv_tx *tx = c->txq_head;

		c->tx_splice = false;
		tx->pipe_off += (size_t)res;
		if (res == 0) {
			/* The pipe ran dry: the protocol queued bytes it
			 * does not hold. */
			log_error("%s: pipe empty with %zu bytes of a reply left to send", c->name,
				  tx->pipe_len - tx->pipe_off);
			c->tx_busy = false;
			netsrv_conn_close(c, false, NULL);
			return;
		}
		if (tx->pipe_off == tx->pipe_len)
			conn_tx_pop(c);
	} else {
		conn_tx_consume(c, (size_t)res);
	}
	c->tx_busy = false;
	if (c->closing && c->hard) {
		netsrv_conn_maybe_free(c);
		return;
	}
	netsrv_tx_kick(c);
}

/* ---- TLS handshake ------------------------------------------------------------- */

static void conn_tls_hs_step(struct netsrv_conn *c)
{
	char ebuf[512];
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls = true;
		log_debug("%s: TLS established (%s, %s)", c->name, SSL_get_version(c->ssl),
			  SSL_get_cipher_name(c->ssl));
		netsrv_tx_kick(c);
		c->tls_ready(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		netsrv_tx_kick(c);
		conn_rx_raw(c, c->tls_in, NETSRV_TLS_IN_BYTES, false, conn_tls_cqe);
		return;
	}
	log_warn("%s: TLS handshake failed: %s", c->name,
		 netsrv_tls_errstr(ebuf, sizeof(ebuf)));
	/* Let the alert go out, but no close_notify after a failed
	 * handshake. */
	c->tls_bye = true;
	netsrv_tx_kick(c);
	netsrv_conn_close(c, true, NULL);
}

void netsrv_tls_begin(struct netsrv_conn *c, void (*ready)(struct netsrv_conn *c))
{
	assert(c->srv->opts.tls && !c->ssl);
	c->tls_in = malloc(NETSRV_TLS_IN_BYTES);
	c->tls_out = malloc(NETSRV_TLS_OUT_BYTES);
	c->tls_stage = malloc(NETSRV_TLS_STAGE_BYTES);
	c->ssl = c->tls_in && c->tls_out && c->tls_stage ? netsrv_tls_session(c->srv->opts.tls)
							  : NULL;
	if (!c->ssl) {
		log_error("%s: out of memory starting TLS", c->name);
		netsrv_conn_close(c, false, NULL);
		return;
	}
	SSL_set_app_data(c->ssl, c->name);
	c->tls_ready = ready;
	if (c->ms_ring) {
		/* Bytes the multishot receive already brought are the first
		 * ciphertext; the op stops, TLS receives one-shot. */
		c->ms_off = true;
		conn_ms_stop(c);
		while (c->ms_qlen > 0) {
			__typeof__(c->ms_q[0]) *e = &c->ms_q[c->ms_qhead];
			int n = (int)(e->len - e->off);

			if (BIO_write(SSL_get_rbio(c->ssl),
				      (const char *)reactor_bufring_data(c->ms_ring, e->bid) + e->off,
				      n) != n) {
				netsrv_conn_close(c, false, "out of memory buffering TLS input");
				return;
			}
			reactor_bufring_recycle(c->ms_ring, e->bid);
			c->ms_qhead = (c->ms_qhead + 1) % NETSRV_MS_BUFS;
			c->ms_qlen--;
		}
	}
	conn_tls_hs_step(c);
}

int netsrv_conn_local_addr(const struct netsrv_conn *c, struct sockaddr *addr, unsigned *len)
{
	socklen_t l = *len;

	if (!c->is_sock)
		return -ENOTSOCK;
	if (getsockname(c->rfd, addr, &l) < 0)
		return -errno;
	*len = l;
	return 0;
}
