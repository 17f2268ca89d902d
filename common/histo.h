/* SPDX-License-Identifier: MIT */
/*
 * histo.h: log-linear latency histogram bins (HDR style): values below
 * 2^bits get a bin each; above, every power of two is split into 2^bits
 * bins, so a bin's width is at most 1/2^bits of its value. Only the index
 * arithmetic lives here; the counters are the caller's (plain per-worker
 * arrays in tools/cmd-bench.c, atomics in the NBD server's export stats).
 */
#ifndef DISKSTACK_COMMON_HISTO_H
#define DISKSTACK_COMMON_HISTO_H

#include <stdint.h>

/* The number of bins for @bits sub-bucket bits. */
#define HISTO_SIZE(bits) ((64u - (bits) + 1u) << (bits))

/* The bin of value @v. */
static inline unsigned histo_index(uint64_t v, unsigned bits)
{
	if (v < (1ull << bits))
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - bits;
	return ((shift + 1) << bits) + (unsigned)((v >> shift) - (1ull << bits));
}

/* The middle of the values mapped to bin @i. */
static inline uint64_t histo_value(unsigned i, unsigned bits)
{
	if (i < (1u << bits))
		return i;
	unsigned shift = (i >> bits) - 1;
	uint64_t low = (uint64_t)((1u << bits) + (i & ((1u << bits) - 1))) << shift;
	return low + ((1ull << shift) >> 1);
}

#endif
