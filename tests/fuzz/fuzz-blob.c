/* SPDX-License-Identifier: MIT */
/*
 * fuzz-blob.c: libFuzzer target for the HTTP blob backend (storage/blob.c
 * over libcurl): the input is the server's side of the conversation. A
 * server thread in this process answers every request on a Unix socket
 * (blob_opts.unix_socket, so redirects to any host land here too and no
 * name is resolved) with the next reply of the input, then ends the
 * connection; the harness opens blob:flat or blob:vhd1 (the HEAD chain,
 * redirects, the footer GET), then reads and asks block status and CACHE
 * through the disk interface. Whatever the replies, nothing may crash,
 * hang, leak, or write outside the caller's buffers (each iovec is its own
 * heap block, exactly sized, so ASan sees any byte past it).
 *
 * Input: 8 bytes of plan, then the replies, separated by "#NEXT#".
 *   plan[0]  bit 0: vhd1 (else flat); bits 1-2: piece size 512 << 3k
 *            (512, 4 KiB, 32 KiB, 256 KiB); bits 3-4: retries (0-3)
 *   plan[1..6]  three reads, two bytes each: (where, length), see
 *            fuzz_blob_read()
 *   plan[7]  bits 0-1: iovec layout of the reads
 * In a reply, "$R" becomes the range asked ("first-last"), "$N" its
 * length, "$D" that many bytes of a fixed pattern, so that mutations keep
 * well-formed 206 replies to requests whose offsets depend on earlier
 * replies. A request after the last reply gets no answer at all (the
 * connection is closed at once). Requests are served one at a time
 * (max_connections 1), so a given input always gets the same exchange.
 *
 * Seeds: made by tests/fuzz/run-fuzz.sh (see tests/fuzz/blob-seeds.py);
 * tests/fuzz/blob.dict holds header names and values.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/compiler.h"
#include "common/log.h"
#include "common/reactor.h"
#include "storage/backends/blob.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PLAN_BYTES 8
#define SEP "#NEXT#"
#define MAX_CONNS 32
#define MAX_REQUEST 16384
#define MAX_PATTERN (1u << 20)

/* One accepted connection. */
struct conn {
	int fd;                 /* -1: slot free */
	char req[MAX_REQUEST];
	size_t req_len;
	bool answered;          /* the reply is queued; SHUT_WR once sent */
	uint8_t *out;           /* owned */
	size_t out_len, out_sent;
};

/* The replies of the input being run. lock protects data, size and pos
 * (set by the fuzzing thread, consumed by the server thread). */
static struct {
	pthread_mutex_t lock;
	const uint8_t *data;
	size_t size, pos;
} script = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int listen_fd = -1;
static char sock_path[108];
static struct reactor *main_reactor;
static struct conn conns[MAX_CONNS];
static bool verbose;            /* FUZZ_VERBOSE: say what each step got */

/* The next reply of the input (borrowed: use it before dropping
 * script.lock, which the caller holds), or false when none is left. */
static bool script_next(const uint8_t **r, size_t *n)
{
	const uint8_t *p, *sep;
	size_t left;

	if (!script.data || script.pos > script.size)
		return false;
	p = script.data + script.pos;
	left = script.size - script.pos;
	sep = memmem(p, left, SEP, strlen(SEP));
	*r = p;
	*n = sep ? (size_t)(sep - p) : left;
	script.pos += *n + strlen(SEP);         /* past the end after the last */
	return true;
}

static uint8_t pattern_byte(uint64_t off)
{
	return (uint8_t)(off * 131 + (off >> 9) * 7 + 0x5a);
}

static void out_put(struct conn *c, size_t *cap, const void *p, size_t n)
{
	if (c->out_len + n > *cap) {
		*cap = MAX(*cap * 2, c->out_len + n);
		c->out = realloc(c->out, *cap);
		if (!c->out)
			abort();
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

/* Builds the answer to the request in c->req from the next reply. */
static void conn_answer(struct conn *c)
{
	uint64_t first = 0, last = 0;
	bool ranged = false;
	const uint8_t *r = NULL;
	size_t n, cap = 0;
	const char *h;

	c->answered = true;
	c->req[c->req_len] = '\0';
	h = strstr(c->req, "\r\nRange: bytes=");
	if (h && sscanf(h + 15, "%" SCNu64 "-%" SCNu64, &first, &last) == 2 && last >= first)
		ranged = true;
	/* Copied out under the lock: the input is gone once the fuzzing
	 * thread has moved on. */
	pthread_mutex_lock(&script.lock);
	if (!script_next(&r, &n))
		n = 0;
	for (size_t i = 0; i < n; i++) {
		char num[48];

		if (r[i] != '$' || i + 1 == n || !strchr("RND", r[i + 1])) {
			out_put(c, &cap, &r[i], 1);
			continue;
		}
		i++;
		if (r[i] == 'R') {
			snprintf(num, sizeof(num), "%" PRIu64 "-%" PRIu64, first, last);
			out_put(c, &cap, num, strlen(num));
		} else if (r[i] == 'N') {
			snprintf(num, sizeof(num), "%" PRIu64, ranged ? last - first + 1 : 0);
			out_put(c, &cap, num, strlen(num));
		} else if (ranged) {
			for (uint64_t k = first; k <= last && k - first < MAX_PATTERN; k++) {
				uint8_t b = pattern_byte(k);

				out_put(c, &cap, &b, 1);
			}
		}
	}
	pthread_mutex_unlock(&script.lock);
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
}

/* Reads what the client sent; answers once the request is complete (or
 * is not HTTP at all: a TLS ClientHello after a redirect to https). */
static void conn_readable(struct conn *c)
{
	char buf[4096];
	ssize_t k;

	if (c->answered) {
		/* After our reply: drain until the client closes, so that no
		 * unread byte turns our close into a reset. */
		k = read(c->fd, buf, sizeof(buf));
		if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
			conn_close(c);
		return;
	}
	k = read(c->fd, c->req + c->req_len, MAX_REQUEST - 1 - c->req_len);
	if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
		conn_close(c);
		return;
	}
	if (k < 0)
		return;
	c->req_len += (size_t)k;
	c->req[c->req_len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || c->req[0] < 'A' || c->req[0] > 'Z' ||
	    c->req_len == MAX_REQUEST - 1) {
		conn_answer(c);
		if (c->out_len == 0)
			(void)shutdown(c->fd, SHUT_WR);
	}
}

static void conn_writable(struct conn *c)
{
	ssize_t k = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);

	if (k < 0 && errno != EAGAIN && errno != EINTR) {
		conn_close(c);
		return;
	}
	if (k > 0)
		c->out_sent += (size_t)k;
	if (c->out_sent == c->out_len)
		(void)shutdown(c->fd, SHUT_WR);     /* the reply ends here */
}

/* The server: one poll loop over the listening socket and the open
 * connections, forever (the process ends when libFuzzer is done). */
static void *server_main(void *arg UNUSED)
{
	for (;;) {
		struct pollfd pfd[MAX_CONNS + 1];
		struct conn *who[MAX_CONNS + 1];
		int n = 0;

		pfd[n] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		who[n++] = NULL;
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			bool sending = c->answered && c->out_sent < c->out_len;

			if (c->fd < 0)
				continue;
			pfd[n] = (struct pollfd){ .fd = c->fd, .events = sending ? POLLOUT : POLLIN };
			who[n++] = c;
		}
		if (poll(pfd, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 1; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (pfd[i].events & POLLOUT)
				conn_writable(who[i]);
			else
				conn_readable(who[i]);
		}
		if (pfd[0].revents & POLLIN) {
			int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			int i;

			if (fd < 0)
				continue;
			for (i = 0; i < MAX_CONNS && conns[i].fd >= 0; i++)
				;
			if (i == MAX_CONNS) {
				close(fd);  /* cannot happen with one transfer at a time */
				continue;
			}
			conns[i] = (struct conn){ .fd = fd };
		}
	}
	return NULL;
}

static void remove_socket(void)
{
	unlink(sock_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t th;

	(void)argc;
	(void)argv;
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	log_set_level(verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	if (reactor_new(&main_reactor, 0) < 0)
		abort();
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	snprintf(sock_path, sizeof(sock_path), "%s/fuzz-blob-%d.sock",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	unlink(sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listen_fd, 16) < 0)
		abort();
	atexit(remove_socket);
	if (pthread_create(&th, NULL, server_main, NULL) != 0)
		abort();
	pthread_detach(th);
	return 0;
}

/* Read number @i of the plan: @where picks the start (low 2 bits: from
 * sector 0, from the end, at a fraction of the disk, or anywhere up to
 * 2^64 — past the end), @len the length in sectors (0-63). */
static void fuzz_blob_read(struct disk *d, uint64_t sectors, uint8_t where, uint8_t len,
			   uint8_t layout)
{
	uint64_t count = len & 63, sector;
	size_t bytes, cut[3];
	struct iovec iov[3];
	int iovcnt;

	switch (where & 3) {
	case 0:
		sector = where >> 2;
		break;
	case 1:
		sector = sectors - MIN(sectors, (uint64_t)(where >> 2));
		break;
	case 2:
		sector = (sectors >> 6) * (where >> 2);
		break;
	default:
		sector = (uint64_t)where << 56 | (uint64_t)len << 8;
		break;
	}
	bytes = (size_t)count * 512;
	/* Three buffers, cut at sector, odd or no boundaries. */
	switch (layout & 3) {
	case 0:
		cut[0] = bytes; cut[1] = cut[2] = 0;
		break;
	case 1:
		cut[0] = MIN(bytes, (size_t)512); cut[1] = bytes - cut[0]; cut[2] = 0;
		break;
	case 2:
		cut[0] = bytes / 3; cut[1] = bytes / 3; cut[2] = bytes - 2 * (bytes / 3);
		break;
	default:
		cut[0] = MIN(bytes, (size_t)1); cut[1] = MIN(bytes - cut[0], (size_t)4095);
		cut[2] = bytes - cut[0] - cut[1];
		break;
	}
	iovcnt = 0;
	for (int i = 0; i < 3; i++) {
		if (!cut[i] && i)
			continue;
		iov[iovcnt].iov_base = malloc(cut[i] ? cut[i] : 1);
		iov[iovcnt].iov_len = cut[i];
		if (!iov[iovcnt].iov_base)
			abort();
		iovcnt++;
	}
	struct disk_io io = { .op = DISK_OP_READ, .sector = sector, .count = count,
			      .iov = iov, .iovcnt = iovcnt };
	int st = disk_sync_io(d, &io);

	if (verbose)
		fprintf(stderr, "fuzz-blob: read %" PRIu64 "+%" PRIu64 ": %s\n", sector, count,
			disk_status_str(st));

	if (st == DISK_OK && sector + count > sectors)
		abort();        /* a read past the end succeeded */
	for (int i = 0; i < iovcnt; i++)
		free(iov[i].iov_base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct blob_opts o;
	struct disk *d = NULL;
	char err[512];
	int r;

	if (size < PLAN_BYTES || size > (1u << 20))
		return 0;
	blob_opts_default(&o);
	o.max_connections = 1;
	o.piece_bytes = 512u << (3 * ((data[0] >> 1) & 3));
	o.retries = (data[0] >> 3) & 3;
	o.backoff_ms = 0;
	o.backoff_max_ms = 0;
	o.connect_timeout_ms = 5000;
	o.low_speed_bytes = 1;
	o.low_speed_time_s = 20;
	o.unix_socket = sock_path;

	pthread_mutex_lock(&script.lock);
	script.data = data + PLAN_BYTES;
	script.size = size - PLAN_BYTES;
	script.pos = 0;
	pthread_mutex_unlock(&script.lock);

	err[0] = '\0';
	r = blob_open("http://blob.test/disk.img", (data[0] & 1) ? BLOB_VHD1 : BLOB_FLAT, &o, &d,
		      err, sizeof(err));
	if (r < 0 && !err[0])
		abort();        /* a refusal must be explained */
	if (verbose)
		fprintf(stderr, "fuzz-blob: open: %s%s%" PRIu64 " sectors\n", r < 0 ? err : "",
			r < 0 ? "; " : "", r < 0 ? 0 : disk_sector_count(d));
	if (r == 0) {
		struct disk_extent ext[8];
		uint64_t sectors = disk_sector_count(d);
		uint32_t nr = 0;

		for (int i = 0; i < 3; i++)
			fuzz_blob_read(d, sectors, data[1 + 2 * i], data[2 + 2 * i], data[7]);
		if (disk_sync_block_status(d, 0, MIN(sectors, (uint64_t)1 << 20), ext, 8, &nr) ==
			    DISK_OK && nr > 8)
			abort();
		struct disk_io io = { .op = DISK_OP_CACHE, .sector = 0, .count = MIN(sectors, 64) };

		(void)disk_sync_io(d, &io);
		disk_unref(d);
	}

	pthread_mutex_lock(&script.lock);
	script.data = NULL;
	pthread_mutex_unlock(&script.lock);
	return 0;
}
