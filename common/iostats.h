/* SPDX-License-Identifier: MIT */
/*
 * iostats.h: request statistics shared by the NBD server's exports and the
 * dispatcher's per-disk counters (docs/ctl.md, "stats"): per request class,
 * the count, payload bytes, errors and a log-linear latency histogram
 * (common/histo.h, 8 bins per power of two: percentiles within 1/8).
 *
 * Notes on the design
 * -------------------
 * - A struct iostats_counters has exactly one writer thread (a connection's
 *   worker, a reactor), which adds with a relaxed load and store: no locked
 *   instruction, no cache line written by two threads. Readers load the
 *   counters relaxed and add them into struct iostats_sums.
 * - Resets never write a counter: the owner of the counters keeps the
 *   totals at the last reset (a "base") and reports the difference, so
 *   every request lands in exactly one interval between resets.
 * - The latency maximum is one value per owner (a CAS only when a request
 *   beats it, so its line stays shared in every cache).
 */
#ifndef DISKSTACK_COMMON_IOSTATS_H
#define DISKSTACK_COMMON_IOSTATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/histo.h"

#define IOSTATS_LAT_BITS 3u
#define IOSTATS_LAT_BINS HISTO_SIZE(IOSTATS_LAT_BITS)

/* Request classes. */
enum iostats_class {
	IOSTATS_READ = 0,
	IOSTATS_WRITE,
	IOSTATS_FLUSH,
	IOSTATS_TRIM,
	IOSTATS_ZERO,
	IOSTATS_OTHER,
	IOSTATS_COUNT
};

/* One class's counters, written by one thread only (see above). */
struct iostats_counters {
	_Atomic uint64_t ops, bytes, errors, lat_sum_ns;
	_Atomic uint64_t lat[IOSTATS_LAT_BINS];
};

/* The same counters as plain sums (the reader's). */
struct iostats_sums {
	uint64_t ops, bytes, errors, lat_sum_ns;
	uint64_t lat[IOSTATS_LAT_BINS];
};

/* What is reported of one class for an interval. */
struct iostats_op {
	uint64_t ops, bytes, errors;      /* bytes: READ/WRITE payloads that succeeded */
	uint64_t lat_mean_ns, lat_p50_ns, lat_p90_ns, lat_p99_ns, lat_max_ns;
};

/* Counts one finished request in @k (the calling thread must be @k's only
 * writer); @bytes is added unless @failed; @maxp (shared) is raised to
 * @lat_ns when that is larger. */
void iostats_count(struct iostats_counters *k, bool failed, uint64_t bytes, uint64_t lat_ns,
		   _Atomic uint64_t *maxp);
/* The same for counters that several threads write (atomic additions). */
void iostats_count_shared(struct iostats_counters *k, bool failed, uint64_t bytes,
			  uint64_t lat_ns, _Atomic uint64_t *maxp);

/* @sum += @k, read relaxed (its writer may be adding). */
void iostats_sums_add(struct iostats_sums *sum, const struct iostats_counters *k);

/* Fills *@out with @total - @base; with @reset, @base becomes @total.
 * @total is used as scratch (its bins are overwritten). @max_ns is the
 * interval's largest latency (percentiles are clamped to it). */
void iostats_report(struct iostats_sums *total, struct iostats_sums *base, bool reset,
		    uint64_t max_ns, struct iostats_op *out);

/* "read", "write", "flush", "trim", "zero", "other". */
const char *iostats_class_name(unsigned c);

#endif
