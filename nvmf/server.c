/* SPDX-License-Identifier: MIT */
/*
 * server.c: the NVMe/TCP target (server.h) -- connections, queues,
 * controllers, the Fabrics commands and the discovery controller. PDU
 * layouts are in pdu.c; NVMe commands run in the command core
 * (nvme_emul/).
 *
 * Notes on the design
 * -------------------
 * - One TCP connection is one queue (TCP transport spec §2). A connection
 *   receives PDUs in stages into fixed places: the 8-byte common header,
 *   then the rest of the header region (PSH, header digest, padding up to
 *   PDO) into the connection's header buffer, then data straight into the
 *   command's buffer, then the data digest. One receive is in flight at a
 *   time; the next PDU is asked for as soon as one is taken, so commands
 *   pipeline while earlier ones run.
 * - Command slots: NVMF_SLOTS per connection (MAXCMD and CAP.MQES + 1),
 *   allocated with the connection. A slot lives from its CapsuleCmd until
 *   its response is on the wire; its data buffer comes from the reactor's
 *   buffer cache. A write whose data is not in the capsule gets one R2T
 *   for the whole transfer (TTAG = slot index); H2CData must then arrive
 *   in order. Reads answer with one C2HData PDU (LAST_PDU, and SUCCESS
 *   without a response when the host disabled SQ flow control), then a
 *   CapsuleResp.
 * - Pipes (nvme_emul/nvme_pipe.h, storage/disk.h DISK_IO_PIPE): a Read
 *   or an R2T Write of NVMF_PIPE_MIN bytes or more on a plain socket
 *   without data digest, whose namespace's disk takes pipes (a buffered
 *   file), borrows a pipe from the connection's pool (at most NVMF_PIPES,
 *   made on first use, NVMF_PIPE_BYTES each). Read: the disk splices the
 *   file's pages into it and the C2HData PDU's payload is spliced from it
 *   into the socket. Write: each H2CData payload is spliced from the
 *   socket into it, and the disk splices the whole into the file once
 *   the command runs (its checks first, as for data in memory). So the
 *   bytes never pass through this process (no copy into a buffer and out
 *   again; docs/bench-nvme.md). A Write whose payload the engine cannot
 *   splice (bytes already in its receive ring, or a pipe full of small
 *   socket buffers: -EAGAIN) moves what the pipe holds into a buffer and
 *   goes on in memory. A pipe goes back to the pool only when it is empty
 *   (FIONREAD), else it is closed: a failed or torn-down command leaves
 *   no stale bytes for the next. Without a free pipe, or when the kernel
 *   refuses the size, the command takes the buffer path.
 * - Controllers (struct nvmf_ctrl) are server-wide, in a list under
 *   srv->lock, found by (subsystem, CNTLID) when an I/O queue connects.
 *   The admin connection and every I/O connection hold a reference; the
 *   last one frees the core's controller. When the admin queue goes (its
 *   connection closes or its keep-alive expires) the controller is marked
 *   dead and the I/O connections notice on their next tick or PDU and
 *   close: the association is over (NVMe base spec §3.9).
 * - Every connection with a controller runs a tick timer
 *   (NVMF_TICK_NS): the admin queue checks the Keep Alive Timeout (every
 *   command of the controller counts as traffic, in the core), the I/O
 *   queues whether their controller died.
 * - Errors: a malformed PDU header gets a C2HTermReq carrying that header
 *   and the connection closes (TCP transport spec §3.6.2.2); an H2C data
 *   digest error closes it at once; a bad command gets an NVMe status and
 *   the queue goes on. Nothing a host sends touches another connection
 *   except through its own controller.
 * - Threads: every callback of a connection runs on its worker; the
 *   controller list and CNTLID allocation are under srv->lock; a
 *   controller's CC/CSTS belong to its admin connection.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "net/netsrv.h"
#include "nvme_emul/nvme.h"
#include "nvme_emul/nvme_pipe.h"
#include "nvmf/pdu.h"
#include "nvmf/server.h"

#define NVMF_SLOTS 128u                 /* MAXCMD; CAP.MQES = NVMF_SLOTS - 1 */
#define NVMF_ICSZ 8192u                 /* in-capsule data on every queue */
#define NVMF_IOCCSZ ((NVMF_ICSZ + 64u) / 16u)
#define NVMF_MAXH2C (128u * 1024u)      /* MAXH2CDATA */
#define NVMF_MAX_XFER (1024u * 1024u)   /* the largest transfer a command may describe */
#define NVMF_TICK_NS (500ull * 1000000ull)
#define NVMF_DEFAULT_IO_QUEUES 8u
#define NVMF_PIPE_MIN (64u * 1024u)     /* smallest transfer that goes through a pipe */
#define NVMF_PIPES 8u                   /* pipes per connection */
/* Pipe size: room for NVMF_MAX_XFER bytes at any page offset (one pipe
 * buffer per page, plus one), a power of two as the kernel rounds it;
 * NVMF_MAX_XFER where the kernel refuses that. */
#define NVMF_PIPE_BYTES (2u * NVMF_MAX_XFER)
#define NVMF_MAX_IO_QUEUES 63u

/* Controller registers over Property Get/Set (NVMe base spec §3.1.4). */
#define REG_CAP  0x00
#define REG_VS   0x08
#define REG_CC   0x14
#define REG_CSTS 0x1C
/* CAP: MQES NVMF_SLOTS - 1, CQR, TO 15 (7.5 s), CSS bit 37 (NVM). */
#define NVMF_CAP ((uint64_t)(NVMF_SLOTS - 1) | 1ull << 16 | 15ull << 24 | 1ull << 37)
#define NVMF_VS 0x00020000u

/* Fabrics command types (NVMe over Fabrics spec §3). */
#define FCTYPE_PROP_SET 0x00
#define FCTYPE_CONNECT  0x01
#define FCTYPE_PROP_GET 0x04
#define FCTYPE_DISCONNECT 0x08
#define OPC_FABRICS 0x7F

/* Statuses the core has no name for. */
#define ST_SGL_DESC_INVALID   0x011u    /* SGL Descriptor Type Invalid */
#define ST_TRANSIENT_TRANSPORT 0x022u   /* Transient Transport Error */
#define ST_CONNECT_INVALID_PARAM 0x182u /* Connect Invalid Parameters */
#define ST_CONNECT_INVALID_HOST 0x184u  /* Connect Invalid Host */

struct nvmf_ctrl {
	struct nvmf_ctrl *next;
	struct nvmfsrv *srv;
	struct nvmeemu_subsys *sub;     /* NULL: a discovery controller */
	struct nvmeemu_ctrl *ec;        /* the core's controller (NULL for discovery) */
	uint16_t cntlid;
	uint8_t hostid[16];
	char hostnqn[NVMF_NQN_MAX + 1];
	struct nvmf_ctrl *all_next;     /* srv->all: every controller not freed (srv->lock) */
	atomic_uint refs;
	atomic_bool dead;
	uint64_t qmask;                 /* I/O queue IDs connected (srv->lock) */
	/* Admin connection only. */
	uint32_t cc, csts, kato_ms;
	uint64_t last_cmd_ns;           /* discovery: keep-alive traffic */
};

struct nvmfsrv {
	struct nvmfsrv_opts o;
	char *portal_addr;
	/* Subsystems are added and removed while hosts connect (the control
	 * socket): the array is read under @lock by Connect and the discovery
	 * log page. A removed one is retired, not freed, until nvmfsrv_free:
	 * a Connect that found it just before, and its controllers, may still
	 * point at it. */
	struct nvmeemu_subsys **subs;
	unsigned nsubs;
	struct nvmeemu_subsys **retired;
	unsigned nretired;
	uint64_t genctr;                /* the discovery log's GENCTR (@lock) */
	pthread_mutex_t lock;           /* ctrls, all, subs, retired, next_cntlid, qmask */
	struct nvmf_ctrl *ctrls;
	struct nvmf_ctrl *all;
	uint16_t next_cntlid;
	struct netsrv_proto proto;
};

enum slot_state { SLOT_FREE = 0, SLOT_RX, SLOT_R2T, SLOT_RUN, SLOT_HELD, SLOT_TX };

struct nvmf_conn;

struct nvmf_pipe {
	int rfd, wfd;
	size_t room;                    /* its size (F_SETPIPE_SZ) */
	struct nvmf_pipe *next_free;
};

struct nvmf_slot {
	struct nvmeemu_cmd cmd;
	struct nvmf_conn *c;
	struct nvmf_slot *next_free;
	enum slot_state state;
	uint16_t idx;
	uint8_t *buf;
	size_t buf_bytes;               /* allocated */
	uint32_t xfer;                  /* what the SGL describes */
	uint32_t got;                   /* host data received */
	uint32_t put_hw;                /* controller data high-water mark */
	uint32_t icd;                   /* in-capsule data bytes */
	uint8_t dir;                    /* data direction: 1 host to controller, 2 the reverse */
	bool ddgst_bad;
	bool aer;
	struct nvmf_pipe *pipe;         /* the data goes through it; NULL: @buf */
	uint32_t piped;                 /* bytes the core left in @pipe */
	/* Output. */
	struct netsrv_tx tx, r2t_tx, resp_tx;
	struct iovec iov[5], r2t_iov;
	uint8_t c2h[NVMF_HDR_MAX];
	uint8_t resp[NVMF_RESP_HLEN + NVMF_DIGEST_BYTES];
	uint8_t r2t[NVMF_DATA_HLEN + NVMF_DIGEST_BYTES];
	uint8_t ddgst[NVMF_DIGEST_BYTES];
};

enum rx_stage { RX_CH, RX_HDR, RX_DATA, RX_DDGST, RX_TERM };

struct nvmf_conn {
	struct netsrv_conn *nc;
	struct nvmfsrv *srv;
	struct reactor *r;
	const char *name;
	struct nvmf_pdu_cfg cfg;
	uint8_t hpda;
	bool connected, sqflow_off, draining, dead;
	uint16_t qid, sqsize, sqhd;
	struct nvmf_ctrl *ctrl;         /* a reference, once connected */
	/* Receive. */
	enum rx_stage stage;
	uint8_t hdr[NVMF_HDR_MAX];
	uint8_t dgst[NVMF_DIGEST_BYTES];
	uint8_t scratch[NVMF_TERM_MAX_DATA];
	struct nvmf_pdu_layout lay;
	uint8_t *rx_dst;
	size_t rx_len, rx_got;
	struct nvmf_slot *rx_slot;
	uint8_t *data_dst;              /* the data the data digest covers */
	/* Slots. */
	struct nvmf_slot *slots;
	struct nvmf_slot *free_slots;
	unsigned ninflight;             /* commands in the core or held (AER) */
	unsigned nheld;                 /* of them: AERs */
	unsigned guard;
	/* A control PDU (ICResp, TermReq): one at a time. */
	struct netsrv_tx ctl_tx;
	struct iovec ctl_iov;
	uint8_t ctl[NVMF_TERM_HLEN + NVMF_TERM_MAX_DATA];
	bool ctl_busy;
	struct reactor_timer tick;
	/* Pipes for large transfers (see the notes). */
	struct nvmf_pipe pipes[NVMF_PIPES];
	struct nvmf_pipe *free_pipes;
	unsigned npipes;                /* made so far */
	bool pipes_refused;             /* the kernel refused one: none more */
};

static void conn_rx_next(struct nvmf_conn *c);
static void slot_send(struct nvmf_slot *sl);
static void slot_exec(struct nvmf_slot *sl);

/* ---- controllers ------------------------------------------------------------------ */

static void ctrl_put(struct nvmf_ctrl *k)
{
	struct nvmfsrv *s;

	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	s = k->srv;
	pthread_mutex_lock(&s->lock);
	for (struct nvmf_ctrl **p = &s->all; *p; p = &(*p)->all_next) {
		if (*p == k) {
			*p = k->all_next;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	nvmeemu_ctrl_free(k->ec);
	free(k);
}

/* Takes @k out of the server's list: no queue can join it any more. */
static void ctrl_kill(struct nvmf_ctrl *k)
{
	struct nvmfsrv *s = k->srv;

	if (atomic_exchange(&k->dead, true))
		return;
	pthread_mutex_lock(&s->lock);
	for (struct nvmf_ctrl **p = &s->ctrls; *p; p = &(*p)->next) {
		if (*p == k) {
			*p = k->next;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- output --------------------------------------------------------------------------- */

static void ctl_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	struct nvmf_conn *c = container_of(tx, struct nvmf_conn, ctl_tx);

	(void)nc;
	c->ctl_busy = false;
}

static void ctl_send(struct nvmf_conn *c, uint32_t len)
{
	c->ctl_iov = (struct iovec){ c->ctl, len };
	c->ctl_tx.iov = &c->ctl_iov;
	c->ctl_tx.iovcnt = 1;
	c->ctl_tx.sent = ctl_sent;
	c->ctl_busy = true;
	netsrv_tx_queue(c->nc, &c->ctl_tx);
	netsrv_tx_kick(c->nc);
}

/* A fatal transport error: a C2HTermReq echoing the header, then close. */
static void conn_term(struct nvmf_conn *c, const struct nvmf_pdu_err *err, const uint8_t *bad,
		      size_t badlen)
{
	log_warn("%s: %s (FES %u, FEI %u): terminating the connection", c->name, err->why,
		 err->fes, err->fei);
	c->dead = true;
	if (!c->ctl_busy && !netsrv_conn_closing(c->nc)) {
		ctl_send(c, nvmf_term_build(c->ctl, err, bad, badlen));
		netsrv_conn_close(c->nc, true, NULL);
	} else {
		netsrv_conn_close(c->nc, false, NULL);
	}
}

static void conn_fail(struct nvmf_conn *c, const char *why)
{
	log_warn("%s: %s: closing", c->name, why);
	c->dead = true;
	netsrv_conn_close(c->nc, false, NULL);
}

static void conn_unguard(struct nvmf_conn *c)
{
	if (--c->guard == 0 && netsrv_conn_closing(c->nc))
		netsrv_conn_maybe_free(c->nc);   /* may free @c */
}

/* A pipe back to the pool, closed unless it is empty (its bytes are
 * stale); a closed one is made again on a later use. */
static void pipe_put(struct nvmf_conn *c, struct nvmf_pipe *p)
{
	int held = -1;

	if (ioctl(p->rfd, FIONREAD, &held) < 0 || held != 0) {
		close(p->rfd);
		close(p->wfd);
		p->rfd = p->wfd = -1;
	}
	p->next_free = c->free_pipes;
	c->free_pipes = p;
}

/* Whether pipe_get may find or make a pipe. */
static bool pipe_available(const struct nvmf_conn *c)
{
	return !c->pipes_refused && c->srv->o.pipe_bytes != NVMFSRV_NO_PIPES &&
	       (c->free_pipes || c->npipes < NVMF_PIPES);
}

/* A pipe from the pool, made on first use; NULL when none is free, or
 * the kernel refuses one (a pipe of NVMF_PIPE_BYTES needs
 * CAP_SYS_RESOURCE above /proc/sys/fs/pipe-max-size: without it, Reads
 * keep the buffer path). */
static struct nvmf_pipe *pipe_get(struct nvmf_conn *c)
{
	struct nvmf_pipe *p;
	int fds[2], size;

	if (!pipe_available(c))
		return NULL;
	p = c->free_pipes;
	if (p) {
		c->free_pipes = p->next_free;
	} else {
		p = &c->pipes[c->npipes++];
		p->rfd = p->wfd = -1;
	}
	if (p->rfd >= 0)
		return p;
	if (pipe2(fds, O_CLOEXEC) == 0) {
		/* Room for any transfer, or else (without CAP_SYS_RESOURCE,
		 * pipe-max-size is 1 MiB by default) for one that starts on
		 * a page boundary (the core checks which fits). */
		unsigned want = c->srv->o.pipe_bytes;

		size = fcntl(fds[1], F_SETPIPE_SZ, (int)want);
		if (size < 0 && errno == EPERM && want > NVMF_MAX_XFER)
			size = fcntl(fds[1], F_SETPIPE_SZ, (int)NVMF_MAX_XFER);
		if (size >= (int)NVMF_PIPE_MIN) {
			p->rfd = fds[0];
			p->wfd = fds[1];
			p->room = (size_t)size;
			return p;
		}
		log_debug("%s: no pipe of %u bytes (%s): transfers go through memory", c->name,
			  want, size < 0 ? strerror(errno) : "smaller");
		close(fds[0]);
		close(fds[1]);
		c->pipes_refused = true;
	}
	p->next_free = c->free_pipes;
	c->free_pipes = p;
	return NULL;
}

static void slot_release(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;

	if (sl->pipe)
		pipe_put(c, sl->pipe);
	sl->pipe = NULL;
	if (sl->buf)
		reactor_buf_put(c->r, sl->buf, sl->buf_bytes);
	sl->buf = NULL;
	sl->buf_bytes = 0;
	sl->state = SLOT_FREE;
	sl->next_free = c->free_slots;
	c->free_slots = sl;
}

static void slot_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	struct nvmf_slot *sl = container_of(tx, struct nvmf_slot, tx);

	(void)nc;
	slot_release(sl);
}

static void slot_resp_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	(void)nc;
	slot_release(container_of(tx, struct nvmf_slot, resp_tx));
}

/* An item that is not a slot's last. */
static void tx_noop_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	(void)nc;
	(void)tx;
}

static void put_hdgst(const struct nvmf_conn *c, uint8_t *hdr, uint32_t hlen)
{
	if (c->cfg.hdgst)
		ds_put_le32(hdr + hlen, nvmf_digest(hdr, hlen));
}

/* Sends the command's data (if any) and completion. */
static void slot_send(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	uint32_t hd = c->cfg.hdgst ? NVMF_DIGEST_BYTES : 0;
	uint16_t status = nvmeemu_cqe_status(sl->cmd.cqe);
	uint32_t dlen = sl->piped ? sl->piped : sl->put_hw;
	unsigned n = 0, base = 0;
	bool success_flag = false;

	if (sl->state == SLOT_HELD && sl->aer)
		c->nheld--;
	sl->state = SLOT_TX;
	/* SQ head: the host does not use it for flow control (it keeps at
	 * most SQSIZE commands outstanding), but it must be consistent. */
	ds_put_le16(sl->cmd.cqe + 8, c->sqflow_off ? 0xffff : c->sqhd);
	if (dlen && status == 0) {
		uint32_t align = (uint32_t)(c->hpda + 1) * 4, pdo, dd;
		uint8_t flags = NVMF_FLAG_LAST;

		pdo = (NVMF_DATA_HLEN + hd + align - 1) / align * align;
		dd = c->cfg.ddgst ? NVMF_DIGEST_BYTES : 0;
		success_flag = c->sqflow_off;
		if (hd)
			flags |= NVMF_FLAG_HDGST;
		if (dd)
			flags |= NVMF_FLAG_DDGST;
		if (success_flag)
			flags |= NVMF_FLAG_SUCCESS;
		memset(sl->c2h, 0, pdo);
		nvmf_put_ch(sl->c2h, NVMF_PDU_C2H_DATA, flags, NVMF_DATA_HLEN, (uint8_t)pdo,
			    pdo + dlen + dd);
		memcpy(sl->c2h + 8, sl->cmd.sqe + 2, 2);        /* CCCID */
		ds_put_le32(sl->c2h + 12, 0);                   /* DATAO */
		ds_put_le32(sl->c2h + 16, dlen);                /* DATAL */
		put_hdgst(c, sl->c2h, NVMF_DATA_HLEN);
		sl->iov[n++] = (struct iovec){ sl->c2h, pdo };
		if (sl->piped && status == 0) {
			/* The payload is in the pipe (no data digest: see
			 * slot_capsule); the response follows it. */
			sl->tx.iov = sl->iov;
			sl->tx.iovcnt = n;
			sl->tx.sent = success_flag ? slot_sent : tx_noop_sent;
			netsrv_tx_queue_pipe(c->nc, &sl->tx, sl->pipe->rfd, dlen);
			base = n;
		} else {
			sl->iov[n++] = (struct iovec){ sl->buf, sl->put_hw };
		}
		if (dd) {
			ds_put_le32(sl->ddgst, nvmf_digest(sl->buf, sl->put_hw));
			sl->iov[n++] = (struct iovec){ sl->ddgst, dd };
		}
	}
	if (!success_flag) {
		nvmf_put_ch(sl->resp, NVMF_PDU_CAPSULE_RESP, hd ? NVMF_FLAG_HDGST : 0,
			    NVMF_RESP_HLEN, 0, NVMF_RESP_HLEN + hd);
		memcpy(sl->resp + 8, sl->cmd.cqe, NVMEEMU_CQE_BYTES);
		put_hdgst(c, sl->resp, NVMF_RESP_HLEN);
		sl->iov[n++] = (struct iovec){ sl->resp, NVMF_RESP_HLEN + hd };
	}
	if (n > base) {
		/* After a piped payload, the response is an item of its own. */
		struct netsrv_tx *tx = base ? &sl->resp_tx : &sl->tx;

		tx->iov = sl->iov + base;
		tx->iovcnt = n - base;
		tx->sent = base ? slot_resp_sent : slot_sent;
		netsrv_tx_queue(c->nc, tx);
	}
	netsrv_tx_schedule(c->nc);
}

/* Completes a command the transport answers itself. */
static void slot_finish(struct nvmf_slot *sl, uint16_t status, uint32_t dw0, uint32_t dw1)
{
	uint8_t *q = sl->cmd.cqe;

	sl->piped = 0;
	memset(q, 0, NVMEEMU_CQE_BYTES);
	ds_put_le32(q, dw0);
	ds_put_le32(q + 4, dw1);
	ds_put_le16(q + 10, sl->c->qid);
	memcpy(q + 12, sl->cmd.sqe + 2, 2);
	ds_put_le16(q + 14, (uint16_t)(status << 1));
	sl->cmd.status = status;
	slot_send(sl);
}

/* The core finished a command (on this reactor). */
static void slot_done(struct nvmeemu_cmd *cmd)
{
	struct nvmf_slot *sl = container_of(cmd, struct nvmf_slot, cmd);
	struct nvmf_conn *c = sl->c;

	c->ninflight--;
	if (netsrv_conn_closing(c->nc)) {
		if (sl->aer)
			c->nheld--;
		slot_release(sl);
		netsrv_conn_maybe_free(c->nc);   /* may free @c */
		return;
	}
	sl->piped = sl->pipe && sl->dir == 2 ? (uint32_t)nvmeemu_cmd_piped(cmd) : 0;
	slot_send(sl);
	if (c->draining && c->ninflight == c->nheld)
		netsrv_conn_close(c->nc, true, "server stopping");
}

/* ---- the data transfer for the core --------------------------------------------- */

static int data_get(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len)
{
	struct nvmf_slot *sl = container_of(cmd, struct nvmf_slot, cmd);

	if (off > sl->got || len > sl->got - off)
		return -EMSGSIZE;
	memcpy(buf, sl->buf + off, len);
	return 0;
}

/* A Read offered a pipe has no buffer until the core falls back on
 * memory (the namespace's disk no longer takes pipes). */
static bool slot_buf_late(struct nvmf_slot *sl)
{
	if (sl->buf || sl->dir != 2 || !sl->xfer)
		return sl->buf != NULL;
	sl->buf = reactor_buf_get(sl->c->r, sl->xfer, false);
	sl->buf_bytes = sl->buf ? sl->xfer : 0;
	return sl->buf != NULL;
}

static int data_put(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len)
{
	struct nvmf_slot *sl = container_of(cmd, struct nvmf_slot, cmd);

	if (!sl->buf && sl->pipe)
		slot_buf_late(sl);
	if (off > sl->xfer || len > sl->xfer - off || !sl->buf)
		return -EMSGSIZE;
	memcpy(sl->buf + off, buf, len);
	if (off + len > sl->put_hw)
		sl->put_hw = (uint32_t)(off + len);
	return 0;
}

/* Read and Write move data straight between the disk and the command's
 * buffer (no bounce buffer in the core). */
static int data_map(struct nvmeemu_cmd *cmd, uint64_t off, size_t len, struct iovec *iov, int max)
{
	struct nvmf_slot *sl = container_of(cmd, struct nvmf_slot, cmd);
	uint32_t have = sl->dir == 2 ? sl->xfer : sl->got;

	/* A Write whose data is in its pipe, on a disk that no longer takes
	 * pipes: the core reads the pipe into its bounce buffer. */
	if (!sl->buf && sl->pipe && sl->dir == 1)
		return -EOPNOTSUPP;
	if (!sl->buf && sl->pipe)
		slot_buf_late(sl);
	if (max < 1)
		return -E2BIG;
	if (off > have || len > have - off || !sl->buf)
		return -EMSGSIZE;
	iov[0] = (struct iovec){ sl->buf + off, len };
	if (sl->dir == 2 && off + len > sl->put_hw)
		sl->put_hw = (uint32_t)(off + len);
	return 1;
}

static const struct nvmeemu_data_ops nvmf_data_ops = {
	.get = data_get,
	.put = data_put,
	.map = data_map,
};

/* ---- Fabrics commands --------------------------------------------------------------- */

/* Connect Invalid Parameters: DW0 = IATTR (bit 16: the field is in the
 * data) | IPO (its byte offset) (NVMe over Fabrics spec §3.3). */
static void connect_invalid(struct nvmf_slot *sl, bool in_data, uint16_t off, const char *why)
{
	log_warn("%s: Connect refused: %s", sl->c->name, why);
	slot_finish(sl, ST_CONNECT_INVALID_PARAM | NVMEEMU_DNR,
		    (in_data ? 1u << 16 : 0) | off, 0);
}

static struct nvmeemu_subsys *find_subsys_locked(struct nvmeemu_subsys **v, unsigned n,
						  const char *nqn)
{
	for (unsigned i = n; i-- > 0;)
		if (strcmp(nvmeemu_subsys_nqn(v[i]), nqn) == 0)
			return v[i];
	return NULL;
}

static struct nvmeemu_subsys *srv_find_subsys(struct nvmfsrv *s, const char *nqn)
{
	struct nvmeemu_subsys *ss;

	pthread_mutex_lock(&s->lock);
	ss = find_subsys_locked(s->subs, s->nsubs, nqn);
	pthread_mutex_unlock(&s->lock);
	return ss;
}

static bool subsys_live_locked(struct nvmfsrv *s, const struct nvmeemu_subsys *ss)
{
	for (unsigned i = 0; i < s->nsubs; i++)
		if (s->subs[i] == ss)
			return true;
	return false;
}

/* A new controller with a free CNTLID (1..FFEFh) in @s's list. */
static int ctrl_create(struct nvmf_conn *c, struct nvmeemu_subsys *sub,
		       const struct nvmf_connect *cn, struct nvmf_ctrl **out)
{
	struct nvmfsrv *s = c->srv;
	struct nvmf_ctrl *k = calloc(1, sizeof(*k));
	int ret = -ENOSPC;

	if (!k)
		return -ENOMEM;
	k->srv = s;
	k->sub = sub;
	memcpy(k->hostid, cn->hostid, 16);
	snprintf(k->hostnqn, sizeof(k->hostnqn), "%s", cn->hostnqn);
	atomic_init(&k->refs, 1);
	atomic_init(&k->dead, false);
	k->kato_ms = cn->kato_ms;
	k->last_cmd_ns = reactor_now_ns();
	pthread_mutex_lock(&s->lock);
	/* The subsystem may have been removed since the Connect found it. */
	if (sub && !subsys_live_locked(s, sub))
		ret = -ENODEV;
	for (unsigned tries = 0; ret != -ENODEV && tries < 0xffefu; tries++) {
		uint16_t id = s->next_cntlid;
		bool taken = false;

		s->next_cntlid = id >= 0xffef ? 1 : (uint16_t)(id + 1);
		for (struct nvmf_ctrl *o = s->ctrls; o; o = o->next)
			taken |= o->sub == sub && o->cntlid == id;
		if (taken)
			continue;
		k->cntlid = id;
		ret = 0;
		if (sub) {
			struct nvmeemu_ctrl_opts eo = {
				.cntlid = id,
				.host_id_len = 16,
				.max_io_queues = (uint16_t)s->o.max_io_queues,
			};

			memcpy(eo.host_id, cn->hostid, 16);
			ret = nvmeemu_ctrl_new(sub, &eo, &k->ec);
			if (ret == -EEXIST)
				continue;
		}
		break;
	}
	if (ret == 0) {
		k->next = s->ctrls;
		s->ctrls = k;
		k->all_next = s->all;
		s->all = k;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret < 0) {
		free(k);
		return ret;
	}
	if (k->ec)
		nvmeemu_ctrl_set_kato_ms(k->ec, cn->kato_ms);
	*out = k;
	return 0;
}

static void conn_tick(struct reactor_timer *t);

static void fabrics_connect(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	struct nvmfsrv *s = c->srv;
	struct nvmf_connect cn;
	struct nvmeemu_subsys *sub = NULL;
	struct nvmf_ctrl *k = NULL;
	uint16_t bad;
	bool in_data, disc;
	int ret;

	if (c->connected) {
		slot_finish(sl, NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (sl->got < NVMF_CONNECT_DATA_BYTES) {
		slot_finish(sl, NVMEEMU_SGL_LENGTH_INVALID | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (nvmf_connect_parse(sl->cmd.sqe, sl->buf, &cn, &bad, &in_data) < 0) {
		connect_invalid(sl, in_data, bad, "malformed NQN or record format");
		return;
	}
	if (cn.sqsize == 0 || cn.sqsize >= NVMF_SLOTS) {
		connect_invalid(sl, false, 44, "SQSIZE out of range");
		return;
	}
	disc = strcmp(cn.subnqn, NVMF_DISCOVERY_NQN) == 0;
	if (!disc && !(sub = srv_find_subsys(s, cn.subnqn))) {
		log_warn("%s: Connect to unknown subsystem '%s' from '%s'", c->name, cn.subnqn,
			 cn.hostnqn);
		connect_invalid(sl, true, 256, "unknown subsystem NQN");
		return;
	}
	if (cn.qid == 0) {
		if (cn.cntlid != 0xffff) {
			connect_invalid(sl, true, 16, "static controller ID on the admin queue");
			return;
		}
		ret = ctrl_create(c, sub, &cn, &k);
		if (ret == -ENODEV) {
			connect_invalid(sl, true, 256, "the subsystem was removed");
			return;
		}
		if (ret < 0) {
			log_warn("%s: cannot create a controller: %s", c->name, strerror(-ret));
			slot_finish(sl, ret == -ENOSPC ? 0x181u : NVMEEMU_INTERNAL_ERROR, 0, 0);
			return;
		}
		log_info("%s: host '%s' connected to '%s' as controller %u%s", c->name, cn.hostnqn,
			 cn.subnqn, k->cntlid,
			 c->cfg.hdgst && c->cfg.ddgst ? " (header+data digests)"
			 : c->cfg.hdgst ? " (header digest)" : c->cfg.ddgst ? " (data digest)" : "");
	} else {
		if (disc) {
			connect_invalid(sl, false, 42, "I/O queue on the discovery subsystem");
			return;
		}
		pthread_mutex_lock(&s->lock);
		for (k = s->ctrls; k; k = k->next)
			if (k->sub == sub && k->cntlid == cn.cntlid)
				break;
		if (k && (strcmp(k->hostnqn, cn.hostnqn) != 0 ||
			  memcmp(k->hostid, cn.hostid, 16) != 0)) {
			pthread_mutex_unlock(&s->lock);
			slot_finish(sl, ST_CONNECT_INVALID_HOST | NVMEEMU_DNR, 0, 0);
			return;
		}
		if (k) {
			uint16_t nsq, ncq;

			nvmeemu_ctrl_granted_queues(k->ec, &nsq, &ncq);
			if (cn.qid > nsq || cn.qid > NVMF_MAX_IO_QUEUES ||
			    (k->qmask & (1ull << cn.qid))) {
				pthread_mutex_unlock(&s->lock);
				connect_invalid(sl, false, 42, "queue ID not granted or taken");
				return;
			}
			k->qmask |= 1ull << cn.qid;
			atomic_fetch_add(&k->refs, 1);
			nvmeemu_ctrl_set_io_queues(k->ec, (unsigned)__builtin_popcountll(k->qmask));
		}
		pthread_mutex_unlock(&s->lock);
		if (!k) {
			connect_invalid(sl, true, 16, "no such controller");
			return;
		}
	}
	c->ctrl = k;
	c->connected = true;
	c->qid = cn.qid;
	c->sqsize = cn.sqsize;
	c->sqflow_off = cn.cattr & 0x04;
	netsrv_conn_established(c->nc);
	c->tick.fn = conn_tick;
	reactor_timer_start(c->r, &c->tick, NVMF_TICK_NS);
	slot_finish(sl, NVMEEMU_SUCCESS, k->cntlid, 0);
}

static void fabrics_prop(struct nvmf_slot *sl, uint8_t fctype)
{
	struct nvmf_conn *c = sl->c;
	struct nvmf_ctrl *k = c->ctrl;
	const uint8_t *q = sl->cmd.sqe;
	bool wide = (q[40] & 7) == 1;
	uint32_t ofst = ds_get_le32(q + 44);
	uint64_t v = 0;

	if (!c->connected || c->qid != 0) {
		slot_finish(sl, NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (fctype == FCTYPE_PROP_GET) {
		switch (ofst) {
		case REG_CAP:
			v = NVMF_CAP;
			break;
		case REG_VS:
			v = NVMF_VS;
			break;
		case REG_CC:
			v = k->cc;
			break;
		case REG_CSTS:
			v = k->csts;
			break;
		default:
			slot_finish(sl, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0, 0);
			return;
		}
		if (!wide)
			v &= 0xffffffffu;
		slot_finish(sl, NVMEEMU_SUCCESS, (uint32_t)v, (uint32_t)(v >> 32));
		return;
	}
	v = ds_get_le64(q + 48);
	if (ofst != REG_CC || wide) {
		slot_finish(sl, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0, 0);
		return;
	}
	if ((k->cc & 1) && !(v & 1)) {
		/* EN 1 -> 0: a controller reset (NVMe base spec §3.7.2). */
		if (k->ec) {
			nvmeemu_ctrl_reset(k->ec);
			nvmeemu_ctrl_set_kato_ms(k->ec, k->kato_ms);
		}
		k->csts = 0;
	} else if (v & 1) {
		k->csts |= 1;                   /* RDY */
	}
	if ((v >> 14) & 3)
		k->csts = (k->csts & ~0xcu) | 0x8u;   /* SHST: shutdown complete */
	else
		k->csts &= ~0xcu;
	k->cc = (uint32_t)v;
	slot_finish(sl, NVMEEMU_SUCCESS, 0, 0);
}

static void fabrics_cmd(struct nvmf_slot *sl)
{
	uint8_t fctype = sl->cmd.sqe[4];

	switch (fctype) {
	case FCTYPE_CONNECT:
		fabrics_connect(sl);
		return;
	case FCTYPE_PROP_GET:
	case FCTYPE_PROP_SET:
		fabrics_prop(sl, fctype);
		return;
	case FCTYPE_DISCONNECT:
		/* The host closes the connection after the answer. */
		slot_finish(sl, sl->c->connected ? NVMEEMU_SUCCESS
				: NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR, 0, 0);
		return;
	default:
		/* Authentication is not offered (AUTHREQ is never set). */
		slot_finish(sl, NVMEEMU_INVALID_OPCODE | NVMEEMU_DNR, 0, 0);
		return;
	}
}

/* ---- the discovery controller ------------------------------------------------------- */

static void pad_copy(uint8_t *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	memset(dst, ' ', len);
	memcpy(dst, src, n < len ? n : len);
}

static void disc_identify(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	uint8_t *p;

	if ((ds_get_le32(sl->cmd.sqe + 40) & 0xff) != 0x01 || sl->xfer < 4096) {
		slot_finish(sl, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0, 0);
		return;
	}
	p = sl->buf;
	memset(p, 0, 4096);
	pad_copy(p + 4, 20, "diskstack");
	pad_copy(p + 24, 40, "diskstack NVMe/TCP discovery");
	pad_copy(p + 64, 8, PACKAGE_VERSION);
	ds_put_le16(p + 78, c->ctrl->cntlid);
	ds_put_le32(p + 80, NVMF_VS);
	p[111] = 2;                             /* CNTRLTYPE: discovery */
	p[259] = 3;                             /* AERL */
	p[261] = 0x04;                          /* LPA: extended data */
	ds_put_le16(p + 320, 10);               /* KAS: 1 s */
	ds_put_le16(p + 514, NVMF_SLOTS);       /* MAXCMD */
	ds_put_le32(p + 536, 0x100001);         /* SGLS */
	memcpy(p + 768, NVMF_DISCOVERY_NQN, sizeof(NVMF_DISCOVERY_NQN) - 1);
	ds_put_le32(p + 1792, NVMF_IOCCSZ);
	ds_put_le32(p + 1796, 1);
	sl->put_hw = 4096;
	slot_finish(sl, NVMEEMU_SUCCESS, 0, 0);
}

/* One discovery log entry (NVMe over Fabrics spec §5.3, TCP: TCP
 * transport spec §4.1). */
static void disc_entry(struct nvmf_conn *c, uint8_t *e, const char *nqn, uint8_t subtype)
{
	struct nvmfsrv *s = c->srv;
	struct sockaddr_storage ss;
	unsigned sl = sizeof(ss);
	char addr[INET6_ADDRSTRLEN] = "127.0.0.1", port[16];
	uint16_t pnum = NVMF_DEFAULT_PORT;
	bool v6 = false;

	if (netsrv_conn_local_addr(c->nc, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
			pnum = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
			pnum = ntohs(a->sin6_port);
			v6 = true;
		}
	}
	if (s->portal_addr) {
		snprintf(addr, sizeof(addr), "%s", s->portal_addr);
		v6 = strchr(addr, ':') != NULL;
		if (s->o.portal_port)
			pnum = s->o.portal_port;
	}
	snprintf(port, sizeof(port), "%u", pnum);
	memset(e, 0, 1024);
	e[0] = 3;                               /* TRTYPE: TCP */
	e[1] = v6 ? 2 : 1;                      /* ADRFAM */
	e[2] = subtype;
	e[3] = 0x04;                            /* TREQ: not specified, SQ flow control disable supported */
	ds_put_le16(e + 4, 1);                  /* PORTID */
	ds_put_le16(e + 6, 0xffff);             /* CNTLID: dynamic */
	ds_put_le16(e + 8, 32);                 /* ASQSZ */
	pad_copy(e + 32, 32, port);
	pad_copy(e + 256, 256, nqn);
	memset(e + 256 + strlen(nqn), 0, 256 - strlen(nqn));
	pad_copy(e + 512, 256, addr);
	e[768] = 0;                             /* TSAS SECTYPE: none */
}

static void disc_get_log(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	const uint8_t *q = sl->cmd.sqe;
	uint32_t cdw10 = ds_get_le32(q + 40), cdw11 = ds_get_le32(q + 44);
	uint64_t lpo = ds_get_le32(q + 48) | (uint64_t)ds_get_le32(q + 52) << 32;
	uint64_t len = ((uint64_t)((cdw10 >> 16) | (cdw11 & 0xffff) << 16) + 1) * 4;
	struct nvmfsrv *s = c->srv;
	unsigned nrec;
	size_t page_bytes;
	uint8_t *page;

	if ((cdw10 & 0xff) != 0x70) {
		slot_finish(sl, NVMEEMU_INVALID_LOG_PAGE | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (len > sl->xfer || (lpo & 3)) {
		slot_finish(sl, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0, 0);
		return;
	}
	pthread_mutex_lock(&s->lock);
	nrec = s->nsubs + 1;
	page_bytes = 1024 * (size_t)(nrec + 1);
	page = calloc(1, page_bytes);
	if (!page) {
		pthread_mutex_unlock(&s->lock);
		slot_finish(sl, NVMEEMU_INTERNAL_ERROR, 0, 0);
		return;
	}
	/* GENCTR changes whenever the records do (a subsystem added or
	 * removed), so a host reading the page in pieces can tell. */
	ds_put_le64(page, s->genctr);
	ds_put_le64(page + 8, nrec);
	for (unsigned i = 0; i < s->nsubs; i++)
		disc_entry(c, page + 1024 * (i + 1), nvmeemu_subsys_nqn(s->subs[i]), 2);
	pthread_mutex_unlock(&s->lock);
	disc_entry(c, page + 1024 * nrec, NVMF_DISCOVERY_NQN, 3);
	memset(sl->buf, 0, len);
	if (lpo < page_bytes)
		memcpy(sl->buf, page + lpo, MIN(len, page_bytes - lpo));
	free(page);
	sl->put_hw = (uint32_t)len;
	slot_finish(sl, NVMEEMU_SUCCESS, 0, 0);
}

static void disc_admin(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	uint8_t opc = sl->cmd.sqe[0];
	uint8_t fid = sl->cmd.sqe[40];

	c->ctrl->last_cmd_ns = reactor_now_ns();
	if (c->qid != 0) {
		slot_finish(sl, NVMEEMU_INVALID_OPCODE | NVMEEMU_DNR, 0, 0);
		return;
	}
	switch (opc) {
	case 0x06:
		disc_identify(sl);
		return;
	case 0x02:
		disc_get_log(sl);
		return;
	case 0x09:                              /* Set Features */
		if (fid == 0x0F)
			c->ctrl->kato_ms = ds_get_le32(sl->cmd.sqe + 44);
		slot_finish(sl, fid == 0x0B || fid == 0x0F ? NVMEEMU_SUCCESS
			    : NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0, 0);
		return;
	case 0x0A:                              /* Get Features */
		slot_finish(sl, NVMEEMU_SUCCESS, fid == 0x0F ? c->ctrl->kato_ms : 0, 0);
		return;
	case 0x0C:                              /* AER: held; the log never changes */
		if (c->nheld >= 4) {
			slot_finish(sl, NVMEEMU_AER_LIMIT | NVMEEMU_DNR, 0, 0);
			return;
		}
		sl->state = SLOT_HELD;
		sl->aer = true;
		c->nheld++;
		return;
	case 0x18:                              /* Keep Alive */
		slot_finish(sl, NVMEEMU_SUCCESS, 0, 0);
		return;
	default:
		slot_finish(sl, NVMEEMU_INVALID_OPCODE | NVMEEMU_DNR, 0, 0);
		return;
	}
}

/* ---- commands -------------------------------------------------------------------------- */

static void slot_exec(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	struct nvmeemu_cmd *cmd = &sl->cmd;

	sl->state = SLOT_RUN;
	if (cmd->sqe[0] == OPC_FABRICS) {
		fabrics_cmd(sl);
		return;
	}
	if (!c->connected) {
		slot_finish(sl, NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (!c->ctrl->ec) {
		disc_admin(sl);
		return;
	}
	if (atomic_load(&c->ctrl->dead)) {
		slot_finish(sl, NVMEEMU_ABORT_SQ_DELETION, 0, 0);
		return;
	}
	cmd->ctrl = c->ctrl->ec;
	cmd->qid = c->qid;
	cmd->data = &nvmf_data_ops;
	cmd->done = slot_done;
	sl->aer = c->qid == 0 && cmd->sqe[0] == 0x0C;
	if (sl->aer) {
		sl->state = SLOT_HELD;
		c->nheld++;
	}
	c->ninflight++;
	sl->piped = 0;
	if (sl->pipe && sl->dir == 2)
		nvmeemu_cmd_submit_pipe(cmd, sl->pipe->wfd, sl->xfer, sl->pipe->room);
	else if (sl->pipe)
		nvmeemu_cmd_submit_pipe(cmd, sl->pipe->rfd, sl->got, 0);
	else
		nvmeemu_cmd_submit(cmd);
}

/* Whether @sl's command may take a pipe for its data (see the notes). */
static bool slot_pipe_ok(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;

	/* No pipe to be had: no namespace look-up either. */
	if (!pipe_available(c))
		return false;
	if (c->cfg.ddgst || c->qid == 0 || !c->connected || !c->ctrl->ec ||
	    atomic_load(&c->ctrl->dead) || !netsrv_conn_can_rxv(c->nc))
		return false;
	sl->cmd.ctrl = c->ctrl->ec;
	sl->cmd.qid = c->qid;
	return nvmeemu_cmd_pipe_ok(&sl->cmd);
}

/* The capsule (with its in-capsule data) is in: check the data pointer,
 * then run the command or ask for its data. */
static void slot_capsule(struct nvmf_slot *sl)
{
	struct nvmf_conn *c = sl->c;
	const uint8_t *q = sl->cmd.sqe;
	uint8_t dir = q[0] == OPC_FABRICS ? (q[4] & 3) : (q[0] & 3);
	struct nvmf_sgl sgl;
	size_t want;

	if (sl->ddgst_bad) {
		slot_finish(sl, ST_TRANSIENT_TRANSPORT, 0, 0);
		return;
	}
	if (((q[1] >> 6) & 3) != 1 || nvmf_sgl_parse(q, &sgl) < 0) {
		slot_finish(sl, ST_SGL_DESC_INVALID | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (dir == 3) {
		slot_finish(sl, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0, 0);
		return;
	}
	sl->dir = dir;
	if (sgl.in_capsule) {
		if (sgl.addr != 0 || sgl.len != sl->icd) {
			slot_finish(sl, NVMEEMU_SGL_LENGTH_INVALID | NVMEEMU_DNR, 0, 0);
			return;
		}
		sl->xfer = sl->got = sl->icd;
		slot_exec(sl);
		return;
	}
	if (sl->icd) {
		/* In-capsule data with a descriptor that says otherwise. */
		slot_finish(sl, NVMEEMU_SGL_LENGTH_INVALID | NVMEEMU_DNR, 0, 0);
		return;
	}
	if (sgl.len > NVMF_MAX_XFER) {
		slot_finish(sl, NVMEEMU_SGL_LENGTH_INVALID | NVMEEMU_DNR, 0, 0);
		return;
	}
	sl->xfer = sgl.len;
	sl->got = 0;
	if (dir != 0 && sgl.len >= NVMF_PIPE_MIN && slot_pipe_ok(sl))
		sl->pipe = pipe_get(c);
	if (sgl.len && !sl->pipe) {
		want = sgl.len;
		/* Zeroed unless the core fills it whole (a Read) or the host
		 * does (a write): a short log page must not send stale bytes. */
		sl->buf = reactor_buf_get(c->r, want, dir != 1 && !(c->qid && q[0] == 0x02));
		if (!sl->buf) {
			slot_finish(sl, NVMEEMU_INTERNAL_ERROR, 0, 0);
			return;
		}
		sl->buf_bytes = want;
	}
	if (dir == 1 && sgl.len) {
		uint32_t hd = c->cfg.hdgst ? NVMF_DIGEST_BYTES : 0;

		/* One R2T for the whole transfer; TTAG names the slot. */
		sl->state = SLOT_R2T;
		memset(sl->r2t, 0, sizeof(sl->r2t));
		nvmf_put_ch(sl->r2t, NVMF_PDU_R2T, hd ? NVMF_FLAG_HDGST : 0, NVMF_DATA_HLEN, 0,
			    NVMF_DATA_HLEN + hd);
		memcpy(sl->r2t + 8, q + 2, 2);
		ds_put_le16(sl->r2t + 10, sl->idx);
		ds_put_le32(sl->r2t + 12, 0);
		ds_put_le32(sl->r2t + 16, sgl.len);
		put_hdgst(c, sl->r2t, NVMF_DATA_HLEN);
		sl->r2t_iov = (struct iovec){ sl->r2t, NVMF_DATA_HLEN + hd };
		sl->r2t_tx.iov = &sl->r2t_iov;
		sl->r2t_tx.iovcnt = 1;
		sl->r2t_tx.sent = tx_noop_sent;
		netsrv_tx_queue(c->nc, &sl->r2t_tx);
		netsrv_tx_schedule(c->nc);
		return;
	}
	if (dir == 1 || dir == 0)
		sl->got = sgl.len;              /* nothing more will come */
	slot_exec(sl);
}

/* ---- receive ----------------------------------------------------------------------------- */

static void conn_rx_cb(struct netsrv_conn *nc, ssize_t res);

static void conn_rx_want(struct nvmf_conn *c, void *dst, size_t len, enum rx_stage stage)
{
	c->stage = stage;
	c->rx_dst = dst;
	c->rx_len = len;
	c->rx_got = 0;
	netsrv_rx(c->nc, dst, len, true, conn_rx_cb);
}

static void conn_rx_pipe_cb(struct netsrv_conn *nc, ssize_t res);
static void conn_stage_done(struct nvmf_conn *c);

/* The rest of an H2CData payload, from the socket into the slot's pipe. */
static void conn_rx_pipe_want(struct nvmf_conn *c, size_t len)
{
	c->stage = RX_DATA;
	c->rx_dst = NULL;
	c->rx_len = len;
	c->rx_got = 0;
	netsrv_rx_pipe(c->nc, c->rx_slot->pipe->wfd, len, conn_rx_pipe_cb);
}

/* The engine cannot splice the payload (netsrv_rx_pipe's -EAGAIN): what
 * the pipe holds of the command's data into a buffer, and the rest of
 * this PDU's payload into memory. */
static void conn_rx_pipe_fallback(struct nvmf_conn *c)
{
	struct nvmf_slot *sl = c->rx_slot;
	size_t held = (size_t)sl->got + c->rx_got, done = 0;

	log_debug("%s: write data through memory after %zu bytes in the pipe", c->name, held);
	sl->buf = reactor_buf_get(c->r, sl->xfer, false);
	if (!sl->buf) {
		conn_fail(c, "out of memory for a write's data");
		return;
	}
	sl->buf_bytes = sl->xfer;
	while (done < held) {
		ssize_t n = read(sl->pipe->rfd, sl->buf + done, held - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			conn_fail(c, "a write's data went missing from its pipe");
			return;
		}
		done += (size_t)n;
	}
	pipe_put(c, sl->pipe);
	sl->pipe = NULL;
	c->data_dst = sl->buf + ds_get_le32(c->hdr + 12);
	c->rx_dst = c->data_dst;
	netsrv_rx(c->nc, c->rx_dst + c->rx_got, c->rx_len - c->rx_got, true, conn_rx_cb);
}

static void conn_rx_pipe_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct nvmf_conn *c = netsrv_conn_priv(nc);

	if (c->draining || c->dead) {
		/* Cancelled (or finished as the cancel came): as conn_rx_cb. */
		if (res <= 0 && res != -ECANCELED && res != -EAGAIN)
			conn_rx_cb(nc, res);
		return;
	}
	if (res == -EAGAIN) {
		conn_rx_pipe_fallback(c);
		return;
	}
	if (res <= 0) {
		conn_rx_cb(nc, res);
		return;
	}
	c->rx_got += (size_t)res;
	if (c->rx_got < c->rx_len) {
		netsrv_rx_pipe(nc, c->rx_slot->pipe->wfd, c->rx_len - c->rx_got, conn_rx_pipe_cb);
		return;
	}
	c->guard++;
	conn_stage_done(c);
	conn_unguard(c);
}

static void conn_rx_next(struct nvmf_conn *c)
{
	if (c->dead || c->draining || netsrv_conn_closing(c->nc))
		return;
	conn_rx_want(c, c->hdr, NVMF_CH_BYTES, RX_CH);
}

static void conn_icreq(struct nvmf_conn *c)
{
	struct nvmf_icreq ic;

	nvmf_icreq_parse(c->hdr, &ic);
	c->hpda = ic.hpda;
	c->cfg.hdgst = ic.hdgst;
	c->cfg.ddgst = ic.ddgst;
	c->cfg.ic_done = true;
	nvmf_icresp_build(c->ctl, ic.hdgst, ic.ddgst, NVMF_MAXH2C);
	ctl_send(c, NVMF_IC_BYTES);
	conn_rx_next(c);
}

/* A CapsuleCmd header is in. */
static void conn_capsule_hdr(struct nvmf_conn *c)
{
	struct nvmf_slot *sl = c->free_slots;

	if (!sl) {
		struct nvmf_pdu_err e = { NVMF_FES_LIMIT, 0, "more commands than the queue holds" };

		conn_term(c, &e, c->hdr, c->lay.hlen);
		return;
	}
	c->free_slots = sl->next_free;
	memset(&sl->cmd, 0, sizeof(sl->cmd));
	memcpy(sl->cmd.sqe, c->hdr + NVMF_CH_BYTES, NVMEEMU_SQE_BYTES);
	sl->state = SLOT_RX;
	sl->xfer = sl->got = sl->put_hw = 0;
	sl->icd = c->lay.data_bytes;
	sl->ddgst_bad = false;
	sl->aer = false;
	if (c->connected && !c->sqflow_off)
		c->sqhd = (uint16_t)((c->sqhd + 1) % (c->sqsize + 1u));
	else if (!c->connected)
		c->sqhd = 1;
	if (sl->icd) {
		sl->buf = reactor_buf_get(c->r, sl->icd, false);
		if (!sl->buf) {
			slot_release(sl);
			conn_fail(c, "out of memory for in-capsule data");
			return;
		}
		sl->buf_bytes = sl->icd;
		c->rx_slot = sl;
		c->data_dst = sl->buf;
		conn_rx_want(c, sl->buf, sl->icd, RX_DATA);
		return;
	}
	conn_rx_next(c);
	slot_capsule(sl);
}

/* An H2CData header is in: find its R2T. */
static void conn_h2c_hdr(struct nvmf_conn *c)
{
	uint16_t cccid = ds_get_le16(c->hdr + 8), ttag = ds_get_le16(c->hdr + 10);
	uint32_t datao = ds_get_le32(c->hdr + 12), datal = c->lay.data_bytes;
	struct nvmf_slot *sl = ttag < NVMF_SLOTS ? &c->slots[ttag] : NULL;
	struct nvmf_pdu_err e = { NVMF_FES_INVALID_HEADER, 10, "H2CData for no R2T" };

	if (!sl || sl->state != SLOT_R2T) {
		conn_term(c, &e, c->hdr, c->lay.hlen);
		return;
	}
	if (ds_get_le16(sl->cmd.sqe + 2) != cccid) {
		e.fei = 8;
		e.why = "H2CData CCCID does not match its R2T";
		conn_term(c, &e, c->hdr, c->lay.hlen);
		return;
	}
	if (datao != sl->got || datal > sl->xfer - sl->got) {
		e = (struct nvmf_pdu_err){ NVMF_FES_RANGE, 0, "H2CData outside its R2T" };
		conn_term(c, &e, c->hdr, c->lay.hlen);
		return;
	}
	c->rx_slot = sl;
	if (sl->pipe) {
		c->data_dst = NULL;
		conn_rx_pipe_want(c, datal);
		return;
	}
	c->data_dst = sl->buf + datao;
	conn_rx_want(c, c->data_dst, datal, RX_DATA);
}

static void conn_hdr_done(struct nvmf_conn *c)
{
	struct nvmf_pdu_err e;

	if (nvmf_pdu_check_hdr(c->hdr, &c->lay, &c->cfg, &e) < 0) {
		conn_term(c, &e, c->hdr, c->lay.hlen);
		return;
	}
	switch (c->lay.type) {
	case NVMF_PDU_ICREQ:
		conn_icreq(c);
		return;
	case NVMF_PDU_CAPSULE_CMD:
		conn_capsule_hdr(c);
		return;
	case NVMF_PDU_H2C_DATA:
		conn_h2c_hdr(c);
		return;
	case NVMF_PDU_H2C_TERM:
		log_warn("%s: host terminated the connection (FES %u)", c->name,
			 ds_get_le16(c->hdr + 8));
		c->dead = true;
		if (c->lay.data_bytes)
			conn_rx_want(c, c->scratch, c->lay.data_bytes, RX_TERM);
		else
			netsrv_conn_close(c->nc, true, NULL);
		return;
	}
}

static void conn_data_done(struct nvmf_conn *c)
{
	struct nvmf_slot *sl = c->rx_slot;
	uint32_t len = c->lay.data_bytes;

	if (c->lay.ddgst_bytes) {
		uint32_t want = nvmf_digest(c->data_dst, len);

		if (ds_get_le32(c->dgst) != want) {
			if (c->lay.type == NVMF_PDU_H2C_DATA) {
				/* Fatal for the queue (as nvmet treats it): the
				 * command's data cannot be trusted. */
				conn_fail(c, "H2CData data digest mismatch");
				return;
			}
			sl->ddgst_bad = true;   /* the capsule fails alone */
		}
	}
	c->rx_slot = NULL;
	conn_rx_next(c);
	if (c->lay.type == NVMF_PDU_CAPSULE_CMD) {
		slot_capsule(sl);
		return;
	}
	sl->got += len;
	if (sl->got == sl->xfer)
		slot_exec(sl);
}

static void conn_stage_done(struct nvmf_conn *c)
{
	struct nvmf_pdu_err e;

	switch (c->stage) {
	case RX_CH:
		if (nvmf_pdu_check_ch(c->hdr, &c->cfg, &c->lay, &e) < 0) {
			conn_term(c, &e, c->hdr, NVMF_CH_BYTES);
			return;
		}
		conn_rx_want(c, c->hdr + NVMF_CH_BYTES, c->lay.hdr_bytes - NVMF_CH_BYTES, RX_HDR);
		return;
	case RX_HDR:
		conn_hdr_done(c);
		return;
	case RX_DATA:
		if (c->lay.ddgst_bytes) {
			conn_rx_want(c, c->dgst, NVMF_DIGEST_BYTES, RX_DDGST);
			return;
		}
		conn_data_done(c);
		return;
	case RX_DDGST:
		conn_data_done(c);
		return;
	case RX_TERM:
		netsrv_conn_close(c->nc, true, NULL);
		return;
	}
}

static void conn_rx_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct nvmf_conn *c = netsrv_conn_priv(nc);

	if (res <= 0) {
		if (res == -ECANCELED && (c->draining || c->dead))
			return;
		if (res == 0 && c->stage == RX_CH && c->rx_got == 0)
			netsrv_conn_close(nc, true, "host closed the connection");
		else if (res == 0)
			netsrv_conn_close(nc, false, "host left in the middle of a PDU");
		else {
			log_warn("%s: receive failed: %s", c->name, strerror((int)-res));
			netsrv_conn_close(nc, false, NULL);
		}
		return;
	}
	c->rx_got += (size_t)res;
	if (c->rx_got < c->rx_len) {
		netsrv_rx(nc, c->rx_dst + c->rx_got, c->rx_len - c->rx_got, true, conn_rx_cb);
		return;
	}
	c->guard++;
	conn_stage_done(c);
	conn_unguard(c);
}

/* ---- timers -------------------------------------------------------------------------------- */

static void conn_tick(struct reactor_timer *t)
{
	struct nvmf_conn *c = container_of(t, struct nvmf_conn, tick);
	struct nvmf_ctrl *k = c->ctrl;
	uint64_t now = reactor_now_ns();

	if (netsrv_conn_closing(c->nc) || !k)
		return;
	if (atomic_load(&k->dead)) {
		/* The admin queue went (I/O queues), or the subsystem was
		 * removed (every queue). */
		c->dead = true;
		netsrv_conn_close(c->nc, false, "controller gone");
		return;
	}
	if (c->qid != 0) {
	} else if (k->ec ? nvmeemu_ctrl_kato_expired(k->ec, now)
		   : (k->kato_ms && now - k->last_cmd_ns > k->kato_ms * 1000000ull)) {
		log_warn("%s: keep-alive timeout (%u ms) of controller %u: ending the association",
			 c->name, k->ec ? nvmeemu_ctrl_kato_ms(k->ec) : k->kato_ms, k->cntlid);
		c->dead = true;
		ctrl_kill(k);
		netsrv_conn_close(c->nc, false, NULL);
		return;
	}
	reactor_timer_start(c->r, &c->tick, NVMF_TICK_NS);
}

/* ---- the engine's callbacks -------------------------------------------------------------- */

static void srv_conn_start(struct netsrv_conn *nc, void *ctx)
{
	struct nvmf_conn *c = netsrv_conn_priv(nc);

	c->nc = nc;
	c->srv = ctx;
	c->r = netsrv_conn_reactor(nc);
	c->name = netsrv_conn_name(nc);
	c->cfg.max_icd = NVMF_ICSZ;
	c->cfg.max_h2c = NVMF_MAXH2C;
	c->slots = calloc(NVMF_SLOTS, sizeof(*c->slots));
	if (!c->slots) {
		log_error("%s: out of memory for the command slots", c->name);
		netsrv_conn_close(nc, false, NULL);
		return;
	}
	for (unsigned i = NVMF_SLOTS; i-- > 0;) {
		struct nvmf_slot *sl = &c->slots[i];

		sl->c = c;
		sl->idx = (uint16_t)i;
		sl->next_free = c->free_slots;
		c->free_slots = sl;
	}
	if (netsrv_conn_stopping(nc)) {
		netsrv_conn_close(nc, true, "server stopping");
		return;
	}
	conn_rx_next(c);
}

static void srv_conn_drain(struct netsrv_conn *nc)
{
	struct nvmf_conn *c = netsrv_conn_priv(nc);

	if (!c->slots)
		return;
	c->draining = true;
	netsrv_rx_cancel(nc);
	if (c->ninflight == c->nheld)
		netsrv_conn_close(nc, true, "server stopping");
}

static bool srv_conn_busy(struct netsrv_conn *nc, enum netsrv_busy what)
{
	const struct nvmf_conn *c = netsrv_conn_priv(nc);

	switch (what) {
	case NETSRV_BUSY_OUTPUT:
		return c->ninflight > c->nheld;
	case NETSRV_BUSY_REFS:
		return c->ninflight > 0 || c->guard > 0;
	case NETSRV_BUSY_IDLE:
		return c->ninflight > c->nheld || c->draining;
	}
	return false;
}

static void srv_conn_closed(struct netsrv_conn *nc)
{
	struct nvmf_conn *c = netsrv_conn_priv(nc);
	struct nvmf_ctrl *k = c->ctrl;

	if (!c->slots)
		return;
	reactor_timer_cancel(c->r, &c->tick);
	/* Slots waiting for data that will not come, and held discovery AERs. */
	for (unsigned i = 0; i < NVMF_SLOTS; i++) {
		struct nvmf_slot *sl = &c->slots[i];

		if (sl->state == SLOT_RX || sl->state == SLOT_R2T ||
		    (sl->state == SLOT_HELD && !(k && k->ec))) {
			if (sl->state == SLOT_HELD)
				c->nheld--;
			slot_release(sl);
		}
	}
	if (k && c->qid == 0) {
		ctrl_kill(k);
		/* Held AERs complete (posted to this reactor), so the
		 * connection can be freed. */
		if (k->ec)
			nvmeemu_ctrl_reset(k->ec);
	}
}

static void srv_conn_free(struct netsrv_conn *nc)
{
	struct nvmf_conn *c = netsrv_conn_priv(nc);
	struct nvmf_ctrl *k = c->ctrl;

	if (!c->slots)
		return;
	if (k && c->qid != 0) {
		pthread_mutex_lock(&c->srv->lock);
		k->qmask &= ~(1ull << c->qid);
		nvmeemu_ctrl_set_io_queues(k->ec, (unsigned)__builtin_popcountll(k->qmask));
		pthread_mutex_unlock(&c->srv->lock);
	}
	if (k && c->qid == 0)
		log_info("%s: controller %u disconnected", c->name, k->cntlid);
	ctrl_put(k);
	for (unsigned i = 0; i < NVMF_SLOTS; i++)
		if (c->slots[i].buf)
			reactor_buf_put(c->r, c->slots[i].buf, c->slots[i].buf_bytes);
	free(c->slots);
	for (unsigned i = 0; i < c->npipes; i++) {
		if (c->pipes[i].rfd >= 0) {
			close(c->pipes[i].rfd);
			close(c->pipes[i].wfd);
		}
	}
}

/* ---- creation ------------------------------------------------------------------------------- */

void nvmfsrv_subsys_opts(struct nvmeemu_subsys_opts *o)
{
	o->fabrics = true;
	o->sgls = 0x100001;                     /* SGLs, keyed SGL data block; offsets */
	o->ioccsz = NVMF_IOCCSZ;
	o->iorcsz = 1;
	o->maxcmd = NVMF_SLOTS;
	/* 1 MiB commands (4 KiB << 8, the whole of NVMF_MAX_XFER) unless the
	 * caller chose: with the core's default of 256 KiB a host splits each
	 * MiB into four commands, and over TCP every write command costs an
	 * R2T round trip before its data (docs/bench-nvme.md). */
	if (!o->mdts)
		o->mdts = 8;
}

int nvmfsrv_new(const struct nvmfsrv_opts *o, struct nvmfsrv **out)
{
	struct nvmfsrv *s;

	if (o->max_io_queues > NVMF_MAX_IO_QUEUES)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	if (!s->o.max_io_queues)
		s->o.max_io_queues = NVMF_DEFAULT_IO_QUEUES;
	if (!s->o.pipe_bytes)
		s->o.pipe_bytes = NVMF_PIPE_BYTES;
	else if (s->o.pipe_bytes != NVMFSRV_NO_PIPES && s->o.pipe_bytes > INT_MAX)
		s->o.pipe_bytes = NVMF_PIPE_BYTES;
	if (o->portal_addr && !(s->portal_addr = strdup(o->portal_addr))) {
		free(s);
		return -ENOMEM;
	}
	s->o.portal_addr = NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->next_cntlid = 1;
	s->genctr = 1;
	s->proto = NETSRV_PROTO_INIT("nvme-tcp", s, struct nvmf_conn);
	*out = s;
	return 0;
}

int nvmfsrv_add_subsys(struct nvmfsrv *s, struct nvmeemu_subsys *ss)
{
	struct nvmeemu_subsys **v;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (strcmp(nvmeemu_subsys_nqn(ss), NVMF_DISCOVERY_NQN) == 0 ||
	    find_subsys_locked(s->subs, s->nsubs, nvmeemu_subsys_nqn(ss)))
		ret = -EEXIST;
	else if (!(v = realloc(s->subs, (s->nsubs + 1) * sizeof(*v))))
		ret = -ENOMEM;
	else {
		s->subs = v;
		s->subs[s->nsubs++] = ss;
		s->genctr++;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret < 0)
		nvmeemu_subsys_free(ss);
	return ret;
}

int nvmfsrv_remove_subsys(struct nvmfsrv *s, const char *nqn, struct nvmeemu_subsys **out,
			  unsigned *nctrls)
{
	struct nvmeemu_subsys *ss, **v;
	unsigned i, n = 0;

	pthread_mutex_lock(&s->lock);
	ss = find_subsys_locked(s->subs, s->nsubs, nqn);
	if (ss) {
		if (!(v = realloc(s->retired, (s->nretired + 1) * sizeof(*v)))) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		s->retired = v;
		s->retired[s->nretired++] = ss;
		for (i = 0; s->subs[i] != ss; i++)
			;
		memmove(&s->subs[i], &s->subs[i + 1], (s->nsubs - i - 1) * sizeof(s->subs[0]));
		s->nsubs--;
		s->genctr++;
	} else if (!(ss = find_subsys_locked(s->retired, s->nretired, nqn))) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	/* Its controllers die: no queue can join them, their commands are
	 * aborted, and every queue closes on its next tick. */
	for (struct nvmf_ctrl **p = &s->ctrls; *p;) {
		struct nvmf_ctrl *k = *p;

		if (k->sub != ss) {
			p = &k->next;
			continue;
		}
		*p = k->next;
		atomic_store(&k->dead, true);
	}
	for (struct nvmf_ctrl *k = s->all; k; k = k->all_next)
		n += k->sub == ss;
	pthread_mutex_unlock(&s->lock);
	*out = ss;
	*nctrls = n;
	return 0;
}

unsigned nvmfsrv_subsys_ctrls(struct nvmfsrv *s, const struct nvmeemu_subsys *ss)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	for (struct nvmf_ctrl *k = s->all; k; k = k->all_next)
		n += k->sub == ss;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int nvmfsrv_protocol(struct nvmfsrv *s, const struct netsrv_proto **out)
{
	if (s->nsubs == 0)
		return -EINVAL;
	*out = &s->proto;
	return 0;
}

void nvmfsrv_free(struct nvmfsrv *s)
{
	if (!s)
		return;
	while (s->ctrls) {
		struct nvmf_ctrl *k = s->ctrls;

		s->ctrls = k->next;
		nvmeemu_ctrl_free(k->ec);
		free(k);
	}
	for (unsigned i = 0; i < s->nsubs; i++)
		nvmeemu_subsys_free(s->subs[i]);
	for (unsigned i = 0; i < s->nretired; i++)
		nvmeemu_subsys_free(s->retired[i]);
	free(s->subs);
	free(s->retired);
	free(s->portal_addr);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
