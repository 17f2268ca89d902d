/* SPDX-License-Identifier: MIT */
/*
 * test-scsi-spc.c: the SPC-4 commands of scsi/spc.c, one group of tests
 * per command, through the whole core (scsitest.h): TEST UNIT READY,
 * INQUIRY and its VPD pages, REQUEST SENSE, REPORT LUNS.
 */
#include "config.h"

#include <string.h>

#include "common/endian.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

#define IQN1 "iqn.2024-01.org.example:host1"

struct fix {
	struct scsi_target *t;
	struct scsi_nexus *n;
};

static int setup(void **state)
{
	static struct fix f;

	f.t = st_target(NULL);
	st_add_lu(f.t, 0, "mem:1M", NULL);
	f.n = st_nexus(f.t, IQN1, 1);
	st_clear_ua(f.n, 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	scsi_nexus_free(f->n);
	scsi_target_free(f->t);
	return 0;
}

static void test_scsi_spc_tur(void **state)
{
	struct fix *f = *state;
	const uint8_t cdb[6] = { 0x00 };
	struct st_result r;

	assert_int_equal(st_run(f->n, 0, cdb, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(r.sense_len, 0);
	assert_int_equal(r.data_len, 0);
}

static void test_scsi_spc_inquiry_standard(void **state)
{
	struct fix *f = *state;
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

static unsigned vpd(struct fix *f, uint8_t page, uint8_t *b, size_t len, struct st_result *r)
{
	uint8_t cdb[6] = { 0x12, 1, page, (uint8_t)(len >> 8), (uint8_t)len, 0 };

	memset(b, 0xaa, len);
	return st_run(f->n, 0, cdb, 6, SCSI_DIR_IN, b, len, r);
}

static void test_scsi_spc_inquiry_vpd(void **state)
{
	struct fix *f = *state;
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
	struct fix *f = *state;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_scsi_spc_tur, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_inquiry_standard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_spc_inquiry_vpd, setup, teardown),
		cmocka_unit_test(test_scsi_spc_report_luns),
		cmocka_unit_test_setup_teardown(test_scsi_spc_request_sense, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
