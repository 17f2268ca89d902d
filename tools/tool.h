/* SPDX-License-Identifier: MIT */
/*
 * tool.h: the subcommands of the diskstack command.
 * Each takes (argc, argv) with argv[0] = the subcommand name and returns the
 * process exit status: 0 success, 1 failure at run time, 2 bad usage or a
 * bad spec (a message on stderr says what).
 */
#ifndef DISKSTACK_TOOLS_TOOL_H
#define DISKSTACK_TOOLS_TOOL_H

#define EXIT_USAGE 2

int cmd_info(int argc, char **argv);
int cmd_copy(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Prints a usage error "diskstack <cmd>: <msg>" and a hint; returns 2. */
int tool_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a size argument (same grammar as specs, plus lower-case k/m/g/t).
 * Returns 0 or -EINVAL. */
int tool_parse_size(const char *s, uint64_t *out);

#endif
