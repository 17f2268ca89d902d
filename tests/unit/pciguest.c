/* SPDX-License-Identifier: MIT */
/* pciguest.c: the in-process guest driver of pciguest.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "common/reactor.h"
#include "tests/unit/pciguest.h"

static int pg_mem_read(void *opaque, uint64_t gpa, void *buf, size_t len)
{
	struct pg *g = opaque;

	if (gpa > g->mem_bytes || len > g->mem_bytes - gpa)
		return -EFAULT;
	memcpy(buf, g->mem + gpa, len);
	return 0;
}

static int pg_mem_write(void *opaque, uint64_t gpa, const void *buf, size_t len)
{
	struct pg *g = opaque;

	if (gpa > g->mem_bytes || len > g->mem_bytes - gpa)
		return -EFAULT;
	memcpy(g->mem + gpa, buf, len);
	return 0;
}

static void *pg_mem_map(void *opaque, uint64_t gpa, size_t len)
{
	struct pg *g = opaque;

	if (g->no_map || gpa > g->mem_bytes || len > g->mem_bytes - gpa)
		return NULL;
	return g->mem + gpa;
}

static void pg_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct pg *g = opaque;

	if (addr == 0xfee00000u && data < NVMEEMU_PCI_MAX_VECTORS)
		atomic_fetch_add(&g->msi[data], 1);
}

int pg_new(struct pg *g, struct nvmeemu_subsys *s, struct reactor *r, uint64_t mem_bytes,
	   uint16_t max_io_queues)
{
	struct nvmeemu_pci_host h = { .mem_read = pg_mem_read, .mem_write = pg_mem_write,
				      .mem_map = pg_mem_map, .msi = pg_msi, .opaque = g };
	char err[256];
	int ret;

	memset(g, 0, sizeof(*g));
	g->mem = calloc(1, mem_bytes);
	if (!g->mem)
		return -ENOMEM;
	g->mem_bytes = mem_bytes;
	g->brk = 4096;                                    /* GPA 0 stays unused */
	g->r = r;
	ret = nvmeemu_pci_new(s, &h, &(struct nvmeemu_pci_opts){ .max_io_queues = max_io_queues,
			      .reactors = &g->r, .nr_reactors = 1 }, &g->p, err, sizeof(err));
	if (ret < 0) {
		free(g->mem);
		g->mem = NULL;
	}
	return ret;
}

void pg_free(struct pg *g)
{
	nvmeemu_pci_free(g->p);
	for (int i = 0; i < 16; i++)                      /* a deferred free (nvme_pci.h) */
		reactor_run_once(g->r, false);
	free(g->mem);
	g->mem = NULL;
}

uint64_t pg_alloc(struct pg *g, unsigned n)
{
	uint64_t a = g->brk;

	if (a + (uint64_t)n * 4096 > g->mem_bytes)
		abort();
	g->brk += (uint64_t)n * 4096;
	memset(g->mem + a, 0, (size_t)n * 4096);
	return a;
}

uint32_t pg_rd32(struct pg *g, uint64_t off)
{
	uint64_t v = 0;

	nvmeemu_pci_mmio_read(g->p, 0, off, 4, &v);
	return (uint32_t)v;
}

void pg_wr32(struct pg *g, uint64_t off, uint32_t v)
{
	nvmeemu_pci_mmio_write(g->p, 0, off, 4, v);
}

int pg_run_until(struct pg *g, bool (*cond)(struct pg *, void *), void *arg)
{
	for (unsigned i = 0; i < 2000000; i++) {
		if (cond(g, arg))
			return 0;
		reactor_run_once(g->r, reactor_pending(g->r) > 0 && i > 8);
	}
	return -ETIMEDOUT;
}

static bool pg_rdy_is(struct pg *g, void *arg)
{
	return (pg_rd32(g, 0x1c) & 1) == (uint32_t)(uintptr_t)arg;
}

int pg_enable(struct pg *g, uint32_t asize)
{
	struct nvmeemu_pci *p = g->p;
	uint32_t v;

	/* Config: size the BARs, place them, memory + bus master, MSI-X on. */
	nvmeemu_pci_cfg_write(p, 0x10, 4, 0xffffffffu);
	nvmeemu_pci_cfg_read(p, 0x10, 4, &v);
	if ((~(v & ~0xfu) + 1) != NVMEEMU_PCI_BAR0_BYTES)
		return -EIO;
	nvmeemu_pci_cfg_write(p, 0x10, 4, 0xf0000000u);
	nvmeemu_pci_cfg_write(p, 0x14, 4, 0);
	nvmeemu_pci_cfg_write(p, 0x20, 4, 0xf0004000u);
	nvmeemu_pci_cfg_write(p, 0x24, 4, 0);
	nvmeemu_pci_cfg_write(p, 0x04, 2, 6);
	for (unsigned i = 0; i <= PG_MAXQ; i++) {
		nvmeemu_pci_mmio_write(p, 4, i * 16, 4, 0xfee00000u);
		nvmeemu_pci_mmio_write(p, 4, i * 16 + 4, 4, 0);
		nvmeemu_pci_mmio_write(p, 4, i * 16 + 8, 4, i);
		nvmeemu_pci_mmio_write(p, 4, i * 16 + 12, 4, 0);
	}
	nvmeemu_pci_cfg_write(p, 0x42, 2, 0x8000);
	/* The Linux driver's order (docs/nvme.md). */
	(void)pg_rd32(g, 0x1c);
	(void)pg_rd32(g, 0x00), (void)pg_rd32(g, 0x04), (void)pg_rd32(g, 0x3c), (void)pg_rd32(g, 0x08);
	pg_wr32(g, 0x14, 0);
	if (pg_run_until(g, pg_rdy_is, (void *)0) < 0)
		return -ETIMEDOUT;
	g->q[0] = (struct pg_queue){ .sq = pg_alloc(g, (asize * 64 + 4095) / 4096),
				     .cq = pg_alloc(g, (asize * 16 + 4095) / 4096), .size = asize,
				     .phase = 1 };
	pg_wr32(g, 0x24, (asize - 1) << 16 | (asize - 1));
	pg_wr32(g, 0x28, (uint32_t)g->q[0].sq), pg_wr32(g, 0x2c, (uint32_t)(g->q[0].sq >> 32));
	pg_wr32(g, 0x30, (uint32_t)g->q[0].cq), pg_wr32(g, 0x34, (uint32_t)(g->q[0].cq >> 32));
	(void)pg_rd32(g, 0x00);
	pg_wr32(g, 0x14, 0x00460000);
	(void)pg_rd32(g, 0x00);
	pg_wr32(g, 0x14, 0x00460001);
	if (pg_run_until(g, pg_rdy_is, (void *)1) < 0 || (pg_rd32(g, 0x1c) & 2))
		return -EIO;
	g->nq = 0;
	return 0;
}

int pg_disable(struct pg *g)
{
	pg_wr32(g, 0x14, pg_rd32(g, 0x14) & ~1u);
	return pg_run_until(g, pg_rdy_is, (void *)0);
}

uint16_t pg_push(struct pg *g, unsigned q, uint8_t sqe[64])
{
	struct pg_queue *pq = &g->q[q];
	uint16_t cid = g->cid++;

	ds_put_le16(sqe + 2, cid);
	memcpy(g->mem + pq->sq + (uint64_t)pq->sq_tail * 64, sqe, 64);
	pq->sq_tail = (pq->sq_tail + 1) % pq->size;
	return cid;
}

void pg_ring(struct pg *g, unsigned q)
{
	pg_wr32(g, 0x1000 + 8 * q, g->q[q].sq_tail);
}

bool pg_reap(struct pg *g, unsigned q, uint8_t cqe[16])
{
	struct pg_queue *pq = &g->q[q];
	uint8_t *e = g->mem + pq->cq + (uint64_t)pq->cq_head * 16;

	if ((ds_get_le16(e + 14) & 1) != pq->phase)
		return false;
	memcpy(cqe, e, 16);
	if (++pq->cq_head == pq->size) {
		pq->cq_head = 0;
		pq->phase = !pq->phase;
	}
	return true;
}

void pg_cq_ring(struct pg *g, unsigned q)
{
	pg_wr32(g, 0x1004 + 8 * q, g->q[q].cq_head);
}

bool pg_pop(struct pg *g, unsigned q, uint8_t cqe[16])
{
	if (!pg_reap(g, q, cqe))
		return false;
	pg_cq_ring(g, q);
	return true;
}

struct pg_wait {
	unsigned q;
	uint16_t cid;
	uint8_t *cqe;
	bool got;
};

static bool pg_got(struct pg *g, void *arg)
{
	struct pg_wait *w = arg;
	uint8_t cqe[16];

	while (!w->got && pg_pop(g, w->q, cqe))
		if (ds_get_le16(cqe + 12) == w->cid) {
			memcpy(w->cqe, cqe, 16);
			w->got = true;
		}
	return w->got;
}

int pg_cmd(struct pg *g, unsigned q, uint8_t sqe[64], uint8_t *cqe)
{
	uint8_t tmp[16];
	struct pg_wait w = { .q = q, .cqe = cqe ? cqe : tmp };
	int r;

	w.cid = pg_push(g, q, sqe);
	pg_ring(g, q);
	r = pg_run_until(g, pg_got, &w);
	if (r < 0)
		return r;
	return ds_get_le16(w.cqe + 14) >> 1;
}

void pg_sqe(uint8_t sqe[64], uint8_t opc, uint32_t nsid, uint64_t prp1, uint64_t prp2,
	    uint32_t d10, uint32_t d11, uint32_t d12)
{
	memset(sqe, 0, 64);
	sqe[0] = opc;
	ds_put_le32(sqe + 4, nsid);
	ds_put_le64(sqe + 24, prp1);
	ds_put_le64(sqe + 32, prp2);
	ds_put_le32(sqe + 40, d10);
	ds_put_le32(sqe + 44, d11);
	ds_put_le32(sqe + 48, d12);
}

void pg_prps(struct pg *g, uint8_t sqe[64], const uint64_t *pages, unsigned npages, uint32_t off0,
	     uint64_t len, uint64_t list)
{
	uint64_t first = 4096 - off0;
	unsigned need = len <= first ? 1 : 1 + (unsigned)((len - first + 4095) / 4096);

	(void)npages;
	ds_put_le64(sqe + 24, pages[0] + off0);
	if (need == 1)
		ds_put_le64(sqe + 32, 0);
	else if (need == 2)
		ds_put_le64(sqe + 32, pages[1]);
	else {
		/* The list may start mid-page; chain when it reaches a page end. */
		uint64_t at = list;

		ds_put_le64(sqe + 32, list);
		for (unsigned i = 1; i < need; i++) {
			if ((at & 4095) == 4088 && i < need - 1) {
				uint64_t next = pg_alloc(g, 1);

				ds_put_le64(g->mem + at, next);
				at = next;
			}
			ds_put_le64(g->mem + at, pages[i]);
			at += 8;
		}
	}
}

int pg_create_queues(struct pg *g, unsigned n, uint32_t size)
{
	uint8_t sqe[64];
	int st;

	pg_sqe(sqe, 0x09, 0, 0, 0, 0x07, (n - 1) << 16 | (n - 1), 0);
	if ((st = pg_cmd(g, 0, sqe, NULL)) != 0)
		return st < 0 ? st : -EIO;
	for (unsigned i = 1; i <= n; i++) {
		g->q[i] = (struct pg_queue){ .sq = pg_alloc(g, (size * 64 + 4095) / 4096),
					     .cq = pg_alloc(g, (size * 16 + 4095) / 4096),
					     .size = size, .phase = 1 };
		pg_sqe(sqe, 0x05, 0, g->q[i].cq, 0, (size - 1) << 16 | i, i << 16 | 3, 0);
		if ((st = pg_cmd(g, 0, sqe, NULL)) != 0)
			return st < 0 ? st : -EIO;
		pg_sqe(sqe, 0x01, 0, g->q[i].sq, 0, (size - 1) << 16 | i, i << 16 | 1, 0);
		if ((st = pg_cmd(g, 0, sqe, NULL)) != 0)
			return st < 0 ? st : -EIO;
	}
	g->nq = n;
	return 0;
}
