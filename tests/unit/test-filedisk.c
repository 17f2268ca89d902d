/* SPDX-License-Identifier: MIT */
/*
 * test-filedisk.c: the file and block-device backend (storage/filedisk.c,
 * docs/openvmm-compat.md §4.5 and the backend tests of §7.3):
 * round trips (aligned, unaligned, multi-segment; buffered, O_DIRECT and
 * bounced; FUA on and off), range checks, open-time validation, create=,
 * read-only, flush, punch-hole unmap, write-zeroes, block status on sparse
 * files, the contract suites, the inline transfers (tmpfs, or forced) next to
 * the io_uring ones, and a loop device (as root, skipped otherwise).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>

#include "common/compiler.h"
#include "storage/backends/filedisk.h"
#include "storage/decorators/delay.h"
#include "storage/decorators/prwrap.h"
#include "tests/unit/contract.h"
#include "tests/unit/testproc.h"
#include "tests/unit/testutil.h"

#define PAGE 4096u
#define MIB ((uint64_t)1 << 20)

/* ---- helpers ------------------------------------------------------------ */

static struct disk *open_disk(const char *path, const struct filedisk_opts *o)
{
	char err[256] = "";
	struct disk *d = NULL;
	int r = filedisk_open(path, o, &d, err, sizeof(err));

	if (r < 0)
		fail_msg("filedisk_open(%s): %s (%s)", path, strerror(-r), err);
	assert_non_null(d);
	return d;
}

/* Creates @path anew (unlinked first) with @size bytes and @o's other
 * options, and opens it. */
static struct disk *create_disk(const char *path, uint64_t size, struct filedisk_opts o)
{
	o.create = true;
	o.create_size = size;
	unlink(path);
	return open_disk(path, &o);
}

/* Opens @path expecting failure; returns the error and the message. */
static int open_fail(const char *path, const struct filedisk_opts *o, char *err, size_t errlen)
{
	struct disk *d = NULL;
	int r = filedisk_open(path, o, &d, err, errlen);

	assert_true(r < 0);
	assert_null(d);
	return r;
}

/* Creates (or replaces) a file of @size bytes with no data (sparse). */
static const char *make_file(const char *name, uint64_t size)
{
	const char *path = tu_path(name);
	int f;

	unlink(path);
	f = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(f >= 0);
	assert_int_equal(ftruncate(f, (off_t)size), 0);
	close(f);
	return path;
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* pread of the backing file, bypassing the disk. */
static void file_pread(const char *path, void *buf, size_t len, uint64_t off)
{
	int f = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(f >= 0);
	assert_int_equal(pread(f, buf, len, (off_t)off), (ssize_t)len);
	close(f);
}

static void file_pwrite(const char *path, const void *buf, size_t len, uint64_t off)
{
	int f = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(f >= 0);
	assert_int_equal(pwrite(f, buf, len, (off_t)off), (ssize_t)len);
	close(f);
}

static void *page_alloc(size_t len)
{
	void *p = aligned_alloc(PAGE, ROUND_UP(len, PAGE));

	assert_non_null(p);
	memset(p, 0, ROUND_UP(len, PAGE));
	return p;
}

static int rw_iov(struct disk *d, enum disk_op op, uint64_t sector, const struct iovec *iov,
		  int iovcnt, uint32_t flags)
{
	struct disk_io io = { .op = op, .flags = flags, .sector = sector, .iov = iov,
			      .iovcnt = iovcnt };

	return disk_sync_io(d, &io);
}

/* Fills the segments of @iov as one pattern stream. */
static void iov_fill(const struct iovec *iov, int n, uint64_t tag, uint64_t off)
{
	for (int i = 0; i < n; i++) {
		tu_fill(iov[i].iov_base, iov[i].iov_len, tag, off);
		off += iov[i].iov_len;
	}
}

static void iov_check(const struct iovec *iov, int n, uint64_t tag, uint64_t off)
{
	for (int i = 0; i < n; i++) {
		long bad = tu_check(iov[i].iov_base, iov[i].iov_len, tag, off);

		if (bad >= 0)
			fail_msg("segment %d: bad byte at %ld (stream offset %" PRIu64 ")", i, bad,
				 off + (uint64_t)bad);
		off += iov[i].iov_len;
	}
}

/* ---- round trips ---------------------------------------------------------- */

struct variant {
	const char *name;
	bool direct, always_bounce;
	enum filedisk_rw_mode rw_mode;
};

/* The io_uring variants are forced, so that they stay covered when TMPDIR
 * is a tmpfs (where the default is inline). */
static const struct variant variants[] = {
	{ "buffered", false, false, FILEDISK_RW_URING },
	{ "direct", true, false, FILEDISK_RW_URING },
	{ "bounce", false, true, FILEDISK_RW_URING },
	{ "direct+bounce", true, true, FILEDISK_RW_URING },
	{ "inline", false, false, FILEDISK_RW_INLINE },
	{ "direct+inline", true, false, FILEDISK_RW_INLINE },
	{ "bounce+inline", false, true, FILEDISK_RW_INLINE },
};

static struct filedisk_opts variant_opts(unsigned v)
{
	return (struct filedisk_opts){ .direct = variants[v].direct,
				       .always_bounce = variants[v].always_bounce,
				       .rw_mode = variants[v].rw_mode };
}

/* Writes @iov at @sector with @flags, checks the backing file at the right
 * offset, reads it back through @riov and checks it. */
static void roundtrip(struct disk *d, const char *path, uint64_t sector, const struct iovec *iov,
		      int n, const struct iovec *riov, int rn, uint32_t flags, uint64_t tag)
{
	size_t len = (size_t)iov_length(iov, n);
	uint8_t *check = malloc(len);

	assert_non_null(check);
	iov_fill(iov, n, tag, 0);
	assert_int_equal(rw_iov(d, DISK_OP_WRITE, sector, iov, n, flags), DISK_OK);
	for (int i = 0; i < rn; i++)
		memset(riov[i].iov_base, 0xee, riov[i].iov_len);
	assert_int_equal(rw_iov(d, DISK_OP_READ, sector, riov, rn, 0), DISK_OK);
	iov_check(riov, rn, tag, 0);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	file_pread(path, check, len, sector * disk_sector_size(d));
	assert_int_equal(tu_check(check, len, tag, 0), -1);
	free(check);
}

static void test_filedisk_roundtrip(void **state)
{
	(void)state;
	for (unsigned v = 0; v < ARRAY_SIZE(variants); v++) {
		const char *path = tu_path("rt.img");
		struct disk *d = create_disk(path, 2 * MIB, variant_opts(v));

		assert_int_equal(disk_sector_count(d), 2 * MIB / 512);
		for (uint32_t fua = 0; fua <= DISK_IO_FUA; fua += DISK_IO_FUA) {
			uint64_t tag = v * 16 + fua + 1;
			uint8_t *pages[3], *one, *base, *rbase;
			struct iovec iov[3], riov[3], single, rsingle;

			/* Aligned: one page-aligned buffer of two pages. */
			one = page_alloc(2 * PAGE);
			single = (struct iovec){ one, 2 * PAGE };
			rsingle = (struct iovec){ page_alloc(2 * PAGE), 2 * PAGE };
			roundtrip(d, path, 8, &single, 1, &rsingle, 1, fua, tag);

			/* Aligned page list, read back as a list and as one buffer. */
			for (int i = 0; i < 3; i++) {
				pages[i] = page_alloc(PAGE);
				iov[i] = (struct iovec){ pages[i], PAGE };
				riov[i] = (struct iovec){ page_alloc(PAGE), PAGE };
			}
			roundtrip(d, path, 64, iov, 3, riov, 3, fua, tag + 100);
			free(rsingle.iov_base);
			rsingle = (struct iovec){ page_alloc(3 * PAGE), 3 * PAGE };
			roundtrip(d, path, 72, iov, 3, &rsingle, 1, fua, tag + 200);

			/* Unaligned: 3 pages at a 512-byte offset. */
			base = page_alloc(4 * PAGE);
			rbase = page_alloc(4 * PAGE);
			single = (struct iovec){ base + 512, 3 * PAGE };
			free(rsingle.iov_base);
			rsingle = (struct iovec){ rbase + 512, 3 * PAGE };
			roundtrip(d, path, 128, &single, 1, &rsingle, 1, fua, tag + 300);

			/* Odd segments (not sector multiples, odd addresses). */
			iov[0] = (struct iovec){ base + 1, 1000 };
			iov[1] = (struct iovec){ base + 1003, 24 };
			iov[2] = (struct iovec){ base + 2048 + 7, 3072 };
			riov[0].iov_len = 100;
			riov[1].iov_len = 3000;
			riov[2].iov_len = 996;
			roundtrip(d, path, 1000, iov, 3, riov, 3, fua, tag + 400);
			/* Last sectors of the disk. */
			single = (struct iovec){ base + 512, 3 * PAGE };
			roundtrip(d, path, 2 * MIB / 512 - 24, &single, 1, &rsingle, 1, fua,
				  tag + 500);

			for (int i = 0; i < 3; i++) {
				free(pages[i]);
				free(riov[i].iov_base);
			}
			free(one);
			free(base);
			free(rbase);
		}
		assert_int_equal(file_size(path), 2 * MIB);
		disk_unref(d);
	}
}

/* Many segments: more than IOV_MAX goes through the bounce buffer. */
static void test_filedisk_many_segments(void **state)
{
	const int n = IOV_MAX + 8;
	const char *path = tu_path("segs.img");
	struct iovec *iov = calloc((size_t)n, sizeof(*iov));
	struct iovec rd;
	uint8_t *buf = page_alloc((size_t)n * 512), *rbuf = page_alloc((size_t)n * 512);
	struct disk *d;

	(void)state;
	assert_non_null(iov);
	for (int m = FILEDISK_RW_URING; m <= FILEDISK_RW_INLINE; m++) {
		struct filedisk_opts o = { .rw_mode = (enum filedisk_rw_mode)m };

		d = create_disk(path, 4 * MIB, o);
		for (int i = 0; i < n; i++)
			iov[i] = (struct iovec){ buf + (size_t)(n - 1 - i) * 512, 512 };
		iov_fill(iov, n, 77 + (uint64_t)m, 0);
		assert_int_equal(rw_iov(d, DISK_OP_WRITE, 16, iov, n, 0), DISK_OK);
		memset(rbuf, 0, (size_t)n * 512);
		rd = (struct iovec){ rbuf, (size_t)n * 512 };
		assert_int_equal(rw_iov(d, DISK_OP_READ, 16, &rd, 1, 0), DISK_OK);
		assert_int_equal(tu_check(rbuf, (size_t)n * 512, 77 + (uint64_t)m, 0), -1);
		disk_unref(d);
	}
	free(iov);
	free(buf);
	free(rbuf);
}

/* ---- ranges ------------------------------------------------------------------ */

static void test_filedisk_write_int64_max(void **state)
{
	const char *path = tu_path("max.img");
	struct disk *d = create_disk(path, MIB, (struct filedisk_opts){ 0 });
	uint8_t buf[512];

	(void)state;
	memset(buf, 0xcd, sizeof(buf));
	assert_int_equal(disk_sync_write(d, (uint64_t)INT64_MAX / 512, buf, 512, 0),
			 DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, (uint64_t)INT64_MAX / 512, buf, 512, DISK_IO_FUA),
			 DISK_ILLEGAL_BLOCK);
	assert_int_equal(file_size(path), MIB);
	disk_unref(d);
}

/* §7.3 FileDisk regression: LBA 1 << 55 wraps to byte 0 when shifted. */
static void test_filedisk_lba_wrap_regression(void **state)
{
	const char *path = tu_path("wrap.img");
	struct disk *d = create_disk(path, MIB, (struct filedisk_opts){ 0 });
	uint8_t buf[512];

	(void)state;
	memset(buf, 0xcd, sizeof(buf));
	assert_int_equal(disk_sync_write(d, 0, buf, sizeof(buf), 0), DISK_OK);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 1ull << 55, buf, sizeof(buf)), DISK_ILLEGAL_BLOCK);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_not_equal(buf[i], 0xcd);
	disk_unref(d);
}

static void test_filedisk_contract(void **state)
{
	(void)state;
	for (unsigned v = 0; v < ARRAY_SIZE(variants); v++) {
		const char *path = tu_path("contract.img");
		struct disk *d = create_disk(path, MIB, variant_opts(v));

		contract_disk(d);
		assert_int_equal(file_size(path), MIB);
		disk_unref(d);
	}
}

static void test_filedisk_read_past_end(void **state)
{
	const char *path = make_file("rpe.img", 64 * 512);
	struct filedisk_opts o = { 0 };
	uint8_t buf[2 * 512];
	struct disk *d = open_disk(path, &o);

	(void)state;
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 64, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(d, 63, buf, 1024), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(d, 1000, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(d, 63, buf, 512), DISK_OK);
	assert_true(tu_is_zero(buf, 512));
	/* Zero-length: fine at the end, not beyond it. */
	assert_int_equal(disk_sync_read(d, 64, buf, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 65, buf, 0), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
}

static void test_filedisk_write_past_end_does_not_extend(void **state)
{
	const char *path = make_file("wpe.img", 64 * 512);
	struct filedisk_opts o = { 0 };
	uint8_t buf[2 * 512];
	struct disk *d = open_disk(path, &o);

	(void)state;
	memset(buf, 0x22, sizeof(buf));
	assert_int_equal(disk_sync_write(d, 64, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, 63, buf, 1024, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, 63, buf, 1024, DISK_IO_FUA), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, 1ull << 40, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, 63, 2, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, 63, 2, DISK_IO_NO_UNMAP), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(d, 63, 2, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(file_size(path), 64 * 512);
	/* The last sector itself is writable, and nothing spilled past it. */
	assert_int_equal(disk_sync_write(d, 63, buf, 512, 0), DISK_OK);
	assert_int_equal(disk_sync_write(d, 64, buf, 0, 0), DISK_OK);
	assert_int_equal(file_size(path), 64 * 512);
	disk_unref(d);
}

/* ---- open-time validation -------------------------------------------------------- */

static void test_filedisk_create(void **state)
{
	const char *path = tu_path("create.img");
	struct filedisk_opts o = { .create = true, .create_size = 3 * MIB };
	uint8_t buf[512];
	char err[256];
	struct disk *d;

	(void)state;
	unlink(path);
	d = open_disk(path, &o);
	assert_int_equal(file_size(path), 3 * MIB);
	assert_int_equal(disk_sector_count(d), 3 * MIB / 512);
	assert_string_equal(disk_get_info(d)->type, "file");
	assert_int_equal(disk_get_info(d)->sector_size, 512);
	assert_false(disk_get_info(d)->read_only);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(disk_sync_write(d, 5, buf, sizeof(buf), 0), DISK_OK);
	disk_unref(d);

	/* Without create= an existing file is opened as is: not truncated. */
	o = (struct filedisk_opts){ 0 };
	d = open_disk(path, &o);
	assert_int_equal(disk_sector_count(d), 3 * MIB / 512);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 5, buf, sizeof(buf)), DISK_OK);
	assert_int_equal(buf[0], 0x5a);
	assert_int_equal(buf[511], 0x5a);
	disk_unref(d);
	assert_int_equal(file_size(path), 3 * MIB);

	/* create= replaces an existing file with a fresh one of the new size. */
	o = (struct filedisk_opts){ .create = true, .create_size = MIB };
	d = open_disk(path, &o);
	assert_int_equal(file_size(path), MIB);
	assert_int_equal(disk_sector_count(d), MIB / 512);
	assert_int_equal(disk_sync_read(d, 5, buf, sizeof(buf)), DISK_OK);
	assert_true(tu_is_zero(buf, sizeof(buf)));
	disk_unref(d);

	/* Bad sizes are refused before anything is created. */
	path = tu_path("create-bad.img");
	unlink(path);
	o = (struct filedisk_opts){ .create = true, .create_size = 1000 };
	assert_int_equal(open_fail(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "multiple of 512"));
	assert_int_equal(access(path, F_OK), -1);
	o = (struct filedisk_opts){ .create = true, .create_size = 0 };
	assert_int_equal(open_fail(path, &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);
	o = (struct filedisk_opts){ .create = true, .create_size = MIB, .read_only = true };
	assert_int_equal(open_fail(path, &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_filedisk_missing_file(void **state)
{
	struct filedisk_opts o = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(open_fail(tu_path("does-not-exist.img"), &o, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "does-not-exist.img"));
}

static void test_filedisk_size_not_multiple(void **state)
{
	const char *path = make_file("odd.img", 1000);
	struct filedisk_opts o = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(open_fail(path, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a multiple of 512"));
	o.read_only = true;
	assert_int_equal(open_fail(path, &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(file_size(path), 1000);
}

static void test_filedisk_rejects_dir_fifo_chardev(void **state)
{
	const char *fifo = tu_path("fifo");
	char err[256];

	(void)state;
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	for (int ro = 0; ro <= 1; ro++) {
		struct filedisk_opts o = { .read_only = ro };

		err[0] = '\0';
		assert_int_equal(open_fail(tu_tmpdir(), &o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "not a regular file or block device"));
		/* A FIFO must be refused, not block the open. */
		err[0] = '\0';
		assert_int_equal(open_fail(fifo, &o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "not a regular file or block device"));
		err[0] = '\0';
		assert_int_equal(open_fail("/dev/null", &o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "not a regular file or block device"));
	}
	unlink(fifo);
}

static void test_filedisk_empty_file(void **state)
{
	const char *path = make_file("empty.img", 0);
	struct filedisk_opts o = { 0 };
	uint8_t buf[512];
	struct disk *d = open_disk(path, &o);

	(void)state;
	assert_int_equal(disk_sector_count(d), 0);
	assert_int_equal(disk_sync_read(d, 0, buf, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 0, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, 0, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(file_size(path), 0);
	disk_unref(d);
}

static void test_filedisk_read_only(void **state)
{
	const char *path = make_file("ro.img", 64 * 512);
	struct filedisk_opts o = { .read_only = true };
	uint8_t buf[512], back[512];
	const struct disk_info *info;
	struct disk *d;

	(void)state;
	memset(buf, 0xab, sizeof(buf));
	file_pwrite(path, buf, sizeof(buf), 3 * 512);
	d = open_disk(path, &o);
	info = disk_get_info(d);
	assert_true(info->read_only);
	assert_int_equal(info->unmap_behavior, DISK_UNMAP_IGNORED);
	assert_int_equal(disk_sync_read(d, 3, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, buf, sizeof(buf));
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	/* The disk itself does not refuse (frontends do); the O_RDONLY fd
	 * makes the write fail, and nothing changes. */
	memset(buf, 0x01, sizeof(buf));
	assert_int_not_equal(disk_sync_write(d, 3, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 0, 8, 0), DISK_OK);  /* IGNORED: a no-op */
	assert_int_equal(disk_sync_read(d, 3, back, sizeof(back)), DISK_OK);
	assert_int_equal(back[0], 0xab);
	disk_unref(d);
}

static void test_filedisk_geometry(void **state)
{
	const char *path = make_file("geo.img", MIB);
	struct filedisk_opts o = { 0 };
	const struct disk_info *info;
	struct stat st;
	struct disk *d;

	(void)state;
	assert_int_equal(stat(path, &st), 0);
	d = open_disk(path, &o);
	info = disk_get_info(d);
	assert_string_equal(info->type, "file");
	assert_int_equal(info->sector_size, 512);
	assert_int_equal(info->sector_shift, 9);
	assert_true(IS_POW2(info->physical_sector_size));
	assert_true(info->physical_sector_size >= 512);
	if (IS_POW2(st.st_blksize) && st.st_blksize >= 512 && st.st_blksize <= 65536)
		assert_int_equal(info->physical_sector_size, st.st_blksize);
	assert_false(info->fua_respected);
	assert_false(info->has_disk_id);
	assert_true(info->caps & DISK_CAP_COHERENT);
	assert_true(info->caps & DISK_CAP_VOLATILE_CACHE);
	assert_true(info->caps & DISK_CAP_PERSISTENT);
	assert_true(info->caps & DISK_CAP_BLOCK_STATUS);
	assert_false(info->caps & DISK_CAP_RESIZE);
	if (info->unmap_behavior == DISK_UNMAP_ZEROES)
		assert_int_equal(info->optimal_unmap_sectors, info->physical_sector_size / 512);
	assert_int_equal(disk_watch_resize(d, &(struct disk_resize_watch){ 0 }), -EOPNOTSUPP);
	disk_unref(d);
}

/* filedisk_grow: the file and the live count grow, the new sectors read
 * as zeroes and take writes; shrinking, read-only, limited and non-file
 * disks are refused with the size unchanged. */
static void test_filedisk_grow(void **state)
{
	const char *path = make_file("grow.img", MIB);
	struct filedisk_opts o = { 0 };
	uint8_t buf[512], zero[512] = { 0 };
	struct disk *d, *ro;

	(void)state;
	d = open_disk(path, &o);
	assert_true(filedisk_is_file(d));
	assert_int_equal(filedisk_grow(d, 2 * MIB), 0);
	assert_int_equal(file_size(path), 2 * MIB);
	assert_int_equal(disk_sector_count(d), 2 * MIB / 512);
	assert_int_equal(disk_sync_read(d, 2 * MIB / 512 - 1, buf, 512), DISK_OK);
	assert_memory_equal(buf, zero, 512);
	tu_fill(buf, 512, 7, 0);
	assert_int_equal(disk_sync_write(d, 2 * MIB / 512 - 1, buf, 512, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 2 * MIB / 512, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(filedisk_grow(d, 2 * MIB), 0);           /* same size */
	assert_int_equal(filedisk_grow(d, MIB), -EINVAL);         /* shrink */
	assert_int_equal(filedisk_grow(d, 2 * MIB + 100), -EINVAL);
	assert_int_equal(file_size(path), 2 * MIB);
	o.read_only = true;
	ro = open_disk(path, &o);
	assert_int_equal(filedisk_grow(ro, 4 * MIB), -EROFS);
	disk_unref(ro);
	o.read_only = false;
	o.limit_bytes = MIB;
	ro = open_disk(path, &o);
	assert_int_equal(filedisk_grow(ro, 4 * MIB), -EINVAL);
	disk_unref(ro);
	assert_int_equal(file_size(path), 2 * MIB);
	disk_unref(d);
	assert_false(filedisk_is_file(NULL));
}

/* describe(): path, kind, direct. */
struct desc_state {
	char path[PATH_MAX], kind[32], direct[8], rw[16];
};

static void desc_param(struct disk_describer *dd, const char *key, const char *value)
{
	struct desc_state *s = dd->opaque;

	if (!strcmp(key, "path"))
		snprintf(s->path, sizeof(s->path), "%s", value);
	else if (!strcmp(key, "kind"))
		snprintf(s->kind, sizeof(s->kind), "%s", value);
	else if (!strcmp(key, "direct"))
		snprintf(s->direct, sizeof(s->direct), "%s", value);
	else if (!strcmp(key, "rw"))
		snprintf(s->rw, sizeof(s->rw), "%s", value);
}

static void test_filedisk_describe(void **state)
{
	const char *path = make_file("desc.img", MIB);
	struct filedisk_opts o = { .direct = true };
	struct desc_state s = { .path = "" };
	struct disk_describer dd = { .param = desc_param, .opaque = &s };
	struct disk *d = open_disk(path, &o);

	(void)state;
	disk_describe(d, &dd);
	assert_string_equal(s.path, path);
	assert_string_equal(s.kind, "file");
	assert_string_equal(s.direct, "yes");
	assert_string_equal(s.rw, "io_uring");
	disk_unref(d);
}

/* What describe() says about how @d moves data: "inline" or "io_uring". */
static const char *rw_of(struct disk *d)
{
	static struct desc_state s;
	struct disk_describer dd = { .param = desc_param, .opaque = &s };

	memset(&s, 0, sizeof(s));
	disk_describe(d, &dd);
	return s.rw;
}

/* ---- flush, unmap, write-zeroes, block status ------------------------------------- */

static void test_filedisk_flush(void **state)
{
	const char *path = make_file("flush.img", MIB);
	struct filedisk_opts o = { 0 };
	uint8_t buf[PAGE], back[PAGE];
	struct disk *d = open_disk(path, &o);

	(void)state;
	tu_fill(buf, sizeof(buf), 9, 0);
	assert_int_equal(disk_sync_write(d, 40, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(disk_sync_write(d, 48, buf, sizeof(buf), DISK_IO_FUA), DISK_OK);
	file_pread(path, back, sizeof(back), 40 * 512);
	assert_memory_equal(back, buf, sizeof(buf));
	file_pread(path, back, sizeof(back), 48 * 512);
	assert_memory_equal(back, buf, sizeof(buf));
	disk_unref(d);
}

static void test_filedisk_punch_hole_unmap(void **state)
{
	const char *path = make_file("punch.img", MIB);
	struct filedisk_opts o = { 0 };
	uint8_t *buf = page_alloc(2 * PAGE);
	const struct disk_info *info;
	struct disk *d = open_disk(path, &o);

	(void)state;
	info = disk_get_info(d);
	if (info->unmap_behavior != DISK_UNMAP_ZEROES) {
		fprintf(stderr, "# skip: %s does not support punching holes\n", tu_tmpdir());
		disk_unref(d);
		free(buf);
		skip();
	}
	assert_true(info->optimal_unmap_sectors >= 1);
	memset(buf, 0xcd, 2 * PAGE);
	assert_int_equal(disk_sync_write(d, 0, buf, 2 * PAGE, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 0, PAGE / 512, 0), DISK_OK);
	memset(buf, 0x77, 2 * PAGE);
	assert_int_equal(disk_sync_read(d, 0, buf, 2 * PAGE), DISK_OK);
	assert_true(tu_is_zero(buf, PAGE));
	for (unsigned i = PAGE; i < 2 * PAGE; i++)
		assert_int_equal(buf[i], 0xcd);
	/* Zero-length and boundary unmaps. */
	assert_int_equal(disk_sync_unmap(d, MIB / 512, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, MIB / 512 - 8, 8, DISK_IO_BLOCK_LEVEL_ONLY), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, MIB / 512, 1, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(d, MIB / 512 + 1, 0, 0), DISK_ILLEGAL_BLOCK);
	/* Sub-page unmap still reads back zero (the filesystem zeroes). */
	memset(buf, 0xcd, PAGE);
	assert_int_equal(disk_sync_write(d, 16, buf, PAGE, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 17, 2, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 16, buf, PAGE), DISK_OK);
	for (unsigned i = 0; i < PAGE; i++)
		assert_int_equal(buf[i], i >= 512 && i < 1536 ? 0 : 0xcd);
	assert_int_equal(file_size(path), MIB);
	disk_unref(d);
	free(buf);
}

/* Writes 0xcd to 32 sectors from 64, zeroes [66, 66 + 20) with @flags and
 * checks the result. */
static void check_write_zeroes(struct disk *d, uint32_t flags)
{
	uint8_t *buf = page_alloc(32 * 512);

	memset(buf, 0xcd, 32 * 512);
	assert_int_equal(disk_sync_write(d, 64, buf, 32 * 512, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 66, 20, flags), DISK_OK);
	memset(buf, 0x77, 32 * 512);
	assert_int_equal(disk_sync_read(d, 64, buf, 32 * 512), DISK_OK);
	for (unsigned i = 0; i < 32 * 512; i++) {
		unsigned s = i / 512;

		if (buf[i] != (s >= 2 && s < 22 ? 0 : 0xcd))
			fail_msg("flags %#x: byte %u (sector %u) is %#x", flags, i, 64 + s, buf[i]);
	}
	free(buf);
}

static void test_filedisk_write_zeroes(void **state)
{
	const char *path = make_file("wz.img", MIB);
	struct filedisk_opts o = { 0 };
	struct disk *d = open_disk(path, &o);
	const struct disk_info *info = disk_get_info(d);

	(void)state;
	check_write_zeroes(d, 0);
	check_write_zeroes(d, DISK_IO_NO_UNMAP);
	check_write_zeroes(d, DISK_IO_FUA);
	check_write_zeroes(d, DISK_IO_FUA | DISK_IO_NO_UNMAP);
	if (info->caps & DISK_CAP_FAST_ZERO)
		check_write_zeroes(d, DISK_IO_FAST_ZERO);
	assert_int_equal(disk_sync_write_zeroes(d, 0, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, MIB / 512, 0, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, MIB / 512, 1, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, MIB / 512 - 1, 2, DISK_IO_NO_UNMAP),
			 DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, 0, MIB / 512, DISK_IO_NO_UNMAP), DISK_OK);
	assert_int_equal(file_size(path), MIB);
	disk_unref(d);

	/* A direct, always-bounced disk takes the same paths. */
	o = (struct filedisk_opts){ .direct = true, .always_bounce = true };
	d = open_disk(path, &o);
	check_write_zeroes(d, 0);
	check_write_zeroes(d, DISK_IO_NO_UNMAP);
	disk_unref(d);
}

/* tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: write-zeroes that
 * must not unmap falls back to writing zeroes, or fails UNSUPPORTED when
 * the caller asked for a fast zero. */
static void test_filedisk_write_zeroes_fallback(void **state)
{
	char path[] = "/dev/shm/diskstack-test-filedisk-XXXXXX";
	struct filedisk_opts o = { 0 };
	struct disk *d;
	int f;

	(void)state;
	f = mkstemp(path);
	if (f < 0) {
		fprintf(stderr, "# skip: no /dev/shm\n");
		skip();
	}
	assert_int_equal(ftruncate(f, (off_t)(4 * MIB)), 0);
	close(f);
	d = open_disk(path, &o);
	check_write_zeroes(d, 0);
	check_write_zeroes(d, DISK_IO_NO_UNMAP);   /* learns ZERO_RANGE is missing, if it is */
	check_write_zeroes(d, DISK_IO_NO_UNMAP | DISK_IO_FUA);
	/* More than one step of the fallback (1 MiB). */
	{
		uint8_t *buf = page_alloc(3 * MIB);

		memset(buf, 0xcd, 3 * MIB);
		assert_int_equal(disk_sync_write(d, 0, buf, 3 * MIB, 0), DISK_OK);
		assert_int_equal(disk_sync_write_zeroes(d, 1, 3 * MIB / 512 - 2, DISK_IO_NO_UNMAP),
				 DISK_OK);
		assert_int_equal(disk_sync_read(d, 0, buf, 3 * MIB), DISK_OK);
		for (size_t i = 0; i < 3 * MIB; i++)
			assert_int_equal(buf[i], i < 512 || i >= 3 * MIB - 512 ? 0xcd : 0);
		free(buf);
	}
	/* FAST_ZERO: OK when it can punch, UNSUPPORTED or OK when it must allocate. */
	if (disk_get_info(d)->caps & DISK_CAP_FAST_ZERO)
		check_write_zeroes(d, DISK_IO_FAST_ZERO);
	{
		int st = disk_sync_write_zeroes(d, 8, 8, DISK_IO_FAST_ZERO | DISK_IO_NO_UNMAP);

		assert_true(st == DISK_OK || st == DISK_UNSUPPORTED);
	}
	assert_int_equal(file_size(path), 4 * MIB);
	disk_unref(d);
	unlink(path);
}

static void test_filedisk_block_status(void **state)
{
	const char *path = make_file("sparse.img", MIB);
	struct filedisk_opts o = { 0 };
	struct disk_extent ext[8];
	uint8_t *buf = page_alloc(64 * 1024);
	struct disk *d;
	uint32_t nr = 0;
	int f;

	(void)state;
	f = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(f >= 0);
	if (lseek(f, 0, SEEK_DATA) >= 0 || errno != ENXIO) {
		close(f);
		free(buf);
		fprintf(stderr, "# skip: %s does not report holes\n", tu_tmpdir());
		skip();
	}
	close(f);
	memset(buf, 0xcd, 64 * 1024);
	file_pwrite(path, buf, 64 * 1024, 64 * 1024);
	d = open_disk(path, &o);
	assert_true(disk_get_info(d)->caps & DISK_CAP_BLOCK_STATUS);

	/* Whole disk: hole, data, hole. */
	assert_int_equal(disk_sync_block_status(d, 0, MIB / 512, ext, 8, &nr), DISK_OK);
	assert_int_equal(nr, 3);
	assert_int_equal(ext[0].count, 128);
	assert_int_equal(ext[0].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	assert_int_equal(ext[0].layer, -1);
	assert_int_equal(ext[1].count, 128);
	assert_int_equal(ext[1].flags, 0);
	assert_int_equal(ext[2].count, MIB / 512 - 256);
	assert_int_equal(ext[2].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);

	/* A sub-range that starts in a hole and ends in one. */
	assert_int_equal(disk_sync_block_status(d, 100, 200, ext, 8, &nr), DISK_OK);
	assert_int_equal(nr, 3);
	assert_int_equal(ext[0].count, 28);
	assert_int_equal(ext[1].count, 128);
	assert_int_equal(ext[1].flags, 0);
	assert_int_equal(ext[2].count, 44);

	/* Starting inside data. */
	assert_int_equal(disk_sync_block_status(d, 130, 10, ext, 8, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(ext[0].count, 10);
	assert_int_equal(ext[0].flags, 0);

	/* Room for one extent: a prefix of the range. */
	assert_int_equal(disk_sync_block_status(d, 0, MIB / 512, ext, 1, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(ext[0].count, 128);
	assert_int_equal(ext[0].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);

	/* Range checks. */
	assert_int_equal(disk_sync_block_status(d, MIB / 512, 1, ext, 8, &nr), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_block_status(d, MIB / 512 - 1, 2, ext, 8, &nr),
			 DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_block_status(d, UINT64_MAX, 1, ext, 8, &nr), DISK_ILLEGAL_BLOCK);

	/* Punching the data turns it back into a hole. */
	if (disk_get_info(d)->unmap_behavior == DISK_UNMAP_ZEROES) {
		assert_int_equal(disk_sync_unmap(d, 128, 128, 0), DISK_OK);
		assert_int_equal(disk_sync_block_status(d, 0, MIB / 512, ext, 8, &nr), DISK_OK);
		assert_int_equal(nr, 1);
		assert_int_equal(ext[0].count, MIB / 512);
		assert_int_equal(ext[0].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	}
	disk_unref(d);
	free(buf);
}

/* ---- stacking and threads ------------------------------------------------------- */

/* A decorator that forwards everything: the backend must not confuse
 * io->disk (the top of the stack) with itself. */
static const struct disk_ops passthrough_ops = { .version = DISK_OPS_VERSION };

static void test_filedisk_under_decorator(void **state)
{
	const char *path = make_file("deco.img", MIB);
	struct filedisk_opts o = { .direct = true, .always_bounce = true };
	struct disk *lower = open_disk(path, &o), *top = NULL;
	struct disk_extent ext[4];
	struct disk_info info;
	uint8_t *buf = page_alloc(2 * PAGE);
	uint32_t nr;

	(void)state;
	disk_info_inherit(&info, lower);
	assert_int_equal(disk_new(&passthrough_ops, &info, NULL, lower, &top), 0);
	tu_fill(buf, 2 * PAGE, 21, 0);
	assert_int_equal(disk_sync_write(top, 8, buf, 2 * PAGE, DISK_IO_FUA), DISK_OK);
	memset(buf, 0, 2 * PAGE);
	assert_int_equal(disk_sync_read(top, 8, buf, 2 * PAGE), DISK_OK);
	assert_int_equal(tu_check(buf, 2 * PAGE, 21, 0), -1);
	assert_int_equal(disk_sync_read(top, MIB / 512, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_flush(top), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(top, 8, 8, DISK_IO_NO_UNMAP), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(top, 16, 8, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(top, 0, 8, 0), DISK_OK);
	assert_int_equal(disk_sync_read(top, 8, buf, 2 * PAGE), DISK_OK);
	assert_true(tu_is_zero(buf, 2 * PAGE));
	assert_int_equal(disk_sync_block_status(top, 0, MIB / 512, ext, 4, &nr), DISK_OK);
	assert_true(nr >= 1);
	contract_disk(top);
	disk_unref(top);
	free(buf);
}

/* Several threads, each with its own reactor, share one disk. */
struct thread_arg {
	struct disk *d;
	unsigned index;
	int failures;
};

#define THREAD_OPS 200
#define THREAD_SECTORS 64  /* each thread owns a 32 KiB region */

static void *io_thread(void *p)
{
	struct thread_arg *a = p;
	uint8_t *buf = aligned_alloc(PAGE, 4 * PAGE), *back = aligned_alloc(PAGE, 4 * PAGE);
	uint64_t base = (uint64_t)a->index * THREAD_SECTORS, seed = a->index + 1;
	struct reactor *r = NULL;

	if (!buf || !back || reactor_new(&r, 0) < 0) {
		a->failures++;
		goto out;
	}
	for (unsigned i = 0; i < THREAD_OPS; i++) {
		uint64_t n = 1 + tu_rand(&seed) % 8;
		uint64_t s = base + tu_rand(&seed) % (THREAD_SECTORS - n + 1);
		size_t off = (size_t)(tu_rand(&seed) % 8) * 512;  /* sometimes unaligned */

		tu_fill(buf + off, n * 512, 1000 + a->index, i);
		if (disk_sync_write(a->d, s, buf + off, n * 512, i % 3 ? 0 : DISK_IO_FUA) != DISK_OK)
			a->failures++;
		if (disk_sync_read(a->d, s, back, n * 512) != DISK_OK ||
		    tu_check(back, n * 512, 1000 + a->index, i) >= 0)
			a->failures++;
		if (i % 50 == 0 && disk_sync_flush(a->d) != DISK_OK)
			a->failures++;
	}
out:
	reactor_free(r);
	free(buf);
	free(back);
	return NULL;
}

static void test_filedisk_threads(void **state)
{
	const char *path = make_file("threads.img", MIB);
	struct filedisk_opts o = { .direct = true };
	struct thread_arg args[4];
	pthread_t th[4];
	struct disk *d = open_disk(path, &o);

	(void)state;
	for (unsigned i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ .d = d, .index = i };
		assert_int_equal(pthread_create(&th[i], NULL, io_thread, &args[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
	disk_unref(d);
}

/* ---- inline transfers (tmpfs, ramfs, or forced) ------------------------------------ */

static bool is_tmpfs(const char *dir)
{
	struct statfs sfs;

	return statfs(dir, &sfs) == 0 && (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
}

/* A fresh directory on a tmpfs (/dev/shm, else TMPDIR when it is one), or
 * NULL: the caller skips. Removed with tmpfs_dir_done(). */
static char tmpfs_dir_path[PATH_MAX];

static const char *tmpfs_dir(void)
{
	const char *base = NULL;

	if (is_tmpfs("/dev/shm") && access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	else if (is_tmpfs(tu_path("")))
		base = tu_path("");
	if (!base) {
		fprintf(stderr, "# skip: no tmpfs (neither /dev/shm nor TMPDIR)\n");
		return NULL;
	}
	snprintf(tmpfs_dir_path, sizeof(tmpfs_dir_path), "%s/diskstack-fd.XXXXXX", base);
	assert_non_null(mkdtemp(tmpfs_dir_path));
	return tmpfs_dir_path;
}

static const char *tmpfs_file(const char *dir, const char *name)
{
	static char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static void tmpfs_dir_done(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* The default picks inline for buffered files on tmpfs and io_uring for
 * everything else; rw_mode overrides it both ways. */
static void test_filedisk_inline_choice(void **state)
{
	const char *dir = tmpfs_dir(), *path;
	struct filedisk_opts o = { .create = true, .create_size = MIB };
	struct disk *d;

	(void)state;
	if (!dir)
		skip();
	path = tmpfs_file(dir, "choice.img");
	d = open_disk(path, &o);
	assert_string_equal(rw_of(d), "inline");
	disk_unref(d);
	o.rw_mode = FILEDISK_RW_URING;
	d = open_disk(path, &o);
	assert_string_equal(rw_of(d), "io_uring");
	disk_unref(d);
	/* O_DIRECT (tmpfs has it since Linux 6.6): io_uring. */
	o = (struct filedisk_opts){ .direct = true };
	if (filedisk_open(path, &o, &d, NULL, 0) == 0) {
		assert_string_equal(rw_of(d), "io_uring");
		disk_unref(d);
	}
	tmpfs_dir_done(dir);

	/* Not a tmpfs: io_uring unless forced. */
	if (!is_tmpfs(tu_path(""))) {
		path = make_file("choice.img", MIB);
		o = (struct filedisk_opts){ 0 };
		d = open_disk(path, &o);
		assert_string_equal(rw_of(d), "io_uring");
		disk_unref(d);
	}
	o = (struct filedisk_opts){ .rw_mode = FILEDISK_RW_INLINE };
	d = open_disk(make_file("choice2.img", MIB), &o);
	assert_string_equal(rw_of(d), "inline");
	disk_unref(d);

	/* DISKSTACK_FILE_RW replaces the automatic choice, not a forced one. */
	o = (struct filedisk_opts){ 0 };
	assert_int_equal(setenv("DISKSTACK_FILE_RW", "inline", 1), 0);
	d = open_disk(make_file("choice3.img", MIB), &o);
	assert_string_equal(rw_of(d), "inline");
	disk_unref(d);
	assert_int_equal(setenv("DISKSTACK_FILE_RW", "uring", 1), 0);
	o.rw_mode = FILEDISK_RW_INLINE;
	d = open_disk(make_file("choice3.img", MIB), &o);
	assert_string_equal(rw_of(d), "inline");
	disk_unref(d);
	if ((dir = tmpfs_dir())) {
		o = (struct filedisk_opts){ .create = true, .create_size = MIB };
		d = open_disk(tmpfs_file(dir, "env.img"), &o);
		assert_string_equal(rw_of(d), "io_uring");
		disk_unref(d);
		tmpfs_dir_done(dir);
	}
	assert_int_equal(unsetenv("DISKSTACK_FILE_RW"), 0);
}

static void flag_done(struct disk_io *io)
{
	*(bool *)io->opaque = true;
}

/* The inline path is taken: the data has moved when disk_submit() returns,
 * and the completion still comes on a later pass of the loop. On the ring
 * path nothing has moved yet at that point (the SQE goes out on the next
 * pass). Checked on a tmpfs file with the default mode, and forced. */
static void test_filedisk_inline_taken(void **state)
{
	const char *dir = tmpfs_dir();
	enum filedisk_rw_mode modes[] = { FILEDISK_RW_AUTO, FILEDISK_RW_URING };

	(void)state;
	if (!dir)
		skip();
	for (unsigned m = 0; m < ARRAY_SIZE(modes); m++) {
		const char *path = tmpfs_file(dir, "taken.img");
		struct filedisk_opts o = { .create = true, .create_size = MIB, .rw_mode = modes[m] };
		bool inl = modes[m] == FILEDISK_RW_AUTO;
		uint8_t pat[PAGE], buf[PAGE], back[PAGE];
		struct iovec iov = { buf, sizeof(buf) };
		struct disk_io io;
		bool done = false;
		struct disk *d = open_disk(path, &o);

		assert_string_equal(rw_of(d), inl ? "inline" : "io_uring");
		/* Read. */
		tu_fill(pat, sizeof(pat), 300 + m, 0);
		file_pwrite(path, pat, sizeof(pat), 16 * 512);
		memset(buf, 0, sizeof(buf));
		io = (struct disk_io){ .op = DISK_OP_READ, .sector = 16, .iov = &iov, .iovcnt = 1,
				       .done = flag_done, .opaque = &done };
		disk_submit(d, &io);
		assert_false(done);
		assert_int_equal(memcmp(buf, pat, sizeof(buf)) == 0, inl);
		assert_int_equal(reactor_run_until(tu_reactor(), &done), 0);
		assert_int_equal(io.status, DISK_OK);
		assert_memory_equal(buf, pat, sizeof(buf));
		/* Write, FUA. */
		tu_fill(buf, sizeof(buf), 400 + m, 0);
		done = false;
		io = (struct disk_io){ .op = DISK_OP_WRITE, .flags = DISK_IO_FUA, .sector = 64,
				       .iov = &iov, .iovcnt = 1, .done = flag_done, .opaque = &done };
		disk_submit(d, &io);
		assert_false(done);
		file_pread(path, back, sizeof(back), 64 * 512);
		assert_int_equal(memcmp(back, buf, sizeof(buf)) == 0, inl);
		assert_int_equal(reactor_run_until(tu_reactor(), &done), 0);
		assert_int_equal(io.status, DISK_OK);
		file_pread(path, back, sizeof(back), 64 * 512);
		assert_memory_equal(back, buf, sizeof(buf));
		/* Flush. */
		done = false;
		io = (struct disk_io){ .op = DISK_OP_FLUSH, .done = flag_done, .opaque = &done };
		disk_submit(d, &io);
		assert_false(done);
		assert_int_equal(reactor_run_until(tu_reactor(), &done), 0);
		assert_int_equal(io.status, DISK_OK);
		assert_int_equal(file_size(path), MIB);
		disk_unref(d);
		unlink(path);
	}
	tmpfs_dir_done(dir);
}

/* Round trips and the contract suite on a tmpfs file with the default
 * (inline) mode. */
static void test_filedisk_inline_tmpfs_contract(void **state)
{
	const char *dir = tmpfs_dir(), *path;
	struct filedisk_opts o = { .create = true, .create_size = 2 * MIB };
	uint8_t *one = page_alloc(3 * PAGE), *rone = page_alloc(3 * PAGE);
	struct iovec iov[3], riov[2];
	struct disk *d;

	(void)state;
	if (!dir) {
		free(one);
		free(rone);
		skip();
	}
	path = tmpfs_file(dir, "contract.img");
	d = open_disk(path, &o);
	assert_string_equal(rw_of(d), "inline");
	contract_disk(d);
	/* Odd segments in, other odd segments out, with and without FUA. */
	iov[0] = (struct iovec){ one + 1, 1000 };
	iov[1] = (struct iovec){ one + 1003, 24 };
	iov[2] = (struct iovec){ one + 2048 + 7, 2048 };
	riov[0] = (struct iovec){ rone + 3, 1536 };
	riov[1] = (struct iovec){ rone + 4096 + 5, 1536 };
	roundtrip(d, path, 100, iov, 3, riov, 2, 0, 501);
	roundtrip(d, path, 2 * MIB / 512 - 6, iov, 3, riov, 2, DISK_IO_FUA, 502);
	assert_int_equal(file_size(path), 2 * MIB);
	disk_unref(d);
	free(one);
	free(rone);
	tmpfs_dir_done(dir);
}

/* A file shrunk under the disk: a transfer that comes back short (or
 * empty) is ILLEGAL_BLOCK on both paths, and what could be read was. */
static void test_filedisk_inline_short_transfer(void **state)
{
	(void)state;
	for (int m = FILEDISK_RW_URING; m <= FILEDISK_RW_INLINE; m++) {
		const char *path = make_file("short.img", 64 * 512);
		struct filedisk_opts o = { .rw_mode = (enum filedisk_rw_mode)m };
		uint8_t pat[4 * 512], buf[4 * 512], b1[1000], b2[1048];
		struct iovec riov[2] = { { b1, sizeof(b1) }, { b2, sizeof(b2) } };
		struct disk *d = open_disk(path, &o);
		int f;

		tu_fill(pat, sizeof(pat), 600 + (uint64_t)m, 0);
		file_pwrite(path, pat, sizeof(pat), 30 * 512);
		f = open(path, O_RDWR | O_CLOEXEC);
		assert_true(f >= 0);
		assert_int_equal(ftruncate(f, 32 * 512), 0);
		close(f);
		/* Entirely past the new end: nothing comes back. */
		assert_int_equal(disk_sync_read(d, 40, buf, 512), DISK_ILLEGAL_BLOCK);
		/* Straddling it, into one buffer and into two segments. */
		memset(buf, 0, sizeof(buf));
		assert_int_equal(disk_sync_read(d, 30, buf, sizeof(buf)), DISK_ILLEGAL_BLOCK);
		assert_memory_equal(buf, pat, 2 * 512);
		memset(b1, 0, sizeof(b1));
		memset(b2, 0, sizeof(b2));
		assert_int_equal(rw_iov(d, DISK_OP_READ, 30, riov, 2, 0), DISK_ILLEGAL_BLOCK);
		assert_memory_equal(b1, pat, sizeof(b1));
		assert_memory_equal(b2, pat + sizeof(b1), 2 * 512 - sizeof(b1));
		/* Within the new end: fine. */
		assert_int_equal(disk_sync_read(d, 30, buf, 2 * 512), DISK_OK);
		assert_memory_equal(buf, pat, 2 * 512);
		disk_unref(d);
	}
}

/* A failing syscall maps to the same status and errno on both paths: a
 * write on a read-only disk (O_RDONLY fd) is EBADF, and nothing changes. */
static void test_filedisk_inline_errors(void **state)
{
	(void)state;
	for (int m = FILEDISK_RW_URING; m <= FILEDISK_RW_INLINE; m++) {
		const char *path = make_file("err.img", 64 * 512);
		struct filedisk_opts o = { .read_only = true, .rw_mode = (enum filedisk_rw_mode)m };
		uint8_t buf[512], back[512];
		struct iovec iov = { buf, sizeof(buf) };
		struct disk_io io = { .op = DISK_OP_WRITE, .sector = 3, .iov = &iov, .iovcnt = 1 };
		struct disk *d = open_disk(path, &o);

		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
		assert_int_equal(io.os_errno, EBADF);
		io = (struct disk_io){ .op = DISK_OP_WRITE, .flags = DISK_IO_FUA, .sector = 3,
				       .iov = &iov, .iovcnt = 1 };
		assert_int_equal(disk_sync_io(d, &io), DISK_IO_ERROR);
		assert_int_equal(disk_sync_read(d, 3, back, sizeof(back)), DISK_OK);
		assert_true(tu_is_zero(back, sizeof(back)));
		disk_unref(d);
	}
}

/* ---- pipe transfers (DISK_IO_PIPE) ------------------------------------------------ */

/* Reads @len bytes out of pipe @fd (they must be there). */
static void pipe_take(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		assert_true(n > 0);
		got += (size_t)n;
	}
}

static int pipe_io(struct disk *d, enum disk_op op, uint64_t sector, uint64_t count, int fd,
		   uint32_t flags)
{
	struct disk_io io = { .op = op, .flags = DISK_IO_PIPE | flags, .sector = sector,
			      .count = count, .pipe_fd = fd };

	return disk_sync_io(d, &io);
}

/* A READ into a pipe and a WRITE out of one, on the ring and inline, on a
 * file here and in tmpfs: the bytes are the file's, at unaligned offsets
 * too; FUA; the checks of the dispatcher (range, read-only); a pipe too
 * small for a READ or short of a WRITE's bytes fails at once instead of
 * waiting; a decorator that does not take pipes refuses them
 * (UNSUPPORTED: the caller's cue to use memory), prwrap passes them on;
 * ';direct' offers no pipes. */
static void test_filedisk_pipe(void **state)
{
	(void)state;
	for (int where = 0; where < 2; where++) {
		char shm[] = "/dev/shm/diskstack-test-filedisk-pipe-XXXXXX";
		const char *path;

		if (where == 1) {
			int f = mkstemp(shm);

			if (f < 0)
				continue;               /* no /dev/shm */
			close(f);
			path = shm;
			assert_int_equal(truncate(path, 0), 0);
		} else {
			path = tu_path("pipe.img");
		}
		for (int m = FILEDISK_RW_URING; m <= FILEDISK_RW_INLINE; m++) {
			struct filedisk_opts o = { .rw_mode = (enum filedisk_rw_mode)m };
			struct disk *d = create_disk(path, 4 * MIB, o), *pr = NULL, *dl = NULL;
			size_t len = 256 * 1024 + 512;
			uint8_t *data = malloc(len), *back = malloc(len);
			int p[2];

			assert_true(disk_get_info(d)->caps & DISK_CAP_PIPE);
			assert_int_equal(pipe(p), 0);
			assert_true(fcntl(p[1], F_SETPIPE_SZ, (int)MIB) >= (int)MIB);
			tu_fill(data, len, 7 + (unsigned)m, 0);
			/* WRITE from the pipe at sector 9 (not page-aligned), FUA. */
			assert_int_equal(write(p[1], data, len), (ssize_t)len);
			assert_int_equal(pipe_io(d, DISK_OP_WRITE, 9, len / 512, p[0], DISK_IO_FUA),
					 DISK_OK);
			assert_int_equal(disk_sync_read(d, 9, back, len), DISK_OK);
			assert_memory_equal(back, data, len);
			/* READ into the pipe: the same bytes come out. */
			memset(back, 0, len);
			assert_int_equal(pipe_io(d, DISK_OP_READ, 9, len / 512, p[1], 0), DISK_OK);
			pipe_take(p[0], back, len);
			assert_memory_equal(back, data, len);
			/* Past the end, and empty. */
			assert_int_equal(pipe_io(d, DISK_OP_READ, 8192 - 8, 16, p[1], 0),
					 DISK_ILLEGAL_BLOCK);
			assert_int_equal(pipe_io(d, DISK_OP_READ, 8, 0, p[1], 0), DISK_OK);
			/* A WRITE whose bytes are not all in the pipe. */
			assert_int_equal(write(p[1], data, 4096), 4096);
			assert_int_equal(pipe_io(d, DISK_OP_WRITE, 100, 16, p[0], 0),
					 DISK_INVALID_INPUT);
			/* A READ larger than the pipe: refused, not stuck. */
			assert_true(fcntl(p[1], F_SETPIPE_SZ, 65536) >= 65536);
			{
				int held = 0;

				/* Empty the pipe of what the failed write left. */
				while (ioctl(p[0], FIONREAD, &held) == 0 && held > 0)
					pipe_take(p[0], back, (size_t)MIN(held, (int)len));
			}
			assert_int_equal(pipe_io(d, DISK_OP_READ, 0, 2 * MIB / 512, p[1], 0),
					 DISK_INVALID_INPUT);
			close(p[0]);
			close(p[1]);
			assert_int_equal(pipe(p), 0);
			/* Not a pipe at all: an error, not a crash. */
			assert_int_not_equal(pipe_io(d, DISK_OP_READ, 0, 8, -1, 0), DISK_OK);

			/* prwrap passes pipes on; a decorator that does not
			 * (delay) refuses them with UNSUPPORTED. */
			assert_int_equal(prwrap_new(disk_ref(d), &pr), 0);
			assert_true(disk_get_info(pr)->caps & DISK_CAP_PIPE);
			assert_int_equal(pipe_io(pr, DISK_OP_READ, 9, 8, p[1], 0), DISK_OK);
			pipe_take(p[0], back, 4096);
			assert_memory_equal(back, data, 4096);
			assert_int_equal(delay_new(0, 0, disk_ref(d), &dl, NULL, 0), 0);
			assert_false(disk_get_info(dl)->caps & DISK_CAP_PIPE);
			assert_int_equal(pipe_io(dl, DISK_OP_READ, 9, 8, p[1], 0), DISK_UNSUPPORTED);
			disk_unref(dl);
			disk_unref(pr);
			close(p[0]);
			close(p[1]);
			free(data);
			free(back);
			disk_unref(d);
		}
		if (where == 1)
			unlink(shm);
	}
	{
		struct filedisk_opts o = { .direct = true };
		struct disk *d = create_disk(tu_path("pipe-direct.img"), MIB, o);

		assert_false(disk_get_info(d)->caps & DISK_CAP_PIPE);
		disk_unref(d);
	}
}

/* ---- a loop device ---------------------------------------------------------------- */

struct loopdev {
	struct tu_loop lo;
	char part[80];          /* /dev/loopNp1 added with partx, "" if none */
	char mnt[PATH_MAX];     /* where a filesystem on it is mounted, "" if not */
	char backing[PATH_MAX];
};

/* Attaches @backing as a loop device with @sector_size. Skips the test when
 * that is impossible (not root, no losetup, no loop driver). */
static void loop_attach(struct loopdev *l, const char *backing, unsigned sector_size)
{
	l->part[0] = '\0';
	l->mnt[0] = '\0';
	snprintf(l->backing, sizeof(l->backing), "%s", backing);
	tu_loop_attach(&l->lo, backing, sector_size);
}

static void loop_detach(struct loopdev *l)
{
	char cmd[256];

	if (l->mnt[0]) {
		char ucmd[PATH_MAX + 32];

		snprintf(ucmd, sizeof(ucmd), "umount '%s' 2>/dev/null", l->mnt);
		if (tp_run_line(ucmd, NULL, 0) != 0)
			fprintf(stderr, "warning: umount %s failed\n", l->mnt);
		l->mnt[0] = '\0';
	}
	if (l->part[0]) {
		snprintf(cmd, sizeof(cmd), "partx -d '%s' >/dev/null 2>&1", l->lo.dev);
		tp_run_line(cmd, NULL, 0);
		l->part[0] = '\0';
	}
	tu_loop_detach(&l->lo);
}

static int loop_setup(void **state)
{
	static struct loopdev l;

	tu_reactor();
	memset(&l, 0, sizeof(l));
	l.lo.hold = -1;
	*state = &l;
	return 0;
}

static int loop_teardown(void **state)
{
	loop_detach(*state);
	return 0;
}

static uint64_t sysfs_u64(const char *dev, const char *rel)
{
	char path[256], buf[64] = "";
	struct stat st;
	FILE *f;

	assert_int_equal(stat(dev, &st), 0);
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(st.st_rdev),
		 minor(st.st_rdev), rel);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	return strtoull(buf, NULL, 10);
}

static void loop_device_checks(struct loopdev *l, unsigned ss, bool direct)
{
	struct filedisk_opts o = { .direct = direct };
	const uint64_t size = 8 * MIB;
	const struct disk_info *info;
	uint8_t *buf = page_alloc(4 * PAGE), *check = page_alloc(4 * PAGE);
	uint64_t gran;
	struct disk *d;
	struct iovec iov, riov;

	d = open_disk(l->lo.dev, &o);
	info = disk_get_info(d);
	assert_string_equal(info->type, "block_device");
	assert_int_equal(info->sector_size, ss);
	assert_int_equal(info->physical_sector_size,
			 MAX(sysfs_u64(l->lo.dev, "queue/physical_block_size"), (uint64_t)ss));
	assert_int_equal(disk_sector_count(d), size / ss);
	assert_int_equal(info->fua_respected, sysfs_u64(l->lo.dev, "queue/fua") != 0);
	assert_false(info->read_only);
	assert_false(info->caps & DISK_CAP_BLOCK_STATUS);
	assert_true(info->caps & DISK_CAP_PERSISTENT);
	gran = sysfs_u64(l->lo.dev, "queue/discard_max_bytes") ?
	       sysfs_u64(l->lo.dev, "queue/discard_granularity") : 0;
	if (gran) {
		assert_int_equal(info->unmap_behavior, DISK_UNMAP_UNSPECIFIED);
		assert_int_equal(info->optimal_unmap_sectors, MAX(gran / ss, (uint64_t)1));
	} else {
		assert_int_equal(info->unmap_behavior, DISK_UNMAP_IGNORED);
	}

	/* Round trips, FUA on and off, aligned and unaligned. */
	for (uint32_t fua = 0; fua <= DISK_IO_FUA; fua += DISK_IO_FUA) {
		iov = (struct iovec){ buf, 2 * PAGE };
		riov = (struct iovec){ check, 2 * PAGE };
		roundtrip(d, l->backing, 16 * 4096 / 512, &iov, 1, &riov, 1, fua, 1 + fua);
		iov = (struct iovec){ buf + 512, 3 * PAGE };
		riov = (struct iovec){ check + 512, 3 * PAGE };
		roundtrip(d, l->backing, 32 * 4096 / 512, &iov, 1, &riov, 1, fua, 3 + fua);
	}
	/* The last sector, and past the end. */
	tu_fill(buf, ss, 5, 0);
	assert_int_equal(disk_sync_write(d, size / ss - 1, buf, ss, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, size / ss - 1, check, ss), DISK_OK);
	assert_int_equal(tu_check(check, ss, 5, 0), -1);
	assert_int_equal(disk_sync_read(d, size / ss, check, ss), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(d, size / ss - 1, check, 2 * ss), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, size / ss, buf, ss, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, (uint64_t)INT64_MAX / ss, buf, ss, 0),
			 DISK_ILLEGAL_BLOCK);

	/* Discard: succeeds (contents unspecified), range-checked. */
	assert_int_equal(disk_sync_unmap(d, 0, 4 * PAGE / ss, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 0, size / ss, 0), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, size / ss, 1, 0), DISK_ILLEGAL_BLOCK);

	/* Write-zeroes (BLKZEROOUT). */
	memset(buf, 0xcd, 4 * PAGE);
	assert_int_equal(disk_sync_write(d, 0, buf, 4 * PAGE, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, PAGE / ss, PAGE / ss, 0), DISK_OK);
	assert_int_equal(disk_sync_write_zeroes(d, 2 * PAGE / ss, PAGE / ss,
						DISK_IO_NO_UNMAP | DISK_IO_FUA), DISK_OK);
	assert_int_equal(disk_sync_read(d, 0, check, 4 * PAGE), DISK_OK);
	for (unsigned i = 0; i < 4 * PAGE; i++)
		assert_int_equal(check[i], i >= PAGE && i < 3 * PAGE ? 0 : 0xcd);
	assert_int_equal(disk_sync_write_zeroes(d, size / ss - 1, 2, 0), DISK_ILLEGAL_BLOCK);

	contract_disk(d);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(file_size(l->backing), size);
	disk_unref(d);
	free(buf);
	free(check);
}

static void test_filedisk_loop_device(void **state)
{
	struct loopdev *l = *state;
	const char *backing = make_file("loop512.img", 8 * MIB);
	struct filedisk_opts o = { .create = true, .create_size = MIB };
	char err[256];

	loop_attach(l, backing, 512);
	loop_device_checks(l, 512, false);
	loop_device_checks(l, 512, true);
	/* create= refuses a block device. */
	assert_int_equal(open_fail(l->lo.dev, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "regular file"));
	/* A read-only device open reports it and ignores unmap. */
	o = (struct filedisk_opts){ .read_only = true };
	{
		struct disk *d = open_disk(l->lo.dev, &o);

		assert_true(disk_get_info(d)->read_only);
		assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_IGNORED);
		contract_disk(d);
		disk_unref(d);
	}
	loop_detach(l);
}

static void test_filedisk_loop_device_4k(void **state)
{
	struct loopdev *l = *state;
	const char *backing = make_file("loop4k.img", 8 * MIB);

	loop_attach(l, backing, 4096);
	loop_device_checks(l, 4096, false);
	loop_device_checks(l, 4096, true);
	loop_detach(l);
}

/* A partition: geometry from the parent's queue/, size from its own size. */
static void test_filedisk_loop_partition(void **state)
{
	struct loopdev *l = *state;
	const char *backing = make_file("looppart.img", 8 * MIB);
	const uint32_t start = 2048, nsec = 8192;
	uint8_t mbr[512] = { 0 }, buf[512], back[512];
	struct filedisk_opts o = { 0 };
	char cmd[256];
	struct disk *d;

	/* One MBR partition of type 0x83 at [2048, 2048 + 8192). */
	mbr[446 + 4] = 0x83;
	memcpy(&mbr[446 + 8], &start, 4);
	memcpy(&mbr[446 + 12], &nsec, 4);
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	file_pwrite(backing, mbr, sizeof(mbr), 0);
	loop_attach(l, backing, 512);
	snprintf(l->part, sizeof(l->part), "%sp1", l->lo.dev);
	for (int i = 0; i < 100 && access(l->part, F_OK) != 0; i++) {
		if (i == 0) {
			snprintf(cmd, sizeof(cmd), "partx -a '%s' >/dev/null 2>&1", l->lo.dev);
			tp_run_line(cmd, NULL, 0);
		}
		usleep(20 * 1000);
	}
	if (access(l->part, F_OK) != 0) {
		fprintf(stderr, "# skip: %s did not appear (no partx?)\n", l->part);
		loop_detach(l);
		skip();
	}
	d = open_disk(l->part, &o);
	assert_int_equal(disk_get_info(d)->sector_size, 512);
	assert_int_equal(disk_sector_count(d), nsec);
	assert_int_equal(disk_get_info(d)->unmap_behavior,
			 sysfs_u64(l->lo.dev, "queue/discard_max_bytes") &&
			 sysfs_u64(l->lo.dev, "queue/discard_granularity") ?
			 DISK_UNMAP_UNSPECIFIED : DISK_UNMAP_IGNORED);
	tu_fill(buf, sizeof(buf), 42, 0);
	assert_int_equal(disk_sync_write(d, 0, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	file_pread(backing, back, sizeof(back), (uint64_t)start * 512);
	assert_memory_equal(back, buf, sizeof(buf));
	assert_int_equal(disk_sync_read(d, nsec, back, sizeof(back)), DISK_ILLEGAL_BLOCK);
	contract_disk(d);
	disk_unref(d);
	loop_detach(l);
}

/* O_DIRECT on a filesystem that wants 4 KiB-aligned direct I/O (ext4 on a
 * 4Kn loop device): requests not aligned to 4 KiB go through the buffered
 * fd and still land in the right place. */
static void test_filedisk_direct_on_4k_filesystem(void **state)
{
	struct loopdev *l = *state;
	const char *backing = make_file("fs4k.img", 16 * MIB);
	const char *mnt = tu_path("mnt4k");
	struct filedisk_opts o = { .create = true, .create_size = MIB, .direct = true };
	char cmd[PATH_MAX + 128], file[PATH_MAX + 16];
	uint8_t *buf = page_alloc(4 * PAGE), *back = page_alloc(4 * PAGE);
	struct iovec iov[2], riov;
	struct disk *d;

	loop_attach(l, backing, 4096);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F '%s' >/dev/null 2>&1", l->lo.dev);
	if (tp_run_line(cmd, NULL, 0) != 0) {
		fprintf(stderr, "# skip: mkfs.ext4 failed or is missing\n");
		free(buf);
		free(back);
		loop_detach(l);
		skip();
	}
	mkdir(mnt, 0700);
	snprintf(cmd, sizeof(cmd), "mount '%s' '%s' 2>/dev/null", l->lo.dev, mnt);
	if (tp_run_line(cmd, NULL, 0) != 0) {
		fprintf(stderr, "# skip: cannot mount ext4\n");
		free(buf);
		free(back);
		loop_detach(l);
		skip();
	}
	snprintf(l->mnt, sizeof(l->mnt), "%s", mnt);
	snprintf(file, sizeof(file), "%s/disk.img", mnt);
	d = open_disk(file, &o);
	assert_int_equal(disk_get_info(d)->sector_size, 512);

	/* Unaligned offsets and lengths (sector 1, 3 sectors), aligned ones,
	 * and odd memory, each checked in the file itself. */
	for (uint32_t fua = 0; fua <= DISK_IO_FUA; fua += DISK_IO_FUA) {
		iov[0] = (struct iovec){ buf, 3 * 512 };
		riov = (struct iovec){ back, 3 * 512 };
		roundtrip(d, file, 1, iov, 1, &riov, 1, fua, 11 + fua);
		iov[0] = (struct iovec){ buf, 2 * PAGE };
		riov = (struct iovec){ back, 2 * PAGE };
		roundtrip(d, file, 64, iov, 1, &riov, 1, fua, 13 + fua);
		iov[0] = (struct iovec){ buf + 512, PAGE };
		iov[1] = (struct iovec){ buf + 3 * PAGE, 512 };
		riov = (struct iovec){ back + 7, PAGE + 512 };
		roundtrip(d, file, 125, iov, 2, &riov, 1, fua, 15 + fua);
		iov[0] = (struct iovec){ buf + 512, 2 * PAGE };
		riov = (struct iovec){ back + 512, 2 * PAGE };
		roundtrip(d, file, 256, iov, 1, &riov, 1, fua, 17 + fua);
	}
	/* A 4 KiB-aligned read sees what an unaligned write put there. */
	tu_fill(buf, 512, 19, 0);
	assert_int_equal(disk_sync_write(d, 9, buf, 512, 0), DISK_OK);
	assert_int_equal(disk_sync_read(d, 8, back, PAGE), DISK_OK);
	assert_int_equal(tu_check(back + 512, 512, 19, 0), -1);
	check_write_zeroes(d, DISK_IO_NO_UNMAP);
	contract_disk(d);
	disk_unref(d);
	free(buf);
	free(back);
	loop_detach(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filedisk_roundtrip),
		cmocka_unit_test(test_filedisk_many_segments),
		cmocka_unit_test(test_filedisk_write_int64_max),
		cmocka_unit_test(test_filedisk_lba_wrap_regression),
		cmocka_unit_test(test_filedisk_contract),
		cmocka_unit_test(test_filedisk_read_past_end),
		cmocka_unit_test(test_filedisk_write_past_end_does_not_extend),
		cmocka_unit_test(test_filedisk_create),
		cmocka_unit_test(test_filedisk_missing_file),
		cmocka_unit_test(test_filedisk_size_not_multiple),
		cmocka_unit_test(test_filedisk_rejects_dir_fifo_chardev),
		cmocka_unit_test(test_filedisk_empty_file),
		cmocka_unit_test(test_filedisk_read_only),
		cmocka_unit_test(test_filedisk_geometry),
		cmocka_unit_test(test_filedisk_grow),
		cmocka_unit_test(test_filedisk_describe),
		cmocka_unit_test(test_filedisk_flush),
		cmocka_unit_test(test_filedisk_punch_hole_unmap),
		cmocka_unit_test(test_filedisk_write_zeroes),
		cmocka_unit_test(test_filedisk_write_zeroes_fallback),
		cmocka_unit_test(test_filedisk_block_status),
		cmocka_unit_test(test_filedisk_under_decorator),
		cmocka_unit_test(test_filedisk_threads),
		cmocka_unit_test(test_filedisk_inline_choice),
		cmocka_unit_test(test_filedisk_inline_taken),
		cmocka_unit_test(test_filedisk_inline_tmpfs_contract),
		cmocka_unit_test(test_filedisk_inline_short_transfer),
		cmocka_unit_test(test_filedisk_inline_errors),
		cmocka_unit_test(test_filedisk_pipe),
		cmocka_unit_test_setup_teardown(test_filedisk_loop_device, loop_setup,
						loop_teardown),
		cmocka_unit_test_setup_teardown(test_filedisk_loop_device_4k, loop_setup,
						loop_teardown),
		cmocka_unit_test_setup_teardown(test_filedisk_loop_partition, loop_setup,
						loop_teardown),
		cmocka_unit_test_setup_teardown(test_filedisk_direct_on_4k_filesystem, loop_setup,
						loop_teardown),
	};

	return cmocka_run_group_tests_name("filedisk", tests, tu_reactor_setup, tu_reactor_teardown);
}
