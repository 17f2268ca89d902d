/* SPDX-License-Identifier: MIT */
/*
 * conn.c: an NBD connection's lifetime and its byte transport: receive and
 * send over io_uring, optionally through TLS (OpenSSL memory BIOs).
 *
 * Notes on the design
 * -------------------
 * - A connection lives on one worker reactor; nothing here takes a lock.
 * - At most one receive and one send are in flight (rx_op, tx_op). The
 *   receive side is driven by its user (handshake.c, transmit.c) through
 *   nbdsrv_rx; results always arrive on a later callback, never inside the
 *   call. The send side is a FIFO of items (struct nbdsrv_tx); a kick
 *   gathers as many queued iovecs as fit into one sendmsg (plaintext) or
 *   encrypts up to NBDSRV_TLS_QUANTUM bytes of them into one ciphertext
 *   buffer (TLS), so replies finished in the same loop pass share a
 *   syscall. Partial sends resume where they stopped. The flush runs as a
 *   deferred task; in transmission it also re-arms the receive
 *   (nbdsrv_rx_later), and a pass that parsed requests schedules it after
 *   their disk completions, so for an in-memory disk one loop pass answers
 *   a batch and the reactor hands the kernel the send and the next
 *   receive in the same io_uring_enter that waits.
 * - TLS: received ciphertext goes into the read BIO and SSL_read fills the
 *   caller's buffer; SSL_write output is drained from the write BIO into
 *   tls_out and sent. Small plaintext pieces (reply headers) are staged so
 *   a header and its data end up in one record. A reply's buffers are
 *   released as soon as they are encrypted. TLS 1.3 post-handshake
 *   messages produced while reading are flushed by the next kick.
 * - Teardown: nbdsrv_conn_close marks the connection closing, cancels the
 *   receive (and, for a hard close, the send) with IORING_OP_ASYNC_CANCEL,
 *   and the object is freed by nbdsrv_conn_maybe_free once no op, task or
 *   disk request refers to it. A graceful close first lets queued replies
 *   and the TLS close_notify go out.
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
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
#include "nbd/server-internal.h"
#include "nbd/tls.h"

static void conn_rx_task(struct reactor_task *t);
static void conn_tx_task(struct reactor_task *t);
static void conn_tx_cqe(struct reactor_op *op, int res);
static void conn_cancel_cqe(struct reactor_op *op, int res);

static bool fd_is_socket(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void conn_format_peer(struct nbdsrv_conn *c)
{
	const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
	char host[INET6_ADDRSTRLEN] = "?";

	if (c->stdio || c->peerlen == 0) {
		snprintf(c->name, sizeof(c->name), "#%llu %s", (unsigned long long)c->id,
			 c->stdio ? "stdio" : "?");
		return;
	}
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(c->name, sizeof(c->name), "#%llu %s:%u", (unsigned long long)c->id, host,
			 ntohs(in->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(c->name, sizeof(c->name), "#%llu [%s]:%u", (unsigned long long)c->id,
			 host, ntohs(in6->sin6_port));
		break;
	}
	default:
		snprintf(c->name, sizeof(c->name), "#%llu unix", (unsigned long long)c->id);
		break;
	}
}

struct nbdsrv_conn *nbdsrv_conn_new(struct nbdsrv *s, int rfd, int wfd,
				    const struct sockaddr *peer, socklen_t peerlen)
{
	struct nbdsrv_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->srv = s;
	c->id = atomic_fetch_add(&s->next_conn_id, 1);
	c->rfd = rfd;
	c->wfd = wfd;
	if (peer && peerlen <= sizeof(c->peer)) {
		memcpy(&c->peer, peer, peerlen);
		c->peerlen = peerlen;
	}
	c->txq_tail = &c->txq_head;
	c->rx_task.fn = conn_rx_task;
	c->tx_task.fn = conn_tx_task;
	c->tx_op.cb = conn_tx_cqe;
	c->cancel_op.cb = conn_cancel_cqe;
	return c;
}

void nbdsrv_conn_start(struct reactor_task *t)
{
	struct nbdsrv_conn *c = container_of(t, struct nbdsrv_conn, start_task);
	struct nbdsrv_worker *w = c->w;

	c->is_sock = fd_is_socket(c->rfd) && fd_is_socket(c->wfd);
	conn_format_peer(c);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	log_debug("nbd %s: connected (worker %u)", c->name, w->index);
	if (w->stopping) {
		nbdsrv_conn_close(c, false, "server is shutting down");
		return;
	}
	nbdsrv_hs_begin(c);
}

/* ---- teardown -------------------------------------------------------------- */

static void conn_cancel(struct nbdsrv_conn *c, struct reactor_op *op)
{
	struct io_uring_sqe *sqe = reactor_get_sqe(c->r);

	io_uring_prep_cancel(sqe, op, 0);
	reactor_sqe_set_op(sqe, &c->cancel_op);
	c->cancels_busy++;
}

static void conn_cancel_cqe(struct reactor_op *op, int res UNUSED)
{
	struct nbdsrv_conn *c = container_of(op, struct nbdsrv_conn, cancel_op);

	assert(c->cancels_busy > 0);
	c->cancels_busy--;
	nbdsrv_conn_maybe_free(c);
}

void nbdsrv_rx_cancel(struct nbdsrv_conn *c)
{
	if (c->rx_busy)
		conn_cancel(c, &c->rx_op);
}

void nbdsrv_conn_close(struct nbdsrv_conn *c, bool graceful, const char *why)
{
	if (c->closing) {
		if (!graceful && !c->hard) {
			c->hard = true;
			if (c->tx_busy)
				conn_cancel(c, &c->tx_op);
		}
		nbdsrv_conn_maybe_free(c);
		return;
	}
	if (why)
		log_debug("nbd %s: closing (%s)", c->name, why);
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
	nbdsrv_rx_cancel(c);
	if (c->hard && c->tx_busy)
		conn_cancel(c, &c->tx_op);
	nbdsrv_conn_maybe_free(c);
}

static bool conn_tls_out_pending(struct nbdsrv_conn *c)
{
	return c->ssl && (c->tls_out_len > c->tls_out_off || c->tls_stage_len ||
			  BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0);
}

static void conn_free(struct nbdsrv_conn *c)
{
	struct nbdsrv_worker *w = c->w;
	bool stdio = c->stdio;

	log_debug("nbd %s: closed after %llu requests (%llu read passes split, %llu waits for "
		  "the in-flight budget, %llu write blocks adopted)", c->name,
		  (unsigned long long)c->nrequests, (unsigned long long)c->npass_splits,
		  (unsigned long long)c->nbudget_waits, (unsigned long long)c->nadopted);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nbdsrv_xmit_free(c);
	nbdsrv_hs_free(c);
	SSL_free(c->ssl);
	free(c->tls_in);
	free(c->tls_out);
	free(c->tls_stage);
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	c->freed = true;
	free(c);
	nbdsrv_worker_conn_gone(w, stdio);
}

void nbdsrv_conn_maybe_free(struct nbdsrv_conn *c)
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
		if (c->ninflight > (c->payload_req ? 1u : 0u) || c->txq_head || c->tx_busy ||
		    c->tx_task_busy || c->xmit_task_busy)
			return;
		if (c->ssl && c->tls && !c->tls_bye) {
			c->tls_bye = true;
			ERR_clear_error();
			(void)SSL_shutdown(c->ssl);
			nbdsrv_tx_kick(c);
		}
		if (c->tx_busy || conn_tls_out_pending(c))
			return;
	}
	if (c->rx_busy || c->tx_busy || c->cancels_busy || c->rx_task_busy || c->tx_task_busy ||
	    c->xmit_task_busy)
		return;
	/* Nothing refers to the queued replies any more: release them. A
	 * release may call back here; the outer call finishes the job. */
	outer = !in_here;
	in_here = true;
	while (c->txq_head) {
		struct nbdsrv_tx *tx = c->txq_head;

		c->txq_head = tx->next;
		if (!c->txq_head)
			c->txq_tail = &c->txq_head;
		tx->sent(c, tx);
	}
	if (outer)
		in_here = false;
	if (!outer)
		return;
	if (c->payload_req)
		nbdsrv_xmit_free_payload_req(c);
	if (c->ninflight > 0)
		return;          /* disk requests still running */
	conn_free(c);
}

void nbdsrv_conn_shutdown(struct nbdsrv_conn *c)
{
	if (c->closing)
		return;
	if (c->phase == NBDSRV_PH_TRANSMIT)
		nbdsrv_xmit_drain(c);
	else
		nbdsrv_hs_shutdown(c);
}

/* ---- receive ---------------------------------------------------------------- */

static void conn_rx_deliver_later(struct nbdsrv_conn *c, ssize_t res)
{
	c->rx_task_res = res;
	c->rx_task_busy = true;
	reactor_defer(c->r, &c->rx_task);
}

static void conn_rx_task(struct reactor_task *t)
{
	struct nbdsrv_conn *c = container_of(t, struct nbdsrv_conn, rx_task);

	c->rx_task_busy = false;
	if (c->closing) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	c->rx_cb(c, c->rx_task_res);
}

static void conn_rx_plain_cqe(struct reactor_op *op, int res)
{
	struct nbdsrv_conn *c = container_of(op, struct nbdsrv_conn, rx_op);

	c->rx_busy = false;
	if (c->closing) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	if (res > 0 && c->rx_msg.msg_iov)
		reactor_mark_iov_defined(c->rx_msg.msg_iov, (int)c->rx_msg.msg_iovlen, (size_t)res);
	else if (res > 0)
		reactor_mark_defined(c->rx_buf, (size_t)res);
	c->rx_msg.msg_iov = NULL;
	c->rx_cb(c, res);
}

/* Queues a receive of raw bytes (ciphertext or plaintext) into @buf. */
static void conn_rx_raw(struct nbdsrv_conn *c, void *buf, size_t len, bool all,
			void (*cb)(struct reactor_op *op, int res))
{
	struct io_uring_sqe *sqe = reactor_get_sqe(c->r);

	assert(!c->rx_busy);
	if (c->is_sock)
		io_uring_prep_recv(sqe, c->rfd, buf, len, all ? MSG_WAITALL : 0);
	else
		io_uring_prep_read(sqe, c->rfd, buf, (unsigned)len, (uint64_t)-1);
	c->rx_op.cb = cb;
	reactor_sqe_set_op(sqe, &c->rx_op);
	c->rx_busy = true;
}

static void conn_tls_rx_try(struct nbdsrv_conn *c);

static void conn_tls_rx_cqe(struct reactor_op *op, int res)
{
	struct nbdsrv_conn *c = container_of(op, struct nbdsrv_conn, rx_op);

	c->rx_busy = false;
	if (c->closing) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	if (res <= 0) {
		c->rx_cb(c, res);
		return;
	}
	reactor_mark_defined(c->tls_in, (size_t)res);
	if (BIO_write(SSL_get_rbio(c->ssl), c->tls_in, res) != res) {
		nbdsrv_conn_close(c, false, "out of memory buffering TLS input");
		return;
	}
	conn_tls_rx_try(c);
}

static void conn_tls_rx_try(struct nbdsrv_conn *c)
{
	int n, e;
	char ebuf[256];

	ERR_clear_error();
	n = SSL_read(c->ssl, c->rx_buf, (int)MIN(c->rx_len, (size_t)INT_MAX));
	if (n > 0) {
		conn_rx_deliver_later(c, n);
		if (BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0)
			nbdsrv_tx_schedule(c);
		return;
	}
	e = SSL_get_error(c->ssl, n);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		if (BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0)
			nbdsrv_tx_kick(c);
		conn_rx_raw(c, c->tls_in, NBDSRV_TLS_IN_BYTES, false, conn_tls_rx_cqe);
		return;
	case SSL_ERROR_ZERO_RETURN:
		conn_rx_deliver_later(c, 0);
		return;
	default:
		log_warn("nbd %s: TLS receive failed: %s", c->name,
			 nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
		conn_rx_deliver_later(c, -EPROTO);
		return;
	}
}

void nbdsrv_rx(struct nbdsrv_conn *c, void *buf, size_t len, bool all, nbdsrv_rx_cb cb)
{
	assert(!c->rx_busy && !c->rx_task_busy && !c->closing && len > 0);
	c->rx_cb = cb;
	c->rx_buf = buf;
	c->rx_len = len;
	c->rx_all = all;
	c->rx_msg.msg_iov = NULL;
	if (c->ssl) {
		conn_tls_rx_try(c);
		return;
	}
	conn_rx_raw(c, buf, len, all, conn_rx_plain_cqe);
}

void nbdsrv_rxv(struct nbdsrv_conn *c, struct iovec *iov, int iovcnt, nbdsrv_rx_cb cb)
{
	struct io_uring_sqe *sqe;

	assert(!c->rx_busy && !c->rx_task_busy && !c->closing && !c->ssl && c->is_sock &&
	       iovcnt > 0);
	c->rx_cb = cb;
	memset(&c->rx_msg, 0, sizeof(c->rx_msg));
	c->rx_msg.msg_iov = iov;
	c->rx_msg.msg_iovlen = (size_t)iovcnt;
	sqe = reactor_get_sqe(c->r);
	io_uring_prep_recvmsg(sqe, c->rfd, &c->rx_msg, MSG_WAITALL);
	c->rx_op.cb = conn_rx_plain_cqe;
	reactor_sqe_set_op(sqe, &c->rx_op);
	c->rx_busy = true;
}

/* ---- send -------------------------------------------------------------------- */

void nbdsrv_tx_queue(struct nbdsrv_conn *c, struct nbdsrv_tx *tx)
{
	tx->next = NULL;
	tx->idx = 0;
	tx->off = 0;
	*c->txq_tail = tx;
	c->txq_tail = &tx->next;
}

void nbdsrv_tx_schedule(struct nbdsrv_conn *c)
{
	if (c->tx_task_busy)
		return;
	c->tx_task_busy = true;
	reactor_defer(c->r, &c->tx_task);
}

void nbdsrv_rx_later(struct nbdsrv_conn *c)
{
	c->rx_want = true;
	nbdsrv_tx_schedule(c);
}

static void conn_tx_task(struct reactor_task *t)
{
	struct nbdsrv_conn *c = container_of(t, struct nbdsrv_conn, tx_task);

	c->tx_task_busy = false;
	if (c->closing) {
		if (c->hard) {
			nbdsrv_conn_maybe_free(c);
			return;
		}
		c->rx_want = false;
	}
	nbdsrv_tx_kick(c);
	if (c->rx_want && !c->closing) {
		c->rx_want = false;
		c->rx_arm(c);
	}
}

/* Pops the head item and tells its owner. */
static void conn_tx_pop(struct nbdsrv_conn *c)
{
	struct nbdsrv_tx *tx = c->txq_head;

	c->txq_head = tx->next;
	if (!c->txq_head)
		c->txq_tail = &c->txq_head;
	tx->sent(c, tx);
}

/* Drops bytes @n from the front of the queue (they were sent). */
static void conn_tx_consume(struct nbdsrv_conn *c, size_t n)
{
	while (c->txq_head) {
		struct nbdsrv_tx *tx = c->txq_head;

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
		conn_tx_pop(c);
	}
}

static void conn_tx_idle(struct nbdsrv_conn *c)
{
	if (c->closing)
		nbdsrv_conn_maybe_free(c);
}

/* Queues one sendmsg of as much of the queue as fits. Returns false when
 * there was nothing to send. */
static bool conn_tx_plain(struct nbdsrv_conn *c)
{
	struct io_uring_sqe *sqe;
	unsigned n = 0;

	/* Items with nothing (left) to send complete at once. */
	while (c->txq_head) {
		struct nbdsrv_tx *tx = c->txq_head;

		while (tx->idx < tx->iovcnt && tx->iov[tx->idx].iov_len == tx->off) {
			tx->idx++;
			tx->off = 0;
		}
		if (tx->idx < tx->iovcnt)
			break;
		conn_tx_pop(c);
	}
	for (struct nbdsrv_tx *tx = c->txq_head; tx && n < NBDSRV_TX_IOV; tx = tx->next) {
		for (unsigned i = tx->idx; i < tx->iovcnt && n < NBDSRV_TX_IOV; i++) {
			size_t skip = i == tx->idx ? tx->off : 0;

			if (tx->iov[i].iov_len == skip)
				continue;
			c->txiov[n].iov_base = (char *)tx->iov[i].iov_base + skip;
			c->txiov[n].iov_len = tx->iov[i].iov_len - skip;
			n++;
		}
	}
	if (n == 0)
		return false;
	sqe = reactor_get_sqe(c->r);
	if (c->is_sock) {
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = c->txiov;
		c->msg.msg_iovlen = n;
		io_uring_prep_sendmsg(sqe, c->wfd, &c->msg, MSG_NOSIGNAL);
	} else {
		io_uring_prep_writev(sqe, c->wfd, c->txiov, n, (uint64_t)-1);
	}
	reactor_sqe_set_op(sqe, &c->tx_op);
	return true;
}

/* TLS: encrypts one piece, through the staging buffer if it is small.
 * Returns false on a TLS error. */
static bool conn_tls_stage_flush(struct nbdsrv_conn *c)
{
	int n;

	if (c->tls_stage_len == 0)
		return true;
	n = SSL_write(c->ssl, c->tls_stage, (int)c->tls_stage_len);
	c->tls_stage_len = 0;
	return n > 0;
}

static bool conn_tls_write(struct nbdsrv_conn *c, const void *p, size_t len)
{
	if (len <= NBDSRV_TLS_STAGE_BYTES / 4) {
		if (c->tls_stage_len + len > NBDSRV_TLS_STAGE_BYTES && !conn_tls_stage_flush(c))
			return false;
		memcpy(c->tls_stage + c->tls_stage_len, p, len);
		c->tls_stage_len += len;
		return true;
	}
	/* A large piece: top the stage up to a full record first, so the
	 * header before it shares the record. */
	if (c->tls_stage_len) {
		size_t take = MIN(len, (size_t)NBDSRV_TLS_STAGE_BYTES - c->tls_stage_len);

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
static bool conn_tx_tls(struct nbdsrv_conn *c)
{
	size_t budget = NBDSRV_TLS_QUANTUM;
	BIO *wbio = SSL_get_wbio(c->ssl);
	struct io_uring_sqe *sqe;
	char ebuf[256];

	ERR_clear_error();
	while (c->txq_head && budget > 0 && c->tls && !c->tls_bye) {
		struct nbdsrv_tx *tx = c->txq_head;

		while (tx->idx < tx->iovcnt && budget > 0) {
			const char *p = (const char *)tx->iov[tx->idx].iov_base + tx->off;
			size_t take = MIN(tx->iov[tx->idx].iov_len - tx->off, budget);

			if (take && !conn_tls_write(c, p, take)) {
				log_warn("nbd %s: TLS encryption failed: %s", c->name,
					 nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
				nbdsrv_conn_close(c, false, NULL);
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
		log_warn("nbd %s: TLS encryption failed: %s", c->name,
			 nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
		nbdsrv_conn_close(c, false, NULL);
		return false;
	}
	if (c->tls_out_off == c->tls_out_len)
		c->tls_out_off = c->tls_out_len = 0;
	while (c->tls_out_len < NBDSRV_TLS_OUT_BYTES && BIO_ctrl_pending(wbio) > 0) {
		int n = BIO_read(wbio, c->tls_out + c->tls_out_len,
				 (int)(NBDSRV_TLS_OUT_BYTES - c->tls_out_len));

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
void nbdsrv_tx_kick(struct nbdsrv_conn *c)
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
	struct nbdsrv_conn *c = container_of(op, struct nbdsrv_conn, tx_op);

	if (res < 0) {
		c->tx_busy = false;
		if (!c->closing) {
			if (res == -EPIPE || res == -ECONNRESET)
				log_debug("nbd %s: client went away while we were sending", c->name);
			else
				log_warn("nbd %s: send failed: %s", c->name, strerror(-res));
		}
		nbdsrv_conn_close(c, false, NULL);
		return;
	}
	if (c->ssl) {
		c->tls_out_off += (size_t)res;
		if (c->tls_out_off == c->tls_out_len)
			c->tls_out_off = c->tls_out_len = 0;
	} else {
		conn_tx_consume(c, (size_t)res);
	}
	c->tx_busy = false;
	if (c->closing && c->hard) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	nbdsrv_tx_kick(c);
}

/* ---- TLS handshake ------------------------------------------------------------- */

static void conn_tls_hs_step(struct nbdsrv_conn *c);

static void conn_tls_hs_cqe(struct reactor_op *op, int res)
{
	struct nbdsrv_conn *c = container_of(op, struct nbdsrv_conn, rx_op);

	c->rx_busy = false;
	if (c->closing) {
		nbdsrv_conn_maybe_free(c);
		return;
	}
	if (res <= 0) {
		log_warn("nbd %s: client left during the TLS handshake%s%s", c->name,
			 res < 0 ? ": " : "", res < 0 ? strerror(-res) : "");
		nbdsrv_conn_close(c, false, NULL);
		return;
	}
	reactor_mark_defined(c->tls_in, (size_t)res);
	if (BIO_write(SSL_get_rbio(c->ssl), c->tls_in, res) != res) {
		nbdsrv_conn_close(c, false, "out of memory buffering TLS input");
		return;
	}
	conn_tls_hs_step(c);
}

static void conn_tls_hs_step(struct nbdsrv_conn *c)
{
	char ebuf[512];
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls = true;
		log_debug("nbd %s: TLS established (%s, %s)", c->name, SSL_get_version(c->ssl),
			  SSL_get_cipher_name(c->ssl));
		nbdsrv_tx_kick(c);
		c->tls_ready(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		nbdsrv_tx_kick(c);
		conn_rx_raw(c, c->tls_in, NBDSRV_TLS_IN_BYTES, false, conn_tls_hs_cqe);
		return;
	}
	log_warn("nbd %s: TLS handshake failed: %s", c->name,
		 nbdsrv_tls_errstr(ebuf, sizeof(ebuf)));
	/* Let the alert go out, but no close_notify after a failed
	 * handshake. */
	c->tls_bye = true;
	nbdsrv_tx_kick(c);
	nbdsrv_conn_close(c, true, NULL);
}

void nbdsrv_tls_begin(struct nbdsrv_conn *c, void (*ready)(struct nbdsrv_conn *c))
{
	c->tls_in = malloc(NBDSRV_TLS_IN_BYTES);
	c->tls_out = malloc(NBDSRV_TLS_OUT_BYTES);
	c->tls_stage = malloc(NBDSRV_TLS_STAGE_BYTES);
	c->ssl = c->tls_in && c->tls_out && c->tls_stage ? nbdsrv_tls_session(c->srv->opts.tls)
							  : NULL;
	if (!c->ssl) {
		log_error("nbd %s: out of memory starting TLS", c->name);
		nbdsrv_conn_close(c, false, NULL);
		return;
	}
	SSL_set_app_data(c->ssl, c->name);
	c->tls_ready = ready;
	conn_tls_hs_step(c);
}
