/* SPDX-License-Identifier: MIT */
/*
 * test-nvme-resv.c: Reservation Register/Report/Acquire/Release of the
 * NVMe command core between two hosts (two controllers of one
 * subsystem with 128-bit host identifiers, as NVMe/TCP gives them), over
 * a mem: namespace (a prwrap of the core's own) and a file: one. The
 * sequence is the two-host matrix the Linux host and nvme-cli run
 * (register, acquire Write Exclusive, report with EDS, a conflicting
 * write failing at once with DNR, preempt, release, clear), then each
 * reservation type's access rules, the notifications the other host's
 * controller gets (AER and log page 80h), and the field checks.
 * Expectations come from the NVMe Base Specification 2.0 §8.19 and the
 * NVM Command Set Specification 1.0 §3.2.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common/endian.h"
#include "common/reactor.h"
#include "nvme_emul/nvme.h"
#include "storage/disk.h"
#include "tests/unit/nvmetest.h"
#include "tests/unit/testutil.h"

#define DNR NVMEEMU_DNR
#define CONFLICT (NVMEEMU_RESERVATION_CONFLICT | DNR)
enum { REGISTER = 0x0D, REPORT = 0x0E, ACQUIRE = 0x11, RELEASE = 0x15 };
enum { WE = 1, EA, WE_RO, EA_RO, WE_AR, EA_AR };

struct fix {
	struct nvmeemu_subsys *s;
	struct nvmeemu_ctrl *a, *b;     /* host 0xaa as controller 2, host 0xbb as 3 */
	struct disk *d;
};

static void fix_open(struct fix *f, const char *spec)
{
	f->s = nt_subsys(&(struct nvmeemu_subsys_opts){ .fabrics = true, .sgls = 5 });
	f->d = nt_add_ns(f->s, 1, spec);
	f->a = nt_ctrl(f->s, 2, 0xaa);
	f->b = nt_ctrl(f->s, 3, 0xbb);
}

static void fix_close(struct fix *f)
{
	nvmeemu_ctrl_free(f->a);
	nvmeemu_ctrl_free(f->b);
	while (reactor_pending(tu_reactor()))
		reactor_run_once(tu_reactor(), true);
	nvmeemu_subsys_free(f->s);
	disk_unref(f->d);
}

static uint16_t reg(struct nvmeemu_ctrl *c, uint32_t rrega, uint64_t crkey, uint64_t nrkey,
		    uint32_t extra)
{
	uint8_t d[16];
	struct nt_sqe q = nt_sqe(REGISTER, 1, rrega | extra, 0, 0, 0, 0, 0);

	ds_put_le64(d, crkey);
	ds_put_le64(d + 8, nrkey);
	return nt_run(c, 1, &q, d, sizeof(d), NULL);
}

static uint16_t acquire(struct nvmeemu_ctrl *c, uint32_t racqa, uint32_t rtype, uint64_t crkey,
			uint64_t prkey)
{
	uint8_t d[16];
	struct nt_sqe q = nt_sqe(ACQUIRE, 1, racqa | rtype << 8, 0, 0, 0, 0, 0);

	ds_put_le64(d, crkey);
	ds_put_le64(d + 8, prkey);
	return nt_run(c, 1, &q, d, sizeof(d), NULL);
}

static uint16_t release(struct nvmeemu_ctrl *c, uint32_t rrela, uint32_t rtype, uint64_t crkey)
{
	uint8_t d[8];
	struct nt_sqe q = nt_sqe(RELEASE, 1, rrela | rtype << 8, 0, 0, 0, 0, 0);

	ds_put_le64(d, crkey);
	return nt_run(c, 1, &q, d, sizeof(d), NULL);
}

/* The report's header, and the first registrant (EDS layout). */
struct rep {
	uint32_t gen;
	uint8_t rtype, ptpls;
	uint16_t regctl;
	uint16_t cntlid;
	uint8_t rcsts;
	uint64_t rkey;
	uint8_t hostid[16];
};

static uint16_t report(struct nvmeemu_ctrl *c, bool eds, struct rep *r)
{
	uint8_t buf[4096];
	struct nt_sqe q = nt_sqe(REPORT, 1, sizeof(buf) / 4 - 1, eds ? 1 : 0, 0, 0, 0, 0);
	uint16_t st;

	memset(buf, 0, sizeof(buf));
	st = nt_run(c, 1, &q, buf, sizeof(buf), NULL);
	if (r) {
		r->gen = ds_get_le32(buf);
		r->rtype = buf[4];
		r->regctl = ds_get_le16(buf + 5);
		r->ptpls = buf[9];
		r->cntlid = ds_get_le16(buf + 64);
		r->rcsts = buf[66];
		r->rkey = ds_get_le64(buf + 72);
		memcpy(r->hostid, buf + 80, 16);
	}
	return st;
}

static uint16_t rw(struct nvmeemu_ctrl *c, uint8_t opc)
{
	uint8_t buf[4096] = { 0 };
	struct nt_sqe q = nt_rw(opc, 1, 80, 8, 0);

	return nt_run(c, 1, &q, buf, sizeof(buf), NULL);
}

/* The two-host sequence the Linux host and nvme-cli run (docs/nvme.md). */
static void matrix(const char *spec)
{
	struct fix f;
	struct rep r;

	fix_open(&f, spec);
	/* Fabrics host IDs are 128-bit: the report needs EDS. */
	nt_assert_status(report(f.a, false, NULL), NVMEEMU_HOSTID_INCONSISTENT | DNR);
	nt_assert_status(report(f.a, true, &r), 0);
	assert_int_equal(r.gen, 0);
	assert_int_equal(r.rtype, 0);
	assert_int_equal(r.regctl, 0);
	nt_assert_status(reg(f.a, 0, 0, 0xaaaa, 0), 0);
	nt_assert_status(acquire(f.a, 0, WE, 0xaaaa, 0), 0);
	nt_assert_status(report(f.a, true, &r), 0);
	assert_int_equal(r.gen, 1);
	assert_int_equal(r.rtype, WE);
	assert_int_equal(r.regctl, 1);
	assert_int_equal(r.cntlid, 2);
	assert_int_equal(r.rcsts, 1);
	assert_int_equal(r.rkey, 0xaaaa);
	assert_int_equal(r.hostid[0], 0xaa);
	assert_int_equal(r.hostid[15], 0xaa);
	/* B, not registered: its write fails at once (DNR), its read works. */
	nt_assert_status(rw(f.b, 0x01), CONFLICT);
	nt_assert_status(rw(f.b, 0x02), 0);
	nt_assert_status(rw(f.a, 0x01), 0);
	/* B registers and preempts A: A's registration goes. */
	nt_assert_status(reg(f.b, 0, 0, 0xbbbb, 0), 0);
	nt_assert_status(acquire(f.b, 1, WE, 0xbbbb, 0xaaaa), 0);
	nt_assert_status(report(f.b, true, &r), 0);
	assert_int_equal(r.gen, 3);
	assert_int_equal(r.rtype, WE);
	assert_int_equal(r.regctl, 1);
	assert_int_equal(r.cntlid, 3);
	assert_int_equal(r.rcsts, 1);
	assert_int_equal(r.rkey, 0xbbbb);
	assert_int_equal(r.hostid[0], 0xbb);
	nt_assert_status(rw(f.a, 0x01), CONFLICT);
	nt_assert_status(rw(f.b, 0x01), 0);
	/* Release, then clear. */
	nt_assert_status(release(f.b, 0, WE, 0xbbbb), 0);
	nt_assert_status(rw(f.a, 0x01), 0);
	nt_assert_status(release(f.b, 1, 0, 0xbbbb), 0);
	nt_assert_status(report(f.b, true, &r), 0);
	assert_int_equal(r.gen, 4);
	assert_int_equal(r.rtype, 0);
	assert_int_equal(r.regctl, 0);
	fix_close(&f);
}

static void test_nvme_resv_matrix_mem(void **state)
{
	(void)state;
	matrix("mem:1M");
}

static void test_nvme_resv_matrix_file(void **state)
{
	char spec[512];

	(void)state;
	snprintf(spec, sizeof(spec), "file:%s;create=1M", tu_path("nvme-resv.img"));
	matrix(spec);
}

/* Each type's access rules for a registrant that does not hold the
 * reservation and for a host that is not registered (NVMe Base spec §8.19
 * Table "Command Behavior in the Presence of a Reservation"). */
static void test_nvme_resv_types(void **state)
{
	static const struct {
		uint8_t type;
		bool reg_read, reg_write, other_read, other_write;
	} rows[] = {
		{ WE, true, false, true, false },
		{ EA, false, false, false, false },
		{ WE_RO, true, true, true, false },
		{ EA_RO, true, true, false, false },
		{ WE_AR, true, true, true, false },
		{ EA_AR, true, true, false, false },
	};
	struct fix f;
	struct nvmeemu_ctrl *c;

	(void)state;
	for (unsigned i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		fix_open(&f, "mem:1M");
		c = nt_ctrl(f.s, 4, 0xcc);      /* never registers */
		nt_assert_status(reg(f.a, 0, 0, 0xa, 0), 0);
		nt_assert_status(reg(f.b, 0, 0, 0xb, 0), 0);
		nt_assert_status(acquire(f.a, 0, rows[i].type, 0xa, 0), 0);
		nt_assert_status(rw(f.a, 0x01), 0);
		nt_assert_status(rw(f.a, 0x02), 0);
		nt_assert_status(rw(f.b, 0x02), rows[i].reg_read ? 0 : CONFLICT);
		nt_assert_status(rw(f.b, 0x01), rows[i].reg_write ? 0 : CONFLICT);
		nt_assert_status(rw(c, 0x02), rows[i].other_read ? 0 : CONFLICT);
		nt_assert_status(rw(c, 0x01), rows[i].other_write ? 0 : CONFLICT);
		/* Another type from the holder, or any acquire from B: conflict. */
		if (rows[i].type < WE_AR)
			nt_assert_status(acquire(f.b, 0, rows[i].type, 0xb, 0), CONFLICT);
		nvmeemu_ctrl_free(c);
		fix_close(&f);
	}
}

/* A's controller learns it was preempted: the AER completes with the
 * reservation log page event and log 80h names the namespace. */
static void test_nvme_resv_notifications(void **state)
{
	struct fix f;
	struct nt_pending aer;
	struct nt_result r;
	struct nt_sqe q;
	uint8_t log[64];

	(void)state;
	fix_open(&f, "mem:1M");
	q = nt_sqe(0x0C, 0, 0, 0, 0, 0, 0, 0);
	nt_start(&aer, f.a, 0, &q, NULL, 0);
	nt_assert_status(reg(f.a, 0, 0, 0xa, 0), 0);
	nt_assert_status(acquire(f.a, 0, WE_RO, 0xa, 0), 0);
	nt_assert_status(reg(f.b, 0, 0, 0xb, 0), 0);
	assert_false(nt_poll(&aer));
	nt_assert_status(acquire(f.b, 1, WE, 0xb, 0xa), 0);
	nt_assert_status(nt_wait(&aer, &r), 0);
	assert_int_equal(r.dw0, 0x00800006);
	q = nt_sqe(0x02, 0xffffffff, 0x80 | (64 / 4 - 1) << 16, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.a, 0, &q, log, sizeof(log), NULL), 0);
	assert_int_equal(ds_get_le64(log), 1);
	assert_int_equal(log[8], 1);                    /* Registration Preempted */
	assert_int_equal(log[9], 0);
	assert_int_equal(ds_get_le32(log + 12), 1);
	/* Empty now. */
	nt_assert_status(nt_run(f.a, 0, &q, log, sizeof(log), NULL), 0);
	assert_true(tu_is_zero(log, sizeof(log)));
	/* B clears with A registered again: A's registration goes with a
	 * Reservation Preempted page, unless A masks it (82h bit 3). */
	nt_assert_status(reg(f.a, 0, 0, 0xa, 0), 0);
	q = nt_sqe(0x09, 1, 0x82, 1u << 3, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.a, 0, &q, NULL, 0, NULL), 0);
	nt_assert_status(release(f.b, 1, 0, 0xb), 0);
	q = nt_sqe(0x02, 0xffffffff, 0x80 | (64 / 4 - 1) << 16, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.a, 0, &q, log, sizeof(log), NULL), 0);
	assert_true(tu_is_zero(log, sizeof(log)));
	fix_close(&f);
}

/* A Release of a registrants-only reservation tells the other registrants. */
static void test_nvme_resv_release_notice(void **state)
{
	struct fix f;
	struct nt_sqe q;
	uint8_t log[64];

	(void)state;
	fix_open(&f, "mem:1M");
	nt_assert_status(reg(f.a, 0, 0, 0xa, 0), 0);
	nt_assert_status(reg(f.b, 0, 0, 0xb, 0), 0);
	nt_assert_status(acquire(f.a, 0, EA_RO, 0xa, 0), 0);
	nt_assert_status(release(f.a, 0, EA_RO, 0xa), 0);
	q = nt_sqe(0x02, 0xffffffff, 0x80 | (64 / 4 - 1) << 16, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.b, 0, &q, log, sizeof(log), NULL), 0);
	assert_int_equal(log[8], 2);                    /* Reservation Released */
	nt_assert_status(nt_run(f.a, 0, &q, log, sizeof(log), NULL), 0);
	assert_int_equal(log[8], 0);                    /* not to the issuer */
	fix_close(&f);
}

static void test_nvme_resv_fields(void **state)
{
	struct fix f;
	struct rep r;
	uint8_t small[8];
	struct nt_sqe q;

	(void)state;
	fix_open(&f, "mem:1M");
	/* Register again with another key: conflict; unregister with the
	 * wrong key: conflict; IEKEY replace works. */
	nt_assert_status(reg(f.a, 0, 0, 0xa, 0), 0);
	nt_assert_status(reg(f.a, 0, 0, 0xa2, 0), CONFLICT);
	nt_assert_status(reg(f.a, 1, 0xdead, 0, 0), CONFLICT);
	nt_assert_status(reg(f.a, 2, 0xdead, 0xa3, 1u << 3), 0);
	nt_assert_status(report(f.a, true, &r), 0);
	assert_int_equal(r.rkey, 0xa3);
	/* Bad actions, types and CPTPL. */
	nt_assert_status(reg(f.a, 3, 0, 0, 0), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(reg(f.a, 2, 0xa3, 0xa3, 1u << 30), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(acquire(f.a, 0, 7, 0xa3, 0), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(acquire(f.a, 0, 0, 0xa3, 0), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(acquire(f.a, 3, WE, 0xa3, 0), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(release(f.a, 2, WE, 0xa3), NVMEEMU_INVALID_FIELD | DNR);
	nt_assert_status(release(f.a, 0, 0, 0xa3), NVMEEMU_INVALID_FIELD | DNR);
	/* Release with the wrong type while holding: Invalid Field. */
	nt_assert_status(acquire(f.a, 0, WE, 0xa3, 0), 0);
	nt_assert_status(release(f.a, 0, EA, 0xa3), NVMEEMU_INVALID_FIELD | DNR);
	/* CPTPL 11b sets persistence (prwrap remembers it). */
	nt_assert_status(reg(f.a, 2, 0xa3, 0xa3, 3u << 30), 0);
	nt_assert_status(report(f.a, true, &r), 0);
	assert_int_equal(r.ptpls, 1);
	q = nt_sqe(0x0A, 1, 0x83, 0, 0, 0, 0, 0);
	{
		struct nt_result res;

		nt_assert_status(nt_run(f.a, 0, &q, NULL, 0, &res), 0);
		assert_int_equal(res.dw0, 1);
	}
	/* A report cut to the host's NUMD; parameter data missing. */
	q = nt_sqe(REPORT, 1, 1, 1, 0, 0, 0, 0);
	memset(small, 0, sizeof(small));
	nt_assert_status(nt_run(f.a, 1, &q, small, sizeof(small), NULL), 0);
	assert_int_equal(ds_get_le32(small), r.gen);
	q = nt_sqe(REGISTER, 1, 0, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(f.a, 1, &q, small, 8, NULL), NVMEEMU_SGL_LENGTH_INVALID | DNR);
	fix_close(&f);
}

/* A PCI-style controller without a host identifier is anonymous: a
 * report without EDS is fine and shows an 8-byte host ID of zeroes. */
static void test_nvme_resv_anonymous(void **state)
{
	struct nvmeemu_subsys *s = nt_subsys(NULL);
	struct disk *d = nt_add_ns(s, 1, "mem:1M");
	struct nvmeemu_ctrl *c = nt_ctrl(s, 1, 0);
	uint8_t buf[64] = { 0 };
	struct nt_sqe q;

	(void)state;
	nt_assert_status(reg(c, 0, 0, 0x1234, 0), 0);
	q = nt_sqe(REPORT, 1, sizeof(buf) / 4 - 1, 0, 0, 0, 0, 0);
	nt_assert_status(nt_run(c, 1, &q, buf, sizeof(buf), NULL), 0);
	assert_int_equal(ds_get_le16(buf + 5), 1);
	assert_int_equal(ds_get_le64(buf + 24 + 16), 0x1234);
	nvmeemu_ctrl_free(c);
	nvmeemu_subsys_free(s);
	disk_unref(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvme_resv_matrix_mem),
		cmocka_unit_test(test_nvme_resv_matrix_file),
		cmocka_unit_test(test_nvme_resv_types),
		cmocka_unit_test(test_nvme_resv_notifications),
		cmocka_unit_test(test_nvme_resv_release_notice),
		cmocka_unit_test(test_nvme_resv_fields),
		cmocka_unit_test(test_nvme_resv_anonymous),
	};

	return cmocka_run_group_tests(tests, tu_reactor_setup, tu_reactor_teardown);
}
