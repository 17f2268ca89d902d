/* SPDX-License-Identifier: MIT */
/*
 * bitmap.h: a plain bitmap over a range of sector numbers, with run
 * iteration. Used as the presence marker of a layered read (one bit per
 * logical sector of the request). Not thread-safe.
 */
#ifndef DISKSTACK_COMMON_BITMAP_H
#define DISKSTACK_COMMON_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct bitmap {
	uint64_t base;      /* first sector covered */
	uint64_t len;       /* number of bits */
	uint64_t *words;    /* borrowed storage of BITMAP_WORDS(len) words */
	uint64_t nset;      /* number of set bits */
};

#define BITMAP_WORDS(len) (((len) + 63) / 64)

/* Initialises @b over [base, base+len) on zeroed storage @words. */
void bitmap_init(struct bitmap *b, uint64_t base, uint64_t len, uint64_t *words);

/* Sets bit for sector @s (absolute). Asserts @s is in range. Returns true if
 * the bit was newly set. */
bool bitmap_set(struct bitmap *b, uint64_t s);
/* Sets [s, s+n) (absolute). Returns the number of newly set bits. */
uint64_t bitmap_set_range(struct bitmap *b, uint64_t s, uint64_t n);
/* Tests the bit for sector @s (absolute). */
bool bitmap_test(const struct bitmap *b, uint64_t s);

/* Finds the first run of bits equal to @value starting at or after absolute
 * sector @from. On success sets *start and *end (exclusive, absolute) and
 * returns true; false if there is none. */
bool bitmap_next_run(const struct bitmap *b, uint64_t from, bool value,
		     uint64_t *start, uint64_t *end);

#endif
