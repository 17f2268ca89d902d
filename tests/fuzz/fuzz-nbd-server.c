/* SPDX-License-Identifier: MIT */
/*
 * fuzz-nbd-server.c: libFuzzer target for the NBD server (nbd/): the input
 * is everything a client sends, from the first byte of the handshake to the
 * last request. Each run serves one connection (the stdin/stdout mode of
 * `diskstack serve -s`) over a socketpair with two exports, "" (mem:1M,
 * writable) and "ro" (mem:64K, read-only); a helper thread feeds the input
 * and drains the replies until the server closes. The server must never
 * crash, leak (LeakSanitizer runs after each input), hang, or read or write
 * out of bounds, whatever the bytes.
 *
 * Seeds: tests/fuzz/nbd-seeds.py writes valid sessions (every option,
 * every command and flag) for the fuzzer to mutate.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/fuzz/fuzz-prelude.h"
#include "nbd/server.h"
#include "net/netsrv.h"
#include "storage/layered.h"

struct peer {
	int fd;
	const uint8_t *data;
	size_t size;
};

/* The client side: writes the input (then shuts its half down) while
 * reading and discarding replies until the server closes. */
static void *peer_main(void *arg)
{
	struct peer *p = arg;
	size_t off = 0;
	bool wr_done = p->size == 0;
	char buf[65536];

	if (wr_done)
		(void)shutdown(p->fd, SHUT_WR);
	for (;;) {
		struct pollfd pfd = { .fd = p->fd, .events = POLLIN | (wr_done ? 0 : POLLOUT) };

		if (poll(&pfd, 1, 10000) <= 0)
			abort();        /* a server that stops answering: a hang */
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(p->fd, buf, sizeof(buf));

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
		}
		if (!wr_done && (pfd.revents & POLLOUT)) {
			ssize_t n = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);

			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				wr_done = true;     /* the server has closed its end */
			if (off == p->size) {
				wr_done = true;
				(void)shutdown(p->fd, SHUT_WR);
			}
		}
	}
	return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	fuzz_prelude_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct netsrv_opts no = { .name = "nbd", .threads = 1 };
	struct nbdsrv_opts o = { .max_requests = 16 };
	struct disk *d0 = NULL, *d1 = NULL;
	const struct netsrv_proto *proto = NULL;
	struct netsrv *net = NULL;
	struct nbdsrv *s = NULL;
	struct peer p = { .data = data, .size = size };
	pthread_t th;
	char err[256];
	int sv[2], wfd;

	if (size > (1u << 20))
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0 || (wfd = dup(sv[0])) < 0)
		abort();
	if (netsrv_new(&no, &net) < 0 || nbdsrv_new(&o, &s) < 0 ||
	    ramdisk_new(1u << 20, 512, false, &d0, err, sizeof(err)) < 0 ||
	    ramdisk_new(64u << 10, 512, false, &d1, err, sizeof(err)) < 0 ||
	    nbdsrv_add_export(s, "", "scratch", d0, false) < 0 ||
	    nbdsrv_add_export(s, "ro", NULL, d1, true) < 0 ||
	    nbdsrv_protocol(s, net, &proto) < 0 || netsrv_serve_fds(net, proto, sv[0], wfd) < 0 ||
	    netsrv_start(net) < 0)
		abort();
	p.fd = sv[1];
	if (pthread_create(&th, NULL, peer_main, &p) != 0)
		abort();
	(void)netsrv_run(net);
	(void)nbdsrv_flush(s);
	pthread_join(th, NULL);
	netsrv_free(net);
	nbdsrv_free(s);
	close(sv[1]);
	return 0;
}
