/* SPDX-License-Identifier: MIT */
/*
 * test-scsi-dvd.c: the DVD logical unit (scsi/dvd.c) through the whole
 * core (scsitest.h): every MMC opcode over small "ISO" files of N x 2048
 * bytes, the empty drive, host media changes with and without PREVENT,
 * guest eject and reload, the GET EVENT STATUS NOTIFICATION sequence,
 * byte-exact reads, and media changes from another thread while reads
 * run.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "scsi/internal.h"
#include "storage/backends/filedisk.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/scsitest.h"
#include "tests/unit/testutil.h"

#define IQN1 "iqn.2024-01.org.example:host1"
#define IQN2 "iqn.2024-01.org.example:host2"
#define BLK 2048u
#define NBLK 40u                        /* medium A: 40 blocks (80 KiB) */
#define TAG_A 0xA1
#define TAG_B 0xB2

#define CDB(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })

/* ---- fixtures ------------------------------------------------------------------ */

/* A read-only file disk of @blocks DVD blocks filled with tu_fill(@tag). */
static struct disk *make_iso(const char *name, uint64_t blocks, uint64_t tag)
{
	const char *path = tu_path(name);
	size_t len = (size_t)blocks * BLK;
	struct filedisk_opts o = { .read_only = true };
	char err[256];
	struct disk *d = NULL;
	uint8_t *buf = malloc(len);
	int fd;

	assert_non_null(buf);
	tu_fill(buf, len, tag, 0);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
	if (filedisk_open(path, &o, &d, err, sizeof(err)) < 0)
		print_error("filedisk_open: %s\n", err);
	assert_non_null(d);
	return d;
}

struct fix {
	struct scsi_target *t;
	struct scsi_lu *lu;
	struct scsi_nexus *n, *n2;
	struct disk *a, *b;             /* our references */
};

static const struct scsi_lu_opts dvd_opts = { .type = SCSI_LU_DVD };

static void fix_start(struct fix *f, bool loaded)
{
	f->a = make_iso("a.iso", NBLK, TAG_A);
	f->b = make_iso("b.iso", NBLK / 2, TAG_B);
	f->t = st_target(NULL);
	f->lu = st_add_disk(f->t, 0, loaded ? f->a : NULL, &dvd_opts);
	f->n = st_nexus(f->t, IQN1, 1);
	f->n2 = st_nexus(f->t, IQN2, 2);
	st_clear_ua(f->n, 0);
	st_clear_ua(f->n2, 0);
}

static int setup_loaded(void **state)
{
	static struct fix f;

	memset(&f, 0, sizeof(f));
	fix_start(&f, true);
	*state = &f;
	return 0;
}

static int setup_empty(void **state)
{
	static struct fix f;

	memset(&f, 0, sizeof(f));
	fix_start(&f, false);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	scsi_nexus_free(f->n);
	scsi_nexus_free(f->n2);
	scsi_target_free(f->t);
	disk_unref(f->a);
	disk_unref(f->b);
	return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

static uint8_t run_in(struct scsi_nexus *n, const uint8_t *cdb, size_t cdb_len, void *buf,
		      size_t len, struct st_result *r)
{
	return st_run(n, 0, cdb, cdb_len, buf ? SCSI_DIR_IN : SCSI_DIR_NONE, buf, len, r);
}

static void assert_good(const struct st_result *r)
{
	if (r->status != SCSI_GOOD)
		print_error("expected GOOD, got %02xh %x/%02x/%02x\n", r->status, r->key, r->asc,
			    r->ascq);
	assert_int_equal(r->status, SCSI_GOOD);
}

/* READ(10) of @n blocks at @lba into @buf (room @len). */
static uint8_t read10(struct scsi_nexus *n, uint32_t lba, uint16_t nblocks, void *buf,
		      size_t len, struct st_result *r)
{
	uint8_t cdb[10] = { 0x28 };

	ds_put_be32(cdb + 2, lba);
	ds_put_be16(cdb + 7, nblocks);
	return st_run(n, 0, cdb, sizeof(cdb), SCSI_DIR_IN, buf, len, r);
}

/* GET EVENT STATUS NOTIFICATION, polled, for @classes; returns the
 * 8-byte answer in @b. */
static void gesn(struct scsi_nexus *n, uint8_t classes, uint8_t b[8])
{
	struct st_result r;

	memset(b, 0xEE, 8);
	run_in(n, CDB(0x4A, 0x01, 0, 0, classes, 0, 0, 0, 8, 0), b, 8, &r);
	assert_good(&r);
}

/* Asserts the next media-class event is @ev with media status @status. */
static void assert_media_event(struct scsi_nexus *n, uint8_t ev, uint8_t status)
{
	uint8_t b[8];

	gesn(n, 0x10, b);
	assert_int_equal(ds_get_be16(b), 6);
	assert_int_equal(b[2], 0x04);           /* media class, NEA 0 */
	assert_int_equal(b[3], 0x16);           /* operational, power, media */
	if (b[4] != ev || b[5] != status)
		print_error("media event %u status %02x, want %u %02x\n", b[4], b[5], ev, status);
	assert_int_equal(b[4], ev);
	assert_int_equal(b[5], status);
}

static void assert_ready(struct scsi_nexus *n)
{
	struct st_result r;

	run_in(n, CDB(0x00, 0, 0, 0, 0, 0), NULL, 0, &r);
	assert_good(&r);
}

static void assert_not_ready(struct scsi_nexus *n, uint8_t ascq)
{
	struct st_result r;

	run_in(n, CDB(0x00, 0, 0, 0, 0, 0), NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, ascq);
}

/* PREVENT ALLOW MEDIUM REMOVAL from @n. */
static void prevent(struct scsi_nexus *n, bool on)
{
	struct st_result r;

	run_in(n, CDB(0x1E, 0, 0, 0, on ? 1 : 0, 0), NULL, 0, &r);
	assert_good(&r);
}

/* Reads all of the medium in one READ(12) and checks its pattern. */
static void assert_medium(struct scsi_nexus *n, uint32_t blocks, uint64_t tag)
{
	uint8_t cdb[12] = { 0xA8 };
	size_t len = (size_t)blocks * BLK;
	uint8_t *buf = malloc(len);
	struct st_result r;

	assert_non_null(buf);
	ds_put_be32(cdb + 6, blocks);
	st_run(n, 0, cdb, sizeof(cdb), SCSI_DIR_IN, buf, len, &r);
	assert_good(&r);
	assert_int_equal(r.data_len, len);
	assert_int_equal(tu_check(buf, len, tag, 0), -1);
	free(buf);
}

/* ---- the medium ------------------------------------------------------------------- */

static void test_scsi_dvd_medium_refused(void **state)
{
	struct mockdisk m4k = { 0 }, modd = { 0 }, m1k = { 0 };
	struct disk *d4k = mockdisk_new(&m4k, &(struct mockdisk_opts){ .sectors = 8,
								     .sector_size = 4096 });
	struct disk *dodd = mockdisk_new(&modd, &(struct mockdisk_opts){ .sectors = 4 * 8 + 1 });
	struct disk *d1k = mockdisk_new(&m1k, &(struct mockdisk_opts){ .sectors = 6,
								     .sector_size = 1024 });
	struct scsi_lu *lu = NULL;
	char err[256] = "";

	(void)state;
	assert_int_equal(scsi_lu_new(d4k, &dvd_opts, &lu, err, sizeof(err)), -EINVAL);
	assert_null(lu);
	assert_non_null(strstr(err, "at most 2048"));
	assert_int_equal(scsi_lu_new(dodd, &dvd_opts, &lu, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "multiple of 2048"));

	/* 1 KiB sectors are fine; a bad disk is refused by a host change too,
	 * and the medium stays. */
	assert_int_equal(scsi_lu_new(d1k, &dvd_opts, &lu, err, sizeof(err)), 0);
	assert_int_equal(scsi_lu_change_media(lu, dodd, true), -EINVAL);
	assert_true(scsi_dvd_has_medium(scsi_lu_dvd(lu)));
	assert_int_equal(scsi_lu_change_media(lu, d4k, false), -EINVAL);
	scsi_lu_free(lu);

	/* A disk LU refuses media changes. */
	assert_int_equal(scsi_lu_new(dodd, &(struct scsi_lu_opts){ .type = SCSI_LU_DISK }, &lu,
				     err, sizeof(err)), 0);
	assert_int_equal(scsi_lu_change_media(lu, NULL, true), -EINVAL);
	scsi_lu_free(lu);

	disk_unref(d4k);
	disk_unref(dodd);
	disk_unref(d1k);
	mockdisk_release(&m4k);
	mockdisk_release(&modd);
	mockdisk_release(&m1k);
}

/* A 512-byte-sector medium: DVD block n is sectors 4n..4n+3. */
static void test_scsi_dvd_sector_mapping(void **state)
{
	struct mockdisk m = { 0 };
	struct disk *d = mockdisk_new(&m, &(struct mockdisk_opts){ .sectors = 4 * 16 });
	struct scsi_target *t = st_target(NULL);
	struct scsi_nexus *n;
	uint8_t buf[2 * BLK];
	struct st_result r;

	(void)state;
	tu_fill(m.data, 16 * BLK, 0x55, 0);
	st_add_disk(t, 0, d, &dvd_opts);
	n = st_nexus(t, IQN1, 1);
	st_clear_ua(n, 0);
	read10(n, 3, 2, buf, sizeof(buf), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, sizeof(buf));
	assert_int_equal(tu_check(buf, sizeof(buf), 0x55, 3 * BLK), -1);
	scsi_nexus_free(n);
	scsi_target_free(t);
	disk_unref(d);
	mockdisk_release(&m);
}

/* ---- identification, capacity, reads ----------------------------------------------- */

static void test_scsi_dvd_inquiry_capacity(void **state)
{
	struct fix *f = *state;
	uint8_t b[96];
	struct st_result r;

	run_in(f->n, CDB(0x12, 0, 0, 0, 96, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(b[0], 0x05);           /* CD/DVD device */
	assert_int_equal(b[1] & 0x80, 0x80);    /* removable */

	memset(b, 0xEE, 8);
	run_in(f->n, CDB(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), b, 8, &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	assert_int_equal(ds_get_be32(b), NBLK - 1);
	assert_int_equal(ds_get_be32(b + 4), BLK);
}

static void test_scsi_dvd_read_exact(void **state)
{
	struct fix *f = *state;
	uint8_t *buf = malloc(NBLK * BLK);
	struct st_result r;

	assert_non_null(buf);
	assert_medium(f->n, NBLK, TAG_A);
	/* READ(10) at a few places, both ends included. */
	for (uint32_t lba = 0; lba < NBLK; lba += 13) {
		uint16_t cnt = (uint16_t)MIN(5u, NBLK - lba);

		memset(buf, 0, NBLK * BLK);
		read10(f->n, lba, cnt, buf, (size_t)cnt * BLK, &r);
		assert_good(&r);
		assert_int_equal(r.data_len, cnt * BLK);
		assert_int_equal(r.want_len, cnt * BLK);
		assert_int_equal(tu_check(buf, (size_t)cnt * BLK, TAG_A, (uint64_t)lba * BLK), -1);
	}
	read10(f->n, NBLK - 1, 1, buf, BLK, &r);
	assert_good(&r);
	assert_int_equal(tu_check(buf, BLK, TAG_A, (uint64_t)(NBLK - 1) * BLK), -1);

	/* Transfer length 0: nothing moves, even at the end. */
	read10(f->n, NBLK, 0, buf, 0, &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 0);

	/* Less room than asked: what fits moves, byte exact to the last
	 * byte inside a block; want_len says what the CDB asked. */
	memset(buf, 0, NBLK * BLK);
	read10(f->n, 2, 3, buf, 5000, &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 5000);
	assert_int_equal(r.want_len, 3 * BLK);
	assert_int_equal(tu_check(buf, 5000, TAG_A, 2 * BLK), -1);
	assert_true(tu_is_zero(buf + 5000, BLK));
	read10(f->n, 7, 1, buf, 100, &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 100);
	assert_int_equal(tu_check(buf, 100, TAG_A, 7 * BLK), -1);
	free(buf);
}

static void iov_cmd_done(struct scsi_cmd *cmd)
{
	*(bool *)cmd->opaque = true;
}

/* The data-in room split over entries of odd sizes, larger than asked. */
static void test_scsi_dvd_read_iovec(void **state)
{
	struct fix *f = *state;
	static uint8_t a[1000], b[3000], c[5000];
	struct iovec iov[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	uint8_t flat[4 * BLK];
	struct scsi_cmd cmd = { 0 };
	bool done = false;

	cmd.nexus = f->n;
	cmd.lun = scsi_lun_encode(0);
	cmd.cdb[0] = 0x28;
	ds_put_be32(cmd.cdb + 2, 9);
	ds_put_be16(cmd.cdb + 7, 4);
	cmd.cdb_len = 10;
	cmd.dir = SCSI_DIR_IN;
	cmd.iov = iov;
	cmd.iovcnt = 3;
	cmd.xfer_len = sizeof(a) + sizeof(b) + sizeof(c);
	cmd.done = iov_cmd_done;
	cmd.opaque = &done;
	scsi_cmd_submit(&cmd);
	assert_int_equal(reactor_run_until(tu_reactor(), &done), 0);
	assert_int_equal(cmd.status, SCSI_GOOD);
	assert_int_equal(cmd.data_len, 4 * BLK);
	assert_int_equal(cmd.want_len, 4 * BLK);
	assert_int_equal(iov_to_buf(iov, 3, 0, flat, sizeof(flat)), sizeof(flat));
	assert_int_equal(tu_check(flat, sizeof(flat), TAG_A, 9 * BLK), -1);

	/* Less room than asked, ending inside the second entry's block. */
	done = false;
	cmd.xfer_len = 2500;
	scsi_cmd_submit(&cmd);
	assert_int_equal(reactor_run_until(tu_reactor(), &done), 0);
	assert_int_equal(cmd.status, SCSI_GOOD);
	assert_int_equal(cmd.data_len, 2500);
	assert_int_equal(cmd.want_len, 4 * BLK);
	assert_int_equal(iov_to_buf(iov, 3, 0, flat, 2500), 2500);
	assert_int_equal(tu_check(flat, 2500, TAG_A, 9 * BLK), -1);
}

static void test_scsi_dvd_read_range(void **state)
{
	struct fix *f = *state;
	uint8_t buf[2 * BLK];
	struct st_result r;
	uint8_t cdb12[12] = { 0xA8 };

	read10(f->n, NBLK, 1, buf, BLK, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	read10(f->n, NBLK - 1, 2, buf, sizeof(buf), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	read10(f->n, UINT32_MAX, 1, buf, BLK, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	ds_put_be32(cdb12 + 2, 1);
	ds_put_be32(cdb12 + 6, UINT32_MAX);
	st_run(f->n, 0, cdb12, sizeof(cdb12), SCSI_DIR_IN, buf, sizeof(buf), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	/* Read-only: no write opcode reaches the medium. */
	st_run(f->n, 0, CDB(0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0), SCSI_DIR_OUT, buf, BLK, &r);
	assert_int_equal(r.status, SCSI_CHECK_CONDITION);
	assert_true(r.key == SCSI_SK_ILLEGAL_REQUEST || r.key == SCSI_SK_DATA_PROTECT);
}

/* ---- READ TOC, disc and track information ------------------------------------------- */

static void test_scsi_dvd_read_toc(void **state)
{
	struct fix *f = *state;
	uint8_t b[32];
	struct st_result r;
	const uint8_t want_lba[20] = {
		0x00, 0x12, 1, 1,
		0x00, 0x14, 0x01, 0x00, 0, 0, 0, 0,
		0x00, 0x14, 0xAA, 0x00, 0, 0, 0, NBLK,
	};
	/* Lead-out at LBA 40 = frame 190 = 00:02:40 */
	const uint8_t want_msf[20] = {
		0x00, 0x12, 1, 1,
		0x00, 0x14, 0x01, 0x00, 0, 0, 2, 0,
		0x00, 0x14, 0xAA, 0x00, 0, 0, 2, 40,
	};
	const uint8_t want_session[12] = {
		0x00, 0x0A, 1, 1, 0x00, 0x14, 0x01, 0x00, 0, 0, 0, 0,
	};

	memset(b, 0xEE, sizeof(b));
	run_in(f->n, CDB(0x43, 0, 0, 0, 0, 0, 0, 0, 32, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 20);
	assert_memory_equal(b, want_lba, 20);
	run_in(f->n, CDB(0x43, 0x02, 0, 0, 0, 0, 1, 0, 32, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_memory_equal(b, want_msf, 20);
	/* Starting at the lead-out: only it. */
	run_in(f->n, CDB(0x43, 0, 0, 0, 0, 0, 0xAA, 0, 32, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 12);
	assert_int_equal(ds_get_be16(b), 10);
	assert_int_equal(b[6], 0xAA);
	/* Session info, in MMC's form and in the SFF-8020i form Linux uses. */
	run_in(f->n, CDB(0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 12);
	assert_memory_equal(b, want_session, 12);
	run_in(f->n, CDB(0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0x40), b, sizeof(b), &r);
	assert_good(&r);
	assert_memory_equal(b, want_session, 12);
	/* The allocation length cuts. */
	run_in(f->n, CDB(0x43, 0, 0, 0, 0, 0, 0, 0, 4, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 4);
	assert_int_equal(r.want_len, 4);
	/* No track 2; no raw TOC on a DVD. */
	run_in(f->n, CDB(0x43, 0, 0, 0, 0, 0, 2, 0, 32, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	run_in(f->n, CDB(0x43, 0, 2, 0, 0, 0, 0, 0, 32, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

static void test_scsi_dvd_disc_track_info(void **state)
{
	struct fix *f = *state;
	uint8_t b[64];
	struct st_result r;

	run_in(f->n, CDB(0x51, 0, 0, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 34);
	assert_int_equal(ds_get_be16(b), 32);
	assert_int_equal(b[2], 0x0E);           /* complete disc, complete session */
	assert_int_equal(b[3], 1);
	assert_int_equal(b[4], 1);
	assert_int_equal(b[5], 1);
	assert_int_equal(b[6], 1);
	assert_int_equal(b[7], 0x20);           /* URU */
	run_in(f->n, CDB(0x51, 1, 0, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);

	/* Track 1 by number, by session, by an LBA in it. */
	for (uint8_t type = 0; type < 3; type++) {
		uint8_t num = type == 0 ? NBLK - 1 : 1;

		memset(b, 0xEE, sizeof(b));
		run_in(f->n, CDB(0x52, type, 0, 0, 0, num, 0, 0, 64, 0), b, sizeof(b), &r);
		assert_good(&r);
		assert_int_equal(r.data_len, 48);
		assert_int_equal(ds_get_be16(b), 46);
		assert_int_equal(b[2], 1);
		assert_int_equal(b[3], 1);
		assert_int_equal(b[5] & 0x0F, 4);       /* data track */
		assert_int_equal(ds_get_be32(b + 8), 0);        /* start */
		assert_int_equal(ds_get_be32(b + 24), NBLK);    /* size: the whole medium */
	}
	run_in(f->n, CDB(0x52, 1, 0, 0, 0, 1, 0, 0, 8, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	run_in(f->n, CDB(0x52, 0, 0, 0, 0, NBLK, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x21, 0x00);
	run_in(f->n, CDB(0x52, 1, 0, 0, 0, 2, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	run_in(f->n, CDB(0x52, 3, 0, 0, 0, 1, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	run_in(f->n, CDB(0x52, 0x05, 0, 0, 0, 1, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
}

/* ---- GET CONFIGURATION ---------------------------------------------------------------- */

/* Walks the feature descriptors of a GET CONFIGURATION answer of @len
 * bytes: each is 4 + its additional length, codes ascend, and the header's
 * length counts everything after itself. Returns the codes in @codes and
 * the current bits in @cur. */
static unsigned walk_features(const uint8_t *b, size_t len, uint16_t *codes, bool *cur)
{
	unsigned k = 0;
	size_t off = 8;

	assert_int_equal(ds_get_be32(b) + 4, len);
	while (off < len) {
		assert_true(off + 4 <= len);
		codes[k] = ds_get_be16(b + off);
		cur[k] = b[off + 2] & 0x01;
		if (k > 0)
			assert_true(codes[k] > codes[k - 1]);
		off += 4 + b[off + 3];
		k++;
	}
	assert_int_equal(off, len);
	return k;
}

static bool has_feature(const uint16_t *codes, const bool *cur, unsigned k, uint16_t code,
			bool *current)
{
	for (unsigned i = 0; i < k; i++)
		if (codes[i] == code) {
			*current = cur[i];
			return true;
		}
	return false;
}

static void test_scsi_dvd_get_configuration(void **state)
{
	struct fix *f = *state;
	static const uint16_t need[] = { 0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001F,
					 0x0100, 0x0105, 0x0107 };
	uint8_t b[256];
	uint16_t codes[32];
	bool cur[32], c;
	struct st_result r;
	unsigned k;

	run_in(f->n, CDB(0x46, 0, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(ds_get_be16(b + 6), 0x0010);  /* DVD-ROM current */
	k = walk_features(b, r.data_len, codes, cur);
	for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
		assert_true(has_feature(codes, cur, k, need[i], &c));
		assert_true(c);
	}
	/* The profile list: DVD-ROM (current) and CD-ROM. */
	assert_int_equal(ds_get_be16(b + 12), 0x0010);
	assert_int_equal(b[14] & 1, 1);
	assert_int_equal(ds_get_be16(b + 16), 0x0008);
	assert_int_equal(b[18] & 1, 0);

	/* RT 2: that feature alone. */
	run_in(f->n, CDB(0x46, 2, 0x00, 0x1F, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8 + 8);
	assert_int_equal(ds_get_be16(b + 8), 0x001F);
	run_in(f->n, CDB(0x46, 2, 0x01, 0x23, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	/* RT 0 from a starting feature. */
	run_in(f->n, CDB(0x46, 0, 0x01, 0x00, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	k = walk_features(b, r.data_len, codes, cur);
	assert_int_equal(codes[0], 0x0100);
	/* The header alone. */
	run_in(f->n, CDB(0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	assert_true(ds_get_be32(b) > 4);
	run_in(f->n, CDB(0x46, 3, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);

	/* Without a medium: no current profile, the media features are
	 * listed with RT 0 but not current, and RT 1 leaves them out. */
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), 0);
	run_in(f->n, CDB(0x46, 0, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(ds_get_be16(b + 6), 0);
	k = walk_features(b, r.data_len, codes, cur);
	assert_true(has_feature(codes, cur, k, 0x0010, &c));
	assert_false(c);
	run_in(f->n, CDB(0x46, 1, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	k = walk_features(b, r.data_len, codes, cur);
	assert_false(has_feature(codes, cur, k, 0x0010, &c));
	assert_false(has_feature(codes, cur, k, 0x001F, &c));
	assert_true(has_feature(codes, cur, k, 0x0003, &c));
	for (unsigned i = 0; i < k; i++)
		assert_true(cur[i]);
}

/* ---- MODE SENSE(10), MECHANISM STATUS, performance ------------------------------------- */

static void test_scsi_dvd_mode_sense(void **state)
{
	struct fix *f = *state;
	uint8_t b[64];
	struct st_result r;

	for (unsigned i = 0; i < 2; i++) {
		uint8_t page = i ? 0x3F : 0x2A;

		memset(b, 0xEE, sizeof(b));
		run_in(f->n, CDB(0x5A, 0, page, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
		assert_good(&r);
		assert_int_equal(r.data_len, 8 + 32);
		assert_int_equal(ds_get_be16(b), 8 + 32 - 2);
		assert_int_equal(ds_get_be16(b + 6), 0);        /* no block descriptors */
		assert_int_equal(b[8], 0x2A);
		assert_int_equal(b[9], 30);
		assert_int_equal(b[10] & 0x08, 0x08);           /* reads DVD-ROM */
		assert_int_equal(b[11], 0);                     /* writes nothing */
		assert_int_equal(b[14] & 0x08, 0x08);           /* can eject */
		assert_int_equal(b[14] >> 5, 1);                /* tray */
		assert_int_equal(b[14] & 0x02, 0);              /* not locked */
	}
	/* Changeable: nothing. */
	run_in(f->n, CDB(0x5A, 0, 0x6A, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_true(tu_is_zero(b + 10, 30));
	run_in(f->n, CDB(0x5A, 0, 0xEA, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x39, 0x00);
	run_in(f->n, CDB(0x5A, 0, 0x08, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	run_in(f->n, CDB(0x5A, 0, 0x2A, 1, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* The lock state follows PREVENT ALLOW MEDIUM REMOVAL. */
	prevent(f->n, true);
	run_in(f->n, CDB(0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	assert_int_equal(b[14] & 0x02, 0x02);
	prevent(f->n, false);
}

static void test_scsi_dvd_performance(void **state)
{
	struct fix *f = *state;
	uint8_t b[64];
	uint8_t desc[28] = { 0 };
	struct st_result r;

	memset(b, 0xEE, sizeof(b));
	run_in(f->n, CDB(0xAC, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 24);
	assert_int_equal(ds_get_be32(b), 20);
	assert_int_equal(ds_get_be32(b + 8), 0);
	assert_int_equal(ds_get_be32(b + 16), NBLK - 1);
	assert_true(ds_get_be32(b + 12) > 0);
	/* Write performance and exceptions: none. */
	run_in(f->n, CDB(0xAC, 0x14, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	run_in(f->n, CDB(0xAC, 0x11, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	run_in(f->n, CDB(0xAC, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x42, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);

	/* SET CD SPEED and SET STREAMING are taken. */
	run_in(f->n, CDB(0xBB, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0), NULL, 0, &r);
	assert_good(&r);
	st_run(f->n, 0, CDB(0xB6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 28, 0), SCSI_DIR_OUT, desc,
	       sizeof(desc), &r);
	assert_good(&r);
	assert_int_equal(r.want_len, 28);
}

static void test_scsi_dvd_mechanism_status(void **state)
{
	struct fix *f = *state;
	uint8_t b[8];
	struct st_result r;

	memset(b, 0xEE, sizeof(b));
	run_in(f->n, CDB(0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 8);
	assert_true(tu_is_zero(b, 8));
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x02, 0), NULL, 0, &r);
	assert_good(&r);
	run_in(f->n, CDB(0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0), b, sizeof(b), &r);
	assert_good(&r);
	assert_int_equal(b[1], 0x10);           /* door open */
}

/* ---- the empty drive -------------------------------------------------------------------- */

static void test_scsi_dvd_empty(void **state)
{
	struct fix *f = *state;
	uint8_t b[64];
	struct st_result r;

	assert_not_ready(f->n, 0x01);           /* tray closed, no disc */
	read10(f->n, 0, 1, b, BLK > sizeof(b) ? sizeof(b) : BLK, &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, 0x00);
	run_in(f->n, CDB(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), b, 8, &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, 0x00);
	run_in(f->n, CDB(0x43, 0, 0, 0, 0, 0, 0, 0, 32, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, 0x00);
	run_in(f->n, CDB(0x51, 0, 0, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, 0x00);
	/* What needs no medium still answers. */
	run_in(f->n, CDB(0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64, 0), b, sizeof(b), &r);
	assert_good(&r);
	run_in(f->n, CDB(0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0), b, 8, &r);
	assert_good(&r);
	gesn(f->n, 0x10, b);
	assert_int_equal(b[4], 0);              /* no change */
	assert_int_equal(b[5], 0);              /* no medium, tray closed */
	/* Closing an empty tray loads nothing. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x03, 0), NULL, 0, &r);
	assert_good(&r);
	assert_not_ready(f->n, 0x01);

	/* A host load: UNIT ATTENTION for every nexus, then ready. */
	assert_int_equal(scsi_lu_change_media(f->lu, f->a, false), 0);
	run_in(f->n, CDB(0x00, 0, 0, 0, 0, 0), NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x28, 0x00);
	assert_ready(f->n);
	run_in(f->n2, CDB(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), b, 8, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x28, 0x00);
	assert_media_event(f->n, 2, 0x02);      /* NEW MEDIA, present */
	assert_media_event(f->n, 0, 0x02);
	assert_medium(f->n2, NBLK, TAG_A);
}

/* ---- host media changes ------------------------------------------------------------------ */

static void test_scsi_dvd_host_change(void **state)
{
	struct fix *f = *state;
	uint8_t b[8];
	struct st_result r;

	/* A drive that starts loaded has no media event pending. */
	assert_media_event(f->n, 0, 0x02);
	assert_ready(f->n);

	/* Removal: NOT READY, the removal event; no unit attention. */
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), 0);
	assert_not_ready(f->n, 0x01);
	assert_not_ready(f->n2, 0x01);
	assert_media_event(f->n, 3, 0x00);      /* MEDIA REMOVAL */
	assert_media_event(f->n, 0, 0x00);

	/* Load B: the attention, then B's bytes and size. */
	assert_int_equal(scsi_lu_change_media(f->lu, f->b, false), 0);
	run_in(f->n, CDB(0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0), b, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x28, 0x00);
	assert_medium(f->n, NBLK / 2, TAG_B);
	run_in(f->n, CDB(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), b, 8, &r);
	assert_good(&r);
	assert_int_equal(ds_get_be32(b), NBLK / 2 - 1);
	assert_media_event(f->n, 2, 0x02);

	/* A straight swap B -> A: removal, then new media. The other
	 * nexus has one attention for both loads (the core keeps one of a
	 * kind). */
	assert_int_equal(scsi_lu_change_media(f->lu, f->a, false), 0);
	assert_media_event(f->n, 3, 0x02);
	assert_media_event(f->n, 2, 0x02);
	assert_media_event(f->n, 0, 0x02);
	assert_int_equal(st_clear_ua(f->n2, 0), 1);
	assert_medium(f->n2, NBLK, TAG_A);
}

static void test_scsi_dvd_host_change_prevented(void **state)
{
	struct fix *f = *state;
	struct st_result r;

	prevent(f->n2, true);
	assert_int_equal(scsi_lu_change_media(f->lu, f->b, false), -EBUSY);
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), -EBUSY);
	assert_medium(f->n, NBLK, TAG_A);
	/* The refused host changes were the eject button of a real drive:
	 * the guest hears an EJECT REQUEST (once) and may allow removal. */
	assert_media_event(f->n, 1, 0x02);
	assert_media_event(f->n, 0, 0x02);
	/* The guest cannot eject either while its PREVENT holds. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x02, 0), NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x53, 0x02);
	assert_ready(f->n);
	/* force does it anyway. */
	assert_int_equal(scsi_lu_change_media(f->lu, f->b, true), 0);
	assert_int_equal(st_clear_ua(f->n, 0), 1);
	assert_medium(f->n, NBLK / 2, TAG_B);
	/* Allowed again: the host may change it. */
	assert_int_equal(st_clear_ua(f->n2, 0), 1);
	prevent(f->n2, false);
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), 0);
	assert_not_ready(f->n, 0x01);
}

/* ---- guest eject and reload --------------------------------------------------------------- */

static void test_scsi_dvd_guest_eject_reload(void **state)
{
	struct fix *f = *state;
	uint8_t b[BLK];
	struct st_result r;

	/* LOEJ=0: nothing happens. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x00, 0), NULL, 0, &r);
	assert_good(&r);
	assert_ready(f->n);
	/* Eject: the tray opens, the medium goes. */
	run_in(f->n, CDB(0x1B, 0x01, 0, 0, 0x02, 0), NULL, 0, &r);
	assert_good(&r);
	assert_not_ready(f->n, 0x02);
	assert_not_ready(f->n2, 0x02);
	read10(f->n, 0, 1, b, sizeof(b), &r);
	st_assert_sense(&r, SCSI_SK_NOT_READY, 0x3A, 0x00);
	assert_media_event(f->n, 3, 0x01);      /* MEDIA REMOVAL, tray open */
	/* Ejecting again is harmless. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x02, 0), NULL, 0, &r);
	assert_good(&r);
	assert_media_event(f->n, 0, 0x01);

	/* Load: the same medium comes back; this nexus knows, the other
	 * gets the attention. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x03, 0), NULL, 0, &r);
	assert_good(&r);
	assert_ready(f->n);
	assert_media_event(f->n, 2, 0x02);
	run_in(f->n2, CDB(0x00, 0, 0, 0, 0, 0), NULL, 0, &r);
	st_assert_sense(&r, SCSI_SK_UNIT_ATTENTION, 0x28, 0x00);
	assert_medium(f->n2, NBLK, TAG_A);

	/* Ejected, then the host takes the medium away: loading closes an
	 * empty tray. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x02, 0), NULL, 0, &r);
	assert_good(&r);
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), 0);
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x03, 0), NULL, 0, &r);
	assert_good(&r);
	assert_not_ready(f->n, 0x01);
	/* A host load closes an open tray too. */
	run_in(f->n, CDB(0x1B, 0, 0, 0, 0x02, 0), NULL, 0, &r);
	assert_not_ready(f->n, 0x02);
	assert_int_equal(scsi_lu_change_media(f->lu, f->b, false), 0);
	assert_int_equal(st_clear_ua(f->n, 0), 1);
	assert_medium(f->n, NBLK / 2, TAG_B);
}

/* ---- GET EVENT STATUS NOTIFICATION ----------------------------------------------------------- */

static void test_scsi_dvd_event_status(void **state)
{
	struct fix *f = *state;
	uint8_t b[8];
	struct st_result r;

	/* Polled only. */
	run_in(f->n, CDB(0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8, 0), b, 8, &r);
	st_assert_sense(&r, SCSI_SK_ILLEGAL_REQUEST, 0x24, 0x00);
	/* No supported class asked: NEA and the header. */
	for (unsigned i = 0; i < 2; i++) {
		memset(b, 0xEE, sizeof(b));
		run_in(f->n, CDB(0x4A, 1, 0, 0, i ? 0x08 : 0, 0, 0, 0, 8, 0), b, 8, &r);
		assert_good(&r);
		assert_int_equal(r.data_len, 4);
		assert_int_equal(ds_get_be16(b), 2);
		assert_int_equal(b[2], 0x80);
		assert_int_equal(b[3], 0x16);
	}
	/* Power: active. Operational: no change. */
	gesn(f->n, 0x04, b);
	assert_int_equal(b[2], 2);
	assert_int_equal(b[4], 0);
	assert_int_equal(b[5], 1);
	gesn(f->n, 0x02 | 0x10, b);
	assert_int_equal(b[2], 1);
	assert_int_equal(b[4], 0);
	/* MMC's Persistent Prevent shows in the operational status, and
	 * prevents like a plain PREVENT. */
	run_in(f->n, CDB(0x1E, 0, 0, 0, 0x03, 0), NULL, 0, &r);
	assert_good(&r);
	gesn(f->n, 0x02, b);
	assert_int_equal(b[5], 0x80);
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), -EBUSY);
	assert_media_event(f->n, 1, 0x02);
	run_in(f->n, CDB(0x1E, 0, 0, 0, 0x02, 0), NULL, 0, &r);
	assert_good(&r);
	gesn(f->n, 0x02, b);
	assert_int_equal(b[5], 0x00);

	/* After a change, with every class asked: the operational change
	 * (feature change) first, then the media events in order, then no
	 * change from the lowest class. */
	assert_int_equal(scsi_lu_change_media(f->lu, f->b, false), 0);
	gesn(f->n, 0x16, b);
	assert_int_equal(b[2], 1);
	assert_int_equal(b[4], 2);
	assert_int_equal(ds_get_be16(b + 6), 0x0001);
	gesn(f->n, 0x16, b);
	assert_int_equal(b[2], 4);
	assert_int_equal(b[4], 3);
	gesn(f->n, 0x16, b);
	assert_int_equal(b[2], 4);
	assert_int_equal(b[4], 2);
	gesn(f->n, 0x16, b);
	assert_int_equal(b[2], 1);
	assert_int_equal(b[4], 0);

	/* A media event waits for a poll long enough to carry it; GESN runs
	 * despite the pending unit attention and leaves it queued. */
	assert_int_equal(scsi_lu_change_media(f->lu, NULL, false), 0);
	memset(b, 0xEE, sizeof(b));
	run_in(f->n, CDB(0x4A, 1, 0, 0, 0x10, 0, 0, 0, 4, 0), b, 8, &r);
	assert_good(&r);
	assert_int_equal(r.data_len, 4);
	assert_int_equal(b[2], 4);
	assert_media_event(f->n, 3, 0x00);
	assert_int_equal(st_clear_ua(f->n, 0), 1);      /* the load of B */
}

/* ---- media changes racing reads ---------------------------------------------------------- */

struct churn {
	struct scsi_lu *lu;
	struct disk *a, *b;
	atomic_bool stop;
	unsigned changes;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;

	while (!atomic_load(&c->stop)) {
		struct disk *d = (c->changes % 3 == 0) ? c->a : (c->changes % 3 == 1) ? c->b : NULL;

		assert_int_equal(scsi_lu_change_media(c->lu, d, true), 0);
		c->changes++;
		if (c->changes % 64 == 0)
			usleep(100);
	}
	return NULL;
}

/* Every READ sees one medium whole or fails cleanly while another thread
 * swaps media; each command keeps its medium open until it ends (ASan
 * and valgrind catch a medium closed under a READ). */
static void test_scsi_dvd_change_while_reading(void **state)
{
	struct fix *f = *state;
	struct churn c = { .lu = f->lu, .a = f->a, .b = f->b };
	uint8_t *buf = malloc(8 * BLK);
	unsigned good = 0;
	pthread_t th;

	assert_non_null(buf);
	assert_int_equal(pthread_create(&th, NULL, churn_thread, &c), 0);
	for (unsigned i = 0; i < 400; i++) {
		struct st_result r;
		uint32_t lba = i % (NBLK / 2 - 8);

		memset(buf, 0, 8 * BLK);
		read10(f->n, lba, 8, buf, 8 * BLK, &r);
		if (r.status == SCSI_GOOD) {
			bool a = tu_check(buf, 8 * BLK, TAG_A, (uint64_t)lba * BLK) == -1;
			bool b = tu_check(buf, 8 * BLK, TAG_B, (uint64_t)lba * BLK) == -1;

			assert_true(a || b);
			good++;
		} else {
			assert_int_equal(r.status, SCSI_CHECK_CONDITION);
			assert_true(r.key == SCSI_SK_NOT_READY || r.key == SCSI_SK_UNIT_ATTENTION);
		}
	}
	atomic_store(&c.stop, true);
	pthread_join(th, NULL);
	print_message("# %u reads whole of %u, %u media changes\n", good, 400u, c.changes);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_scsi_dvd_medium_refused, NULL),
		cmocka_unit_test(test_scsi_dvd_sector_mapping),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_inquiry_capacity, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_read_exact, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_read_iovec, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_read_range, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_read_toc, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_disc_track_info, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_get_configuration, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_mode_sense, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_performance, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_mechanism_status, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_empty, setup_empty, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_host_change, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_host_change_prevented, setup_loaded,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_guest_eject_reload, setup_loaded,
						teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_event_status, setup_loaded, teardown),
		cmocka_unit_test_setup_teardown(test_scsi_dvd_change_while_reading, setup_loaded,
						teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);

	tu_reactor_done();
	return r;
}
