/* SPDX-License-Identifier: MIT */
/*
 * bitmap.c: a plain bitmap over a range of sectors (see bitmap.h).
 *
 * Bit i (0-based, relative to b->base) lives in words[i / 64], bit i % 64.
 * Bits past b->len in the last word are always zero. Run searches work a
 * 64-bit word at a time with count-trailing-zeros, so scanning a mostly
 * uniform bitmap costs one load per 64 sectors.
 */
#include "config.h"

#include <assert.h>

#include "bitmap.h"
#include "compiler.h"

void bitmap_init(struct bitmap *b, uint64_t base, uint64_t len, uint64_t *words)
{
	assert(len == 0 || words != NULL);
	b->base = base;
	b->len = len;
	b->words = words;
	b->nset = 0;
}

static inline bool bitmap_contains(const struct bitmap *b, uint64_t s)
{
	return s >= b->base && s - b->base < b->len;
}

bool bitmap_set(struct bitmap *b, uint64_t s)
{
	uint64_t i, mask;

	assert(bitmap_contains(b, s));
	i = s - b->base;
	mask = UINT64_C(1) << (i % 64);
	if (b->words[i / 64] & mask)
		return false;
	b->words[i / 64] |= mask;
	b->nset++;
	return true;
}

uint64_t bitmap_set_range(struct bitmap *b, uint64_t s, uint64_t n)
{
	uint64_t i, end, added = 0;

	if (n == 0)
		return 0;
	assert(bitmap_contains(b, s) && n <= b->len - (s - b->base));
	i = s - b->base;
	end = i + n;
	while (i < end) {
		unsigned bit = (unsigned)(i % 64);
		uint64_t cnt = MIN((uint64_t)(64 - bit), end - i);
		uint64_t mask = (cnt == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << cnt) - 1)) << bit;
		uint64_t *w = &b->words[i / 64];

		added += (uint64_t)__builtin_popcountll(mask & ~*w);
		*w |= mask;
		i += cnt;
	}
	b->nset += added;
	return added;
}

bool bitmap_test(const struct bitmap *b, uint64_t s)
{
	uint64_t i;

	assert(bitmap_contains(b, s));
	i = s - b->base;
	return (b->words[i / 64] >> (i % 64)) & 1;
}

/*
 * First index >= @i (relative) whose bit equals @value, or b->len if none.
 * Word-at-a-time: invert the word when looking for zeroes, mask off the bits
 * below @i, and take the lowest set bit.
 */
static uint64_t bitmap_find(const struct bitmap *b, uint64_t i, bool value)
{
	uint64_t nwords = BITMAP_WORDS(b->len);
	uint64_t wi = i / 64;
	uint64_t flip = value ? 0 : ~UINT64_C(0);
	uint64_t w;

	if (i >= b->len)
		return b->len;
	w = (b->words[wi] ^ flip) & (~UINT64_C(0) << (i % 64));
	for (;;) {
		if (w) {
			uint64_t r = wi * 64 + (uint64_t)__builtin_ctzll(w);
			return r < b->len ? r : b->len;
		}
		if (++wi >= nwords)
			return b->len;
		w = b->words[wi] ^ flip;
	}
}

bool bitmap_next_run(const struct bitmap *b, uint64_t from, bool value,
		     uint64_t *start, uint64_t *end)
{
	uint64_t i, j;

	if (from < b->base)
		from = b->base;
	if (from - b->base >= b->len)
		return false;
	i = bitmap_find(b, from - b->base, value);
	if (i >= b->len)
		return false;
	j = bitmap_find(b, i + 1, !value);
	*start = b->base + i;
	*end = b->base + j;
	return true;
}
