/* SPDX-License-Identifier: MIT */
/*
 * pr.c: PERSISTENT RESERVE IN and OUT (SPC-4 §6.15, §6.16, the model in
 * §5.13) of a disk LU, over the disk's PR calls (DISK_OP_PR_* in
 * storage/disk.h). Every request carries the identity of the I_T nexus
 * that sent the command (scsi_nexus_disk_initiator), so the disk keeps one
 * registration per initiator port and fences the data I/O of the others
 * itself; docs/scsi-pr.md has the rule set and its limits.
 *
 * Notes on the design
 * -------------------
 * - The disk is the authority. A disk without DISK_CAP_PR gets a prwrap of
 *   this LU's own (storage/decorators/prwrap.h), and scsi_pr_disk hands
 *   that to the core, so data I/O from a non-holder is refused below
 *   (DISK_RESERVATION_CONFLICT, which sense.c maps to status 18h). After
 *   every PR command pr.c reads the disk's state back with
 *   DISK_OP_PR_REPORT into @st, a cache for what the disk cannot answer:
 *   the synchronous scsi_pr_conflicts (SPC-4 §5.13.1's table for commands
 *   that never reach the disk), the unit attentions (a diff of the states
 *   before and after), and the APTPL state file.
 * - What the disk does not know: the TransportID of each registrant
 *   (READ FULL STATUS, REGISTER AND MOVE). @ports maps a host id to the
 *   initiator port that registered it, its relative target port and its
 *   ALL_TG_PT bit; an entry is added when a nexus registers and pruned at
 *   each refresh to the registrants the disk reports.
 * - One PR command at a time per LU. Commands queue on @queue in arrival
 *   order; the head runs, possibly as several disk requests (REGISTER AND
 *   MOVE, the refresh, the state file), and when it finishes the next is
 *   posted to its own reactor (each command's disk requests run on the
 *   reactor that submitted the command). Serialising keeps @st and @ports
 *   in step with the disk and makes the diff meaningful. PR commands are
 *   rare (cluster membership changes), so a queue costs nothing that
 *   matters, and each command allocates its context and report buffer.
 * - REGISTER AND MOVE has no disk call of its own; it is done with the
 *   existing ones as the destination: REGISTER AND IGNORE EXISTING KEY
 *   (the new key), PREEMPT of the source's key (the reservation moves with
 *   its type, the source's registration goes), then REGISTER AND IGNORE
 *   again for every registrant the preempt removed that should stay (the
 *   source unless UNREG, others sharing its key). XXX: between the
 *   PREEMPT and those re-registrations, I/O of those initiators may be
 *   refused under a registrants-only type; PRGENERATION is corrected to
 *   one step.
 * - APTPL (SPC-4 §5.13.5): with a state path, the last APTPL bit of a
 *   REGISTER, REGISTER AND IGNORE or REGISTER AND MOVE decides. While it
 *   is set, every PR OUT that succeeds rewrites the state file (keys,
 *   holder, type, TransportIDs, generation) as write to "<path>.tmp",
 *   fsync, rename, fsync of the directory, on the shared work pool, before
 *   the command completes; APTPL=0 removes the file. scsi_pr_new restores
 *   a file it finds by replaying the registrations and the reservation as
 *   each host id, and keeps an offset so PRGENERATION goes on from the
 *   saved value. Without a state path APTPL=1 is INVALID FIELD IN
 *   PARAMETER LIST and PTPL_C is 0.
 * - What SPC-4 lets us leave out: SPEC_I_PT (SIP_C 0: the bit is refused
 *   with INVALID FIELD IN PARAMETER LIST), REPLACE LOST RESERVATION, and
 *   the RESERVE/RELEASE exceptions of CRH (CRH 0: an SPC-2 RESERVE or
 *   RELEASE conflicts while anybody is registered, SPC-4 §5.13.3). ALL_TG_PT is
 *   supported (ATP_C 1): a target has one target port here, so a
 *   registration made through it covers all of them; it is remembered and
 *   reported.
 * - Locking: @lock protects @st, @ports, @aptpl, @gen_offset, @file_exists
 *   and the queue. Only the running command changes the first five. It is
 *   never held while calling into the disk or the core (unit attentions
 *   are gathered under it and queued after). @rtype mirrors st.type and
 *   @nregs st.nregs for scsi_pr_conflicts' lock-free fast path.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "common/log.h"
#include "common/workpool.h"
#include "scsi/internal.h"
#include "storage/decorators/prwrap.h"

/* PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1). */
enum {
	PR_IN_READ_KEYS = 0x00,
	PR_IN_READ_RESERVATION = 0x01,
	PR_IN_REPORT_CAPABILITIES = 0x02,
	PR_IN_READ_FULL_STATUS = 0x03,
};

/* PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.2). */
enum {
	PR_OUT_REGISTER = 0x00,
	PR_OUT_RESERVE = 0x01,
	PR_OUT_RELEASE = 0x02,
	PR_OUT_CLEAR = 0x03,
	PR_OUT_PREEMPT = 0x04,
	PR_OUT_PREEMPT_AND_ABORT = 0x05,
	PR_OUT_REGISTER_AND_IGNORE = 0x06,
	PR_OUT_REGISTER_AND_MOVE = 0x07,
};

/* Unit attention ASCQs under ASC 2Ah (SPC-4 annex D). */
enum {
	PR_ASCQ_RESERVATIONS_PREEMPTED = 0x03,
	PR_ASCQ_RESERVATIONS_RELEASED = 0x04,
	PR_ASCQ_REGISTRATIONS_PREEMPTED = 0x05,
};

/* The relative target port identifier of a target's one target port. */
#define PR_REL_TGT_PORT 1
/* Basic PR OUT parameter list (SPC-4 §6.16.3) and its flags byte. */
#define PR_PARAM_LEN 24
#define PR_SPEC_I_PT 0x08
#define PR_ALL_TG_PT 0x04
#define PR_APTPL 0x01
/* Longest TransportID we build or accept: an iSCSI port name of up to
 * 255 bytes, its NUL, padding, the 4-byte header. */
#define PR_TID_MAX (4 + 256)
/* Registrations kept by the state file parser at most. */
#define PR_STATE_MAX_REGS 4096

/* What pr.c knows of the initiator port behind a host id. */
struct pr_port {
	struct disk_initiator ini;      /* host id (controller_id unused) */
	enum scsi_protocol proto;
	char port[256];                 /* initiator port name (scsi_initiator_id.port) */
	uint16_t rel_port;              /* relative target port it registered through */
	bool all_tg_pt;
};

/* One registration as the disk last reported it. */
struct pr_reg {
	uint64_t key;
	uint8_t host_id[16];
	uint8_t host_id_len;
	bool holder;
};

/* The disk's reservation state (DISK_OP_PR_REPORT). */
struct pr_state {
	enum disk_pr_type type;
	uint32_t generation;            /* the disk's; reported + gen_offset */
	uint32_t nregs;
	struct pr_reg *regs;            /* owned, @nregs */
};

struct pr_ctx;

struct scsi_pr {
	struct scsi_lu *lu;             /* borrowed: the LU owns us */
	struct disk *disk;              /* our reference: the disk, or our prwrap over it */
	char *state_path;               /* NULL: APTPL refused */
	uint32_t caps;                  /* DISK_PR_CAP_* */

	/* Lock-free mirrors of st.type and st.nregs (scsi_pr_conflicts). */
	atomic_uint rtype;
	atomic_uint nregs;

	pthread_mutex_t lock;           /* see the notes */
	struct pr_state st;
	uint32_t gen_offset;
	bool aptpl;
	bool file_exists;               /* the state file is (believed) there */
	struct pr_port *ports;
	size_t nports, ports_cap;
	bool busy;                      /* a command runs */
	struct pr_ctx *queue, **queue_tail;
};

/* One PR command while it waits and runs. */
struct pr_ctx {
	struct scsi_pr *pr;
	struct scsi_cmd *cmd;
	struct reactor *reactor;        /* the command's; its disk requests run there */
	struct reactor_task task;
	struct pr_ctx *next;            /* in the queue */
	bool out;                       /* PR OUT (else PR IN) */
	uint8_t sa;
	uint32_t alloc_len;             /* PR IN */

	/* PR OUT parameters. */
	uint64_t key, sa_key;
	enum disk_pr_type type;
	bool aptpl, all_tg_pt, unreg;
	struct pr_port self;            /* the issuing nexus */
	struct pr_port dest;            /* REGISTER AND MOVE */
	struct pr_port old_port;        /* REGISTER: the issuer's entry before */
	bool had_port;

	/* Progress. */
	void (*next_fn)(struct pr_ctx *c, int status);
	void (*refresh_next)(struct pr_ctx *c, int status);
	struct disk_io result;          /* status, os_errno, medium of the last request */
	uint32_t caps_out;              /* DISK_OP_PR_CAPS's answer */
	int op_status;                  /* the PR OUT's disk status */
	struct pr_state before;         /* st when the command started */
	struct disk_pr_report rep;
	struct disk_pr_controller *ctrls;
	uint32_t room;
	/* REGISTER AND MOVE: registrants to register again, and where we are. */
	struct pr_reg *restore;
	uint32_t nrestore, step;
	struct disk_initiator step_ini;
	/* The state file write. */
	struct work_item work;
	char *text;                     /* NULL: remove the file */
	int work_err;                   /* -errno */
};

/* ---- small helpers ------------------------------------------------------------ */

static bool pr_all_regs(enum disk_pr_type t)
{
	return t == DISK_PR_WRITE_EXCLUSIVE_ALL_REG || t == DISK_PR_EXCLUSIVE_ACCESS_ALL_REG;
}

static bool pr_regs_only(enum disk_pr_type t)
{
	return t == DISK_PR_WRITE_EXCLUSIVE_REG_ONLY || t == DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY;
}

/* SPC-4 §6.15.3.4 TYPE codes <-> disk types (which follow NVMe's RTYPE). */
static uint8_t pr_scsi_type(enum disk_pr_type t)
{
	static const uint8_t codes[] = {
		[DISK_PR_NONE] = 0,
		[DISK_PR_WRITE_EXCLUSIVE] = 0x1,
		[DISK_PR_EXCLUSIVE_ACCESS] = 0x3,
		[DISK_PR_WRITE_EXCLUSIVE_REG_ONLY] = 0x5,
		[DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY] = 0x6,
		[DISK_PR_WRITE_EXCLUSIVE_ALL_REG] = 0x7,
		[DISK_PR_EXCLUSIVE_ACCESS_ALL_REG] = 0x8,
	};

	return (unsigned)t < ARRAY_SIZE(codes) ? codes[t] : 0;
}

static enum disk_pr_type pr_disk_type(uint8_t code)
{
	switch (code) {
	case 0x1: return DISK_PR_WRITE_EXCLUSIVE;
	case 0x3: return DISK_PR_EXCLUSIVE_ACCESS;
	case 0x5: return DISK_PR_WRITE_EXCLUSIVE_REG_ONLY;
	case 0x6: return DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY;
	case 0x7: return DISK_PR_WRITE_EXCLUSIVE_ALL_REG;
	case 0x8: return DISK_PR_EXCLUSIVE_ACCESS_ALL_REG;
	default: return DISK_PR_NONE;
	}
}

/* The DISK_PR_CAP_* bit of @t. */
static uint32_t pr_cap_of(enum disk_pr_type t)
{
	switch (t) {
	case DISK_PR_WRITE_EXCLUSIVE: return DISK_PR_CAP_WE;
	case DISK_PR_EXCLUSIVE_ACCESS: return DISK_PR_CAP_EA;
	case DISK_PR_WRITE_EXCLUSIVE_REG_ONLY: return DISK_PR_CAP_WE_RO;
	case DISK_PR_EXCLUSIVE_ACCESS_REG_ONLY: return DISK_PR_CAP_EA_RO;
	case DISK_PR_WRITE_EXCLUSIVE_ALL_REG: return DISK_PR_CAP_WE_AR;
	case DISK_PR_EXCLUSIVE_ACCESS_ALL_REG: return DISK_PR_CAP_EA_AR;
	default: return 0;
	}
}

static bool pr_same_host(const uint8_t *a, uint8_t alen, const uint8_t *b, uint8_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

static bool pr_ini_eq(const struct disk_initiator *a, const struct disk_initiator *b)
{
	return pr_same_host(a->host_id, a->host_id_len, b->host_id, b->host_id_len);
}

static void pr_state_clear(struct pr_state *s)
{
	free(s->regs);
	memset(s, 0, sizeof(*s));
}

static int pr_state_copy(struct pr_state *to, const struct pr_state *from)
{
	*to = *from;
	to->regs = NULL;
	if (from->nregs) {
		to->regs = calloc(from->nregs, sizeof(*to->regs));
		if (!to->regs) {
			to->nregs = 0;
			return -ENOMEM;
		}
		memcpy(to->regs, from->regs, from->nregs * sizeof(*to->regs));
	}
	return 0;
}

static const struct pr_reg *pr_find_reg(const struct pr_state *s, const uint8_t *host_id,
					uint8_t len)
{
	for (uint32_t i = 0; i < s->nregs; i++)
		if (pr_same_host(s->regs[i].host_id, s->regs[i].host_id_len, host_id, len))
			return &s->regs[i];
	return NULL;
}

/* Call with @lock held. */
static struct pr_port *pr_find_port(struct scsi_pr *pr, const uint8_t *host_id, uint8_t len)
{
	for (size_t i = 0; i < pr->nports; i++)
		if (pr_same_host(pr->ports[i].ini.host_id, pr->ports[i].ini.host_id_len, host_id, len))
			return &pr->ports[i];
	return NULL;
}

/* Adds or updates the port of @p. Call with @lock held. */
static int pr_set_port(struct scsi_pr *pr, const struct pr_port *p)
{
	struct pr_port *have = pr_find_port(pr, p->ini.host_id, p->ini.host_id_len);

	if (!have) {
		if (pr->nports == pr->ports_cap) {
			size_t cap = pr->ports_cap ? 2 * pr->ports_cap : 8;
			struct pr_port *n = realloc(pr->ports, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			pr->ports = n;
			pr->ports_cap = cap;
		}
		have = &pr->ports[pr->nports++];
	}
	*have = *p;
	return 0;
}

/* Drops the ports of host ids that are no longer registered. Call with
 * @lock held. */
static void pr_prune_ports(struct scsi_pr *pr)
{
	size_t j = 0;

	for (size_t i = 0; i < pr->nports; i++) {
		const struct pr_port *p = &pr->ports[i];

		if (pr_find_reg(&pr->st, p->ini.host_id, p->ini.host_id_len))
			pr->ports[j++] = *p;
	}
	pr->nports = j;
}

/* The length of the iSCSI name in an initiator port name: the part
 * before ",i,0x". */
static size_t pr_iscsi_name_len(const char *port)
{
	const char *sep = strstr(port, ",i,0x");

	return sep ? (size_t)(sep - port) : strlen(port);
}

/* ---- TransportIDs (SPC-4 §7.6.4) ------------------------------------------------- */

/*
 * The TransportID of @p into @out (room PR_TID_MAX); returns its length.
 * iSCSI (SPC-4 §7.6.4.6): format 01b, the initiator port name "<name>,i,0x<ISID>"
 * NUL-terminated and padded to a multiple of 4, at least 20 bytes, or
 * format 00b with the name when the port has no ISID part. SAS (SPC-4 §7.6.4.7):
 * the SAS address, which a transport without names puts in the port as
 * "naa.<16 hex digits>"; failing that the first 8 bytes of the host id.
 */
static size_t pr_transport_id(const struct pr_port *p, uint8_t *out)
{
	memset(out, 0, PR_TID_MAX);
	if (p->proto == SCSI_PROTO_ISCSI) {
		size_t n = strnlen(p->port, sizeof(p->port) - 1) + 1;
		size_t padded = MAX(ROUND_UP(n, 4), (size_t)20);
		bool has_isid = strstr(p->port, ",i,0x") != NULL;

		out[0] = (uint8_t)((has_isid ? 0x40 : 0x00) | SCSI_PROTO_ISCSI);
		ds_put_be16(out + 2, (uint16_t)padded);
		memcpy(out + 4, p->port, n - 1);
		return 4 + padded;
	}
	out[0] = SCSI_PROTO_SAS;
	if (strncasecmp(p->port, "naa.", 4) == 0 && strlen(p->port) >= 20) {
		for (int i = 0; i < 8; i++) {
			unsigned v;

			if (sscanf(p->port + 4 + 2 * i, "%2x", &v) != 1)
				break;
			out[4 + i] = (uint8_t)v;
		}
	} else {
		memcpy(out + 4, p->ini.host_id, MIN((size_t)8, (size_t)p->ini.host_id_len));
	}
	return 24;
}

/* Case-insensitive equality of two port names (iSCSI names are
 * case-insensitive, RFC 3722, and the ISID is hex). */
static bool pr_port_name_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

/*
 * Finds the registrant port a REGISTER AND MOVE TransportID names among
 * the ports we know, or derives it (iSCSI format 01b: every initiator port
 * name maps to its host id). Returns 0 with *@out filled, or -EINVAL
 * (malformed, or a port we cannot name). Call with @lock held.
 */
static int pr_resolve_tid(struct scsi_pr *pr, const uint8_t *tid, size_t len,
			  struct pr_port *out)
{
	unsigned proto, fmt;

	if (len < 24)
		return -EINVAL;
	proto = tid[0] & 0x0f;
	fmt = tid[0] >> 6;
	memset(out, 0, sizeof(*out));
	out->rel_port = PR_REL_TGT_PORT;
	if (proto == SCSI_PROTO_ISCSI) {
		size_t addl = ds_get_be16(tid + 2), n;
		const char *s = (const char *)tid + 4;
		size_t found = 0;

		if (addl + 4 > len || (fmt != 0 && fmt != 1))
			return -EINVAL;
		n = strnlen(s, addl);
		if (n == addl || n == 0 || n >= sizeof(out->port))
			return -EINVAL;   /* no NUL, empty, or too long */
		if (fmt == 1 && !strstr(s, ",i,0x"))
			return -EINVAL;
		out->proto = SCSI_PROTO_ISCSI;
		for (size_t i = 0; i < pr->nports; i++) {
			const struct pr_port *p = &pr->ports[i];
			bool match;

			if (p->proto != SCSI_PROTO_ISCSI)
				continue;
			match = fmt == 1 ? pr_port_name_eq(p->port, strlen(p->port), s, n)
					 : pr_port_name_eq(p->port, pr_iscsi_name_len(p->port), s, n);
			if (match) {
				*out = *p;
				found++;
			}
		}
		if (found == 1)
			return 0;
		if (fmt == 0)
			return -EINVAL;   /* no such port, or the name has several */
		memcpy(out->port, s, n);
		out->port[n] = '\0';
		/* The ISID is hex: name it the way the transport does. */
		for (char *x = strstr(out->port, ",i,0x") + 5; *x; x++)
			*x = (char)tolower((unsigned char)*x);
		out->all_tg_pt = false;
		out->rel_port = PR_REL_TGT_PORT;
		return scsi_port_disk_initiator(SCSI_PROTO_ISCSI, out->port, &out->ini);
	}
	if (proto == SCSI_PROTO_SAS && fmt == 0) {
		uint8_t mine[PR_TID_MAX];

		for (size_t i = 0; i < pr->nports; i++) {
			if (pr->ports[i].proto != SCSI_PROTO_SAS)
				continue;
			pr_transport_id(&pr->ports[i], mine);
			if (memcmp(mine + 4, tid + 4, 8) == 0) {
				*out = pr->ports[i];
				return 0;
			}
		}
	}
	return -EINVAL;
}

/* ---- the queue -------------------------------------------------------------------- */

static void pr_start(struct pr_ctx *c);

static void pr_start_task(struct reactor_task *t)
{
	pr_start(container_of(t, struct pr_ctx, task));
}

static void pr_ctx_free(struct pr_ctx *c)
{
	if (!c)
		return;
	pr_state_clear(&c->before);
	free(c->ctrls);
	free(c->restore);
	free(c->text);
	free(c);
}

/* Queues @c and runs it if nothing else runs. */
static void pr_enqueue(struct pr_ctx *c)
{
	struct scsi_pr *pr = c->pr;
	bool run;

	pthread_mutex_lock(&pr->lock);
	run = !pr->busy;
	if (run) {
		pr->busy = true;
	} else {
		*pr->queue_tail = c;
		pr->queue_tail = &c->next;
	}
	pthread_mutex_unlock(&pr->lock);
	if (run)
		pr_start(c);
}

/* Ends the running command and starts the next one on its reactor. The
 * hand-off comes first: once the command is finished, a LU removed under
 * it may free @pr (scsi_target_remove_lu waits only for commands), so
 * nothing of the LU is touched after scsi_cmd_finish unless the next
 * command, still in flight, keeps it. */
static void pr_finish(struct pr_ctx *c)
{
	struct scsi_pr *pr = c->pr;
	struct pr_ctx *next;

	pthread_mutex_lock(&pr->lock);
	next = pr->queue;
	if (next) {
		pr->queue = next->next;
		if (!pr->queue)
			pr->queue_tail = &pr->queue;
	} else {
		pr->busy = false;
	}
	pthread_mutex_unlock(&pr->lock);
	scsi_cmd_finish(c->cmd);
	pr_ctx_free(c);
	if (next) {
		next->task.fn = pr_start_task;
		reactor_post(next->reactor, &next->task);
	}
}

/* ---- disk requests ---------------------------------------------------------------- */

static void pr_io_done(struct disk_io *io)
{
	struct pr_ctx *c = io->opaque;
	int st = io->status;

	c->result.status = io->status;
	c->result.os_errno = io->os_errno;
	c->result.medium = io->medium;
	c->caps_out = io->u.pr.caps;
	disk_io_put(c->reactor, io);
	c->next_fn(c, st);
}

/* Sends PR request @op as @ini with @a; @next runs with its status (or
 * DISK_IO_ERROR/ENOMEM when no request could be had). */
static void pr_submit(struct pr_ctx *c, enum disk_op op, const struct disk_initiator *ini,
		      const struct disk_pr_args *a, void (*next)(struct pr_ctx *c, int status))
{
	struct disk_io *io = disk_io_get(c->reactor);

	c->next_fn = next;
	if (!io) {
		c->result.status = DISK_IO_ERROR;
		c->result.os_errno = ENOMEM;
		next(c, DISK_IO_ERROR);
		return;
	}
	io->op = op;
	io->initiator = ini;
	io->u.pr = *a;
	io->done = pr_io_done;
	io->opaque = c;
	disk_submit(c->pr->disk, io);
}

/* Turns a REPORT into @s (regs allocated). */
static int pr_state_from_report(struct pr_state *s, const struct disk_pr_report *r)
{
	uint32_t n = MIN(r->nr_controllers, r->max_controllers);

	memset(s, 0, sizeof(*s));
	s->type = r->type;
	s->generation = r->generation;
	if (n) {
		s->regs = calloc(n, sizeof(*s->regs));
		if (!s->regs)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct disk_pr_controller *ct = &r->controllers[i];
		struct pr_reg *g = &s->regs[i];

		g->key = ct->key;
		g->host_id_len = MIN(ct->host_id_len, (uint8_t)sizeof(g->host_id));
		memcpy(g->host_id, ct->host_id, g->host_id_len);
		g->holder = ct->holds_reservation;
	}
	s->nregs = n;
	return 0;
}

/* Installs @s as the cached state (taking its regs). Call with @lock held. */
static void pr_install(struct scsi_pr *pr, struct pr_state *s)
{
	pr_state_clear(&pr->st);
	pr->st = *s;
	memset(s, 0, sizeof(*s));
	atomic_store_explicit(&pr->rtype, (unsigned)pr->st.type, memory_order_release);
	atomic_store_explicit(&pr->nregs, pr->st.nregs, memory_order_release);
	pr_prune_ports(pr);
}

static int pr_report_room(struct pr_ctx *c, uint32_t room)
{
	struct disk_pr_controller *n;

	room = MAX(room, (uint32_t)PRWRAP_MAX_REGISTRANTS);
	if (room <= c->room)
		return 0;
	n = realloc(c->ctrls, room * sizeof(*n));
	if (!n)
		return -ENOMEM;
	c->ctrls = n;
	c->room = room;
	return 0;
}

static void pr_refresh(struct pr_ctx *c, void (*next)(struct pr_ctx *c, int status));

static void pr_refresh_done(struct pr_ctx *c, int st)
{
	struct scsi_pr *pr = c->pr;
	void (*next)(struct pr_ctx *, int) = c->refresh_next;
	struct pr_state s;

	if (st == DISK_OK && c->rep.nr_controllers > c->rep.max_controllers &&
	    pr_report_room(c, c->rep.nr_controllers) == 0) {
		pr_refresh(c, next);       /* grew meanwhile: ask again */
		return;
	}
	if (st == DISK_OK) {
		if (pr_state_from_report(&s, &c->rep) < 0) {
			c->result.status = DISK_IO_ERROR;
			c->result.os_errno = ENOMEM;
			next(c, DISK_IO_ERROR);
			return;
		}
		pthread_mutex_lock(&pr->lock);
		pr_install(pr, &s);
		pthread_mutex_unlock(&pr->lock);
	}
	next(c, st);
}

/* Reads the disk's state into the cache, then calls @next. The request
 * goes as the issuing nexus: a disk that answers per initiator (prwrap)
 * reports its identified table to an identified caller. */
static void pr_refresh(struct pr_ctx *c, void (*next)(struct pr_ctx *c, int status))
{
	struct disk_pr_args a = { .report = &c->rep };

	c->refresh_next = next;
	if (pr_report_room(c, 0) < 0) {
		c->result.status = DISK_IO_ERROR;
		c->result.os_errno = ENOMEM;
		next(c, DISK_IO_ERROR);
		return;
	}
	memset(&c->rep, 0, sizeof(c->rep));
	c->rep.controllers = c->ctrls;
	c->rep.max_controllers = c->room;
	pr_submit(c, DISK_OP_PR_REPORT, &c->self.ini, &a, pr_refresh_done);
}

/* The generation PR IN reports. Call with @lock held. */
static uint32_t pr_generation(const struct scsi_pr *pr)
{
	return pr->st.generation + pr->gen_offset;
}

/* ---- PERSISTENT RESERVE IN ---------------------------------------------------------- */

/* REPORT CAPABILITIES parameter data (SPC-4 §6.15.4), 8 bytes. */
static void pr_capabilities(struct scsi_pr *pr, uint8_t *b)
{
	uint16_t mask = 0;

	memset(b, 0, 8);
	ds_put_be16(b, 8);
	/* CRH 0, SIP_C 0, ATP_C 1, PTPL_C when there is somewhere to persist. */
	b[2] = 0x04 | (pr->state_path ? 0x01 : 0x00);
	/* TMV 1: the type mask is valid; ALLOW COMMANDS 000b (no claim). */
	pthread_mutex_lock(&pr->lock);
	b[3] = 0x80 | (pr->aptpl ? 0x01 : 0x00);
	pthread_mutex_unlock(&pr->lock);
	if (pr->caps & DISK_PR_CAP_WE_AR)
		mask |= 0x8000;
	if (pr->caps & DISK_PR_CAP_EA_RO)
		mask |= 0x4000;
	if (pr->caps & DISK_PR_CAP_WE_RO)
		mask |= 0x2000;
	if (pr->caps & DISK_PR_CAP_EA)
		mask |= 0x0800;
	if (pr->caps & DISK_PR_CAP_WE)
		mask |= 0x0200;
	if (pr->caps & DISK_PR_CAP_EA_AR)
		mask |= 0x0001;
	ds_put_be16(b + 4, mask);
}

/* Builds the parameter data of PR IN @sa from the cache into a new buffer
 * (*@out, length *@len). Call with @lock held. */
static int pr_in_data(struct scsi_pr *pr, uint8_t sa, uint8_t **out, size_t *len)
{
	const struct pr_state *s = &pr->st;
	size_t n = 8;
	uint8_t *b;

	if (sa == PR_IN_READ_KEYS)
		n += 8 * (size_t)s->nregs;
	else if (sa == PR_IN_READ_RESERVATION)
		n += 16;
	else
		n += (size_t)s->nregs * (24 + PR_TID_MAX);
	b = calloc(1, n);
	if (!b)
		return -ENOMEM;
	ds_put_be32(b, pr_generation(pr));
	n = 8;
	switch (sa) {
	case PR_IN_READ_KEYS:
		for (uint32_t i = 0; i < s->nregs; i++, n += 8)
			ds_put_be64(b + n, s->regs[i].key);
		break;
	case PR_IN_READ_RESERVATION:
		if (s->type == DISK_PR_NONE)
			break;
		/* SPC-4 §6.15.3.3: an all-registrants reservation has key 0. */
		if (!pr_all_regs(s->type)) {
			for (uint32_t i = 0; i < s->nregs; i++)
				if (s->regs[i].holder)
					ds_put_be64(b + 8, s->regs[i].key);
		}
		b[8 + 13] = pr_scsi_type(s->type);    /* scope 0: LU_SCOPE */
		n += 16;
		break;
	default: /* READ FULL STATUS, SPC-4 §6.15.5 */
		for (uint32_t i = 0; i < s->nregs; i++) {
			const struct pr_reg *g = &s->regs[i];
			const struct pr_port *p = pr_find_port(pr, g->host_id, g->host_id_len);
			struct pr_port anon;
			uint8_t *d = b + n;
			size_t tl;

			if (!p) {
				/* Registered behind our back (a disk with PR of
				 * its own): a SAS TransportID from the host id. */
				memset(&anon, 0, sizeof(anon));
				anon.proto = SCSI_PROTO_SAS;
				anon.rel_port = PR_REL_TGT_PORT;
				memcpy(anon.ini.host_id, g->host_id, g->host_id_len);
				anon.ini.host_id_len = g->host_id_len;
				p = &anon;
			}
			ds_put_be64(d, g->key);
			d[12] = (uint8_t)((p->all_tg_pt ? 0x02 : 0) | (g->holder ? 0x01 : 0));
			if (g->holder)
				d[13] = pr_scsi_type(s->type);
			ds_put_be16(d + 18, p->rel_port);
			tl = pr_transport_id(p, d + 24);
			ds_put_be32(d + 20, (uint32_t)tl);
			n += 24 + tl;
		}
		break;
	}
	ds_put_be32(b + 4, (uint32_t)(n - 8));
	*out = b;
	*len = n;
	return 0;
}

static void pr_in_answer(struct pr_ctx *c, int st)
{
	struct scsi_pr *pr = c->pr;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if (st != DISK_OK) {
		scsi_cmd_disk_status(c->cmd, &c->result, 0);
		pr_finish(c);
		return;
	}
	pthread_mutex_lock(&pr->lock);
	r = pr_in_data(pr, c->sa, &buf, &len);
	pthread_mutex_unlock(&pr->lock);
	if (r < 0)
		scsi_cmd_status(c->cmd, SCSI_BUSY);
	else
		scsi_cmd_data_in(c->cmd, buf, len, c->alloc_len);
	free(buf);
	pr_finish(c);
}

/* The state of one PERSISTENT RESERVE IN or OUT @cmd on this reactor
 * (owned; pr_finish frees it), or NULL with @cmd finished BUSY. */
static struct pr_ctx *pr_ctx_new(struct scsi_pr *pr, struct scsi_cmd *cmd)
{
	struct pr_ctx *c = calloc(1, sizeof(*c));

	if (!c) {
		scsi_cmd_status(cmd, SCSI_BUSY);
		scsi_cmd_finish(cmd);
		return NULL;
	}
	c->pr = pr;
	c->cmd = cmd;
	c->reactor = reactor_current();
	return c;
}

void scsi_pr_in(struct scsi_pr *pr, struct scsi_cmd *cmd)
{
	uint8_t sa = cmd->cdb[1] & 0x1f;
	struct pr_ctx *c;

	if (sa > PR_IN_READ_FULL_STATUS) {
		scsi_cmd_invalid_field(cmd, true, 1, 4);
		scsi_cmd_finish(cmd);
		return;
	}
	if (sa == PR_IN_REPORT_CAPABILITIES) {
		/* From what pr.c knows: nothing to ask the disk. */
		uint8_t b[8];

		pr_capabilities(pr, b);
		scsi_cmd_data_in(cmd, b, sizeof(b), ds_get_be16(cmd->cdb + 7));
		scsi_cmd_finish(cmd);
		return;
	}
	c = pr_ctx_new(pr, cmd);
	if (!c)
		return;
	c->sa = sa;
	c->alloc_len = ds_get_be16(cmd->cdb + 7);
	c->self.ini = *scsi_nexus_disk_initiator(cmd->nexus);
	pr_enqueue(c);
}

/* ---- the state file ------------------------------------------------------------------ */

/*
 * Format (text, one record a line, every field required):
 *   diskstack-pr-state 1
 *   generation <decimal u32>           PRGENERATION as reported
 *   type <0..6>                        enum disk_pr_type, 0 = none
 *   reg <host id hex> <key hex> <holder 0|1> <protocol> <all_tg_pt 0|1>
 *       <relative target port> <initiator port name hex>
 *   end <number of reg lines>
 */
#define PR_STATE_MAGIC "diskstack-pr-state 1"

static void pr_hex(char *out, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

/* The state file's text for the cache. Call with @lock held. */
static char *pr_state_text(struct scsi_pr *pr)
{
	const struct pr_state *s = &pr->st;
	size_t room = 128 + (size_t)s->nregs * (96 + 2 * 256);
	char *t = malloc(room), *p = t;
	enum disk_pr_type type = s->type;
	uint32_t n = 0;

	if (!t)
		return NULL;
	/* A registration without a host id (made behind our back on a disk
	 * with PR of its own) cannot be replayed as anybody: left out, and
	 * the reservation with it when it held one. */
	for (uint32_t i = 0; i < s->nregs; i++) {
		if (s->regs[i].host_id_len == 0 && s->regs[i].holder && !pr_all_regs(type))
			type = DISK_PR_NONE;
		n += s->regs[i].host_id_len != 0;
	}
	if (n == 0)
		type = DISK_PR_NONE;
	n = 0;
	p += sprintf(p, PR_STATE_MAGIC "\ngeneration %" PRIu32 "\ntype %u\n", pr_generation(pr),
		     (unsigned)type);
	for (uint32_t i = 0; i < s->nregs; i++) {
		const struct pr_reg *g = &s->regs[i];
		const struct pr_port *pt = pr_find_port(pr, g->host_id, g->host_id_len);
		char hid[33], port[2 * 256 + 1];

		if (g->host_id_len == 0)
			continue;
		n++;
		pr_hex(hid, g->host_id, g->host_id_len);
		pr_hex(port, pt ? pt->port : "", pt ? strlen(pt->port) : 0);
		p += sprintf(p, "reg %s %016" PRIx64 " %d %d %d %u %s\n", hid, g->key,
			     g->holder && type != DISK_PR_NONE ? 1 : 0,
			     pt ? (int)pt->proto : (int)SCSI_PROTO_SAS, pt && pt->all_tg_pt ? 1 : 0,
			     pt ? pt->rel_port : PR_REL_TGT_PORT, port[0] ? port : "-");
	}
	sprintf(p, "end %" PRIu32 "\n", n);
	return t;
}

/* fsyncs the directory holding @path, so a rename or unlink in it lasts. */
static int pr_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, r = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Replaces @path with @text atomically and durably. */
static int pr_write_file(const char *path, const char *text)
{
	size_t plen = strlen(path), len = strlen(text), off = 0;
	CLEANUP_FREE char *tmp = malloc(plen + 5);
	int fd, r = 0;

	if (!tmp)
		return -ENOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlink(tmp);
		return r;
	}
	return pr_sync_dir(path);
}

static int pr_remove_file(const char *path)
{
	if (unlink(path) < 0)
		return errno == ENOENT ? 0 : -errno;
	return pr_sync_dir(path);
}

static int pr_unhex(const char *s, uint8_t *out, size_t max, size_t *n)
{
	size_t len = strlen(s);

	if (strcmp(s, "-") == 0) {
		*n = 0;
		return 0;
	}
	if (len % 2 || len / 2 > max)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]))
			return -1;
		out[i] = (uint8_t)strtoul((char[]){ s[2 * i], s[2 * i + 1], '\0' }, NULL, 16);
	}
	*n = len / 2;
	return 0;
}

/* What a state file holds. */
struct pr_saved {
	uint32_t generation;
	enum disk_pr_type type;
	uint32_t nregs;
	struct pr_reg *regs;
	struct pr_port *ports;          /* one per reg */
};

static void pr_saved_free(struct pr_saved *sv)
{
	free(sv->regs);
	free(sv->ports);
}

static bool pr_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Parses one "reg" line's fields (after "reg "). */
static int pr_parse_reg(char *line, struct pr_reg *g, struct pr_port *p)
{
	char *f[7], *save = NULL, *end;
	uint32_t v;
	size_t n;
	int i = 0;

	for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (i == 7)
			return -1;
		f[i++] = t;
	}
	if (i != 7)
		return -1;
	memset(g, 0, sizeof(*g));
	memset(p, 0, sizeof(*p));
	if (pr_unhex(f[0], g->host_id, sizeof(g->host_id), &n) < 0 || n == 0)
		return -1;
	g->host_id_len = (uint8_t)n;
	memcpy(p->ini.host_id, g->host_id, n);
	p->ini.host_id_len = (uint8_t)n;
	if (strlen(f[1]) != 16 || !isxdigit((unsigned char)f[1][0]))
		return -1;
	errno = 0;
	g->key = strtoull(f[1], &end, 16);
	if (errno || *end || g->key == 0)
		return -1;
	if (!pr_parse_u32(f[2], 1, &v))
		return -1;
	g->holder = v;
	if (!pr_parse_u32(f[3], 15, &v) || (v != SCSI_PROTO_ISCSI && v != SCSI_PROTO_SAS))
		return -1;
	p->proto = (enum scsi_protocol)v;
	if (!pr_parse_u32(f[4], 1, &v))
		return -1;
	p->all_tg_pt = v;
	if (!pr_parse_u32(f[5], 65535, &v) || v == 0)
		return -1;
	p->rel_port = (uint16_t)v;
	if (pr_unhex(f[6], (uint8_t *)p->port, sizeof(p->port) - 1, &n) < 0 ||
	    memchr(p->port, '\0', n))
		return -1;
	p->port[n] = '\0';
	return 0;
}

/*
 * Reads and checks the state file at @path into @sv. Returns 1 when
 * there is a state, 0 when there is no file, -errno with a message.
 */
static int pr_state_load(const char *path, struct pr_saved *sv, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	unsigned lineno = 0;
	uint32_t end_count = UINT32_MAX, nholders = 0;
	bool have_gen = false, have_type = false;
	int r = -EINVAL;

	memset(sv, 0, sizeof(*sv));
	if (!f) {
		if (errno == ENOENT)
			return 0;
		return errbuf_fail(err, errlen, -errno, "persistent reservation state %s: %s", path,
				   strerror(errno));
	}
	while (fgets(line, sizeof(line), f)) {
		size_t l = strlen(line);
		uint32_t v;

		lineno++;
		if (l == 0 || line[l - 1] != '\n' || end_count != UINT32_MAX)
			goto bad;     /* overlong line, no newline, or past "end" */
		line[l - 1] = '\0';
		if (lineno == 1) {
			if (strcmp(line, PR_STATE_MAGIC) != 0)
				goto bad;
		} else if (strncmp(line, "generation ", 11) == 0 && !have_gen) {
			if (!pr_parse_u32(line + 11, UINT32_MAX, &sv->generation))
				goto bad;
			have_gen = true;
		} else if (strncmp(line, "type ", 5) == 0 && !have_type) {
			if (!pr_parse_u32(line + 5, DISK_PR_EXCLUSIVE_ACCESS_ALL_REG, &v))
				goto bad;
			sv->type = (enum disk_pr_type)v;
			have_type = true;
		} else if (strncmp(line, "reg ", 4) == 0) {
			struct pr_reg *g;
			struct pr_port *p;

			if (sv->nregs == PR_STATE_MAX_REGS)
				goto bad;
			g = realloc(sv->regs, (sv->nregs + 1) * sizeof(*g));
			if (g)
				sv->regs = g;
			p = realloc(sv->ports, (sv->nregs + 1) * sizeof(*p));
			if (p)
				sv->ports = p;
			if (!g || !p) {
				r = errbuf_fail(err, errlen, -ENOMEM, "out of memory");
				goto out;
			}
			if (pr_parse_reg(line + 4, &sv->regs[sv->nregs], &sv->ports[sv->nregs]) < 0)
				goto bad;
			for (uint32_t i = 0; i < sv->nregs; i++)
				if (pr_same_host(sv->regs[i].host_id, sv->regs[i].host_id_len,
						 sv->regs[sv->nregs].host_id,
						 sv->regs[sv->nregs].host_id_len))
					goto bad;   /* one registration per host id */
			nholders += sv->regs[sv->nregs].holder;
			sv->nregs++;
		} else if (strncmp(line, "end ", 4) == 0) {
			if (!pr_parse_u32(line + 4, UINT32_MAX, &end_count))
				goto bad;
		} else {
			goto bad;
		}
	}
	if (ferror(f)) {
		r = errbuf_fail(err, errlen, -EIO, "persistent reservation state %s: read error",
				path);
		goto out;
	}
	lineno++;
	/* Complete, and a reservation that can be replayed: one holder, or
	 * for the all-registrants types every registrant. */
	if (!have_gen || !have_type || end_count != sv->nregs ||
	    (sv->type == DISK_PR_NONE && nholders != 0) ||
	    (sv->type != DISK_PR_NONE && !pr_all_regs(sv->type) && nholders != 1) ||
	    (pr_all_regs(sv->type) && (sv->nregs == 0 || nholders != sv->nregs)))
		goto bad;
	fclose(f);
	return 1;
bad:
	r = errbuf_fail(err, errlen, -EINVAL,
			"persistent reservation state %s is corrupt (line %u); move it away to "
			"start without the saved reservations", path, lineno);
out:
	fclose(f);
	pr_saved_free(sv);
	memset(sv, 0, sizeof(*sv));
	return r;
}

static void pr_work_run(struct work_item *w)
{
	struct pr_ctx *c = container_of(w, struct pr_ctx, work);

	c->work_err = c->text ? pr_write_file(c->pr->state_path, c->text)
			      : pr_remove_file(c->pr->state_path);
}

static void pr_work_done(struct work_item *w)
{
	struct pr_ctx *c = container_of(w, struct pr_ctx, work);

	if (c->work_err < 0) {
		/* The reservation changed but would not survive a restart:
		 * say so rather than claim APTPL's promise. */
		log_error("scsi: LUN %u: persistent reservation state %s: %s",
			  scsi_lu_lun(c->pr->lu), c->pr->state_path, strerror(-c->work_err));
		scsi_cmd_sense(c->cmd, SCSI_SK_HARDWARE_ERROR, 0x44, 0x00);
	}
	pr_finish(c);
}

/* Brings the state file in line with APTPL after a PR OUT changed the
 * state, then ends the command. */
static void pr_persist_and_finish(struct pr_ctx *c)
{
	struct scsi_pr *pr = c->pr;
	struct workpool *wp;
	bool act;

	pthread_mutex_lock(&pr->lock);
	act = pr->state_path && (pr->aptpl || pr->file_exists);
	if (act && pr->aptpl) {
		c->text = pr_state_text(pr);
		if (!c->text) {
			pthread_mutex_unlock(&pr->lock);
			c->work_err = -ENOMEM;
			pr_work_done(&c->work);
			return;
		}
	}
	if (act)
		pr->file_exists = pr->aptpl;
	pthread_mutex_unlock(&pr->lock);
	if (!act) {
		pr_finish(c);
		return;
	}
	c->work.work = pr_work_run;
	c->work.done = pr_work_done;
	wp = workpool_default();
	if (wp) {
		workpool_submit(wp, &c->work);
	} else {
		pr_work_run(&c->work);
		pr_work_done(&c->work);
	}
}

/* ---- PERSISTENT RESERVE OUT ----------------------------------------------------------- */

/* A unit attention to queue once @lock is dropped. */
struct pr_ua {
	uint8_t host_id[16];
	uint8_t len;
	uint8_t ascq;
};

/* Adds a unit attention for every registration of @s except the issuer's
 * and, with @unless, those also in @unless (still registered). */
static size_t pr_ua_add(struct pr_ua *ua, size_t n, const struct pr_state *s,
			const struct pr_state *unless, const struct disk_initiator *issuer,
			uint8_t ascq)
{
	for (uint32_t i = 0; i < s->nregs; i++) {
		const struct pr_reg *g = &s->regs[i];

		if (pr_same_host(g->host_id, g->host_id_len, issuer->host_id, issuer->host_id_len))
			continue;
		if (unless && pr_find_reg(unless, g->host_id, g->host_id_len))
			continue;
		memcpy(ua[n].host_id, g->host_id, g->host_id_len);
		ua[n].len = g->host_id_len;
		ua[n].ascq = ascq;
		n++;
	}
	return n;
}

/*
 * The unit attentions a PR OUT that succeeded owes the other registrants
 * (SPC-4 §5.13.10-§5.13.11), from the states before and after; never to
 * the issuing I_T nexus. Call with @lock held; returns the count in *@ua
 * (allocated).
 */
static size_t pr_out_uas(struct pr_ctx *c, struct pr_ua **out)
{
	const struct pr_state *o = &c->before, *n = &c->pr->st;
	const struct disk_initiator *me = &c->self.ini;
	struct pr_ua *ua = calloc((size_t)o->nregs + n->nregs + 1, sizeof(*ua));
	size_t k = 0;

	*out = ua;
	if (!ua)
		return 0;
	switch (c->sa) {
	case PR_OUT_CLEAR:
		/* SPC-4 §5.13 (clearing): every other registration went. */
		k = pr_ua_add(ua, k, o, NULL, me, PR_ASCQ_RESERVATIONS_PREEMPTED);
		break;
	case PR_OUT_PREEMPT:
	case PR_OUT_PREEMPT_AND_ABORT:
		/* The registrations it removed... */
		k = pr_ua_add(ua, k, o, n, me, PR_ASCQ_REGISTRATIONS_PREEMPTED);
		/* ...and when the holder's reservation came back with another
		 * type, those left lost the one they had. */
		if (o->type != DISK_PR_NONE && n->type != DISK_PR_NONE && o->type != n->type)
			k = pr_ua_add(ua, k, n, NULL, me, PR_ASCQ_RESERVATIONS_RELEASED);
		break;
	case PR_OUT_RELEASE:
		/* Releasing a registrants-only or all-registrants reservation
		 * tells the other registrants (SPC-4 §5.13, releasing). */
		if ((pr_regs_only(o->type) || pr_all_regs(o->type)) && n->type == DISK_PR_NONE)
			k = pr_ua_add(ua, k, n, NULL, me, PR_ASCQ_RESERVATIONS_RELEASED);
		break;
	case PR_OUT_REGISTER:
	case PR_OUT_REGISTER_AND_IGNORE:
		/* A registrants-only holder that unregisters releases it and
		 * the others are told (SPC-4 §5.13, unregistering); the holder
		 * of the other types releases silently. */
		if (pr_regs_only(o->type) && n->type == DISK_PR_NONE)
			k = pr_ua_add(ua, k, n, NULL, me, PR_ASCQ_RESERVATIONS_RELEASED);
		break;
	default:
		break;
	}
	return k;
}

/* Maps the failed disk status of a PR OUT onto the command. */
static void pr_out_error(struct pr_ctx *c, int st)
{
	struct scsi_cmd *cmd = c->cmd;

	switch (st) {
	case DISK_RESERVATION_CONFLICT:
		scsi_cmd_status(cmd, SCSI_RESERVATION_CONFLICT);
		return;
	case DISK_INVALID_INPUT:
		if (c->sa == PR_OUT_RELEASE)   /* a holder's type differs */
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x04);
		else if (c->sa == PR_OUT_PREEMPT || c->sa == PR_OUT_PREEMPT_AND_ABORT)
			scsi_cmd_invalid_field(cmd, false, 8, -1);   /* the preempted key */
		else
			scsi_cmd_invalid_field(cmd, true, 1, -1);
		return;
	case DISK_IO_ERROR:
		if (c->result.os_errno == ENOSPC) {
			/* INSUFFICIENT REGISTRATION RESOURCES */
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x55, 0x04);
			return;
		}
		break;
	default:
		break;
	}
	c->result.status = st;
	scsi_cmd_disk_status(cmd, &c->result, 0);
}

/* After the state was read back: unit attentions, APTPL, completion. */
static void pr_out_refreshed(struct pr_ctx *c, int st)
{
	struct scsi_pr *pr = c->pr;
	struct pr_ua *ua = NULL;
	size_t nua;

	if (c->op_status != DISK_OK) {
		if (c->had_port) {
			pthread_mutex_lock(&pr->lock);
			(void)pr_set_port(pr, &c->old_port);   /* an update: no allocation */
			pthread_mutex_unlock(&pr->lock);
		}
		pr_out_error(c, c->op_status);
		pr_finish(c);
		return;
	}
	if (st != DISK_OK) {
		log_error("scsi: LUN %u: reading the reservation state back failed: %s",
			  scsi_lu_lun(pr->lu), disk_status_str(st));
		scsi_cmd_disk_status(c->cmd, &c->result, 0);
		pr_finish(c);
		return;
	}
	pthread_mutex_lock(&pr->lock);
	if (c->sa == PR_OUT_REGISTER || c->sa == PR_OUT_REGISTER_AND_IGNORE ||
	    c->sa == PR_OUT_REGISTER_AND_MOVE)
		pr->aptpl = c->aptpl;
	if (c->sa == PR_OUT_REGISTER_AND_MOVE)   /* see the notes: one step */
		pr->gen_offset = c->before.generation + pr->gen_offset + 1 - pr->st.generation;
	nua = pr_out_uas(c, &ua);
	pthread_mutex_unlock(&pr->lock);
	for (size_t i = 0; i < nua; i++)
		scsi_lu_ua_host(pr->lu, ua[i].host_id, ua[i].len, 0x2a, ua[i].ascq);
	free(ua);
	pr_persist_and_finish(c);
}

static void pr_out_done(struct pr_ctx *c, int st)
{
	c->op_status = st;
	pr_refresh(c, pr_out_refreshed);
}

/* REGISTER AND MOVE, step by step (see the notes). */
static void pr_move_step(struct pr_ctx *c, int st)
{
	struct disk_pr_args a = { .ptpl = -1 };
	uint32_t s = c->step++;

	if (st != DISK_OK) {
		log_error("scsi: LUN %u: REGISTER AND MOVE stopped at step %" PRIu32 ": %s",
			  scsi_lu_lun(c->pr->lu), s, disk_status_str(st));
		pr_out_done(c, st);
		return;
	}
	if (s == 0) {
		/* Register the destination with the new key. */
		a.has_current_key = false;
		a.new_key = c->sa_key;
		a.ptpl = c->pr->state_path ? c->aptpl : -1;
		pr_submit(c, DISK_OP_PR_REGISTER, &c->dest.ini, &a, pr_move_step);
		return;
	}
	if (s == 1) {
		/* The destination preempts the source: the reservation moves
		 * with its type. */
		a.key = c->sa_key;
		a.new_key = c->key;
		a.type = c->before.type;
		pr_submit(c, DISK_OP_PR_PREEMPT, &c->dest.ini, &a, pr_move_step);
		return;
	}
	if (s - 2 < c->nrestore) {
		const struct pr_reg *g = &c->restore[s - 2];

		memset(&c->step_ini, 0, sizeof(c->step_ini));
		memcpy(c->step_ini.host_id, g->host_id, g->host_id_len);
		c->step_ini.host_id_len = g->host_id_len;
		a.has_current_key = false;
		a.new_key = g->key;
		pr_submit(c, DISK_OP_PR_REGISTER, &c->step_ini, &a, pr_move_step);
		return;
	}
	pr_out_done(c, DISK_OK);
}

/* Checks a REGISTER AND MOVE against the state (SPC-4 §5.13.8) and starts
 * it. Call with @lock held; returns false when @c was answered. */
static bool pr_move_begin(struct pr_ctx *c)
{
	const struct pr_state *o = &c->before;
	const struct pr_reg *src = pr_find_reg(o, c->self.ini.host_id, c->self.ini.host_id_len);

	/* Only the holder of a reservation that has one holder moves it. */
	if (!src || src->key != c->key || o->type == DISK_PR_NONE || pr_all_regs(o->type) ||
	    !src->holder) {
		scsi_cmd_status(c->cmd, SCSI_RESERVATION_CONFLICT);
		return false;
	}
	c->restore = calloc(o->nregs + 1, sizeof(*c->restore));
	if (!c->restore || pr_set_port(c->pr, &c->dest) < 0) {
		scsi_cmd_status(c->cmd, SCSI_BUSY);
		return false;
	}
	/* PREEMPT removes every registration with the source's key but the
	 * destination's: put back those that stay. */
	for (uint32_t i = 0; i < o->nregs; i++) {
		const struct pr_reg *g = &o->regs[i];

		if (g->key != src->key ||
		    pr_same_host(g->host_id, g->host_id_len, c->dest.ini.host_id,
				 c->dest.ini.host_id_len) ||
		    (g == src && c->unreg))
			continue;
		c->restore[c->nrestore++] = *g;
	}
	return true;
}

static void pr_start(struct pr_ctx *c)
{
	struct scsi_pr *pr = c->pr;
	struct disk_pr_args a = { .ptpl = -1 };
	enum disk_op op;
	bool go = true;

	if (!c->out) {
		pr_refresh(c, pr_in_answer);
		return;
	}
	pthread_mutex_lock(&pr->lock);
	if (pr_state_copy(&c->before, &pr->st) < 0) {
		go = false;
		scsi_cmd_status(c->cmd, SCSI_BUSY);
	} else if (c->sa == PR_OUT_REGISTER_AND_MOVE) {
		go = pr_move_begin(c);
	} else if ((c->sa == PR_OUT_REGISTER || c->sa == PR_OUT_REGISTER_AND_IGNORE) &&
		   c->sa_key != 0) {
		/* Remembered before the disk says yes; put back (or dropped
		 * by the refresh) if it says no. */
		const struct pr_port *have = pr_find_port(pr, c->self.ini.host_id,
							  c->self.ini.host_id_len);

		c->had_port = have != NULL;
		if (have)
			c->old_port = *have;
		if (pr_set_port(pr, &c->self) < 0) {
			go = false;
			scsi_cmd_status(c->cmd, SCSI_BUSY);
		}
	}
	pthread_mutex_unlock(&pr->lock);
	if (!go) {
		pr_finish(c);
		return;
	}
	switch (c->sa) {
	case PR_OUT_REGISTER_AND_MOVE:
		c->step = 0;
		pr_move_step(c, DISK_OK);
		return;
	case PR_OUT_REGISTER:
	case PR_OUT_REGISTER_AND_IGNORE:
		op = DISK_OP_PR_REGISTER;
		a.has_current_key = c->sa == PR_OUT_REGISTER;
		a.key = c->key;
		a.new_key = c->sa_key;
		a.ptpl = pr->state_path ? c->aptpl : -1;
		break;
	case PR_OUT_RESERVE:
	case PR_OUT_RELEASE:
		op = c->sa == PR_OUT_RESERVE ? DISK_OP_PR_RESERVE : DISK_OP_PR_RELEASE;
		a.key = c->key;
		a.type = c->type;
		break;
	case PR_OUT_CLEAR:
		op = DISK_OP_PR_CLEAR;
		a.key = c->key;
		break;
	default:
		op = DISK_OP_PR_PREEMPT;
		a.key = c->key;
		a.new_key = c->sa_key;
		a.type = c->type;
		a.abort = c->sa == PR_OUT_PREEMPT_AND_ABORT;
		break;
	}
	pr_submit(c, op, &c->self.ini, &a, pr_out_done);
}

/* Fills c->self from the nexus. */
static void pr_self(struct pr_ctx *c)
{
	const struct scsi_initiator_id *id = scsi_nexus_id(c->cmd->nexus);

	c->self.ini = *scsi_nexus_disk_initiator(c->cmd->nexus);
	c->self.proto = id->protocol;
	/* As lu.c names the nexus: its port, or its name when it has none. */
	snprintf(c->self.port, sizeof(c->self.port), "%s", id->port[0] ? id->port : id->name);
	c->self.rel_port = PR_REL_TGT_PORT;
}

/*
 * Decodes and checks a PR OUT CDB and its parameter list (SPC-4 §6.16)
 * into @c. Returns false when the command was answered (an error).
 */
static bool pr_out_parse(struct scsi_pr *pr, struct pr_ctx *c)
{
	struct scsi_cmd *cmd = c->cmd;
	uint8_t p[PR_PARAM_LEN + PR_TID_MAX] = { 0 };
	uint8_t scope = cmd->cdb[2] >> 4;
	uint32_t plen = ds_get_be32(cmd->cdb + 5);

	c->sa = cmd->cdb[1] & 0x1f;
	if (c->sa > PR_OUT_REGISTER_AND_MOVE) {
		/* REPLACE LOST RESERVATION (RLR_C 0) and reserved codes */
		scsi_cmd_invalid_field(cmd, true, 1, 4);
		return false;
	}
	if (c->sa == PR_OUT_RESERVE || c->sa == PR_OUT_RELEASE || c->sa == PR_OUT_PREEMPT ||
	    c->sa == PR_OUT_PREEMPT_AND_ABORT) {
		if (scope != 0) {           /* only LU_SCOPE (SPC-4 §6.15.3.3) */
			scsi_cmd_invalid_field(cmd, true, 2, 7);
			return false;
		}
		c->type = pr_disk_type(cmd->cdb[2] & 0x0f);
		if (c->type == DISK_PR_NONE || !(pr->caps & pr_cap_of(c->type))) {
			scsi_cmd_invalid_field(cmd, true, 2, 3);
			return false;
		}
	}
	if (plen < PR_PARAM_LEN) {
		scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		return false;
	}
	scsi_cmd_data_out(cmd, p, MIN((size_t)plen, sizeof(p)));
	c->key = ds_get_be64(p);
	c->sa_key = ds_get_be64(p + 8);
	pr_self(c);
	if (c->sa != PR_OUT_REGISTER_AND_MOVE) {
		bool reg = c->sa == PR_OUT_REGISTER || c->sa == PR_OUT_REGISTER_AND_IGNORE;

		/* SIP_C is 0; for other service actions the bit is invalid anyway. */
		if (p[20] & PR_SPEC_I_PT) {
			scsi_cmd_invalid_field(cmd, false, 20, 3);
			return false;
		}
		if (plen != PR_PARAM_LEN) {
			scsi_cmd_sense(cmd, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0x00);
			return false;
		}
		/* APTPL and ALL_TG_PT count for the registrations only. */
		if (reg && (p[20] & PR_APTPL) && !pr->state_path) {
			scsi_cmd_invalid_field(cmd, false, 20, 0);
			return false;
		}
		c->aptpl = reg && (p[20] & PR_APTPL);
		c->all_tg_pt = reg && (p[20] & PR_ALL_TG_PT);
		c->self.all_tg_pt = c->all_tg_pt;
		return true;
	}

	/* REGISTER AND MOVE (SPC-4 §6.16.4) */
	{
		uint32_t tid_len = ds_get_be32(p + 20);
		int r;

		c->unreg = p[17] & 0x02;
		c->aptpl = p[17] & PR_APTPL;
		if (c->aptpl && !pr->state_path) {
			scsi_cmd_invalid_field(cmd, false, 17, 0);
			return false;
		}
		if (tid_len > PR_TID_MAX || plen != PR_PARAM_LEN + tid_len) {
			scsi_cmd_invalid_field(cmd, false, 20, -1);
			return false;
		}
		if (c->sa_key == 0) {
			scsi_cmd_invalid_field(cmd, false, 8, -1);
			return false;
		}
		if (ds_get_be16(p + 18) != PR_REL_TGT_PORT) {
			scsi_cmd_invalid_field(cmd, false, 18, -1);
			return false;
		}
		pthread_mutex_lock(&pr->lock);
		r = pr_resolve_tid(pr, p + PR_PARAM_LEN, tid_len, &c->dest);
		pthread_mutex_unlock(&pr->lock);
		/* A port we cannot name, or the issuing nexus itself. */
		if (r < 0 || pr_ini_eq(&c->dest.ini, &c->self.ini)) {
			scsi_cmd_invalid_field(cmd, false, PR_PARAM_LEN, -1);
			return false;
		}
		c->dest.all_tg_pt = false;
		c->dest.rel_port = PR_REL_TGT_PORT;
	}
	return true;
}

void scsi_pr_out(struct scsi_pr *pr, struct scsi_cmd *cmd)
{
	struct pr_ctx *c = pr_ctx_new(pr, cmd);

	if (!c)
		return;
	c->out = true;
	if (!pr_out_parse(pr, c)) {
		free(c);
		scsi_cmd_finish(cmd);
		return;
	}
	pr_enqueue(c);
}

/* ---- reservation conflicts of other commands (SPC-4 §5.13.1) -------------------------- */

enum pr_class {
	PR_CLASS_ALLOWED = 0,   /* allowed whatever the reservation (or checked by the disk) */
	PR_CLASS_READ,          /* reads the LU's state: refused where reads are */
	PR_CLASS_WRITE,         /* changes it: refused where writes are */
	PR_CLASS_SPC2,          /* RESERVE/RELEASE(6/10): SPC-4 §5.13.3, CRH 0 */
};

/*
 * The class of a command that does not go to the disk as data I/O, after
 * SPC-4's table of commands allowed in the presence of persistent
 * reservations and SBC-3's for block commands. Data I/O (READ, WRITE,
 * VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE, SYNCHRONIZE CACHE,
 * PRE-FETCH, GET LBA STATUS) is ALLOWED here: the disk refuses it itself.
 */
static enum pr_class pr_class_of(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case 0x16: case 0x56:   /* RESERVE(6/10) */
	case 0x17: case 0x57:   /* RELEASE(6/10) */
		return PR_CLASS_SPC2;
	case 0x15: case 0x55:   /* MODE SELECT(6/10) */
	case 0x4c:              /* LOG SELECT */
	case 0x1d:              /* SEND DIAGNOSTIC */
	case 0x3b:              /* WRITE BUFFER */
	case 0x04:              /* FORMAT UNIT */
	case 0x07:              /* REASSIGN BLOCKS */
	case 0x48:              /* SANITIZE */
	case 0x83:              /* EXTENDED COPY */
	case 0x84:              /* RECEIVE COPY RESULTS */
	case 0xb5:              /* SECURITY PROTOCOL OUT */
		return PR_CLASS_WRITE;
	case 0x1b:              /* START STOP UNIT: only START=1 with POWER CONDITION 0 is allowed */
		return (cdb[4] & 0x01) && (cdb[4] >> 4) == 0 ? PR_CLASS_ALLOWED : PR_CLASS_WRITE;
	case 0x1e:              /* PREVENT ALLOW MEDIUM REMOVAL: PREVENT != 0 */
		return (cdb[4] & 0x03) ? PR_CLASS_WRITE : PR_CLASS_ALLOWED;
	case 0x1a: case 0x5a:   /* MODE SENSE(6/10) */
	case 0x3c:              /* READ BUFFER */
	case 0x1c:              /* RECEIVE DIAGNOSTIC RESULTS */
	case 0x37: case 0xb7:   /* READ DEFECT DATA(10/12) */
	case 0x3e:              /* READ LONG(10) */
	case 0x8c:              /* READ ATTRIBUTE */
	case 0xa2:              /* SECURITY PROTOCOL IN */
		return PR_CLASS_READ;
	case 0xa3:              /* MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES / TMFs */
		return (cdb[1] & 0x1f) == 0x0c || (cdb[1] & 0x1f) == 0x0d ? PR_CLASS_READ
									    : PR_CLASS_ALLOWED;
	default:
		return PR_CLASS_ALLOWED;
	}
}

bool scsi_pr_conflicts(struct scsi_pr *pr, const struct scsi_nexus *n, const uint8_t *cdb)
{
	enum pr_class k = pr_class_of(cdb);
	const struct disk_initiator *ini;
	const struct pr_reg *g;
	bool conflict;

	if (k == PR_CLASS_ALLOWED)
		return false;
	/* Nobody registered: no reservation either. */
	if (atomic_load_explicit(&pr->nregs, memory_order_acquire) == 0)
		return false;
	if (k == PR_CLASS_SPC2)
		return true;
	if (atomic_load_explicit(&pr->rtype, memory_order_acquire) == DISK_PR_NONE)
		return false;
	ini = scsi_nexus_disk_initiator(n);
	pthread_mutex_lock(&pr->lock);
	g = pr_find_reg(&pr->st, ini->host_id, ini->host_id_len);
	conflict = !disk_pr_access_allowed(pr->st.type, g != NULL,
					   g && (g->holder || pr_all_regs(pr->st.type)),
					   k == PR_CLASS_WRITE);
	pthread_mutex_unlock(&pr->lock);
	return conflict;
}

/* ---- the PR front of a LU ----------------------------------------------------------------- */

/* Runs one PR request synchronously (scsi_pr_new). */
static int pr_sync(struct scsi_pr *pr, enum disk_op op, const struct disk_initiator *ini,
		   struct disk_pr_args *a)
{
	struct disk_io io = { .op = op, .initiator = ini };
	int st;

	io.u.pr = *a;
	st = disk_sync_io(pr->disk, &io);
	*a = io.u.pr;
	return st;
}

/* Reads the disk's state into the cache, synchronously. */
static int pr_sync_refresh(struct scsi_pr *pr, const struct disk_initiator *ini)
{
	uint32_t room = PRWRAP_MAX_REGISTRANTS;

	for (;;) {
		CLEANUP_FREE struct disk_pr_controller *ctrls = calloc(room, sizeof(*ctrls));
		struct disk_pr_report rep = { .controllers = ctrls, .max_controllers = room };
		struct disk_pr_args a = { .report = &rep };
		struct pr_state s;
		int st;

		if (!ctrls)
			return -ENOMEM;
		st = pr_sync(pr, DISK_OP_PR_REPORT, ini, &a);
		if (st != DISK_OK)
			return st == DISK_UNSUPPORTED ? 0 : -EIO;
		if (rep.nr_controllers > room) {
			room = rep.nr_controllers;
			continue;
		}
		if (pr_state_from_report(&s, &rep) < 0)
			return -ENOMEM;
		pthread_mutex_lock(&pr->lock);
		pr_install(pr, &s);
		pthread_mutex_unlock(&pr->lock);
		return 0;
	}
}

/* Replays a saved state onto the disk: each registration as its host id,
 * then the reservation as its holder. */
static int pr_replay(struct scsi_pr *pr, const struct pr_saved *sv, char *err, size_t errlen)
{
	const struct disk_initiator *holder = NULL;
	uint64_t holder_key = 0;
	struct disk_initiator ini;
	int st;

	for (uint32_t i = 0; i < sv->nregs; i++) {
		struct disk_pr_args a = { .new_key = sv->regs[i].key, .ptpl = 1 };

		ini = sv->ports[i].ini;
		st = pr_sync(pr, DISK_OP_PR_REGISTER, &ini, &a);
		if (st != DISK_OK)
			return errbuf_printf(err, errlen,
					     "persistent reservation state %s: restoring "
					     "registration %" PRIu32 " failed: %s",
					     pr->state_path, i, disk_status_str(st));
		if (sv->regs[i].holder && !holder) {
			holder = &sv->ports[i].ini;
			holder_key = sv->regs[i].key;
		}
		pthread_mutex_lock(&pr->lock);
		st = pr_set_port(pr, &sv->ports[i]);
		pthread_mutex_unlock(&pr->lock);
		if (st < 0)
			return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	}
	if (sv->type != DISK_PR_NONE) {
		struct disk_pr_args a = { .key = holder_key, .type = sv->type, .ptpl = -1 };

		assert(holder);
		if (!(pr->caps & pr_cap_of(sv->type)))
			return errbuf_printf(err, errlen,
					     "persistent reservation state %s: the disk cannot "
					     "hold a reservation of type %u", pr->state_path,
					     (unsigned)sv->type);
		ini = *holder;
		st = pr_sync(pr, DISK_OP_PR_RESERVE, &ini, &a);
		if (st != DISK_OK)
			return errbuf_printf(err, errlen,
					     "persistent reservation state %s: restoring the "
					     "reservation failed: %s", pr->state_path,
					     disk_status_str(st));
	}
	return 0;
}

/* The identity scsi_pr_new asks as: an identified caller, so a disk that
 * answers per initiator reports its identified table. Never registered. */
static const struct disk_initiator pr_probe_ini = { .host_id = "diskstack-probe", .host_id_len = 16 };

static int pr_open(struct scsi_pr *pr, char *err, size_t errlen)
{
	struct disk_pr_args a = { .ptpl = -1 };
	struct pr_saved sv;
	uint32_t saved_gen = 0;
	int st, r;

	st = pr_sync(pr, DISK_OP_PR_CAPS, &pr_probe_ini, &a);
	if (st != DISK_OK)
		return errbuf_printf(err, errlen, "the disk answers no persistent reservation "
				     "capabilities: %s", disk_status_str(st));
	pr->caps = a.caps;
	r = pr->state_path ? pr_state_load(pr->state_path, &sv, err, errlen) : 0;
	if (r < 0)
		return r;
	if (r > 0) {
		r = pr_replay(pr, &sv, err, errlen);
		saved_gen = sv.generation;
		pr_saved_free(&sv);
		if (r < 0)
			return r;
		pr->aptpl = true;
		pr->file_exists = true;
	}
	r = pr_sync_refresh(pr, &pr_probe_ini);
	if (r < 0)
		return errbuf_fail(err, errlen, r, "reading the reservation state failed");
	if (pr->aptpl)
		pr->gen_offset = saved_gen - pr->st.generation;
	return 0;
}

int scsi_pr_new(struct scsi_lu *lu, struct disk *disk, const char *state_path,
		struct scsi_pr **out, char *err, size_t errlen)
{
	struct reactor *tmp = NULL;
	struct scsi_pr *pr;
	int r;

	assert(lu && disk && out);
	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return errbuf_fail(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_init(&pr->lock, NULL);
	pr->lu = lu;
	pr->queue_tail = &pr->queue;
	atomic_init(&pr->rtype, DISK_PR_NONE);
	atomic_init(&pr->nregs, 0);
	if (state_path) {
		pr->state_path = strdup(state_path);
		if (!pr->state_path) {
			r = errbuf_fail(err, errlen, -ENOMEM, "out of memory");
			goto fail;
		}
	}
	if (disk_get_info(disk)->caps & DISK_CAP_PR) {
		pr->disk = disk_ref(disk);
	} else {
		/* Every LU answers PR: reservations of our own over this disk. */
		r = prwrap_new(disk_ref(disk), &pr->disk);
		if (r < 0) {
			disk_unref(disk);
			r = errbuf_fail(err, errlen, r, "persistent reservations: %s", strerror(-r));
			goto fail;
		}
	}
	/* The restore runs the disk's calls synchronously: on this thread's
	 * reactor, or one made for the purpose. */
	if (!reactor_current()) {
		r = reactor_new(&tmp, 0);
		if (r < 0) {
			r = errbuf_fail(err, errlen, r, "persistent reservations: no reactor: %s",
					strerror(-r));
			goto fail;
		}
	}
	r = pr_open(pr, err, errlen);
	reactor_free(tmp);
	if (r < 0)
		goto fail;
	*out = pr;
	return 0;
fail:
	scsi_pr_free(pr);
	return r;
}

void scsi_pr_free(struct scsi_pr *pr)
{
	if (!pr)
		return;
	assert(!pr->busy && !pr->queue);
	disk_unref(pr->disk);
	pr_state_clear(&pr->st);
	free(pr->ports);
	free(pr->state_path);
	pthread_mutex_destroy(&pr->lock);
	free(pr);
}

struct disk *scsi_pr_disk(const struct scsi_pr *pr)
{
	return pr->disk;
}
