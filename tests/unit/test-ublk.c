/* SPDX-License-Identifier: MIT */
/*
 * test-ublk.c: the parts of the ublk server (ublk/) that do not need the
 * kernel driver: the status -> errno table, the ioctl-encoded opcodes
 * against the kernel's values, the USER_COPY offsets, the parameters built
 * from a disk, the descriptor translation of the data path, the device
 * records, and the clear error when the driver is missing. Everything that
 * talks to the driver runs in the QEMU guests of tests/vm/.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/compiler.h"
#include "tests/unit/testutil.h"
#include "ublk/ubsrv.h"

/* ---- the status table ---------------------------------------------------- */

static void test_ubsrv_status_errno_table(void **state UNUSED)
{
	static const struct {
		int status, os_errno, medium, want;
	} cases[] = {
		{ DISK_OK, 0, 0, 0 },
		{ DISK_RESERVATION_CONFLICT, 0, 0, -EBADE },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_UNRECOVERED_READ, -ENODATA },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_WRITE_FAULT, -ENODATA },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_NONE, -ENODATA },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_GUARD, -EILSEQ },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_APP_TAG, -EILSEQ },
		{ DISK_MEDIUM_ERROR, 0, DISK_MEDIUM_REF_TAG, -EILSEQ },
		{ DISK_UNSUPPORTED, 0, 0, -EOPNOTSUPP },
		{ DISK_READ_ONLY, 0, 0, -EROFS },
		{ DISK_ILLEGAL_BLOCK, 0, 0, -EREMOTEIO },
		{ DISK_INVALID_INPUT, 0, 0, -EINVAL },
		{ DISK_MEMORY_ACCESS, 0, 0, -EFAULT },
		{ DISK_ABORTED_PREEMPT, 0, 0, -ECANCELED },
		{ DISK_IO_ERROR, EIO, 0, -EIO },
		{ DISK_IO_ERROR, 0, 0, -EIO },
		{ DISK_IO_ERROR, ENOSPC, 0, -ENOSPC },
		{ DISK_IO_ERROR, EDQUOT, 0, -ENOSPC },
		{ DISK_IO_ERROR, ETIMEDOUT, 0, -ETIMEDOUT },
		{ DISK_IO_ERROR, EFBIG, 0, -ENOSPC },
		{ DISK_IO_ERROR, ENODATA, 0, -ENODATA },
		{ DISK_IO_ERROR, EBADMSG, 0, -ENODATA },
		{ DISK_IO_ERROR, EILSEQ, 0, -ENODATA },
		{ DISK_IO_ERROR, EROFS, 0, -EIO },
		{ DISK_IO_ERROR, EPERM, 0, -EIO },
		{ DISK_IO_ERROR, EBADF, 0, -EIO },
		{ DISK_STATUS_COUNT, 0, 0, -EIO },
		{ 1000, 0, 0, -EIO },
		{ -5, 0, 0, -EIO },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int got = ubsrv_status_errno(cases[i].status, cases[i].os_errno, cases[i].medium);

		if (got != cases[i].want)
			fail_msg("status %d errno %d medium %d: got %d, want %d", cases[i].status,
				 cases[i].os_errno, cases[i].medium, got, cases[i].want);
	}
	/* Every defined status maps to something the block layer knows or EIO,
	 * and only success maps to 0. */
	for (int s = 0; s < DISK_STATUS_COUNT; s++) {
		int e = ubsrv_status_errno(s, EIO, DISK_MEDIUM_NONE);

		assert_true(s == DISK_OK ? e == 0 : e < 0);
	}
}

/* ---- opcodes and offsets ------------------------------------------------- */

static void test_ubsrv_opcodes_match_kernel(void **state UNUSED)
{
	/* The values of the kernel's UBLK_U_CMD_* / UBLK_U_IO_* macros
	 * (include/uapi/linux/ublk_cmd.h). */
	static const struct { uint32_t nr, encoded; } ctrl[] = {
		{ UBSRV_CMD_GET_QUEUE_AFFINITY, 0x80207501 },
		{ UBSRV_CMD_GET_DEV_INFO, 0x80207502 },
		{ UBSRV_CMD_ADD_DEV, 0xc0207504 },
		{ UBSRV_CMD_DEL_DEV, 0xc0207505 },
		{ UBSRV_CMD_START_DEV, 0xc0207506 },
		{ UBSRV_CMD_STOP_DEV, 0xc0207507 },
		{ UBSRV_CMD_SET_PARAMS, 0xc0207508 },
		{ UBSRV_CMD_GET_PARAMS, 0x80207509 },
		{ UBSRV_CMD_START_USER_RECOVERY, 0xc0207510 },
		{ UBSRV_CMD_END_USER_RECOVERY, 0xc0207511 },
		{ UBSRV_CMD_GET_DEV_INFO2, 0x80207512 },
		{ UBSRV_CMD_GET_FEATURES, 0x80207513 },
		{ UBSRV_CMD_DEL_DEV_ASYNC, 0x80207514 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(ctrl); i++) {
		assert_int_equal(ubsrv_ctrl_opcode(ctrl[i].nr, true), ctrl[i].encoded);
		assert_int_equal(ubsrv_ctrl_opcode(ctrl[i].nr, false), ctrl[i].nr);
		assert_string_not_equal(ubsrv_cmd_name(ctrl[i].nr), "unknown command");
	}
	assert_int_equal(UBSRV_U_CMD_GET_FEATURES, 0x80207513);
	assert_int_equal(ubsrv_io_opcode(UBSRV_IO_FETCH_REQ, true), 0xc0107520);
	assert_int_equal(ubsrv_io_opcode(UBSRV_IO_COMMIT_AND_FETCH_REQ, true), 0xc0107521);
	assert_int_equal(ubsrv_io_opcode(UBSRV_IO_NEED_GET_DATA, true), 0xc0107522);
	assert_int_equal(ubsrv_io_opcode(UBSRV_IO_FETCH_REQ, false), 0x20);
	assert_int_equal(ubsrv_io_opcode(UBSRV_IO_COMMIT_AND_FETCH_REQ, false), 0x21);
	assert_int_equal(UBSRV_IO_RES_ABORT, -ENODEV);
}

static void test_ubsrv_user_copy_offset(void **state UNUSED)
{
	assert_true(ubsrv_user_copy_offset(0, 0) == 0x80000000ull);
	assert_true(ubsrv_user_copy_offset(0, 1) == 0x80000000ull + (1ull << 25));
	assert_true(ubsrv_user_copy_offset(1, 0) == 0x80000000ull + (1ull << 41));
	assert_true(ubsrv_user_copy_offset(3, 4095) ==
		    0x80000000ull + (3ull << 41) + (4095ull << 25));
	/* The largest request fits its tag's window. */
	assert_true(UBSRV_MAX_MAX_IO == 1u << 25);
}

static void test_ubsrv_names(void **state UNUSED)
{
	char buf[256];

	assert_string_equal(ubsrv_state_str(UBSRV_S_DEV_DEAD), "dead");
	assert_string_equal(ubsrv_state_str(UBSRV_S_DEV_LIVE), "live");
	assert_string_equal(ubsrv_state_str(UBSRV_S_DEV_QUIESCED), "quiesced");
	assert_string_equal(ubsrv_state_str(UBSRV_S_DEV_FAIL_IO), "fail-io");
	assert_string_equal(ubsrv_state_str(77), "unknown");
	ubsrv_flags_str(0, buf, sizeof(buf));
	assert_string_equal(buf, "none");
	ubsrv_flags_str(UBSRV_F_URING_CMD_COMP_IN_TASK | UBSRV_F_CMD_IOCTL_ENCODE |
			UBSRV_F_USER_COPY, buf, sizeof(buf));
	assert_string_equal(buf, "comp-in-task,ioctl-encode,user-copy");
	ubsrv_flags_str(1ull << 40, buf, sizeof(buf));
	assert_string_equal(buf, "bit40");
	/* Truncation stays a valid string. */
	ubsrv_flags_str(~0ull, buf, 16);
	assert_true(strlen(buf) < 16);
}

/* ---- parameters ------------------------------------------------------------ */

static struct disk_info info_512(void)
{
	struct disk_info i = {
		.type = "test",
		.sector_size = 512,
		.physical_sector_size = 4096,
		.sector_shift = 9,
		.unmap_behavior = DISK_UNMAP_ZEROES,
		.optimal_unmap_sectors = 8,
	};
	return i;
}

static void test_ubsrv_params_basic(void **state UNUSED)
{
	struct disk_info i = info_512();
	struct ubsrv_params p;
	char err[256] = "";

	assert_int_equal(ubsrv_params_build(&i, 131072, false, 512 << 10, &p, err, sizeof(err)), 0);
	assert_int_equal(p.len, sizeof(p));
	assert_int_equal(p.types, UBSRV_PARAM_TYPE_BASIC | UBSRV_PARAM_TYPE_DISCARD);
	assert_int_equal(p.basic.logical_bs_shift, 9);
	assert_int_equal(p.basic.physical_bs_shift, 12);
	assert_int_equal(p.basic.io_min_shift, 12);
	assert_int_equal(p.basic.max_sectors, 1024);
	assert_true(p.basic.dev_sectors == 131072);
	assert_int_equal(p.basic.attrs, 0);
	assert_int_equal(p.discard.discard_granularity, 4096);
	assert_true(p.discard.max_discard_sectors > 0);
	assert_int_equal(p.discard.max_discard_segments, 1);
	assert_true(p.discard.max_write_zeroes_sectors > 0);
}

static void test_ubsrv_params_cache_and_ro(void **state UNUSED)
{
	struct disk_info i = info_512();
	struct ubsrv_params p;

	/* A layer caches writes: FLUSH and FUA must reach us. */
	i.caps = DISK_CAP_VOLATILE_CACHE;
	assert_int_equal(ubsrv_params_build(&i, 100, false, 65536, &p, NULL, 0), 0);
	assert_int_equal(p.basic.attrs, UBSRV_ATTR_VOLATILE_CACHE | UBSRV_ATTR_FUA);

	/* Read-only (asked for, or reported by the disk): no discard type. */
	i.caps = 0;
	assert_int_equal(ubsrv_params_build(&i, 100, true, 65536, &p, NULL, 0), 0);
	assert_int_equal(p.basic.attrs, UBSRV_ATTR_READ_ONLY);
	assert_int_equal(p.types, UBSRV_PARAM_TYPE_BASIC);
	i.read_only = true;
	assert_int_equal(ubsrv_params_build(&i, 100, false, 65536, &p, NULL, 0), 0);
	assert_int_equal(p.basic.attrs, UBSRV_ATTR_READ_ONLY);
	assert_int_equal(p.types, UBSRV_PARAM_TYPE_BASIC);
}

static void test_ubsrv_params_unmap(void **state UNUSED)
{
	struct disk_info i = info_512();
	struct ubsrv_params p;

	/* Unmap ignored: no discard, but write-zeroes still offered (emulated
	 * below), with the non-zero granularity the kernel insists on. */
	i.unmap_behavior = DISK_UNMAP_IGNORED;
	i.optimal_unmap_sectors = 1;
	assert_int_equal(ubsrv_params_build(&i, 100, false, 65536, &p, NULL, 0), 0);
	assert_true(p.types & UBSRV_PARAM_TYPE_DISCARD);
	assert_int_equal(p.discard.max_discard_sectors, 0);
	assert_true(p.discard.max_write_zeroes_sectors > 0);
	assert_int_equal(p.discard.discard_granularity, 512);

	/* Unspecified unmap still discards. */
	i.unmap_behavior = DISK_UNMAP_UNSPECIFIED;
	assert_int_equal(ubsrv_params_build(&i, 100, false, 65536, &p, NULL, 0), 0);
	assert_true(p.discard.max_discard_sectors > 0);
	assert_int_equal(p.discard.max_discard_segments, 1);

	/* A huge granularity is clamped to something the kernel accepts. */
	i.optimal_unmap_sectors = UINT32_MAX;
	assert_int_equal(ubsrv_params_build(&i, 100, false, 65536, &p, NULL, 0), 0);
	assert_int_equal(p.discard.discard_granularity, 512);
}

static void test_ubsrv_params_4k_and_limits(void **state UNUSED)
{
	struct disk_info i = info_512();
	struct ubsrv_params p;
	char err[256] = "";

	i.sector_size = 4096;
	i.sector_shift = 12;
	i.physical_sector_size = 4096;
	assert_int_equal(ubsrv_params_build(&i, 1000, false, 1 << 20, &p, NULL, 0), 0);
	assert_int_equal(p.basic.logical_bs_shift, 12);
	assert_int_equal(p.basic.physical_bs_shift, 12);
	assert_true(p.basic.dev_sectors == 8000);
	assert_int_equal(p.basic.max_sectors, 2048);

	/* Larger than a page: ublk cannot express it. */
	i.sector_size = 8192;
	i.sector_shift = 13;
	i.physical_sector_size = 8192;
	assert_int_equal(ubsrv_params_build(&i, 10, false, 1 << 20, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sector size 8192"));

	/* --max-io must be whole pages. */
	i = info_512();
	err[0] = '\0';
	assert_int_equal(ubsrv_params_build(&i, 10, false, 6000, &p, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--max-io"));

	/* Sizes that overflow 512-byte sectors. */
	i.sector_size = 4096;
	i.sector_shift = 12;
	assert_int_equal(ubsrv_params_build(&i, UINT64_MAX / 4, false, 65536, &p, err, sizeof(err)),
			 -EINVAL);
}

/* ---- descriptor translation ----------------------------------------------------- */

static struct ubsrv_io_desc iod(uint32_t op, uint32_t flags, uint64_t start, uint32_t nr)
{
	struct ubsrv_io_desc d = {
		.op_flags = op | flags, .nr_sectors = nr, .start_sector = start, .addr = 0,
	};
	return d;
}

static void test_ubsrv_iod_ops(void **state UNUSED)
{
	struct disk_io io;
	struct ubsrv_io_desc d;

	memset(&io, 0xa5, sizeof(io));
	d = iod(UBSRV_IO_OP_READ, 0, 100, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 4096);
	assert_int_equal(io.op, DISK_OP_READ);
	assert_int_equal(io.flags, 0);
	assert_true(io.sector == 100 && io.count == 8);
	assert_null(io.initiator);

	d = iod(UBSRV_IO_OP_WRITE, UBSRV_IO_F_FUA | UBSRV_IO_F_META, 7, 1);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 512);
	assert_int_equal(io.op, DISK_OP_WRITE);
	assert_int_equal(io.flags, DISK_IO_FUA);
	assert_true(io.sector == 7 && io.count == 1);

	d = iod(UBSRV_IO_OP_WRITE, 0, 7, 1);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 512);
	assert_int_equal(io.flags, 0);

	d = iod(UBSRV_IO_OP_FLUSH, 0, 0, 0);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 0);
	assert_int_equal(io.op, DISK_OP_FLUSH);

	/* Discard lengths are not bounded by the buffer size. */
	d = iod(UBSRV_IO_OP_DISCARD, 0, 1024, 1 << 21);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 0);
	assert_int_equal(io.op, DISK_OP_UNMAP);
	assert_true(io.sector == 1024 && io.count == 1u << 21);

	d = iod(UBSRV_IO_OP_WRITE_ZEROES, UBSRV_IO_F_NOUNMAP, 8, 16);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 0);
	assert_int_equal(io.op, DISK_OP_WRITE_ZEROES);
	assert_int_equal(io.flags, DISK_IO_NO_UNMAP);
	assert_true(io.sector == 8 && io.count == 16);

	d = iod(UBSRV_IO_OP_WRITE_ZEROES, UBSRV_IO_F_FUA, 8, 16);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 0);
	assert_int_equal(io.flags, DISK_IO_FUA);

	d = iod(UBSRV_IO_OP_WRITE_ZEROES, 0, 8, 16);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 0);
	assert_int_equal(io.flags, 0);
}

static void test_ubsrv_iod_refused(void **state UNUSED)
{
	struct disk_io io;
	struct ubsrv_io_desc d;

	/* Ops we do not serve. */
	d = iod(UBSRV_IO_OP_WRITE_SAME, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), -EOPNOTSUPP);
	d = iod(13 /* ZONE_APPEND */, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), -EOPNOTSUPP);
	d = iod(0xff, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), -EOPNOTSUPP);

	/* Longer than the tag's buffer, or empty. */
	d = iod(UBSRV_IO_OP_READ, 0, 0, 129);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), -EINVAL);
	d = iod(UBSRV_IO_OP_WRITE, 0, 0, 128);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), 65536);
	d = iod(UBSRV_IO_OP_READ, 0, 0, 0);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, false, &io), -EINVAL);

	/* Read-only: reads and flushes pass, everything that writes fails
	 * with the table's READ_ONLY errno. */
	d = iod(UBSRV_IO_OP_READ, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, true, &io), 4096);
	d = iod(UBSRV_IO_OP_FLUSH, 0, 0, 0);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, true, &io), 0);
	d = iod(UBSRV_IO_OP_WRITE, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, true, &io),
			 ubsrv_status_errno(DISK_READ_ONLY, 0, 0));
	d = iod(UBSRV_IO_OP_DISCARD, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, true, &io), -EROFS);
	d = iod(UBSRV_IO_OP_WRITE_ZEROES, 0, 0, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 65536, true, &io), -EROFS);
}

static void test_ubsrv_iod_4k(void **state UNUSED)
{
	struct disk_io io;
	struct ubsrv_io_desc d;

	/* 512-byte units in the descriptor, 4096-byte sectors on the disk. */
	d = iod(UBSRV_IO_OP_READ, 0, 16, 24);
	assert_int_equal(ubsrv_iod_translate(&d, 12, 1 << 20, false, &io), 12288);
	assert_true(io.sector == 2 && io.count == 3);
	d = iod(UBSRV_IO_OP_DISCARD, 0, 8, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 12, 1 << 20, false, &io), 0);
	assert_true(io.sector == 1 && io.count == 1);
	/* Misaligned start or length. */
	d = iod(UBSRV_IO_OP_READ, 0, 3, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 12, 1 << 20, false, &io), -EINVAL);
	d = iod(UBSRV_IO_OP_WRITE, 0, 8, 9);
	assert_int_equal(ubsrv_iod_translate(&d, 12, 1 << 20, false, &io), -EINVAL);
	d = iod(UBSRV_IO_OP_WRITE_ZEROES, 0, 1, 8);
	assert_int_equal(ubsrv_iod_translate(&d, 12, 1 << 20, false, &io), -EINVAL);
}

static void test_ubsrv_iod_trusts_nr_sectors(void **state UNUSED)
{
	struct disk_io io;
	struct ubsrv_io_desc d;

	/* A request the kernel shortened (partly pinned pages): the length is
	 * nr_sectors, whatever the request originally was. */
	d = iod(UBSRV_IO_OP_WRITE, 0, 1000, 3);
	assert_int_equal(ubsrv_iod_translate(&d, 9, 512 << 10, false, &io), 1536);
	assert_true(io.count == 3);
	d.nr_sectors = 1;
	assert_int_equal(ubsrv_iod_translate(&d, 9, 512 << 10, false, &io), 512);
	assert_true(io.count == 1 && io.sector == 1000);
}

/* ---- device records ------------------------------------------------------------------ */

static void test_ubsrv_record_roundtrip(void **state UNUSED)
{
	struct ubsrv_record w = {
		.id = 42, .pid = 1234, .spec = (char *)"memdiff:file:/tmp/a b\\c\nd.img",
		.cwd = (char *)"/some/where", .queues = 2, .depth = 64, .max_io_bytes = 524288,
		.flags = 0xca, .size_bytes = 1ull << 40, .read_only = true, .user_copy = true,
	};
	struct ubsrv_record r;
	uint32_t *ids;
	size_t n;

	setenv("DISKSTACK_RUN_DIR", tu_path("run"), 1);
	assert_non_null(strstr(ubsrv_record_dir(), "/run/ublk"));
	assert_int_equal(ubsrv_record_read(42, &r), -ENOENT);
	assert_int_equal(ubsrv_record_ids(&ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);

	assert_int_equal(ubsrv_record_write(&w), 0);
	assert_int_equal(ubsrv_record_read(42, &r), 0);
	assert_int_equal(r.id, 42);
	assert_int_equal(r.pid, 1234);
	assert_string_equal(r.spec, w.spec);
	assert_string_equal(r.cwd, w.cwd);
	assert_int_equal(r.queues, 2);
	assert_int_equal(r.depth, 64);
	assert_int_equal(r.max_io_bytes, 524288);
	assert_true(r.flags == 0xca);
	assert_true(r.size_bytes == 1ull << 40);
	assert_true(r.read_only && r.user_copy);
	ubsrv_record_clear(&r);

	/* Rewriting replaces it; ids come back sorted. */
	w.pid = 99;
	assert_int_equal(ubsrv_record_write(&w), 0);
	w.id = 3;
	assert_int_equal(ubsrv_record_write(&w), 0);
	w.id = 1000;
	assert_int_equal(ubsrv_record_write(&w), 0);
	assert_int_equal(ubsrv_record_read(42, &r), 0);
	assert_int_equal(r.pid, 99);
	ubsrv_record_clear(&r);
	assert_int_equal(ubsrv_record_ids(&ids, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 3);
	assert_int_equal(ids[1], 42);
	assert_int_equal(ids[2], 1000);
	free(ids);

	assert_int_equal(ubsrv_record_remove(42), 0);
	assert_int_equal(ubsrv_record_remove(42), 0);
	assert_int_equal(ubsrv_record_read(42, &r), -ENOENT);
	assert_int_equal(ubsrv_record_remove(3), 0);
	assert_int_equal(ubsrv_record_remove(1000), 0);
	unsetenv("DISKSTACK_RUN_DIR");
}

static void write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_ubsrv_record_malformed(void **state UNUSED)
{
	char path[4096];
	struct ubsrv_record r;

	setenv("DISKSTACK_RUN_DIR", tu_path("run2"), 1);
	mkdir(tu_path("run2"), 0755);
	mkdir(ubsrv_record_dir(), 0755);
	snprintf(path, sizeof(path), "%s/5", ubsrv_record_dir());

	write_text(path, "id=5\nspec=mem:1M\nfuture_key=whatever it is\n");
	assert_int_equal(ubsrv_record_read(5, &r), 0);
	assert_string_equal(r.spec, "mem:1M");
	assert_null(r.cwd);
	ubsrv_record_clear(&r);

	write_text(path, "id=5\n");                             /* no spec */
	assert_int_equal(ubsrv_record_read(5, &r), -EINVAL);
	assert_null(r.spec);
	write_text(path, "id=6\nspec=mem:1M\n");                /* another id */
	assert_int_equal(ubsrv_record_read(5, &r), -EINVAL);
	write_text(path, "id=5\nspec=mem:1M\nqueues=many\n");   /* bad number */
	assert_int_equal(ubsrv_record_read(5, &r), -EINVAL);
	write_text(path, "id=5\nspec=mem:1M\npid=-3\n");
	assert_int_equal(ubsrv_record_read(5, &r), -EINVAL);
	write_text(path, "garbage\n");
	assert_int_equal(ubsrv_record_read(5, &r), -EINVAL);
	/* Files that are not records are not listed. */
	write_text(tu_path("run2/ublk/notes"), "x");
	write_text(tu_path("run2/ublk/7.tmp123"), "x");
	uint32_t *ids;
	size_t n;
	assert_int_equal(ubsrv_record_ids(&ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 5);
	free(ids);
	unsetenv("DISKSTACK_RUN_DIR");
}

/* ---- the control node ------------------------------------------------------------------ */

static void test_ubsrv_ctrl_missing_driver(void **state UNUSED)
{
	struct ubsrv_ctrl *c = NULL;
	char err[512] = "";

	setenv("DISKSTACK_UBLK_CONTROL", tu_path("no-such-control"), 1);
	assert_int_equal(ubsrv_ctrl_open(&c, err, sizeof(err)), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(err, "ublk driver is not available"));
	unsetenv("DISKSTACK_UBLK_CONTROL");
	ubsrv_ctrl_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ubsrv_status_errno_table),
		cmocka_unit_test(test_ubsrv_opcodes_match_kernel),
		cmocka_unit_test(test_ubsrv_user_copy_offset),
		cmocka_unit_test(test_ubsrv_names),
		cmocka_unit_test(test_ubsrv_params_basic),
		cmocka_unit_test(test_ubsrv_params_cache_and_ro),
		cmocka_unit_test(test_ubsrv_params_unmap),
		cmocka_unit_test(test_ubsrv_params_4k_and_limits),
		cmocka_unit_test(test_ubsrv_iod_ops),
		cmocka_unit_test(test_ubsrv_iod_refused),
		cmocka_unit_test(test_ubsrv_iod_4k),
		cmocka_unit_test(test_ubsrv_iod_trusts_nr_sectors),
		cmocka_unit_test(test_ubsrv_record_roundtrip),
		cmocka_unit_test(test_ubsrv_record_malformed),
		cmocka_unit_test(test_ubsrv_ctrl_missing_driver),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
