/* SPDX-License-Identifier: MIT */
/*
 * test-layered.c: the layered disk (docs/openvmm-compat.md §3 and
 * the §7.2 tests): read cache, diff, resize, unmap, 4K sectors, constructor
 * errors, geometry inheritance, mismatched sector sizes, validation, the
 * metadata folds, the intended clamp semantics, write-through, block
 * status naming layers, disk-as-layer, and fused transforms (io->xform):
 * which stacks advertise them and that every read path applies them; the
 * per-layer statistics (layer_stats_enable).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "common/iostats.h"
#include "tests/unit/contract.h"
#include "tests/unit/mockdisk.h"
#include "tests/unit/testutil.h"

static char err[256];

static struct layer *ram(uint64_t bytes, uint32_t ss)
{
	struct layer *l;

	assert_int_equal(ramlayer_new(bytes, ss, &l, err, sizeof(err)), 0);
	return l;
}

static struct layer *disk_layer(struct disk *d)
{
	struct layer *l;

	assert_int_equal(disklayer_new(d, &l), 0);
	return l;
}

/* Builds a layered disk; asserts success. */
static struct disk *stack(const struct layered_entry *e, unsigned n, bool ro)
{
	struct disk *d;
	int r = layered_disk_new(e, n, ro, &d, err, sizeof(err));

	if (r != 0)
		fprintf(stderr, "layered_disk_new: %s\n", err);
	assert_int_equal(r, 0);
	return d;
}

/* Fills sector @s..s+n of a layer with the per-sector pattern (tag, LBA). */
static void fill_layer(struct layer *l, uint64_t s, uint64_t n, uint32_t ss, uint64_t tag)
{
	void *buf = malloc(n * ss);

	tu_fill(buf, n * ss, tag, s * ss);
	assert_int_equal(tu_layer_write(l, s, buf, n * ss, 0), DISK_OK);
	free(buf);
}

static void expect_pattern(struct disk *d, uint64_t s, uint64_t n, uint64_t tag)
{
	uint32_t ss = disk_sector_size(d);
	void *buf = malloc(n * ss);

	assert_int_equal(disk_sync_read(d, s, buf, n * ss), DISK_OK);
	assert_int_equal(tu_check(buf, n * ss, tag, s * ss), -1);
	free(buf);
}

static void expect_zero(struct disk *d, uint64_t s, uint64_t n)
{
	uint32_t ss = disk_sector_size(d);
	void *buf = malloc(n * ss);

	memset(buf, 0xee, n * ss);
	assert_int_equal(disk_sync_read(d, s, buf, n * ss), DISK_OK);
	assert_true(tu_is_zero(buf, n * ss));
	free(buf);
}

static uint64_t ram_sectors_held(struct layer *l, uint32_t ss)
{
	uint64_t data, alloc;

	ramlayer_memory(l, &data, &alloc);
	return data / ss;
}

/* §7.2.1 */
static void test_layered_read_cache_fills(void **state)
{
	struct layer *cache = ram(0, 0), *bottom = ram(2048 * 512, 512);
	struct layered_entry e[] = { { cache, true, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	const uint64_t lbas[] = { 0, 2, 4, 6, 8 };

	fill_layer(bottom, 0, 2048, 512, 1);
	for (int round = 0; round < 2; round++)
		for (unsigned i = 0; i < ARRAY_SIZE(lbas); i++)
			expect_pattern(d, lbas[i], 1, 1);
	assert_int_equal(ram_sectors_held(cache, 512), 5);
	expect_pattern(d, 1, 15, 1);
	assert_int_equal(ram_sectors_held(cache, 512), 16);
	contract_disk(d);
	disk_unref(d);
}

/* A cache over a disk-as-layer: the second read does not reach the disk. */
static void test_layered_read_cache_spares_lower_disk(void **state)
{
	struct mockdisk m;
	struct mockdisk_opts o = { .sectors = 256 };
	struct disk *md = mockdisk_new(&m, &o);
	struct layer *cache = ram(0, 0);
	struct layered_entry e[] = { { cache, true, false }, { disk_layer(md), false, false } };
	struct disk *d = stack(e, 2, true);
	uint8_t buf[8 * 512];

	tu_fill(m.data, 256 * 512, 3, 0);
	expect_pattern(d, 10, 8, 3);
	assert_int_equal(m.reads, 1);
	expect_pattern(d, 10, 8, 3);
	assert_int_equal(m.reads, 1);
	/* A partly cached read fetches only the missing run. */
	expect_pattern(d, 6, 8, 3);
	assert_int_equal(m.reads, 2);
	assert_int_equal(ram_sectors_held(cache, 512), 12);
	/* Data in the caller's buffer is not what the cache was filled from:
	 * scribbling on it afterwards does not change the cache. */
	assert_int_equal(disk_sync_read(d, 100, buf, sizeof(buf)), DISK_OK);
	memset(buf, 0x77, sizeof(buf));
	expect_pattern(d, 100, 8, 3);
	disk_unref(d);
	assert_int_equal(m.closes, 1);
	mockdisk_release(&m);
}

/* A cache over layers that hold nothing stores present zeroes. */
static void test_layered_read_cache_stores_zeroes(void **state)
{
	struct layer *cache = ram(0, 0), *bottom = ram(64 * 512, 512);
	struct layered_entry e[] = { { cache, true, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);

	expect_zero(d, 0, 16);
	assert_int_equal(ram_sectors_held(cache, 512), 16);
	disk_unref(d);
}

/* §7.2.2 */
static void test_layered_diff(void **state)
{
	struct layer *top = ram(0, 0), *bottom = ram(64 * 512, 512);
	struct layered_entry e[] = { { top, false, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	uint8_t t1[1024], t2[512];

	fill_layer(bottom, 0, 64, 512, 1);
	expect_pattern(d, 10, 2, 1);
	tu_fill(t1, sizeof(t1), 2, 10 * 512);
	assert_int_equal(disk_sync_write(d, 10, t1, sizeof(t1), 0), DISK_OK);
	tu_fill(t2, sizeof(t2), 3, 11 * 512);
	assert_int_equal(disk_sync_write(d, 11, t2, sizeof(t2), 0), DISK_OK);
	expect_pattern(d, 9, 1, 1);
	expect_pattern(d, 10, 1, 2);
	expect_pattern(d, 11, 1, 3);
	expect_pattern(d, 12, 1, 1);
	/* The bottom layer was not written. */
	assert_int_equal(ram_sectors_held(bottom, 512), 64);
	assert_int_equal(ram_sectors_held(top, 512), 2);
	disk_unref(d);
}

/* §7.2.3 */
static void test_layered_resize_half_then_grow(void **state)
{
	const uint64_t n = 128;
	struct layer *top = ram(0, 0), *bottom = ram(n * 512, 512);
	struct layered_entry e[] = { { top, false, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);

	fill_layer(bottom, 0, n, 512, 1);
	assert_int_equal(ramlayer_resize(top, n / 2), 0);
	assert_int_equal(disk_sector_count(d), n / 2);
	assert_int_equal(ramlayer_resize(top, n), 0);
	assert_int_equal(disk_sector_count(d), n);
	expect_pattern(d, 0, n / 2, 1);
	expect_zero(d, n / 2, n / 2);
	assert_int_equal(ramlayer_resize(top, 0), -EINVAL);
	disk_unref(d);
}

/* §7.2.4 */
/* A lone RAM layer reports ZEROES: write-zeroes becomes an unmap, which
 * frees pages instead of allocating pages of zeroes; FAST_ZERO succeeds;
 * NO_UNMAP still writes (and allocates) real zeroes. */
static void test_layered_ram_write_zeroes_frees(void **state)
{
	const uint64_t n = 1024;
	struct layer *l = ram(n * 512, 512);
	struct layered_entry e[] = { { l, false, false } };
	struct disk *d = stack(e, 1, false);
	uint64_t data;

	fill_layer(l, 0, n, 512, 3);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, n * 512);
	assert_int_equal(disk_sync_write_zeroes(d, 0, n / 2, DISK_IO_FAST_ZERO), DISK_OK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, n / 2 * 512);
	expect_zero(d, 0, n / 2);
	expect_pattern(d, n / 2, n / 2, 3);
	/* Zeroing never-written space allocates nothing. */
	assert_int_equal(disk_sync_write_zeroes(d, 0, n / 2, 0), DISK_OK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, n / 2 * 512);
	/* NO_UNMAP: the zeroes are stored. */
	assert_int_equal(disk_sync_write_zeroes(d, 0, 64, DISK_IO_NO_UNMAP), DISK_OK);
	ramlayer_memory(l, &data, NULL);
	assert_int_equal(data, (n / 2 + 64) * 512);
	expect_zero(d, 0, n / 2);
	disk_unref(d);
}

/* Unmap on a diff disk (memdiff:) reads back zero: the RAM layer keeps
 * the unmapped sectors as zeroed runs that hide the layer below. */
static void test_layered_unmap_on_diff(void **state)
{
	const uint64_t n = 128;
	struct layer *top = ram(0, 0), *bottom = ram(n * 512, 512);
	struct layered_entry e[] = { { top, false, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	struct disk_extent ext[4];
	uint32_t nr;

	fill_layer(bottom, 0, n, 512, 1);
	assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
	assert_int_equal(disk_sync_unmap(d, 8, n - 16, 0), DISK_OK);
	expect_pattern(d, 0, 8, 1);
	expect_zero(d, 8, n - 16);
	expect_pattern(d, n - 8, 8, 1);
	assert_int_equal(disk_sync_block_status(d, 0, n, ext, 4, &nr), DISK_OK);
	assert_int_equal(nr, 3);
	assert_int_equal(ext[0].flags, 0);
	assert_int_equal(ext[0].layer, 1);
	assert_int_equal(ext[1].count, n - 16);
	assert_int_equal(ext[1].flags, DISK_EXTENT_ZERO | DISK_EXTENT_HOLE);
	assert_int_equal(ext[1].layer, 0);
	assert_int_equal(ext[2].layer, 1);
	/* Reaching the end moves zero_after: zeroes still. */
	assert_int_equal(disk_sync_unmap(d, n / 2, n / 2, 0), DISK_OK);
	expect_pattern(d, 0, 8, 1);
	expect_zero(d, 8, n - 8);
	disk_unref(d);
}

/* Regression (mem:/memdiff: cannot zero fast): write-zeroes on a diff
 * disk took the emulation by writes, allocating a page per 4 KiB of
 * zeroes, and FAST_ZERO failed. Now it is an unmap that leaves zeroed
 * runs in the RAM layer: no page, the layer below hidden, block status
 * ZERO | HOLE from layer 0; later writes into it allocate only what they
 * touch. FAST_ZERO with NO_UNMAP must write data, so it is refused and
 * changes nothing; NO_UNMAP alone stores real zeroes. */
static void test_layered_diff_write_zeroes_fast(void **state)
{
	const uint64_t n = 8 * 4096;                     /* 16 MiB, 8 leaves */
	struct layer *top = ram(0, 0), *bottom = ram(n * 512, 512);
	struct layered_entry e[] = { { top, false, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	struct disk_extent ext[4];
	uint32_t nr;
	uint64_t data, alloc0, alloc;
	uint8_t buf[16 * 512];

	fill_layer(bottom, 0, n, 512, 1);
	assert_true(disk_get_info(d)->caps & DISK_CAP_FAST_ZERO);
	ramlayer_memory(top, &data, &alloc0);
	assert_int_equal(data, 0);

	assert_int_equal(disk_sync_write_zeroes(d, 1, n - 2, DISK_IO_FAST_ZERO | DISK_IO_FUA),
			 DISK_OK);
	ramlayer_memory(top, &data, &alloc);
	assert_int_equal(data, 0);
	/* The root node and the two leaves at the unaligned ends. */
	assert_true(alloc - alloc0 < 3 * 6 * 1024);
	expect_pattern(d, 0, 1, 1);
	expect_zero(d, 1, n - 2);
	expect_pattern(d, n - 1, 1, 1);
	assert_int_equal(disk_sync_block_status(d, 0, n, ext, 4, &nr), DISK_OK);
	assert_int_equal(nr, 3);
	assert_int_equal(ext[1].count, n - 2);
	assert_int_equal(ext[1].flags, DISK_EXTENT_ZERO | DISK_EXTENT_HOLE);
	assert_int_equal(ext[1].layer, 0);

	/* A partial write into the zeroes: one page, zeroes around it. */
	tu_fill(buf, 1024, 2, 5000 * 512);
	assert_int_equal(disk_sync_write(d, 5000, buf, 1024, 0), DISK_OK);
	ramlayer_memory(top, &data, &alloc);
	assert_int_equal(data, 1024);
	expect_zero(d, 4992, 8);
	expect_pattern(d, 5000, 2, 2);
	expect_zero(d, 5002, 6);

	/* FAST_ZERO | NO_UNMAP would have to write: refused, nothing changed. */
	assert_int_equal(disk_sync_write_zeroes(d, 5000, 8, DISK_IO_FAST_ZERO | DISK_IO_NO_UNMAP),
			 DISK_UNSUPPORTED);
	expect_pattern(d, 5000, 2, 2);
	/* NO_UNMAP alone stores zeroes (allocated, not a hole). */
	assert_int_equal(disk_sync_write_zeroes(d, 4992, 16, DISK_IO_NO_UNMAP), DISK_OK);
	ramlayer_memory(top, &data, NULL);
	assert_int_equal(data, 16 * 512 + 1024 - 2 * 512);
	expect_zero(d, 4992, 16);
	assert_int_equal(disk_sync_block_status(d, 4992, 16, ext, 4, &nr), DISK_OK);
	assert_int_equal(ext[0].count, 16);
	assert_int_equal(ext[0].flags, 0);
	/* The lower layer is untouched. */
	assert_int_equal(tu_layer_read(bottom, 4992, buf, 16 * 512, NULL), DISK_OK);
	assert_int_equal(tu_check(buf, 16 * 512, 1, 4992 * 512), -1);
	disk_unref(d);
}

/* A read-cache RAM layer over data: zeroed runs are present, so reads do
 * not go below them and a cache fill never overwrites them. */
static void test_layered_zeroed_read_cache(void **state)
{
	const uint64_t n = 2 * 4096;
	struct layer *top = ram(0, 0), *bottom = ram(n * 512, 512);
	struct layered_entry e[] = { { top, true, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	uint64_t data;

	fill_layer(bottom, 0, n, 512, 1);
	assert_true(disk_get_info(d)->caps & DISK_CAP_FAST_ZERO);
	expect_pattern(d, 0, 64, 1);                        /* fills the cache */
	assert_int_equal(disk_sync_write_zeroes(d, 16, 4096 + 16, DISK_IO_FAST_ZERO), DISK_OK);
	expect_zero(d, 16, 4096 + 16);
	expect_pattern(d, 0, 16, 1);
	expect_pattern(d, 4096 + 32, 32, 1);
	ramlayer_memory(top, &data, NULL);
	assert_int_equal(data, (16 + 32) * 512);
	disk_unref(d);
}

/* Regression: a write-no-overwrite into a RAM layer wrote missing sectors
 * at or past zero_after, which read as zero (they are present). A read
 * that missed the read cache before a write-zeroes to the end of the disk
 * (which lowers zero_after and drops the sectors) filled them afterwards
 * with the lower layer's old data, visible after the zeroing completed.
 * The interleaving by hand: the top layer misses, the write-zeroes runs,
 * then the fill the layered read would write. */
static void test_layered_read_cache_fill_after_zero_regression(void **state)
{
	const uint64_t n = 2 * 4096;
	struct layer *top = ram(0, 0), *bottom = ram(n * 512, 512);
	struct layered_entry e[] = { { top, true, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	uint8_t old[8 * 512];
	uint64_t marked = 1;

	fill_layer(bottom, 0, n, 512, 1);
	assert_int_equal(tu_layer_read(top, n - 8, old, sizeof(old), &marked), DISK_OK);
	assert_int_equal(marked, 0);                        /* the read misses */
	tu_fill(old, sizeof(old), 1, (n - 8) * 512);        /* ... and reads below */
	assert_int_equal(disk_sync_write_zeroes(d, n - 64, 64, 0), DISK_OK);
	expect_zero(d, n - 64, 64);
	assert_int_equal(tu_layer_write(top, n - 8, old, sizeof(old), DISK_IO_NO_OVERWRITE),
			 DISK_OK);                          /* its fill, after */
	expect_zero(d, n - 64, 64);
	expect_pattern(d, 0, n - 64, 1);
	disk_unref(d);
}

/* §7.2.5 */
static void test_layered_4k_sectors(void **state)
{
	struct layer *l = ram(1 << 20, 4096);
	struct layered_entry e[] = { { l, false, false } };
	struct disk *d = stack(e, 1, false);
	uint8_t buf[3 * 4096];

	assert_int_equal(disk_sector_size(d), 4096);
	assert_int_equal(disk_get_info(d)->physical_sector_size, 4096);
	assert_int_equal(disk_sector_count(d), 256);
	tu_fill(buf, sizeof(buf), 9, 100 * 4096);
	assert_int_equal(disk_sync_write(d, 100, buf, sizeof(buf), 0), DISK_OK);
	expect_pattern(d, 100, 3, 9);
	contract_disk(d);
	disk_unref(d);
}

/* §7.2.6 */
static void test_layered_ram_constructor_errors(void **state)
{
	struct layer *l;

	assert_int_equal(ramlayer_new(1 << 20, 1000, &l, err, sizeof(err)), -EINVAL);
	assert_int_equal(ramlayer_new(1 << 20, 256, &l, err, sizeof(err)), -EINVAL);
	assert_int_equal(ramlayer_new(5000, 4096, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "5000"));
}

/* §7.2.7 */
static void test_layered_geometry_inheritance(void **state)
{
	struct layer *top = ram(0, 0), *bottom = ram(1 << 20, 4096);
	struct layered_entry e[] = { { top, false, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);

	assert_int_equal(disk_sector_size(d), 4096);
	assert_int_equal(disk_sector_count(d), 256);
	disk_unref(d);
}

/* §7.2.8 */
static void test_layered_mismatched_sector_sizes(void **state)
{
	for (int way = 0; way < 2; way++) {
		struct layer *a = ram(1 << 20, way ? 512 : 4096);
		struct layer *b = ram(1 << 20, way ? 4096 : 512);
		struct layered_entry e[] = { { a, false, false }, { b, false, false } };
		struct disk *d;

		assert_int_equal(layered_disk_new(e, 2, false, &d, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "mismatched sector size"));
		layer_free(a);
		layer_free(b);
	}
}

static void test_layered_validation_errors(void **state)
{
	struct disk *d;
	struct mockdisk m;
	struct mockdisk_opts o = { .sectors = 64, .read_only = true };
	struct disk *md;

	assert_int_equal(layered_disk_new(NULL, 0, false, &d, err, sizeof(err)), -EINVAL);

	/* A disk layer cannot be a read cache. */
	md = mockdisk_new(&m, &o);
	{
		struct layer *dl = disk_layer(md);
		struct layered_entry e[] = { { dl, true, false } };

		assert_int_equal(layered_disk_new(e, 1, true, &d, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "read cache"));
		/* A read-only layer in the write path of a writable disk. */
		e[0].read_cache = false;
		assert_int_equal(layered_disk_new(e, 1, false, &d, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "read-only"));
		/* ... is fine when the disk is read-only, or below the write path. */
		d = stack(e, 1, true);
		disk_unref(d);
	}
	mockdisk_release(&m);
	md = mockdisk_new(&m, &o);
	{
		struct layered_entry e[] = { { ram(0, 0), false, false }, { disk_layer(md), false, false } };

		d = stack(e, 2, false);
		disk_unref(d);
	}
	mockdisk_release(&m);

	/* Write-through must be contiguous from the top and not last. */
	{
		struct layer *a = ram(1 << 16, 512), *b = ram(1 << 16, 512), *c = ram(1 << 16, 512);
		struct layered_entry e[] = { { a, false, false }, { b, false, true }, { c, false, false } };

		assert_int_equal(layered_disk_new(e, 3, false, &d, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "contiguous"));
		e[0].write_through = true;
		e[2].write_through = true;
		assert_int_equal(layered_disk_new(e, 3, false, &d, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "last layer"));
		layer_free(a);
		layer_free(b);
		layer_free(c);
	}
	/* A lazily sized RAM layer alone has no size. */
	{
		struct layer *a = ram(0, 0);
		struct layered_entry e[] = { { a, false, false } };

		assert_true(layered_disk_new(e, 1, false, &d, err, sizeof(err)) < 0);
		layer_free(a);
	}
}

static void test_layered_metadata_folds(void **state)
{
	struct mockdisk m;
	struct mockdisk_opts o = { .sectors = 64, .unmap = DISK_UNMAP_ZEROES, .fua = false,
				   .has_disk_id = true, .disk_id = { 0xaa, 0xbb } };
	struct disk *d;

	/* A single RAM layer: ZEROES (nothing below it), FUA respected. */
	{
		struct layered_entry e[] = { { ram(1 << 16, 512), false, false } };

		d = stack(e, 1, false);
		assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
		assert_true(disk_get_info(d)->caps & DISK_CAP_FAST_ZERO);
		assert_true(disk_get_info(d)->fua_respected);
		assert_false(disk_get_info(d)->has_disk_id);
		assert_true(disk_get_info(d)->caps & DISK_CAP_COHERENT);
		disk_unref(d);
	}
	/* RAM with write-through over a layer that zeroes on unmap: ZEROES
	 * (both keep unmapped sectors as zeroes). */
	{
		struct layered_entry e[] = { { ram(0, 0), false, true },
					     { disk_layer(mockdisk_new(&m, &o)), false, false } };

		d = stack(e, 2, false);
		assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
		disk_unref(d);
		mockdisk_release(&m);
	}
	/* RAM with write-through over one that may not: IGNORED; FUA is the
	 * AND. */
	{
		struct mockdisk_opts ou = o;

		ou.unmap = DISK_UNMAP_UNSPECIFIED;
		struct layered_entry e[] = { { ram(0, 0), false, true },
					     { disk_layer(mockdisk_new(&m, &ou)), false, false } };

		d = stack(e, 2, false);
		assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_IGNORED);
		assert_false(disk_get_info(d)->fua_respected);
		assert_true(disk_get_info(d)->has_disk_id);
		assert_int_equal(disk_get_info(d)->disk_id[0], 0xaa);
		/* Writes and flushes go down the write path. */
		uint8_t buf[512] = { 5 };
		assert_int_equal(disk_sync_write(d, 3, buf, sizeof(buf), 0), DISK_OK);
		assert_int_equal(m.writes, 1);
		assert_int_equal(m.data[3 * 512], 5);
		assert_int_equal(disk_sync_flush(d), DISK_OK);
		assert_int_equal(m.flushes, 1);
		/* IGNORED: unmap never reaches a layer. */
		assert_int_equal(disk_sync_unmap(d, 0, 4, 0), DISK_OK);
		assert_int_equal(m.unmaps, 0);
		disk_unref(d);
		mockdisk_release(&m);
	}
	/* memdiff over anything: ZEROES (zeroed runs hide the layer below),
	 * so FAST_ZERO; FUA of the RAM layer only. */
	{
		struct layered_entry e[] = { { ram(0, 0), false, false },
					     { disk_layer(mockdisk_new(&m, &o)), false, false } };

		d = stack(e, 2, false);
		assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
		assert_true(disk_get_info(d)->caps & DISK_CAP_FAST_ZERO);
		assert_true(disk_get_info(d)->fua_respected);
		disk_unref(d);
		mockdisk_release(&m);
	}
	/* A disk layer alone that zeroes on unmap: ZEROES; the disk is the
	 * last layer, so next_is_zero is set (the disk ignores it). */
	{
		struct layered_entry e[] = { { disk_layer(mockdisk_new(&m, &o)), false, false } };

		d = stack(e, 1, false);
		assert_int_equal(disk_get_info(d)->unmap_behavior, DISK_UNMAP_ZEROES);
		memset(m.data, 0x11, 64 * 512);
		assert_int_equal(disk_sync_unmap(d, 4, 4, 0), DISK_OK);
		assert_int_equal(m.unmaps, 1);
		expect_zero(d, 4, 4);
		disk_unref(d);
		mockdisk_release(&m);
	}
}

/* The intended clamp semantics when a middle layer is smaller than the
 * layers around it (upstream's equality-only clamp can skip deeper layers
 * for earlier runs). */
static void test_layered_clamp_intended_semantics(void **state)
{
	struct layer *top = ram(16 * 512, 512), *mid = ram(8 * 512, 512);
	struct layer *bottom = ram(16 * 512, 512);
	struct layered_entry e[] = { { top, false, false }, { mid, false, false },
				     { bottom, false, false } };
	struct disk *d = stack(e, 3, false);
	uint8_t buf[16 * 512], want[16 * 512];

	fill_layer(bottom, 0, 16, 512, 1);
	fill_layer(top, 2, 2, 512, 2);
	assert_int_equal(disk_sync_read(d, 0, buf, sizeof(buf)), DISK_OK);
	tu_fill(want, 8 * 512, 1, 0);
	tu_fill(want + 2 * 512, 2 * 512, 2, 2 * 512);
	memset(want + 8 * 512, 0, 8 * 512);
	assert_memory_equal(buf, want, sizeof(buf));
	/* A read that starts beyond the smaller layer. */
	expect_zero(d, 9, 7);
	disk_unref(d);
}

static void test_layered_write_through(void **state)
{
	struct layer *top = ram(0, 0), *bottom = ram(64 * 512, 512);
	struct layered_entry e[] = { { top, false, true }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	uint8_t buf[4 * 512], back[4 * 512];
	uint64_t marked;

	tu_fill(buf, sizeof(buf), 4, 8 * 512);
	assert_int_equal(disk_sync_write(d, 8, buf, sizeof(buf), DISK_IO_FUA), DISK_OK);
	assert_int_equal(tu_layer_read(top, 8, back, sizeof(back), &marked), DISK_OK);
	assert_int_equal(marked, 4);
	assert_memory_equal(back, buf, sizeof(buf));
	assert_int_equal(tu_layer_read(bottom, 8, back, sizeof(back), &marked), DISK_OK);
	assert_int_equal(marked, 4);
	assert_memory_equal(back, buf, sizeof(buf));
	disk_unref(d);
}

static void test_layered_block_status_names_layers(void **state)
{
	struct layer *top = ram(0, 0), *bottom = ram(64 * 512, 512);
	struct layered_entry e[] = { { top, false, false }, { bottom, false, false } };
	struct disk *d = stack(e, 2, false);
	struct disk_extent ext[8];
	uint32_t nr;

	fill_layer(top, 0, 4, 512, 1);
	fill_layer(bottom, 8, 8, 512, 1);
	fill_layer(top, 10, 2, 512, 1);
	assert_int_equal(disk_sync_block_status(d, 0, 64, ext, 8, &nr), DISK_OK);
	assert_int_equal(nr, 6);
	assert_int_equal(ext[0].count, 4);
	assert_int_equal(ext[0].layer, 0);
	assert_int_equal(ext[0].flags, 0);
	assert_int_equal(ext[1].count, 4);
	assert_int_equal(ext[1].layer, -1);
	assert_int_equal(ext[1].flags, DISK_EXTENT_HOLE | DISK_EXTENT_ZERO);
	assert_int_equal(ext[2].count, 2);
	assert_int_equal(ext[2].layer, 1);
	assert_int_equal(ext[3].count, 2);
	assert_int_equal(ext[3].layer, 0);
	assert_int_equal(ext[4].count, 4);
	assert_int_equal(ext[4].layer, 1);
	assert_int_equal(ext[5].count, 48);
	assert_int_equal(ext[5].layer, -1);
	/* Room for one extent: only the first. */
	assert_int_equal(disk_sync_block_status(d, 2, 60, ext, 1, &nr), DISK_OK);
	assert_int_equal(nr, 1);
	assert_int_equal(ext[0].count, 2);
	assert_int_equal(disk_sync_block_status(d, 60, 8, ext, 8, &nr), DISK_ILLEGAL_BLOCK);
	disk_unref(d);
}

static void test_layered_zero_length_read_past_end(void **state)
{
	struct layered_entry e[] = { { ram(1 << 16, 512), false, false } };
	struct disk *d = stack(e, 1, false);
	uint8_t b;

	/* No layer is consulted (§1.3.1). */
	assert_int_equal(disk_sync_read(d, 1000, &b, 0), DISK_OK);
	disk_unref(d);
}

static void test_layered_contract_two_ram_layers(void **state)
{
	for (int rc = 0; rc < 2; rc++) {
		for (int ss = 512; ss <= 4096; ss *= 8) {
			struct layered_entry e[] = { { ram(0, 0), rc, false },
						     { ram(1 << 16, ss), false, false } };
			struct disk *d = stack(e, 2, false);

			contract_disk(d);
			disk_unref(d);
		}
	}
}

static void describe_layer(struct disk_describer *dd, unsigned i, const char *type, bool rc,
			   bool wt, uint64_t count, struct disk *inner)
{
	char *out = dd->opaque;
	char tmp[64];

	snprintf(tmp, sizeof(tmp), "[%u:%s:%d:%d]", i, type, rc, wt);
	strcat(out, tmp);
}

static void test_layered_describe(void **state)
{
	struct mockdisk m;
	struct mockdisk_opts o = { .sectors = 64 };
	struct layered_entry e[] = { { ram(0, 0), true, false },
				     { disk_layer(mockdisk_new(&m, &o)), false, false } };
	struct disk *d = stack(e, 2, true);
	char out[256] = "";
	struct disk_describer dd = { .layer_begin = describe_layer, .opaque = out };

	disk_describe(d, &dd);
	assert_string_equal(out, "[0:ram:1:0][1:disk:0:0]");
	assert_int_equal(layered_disk_layer_count(d), 2);
	assert_non_null(layered_disk_layer(d, 1));
	assert_null(layered_disk_layer(d, 2));
	disk_unref(d);
	mockdisk_release(&m);
}

/* Regression: a layered disk under a pass-through decorator (one whose
 * write/flush/unmap/block-status ops are NULL) used io->disk, i.e. the
 * decorator, as itself for write-path walks and block status. */
static const struct disk_ops passthru_ops = { .version = DISK_OPS_VERSION };

static void test_layered_under_passthrough_decorator(void **state)
{
	struct layered_entry e[] = { { .layer = ram(1 << 20, 512) } };
	struct disk *lower = stack(e, 1, false), *top;
	struct disk_info info;
	/* The decorator's private data: what layered_of(io->disk) would have
	 * seen (a zeroed "struct layered" with no write path). */
	void *poison = calloc(1, 4096);
	struct disk_extent ext[4];
	uint8_t buf[4096], back[4096];
	uint32_t nr = 0;

	disk_info_inherit(&info, lower);
	assert_int_equal(disk_new(&passthru_ops, &info, poison, lower, &top), 0);
	tu_fill(buf, sizeof(buf), 21, 0);
	assert_int_equal(disk_sync_write(top, 8, buf, sizeof(buf), 0), DISK_OK);
	assert_int_equal(disk_sync_flush(top), DISK_OK);
	assert_int_equal(disk_sync_read(lower, 8, back, sizeof(back)), DISK_OK);
	assert_memory_equal(back, buf, sizeof(buf));
	assert_int_equal(disk_sync_block_status(top, 0, 2048, ext, 4, &nr), DISK_OK);
	assert_int_equal(nr, 3);
	assert_int_equal(ext[0].count, 8);
	assert_int_equal(ext[1].count, 8);
	assert_int_equal(ext[1].flags, 0);
	assert_int_equal(disk_sync_unmap(top, 8, 8, 0), DISK_OK);
	assert_int_equal(disk_sync_read(lower, 8, back, sizeof(back)), DISK_OK);
	assert_true(tu_is_zero(back, sizeof(back)));
	disk_unref(top);
	free(poison);
}

/* ---- fused transforms (io->xform, DISK_CAP_XFORM) -------------------------------- */

/* A toy transform: XOR with a stream that depends on the LBA and the byte's
 * place in the sector and is never zero, so zero sectors change and a
 * sector transformed with the wrong LBA shows. Counts calls; can fail. */
struct toy_xform {
	struct disk_xform xf;
	uint32_t ss;
	unsigned calls;
	uint64_t fail_lba;      /* a sector whose transform fails; UINT64_MAX = none */
};

static uint8_t toy_byte(uint64_t lba, size_t i)
{
	return (uint8_t)((lba * 131 + i * 7) % 255 + 1);
}

static int toy_fn(const struct disk_xform *xf, void *dst, const void *src, size_t len,
		  uint64_t sector)
{
	struct toy_xform *t = container_of(xf, struct toy_xform, xf);
	const uint8_t *in = src;
	uint8_t *out = dst;

	assert_true(len > 0 && len % t->ss == 0);
	assert_true(dst == src || (out + len <= in || in + len <= out));
	t->calls++;
	for (size_t k = 0; k < len / t->ss; k++) {
		if (sector + k == t->fail_lba)
			return -EIO;
		for (size_t i = 0; i < t->ss; i++)
			out[k * t->ss + i] = in[k * t->ss + i] ^ toy_byte(sector + k, i);
	}
	return 0;
}

static void toy_init(struct toy_xform *t, uint32_t ss)
{
	*t = (struct toy_xform){ .xf = { .fn = toy_fn }, .ss = ss, .fail_lba = UINT64_MAX };
}

/* The reference: what a plain read followed by the transform gives. */
static void toy_apply(uint8_t *buf, uint32_t ss, uint64_t lba, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++)
		for (size_t i = 0; i < ss; i++)
			buf[k * ss + i] ^= toy_byte(lba + k, i);
}

struct toy_iov {
	uint64_t seed;
	uint32_t ss;
};

static size_t toy_iov_size(void *arg, int i UNUSED)
{
	struct toy_iov *t = arg;

	return (size_t)(tu_rand(&t->seed) % (3 * t->ss)) + 1;
}

/* Splits @buf into entries of 1..3 sectors plus odd bytes, so that sectors
 * straddle entries; returns the count. */
static int toy_iov(uint8_t *buf, size_t len, uint32_t ss, uint64_t seed, struct iovec *iov,
		   int max)
{
	struct toy_iov t = { seed, ss };

	return tu_split_iov(buf, len, toy_iov_size, &t, iov, max);
}

static int toy_io(struct disk *d, enum disk_op op, uint64_t sector, uint8_t *buf, size_t len,
		  struct toy_xform *t, uint64_t seed, int *os_errno)
{
	struct iovec iov[512];
	struct disk_io io = { .op = op, .sector = sector, .iov = iov, .xform = t ? &t->xf : NULL };
	int st;

	io.iovcnt = toy_iov(buf, len, disk_sector_size(d), seed, iov, ARRAY_SIZE(iov));
	st = disk_sync_io(d, &io);
	if (os_errno)
		*os_errno = io.os_errno;
	return st;
}

/* Which layered disks say they apply a transform, and the dispatcher
 * refusing one where it would be ignored. */
static void test_layered_xform_caps(void **state)
{
	struct mockdisk m[3] = { { 0 } };
	struct mockdisk_opts o = { .sectors = 64 };
	struct toy_xform t;
	uint8_t buf[512];
	struct disk *d, *top;
	struct disk_info info;

	toy_init(&t, 512);
	/* mem: */
	d = stack((struct layered_entry[]){ { .layer = ram(1 << 20, 512) } }, 1, false);
	assert_true(disk_get_info(d)->caps & DISK_CAP_XFORM);
	/* A pass-through decorator above it does not inherit the bit. */
	disk_info_inherit(&info, d);
	assert_false(info.caps & DISK_CAP_XFORM);
	assert_int_equal(disk_new(&passthru_ops, &info, NULL, d, &top), 0);
	assert_int_equal(toy_io(top, DISK_OP_READ, 0, buf, 512, &t, 1, NULL), DISK_INVALID_INPUT);
	assert_int_equal(toy_io(top, DISK_OP_WRITE, 0, buf, 512, &t, 1, NULL), DISK_INVALID_INPUT);
	assert_int_equal(t.calls, 0);
	disk_unref(top);
	/* memdiff: over a disk-as-layer */
	d = stack((struct layered_entry[]){ { .layer = ram(0, 0) },
					    { .layer = disk_layer(mockdisk_new(&m[0], &o)) } }, 2, false);
	assert_true(disk_get_info(d)->caps & DISK_CAP_XFORM);
	disk_unref(d);
	/* Two RAM layers, write-through: both apply it. */
	d = stack((struct layered_entry[]){ { .layer = ram(1 << 20, 512), .write_through = true },
					    { .layer = ram(1 << 20, 512) } }, 2, false);
	assert_true(disk_get_info(d)->caps & DISK_CAP_XFORM);
	disk_unref(d);
	/* Write-through into a layer that cannot apply it. */
	d = stack((struct layered_entry[]){ { .layer = ram(0, 0), .write_through = true },
					    { .layer = disk_layer(mockdisk_new(&m[1], &o)) } }, 2, false);
	assert_false(disk_get_info(d)->caps & DISK_CAP_XFORM);
	disk_unref(d);
	/* A read cache: never. */
	d = stack((struct layered_entry[]){ { .layer = ram(0, 0), .read_cache = true },
					    { .layer = ram(1 << 20, 512) } }, 2, false);
	assert_false(disk_get_info(d)->caps & DISK_CAP_XFORM);
	assert_int_equal(toy_io(d, DISK_OP_READ, 0, buf, 512, &t, 1, NULL), DISK_INVALID_INPUT);
	disk_unref(d);
	/* Only a disk as the top layer. */
	d = stack((struct layered_entry[]){ { .layer = disk_layer(mockdisk_new(&m[2], &o)) } }, 1,
		  false);
	assert_false(disk_get_info(d)->caps & DISK_CAP_XFORM);
	disk_unref(d);
	for (unsigned i = 0; i < ARRAY_SIZE(m); i++)
		mockdisk_release(&m[i]);
}

/*
 * Every way a sector reaches the caller gets the transform exactly once,
 * with its own LBA: RAM pages (whole and partly present), RAM zeroes past
 * zero_after, a lower disk-as-layer (transformed in place by the layered
 * disk), and the zero fill beyond the lower layer's visible count; with
 * buffers whose sectors straddle entries. What the RAM layer stores is
 * the transformed data; the caller's buffer is never written on a write.
 */
static void xform_paths(uint32_t ss)
{
	const uint64_t top_n = 72, low_n = 48;
	struct mockdisk m = { 0 };
	struct mockdisk_opts o = { .sectors = low_n, .sector_size = ss };
	struct layer *top = ram(top_n * ss, ss);
	struct disk *d = stack((struct layered_entry[]){ { .layer = top },
							 { .layer = disk_layer(mockdisk_new(&m, &o)) } },
			       2, false);
	size_t len = top_n * ss;
	uint8_t *pt = malloc(len), *copy = malloc(len), *want = malloc(len), *got = malloc(len);
	struct toy_xform t;
	int e = 0;

	toy_init(&t, ss);
	tu_layer_set_sector_size(top, ss);
	tu_fill(m.data, low_n * ss, 5, 0);
	tu_fill(pt, len, 6, 0);
	memcpy(copy, pt, len);
	/* The written runs start and end inside 4 KiB pages at 512 bytes. */
	assert_int_equal(toy_io(d, DISK_OP_WRITE, 4, pt + 4 * ss, 8 * ss, &t, 2, NULL), DISK_OK);
	assert_int_equal(toy_io(d, DISK_OP_WRITE, 43, pt + 43 * ss, 13 * ss, &t, 3, NULL), DISK_OK);
	assert_memory_equal(pt, copy, len);
	assert_true(t.calls > 0);
	/* Past the lower layer: zero_after drops to 64 in the RAM layer. */
	assert_int_equal(disk_sync_unmap(d, 64, 8, 0), DISK_OK);

	/* What a read without the transform followed by it gives. */
	memcpy(want, m.data, low_n * ss);
	memset(want + low_n * ss, 0, (top_n - low_n) * ss);
	toy_apply(want, ss, 0, top_n);
	memcpy(want + 4 * ss, pt + 4 * ss, 8 * ss);
	memcpy(want + 43 * ss, pt + 43 * ss, 13 * ss);
	for (unsigned shape = 0; shape < 4; shape++) {
		memset(got, 0xa5, len);
		t.calls = 0;
		assert_int_equal(toy_io(d, DISK_OP_READ, 0, got, len, &t, 10 + shape, NULL), DISK_OK);
		assert_memory_equal(got, want, len);
		assert_true(t.calls > 0);
	}
	/* A read inside one partly present page, and one inside the lower. */
	assert_int_equal(toy_io(d, DISK_OP_READ, 2, got, 4 * ss, &t, 20, NULL), DISK_OK);
	assert_memory_equal(got, want + 2 * ss, 4 * ss);
	assert_int_equal(toy_io(d, DISK_OP_READ, 20, got, 3 * ss, &t, 21, NULL), DISK_OK);
	assert_memory_equal(got, want + 20 * ss, 3 * ss);
	/* The RAM layer holds the transform of what was written. */
	memcpy(copy, pt, len);
	toy_apply(copy + 4 * ss, ss, 4, 8);
	assert_int_equal(tu_layer_read(top, 4, got, 8 * ss, NULL), DISK_OK);
	assert_memory_equal(got, copy + 4 * ss, 8 * ss);
	/* Without a transform the same disk reads what it holds. */
	assert_int_equal(disk_sync_read(d, 4, got, 8 * ss), DISK_OK);
	assert_memory_equal(got, copy + 4 * ss, 8 * ss);

	/* A failing transform fails the request with its errno, wherever it
	 * runs: a RAM page, the lower layer's run, the zero fill, RAM zeroes,
	 * and a write. */
	const uint64_t fails[] = { 6, 20, 58, 66 };

	for (unsigned i = 0; i < ARRAY_SIZE(fails); i++) {
		t.fail_lba = fails[i];
		e = 0;
		assert_int_equal(toy_io(d, DISK_OP_READ, 0, got, len, &t, 30 + i, &e), DISK_IO_ERROR);
		assert_int_equal(e, EIO);
	}
	t.fail_lba = 44;
	assert_int_equal(toy_io(d, DISK_OP_WRITE, 43, pt + 43 * ss, 4 * ss, &t, 40, &e),
			 DISK_IO_ERROR);
	assert_int_equal(e, EIO);
	disk_unref(d);
	mockdisk_release(&m);
	free(pt);
	free(copy);
	free(want);
	free(got);
}

static void test_layered_xform_paths_512(void **state) { xform_paths(512); }
static void test_layered_xform_paths_4096(void **state) { xform_paths(4096); }

/* ---- adopted write buffers (DISK_IO_ADOPT, disk_info.adopt_bytes) ---------------- */

/* Writes @n blocks of @blk bytes (malloc'd, filled with the pattern of
 * @tag at their place) as one request at @sector; the entries' lengths
 * are @len[i]. Returns the status; @iov keeps what the disk left. */
static int adopt_write(struct disk *d, uint64_t sector, struct iovec *iov, const size_t *len,
		       int n, size_t blk, uint64_t tag, uint32_t flags, const struct toy_xform *t)
{
	uint32_t ss = disk_sector_size(d);
	uint64_t off = sector * ss;
	struct disk_io io = { .op = DISK_OP_WRITE, .flags = flags, .sector = sector, .iov = iov,
			      .iovcnt = n, .xform = t ? &t->xf : NULL };

	for (int i = 0; i < n; i++) {
		iov[i].iov_base = malloc(blk);
		assert_non_null(iov[i].iov_base);
		iov[i].iov_len = len[i];
		tu_fill(iov[i].iov_base, len[i], tag, off);
		off += len[i];
	}
	return disk_sync_io(d, &io);
}

static void adopt_free(struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		free(iov[i].iov_base);
}

/* Which disks offer adoption; a decorator strips the flag. */
static void test_layered_adopt_caps(void **state)
{
	struct mockdisk m[3] = { { 0 } };
	struct mockdisk_opts o = { .sectors = 64 };
	struct disk *d, *top;
	struct disk_info info;
	struct iovec iov[1];
	void *sent;

	d = stack((struct layered_entry[]){ { .layer = ram(1 << 20, 512) } }, 1, false);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 4096);
	disk_info_inherit(&info, d);
	assert_int_equal(info.adopt_bytes, 0);
	assert_int_equal(disk_new(&passthru_ops, &info, NULL, d, &top), 0);
	/* Through the decorator the buffer stays the caller's. */
	assert_int_equal(adopt_write(top, 0, iov, (size_t[]){ 4096 }, 1, 4096, 3, DISK_IO_ADOPT,
				     NULL), DISK_OK);
	assert_non_null(iov[0].iov_base);
	sent = iov[0].iov_base;
	expect_pattern(top, 0, 8, 3);
	tu_fill(sent, 4096, 4, 0);   /* still ours: writing it changes nothing */
	expect_pattern(top, 0, 8, 3);
	adopt_free(iov, 1);
	disk_unref(top);
	d = stack((struct layered_entry[]){ { .layer = ram(1 << 20, 4096) } }, 1, false);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 4096);
	disk_unref(d);
	d = stack((struct layered_entry[]){ { .layer = ram(0, 0) },
					    { .layer = disk_layer(mockdisk_new(&m[0], &o)) } }, 2, false);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 4096);
	disk_unref(d);
	/* Never with a second write-path layer, a read cache, or a disk on top. */
	d = stack((struct layered_entry[]){ { .layer = ram(1 << 20, 512), .write_through = true },
					    { .layer = ram(1 << 20, 512) } }, 2, false);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 0);
	disk_unref(d);
	d = stack((struct layered_entry[]){ { .layer = ram(0, 0), .read_cache = true },
					    { .layer = ram(1 << 20, 512) } }, 2, false);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 0);
	disk_unref(d);
	d = stack((struct layered_entry[]){ { .layer = disk_layer(mockdisk_new(&m[1], &o)) } }, 1,
		  false);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 0);
	disk_unref(d);
	/* A backend that cannot adopt never sees the flag, even asked directly. */
	d = mockdisk_new(&m[2], &o);
	assert_int_equal(disk_get_info(d)->adopt_bytes, 0);
	assert_int_equal(adopt_write(d, 8, iov, (size_t[]){ 4096 }, 1, 4096, 5, DISK_IO_ADOPT,
				     NULL), DISK_OK);
	assert_int_equal(m[2].writes, 1);
	assert_int_equal(m[2].adopt_writes, 0);
	adopt_free(iov, 1);
	expect_pattern(d, 8, 8, 5);
	disk_unref(d);
	for (unsigned i = 0; i < ARRAY_SIZE(m); i++)
		mockdisk_release(&m[i]);
}

/*
 * What is adopted and what is handed back: whole pages held by one entry
 * at a page boundary are taken (NULL back for a page that did not exist,
 * the old page with its old contents for one that did); a partial page, an
 * entry not at a page boundary and a request with a transform are copied.
 * The data reads back either way, over mem: and memdiff:, and the layer's
 * accounting follows. Under valgrind this also proves nothing leaks or is
 * freed twice.
 */
static void adopt_paths(uint32_t ss)
{
	const size_t pg = MAX(ss, 4096u);           /* the RAM layer's page */
	const uint64_t spp = pg / ss;
	struct mockdisk m = { 0 };
	struct mockdisk_opts o = { .sectors = (uint64_t)(4 << 20) / ss, .sector_size = ss };
	struct layer *top = ram(0, 0);
	struct disk *d = stack((struct layered_entry[]){ { .layer = top },
				{ .layer = disk_layer(mockdisk_new(&m, &o)) } }, 2, false);
	struct iovec iov[5];
	size_t len[5];
	int n = 0, first;
	uint64_t s0, held, data0, alloc0, data1, alloc1;
	struct toy_xform t;

	assert_int_equal(disk_get_info(d)->adopt_bytes, pg);
	/* Half a page (when a page has several sectors), three pages, a
	 * quarter page. */
	s0 = 3 * spp + spp / 2;
	if (spp > 1)
		len[n++] = pg / 2;
	first = n;
	for (int i = 0; i < 3; i++)
		len[n++] = pg;
	if (spp > 1)
		len[n++] = pg / 4;
	held = (spp > 1 ? spp / 2 + spp / 4 : 0) + 3 * spp;
	assert_int_equal(adopt_write(d, s0, iov, len, n, pg, 7, DISK_IO_ADOPT, NULL), DISK_OK);
	for (int i = 0; i < n; i++) {
		if (i >= first && i < first + 3)
			assert_null(iov[i].iov_base);       /* taken; no page was there */
		else
			assert_int_equal(tu_check(iov[i].iov_base, len[i], 7,
						  (s0 + (i ? spp / 2 + (uint64_t)(i - 1) * spp : 0)) * ss), -1);
	}
	adopt_free(iov, n);
	expect_pattern(d, s0, held, 7);
	assert_int_equal(ram_sectors_held(top, ss), held);
	/* Overwrite pages 4 and 5: the old pages come back with the old data. */
	len[0] = len[1] = pg;
	ramlayer_memory(top, &data0, &alloc0);
	assert_int_equal(data0, held * ss);
	assert_int_equal(adopt_write(d, 4 * spp, iov, len, 2, pg, 8, DISK_IO_ADOPT, NULL), DISK_OK);
	for (int i = 0; i < 2; i++) {
		assert_non_null(iov[i].iov_base);
		assert_int_equal(tu_check(iov[i].iov_base, pg, 7, (4 + (uint64_t)i) * spp * ss), -1);
	}
	adopt_free(iov, 2);
	ramlayer_memory(top, &data1, &alloc1);
	assert_int_equal(alloc1, alloc0);           /* two pages swapped, none added */
	expect_pattern(d, 4 * spp, 2 * spp, 8);
	expect_pattern(d, s0, 4 * spp - s0, 7);
	expect_pattern(d, 6 * spp, s0 + held - 6 * spp, 7);
	assert_int_equal(ram_sectors_held(top, ss), held);
	/* One entry holding two pages: copied. */
	len[0] = 2 * pg;
	assert_int_equal(adopt_write(d, 8 * spp, iov, len, 1, 2 * pg, 9, DISK_IO_ADOPT, NULL),
			 DISK_OK);
	assert_int_equal(tu_check(iov[0].iov_base, 2 * pg, 9, 8 * spp * ss), -1);
	adopt_free(iov, 1);
	expect_pattern(d, 8 * spp, 2 * spp, 9);
	/* A page-sized entry that is not at a page boundary: copied. */
	if (spp > 1) {
		len[0] = pg;
		assert_int_equal(adopt_write(d, 12 * spp + 2, iov, len, 1, pg, 10, DISK_IO_ADOPT,
					     NULL), DISK_OK);
		assert_int_equal(tu_check(iov[0].iov_base, pg, 10, (12 * spp + 2) * ss), -1);
		adopt_free(iov, 1);
		expect_pattern(d, 12 * spp + 2, spp, 10);
	}
	/* Without the flag: copied. */
	len[0] = pg;
	assert_int_equal(adopt_write(d, 16 * spp, iov, len, 1, pg, 11, 0, NULL), DISK_OK);
	assert_int_equal(tu_check(iov[0].iov_base, pg, 11, 16 * spp * ss), -1);
	adopt_free(iov, 1);
	expect_pattern(d, 16 * spp, spp, 11);
	/* With a transform: the layer transforms from the buffer, never keeps it. */
	toy_init(&t, ss);
	assert_int_equal(adopt_write(d, 20 * spp, iov, len, 1, pg, 12, DISK_IO_ADOPT, &t),
			 DISK_OK);
	assert_int_equal(tu_check(iov[0].iov_base, pg, 12, 20 * spp * ss), -1);
	assert_true(t.calls > 0);
	adopt_free(iov, 1);
	/* The lower layer still shows through where nothing was written. */
	expect_zero(d, 40 * spp, spp);
	disk_unref(d);
	mockdisk_release(&m);
}

static void test_layered_adopt_paths_512(void **state) { adopt_paths(512); }
static void test_layered_adopt_paths_4096(void **state) { adopt_paths(4096); }

/* Reads layer @l's counters into @op (asserting they are on). */
static void layer_counts(struct layer *l, bool reset, struct iostats_op *op)
{
	uint64_t since;

	assert_int_equal(layer_stats_read(l, reset, &since, op), 0);
	assert_true(since > 0);
}

/* Per-layer statistics (docs/ctl.md "stats"): a memdiff:-like stack, RAM
 * over RAM. N writes go to the top layer; reading them back is served by
 * it; reading what only the bottom holds is served there (the top
 * layer's empty look-up is not a read it served); a read across both
 * counts once on each with the bytes each served; sectors no layer holds
 * count nowhere. Flush and unmap reach the write path only. Off, nothing
 * counts; on again, from zero. */
static void test_layered_layer_stats(void **state)
{
	(void)state;
	const uint32_t ss = 512;
	struct layer *top = ram(0, 0), *bottom = ram(1 << 20, ss);
	struct layered_entry e[] = { { .layer = top }, { .layer = bottom } };
	struct iostats_op t[IOSTATS_COUNT], b[IOSTATS_COUNT];
	struct disk *d;
	uint64_t since;
	char *buf = malloc(64 * ss);

	/* Before attaching, there is no geometry to count in. */
	assert_int_equal(layer_stats_enable(top), -EINVAL);
	d = stack(e, 2, false);
	fill_layer(bottom, 512, 64, ss, 7);   /* what the bottom holds */
	assert_int_equal(layer_stats_read(top, false, &since, t), -ENOENT);
	assert_int_equal(layer_stats_enable(top), 0);
	assert_int_equal(layer_stats_enable(bottom), 0);
	assert_int_equal(layer_stats_enable(bottom), 0);   /* idempotent */

	for (unsigned i = 0; i < 3; i++) {
		tu_fill(buf, 8 * ss, 1, (uint64_t)i * 16 * ss);
		assert_int_equal(disk_sync_write(d, i * 16, buf, 8 * ss, 0), DISK_OK);
	}
	expect_pattern(d, 0, 8, 1);                 /* top: 8 sectors */
	expect_pattern(d, 16, 8, 1);                /* top: 8 sectors */
	expect_pattern(d, 520, 16, 7);              /* bottom only: 16 sectors */
	expect_zero(d, 1000, 8);                    /* nobody */
	/* 24..39: 24..31 nobody, 32..39 the top (the third write). */
	assert_int_equal(disk_sync_read(d, 24, buf, 16 * ss), DISK_OK);
	/* 504..519: 504..511 nobody, 512..519 the bottom. */
	assert_int_equal(disk_sync_read(d, 504, buf, 16 * ss), DISK_OK);
	assert_int_equal(disk_sync_flush(d), DISK_OK);
	assert_int_equal(disk_sync_unmap(d, 0, 8, 0), DISK_OK);

	layer_counts(top, false, t);
	layer_counts(bottom, false, b);
	assert_int_equal(t[IOSTATS_WRITE].ops, 3);
	assert_int_equal(t[IOSTATS_WRITE].bytes, 3 * 8 * ss);
	assert_int_equal(t[IOSTATS_READ].ops, 3);
	assert_int_equal(t[IOSTATS_READ].bytes, (8 + 8 + 8) * ss);
	assert_int_equal(t[IOSTATS_FLUSH].ops, 1);
	assert_int_equal(t[IOSTATS_TRIM].ops, 1);
	assert_int_equal(t[IOSTATS_READ].errors + t[IOSTATS_WRITE].errors, 0);
	assert_true(t[IOSTATS_READ].lat_max_ns > 0);
	assert_int_equal(b[IOSTATS_READ].ops, 2);
	assert_int_equal(b[IOSTATS_READ].bytes, (16 + 8) * ss);
	assert_int_equal(b[IOSTATS_WRITE].ops, 0);
	assert_int_equal(b[IOSTATS_FLUSH].ops, 0);  /* not on the write path */
	assert_int_equal(b[IOSTATS_TRIM].ops, 0);

	/* A reset restarts them; off: not counted, not readable; on again:
	 * from zero. */
	layer_counts(top, true, t);
	layer_counts(top, false, t);
	assert_int_equal(t[IOSTATS_WRITE].ops + t[IOSTATS_READ].ops + t[IOSTATS_FLUSH].ops, 0);
	layer_stats_disable(top);
	assert_int_equal(layer_stats_read(top, false, &since, t), -ENOENT);
	assert_int_equal(disk_sync_write(d, 0, buf, 8 * ss, 0), DISK_OK);
	assert_int_equal(layer_stats_enable(top), 0);
	layer_counts(top, false, t);
	assert_int_equal(t[IOSTATS_WRITE].ops, 0);
	assert_int_equal(disk_sync_write(d, 0, buf, 8 * ss, 0), DISK_OK);
	layer_counts(top, false, t);
	assert_int_equal(t[IOSTATS_WRITE].ops, 1);
	free(buf);
	disk_unref(d);
}

/* A read-cache layer counts the fills it takes as writes: reading what
 * only the layer below holds is one read there and one write (of what
 * was read) into the cache; reading it again is a read of the cache. */
static void test_layered_layer_stats_read_cache(void **state)
{
	(void)state;
	const uint32_t ss = 512;
	struct layer *cache = ram(0, 0), *bottom = ram(1 << 20, ss);
	struct layered_entry e[] = { { .layer = cache, .read_cache = true }, { .layer = bottom } };
	struct iostats_op c[IOSTATS_COUNT], b[IOSTATS_COUNT];
	struct disk *d;

	d = stack(e, 2, true);
	fill_layer(bottom, 0, 32, ss, 3);
	assert_int_equal(layer_stats_enable(cache), 0);
	assert_int_equal(layer_stats_enable(bottom), 0);
	expect_pattern(d, 0, 16, 3);
	expect_pattern(d, 0, 16, 3);
	layer_counts(cache, false, c);
	layer_counts(bottom, false, b);
	assert_int_equal(b[IOSTATS_READ].ops, 1);
	assert_int_equal(b[IOSTATS_READ].bytes, 16 * ss);
	assert_int_equal(c[IOSTATS_WRITE].ops, 1);
	assert_int_equal(c[IOSTATS_WRITE].bytes, 16 * ss);
	assert_int_equal(c[IOSTATS_READ].ops, 1);
	assert_int_equal(c[IOSTATS_READ].bytes, 16 * ss);
	disk_unref(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layered_layer_stats),
		cmocka_unit_test(test_layered_layer_stats_read_cache),
		cmocka_unit_test(test_layered_ram_write_zeroes_frees),
		cmocka_unit_test(test_layered_read_cache_fills),
		cmocka_unit_test(test_layered_read_cache_spares_lower_disk),
		cmocka_unit_test(test_layered_read_cache_stores_zeroes),
		cmocka_unit_test(test_layered_diff),
		cmocka_unit_test(test_layered_resize_half_then_grow),
		cmocka_unit_test(test_layered_unmap_on_diff),
		cmocka_unit_test(test_layered_diff_write_zeroes_fast),
		cmocka_unit_test(test_layered_zeroed_read_cache),
		cmocka_unit_test(test_layered_read_cache_fill_after_zero_regression),
		cmocka_unit_test(test_layered_4k_sectors),
		cmocka_unit_test(test_layered_ram_constructor_errors),
		cmocka_unit_test(test_layered_geometry_inheritance),
		cmocka_unit_test(test_layered_mismatched_sector_sizes),
		cmocka_unit_test(test_layered_validation_errors),
		cmocka_unit_test(test_layered_metadata_folds),
		cmocka_unit_test(test_layered_clamp_intended_semantics),
		cmocka_unit_test(test_layered_write_through),
		cmocka_unit_test(test_layered_block_status_names_layers),
		cmocka_unit_test(test_layered_zero_length_read_past_end),
		cmocka_unit_test(test_layered_contract_two_ram_layers),
		cmocka_unit_test(test_layered_describe),
		cmocka_unit_test(test_layered_under_passthrough_decorator),
		cmocka_unit_test(test_layered_xform_caps),
		cmocka_unit_test(test_layered_xform_paths_512),
		cmocka_unit_test(test_layered_xform_paths_4096),
		cmocka_unit_test(test_layered_adopt_caps),
		cmocka_unit_test(test_layered_adopt_paths_512),
		cmocka_unit_test(test_layered_adopt_paths_4096),
	};

	return cmocka_run_group_tests_name("layered", tests, tu_reactor_setup, tu_reactor_teardown);
}
