/* SPDX-License-Identifier: MIT */
/*
 * log.c: the one logging path (see log.h).
 *
 * A message is formatted into a stack buffer ("prog: level: text\n") and
 * written with a single write(2), so lines from concurrent threads never
 * interleave. Long messages are truncated with "...". errno is preserved, so
 * callers may log before converting errno to a return value.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX 4096
#define LOG_LEVEL_UNSET (-1)

static const char *_Atomic log_program;
static _Atomic log_sink_fn log_sink;
/* The maximum level printed; LOG_LEVEL_UNSET until first used. */
static _Atomic int log_level = LOG_LEVEL_UNSET;

static const char *const log_level_names[] = {
	[LOG_LEVEL_ERROR] = "error: ",
	[LOG_LEVEL_WARN] = "warning: ",
	[LOG_LEVEL_INFO] = "",
	[LOG_LEVEL_DEBUG] = "debug: ",
};

void log_set_program(const char *name)
{
	atomic_store(&log_program, name);
}

void log_set_sink(log_sink_fn sink)
{
	atomic_store(&log_sink, sink);
}

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, (int)level);
}

static int log_get_level(void)
{
	int level = atomic_load_explicit(&log_level, memory_order_relaxed);
	const char *env;

	if (likely(level != LOG_LEVEL_UNSET))
		return level;
	env = getenv("DISKSTACK_DEBUG");
	level = (env && *env && strcmp(env, "0") != 0) ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
	/* A concurrent log_set_level() wins over the environment default. */
	int expected = LOG_LEVEL_UNSET;
	if (!atomic_compare_exchange_strong(&log_level, &expected, level))
		level = expected;
	return level;
}

bool log_enabled(enum log_level level)
{
	return (int)level <= log_get_level();
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	const char *prog, *lname;
	size_t len = 0, room = sizeof(line) - 1; /* keep one byte for '\n' */
	int saved_errno = errno;
	log_sink_fn sink;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	sink = atomic_load(&log_sink);
	if (sink) {
		va_start(ap, fmt);
		errno = saved_errno;
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\n')
			line[len - 1] = '\0';
		sink(level, line);
		errno = saved_errno;
		return;
	}
	prog = atomic_load(&log_program);
	if (!prog)
		prog = program_invocation_short_name;
	lname = (unsigned)level < ARRAY_SIZE(log_level_names) ? log_level_names[level] : "";

	n = snprintf(line, room, "%s: %s", prog ? prog : "diskstack", lname);
	if (n > 0)
		len = MIN((size_t)n, room - 1);
	va_start(ap, fmt);
	errno = saved_errno; /* let %m see the caller's errno */
	n = vsnprintf(line + len, room - len, fmt, ap);
	va_end(ap);
	if (n > 0) {
		if ((size_t)n >= room - len) {
			len = room - 1;
			memcpy(line + len - 3, "...", 3);
		} else {
			len += (size_t)n;
		}
	}
	/* Messages should not carry their own newline, but tolerate one. */
	if (len > 0 && line[len - 1] == '\n')
		len--;
	line[len++] = '\n';

	for (size_t off = 0; off < len;) {
		ssize_t w = write(STDERR_FILENO, line + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	errno = saved_errno;
}

static void PRINTF_FMT(3, 0) errbuf_vprintf(char *err, size_t errlen, const char *fmt, va_list ap)
{
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
}

int errbuf_printf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errbuf_vprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int errbuf_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errbuf_vprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}
