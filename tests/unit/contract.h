/* SPDX-License-Identifier: MIT */
/*
 * contract.h: the shared conformance suites of
 * docs/openvmm-compat.md §7.1, applied to every disk and layer.
 * Each asserts with cmocka; call them from a test function.
 */
#ifndef DISKSTACK_TESTS_CONTRACT_H
#define DISKSTACK_TESTS_CONTRACT_H

#include "storage/disk.h"
#include "storage/layered.h"

/* (A) Representability: read, write (skipped when the disk reports
 * read-only) and unmap (even when IGNORED) return ILLEGAL_BLOCK for
 * (u64 max, 1), (u64 max - 1, 2), (max, 1), (max - 1, 2) and
 * (1 << (64 - shift), 1), where max = INT64_MAX >> shift. */
void contract_representability(struct disk *d);

/* (B) Sector range (disk of >= 2 sectors): ILLEGAL_BLOCK for read, write
 * and unmap at (count, 1), (count - 1, 2), (max - 1, 1); a one-sector read
 * at count - 1 and a zero-length read at 0 succeed. Writes are skipped on
 * read-only disks. */
void contract_sector_range(struct disk *d);

/* (C) Layer suite on an attached layer: write and write-no-overwrite (if
 * @can_read_cache) are ILLEGAL_BLOCK at (count, 1), (count - 1, 2),
 * (max - 1, 1); unmap with next_is_zero false and true likewise unless
 * the layer's unmap behaviour is IGNORED; a write to the last sector works. */
void contract_layer(struct layer *l, const struct layer_meta *meta);

/* Runs A and B. */
void contract_disk(struct disk *d);

#endif
