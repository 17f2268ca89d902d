/* SPDX-License-Identifier: MIT */
/*
 * test-vhd1.c: unit tests of fixed VHD files (storage/vhd1.c,
 * docs/openvmm-compat.md §4.6, §7.3): the counting-words test,
 * the footer hidden behind ILLEGAL_BLOCK, every open check in its order,
 * the footer written on create, the disk metadata and the contract suites.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "common/endian.h"
#include "storage/disk.h"
#include "storage/spec.h"
#include "storage/backends/vhd1.h"
#include "tests/unit/contract.h"
#include "tests/unit/testutil.h"

#define MiB (1024ull * 1024)

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* Writes @data_len bytes of counting u32 words (little-endian, as a raw
 * disk image holds them) and then @footer (if not NULL) to @path. */
static void write_image(const char *path, uint64_t data_len, const uint8_t *footer)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	uint32_t words[1024];

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < data_len; off += sizeof(words)) {
		for (unsigned i = 0; i < 1024; i++)
			words[i] = (uint32_t)(off / 4 + i);
		assert_int_equal(pwrite(fd, words, MIN(sizeof(words), data_len - off), (off_t)off),
				 (ssize_t)MIN(sizeof(words), data_len - off));
	}
	if (footer)
		assert_int_equal(pwrite(fd, footer, 512, (off_t)data_len), 512);
	close(fd);
}

static struct disk *open_vhd(const char *path, bool ro)
{
	struct vhd1_opts o = { .read_only = ro };
	struct disk *d = NULL;
	char err[512] = "";
	int r = vhd1_open(path, &o, &d, err, sizeof(err));

	if (r)
		print_error("vhd1_open(%s): %s\n", path, err);
	assert_int_equal(r, 0);
	return d;
}

static void open_fails(const char *path, int want, const char *part)
{
	struct vhd1_opts o = { 0 };
	struct disk *d = NULL;
	char err[512] = "";
	int r = vhd1_open(path, &o, &d, err, sizeof(err));

	if (r != want || !strstr(err, part))
		print_error("vhd1_open: %d '%s'; want %d '%s'\n", r, err, want, part);
	assert_int_equal(r, want);
	assert_null(d);
	assert_non_null(strstr(err, part));
}

static const uint8_t test_guid[16] = { 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0x4c, 0xfe,
				       0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };

/* §7.3: a 4 MiB file of counting u32 words plus a fixed footer; sector 1000
 * holds words 128000..128127. */
static void test_vhd1_counting_words(void **state)
{
	const char *p = tu_path("count.vhd");
	uint8_t footer[512];
	uint32_t sector[128];
	struct disk *d;
	const struct disk_info *info;

	(void)state;
	assert_int_equal(vhd1_make_footer(4 * MiB, test_guid, footer), 0);
	write_image(p, 4 * MiB, footer);
	d = open_vhd(p, false);
	info = disk_get_info(d);
	assert_string_equal(info->type, "vhd1");
	assert_int_equal(info->sector_size, 512);
	assert_int_equal(info->physical_sector_size, 512);
	assert_int_equal(disk_sector_count(d), 8192);
	assert_true(info->has_disk_id);
	assert_memory_equal(info->disk_id, test_guid, 16);
	assert_false(info->fua_respected);
	assert_int_equal(info->unmap_behavior, DISK_UNMAP_IGNORED);
	assert_int_equal(disk_sync_read(d, 1000, sector, 512), DISK_OK);
	for (unsigned i = 0; i < 128; i++)
		assert_int_equal(sector[i], 128000 + i);
	disk_unref(d);
	unlink(p);
}

/* The footer is never readable or writable through the disk. */
static void test_vhd1_footer_hidden(void **state)
{
	const char *p = tu_path("hidden.vhd");
	uint8_t footer[512], buf[1024], after[512];
	struct disk *d;
	int fd;

	(void)state;
	assert_int_equal(vhd1_make_footer(1 * MiB, NULL, footer), 0);
	write_image(p, 1 * MiB, footer);
	d = open_vhd(p, false);
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(disk_sync_read(d, 2048, buf, 512), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_read(d, 2047, buf, 1024), DISK_ILLEGAL_BLOCK);
	assert_null(memmem(buf, sizeof(buf), "conectix", 8));
	assert_int_equal(disk_sync_write(d, 2048, buf, 512, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write(d, 2047, buf, 1024, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_write_zeroes(d, 2047, 2, 0), DISK_ILLEGAL_BLOCK);
	/* Unmap is ignored but still range-checked. */
	assert_int_equal(disk_sync_unmap(d, 2048, 1, 0), DISK_ILLEGAL_BLOCK);
	assert_int_equal(disk_sync_unmap(d, 0, 2048, 0), DISK_OK);
	/* The last data sector works. */
	assert_int_equal(disk_sync_write(d, 2047, buf, 512, 0), DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	contract_disk(d);
	disk_unref(d);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, after, 512, (off_t)MiB), 512);
	close(fd);
	assert_memory_equal(after, footer, 512);
	/* Still a valid VHD; the data written is there. */
	d = open_vhd(p, true);
	assert_true(disk_get_info(d)->read_only);
	contract_disk(d);
	assert_int_equal(disk_sync_read(d, 2047, buf, 512), DISK_OK);
	assert_int_equal(buf[0], 0xab);
	disk_unref(d);
	unlink(p);
}

/* A smaller current_size than the file: the tail is not part of the disk. */
static void test_vhd1_short_current_size(void **state)
{
	const char *p = tu_path("short.vhd");
	uint8_t footer[512], buf[512];
	struct disk *d;

	(void)state;
	assert_int_equal(vhd1_make_footer(64 * 1024, test_guid, footer), 0);
	write_image(p, 128 * 1024, footer);
	d = open_vhd(p, false);
	assert_int_equal(disk_sector_count(d), 128);
	assert_int_equal(disk_sync_read(d, 127, buf, 512), DISK_OK);
	assert_int_equal(disk_sync_read(d, 128, buf, 512), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
	unlink(p);
}

/* Writes 64 KiB of data and @f as its footer, with @f's checksum set
 * first: an image that fails (or passes) on what @f says, not on the
 * checksum. */
static void write_sealed(const char *path, uint8_t *f)
{
	put_be32(f + 64, vhdfooter_checksum(f));
	write_image(path, 64 * 1024, f);
}

/* §4.6: every open check, in order, with its message. */
static void test_vhd1_open_errors(void **state)
{
	const char *p = tu_path("bad.vhd");
	uint8_t good[512], f[512];

	(void)state;
	assert_int_equal(vhd1_make_footer(64 * 1024, test_guid, good), 0);

	/* 1. File size. */
	write_image(p, 100, NULL);
	open_fails(p, -EINVAL, "invalid VHD file size 100");
	write_image(p, 64 * 1024 + 100, NULL);
	open_fails(p, -EINVAL, "invalid VHD file size");
	write_image(p, 0, NULL);
	open_fails(p, -EINVAL, "invalid VHD file size 0");

	/* 2. Cookie (checked before the checksum, which is also wrong). */
	memcpy(f, good, 512);
	memcpy(f, "conectiy", 8);
	write_image(p, 64 * 1024, f);
	open_fails(p, -EINVAL, "invalid VHD footer cookie");
	write_image(p, 64 * 1024, NULL);   /* a raw image, no footer */
	open_fails(p, -EINVAL, "invalid VHD footer cookie");

	/* 3. Checksum (before the version, which is also wrong). */
	memcpy(f, good, 512);
	put_be32(f + 12, 0x00020000);
	write_image(p, 64 * 1024, f);
	open_fails(p, -EINVAL, "invalid VHD footer checksum");

	/* 4. Version (with a right checksum, before the type check). */
	put_be32(f + 60, 3);
	write_sealed(p, f);
	open_fails(p, -EINVAL, "unsupported VHD version 0x00020000");

	/* 5. Not fixed: dynamic, differencing. */
	memcpy(f, good, 512);
	put_be32(f + 60, 3);
	put_be64(f + 48, UINT64_MAX);   /* would fail check 6 too */
	write_sealed(p, f);
	open_fails(p, -ENOTSUP, "non-fixed VHD not supported");
	open_fails(p, -ENOTSUP, "dynamic");
	put_be32(f + 60, 4);
	write_sealed(p, f);
	open_fails(p, -ENOTSUP, "differencing");

	/* 6. current_size: too large, not a multiple of 512, zero. */
	memcpy(f, good, 512);
	put_be64(f + 48, 64 * 1024 + 512);
	write_sealed(p, f);
	open_fails(p, -EINVAL, "invalid VHD disk size 66048");
	put_be64(f + 48, 1000);
	write_sealed(p, f);
	open_fails(p, -EINVAL, "invalid VHD disk size 1000");
	put_be64(f + 48, 0);
	write_sealed(p, f);
	open_fails(p, -EINVAL, "invalid VHD disk size 0");

	/* Not checked: features, data offset, timestamp, geometry. */
	memcpy(f, good, 512);
	put_be32(f + 8, 0xffffffff);
	put_be64(f + 16, 1234);
	put_be32(f + 24, 99);
	put_be32(f + 56, 0);
	write_sealed(p, f);
	disk_unref(open_vhd(p, true));

	unlink(p);
	open_fails(p, -ENOENT, "No such file");
}

/* The footer of a created image, and create through the spec. */
static void test_vhd1_create(void **state)
{
	const char *p = tu_path("new.vhd");
	uint8_t f[512], f2[512];
	struct vhdfooter pf;
	char text[512], err[512];
	struct disk *d;
	struct stat st;
	int fd;

	(void)state;
	assert_int_equal(vhd1_make_footer(1000, NULL, f), -EINVAL);
	assert_int_equal(vhd1_make_footer(0, NULL, f), -EINVAL);
	assert_int_equal(vhd1_make_footer(8 * MiB, NULL, f), 0);
	assert_int_equal(vhd1_make_footer(8 * MiB, NULL, f2), 0);
	assert_memory_equal(f, "conectix", 8);
	assert_int_equal(ds_get_be32(f + 8), 2);
	assert_int_equal(ds_get_be32(f + 12), 0x00010000);
	assert_int_equal(ds_get_be32(f + 16), 0xffffffff);
	assert_int_equal(ds_get_be32(f + 20), 0xffffffff);
	assert_int_equal(ds_get_be32(f + 32), 0x000A0000);
	assert_int_equal(ds_get_be32(f + 44), 8 * MiB);
	assert_int_equal(ds_get_be32(f + 52), 8 * MiB);
	assert_int_equal(ds_get_be32(f + 60), 2);
	assert_int_equal(ds_get_be32(f + 64), vhdfooter_checksum(f));
	/* Random version-4 GUID in Windows byte order. */
	assert_int_equal(f[68 + 7] >> 4, 4);
	assert_int_equal(f[68 + 8] & 0xc0, 0x80);
	assert_memory_not_equal(f + 68, f2 + 68, 16);
	assert_true(tu_is_zero(f + 84, 512 - 84));
	/* The geometry covers the disk as the VHD spec computes it:
	 * 8 MiB = 16384 sectors -> 17 spt, 4 heads, 240 cylinders. */
	assert_int_equal(ds_get_be32(f + 56), 240u << 16 | 4u << 8 | 17u);
	assert_int_equal(vhd1_parse_footer(f, 8 * MiB + 512, &pf, err, sizeof(err)), 0);
	assert_int_equal(pf.current_size, 8 * MiB);

	unlink(p);
	snprintf(text, sizeof(text), "file:%s;create=8M", p);
	assert_int_equal(spec_open_str(text, false, NULL, &d, err, sizeof(err)), 0);
	assert_int_equal(disk_sector_count(d), 16384);
	contract_disk(d);
	disk_unref(d);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 8 * MiB + 512);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, f, 512, (off_t)(8 * MiB)), 512);
	close(fd);
	assert_int_equal(vhd1_parse_footer(f, 8 * MiB + 512, &pf, err, sizeof(err)), 0);
	/* A bare path works too. */
	snprintf(text, sizeof(text), "%s,ro", p);
	assert_int_equal(spec_open_str(text, false, NULL, &d, err, sizeof(err)), 0);
	assert_string_equal(disk_get_info(d)->type, "vhd1");
	assert_memory_equal(disk_get_info(d)->disk_id, pf.unique_id, 16);
	disk_unref(d);
	/* A bad create size. */
	snprintf(text, sizeof(text), "file:%s;create=1000", p);
	assert_int_equal(spec_open_str(text, false, NULL, &d, err, sizeof(err)), -EINVAL);
	unlink(p);
}

int main(void)
{
	tu_reactor();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vhd1_counting_words),
		cmocka_unit_test(test_vhd1_footer_hidden),
		cmocka_unit_test(test_vhd1_short_current_size),
		cmocka_unit_test(test_vhd1_open_errors),
		cmocka_unit_test(test_vhd1_create),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
