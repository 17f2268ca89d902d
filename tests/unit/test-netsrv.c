/* SPDX-License-Identifier: MIT */
/*
 * test-netsrv.c: the socket engine (net/) without NBD: the address
 * helpers tools use, and a toy length-prefixed PDU protocol (a 4-byte
 * big-endian length, then that many bytes, echoed back) - the shape of
 * iSCSI and NVMe/TCP - served over a descriptor pair and over TCP, with
 * the drain at netsrv_stop.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/compiler.h"
#include "net/netsrv.h"
#include "tests/unit/testutil.h"

/* ---- helpers for tools ------------------------------------------------------- */

static void test_netsrv_client_host(void **state)
{
	char h[64];

	(void)state;
	netsrv_client_host(NULL, h, sizeof(h));
	assert_string_equal(h, "127.0.0.1");
	netsrv_client_host("0.0.0.0", h, sizeof(h));
	assert_string_equal(h, "127.0.0.1");
	netsrv_client_host("::", h, sizeof(h));
	assert_string_equal(h, "[::1]");
	netsrv_client_host("fe80::1", h, sizeof(h));
	assert_string_equal(h, "[fe80::1]");
	netsrv_client_host("example.org", h, sizeof(h));
	assert_string_equal(h, "example.org");
}

static void test_netsrv_activation_fds(void **state)
{
	char pid[32];

	(void)state;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	assert_int_equal(netsrv_activation_fds(), 0);
	/* Meant for another process: ignored and left alone. */
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "2", 1);
	assert_int_equal(netsrv_activation_fds(), 0);
	assert_non_null(getenv("LISTEN_FDS"));
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "x2", 1);
	assert_int_equal(netsrv_activation_fds(), -EINVAL);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "a:b", 1);
	assert_int_equal(netsrv_activation_fds(), 2);
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
}

static void test_netsrv_private_unix_path(void **state)
{
	char dir[64], path[80];
	struct stat st;

	(void)state;
	assert_int_equal(netsrv_private_unix_path("test-netsrv", dir, sizeof(dir), path,
						  sizeof(path)), 0);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(strncmp(path, dir, strlen(dir)), 0);
	assert_string_equal(path + strlen(dir), "/socket");
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(netsrv_private_unix_path("test-netsrv", dir, 8, path, sizeof(path)),
			 -ENAMETOOLONG);
}

/* ---- a toy PDU protocol --------------------------------------------------------- */

struct echo_conn {
	struct netsrv_conn *nc;
	uint8_t hdr[4];
	uint8_t *data;            /* malloc'd payload, NULL between PDUs */
	uint32_t len, got;        /* payload length; bytes of the current read */
	struct netsrv_tx tx;
	struct iovec iov[2];
	bool pending;             /* lazy mode: a PDU received, its echo not queued */
	unsigned idle_asks;       /* lazy mode: busy(NETSRV_BUSY_IDLE) calls while pending */
};

static atomic_uint echo_starts, echo_drains, echo_frees, echo_pdus;
/* Headers with netsrv_rx_exact (past the multishot ring) instead. */
static atomic_bool echo_exact;
/* Echoes wait until the engine asks proto->busy(NETSRV_BUSY_IDLE). */
static atomic_bool echo_lazy;

static void echo_read_hdr(struct echo_conn *e);

static void echo_sent(struct netsrv_conn *nc, struct netsrv_tx *tx)
{
	struct echo_conn *e = container_of(tx, struct echo_conn, tx);

	free(e->data);
	e->data = NULL;
	atomic_fetch_add(&echo_pdus, 1);
	if (!netsrv_conn_closing(nc))
		echo_read_hdr(e);
}

static void echo_reply(struct echo_conn *e)
{
	if (atomic_load(&echo_lazy) && !e->pending) {
		e->pending = true;
		return;
	}
	e->pending = false;
	e->iov[0] = (struct iovec){ e->hdr, 4 };
	e->iov[1] = (struct iovec){ e->data, e->len };
	e->tx.iov = e->iov;
	e->tx.iovcnt = 2;
	e->tx.sent = echo_sent;
	netsrv_tx_queue(e->nc, &e->tx);
	netsrv_tx_schedule(e->nc);
}

static void echo_data_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct echo_conn *e = netsrv_conn_priv(nc);

	if (res <= 0) {
		netsrv_conn_close(nc, false, "short PDU");
		return;
	}
	e->got += (uint32_t)res;
	if (e->got < e->len) {
		netsrv_rx(nc, e->data + e->got, e->len - e->got, true, echo_data_cb);
		return;
	}
	echo_reply(e);
}

static void echo_hdr_cb(struct netsrv_conn *nc, ssize_t res)
{
	struct echo_conn *e = netsrv_conn_priv(nc);

	if (res <= 0) {
		/* End of stream between PDUs, or cancelled by the drain. */
		netsrv_conn_close(nc, true, "client done");
		return;
	}
	e->got += (uint32_t)res;
	if (e->got < 4) {
		if (atomic_load(&echo_exact))
			netsrv_rx_exact(nc, e->hdr + e->got, 4 - e->got, echo_hdr_cb);
		else
			netsrv_rx(nc, e->hdr + e->got, 4 - e->got, true, echo_hdr_cb);
		return;
	}
	memcpy(&e->len, e->hdr, 4);
	e->len = ntohl(e->len);
	e->data = malloc(e->len ? e->len : 1);
	if (!e->data) {
		netsrv_conn_close(nc, false, "out of memory");
		return;
	}
	e->got = 0;
	if (e->len == 0) {
		echo_reply(e);
		return;
	}
	netsrv_rx(nc, e->data, e->len, true, echo_data_cb);
}

static void echo_read_hdr(struct echo_conn *e)
{
	e->got = 0;
	if (atomic_load(&echo_exact))
		netsrv_rx_exact(e->nc, e->hdr, 4, echo_hdr_cb);
	else
		netsrv_rx(e->nc, e->hdr, 4, true, echo_hdr_cb);
}

static void echo_start(struct netsrv_conn *nc, void *ctx)
{
	struct echo_conn *e = netsrv_conn_priv(nc);

	/* Counted only with the right context (no cmocka asserts off the
	 * test's thread). */
	if (ctx == &echo_starts)
		atomic_fetch_add(&echo_starts, 1);
	e->nc = nc;
	netsrv_conn_established(nc);
	echo_read_hdr(e);
}

static void echo_drain(struct netsrv_conn *nc)
{
	atomic_fetch_add(&echo_drains, 1);
	netsrv_rx_cancel(nc);
	netsrv_conn_close(nc, true, "draining");
}

static void echo_free(struct netsrv_conn *nc)
{
	struct echo_conn *e = netsrv_conn_priv(nc);

	free(e->data);
	atomic_fetch_add(&echo_frees, 1);
}

/* Lazy mode: the work a PDU stands for outlasts one idle period and ends
 * in the reactor pass in which the idle timer fires the second time, just
 * before the timer looks. */
static bool echo_busy(struct netsrv_conn *nc, enum netsrv_busy what)
{
	struct echo_conn *e = netsrv_conn_priv(nc);

	if (!e->pending)
		return false;
	if (what != NETSRV_BUSY_IDLE || ++e->idle_asks < 2)
		return true;
	echo_reply(e);
	return false;
}

static const struct netsrv_proto echo_proto = {
	.version = NETSRV_PROTO_VERSION,
	.name = "echo",
	.ctx = &echo_starts,
	.priv_bytes = sizeof(struct echo_conn),
	.start = echo_start,
	.drain = echo_drain,
	.free = echo_free,
	.busy = echo_busy,
};

struct run_arg {
	struct netsrv *net;
	pthread_t thread;
	int status;
};

static void *run_main(void *arg)
{
	struct run_arg *a = arg;

	tu_reactor();
	a->status = netsrv_start(a->net) == 0 ? netsrv_run(a->net) : -1;
	tu_reactor_done();
	return NULL;
}

static void xwrite(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* Sends PDUs of 0, 5 and 70000 bytes in one go and reads them back. */
static void echo_exchange(int fd)
{
	static uint8_t big[70000], back[70000];
	uint32_t lens[] = { 0, 5, sizeof(big) };
	uint32_t h;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13);
	for (unsigned k = 0; k < ARRAY_SIZE(lens); k++) {
		uint32_t be = htonl(lens[k]);

		xwrite(fd, &be, 4);
		xwrite(fd, big, lens[k]);
	}
	for (unsigned k = 0; k < ARRAY_SIZE(lens); k++) {
		tu_read_full(fd, &h, 4);
		assert_int_equal(ntohl(h), lens[k]);
		tu_read_full(fd, back, lens[k]);
		assert_memory_equal(back, big, lens[k]);
	}
}

static void echo_reset(void)
{
	atomic_store(&echo_starts, 0);
	atomic_store(&echo_drains, 0);
	atomic_store(&echo_frees, 0);
	atomic_store(&echo_pdus, 0);
}

/* One connection on a descriptor pair: the engine stops when it ends. */
static void test_netsrv_echo_fds(void **state)
{
	struct netsrv_opts o = { .name = "echo", .threads = 1 };
	struct run_arg a = { .status = -2 };
	int sv[2];
	char c;

	(void)state;
	echo_reset();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(netsrv_new(&o, &a.net), 0);
	assert_int_equal(netsrv_serve_fds(a.net, &echo_proto, sv[1], sv[1]), 0);
	assert_int_equal(netsrv_serve_fds(a.net, &echo_proto, sv[1], sv[1]), -EBUSY);
	assert_int_equal(pthread_create(&a.thread, NULL, run_main, &a), 0);
	echo_exchange(sv[0]);
	shutdown(sv[0], SHUT_WR);
	assert_int_equal(read(sv[0], &c, 1), 0);
	assert_int_equal(pthread_join(a.thread, NULL), 0);
	assert_int_equal(a.status, 0);
	assert_int_equal(atomic_load(&echo_starts), 1);
	assert_int_equal(atomic_load(&echo_frees), 1);
	assert_int_equal(atomic_load(&echo_pdus), 3);
	assert_int_equal(netsrv_connections_served(a.net), 1);
	netsrv_free(a.net);
	close(sv[0]);
}

/* Two TCP clients, then netsrv_stop: each protocol connection is asked to
 * drain, closes, and netsrv_run returns. */
static void echo_tcp_drain(bool exact)
{
	struct netsrv_opts o = { .name = "echo", .threads = 2 };
	struct run_arg a = { .status = -2 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char err[256], c;
	uint16_t port = 0;
	int fd[2];

	echo_reset();
	atomic_store(&echo_exact, exact);
	assert_int_equal(netsrv_new(&o, &a.net), 0);
	assert_int_equal(netsrv_listen_tcp(a.net, &echo_proto, "127.0.0.1", 0, &port, err,
					   sizeof(err)), 0);
	assert_true(port != 0);
	assert_int_equal(pthread_create(&a.thread, NULL, run_main, &a), 0);
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 2; i++) {
		fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd[i] >= 0);
		assert_int_equal(connect(fd[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
		echo_exchange(fd[i]);
	}
	netsrv_stop(a.net);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(read(fd[i], &c, 1), 0);
		close(fd[i]);
	}
	assert_int_equal(pthread_join(a.thread, NULL), 0);
	assert_int_equal(a.status, 0);
	assert_int_equal(atomic_load(&echo_drains), 2);
	assert_int_equal(atomic_load(&echo_frees), 2);
	assert_int_equal(atomic_load(&echo_pdus), 6);
	netsrv_free(a.net);
	atomic_store(&echo_exact, false);
}

/* test-nbd-limits failed now and then: a 12 s read under a 4 s idle
 * timeout was cut off. The timer re-armed every 4 s while the read was in
 * flight, and at 12 s the read's completion queued its reply and the timer
 * fired in the same pass: nothing in flight, nothing received for 12 s,
 * so idle, and the queued reply was dropped by a hard close. A reply
 * queued since the timer last looked is activity now. */
static void test_netsrv_idle_reply_same_pass_regression(void **state)
{
	struct netsrv_opts o = { .name = "echo", .threads = 1, .idle_timeout_s = 1 };
	struct run_arg a = { .status = -2 };
	uint32_t be = htonl(3), h;
	char back[3], c;
	int sv[2];

	(void)state;
	echo_reset();
	atomic_store(&echo_lazy, true);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(netsrv_new(&o, &a.net), 0);
	assert_int_equal(netsrv_serve_fds(a.net, &echo_proto, sv[1], sv[1]), 0);
	assert_int_equal(pthread_create(&a.thread, NULL, run_main, &a), 0);
	xwrite(sv[0], &be, 4);
	xwrite(sv[0], "abc", 3);
	/* The echo comes when the timer looks again (about 2 s): not cut off. */
	tu_read_full(sv[0], &h, 4);
	assert_int_equal(ntohl(h), 3);
	tu_read_full(sv[0], back, 3);
	assert_memory_equal(back, "abc", 3);
	/* Then nothing happens: closed as idle, and the engine ends. */
	assert_int_equal(read(sv[0], &c, 1), 0);
	assert_int_equal(pthread_join(a.thread, NULL), 0);
	assert_int_equal(a.status, 0);
	assert_int_equal(atomic_load(&echo_pdus), 1);
	assert_int_equal(atomic_load(&echo_frees), 1);
	netsrv_free(a.net);
	close(sv[0]);
	atomic_store(&echo_lazy, false);
}

static void test_netsrv_echo_tcp_drain(void **state)
{
	(void)state;
	echo_tcp_drain(false);
}

/* The same with every header received by netsrv_rx_exact: bytes the
 * multishot ring already holds (the PDUs arrive in one go) come first,
 * then one-shot receives, and buffered receives mix with them. */
static void test_netsrv_echo_tcp_rx_exact(void **state)
{
	(void)state;
	echo_tcp_drain(true);
}

/* Large payloads (zero-copy sends from NETSRV_ZC_MIN_BYTES, receives
 * straight into the buffer) alternating with runs of small PDUs, more of
 * them than NETSRV_MS_QUIET_RX, so the receive side goes from one-shot
 * header receives back to the multishot ring and again, all pipelined. */
#define STREAM_ROUNDS 6
#define STREAM_BIG 300000u
#define STREAM_SMALL 20

static uint8_t stream_byte(unsigned r, size_t i)
{
	return (uint8_t)(i * 7 + r * 31 + (i >> 11));
}

/* write(2) all of it (no cmocka asserts off the test's thread). */
static bool stream_put(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void *stream_writer(void *arg)
{
	static uint8_t big[STREAM_BIG];
	int fd = *(int *)arg;

	for (unsigned r = 0; r < STREAM_ROUNDS; r++) {
		uint32_t be = htonl(STREAM_BIG);

		for (size_t i = 0; i < sizeof(big); i++)
			big[i] = stream_byte(r, i);
		if (!stream_put(fd, (const uint8_t *)&be, 4) || !stream_put(fd, big, sizeof(big)))
			return NULL;
		for (unsigned k = 0; k < STREAM_SMALL; k++) {
			uint8_t pdu[9] = { 0, 0, 0, 5, (uint8_t)r, (uint8_t)k, 1, 2, 3 };

			if (!stream_put(fd, pdu, sizeof(pdu)))
				return NULL;
		}
	}
	return NULL;
}

static void test_netsrv_echo_tcp_payload_stream(void **state)
{
	struct netsrv_opts o = { .name = "echo", .threads = 1 };
	struct run_arg a = { .status = -2 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	static uint8_t back[STREAM_BIG];
	char err[256];
	uint16_t port = 0;
	pthread_t wr;
	uint32_t h;
	int fd;

	(void)state;
	echo_reset();
	assert_int_equal(netsrv_new(&o, &a.net), 0);
	assert_int_equal(netsrv_listen_tcp(a.net, &echo_proto, "127.0.0.1", 0, &port, err,
					   sizeof(err)), 0);
	assert_int_equal(pthread_create(&a.thread, NULL, run_main, &a), 0);
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(pthread_create(&wr, NULL, stream_writer, &fd), 0);
	for (unsigned r = 0; r < STREAM_ROUNDS; r++) {
		tu_read_full(fd, &h, 4);
		assert_int_equal(ntohl(h), STREAM_BIG);
		tu_read_full(fd, back, sizeof(back));
		for (size_t i = 0; i < sizeof(back); i++)
			if (back[i] != stream_byte(r, i))
				fail_msg("round %u: byte %zu is %u, not %u", r, i, back[i],
					 stream_byte(r, i));
		for (unsigned k = 0; k < STREAM_SMALL; k++) {
			uint8_t pdu[9], want[9] = { 0, 0, 0, 5, (uint8_t)r, (uint8_t)k, 1, 2, 3 };

			tu_read_full(fd, pdu, sizeof(pdu));
			assert_memory_equal(pdu, want, sizeof(pdu));
		}
	}
	assert_int_equal(pthread_join(wr, NULL), 0);
	netsrv_stop(a.net);
	assert_int_equal(pthread_join(a.thread, NULL), 0);
	assert_int_equal(a.status, 0);
	assert_int_equal(atomic_load(&echo_pdus), STREAM_ROUNDS * (STREAM_SMALL + 1));
	close(fd);
	netsrv_free(a.net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_netsrv_client_host),
		cmocka_unit_test(test_netsrv_activation_fds),
		cmocka_unit_test(test_netsrv_private_unix_path),
		cmocka_unit_test(test_netsrv_echo_fds),
		cmocka_unit_test(test_netsrv_echo_tcp_drain),
		cmocka_unit_test(test_netsrv_echo_tcp_rx_exact),
		cmocka_unit_test(test_netsrv_idle_reply_same_pass_regression),
		cmocka_unit_test(test_netsrv_echo_tcp_payload_stream),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
