/* SPDX-License-Identifier: MIT */
/*
 * testproc.h: helper processes for unit tests (HTTP and NBD servers): start
 * them, wait until they are ready, stop them by pid.
 */
#ifndef DISKSTACK_TESTS_TESTPROC_H
#define DISKSTACK_TESTS_TESTPROC_H

#include <stdbool.h>
#include <sys/types.h>

/* The source tree (for helper scripts): $abs_top_srcdir, else the
 * directory configure was run from (DS_TOP_SRCDIR), else ".". */
const char *tp_srcdir(void);

/* True when @prog is an executable on $PATH (or an absolute path). */
bool tp_have(const char *prog);

/* Starts @argv (NULL-terminated; argv[0] searched on $PATH) with stdin
 * from /dev/null and stdout/stderr to @log (NULL: inherited), in its own
 * process group, killed if the calling thread dies first. Returns the pid,
 * or -errno. */
pid_t tp_spawn(char *const argv[], const char *log);

/* Waits up to @timeout_ms for @path to exist (and be non-empty when
 * @nonempty). Returns true when it does. Gives up early if @pid (> 0) dies. */
bool tp_wait_file(const char *path, bool nonempty, int timeout_ms, pid_t pid);

/* Sends SIGTERM to @pid, then SIGKILL after @grace_ms, and reaps it if it
 * is our child. Harmless when @pid <= 0 or already gone. */
void tp_stop(pid_t pid, int grace_ms);

/* Runs the shell command @cmd and returns its first line of output in
 * @buf (newline removed). Returns the exit status (or -1). */
int tp_run_line(const char *cmd, char *buf, size_t len);

/* Reads a small file into @buf (NUL-terminated). Returns bytes or -errno. */
long tp_read_file(const char *path, char *buf, size_t len);

#endif
