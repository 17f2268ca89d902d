/* SPDX-License-Identifier: MIT */
/*
 * test-scsi-core.c: the SCSI core's own machinery (scsi/lu.c, sense.c):
 * LUN encoding, the absent and well-known LUN rules of SPC-4, opcode
 * lookup, unit attentions (new nexus, capacity change through a resized
 * RAM disk, LU and target reset), SPC-2 reservations between two
 * nexuses, read-only LUs, and the disk_status table row by row.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "scsi/internal.h"
#include "storage/layered.h"
#include "storage/spec.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

#define IQN1 "iqn.2024-01.org.example:host1"
#define IQN2 "iqn.2024-01.org.example:host2"

static const uint8_t tur[6] = { 0x00 };

static void test_scsi_core_lun_codec(void **state)
{
	(void)state;
	for (unsigned l = 0; l < 16384; l += 37)
		assert_int_equal(scsi_lun_decode(scsi_lun_encode(l)), l);
	assert_int_equal(scsi_lun_decode(scsi_lun_encode(255)), 255);
	assert_int_equal(scsi_lun_decode(scsi_lun_encode(256)), 256);
	assert_int_equal(scsi_lun_encode(5), 0x0005000000000000ull);
	assert_int_equal(scsi_lun_encode(300), 0x412C000000000000ull);
	/* flat space form of a small LUN */
	assert_int_equal(scsi_lun_decode(0x4005000000000000ull), 5);
	/* a bus other than 0, a second level, extended and logical unit
	 * addressing: not ours */
	assert_int_equal(scsi_lun_decode(0x0105000000000000ull), -1);
	assert_int_equal(scsi_lun_decode(0x0005000100000000ull), -1);
	assert_int_equal(scsi_lun_decode(0xC101000000000000ull), -1);
	assert_int_equal(scsi_lun_decode(0x8001000000000000ull), -1);
}

static void test_scsi_core_sense_parse(void **state)
{
	uint8_t fixed[18] = { 0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x01 };
	uint8_t desc[8] = { 0x72, 0x06, 0x29, 0x03 };
	uint8_t k, a, q;

	(void)state;
	scsi_sense_parse(fixed, sizeof(fixed), &k, &a, &q);
	assert_int_equal(k, 5);
	assert_int_equal(a, 0x24);
	assert_int_equal(q, 0x01);
	scsi_sense_parse(desc, sizeof(desc), &k, &a, &q);
	assert_int_equal(k, 6);
	assert_int_equal(a, 0x29);
	assert_int_equal(q, 0x03);
	scsi_sense_parse(fixed, 10, &k, &a, &q);       /* too short for the ASC */
	assert_int_equal(a, 0);
	scsi_sense_parse(NULL, 0, &k, &a, &q);
	assert_int_equal(k, 0);
	assert_string_equal(scsi_status_str(SCSI_RESERVATION_CONFLICT), "RESERVATION CONFLICT");
}

/* SAM-5 §5.14: a new nexus gets 29h/00h once; INQUIRY and REPORT LUNS
 * neither report nor clear it. */
static void test_scsi_core_ua_new_nexus(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 }, b[64];
	struct st_result r;

	(void)state;
	st_add_lu(t, 0, "mem:1M", NULL);
	n = st_nexus(t, IQN1, 1);
	assert_int_equal(st_run(n, 0, inq, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x00);
	assert_int_equal(st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

/* SPC-4 §6.6.2 and SAM-5 §4.6.5: absent LUNs. */
static void test_scsi_core_absent_lun(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 }, b[96];
	uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
	struct st_result r;

	(void)state;
	st_add_lu(t, 1, "mem:1M", NULL);
	n = st_nexus(t, IQN1, 1);
	/* INQUIRY on LUN 0 (no LU) and on LUN 9: qualifier 3, type 1Fh. */
	assert_int_equal(st_run(n, 0, inq, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[0], 0x7F);
	assert_int_equal(st_run(n, 9, inq, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[0], 0x7F);
	/* Other commands: LOGICAL UNIT NOT SUPPORTED. */
	st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0x00);
	st_run(n, 200, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0x00);
	st_run_wire(n, 0x0105000000000000ull, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0x00);
	/* REQUEST SENSE says the same as data. */
	assert_int_equal(st_run(n, 9, rs, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[2], SCSI_SK_ILLEGAL_REQUEST);
	assert_int_equal(b[12], 0x25);
	/* VPD of an absent LU: invalid field. */
	inq[1] = 1;
	st_run(n, 9, inq, 6, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* The well-known LU: INQUIRY type 1Eh, TUR GOOD, others invalid. */
	inq[1] = 0;
	assert_int_equal(st_run_wire(n, 0xC101000000000000ull, inq, 6, SCSI_DIR_IN, b, sizeof(b),
				     &r), SCSI_GOOD);
	assert_int_equal(b[0], 0x1E);
	assert_int_equal(st_run_wire(n, 0xC101000000000000ull, tur, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_GOOD);
	const uint8_t ms[6] = { 0x1A, 0, 0x3f, 0, 255, 0 };

	st_run_wire(n, 0xC101000000000000ull, ms, 6, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static void test_scsi_core_opcodes(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	struct st_result r;
	uint8_t cdb[16];

	(void)state;
	st_add_lu(t, 0, "mem:1M", NULL);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	/* An opcode nobody has: INVALID COMMAND OPERATION CODE. */
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0xE7;
	st_run(n, 0, cdb, 16, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
	/* NACA = 1 without ACA support: invalid field in the CONTROL byte. */
	cdb[0] = 0x00;
	cdb[5] = 0x04;
	st_run(n, 0, cdb, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	assert_int_equal(ds_get_be16(r.sense + 16), 5);
	/* Bytes past cdb_len read as zero, whatever the buffer held. */
	assert_int_equal(st_run(n, 0, cdb, 5, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

/* A write to a read-only LU is DATA PROTECT, but a CDB with a field the
 * command lacks (WRPROTECT) is an invalid field first: libiscsi's
 * *.WriteProtect tests on a read-only LU. */
static void test_scsi_core_read_only_field_order(void **state)
{
	struct scsi_target *t = st_target(NULL);
	uint8_t cdb[10] = { 0x2a }, blk[512] = { 0 };
	struct scsi_nexus *n;
	struct st_result r;

	(void)state;
	st_add_lu(t, 0, "mem:1M,ro", NULL);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	cdb[8] = 1;
	st_run(n, 0, cdb, 10, SCSI_DIR_OUT, blk, sizeof(blk), &r);
	st_assert_sense(&r, SCSI_SK_DATA_PROTECT, 0x27, 0x00);
	cdb[1] = 0x20;                          /* WRPROTECT 1 */
	st_run(n, 0, cdb, 10, SCSI_DIR_OUT, blk, sizeof(blk), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	assert_int_equal(ds_get_be16(r.sense + 16), 1);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

/* SBC-3 §4.10: a resized disk gives every nexus 2Ah/09h once. */
static void test_scsi_core_ua_capacity(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n1, *n2;
	struct disk *d = NULL;
	struct st_result r;
	char err[256];

	(void)state;
	assert_int_equal(ramdisk_new(1 << 20, 512, false, &d, err, sizeof(err)), 0);
	st_add_disk(t, 0, d, NULL);
	n1 = st_nexus(t, IQN1, 1);
	n2 = st_nexus(t, IQN2, 1);
	st_clear_ua(n1, 0);
	st_clear_ua(n2, 0);
	assert_int_equal(ramlayer_resize(layered_disk_layer(d, 0), 4096), 0);
	st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x2A, 0x09);
	assert_int_equal(st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x2A, 0x09);
	assert_int_equal(st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	/* The same size again wakes nobody. */
	assert_int_equal(ramlayer_resize(layered_disk_layer(d, 0), 4096), 0);
	assert_int_equal(st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	scsi_nexus_free(n1);
	scsi_nexus_free(n2);
	scsi_target_free(t);
	disk_unref(d);
}

/* Unit attentions queue in order, drop duplicates, and a reset replaces
 * what came before it. */
static void test_scsi_core_ua_queue(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_lu *lu = st_add_lu(t, 0, "mem:1M", NULL);
	struct scsi_nexus *n1 = st_nexus(t, IQN1, 1), *n2 = st_nexus(t, IQN2, 1);
	struct st_result r;

	(void)state;
	st_clear_ua(n1, 0);
	st_clear_ua(n2, 0);
	scsi_lu_ua_all(lu, n1, 0x2A, 0x01);
	scsi_lu_ua_all(lu, NULL, 0x2A, 0x09);
	scsi_lu_ua_all(lu, NULL, 0x2A, 0x09);
	/* n1 was excepted from the first */
	st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x2A, 0x09);
	assert_int_equal(st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x2A, 0x01);
	scsi_lu_ua_all(lu, NULL, 0x29, 0x03);
	st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x03);
	assert_int_equal(st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	/* By host id: only the nexus of that initiator port. */
	const struct disk_initiator *di = scsi_nexus_disk_initiator(n2);

	assert_int_equal(di->host_id_len, 16);
	assert_memory_not_equal(di->host_id, scsi_nexus_disk_initiator(n1)->host_id, 16);
	assert_int_equal(st_clear_ua(n1, 0), 1);        /* the 29h/03h */
	scsi_lu_ua_host(lu, di->host_id, di->host_id_len, 0x2A, 0x03);
	assert_int_equal(st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x2A, 0x03);
	scsi_nexus_free(n1);
	scsi_nexus_free(n2);
	scsi_target_free(t);
}

static void test_scsi_core_host_id_stable(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *a, *b, *c;

	(void)state;
	st_add_lu(t, 0, "mem:64K", NULL);
	a = st_nexus(t, IQN1, 1);
	b = st_nexus(t, IQN1, 1);
	c = st_nexus(t, IQN1, 2);
	/* The same port name is the same initiator port; another ISID is not. */
	assert_memory_equal(scsi_nexus_disk_initiator(a)->host_id,
			    scsi_nexus_disk_initiator(b)->host_id, 16);
	assert_memory_not_equal(scsi_nexus_disk_initiator(a)->host_id,
				scsi_nexus_disk_initiator(c)->host_id, 16);
	assert_string_equal(scsi_nexus_id(c)->name, IQN1);
	scsi_nexus_free(a);
	scsi_nexus_free(b);
	scsi_nexus_free(c);
	scsi_target_free(t);
}

/* LUNs 0 and 1 (mem:1M) on @t and two nexuses (IQN1, IQN2) on it,
 * their unit attentions cleared. */
static void two_lus_two_nexuses(struct scsi_target *t, struct scsi_nexus **n1,
				struct scsi_nexus **n2)
{
	st_add_lu(t, 0, "mem:1M", NULL);
	st_add_lu(t, 1, "mem:1M", NULL);
	*n1 = st_nexus(t, IQN1, 1);
	*n2 = st_nexus(t, IQN2, 1);
	for (unsigned l = 0; l < 2; l++) {
		st_clear_ua(*n1, l);
		st_clear_ua(*n2, l);
	}
}

static void test_scsi_core_lu_reset(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n1, *n2;
	struct st_result r;

	(void)state;
	two_lus_two_nexuses(t, &n1, &n2);
	assert_int_equal(scsi_lu_reset(n1, scsi_lun_encode(5)), -ENOENT);
	assert_int_equal(scsi_lu_reset(n1, scsi_lun_encode(1)), 0);
	/* every nexus hears of it, on that LU only */
	assert_int_equal(st_run(n1, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	st_run(n1, 1, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x03);
	st_run(n2, 1, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x03);
	scsi_target_reset(n2);
	for (unsigned l = 0; l < 2; l++) {
		st_run(n1, l, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x02);
	}
	scsi_nexus_free(n1);
	scsi_nexus_free(n2);
	scsi_target_free(t);
}

/* I_T NEXUS RESET (SAM-5 §7.7): only that nexus hears 29h/07h, on every
 * LU, and loses its SPC-2 reservation; the other nexus is untouched. */
static void test_scsi_core_nexus_reset(void **state)
{
	static const uint8_t reserve6[6] = { 0x16 };
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n1, *n2;
	struct st_result r;

	(void)state;
	two_lus_two_nexuses(t, &n1, &n2);
	assert_int_equal(st_run(n1, 0, reserve6, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(st_run(n2, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r),
			 SCSI_RESERVATION_CONFLICT);
	scsi_nexus_reset(n1);
	for (unsigned l = 0; l < 2; l++) {
		st_run(n1, l, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x07);
		assert_int_equal(st_run(n2, l, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	}
	scsi_nexus_free(n1);
	scsi_nexus_free(n2);
	scsi_target_free(t);
}

struct hot_events {
	unsigned n, lun[4];
	enum scsi_event ev[4];
};

static void hot_event_fn(void *opaque, unsigned lun, enum scsi_event ev)
{
	struct hot_events *h = opaque;

	if (h->n < 4) {
		h->lun[h->n] = lun;
		h->ev[h->n++] = ev;
	}
}

/* An LU added while nexuses run: it answers at once, with 29h/00h first;
 * the others report REPORTED LUNS DATA HAS CHANGED; the listener hears
 * of it (not of LUs added before the first nexus), and of its removal. */
static void test_scsi_core_hot_add(void **state)
{
	static const uint8_t report_luns[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
	struct scsi_target *t = st_target(NULL);
	struct hot_events h = { 0 };
	struct scsi_nexus *n;
	struct st_result r;
	uint8_t buf[256];

	(void)state;
	scsi_target_set_event_fn(t, hot_event_fn, &h);
	st_add_lu(t, 0, "mem:1M", NULL);
	assert_int_equal(h.n, 0);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	st_add_lu(t, 3, "mem:1M", NULL);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.lun[0], 3);
	assert_int_equal(h.ev[0], SCSI_EVENT_LUN_ADDED);
	st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x3F, 0x0E);
	assert_int_equal(st_run(n, 0, report_luns, 12, SCSI_DIR_IN, buf, sizeof(buf), &r), SCSI_GOOD);
	assert_int_equal(buf[3], 16);
	st_run(n, 3, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x00);
	assert_int_equal(st_run(n, 3, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	/* Removed again: the listener hears that too (virtio-scsi's REMOVED). */
	assert_int_equal(scsi_target_remove_lu(t, 3), 0);
	assert_int_equal(h.n, 2);
	assert_int_equal(h.lun[1], 3);
	assert_int_equal(h.ev[1], SCSI_EVENT_LUN_REMOVED);
	scsi_target_set_event_fn(t, NULL, NULL);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

struct hot_remove {
	struct scsi_target *t;
	int ret;
};

static void *hot_remove_thread(void *arg)
{
	struct hot_remove *h = arg;

	h->ret = scsi_target_remove_lu(h->t, 3);
	return NULL;
}

static void hot_remove_done(struct scsi_cmd *cmd)
{
	*(bool *)cmd->opaque = true;
}

/* Submits a data-in @cdb to LUN 3 of @n into @iov, then removes LUN 3
 * from another thread while the command runs, and returns once both the
 * command (@done_fn sets *@done) and the removal have ended. */
static void hot_remove_during(struct hot_remove *h, struct scsi_cmd *cmd, struct scsi_nexus *n,
			      const uint8_t *cdb, uint8_t cdb_len, struct iovec *iov,
			      void (*done_fn)(struct scsi_cmd *cmd), bool *done)
{
	pthread_t th;

	memset(cmd, 0, sizeof(*cmd));
	cmd->nexus = n;
	cmd->lun = scsi_lun_encode(3);
	memcpy(cmd->cdb, cdb, cdb_len);
	cmd->cdb_len = cdb_len;
	cmd->dir = SCSI_DIR_IN;
	cmd->iov = iov;
	cmd->iovcnt = 1;
	cmd->xfer_len = (uint32_t)iov->iov_len;
	cmd->done = done_fn;
	cmd->opaque = done;
	scsi_cmd_submit(cmd);
	assert_false(*done);    /* in flight while the removal starts */
	assert_int_equal(pthread_create(&th, NULL, hot_remove_thread, h), 0);
	assert_int_equal(reactor_run_until(tu_reactor(), done), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(h->ret, 0);
}

/* An LU removed while a READ runs on it (regression of the control
 * socket's iscsi-lun-remove): the READ finishes GOOD with its data, the
 * removal returns after it, the LUN then answers LOGICAL UNIT NOT
 * SUPPORTED and drops out of REPORT LUNS, the other LUs report
 * REPORTED LUNS DATA HAS CHANGED, and a new LU can take the slot. */
static void test_scsi_core_hot_remove(void **state)
{
	static const uint8_t report_luns[12] = { 0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
	static const uint8_t read10[10] = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	struct scsi_target *t = st_target(NULL);
	struct hot_remove h = { .t = t, .ret = 1 };
	uint8_t data[4096], buf[256];
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
	struct scsi_cmd cmd;
	struct scsi_nexus *n;
	struct st_result r;
	bool done = false;

	(void)state;
	st_add_lu(t, 0, "mem:1M", NULL);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	/* A delay: disk keeps the READ in flight while the removal starts. */
	st_add_lu(t, 3, "delay:20ms:mem:1M", NULL);
	st_clear_ua(n, 0);
	st_clear_ua(n, 3);
	memset(data, 0xee, sizeof(data));
	hot_remove_during(&h, &cmd, n, read10, sizeof(read10), &iov, hot_remove_done, &done);
	assert_int_equal(cmd.status, SCSI_GOOD);
	assert_int_equal(data[0], 0);
	assert_int_equal(data[sizeof(data) - 1], 0);
	assert_null(scsi_target_lu(t, 3));
	st_run(n, 3, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x25, 0x00);
	st_run(n, 0, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x3F, 0x0E);
	assert_int_equal(st_run(n, 0, report_luns, 12, SCSI_DIR_IN, buf, sizeof(buf), &r), SCSI_GOOD);
	assert_int_equal(buf[3], 8);
	assert_int_equal(scsi_target_remove_lu(t, 3), -ENOENT);
	/* The slot is free again; the new LU starts with its power-on UA. */
	st_add_lu(t, 3, "mem:2M", NULL);
	st_run(n, 3, tur, 6, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x29, 0x00);
	assert_int_equal(st_run(n, 3, tur, 6, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

/* Its done callback holds the reactor thread long enough for the
 * removal (it polls every millisecond) to see the command finished. */
static void hot_remove_slow_done(struct scsi_cmd *cmd)
{
	usleep(30 * 1000);
	*(bool *)cmd->opaque = true;
}

/* A LU removed while a PERSISTENT RESERVE IN runs on it (regression from
 * review): the PR code ran the command's completion before it handed the
 * PR queue on, so a removal that saw the command finished freed the PR
 * state under it (an assert in scsi_pr_free, or a freed mutex locked). */
static void test_scsi_core_hot_remove_pr_finish_regression(void **state)
{
	static const uint8_t read_keys[10] = { 0x5E, 0, 0, 0, 0, 0, 0, 0, 64, 0 };
	struct scsi_target *t = st_target(NULL);
	struct hot_remove h = { .t = t, .ret = 1 };
	uint8_t data[64];
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
	struct scsi_cmd cmd;
	struct scsi_nexus *n;
	bool done = false;

	(void)state;
	st_add_lu(t, 3, "delay:20ms:mem:1M", NULL);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 3);
	hot_remove_during(&h, &cmd, n, read_keys, sizeof(read_keys), &iov, hot_remove_slow_done,
			  &done);
	assert_int_equal(cmd.status, SCSI_GOOD);
	assert_null(scsi_target_lu(t, 3));
	scsi_nexus_free(n);
	scsi_target_free(t);
}

/* A target name longer than a designator can hold is cut, not wrapped
 * around its one-byte length. */
static void test_scsi_core_long_target_name(void **state)
{
	char name[300];
	struct scsi_target *t;
	struct scsi_nexus *n;
	uint8_t cdb[6] = { 0x12, 1, 0x83, 4, 0, 0 }, b[1024];
	struct st_result r;

	(void)state;
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	t = st_target(name);
	st_add_lu(t, 0, "mem:64K", NULL);
	n = st_nexus(t, IQN1, 1);
	assert_int_equal(st_run(n, 0, cdb, 6, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	unsigned total = ds_get_be16(b + 2) + 4u, off = 4;

	while (off < total) {
		assert_true(b[off + 3] > 0);
		off += 4u + b[off + 3];
	}
	assert_int_equal(off, total);
	assert_int_equal(r.data_len, total);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static void test_scsi_core_lu_new_errors(void **state)
{
	struct scsi_lu *lu = NULL;
	struct scsi_target *t = st_target(NULL);
	struct disk *d = NULL;
	char err[256];
	struct scsi_lu_opts o = { .vendor = "TOO LONG VENDOR" };

	(void)state;
	assert_int_equal(scsi_lu_new(NULL, NULL, &lu, err, sizeof(err)), -EINVAL);
	assert_int_equal(ramdisk_new(1 << 20, 512, false, &d, err, sizeof(err)), 0);
	assert_int_equal(scsi_lu_new(d, &o, &lu, err, sizeof(err)), -EINVAL);
	assert_null(lu);
	o.vendor = "ACME";
	o.product = "THING";
	assert_int_equal(scsi_lu_new(d, &o, &lu, err, sizeof(err)), 0);
	assert_memory_equal(scsi_lu_opts(lu)->vendor, "ACME    ", 8);
	assert_memory_equal(scsi_lu_opts(lu)->product, "THING           ", 16);
	assert_int_equal(scsi_lu_block_size(lu), 512);
	assert_int_equal(scsi_lu_change_media(lu, NULL, false), -EINVAL);
	assert_int_equal(scsi_target_add_lu(t, 0, lu), 0);
	assert_ptr_equal(scsi_target_lu(t, 0), lu);
	assert_int_equal(scsi_lu_lun(lu), 0);
	/* taken, and out of range: the LU is freed either way */
	assert_int_equal(scsi_lu_new(d, NULL, &lu, err, sizeof(err)), 0);
	assert_int_equal(scsi_target_add_lu(t, 0, lu), -EEXIST);
	assert_int_equal(scsi_lu_new(d, NULL, &lu, err, sizeof(err)), 0);
	assert_int_equal(scsi_target_add_lu(t, SCSI_MAX_LUNS, lu), -EINVAL);
	/* a serial derived from target + LUN when the disk has no id */
	assert_int_equal(strlen(scsi_lu_opts(scsi_target_lu(t, 0))->serial), 32);
	scsi_lu_free(NULL);
	scsi_target_free(t);
	disk_unref(d);
}

/* ---- the disk_status table, row by row -------------------------------------------- */

struct status_case {
	int status;
	enum disk_op op;
	int os_errno;
	enum disk_medium_detail medium;
	uint8_t want_status, key, asc, ascq;
	bool info;
};

static const struct status_case status_cases[] = {
	{ DISK_OK, DISK_OP_READ, 0, 0, SCSI_GOOD, 0, 0, 0, false },
	{ DISK_ILLEGAL_BLOCK, DISK_OP_READ, 0, 0, SCSI_CHECK_CONDITION, 5, 0x21, 0x00, false },
	{ DISK_INVALID_INPUT, DISK_OP_WRITE, 0, 0, SCSI_CHECK_CONDITION, 5, 0x24, 0x00, false },
	{ DISK_IO_ERROR, DISK_OP_READ, EIO, 0, SCSI_CHECK_CONDITION, 3, 0x11, 0x00, true },
	{ DISK_IO_ERROR, DISK_OP_WRITE, EIO, 0, SCSI_CHECK_CONDITION, 3, 0x0C, 0x00, true },
	{ DISK_IO_ERROR, DISK_OP_FLUSH, EIO, 0, SCSI_CHECK_CONDITION, 3, 0x0C, 0x00, false },
	{ DISK_IO_ERROR, DISK_OP_WRITE, ENOSPC, 0, SCSI_CHECK_CONDITION, 7, 0x27, 0x07, false },
	{ DISK_IO_ERROR, DISK_OP_WRITE, EFBIG, 0, SCSI_CHECK_CONDITION, 7, 0x27, 0x07, false },
	{ DISK_IO_ERROR, DISK_OP_UNMAP, EIO, 0, SCSI_CHECK_CONDITION, 3, 0x0C, 0x00, false },
	/* PRE-FETCH only reads the medium: an unrecovered read, not a write error. */
	{ DISK_IO_ERROR, DISK_OP_CACHE, EIO, 0, SCSI_CHECK_CONDITION, 3, 0x11, 0x00, false },
	{ DISK_MEDIUM_ERROR, DISK_OP_CACHE, 0, DISK_MEDIUM_NONE, SCSI_CHECK_CONDITION, 3, 0x11, 0x00, false },
	{ DISK_IO_ERROR, DISK_OP_WRITE, EROFS, 0, SCSI_CHECK_CONDITION, 7, 0x27, 0x00, false },
	{ DISK_IO_ERROR, DISK_OP_READ, ENOMEM, 0, SCSI_BUSY, 0, 0, 0, false },
	{ DISK_IO_ERROR, DISK_OP_READ, ENOMEDIUM, 0, SCSI_CHECK_CONDITION, 2, 0x3A, 0x00, false },
	{ DISK_IO_ERROR, DISK_OP_READ, ECONNRESET, 0, SCSI_CHECK_CONDITION, 4, 0x44, 0x00, false },
	{ DISK_IO_ERROR, DISK_OP_READ, ETIMEDOUT, 0, SCSI_CHECK_CONDITION, 4, 0x44, 0x00, false },
	{ DISK_MEDIUM_ERROR, DISK_OP_READ, 0, DISK_MEDIUM_UNRECOVERED_READ,
	  SCSI_CHECK_CONDITION, 3, 0x11, 0x00, true },
	{ DISK_MEDIUM_ERROR, DISK_OP_WRITE, 0, DISK_MEDIUM_WRITE_FAULT,
	  SCSI_CHECK_CONDITION, 3, 0x0C, 0x00, true },
	{ DISK_MEDIUM_ERROR, DISK_OP_READ, 0, DISK_MEDIUM_GUARD, SCSI_CHECK_CONDITION, 3, 0x10, 0x01, true },
	{ DISK_MEDIUM_ERROR, DISK_OP_READ, 0, DISK_MEDIUM_APP_TAG, SCSI_CHECK_CONDITION, 3, 0x10, 0x02, true },
	{ DISK_MEDIUM_ERROR, DISK_OP_READ, 0, DISK_MEDIUM_REF_TAG, SCSI_CHECK_CONDITION, 3, 0x10, 0x03, true },
	{ DISK_MEDIUM_ERROR, DISK_OP_WRITE, 0, DISK_MEDIUM_NONE, SCSI_CHECK_CONDITION, 3, 0x0C, 0x00, true },
	{ DISK_MEDIUM_ERROR, DISK_OP_READ, 0, DISK_MEDIUM_NONE, SCSI_CHECK_CONDITION, 3, 0x11, 0x00, true },
	{ DISK_MEMORY_ACCESS, DISK_OP_READ, 0, 0, SCSI_CHECK_CONDITION, 0xb, 0x4B, 0x00, false },
	{ DISK_READ_ONLY, DISK_OP_WRITE, 0, 0, SCSI_CHECK_CONDITION, 7, 0x27, 0x00, false },
	{ DISK_RESERVATION_CONFLICT, DISK_OP_WRITE, 0, 0, SCSI_RESERVATION_CONFLICT, 0, 0, 0, false },
	{ DISK_ABORTED_PREEMPT, DISK_OP_WRITE, 0, 0, SCSI_TASK_ABORTED, 0, 0, 0, false },
	{ DISK_UNSUPPORTED, DISK_OP_WRITE_ZEROES, 0, 0, SCSI_CHECK_CONDITION, 5, 0x24, 0x00, false },
	{ 99, DISK_OP_READ, 0, 0, SCSI_CHECK_CONDITION, 4, 0x44, 0x00, false },
};

static void test_scsi_core_disk_status_table(void **state)
{
	bool seen[DISK_STATUS_COUNT] = { false };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(status_cases); i++) {
		const struct status_case *c = &status_cases[i];
		struct disk_io io;
		struct scsi_cmd cmd;
		uint8_t k, a, q;

		memset(&io, 0, sizeof(io));
		memset(&cmd, 0, sizeof(cmd));
		io.status = c->status;
		io.op = c->op;
		io.os_errno = c->os_errno;
		io.medium = c->medium;
		scsi_cmd_disk_status(&cmd, &io, 0x1234);
		if (c->status >= 0 && c->status < DISK_STATUS_COUNT)
			seen[c->status] = true;
		if (cmd.status != c->want_status)
			fail_msg("row %zu (%s): status %02x, want %02x", i, disk_status_str(c->status),
				 cmd.status, c->want_status);
		if (c->want_status != SCSI_CHECK_CONDITION) {
			assert_int_equal(cmd.sense_len, 0);
			continue;
		}
		assert_int_equal(cmd.sense_len, 18);
		scsi_sense_parse(cmd.sense, cmd.sense_len, &k, &a, &q);
		if (k != c->key || a != c->asc || q != c->ascq)
			fail_msg("row %zu (%s): %x/%02x/%02x, want %x/%02x/%02x", i,
				 disk_status_str(c->status), k, a, q, c->key, c->asc, c->ascq);
		assert_int_equal(!!(cmd.sense[0] & 0x80), c->info);
		if (c->info)
			assert_int_equal(ds_get_be32(cmd.sense + 3), 0x1234);
	}
	for (int s = 0; s < DISK_STATUS_COUNT; s++)
		if (!seen[s])
			fail_msg("disk_status %d (%s) has no row", s, disk_status_str(s));
	/* An LBA past 32 bits does not fit the fixed INFORMATION field. */
	struct disk_io io = { .status = DISK_MEDIUM_ERROR, .op = DISK_OP_READ };
	struct scsi_cmd cmd;

	memset(&cmd, 0, sizeof(cmd));
	scsi_cmd_disk_status(&cmd, &io, 1ull << 33);
	assert_int_equal(cmd.sense[0], 0x70);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scsi_core_lun_codec),
		cmocka_unit_test(test_scsi_core_sense_parse),
		cmocka_unit_test(test_scsi_core_ua_new_nexus),
		cmocka_unit_test(test_scsi_core_absent_lun),
		cmocka_unit_test(test_scsi_core_opcodes),
		cmocka_unit_test(test_scsi_core_read_only_field_order),
		cmocka_unit_test(test_scsi_core_ua_capacity),
		cmocka_unit_test(test_scsi_core_ua_queue),
		cmocka_unit_test(test_scsi_core_host_id_stable),
		cmocka_unit_test(test_scsi_core_lu_reset),
		cmocka_unit_test(test_scsi_core_nexus_reset),
		cmocka_unit_test(test_scsi_core_hot_add),
		cmocka_unit_test(test_scsi_core_hot_remove),
		cmocka_unit_test(test_scsi_core_hot_remove_pr_finish_regression),
		cmocka_unit_test(test_scsi_core_long_target_name),
		cmocka_unit_test(test_scsi_core_lu_new_errors),
		cmocka_unit_test(test_scsi_core_disk_status_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
