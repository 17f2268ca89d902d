/* SPDX-License-Identifier: MIT */
/*
 * server.c: the iSCSI target's glue to the socket engine (server.h): the
 * protocol table, the receive loop that frames PDUs, the login phase of
 * each connection, and control PDUs. The full-feature phase is in
 * session.c, negotiation in login.c, framing in pdu.c.
 *
 * Notes on the design
 * -------------------
 * - Targets can be added and removed while connections run (the control
 *   socket, docs/ctl.md): the array is read under the server's lock by the
 *   login (iscsisrv_find_target) and SendTargets, which are not the data
 *   path. A removed target is retired, not freed, until iscsisrv_free, so
 *   a login that found it just before needs no reference count; the
 *   session it would make is refused at the end of the login (status
 *   Target Removed) if the target went meanwhile, and the sessions made
 *   before are drained on their workers as at shutdown.
 * - Receive: one buffer of ISCSISRV_RBUF_BYTES per connection, filled by
 *   netsrv_rx with whatever the socket has; the loop frames as many whole
 *   PDUs as it holds (pdu.c) and hands each to the login or the session.
 *   A PDU that cannot be handled yet (no free task, budget spent, a TMF or
 *   logout waiting) stays in the buffer and receiving stops: that is the
 *   back-pressure, next to the CmdSN window (session.c). The next receive
 *   is armed with netsrv_rx_later, so it goes to the kernel with the
 *   replies of the same pass.
 * - Large Data-Out segments (ISCSISRV_DIRECT_MIN, no digests) whose header
 *   has arrived are received straight into their task's buffer, as the NBD
 *   server does with WRITE payloads: the receive buffer and a copy of
 *   every written byte are skipped (docs/bench-iscsi.md).
 * - Errors: a header that cannot be framed (digest mismatch, data longer
 *   than we declared) ends the connection, after a Reject when the header
 *   itself is sound (RFC 7143 §7.8, §11.17); anything else malformed gets
 *   a Reject and the connection goes on.
 * - Control PDUs are allocated (they are not the data path) and bounded
 *   by ISCSISRV_MAX_CTL queued per connection.
 * - TSIHs come from a server-wide counter (never 0); the session count
 *   feeds the logs.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/crc32c.h"
#include "common/endian.h"
#include "common/log.h"
#include "iscsi/session.h"

static void conn_pump(struct iscsisrv_conn *c);
static void conn_rx_arm(struct netsrv_conn *nc);

/* ---- control PDUs --------------------------------------------------------------- */

static void ctl_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	struct iscsisrv_ctl *ctl = container_of(tx, struct iscsisrv_ctl, tx);
	struct iscsisrv_conn *c = ctl->c;

	(void)nc;
	free(ctl);
	if (c->nctl-- == ISCSISRV_MAX_CTL || c->rx_blocked)
		iscsisrv_conn_resume(c);
}

struct iscsisrv_ctl *iscsisrv_ctl_new(struct iscsisrv_conn *c, uint32_t dlen)
{
	struct iscsisrv_ctl *ctl = calloc(1, sizeof(*ctl) + dlen);

	if (!ctl) {
		log_error("%s: out of memory for a control PDU: closing", c->name);
		netsrv_conn_close(c->nc, false, NULL);
		return NULL;
	}
	ctl->c = c;
	return ctl;
}

void iscsisrv_hdr_digest(const struct iscsisrv_conn *c, uint8_t *hdr)
{
	if (c->dg.header) {
		uint32_t crc = crc32c(0, hdr, ISCSI_BHS_BYTES);

		ds_put_le32(hdr + 48, crc);
	}
}

uint32_t iscsisrv_data_trailer(const struct iscsisrv_conn *c, const void *data, uint32_t len,
			       uint8_t tr[8])
{
	uint32_t pad = iscsi_pad(len);

	memset(tr, 0, 8);
	if (!c->dg.data)
		return pad;
	ds_put_le32(tr + pad, crc32c(crc32c(0, data, len), tr, pad));
	return pad + ISCSI_DIGEST_BYTES;
}

void iscsisrv_tx_send(struct iscsisrv_conn *c, struct netsrv_tx *tx, struct iovec *iov,
		      unsigned iovcnt, void (*sent)(struct netsrv_conn *nc, struct netsrv_tx *tx))
{
	tx->iov = iov;
	tx->iovcnt = iovcnt;
	tx->sent = sent;
	netsrv_tx_queue(c->nc, tx);
	netsrv_tx_schedule(c->nc);
}

void iscsisrv_ctl_send(struct iscsisrv_conn *c, struct iscsisrv_ctl *ctl)
{
	uint32_t dlen = iscsi_bhs_dlen(ctl->hdr);
	unsigned n = 0;

	iscsisrv_hdr_digest(c, ctl->hdr);
	ctl->iov[n++] = (struct iovec){ ctl->hdr, iscsisrv_hdr_bytes(c) };
	if (dlen) {
		uint32_t tl = iscsisrv_data_trailer(c, ctl->data, dlen, ctl->trailer);

		ctl->iov[n++] = (struct iovec){ ctl->data, dlen };
		if (tl)
			ctl->iov[n++] = (struct iovec){ ctl->trailer, tl };
	}
	c->nctl++;
	iscsisrv_tx_send(c, &ctl->tx, ctl->iov, n, ctl_sent);
}

/* ---- receive loop ------------------------------------------------------------------ */

static bool conn_can_parse(const struct iscsisrv_conn *c)
{
	if (netsrv_conn_closing(c->nc) || c->phase == PHASE_DONE || c->nctl >= ISCSISRV_MAX_CTL)
		return false;
	if (c->phase == PHASE_LOGIN)
		return true;
	return iscsisrv_session_can_parse(c);
}

static void conn_pump_task(struct reactor_task *t)
{
	struct iscsisrv_conn *c = container_of(t, struct iscsisrv_conn, pump_task);

	c->pump_task_busy = false;
	if (netsrv_conn_closing(c->nc)) {
		netsrv_conn_maybe_free(c->nc);
		return;
	}
	if (c->rx_blocked && conn_can_parse(c)) {
		c->rx_blocked = false;
		conn_pump(c);
	}
}

void iscsisrv_conn_unguard(struct iscsisrv_conn *c)
{
	if (--c->guard == 0 && netsrv_conn_closing(c->nc))
		netsrv_conn_maybe_free(c->nc);   /* may free @c */
}

void iscsisrv_conn_resume(struct iscsisrv_conn *c)
{
	if (!c->rx_blocked || c->pump_task_busy || netsrv_conn_closing(c->nc))
		return;
	c->pump_task_busy = true;
	reactor_defer(c->r, &c->pump_task);
}

/* A login failure answered outside the state machine (a PDU other than a
 * Login Request during login). */
static void conn_login_refuse(struct iscsisrv_conn *c, const uint8_t *bhs, uint16_t status)
{
	struct iscsisrv_ctl *ctl = iscsisrv_ctl_new(c, 0);

	if (!ctl)
		return;
	iscsi_bhs_init(ctl->hdr, ISCSI_OP_LOGIN_RSP, 0);
	memcpy(ctl->hdr + 8, bhs + 8, 6);
	ds_put_be32(ctl->hdr + 16, iscsi_bhs_itt(bhs));
	ctl->hdr[36] = (uint8_t)(status >> 8);
	ctl->hdr[37] = (uint8_t)status;
	iscsisrv_ctl_send(c, ctl);
}

static void *conn_find_target_cb(void *ctx, const char *name)
{
	return iscsisrv_find_target(ctx, name);
}

/* Whether @t is one of the server's targets (not removed); under the lock. */
static bool target_live_locked(struct iscsisrv *s, const struct scsi_target *t)
{
	for (unsigned i = 0; i < s->ntargets; i++)
		if (s->targets[i] == t)
			return true;
	return false;
}

/* Lists @c as a session of @t, unless @t was removed since the login
 * found it (then false). */
static bool conn_list(struct iscsisrv_conn *c, struct scsi_target *t)
{
	struct iscsisrv *s = c->srv;
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = target_live_locked(s, t);
	if (ok) {
		c->listed = true;
		c->id = ++s->next_conn_id;
		c->target = t;
		c->sess_prev = NULL;
		c->sess_next = s->sessions;
		if (s->sessions)
			s->sessions->sess_prev = c;
		s->sessions = c;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static void conn_unlist(struct iscsisrv_conn *c)
{
	struct iscsisrv *s = c->srv;

	pthread_mutex_lock(&s->lock);
	if (c->listed) {
		if (c->sess_prev)
			c->sess_prev->sess_next = c->sess_next;
		else
			s->sessions = c->sess_next;
		if (c->sess_next)
			c->sess_next->sess_prev = c->sess_prev;
		c->listed = false;
	}
	pthread_mutex_unlock(&s->lock);
}

/* One PDU of the login phase. */
static bool conn_login_pdu(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	struct iscsi_login *l = c->login;
	enum iscsi_login_state st;
	struct iscsisrv_ctl *ctl;
	const uint8_t *rdata;
	size_t rdlen;

	if (iscsi_bhs_opcode(pdu->bhs) != ISCSI_OP_LOGIN_REQ) {
		log_warn("%s: %s during login: closing", c->name,
			 iscsi_opcode_name(pdu->bhs[0]));
		conn_login_refuse(c, pdu->bhs, ISCSI_LOGIN_INVALID_REQUEST);
		c->phase = PHASE_DONE;
		netsrv_conn_close(c->nc, true, NULL);
		return true;
	}
	/* A login response fits the login-time limit (login.c splits longer
	 * text with the C bit). */
	ctl = iscsisrv_ctl_new(c, ISCSI_DEFAULT_MRDSL);
	if (!ctl)
		return true;
	st = iscsi_login_step(l, pdu->bhs, pdu->data, pdu->dlen, ctl->hdr, &rdata, &rdlen);
	if (rdlen)
		memcpy(ctl->data, rdata, rdlen);
	switch (st) {
	case ISCSI_LOGIN_CONTINUE:
		iscsisrv_ctl_send(c, ctl);
		break;
	case ISCSI_LOGIN_FAILED:
		log_warn("%s: login of '%s' to '%s' refused (status %u/%u): %s", c->name,
			 l->initiator_name[0] ? l->initiator_name : "?",
			 l->discovery ? "(discovery)" : l->target_name[0] ? l->target_name : "?",
			 l->status >> 8, l->status & 0xff, l->why ? l->why : "?");
		iscsisrv_ctl_send(c, ctl);
		c->phase = PHASE_DONE;
		netsrv_conn_close(c->nc, true, NULL);
		break;
	case ISCSI_LOGIN_DONE:
		if (!l->discovery && !conn_list(c, l->target)) {
			free(ctl);
			log_warn("%s: login of '%s' to '%s' refused: the target was removed", c->name,
				 l->initiator_name, l->target_name);
			conn_login_refuse(c, pdu->bhs, ISCSI_LOGIN_TARGET_REMOVED);
			c->phase = PHASE_DONE;
			netsrv_conn_close(c->nc, true, NULL);
			break;
		}
		if (iscsisrv_session_begin(c) < 0) {
			free(ctl);
			log_error("%s: out of memory entering the full-feature phase", c->name);
			c->phase = PHASE_DONE;
			netsrv_conn_close(c->nc, false, NULL);
			break;
		}
		/* The window opens with the last login response (RFC 7143 §4.2.2.1). */
		ds_put_be32(ctl->hdr + 32, c->exp_cmdsn - 1 + c->window);
		/* Sent before the digests switch on (they apply after login). */
		{
			struct iscsi_digests dg = c->dg;

			c->dg = (struct iscsi_digests){ false, false };
			iscsisrv_ctl_send(c, ctl);
			c->dg = dg;
		}
		break;
	}
	return true;
}

static void conn_frame_error(struct iscsisrv_conn *c, const uint8_t *bhs,
			     enum iscsi_frame_error err)
{
	bool full = c->phase == PHASE_FULL;

	/* A header that failed its digest is not worth echoing. */
	if (full && err != ISCSI_FRAME_HEADER_DIGEST)
		iscsisrv_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
	c->phase = PHASE_DONE;
	switch (err) {
	case ISCSI_FRAME_HEADER_DIGEST:
		/* RFC 7143 §7.8: the framing is unknown after a header digest error. */
		log_warn("%s: header digest error: closing", c->name);
		netsrv_conn_close(c->nc, false, NULL);
		break;
	case ISCSI_FRAME_TOO_LONG:
		log_warn("%s: %s with DataSegmentLength %u over our %u: closing", c->name,
			 iscsi_opcode_name(bhs[0]), iscsi_bhs_dlen(bhs), ISCSI_OUR_MRDSL);
		netsrv_conn_close(c->nc, true, NULL);
		break;
	case ISCSI_FRAME_BAD_AHS:
	default:
		log_warn("%s: %s with an AHS: closing", c->name, iscsi_opcode_name(bhs[0]));
		netsrv_conn_close(c->nc, true, NULL);
		break;
	}
}

static void conn_direct_cb(struct netsrv_conn *nc, ssize_t res);

static void conn_direct_rx(struct iscsisrv_conn *c)
{
	netsrv_rx(c->nc, c->direct_dst + c->direct_got, c->direct_len - c->direct_got, true,
		  conn_direct_cb);
}

/* The PDU at rhead is incomplete: if it is a large Data-Out or SCSI
 * Command with immediate data that the session takes, moves what arrived
 * of its data into place and receives the rest there (the receive buffer
 * is then empty). */
static bool conn_direct_start(struct iscsisrv_conn *c)
{
	const uint8_t *bhs = c->rbuf + c->rhead;
	size_t have = c->rtail - c->rhead;
	uint32_t dlen;
	uint8_t *dst;

	if (have < ISCSI_BHS_BYTES || c->dg.header || c->dg.data || c->draining)
		return false;
	dlen = iscsi_bhs_dlen(bhs);
	/* A multiple of 4: no padding to skip after the data. */
	if (dlen < ISCSISRV_DIRECT_MIN || dlen % 4 != 0 || have - ISCSI_BHS_BYTES >= dlen)
		return false;
	if (iscsi_bhs_opcode(bhs) == ISCSI_OP_SCSI_CMD)
		dst = iscsisrv_session_cmd_dest(c, bhs);
	else
		dst = iscsisrv_session_data_dest(c, bhs, &c->direct_t);
	if (!dst)
		return false;
	c->direct_on = true;
	memcpy(c->direct_hdr, bhs, ISCSI_BHS_BYTES);
	c->direct_dst = dst;
	c->direct_len = dlen;
	c->direct_got = (uint32_t)(have - ISCSI_BHS_BYTES);
	memcpy(dst, bhs + ISCSI_BHS_BYTES, c->direct_got);
	c->rhead = c->rtail = 0;
	conn_direct_rx(c);
	return true;
}

static void conn_direct_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);
	struct iscsisrv_task *t = c->direct_t;
	struct iscsi_pdu pdu = { 0 };

	if (res <= 0) {
		c->direct_on = false;
		c->direct_t = NULL;
		if (t)
			iscsisrv_session_data_release(t);
		iscsisrv_session_cmd_dest_drop(c);
		if (res == -ECANCELED && (c->draining || c->phase == PHASE_DONE))
			return;
		if (res < 0)
			log_warn("%s: receive failed: %s", c->name, strerror((int)-res));
		netsrv_conn_close(nc, false, res == 0 ? "initiator left in the middle of a PDU"
						      : NULL);
		return;
	}
	c->direct_got += (uint32_t)res;
	c->last_rx_ns = reactor_now_ns();
	if (c->direct_got < c->direct_len) {
		conn_direct_rx(c);
		return;
	}
	c->guard++;
	c->direct_on = false;
	c->direct_t = NULL;
	c->big_rx = true;
	pdu.bhs = c->direct_hdr;
	pdu.data = c->direct_dst;
	pdu.dlen = c->direct_len;
	/* A Data-Out is always consumed (session.c), and so is a command
	 * iscsisrv_session_cmd_dest took; should the session still hold one
	 * back, it goes back to the receive buffer, which is empty. */
	if (c->phase == PHASE_FULL && !c->draining && !netsrv_conn_closing(nc) &&
	    !iscsisrv_session_pdu(c, &pdu)) {
		memcpy(c->rbuf, c->direct_hdr, ISCSI_BHS_BYTES);
		memcpy(c->rbuf + ISCSI_BHS_BYTES, c->direct_dst, c->direct_len);
		c->rhead = 0;
		c->rtail = ISCSI_BHS_BYTES + (size_t)c->direct_len;
		c->big_rx = false;
	}
	if (t)
		iscsisrv_session_data_release(t);
	iscsisrv_session_cmd_dest_drop(c);
	conn_pump(c);
	iscsisrv_conn_unguard(c);
}

static void conn_pump_locked(struct iscsisrv_conn *c)
{
	if (c->direct_on)
		return;         /* conn_direct_cb pumps when the data is in */
	while (c->rhead < c->rtail) {
		struct iscsi_pdu pdu;
		enum iscsi_frame_error err;
		size_t need;
		int n;

		if (!conn_can_parse(c)) {
			c->rx_blocked = c->phase != PHASE_DONE && !netsrv_conn_closing(c->nc);
			return;
		}
		n = iscsi_pdu_frame(c->rbuf + c->rhead, c->rtail - c->rhead, &c->dg, ISCSI_OUR_MRDSL,
				    &pdu, &need, &err);
		if (n < 0) {
			conn_frame_error(c, c->rbuf + c->rhead, err);
			return;
		}
		if (n == 0) {
			c->rneed = need;
			if (c->phase == PHASE_FULL && conn_direct_start(c))
				return;
			break;
		}
		if (c->phase == PHASE_LOGIN ? !conn_login_pdu(c, &pdu)
					    : !iscsisrv_session_pdu(c, &pdu)) {
			c->rx_blocked = true;
			return;
		}
		c->big_rx = false;
		c->rhead += (size_t)n;
		c->last_rx_ns = reactor_now_ns();
	}
	if (!conn_can_parse(c)) {
		c->rx_blocked = c->phase != PHASE_DONE && !netsrv_conn_closing(c->nc);
		return;
	}
	netsrv_rx_later(c->nc, conn_rx_arm);
}

/* Frames and handles what the buffer holds. A handler may close the
 * connection; the guard keeps the engine from freeing it under us
 * (proto->busy reports it) until the pass is over. */
static void conn_pump(struct iscsisrv_conn *c)
{
	c->guard++;
	conn_pump_locked(c);
	iscsisrv_conn_unguard(c);
}

static void conn_rx_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);

	if (res <= 0) {
		if (res == -ECANCELED && (c->draining || c->phase == PHASE_DONE))
			return;
		if (res == 0 && c->rhead == c->rtail)
			netsrv_conn_close(nc, true, "initiator closed the connection");
		else if (res == 0)
			netsrv_conn_close(nc, false, "initiator left in the middle of a PDU");
		else {
			log_warn("%s: receive failed: %s", c->name, strerror((int)-res));
			netsrv_conn_close(nc, false, NULL);
		}
		return;
	}
	c->rtail += (size_t)res;
	conn_pump(c);
}

static void conn_rx_arm(struct netsrv_conn *nc)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);
	size_t room;

	if (netsrv_rx_busy(nc) || !conn_can_parse(c) || c->draining || c->direct_on)
		return;
	if (c->rhead == c->rtail) {
		c->rhead = c->rtail = 0;
		if (c->big_rx && c->phase == PHASE_FULL && !c->dg.header && !c->dg.data) {
			/* After a PDU that came in place, the next header alone:
			 * a large PDU's data then lands in place too instead of
			 * being taken into engine buffers first and copied. */
			netsrv_rx_exact(nc, c->rbuf, ISCSI_BHS_BYTES, conn_rx_cb);
			return;
		}
	} else if (ISCSISRV_RBUF_BYTES - c->rtail < ISCSISRV_RBUF_BYTES / 2) {
		/* The largest PDU is under half the buffer: moving what is left
		 * to the front always makes room for it. */
		memmove(c->rbuf, c->rbuf + c->rhead, c->rtail - c->rhead);
		c->rtail -= c->rhead;
		c->rhead = 0;
	}
	room = ISCSISRV_RBUF_BYTES - c->rtail;
	if (c->phase == PHASE_FULL && !c->dg.header && !c->dg.data) {
		size_t have = c->rtail - c->rhead;
		size_t rest = c->rhead < c->rtail && c->rneed > have ? c->rneed - have : 0;

		room = MIN(room, MAX(rest, (size_t)ISCSISRV_RX_CHUNK));
	}
	netsrv_rx(nc, c->rbuf + c->rtail, room, false, conn_rx_cb);
}

/* ---- the engine's callbacks ------------------------------------------------------------ */

static void srv_conn_start(struct netsrv_conn *nc, void *ctx)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);
	struct iscsisrv *s = ctx;
	struct iscsi_login_cfg cfg = {
		.chap = &s->chap,
		.tpgt = ISCSISRV_TPGT,
		.find_target = conn_find_target_cb,
		.ctx = s,
	};
	unsigned tsih;

	c->nc = nc;
	c->srv = s;
	c->r = netsrv_conn_reactor(nc);
	c->name = netsrv_conn_name(nc);
	c->pump_task.fn = conn_pump_task;
	c->rbuf = reactor_buf_get(c->r, ISCSISRV_RBUF_BYTES, false);
	c->login = malloc(sizeof(*c->login));
	if (!c->rbuf || !c->login) {
		log_error("%s: out of memory starting a login", c->name);
		netsrv_conn_close(nc, false, NULL);
		return;
	}
	do
		tsih = atomic_fetch_add(&s->next_tsih, 1) & 0xffff;
	while (tsih == 0);
	cfg.tsih = (uint16_t)tsih;
	cfg.statsn = 1;
	iscsi_login_init(c->login, &cfg);
	if (netsrv_conn_stopping(nc)) {
		c->phase = PHASE_DONE;
		netsrv_conn_close(nc, true, "server stopping");
		return;
	}
	conn_rx_arm(nc);
}

static void srv_conn_drain(struct netsrv_conn *nc)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);

	if (!c->nc)
		return;
	if (c->phase == PHASE_FULL) {
		c->guard++;
		iscsisrv_session_drain(c);
		iscsisrv_conn_unguard(c);
		return;
	}
	c->draining = true;
	c->phase = PHASE_DONE;
	netsrv_conn_close(nc, true, "server stopping");
}

static bool srv_conn_busy(struct netsrv_conn *nc, enum netsrv_busy what)
{
	const struct iscsisrv_conn *c = netsrv_conn_priv(nc);

	switch (what) {
	case NETSRV_BUSY_OUTPUT:
		return c->nsubmitted > 0 || c->pump_task_busy;
	case NETSRV_BUSY_REFS:
		return c->nsubmitted > 0 || c->pump_task_busy || c->guard > 0;
	case NETSRV_BUSY_IDLE:
		return c->nsubmitted > 0 || c->draining;
	}
	return false;
}

static void srv_conn_closed(struct netsrv_conn *nc)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);

	if (!c->nc)
		return;
	if (c->tasks)
		iscsisrv_session_closed(c);
}

static void srv_conn_free(struct netsrv_conn *nc)
{
	struct iscsisrv_conn *c = netsrv_conn_priv(nc);

	if (!c->nc)
		return;
	conn_unlist(c);
	iscsisrv_session_free(c);
	if (c->login) {
		iscsi_login_release(c->login);
		free(c->login);
	}
	iscsisrv_session_cmd_dest_drop(c);
	reactor_buf_put(c->r, c->rbuf, ISCSISRV_RBUF_BYTES);
}

/* ---- creation and targets -------------------------------------------------------------- */

int iscsisrv_new(const struct iscsisrv_opts *o, struct iscsisrv **out)
{
	struct iscsisrv *s;

	if (o->window > ISCSISRV_MAX_WINDOW)
		return -EINVAL;
	if (!o->chap_user != !o->chap_secret || !o->chap_target_user != !o->chap_target_secret ||
	    (o->chap_target_user && !o->chap_user))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->opts = *o;
#define DUP(f) s->opts.f = o->f ? strdup(o->f) : NULL
	DUP(chap_user);
	DUP(chap_secret);
	DUP(chap_target_user);
	DUP(chap_target_secret);
	DUP(portal);
#undef DUP
	if ((o->chap_user && (!s->opts.chap_user || !s->opts.chap_secret)) ||
	    (o->chap_target_user && (!s->opts.chap_target_user || !s->opts.chap_target_secret)) ||
	    (o->portal && !s->opts.portal)) {
		iscsisrv_free(s);
		return -ENOMEM;
	}
	if (s->opts.window == 0)
		s->opts.window = ISCSISRV_DEFAULT_WINDOW;
	if (s->opts.nop_interval_s == 0)
		s->opts.nop_interval_s = ISCSISRV_DEFAULT_NOP_S;
	s->chap = (struct iscsi_chap){
		.user = s->opts.chap_user,
		.secret = s->opts.chap_secret,
		.target_user = s->opts.chap_target_user,
		.target_secret = s->opts.chap_target_secret,
	};
	atomic_init(&s->next_tsih, 1);
	atomic_init(&s->nsessions, 0);
	pthread_mutex_init(&s->lock, NULL);
	s->proto = NETSRV_PROTO_INIT("iscsi", s, struct iscsisrv_conn);
	*out = s;
	return 0;
}

static struct scsi_target *find_locked(struct scsi_target **v, unsigned n, const char *name)
{
	for (unsigned i = n; i-- > 0;)
		if (strcmp(scsi_target_name(v[i]), name) == 0)
			return v[i];
	return NULL;
}

struct scsi_target *iscsisrv_find_target(struct iscsisrv *s, const char *name)
{
	struct scsi_target *t;

	pthread_mutex_lock(&s->lock);
	t = find_locked(s->targets, s->ntargets, name);
	pthread_mutex_unlock(&s->lock);
	return t;
}

int iscsisrv_add_target(struct iscsisrv *s, struct scsi_target *t)
{
	struct scsi_target **v;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (find_locked(s->targets, s->ntargets, scsi_target_name(t)))
		ret = -EEXIST;
	else if (!(v = realloc(s->targets, (s->ntargets + 1) * sizeof(*v))))
		ret = -ENOMEM;
	else {
		s->targets = v;
		s->targets[s->ntargets++] = t;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret < 0)
		scsi_target_free(t);
	return ret;
}

/* A request to drain or close one session, run on its worker. */
struct drain_task {
	struct reactor_task task;
	struct iscsisrv *srv;
	uint64_t id;
	bool force;
};

static void drain_task_fn(struct reactor_task *rt)
{
	struct drain_task *dt = container_of(rt, struct drain_task, task);
	struct iscsisrv_conn *c;

	/* Only this worker frees the connection (and unlists it first), so
	 * if it is listed now it stays alive until this function returns. */
	pthread_mutex_lock(&dt->srv->lock);
	for (c = dt->srv->sessions; c && c->id != dt->id; c = c->sess_next)
		;
	pthread_mutex_unlock(&dt->srv->lock);
	if (c && !netsrv_conn_closing(c->nc)) {
		if (dt->force) {
			c->phase = PHASE_DONE;
			netsrv_conn_close(c->nc, false, "target removed");
		} else {
			log_info("%s: target %s removed: draining the session", c->name,
				 scsi_target_name(c->target));
			srv_conn_drain(c->nc);
		}
	}
	free(dt);
}

int iscsisrv_remove_target(struct iscsisrv *s, const char *name, bool force,
			   struct scsi_target **out, unsigned *nsessions)
{
	struct scsi_target *t;
	unsigned n = 0;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	t = find_locked(s->targets, s->ntargets, name);
	if (t) {
		struct scsi_target **v = realloc(s->retired, (s->nretired + 1) * sizeof(*v));
		unsigned i;

		if (!v) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		s->retired = v;
		s->retired[s->nretired++] = t;
		for (i = 0; s->targets[i] != t; i++)
			;
		memmove(&s->targets[i], &s->targets[i + 1],
			(s->ntargets - i - 1) * sizeof(s->targets[0]));
		s->ntargets--;
	} else if (!(t = find_locked(s->retired, s->nretired, name))) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	for (struct iscsisrv_conn *c = s->sessions; c; c = c->sess_next) {
		struct drain_task *dt;

		if (c->target != t)
			continue;
		n++;
		if (!(dt = calloc(1, sizeof(*dt)))) {
			ret = -ENOMEM;
			continue;
		}
		dt->task.fn = drain_task_fn;
		dt->srv = s;
		dt->id = c->id;
		dt->force = force;
		/* A listed session's worker reactor is alive. */
		reactor_post(c->r, &dt->task);
	}
	pthread_mutex_unlock(&s->lock);
	*out = t;
	*nsessions = n;
	return ret;
}

unsigned iscsisrv_target_sessions(struct iscsisrv *s, const struct scsi_target *t)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	for (struct iscsisrv_conn *c = s->sessions; c; c = c->sess_next)
		n += c->target == t;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int iscsisrv_protocol(struct iscsisrv *s, const struct netsrv_proto **out)
{
	if (s->ntargets == 0)
		return -EINVAL;
	*out = &s->proto;
	return 0;
}

void iscsisrv_free(struct iscsisrv *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->ntargets; i++)
		scsi_target_free(s->targets[i]);
	for (unsigned i = 0; i < s->nretired; i++)
		scsi_target_free(s->retired[i]);
	free(s->targets);
	free(s->retired);
	pthread_mutex_destroy(&s->lock);
	free((char *)s->opts.chap_user);
	free((char *)s->opts.chap_secret);
	free((char *)s->opts.chap_target_user);
	free((char *)s->opts.chap_target_secret);
	free((char *)s->opts.portal);
	free(s);
}
