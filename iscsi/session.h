/* SPDX-License-Identifier: MIT */
/*
 * session.h: what the files of the iSCSI target share (not included from
 * outside iscsi/): the server object, a connection's state through login
 * and the full-feature phase, and its task slots. With MaxConnections=1
 * (docs/iscsi.md) a session is exactly one connection, so the session's
 * state (CmdSN window, I_T nexus, tasks) lives in the connection.
 */
#ifndef DISKSTACK_ISCSI_SESSION_H
#define DISKSTACK_ISCSI_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/reactor.h"
#include "iscsi/login.h"
#include "iscsi/pdu.h"
#include "iscsi/server.h"
#include "net/netsrv.h"
#include "scsi/scsi.h"

/* ---- limits ---------------------------------------------------------------- */

#define ISCSISRV_DEFAULT_WINDOW 128u
#define ISCSISRV_MAX_WINDOW 1024u
/* Task slots beyond the window: immediate commands, and commands that
 * arrive while the responses that opened the window are still being
 * handed to the kernel. */
#define ISCSISRV_SPARE_TASKS 32u
/* Largest Expected Data Transfer Length of one command (buffered whole). */
#define ISCSISRV_MAX_XFER (64u << 20)
/* Data buffers in flight per connection before parsing waits (one command
 * is always allowed). */
#define ISCSISRV_INFLIGHT_BYTES (256u << 20)
/* R2Ts outstanding per command (also bounded by MaxOutstandingR2T). */
#define ISCSISRV_MAX_R2T 4u
/* Data-Out segments from this size on are received straight into their
 * task's buffer (server.c), not through the receive buffer and a copy. */
#define ISCSISRV_DIRECT_MIN (32u << 10)
/* Receives of the full-feature phase ask for at most this much beyond the
 * rest of the PDU in hand, so that little of a large Data-Out's data
 * arrives before its header is seen (and then needs a copy). */
#define ISCSISRV_RX_CHUNK (64u << 10)
/* Receive buffer: two of the largest PDUs we accept. */
#define ISCSISRV_RBUF_BYTES (1u << 20)
/* Control PDUs (Reject, NOP-In, TMF/Text/Logout responses) queued before
 * parsing waits for the initiator to read them. */
#define ISCSISRV_MAX_CTL 64u
#define ISCSISRV_DEFAULT_NOP_S 30u
#define ISCSISRV_TPGT 1u
/* Data-In PDUs whose headers live in the task itself. */
#define ISCSISRV_INLINE_DATAIN 4u
#define ISCSISRV_HDR_BYTES (ISCSI_BHS_BYTES + ISCSI_DIGEST_BYTES)

/* ---- the server ----------------------------------------------------------- */

struct iscsisrv {
	struct iscsisrv_opts opts;     /* strings owned (strdup) */
	struct iscsi_chap chap;        /* points into opts */
	/* Targets are added and removed while workers log in (the control
	 * socket): @lock guards the array, the retired ones and the list of
	 * sessions. A removed target moves to @retired and is freed with the
	 * server, so a login or a session that got it earlier never holds a
	 * dangling pointer (its LUs are gone, the shell is small). */
	pthread_mutex_t lock;
	struct scsi_target **targets;
	unsigned ntargets;
	struct scsi_target **retired;
	unsigned nretired;
	struct iscsisrv_conn *sessions; /* Normal sessions, by their target */
	uint64_t next_conn_id;
	struct netsrv_proto proto;
	atomic_uint next_tsih;
	atomic_uint nsessions;
};

/* ---- tasks ----------------------------------------------------------------- */

enum iscsisrv_task_state {
	TASK_FREE = 0,
	TASK_DATA,              /* gathering data-out, or waiting for its CmdSN turn */
	TASK_SUBMITTED,         /* in the SCSI core */
	TASK_RESPONDING,        /* response queued: no longer abortable */
};

struct iscsisrv_conn;

struct iscsisrv_task;

/* A solicitation (R2T) and the burst that answers it. */
struct iscsisrv_r2t {
	struct iscsisrv_task *t;        /* the task it belongs to */
	bool active;
	uint32_t ttt, off, len, got, datasn;
	struct netsrv_tx tx;
	bool tx_busy;
	struct iovec iov[1];
	uint8_t hdr[ISCSISRV_HDR_BYTES];
};

struct iscsisrv_task {
	struct iscsisrv_conn *c;
	struct iscsisrv_task *next_free;
	enum iscsisrv_task_state state;
	uint32_t itt, cmdsn, edtl;
	uint64_t lun;
	bool immediate, windowed;       /* windowed: counted in c->win_used */
	bool ordered;                   /* its CmdSN turn came: may be submitted */
	bool read, write;
	bool aborted;                   /* by a TMF: no response */
	unsigned tx_pending;            /* queued PDUs not yet sent */
	uint8_t *buf;                   /* edtl bytes (reactor_buf) */
	size_t buf_cap;
	struct iovec biov;
	/* Data-out. */
	uint32_t received;              /* bytes accounted (copied or dropped) */
	uint32_t unsol_end;             /* unsolicited data ends here */
	uint32_t unsol_next;            /* next unsolicited offset */
	uint32_t unsol_datasn;
	bool unsol_open;                /* unsolicited Data-Out may still come */
	uint32_t r2t_next;              /* next offset to solicit */
	uint32_t r2tsn;
	unsigned nr2t;
	struct iscsisrv_r2t r2t[ISCSISRV_MAX_R2T];
	/* A data-phase failure: answered with CHECK CONDITION, sense key
	 * ABORTED COMMAND and this ASC/ASCQ, once all data is in. */
	bool err;
	uint8_t err_asc, err_ascq;
	/* The SCSI command and the response. */
	struct scsi_cmd cmd;
	struct netsrv_tx tx;
	struct iovec *iov;              /* inline_iov or a reactor buffer */
	uint8_t *hdrs;                  /* Data-In headers: inline_hdrs or in that buffer */
	void *big;                      /* the reactor buffer, NULL if inline */
	size_t big_bytes;
	unsigned ndatain;
	struct iovec inline_iov[3 * ISCSISRV_INLINE_DATAIN + 3];
	uint8_t inline_hdrs[ISCSISRV_INLINE_DATAIN * (ISCSISRV_HDR_BYTES + 8)];
	uint8_t rsp[ISCSISRV_HDR_BYTES];
	uint8_t sense[2 + SCSI_SENSE_MAX + 8];
	uint8_t trailer[8];
};

/* ---- a control PDU (malloc: off the data path) ---------------------------------- */

struct iscsisrv_ctl {
	struct netsrv_tx tx;
	struct iscsisrv_conn *c;
	struct iovec iov[3];
	uint8_t hdr[ISCSISRV_HDR_BYTES];
	uint8_t trailer[8];
	uint8_t data[];                 /* data segment, if any */
};

/* ---- a connection ------------------------------------------------------------ */

enum iscsisrv_phase {
	PHASE_LOGIN = 0,
	PHASE_FULL,
	PHASE_DONE,             /* logged out, failed login, or draining: nothing more is parsed */
};

struct iscsisrv_conn {
	struct netsrv_conn *nc;
	struct iscsisrv *srv;
	struct reactor *r;
	const char *name;
	enum iscsisrv_phase phase;

	/* Receive. */
	uint8_t *rbuf;                  /* ISCSISRV_RBUF_BYTES (reactor_buf) */
	size_t rhead, rtail;
	size_t rneed;                   /* bytes the PDU at rhead needs in all, 0 if unknown */
	bool rx_blocked;                /* parsing waits (see conn_can_parse) */
	struct reactor_task pump_task;
	bool pump_task_busy;
	struct iscsi_digests dg;
	uint64_t last_rx_ns;
	/* A Data-Out, or a SCSI Command's immediate data, being received
	 * straight into its task's buffer or the command's (cmd_buf). */
	bool direct_on;
	bool big_rx;                    /* the last PDU came in place: next header alone */
	struct iscsisrv_task *direct_t;         /* held (session_data_dest) */
	uint8_t *cmd_buf;                       /* session_cmd_dest's, until taken */
	uint32_t cmd_buf_bytes;
	uint8_t direct_hdr[ISCSI_BHS_BYTES];
	uint8_t *direct_dst;
	uint32_t direct_len, direct_got;

	/* Login. */
	struct iscsi_login *login;      /* owned, login phase only */

	/* Session (full-feature phase). */
	struct iscsi_params p;
	bool discovery;
	struct scsi_target *target;
	struct scsi_nexus *nexus;
	char initiator[ISCSI_NAME_MAX + 1];
	uint8_t isid[6];
	uint16_t tsih, cid;
	uint32_t exp_cmdsn, statsn;
	unsigned window, win_used;
	struct iscsisrv_task *tasks;
	unsigned ntasks, ntasks_used, nsubmitted, nwaiting;
	struct iscsisrv_task *free_tasks;
	uint64_t inflight_bytes;
	uint32_t next_ttt;
	unsigned nctl;                  /* control PDUs queued */

	/* Text exchange (SendTargets, C bit). */
	struct iscsi_text text_in, text_out;
	size_t text_off;
	uint32_t text_itt, text_ttt;

	/* Task management in progress (parsing waits for it). */
	bool tmf_active;
	uint8_t tmf_function, tmf_response;
	uint32_t tmf_itt;
	uint64_t tmf_lun;
	unsigned tmf_waiting;           /* aborted tasks still in the core */

	/* Logout in progress. */
	bool logout_active;
	uint8_t logout_response;
	uint32_t logout_itt;

	/* Keep-alive. */
	struct reactor_timer nop_timer;
	uint64_t nop_interval_ns;
	bool ping_out;
	uint32_t ping_ttt;
	uint64_t ping_sent_ns;

	bool draining;
	unsigned guard;                 /* a handler runs: the engine must not free us */
	bool in_session;                /* counted in srv->nsessions */
	/* Listed in srv->sessions (a Normal session), under srv->lock. */
	bool listed;
	uint64_t id;
	struct iscsisrv_conn *sess_next, *sess_prev;
	uint64_t ncommands;
};

/* session.c: the full-feature phase. */
/* Enters the full-feature phase after a successful login (c->login still
 * set: its results are taken). Returns 0 or -ENOMEM. */
int iscsisrv_session_begin(struct iscsisrv_conn *c);
/* Handles one PDU of the full-feature phase: true when it was consumed,
 * false when parsing must wait (the PDU stays in the buffer). */
bool iscsisrv_session_pdu(struct iscsisrv_conn *c, const struct iscsi_pdu *pdu);
/* The server stops: finish what runs, tell the initiator, close. */
void iscsisrv_session_drain(struct iscsisrv_conn *c);
/* Teardown: drop tasks that wait for data that will not come. */
void iscsisrv_session_closed(struct iscsisrv_conn *c);
/* Frees the session (nothing in flight). */
void iscsisrv_session_free(struct iscsisrv_conn *c);
/* For a Data-Out whose header @bhs (no AHS, no digests) has arrived but
 * not all its data: where in its task's buffer the data goes if the
 * session would take it as is, else NULL. The task is then held (*@tp)
 * until iscsisrv_session_data_release, so that a drain or a close cannot
 * put its buffer back while a receive writes into it; the PDU is then
 * handed to iscsisrv_session_pdu with its data in place. */
uint8_t *iscsisrv_session_data_dest(struct iscsisrv_conn *c, const uint8_t *bhs,
				    struct iscsisrv_task **tp);
void iscsisrv_session_data_release(struct iscsisrv_task *t);
/* For a SCSI Command whose header @bhs (no AHS, no digests) has arrived but
 * not all its immediate data: a buffer for the command's whole transfer
 * (c->cmd_buf) to receive that data into, if the session would take the
 * command at once as it is, else NULL. Handing the PDU to
 * iscsisrv_session_pdu with its data in cmd_buf gives the buffer to the
 * command's task; iscsisrv_session_cmd_dest_drop frees it otherwise. */
uint8_t *iscsisrv_session_cmd_dest(struct iscsisrv_conn *c, const uint8_t *bhs);
void iscsisrv_session_cmd_dest_drop(struct iscsisrv_conn *c);
/* Whether parsing may go on (free slots, budget, no TMF or logout waiting). */
bool iscsisrv_session_can_parse(const struct iscsisrv_conn *c);
/* Sends a Reject (RFC 7143 §11.17) with @reason, carrying the rejected
 * header @bhs; full feature phase only (it advances StatSN). */
void iscsisrv_reject(struct iscsisrv_conn *c, const uint8_t *bhs, uint8_t reason);

/* server.c: shared helpers. */
/* Allocates a control PDU with @dlen data bytes (header zeroed). */
struct iscsisrv_ctl *iscsisrv_ctl_new(struct iscsisrv_conn *c, uint32_t dlen);
/* Finishes its header (length, digest, padding, data digest) and queues it. */
void iscsisrv_ctl_send(struct iscsisrv_conn *c, struct iscsisrv_ctl *ctl);
/* Writes the header digest of @hdr when negotiated. */
void iscsisrv_hdr_digest(const struct iscsisrv_conn *c, uint8_t *hdr);
/* Writes the padding of @len data bytes at @data, and their data digest
 * when negotiated, into @tr; returns the trailer's length (0 to 7). */
uint32_t iscsisrv_data_trailer(const struct iscsisrv_conn *c, const void *data, uint32_t len,
			       uint8_t tr[8]);
/* Points @tx at @iovcnt iovecs at @iov (borrowed until @sent) and queues
 * it for the end of this loop pass (netsrv_tx_schedule). */
void iscsisrv_tx_send(struct iscsisrv_conn *c, struct netsrv_tx *tx, struct iovec *iov,
		      unsigned iovcnt, void (*sent)(struct netsrv_conn *nc, struct netsrv_tx *tx));
/* Bytes of a header with its digest. */
static inline unsigned iscsisrv_hdr_bytes(const struct iscsisrv_conn *c)
{
	return ISCSI_BHS_BYTES + (c->dg.header ? ISCSI_DIGEST_BYTES : 0);
}
/* Ends a guarded stretch (c->guard was incremented): frees a closing
 * connection nothing refers to any more (@c may be gone on return). */
void iscsisrv_conn_unguard(struct iscsisrv_conn *c);
/* Resumes parsing on a later pass (after a slot or a control PDU freed). */
void iscsisrv_conn_resume(struct iscsisrv_conn *c);
/* Looks up a target by name; NULL if none. */
struct scsi_target *iscsisrv_find_target(struct iscsisrv *s, const char *name);

#endif
