/* SPDX-License-Identifier: MIT */
/*
 * progress.c: the progress bar of long-running commands (progress.h).
 *
 * The bar is one line on stderr redrawn in place with '\r'; it is only drawn
 * when stderr is a terminal, so logs and pipes never see it. Redraws are
 * limited to one per 100 ms so that callers may call progress_update() on
 * every completion.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/progress.h"
#include "tools/tool.h"

#define PROGRESS_INTERVAL_NS 100000000ull
#define PROGRESS_BAR_WIDTH 30

static uint64_t progress_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void progress_start_unit(struct progress *p, const char *label, uint64_t total, bool quiet,
			 enum progress_unit unit)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->total = total;
	p->unit = unit;
	p->enabled = !quiet && isatty(STDERR_FILENO);
	p->start_ns = progress_now_ns();
}

void progress_start(struct progress *p, const char *label, uint64_t total, bool quiet)
{
	progress_start_unit(p, label, total, quiet, PROGRESS_BYTES);
}

static void fmt_amount(const struct progress *p, uint64_t v, char *buf, size_t len)
{
	switch (p->unit) {
	case PROGRESS_BYTES:
		tool_human_size(v, buf, len);
		break;
	case PROGRESS_COUNT:
		snprintf(buf, len, "%" PRIu64, v);
		break;
	case PROGRESS_TIME_NS:
		snprintf(buf, len, "%.1fs", (double)v / 1e9);
		break;
	}
}

static void progress_draw(struct progress *p, uint64_t now)
{
	char line[256], done[32], total[32], rate[48] = "", eta[32] = "";
	double frac = p->total ? (double)p->done / (double)p->total : 1.0;
	double secs = (double)(now - p->start_ns) / 1e9;
	int filled, n;

	if (frac > 1.0)
		frac = 1.0;
	filled = (int)(frac * PROGRESS_BAR_WIDTH);
	fmt_amount(p, p->done, done, sizeof(done));
	fmt_amount(p, p->total, total, sizeof(total));
	if (p->unit != PROGRESS_TIME_NS && secs > 0.05) {
		double r = (double)p->done / secs;
		if (p->unit == PROGRESS_BYTES) {
			char h[32];
			tool_human_size((uint64_t)r, h, sizeof(h));
			snprintf(rate, sizeof(rate), "  %s/s", h);
		} else {
			snprintf(rate, sizeof(rate), "  %.0f/s", r);
		}
		if (r > 0 && p->done < p->total) {
			uint64_t left = (uint64_t)((double)(p->total - p->done) / r);
			snprintf(eta, sizeof(eta), "  ETA %" PRIu64 ":%02" PRIu64,
				 left / 60, left % 60);
		}
	}

	char bar[PROGRESS_BAR_WIDTH + 1];
	for (int i = 0; i < PROGRESS_BAR_WIDTH; i++)
		bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
	bar[PROGRESS_BAR_WIDTH] = '\0';

	n = snprintf(line, sizeof(line), "%s %5.1f%% [%s] %s / %s%s%s",
		     p->label ? p->label : "", frac * 100.0, bar, done, total, rate, eta);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	/* Pad over the remains of a longer previous line. */
	fprintf(stderr, "\r%s%*s", line, p->last_len > (unsigned)n ? (int)(p->last_len - (unsigned)n) : 0, "");
	fflush(stderr);
	p->last_len = (unsigned)n;
	p->last_draw_ns = now;
}

void progress_update(struct progress *p, uint64_t done)
{
	p->done = done;
	if (!p->enabled)
		return;
	uint64_t now = progress_now_ns();
	if (now - p->last_draw_ns < PROGRESS_INTERVAL_NS)
		return;
	progress_draw(p, now);
}

void progress_finish(struct progress *p)
{
	if (!p->enabled)
		return;
	progress_draw(p, progress_now_ns());
	fputc('\n', stderr);
	fflush(stderr);
	p->enabled = false;
}
