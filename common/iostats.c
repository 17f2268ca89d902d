/* SPDX-License-Identifier: MIT */
/*
 * iostats.c: request statistics counters and their report (iostats.h).
 */
#include "config.h"

#include "common/compiler.h"
#include "common/iostats.h"

/* Adds @n to a counter only this thread writes: a plain load and store,
 * no locked instruction. */
static inline void bump(_Atomic uint64_t *v, uint64_t n)
{
	atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* The same for counters several threads write: a locked addition. */
static inline void add(_Atomic uint64_t *v, uint64_t n, bool shared)
{
	if (shared)
		atomic_fetch_add_explicit(v, n, memory_order_relaxed);
	else
		bump(v, n);
}

static inline void count(struct iostats_counters *k, bool failed, uint64_t bytes,
			 uint64_t lat_ns, _Atomic uint64_t *maxp, bool shared)
{
	const memory_order rx = memory_order_relaxed;
	uint64_t max = atomic_load_explicit(maxp, rx);

	add(&k->ops, 1, shared);
	if (failed)
		add(&k->errors, 1, shared);
	else if (bytes)
		add(&k->bytes, bytes, shared);
	add(&k->lat_sum_ns, lat_ns, shared);
	add(&k->lat[histo_index(lat_ns, IOSTATS_LAT_BITS)], 1, shared);
	while (lat_ns > max && !atomic_compare_exchange_weak_explicit(maxp, &max, lat_ns, rx, rx))
		;
}

void iostats_count(struct iostats_counters *k, bool failed, uint64_t bytes, uint64_t lat_ns,
		   _Atomic uint64_t *maxp)
{
	count(k, failed, bytes, lat_ns, maxp, false);
}

void iostats_count_shared(struct iostats_counters *k, bool failed, uint64_t bytes,
			  uint64_t lat_ns, _Atomic uint64_t *maxp)
{
	count(k, failed, bytes, lat_ns, maxp, true);
}

void iostats_sums_add(struct iostats_sums *sum, const struct iostats_counters *k)
{
	const memory_order rx = memory_order_relaxed;

	sum->ops += atomic_load_explicit(&k->ops, rx);
	sum->bytes += atomic_load_explicit(&k->bytes, rx);
	sum->errors += atomic_load_explicit(&k->errors, rx);
	sum->lat_sum_ns += atomic_load_explicit(&k->lat_sum_ns, rx);
	for (unsigned i = 0; i < IOSTATS_LAT_BINS; i++)
		sum->lat[i] += atomic_load_explicit(&k->lat[i], rx);
}

/* The smallest bin value holding at least ceil(q * n) of @bins, clamped
 * to @max. */
static uint64_t lat_quantile(const uint64_t *bins, uint64_t n, double q, uint64_t max)
{
	uint64_t rank = (uint64_t)(q * (double)n + 0.999999), seen = 0;

	if (n == 0)
		return 0;
	rank = rank ? rank : 1;
	for (unsigned i = 0; i < IOSTATS_LAT_BINS; i++) {
		seen += bins[i];
		if (seen >= rank)
			return MIN(histo_value(i, IOSTATS_LAT_BITS), max);
	}
	return max;
}

void iostats_report(struct iostats_sums *t, struct iostats_sums *b, bool reset, uint64_t max_ns,
		    struct iostats_op *o)
{
	uint64_t n = 0;

	/* Counters only grow, and @b is a total taken earlier, so every
	 * difference is >= 0. */
	o->ops = t->ops - b->ops;
	o->bytes = t->bytes - b->bytes;
	o->errors = t->errors - b->errors;
	o->lat_max_ns = max_ns;
	for (unsigned i = 0; i < IOSTATS_LAT_BINS; i++) {
		uint64_t v = t->lat[i] - b->lat[i];

		n += v;
		if (reset)
			b->lat[i] = t->lat[i];
		t->lat[i] = v;
	}
	o->lat_mean_ns = n ? (t->lat_sum_ns - b->lat_sum_ns) / n : 0;
	o->lat_p50_ns = lat_quantile(t->lat, n, 0.50, max_ns);
	o->lat_p90_ns = lat_quantile(t->lat, n, 0.90, max_ns);
	o->lat_p99_ns = lat_quantile(t->lat, n, 0.99, max_ns);
	if (reset) {
		b->ops = t->ops;
		b->bytes = t->bytes;
		b->errors = t->errors;
		b->lat_sum_ns = t->lat_sum_ns;
	}
}

const char *iostats_class_name(unsigned c)
{
	static const char *const names[IOSTATS_COUNT] = {
		"read", "write", "flush", "trim", "zero", "other",
	};

	return c < IOSTATS_COUNT ? names[c] : "?";
}
