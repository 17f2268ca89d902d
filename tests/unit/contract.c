/* SPDX-License-Identifier: MIT */
/*
 * contract.c: the shared conformance suites of
 * docs/openvmm-compat.md §7.1 (representability, sector range,
 * layer suite), applied by each backend's and layer's unit test.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/compiler.h"
#include "tests/unit/contract.h"
#include "tests/unit/testutil.h"

/* Reads/writes one request of @n sectors at @sector with a scratch buffer. */
static int do_rw(struct disk *d, enum disk_op op, uint64_t sector, uint64_t n)
{
	size_t len = (size_t)n * disk_sector_size(d);
	void *buf = calloc(1, len ? len : 1);
	int st;

	assert_non_null(buf);
	if (op == DISK_OP_READ)
		st = disk_sync_read(d, sector, buf, len);
	else
		st = disk_sync_write(d, sector, buf, len, 0);
	free(buf);
	return st;
}

static void expect_status(int got, int want, const char *what, uint64_t sector, uint64_t n)
{
	if (got != want) {
		fprintf(stderr, "contract: %s at (%" PRIu64 ", %" PRIu64 "): got %s, want %s\n",
			what, sector, n, disk_status_str(got), disk_status_str(want));
	}
	assert_int_equal(got, want);
}

static void illegal_everywhere(struct disk *d, uint64_t sector, uint64_t n)
{
	const struct disk_info *info = disk_get_info(d);

	expect_status(do_rw(d, DISK_OP_READ, sector, n), DISK_ILLEGAL_BLOCK, "read", sector, n);
	if (!info->read_only)
		expect_status(do_rw(d, DISK_OP_WRITE, sector, n), DISK_ILLEGAL_BLOCK, "write",
			      sector, n);
	expect_status(disk_sync_unmap(d, sector, n, 0), DISK_ILLEGAL_BLOCK, "unmap", sector, n);
}

void contract_representability(struct disk *d)
{
	uint32_t shift = disk_get_info(d)->sector_shift;
	uint64_t max = (uint64_t)INT64_MAX >> shift;

	/* Unmap is checked even when the disk ignores it. */
	expect_status(disk_sync_unmap(d, UINT64_MAX, 1, 0), DISK_ILLEGAL_BLOCK, "unmap",
		      UINT64_MAX, 1);
	/* Huge requests cannot be buffered; the dispatcher rejects the range
	 * from the LBA alone, so use one- and two-sector buffers. */
	illegal_everywhere(d, UINT64_MAX, 1);
	illegal_everywhere(d, UINT64_MAX - 1, 2);
	illegal_everywhere(d, max, 1);
	illegal_everywhere(d, max - 1, 2);
	illegal_everywhere(d, 1ull << (64 - shift), 1);
}

void contract_sector_range(struct disk *d)
{
	uint32_t shift = disk_get_info(d)->sector_shift;
	uint64_t max = (uint64_t)INT64_MAX >> shift;
	uint64_t count = disk_sector_count(d);

	assert_true(count >= 2);
	illegal_everywhere(d, count, 1);
	illegal_everywhere(d, count - 1, 2);
	illegal_everywhere(d, max - 1, 1);
	expect_status(do_rw(d, DISK_OP_READ, count - 1, 1), DISK_OK, "read", count - 1, 1);
	expect_status(do_rw(d, DISK_OP_READ, 0, 0), DISK_OK, "read", 0, 0);
}

void contract_disk(struct disk *d)
{
	contract_representability(d);
	contract_sector_range(d);
}

static int layer_write(struct layer *l, uint64_t sector, uint64_t n, uint32_t ss, uint32_t flags)
{
	size_t len = (size_t)n * ss;
	void *buf = calloc(1, len ? len : 1);
	int st;

	assert_non_null(buf);
	memset(buf, 0x5a, len);
	st = tu_layer_write(l, sector, buf, len, flags);
	free(buf);
	return st;
}

void contract_layer(struct layer *l, const struct layer_meta *meta)
{
	const struct layer_ops *ops = layer_get_ops(l);
	uint32_t ss = meta->sector_size;
	uint64_t max = (uint64_t)INT64_MAX >> ilog2_u64(ss);
	uint64_t count = ops->sector_count(l);
	const uint64_t cases[3][2] = { { count, 1 }, { count - 1, 2 }, { max - 1, 1 } };

	for (unsigned i = 0; i < 3; i++) {
		uint64_t s = cases[i][0], n = cases[i][1];

		expect_status(layer_write(l, s, n, ss, 0), DISK_ILLEGAL_BLOCK, "layer write", s, n);
		if (meta->can_read_cache)
			expect_status(layer_write(l, s, n, ss, DISK_IO_NO_OVERWRITE),
				      DISK_ILLEGAL_BLOCK, "layer write-no-overwrite", s, n);
		if (meta->unmap_behavior != DISK_UNMAP_IGNORED) {
			expect_status(tu_layer_unmap(l, s, n, false), DISK_ILLEGAL_BLOCK,
				      "layer unmap", s, n);
			expect_status(tu_layer_unmap(l, s, n, true), DISK_ILLEGAL_BLOCK,
				      "layer unmap next_is_zero", s, n);
		}
	}
	expect_status(layer_write(l, count - 1, 1, ss, 0), DISK_OK, "layer write", count - 1, 1);
}
