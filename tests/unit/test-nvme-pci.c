/* SPDX-License-Identifier: MIT */
/*
 * test-nvme-pci.c: the NVMe PCI function (nvme_emul/nvme_pci.h) driven by
 * an in-process guest driver (pciguest.h): config space and registers,
 * bring-up as Linux does it, seeded random I/O across several queues
 * against a flat model of the disk (PRPs, PRP lists, SGLs), queue
 * management statuses, MSI-X masking and coalescing, reset under load,
 * shutdown, bad doorbells, bad PRPs, save/restore, the completion status
 * of each status the error: decorator injects.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "storage/decorators/error.h"
#include "storage/disk.h"
#include "tests/unit/nvmetest.h"
#include "tests/unit/pciguest.h"
#include "tests/unit/testutil.h"

#define DISK_BYTES (8u << 20)
#define MEM_BYTES (64u << 20)

struct fix {
	struct nvmeemu_subsys *s;
	struct disk *d;
	struct pg g;
};

static void fix_open(struct fix *f, const char *spec, bool enable)
{
	struct nvmeemu_subsys_opts o = { 0 };

	nvmeemu_pci_subsys_opts(&o, 0x1414);
	f->s = nt_subsys(&o);
	f->d = nt_add_ns(f->s, 1, spec);
	assert_int_equal(pg_new(&f->g, f->s, tu_reactor(), MEM_BYTES, 8), 0);
	if (enable)
		assert_int_equal(pg_enable(&f->g, 32), 0);
}

static void fix_close(struct fix *f)
{
	if (pg_rd32(&f->g, 0x1c) & 1)
		assert_int_equal(pg_disable(&f->g), 0);
	pg_free(&f->g);
	nvmeemu_subsys_free(f->s);
	disk_unref(f->d);
}

struct msi_wait {
	unsigned v, above;
};

static bool msi_seen(struct pg *g, void *arg)
{
	struct msi_wait *w = arg;

	return atomic_load(&g->msi[w->v]) > w->above;
}

/* Runs the reactor until vector @v counted more than @above messages. */
static void wait_msi(struct pg *g, unsigned v, unsigned above)
{
	assert_int_equal(pg_run_until(g, msi_seen, &(struct msi_wait){ v, above }), 0);
}

static void test_nvme_pci_config(void **state)
{
	struct fix f;
	uint32_t v;
	uint64_t q;

	(void)state;
	fix_open(&f, "mem:1M", false);
	nvmeemu_pci_cfg_read(f.g.p, 0x08, 4, &v);
	assert_int_equal(v >> 8, 0x010802);
	nvmeemu_pci_cfg_read(f.g.p, 0x00, 4, &v);
	assert_int_equal(v, 0xC03E1414u);
	/* 64-bit BARs answer size probing; the high half keeps all ones. */
	nvmeemu_pci_cfg_write(f.g.p, 0x20, 4, 0xffffffffu);
	nvmeemu_pci_cfg_read(f.g.p, 0x20, 4, &v);
	assert_int_equal(v, 0xfffff004u);
	nvmeemu_pci_cfg_write(f.g.p, 0x24, 4, 0xffffffffu);
	nvmeemu_pci_cfg_read(f.g.p, 0x24, 4, &v);
	assert_int_equal(v, 0xffffffffu);
	nvmeemu_pci_cfg_write(f.g.p, 0x20, 4, 0xe0001000u);
	nvmeemu_pci_cfg_write(f.g.p, 0x24, 4, 1);
	assert_int_equal(nvmeemu_pci_bar_addr(f.g.p, 4), 0x1e0001000ull);
	/* Capability list: MSI-X (table BIR 4 at 0, PBA at 800h), PCIe. */
	nvmeemu_pci_cfg_read(f.g.p, 0x34, 1, &v);
	assert_int_equal(v, 0x40);
	nvmeemu_pci_cfg_read(f.g.p, 0x40, 4, &v);
	assert_int_equal(v & 0xffff, 0x5011);
	assert_int_equal(v >> 16, 8);                     /* 9 vectors, N-1 */
	nvmeemu_pci_cfg_read(f.g.p, 0x48, 4, &v);
	assert_int_equal(v, 0x804);
	nvmeemu_pci_cfg_read(f.g.p, 0x50, 2, &v);
	assert_int_equal(v, 0x0010);
	assert_int_equal(nvmeemu_pci_cfg_read(f.g.p, 0x41, 2, &v), -EINVAL);
	/* Registers. */
	assert_int_equal(nvmeemu_pci_mmio_read(f.g.p, 0, 0, 8, &q), 0);
	assert_int_equal(q & 0xffff, 255);
	assert_true(q >> 16 & 1);                         /* CQR */
	assert_true(q >> 37 & 1);                         /* CSS NVM */
	assert_int_equal(q >> 32 & 0xf, 0);               /* DSTRD */
	assert_int_equal(pg_rd32(&f.g, 0x08), 0x00020000);
	pg_wr32(&f.g, 0x30, 0x12345678);
	assert_int_equal(pg_rd32(&f.g, 0x30), 0x12345000);
	assert_int_equal(nvmeemu_pci_mmio_read(f.g.p, 0, 2, 4, &q), -EINVAL);
	assert_int_equal(nvmeemu_pci_mmio_read(f.g.p, 0, 0, 2, &q), -EINVAL);
	pg_wr32(&f.g, 0x0c, 5);
	pg_wr32(&f.g, 0x10, 1);
	assert_int_equal(pg_rd32(&f.g, 0x0c), 4);
	fix_close(&f);
}

static void test_nvme_pci_enable_identify(void **state)
{
	uint8_t sqe[64], cqe[16];
	uint64_t buf;
	struct fix f;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(atomic_load(&f.g.msi[0]), 0);   /* nothing before a doorbell */
	buf = pg_alloc(&f.g, 1);
	pg_sqe(sqe, 0x06, 0, buf, 0, 1, 0, 0);
	assert_int_equal(pg_cmd(&f.g, 0, sqe, cqe), 0);
	assert_int_equal(ds_get_le16(cqe + 8), 1);        /* SQHD */
	wait_msi(&f.g, 0, 0);                             /* the message follows the entry */
	assert_int_equal(ds_get_le16(pg_ptr(&f.g, buf)), 0x1414);
	assert_memory_equal(pg_ptr(&f.g, buf) + 24, "diskstack NVMe", 14);
	assert_int_equal(ds_get_le32(pg_ptr(&f.g, buf) + 536) & 3, 1);  /* SGLS */
	/* I/O to a namespace that is not there. */
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	pg_sqe(sqe, 0x02, 0xffff, buf, 0, 0, 0, 0);
	assert_int_equal(pg_cmd(&f.g, 1, sqe, cqe), NVMEEMU_INVALID_NS | NVMEEMU_DNR);
	assert_int_equal(ds_get_le16(cqe + 10), 1);       /* SQID */
	fix_close(&f);
}

/* Admin command with the expected status. */
static void admin(struct fix *f, uint8_t opc, uint64_t prp1, uint32_t d10, uint32_t d11,
		  int want)
{
	uint8_t sqe[64];

	pg_sqe(sqe, opc, 0, prp1, 0, d10, d11, 0);
	assert_int_equal(pg_cmd(&f->g, 0, sqe, NULL), want);
}

static void test_nvme_pci_queue_errors(void **state)
{
	struct fix f;
	uint64_t a;

	(void)state;
	fix_open(&f, "mem:1M", true);
	admin(&f, 0x09, 0, 0x07, 1 << 16 | 1, 0);         /* two queue pairs */
	a = pg_alloc(&f.g, 4);
	admin(&f, 0x05, a, 15 << 16 | 0, 3, 0x101 | NVMEEMU_DNR);   /* qid 0 */
	admin(&f, 0x05, a, 15 << 16 | 3, 3, 0x101 | NVMEEMU_DNR);   /* not granted */
	admin(&f, 0x05, a, 256 << 16 | 1, 3, 0x102 | NVMEEMU_DNR);  /* 257 entries */
	admin(&f, 0x05, a, 0 << 16 | 1, 3, 0x102 | NVMEEMU_DNR);    /* 1 entry */
	admin(&f, 0x05, a, 15 << 16 | 1, 2, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR); /* not PC */
	admin(&f, 0x05, a, 15 << 16 | 1, 40u << 16 | 3, 0x108 | NVMEEMU_DNR);   /* IV */
	admin(&f, 0x05, a + 8, 15 << 16 | 1, 3, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR);
	admin(&f, 0x05, a, 15 << 16 | 1, 1u << 16 | 3, 0);
	admin(&f, 0x05, a, 15 << 16 | 1, 1u << 16 | 3, 0x101 | NVMEEMU_DNR);    /* exists */
	admin(&f, 0x01, a + 4096, 15 << 16 | 1, 2u << 16 | 1, 0x100 | NVMEEMU_DNR); /* no CQ 2 */
	admin(&f, 0x01, a + 4096, 15 << 16 | 1, 1u << 16 | 1, 0);
	admin(&f, 0x04, 0, 1, 0, 0x10c | NVMEEMU_DNR);    /* CQ in use */
	admin(&f, 0x00, 0, 2, 0, 0x101 | NVMEEMU_DNR);    /* no SQ 2 */
	admin(&f, 0x09, 0, 0x07, 0, NVMEEMU_CMD_SEQ_ERROR | NVMEEMU_DNR);
	admin(&f, 0x00, 0, 1, 0, 0);
	admin(&f, 0x04, 0, 1, 0, 0);
	admin(&f, 0x04, 0, 1, 0, 0x101 | NVMEEMU_DNR);
	fix_close(&f);
}

/* ---- random I/O against a flat model ---------------------------------------- */

#define ZONE (64u * 1024)
#define NZONES (DISK_BYTES / ZONE)

struct rio {
	uint8_t opc;
	uint16_t cid;
	unsigned q, zone;
	uint64_t off, len;
	uint64_t pages[20];
	bool busy;
};

static void rio_data(struct pg *g, struct rio *io, uint8_t *flat, bool to_guest)
{
	uint64_t done = 0;

	for (unsigned i = 0; done < io->len; i++) {
		uint64_t n = io->len - done < 4096 ? io->len - done : 4096;

		if (to_guest)
			memcpy(pg_ptr(g, io->pages[i]), flat + done, n);
		else
			memcpy(flat + done, pg_ptr(g, io->pages[i]), n);
		done += n;
	}
}

static void random_io(const char *spec, bool no_map)
{
	uint64_t seed = tu_seed("nvme_pci_random"), rs = seed;
	static uint8_t model[DISK_BYTES], tmp[ZONE];
	struct rio ios[8 * 4];
	bool zone_busy[NZONES] = { 0 };
	unsigned nios = sizeof(ios) / sizeof(ios[0]), done_n = 0, submitted = 0;
	struct fix f;
	uint8_t sqe[64], cqe[16];

	fix_open(&f, spec, true);
	f.g.no_map = no_map;
	memset(model, 0, sizeof(model));
	assert_int_equal(pg_create_queues(&f.g, 4, 16), 0);
	memset(ios, 0, sizeof(ios));
	for (unsigned i = 0; i < nios; i++) {
		ios[i].q = 1 + i % 4;
		for (unsigned k = 0; k < 20; k++)            /* scattered pages */
			ios[i].pages[k] = pg_alloc(&f.g, 2);
	}
	while (done_n < 3000) {
		/* Fill every idle slot with a new command on a free zone. */
		for (unsigned i = 0; i < nios && submitted < 3000; i++) {
			struct rio *io = &ios[i];
			unsigned kind = (unsigned)(tu_rand(&rs) % 10), z;
			uint32_t nlb;

			if (io->busy)
				continue;
			do
				z = (unsigned)(tu_rand(&rs) % NZONES);
			while (zone_busy[z]);
			nlb = (uint32_t)(tu_rand(&rs) % 128);     /* 1..128 sectors */
			io->zone = z;
			io->off = (uint64_t)z * ZONE;
			io->len = (uint64_t)(nlb + 1) * 512;
			io->opc = kind < 4 ? 0x02 : kind < 8 ? 0x01 : kind == 8 ? 0x08 : 0x09;
			if (kind == 9 && tu_rand(&rs) % 2)
				io->opc = 0x00;
			pg_sqe(sqe, io->opc, 1, 0, 0, (uint32_t)(io->off / 512),
			       (uint32_t)(io->off / 512 >> 32), nlb);
			if (io->opc == 0x01) {
				for (uint64_t b = 0; b < io->len; b += 8)
					ds_put_le64(tmp + b, tu_rand(&rs));
				rio_data(&f.g, io, tmp, true);
				memcpy(model + io->off, tmp, io->len);
			}
			if (io->opc == 0x01 || io->opc == 0x02)
				pg_prps(&f.g, sqe, io->pages, 20, 0, io->len, pg_alloc(&f.g, 1));
			if (io->opc == 0x08) {
				ds_put_le32(sqe + 48, nlb | (tu_rand(&rs) % 2) << 25);
				memset(model + io->off, 0, io->len);
			}
			if (io->opc == 0x09) {
				uint8_t *r = pg_ptr(&f.g, io->pages[0]);

				memset(r, 0, 16);
				ds_put_le32(r + 4, nlb + 1);
				ds_put_le64(r + 8, io->off / 512);
				ds_put_le64(sqe + 24, io->pages[0]);
				ds_put_le32(sqe + 40, 0);
				ds_put_le32(sqe + 44, 4);         /* AD */
				memset(model + io->off, 0, io->len);   /* mem: reads unmapped as zero */
			}
			io->cid = pg_push(&f.g, io->q, sqe);
			io->busy = true;
			zone_busy[z] = true;
			submitted++;
		}
		for (unsigned q = 1; q <= 4; q++)
			pg_ring(&f.g, q);
		reactor_run_once(f.g.r, false);
		for (unsigned q = 1; q <= 4; q++)
			while (pg_pop(&f.g, q, cqe)) {
				uint16_t cid = ds_get_le16(cqe + 12);
				struct rio *io = NULL;

				for (unsigned i = 0; i < nios; i++)
					if (ios[i].busy && ios[i].cid == cid && ios[i].q == q)
						io = &ios[i];
				assert_non_null(io);
				if (ds_get_le16(cqe + 14) >> 1)
					fail_msg("seed %llu: opc %02x status %04x", (unsigned long long)seed,
						 io->opc, ds_get_le16(cqe + 14) >> 1);
				if (io->opc == 0x02) {
					rio_data(&f.g, io, tmp, false);
					if (memcmp(tmp, model + io->off, io->len))
						fail_msg("seed %llu: read at %llu differs from the model",
							 (unsigned long long)seed,
							 (unsigned long long)io->off);
				}
				io->busy = false;
				zone_busy[io->zone] = false;
				done_n++;
			}
	}
	/* Every vector of an I/O CQ fired. */
	for (unsigned q = 1; q <= 4; q++)
		wait_msi(&f.g, q, 0);
	fix_close(&f);
}

static void test_nvme_pci_random_mem(void **state)
{
	(void)state;
	random_io("mem:8M", false);
}

static void test_nvme_pci_random_copy(void **state)
{
	(void)state;
	random_io("mem:8M", true);
}

/* 256 KiB with PRP1 at an offset and a PRP list that starts 16 bytes
 * before a page end, so it chains to a second list page. */
static void test_nvme_pci_prp_list_chain(void **state)
{
	uint64_t pages[65], list;
	uint8_t sqe[64];
	static uint8_t w[256 * 1024], r[256 * 1024];
	struct fix f;
	uint64_t len = 256 * 1024 - 512;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	for (unsigned i = 0; i < 65; i++)
		pages[i] = pg_alloc(&f.g, 2);                 /* not contiguous */
	for (int pass = 0; pass < 2; pass++) {
		f.g.no_map = pass;
		tu_fill(w, len, 7 + pass, 0);
		for (uint64_t d = 0, i = 0; d < len; i++) {
			uint64_t off = i ? 0 : 512, n = 4096 - off < len - d ? 4096 - off : len - d;

			memcpy(pg_ptr(&f.g, pages[i] + off), w + d, n);
			d += n;
		}
		list = pg_alloc(&f.g, 1) + 4096 - 16;
		pg_sqe(sqe, 0x01, 1, 0, 0, 8, 0, (uint32_t)(len / 512 - 1));
		pg_prps(&f.g, sqe, pages, 65, 512, len, list);
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL), 0);
		pg_sqe(sqe, 0x02, 1, 0, 0, 8, 0, (uint32_t)(len / 512 - 1));
		for (unsigned i = 0; i < 65; i++)
			memset(pg_ptr(&f.g, pages[i]), 0, 4096);
		pg_prps(&f.g, sqe, pages, 65, 512, len, list);
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL), 0);
		for (uint64_t d = 0, i = 0; d < len; i++) {
			uint64_t off = i ? 0 : 512, n = 4096 - off < len - d ? 4096 - off : len - d;

			memcpy(r + d, pg_ptr(&f.g, pages[i] + off), n);
			d += n;
		}
		assert_memory_equal(w, r, len);
	}
	fix_close(&f);
}

/* SGL: a segment of two data blocks then a last segment of one. */
static void test_nvme_pci_sgl(void **state)
{
	uint8_t sqe[64], *seg1, *seg2;
	uint64_t a = 0, b = 0, c = 0, s1, s2;
	static uint8_t w[12288];
	struct fix f;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	a = pg_alloc(&f.g, 2), b = pg_alloc(&f.g, 2), c = pg_alloc(&f.g, 2);
	s1 = pg_alloc(&f.g, 1), s2 = pg_alloc(&f.g, 1);
	seg1 = pg_ptr(&f.g, s1), seg2 = pg_ptr(&f.g, s2);
	ds_put_le64(seg1, a + 100), ds_put_le32(seg1 + 8, 5000), seg1[15] = 0x00;
	ds_put_le64(seg1 + 16, b), ds_put_le32(seg1 + 24, 3000), seg1[31] = 0x00;
	ds_put_le64(seg1 + 32, s2), ds_put_le32(seg1 + 40, 16), seg1[47] = 0x30;
	ds_put_le64(seg2, c), ds_put_le32(seg2 + 8, 4288), seg2[15] = 0x00;
	tu_fill(w, sizeof(w), 11, 0);
	memcpy(pg_ptr(&f.g, a + 100), w, 5000);
	memcpy(pg_ptr(&f.g, b), w + 5000, 3000);
	memcpy(pg_ptr(&f.g, c), w + 8000, 4288);
	pg_sqe(sqe, 0x01, 1, 0, 0, 0, 0, 23);
	sqe[1] = 0x40;                                    /* PSDT 01b */
	ds_put_le64(sqe + 24, s1), ds_put_le32(sqe + 32, 48), sqe[39] = 0x20;   /* segment */
	assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL), 0);
	memset(pg_ptr(&f.g, a), 0, 8192);
	pg_sqe(sqe, 0x02, 1, a, 0, 0, 0, 23);             /* read back with PRPs */
	ds_put_le64(sqe + 32, a + 4096);
	pg_prps(&f.g, sqe, (uint64_t[]){ a, a + 4096, b }, 3, 0, 12288, pg_alloc(&f.g, 1));
	assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL), 0);
	assert_memory_equal(pg_ptr(&f.g, a), w, 8192);
	assert_memory_equal(pg_ptr(&f.g, b), w + 8192, 4096);
	/* A data block shorter than the transfer. */
	pg_sqe(sqe, 0x02, 1, 0, 0, 0, 0, 23);
	sqe[1] = 0x40;
	ds_put_le64(sqe + 24, a), ds_put_le32(sqe + 32, 4096), sqe[39] = 0x00;
	assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL), NVMEEMU_SGL_LENGTH_INVALID | NVMEEMU_DNR);
	/* No SGLs in admin commands. */
	pg_sqe(sqe, 0x06, 0, a, 0, 1, 0, 0);
	sqe[1] = 0x40;
	assert_int_equal(pg_cmd(&f.g, 0, sqe, NULL), NVMEEMU_INVALID_FIELD | NVMEEMU_DNR);
	fix_close(&f);
}

static void test_nvme_pci_bad_prp(void **state)
{
	uint8_t sqe[64];
	struct fix f;
	uint64_t a;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	a = pg_alloc(&f.g, 1);
	for (int pass = 0; pass < 2; pass++) {
		f.g.no_map = pass;
		pg_sqe(sqe, 0x02, 1, MEM_BYTES + 4096, 0, 0, 0, 7);   /* past guest RAM */
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL) & 0x7ff, NVMEEMU_DATA_XFER_ERROR);
		pg_sqe(sqe, 0x01, 1, a, MEM_BYTES, 0, 0, 15);         /* PRP2 past RAM */
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL) & 0x7ff, NVMEEMU_DATA_XFER_ERROR);
		pg_sqe(sqe, 0x01, 1, a, a + 8, 0, 0, 15);             /* PRP2 with an offset */
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL) & 0x7ff, NVMEEMU_PRP_OFFSET_INVALID);
		pg_sqe(sqe, 0x01, 1, a + 2, 0, 0, 0, 0);              /* PRP1 not dword aligned */
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL) & 0x7ff, NVMEEMU_PRP_OFFSET_INVALID);
		pg_sqe(sqe, 0x02, 1, a, MEM_BYTES + 4096, 0, 0, 63);  /* PRP list past RAM */
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL) & 0x7ff, NVMEEMU_DATA_XFER_ERROR);
	}
	/* Identify into unreachable memory. */
	pg_sqe(sqe, 0x06, 0, MEM_BYTES * 2, 0, 1, 0, 0);
	assert_int_equal(pg_cmd(&f.g, 0, sqe, NULL) & 0x7ff, NVMEEMU_DATA_XFER_ERROR);
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 2, 0);
	fix_close(&f);
}

static void test_nvme_pci_bad_doorbell(void **state)
{
	uint8_t sqe[64];
	struct fix f;

	(void)state;
	fix_open(&f, "mem:1M", true);
	pg_wr32(&f.g, 0x1000 + 8 * 7, 3);                /* a queue that does not exist */
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 2, 0);
	pg_wr32(&f.g, 0x1000, 32);                        /* tail = size: fatal */
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 3, 3);
	/* A reset clears it and the controller works again. */
	assert_int_equal(pg_disable(&f.g), 0);
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 2, 0);
	assert_int_equal(pg_enable(&f.g, 32), 0);
	pg_sqe(sqe, 0x06, 0, pg_alloc(&f.g, 1), 0, 1, 0, 0);
	assert_int_equal(pg_cmd(&f.g, 0, sqe, NULL), 0);
	pg_wr32(&f.g, 0x1004, 40);                        /* CQ head past the queue */
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 2, 2);
	fix_close(&f);
}

/* CC.EN = 0 with 64 writes in flight on two queues: the reset waits for
 * them (they reach the disk), then the controller comes back. */
static void test_nvme_pci_reset_under_load(void **state)
{
	uint8_t sqe[64], cqe[16];
	struct fix f;
	uint64_t a;

	(void)state;
	fix_open(&f, "delay:2ms:mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 2, 64), 0);
	a = pg_alloc(&f.g, 1);
	memset(pg_ptr(&f.g, a), 0xab, 4096);
	for (unsigned i = 0; i < 64; i++) {
		pg_sqe(sqe, 0x01, 1, a, 0, i * 8, 0, 7);
		pg_push(&f.g, 1 + i % 2, sqe);
	}
	pg_ring(&f.g, 1), pg_ring(&f.g, 2);
	reactor_run_once(f.g.r, false);
	pg_wr32(&f.g, 0x14, 0x00460000);
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 1, 1);    /* still draining */
	assert_int_equal(pg_disable(&f.g), 0);
	assert_int_equal(pg_enable(&f.g, 32), 0);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	/* The writes reached the disk. */
	memset(pg_ptr(&f.g, a), 0, 4096);
	pg_sqe(sqe, 0x02, 1, a, 0, 63 * 8, 0, 7);
	assert_int_equal(pg_cmd(&f.g, 1, sqe, cqe), 0);
	assert_int_equal(*(uint8_t *)pg_ptr(&f.g, a + 4095), 0xab);
	fix_close(&f);
}

/* A reset while a Delete I/O SQ waits for the SQ's writes: both end,
 * and RDY clears. */
static void test_nvme_pci_reset_during_delete(void **state)
{
	uint8_t sqe[64];
	struct fix f;
	uint64_t a;

	(void)state;
	fix_open(&f, "delay:2ms:mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 32), 0);
	a = pg_alloc(&f.g, 1);
	for (unsigned i = 0; i < 16; i++) {
		pg_sqe(sqe, 0x01, 1, a, 0, i * 8, 0, 7);
		pg_push(&f.g, 1, sqe);
	}
	pg_ring(&f.g, 1);
	reactor_run_once(f.g.r, false);
	pg_sqe(sqe, 0x00, 0, 0, 0, 1, 0, 0);
	pg_push(&f.g, 0, sqe);
	pg_ring(&f.g, 0);
	for (int i = 0; i < 4; i++)
		reactor_run_once(f.g.r, false);
	assert_int_equal(pg_disable(&f.g), 0);
	assert_int_equal(pg_enable(&f.g, 32), 0);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	fix_close(&f);
}

static void test_nvme_pci_shutdown(void **state)
{
	struct fix f;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	admin(&f, 0x00, 0, 1, 0, 0);
	admin(&f, 0x04, 0, 1, 0, 0);
	pg_wr32(&f.g, 0x14, 0x00464001);                 /* SHN 01b */
	assert_int_equal(pg_rd32(&f.g, 0x1c) >> 2 & 3, 2);
	fix_close(&f);
}

/* A masked vector leaves its message pending in the PBA until unmasked;
 * a 2-entry CQ takes completions as the head moves. */
static void test_nvme_pci_msix_mask(void **state)
{
	uint8_t sqe[64], cqe[16];
	uint64_t pba = 0;
	struct fix f;
	unsigned before, got = 0;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 2), 0);
	nvmeemu_pci_mmio_write(f.g.p, 4, 16 + 12, 4, 1);  /* mask vector 1 */
	before = atomic_load(&f.g.msi[1]);
	pg_sqe(sqe, 0x00, 1, 0, 0, 0, 0, 0);
	pg_push(&f.g, 1, sqe);
	pg_ring(&f.g, 1);
	for (int i = 0; i < 100; i++)
		reactor_run_once(f.g.r, false);
	assert_int_equal(atomic_load(&f.g.msi[1]), before);
	nvmeemu_pci_mmio_read(f.g.p, 4, 0x800, 4, &pba);
	assert_int_equal(pba & 2, 2);
	nvmeemu_pci_mmio_write(f.g.p, 4, 16 + 12, 4, 0);
	assert_int_equal(atomic_load(&f.g.msi[1]), before + 1);
	nvmeemu_pci_mmio_read(f.g.p, 4, 0x800, 4, &pba);
	assert_int_equal(pba & 2, 0);
	assert_true(pg_pop(&f.g, 1, cqe));
	/* Sixteen flushes through a 2-entry CQ (one at a time in the SQ). */
	for (unsigned i = 0; i < 16; i++) {
		pg_sqe(sqe, 0x00, 1, 0, 0, 0, 0, 0);
		assert_int_equal(pg_cmd(&f.g, 1, sqe, NULL), 0);
		got++;
	}
	assert_int_equal(got, 16);
	fix_close(&f);
}

/* Interrupt Coalescing: THR 7 (8 entries) and a long TIME: 32 completions
 * in one go raise far fewer messages than 32. */
static void test_nvme_pci_coalescing(void **state)
{
	uint8_t sqe[64], cqe[16];
	struct fix f;
	unsigned n = 0, before;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 64), 0);
	admin(&f, 0x09, 0, 0x08, 0xff07, 0);
	before = atomic_load(&f.g.msi[1]);
	for (unsigned i = 0; i < 32; i++) {
		pg_sqe(sqe, 0x00, 1, 0, 0, 0, 0, 0);
		pg_push(&f.g, 1, sqe);
	}
	pg_ring(&f.g, 1);
	while (n < 32) {
		reactor_run_once(f.g.r, reactor_pending(f.g.r) > 0);
		while (pg_pop(&f.g, 1, cqe))
			n++;
	}
	wait_msi(&f.g, 1, before);
	assert_true(atomic_load(&f.g.msi[1]) - before <= 4);
	fix_close(&f);
}

/* Save with an AER held and I/O queues live, drop the function, restore
 * into a new one over a copy of guest memory: the queues go on where
 * they were and the re-held AER reports a new namespace. */
static void test_nvme_pci_save_restore(void **state)
{
	uint8_t sqe[64], cqe[16], *blob;
	struct fix f;
	struct pg g2;
	uint64_t a;
	int n;
	uint16_t aer_cid;
	struct disk *d2;

	(void)state;
	fix_open(&f, "mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 2, 8), 0);
	admin(&f, 0x09, 0, 0x0b, 0x100, 0);
	admin(&f, 0x09, 0, 0x08, 0x0203, 0);
	pg_sqe(sqe, 0x0c, 0, 0, 0, 0, 0, 0);
	aer_cid = pg_push(&f.g, 0, sqe);
	pg_ring(&f.g, 0);
	for (int i = 0; i < 10; i++)
		reactor_run_once(f.g.r, false);
	a = pg_alloc(&f.g, 1);
	for (unsigned i = 0; i < 5; i++) {                /* with the 12 below, queue 1 wraps after the restore */
		memset(pg_ptr(&f.g, a), 0x10 + i, 4096);
		pg_sqe(sqe, 0x01, 1, a, 0, i * 8, 0, 7);
		assert_int_equal(pg_cmd(&f.g, 1 + i % 2, sqe, NULL), 0);
	}
	n = nvmeemu_pci_save(f.g.p, NULL, 0);
	assert_true(n > 0);
	blob = malloc((size_t)n);
	assert_int_equal(nvmeemu_pci_save(f.g.p, blob, (size_t)n), n);

	assert_int_equal(pg_new(&g2, f.s, tu_reactor(), MEM_BYTES, 8), -EEXIST);
	{
		uint8_t *mem = malloc(MEM_BYTES);

		memcpy(mem, f.g.mem, MEM_BYTES);
		struct pg_queue q[PG_MAXQ + 1];
		uint64_t brk = f.g.brk;
		uint16_t cid = f.g.cid;

		memcpy(q, f.g.q, sizeof(q));
		pg_free(&f.g);
		assert_int_equal(pg_new(&f.g, f.s, tu_reactor(), MEM_BYTES, 8), 0);
		memcpy(f.g.mem, mem, MEM_BYTES);
		free(mem);
		memcpy(f.g.q, q, sizeof(q));
		f.g.brk = brk, f.g.cid = cid, f.g.nq = 2;
	}
	assert_int_equal(nvmeemu_pci_restore(f.g.p, blob, (size_t)n - 1), -EINVAL);
	blob[0] ^= 1;
	assert_int_equal(nvmeemu_pci_restore(f.g.p, blob, (size_t)n), -EINVAL);
	blob[0] ^= 1;
	assert_int_equal(nvmeemu_pci_restore(f.g.p, blob, (size_t)n), 0);
	free(blob);
	assert_int_equal(pg_rd32(&f.g, 0x1c) & 3, 1);
	assert_int_equal(pg_rd32(&f.g, 0x24), 31u << 16 | 31);
	/* The I/O queues go on. */
	for (unsigned i = 0; i < 12; i++) {
		memset(pg_ptr(&f.g, a), 0, 4096);
		pg_sqe(sqe, 0x02, 1, a, 0, (i % 5) * 8, 0, 7);
		assert_int_equal(pg_cmd(&f.g, 1 + i % 2, sqe, cqe), 0);
		assert_int_equal(pg_ptr(&f.g, a)[100], 0x10 + i % 5);
	}
	/* The AER is held again: a new namespace completes it. */
	d2 = nt_add_ns(f.s, 2, "mem:1M");
	{
		bool got = false;

		for (int i = 0; i < 1000 && !got; i++) {
			reactor_run_once(f.g.r, false);
			while (pg_pop(&f.g, 0, cqe))
				if (ds_get_le16(cqe + 12) == aer_cid) {
					assert_int_equal(ds_get_le32(cqe), 0x00040002);
					got = true;
				}
		}
		assert_true(got);
	}
	fix_close(&f);
	disk_unref(d2);
}

/* The status each injected status completes with (docs/decorator-error.md,
 * "What each frontend reports"; NVMe Base spec: Generic Command Status,
 * Media and Data Integrity Errors, and DNR where a retry cannot help). */
static const struct injected_status {
	const char *name;
	int read, write;                  /* the write column: every writing command */
} injected_statuses[] = {
	{ "eio", NVMEEMU_UNRECOVERED_READ, NVMEEMU_WRITE_FAULT },
	{ "enodata", NVMEEMU_UNRECOVERED_READ, NVMEEMU_WRITE_FAULT },
	{ "eilseq", NVMEEMU_UNRECOVERED_READ, NVMEEMU_WRITE_FAULT },
	{ "medium", NVMEEMU_UNRECOVERED_READ, NVMEEMU_WRITE_FAULT },
	{ "readonly", NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR, NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR },
	{ "erofs", NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR, NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR },
	{ "eperm", NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR, NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR },
	{ "eacces", NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR, NVMEEMU_WRITE_TO_RO | NVMEEMU_DNR },
	{ "enospc", NVMEEMU_CAPACITY_EXCEEDED | NVMEEMU_DNR, NVMEEMU_CAPACITY_EXCEEDED | NVMEEMU_DNR },
	{ "edquot", NVMEEMU_CAPACITY_EXCEEDED | NVMEEMU_DNR, NVMEEMU_CAPACITY_EXCEEDED | NVMEEMU_DNR },
	{ "efbig", NVMEEMU_CAPACITY_EXCEEDED | NVMEEMU_DNR, NVMEEMU_CAPACITY_EXCEEDED | NVMEEMU_DNR },
	{ "einval", NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR },
	{ "enotsup", NVMEEMU_INVALID_FIELD | NVMEEMU_DNR, NVMEEMU_INVALID_FIELD | NVMEEMU_DNR },
	{ "enomem", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
	{ "eagain", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
	{ "etimedout", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
	{ "ebusy", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
	{ "eshutdown", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
	{ "enodev", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
	{ "enxio", NVMEEMU_INTERNAL_ERROR, NVMEEMU_INTERNAL_ERROR },
};

/* Read, Write, Write Zeroes, Dataset Management (deallocate) and Flush of
 * 8 sectors at @lba; the I/O command's status. */
static int io_cmd(struct fix *f, uint8_t opc, uint64_t lba, uint64_t buf, uint64_t range)
{
	uint8_t sqe[64];

	if (opc == 0x09) {                                 /* one range (NR 0), AD */
		memset(pg_ptr(&f->g, range), 0, 16);
		ds_put_le32(pg_ptr(&f->g, range) + 4, 8);
		ds_put_le64(pg_ptr(&f->g, range) + 8, lba);
		pg_sqe(sqe, opc, 1, range, 0, 0, 1u << 2, 0);
	} else {
		pg_sqe(sqe, opc, 1, opc == 0x00 ? 0 : buf, 0, (uint32_t)lba,
		       (uint32_t)(lba >> 32), opc == 0x00 ? 0 : 7);
	}
	return pg_cmd(&f->g, 1, sqe, NULL);
}

static void test_nvme_pci_error_statuses(void **state)
{
	static const uint8_t writing[] = { 0x01, 0x08, 0x09 };
	char rules[64], err[256];
	uint64_t buf, range;
	struct fix f;
	int st;

	(void)state;
	fix_open(&f, "error:read:eio;range=0-7:mem:1M", true);
	assert_int_equal(pg_create_queues(&f.g, 1, 16), 0);
	buf = pg_alloc(&f.g, 1), range = pg_alloc(&f.g, 1);
	assert_int_equal(io_cmd(&f, 0x02, 0, buf, range), NVMEEMU_UNRECOVERED_READ);
	for (size_t i = 0; i < ARRAY_SIZE(injected_statuses); i++) {
		const struct injected_status *t = &injected_statuses[i];

		snprintf(rules, sizeof(rules), "all:%s;range=0-7", t->name);
		assert_int_equal(error_disk_set(f.d, rules, err, sizeof(err)), 0);
		st = io_cmd(&f, 0x02, 0, buf, range);
		if (st != t->read)
			fail_msg("%s read: status %#x, want %#x", t->name, st, t->read);
		for (size_t w = 0; w < sizeof(writing); w++) {
			st = io_cmd(&f, writing[w], 0, buf, range);
			if (st != t->write)
				fail_msg("%s opcode %#x: status %#x, want %#x", t->name, writing[w],
					 st, t->write);
		}
		snprintf(rules, sizeof(rules), "flush:%s", t->name);
		assert_int_equal(error_disk_set(f.d, rules, err, sizeof(err)), 0);
		st = io_cmd(&f, 0x00, 0, buf, range);
		if (st != t->write)
			fail_msg("%s flush: status %#x, want %#x", t->name, st, t->write);
		/* The function goes on serving: I/O the rules do not match. */
		assert_int_equal(io_cmd(&f, 0x01, 64, buf, range), 0);
		assert_int_equal(io_cmd(&f, 0x02, 64, buf, range), 0);
		assert_int_equal(pg_rd32(&f.g, 0x1c) & 2, 0);       /* CSTS.CFS */
	}
	assert_int_equal(error_disk_clear(f.d), 0);
	for (size_t w = 0; w < sizeof(writing); w++)
		assert_int_equal(io_cmd(&f, writing[w], 0, buf, range), 0);
	assert_int_equal(io_cmd(&f, 0x00, 0, buf, range), 0);
	assert_int_equal(io_cmd(&f, 0x02, 0, buf, range), 0);
	fix_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvme_pci_config),
		cmocka_unit_test(test_nvme_pci_enable_identify),
		cmocka_unit_test(test_nvme_pci_queue_errors),
		cmocka_unit_test(test_nvme_pci_random_mem),
		cmocka_unit_test(test_nvme_pci_random_copy),
		cmocka_unit_test(test_nvme_pci_prp_list_chain),
		cmocka_unit_test(test_nvme_pci_sgl),
		cmocka_unit_test(test_nvme_pci_bad_prp),
		cmocka_unit_test(test_nvme_pci_bad_doorbell),
		cmocka_unit_test(test_nvme_pci_reset_under_load),
		cmocka_unit_test(test_nvme_pci_reset_during_delete),
		cmocka_unit_test(test_nvme_pci_shutdown),
		cmocka_unit_test(test_nvme_pci_msix_mask),
		cmocka_unit_test(test_nvme_pci_coalescing),
		cmocka_unit_test(test_nvme_pci_save_restore),
		cmocka_unit_test(test_nvme_pci_error_statuses),
	};

	return cmocka_run_group_tests(tests, tu_reactor_setup, tu_reactor_teardown);
}
