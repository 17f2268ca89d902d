/* SPDX-License-Identifier: MIT */
/*
 * testproc.c: helper processes for unit tests (see testproc.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/testproc.h"

const char *tp_srcdir(void)
{
	const char *s = getenv("abs_top_srcdir");

	if (s && *s)
		return s;
#ifdef DS_TOP_SRCDIR
	return DS_TOP_SRCDIR;
#else
	return ".";
#endif
}

bool tp_have(const char *prog)
{
	char cmd[512];

	if (prog[0] == '/')
		return access(prog, X_OK) == 0;
	snprintf(cmd, sizeof(cmd), "command -v '%s' >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

pid_t tp_spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);

		if (in >= 0)
			dup2(in, 0);
		if (log) {
			int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

			if (out >= 0) {
				dup2(out, 1);
				dup2(out, 2);
			}
		}
		/* A new process group, so that stopping it never signals us;
		 * killed with us if the test dies first. */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static void tp_sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

bool tp_wait_file(const char *path, bool nonempty, int timeout_ms, pid_t pid)
{
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		struct stat st;

		if (stat(path, &st) == 0 && (!nonempty || st.st_size > 0))
			return true;
		if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		tp_sleep_ms(10);
	}
	return false;
}

void tp_stop(pid_t pid, int grace_ms)
{
	if (pid <= 0 || kill(pid, SIGTERM) < 0)
		return;
	for (int waited = 0; waited < grace_ms; waited += 10) {
		pid_t w = waitpid(pid, NULL, WNOHANG);

		if (w == pid || (w < 0 && errno == ECHILD && kill(pid, 0) < 0))
			return;
		tp_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

int tp_run_line(const char *cmd, char *buf, size_t len)
{
	FILE *p = popen(cmd, "r");
	int st;

	if (len)
		buf[0] = '\0';
	if (!p)
		return -1;
	if (len && fgets(buf, (int)len, p))
		buf[strcspn(buf, "\n")] = '\0';
	while (fgetc(p) != EOF)
		;
	st = pclose(p);
	return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

long tp_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return n;
}
