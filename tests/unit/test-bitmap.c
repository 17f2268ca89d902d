/* SPDX-License-Identifier: MIT */
/*
 * test-bitmap.c: unit tests of common/bitmap.c, including test 9 of
 * docs/openvmm-compat.md §7.2 and a seeded reference-model test against a
 * bool array.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/bitmap.h"
#include "common/compiler.h"
#include "tests/unit/testutil.h"

/* §7.2 test 9. */
static void test_bitmap_runs_split(void **state)
{
	const uint64_t base = 0x492893;
	uint64_t words[BITMAP_WORDS(10)] = { 0 };
	struct bitmap b;
	uint64_t s, e;

	(void)state;
	bitmap_init(&b, base, 10, words);
	for (uint64_t i = 0; i < 6; i++)
		assert_true(bitmap_set(&b, base + i));
	assert_int_equal(b.nset, 6);

	assert_true(bitmap_next_run(&b, base, false, &s, &e));
	assert_int_equal(s, base + 6);
	assert_int_equal(e, base + 10);
	assert_false(bitmap_next_run(&b, e, false, &s, &e));

	assert_true(bitmap_set(&b, base + 7));
	assert_true(bitmap_next_run(&b, base, false, &s, &e));
	assert_int_equal(s, base + 6);
	assert_int_equal(e, base + 7);
	assert_true(bitmap_next_run(&b, e, false, &s, &e));
	assert_int_equal(s, base + 8);
	assert_int_equal(e, base + 10);
	assert_false(bitmap_next_run(&b, e, false, &s, &e));

	/* The set runs are [base, base+6) and [base+7, base+8). */
	assert_true(bitmap_next_run(&b, base, true, &s, &e));
	assert_int_equal(s, base);
	assert_int_equal(e, base + 6);
	assert_true(bitmap_next_run(&b, e, true, &s, &e));
	assert_int_equal(s, base + 7);
	assert_int_equal(e, base + 8);
	assert_false(bitmap_next_run(&b, e, true, &s, &e));
}

static void test_bitmap_set_returns_new(void **state)
{
	uint64_t words[BITMAP_WORDS(200)] = { 0 };
	struct bitmap b;

	(void)state;
	bitmap_init(&b, 1000, 200, words);
	assert_true(bitmap_set(&b, 1000));
	assert_false(bitmap_set(&b, 1000));
	assert_true(bitmap_test(&b, 1000));
	assert_false(bitmap_test(&b, 1001));
	assert_true(bitmap_set(&b, 1199));
	assert_int_equal(b.nset, 2);

	/* Range across three words, overlapping the bits already set. */
	assert_int_equal(bitmap_set_range(&b, 1000, 150), 149);
	assert_int_equal(bitmap_set_range(&b, 1000, 150), 0);
	assert_int_equal(bitmap_set_range(&b, 1100, 0), 0);
	assert_int_equal(b.nset, 151);
	assert_int_equal(bitmap_set_range(&b, 1150, 50), 49);
	assert_int_equal(b.nset, 200);
	assert_false(bitmap_next_run(&b, 1000, false, &(uint64_t){ 0 }, &(uint64_t){ 0 }));
}

static void test_bitmap_empty_and_edges(void **state)
{
	uint64_t words[BITMAP_WORDS(128)] = { 0 };
	struct bitmap b;
	uint64_t s, e;

	(void)state;
	/* Zero-length bitmap: no runs at all. */
	bitmap_init(&b, 7, 0, NULL);
	assert_false(bitmap_next_run(&b, 7, false, &s, &e));
	assert_false(bitmap_next_run(&b, 7, true, &s, &e));

	/* Exactly two words. */
	bitmap_init(&b, 0, 128, words);
	assert_true(bitmap_next_run(&b, 0, false, &s, &e));
	assert_int_equal(s, 0);
	assert_int_equal(e, 128);
	assert_false(bitmap_next_run(&b, 0, true, &s, &e));
	/* A search from before the base starts at the base. */
	bitmap_init(&b, 100, 128, words);
	assert_true(bitmap_next_run(&b, 0, false, &s, &e));
	assert_int_equal(s, 100);
	assert_int_equal(e, 228);
	/* From inside a run: the run is cut at @from. */
	assert_true(bitmap_next_run(&b, 150, false, &s, &e));
	assert_int_equal(s, 150);
	/* From past the end. */
	assert_false(bitmap_next_run(&b, 228, false, &s, &e));

	/* Bits on word boundaries. */
	assert_true(bitmap_set(&b, 100 + 63));
	assert_true(bitmap_set(&b, 100 + 64));
	assert_true(bitmap_set(&b, 100 + 127));
	assert_true(bitmap_next_run(&b, 100, true, &s, &e));
	assert_int_equal(s, 163);
	assert_int_equal(e, 165);
	assert_true(bitmap_next_run(&b, e, true, &s, &e));
	assert_int_equal(s, 227);
	assert_int_equal(e, 228);
	assert_true(bitmap_next_run(&b, 163, false, &s, &e));
	assert_int_equal(s, 165);
	assert_int_equal(e, 227);
}

/* The reference model: the runs of a bool array. */
static bool model_next_run(const bool *m, uint64_t base, uint64_t len, uint64_t from,
			   bool value, uint64_t *start, uint64_t *end)
{
	uint64_t i = from < base ? 0 : from - base;

	while (i < len && m[i] != value)
		i++;
	if (i >= len)
		return false;
	*start = base + i;
	while (i < len && m[i] == value)
		i++;
	*end = base + i;
	return true;
}

static void test_bitmap_model(void **state)
{
	uint64_t seed = tu_seed("test_bitmap_model");
	uint64_t rng = seed;

	(void)state;
	for (unsigned iter = 0; iter < 300; iter++) {
		uint64_t len = 1 + tu_rand(&rng) % 700;
		uint64_t base = tu_rand(&rng) % 2 ? tu_rand(&rng) >> 8 : tu_rand(&rng) % 100;
		uint64_t *words = calloc(BITMAP_WORDS(len), sizeof(*words));
		bool *m = calloc(len, sizeof(*m));
		uint64_t nset = 0;
		struct bitmap b;

		assert_non_null(words);
		assert_non_null(m);
		bitmap_init(&b, base, len, words);
		for (unsigned op = 0; op < 60; op++) {
			uint64_t s = base + tu_rand(&rng) % len;

			if (tu_rand(&rng) % 3 == 0) {
				bool was = m[s - base];

				assert_int_equal(bitmap_set(&b, s), !was);
				if (!was)
					nset++;
				m[s - base] = true;
			} else {
				uint64_t n = tu_rand(&rng) % (base + len - s + 1);
				uint64_t added = 0;

				/* Sometimes short runs, sometimes long. */
				if (tu_rand(&rng) % 2) {
					uint64_t cap = tu_rand(&rng) % 8;

					n = MIN(n, cap);
				}
				for (uint64_t k = 0; k < n; k++) {
					if (!m[s - base + k])
						added++;
					m[s - base + k] = true;
				}
				nset += added;
				assert_int_equal(bitmap_set_range(&b, s, n), added);
			}
			assert_int_equal(b.nset, nset);

			/* Compare every run from a few random starting points,
			 * and a full walk of both values. */
			for (int v = 0; v < 2; v++) {
				uint64_t from = base, s1, e1, s2, e2;
				bool r1, r2;

				for (;;) {
					r1 = bitmap_next_run(&b, from, v, &s1, &e1);
					r2 = model_next_run(m, base, len, from, v, &s2, &e2);
					if (r1 != r2)
						fail_msg("seed %llu: run presence differs at %llu",
							 (unsigned long long)seed, (unsigned long long)from);
					if (!r1)
						break;
					if (s1 != s2 || e1 != e2)
						fail_msg("seed %llu: run [%llu,%llu) vs model [%llu,%llu)",
							 (unsigned long long)seed, (unsigned long long)s1,
							 (unsigned long long)e1, (unsigned long long)s2,
							 (unsigned long long)e2);
					from = e1;
				}
				from = base + tu_rand(&rng) % len;
				r1 = bitmap_next_run(&b, from, v, &s1, &e1);
				r2 = model_next_run(m, base, len, from, v, &s2, &e2);
				assert_int_equal(r1, r2);
				if (r1) {
					assert_int_equal(s1, s2);
					assert_int_equal(e1, e2);
				}
			}
			for (int k = 0; k < 4; k++) {
				uint64_t t = tu_rand(&rng) % len;

				assert_int_equal(bitmap_test(&b, base + t), m[t]);
			}
		}
		free(words);
		free(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bitmap_runs_split),
		cmocka_unit_test(test_bitmap_set_returns_new),
		cmocka_unit_test(test_bitmap_empty_and_edges),
		cmocka_unit_test(test_bitmap_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
