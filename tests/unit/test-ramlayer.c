/* SPDX-License-Identifier: MIT */
/*
 * test-ramlayer.c: unit tests of the RAM layer (storage/ramlayer.c,
 * docs/openvmm-compat.md §4.1 and §7.1-§7.2): constructor and
 * attach rules, read marking, write-no-overwrite, the unmap and resize rules,
 * block status, the contract suites, a seeded reference model, concurrency
 * from several reactor threads and memory accounting. (Its speed is
 * measured by `diskstack bench mem:`, docs/performance.md, not here.)
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "storage/disk.h"
#include "storage/layered.h"
#include "tests/unit/contract.h"
#include "tests/unit/testutil.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024)
#define GiB (1024ull * 1024 * 1024)
/* A leaf of the RAM layer's tree: 512 page pointers and two masks each. */
#define LEAF_BYTES (512 * 8 + 512 * 2)

static bool under_valgrind(void)
{
	return getenv("DISKSTACK_VALGRIND") != NULL;
}

/* ---- helpers ------------------------------------------------------------ */

/* Attaches through layer_attach, so the tu_layer_* helpers learn the
 * sector size; copies the resulting metadata to @meta. */
static int attach(struct layer *l, const struct layer_meta *lower, struct layer_meta *meta,
		  char *err, size_t errlen)
{
	int ret = layer_attach(l, lower, err, errlen);

	if (ret == 0)
		*meta = *layer_get_meta(l);
	return ret;
}

/* What a RAM layer answers for missing sectors at or past zero_after:
 * present (they shadow the layers below), zeroes, unallocated. */
#define RAM_ZERO_TAIL (DISK_EXTENT_ZERO | DISK_EXTENT_HOLE)

/* A new attached RAM layer with no lower layer. */
static struct layer *new_layer(uint64_t size, uint32_t ss, struct layer_meta *meta)
{
	struct layer_meta m = { 0 };
	struct layer *l = NULL;
	char err[256] = "";

	assert_int_equal(ramlayer_new(size, ss, &l, err, sizeof(err)), 0);
	assert_non_null(l);
	assert_int_equal(attach(l, NULL, meta ? meta : &m, err, sizeof(err)), 0);
	return l;
}

/* Reads [sector, sector+n) into @buf, recording marks in @bm over the range
 * (storage @words, zeroed here). Returns the status. */
static int read_marked(struct layer *l, uint32_t ss, uint64_t sector, uint64_t n, void *buf,
		       struct bitmap *bm, uint64_t *words)
{
	struct iovec iov = { .iov_base = buf, .iov_len = n * ss };
	struct disk_io io = { 0 };

	memset(words, 0, BITMAP_WORDS(n ? n : 1) * sizeof(uint64_t));
	bitmap_init(bm, sector, n, words);
	io.op = DISK_OP_READ;
	io.sector = sector;
	io.count = n;
	io.iov = &iov;
	io.iovcnt = 1;
	io.u.marker = bm;
	return tu_layer_io(l, &io);
}

/* Block status at [sector, sector+n): the first run. */
static int layer_bs(struct layer *l, uint64_t sector, uint64_t n, struct disk_extent *ext,
		    uint32_t *nr)
{
	struct disk_io io = { 0 };
	int st;

	memset(ext, 0xee, sizeof(*ext));
	io.op = DISK_OP_BLOCK_STATUS;
	io.sector = sector;
	io.count = n;
	io.u.bs.extents = ext;
	io.u.bs.max = 1;
	st = tu_layer_io(l, &io);
	*nr = io.u.bs.nr;
	return st;
}

/* Writes @n sectors at @sector filled with tu_fill(@tag). */
static int write_tag(struct layer *l, uint32_t ss, uint64_t sector, uint64_t n, uint64_t tag,
		     uint32_t flags)
{
	CLEANUP_FREE uint8_t *buf = malloc(n * ss + 1);
	assert_non_null(buf);
	tu_fill(buf, n * ss, tag, sector * ss);
	return tu_layer_write(l, sector, buf, n * ss, flags);
}

/* ---- constructor and attach --------------------------------------------- */

static void test_ramlayer_ctor_errors(void **state)
{
	struct layer_meta meta = { 0 };
	struct layer *l = NULL;
	char err[256];

	err[0] = 0;
	assert_int_equal(ramlayer_new(1 * MiB, 1000, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sector size"));
	err[0] = 0;
	assert_int_equal(ramlayer_new(1 * MiB, 256, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sector size"));
	err[0] = 0;
	assert_int_equal(ramlayer_new(5000, 4096, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "5000"));
	assert_non_null(strstr(err, "4096"));
	assert_int_equal(ramlayer_new(1 * MiB + 100, 0, &l, err, sizeof(err)), -EINVAL);
	/* Without a buffer for the message. */
	assert_int_equal(ramlayer_new(1 * MiB, 3, &l, NULL, 0), -EINVAL);

	/* Size 0 is fine until it is attached with nothing to inherit from. */
	assert_int_equal(ramlayer_new(0, 0, &l, err, sizeof(err)), 0);
	err[0] = 0;
	assert_int_equal(attach(l, NULL, &meta, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "empty"));
	layer_free(l);

	/* ... or with an explicit sector size the inherited size is not a
	 * multiple of. */
	struct layer_meta lower = { .sector_size = 512, .sector_count = 9, .physical_sector_size = 512 };

	assert_int_equal(ramlayer_new(0, 4096, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), -EINVAL);
	layer_free(l);
	/* ... or a lower layer with a bad sector size. */
	lower.sector_size = 1000;
	assert_int_equal(ramlayer_new(0, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), -EINVAL);
	layer_free(l);

	/* And through ramdisk_new. */
	struct disk *d = NULL;

	assert_int_equal(ramdisk_new(0, 512, false, &d, err, sizeof(err)), -EINVAL);
	assert_null(d);
	assert_int_equal(ramdisk_new(5000, 4096, false, &d, err, sizeof(err)), -EINVAL);
	assert_null(d);
	layer_free(NULL);
}

static void test_ramlayer_properties(void **state)
{
	struct layer_meta meta = { 0 };
	struct layer *l = new_layer(1 * MiB, 0, &meta);

	assert_string_equal(layer_get_ops(l)->type, "ram");
	assert_int_equal(meta.sector_size, 512);
	assert_int_equal(meta.sector_count, 2048);
	assert_int_equal(meta.physical_sector_size, 512);
	assert_false(meta.has_disk_id);
	assert_false(meta.read_only);
	assert_true(meta.can_read_cache);
	assert_true(meta.fua_respected);
	/* Nothing below: unmapped sectors read back as zero. */
	assert_int_equal(meta.unmap_behavior, DISK_UNMAP_ZEROES);
	assert_int_equal(meta.optimal_unmap_sectors, 1);
	assert_true(meta.caps & DISK_CAP_RESIZE);
	assert_false(meta.caps & DISK_CAP_PERSISTENT);
	assert_int_equal(layer_get_ops(l)->sector_count(l), 2048);

	/* Flush is a no-op that succeeds; a FUA write works. */
	struct disk_io io = { .op = DISK_OP_FLUSH };

	assert_int_equal(tu_layer_io(l, &io), DISK_OK);
	assert_int_equal(write_tag(l, 512, 5, 1, 1, DISK_IO_FUA), DISK_OK);
	layer_free(l);
}

static void describe_param(struct disk_describer *dd, const char *key, const char *value)
{
	char *out = dd->opaque;
	size_t len = strlen(out);

	snprintf(out + len, 256 - len, "%s=%s;", key, value);
}

static void test_ramlayer_describe(void **state)
{
	struct layer *l = new_layer(1 * MiB, 512, NULL);
	char out[256] = "";
	struct disk_describer dd = { .param = describe_param, .opaque = out };

	assert_int_equal(write_tag(l, 512, 0, 8, 1, 0), DISK_OK);
	layer_get_ops(l)->describe(l, &dd);
	assert_non_null(strstr(out, "size=1048576;"));
	assert_non_null(strstr(out, "data_bytes=4096;"));
	assert_non_null(strstr(out, "alloc_bytes="));
	layer_free(l);
}

static void test_ramlayer_4k_sectors(void **state)
{
	struct layer_meta meta = { 0 };
	struct layer *l = new_layer(1 * MiB, 4096, &meta);
	uint8_t buf[8192], back[8192];

	assert_int_equal(meta.sector_size, 4096);
	assert_int_equal(meta.sector_count, 256);
	assert_int_equal(meta.physical_sector_size, 4096);
	tu_fill(buf, sizeof(buf), 7, 254 * 4096);
	assert_int_equal(tu_layer_write(l, 254, buf, sizeof(buf), 0), DISK_OK);
	uint64_t nmarked = 0;

	assert_int_equal(tu_layer_read(l, 254, back, sizeof(back), &nmarked), DISK_OK);
	assert_int_equal(nmarked, 2);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(tu_layer_write(l, 255, buf, sizeof(buf), 0), DISK_ILLEGAL_BLOCK);
	layer_free(l);

	/* Through a one-layer disk. */
	struct disk *d = NULL;
	char err[256];

	assert_int_equal(ramdisk_new(1 * MiB, 4096, false, &d, err, sizeof(err)), 0);
	assert_int_equal(disk_sector_count(d), 256);
	assert_int_equal(disk_sector_size(d), 4096);
	assert_int_equal(disk_get_info(d)->physical_sector_size, 4096);
	assert_false(disk_get_info(d)->read_only);
	assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
	assert_true(disk_get_info(d)->caps & DISK_CAP_FAST_ZERO);
	tu_fill(buf, sizeof(buf), 8, 10 * 4096);
	assert_int_equal(disk_sync_write(d, 10, buf, sizeof(buf), 0), DISK_OK);
	memset(back, 0xa5, sizeof(back));
	assert_int_equal(disk_sync_read(d, 10, back, sizeof(back)), DISK_OK);
	assert_memory_equal(buf, back, sizeof(buf));
	/* Sectors nobody wrote read as zero through the disk. */
	memset(back, 0xa5, sizeof(back));
	assert_int_equal(disk_sync_read(d, 100, back, sizeof(back)), DISK_OK);
	assert_true(tu_is_zero(back, sizeof(back)));
	disk_unref(d);
}

static void test_ramlayer_lazy_attach(void **state)
{
	struct layer_meta lower = {
		.sector_size = 4096, .sector_count = 256, .physical_sector_size = 4096,
		.unmap_behavior = DISK_UNMAP_ZEROES, .optimal_unmap_sectors = 8,
		.has_disk_id = true, .read_only = true, .fua_respected = false,
	};
	struct layer_meta meta = { 0 };
	struct layer *l = NULL;
	char err[256];

	/* Everything inherited. */
	assert_int_equal(ramlayer_new(0, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(layer_get_ops(l)->sector_count(l), 0);
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), 0);
	assert_int_equal(meta.sector_size, 4096);
	assert_int_equal(meta.sector_count, 256);
	assert_int_equal(meta.physical_sector_size, 4096);
	/* The RAM layer's own properties, not the lower layer's. */
	assert_false(meta.has_disk_id);
	assert_false(meta.read_only);
	assert_true(meta.fua_respected);
	/* Over another layer too: unmapped sectors become zeroed runs. */
	assert_int_equal(meta.unmap_behavior, DISK_UNMAP_ZEROES);
	assert_int_equal(meta.optimal_unmap_sectors, 1);
	layer_free(l);

	/* Explicit sector size, inherited length. */
	assert_int_equal(ramlayer_new(0, 512, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), 0);
	assert_int_equal(meta.sector_size, 512);
	assert_int_equal(meta.sector_count, 2048);
	layer_free(l);

	/* Explicit length, inherited sector size. */
	assert_int_equal(ramlayer_new(2 * MiB, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), 0);
	assert_int_equal(meta.sector_size, 4096);
	assert_int_equal(meta.sector_count, 512);
	layer_free(l);

	/* Explicit length that is not a multiple of the inherited size. */
	assert_int_equal(ramlayer_new(1 * MiB + 512, 0, &l, err, sizeof(err)), 0);
	err[0] = 0;
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "4096"));
	layer_free(l);

	/* No lower layer: 512. */
	assert_int_equal(ramlayer_new(1 * MiB, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, NULL, &meta, err, sizeof(err)), 0);
	assert_int_equal(meta.sector_size, 512);
	assert_int_equal(meta.sector_count, 2048);
	layer_free(l);
}

/* ---- I/O rules ---------------------------------------------------------- */

static void test_ramlayer_read_marks_present(void **state)
{
	struct layer *l = new_layer(1 * MiB, 512, NULL);
	uint8_t buf[32 * 512];
	uint64_t words[1];
	struct bitmap bm;

	assert_int_equal(write_tag(l, 512, 3, 2, 1, 0), DISK_OK);
	assert_int_equal(write_tag(l, 512, 10, 1, 2, 0), DISK_OK);
	assert_int_equal(write_tag(l, 512, 16, 9, 3, 0), DISK_OK);

	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(read_marked(l, 512, 0, 32, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 12);
	for (uint64_t s = 0; s < 32; s++) {
		bool want = (s >= 3 && s < 5) || s == 10 || (s >= 16 && s < 25);
		uint8_t *p = buf + s * 512;

		assert_int_equal(bitmap_test(&bm, s), want);
		if (!want) {
			/* Unmarked positions are left alone. */
			for (int i = 0; i < 512; i++)
				assert_int_equal(p[i], 0xa5);
		}
	}
	assert_int_equal(tu_check(buf + 3 * 512, 2 * 512, 1, 3 * 512), -1);
	assert_int_equal(tu_check(buf + 10 * 512, 512, 2, 10 * 512), -1);
	assert_int_equal(tu_check(buf + 16 * 512, 9 * 512, 3, 16 * 512), -1);

	/* A read at an offset inside a page, and a zero-length read. */
	assert_int_equal(read_marked(l, 512, 4, 7, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 2);
	assert_true(bitmap_test(&bm, 4) && bitmap_test(&bm, 10));
	assert_int_equal(read_marked(l, 512, 2048, 0, buf, &bm, words), DISK_OK);
	assert_int_equal(read_marked(l, 512, 2049, 0, buf, &bm, words), DISK_ILLEGAL_BLOCK);
	assert_int_equal(read_marked(l, 512, 2047, 2, buf, &bm, words), DISK_ILLEGAL_BLOCK);

	/* A scattered iovec list across pages. */
	uint8_t a[700], b[3 * 512 - 700 + 4096];
	struct iovec iov[3] = {
		{ .iov_base = a, .iov_len = sizeof(a) },
		{ .iov_base = NULL, .iov_len = 0 },
		{ .iov_base = b, .iov_len = sizeof(b) },
	};
	uint8_t flat[sizeof(a) + sizeof(b)];
	struct disk_io io = { .op = DISK_OP_READ, .sector = 2, .count = sizeof(flat) / 512,
			      .iov = iov, .iovcnt = 3 };
	uint64_t w2[1] = { 0 };

	bitmap_init(&bm, 2, io.count, w2);
	io.u.marker = &bm;
	assert_int_equal(tu_layer_io(l, &io), DISK_OK);
	memcpy(flat, a, sizeof(a));
	memcpy(flat + sizeof(a), b, sizeof(b));
	assert_int_equal(tu_check(flat + 512, 2 * 512, 1, 3 * 512), -1);
	assert_int_equal(tu_check(flat + 8 * 512, 512, 2, 10 * 512), -1);
	assert_int_equal(bm.nset, 3);
	layer_free(l);
}

static void test_ramlayer_write_no_overwrite(void **state)
{
	struct layer *l = new_layer(1 * MiB, 512, NULL);
	uint8_t buf[16 * 512];
	uint64_t nmarked;

	assert_int_equal(write_tag(l, 512, 4, 2, 1, 0), DISK_OK);
	assert_int_equal(write_tag(l, 512, 9, 1, 1, 0), DISK_OK);
	/* Fill 0..16 without overwriting. */
	assert_int_equal(write_tag(l, 512, 0, 16, 2, DISK_IO_NO_OVERWRITE), DISK_OK);
	assert_int_equal(tu_layer_read(l, 0, buf, sizeof(buf), &nmarked), DISK_OK);
	assert_int_equal(nmarked, 16);
	for (uint64_t s = 0; s < 16; s++) {
		uint64_t tag = (s == 4 || s == 5 || s == 9) ? 1 : 2;

		assert_int_equal(tu_check(buf + s * 512, 512, tag, s * 512), -1);
	}
	/* A normal write overwrites. */
	assert_int_equal(write_tag(l, 512, 4, 1, 3, 0), DISK_OK);
	assert_int_equal(tu_layer_read(l, 4, buf, 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 512, 3, 4 * 512), -1);
	/* Range checks apply to write-no-overwrite too. */
	assert_int_equal(write_tag(l, 512, 2047, 2, 4, DISK_IO_NO_OVERWRITE), DISK_ILLEGAL_BLOCK);
	assert_int_equal(tu_layer_write(l, 2048, buf, 0, 0), DISK_OK);
	assert_int_equal(tu_layer_write(l, 2049, buf, 0, 0), DISK_ILLEGAL_BLOCK);

	uint64_t data;

	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, 16 * 512);
	layer_free(l);
}

static void test_ramlayer_unmap_rules(void **state)
{
	const uint64_t n = 2048;
	struct layer *l = new_layer(n * 512, 512, NULL);
	CLEANUP_FREE uint8_t *buf = malloc(n * 512);
	CLEANUP_FREE uint64_t *words = calloc(BITMAP_WORDS(n), 8);
	struct bitmap bm;

	assert_non_null(buf);
	assert_non_null(words);
	assert_int_equal(write_tag(l, 512, 0, n, 1, 0), DISK_OK);

	/* Unmapping sectors below zero_after (without next_is_zero) makes
	 * them zeroed runs: marked (they hide the layers below) and zero. */
	assert_int_equal(tu_layer_unmap(l, 8, 100, false), DISK_OK);
	memset(buf, 0xa5, n * 512);
	assert_int_equal(read_marked(l, 512, 0, n, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, n);
	assert_int_equal(tu_check(buf, 8 * 512, 1, 0), -1);
	assert_true(tu_is_zero(buf + 8 * 512, 100 * 512));
	assert_int_equal(tu_check(buf + 108 * 512, (n - 108) * 512, 1, 108 * 512), -1);

	uint64_t data;

	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, (n - 100) * 512);
	assert_int_equal(write_tag(l, 512, 0, 108, 1, 0), DISK_OK);

	/* Unmapping the second half (reaching zero_after) makes it zeroes
	 * that are still marked. */
	assert_int_equal(tu_layer_unmap(l, n / 2, n / 2, false), DISK_OK);
	memset(buf, 0xa5, n * 512);
	assert_int_equal(read_marked(l, 512, 0, n, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, n);
	assert_int_equal(tu_check(buf, n / 2 * 512, 1, 0), -1);
	assert_true(tu_is_zero(buf + n / 2 * 512, n / 2 * 512));

	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, n / 2 * 512);

	/* Writing past zero_after stores data again. */
	assert_int_equal(write_tag(l, 512, n - 3, 1, 2, 0), DISK_OK);
	assert_int_equal(tu_layer_read(l, n - 3, buf, 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 512, 2, (n - 3) * 512), -1);

	/* With next_is_zero the sectors just become absent (unmarked). */
	assert_int_equal(tu_layer_unmap(l, 10, 20, true), DISK_OK);
	memset(buf, 0xa5, n * 512);
	assert_int_equal(read_marked(l, 512, 0, 64, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 44);
	for (uint64_t s = 0; s < 64; s++)
		assert_int_equal(bitmap_test(&bm, s), s < 10 || s >= 30);
	assert_int_equal(buf[15 * 512], 0xa5);

	/* An unmap ending exactly at zero_after is not ignored: zero_after
	 * moves down to its start. */
	assert_int_equal(tu_layer_unmap(l, n / 2 - 8, 8, false), DISK_OK);
	assert_int_equal(read_marked(l, 512, n / 2 - 16, 16, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 16);
	assert_true(tu_is_zero(buf + 8 * 512, 8 * 512));

	/* Range rules. */
	assert_int_equal(tu_layer_unmap(l, n, 0, false), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, n, 0, true), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, n + 1, 0, false), DISK_ILLEGAL_BLOCK);
	assert_int_equal(tu_layer_unmap(l, n - 1, 2, true), DISK_ILLEGAL_BLOCK);
	assert_int_equal(tu_layer_unmap(l, UINT64_MAX, 1, true), DISK_ILLEGAL_BLOCK);
	layer_free(l);
}

static void test_ramlayer_unmap_frees_pages(void **state)
{
	struct layer *l = new_layer(64 * MiB, 512, NULL);
	uint64_t data, alloc0, alloc;

	ramlayer_memory(l, &data, &alloc0);
	assert_int_equal(data, 0);
	/* Partial page unmaps keep the page until its last sector goes. */
	assert_int_equal(write_tag(l, 512, 8, 8, 1, 0), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 4096);
	assert_true(alloc > alloc0 + 4096);
	assert_int_equal(tu_layer_unmap(l, 8, 7, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 512);
	assert_int_equal(tu_layer_unmap(l, 15, 1, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 0);
	/* The page is gone; the root and the leaf stay until a whole-leaf
	 * unmap, which frees the leaf. */
	assert_true(alloc < alloc0 + 16 * KiB);
	assert_true(alloc > alloc0 + LEAF_BYTES);
	assert_int_equal(tu_layer_unmap(l, 0, 4096, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_true(alloc < alloc0 + LEAF_BYTES);

	/* Pages emptied at the edges of an exclusive unmap are freed too: only
	 * the root (4 KiB) and the first leaf (5 KiB) may remain. */
	assert_int_equal(write_tag(l, 512, 4090, 10, 2, 0), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, 4088, 8192, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 0);
	assert_true(alloc - alloc0 < 4096 + LEAF_BYTES + 64);
	/* ... and at the edge of a shrink. */
	assert_int_equal(write_tag(l, 512, 100, 10, 3, 0), DISK_OK);
	assert_int_equal(ramlayer_resize(l, 104), 0);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 4 * 512);
	assert_true(alloc - alloc0 < 4096 + LEAF_BYTES + 4096 + 64 + 16);
	assert_int_equal(tu_layer_unmap(l, 0, 104, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 0);
	assert_true(alloc - alloc0 < 4096 + LEAF_BYTES + 64);
	layer_free(l);
}

static void watch_cb(struct disk_resize_watch *w, uint64_t new_count)
{
	uint64_t *seen = w->opaque;

	seen[0]++;
	seen[1] = new_count;
	w->seen_count = new_count;
}

static void test_ramlayer_resize(void **state)
{
	const uint64_t n = 4096;
	struct layer *l = new_layer(n * 512, 512, NULL);
	CLEANUP_FREE uint8_t *buf = malloc(n * 512);
	CLEANUP_FREE uint64_t *words = calloc(BITMAP_WORDS(n), 8);
	struct bitmap bm;
	uint64_t data;

	assert_non_null(buf);
	assert_non_null(words);
	assert_int_equal(write_tag(l, 512, 0, n, 1, 0), DISK_OK);
	assert_int_equal(ramlayer_resize(l, 0), -EINVAL);
	assert_int_equal(ramlayer_resize(l, UINT64_MAX), -EINVAL);

	/* Shrink to half (not page aligned): the tail is gone. */
	assert_int_equal(ramlayer_resize(l, n / 2 + 3), 0);
	assert_int_equal(layer_get_ops(l)->sector_count(l), n / 2 + 3);
	assert_int_equal(read_marked(l, 512, n / 2, 8, buf, &bm, words), DISK_ILLEGAL_BLOCK);
	assert_int_equal(write_tag(l, 512, n / 2 + 3, 1, 2, 0), DISK_ILLEGAL_BLOCK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, (n / 2 + 3) * 512);

	/* Grow back: the re-grown range reads zeroes and is marked. */
	assert_int_equal(ramlayer_resize(l, n), 0);
	memset(buf, 0xa5, n * 512);
	assert_int_equal(read_marked(l, 512, 0, n, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, n);
	assert_int_equal(tu_check(buf, (n / 2 + 3) * 512, 1, 0), -1);
	assert_true(tu_is_zero(buf + (n / 2 + 3) * 512, (n / 2 - 3) * 512));

	/* Grow far past the tree's first levels and write at the new end. */
	uint64_t big = 1ull << 40;

	assert_int_equal(ramlayer_resize(l, big), 0);
	assert_int_equal(write_tag(l, 512, big - 1, 1, 3, 0), DISK_OK);
	assert_int_equal(tu_layer_read(l, big - 1, buf, 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 512, 3, (big - 1) * 512), -1);
	assert_int_equal(tu_layer_read(l, 0, buf, 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 512, 1, 0), -1);
	assert_int_equal(ramlayer_resize(l, 100), 0);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, 100 * 512);
	layer_free(l);
}

static void test_ramlayer_resize_watch(void **state)
{
	struct layer *l = new_layer(1 * MiB, 512, NULL);
	uint64_t seen[2] = { 0, 0 };
	struct disk_resize_watch w = { .cb = watch_cb, .seen_count = 2048, .opaque = seen };
	const struct layer_ops *ops = layer_get_ops(l);

	assert_int_equal(ops->watch_resize(l, &w), 0);
	assert_int_equal(seen[0], 0);
	assert_int_equal(ramlayer_resize(l, 1000), 0);
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[1], 1000);
	/* Same size: nobody is woken. */
	assert_int_equal(ramlayer_resize(l, 1000), 0);
	assert_int_equal(seen[0], 1);
	ops->unwatch_resize(l, &w);
	assert_int_equal(ramlayer_resize(l, 3000), 0);
	assert_int_equal(seen[0], 1);
	layer_free(l);

	/* Through the disk: watchers of a one-layer disk see the layer. */
	struct disk *d = NULL;
	char err[256];

	assert_int_equal(ramdisk_new(1 * MiB, 512, false, &d, err, sizeof(err)), 0);
	seen[0] = 0;
	w.seen_count = disk_sector_count(d);
	assert_int_equal(disk_watch_resize(d, &w), 0);
	l = layered_disk_layer(d, 0);
	assert_non_null(l);
	assert_int_equal(ramlayer_resize(l, 4096), 0);
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[1], 4096);
	assert_int_equal(disk_sector_count(d), 4096);
	disk_unwatch_resize(d, &w);
	disk_unref(d);
}

static void test_ramlayer_block_status(void **state)
{
	const uint64_t n = 1ull << 20; /* 512 MiB, several leaves */
	struct layer *l = new_layer(n * 512, 512, NULL);
	struct disk_extent e;
	uint32_t nr;

	/* Empty: one hole over the whole range. */
	assert_int_equal(layer_bs(l, 0, n, &e, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(e.count, n);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);

	assert_int_equal(write_tag(l, 512, 3, 2, 1, 0), DISK_OK);
	assert_int_equal(write_tag(l, 512, 8, 4096 * 3, 1, 0), DISK_OK); /* across leaves */
	assert_int_equal(write_tag(l, 512, 600000, 1, 1, 0), DISK_OK);

	assert_int_equal(layer_bs(l, 0, n, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 3);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, 3, n - 3, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 2);
	assert_int_equal(e.flags, 0);
	assert_int_equal(layer_bs(l, 4, 1, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 1);
	assert_int_equal(e.flags, 0);
	assert_int_equal(layer_bs(l, 5, 100, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 3);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, 8, n - 8, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 4096 * 3);
	assert_int_equal(e.flags, 0);
	/* A long hole skipped over whole leaves. */
	assert_int_equal(layer_bs(l, 8 + 4096 * 3, n - 8 - 4096 * 3, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 600000 - 8 - 4096 * 3);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	/* Clipped to the request. */
	assert_int_equal(layer_bs(l, 100, 50, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 50);
	assert_int_equal(e.flags, 0);

	/* Missing sectors past zero_after are present, unallocated zeroes. */
	assert_int_equal(tu_layer_unmap(l, 700000, n - 700000, false), DISK_OK);
	assert_int_equal(layer_bs(l, 600001, n - 600001, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 700000 - 600001);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, 700000, n - 700000, &e, &nr), DISK_OK);
	assert_int_equal(e.count, n - 700000);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);
	assert_int_equal(write_tag(l, 512, 800001, 1, 1, 0), DISK_OK);
	assert_int_equal(layer_bs(l, 700000, n - 700000, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 100001);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);

	/* Range checks; a zero-length request answers nothing. */
	assert_int_equal(layer_bs(l, n, 1, &e, &nr), DISK_ILLEGAL_BLOCK);
	assert_int_equal(layer_bs(l, n, 0, &e, &nr), DISK_OK);
	assert_int_equal(nr, 0);
	layer_free(l);
}

static void test_ramlayer_huge_sparse(void **state)
{
	/* 1 PiB of 512-byte sectors: the tree is five levels deep, and every
	 * walk over the holes must skip whole subtrees. */
	const uint64_t n = 1ull << 41;
	struct layer *l = new_layer(n * 512, 512, NULL);
	CLEANUP_FREE uint8_t *buf = malloc(1 * MiB);
	uint64_t words[BITMAP_WORDS(2048)];
	struct bitmap bm;
	struct disk_extent e;
	uint32_t nr;
	uint64_t data, alloc;

	assert_non_null(buf);
	assert_int_equal(write_tag(l, 512, 0, 1, 1, 0), DISK_OK);
	assert_int_equal(write_tag(l, 512, 1ull << 40, 8, 2, 0), DISK_OK);
	assert_int_equal(write_tag(l, 512, n - 1, 1, 3, 0), DISK_OK);

	assert_int_equal(layer_bs(l, 1, n - 1, &e, &nr), DISK_OK);
	assert_int_equal(e.count, (1ull << 40) - 1);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, (1ull << 40) + 8, n - (1ull << 40) - 8, &e, &nr), DISK_OK);
	assert_int_equal(e.count, n - (1ull << 40) - 9);

	assert_int_equal(read_marked(l, 512, (1ull << 40) - 1000, 2048, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 8);
	assert_int_equal(tu_check(buf + 1000 * 512, 8 * 512, 2, (1ull << 40) * 512), -1);
	assert_int_equal(read_marked(l, 512, n - 2048, 2048, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 1);

	/* Unmapping a huge range in pieces that are not leaf-aligned, then
	 * in one go. */
	assert_int_equal(tu_layer_unmap(l, 1, 1000, true), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, (1ull << 40) - 5, 4000, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 2 * 512);
	assert_int_equal(tu_layer_unmap(l, 0, n, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 0);
	assert_true(alloc < 64 * KiB);
	/* Everything reads as absent; the layer still works. */
	assert_int_equal(layer_bs(l, 0, n, &e, &nr), DISK_OK);
	assert_int_equal(e.count, n);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(write_tag(l, 512, 12345678, 3, 4, 0), DISK_OK);
	assert_int_equal(tu_layer_read(l, 12345678, buf, 3 * 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 3 * 512, 4, 12345678ull * 512), -1);
	layer_free(l);
}

/* ---- contract suites (§7.1) --------------------------------------------- */

static void test_ramlayer_contract_layer(void **state)
{
	static const uint32_t sizes[] = { 512, 4096 };

	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct layer_meta meta = { 0 };
		struct layer *l = new_layer(1 * MiB, sizes[i], &meta);

		contract_layer(l, &meta);
		layer_free(l);
	}
}

static void test_ramlayer_contract_disk(void **state)
{
	static const uint32_t sizes[] = { 512, 4096 };

	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct disk *d = NULL;
		char err[256];

		assert_int_equal(ramdisk_new(1 * MiB, sizes[i], false, &d, err, sizeof(err)), 0);
		contract_disk(d);
		disk_unref(d);
	}
}

/* ---- reference model ---------------------------------------------------- */

enum { M_ABSENT = 0, M_DATA, M_ZEROED };

struct model {
	uint32_t ss;
	uint64_t max, count, za;
	uint8_t *data;          /* max * ss */
	uint8_t *present;       /* max: M_* */
};

/* Class of sector @s in the model: 0 data, RAM_ZERO_TAIL (zeroed, or
 * missing past zero_after) or HOLE. */
static uint32_t model_class(const struct model *m, uint64_t s)
{
	if (m->present[s] == M_DATA)
		return 0;
	if (m->present[s] == M_ZEROED)
		return RAM_ZERO_TAIL;
	return s >= m->za ? RAM_ZERO_TAIL : DISK_EXTENT_HOLE;
}

/* Sectors holding data (zeroed ones hold none). */
static uint64_t model_present(const struct model *m)
{
	uint64_t n = 0;

	for (uint64_t s = 0; s < m->count; s++)
		n += m->present[s] == M_DATA;
	return n;
}

static void model_check_read(struct layer *l, const struct model *m, uint64_t s, uint64_t n,
			     uint8_t *buf, uint64_t *words, uint64_t seed, unsigned op)
{
	struct bitmap bm;
	uint32_t ss = m->ss;

	memset(buf, 0xa5, n * ss);
	assert_int_equal(read_marked(l, ss, s, n, buf, &bm, words), DISK_OK);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t x = s + i;
		uint8_t *p = buf + i * ss;
		bool marked = bitmap_test(&bm, x);

		if (m->present[x] == M_DATA) {
			if (!marked || memcmp(p, m->data + x * ss, ss) != 0)
				fail_msg("seed %" PRIu64 " op %u: sector %" PRIu64 " data/mark wrong",
					 seed, op, x);
		} else if (m->present[x] == M_ZEROED || x >= m->za) {
			if (!marked || !tu_is_zero(p, ss))
				fail_msg("seed %" PRIu64 " op %u: sector %" PRIu64 " should be marked zero",
					 seed, op, x);
		} else {
			if (marked || p[0] != 0xa5 || p[ss - 1] != 0xa5)
				fail_msg("seed %" PRIu64 " op %u: sector %" PRIu64 " should be absent",
					 seed, op, x);
		}
	}
}

/* @resize_pct: percent of operations that resize (the rest read, write,
 * unmap and ask block status); @niz_pct: percent of unmaps that say the
 * layer below reads zero (the others make zeroed runs below zero_after). */
static void run_model(uint32_t ss, uint64_t start, uint64_t max, unsigned nops, unsigned resize_pct,
		      unsigned niz_pct, const char *name)
{
	uint64_t seed = tu_seed(name), rs = seed;
	struct model m = { .ss = ss, .max = max, .count = start, .za = start };
	struct layer *l = NULL;
	uint64_t leaf_sectors = 512ull * (ss >= 4096 ? 1 : 4096 / ss);

	m.data = calloc(max, ss);
	m.present = calloc(max, 1);
	CLEANUP_FREE uint8_t *buf = malloc(max * ss);
	CLEANUP_FREE uint64_t *words = calloc(BITMAP_WORDS(max), 8);

	assert_non_null(m.data);
	assert_non_null(m.present);
	assert_non_null(buf);
	assert_non_null(words);

	for (unsigned op = 0; op < nops; op++) {
		/* Epochs on a fresh layer, so zero_after does not settle at 0. */
		if (op % 1000 == 0) {
			layer_free(l);
			l = new_layer(start * ss, ss, NULL);
			m.count = m.za = start;
			memset(m.present, 0, max);
		}
		unsigned kind = tu_rand(&rs) % 100;
		uint64_t s, n, end;

		/* Mostly small requests, some long ones, a few out of range. */
		switch (tu_rand(&rs) % 8) {
		case 0:
			n = tu_rand(&rs) % (2 * leaf_sectors + 1);
			break;
		case 1:
			n = 0;
			break;
		default:
			n = 1 + tu_rand(&rs) % 24;
			break;
		}
		n = MIN(n, m.count);
		s = tu_rand(&rs) % (m.count - n + 1);
		if (tu_rand(&rs) % 32 == 0)
			s = m.count - n + 1 + tu_rand(&rs) % 3;
		end = s + n;
		bool bad = end > m.count;

		if (kind < 35) {
			uint32_t flags = tu_rand(&rs) % 4 == 0 ? DISK_IO_NO_OVERWRITE : 0;

			tu_fill(buf, n * ss, op, s * ss);
			int st = tu_layer_write(l, s, buf, n * ss, flags);

			if (bad) {
				assert_int_equal(st, DISK_ILLEGAL_BLOCK);
				continue;
			}
			assert_int_equal(st, DISK_OK);
			for (uint64_t i = 0; i < n; i++) {
				if ((flags & DISK_IO_NO_OVERWRITE) &&
				    (m.present[s + i] || s + i >= m.za))
					continue;
				memcpy(m.data + (s + i) * ss, buf + i * ss, ss);
				m.present[s + i] = M_DATA;
			}
		} else if (kind < 62) {
			if (bad) {
				struct bitmap bm;

				assert_int_equal(read_marked(l, ss, s, n, buf, &bm, words),
						 DISK_ILLEGAL_BLOCK);
				continue;
			}
			model_check_read(l, &m, s, n, buf, words, seed, op);
		} else if (kind < 78) {
			bool niz = tu_rand(&rs) % 100 < niz_pct;
			int st = tu_layer_unmap(l, s, n, niz);

			if (bad) {
				assert_int_equal(st, DISK_ILLEGAL_BLOCK);
				continue;
			}
			assert_int_equal(st, DISK_OK);
			if (!niz && end < m.za) {
				/* Zeroed runs: present, hiding the layers below. */
				memset(m.present + s, M_ZEROED, n);
				continue;
			}
			if (!niz)
				m.za = MIN(m.za, s);
			memset(m.present + s, M_ABSENT, n);
		} else if (kind < 100 - resize_pct) {
			struct disk_extent e;
			uint32_t nr;
			int st = layer_bs(l, s, n, &e, &nr);

			if (bad) {
				assert_int_equal(st, DISK_ILLEGAL_BLOCK);
				continue;
			}
			assert_int_equal(st, DISK_OK);
			if (n == 0) {
				assert_int_equal(nr, 0);
				continue;
			}
			uint32_t cls = model_class(&m, s);
			uint64_t run = 1;

			while (s + run < end && model_class(&m, s + run) == cls)
				run++;
			assert_int_equal(nr, 1);
			if (e.count != run || e.flags != cls)
				fail_msg("seed %" PRIu64 " op %u: block status at %" PRIu64 "+%" PRIu64
					 " got %" PRIu64 "/%u want %" PRIu64 "/%u",
					 seed, op, s, n, e.count, e.flags, run, cls);
		} else {
			uint64_t nc = 1 + tu_rand(&rs) % max;

			assert_int_equal(ramlayer_resize(l, nc), 0);
			if (nc < m.count)
				memset(m.present + nc, 0, m.count - nc);
			m.za = MIN(m.za, nc);
			m.count = nc;
			assert_int_equal(layer_get_ops(l)->sector_count(l), nc);
		}

		if (op % 256 == 0 || op == nops - 1) {
			uint64_t data;

			ramlayer_memory(l, &data, NULL);
			if (data != model_present(&m) * ss)
				fail_msg("seed %" PRIu64 " op %u: data_bytes %" PRIu64 " want %" PRIu64,
					 seed, op, data, model_present(&m) * ss);
			model_check_read(l, &m, 0, m.count, buf, words, seed, op);
		}
	}
	layer_free(l);
	free(m.data);
	free(m.present);
}

static void test_ramlayer_model_512(void **state)
{
	/* Starts with a one-level tree and grows to two. */
	run_model(512, 3000, 40000, under_valgrind() ? 1500 : 6000, 5, 75, "ramlayer_model_512");
}

static void test_ramlayer_model_4096(void **state)
{
	run_model(4096, 300, 3000, under_valgrind() ? 1500 : 6000, 5, 75, "ramlayer_model_4096");
}

static void test_ramlayer_model_8192(void **state)
{
	/* Sectors larger than the 4 KiB minimum page. */
	run_model(8192, 100, 1200, under_valgrind() ? 800 : 3000, 5, 75, "ramlayer_model_8192");
}

/* Zeroed runs (unmaps over a layer below, and write-zeroes through them):
 * mostly unmaps that make zeroed runs, long ones covering whole leaves
 * (zero subtrees) and short ones, with writes into them; resizes rare, so
 * zero_after stays high. */
static void test_ramlayer_model_zeroed_512(void **state)
{
	run_model(512, 40000, 40000, under_valgrind() ? 1500 : 6000, 1, 25,
		  "ramlayer_model_zeroed_512");
}

static void test_ramlayer_model_zeroed_4096(void **state)
{
	run_model(4096, 3000, 3000, under_valgrind() ? 1500 : 6000, 1, 25,
		  "ramlayer_model_zeroed_4096");
}

/* ---- concurrency -------------------------------------------------------- */

#define CT_THREADS 4
#define CT_PRIV 8192ull                 /* sectors per thread (4 MiB, 2 leaves) */
#define CT_SHARED (CT_THREADS * CT_PRIV)
#define CT_SHARED_N 2048ull             /* read-only pattern */
#define CT_TORN (CT_SHARED + CT_SHARED_N)
#define CT_TORN_N 256ull                /* uniform-sector writes */
#define CT_COUNT (CT_TORN + CT_TORN_N + 4096)
#define CT_BIG (1ull << 33)             /* resize target: a taller tree */

struct ct_ctx {
	struct layer *l;
	unsigned id;
	unsigned iters;
	uint64_t seed;
	uint64_t present;               /* out: sectors of its range present at the end */
	char failure[256];              /* first failure, empty if none */
};

#define CT_FAIL(c, ...) do { \
	if (!(c)->failure[0]) snprintf((c)->failure, sizeof((c)->failure), __VA_ARGS__); \
	goto out; \
} while (0)

/* Writes @n sectors of @buf at @s with DISK_IO_ADOPT: each whole 4 KiB
 * page in a malloc'd block of its own (which the layer may keep, handing
 * back the page it replaced), the pieces around them straight from @buf. */
static int ct_adopt_write(struct layer *l, uint64_t s, uint64_t n, const uint8_t *buf)
{
	struct iovec iov[8];
	bool block[8];
	struct disk_io io;
	uint64_t pos = s, end = s + n;
	int k = 0, st;

	while (pos < end) {
		uint64_t pend = MIN(end, (pos / 8 + 1) * 8);

		assert_true(k < 8);
		block[k] = pos % 8 == 0 && pend - pos == 8;
		iov[k].iov_len = (pend - pos) * 512;
		if (block[k]) {
			iov[k].iov_base = malloc(4096);
			assert_non_null(iov[k].iov_base);
			memcpy(iov[k].iov_base, buf + (pos - s) * 512, 4096);
		} else {
			iov[k].iov_base = (void *)(buf + (pos - s) * 512);
		}
		k++;
		pos = pend;
	}
	memset(&io, 0, sizeof(io));
	io.op = DISK_OP_WRITE;
	io.flags = DISK_IO_ADOPT;
	io.sector = s;
	io.count = n;
	io.iov = iov;
	io.iovcnt = k;
	st = tu_layer_io(l, &io);
	for (int i = 0; i < k; i++)
		if (block[i])
			free(iov[i].iov_base);      /* the replaced page, or NULL */
	return st;
}

static void *ct_thread(void *arg)
{
	struct ct_ctx *c = arg;
	struct layer *l = c->l;
	uint64_t rs = c->seed ^ (0x1234567ull * (c->id + 1));
	uint64_t base = c->id * CT_PRIV;
	uint8_t *shadow = calloc(CT_PRIV, 512);
	uint8_t *present = calloc(CT_PRIV, 1);
	uint8_t *buf = malloc(CT_PRIV * 512);
	uint64_t *words = calloc(BITMAP_WORDS(CT_PRIV), 8);
	bool big = false;

	tu_reactor();
	if (!shadow || !present || !buf || !words)
		CT_FAIL(c, "thread %u: out of memory", c->id);

	for (unsigned it = 0; it < c->iters; it++) {
		unsigned kind = tu_rand(&rs) % 100;
		uint64_t n = 1 + tu_rand(&rs) % 32;
		uint64_t off = tu_rand(&rs) % (CT_PRIV - n + 1);
		uint64_t s = base + off;

		if (kind < 35) {
			uint32_t flags = tu_rand(&rs) % 5 == 0 ? DISK_IO_NO_OVERWRITE : 0;
			uint64_t tag = (uint64_t)c->id << 32 | it;

			tu_fill(buf, n * 512, tag, s * 512);
			if (!flags && tu_rand(&rs) % 2) {
				/* Adopted pages, with the others' reads, unmaps
				 * and resizes going on. */
				if (ct_adopt_write(l, s, n, buf) != DISK_OK)
					CT_FAIL(c, "thread %u: adopted write failed", c->id);
			} else if (tu_layer_write(l, s, buf, n * 512, flags) != DISK_OK) {
				CT_FAIL(c, "thread %u: write failed", c->id);
			}
			for (uint64_t i = 0; i < n; i++) {
				if ((flags & DISK_IO_NO_OVERWRITE) && present[off + i])
					continue;
				memcpy(shadow + (off + i) * 512, buf + i * 512, 512);
				present[off + i] = M_DATA;
			}
		} else if (kind < 60) {
			struct bitmap bm;

			memset(buf, 0xa5, n * 512);
			if (read_marked(l, 512, s, n, buf, &bm, words) != DISK_OK)
				CT_FAIL(c, "thread %u: read failed", c->id);
			for (uint64_t i = 0; i < n; i++) {
				bool marked = bitmap_test(&bm, s + i);

				if (marked != (bool)present[off + i])
					CT_FAIL(c, "thread %u it %u: mark of %" PRIu64 " wrong",
						c->id, it, s + i);
				if (present[off + i] == M_DATA &&
				    memcmp(buf + i * 512, shadow + (off + i) * 512, 512))
					CT_FAIL(c, "thread %u it %u: data of %" PRIu64 " wrong",
						c->id, it, s + i);
				if (present[off + i] == M_ZEROED && !tu_is_zero(buf + i * 512, 512))
					CT_FAIL(c, "thread %u it %u: zeroed %" PRIu64 " not zero",
						c->id, it, s + i);
				if (!marked && buf[i * 512] != 0xa5)
					CT_FAIL(c, "thread %u it %u: absent %" PRIu64 " touched",
						c->id, it, s + i);
			}
		} else if (kind < 68) {
			/* Mostly small unmaps; sometimes a whole leaf (the
			 * exclusive path) while the others keep going. Half
			 * of them make zeroed runs (zero subtrees for whole
			 * leaves; zero_after stays at or above CT_COUNT). */
			bool niz = tu_rand(&rs) % 2;

			if (tu_rand(&rs) % 8 == 0) {
				off = (tu_rand(&rs) % 2) * 4096;
				s = base + off;
				n = 4096;
			}
			if (tu_layer_unmap(l, s, n, niz) != DISK_OK)
				CT_FAIL(c, "thread %u: unmap failed", c->id);
			memset(present + off, niz ? M_ABSENT : M_ZEROED, n);
		} else if (kind < 80) {
			uint64_t sn = 1 + tu_rand(&rs) % 64;
			uint64_t ss = CT_SHARED + tu_rand(&rs) % (CT_SHARED_N - sn + 1);
			uint64_t nmarked = 0;

			if (tu_layer_read(l, ss, buf, sn * 512, &nmarked) != DISK_OK || nmarked != sn)
				CT_FAIL(c, "thread %u: shared read failed", c->id);
			if (tu_check(buf, sn * 512, 99, ss * 512) != -1)
				CT_FAIL(c, "thread %u it %u: shared data wrong at %" PRIu64,
					c->id, it, ss);
		} else if (kind < 92) {
			uint64_t tn = 1 + tu_rand(&rs) % 16;
			uint64_t ts = CT_TORN + tu_rand(&rs) % (CT_TORN_N - tn + 1);

			if (tu_rand(&rs) % 2) {
				uint64_t *w = (uint64_t *)buf;

				for (uint64_t i = 0; i < tn * 64; i++)
					w[i] = (uint64_t)c->id << 48 | (uint64_t)it << 8 | (i / 64);
				/* A reader never sees a page half swapped either. */
				if ((tu_rand(&rs) % 2 ? ct_adopt_write(l, ts, tn, buf) :
				     tu_layer_write(l, ts, buf, tn * 512, 0)) != DISK_OK)
					CT_FAIL(c, "thread %u: torn write failed", c->id);
			} else {
				uint64_t nmarked = 0;

				if (tu_layer_read(l, ts, buf, tn * 512, &nmarked) != DISK_OK ||
				    nmarked != tn)
					CT_FAIL(c, "thread %u: torn read failed", c->id);
				for (uint64_t sct = 0; sct < tn; sct++) {
					const uint64_t *w = (const uint64_t *)(buf + sct * 512);

					for (unsigned i = 1; i < 64; i++)
						if (w[i] != w[0])
							CT_FAIL(c, "thread %u: torn sector %" PRIu64,
								c->id, ts + sct);
				}
			}
		} else if (kind < 97) {
			struct disk_extent e;
			uint32_t nr;

			if (layer_bs(l, s, n, &e, &nr) != DISK_OK || nr != 1)
				CT_FAIL(c, "thread %u: block status failed", c->id);
			uint64_t run = 1;

			static const uint32_t flags[] = {
				[M_ABSENT] = DISK_EXTENT_HOLE, [M_DATA] = 0, [M_ZEROED] = RAM_ZERO_TAIL,
			};

			while (run < n && flags[present[off + run]] == flags[present[off]])
				run++;
			if (e.count != run || e.flags != flags[present[off]])
				CT_FAIL(c, "thread %u it %u: block status at %" PRIu64 " wrong",
					c->id, it, s);
		} else if (c->id == 0) {
			/* Toggle the size above everyone's ranges: exclusive mode
			 * and a taller tree under load. */
			big = !big;
			if (ramlayer_resize(l, big ? CT_BIG : CT_COUNT) != 0)
				CT_FAIL(c, "resize failed");
		} else {
			/* Write past CT_COUNT, racing with the resizes: fails or
			 * succeeds, but must never leave data past the count. */
			s = CT_COUNT + tu_rand(&rs) % (4096 - n);
			int st = tu_layer_write(l, s, buf, n * 512, 0);

			if (st != DISK_OK && st != DISK_ILLEGAL_BLOCK)
				CT_FAIL(c, "thread %u: high write failed", c->id);
		}
	}
	for (uint64_t i = 0; i < CT_PRIV; i++)
		c->present += present[i] == M_DATA;
out:
	tu_reactor_done();
	free(shadow);
	free(present);
	free(buf);
	free(words);
	return NULL;
}

static void test_ramlayer_concurrent(void **state)
{
	struct layer *l = new_layer(CT_COUNT * 512, 512, NULL);
	struct ct_ctx ctx[CT_THREADS];
	pthread_t th[CT_THREADS];
	uint64_t seed = tu_seed("ramlayer_concurrent");
	CLEANUP_FREE uint8_t *buf = malloc(CT_SHARED_N * 512);

	assert_non_null(buf);
	tu_fill(buf, CT_SHARED_N * 512, 99, CT_SHARED * 512);
	assert_int_equal(tu_layer_write(l, CT_SHARED, buf, CT_SHARED_N * 512, 0), DISK_OK);
	memset(buf, 0, CT_TORN_N * 512);
	assert_int_equal(tu_layer_write(l, CT_TORN, buf, CT_TORN_N * 512, 0), DISK_OK);

	for (unsigned i = 0; i < CT_THREADS; i++) {
		ctx[i] = (struct ct_ctx){
			.l = l, .id = i, .seed = seed,
			.iters = under_valgrind() ? 3000 : 40000,
		};
		assert_int_equal(pthread_create(&th[i], NULL, ct_thread, &ctx[i]), 0);
	}
	for (unsigned i = 0; i < CT_THREADS; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < CT_THREADS; i++)
		if (ctx[i].failure[0])
			fail_msg("seed %" PRIu64 ": %s", seed, ctx[i].failure);

	/* The counters match what the threads left, once the size is back. */
	uint64_t want = CT_SHARED_N + CT_TORN_N, data;

	for (unsigned i = 0; i < CT_THREADS; i++)
		want += ctx[i].present;
	assert_int_equal(ramlayer_resize(l, CT_COUNT), 0);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, want * 512);
	layer_free(l);
}

/* Zeroed runs: an unmap over a layer below (what write-zeroes becomes on
 * memdiff:) makes its sectors present zeroes that hold no pages, whole
 * leaves of them as zero subtrees; reads give zeroes and mark them, block
 * status says ZERO | HOLE, and a later write materialises only the pages
 * it touches, with zeroes around its data. */
static void test_ramlayer_zeroed_runs(void **state)
{
	const uint64_t n = 64 * MiB / 512;        /* 32 leaves of 4096 sectors */
	struct layer_meta lower = {
		.sector_size = 512, .sector_count = n, .physical_sector_size = 512,
		.unmap_behavior = DISK_UNMAP_UNSPECIFIED, .optimal_unmap_sectors = 1,
	};
	struct layer_meta meta;
	struct layer *l = NULL;
	char err[256];
	CLEANUP_FREE uint8_t *buf = malloc(3 * 4096 * 512);
	CLEANUP_FREE uint64_t *words = calloc(BITMAP_WORDS(3 * 4096), 8);
	struct bitmap bm;
	struct disk_extent e;
	uint32_t nr;
	uint64_t data, alloc, alloc0, nmarked;

	assert_non_null(buf);
	assert_non_null(words);
	assert_int_equal(ramlayer_new(0, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, &lower, &meta, err, sizeof(err)), 0);
	assert_int_equal(meta.unmap_behavior, DISK_UNMAP_ZEROES);
	ramlayer_memory(l, NULL, &alloc0);

	/* 8 MiB of data, then most of it zeroed (not leaf-aligned). */
	assert_int_equal(write_tag(l, 512, 0, 4 * 4096, 1, 0), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 8 * MiB);
	assert_true(alloc > alloc0 + 8 * MiB);
	assert_int_equal(tu_layer_unmap(l, 100, 4 * 4096 - 200, false), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 200 * 512);
	/* Only the 13 pages at each end holding those sectors, their two
	 * leaves and the root are left (the leaves in between became zero
	 * subtrees)... */
	assert_true(alloc <= alloc0 + 26 * (4096 + 16) + 2 * (LEAF_BYTES + 16) + 4096 + 16);
	/* ... and the zeroes read back marked. */
	memset(buf, 0xa5, 3 * 4096 * 512);
	assert_int_equal(read_marked(l, 512, 0, 3 * 4096, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 3 * 4096);
	assert_int_equal(tu_check(buf, 100 * 512, 1, 0), -1);
	assert_true(tu_is_zero(buf + 100 * 512, (3 * 4096 - 100) * 512));
	assert_int_equal(layer_bs(l, 0, n, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 100);
	assert_int_equal(e.flags, 0);
	assert_int_equal(layer_bs(l, 100, n - 100, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 4 * 4096 - 200);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);
	assert_int_equal(layer_bs(l, 4 * 4096 - 100, n - 4 * 4096 + 100, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 100);
	assert_int_equal(e.flags, 0);
	assert_int_equal(layer_bs(l, 4 * 4096, n - 4 * 4096, &e, &nr), DISK_OK);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);

	/* Zeroing the rest of the layer, all absent: metadata only (zero
	 * subtrees, a leaf at the unaligned start), no page. */
	assert_int_equal(tu_layer_unmap(l, 4 * 4096 + 3, n - 4 * 4096 - 4, false), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 200 * 512);
	assert_true(alloc <= alloc0 + 26 * (4096 + 16) + 4 * (LEAF_BYTES + 16) + 4096 + 16);
	assert_int_equal(layer_bs(l, 4 * 4096, n - 4 * 4096, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 3);
	assert_int_equal(e.flags, DISK_EXTENT_HOLE);
	assert_int_equal(layer_bs(l, 4 * 4096 + 3, n - 4 * 4096 - 3, &e, &nr), DISK_OK);
	assert_int_equal(e.count, n - 4 * 4096 - 4);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);
	/* Absent sectors stay unmarked; zeroed ones read zero. */
	memset(buf, 0xa5, 16 * 512);
	assert_int_equal(read_marked(l, 512, 4 * 4096, 16, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 13);
	assert_int_equal(buf[0], 0xa5);
	assert_true(tu_is_zero(buf + 3 * 512, 13 * 512));
	assert_int_equal(tu_layer_read(l, n - 1, buf, 512, &nmarked), DISK_OK);
	assert_int_equal(nmarked, 0);

	/* A partial write into a zero subtree materialises one page: its
	 * data, with zeroes around it. */
	assert_int_equal(write_tag(l, 512, 20 * 4096 + 2, 3, 2, 0), DISK_OK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, 203 * 512);
	memset(buf, 0xa5, 4096 * 512);
	assert_int_equal(read_marked(l, 512, 20 * 4096 - 2048, 4096, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 4096);
	assert_true(tu_is_zero(buf, (2048 + 2) * 512));
	assert_int_equal(tu_check(buf + (2048 + 2) * 512, 3 * 512, 2, (20 * 4096 + 2) * 512), -1);
	assert_true(tu_is_zero(buf + (2048 + 5) * 512, (2048 - 5) * 512));
	assert_int_equal(layer_bs(l, 20 * 4096, 8, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 2);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);
	assert_int_equal(layer_bs(l, 20 * 4096 + 2, 8, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 3);
	assert_int_equal(e.flags, 0);

	/* Write-no-overwrite (a cache fill) leaves zeroed sectors alone, in a
	 * zero subtree and in a page, and allocates nothing for them. */
	ramlayer_memory(l, NULL, &alloc0);
	assert_int_equal(write_tag(l, 512, 10 * 4096, 4096, 3, DISK_IO_NO_OVERWRITE), DISK_OK);
	assert_int_equal(write_tag(l, 512, 20 * 4096, 8, 3, DISK_IO_NO_OVERWRITE), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 203 * 512);
	assert_int_equal(alloc, alloc0);
	assert_int_equal(tu_layer_read(l, 20 * 4096, buf, 8 * 512, NULL), DISK_OK);
	assert_true(tu_is_zero(buf, 2 * 512));
	assert_true(tu_is_zero(buf + 5 * 512, 3 * 512));

	/* Zeroing over data in a page keeps the page while data is left,
	 * frees it with the last; data_bytes counts data only. */
	assert_int_equal(tu_layer_unmap(l, 20 * 4096 + 3, 1, false), DISK_OK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, 202 * 512);
	assert_int_equal(tu_layer_read(l, 20 * 4096 + 2, buf, 3 * 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 512, 2, (20 * 4096 + 2) * 512), -1);
	assert_true(tu_is_zero(buf + 512, 512));
	assert_int_equal(tu_check(buf + 1024, 512, 2, (20 * 4096 + 4) * 512), -1);
	ramlayer_memory(l, NULL, &alloc0);
	assert_int_equal(tu_layer_unmap(l, 20 * 4096, 8, false), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 200 * 512);
	assert_int_equal(alloc0 - alloc, 4096 + 16);

	/* Dropping part of a zero subtree (next_is_zero) makes just that
	 * part absent again. */
	assert_int_equal(tu_layer_unmap(l, 30 * 4096 + 5, 10, true), DISK_OK);
	assert_int_equal(read_marked(l, 512, 30 * 4096, 32, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 22);
	for (uint64_t i = 0; i < 32; i++)
		assert_int_equal(bitmap_test(&bm, 30 * 4096 + i), i < 5 || i >= 15);

	/* A shrink across a zero subtree, then a grow: the new sectors are
	 * past zero_after (zeroes); those before the end keep their runs. */
	assert_int_equal(ramlayer_resize(l, 25 * 4096 + 7), 0);
	assert_int_equal(layer_bs(l, 25 * 4096, 7, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 7);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);
	assert_int_equal(ramlayer_resize(l, n), 0);
	assert_int_equal(read_marked(l, 512, 25 * 4096, 4096, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 4096);
	assert_true(tu_is_zero(buf, 4096 * 512));
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, 200 * 512);
	layer_free(l);

	/* A whole leaf zeroed over data (the leaf becomes a zero subtree),
	 * then written into with adopted pages. */
	struct layer_meta small = lower;

	small.sector_count = 4096 + 8;
	assert_int_equal(ramlayer_new(0, 0, &l, err, sizeof(err)), 0);
	assert_int_equal(attach(l, &small, &meta, err, sizeof(err)), 0);
	ramlayer_memory(l, NULL, &alloc0);
	assert_int_equal(write_tag(l, 512, 0, 4096, 4, 0), DISK_OK);
	assert_int_equal(tu_layer_unmap(l, 0, 4096, false), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 0);
	assert_true(alloc <= alloc0 + 4096 + 16);     /* the root node alone */
	assert_int_equal(layer_bs(l, 0, 4096 + 8, &e, &nr), DISK_OK);
	assert_int_equal(e.count, 4096);
	assert_int_equal(e.flags, RAM_ZERO_TAIL);
	tu_fill(buf, 16 * 512, 5, 8 * 512);
	assert_int_equal(ct_adopt_write(l, 8, 16, buf), DISK_OK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, 16 * 512);
	memset(buf, 0xa5, 32 * 512);
	assert_int_equal(read_marked(l, 512, 0, 32, buf, &bm, words), DISK_OK);
	assert_int_equal(bm.nset, 32);
	assert_true(tu_is_zero(buf, 8 * 512));
	assert_int_equal(tu_check(buf + 8 * 512, 16 * 512, 5, 8 * 512), -1);
	assert_true(tu_is_zero(buf + 24 * 512, 8 * 512));
	layer_free(l);
}

/* The same from the outside: four reactors, each with its own range of a
 * ramdisk, plus reads of a shared pattern. */
struct cd_ctx {
	struct disk *d;
	unsigned id;
	unsigned iters;
	int failed;
};

static void *cd_thread(void *arg)
{
	struct cd_ctx *c = arg;
	uint8_t buf[16 * 4096];
	uint64_t rs = 77 + c->id;

	tu_reactor();
	for (unsigned it = 0; it < c->iters && !c->failed; it++) {
		uint64_t n = 1 + tu_rand(&rs) % 16;
		uint64_t s = c->id * 1024 + tu_rand(&rs) % (1024 - n + 1);

		tu_fill(buf, n * 4096, it, s * 4096);
		if (disk_sync_write(c->d, s, buf, n * 4096, 0) != DISK_OK)
			c->failed = 1;
		memset(buf, 0, sizeof(buf));
		if (disk_sync_read(c->d, s, buf, n * 4096) != DISK_OK ||
		    tu_check(buf, n * 4096, it, s * 4096) != -1)
			c->failed = 2;
		s = 4096 + tu_rand(&rs) % (1024 - n + 1);
		if (disk_sync_read(c->d, s, buf, n * 4096) != DISK_OK ||
		    tu_check(buf, n * 4096, 55, s * 4096) != -1)
			c->failed = 3;
	}
	tu_reactor_done();
	return NULL;
}

static void test_ramlayer_concurrent_disk(void **state)
{
	struct disk *d = NULL;
	char err[256];
	struct cd_ctx ctx[4];
	pthread_t th[4];
	CLEANUP_FREE uint8_t *buf = malloc(1024 * 4096);

	assert_non_null(buf);
	assert_int_equal(ramdisk_new(5120 * 4096, 4096, false, &d, err, sizeof(err)), 0);
	tu_fill(buf, 1024 * 4096, 55, 4096ull * 4096);
	assert_int_equal(disk_sync_write(d, 4096, buf, 1024 * 4096, 0), DISK_OK);
	for (unsigned i = 0; i < 4; i++) {
		ctx[i] = (struct cd_ctx){ .d = d, .id = i, .iters = under_valgrind() ? 300 : 3000 };
		assert_int_equal(pthread_create(&th[i], NULL, cd_thread, &ctx[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(ctx[i].failed, 0);
	disk_unref(d);
}

/* ---- memory ------------------------------------------------------------- */

static uint64_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static void test_ramlayer_memory(void **state)
{
	const uint64_t blocks = 1 * GiB / 4096, nwrite = 64 * MiB / 4096;
	struct layer *l = new_layer(1 * GiB, 512, NULL);
	CLEANUP_FREE uint32_t *order = malloc(blocks * sizeof(uint32_t));
	uint64_t seed = tu_seed("ramlayer_memory"), rs = seed;
	uint8_t buf[4096];
	uint64_t data, alloc, alloc0;

	assert_non_null(order);
	ramlayer_memory(l, &data, &alloc0);
	assert_int_equal(data, 0);
	/* Random distinct 4 KiB blocks: a partial Fisher-Yates shuffle. */
	for (uint64_t i = 0; i < blocks; i++)
		order[i] = (uint32_t)i;
	for (uint64_t i = 0; i < nwrite; i++) {
		uint64_t j = i + tu_rand(&rs) % (blocks - i);
		uint32_t t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	uint64_t heap1 = heap_in_use();

	for (uint64_t i = 0; i < nwrite; i++) {
		tu_fill(buf, sizeof(buf), 5, (uint64_t)order[i] * 4096);
		assert_int_equal(tu_layer_write(l, (uint64_t)order[i] * 8, buf, sizeof(buf), 0),
				 DISK_OK);
	}
	ramlayer_memory(l, &data, &alloc);
	print_message("ramlayer memory: data %" PRIu64 " alloc %" PRIu64 " (%.3fx)\n",
		      data, alloc, (double)alloc / (double)data);
	assert_int_equal(data, 64 * MiB);
	assert_true(alloc <= data + data / 10 + 64 * KiB);

	/* What malloc really holds, when it can tell (not under valgrind). */
	uint64_t heap2 = heap_in_use();

	if (heap2 > heap1 + data / 2) {
		print_message("ramlayer heap: %" PRIu64 " bytes for %" PRIu64 " of data\n",
			      heap2 - heap1, data);
		assert_true(heap2 - heap1 <= data + data / 10 + 256 * KiB);
	}

	for (uint64_t i = 0; i < nwrite; i += nwrite / 64) {
		assert_int_equal(tu_layer_read(l, (uint64_t)order[i] * 8, buf, sizeof(buf), NULL),
				 DISK_OK);
		assert_int_equal(tu_check(buf, sizeof(buf), 5, (uint64_t)order[i] * 4096), -1);
	}

	/* Unmap everything: the memory goes back. */
	assert_int_equal(tu_layer_unmap(l, 0, 1 * GiB / 512, true), DISK_OK);
	ramlayer_memory(l, &data, &alloc);
	assert_int_equal(data, 0);
	assert_true(alloc <= alloc0);
	uint64_t heap3 = heap_in_use();

	if (heap2 > heap1 + 32 * MiB)
		assert_true(heap3 <= heap1 + 256 * KiB);
	layer_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ramlayer_ctor_errors),
		cmocka_unit_test(test_ramlayer_properties),
		cmocka_unit_test(test_ramlayer_describe),
		cmocka_unit_test(test_ramlayer_4k_sectors),
		cmocka_unit_test(test_ramlayer_lazy_attach),
		cmocka_unit_test(test_ramlayer_read_marks_present),
		cmocka_unit_test(test_ramlayer_write_no_overwrite),
		cmocka_unit_test(test_ramlayer_unmap_rules),
		cmocka_unit_test(test_ramlayer_unmap_frees_pages),
		cmocka_unit_test(test_ramlayer_resize),
		cmocka_unit_test(test_ramlayer_resize_watch),
		cmocka_unit_test(test_ramlayer_block_status),
		cmocka_unit_test(test_ramlayer_huge_sparse),
		cmocka_unit_test(test_ramlayer_zeroed_runs),
		cmocka_unit_test(test_ramlayer_contract_layer),
		cmocka_unit_test(test_ramlayer_contract_disk),
		cmocka_unit_test(test_ramlayer_model_512),
		cmocka_unit_test(test_ramlayer_model_4096),
		cmocka_unit_test(test_ramlayer_model_8192),
		cmocka_unit_test(test_ramlayer_model_zeroed_512),
		cmocka_unit_test(test_ramlayer_model_zeroed_4096),
		cmocka_unit_test(test_ramlayer_concurrent),
		cmocka_unit_test(test_ramlayer_concurrent_disk),
		cmocka_unit_test(test_ramlayer_memory),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);

	tu_reactor_done();
	return ret;
}
