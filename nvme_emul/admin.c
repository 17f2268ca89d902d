/* SPDX-License-Identifier: MIT */
/*
 * admin.c: the admin commands of the NVMe command core (NVMe Base spec §5):
 * Identify, Get Log Page, Get/Set Features, Abort, Asynchronous Event
 * Request, Keep Alive and Namespace Attachment, each a row of
 * nvmeemu_admin_ops[].
 *
 * Notes on the design
 * -------------------
 * - Identify and log pages are built whole in a zeroed 4 KiB buffer from
 *   the reactor's cache and handed to put; a log page read with an
 *   offset (LPO, LPA bit 2) moves the requested slice.
 * - Features live in struct ctrl_feat under the controller's lock; SEL 1
 *   (default) and 2 (saved) both answer the defaults, since nothing is
 *   saveable (SV is Feature Identifier Not Saveable), and SEL 3 answers
 *   the capabilities from one table, which Set Features obeys too.
 * - Abort is best effort (NVMe Base spec §5.1 allows it): a held Asynchronous
 *   Event Request can be aborted; any other command is already running
 *   on the disk, which cannot be interrupted, so the answer is "not
 *   aborted" (DW0 bit 0 = 1) and the command completes normally.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "common/compiler.h"
#include "nvme_emul/internal.h"

#define PAGE 4096
#define NSID_ALL 0xffffffffu

/* Identify Controller fields we set (NVMe Base spec §5.17.2.1). */
#define ONCS_COMPARE   (1u << 0)
#define ONCS_DSM       (1u << 2)
#define ONCS_WZ        (1u << 3)
#define ONCS_SAVE_SEL  (1u << 4)
#define ONCS_RESV      (1u << 5)
#define ONCS_TIMESTAMP (1u << 6)
#define OAES_NS_ATTR   (1u << 8)
#define CTRATT_HOSTID128 (1u << 0)
#define LPA_EFFECTS    (1u << 1)
#define LPA_EXT_DATA   (1u << 2)
#define KAS_100MS      10              /* Keep Alive granularity: 1 s */
#define WCTEMP         0x0157          /* 343 K */
#define CCTEMP         0x0175          /* 373 K */
#define COMPOSITE_TEMP 293             /* what SMART reports: a fixed 20 °C */

static void finish(struct nvmeemu_cmd *cmd, uint16_t status)
{
	nvmeemu_finish(cmd, status, 0);
}

static void finish_invalid(struct nvmeemu_cmd *cmd)
{
	nvmeemu_finish(cmd, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, 0);
}

/* ---- Identify ------------------------------------------------------------------- */

static void id_ctrl(struct nvmeemu_cmd *cmd, uint8_t *p)
{
	struct nvmeemu_ctrl *c = cmd->ctrl;
	struct nvmeemu_subsys *s = c->s;
	const struct nvmeemu_subsys_opts *o = &s->o;
	bool multi = o->fabrics || o->multi_ctrl;

	ds_put_le16(p + 0, o->vid);
	ds_put_le16(p + 2, o->ssvid);
	memcpy(p + 4, s->serial, 20);
	memcpy(p + 24, s->model, 40);
	memcpy(p + 64, s->firmware, 8);
	p[72] = 0;                              /* RAB */
	p[76] = multi ? 0x02 : 0;               /* CMIC: several controllers */
	p[77] = o->mdts;
	ds_put_le16(p + 78, c->cntlid);
	ds_put_le32(p + 80, 0x00020000);        /* VER 2.0 */
	ds_put_le32(p + 92, OAES_NS_ATTR);
	ds_put_le32(p + 96, CTRATT_HOSTID128);
	p[111] = 1;                             /* CNTRLTYPE: I/O controller */
	ds_put_le16(p + 256, 0);                /* OACS */
	p[258] = NVMEEMU_MAX_AER - 1;           /* ACL */
	p[259] = NVMEEMU_MAX_AER - 1;           /* AERL */
	p[260] = 0x03;                          /* FRMW: one slot, read-only */
	p[261] = LPA_EFFECTS | LPA_EXT_DATA;
	p[262] = ERRLOG_ENTRIES - 1;            /* ELPE */
	p[263] = 0;                             /* NPSS: one power state */
	ds_put_le16(p + 266, WCTEMP);
	ds_put_le16(p + 268, CCTEMP);
	ds_put_le16(p + 320, KAS_100MS);
	p[512] = 0x66;                          /* SQES */
	p[513] = 0x44;                          /* CQES */
	ds_put_le16(p + 514, o->maxcmd);
	ds_put_le32(p + 516, NVMEEMU_MAX_NSID);
	ds_put_le16(p + 520, ONCS_COMPARE | ONCS_DSM | ONCS_WZ | ONCS_SAVE_SEL | ONCS_RESV |
			     ONCS_TIMESTAMP);
	/* VWC: present, and a flush to NSID FFFFFFFFh is not supported
	 * (10b in bits 2:1): hosts flush each namespace. */
	p[525] = nvmeemu_subsys_vwc(s) ? 0x05 : 0x04;
	ds_put_le32(p + 536, o->sgls);
	memcpy(p + 768, s->nqn, strnlen(s->nqn, sizeof(s->nqn)));
	if (o->fabrics) {
		ds_put_le32(p + 1792, o->ioccsz);
		ds_put_le32(p + 1796, o->iorcsz);
		ds_put_le16(p + 1800, 0);       /* ICDOFF */
	}
	ds_put_le16(p + 2048, 2500);            /* PSD0 MP: 25 W */
}

static void id_ns(struct nvmeemu_ns *ns, uint8_t *p, bool multi, bool anon)
{
	uint32_t caps = anon ? ns->pr_caps_anon : ns->pr_caps;
	uint64_t n = disk_sector_count(ns->disk);
	uint16_t npwg = (uint16_t)MIN(ns->phys_blocks - 1, 0xffffu);
	uint16_t npdg = (uint16_t)MIN(ns->unmap_blocks ? ns->unmap_blocks - 1 : 0, 0xffffu);

	ds_put_le64(p + 0, n);                  /* NSZE */
	ds_put_le64(p + 8, n);                  /* NCAP */
	ds_put_le64(p + 16, n);                 /* NUSE */
	p[24] = 1u << 4;                        /* NSFEAT: OPTPERF (NPWG...NOWS valid) */
	p[25] = 0;                              /* NLBAF: one format */
	p[26] = 0;                              /* FLBAS */
	p[30] = multi ? 1 : 0;                  /* NMIC: shared */
	/* RESCAP: bit 0 PTPL, bits 1-6 the six types, bit 7 IEKEY (1.3). */
	p[31] = (uint8_t)(((caps & DISK_PR_CAP_PTPL) ? 1 : 0) |
			  ((caps & DISK_PR_CAP_WE) ? 1u << 1 : 0) |
			  ((caps & DISK_PR_CAP_EA) ? 1u << 2 : 0) |
			  ((caps & DISK_PR_CAP_WE_RO) ? 1u << 3 : 0) |
			  ((caps & DISK_PR_CAP_EA_RO) ? 1u << 4 : 0) |
			  ((caps & DISK_PR_CAP_WE_AR) ? 1u << 5 : 0) |
			  ((caps & DISK_PR_CAP_EA_AR) ? 1u << 6 : 0) | 0x80);
	/* DLFEAT: deallocated blocks read as zeroes (001b), and Write Zeroes
	 * with DEAC deallocates (bit 3), when the disk's unmap reads back
	 * zeroes. */
	if (ns->unmap == DISK_UNMAP_ZEROES)
		p[33] = 0x01 | 0x08;
	ds_put_le16(p + 64, npwg);              /* NPWG */
	ds_put_le16(p + 66, npwg);              /* NPWA */
	ds_put_le16(p + 68, npdg);              /* NPDG */
	ds_put_le16(p + 70, npdg);              /* NPDA */
	ds_put_le16(p + 72, npwg);              /* NOWS */
	p[99] = ns->read_only ? 1 : 0;          /* NSATTR: write protected */
	memcpy(p + 104, ns->nguid, 16);
	memcpy(p + 120, ns->eui64, 8);
	p[128 + 2] = (uint8_t)ns->lbads;        /* LBAF0: MS 0, LBADS, RP 0 */
}

/* Namespace Identification Descriptor list (NVMe Base spec §5.17.2.3). */
static void id_ns_desc(struct nvmeemu_ns *ns, uint8_t *p)
{
	p[0] = 1;                               /* EUI64 */
	p[1] = 8;
	memcpy(p + 4, ns->eui64, 8);
	p += 12;
	p[0] = 2;                               /* NGUID */
	p[1] = 16;
	memcpy(p + 4, ns->nguid, 16);
	p += 20;
	p[0] = 3;                               /* UUID */
	p[1] = 16;
	memcpy(p + 4, ns->uuid, 16);
	p += 20;
	p[0] = 4;                               /* CSI: NVM command set */
	p[1] = 1;
}

/* I/O Command Set Independent Identify Namespace (NVMe Base spec §5.17.2.9). */
static void id_ns_indep(struct nvmeemu_ns *ns, uint8_t *p, bool multi, bool anon)
{
	uint8_t full[PAGE];

	memset(full, 0, sizeof(full));
	id_ns(ns, full, multi, anon);
	p[0] = full[24] & 0x1f;                 /* NSFEAT */
	p[1] = full[30];                        /* NMIC */
	p[2] = full[31];                        /* RESCAP */
	p[8] = full[99];                        /* NSATTR */
	p[13] = 1;                              /* NSTAT: ready */
}

/* Active NSIDs above @after, ascending, of @c (CNS 02h / 07h). */
static void id_active_list(struct nvmeemu_ctrl *c, uint32_t after, uint8_t *p)
{
	unsigned k = 0;

	for (uint32_t i = after + 1; i <= NVMEEMU_MAX_NSID && k < PAGE / 4; i++)
		if (nvmeemu_ctrl_has_ns(c, i))
			ds_put_le32(p + 4 * k++, i);
}

/* Controller lists (CNS 12h, 13h): IDs >= @from, of controllers that have
 * @nsid attached (0: all). */
static void id_ctrl_list(struct nvmeemu_subsys *s, uint32_t nsid, uint16_t from, uint8_t *p)
{
	uint16_t ids[2047];
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	for (struct nvmeemu_ctrl *c = s->ctrls; c && n < ARRAY_SIZE(ids); c = c->next)
		if (c->cntlid >= from && (!nsid || nvmeemu_ctrl_has_ns(c, nsid)))
			ids[n++] = c->cntlid;
	pthread_mutex_unlock(&s->lock);
	/* Ascending, as the lists are defined. */
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
			uint16_t t = ids[j];

			ids[j] = ids[j - 1];
			ids[j - 1] = t;
		}
	ds_put_le16(p, (uint16_t)n);
	for (unsigned i = 0; i < n; i++)
		ds_put_le16(p + 2 + 2 * i, ids[i]);
}

static void admin_identify(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_ctrl *c = cmd->ctrl;
	uint32_t cdw10 = cmd_dw(cmd, 10), nsid = cmd_dw(cmd, 1);
	uint8_t cns = cdw10 & 0xff, csi = cmd_dw(cmd, 11) >> 24;
	bool multi = c->s->o.fabrics || c->s->o.multi_ctrl;
	struct nvmeemu_ns *ns = NULL;
	uint16_t status = 0;
	uint8_t *p;

	p = nvmeemu_cmd_buf(cmd, PAGE, true);
	if (!p) {
		finish(cmd, NVMEEMU_INTERNAL_ERROR);
		return;
	}
	switch (cns) {
	case 0x00:      /* Identify Namespace: zeroes for an inactive NSID */
	case 0x05:      /* I/O Command Set specific namespace (NVM: nothing to say) */
	case 0x08:      /* I/O Command Set independent namespace */
		if (nsid == 0 || nsid > NVMEEMU_MAX_NSID) {
			status = NVMEEMU_INVALID_NS | NVMEEMU_DNR;
			break;
		}
		if (cns == 0x05 && csi != 0) {
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
			break;
		}
		ns = nvmeemu_ns_get(c->s, c, nsid);
		if (ns && cns == 0x00)
			id_ns(ns, p, multi, !c->ini.host_id_len);
		else if (ns && cns == 0x08)
			id_ns_indep(ns, p, multi, !c->ini.host_id_len);
		break;
	case 0x01:
		id_ctrl(cmd, p);
		break;
	case 0x02:
	case 0x07:
		if (nsid >= 0xfffffffeu) {
			status = NVMEEMU_INVALID_NS | NVMEEMU_DNR;
			break;
		}
		if (cns == 0x07 && csi != 0) {
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
			break;
		}
		id_active_list(c, nsid, p);
		break;
	case 0x03:
		ns = nvmeemu_ns_get(c->s, c, nsid);
		if (!ns)
			status = NVMEEMU_INVALID_NS | NVMEEMU_DNR;
		else
			id_ns_desc(ns, p);
		break;
	case 0x06:      /* I/O Command Set specific controller: NVM, no limits */
		if (csi != 0)
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		break;
	case 0x12:
		if (nsid == 0 || nsid > NVMEEMU_MAX_NSID) {
			status = NVMEEMU_INVALID_NS | NVMEEMU_DNR;
			break;
		}
		id_ctrl_list(c->s, nsid, (uint16_t)(cdw10 >> 16), p);
		break;
	case 0x13:
		id_ctrl_list(c->s, 0, (uint16_t)(cdw10 >> 16), p);
		break;
	case 0x1C:      /* I/O Command Set data structure: vector 0 = NVM */
		ds_put_le64(p, 1);
		break;
	default:
		status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		break;
	}
	nvmeemu_ns_put(ns);
	if (!status)
		status = nvmeemu_put(cmd, 0, p, PAGE);
	finish(cmd, status);
}

/* ---- Get Log Page ----------------------------------------------------------------- */

#define LID_SUPPORTED 0x00
#define LID_ERROR     0x01
#define LID_SMART     0x02
#define LID_FW_SLOT   0x03
#define LID_CHANGED   0x04
#define LID_EFFECTS   0x05
#define LID_RESV      0x80

/* A 128-bit little-endian counter from @v. */
static void put_u128(uint8_t *p, uint64_t v)
{
	ds_put_le64(p, v);
	ds_put_le64(p + 8, 0);
}

static void log_smart(struct nvmeemu_ctrl *c, uint8_t *p)
{
	uint64_t now = reactor_now_ns();
	uint64_t rb, wb, rc, wc, errors;

	nvmeemu_ctrl_io_counts(c, &rb, &wb, &rc, &wc);

	/* Data units are thousands of 512-byte units, rounded up (NVMe Base
	 * spec §5.16.1.3). */
	p[0] = 0;                               /* critical warning */
	ds_put_le16(p + 1, COMPOSITE_TEMP);
	p[3] = 100;                             /* available spare */
	p[4] = 10;                              /* available spare threshold */
	p[5] = 0;                               /* percentage used */
	put_u128(p + 32, DIV_ROUND_UP(rb / 512, 1000));
	put_u128(p + 48, DIV_ROUND_UP(wb / 512, 1000));
	put_u128(p + 64, rc);
	put_u128(p + 80, wc);
	put_u128(p + 112, 1);                   /* power cycles */
	put_u128(p + 128, (now - c->created_ns) / 3600000000000ull);
	put_u128(p + 160, atomic_load(&c->media_errors));
	pthread_mutex_lock(&c->lock);
	errors = c->err_count;
	pthread_mutex_unlock(&c->lock);
	put_u128(p + 176, errors);
}

static void log_effects(struct nvmeemu_ctrl *c, uint8_t *p)
{
	static const uint8_t queue_ops[] = { 0x00, 0x01, 0x04, 0x05 };

	for (const struct nvmeemu_op *op = nvmeemu_admin_ops; op->run; op++)
		ds_put_le32(p + 4 * op->opc, FX_CSUPP | op->effects);
	if (c->s->o.queue_admin)
		for (unsigned i = 0; i < ARRAY_SIZE(queue_ops); i++)
			ds_put_le32(p + 4 * queue_ops[i], FX_CSUPP);
	for (const struct nvmeemu_op *op = nvmeemu_io_ops; op->run; op++)
		ds_put_le32(p + 1024 + 4 * op->opc, FX_CSUPP | op->effects);
}

static void log_errors(struct nvmeemu_ctrl *c, uint8_t *p)
{
	pthread_mutex_lock(&c->lock);
	/* Newest first. */
	for (unsigned i = 0; i < c->err_n; i++) {
		const struct err_entry *e =
			&c->errlog[(c->err_head + c->err_n - 1 - i) % ERRLOG_ENTRIES];
		uint8_t *q = p + 64 * i;

		ds_put_le64(q, e->count);
		ds_put_le16(q + 8, e->sqid);
		ds_put_le16(q + 10, e->cid);
		ds_put_le16(q + 12, (uint16_t)(e->status << 1));
		ds_put_le16(q + 14, 0xffff);    /* parameter error location: not given */
		ds_put_le64(q + 16, e->lba);
		ds_put_le32(q + 24, e->nsid);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Changed Namespace List (NVMe Base spec §5.16.1.5): read clears it; RAE = 0
 * re-arms the namespace notice. */
static void log_changed(struct nvmeemu_ctrl *c, uint8_t *p, bool rae)
{
	unsigned k = 0;

	pthread_mutex_lock(&c->lock);
	if (c->nchanged > PAGE / 4) {
		ds_put_le32(p, 0xffffffffu);
	} else {
		for (uint32_t i = 1; i <= NVMEEMU_MAX_NSID; i++)
			if (c->changed[i / 64] & (1ull << (i % 64)))
				ds_put_le32(p + 4 * k++, i);
	}
	memset(c->changed, 0, sizeof(c->changed));
	c->nchanged = 0;
	if (!rae) {
		c->ns_notice_out = false;
		nvmeemu_events_fire_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Reservation Notification log (NVMe Base spec §5.16.1.22): the oldest
 * unread page, or an empty one. */
static void log_resv(struct nvmeemu_ctrl *c, uint8_t *p, bool rae)
{
	pthread_mutex_lock(&c->lock);
	if (c->rlog_n) {
		const struct resv_entry *e = &c->rlog[c->rlog_head];

		ds_put_le64(p, e->count);
		p[8] = e->type;
		p[9] = (uint8_t)MIN(c->rlog_n - 1, 255u);
		ds_put_le32(p + 12, e->nsid);
		c->rlog_head = (c->rlog_head + 1) % RESVLOG_ENTRIES;
		c->rlog_n--;
	}
	if (!rae) {
		c->resv_notice_out = false;
		nvmeemu_events_fire_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
}

static void admin_get_log(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_ctrl *c = cmd->ctrl;
	uint32_t cdw10 = cmd_dw(cmd, 10), nsid = cmd_dw(cmd, 1);
	uint8_t lid = cdw10 & 0xff;
	bool rae = cdw10 & (1u << 15);
	uint64_t numd = ((uint64_t)(cmd_dw(cmd, 11) & 0xffff) << 16 | (cdw10 >> 16)) + 1;
	uint64_t len = numd * 4, lpo = ds_get_le64(cmd->sqe + 48);
	size_t size;
	uint8_t *p;

	if (lpo & 3) {
		finish_invalid(cmd);
		return;
	}
	switch (lid) {
	case LID_SUPPORTED: size = 1024; break;
	case LID_ERROR: size = 64 * ERRLOG_ENTRIES; break;
	case LID_SMART: size = 512; break;
	case LID_FW_SLOT: size = 512; break;
	case LID_CHANGED: size = PAGE; break;
	case LID_EFFECTS: size = PAGE; break;
	case LID_RESV: size = 64; break;
	default:
		finish(cmd, NVMEEMU_INVALID_LOG_PAGE | NVMEEMU_DNR);
		return;
	}
	/* The controller-wide SMART log only (LPA bit 0 clear). */
	if (lid == LID_SMART && nsid != 0 && nsid != NSID_ALL) {
		finish_invalid(cmd);
		return;
	}
	if (lpo >= size) {
		finish_invalid(cmd);
		return;
	}
	p = nvmeemu_cmd_buf(cmd, PAGE, true);
	if (!p) {
		finish(cmd, NVMEEMU_INTERNAL_ERROR);
		return;
	}
	switch (lid) {
	case LID_SUPPORTED:
		for (unsigned l = 0; l <= LID_EFFECTS; l++)
			ds_put_le32(p + 4 * l, 1);      /* LSUPP */
		ds_put_le32(p + 4 * LID_RESV, 1);
		break;
	case LID_ERROR:
		log_errors(c, p);
		break;
	case LID_SMART:
		log_smart(c, p);
		break;
	case LID_FW_SLOT:
		p[0] = 1;                               /* AFI: slot 1 active */
		memcpy(p + 8, c->s->firmware, 8);       /* FRS1 */
		break;
	case LID_CHANGED:
		log_changed(c, p, rae);
		break;
	case LID_EFFECTS:
		log_effects(c, p);
		break;
	case LID_RESV:
		log_resv(c, p, rae);
		break;
	}
	finish(cmd, nvmeemu_put(cmd, 0, p + lpo, (size_t)MIN(len, size - lpo)));
}

/* ---- features --------------------------------------------------------------------- */

enum {
	FEAT_NS      = 1u << 0,       /* namespace specific */
	FEAT_CHANGE  = 1u << 1,       /* changeable */
	FEAT_VECTORS = 1u << 2,       /* only with interrupt vectors (PCI) */
};

static const struct feat_row {
	uint8_t fid;
	uint8_t flags;
} feat_rows[] = {
	{ 0x01, FEAT_CHANGE },                  /* Arbitration */
	{ 0x02, FEAT_CHANGE },                  /* Power Management */
	{ 0x04, FEAT_CHANGE },                  /* Temperature Threshold */
	{ 0x05, FEAT_CHANGE },                  /* Error Recovery */
	{ 0x06, FEAT_CHANGE },                  /* Volatile Write Cache */
	{ 0x07, FEAT_CHANGE },                  /* Number of Queues */
	{ 0x08, FEAT_CHANGE | FEAT_VECTORS },   /* Interrupt Coalescing */
	{ 0x09, FEAT_CHANGE | FEAT_VECTORS },   /* Interrupt Vector Configuration */
	{ 0x0B, FEAT_CHANGE },                  /* Asynchronous Event Configuration */
	{ 0x0E, FEAT_CHANGE },                  /* Timestamp */
	{ 0x0F, FEAT_CHANGE },                  /* Keep Alive Timer */
	{ 0x81, FEAT_CHANGE },                  /* Host Identifier */
	{ 0x82, FEAT_CHANGE | FEAT_NS },        /* Reservation Notification Mask */
	{ 0x83, FEAT_NS },                      /* Reservation Persistence (see resv.c) */
};

#define AEC_SUPPORTED 0x1ffu  /* SMART critical warnings 7:0, namespace attribute 8 */
#define RESV_MASK_BITS 0x0eu  /* REGPRE, RESREL, RESPRE */

static const struct feat_row *feat_find(const struct nvmeemu_ctrl *c, uint8_t fid)
{
	for (unsigned i = 0; i < ARRAY_SIZE(feat_rows); i++)
		if (feat_rows[i].fid == fid)
			return (feat_rows[i].flags & FEAT_VECTORS) && !c->vectors ? NULL : &feat_rows[i];
	return NULL;
}

/* The 8-byte Timestamp data structure (NVMe Base spec §5.27.1.11). */
static void timestamp_data(struct nvmeemu_ctrl *c, const struct ctrl_feat *f, uint8_t *p)
{
	uint64_t now = reactor_now_ns(), ms;

	if (f->ts_set)
		ms = f->ts_ms + (now - f->ts_set_ns) / 1000000;
	else
		ms = (now - c->created_ns) / 1000000;
	memset(p, 0, 8);
	ds_put_le64(p, ms & 0xffffffffffffull);
	p[6] = f->ts_set ? 1u << 1 : 0;         /* origin 001b: set by a host */
}

/* Value of feature @fid from @f for Get Features (c->lock held); data
 * features fill @data (*@dlen bytes). 0 or a status. */
static uint16_t feat_value(struct nvmeemu_ctrl *c, const struct ctrl_feat *f, uint8_t fid,
			   uint32_t cdw11, uint32_t nsid, uint32_t *dw0, uint8_t *data,
			   size_t *dlen)
{
	switch (fid) {
	case 0x01: *dw0 = f->arbitration; break;
	case 0x02: *dw0 = f->power; break;
	case 0x04: {
		uint32_t tmpsel = (cdw11 >> 16) & 0xf, thsel = (cdw11 >> 20) & 3;

		if (tmpsel != 0 || thsel > 1)
			return NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		*dw0 = (thsel ? f->temp_under : f->temp_over) | tmpsel << 16 | thsel << 20;
		break;
	}
	case 0x05: *dw0 = f->err_recovery; break;
	case 0x06:
		if (!nvmeemu_subsys_vwc(c->s))
			return NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		*dw0 = f->wce;
		break;
	case 0x07: *dw0 = (uint32_t)(f->ncq - 1) << 16 | (uint32_t)(f->nsq - 1); break;
	case 0x08: *dw0 = atomic_load(&c->coalescing); break;
	case 0x09: {
		uint16_t iv = cdw11 & 0xffff;

		if (iv >= c->vectors)
			return NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		*dw0 = iv | (c->no_coalesce[iv / 8] & (1u << (iv % 8)) ? 1u << 16 : 0);
		break;
	}
	case 0x0B: *dw0 = f->aec; break;
	case 0x0E:
		timestamp_data(c, f, data);
		*dlen = 8;
		break;
	case 0x0F: *dw0 = atomic_load(&c->kato_ms); break;
	case 0x81: {
		bool exhid = cdw11 & 1;

		if (c->ini.host_id_len && c->ini.host_id_len != (exhid ? 16 : 8))
			return NVMEEMU_HOSTID_INCONSISTENT | NVMEEMU_DNR;
		memcpy(data, c->ini.host_id, c->ini.host_id_len);
		*dlen = exhid ? 16 : 8;
		break;
	}
	case 0x82:
		*dw0 = c->resv_mask[nsid];
		break;
	default:
		return NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
	}
	return 0;
}

static void admin_get_features(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_ctrl *c = cmd->ctrl;
	struct cmd_state *st = cmd_state(cmd);
	uint32_t cdw10 = cmd_dw(cmd, 10), cdw11 = cmd_dw(cmd, 11), nsid = cmd_dw(cmd, 1);
	uint8_t fid = cdw10 & 0xff, sel = (cdw10 >> 8) & 7;
	const struct feat_row *row = feat_find(c, fid);
	struct ctrl_feat defaults;
	uint8_t data[16] = { 0 };
	size_t dlen = 0;
	uint32_t dw0 = 0;
	uint16_t status;

	if (!row || sel > 3) {
		finish_invalid(cmd);
		return;
	}
	if (sel == 3) {         /* supported capabilities: never saveable */
		nvmeemu_finish(cmd, NVMEEMU_SUCCESS, (row->flags & FEAT_NS ? 1u << 1 : 0) |
						      (row->flags & FEAT_CHANGE ? 1u << 2 : 0));
		return;
	}
	if (row->flags & FEAT_NS) {
		st->ns = nvmeemu_ns_get(c->s, c, nsid);
		if (!st->ns) {
			finish(cmd, NVMEEMU_INVALID_NS | NVMEEMU_DNR);
			return;
		}
		if (fid == 0x83) {
			nvmeemu_resv_get_ptpl(cmd);
			return;
		}
	}
	pthread_mutex_lock(&c->lock);
	if (sel == 0) {
		status = feat_value(c, &c->feat, fid, cdw11, nsid, &dw0, data, &dlen);
	} else {
		nvmeemu_feat_defaults(c, &defaults);
		status = fid == 0x82 ? 0 : feat_value(c, &defaults, fid, cdw11, nsid, &dw0, data, &dlen);
	}
	pthread_mutex_unlock(&c->lock);
	if (!status && dlen)
		status = nvmeemu_put(cmd, 0, data, dlen);
	nvmeemu_finish(cmd, status, status ? 0 : dw0);
}

static void admin_set_features(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_ctrl *c = cmd->ctrl;
	uint32_t cdw10 = cmd_dw(cmd, 10), cdw11 = cmd_dw(cmd, 11), nsid = cmd_dw(cmd, 1);
	uint8_t fid = cdw10 & 0xff;
	const struct feat_row *row = feat_find(c, fid);
	struct ctrl_feat *f = &c->feat;
	uint8_t data[16] = { 0 };
	uint32_t dw0 = 0;
	uint16_t status = 0;

	if (!row) {
		finish_invalid(cmd);
		return;
	}
	if (cdw10 & (1u << 31)) {
		finish(cmd, NVMEEMU_FEAT_NOT_SAVEABLE | NVMEEMU_DNR);
		return;
	}
	if (!(row->flags & FEAT_CHANGE)) {
		/* 83h: PTPL changes through Reservation Register's CPTPL. */
		finish(cmd, NVMEEMU_FEAT_NOT_CHANGEABLE | NVMEEMU_DNR);
		return;
	}
	if (!(row->flags & FEAT_NS) && nsid != 0 && nsid != NSID_ALL) {
		finish(cmd, NVMEEMU_FEAT_NOT_NS_SPECIFIC | NVMEEMU_DNR);
		return;
	}
	if ((row->flags & FEAT_NS) && nsid != NSID_ALL && !nvmeemu_ctrl_has_ns(c, nsid)) {
		finish(cmd, NVMEEMU_INVALID_NS | NVMEEMU_DNR);
		return;
	}
	/* Features with data: fetch it before taking the lock. */
	if (fid == 0x0E)
		status = nvmeemu_get(cmd, 0, data, 8);
	else if (fid == 0x81)
		status = nvmeemu_get(cmd, 0, data, cdw11 & 1 ? 16 : 8);
	if (status) {
		finish(cmd, status);
		return;
	}
	pthread_mutex_lock(&c->lock);
	switch (fid) {
	case 0x01:
		f->arbitration = cdw11;
		break;
	case 0x02:
		/* One power state (NPSS 0). */
		if (cdw11 & 0x1f)
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		else
			f->power = cdw11 & 0xff;
		break;
	case 0x04: {
		uint32_t tmpsel = (cdw11 >> 16) & 0xf, thsel = (cdw11 >> 20) & 3;

		if ((tmpsel != 0 && tmpsel != 0xf) || thsel > 1)
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		else if (thsel)
			f->temp_under = cdw11 & 0xffff;
		else
			f->temp_over = cdw11 & 0xffff;
		break;
	}
	case 0x05:
		/* DULBE needs deallocated-block errors (NSFEAT bit 2): none. */
		if (cdw11 & (1u << 16))
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		else
			f->err_recovery = cdw11 & 0xffff;
		break;
	case 0x06:
		if (!nvmeemu_subsys_vwc(c->s)) {
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		} else {
			f->wce = cdw11 & 1;
			atomic_store(&c->wce, f->wce);
		}
		break;
	case 0x07: {
		uint32_t nsqr = cdw11 & 0xffff, ncqr = cdw11 >> 16;

		/* NVMe Base spec §5.27.1.5: only before I/O queues exist. */
		if (atomic_load(&c->io_queues)) {
			status = NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR;
		} else if (nsqr == 0xffff || ncqr == 0xffff) {
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		} else {
			f->nsq = (uint16_t)MIN(nsqr + 1, (uint32_t)c->max_io_queues);
			f->ncq = (uint16_t)MIN(ncqr + 1, (uint32_t)c->max_io_queues);
			dw0 = (uint32_t)(f->ncq - 1) << 16 | (uint32_t)(f->nsq - 1);
		}
		break;
	}
	case 0x08:
		atomic_store(&c->coalescing, cdw11 & 0xffff);
		break;
	case 0x09: {
		uint16_t iv = cdw11 & 0xffff;

		if (iv >= c->vectors)
			status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		else if (cdw11 & (1u << 16))
			c->no_coalesce[iv / 8] |= (uint8_t)(1u << (iv % 8));
		else
			c->no_coalesce[iv / 8] &= (uint8_t)~(1u << (iv % 8));
		break;
	}
	case 0x0B:
		f->aec = cdw11 & AEC_SUPPORTED;
		/* A notice held back by the mask goes out now (NVMe Base spec §5.2). */
		nvmeemu_events_fire_locked(c);
		break;
	case 0x0E:
		f->ts_ms = ds_get_le64(data) & 0xffffffffffffull;
		f->ts_set_ns = reactor_now_ns();
		f->ts_set = true;
		break;
	case 0x0F:
		nvmeemu_ctrl_set_kato_ms(c, cdw11);
		break;
	case 0x81: {
		size_t len = cdw11 & 1 ? 16 : 8;
		static const uint8_t zero[16];

		/* Fabrics take the host identifier from Connect; elsewhere it
		 * may change only while no I/O queue (so no reservation
		 * command) exists: every request reads it without a lock. */
		if (c->s->o.fabrics || atomic_load(&c->io_queues)) {
			status = NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR;
			break;
		}
		memset(c->ini.host_id, 0, sizeof(c->ini.host_id));
		memcpy(c->ini.host_id, data, len);
		c->ini.host_id_len = memcmp(data, zero, len) ? (uint8_t)len : 0;
		break;
	}
	case 0x82:
		if (nsid == NSID_ALL) {
			for (uint32_t i = 1; i <= NVMEEMU_MAX_NSID; i++)
				c->resv_mask[i] = cdw11 & RESV_MASK_BITS;
		} else {
			c->resv_mask[nsid] = cdw11 & RESV_MASK_BITS;
		}
		break;
	default:
		status = NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	nvmeemu_finish(cmd, status, status ? 0 : dw0);
}

/* ---- Abort, AER, Keep Alive --------------------------------------------------------- */

static void admin_abort(struct nvmeemu_cmd *cmd)
{
	uint32_t cdw10 = cmd_dw(cmd, 10);
	uint16_t sqid = cdw10 & 0xffff, cid = cdw10 >> 16;
	bool aborted = sqid == 0 && nvmeemu_aer_abort(cmd->ctrl, cid);

	nvmeemu_finish(cmd, NVMEEMU_SUCCESS, aborted ? 0 : 1);
}

static void admin_aer(struct nvmeemu_cmd *cmd)
{
	if (!nvmeemu_aer_hold(cmd->ctrl, cmd))
		finish(cmd, NVMEEMU_AER_LIMIT | NVMEEMU_DNR);
}

static void admin_keep_alive(struct nvmeemu_cmd *cmd)
{
	/* The submission itself was the traffic (core.c). */
	finish(cmd, NVMEEMU_SUCCESS);
}

/* ---- Namespace Attachment ------------------------------------------------------------- */

/* NVMe Base spec §5.22: SEL 0 attaches NSID to the controllers of the list in
 * the data, SEL 1 detaches it. The list is checked whole first. */
static void admin_ns_attach(struct nvmeemu_cmd *cmd)
{
	struct nvmeemu_subsys *s = cmd->ctrl->s;
	uint32_t nsid = cmd_dw(cmd, 1), sel = cmd_dw(cmd, 10) & 0xf;
	struct nvmeemu_ctrl *targets[64];
	struct nvmeemu_ns *ns;
	uint16_t status, n;
	uint8_t *list;

	if (sel > 1 || nsid == NSID_ALL) {
		finish_invalid(cmd);
		return;
	}
	ns = nvmeemu_ns_get(s, NULL, nsid);
	if (!ns) {
		finish(cmd, NVMEEMU_INVALID_NS | NVMEEMU_DNR);
		return;
	}
	cmd_state(cmd)->ns = ns;
	list = nvmeemu_cmd_buf(cmd, PAGE, true);
	if (!list) {
		finish(cmd, NVMEEMU_INTERNAL_ERROR);
		return;
	}
	status = nvmeemu_get(cmd, 0, list, PAGE);
	if (status) {
		finish(cmd, status);
		return;
	}
	n = ds_get_le16(list);
	if (n == 0 || n > ARRAY_SIZE(targets)) {
		finish(cmd, NVMEEMU_CTRL_LIST_INVALID | NVMEEMU_DNR);
		return;
	}
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < n && !status; i++) {
		uint16_t id = ds_get_le16(list + 2 + 2 * i);
		struct nvmeemu_ctrl *c = s->ctrls;

		while (c && c->cntlid != id)
			c = c->next;
		for (unsigned j = 0; j < i && c; j++)
			if (targets[j] == c)
				c = NULL;               /* listed twice */
		if (!c)
			status = NVMEEMU_CTRL_LIST_INVALID | NVMEEMU_DNR;
		else if (sel == 0 && nvmeemu_ctrl_has_ns(c, nsid))
			status = NVMEEMU_NS_ALREADY_ATTACHED | NVMEEMU_DNR;
		else if (sel == 1 && !nvmeemu_ctrl_has_ns(c, nsid))
			status = NVMEEMU_NS_NOT_ATTACHED | NVMEEMU_DNR;
		targets[i] = c;
	}
	for (unsigned i = 0; i < n && !status; i++) {
		struct nvmeemu_ctrl *c = targets[i];

		if (sel == 0)
			atomic_fetch_or(&c->attached[nsid / 64], 1ull << (nsid % 64));
		else
			atomic_fetch_and(&c->attached[nsid / 64], ~(1ull << (nsid % 64)));
		nvmeemu_ctrl_ns_changed(c, nsid);
	}
	pthread_mutex_unlock(&s->lock);
	finish(cmd, status);
}

/* ---- the table -------------------------------------------------------------------------- */

const struct nvmeemu_op nvmeemu_admin_ops[] = {
	{ 0x02, 0, 0, admin_get_log, "Get Log Page" },
	{ 0x06, 0, 0, admin_identify, "Identify" },
	{ 0x08, 0, 0, admin_abort, "Abort" },
	{ 0x09, 0, 0, admin_set_features, "Set Features" },
	{ 0x0A, 0, 0, admin_get_features, "Get Features" },
	{ 0x0C, 0, 0, admin_aer, "Asynchronous Event Request" },
	{ 0x15, 0, FX_NIC | FX_NCC, admin_ns_attach, "Namespace Attachment" },
	{ 0x18, 0, 0, admin_keep_alive, "Keep Alive" },
	{ 0, 0, 0, NULL, NULL },
};
