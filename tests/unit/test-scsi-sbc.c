/* SPDX-License-Identifier: MIT */
/*
 * test-scsi-sbc.c: the SBC-3 commands of scsi/sbc.c through the whole
 * core (scsitest.h), over mem:, file: and mock disks: every opcode, the
 * last LBA and one past it, transfer lengths of 0, residuals, FUA and
 * WCE, reserved bits, COMPARE AND WRITE against writers on another
 * reactor, WRITE SAME to the end of a small LU, UNMAP then GET LBA STATUS.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "scsi/internal.h"
#include "storage/decorators/delay.h"
#include "storage/spec.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

#define BS 512u
#define MEM_BLOCKS 2048u        /* LUN 0: mem:1M */

static struct st_fix *fix_new(const char *spec0)
{
	static struct st_fix f;

	st_fix_init(&f, spec0);
	return &f;
}

static int setup(void **state)
{
	*state = fix_new("mem:1M");
	return 0;
}

static int teardown(void **state)
{
	return st_fix_teardown(state);
}

/* A READ/WRITE/VERIFY-shaped CDB of opcode @op (its size from the group
 * code); returns its length. */
static size_t cdb_rw(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = op;
	switch (op >> 5) {
	case 0:
		cdb[1] = (uint8_t)(lba >> 16) & 0x1f;
		ds_put_be16(cdb + 2, (uint16_t)lba);
		cdb[4] = (uint8_t)n;
		return 6;
	case 1:
	case 2:
		ds_put_be32(cdb + 2, (uint32_t)lba);
		ds_put_be16(cdb + 7, (uint16_t)n);
		return 10;
	case 5:
		ds_put_be32(cdb + 2, (uint32_t)lba);
		ds_put_be32(cdb + 6, n);
		return 12;
	default:
		ds_put_be64(cdb + 2, lba);
		ds_put_be32(cdb + 10, n);
		return 16;
	}
}

static uint8_t run_rw(struct scsi_nexus *nx, unsigned lun, uint8_t op, uint64_t lba, uint32_t n,
		      enum scsi_data_dir dir, void *buf, size_t len, struct st_result *r)
{
	uint8_t cdb[16];
	size_t cl = cdb_rw(cdb, op, lba, n);

	return st_run(nx, lun, cdb, cl, dir, buf, len, r);
}

static void write_blocks(struct scsi_nexus *nx, unsigned lun, uint64_t lba, uint32_t n,
			 const void *buf)
{
	assert_int_equal(run_rw(nx, lun, 0x8a, lba, n, SCSI_DIR_OUT, (void *)buf, (size_t)n * BS,
				NULL), SCSI_GOOD);
}

static void read_blocks(struct scsi_nexus *nx, unsigned lun, uint64_t lba, uint32_t n, void *buf)
{
	struct st_result r;

	assert_int_equal(run_rw(nx, lun, 0x88, lba, n, SCSI_DIR_IN, buf, (size_t)n * BS, &r),
			 SCSI_GOOD);
	assert_int_equal(r.data_len, n * BS);
}

/* The sense-key specific field pointer of @r: byte, and bit (-1: none). */
static void sense_field(const struct st_result *r, unsigned *byte, int *bit)
{
	assert_true(r->sense[15] & 0x80);
	*byte = ds_get_be16(r->sense + 16);
	*bit = (r->sense[15] & 0x08) ? (r->sense[15] & 7) : -1;
}

static uint32_t sense_info(const struct st_result *r)
{
	assert_true(r->sense[0] & 0x80);        /* VALID */
	return ds_get_be32(r->sense + 3);
}

/* ---- READ and WRITE ---------------------------------------------------------- */

static void test_scsi_sbc_read_write_every_size(void **state)
{
	struct st_fix *f = *state;
	static const uint8_t wops[] = { 0x0a, 0x2a, 0xaa, 0x8a };
	static const uint8_t rops[] = { 0x08, 0x28, 0xa8, 0x88 };
	uint8_t buf[3 * BS];

	for (unsigned w = 0; w < 4; w++) {
		uint64_t lba = 100 + 10 * w;

		tu_fill(buf, sizeof(buf), w + 1, 0);
		assert_int_equal(run_rw(f->n, 0, wops[w], lba, 3, SCSI_DIR_OUT, buf, sizeof(buf),
					NULL), SCSI_GOOD);
		for (unsigned r = 0; r < 4; r++) {
			struct st_result res;

			memset(buf, 0, sizeof(buf));
			assert_int_equal(run_rw(f->n, 0, rops[r], lba, 3, SCSI_DIR_IN, buf,
						sizeof(buf), &res), SCSI_GOOD);
			assert_int_equal(res.data_len, sizeof(buf));
			assert_int_equal(res.want_len, sizeof(buf));
			assert_int_equal(tu_check(buf, sizeof(buf), w + 1, 0), -1);
		}
	}
}

static void test_scsi_sbc_last_lba_and_one_past(void **state)
{
	struct st_fix *f = *state;
	static const uint8_t rops[] = { 0x08, 0x28, 0xa8, 0x88 };
	static const uint8_t wops[] = { 0x0a, 0x2a, 0xaa, 0x8a };
	uint8_t buf[2 * BS];
	struct st_result r;

	for (unsigned i = 0; i < 4; i++) {
		tu_fill(buf, BS, 7, 0);
		assert_int_equal(run_rw(f->n, 0, wops[i], MEM_BLOCKS - 1, 1, SCSI_DIR_OUT, buf, BS,
					&r), SCSI_GOOD);
		assert_int_equal(run_rw(f->n, 0, rops[i], MEM_BLOCKS - 1, 1, SCSI_DIR_IN, buf, BS,
					&r), SCSI_GOOD);
		assert_int_equal(tu_check(buf, BS, 7, 0), -1);
		/* one past the end, and a run that crosses it: no data moves */
		memset(buf, 0xee, sizeof(buf));
		run_rw(f->n, 0, rops[i], MEM_BLOCKS, 1, SCSI_DIR_IN, buf, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
		assert_int_equal(r.data_len, 0);
		assert_int_equal(buf[0], 0xee);
		run_rw(f->n, 0, rops[i], MEM_BLOCKS - 1, 2, SCSI_DIR_IN, buf, 2 * BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
		run_rw(f->n, 0, wops[i], MEM_BLOCKS - 1, 2, SCSI_DIR_OUT, buf, 2 * BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	}
	/* the block before the end was not written by the refused write */
	read_blocks(f->n, 0, MEM_BLOCKS - 1, 1, buf);
	assert_int_equal(tu_check(buf, BS, 7, 0), -1);
	/* 16-byte LBAs far out */
	run_rw(f->n, 0, 0x88, 1ull << 63, 1, SCSI_DIR_IN, buf, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	run_rw(f->n, 0, 0x88, UINT64_MAX, 1, SCSI_DIR_IN, buf, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
}

static void test_scsi_sbc_transfer_length_zero(void **state)
{
	struct st_fix *f = *state;
	static const uint8_t ops[] = { 0x28, 0xa8, 0x88, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e,
				       0x2f, 0xaf, 0x8f };
	struct st_result r;

	for (unsigned i = 0; i < sizeof(ops); i++) {
		assert_int_equal(run_rw(f->n, 0, ops[i], 0, 0, SCSI_DIR_NONE, NULL, 0, &r),
				 SCSI_GOOD);
		assert_int_equal(r.want_len, 0);
		/* 0 blocks at the capacity is in range, one further is not */
		assert_int_equal(run_rw(f->n, 0, ops[i], MEM_BLOCKS, 0, SCSI_DIR_NONE, NULL, 0, &r),
				 SCSI_GOOD);
		run_rw(f->n, 0, ops[i], MEM_BLOCKS + 1, 0, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	}
}

/* READ(6) and WRITE(6): a TRANSFER LENGTH of 0 means 256 blocks. */
static void test_scsi_sbc_six_byte_zero_means_256(void **state)
{
	struct st_fix *f = *state;
	static uint8_t buf[256 * BS];
	struct st_result r;

	tu_fill(buf, sizeof(buf), 6, 0);
	assert_int_equal(run_rw(f->n, 0, 0x0a, 512, 0, SCSI_DIR_OUT, buf, sizeof(buf), &r),
			 SCSI_GOOD);
	assert_int_equal(r.want_len, sizeof(buf));
	memset(buf, 0, sizeof(buf));
	assert_int_equal(run_rw(f->n, 0, 0x08, 512, 0, SCSI_DIR_IN, buf, sizeof(buf), &r),
			 SCSI_GOOD);
	assert_int_equal(r.data_len, sizeof(buf));
	assert_int_equal(tu_check(buf, sizeof(buf), 6, 0), -1);
}

/* Data-in room that differs from the CDB (iSCSI EDTL): the core moves
 * min(room, CDB) and reports what the CDB asked (RFC 7143 §11.4.5). */
static void test_scsi_sbc_read_residuals(void **state)
{
	struct st_fix *f = *state;
	uint8_t blk[2 * BS], buf[10000];
	struct st_result r;

	tu_fill(blk, sizeof(blk), 9, 0);
	write_blocks(f->n, 0, 20, 2, blk);
	/* no room: GOOD, overflow of one block */
	assert_int_equal(run_rw(f->n, 0, 0x28, 20, 1, SCSI_DIR_IN, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 0);
	assert_int_equal(r.want_len, BS);
	/* room inside a block: the first 200 bytes */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(run_rw(f->n, 0, 0x28, 20, 1, SCSI_DIR_IN, buf, 200, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 200);
	assert_memory_equal(buf, blk, 200);
	assert_int_equal(buf[200], 0);
	/* room for 1.5 blocks of a 2-block read */
	assert_int_equal(run_rw(f->n, 0, 0x28, 20, 2, SCSI_DIR_IN, buf, 768, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 768);
	assert_int_equal(r.want_len, 2 * BS);
	assert_memory_equal(buf, blk, 768);
	/* more room than asked: underflow */
	assert_int_equal(run_rw(f->n, 0, 0x28, 20, 1, SCSI_DIR_IN, buf, sizeof(buf), &r),
			 SCSI_GOOD);
	assert_int_equal(r.data_len, BS);
	assert_int_equal(r.want_len, BS);
	/* a READ announced as a write transfers nothing */
	assert_int_equal(run_rw(f->n, 0, 0x28, 20, 1, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 0);
}

static void test_scsi_sbc_write_residuals(void **state)
{
	struct st_fix *f = *state;
	static const uint8_t ops[] = { 0x2a, 0x2e };
	uint8_t a[2 * BS], b[4 * BS], got[2 * BS];
	struct st_result r;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	for (unsigned i = 0; i < sizeof(ops); i++) {
		/* EDTL of 2 blocks for a 1-block write: only the block */
		write_blocks(f->n, 0, 30, 2, a);
		assert_int_equal(run_rw(f->n, 0, ops[i], 30, 1, SCSI_DIR_OUT, b, 2 * BS, &r),
				 SCSI_GOOD);
		assert_int_equal(r.want_len, BS);
		read_blocks(f->n, 0, 30, 2, got);
		assert_memory_equal(got, b, BS);
		assert_memory_equal(got + BS, a, BS);
		/* EDTL of 1 block for a 2-block write: the block sent */
		write_blocks(f->n, 0, 30, 2, a);
		assert_int_equal(run_rw(f->n, 0, ops[i], 30, 2, SCSI_DIR_OUT, b, BS, &r),
				 SCSI_GOOD);
		assert_int_equal(r.want_len, 2 * BS);
		read_blocks(f->n, 0, 30, 2, got);
		assert_memory_equal(got, b, BS);
		assert_memory_equal(got + BS, a, BS);
		/* EDTL 0: nothing written, GOOD with an overflow */
		write_blocks(f->n, 0, 30, 2, a);
		assert_int_equal(run_rw(f->n, 0, ops[i], 30, 1, SCSI_DIR_NONE, NULL, 0, &r),
				 SCSI_GOOD);
		assert_int_equal(r.want_len, BS);
		/* data-out ending inside a block: refused, nothing written */
		run_rw(f->n, 0, ops[i], 30, 1, SCSI_DIR_OUT, b, 200, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		assert_int_equal(r.want_len, BS);
		read_blocks(f->n, 0, 30, 2, got);
		assert_memory_equal(got, a, sizeof(a));
	}
}

/* Bits the usage data leaves out are refused with the field pointer on
 * them; GROUP NUMBER, DPO, FUA and FUA_NV are accepted. */
static void test_scsi_sbc_cdb_fields(void **state)
{
	struct st_fix *f = *state;
	uint8_t cdb[16], buf[BS];
	struct st_result r;
	unsigned byte;
	int bit;

	for (uint8_t prot = 1; prot < 8; prot++) {
		cdb_rw(cdb, 0x28, 0, 1);
		cdb[1] = (uint8_t)(prot << 5);
		st_run(f->n, 0, cdb, 10, SCSI_DIR_IN, buf, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
		sense_field(&r, &byte, &bit);
		assert_int_equal(byte, 1);
		assert_true(bit >= 5);
		cdb_rw(cdb, 0x8a, 0, 1);
		cdb[1] = (uint8_t)(prot << 5);
		st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, buf, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
		cdb_rw(cdb, 0x2f, 0, 1);
		cdb[1] = (uint8_t)(prot << 5) | 0x02;
		st_run(f->n, 0, cdb, 10, SCSI_DIR_OUT, buf, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	/* DPO, FUA, FUA_NV and GROUP NUMBER 3 */
	cdb_rw(cdb, 0x2a, 0, 1);
	cdb[1] = 0x10 | 0x08 | 0x02;
	cdb[6] = 3;
	assert_int_equal(st_run(f->n, 0, cdb, 10, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	cdb_rw(cdb, 0x28, 0, 1);
	cdb[1] = 0x18;
	cdb[6] = 3;
	assert_int_equal(st_run(f->n, 0, cdb, 10, SCSI_DIR_IN, buf, BS, &r), SCSI_GOOD);
	/* reserved bits: READ(10) byte 6 bit 6, READ(16) byte 14 bit 7 */
	cdb_rw(cdb, 0x28, 0, 1);
	cdb[6] = 0x40;
	st_run(f->n, 0, cdb, 10, SCSI_DIR_IN, buf, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	sense_field(&r, &byte, &bit);
	assert_int_equal(byte, 6);
	assert_int_equal(bit, 6);
	cdb_rw(cdb, 0x88, 0, 1);
	cdb[14] = 0x80;
	st_run(f->n, 0, cdb, 16, SCSI_DIR_IN, buf, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* LINK in the control byte */
	cdb_rw(cdb, 0x28, 0, 1);
	cdb[9] = 0x01;
	st_run(f->n, 0, cdb, 10, SCSI_DIR_IN, buf, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	sense_field(&r, &byte, &bit);
	assert_int_equal(byte, 9);
	/* over the maximum transfer length (VPD B0h) */
	cdb_rw(cdb, 0x88, 0, (32u << 20) / BS + 1);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_IN, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);  /* past the 1 MiB LU first */
}

/* The table: usage[0] is the opcode, CDB sizes follow the group code,
 * every command that changes the medium is marked, and the bits the
 * handlers look at are in the usage data. */
static void test_scsi_sbc_op_table(void **state)
{
	(void)state;
	for (const struct scsi_op *op = scsi_sbc_ops; op->run; op++) {
		static const uint8_t sizes[8] = { 6, 10, 10, 0, 16, 12, 0, 0 };
		bool writes = op->opcode == 0x0a || op->opcode == 0x2a || op->opcode == 0xaa ||
			      op->opcode == 0x8a || op->opcode == 0x2e || op->opcode == 0xae ||
			      op->opcode == 0x8e || op->opcode == 0x89 || op->opcode == 0x41 ||
			      op->opcode == 0x93 || op->opcode == 0x42 || op->opcode == 0x8b;

		assert_int_equal(op->usage[0], op->opcode);
		assert_int_equal(op->cdb_len, sizes[op->opcode >> 5]);
		assert_int_equal(!!(op->flags & SCSI_OP_WRITES), writes);
		assert_int_equal(op->usage[op->cdb_len - 1], 0);   /* control: no NACA, LINK */
		assert_non_null(op->name);
	}
}

/* REPORT SUPPORTED OPERATION CODES answers from the table: DPO and FUA
 * show in READ(10)'s usage data, as the DPOFUA bit of MODE SENSE says. */
static void test_scsi_sbc_report_usage(void **state)
{
	struct st_fix *f = *state;
	uint8_t cdb[12] = { 0xa3, 0x0c, 0x01, 0x28 }, b[64];
	struct st_result r;

	ds_put_be32(cdb + 6, sizeof(b));
	assert_int_equal(st_run(f->n, 0, cdb, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(b[1] & 0x07, 3);       /* supported as the standard says */
	assert_int_equal(ds_get_be16(b + 2), 10);
	assert_int_equal(b[4], 0x28);
	assert_int_equal(b[5] & 0x18, 0x18);
	assert_int_equal(b[5] & 0xe0, 0);       /* no RDPROTECT */
}

/* ---- FUA and WCE ---------------------------------------------------------------- */

static void test_scsi_sbc_fua_and_wce(void **state)
{
	struct mockdisk mc = { 0 }, mw = { 0 };
	struct mockdisk_opts o = { .sectors = 64, .fua = true, .caps = DISK_CAP_VOLATILE_CACHE };
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	struct disk *d;
	uint8_t buf[2 * BS], cdb[16];
	struct st_result r;

	(void)state;
	d = mockdisk_new(&mc, &o);
	st_add_disk(t, 0, d, NULL);
	disk_unref(d);
	o.caps = 0;                     /* no volatile cache: WCE starts off */
	d = mockdisk_new(&mw, &o);
	st_add_disk(t, 1, d, NULL);
	disk_unref(d);
	n = st_nexus(t, "iqn.2024-01.org.example:fua", 1);
	st_clear_ua(n, 0);
	st_clear_ua(n, 1);
	memset(buf, 1, sizeof(buf));

	/* WCE on: FUA only when the CDB asks, or for WRITE AND VERIFY */
	assert_int_equal(run_rw(n, 0, 0x2a, 0, 1, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(mc.fua_writes, 0);
	cdb_rw(cdb, 0x2a, 0, 1);
	cdb[1] = 0x08;
	assert_int_equal(st_run(n, 0, cdb, 10, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(mc.fua_writes, 1);
	cdb_rw(cdb, 0x8a, 0, 1);
	cdb[1] = 0x08;
	assert_int_equal(st_run(n, 0, cdb, 16, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(mc.fua_writes, 2);
	assert_int_equal(run_rw(n, 0, 0x2e, 0, 1, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(mc.fua_writes, 3);
	/* WRITE(6) has no FUA bit: byte 1 bit 3 is an LBA bit there */
	assert_int_equal(run_rw(n, 0, 0x0a, 8, 1, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(mc.fua_writes, 3);
	/* SYNCHRONIZE CACHE reaches the disk as a flush */
	cdb_rw(cdb, 0x35, 0, 0);
	assert_int_equal(st_run(n, 0, cdb, 10, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_true(mc.flushes >= 1);

	/* WCE off: every write is FUA */
	assert_false(scsi_lu_wce(scsi_target_lu(t, 1)));
	assert_int_equal(run_rw(n, 1, 0x2a, 0, 2, SCSI_DIR_OUT, buf, 2 * BS, &r), SCSI_GOOD);
	assert_int_equal(run_rw(n, 1, 0x0a, 4, 1, SCSI_DIR_OUT, buf, BS, &r), SCSI_GOOD);
	assert_int_equal(mw.fua_writes, 2);

	scsi_nexus_free(n);
	scsi_target_free(t);
	mockdisk_release(&mc);
	mockdisk_release(&mw);
}

/* ---- VERIFY ---------------------------------------------------------------------- */

static void test_scsi_sbc_verify(void **state)
{
	struct st_fix *f = *state;
	static const uint8_t ops[] = { 0x2f, 0xaf, 0x8f };
	uint8_t blk[3 * BS], cdb[16];
	struct st_result r;

	tu_fill(blk, sizeof(blk), 11, 0);
	write_blocks(f->n, 0, 40, 3, blk);
	for (unsigned i = 0; i < sizeof(ops); i++) {
		size_t cl = cdb_rw(cdb, ops[i], 40, 3);

		/* BYTCHK 0: range and readability only */
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
		/* BYTCHK 1: equal, then one byte off at 700 */
		cdb[1] = 0x02;
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, sizeof(blk), &r),
				 SCSI_GOOD);
		blk[700] ^= 0x58;
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, sizeof(blk), &r);
		st_assert_sense(&r, SCSI_SK_MISCOMPARE, 0x1d, 0x00);
		assert_int_equal(sense_info(&r), 700);
		blk[700] ^= 0x58;
		/* the last block, and one past */
		cl = cdb_rw(cdb, ops[i], MEM_BLOCKS - 1, 1);
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
		cl = cdb_rw(cdb, ops[i], MEM_BLOCKS - 1, 2);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	}
}

/* ---- COMPARE AND WRITE --------------------------------------------------------- */

static size_t cdb_caw(uint8_t *cdb, uint64_t lba, uint8_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = 0x89;
	ds_put_be64(cdb + 2, lba);
	cdb[13] = n;
	return 16;
}

static void test_scsi_sbc_compare_and_write(void **state)
{
	struct st_fix *f = *state;
	uint8_t io[4 * BS], got[2 * BS], cdb[16];
	struct st_result r;

	memset(io, 'A', 2 * BS);
	write_blocks(f->n, 0, 50, 2, io);
	memset(io + 2 * BS, 'B', 2 * BS);
	cdb_caw(cdb, 50, 2);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, sizeof(io), &r), SCSI_GOOD);
	assert_int_equal(r.want_len, 4 * BS);
	read_blocks(f->n, 0, 50, 2, got);
	assert_memory_equal(got, io + 2 * BS, 2 * BS);

	/* miscompare 27 bytes from the end: nothing written, offset reported */
	memset(io, 'B', 2 * BS);
	io[2 * BS - 27] = 'C';
	memset(io + 2 * BS, 'D', 2 * BS);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, sizeof(io), &r);
	st_assert_sense(&r, SCSI_SK_MISCOMPARE, 0x1d, 0x00);
	assert_int_equal(sense_info(&r), 2 * BS - 27);
	read_blocks(f->n, 0, 50, 2, got);
	assert_true(got[0] == 'B' && got[2 * BS - 1] == 'B' && got[2 * BS - 27] == 'B');

	/* data-out of the wrong size either way: refused, nothing written */
	memset(io, 'B', 2 * BS);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 3 * BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x0e, 0x03);
	cdb_caw(cdb, 50, 1);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 4 * BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x0e, 0x03);
	read_blocks(f->n, 0, 50, 2, got);
	assert_int_equal(got[0], 'B');

	/* 0 blocks: nothing to do; the last LBA and one past */
	cdb_caw(cdb, 50, 0);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	/* ... but 0 blocks with data-out (256 wrapped in the one-byte field,
	 * as libiscsi's CompareAndWrite.Simple sends past the limit) is an
	 * invalid field, and nothing is written */
	memset(io, 'C', 4 * BS);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 4 * BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	read_blocks(f->n, 0, 50, 2, got);
	assert_int_equal(got[0], 'B');
	cdb_caw(cdb, MEM_BLOCKS - 1, 1);
	memset(io, 0, BS);
	write_blocks(f->n, 0, MEM_BLOCKS - 1, 1, io);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 2 * BS, &r), SCSI_GOOD);
	cdb_caw(cdb, MEM_BLOCKS, 1);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 2 * BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	/* FUA and DPO accepted, WRPROTECT refused */
	cdb_caw(cdb, 50, 1);
	cdb[1] = 0x18;
	memset(io, 'B', BS);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 2 * BS, &r), SCSI_GOOD);
	cdb[1] = 0x20;
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, io, 2 * BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

/* ORWRITE(16): the medium's bytes OR the data-out's; 0 blocks and the
 * range end; ORPROTECT refused (no protection information). */
static void test_scsi_sbc_orwrite(void **state)
{
	struct st_fix *f = *state;
	uint8_t blk[2 * BS], got[2 * BS], cdb[16] = { 0x8b };
	struct st_result r;

	memset(blk, 0x0f, sizeof(blk));
	write_blocks(f->n, 0, 40, 2, blk);
	memset(blk, 0xa0, sizeof(blk));
	ds_put_be64(cdb + 2, 40);
	ds_put_be32(cdb + 10, 2);
	cdb[1] = 0x18;                          /* DPO, FUA */
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, blk, 2 * BS, &r), SCSI_GOOD);
	read_blocks(f->n, 0, 40, 2, got);
	for (size_t i = 0; i < sizeof(got); i++)
		assert_int_equal(got[i], 0xaf);
	cdb[1] = 0x20;                          /* ORPROTECT */
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, blk, 2 * BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	cdb[1] = 0;
	ds_put_be64(cdb + 2, MEM_BLOCKS);
	ds_put_be32(cdb + 10, 0);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	ds_put_be32(cdb + 10, 1);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, blk, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
}

/* READ DEFECT DATA(10)/(12): the lists asked for are valid and empty. */
static void test_scsi_sbc_read_defect_data(void **state)
{
	struct st_fix *f = *state;
	uint8_t c10[10] = { 0x37, 0, 0x0d }, c12[12] = { 0xb7, 0x14 }, b[32];
	struct st_result r;

	memset(b, 0xee, sizeof(b));
	ds_put_be16(c10 + 7, sizeof(b));
	assert_int_equal(st_run(f->n, 0, c10, 10, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 4);
	assert_int_equal(b[1], 0x0d);           /* GLISTV, format 5 */
	assert_int_equal(ds_get_be16(b + 2), 0);
	ds_put_be32(c12 + 6, sizeof(b));
	assert_int_equal(st_run(f->n, 0, c12, 12, SCSI_DIR_IN, b, sizeof(b), &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 8);
	assert_int_equal(b[1], 0x14);           /* PLISTV, format 4 */
	assert_int_equal(ds_get_be32(b + 4), 0);
	c10[1] = 0x01;                          /* reserved */
	st_run(f->n, 0, c10, 10, SCSI_DIR_IN, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

/* A command submitted without waiting, for the concurrency tests. */
struct acmd {
	struct scsi_cmd cmd;
	struct iovec iov;
	bool done;
	atomic_uint *seq;               /* completion order, shared */
	unsigned order;
};

static void acmd_done(struct scsi_cmd *cmd)
{
	struct acmd *a = container_of(cmd, struct acmd, cmd);

	a->order = atomic_fetch_add(a->seq, 1);
	a->done = true;
}

static void acmd_start(struct acmd *a, struct scsi_nexus *n, const uint8_t *cdb, size_t cl,
		       void *buf, size_t len, atomic_uint *seq)
{
	memset(a, 0, sizeof(*a));
	a->seq = seq;
	a->cmd.nexus = n;
	a->cmd.lun = scsi_lun_encode(0);
	memcpy(a->cmd.cdb, cdb, cl);
	a->cmd.cdb_len = (uint8_t)cl;
	a->cmd.dir = SCSI_DIR_OUT;
	a->iov.iov_base = buf;
	a->iov.iov_len = len;
	a->cmd.iov = &a->iov;
	a->cmd.iovcnt = 1;
	a->cmd.xfer_len = (uint32_t)len;
	a->cmd.done = acmd_done;
	scsi_cmd_submit(&a->cmd);
}

struct writer {
	struct scsi_nexus *n;
	atomic_bool go;
	atomic_uint *seq;
	unsigned order;
	uint8_t status;
	unsigned loops;                 /* stress: writes of LBA 1 while CAWs run */
	unsigned incs;                  /* stress: CAW increments of LBA 0 */
};

/* One CAW increment of the counter in block 0: read, compare, write +1;
 * retried on a miscompare. Runs on the calling thread's reactor. */
static void caw_increment(struct scsi_nexus *n, atomic_uint *seq)
{
	for (;;) {
		uint8_t io[2 * BS], cdb[16];
		struct acmd a;

		read_blocks(n, 0, 0, 1, io);
		memcpy(io + BS, io, BS);
		ds_put_be64(io + BS, ds_get_be64(io) + 1);
		cdb_caw(cdb, 0, 1);
		acmd_start(&a, n, cdb, 16, io, sizeof(io), seq);
		assert_int_equal(reactor_run_until(tu_reactor(), &a.done), 0);
		if (a.cmd.status == SCSI_GOOD)
			return;
		assert_int_equal(a.cmd.status, SCSI_CHECK_CONDITION);
		assert_int_equal(a.cmd.sense[2] & 0x0f, SCSI_SK_MISCOMPARE);
	}
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[BS], cdb[16];
	struct acmd a;

	tu_reactor();
	while (!atomic_load(&w->go))
		;
	if (w->loops == 0 && w->incs == 0) {
		memset(buf, 'W', sizeof(buf));
		cdb_rw(cdb, 0x2a, 0, 1);
		acmd_start(&a, w->n, cdb, 10, buf, BS, w->seq);
		assert_int_equal(reactor_run_until(tu_reactor(), &a.done), 0);
		w->order = a.order;
		w->status = a.cmd.status;
	}
	for (unsigned i = 0; i < w->loops; i++) {
		memset(buf, (int)i, sizeof(buf));
		cdb_rw(cdb, 0x2a, 1, 1);
		acmd_start(&a, w->n, cdb, 10, buf, BS, w->seq);
		assert_int_equal(reactor_run_until(tu_reactor(), &a.done), 0);
		assert_int_equal(a.cmd.status, SCSI_GOOD);
		if (i < w->incs)
			caw_increment(w->n, w->seq);
	}
	tu_reactor_done();
	return NULL;
}

/*
 * COMPARE AND WRITE is atomic against a plain WRITE of the same LBA from
 * another nexus on another reactor thread. The disk delays every read
 * and write, so the WRITE (sent while the COMPARE AND WRITE's read is
 * under way) would land between the compare and the write were it not
 * held back: the COMPARE AND WRITE would then succeed against data the
 * WRITE had already replaced. With the range lock the WRITE waits, ends
 * after the COMPARE AND WRITE, and its data is what stays.
 */
static void test_scsi_sbc_caw_atomic_two_reactors(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n1, *n2;
	struct disk *mem = NULL, *d = NULL;
	char err[256];
	uint8_t io[2 * BS], cdb[16], got[BS];
	atomic_uint seq = 0;
	struct writer w = { .seq = &seq };
	struct acmd a;
	pthread_t th;

	(void)state;
	assert_int_equal(spec_open_str("mem:1M", false, NULL, &mem, err, sizeof(err)), 0);
	assert_int_equal(delay_new(20000, 20000, mem, &d, err, sizeof(err)), 0);
	st_add_disk(t, 0, d, NULL);
	disk_unref(d);
	n1 = st_nexus(t, "iqn.2024-01.org.example:a", 1);
	n2 = st_nexus(t, "iqn.2024-01.org.example:b", 2);
	st_clear_ua(n1, 0);
	st_clear_ua(n2, 0);
	w.n = n2;
	memset(io, 'A', BS);
	write_blocks(n1, 0, 0, 1, io);

	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	memset(io + BS, 'C', BS);
	cdb_caw(cdb, 0, 1);
	acmd_start(&a, n1, cdb, 16, io, sizeof(io), &seq);
	atomic_store(&w.go, true);
	assert_int_equal(reactor_run_until(tu_reactor(), &a.done), 0);
	pthread_join(th, NULL);

	assert_int_equal(a.cmd.status, SCSI_GOOD);
	assert_int_equal(w.status, SCSI_GOOD);
	assert_true(w.order > a.order);
	read_blocks(n1, 0, 0, 1, got);
	assert_int_equal(got[0], 'W');
	assert_int_equal(got[BS - 1], 'W');

	/* Stress: both reactors increment a counter in block 0 by COMPARE
	 * AND WRITE while one also writes block 1; no increment is lost. */
	assert_int_equal(delay_set(d, 0, 200), 0);
	memset(io, 0, BS);
	write_blocks(n1, 0, 0, 1, io);
	memset(&w, 0, sizeof(w));
	w.n = n2;
	w.seq = &seq;
	w.loops = 60;
	w.incs = 60;
	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	atomic_store(&w.go, true);
	for (unsigned i = 0; i < 60; i++)
		caw_increment(n1, &seq);
	pthread_join(th, NULL);
	read_blocks(n1, 0, 0, 1, got);
	assert_int_equal(ds_get_be64(got), 120);

	scsi_nexus_free(n1);
	scsi_nexus_free(n2);
	scsi_target_free(t);
}

/* ---- WRITE SAME ---------------------------------------------------------------- */

static size_t cdb_ws(uint8_t *cdb, bool sixteen, uint64_t lba, uint32_t n, uint8_t flags)
{
	size_t cl = cdb_rw(cdb, sixteen ? 0x93 : 0x41, lba, n);

	cdb[1] = flags;
	return cl;
}

static void test_scsi_sbc_write_same(void **state)
{
	struct st_fix *f = *state;
	uint8_t blk[BS], got[8 * BS], cdb[16];
	struct st_result r;

	for (int sixteen = 0; sixteen < 2; sixteen++) {
		size_t cl;

		memset(blk, 0x5a + sixteen, BS);
		cl = cdb_ws(cdb, sixteen, 60, 5, 0);
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
		assert_int_equal(r.want_len, BS);
		read_blocks(f->n, 0, 59, 7, got);
		for (unsigned i = 0; i < 7 * BS; i++)
			assert_int_equal(got[i], (i >= BS && i < 6 * BS) ? 0x5a + sixteen : 0);
		/* a data-out that is not exactly one block */
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, got, 2 * BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS / 2, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x0e, 0x03);
		/* ANCHOR is refused, with or without UNMAP */
		cl = cdb_ws(cdb, sixteen, 60, 1, 0x10);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
		cl = cdb_ws(cdb, sixteen, 60, 1, 0x18);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
		/* beyond the end */
		cl = cdb_ws(cdb, sixteen, MEM_BLOCKS - 1, 2, 0);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
		cl = cdb_ws(cdb, sixteen, MEM_BLOCKS + 1, 0, 0);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	}
	/* NDOB: zeroes without data-out (WRITE SAME(16) only) */
	cdb_ws(cdb, true, 61, 3, 0x01);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	assert_int_equal(r.want_len, 0);
	read_blocks(f->n, 0, 60, 5, got);
	assert_int_equal(got[0], 0x5b);
	assert_true(tu_is_zero(got + BS, 3 * BS));
	assert_int_equal(got[4 * BS], 0x5b);
	cdb_ws(cdb, false, 61, 3, 0x01);         /* no NDOB in WRITE SAME(10) */
	st_run(f->n, 0, cdb, 10, SCSI_DIR_NONE, NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

/* 0 blocks: up to the last LBA, when that stays within the MAXIMUM
 * WRITE SAME LENGTH (32 MiB here); refused on a larger LU. */
static void test_scsi_sbc_write_same_zero_blocks_to_end(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t blk[BS], got[128 * BS], cdb[16];
	struct st_result r;

	(void)state;
	st_add_lu(t, 0, "mem:64K", NULL);       /* 128 blocks */
	st_add_lu(t, 1, "mem:64M", NULL);       /* 131072 blocks > 65536 */
	n = st_nexus(t, "iqn.2024-01.org.example:ws", 1);
	st_clear_ua(n, 0);
	st_clear_ua(n, 1);
	memset(blk, 0x77, BS);
	for (int sixteen = 0; sixteen < 2; sixteen++) {
		size_t cl = cdb_ws(cdb, sixteen, 100, 0, 0);

		blk[0] = (uint8_t)sixteen;
		assert_int_equal(st_run(n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
		read_blocks(n, 0, 0, 128, got);
		assert_true(tu_is_zero(got, 100 * BS) || sixteen);
		for (unsigned b = 100; b < 128; b++)
			assert_int_equal(got[b * BS], sixteen);
		/* at the capacity: nothing to write, fine */
		cl = cdb_ws(cdb, sixteen, 128, 0, 0);
		assert_int_equal(st_run(n, 0, cdb, cl, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
		/* the 64 MiB LU is larger than the limit */
		cl = cdb_ws(cdb, sixteen, 0, 0, 0);
		st_run(n, 1, cdb, cl, SCSI_DIR_OUT, blk, BS, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
		cl = cdb_ws(cdb, sixteen, 131072 - 65536, 0, 0);
		assert_int_equal(st_run(n, 1, cdb, cl, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
	}
	scsi_nexus_free(n);
	scsi_target_free(t);
}

/* ---- UNMAP and GET LBA STATUS ---------------------------------------------------- */

static uint8_t run_unmap(struct scsi_nexus *n, unsigned lun, const uint64_t *lba,
			 const uint32_t *nb, unsigned nd, struct st_result *r)
{
	static uint8_t pl[8 + 300 * 16];
	uint8_t cdb[10] = { 0x42 };
	size_t len = 8 + nd * 16;

	memset(pl, 0, len);
	ds_put_be16(pl, (uint16_t)(len - 2));
	ds_put_be16(pl + 2, (uint16_t)(nd * 16));
	for (unsigned i = 0; i < nd; i++) {
		ds_put_be64(pl + 8 + i * 16, lba[i]);
		ds_put_be32(pl + 16 + i * 16, nb[i]);
	}
	ds_put_be16(cdb + 7, (uint16_t)len);
	return st_run(n, lun, cdb, 10, SCSI_DIR_OUT, pl, len, r);
}

/* GET LBA STATUS at @lba: the first descriptor's LBA, count and state. */
static void lba_status(struct scsi_nexus *n, unsigned lun, uint64_t lba, uint64_t *d_lba,
		       uint32_t *d_n, uint8_t *d_state, uint32_t *ndesc)
{
	uint8_t cdb[16] = { 0x9e, 0x12 }, buf[8 + 4 * 16];
	struct st_result r;

	ds_put_be64(cdb + 2, lba);
	ds_put_be32(cdb + 10, sizeof(buf));
	assert_int_equal(st_run(n, lun, cdb, 16, SCSI_DIR_IN, buf, sizeof(buf), &r), SCSI_GOOD);
	assert_true(r.data_len >= 24);
	*ndesc = (ds_get_be32(buf) - 4) / 16;
	assert_int_equal(r.data_len, 8 + *ndesc * 16);
	*d_lba = ds_get_be64(buf + 8);
	*d_n = ds_get_be32(buf + 16);
	*d_state = buf[20] & 0x0f;
}

static void test_scsi_sbc_unmap_then_get_lba_status(void **state)
{
	struct st_fix *f = *state;
	uint8_t blk[16 * BS], cdb[16];
	uint64_t lba, l2[2];
	uint32_t nb, n2[2], nd;
	uint8_t st;
	struct st_result r;

	memset(blk, 0xab, sizeof(blk));
	write_blocks(f->n, 0, 200, 16, blk);
	l2[0] = 204;
	n2[0] = 2;
	assert_int_equal(run_unmap(f->n, 0, l2, n2, 1, &r), SCSI_GOOD);
	/* the first descriptor starts at the requested LBA */
	lba_status(f->n, 0, 204, &lba, &nb, &st, &nd);
	assert_int_equal(lba, 204);
	assert_int_equal(nb, 2);
	assert_int_equal(st, 1);                /* deallocated */
	lba_status(f->n, 0, 205, &lba, &nb, &st, &nd);
	assert_int_equal(lba, 205);
	assert_int_equal(st, 1);
	lba_status(f->n, 0, 206, &lba, &nb, &st, &nd);
	assert_int_equal(lba, 206);
	assert_int_equal(st, 0);                /* mapped */
	lba_status(f->n, 0, 203, &lba, &nb, &st, &nd);
	assert_int_equal(lba, 203);
	assert_int_equal(st, 0);
	assert_int_equal(nb, 1);
	assert_true(nd >= 2);
	/* LBPRZ: deallocated blocks read as zeroes */
	read_blocks(f->n, 0, 204, 2, blk);
	assert_true(tu_is_zero(blk, 2 * BS));

	/* descriptors of 0 blocks, also at the capacity; no descriptors */
	l2[0] = MEM_BLOCKS;
	n2[0] = 0;
	l2[1] = 3;
	n2[1] = 0;
	assert_int_equal(run_unmap(f->n, 0, l2, n2, 2, &r), SCSI_GOOD);
	assert_int_equal(run_unmap(f->n, 0, l2, n2, 0, &r), SCSI_GOOD);
	/* a bad second descriptor: LBA OUT OF RANGE, the first not unmapped */
	l2[0] = 210;
	n2[0] = 1;
	l2[1] = MEM_BLOCKS - 1;
	n2[1] = 2;
	run_unmap(f->n, 0, l2, n2, 2, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	lba_status(f->n, 0, 210, &lba, &nb, &st, &nd);
	assert_int_equal(st, 0);
	/* too many descriptors (VPD B0h says 256) */
	{
		static uint64_t ls[257];
		static uint32_t ns[257];

		run_unmap(f->n, 0, ls, ns, 257, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
	}
	/* parameter list lengths: shorter than the header; header lengths
	 * beyond what was sent */
	{
		uint8_t ucdb[10] = { 0x42 }, pl[24];

		memset(pl, 0, sizeof(pl));
		ds_put_be16(ucdb + 7, 4);
		st_run(f->n, 0, ucdb, 10, SCSI_DIR_OUT, pl, 4, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x1a, 0x00);
		ds_put_be16(ucdb + 7, 24);
		ds_put_be16(pl, 22);
		ds_put_be16(pl + 2, 32);
		st_run(f->n, 0, ucdb, 10, SCSI_DIR_OUT, pl, 24, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x26, 0x00);
		ds_put_be16(ucdb + 7, 0);
		assert_int_equal(st_run(f->n, 0, ucdb, 10, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
		ucdb[1] = 0x01;                 /* ANCHOR */
		st_run(f->n, 0, ucdb, 10, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	}
	/* GET LBA STATUS: the last LBA; at and past the capacity */
	lba_status(f->n, 0, MEM_BLOCKS - 1, &lba, &nb, &st, &nd);
	assert_int_equal(lba, MEM_BLOCKS - 1);
	assert_int_equal(nb, 1);
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x12;
	ds_put_be32(cdb + 10, 24);
	ds_put_be64(cdb + 2, MEM_BLOCKS);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_IN, blk, 24, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	ds_put_be64(cdb + 2, UINT64_MAX);
	st_run(f->n, 0, cdb, 16, SCSI_DIR_IN, blk, 24, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
}

/* WRITE SAME with UNMAP and a block of zeroes deallocates on mem: (its
 * unmapped blocks read as zeroes); without UNMAP the blocks stay mapped. */
static void test_scsi_sbc_write_same_unmap(void **state)
{
	struct st_fix *f = *state;
	uint8_t blk[4 * BS], cdb[16];
	uint64_t lba;
	uint32_t nb, nd;
	uint8_t st;
	struct st_result r;

	memset(blk, 0xff, sizeof(blk));
	write_blocks(f->n, 0, 300, 4, blk);
	memset(blk, 0, BS);
	cdb_ws(cdb, true, 300, 2, 0x08);
	assert_int_equal(st_run(f->n, 0, cdb, 16, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
	lba_status(f->n, 0, 300, &lba, &nb, &st, &nd);
	assert_int_equal(st, 1);
	assert_int_equal(nb, 2);
	cdb_ws(cdb, false, 302, 2, 0);
	assert_int_equal(st_run(f->n, 0, cdb, 10, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
	lba_status(f->n, 0, 302, &lba, &nb, &st, &nd);
	assert_int_equal(st, 0);
	read_blocks(f->n, 0, 300, 4, blk);
	assert_true(tu_is_zero(blk, 4 * BS));

	/* The UNMAP bit unmaps whatever the block holds (libiscsi's
	 * WriteSame10.UnmapUntilEnd sends FFh and reads zeroes back). */
	memset(blk, 0xff, sizeof(blk));
	write_blocks(f->n, 0, 310, 4, blk);
	cdb_ws(cdb, false, 310, 4, 0x08);
	assert_int_equal(st_run(f->n, 0, cdb, 10, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
	lba_status(f->n, 0, 310, &lba, &nb, &st, &nd);
	assert_int_equal(st, 1);
	read_blocks(f->n, 0, 310, 4, blk);
	assert_true(tu_is_zero(blk, 4 * BS));
}

/* A disk whose unmap does nothing: UNMAP is not supported, WRITE SAME
 * with UNMAP is an invalid field, READ CAPACITY(16) says LBPME 0. */
static void test_scsi_sbc_no_unmap_disk(void **state)
{
	struct mockdisk m = { 0 };
	struct mockdisk_opts o = { .sectors = 64, .unmap = DISK_UNMAP_IGNORED };
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	struct disk *d = mockdisk_new(&m, &o);
	uint8_t blk[BS] = { 0 }, cdb[16], rc[32];
	uint64_t l = 0;
	uint32_t nb = 1;
	struct st_result r;

	(void)state;
	st_add_disk(t, 0, d, NULL);
	disk_unref(d);
	n = st_nexus(t, "iqn.2024-01.org.example:nounmap", 1);
	st_clear_ua(n, 0);
	run_unmap(n, 0, &l, &nb, 1, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x20, 0x00);
	cdb_ws(cdb, true, 0, 1, 0x08);
	st_run(n, 0, cdb, 16, SCSI_DIR_OUT, blk, BS, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	cdb_ws(cdb, true, 0, 1, 0);
	assert_int_equal(st_run(n, 0, cdb, 16, SCSI_DIR_OUT, blk, BS, &r), SCSI_GOOD);
	memset(cdb, 0, 16);
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	ds_put_be32(cdb + 10, 32);
	assert_int_equal(st_run(n, 0, cdb, 16, SCSI_DIR_IN, rc, 32, &r), SCSI_GOOD);
	assert_int_equal(rc[14] & 0xc0, 0);
	assert_int_equal(m.unmaps, 0);
	scsi_nexus_free(n);
	scsi_target_free(t);
	mockdisk_release(&m);
}

/* ---- READ CAPACITY, SYNCHRONIZE CACHE, PRE-FETCH --------------------------------- */

static void test_scsi_sbc_read_capacity(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t cdb[16], b[32];
	struct st_result r;

	(void)state;
	st_add_lu(t, 0, "mem:1M", NULL);
	st_add_lu(t, 1, "mem:4T", NULL);        /* 2^33 blocks: more than READ CAPACITY(10) holds */
	n = st_nexus(t, "iqn.2024-01.org.example:rc", 1);
	st_clear_ua(n, 0);
	st_clear_ua(n, 1);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x25;
	assert_int_equal(st_run(n, 0, cdb, 10, SCSI_DIR_IN, b, 8, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 8);
	assert_int_equal(ds_get_be32(b), MEM_BLOCKS - 1);
	assert_int_equal(ds_get_be32(b + 4), BS);
	assert_int_equal(st_run(n, 1, cdb, 10, SCSI_DIR_IN, b, 8, &r), SCSI_GOOD);
	assert_int_equal(ds_get_be32(b), 0xffffffffu);
	cdb[5] = 1;                             /* an LBA without PMI */
	st_run(n, 0, cdb, 10, SCSI_DIR_IN, b, 8, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);

	memset(cdb, 0, sizeof(cdb));
	cdb[0] = 0x9e;
	cdb[1] = 0x10;
	ds_put_be32(cdb + 10, 32);
	memset(b, 0xee, sizeof(b));
	assert_int_equal(st_run(n, 1, cdb, 16, SCSI_DIR_IN, b, 32, &r), SCSI_GOOD);
	assert_int_equal(r.data_len, 32);
	assert_int_equal(ds_get_be64(b), (1ull << 33) - 1);
	assert_int_equal(ds_get_be32(b + 8), BS);
	assert_int_equal(b[12], 0);             /* no protection */
	assert_int_equal(b[13], 0);             /* 512-byte physical blocks */
	assert_int_equal(b[14] & 0xc0, 0xc0);   /* LBPME, LBPRZ: mem: unmaps to zeroes */
	/* the allocation length cuts the data; 0 is no error */
	for (uint32_t alloc = 0; alloc < 16; alloc++) {
		ds_put_be32(cdb + 10, alloc);
		assert_int_equal(st_run(n, 0, cdb, 16, SCSI_DIR_IN, b, 32, &r), SCSI_GOOD);
		assert_int_equal(r.data_len, alloc);
		assert_int_equal(r.want_len, alloc);
	}
	scsi_nexus_free(n);
	scsi_target_free(t);
}

static void test_scsi_sbc_sync_cache_and_prefetch(void **state)
{
	struct st_fix *f = *state;
	static const uint8_t sync_ops[] = { 0x35, 0x91 }, pf_ops[] = { 0x34, 0x90 };
	uint8_t cdb[16];
	struct st_result r;

	for (unsigned i = 0; i < 2; i++) {
		size_t cl = cdb_rw(cdb, sync_ops[i], 0, 0);

		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
		cdb[1] = 0x02;                  /* IMMED */
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
		cl = cdb_rw(cdb, sync_ops[i], MEM_BLOCKS - 1, 2);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);

		/* PRE-FETCH: CONDITION MET once the blocks are in the cache */
		cl = cdb_rw(cdb, pf_ops[i], 0, 8);
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r),
				 SCSI_CONDITION_MET);
		cdb[1] = 0x02;
		cdb[cl == 10 ? 6 : 14] = 3;     /* IMMED, GROUP NUMBER 3 */
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r),
				 SCSI_CONDITION_MET);
		cl = cdb_rw(cdb, pf_ops[i], 0, 0);      /* to the end: 1 MiB fits */
		assert_int_equal(st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r),
				 SCSI_CONDITION_MET);
		cl = cdb_rw(cdb, pf_ops[i], MEM_BLOCKS + 1, 0);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
		cl = cdb_rw(cdb, pf_ops[i], MEM_BLOCKS - 1, 2);
		st_run(f->n, 0, cdb, cl, SCSI_DIR_NONE, NULL, 0, &r);
		st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	}
}

/* The same data path over a file: disk. */
static void test_scsi_sbc_file_disk(void **state)
{
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	char spec[512];
	uint8_t blk[4 * BS], cdb[16], io[2 * BS];
	struct st_result r;

	(void)state;
	snprintf(spec, sizeof(spec), "file:%s;create=256K", tu_path("sbc-file.img"));
	st_add_lu(t, 0, spec, NULL);
	n = st_nexus(t, "iqn.2024-01.org.example:file", 1);
	st_clear_ua(n, 0);
	tu_fill(blk, sizeof(blk), 21, 0);
	write_blocks(n, 0, 508, 4, blk);
	memset(blk, 0, sizeof(blk));
	read_blocks(n, 0, 508, 4, blk);
	assert_int_equal(tu_check(blk, sizeof(blk), 21, 0), -1);
	run_rw(n, 0, 0x88, 509, 4, SCSI_DIR_IN, blk, sizeof(blk), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	/* COMPARE AND WRITE and WRITE SAME */
	memcpy(io, blk + 3 * BS, BS);
	memset(io + BS, 0x33, BS);
	cdb_caw(cdb, 511, 1);
	assert_int_equal(st_run(n, 0, cdb, 16, SCSI_DIR_OUT, io, 2 * BS, &r), SCSI_GOOD);
	memset(io, 0x44, BS);
	cdb_ws(cdb, false, 500, 0, 0);
	assert_int_equal(st_run(n, 0, cdb, 10, SCSI_DIR_OUT, io, BS, &r), SCSI_GOOD);
	read_blocks(n, 0, 508, 4, blk);
	assert_int_equal(blk[0], 0x44);
	assert_int_equal(blk[4 * BS - 1], 0x44);
	/* VERIFY against it, and SYNCHRONIZE CACHE */
	cdb_rw(cdb, 0x2f, 508, 4);
	cdb[1] = 0x02;
	assert_int_equal(st_run(n, 0, cdb, 10, SCSI_DIR_OUT, blk, sizeof(blk), &r), SCSI_GOOD);
	cdb_rw(cdb, 0x35, 0, 0);
	assert_int_equal(st_run(n, 0, cdb, 10, SCSI_DIR_NONE, NULL, 0, &r), SCSI_GOOD);
	scsi_nexus_free(n);
	scsi_target_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_scsi_sbc_read_write_every_size, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_last_lba_and_one_past, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_transfer_length_zero, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_six_byte_zero_means_256, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_read_residuals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_write_residuals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_cdb_fields, setup, teardown),
		cmocka_unit_test(test_scsi_sbc_op_table),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_report_usage, setup, teardown),
		cmocka_unit_test(test_scsi_sbc_fua_and_wce),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_compare_and_write, setup, teardown),
		cmocka_unit_test(test_scsi_sbc_caw_atomic_two_reactors),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_orwrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_read_defect_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_write_same, setup, teardown),
		cmocka_unit_test(test_scsi_sbc_write_same_zero_blocks_to_end),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_unmap_then_get_lba_status, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_write_same_unmap, setup, teardown),
		cmocka_unit_test(test_scsi_sbc_no_unmap_disk),
		cmocka_unit_test(test_scsi_sbc_read_capacity),
		cmocka_unit_test_setup_teardown(test_scsi_sbc_sync_cache_and_prefetch, setup,
						teardown),
		cmocka_unit_test(test_scsi_sbc_file_disk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
