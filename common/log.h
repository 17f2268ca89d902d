/* SPDX-License-Identifier: MIT */
/*
 * log.h: the one logging path. Messages go to stderr with the program name
 * and a level; debug messages only when enabled (DISKSTACK_DEBUG=1 or
 * log_set_level). Thread-safe: each message is written with one write(2).
 */
#ifndef DISKSTACK_COMMON_LOG_H
#define DISKSTACK_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include "compiler.h"

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Sets the program name printed before each line (borrowed, must live forever). */
void log_set_program(const char *name);
/* Sets the maximum level printed. Default: INFO, or DEBUG if DISKSTACK_DEBUG is set. */
void log_set_level(enum log_level level);
/* True when messages of @level are printed. */
bool log_enabled(enum log_level level);

/* Sends every message from now on to @sink instead of stderr (NULL: back
 * to stderr), for hosts that own the process's logging (the nbdkit plugin
 * forwards to nbdkit_error/nbdkit_debug, which reach syslog when nbdkit
 * runs in the background and stderr is /dev/null). @msg is the text alone,
 * without program name, level or newline, and lives only for the call.
 * The level filter still applies first. @sink runs on the logging thread
 * and must be thread-safe; errno is restored after it returns. */
typedef void (*log_sink_fn)(enum log_level level, const char *msg);
void log_set_sink(log_sink_fn sink);

/* Prints one message at @level. */
void log_msg(enum log_level level, const char *fmt, ...) PRINTF_FMT(2, 3);

/* Formats a message into the caller's error buffer @err of @errlen bytes
 * (either may be NULL/0) and returns -EINVAL, for open functions that
 * report why they failed: `return errbuf_printf(err, errlen, "...", ...);` */
int errbuf_printf(char *err, size_t errlen, const char *fmt, ...) PRINTF_FMT(3, 4);

/* As errbuf_printf, but returns @ret (a -errno of the caller's choosing). */
int errbuf_fail(char *err, size_t errlen, int ret, const char *fmt, ...) PRINTF_FMT(4, 5);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

#endif
