/* SPDX-License-Identifier: MIT */
/*
 * syscall-floor.c: what the kernel charges for the operations every
 * request of a socket server pays, on this machine, to compare a server's
 * per-request kernel time with (docs/bench-nbd.md, "The floor on one
 * connection"):
 *
 *   getppid      one syscall that does nothing (entry, exit, mitigations)
 *   uring-nop    io_uring_enter submitting one NOP and waiting for it
 *   pipe-pingpong  one byte over a pipe to another process and one back:
 *                two wake-ups and two context switches, the least a
 *                request that sleeps on each side costs
 *   unix-pingpong  the same over a Unix stream socket pair (an NBD
 *                client and server on one socket, minus the protocol)
 *
 * Usage: syscall-floor [ITERATIONS]   (default 200000; ping-pongs do a
 * tenth). Prints one line per operation: name, ns per operation.
 */
#include "config.h"

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void report(const char *what, uint64_t t0, unsigned long n)
{
	printf("%-14s %8.0f ns\n", what, (double)(now_ns() - t0) / (double)n);
}

/* One byte there and back between this process and a child, over the
 * pair of fds @to/@from (ours) and @cto/@cfrom (the child's). */
static int pingpong(const char *what, int to, int from, int cto, int cfrom, unsigned long n)
{
	char b = 0;
	uint64_t t0;
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		for (unsigned long i = 0; i < n; i++)
			if (read(cfrom, &b, 1) != 1 || write(cto, &b, 1) != 1)
				_exit(1);
		_exit(0);
	}
	t0 = now_ns();
	for (unsigned long i = 0; i < n; i++)
		if (write(to, &b, 1) != 1 || read(from, &b, 1) != 1)
			return -EIO;
	report(what, t0, n);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -EIO;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	struct io_uring ring;
	int p1[2], p2[2], sp[2];
	uint64_t t0;

	if (n == 0) {
		fprintf(stderr, "usage: syscall-floor [ITERATIONS > 0]\n");
		return 2;
	}
	t0 = now_ns();
	for (unsigned long i = 0; i < n; i++)
		(void)syscall(SYS_getppid);
	report("getppid", t0, n);

	if (io_uring_queue_init(8, &ring, 0) == 0) {
		t0 = now_ns();
		for (unsigned long i = 0; i < n; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			struct io_uring_cqe *cqe;

			if (!sqe)
				return 1;
			io_uring_prep_nop(sqe);
			if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_peek_cqe(&ring, &cqe))
				return 1;
			io_uring_cqe_seen(&ring, cqe);
		}
		report("uring-nop", t0, n);
		io_uring_queue_exit(&ring);
	} else {
		printf("%-14s %8s\n", "uring-nop", "-");
	}

	n = n / 10 ? n / 10 : 1;
	if (pipe(p1) < 0 || pipe(p2) < 0 || pingpong("pipe-pingpong", p1[1], p2[0], p2[1], p1[0], n))
		return 1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0 ||
	    pingpong("unix-pingpong", sp[0], sp[0], sp[1], sp[1], n))
		return 1;
	return 0;
}
