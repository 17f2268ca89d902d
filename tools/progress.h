/* SPDX-License-Identifier: MIT */
/*
 * progress.h: a progress bar for long-running commands, drawn on stderr only
 * when stderr is a terminal (and not with --quiet). Rate-limited to ~10
 * redraws per second. Single-threaded: one thread owns a bar.
 */
#ifndef DISKSTACK_TOOLS_PROGRESS_H
#define DISKSTACK_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

/* What the units of a bar are. */
enum progress_unit {
	PROGRESS_BYTES = 0,       /* sizes and a rate in bytes/s */
	PROGRESS_COUNT,           /* plain counts (operations) */
	PROGRESS_TIME_NS,         /* elapsed time; total is a duration in ns */
};

struct progress {
	const char *label;
	uint64_t total;
	uint64_t done;
	uint64_t last_draw_ns;
	uint64_t start_ns;
	bool enabled;
	enum progress_unit unit;
	unsigned last_len;        /* characters of the last line drawn */
};

/* Starts a bar for @total units (bytes); enabled only if stderr is a tty and
 * !@quiet. */
void progress_start(struct progress *p, const char *label, uint64_t total, bool quiet);
/* Same, with another unit. */
void progress_start_unit(struct progress *p, const char *label, uint64_t total, bool quiet,
			 enum progress_unit unit);
/* Sets the amount done and redraws if due. Cheap when the bar is disabled
 * or not due (one clock read when enabled). */
void progress_update(struct progress *p, uint64_t done);
/* Draws the final state and a newline. */
void progress_finish(struct progress *p);

#endif
