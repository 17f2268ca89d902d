/* SPDX-License-Identifier: MIT */
/*
 * session.c: the full-feature phase of an iSCSI connection (RFC 7143
 * §4.2, §11): SCSI commands with their data, NOP, task management, Text
 * (SendTargets), logout, and the keep-alive ping.
 *
 * Notes on the design
 * -------------------
 * - Tasks. A connection preallocates window + ISCSISRV_SPARE_TASKS task
 *   slots when it enters the phase; a slot holds everything a command
 *   needs (R2T headers, response headers, the data buffer from the
 *   reactor's cache), so steady-state I/O does not allocate. A task lives
 *   through DATA (gathering data-out, or waiting for its CmdSN turn),
 *   SUBMITTED (in the SCSI core) and RESPONDING (its PDUs queued), and is
 *   freed once the engine has sent every PDU that points into it.
 * - CmdSN window (RFC 7143 §4.2.2.1). ExpCmdSN advances as non-immediate commands
 *   arrive in order; MaxCmdSN = ExpCmdSN - 1 + (window - commands holding
 *   a slot), so the window closes while too many commands are in flight
 *   and opens as responses are built (never shrinks, as RFC 7143 §4.2.2.1 wants).
 *   A command outside the window is ignored silently and the connection
 *   kept (RFC 7143 §4.2.2.1); one ahead of ExpCmdSN waits in its slot for its
 *   turn. Immediate commands use the spare slots; when none is free they
 *   get Reject "immediate command rejected".
 * - Data-out (RFC 7143 §4.2.5, §11.7). Immediate data, then unsolicited Data-Out
 *   up to FirstBurstLength (InitialR2T=No), then R2Ts of at most
 *   MaxBurstLength, min(MaxOutstandingR2T, ISCSISRV_MAX_R2T) at a time;
 *   offsets must arrive in order (DataPDUInOrder=Yes is all we accept) and
 *   DataSN counts from 0 in every sequence. A wrong DataSN or a data
 *   digest error spoils the command: the rest of its data is taken, then
 *   it ends in CHECK CONDITION (ABORTED COMMAND), never GOOD. An offset
 *   outside the sequence cannot be recovered at ErrorRecoveryLevel 0: the
 *   connection closes. A Target Transfer Tag carries the task's slot
 *   index in its top 12 bits, so a Data-Out finds its task at once.
 * - Data-in (RFC 7143 §4.2.4): PDUs of at most the initiator's
 *   MaxRecvDataSegmentLength, sequences (F bit) of MaxBurstLength, the
 *   status phase-collapsed into the last PDU when GOOD; otherwise a SCSI
 *   Response with the sense data (2-byte length first, RFC 7143 §11.4.7). Residuals
 *   (RFC 7143 §11.4.5) compare the CDB's want_len with Expected Data Transfer
 *   Length, as scsi.h describes.
 * - Task management (§11.5): the TMF waits for the commands it aborts to
 *   leave the core (their responses are suppressed), then runs the reset
 *   and answers; parsing pauses meanwhile so later commands follow it.
 *   Only this session's tasks are aborted (one I_T nexus per session).
 * - Logout waits for the commands in the core, answers, and closes; a
 *   drain does the same, announcing the close with an Asynchronous
 *   Message (AsyncEvent 3).
 */
#include "config.h"

#include <assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/compiler.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "iscsi/session.h"

#define TTT_INDEX_SHIFT 20u

static void task_progress(struct iscsisrv_task *t);
static void sess_check_quiet(struct iscsisrv_conn *c);
static void tmf_finish(struct iscsisrv_conn *c);

/* Serial number arithmetic (RFC 1982, §4.2.2.1). */
static bool sn_lt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

static uint32_t max_cmdsn(const struct iscsisrv_conn *c)
{
	return c->exp_cmdsn - 1 + (c->window - c->win_used);
}

/* StatSN (advanced when @advance), ExpCmdSN and MaxCmdSN at bytes 24-35. */
static void put_sns(struct iscsisrv_conn *c, uint8_t *hdr, bool advance)
{
	ds_put_be32(hdr + 24, advance ? c->statsn++ : c->statsn);
	ds_put_be32(hdr + 28, c->exp_cmdsn);
	ds_put_be32(hdr + 32, max_cmdsn(c));
}

void iscsisrv_reject(struct iscsisrv_conn *c, const uint8_t *bhs, uint8_t reason)
{
	struct iscsisrv_ctl *ctl = iscsisrv_ctl_new(c, ISCSI_BHS_BYTES);

	log_debug("%s: Reject (reason 0x%02x) of a %s", c->name, reason,
		  iscsi_opcode_name(bhs[0]));
	if (!ctl)
		return;
	iscsi_bhs_init(ctl->hdr, ISCSI_OP_REJECT, ISCSI_FLAG_F);
	ctl->hdr[2] = reason;
	iscsi_bhs_set_dlen(ctl->hdr, ISCSI_BHS_BYTES);
	ds_put_be32(ctl->hdr + 16, ISCSI_RESERVED_TAG);
	put_sns(c, ctl->hdr, true);
	memcpy(ctl->data, bhs, ISCSI_BHS_BYTES);
	iscsisrv_ctl_send(c, ctl);
}

/* Lets the commands waiting for their CmdSN turn go, in order. */
static void advance_order(struct iscsisrv_conn *c)
{
	bool again = c->nwaiting > 0;

	while (again) {
		again = false;
		for (unsigned i = 0; i < c->ntasks; i++) {
			struct iscsisrv_task *t = &c->tasks[i];

			if (t->state == TASK_DATA && !t->ordered && t->cmdsn == c->exp_cmdsn) {
				t->ordered = true;
				c->nwaiting--;
				c->exp_cmdsn++;
				task_progress(t);
				again = c->nwaiting > 0;
				break;
			}
		}
	}
}

/* CmdSN check of a non-SCSI command (NOP-Out, TMF, Text, Logout): false
 * when it is outside the window and must be ignored. */
static bool cmdsn_accept(struct iscsisrv_conn *c, const uint8_t *bhs)
{
	uint32_t sn = iscsi_bhs_cmdsn(bhs);

	if (iscsi_bhs_immediate(bhs))
		return true;
	if (sn_lt(sn, c->exp_cmdsn) || sn_lt(max_cmdsn(c), sn)) {
		log_debug("%s: %s with CmdSN %u outside [%u, %u]: ignored", c->name,
			  iscsi_opcode_name(bhs[0]), sn, c->exp_cmdsn, max_cmdsn(c));
		return false;
	}
	if (sn == c->exp_cmdsn) {
		c->exp_cmdsn++;
		advance_order(c);
	}
	return true;
}

/* ---- task slots ----------------------------------------------------------------- */

static struct iscsisrv_task *task_get(struct iscsisrv_conn *c)
{
	struct iscsisrv_task *t = c->free_tasks;

	if (!t)
		return NULL;
	c->free_tasks = t->next_free;
	t->next_free = NULL;
	t->state = TASK_DATA;
	t->immediate = t->windowed = t->ordered = t->read = t->write = t->aborted = false;
	t->err = false;
	t->received = t->unsol_end = t->unsol_next = t->unsol_datasn = 0;
	t->unsol_open = false;
	t->r2t_next = t->r2tsn = 0;
	t->nr2t = 0;
	t->ndatain = 0;
	for (unsigned i = 0; i < ISCSISRV_MAX_R2T; i++)
		t->r2t[i].active = false;
	c->ntasks_used++;
	return t;
}

/* The task no longer counts against the window (its response is being
 * built, or it was dropped). */
static void task_unwindow(struct iscsisrv_task *t)
{
	struct iscsisrv_conn *c = t->c;

	if (t->windowed) {
		t->windowed = false;
		c->win_used--;
		if (!t->ordered)
			c->nwaiting--;
	}
}

static void task_put(struct iscsisrv_task *t)
{
	struct iscsisrv_conn *c = t->c;

	if (t->buf) {
		reactor_buf_put(c->r, t->buf, t->buf_cap);
		c->inflight_bytes -= t->buf_cap;
		t->buf = NULL;
		t->buf_cap = 0;
	}
	if (t->big) {
		reactor_buf_put(c->r, t->big, t->big_bytes);
		t->big = NULL;
	}
	task_unwindow(t);
	t->state = TASK_FREE;
	t->next_free = c->free_tasks;
	c->free_tasks = t;
	c->ntasks_used--;
	iscsisrv_conn_resume(c);
}

static void task_maybe_free(struct iscsisrv_task *t)
{
	if (t->state == TASK_RESPONDING && t->tx_pending == 0)
		task_put(t);
}

/* Ends a task without a response (aborted, or the connection goes). */
static void task_drop(struct iscsisrv_task *t)
{
	task_unwindow(t);
	t->state = TASK_RESPONDING;
	task_maybe_free(t);
}

static void task_tx_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	struct iscsisrv_task *t = container_of(tx, struct iscsisrv_task, tx);

	(void)nc;
	t->tx_pending--;
	task_maybe_free(t);
}

static void r2t_tx_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	struct iscsisrv_r2t *r = container_of(tx, struct iscsisrv_r2t, tx);
	struct iscsisrv_task *t = r->t;

	(void)nc;
	r->tx_busy = false;
	t->tx_pending--;
	task_maybe_free(t);
}

/* ---- responses ------------------------------------------------------------------ */

/* Builds and queues the PDUs that end @t: Data-In (status collapsed into
 * the last one when GOOD), else a SCSI Response. */
static void task_respond(struct iscsisrv_task *t)
{
	struct iscsisrv_conn *c = t->c;
	const struct scsi_cmd *cmd = &t->cmd;
	uint32_t data_len = t->read ? MIN(cmd->data_len, t->edtl) : 0;
	uint32_t mrdsl = c->p.max_recv_dsl, burst = c->p.max_burst;
	bool good = cmd->status == SCSI_GOOD;
	uint8_t rflags = 0;
	uint32_t resid = 0, npdu = 0, hb = iscsisrv_hdr_bytes(c);
	bool collapse;
	unsigned n = 0;

	/* RFC 7143 §11.4.5.1: residuals against Expected Data Transfer Length. */
	if (cmd->want_len > t->edtl) {
		rflags = ISCSI_RSP_O;
		resid = (uint32_t)MIN(cmd->want_len - t->edtl, (uint64_t)UINT32_MAX);
	} else if ((t->read ? data_len : cmd->want_len) < t->edtl) {
		rflags = ISCSI_RSP_U;
		resid = t->edtl - (uint32_t)(t->read ? data_len : cmd->want_len);
	}
	for (uint32_t off = 0; off < data_len;) {
		uint32_t seq_end = MIN(data_len, (off / burst + 1) * burst);

		off += MIN(mrdsl, seq_end - off);
		npdu++;
	}
	collapse = npdu > 0 && good;
	if (npdu <= ISCSISRV_INLINE_DATAIN) {
		t->iov = t->inline_iov;
		t->hdrs = t->inline_hdrs;
	} else {
		size_t hbytes = (size_t)npdu * (ISCSISRV_HDR_BYTES + 8);

		t->big_bytes = hbytes + (3 * (size_t)npdu + 3) * sizeof(struct iovec);
		t->big = reactor_buf_get(c->r, t->big_bytes, false);
		if (!t->big) {
			log_error("%s: out of memory for %u Data-In headers: closing", c->name,
				  npdu);
			task_drop(t);
			netsrv_conn_close(c->nc, false, NULL);
			return;
		}
		t->hdrs = t->big;
		t->iov = (struct iovec *)(void *)((uint8_t *)t->big + ROUND_UP(hbytes, 16u));
	}
	task_unwindow(t);
	for (uint32_t off = 0, i = 0; off < data_len; i++) {
		uint8_t *h = t->hdrs + (size_t)i * (ISCSISRV_HDR_BYTES + 8);
		uint8_t *tr = h + ISCSISRV_HDR_BYTES;
		uint32_t seq_end = MIN(data_len, (off / burst + 1) * burst);
		uint32_t len = MIN(mrdsl, seq_end - off), tl;
		bool last = off + len == data_len;
		uint8_t fl = off + len == seq_end ? ISCSI_FLAG_F : 0;

		if (last && collapse)
			fl |= ISCSI_FLAG_F | ISCSI_DATAIN_S | rflags;
		iscsi_bhs_init(h, ISCSI_OP_DATA_IN, fl);
		if (last && collapse)
			h[3] = cmd->status;
		iscsi_bhs_set_dlen(h, len);
		ds_put_be64(h + 8, t->lun);
		ds_put_be32(h + 16, t->itt);
		ds_put_be32(h + 20, ISCSI_RESERVED_TAG);
		put_sns(c, h, last && collapse);
		if (!(last && collapse))
			ds_put_be32(h + 24, 0);
		ds_put_be32(h + 36, t->ndatain++);
		ds_put_be32(h + 40, off);
		if (last && collapse)
			ds_put_be32(h + 44, resid);
		iscsisrv_hdr_digest(c, h);
		t->iov[n++] = (struct iovec){ h, hb };
		t->iov[n++] = (struct iovec){ t->buf + off, len };
		tl = iscsisrv_data_trailer(c, t->buf + off, len, tr);
		if (tl)
			t->iov[n++] = (struct iovec){ tr, tl };
		off += len;
	}
	if (!collapse) {
		uint8_t *h = t->rsp;
		uint32_t slen = cmd->status == SCSI_CHECK_CONDITION ? cmd->sense_len : 0;

		iscsi_bhs_init(h, ISCSI_OP_SCSI_RSP, ISCSI_FLAG_F | rflags);
		h[2] = 0;               /* command completed at target */
		h[3] = cmd->status;
		ds_put_be32(h + 16, t->itt);
		put_sns(c, h, true);
		ds_put_be32(h + 36, t->ndatain + t->r2tsn);
		ds_put_be32(h + 44, resid);
		if (slen) {
			uint32_t tl;

			slen = MIN(slen, (uint32_t)SCSI_SENSE_MAX);
			iscsi_bhs_set_dlen(h, 2 + slen);
			ds_put_be16(t->sense, (uint16_t)slen);
			memcpy(t->sense + 2, cmd->sense, slen);
			iscsisrv_hdr_digest(c, h);
			t->iov[n++] = (struct iovec){ h, hb };
			t->iov[n++] = (struct iovec){ t->sense, 2 + slen };
			tl = iscsisrv_data_trailer(c, t->sense, 2 + slen, t->trailer);
			if (tl)
				t->iov[n++] = (struct iovec){ t->trailer, tl };
		} else {
			iscsisrv_hdr_digest(c, h);
			t->iov[n++] = (struct iovec){ h, hb };
		}
	}
	t->state = TASK_RESPONDING;
	t->tx_pending++;
	iscsisrv_tx_send(c, &t->tx, t->iov, n, task_tx_sent);
}

/* CHECK CONDITION, ABORTED COMMAND with @asc/@ascq, for a command whose
 * data phase failed (fixed-format sense, SPC-4 §4.5.3). */
static void task_fail(struct iscsisrv_task *t)
{
	struct scsi_cmd *cmd = &t->cmd;

	memset(cmd, 0, sizeof(*cmd));
	cmd->status = SCSI_CHECK_CONDITION;
	cmd->want_len = t->edtl;
	cmd->sense[0] = 0x70;
	cmd->sense[2] = SCSI_SK_ABORTED_COMMAND;
	cmd->sense[7] = 10;
	cmd->sense[12] = t->err_asc;
	cmd->sense[13] = t->err_ascq;
	cmd->sense_len = 18;
	task_respond(t);
}

static void task_scsi_done(struct scsi_cmd *cmd)
{
	struct iscsisrv_task *t = cmd->opaque;
	struct iscsisrv_conn *c = t->c;
	bool aborted = t->aborted;

	c->guard++;
	c->nsubmitted--;
	if (aborted || netsrv_conn_closing(c->nc)) {
		task_drop(t);
		if (aborted && c->tmf_active && --c->tmf_waiting == 0)
			tmf_finish(c);
	} else {
		task_respond(t);
	}
	sess_check_quiet(c);
	iscsisrv_conn_unguard(c);
}

static void task_submit(struct iscsisrv_task *t)
{
	struct iscsisrv_conn *c = t->c;
	struct scsi_cmd *cmd = &t->cmd;
	uint8_t cdb[SCSI_CDB_MAX];
	uint8_t cdb_len = cmd->cdb_len;
	/* iSCSI ATTR (RFC 7143 §11.3.1.3) to SAM task attributes. */
	static const uint8_t attr_map[8] = { 0, 0, 1, 2, 3, 0, 0, 0 };
	uint8_t attr = cmd->task_attr;

	memcpy(cdb, cmd->cdb, sizeof(cdb));
	memset(cmd, 0, sizeof(*cmd));
	memcpy(cmd->cdb, cdb, sizeof(cdb));
	cmd->cdb_len = cdb_len;
	cmd->nexus = c->nexus;
	cmd->lun = t->lun;
	cmd->dir = t->read ? SCSI_DIR_IN : t->write ? SCSI_DIR_OUT : SCSI_DIR_NONE;
	t->biov = (struct iovec){ t->buf, t->edtl };
	cmd->iov = &t->biov;
	cmd->iovcnt = t->edtl ? 1 : 0;
	cmd->xfer_len = t->edtl;
	cmd->task_attr = attr_map[attr & 7];
	cmd->tag = t->itt;
	cmd->done = task_scsi_done;
	cmd->opaque = t;
	t->state = TASK_SUBMITTED;
	c->nsubmitted++;
	scsi_cmd_submit(cmd);
}

/* Sends R2Ts for the data still to come (RFC 7143 §11.8). */
static void task_r2ts(struct iscsisrv_task *t)
{
	struct iscsisrv_conn *c = t->c;
	unsigned max = MIN(c->p.max_outstanding_r2t, ISCSISRV_MAX_R2T);
	uint32_t idx = (uint32_t)(t - c->tasks);

	while (t->nr2t < max && t->r2t_next < t->edtl) {
		struct iscsisrv_r2t *r = NULL;
		uint8_t *h;

		for (unsigned i = 0; i < ISCSISRV_MAX_R2T && !r; i++)
			if (!t->r2t[i].active && !t->r2t[i].tx_busy)
				r = &t->r2t[i];
		if (!r)
			return;
		r->active = true;
		r->ttt = (idx << TTT_INDEX_SHIFT) | (c->next_ttt++ & ((1u << TTT_INDEX_SHIFT) - 1));
		r->off = t->r2t_next;
		r->len = MIN(c->p.max_burst, t->edtl - r->off);
		r->got = 0;
		r->datasn = 0;
		t->r2t_next += r->len;
		t->nr2t++;
		h = r->hdr;
		iscsi_bhs_init(h, ISCSI_OP_R2T, ISCSI_FLAG_F);
		ds_put_be64(h + 8, t->lun);
		ds_put_be32(h + 16, t->itt);
		ds_put_be32(h + 20, r->ttt);
		put_sns(c, h, false);
		ds_put_be32(h + 36, t->r2tsn++);
		ds_put_be32(h + 40, r->off);
		ds_put_be32(h + 44, r->len);
		iscsisrv_hdr_digest(c, h);
		r->iov[0] = (struct iovec){ h, iscsisrv_hdr_bytes(c) };
		r->tx_busy = true;
		t->tx_pending++;
		iscsisrv_tx_send(c, &r->tx, r->iov, 1, r2t_tx_sent);
	}
}

/* Moves @t on: more R2Ts, the submission, or the failure response. */
static void task_progress(struct iscsisrv_task *t)
{
	if (t->state != TASK_DATA)
		return;
	if (t->write && t->received < t->edtl) {
		if (!t->unsol_open)
			task_r2ts(t);
		return;
	}
	if (!t->ordered)
		return;
	if (t->err)
		task_fail(t);
	else
		task_submit(t);
}

/* ---- SCSI Command and Data-Out ----------------------------------------------- */

/* Whether some task will finish without more from the initiator (so a
 * command held back for the byte budget is not waiting on itself). */
static bool sess_some_settling(const struct iscsisrv_conn *c)
{
	for (unsigned i = 0; i < c->ntasks; i++)
		if (c->tasks[i].state == TASK_SUBMITTED || c->tasks[i].state == TASK_RESPONDING)
			return true;
	return false;
}

uint8_t *iscsisrv_session_cmd_dest(struct iscsisrv_conn *c, const uint8_t *bhs)
{
	uint8_t flags = bhs[1];
	bool imm = iscsi_bhs_immediate(bhs), fin = flags & ISCSI_FLAG_F;
	uint32_t sn = iscsi_bhs_cmdsn(bhs), edtl = iscsi_bhs_w20(bhs), dlen = iscsi_bhs_dlen(bhs);

	assert(!c->cmd_buf);
	/* Exactly the cases sess_scsi_cmd takes at once: anything it would
	 * refuse, ignore or hold back goes through the receive buffer. */
	if (c->discovery || iscsi_bhs_opcode(bhs) != ISCSI_OP_SCSI_CMD || bhs[4] != 0 ||
	    !(flags & ISCSI_CMD_W) || (flags & ISCSI_CMD_R) || !c->p.immediate_data ||
	    dlen > edtl || dlen > c->p.first_burst || (!fin && c->p.initial_r2t) ||
	    edtl > ISCSISRV_MAX_XFER || !c->free_tasks)
		return NULL;
	if (!imm && (sn_lt(sn, c->exp_cmdsn) || sn_lt(max_cmdsn(c), sn)))
		return NULL;
	if (c->ntasks_used > 0 && c->inflight_bytes + edtl > ISCSISRV_INFLIGHT_BYTES &&
	    sess_some_settling(c))
		return NULL;
	c->cmd_buf = reactor_buf_get(c->r, edtl, false);
	c->cmd_buf_bytes = edtl;
	return c->cmd_buf;
}

void iscsisrv_session_cmd_dest_drop(struct iscsisrv_conn *c)
{
	if (c->cmd_buf)
		reactor_buf_put(c->r, c->cmd_buf, c->cmd_buf_bytes);
	c->cmd_buf = NULL;
}

static bool sess_scsi_cmd(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;
	uint8_t flags = bhs[1];
	bool imm = iscsi_bhs_immediate(bhs);
	uint32_t sn = iscsi_bhs_cmdsn(bhs), edtl = iscsi_bhs_w20(bhs);
	bool rd = flags & ISCSI_CMD_R, wr = flags & ISCSI_CMD_W, fin = flags & ISCSI_FLAG_F;
	uint8_t cdb[SCSI_CDB_MAX];
	struct iscsisrv_task *t;
	int cdb_len;

	if (c->discovery) {
		iscsisrv_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
		return true;
	}
	if (!imm && (sn_lt(sn, c->exp_cmdsn) || sn_lt(max_cmdsn(c), sn))) {
		/* RFC 7143 §4.2.2.1: outside the window, silently ignored. */
		log_debug("%s: SCSI Command with CmdSN %u outside [%u, %u]: ignored", c->name, sn,
			  c->exp_cmdsn, max_cmdsn(c));
		return true;
	}
	cdb_len = iscsi_pdu_cdb(pdu, cdb, sizeof(cdb));
	if (pdu->data_digest_bad || cdb_len < 0 || (rd && wr) ||
	    (pdu->dlen && (!wr || !c->p.immediate_data || pdu->dlen > edtl ||
			   pdu->dlen > c->p.first_burst)) ||
	    (wr && !fin && c->p.initial_r2t) || edtl > ISCSISRV_MAX_XFER) {
		uint8_t reason = pdu->data_digest_bad ? ISCSI_REJECT_DATA_DIGEST
				 : (cdb_len < 0 || (rd && wr) || edtl > ISCSISRV_MAX_XFER)
				 ? ISCSI_REJECT_INVALID_FIELD : ISCSI_REJECT_PROTOCOL;

		log_debug("%s: SCSI Command refused: %s", c->name,
			  pdu->data_digest_bad ? "data digest error" : cdb_len < 0 ? "bad CDB AHS"
			  : (rd && wr) ? "bidirectional commands are not supported"
			  : edtl > ISCSISRV_MAX_XFER ? "transfer too long"
			  : "data where none may be");
		iscsisrv_reject(c, bhs, reason);
		/* The command's CmdSN is spent: later ones must not wait for it. */
		if (!imm && sn == c->exp_cmdsn) {
			c->exp_cmdsn++;
			advance_order(c);
		}
		return true;
	}
	if (!c->free_tasks) {
		if (imm) {
			iscsisrv_reject(c, bhs, ISCSI_REJECT_IMMEDIATE);
			return true;
		}
		return false;   /* a response still being sent holds the slot */
	}
	if (c->ntasks_used > 0 && c->inflight_bytes + edtl > ISCSISRV_INFLIGHT_BYTES &&
	    sess_some_settling(c))
		return false;   /* budget: resume when a command finishes */
	t = task_get(c);
	t->itt = iscsi_bhs_itt(bhs);
	t->cmdsn = sn;
	t->edtl = edtl;
	t->lun = iscsi_bhs_lun(bhs);
	t->immediate = imm;
	t->read = rd;
	t->write = wr;
	memcpy(t->cmd.cdb, cdb, sizeof(cdb));
	t->cmd.cdb_len = (uint8_t)cdb_len;
	t->cmd.task_attr = flags & ISCSI_CMD_ATTR_MASK;
	if (edtl) {
		if (c->cmd_buf && pdu->data == c->cmd_buf) {
			/* The immediate data was received in place (cmd_dest). */
			t->buf = c->cmd_buf;
			c->cmd_buf = NULL;
		} else {
			t->buf = reactor_buf_get(c->r, edtl, false);
		}
		if (!t->buf) {
			log_error("%s: out of memory for a %u-byte command: closing", c->name, edtl);
			task_drop(t);
			c->phase = PHASE_DONE;
			netsrv_conn_close(c->nc, false, NULL);
			return true;
		}
		t->buf_cap = edtl;
		c->inflight_bytes += edtl;
	}
	if (wr) {
		if (pdu->dlen && pdu->data != t->buf)
			memcpy(t->buf, pdu->data, pdu->dlen);
		t->received = pdu->dlen;
		t->unsol_next = pdu->dlen;
		if (!fin) {
			t->unsol_open = true;
			t->unsol_end = MIN(c->p.first_burst, edtl);
			if (t->unsol_end <= t->unsol_next)
				t->unsol_open = false;
		}
		t->r2t_next = t->unsol_next;
	}
	c->ncommands++;
	if (imm) {
		t->ordered = true;
	} else {
		t->windowed = true;
		c->win_used++;
		if (sn == c->exp_cmdsn) {
			t->ordered = true;
			c->exp_cmdsn++;
		} else {
			c->nwaiting++;
		}
	}
	task_progress(t);
	if (t->ordered && !imm)
		advance_order(c);
	return true;
}

/* The task and solicitation a Data-Out header @bhs belongs to (@r NULL
 * for unsolicited data); NULL if we wait on none. */
static struct iscsisrv_task *data_out_task(struct iscsisrv_conn *c, const uint8_t *bhs,
					   struct iscsisrv_r2t **rp)
{
	uint32_t ttt = iscsi_bhs_w20(bhs), itt = iscsi_bhs_itt(bhs);
	struct iscsisrv_task *t = NULL;
	struct iscsisrv_r2t *r = NULL;

	if (ttt != ISCSI_RESERVED_TAG) {
		uint32_t idx = ttt >> TTT_INDEX_SHIFT;

		if (idx < c->ntasks && c->tasks[idx].state == TASK_DATA && c->tasks[idx].itt == itt) {
			t = &c->tasks[idx];
			for (unsigned i = 0; i < ISCSISRV_MAX_R2T && !r; i++)
				if (t->r2t[i].active && t->r2t[i].ttt == ttt)
					r = &t->r2t[i];
			if (!r)
				t = NULL;
		}
	} else {
		for (unsigned i = 0; i < c->ntasks && !t; i++)
			if (c->tasks[i].state == TASK_DATA && c->tasks[i].unsol_open &&
			    c->tasks[i].itt == itt)
				t = &c->tasks[i];
	}
	*rp = r;
	return t;
}

/* Where the data of @t's next Data-Out must start, and where it must end
 * by (the solicited burst, or FirstBurstLength). */
static void data_out_window(const struct iscsisrv_task *t, const struct iscsisrv_r2t *r,
			    uint32_t *exp_off, uint32_t *limit)
{
	if (r) {
		*exp_off = r->off + r->got;
		*limit = r->off + r->len;
	} else {
		*exp_off = t->unsol_next;
		*limit = t->unsol_end;
	}
}

uint8_t *iscsisrv_session_data_dest(struct iscsisrv_conn *c, const uint8_t *bhs,
				    struct iscsisrv_task **tp)
{
	uint32_t off = ds_get_be32(bhs + 40), dlen = iscsi_bhs_dlen(bhs), exp_off, limit;
	struct iscsisrv_r2t *r;
	struct iscsisrv_task *t;

	if (c->discovery || iscsi_bhs_opcode(bhs) != ISCSI_OP_DATA_OUT || bhs[4] != 0)
		return NULL;
	t = data_out_task(c, bhs, &r);
	if (!t)
		return NULL;
	data_out_window(t, r, &exp_off, &limit);
	if (off != exp_off || dlen > limit - off)
		return NULL;
	/* Held until the receive ends: a drain or a close must not put the
	 * buffer back while the kernel may still write into it. */
	t->tx_pending++;
	*tp = t;
	return t->buf + off;
}

void iscsisrv_session_data_release(struct iscsisrv_task *t)
{
	t->tx_pending--;
	task_maybe_free(t);
}

static bool sess_data_out(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;
	uint32_t ttt = iscsi_bhs_w20(bhs), itt = iscsi_bhs_itt(bhs);
	uint32_t datasn = ds_get_be32(bhs + 36), off = ds_get_be32(bhs + 40);
	uint32_t exp_off, limit, *exp_sn;
	struct iscsisrv_r2t *r;
	struct iscsisrv_task *t = data_out_task(c, bhs, &r);

	if (!t) {
		log_debug("%s: Data-Out for no task we wait on (ITT 0x%x, TTT 0x%x)", c->name,
			  itt, ttt);
		iscsisrv_reject(c, bhs, ISCSI_REJECT_INVALID_FIELD);
		return true;
	}
	data_out_window(t, r, &exp_off, &limit);
	exp_sn = r ? &r->datasn : &t->unsol_datasn;
	if (off != exp_off || pdu->dlen > limit - off) {
		/* Out-of-order or excess data cannot be recovered at
		 * ErrorRecoveryLevel 0 (RFC 7143 §7.1.4.1): the session goes. */
		log_warn("%s: Data-Out at offset %u+%u, expected %u (limit %u): closing", c->name,
			 off, pdu->dlen, exp_off, limit);
		iscsisrv_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
		c->phase = PHASE_DONE;
		netsrv_conn_close(c->nc, true, NULL);
		return true;
	}
	if (datasn != *exp_sn && !t->err) {
		/* DATA PHASE ERROR: the command never ends GOOD. */
		log_debug("%s: Data-Out DataSN %u, expected %u: the command fails", c->name,
			  datasn, *exp_sn);
		t->err = true;
		t->err_asc = 0x4b;
		t->err_ascq = 0x00;
	}
	(*exp_sn)++;
	if (pdu->data_digest_bad) {
		/* RFC 7143 §7.8: Reject and drop the data; the command cannot succeed
		 * (PROTOCOL SERVICE CRC ERROR). */
		iscsisrv_reject(c, bhs, ISCSI_REJECT_DATA_DIGEST);
		t->err = true;
		t->err_asc = 0x47;
		t->err_ascq = 0x05;
	} else if (pdu->dlen && pdu->data != t->buf + off) {
		/* (Received straight into place otherwise: server.c.) */
		memcpy(t->buf + off, pdu->data, pdu->dlen);
	}
	t->received += pdu->dlen;
	if (r) {
		r->got += pdu->dlen;
		if (r->got == r->len) {
			r->active = false;
			t->nr2t--;
		}
	} else {
		t->unsol_next += pdu->dlen;
		if ((bhs[1] & ISCSI_FLAG_F) || t->unsol_next == t->unsol_end) {
			t->unsol_open = false;
			t->r2t_next = t->unsol_next;
		}
	}
	task_progress(t);
	return true;
}

/* ---- NOP, Text, TMF, Logout ---------------------------------------------------- */

static bool sess_nop_out(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;
	uint32_t itt = iscsi_bhs_itt(bhs), len;
	struct iscsisrv_ctl *ctl;

	if (itt == ISCSI_RESERVED_TAG) {
		/* An answer to our ping, or a keep-alive needing none. */
		if (c->ping_out && iscsi_bhs_w20(bhs) == c->ping_ttt)
			c->ping_out = false;
		return true;
	}
	if (!cmdsn_accept(c, bhs))
		return true;
	if (pdu->data_digest_bad) {
		iscsisrv_reject(c, bhs, ISCSI_REJECT_DATA_DIGEST);
		return true;
	}
	len = MIN(pdu->dlen, c->p.max_recv_dsl);
	ctl = iscsisrv_ctl_new(c, len);
	if (!ctl)
		return true;
	iscsi_bhs_init(ctl->hdr, ISCSI_OP_NOP_IN, ISCSI_FLAG_F);
	iscsi_bhs_set_dlen(ctl->hdr, len);
	ds_put_be64(ctl->hdr + 8, iscsi_bhs_lun(bhs));
	ds_put_be32(ctl->hdr + 16, itt);
	ds_put_be32(ctl->hdr + 20, ISCSI_RESERVED_TAG);
	put_sns(c, ctl->hdr, true);
	memcpy(ctl->data, pdu->data, len);
	iscsisrv_ctl_send(c, ctl);
	return true;
}

/* The portal SendTargets advertises: the configured one, else the address
 * this connection reached. */
static void sess_portal(const struct iscsisrv_conn *c, char *out, size_t len)
{
	struct sockaddr_storage ss;
	unsigned sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];

	if (c->srv->opts.portal) {
		snprintf(out, len, "%s", c->srv->opts.portal);
		return;
	}
	if (netsrv_conn_local_addr(c->nc, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)&ss;

			inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
			snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
			return;
		}
		if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const void *)&ss;

			inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
			snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
			return;
		}
	}
	snprintf(out, len, "127.0.0.1:%u", ISCSI_DEFAULT_PORT);
}

/* SendTargets (RFC 7143 appendix C): every target to a Discovery session
 * asking for All, else the named one (a Normal session sees its own). */
static void sess_send_targets(struct iscsisrv_conn *c, const struct iscsi_kv *kv)
{
	char portal[INET6_ADDRSTRLEN + 16];

	sess_portal(c, portal, sizeof(portal));
	pthread_mutex_lock(&c->srv->lock);
	for (unsigned i = 0; i < c->srv->ntargets; i++) {
		struct scsi_target *t = c->srv->targets[i];
		const char *name = scsi_target_name(t);
		bool want;

		if (kv->val_len == 3 && memcmp(kv->val, "All", 3) == 0)
			want = c->discovery || t == c->target;
		else if (kv->val_len == 0)
			want = t == c->target;
		else
			want = strlen(name) == kv->val_len && memcmp(name, kv->val, kv->val_len) == 0 &&
			       (c->discovery || t == c->target);
		if (!want)
			continue;
		iscsi_text_add(&c->text_out, "TargetName", "%s", name);
		iscsi_text_add(&c->text_out, "TargetAddress", "%s,%u", portal, ISCSISRV_TPGT);
	}
	pthread_mutex_unlock(&c->srv->lock);
}

/* Sends the next piece of c->text_out (C bit while more follows). */
static void sess_text_send(struct iscsisrv_conn *c, uint32_t itt)
{
	size_t left = c->text_out.len - c->text_off;
	uint32_t n = (uint32_t)MIN(left, (size_t)c->p.max_recv_dsl);
	bool more = n < left;
	struct iscsisrv_ctl *ctl = iscsisrv_ctl_new(c, n);

	if (!ctl)
		return;
	iscsi_bhs_init(ctl->hdr, ISCSI_OP_TEXT_RSP, more ? ISCSI_FLAG_C : ISCSI_FLAG_F);
	iscsi_bhs_set_dlen(ctl->hdr, n);
	ds_put_be32(ctl->hdr + 16, itt);
	if (more) {
		c->text_ttt = (c->next_ttt++ & 0xfffffu) | 0xfff00000u;
		if (c->text_ttt == ISCSI_RESERVED_TAG)
			c->text_ttt = 0xfff00000u;
	}
	ds_put_be32(ctl->hdr + 20, more ? c->text_ttt : ISCSI_RESERVED_TAG);
	put_sns(c, ctl->hdr, true);
	if (n)
		memcpy(ctl->data, c->text_out.buf + c->text_off, n);
	c->text_off += n;
	c->text_itt = itt;
	iscsisrv_ctl_send(c, ctl);
	if (!more) {
		iscsi_text_reset(&c->text_out);
		c->text_off = 0;
	}
}

static bool sess_text(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;
	uint32_t itt = iscsi_bhs_itt(bhs), ttt = iscsi_bhs_w20(bhs);
	struct iscsi_kv kv;
	size_t off = 0;

	if (!cmdsn_accept(c, bhs))
		return true;
	if (pdu->data_digest_bad) {
		iscsisrv_reject(c, bhs, ISCSI_REJECT_DATA_DIGEST);
		return true;
	}
	if (ttt != ISCSI_RESERVED_TAG) {
		/* The initiator asks for the rest of our answer (RFC 7143 §11.11.4). */
		if (ttt != c->text_ttt || c->text_off == 0 || itt != c->text_itt) {
			iscsisrv_reject(c, bhs, ISCSI_REJECT_INVALID_FIELD);
			return true;
		}
		sess_text_send(c, itt);
		return true;
	}
	iscsi_text_reset(&c->text_out);
	c->text_off = 0;
	if (c->text_in.len + pdu->dlen > ISCSI_LOGIN_TEXT_MAX) {
		iscsi_text_reset(&c->text_in);
		iscsisrv_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
		return true;
	}
	iscsi_text_append(&c->text_in, pdu->data, pdu->dlen);
	if (bhs[1] & ISCSI_FLAG_C) {
		/* More keys follow: an empty answer asks for them. */
		iscsi_text_reset(&c->text_out);
		c->text_off = 0;
		sess_text_send(c, itt);
		return true;
	}
	while (iscsi_kv_next(c->text_in.buf, c->text_in.len, &off, &kv) > 0) {
		if (iscsi_kv_is(&kv, "SendTargets"))
			sess_send_targets(c, &kv);
		else if (iscsi_negotiate(&kv, ISCSI_NEG_FULL_FEATURE, &c->p, &c->text_out) ==
			 ISCSI_NEG_NOT_MINE) {
			iscsi_text_append(&c->text_out, kv.key, kv.key_len);
			iscsi_text_append(&c->text_out, "=Reject", 8);
		}
	}
	iscsi_text_reset(&c->text_in);
	if (c->text_out.oom) {
		iscsi_text_reset(&c->text_out);
		iscsisrv_reject(c, bhs, ISCSI_REJECT_LONG_OP);
		return true;
	}
	sess_text_send(c, itt);
	return true;
}

static void tmf_respond(struct iscsisrv_conn *c, uint32_t itt, uint8_t response)
{
	struct iscsisrv_ctl *ctl = iscsisrv_ctl_new(c, 0);

	if (!ctl)
		return;
	iscsi_bhs_init(ctl->hdr, ISCSI_OP_TMF_RSP, ISCSI_FLAG_F);
	ctl->hdr[2] = response;
	ds_put_be32(ctl->hdr + 16, itt);
	put_sns(c, ctl->hdr, true);
	iscsisrv_ctl_send(c, ctl);
}

static void tmf_finish(struct iscsisrv_conn *c)
{
	uint8_t response = c->tmf_response;

	c->tmf_active = false;
	switch (c->tmf_function) {
	case ISCSI_TMF_LU_RESET:
		if (scsi_lu_reset(c->nexus, c->tmf_lun) == -ENOENT)
			response = ISCSI_TMF_RSP_NO_LUN;
		break;
	case ISCSI_TMF_TARGET_WARM_RESET:
	case ISCSI_TMF_TARGET_COLD_RESET:
		scsi_target_reset(c->nexus);
		break;
	default:
		break;
	}
	log_debug("%s: task management function %u done (response %u)", c->name,
		  c->tmf_function, response);
	tmf_respond(c, c->tmf_itt, response);
	if (c->tmf_function == ISCSI_TMF_TARGET_COLD_RESET) {
		/* RFC 7143 §11.5.1: a cold reset drops the connections after the answer. */
		c->phase = PHASE_DONE;
		netsrv_conn_close(c->nc, true, "target cold reset");
		return;
	}
	iscsisrv_conn_resume(c);
}

/* Aborts @t for the TMF in progress: a task still gathering data goes at
 * once, one in the core is waited for and its response suppressed. */
static void tmf_abort_task(struct iscsisrv_conn *c, struct iscsisrv_task *t)
{
	if (t->state == TASK_DATA) {
		task_drop(t);
	} else if (t->state == TASK_SUBMITTED && !t->aborted) {
		t->aborted = true;
		c->tmf_waiting++;
	}
}

static bool sess_tmf(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;
	uint8_t fn = bhs[1] & 0x7f;
	uint32_t itt = iscsi_bhs_itt(bhs), rtt = iscsi_bhs_w20(bhs);
	uint64_t lun = iscsi_bhs_lun(bhs);

	if (!cmdsn_accept(c, bhs))
		return true;
	if (c->discovery) {
		tmf_respond(c, itt, ISCSI_TMF_RSP_NOT_SUPPORTED);
		return true;
	}
	c->tmf_function = fn;
	c->tmf_itt = itt;
	c->tmf_lun = lun;
	c->tmf_response = ISCSI_TMF_RSP_COMPLETE;
	c->tmf_waiting = 0;
	switch (fn) {
	case ISCSI_TMF_ABORT_TASK: {
		struct iscsisrv_task *t = NULL;

		for (unsigned i = 0; i < c->ntasks && !t; i++)
			if ((c->tasks[i].state == TASK_DATA || c->tasks[i].state == TASK_SUBMITTED) &&
			    !c->tasks[i].aborted && c->tasks[i].itt == rtt)
				t = &c->tasks[i];
		if (!t) {
			/* Completed already (its response is out or going). */
			tmf_respond(c, itt, ISCSI_TMF_RSP_NO_TASK);
			return true;
		}
		tmf_abort_task(c, t);
		break;
	}
	case ISCSI_TMF_ABORT_TASK_SET:
	case ISCSI_TMF_CLEAR_TASK_SET:
	case ISCSI_TMF_LU_RESET:
		for (unsigned i = 0; i < c->ntasks; i++)
			if (c->tasks[i].lun == lun)
				tmf_abort_task(c, &c->tasks[i]);
		break;
	case ISCSI_TMF_TARGET_WARM_RESET:
	case ISCSI_TMF_TARGET_COLD_RESET:
		for (unsigned i = 0; i < c->ntasks; i++)
			tmf_abort_task(c, &c->tasks[i]);
		break;
	case ISCSI_TMF_TASK_REASSIGN:
		/* RFC 7143 §11.6.1: response 4 at ErrorRecoveryLevel < 2. */
		tmf_respond(c, itt, 4);
		return true;
	default:
		tmf_respond(c, itt, ISCSI_TMF_RSP_NOT_SUPPORTED);
		return true;
	}
	c->tmf_active = true;
	if (c->tmf_waiting == 0)
		tmf_finish(c);
	return true;
}

static void logout_respond(struct iscsisrv_conn *c, uint32_t itt, uint8_t response)
{
	struct iscsisrv_ctl *ctl = iscsisrv_ctl_new(c, 0);

	if (!ctl)
		return;
	iscsi_bhs_init(ctl->hdr, ISCSI_OP_LOGOUT_RSP, ISCSI_FLAG_F);
	ctl->hdr[2] = response;
	ds_put_be32(ctl->hdr + 16, itt);
	put_sns(c, ctl->hdr, true);
	iscsisrv_ctl_send(c, ctl);
}

/* Drops every task still waiting for data (it will not come). */
static void sess_drop_gathering(struct iscsisrv_conn *c)
{
	for (unsigned i = 0; i < c->ntasks; i++)
		if (c->tasks[i].state == TASK_DATA)
			task_drop(&c->tasks[i]);
}

static bool sess_logout(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;
	uint8_t reason = bhs[1] & 0x7f;
	uint32_t itt = iscsi_bhs_itt(bhs);

	if (!cmdsn_accept(c, bhs))
		return true;
	if (reason == 2) {
		logout_respond(c, itt, 2);      /* connection recovery unsupported (ERL 0) */
		return true;
	}
	if (reason == 1 && ds_get_be16(bhs + 20) != c->cid) {
		logout_respond(c, itt, 1);      /* CID not found */
		return true;
	}
	if (reason > 2) {
		iscsisrv_reject(c, bhs, ISCSI_REJECT_INVALID_FIELD);
		return true;
	}
	c->logout_active = true;
	c->logout_itt = itt;
	c->logout_response = 0;
	sess_drop_gathering(c);
	sess_check_quiet(c);
	return true;
}

/* A logout or a drain waits for the commands in the core; then it
 * answers and closes. */
static void sess_check_quiet(struct iscsisrv_conn *c)
{
	if (c->nsubmitted > 0 || netsrv_conn_closing(c->nc) || c->phase != PHASE_FULL)
		return;
	if (c->logout_active) {
		/* The I_T nexus ends with the logout, not later when the
		 * socket is gone: an initiator that logs in again at once
		 * must find its PREVENT and SPC-2 reservation released
		 * (SPC-4 I_T nexus loss; libiscsi's PreventAllow.Logout). */
		scsi_nexus_free(c->nexus);
		c->nexus = NULL;
		logout_respond(c, c->logout_itt, c->logout_response);
		log_debug("%s: session 0x%04x logged out after %llu commands", c->name, c->tsih,
			  (unsigned long long)c->ncommands);
		c->phase = PHASE_DONE;
		netsrv_conn_close(c->nc, true, NULL);
	} else if (c->draining) {
		/* AsyncEvent 3: the target drops the session's connections
		 * (RFC 7143 §11.9.1); Parameter2/3: Time2Wait and Time2Retain. */
		struct iscsisrv_ctl *ctl = iscsisrv_ctl_new(c, 0);

		if (ctl) {
			iscsi_bhs_init(ctl->hdr, ISCSI_OP_ASYNC, ISCSI_FLAG_F);
			ds_put_be32(ctl->hdr + 16, ISCSI_RESERVED_TAG);
			put_sns(c, ctl->hdr, true);
			ctl->hdr[36] = 3;
			ds_put_be16(ctl->hdr + 40, (uint16_t)c->p.default_time2wait);
			ds_put_be16(ctl->hdr + 42, 0);
			iscsisrv_ctl_send(c, ctl);
		}
		c->phase = PHASE_DONE;
		netsrv_conn_close(c->nc, true, "server stopping");
	}
}

/* ---- keep-alive ------------------------------------------------------------------- */

static void sess_nop_timer(struct reactor_timer *tm)
{
	struct iscsisrv_conn *c = container_of(tm, struct iscsisrv_conn, nop_timer);
	uint64_t now = reactor_now_ns();
	struct iscsisrv_ctl *ctl;

	if (netsrv_conn_closing(c->nc) || c->phase != PHASE_FULL)
		return;
	if (c->ping_out) {
		if (now - c->ping_sent_ns >= c->nop_interval_ns) {
			log_warn("%s: no answer to a NOP-In ping: closing", c->name);
			c->phase = PHASE_DONE;
			netsrv_conn_close(c->nc, false, NULL);
			return;
		}
	} else if (now - c->last_rx_ns >= c->nop_interval_ns && c->nsubmitted == 0 &&
		   !c->draining && (ctl = iscsisrv_ctl_new(c, 0))) {
		/* RFC 7143 §11.19: a ping the initiator must answer (TTT != 0xffffffff). */
		c->ping_ttt = ((c->ping_ttt + 1) & 0x7fffffffu) | 0x1;
		iscsi_bhs_init(ctl->hdr, ISCSI_OP_NOP_IN, ISCSI_FLAG_F);
		ds_put_be32(ctl->hdr + 16, ISCSI_RESERVED_TAG);
		ds_put_be32(ctl->hdr + 20, c->ping_ttt);
		put_sns(c, ctl->hdr, false);
		iscsisrv_ctl_send(c, ctl);
		c->ping_out = true;
		c->ping_sent_ns = now;
	}
	reactor_timer_start(c->r, &c->nop_timer, c->nop_interval_ns / 2);
}

/* ---- entry points ----------------------------------------------------------------- */

/* scsi_nexus_set_probe: the session is lost once the initiator has
 * closed its connection (at ErrorRecoveryLevel 0 a session ends with its
 * only connection, RFC 7143), whether or not this reactor has read the
 * end of the stream yet. */
static bool sess_nexus_gone(void *opaque)
{
	struct iscsisrv_conn *c = opaque;

	return netsrv_conn_peer_gone(c->nc);
}

int iscsisrv_session_begin(struct iscsisrv_conn *c)
{
	struct iscsi_login *l = c->login;
	static const char hex[] = "0123456789abcdef";

	c->p = l->params;
	c->discovery = l->discovery;
	c->target = l->target;
	memcpy(c->initiator, l->initiator_name, sizeof(c->initiator));
	memcpy(c->isid, l->isid, sizeof(c->isid));
	c->cid = l->cid;
	c->tsih = l->cfg.tsih;
	c->exp_cmdsn = l->cmdsn;
	c->statsn = l->statsn;
	c->window = c->srv->opts.window;
	if (!c->discovery) {
		struct scsi_initiator_id id = { .protocol = SCSI_PROTO_ISCSI };
		char *p;
		int ret;

		c->ntasks = c->window + ISCSISRV_SPARE_TASKS;
		c->tasks = calloc(c->ntasks, sizeof(*c->tasks));
		if (!c->tasks)
			return -ENOMEM;
		for (unsigned i = c->ntasks; i-- > 0;) {
			c->tasks[i].c = c;
			for (unsigned k = 0; k < ISCSISRV_MAX_R2T; k++)
				c->tasks[i].r2t[k].t = &c->tasks[i];
			c->tasks[i].next_free = c->free_tasks;
			c->free_tasks = &c->tasks[i];
		}
		/* SPC-4 §7.6.4.6 / RFC 7143 §10.1.1: "<name>,i,0x<ISID>". */
		snprintf(id.name, sizeof(id.name), "%s", c->initiator);
		p = id.port + snprintf(id.port, sizeof(id.port) - 13, "%s,i,0x", c->initiator);
		for (unsigned i = 0; i < 6; i++) {
			*p++ = hex[c->isid[i] >> 4];
			*p++ = hex[c->isid[i] & 15];
		}
		*p = '\0';
		ret = scsi_nexus_new(c->target, &id, &c->nexus);
		if (ret < 0) {
			free(c->tasks);
			c->tasks = NULL;
			c->free_tasks = NULL;
			c->ntasks = 0;
			return ret;
		}
		scsi_nexus_set_probe(c->nexus, sess_nexus_gone, c);
	}
	c->dg = (struct iscsi_digests){ c->p.header_digest, c->p.data_digest };
	c->phase = PHASE_FULL;
	iscsi_login_release(l);
	free(l);
	c->login = NULL;
	atomic_fetch_add(&c->srv->nsessions, 1);
	c->in_session = true;
	log_debug("%s: %s session 0x%04x of %s%s%s (digests %s/%s, MaxRecvDataSegmentLength %u, "
		  "bursts %u/%u, InitialR2T %s, ImmediateData %s, MaxOutstandingR2T %u)", c->name,
		  c->discovery ? "discovery" : "normal", c->tsih, c->initiator,
		  c->discovery ? "" : " to ", c->discovery ? "" : scsi_target_name(c->target),
		  c->p.header_digest ? "CRC32C" : "None", c->p.data_digest ? "CRC32C" : "None",
		  c->p.max_recv_dsl, c->p.first_burst, c->p.max_burst,
		  c->p.initial_r2t ? "Yes" : "No", c->p.immediate_data ? "Yes" : "No",
		  c->p.max_outstanding_r2t);
	netsrv_conn_established(c->nc);
	c->last_rx_ns = reactor_now_ns();
	if (c->srv->opts.nop_interval_s != UINT32_MAX) {
		c->nop_interval_ns = (uint64_t)c->srv->opts.nop_interval_s * 1000000000ull;
		c->nop_timer.fn = sess_nop_timer;
		reactor_timer_start(c->r, &c->nop_timer, c->nop_interval_ns / 2);
	}
	return 0;
}

bool iscsisrv_session_can_parse(const struct iscsisrv_conn *c)
{
	return !c->tmf_active && !c->logout_active && !c->draining;
}

bool iscsisrv_session_pdu(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu)
{
	const uint8_t *bhs = pdu->bhs;

	switch (iscsi_bhs_opcode(bhs)) {
	case ISCSI_OP_SCSI_CMD:
		return sess_scsi_cmd(c, pdu);
	case ISCSI_OP_DATA_OUT:
		if (c->discovery) {
			iscsisrv_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
			return true;
		}
		return sess_data_out(c, pdu);
	case ISCSI_OP_NOP_OUT:
		return sess_nop_out(c, pdu);
	case ISCSI_OP_TEXT_REQ:
		return sess_text(c, pdu);
	case ISCSI_OP_TMF_REQ:
		return sess_tmf(c, pdu);
	case ISCSI_OP_LOGOUT_REQ:
		return sess_logout(c, pdu);
	case ISCSI_OP_LOGIN_REQ:
		iscsisrv_reject(c, bhs, ISCSI_REJECT_PROTOCOL);
		return true;
	case ISCSI_OP_SNACK:
	default:
		/* SNACK needs ErrorRecoveryLevel > 0 (RFC 7143 §11.16); the rest is not
		 * an initiator opcode. */
		iscsisrv_reject(c, bhs, ISCSI_REJECT_NOT_SUPPORTED);
		return true;
	}
}

void iscsisrv_session_drain(struct iscsisrv_conn *c)
{
	if (netsrv_conn_closing(c->nc) || c->draining)
		return;
	c->draining = true;
	netsrv_rx_cancel(c->nc);
	sess_drop_gathering(c);
	sess_check_quiet(c);
}

void iscsisrv_session_closed(struct iscsisrv_conn *c)
{
	reactor_timer_cancel(c->r, &c->nop_timer);
	sess_drop_gathering(c);
}

void iscsisrv_session_free(struct iscsisrv_conn *c)
{
	reactor_timer_cancel(c->r, &c->nop_timer);
	if (c->in_session)
		atomic_fetch_sub(&c->srv->nsessions, 1);
	for (unsigned i = 0; i < c->ntasks; i++) {
		struct iscsisrv_task *t = &c->tasks[i];

		if (t->state != TASK_FREE) {
			t->tx_pending = 0;
			t->state = TASK_RESPONDING;
			task_maybe_free(t);
		}
	}
	free(c->tasks);
	c->tasks = NULL;
	scsi_nexus_free(c->nexus);
	c->nexus = NULL;
	iscsi_text_free(&c->text_in);
	iscsi_text_free(&c->text_out);
}
