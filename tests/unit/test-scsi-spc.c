/* SPDX-License-Identifier: MIT */
/*
 * test-scsi-spc.c: the SPC-4 commands of scsi/spc.c, one group of tests
 * per command, through the whole core (scsitest.h): TEST UNIT READY,
 * INQUIRY and its VPD pages, REQUEST SENSE, REPORT LUNS, MODE SENSE and
 * MODE SELECT, REPORT SUPPORTED OPERATION CODES, RESERVE/RELEASE,
 * PREVENT ALLOW MEDIUM REMOVAL and START STOP UNIT, with the libiscsi
 * sequences they must pass written out as tests.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "scsi/internal.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

#define IQN1 "iqn.2024-01.org.example:host1"

static int setup(void **state)
{
	static struct st_fix f;

	st_fix_init(&f, "mem:1M");
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	return st_fix_teardown(state);
}

static void test_scsi_spc_tur(void **state)
{
	struct st_fix *f = *state;
	const uint8_t cdb[6] = { 0x00 };
	struct st_result r;

	assert_int_equal(st_run(f->n, 0, cdb, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(r.sense_len, 0);
	assert_int_equal(r.data_len, 0);
}

static void test_scsi_spc_inquiry_standard(void **state)
{
	struct st_fix *f = *state;
	uint8_t cdb[6] = { 0x12, 0, 0, 0, 255, 0 };
	uint8_t b[255];
	struct st_result r;

	memset(b, 0xaa, sizeof(b));
	assert_int_equal(st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_true(r.data_len >= 36);
	assert_int_equal(r.want_len, r.data_len);
	assert_int_equal(b[0], 0x00);           /* direct access, connected */
	assert_int_equal(b[2], 0x06);           /* SPC-4 */
	assert_int_equal(b[3] & 0x0f, 2);
	assert_int_equal(b[4] + 5, r.data_len);
	assert_true(b[7] & 0x02);               /* CMDQUE */
	assert_memory_equal(b + 8, "DISKSTCK", 8);
	assert_memory_equal(b + 16, "VIRTUAL DISK    ", 16);
	/* SBC-3 and iSCSI among the version descriptors */
	bool sbc3 = false, iscsi = false;

	for (unsigned i = 58; i < 74; i += 2) {
		sbc3 |= ds_get_be16(b + i) == 0x04C0;
		iscsi |= ds_get_be16(b + i) == 0x0960;
	}
	assert_true(sbc3 && iscsi);

	/* A short allocation length truncates, and says what was asked. */
	cdb[4] = 5;
	assert_int_equal(st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 5);
	assert_int_equal(r.want_len, 5);
	/* A transfer length shorter than the allocation length: overflow. */
	cdb[4] = 96;
	assert_int_equal(st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, 10, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 10);
	assert_int_equal(r.want_len, 96);

	/* CMDDT and a page code without EVPD are invalid fields. */
	cdb[1] = 0x02;
	st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	assert_int_equal(r.sense[15], 0x80 | 0x40 | 0x08 | 1);   /* SKSV, C/D, BPV, bit 1 */
	assert_int_equal(ds_get_be16(r.sense + 16), 1);
	cdb[1] = 0;
	cdb[2] = 0x80;
	st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

static unsigned vpd(struct st_fix *f, uint8_t page, uint8_t *b, size_t len, struct st_result *r)
{
	uint8_t cdb[6] = { 0x12, 1, page, (uint8_t)(len >> 8), (uint8_t)len, 0 };

	memset(b, 0xaa, len);
	return st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, len, r);
}

static void test_scsi_spc_inquiry_vpd(void **state)
{
	struct st_fix *f = *state;
	uint8_t b[512], b2[512];
	struct st_result r;

	assert_int_equal(vpd(f, 0x00, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[1], 0x00);
	unsigned n = ds_get_be16(b + 2);

	assert_int_equal(r.data_len, 4 + n);
	/* sorted, and each listed page answers with its own code */
	for (unsigned i = 0; i < n; i++) {
		if (i)
			assert_true(b[4 + i] > b[3 + i]);
		assert_int_equal(vpd(f, b[4 + i], b2, sizeof(b2), &r), SCSI_GOOD);
		assert_int_equal(b2[1], b[4 + i]);
		assert_int_equal(r.data_len, 4 + ds_get_be16(b2 + 2));
	}
	assert_non_null(memchr(b + 4, 0x83, n));
	assert_non_null(memchr(b + 4, 0xB2, n));

	/* 83h: an NAA designator with LU association comes first. */
	assert_int_equal(vpd(f, 0x83, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[4] & 0x0f, 1);          /* binary */
	assert_int_equal(b[5] & 0x3f, 0x03);       /* LU association, NAA */
	assert_int_equal(b[8] >> 4, 6);
	assert_int_equal(b[8] & 0x0f, 0);          /* no OUI of our own */
	assert_int_equal(b[9] | b[10] | (b[11] & 0xf0), 0);
	/* a long target name still gives length bytes that fit */
	unsigned total = ds_get_be16(b + 2) + 4, k = 0;

	for (unsigned off = 4; off < total; off += 4 + b[off + 3])
		k++;
	assert_int_equal(k, 5);

	/* B2h: mem: unmaps to zeroes: LBPU, LBPWS, LBPWS10 and LBPRZ. */
	assert_int_equal(vpd(f, 0xB2, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[5] & 0xe4, 0xe4);
	/* B1h: non-rotating */
	assert_int_equal(vpd(f, 0xB1, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(ds_get_be16(b + 4), 1);

	/* Unknown page: invalid field at byte 2. */
	vpd(f, 0x42, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	assert_int_equal(ds_get_be16(r.sense + 16), 2);
}

static void test_scsi_spc_report_luns(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t cdb[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
	uint8_t b[256];
	struct st_result r;

	(void)state;
	st_add_lu(t, 3, "mem:64K", NULL);
	st_add_lu(t, 7, "mem:64K", NULL);
	n = st_nexus(t, IQN1, 1);
	/* LUN 0 holds no LU and still answers REPORT LUNS, without a UA. */
	assert_int_equal(st_run(n, 0, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(ds_get_be32(b), 16);
	assert_int_equal(r.data_len, 24);
	assert_int_equal(ds_get_be64(b + 8), scsi_lun_encode(3));
	assert_int_equal(ds_get_be64(b + 16), scsi_lun_encode(7));
	/* SELECT REPORT 1: only the well-known LUs; 2: both. */
	cdb[2] = 1;
	assert_int_equal(st_run(n, 3, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(ds_get_be32(b), 8);
	assert_int_equal(ds_get_be64(b + 8), 0xC101000000000000ull);
	cdb[2] = 2;
	assert_int_equal(st_run(n, 3, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(ds_get_be32(b), 24);
	cdb[2] = 3;
	st_run(n, 3, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* Through the REPORT LUNS well-known LU. */
	cdb[2] = 0;
	assert_int_equal(st_run_wire(n, 0xC101000000000000ull, cdb, 12, SCSI_DIR_IN, b, sizeof(b),
				     &r), SCSI_GOOD);
	assert_int_equal(ds_get_be32(b), 16);
	/* A short allocation length truncates. */
	cdb[9] = 12;
	cdb[8] = 0;
	assert_int_equal(st_run(n, 3, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 12);
	assert_int_equal(r.want_len, 12);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static void test_scsi_spc_request_sense(void **state)
{
	struct st_fix *f = *state;
	const uint8_t cdb[6] = { 0x03, 0, 0, 0, 252, 0 };
	uint8_t b[252];
	struct st_result r;
	struct scsi_nexus *n2 = st_nexus(f->t, IQN1, 2);

	/* The new nexus's UA comes back as data, GOOD, and is gone. */
	assert_int_equal(st_run(n2, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 18);
	assert_int_equal(b[0], 0x70);
	assert_int_equal(b[2], SCSI_SK_UNIT_ATTENTION);
	assert_int_equal(b[12], 0x29);
	assert_int_equal(st_run(n2, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[2], SCSI_SK_NO_SENSE);
	assert_int_equal(b[12], 0);
	assert_int_equal(st_clear_ua(n2, 0), 0);
	/* DESC = 1: we have no descriptor format. */
	const uint8_t desc[6] = { 0x03, 1, 0, 0, 252, 0 };

	st_run(n2, 0, desc, 6, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	scsi_nexus_free(n2);
}


/* ---- MODE SENSE / MODE SELECT ------------------------------------------------------ */

static uint8_t mode_sense6(struct scsi_nexus *n, uint8_t pc_page, uint8_t dbd, uint8_t *b,
			   size_t len, struct st_result *r)
{
	const uint8_t cdb[6] = { 0x1A, dbd, pc_page, 0, (uint8_t)len, 0 };

	memset(b, 0xaa, len);
	return st_run(n, 0, cdb, 6, SCSI_DIR_IN, b, len, r);
}

/* Finds page @code in MODE SENSE(6) data @b; fails the test without it. */
static __attribute__((returns_nonnull)) const uint8_t *find_page(const uint8_t *b, uint8_t code)
{
	size_t end = (size_t)b[0] + 1;

	for (size_t off = 4 + b[3]; off + 2 <= end; off += 2 + b[off + 1])
		if ((b[off] & 0x3f) == code)
			return b + off;
	fail_msg("mode page %02x missing", code);
	abort();
}

static void test_scsi_spc_mode_sense(void **state)
{
	struct st_fix *f = *state;
	uint8_t b[255];
	struct st_result r;
	const uint8_t *p;

	/* All pages with a block descriptor: 1 MiB of 512-byte blocks. */
	assert_int_equal(mode_sense6(f->n, 0x3f, 0, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, b[0] + 1u);
	assert_int_equal(b[2] & 0x80, 0);               /* not write protected */
	assert_int_equal(b[3], 8);
	assert_int_equal(ds_get_be32(b + 4), 2048);
	assert_int_equal(ds_get_be32(b + 8) & 0xffffff, 512);
	p = find_page(b, 0x08);
	p = find_page(b, 0x0A);
	assert_int_equal(p[1], 0x0A);
	assert_int_equal(p[2] & 0x04, 0);               /* D_SENSE: fixed format */
	find_page(b, 0x1C);
	/* DBD: no descriptor. */
	assert_int_equal(mode_sense6(f->n, 0x08, 0x08, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[3], 0);
	assert_int_equal(b[4], 0x08);
	/* Changeable: WCE in caching, SWP in control. */
	assert_int_equal(mode_sense6(f->n, 0x40 | 0x3f, 0x08, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(find_page(b, 0x08)[2], 0x04);
	assert_int_equal(find_page(b, 0x0A)[4], 0x08);
	/* Saved values: SAVING PARAMETERS NOT SUPPORTED. */
	mode_sense6(f->n, 0xC0 | 0x3f, 0, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x39, 0x00);
	/* An unknown page. */
	mode_sense6(f->n, 0x19, 0, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* Residuals: 4 bytes asked, 4 moved. */
	assert_int_equal(mode_sense6(f->n, 0x3f, 0, b, 4, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 4);
	assert_int_equal(r.want_len, 4);
	/* MODE SENSE(10) with LLBAA: a 16-byte descriptor. */
	const uint8_t cdb10[10] = { 0x5A, 0x10, 0x3f, 0, 0, 0, 0, 1, 0, 0 };

	assert_int_equal(st_run(f->n, 0, cdb10, 10, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(ds_get_be16(b) + 2, r.data_len);
	assert_int_equal(b[4] & 1, 1);
	assert_int_equal(ds_get_be16(b + 6), 16);
	assert_int_equal(ds_get_be64(b + 8), 2048);
	assert_int_equal(ds_get_be32(b + 20), 512);
}

static uint8_t mode_select6(struct scsi_nexus *n, uint8_t byte1, uint8_t *b, size_t len,
			    struct st_result *r)
{
	const uint8_t cdb[6] = { 0x15, byte1, 0, 0, (uint8_t)len, 0 };

	return st_run(n, 0, cdb, 6, SCSI_DIR_OUT, b, len, r);
}

static void test_scsi_spc_mode_select(void **state)
{
	struct st_fix *f = *state;
	struct scsi_nexus *n2 = st_nexus(f->t, IQN1, 2);
	uint8_t b[255], sel[64];
	struct st_result r;
	const uint8_t *p;
	size_t len;

	st_clear_ua(n2, 0);
	/* Read the caching page, flip WCE, write it back (PS cleared). */
	assert_int_equal(mode_sense6(f->n, 0x08, 0x08, b, sizeof(b), &r), SCSI_GOOD);
	p = find_page(b, 0x08);
	bool wce = p[2] & 0x04;

	memset(sel, 0, 4);
	len = 4 + 2 + p[1];
	memcpy(sel + 4, p, 2 + p[1]);
	sel[4] &= 0x7f;
	sel[6] ^= 0x04;
	assert_int_equal(mode_select6(f->n, 0x10, sel, len, &r), SCSI_GOOD);
	assert_int_equal(mode_sense6(f->n, 0x08, 0x08, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(!!(find_page(b, 0x08)[2] & 0x04), !wce);
	assert_int_equal(scsi_lu_wce(scsi_target_lu(f->t, 0)), !wce);
	/* The other nexus hears MODE PARAMETERS CHANGED; we do not. */
	assert_int_equal(st_run(f->n, 0, (uint8_t[6]){ 0 }, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_GOOD);
	st_run(n2, 0, (uint8_t[6]){ 0 }, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x2A, 0x01);

	/* A field that is not changeable: INVALID FIELD IN PARAMETER LIST
	 * pointing at it. */
	sel[6] |= 0x01;         /* RCD */
	mode_select6(f->n, 0x10, sel, len, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	assert_int_equal(r.sense[15], 0x80 | 0x08 | 0);  /* SKSV, parameter list, bit 0 */
	assert_int_equal(ds_get_be16(r.sense + 16), 6);
	sel[6] &= (uint8_t)~0x01;
	/* A wrong page length. */
	sel[5]--;
	mode_select6(f->n, 0x10, sel, len, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	sel[5]++;
	/* SP = 1: no saved pages. */
	mode_select6(f->n, 0x11, sel, len, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* A truncated page: PARAMETER LIST LENGTH ERROR. */
	mode_select6(f->n, 0x10, sel, len - 3, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x1A, 0x00);
	/* Length 0: nothing, GOOD. */
	assert_int_equal(mode_select6(f->n, 0x10, sel, 0, &r), SCSI_GOOD);

	/* SWP through the control page makes the LU write protected. */
	assert_int_equal(mode_sense6(f->n, 0x0A, 0x08, b, sizeof(b), &r), SCSI_GOOD);
	p = find_page(b, 0x0A);
	len = 4 + 2 + p[1];
	memcpy(sel + 4, p, 2 + p[1]);
	sel[8] |= 0x08;
	assert_int_equal(mode_select6(f->n, 0x10, sel, len, &r), SCSI_GOOD);
	assert_int_equal(mode_sense6(f->n, 0x3f, 0, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[2] & 0x80, 0x80);
	assert_true(find_page(b, 0x0A)[4] & 0x08);
	sel[8] &= (uint8_t)~0x08;
	assert_int_equal(mode_select6(f->n, 0x10, sel, len, &r), SCSI_GOOD);
	assert_int_equal(mode_sense6(f->n, 0x3f, 0, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[2] & 0x80, 0);

	/* A block descriptor with another block length is refused; the
	 * current one is accepted. */
	memset(sel, 0, sizeof(sel));
	sel[3] = 8;
	ds_put_be32(sel + 8, 4096);
	mode_select6(f->n, 0x10, sel, 12, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	ds_put_be32(sel + 8, 512);
	assert_int_equal(mode_select6(f->n, 0x10, sel, 12, &r), SCSI_GOOD);
	scsi_nexus_free(n2);
}

/* ---- REPORT SUPPORTED OPERATION CODES ------------------------------------------------ */

static void test_scsi_spc_report_opcodes(void **state)
{
	struct st_fix *f = *state;
	uint8_t cdb[12] = { 0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0 };
	uint8_t b[4096], one[64];
	struct st_result r;
	bool saw_inq = false, saw_prin = false;

	assert_int_equal(st_run(f->n, 0, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	uint32_t n = ds_get_be32(b);

	assert_int_equal(r.data_len, n + 4);
	assert_int_equal(n % 8, 0);
	for (uint32_t off = 4; off < n + 4; off += 8) {
		uint8_t op = b[off];
		bool servactv = b[off + 5] & 1;
		uint16_t sa = ds_get_be16(b + off + 2);

		assert_int_equal(b[off + 5] & 2, 0);    /* no CTDP without RCTD */
		if (!servactv)
			assert_int_equal(sa, 0);
		saw_inq |= op == 0x12;
		saw_prin |= op == 0x5E && servactv && sa == 3;
		/* one-command form: 001b without SA, 010b with */
		uint8_t c1[12] = { 0xA3, 0x0C, (uint8_t)(servactv ? 2 : 1), op,
				   (uint8_t)(sa >> 8), (uint8_t)sa, 0, 0, 0, 64, 0, 0 };

		assert_int_equal(st_run(f->n, 0, c1, 12, SCSI_DIR_IN, one, sizeof(one), &r),
				 SCSI_GOOD);
		assert_int_equal(one[1] & 7, 3);
		assert_int_equal(one[4], op);
		assert_true(ds_get_be16(one + 2) >= 6);
		c1[2] = servactv ? 1 : 2;
		st_run(f->n, 0, c1, 12, SCSI_DIR_IN, one, sizeof(one), &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	assert_true(saw_inq && saw_prin);
	/* RCTD: every descriptor carries a timeouts descriptor of length 0Ah. */
	cdb[2] = 0x80;
	assert_int_equal(st_run(f->n, 0, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	n = ds_get_be32(b);
	assert_int_equal(n % 20, 0);
	for (uint32_t off = 4; off < n + 4; off += 20) {
		assert_int_equal(b[off + 5] & 2, 2);
		assert_int_equal(ds_get_be16(b + off + 8), 0x0A);
	}
	/* An opcode we lack: SUPPORT 001b. */
	uint8_t c2[12] = { 0xA3, 0x0C, 1, 0xE7, 0, 0, 0, 0, 0, 64, 0, 0 };

	assert_int_equal(st_run(f->n, 0, c2, 12, SCSI_DIR_IN, one, sizeof(one), &r), SCSI_GOOD);
	assert_int_equal(one[1] & 7, 1);
	/* An unknown service action of MAINTENANCE IN: invalid field. */
	cdb[1] = 0x0D;
	st_run(f->n, 0, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

/* ---- RESERVE / RELEASE, PREVENT ALLOW, START STOP UNIT --------------------------------- */

static void test_scsi_spc_reserve6(void **state)
{
	struct st_fix *f = *state;
	struct scsi_nexus *n2 = st_nexus(f->t, "iqn.2024-01.org.example:host2", 1);
	const uint8_t res6[6] = { 0x16 }, rel6[6] = { 0x17 }, res10[10] = { 0x56 };
	uint8_t b[255];
	struct st_result r;

	st_clear_ua(n2, 0);
	/* The libiscsi Reserve6.2Initiators sequence. */
	assert_int_equal(st_run(f->n, 0, res6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(st_run(f->n, 0, res6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(st_run(n2, 0, res6, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(r.sense_len, 0);
	assert_int_equal(st_run(n2, 0, rel6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(mode_sense6(f->n, 0x3f, 0, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(mode_sense6(n2, 0x3f, 0, b, sizeof(b), &r), SCSI_RESERVATION_CONFLICT);
	/* INQUIRY and REQUEST SENSE still answer the other nexus. */
	const uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };

	assert_int_equal(st_run(n2, 0, inq, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(st_run(n2, 0, res10, 10, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(st_run(f->n, 0, rel6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(st_run(n2, 0, res6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	/* Nexus loss drops it (libiscsi Reserve6.ITNexusLoss). */
	scsi_nexus_free(n2);
	assert_int_equal(mode_sense6(f->n, 0x3f, 0, b, sizeof(b), &r), SCSI_GOOD);
	/* So does an LU reset (Reserve6.LUNReset). */
	assert_int_equal(st_run(f->n, 0, res6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	n2 = st_nexus(f->t, "iqn.2024-01.org.example:host2", 1);
	st_clear_ua(n2, 0);
	assert_int_equal(st_run(n2, 0, (uint8_t[6]){ 0 }, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_RESERVATION_CONFLICT);
	assert_int_equal(scsi_lu_reset(n2, 0), 0);
	st_clear_ua(n2, 0);
	assert_int_equal(st_run(n2, 0, (uint8_t[6]){ 0 }, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_GOOD);
	/* Extents (obsolete) are an invalid field. */
	const uint8_t ext[6] = { 0x16, 0x01 };

	st_clear_ua(f->n, 0);
	st_run(f->n, 0, ext, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	scsi_nexus_free(n2);
}

static uint8_t start_stop(struct scsi_nexus *n, uint8_t byte4, struct st_result *r)
{
	const uint8_t cdb[6] = { 0x1B, 0, 0, 0, byte4, 0 };

	return st_run(n, 0, cdb, 6, SCSI_DIR_NONE, NULL, 0, r);
}

static uint8_t prevent(struct scsi_nexus *n, uint8_t v, struct st_result *r)
{
	const uint8_t cdb[6] = { 0x1E, 0, 0, 0, v, 0 };

	return st_run(n, 0, cdb, 6, SCSI_DIR_NONE, NULL, 0, r);
}

/* A removable disk: the libiscsi PreventAllow.Eject and
 * StartStopUnit.Simple/PwrCnd sequences. */
static void test_scsi_spc_start_stop_removable(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_lu_opts o = { .removable = true };
	struct scsi_nexus *n, *n2;
	struct st_result r;
	uint8_t b[96];
	const uint8_t tur[6] = { 0 }, inq[6] = { 0x12, 0, 0, 0, 96, 0 };

	(void)state;
	st_add_lu(t, 0, "mem:1M", &o);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	assert_int_equal(st_run(n, 0, inq, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[1], 0x80);                   /* RMB */
	assert_int_equal(prevent(n, 1, &r), SCSI_GOOD);
	start_stop(n, 0x02, &r);                        /* eject */
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	assert_int_equal(st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(prevent(n, 0, &r), SCSI_GOOD);
	assert_int_equal(start_stop(n, 0x02, &r), SCSI_GOOD);
	st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, 0x00);
	assert_int_equal(prevent(n, 1, &r), SCSI_GOOD);
	start_stop(n, 0x03, &r);                        /* load, prevented */
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	assert_int_equal(prevent(n, 0, &r), SCSI_GOOD);
	assert_int_equal(start_stop(n, 0x03, &r), SCSI_GOOD);
	assert_int_equal(st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	/* A power condition: LOEJ ignored, still loaded. */
	for (uint8_t pc = 1; pc < 16; pc++) {
		assert_int_equal(start_stop(n, (uint8_t)(pc << 4 | 0x02), &r), SCSI_GOOD);
		assert_int_equal(st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	}
	/* A stop flushes (the disk completes it): GOOD. */
	assert_int_equal(start_stop(n, 0x00, &r), SCSI_GOOD);
	/* PREVENT from another nexus blocks us until that nexus goes
	 * (PreventAllow.2ITNexuses, ITNexusLoss). */
	n2 = st_nexus(t, IQN1, 2);
	st_clear_ua(n2, 0);
	assert_int_equal(prevent(n2, 1, &r), SCSI_GOOD);
	start_stop(n, 0x02, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	scsi_nexus_free(n2);
	assert_int_equal(start_stop(n, 0x02, &r), SCSI_GOOD);
	assert_int_equal(start_stop(n, 0x03, &r), SCSI_GOOD);
	/* ... or an LU reset (PreventAllow.LUNReset). */
	assert_int_equal(prevent(n, 1, &r), SCSI_GOOD);
	assert_int_equal(scsi_lu_reset(n, 0), 0);
	st_clear_ua(n, 0);
	assert_int_equal(start_stop(n, 0x02, &r), SCSI_GOOD);
	/* Obsolete PREVENT values. */
	prevent(n, 2, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static bool probe_gone(void *opaque)
{
	return *(bool *)opaque;
}

/* libiscsi's PreventAllow.ITNexusLoss failed now and then: the initiator
 * closed its connection and logged in again with a new ISID at once, and
 * the new session's eject ran before the old session's thread had seen
 * the end of its connection, so the old nexus's PREVENT still held. An
 * eject now asks the transport's probe and drops a gone nexus's PREVENT
 * (and only a gone one's). */
static void test_scsi_spc_prevent_gone_nexus_regression(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_lu_opts o = { .removable = true };
	struct scsi_nexus *old, *n, *quiet;
	bool old_gone = false, quiet_gone = false;
	struct st_result r;

	(void)state;
	st_add_lu(t, 0, "mem:1M", &o);
	old = st_nexus(t, IQN1, 1);
	quiet = st_nexus(t, IQN1, 3);
	scsi_nexus_set_probe(old, probe_gone, &old_gone);
	st_clear_ua(old, 0);
	assert_int_equal(prevent(old, 1, &r), SCSI_GOOD);
	n = st_nexus(t, IQN1, 2);
	st_clear_ua(n, 0);
	/* The old initiator is still connected: its PREVENT holds. */
	start_stop(n, 0x02, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	/* It has closed its connection; its transport has not noticed. */
	old_gone = true;
	assert_int_equal(start_stop(n, 0x02, &r), SCSI_GOOD);
	assert_int_equal(start_stop(n, 0x03, &r), SCSI_GOOD);
	/* A nexus without a probe, or whose probe says present, keeps it. */
	st_clear_ua(quiet, 0);
	assert_int_equal(prevent(quiet, 1, &r), SCSI_GOOD);
	start_stop(n, 0x02, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	scsi_nexus_set_probe(quiet, probe_gone, &quiet_gone);
	start_stop(n, 0x02, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	/* Freeing the nexus whose loss was already done is harmless. */
	scsi_nexus_free(old);
	start_stop(n, 0x02, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	assert_int_equal(prevent(quiet, 0, &r), SCSI_GOOD);
	assert_int_equal(start_stop(n, 0x02, &r), SCSI_GOOD);
	scsi_nexus_free(quiet);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static void test_scsi_spc_start_stop_fixed(void **state)
{
	struct st_fix *f = *state;
	struct st_result r;

	assert_int_equal(start_stop(f->n, 0x01, &r), SCSI_GOOD);
	assert_int_equal(start_stop(f->n, 0x00, &r), SCSI_GOOD);
	/* LOEJ on a disk whose medium cannot be removed. */
	start_stop(f->n, 0x02, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	assert_int_equal(prevent(f->n, 1, &r), SCSI_GOOD);
	assert_int_equal(prevent(f->n, 0, &r), SCSI_GOOD);
}

static void test_scsi_spc_read_only(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t b[255];
	struct st_result r;

	(void)state;
	st_add_lu(t, 0, "mem:1M,ro", NULL);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	assert_int_equal(mode_sense6(n, 0x3f, 0, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[2] & 0x80, 0x80);            /* WP */
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static void test_scsi_spc_pr_placeholder_entries(void **state)
{
	struct st_fix *f = *state;
	const uint8_t prin[10] = { 0x5E, 0x04, 0, 0, 0, 0, 0, 0, 8, 0 };
	uint8_t b[8];
	struct st_result r;

	/* An unknown PR IN service action is an invalid field at byte 1. */
	st_run(f->n, 0, prin, 10, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	assert_int_equal(ds_get_be16(r.sense + 16), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_scsi_spc_tur, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_inquiry_standard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_inquiry_vpd, setup, teardown),
		cmocka_unit_test(test_scsi_spc_report_luns),
		cmocka_unit_test_setup_teardown(test_scsi_spc_request_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_mode_sense, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_mode_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_report_opcodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_reserve6, setup, teardown),
		cmocka_unit_test(test_scsi_spc_start_stop_removable),
		cmocka_unit_test(test_scsi_spc_prevent_gone_nexus_regression),
		cmocka_unit_test_setup_teardown(test_scsi_spc_start_stop_fixed, setup, teardown),
		cmocka_unit_test(test_scsi_spc_read_only),
		cmocka_unit_test_setup_teardown(test_scsi_spc_pr_placeholder_entries, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
