/* SPDX-License-Identifier: MIT */
/*
 * test-nvme-admin.c: the admin commands of the NVMe command core
 * (nvme_emul/) through nvmetest.h: Identify (every CNS the Linux host
 * sends, and the ones it must not get), Get/Set Features (each feature,
 * SEL, SV, sequence rules), Get Log Page (each page, offsets, the SMART
 * counters), Asynchronous Event Requests with a resized disk, Abort,
 * Keep Alive, Namespace Attachment, controller reset, and the
 * disk_status table. Expectations come from the NVMe Base Specification
 * 2.0 and docs/nvme.md, not from the code.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include "common/endian.h"
#include "common/reactor.h"
#include "nvme_emul/nvme.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/nvmetest.h"
#include "tests/unit/testutil.h"

#define DNR NVMEEMU_DNR
#define ALL 0xffffffffu

enum { IDENTIFY = 0x06, GET_LOG = 0x02, SET_FEAT = 0x09, GET_FEAT = 0x0A, AER = 0x0C,
       ABORT = 0x08, KEEP_ALIVE = 0x18, NS_ATTACH = 0x15 };

struct fix {
	struct nvmeemu_subsys *s;
	struct nvmeemu_ctrl *c;
	struct disk *d;
};

static void fix_open(struct fix *f, const char *spec)
{
	memset(f, 0, sizeof(*f));
	f->s = nt_subsys(&(struct nvmeemu_subsys_opts){ .nqn = "nqn.2024-01.org.example:admin" });
	f->d = nt_add_ns(f->s, 1, spec);
	f->c = nt_ctrl(f->s, 1, 0);
}

static void fix_close(struct fix *f)
{
	nvmeemu_ctrl_free(f->c);
	/* Posted AER completions must not outlive the test's frames. */
	while (reactor_pending(tu_reactor()))
		reactor_run_once(tu_reactor(), true);
	nvmeemu_subsys_free(f->s);
	disk_unref(f->d);
}

static uint16_t identify(struct nvmeemu_ctrl *c, uint8_t cns, uint32_t nsid, uint32_t cdw11,
			 uint8_t *page)
{
	struct nt_sqe q = nt_sqe(IDENTIFY, nsid, cns, cdw11, 0, 0, 0, 0);

	memset(page, 0xa5, 4096);
	return nt_run(c, 0, &q, page, 4096, NULL);
}

static uint16_t get_log(struct nvmeemu_ctrl *c, uint8_t lid, uint32_t nsid, bool rae,
			uint64_t lpo, void *buf, size_t len)
{
	uint32_t numd = (uint32_t)(len / 4 - 1);
	struct nt_sqe q = nt_sqe(GET_LOG, nsid, lid | (rae ? 1u << 15 : 0) | (numd & 0xffff) << 16,
				 numd >> 16, (uint32_t)lpo, (uint32_t)(lpo >> 32), 0, 0);

	memset(buf, 0xa5, len);
	return nt_run(c, 0, &q, buf, len, NULL);
}

static uint16_t set_feat(struct nvmeemu_ctrl *c, uint32_t nsid, uint32_t cdw10, uint32_t cdw11,
			 void *data, size_t len, uint32_t *dw0)
{
	struct nt_sqe q = nt_sqe(SET_FEAT, nsid, cdw10, cdw11, 0, 0, 0, 0);
	struct nt_result r;
	uint16_t st = nt_run(c, 0, &q, data, len, &r);

	if (dw0)
		*dw0 = r.dw0;
	return st;
}

static uint16_t get_feat(struct nvmeemu_ctrl *c, uint32_t nsid, uint8_t fid, uint8_t sel,
			 uint32_t cdw11, void *data, size_t len, uint32_t *dw0)
{
	struct nt_sqe q = nt_sqe(GET_FEAT, nsid, fid | (uint32_t)sel << 8, cdw11, 0, 0, 0, 0);
	struct nt_result r;
	uint16_t st = nt_run(c, 0, &q, data, len, &r);

	if (dw0)
		*dw0 = r.dw0;
	return st;
}

static void write_block(struct nvmeemu_ctrl *c, uint64_t lba)
{
	uint8_t buf[512] = { 1 };
	struct nt_sqe q = nt_rw(0x01, 1, lba, 1, 0);

	nt_assert_status(nt_run(c, 1, &q, buf, sizeof(buf), NULL), 0);
}

/* ---- Identify ---------------------------------------------------------------------- */

static void test_nvme_admin_identify_ctrl(void **state)
{
	struct fix f;
	uint8_t p[4096];

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(identify(f.c, 0x01, 0, 0, p), 0);
	assert_int_equal(ds_get_le16(p + 78), 1);               /* CNTLID */
	assert_int_equal(ds_get_le32(p + 80), 0x00020000);      /* VER */
	assert_int_equal(p[77], 6);                             /* MDTS default */
	assert_int_equal(p[512], 0x66);
	assert_int_equal(p[513], 0x44);
	assert_int_equal(ds_get_le32(p + 516), NVMEEMU_MAX_NSID);
	assert_true(ds_get_le16(p + 520) & (1u << 5));          /* ONCS reservations */
	assert_true(ds_get_le16(p + 520) & (1u << 3));          /* ONCS write zeroes */
	assert_false(ds_get_le16(p + 520) & (1u << 1));         /* no write uncorrectable */
	assert_true(ds_get_le32(p + 92) & (1u << 8));           /* OAES namespace attribute */
	assert_int_equal(p[259], NVMEEMU_MAX_AER - 1);          /* AERL */
	assert_true(p[261] & 2);                                /* LPA: effects log */
	assert_int_not_equal(ds_get_le16(p + 320), 0);          /* KAS */
	assert_memory_equal(p + 768, "nqn.2024-01.org.example:admin", 29);
	assert_int_equal(p[768 + 29], 0);
	assert_int_equal(p[4 + 19] != 0, 1);                    /* SN space padded */
	assert_int_equal(p[111], 1);                            /* CNTRLTYPE */
	fix_close(&f);
}

static void test_nvme_admin_identify_ns(void **state)
{
	struct fix f;
	uint8_t p[4096], d[4096];

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(identify(f.c, 0x00, 1, 0, p), 0);
	assert_int_equal(ds_get_le64(p), 2048);                 /* NSZE */
	assert_int_equal(ds_get_le64(p + 8), 2048);
	assert_int_equal(p[128 + 2], 9);                        /* LBADS */
	assert_int_equal(p[25], 0);                             /* NLBAF */
	/* RESCAP of an anonymous controller: prwrap's single-registrant
	 * model (WE, EA, WE-RO, EA-RO, PTPL); IEKEY. */
	assert_int_equal(p[31], 0x80 | 0x1e | 1);
	/* The descriptors carry the same NGUID and EUI-64 as Identify. */
	nt_assert_status(identify(f.c, 0x03, 1, 0, d), 0);
	assert_int_equal(d[0], 1);
	assert_int_equal(d[1], 8);
	assert_memory_equal(d + 4, p + 120, 8);
	assert_int_equal(d[12], 2);
	assert_int_equal(d[13], 16);
	assert_memory_equal(d + 16, p + 104, 16);
	assert_int_equal(d[32], 3);
	assert_int_equal(d[52], 4);                             /* CSI */
	assert_false(tu_is_zero(p + 104, 16));
	/* Inactive but valid: zeroes; invalid: Invalid Namespace. */
	nt_assert_status(identify(f.c, 0x00, 7, 0, p), 0);
	assert_true(tu_is_zero(p, 4096));
	nt_assert_status(identify(f.c, 0x00, 0, 0, p), NVMEEMU_INVALID_NS | DNR);
	nt_assert_status(identify(f.c, 0x00, ALL, 0, p), NVMEEMU_INVALID_NS | DNR);
	nt_assert_status(identify(f.c, 0x03, 7, 0, p), NVMEEMU_INVALID_NS | DNR);
	/* I/O command set independent namespace: ready. */
	nt_assert_status(identify(f.c, 0x08, 1, 0, p), 0);
	assert_int_equal(p[13], 1);
	fix_close(&f);
}

/* Two subsystems with the same NQN give a namespace the same identity
 * (a host sees it through two controllers, or across restarts). */
static void test_nvme_admin_identify_stable_ids(void **state)
{
	struct fix a, b;
	uint8_t p[4096], q[4096];

	(void)state;
	fix_open(&a, "mem:1M");
	fix_open(&b, "mem:2M");
	nt_assert_status(identify(a.c, 0x03, 1, 0, p), 0);
	nt_assert_status(identify(b.c, 0x03, 1, 0, q), 0);
	assert_memory_equal(p, q, 64);
	fix_close(&a);
	fix_close(&b);
}

static void test_nvme_admin_identify_lists(void **state)
{
	struct fix f;
	struct disk *d3, *d9;
	uint8_t p[4096];

	(void)state;
	fix_open(&f, "mem:1M");
	d3 = nt_add_ns(f.s, 3, "mem:1M");
	d9 = nt_add_ns(f.s, 9, "mem:1M");
	nt_assert_status(identify(f.c, 0x02, 0, 0, p), 0);
	assert_int_equal(ds_get_le32(p), 1);
	assert_int_equal(ds_get_le32(p + 4), 3);
	assert_int_equal(ds_get_le32(p + 8), 9);
	assert_int_equal(ds_get_le32(p + 12), 0);
	nt_assert_status(identify(f.c, 0x02, 3, 0, p), 0);      /* above NSID 3 */
	assert_int_equal(ds_get_le32(p), 9);
	assert_int_equal(ds_get_le32(p + 4), 0);
	nt_assert_status(identify(f.c, 0x02, 0xfffffffe, 0, p), NVMEEMU_INVALID_NS | DNR);
	/* CNS 06h and 05h with CSI 0 (what Linux asks), 1Ch, controller lists. */
	nt_assert_status(identify(f.c, 0x06, 0, 0, p), 0);
	assert_true(tu_is_zero(p, 4096));
	nt_assert_status(identify(f.c, 0x06, 0, 2u << 24, p), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(identify(f.c, 0x05, 1, 0, p), 0);
	nt_assert_status(identify(f.c, 0x1C, 0, 0, p), 0);
	assert_int_equal(ds_get_le64(p), 1);
	nt_assert_status(identify(f.c, 0x13, 0, 0, p), 0);
	assert_int_equal(ds_get_le16(p), 1);
	assert_int_equal(ds_get_le16(p + 2), 1);
	nt_assert_status(identify(f.c, 0x12, 3, 0, p), 0);
	assert_int_equal(ds_get_le16(p), 1);
	nt_assert_status(identify(f.c, 0x11, 1, 0, p), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(identify(f.c, 0xff, 0, 0, p), NVMEEMU_INVALID_FIELD | DNR);
	/* A short host buffer: Data SGL Length Invalid. */
	{
		struct nt_sqe q = nt_sqe(IDENTIFY, 0, 1, 0, 0, 0, 0, 0);

		nt_assert_status(nt_run(f.c, 0, &q, p, 100, NULL),
				 NVMEEMU_SGL_LENGTH_INVALID | DNR);
		nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, NULL),
				 NVMEEMU_SGL_LENGTH_INVALID | DNR);
	}
	disk_unref(d3);
	disk_unref(d9);
	fix_close(&f);
}

/* ---- features ------------------------------------------------------------------------- */

static void test_nvme_admin_features_queues(void **state)
{
	struct fix f;
	uint32_t dw0;
	uint16_t nsq, ncq;

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(get_feat(f.c, 0, 0x07, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 7u << 16 | 7);                    /* the maximum, 0-based */
	nt_assert_status(set_feat(f.c, 0, 0x07, 1u << 16 | 3, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 1u << 16 | 3);
	nvmeemu_ctrl_granted_queues(f.c, &nsq, &ncq);
	assert_int_equal(nsq, 4);
	assert_int_equal(ncq, 2);
	nt_assert_status(set_feat(f.c, 0, 0x07, 100u << 16 | 100, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 7u << 16 | 7);                    /* clamped */
	nt_assert_status(set_feat(f.c, 0, 0x07, 0xffff, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	nvmeemu_ctrl_set_io_queues(f.c, 2);
	nt_assert_status(set_feat(f.c, 0, 0x07, 0, NULL, 0, NULL), NVMEEMU_CMD_SEQ_ERROR | DNR);
	fix_close(&f);
}

static void test_nvme_admin_features_misc(void **state)
{
	struct fix f;
	uint32_t dw0;
	uint8_t ts[8] = { 0 };

	(void)state;
	fix_open(&f, "mem:1M");
	/* Arbitration is stored; power state 0 only. */
	nt_assert_status(set_feat(f.c, 0, 0x01, 0x03020107, NULL, 0, NULL), 0);
	nt_assert_status(get_feat(f.c, 0, 0x01, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 0x03020107);
	nt_assert_status(get_feat(f.c, 0, 0x01, 1, 0, NULL, 0, &dw0), 0);      /* default */
	assert_int_equal(dw0, 0);
	nt_assert_status(set_feat(f.c, 0, 0x02, 1, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(set_feat(f.c, 0, 0x02, 0, NULL, 0, NULL), 0);
	/* Temperature threshold of the composite sensor. */
	nt_assert_status(set_feat(f.c, 0, 0x04, 0x0150, NULL, 0, NULL), 0);
	nt_assert_status(get_feat(f.c, 0, 0x04, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0 & 0xffff, 0x0150);
	nt_assert_status(set_feat(f.c, 0, 0x04, 3u << 16, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	/* Error recovery without DULBE. */
	nt_assert_status(set_feat(f.c, 0, 0x05, 1u << 16, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(set_feat(f.c, 0, 0x05, 10, NULL, 0, NULL), 0);
	/* SV: nothing is saveable; an unknown feature; SEL 3. */
	nt_assert_status(set_feat(f.c, 0, 0x01u | 1u << 31, 0, NULL, 0, NULL),
			 NVMEEMU_FEAT_NOT_SAVEABLE | DNR);
	nt_assert_status(set_feat(f.c, 0, 0x0C, 0, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(get_feat(f.c, 0, 0x7e, 0, 0, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(get_feat(f.c, 0, 0x01, 4, 0, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(get_feat(f.c, 0, 0x82, 3, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 6);                               /* ns specific, changeable */
	nt_assert_status(get_feat(f.c, 0, 0x83, 3, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 2);                               /* ns specific only */
	nt_assert_status(set_feat(f.c, 5, 0x01, 0, NULL, 0, NULL), NVMEEMU_FEAT_NOT_NS_SPECIFIC | DNR);
	/* Keep Alive Timer: stored, and what the transport checks. */
	nt_assert_status(set_feat(f.c, 0, 0x0F, 5000, NULL, 0, NULL), 0);
	nt_assert_status(get_feat(f.c, 0, 0x0F, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 5000);
	assert_int_equal(nvmeemu_ctrl_kato_ms(f.c), 5000);
	assert_false(nvmeemu_ctrl_kato_expired(f.c, reactor_now_ns()));
	assert_true(nvmeemu_ctrl_kato_expired(f.c, reactor_now_ns() + 6000000000ull));
	/* Timestamp: set by the host, read back no earlier (origin 001b). */
	ds_put_le64(ts, 1000000);
	nt_assert_status(set_feat(f.c, 0, 0x0E, 0, ts, 8, NULL), 0);
	memset(ts, 0, sizeof(ts));
	nt_assert_status(get_feat(f.c, 0, 0x0E, 0, 0, ts, 8, NULL), 0);
	assert_true((ds_get_le64(ts) & 0xffffffffffffull) >= 1000000);
	assert_int_equal((ts[6] >> 1) & 7, 1);
	/* Interrupt features with vectors (nt_ctrl declares 4). */
	nt_assert_status(set_feat(f.c, 0, 0x08, 0x0a05, NULL, 0, NULL), 0);
	assert_int_equal(nvmeemu_ctrl_coalescing(f.c), 0x0a05);
	nt_assert_status(set_feat(f.c, 0, 0x09, 1u << 16 | 2, NULL, 0, NULL), 0);
	assert_true(nvmeemu_ctrl_vector_no_coalescing(f.c, 2));
	nt_assert_status(get_feat(f.c, 0, 0x09, 0, 2, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 1u << 16 | 2);
	nt_assert_status(set_feat(f.c, 0, 0x09, 4, NULL, 0, NULL), NVMEEMU_INVALID_FIELD | DNR);
	fix_close(&f);
}

/* Volatile write cache: present when a namespace's disk has one, and
 * WCE = 0 sends every write with FUA. */
/*
 * Keep Alive Timer: commands stamp their arrival only while a KATO is
 * set, so setting one must start the timer itself (NVMe Base spec §3.9),
 * and every command after it restarts it. The sleeps only make the
 * clock move past the controller's creation; nothing here measures
 * time: each check asks about an instant at most one KATO after a
 * moment the timer must have been restarted at.
 */
static void test_nvme_admin_kato_armed_after_idle(void **state)
{
	struct fix f;
	struct nt_sqe q;
	uint64_t t;

	(void)state;
	fix_open(&f, "mem:1M");
	q = nt_sqe(KEEP_ALIVE, 0, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, NULL), 0);     /* traffic without a KATO */
	usleep(3000);
	t = reactor_now_ns();
	nt_assert_status(set_feat(f.c, 0, 0x0F, 1, NULL, 0, NULL), 0);  /* KATO 1 ms */
	assert_false(nvmeemu_ctrl_kato_expired(f.c, t + 1000000));
	assert_true(nvmeemu_ctrl_kato_expired(f.c, reactor_now_ns() + 2000000));
	usleep(3000);
	t = reactor_now_ns();
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, NULL), 0);
	assert_false(nvmeemu_ctrl_kato_expired(f.c, t + 1000000));
	/* The transport's setter (fabrics Connect) starts it the same way. */
	nvmeemu_ctrl_set_kato_ms(f.c, 0);
	usleep(3000);
	t = reactor_now_ns();
	nvmeemu_ctrl_set_kato_ms(f.c, 1);
	assert_false(nvmeemu_ctrl_kato_expired(f.c, t + 1000000));
	fix_close(&f);
}

static void test_nvme_admin_features_vwc(void **state)
{
	struct mockdisk m = { 0 };
	struct disk *d = mockdisk_new(&m, &(struct mockdisk_opts){
		.sectors = 64, .fua = true, .caps = DISK_CAP_VOLATILE_CACHE });
	struct nvmeemu_subsys *s = nt_subsys(NULL);
	struct nvmeemu_ctrl *c;
	uint8_t p[4096];
	uint32_t dw0;
	char err[128];

	(void)state;
	assert_int_equal(nvmeemu_subsys_add_ns(s, 1, d, err, sizeof(err)), 0);
	c = nt_ctrl(s, 1, 0);
	nt_assert_status(identify(c, 0x01, 0, 0, p), 0);
	assert_int_equal(p[525] & 1, 1);
	nt_assert_status(get_feat(c, 0, 0x06, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 1);
	write_block(c, 0);
	assert_int_equal(m.fua_writes, 0);
	nt_assert_status(set_feat(c, 0, 0x06, 0, NULL, 0, NULL), 0);
	write_block(c, 1);
	assert_int_equal(m.fua_writes, 1);
	nt_assert_status(get_feat(c, 0, 0x06, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 0);
	nvmeemu_ctrl_free(c);
	nvmeemu_subsys_free(s);
	disk_unref(d);
	mockdisk_release(&m);
}

static void test_nvme_admin_features_host_id(void **state)
{
	struct fix f;
	uint8_t id[16], out[16];
	struct nvmeemu_subsys *fs;
	struct nvmeemu_ctrl *fc;

	(void)state;
	fix_open(&f, "mem:1M");
	memset(id, 0x42, sizeof(id));
	nt_assert_status(set_feat(f.c, 0, 0x81, 1, id, 16, NULL), 0);
	nt_assert_status(get_feat(f.c, 0, 0x81, 0, 1, out, 16, NULL), 0);
	assert_memory_equal(out, id, 16);
	/* A 128-bit identifier read as 64-bit: inconsistent format. */
	nt_assert_status(get_feat(f.c, 0, 0x81, 0, 0, out, 8, NULL),
			 NVMEEMU_HOSTID_INCONSISTENT | DNR);
	/* Not while I/O queues exist. */
	nvmeemu_ctrl_set_io_queues(f.c, 2);
	nt_assert_status(set_feat(f.c, 0, 0x81, 1, id, 16, NULL), NVMEEMU_CMD_SEQ_ERROR | DNR);
	fix_close(&f);
	/* Never over fabrics: Connect gave it. */
	fs = nt_subsys(&(struct nvmeemu_subsys_opts){ .fabrics = true, .sgls = 5 });
	fc = nt_ctrl(fs, 1, 0x11);
	nt_assert_status(set_feat(fc, 0, 0x81, 1, id, 16, NULL), NVMEEMU_CMD_SEQ_ERROR | DNR);
	nt_assert_status(get_feat(fc, 0, 0x81, 0, 1, out, 16, NULL), 0);
	assert_int_equal(out[0], 0x11);
	nvmeemu_ctrl_free(fc);
	nvmeemu_subsys_free(fs);
}

static void test_nvme_admin_features_resv(void **state)
{
	struct fix f;
	uint32_t dw0;

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(set_feat(f.c, 1, 0x82, 0x0e, NULL, 0, NULL), 0);
	nt_assert_status(get_feat(f.c, 1, 0x82, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 0x0e);
	nt_assert_status(set_feat(f.c, 2, 0x82, 0x0e, NULL, 0, NULL), NVMEEMU_INVALID_NS | DNR);
	nt_assert_status(get_feat(f.c, 1, 0x83, 0, 0, NULL, 0, &dw0), 0);
	assert_int_equal(dw0, 0);
	nt_assert_status(set_feat(f.c, 1, 0x83, 1, NULL, 0, NULL), NVMEEMU_FEAT_NOT_CHANGEABLE | DNR);
	nt_assert_status(get_feat(f.c, 9, 0x83, 0, 0, NULL, 0, NULL), NVMEEMU_INVALID_NS | DNR);
	fix_close(&f);
}

/* ---- log pages --------------------------------------------------------------------------- */

static void test_nvme_admin_log_smart(void **state)
{
	struct fix f;
	uint8_t p[512], buf[4096];
	struct nt_sqe q;

	(void)state;
	fix_open(&f, "mem:4M");
	nt_assert_status(get_log(f.c, 0x02, ALL, false, 0, p, 512), 0);
	assert_int_equal(ds_get_le64(p + 32), 0);
	assert_int_equal(ds_get_le64(p + 64), 0);
	/* 3 writes of 4 KiB and 2 reads: data units are 1000 x 512 bytes,
	 * rounded up. */
	for (int i = 0; i < 3; i++) {
		q = nt_rw(0x01, 1, (uint64_t)i * 8, 8, 0);
		nt_assert_status(nt_run(f.c, 1, &q, buf, sizeof(buf), NULL), 0);
	}
	for (int i = 0; i < 2; i++) {
		q = nt_rw(0x02, 1, 0, 8, 0);
		nt_assert_status(nt_run(f.c, 1, &q, buf, sizeof(buf), NULL), 0);
	}
	nt_assert_status(get_log(f.c, 0x02, 0, false, 0, p, 512), 0);
	assert_int_equal(ds_get_le64(p + 32), 1);               /* units read */
	assert_int_equal(ds_get_le64(p + 48), 1);               /* units written */
	assert_int_equal(ds_get_le64(p + 64), 2);               /* read commands */
	assert_int_equal(ds_get_le64(p + 80), 3);               /* write commands */
	assert_int_not_equal(ds_get_le16(p + 1), 0);            /* a temperature */
	nt_assert_status(get_log(f.c, 0x02, 1, false, 0, p, 512), NVMEEMU_INVALID_FIELD | DNR);
	fix_close(&f);
}

struct smart_writer {
	struct nvmeemu_ctrl *c;
	unsigned writes;
};

/* Writes 4 KiB @writes times on a reactor of its own thread. */
static void *smart_writer_thread(void *arg)
{
	struct smart_writer *w = arg;
	uint8_t buf[4096] = { 0 };

	for (unsigned i = 0; i < w->writes; i++) {
		struct nt_sqe q = nt_rw(0x01, 1, (uint64_t)i * 8, 8, 0);

		nt_assert_status(nt_run(w->c, 1, &q, buf, sizeof(buf), NULL), 0);
	}
	tu_reactor_done();
	return NULL;
}

/* The data counters are kept per thread (nvme.h) and Get Log Page sums
 * them: commands of threads that ended, one after the other (the second
 * reuses the first's counter slot), and of a thread still running. */
static void test_nvme_admin_log_smart_threads(void **state)
{
	struct fix f;
	uint8_t p[512], buf[4096];
	struct nt_sqe q = nt_rw(0x02, 1, 0, 8, 0);
	struct smart_writer w;
	pthread_t th;

	(void)state;
	fix_open(&f, "mem:4M");
	w = (struct smart_writer){ .c = f.c, .writes = 3 };
	nt_assert_status(nt_run(f.c, 1, &q, buf, sizeof(buf), NULL), 0);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(pthread_create(&th, NULL, smart_writer_thread, &w), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
	}
	nt_assert_status(nt_run(f.c, 1, &q, buf, sizeof(buf), NULL), 0);
	nt_assert_status(get_log(f.c, 0x02, 0, false, 0, p, 512), 0);
	assert_int_equal(ds_get_le64(p + 64), 2);               /* read commands */
	assert_int_equal(ds_get_le64(p + 80), 6);               /* write commands */
	assert_int_equal(ds_get_le64(p + 32), 1);               /* 16 x 512 bytes read */
	assert_int_equal(ds_get_le64(p + 48), 1);               /* 48 x 512 bytes written */
	fix_close(&f);
}

static void test_nvme_admin_log_pages(void **state)
{
	struct fix f;
	uint8_t p[4096];
	struct nt_sqe q;

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(get_log(f.c, 0x00, 0, false, 0, p, 1024), 0);
	assert_int_equal(ds_get_le32(p + 4 * 5) & 1, 1);
	assert_int_equal(ds_get_le32(p + 4 * 0x80) & 1, 1);
	assert_int_equal(ds_get_le32(p + 4 * 0x06) & 1, 0);
	/* Effects: admin at 0, I/O at 1024; Write changes content. */
	nt_assert_status(get_log(f.c, 0x05, 0, false, 0, p, 4096), 0);
	assert_int_equal(ds_get_le32(p + 4 * 0x06), 1);
	assert_int_equal(ds_get_le32(p + 4 * 0x01), 0);         /* no queue admin */
	assert_int_equal(ds_get_le32(p + 1024 + 4 * 0x02), 1);
	assert_int_equal(ds_get_le32(p + 1024 + 4 * 0x01), 3);
	assert_int_equal(ds_get_le32(p + 1024 + 4 * 0x04), 0);  /* no write uncorrectable */
	/* Firmware slot: slot 1 active with the firmware revision. */
	nt_assert_status(get_log(f.c, 0x03, 0, false, 0, p, 512), 0);
	assert_int_equal(p[0], 1);
	assert_false(tu_is_zero(p + 8, 8));
	/* Error log: a failed read shows up, newest first, with its LBA. */
	q = nt_rw(0x02, 1, 5000, 1, 0);
	nt_assert_status(nt_run(f.c, 1, &q, p, 512, NULL), NVMEEMU_LBA_RANGE | DNR);
	nt_assert_status(get_log(f.c, 0x01, 0, false, 0, p, 512), 0);
	assert_int_equal(ds_get_le64(p), 1);
	assert_int_equal(ds_get_le16(p + 8), 1);                /* SQID */
	assert_int_equal(ds_get_le16(p + 10), ds_get_le16(q.b + 2));
	assert_int_equal(ds_get_le16(p + 12) >> 1, NVMEEMU_LBA_RANGE | DNR);
	assert_int_equal(ds_get_le64(p + 16), 5000);
	assert_int_equal(ds_get_le32(p + 24), 1);
	/* Offsets: dword aligned, within the page; a slice moves. */
	nt_assert_status(get_log(f.c, 0x03, 0, false, 2, p, 512), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(get_log(f.c, 0x03, 0, false, 512, p, 512), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(get_log(f.c, 0x03, 0, false, 8, p, 8), 0);
	assert_false(tu_is_zero(p, 8));
	nt_assert_status(get_log(f.c, 0x07, 0, false, 0, p, 512), NVMEEMU_INVALID_LOG_PAGE | DNR);
	fix_close(&f);
}

/* ---- asynchronous events and resize -------------------------------------------------------- */

static void aer_start(struct nt_pending *p, struct nvmeemu_ctrl *c)
{
	struct nt_sqe q = nt_sqe(AER, 0, 0, 0, 0, 0, 0, 0);

	nt_start(p, c, 0, &q, NULL, 0);
}

/* A resized namespace raises Namespace Attribute Changed (00040002h)
 * through a held AER once AEC bit 8 is set; the next change waits until
 * the changed namespace list is read with RAE = 0 (NVMe Base spec §5.2). */
static void test_nvme_admin_aer_resize(void **state)
{
	struct fix f;
	struct nt_pending a, b;
	struct nt_result r;
	uint8_t p[4096];

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(set_feat(f.c, 0, 0x0B, 0x100, NULL, 0, NULL), 0);
	aer_start(&a, f.c);
	assert_false(nt_poll(&a));
	assert_int_equal(ramlayer_resize(layered_disk_layer(f.d, 0), 4096), 0);
	nt_assert_status(nt_wait(&a, &r), 0);
	assert_int_equal(r.dw0, 0x00040002);
	nt_assert_status(identify(f.c, 0x00, 1, 0, p), 0);
	assert_int_equal(ds_get_le64(p), 4096);                 /* NSZE is live */
	/* Masked until the log is read with RAE = 0. */
	aer_start(&b, f.c);
	assert_int_equal(ramlayer_resize(layered_disk_layer(f.d, 0), 8192), 0);
	assert_false(nt_poll(&b));
	nt_assert_status(get_log(f.c, 0x04, ALL, true, 0, p, 4096), 0);
	assert_int_equal(ds_get_le32(p), 1);
	assert_int_equal(ds_get_le32(p + 4), 0);
	assert_false(nt_poll(&b));                              /* RAE kept it masked */
	nt_assert_status(get_log(f.c, 0x04, ALL, false, 0, p, 4096), 0);
	assert_int_equal(ds_get_le32(p), 0);                    /* read cleared it */
	assert_false(nt_poll(&b));                              /* nothing new yet */
	assert_int_equal(ramlayer_resize(layered_disk_layer(f.d, 0), 2048), 0);
	nt_assert_status(nt_wait(&b, &r), 0);
	assert_int_equal(r.dw0, 0x00040002);
	fix_close(&f);
}

/* With AEC bit 8 clear the change waits; setting it fires the held event. */
static void test_nvme_admin_aer_masked_then_enabled(void **state)
{
	struct fix f;
	struct nt_pending a;
	struct nt_result r;

	(void)state;
	fix_open(&f, "mem:1M");
	aer_start(&a, f.c);
	assert_int_equal(ramlayer_resize(layered_disk_layer(f.d, 0), 4096), 0);
	assert_false(nt_poll(&a));
	nt_assert_status(set_feat(f.c, 0, 0x0B, 0x100, NULL, 0, NULL), 0);
	nt_assert_status(nt_wait(&a, &r), 0);
	assert_int_equal(r.dw0, 0x00040002);
	fix_close(&f);
}

static void test_nvme_admin_aer_limit_abort_reset(void **state)
{
	struct fix f;
	struct nt_pending a[NVMEEMU_MAX_AER + 1];
	struct nt_result r;
	struct nt_sqe q;

	(void)state;
	fix_open(&f, "mem:1M");
	for (int i = 0; i < NVMEEMU_MAX_AER; i++)
		aer_start(&a[i], f.c);
	aer_start(&a[NVMEEMU_MAX_AER], f.c);
	nt_assert_status(nt_wait(&a[NVMEEMU_MAX_AER], NULL), NVMEEMU_AER_LIMIT | DNR);
	/* Abort: a held AER is aborted (DW0 0); anything else is not (1). */
	q = nt_sqe(ABORT, 0, (uint32_t)ds_get_le16(a[0].cmd.sqe + 2) << 16, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, &r), 0);
	assert_int_equal(r.dw0, 0);
	nt_assert_status(nt_wait(&a[0], NULL), NVMEEMU_ABORT_REQUESTED);
	q = nt_sqe(ABORT, 0, 0xbeefu << 16 | 1, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, &r), 0);
	assert_int_equal(r.dw0, 1);
	/* A reset ends the others with SQ deletion. */
	nvmeemu_ctrl_reset(f.c);
	for (int i = 1; i < NVMEEMU_MAX_AER; i++)
		nt_assert_status(nt_wait(&a[i], NULL), NVMEEMU_ABORT_SQ_DELETION);
	/* Keep Alive has nothing to say. */
	q = nt_sqe(KEEP_ALIVE, 0, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.c, 0, &q, NULL, 0, NULL), 0);
	fix_close(&f);
}

/* ---- namespaces ------------------------------------------------------------------------ */

static void test_nvme_admin_ns_attach(void **state)
{
	struct fix f;
	struct nvmeemu_ctrl *c2;
	struct nt_pending a;
	struct nt_result r;
	uint8_t list[4096] = { 0 }, p[4096], buf[512];
	struct nt_sqe q;
	struct disk *d2;

	(void)state;
	fix_open(&f, "mem:1M");
	c2 = nt_ctrl(f.s, 2, 0);
	nt_assert_status(set_feat(f.c, 0, 0x0B, 0x100, NULL, 0, NULL), 0);
	aer_start(&a, f.c);
	/* Detach namespace 1 from controller 1 by command. */
	ds_put_le16(list, 1);
	ds_put_le16(list + 2, 1);
	q = nt_sqe(NS_ATTACH, 1, 1, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(c2, 0, &q, list, sizeof(list), NULL), 0);
	nt_assert_status(nt_wait(&a, &r), 0);
	assert_int_equal(r.dw0, 0x00040002);
	q = nt_rw(0x02, 1, 0, 1, 0);
	nt_assert_status(nt_run(f.c, 1, &q, buf, sizeof(buf), NULL), NVMEEMU_INVALID_NS | DNR);
	nt_assert_status(nt_run(c2, 1, &q, buf, sizeof(buf), NULL), 0);
	nt_assert_status(nt_run(c2, 0, &(struct nt_sqe){ 0 }, NULL, 0, NULL), NVMEEMU_INVALID_OPCODE | DNR);
	q = nt_sqe(NS_ATTACH, 1, 1, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(c2, 0, &q, list, sizeof(list), NULL), NVMEEMU_NS_NOT_ATTACHED | DNR);
	ds_put_le16(list + 2, 77);
	q = nt_sqe(NS_ATTACH, 1, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(c2, 0, &q, list, sizeof(list), NULL), NVMEEMU_CTRL_LIST_INVALID | DNR);
	ds_put_le16(list + 2, 1);
	nt_assert_status(nt_run(c2, 0, &q, list, sizeof(list), NULL), 0);
	nt_assert_status(nt_run(c2, 0, &q, list, sizeof(list), NULL), NVMEEMU_NS_ALREADY_ATTACHED | DNR);
	q = nt_sqe(NS_ATTACH, 5, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(c2, 0, &q, list, sizeof(list), NULL), NVMEEMU_INVALID_NS | DNR);
	/* The host side: detach, attach, add and remove. */
	assert_int_equal(nvmeemu_ctrl_detach_ns(c2, 1), 0);
	assert_int_equal(nvmeemu_ctrl_detach_ns(c2, 1), -ENXIO);
	assert_int_equal(nvmeemu_ctrl_attach_ns(c2, 1), 0);
	assert_int_equal(nvmeemu_ctrl_attach_ns(c2, 1), -EEXIST);
	assert_int_equal(nvmeemu_ctrl_attach_ns(c2, 4), -ENOENT);
	d2 = nt_add_ns(f.s, 4, "mem:1M");
	nt_assert_status(identify(c2, 0x02, 0, 0, p), 0);
	assert_int_equal(ds_get_le32(p + 4), 4);
	assert_int_equal(nvmeemu_subsys_remove_ns(f.s, 4), 0);
	assert_int_equal(nvmeemu_subsys_remove_ns(f.s, 4), -ENOENT);
	nt_assert_status(identify(c2, 0x02, 0, 0, p), 0);
	assert_int_equal(ds_get_le32(p + 4), 0);
	/* The changed list names both. */
	nt_assert_status(get_log(c2, 0x04, ALL, false, 0, p, 4096), 0);
	assert_int_equal(ds_get_le32(p), 1);
	assert_int_equal(ds_get_le32(p + 4), 4);
	disk_unref(d2);
	nvmeemu_ctrl_free(c2);
	fix_close(&f);
}

struct ns_remover {
	struct nvmeemu_subsys *s;
	struct nt_pending *p;
	int ret;
	bool write_done_first;
};

static void *ns_remove_thread(void *arg)
{
	struct ns_remover *rm = arg;

	rm->ret = nvmeemu_subsys_remove_ns(rm->s, 1);
	rm->write_done_first = __atomic_load_n(&rm->p->done, __ATOMIC_ACQUIRE);
	return NULL;
}

/* Removing a namespace waits for the commands running on it (regression
 * from review: it returned at once, so serve's flush of the disk right
 * after the removal could miss a write still in flight). */
static void test_nvme_admin_remove_ns_waits_regression(void **state)
{
	struct ns_remover rm = { .ret = 1 };
	struct nt_pending p;
	struct fix f;
	uint8_t buf[512] = { 0x5a };
	struct nt_sqe q = nt_rw(0x01, 1, 0, 1, 0);
	pthread_t th;

	(void)state;
	fix_open(&f, "delay:30ms:mem:1M");
	nt_start(&p, f.c, 1, &q, buf, sizeof(buf));
	assert_false(p.done);
	rm.s = f.s;
	rm.p = &p;
	assert_int_equal(pthread_create(&th, NULL, ns_remove_thread, &rm), 0);
	nt_assert_status(nt_wait(&p, NULL), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rm.ret, 0);
	assert_true(rm.write_done_first);
	fix_close(&f);
}

struct ns_remover_all {
	struct nvmeemu_subsys *s;
	struct nt_pending *p;
	unsigned n;
	int ret;
	bool all_done_first;
};

static void *ns_remove_all_thread(void *arg)
{
	struct ns_remover_all *rm = arg;

	rm->ret = nvmeemu_subsys_remove_ns(rm->s, 1);
	rm->all_done_first = true;
	for (unsigned i = 0; i < rm->n; i++)
		rm->all_done_first &= __atomic_load_n(&rm->p[i].done, __ATOMIC_ACQUIRE);
	return NULL;
}

/* Several commands of one thread share the thread's namespace reference
 * (nvme.h): the removal still waits for every one of them; while it
 * waits, a command on the removed NSID fails, and one on a namespace
 * added again under that NSID runs, on the same thread. */
static void test_nvme_admin_remove_ns_waits_queue(void **state)
{
	enum { N = 4 };
	struct ns_remover_all rm = { .n = N, .ret = 1 };
	struct nt_pending p[N];
	struct fix f;
	uint8_t buf[N][512], page[4096], one[512];
	struct nt_sqe q = nt_rw(0x02, 1, 0, 1, 0);
	struct disk *d2;
	pthread_t th;

	(void)state;
	fix_open(&f, "delay:300ms:mem:1M");
	for (unsigned i = 0; i < N; i++)
		nt_start(&p[i], f.c, 1, &q, buf[i], sizeof(buf[i]));
	rm.s = f.s;
	rm.p = p;
	assert_int_equal(pthread_create(&th, NULL, ns_remove_all_thread, &rm), 0);
	/* Until the removal has cleared the table (the active list). */
	do {
		nt_assert_status(identify(f.c, 0x02, 0, 0, page), 0);
	} while (ds_get_le32(page) == 1);
	nt_assert_status(nt_run(f.c, 1, &q, one, sizeof(one), NULL), NVMEEMU_INVALID_NS | DNR);
	d2 = nt_add_ns(f.s, 1, "mem:1M");
	nt_assert_status(nt_run(f.c, 1, &q, one, sizeof(one), NULL), 0);
	for (unsigned i = 0; i < N; i++)
		nt_assert_status(nt_wait(&p[i], NULL), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(rm.ret, 0);
	assert_true(rm.all_done_first);
	nt_assert_status(nt_run(f.c, 1, &q, one, sizeof(one), NULL), 0);
	assert_int_equal(nvmeemu_subsys_remove_ns(f.s, 1), 0);
	disk_unref(d2);
	fix_close(&f);
}

/* ---- the disk_status table ----------------------------------------------------------------- */

static void test_nvme_admin_status_table(void **state)
{
	static const struct {
		int status, err;
		enum disk_medium_detail medium;
		enum disk_op op;
		uint16_t want;
	} rows[] = {
		{ DISK_OK, 0, 0, DISK_OP_READ, NVMEEMU_SUCCESS },
		{ DISK_ILLEGAL_BLOCK, 0, 0, DISK_OP_READ, NVMEEMU_LBA_RANGE | DNR },
		{ DISK_INVALID_INPUT, 0, 0, DISK_OP_PR_RELEASE, NVMEEMU_INVALID_FIELD | DNR },
		{ DISK_IO_ERROR, EIO, 0, DISK_OP_READ, NVMEEMU_UNRECOVERED_READ },
		{ DISK_IO_ERROR, EIO, 0, DISK_OP_WRITE, NVMEEMU_WRITE_FAULT },
		{ DISK_IO_ERROR, ENOSPC, 0, DISK_OP_WRITE, NVMEEMU_CAPACITY_EXCEEDED | DNR },
		{ DISK_IO_ERROR, EFBIG, 0, DISK_OP_WRITE, NVMEEMU_CAPACITY_EXCEEDED | DNR },
		{ DISK_IO_ERROR, EIO, 0, DISK_OP_CACHE, NVMEEMU_UNRECOVERED_READ },
		{ DISK_IO_ERROR, EIO, 0, DISK_OP_FLUSH, NVMEEMU_WRITE_FAULT },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_NONE, DISK_OP_READ, NVMEEMU_UNRECOVERED_READ },
		{ DISK_IO_ERROR, EROFS, 0, DISK_OP_WRITE, NVMEEMU_WRITE_TO_RO | DNR },
		{ DISK_IO_ERROR, ENOMEDIUM, 0, DISK_OP_READ, NVMEEMU_NS_NOT_READY },
		{ DISK_IO_ERROR, EOPNOTSUPP, 0, DISK_OP_UNMAP, NVMEEMU_INVALID_FIELD | DNR },
		{ DISK_IO_ERROR, ENOMEM, 0, DISK_OP_READ, NVMEEMU_INTERNAL_ERROR },
		{ DISK_IO_ERROR, ETIMEDOUT, 0, DISK_OP_READ, NVMEEMU_INTERNAL_ERROR },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_UNRECOVERED_READ, DISK_OP_READ, NVMEEMU_UNRECOVERED_READ },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_WRITE_FAULT, DISK_OP_WRITE, NVMEEMU_WRITE_FAULT },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_GUARD, DISK_OP_READ, NVMEEMU_GUARD_CHECK | DNR },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_APP_TAG, DISK_OP_READ, NVMEEMU_APPTAG_CHECK | DNR },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_REF_TAG, DISK_OP_READ, NVMEEMU_REFTAG_CHECK | DNR },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_NONE, DISK_OP_WRITE, NVMEEMU_WRITE_FAULT },
		{ DISK_MEMORY_ACCESS, 0, 0, DISK_OP_READ, NVMEEMU_DATA_XFER_ERROR },
		{ DISK_READ_ONLY, 0, 0, DISK_OP_WRITE, NVMEEMU_WRITE_TO_RO | DNR },
		{ DISK_RESERVATION_CONFLICT, 0, 0, DISK_OP_WRITE, NVMEEMU_RESERVATION_CONFLICT | DNR },
		{ DISK_ABORTED_PREEMPT, 0, 0, DISK_OP_WRITE, NVMEEMU_ABORT_PREEMPT },
		{ DISK_UNSUPPORTED, 0, 0, DISK_OP_EJECT, NVMEEMU_INVALID_FIELD | DNR },
		{ DISK_STATUS_COUNT, 0, 0, DISK_OP_READ, NVMEEMU_INTERNAL_ERROR },
		{ -5, 0, 0, DISK_OP_READ, NVMEEMU_INTERNAL_ERROR },
	};

	(void)state;
	for (unsigned i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct disk_io io = { .op = rows[i].op, .status = rows[i].status,
				      .os_errno = rows[i].err, .medium = rows[i].medium };

		nt_assert_status(nvmeemu_disk_status(&io), rows[i].want);
		assert_string_not_equal(nvmeemu_status_str(rows[i].want), "unknown status");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvme_admin_identify_ctrl),
		cmocka_unit_test(test_nvme_admin_identify_ns),
		cmocka_unit_test(test_nvme_admin_identify_stable_ids),
		cmocka_unit_test(test_nvme_admin_identify_lists),
		cmocka_unit_test(test_nvme_admin_features_queues),
		cmocka_unit_test(test_nvme_admin_features_misc),
		cmocka_unit_test(test_nvme_admin_kato_armed_after_idle),
		cmocka_unit_test(test_nvme_admin_features_vwc),
		cmocka_unit_test(test_nvme_admin_features_host_id),
		cmocka_unit_test(test_nvme_admin_features_resv),
		cmocka_unit_test(test_nvme_admin_log_smart),
		cmocka_unit_test(test_nvme_admin_log_smart_threads),
		cmocka_unit_test(test_nvme_admin_log_pages),
		cmocka_unit_test(test_nvme_admin_aer_resize),
		cmocka_unit_test(test_nvme_admin_aer_masked_then_enabled),
		cmocka_unit_test(test_nvme_admin_aer_limit_abort_reset),
		cmocka_unit_test(test_nvme_admin_ns_attach),
		cmocka_unit_test(test_nvme_admin_remove_ns_waits_regression),
		cmocka_unit_test(test_nvme_admin_remove_ns_waits_queue),
		cmocka_unit_test(test_nvme_admin_status_table),
	};

	return cmocka_run_group_tests(tests, tu_reactor_setup, tu_reactor_teardown);
}
