/* SPDX-License-Identifier: MIT */
/*
 * scsi.c: the virtio-scsi device (scsi.h).
 *
 * Notes on the design
 * -------------------
 * - Virtqueue 0 is the control queue, 1 the event queue, 2.. the request
 *   queues (virtio 1.2 §5.6.2); each runs on its ring's reactor thread.
 *   The layouts are those of the config space QEMU 7.2 gives the guest:
 *   cdb_size 32, sense_size 96 (QEMU owns the config space; the back-end
 *   does not offer VHOST_USER_PROTOCOL_F_CONFIG).
 * - Addressing (virtio 1.2 §5.6.6): lun[0] = 1, lun[1] = the target, lun[2..3] the
 *   LUN in SAM's single-level format (Linux sets flat addressing, 0x40,
 *   even for LUN 0), lun[4..7] zero. One target, 0: any other answers
 *   VIRTIO_SCSI_S_BAD_TARGET (Linux probes 1..255 once each at boot).
 *   Bytes 2..7 go to the core as the SAM LUN, which decodes or refuses it.
 *   Events carry the LUN the way REPORT LUNS lists it (peripheral
 *   addressing below 256): Linux takes lun[2] << 8 | lun[3] from an event
 *   without masking the address method.
 * - Commands: the request header and the response are gathered and
 *   scattered wherever the guest split them; data-out is a slice of the
 *   readable buffers after the header, data-in a slice of the writable
 *   ones after the response, handed to the core as they are (no copy).
 *   The direction the buffers give must be the CDB's (scsi_cdb_data_out):
 *   a command whose buffers go the other way, or both ways (INOUT is not
 *   offered), is answered without running, OVERRUN and FAILURE, so the
 *   core never reads parameters from buffers the guest meant to receive
 *   data in. After the core: residual = buffer bytes not transferred;
 *   OVERRUN when the CDB asked to move more than the buffers hold (virtio 1.2 §5.6.6.1).
 * - One I_T nexus per device (the guest is one initiator port). Commands
 *   in flight sit on their queue's list, under the queue's lock, so that
 *   task management on the control queue's thread can find them; that
 *   lock is the only one on the data path and is uncontended unless a
 *   TMF runs. A TMF marks the commands it ends; each one, when the core
 *   finishes it, is answered ABORTED or RESET instead of its result, and
 *   the last one posts the TMF's completion to the control queue's
 *   thread, so the guest sees the commands end before the TMF (Linux takes
 *   the TMF's completion to mean they are over). The core has no way to
 *   cancel a command: it finishes, only its answer changes.
 * - Events: the driver posts event buffers ahead; the device holds them
 *   (FIFO, the event queue thread's) and fills one per event. Events come
 *   from the core's listener on any thread: they queue in a small array
 *   under ev_lock and a task posted to the event queue's reactor delivers
 *   them; with no buffer they wait, and when the array overflows the next
 *   delivered event carries VIRTIO_SCSI_T_EVENTS_MISSED (Linux then
 *   rescans the bus). When the event ring stops, held buffers are given
 *   back filled with NO_EVENT (a stop waits for every request).
 * - Event kinds: a LUN added is TRANSPORT_RESET/RESCAN, one removed
 *   TRANSPORT_RESET/REMOVED (both need HOTPLUG); a
 *   resize is PARAM_CHANGE with ASC/ASCQ 2Ah/09h (needs CHANGE), so that
 *   Linux rescans the disk; a DVD's new medium is ASYNC_NOTIFY/MEDIA
 *   CHANGE when the driver subscribed to it, else a RESCAN of the LUN.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "scsi/scsi.h"
#include "storage/disk.h"
#include "vhost/proto.h"
#include "vhost/scsi.h"
#include "vhost/vring.h"

#define BIT(n) (1ull << (n))

/* Events that wait for an event buffer. */
#define VSCSI_EVENTS_MAX 32

struct vscsi_tmf {
	struct reactor_task task;       /* the completion, on the control queue's thread */
	struct vhostscsi *s;
	struct vhost_req *req;
	atomic_uint waiting;            /* commands still to end, + 1 while marking */
	uint32_t subtype;
	int lun;                        /* decoded */
	uint64_t tag;                   /* ABORT TASK, QUERY TASK: the command's */
	uint8_t response;
};

/* Per request (vhost_req.priv). */
struct vscsi_req {
	struct scsi_cmd cmd;
	struct vhostscsi *s;
	struct vhost_req *req;
	struct vscsi_req *next, *prev;  /* in flight (queue lock), or held events */
	int lun;                        /* decoded, -1: not addressable */
	uint32_t xfer_len;
	struct vscsi_tmf *tmf;          /* the TMF that ends us (queue lock) */
	uint8_t abort_response;         /* ABORTED or RESET (queue lock) */
	struct vscsi_tmf own;           /* a control request's TMF */
};

struct vscsi_queue {
	pthread_mutex_t lock;           /* protects the in-flight list */
	struct vscsi_req *inflight;
};

struct vscsi_event {
	uint32_t event, reason;
	unsigned lun;
};

struct vhostscsi {
	struct scsi_target *t;
	struct scsi_nexus *nexus;
	unsigned nqueues;               /* 2 + request queues */
	struct vscsi_queue *queues;
	_Atomic uint64_t features;      /* what the driver acked */
	_Atomic uint8_t an_mask[SCSI_MAX_LUNS];   /* subscribed notification classes */
	bool listening;

	/* Events. The held buffers are the event queue thread's. */
	struct vscsi_req *held, *held_tail;
	pthread_mutex_t ev_lock;        /* protects the fields below */
	struct vscsi_event pending[VSCSI_EVENTS_MAX];
	unsigned npending;
	bool missed;
	struct reactor *ev_reactor;     /* the event ring's, while it runs */
	atomic_bool ev_posted;
	struct reactor_task ev_task;
};

/* ---- responses ---------------------------------------------------------------- */

/* Writes the command response (virtio_scsi_cmd_resp) at the start of the
 * writable part and completes; @data_in bytes of data-in were written. */
static void vscsi_cmd_respond(struct vscsi_req *vr, uint8_t response, uint8_t status,
			      const uint8_t *sense, uint32_t sense_len, uint32_t resid,
			      uint32_t data_in)
{
	struct vhost_req *req = vr->req;
	uint8_t resp[VIRTIO_SCSI_CMD_RESP_BYTES];

	memset(resp, 0, sizeof(resp));
	sense_len = MIN(sense_len, (uint32_t)VIRTIO_SCSI_SENSE_SIZE);
	ds_put_le32(resp, sense_len);
	ds_put_le32(resp + 4, resid);
	resp[10] = status;
	resp[11] = response;
	if (sense_len)
		memcpy(resp + 12, sense, sense_len);
	iov_from_buf(req->iov + req->out_cnt, (int)req->in_cnt, 0, resp, sizeof(resp));
	vhost_req_complete(req, (uint32_t)sizeof(resp) + data_in);
}

/* ---- the in-flight lists ------------------------------------------------------- */

static void vscsi_track(struct vhostscsi *s, struct vscsi_req *vr)
{
	struct vscsi_queue *q = &s->queues[vr->req->qidx];

	pthread_mutex_lock(&q->lock);
	vr->prev = NULL;
	vr->next = q->inflight;
	if (q->inflight)
		q->inflight->prev = vr;
	q->inflight = vr;
	pthread_mutex_unlock(&q->lock);
}

/* Takes @vr off its list; returns the TMF that ended it (or NULL). */
static struct vscsi_tmf *vscsi_untrack(struct vhostscsi *s, struct vscsi_req *vr)
{
	struct vscsi_queue *q = &s->queues[vr->req->qidx];
	struct vscsi_tmf *tmf;

	pthread_mutex_lock(&q->lock);
	if (vr->prev)
		vr->prev->next = vr->next;
	else
		q->inflight = vr->next;
	if (vr->next)
		vr->next->prev = vr->prev;
	tmf = vr->tmf;
	pthread_mutex_unlock(&q->lock);
	return tmf;
}

/* ---- request queues ------------------------------------------------------------ */

/* CDB length from the group code (SPC-4 §4.2.5.1); the bytes after it in
 * the 32-byte field are whatever the driver left there. */
static uint8_t vscsi_cdb_len(const uint8_t *cdb)
{
	switch (cdb[0] >> 5) {
	case 0:
		return 6;
	case 1:
	case 2:
		return 10;
	case 4:
		return 16;
	case 5:
		return 12;
	case 3:
		if (cdb[0] == 0x7F)
			return (uint8_t)MIN(8u + cdb[7], (unsigned)VIRTIO_SCSI_CDB_SIZE);
		return VIRTIO_SCSI_CDB_SIZE;
	default:
		return VIRTIO_SCSI_CDB_SIZE;
	}
}

static void vscsi_tmf_finish(struct vscsi_tmf *tmf);

static void vscsi_tmf_put(struct vscsi_tmf *tmf)
{
	if (atomic_fetch_sub(&tmf->waiting, 1) == 1)
		reactor_post(tmf->req->reactor, &tmf->task);
}

static void vscsi_cmd_done(struct scsi_cmd *cmd)
{
	struct vscsi_req *vr = cmd->opaque;
	struct vscsi_tmf *tmf = vscsi_untrack(vr->s, vr);
	uint32_t moved = 0, resid;
	uint8_t response = VIRTIO_SCSI_S_OK;

	if (tmf) {
		/* virtio 1.2 §5.6.6.1: ABORTED after an abort, RESET after a reset. */
		vscsi_cmd_respond(vr, vr->abort_response, 0, NULL, 0, vr->xfer_len, 0);
		vscsi_tmf_put(tmf);
		return;
	}
	if (cmd->dir == SCSI_DIR_IN)
		moved = cmd->data_len;
	else if (cmd->dir == SCSI_DIR_OUT)
		moved = (uint32_t)MIN((uint64_t)vr->xfer_len, cmd->want_len);
	resid = vr->xfer_len - MIN(moved, vr->xfer_len);
	if (cmd->status == SCSI_GOOD && cmd->want_len > vr->xfer_len) {
		log_debug("vhost-user-scsi: LUN %d, opcode 0x%02x wants %llu bytes, the buffers "
			  "hold %u", vr->lun, cmd->cdb[0], (unsigned long long)cmd->want_len,
			  vr->xfer_len);
		response = VIRTIO_SCSI_S_OVERRUN;
	}
	vscsi_cmd_respond(vr, response, cmd->status, cmd->sense,
			  cmd->status == SCSI_CHECK_CONDITION ? cmd->sense_len : 0, resid,
			  cmd->dir == SCSI_DIR_IN ? cmd->data_len : 0);
}

static void vscsi_cmd(struct vhostscsi *s, struct vscsi_req *vr, struct vhost_req *req)
{
	struct scsi_cmd *cmd = &vr->cmd;
	uint8_t hdr[VIRTIO_SCSI_CMD_REQ_BYTES];
	uint64_t dout, din;
	int n;

	if (req->in_bytes < VIRTIO_SCSI_CMD_RESP_BYTES) {
		/* Nowhere to answer: the driver gets its buffers back. */
		log_warn("vhost-user-scsi: queue %u: a request with %llu writable bytes, less "
			 "than a response (head %u)", req->qidx, (unsigned long long)req->in_bytes,
			 req->head);
		vhost_req_complete(req, 0);
		return;
	}
	if (req->out_bytes < sizeof(hdr)) {
		log_debug("vhost-user-scsi: queue %u: a %llu-byte request header", req->qidx,
			  (unsigned long long)req->out_bytes);
		vscsi_cmd_respond(vr, VIRTIO_SCSI_S_FAILURE, 0, NULL, 0, 0, 0);
		return;
	}
	iov_to_buf(req->iov, (int)req->out_cnt, 0, hdr, sizeof(hdr));
	dout = req->out_bytes - sizeof(hdr);
	din = req->in_bytes - VIRTIO_SCSI_CMD_RESP_BYTES;
	if (hdr[0] != 1 || hdr[1] != 0) {
		vscsi_cmd_respond(vr, VIRTIO_SCSI_S_BAD_TARGET, 0, NULL, 0, (uint32_t)(dout + din), 0);
		return;
	}
	memset(cmd, 0, offsetof(struct scsi_cmd, status));
	cmd->nexus = s->nexus;
	cmd->lun = ds_get_be64(hdr) << 16;
	vr->lun = scsi_lun_decode(cmd->lun);
	cmd->tag = ds_get_le64(hdr + 8);
	/* virtio's task attributes are SAM's (SIMPLE, ORDERED, HEAD OF QUEUE, ACA). */
	cmd->task_attr = hdr[16] & 3;
	memcpy(cmd->cdb, hdr + 19, VIRTIO_SCSI_CDB_SIZE);
	cmd->cdb_len = vscsi_cdb_len(cmd->cdb);
	if (dout && din) {
		/* Bidirectional commands need VIRTIO_SCSI_F_INOUT, not offered. */
		vscsi_cmd_respond(vr, VIRTIO_SCSI_S_FAILURE, 0, NULL, 0, (uint32_t)(dout + din), 0);
		return;
	}
	if ((dout || din) && (dout != 0) != scsi_cdb_data_out(cmd->cdb)) {
		/* The CDB moves data the other way: its side has no room. */
		log_debug("vhost-user-scsi: LUN %d, opcode 0x%02x with data-%s buffers", vr->lun,
			  cmd->cdb[0], dout ? "out" : "in");
		vscsi_cmd_respond(vr, VIRTIO_SCSI_S_OVERRUN, 0, NULL, 0, (uint32_t)(dout + din), 0);
		return;
	}
	if (dout) {
		n = iov_slice(req->iov, (int)req->out_cnt, sizeof(hdr), dout, req->scratch,
			      VHOSTVQ_CHAIN_MAX);
		cmd->dir = SCSI_DIR_OUT;
	} else if (din) {
		n = iov_slice(req->iov + req->out_cnt, (int)req->in_cnt, VIRTIO_SCSI_CMD_RESP_BYTES,
			      din, req->scratch, VHOSTVQ_CHAIN_MAX);
		cmd->dir = SCSI_DIR_IN;
	} else {
		n = 0;
		cmd->dir = SCSI_DIR_NONE;
	}
	if (n < 0) {
		vscsi_cmd_respond(vr, VIRTIO_SCSI_S_FAILURE, 0, NULL, 0, (uint32_t)(dout + din), 0);
		return;
	}
	cmd->iov = n ? req->scratch : NULL;
	cmd->iovcnt = n;
	/* A chain's total fits in 32 bits (vring.h). */
	vr->xfer_len = (uint32_t)(dout + din);
	cmd->xfer_len = vr->xfer_len;
	cmd->done = vscsi_cmd_done;
	cmd->opaque = vr;
	vscsi_track(s, vr);
	scsi_cmd_submit(cmd);
}

/* ---- the control queue ---------------------------------------------------------- */

/* Whether the command @vr is one @tmf acts on. */
static bool vscsi_tmf_matches(const struct vscsi_tmf *tmf, const struct vscsi_req *vr)
{
	switch (tmf->subtype) {
	case VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET:
		return true;
	case VIRTIO_SCSI_T_TMF_ABORT_TASK:
	case VIRTIO_SCSI_T_TMF_QUERY_TASK:
		return vr->lun == tmf->lun && vr->cmd.tag == tmf->tag;
	default:
		return vr->lun == tmf->lun;
	}
}

/*
 * Marks the commands @tmf ends (each is answered @code when the core
 * finishes it) or, with @code 0, only counts them. Returns how many.
 */
static unsigned vscsi_tmf_scan(struct vhostscsi *s, struct vscsi_tmf *tmf, uint8_t code)
{
	unsigned found = 0;

	for (unsigned i = VIRTIO_SCSI_VQ_REQUEST; i < s->nqueues; i++) {
		struct vscsi_queue *q = &s->queues[i];

		pthread_mutex_lock(&q->lock);
		for (struct vscsi_req *vr = q->inflight; vr; vr = vr->next) {
			/* A command another TMF ends already is that one's. */
			if (vr->tmf || !vscsi_tmf_matches(tmf, vr))
				continue;
			found++;
			if (!code)
				continue;
			vr->tmf = tmf;
			vr->abort_response = code;
			atomic_fetch_add(&tmf->waiting, 1);
		}
		pthread_mutex_unlock(&q->lock);
	}
	return found;
}

/* The TMF's commands have ended: the reset itself, then the answer. On
 * the control queue's thread. */
static void vscsi_tmf_finish(struct vscsi_tmf *tmf)
{
	struct vhostscsi *s = tmf->s;
	struct vhost_req *req = tmf->req;

	if (tmf->response == VIRTIO_SCSI_S_FUNCTION_COMPLETE) {
		if (tmf->subtype == VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET)
			(void)scsi_lu_reset(s->nexus, scsi_lun_encode((unsigned)tmf->lun));
		else if (tmf->subtype == VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET)
			scsi_nexus_reset(s->nexus);
	}
	log_debug("vhost-user-scsi: task management function %u on LUN %d: response %u",
		  tmf->subtype, tmf->lun, tmf->response);
	iov_from_buf(req->iov + req->out_cnt, (int)req->in_cnt, 0, &tmf->response, 1);
	vhost_req_complete(req, 1);
}

static void vscsi_tmf_task(struct reactor_task *t)
{
	vscsi_tmf_finish(container_of(t, struct vscsi_tmf, task));
}

/* A TMF request (virtio_scsi_ctrl_tmf_req, virtio 1.2 §5.6.6.2). */
static void vscsi_tmf(struct vhostscsi *s, struct vscsi_req *vr, struct vhost_req *req,
		      const uint8_t *r)
{
	struct vscsi_tmf *tmf = &vr->own;
	uint64_t wire = ds_get_be64(r + 8) << 16;
	uint8_t code = 0;

	tmf->task.fn = vscsi_tmf_task;
	tmf->s = s;
	tmf->req = req;
	tmf->subtype = ds_get_le32(r + 4);
	tmf->lun = scsi_lun_decode(wire);
	tmf->tag = ds_get_le64(r + 16);
	tmf->response = VIRTIO_SCSI_S_FUNCTION_COMPLETE;
	atomic_init(&tmf->waiting, 1);
	if (r[8] != 1 || r[9] != 0) {
		tmf->response = VIRTIO_SCSI_S_BAD_TARGET;
	} else if (tmf->subtype == VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET) {
		code = VIRTIO_SCSI_S_RESET;
	} else if (tmf->lun < 0 || !scsi_target_lu(s->t, (unsigned)tmf->lun)) {
		tmf->response = VIRTIO_SCSI_S_INCORRECT_LUN;
	} else {
		switch (tmf->subtype) {
		case VIRTIO_SCSI_T_TMF_ABORT_TASK:
		case VIRTIO_SCSI_T_TMF_ABORT_TASK_SET:
		case VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET:
			/* SAM-5 §7.2: FUNCTION COMPLETE also when the task is
			 * gone already. */
			code = VIRTIO_SCSI_S_ABORTED;
			break;
		case VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET:
			code = VIRTIO_SCSI_S_RESET;
			break;
		case VIRTIO_SCSI_T_TMF_QUERY_TASK:
		case VIRTIO_SCSI_T_TMF_QUERY_TASK_SET:
			/* SAM-5 §7.9, §7.11: SUCCEEDED when such a task exists. */
			if (vscsi_tmf_scan(s, tmf, 0))
				tmf->response = VIRTIO_SCSI_S_FUNCTION_SUCCEEDED;
			break;
		default:
			/* CLEAR ACA (there is no ACA) and what we do not know. */
			tmf->response = VIRTIO_SCSI_S_FUNCTION_REJECTED;
			break;
		}
	}
	if (code)
		vscsi_tmf_scan(s, tmf, code);
	if (atomic_fetch_sub(&tmf->waiting, 1) == 1)
		vscsi_tmf_finish(tmf);
}

/* Asynchronous notification classes an LU can report. */
static uint32_t vscsi_an_supported(struct vhostscsi *s, int lun)
{
	struct scsi_lu *lu = lun >= 0 ? scsi_target_lu(s->t, (unsigned)lun) : NULL;

	return lu && scsi_lu_type(lu) == SCSI_LU_DVD ? VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE : 0;
}

/* AN query and subscribe (virtio_scsi_ctrl_an_req, virtio 1.2 §5.6.6.2.2). */
static void vscsi_an(struct vhostscsi *s, struct vhost_req *req, const uint8_t *r)
{
	uint32_t type = ds_get_le32(r), want = ds_get_le32(r + 12), actual = 0;
	int lun = scsi_lun_decode(ds_get_be64(r + 4) << 16);
	uint8_t resp[VIRTIO_SCSI_AN_RESP_BYTES];

	resp[4] = VIRTIO_SCSI_S_OK;
	if (r[4] != 1 || r[5] != 0) {
		resp[4] = VIRTIO_SCSI_S_BAD_TARGET;
	} else if (lun < 0 || !scsi_target_lu(s->t, (unsigned)lun)) {
		resp[4] = VIRTIO_SCSI_S_INCORRECT_LUN;
	} else {
		actual = vscsi_an_supported(s, lun);
		if (type == VIRTIO_SCSI_T_AN_SUBSCRIBE) {
			actual &= want;
			atomic_store(&s->an_mask[lun], (uint8_t)actual);
		}
	}
	ds_put_le32(resp, actual);
	iov_from_buf(req->iov + req->out_cnt, (int)req->in_cnt, 0, resp, sizeof(resp));
	vhost_req_complete(req, sizeof(resp));
}

static void vscsi_ctrl(struct vhostscsi *s, struct vscsi_req *vr, struct vhost_req *req)
{
	uint8_t r[VIRTIO_SCSI_TMF_REQ_BYTES];
	uint32_t type, off;
	uint8_t fail = VIRTIO_SCSI_S_FAILURE;

	memset(r, 0, sizeof(r));
	iov_to_buf(req->iov, (int)req->out_cnt, 0, r, sizeof(r));
	type = ds_get_le32(r);
	if (req->out_bytes >= 4 && type == VIRTIO_SCSI_T_TMF) {
		if (req->out_bytes >= VIRTIO_SCSI_TMF_REQ_BYTES && req->in_bytes >= 1) {
			vscsi_tmf(s, vr, req, r);
			return;
		}
	} else if (req->out_bytes >= 4 &&
		   (type == VIRTIO_SCSI_T_AN_QUERY || type == VIRTIO_SCSI_T_AN_SUBSCRIBE)) {
		if (req->out_bytes >= VIRTIO_SCSI_AN_REQ_BYTES &&
		    req->in_bytes >= VIRTIO_SCSI_AN_RESP_BYTES) {
			vscsi_an(s, req, r);
			return;
		}
	}
	/* Too short for its type, or a type we do not know: FAILURE in the
	 * response byte where there is room for it (an AN response has it
	 * after le32 event_actual). */
	log_warn("vhost-user-scsi: control request of type %u with %llu/%llu bytes", type,
		 (unsigned long long)req->out_bytes, (unsigned long long)req->in_bytes);
	if (req->in_bytes == 0) {
		vhost_req_complete(req, 0);
		return;
	}
	off = type != VIRTIO_SCSI_T_TMF && req->in_bytes >= VIRTIO_SCSI_AN_RESP_BYTES ? 4 : 0;
	iov_from_buf(req->iov + req->out_cnt, (int)req->in_cnt, off, &fail, 1);
	vhost_req_complete(req, off + 1);
}

/* ---- the event queue ------------------------------------------------------------- */

/* Fills held buffers with pending events. On the event queue's thread. */
static void vscsi_ev_drain(struct vhostscsi *s)
{
	for (;;) {
		struct vscsi_req *vr = s->held;
		uint8_t ev[VIRTIO_SCSI_EVENT_BYTES];
		struct vscsi_event e = { 0 };
		bool any;

		if (!vr)
			return;
		pthread_mutex_lock(&s->ev_lock);
		any = s->npending || s->missed;
		if (s->npending) {
			e = s->pending[0];
			memmove(s->pending, s->pending + 1, --s->npending * sizeof(s->pending[0]));
		}
		if (s->missed) {
			e.event |= VIRTIO_SCSI_T_EVENTS_MISSED;
			s->missed = false;
		}
		pthread_mutex_unlock(&s->ev_lock);
		if (!any)
			return;
		s->held = vr->next;
		if (!s->held)
			s->held_tail = NULL;
		memset(ev, 0, sizeof(ev));
		ds_put_le32(ev, e.event);
		if (e.event != VIRTIO_SCSI_T_EVENTS_MISSED) {
			/* REPORT LUNS' encoding (see the notes). */
			ev[4] = 1;
			ds_put_be16(ev + 6, (uint16_t)(scsi_lun_encode(e.lun) >> 48));
		}
		ds_put_le32(ev + 12, e.reason);
		log_debug("vhost-user-scsi: event 0x%x reason 0x%x LUN %u", e.event, e.reason, e.lun);
		iov_from_buf(vr->req->iov + vr->req->out_cnt, (int)vr->req->in_cnt, 0, ev, sizeof(ev));
		vhost_req_complete(vr->req, sizeof(ev));
	}
}

static void vscsi_ev_task(struct reactor_task *t)
{
	struct vhostscsi *s = container_of(t, struct vhostscsi, ev_task);

	atomic_store(&s->ev_posted, false);
	vscsi_ev_drain(s);
}

/* Queues an event (any thread) and wakes the event queue's thread. */
static void vscsi_ev_push(struct vhostscsi *s, uint32_t event, unsigned lun, uint32_t reason)
{
	pthread_mutex_lock(&s->ev_lock);
	if (s->npending == VSCSI_EVENTS_MAX)
		s->missed = true;
	else
		s->pending[s->npending++] = (struct vscsi_event){ event, reason, lun };
	if (s->ev_reactor && !atomic_exchange(&s->ev_posted, true))
		reactor_post(s->ev_reactor, &s->ev_task);
	pthread_mutex_unlock(&s->ev_lock);
}

/* The core's listener: under the target's lock, any thread. */
static void vscsi_core_event(void *opaque, unsigned lun, enum scsi_event ev)
{
	struct vhostscsi *s = opaque;
	uint64_t f = atomic_load(&s->features);

	switch (ev) {
	case SCSI_EVENT_LUN_ADDED:
		if (f & BIT(VIRTIO_SCSI_F_HOTPLUG))
			vscsi_ev_push(s, VIRTIO_SCSI_T_TRANSPORT_RESET, lun,
				      VIRTIO_SCSI_EVT_RESET_RESCAN);
		break;
	case SCSI_EVENT_LUN_REMOVED:
		/* virtio 1.2 §5.6.6.3 (eventq): the driver removes the LUN's device. */
		if (f & BIT(VIRTIO_SCSI_F_HOTPLUG))
			vscsi_ev_push(s, VIRTIO_SCSI_T_TRANSPORT_RESET, lun,
				      VIRTIO_SCSI_EVT_RESET_REMOVED);
		break;
	case SCSI_EVENT_CAPACITY_CHANGED:
		/* virtio 1.2 §5.6.6.3.3: the reason is the unit attention's ASC and ASCQ. */
		if (f & BIT(VIRTIO_SCSI_F_CHANGE))
			vscsi_ev_push(s, VIRTIO_SCSI_T_PARAM_CHANGE, lun, 0x2A | 0x09 << 8);
		break;
	case SCSI_EVENT_MEDIA_CHANGED:
		if (lun < SCSI_MAX_LUNS &&
		    (atomic_load(&s->an_mask[lun]) & VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE))
			vscsi_ev_push(s, VIRTIO_SCSI_T_ASYNC_NOTIFY, lun,
				      VIRTIO_SCSI_EVT_ASYNC_MEDIA_CHANGE);
		else if (f & BIT(VIRTIO_SCSI_F_HOTPLUG))
			vscsi_ev_push(s, VIRTIO_SCSI_T_TRANSPORT_RESET, lun,
				      VIRTIO_SCSI_EVT_RESET_RESCAN);
		break;
	}
}

/* An event buffer: held until an event fills it. */
static void vscsi_ev_buffer(struct vhostscsi *s, struct vscsi_req *vr, struct vhost_req *req)
{
	if (req->out_cnt || req->in_bytes < VIRTIO_SCSI_EVENT_BYTES) {
		log_warn("vhost-user-scsi: an event buffer of %llu/%llu bytes (head %u)",
			 (unsigned long long)req->out_bytes, (unsigned long long)req->in_bytes,
			 req->head);
		vhost_req_complete(req, 0);
		return;
	}
	vr->next = NULL;
	if (s->held_tail)
		s->held_tail->next = vr;
	else
		s->held = vr;
	s->held_tail = vr;
	pthread_mutex_lock(&s->ev_lock);
	s->ev_reactor = req->reactor;
	pthread_mutex_unlock(&s->ev_lock);
	vscsi_ev_drain(s);
}

/* ---- the device --------------------------------------------------------------- */

static void vhostscsi_handle(void *dev, struct vhost_req *req)
{
	struct vhostscsi *s = dev;
	struct vscsi_req *vr = req->priv;

	vr->s = s;
	vr->req = req;
	vr->lun = -1;
	switch (req->qidx) {
	case VIRTIO_SCSI_VQ_CONTROL:
		vscsi_ctrl(s, vr, req);
		break;
	case VIRTIO_SCSI_VQ_EVENT:
		vscsi_ev_buffer(s, vr, req);
		break;
	default:
		vscsi_cmd(s, vr, req);
		break;
	}
}

static void vhostscsi_queue_stop(void *dev, unsigned qidx)
{
	struct vhostscsi *s = dev;

	if (qidx != VIRTIO_SCSI_VQ_EVENT)
		return;     /* commands and TMFs end by themselves */
	pthread_mutex_lock(&s->ev_lock);
	s->ev_reactor = NULL;   /* events wait for the next start */
	pthread_mutex_unlock(&s->ev_lock);
	while (s->held) {
		struct vscsi_req *vr = s->held;
		uint8_t ev[VIRTIO_SCSI_EVENT_BYTES];

		s->held = vr->next;
		/* NO_EVENT: the driver posts the buffer again. */
		memset(ev, 0, sizeof(ev));
		iov_from_buf(vr->req->iov + vr->req->out_cnt, (int)vr->req->in_cnt, 0, ev, sizeof(ev));
		vhost_req_complete(vr->req, sizeof(ev));
	}
	s->held_tail = NULL;
}

static uint64_t vhostscsi_features(void *dev UNUSED)
{
	/* QEMU 7.2 decides CHANGE from its own property; HOTPLUG is the
	 * back-end's. Not INOUT (bidirectional commands) nor T10_PI. */
	return BIT(VIRTIO_SCSI_F_HOTPLUG) | BIT(VIRTIO_SCSI_F_CHANGE);
}

static void vhostscsi_set_features(void *dev, uint64_t features)
{
	struct vhostscsi *s = dev;

	atomic_store(&s->features, features);
}

static int vhostscsi_attach(void *dev, struct vhostsrv *srv UNUSED)
{
	struct vhostscsi *s = dev;

	scsi_target_set_event_fn(s->t, vscsi_core_event, s);
	s->listening = true;
	return 0;
}

static void vhostscsi_detach(void *dev)
{
	struct vhostscsi *s = dev;

	if (s->listening)
		scsi_target_set_event_fn(s->t, NULL, NULL);
	s->listening = false;
}

const struct vhost_dev_ops vhostscsi_ops = {
	.version = VHOST_DEV_OPS_VERSION,
	.name = "scsi",
	.features = vhostscsi_features,
	.set_features = vhostscsi_set_features,
	.req_priv_bytes = sizeof(struct vscsi_req),
	.handle = vhostscsi_handle,
	.attach = vhostscsi_attach,
	.detach = vhostscsi_detach,
	.queue_stop = vhostscsi_queue_stop,
};

/* FNV-1a over @s: the nexus's SAS address. */
static uint64_t vhostscsi_hash(const char *str)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *str; str++)
		h = (h ^ (uint8_t)*str) * 0x100000001b3ull;
	return h;
}

int vhostscsi_new(struct scsi_target *t, const struct vhostscsi_opts *o, struct vhostscsi **out)
{
	struct scsi_initiator_id id = { .protocol = SCSI_PROTO_SAS };
	const char *name = o->initiator ? o->initiator : "vhost-user-scsi";
	struct vhostscsi *s;
	int ret;

	*out = NULL;
	if (o->request_queues == 0 || o->request_queues + 2 > VHOSTSRV_MAX_QUEUES)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->t = t;
	s->nqueues = 2 + o->request_queues;
	pthread_mutex_init(&s->ev_lock, NULL);
	s->ev_task.fn = vscsi_ev_task;
	s->queues = calloc(s->nqueues, sizeof(*s->queues));
	if (!s->queues) {
		vhostscsi_free(s);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < s->nqueues; i++)
		pthread_mutex_init(&s->queues[i].lock, NULL);
	/* SAS (SPC-4 §7.6.4.7): a NAA IEEE Registered address (5h) made
	 * from the name, which the core puts in TransportIDs. */
	snprintf(id.name, sizeof(id.name), "%s", name);
	snprintf(id.port, sizeof(id.port), "naa.5%015llx",
		 (unsigned long long)(vhostscsi_hash(name) & 0x0fffffffffffffffull));
	if ((ret = scsi_nexus_new(t, &id, &s->nexus)) < 0) {
		vhostscsi_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

unsigned vhostscsi_queues(const struct vhostscsi *s)
{
	return s->nqueues;
}

void vhostscsi_free(struct vhostscsi *s)
{
	if (!s)
		return;
	vhostscsi_detach(s);
	scsi_nexus_free(s->nexus);
	if (s->queues)
		for (unsigned i = 0; i < s->nqueues; i++)
			pthread_mutex_destroy(&s->queues[i].lock);
	free(s->queues);
	pthread_mutex_destroy(&s->ev_lock);
	free(s);
}
