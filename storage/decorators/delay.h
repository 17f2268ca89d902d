/* SPDX-License-Identifier: MIT */
/*
 * delay.h: the delay decorator, `delay:<time>[/<time>]:<spec>` (OpenVMM
 * DelayDisk, docs/openvmm-compat.md §5.2, §5.4).
 *
 * Reads and writes wait for the current read or write delay on a reactor
 * timer and then go to the inner disk; concurrent requests wait side by
 * side. Everything else is forwarded at once (flush, unmap, write-zeroes,
 * block status, cache, persistent reservations, resize); eject is not
 * forwarded (UNSUPPORTED). A zero delay forwards without a timer.
 */
#ifndef DISKSTACK_STORAGE_DELAY_H
#define DISKSTACK_STORAGE_DELAY_H

#include <stdint.h>

#include "storage/disk.h"

/* Largest delay accepted: one hour, in microseconds. */
#define DELAY_MAX_US (3600ull * 1000 * 1000)

/*
 * Wraps @lower in a delay disk with @read_us / @write_us microseconds of
 * delay. On success the new disk owns @lower; on failure the caller still
 * does. Errors (message in @err of @errlen bytes): -EINVAL for a delay
 * above DELAY_MAX_US, -ENOMEM.
 */
int delay_new(uint64_t read_us, uint64_t write_us, struct disk *lower, struct disk **out,
	      char *err, size_t errlen);

/*
 * Changes the delays of @d (a disk from delay_new or a delay: spec; not
 * one below it). Thread-safe, any thread, while requests are being served:
 * requests submitted afterwards use the new values, requests already waiting
 * keep theirs. Returns 0, or -EINVAL if @d is not a delay disk or a value is
 * above DELAY_MAX_US.
 */
int delay_set(struct disk *d, uint64_t read_us, uint64_t write_us);

/* Reads the current delays of @d into *@read_us / *@write_us (either may be
 * NULL). Returns 0 or -EINVAL if @d is not a delay disk. Any thread. */
int delay_get(struct disk *d, uint64_t *read_us, uint64_t *write_us);

#endif
