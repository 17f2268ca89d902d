/* SPDX-License-Identifier: MIT */
/*
 * fuzz-poll.h: waiting for a reply with a deadline, for fuzz targets that
 * talk to a server over a socket (fuzz-vhost-msg) and their unit tests.
 *
 * libFuzzer checks its -timeout with an interval timer, so every few
 * seconds a SIGALRM interrupts whatever system call the target's thread
 * sits in; poll(2) is never restarted after a signal handler (signal(7)),
 * whatever SA_RESTART says. A target that took poll's -1/EINTR for "no
 * reply" aborted with a server that was answering.
 */
#ifndef DISKSTACK_TESTS_FUZZ_POLL_H
#define DISKSTACK_TESTS_FUZZ_POLL_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>

/* Waits until @fd is readable (or hung up) or @timeout_ms have passed,
 * across signals. Returns 1 when readable, 0 on the timeout, -errno. */
static inline int fuzz_poll_in(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct timespec now;
	int64_t deadline_ms, left_ms = timeout_ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	deadline_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + timeout_ms;
	for (;;) {
		int n = poll(&p, 1, (int)left_ms);

		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
		clock_gettime(CLOCK_MONOTONIC, &now);
		left_ms = deadline_ms - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
		if (left_ms < 0)
			left_ms = 0;
	}
}

#endif
