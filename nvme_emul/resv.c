/* SPDX-License-Identifier: MIT */
/*
 * resv.c: Reservation Register, Report, Acquire and Release (NVM Command
 * Set spec §3.2.4-§3.2.7, the model in NVMe Base spec §8.19) over the disk's
 * persistent-reservation calls (DISK_OP_PR_* in storage/disk.h), and the
 * reservation notifications other hosts' controllers get.
 *
 * Notes on the design
 * -------------------
 * - The disk is the authority. Every request carries the controller's
 *   host identifier and controller ID (struct disk_initiator): the disk
 *   keeps one registration per host and fences the data I/O of the
 *   others itself (a namespace over a disk without DISK_CAP_PR has a
 *   prwrap of its own, core.c). A controller without a host identifier
 *   is anonymous, which prwrap answers with OpenVMM's single-registrant
 *   model.
 * - Notifications (NVMe Base spec §8.19.5, log page 80h): after a Register,
 *   Acquire or Release succeeds, the namespace's registrants are read
 *   back (DISK_OP_PR_REPORT) and compared with what the last such
 *   command left: a host other than the issuer that lost its
 *   registration gets Registration Preempted (Reservation Preempted when
 *   a Clear removed it); a registrant that stays gets Reservation
 *   Released when the issuer released a registrants-only or
 *   all-registrants reservation, and Reservation Preempted when a
 *   Preempt replaced the reservation. Each controller of such a host
 *   that has the namespace attached queues the page unless its feature
 *   82h masks the type.
 *   XXX: two reservation commands on one namespace from different
 *   threads at the same moment may both diff against the same snapshot;
 *   the state stays right (the disk is the authority), a notification
 *   may be repeated or lost. Reservation changes are rare cluster events.
 * - Register with RREGA 0 sends the disk a current key of 0, so a host
 *   that is already registered gets a Reservation Conflict (NVMe Base spec
 *   §8.19.3; prwrap reads key 0 as "not registered"). CPTPL goes to the
 *   disk as disk_pr_args.ptpl. IEKEY of Acquire and Release is ignored
 *   (RESCAP bit 7: the NVMe 1.3 behaviour, where it is reserved there).
 * - Report without EDS (8-byte host identifiers) is refused with Host
 *   Identifier Inconsistent Format for a controller whose host
 *   identifier is 128-bit, as a fabrics controller's always is.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/log.h"
#include "nvme_emul/internal.h"

#define RTYPE_MAX 6

/* What the running reservation command is (cmd_state.b). */
enum { RC_REGISTER = 1, RC_ACQUIRE, RC_PREEMPT, RC_RELEASE, RC_CLEAR };

/* A report buffer: the header and room for PR_MAX_REGS registrants. */
struct report_buf {
	struct disk_pr_report rep;
	struct disk_pr_controller ctl[PR_MAX_REGS];
};

static bool same_host(const uint8_t *a, uint8_t alen, const uint8_t *b, uint8_t blen)
{
	return alen == blen && !memcmp(a, b, alen);
}

static bool all_regs(enum disk_pr_type t)
{
	return t == DISK_PR_WRITE_EXCLUSIVE_ALL_REG || t == DISK_PR_EXCLUSIVE_ACCESS_ALL_REG;
}

/* ---- notifications --------------------------------------------------------------- */

struct notice {
	uint8_t host_id[16];
	uint8_t host_id_len;
	uint8_t type;
};

/* Tells every controller of host @n that has namespace @nsid attached. */
static void notify_host(struct nvmeemu_subsys *s, const struct notice *n, uint32_t nsid)
{
	pthread_mutex_lock(&s->lock);
	for (struct nvmeemu_ctrl *c = s->ctrls; c; c = c->next)
		if (nvmeemu_ctrl_has_ns(c, nsid) &&
		    same_host(c->ini.host_id, c->ini.host_id_len, n->host_id, n->host_id_len))
			nvmeemu_ctrl_resv_notice(c, n->type, nsid);
	pthread_mutex_unlock(&s->lock);
}

/* Replaces @ns's snapshot with @rep and works out the notifications
 * (see the notes); @kind is the command, @ini its issuer. */
static void resv_diff(struct nvmeemu_ns *ns, const struct disk_pr_report *rep, unsigned kind,
		      const struct disk_initiator *ini)
{
	struct notice out[PR_MAX_REGS];
	unsigned nout = 0, n = MIN(rep->nr_controllers, rep->max_controllers);
	enum disk_pr_type old_type;
	bool holder_changed = false;

	pthread_mutex_lock(&ns->pr_lock);
	old_type = ns->rtype;
	for (unsigned i = 0; i < ns->nregs; i++) {
		const struct ns_reg *o = &ns->regs[i];
		const struct disk_pr_controller *now = NULL;

		for (unsigned j = 0; j < n && !now; j++)
			if (same_host(rep->controllers[j].host_id, rep->controllers[j].host_id_len,
				      o->host_id, o->host_id_len))
				now = &rep->controllers[j];
		if (o->holder != (now && now->holds_reservation))
			holder_changed = true;
		if (same_host(o->host_id, o->host_id_len, ini->host_id, ini->host_id_len) ||
		    !o->host_id_len)
			continue;
		memcpy(out[nout].host_id, o->host_id, 16);
		out[nout].host_id_len = o->host_id_len;
		if (!now)
			out[nout].type = kind == RC_CLEAR ? RNLPT_RES_PREEMPTED : RNLPT_REG_PREEMPTED;
		else if (kind == RC_RELEASE && old_type >= DISK_PR_WRITE_EXCLUSIVE_REG_ONLY &&
			 rep->type == DISK_PR_NONE)
			out[nout].type = RNLPT_RES_RELEASED;
		else if (kind == RC_PREEMPT && old_type != DISK_PR_NONE &&
			 (rep->type != old_type || (!all_regs(old_type) && holder_changed)))
			out[nout].type = RNLPT_RES_PREEMPTED;
		else
			continue;
		nout++;
	}
	ns->nregs = 0;
	for (unsigned j = 0; j < n && j < PR_MAX_REGS; j++) {
		struct ns_reg *r = &ns->regs[ns->nregs++];

		memcpy(r->host_id, rep->controllers[j].host_id, 16);
		r->host_id_len = rep->controllers[j].host_id_len;
		r->holder = rep->controllers[j].holds_reservation;
	}
	ns->rtype = rep->type;
	pthread_mutex_unlock(&ns->pr_lock);
	/* A preempt's holder change is only known after the whole list:
	 * re-check the still-registered hosts for it. */
	if (kind == RC_PREEMPT && holder_changed && old_type != DISK_PR_NONE) {
		for (unsigned i = 0; i < n; i++) {
			const struct disk_pr_controller *now = &rep->controllers[i];
			bool listed = false;

			if (!now->host_id_len ||
			    same_host(now->host_id, now->host_id_len, ini->host_id, ini->host_id_len))
				continue;
			for (unsigned k = 0; k < nout && !listed; k++)
				listed = same_host(out[k].host_id, out[k].host_id_len, now->host_id,
						   now->host_id_len);
			if (!listed && nout < PR_MAX_REGS) {
				memcpy(out[nout].host_id, now->host_id, 16);
				out[nout].host_id_len = now->host_id_len;
				out[nout].type = RNLPT_RES_PREEMPTED;
				nout++;
			}
		}
	}
	for (unsigned k = 0; k < nout; k++)
		notify_host(ns->s, &out[k], ns->nsid);
}

int nvmeemu_resv_init(struct nvmeemu_ns *ns)
{
	struct reactor *tmp = NULL;
	struct report_buf *rb;
	static const struct disk_initiator probe = { .host_id = { 1 }, .host_id_len = 16 };
	struct disk_io io = { .op = DISK_OP_PR_CAPS };
	int r = 0;

	if (!reactor_current()) {
		r = reactor_new(&tmp, 0);
		if (r < 0)
			return r;
	}
	if (disk_sync_io(ns->io_disk, &io) == DISK_OK)
		ns->pr_caps_anon = io.u.pr.caps;
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_PR_CAPS;
	io.initiator = &probe;
	if (disk_sync_io(ns->io_disk, &io) == DISK_OK)
		ns->pr_caps = io.u.pr.caps;
	rb = calloc(1, sizeof(*rb));
	if (!rb) {
		r = -ENOMEM;
		goto out;
	}
	rb->rep.max_controllers = PR_MAX_REGS;
	rb->rep.controllers = rb->ctl;
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_PR_REPORT;
	io.u.pr.report = &rb->rep;
	if (disk_sync_io(ns->io_disk, &io) == DISK_OK) {
		struct disk_initiator none = { .host_id_len = 0 };

		resv_diff(ns, &rb->rep, 0, &none);
	}
	free(rb);
out:
	reactor_free(tmp);
	return r;
}

/* ---- Register, Acquire, Release ------------------------------------------------------- */

static uint32_t ns_caps(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_ns *ns = cmd_state(cmd)->ns;

	return cmd->ctrl->ini.host_id_len ? ns->pr_caps : ns->pr_caps_anon;
}

static void resv_report_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;
	struct cmd_state *st = cmd_state(cmd);
	struct report_buf *rb = st->buf;

	if (io->status == DISK_OK)
		resv_diff(st->ns, &rb->rep, (unsigned)st->b, &cmd->ctrl->ini);
	/* The command itself succeeded; the read-back only feeds the
	 * notifications. */
	nvmeemu_finish(cmd, NVMEEMU_SUCCESS, 0);
}

static void resv_change_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;
	struct cmd_state *st = cmd_state(cmd);
	struct report_buf *rb;

	if (io->status != DISK_OK) {
		nvmeemu_finish_disk(cmd, io);
		return;
	}
	rb = nvmeemu_cmd_buf(cmd, sizeof(*rb), true);
	if (!rb) {
		nvmeemu_finish(cmd, NVMEEMU_SUCCESS, 0);
		return;
	}
	rb->rep.max_controllers = PR_MAX_REGS;
	rb->rep.controllers = rb->ctl;
	io = nvmeemu_cmd_io(cmd, resv_report_done);
	io->op = DISK_OP_PR_REPORT;
	io->u.pr.report = &rb->rep;
	disk_submit(st->ns->io_disk, io);
}

/* Sends @op with @a to the namespace's disk for the command @kind. */
static void resv_send(struct nvmeemu_cmd *cmd, enum disk_op op, const struct disk_pr_args *a,
		      unsigned kind)
{
	struct cmd_state *st = cmd_state(cmd);
	struct disk_io *io = nvmeemu_cmd_io(cmd, resv_change_done);

	if (!io) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	st->b = kind;
	io->op = op;
	io->u.pr = *a;
	disk_submit(st->ns->io_disk, io);
}

/* Copies the command's data (the reservation keys) into @data; finishes
 * @cmd with the transfer's status and returns false when it fails. */
static bool resv_get_data(struct nvmeemu_cmd *cmd, uint8_t *data, size_t len)
{
	uint16_t status = nvmeemu_get(cmd, 0, data, len);

	if (status) {
		nvmeemu_finish(cmd, status, 0);
		return false;
	}
	return true;
}

void nvmeemu_resv_register(struct nvmeemu_cmd *cmd)
{
	uint32_t cdw10 = cmd_dw(cmd, 10), rrega = cdw10 & 7, cptpl = cdw10 >> 30;
	bool iekey = cdw10 & (1u << 3);
	struct disk_pr_args a = { 0 };
	uint8_t data[16];

	if (rrega > 2 || cptpl == 1 ||
	    (cptpl == 3 && !(ns_caps(cmd) & DISK_PR_CAP_PTPL))) {
		nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
		return;
	}
	if (!resv_get_data(cmd, data, sizeof(data)))
		return;
	a.ptpl = cptpl == 0 ? -1 : cptpl == 2 ? 0 : 1;
	a.has_current_key = rrega == 0 || !iekey;
	a.key = rrega == 0 ? 0 : ds_get_le64(data);
	a.new_key = rrega == 1 ? 0 : ds_get_le64(data + 8);
	resv_send(cmd, DISK_OP_PR_REGISTER, &a, RC_REGISTER);
}

void nvmeemu_resv_acquire(struct nvmeemu_cmd *cmd)
{
	uint32_t cdw10 = cmd_dw(cmd, 10), racqa = cdw10 & 7, rtype = (cdw10 >> 8) & 0xff;
	struct disk_pr_args a = { 0 };
	uint8_t data[16];

	if (racqa > 2 || rtype == 0 || rtype > RTYPE_MAX) {
		nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
		return;
	}
	if (!resv_get_data(cmd, data, sizeof(data)))
		return;
	a.type = (enum disk_pr_type)rtype;
	a.key = ds_get_le64(data);
	if (racqa == 0) {
		resv_send(cmd, DISK_OP_PR_RESERVE, &a, RC_ACQUIRE);
		return;
	}
	a.new_key = ds_get_le64(data + 8);
	a.abort = racqa == 2;
	resv_send(cmd, DISK_OP_PR_PREEMPT, &a, RC_PREEMPT);
}

void nvmeemu_resv_release(struct nvmeemu_cmd *cmd)
{
	uint32_t cdw10 = cmd_dw(cmd, 10), rrela = cdw10 & 7, rtype = (cdw10 >> 8) & 0xff;
	struct disk_pr_args a = { 0 };
	uint8_t data[8];

	if (rrela > 1 || (rrela == 0 && (rtype == 0 || rtype > RTYPE_MAX))) {
		nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
		return;
	}
	if (!resv_get_data(cmd, data, sizeof(data)))
		return;
	a.key = ds_get_le64(data);
	a.type = (enum disk_pr_type)rtype;
	if (rrela == 0)
		resv_send(cmd, DISK_OP_PR_RELEASE, &a, RC_RELEASE);
	else
		resv_send(cmd, DISK_OP_PR_CLEAR, &a, RC_CLEAR);
}

/* ---- Report ------------------------------------------------------------------------------- */

#define REPORT_HDR 24
#define REPORT_EXT_HDR 64
#define REPORT_ENTRY 24
#define REPORT_EXT_ENTRY 64

static void resv_report_cmd_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;
	struct cmd_state *st = cmd_state(cmd);
	struct report_buf *rb = st->buf;
	bool eds = st->b;
	size_t want = (size_t)st->a, hdr = eds ? REPORT_EXT_HDR : REPORT_HDR;
	size_t esz = eds ? REPORT_EXT_ENTRY : REPORT_ENTRY;
	uint8_t out[REPORT_EXT_HDR + PR_MAX_REGS * REPORT_EXT_ENTRY];
	unsigned n;
	size_t len;

	if (io->status != DISK_OK) {
		nvmeemu_finish_disk(cmd, io);
		return;
	}
	n = MIN(rb->rep.nr_controllers, rb->rep.max_controllers);
	memset(out, 0, sizeof(out));
	/* NVMe NVM Command Set spec §3.2.6 Figure 49/50: GEN, RTYPE, REGCTL,
	 * PTPLS; then one registrant data structure each. */
	ds_put_le32(out, rb->rep.generation);
	out[4] = (uint8_t)rb->rep.type;
	ds_put_le16(out + 5, (uint16_t)MIN(rb->rep.nr_controllers, 0xffffu));
	out[9] = rb->rep.ptpl;
	for (unsigned i = 0; i < n; i++) {
		const struct disk_pr_controller *c = &rb->ctl[i];
		uint8_t *e = out + hdr + i * esz;

		ds_put_le16(e, c->controller_id);
		e[2] = c->holds_reservation;
		if (eds) {
			ds_put_le64(e + 8, c->key);
			memcpy(e + 16, c->host_id, MIN(c->host_id_len, 16));
		} else {
			memcpy(e + 8, c->host_id, MIN(c->host_id_len, 8));
			ds_put_le64(e + 16, c->key);
		}
	}
	len = hdr + n * esz;
	nvmeemu_finish(cmd, nvmeemu_put(cmd, 0, out, MIN(len, want)), 0);
}

void nvmeemu_resv_report(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	uint64_t numd = (uint64_t)cmd_dw(cmd, 10) + 1;
	bool eds = cmd_dw(cmd, 11) & 1;
	struct report_buf *rb;
	struct disk_io *io;

	if (!eds && cmd->ctrl->ini.host_id_len == 16) {
		nvmeemu_finish(cmd, NVMEEMU_HOSTID_INCONSISTENT | NVMEEMU_DNR, 0);
		return;
	}
	rb = nvmeemu_cmd_buf(cmd, sizeof(*rb), true);
	io = nvmeemu_cmd_io(cmd, resv_report_cmd_done);
	if (!rb || !io) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	rb->rep.max_controllers = PR_MAX_REGS;
	rb->rep.controllers = rb->ctl;
	st->a = numd * 4;
	st->b = eds;
	io->op = DISK_OP_PR_REPORT;
	io->u.pr.report = &rb->rep;
	disk_submit(st->ns->io_disk, io);
}

/* ---- Reservation Persistence (Get Features 83h) ---------------------------------------- */

static void ptpl_done(struct disk_io *io)
{
	struct nvmeemu_cmd *cmd = io->opaque;
	struct report_buf *rb = cmd_state(cmd)->buf;

	if (io->status != DISK_OK)
		nvmeemu_finish_disk(cmd, io);
	else
		nvmeemu_finish(cmd, NVMEEMU_SUCCESS, rb->rep.ptpl ? 1 : 0);
}

void nvmeemu_resv_get_ptpl(struct nvmeemu_cmd *cmd)
{
	struct cmd_state *st = cmd_state(cmd);
	struct report_buf *rb = nvmeemu_cmd_buf(cmd, sizeof(*rb), true);
	struct disk_io *io = nvmeemu_cmd_io(cmd, ptpl_done);

	if (!rb || !io) {
		nvmeemu_finish(cmd, NVMEEMU_INTERNAL_ERROR, 0);
		return;
	}
	rb->rep.max_controllers = PR_MAX_REGS;
	rb->rep.controllers = rb->ctl;
	io->op = DISK_OP_PR_REPORT;
	io->u.pr.report = &rb->rep;
	disk_submit(st->ns->io_disk, io);
}
