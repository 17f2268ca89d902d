/* SPDX-License-Identifier: MIT */
/*
 * progress.h: a progress bar for long-running commands, drawn on stderr only
 * when stderr is a terminal (and not with --quiet). Rate-limited to ~10
 * redraws per second.
 */
#ifndef DISKSTACK_TOOLS_PROGRESS_H
#define DISKSTACK_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	const char *label;
	uint64_t total;
	uint64_t done;
	uint64_t last_draw_ns;
	uint64_t start_ns;
	bool enabled;
};

/* Starts a bar for @total units (bytes); enabled only if stderr is a tty and
 * !@quiet. */
void progress_start(struct progress *p, const char *label, uint64_t total, bool quiet);
/* Sets the amount done and redraws if due. */
void progress_update(struct progress *p, uint64_t done);
/* Draws the final state and a newline. */
void progress_finish(struct progress *p);

#endif
