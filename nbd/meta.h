/* SPDX-License-Identifier: MIT */
/*
 * meta.h: the metadata contexts the NBD server offers, query matching for
 * NBD_OPT_LIST/SET_META_CONTEXT, and encoding disk extents into
 * NBD_REPLY_TYPE_BLOCK_STATUS descriptors. Pure functions (unit-tested).
 *
 * Contexts:
 *   base:allocation   NBD_STATE_HOLE (not allocated in any layer or the
 *                     backend) and NBD_STATE_ZERO (reads as zeroes).
 *   diskstack:layer   which layer of a layered disk holds each extent:
 *                     0 = no layer holds it (reads as zeroes), 1 = the top
 *                     layer, n = layer n-1 counted from the top. A plain
 *                     (not layered) disk reports 1 for allocated data and
 *                     0 for holes.
 * Queries: "base:" and "diskstack:" are wildcards for LIST only (SET ignores
 * them, as the spec requires for "base:"); full names select one context;
 * unknown namespaces and unknown leaves are ignored; a query without a
 * colon or with an empty namespace is malformed.
 */
#ifndef DISKSTACK_NBD_META_H
#define DISKSTACK_NBD_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/disk.h"

/* Context bits (a connection's selection is a mask of these). */
#define NBDSRV_META_ALLOCATION (1u << 0)
#define NBDSRV_META_LAYER      (1u << 1)
#define NBDSRV_META_ALL        (NBDSRV_META_ALLOCATION | NBDSRV_META_LAYER)
#define NBDSRV_META_COUNT      2

/* Name of context @index (0..NBDSRV_META_COUNT-1). */
const char *nbdsrv_meta_name(unsigned index);
/* The context id sent for context @index in SET replies and block status
 * chunks (index + 1; never 0). */
static inline uint32_t nbdsrv_meta_id(unsigned index) { return index + 1; }

/* Matches one query of @len bytes (not NUL-terminated). @list: the query
 * comes from LIST_META_CONTEXT (wildcards allowed). Sets *@mask to the
 * matching context bits (possibly 0). Returns 0, or -EINVAL for a
 * malformed query. */
int nbdsrv_meta_match(const char *q, size_t len, bool list, uint32_t *mask);

/* The status value of extent @e in context @index. */
uint32_t nbdsrv_meta_value(unsigned index, const struct disk_extent *e);

/*
 * Encodes @n extents (from a block-status request, consecutive, starting at
 * the requested offset) for context @index into 8-byte descriptors
 * (length 32, flags 32, big-endian) at @out, merging neighbours with equal
 * values. Lengths are bytes (sector count << @shift); a descriptor never
 * exceeds @max_desc_bytes (a multiple of the sector size, >= one sector),
 * and with @one only the first descriptor is written and it is clamped to
 * @one_limit_bytes (> 0). @out has room for @n descriptors. Returns the
 * number written (0 only when @n is 0).
 */
uint32_t nbdsrv_meta_encode(const struct disk_extent *ext, uint32_t n, uint32_t shift,
			    unsigned index, uint32_t max_desc_bytes, bool one,
			    uint32_t one_limit_bytes, uint8_t *out);

#endif
