/* SPDX-License-Identifier: MIT */
/*
 * pci.c: the NVMe controller as a PCI function (nvme_pci.h,
 * docs/nvme.md): config space, BAR0 registers and doorbells, MSI-X in
 * BAR4, admin and I/O queues in guest memory, PRPs and SGLs, over the
 * command core.
 *
 * Notes on the design
 * -------------------
 * - Threads. Registers, config space and the function's state machine
 *   are under p->lock, taken by the vCPU handlers and by the reset task.
 *   The MSI-X table and PBA are under p->msix_lock (vCPU writes, reactor
 *   deliveries). Doorbells are atomics: a write stores the value and
 *   posts the queue's kick task unless it is already posted.
 * - Queues. SQ/CQ structures are embedded in the function and never
 *   freed; a queue is run only by its reactor (the admin pair by
 *   reactors[0], I/O CQ n and every SQ bound to it by reactors[n % nr]),
 *   so fetching, completing and posting take no lock. Creation and
 *   deletion run as admin commands on reactors[0]: creation fills a
 *   dead queue and publishes it (live, release); deletion stops the SQ
 *   on its reactor, waits for its commands, then completes the admin
 *   command back on reactors[0].
 * - Slots. Each SQ has one command slot per entry (allocated when it is
 *   created); a fetch needs a free slot, so the host can never have more
 *   commands running than its SQ is deep. A finished command whose CQ is
 *   full keeps its slot on the CQ's overflow list until the head moves.
 * - Interrupts. Completions posted in one reactor pass raise one MSI-X
 *   message per CQ (a deferred task); with Interrupt Coalescing (08h)
 *   the message waits for THR + 1 entries or TIME x 100 us.
 * - Reset (CC.EN 1 -> 0). CSTS.RDY stays 1 while it runs: reactors[0]
 *   stops the admin SQ, resets the core (held AERs end), and every
 *   reactor stops its SQs; each SQ reports when its last command
 *   finished (completions are no longer posted: the guest gave the
 *   queues up), then reactors[0] drops the queues and clears RDY.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "common/log.h"
#include "common/reactor.h"
#include "nvme_emul/internal.h"
#include "nvme_emul/nvme_pci.h"

#define PAGE 4096u
#define MQES 255u                       /* CAP.MQES: 256 entries */
#define DB_BASE 0x1000u
#define MSIX_CAP 0x40u
#define PCIE_CAP 0x50u
#define PBA_OFF 0x800u
#define MAX_SGL_DESC 4096u              /* descriptors walked per transfer: no loops */

/* Registers (NVMe Base spec §3.1.3). */
enum { R_CAP = 0x00, R_VS = 0x08, R_INTMS = 0x0c, R_INTMC = 0x10, R_CC = 0x14,
       R_CSTS = 0x1c, R_NSSR = 0x20, R_AQA = 0x24, R_ASQ = 0x28, R_ACQ = 0x30 };
enum { CC_EN = 1u, CSTS_RDY = 1u, CSTS_CFS = 2u, CSTS_SHST_DONE = 2u << 2 };

/* Command specific statuses of queue management (NVMe Base spec §5.4–5.7). */
enum { ST_CQ_INVALID = 0x100, ST_QID_INVALID = 0x101, ST_QSIZE_INVALID = 0x102,
       ST_IV_INVALID = 0x108, ST_QDEL_INVALID = 0x10c };

enum pci_state { ST_IDLE, ST_READY, ST_RESETTING };

struct nvmeemu_pci;
struct pci_sq;

/* One command in flight (or parked on a full CQ). */
struct pq_slot {
	struct nvmeemu_cmd cmd;
	struct pci_sq *sq;
	struct pq_slot *next;             /* free list, or a CQ's overflow list */
	struct reactor_task task;         /* queue deletion: the admin command's way back */
	uint64_t xfer_len;                /* what DPTR must describe (PRP2: page or list) */
	uint16_t qdel;                    /* the queue an admin delete waits for */
};

struct pci_sq {
	struct nvmeemu_pci *p;
	_Atomic uint32_t tail_db;
	atomic_bool live, kick_posted;
	struct reactor_task kick;
	struct reactor *r;
	/* Below: the owning reactor's (the creator's before live is set). */
	uint16_t qid, cqid;
	uint32_t size, head;
	uint64_t base;
	struct pq_slot *slots, *free;
	unsigned inflight;
	bool stopping, drained, starved;
	bool reset_wait;                  /* a reset counts on this SQ draining */
	struct pq_slot *deleter;          /* the admin Delete I/O SQ waiting */
};

struct pci_cq {
	struct nvmeemu_pci *p;
	_Atomic uint32_t head_db;
	atomic_bool live, kick_posted;
	struct reactor_task kick, irq_task;
	struct reactor_timer timer;
	struct reactor *r;
	uint16_t qid, iv;
	bool ien, phase, irq_posted;
	uint32_t size, tail;
	uint64_t base;
	unsigned nsq;                     /* SQs bound (reactors[0]'s) */
	unsigned unsignalled;
	struct pq_slot *ovf, *ovf_tail;
};

struct pci_quiesce {
	struct reactor_task task;
	struct nvmeemu_pci *p;
};

struct msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct nvmeemu_pci {
	struct nvmeemu_subsys *s;
	struct nvmeemu_ctrl *c;
	struct nvmeemu_pci_host h;
	struct reactor **r;
	unsigned nr;
	uint16_t max_q, nvec;

	pthread_mutex_t lock;             /* config space, registers, state */
	uint8_t cfg[256];
	uint64_t bar_size_probe[6];
	uint32_t cc, intms, aqa;
	uint64_t asq, acq;
	bool shst_done;
	enum pci_state state;
	atomic_bool fatal;                /* CSTS.CFS */
	struct reactor_task reset_task, finish_task;
	atomic_uint drain_left;
	struct pci_quiesce *quiesce;      /* one per reactor */

	pthread_mutex_t msix_lock;
	struct msix_entry msix[NVMEEMU_PCI_MAX_VECTORS];
	uint32_t pba[NVMEEMU_PCI_MAX_VECTORS / 32];

	struct pci_sq sq[NVMEEMU_PCI_MAX_IO_QUEUES + 1];
	struct pci_cq cq[NVMEEMU_PCI_MAX_IO_QUEUES + 1];
};

static void pci_sq_kick(struct reactor_task *t);
static void pci_sq_fetch(struct pci_sq *sq);
static void pci_cq_drain(struct pci_cq *cq);
static void pci_cq_kick(struct reactor_task *t);
static void pci_cq_irq(struct reactor_task *t);
static void pci_cq_timer(struct reactor_timer *t);
static void pci_check_drain(struct pci_sq *sq);

static void pci_fatal(struct nvmeemu_pci *p, const char *why)
{
	if (!atomic_exchange(&p->fatal, true))
		log_warn("nvme pci: controller fatal status: %s", why);
}

/* ---- config space ----------------------------------------------------------- */

static void cfg_put16(struct nvmeemu_pci *p, unsigned off, uint16_t v)
{
	ds_put_le16(p->cfg + off, v);
}

static void cfg_put32(struct nvmeemu_pci *p, unsigned off, uint32_t v)
{
	ds_put_le32(p->cfg + off, v);
}

static void pci_cfg_init(struct nvmeemu_pci *p, const struct nvmeemu_pci_opts *o)
{
	memset(p->cfg, 0, sizeof(p->cfg));
	cfg_put16(p, 0x00, o->vendor_id ? o->vendor_id : 0x1414);
	cfg_put16(p, 0x02, o->device_id ? o->device_id : 0xC03E);
	cfg_put16(p, 0x06, 0x0010);                       /* status: capability list */
	cfg_put32(p, 0x08, 0x01080200);                   /* class 01h/08h/02h, revision 0 */
	cfg_put32(p, 0x10, 0x4);                          /* BAR0: memory, 64-bit */
	cfg_put32(p, 0x20, 0x4);                          /* BAR4: memory, 64-bit */
	cfg_put16(p, 0x2c, o->subsys_vendor_id);
	cfg_put16(p, 0x2e, o->subsys_id);
	p->cfg[0x34] = MSIX_CAP;
	/* MSI-X (PCI Local Bus 3.0 §6.8.2): table in BAR4 at 0, PBA at 800h. */
	p->cfg[MSIX_CAP] = 0x11;
	p->cfg[MSIX_CAP + 1] = PCIE_CAP;
	cfg_put16(p, MSIX_CAP + 2, (uint16_t)(p->nvec - 1));
	cfg_put32(p, MSIX_CAP + 4, 4);
	cfg_put32(p, MSIX_CAP + 8, PBA_OFF | 4);
	/* PCI Express capability v2, an endpoint (PCIe 4.0 §7.5.3). */
	p->cfg[PCIE_CAP] = 0x10;
	cfg_put16(p, PCIE_CAP + 2, 0x0002);
	cfg_put32(p, PCIE_CAP + 4, 0x00000001);           /* DEVCAP: MPS 256 */
	for (unsigned i = 0; i < p->nvec; i++)
		p->msix[i] = (struct msix_entry){ .ctrl = 1 };  /* masked at reset */
	memset(p->pba, 0, sizeof(p->pba));
}

static uint64_t bar_bytes(unsigned bar)
{
	return bar == 0 ? NVMEEMU_PCI_BAR0_BYTES : NVMEEMU_PCI_BAR4_BYTES;
}

uint64_t nvmeemu_pci_bar_addr(struct nvmeemu_pci *p, unsigned bar)
{
	uint64_t a = 0;

	if (bar != 0 && bar != 4)
		return 0;
	pthread_mutex_lock(&p->lock);
	a = (ds_get_le32(p->cfg + 0x10 + 4 * bar) & ~0xfull) |
	    (uint64_t)ds_get_le32(p->cfg + 0x14 + 4 * bar) << 32;
	pthread_mutex_unlock(&p->lock);
	return a;
}

static bool msix_enabled_locked(struct nvmeemu_pci *p, bool *fmask)
{
	uint16_t ctl = ds_get_le16(p->cfg + MSIX_CAP + 2);

	*fmask = ctl & 0x4000;
	return ctl & 0x8000;
}

/* Delivers pending vectors that are now unmasked (p->msix_lock held);
 * the messages are collected and sent after unlocking. */
static unsigned msix_replay_locked(struct nvmeemu_pci *p, struct msix_entry *out)
{
	bool fmask, en;
	unsigned n = 0;

	pthread_mutex_lock(&p->lock);
	en = msix_enabled_locked(p, &fmask);
	pthread_mutex_unlock(&p->lock);
	if (!en || fmask)
		return 0;
	for (unsigned v = 0; v < p->nvec; v++)
		if ((p->pba[v / 32] >> (v % 32) & 1) && !(p->msix[v].ctrl & 1)) {
			p->pba[v / 32] &= ~(1u << (v % 32));
			out[n++] = p->msix[v];
		}
	return n;
}

static void msix_replay(struct nvmeemu_pci *p)
{
	struct msix_entry out[NVMEEMU_PCI_MAX_VECTORS];
	unsigned n;

	pthread_mutex_lock(&p->msix_lock);
	n = msix_replay_locked(p, out);
	pthread_mutex_unlock(&p->msix_lock);
	for (unsigned i = 0; i < n; i++)
		p->h.msi(p->h.opaque, (uint64_t)out[i].addr_hi << 32 | out[i].addr_lo, out[i].data);
}

/* Signals vector @v, or leaves it pending in the PBA while masked. */
static void msix_fire(struct nvmeemu_pci *p, unsigned v)
{
	struct msix_entry e;
	bool fmask, en;

	if (v >= p->nvec)
		return;
	pthread_mutex_lock(&p->lock);
	en = msix_enabled_locked(p, &fmask);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_lock(&p->msix_lock);
	if (!en || fmask || (p->msix[v].ctrl & 1)) {
		p->pba[v / 32] |= 1u << (v % 32);
		pthread_mutex_unlock(&p->msix_lock);
		return;
	}
	e = p->msix[v];
	pthread_mutex_unlock(&p->msix_lock);
	p->h.msi(p->h.opaque, (uint64_t)e.addr_hi << 32 | e.addr_lo, e.data);
}

static bool access_ok(unsigned off, unsigned len, unsigned limit)
{
	return (len == 1 || len == 2 || len == 4) && off % len == 0 && off + len <= limit;
}

int nvmeemu_pci_cfg_read(struct nvmeemu_pci *p, unsigned off, unsigned len, uint32_t *val)
{
	uint32_t v = 0;

	if (!access_ok(off, len, sizeof(p->cfg)))
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < len; i++)
		v |= (uint32_t)p->cfg[off + i] << (8 * i);
	pthread_mutex_unlock(&p->lock);
	*val = v;
	return 0;
}

/* One byte of a config write: only the writable bits change. */
static void cfg_write_byte(struct nvmeemu_pci *p, unsigned off, uint8_t b)
{
	uint8_t mask = 0;

	if (off == 0x04)
		mask = 0x46;                              /* memory space, bus master, parity */
	else if (off == 0x05)
		mask = 0x05;                              /* SERR, INTx disable */
	else if (off >= 0x10 && off < 0x28) {
		unsigned bar = (off - 0x10) / 4;
		uint64_t sz = bar == 0 || bar == 4 ? bar_bytes(bar) : 0;
		uint64_t m = ~(sz - 1);                   /* address bits that stick */
		unsigned shift;

		if (bar != 0 && bar != 1 && bar != 4 && bar != 5)
			return;
		if (!sz)
			sz = bar_bytes(bar - 1), m = ~(sz - 1);
		shift = 8 * ((off - 0x10) % 8);
		mask = (uint8_t)(m >> shift);
		if ((off - 0x10) % 8 == 0)
			mask &= 0xf0;                     /* type bits are fixed */
	} else if (off == 0x3c)
		mask = 0xff;                              /* interrupt line */
	else if (off == MSIX_CAP + 3)
		mask = 0xc0;                              /* MSI-X enable, function mask */
	else if (off >= PCIE_CAP + 8 && off < PCIE_CAP + 10)
		mask = 0xff;                              /* device control */
	p->cfg[off] = (uint8_t)((p->cfg[off] & ~mask) | (b & mask));
}

int nvmeemu_pci_cfg_write(struct nvmeemu_pci *p, unsigned off, unsigned len, uint32_t val)
{
	if (!access_ok(off, len, sizeof(p->cfg)))
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < len; i++)
		cfg_write_byte(p, off + i, (uint8_t)(val >> (8 * i)));
	pthread_mutex_unlock(&p->lock);
	if (off <= MSIX_CAP + 3 && off + len > MSIX_CAP + 2)
		msix_replay(p);
	return 0;
}

/* ---- guest memory: PRPs and SGLs ------------------------------------------------- */

static uint64_t pci_xfer_len(struct nvmeemu_pci *p, struct nvmeemu_cmd *cmd);

typedef int (*seg_fn)(struct nvmeemu_pci *p, uint64_t gpa, size_t boff, size_t n, void *ctx);

static int rd64(struct nvmeemu_pci *p, uint64_t gpa, uint64_t *v)
{
	uint8_t b[8];
	int r = p->h.mem_read(p->h.opaque, gpa, b, 8);

	if (r < 0)
		return -EFAULT;
	*v = ds_get_le64(b);
	return 0;
}

/*
 * Calls @fn for each guest-contiguous piece of bytes [off, off + len) of
 * the PRP-described buffer (NVMe Base spec §4.1.1): PRP1 with its offset,
 * then PRP2 as the second page, or as a list when the transfer spans
 * more than two pages, whose last entry chains to the next list page
 * when more entries follow.
 */
static int prp_walk(struct pq_slot *sl, uint64_t off, size_t len, seg_fn fn, void *ctx)
{
	struct nvmeemu_pci *p = sl->sq->p;
	uint64_t prp1 = ds_get_le64(sl->cmd.sqe + 24), prp2 = ds_get_le64(sl->cmd.sqe + 32);
	uint64_t first = PAGE - (prp1 & (PAGE - 1)), total, end;
	size_t boff = 0;
	int r;

	if (prp1 & 3)
		return -EINVAL;
	if (__builtin_add_overflow(off, len, &end))
		return -EMSGSIZE;
	/* Within PRP1's page the length does not matter: most 4 KiB
	 * commands never look the namespace up. */
	if (end > first && !sl->xfer_len)
		sl->xfer_len = pci_xfer_len(p, &sl->cmd);
	total = end > first ? sl->xfer_len : first;
	if (end > total)
		return -EMSGSIZE;
	if (off < first) {
		size_t n = (size_t)(first - off < len ? first - off : len);

		r = fn(p, prp1 + off, 0, n, ctx);
		if (r < 0)
			return r;
		boff = n, off += n, len -= n;
	}
	if (!len)
		return 0;
	uint64_t k = (off - first) / PAGE;                /* page index past PRP1 */
	uint64_t npages = (total - first + PAGE - 1) / PAGE;
	uint64_t list = prp2, cap;

	if (npages == 1) {
		if (prp2 & (PAGE - 1))
			return -EINVAL;
	} else if (prp2 & 7) {
		return -EINVAL;
	}
	cap = (PAGE - (list & (PAGE - 1))) / 8;           /* entries in this list page */
	uint64_t base_idx = 0;                            /* data index of the list page's entry 0 */
	while (len) {
		uint64_t page;
		uint64_t in = (off - first) % PAGE;
		size_t n = (size_t)(PAGE - in < len ? PAGE - in : len);

		if (npages == 1) {
			page = prp2;
		} else {
			/* Follow the chain to the list page holding data index k. */
			while (npages - base_idx > cap && k >= base_idx + cap - 1) {
				r = rd64(p, list + 8 * (cap - 1), &list);
				if (r < 0)
					return r;
				if (list & 7)
					return -EINVAL;
				base_idx += cap - 1;
				cap = (PAGE - (list & (PAGE - 1))) / 8;
			}
			r = rd64(p, list + 8 * (k - base_idx), &page);
			if (r < 0)
				return r;
			if (page & (PAGE - 1))
				return -EINVAL;
		}
		r = fn(p, page + in, boff, n, ctx);
		if (r < 0)
			return r;
		boff += n, off += n, len -= n, k++;
	}
	return 0;
}

/* SGL descriptor types (NVMe Base spec §4.1.2). */
enum { SGL_DATA = 0, SGL_SEGMENT = 2, SGL_LAST = 3 };

/*
 * The same over an SGL: data block descriptors in DPTR, or segment and
 * last segment descriptors chaining arrays of them. Walked from the
 * start on each call (commands here have few descriptors).
 */
static int sgl_walk(struct pq_slot *sl, uint64_t off, size_t len, seg_fn fn, void *ctx)
{
	struct nvmeemu_pci *p = sl->sq->p;
	uint8_t d[16];
	uint64_t pos = 0, seg = 0, end;
	uint32_t seg_n = 0, seg_i = 0;
	size_t boff = 0;
	bool last = false;
	int r;

	if (__builtin_add_overflow(off, len, &end))
		return -EMSGSIZE;
	memcpy(d, sl->cmd.sqe + 24, 16);
	for (unsigned walked = 0; len; walked++) {
		uint64_t addr = ds_get_le64(d);
		uint32_t dlen = ds_get_le32(d + 8);
		uint8_t type = d[15] >> 4;

		if (walked > MAX_SGL_DESC || (d[15] & 0xf))
			return -EINVAL;
		if (type == SGL_DATA) {
			if (off < pos + dlen) {
				uint64_t in = off - pos;
				size_t n = (size_t)(dlen - in < len ? dlen - in : len);

				r = fn(p, addr + in, boff, n, ctx);
				if (r < 0)
					return r;
				boff += n, off += n, len -= n;
			}
			pos += dlen;
		} else if (type == SGL_SEGMENT || type == SGL_LAST) {
			if (last || dlen % 16 || !dlen)
				return -EINVAL;
			/* A segment descriptor is the last entry of its segment. */
			if (seg_n && seg_i != seg_n)
				return -EINVAL;
			seg = addr, seg_n = dlen / 16, seg_i = 0;
			last = type == SGL_LAST;
		} else {
			return -EINVAL;
		}
		if (!len)
			break;
		if (seg_i >= seg_n)
			return -EMSGSIZE;                 /* the host described less */
		if (p->h.mem_read(p->h.opaque, seg + 16 * seg_i, d, 16) < 0)
			return -EFAULT;
		seg_i++;
	}
	return 0;
}

static int dptr_walk(struct pq_slot *sl, uint64_t off, size_t len, seg_fn fn, void *ctx)
{
	return (sl->cmd.sqe[1] >> 6) ? sgl_walk(sl, off, len, fn, ctx) : prp_walk(sl, off, len, fn, ctx);
}

static int seg_read(struct nvmeemu_pci *p, uint64_t gpa, size_t boff, size_t n, void *ctx)
{
	return p->h.mem_read(p->h.opaque, gpa, (uint8_t *)ctx + boff, n) < 0 ? -EFAULT : 0;
}

static int seg_write(struct nvmeemu_pci *p, uint64_t gpa, size_t boff, size_t n, void *ctx)
{
	return p->h.mem_write(p->h.opaque, gpa, (const uint8_t *)ctx + boff, n) < 0 ? -EFAULT : 0;
}

struct map_ctx {
	struct iovec *iov;
	int n, max;
};

static int seg_map(struct nvmeemu_pci *p, uint64_t gpa, size_t boff, size_t n, void *ctx)
{
	struct map_ctx *m = ctx;
	void *ptr;

	(void)boff;
	ptr = p->h.mem_map(p->h.opaque, gpa, n);
	if (!ptr)
		return -EOPNOTSUPP;
	if (m->n && (uint8_t *)m->iov[m->n - 1].iov_base + m->iov[m->n - 1].iov_len == ptr) {
		m->iov[m->n - 1].iov_len += n;
		return 0;
	}
	if (m->n == m->max)
		return -E2BIG;
	m->iov[m->n++] = (struct iovec){ .iov_base = ptr, .iov_len = n };
	return 0;
}

static int pci_data_get(struct nvmeemu_cmd *cmd, uint64_t off, void *buf, size_t len)
{
	return dptr_walk(cmd->opaque, off, len, seg_read, buf);
}

static int pci_data_put(struct nvmeemu_cmd *cmd, uint64_t off, const void *buf, size_t len)
{
	return dptr_walk(cmd->opaque, off, len, seg_write, (void *)buf);
}

static int pci_data_map(struct nvmeemu_cmd *cmd, uint64_t off, size_t len, struct iovec *iov,
			int max)
{
	struct map_ctx m = { .iov = iov, .max = max };
	int r = dptr_walk(cmd->opaque, off, len, seg_map, &m);

	return r < 0 ? r : m.n;
}

static const struct nvmeemu_data_ops pci_data_ops = {
	.get = pci_data_get, .put = pci_data_put, .map = pci_data_map,
};
static const struct nvmeemu_data_ops pci_data_ops_nomap = {
	.get = pci_data_get, .put = pci_data_put,
};

/* How many bytes the command's DPTR describes, from its own fields: PRP2
 * is a second page or a list depending on it. Commands whose data is
 * at most 4 KiB count as 4 KiB. */
static uint64_t pci_xfer_len(struct nvmeemu_pci *p, struct nvmeemu_cmd *cmd)
{
	uint8_t opc = cmd->sqe[0];
	uint32_t d10 = cmd_dw(cmd, 10), d11 = cmd_dw(cmd, 11);

	if (cmd->qid == 0) {
		if (opc == 0x02)                          /* Get Log Page: NUMDU:NUMDL */
			return ((uint64_t)(d11 & 0xffff) << 16 | d10 >> 16) * 4 + 4;
		return PAGE;
	}
	switch (opc) {
	case 0x01: case 0x02: case 0x05: {
		struct nvmeemu_ns *ns = nvmeemu_ns_get(p->s, NULL, cmd_dw(cmd, 1));
		uint64_t n = ((uint64_t)(cmd_dw(cmd, 12) & 0xffff) + 1) * (ns ? ns->block_size : 512);

		if (ns)
			nvmeemu_ns_put(ns);
		return n;
	}
	case 0x0e:
		return ((uint64_t)d10 + 1) * 4;
	default:
		return PAGE;
	}
}

/* ---- completion ----------------------------------------------------------------------- */

static struct pq_slot *slot_get(struct pci_sq *sq)
{
	struct pq_slot *s = sq->free;

	if (s) {
		sq->free = s->next;
		sq->inflight++;
	}
	return s;
}

static void slot_put(struct pci_sq *sq, struct pq_slot *s)
{
	s->next = sq->free;
	sq->free = s;
	assert(sq->inflight);
	sq->inflight--;
	if (sq->starved && !sq->stopping) {
		sq->starved = false;
		pci_sq_fetch(sq);     /* not the kick task: it may be queued */
	}
	pci_check_drain(sq);
}

static void pci_cq_signal(struct pci_cq *cq)
{
	struct nvmeemu_pci *p = cq->p;
	uint32_t coal;

	if (!cq->ien)
		return;
	cq->unsignalled++;
	coal = cq->qid ? nvmeemu_ctrl_coalescing(p->c) : 0;  /* never the admin CQ */
	if (coal && !nvmeemu_ctrl_vector_no_coalescing(p->c, cq->iv)) {
		uint32_t thr = (coal & 0xff) + 1, time = (coal >> 8) & 0xff;

		if (cq->unsignalled < thr && time) {
			if (!cq->timer.heap_index)
				reactor_timer_start(cq->r, &cq->timer, (uint64_t)time * 100000);
			return;
		}
	}
	if (!cq->irq_posted) {
		cq->irq_posted = true;
		reactor_defer(cq->r, &cq->irq_task);
	}
}

static void pci_cq_irq(struct reactor_task *t)
{
	struct pci_cq *cq = (struct pci_cq *)((char *)t - offsetof(struct pci_cq, irq_task));

	cq->irq_posted = false;
	reactor_timer_cancel(cq->r, &cq->timer);
	if (!atomic_load(&cq->live) || !cq->unsignalled)
		return;
	cq->unsignalled = 0;
	msix_fire(cq->p, cq->iv);
}

static void pci_cq_timer(struct reactor_timer *t)
{
	struct pci_cq *cq = (struct pci_cq *)((char *)t - offsetof(struct pci_cq, timer));

	pci_cq_irq(&cq->irq_task);
}

/* Writes @s's completion entry to its CQ; false when the CQ is full. */
static bool pci_cq_post(struct pci_cq *cq, struct pq_slot *s)
{
	struct nvmeemu_pci *p = cq->p;
	uint32_t head = atomic_load(&cq->head_db);        /* seq_cst: see pci_doorbell */
	uint8_t e[16], *m;
	uint64_t a = cq->base + (uint64_t)cq->tail * 16;

	if ((cq->tail + 1 == cq->size ? 0 : cq->tail + 1) == head)
		return false;
	/* DW2 (SQID, SQ head) and DW3 (CID, status and phase) are made
	 * whole, not patched byte by byte, so copying them out reads back
	 * what was just stored at the size it was stored at. */
	memcpy(e, s->cmd.cqe, 8);
	ds_put_le32(e + 8, (uint32_t)ds_get_le16(s->cmd.cqe + 10) << 16 | (uint16_t)s->sq->head);
	ds_put_le32(e + 12, ds_get_le16(s->cmd.cqe + 12) |
		    (uint32_t)((ds_get_le16(s->cmd.cqe + 14) & ~1u) | cq->phase) << 16);
	/* The phase tag goes last, so the host never sees a half entry. In
	 * mapped guest memory the entry is written in place: one call to
	 * the host instead of two. */
	m = p->h.mem_map ? p->h.mem_map(p->h.opaque, a, 16) : NULL;
	if (m) {
		memcpy(m, e, 12);
		atomic_thread_fence(memory_order_release);
		memcpy(m + 12, e + 12, 4);
	} else if (p->h.mem_write(p->h.opaque, a, e, 12) < 0 ||
		   (atomic_thread_fence(memory_order_release),
		    p->h.mem_write(p->h.opaque, a + 12, e + 12, 4)) < 0) {
		pci_fatal(p, "completion queue not writable");
	}
	if (++cq->tail == cq->size) {
		cq->tail = 0;
		cq->phase = !cq->phase;
	}
	pci_cq_signal(cq);
	return true;
}

static void pci_complete(struct pq_slot *s)
{
	struct pci_sq *sq = s->sq;
	struct pci_cq *cq = &sq->p->cq[sq->cqid];

	if (__atomic_load_n(&sq->p->state, __ATOMIC_ACQUIRE) == ST_RESETTING ||
	    !atomic_load(&cq->live)) {
		slot_put(sq, s);                          /* the guest gave the queues up */
		return;
	}
	if (cq->ovf || !pci_cq_post(cq, s)) {
		s->next = NULL;
		if (cq->ovf_tail)
			cq->ovf_tail->next = s;
		else
			__atomic_store_n(&cq->ovf, s, __ATOMIC_SEQ_CST);
		cq->ovf_tail = s;
		/* The head may have moved before the doorbell could see the
		 * parked entry: look again (pci_doorbell's store/load pair). */
		pci_cq_drain(cq);
		return;
	}
	slot_put(sq, s);
}

static void pci_cmd_done(struct nvmeemu_cmd *cmd)
{
	pci_complete(cmd->opaque);
}

/* Ends a command the PCI side answers itself (queue management). */
static void pci_answer(struct pq_slot *s, uint16_t status)
{
	memset(s->cmd.cqe, 0, 16);
	ds_put_le16(s->cmd.cqe + 10, s->cmd.qid);
	memcpy(s->cmd.cqe + 12, s->cmd.sqe + 2, 2);
	if (status && NVMEEMU_SCT(status) == 1)
		status |= NVMEEMU_DNR;
	ds_put_le16(s->cmd.cqe + 14, (uint16_t)(status << 1));
	s->cmd.status = status;
	pci_complete(s);
}

/* ---- queues ------------------------------------------------------------------------------ */

static void pci_post_kick(struct reactor *r, atomic_bool *posted, struct reactor_task *t)
{
	if (atomic_exchange(posted, true))
		return;
	/* A VMM that runs a vCPU on the queue's own reactor thread (or the
	 * in-process guest driver) needs no wake-up. */
	if (reactor_current() == r)
		reactor_defer(r, t);
	else
		reactor_post(r, t);
}

static void pci_dispatch(struct pq_slot *s);

/* Fetches and starts what the guest queued, while slots last. */
static void pci_sq_fetch(struct pci_sq *sq)
{
	struct nvmeemu_pci *p = sq->p;

	if (!atomic_load_explicit(&sq->live, memory_order_acquire) || sq->stopping ||
	    __atomic_load_n(&p->state, __ATOMIC_ACQUIRE) == ST_RESETTING)
		return;
	for (;;) {
		uint32_t tail = atomic_load_explicit(&sq->tail_db, memory_order_acquire);
		struct pq_slot *s;

		if (atomic_load(&p->fatal) || sq->head == tail)
			return;
		s = slot_get(sq);
		if (!s) {
			sq->starved = true;
			return;
		}
		s->cmd.qid = sq->qid;
		if (p->h.mem_read(p->h.opaque, sq->base + (uint64_t)sq->head * 64, s->cmd.sqe, 64) < 0) {
			pci_fatal(p, "submission queue not readable");
			slot_put(sq, s);
			return;
		}
		sq->head = sq->head + 1 == sq->size ? 0 : sq->head + 1;  /* no division per command */
		pci_dispatch(s);
	}
}

static void pci_sq_kick(struct reactor_task *t)
{
	struct pci_sq *sq = (struct pci_sq *)((char *)t - offsetof(struct pci_sq, kick));

	atomic_store(&sq->kick_posted, false);
	pci_sq_fetch(sq);
}

static void pci_cq_drain(struct pci_cq *cq)
{
	while (cq->ovf && pci_cq_post(cq, cq->ovf)) {
		struct pq_slot *s = cq->ovf;

		cq->ovf = s->next;
		if (!cq->ovf)
			cq->ovf_tail = NULL;
		slot_put(s->sq, s);
	}
}

static void pci_cq_kick(struct reactor_task *t)
{
	struct pci_cq *cq = (struct pci_cq *)((char *)t - offsetof(struct pci_cq, kick));

	atomic_store(&cq->kick_posted, false);
	if (atomic_load_explicit(&cq->live, memory_order_acquire))
		pci_cq_drain(cq);
}

static struct reactor *pci_reactor_for(struct nvmeemu_pci *p, uint16_t cqid)
{
	return p->r[cqid % p->nr];
}

static int slots_alloc(struct pci_sq *sq, uint32_t n)
{
	sq->slots = calloc(n, sizeof(*sq->slots));
	if (!sq->slots)
		return -ENOMEM;
	sq->free = NULL;
	for (uint32_t i = n; i-- > 0;) {
		sq->slots[i].sq = sq;
		sq->slots[i].next = sq->free;
		sq->free = &sq->slots[i];
	}
	sq->inflight = 0;
	return 0;
}

static void sq_setup(struct pci_sq *sq, struct reactor *r, uint16_t qid, uint16_t cqid,
		     uint64_t base, uint32_t size)
{
	sq->r = r;
	sq->qid = qid;
	sq->cqid = cqid;
	sq->base = base;
	sq->size = size;
	sq->head = 0;
	sq->stopping = sq->drained = sq->starved = false;
	sq->deleter = NULL;
	atomic_store(&sq->tail_db, 0);
}

static void cq_setup(struct pci_cq *cq, struct reactor *r, uint16_t qid, uint64_t base,
		     uint32_t size, uint16_t iv, bool ien)
{
	cq->r = r;
	cq->qid = qid;
	cq->base = base;
	cq->size = size;
	cq->tail = 0;
	cq->phase = 1;
	cq->iv = iv;
	cq->ien = ien;
	cq->nsq = 0;
	cq->unsignalled = 0;
	cq->ovf = cq->ovf_tail = NULL;
	atomic_store(&cq->head_db, 0);
}

static unsigned pci_live_io_queues(struct nvmeemu_pci *p)
{
	unsigned n = 0;

	for (unsigned q = 1; q <= p->max_q; q++)
		n += atomic_load(&p->sq[q].live) + atomic_load(&p->cq[q].live);
	return n;
}

/* What Create I/O Completion Queue and Create I/O Submission Queue share
 * (NVMe Base spec §5.4, §5.5): CDW10 holds the queue id and the 0's based
 * size, CDW11 PC in bit 0 and, in its upper half, the interrupt vector (CQ)
 * or the completion queue id (SQ); PRP Entry 1 is the queue's base. */
struct pci_create {
	uint16_t qid, upper;
	uint32_t d11, size;
	uint64_t base;
};

static struct pci_create pci_create_decode(const struct pq_slot *s)
{
	uint32_t d10 = cmd_dw(&s->cmd, 10), d11 = cmd_dw(&s->cmd, 11);

	return (struct pci_create){ .qid = (uint16_t)d10, .upper = (uint16_t)(d11 >> 16),
				    .d11 = d11, .size = (d10 >> 16) + 1,
				    .base = ds_get_le64(s->cmd.sqe + 24) };
}

/* The size, PC and base checks of both creates, after their queue id
 * checks: the status to answer, or 0. Only physically contiguous,
 * page-aligned queues are supported. */
static uint16_t pci_create_geometry(const struct pci_create *q)
{
	if (q->size < 2 || q->size > MQES + 1)
		return ST_QSIZE_INVALID;
	if (!(q->d11 & 1) || (q->base & (PAGE - 1)))
		return NVMEEMU_INVALID_FIELD | NVMEEMU_DNR;
	return 0;
}

/* Create I/O Completion Queue (05h), NVMe Base spec §5.5. */
static void pci_create_cq(struct pq_slot *s)
{
	struct nvmeemu_pci *p = s->sq->p;
	struct pci_create q = pci_create_decode(s);
	uint16_t qid = q.qid, iv = q.upper, nsq, ncq, st;

	nvmeemu_ctrl_granted_queues(p->c, &nsq, &ncq);
	if (!qid || qid > ncq || qid > p->max_q || atomic_load(&p->cq[qid].live))
		return pci_answer(s, ST_QID_INVALID);
	if ((st = pci_create_geometry(&q)))
		return pci_answer(s, st);
	if (iv >= p->nvec)
		return pci_answer(s, ST_IV_INVALID);
	cq_setup(&p->cq[qid], pci_reactor_for(p, qid), qid, q.base, q.size, iv, q.d11 & 2);
	atomic_store_explicit(&p->cq[qid].live, true, memory_order_release);
	nvmeemu_ctrl_set_io_queues(p->c, pci_live_io_queues(p));
	pci_answer(s, 0);
}

/* Create I/O Submission Queue (01h), NVMe Base spec §5.4. */
static void pci_create_sq(struct pq_slot *s)
{
	struct nvmeemu_pci *p = s->sq->p;
	struct pci_create q = pci_create_decode(s);
	uint16_t qid = q.qid, cqid = q.upper, nsq, ncq, st;
	struct pci_sq *sq;

	nvmeemu_ctrl_granted_queues(p->c, &nsq, &ncq);
	if (!qid || qid > nsq || qid > p->max_q || atomic_load(&p->sq[qid].live))
		return pci_answer(s, ST_QID_INVALID);
	if (!cqid || cqid > p->max_q || !atomic_load(&p->cq[cqid].live))
		return pci_answer(s, ST_CQ_INVALID);
	if ((st = pci_create_geometry(&q)))
		return pci_answer(s, st);
	sq = &p->sq[qid];
	free(sq->slots);
	if (slots_alloc(sq, q.size) < 0)
		return pci_answer(s, NVMEEMU_INTERNAL_ERROR);
	sq_setup(sq, p->cq[cqid].r, qid, cqid, q.base, q.size);
	p->cq[cqid].nsq++;
	atomic_store_explicit(&sq->live, true, memory_order_release);
	nvmeemu_ctrl_set_io_queues(p->c, pci_live_io_queues(p));
	pci_answer(s, 0);
}

/* Back on reactors[0]: the queue a Delete waited for is gone. */
static void pci_delete_done(struct reactor_task *t)
{
	struct pq_slot *s = (struct pq_slot *)((char *)t - offsetof(struct pq_slot, task));
	struct nvmeemu_pci *p = s->sq->p;
	uint16_t qid = s->qdel;

	if (s->cmd.sqe[0] == 0x00) {
		p->cq[p->sq[qid].cqid].nsq--;
		atomic_store(&p->sq[qid].live, false);
	} else {
		atomic_store(&p->cq[qid].live, false);
	}
	nvmeemu_ctrl_set_io_queues(p->c, pci_live_io_queues(p));
	pci_answer(s, 0);
}

/* On the queue's reactor: stop the SQ; the Delete ends once it drained. */
static void pci_delete_sq_stop(struct reactor_task *t)
{
	struct pq_slot *s = (struct pq_slot *)((char *)t - offsetof(struct pq_slot, task));
	struct pci_sq *sq = &s->sq->p->sq[s->qdel];

	sq->stopping = true;
	sq->deleter = s;
	pci_check_drain(sq);
}

static void pci_delete_cq_stop(struct reactor_task *t)
{
	struct pq_slot *s = (struct pq_slot *)((char *)t - offsetof(struct pq_slot, task));
	struct nvmeemu_pci *p = s->sq->p;
	struct pci_cq *cq = &p->cq[s->qdel];

	reactor_timer_cancel(cq->r, &cq->timer);
	s->task.fn = pci_delete_done;
	reactor_post(p->r[0], &s->task);
}

/* Delete I/O Submission / Completion Queue (00h / 04h), NVMe Base 2.0 §5.6 / §5.7. */
static void pci_delete_q(struct pq_slot *s)
{
	struct nvmeemu_pci *p = s->sq->p;
	uint16_t qid = (uint16_t)cmd_dw(&s->cmd, 10);
	bool is_sq = s->cmd.sqe[0] == 0x00;

	if (!qid || qid > p->max_q ||
	    !atomic_load(is_sq ? &p->sq[qid].live : &p->cq[qid].live) ||
	    (is_sq && p->sq[qid].deleter))
		return pci_answer(s, ST_QID_INVALID);
	if (!is_sq && p->cq[qid].nsq)
		return pci_answer(s, ST_QDEL_INVALID);
	s->qdel = qid;
	s->task.fn = is_sq ? pci_delete_sq_stop : pci_delete_cq_stop;
	reactor_post(is_sq ? p->sq[qid].r : p->cq[qid].r, &s->task);
}

static void pci_dispatch(struct pq_slot *s)
{
	struct nvmeemu_pci *p = s->sq->p;
	struct nvmeemu_cmd *cmd = &s->cmd;
	uint8_t psdt = cmd->sqe[1] >> 6;

	cmd->ctrl = p->c;
	cmd->data = p->h.mem_map ? &pci_data_ops : &pci_data_ops_nomap;
	cmd->done = pci_cmd_done;
	cmd->opaque = s;
	/* Admin commands use PRPs (NVMe Base spec §4.1.2); SGLs need SGLS. */
	if (psdt == 3 || (psdt && (!cmd->qid || !p->s->o.sgls)))
		return pci_answer(s, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR);
	if (cmd->qid == 0) {
		switch (cmd->sqe[0]) {
		case 0x00: case 0x04:
			return pci_delete_q(s);
		case 0x01:
			return pci_create_sq(s);
		case 0x05:
			return pci_create_cq(s);
		}
	}
	s->xfer_len = 0;                                  /* worked out when PRP2 matters */
	nvmeemu_cmd_submit(cmd);
}

/* ---- reset ------------------------------------------------------------------------------ */

static void pci_drain_dec(struct nvmeemu_pci *p)
{
	if (atomic_fetch_sub(&p->drain_left, 1) == 1)
		reactor_post(p->r[0], &p->finish_task);
}

static void pci_check_drain(struct pci_sq *sq)
{
	if (!sq->stopping || sq->drained || sq->inflight)
		return;
	sq->drained = true;
	if (sq->deleter) {
		struct pq_slot *s = sq->deleter;

		sq->deleter = NULL;
		s->task.fn = pci_delete_done;
		reactor_post(sq->p->r[0], &s->task);
	}
	if (sq->reset_wait) {
		sq->reset_wait = false;
		pci_drain_dec(sq->p);
	}
}

/* On each reactor: stop its SQs and drop completions parked on full CQs.
 * The SQs still running commands join the reset's count here, on their
 * own thread, before this pass gives its own share back. */
static void pci_quiesce(struct reactor_task *t)
{
	struct nvmeemu_pci *p = ((struct pci_quiesce *)(void *)t)->p;
	struct reactor *r = reactor_current();

	for (unsigned q = 0; q <= p->max_q; q++) {
		struct pci_sq *sq = &p->sq[q];

		if (atomic_load(&sq->live) && sq->r == r && !sq->drained) {
			sq->stopping = true;
			sq->reset_wait = true;
			atomic_fetch_add(&p->drain_left, 1);
		}
	}
	for (unsigned q = 0; q <= p->max_q; q++) {
		struct pci_cq *cq = &p->cq[q];

		if (atomic_load(&cq->live) && cq->r == r) {
			reactor_timer_cancel(r, &cq->timer);
			while (cq->ovf) {
				struct pq_slot *s = cq->ovf;

				cq->ovf = s->next;
				slot_put(s->sq, s);
			}
			cq->ovf_tail = NULL;
		}
	}
	for (unsigned q = 0; q <= p->max_q; q++)
		if (p->sq[q].r == r)
			pci_check_drain(&p->sq[q]);
	pci_drain_dec(p);
}

static void pci_reset_start(struct reactor_task *t)
{
	struct nvmeemu_pci *p = (struct nvmeemu_pci *)((char *)t - offsetof(struct nvmeemu_pci, reset_task));

	/* One per reactor's quiesce pass (which adds its busy SQs) and our
	 * own bias. */
	atomic_store(&p->drain_left, p->nr + 1);
	nvmeemu_ctrl_reset(p->c);
	for (unsigned i = 0; i < p->nr; i++)
		reactor_post(p->r[i], &p->quiesce[i].task);
	pci_drain_dec(p);
}

static void pci_queues_drop(struct nvmeemu_pci *p)
{
	for (unsigned q = 0; q <= p->max_q; q++) {
		atomic_store(&p->sq[q].live, false);
		atomic_store(&p->cq[q].live, false);
		free(p->sq[q].slots);
		p->sq[q].slots = p->sq[q].free = NULL;
		p->sq[q].inflight = 0;
		p->sq[q].drained = p->sq[q].reset_wait = false;
		p->sq[q].deleter = NULL;
		p->cq[q].nsq = 0;
	}
}

static void pci_reset_finish(struct reactor_task *t)
{
	struct nvmeemu_pci *p = (struct nvmeemu_pci *)((char *)t - offsetof(struct nvmeemu_pci, finish_task));

	pci_queues_drop(p);
	nvmeemu_ctrl_set_io_queues(p->c, 0);
	pthread_mutex_lock(&p->lock);
	p->state = ST_IDLE;
	p->intms = 0;
	atomic_store(&p->fatal, false);
	pthread_mutex_unlock(&p->lock);
}

/* ---- registers --------------------------------------------------------------------------- */

static uint64_t reg_cap(void)
{
	/* MQES, CQR (bit 16), TO 30 x 500 ms (bits 31:24), DSTRD 0, CSS NVM (bit 37). */
	return MQES | 1u << 16 | 30ull << 24 | 1ull << 37;
}

/* CC.EN 0 -> 1 (p->lock held): checks CC, starts the admin queues. */
static void pci_enable_locked(struct nvmeemu_pci *p, uint32_t cc)
{
	uint32_t mps = (cc >> 7) & 0xf, css = (cc >> 4) & 7, iosqes = (cc >> 16) & 0xf,
		 iocqes = (cc >> 20) & 0xf, asqs = (p->aqa & 0xfff) + 1, acqs = ((p->aqa >> 16) & 0xfff) + 1;

	if (mps || css || (iosqes && iosqes != 6) || (iocqes && iocqes != 4) || asqs < 2 ||
	    acqs < 2 || (p->asq & (PAGE - 1)) || (p->acq & (PAGE - 1))) {
		pci_fatal(p, "invalid controller configuration");
		return;
	}
	cq_setup(&p->cq[0], p->r[0], 0, p->acq, acqs, 0, true);
	if (slots_alloc(&p->sq[0], asqs) < 0) {
		pci_fatal(p, "out of memory");
		return;
	}
	sq_setup(&p->sq[0], p->r[0], 0, 0, p->asq, asqs);
	p->cq[0].nsq = 1;
	atomic_store_explicit(&p->cq[0].live, true, memory_order_release);
	atomic_store_explicit(&p->sq[0].live, true, memory_order_release);
	p->state = ST_READY;
	p->shst_done = false;
}

static void pci_cc_write(struct nvmeemu_pci *p, uint32_t v)
{
	bool was = p->cc & CC_EN;

	p->cc = v & (CC_EN | 0xfff0u << 4 | 0xffu << 16);  /* EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES */
	if ((v >> 14) & 3)
		p->shst_done = true;                      /* nothing to write back: shutdown is at once */
	if (!was && (v & CC_EN) && p->state == ST_IDLE)
		pci_enable_locked(p, v);
	else if (was && !(v & CC_EN)) {
		if (p->state == ST_READY) {
			__atomic_store_n(&p->state, ST_RESETTING, __ATOMIC_RELEASE);
			reactor_post(p->r[0], &p->reset_task);
		}
	}
}

static uint32_t pci_csts_locked(struct nvmeemu_pci *p)
{
	uint32_t v = 0;

	if (p->state != ST_IDLE)
		v |= CSTS_RDY;
	if (atomic_load(&p->fatal))
		v |= CSTS_CFS;
	if (p->shst_done)
		v |= CSTS_SHST_DONE;
	return v;
}

static int bar0_read(struct nvmeemu_pci *p, uint64_t off, unsigned len, uint64_t *val)
{
	uint64_t v;
	unsigned base = (unsigned)off & ~7u;

	pthread_mutex_lock(&p->lock);
	switch (off) {
	case R_CAP: case R_CAP + 4: v = reg_cap(); break;
	case R_VS: v = 0x00020000; break;
	case R_INTMS: case R_INTMC: v = p->intms; break;
	case R_CC: v = p->cc; break;
	case R_CSTS: v = pci_csts_locked(p); break;
	case R_AQA: v = p->aqa; break;
	case R_ASQ: case R_ASQ + 4: v = p->asq; break;
	case R_ACQ: case R_ACQ + 4: v = p->acq; break;
	default: v = 0; break;
	}
	pthread_mutex_unlock(&p->lock);
	if (len == 4 && (base == R_CAP || base == R_ASQ || base == R_ACQ) && (off & 4))
		v >>= 32;
	*val = len == 4 ? (uint32_t)v : v;
	return 0;
}

static void pci_doorbell(struct nvmeemu_pci *p, uint64_t off, uint32_t v)
{
	uint64_t idx = (off - DB_BASE) / 4;
	uint16_t q = (uint16_t)(idx / 2);

	if (idx / 2 > p->max_q)
		return;
	if (idx % 2 == 0) {
		struct pci_sq *sq = &p->sq[q];

		if (!atomic_load_explicit(&sq->live, memory_order_acquire))
			return;
		if (v >= sq->size) {
			pci_fatal(p, "submission queue tail doorbell past the queue");
			return;
		}
		atomic_store_explicit(&sq->tail_db, v, memory_order_release);
		pci_post_kick(sq->r, &sq->kick_posted, &sq->kick);
	} else {
		struct pci_cq *cq = &p->cq[q];

		if (!atomic_load_explicit(&cq->live, memory_order_acquire))
			return;
		if (v >= cq->size) {
			pci_fatal(p, "completion queue head doorbell past the queue");
			return;
		}
		atomic_store(&cq->head_db, v);            /* seq_cst, then read ovf */
		/* Only completions parked on a full CQ wait for the head. The
		 * check races with the reactor, so post unless clearly idle. */
		if (__atomic_load_n(&cq->ovf, __ATOMIC_RELAXED))
			pci_post_kick(cq->r, &cq->kick_posted, &cq->kick);
	}
}

static int bar0_write(struct nvmeemu_pci *p, uint64_t off, unsigned len, uint64_t v)
{
	if (off >= DB_BASE) {
		if (len != 4)
			return -EINVAL;
		pci_doorbell(p, off, (uint32_t)v);
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	switch (off) {
	case R_INTMS: p->intms |= (uint32_t)v; break;
	case R_INTMC: p->intms &= ~(uint32_t)v; break;
	case R_CC: pci_cc_write(p, (uint32_t)v); break;
	case R_AQA: p->aqa = (uint32_t)v & 0x0fff0fff; break;
	case R_ASQ: case R_ACQ: case R_ASQ + 4: case R_ACQ + 4: {
		uint64_t *reg = (off & ~7u) == R_ASQ ? &p->asq : &p->acq;

		if (p->cc & CC_EN)
			break;                            /* fixed while enabled */
		if (len == 8)
			*reg = v;
		else if (off & 4)
			*reg = (*reg & 0xffffffffu) | v << 32;
		else
			*reg = (*reg & ~0xffffffffull) | (uint32_t)v;
		*reg &= ~(uint64_t)(PAGE - 1);
		break;
	}
	case R_NSSR:                                      /* NSSRS 0: no subsystem reset */
	default:
		break;
	}
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static int bar4_access(struct nvmeemu_pci *p, uint64_t off, unsigned len, uint64_t *val, bool wr)
{
	bool replay = false;

	if (len != 4)
		return -EINVAL;                           /* MSI-X table: dword accesses */
	pthread_mutex_lock(&p->msix_lock);
	if (off < (uint64_t)p->nvec * 16) {
		uint32_t *f = &p->msix[off / 16].addr_lo + (off % 16) / 4;

		if (wr) {
			bool unmask = (off % 16) == 12 && (*f & 1) && !(*val & 1);

			*f = (off % 16) == 12 ? (uint32_t)*val & 1 : (uint32_t)*val;
			replay = unmask;
		} else {
			*val = *f;
		}
	} else if (off >= PBA_OFF && off < PBA_OFF + (p->nvec + 31) / 32 * 4) {
		if (!wr)
			*val = p->pba[(off - PBA_OFF) / 4];
	} else if (!wr) {
		*val = 0;
	}
	pthread_mutex_unlock(&p->msix_lock);
	if (replay)
		msix_replay(p);
	return 0;
}

int nvmeemu_pci_mmio_read(struct nvmeemu_pci *p, unsigned bar, uint64_t off, unsigned len,
			  uint64_t *val)
{
	if ((len != 4 && len != 8) || off % len || off + len > bar_bytes(bar) || (bar != 0 && bar != 4))
		return -EINVAL;
	if (bar == 4)
		return bar4_access(p, off, len, val, false);
	if (off >= DB_BASE) {
		*val = 0;                                 /* doorbells are write-only */
		return 0;
	}
	return bar0_read(p, off, len, val);
}

int nvmeemu_pci_mmio_write(struct nvmeemu_pci *p, unsigned bar, uint64_t off, unsigned len,
			   uint64_t val)
{
	if ((len != 4 && len != 8) || off % len || off + len > bar_bytes(bar) || (bar != 0 && bar != 4))
		return -EINVAL;
	if (bar == 4)
		return bar4_access(p, off, len, &val, true);
	return bar0_write(p, off, len, val);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

void nvmeemu_pci_subsys_opts(struct nvmeemu_subsys_opts *o, uint16_t vid)
{
	o->queue_admin = true;
	o->sgls = 1;                                      /* SGLs, no alignment requirement */
	o->vid = o->ssvid = vid;
}

int nvmeemu_pci_new(struct nvmeemu_subsys *s, const struct nvmeemu_pci_host *h,
		    const struct nvmeemu_pci_opts *o, struct nvmeemu_pci **out, char *err,
		    size_t errlen)
{
	struct nvmeemu_pci *p;
	uint16_t maxq = o->max_io_queues ? o->max_io_queues : 16;
	uint16_t nvec = o->msix_vectors ? o->msix_vectors : (uint16_t)(maxq + 1);
	int r;

	if (!h->mem_read || !h->mem_write || !h->msi || !o->reactors || !o->nr_reactors) {
		snprintf(err, errlen, "nvme pci: guest memory, MSI and reactors are required");
		return -EINVAL;
	}
	if (maxq > NVMEEMU_PCI_MAX_IO_QUEUES || nvec > NVMEEMU_PCI_MAX_VECTORS) {
		snprintf(err, errlen, "nvme pci: at most %u I/O queues and %u vectors",
			 NVMEEMU_PCI_MAX_IO_QUEUES, NVMEEMU_PCI_MAX_VECTORS);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto nomem;
	p->s = s;
	p->h = *h;
	p->max_q = maxq;
	p->nvec = nvec;
	p->nr = o->nr_reactors;
	p->r = calloc(p->nr, sizeof(*p->r));
	p->quiesce = calloc(p->nr, sizeof(*p->quiesce));
	if (!p->r || !p->quiesce)
		goto nomem_p;
	for (unsigned i = 0; i < p->nr; i++) {
		p->r[i] = o->reactors[i];
		p->quiesce[i].task.fn = pci_quiesce;
		p->quiesce[i].p = p;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->msix_lock, NULL);
	p->reset_task.fn = pci_reset_start;
	p->finish_task.fn = pci_reset_finish;
	for (unsigned q = 0; q <= maxq; q++) {
		p->sq[q].p = p;
		p->sq[q].kick.fn = pci_sq_kick;
		p->cq[q].p = p;
		p->cq[q].kick.fn = pci_cq_kick;
		p->cq[q].irq_task.fn = pci_cq_irq;
		p->cq[q].timer.fn = pci_cq_timer;
	}
	pci_cfg_init(p, o);
	r = nvmeemu_ctrl_new(s, &(struct nvmeemu_ctrl_opts){ .cntlid = o->cntlid ? o->cntlid : 1,
							    .max_io_queues = maxq, .vectors = nvec },
			     &p->c);
	if (r < 0) {
		snprintf(err, errlen, "nvme pci: cannot make the controller: %s", strerror(-r));
		nvmeemu_pci_free(p);
		return r;
	}
	*out = p;
	return 0;
nomem_p:
	nvmeemu_pci_free(p);
nomem:
	snprintf(err, errlen, "nvme pci: out of memory");
	return -ENOMEM;
}

static void pci_free_now(struct nvmeemu_pci *p)
{
	pci_queues_drop(p);
	if (p->r) {
		pthread_mutex_destroy(&p->lock);
		pthread_mutex_destroy(&p->msix_lock);
	}
	free(p->quiesce);
	free(p->r);
	free(p);
}

static void pci_free_task(struct reactor_task *t)
{
	pci_free_now((struct nvmeemu_pci *)((char *)t - offsetof(struct nvmeemu_pci, finish_task)));
}

void nvmeemu_pci_free(struct nvmeemu_pci *p)
{
	bool held = false;

	if (!p)
		return;
	/* A function left enabled (a migration source) may hold AERs: the
	 * core posts their ends to reactors[0], so the memory goes after
	 * them, by a task posted behind theirs. */
	for (unsigned q = 0; q <= p->max_q; q++)
		if (atomic_load(&p->sq[q].live)) {
			held = true;
			p->sq[q].stopping = true;
		}
	p->state = ST_RESETTING;
	if (p->c)
		nvmeemu_ctrl_free(p->c);
	if (!held) {
		pci_free_now(p);
		return;
	}
	p->finish_task.fn = pci_free_task;
	reactor_post(p->r[0], &p->finish_task);
}

struct nvmeemu_ctrl *nvmeemu_pci_ctrl(struct nvmeemu_pci *p)
{
	return p->c;
}

/* ---- save and restore ---------------------------------------------------------------------- */

/*
 * The blob (little-endian): "NVMEPCI1", version, vectors, queues; config
 * space; registers; the MSI-X table and PBA; the controller's features
 * and host identifier; per queue pair: liveness, SQ base/size/head/tail/
 * CQID, CQ base/size/tail/head/phase/IV/IEN; the held AERs' entries.
 */
struct blob {
	uint8_t *b;
	size_t len, pos;
	bool bad;
};

static void put_n(struct blob *w, const void *v, size_t n)
{
	if (w->b && w->pos + n <= w->len)
		memcpy(w->b + w->pos, v, n);
	w->pos += n;
}

static void put_u(struct blob *w, uint64_t v, unsigned n)
{
	uint8_t t[8];

	ds_put_le64(t, v);
	put_n(w, t, n);
}

static void get_n(struct blob *r, void *v, size_t n)
{
	if (r->pos + n > r->len) {
		r->bad = true;
		memset(v, 0, n);
		return;
	}
	memcpy(v, r->b + r->pos, n);
	r->pos += n;
}

static uint64_t get_u(struct blob *r, unsigned n)
{
	uint8_t t[8] = { 0 };

	get_n(r, t, n);
	return ds_get_le64(t);
}

static const char blob_magic[8] = "NVMEPCI1";

int nvmeemu_pci_save(struct nvmeemu_pci *p, void *buf, size_t len)
{
	struct blob w = { .b = len ? buf : NULL, .len = len };
	struct nvmeemu_ctrl *c = p->c;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	if (p->state == ST_RESETTING) {
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	pthread_mutex_lock(&c->lock);
	for (unsigned q = 0; q <= p->max_q; q++)
		if (atomic_load(&p->sq[q].live) && p->sq[q].inflight > (q ? 0 : c->naer))
			ret = -EBUSY;
	if (ret < 0)
		goto out;
	put_n(&w, blob_magic, 8);
	put_u(&w, NVMEEMU_PCI_SAVE_VERSION, 4);
	put_u(&w, p->nvec, 2);
	put_u(&w, p->max_q, 2);
	put_n(&w, p->cfg, sizeof(p->cfg));
	put_u(&w, p->cc, 4), put_u(&w, p->intms, 4), put_u(&w, p->aqa, 4);
	put_u(&w, p->asq, 8), put_u(&w, p->acq, 8);
	put_u(&w, p->shst_done, 1), put_u(&w, atomic_load(&p->fatal), 1), put_u(&w, p->state, 1);
	pthread_mutex_lock(&p->msix_lock);
	for (unsigned v = 0; v < p->nvec; v++)
		put_u(&w, p->msix[v].addr_lo, 4), put_u(&w, p->msix[v].addr_hi, 4),
			put_u(&w, p->msix[v].data, 4), put_u(&w, p->msix[v].ctrl, 4);
	for (unsigned i = 0; i < NVMEEMU_PCI_MAX_VECTORS / 32; i++)
		put_u(&w, p->pba[i], 4);
	pthread_mutex_unlock(&p->msix_lock);
	put_u(&w, c->feat.arbitration, 4), put_u(&w, c->feat.power, 4);
	put_u(&w, c->feat.temp_over, 2), put_u(&w, c->feat.temp_under, 2);
	put_u(&w, c->feat.err_recovery, 4), put_u(&w, c->feat.wce, 1);
	put_u(&w, c->feat.nsq, 2), put_u(&w, c->feat.ncq, 2);
	put_u(&w, c->feat.coalescing, 4), put_u(&w, c->feat.aec, 4);
	put_n(&w, c->no_coalesce, sizeof(c->no_coalesce));
	put_n(&w, c->ini.host_id, 16), put_u(&w, c->ini.host_id_len, 1);
	for (unsigned q = 0; q <= p->max_q; q++) {
		struct pci_sq *sq = &p->sq[q];
		struct pci_cq *cq = &p->cq[q];

		put_u(&w, atomic_load(&sq->live) | atomic_load(&cq->live) << 1, 1);
		put_u(&w, sq->base, 8), put_u(&w, sq->size, 4), put_u(&w, sq->head, 4);
		put_u(&w, atomic_load(&sq->tail_db), 4), put_u(&w, sq->cqid, 2);
		put_u(&w, cq->base, 8), put_u(&w, cq->size, 4), put_u(&w, cq->tail, 4);
		put_u(&w, atomic_load(&cq->head_db), 4), put_u(&w, cq->phase, 1);
		put_u(&w, cq->iv, 2), put_u(&w, cq->ien, 1);
	}
	put_u(&w, c->naer, 1);
	for (unsigned i = 0; i < c->naer; i++)
		put_n(&w, c->aer[i]->sqe, NVMEEMU_SQE_BYTES);
	ret = (int)w.pos;
out:
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* On reactors[0]: a held AER of the saved controller, submitted again. */
static void pci_resubmit(struct reactor_task *t)
{
	struct pq_slot *s = (struct pq_slot *)((char *)t - offsetof(struct pq_slot, task));

	pci_dispatch(s);
}

int nvmeemu_pci_restore(struct nvmeemu_pci *p, const void *buf, size_t len)
{
	struct blob r = { .b = (uint8_t *)(uintptr_t)buf, .len = len };
	struct nvmeemu_ctrl *c = p->c;
	char magic[8];
	uint8_t cfg[256];
	struct ctrl_feat feat;
	uint8_t no_coal[sizeof(c->no_coalesce)], host_id[16], host_id_len, state, naer;
	struct msix_entry msix[NVMEEMU_PCI_MAX_VECTORS];
	uint32_t pba[NVMEEMU_PCI_MAX_VECTORS / 32], cc, intms, aqa;
	uint64_t asq, acq;
	bool shst, fatal;
	struct { uint8_t live; uint64_t sbase, cbase; uint32_t ssize, shead, stail, csize, ctail, chead;
		 uint16_t cqid, iv; uint8_t phase, ien; } qs[NVMEEMU_PCI_MAX_IO_QUEUES + 1];
	uint8_t aer[NVMEEMU_MAX_AER][NVMEEMU_SQE_BYTES];

	get_n(&r, magic, 8);
	if (memcmp(magic, blob_magic, 8) || get_u(&r, 4) != NVMEEMU_PCI_SAVE_VERSION ||
	    get_u(&r, 2) != p->nvec || get_u(&r, 2) != p->max_q)
		return -EINVAL;
	get_n(&r, cfg, sizeof(cfg));
	cc = (uint32_t)get_u(&r, 4), intms = (uint32_t)get_u(&r, 4), aqa = (uint32_t)get_u(&r, 4);
	asq = get_u(&r, 8), acq = get_u(&r, 8);
	shst = get_u(&r, 1), fatal = get_u(&r, 1), state = (uint8_t)get_u(&r, 1);
	for (unsigned v = 0; v < p->nvec; v++) {
		msix[v].addr_lo = (uint32_t)get_u(&r, 4), msix[v].addr_hi = (uint32_t)get_u(&r, 4);
		msix[v].data = (uint32_t)get_u(&r, 4), msix[v].ctrl = (uint32_t)get_u(&r, 4) & 1;
	}
	for (unsigned i = 0; i < NVMEEMU_PCI_MAX_VECTORS / 32; i++)
		pba[i] = (uint32_t)get_u(&r, 4);
	memset(&feat, 0, sizeof(feat));
	feat.arbitration = (uint32_t)get_u(&r, 4), feat.power = (uint32_t)get_u(&r, 4);
	feat.temp_over = (uint16_t)get_u(&r, 2), feat.temp_under = (uint16_t)get_u(&r, 2);
	feat.err_recovery = (uint32_t)get_u(&r, 4), feat.wce = get_u(&r, 1);
	feat.nsq = (uint16_t)get_u(&r, 2), feat.ncq = (uint16_t)get_u(&r, 2);
	feat.coalescing = (uint32_t)get_u(&r, 4), feat.aec = (uint32_t)get_u(&r, 4);
	get_n(&r, no_coal, sizeof(no_coal));
	get_n(&r, host_id, 16);
	host_id_len = (uint8_t)get_u(&r, 1);
	for (unsigned q = 0; q <= p->max_q; q++) {
		qs[q].live = (uint8_t)get_u(&r, 1);
		qs[q].sbase = get_u(&r, 8), qs[q].ssize = (uint32_t)get_u(&r, 4);
		qs[q].shead = (uint32_t)get_u(&r, 4), qs[q].stail = (uint32_t)get_u(&r, 4);
		qs[q].cqid = (uint16_t)get_u(&r, 2);
		qs[q].cbase = get_u(&r, 8), qs[q].csize = (uint32_t)get_u(&r, 4);
		qs[q].ctail = (uint32_t)get_u(&r, 4), qs[q].chead = (uint32_t)get_u(&r, 4);
		qs[q].phase = (uint8_t)get_u(&r, 1), qs[q].iv = (uint16_t)get_u(&r, 2);
		qs[q].ien = (uint8_t)get_u(&r, 1);
	}
	naer = (uint8_t)get_u(&r, 1);
	if (naer > NVMEEMU_MAX_AER)
		return -EINVAL;
	for (unsigned i = 0; i < naer; i++)
		get_n(&r, aer[i], NVMEEMU_SQE_BYTES);
	/* Everything must be consistent before anything changes. */
	if (r.bad || r.pos != len || (state != ST_IDLE && state != ST_READY) ||
	    (host_id_len != 0 && host_id_len != 8 && host_id_len != 16))
		return -EINVAL;
	for (unsigned q = 0; q <= p->max_q; q++) {
		if (qs[q].live & ~3u)
			return -EINVAL;
		if ((qs[q].live & 1) && (qs[q].ssize < 2 || qs[q].ssize > (q ? MQES + 1 : 4096) ||
					 qs[q].shead >= qs[q].ssize || qs[q].stail >= qs[q].ssize ||
					 qs[q].cqid > p->max_q || !(qs[qs[q].cqid].live & 2)))
			return -EINVAL;
		if ((qs[q].live & 2) && (qs[q].csize < 2 || qs[q].csize > (q ? MQES + 1 : 4096) ||
					 qs[q].ctail >= qs[q].csize || qs[q].chead >= qs[q].csize ||
					 qs[q].iv >= p->nvec || qs[q].phase > 1))
			return -EINVAL;
	}
	if (state == ST_READY && (qs[0].live != 3 || qs[0].cqid != 0 || naer > qs[0].ssize))
		return -EINVAL;
	if (state == ST_IDLE && (naer || qs[0].live))
		return -EINVAL;
	for (unsigned i = 0; i < naer; i++)
		if (aer[i][0] != 0x0c)
			return -EINVAL;

	pthread_mutex_lock(&p->lock);
	if (p->state != ST_IDLE || atomic_load(&p->sq[0].live)) {
		pthread_mutex_unlock(&p->lock);
		return -EBUSY;
	}
	memcpy(p->cfg, cfg, sizeof(cfg));
	p->cc = cc, p->intms = intms, p->aqa = aqa, p->asq = asq, p->acq = acq;
	p->shst_done = shst;
	atomic_store(&p->fatal, fatal);
	pthread_mutex_lock(&p->msix_lock);
	memcpy(p->msix, msix, sizeof(msix[0]) * p->nvec);
	memcpy(p->pba, pba, sizeof(pba));
	pthread_mutex_unlock(&p->msix_lock);
	pthread_mutex_lock(&c->lock);
	feat.ts_set = false;
	c->feat = feat;
	atomic_store(&c->coalescing, feat.coalescing);
	atomic_store(&c->wce, feat.wce);
	memcpy(c->no_coalesce, no_coal, sizeof(no_coal));
	memcpy(c->ini.host_id, host_id, 16);
	c->ini.host_id_len = host_id_len;
	pthread_mutex_unlock(&c->lock);
	for (unsigned q = 0; q <= p->max_q; q++) {
		struct reactor *rr = q ? pci_reactor_for(p, q) : p->r[0];

		if (qs[q].live & 2) {
			cq_setup(&p->cq[q], rr, (uint16_t)q, qs[q].cbase, qs[q].csize, qs[q].iv, qs[q].ien);
			p->cq[q].tail = qs[q].ctail;
			p->cq[q].phase = qs[q].phase;
			atomic_store(&p->cq[q].head_db, qs[q].chead);
		}
	}
	for (unsigned q = 0; q <= p->max_q; q++) {
		if (!(qs[q].live & 1))
			continue;
		if (slots_alloc(&p->sq[q], qs[q].ssize) < 0) {
			pci_queues_drop(p);
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;
		}
		sq_setup(&p->sq[q], p->cq[qs[q].cqid].r, (uint16_t)q, qs[q].cqid, qs[q].sbase, qs[q].ssize);
		p->sq[q].head = qs[q].shead;
		atomic_store(&p->sq[q].tail_db, qs[q].stail);
		p->cq[qs[q].cqid].nsq++;
	}
	for (unsigned q = 0; q <= p->max_q; q++) {
		atomic_store(&p->cq[q].live, (qs[q].live & 2) != 0);
		atomic_store(&p->sq[q].live, (qs[q].live & 1) != 0);
	}
	p->state = (enum pci_state)state;
	pthread_mutex_unlock(&p->lock);
	nvmeemu_ctrl_set_io_queues(c, pci_live_io_queues(p));
	for (unsigned i = 0; i < naer; i++) {
		struct pq_slot *s = slot_get(&p->sq[0]);

		memcpy(s->cmd.sqe, aer[i], NVMEEMU_SQE_BYTES);
		s->cmd.qid = 0;
		s->task.fn = pci_resubmit;
		reactor_post(p->r[0], &s->task);
	}
	/* Fetch what the guest queued before the save; a spurious message
	 * per vector covers completions whose interrupt was still due. */
	for (unsigned q = 0; q <= p->max_q; q++) {
		if (qs[q].live & 1)
			pci_post_kick(p->sq[q].r, &p->sq[q].kick_posted, &p->sq[q].kick);
		if ((qs[q].live & 2) && qs[q].ien)
			msix_fire(p, qs[q].iv);
	}
	return 0;
}
